"""`lesionseg points-to-masks`: points saved from a napari Points layer → disks or an exp(-a·d) probability map.

    lesionseg points-to-masks --image IMG --annotations points.csv --output disks.png --radius 3 --mm
    lesionseg points-to-masks --image IMG --annotations points.csv --output heat.tif --heatmap 0.2

The CSV is what napari writes for a Points layer (`index,axis-0,axis-1[,axis-2]`, plus property columns), in the
image's pixel/voxel indices (or in mm with --world). Disks get label values 1, 2, … in point order.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import LesionSegError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "points-to-masks",
        help="points (napari Points CSV) → disks of a radius, or exp(-a·d) probability maps",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--image", required=True, help="the image the points were placed on (for its shape and spacing)")
    p.add_argument("--annotations", required=True, help="napari Points layer saved as CSV")
    p.add_argument("--output", "-o", required=True, help="mask or probability map to write")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--radius", type=float, help="disk radius (pixels, or mm with --mm)")
    g.add_argument("--heatmap", type=float, metavar="A", help="write exp(-A·d) instead of disks (d in px, or mm with --mm)")
    p.add_argument("--mm", action="store_true", help="radius and distances in millimetres (uses the image's spacing)")
    p.add_argument("--world", action="store_true", help="coordinates are in mm, not pixel/voxel indices")
    p.add_argument("--spacing", type=float, nargs="+", help="pixel size in mm for rasters that do not store it")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..core.annotations import points_to_disks, points_to_heatmap, read_points_csv, world_to_voxels
    from ..core.io import write_mask, write_probabilities
    from .lines_to_masks import read_image, spatial_ndim

    image, geom, rgb = read_image(args.image, args.spacing)
    nd = spatial_ndim(image, rgb)
    shape = image.shape[:nd]
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
