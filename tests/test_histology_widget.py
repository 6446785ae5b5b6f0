"""Histology dock on the MoNuSeg sample: H and E layers, Macenko to a reference, counts per HPF and region."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_deconvolve_normalise_count(make_napari_viewer, qtbot):
    from napari_lesionseg.napari.histology_widget import HistologyWidget

    viewer = make_napari_viewer()
    he, nuclei = viewer.open_sample("napari-lesionseg", "monuseg_he")
    w = HistologyWidget(viewer)
    qtbot.addWidget(w)
    assert w.rgb_combo.currentText() == he.name

    h_layer, e_layer = w.deconvolve()
    assert h_layer.data.shape == (1000, 1000)
    assert tuple(h_layer.scale) == tuple(he.scale)
    inside = np.asarray(nuclei.data) > 0
    assert h_layer.data[inside].mean() > 2 * h_layer.data[~inside].mean()

    # a reference with another stain: the tile's colours swapped towards pink (a synthetic restain)
    ref = np.asarray(he.data).astype(float)
    ref[..., 1] = np.clip(ref[..., 1] * 0.8, 0, 255)
    viewer.add_image(ref.astype(np.uint8), rgb=True, name="pink reference", scale=he.scale)
    w.ref_combo.refresh()
    w.ref_combo.setCurrentText("pink reference")
    worker = w.normalise(blocking=False)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: any("normalised" in la.name for la in viewer.layers), timeout=5000)
    norm = next(la for la in viewer.layers if "normalised" in la.name)
    green = [np.asarray(la.data)[..., 1][inside].mean() for la in (he, norm)]
    assert green[1] < green[0]  # moved towards the greener-absorbing reference

    # mitoses: three points in the top-left HPF, one elsewhere; regions = nuclei mask
    pts = np.array([[100, 100], [200, 150], [300, 300], [900, 900]], float)
    viewer.add_points(pts, name="mitoses", scale=he.scale)
    w.points_combo.refresh()
    w.points_combo.setCurrentText("mitoses")
    w.regions_combo.setCurrentText(nuclei.name)
    res = w.count()
    # 0.237 mm² -> side 0.4868 mm = 1947 px at 0.25 µm: the whole tile is one field
    assert res["n_points"] == 4 and res["n_fields"] == 1 and res["max_per_hpf"] == 4
    assert sum(v["count"] for v in res["per_region"].values()) == 4
    w.hpf_spin.setValue(0.01)  # side 0.1 mm = 400 px
    res = w.count()
    assert res["n_fields"] == 9 and res["max_per_hpf"] == 3
    hm = w.heatmap()
    assert hm.data.shape == (1000, 1000) and hm.data[100, 100] == pytest.approx(1.0)
