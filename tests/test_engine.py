"""The segmentation engine without a GUI: sliding-window blending, background skipping, GPU out-of-memory policy,
device choice, clear errors for images a model cannot read, and mask post-processing with known answers."""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np
import pytest
import torch

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.geometry import Geometry
from napari_lesionseg.core.inference import engine as engine_mod
from napari_lesionseg.core.inference.device import available_devices, resolve_device
from napari_lesionseg.core.inference.engine import Predictor
from napari_lesionseg.core.inference.run import check_fit
from napari_lesionseg.core.inference.threshold import PostProcessing, apply_threshold, postprocess
from napari_lesionseg.core.inference.tiles import gaussian_importance, predict_tiled, tile_starts
from napari_lesionseg.core.io import Scan
from napari_lesionseg.core.models.card import ClassInfo, ModelCard
from napari_lesionseg.core.preprocess import to_model_input

torch.set_num_threads(1)


def _fcn(in_ch: int, out_ch: int, seed: int = 0) -> torch.nn.Module:
    """A small fully convolutional net (receptive field 5 px) whose output varies strongly with the input.

    Its weights are seeded noise: it is a function for checking the blending arithmetic, not a model."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(in_ch, 6, 3, padding=1), torch.nn.Tanh(),
                              torch.nn.Conv2d(6, out_ch, 3, padding=1))
    with torch.no_grad():
        net[2].weight.mul_(8.0)
    return net.eval()


def _card(kind="rgb", classes=("lesion",), fit="tile", patch=(64, 64)) -> ModelCard:
    return ModelCard(name=f"test-{kind}", modality="histology" if kind == "rgb" else "mri",
                     in_channels=3 if kind in ("rgb", "slices") else 1, input_kind=kind,
                     classes=[ClassInfo(c) for c in classes], fit=fit, patch_size=list(patch),
                     normalisation={"kind": "range", "max": 255.0})


def _tissue(rng, shape) -> np.ndarray:
    """H&E-like colour texture (pink/purple, saturated)."""
    h, w = shape
    base = np.array([200, 120, 170], np.float32)
    tex = rng.normal(0, 35, (h, w, 1)).astype(np.float32)
    nuclei = (rng.random((h, w)) < 0.05)[..., None] * np.array([-110, -60, -20], np.float32)
    return np.clip(base + tex + nuclei, 0, 255).astype(np.uint8)


def _slide(rng, shape=(320, 384), tissue=(slice(0, 128), slice(0, 160))) -> np.ndarray:
    img = np.clip(rng.normal(244, 3, shape + (3,)), 0, 255).astype(np.uint8)  # white glass
    sub = img[tissue]
    img[tissue] = _tissue(rng, sub.shape[:2])
    return img


# -- sliding window ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(200, 232), (50, 300)])
def test_tiled_equals_whole_image_for_a_fully_convolutional_net(shape):
    rng = np.random.default_rng(0)
    card = _card()
    pred = Predictor(card, device="cpu", batch_size=4, net=_fcn(3, 1))
    image = _tissue(rng, shape)
    whole = pred.forward(to_model_input(image, card)[None])[0, 0]
    assert whole.std() > 0.1, "the test net must give varied probabilities to make the comparison meaningful"
    tiled = predict_tiled(pred, image, overlap=0.5, skip_background=False)[0]
    assert tiled.shape == shape
    # Away from the image border: there every covering tile has a small Gaussian weight, so a tile's own
    # zero-padded edge is not outweighed (the same holds for MONAI's blending).
    inner = (slice(16, -16), slice(16, -16))
    # Tolerance: a tile's wrong edge pixels still carry the 1e-3 floor weight (≈ 3e-3 of the total at most).
    np.testing.assert_allclose(tiled[inner], whole[inner], atol=5e-3)
    assert np.abs(tiled[inner] - whole[inner]).mean() < 2e-4
    assert np.abs(tiled - whole).mean() < 5e-3


def test_tile_grid_covers_the_image_like_monai():
    assert tile_starts(4096, 256, 192) == list(range(0, 3841, 192))
    assert tile_starts(100, 64, 48) == [0, 36]
    assert tile_starts(40, 64, 48) == [0]
    g = gaussian_importance((64, 64))
    assert g.shape == (64, 64) and g.max() == pytest.approx(1.0) and g.min() == pytest.approx(1e-3)
    assert g[31, 31] > g[31, 8] > g[31, 0]


def test_background_tiles_are_skipped_and_zero():
    rng = np.random.default_rng(1)
    card = _card()
    image = _slide(rng)
    full_pred = Predictor(card, device="cpu", batch_size=1, net=_fcn(3, 1))
    full = predict_tiled(full_pred, image, overlap=0.25, skip_background=False)[0]
    n_all = full_pred.calls

    pred = Predictor(card, device="cpu", batch_size=1, net=_fcn(3, 1))
    probs = predict_tiled(pred, image, overlap=0.25)[0]
    n_tissue = pred.calls
    # tiles: 0,48,...; tissue covers rows < 128 and columns < 160 → 3 × 4 tiles touch it, of 7 × 8
    assert n_all == len(tile_starts(320, 64, 48)) * len(tile_starts(384, 64, 48))
    assert 0 < n_tissue <= n_all // 2, (n_tissue, n_all)
    assert (probs[200:, :] == 0).all() and (probs[:, 250:] == 0).all(), "skipped glass must have probability 0"
    # inside the tissue (away from the skipped tiles) the result is the same as without skipping
    np.testing.assert_allclose(probs[:96, :128], full[:96, :128], atol=1e-5)
    assert (full[200:, 250:] > 0).any(), "without skipping the net does produce output on glass"


def test_multiclass_tiles_give_softmax_and_background_where_skipped():
    rng = np.random.default_rng(2)
    card = _card(classes=("cancer", "stroma"))
    pred = Predictor(card, device="cpu", batch_size=2, net=_fcn(3, 3))
    probs = pred.predict_image(_slide(rng))
    assert probs.shape == (3, 320, 384)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    assert (probs[0, 250:, 300:] == 1.0).all()


def test_odd_sized_images_are_padded_for_a_unet():
    """An smp U-Net needs sides divisible by 32; the engine pads and crops back instead of failing."""
    from napari_lesionseg.core.models.build import build_network

    card = _card(kind="slices", patch=(64, 64))
    card.encoder, card.decoder_channels = "resnet18", [16, 8, 8, 8, 4]
    card.normalisation = {"kind": "zscore"}
    pred = Predictor(card, device="cpu", net=build_network(card))  # untrained: only shapes are checked
    assert pred.stride == 32
    vol = np.random.default_rng(0).normal(300, 40, (5, 45, 70)).astype(np.float32)
    probs = pred.predict_volume(vol)
    assert probs.shape == vol.shape and np.isfinite(probs).all()


# -- out of memory ----------------------------------------------------------------------------------------

class _GpuLimitedNet(torch.nn.Module):
    """Stands in for a net on a GPU with little memory: `.to()` only records the device (there is no GPU here)
    and a forward with more than `max_batch` images on 'cuda' raises CUDA's out-of-memory error."""

    def __init__(self, max_batch: int):
        super().__init__()
        self.inner = _fcn(1, 1)
        self.max_batch = max_batch
        self.on = "cpu"
        self.seen: list[tuple[str, int]] = []

    def to(self, device, *args, **kwargs):  # noqa: D102
        self.on = torch.device(device).type
        return self

    def forward(self, x):
        self.seen.append((self.on, len(x)))
        if self.on == "cuda" and len(x) > self.max_batch:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


