"""Hospital round trip against a real, throw-away Orthanc PACS (DICOMweb): a DICOM series generated from the real
Duke-153 DCE crop (post − pre, as scanners send subtraction series) is uploaded, `lesionseg predict --dicomweb`
fetches it, segments it with the shipped `mri-lesion` model and stores a DICOM SEG and its measurement report back;
the SEG fetched back holds exactly the mask, every frame points at the right source slice, and highdicom in a
separate process reads segment names and geometry right. Also: a PACS that is down or refuses, a series that is
not an image, credentials never printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from _duke_dicom import TUMOUR
from _orthanc import PASSWORD, USER, free_port, pacs_with_duke_series

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.io import dicomweb as dw
from napari_lesionseg.core.io import read_scan


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """Orthanc holding the Duke subtraction series; stopped after the module."""
    yield from pacs_with_duke_series(tmp_path_factory.mktemp("pacs"))


@pytest.fixture(autouse=True)
def _study_as_uploaded(pacs):
    """After each test, remove what it stored: every test starts from the uploaded series alone."""
    yield
    for s in dw.list_series(_client(pacs), pacs["study"]):
        if s["modality"] in ("SEG", "SR"):
            _delete_series(pacs, s["series_uid"])


def _client(pacs, password=PASSWORD):
    return dw.connect(dw.PacsLogin(pacs["server"].dicomweb, USER, password, timeout=30))


def _stored_seg(client, study: str):
    segs = [s for s in dw.list_series(client, study) if s["modality"] == "SEG"]
    assert len(segs) == 1, segs
    found = client.search_for_instances(study_instance_uid=study, series_instance_uid=segs[0]["series_uid"])
    sop = found[0]["00080018"]["Value"][0]
    return dw.fetch_instance(client, study, segs[0]["series_uid"], sop)


@pytest.mark.slow
def test_predict_on_a_pacs_stores_a_seg_that_holds_the_mask_on_the_right_slices(pacs, tmp_path, capsys, monkeypatch):
    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.inference.run import mask_from_probs, predict_scan
    from napari_lesionseg.core.models import default_registry

    monkeypatch.setenv("LESIONSEG_PACS_PASSWORD", PASSWORD)
    url = pacs["server"].dicomweb
    local = tmp_path / "copy_seg.dcm"
    assert main(["predict", "--model", "mri-lesion", "--dicomweb", url, "--study", pacs["study"],
                 "--user", USER, "--output", str(local), "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert "stored DICOM SEG" in out.out and PASSWORD not in out.out + out.err

    # What the same model gives on the same series read from disk: the mask the SEG must hold.
    card = default_registry().get("mri-lesion")
    [scan] = read_scan(pacs["files"][0].parent)
    expected = mask_from_probs(predict_scan(Predictor(card, device="cpu"), scan), card)
    assert expected.sum() > 100 and expected[TUMOUR].sum() > 0.5 * expected.sum()  # it found the tumour

    client = _client(pacs)
    seg = _stored_seg(client, pacs["study"])
    assert seg.StudyInstanceUID == pacs["study"] and seg.FrameOfReferenceUID == pydicom.dcmread(
        pacs["files"][0]).FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pacs["series"]
    desc = seg.SegmentSequence[0]
    assert desc.SegmentLabel == "lesion" and desc.SegmentAlgorithmType == "AUTOMATIC"
    algo = desc.SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "mri-lesion" and algo.AlgorithmVersion == card.date

    # Every frame: its source instance is the slice at the frame's position, and its pixels are that slice's mask.
    by_uid = {}
    for f in pacs["files"]:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        by_uid[ds.SOPInstanceUID] = np.asarray(ds.ImagePositionPatient, float)
    positions = sorted(by_uid.values(), key=lambda p: p[2])
    frames = seg.pixel_array.reshape(-1, *expected.shape[1:])
    assert len(frames) == int(np.count_nonzero(expected.reshape(len(expected), -1).any(1)))
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        src = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        ipp = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        np.testing.assert_allclose(ipp, by_uid[src], atol=1e-3)
        z = next(i for i, p in enumerate(positions) if np.allclose(p, by_uid[src], atol=1e-3))
        np.testing.assert_array_equal(frames[k], expected[z])

    # The project's own reader puts the SEG back onto the series fetched from the PACS: voxel for voxel.
    from napari_lesionseg.core.io.dicom_seg import read_seg

    [fetched] = dw.fetch_series(client, pacs["study"], pacs["series"])
    labels, names = read_seg(seg, fetched.geometry)
    np.testing.assert_array_equal(labels, expected)
    assert names == {1: "lesion"}

    # The measurement report went to the same study: the lesion's volume, pointing at the SEG's segment 1.
    import highdicom as hd

    [sr_series] = [s for s in dw.list_series(client, pacs["study"]) if s["modality"] == "SR"]
    sr_sop = client.search_for_instances(pacs["study"], sr_series["series_uid"])[0]["00080018"]["Value"][0]
    sr = hd.sr.Comprehensive3DSR.from_dataset(dw.fetch_instance(client, pacs["study"], sr_series["series_uid"],
                                                                sr_sop))
    [group] = sr.content.get_volumetric_roi_measurement_groups()
    assert group.referenced_segment.referenced_segment_numbers == [1]
    volume = next(m for m in group.get_measurements() if m.name.meaning == "Volume")
    voxel_ml = float(np.prod(scan.geometry.spacing)) / 1000.0
    assert volume.unit.value == "mL" and volume.value == pytest.approx(expected.sum() * voxel_ml, rel=1e-6)

    # The local copy is the same object, and highdicom in a separate process reads names and geometry right.
    assert pydicom.dcmread(local).SOPInstanceUID == seg.SOPInstanceUID
    report = _highdicom_in_a_separate_process(local, pacs["files"][0].parent)
    assert report["labels"] == ["lesion"] and report["algorithm"] == "mri-lesion"
    assert report["frame_of_reference"] == seg.FrameOfReferenceUID
    assert report["voxels"] == int(expected.sum())
    np.testing.assert_allclose(report["spacing"], scan.geometry.spacing, atol=1e-4)
    # highdicom's own volume (it may stack the slices the other way round) has the source's rows and columns, and
    # puts the lesion at the same place in the patient as the mask on the source series does.
    aff = np.asarray(report["nifti_affine"])
    np.testing.assert_allclose(aff[:3, :2], scan.geometry.nifti_affine[:3, :2], atol=1e-4)
    np.testing.assert_allclose(np.abs(aff[:3, 2]), np.abs(scan.geometry.nifti_affine[:3, 2]), atol=1e-4)
    assert report["shape"][1:3] == list(expected.shape[1:])
    centroid = (scan.geometry.nifti_affine @ [*np.argwhere(expected > 0).mean(0)[::-1], 1.0])[:3]
    np.testing.assert_allclose(report["centroid_ras"], centroid, atol=1e-3)


HIGHDICOM_READER = r"""
import json, sys
from pathlib import Path
import numpy as np, pydicom, highdicom as hd
seg = hd.seg.segread(sys.argv[1])
sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(Path(sys.argv[2]).glob("*.dcm"))]
sources.sort(key=lambda d: float(d.ImagePositionPatient[2]))
arr = seg.get_pixels_by_source_instance([d.SOPInstanceUID for d in sources], combine_segments=True,
                                        assert_missing_frames_are_empty=True)
