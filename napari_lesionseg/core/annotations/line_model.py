"""A small U-Net prompted by a diameter line, a box or clicks, working in the prompt's canonical frame.

Input (5, S, S) (`PROMPT_CHANNELS`): the image resampled in the line's frame (the line always runs from column S/4
to 3S/4 on the middle row), the drawn line(s), the filled box, positive and negative clicks. The first network
(card with 2 input channels: image and short axis) is still read. Output: lesion logits on the same grid;
1.9 M parameters (`core.models.prompt_net.TinyUNet`), a few tens of milliseconds on a CPU. The shipped networks
live in `models/line_prompt/` (safetensors + a card of kind `prompt`; package data of `napari_lesionseg.resources`),
fine-tuned ones in the user's models folder (`line_prompt/` there; `core.training.prompt_finetune`); both are in
the one registry (`lesionseg models`, kind prompt), never in the list of whole-image models.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ... import resources
from ..errors import LesionSegError
from .frame import LineFrame

DEFAULT_MODEL = "prompt_unet"
LEGACY_MODEL = "busi_line_unet"
"""The first, line-only network trained on ultrasound; used when the prompt network is not installed."""


def model_dir() -> Path:
    """The shipped models/line_prompt, or $LESIONSEG_LINE_MODEL_DIR (cross-validation, tests)."""
    env = os.environ.get("LESIONSEG_LINE_MODEL_DIR")
    return Path(env) if env else resources.line_prompt_dir()


PROMPT_CHANNELS = ("image", "lines", "box", "positive", "negative")
"""Input channels of a prompt network (card `prompt_channels`): the image crop, the drawn line(s) (long axis and
the optional short axis), the box (filled), positive and negative clicks (small disks). A 2-channel card is the
first, line-only network: image and short axis."""


def normalised_crop(image2d: np.ndarray, frame: LineFrame) -> np.ndarray:
    """The image on the frame, its 1st–99th percentile mapped to [0, 1] (scanner units and bit depth drop out)."""
    crop = frame.sample(image2d, order=1)
    lo, hi = np.percentile(crop, [1, 99])
    return np.clip((crop - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def prompt_channels(frame: LineFrame, lines=(), box=None, positive=(), negative=()) -> np.ndarray:
    """(4, S, S) prompt channels on the frame; every geometry in 2D array coordinates (y, x).

    lines: segments ((y0, x0), (y1, x1)); box: its corners (4, 2) in order; positive/negative: click points.
    """
    S = frame.size
    out = np.zeros((4, S, S), np.float32)
    for a, b in lines:
        ab = frame.to_frame(np.asarray([np.asarray(a, float)[-2:], np.asarray(b, float)[-2:]]))
        draw_segment(out[0], ab[0], ab[1])
    if box is not None:
        from skimage.draw import polygon

        rc = frame.to_frame(np.asarray(box, float)[:, -2:])
        rr, cc = polygon(rc[:, 0], rc[:, 1], (S, S))
        out[1, rr, cc] = 1.0
    for k, pts in ((2, positive), (3, negative)):
        for p in pts:
            r, c = frame.to_frame(np.asarray(p, float)[-2:][None])[0]
            draw_disk(out[k], r, c, 2.5)
    return out


def draw_disk(canvas: np.ndarray, r: float, c: float, radius: float) -> None:
    rr, cc = np.ogrid[:canvas.shape[0], :canvas.shape[1]]
    canvas[(rr - r) ** 2 + (cc - c) ** 2 <= radius ** 2] = 1.0


def frame_input(image2d: np.ndarray, frame: LineFrame, short=None, *, card: dict | None = None, line=None,
                box=None, positive=(), negative=()) -> np.ndarray:
    """(C, S, S) float32 network input for the network described by `card` (default: the installed one)."""
    crop = normalised_crop(image2d, frame)
    if card is None:
        card = load_line_model(installed_model(), str(model_dir()))[1]
    if "prompt_channels" not in card:  # the first, line-only network: image and short axis
        chan = np.zeros_like(crop)
        if short is not None:
            a, b = frame.to_frame(np.asarray(short, float)[:, -2:])
            draw_segment(chan, a, b)
        return np.stack([crop, chan]).astype(np.float32)
    segs = ([line] if line is not None else []) + ([short] if short is not None else [])
    return np.concatenate([crop[None], prompt_channels(frame, segs, box, positive, negative)])


def draw_segment(canvas: np.ndarray, a, b, width: float = 1.0) -> None:
    """Rasterise a segment (frame coordinates) into `canvas` in place, with a soft width."""
    n = int(np.ceil(np.hypot(*(np.asarray(b) - np.asarray(a))))) * 2 + 2
    t = np.linspace(0, 1, n)[:, None]
    pts = np.round(np.asarray(a) * (1 - t) + np.asarray(b) * t).astype(int)
    ok = (pts >= 0).all(1) & (pts < np.array(canvas.shape)).all(1)
    canvas[pts[ok, 0], pts[ok, 1]] = 1.0
    if width > 1:
        from scipy import ndimage as ndi

        canvas[:] = ndi.maximum_filter(canvas, size=int(width))


def build_net(channels=(16, 32, 64, 128), in_channels: int = 2):
    """The prompt network's architecture, now `core.models.prompt_net.TinyUNet` (kept for old scripts)."""
    from ..models.prompt_net import build_prompt_network

    return build_prompt_network(channels, in_channels)


