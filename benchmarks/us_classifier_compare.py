"""Two ultrasound image-classifier recipes side by side as the gate of `ultrasound-lesion`, under a rule written
before either trained: the reference R (the shipped recipe, retrained on this machine) and a candidate C.

Each recipe's 5-fold held-out probabilities (scripts/train_us_classifier.py --fold 0..4, the same folds by BUSI
duplicate group) are scored as the card scores them (`us_classifier_nested.plain_cv`: each fold at a gate threshold
chosen on the other four), then joined with the held-out masks of the segmenter's committed CV (`--segmentation-cv`:
benchmarks/cv_ultrasound_lesion_e12_320_results.json), so only the classifier differs: normal images left with a
false region, lesion images emptied, found lesions lost. On the second site (BrEaST, 15 lesion images, another
hospital; chose nothing) each recipe's all-577 model (`--fold -1`, int8 as stored) at its all-fold threshold:
how many lesion images it would gate. A role given as `A:DA+B:DB` is the average of two classifiers' probabilities
(held out per image, and of their all-image models on the second site).

    python benchmarks/us_classifier_compare.py \
        --reference models/image_classifier/ultrasound-class.yaml:/tmp/usclass \
        --candidate models/image_classifier/ultrasound-class-lite1-288.yaml:/tmp/uscls3 \
        --segmentation-cv benchmarks/cv_ultrasound_lesion_e12_320_results.json \
        --second-site ../shared/data/ultrasound/breast_lesions_usg --rule RULE.txt --out RESULTS.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from cv_us_classifier import read_probs  # noqa: E402
from us_classifier_nested import plain_cv, whole_all_classifier, with_segmenter  # noqa: E402


def members(spec: str) -> list[tuple[Path, Path]]:
    """RECIPE.yaml:OUT_DIR, or several joined by '+': a classifier that averages its members' probabilities."""
    out = []
    for part in spec.split("+"):
        recipe, _, folder = part.rpartition(":")
        if not recipe:
            raise SystemExit(f"{part!r}: expected RECIPE.yaml:OUT_DIR")
        out.append((Path(recipe), Path(folder)))
    return out


def held_out_probs(spec: list[tuple[Path, Path]]) -> list[dict]:
    """The members' held-out rows, probabilities averaged per image (the members must share images and folds)."""
    runs = [sorted(read_probs(folder, 5), key=lambda r: r["name"]) for _, folder in spec]
    if any([(r["name"], r["fold"]) for r in run] != [(r["name"], r["fold"]) for r in runs[0]] for run in runs):
        raise SystemExit("the members' held-out files differ in images or folds")
    return [dict(rows[0], p=sum(r["p"] for r in rows) / len(rows)) for rows in zip(*runs)]


def second_site_gated(folder: Path, spec: list[tuple[Path, Path]], threshold: float) -> dict:
    """The all-image model(s) on every lesion image of the folder: P(normal) (members averaged) and whether the gate
    fires."""
    from napari_lesionseg.core.io import read_scan

    clfs = [whole_all_classifier(recipe, out / "all" / "weights.safetensors") for recipe, out in spec]
    per_image = {}
    for path in sorted((folder / "images").glob("*.png")):
        image = read_scan(path, modality="ultrasound")[0].data
        p_normal = float(np.mean([c.probabilities(image)["normal"] for c in clfs]))
        per_image[path.stem] = {"p_normal": round(p_normal, 4), "gated": bool(p_normal > threshold)}
    return {"threshold": threshold, "n_lesion": len(per_image),
            "gated": sum(r["gated"] for r in per_image.values()), "per_image": per_image}


def verdict(ref: dict, cand: dict) -> dict:
    """The rule of session 20 (RULE.txt, quoted in the results): every condition must hold."""
    rs, cs = ref["segmenter"], cand["segmenter"]
    out = {
        "1_normals_with_false_region_at_least_5_fewer": [cs["normal_false_region"], rs["normal_false_region"],
                                                         cs["normal_false_region"] <= rs["normal_false_region"] - 5],
        "2_lost_not_more_emptied_at_most_2_more": [
            [cs["lesions_lost"], cs["lesion_images_emptied"]], [rs["lesions_lost"], rs["lesion_images_emptied"]],
            cs["lesions_lost"] <= rs["lesions_lost"] and cs["lesion_images_emptied"] <= rs["lesion_images_emptied"] + 2],
        "3_auc_and_f1_within_0.01": [[cand["auc_fold_mean"], cand["macro_f1_fold_mean"]],
                                     [ref["auc_fold_mean"], ref["macro_f1_fold_mean"]],
                                     cand["auc_fold_mean"] >= ref["auc_fold_mean"] - 0.01
                                     and cand["macro_f1_fold_mean"] >= ref["macro_f1_fold_mean"] - 0.01],
    }
    if "second_site" in cand and "second_site" in ref:
        out["4_breast_gates_not_more"] = [cand["second_site"]["gated"], ref["second_site"]["gated"],
                                          cand["second_site"]["gated"] <= ref["second_site"]["gated"]]
    out["ship_candidate"] = len(out) == 4 and all(v[-1] for v in out.values())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, help="RECIPE.yaml:OUT_DIR of the reference classifier")
    ap.add_argument("--candidate", required=True,
                    help="RECIPE.yaml:OUT_DIR of the candidate; A:DA+B:DB averages two classifiers' probabilities")
    ap.add_argument("--segmentation-cv", required=True, help="held-out masks of the segmenter's CV (results JSON)")
    ap.add_argument("--second-site", help="folder with images/*.png of lesion images from another hospital")
    ap.add_argument("--rule", help="the rule as written beforehand (quoted in the results)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    res = {"rule": Path(args.rule).read_text() if args.rule else None}
    for role in ("reference", "candidate"):
        spec = members(getattr(args, role))
        block = plain_cv(held_out_probs(spec))
        block["segmenter"] = with_segmenter(Path(args.segmentation_cv), spec[0][1], block.pop("gate"))
        if args.second_site and all((out / "all" / "weights.safetensors").exists() for _, out in spec):
            block["second_site"] = second_site_gated(Path(args.second_site), spec, block["threshold_all_folds"])
        res[role] = {"recipe": " + ".join(str(recipe) for recipe, _ in spec), **block}
        print(role, json.dumps({k: v for k, v in block.items() if k != "second_site"}),
              "BrEaST gated:", block.get("second_site", {}).get("gated"))
    res["verdict"] = verdict(res["reference"], res["candidate"])
    Path(args.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
    print("verdict:", json.dumps(res["verdict"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
