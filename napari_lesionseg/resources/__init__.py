"""Where the files that ship with the plugin are: the models, the line-prompt network and the sample data.

The repository keeps them at its top level (`models/`, `sample_data/`); `models` and `sample_data` here are
relative symbolic links to those folders, so a clone, an editable install and a built wheel (where setuptools
copies the linked files into `napari_lesionseg/resources/`) all find them the same way, through
`importlib.resources`: never by walking up from a module's `__file__`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ..core.errors import LesionSegError

MODELS = "models"
LINE_PROMPT = "line_prompt"
SAMPLE_DATA = "sample_data"


def resource_dir(name: str) -> Path:
    """A folder of package data as a real path (model and image readers need file names, not streams)."""
    res = files(__package__) / name
    if not isinstance(res, Path):  # a zipped install: the files have no name on disk
        raise LesionSegError(f"napari-lesionseg's {name} cannot be read from a zipped install ({res}); "
                             "install the plugin with pip, which unpacks it.")
    return res


def shipped_models_dir() -> Path:
    """The model cards and weights that come with the plugin."""
    return resource_dir(MODELS)


def line_prompt_dir() -> Path:
    """The network that turns a diameter line into a lesion mask (not a whole-image model)."""
    return shipped_models_dir() / LINE_PROMPT


def sample_data_dir() -> Path:
    """File → Open Sample's images (one small real case per modality, citations in its README.md)."""
    return resource_dir(SAMPLE_DATA)
