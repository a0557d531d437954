"""What every model family shares: weight initialisation, input checks, parameter counts."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tformer.config import ModelConfig
from tformer.layers.attention import padding_mask
from tformer.layers.positions import LearnedPositions


class TransformerModel(nn.Module):
    """Base of GPT, BERT and EncoderDecoder: holds the `ModelConfig` and the shared helpers."""

    config: ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def init_weights(self, order: list[nn.Module] | None = None) -> None:
        """Normal(0, init_std) for projections and embeddings, zero biases, unit LayerNorms.

        Drawn module by module in `order` (default: this model's own module order), each shared module once: a
        family whose modules are nested differently can keep the draws, hence the weights a seed gives.
        """
        std = self.config.init_std
        seen: set[int] = set()
        for module in (m for part in (order or [self]) for m in part.modules()):
            if id(module) in seen:
                continue
            seen.add(id(module))
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Embedding, LearnedPositions)):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """Trainable parameters, each shared tensor (tied embeddings) counted once."""
        return sum(p.numel() for p in self.parameters())


def check_input_ids(input_ids: Tensor, vocab_size: int, max_positions: int, past_length: int = 0,
                    name: str = "input_ids", *, check_values: bool = True) -> None:
    """(batch, length) integer ids inside [0, vocab_size) (unless check_values=False: no host sync), and
    past_length + length within the position table of max_positions."""
    if input_ids.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, length), got {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must hold integer token ids, got dtype {input_ids.dtype}")
    if check_values and input_ids.numel() and not torch.compiler.is_compiling():  # a host sync on GPU
        low, high = torch.aminmax(input_ids)
        if high >= vocab_size or low < 0:
            bad = int(high) if high >= vocab_size else int(low)
            raise ValueError(
                f"token id {bad} in {name} is outside the vocabulary [0, {vocab_size}); "
                "use the tokenizer that belongs to this model or enlarge vocab_size"
            )
    total = past_length + input_ids.size(1)
    if total > max_positions:
        raise ValueError(
            f"sequence length {total} is longer than the position table (max_positions="
            f"{max_positions}); truncate the input to {max_positions} tokens"
        )


def check_mask(mask: Tensor | None, expected: tuple[int, int], name: str) -> None:
    """A 1/0 token mask, when given, has the (batch, keys) shape the input needs."""
    if mask is not None and tuple(mask.shape) != expected:
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)} but the input needs {expected} "
            "(batch, all key positions, cached ones included); 1 marks a token, 0 padding"
        )


def check_encoded_text(ids: list[int], config: ModelConfig, what: str, text: str) -> None:
    """One text's token ids are something this model can read: not none, within its positions, within its
    vocabulary (a tokenizer.json of another model fails here). `what` names the text in the error: prompt, ..."""
    if not ids:
        raise ValueError(f"the {what} {text[:40]!r} encodes to no tokens with this tokenizer")
    if len(ids) > config.max_positions:
        raise ValueError(f"the {what} is {len(ids)} tokens long but the model's position table holds "
                         f"{config.max_positions}: shorten the {what}")
    unknown = next((i for i in ids if i >= config.vocab_size), None)
    if unknown is not None:
        raise ValueError(f"the tokenizer gives id {unknown} but the model has only {config.vocab_size} token ids: "
                         "the tokenizer.json does not belong to this model")


def token_mask(attention_mask: Tensor | None) -> Tensor | None:
    """A 1/0 (batch, keys) token mask as a boolean attention mask, or None when no token is padding.

    None lets attention take torch's fastest kernels (causal ones included) instead of a masked one.
    """
    if attention_mask is None or (not torch.compiler.is_compiling() and bool(attention_mask.all())):
        return None
    return padding_mask(attention_mask)


def scale_residual_projections(model: nn.Module, n_layers: int, std: float) -> None:
    """GPT-2's initialisation: the projections that write into the residual stream get std / sqrt(2 * layers)."""
    for name, parameter in model.named_parameters():
        if name.endswith(("out_proj.weight", "fc_out.weight")):
            nn.init.normal_(parameter, std=std / math.sqrt(2 * n_layers))
