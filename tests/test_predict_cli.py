"""`lesionseg predict` on real files of every modality, a cohort folder with a corrupt file, probability maps,
clear errors, a 3-class (cancer / stroma / background) model end to end, and torchrun sharing a folder out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.models import default_registry
from tiny_models import tiny_model

from conftest import REPO, SHARED_DATA, shared_path

SHIPPED_US = REPO / "models" / "ultrasound-lesion.json"


def _install(kind: str, tmp_path_factory, user_dir: Path) -> str:
    card = tiny_model(kind, tmp_path_factory.getbasetemp() / "tiny-models", install_into=user_dir)
    return default_registry().get(card).name


def _first(folder: Path, pattern: str) -> Path:
    files = sorted(folder.glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} in {folder}")
    return files[0]


def _busi_model(tmp_path_factory, user_dir) -> str:
    """The shipped ultrasound model when it is in models/, else a tiny model trained on blobs."""
    if SHIPPED_US.exists() and SHIPPED_US.with_suffix(".safetensors").exists():
        return "ultrasound-lesion"
    return _install("gray2d", tmp_path_factory, user_dir)


# -- one real file per modality ---------------------------------------------------------------------------

@pytest.mark.slow
def test_busi_png(tmp_path, tmp_path_factory, _user_model_dir):
    src = shared_path("ultrasound", "busi", "images", "malignant_051.png")
    model = _busi_model(tmp_path_factory, _user_model_dir)
    out, prob = tmp_path / "mask.png", tmp_path / "prob.tif"
    assert main(["predict", "--model", model, "--input", str(src), "--output", str(out),
                 "--probabilities", str(prob)]) == 0
    image, mask, p = iio.imread(src), iio.imread(out), iio.imread(prob)
    assert mask.shape == image.shape[:2] and p.shape == image.shape[:2]
    assert set(np.unique(mask)) <= {0, 255}
    assert p.dtype == np.float32 and 0.0 <= p.min() and p.max() <= 1.0 and p.std() > 0
    np.testing.assert_array_equal(mask > 0, p >= default_registry().get(model).threshold)
    if model == "ultrasound-lesion":  # a real model must find the lesion of a malignant validation image
        from napari_lesionseg.core.metrics import dice

        truth = iio.imread(SHARED_DATA / "ultrasound" / "busi" / "masks" / src.name) > 0
        assert dice(mask > 0, truth) > 0.5


@pytest.mark.slow
def test_mias_png(tmp_path, tmp_path_factory, _user_model_dir):
    src = _first(shared_path("mammography", "mias", "images"), "mdb*.png")
    model = _install("gray2d", tmp_path_factory, _user_model_dir)
    out = tmp_path / "mias_mask.png"
    assert main(["predict", "--model", model, "--input", str(src), "--output", str(out), "--threshold", "0.3"]) == 0
    assert iio.imread(out).shape == iio.imread(src).shape == (1024, 1024)


@pytest.mark.slow
def test_monuseg_tiff(tmp_path, tmp_path_factory, _user_model_dir):
    import tifffile

    src = _first(shared_path("histology", "monuseg_breast", "images"), "*.tif")
    model = _install("rgb2d", tmp_path_factory, _user_model_dir)
    out = tmp_path / "he_mask.tif"
    assert main(["predict", "--model", model, "--input", str(src), "--output", str(out)]) == 0
    mask = tifffile.imread(out)
    assert mask.shape == tifffile.imread(src).shape[:2]
    assert set(np.unique(mask)) <= {0, 255}


def test_no_flips_runs_one_pass_of_a_flipping_model(tmp_path, tmp_path_factory, _user_model_dir):
    """`--no-flips` on a model whose card averages flips gives exactly the one-pass probabilities (the same
    network without flips on its card), and without it the flipped ones differ."""
    from tiny_models import blob_image, with_flips

    plain = _install("rgb2d", tmp_path_factory, _user_model_dir)
    flips = default_registry().get(with_flips(_user_model_dir / f"{plain}.json", _user_model_dir)).name
    img, _ = blob_image(np.random.default_rng(5), (96, 80), rgb=True)
    src = tmp_path / "he.png"
    iio.imwrite(src, img)
    probs = {}
    for tag, model, extra in (("plain", plain, []), ("flips", flips, []), ("no-flips", flips, ["--no-flips"])):
        prob = tmp_path / f"{tag}.tif"
        assert main(["predict", "--model", model, "--input", str(src), "--output", str(tmp_path / f"{tag}.png"),
                     "--probabilities", str(prob), *extra]) == 0
        probs[tag] = iio.imread(prob)
    np.testing.assert_allclose(probs["no-flips"], probs["plain"], atol=1e-6)
    assert np.abs(probs["flips"] - probs["plain"]).max() > 1e-4
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    iio.imwrite(tmp_path / "images" / "he.png", img)
    iio.imwrite(tmp_path / "masks" / "he.png", ((probs["flips"] > 0.3) * 255).astype(np.uint8))
    dice = {}
    for tag, model, extra in (("plain", plain, []), ("no-flips", flips, ["--no-flips"])):
        csv = tmp_path / f"{tag}.csv"
        assert main(["evaluate", "--model", model, "--images", str(tmp_path / "images"), "--masks",
                     str(tmp_path / "masks"), "--output", str(csv), *extra]) == 0
        dice[tag] = csv.read_text().splitlines()[1]
    assert dice["no-flips"] == dice["plain"]  # `evaluate --no-flips` measures the one-pass mode


@pytest.fixture(scope="module")
def duke_crop(tmp_path_factory) -> Path:
    """A 64 × 64 × 16 crop of Duke post1.nii.gz around the tumour, with the affine moved to the crop's corner."""
    import nibabel as nib

    src = SHARED_DATA / "mri" / "duke_153" / "post1.nii.gz"
    if not src.exists():
        pytest.skip(f"real data not found: {src}")
    img = nib.load(src)
    i0, j0, k0 = 74, 32, 60  # NIfTI (i, j, k) = (x, y, z); tumour box x 89–123, y 46–81, z 60–77
    data = np.asarray(img.dataobj[i0:i0 + 64, j0:j0 + 64, k0:k0 + 16])
    shift = np.eye(4)
    shift[:3, 3] = (i0, j0, k0)
    crop = nib.Nifti1Image(data, img.affine @ shift, header=img.header)
    path = tmp_path_factory.mktemp("duke") / "post1_crop.nii.gz"
    nib.save(crop, path)
    return path


