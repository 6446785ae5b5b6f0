"""The `Trainer`: one training run in small steps, with hooks for whoever watches it.

`run()` = setup (threads, seeds, device, process group) → data → model (card or --base, precision, DDP,
optimiser, EMA) → resume → for each epoch: train_epoch → validate → end_epoch (history, hooks, checkpoint) →
should_stop → finish (best weights, card, atomic publish). The process group is torn down in a `finally`.

Hooks (`TrainerHooks`, Lightning/MONAI-Label style) receive typed events (`events.py`); the CLI prints through
them and the dock's child process turns them into JSON lines. Hooks run on rank 0 only (one voice under torchrun).
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import LesionSegError
from ..io.atomic import atomic_path
from ..models.build import build_network, load_state, load_weights_into
from ..models.card import ClassInfo, ModelCard
from ..models.registry import default_registry, user_models_dir
from ..names import check_model_name
from .augment import augment_batch
from .config import TrainConfig, check_encoder
from .data import (BalancedSampler, Case, crop_patch, load_sources, make_examples, resize_examples, split_by_group,
                   weigh_examples)
from .events import BatchDone, EpochDone, Log, Published, StopRequested, Validated
from .hooks import TrainerHooks
from .image_head import EncoderTap, ImageHead, example_classes, image_class_loss
from .losses import compute_loss
from .publish import publish_model
from .validation import evaluate

PALETTE = ["#ff3030", "#30c030", "#3080ff", "#ffb000", "#c040ff"]


@dataclass
class TrainResult:
    card: ModelCard | None
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False
    best_score: float | None = None


@dataclass
class RunState:
    """Where the run is: what a checkpoint stores and a resume restores. A fresh and a resumed run both start
    `best_score` at −inf (an old checkpoint without one too)."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best_score: float = -math.inf
    stale: int = 0
    """Validations since the best one (early stopping counts validations, not epochs)."""
    best_state: dict | None = None
    best_record: dict = field(default_factory=dict)
    cancelled: bool = False


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _any_rank(flag: bool, world: int) -> bool:
    """True on every rank when it is true on any (Cancel pressed on one process stops all, in the same batch)."""
    if world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _from_rank0(obj, world: int):
    """Rank 0's value on every rank (validation runs once; early stopping and time budget decided once)."""
    if world <= 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def card_for(cfg: TrainConfig) -> ModelCard:
    """The card of the model to train: the base model's (fine-tuning) or a new one from the config."""
    if cfg.base:
        base = default_registry().get(cfg.base)
        card = copy.deepcopy(base)
        card.parent = base.name
        card.name = cfg.name
        card.path = None
        card.metrics = {}
        return card
    in_ch = 3 if cfg.input_kind == "rgb" else (2 * cfg.context_slices + 1 if cfg.input_kind == "slices" else 1)
    return ModelCard(
        name=cfg.name, modality=cfg.modality, architecture=cfg.architecture, encoder=cfg.encoder,
        decoder_channels=list(cfg.decoder_channels), in_channels=in_ch, input_kind=cfg.input_kind,
        classes=[ClassInfo(c, PALETTE[i % len(PALETTE)]) for i, c in enumerate(cfg.classes)],
        normalisation=dict(cfg.normalisation), preprocessing=list(cfg.preprocessing),
        patch_size=list(cfg.patch_size), spacing_mm=cfg.spacing_mm, fit=cfg.fit, threshold=cfg.threshold,
        pretrained_encoder=cfg.encoder_init, tta=list(cfg.tta),
    )


@torch.no_grad()
def _update_ema(ema_net: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·weights; integer buffers (BatchNorm's batch counter) are copied."""
    for e, p in zip(ema_net.state_dict().values(), net.state_dict().values()):
        if e.dtype.is_floating_point:
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        else:
            e.copy_(p)


def _param_groups(net: torch.nn.Module, encoder_scale: float) -> list[dict]:
    """The encoders' parameters (every member's, for an ensemble) in a group of their own when they learn at
    another rate."""
    encoders = [getattr(m, "encoder", None) for m in getattr(net, "members", [net])]
    if None in encoders or encoder_scale == 1.0:
        return [{"params": list(net.parameters()), "lr_scale": 1.0}]
    enc_params = [p for e in encoders for p in e.parameters()]
    own = {id(p) for p in enc_params}
    return [{"params": enc_params, "lr_scale": float(encoder_scale)},
            {"params": [p for p in net.parameters() if id(p) not in own], "lr_scale": 1.0}]


def _lr_factor(frac: float, warmup: float = 0.03) -> float:
    if frac < warmup:
        return max(frac / warmup, 0.05)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (frac - warmup) / (1 - warmup)))) * 0.98 + 0.02


