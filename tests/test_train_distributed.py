"""`torchrun --nproc_per_node 2 … lesionseg train` on the gloo backend trains and publishes exactly one model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import blob_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_torchrun_two_processes_publish_one_model(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(12):
        img, mask = blob_image(rng, shape=(64, 64), n_blobs=1 if i % 3 else 0)
        iio.imwrite(tmp_path / "images" / f"case{i:02d}.png", img)
        iio.imwrite(tmp_path / "masks" / f"case{i:02d}.png", (mask * 255).astype(np.uint8))
    recipe = {"encoder": "resnet18", "decoder_channels": [32, 16, 8, 8, 4], "patch_size": [64, 64],
              "augment": ["flip"], "batch_size": 2, "epochs": 2}
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    out = tmp_path / "models"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "napari_lesionseg.cli.main", "train",
           "--config", str(tmp_path / "recipe.json"), "--images", str(tmp_path / "images"),
           "--masks", str(tmp_path / "masks"), "--modality", "ultrasound", "--name", "ddp-model",
           "--threads", "1", "--output-dir", str(out), "--checkpoint-dir", str(tmp_path / "ckpt")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=170, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "DistributedDataParallel: 2 processes, gloo backend" in proc.stdout
    assert proc.stdout.count("epoch 2:") == 1  # only rank 0 reports
    cards = sorted(out.glob("*.json"))
    assert [c.name for c in cards] == ["ddp-model.json"]
    card = json.loads(cards[0].read_text())
    assert (out / card["weights"]).stat().st_size > 0
    assert card["metrics"]["epochs_trained"] == 2
    assert not (tmp_path / "ckpt" / "last.pt").exists()  # the finished run cleaned its resume checkpoint
