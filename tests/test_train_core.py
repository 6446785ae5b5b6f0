"""The training core: resume after a crash, seeded reproducibility, balanced sampling, the losses, the split by group,
and the child process the dock uses (progress as JSON lines, errors as messages)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from napari_lesionseg.core.training.config import TrainConfig
from napari_lesionseg.core.training.data import BalancedSampler, Case, Example, split_by_group
from napari_lesionseg.core.training.losses import LOSSES, compute_loss
from napari_lesionseg.core.training.loop import train
from napari_lesionseg.core.training.process import TrainingProcess
from tiny_models import blob_image

from conftest import shared_path

torch.set_num_threads(1)


def _cases(n=10, seed=0, shape=(48, 48)):
    rng = np.random.default_rng(seed)
    return [Case(f"c{i}", *blob_image(rng, shape=shape, n_blobs=1 if i % 3 else 0), group=f"g{i}") for i in range(n)]


def _cfg(tmp_path, **kw):
    base = dict(name="core-test", modality="ultrasound", encoder="resnet18", decoder_channels=[32, 16, 8, 8, 4],
                fit="resize", patch_size=[48, 48], epochs=3, batch_size=4, augment=["flip", "intensity"],
                num_threads=1, output_dir=str(tmp_path / "models"), checkpoint_dir=str(tmp_path / "ckpt"),
                early_stopping=0)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_after_a_crash_continues_from_the_checkpoint(tmp_path):
    cases = _cases()
    cfg = _cfg(tmp_path, epochs=4)
    proc = TrainingProcess(cfg, cases, num_threads=1).start()
    ckpt = tmp_path / "ckpt" / "last.pt"
    deadline = time.monotonic() + 90
    while not ckpt.exists() and time.monotonic() < deadline:
        proc.poll()
        time.sleep(0.05)
    proc.kill()  # a crash: no publish, only the last epoch's checkpoint survives
    assert ckpt.exists()
    saved = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= saved < 4
    assert not list((tmp_path / "models").glob("*.json"))

    events = []
    result = train(cfg, progress=events.append, cases=cases, resume=True)
    logs = [e["message"] for e in events if e["kind"] == "log"]
    assert f"resumed from epoch {saved}" in logs
    epochs_run = [e["epoch"] for e in events if e["kind"] == "epoch"]
    assert epochs_run == list(range(saved + 1, 5))  # no epoch is trained twice
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.card is not None and result.card.metrics["epochs_trained"] == 4
    assert not ckpt.exists()


def test_seeded_runs_are_reproducible(tmp_path):
    cases = _cases(8)

    def losses(seed, sub):
        cfg = _cfg(tmp_path / sub, epochs=2, seed=seed)
        r = train(cfg, cases=cases, resume=False, publish=False)
        return [h["loss"] for h in r.history] + [h.get("val_dice") for h in r.history]

    a, b, c = losses(0, "a"), losses(0, "b"), losses(1, "c")
    assert a == b
    assert a != c


def test_balanced_sampler_keeps_the_lesion_ratio_and_mines_hard_negatives():
    ex = [Example(x=np.zeros((1, 4, 4), np.float32), y=np.zeros((4, 4), np.uint8), case=f"c{i}", positive=i < 10)
          for i in range(100)]
    s = BalancedSampler(ex, positive_fraction=0.6, seed=0)
    idx = s.epoch(1000)
    assert np.mean(idx < 10) == pytest.approx(0.6, abs=0.001)  # 10% of examples, 60% of draws
    hard = BalancedSampler(ex, positive_fraction=0.5, seed=0, hard_negatives=True)
    neg = np.arange(10, 100)
    hard.record_losses(neg, np.where(neg == 42, 5.0, 0.01))
    draws = hard.epoch(2000)
    neg_draws = draws[draws >= 10]
    assert np.mean(neg_draws == 42) > 5 / 90  # the wrong one comes back far more often than 1 in 90


def test_tag_weights_draw_the_tagged_lesion_images_more_often(tmp_path):
    """A recipe's `tag_weights` (e.g. {SPIC: 3}) read with the cases' cases.json tags: a spiculated mass image is drawn
    three times as often as another mass image, mass-free images keep their share, untagged recipes draw as before."""
    import imageio.v3 as iio

    from napari_lesionseg.core.training.data import load_folder, weigh_examples

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    tags = {"m0": ["D", "SPIC"], "m1": ["F", "CIRC"], "m2": ["G", "CIRC"], "n0": ["D", "NORM"], "n1": ["F", "NORM"]}
    for name in tags:
        mask = np.zeros((8, 8), np.uint8)
        if name.startswith("m"):
            mask[2:5, 2:5] = 255
        iio.imwrite(tmp_path / "images" / f"{name}.png", np.full((8, 8), 90, np.uint8))
        iio.imwrite(tmp_path / "masks" / f"{name}.png", mask)
    (tmp_path / "cases.json").write_text(json.dumps([{"name": n, "group": n, "tags": t} for n, t in tags.items()]))
    cases = load_folder(tmp_path / "images", tmp_path / "masks", tmp_path / "cases.json")
    assert {c.name: c.tags for c in cases}["m0"] == ("D", "SPIC")
    ex = [Example(x=c.image[None].astype(np.float32), y=c.mask, case=c.name, positive=bool(c.mask.any()))
          for c in cases]
    cfg = TrainConfig(name="t", modality="mammography", images="i", masks="m", tag_weights={"SPIC": 3, "D": 2})
    weigh_examples(ex, cases, cfg.tag_weights)
    assert {e.case: e.weight for e in ex} == {"m0": 3.0, "m1": 1.0, "m2": 1.0, "n0": 2.0, "n1": 1.0}  # the largest tag
    draws = BalancedSampler(ex, positive_fraction=0.5, seed=0).epoch(20000)
    names = np.array([e.case for e in ex])[draws]
    assert np.mean(np.isin(names, ["m0", "m1", "m2"])) == pytest.approx(0.5, abs=0.001)
    assert np.mean(names == "m0") / np.mean(names == "m1") == pytest.approx(3.0, rel=0.1)
    assert np.mean(names == "n0") / np.mean(names == "n1") == pytest.approx(1.0, rel=0.1)  # lesion images only
    plain = [Example(x=e.x, y=e.y, case=e.case, positive=e.positive) for e in ex]
    same = BalancedSampler(plain, 0.5, seed=4).epoch(40), BalancedSampler(plain, 0.5, seed=4).epoch(40)
    assert np.array_equal(*same)
    with pytest.raises(Exception, match="tag_weights"):
        TrainConfig(name="t", modality="mammography", images="i", masks="m", tag_weights={"SPIC": -1})


def test_mias_cases_carry_class_and_tissue_tags(tmp_path):
    """scripts/make_mias_masks.py tags each mini-MIAS image with its background tissue and MIAS classes, which a
    recipe's tag_weights name (mdb005: a circumscribed mass in fatty tissue; mdb003: a normal dense breast)."""
    from conftest import load_repo_script

    src = shared_path("mammography", "mias")
    load_repo_script("scripts/make_mias_masks.py").main(str(src), str(tmp_path))
    cases = {c["name"]: c for c in json.loads((tmp_path / "cases.json").read_text())}
    assert cases["mdb005"]["tags"] == ["F", "CIRC"] and cases["mdb005"]["cls"] == "mass"
    assert cases["mdb003"]["tags"] == ["D", "NORM"] and cases["mdb003"]["cls"] == "normal"
    masses = [c for c in cases.values() if c["cls"] == "mass"]
    assert sum("SPIC" in c["tags"] for c in masses) == 13 and sum("D" in c["tags"] for c in masses) == 7


