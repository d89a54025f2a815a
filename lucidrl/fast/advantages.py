"""The fast twin of ``lucidrl.advantages.gae``: the same recursion, through NumPy views of the same memory.

A2C computes GAE 2,500 times per 100k CartPole steps on [5, 8] tensors and PPO 390 times on
[32, 8] ones, where an op costs its launch: ~1 us in NumPy against ~4 us in torch, for the ~2 ops
of each of the T steps of the backward recursion. Same ops in the same order as the reference
(``tests/math/test_backends.py``). On the CPU only.
"""

from __future__ import annotations

import numpy as np
import torch

from lucidrl import backends


def gae(rewards, values, next_values, terminated, truncated, gamma: float, gae_lambda: float):
    """``lucidrl.advantages.gae``: (advantages, λ-return targets), both [T, N]."""
    r, v, nv = rewards.numpy(), values.numpy(), next_values.numpy()
    term, trunc = terminated.numpy(), truncated.numpy()
    not_term = (~term).astype(r.dtype)
    not_done = (~(term | trunc)).astype(r.dtype)
    deltas = r + gamma * not_term * nv - v  # (A1)
    decay = (gamma * gae_lambda) * not_done
    advantages = np.empty_like(r)
    next_adv = np.zeros_like(r[0])
    for t in range(r.shape[0] - 1, -1, -1):
        next_adv = advantages[t] = deltas[t] + decay[t] * next_adv  # (A2)
    advantages = torch.from_numpy(advantages)
    return advantages, advantages + values  # (A3)


def gae_unsupported(model) -> str | None:
    return None if model.device.type == "cpu" else f"device {model.device.type!r} (the fast backend is for the CPU)"


backends.register("gae", gae, gae_unsupported)
