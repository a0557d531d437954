"""The token cross-entropy that every objective and head uses: labels of -100 are ignored, float32 whatever
the logits' dtype."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100  # a label that no loss counts (padding, unmasked tokens, sub-word continuations)


def token_cross_entropy(logits: Tensor, labels: Tensor, *, shift: bool = False, reduction: str = "mean",
                        label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of logits (..., classes) against labels (...), IGNORE_INDEX labels left out.

    `shift=True` predicts token t+1 from position t (logits and labels (batch, length), unshifted); `reduction`
    is "mean" (over the counted labels) or "sum" (the objectives divide by the step's count themselves).
    """
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction=reduction, label_smoothing=label_smoothing)
