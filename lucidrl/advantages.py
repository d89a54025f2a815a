"""Advantage and return estimators: pure functions of time-major [T, N] tensors.

The one rule for episode ends (see ``lucidrl.rollout``):

* ``terminated[t]``: s_{t+1} is terminal, its value is 0: no bootstrap.
* ``truncated[t]``: the episode was cut (time limit) at a state that is *not* terminal:
  bootstrap from V(s_{t+1}), the value of the true final observation.
* ``done = terminated | truncated`` only cuts the trace: nothing from the next episode may
  leak into this one's advantage or return.

``next_values[t]`` is V(s_{t+1}) of the *true* next state of transition t: the value of the
next row's observation when the episode goes on, of the final observation when it was
truncated (anything when terminated: it is masked).

Equations (Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized
Advantage Estimation", arXiv:1506.02438):

* (A1) TD error        δ_t = r_t + γ (1 - terminated_t) V(s_{t+1}) - V(s_t)   [GAE section 3]
* (A2) GAE             Â_t = δ_t + γλ (1 - done_t) Â_{t+1}                    [GAE eq. 16, written recursively]
* (A3) λ-return target  R_t = Â_t + V(s_t)  (the critic's regression target)
* (A4) discounted return G_t = r_t + γ (1 - done_t) G_{t+1} + γ (truncated_t ∧ ¬terminated_t) V(s_{t+1})
  (reward-to-go; Sutton & Barto 2018, eq. 3.8, with the time-limit bootstrap of
  Pardo et al. 2018, "Time Limits in Reinforcement Learning")
* (A5) total return     Ψ_t = G_{t0} for every step t of an episode, t0 its first step
  (REINFORCE's weight, Williams 1992; Ψ option 1 of the GAE paper, section 2)

Checks in tests/math: λ=1 gives G_t - V(s_t); λ=0 gives δ_t; truncation bootstraps and
termination does not.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and λ-return targets, both [T, N].

    Args:
        rewards, values, next_values: float [T, N]; ``values[t]`` = V(s_t), ``next_values[t]`` =
            V(s_{t+1}) of the true next state (see the module docstring).
        terminated, truncated: bool [T, N], the flags of transition t.
        gamma: discount γ. gae_lambda: λ (0: one-step TD error; 1: Monte Carlo return minus V).
    """
    not_term = (~terminated).to(rewards.dtype)
    not_done = (~(terminated | truncated)).to(rewards.dtype)
    deltas = rewards + gamma * not_term * next_values - values  # (A1)
    decay = (gamma * gae_lambda) * not_done
    advantages = torch.empty_like(rewards)
    next_adv = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        next_adv = torch.addcmul(deltas[t], decay[t], next_adv)  # (A2)
        advantages[t] = next_adv
    return advantages, advantages + values  # (A3)


def discounted_returns(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    next_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Discounted reward-to-go G_t, [T, N].

    With ``next_values`` the return bootstraps from V(s_{t+1}) where an episode was truncated
    and at the end of the rollout (an episode still running); without it those tails count as
    0 (plain Monte Carlo, as in REINFORCE on complete episodes).
    """
    done = terminated | truncated
    zeros = torch.zeros_like(rewards[0])
    out = torch.empty_like(rewards)
    running = zeros if next_values is None else torch.where(terminated[-1], zeros, next_values[-1])
    for t in range(rewards.shape[0] - 1, -1, -1):
        if t < rewards.shape[0] - 1 or next_values is None:
            # at a cut: 0 after termination, V(final obs) after a truncation that is not also a
            # termination (Gymnasium's TimeLimit sets both flags when the last allowed step ends it)
            cut = truncated[t] & ~terminated[t]
            tail = zeros if next_values is None else torch.where(cut, next_values[t], zeros)
            running = torch.where(done[t], tail, running)
        running = rewards[t] + gamma * running  # (A4)
        out[t] = running
    return out


def total_returns(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    next_values: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """The discounted return of each step's whole episode, G_{t0}, broadcast to its steps, [T, N]. (A5)

    G_{t0} = Σ_k γ^k r_{t0+k} counts from the episode's first step t0 *in this rollout*; an
    episode that began in an earlier rollout counts from row 0 (its earlier rewards came before
    every action here, so leaving them out changes no expectation; the discount, though, restarts at
    row 0, which scales such an episode's weights by γ^-k against G_{t0}, k its steps before the
    rollout: a positive factor per episode, like the γ^t that every practical policy gradient
    drops, Thomas 2014, "Bias in natural actor-critic algorithms"). The tail of an episode cut
    by a truncation or by the rollout end is handled as in ``discounted_returns``: 0 without
    ``next_values``, the bootstrap γ^k V(s) with it.

    ``valid``: the rollout's mask of real rows (False on NEXT_STEP reset rows, see
    ``lucidrl.rollout``); an episode then starts on the first valid row after a reset row, not on
    the reset row itself (whose zero reward would discount the whole return by one γ).
    """
    returns = discounted_returns(rewards, terminated, truncated, gamma, next_values)  # G_t of every step
    starts = torch.ones_like(terminated)
    starts[1:] = terminated[:-1] | truncated[:-1]  # a step after an episode end starts a new one
    if valid is not None:
        starts[1:] |= ~valid[:-1]  # ... and so does the step after a NEXT_STEP reset row
    out = torch.empty_like(rewards)
    running = returns[0]
    for t in range(rewards.shape[0]):
        running = torch.where(starts[t], returns[t], running)  # (A5) the episode's first G, carried on
        out[t] = running
    return out


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit standard deviation (a single element is only centred). Used on advantages."""
    return (x - x.mean()) / (x.std() + 1e-8) if x.numel() > 1 else x - x.mean()


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var[target - predicted] / Var[target]: 1 is perfect, 0 is no better than a constant, < 0 worse."""
    var = target.var()
    return float("nan") if not var > 0 else float(1.0 - (target - predicted).var() / var)
