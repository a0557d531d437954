"""Position-wise feed-forward network: the same two-layer MLP applied at every position."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATION_FUNCTIONS = {
    "relu": F.relu,
    "gelu": F.gelu,  # exact, with erf (BERT)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new"
    "silu": F.silu,  # also called swish (Marian)
}


class FeedForward(nn.Module):
    """FFN(x) = W2 act(W1 x + b1) + b2: (batch, length, d_model) -> (batch, length, d_model), inner d_ff."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", *, bias: bool = True,
                 activation_dropout: float = 0.0) -> None:
        super().__init__()
        if activation not in ACTIVATION_FUNCTIONS:
            raise ValueError(f"activation {activation!r} is not one of: {', '.join(ACTIVATION_FUNCTIONS)}")
        self.activation_name = activation
        self.activation = ACTIVATION_FUNCTIONS[activation]
        self.fc_in = nn.Linear(d_model, d_ff, bias=bias)
        self.fc_out = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(activation_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_out(self.dropout(self.activation(self.fc_in(x))))
