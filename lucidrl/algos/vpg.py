"""Vanilla policy gradient (VPG) and REINFORCE: the policy-gradient theorem (Sutton, McAllester, Singh,
Mansour 2000, "Policy Gradient Methods for Reinforcement Learning with Function Approximation") estimated
from sampled episodes with the likelihood-ratio trick of REINFORCE (Williams 1992, "Simple Statistical
Gradient-Following Algorithms for Connectionist Reinforcement Learning").

Collect a batch with the current policy π_θ, weight each action's log-probability by how well
things went after it (Ψ_t), and take one gradient step up that weighted log-likelihood. A critic
V_φ, when Ψ needs one, is fitted afterwards by regression with its own optimiser, as in
OpenAI Spinning Up's VPG (Achiam 2018), whose defaults this file takes.

Equations:

* (E1) policy-gradient theorem  ∇J(θ) = Σ_s d^π(s) Σ_a ∇π_θ(a|s) Q^π(s,a)     [Sutton et al. 2000, Thm. 1, eq. 2]
* (E2) its sample form          ∇J(θ) ≈ mean_t[ ∇ log π_θ(a_t|s_t) Ψ_t ]      [Williams 1992; GAE paper eq. 1]
  with Ψ_t one of (``psi``; Schulman et al. 2016, "High-Dimensional Continuous Control Using
  Generalized Advantage Estimation", section 2, items 1, 2, 3 and 5-6):
    - ``total_return``           Ψ_t = G_{t0}, the return of the whole episode   (A5, plain REINFORCE)
    - ``reward_to_go``           Ψ_t = G_t = Σ_{k≥t} γ^{k-t} r_k                   (A4)
    - ``reward_to_go_baseline``  Ψ_t = G_t - V_φ(s_t)                              (A4 minus the critic)
    - ``gae``                    Ψ_t = Â_t^{GAE(γ,λ)}                               (A1-A2)
* (E3) the pseudo-loss   L(θ) = -mean_t[ log π_θ(a_t|s_t) Ψ_t ],  Ψ_t held fixed; one Adam step
* (E4) the critic        min_φ mean_t (V_φ(s_t) - G_t)²,  ``n_critic_updates`` Adam steps      [Spinning Up]

(A1)-(A5) are the estimators of ``lucidrl.advantages``. Why the baseline and reward-to-go keep
(E2) unbiased: for any b fixed before a_t is drawn (the rewards already collected, a baseline
V(s_t)), E_a[∇ log π(a|s_t) b] = b Σ_a ∇π(a|s_t) = b ∇ Σ_a π(a|s_t) = b ∇1 = 0. Leaving such
terms out of Ψ (reward-to-go) or subtracting them (the baseline) changes no expectation, only
the variance. ``tests/math/test_vpg_math.py`` checks it on an MDP small enough to compute ∇J
exactly.

**Why (E3) is not a loss.** Its value measures nothing: it is not the expected return, it is
not minimised by a good policy, its sign and scale follow Ψ (whose mean normalisation sets to
0) and it is recomputed on new data after every step, so two of its values are never
comparable. It exists only because its gradient at the sampled data, at the current θ, equals
the policy-gradient estimate (E2), which autograd then computes for us. "loss/policy" going
down does not mean the policy is getting better; judge it by the returns.

**Episodes cut by the rollout end** (and by a time limit), for each Ψ:

* with a critic (``reward_to_go_baseline``, ``gae``) G_t and Â_t bootstrap from V(s) of the
  state where the cut happened, the collector's ``next_values``: a time-limit truncation
  bootstraps from V(final observation), a termination from 0.
* without one (``total_return``, ``reward_to_go``) nothing can stand in for the missing
  rewards, and we count them as 0: the rollout end acts as a time limit known in advance.
  Because that cut time does not depend on the actions, each term is still an unbiased
  estimate of the policy gradient of the return collected before the cut; what is lost is
  the rewards after it, which the Ψ of the last ~1/(1-γ) steps before each cut miss (in
  CartPole, +1 per step, those steps look worse than they are). We do not drop the
  unfinished episode instead: whether an episode finishes before the cut depends on its
  actions, so keeping only finished ones would favour actions that end episodes early (in
  CartPole: failing). Nor do we wait for it to finish, which needs batches of varying size.
  Large ``n_steps`` keep the cut steps a small share; a critic removes the issue. An episode
  that began in the previous rollout continues here under the new policy; its
  ``total_return`` counts from this rollout's first step.

Deviations from the papers, each with a switch: advantage (Ψ) normalisation per batch
(``normalize_advantage``, Spinning Up does it), an entropy bonus (``ent_coef``, off), gradient
clipping (``max_grad_norm``, off), orthogonal initialisation (``ortho_init``, off as in
Spinning Up).

This file is the reference (autograd, ``torch.optim.Adam``). ``lucidrl.fast`` computes the same
``policy_step`` and ``fit_critic`` with the gradients written out for MLPs on the CPU, tested equal
(``tests/math/test_backends.py``; ``docs/algorithms/vpg.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lucidrl.advantages import discounted_returns, explained_variance, gae, normalize, total_returns
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
from lucidrl.rollout import Rollout, rollout_policy

PsiName = Literal["total_return", "reward_to_go", "reward_to_go_baseline", "gae"]
CRITIC_PSI = ("reward_to_go_baseline", "gae")


@dataclass
class VPGConfig(OnPolicyConfig):
    """VPG's hyperparameters. Defaults: OpenAI Spinning Up's VPG (``spinup.vpg``), on one env."""

    n_envs: int = 1
    """Number of parallel envs N (Spinning Up: 1 env per MPI process)."""
    n_steps: int = 4000
    """Steps T collected per env before each update (Spinning Up's steps_per_epoch: 4000); a batch is
    n_steps * n_envs."""
    psi: PsiName = "gae"
    """Ψ_t, the weight of log π(a_t|s_t) (E2): total_return (REINFORCE), reward_to_go, reward_to_go_baseline
    (G_t - V) or gae."""
    learning_rate: FloatOrSchedule = 3e-4
    """Policy step size (Adam; Spinning Up's pi_lr: 3e-4); a float or a schedule, e.g. lin_3e-4."""
    critic_learning_rate: FloatOrSchedule = 1e-3
    """Critic step size (its own Adam; Spinning Up's vf_lr: 1e-3); a float or a schedule."""
    n_critic_updates: int = 80
    """Full-batch Adam steps on the critic per batch (E4) (Spinning Up's train_v_iters: 80)."""
    gamma: float = 0.99
    """Discount γ (Spinning Up: 0.99)."""
    gae_lambda: float = 0.97
    """GAE λ for psi=gae (Spinning Up's lam: 0.97): 0 is the one-step TD error, 1 the return minus V."""
    normalize_advantage: bool = True
    """Deviation: normalise Ψ to zero mean, unit std over each batch (Spinning Up does; the papers do not)."""
    ent_coef: float = 0.0
    """Deviation: weight of an entropy bonus added to the policy objective (0: off, as in Spinning Up)."""
    max_grad_norm: float | None = None
    """Deviation: clip the policy gradient's norm to this (None: off, as in Spinning Up)."""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the actor and of the critic (Spinning Up: 64, 64)."""
    activation: ActivationName = "tanh"
    """Hidden activation: tanh, relu or elu (Spinning Up: tanh)."""
    ortho_init: bool = False
    """Deviation: orthogonal initialisation (hidden sqrt 2, policy 0.01, value 1); False: PyTorch's default, as
    Spinning Up."""
    log_std_init: float = 0.0
    """Box actions only: initial log σ of the Gaussian policy, one free parameter per action dimension (SB3's name
    and default; σ = 1)."""
    adam_eps: float = 1e-8
    """Adam's ε for both optimisers (PyTorch's default, as Spinning Up)."""

    def __post_init__(self):
        super().__post_init__()
        check(isinstance(self.n_envs, int) and self.n_envs >= 1, f"n_envs must be an integer >= 1, got {self.n_envs!r}")
        check(isinstance(self.n_steps, int) and self.n_steps >= 1,
              f"n_steps must be an integer >= 1, got {self.n_steps!r}")
        check(self.psi in ("total_return", "reward_to_go", "reward_to_go_baseline", "gae"),
              f"psi must be 'total_return', 'reward_to_go', 'reward_to_go_baseline' or 'gae', got {self.psi!r}")
        check(not self.normalize_advantage or self.n_steps * self.n_envs >= 2,
              "normalize_advantage needs at least 2 samples per batch (n_steps * n_envs >= 2)")
        check_schedule(self.learning_rate, "learning_rate", 0.0, 1.0, low_open=False)
        check_schedule(self.critic_learning_rate, "critic_learning_rate", 0.0, 1.0, low_open=False)
        check(isinstance(self.n_critic_updates, int) and self.n_critic_updates >= 1,
              f"n_critic_updates must be an integer >= 1, got {self.n_critic_updates!r}")
        check(0.0 < self.gamma <= 1.0, f"gamma must lie in (0, 1], got {self.gamma}")
        check(0.0 <= self.gae_lambda <= 1.0, f"gae_lambda must lie in [0, 1], got {self.gae_lambda}")
        check(self.ent_coef >= 0, f"ent_coef must be >= 0, got {self.ent_coef}")
        check(self.max_grad_norm is None or self.max_grad_norm > 0,
              f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        self.net_arch = check_network(self.net_arch, self.activation)
        check_log_std_init(self.log_std_init)
        check(self.adam_eps > 0, f"adam_eps must be > 0, got {self.adam_eps}")

    @property
    def uses_critic(self) -> bool:
        """Whether Ψ needs V (and so whether the critic is trained)."""
        return self.psi in CRITIC_PSI


# --------------------------------------------------------------------------- Ψ and the losses
def psi_and_targets(r: Rollout, cfg: VPGConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ψ_t of (E2) for every step, [T, N], and the critic's targets G_t (None without a critic)."""
    if cfg.psi == "total_return":  # (A5) no critic: the rollout end counts as a cut, its tail as 0
        return total_returns(r.rewards, r.terminated, r.truncated, cfg.gamma, valid=r.valid), None
    if cfg.psi == "reward_to_go":  # (A4) likewise
        return discounted_returns(r.rewards, r.terminated, r.truncated, cfg.gamma), None
    # with a critic: G_t bootstraps from V(s) where the rollout or a time limit cut the episode
    returns = discounted_returns(r.rewards, r.terminated, r.truncated, cfg.gamma, next_values=r.next_values)
    if cfg.psi == "reward_to_go_baseline":
        return returns - r.values_old, returns  # (A4) minus the baseline V(s_t)
    advantages, _ = gae(r.rewards, r.values_old, r.next_values, r.terminated, r.truncated, cfg.gamma, cfg.gae_lambda)
    return advantages, returns  # (A1-A2)


def policy_gradient_loss(logprob: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """(E3) -mean(log π(a_t|s_t) Ψ_t): its gradient is the estimate (E2); its value means nothing."""
    return -(logprob * psi.detach()).mean()


@torch.no_grad()
def step_diagnostics(agent: ActorCritic, batch: dict[str, torch.Tensor], psi: torch.Tensor,
                     theta_old: torch.Tensor) -> dict[str, float]:
    """How far a step from ``theta_old`` (flat actor weights) moved π, measured after it on the batch.

    The exact mean KL(π_old || π_new); ‖θ_new - θ_old‖; and the gain in TRPO's surrogate
    L(θ) = mean(π_θ/π_old · Ψ) (``lucidrl.algos.trpo``, E1), L(θ_new) - L(θ_old) with L(θ_old) = mean(Ψ),
    so that VPG's steps are measured as TRPO's are (``experiments/vpg_vs_trpo.py``).
    """
    params = agent.policy_params(batch["obs"])
    ratio = (agent.head.log_prob(params, batch["actions"]) - batch["logprob_old"]).exp()
    step = torch.cat([p.detach().reshape(-1) for p in agent.actor_parameters()]) - theta_old
    return {"diag/kl_after_update": float(agent.head.kl(batch["params_old"], params).mean()),
            "diag/step_norm": float(step.norm()), "diag/surrogate_improvement": float(((ratio - 1) * psi).mean())}


# --------------------------------------------------------------------------- the two updates
def policy_step(agent: ActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
                cfg: VPGConfig) -> dict[str, float]:
    """One Adam step on the pseudo-loss (E3) over the whole batch; returns its diagnostics."""
    head = agent.head
    psi = normalize(batch["psi"]) if cfg.normalize_advantage else batch["psi"]  # Deviation: Ψ normalisation
    dist_params = agent.policy_params(batch["obs"])
    pg_loss = policy_gradient_loss(head.log_prob(dist_params, batch["actions"]), psi)  # (E3)
    entropy = head.entropy(dist_params).mean()
    loss = pg_loss - cfg.ent_coef * entropy if cfg.ent_coef else pg_loss  # Deviation: entropy bonus
    optimizer.zero_grad()
    loss.backward()
    # Deviation: gradient clipping (max_grad_norm=None: only measure the norm)
    grad_norm = nn.utils.clip_grad_norm_(agent.actor_parameters(), cfg.max_grad_norm if cfg.max_grad_norm is not None
                                         else float("inf"), foreach=True)
    theta_old = torch.cat([p.detach().reshape(-1) for p in agent.actor_parameters()])  # a copy: cat allocates
    optimizer.step()
    pg, ent = float(pg_loss.detach()), float(entropy.detach())
    return {"loss/policy": pg, "diag/entropy": ent, "loss/entropy": -ent,
            "diag/grad_norm": float(grad_norm), **step_diagnostics(agent, batch, psi, theta_old)}


def fit_critic(agent: ActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               cfg: VPGConfig) -> dict[str, float]:
    """(E4) ``n_critic_updates`` full-batch Adam steps of V(s) towards G_t; returns the first, mean and last loss."""
    losses = []
    for _ in range(cfg.n_critic_updates):
        value_loss = F.mse_loss(agent.value(batch["obs"]), batch["targets"])  # (E4)
        optimizer.zero_grad()
        value_loss.backward()
        optimizer.step()
        losses.append(float(value_loss.detach()))
    return {"loss/value": sum(losses) / len(losses), "diag/value_loss_before": losses[0],
            "diag/value_loss_last": losses[-1]}


# --------------------------------------------------------------------------- the algorithm
class VPG(Algorithm):
    """Vanilla policy gradient with a choice of Ψ. ``VPG("CartPole-v1").learn(300_000)``.

    Hyperparameters are the fields of :class:`VPGConfig`, passed as keyword arguments; with an
    env id that has a preset, the preset is the starting point (``preset=False`` to skip it).
    The critic network always exists (the collector records V(s)); it is trained and used only
    when Ψ needs it.
    """

    name = "vpg"
    config_class: ClassVar[type] = VPGConfig

    def __init__(self, policy: Any = None, env: Any = None, **kwargs: Any):
        super().__init__(policy, env, **kwargs)
        cfg: VPGConfig = self.config
        # separate networks (and separate CNNs for images), each with its own Adam
        self.agent = ActorCritic(self.observation_space, self.action_space, cfg.net_arch, cfg.activation,
                                 shared=False, ortho_init=cfg.ortho_init, algo=type(self).__name__,
                                 log_std_init=cfg.log_std_init, share_encoder=False).to(self.device)
        # fused=True: torch's one-kernel Adam (the same update)
        self.policy_optimizer = torch.optim.Adam(self.agent.actor_parameters(), lr=value_at(cfg.learning_rate, 1.0),
                                                 eps=cfg.adam_eps, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.agent.critic_parameters(),
                                                 lr=value_at(cfg.critic_learning_rate, 1.0), eps=cfg.adam_eps,
                                                 fused=True)
        # this file's functions, or lucidrl.fast's twins (the same numbers)
        self._policy_step = self._select_backend("vpg_policy_step", policy_step)
        self._fit_critic = self._select_backend("vpg_fit_critic", fit_critic) if cfg.uses_critic else None
        self._rollout_policy = self._select_backend("rollout", rollout_policy)  # how π acts while collecting

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"policy_optimizer": self.policy_optimizer, "critic_optimizer": self.critic_optimizer}

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int | None = None,
              tb_log_name: str | None = None, reset_num_timesteps: bool = True, progress_bar: bool = False,
              checkpoint_freq: int | None = None) -> VPG:
        """Train for ``total_timesteps`` env steps (counted over all envs).

        SB3's arguments (docs/sb3.md): callback is a function ``callback(model, metrics)`` called after each
        update (False stops), a ``lucidrl.callbacks.BaseCallback`` or a list; log_interval: updates between
        summary lines. checkpoint_freq: save ``run_dir/checkpoints/step_N`` every this many steps.
        """
        cfg: VPGConfig = self.config
        with self._learning(total_timesteps, reset_num_timesteps, progress_bar, callback, log_interval,
                            tb_log_name) as (logger, target):
            collector = self._rollout_collector()
            while self.num_timesteps < target:
                # 1. collect T steps in each of the N envs with the current policy
                rollout = self._rollout(collector.collect, self.agent, cfg.n_steps)
                steps_before = self.num_timesteps
                self.num_timesteps += cfg.n_steps * self.n_envs
                progress = self._progress_remaining(target)  # schedules: read after the rollout, as SB3
                lr, critic_lr = value_at(cfg.learning_rate, progress), value_at(cfg.critic_learning_rate, progress)
                set_learning_rate(self.policy_optimizer, lr)
                set_learning_rate(self.critic_optimizer, critic_lr)

                # 2. Ψ_t for (E2), and the critic's targets G_t
                psi, targets = psi_and_targets(rollout, cfg)
                batch = rollout.flat(psi=psi, targets=targets)

                # 3. one policy-gradient step (E3), then the critic's regression (E4)
                metrics = self._policy_step(self.agent, self.policy_optimizer, batch, cfg)
                if self._fit_critic is not None:  # cfg.uses_critic
                    metrics.update(self._fit_critic(self.agent, self.critic_optimizer, batch, cfg))
                    metrics["diag/explained_variance"] = explained_variance(batch["values_old"], batch["targets"])
                    metrics["train/critic_learning_rate"] = critic_lr
                self.n_updates += 1

                # 4. log
                metrics.update({"train/learning_rate": lr, "train/n_updates": self.n_updates})
                if self._after_update(logger, rollout, metrics, steps_before, checkpoint_freq):
                    break
        return self


