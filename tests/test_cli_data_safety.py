"""Nothing a user owns is overwritten and every CLI error is a one-line message (issue 14, data safety part).

Each refused command must exit 2 with one line on stderr (no traceback), write nothing, and leave every input
byte-identical (sha256 of every file in the working folder before and after). Written masks and tables get the
permissions a plain file write gets (0666 minus the umask), not mkstemp's private 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.io.output_guard import check_outputs
from napari_lesionseg.core.names import check_model_name

from conftest import REPO

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# -- a small working folder ------------------------------------------------------------------------------

@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """pre/post NIfTI, a PNG scan with its mask, napari CSVs, a symlink and a hard link; cwd is the folder."""
    rng = np.random.default_rng(0)
    affine = np.diag([0.7, 0.7, 2.0, 1.0])
    for name in ("pre", "post1"):
        vol = rng.normal(100, 10, (32, 32, 4)).astype(np.float32)
        nib.Nifti1Image(vol, affine).to_filename(tmp_path / f"{name}.nii.gz")
    iio.imwrite(tmp_path / "scan.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 20:32] = 255
    iio.imwrite(tmp_path / "mask.png", mask)
    (tmp_path / "lines.csv").write_text("index,shape-type,vertex-index,axis-0,axis-1\n"
                                        "0,line,0,20,20\n0,line,1,30,31\n")
    (tmp_path / "points.csv").write_text("index,axis-0,axis-1\n0,25,25\n")
    (tmp_path / "circles.csv").write_text("image,col,row,radius\nscan.png,25,25,5\n")
    (tmp_path / "pre_link.nii.gz").symlink_to("pre.nii.gz")
    (tmp_path / "post1_link.nii.gz").symlink_to(tmp_path / "post1.nii.gz")
    os.link(tmp_path / "scan.png", tmp_path / "scan_hardlink.png")
    (tmp_path / "sub").mkdir()
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for name in ("a", "b"):
        iio.imwrite(cohort / f"{name}.png", rng.integers(0, 255, (48, 48), dtype=np.uint8))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(folder: Path) -> dict:
    """Every entry under `folder`: sha256 of files, link targets, folders: what a user would find afterwards."""
    out = {}
    for p in sorted(folder.rglob("*")):
        key = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[key] = ("link", os.readlink(p))
        elif p.is_dir():
            out[key] = "folder"
        else:
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(argv: list[str], folder: Path, capsys, expect: str) -> str:
    """Run `lesionseg argv` in-process: exit 2, one line naming the problem, nothing written or changed."""
    before = snapshot(folder)
    capsys.readouterr()
    try:
        code = main(argv)
    except BaseException as e:  # noqa: BLE001 - any escaping exception is a traceback for the user
        pytest.fail(f"lesionseg {' '.join(argv)} raised {type(e).__name__}: {e}")
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lesionseg: error: "), err
    assert expect in lines[0], lines[0]
    assert snapshot(folder) == before, f"lesionseg {' '.join(argv)} changed the folder"
    return lines[0]


# -- overwriting an input --------------------------------------------------------------------------------

PREDICT = ["predict", "--model", "mri-lesion", "--input", "post1.nii.gz", "--pre", "pre.nii.gz"]

OVERWRITES = [
    (PREDICT + ["--output", "pre.nii.gz"], "--output pre.nii.gz is the file given as --pre"),
    (PREDICT + ["--output", "post1.nii.gz"], "--output post1.nii.gz is the file given as --input"),
    (PREDICT + ["--output", "m.nii.gz", "--probabilities", "pre.nii.gz"],
     "--probabilities pre.nii.gz is the file given as --pre"),
    (PREDICT + ["--output", "m.nii.gz", "--probabilities", "post1.nii.gz"],
     "--probabilities post1.nii.gz is the file given as --input"),
    (PREDICT + ["--output", "pre_link.nii.gz"], "is the file given as --pre"),          # a symlink to the scan
    (["predict", "--model", "mri-lesion", "--input", "post1_link.nii.gz", "--output", "post1.nii.gz"],
     "is the file given as --input"),                                                   # the input is the link
    (PREDICT + ["--output", "sub/../pre.nii.gz"], "is the file given as --pre"),         # relative detour
    (PREDICT + ["--output", "./post1.nii.gz"], "is the file given as --input"),
    (PREDICT + ["--output", "m.nii.gz", "--probabilities", "./sub/../m.nii.gz"], "both name"),
    (["predict", "--model", "ultrasound-lesion", "--input", "cohort", "--output", "cohort"],
     "--output cohort is the folder given as --input"),
    (["predict", "--model", "ultrasound-lesion", "--input", "cohort", "--output", "out", "--probabilities",
      "./cohort/"], "is the folder given as --input"),
    (["measure", "--mask", "mask.png", "--image", "scan.png", "--output", "scan.png"],
     "--output scan.png is the file given as --image"),
    (["measure", "--mask", "mask.png", "--image", "scan.png", "--output", "mask.png"],
     "--output mask.png is the file given as --mask"),
    (["measure", "--mask", "mask.png", "--image", "scan.png", "--output", "scan_hardlink.png"],
     "--output scan_hardlink.png is the file given as --image"),                         # a hard link
    (["measure", "--mask", "mask.png", "--image", "post1.nii.gz", "--pre", "pre.nii.gz", "--output",
      "pre.nii.gz"], "--output pre.nii.gz is the file given as --pre"),
    (["measure", "--mask", "mask.png", "--image", "post1.nii.gz", "--pre", "pre.nii.gz", "--output",
      "pre_link.nii.gz"], "is the file given as --pre"),
    (["lines-to-masks", "--image", "scan.png", "--annotations", "lines.csv", "--output", "scan.png"],
     "--output scan.png is the file given as --image"),
    (["lines-to-masks", "--image", "scan.png", "--annotations", "lines.csv", "--output", "lines.csv"],
     "--output lines.csv is the file given as --annotations"),
    (["points-to-masks", "--image", "scan.png", "--annotations", "points.csv", "--output", "scan.png",
      "--radius", "3"], "--output scan.png is the file given as --image"),
    (["points-to-masks", "--image", "scan.png", "--annotations", "points.csv", "--output", "points.csv",
      "--radius", "3"], "--output points.csv is the file given as --annotations"),
    (["points-to-masks", "--image", "scan.png", "--circles", "circles.csv", "--output", "circles.csv"],
     "--output circles.csv is the file given as --circles"),
    (["train", "--images", "sub", "--masks", "sub", "--modality", "ultrasound", "--name", "../../x"],
     "looks like a path"),
    (["train", "--images", "sub", "--masks", "sub", "--modality", "ultrasound", "--name", "a/b"],
     "looks like a path"),
    (["ensemble", "--models", "mri-lesion", "mri-lesion", "--name", "../x", "--output-dir", "sub"],
     "looks like a path"),
]


@pytest.mark.parametrize("argv,expect", OVERWRITES, ids=[" ".join(a[0:1] + a[-2:]) for a, _ in OVERWRITES])
def test_refused_overwrite_writes_nothing_and_keeps_inputs(work, capsys, argv, expect):
    refused(argv, work, capsys, expect)


def test_probabilities_equal_to_input_is_refused_before_the_mask_is_written(work, capsys):
    """Before the fix the mask was written and only then --probabilities refused: check all outputs first."""
    refused(PREDICT + ["--output", "new_mask.nii.gz", "--probabilities", "post1.nii.gz"], work, capsys,
            "--probabilities post1.nii.gz")
    assert not (work / "new_mask.nii.gz").exists()


def test_cohort_mask_that_would_land_on_a_scan_of_the_input_folder(work, capsys):
    """--output is another folder, but its a_mask.png is a link to a scan of the input folder."""
    (work / "cohort" / "a_mask_src.png").write_bytes((work / "cohort" / "a.png").read_bytes())
    (work / "masks").mkdir()
    (work / "masks" / "a_mask.png").symlink_to(work / "cohort" / "a_mask_src.png")
    refused(["predict", "--model", "ultrasound-lesion", "--input", "cohort", "--output", "masks"], work, capsys,
            "a scan in the --input folder")


# -- folders that cannot be written -----------------------------------------------------------------------

def _unwritable_folder(work: Path) -> Path:
    """A folder that exists and cannot take a new file: 0555 for ordinary users; root ignores permissions, so
    there it is /sys (sysfs refuses new files even to root)."""
    if not IS_ROOT:
        ro = work / "readonly"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    sys_dir = Path("/sys")
    if not sys_dir.is_dir():
        pytest.skip("running as root without /sys: no folder that refuses root's writes")
    return sys_dir


UNWRITABLE = {
    "predict": lambda d: ["predict", "--model", "mri-lesion", "--input", "post1.nii.gz", "--output",
                          f"{d}/m.nii.gz"],
    "predict-cohort": lambda d: ["predict", "--model", "ultrasound-lesion", "--input", "cohort", "--output",
                                 f"{d}/masks"],
    "lines-to-masks": lambda d: ["lines-to-masks", "--image", "scan.png", "--annotations", "lines.csv",
                                 "--output", f"{d}/m.png"],
    "points-to-masks": lambda d: ["points-to-masks", "--image", "scan.png", "--annotations", "points.csv",
                                  "--output", f"{d}/m.png", "--radius", "3"],
    "measure": lambda d: ["measure", "--mask", "mask.png", "--output", f"{d}/t.csv"],
    "train": lambda d: ["train", "--images", "sub", "--masks", "sub", "--modality", "ultrasound", "--name", "x",
                        "--output-dir", f"{d}/models"],
    "ensemble": lambda d: ["ensemble", "--models", "mri-lesion", "mri-lesion", "--name", "x", "--output-dir",
                           f"{d}/models"],
}


@pytest.mark.parametrize("command", list(UNWRITABLE))
def test_unwritable_output_folder_is_a_message(work, capsys, command):
    folder = _unwritable_folder(work)
    try:
        refused(UNWRITABLE[command](folder), work, capsys, "cannot write into the folder")
    finally:
        if folder.parent == work:
            folder.chmod(0o755)


@pytest.mark.parametrize("command", list(UNWRITABLE))
def test_output_under_a_regular_file_is_a_message(work, capsys, command):
    """Meaningful as root too: nothing can be created below a file."""
    refused(UNWRITABLE[command]("scan.png"), work, capsys, "is a file, not a folder")


def test_missing_output_folder_is_named(work, capsys):
    refused(["measure", "--mask", "mask.png", "--output", "nowhere/t.csv"], work, capsys,
            "the folder")


# -- damaged files and models --------------------------------------------------------------------------------

def _huge_nifti(path: Path) -> Path:
    """A NIfTI-2 whose header claims 100000³ int16 voxels (1.8 PB) but that holds 64 bytes."""
    img = nib.Nifti2Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    header = img.header.copy()
    header.set_data_shape((100000, 100000, 100000))
    path.write_bytes(header.binaryblock + b"\0" * 4 + bytes(128))
    return path


def test_pre_contrast_subtraction_is_refused_for_a_model_of_another_modality(work, capsys):
    """--pre turns the input into a DCE-MRI subtraction: with an ultrasound model that is a mistake, said as one."""
    line = refused(["predict", "--model", "ultrasound-lesion", "--input", "scan.png", "--pre", "scan_hardlink.png",
                    "--output", "out.png"], work, capsys, "--pre makes a DCE-MRI subtraction")
    assert "ultrasound-lesion was trained on ultrasound" in line


@pytest.mark.parametrize("argv", [
    ["measure", "--mask", "huge.nii"],
    ["lines-to-masks", "--image", "huge.nii", "--annotations", "lines.csv", "--output", "m.nii.gz"],
    ["measure", "--mask", "mask.png", "--image", "scan.png", "--pre", "huge.nii"],
])
def test_header_claiming_more_than_memory_is_refused_before_allocating(work, capsys, argv):
    _huge_nifti(work / "huge.nii")
    line = refused(argv, work, capsys, "100000 × 100000 × 100000")
    assert "PB" in line and "memory" in line


def _huge_png(path: Path) -> Path:
    """A PNG whose header claims 100000 × 100000 pixels, with a few bytes of data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(100)))
                     + chunk(b"IEND", b""))
    return path


