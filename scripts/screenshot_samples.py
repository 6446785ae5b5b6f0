"""Screenshots of each bundled sample in napari with the plugin's docks (for the README and user guide).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_samples.py [--out docs/images]

Ultrasound and DCE-MRI are shown with the Measure dock (the BUSI expert mask measured, diameters drawn),
mammography with the mini-MIAS mass circle, histology with the Histology dock after H&E deconvolution.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _shot(viewer, path: Path) -> None:
    import time

    from qtpy.QtWidgets import QApplication

    end = time.time() + 1.5  # let the canvas draw
    while time.time() < end:
        QApplication.processEvents()
        time.sleep(0.05)
    img = viewer.screenshot(canvas_only=False, flash=False)
    import imageio.v3 as iio

    iio.imwrite(path, img[..., :3])
    print(path, img.shape)


def main() -> None:
    import napari

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "error"  # no start-up toasts over the image

    # ultrasound: the expert mask measured, diameters drawn
    v = napari.Viewer(show=True)
    v.window._qt_window.resize(1500, 900)
    v.open_sample("napari-lesionseg", "busi_ultrasound")
    _, w = v.window.add_plugin_dock_widget("napari-lesionseg", "Measure lesions")
    w.draw_check.setChecked(True)
    w.measure_now()
    v.reset_view()
    _shot(v, args.out / "sample_ultrasound.png")
    v.close()

    # mammography: the mass circle
    v = napari.Viewer(show=True)
    v.window._qt_window.resize(1500, 900)
    v.open_sample("napari-lesionseg", "mias_mammogram")
    v.window.add_plugin_dock_widget("napari-lesionseg", "Measure lesions")
    v.reset_view()
    _shot(v, args.out / "sample_mammography.png")
    v.close()

    # histology: H and E channels
    v = napari.Viewer(show=True)
    v.window._qt_window.resize(1500, 900)
    layers = v.open_sample("napari-lesionseg", "monuseg_he")
    _, w = v.window.add_plugin_dock_widget("napari-lesionseg", "Histology tools")
    w.deconvolve()
    layers[0].visible = False
    v.layers[f"{layers[0].name} eosin"].visible = False
    _shot(v, args.out / "sample_histology.png")
    v.close()

    # DCE-MRI: the subtraction at the tumour's middle slice
    v = napari.Viewer(show=True)
    v.window._qt_window.resize(1500, 900)
    layers = v.open_sample("napari-lesionseg", "duke_dce_mri")
    v.window.add_plugin_dock_widget("napari-lesionseg", "Measure lesions")
    v.dims.set_point(0, 16 * float(layers[0].scale[0]))
    v.reset_view()
    _shot(v, args.out / "sample_mri.png")
    v.close()


if __name__ == "__main__":
    main()
