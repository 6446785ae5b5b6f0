"""napari-lesionseg: breast lesion segmentation for MRI, mammography, H&E histology and ultrasound.

`core` holds everything that works without Qt (scan I/O, annotations, models, inference, training, metrics);
`napari` holds the thin plugin layer (docks, readers, writers, sample data); `cli` the `lesionseg` command.
"""

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it (setuptools dynamic)