def test_png_header_claiming_ten_billion_pixels_is_a_message(work, capsys):
    _huge_png(work / "huge.png")
    refused(["measure", "--mask", "huge.png", "--output", "t.csv"], work, capsys, "10,000,000,000 pixels")


def _wrong_shape_base(tmp_path: Path) -> Path:
    """A copy of a shipped card whose safetensors has one tensor of the wrong shape."""
    import torch
    from safetensors.torch import save_file

    from napari_lesionseg.core.models.build import load_state

    card = REPO / "models" / "mammography-mass.json"
    if not card.with_suffix(".safetensors").exists():
        pytest.skip("shipped mammography-mass weights not present")
    state = load_state(card.with_suffix(".safetensors"))
    key = "segmentation_head.0.weight"
    w = state[key]
    state[key] = torch.zeros((w.shape[0] + 2, *w.shape[1:]))
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "wrong.safetensors"))
    d = json.loads(card.read_text())
    d["weights"] = "wrong.safetensors"
    out = tmp_path / "wrong.json"
    out.write_text(json.dumps(d))
    return out


def test_train_base_with_wrong_shape_weights_names_the_tensor(work, capsys):
    rng = np.random.default_rng(1)
    for d in ("imgs", "msks"):
        (work / d).mkdir()
    for i in range(3):
        img = rng.integers(0, 255, (48, 48), dtype=np.uint8)
        m = np.zeros((48, 48), np.uint8)
        m[10:20, 10:20] = 255
        iio.imwrite(work / "imgs" / f"c{i}.png", img)
        iio.imwrite(work / "msks" / f"c{i}.png", m)
    base = _wrong_shape_base(work / "sub")
    line = refused(["train", "--images", "imgs", "--masks", "msks", "--modality", "mammography", "--name", "mine",
                    "--base", str(base), "--epochs", "1", "--output-dir", "models"], work, capsys,
                   "segmentation_head.0.weight")
    assert "do not fit" in line and "(3, 8, 3, 3)" in line and "(1, 8, 3, 3)" in line


