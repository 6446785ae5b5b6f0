"""Box and click prompts → a lesion mask, with the same prompt network as the diameter line.

Every prompt becomes a frame (`frame.LineFrame`) plus prompt channels (`line_model.prompt_channels`):
- a box: the frame runs along the box's longer middle line; the filled box is a channel of its own;
- a click at the lesion's centre: the lesion's size is found from the image, by running the network on a frame
  centred on the click and re-sizing the frame to the diameter of what it found, until the size settles;
- positive and negative clicks added to any prompt refine the result (one network pass each time).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import LesionSegError
from .frame import LineFrame


def box_frame(corner0, corner1, spacing=(1.0, 1.0)) -> tuple[LineFrame, np.ndarray]:
    """(frame along the box's longer middle line, the box's 4 corners (y, x)) for an axis-aligned box."""
    (y0, x0), (y1, x1) = np.asarray(corner0, float)[-2:], np.asarray(corner1, float)[-2:]
    top, bottom, left, right = min(y0, y1), max(y0, y1), min(x0, x1), max(x0, x1)
    sp = np.asarray(spacing, float)[-2:]
    cy, cx = (top + bottom) / 2, (left + right) / 2
    if (right - left) * sp[1] >= (bottom - top) * sp[0]:
        a, b = (cy, left), (cy, right)
    else:
        a, b = (top, cx), (bottom, cx)
    corners = np.array([[top, left], [top, right], [bottom, right], [bottom, left]], float)
    return LineFrame.from_line(a, b, sp), corners
