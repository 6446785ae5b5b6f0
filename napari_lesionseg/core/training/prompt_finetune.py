"""Fine-tune the prompt network on a user's corrected masks, so the line and box tools learn their scanner.

A clinician corrects a few masks (twenty is plenty) made with the line or box tool; every lesion of every mask
then trains the prompt network with the prompts a reader would draw on it (its longest diameter, its box, a
click: `prompt_samples.make_sample`, the full training's own sampling) for a few hundred steps at a small learning
rate, on the CPU, in minutes. The result is published as a new prompt card (kind 'prompt', its `parent` the base)
in the user's models folder, listed by `lesionseg models` and offered wherever lines or boxes become masks.
Input files are only read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import Cancelled, LesionSegError
from .prompt_samples import FULL_TRAINING_MIX, Lesion, components, lesions_from_components, make_sample, prompt_loss

MIN_LESION_PX = 30
"""Components of a corrected mask smaller than this are specks, not lesions (as in the full training)."""
DEFAULT_STEPS = 200
DEFAULT_LR = 3e-4
"""A tenth of the full training's peak rate: the network adapts without forgetting what it knew."""
DEFAULT_BATCH = 8


def base_prompt_card(base: str) -> tuple[Path, dict]:
    """(card path, card dict) of the prompt network to start from; a clear refusal for anything else."""
    from ..annotations.line_model import prompt_card_path
    from ..models.registry import default_registry

    path = Path(base) if str(base).endswith(".json") and Path(base).is_file() else prompt_card_path(str(base))
    if path is None:
        try:
            other = default_registry().get(base, kind=None)
        except LesionSegError:
            other = None
        if other is not None and other.kind != "prompt":
            raise LesionSegError(
                f"{base!r} is a whole-image segmentation model, not a prompt network: fine-tuning from corrected "
                "line/box masks needs a prompt base (e.g. prompt_unet; `lesionseg models` lists kind prompt). "
                "To fine-tune a segmentation model, use `lesionseg train --base` with a --modality.")
        raise LesionSegError(f"No prompt network named {base!r} (`lesionseg models` lists those of kind prompt).")
    card = json.loads(path.read_text())
    if card.get("kind") != "prompt":
        raise LesionSegError(f"{card.get('name', base)!r} is a whole-image segmentation model, not a prompt network: "
                             "fine-tuning from corrected line/box masks needs a prompt base such as prompt_unet.")
    return path, card


def is_line_only(card: dict) -> bool:
    """The first, line-only network (2 input channels: image and short axis; no `prompt_channels`): it fine-tunes
    on line prompts only (`prompt_samples.make_sample(line_only=True)`)."""
    return "prompt_channels" not in card


def fine_tunable(card) -> bool:
    """A prompt network that takes every prompt (line, box, clicks: its card lists `prompt_channels`), which is what
    the Train dock offers (its users correct line and box masks alike); a line-only network is fine-tuned from code
    or `lesionseg finetune-prompt` (benchmarks/eval_mri_line_finetune.py)."""
    if getattr(card, "kind", None) != "prompt" or card.path is None:
        return False
    return "prompt_channels" in json.loads(Path(card.path).read_text())


def fine_tunable_names(registry) -> list[str]:
    """The prompt networks a user can fine-tune (the Train dock's "Start from" list offers only these)."""
    return [c.name for c in registry.cards(kind="prompt") if fine_tunable(c)]


def _gray(image: np.ndarray, mask_ndim: int) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == mask_ndim + 1 and a.shape[-1] in (3, 4):  # colour: luminance, as the full training
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return a.astype(np.float32)


