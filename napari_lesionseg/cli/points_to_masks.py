"""`lesionseg points-to-masks`: points saved from a napari Points layer → disks or an exp(-a·d) probability map.

    lesionseg points-to-masks --image IMG --annotations points.csv --output disks.png --radius 3 --mm
    lesionseg points-to-masks --image IMG --annotations points.csv --output heat.tif --heatmap 0.2
    lesionseg points-to-masks --image mdb005.png --circles mias/annotations.csv --output mdb005_mask.png

The CSV is what napari writes for a Points layer (`index,axis-0,axis-1[,axis-2]`, plus property columns), in the
image's pixel/voxel indices (or in mm with --world). Disks get label values 1, 2, … in point order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import LesionSegError
from ._inputs import add_series_option, add_spacing_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "points-to-masks",
        help="points (napari Points CSV) → disks of a radius, or exp(-a·d) probability maps",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--image", required=True, help="the image the points were placed on (for its shape and spacing)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--annotations", help="napari Points layer saved as CSV")
    src.add_argument("--circles", help="table of circles with columns [image,] col, row, radius (pixels), "
                                       "e.g. mini-MIAS annotations.csv: the image's own rows become disks")
    p.add_argument("--output", "-o", required=True, help="mask or probability map to write")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--radius", type=float, help="disk radius (pixels, or mm with --mm)")
    g.add_argument("--heatmap", type=float, metavar="A", help="write exp(-A·d) instead of disks (d in px, or mm with --mm)")
    p.add_argument("--mm", action="store_true", help="radius and distances in millimetres (uses the image's spacing)")
    p.add_argument("--world", action="store_true", help="coordinates are in mm, not pixel/voxel indices")
    add_spacing_option(p)
    add_series_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..core.annotations import points_to_disks, points_to_heatmap, read_points_csv, world_to_voxels
    from ..core.io import write_mask, write_probabilities
    from ..core.io.output_guard import check_outputs
    from .lines_to_masks import read_image, spatial_ndim

    check_outputs({"--image": args.image, "--annotations": args.annotations, "--circles": args.circles},
                  {"--output": args.output})
    image, geom, rgb, _modality = read_image(args.image, args.spacing, args.series)
    if args.mm and not geom.spacing_known:
        raise LesionSegError(f"--mm needs the pixel size, which "
                             f"{Path(args.image).name} does not state: pass --spacing MM (e.g. --spacing 0.1), "
                             "or give the radius in pixels (without --mm).")
    nd = spatial_ndim(image, rgb)
    shape = image.shape[:nd]
    if args.circles:
        return _circles(args, shape, geom)
    if args.radius is None and args.heatmap is None:
        raise LesionSegError("Give --radius R (disks) or --heatmap A (exp(-A·d) map).")
    table = read_points_csv(args.annotations)
    pts = table.coords
    if pts.shape[1] != nd:
        raise LesionSegError(f"The points have {pts.shape[1]} coordinates but the image is {nd}-D {shape}.")
    if args.world:
        pts = world_to_voxels(pts, geom.spacing)
    spacing = geom.spacing if args.mm else None
    if args.radius is not None:
        labels = points_to_disks(shape, pts, args.radius, spacing=spacing)
        out = write_mask(labels.astype(np.uint16 if labels.max() > 255 else np.uint8), geom, args.output,
                         source_path=args.image)
        print(f"{len(pts)} disks of radius {args.radius:g} {'mm' if args.mm else 'px'}: wrote {out}")
    else:
        heat = points_to_heatmap(shape, pts, args.heatmap, spacing=spacing)
        out = write_probabilities(heat, geom, args.output, source_path=args.image)
        print(f"{len(pts)} points, exp(-{args.heatmap:g}·d) map (d in {'mm' if args.mm else 'px'}): wrote {out}")
    return 0


def _circles(args, shape, geom) -> int:
    from pathlib import Path

    from ..core.annotations import circles_to_labels, read_circle_table
    from ..core.io import write_mask

    if len(shape) != 2:
        raise LesionSegError("Circles are for 2D images.")
    circles = read_circle_table(args.circles, image=Path(args.image).name)
    if not circles:
        raise LesionSegError(f"{Path(args.circles).name} has no circle for {Path(args.image).name}.")
    labels = circles_to_labels(shape, circles)
    out = write_mask(labels.astype(np.uint8 if labels.max() < 256 else np.uint16), geom, args.output,
                     source_path=args.image)
    print(f"{len(circles)} circle{'s' if len(circles) > 1 else ''} ({', '.join(c.cls or '?' for c in circles)}): wrote {out}")
    return 0
