"""Corpora, batches and collators."""

from tformer.data.lm import CausalLMBatches, resolve_token_dtype
from tformer.data.mlm import MLMCollator, mask_tokens, pad_ids
from tformer.data.nsp import (
    PretrainingCollator,
    encode_documents,
    make_nsp_examples,
    split_documents,
    truncate_pair_lengths,
)
from tformer.data.seq2seq import ParallelCorpus, Seq2SeqBatches, read_lines, shift_right

__all__ = [
    "CausalLMBatches",
    "MLMCollator",
    "ParallelCorpus",
    "PretrainingCollator",
    "Seq2SeqBatches",
    "encode_documents",
    "make_nsp_examples",
    "mask_tokens",
    "pad_ids",
    "read_lines",
    "resolve_token_dtype",
    "shift_right",
    "split_documents",
    "truncate_pair_lengths",
]