# -- the one list: no traceback anywhere ---------------------------------------------------------------------

def test_bad_invocations_never_show_a_traceback(work, capsys):
    """All of the above in one run, plus the last-resort guard's own cases, each exit 2 without a traceback."""
    _huge_nifti(work / "huge.nii")
    _huge_png(work / "huge.png")
    folder = _unwritable_folder(work)
    bad = [argv for argv, _ in OVERWRITES] + [make(folder) for make in UNWRITABLE.values()] + [
        ["measure", "--mask", "huge.nii"],
        ["lines-to-masks", "--image", "huge.png", "--annotations", "lines.csv", "--output", "m.png"],
        ["train", "--images", "sub", "--masks", "sub", "--modality", "ultrasound", "--name", ""],
        ["train", "--images", "sub", "--masks", "sub", "--modality", "ultrasound", "--name", ".."],
        ["predict", "--model", "mri-lesion", "--input", "post1.nii.gz", "--output", "m.nii.gz",
         "--probabilities", "p.csv"],
    ]
    try:
        for argv in bad:
            capsys.readouterr()
            code = main(argv)
            err = capsys.readouterr().err
            assert code == 2 and "Traceback" not in err and err.startswith("lesionseg: error: "), (argv, err)
    finally:
        if folder.parent == work:
            folder.chmod(0o755)


