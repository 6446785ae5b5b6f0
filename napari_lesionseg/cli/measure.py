"""`lesionseg measure`: one CSV row per lesion of a mask (size, RECIST diameters, intensity, enhancement)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import LesionSegError
from ._inputs import add_series_option, add_spacing_option, read_input


def add_parser(sub) -> None:
    p = sub.add_parser(
        "measure",
        help="measure every lesion of a mask: area/volume, long and short axis (mm, or px when the pixel size is "
             "unknown), mean intensity",
        description="One row per lesion (connected component, or label value of a multi-label mask). Columns: "
                    "label, area_mm2 (2D) or volume_ml (3D), long_axis_mm, short_axis_mm (RECIST, on the slice "
                    "where the lesion is largest), mean_intensity / mean_enhancement when images are given, "
                    "centroid in array indices and mm. When neither the mask nor the image states the pixel size "
                    "(PNG, JPEG) and no --spacing is given, the columns are in pixels: area_px2 (volume_voxels), "
                    "long_axis_px, short_axis_px.",
    )
    p.add_argument("--mask", required=True, help="lesion mask (NIfTI, PNG/TIFF, DICOM…)")
    p.add_argument("--image", help="scan for mean intensity (for DCE: the post-contrast image)")
    p.add_argument("--pre", help="pre-contrast image: adds mean_enhancement = mean(image - pre)")
    p.add_argument("--enhancement", help="an enhancement map (e.g. post - pre) for mean_enhancement")
    add_spacing_option(p)
    add_series_option(p)
    p.add_argument("--by", choices=("auto", "component", "label"), default="auto",
                   help="lesions are connected components or label values (auto: label values when the mask "
                        "has several)")
    p.add_argument("--output", "-o", help="CSV to write (default: <mask>_measurements.csv beside the mask)")
    p.set_defaults(func=run)


def spacing_known(geom) -> bool:
    """False for rasters whose pixel size the file does not state (spacing 1 = one pixel)."""
    return geom is not None and geom.spacing_known


def _read(path: str, args, shown: set):
    """(array, geometry, scan) of a file in napari axis order, through the shared CLI reader."""
    scan = read_input(path, series=args.series, spacing=args.spacing, shown=shown)
    if scan.multiscale:
        raise LesionSegError(f"{Path(path).name} is a multi-resolution slide; measure on a mask of a tile.")
    data = np.asarray(scan.data)
    return data, scan.geometry, scan


def run(args) -> int:
    from ..core.checks import check_mask_like
    from ..core.io.output_guard import check_outputs
    from ..core.measure import default_table_path, measure_lesions, write_measurements_csv

    out = Path(args.output) if args.output else default_table_path(args.mask)
    check_outputs({"--mask": args.mask, "--image": args.image, "--pre": args.pre, "--enhancement": args.enhancement},
                  {"--output" if args.output else "--output (default: beside the mask)": out})
    shown: set = set()
    mask, geom, mscan = _read(args.mask, args, shown)
    name = Path(args.mask).name
    if mscan.rgb:
        raise LesionSegError(f"{name} is a colour image, not a mask.")
    if mask.ndim > 3:
        raise LesionSegError(f"{name} has {mask.ndim} dimensions; give a 2D or 3D mask.")
    mask = check_mask_like(mask, name)
    image = pre = None
    if args.image:
        image, igeom, _ = _read(args.image, args, shown)
        if image.shape[: mask.ndim] != mask.shape:
            raise LesionSegError(f"image shape {image.shape} does not match the mask {mask.shape}")
        if not spacing_known(geom) and spacing_known(igeom):
            geom = igeom  # a PNG mask of a scan whose pixel size is known
    if args.pre:
        if not args.image:
            raise LesionSegError("--pre needs --image (the post-contrast image)")
        pre, _, _ = _read(args.pre, args, shown)
    enhancement = None
    if args.enhancement:
        enhancement, _, _ = _read(args.enhancement, args, shown)
    results = measure_lesions(mask, image=image, pre=pre, enhancement=enhancement, geometry=geom, by=args.by)
    write_measurements_csv(results, out)
    if not spacing_known(geom):
        print("note: the pixel size is unknown (the file does not state it): sizes are in pixels, not mm "
              "(columns *_px); pass --spacing MM to measure in mm")
    print(f"{len(results)} lesion(s) measured -> {out}")
    for m in results[:20]:
        size = m.n_voxels if m.size_unit == "voxels" else m.size
        print(f"  lesion {m.label}: {size:.6g} {m.size_unit}, long {m.long_axis_mm:.1f} {m.length_unit}, "
              f"short {m.short_axis_mm:.1f} {m.length_unit}")
    if len(results) > 20:
        print(f"  … {len(results) - 20} more in the table")
    return 0
