"""The deliberate bugs of `mutation_check.py`: each one small, realistic, and named by the tests meant to catch it.

A row: a short name, what the bug does, the file under src/, the exact text it replaces (found exactly once, or
the row is stale), the replacement, and the pytest selection (files or node ids, and an optional -k) that must
fail. Pick the smallest selection that is meant to catch the bug, so the whole list runs in minutes; a later
issue adds rows for what it builds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    """One deliberate bug: replace `old` by `new` in src/`file`; `tests` (with `-k select`) must then fail."""

    name: str
    description: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    select: str | None = None


MUTATIONS: list[Mutation] = [
    Mutation(
        "causal-mask-top-left", "causal mask aligned top-left, so cached queries miss their newest keys",
        "tformer/layers/attention.py",
        "query_positions = torch.arange(k_len - q_len, k_len, device=device)[:, None]",
        "query_positions = torch.arange(q_len, device=device)[:, None]",
        ("tests/layers/test_attention.py",), "causal_mask or kv_cache"),
    Mutation(
        "mlm-unchanged-randomised", "MLM: the 10 % meant to stay unchanged get a random token too",
        "tformer/data/mlm.py",
        "to_random = chosen & (split >= mask_fraction) & (split < mask_fraction + random_fraction)",
        "to_random = chosen & (split >= mask_fraction)",
        ("tests/training/test_objectives.py",), "80_10_10"),
    Mutation(
        "beam-penalty-counts-prompt", "beam length penalty divides by the prompt + new tokens, not the new ones",
        "tformer/generation/beam.py",
        "finished_scores = scores / ((cur_len + 1 - prompt_len) ** length_penalty)",
        "finished_scores = scores / ((cur_len + 1) ** length_penalty)",
        ("tests/generation/test_beam_scores.py",)),
    Mutation(
        "cache-position-offset", "positions restart at 0 after a KV cache instead of continuing at its length",
        "tformer/models/stacks.py",
        "return torch.arange(past, past + length, device=input_ids.device)",
        "return torch.arange(length, device=input_ids.device)",
        ("tests/layers/test_cache.py",), "gpt_cached_decoding_matches_full_sequence"),
    Mutation(
        "generation-positions", "left-padded generation repeats the last position for every new token",
        "tformer/generation/state.py",
        "self.positions = torch.cat([self.positions, self.positions[:, -1:] + 1], dim=1)",
        "self.positions = torch.cat([self.positions, self.positions[:, -1:]], dim=1)",
        ("tests/generation/test_generate.py",), "padded_batch"),
    Mutation(
        "checkpoint-not-atomic", "a checkpoint is copied into place (a kill mid-copy leaves it half written)",
        "tformer/training/checkpoint.py",
        "        if before_rename is not None:\n"
        "            before_rename(tmp)\n"
        "        if final.exists():  # a checkpoint of the same step from an earlier attempt: replace it\n"
        "            shutil.rmtree(final)\n"
        "        os.replace(tmp, final)\n",
        "        if final.exists():\n"
        "            shutil.rmtree(final)\n"
        "        shutil.copytree(tmp, final)\n"
        "        if before_rename is not None:\n"
        "            before_rename(final)\n"
        "        shutil.rmtree(tmp)\n",
        ("tests/training/test_checkpoint.py",), "kill"),
    Mutation(
        "lm-loss-unshifted", "the model's LM loss compares position t with token t, not t + 1",
        "tformer/losses.py",
        "logits, labels = logits[:, :-1], labels[:, 1:]",
        "logits, labels = logits, labels",
        ("tests/models/test_inputs.py",), "lm_labels"),
    Mutation(
        "lm-data-unshifted", "LM batches' labels are the inputs themselves (nanoGPT style needs them shifted)",
        "tformer/data/lm.py",
        "y = x.clone() if self.hf_style else windows[:, 1:].contiguous()",
        "y = x.clone() if self.hf_style else windows[:, :-1].contiguous()",
        ("tests/data/test_lm.py",), "shifted"),
    Mutation(
        "exact-match-inverted", "translation exact match counts the hypotheses that differ",
        "tformer/training/evaluate.py",
        "sum(h.strip() == r.strip() for",
        "sum(h.strip() != r.strip() for",
        ("tests/training/test_evaluate.py",)),
    Mutation(
        "source-padding-dropped", "encoder-decoder generation drops the source padding mask",
        "tformer/generation/state.py",
        "source_mask = mask.repeat_interleave(copies, dim=0) if mask is not None else None",
        "source_mask = None",
        ("tests/generation/test_generate.py",), "padded_batch and marian"),
    Mutation(
        "rng-rank0-everywhere", "on resume every process restores rank 0's RNG state",
        "tformer/training/checkpoint.py",
        'own = path / f"rng-rank{env.rank}.pt"',
        'own = path / "rng-rank0.pt"',
        ("tests/training/test_checkpoint.py", "tests/training/test_distributed.py"), "own_rng or dropout"),
    Mutation(
        "one-dropout-stream", "under torchrun every process draws the same dropout masks (one seed for all)",
        "tformer/training/trainer.py",
        "self._seed((t.seed + 1 + self.env.rank) % 2**32)",
        "self._seed(t.seed)",
        ("tests/training/test_distributed.py",), "dropout and ddp"),
    Mutation(
        "fp16-scaler-not-restored", "an fp16 resume starts a fresh gradient scaler (the saved loss scale ignored)",
        "tformer/training/trainer.py",
        'self.scaler.load_state_dict(state["scaler"])',
        "pass",
        ("tests/training/test_checkpoint.py",), "fp16"),
    Mutation(
        "cuda-rng-not-restored", "a resume leaves the CUDA generators where they are",
        "tformer/training/checkpoint.py",
        'torch.cuda.set_rng_state_all(state["cuda"])',
        "pass",
        ("tests/training/test_checkpoint.py",), "cuda"),
    Mutation(
        "attention-scale", "scores divided by d_k instead of sqrt(d_k)",
        "tformer/layers/attention.py",
        "1.0 / math.sqrt(q.size(-1))",
        "1.0 / q.size(-1)",
        ("tests/layers/test_attention.py",), "hand_computed"),
    Mutation(
        "decoder-not-causal", "the decoder's self-attention sees future tokens",
        "tformer/layers/blocks.py",
        "self.self_attention(h, mask=mask, is_causal=True, cache=cache,",
        "self.self_attention(h, mask=mask, is_causal=False, cache=cache,",
        ("tests/viz/test_capture.py",), "encoder_decoder_views_with_a_given_target"),
    Mutation(
        "cross-attention-sees-padding", "the decoder's cross-attention attends to source padding",
        "tformer/models/seq2seq.py",
        "else token_mask(attention_mask))",
        "else None)",
        ("tests/layers/test_cache.py",), "source_padding"),
    Mutation(
        "static-cache-sees-unwritten-slots", "the static cache lets a query attend to slots no token was written to",
        "tformer/layers/cache.py",
        "visible_keys(self.slots, positions) & filled",
        "visible_keys(self.slots, positions)",
        ("tests/layers/test_cache.py",), "step_mask"),
    Mutation(
        "positions-not-passed-down", "the decoder stack hands its layers the default positions, not the named ones",
        "tformer/models/stacks.py",
        "        if cache_position is not None:\n            return cache_position\n",
        "",
        ("tests/layers/test_cache.py",), "named_slots or reach_the_cache"),
    Mutation(
        "f1-of-the-wrong-class", "binary F1 scores class 0 instead of class 1 (MRPC)",
        "tformer/tasks/metrics.py",
        "pos_label=1,",
        "pos_label=0,",
        ("tests/tasks/test_metrics.py",)),
    Mutation(
        "finetune-argmin", "fine-tuned classifiers predict their least likely class",
        "tformer/tasks/encoding.py",
        'logits.squeeze(-1).tolist() if self.task.kind == "regression" else logits.argmax(-1).tolist()',
        'logits.squeeze(-1).tolist() if self.task.kind == "regression" else logits.argmin(-1).tolist()',
        ("tests/tasks/test_finetune.py",), "independent"),
    Mutation(
        "finetune-loss-per-micro-batch", "fine-tuning divides each micro-batch's loss by its own item count, not the "
        "step's (grad accumulation no longer gives the mean gradient of the whole batch)",
        "tformer/training/objectives/task.py",
        'loss = mean_over(out.loss, totals["items"])',
        'loss = mean_over(out.loss, counts["items"])',
        ("tests/tasks/test_finetune_trainer.py",), "grad_accum"),
    Mutation(
        "finetune-epochs-alike", "every fine-tuning epoch repeats the first epoch's order",
        "tformer/training/streams.py",
        "    for _ in range(epoch):\n        torch.randperm(count, generator=generator)",
        "    for _ in range(0):\n        torch.randperm(count, generator=generator)",
        ("tests/tasks/test_finetune_trainer.py",), "order"),
]
