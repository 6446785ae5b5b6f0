"""Qt-free core: everything the CLI, the tests and the napari dock share."""
