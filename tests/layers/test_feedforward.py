"""Position-wise feed-forward network and its activations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tformer.layers.feedforward import FeedForward

# Inputs where the candidates differ: gelu (erf) and gelu_tanh differ by up to ~1e-3 around |x| ~ 2.
X = torch.linspace(-4.0, 4.0, 81)

EXPECTED = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": lambda x: x * torch.sigmoid(x),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_activation_name_gives_the_right_function(name: str) -> None:
    ffn = FeedForward(4, 8, activation=name)
    expected = EXPECTED[name](X)
    torch.testing.assert_close(ffn.activation(X), expected, rtol=0, atol=1e-6)
    for other, function in EXPECTED.items():
        if other != name:
            assert (ffn.activation(X) - function(X)).abs().max() > 1e-4, f"{name} behaves like {other}"


def test_gelu_is_exact_erf_form() -> None:
    ffn = FeedForward(4, 8, activation="gelu")
    expected = 0.5 * X * (1 + torch.erf(X / 2**0.5))
    torch.testing.assert_close(ffn.activation(X), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_feedforward_is_two_linears_around_the_activation(name: str) -> None:
    torch.manual_seed(0)
    ffn = FeedForward(6, 24, activation=name).eval()
    x = torch.randn(2, 5, 6)
    expected = ffn.fc_out.weight @ EXPECTED[name](x @ ffn.fc_in.weight.T + ffn.fc_in.bias).unsqueeze(-1)
    expected = expected.squeeze(-1) + ffn.fc_out.bias
    out = ffn(x)
    assert out.shape == (2, 5, 6)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    # Position-wise: each position is transformed on its own.
    torch.testing.assert_close(ffn(x[:, 2:3]), out[:, 2:3], rtol=0, atol=1e-6)


def test_inner_width_and_bias_switch() -> None:
    ffn = FeedForward(6, 24, bias=False)
    assert ffn.fc_in.weight.shape == (24, 6) and ffn.fc_out.weight.shape == (6, 24)
    assert ffn.fc_in.bias is None and ffn.fc_out.bias is None


def test_unknown_activation_raises_naming_it() -> None:
    with pytest.raises(ValueError, match="'swish'"):
        FeedForward(4, 8, activation="swish")
