"""Bahdanau's additive attention: e_ij = v^T tanh(W s + U h_j), softmax over j, c = sum_j alpha_j h_j."""

from __future__ import annotations

import math

import pytest
import torch

from tformer.layers.additive_attention import AdditiveAttention

# Small fixed numbers: query s (2,), three source states h_j (2,), alignment size 2.
W = [[0.5, -1.0], [0.25, 0.75]]
U = [[1.0, 0.5], [-0.5, 2.0]]
V = [1.5, -0.5]
S = [0.2, -0.4]
H = [[1.0, 0.0], [0.0, 1.0], [-1.0, 2.0]]


def _layer() -> AdditiveAttention:
    layer = AdditiveAttention(query_size=2, key_size=2, alignment_size=2)
    with torch.no_grad():
        layer.query_proj.weight.copy_(torch.tensor(W))
        layer.key_proj.weight.copy_(torch.tensor(U))
        layer.score.weight.copy_(torch.tensor([V]))
    return layer


def _by_hand(rows: list[int]) -> tuple[list[float], list[float]]:
    """alpha and the context over the source positions `rows`, with Python floats and math.tanh."""
    ws = [sum(W[a][k] * S[k] for k in range(2)) for a in range(2)]
    scores = []
    for j in rows:
        uh = [sum(U[a][k] * H[j][k] for k in range(2)) for a in range(2)]
        scores.append(sum(V[a] * math.tanh(ws[a] + uh[a]) for a in range(2)))
    top = max(scores)
    exps = [math.exp(e - top) for e in scores]
    alpha = [e / sum(exps) for e in exps]
    context = [sum(alpha[n] * H[j][k] for n, j in enumerate(rows)) for k in range(2)]
    return alpha, context


def _run(layer: AdditiveAttention, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    memory = torch.tensor([H])
    return layer(torch.tensor([S]), layer.project_keys(memory), memory, mask)


def test_weights_and_context_equal_the_hand_computed_formula() -> None:
    context, weights = _run(_layer())
    alpha, expected_context = _by_hand([0, 1, 2])
    torch.testing.assert_close(weights, torch.tensor([alpha]), rtol=0, atol=1e-6)
    torch.testing.assert_close(context, torch.tensor([expected_context]), rtol=0, atol=1e-6)


def test_project_keys_is_u_h_for_every_source_position() -> None:
    layer = _layer()
    keys = layer.project_keys(torch.tensor([H]))
    expected = [[sum(U[a][k] * H[j][k] for k in range(2)) for a in range(2)] for j in range(3)]
    torch.testing.assert_close(keys, torch.tensor([expected]))


def test_padding_gets_no_weight_and_the_rest_is_the_unpadded_softmax() -> None:
    context, weights = _run(_layer(), mask=torch.tensor([[1, 0, 1]]))
    alpha, expected_context = _by_hand([0, 2])
    assert weights[0, 1].item() == 0.0
    torch.testing.assert_close(weights[0, [0, 2]], torch.tensor(alpha), rtol=0, atol=1e-6)
    torch.testing.assert_close(context, torch.tensor([expected_context]), rtol=0, atol=1e-6)


def test_a_fully_padded_row_gives_zero_weights_a_zero_context_and_no_nan_gradients() -> None:
    layer = _layer()
    memory = torch.tensor([H, H], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    context, weights = layer(torch.tensor([S, S]), layer.project_keys(memory), memory, mask)
    assert torch.equal(weights[1], torch.zeros(3))
    assert torch.equal(context[1], torch.zeros(2))
    assert not weights.isnan().any() and not context.isnan().any()
    context.sum().backward()
    assert all(not p.grad.isnan().any() for p in layer.parameters())
    assert not memory.grad.isnan().any()


@pytest.mark.parametrize("batch", [1, 3])
def test_weights_are_a_distribution_over_the_source(batch: int) -> None:
    torch.manual_seed(0)
    layer = AdditiveAttention(query_size=5, key_size=6, alignment_size=4)
    memory = torch.randn(batch, 7, 6)
    context, weights = layer(torch.randn(batch, 5), layer.project_keys(memory), memory)
    assert context.shape == (batch, 6) and weights.shape == (batch, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(batch))
