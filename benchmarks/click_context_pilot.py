"""Pilot (issue 16): a click segmented without a size estimate, by a prompt network trained on click frames of
unknown size (`train_line_model.py --click-context LO HI`), against today's click (`click_size` LoG + box network).

Today a click's size comes from the image (`core/annotations/click_size.py`), and on the ISPY1 MRI slices it is
not found (median |log error| 1.63: the whole bright breast answers), while the box network given the true size
scores as the line does. A network that has seen clicks in frames 1.6–8× the lesion's diameter must find the
extent itself. At inference the click is the only prompt, in square frames of growing side centred on it
(`FRAME_SIDES` × the image's smaller side), one batch; `RULES` say which frame's mask wins. The rule is chosen on
fold 0 (fold model f0, its held-out patients) and reported on fold 1 and on the external lesions (fold model f1).
The go/no-go was written before either fold model trained (`RULE.txt`, quoted in the results).

    python benchmarks/click_context_pilot.py --new C --baseline S0 --rule-file RULE.txt --out RESULTS.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))

import eval_click as ec  # noqa: E402
import prompt_lesions as pl  # noqa: E402

from napari_lesionseg.core.metrics import dice  # noqa: E402

FRAME_SIDES = np.geomspace(0.04, 1.0, 9)
"""Frame sides tried, as fractions of the image's smaller side (each 1.5× the previous)."""
EDGE = 0.06
"""A mask that comes within this share of the frame's side of its border is cut by the frame."""


def use_models(directory: Path) -> None:
    """Point the prompt-network loader at a fold model's folder (`line_model.model_dir` reads this each call)."""
    os.environ["LESIONSEG_LINE_MODEL_DIR"] = str(directory)


def frame_probabilities(image, click) -> tuple[list, np.ndarray]:
    """(frames, (n, S, S) probabilities) of the click alone in every nested square frame centred on it."""
    from napari_lesionseg.core.annotations.frame import LineFrame
    from napari_lesionseg.core.annotations.line_model import frame_input, predict_frames

    side = float(min(image.shape))
    frames, xs = [], []
    for f in FRAME_SIDES:
        d = np.array([0.0, f * side / 4])  # a horizontal line of length side/2: frame side = f × side
        frame = LineFrame.from_line(click - d, click + d)
        frames.append(frame)
        xs.append(frame_input(image, frame, positive=[click]))
    return frames, predict_frames(np.stack(xs))


def frame_masks(probs: np.ndarray) -> list[np.ndarray]:
    """Per frame, the part of the thresholded probability connected to the frame's centre (the click)."""
    from napari_lesionseg.core.annotations.prompts import _keep_component_at

    c = (probs.shape[-1] - 1) / 2
    return [_keep_component_at(p > 0.5, [(c, c)]) for p in probs]


def cut_by_frame(mask: np.ndarray) -> bool:
    m = max(1, int(round(EDGE * mask.shape[0])))
    return bool(mask[:m].any() or mask[-m:].any() or mask[:, :m].any() or mask[:, -m:].any())


def _on_image(frames, masks, image) -> list[np.ndarray]:
    """Each frame's mask put back on the image's grid (`prompts._frame_mask`, as a prompt's mask is)."""
    from napari_lesionseg.core.annotations.prompts import _frame_mask

    return [_frame_mask(image, frame, None, prob=m.astype(np.float32))[1] for frame, m in zip(frames, masks)]


def pick_first_inside(masks, probs, image_masks) -> int:
    """The smallest frame whose mask is not empty and not cut by the frame's border."""
    ok = [j for j, m in enumerate(masks) if m.any() and not cut_by_frame(m)]
    return ok[0] if ok else len(masks) - 1


def pick_stable(masks, probs, image_masks) -> int:
    """The frame whose mask (on the image) agrees best with the next larger frame's."""
    agree = [dice(image_masks[j], image_masks[j + 1]) if image_masks[j].any() else -1.0
             for j in range(len(masks) - 1)]
    return int(np.argmax(agree))


def pick_confident(masks, probs, image_masks) -> int:
    """Among frames whose mask is not cut by the border, the one with the highest mean probability inside it."""
    score = [float(p[m].mean()) if m.any() and not cut_by_frame(m) else -1.0 for m, p in zip(masks, probs)]
    return int(np.argmax(score)) if max(score) > 0 else len(masks) - 1


