"""Tversky and focal Tversky losses for multi-class segmentation.

The Tversky index of class ``c`` is ``TP / (TP + alpha FP + beta FN)`` summed over the batch;
``alpha = beta = 0.5`` is the Dice coefficient, ``beta > alpha`` punishes missed voxels more,
which helps small classes (peroxisomes). The focal form (Abraham & Khan 2019, the loss the paper
cites) raises ``1 - TI`` to ``1 / gamma``; ``gamma = 1`` is the plain Tversky loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TverskyLoss(nn.Module):
    """Mean over classes of ``(1 - TI_c) ** (1 / gamma)`` from logits and integer labels.

    Parameters
    ----------
    alpha, beta : float
        Weights of false positives and false negatives.
    gamma : float
        Focal parameter (1 = plain Tversky; the focal Tversky paper uses 4/3).
    smooth : float
        Added to numerator and denominator so a class absent from both prediction and labels
        scores a perfect index instead of 0/0.
    ce_weight : float
        Optional weight of an added cross-entropy term (0 = pure Tversky, as in the paper).
    ignore_index : int
        Label value excluded from the loss (e.g. unlabelled voxels), or -1 for none.
    ce_class_weights : sequence of float, optional
        Per-class weights of the cross-entropy term (rare classes get a larger share).
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 1.0,
        smooth: float = 1.0,
        ce_weight: float = 0.0,
        ignore_index: int = 255,
        ce_class_weights=None,
    ) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or alpha + beta <= 0:
            raise ValueError("Tversky alpha and beta must be non-negative and not both zero")
        if gamma <= 0:
            raise ValueError("focal Tversky gamma must be positive")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.smooth, self.ce_weight, self.ignore_index = (
            float(smooth),
            float(ce_weight),
            ignore_index,
        )
        w = None if ce_class_weights is None else torch.tensor(ce_class_weights, dtype=torch.float)
        self.register_buffer("ce_class_weights", w)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = logits.shape[1]
        valid = target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        probs = torch.softmax(logits, dim=1) * valid.unsqueeze(1)
        onehot = F.one_hot(safe, n_classes).permute(0, 3, 1, 2).to(probs.dtype)
        onehot = onehot * valid.unsqueeze(1)
        dims = (0, 2, 3)
        tp = (probs * onehot).sum(dims)
        fp = (probs * (1 - onehot)).sum(dims)
        fn = ((1 - probs) * onehot).sum(dims)
        ti = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        loss = (1 - ti).clamp_min(0).pow(1.0 / self.gamma).mean()
        if self.ce_weight > 0 and bool(valid.any()):  # (a batch all unlabelled: no CE)
            loss = loss + self.ce_weight * F.cross_entropy(
                logits, target.long(), weight=self.ce_class_weights, ignore_index=self.ignore_index
            )
        return loss


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015): mean over pixels of the KL divergence of the
    student's class probabilities from the teacher's, both softened by ``temperature``.

    Scaled by ``temperature**2`` so its gradients keep their size whatever the temperature.
    Every pixel counts, unlabelled ones too (the teacher has an answer for them).
    """
    if temperature <= 0:
        raise ValueError("distillation temperature must be positive")
    t = float(temperature)
    log_p = F.log_softmax(student_logits / t, dim=1)
    log_q = F.log_softmax(teacher_logits.detach() / t, dim=1)
    kl = (log_q.exp() * (log_q - log_p)).sum(1).mean()
    return kl * t * t
