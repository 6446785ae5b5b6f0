"""The segmentation engine: a loaded model that turns images, slices, volumes and slides into probabilities.

Probabilities are the product (kept by the caller for live thresholding): binary models give one float32 map of
lesion probability; multi-class models give (background + classes) softmax maps. Nothing here knows about Qt;
`progress(done, total)` and `cancelled()` callbacks let the dock show progress and stop the work.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import Cancelled, LesionSegError
from ..models.build import load_model
from ..models.card import ModelCard
from ..preprocess import as_float_image, normalisation_stats, normalise, slices_input, to_model_input
from .device import autocast, is_oom, resolve_device

Progress = Callable[[int, int], None] | None
CancelCheck = Callable[[], bool] | None


def _check(cancelled: CancelCheck) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled()


class Predictor:
    """A model on a device, with batched forward passes that survive a GPU running out of memory."""

    def __init__(self, card: ModelCard, device: str | torch.device = "auto", batch_size: int = 8,
                 notice: Callable[[str], None] | None = None, net: torch.nn.Module | None = None,
                 flips: bool = True):
        """flips=False: one network pass per window instead of the card's test-time flips (faster by their
        number, e.g. 3× for `histology-nuclei`, at a small cost in Dice: the card's figures are with them)."""
        self.card = card
        self.device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.batch_size = max(1, int(batch_size))
        self.notice = notice or (lambda msg: None)
        self._flips = _tta_dims(card.tta) if flips else []
        if net is None:
            net = load_model(card, self.device).net
        self.net = net.to(self.device).eval()
        self.calls = 0
        """Number of forward batches run (tests assert that thresholding never calls the model)."""

    # -- forward -----------------------------------------------------------------------------------------
    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        if self.card.multiclass:
            return torch.softmax(logits.float(), dim=1)
        return torch.sigmoid(logits.float())

    @torch.inference_mode()
    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 → (N, K, H, W) float32 probabilities, in chunks of `batch_size`."""
        if batch.shape[1] != self.card.in_channels:
            raise LesionSegError(
                f"Model {self.card.name} takes {self.card.in_channels} input channel(s); "
                f"this image gives {batch.shape[1]}.")
        out = []
        i = 0
        while i < len(batch):
            chunk = batch[i:i + self.batch_size]
            try:
                out.append(self._forward_chunk(chunk))
                self.calls += 1
                i += len(chunk)
            except Exception as e:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_oom(e):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.batch_size > 1:
                    self.batch_size //= 2
                    self.notice(f"GPU out of memory: retrying with batch size {self.batch_size}.")
                elif self.device.type != "cpu":
                    self.notice("GPU out of memory even for one tile: continuing on the CPU (slower).")
                    self.device = torch.device("cpu")
                    self.net = self.net.to(self.device)
                else:
                    raise LesionSegError("Out of memory on the CPU: the image is too large for this model.") from e
        return np.concatenate(out, axis=0)

    @property
    def stride(self) -> int:
        """Input sizes must be multiples of this (an smp U-Net's encoder halves the image 5 times)."""
        encoder = getattr(self.net, "encoder", None)
        return int(getattr(encoder, "output_stride", 1) or 1)

    def _place(self, x: torch.Tensor) -> torch.Tensor:
        """Move a batch to the device (one place to wrap when simulating a GPU in tests)."""
        return x.to(self.device)

    def _forward_chunk(self, chunk: np.ndarray) -> np.ndarray:
        """One batch on the device: padded (reflect) up to a multiple of the encoder stride, cropped back."""
        h, w = chunk.shape[-2:]
        s = self.stride
        x = torch.from_numpy(np.ascontiguousarray(chunk))
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        x = self._place(x)
        with autocast(self.device):
            y = self._activate(self.net(x))
            for dims in self._flips:  # test-time flips, averaged (the card says which)
                y += self._activate(self.net(x.flip(dims))).flip(dims)
            y /= 1 + len(self._flips)
        return y[..., :h, :w].cpu().numpy()

    # -- 2D images ---------------------------------------------------------------------------------------
    def _squeeze(self, probs: np.ndarray) -> np.ndarray:
        if not isinstance(probs, np.ndarray):  # a zarr store for a slide: left whole, read lazily by the caller
            return probs
        return probs[0] if not self.card.multiclass else probs

    def predict_image(self, image: np.ndarray, progress: Progress = None, cancelled: CancelCheck = None,
                      spacing: tuple[float, float] | None = None, overview=None) -> np.ndarray:
        """One 2D image (H, W) or (H, W, 3) → probabilities (H, W), or (K, H, W) for multi-class models.

        `overview`: for a lazy slide, a coarse pyramid level (see `tiles.pick_overview`) to find the tissue on."""
        if self.card.input_kind == "slices":
            raise LesionSegError(f"Model {self.card.name} needs a volume (it reads neighbouring slices).")
        if self.card.fit == "tile":
            from .tiles import predict_tiled

            zoom = self.spacing_zoom(spacing) if isinstance(image, np.ndarray) else None
            if zoom is not None:  # resample to the model's training pixel size, and the result back
                return self._squeeze(_zoom_probs(predict_tiled(
                    self, _zoom_image(image, zoom), progress=progress, cancelled=cancelled), image.shape[:2]))
            return self._squeeze(predict_tiled(self, image, progress=progress, cancelled=cancelled,
                                               spacing=spacing, overview=overview))
        if self.card.fit == "breast":  # mammograms: the breast's frame, the result back on the image's grid
            from ..breast import breast_input

            x, frame = breast_input(image, self.card)
            _check(cancelled)
            probs = frame.to_original(self.forward(x[None])[0])
            if progress:
                progress(1, 1)
            return self._squeeze(probs)
        x = to_model_input(image, self.card)
        _check(cancelled)
        probs = self._resize_predict(x[None])[0]
        if progress:
            progress(1, 1)
        return self._squeeze(probs)

    def spacing_zoom(self, spacing) -> tuple[float, float] | None:
        """How much to scale an image of this pixel size to match the model's training pixel size, or None.

        Only plausible zooms (1.1x–4x either way) are applied: files that do not state a pixel size open at
        1.0 "mm", which must not be taken literally."""
        if spacing is None or not self.card.spacing_mm:
            return None
        zoom = tuple(float(s) / float(m) for s, m in zip(spacing[-2:], self.card.spacing_mm[-2:]))
        if all(abs(z - 1) < 0.1 for z in zoom) or not all(0.25 <= z <= 4 for z in zoom):
            return None
        return zoom

    def _resize_predict(self, batch: np.ndarray) -> np.ndarray:
        """Whole-image models: resize (N, C, H, W) to the training size, predict, resize back."""
        h, w = batch.shape[-2:]
        ph, pw = self.card.patch_size
        x = torch.from_numpy(np.ascontiguousarray(batch))
        x = F.interpolate(x, size=(ph, pw), mode="bilinear", align_corners=False, antialias=True)
        p = torch.from_numpy(self.forward(x.numpy()))
        p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
        return p.numpy()

    # -- volumes -----------------------------------------------------------------------------------------
    def volume_stats(self, volume: np.ndarray) -> tuple[float, float]:
        """Normalisation statistics of a whole volume (every slice normalised alike), from a strided sample."""
        step = max(1, int(round((volume.size / 2_000_000) ** (1 / 3))))
        sample = np.asarray(volume[::step, ::step, ::step], dtype=np.float32)
        return normalisation_stats(sample, self.card.normalisation)

    def predict_slices(self, volume: np.ndarray, indices: list[int], axis: int = 0, progress: Progress = None,
                       cancelled: CancelCheck = None, stats: tuple[float, float] | None = None) -> np.ndarray:
        """Probabilities for the given slices of a 3D volume along `axis` → (len(indices), [K,] H, W)."""
        vol = np.asarray(volume)
        if vol.ndim != 3:
            raise LesionSegError(f"Expected a 3D volume, got shape {vol.shape}.")
        if self.card.fit == "breast":
            raise LesionSegError(f"Model {self.card.name} is for 2D mammograms; this is a volume.")
        as_float_image(vol[tuple(slice(0, 2) for _ in range(3))])
        if stats is None:
            stats = self.volume_stats(vol)
        ctx = (self.card.in_channels - 1) // 2 if self.card.input_kind == "slices" else 0
        out = []
        total = len(indices)
        for start in range(0, total, self.batch_size):
            _check(cancelled)
            batch = []
            for i in indices[start:start + self.batch_size]:
                if ctx:
                    x = slices_input(vol, i, ctx, axis=axis)
                else:
                    x = np.take(vol, i, axis=axis)[None].astype(np.float32)
                if not np.isfinite(x).all():
                    raise LesionSegError("The volume contains NaN or infinite values.")
                if "clahe" in self.card.preprocessing:
                    from ..preprocess import clahe

                    x = clahe(x)
                    batch.append(normalise(x, self.card.normalisation))
                else:
                    batch.append(normalise(x, self.card.normalisation, stats))
            batch = np.stack(batch)
            if self.card.fit == "resize":
                probs = self._resize_predict(batch)
            else:
                probs = self.forward(batch)
            out.append(probs)
            if progress:
                progress(min(start + self.batch_size, total), total)
        probs = np.concatenate(out, axis=0)
        return probs[:, 0] if not self.card.multiclass else probs

    def predict_volume(self, volume: np.ndarray, axis: int = 0, progress: Progress = None,
                       cancelled: CancelCheck = None) -> np.ndarray:
        """Every slice along `axis` → a probability volume in the input's shape ([K,] Z, Y, X)."""
        vol = np.asarray(volume)
        probs = self.predict_slices(vol, list(range(vol.shape[axis])), axis=axis, progress=progress,
                                    cancelled=cancelled)
        lead = 1 if self.card.multiclass else 0
        if self.card.multiclass:
            probs = np.moveaxis(probs, 0, 1)  # (K, n, H, W)
        return np.moveaxis(probs, lead, lead + axis)


TTA_FLIPS = {"hflip": (-1,), "vflip": (-2,)}


def _tta_dims(names) -> list[tuple[int, ...]]:
    unknown = [n for n in names if n not in TTA_FLIPS]
    if unknown:
        raise LesionSegError(f"Unknown test-time augmentation {', '.join(unknown)}; known: {', '.join(TTA_FLIPS)}.")
    return [TTA_FLIPS[n] for n in names]


def _zoom_image(image: np.ndarray, zoom: tuple[float, float]) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(1, round(h * zoom[0])), max(1, round(w * zoom[1])))
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    x = x[None, None] if image.ndim == 2 else x.permute(2, 0, 1)[None]
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return (y[0] if image.ndim == 2 else y.permute(1, 2, 0)).numpy()


def _zoom_probs(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    p = torch.from_numpy(np.ascontiguousarray(probs))[None]
    return F.interpolate(p, size=tuple(shape), mode="bilinear", align_corners=False)[0].numpy()