def pick_first_inside_stable(masks, probs, image_masks) -> int:
    """The smallest frame not cut by its border whose mask the next larger frame keeps (Dice >= 0.7)."""
    for j, m in enumerate(masks[:-1]):
        if m.any() and not cut_by_frame(m) and dice(image_masks[j], image_masks[j + 1]) >= 0.7:
            return j
    return pick_first_inside(masks, probs, image_masks)


RULES = {"first_inside": pick_first_inside, "stable": pick_stable, "confident": pick_confident,
         "first_inside_stable": pick_first_inside_stable}


def new_click(image, click) -> dict[str, np.ndarray]:
    """The mask each rule picks for one click (and 'oracle_frames': every frame's mask, for the analysis)."""
    frames, probs = frame_probabilities(image, click)
    masks = frame_masks(probs)
    on_image = _on_image(frames, masks, image)
    out = {name: on_image[rule(masks, probs, on_image)] for name, rule in RULES.items()}
    out["oracle_frames"] = on_image
    return out


def baseline_click(les) -> np.ndarray:
    from napari_lesionseg.core.annotations import prompts

    try:
        return prompts.click_to_mask(les.image, ec.centre_click(les.mask), modality=ec.MODALITY[les.source])
    except Exception as e:  # noqa: BLE001 - a refused click scores 0, as in eval_click
        print(f"  {les.name}: {e}", file=sys.stderr)
        return np.zeros_like(les.mask)


def score(lesions, new_dir: Path, base_dir: Path) -> list[dict]:
    rows = []
    for les in lesions:
        click = ec.centre_click(les.mask)
        use_models(base_dir)
        base = dice(baseline_click(les), les.mask)
        use_models(new_dir)
        t = time.perf_counter()
        masks = new_click(les.image, click)
        secs = time.perf_counter() - t
        row = {"source": les.source, "name": les.name, "baseline": base, "seconds": secs,
               "oracle": max(dice(m, les.mask) for m in masks.pop("oracle_frames"))}
        row.update({name: dice(m, les.mask) for name, m in masks.items()})
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for source in dict.fromkeys(r["source"] for r in rows):
        sel = [r for r in rows if r["source"] == source]
        out[source] = {"lesions": len(sel), **{k: round(float(np.mean([r[k] for r in sel])), 4)
                                                for k in ("baseline", *RULES, "oracle")},
                       "seconds_median": round(float(np.median([r["seconds"] for r in sel])), 3)}
    return out


def held_out(fold: int) -> list:
    lesions = pl.load(pl.REPORTED)
    folds = pl.assign_folds(lesions)
    return [l for l in lesions if folds[l.patient] == fold]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new", type=Path, required=True, help="fold models of the pilot recipe (f0, f1)")
    ap.add_argument("--baseline", type=Path, required=True, help="fold models of the shipped recipe (f0, f1)")
    ap.add_argument("--rule-file", type=Path, help="the go/no-go written before training, quoted in the results")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    res = {"rule": args.rule_file.read_text() if args.rule_file else None, "frame_sides": FRAME_SIDES.tolist()}
    rows0 = score(held_out(0), args.new / "f0", args.baseline / "f0")
    s0 = summary(rows0)
    gain = {r: np.mean([s0[s][r] - s0[s]["baseline"] for s in s0]) for r in RULES}
    chosen = max(gain, key=gain.get)  # the rule with the largest mean gain over fold 0's sources
    res["fold0_choice"] = {"by_source": s0, "mean_gain": gain, "chosen": chosen}
    print("fold 0 (chooses):", json.dumps(s0, indent=1), "chosen:", chosen, flush=True)
    rows1 = score(held_out(1), args.new / "f1", args.baseline / "f1")
    rowsx = score(ec.external_lesions(), args.new / "f1", args.baseline / "f1")
    res["fold1"] = summary(rows1)
    res["external"] = summary(rowsx)
    res["rows"] = {"fold0": rows0, "fold1": rows1, "external": rowsx}
    print("fold 1:", json.dumps(res["fold1"], indent=1), "\nexternal:", json.dumps(res["external"], indent=1))
    args.out.write_text(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main()
