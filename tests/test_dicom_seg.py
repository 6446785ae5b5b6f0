"""DICOM SEG written from a mask and read back onto its source: a multi-label MRI series (oblique, shuffled files),
a single mammogram, segment names and algorithm type, `lesionseg export-seg` from a NIfTI mask, and the bad cases
(a SEG without its source, a mask of a non-DICOM scan, a series without a frame of reference)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from _duke_dicom import TUMOUR, subtraction_series
from _io_dicom_factory import MG_STORAGE, make_dataset, write_series

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.io import read_scan, write_mask
from napari_lesionseg.core.io.dicom_seg import SegAlgorithm, read_seg

ROW = np.array([np.cos(0.3), np.sin(0.3), 0.0])
COL = np.array([-np.sin(0.3) * np.cos(0.2), np.cos(0.3) * np.cos(0.2), np.sin(0.2)])  # oblique plane


def _series(folder, nz=7, frame_of_reference=True, **attrs):
    vol = np.arange(nz * 20 * 24, dtype=np.uint16).reshape(nz, 20, 24)
    if frame_of_reference:
        attrs["FrameOfReferenceUID"] = pydicom.uid.generate_uid()
    write_series(folder, vol, row_cos=ROW, col_cos=COL, spacing_rc=(0.8, 0.7), origin=[-120.5, 88.25, -40.0],
                 slice_step=2.5 * np.cross(ROW, COL), **attrs)
    [scan] = read_scan(folder)
    return scan


def _two_lesions(shape):
    mask = np.zeros(shape, np.uint8)
    mask[1:3, 4:9, 5:12] = 1
    mask[5, 14:18, 2:6] = 2
    return mask


def test_multi_label_seg_opens_on_its_series_with_names_and_the_same_voxels(tmp_path):
    scan = _series(tmp_path / "series")
    mask = _two_lesions(scan.shape)
    out = write_mask(mask, scan.geometry, tmp_path / "seg.dcm",
                     seg={"class_names": ["cancer", "benign"], "algorithm": SegAlgorithm("mri-lesion", "2026-11-22"),
                          "edited": True})
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SeriesInstanceUID != scan.geometry.header["SeriesInstanceUID"]
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["cancer", "benign"]
    assert {s.SegmentAlgorithmType for s in ds.SegmentSequence} == {"SEMIAUTOMATIC"}  # corrected by a user
    # Only slices 1, 2 (segment 1) and 5 (segment 2) have frames, each pointing at that slice's instance.
    uids = scan.geometry.extra["sop_instance_uids"]
    refs = [(int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
             f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
            for f in ds.PerFrameFunctionalGroupsSequence]
    assert sorted(refs) == sorted([(1, uids[1]), (1, uids[2]), (2, uids[5])])

    image, labels = read_scan(out)  # the SEG alone: its series is found beside it
    assert image.layer_type == "image" and labels.layer_type == "labels"
    np.testing.assert_array_equal(labels.data, mask)
    assert labels.geometry is image.geometry and labels.layer_scale() == image.layer_scale()
    assert labels.metadata["segments"] == {"1": "cancer", "2": "benign"}
    assert "rgb" not in labels.layer_kwargs()


def test_a_mammogram_seg_without_frame_of_reference(tmp_path):
    img = np.random.default_rng(1).integers(0, 4000, (64, 48)).astype(np.uint16)
    ds = make_dataset(img, modality="MG", sop_class=MG_STORAGE, photometric="MONOCHROME2",
                      ImagerPixelSpacing=[0.1, 0.1], SeriesDescription="L CC")
    (tmp_path / "mg").mkdir()
    ds.save_as(tmp_path / "mg" / "mg.dcm", enforce_file_format=True)
    [scan] = read_scan(tmp_path / "mg" / "mg.dcm")
    mask = np.zeros(img.shape, np.uint8)
    mask[10:30, 5:20] = 1
    out = write_mask(mask, scan.geometry, tmp_path / "mg_seg.dcm", seg={"algorithm": None})
    seg = pydicom.dcmread(out)
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL" and seg.SegmentSequence[0].SegmentLabel == "lesion"
    labels, names = read_seg(out, scan.geometry)
    np.testing.assert_array_equal(labels, mask)
    _, on_disk = read_scan(out)
    np.testing.assert_array_equal(on_disk.data, mask)


def test_an_rgb_ultrasound_frame_gets_a_seg_too(tmp_path):
    gray = np.random.default_rng(2).integers(0, 255, (40, 50)).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)  # scanners often store gray ultrasound as RGB
    ds = make_dataset(rgb, modality="US", sop_class="1.2.840.10008.5.1.4.1.1.6.1", photometric="RGB",
                      SeriesDescription="Breast US")
    ds.save_as(tmp_path / "us.dcm", enforce_file_format=True)
    [scan] = read_scan(tmp_path / "us.dcm")
    assert scan.axes == "yx" and not scan.rgb
    mask = np.zeros(gray.shape, np.uint8)
    mask[5:25, 10:30] = 1
    out = write_mask(mask, scan.geometry, tmp_path / "us_seg.dcm",
                     seg={"algorithm": SegAlgorithm("ultrasound-lesion", "2026-12-01")})
    assert pydicom.dcmread(out).ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID \
        == ds.SOPInstanceUID
    np.testing.assert_array_equal(read_scan(out)[1].data, mask)


def test_a_seg_whose_source_is_missing_is_a_clear_error(tmp_path):
    scan = _series(tmp_path / "a" / "series")
    out = write_mask(_two_lesions(scan.shape), scan.geometry, tmp_path / "a" / "seg.dcm")
    alone = tmp_path / "b" / "c"
    alone.mkdir(parents=True)
    moved = alone / "seg.dcm"
    out.rename(moved)
    with pytest.raises(LesionSegError, match="source images of this DICOM SEG .* are not"):
        read_scan(moved)


def test_a_seg_in_its_series_folder_opens_with_the_series(tmp_path):
    scan = _series(tmp_path / "series")
    mask = _two_lesions(scan.shape)
    out = write_mask(mask, scan.geometry, tmp_path / "seg.dcm")
    out.rename(tmp_path / "series" / "zz_seg.dcm")
    scans = read_scan(tmp_path / "series")
    assert [s.layer_type for s in scans] == ["image", "labels"]
    np.testing.assert_array_equal(scans[1].data, mask)
    np.testing.assert_array_equal(scans[0].data, scan.data)


def test_seg_needs_a_dicom_scan_and_a_frame_of_reference(tmp_path):
    from napari_lesionseg.core.geometry import Geometry

    with pytest.raises(LesionSegError, match="only be made for a mask of a DICOM scan"):
        write_mask(np.ones((4, 5, 6), np.uint8), Geometry(spacing=(1.0, 1.0, 1.0)), tmp_path / "x.dcm")
    scan = _series(tmp_path / "nofor", frame_of_reference=False)
    with pytest.raises(LesionSegError, match="Frame of Reference"):
        write_mask(_two_lesions(scan.shape), scan.geometry, tmp_path / "y.dcm")
    assert not list(tmp_path.glob("*.dcm")) and not list(tmp_path.glob(".*part*"))  # nothing half-written
    with pytest.raises(LesionSegError, match="empty"):
        write_mask(np.zeros(scan.shape, np.uint8), _series(tmp_path / "ok").geometry, tmp_path / "z.dcm")


def test_export_seg_cli_turns_a_nifti_mask_into_a_seg(tmp_path, capsys):
    scan = _series(tmp_path / "series")
    mask = _two_lesions(scan.shape)
    write_mask(mask, scan.geometry, tmp_path / "mask.nii.gz")
    out = tmp_path / "mask_seg.dcm"
    assert main(["export-seg", "--mask", str(tmp_path / "mask.nii.gz"), "--source", str(tmp_path / "series"),
                 "--output", str(out), "--model", "mri-lesion", "--edited"]) == 0
    seg = pydicom.dcmread(out)
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "mri-lesion" and seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lesion 1", "lesion 2"]
    labels, _ = read_seg(out, scan.geometry)
    np.testing.assert_array_equal(labels, mask)
    # A mask of another grid is refused before anything is written.
    other = _series(tmp_path / "other", nz=5)
    write_mask(np.ones(other.shape, np.uint8), other.geometry, tmp_path / "other.nii.gz")
    assert main(["export-seg", "--mask", str(tmp_path / "other.nii.gz"), "--source", str(tmp_path / "series"),
                 "--output", str(tmp_path / "bad.dcm")]) == 2
    assert "not drawn on this scan" in capsys.readouterr().err and not (tmp_path / "bad.dcm").exists()


@pytest.mark.slow
def test_predict_output_format_seg_on_a_real_mri_series(tmp_path):
    """The shipped MRI model on the Duke subtraction series: the SEG names the model and holds its tumour mask."""
    _, _, files, _ = subtraction_series(tmp_path / "series")
    out = tmp_path / "pred.dcm"
    assert main(["predict", "--model", "mri-lesion", "--input", str(tmp_path / "series"), "--output", str(out),
                 "--output-format", "seg", "--device", "cpu"]) == 0
    seg = pydicom.dcmread(out)
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "mri-lesion" and seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    image, labels = read_scan(out)
    assert labels.data.shape == image.data.shape and labels.data.sum() > 100
    assert labels.data[TUMOUR].sum() > 0.5 * labels.data.sum()
    assert main(["predict", "--model", "mri-lesion", "--input", str(tmp_path / "series"),
                 "--output", str(tmp_path / "pred.nii.gz"), "--output-format", "seg"]) == 2
