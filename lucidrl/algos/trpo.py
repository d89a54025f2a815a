"""Trust Region Policy Optimization (Schulman, Levine, Moritz, Jordan, Abbeel 2015, arXiv:1502.05477).

TRPO makes the largest improvement of a stochastic policy π_θ that a batch from π_old supports,
under a hard limit δ on how far the new policy may move from π_old, measured by the mean KL
divergence. It solves that constrained problem approximately, with a linear model of the
objective and a quadratic model of the KL, whose matrix (the Fisher information) is only ever
used through matrix-vector products; a line search then checks the real objective and the
real KL. The derivation followed is OpenAI Spinning Up's TRPO page.

Equations (numbers are the paper's; App. C is its appendix "Efficiently Solving the
Trust-Region Constrained Optimization Problem"):

* (E1) surrogate advantage  L(θ) = E_t[ π_θ(a_t|s_t) / π_old(a_t|s_t) · Â_t ]              [eq. 14, objective]
* (E2) mean KL              D̄(θ) = E_t[ KL(π_old(·|s_t) || π_θ(·|s_t)) ]                 [eq. 12; eq. 14, constraint]
* (E3) the trust-region problem   maximise L(θ) subject to D̄(θ) <= δ                        [eq. 14]
* (E4) local models at θ_old, Δ = θ - θ_old:  L ≈ gᵀΔ with g = ∇L(θ_old) (the vanilla policy
       gradient E[∇log π Â]);  D̄ ≈ ½ ΔᵀFΔ with F = ∇²D̄(θ_old), the Fisher information matrix  [App. C]
* (E5) Fisher-vector product  F v = ∇_θ( (∇_θ D̄)ᵀ v ), plus damping λ v; F is never formed  [App. C.1]
* (E6) search direction      s ≈ F⁻¹ g, by conjugate gradient (``lucidrl.linalg``)            [App. C]
* (E7) step length           β = sqrt(2δ / sᵀF s), so that ½ (βs)ᵀF (βs) = δ                 [App. C]
* (E8) backtracking line search  θ = θ_old + α^j β s for j = 0, 1, ...: the first j with
       D̄(θ) <= δ and L(θ) > L(θ_old) wins; if none does, θ stays θ_old                      [App. C]
* (E9) critic regression     minimise E_t[(V_φ(s_t) - R_t)²] by minibatch Adam, separately   [Spinning Up; SB3]
* natural policy gradient (Kakade 2002), ``variant="npg"``: θ = θ_old + β s, (E6)-(E7) without (E8)
* advantages Â_t and targets R_t: GAE (Schulman et al. 2016), in ``lucidrl.advantages``

Deviations from the paper, each with a switch (all as in SB3-contrib's TRPO): advantage
normalisation (``normalize_advantage``), CG damping (``cg_damping``, from modular_rl),
sub-sampling the batch of the policy step (``sub_sampling_factor``, Schulman's thesis pp.
40-42), orthogonal initialisation (``ortho_init``) and Adam eps 1e-5 (``adam_eps``) for the
critic. The paper's experiments estimated Q_old by Monte Carlo rollouts ("single path" and
"vine"), with no learned critic; GAE and a critic fitted by Adam (E9) are Spinning Up's and SB3's.

This file is the reference: g by autograd, F v by double backward (E5), the critic by
``torch.optim.Adam``. ``lucidrl.fast`` computes the same ``local_models`` and ``fit_critic`` with
the passes written out (F v as Jᵀ M J, the paper's App. C.1 form) for MLPs on the CPU, tested
equal (``tests/math/test_backends.py``; ``docs/algorithms/trpo.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lucidrl.advantages import explained_variance, gae, normalize
from lucidrl.agent import Algorithm, set_learning_rate
from lucidrl.config import (
    FloatOrSchedule,
    OnPolicyConfig,
    check,
    check_ints,
    check_log_std_init,
    check_network,
    check_schedule,
    value_at,
)
from lucidrl.errors import ConfigError
from lucidrl.linalg import conjugate_gradient, flat_grad, get_flat_params, set_flat_params
from lucidrl.networks import ActivationName, ActorCritic
from lucidrl.rollout import minibatches, rollout_policy


@dataclass
class TRPOConfig(OnPolicyConfig):
    """TRPO's hyperparameters. Defaults: SB3-contrib's TRPO (which follow Spinning Up and modular_rl)."""

    n_envs: int = 1
    """Number of parallel envs N."""
    n_steps: int = 2048
    """Steps T collected per env before each update; a batch is n_steps * n_envs."""
    batch_size: int = 128
    """Minibatch size of the critic's Adam steps (the policy step always uses the whole batch)."""
    n_critic_updates: int = 10
    """Passes over the batch that fit the critic after each policy step (E9)."""
    learning_rate: FloatOrSchedule = 1e-3
    """The critic's Adam step size (the policy's step is set by target_kl); a float or a schedule, e.g. lin_1e-3."""
    gamma: float = 0.99
    """Discount γ."""
    gae_lambda: float = 0.95
    """GAE λ: 0 is the one-step TD error, 1 the Monte Carlo return minus V."""
    target_kl: float = 0.01
    """δ, the trust region's radius: the bound on the mean KL(π_old || π_θ) of one policy step (E3)."""
    cg_max_steps: int = 15
    """Conjugate-gradient steps (Fisher-vector products) for the search direction s ≈ F⁻¹g (E6)."""
    cg_damping: float = 0.1
    """Deviation: λ added to the Fisher matrix, F + λI, which keeps CG stable when F is nearly singular (E5)."""
    line_search_shrinking_factor: float = 0.8
    """α of the backtracking line search: candidates θ_old + α^j β s, j = 0, 1, ... (E8)."""
    line_search_max_iter: int = 10
    """Candidates the line search tries before keeping θ_old (E8)."""
    variant: Literal["trpo", "npg"] = "trpo"
    """'trpo': the line search of (E8); 'npg': natural policy gradient, take the full step β s unchecked."""
    normalize_advantage: bool = True
    """Deviation: normalise Â to zero mean, unit std over the batch of the policy step."""
    sub_sampling_factor: int = 1
    """Deviation: the policy step uses every k-th sample of the batch (1: all); the critic always sees all."""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the actor and of the critic (always two separate networks)."""
    activation: ActivationName = "tanh"
    """Hidden activation: tanh, relu or elu."""
    ortho_init: bool = True
    """Deviation: orthogonal initialisation (hidden sqrt 2, policy 0.01, value 1); False: PyTorch's default."""
    log_std_init: float = 0.0
    """Box actions only: initial log σ of the Gaussian policy, one free parameter per action dimension (SB3's name
    and default; σ = 1)."""
    adam_eps: float = 1e-5
    """Deviation: the critic's Adam ε (PyTorch's default is 1e-8; SB3 uses 1e-5)."""

    def __post_init__(self):
        super().__post_init__()
        check_ints(self, ("n_envs", "n_steps", "batch_size", "n_critic_updates", "cg_max_steps",
                          "line_search_max_iter", "sub_sampling_factor"))
        check(self.batch_size <= self.rollout_size,
              f"batch_size={self.batch_size} is larger than a rollout (n_steps * n_envs = {self.rollout_size}); "
              f"lower batch_size or raise n_steps or n_envs")
        check(not self.normalize_advantage or self.rollout_size // self.sub_sampling_factor >= 2,
              f"the policy step sees {self.rollout_size} // sub_sampling_factor = "
              f"{self.rollout_size // self.sub_sampling_factor} samples; normalize_advantage needs at least 2")
        check_schedule(self.learning_rate, "learning_rate", 0.0, 1.0)
        check(0.0 < self.gamma <= 1.0, f"gamma must lie in (0, 1], got {self.gamma}")
        check(0.0 <= self.gae_lambda <= 1.0, f"gae_lambda must lie in [0, 1], got {self.gae_lambda}")
        check(self.target_kl > 0, f"target_kl (δ) must be > 0, got {self.target_kl}")
        check(self.cg_damping >= 0, f"cg_damping must be >= 0, got {self.cg_damping}")
        check(0.0 < self.line_search_shrinking_factor < 1.0,
              f"line_search_shrinking_factor must lie in (0, 1), got {self.line_search_shrinking_factor}")
        check(self.variant in ("trpo", "npg"), f"variant must be 'trpo' or 'npg', got {self.variant!r}")
        self.net_arch = check_network(self.net_arch, self.activation)
        check_log_std_init(self.log_std_init)
        check(self.adam_eps > 0, f"adam_eps must be > 0, got {self.adam_eps}")

    @property
    def rollout_size(self) -> int:
        """Env steps per update: n_steps * n_envs."""
        return self.n_steps * self.n_envs


