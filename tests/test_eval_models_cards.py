"""`benchmarks/eval_models.py --external --update-cards` rewrites a card's second-source figures: what the card
writer added to them (the figures with the image gate, per-case rows) must survive a re-run on the same model."""

from conftest import load_repo_script

eval_models = load_repo_script("benchmarks/eval_models.py")

OLD = {"breast_lesions_usg": {"dataset": "BrEaST", "n_lesion": 15, "n_lesion_free": 0, "mean_dice": 0.6996,
                              "misses": 2, "note": "the card writer's note", "per_case": {"10058": 0.9},
                              "gate": {"mean_dice": 0.652}},
       "busi_cv_5fold": {"mean_dice": 0.7658, "n_lesion": 478}}


def _new(mean_dice):
    return {"breast_lesions_usg": {"dataset": "BrEaST", "n_lesion": 15, "n_lesion_free": 0,
                                   "mean_dice": mean_dice, "misses": 2, "note": "EXTERNAL's generic note"}}


def test_a_rerun_on_the_same_model_keeps_the_gate_figures_per_case_rows_and_note():
    merged = eval_models.merge_external(OLD, _new(0.6996))
    block = merged["breast_lesions_usg"]
    assert block["gate"] == {"mean_dice": 0.652} and block["per_case"] == {"10058": 0.9}
    assert block["note"] == "the card writer's note"
    assert merged["busi_cv_5fold"] == OLD["busi_cv_5fold"]  # a block it did not measure is untouched


def test_figures_of_another_model_drop_the_old_gate_figures_instead_of_mixing_them(capsys):
    merged = eval_models.merge_external(OLD, _new(0.7412))
    block = merged["breast_lesions_usg"]
    assert block["mean_dice"] == 0.7412 and "gate" not in block and "per_case" not in block
    assert block["note"] == "EXTERNAL's generic note"
    assert "described another model" in capsys.readouterr().out
    assert OLD["breast_lesions_usg"]["gate"] == {"mean_dice": 0.652}  # the input is not changed
