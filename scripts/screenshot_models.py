"""Screenshots of each shipped model run from the Segment dock on a real image of its modality (for the README).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_models.py [--out docs/images] [--models NAME ...]

Images the models did not train on where the data allow it: BrEaST 10058 (another hospital, from
../shared/data); mini-MIAS mdb032 is training data of the cross-validated `mammography-mass` (held out in its fold 1), the MoNuSeg tile TCGA-A7-A13E (held out). The MRI model has only one DCE case, so
its picture is of its own training patient (the Duke crop sample): it shows what the output looks like, not how
well the model generalises.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LESIONSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

SHOTS = [  # (file name, model, scope, image to open or sample id, image layer name part, slice)
    ("model_ultrasound.png", "ultrasound-lesion", "Whole image / slide",
     DATA / "ultrasound/breast_lesions_usg/images/10058.png", "10058", None),
    ("model_mammography.png", "mammography-mass", "Whole image / slide",
     DATA / "mammography/mias/images/mdb032.png", "mdb032", None),
    ("model_histology.png", "histology-nuclei", "Whole image / slide", "monuseg_he", "MoNuSeg", None),
    ("model_mri.png", "mri-lesion", "Whole volume", "duke_dce_mri", "post1 - pre", 16),
]


def _wait(predicate, timeout: float = 600) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.time() + timeout
    while time.time() < end and not predicate():
        QApplication.processEvents()
        time.sleep(0.05)


def main() -> None:
    import segmentation_models_pytorch  # noqa: F401 - torch stack before OpenGL (napari_lesionseg/_triton_guard.py)
    import imageio.v3 as iio
    import napari
    from napari.settings import get_settings

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    ap.add_argument("--models", nargs="*", help="only these models (default: all four)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    get_settings().application.gui_notification_level = "error"
    for fname, model, scope, source, layer_part, z in SHOTS:
        if args.models and model not in args.models:
            continue
        if isinstance(source, Path) and not source.exists():
            print(f"{fname}: {source} not found, skipped")
            continue
        v = napari.Viewer(show=True)
        v.window._qt_window.resize(1500, 900)
        if isinstance(source, Path):
            v.open(str(source), plugin="napari-lesionseg")
        else:
            v.open_sample("napari-lesionseg", source)
        for layer in list(v.layers):
            if layer._type_string != "image":
                layer.visible = False  # reference masks and circles off: the picture shows the model's mask
        _, dock = v.window.add_plugin_dock_widget("napari-lesionseg", "Segment lesions")
        image = next(l for l in v.layers if l._type_string == "image" and layer_part in l.name)
        dock.image_combo.setCurrentText(image.name)
        dock.model_combo.setCurrentText(model)
        dock.scope_combo.setCurrentText(scope)
        if z is not None:
            v.dims.set_point(0, z * float(image.scale[0]))
        dock.segment()
        _wait(lambda: dock._worker is None)
        v.reset_view()
        _wait(lambda: False, 1.5)  # let the canvas draw
        iio.imwrite(args.out / fname, v.screenshot(canvas_only=False, flash=False)[..., :3])
        print(args.out / fname)
        v.close()


if __name__ == "__main__":
    main()
