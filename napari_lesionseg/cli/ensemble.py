"""`lesionseg ensemble`: combine trained models of one architecture into one model that averages them."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("ensemble", help="combine trained models into one that averages their outputs",
                       description="Combine models of one architecture (names or card paths) into one model whose "
                                   "probabilities are averaged, measure it on a recipe's validation split and "
                                   "publish it.")
    p.add_argument("--models", nargs="+", required=True, help="two or more models (names or card paths)")
    p.add_argument("--name", required=True, help="name of the combined model")
    p.add_argument("--config", help="recipe whose validation split the ensemble is measured on (the members' own)")
    p.add_argument("--output-dir", help="publish here instead of the per-user model directory")
    p.add_argument("--storage", choices=["int8", "fp16"], default="int8",
                   help="weights on disk: int8 (default, two networks in the space of one fp16) or fp16")
    p.add_argument("--notes", help="text for the card's notes")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..core.errors import LesionSegError
    from ..core.inference.device import resolve_device
    from ..core.io.output_guard import check_outputs, model_files
    from ..core.models import default_registry
    from ..core.models.ensemble import combine
    from ..core.models.registry import user_models_dir
    from ..core.names import check_model_name
    from ..core.training.publish import publish_model

    name = check_model_name(args.name)
    out = Path(args.output_dir) if args.output_dir else user_models_dir()
    label = "--output-dir" if args.output_dir else "the model folder"
    check_outputs({"--models": [f for m in args.models for f in model_files(m)], "--config": args.config},
                  {label: out}, folders=(label,))
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = default_registry()
    cards = [registry.get(m) for m in args.models]
    net, card = combine(cards, name, args.storage)
    if args.config:
        from ..core.training.config import TrainConfig
        from ..core.training.data import load_sources, split_by_group
        from ..core.training.loop import evaluate

        cfg = TrainConfig.from_file(args.config)
        if not cfg.sources and (not cfg.images or not cfg.masks):
            raise LesionSegError(f"{args.config} names no images/masks to measure the ensemble on.")
        _, val = split_by_group(load_sources(cfg), cfg.val_fraction, cfg.seed)
        print(f"measuring on {len(val)} validation cases of {args.config}", flush=True)
        card.metrics.update(evaluate(net, card, val, resolve_device("auto")))
    if args.notes:
        card.notes = args.notes
    card = publish_model(net, card, args.output_dir, registry)
    metrics = ", ".join(f"{k}={v:.3f}" for k, v in card.metrics.items() if isinstance(v, float))
    print(f"published {card.name} ({card.members} members) at {card.path}" + (f": {metrics}" if metrics else ""))
    return 0
