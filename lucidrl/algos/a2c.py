"""Advantage Actor-Critic (A2C): the synchronous form of A3C (Mnih, Badia, Mirza, Graves, Lillicrap,
Harley, Silver, Kavukcuoglu 2016, "Asynchronous Methods for Deep Reinforcement Learning", arXiv:1602.01783).

A3C runs several actor-learners in parallel threads. Each one plays up to t_max steps in its own
copy of the environment, turns them into n-step returns, computes an actor-critic gradient and
applies it to shared parameters whenever it is ready (lock-free, "Hogwild!"). A2C keeps all of
that except the asynchrony: N envs step in lockstep with one policy, the N x T transitions make
one batch, and one gradient step is taken on it. Every update then uses data from the current
policy only, and a batch of N*T small matrix products replaces N threads of tiny ones.

Equations. The paper writes the A3C formulas in its text (section 4) and in Algorithm S3 of the
supplementary material, without equation numbers; we tag them E1..E5:

* (E1) n-step return   R_t = Σ_{i<k} γ^i r_{t+i} + γ^k V(s_{t+k}),  k = T - t ≤ t_max    [§4; Alg. S3]
  (forward view: the first step of a rollout looks T steps ahead, the last one step; the sum
  stops at an episode end, and bootstraps only if that end was a time-limit truncation)
* (E2) advantage       A_t = R_t - V(s_t)                                                  [§4]
* (E3) actor gradient  ∇θ log π(a_t|s_t) A_t + β ∇θ H(π(·|s_t)),  β = ``ent_coef``          [§4, entropy]
* (E4) critic gradient ∇θv (R_t - V(s_t))²                                                 [Alg. S3]
* (E5) RMSProp         g ← α g + (1 - α) Δθ²;  θ ← θ - η Δθ / √(g + ε)          [suppl., Optimization Details]

With ``gae_lambda`` = 1 (the default) the advantage of ``lucidrl.advantages.gae`` is exactly
(E1)-(E2); λ < 1 gives GAE (Schulman et al. 2016), SB3's generalisation. One step minimises

    loss = -mean(A_t log π(a_t|s_t)) + vf_coef * mean((V(s_t) - R_t)²) - ent_coef * mean(H)

the negated (E3) plus the weighted (E4), averaged over the N*T samples, exactly as SB3's A2C.

Defaults are Stable-Baselines3's A2C (itself OpenAI baselines' A2C), so rl-baselines3-zoo
presets carry over. Deviations from the paper, each with a switch: global gradient-norm clipping
(``max_grad_norm``), RMSprop's ε outside the square root (PyTorch's RMSprop, as SB3;
``rms_prop_eps``), orthogonal initialisation (``ortho_init``), Adam instead of RMSprop
(``use_rms_prop``), advantage normalisation (``normalize_advantage``, off), separate actor and
critic networks (``shared_trunk``; the paper shares all non-output layers).

This file is the reference: what runs is what you read (autograd through ``torch.nn``,
``torch.optim.RMSprop``). ``lucidrl.fast`` computes the same update with the gradient written out
(``backend="fast"``, taken by ``backend="auto"`` where it applies), tested equal to ``a2c_update``
(``tests/math/test_backends.py``; ``docs/algorithms/a2c.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lucidrl.advantages import explained_variance, gae, normalize
from lucidrl.agent import Algorithm, set_learning_rate
from lucidrl.config import (
    FloatOrSchedule,
    OnPolicyConfig,
    check,
    check_log_std_init,
    check_network,
    check_schedule,
    value_at,
)
from lucidrl.networks import ActivationName, ActorCritic
from lucidrl.rollout import rollout_policy


@dataclass
class A2CConfig(OnPolicyConfig):
    """A2C's hyperparameters. Defaults: Stable-Baselines3's A2C (the paper's t_max = 5, γ, RMSProp α)."""

    n_envs: int = 1
    """Number of parallel envs N (the paper's actor-learner threads; the rl-baselines3-zoo default is 1)."""
    n_steps: int = 5
    """Steps T collected per env before each update (the paper's t_max = 5); a batch is n_steps * n_envs."""
    learning_rate: FloatOrSchedule = 7e-4
    """Step size η (SB3: 7e-4; the paper samples it per run and anneals it to 0); a float or a schedule,
    e.g. lin_7e-4."""
    gamma: float = 0.99
    """Discount γ (paper: 0.99)."""
    gae_lambda: float = 1.0
    """GAE λ: 1.0 gives the paper's n-step returns (E1); below 1, GAE (SB3's generalisation)."""
    ent_coef: float = 0.0
    """β, weight of the entropy bonus (E3) (SB3: 0.0; the paper: 0.01 on Atari)."""
    vf_coef: float = 0.5
    """Weight of the value loss (E4) in the single loss (SB3: 0.5)."""
    max_grad_norm: float | None = 0.5
    """Deviation: clip the global gradient norm to this (SB3: 0.5; None: off)."""
    use_rms_prop: bool = True
    """RMSprop as in the paper (E5); False: Adam with ε 1e-5 (SB3's Adam setting)."""
    rms_prop_alpha: float = 0.99
    """RMSprop's decay α of the squared-gradient average (paper and SB3: 0.99)."""
    rms_prop_eps: float = 1e-5
    """Deviation: RMSprop's ε, added outside the square root (PyTorch's RMSprop, as SB3); the paper adds it inside."""
    normalize_advantage: bool = False
    """Deviation: normalise the advantages of each batch to zero mean, unit std (SB3: off; not in the paper)."""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the actor and of the critic (SB3's MlpPolicy: 64, 64)."""
    activation: ActivationName = "tanh"
    """Hidden activation: tanh, relu or elu."""
    shared_trunk: bool = False
    """One trunk for actor and critic with two linear outputs (the paper's design) instead of two MLPs (SB3's)."""
    ortho_init: bool = True
    """Deviation: orthogonal initialisation (hidden sqrt 2, policy 0.01, value 1), as SB3; False: PyTorch's default."""
    log_std_init: float = 0.0
    """Box actions only: initial log σ of the Gaussian policy, one free parameter per action dimension (SB3's name and
    default; σ = 1)."""

    def __post_init__(self):
        super().__post_init__()
        check(isinstance(self.n_envs, int) and self.n_envs >= 1, f"n_envs must be an integer >= 1, got {self.n_envs!r}")
        check(isinstance(self.n_steps, int) and self.n_steps >= 1,
              f"n_steps must be an integer >= 1, got {self.n_steps!r}")
        check(not self.normalize_advantage or self.n_steps * self.n_envs >= 2,
              "normalize_advantage needs at least 2 samples per update (n_steps * n_envs >= 2)")
        check_schedule(self.learning_rate, "learning_rate", 0.0, 1.0, low_open=False)
        check(0.0 < self.gamma <= 1.0, f"gamma must lie in (0, 1], got {self.gamma}")
        check(0.0 <= self.gae_lambda <= 1.0, f"gae_lambda must lie in [0, 1], got {self.gae_lambda}")
        check(self.ent_coef >= 0, f"ent_coef must be >= 0, got {self.ent_coef}")
        check(self.vf_coef >= 0, f"vf_coef must be >= 0, got {self.vf_coef}")
        check(self.max_grad_norm is None or self.max_grad_norm > 0,
              f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        check(0.0 <= self.rms_prop_alpha < 1.0, f"rms_prop_alpha must lie in [0, 1), got {self.rms_prop_alpha}")
        check(self.rms_prop_eps > 0, f"rms_prop_eps must be > 0, got {self.rms_prop_eps}")
        self.net_arch = check_network(self.net_arch, self.activation)
        check_log_std_init(self.log_std_init)

    @property
    def rollout_size(self) -> int:
        """Env steps per update: n_steps * n_envs."""
        return self.n_steps * self.n_envs


# --------------------------------------------------------------------------- pure losses
def a2c_loss(logprob: torch.Tensor, values: torch.Tensor, advantages: torch.Tensor, returns: torch.Tensor,
             vf_coef: float, entropy: torch.Tensor | None = None,
             ent_coef: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one loss of an A2C step, averaged over the batch as in SB3: ``(loss, policy_loss, value_loss)``.

    ``loss = -mean(A log π) + vf_coef * mean((V - R)²) - ent_coef * mean(H)``: (E3) negated plus
    (E4). ``advantages`` and ``returns`` carry no gradient. The policy term is a pseudo-loss: only
    its gradient means something (see ``lucidrl.algos.vpg``).
    """
    policy_loss = -(advantages * logprob).mean()  # (E3) policy-gradient term, negated
    value_loss = F.mse_loss(values, returns)  # (E4) critic regression to the n-step return
    loss = policy_loss + vf_coef * value_loss
    if ent_coef:
        assert entropy is not None, "an entropy bonus needs the entropies"
        loss = loss - ent_coef * entropy.mean()  # (E3) entropy bonus, negated
    return loss, policy_loss, value_loss


# --------------------------------------------------------------------------- one update
def a2c_update(agent: ActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               cfg: A2CConfig) -> dict[str, float]:
    """One gradient step on the whole batch (E3-E5, SB3's ``A2C.train``); returns its diagnostics."""
    head = agent.head
    adv = normalize(batch["advantages"]) if cfg.normalize_advantage else batch["advantages"]  # Deviation (off)
    dist_params, values = agent(batch["obs"])
    logprob = head.log_prob(dist_params, batch["actions"])
    entropy = head.entropy(dist_params)
    loss, policy_loss, value_loss = a2c_loss(logprob, values, adv, batch["returns"], cfg.vf_coef, entropy,
                                             cfg.ent_coef)
    optimizer.zero_grad()
    loss.backward()
    # Deviation: global gradient clipping (max_grad_norm=None: only measure the norm)
    grad_norm = nn.utils.clip_grad_norm_(list(agent.parameters()), cfg.max_grad_norm if cfg.max_grad_norm is not None
                                         else float("inf"), foreach=True)
    optimizer.step()  # (E5) RMSprop (or Adam)
    ent = float(entropy.detach().mean())
    return {"loss/policy": float(policy_loss.detach()), "loss/value": float(value_loss.detach()), "loss/entropy": -ent,
            "diag/entropy": ent, "diag/grad_norm": float(grad_norm),
            # how much of the targets' spread the critic explained before the step
            "diag/explained_variance": explained_variance(batch["values_old"], batch["returns"])}


# --------------------------------------------------------------------------- the algorithm
class A2C(Algorithm):
    """Synchronous advantage actor-critic on a Gymnasium env. ``A2C("CartPole-v1").learn(500_000)``.

    Hyperparameters are the fields of :class:`A2CConfig`, passed as keyword arguments; with an
    env id that has a preset, the preset is the starting point (``preset=False`` to skip it).
    """

    name = "a2c"
    config_class = A2CConfig

    def __init__(self, policy: Any = None, env: Any = None, **kwargs: Any):
        super().__init__(policy, env, **kwargs)
        cfg: A2CConfig = self.config
        self.agent = ActorCritic(self.observation_space, self.action_space, cfg.net_arch, cfg.activation,
                                 shared=cfg.shared_trunk, ortho_init=cfg.ortho_init, algo="A2C",
                                 log_std_init=cfg.log_std_init).to(self.device)
        lr = value_at(cfg.learning_rate, 1.0)
        if cfg.use_rms_prop:  # (E5)
            self.optimizer: torch.optim.Optimizer = torch.optim.RMSprop(
                self.agent.parameters(), lr=lr, alpha=cfg.rms_prop_alpha, eps=cfg.rms_prop_eps)
        else:
            self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=lr, eps=1e-5, fused=True)
        self._update = self._select_backend("a2c", a2c_update)  # this file's a2c_update, or lucidrl.fast's twin
        self._rollout_policy = self._select_backend("rollout", rollout_policy)  # how π acts while collecting
        self._gae = self._select_backend("gae", gae)  # lucidrl.advantages.gae, or its NumPy twin

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int | None = None,
              tb_log_name: str | None = None, reset_num_timesteps: bool = True, progress_bar: bool = False,
              checkpoint_freq: int | None = None) -> A2C:
        """Train for ``total_timesteps`` env steps (counted over all envs).

        SB3's arguments (docs/sb3.md): callback is a function ``callback(model, metrics)`` called after each
        update (False stops), a ``lucidrl.callbacks.BaseCallback`` or a list; log_interval: updates between
        summary lines. checkpoint_freq: save ``run_dir/checkpoints/step_N`` every this many steps.
        """
        cfg: A2CConfig = self.config
        with self._learning(total_timesteps, reset_num_timesteps, progress_bar, callback, log_interval,
                            tb_log_name) as (logger, target):
            collector = self._rollout_collector()
            while self.num_timesteps < target:
                # 1. T steps in each of the N envs, in lockstep, with the current policy
                rollout = self._rollout(collector.collect, self.agent, cfg.n_steps)
                steps_before = self.num_timesteps
                self.num_timesteps += cfg.n_steps * self.n_envs
                lr = value_at(cfg.learning_rate, self._progress_remaining(target))  # (after the rollout, as SB3)
                set_learning_rate(self.optimizer, lr)  # (a tensor filled in place under compile=True)

                # 2. (E1, E2) n-step returns R_t and advantages A_t = R_t - V(s_t) (GAE with λ = 1)
                advantages, returns = self._gae(rollout.rewards, rollout.values_old, rollout.next_values,
                                                rollout.terminated, rollout.truncated, cfg.gamma, cfg.gae_lambda)
                batch = rollout.flat(advantages=advantages, returns=returns)

                # 3. one gradient step on actor and critic together (E3-E5)
                metrics = self._update(self.agent, self.optimizer, batch, cfg)
                self.n_updates += 1

                # 4. log
                metrics["train/learning_rate"] = lr
                metrics["train/n_updates"] = self.n_updates
                if self._after_update(logger, rollout, metrics, steps_before, checkpoint_freq):
                    break
        return self