@pytest.mark.parametrize("name", LOSSES)
def test_each_loss_is_finite_and_decreases_on_a_toy_batch(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pairs = [blob_image(rng, shape=(32, 32), n_blobs=2) for _ in range(4)]
    x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None].astype(np.float32) / 255)
    y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    values = []
    for _ in range(40):
        loss, per = compute_loss(name, net(x), y)
        assert torch.isfinite(loss) and torch.isfinite(per).all() and per.shape == (4,)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(loss.item())
    assert values[-1] < 0.8 * values[0], f"{name}: {values[0]:.3f} -> {values[-1]:.3f}"


def test_hard_pixel_term_charges_a_confident_false_blob_more_than_diffuse_noise_of_the_same_total():
    """A lesion-free image: a 10x10 confident false blob and noise spread over every pixel cost the same mean pixel
    BCE (so `bce_image_dice` cannot tell them apart), but the hardest-1% term charges the blob several times more."""
    import torch.nn.functional as F

    from napari_lesionseg.core.training.losses import cross_entropy, hard_pixel_term

    y = torch.zeros(1, 64, 64, dtype=torch.long)
    blob = torch.full((1, 1, 64, 64), -12.0)
    blob[..., 20:30, 20:30] = 4.0  # p = 0.98 on 100 of 4096 pixels
    mean_bce = float(F.softplus(blob).mean())
    noise = torch.full((1, 1, 64, 64), float(np.log(np.expm1(mean_bce))))  # softplus(noise) = mean_bce everywhere
    assert float(cross_entropy(blob, y)[0]) == pytest.approx(float(cross_entropy(noise, y)[0]), rel=1e-4)
    hard_blob, hard_noise = hard_pixel_term(blob, y, 0.01), hard_pixel_term(noise, y, 0.01)
    assert float(hard_blob[0]) > 10 * float(hard_noise[0])
    plain, _ = compute_loss("bce_image_dice", blob, y)
    with_term, per = compute_loss("bce_image_dice", blob, y, hard_pixel_fraction=0.01)
    assert float(with_term - plain) == pytest.approx(float(hard_blob[0]), rel=1e-4)
    assert per.shape == (1,) and float(per[0]) > float(cross_entropy(blob, y)[0])