# --------------------------------------------------------------------------- REINFORCE
@dataclass
class REINFORCEConfig(VPGConfig):
    """REINFORCE: VPG without a critic. Defaults: VPG's, with Ψ = reward-to-go and no normalisation."""

    psi: Literal["total_return", "reward_to_go"] = "reward_to_go"
    """Ψ_t: total_return (Williams' episodic REINFORCE) or reward_to_go (the same, minus earlier rewards' noise)."""
    normalize_advantage: bool = False
    """Deviation: normalise Ψ over each batch; this subtracts the batch mean, a constant baseline (off: plain
    REINFORCE)."""

    cli_hidden: ClassVar[tuple[str, ...]] = ("critic_learning_rate", "n_critic_updates", "gae_lambda")
    """VPG's critic settings, which REINFORCE has no use for: not offered by the CLI, an error when changed."""

    def __post_init__(self):
        for name in self.cli_hidden:
            check(getattr(self, name) == getattr(VPGConfig, name),
                  f"REINFORCE has no critic, so {name} is unused; leave it out, or use lucidrl.VPG "
                  f"(psi='reward_to_go_baseline' or 'gae') for a learned baseline")
        check(self.psi in ("total_return", "reward_to_go"),
              f"REINFORCE has no critic: psi must be 'total_return' or 'reward_to_go', got {self.psi!r}; "
              f"use lucidrl.VPG for a learned baseline or GAE")
        super().__post_init__()


class REINFORCE(VPG):
    """VPG with Ψ the (reward-to-go) return and no critic. ``REINFORCE("CartPole-v1").learn(300_000)``."""

    name = "reinforce"
    config_class = REINFORCEConfig
