"""The action heads' log-probabilities and entropies with their gradients written out, in NumPy.

What autograd computes behind ``head.log_prob`` / ``head.entropy`` in the reference, for a batch
of B rows, given ∂loss/∂log π(a|s) of each row (``d_logprob``):

* categorical, logits l, p = softmax(l):  ∂log π(a)/∂l = onehot(a) - p;  ∂H/∂l = -p (log p + H)
* MultiCategorical, logits (l_1, ..., l_k) side by side, p_i = softmax(l_i): log π(a) = Σ_i log p_i[a_i] and
  H = Σ_i H_i, and component i's logits enter only its own terms, so each part gets the categorical's rules
  with the same ∂loss/∂log π:  ∂log π(a)/∂l_i = onehot(a_i) - p_i;  ∂H/∂l_i = -p_i (log p_i + H_i)  (H_i, the
  part's own entropy)
* Bernoulli, one logit l per bit, p = σ(l): log π(a) = Σ [a log σ(l) + (1 - a) log σ(-l)], and with
  d log σ(l)/dl = 1 - p, d log σ(-l)/dl = -p:  ∂log π(a)/∂l = a (1 - p) - (1 - a) p = a - p;
  H = -Σ [p log p + (1 - p) log(1 - p)], and with dH/dp = -log p + log(1 - p) = -l and dp/dl = p (1 - p):
  ∂H/∂l = -l p (1 - p)
* diagonal Gaussian, z = (a - μ)/σ:  ∂log π/∂μ = z/σ;  ∂log π/∂log σ = z² - 1;  ∂H/∂log σ = 1,
  and log σ's bound as ``networks._BoundedLogStd`` (its gradient passes inside the bounds, and
  outside them only towards them).

``kl_and_grad`` is PPO-Penalty's term: KL(π_old || π_new) (``head.kl``) and its gradient in the new
distribution parameters: categorical, p_new - p_old (per part of a MultiCategorical); Bernoulli, σ(l_new) - σ(l_old);
Gaussian, ∂/∂μ_new = (μ_new - μ_old)/σ_new² and ∂/∂log σ_new = 1 - σ_old²/σ_new² - (μ_old - μ_new)²/σ_new².

``policy_term(logprob) -> (loss, ∂loss/∂logprob, extra)`` is the algorithm's surrogate; the
functions return ``(distribution parameters, ∂loss/∂(network output), policy loss, entropy or
None, extra)``, the entropy bonus ``-ent_coef * mean(H)`` included in the gradient. ``logit_terms``
picks the rule of a head whose parameters are logits (categorical, MultiCategorical, Bernoulli), and
``sample`` draws its actions from the noise the head drew (``head.noise``), as ``head.sample`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from lucidrl.networks import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    BernoulliHead,
    CategoricalHead,
    DiagGaussianHead,
    MultiCategoricalHead,
    StateIndependentLogStd,
    bound_gradient_passes,
)

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


def log_sigmoid(logits: np.ndarray) -> np.ndarray:
    """log σ(l) = min(l, 0) - log(1 + exp(-|l|)), finite for any l (``F.logsigmoid``'s formula)."""
    out = np.abs(logits)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    return np.minimum(logits, 0.0) - out


def _categorical_grad(logp, p, idx, d_logprob, ent_coef: float, with_entropy: bool):
    """One categorical's ∂loss/∂l (the entropy bonus's included) and its entropy H (None unless asked)."""
    B = p.shape[0]
    d_logits = p * -d_logprob[:, None]  # ∂log π(a)/∂l = onehot(a) - p, weighted
    d_logits[np.arange(B), idx] += d_logprob
    entropy = -(p * logp).sum(-1) if ent_coef or with_entropy else None
    if ent_coef:
        assert entropy is not None
        d_logits += p * (logp + entropy[:, None]) * (ent_coef / B)  # ∂(-ent_coef mean H)/∂l
    return d_logits, entropy


def categorical_terms(
    logits: np.ndarray, actions: np.ndarray, policy_term: Callable, ent_coef: float, with_entropy: bool
):
    B = logits.shape[0]
    logp, p = log_softmax(logits)
    idx = actions.reshape(B)
    policy_loss, d_logprob, extra = policy_term(logp[np.arange(B), idx])
    d_logits, entropy = _categorical_grad(logp, p, idx, d_logprob, ent_coef, with_entropy)
    return logits, d_logits, policy_loss, entropy, extra


def multi_categorical_terms(
    logits: np.ndarray,
    nvec: list[int],
    actions: np.ndarray,
    policy_term: Callable,
    ent_coef: float,
    with_entropy: bool,
):
    """As ``categorical_terms`` for ``MultiCategoricalHead(nvec)``: logits [B, Σ n_i], actions [B, k]."""
    B = logits.shape[0]
    rows, acts = np.arange(B), actions.reshape(B, len(nvec))
    parts, logprob, start = [], np.zeros(B, logits.dtype), 0
    for i, n in enumerate(nvec):
        logp, p = log_softmax(logits[:, start : start + n])
        logprob += logp[rows, acts[:, i]]  # log π(a) = Σ_i log p_i[a_i]
        parts.append((start, n, logp, p))
        start += n
    policy_loss, d_logprob, extra = policy_term(logprob)
    d_logits = np.empty_like(logits)
    entropy = np.zeros(B, logits.dtype) if ent_coef or with_entropy else None
    for i, (start, n, logp, p) in enumerate(parts):  # each part: the categorical's rules, the same d_logprob
        d_logits[:, start : start + n], part_entropy = _categorical_grad(
            logp, p, acts[:, i], d_logprob, ent_coef, with_entropy
        )
        if entropy is not None:
            entropy += part_entropy  # H = Σ_i H_i
    return logits, d_logits, policy_loss, entropy, extra


def bernoulli_terms(
    logits: np.ndarray, actions: np.ndarray, policy_term: Callable, ent_coef: float, with_entropy: bool
):
    """As ``categorical_terms`` for ``BernoulliHead``: logits [B, n], actions [B, n] in {0, 1}."""
    B = logits.shape[0]
    a = actions.reshape(logits.shape).astype(logits.dtype)
    log_p = log_sigmoid(logits)  # log σ(l)
    log_q = log_p - logits  # log(1 - p) = log σ(-l) = log σ(l) - l
    p = np.exp(log_p)
    logprob = (a * log_p + (1.0 - a) * log_q).sum(-1)
    policy_loss, d_logprob, extra = policy_term(logprob)
    d_logits = (a - p) * d_logprob[:, None]  # ∂log π(a)/∂l = a - p, weighted
    entropy = -(p * log_p + (1.0 - p) * log_q).sum(-1) if ent_coef or with_entropy else None
    if ent_coef:
        d_logits += logits * p * (1.0 - p) * (ent_coef / B)  # ∂(-ent_coef mean H)/∂l, with ∂H/∂l = -l p (1 - p)
    return logits, d_logits, policy_loss, entropy, extra


def logit_terms(head, logits: np.ndarray, actions: np.ndarray, policy_term: Callable, ent_coef: float, with_entropy):
    """The terms of a head whose parameters are logits: ``CategoricalHead``, ``MultiCategoricalHead`` or
    ``BernoulliHead``."""
    if isinstance(head, MultiCategoricalHead):
        return multi_categorical_terms(logits, head.nvec, actions, policy_term, ent_coef, with_entropy)
    if isinstance(head, BernoulliHead):
        return bernoulli_terms(logits, actions, policy_term, ent_coef, with_entropy)
    return categorical_terms(logits, actions, policy_term, ent_coef, with_entropy)


def head_unsupported(head, actor) -> str | None:
    """Why the fast backend has no written-out gradient for this head (None when it has): the logit heads, and the
    Gaussian with a state-independent log σ (the actor's last module)."""
    gaussian = isinstance(head, DiagGaussianHead) and isinstance(actor[-1], StateIndependentLogStd)
    if not (isinstance(head, (CategoricalHead, MultiCategoricalHead, BernoulliHead)) or gaussian):
        return f"the action head {type(head).__name__}"
    return None


def sample(head, logits: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``head.sample(logits, noise=noise)`` in NumPy (int64 actions): Gumbel-max per categorical part,
    argmax(l + g), and for a Bernoulli bit 1 where u < σ(l), with the noise the head drew."""
    if isinstance(head, MultiCategoricalHead):
        parts, start = [], 0
        for n in head.nvec:
            parts.append((logits[:, start : start + n] + noise[:, start : start + n]).argmax(-1))
            start += n
        return np.stack(parts, -1)
    if isinstance(head, BernoulliHead):
        return (noise < np.exp(log_sigmoid(logits))).astype(np.int64)
    return (logits + noise).argmax(-1)


def gaussian_terms(
    mean: np.ndarray,
    raw_log_std: np.ndarray,
    actions: np.ndarray,
    policy_term: Callable,
    ent_coef: float,
    with_entropy: bool,
    log_std_grad_out: np.ndarray,
    log_std_grad_extra: np.ndarray | None = None,
):
    """As ``categorical_terms``; ∂loss/∂(raw log σ) is written into ``log_std_grad_out``, with
    ``log_std_grad_extra`` (another term's gradient in the bounded log σ) added before the bound's rule."""
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
    if log_std_grad_extra is not None:
        d_log_std += log_std_grad_extra
    log_std_grad_out[...] = np.where(bound_gradient_passes(raw_log_std, d_log_std), d_log_std, 0.0)
    entropy = np.full(B, log_std.sum() + d * (0.5 + HALF_LOG_2PI), np.float32) if ent_coef or with_entropy else None
    params = np.concatenate([mean, np.broadcast_to(log_std, mean.shape)], -1)
    return params, d_mean, policy_loss, entropy, extra


def kl_and_grad(head, params_old: np.ndarray, params_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL(π_old || π_new) of each row (``head.kl``) and its gradient in ``params_new`` (see the module's
    docstring)."""
    if isinstance(head, DiagGaussianHead):
        d = params_new.shape[-1] // 2
        mean_old, log_std_old, mean_new, log_std_new = (
            params_old[:, :d],
            params_old[:, d:],
            params_new[:, :d],
            params_new[:, d:],
        )
        inv_var = np.exp(-2.0 * log_std_new)
        var_ratio = np.exp(2.0 * (log_std_old - log_std_new))  # σ_old² / σ_new²
        gap = mean_new - mean_old
        mean_term = gap * gap * inv_var  # (μ_old - μ_new)² / σ_new²
        kl = (log_std_new - log_std_old + 0.5 * (var_ratio + mean_term) - 0.5).sum(-1)
        return kl, np.concatenate([gap * inv_var, 1.0 - var_ratio - mean_term], -1)
    if isinstance(head, BernoulliHead):
        log_p, log_q = log_sigmoid(params_old), log_sigmoid(params_new)  # log σ(l): old, new
        p, q = np.exp(log_p), np.exp(log_q)
        kl = (p * (log_p - log_q) + (1.0 - p) * ((log_p - params_old) - (log_q - params_new))).sum(-1)
        return kl, q - p
    sizes = head.nvec if isinstance(head, MultiCategoricalHead) else [params_new.shape[-1]]
    kl, grad, start = np.zeros(params_new.shape[0], params_new.dtype), np.empty_like(params_new), 0
    for n in sizes:  # each categorical part: Σ p_old (log p_old - log p_new), gradient p_new - p_old
        logp_old, p_old = log_softmax(params_old[:, start : start + n])
        logp_new, p_new = log_softmax(params_new[:, start : start + n])
        kl += (p_old * (logp_old - logp_new)).sum(-1)
        grad[:, start : start + n] = p_new - p_old
        start += n
    return kl, grad
