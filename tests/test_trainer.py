"""The Trainer in small steps: hooks see every step, typed events survive the pipe, a resumed run starts its best
score like a fresh one, the process group is left however a run ends, and one from-scratch model per modality
whether it is trained from the CLI or from the Fine-tune dock."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.training import events as ev
from napari_lesionseg.core.training.config import TrainConfig, check_encoder
from napari_lesionseg.core.training.data import Case
from napari_lesionseg.core.training.defaults import MODALITY_DEFAULTS, defaults_for
from napari_lesionseg.core.training.hooks import TrainerHooks
from napari_lesionseg.core.training.loop import train
from napari_lesionseg.core.training.trainer import Trainer
from tiny_models import blob_image

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def _cases(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return [Case(f"c{i}", *blob_image(rng, shape=(48, 48), n_blobs=1 if i % 3 else 0), group=f"g{i}")
            for i in range(n)]


def _cfg(tmp_path, **kw):
    base = dict(name="trainer-test", modality="ultrasound", encoder="resnet18", decoder_channels=[16, 8, 8, 4, 4],
                fit="resize", patch_size=[48, 48], epochs=2, batch_size=4, augment=["flip"], num_threads=1,
                output_dir=str(tmp_path / "models"), checkpoint_dir=str(tmp_path / "ckpt"), early_stopping=0,
                precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def _recording(hook: str):
    return lambda self, trainer, event: self.calls.append((hook, event))


class Recorder(TrainerHooks):
    """Writes down every hook call with its event."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []

    on_log, on_batch_end, on_stop_requested, on_validation, on_best, on_epoch_end, on_publish, on_finish = (
        _recording(h) for h in ("on_log", "on_batch_end", "on_stop_requested", "on_validation", "on_best",
                                "on_epoch_end", "on_publish", "on_finish"))


def test_hooks_see_every_step_in_order(tmp_path):
    rec = Recorder()
    result = train(_cfg(tmp_path), cases=_cases(), resume=False, hooks=[rec])
    names = [n for n, _ in rec.calls]
    batches = [e for n, e in rec.calls if n == "on_batch_end"]
    assert batches and batches[-1].epoch == 2 and batches[-1].batch == batches[-1].batches
    assert [e.epoch for n, e in rec.calls if n == "on_validation"] == [1, 2]
    assert [e.epoch for n, e in rec.calls if n == "on_epoch_end"] == [1, 2]
    assert "on_best" in names  # the first validation is always the best so far
    assert names[-2:] == ["on_publish", "on_finish"]
    published = rec.calls[-2][1]
    assert published.name == result.card.name and Path(published.card) == result.card.path
    validated = [e for n, e in rec.calls if n == "on_validation"][-1]
    assert validated.metrics["val_dice"] == result.history[-1]["val_dice"]


def test_every_event_crosses_the_pipe_unchanged_and_reads_like_the_old_dicts():
    samples = [ev.Started(pid=12, n_cases=3), ev.Log(message="5 training cases"),
               ev.BatchDone(epoch=1, epochs=3, batch=2, batches=4, loss=0.5),
               ev.Validated(epoch=1, metrics={"val_dice": 0.8}),
               ev.EpochDone.from_record({"epoch": 1, "loss": 0.5, "minutes": 0.1, "val_dice": 0.8, "best": 0.8}),
               ev.StopRequested(epoch=2, batch=1, batches=4, step=5), ev.Published(name="m", card="/x/m.json"),
               ev.Done(name="m", card="/x/m.json", metrics={"val_dice": 0.8}, cancelled=True, best_score=0.8,
                       epochs=2),
               ev.Failed(message="bad", user_error=True), ev.Exited(code=2)]
    assert {type(e) for e in samples} == set(ev.EVENT_TYPES.values())
    for e in samples:
        back = ev.event_from_dict(json.loads(ev.event_to_line(e)))
        assert back == e, e
    epoch = samples[4]
    assert epoch["kind"] == "epoch" and epoch["val_dice"] == 0.8 and epoch.get("val_fp") is None
    nan = ev.event_from_dict(json.loads(ev.event_to_line(ev.EpochDone(epoch=1, loss=math.nan, best=-math.inf))))
    assert nan.loss is None and nan.best is None  # JSON has no NaN: null
    assert ev.event_from_dict({"kind": "from-a-newer-version"}) is None


def test_the_job_for_the_child_process_round_trips(tmp_path):
    job = ev.TrainingJob(config=_cfg(tmp_path).to_dict(), cancel_file=str(tmp_path / "CANCEL"), num_threads=1,
                         cases=[ev.CaseFile(name="a", image="a.npy", mask="m.npy", group="g")], nice=5)
    job.write(tmp_path / "job.json")
    assert ev.TrainingJob.read(tmp_path / "job.json") == job