def test_hard_pixel_term_on_lesion_free_images_only_leaves_a_lesion_images_loss_unchanged():
    """`hard_pixel_images="lesion_free"`: a batch of a normal image with a false blob and a lesion image with an
    unsure border; the term is added for the normal image alone, so the lesion image's loss is the plain one."""
    from napari_lesionseg.core.training.losses import hard_pixel_term

    y = torch.zeros(2, 64, 64, dtype=torch.long)
    y[1, 24:40, 24:40] = 1
    logits = torch.full((2, 1, 64, 64), -8.0)
    logits[0, :, 5:15, 5:15] = 3.0  # normal image: a confident false blob
    logits[1, :, 22:42, 22:42] = 0.2  # lesion image: the lesion and an unsure rim, p = 0.55
    _, plain = compute_loss("bce_image_dice", logits, y)
    _, every = compute_loss("bce_image_dice", logits, y, hard_pixel_fraction=0.01)
    total, free = compute_loss("bce_image_dice", logits, y, hard_pixel_fraction=0.01,
                               hard_pixel_images="lesion_free")
    hard = hard_pixel_term(logits, y, 0.01)
    assert float(free[0] - plain[0]) == pytest.approx(float(hard[0]), rel=1e-4)
    assert float(free[1]) == pytest.approx(float(plain[1]), rel=1e-6)
    assert float(every[1]) > float(plain[1]) + 0.1
    with pytest.raises(Exception, match="hard_pixel_images"):
        compute_loss("bce_image_dice", logits, y, hard_pixel_fraction=0.01, hard_pixel_images="normals")
    _, quarter = compute_loss("bce_image_dice", logits, y, hard_pixel_fraction=0.01,
                              hard_pixel_images="lesion_free", hard_pixel_weight=0.25)
    assert float(quarter[0] - plain[0]) == pytest.approx(0.25 * float(hard[0]), rel=1e-4)  # the weight scales it
    assert float(quarter[1]) == pytest.approx(float(plain[1]), rel=1e-6)


