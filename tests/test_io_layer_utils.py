"""derived_layer_kwargs: a derived layer gets its source's placement and geometry, for the axes it actually has."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from napari_lesionseg.core.geometry import Geometry, geometry_from_metadata
from napari_lesionseg.core.io import Scan
from napari_lesionseg.napari.layer_utils import derived_layer_kwargs


def _layer_from(scan: Scan):
    kw = scan.layer_kwargs()
    n = len(kw["scale"])
    return SimpleNamespace(name=kw["name"], scale=np.array(kw["scale"]), translate=np.zeros(n), metadata=kw["metadata"])


def test_derived_kwargs_copy_scale_and_geometry():
    g = Geometry(spacing=(2.0, 0.5, 0.6), nifti_affine=np.diag([0.6, 0.5, 2.0, 1.0]),
                 extra={"source_path": "/data/scan.nii.gz"})
    src = _layer_from(Scan(np.zeros((3, 4, 5)), g, "mri", "scan", axes="zyx"))
    kw = derived_layer_kwargs(src, "scan mask")
    assert kw["name"] == "scan mask" and kw["scale"] == (2.0, 0.5, 0.6) and kw["translate"] == (0.0, 0.0, 0.0)
    assert geometry_from_metadata(kw["metadata"]) is g
    assert kw["metadata"]["lesionseg"]["source_path"] == "/data/scan.nii.gz"
    assert kw["metadata"]["lesionseg"]["derived_from"] == "scan"
    assert "reader" not in kw["metadata"]["lesionseg"]
    # The source's metadata is not modified by the derived layer's.
    kw["metadata"]["lesionseg"]["extra_key"] = 1
    assert "extra_key" not in src.metadata["lesionseg"]


def test_derived_kwargs_for_a_3d_mask_of_a_4d_scan_and_a_2d_mask_of_an_rgb_slide():
    g4 = Geometry(spacing=(2.0, 0.5, 0.6))
    src4 = _layer_from(Scan(np.zeros((3, 2, 4, 5)), g4, "mri", "dce", axes="tzyx"))
    assert tuple(src4.scale) == (1.0, 2.0, 0.5, 0.6)
    kw = derived_layer_kwargs(src4, "mask", ndim=3)
    assert kw["scale"] == (2.0, 0.5, 0.6) and kw["metadata"]["lesionseg"]["axes"] == "zyx"
    rgb = _layer_from(Scan(np.zeros((8, 9, 3), np.uint8), Geometry(spacing=(0.00025, 0.00025)), "histology", "he",
                           rgb=True, axes="yxc"))
    kw = derived_layer_kwargs(rgb, "nuclei", ndim=2)
    assert kw["scale"] == (0.00025, 0.00025) and kw["metadata"]["lesionseg"]["axes"] == "yx"