def lesions_from_masks(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], names: Sequence[str] | None = None,
                       min_px: int = MIN_LESION_PX) -> list[Lesion]:
    """Every lesion (connected component ≥ min_px) of every 2D mask, or of every slice of a 3D mask."""
    if len(images) != len(masks):
        raise LesionSegError(f"{len(images)} images but {len(masks)} masks: give one corrected mask per image.")
    names = list(names) if names is not None else [f"image {i + 1}" for i in range(len(images))]
    out: list[Lesion] = []
    for name, image, mask in zip(names, images, masks):
        m = np.asarray(mask) > 0
        img = _gray(image, m.ndim)
        if img.shape != m.shape:
            raise LesionSegError(f"{name}: image {img.shape} and mask {m.shape} differ in size.")
        if m.ndim == 2:
            out += lesions_from_components("user", name, name, img, components(m, min_px))
        elif m.ndim == 3:
            for z in np.flatnonzero(m.any((1, 2))):
                out += lesions_from_components("user", name, f"{name} z{z}", img[z], components(m[z], min_px))
        else:
            raise LesionSegError(f"{name}: a mask must be 2D or 3D, not {m.ndim}D.")
    if not out:
        raise LesionSegError(f"The masks hold no lesion of at least {min_px} pixels: nothing to learn from.")
    return out


def read_mask_folders(images: str | Path, masks: str | Path, report=None):
    """(images, masks, names) of the image/mask pairs of two folders (files matched by name)."""
    from .data import load_folder

    cases = load_folder(images, masks, report=report)
    return [c.image for c in cases], [c.mask for c in cases], [c.name for c in cases]


