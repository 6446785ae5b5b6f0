"""The thin napari layer: dock widgets, readers, writers and sample data, all calling `napari_lesionseg.core`."""
