"""`lesionseg lines-to-masks`: diameter lines or boxes saved from a napari Shapes layer → a lesion label mask.

    lesionseg lines-to-masks --image scan.nii.gz --annotations lines.csv --output mask.nii.gz

The CSV is what napari writes for a Shapes layer (`index,shape-type,vertex-index,axis-0,axis-1[,axis-2]`), in the
image's pixel/voxel indices (or in mm with --world). One line per lesion → label values 1, 2, …; a shorter line
crossing a longer one at about 90° is taken as that lesion's RECIST short axis. A rectangle (napari's rectangle
tool) drawn around a lesion is a box prompt: its lesions are numbered after the lines' ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import LesionSegError
from ._inputs import add_series_option, add_spacing_option, read_input


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lines-to-masks",
        help="diameter lines or boxes (napari Shapes CSV) → lesion mask that follows the image",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--image", required=True, help="the scan the lines were drawn on (NIfTI, DICOM, PNG, TIFF…)")
    p.add_argument("--annotations", required=True, help="napari Shapes layer saved as CSV (lines/paths, rectangles)")
    p.add_argument("--output", "-o", required=True, help="mask to write (.nii.gz, .png, .tif); never the image")
    p.add_argument("--method", choices=("auto", "learned", "classical"), default="auto",
                   help="auto: the line-prompted U-Net for 2D images, a 3D random walker for volumes")
    p.add_argument("--model", help="prompt network by name (e.g. one fine-tuned with `lesionseg finetune-prompt`; "
                                   "`lesionseg models` lists kind prompt); default: the shipped one for the image")
    p.add_argument("--world", action="store_true",
                   help="coordinates are in mm (the Shapes layer had no scale), not pixel/voxel indices")
    add_spacing_option(p)
    add_series_option(p)
    p.set_defaults(func=run)


def read_image(path: str, spacing=None, series: str | None = None):
    """(array in napari order, Geometry, rgb, modality) through the shared CLI reader (warnings printed)."""
    scan = read_input(path, series=series, spacing=spacing)
    if scan.multiscale:
        raise LesionSegError(f"{Path(path).name} is a multi-resolution slide; annotate a tile instead.")
    if any(a == "t" for a in scan.axes):
        raise LesionSegError(f"{Path(path).name} has a time/phase axis; pick one phase (or a subtraction) first.")
    return np.asarray(scan.data), scan.geometry, bool(scan.rgb), scan.modality


def spatial_ndim(image: np.ndarray, rgb: bool) -> int:
    return image.ndim - 1 if rgb else image.ndim


def run(args) -> int:
    from ..core.annotations import read_shapes_csv, world_to_voxels
    from ..core.annotations.prompts import shapes_to_labels
    from ..core.io import write_mask
    from ..core.io.output_guard import check_outputs
    from ..core.measure import size_text

    check_outputs({"--image": args.image, "--annotations": args.annotations}, {"--output": args.output})
    if args.model:
        from ..core.annotations.line_model import check_prompt_model

        check_prompt_model(args.model)  # an unknown name is refused before the image is read
    image, geom, rgb, modality = read_image(args.image, args.spacing, args.series)
    nd = spatial_ndim(image, rgb)
    shapes = read_shapes_csv(args.annotations)
    if args.world:
        for s in shapes:
            s.vertices = world_to_voxels(s.vertices, geom.spacing)
    labels = shapes_to_labels(image, shapes, spacing=geom.spacing, method=args.method, rgb=rgb, modality=modality,
                              model=args.model)
    out = write_mask(labels.astype(np.uint16 if labels.max() > 255 else np.uint8), geom, args.output,
                     source_path=args.image)
    sizes = np.bincount(labels.ravel())[1:]
    if not geom.spacing_known:
        print("note: the pixel size is unknown (the file does not state it): sizes are in pixels, not mm; "
              "pass --spacing MM to get mm")
    for i, n in enumerate(sizes, start=1):
        print(f"lesion {i}: {size_text(int(n), geom.spacing, geom.spacing_known)}")
    print(f"wrote {out}")
    return 0