def test_entry_point_process_prints_no_traceback(work):
    """The real `lesionseg` process (not main() in-process): exit status 2, a message, no traceback."""
    _huge_nifti(work / "huge.nii")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for argv in (["measure", "--mask", "huge.nii"],
                 PREDICT + ["--output", "pre_link.nii.gz"]):
        before = snapshot(work)
        res = subprocess.run([sys.executable, "-m", "napari_lesionseg.cli.main", *argv], cwd=work, env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.startswith("lesionseg: error: ")
        assert snapshot(work) == before


def test_last_resort_guard_turns_memory_and_file_system_errors_into_messages(work, capsys, monkeypatch):
    """Errors the checks cannot foresee (the disk fills up, a network share refuses the write mid-way)."""
    import napari_lesionseg.core.measure as measure

    def disk_full(results, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(measure, "write_measurements_csv", disk_full)
    refused(["measure", "--mask", "mask.png", "--output", "t.csv"], work, capsys, "No space left on device")

    def out_of_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(measure, "measure_lesions", out_of_memory)
    refused(["measure", "--mask", "mask.png", "--output", "t.csv"], work, capsys, "not enough memory")


# -- what is written can be read by colleagues ------------------------------------------------------------

@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def test_masks_and_tables_get_the_umask_permissions(work, capsys, umask):
    assert main(["measure", "--mask", "mask.png", "--image", "scan.png", "--output", "t.csv"]) == 0
    assert main(["points-to-masks", "--image", "scan.png", "--annotations", "points.csv", "--output", "d.png",
                 "--radius", "3"]) == 0
    assert main(["lines-to-masks", "--image", "scan.png", "--annotations", "lines.csv", "--output",
                 "l.nii.gz", "--method", "classical"]) == 0
    for name in ("t.csv", "d.png", "l.nii.gz"):
        assert _mode(work / name) == 0o644, name
    umask(0o027)  # a group-shared cohort folder: group may read, others not
    assert main(["measure", "--mask", "mask.png", "--output", "t2.csv"]) == 0
    assert _mode(work / "t2.csv") == 0o640
    assert not list(work.glob(".*part*")), "temporary files left behind"


def test_predict_mask_and_probabilities_get_the_umask_permissions(work, capsys, umask):
    if not (REPO / "models" / "mri-lesion.safetensors").exists():
        pytest.skip("shipped mri-lesion weights not present")
    assert main(PREDICT + ["--output", "m.nii.gz", "--probabilities", "p.nii.gz"]) == 0
    assert _mode(work / "m.nii.gz") == 0o644 and _mode(work / "p.nii.gz") == 0o644
    assert nib.load(work / "m.nii.gz").shape == (32, 32, 4)


def test_replacing_a_file_keeps_its_permissions(work, capsys, umask):
    out = work / "t.csv"
    out.write_text("old")
    out.chmod(0o660)
    assert main(["measure", "--mask", "mask.png", "--output", "t.csv"]) == 0
    assert _mode(out) == 0o660 and out.read_text().startswith("label")


def test_autosaves_get_the_umask_permissions_too(work, umask):
    from napari_lesionseg.core.autosave import autosave_mask

    saved = autosave_mask(np.ones((4, 4), np.uint8), "mask", directory=work / "autosave")
    assert _mode(saved) == 0o644


# -- the two core checks on their own ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "a/b", "a\\b", "..", "", "  ", ".hidden", "two words", "x" * 101])
def test_model_name_refuses_paths_and_odd_names(name):
    with pytest.raises(LesionSegError):
        check_model_name(name)


@pytest.mark.parametrize("name", ["ultrasound-lesion", "mine_2", "v1.2", "busi-finetuned-3"])
def test_model_name_accepts_names(name):
    assert check_model_name(f" {name} ") == name


def test_check_outputs_names_both_options(work):
    with pytest.raises(LesionSegError, match=r"--output pre_link.nii.gz is the file given as --pre; choose"):
        check_outputs({"--input": "post1.nii.gz", "--pre": "pre.nii.gz"}, {"--output": "pre_link.nii.gz"})
    check_outputs({"--input": "post1.nii.gz"}, {"--output": "new.nii.gz", "--probabilities": None})
    assert not list(work.glob(".lesionseg-write-check-*"))


def test_cohort_masks_and_probabilities_may_share_a_folder(work):
    """Their file names differ (_mask / _prob), so one output folder for both is not an overlap."""
    import argparse

    from napari_lesionseg.cli import predict

    args = argparse.Namespace(model="mri-lesion", output="out", probabilities="./out", output_format=None)
    predict.check_paths(args, Path("cohort"), None, predict._cohort_files(Path("cohort")))
    assert not (work / "out").exists()  # checking creates nothing


def test_evaluate_and_export_seg_never_write_over_their_inputs(tmp_path, capsys):
    """`evaluate --output` onto a table in the image folder, `export-seg --output` onto a slice of its source series
    or onto the mask: refused, every file unchanged (the commands added in this session go through the same guard)."""
    from _io_dicom_factory import write_series

    images, masks, series = tmp_path / "images", tmp_path / "masks", tmp_path / "series"
    images.mkdir()
    masks.mkdir()
    (images / "cases.csv").write_text("name,group\ncase1,1\n")
    iio.imwrite(images / "case1.png", np.full((32, 32), 90, np.uint8))
    iio.imwrite(masks / "case1.png", np.zeros((32, 32), np.uint8))
    refused(["evaluate", "--model", "ultrasound-lesion", "--images", str(images), "--masks", str(masks),
             "--output", str(images / "cases.csv")], tmp_path, capsys, "is the file given as --images")
    write_series(series, np.arange(4 * 20 * 24, dtype=np.uint16).reshape(4, 20, 24), row_cos=[1, 0, 0],
                 col_cos=[0, 1, 0], spacing_rc=(0.8, 0.7), origin=[0.0, 0.0, 0.0], slice_step=[0, 0, 2.5])
    slice_file = sorted(series.glob("*.dcm"))[0]
    nib.save(nib.Nifti1Image(np.zeros((24, 20, 4), np.uint8), np.eye(4)), tmp_path / "mask.nii.gz")
    refused(["export-seg", "--mask", str(tmp_path / "mask.nii.gz"), "--source", str(series),
             "--output", str(slice_file)], tmp_path, capsys, "is the file given as --source")
