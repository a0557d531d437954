"""log p(continuation | prompt) under a causal language model, batched (seed: GPT-1's zero-shot heuristics score an
answer by the probability the language model gives it after the question).

The prompt and the continuation are tokenized apart, without special tokens (as `tformer prepare` tokenizes
training text), and joined: the continuation's tokens are exactly those of the continuation alone, whatever the
prompt. Its log-probability is the sum over its tokens t_i of log softmax(logits at the token before t_i)[t_i];
`ContinuationScore.mean` divides that by the token count (length normalisation). A prompt too long for the model's
positions loses its first tokens. Sequences are sorted by length and scored `batch_size` at a time, right-padded:
under the causal mask no real token sees the padding, and the attention mask says which positions are padding
(a model with memory-compressed layers gets at least one compression group of positions, padded if need be).
On a terminal a progress bar shows on stderr.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tformer.models import TransformerModel
from tformer.tokenization import Tokenizer
from tformer.training.wait_bar import wait_bar

DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class ContinuationScore:
    """log p(continuation | prompt) (seed: LM scoring): `logprob`, the sum over its `tokens` tokens, and `mean`."""

    logprob: float
    tokens: int

    @property
    def mean(self) -> float:
        """The log-probability per token (the length-normalised score)."""
        return self.logprob / self.tokens


def continuation_ids(tokenizer: Tokenizer, prompt: str, continuation: str, max_positions: int) -> tuple[list[int],
                                                                                                         int]:
    """The token ids of prompt + continuation (the prompt's first ones dropped to fit `max_positions`), and how many
    of them, at the end, are the continuation's."""
    context = tokenizer.encode(prompt, add_special_tokens=False)
    answer = tokenizer.encode(continuation, add_special_tokens=False)
    if not context:
        raise ValueError(f"the prompt {prompt!r} has no tokens, so nothing predicts the answer's first token; "
                         "use a --template with text in it")
    if not answer:
        raise ValueError(f"the continuation {continuation!r} has no tokens in this tokenizer; pick another answer "
                         "word (--verbalizer)")
    unknown = tokenizer.unk_token_id
    if unknown is not None and unknown in answer and tokenizer.id_to_token(unknown) not in continuation:
        raise ValueError(f"the continuation {continuation!r} has a piece this tokenizer does not know (it becomes "
                         f"{tokenizer.id_to_token(unknown)}), so every such answer would score alike; pick words the "
                         "model's vocabulary holds (--verbalizer)")
    if len(answer) >= max_positions:
        raise ValueError(f"the continuation {continuation!r} is {len(answer)} tokens, and the model reads at most "
                         f"{max_positions}; shorten it")
    return context[-(max_positions - len(answer)):] + answer, len(answer)


def shortest_input(model: TransformerModel) -> int:
    """The fewest tokens one uncached forward of `model` takes: a memory-compressed layer needs a whole group."""
    return model.config.compression if "M" in (model.config.attention_pattern or "") else 1


@torch.no_grad()
def score_token_ids(model: TransformerModel, sequences: Sequence[tuple[Sequence[int], int]],
                    batch_size: int = DEFAULT_BATCH_SIZE) -> list[ContinuationScore]:
    """For each (ids, n): the log-probability of the last n of `ids` given the ones before, from `model`'s logits
    (batch, length, vocab); `batch_size` sequences per forward, in order of length."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    device = next(model.parameters()).device
    shortest = shortest_input(model)  # compressed layers read at least one whole group
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    scores: list[ContinuationScore | None] = [None] * len(sequences)
    starts = range(0, len(order), batch_size)
    for start in wait_bar(starts, total=len(starts), desc=f"scoring {len(sequences):,} answers"):
        chunk = order[start:start + batch_size]
        width = max(shortest, *(len(sequences[i][0]) for i in chunk))
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        rows, columns = [], []
        for row, i in enumerate(chunk):
            tokens, answer = sequences[i]
            ids[row, :len(tokens)] = torch.as_tensor(list(tokens), dtype=torch.long)
            mask[row, :len(tokens)] = 1
            rows += [row] * answer
            columns += range(len(tokens) - answer, len(tokens))  # the answer's positions; the logits one earlier
        ids, mask = ids.to(device), mask.to(device)
        logits = model(ids, attention_mask=mask).logits
        rows_t = torch.as_tensor(rows, device=device)
        columns_t = torch.as_tensor(columns, device=device)
        picked = logits[rows_t, columns_t - 1].float().log_softmax(-1)
        token_logprobs = picked.gather(1, ids[rows_t, columns_t][:, None]).squeeze(1)
        sums = torch.zeros(len(chunk), dtype=torch.float64, device=device).index_add_(0, rows_t,
                                                                                      token_logprobs.double())
        for i, total in zip(chunk, sums.tolist(), strict=True):  # one copy to the host per batch
            scores[i] = ContinuationScore(total, sequences[i][1])
    return [score for score in scores if score is not None]


def score_continuations(model: TransformerModel, tokenizer: Tokenizer, pairs: Sequence[tuple[str, str]],
                        batch_size: int = DEFAULT_BATCH_SIZE) -> list[ContinuationScore]:
    """log p(continuation | prompt) of each (prompt, continuation) under the causal LM `model` (dropout off while
    it scores; the model's train/eval mode is left as it was)."""
    sequences = [continuation_ids(tokenizer, prompt, continuation, model.config.max_positions)
                 for prompt, continuation in pairs]
    was_training = model.training
    model.eval()
    try:
        return score_token_ids(model, sequences, batch_size)
    finally:
        model.train(was_training)
