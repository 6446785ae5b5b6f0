"""The thin napari layer: dock widgets, readers, writers and sample data, all calling `napari_lesionseg.core`."""

from .._triton_guard import install as _install_triton_guard

_install_triton_guard()