# --------------------------------------------------------------------------- pure functions
def surrogate_advantage(logprob: torch.Tensor, logprob_old: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """(E1) L(θ) = mean of π_θ/π_old · Â, to *maximise*; its gradient at θ_old is the vanilla policy gradient."""
    return ((logprob - logprob_old).exp() * advantages).mean()


def mean_kl(head, params_old: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """(E2) D̄ = mean over states of KL(π_old(·|s) || π_θ(·|s)), exact, from the action head."""
    return head.kl(params_old, params).mean()


def fisher_vector_product(kl: torch.Tensor, params: Sequence[torch.Tensor],
                          damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """(E5) v -> (F + λI) v, where F = ∇²D̄ at θ_old, by differentiating (∇D̄)ᵀv: one double backward per call.

    ``kl`` is D̄ (E2) with its graph to ``params``. Only the head's ``kl`` enters, so any action
    head (categorical, Gaussian) gets its Fisher matrix: at θ_old the KL's Hessian *is* F.
    The graph holds the weights it saw: use the function before the parameters move.
    """
    grad_kl = flat_grad(kl, params, create_graph=True)  # ∇D̄, kept differentiable

    def fvp(v: torch.Tensor) -> torch.Tensor:
        # (E5) F v by one double backward; Deviation: + λ v (damping, modular_rl / SB3)
        return flat_grad(grad_kl.dot(v), params, retain_graph=True).add_(v, alpha=damping)

    return fvp


def backtracking_line_search(evaluate: Callable[[torch.Tensor], tuple[float, float]], theta_old: torch.Tensor,
                             full_step: torch.Tensor, surrogate_old: float, target_kl: float,
                             shrinking_factor: float, max_iter: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """(E8) Try θ_old + α^j · full_step for j = 0..max_iter-1; ``evaluate(θ) -> (L(θ), D̄(θ))``.

    Returns the first candidate whose KL is within δ *and* whose surrogate beats L(θ_old), or
    θ_old itself when none does, with ``accepted``, ``backtracks`` (rejected candidates),
    ``kl`` and ``surrogate`` of the returned θ.
    """
    for j in range(max_iter):
        theta = theta_old + shrinking_factor ** j * full_step
        surrogate, kl = (float(v) for v in evaluate(theta))
        if kl <= target_kl and surrogate > surrogate_old:  # (E8) both checks on the real, non-linear functions
            return theta, {"accepted": True, "backtracks": j, "kl": kl, "surrogate": surrogate}
    return theta_old, {"accepted": False, "backtracks": max_iter, "kl": 0.0, "surrogate": surrogate_old}






# --------------------------------------------------------------------------- one update
def local_models(agent: ActorCritic, batch: dict[str, torch.Tensor], advantages: torch.Tensor, cg_damping: float):
    """The trust-region problem at θ_old (E1, E2, E4, E5): ``(L(θ_old), g, fvp, evaluate, set_theta)``.

    g = ∇L(θ_old) as a flat vector over ``agent.actor_parameters()``; ``fvp(v)`` = (F + λI) v;
    ``evaluate(θ) -> (L(θ), D̄(θ))`` moves the actor to the flat θ and measures the real functions;
    ``set_theta(θ)`` moves it without measuring.
    """
    head, params = agent.head, agent.actor_parameters()
    obs, actions, logprob_old, params_old = batch["obs"], batch["actions"], batch["logprob_old"], batch["params_old"]
    dist_params = agent.policy_params(obs)
    surrogate = surrogate_advantage(head.log_prob(dist_params, actions), logprob_old, advantages)  # (E1)
    g = flat_grad(surrogate, params, retain_graph=True)  # (E4) g = ∇L(θ_old), the vanilla policy gradient
    kl = mean_kl(head, params_old, dist_params)  # (E2), 0 at θ_old; its curvature is F
    fvp = fisher_vector_product(kl, params, cg_damping)  # (E5)

    @torch.no_grad()
    def evaluate(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        set_flat_params(params, theta)
        new_params = agent.policy_params(obs)
        return surrogate_advantage(head.log_prob(new_params, actions), logprob_old, advantages), \
            mean_kl(head, params_old, new_params)  # (E1), (E2)

    return float(surrogate.detach()), g.detach(), fvp, evaluate, lambda theta: set_flat_params(params, theta)


def trpo_policy_step(agent: ActorCritic, batch: dict[str, torch.Tensor], cfg: TRPOConfig,
                     models: Callable = local_models) -> dict[str, float]:
    """One trust-region step of the actor (E1-E8), in place; returns its diagnostics.

    ``batch``: ``obs``, ``actions``, ``logprob_old``, ``params_old`` (π_old's distribution parameters:
    logits, or concat(μ, log σ) for Box actions) and ``advantages``. ``models``: ``local_models`` or its
    fast twin (``lucidrl.backends``).
    """
    adv = normalize(batch["advantages"]) if cfg.normalize_advantage else batch["advantages"]  # Deviation
    theta_old = get_flat_params(agent.actor_parameters())
    surrogate_old, g, fvp, evaluate, set_theta = models(agent, batch, adv, cfg.cg_damping)  # (E1, E2, E4, E5)
    s, cg = conjugate_gradient(fvp, g, cfg.cg_max_steps)  # (E6) s ≈ (F + λI)⁻¹ g
    sFs = cg["xAx"]  # sᵀ(F + λI)s, from CG's own residual (no extra product)
    if math.isfinite(sFs) and sFs > 0:
        full_step = math.sqrt(2.0 * cfg.target_kl / sFs) * s  # (E7) ½ (βs)ᵀ(F + λI)(βs) = δ, so ½ (βs)ᵀF(βs) <= δ
    else:  # g = 0 (e.g. all advantages equal): nothing to improve
        full_step = torch.zeros_like(s)
    if cfg.variant == "trpo":
        new_theta, ls = backtracking_line_search(evaluate, theta_old, full_step, surrogate_old, cfg.target_kl,
                                                 cfg.line_search_shrinking_factor, cfg.line_search_max_iter)  # (E8)
    else:  # natural policy gradient: the full step, unchecked
        new_theta = theta_old + full_step
        new_surrogate, new_kl = evaluate(new_theta)
        ls = {"accepted": True, "backtracks": 0, "kl": float(new_kl), "surrogate": float(new_surrogate)}
    set_theta(new_theta)  # the accepted step, or θ_old restored
    with torch.no_grad():
        entropy = float(agent.head.entropy(agent.policy_params(batch["obs"])).mean())
    return {"diag/grad_norm": float(g.norm()), "diag/cg_residual": cg["residual_norm"], "train/cg_steps": cg["steps"],
            "loss/policy": -ls["surrogate"], "diag/kl": ls["kl"],
            "diag/surrogate_improvement": ls["surrogate"] - surrogate_old,
            "diag/expected_improvement": float(g.dot(new_theta - theta_old)),  # the linear model's prediction (E4)
            "diag/step_norm": float((new_theta - theta_old).norm()), "diag/entropy": entropy, "loss/entropy": -entropy,
            "train/backtracks": ls["backtracks"], "train/line_search_success": float(ls["accepted"])}


def fit_critic(agent: ActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               cfg: TRPOConfig, generator: torch.Generator | None = None) -> dict[str, float]:
    """(E9) ``n_critic_updates`` passes of minibatch Adam on the mean squared error of V against R; π is untouched."""
    losses = []
    data = {"obs": batch["obs"], "returns": batch["returns"]}
    for _, mb in minibatches(data, cfg.batch_size, cfg.n_critic_updates, generator):
        loss = F.mse_loss(agent.value(mb["obs"]), mb["returns"])  # (E9)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return {"loss/value": float(torch.stack(losses).mean())}


# --------------------------------------------------------------------------- the algorithm
class TRPO(Algorithm):
    """TRPO (or the natural policy gradient) on a Gymnasium env. ``TRPO("CartPole-v1").learn(100_000)``.

    Hyperparameters are the fields of :class:`TRPOConfig`, passed as keyword arguments; with an
    env id that has a preset, the preset is the starting point (``preset=False`` to skip it).
    """

    name = "trpo"
    config_class = TRPOConfig

    def __init__(self, policy: Any = None, env: Any = None, **kwargs: Any):
        if kwargs.pop("shared_trunk", False):
            raise ConfigError(
                "TRPO keeps the actor and the critic as separate networks (shared_trunk is not offered): its trust "
                "region bounds how far the *policy* moves in one step, and with a shared trunk the critic's regression "
                "would move the policy outside that bound. Drop shared_trunk.")
        super().__init__(policy, env, **kwargs)
        cfg: TRPOConfig = self.config
        # Deviations: orthogonal initialisation (ortho_init) and the critic's Adam ε (adam_eps), as SB3. Actor and
        # critic are separate networks, with separate CNNs for images: the critic's regression never moves π
        self.agent = ActorCritic(self.observation_space, self.action_space, cfg.net_arch, cfg.activation,
                                 shared=False, ortho_init=cfg.ortho_init, algo="TRPO", log_std_init=cfg.log_std_init,
                                 share_encoder=False).to(self.device)
        self.critic_optimizer = torch.optim.Adam(self.agent.critic_parameters(), lr=value_at(cfg.learning_rate, 1.0),
                                                 eps=cfg.adam_eps, fused=True)  # fused: torch's one-kernel Adam
        # this file's functions, or lucidrl.fast's twins (the same numbers)
        self._local_models = self._select_backend("trpo_local_models", local_models)
        self._fit_critic = self._select_backend("trpo_fit_critic", fit_critic)
        self._rollout_policy = self._select_backend("rollout", rollout_policy)  # how π acts while collecting
        self._gae = self._select_backend("gae", gae)  # lucidrl.advantages.gae, or its NumPy twin

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic_optimizer": self.critic_optimizer}

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int | None = None,
              tb_log_name: str | None = None, reset_num_timesteps: bool = True, progress_bar: bool = False,
              checkpoint_freq: int | None = None) -> TRPO:
        """Train for ``total_timesteps`` env steps (counted over all envs).

        SB3's arguments (docs/sb3.md): callback is a function ``callback(model, metrics)`` called after each
        update (False stops), a ``lucidrl.callbacks.BaseCallback`` or a list; log_interval: updates between
        summary lines. checkpoint_freq: save ``run_dir/checkpoints/step_N`` every this many steps.
        """
        cfg: TRPOConfig = self.config
        with self._learning(total_timesteps, reset_num_timesteps, progress_bar, callback, log_interval,
                            tb_log_name) as (logger, target):
            collector = self._rollout_collector()
            while self.num_timesteps < target:
                # 1. collect T steps in each of the N envs with the current policy π_old
                rollout = self._rollout(collector.collect, self.agent, cfg.n_steps)
                steps_before = self.num_timesteps
                self.num_timesteps += cfg.n_steps * self.n_envs
                lr = value_at(cfg.learning_rate, self._progress_remaining(target))  # (after the rollout, as SB3)
                set_learning_rate(self.critic_optimizer, lr)

                # 2. advantages Â_t (GAE) and λ-return targets R_t, from the critic before it is refitted
                advantages, returns = self._gae(rollout.rewards, rollout.values_old, rollout.next_values,
                                                rollout.terminated, rollout.truncated, cfg.gamma, cfg.gae_lambda)
                batch = rollout.flat(advantages=advantages, returns=returns)

                # 3. one trust-region step of the policy (E1-E8)
                k = cfg.sub_sampling_factor  # Deviation: sub-sampling, every k-th sample (k = 1: all)
                policy_batch = batch if k == 1 else {key: v[::k] for key, v in batch.items()}
                metrics = trpo_policy_step(self.agent, policy_batch, cfg, self._local_models)

                # 4. fit the critic to the λ-returns (E9), never through the policy's step
                metrics.update(self._fit_critic(self.agent, self.critic_optimizer, batch, cfg, self.generator))
                self.n_updates += 1

                # 5. log
                metrics["diag/explained_variance"] = explained_variance(batch["values_old"], batch["returns"])
                metrics.update({"train/learning_rate": lr, "train/n_updates": self.n_updates})
                if self._after_update(logger, rollout, metrics, steps_before, checkpoint_freq):
                    break
        return self