class _SimulatedGpuPredictor(Predictor):
    """Keeps tensors on the CPU where a real GPU would receive them; the OOM policy under test is unchanged."""

    def _place(self, x):
        return x


@pytest.fixture
def _no_autocast(monkeypatch):
    monkeypatch.setattr(engine_mod, "autocast", lambda device: contextlib.nullcontext())


def _batch(n=7):
    return np.random.default_rng(3).normal(0, 1, (n, 1, 32, 32)).astype(np.float32)


def test_oom_halves_the_batch(_no_autocast):
    net, notices = _GpuLimitedNet(max_batch=2), []
    pred = _SimulatedGpuPredictor(_card("gray"), device=torch.device("cuda"), batch_size=8, net=net,
                                  notice=notices.append)
    x = _batch()
    out = pred.forward(x)
    with torch.no_grad():
        expected = torch.sigmoid(net.inner(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert pred.batch_size == 2 and pred.device.type == "cuda"
    assert [n for _, n in net.seen[:3]] == [8 if len(x) >= 8 else 7, 4, 2]
    assert all(n <= 2 for _, n in net.seen[3:])
    assert notices == ["GPU out of memory: retrying with batch size 4.",
                       "GPU out of memory: retrying with batch size 2."]


def test_oom_even_for_one_image_falls_back_to_cpu_with_a_notice(_no_autocast):
    net, notices = _GpuLimitedNet(max_batch=0), []
    pred = _SimulatedGpuPredictor(_card("gray"), device=torch.device("cuda"), batch_size=4, net=net,
                                  notice=notices.append)
    out = pred.forward(_batch(5))
    assert out.shape == (5, 1, 32, 32)
    assert pred.device.type == "cpu" and net.on == "cpu"
    assert any("continuing on the CPU" in n for n in notices), notices
    assert net.seen[-1][0] == "cpu"


def test_oom_on_cpu_is_a_clear_error():
    class CpuOom(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 8 GB. out of memory")

    pred = Predictor(_card("gray"), device="cpu", batch_size=2, net=CpuOom())
    with pytest.raises(LesionSegError, match="Out of memory on the CPU"):
        pred.forward(_batch(3))


def test_other_errors_are_not_mistaken_for_oom():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise ValueError("a bug")

    with pytest.raises(ValueError):
        Predictor(_card("gray"), device="cpu", net=Broken()).forward(_batch(2))


# -- devices and bad input --------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_device_resolution_without_gpu():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(LesionSegError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(LesionSegError, match="no CUDA GPU"):
        resolve_device("cuda:1")
    with pytest.raises(LesionSegError, match="Unknown device"):
        resolve_device("gpu-please")
    assert available_devices()[0] == "auto" and available_devices()[-1] == "cpu"


def test_channel_mismatch_is_a_clear_error():
    pred = Predictor(_card("gray"), device="cpu", net=_fcn(1, 1))
    with pytest.raises(LesionSegError, match="1 input channel"):
        pred.forward(np.zeros((1, 3, 32, 32), np.float32))


def _scan(data, axes, rgb=False):
    return Scan(data=data, geometry=Geometry(spacing=(1.0,) * len([a for a in axes if a in "zyx"])),
                modality="mri", name="scan", rgb=rgb, axes=axes)


def test_model_that_does_not_fit_the_scan():
    with pytest.raises(LesionSegError, match="neighbouring slices"):
        check_fit(_card("slices"), _scan(np.zeros((32, 32)), "yx"))
    with pytest.raises(LesionSegError, match="colour"):
        check_fit(_card("rgb"), _scan(np.zeros((4, 32, 32)), "zyx"))
    with pytest.raises(LesionSegError, match="4D"):
        check_fit(_card("gray"), _scan(np.zeros((2, 4, 32, 32)), "tzyx"))
    pred = Predictor(_card("slices"), device="cpu", net=_fcn(3, 1))
    with pytest.raises(LesionSegError, match="needs a volume"):
        pred.predict_image(np.zeros((32, 32), np.float32))


@pytest.mark.parametrize("fit", ["resize", "tile"])
def test_nan_image_is_a_clear_error(fit):
    img = np.random.default_rng(0).normal(100, 10, (64, 64)).astype(np.float32)
    img[10, 10] = np.nan
    pred = Predictor(_card("gray", fit=fit), device="cpu", net=_fcn(1, 1))
    with pytest.raises(LesionSegError, match="NaN"):
        pred.predict_image(img)


def test_nan_volume_is_a_clear_error():
    vol = np.ones((4, 32, 32), np.float32)
    vol[3, 5, 5] = np.inf
    pred = Predictor(_card("gray"), device="cpu", net=_fcn(1, 1))
    with pytest.raises(LesionSegError, match="NaN or infinite"):
        pred.predict_volume(vol)
    assert pred.calls == 0 or pred.calls < 4


# -- threshold and post-processing ------------------------------------------------------------------------

def test_apply_threshold_writes_in_place_and_only_in_region():
    probs = np.linspace(0, 1, 5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    out = np.full(probs.shape, 7, np.uint8)
    res = apply_threshold(probs, 0.5, out, region=(2, slice(None), slice(None)))
    assert res is out
    np.testing.assert_array_equal(out[2], probs[2] >= 0.5)
    assert (np.delete(out, 2, axis=0) == 7).all()
    apply_threshold(probs, 0.3, out)
    np.testing.assert_array_equal(out, probs >= 0.3)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}
    out16 = np.zeros(probs.shape, np.int32)
    np.testing.assert_array_equal(apply_threshold(probs, 0.3, out16), probs >= 0.3)


def test_multiclass_threshold_gives_argmax_labels():
    p = np.zeros((3, 2, 3), np.float32)
    p[:, 0, 0] = [0.1, 0.7, 0.2]   # cancer
    p[:, 0, 1] = [0.2, 0.3, 0.5]   # stroma
    p[:, 0, 2] = [0.6, 0.3, 0.1]   # background by argmax
    p[:, 1, 0] = [0.45, 0.3, 0.25]  # stroma+cancer 0.55: cancer at t=0.5, background at t=0.6
    p[:, 1, 1] = [0.9, 0.05, 0.05]
    p[:, 1, 2] = [0.0, 0.0, 1.0]
    out = np.zeros((2, 3), np.uint8)
    apply_threshold(p, 0.5, out, multiclass=True)
    np.testing.assert_array_equal(out, [[1, 2, 0], [1, 0, 2]])
    apply_threshold(p, 0.6, out, multiclass=True)
    np.testing.assert_array_equal(out, [[1, 2, 0], [0, 0, 2]])


def _disk(shape, c, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r


def test_fill_holes():
    ring = _disk((40, 40), (20, 20), 12) & ~_disk((40, 40), (20, 20), 5)
    out = postprocess(ring.astype(np.uint8), PostProcessing(fill_holes=True))
    np.testing.assert_array_equal(out > 0, _disk((40, 40), (20, 20), 12))


def test_min_size_in_mm2_uses_the_pixel_spacing():
    m = np.zeros((40, 40), np.uint8)
    m[2:5, 2:5] = 1      # 9 px
    m[20:30, 20:30] = 1  # 100 px
    small_gone = postprocess(m, PostProcessing(min_size_mm2=5.0), spacing=(0.5, 0.5))  # 2.25 vs 25 mm²
    assert small_gone[2:5, 2:5].sum() == 0 and small_gone[20:30, 20:30].all()
    both = postprocess(m, PostProcessing(min_size_mm2=30.0), spacing=(2.0, 2.0))  # 36 vs 400 mm²
    np.testing.assert_array_equal(both, m)
    none = postprocess(m, PostProcessing(min_size_mm2=500.0), spacing=(2.0, 2.0))
    assert not none.any()


def test_min_size_in_3d_is_in_mm3():
    m = np.zeros((6, 20, 20), np.uint8)
    m[1:3, 2:4, 2:4] = 1       # 8 voxels × 2 mm³ = 16 mm³
    m[1:5, 10:15, 10:15] = 1   # 100 voxels = 200 mm³
    out = postprocess(m, PostProcessing(min_size_mm2=20.0), spacing=(2.0, 1.0, 1.0))
    assert out[1:3, 2:4, 2:4].sum() == 0 and out[1:5, 10:15, 10:15].all()


def test_keep_largest_and_threshold_with_post_processing():
    probs = np.zeros((50, 50), np.float32)
    probs[_disk((50, 50), (10, 10), 4)] = 0.9
    probs[_disk((50, 50), (30, 30), 9)] = 0.8
    probs[_disk((50, 50), (30, 30), 3)] = 0.2   # a hole in the biggest lesion at t=0.5
    probs[45:48, 2:5] = 0.95
    out = np.zeros(probs.shape, np.uint8)
    apply_threshold(probs, 0.5, out, post=PostProcessing(fill_holes=True, keep_largest=True), spacing=(1.0, 1.0))
    np.testing.assert_array_equal(out > 0, _disk((50, 50), (30, 30), 9))
    apply_threshold(probs, 0.5, out, post=PostProcessing(), spacing=(1.0, 1.0))
    np.testing.assert_array_equal(out > 0, probs >= 0.5)


class _RecordingSlide:
    """A full-resolution slide level that records every read (as a lazy reader would decode tiles)."""

    def __init__(self, a):
        self.a, self.reads = a, []
        self.shape, self.ndim, self.dtype = a.shape, a.ndim, a.dtype

    def __getitem__(self, key):
        self.reads.append(key)
        return self.a[key]


def test_slide_tissue_is_found_on_an_overview_level_without_reading_the_full_level():
    from napari_lesionseg.core.inference.tiles import pick_overview

    rng = np.random.default_rng(4)
    full = _slide(rng, (512, 640), (slice(0, 160), slice(0, 200)))
    level0 = _RecordingSlide(full)
    levels = [level0, full[::2, ::2], full[::4, ::4]]
    assert pick_overview(levels, min_side=300) is levels[1]
    card = _card()
    pred = Predictor(card, device="cpu", batch_size=1, net=_fcn(3, 1))
    probs = predict_tiled(pred, level0, overview=pick_overview(levels, min_side=300))[0]
    assert all(k[0].step is None for k in level0.reads), "no strided read of the full-resolution level"
    assert len(level0.reads) == pred.calls, "only the tiles that were run are read"
    reference = predict_tiled(Predictor(card, device="cpu", batch_size=1, net=_fcn(3, 1)), full)[0]
    np.testing.assert_allclose(probs[:128, :160], reference[:128, :160], atol=1e-5)
    assert (probs[300:, 300:] == 0).all()


# -- test-time flips ----------------------------------------------------------------------------------------

def _unflipped():
    """A card without flips, an asymmetric network, an image, and the network's plain prediction of it."""
    card = _card("gray", fit="resize", patch=(32, 32))
    card.normalisation = {"kind": "range", "max": 255.0}
    net = _fcn(1, 1, seed=3)
    img = np.random.default_rng(1).integers(0, 255, (40, 48)).astype(np.uint8)
    return card, net, img, Predictor(card, device="cpu", net=net).predict_image(img)


def test_test_time_flips_average_the_flipped_predictions():
    """A card with tta ["hflip"] gives the mean of the plain and the mirrored-back prediction, for every scope."""
    card, net, img, plain = _unflipped()
    mirrored = Predictor(card, device="cpu", net=net).predict_image(img[:, ::-1].copy())[:, ::-1]
    card.tta = ["hflip"]
    p = Predictor(card, device="cpu", net=net)
    both = p.predict_image(img)
    assert not np.allclose(plain, mirrored, atol=1e-3)  # the net is not symmetric, so the flip matters
    np.testing.assert_allclose(both, (plain + mirrored) / 2, atol=1e-5)
    assert p.calls == 1  # one batch (two passes inside it)


def test_flips_off_gives_one_plain_pass_of_a_flipping_model():
    """Predictor(flips=False), behind `lesionseg predict --no-flips` and the dock's checkbox: the plain prediction."""
    card, net, img, plain = _unflipped()
    card.tta = ["hflip", "vflip"]
    flipped = Predictor(card, device="cpu", net=net).predict_image(img)
    one_pass = Predictor(card, device="cpu", net=net, flips=False).predict_image(img)
    assert not np.allclose(flipped, plain, atol=1e-3)
    np.testing.assert_allclose(one_pass, plain, atol=1e-6)


def test_unknown_test_time_augmentation_is_a_clear_error():
    card = _card("gray", fit="resize", patch=(32, 32))
    card.tta = ["rotate17"]
    with pytest.raises(LesionSegError, match="Unknown test-time augmentation"):
        Predictor(card, device="cpu", net=_fcn(1, 1)).predict_image(np.zeros((32, 32), np.uint8))


def test_a_slide_sized_result_on_disk_is_deleted_once_freed(tmp_path, monkeypatch):
    """Over MAX_IN_MEMORY_PIXELS the probabilities go to a scratch zarr folder: the same numbers as in memory, the
    folder there while the result is used (the dock shows it lazily) and gone once it is freed, so a cohort of
    slides does not fill the disk with one probability map per slide."""
    import gc

    from napari_lesionseg.core.inference import tiles

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rng = np.random.default_rng(4)
    image = _slide(rng)
    in_memory = predict_tiled(Predictor(_card(), device="cpu", batch_size=2, net=_fcn(3, 1)), image)
    monkeypatch.setattr(tiles, "MAX_IN_MEMORY_PIXELS", 1000)
    on_disk = predict_tiled(Predictor(_card(), device="cpu", batch_size=2, net=_fcn(3, 1)), image)
    assert not isinstance(on_disk, np.ndarray)
    (folder,) = tmp_path.glob("lesionseg-probs-*")
    np.testing.assert_allclose(np.asarray(on_disk[:]), in_memory, atol=1e-6)
    del on_disk
    gc.collect()
    assert not folder.exists() and not list(tmp_path.glob("lesionseg-probs-*"))


@pytest.mark.skipif(os.name != "posix", reason="the sweep asks POSIX whether a process exists")
def test_a_killed_runs_scratch_folder_is_swept_by_the_next_run(tmp_path, monkeypatch):
    """A run killed mid-slide (out of memory, SIGKILL) cannot delete its folder; the next slide run deletes the
    folders of processes that no longer exist and keeps those of running ones and anything not named by a pid."""
    import subprocess
    import sys

    from napari_lesionseg.core.inference import tiles

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"lesionseg-probs-{dead.pid}-abc"
    running = tmp_path / f"lesionseg-probs-{os.getppid()}-def"
    unnamed = tmp_path / "lesionseg-probs-x7k2m9q1"
    for folder in (orphan, running, unnamed):
        (folder / "acc.zarr").mkdir(parents=True)
    monkeypatch.setattr(tiles, "MAX_IN_MEMORY_PIXELS", 1000)
    image = _slide(np.random.default_rng(5))
    probs = predict_tiled(Predictor(_card(), device="cpu", batch_size=2, net=_fcn(3, 1)), image)
    assert not orphan.exists() and running.exists() and unnamed.exists()
    assert len(list(tmp_path.glob(f"lesionseg-probs-{os.getpid()}-*"))) == 1, "this run's own folder, named by its pid"
    del probs