@pytest.mark.slow
def test_duke_nifti_keeps_the_affine(tmp_path, tmp_path_factory, _user_model_dir, duke_crop):
    import nibabel as nib

    model = _install("slices", tmp_path_factory, _user_model_dir)
    out, prob = tmp_path / "post1_mask.nii.gz", tmp_path / "post1_prob.nii.gz"
    assert main(["predict", "--model", model, "--input", str(duke_crop), "--output", str(out),
                 "--probabilities", str(prob)]) == 0
    src, m, p = nib.load(duke_crop), nib.load(out), nib.load(prob)
    assert m.shape == src.shape == (64, 64, 16)
    np.testing.assert_allclose(m.affine, src.affine, atol=1e-6)
    np.testing.assert_allclose(p.affine, src.affine, atol=1e-6)
    np.testing.assert_allclose(m.header.get_zooms()[:3], src.header.get_zooms()[:3], atol=1e-6)
    probs = np.asarray(p.dataobj)
    assert probs.min() >= 0 and probs.max() <= 1
    np.testing.assert_array_equal(np.asarray(m.dataobj) > 0, probs >= default_registry().get(model).threshold)


# -- a cohort folder --------------------------------------------------------------------------------------

def _cohort(folder: Path, n: int = 3) -> list[str]:
    """n real BUSI images (the bundled sample when ../shared/data is absent) plus one corrupt PNG."""
    folder.mkdir()
    busi = SHARED_DATA / "ultrasound" / "busi" / "images"
    srcs = sorted(busi.glob("benign_*.png"))[:n] if busi.is_dir() else [REPO / "sample_data" / "busi_malignant_006.png"]
    for s in srcs:
        shutil.copy(s, folder / s.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 20)
    (folder / "notes.txt").write_text("not a scan, ignored")
    return [s.stem for s in srcs]


