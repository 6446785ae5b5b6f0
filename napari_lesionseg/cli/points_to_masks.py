"""`lesionseg points-to-masks`: points saved from a napari Points layer → disks or an exp(-a·d) probability map.

    lesionseg points-to-masks --image IMG --annotations points.csv --output disks.png --radius 3 --mm
    lesionseg points-to-masks --image IMG --annotations points.csv --output heat.tif --heatmap 0.2
    lesionseg points-to-masks --image mdb005.png --circles mias/annotations.csv --output mdb005_mask.png
    lesionseg points-to-masks --image IMG --annotations clicks.csv --prompt [--negative neg.csv] --output lesions.png

The CSV is what napari writes for a Points layer (`index,axis-0,axis-1[,axis-2]`, plus property columns), in the
image's pixel/voxel indices (or in mm with --world). Disks get label values 1, 2, … in point order. With --prompt
each click on a lesion's centre becomes that lesion's mask (its size found from the image, the prompt network
segments it); a click near an earlier lesion refines it, and --negative clicks cut what is not lesion.
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
    g.add_argument("--prompt", action="store_true", help="segment the lesion at each click with the prompt network "
                                                         "(its size from the image), as the Annotations dock does")
    p.add_argument("--negative", help="with --prompt: napari Points CSV of negative clicks (not lesion)")
    p.add_argument("--mm", action="store_true", help="radius and distances in millimetres (uses the image's spacing)")
    p.add_argument("--world", action="store_true", help="coordinates are in mm, not pixel/voxel indices")
    add_spacing_option(p)
    add_series_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..core.annotations import points_to_disks, points_to_heatmap
    from ..core.io import write_mask, write_probabilities
    from ..core.io.output_guard import check_outputs
    from .lines_to_masks import read_image, spatial_ndim

    check_outputs({"--image": args.image, "--annotations": args.annotations, "--circles": args.circles,
                   "--negative": args.negative}, {"--output": args.output})
    image, geom, rgb, modality = read_image(args.image, args.spacing, args.series)
    if args.mm and not geom.spacing_known:
        raise LesionSegError(f"--mm needs the pixel size, which "
                             f"{Path(args.image).name} does not state: pass --spacing MM (e.g. --spacing 0.1), "
                             "or give the radius in pixels (without --mm).")
    nd = spatial_ndim(image, rgb)
    shape = image.shape[:nd]
    if args.circles:
        return _circles(args, shape, geom)
    if args.radius is None and args.heatmap is None and not args.prompt:
        raise LesionSegError("Give --radius R (disks), --heatmap A (exp(-A·d) map) or --prompt (the lesion at "
                             "each click).")
    if args.negative and not args.prompt:
        raise LesionSegError("--negative clicks need --prompt.")
    pts = _read_points(args.annotations, nd, shape, args.world, geom)
    if args.prompt:
        return _prompt(args, image, pts, geom, rgb, modality, nd, shape)
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


def _read_points(path, nd, shape, world, geom) -> np.ndarray:
    from ..core.annotations import read_points_csv, world_to_voxels

    pts = read_points_csv(path).coords
    if pts.shape[1] != nd:
        raise LesionSegError(f"The points have {pts.shape[1]} coordinates but the image is {nd}-D {shape}.")
    return world_to_voxels(pts, geom.spacing) if world else pts


def _prompt(args, image, pts, geom, rgb, modality, nd, shape) -> int:
    from ..core.annotations.prompts import clicks_to_labels
    from ..core.io import write_mask

    neg = _read_points(args.negative, nd, shape, args.world, geom) if args.negative else np.zeros((0, nd))
    labels = clicks_to_labels(image, pts, neg, spacing=geom.spacing, rgb=rgb, modality=modality)
    out = write_mask(labels.astype(np.uint16 if labels.max() > 255 else np.uint8), geom, args.output,
                     source_path=args.image)
    n = int(labels.max())
    print(f"{len(pts)} click{'s' if len(pts) != 1 else ''} → {n} lesion{'s' if n != 1 else ''}: wrote {out}")
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
