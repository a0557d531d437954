"""Masked language modelling (BERT): choose 15 % of the tokens, hide 80 % of those behind [MASK], swap 10 % for a
random token, keep 10 %, and ask the model for the original ids at exactly those positions.

The split is drawn from one uniform number per chosen token, so `mask_fraction` and `random_fraction` are the
shares of *all chosen* tokens (the BERT paper's 80/10/10), not the "half of the remaining 20 %" step that
Hugging Face's collator writes and users keep reporting as a bug (transformers PR#17377).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from tformer.losses import IGNORE_INDEX


def check_mlm_rates(mlm_probability: float, mask_fraction: float, random_fraction: float) -> None:
    """Raise ValueError unless every rate is in [0, 1] and mask_fraction + random_fraction <= 1."""
    for name, value in (("mlm_probability", mlm_probability), ("mask_fraction", mask_fraction),
                        ("random_fraction", random_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} is outside [0, 1]; BERT uses mlm_probability=0.15, "
                             f"mask_fraction=0.8, random_fraction=0.1")
    if mask_fraction + random_fraction > 1.0:
        raise ValueError(f"mask_fraction + random_fraction = {mask_fraction} + {random_fraction} > 1; the rest "
                         f"(1 - mask - random) are the chosen tokens left unchanged, so lower one of them")


def replacement_ids(vocab_size: int, special_ids: Iterable[int], device: torch.device | str = "cpu") -> Tensor:
    """The ids a random replacement may take: the whole vocabulary except the special ids."""
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=device)
    specials = torch.tensor(sorted({int(i) for i in special_ids if 0 <= int(i) < vocab_size}), dtype=torch.long,
                            device=device)
    allowed[specials] = False
    return allowed.nonzero().squeeze(1)


def mask_tokens(
    input_ids: Tensor, *, mask_token_id: int, vocab_size: int, special_ids: Iterable[int] = (),
    special_tokens_mask: Tensor | None = None, pad_token_id: int | None = None, mlm_probability: float = 0.15,
    mask_fraction: float = 0.8, random_fraction: float = 0.1, generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Masked LM inputs and labels from ids (batch, length): returns (masked_input_ids, labels), same shape.

    Each token that is not special (its id in `special_ids`, `mask_token_id` or `pad_token_id`, or True in
    `special_tokens_mask`) is chosen with probability `mlm_probability`. A chosen token becomes [MASK] with
    probability `mask_fraction`, a random id with probability `random_fraction` (drawn uniformly from the
    vocabulary *without* the special ids and [MASK], so a replacement never looks like structure or padding), and
    stays as it was otherwise. `labels` holds the original id at chosen positions and -100 everywhere else.
    The input tensor is not modified. `generator` must live on the same device as `input_ids`.
    """
    check_mlm_rates(mlm_probability, mask_fraction, random_fraction)
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id={mask_token_id} is outside the vocabulary [0, {vocab_size}); pass the "
                         f"tokenizer's [MASK] id and its vocab size")
    specials = {int(i) for i in special_ids} | {int(mask_token_id)}
    if pad_token_id is not None:
        specials.add(int(pad_token_id))
    device = input_ids.device
    protected = torch.isin(input_ids, torch.tensor(sorted(specials), dtype=input_ids.dtype, device=device))
    if special_tokens_mask is not None:
        if special_tokens_mask.shape != input_ids.shape:
            raise ValueError(f"special_tokens_mask has shape {tuple(special_tokens_mask.shape)} but input_ids "
                             f"has {tuple(input_ids.shape)}; they must match")
        protected |= special_tokens_mask.to(device=device, dtype=torch.bool)

    chosen = (torch.rand(input_ids.shape, generator=generator, device=device) < mlm_probability) & ~protected
    split = torch.rand(input_ids.shape, generator=generator, device=device)
    to_mask = chosen & (split < mask_fraction)
    to_random = chosen & (split >= mask_fraction) & (split < mask_fraction + random_fraction)

    labels = input_ids.masked_fill(~chosen, IGNORE_INDEX)
    masked = input_ids.masked_fill(to_mask, mask_token_id)
    if random_fraction > 0:
        pool = replacement_ids(vocab_size, specials, device)
        if pool.numel() == 0:
            raise ValueError(f"every id of the vocabulary (size {vocab_size}) is special; there is nothing to "
                             f"draw random replacements from, so set random_fraction=0")
        picks = torch.randint(0, pool.numel(), input_ids.shape, generator=generator, device=device)
        masked = torch.where(to_random, pool[picks].to(input_ids.dtype), masked)
    return masked, labels


def pad_ids(sequences: Sequence[Sequence[int] | Tensor], pad_value: int) -> tuple[Tensor, Tensor]:
    """Right-pad ragged id lists into (batch, longest) int64, plus the attention mask (1 = token, 0 = pad)."""
    if len(sequences) == 0:
        raise ValueError("cannot collate an empty list of examples; the batch needs at least one example")
    tensors = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
    lengths = torch.tensor([t.numel() for t in tensors])
    ids = pad_sequence(tensors, batch_first=True, padding_value=pad_value)
    mask = (torch.arange(ids.size(1)) < lengths[:, None]).long()
    return ids, mask


class MLMCollator:
    """Masked LM (15 %, 80/10/10) collator: a list of id lists -> dict of (batch, longest) int64 tensors.

    Returns `input_ids` (masked), `attention_mask` (1 = token) and `labels` (original id where masked, -100
    elsewhere, padding included). Padding is never chosen, whatever its id. With `seed` the masks are
    reproducible, but every DataLoader worker gets a copy of the same generator state; with `seed=None` they come
    from torch's global generator, which DataLoader seeds differently per worker.
    """

    def __init__(self, *, pad_token_id: int, mask_token_id: int, vocab_size: int, special_ids: Iterable[int] = (),
                 mlm_probability: float = 0.15, mask_fraction: float = 0.8, random_fraction: float = 0.1,
                 seed: int | None = None) -> None:
        check_mlm_rates(mlm_probability, mask_fraction, random_fraction)
        self.pad_token_id = pad_token_id
        self.mask_token_id = mask_token_id
        self.vocab_size = vocab_size
        self.special_ids = tuple(sorted({int(i) for i in special_ids} | {pad_token_id, mask_token_id}))
        self.mlm_probability = mlm_probability
        self.mask_fraction = mask_fraction
        self.random_fraction = random_fraction
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def mask(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Apply `mask_tokens` with this collator's settings; padding (attention_mask == 0) is protected."""
        return mask_tokens(input_ids, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
                           special_ids=self.special_ids, special_tokens_mask=attention_mask == 0,
                           mlm_probability=self.mlm_probability, mask_fraction=self.mask_fraction,
                           random_fraction=self.random_fraction, generator=self.generator)

    def __call__(self, examples: Sequence[Sequence[int] | Tensor]) -> dict[str, Tensor]:
        ids, attention_mask = pad_ids(examples, self.pad_token_id)
        masked, labels = self.mask(ids, attention_mask)
        return {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}