def _train(net, lesions: list[Lesion], steps: int, lr: float, batch: int, seed: int, progress, cancelled,
           line_only: bool = False) -> float:
    """A few hundred AdamW steps, cosine-decayed; BatchNorm statistics stay the base's (twenty masks are too few
    to re-estimate them, and the base's other modalities would pay for it). Returns the last steps' mean loss."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    net.train()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    recent: list[float] = []
    for step in range(steps):
        if cancelled is not None and cancelled():
            raise Cancelled()
        pick = rng.integers(len(lesions), size=batch)
        xs, ys = zip(*(make_sample(rng, lesions[i], mix=FULL_TRAINING_MIX, line_only=line_only) for i in pick))
        loss = prompt_loss(net(torch.from_numpy(np.stack(xs))), torch.from_numpy(np.stack(ys)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [float(loss.detach())])[-20:]
        if progress is not None:
            progress(step + 1, steps)
    net.eval()
    return float(np.mean(recent)) if recent else float("nan")


def finetune_prompt_model(base: str, images, masks, name: str, steps: int | None = None,
                          progress: Callable[[int, int], None] | None = None,
                          cancelled: Callable[[], bool] | None = None, *, lr: float = DEFAULT_LR,
                          batch: int = DEFAULT_BATCH, seed: int = 0, names: Sequence[str] | None = None,
                          data_note: str = "", output_dir: str | Path | None = None, threads: int = 1,
                          notify: bool = True):
    """Fine-tune the prompt network `base` on corrected masks and publish it as prompt card `name` (a free name:
    `name-2` when taken) after `steps` (default DEFAULT_STEPS) steps. images/masks: two folders of files with matching names, or two lists of arrays.
    progress(step, steps); cancelled() → Cancelled, nothing written. notify: tell the registry's listeners (a
    dock running this in a thread passes False and calls `registry.notify` in the GUI thread). Returns the
    published `ModelCard`."""
    import torch

    from ..annotations.line_model import load_line_model
    from ..names import check_model_name

    name = check_model_name(name)
    steps = DEFAULT_STEPS if steps is None else int(steps)
    if steps < 1:
        raise LesionSegError(f"Fine-tuning needs at least one step, not {steps}.")
    base_path, base_card = base_prompt_card(base)
    if isinstance(images, (str, Path)) or isinstance(masks, (str, Path)):
        data_note = data_note or f"{Path(images).name} / {Path(masks).name}"
        images, masks, names = read_mask_folders(images, masks)
    lesions = lesions_from_masks(images, masks, names)
    net = _copy_of(load_line_model(base_card["name"], str(base_path.parent))[0])
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(int(threads), 1))
    t0 = time.time()
    try:
        loss = _train(net, lesions, steps, lr, batch, seed, progress, cancelled, is_line_only(base_card))
    finally:
        torch.set_num_threads(threads_before)
    card = _finetuned_card(base_card, name, lesions, steps, lr, batch, seed, loss, time.time() - t0, data_note)
    return publish_prompt_model(net, card, output_dir, notify)


def _copy_of(net):
    import copy

    return copy.deepcopy(net)  # the loaded network is cached and shared: never train it in place


def _finetuned_card(base: dict, name: str, lesions: list[Lesion], steps: int, lr: float, batch: int, seed: int,
                    loss: float, seconds: float, data_note: str) -> dict:
    n_images = len({l.patient for l in lesions})
    dropped = ("metrics", "notes", "n_train_lesions", "epochs", "train_seconds")
    card = {k: v for k, v in base.items() if k not in dropped}
    card.update({
        "name": name, "parent": base["name"],
        "training_data": f"fine-tuned from {base['name']} ({base.get('training_data', '')}) on {len(lesions)} "
                         f"lesions of {n_images} corrected masks" + (f" ({data_note})" if data_note else ""),
        "recipe": f"core.training.prompt_finetune: AdamW lr {lr:g} cosine, weight decay 1e-4, batch {batch}, "
                  f"BCE + soft Dice, {steps} steps, BatchNorm statistics frozen, prompts as the full training "
                  "(line / box / click, refinement clicks, polarity and contrast jitter)",
        "date": time.strftime("%Y-%m-%d"), "steps": steps, "lr": lr, "batch": batch, "seed": seed,
        "n_train_lesions": len(lesions), "n_train_images": n_images, "train_seconds": round(seconds),
        "final_loss": round(loss, 4), "metrics": {},
        "notes": "Fine-tuned on the user's corrected masks; not validated by the plugin: check it on masks it did "
                 "not learn from (benchmarks/eval_prompt_finetune.py shows how).",
    })
    if is_line_only(base):
        # line prompts only, in the base's two channels; the crops were inverted in half the samples as in the
        # full training, so the inverted image is a test-time view as for prompt_unet
        card["recipe"] = card["recipe"].replace("line / box / click, refinement clicks", "lines only, short axis in 30 %")
        card["tta"] = ["mirror", "invert"]
    return card


def write_prompt_files(net, card: dict, folder: Path) -> Path:
    """`card["weights"]` then `<name>.json` in `folder`, each written atomically (the card last, so a half-written
    network is never listed); the card must read back as a `ModelCard` before anything is written."""
    from ..models.build import save_weights
    from ..models.card import ModelCard
    from ..io.atomic import atomic_path, write_text_atomic

    ModelCard.from_dict(card)
    with atomic_path(folder / card["weights"]) as tmp:  # the project's one atomic writer (core/io/atomic.py)
        save_weights(net, tmp)
    return write_text_atomic(folder / f"{card['name']}.json", json.dumps(card, indent=2))


def publish_prompt_model(net, card: dict, output_dir: str | Path | None = None,
                         notify: bool = True) -> "ModelCard":  # noqa: F821
    """Weights then card, each written atomically, under a name no other model has (the card last, so a half-written
    model is never listed); the registry's listeners are told."""
    from ..models.card import ModelCard
    from ..models.registry import default_registry, user_prompt_dir

    registry = default_registry()
    out = Path(output_dir) if output_dir else user_prompt_dir()
    out.mkdir(parents=True, exist_ok=True)
    name = registry.unique_name(card["name"])
    while (out / f"{name}.json").exists() or (out / f"{name}.safetensors").exists():
        name = registry.unique_name(name + "-new")
    card = dict(card, name=name, weights=f"{name}.safetensors")
    write_prompt_files(net, card, out)
    if notify:
        registry.notify(name)
    return ModelCard.read(out / f"{name}.json")
