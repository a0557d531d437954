"""The encoder stack and the decoder stack: embeddings -> blocks -> final norm, written once for every family.

GPT is a decoder stack with a tied LM head; BERT an encoder stack with its pooler and pre-training heads; the
encoder-decoder both stacks (its decoder blocks with cross-attention) and an LM head. Each stack returns its last
hidden state, and on request the hidden states (the embeddings, then each block's output, the last one after the
final norm) and each block's attention weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from tformer.config import ModelConfig
from tformer.layers.attention import padding_mask
from tformer.layers.blocks import DecoderBlock, EncoderBlock, layer_norm
from tformer.layers.cache import DynamicKVCache, KVCache, StaticKVCache
from tformer.layers.embeddings import Embeddings
from tformer.layers.pattern_cache import PatternKVCache
from tformer.layers.positions import build_positions
from tformer.models.base import check_input_ids, check_mask, token_mask
from tformer.models.outputs import DecoderOutput, EncoderOutput

# One block's call: (block, x) -> (x, its attention weights: one per attention kind, each None unless asked)
BlockCall = Callable[[nn.Module, Tensor], tuple[Tensor, ...]]


class _Stack(nn.Module):
    """Embeddings, a list of blocks and an optional final LayerNorm, and the loop that runs them."""

    def __init__(self, config: ModelConfig, token: nn.Embedding, blocks: list[nn.Module],
                 type_vocab_size: int = 0) -> None:
        super().__init__()
        self.embeddings = Embeddings(token, build_positions(config), type_vocab_size=type_vocab_size,
                                     scale=config.scale_embeddings,
                                     norm=layer_norm(config) if config.embedding_norm else None,
                                     dropout=config.dropout)
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = layer_norm(config) if config.final_norm else None

    def _check_ids(self, input_ids: Tensor, past_length: int = 0, name: str = "input_ids",
                   check_values: bool = True) -> None:
        """Ids within this stack's vocabulary and positions (read from its embeddings: a resized vocabulary
        follows)."""
        check_input_ids(input_ids, self.embeddings.token.num_embeddings, self.embeddings.positions.n_positions,
                        past_length, name, check_values=check_values)

    def _run(self, x: Tensor, call: BlockCall, kinds: int, output_attentions: bool,
             output_hidden_states: bool) -> tuple[Tensor, tuple[Tensor, ...] | None, list[tuple[Tensor, ...] | None]]:
        """x after every block and the final norm; the hidden states; per attention kind, each block's weights."""
        hidden_states = [x]
        weights: list[list[Tensor]] = [[] for _ in range(kinds)]
        for block in self.blocks:
            x, *maps = call(block, x)
            if output_hidden_states:
                hidden_states.append(x)
            for kept, weight in zip(weights, maps, strict=True):
                if weight is not None:
                    kept.append(weight)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if output_hidden_states:
                hidden_states[-1] = x
        return (x, tuple(hidden_states) if output_hidden_states else None,
                [tuple(kept) if output_attentions else None for kept in weights])


class EncoderStack(_Stack):
    """The encoder: embeddings -> encoder blocks -> final norm; ids (batch, len) -> states (batch, len, d_model)."""

    def __init__(self, config: ModelConfig, token: nn.Embedding, type_vocab_size: int = 0) -> None:
        super().__init__(config, token, [EncoderBlock(config) for _ in range(config.n_layers)], type_vocab_size)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                token_type_ids: Tensor | None = None, *, output_attentions: bool = False,
                output_hidden_states: bool = False) -> EncoderOutput:
        """attention_mask (batch, len): 1 = token, 0 = padding; position_ids default to 0, 1, ..."""
        self._check_ids(input_ids)
        check_mask(attention_mask, tuple(input_ids.shape), "attention_mask")
        if position_ids is None:
            position_ids = torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)
        mask = token_mask(attention_mask)
        x = self.embeddings(input_ids, position_ids, token_type_ids)
        x, hidden_states, (attentions,) = self._run(
            x, lambda block, h: block(h, mask, return_weights=output_attentions), 1, output_attentions,
            output_hidden_states)
        return EncoderOutput(last_hidden_state=x, hidden_states=hidden_states, attentions=attentions)