def prompt_card_path(name: str, directory: str | Path | None = None) -> Path | None:
    """Where the prompt network `name`'s card is: `directory` (default `model_dir()`: the shipped networks or
    $LESIONSEG_LINE_MODEL_DIR), else the user's fine-tuned prompt networks (`registry.user_prompt_dir()`)."""
    from ..models.registry import user_prompt_dir

    for d in (Path(directory) if directory else model_dir(), user_prompt_dir()):
        p = d / f"{name}.json"
        if p.exists():
            return p
    return None


def load_line_model(name: str = DEFAULT_MODEL, directory: str | None = None):
    """(network in eval mode, card dict). Raises LesionSegError when the card or its weights are missing."""
    path = prompt_card_path(name, directory)
    if path is None:
        where = Path(directory) if directory else model_dir()
        raise LesionSegError(f"The prompt network {name!r} is not installed ({where / (name + '.json')} is missing "
                             "and no fine-tuned prompt network has that name; `lesionseg models` lists them).")
    return _load_card(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=6)
def _load_card(path: str, mtime_ns: int):
    """Through the one model system: the card read and checked as a `ModelCard` (kind 'prompt'), the network
    built from `core.models` and its safetensors loaded with the shape checks every model gets."""
    from ..models.build import load_state, load_weights_into
    from ..models.card import ModelCard
    from ..models.prompt_net import DEFAULT_CHANNELS, build_prompt_model

    card = ModelCard.read(path)
    if card.kind != "prompt":
        raise LesionSegError(f"{card.name} is a whole-image model, not a prompt network: choose a prompt network "
                             "(`lesionseg models`, kind prompt).")
    raw = json.loads(Path(path).read_text())
    wp = card.weights_path
    if wp is None or not wp.exists():
        raise LesionSegError(f"The prompt network {card.name!r}: weights file {wp} is missing.")
    net = build_prompt_model(card.in_channels, tuple(raw.get("channels", DEFAULT_CHANNELS)), card.members)
    load_weights_into(net, load_state(wp), f"Prompt network {card.name}")
    net.eval()
    return net, raw


def installed_model() -> str:
    """Name of the prompt network in `model_dir()`: the all-prompt one, else the first line-only one."""
    for name in (DEFAULT_MODEL, LEGACY_MODEL):
        if (model_dir() / f"{name}.json").exists():
            return name
    return DEFAULT_MODEL


def network_for(modality: str | None) -> str | None:
    """The prompt network for an image of `modality` (None: the installed all-modality one).

    Ultrasound keeps the first, BUSI-only line network: held out by lesion group it scored 0.912 mean Dice against
    0.895 for the all-modality network, and 0.91 at three other hospitals (measured independently). Boxes and
    clicks always use the all-modality network (the first one takes lines only)."""
    if modality == "ultrasound" and line_model_available(LEGACY_MODEL):
        return LEGACY_MODEL
    return None


def check_prompt_model(name: str) -> str:
    """`name` when it is an installed prompt network (shipped or fine-tuned), else a clear LesionSegError."""
    load_line_model(name)
    return name


def line_model_available(name: str | None = None) -> bool:
    return prompt_card_path(name or installed_model()) is not None


def model_card() -> dict:
    return load_line_model(installed_model(), str(model_dir()))[1]


def predict_frames(inputs: np.ndarray, name: str | None = None, tta: bool = True) -> np.ndarray:
    """(N, C, S, S) inputs → (N, S, S) lesion probabilities, averaged over the card's test-time views: the mirror
    image across the line (prompt unchanged; card `tta` has "mirror", or no `tta` at all) and, for a network trained
    on both polarities ("invert"), the inverted image.
    tta=False: one plain pass (a quick look, e.g. the size search of a click)."""
    import torch

    net, card = load_line_model(name or installed_model(), str(model_dir()))
    wanted = int(card.get("in_channels", inputs.shape[1]))
    if inputs.shape[1] != wanted:  # e.g. a pilot's network trained with extra inputs (--modality-channels)
        raise LesionSegError(f"The prompt network {card.get('name', name)!r} takes {wanted} input channels; this "
                             f"version gives it {inputs.shape[1]}. Choose another prompt network "
                             "(`lesionseg models`, kind prompt).")
    # One thread: for a net this small, more threads only fight (seconds instead of milliseconds on a busy CPU).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(inputs, np.float32))
            if not tta:
                return torch.sigmoid(net(x))[:, 0].numpy()
            views = [x]
            card_views = card.get("tta", ["mirror"])  # a card without the field: the first network, always mirrored
            if "invert" in card_views:
                inv = x.clone()
                inv[:, 0] = 1 - inv[:, 0]
                views.append(inv)
            n_plain = len(views)
            if "mirror" in card_views:
                views += [v.flip(-2) for v in views]  # mirrored across the line
            p = torch.sigmoid(net(torch.cat(views))).split(len(x))
            p = (sum(p[:n_plain]) + sum(q.flip(-2) for q in p[n_plain:])) / len(p)
    finally:
        torch.set_num_threads(threads)
    return p[:, 0].numpy()
