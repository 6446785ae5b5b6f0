"""The image-class head of an `image_head_weight` pilot as a gate, held out (descriptive; issue 15).

The head trains with the segmenter but is not part of the published model, so its figures come from the fold run's
last checkpoint (net + head; `cv_ultrasound_lesion.py` deletes it at publish, so copy it before the run ends). For
each fold: P(normal) of every held-out image (the image and its mirror averaged), the gate threshold chosen on the
OTHER given folds' lesion images (≤ 2 % of them gated, as the `ultrasound-class` gate is chosen), the fold run's
held-out rows gated with it (`us_gate_cv.outcome`), beside the same rows gated by the classifier's CV when given.

    python benchmarks/us_imghead_gate.py --recipe models/ultrasound-lesion-single-e12-320-imghead.yaml \
        --fold-run F0.json F1.json --checkpoint CKPT0.pt CKPT1.pt [--classifier DIR] --out RESULTS.json [--save P.csv]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))
from cv_ultrasound_lesion import busi_folds  # noqa: E402
from cv_us_classifier import auc, gate_threshold  # noqa: E402
from us_gate_cv import held_out_classifier, outcome  # noqa: E402

MAX_LESION_GATED = 0.02


def head_probabilities(recipe: str, checkpoint: Path, names: set[str]) -> dict[str, np.ndarray]:
    """Image name → class probabilities of the checkpoint's head (classes sorted, as the Trainer orders them)."""
    from napari_lesionseg.core.models.build import build_network
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.data import load_sources, make_examples, resize_examples
    from napari_lesionseg.core.training.image_head import EncoderTap, ImageHead
    from napari_lesionseg.core.training.trainer import card_for

    cfg = TrainConfig.from_file(recipe)
    card = card_for(cfg)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = build_network(card)
    net.load_state_dict(saved["model"])
    tap = EncoderTap(net)
    head_state = saved["image_head"]
    head = ImageHead(tap.channels, head_state["fc.weight"].shape[0])
    head.load_state_dict(head_state)
    net.eval(), head.eval()
    cases = [c for c in load_sources(cfg) if c.name in names]
    examples = make_examples(cases, card)
    resize_examples(examples, tuple(card.patch_size))
    out = {}
    with torch.no_grad():
        for e in examples:
            x = torch.from_numpy(e.x[None].astype(np.float32))
            p = 0
            for view in (x, torch.flip(x, dims=(3,))):
                net(view)
                p = p + torch.softmax(head(tap.features), 1)[0].numpy() / 2
            out[e.case] = p
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--fold-run", nargs="+", required=True, help="cv_ultrasound_lesion.py --out, one per fold")
    ap.add_argument("--checkpoint", nargs="+", required=True, help="each fold's copied last.pt, in the same order")
    ap.add_argument("--classifier", help="the ultrasound-class CV folder (the reference gate on the same rows)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--save", help="also write each held-out image's head probabilities to this CSV")
    args = ap.parse_args(argv)
    from napari_lesionseg.core.training.config import TrainConfig

    fold_of = busi_folds(TrainConfig.from_file(args.recipe).cases_json)
    rows, probs = [], {}
    for run, ckpt in zip(args.fold_run, args.checkpoint):
        for key, fold in json.loads(Path(run).read_text())["folds"].items():
            k = int(key.removeprefix("fold"))
            held = {n for n, f in fold_of.items() if f == k}
            probs |= head_probabilities(args.recipe, Path(ckpt), held)
            rows += [dict(r, fold=k) for r in fold["rows"]]
    if args.save:
        with open(args.save, "w") as f:
            f.write("name,fold,p_benign,p_malignant,p_normal\n")
            f.writelines(f"{r['name']},{r['fold']},{','.join(f'{v:.6f}' for v in probs[r['name']])}\n" for r in rows)
    normal = 2  # benign, malignant, normal (sorted)
    folds = sorted({r["fold"] for r in rows})
    lesion_p = {k: np.array([probs[r["name"]][normal] for r in rows if r["fold"] == k and r["has_lesion"]])
                for k in folds}
    t = {k: gate_threshold(np.concatenate([lesion_p[j] for j in folds if j != k]), MAX_LESION_GATED) for k in folds}
    gated = np.array([probs[r["name"]][normal] > t[r["fold"]] for r in rows])
    result = {"thresholds": {str(k): round(v, 4) for k, v in t.items()}, "head_gate": outcome(rows, gated),
              "ungated": outcome(rows, np.zeros(len(rows), bool))}
    cls_of = {r["name"]: r.get("cls", r["name"].split("_")[0]) for r in rows}
    pm = [probs[n][1] / max(probs[n][0] + probs[n][1], 1e-9) for n in probs if cls_of.get(n) == "malignant"]
    pb = [probs[n][1] / max(probs[n][0] + probs[n][1], 1e-9) for n in probs if cls_of.get(n) == "benign"]
    result["benign_malignant_auc"] = round(auc(np.array(pm), np.array(pb)), 4)
    pn = [probs[r["name"]][normal] for r in rows if not r["has_lesion"]]
    pl = [probs[r["name"]][normal] for r in rows if r["has_lesion"]]
    result["normal_vs_lesion_auc"] = round(auc(np.array(pn), np.array(pl)), 4)
    if args.classifier:
        p_cls, t_cls = held_out_classifier(Path(args.classifier))
        result["classifier_gate"] = outcome(rows, np.array([p_cls[r["name"]][1] > t_cls[r["fold"]] for r in rows]))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
