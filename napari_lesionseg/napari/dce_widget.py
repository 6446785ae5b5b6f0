"""Dock: DCE-MRI subtraction (post − pre) and percentage enhancement as new layers on the post-contrast geometry.

The lesion enhances after contrast; it is far easier to see (and to segment) in the subtraction image.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, Container, PushButton, create_widget

from ..core.errors import LesionSegError
from ..core.io.dce import percentage_enhancement_array, subtraction_array
from .layer_utils import derived_layer_kwargs, layer_geometry


def _check_same_grid(post, pre) -> None:
    a, b = post.data, pre.data
    if post.multiscale or pre.multiscale or post.rgb or pre.rgb:
        raise LesionSegError("Choose two grayscale MRI phases (not slides or colour images).")
    if a.shape != b.shape:
        raise LesionSegError(f"The two phases have different shapes {a.shape} and {b.shape}.")
    ga, gb = layer_geometry(post), layer_geometry(pre)
    if ga is not None and gb is not None and ga.nifti_affine is not None and gb.nifti_affine is not None:
        if not np.allclose(ga.nifti_affine, gb.nifti_affine, atol=1e-3):
            raise LesionSegError("The two phases are not on the same grid (different affines); register them first.")
    elif not np.allclose(post.scale, pre.scale, rtol=1e-4):
        raise LesionSegError("The two phases have different voxel sizes.")


def make_dce_layers(viewer, post, pre, *, subtraction: bool = True, enhancement: bool = False) -> list:
    """Add the chosen derived layers to `viewer`; returns them."""
    if post is None or pre is None:
        raise LesionSegError("Choose a post-contrast and a pre-contrast layer.")
    if post is pre:
        raise LesionSegError("Choose two different layers for the post- and pre-contrast phases.")
    _check_same_grid(post, pre)
    out = []
    if subtraction:
        sub = subtraction_array(post.data, pre.data)
        kw = derived_layer_kwargs(post, f"{post.name} - {pre.name}")
        lo, hi = np.percentile(sub, [1, 99.5])
        out.append(viewer.add_image(sub, colormap="gray", contrast_limits=(min(float(lo), 0.0), float(max(hi, lo + 1))), **kw))
    if enhancement:
        pe = percentage_enhancement_array(post.data, pre.data)
        kw = derived_layer_kwargs(post, f"{post.name} enhancement %")
        out.append(viewer.add_image(pe, colormap="inferno", contrast_limits=(0.0, 200.0), **kw))
    return out


class DCEWidget(Container):
    def __init__(self, napari_viewer):
        import napari.layers

        super().__init__(labels=True)
        self._viewer = napari_viewer
        self.post = create_widget(annotation=napari.layers.Image, label="Post-contrast")
        self.pre = create_widget(annotation=napari.layers.Image, label="Pre-contrast")
        self.subtraction = CheckBox(value=True, text="Subtraction (post − pre)")
        self.enhancement = CheckBox(value=False, text="Percentage enhancement")
        self.run_button = PushButton(text="Make DCE layers")
        self.extend([self.post, self.pre, self.subtraction, self.enhancement, self.run_button])
        self.run_button.changed.connect(self.run)

    def run(self, *_):
        from napari.utils.notifications import show_error

        try:
            return make_dce_layers(self._viewer, self.post.value, self.pre.value,
                                   subtraction=self.subtraction.value, enhancement=self.enhancement.value)
        except LesionSegError as e:
            show_error(str(e))
            return []
