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

Speed (speed only, same math, tested in ``tests/math/test_packed_speed.py``): actor and critic live in
one ``lucidrl.packed.PackedActorCritic``. For PPO-Clip without ``target_kl`` or value clipping, each
gradient step computes the loss of ``clipped_surrogate`` and ``value_loss`` and its gradient without
autograd: in NumPy on CPU float32 (``clipped_surrogate_grad_numpy`` +
``PackedActorCritic.policy_value_backward_numpy``, inside ``numpy_update``'s context, which holds
NumPy's BLAS to torch's thread count), else in torch (``clipped_surrogate_grad`` +
``PackedActorCritic.policy_value_backward``); the collector acts in NumPy (``lucidrl.rollout``). On
the zoo's CartPole-v1 preset (100k steps, 7,820 gradient steps, 1 torch thread) a run went from ~6.5 s
(autograd) to ~3.7 s (torch, no autograd) to ~3.2 s (NumPy) on this project's 2-core machine.
Other settings take the autograd path below, through the same packed forward.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from lucidrl.advantages import explained_variance, gae, normalize
from lucidrl.agent import Algorithm
from lucidrl.config import (FloatOrSchedule, check, check_log_std_init, check_network, check_normalization,
                            check_schedule, value_at)
from lucidrl.networks import ActivationName, ActorCritic
from lucidrl.optim import Adam, clip_grad_norm, optimizer_step, zero_grad
from lucidrl.packed import PackedActorCritic