def test_validation_split_never_puts_a_busi_duplicate_group_on_both_sides():
    meta = json.loads(shared_path("ultrasound", "busi", "cases.json").read_text())
    dummy = np.zeros((2, 2), np.uint8)
    cases = [Case(c["name"], dummy, dummy, group=c["group"]) for c in meta]
    assert len({c.group for c in cases}) < len(cases)  # BUSI does have near-duplicate groups
    for seed in range(5):
        for frac in (0.1, 0.2, 0.5):
            train_cases, val_cases = split_by_group(cases, frac, seed)
            assert len(train_cases) + len(val_cases) == len(cases)
            assert not {c.group for c in train_cases} & {c.group for c in val_cases}
            assert 0.5 * frac < len(val_cases) / len(cases) < 1.5 * frac + 0.02


def test_child_process_reports_a_clear_error(tmp_path):
    cases = [Case(f"c{i}", np.full((32, 32), 50, np.uint8), np.zeros((32, 32), np.uint8), group=f"g{i}")
             for i in range(3)]
    proc = TrainingProcess(_cfg(tmp_path), cases, num_threads=1).start()
    events = proc.wait(timeout=120)
    errors = [e for e in events if e["kind"] == "error"]
    assert errors and "None of the masks contains a lesion" in errors[0]["message"]
    assert proc.result is None and events[-1]["kind"] == "exit" and events[-1]["code"] == 2
    assert not proc.workdir.exists()  # the temporary training set is removed


def test_a_split_fixed_in_cases_json_is_kept(tmp_path):
    """MRI has one labelled volume to validate on: cases.json's "split" must put it (and only it) in validation."""
    cases = _cases(6)
    cases[4].split = "val"
    for c in cases[:4]:
        c.split = "train"
    train_cases, val_cases = split_by_group(cases, val_fraction=0.5, seed=3)
    assert [c.name for c in val_cases if c.split == "val"] == ["c4"]
    assert {c.name for c in train_cases} >= {"c0", "c1", "c2", "c3"}
    assert not {c.name for c in train_cases} & {c.name for c in val_cases}
    for c in cases:
        c.split = "val"
    with pytest.raises(Exception, match="split"):
        split_by_group(cases, 0.2)


def test_moving_average_weights_follow_the_formula_and_survive_a_resume(tmp_path):
    from napari_lesionseg.core.training.loop import _update_ema

    a, b = torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.fill_(3.0)
    b.num_batches_tracked.fill_(7)
    _update_ema(a, b, 0.75)
    assert torch.allclose(a.weight, torch.full((2,), 1.5))  # 0.75·1 + 0.25·3
    assert int(a.num_batches_tracked) == 7  # integer buffers are copied, not averaged

    cases = _cases()
    cfg = _cfg(tmp_path, epochs=2, ema_decay=0.9)
    train(cfg, cases=cases, publish=False)
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert state["ema_model"] is not None
    diff = [not torch.equal(state["ema_model"][k], state["model"][k]) for k in state["model"]
            if state["model"][k].dtype.is_floating_point]
    assert any(diff)  # the average is not a copy of the last weights
    events = []
    result = train(TrainConfig(**{**cfg.to_dict(), "epochs": 3}), progress=events.append, cases=cases)
    assert "resumed from epoch 2" in [e["message"] for e in events if e["kind"] == "log"]
    assert result.card is not None and "val_dice" in result.card.metrics


def test_training_precision_choice():
    from napari_lesionseg.core.errors import LesionSegError
    from napari_lesionseg.core.inference.device import training_precision

    cpu = torch.device("cpu")
    assert training_precision(cpu, "fp32") is None
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert training_precision(cpu, "auto") == (torch.bfloat16 if native else None)
    assert training_precision(torch.device("cuda"), "auto") == torch.float16  # the CUDA path (with a grad scaler)
    assert training_precision(torch.device("mps"), "auto") is None
    with pytest.raises(LesionSegError):
        training_precision(cpu, "int8")


