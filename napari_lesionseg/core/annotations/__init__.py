"""Sparse annotations → masks: diameter lines (RECIST), points/clicks, circles, and napari's CSV exports.

    from napari_lesionseg.core.annotations import Line, lines_to_labels, line_to_mask
    labels = lines_to_labels(image, [Line(p0, p1)], spacing=(0.5, 0.5))     # 1 label per line
    mask = box_to_mask(image, (y0, x0), (y1, x1))                             # the lesion in a box
    disks = points_to_disks(image.shape, points, radius=3, spacing=spacing)   # 3 mm disks
    heat = points_to_heatmap(image.shape, points, a=0.5)                      # exp(-a·d)

All coordinates are array indices in napari axis order; bad input raises `LesionSegError`.
"""

from .circles import Circle, circles_to_labels, read_circle_table
from .frame import LineFrame, longest_diameter, short_axis
from .lines import METHODS, Line, check_line, line_to_mask, lines_to_labels, pair_short_axes
from .napari_csv import (PointTable, Shape, read_points_csv, read_shapes_csv, shapes_to_segments, world_to_voxels,
                         write_points_csv, write_shapes_csv)
from .points import check_points, clicks_to_mask, points_to_disks, points_to_heatmap
from .prompts import box_to_mask, boxes_to_labels, shapes_to_labels

__all__ = [
    "METHODS", "Circle", "Line", "LineFrame", "PointTable", "Shape", "box_to_mask", "boxes_to_labels", "check_line",
    "check_points", "circles_to_labels",
    "clicks_to_mask", "line_to_mask", "lines_to_labels", "longest_diameter", "pair_short_axes", "points_to_disks",
    "points_to_heatmap", "read_circle_table", "read_points_csv", "read_shapes_csv", "shapes_to_segments",
    "shapes_to_labels", "short_axis", "world_to_voxels", "write_points_csv", "write_shapes_csv",
]
