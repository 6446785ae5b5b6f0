"""Line and box prompts → a lesion mask with the prompt network, on a real image of every modality.

The real-image tests need ../shared/data and the shipped prompt network (models/line_prompt/prompt_unet); they skip
cleanly without either. The geometry (box frame, rectangles from a Shapes CSV, prompt channels) and the registry
are checked on synthetic input.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_lesionseg.core.annotations import line_to_mask, longest_diameter, prompts, short_axis
from napari_lesionseg.core.annotations.line_model import line_model_available, model_card, prompt_channels
from napari_lesionseg.core.annotations.napari_csv import Shape, shapes_to_boxes
from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.metrics import dice

from conftest import pyradiomics_volume, shared_path


def _prompt_network():
    if not line_model_available() or "prompt_channels" not in model_card():
        pytest.skip("the prompt network (models/line_prompt/prompt_unet) is not installed")


# ---------------------------------------------------------------- geometry, synthetic


def test_box_frame_runs_along_the_longer_middle_line():
    frame, corners = prompts.box_frame((10, 20), (30, 80))  # 20 rows × 60 columns: horizontal
    np.testing.assert_allclose(frame.to_array(frame.line_ends()), [[20, 20], [20, 80]], atol=1e-6)
    np.testing.assert_allclose(corners, [[10, 20], [10, 80], [30, 80], [30, 20]])
    frame, _ = prompts.box_frame((90, 40), (10, 50))  # corners in any order; tall box: vertical line
    ends = frame.to_array(frame.line_ends())
    np.testing.assert_allclose(sorted(ends[:, 0]), [10, 90], atol=1e-6)
    np.testing.assert_allclose(ends[:, 1], [45, 45], atol=1e-6)
    frame, _ = prompts.box_frame((0, 0), (20, 30), spacing=(2.0, 1.0))  # 40 mm tall, 30 mm wide: vertical
    assert np.ptp(frame.to_array(frame.line_ends())[:, 1]) < 1e-6


def test_prompt_channels_put_box_and_clicks_where_they_are():
    frame, corners = prompts.box_frame((40, 30), (60, 90))
    ch = prompt_channels(frame, box=corners, positive=[(50, 60)], negative=[(45, 100)])
    S = frame.size
    assert ch[1, S // 2, S // 2] == 1 and ch[1, 5, 5] == 0  # the box is filled, the corner of the frame is not
    r, c = frame.to_frame(np.array([[50.0, 60.0]]))[0]
    assert ch[2, int(round(r)), int(round(c))] == 1
    r, c = frame.to_frame(np.array([[45.0, 100.0]]))[0]
    assert ch[3, int(round(r)), int(round(c))] == 1
    assert ch[0].sum() == 0  # no line was drawn


def test_rectangles_from_a_shapes_layer():
    rect = Shape(0, "rectangle", np.array([[5, 40], [5, 10], [25, 10], [25, 40]], float))
    (a, b), = shapes_to_boxes([rect], 2)
    np.testing.assert_allclose(a, [5, 10])
    np.testing.assert_allclose(b, [25, 40])
    tilted = Shape(1, "rectangle", np.array([[2, 5, 40], [5, 5, 10], [5, 25, 10], [2, 25, 40]], float))
    with pytest.raises(LesionSegError, match="spans slices"):
        shapes_to_boxes([tilted], 3)


def test_box_and_click_refuse_clearly_without_the_prompt_network(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_LINE_MODEL_DIR", str(tmp_path))
    img = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    with pytest.raises(LesionSegError, match="prompt network"):
        prompts.box_to_mask(img, (10, 10), (40, 50))
    with pytest.raises(LesionSegError, match="prompt network"):
        prompts.click_to_mask(img, (30, 30))
    with pytest.raises(LesionSegError, match="outside the image"):
        prompts.box_to_mask(img, (10, 10), (40, 90))
    with pytest.raises(LesionSegError, match="flat"):
        prompts.box_to_mask(img, (10, 10), (10, 50))


def test_registry_lists_prompt_networks_apart(tmp_path):
    from napari_lesionseg.core.models.registry import ModelRegistry

    (tmp_path / "line_prompt").mkdir()
    for folder, name, kind, modality in ((tmp_path, "whole", "segmentation", "mri"),
                                         (tmp_path / "line_prompt", "prompter", "prompt", "any")):
        (folder / f"{name}.json").write_text(json.dumps(
            {"name": name, "modality": modality, "kind": kind, "weights": f"{name}.safetensors"}))
        (folder / f"{name}.safetensors").write_bytes(b"")
    reg = ModelRegistry([tmp_path])
    assert [c.name for c in reg.cards()] == ["whole"]  # what the Segment dock and `predict` offer
    assert [c.name for c in reg.cards(kind="prompt")] == ["prompter"]
    assert sorted(reg.names(kind=None)) == ["prompter", "whole"]
    assert reg.unique_name("prompter") == "prompter-2"
    with pytest.raises(LesionSegError, match="No model named 'prompter'"):
        reg.get("prompter")


def test_shipped_prompt_card_is_listed_by_lesionseg_models(capsys):
    from napari_lesionseg.cli.main import main
    from napari_lesionseg.core.models import default_registry

    _prompt_network()
    prompt_cards = default_registry().cards(kind="prompt")
    assert [c.name for c in prompt_cards] == ["busi_line_unet", "prompt_unet"]  # ultrasound lines, everything else
    assert not {"busi_line_unet", "prompt_unet"} & set(default_registry().names())  # never a whole-image model
    assert main(["models"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("prompt_unet"))
    assert "prompt" in line.split()[1] and "any" in line


# ---------------------------------------------------------------- real images, one per modality

REAL = {  # modality: (folder under shared/data, image, Dice a working pipeline clears on it)
    # the bars sit below the held-out means (ultrasound 0.90, MRI slices 0.63, mammograms 0.82 for a line): a wrong
    # frame, polarity or channel order gives < 0.3
    "ultrasound": ("ultrasound/busi", "malignant_003.png", 0.7),
    "mri": ("mri/breastdcedl_slices", "10011_34.png", 0.5),
    "mammography": ("mammography/cdd_cesm", "P99_R_DM_CC.png", 0.8),
    "histology": ("histology/monuseg_other_organs", "TCGA-18-5592-01Z-00-DX1", 0.8),
}


def _real_lesion(modality):
    """(grey image, mask of its largest lesion); threshold masks (MRI) cleaned as the training data were."""
    import imageio.v3 as iio
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    folder, name, _ = REAL[modality]
    root = shared_path(*folder.split("/"))
    if modality == "histology":
        img = iio.imread(next((root / "images").glob(name + ".*")))
        mask = iio.imread(root / "masks" / f"{name}.png") > 0
    else:
        img = iio.imread(root / "images" / name)
        mask = iio.imread(root / "masks" / name) > 0
    img = img[..., :3].mean(-1) if img.ndim == 3 else img
    mask = mask.any(-1) if mask.ndim == 3 else mask
    if modality == "mri":
        mask = ndi.binary_opening(ndi.binary_fill_holes(ndi.binary_closing(mask, disk(2))), disk(1))
    lab, n = ndi.label(mask)
    sizes = ndi.sum(mask, lab, range(1, n + 1))
    if modality == "histology":  # a nucleus of typical size, not a merged clump
        k = int(np.argsort(np.abs(sizes - np.median(sizes)))[0]) + 1
    else:
        k = int(np.argmax(sizes)) + 1
    return img.astype(np.float32), lab == k


def _centre(mask):
    from scipy import ndimage as ndi

    d = ndi.distance_transform_edt(mask)
    return np.unravel_index(np.argmax(d), d.shape)


@pytest.mark.parametrize("modality", list(REAL))
@pytest.mark.parametrize("prompt", ["line", "cross", "box"])
def test_each_prompt_on_a_real_image_of_each_modality(modality, prompt):
    """cross: the line with its RECIST short axis (a second, shorter line across it in the dock)."""
    img, truth = _real_lesion(modality)
    _prompt_network()
    bar = REAL[modality][2]
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    p0, p1 = longest_diameter(truth)
    for what, im in (("image", img), ("inverted image", img.max() - img)):  # polarity must not decide
        if prompt == "line":
            m = line_to_mask(im, p0, p1, method="learned")
        elif prompt == "cross":
            m = line_to_mask(im, p0, p1, short_axis=short_axis(truth, p0, p1), method="learned")
        else:
            m = prompts.box_to_mask(im, (rows[0], cols[0]), (rows[-1], cols[-1]))
        assert dice(m, truth) > bar, f"{modality} {prompt} on the {what}: Dice {dice(m, truth):.3f}"


def test_negative_click_removes_what_it_is_put_on():
    img, truth = _real_lesion("ultrasound")
    _prompt_network()
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    box = (rows[0] - 25, cols[0] - 25), (rows[-1] + 25, cols[-1] + 25)  # a loose box takes in more than the lesion
    loose = prompts.box_to_mask(img, *box)
    extra = loose & ~truth
    if extra.sum() < 50:
        pytest.skip("the loose box found no extra area to remove on this image")
    from scipy import ndimage as ndi

    d = ndi.distance_transform_edt(extra)
    click = np.unravel_index(np.argmax(d), d.shape)
    refined = prompts.box_to_mask(img, *box, negative=[click])
    assert not refined[click]
    assert dice(refined, truth) >= dice(loose, truth) - 0.02


def test_box_on_a_volume_follows_the_lesion_through_slices():
    vol, lab, sp = pyradiomics_volume("breast1")
    _prompt_network()
    z = int(np.argmax(lab.sum((1, 2))))
    rows, cols = np.flatnonzero(lab[z].any(1)), np.flatnonzero(lab[z].any(0))
    m = prompts.box_to_mask(vol, (z, rows[0], cols[0]), (z, rows[-1], cols[-1]), spacing=sp)
    assert m.shape == vol.shape
    assert m[z].any() and np.flatnonzero(m.any((1, 2))).size > 1  # more than the drawn slice
    assert dice(m, lab) > 0.5


def test_cli_box_from_a_shapes_csv(tmp_path, capsys):
    """`lesionseg lines-to-masks` on napari's Shapes CSV holding a rectangle drawn around a mammogram's mass."""
    import imageio.v3 as iio

    from napari_lesionseg.cli.main import main
    from test_annotations_csv_cli import napari_shapes_csv

    img, truth = _real_lesion("mammography")
    _prompt_network()
    png = tmp_path / "dm.png"
    iio.imwrite(png, np.clip((img - img.min()) / np.ptp(img) * 255, 0, 255).astype(np.uint8))
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    rect = [[rows[0], cols[0]], [rows[0], cols[-1]], [rows[-1], cols[-1]], [rows[-1], cols[0]]]
    csv = napari_shapes_csv(tmp_path / "s.csv", [rect], ["rectangle"])
    assert main(["lines-to-masks", "--image", str(png), "--annotations", str(csv), "--output",
                 str(tmp_path / "m.png")]) == 0
    out = iio.imread(tmp_path / "m.png")
    assert len(np.unique(out)) == 2  # background and one lesion
    assert dice(out > 0, truth) > 0.8
    assert "lesion 1" in capsys.readouterr().out


def test_ultrasound_lines_keep_the_busi_line_network_other_images_the_prompt_network():
    """The image's modality picks the line network: ultrasound keeps the BUSI-only one (0.912 held out, against
    0.895 for the all-modality network); MRI, mammograms and histology use the all-modality prompt network."""
    from napari_lesionseg.core.annotations.line_model import LEGACY_MODEL, network_for

    _prompt_network()
    if not line_model_available(LEGACY_MODEL):
        pytest.skip("the BUSI line network is not installed")
    assert network_for("ultrasound") == LEGACY_MODEL
    assert network_for("mri") is None and network_for("mammography") is None and network_for(None) is None
    image, truth = _real_lesion("ultrasound")
    p0, p1 = longest_diameter(truth)
    ultrasound = line_to_mask(image, p0, p1, modality="ultrasound")
    other = line_to_mask(image, p0, p1, modality="mri")
    assert not np.array_equal(ultrasound, other)  # two networks really ran
    assert dice(ultrasound, truth) > 0.8 and dice(other, truth) > 0.7
