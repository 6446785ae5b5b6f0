"""The training loop shared by the CLI, the dock (in a child process) and torchrun.

Balanced sampling, augmentation, validation by case each epoch with early stopping, the best checkpoint kept,
resumable checkpoints after a crash, Cancel honoured after the current batch, and an atomic publish at the end.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import Cancelled, LesionSegError
from ..io.atomic import atomic_path
from ..metrics import dice
from ..names import check_model_name
from ..models.build import build_network, load_state, load_weights_into
from ..models.card import ClassInfo, ModelCard
from ..models.registry import default_registry, user_models_dir
from .augment import augment_batch
from .config import TrainConfig
from .data import BalancedSampler, Case, crop_patch, load_folder, make_examples, resize_examples, split_by_group
from .losses import compute_loss
from .publish import publish_model

PALETTE = ["#ff3030", "#30c030", "#3080ff", "#ffb000", "#c040ff"]


@dataclass
class TrainResult:
    card: ModelCard | None
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False
    best_score: float | None = None


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


def evaluate(net: torch.nn.Module, card: ModelCard, cases: list[Case], device: torch.device,
             threshold: float | None = None, cache: dict | None = None) -> dict:
    """Dice per lesion case at the case's own resolution (as a user would see it) and false positives on
    lesion-free cases, using the same engine as inference. `cache` keeps prepared inputs between epochs."""
    from ..inference.engine import Predictor
    from ..preprocess import to_model_input

    if not cases:
        return {}
    was_training = net.training
    pred = Predictor(card, device=device, net=net, batch_size=8)
    t = card.threshold if threshold is None else threshold
    dices, by_label, fp_cases, n_neg = [], {}, 0, 0
    cache = {} if cache is None else cache
    for c in cases:
        if c.mask.ndim == 3:  # a volume (an RGB image has a 2D mask)
            probs = pred.predict_volume(c.image)
        elif card.fit == "resize":
            if c.name not in cache:  # CLAHE/normalisation once, not every epoch
                cache[c.name] = to_model_input(c.image, card)[None]
            probs = pred._resize_predict(cache[c.name])[0]
            probs = probs[0] if not card.multiclass else probs
        else:
            probs = pred.predict_image(c.image)
        seg = probs.argmax(0) if card.multiclass else (probs >= t)
        truth = c.mask
        if truth.any():
            d = dice(seg > 0, truth > 0)
            dices.append(d)
            by_label.setdefault(c.label or "all", []).append(d)
        else:
            n_neg += 1
            fp_cases += int((seg > 0).any())
    net.train(was_training)
    out = {"val_dice": float(np.mean(dices)) if dices else float("nan"), "n_val_lesion": len(dices)}
    for k, v in by_label.items():
        out[f"val_dice_{k}"] = float(np.mean(v))
    if n_neg:
        out["val_fp_rate_lesion_free"] = fp_cases / n_neg
        out["n_val_lesion_free"] = n_neg
    return out


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


def train(cfg: TrainConfig, progress: Callable[[dict], None] | None = None,
          cancelled: Callable[[], bool] | None = None, cases: list[Case] | None = None,
          resume: bool = True, publish: bool = True) -> TrainResult:
    """Train or fine-tune a model as `cfg` says; returns the published card (None if nothing was learned)."""
    cfg.name = check_model_name(cfg.name)  # it becomes file names: never a path out of the model folder
    world, rank, local = _dist_info()
    emit = (progress or (lambda d: None)) if rank == 0 else (lambda d: None)  # one voice under torchrun
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed)

    from ..inference.device import resolve_device

    device = resolve_device(cfg.device)
    own_group = False
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            own_group = True
    try:
        return _train_on_device(cfg, device, world, rank, emit, cancelled, cases, resume, publish)
    finally:
        if own_group:  # torn down however the run ends (error, cancel, Ctrl+C), so a retry can join afresh
            import torch.distributed as dist

            dist.destroy_process_group()


def _train_on_device(cfg: TrainConfig, device: torch.device, world: int, rank: int, emit: Callable[[dict], None],
                     cancelled: Callable[[], bool] | None, cases: list[Case] | None, resume: bool,
                     publish: bool) -> TrainResult:
    """The training itself, once threads, seeds, device and process group are set up."""
    if cases is None:
        if not cfg.images or not cfg.masks:
            raise LesionSegError("Give a folder of images and a folder of masks.")
        cases = load_folder(cfg.images, cfg.masks, cfg.cases_json,
                            report=lambda message: emit({"kind": "log", "message": message}))
    if not cases:
        raise LesionSegError("No training cases.")
    if not any(c.mask.any() for c in cases):
        raise LesionSegError("None of the masks contains a lesion: there is nothing to learn from.")
    card = card_for(cfg)
    train_cases, val_cases = split_by_group(cases, cfg.val_fraction, cfg.seed)
    emit({"kind": "log", "message": f"{len(train_cases)} training and {len(val_cases)} validation cases"})
    if world > 1:
        import torch.distributed as dist

        emit({"kind": "log", "message": f"DistributedDataParallel: {world} processes, {dist.get_backend()} backend"})
    examples = make_examples(train_cases, card, (card.in_channels - 1) // 2 if card.input_kind == "slices" else 0)
    if card.fit == "resize":
        resize_examples(examples, tuple(card.patch_size))
    for e in examples:
        if e.x.shape[0] != card.in_channels:
            raise LesionSegError(f"Model {card.name} takes {card.in_channels} channel(s); the images give {e.x.shape[0]}.")
        if card.multiclass and e.y.max() > len(card.classes):
            raise LesionSegError(f"A mask has label {int(e.y.max())} but the model has {len(card.classes)} classes.")

    net = build_network(card)
    if cfg.base:
        base_card = default_registry().get(cfg.base)
        load_weights_into(net, load_state(base_card.weights_path), f"Base model {base_card.name}")
    elif cfg.encoder_init:
        from ..models.pretrained import load_pretrained_encoder

        n = load_pretrained_encoder(net, cfg.encoder_init, card.encoder)
        emit({"kind": "log", "message": f"encoder starts from {cfg.encoder_init} ({n} tensors)"})
    net.to(device)
    from ..inference.device import training_precision

    amp_dtype = training_precision(device, cfg.precision)
    if amp_dtype is not None and device.type == "cpu":
        net.to(memory_format=torch.channels_last)  # oneDNN's bf16 convolutions want NHWC
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 and device.type == "cuda" else None
    if amp_dtype is not None:
        emit({"kind": "log", "message": f"mixed precision: {str(amp_dtype).replace('torch.', '')} on {device.type}"})
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(_param_groups(net, cfg.encoder_lr_scale), lr=cfg.learning_rate,
                            weight_decay=cfg.weight_decay)
    ema_net = copy.deepcopy(net) if cfg.ema_decay > 0 else None
    eval_net = ema_net if ema_net is not None else net

    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else (
        Path(cfg.output_dir) if cfg.output_dir else user_models_dir()) / ".checkpoints" / cfg.name
    ckpt_path = ckpt_dir / "last.pt"
    start_epoch, step, history = 0, 0, []
    best_score, best_state, best_record, stale = -math.inf, None, {}, 0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        load_weights_into(net, state["model"], f"The checkpoint {ckpt_path} (start over with --no-resume)")
        opt.load_state_dict(state["optimizer"])
        if ema_net is not None:
            ema_net.load_state_dict(state.get("ema_model") or state["model"])
        start_epoch, step, history = state["epoch"], state["step"], state.get("history", [])
        best_score, stale = state.get("best_score", -math.inf), state.get("stale", 0)
        best_state = state.get("best_model")
        best_record = state.get("best_record", {})
        emit({"kind": "log", "message": f"resumed from epoch {start_epoch}"})

    sampler = BalancedSampler(examples, cfg.positive_fraction, cfg.seed, cfg.hard_negative_mining)
    per_epoch = max(cfg.samples_per_epoch or len(examples), cfg.batch_size)
    per_epoch = int(math.ceil(per_epoch / (cfg.batch_size * world))) * cfg.batch_size * world
    n_batches = per_epoch // (cfg.batch_size * world)
    total_steps = max(1, cfg.epochs * n_batches)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    rng = np.random.default_rng(cfg.seed + 17 * rank)
    t0 = time.monotonic()
    was_cancelled = False
    patch = tuple(card.patch_size)
    val_cache: dict = {}

    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        # Identical epoch order on every rank; each rank takes its own share (DistributedSampler semantics).
        sampler.rng = np.random.default_rng(cfg.seed * 7919 + epoch)
        order = sampler.epoch(per_epoch)
        if world > 1:
            from torch.utils.data import DistributedSampler

            ds = list(range(len(order)))
            dsamp = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
            order = order[list(iter(dsamp))]
        losses = []
        for b in range(n_batches):
            if _any_rank(cancelled is not None and bool(cancelled()), world):
                was_cancelled = True
                emit({"kind": "cancelled", "epoch": epoch + 1, "batch": b, "batches": n_batches, "step": step})
                break
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if card.fit == "resize":
                xb = np.stack([examples[i].x for i in idx])
                yb = np.stack([examples[i].y for i in idx])
            else:
                pairs = [crop_patch(examples[i], patch, rng, examples[i].positive) for i in idx]
                xb = np.stack([p[0] for p in pairs])
                yb = np.stack([p[1] for p in pairs])
            x = torch.from_numpy(xb.astype(np.float32))
            y = torch.from_numpy(yb.astype(np.int64))
            x, y = augment_batch(x, y, cfg.augment, gen)
            x, y = x.to(device), y.to(device)
            if amp_dtype is not None and device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            frac = step / total_steps
            if cfg.max_minutes:
                frac = max(frac, (time.monotonic() - t0) / 60 / cfg.max_minutes)
            for g in opt.param_groups:
                g["lr"] = cfg.learning_rate * g.get("lr_scale", 1.0) * _lr_factor(frac)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(x)
            loss, per_example = compute_loss(cfg.loss, logits.float(), y)  # the loss in fp32
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            step += 1
            if ema_net is not None:
                _update_ema(ema_net, net, min(cfg.ema_decay, (1 + step) / (10 + step)))
            sampler.record_losses(idx, per_example.cpu().numpy())
            losses.append(loss.item())
            emit({"kind": "batch", "epoch": epoch + 1, "epochs": cfg.epochs, "batch": b + 1, "batches": n_batches,
                  "loss": losses[-1]})
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                  "minutes": (time.monotonic() - t0) / 60}
        if was_cancelled and not losses:
            break
        validate = val_cases and ((epoch + 1) % cfg.val_every == 0 or was_cancelled or epoch + 1 == cfg.epochs)
        if validate and rank == 0:
            record.update(evaluate(eval_net, card, val_cases, device, cache=val_cache))
        record = _from_rank0(record, world)  # every rank takes the same best/stop decisions
        if validate:
            score = record.get("val_dice", float("nan"))
            if math.isnan(score):
                score = -record.get("loss", 0.0)
        else:
            score = -record["loss"]
        if validate or not val_cases:  # epochs between validations neither improve nor count towards a stop
            if score > best_score:
                best_score, stale = score, 0
                best_state = {k: v.detach().cpu().contiguous().clone() for k, v in eval_net.state_dict().items()}
                best_record = record
            else:
                stale += 1
        record["best"] = best_score
        history.append(record)
        emit({"kind": "epoch", **record})
        if rank == 0 and not was_cancelled:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(ckpt_path) as tmp:
                torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                            "step": step, "history": history, "best_score": best_score, "stale": stale,
                            "best_model": best_state, "best_record": best_record,
                            "ema_model": ema_net.state_dict() if ema_net is not None else None}, tmp)
        if was_cancelled:
            break
        if cfg.early_stopping and stale >= cfg.early_stopping:
            emit({"kind": "log", "message": f"early stop: no improvement for {stale} validations"})
            break
        if _from_rank0(bool(cfg.max_minutes and (time.monotonic() - t0) / 60 >= cfg.max_minutes), world):
            emit({"kind": "log", "message": "time budget reached"})
            break

    result = TrainResult(card=None, history=history, cancelled=was_cancelled,
                         best_score=best_score if best_state is not None else None)
    if best_state is None:
        return result
    net.load_state_dict(best_state)
    best = best_record
    card.metrics = {k: v for k, v in best.items() if k.startswith(("val_", "n_val"))}
    card.metrics.update({"n_train_cases": len(train_cases), "epochs_trained": len(history),
                         "best_epoch": best.get("epoch")})
    card.training_data = cfg.training_data or (
        f"{len(train_cases)} training / {len(val_cases)} validation cases from {cfg.images or 'the viewer'}"
        + (f"; fine-tuned from {card.parent}" if card.parent else ""))
    card.licence = cfg.licence or card.licence
    card.notes = cfg.notes or card.notes
    card.recipe = cfg.recipe or card.recipe
    card.date = _dt.date.today().isoformat()
    if publish and rank == 0:
        result.card = publish_model(net, card, cfg.output_dir)
        if ckpt_path.exists():
            ckpt_path.unlink()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return result
