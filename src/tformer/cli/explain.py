"""`tformer explain attention [--q=Q] [--k=K] [--v=V] [--causal]`: every step of scaled dot-product attention;
`tformer explain attention --pattern local|compressed`: which (query, key) pairs the T-DMCA's attentions let through."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tformer.explain imports torch: loaded when the command runs, so `tformer --help` stays fast
    from tformer.explain import AttentionExample, PatternExample

PATTERN_SIZES = {"length": "--length", "block_size": "--block-size", "look_back": "--look-back",
                 "compression": "--compression"}
PATTERN_OPTIONS = {"local": ("length", "block_size", "look_back"), "compressed": ("length", "compression")}
MATRIX_OPTIONS = {"q": "--q", "k": "--k", "v": "--v", "queries": "--queries", "keys": "--keys"}


def example_from_args(args: argparse.Namespace) -> AttentionExample:
    """The notes' example when no matrix is given; --q alone means self-attention (K = V = Q)."""
    from tformer.explain import (
        NOTES_CROSS_ATTENTION,
        NOTES_MASKED_SELF_ATTENTION,
        AttentionExample,
        parse_labels,
        parse_matrix,
    )

    given = {name: getattr(args, name) for name in ("q", "k", "v") if getattr(args, name) is not None}
    queries = parse_labels(args.queries, "--queries") if args.queries is not None else None
    keys = parse_labels(args.keys, "--keys") if args.keys is not None else None
    if not given:
        example = NOTES_MASKED_SELF_ATTENTION if args.causal else NOTES_CROSS_ATTENTION
        if example.causal and queries is not None and keys is None:
            keys = queries  # self-attention: the keys are the same tokens
        return replace(example, queries=queries or example.queries, keys=keys or example.keys)
    if "q" not in given:
        raise ValueError(f"--{next(iter(given))} was given without --q: give the queries too, e.g. --q='-1 -2.5; 4 3'")
    q = parse_matrix(args.q, "--q")
    if set(given) == {"q"}:
        k = v = q
        keys = keys or queries
    elif set(given) == {"q", "k", "v"}:
        k, v = parse_matrix(args.k, "--k"), parse_matrix(args.v, "--v")
    else:
        missing = "--v" if "k" in given else "--k"
        raise ValueError(f"{missing} is missing: give --q, --k and --v, or only --q for self-attention (K = V = Q)")
    return AttentionExample(q=q, k=k, v=v, queries=queries or [f"q{i + 1}" for i in range(len(q))],
                            keys=keys or [f"k{i + 1}" for i in range(len(k))], causal=args.causal)


def pattern_example_from_args(args: argparse.Namespace) -> PatternExample:
    """The --pattern example: 12 tokens, blocks of 4 (look_back 1), compression 3 unless the options say else."""
    from tformer.explain import PatternExample

    matrices = [option for name, option in MATRIX_OPTIONS.items() if getattr(args, name) is not None]
    if matrices or args.causal:
        given = " ".join(matrices + (["--causal"] if args.causal else []))
        raise ValueError(f"--pattern prints a mask, not a computation: drop {given}, or drop --pattern to see "
                         "every step of attention over your matrices")
    sizes = {name: getattr(args, name) for name in PATTERN_SIZES if getattr(args, name) is not None}
    for name in sizes:
        if name not in PATTERN_OPTIONS.get(args.pattern, PATTERN_SIZES):
            raise ValueError(f"{PATTERN_SIZES[name]} does not apply to --pattern {args.pattern}: drop it")
    return PatternExample(pattern=args.pattern, **sizes)


def _explain_attention(args: argparse.Namespace) -> None:
    from tformer.explain import explain_attention, format_pattern, format_steps

    if args.pattern is not None:
        print(format_pattern(pattern_example_from_args(args)))
        return
    sizes = [option for name, option in PATTERN_SIZES.items() if getattr(args, name) is not None]
    if sizes:
        raise ValueError(f"{' '.join(sizes)} only applies with --pattern local|compressed: add --pattern or drop it")
    example = example_from_args(args)
    steps, mask = explain_attention(example)
    print(format_steps(example, steps, mask, decimals=args.decimals))
    if example.note is not None:
        print(f"\n{example.note}")


def add_explain_commands(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser("explain", help="print every intermediate of a computation the models do")
    topics = explain.add_subparsers(dest="topic", required=True)
    attention = topics.add_parser(
        "attention", help="scores, scaled, masked, alpha and out of scaled dot-product attention",
        description="Print Q, K, V and every step of softmax(Q K^T / sqrt(d_k)) V, computed by the function the "
                    "models use. With no matrices: the lecture notes' worked example (with --causal: their masked "
                    "self-attention example). Matrices as [[-1, -2.5], [4, 3]] or '-1 -2.5; 4 3'; write --q=... "
                    "so that a leading minus sign is not read as an option. With --pattern local|compressed: the "
                    "visibility mask of the T-DMCA's local or memory-compressed attention instead.", allow_abbrev=False)
    attention.add_argument("--q", metavar="Q", help="queries, one row per query (alone: K = V = Q)")
    attention.add_argument("--k", metavar="K", help="keys, one row per key, as many columns as Q")
    attention.add_argument("--v", metavar="V", help="values, one row per key")
    attention.add_argument("--causal", action="store_true", help="mask the keys after each query's position")
    attention.add_argument("--queries", metavar="NAMES", help="row names for Q, comma-separated: die,Katze")
    attention.add_argument("--keys", metavar="NAMES", help="row names for K and V, comma-separated: the,cat,danced")
    attention.add_argument("--decimals", type=int, default=4, metavar="N", help="digits after the point (default: 4)")
    attention.add_argument("--pattern", metavar="local|compressed",
                           help="instead: print which (query, key) pairs local or memory-compressed attention "
                                "(Liu et al. 2018) lets through, as a grid, on a small example")
    attention.add_argument("--length", type=int, metavar="N", help="with --pattern: tokens (default: 12)")
    attention.add_argument("--block-size", type=int, metavar="B", help="with --pattern local: block size (default: 4)")
    attention.add_argument("--look-back", type=int, metavar="K",
                           help="with --pattern local: blocks before a query's own that it sees (default: 1)")
    attention.add_argument("--compression", type=int, metavar="C",
                           help="with --pattern compressed: tokens per key slot (default: 3)")
    attention.set_defaults(run=_explain_attention)
