"""Validation loss by window position: the buckets, the per-position means on a model whose loss is known."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tformer.training.position_loss import bucket_edges, position_losses

VOCAB = 7


class _SurerFurtherIn(nn.Module):
    """Predicts the next id, (id + 1) % VOCAB, with a logit equal to its position: its loss falls with position."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, ids: torch.Tensor) -> SimpleNamespace:
        logits = torch.zeros(*ids.shape, VOCAB)
        positions = torch.arange(ids.size(1), dtype=torch.float32).expand_as(ids)
        logits.scatter_(-1, ((ids + 1) % VOCAB)[..., None], positions[..., None])
        return SimpleNamespace(logits=logits + self.weight)


def _expected(position: int) -> float:  # cross-entropy with logit p on the right id and 0 on the VOCAB - 1 others
    return -position + math.log(math.exp(position) + VOCAB - 1)


def test_bucket_edges_are_0_512_then_doubling_from_2k_to_the_window() -> None:
    assert bucket_edges(4096) == [0, 512, 2048, 4096]
    assert bucket_edges(16384) == [0, 512, 2048, 4096, 8192, 16384]
    assert bucket_edges(3000) == [0, 512, 2048, 3000]
    assert bucket_edges(300) == [0, 300]
    assert bucket_edges(64, first=2) == [0, 2, 8, 16, 32, 64]


def test_per_position_and_bucket_losses_of_a_model_whose_loss_is_known() -> None:
    tokens = torch.arange(5 * 8 + 3) % VOCAB  # five whole windows of 8 (+ 1 target), then a partial one
    result = position_losses(_SurerFurtherIn(), tokens, 8, batch_size=2, edges=[0, 2, 4, 8])
    assert result.windows == 5 and result.window == 8
    assert torch.allclose(result.per_position, torch.tensor([_expected(p) for p in range(8)]), atol=1e-6)
    buckets = result.buckets
    assert [(a, b) for a, b, _ in buckets] == [(0, 2), (2, 4), (4, 8)]
    for a, b, loss in buckets:
        assert loss == pytest.approx(sum(_expected(p) for p in range(a, b)) / (b - a), abs=1e-6)
    assert buckets[0][2] > buckets[1][2] > buckets[2][2]
    assert position_losses(_SurerFurtherIn(), tokens, 8, max_windows=2).windows == 2
    assert "| 0-2 | 10 |" in result.table()


def test_windows_do_not_overlap_and_targets_run_one_token_further() -> None:
    tokens = torch.arange(17) % VOCAB
    tokens[8] = (tokens[7] + 3) % VOCAB  # window 0's last target (and window 1's first input) is off by 3
    result = position_losses(_SurerFurtherIn(), tokens, 8, edges=[0, 7, 8])
    assert result.windows == 2
    off = -0.0 + math.log(math.exp(7) + VOCAB - 1)  # position 7 of window 0: logit 7 on a wrong id
    assert result.per_position[7].item() == pytest.approx((off + _expected(7)) / 2, abs=1e-5)


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: position_losses(m, torch.arange(8), 8), "8 tokens hold no window of 8 + 1"),
    (lambda m: position_losses(m, torch.zeros(2, 9, dtype=torch.long), 8), "must be a 1-D tensor"),
    (lambda m: position_losses(m, torch.arange(20) % VOCAB, 8, edges=[0, 4]), "edges=[0, 4] must rise from 0 to"),
    (lambda m: position_losses(m, torch.arange(20) % VOCAB, 8, max_windows=0), "max_windows=0 must be at least 1"),
    (lambda m: bucket_edges(0), "window=0 and first=512 must be at least 1"),
])
def test_bad_inputs_are_one_line_errors(call, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError) as caught:
        call(_SurerFurtherIn())
    assert message in str(caught.value) and "\n" not in str(caught.value)
