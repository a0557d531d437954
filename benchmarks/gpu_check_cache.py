"""The cache rows of benchmarks/gpu_check.py: on the device, generation with the KV cache returns the ids of
generation without it, for every generating family (GPT-2, GPT-1, encoder-decoder, Marian), greedy (static cache)
and beam search (dynamic cache), on a padded batch (decoder-only prompts left-padded, sources right-padded)."""

from __future__ import annotations

import torch
from torch import Tensor

import tformer
from tformer import ModelConfig

SEARCHES = {"greedy": 1, "beam4": 4}


def padded_prompts(config: ModelConfig, batch: int, length: int) -> tuple[Tensor, Tensor]:
    """(input_ids, attention_mask): random ids, the last row padded over a quarter of its length, on the side the
    family pads (left for decoder-only prompts, right for an encoder's source)."""
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(3, config.vocab_size, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    pad = length // 4
    if config.family == "encoder-decoder":
        mask[-1, length - pad:] = 0
    else:
        mask[-1, :pad] = 0
    fill = config.pad_token_id if config.pad_token_id is not None else 0
    return ids.masked_fill(mask == 0, fill), mask


def check_cached_generation(config: ModelConfig, device: torch.device, new_tokens: int) -> tuple[bool, str]:
    """(passed, figure): the cached and uncached ids of greedy and beam-4 generation on one padded batch."""
    torch.manual_seed(0)
    model = tformer.build_model(config).to(device).eval()
    ids, mask = padded_prompts(config, 3, 12)
    ids, mask = ids.to(device), mask.to(device)
    verdicts, ok = [], True
    for search, beams in SEARCHES.items():
        outputs = [tformer.generate(model, ids, mask, max_new_tokens=new_tokens, num_beams=beams, eos_token_id=[],
                                    use_cache=cached).cpu() for cached in (True, False)]
        same = outputs[0].shape == outputs[1].shape and torch.equal(outputs[0], outputs[1])
        ok &= same
        verdicts.append(f"{search} {'==' if same else '!='}")
    return ok, f"{', '.join(verdicts)} uncached; batch 3 (one row padded), {new_tokens} new tokens"
