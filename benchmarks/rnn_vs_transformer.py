"""The lecture notes' RNN comparison, measured: tformer's RNNsearch (Bahdanau et al. 2014) beside its Transformer.

Notes 001 ("RNN Comparison") say Transformers are parallel across inputs and RNNs sequential, that a Transformer
has a constant path length from any input to any output while an RNN's grows with the distance, and that a
Transformer has few parameters; notes 003 §9.7 say RNNs reach long context but cannot run in parallel, and
"Transformers CAN DO BOTH". Every section below puts one of those claims to a measurement on this machine, with
tformer's two models on the same code path: `ModelConfig(family="rnn")` (bidirectional GRU encoder through
nn.GRU, i.e. oneDNN on CPU / cuDNN on GPU, a GRU decoder with additive attention) and the encoder-decoder
Transformer (fused attention: torch's scaled_dot_product_attention), built by `tformer.models.build_model`.

* Parallelism: training-step time (forward + loss + backward + AdamW) and target tokens/s against the sequence
  length n (32 to 1,024; 2,048 for the Transformer only), same tokens per step at every n, the demo-sized pair
  matched in parameters (rnnsearch-demo and the demo-numbers Transformer). The sequential steps per layer are
  counted, not timed: a recurrent layer takes n dependent steps (one per position), an attention layer one.
  Threads: --threads (default: all cores), in this process alone.
* Path length: reproduce the token that stood d positions before the end of the source (d from 4 to 512), a
  fresh model per d, both trained on the same batches for the same steps; accuracy against d. RNNsearch has
  attention, which is itself a constant-length path, so the task is built so that attention alone cannot find
  the answer: nothing marks it but its distance from the end, so for the RNN the answer and the end meet only
  through at least d recurrent steps (the argument is in rnn_vs_transformer_path.py), while the Transformer's
  self-attention joins them in one. It measures whether accuracy falls with the recurrent path length, beside a
  model whose path does not grow; both are small models matched in parameters (the RNN's hidden size fitted).
* Quality per wall-clock: on the demo's number phrases (exact match) and on Multi30k en->de (sacrebleu BLEU on
  test2016), each model trains through tformer's Trainer on its recipe for the same training seconds (the
  schedule fitted to the budget from the measured step time), the two side by side with one thread each; the
  learning curve is greedy validation exact match / BLEU against training time; at the end the test split is
  decoded greedily and with beam 4, and the decoding speed (new tokens per second) is timed.
* Parameters: the count of each model and where they sit (embeddings, recurrence, attention, feed-forward,
  norms, output), tied tensors counted once.

It prints the tables and writes them (results.md, results.json) and the figures (parallelism.png,
path_length.png, quality_demo.png, quality_multi30k.png) to --out (default docs/rnn_vs_transformer/). Nothing is
downloaded; Multi30k is read from the data root (TFORMER_DATA, else ../shared/data) and skipped when absent.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rnn_vs_transformer.py            # the whole run (< 60 min, 2 cores)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rnn_vs_transformer.py --quick --out /tmp/rvt   # about a minute
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rnn_vs_transformer.py --sections parallelism,params
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from rnn_vs_transformer_options import parse_args  # noqa: E402
from rnn_vs_transformer_sections import Run, run_sections  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    began = time.perf_counter()
    args = parse_args(argv)
    run = Run(args, began)
    try:
        run_sections(run)
    finally:
        run.close()
    report = run.report(time.perf_counter() - began)
    print(report)
    out = Path(args.out)
    (out / "results.md").write_text(report + "\n", encoding="utf-8")
    run.write_json(out / "results.json", time.perf_counter() - began)
    print(f"\nwrote {out}/results.md, results.json and {', '.join(run.figures) or 'no figures'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
