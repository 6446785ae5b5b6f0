"""`lesionseg train`: train or fine-tune a model headless (also under torchrun for several GPUs/nodes)."""

from __future__ import annotations

import json
import sys

from ..core.training.config import TrainConfig
from ..core.training.losses import LOSSES
from ..core.training.hooks import TrainerHooks


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train or fine-tune a model on image/mask folders",
                       description="Train or fine-tune a segmentation model. Options override the --config file. "
                                   "Run under `torchrun --nproc_per_node N` for several processes/GPUs.")
    p.add_argument("--config", help="training recipe (YAML or JSON), e.g. models/ultrasound-lesion-a.yaml")
    p.add_argument("--images", help="folder of images")
    p.add_argument("--masks", help="folder of masks with the same file names")
    p.add_argument("--cases-json", help="BUSI-style cases.json with a 'group' per image (validation split by group)")
    p.add_argument("--modality", choices=["ultrasound", "mammography", "histology", "mri"])
    p.add_argument("--name", help="name of the new model")
    p.add_argument("--base", help="model to fine-tune (name or card path); default: train from scratch")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-minutes", type=float, help="stop after this much training time")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--loss", choices=list(LOSSES))
    p.add_argument("--positive-fraction", type=float, help="share of lesion patches/images per batch")
    p.add_argument("--hard-negative-mining", action="store_true", default=None)
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--threads", type=int, dest="num_threads", help="CPU threads for torch")
    p.add_argument("--output-dir", help="publish here instead of the per-user model directory")
    p.add_argument("--checkpoint-dir", help="resumable checkpoints (default beside the output)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


OPTION_NAMES = ["images", "masks", "cases_json", "modality", "name", "base", "epochs", "max_minutes", "batch_size",
                "learning_rate", "loss", "positive_fraction", "hard_negative_mining", "val_fraction", "seed",
                "device", "num_threads", "output_dir", "checkpoint_dir"]


def config_from_args(args) -> TrainConfig:
    overrides = {k: getattr(args, k) for k in OPTION_NAMES if getattr(args, k, None) is not None}
    if args.config:
        return TrainConfig.from_file(args.config, **overrides)
    from ..core.errors import LesionSegError

    from ..core.training.defaults import with_modality_defaults

    missing = [k for k in ("images", "masks", "modality", "name") if k not in overrides]
    if missing:
        raise LesionSegError("train needs " + ", ".join("--" + m.replace("_", "-") for m in missing)
                             + " (or a --config file).")
    return TrainConfig.from_dict(with_modality_defaults(overrides))  # the Fine-tune dock's from-scratch model


def check_paths(cfg: TrainConfig, config_path: str | None) -> None:
    """The model name is a name, and the model and checkpoint folders are writable and none of the inputs."""
    from pathlib import Path

    from ..core.io.output_guard import check_outputs, model_files
    from ..core.models.registry import user_models_dir
    from ..core.names import check_model_name

    cfg.name = check_model_name(cfg.name)
    out = Path(cfg.output_dir) if cfg.output_dir else user_models_dir()
    ckpt = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else out / ".checkpoints" / cfg.name
    inputs = {"--config": config_path, "--images": cfg.images, "--masks": cfg.masks,
              "--cases-json": cfg.cases_json, "--base": model_files(cfg.base)}
    for i, src in enumerate(cfg.sources or [], 1):
        inputs.update({f"sources entry {i} {k}": src.get(k) for k in ("images", "masks", "cases_json")})
    check_outputs(inputs,
                  {"--output-dir" if cfg.output_dir else "the model folder": out,
                   "--checkpoint-dir" if cfg.checkpoint_dir else "the checkpoint folder": ckpt},
                  folders=("--output-dir", "the model folder", "--checkpoint-dir", "the checkpoint folder"))


class ConsolePrinter(TrainerHooks):
    """Prints the log lines and one line per epoch (loss, validation metrics, minutes)."""

    def on_log(self, trainer, event) -> None:
        print(event.message, flush=True)

    def on_epoch_end(self, trainer, event) -> None:
        extra = " ".join(f"{k}={v:.3f}" for k, v in event.metrics.items()
                         if k.startswith("val_") and isinstance(v, float))
        print(f"epoch {event.epoch}: loss={event.loss:.4f} {extra} ({event.minutes:.1f} min)", flush=True)


def run(args) -> int:
    from ..core.training.loop import train
    from .finetune_prompt import is_prompt_base, run_from_train

    if is_prompt_base(args.base):  # a prompt network (line / box → mask): its own short fine-tuning
        return run_from_train(args)
    cfg = config_from_args(args)
    check_paths(cfg, args.config)
    cases = None
    if cfg.sources:  # several folders: read here and handed over as one set of cases
        from ..core.training.data import load_sources

        cases = load_sources(cfg, report=None if args.quiet else (lambda message: print(message, flush=True)))
    stop = _graceful_stop()
    result = train(cfg, cancelled=stop.is_set, cases=cases, resume=not args.no_resume,
                   hooks=[] if args.quiet else [ConsolePrinter()])
    if result.card is None:
        import os

        if int(os.environ.get("RANK", "0")) == 0:
            print("No model was published (training stopped before the first epoch finished).", file=sys.stderr)
            return 1
        return 0
    print(f"published {result.card.name} -> {result.card.path}")
    print(json.dumps(result.card.metrics, indent=2))
    return 0


def _graceful_stop():
    """First Ctrl+C (or SIGTERM): finish the current batch and publish the best model so far; second: abort."""
    import signal
    import threading

    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("stopping after this batch; the best model so far will be published (Ctrl+C again to abort)",
              file=sys.stderr, flush=True)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    return stop
