"""The action heads' log-probabilities and entropies with their gradients written out, in NumPy.

What autograd computes behind ``head.log_prob`` / ``head.entropy`` in the reference, for a batch
of B rows, given ∂loss/∂log π(a|s) of each row (``d_logprob``):

* categorical, logits l, p = softmax(l):  ∂log π(a)/∂l = onehot(a) - p;  ∂H/∂l = -p (log p + H)
* diagonal Gaussian, z = (a - μ)/σ:  ∂log π/∂μ = z/σ;  ∂log π/∂log σ = z² - 1;  ∂H/∂log σ = 1,
  and log σ's bound as ``networks._BoundedLogStd`` (its gradient passes inside the bounds, and
  outside them only towards them).

``policy_term(logprob) -> (loss, ∂loss/∂logprob, extra)`` is the algorithm's surrogate; the
functions return ``(distribution parameters, ∂loss/∂(network output), policy loss, entropy or
None, extra)``, the entropy bonus ``-ent_coef * mean(H)`` included in the gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from lucidrl.networks import LOG_STD_MAX, LOG_STD_MIN, bound_gradient_passes

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def log_softmax(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log p, p) of softmax(logits) over the last axis, computed column by column: with few actions and many
    rows, NumPy's reductions along a short last axis cost several times more than a loop over the columns."""
    columns = logits.T
    top = columns[0].copy()
    for col in columns[1:]:
        np.maximum(top, col, out=top)
    logp = logits - top[:, None]
    p = np.exp(logp)
    total = p[:, 0].copy()
    for j in range(1, p.shape[1]):
        total += p[:, j]
    p /= total[:, None]
    logp -= np.log(total)[:, None]
    return logp, p


def categorical_terms(
    logits: np.ndarray, actions: np.ndarray, policy_term: Callable, ent_coef: float, with_entropy: bool
):
    B = logits.shape[0]
    logp, p = log_softmax(logits)
    rows, idx = np.arange(B), actions.reshape(B)
    policy_loss, d_logprob, extra = policy_term(logp[rows, idx])
    d_logits = p * -d_logprob[:, None]  # ∂log π(a)/∂l = onehot(a) - p, weighted
    d_logits[rows, idx] += d_logprob
    entropy = -(p * logp).sum(-1) if ent_coef or with_entropy else None
    if ent_coef:
        assert entropy is not None
        d_logits += p * (logp + entropy[:, None]) * (ent_coef / B)  # ∂(-ent_coef mean H)/∂l
    return logits, d_logits, policy_loss, entropy, extra


def gaussian_terms(
    mean: np.ndarray,
    raw_log_std: np.ndarray,
    actions: np.ndarray,
    policy_term: Callable,
    ent_coef: float,
    with_entropy: bool,
    log_std_grad_out: np.ndarray,
):
    """As ``categorical_terms``; ∂loss/∂(raw log σ) is written into ``log_std_grad_out``."""
    B, d = mean.shape
    log_std = np.clip(raw_log_std, LOG_STD_MIN, LOG_STD_MAX)
    inv_std = np.exp(-log_std)
    z = (actions.reshape(B, d) - mean) * inv_std  # (a - μ) / σ
    z2 = z * z
    logprob = (z2 * -0.5 - log_std).sum(-1) - d * HALF_LOG_2PI
    policy_loss, d_logprob, extra = policy_term(logprob)
    d_lp = d_logprob[:, None]
    d_mean = z * inv_std * d_lp  # ∂log π/∂μ = z / σ
    d_log_std = ((z2 - 1.0) * d_lp).sum(0)  # ∂log π/∂log σ = z² - 1
    if ent_coef:
        d_log_std -= ent_coef  # ∂(-ent_coef mean H)/∂log σ
    log_std_grad_out[...] = np.where(bound_gradient_passes(raw_log_std, d_log_std), d_log_std, 0.0)
    entropy = np.full(B, log_std.sum() + d * (0.5 + HALF_LOG_2PI), np.float32) if ent_coef or with_entropy else None
    params = np.concatenate([mean, np.broadcast_to(log_std, mean.shape)], -1)
    return params, d_mean, policy_loss, entropy, extra
