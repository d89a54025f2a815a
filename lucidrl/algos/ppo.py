"""Proximal Policy Optimization (Schulman, Wolski, Dhariwal, Radford, Klimov 2017, arXiv:1707.06347).

PPO improves a stochastic policy π_θ with several epochs of minibatch gradient steps on the
same batch of experience, while keeping the new policy close to the one that collected it
(π_old). Reusing data this way needs two things: a *likelihood ratio* that corrects for the
data coming from π_old, and a brake that stops π_θ from moving too far from π_old, where that
correction and the advantage estimates stop being trustworthy. The paper offers two brakes.

Equations (numbers are the paper's):

* (E1) ratio            r_t(θ) = π_θ(a_t|s_t) / π_old(a_t|s_t) = exp(log π_θ - log π_old)        [eq. 6]
* (E2) PPO-Clip          L^CLIP(θ) = E_t[ min( r_t Â_t, clip(r_t, 1-ε, 1+ε) Â_t ) ]                [eq. 7]
* (E3) PPO-Penalty       L^KLPEN(θ) = E_t[ r_t Â_t - β KL[π_old(·|s_t), π_θ(·|s_t)] ]              [eq. 8]
* (E4) β adaptation      d = E_t[KL];  d < d_targ/1.5: β ← β/2;  d > 1.5 d_targ: β ← 2β          [section 4]
* (E5) value loss        L^VF = E_t[(V_θ(s_t) - R_t)²], R_t the GAE λ-return                      [eq. 9]
* (E6) full objective    maximise L^{CLIP or KLPEN} - c1 L^VF + c2 H[π_θ](s_t)                     [eq. 9]
* advantages Â_t: GAE (Schulman et al. 2016), in ``lucidrl.advantages``                              [eq. 11-12]

Every gradient step *minimises* the negative of (E6):
``loss = -L^policy + vf_coef * L^VF - ent_coef * H``.

Deviations from the paper, each with a switch (see Huang et al. 2022, "The 37 implementation
details of PPO", and Andrychowicz et al. 2021, "What matters in on-policy RL"):
advantage normalisation per minibatch (``normalize_advantage``), optional value clipping
(``clip_range_vf``), global gradient-norm clipping (``max_grad_norm``), Adam eps 1e-5
(``adam_eps``), orthogonal initialisation (``ortho_init``), the learning-rate and clip-range
schedules, and early stopping of the epochs on a KL bound (``target_kl``).

This file is the reference: what runs is what you read (autograd through ``torch.nn``,
``torch.optim.Adam``). ``lucidrl.fast`` holds a CPU backend that computes the same update with the
gradient written out (``backend="fast"``, taken by ``backend="auto"`` where it applies); it is
tested equal to ``ppo_update`` here (``tests/math/test_backends.py``, ``docs/algorithms/ppo.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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
from lucidrl.rollout import minibatches, rollout_policy


@dataclass
class PPOConfig(OnPolicyConfig):
    """PPO's hyperparameters. Defaults: the paper's MuJoCo settings (Table 3), as SB3's PPO."""

    n_envs: int = 1
    """Number of parallel envs N (the paper's "actors")."""
    n_steps: int = 2048
    """Steps T collected per env before each update (the paper's horizon); a batch is n_steps * n_envs."""
    batch_size: int = 64
    """Minibatch size M of each gradient step (paper Table 3: 64)."""
    n_epochs: int = 10
    """Passes K over each batch (paper Table 3: 10)."""
    learning_rate: FloatOrSchedule = 3e-4
    """Adam step size (paper: 3e-4); a float or a schedule, e.g. lin_3e-4."""
    gamma: float = 0.99
    """Discount γ."""
    gae_lambda: float = 0.95
    """GAE λ: 0 is the one-step TD error, 1 the Monte Carlo return minus V."""
    variant: Literal["clip", "kl_penalty"] = "clip"
    """Which surrogate: 'clip' (E2, the paper's main method) or 'kl_penalty' (E3 with adaptive β, E4)."""
    clip_range: FloatOrSchedule = 0.2
    """ε of the clipped surrogate (E2) (paper: 0.2); a float or a schedule."""
    clip_range_vf: FloatOrSchedule | None = None
    """Deviation: clip V's change per update to ±this around V_old, as OpenAI baselines (None: off)."""
    d_targ: float = 0.01
    """PPO-Penalty: the target KL d_targ of the β adaptation (E4) (paper tried 0.003, 0.01, 0.03)."""
    beta_init: float = 1.0
    """PPO-Penalty: the initial KL coefficient β (the paper finds its start value unimportant: β adapts within a few
    updates)."""
    ent_coef: float = 0.0
    """c2, weight of the entropy bonus in (E6)."""
    vf_coef: float = 0.5
    """c1, weight of the value loss in (E6)."""
    max_grad_norm: float | None = 0.5
    """Deviation: clip the global gradient norm to this (None: off)."""
    target_kl: float | None = None
    """Deviation: stop this update's epochs once the approximate KL exceeds 1.5 * target_kl (None: off)."""
    normalize_advantage: bool = True
    """Deviation: normalise Â to zero mean, unit std in each minibatch."""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the actor and of the critic."""
    activation: ActivationName = "tanh"
    """Hidden activation: tanh, relu or elu."""
    shared_trunk: bool = False
    """One trunk for actor and critic (two linear outputs) instead of two separate MLPs."""
    ortho_init: bool = True
    """Deviation: orthogonal initialisation (hidden sqrt 2, policy 0.01, value 1); False: PyTorch's default."""
    log_std_init: float = 0.0
    """Box actions only: initial log σ of the Gaussian policy, one free parameter per action dimension (SB3's name and
    default; σ = 1)."""
    adam_eps: float = 1e-5
    """Deviation: Adam's ε (PyTorch's default is 1e-8; baselines and SB3 use 1e-5)."""

    def __post_init__(self):
        super().__post_init__()
        check(isinstance(self.n_envs, int) and self.n_envs >= 1, f"n_envs must be an integer >= 1, got {self.n_envs!r}")
        check(isinstance(self.n_steps, int) and self.n_steps >= 1,
              f"n_steps must be an integer >= 1, got {self.n_steps!r}")
        check(isinstance(self.batch_size, int) and self.batch_size >= 2,
              f"batch_size must be an integer >= 2 (advantages are normalised per minibatch), got {self.batch_size!r}")
        check(self.batch_size <= self.rollout_size,
              f"batch_size={self.batch_size} is larger than a rollout (n_steps * n_envs = {self.rollout_size}); "
              f"lower batch_size or raise n_steps or n_envs")
        check(isinstance(self.n_epochs, int) and self.n_epochs >= 1,
              f"n_epochs must be an integer >= 1, got {self.n_epochs!r}")
        check_schedule(self.learning_rate, "learning_rate", 0.0, 1.0, low_open=False)
        check(0.0 < self.gamma <= 1.0, f"gamma must lie in (0, 1], got {self.gamma}")
        check(0.0 <= self.gae_lambda <= 1.0, f"gae_lambda must lie in [0, 1], got {self.gae_lambda}")
        check(self.variant in ("clip", "kl_penalty"), f"variant must be 'clip' or 'kl_penalty', got {self.variant!r}")
        check_schedule(self.clip_range, "clip_range", 0.0, 10.0)
        check(value_at(self.clip_range, 1.0) > 0, "clip_range must be > 0 at the start of training")
        if self.clip_range_vf is not None:
            check_schedule(self.clip_range_vf, "clip_range_vf", 0.0)
        check(self.d_targ > 0, f"d_targ must be > 0, got {self.d_targ}")
        check(self.beta_init >= 0, f"beta_init must be >= 0, got {self.beta_init}")
        check(self.ent_coef >= 0, f"ent_coef must be >= 0, got {self.ent_coef}")
        check(self.vf_coef >= 0, f"vf_coef must be >= 0, got {self.vf_coef}")
        check(self.max_grad_norm is None or self.max_grad_norm > 0,
              f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        check(self.target_kl is None or self.target_kl > 0, f"target_kl must be > 0 or None, got {self.target_kl}")
        self.net_arch = check_network(self.net_arch, self.activation)
        check_log_std_init(self.log_std_init)
        check(self.adam_eps > 0, f"adam_eps must be > 0, got {self.adam_eps}")

    @property
    def rollout_size(self) -> int:
        """Env steps per update: n_steps * n_envs (with a NEXT_STEP vector env, one step per finished
        episode is a reset step that the update leaves out; see ``lucidrl.rollout``)."""
        return self.n_steps * self.n_envs


# --------------------------------------------------------------------------- pure losses
def clipped_surrogate(logprob: torch.Tensor, logprob_old: torch.Tensor, advantages: torch.Tensor,
                      clip_range: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-L^CLIP (E2) to minimise, and the ratios r_t (no gradient; for the diagnostics)."""
    log_ratio = logprob - logprob_old
    ratio = log_ratio.exp()  # (E1)
    unclipped = ratio * advantages
    # (torch's stubs type clamp's bounds as both floats or both tensors, not as their union)
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages  # type: ignore[arg-type]
    loss = -torch.min(unclipped, clipped).mean()  # (E2) clipped surrogate
    return loss, ratio.detach()


def kl_penalty_surrogate(logprob: torch.Tensor, logprob_old: torch.Tensor, advantages: torch.Tensor,
                         kl: torch.Tensor, beta: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-L^KLPEN (E3) to minimise, and the ratios r_t; ``kl`` is the exact KL(π_old||π_θ) of each state."""
    ratio = (logprob - logprob_old).exp()  # (E1)
    loss = -(ratio * advantages).mean() + beta * kl.mean()  # (E3) KL-penalised surrogate
    return loss, ratio.detach()


def adapt_beta(beta: float, kl: float, d_targ: float) -> float:
    """(E4) halve β when the policy moved too little, double it when it moved too much."""
    if kl < d_targ / 1.5:
        return beta / 2.0
    if kl > d_targ * 1.5:
        return beta * 2.0
    return beta


def value_loss(values: torch.Tensor, values_old: torch.Tensor, returns: torch.Tensor,
               clip_range_vf: float | None) -> torch.Tensor:
    """L^VF (E5); with ``clip_range_vf`` the pessimistic max of clipped and unclipped errors (OpenAI baselines)."""
    if clip_range_vf is None:
        return F.mse_loss(values, returns)  # (E5) value loss
    clipped = values_old + (values - values_old).clamp(-clip_range_vf, clip_range_vf)  # Deviation: value clipping
    return torch.max((values - returns).pow(2), (clipped - returns).pow(2)).mean()


def ppo_loss(agent: ActorCritic, mb: dict[str, torch.Tensor], cfg: PPOConfig, clip_range: float | torch.Tensor,
             clip_range_vf: float | None, beta: float | torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one gradient step on minibatch ``mb`` (E6, negated), and what the diagnostics need."""
    head = agent.head
    adv = normalize(mb["advantages"]) if cfg.normalize_advantage else mb["advantages"]  # Deviation
    dist_params, values = agent(mb["obs"])
    logprob = head.log_prob(dist_params, mb["actions"])
    parts = {"params": dist_params}
    if cfg.variant == "clip":
        pg_loss, ratio = clipped_surrogate(logprob, mb["logprob_old"], adv, clip_range)  # (E1, E2)
    else:
        kl = head.kl(mb["params_old"], dist_params)
        pg_loss, ratio = kl_penalty_surrogate(logprob, mb["logprob_old"], adv, kl, beta)  # (E1, E3)
        parts["kl"] = kl.mean()
    v_loss = value_loss(values, mb["values_old"], mb["returns"], clip_range_vf)  # (E5)
    loss = pg_loss + cfg.vf_coef * v_loss  # (E6) the full objective, negated ...
    if cfg.ent_coef:
        loss = loss - cfg.ent_coef * head.entropy(dist_params).mean()  # ... with its entropy bonus
    parts.update(ratio=ratio, pg=pg_loss, v=v_loss)
    return loss, parts


# --------------------------------------------------------------------------- one update
def ppo_update(agent: ActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], cfg: PPOConfig,
               clip_range: float, clip_range_vf: float | None, beta: float,
               generator: torch.Generator | None = None) -> dict[str, float]:
    """K epochs of minibatch gradient steps on one flat batch; returns the diagnostics of the whole update.

    Diagnostics (entropy, approximate KL, clip fraction) are computed once at the end from what
    each step saw, as means over all the samples of the update.
    """
    head, params = agent.head, list(agent.parameters())
    seen: dict[str, list[torch.Tensor]] = {"params": [], "ratio": [], "pg": [], "v": [], "grad_norm": [], "kl": []}
    max_grad_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else float("inf")
    epochs = cfg.n_epochs  # passes completed
    for epoch, mb in minibatches(batch, cfg.batch_size, cfg.n_epochs, generator):
        loss, parts = ppo_loss(agent, mb, cfg, clip_range, clip_range_vf, beta)  # (E1-E6)
        if cfg.target_kl is not None and not float(approx_kl(parts["ratio"])) <= 1.5 * cfg.target_kl:
            epochs = epoch  # Deviation: the policy already moved far enough from π_old (or the KL overflowed): stop
            break
        optimizer.zero_grad()
        loss.backward()
        # Deviation: global gradient clipping (max_grad_norm=None: only measure the norm)
        grad_norm = nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
        optimizer.step()
        for key, value in (*parts.items(), ("grad_norm", grad_norm)):
            seen[key].append(value.detach())
    return update_diagnostics(head, seen, epochs, clip_range, cfg.variant)


def approx_kl(ratio: torch.Tensor) -> torch.Tensor:
    """E[(r - 1) - log r], the k3 estimator of KL(π_old || π_θ) from the ratios of the sampled actions."""
    return (ratio - ratio.log()).mean() - 1.0


@torch.no_grad()
def update_diagnostics(head, seen: dict[str, list[torch.Tensor]], epochs: int, clip_range: float,
                       variant: str) -> dict[str, float]:
    """The update's metrics from what its gradient steps saw: means over all their samples."""
    out: dict[str, float | torch.Tensor] = {"train/epochs": epochs, "train/gradient_steps": len(seen["pg"])}
    if not seen["pg"]:
        return {k: float(v) for k, v in out.items()}
    ratio = torch.cat(seen["ratio"])
    out["diag/approx_kl"] = approx_kl(ratio)
    if variant == "clip":  # ε plays no part in PPO-Penalty
        out["diag/clip_fraction"] = ((ratio - 1.0).abs() > clip_range).float().mean()
    out["diag/entropy"] = head.entropy(torch.cat(seen["params"])).mean()
    out["loss/policy"], out["loss/value"] = torch.stack(seen["pg"]).mean(), torch.stack(seen["v"]).mean()
    out["diag/grad_norm"] = torch.stack(seen["grad_norm"]).mean()
    if seen["kl"]:
        out["diag/kl"] = torch.stack(seen["kl"]).mean()
    metrics = {k: float(v) for k, v in out.items()}
    metrics["loss/entropy"] = -metrics["diag/entropy"]
    return metrics


# --------------------------------------------------------------------------- the algorithm
class PPO(Algorithm):
    """PPO-Clip or PPO-Penalty on a Gymnasium env. ``PPO("CartPole-v1").learn(100_000)``.

    Hyperparameters are the fields of :class:`PPOConfig`, passed as keyword arguments; with an
    env id that has a preset, the preset is the starting point (``preset=False`` to skip it).
    """

    name = "ppo"
    config_class = PPOConfig
    state_attributes = ("beta",)

    def __init__(self, policy: Any = None, env: Any = None, **kwargs: Any):
        super().__init__(policy, env, **kwargs)
        cfg: PPOConfig = self.config
        self.agent = ActorCritic(self.observation_space, self.action_space, cfg.net_arch, cfg.activation,
                                 shared=cfg.shared_trunk, ortho_init=cfg.ortho_init, algo="PPO",
                                 log_std_init=cfg.log_std_init).to(self.device)
        # fused=True: torch's one-kernel Adam (the same update), ~4x cheaper a step than its per-tensor loop here
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=value_at(cfg.learning_rate, 1.0),
                                          eps=cfg.adam_eps, fused=True)  # Deviation: Adam's ε (adam_eps)
        self.beta = cfg.beta_init
        self._update = self._select_backend("ppo", ppo_update)  # this file's ppo_update, or lucidrl.fast's twin
        self._rollout_policy = self._select_backend("rollout", rollout_policy)  # how π acts while collecting
        self._gae = self._select_backend("gae", gae)  # lucidrl.advantages.gae, or its NumPy twin

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int | None = None,
              tb_log_name: str | None = None, reset_num_timesteps: bool = True, progress_bar: bool = False,
              checkpoint_freq: int | None = None) -> PPO:
        """Train for ``total_timesteps`` env steps (counted over all envs).

        SB3's arguments (docs/sb3.md): callback is a function ``callback(model, metrics)`` called after each
        update (False stops), a ``lucidrl.callbacks.BaseCallback`` or a list; log_interval: updates between
        summary lines. checkpoint_freq: save ``run_dir/checkpoints/step_N`` every this many steps.
        """
        cfg: PPOConfig = self.config
        with self._learning(total_timesteps, reset_num_timesteps, progress_bar, callback, log_interval,
                            tb_log_name) as (logger, target):
            collector = self._rollout_collector()
            while self.num_timesteps < target:
                # 1. collect T steps in each of the N envs with the current policy π_old
                rollout = self._rollout(collector.collect, self.agent, cfg.n_steps)
                steps_before = self.num_timesteps
                self.num_timesteps += cfg.n_steps * self.n_envs
                progress = self._progress_remaining(target)  # schedules: read after the rollout, as SB3
                lr = value_at(cfg.learning_rate, progress)
                set_learning_rate(self.optimizer, lr)  # (a tensor filled in place under compile=True)
                clip_range = value_at(cfg.clip_range, progress)
                clip_range_vf = None if cfg.clip_range_vf is None else value_at(cfg.clip_range_vf, progress)

                # 2. advantages Â_t (GAE) and λ-return targets R_t
                advantages, returns = self._gae(rollout.rewards, rollout.values_old, rollout.next_values,
                                                rollout.terminated, rollout.truncated, cfg.gamma, cfg.gae_lambda)
                batch = rollout.flat(advantages=advantages, returns=returns)

                # 3. K epochs of minibatch updates of the surrogate objective
                metrics = self._update(self.agent, self.optimizer, batch, cfg, clip_range, clip_range_vf, self.beta,
                                       self.generator)
                self.n_updates += metrics["train/gradient_steps"]
                with torch.no_grad():  # how far the whole update moved π: the exact mean KL(π_old || π_new)
                    kl = self.agent.head.kl(batch["params_old"], self.agent.policy_params(batch["obs"])).mean().item()
                metrics["diag/kl_after_update"] = kl  # (PPO-Penalty's diag/kl: the minibatches' mean, before each step)
                if cfg.variant == "kl_penalty":  # (E4) adapt β on the KL the whole update produced
                    metrics["train/beta"] = self.beta
                    self.beta = adapt_beta(self.beta, kl, cfg.d_targ)

                # 4. log
                metrics["diag/explained_variance"] = explained_variance(batch["values_old"], batch["returns"])
                metrics.update({"train/learning_rate": lr, "train/n_updates": self.n_updates})
                if cfg.variant == "clip":
                    metrics["train/clip_range"] = clip_range
                if self._after_update(logger, rollout, metrics, steps_before, checkpoint_freq):
                    break
        return self