class DecoderStack(_Stack):
    """The decoder: embeddings -> decoder blocks (masked self-attention, cross-attention when `cross_attention`,
    FFN) -> final norm; ids (batch, len) (+ memory (batch, source len, d_model)) -> states (batch, len, d_model).

    With a `KVCache` the new tokens sit at explicit positions (`cache_position`, (len,)), passed to every
    attention layer; without one, causal self-attention over the whole input takes torch's fastest kernels.
    Each block's self-attention is of the kind `config.attention_pattern` gives it (full, local, compressed);
    with local or compressed layers (`long_attention`) the cache is a `PatternKVCache` and the padding mask is laid
    out per layer, over the keys that layer's cache returns.
    """

    def __init__(self, config: ModelConfig, token: nn.Embedding, n_layers: int, cross_attention: bool = False) -> None:
        super().__init__(config, token, [DecoderBlock(config, cross_attention, layer_index=i) for i in range(n_layers)])
        self.n_heads = config.n_heads
        self.kinds = tuple(block.self_attention.kind for block in self.blocks)
        self.long_attention = any(kind != "full" for kind in self.kinds)
        self.pattern = config.attention_pattern
        self.local_window = (config.local_block_size, config.local_look_back)
        self.compression = config.compression

    def new_cache(self) -> DynamicKVCache | PatternKVCache:
        """A cache that grows by one position per step (any batch, any length): for full attention a dynamic cache,
        for a pattern with local or compressed layers a `PatternKVCache` (ring buffers, compressed slots)."""
        if not self.long_attention:
            return DynamicKVCache(len(self.blocks))
        compressors = [getattr(block.self_attention, "compress", None) for block in self.blocks]
        block_size, look_back = self.local_window
        return PatternKVCache(self.kinds, block_size=block_size, look_back=look_back, compression=self.compression,
                              compressors=compressors)

    @property
    def supports_static_cache(self) -> bool:
        """False for a pattern with local or compressed layers: their caches have no pre-allocated form."""
        return not self.long_attention

    def new_static_cache(self, batch: int, max_length: int, *, dtype: torch.dtype | None = None,
                         device: torch.device | str | None = None) -> StaticKVCache:
        """A pre-allocated cache for `batch` rows of up to `max_length` positions (generation's fast path)."""
        if self.long_attention:
            raise ValueError(f"attention_pattern={self.pattern!r} has local or compressed layers, whose caches (a ring "
                             "buffer, compressed slots) have no static form: use new_cache() (generate picks it "
                             "when cache_implementation is None or 'dynamic')")
        reference = self.embeddings.token.weight
        d_model = reference.size(1)
        return StaticKVCache(len(self.blocks), batch, self.n_heads, max_length, d_model // self.n_heads,
                             dtype=dtype or reference.dtype, device=device or reference.device)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None, *,
        memory: Tensor | None = None, memory_mask: Tensor | None = None, cache: KVCache | None = None,
        cache_position: Tensor | None = None, output_attentions: bool = False, output_hidden_states: bool = False,
        names: tuple[str, str] = ("input_ids", "attention_mask"),
    ) -> DecoderOutput:
        """attention_mask: 1 = token, 0 = padding over the keys the layers attend to, (batch, cache.key_length(len))
        with a cache (cached positions included), else (batch, len). memory_mask: a boolean (batch, 1, 1, source
        len) mask over the memory. cache_position (len,): the positions of the new tokens; given, the caller
        vouches for the ids and the length (no host sync); else they continue after the cache's `length`.
        position_ids (batch, len) default to those positions. `names` name the two inputs in errors."""
        positions = self._positions(input_ids, attention_mask, cache, cache_position, names)
        if position_ids is None:
            position_ids = positions[None].expand(input_ids.size(0), -1)
        masks = self._padding_masks(attention_mask, cache)
        x = self.embeddings(input_ids, position_ids)
        x, hidden_states, (attentions, cross_attentions) = self._run(
            x, lambda block, h: block(h, mask=masks[block.layer_index if len(masks) > 1 else 0], memory=memory,
                                      memory_mask=memory_mask, cache=cache, positions=positions,
                                      return_weights=output_attentions),
            2, output_attentions, output_hidden_states)
        return DecoderOutput(last_hidden_state=x, hidden_states=hidden_states, attentions=attentions,
                             cross_attentions=cross_attentions if self.blocks[0].cross_attention is not None else None)

    def _padding_masks(self, attention_mask: Tensor | None, cache: KVCache | None) -> list[Tensor | None]:
        """The (batch, 1, 1, keys) padding mask of each layer, or one for all: without a cache, or when every
        layer is full attention (the keys of every layer are then all positions: one mask, computed once)."""
        if cache is None or attention_mask is None:
            return [token_mask(attention_mask)]
        if not self.long_attention:  # the cache's mask is there anyway: no shortcut
            return [padding_mask(cache.key_padding(attention_mask))]
        return [padding_mask(cache.key_padding(attention_mask, layer)) for layer in range(len(self.blocks))]

    def _check_cache(self, cache: KVCache) -> None:
        """A stack with local or compressed layers needs the cache `new_cache()` gives it (a full-attention cache
        would let those layers see every earlier key), and a full-attention stack one without such layers."""
        kinds = getattr(cache, "kinds", None)
        if self.long_attention and kinds != self.kinds:
            raise ValueError(f"attention_pattern={self.pattern!r} needs its own cache, a PatternKVCache of the layer "
                             f"kinds {self.kinds}, got a {type(cache).__name__}: pass cache=model.new_cache()")
        if not self.long_attention and kinds is not None and any(kind != "full" for kind in kinds):
            raise ValueError(f"this model's layers are all full attention but the cache is for the kinds {kinds}: "
                             "pass cache=model.new_cache()")

    def _positions(self, input_ids: Tensor, attention_mask: Tensor | None, cache: KVCache | None,
                   cache_position: Tensor | None, names: tuple[str, str]) -> Tensor:
        """Check the inputs against the cache; the positions (len,) of the new tokens."""
        ids_name, mask_name = names
        if cache is None and cache_position is not None:
            raise ValueError("cache_position names where the new tokens go in a KV cache, and this call has none: "
                             "pass cache=model.new_cache() (or new_static_cache) too, or leave cache_position out")
        if cache is not None:
            self._check_cache(cache)
        named = cache_position is not None
        past = cache.length if cache is not None and not named else 0
        self._check_ids(input_ids, past, ids_name, check_values=not named)
        length = input_ids.size(1)
        keys = cache.key_length(length) if cache is not None else length
        check_mask(attention_mask, (input_ids.size(0), keys), mask_name)
        if cache_position is not None:
            return cache_position
        return torch.arange(past, past + length, device=input_ids.device)


class DecoderCaches:
    """Mixin of the families that generate (GPT, EncoderDecoder): the two caches of their `decoder` stack."""

    decoder: DecoderStack

    def new_cache(self) -> DynamicKVCache | PatternKVCache:
        """A cache that grows by one position per step (a `PatternKVCache` for local or compressed layers)."""
        return self.decoder.new_cache()

    @property
    def supports_static_cache(self) -> bool:
        """Whether `new_static_cache` can serve this model (not with local or compressed layers)."""
        return self.decoder.supports_static_cache

    def new_static_cache(self, batch: int, max_length: int, *, dtype: torch.dtype | None = None,
                         device: torch.device | str | None = None) -> StaticKVCache:
        """A pre-allocated cache for `batch` rows of up to `max_length` positions (generation's fast path)."""
        return self.decoder.new_static_cache(batch, max_length, dtype=dtype, device=device)
