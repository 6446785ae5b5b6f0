"""`make run`: open napari with the Segment dock and a real sample image (BUSI malignant ultrasound)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import segmentation_models_pytorch  # noqa: F401 - torch stack before OpenGL (see _triton_guard)
    import napari

    argv = sys.argv[1:] if argv is None else argv
    viewer = napari.Viewer(title="napari-lesionseg")
    if argv:
        for path in argv:
            viewer.open(path, plugin="napari-lesionseg")
    else:
        viewer.open_sample("napari-lesionseg", "busi_ultrasound")
    viewer.window.add_plugin_dock_widget("napari-lesionseg", "Segment lesions")
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
