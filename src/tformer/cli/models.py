"""`tformer models [--all]`: the presets with their parameter counts, next to the published sizes."""

from __future__ import annotations

import argparse

from tformer.config import PRESETS, PUBLISHED_PARAMETERS, UNCOUNTED_PAPER_PRESETS, ModelConfig


def count_parameters(config: ModelConfig) -> int:
    """Parameters of the model a config describes, built on the meta device (no memory, no time)."""
    import torch

    from tformer.models import build_model

    with torch.device("meta"):
        return build_model(config).num_parameters()


def _models(args: argparse.Namespace) -> None:
    names = list(PRESETS) if args.all else [*PUBLISHED_PARAMETERS, *UNCOUNTED_PAPER_PRESETS]
    print(f"{'preset':<20}{'family':<17}{'layers':>7}{'d_model':>9}{'heads':>7}{'parameters':>15}{'published':>12}")
    for name in names:
        config = ModelConfig.preset(name)
        layers = (f"{config.n_layers}+{config.decoder_layers}" if config.family in ("encoder-decoder", "rnn")
                  else str(config.n_layers))
        heads = "-" if config.family == "rnn" else str(config.n_heads)  # additive attention: one alignment model
        published = f"{PUBLISHED_PARAMETERS[name] / 1e6:.0f}M" if name in PUBLISHED_PARAMETERS else "-"
        print(f"{name:<20}{config.family:<17}{layers:>7}{config.d_model:>9}{heads:>7}"
              f"{count_parameters(config):>15,}{published:>12}")
    if not args.all:
        print(f"(the published sizes; tformer models --all also lists the {len(PRESETS) - len(names)} smaller "
              "presets: tiny test models, and RNNs matched in size to a recipe's Transformer)")


def add_models_command(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="list the presets with their parameter counts")
    models.add_argument("--all", action="store_true", help="include the tiny test presets")
    models.set_defaults(run=_models)