vol = seg.get_volume(combine_segments=True)
# The volume's own affine (LPS, array (slice, row, column)) as a NIfTI one (RAS, (column, row, slice)).
aff = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(vol.affine, float)[:, [2, 1, 0, 3]]
print(json.dumps({
    "labels": [d.SegmentLabel for d in seg.SegmentSequence],
    "algorithm": seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName,
    "frame_of_reference": seg.FrameOfReferenceUID,
    "voxels": int((arr > 0).sum()),
    "spacing": [float(v) for v in vol.spacing],
    "nifti_affine": aff.tolist(),
    "shape": [int(n) for n in vol.shape],
    # Where the lesion is in the patient (RAS mm): the mean of its voxels' centres through the volume's affine.
    "centroid_ras": (aff @ [*np.argwhere(vol.array > 0).mean(0)[::-1], 1.0])[:3].tolist(),
}))
"""


def _highdicom_in_a_separate_process(seg_path: Path, series_folder: Path) -> dict:
    """Read the SEG with highdicom alone (no napari_lesionseg import) in a fresh interpreter."""
    r = subprocess.run([sys.executable, "-c", HIGHDICOM_READER, str(seg_path), str(series_folder)],
                       capture_output=True, text=True, timeout=300, cwd=seg_path.parent)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _delete_series(pacs, series_uid: str) -> None:
    import requests

    base, auth = pacs["server"].base, (USER, PASSWORD)
    r = requests.post(f"{base}/tools/lookup", data=series_uid, auth=auth, timeout=10)
    for hit in r.json():
        requests.delete(f"{base}/series/{hit['ID']}", auth=auth, timeout=10).raise_for_status()


def test_a_pacs_that_refuses_the_login_or_is_down_is_a_clear_message_and_nothing_is_stored(pacs, capsys,
                                                                                           monkeypatch):
    monkeypatch.setenv("LESIONSEG_PACS_PASSWORD", "wrong")
    url = pacs["server"].dicomweb
    assert main(["predict", "--model", "mri-lesion", "--dicomweb", url, "--study", pacs["study"],
                 "--user", USER]) == 2
    err = capsys.readouterr().err
    assert "refused the login" in err and "wrong" not in err and "Traceback" not in err
    down = f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    assert main(["pacs", "--dicomweb", down]) == 2
    err = capsys.readouterr().err
    assert "cannot be reached" in err and PASSWORD not in err and USER not in err
    with pytest.raises(LesionSegError, match="cannot be reached"):
        dw.store_instances(dw.connect(down), [pydicom.dcmread(pacs["files"][0])], pacs["study"])
    assert not [s for s in dw.list_series(_client(pacs), pacs["study"]) if s["modality"] in ("SEG", "SR")]


def test_listing_and_fetching_through_dicomweb_keeps_the_series_geometry(pacs, capsys, monkeypatch):
    client = _client(pacs)
    studies = dw.list_studies(client)
    assert [s["study_uid"] for s in studies] == [pacs["study"]] and studies[0]["patient_name"] == "Duke^153"
    [series] = dw.list_series(client, pacs["study"])
    assert series["is_image"] and series["instances"] == len(pacs["files"])
    [fetched] = dw.fetch_series(client, pacs["study"], pacs["series"])
    [local] = read_scan(pacs["files"][0].parent)
    np.testing.assert_array_equal(fetched.data, pacs["volume"])
    np.testing.assert_allclose(fetched.geometry.nifti_affine, local.geometry.nifti_affine, atol=1e-6)
    assert fetched.geometry.extra["sop_instance_uids"] == local.geometry.extra["sop_instance_uids"]
    assert fetched.geometry.extra["source_path"] is None  # the temporary download is gone
    monkeypatch.setenv("LESIONSEG_PACS_PASSWORD", PASSWORD)
    assert main(["pacs", "--dicomweb", pacs["server"].dicomweb, "--user", USER, "--study", pacs["study"]]) == 0
    assert "post1 - pre (SUB)" in capsys.readouterr().out


def test_a_seg_series_is_not_an_image_to_fetch(pacs, tmp_path):
    from napari_lesionseg.core.io.dicom_seg import build_seg

    client = _client(pacs)
    [scan] = read_scan(pacs["files"][0].parent)
    mask = np.zeros(scan.shape, np.uint8)
    mask[TUMOUR] = 1
    seg = build_seg(mask, scan.geometry)
    dw.store_instances(client, [seg], pacs["study"])
    with pytest.raises(LesionSegError, match="not an image"):
        dw.fetch_series(client, pacs["study"], seg.SeriesInstanceUID)


def test_export_seg_of_a_nifti_mask_onto_a_series_on_the_pacs(pacs, tmp_path, capsys, monkeypatch):
    """A mask made elsewhere (NIfTI on the series' grid) goes to the PACS as a MANUAL SEG with its report."""
    from napari_lesionseg.core.io import write_mask

    [scan] = read_scan(pacs["files"][0].parent)
    mask = np.zeros(scan.shape, np.uint8)
    mask[TUMOUR] = 1
    write_mask(mask, scan.geometry, tmp_path / "mask.nii.gz")
    monkeypatch.setenv("LESIONSEG_PACS_PASSWORD", PASSWORD)
    local = tmp_path / "local_seg.dcm"
    assert main(["export-seg", "--mask", str(tmp_path / "mask.nii.gz"), "--dicomweb", pacs["server"].dicomweb,
                 "--user", USER, "--study", pacs["study"], "--series", pacs["series"], "--output", str(local)]) == 0
    assert "stored DICOM SEG" in capsys.readouterr().out
    client = _client(pacs)
    seg = _stored_seg(client, pacs["study"])
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    assert pydicom.dcmread(local).SOPInstanceUID == seg.SOPInstanceUID  # the local copy is the stored SEG
    np.testing.assert_array_equal(read_seg_on(seg, client, pacs), mask)
    assert sorted(s["modality"] for s in dw.list_series(client, pacs["study"])) == ["MR", "SEG", "SR"]


def read_seg_on(seg, client, pacs):
    from napari_lesionseg.core.io.dicom_seg import read_seg

    [fetched] = dw.fetch_series(client, pacs["study"], pacs["series"])
    return read_seg(seg, fetched.geometry)[0]


def test_a_seg_whose_source_series_is_not_on_the_pacs_is_a_clear_error(pacs, tmp_path):
    """A SEG stored in the study but made on a series the PACS never received: opening it says so."""
    from _io_dicom_factory import write_series

    from napari_lesionseg.core.io.dicom_seg import build_seg

    write_series(tmp_path / "other", np.ones((3, 8, 8), np.uint16), row_cos=[1, 0, 0], col_cos=[0, 1, 0],
                 spacing_rc=(1.0, 1.0), origin=[0, 0, 0], slice_step=[0, 0, 2], StudyInstanceUID=pacs["study"],
                 FrameOfReferenceUID=pydicom.uid.generate_uid(), description="never uploaded")
    [other] = read_scan(tmp_path / "other")
    seg = build_seg(np.ones(other.shape, np.uint8), other.geometry)
    client = _client(pacs)
    dw.store_instances(client, [seg], pacs["study"])
    [stored] = dw.fetch_segs(client, pacs["study"], seg.SeriesInstanceUID)
    with pytest.raises(LesionSegError, match="source images of this DICOM SEG .* are not on the PACS"):
        dw.segs_on_sources(client, pacs["study"], [stored], open_scans=[])