def test_bf16_training_learns_as_well_as_fp32(tmp_path):
    """Mixed precision must not cost accuracy: the same seeded run in bf16 and fp32 reach similar validation Dice."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bf16")
    cases = _cases(16)
    scores = {}
    for prec in ("fp32", "bf16"):
        cfg = _cfg(tmp_path / prec, epochs=6, precision=prec, val_fraction=0.25)
        scores[prec] = train(cfg, cases=cases, publish=False).best_score
    assert scores["bf16"] > 0.5 and abs(scores["bf16"] - scores["fp32"]) < 0.15, scores


def test_an_encoder_at_zero_learning_rate_share_keeps_its_weights(tmp_path):
    """`encoder_lr_scale` slows the (pretrained) encoder only: at 0 it keeps its starting weights, the decoder learns."""
    from napari_lesionseg.core.models.build import build_network, load_state
    from napari_lesionseg.core.training.loop import card_for

    rng = np.random.default_rng(0)
    cases = [Case(f"c{i}", *blob_image(rng, shape=(48, 48)), group=f"g{i}") for i in range(8)]
    cfg = TrainConfig(name="frozen-enc", modality="ultrasound", encoder="resnet18", decoder_channels=[16, 8, 8, 4, 4],
                      patch_size=[48, 48], epochs=2, batch_size=4, val_fraction=0.0, encoder_lr_scale=0.0,
                      weight_decay=0.01, output_dir=str(tmp_path), checkpoint_dir=str(tmp_path / "ck"),
                      num_threads=1, precision="fp32")
    torch.manual_seed(cfg.seed)
    start = build_network(card_for(cfg)).state_dict()
    card = train(cfg, cases=cases, resume=False).card
    end = load_state(card.weights_path)
    enc = [k for k in start if k.startswith("encoder.") and k.endswith("conv1.weight")]
    dec = [k for k in start if k.startswith("decoder.") and k.endswith("weight")]
    assert enc and dec
    assert all(torch.allclose(start[k], end[k], atol=1e-3) for k in enc)  # fp16 on disk
    assert any(not torch.allclose(start[k], end[k], atol=1e-3) for k in dec)


def test_image_head_learns_the_image_class_and_leaves_the_published_network_plain(tmp_path):
    """`image_head_weight` (issue 15, multi-task): a head on the encoder learns which images are lesion-free while the
    segmenter trains; the published model is the plain segmenter (same weights' names as without the head), an
    image without a class is refused with a message, and a recipe without the option trains exactly as before."""
    from napari_lesionseg.core.errors import LesionSegError
    from napari_lesionseg.core.models.build import load_state
    from napari_lesionseg.core.training.trainer import Trainer

    cases = _cases(12)
    for c in cases:
        c.label = "lesion" if c.mask.any() else "normal"
    trainer = Trainer(_cfg(tmp_path / "head", epochs=12, image_head_weight=1.0, val_fraction=0.0, keep_last=True),
                      cases=cases, resume=False)
    card = trainer.run().card
    assert trainer.image_classes == ["lesion", "normal"]
    trainer.net.eval()
    trainer.image_head.eval()
    with torch.no_grad():
        x = torch.from_numpy(np.stack([e.x for e in trainer.examples]).astype(np.float32))
        trainer.net(x)
        predicted = trainer.image_head(trainer.tap.features).argmax(1).numpy()
    assert np.mean(predicted == trainer.example_class) >= 0.9  # chance (the larger class) is 8 of 12
    plain = train(_cfg(tmp_path / "plain", epochs=1, val_fraction=0.0, keep_last=True), cases=cases, resume=False)
    assert set(load_state(card.weights_path)) == set(load_state(plain.card.weights_path))

    cases[0].label = ""
    with pytest.raises(LesionSegError, match="image class"):
        Trainer(_cfg(tmp_path / "bad", epochs=1, image_head_weight=1.0), cases=cases, resume=False).run()
    with pytest.raises(LesionSegError, match="image_head_weight"):
        _cfg(tmp_path, image_head_weight=-1)
    cases[0].label = "normal"
    with pytest.raises(LesionSegError, match="whole images"):  # a patch does not show its image's class
        Trainer(_cfg(tmp_path / "tile", epochs=1, image_head_weight=1.0, fit="tile"), cases=cases, resume=False).run()