@dataclass
class PPOConfig:
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
    """PPO-Penalty: the initial KL coefficient β (the paper finds its start value unimportant: β adapts within a few updates)."""
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
    """Box actions only: initial log σ of the Gaussian policy, one free parameter per action dimension (SB3's name and default; σ = 1)."""
    adam_eps: float = 1e-5
    """Deviation: Adam's ε (PyTorch's default is 1e-8; baselines and SB3 use 1e-5)."""
    normalize_obs: bool = False
    """Deviation: normalise observations by a running mean and std, clipped to ±clip_obs (SB3 VecNormalize's norm_obs; presets: normalize)."""
    normalize_reward: bool = False
    """Deviation: divide rewards by the running std of the discounted return, clipped to ±clip_reward (SB3's norm_reward)."""
    clip_obs: float = 10.0
    """Bound of the normalised observations, ±clip_obs (SB3's default 10)."""
    clip_reward: float = 10.0
    """Bound of the scaled rewards, ±clip_reward (SB3's default 10)."""
    seed: int | None = None
    """Seed of torch, NumPy and the envs (None: drawn at random and recorded)."""
    device: str = "cpu"
    """'cpu', 'cuda' or 'auto'. Small MLP policies are fastest on the CPU."""

    def __post_init__(self):
        check_normalization(self)
        check(isinstance(self.n_envs, int) and self.n_envs >= 1, f"n_envs must be an integer >= 1, got {self.n_envs!r}")
        check(isinstance(self.n_steps, int) and self.n_steps >= 1, f"n_steps must be an integer >= 1, got {self.n_steps!r}")
        check(isinstance(self.batch_size, int) and self.batch_size >= 2,
              f"batch_size must be an integer >= 2 (advantages are normalised per minibatch), got {self.batch_size!r}")
        check(self.batch_size <= self.rollout_size,
              f"batch_size={self.batch_size} is larger than a rollout (n_steps * n_envs = {self.rollout_size}); "
              f"lower batch_size or raise n_steps or n_envs")
        check(isinstance(self.n_epochs, int) and self.n_epochs >= 1, f"n_epochs must be an integer >= 1, got {self.n_epochs!r}")
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
        check(self.max_grad_norm is None or self.max_grad_norm > 0, f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
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
                      clip_range: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-L^CLIP (E2) to minimise, with the approximate KL and the fraction of clipped ratios."""
    log_ratio = logprob - logprob_old
    ratio = log_ratio.exp()  # (E1)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
    loss = -torch.min(unclipped, clipped).mean()  # (E2) clipped surrogate
    return loss, ratio_diagnostics(ratio, clip_range)


@torch.no_grad()
def ratio_diagnostics(ratio: torch.Tensor, clip_range: float) -> dict[str, torch.Tensor]:
    """How far π_θ moved from π_old on this minibatch: approximate KL and fraction of clipped ratios."""
    approx_kl = (ratio - ratio.log()).mean() - 1.0  # E[(r-1) - log r], the k3 estimator of KL(π_old||π_θ)
    clip_fraction = ((ratio - 1.0).abs() > clip_range).mean(dtype=torch.float32)
    return {"diag/approx_kl": approx_kl, "diag/clip_fraction": clip_fraction}


class FusedClippedSurrogate(torch.autograd.Function):
    """-L^CLIP (E2) with its gradient written out: the same loss as ``clipped_surrogate``, one autograd node.

    The gradient shows what clipping does. With r = exp(log π - log π_old), ∂(r Â)/∂log π = r Â, so

        ∂(-L^CLIP)/∂log π_t = -r_t Â_t / n   where the minimum picks the unclipped term r_t Â_t,
                            = 0              where it picks the clipped one (r_t outside [1-ε, 1+ε]
                                             on the side that Â_t rewards): no push further.

    Autograd through ``clipped_surrogate`` builds ~10 nodes per minibatch for this; on CartPole's
    small networks that bookkeeping was ~15% of a PPO update (measured, benchmarks/micro_ops.py).
    ``tests/math/test_ppo_math.py`` checks value and gradient against ``clipped_surrogate``.
    Returns ``(loss, ratio)``; the ratio (no gradient) feeds the diagnostics.
    """

    @staticmethod
    def forward(ctx, logprob, logprob_old, advantages, clip_range: float):
        loss, d_logprob, ratio = clipped_surrogate_grad(logprob, logprob_old, advantages, clip_range)
        ctx.save_for_backward(d_logprob)
        ctx.mark_non_differentiable(ratio)
        return loss, ratio

    @staticmethod
    def backward(ctx, grad_loss, _grad_ratio):
        (d_logprob,) = ctx.saved_tensors
        return d_logprob * grad_loss, None, None, None


def clipped_surrogate_grad(logprob: torch.Tensor, logprob_old: torch.Tensor, advantages: torch.Tensor,
                           clip_range: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-L^CLIP (E2), its gradient with respect to log π (see ``FusedClippedSurrogate``) and the ratio."""
    ratio = (logprob - logprob_old).exp_()  # (E1)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range).mul_(advantages)
    loss = torch.minimum(unclipped, clipped).mean().neg_()  # (E2)
    d_logprob = torch.where(unclipped <= clipped, unclipped, 0.0).mul_(-1.0 / unclipped.numel())  # -r Â / n where it flows
    return loss, d_logprob, ratio


def clipped_surrogate_grad_numpy(logprob: np.ndarray, logprob_old: np.ndarray, advantages: np.ndarray,
                                 clip_range: float) -> tuple[float, np.ndarray, np.ndarray]:
    """``clipped_surrogate_grad`` in NumPy, for ``PackedActorCritic.policy_value_backward_numpy`` (tested equal)."""
    ratio = np.exp(logprob - logprob_old)  # (E1)
    unclipped = ratio * advantages
    clipped = np.minimum(np.maximum(ratio, 1.0 - clip_range), 1.0 + clip_range)
    clipped *= advantages
    loss = -np.minimum(unclipped, clipped).mean()  # (E2)
    d_logprob = np.where(unclipped <= clipped, unclipped, 0.0)  # -r Â / n where it flows
    d_logprob *= -1.0 / unclipped.size
    return loss, d_logprob, ratio


def kl_penalty_surrogate(logprob: torch.Tensor, logprob_old: torch.Tensor, advantages: torch.Tensor,
                         kl: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-L^KLPEN (E3) to minimise; ``kl`` is the exact KL(π_old||π_θ) of each state."""
    ratio = (logprob - logprob_old).exp()  # (E1)
    loss = -(ratio * advantages).mean() + beta * kl.mean()  # (E3) KL-penalised surrogate
    return loss, {"kl": kl.detach().mean()}


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






# --------------------------------------------------------------------------- one update
def ppo_update(agent: ActorCritic | PackedActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               cfg: PPOConfig, clip_range: float, clip_range_vf: float | None, beta: float,
               generator: torch.Generator | None = None) -> dict[str, float]:
    """K epochs of minibatch steps on one flat batch; returns the diagnostics of the whole update.

    Diagnostics (entropy, approximate KL, clip fraction) are computed once at the end from what
    each step saw, as means over all the samples of the update: the same figures as computing
    them at every step, without ~10 small ops per step (measured ~5% of an update on CartPole).
    """
    head = agent.head
    params = [p for g in optimizer.param_groups for p in g["params"]]
    n = batch["advantages"].shape[0]
    full_batch = cfg.batch_size >= n  # one minibatch per epoch: no shuffling, normalise once
    if full_batch and cfg.normalize_advantage:
        full_batch_adv = normalize(batch["advantages"])
    seen: dict[str, list] = {"params": [], "ratio": [], "pg": [], "v": [], "grad_norm": [], "kl": []}
    # PackedActorCritic's loss gradient without autograd (speed only): PPO-Clip without target_kl or value clipping,
    # in NumPy where it fits (lucidrl.packed), else in torch
    fast = (isinstance(agent, PackedActorCritic) and agent.packed and cfg.variant == "clip"
            and clip_range_vf is None and cfg.target_kl is None)
    in_numpy = agent.numpy_update(min(cfg.batch_size, n)) if fast else None
    seen_params, seen_ratio, seen_pg, seen_v, seen_grad_norm = (seen[k] for k in ("params", "ratio", "pg", "v", "grad_norm"))
    max_grad_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else float("inf")
    stopped_early = False
    with in_numpy or contextlib.nullcontext():  # NumPy's BLAS held to torch's thread count
        for epoch in range(cfg.n_epochs):
            order = None if full_batch else torch.randperm(n, device=batch["advantages"].device, generator=generator)
            for start in range(0, n, cfg.batch_size):
                mb = batch if full_batch else {k: v[order[start:start + cfg.batch_size]] for k, v in batch.items()}
                adv = mb["advantages"]
                if cfg.normalize_advantage:  # Deviation: per-minibatch advantage normalisation
                    adv = full_batch_adv if full_batch else normalize(adv)
                if fast:  # speed only, the same loss and gradient as below (lucidrl.packed, tested)
                    if in_numpy is not None:  # NumPy arrays (views of the same memory) in, NumPy values out
                        if not full_batch or epoch == 0:
                            obs, actions, returns, lp_old, adv_np = (t.numpy() for t in (
                                mb["obs"], mb["actions"], mb["returns"], mb["logprob_old"], adv))
                        dist_params, pg_loss, v_loss, _, ratio = agent.policy_value_backward_numpy(
                            obs, actions, lambda lp: clipped_surrogate_grad_numpy(lp, lp_old, adv_np, clip_range),
                            returns, cfg.vf_coef, cfg.ent_coef)
                        dist_params = dist_params.copy()  # a buffer the next step overwrites
                    else:
                        lp_old = mb["logprob_old"]
                        dist_params, pg_loss, v_loss, _, ratio = agent.policy_value_backward(
                            mb["obs"], mb["actions"], lambda lp: clipped_surrogate_grad(lp, lp_old, adv, clip_range),
                            mb["returns"], cfg.vf_coef, cfg.ent_coef)
                    grad_norm = clip_grad_norm(params, max_grad_norm)
                    optimizer_step(optimizer)
                    seen_params.append(dist_params), seen_ratio.append(ratio), seen_pg.append(pg_loss)
                    seen_v.append(v_loss), seen_grad_norm.append(grad_norm)
                    continue
                dist_params, values = agent(mb["obs"])
                logprob = head.log_prob(dist_params, mb["actions"])
                if cfg.variant == "clip":  # (E2), the same as clipped_surrogate() with a hand-written gradient
                    pg_loss, ratio = FusedClippedSurrogate.apply(logprob, mb["logprob_old"], adv, clip_range)
                else:
                    kl = head.kl(mb["params_old"], dist_params)
                    pg_loss, m = kl_penalty_surrogate(logprob, mb["logprob_old"], adv, kl, beta)
                    ratio = (logprob - mb["logprob_old"]).detach().exp()
                    seen["kl"].append(m["kl"])
                if cfg.target_kl is not None and ratio_diagnostics(ratio, clip_range)["diag/approx_kl"].item() > 1.5 * cfg.target_kl:
                    stopped_early = True  # Deviation: the policy already moved far enough from π_old
                    break
                v_loss = value_loss(values, mb["values_old"], mb["returns"], clip_range_vf)
                loss = pg_loss + cfg.vf_coef * v_loss  # (E6) full objective, negated ...
                if cfg.ent_coef:
                    loss = loss - cfg.ent_coef * head.entropy(dist_params).mean()  # ... with its entropy bonus
                zero_grad(params)
                loss.backward()
                # Deviation: global gradient clipping (max_grad_norm=None: only measure the norm)
                grad_norm = clip_grad_norm(params, max_grad_norm)
                optimizer.step()
                for key, value in (("params", dist_params), ("ratio", ratio), ("pg", pg_loss), ("v", v_loss),
                                   ("grad_norm", grad_norm)):
                    seen[key].append(value.detach())
            if stopped_early:
                break
    if in_numpy is not None and seen_pg:  # the diagnostics below take tensors
        seen_params[:] = [torch.from_numpy(np.concatenate(seen_params))]
        seen_ratio[:] = [torch.from_numpy(np.concatenate(seen_ratio))]
        seen_pg[:] = torch.from_numpy(np.asarray(seen_pg, dtype=np.float32)).unbind()
        seen_v[:] = torch.from_numpy(np.asarray(seen_v, dtype=np.float32)).unbind()
    out = {"train/epochs": epoch + (0 if stopped_early else 1), "train/gradient_steps": len(seen["pg"])}
    if not seen["pg"]:
        return out
    with torch.no_grad():
        out.update(ratio_diagnostics(torch.cat(seen["ratio"]), clip_range))
        out["diag/entropy"] = head.entropy(torch.cat(seen["params"])).mean()
        out["loss/policy"], out["loss/value"] = torch.stack(seen["pg"]).mean(), torch.stack(seen["v"]).mean()
        out["diag/grad_norm"] = torch.stack(seen["grad_norm"]).mean()
        if seen["kl"]:
            out["diag/kl"] = torch.stack(seen["kl"]).mean()
    out = {k: float(v) for k, v in out.items()}
    out["loss/entropy"] = -out["diag/entropy"]
    if cfg.variant != "clip":
        del out["diag/clip_fraction"]  # ε plays no part in PPO-Penalty
    return out




# --------------------------------------------------------------------------- the algorithm
class PPO(Algorithm):
    """PPO-Clip or PPO-Penalty on a Gymnasium env. ``PPO("CartPole-v1").learn(100_000)``.

    Hyperparameters are the fields of :class:`PPOConfig`, passed as keyword arguments; with an
    env id that has a preset, the preset is the starting point (``preset=False`` to skip it).
    """

    name = "ppo"
    config_class = PPOConfig
    state_attributes = ("beta",)

    def __init__(self, env, **kwargs: Any):
        super().__init__(env, **kwargs)
        cfg: PPOConfig = self.config
        self.agent = ActorCritic(self.observation_space, self.action_space, cfg.net_arch, cfg.activation,
                                 shared=cfg.shared_trunk, ortho_init=cfg.ortho_init, algo="PPO",
                                 log_std_init=cfg.log_std_init).to(self.device)
        # one flat tensor holds every weight (the layers see views of it): one optimiser tensor, not 12,
        # laid out so that actor and critic run as one set of batched ops (lucidrl.packed); self.agent is unchanged
        self._net = PackedActorCritic(self.agent)
        self.optimizer = Adam([self._net.flat], lr=value_at(cfg.learning_rate, 1.0), eps=cfg.adam_eps)
        self.beta = cfg.beta_init

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def learn(self, total_timesteps: int, progress_bar: bool = False, reset_num_timesteps: bool = True,
              checkpoint_freq: int | None = None, callback: Callable[["PPO", dict], bool | None] | None = None) -> "PPO":
        """Train for ``total_timesteps`` env steps (counted over all envs).

        checkpoint_freq: save ``run_dir/checkpoints/step_N`` every this many steps (needs ``run_dir``).
        callback: called as ``callback(model, metrics)`` after each update; returning False stops.
        """
        cfg: PPOConfig = self.config
        logger, target = self._start_learn(total_timesteps, reset_num_timesteps, progress_bar)
        collector = self._rollout_collector()
        while self.num_timesteps < target:
            progress = self._progress_remaining(target)
            lr = value_at(cfg.learning_rate, progress)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            clip_range = value_at(cfg.clip_range, progress)
            clip_range_vf = None if cfg.clip_range_vf is None else value_at(cfg.clip_range_vf, progress)

            # 1. collect T steps in each of the N envs with the current policy π_old
            rollout = collector.collect(self._net, cfg.n_steps)
            steps_before = self.num_timesteps
            self.num_timesteps += cfg.n_steps * self.env.num_envs

            # 2. advantages Â_t (GAE) and λ-return targets R_t
            advantages, returns = gae(rollout.rewards, rollout.values_old, rollout.next_values,
                                      rollout.terminated, rollout.truncated, cfg.gamma, cfg.gae_lambda)
            batch = rollout.flat(advantages=advantages, returns=returns)

            # 3. K epochs of minibatch updates of the surrogate objective
            metrics = ppo_update(self._net, self.optimizer, batch, cfg, clip_range, clip_range_vf, self.beta,
                                 self.generator)
            self.n_updates += metrics["train/gradient_steps"]
            with torch.no_grad():  # how far the whole update moved π: the exact mean KL(π_old || π_new) on the batch
                kl = self.agent.head.kl(batch["params_old"], self.agent.policy_params(batch["obs"])).mean().item()
            metrics["diag/kl_after_update"] = kl  # (diag/kl, PPO-Penalty's: the mean over minibatches, before each step)
            if cfg.variant == "kl_penalty":  # (E4) adapt β on the KL the whole update produced
                metrics["train/beta"] = self.beta
                self.beta = adapt_beta(self.beta, kl, cfg.d_targ)

            # 4. log
            metrics["diag/explained_variance"] = explained_variance(batch["values_old"], batch["returns"])
            metrics.update({"train/learning_rate": lr, "train/n_updates": self.n_updates})
            if cfg.variant == "clip":
                metrics["train/clip_range"] = clip_range
            if self._after_update(logger, rollout, metrics, steps_before, checkpoint_freq, callback):
                break
        self._end_learn(logger)
        return self
