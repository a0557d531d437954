"""`tformer viz attention | positions | contextual`: pictures of what a model does, written to a file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tformer.cli.common import load_model_and_tokenizer  # imports torch only when it runs

ATTENTION_SUFFIXES = (".png", ".svg", ".html")
# --view's short names for the views capture_attention returns
VIEW_NAMES = {"self": "self-attention", "encoder": "encoder self-attention", "decoder": "decoder self-attention",
              "cross": "cross-attention", "ab": "A -> B", "ba": "B -> A"}


def _output(path: str, suffixes: tuple[str, ...]) -> Path:
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"cannot write {path!r}: unknown extension {out.suffix or '(none)'!r}; use "
                         f"{', '.join(suffixes)}")
    return out


def _viz_error(error: ImportError) -> ValueError:
    return ValueError(str(error).splitlines()[0])  # the CLI prints ValueErrors as one line


def _attention(args: argparse.Namespace) -> None:
    out = _output(args.out, ATTENTION_SUFFIXES)
    model, tokenizer = load_model_and_tokenizer(args.model, "viz attention")
    from tformer.viz.capture import capture_attention

    views = capture_attention(model, tokenizer, args.text, args.pair, target=args.target)
    if out.suffix.lower() == ".html":
        from tformer.viz.page import write_attention_page

        path = write_attention_page(out, views, title=f"tformer attention: {Path(args.model).name}")
        print(f"wrote {path}: {', '.join(view.name for view in views)} (open it in a browser)")
        return
    view = _pick_view(views, args.view)
    try:
        from tformer.viz.attention_maps import plot_alignment, plot_attention

        if view.name == "cross-attention" and args.head is None:
            path = plot_alignment(view, out, layer=args.layer)
            heads = "mean over heads" if view.n_heads > 1 else "its one head"
            print(f"wrote {path}: {view.name} alignment, layer {view.layer_name(args.layer % view.n_layers)}, {heads}")
            return
        head = 0 if args.head is None else args.head
        path = plot_attention(view, args.layer, head, out)
    except ImportError as error:
        raise _viz_error(error) from None
    print(f"wrote {path}: {view.name}, layer {view.layer_name(args.layer % view.n_layers)}, "
          f"head {head % view.n_heads}")


def _pick_view(views: list, wanted: str | None) -> Any:
    if wanted is None:
        return views[0]
    name = VIEW_NAMES.get(wanted, wanted)
    for view in views:
        if view.name == name:
            return view
    shorts = {full: short for short, full in VIEW_NAMES.items()}
    choices = ", ".join(shorts.get(view.name, view.name) for view in views)
    raise ValueError(f"this model has no {wanted!r} view; choose one of: {choices}")


def _positions(args: argparse.Namespace) -> None:
    out = _output(args.out, (".png", ".svg"))
    try:
        from tformer.viz.positions import plot_positions

        path = plot_positions(out, d_model=args.d_model, length=args.length, layout=args.layout)
    except ImportError as error:
        raise _viz_error(error) from None
    print(f"wrote {path}: the sinusoidal encoding ({args.layout}) of {args.length} positions x {args.d_model} "
          "dimensions, and PE(p)·PE(p+k) against k")


def _contextual(args: argparse.Namespace) -> None:
    out = _output(args.out, (".png", ".svg"))
    model, tokenizer = load_model_and_tokenizer(args.model, "viz contextual")
    from tformer.viz.contextual import contextual_similarities, plot_contextual

    similarities = contextual_similarities(model, tokenizer, args.word, args.sentences)
    print(f"cosine similarity of {args.word!r} across {len(args.sentences)} sentences "
          f"({similarities.shape[0]} pairs):")
    print(f"{'layer':<8}{'mean':>8}{'min':>8}{'max':>8}")
    for layer, column in enumerate(similarities.T):
        name = "emb" if layer == 0 else str(layer)
        print(f"{name:<8}{column.mean():>8.3f}{column.min():>8.3f}{column.max():>8.3f}")
    try:
        path = plot_contextual(similarities, out, word=args.word)
    except ImportError as error:
        raise _viz_error(error) from None
    print(f"wrote {path}")


def add_viz_commands(commands: Any) -> None:  # argparse's _SubParsersAction has no public type
    """Register `viz` and its subcommands attention, positions and contextual on the `tformer` parser."""
    viz = commands.add_parser("viz", help="pictures of attention, positional encodings and contextual embeddings "
                              "(needs the viz extra: pip install 'tformer[viz]')")
    kinds = viz.add_subparsers(dest="picture", required=True, metavar="{attention,positions,contextual}")

    attention = kinds.add_parser(
        "attention", help="attention weights of a model folder on a text: a heatmap (.png, .svg) or the page (.html)",
        description="Run the model on TEXT and draw its attention. FILE.png / FILE.svg: a heatmap of one layer "
                    "and head (tokens on both axes; a T-DMCA's compressed layer has its slots as keys, 'tokens 0–2: "
                    "...'); for an encoder-decoder, --view cross without --head draws the "
                    "translation's alignment (the layer's heads averaged; an RNN's one view, its alignment, is the "
                    "default). FILE.html: the interactive page with "
                    "every view, layer and head.")
    attention.add_argument("text", help="the text (the source, for an encoder-decoder; sentence A, for BERT)")
    attention.add_argument("--model", required=True, metavar="DIR", help="model folder with tokenizer.json")
    attention.add_argument("--pair", metavar="TEXT", help="BERT: sentence B, adding the A -> B and B -> A views")
    attention.add_argument("--target", metavar="TEXT", help="encoder-decoder: the translation the decoder reads "
                           "(default: the model's own greedy translation)")
    attention.add_argument("--view", metavar="NAME", help="the view to draw: self (BERT, GPT; the default), ab, ba "
                           "(BERT pairs), encoder (the default), decoder, cross (encoder-decoder)")
    attention.add_argument("--layer", type=int, default=-1, metavar="L", help="layer from 0 (default: -1, the last)")
    attention.add_argument("--head", type=int, metavar="H", help="head from 0 (default: 0; for --view cross, "
                           "the mean of the heads)")
    attention.add_argument("--out", required=True, metavar="FILE", help="FILE.png, FILE.svg or FILE.html")
    attention.set_defaults(run=_attention)

    positions = kinds.add_parser(
        "positions", help="the sinusoidal positional encoding and PE(p)·PE(p+k) against the offset k",
        description="Draw the sinusoidal positional-encoding matrix (position x dimension) and the dot product "
                    "PE(p)·PE(p+k) for several p: the curves coincide, since a shift by k rotates each sin/cos "
                    "pair by an angle that depends on k alone.")
    positions.add_argument("--out", required=True, metavar="FILE", help="FILE.png or FILE.svg")
    positions.add_argument("--d-model", type=int, default=128, metavar="N", help="dimensions (default: 128)")
    positions.add_argument("--length", type=int, default=100, metavar="N", help="positions (default: 100)")
    positions.add_argument("--layout", choices=("interleaved", "halves"), default="interleaved",
                           help="interleaved: sin and cos of one frequency side by side (the paper, the default); "
                           "halves: every sin, then every cos (Marian, Pegasus)")
    positions.set_defaults(run=_positions)

    contextual = kinds.add_parser(
        "contextual", help="cosine similarity of one word's embeddings across sentences, per layer",
        description="Follow WORD (its first sub-word token) through the model in each sentence and print, per "
                    "layer (emb = the embedding output), the cosine similarity of its vectors across the sentences: "
                    "mean, min and max over the sentence pairs. Draws the same as a line plot.")
    contextual.add_argument("sentences", nargs="+", metavar="SENTENCE", help="two or more sentences with the word")
    contextual.add_argument("--model", required=True, metavar="DIR", help="model folder with tokenizer.json")
    contextual.add_argument("--word", required=True, help="the word to follow, e.g. bank")
    contextual.add_argument("--out", required=True, metavar="FILE", help="FILE.png or FILE.svg")
    contextual.set_defaults(run=_contextual)
