import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from monai_bus.losses import CELogCoshLoss, LogCoshLoss, create_loss


def reference(logits: np.ndarray, labels: np.ndarray, alpha: float, beta: float) -> float:
    """The paper's equations 3-5, written out in float64 numpy."""
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = exp / exp.sum(axis=1, keepdims=True)
    y = np.eye(logits.shape[1])[labels]
    ce = np.mean(-np.sum(y * np.log(p), axis=1))
    logcosh = np.mean(np.sum(np.log(np.cosh(p - y)), axis=1))
    return alpha * ce + beta * logcosh


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, 2, generator=generator, dtype=torch.float64) * 3, torch.randint(0, 2, (16,), generator=generator)


@pytest.mark.parametrize("alpha, beta", [(0.5, 0.5), (1.0, 0.0), (0.2, 0.8)])
def test_ce_logcosh_matches_formula(batch, alpha, beta):
    logits, labels = batch
    expected = reference(logits.numpy(), labels.numpy(), alpha, beta)
    assert CELogCoshLoss(alpha, beta)(logits, labels).item() == pytest.approx(expected, rel=1e-10)


def test_logcosh_matches_formula(batch):
    logits, labels = batch
    expected = reference(logits.numpy(), labels.numpy(), 0.0, 1.0)
    assert LogCoshLoss()(logits, labels).item() == pytest.approx(expected, rel=1e-10)


def test_one_hot_equals_indices(batch):
    logits, labels = batch
    one_hot = F.one_hot(labels, 2).double()
    for loss in (LogCoshLoss(), CELogCoshLoss()):
        assert loss(logits, one_hot).item() == pytest.approx(loss(logits, labels).item(), rel=1e-12)


def test_ce_option_is_cross_entropy(batch):
    logits, labels = batch
    assert create_loss("ce")(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-10)


def test_three_classes():
    logits, labels = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1])
    assert CELogCoshLoss()(logits, labels).item() == pytest.approx(reference(logits.numpy(), labels.numpy(), 0.5, 0.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logits_are_finite(dtype):
    logits = torch.tensor([[1e4, -1e4], [-1e4, 1e4], [1e30, -1e30]], dtype=dtype, requires_grad=True)
    labels = torch.tensor([1, 1, 0])
    loss = CELogCoshLoss()(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # only row 0 is wrong, by a logit gap of 2e4: loss = 0.5 * 2e4 / 3 + a bounded logcosh term
    assert loss.float().item() == pytest.approx(1e4 / 3, rel=0.01)
    assert LogCoshLoss()(logits.detach(), labels).item() <= 2 * math.log(math.cosh(1.0)) + 1e-3


@pytest.mark.parametrize(
    "target, message",
    [(torch.tensor([0, 2]), "class indices"), (torch.zeros(3), "target must be"), (torch.tensor([0.5, 1.0]), "whole numbers")],
)
def test_invalid_targets(target, message):
    with pytest.raises(ValueError, match=message):
        CELogCoshLoss()(torch.zeros(2, 2), target)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="alpha and beta"):
        CELogCoshLoss(alpha=-1.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        create_loss("focal")
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        LogCoshLoss()(torch.zeros(2), torch.tensor([0, 1]))