def test_a_resumed_run_starts_its_best_score_like_a_fresh_one(tmp_path):
    cfg = _cfg(tmp_path, epochs=1)
    train(cfg, cases=_cases(), resume=False, publish=False)
    ckpt = tmp_path / "ckpt" / "last.pt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["best_score"] > 0  # the validation Dice of epoch 1
    del saved["best_score"]  # a checkpoint written before best scores were saved
    torch.save(saved, ckpt)

    fresh, resumed = Trainer(cfg, cases=_cases(), resume=False), Trainer(cfg, cases=_cases())
    for t in (fresh, resumed):
        t.setup_process()
        t.prepare_data()
        t.build_model()
    resumed.resume_from_checkpoint()
    assert resumed.state.epoch == 1
    assert fresh.state.best_score == resumed.state.best_score == -math.inf


def test_the_process_group_is_left_when_a_run_fails(tmp_path, monkeypatch):
    import torch.distributed as dist

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append("init"))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("destroy"))
    empty = [Case(f"c{i}", np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8), group=f"g{i}")
             for i in range(3)]
    with pytest.raises(LesionSegError, match="nothing to learn"):
        train(_cfg(tmp_path), cases=empty)
    assert calls == ["init", "destroy"]


def test_architecture_and_encoder_values_are_checked_with_the_allowed_ones_named(tmp_path):
    import segmentation_models_pytorch as smp

    from napari_lesionseg.core.training.config import ARCHITECTURES

    assert sorted(a.lower() for a in ARCHITECTURES) == sorted(smp.MODEL_ARCHITECTURES_MAPPING)
    assert sorted(ARCHITECTURES) == sorted(c.__name__ for c in smp.MODEL_ARCHITECTURES_MAPPING.values())
    with pytest.raises(LesionSegError, match="'Unett' is not one of Unet, UnetPlusPlus"):
        TrainConfig(name="x", modality="ultrasound", architecture="Unett")
    check_encoder("resnet18")
    check_encoder("tu-resnet10t")
    with pytest.raises(LesionSegError, match="'resnet19'.*close: .*resnet18"):
        check_encoder("resnet19")
    # a timm typo used to escape as a RuntimeError (a traceback) after the data had loaded
    with pytest.raises(LesionSegError, match="'tu-resnet10x'.*tu-resnet10t"):
        train(_cfg(tmp_path, encoder="tu-resnet10x"), cases=_cases())


@pytest.mark.parametrize("modality", sorted(MODALITY_DEFAULTS))
def test_every_modality_has_valid_scratch_defaults(modality):
    cfg = TrainConfig(name="x", modality=modality, **defaults_for(modality))
    channels = {"gray": 1, "rgb": 3, "slices": 2 * cfg.context_slices + 1}[cfg.input_kind]
    assert channels == (3 if modality in ("histology", "mri") else 1)
    with pytest.raises(LesionSegError, match="'ct'"):
        defaults_for("ct")


def _rgb_tiles(folder: Path, n=6, size=128):
    rng = np.random.default_rng(3)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        img, mask = blob_image(rng, shape=(size, size), n_blobs=1 + i % 2, rgb=True)
        iio.imwrite(folder / "images" / f"tile{i}.png", img)
        iio.imwrite(folder / "masks" / f"tile{i}.png", mask * 255)
    return folder / "images", folder / "masks"


MODEL_KEYS = ("in_channels", "input_kind", "fit", "normalisation", "preprocessing", "patch_size", "architecture",
              "encoder", "decoder_channels", "modality")


def test_histology_without_a_config_trains_the_same_model_from_the_cli_and_the_dock(make_napari_viewer, qtbot,
                                                                                    tmp_path, _user_model_dir):
    """Issue 18: `lesionseg train --modality histology` without a config trained a 1-channel model and then failed
    at the channel check, while the dock made an RGB one. Now both take the core's defaults: one answer."""
    images, masks = _rgb_tiles(tmp_path / "tiles")
    cli_out = tmp_path / "cli-models"
    r = subprocess.run([sys.executable, "-m", "napari_lesionseg.cli.main", "train", "--images", str(images),
                        "--masks", str(masks), "--modality", "histology", "--name", "histo-cli", "--epochs", "1",
                        "--batch-size", "2", "--threads", "1", "--output-dir", str(cli_out)],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-2500:]
    cli_card = json.loads((cli_out / "histo-cli.json").read_text())

    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Fine-tune a model")
    dock.base_combo.setCurrentText("(train from scratch)")
    dock.modality_combo.setCurrentText("histology")
    dock.images_dir.setText(str(images))
    dock.masks_dir.setText(str(masks))
    dock.name_edit.setText("histo-dock")
    dock.epochs.setValue(1)
    dock.batch_size.setValue(2)
    with qtbot.waitSignal(dock.finished, timeout=300_000) as blocker:
        dock.start_btn.click()
    done = blocker.args[0]
    assert done is not None and done.name == "histo-dock", dock.status.text()
    dock_card = json.loads(Path(done.card).read_text())

    assert cli_card["in_channels"] == dock_card["in_channels"] == 3
    assert {k: cli_card[k] for k in MODEL_KEYS} == {k: dock_card[k] for k in MODEL_KEYS}
    assert "published histo-dock" in dock.status.text()
