"""What the docks and the Save dialog tell a DICOM SEG about a Labels layer: which model made it (the Segment dock
puts its name in the layer metadata) and whether the user corrected it since (AUTOMATIC vs SEMIAUTOMATIC)."""

from __future__ import annotations

EDITED_KEY = "lesionseg_edited"
MODEL_KEY = "lesionseg_model"


def seg_options_from_metadata(metadata: dict | None) -> dict:
    """`build_seg` keyword arguments for a layer with this metadata (MANUAL when no model made it)."""
    from ..core.errors import LesionSegError
    from ..core.io.dicom_seg import SegAlgorithm
    from ..core.models import default_registry

    metadata = metadata or {}
    name = metadata.get(MODEL_KEY)
    if not name:
        return {"algorithm": None, "edited": False}
    try:
        card = default_registry().get(name)
    except LesionSegError:  # the model was removed since: still name it
        return {"algorithm": SegAlgorithm(name=str(name)), "edited": bool(metadata.get(EDITED_KEY))}
    return {"algorithm": SegAlgorithm.from_card(card), "class_names": [c.name for c in card.classes],
            "edited": bool(metadata.get(EDITED_KEY))}


def is_dicom_layer(layer) -> bool:
    """True when the layer (or the scan it was derived from) came from DICOM, so a SEG can refer to it."""
    from ..core.geometry import geometry_from_metadata

    geom = geometry_from_metadata(getattr(layer, "metadata", None))
    return bool(geom is not None and geom.extra.get("dicom_instances"))
