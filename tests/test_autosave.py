"""Autosave: a session killed mid-correction loses nothing (core round trip, then the napari timer and recovery)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_lesionseg.core import autosave as A
from napari_lesionseg.core.geometry import Geometry, geometry_from_metadata


def test_round_trip_keeps_mask_and_geometry(tmp_path):
    aff = np.array([[-0.75, 0, 0, 10], [0, -0.75, 0, 20], [0, 0, 1.1, -5], [0, 0, 0, 1]])
    geom = Geometry(spacing=(1.1, 0.75, 0.75), nifti_affine=aff)
    mask = np.zeros((4, 6, 8), np.uint8)
    mask[1:3, 2:4, 3:7] = 2
    p = A.autosave_mask(mask, "lesion mask", geometry=geom, source="/data/post1.nii.gz", directory=tmp_path)
    assert p.parent == tmp_path
    (entry,) = A.list_autosaves(tmp_path)
    assert entry.name == "lesion mask" and entry.source == "/data/post1.nii.gz" and entry.shape == (4, 6, 8)
    back, g, rec = A.load_autosave(entry)
    assert back.dtype == mask.dtype and np.array_equal(back, mask)
    assert g.spacing == geom.spacing and np.array_equal(g.nifti_affine, aff)
    # saving again replaces the same file; another source gets its own
    A.autosave_mask(mask * 0, "lesion mask", geometry=geom, source="/data/post1.nii.gz", directory=tmp_path)
    A.autosave_mask(mask, "lesion mask", geometry=geom, source="/data/other.nii.gz", directory=tmp_path)
    assert len(A.list_autosaves(tmp_path)) == 2
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]
    A.remove_autosave(entry)
    assert len(A.list_autosaves(tmp_path)) == 1


def test_old_autosaves_are_pruned(tmp_path):
    old = A.autosave_mask(np.ones((3, 3), np.uint8), "old", directory=tmp_path)
    new = A.autosave_mask(np.ones((3, 3), np.uint8), "new", directory=tmp_path)
    os.utime(old, (0, 0))
    assert A.prune_autosaves(max_age_days=30, directory=tmp_path) == 1
    assert not old.exists() and new.exists()


def test_default_folder_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_AUTOSAVE_DIR", str(tmp_path / "as"))
    assert A.autosave_dir() == tmp_path / "as" and (tmp_path / "as").is_dir()
    monkeypatch.delenv("LESIONSEG_AUTOSAVE_DIR")
    assert A.autosave_dir(create=False).parts[-2:] == ("napari-lesionseg", "autosave")


@pytest.mark.gui
def test_crash_mid_correction_is_recovered(make_napari_viewer, tmp_path):
    from napari_lesionseg.napari.autosave import ensure_autosave, recover_autosaved_masks

    viewer = make_napari_viewer()
    geom = Geometry(spacing=(2.0, 0.5, 0.5))
    base = np.zeros((5, 40, 40), np.uint8)
    base[2, 10:20, 10:20] = 1
    layer = viewer.add_labels(base.copy(), name="lesion", scale=geom.spacing, metadata=geom.to_metadata())
    untouched = viewer.add_labels(np.zeros((5, 40, 40), np.uint8), name="untouched")
    saver = ensure_autosave(viewer)
    assert ensure_autosave(viewer) is saver  # one per viewer
    assert saver.timer.isActive() and saver.timer.interval() == 60_000
    assert saver.tick() == []  # nothing changed yet: nothing written

    # the user corrects the mask: paints with the brush and erases a corner
    viewer.dims.set_point(0, 2 * 2.0)
    layer.brush_size = 5
    layer.paint((2, 30, 30), 1)
    layer.paint((2, 10, 10), 0)
    corrected = np.array(layer.data)
    assert not np.array_equal(corrected, base)

    written = saver.tick()  # what the 60 s timer does
    assert len(written) == 1 and "lesion" in written[0].name
    assert untouched.name not in str(written[0])

    # crash: no clean close, no final save; the process state is gone
    saver.stop(save=False)
    layer.paint((2, 35, 5), 1)  # work after the last tick is what a crash loses
    del layer

    viewer2 = make_napari_viewer()
    recovered = recover_autosaved_masks(viewer2, ask=False)
    assert len(recovered) == 1
    rec = recovered[0]
    assert rec.name == "lesion (recovered)"
    assert np.array_equal(np.asarray(rec.data), corrected)
    assert tuple(rec.scale) == (2.0, 0.5, 0.5)
    assert geometry_from_metadata(rec.metadata).spacing == (2.0, 0.5, 0.5)


@pytest.mark.gui
def test_close_saves_changed_layers(make_napari_viewer):
    from napari_lesionseg.napari.autosave import ensure_autosave

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((20, 20), np.uint8), name="close-me")
    ensure_autosave(viewer)
    layer.paint((5, 5), 2)
    viewer.window._qt_window.close()
    entries = [e for e in A.list_autosaves() if e.name == "close-me"]
    assert len(entries) == 1
    mask, _, _ = A.load_autosave(entries[0])
    assert mask[5, 5] == 2


@pytest.mark.gui
def test_recover_action_in_file_menu(make_napari_viewer, monkeypatch):
    from napari._app_model import get_app_model

    import napari_lesionseg.napari.autosave as nas

    A.autosave_mask(np.eye(6, dtype=np.uint8), "menu-mask", geometry=Geometry(spacing=(0.3, 0.3)))
    viewer = make_napari_viewer()
    app = get_app_model()
    items = [getattr(i, "command", None) for i in app.menus.get_menu("napari/file/io_utilities")]
    assert any(c is not None and c.id == "napari-lesionseg.recover_autosave" for c in items)
    monkeypatch.setattr(nas, "_choose_dialog", lambda v, entries: [e for e in entries if e.name == "menu-mask"])
    app.commands.execute_command("napari-lesionseg.recover_autosave").result()
    layer = viewer.layers["menu-mask (recovered)"]
    assert np.array_equal(layer.data, np.eye(6)) and tuple(layer.scale) == (0.3, 0.3)
