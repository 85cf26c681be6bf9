"""The paper's losses: log-cosh and the CE-logcosh ensemble (Kalafi et al., equations 3-5).

Both take logits [B, C] and targets as class indices [B] or one-hot / soft labels [B, C]. With
``p = softmax(logits)`` and one-hot ``y``:

- CE       = mean over the batch of ``-sum_c y_c log p_c``
- logcosh  = mean over the batch of ``sum_c log(cosh(p_c - y_c))``
- CE-logcosh = ``alpha * CE + beta * logcosh``

``log p`` comes from ``log_softmax`` and ``log(cosh(d))`` is evaluated as
``|d| + log1p(exp(-2|d|)) - log 2``, so both stay finite for any finite logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _one_hot_targets(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Validate shapes and return float targets [B, C]."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [B, C], got {list(logits.shape)}.")
    batch, classes = logits.shape
    if target.ndim == 1 and target.shape[0] == batch:
        if target.is_floating_point() and not torch.equal(target, target.round()):
            raise ValueError("class-index targets of shape [B] must hold whole numbers.")
        index = target.long()
        if index.numel() and (index.min() < 0 or index.max() >= classes):
            raise ValueError(f"class indices must be in [0, {classes - 1}], got {index.tolist()}.")
        return F.one_hot(index, classes).to(logits.dtype)
    if target.shape == logits.shape:
        return target.to(logits.dtype)
    raise ValueError(
        f"target must be class indices [B]={[batch]} or one-hot [B, C]={[batch, classes]}, got {list(target.shape)}."
    )


def log_cosh(x: torch.Tensor) -> torch.Tensor:
    """Element-wise ``log(cosh(x))``, without overflow for large ``|x|``."""
    x = x.abs()
    return x + torch.log1p(torch.exp(-2.0 * x)) - math.log(2.0)


def _logcosh_term(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return log_cosh(logits.softmax(dim=1) - y).sum(dim=1).mean()


class LogCoshLoss(nn.Module):
    """Mean over the batch of ``sum_c log(cosh(softmax(logits)_c - y_c))`` (equation 4)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _logcosh_term(logits, _one_hot_targets(logits, target))


class CELogCoshLoss(nn.Module):
    """``alpha * CE + beta * logcosh`` (equation 5; the paper uses alpha = beta = 0.5).

    Args:
        alpha: weight of the cross-entropy term, >= 0.
        beta: weight of the log-cosh term, >= 0.
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ValueError(f"alpha and beta must be >= 0 and not both 0, got alpha={alpha}, beta={beta}.")
        self.alpha = alpha
        self.beta = beta

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y = _one_hot_targets(logits, target)
        cross_entropy = -(y * logits.log_softmax(dim=1)).sum(dim=1).mean()
        return self.alpha * cross_entropy + self.beta * _logcosh_term(logits, y)


def create_loss(name: str) -> nn.Module:
    """The bundle's ``loss`` id: ``"ce"`` (alpha=1, beta=0), ``"logcosh"`` or ``"ce_logcosh"`` (0.5, 0.5)."""
    losses = {"ce": lambda: CELogCoshLoss(1.0, 0.0), "logcosh": LogCoshLoss, "ce_logcosh": CELogCoshLoss}
    if name not in losses:
        raise ValueError(f"loss must be one of {sorted(losses)}, got {name!r}.")
    return losses[name]()