class Trainer:
    """One training or fine-tuning run as `cfg` says. `run()` returns the published card (None if nothing was
    learned); the steps are methods so a subclass or a hook can change or watch one without copying the rest."""

    def __init__(self, cfg: TrainConfig, hooks: Sequence[TrainerHooks] = (), cancelled: Callable[[], bool] | None = None,
                 cases: list[Case] | None = None, resume: bool = True, publish: bool = True):
        self.cfg = cfg
        self.hooks = list(hooks)
        self.cancel_requested = cancelled or (lambda: False)
        self.cases = cases
        self.resume = resume
        self.publish = publish
        self.world, self.rank, self.local_rank = _dist_info()
        self.state = RunState()
        self._own_group = False

    # -- hooks ---------------------------------------------------------------------------------------------
    def fire(self, hook: str, event) -> None:
        """Call `hook` on every hooks object (rank 0 only: one voice under torchrun)."""
        if self.rank != 0:
            return
        for h in self.hooks:
            getattr(h, hook)(self, event)

    def log(self, message: str) -> None:
        self.fire("on_log", Log(message=message))

    # -- the run -------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.cfg.name = check_model_name(self.cfg.name)  # it becomes file names: never a path out of the folder
        self.setup_process()
        try:
            self.prepare_data()
            self.build_model()
            if self.resume:
                self.resume_from_checkpoint()
            self.prepare_sampling()
            for epoch in range(self.state.epoch, self.cfg.epochs):
                record = self.train_epoch(epoch)
                if record is None:  # cancelled before the epoch's first batch: nothing new to validate or keep
                    break
                self.end_epoch(self.validate(epoch, record))
                if self.should_stop():
                    break
            result = self.finish()
            self.fire("on_finish", result)
            return result
        finally:
            self.teardown_process()

    def setup_process(self) -> None:
        """Threads, seeds, device; under torchrun the device of this rank and the process group."""
        cfg = self.cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed + self.rank)
        np.random.seed(cfg.seed)
        from ..inference.device import resolve_device

        self.device = resolve_device(cfg.device)
        if self.world > 1:
            import torch.distributed as dist

            if self.device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
                self._own_group = True

    def teardown_process(self) -> None:
        """Leave the process group however the run ended (error, cancel, Ctrl+C), so a retry can join afresh."""
        if self._own_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._own_group = False

    def prepare_data(self) -> None:
        """Cases, the split by group, and the training examples the model's card asks for (checked against it)."""
        cfg = self.cfg
        if self.cases is None:  # the recipe's folders: `images`/`masks`, or several `sources`
            self.cases = load_sources(cfg, report=self.log)
        if not self.cases:
            raise LesionSegError("No training cases.")
        if not any(c.mask.any() for c in self.cases):
            raise LesionSegError("None of the masks contains a lesion: there is nothing to learn from.")
        if not cfg.base:
            check_encoder(cfg.encoder)
        self.card = card = card_for(cfg)
        self.train_cases, self.val_cases = split_by_group(self.cases, cfg.val_fraction, cfg.seed)
        self.log(f"{len(self.train_cases)} training and {len(self.val_cases)} validation cases")
        if self.world > 1:
            import torch.distributed as dist

            self.log(f"DistributedDataParallel: {self.world} processes, {dist.get_backend()} backend")
        context = (card.in_channels - 1) // 2 if card.input_kind == "slices" else 0
        self.examples = make_examples(self.train_cases, card, context)
        weigh_examples(self.examples, self.train_cases, cfg.tag_weights)
        self.image_classes, self.example_class = (example_classes(self.examples, self.train_cases, card.fit)
                                                  if cfg.image_head_weight else ([], None))
        if card.fit == "resize":
            resize_examples(self.examples, tuple(card.patch_size))
        for e in self.examples:
            if e.x.shape[0] != card.in_channels:
                raise LesionSegError(f"Model {card.name} takes {card.in_channels} channel(s); "
                                     f"the images give {e.x.shape[0]}.")
            if card.multiclass and e.y.max() > len(card.classes):
                raise LesionSegError(f"A mask has label {int(e.y.max())} but the model has "
                                     f"{len(card.classes)} classes.")

    def build_model(self) -> None:
        """The network (base weights or a pretrained encoder), precision, DDP wrapper, optimiser and EMA copy."""
        cfg, card, device = self.cfg, self.card, self.device
        self.net = net = build_network(card)
        if cfg.base:
            base_card = default_registry().get(cfg.base)
            load_weights_into(net, load_state(base_card.weights_path), f"Base model {base_card.name}")
        elif cfg.encoder_init:
            from ..models.pretrained import load_pretrained_encoder

            n = load_pretrained_encoder(net, cfg.encoder_init, card.encoder)
            self.log(f"encoder starts from {cfg.encoder_init} ({n} tensors)")
        net.to(device)
        self._setup_precision()
        self.model = net
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
        self.opt = torch.optim.AdamW(_param_groups(net, cfg.encoder_lr_scale), lr=cfg.learning_rate,
                                     weight_decay=cfg.weight_decay)
        self.ema_net = copy.deepcopy(net) if cfg.ema_decay > 0 else None
        self.eval_net = self.ema_net if self.ema_net is not None else net
        self.image_head = self.tap = None
        if cfg.image_head_weight:
            self.build_image_head()

    def build_image_head(self) -> None:
        """The image-class head on the training network's encoder (after the EMA copy, which must not carry the
        tap), learning at the decoder's rate."""
        if self.world > 1:
            raise LesionSegError("image_head_weight is not supported under torchrun (one process only).")
        self.tap = EncoderTap(self.net)
        self.image_head = ImageHead(self.tap.channels, len(self.image_classes)).to(self.device)
        self.opt.add_param_group({"params": list(self.image_head.parameters()), "lr_scale": 1.0})
        self.log(f"image-class head ({', '.join(self.image_classes)}) at weight {self.cfg.image_head_weight}")

    def _setup_precision(self) -> None:
        """bf16/fp16 autocast as `precision` says; channels-last for CPU bf16; a grad scaler for CUDA fp16."""
        from ..inference.device import training_precision

        device = self.device
        self.amp_dtype = training_precision(device, self.cfg.precision)
        self.channels_last = self.amp_dtype is not None and device.type == "cpu"
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)  # oneDNN's bf16 convolutions want NHWC
        cuda_fp16 = self.amp_dtype == torch.float16 and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if cuda_fp16 else None
        if self.amp_dtype is not None:
            self.log(f"mixed precision: {str(self.amp_dtype).replace('torch.', '')} on {device.type}")

    @property
    def checkpoint_path(self) -> Path:
        cfg = self.cfg
        folder = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else (
            Path(cfg.output_dir) if cfg.output_dir else user_models_dir()) / ".checkpoints" / cfg.name
        return folder / "last.pt"

    def resume_from_checkpoint(self) -> None:
        """Continue an interrupted run from its last epoch: weights, optimiser, EMA, history, best so far."""
        path = self.checkpoint_path
        if not path.exists():
            return
        saved = torch.load(path, map_location="cpu", weights_only=True)
        load_weights_into(self.net, saved["model"], f"The checkpoint {path} (start over with --no-resume)")
        self.opt.load_state_dict(saved["optimizer"])
        if self.image_head is not None and saved.get("image_head"):
            self.image_head.load_state_dict(saved["image_head"])
        if self.ema_net is not None:
            self.ema_net.load_state_dict(saved.get("ema_model") or saved["model"])
        fresh = RunState()
        self.state = RunState(epoch=saved["epoch"], step=saved["step"], history=saved.get("history", []),
                              best_score=saved.get("best_score", fresh.best_score),
                              stale=saved.get("stale", fresh.stale), best_state=saved.get("best_model"),
                              best_record=saved.get("best_record", {}))
        self.log(f"resumed from epoch {self.state.epoch}")

    def save_checkpoint(self) -> None:
        s, path = self.state, self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"model": self.net.state_dict(), "optimizer": self.opt.state_dict(), "epoch": s.epoch,
                        "step": s.step, "history": s.history, "best_score": s.best_score, "stale": s.stale,
                        "best_model": s.best_state, "best_record": s.best_record,
                        "ema_model": self.ema_net.state_dict() if self.ema_net is not None else None,
                        "image_head": self.image_head.state_dict() if self.image_head is not None else None}, tmp)

    def prepare_sampling(self) -> None:
        """Balanced sampler, batches per epoch (a multiple of batch size × processes), seeded generators, clock."""
        cfg, world = self.cfg, self.world
        self.sampler = BalancedSampler(self.examples, cfg.positive_fraction, cfg.seed, cfg.hard_negative_mining)
        per_epoch = max(cfg.samples_per_epoch or len(self.examples), cfg.batch_size)
        self.per_epoch = int(math.ceil(per_epoch / (cfg.batch_size * world))) * cfg.batch_size * world
        self.n_batches = self.per_epoch // (cfg.batch_size * world)
        self.total_steps = max(1, cfg.epochs * self.n_batches)
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        self.rng = np.random.default_rng(cfg.seed + 17 * self.rank)
        self.t0 = time.monotonic()
        self.val_cache: dict = {}

    @property
    def minutes(self) -> float:
        return (time.monotonic() - self.t0) / 60

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Identical epoch order on every rank; each rank takes its own share (DistributedSampler semantics)."""
        self.sampler.rng = np.random.default_rng(self.cfg.seed * 7919 + epoch)
        order = self.sampler.epoch(self.per_epoch)
        if self.world > 1:
            from torch.utils.data import DistributedSampler

            share = DistributedSampler(list(range(len(order))), num_replicas=self.world, rank=self.rank,
                                       shuffle=False)
            order = order[list(iter(share))]
        return order

    def train_epoch(self, epoch: int) -> dict | None:
        """One epoch of batches, Cancel checked before each; the epoch's record, or None if no batch ran."""
        self.model.train()
        order = self.epoch_order(epoch)
        bs, losses = self.cfg.batch_size, []
        for b in range(self.n_batches):
            if _any_rank(bool(self.cancel_requested()), self.world):
                self.state.cancelled = True
                self.fire("on_stop_requested", StopRequested(epoch=epoch + 1, batch=b, batches=self.n_batches,
                                                             step=self.state.step))
                break
            losses.append(self.train_step(order[b * bs:(b + 1) * bs]))
            self.fire("on_batch_end", BatchDone(epoch=epoch + 1, epochs=self.cfg.epochs, batch=b + 1,
                                                batches=self.n_batches, loss=losses[-1]))
        if self.state.cancelled and not losses:
            return None
        return {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                "minutes": self.minutes}

    def make_batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole resized images ('resize' fit) or patches balanced by lesion ('tile'), augmented, on the device."""
        examples = self.examples
        if self.card.fit in ("resize", "breast"):  # whole images, already in the model's frame
            xb = np.stack([examples[i].x for i in idx])
            yb = np.stack([examples[i].y for i in idx])
        else:
            patch = tuple(self.card.patch_size)
            pairs = [crop_patch(examples[i], patch, self.rng, examples[i].positive) for i in idx]
            xb = np.stack([p[0] for p in pairs])
            yb = np.stack([p[1] for p in pairs])
        x = torch.from_numpy(xb.astype(np.float32))
        y = torch.from_numpy(yb.astype(np.int64))
        x, y = augment_batch(x, y, self.cfg.augment, self.gen, self.cfg.hed_sigma)
        x, y = x.to(self.device), y.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def set_learning_rate(self) -> None:
        """Warm-up then cosine over the steps (or over the time budget, whichever is further along)."""
        cfg = self.cfg
        frac = self.state.step / self.total_steps
        if cfg.max_minutes:
            frac = max(frac, self.minutes / cfg.max_minutes)
        for g in self.opt.param_groups:
            g["lr"] = cfg.learning_rate * g.get("lr_scale", 1.0) * _lr_factor(frac)

    def train_step(self, idx: np.ndarray) -> float:
        """One optimiser step on the examples `idx`; returns the batch loss."""
        x, y = self.make_batch(idx)
        self.set_learning_rate()
        amp = self.amp_dtype
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = self.model(x)
        loss, per_example = compute_loss(self.cfg.loss, logits.float(), y,  # the loss in fp32
                                          self.cfg.hard_pixel_fraction, self.cfg.hard_pixel_images,
                                          self.cfg.hard_pixel_weight)
        if self.image_head is not None:
            targets = torch.from_numpy(self.example_class[idx]).to(self.device)
            loss = loss + self.cfg.image_head_weight * image_class_loss(self.image_head, self.tap, targets)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        self.state.step += 1
        if self.ema_net is not None:
            step = self.state.step
            _update_ema(self.ema_net, self.net, min(self.cfg.ema_decay, (1 + step) / (10 + step)))
        self.sampler.record_losses(idx, per_example.cpu().numpy())
        return loss.item()

    def validation_due(self, epoch: int) -> bool:
        cfg = self.cfg
        return bool(self.val_cases) and ((epoch + 1) % cfg.val_every == 0 or self.state.cancelled
                                         or epoch + 1 == cfg.epochs)

    def validate(self, epoch: int, record: dict) -> dict:
        """Validation Dice when due (rank 0 computes, all ranks decide alike); keeps the best weights. Epochs
        between validations neither improve nor count towards an early stop."""
        due = self.validation_due(epoch)
        if due and self.rank == 0:
            record.update(evaluate(self.eval_net, self.card, self.val_cases, self.device, cache=self.val_cache))
        record = _from_rank0(record, self.world)
        if due:
            self.fire("on_validation", Validated(epoch=epoch + 1, metrics={
                k: v for k, v in record.items() if k.startswith(("val_", "n_val"))}))
            score = record.get("val_dice", float("nan"))
            if math.isnan(score):
                score = -record.get("loss", 0.0)
        else:
            score = -record["loss"]
        s = self.state
        if due or not self.val_cases:
            if score > s.best_score or self.cfg.keep_last:
                s.best_score, s.stale = score, 0
                s.best_state = {k: v.detach().cpu().contiguous().clone()
                                for k, v in self.eval_net.state_dict().items()}
                s.best_record = record
                self.fire("on_best", record)
            else:
                s.stale += 1
        record["best"] = s.best_score
        return record

    def end_epoch(self, record: dict) -> None:
        """The record into the history, the hooks told, a resumable checkpoint written (not after Cancel)."""
        s = self.state
        s.history.append(record)
        s.epoch = record["epoch"]
        self.fire("on_epoch_end", EpochDone.from_record(record))
        if self.rank == 0 and not s.cancelled:
            self.save_checkpoint()

    def should_stop(self) -> bool:
        """Cancel, early stopping (validations without improvement) or the time budget."""
        cfg = self.cfg
        if self.state.cancelled:
            return True
        if cfg.early_stopping and self.state.stale >= cfg.early_stopping:
            self.log(f"early stop: no improvement for {self.state.stale} validations")
            return True
        if _from_rank0(bool(cfg.max_minutes and self.minutes >= cfg.max_minutes), self.world):
            self.log("time budget reached")
            return True
        return False

    def finish(self) -> TrainResult:
        """The best weights with their metrics on the card, published atomically; the checkpoint removed."""
        s = self.state
        result = TrainResult(card=None, history=s.history, cancelled=s.cancelled,
                             best_score=s.best_score if s.best_state is not None else None)
        if s.best_state is None:
            return result
        self.net.load_state_dict(s.best_state)
        self.describe_card()
        if self.publish and self.rank == 0:
            result.card = publish_model(self.net, self.card, self.cfg.output_dir)
            self.fire("on_publish", Published(name=result.card.name, card=str(result.card.path)))
            if self.checkpoint_path.exists():
                self.checkpoint_path.unlink()
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
        return result

    def describe_card(self) -> None:
        """Metrics of the best epoch, training data, licence, notes, recipe and date on the card."""
        cfg, card, best = self.cfg, self.card, self.state.best_record
        card.metrics = {k: v for k, v in best.items() if k.startswith(("val_", "n_val"))}
        card.metrics.update({"n_train_cases": len(self.train_cases), "epochs_trained": len(self.state.history),
                             "best_epoch": best.get("epoch")})
        card.training_data = cfg.training_data or (
            f"{len(self.train_cases)} training / {len(self.val_cases)} validation cases from "
            f"{cfg.images or 'the viewer'}" + (f"; fine-tuned from {card.parent}" if card.parent else ""))
        card.licence = cfg.licence or card.licence
        card.notes = cfg.notes or card.notes
        card.recipe = cfg.recipe or card.recipe
        card.date = _dt.date.today().isoformat()