@pytest.mark.slow
def test_cohort_folder_reports_bad_files_and_goes_on(tmp_path, tmp_path_factory, _user_model_dir, capsys):
    model = _install("gray2d", tmp_path_factory, _user_model_dir)
    stems = _cohort(tmp_path / "in")
    out, probs = tmp_path / "out", tmp_path / "probs"
    code = main(["predict", "--model", model, "--input", str(tmp_path / "in"), "--output", str(out),
                 "--probabilities", str(probs)])
    assert code == 0
    assert sorted(p.name for p in out.glob("*_mask.png")) == sorted(f"{s}_mask.png" for s in stems)
    assert sorted(p.name for p in probs.glob("*_prob.png")) == sorted(f"{s}_prob.png" for s in stems)
    for s in stems:
        assert iio.imread(out / f"{s}_mask.png").shape == iio.imread(tmp_path / "in" / f"{s}.png").shape[:2]
    report = (out / "errors.txt").read_text().splitlines()
    assert len(report) == 1 and report[0].startswith("broken.png\t")
    err = capsys.readouterr().err
    assert "failed: broken.png" in err and "Traceback" not in err


# -- clear errors -----------------------------------------------------------------------------------------

def test_unknown_model_is_exit_2_with_a_message(tmp_path, capsys):
    src = tmp_path / "x.png"
    iio.imwrite(src, np.zeros((32, 32), np.uint8))
    assert main(["predict", "--model", "no-such-model", "--input", str(src), "--output", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert "No model named 'no-such-model'" in err and "Traceback" not in err


def test_missing_input_is_exit_2_with_a_message(tmp_path, capsys):
    code = main(["predict", "--model", "anything", "--input", str(tmp_path / "nope.nii.gz"),
                 "--output", str(tmp_path / "m.nii.gz")])
    assert code == 2
    err = capsys.readouterr().err
    assert "Input not found" in err and "nope.nii.gz" in err and "Traceback" not in err


def test_unsupported_output_format_is_exit_2_before_any_work(tmp_path, capsys):
    src = tmp_path / "x.png"
    iio.imwrite(src, np.zeros((32, 32), np.uint8))
    assert main(["predict", "--model", "no-such-model", "--input", str(src), "--output", str(tmp_path / "m.jpg")]) == 2
    err = capsys.readouterr().err
    assert "Cannot write m.jpg" in err and "Traceback" not in err


def test_threshold_out_of_range_is_exit_2(tmp_path, capsys):
    src = tmp_path / "x.png"
    iio.imwrite(src, np.zeros((32, 32), np.uint8))
    assert main(["predict", "--model", "m", "--input", str(src), "--output", str(tmp_path / "m.png"),
                 "--threshold", "50"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


# -- three classes ----------------------------------------------------------------------------------------

def _three_textures(rng, shape=(96, 96)):
    """White glass, pink smooth stroma and dark purple dotted 'cancer' regions; labels 0 / 2 / 1."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    label = np.zeros(shape, np.uint8)
    for cls in (2, 1, 2, 1):
        r = rng.uniform(10, 22)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = cls
    colours = {0: (242, 240, 243), 1: (110, 50, 150), 2: (228, 150, 190)}
    noise = {0: 4, 1: 25, 2: 12}
    img = np.zeros(shape + (3,), np.float32)
    for cls, col in colours.items():
        m = label == cls
        img[m] = np.array(col, np.float32) + rng.normal(0, noise[cls], (m.sum(), 1))
    dots = (rng.random(shape) < 0.15) & (label == 1)
    img[dots] -= 50
    return np.clip(img, 0, 255).astype(np.uint8), label


@pytest.fixture(scope="module")
def three_class_model(tmp_path_factory) -> Path:
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.data import Case
    from napari_lesionseg.core.training.loop import train

    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("three-class")
    cases = [Case(f"c{i}", *_three_textures(rng), group=f"g{i}") for i in range(24)]
    cfg = TrainConfig(name="tiny-he-3class", modality="histology", input_kind="rgb", classes=["cancer", "stroma"],
                      fit="tile", patch_size=[64, 64], normalisation={"kind": "range", "max": 255},
                      encoder="resnet18", decoder_channels=[32, 16, 8, 8, 4], epochs=10, batch_size=8,
                      learning_rate=5e-3, val_fraction=0.2, early_stopping=0, output_dir=str(out),
                      checkpoint_dir=str(out / ".ckpt"), augment=["flip"], num_threads=1, precision="fp32")
    result = train(cfg, cases=cases, resume=False)
    assert result.card is not None and result.card.multiclass
    return result.card.path


@pytest.mark.slow
def test_three_class_model_end_to_end(tmp_path, three_class_model):
    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.inference.threshold import apply_threshold
    from napari_lesionseg.core.models.card import ModelCard

    card = ModelCard.read(three_class_model)
    assert [c.name for c in card.classes] == ["cancer", "stroma"] and card.n_outputs == 3
    image, truth = _three_textures(np.random.default_rng(99), (160, 192))
    probs = Predictor(card, device="cpu").predict_image(image)
    assert probs.shape == (3, 160, 192)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)
    labels = apply_threshold(probs, 0.5, np.zeros(truth.shape, np.uint8), multiclass=True)
    assert set(np.unique(labels)) == {0, 1, 2}
    recall = {cls: float((labels[truth == cls] == cls).mean()) for cls in (0, 1, 2)}
    print("per-class recall", recall, "accuracy", (labels == truth).mean())
    assert (labels == truth).mean() > 0.8, recall
    assert min(recall.values()) > 0.6, recall  # each class is found where it is (a tiny model, easy textures)

    src, out = tmp_path / "he.png", tmp_path / "he_mask.png"
    iio.imwrite(src, image)
    assert main(["predict", "--model", str(three_class_model), "--input", str(src), "--output", str(out)]) == 0
    written = iio.imread(out)
    assert written.shape == truth.shape
    np.testing.assert_array_equal(written, labels)


# -- torchrun ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_torchrun_shares_a_folder_out(tmp_path, tmp_path_factory, _user_model_dir):
    """Two processes under torchrun: each writes its half of the cohort; together every output is there."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    card = tiny_model("gray2d", tmp_path_factory.getbasetemp() / "tiny-models")
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        iio.imwrite(folder / f"case{i}.png", rng.integers(0, 255, (48 + 8 * i, 64), dtype=np.uint8))
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", LESIONSEG_USER_MODELS_DIR=str(_user_model_dir))
    t = time.monotonic()
    res = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "0", "-m",
                          "napari_lesionseg.cli.main", "predict", "--model", str(card), "--input", str(folder),
                          "--output", str(out), "--device", "cpu"],
                         capture_output=True, text=True, env=env, timeout=170)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*_mask.png")) == [f"case{i}_mask.png" for i in range(5)]
    assert "rank 0/2" in res.stderr and "rank 1/2" in res.stderr
    assert "3 of 3 scans segmented" in res.stdout and "2 of 2 scans segmented" in res.stdout
    print(f"torchrun run took {time.monotonic() - t:.1f} s")


def test_cohort_of_slides_leaves_no_probability_maps_behind(tmp_path, tmp_path_factory, _user_model_dir,
                                                            monkeypatch):
    """`lesionseg predict` on a folder of slides whose probabilities go to disk: every mask is written and no
    scratch folder is left in the temporary folder (each can take gigabytes for a real slide)."""
    import tempfile

    import tifffile

    from napari_lesionseg.core.inference import tiles
    from napari_lesionseg.core.io import write_pyramidal_tiff
    from tiny_models import blob_image

    model = _install("rgb2d", tmp_path_factory, _user_model_dir)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(tiles, "MAX_IN_MEMORY_PIXELS", 100_000)
    slides = tmp_path / "slides"
    slides.mkdir()
    rng = np.random.default_rng(5)
    for i in range(2):
        slide = np.full((1024, 1024, 3), 245, np.uint8)
        slide[:96, :96], _ = blob_image(rng, (96, 96), rgb=True)
        write_pyramidal_tiff(slides / f"s{i}.tif", slide.shape, np.uint8,
                             lambda f, y, x, h, w, s=slide: s[::f, ::f][y:y + h, x:x + w], min_size=256)
    out = tmp_path / "masks"
    assert main(["predict", "--model", model, "--input", str(slides), "--output", str(out), "--device", "cpu"]) == 0
    masks = sorted(out.glob("*.tif"))
    assert [m.name for m in masks] == ["s0_mask.tif", "s1_mask.tif"], masks
    assert tifffile.imread(masks[0]).shape[-2:] == (1024, 1024)
    assert not list(scratch.glob("lesionseg-probs-*")), list(scratch.iterdir())
