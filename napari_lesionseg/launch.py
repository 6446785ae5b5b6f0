"""`make run`: open napari with the Segment dock and a real sample image (BUSI malignant ultrasound).

`python -m napari_lesionseg.launch [FILES…] [--segment] [--screenshot PNG]`: open files instead of the sample;
`--segment` clicks Segment once the window is up; `--screenshot` saves the whole window (after segmenting) and
quits — that is how the README's screenshot is taken, from the same command a user runs.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m napari_lesionseg.launch")
    ap.add_argument("files", nargs="*")
    ap.add_argument("--segment", action="store_true", help="run Segment on the image once the window is up")
    ap.add_argument("--screenshot", help="save a screenshot of the window here and quit")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)

    import segmentation_models_pytorch  # noqa: F401 - torch stack before OpenGL (see _triton_guard)
    import napari

    viewer = napari.Viewer(title="napari-lesionseg")
    if args.files:
        for path in args.files:
            viewer.open(path, plugin="napari-lesionseg")
    else:
        viewer.open_sample("napari-lesionseg", "busi_ultrasound")
        for layer in viewer.layers:
            if layer._type_string == "labels":  # the expert mask: shown on demand, not over the model's
                layer.visible = False
    viewer.window._qt_window.resize(1600, 1000)
    _, dock = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Segment lesions")
    if args.segment or args.screenshot:
        _automate(viewer, dock, args.segment or bool(args.screenshot), args.screenshot)
    napari.run()
    return 0


def _automate(viewer, dock, segment: bool, screenshot: str | None) -> None:
    from qtpy.QtCore import QTimer

    state = {"started": False}

    def step():
        if segment and not state["started"]:
            state["started"] = True
            image = [l for l in viewer.layers if l._type_string == "image"]
            if image:
                dock.image_combo.setCurrentText(image[0].name)
            dock.segment()
            QTimer.singleShot(500, step)
            return
        if dock._worker is not None:
            QTimer.singleShot(500, step)
            return
        if screenshot:
            import imageio.v3 as iio

            img = viewer.screenshot(canvas_only=False, flash=False)
            iio.imwrite(screenshot, img[..., :3])
            print(f"screenshot written to {screenshot}")
            viewer.close()

    QTimer.singleShot(1500, step)


if __name__ == "__main__":
    sys.exit(main())
