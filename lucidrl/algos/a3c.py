"""Asynchronous Advantage Actor-Critic (A3C): Mnih, Badia, Mirza, Graves, Lillicrap, Harley, Silver,
Kavukcuoglu 2016, "Asynchronous Methods for Deep Reinforcement Learning", arXiv:1602.01783, Algorithm S3.

K actor-learners run at the same time, each with its own copy of the env and of the network. Each
one repeats: copy the shared parameters θ' ← θ, play t_max steps with θ', turn them into n-step
returns, compute the actor-critic gradient at θ', and hand it to the shared parameters, which take an
RMSProp step with it at once, whatever the other learners did meanwhile. A gradient computed at θ'
is therefore applied to a θ that other learners may already have moved: it is *stale*. A2C
(``lucidrl.algos.a2c``) is the same algorithm made synchronous; the loss is A2C's, imported from there.

Here each actor-learner is a Ray actor (``A3CWorker``; the Ray plumbing is
``lucidrl.distributed.a3c_workers``) and the parameter holder is the driver: ``A3C.learn`` waits for
whichever worker finishes first, applies its gradient with its optimiser (one RMSprop whose
statistics g all gradients update: the paper's "shared RMSProp", without the paper's lock-free
threads), sends that worker the new θ, and logs the staleness of each applied gradient.

Equations (untagged in the paper; E1-E5 as in lucidrl.algos.a2c, E6 the asynchronous step):

* (E1) n-step return   R_t = Σ_{i<k} γ^i r_{t+i} + γ^k V(s_{t+k}; θ'),  k = T - t ≤ t_max   [§4; Alg. S3]
* (E2) advantage       A_t = R_t - V(s_t; θ')                                             [§4]
* (E3) actor gradient  dθ += ∇θ' log π(a_t|s_t; θ') A_t + β ∇θ' H(π(·|s_t; θ'))             [§4; Alg. S3]
* (E4) critic gradient dθ_v += ∂(R_t - V(s_t; θ'_v))² / ∂θ'_v                              [Alg. S3]
* (E5) RMSProp         g ← α g + (1 - α) dθ²;  θ ← θ - η dθ / √(g + ε)   [suppl., Optimization Details]
* (E6) asynchronous update of θ using dθ: dθ was computed at θ' = θ_{v}, is applied to θ_{v+s};
  s, the number of updates applied between the worker's copy and this one, is ``diag/staleness`` [Alg. S3]

The loss whose gradient is (E3) + (E4) is ``lucidrl.algos.a2c.a2c_loss`` (means over the segment,
as A2C and SB3). Defaults are A2CConfig's (SB3's A2C), so that against A2C only the asynchrony
differs; deviations from the paper, each with its switch: gradient-norm clipping (``max_grad_norm``,
applied by the parameter holder), ε outside the root (``rms_prop_eps``), orthogonal initialisation
(``ortho_init``), separate actor and critic networks (``shared_trunk``), Adam (``use_rms_prop``).
The run is not reproducible bit for bit: the order in which gradients arrive depends on timing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from lucidrl.advantages import explained_variance, gae
from lucidrl.agent import Algorithm, set_learning_rate
from lucidrl.algos.a2c import a2c_loss
from lucidrl.config import (
    FloatOrSchedule,
    RunConfig,
    check,
    check_ints,
    check_log_std_init,
    check_network,
    check_schedule,
    value_at,
)
from lucidrl.envs import Vectorization, make_vec_env
from lucidrl.networks import ActivationName, ActorCritic
from lucidrl.rollout import RolloutCollector


@dataclass
class A3CConfig(RunConfig):
    """A3C's hyperparameters. Defaults: A2CConfig's (SB3's A2C; the paper's t_max = 5, γ, α), plus the workers."""

    n_workers: int = 2
    """Actor-learners K, each a Ray actor of one CPU with its own env copies (the paper: 16 threads)."""
    n_envs: int = 1
    """Env copies per worker, stepped in lockstep (the paper: 1); worker k's copy i is seeded seed + k * n_envs + i."""
    n_steps: int = 5
    """Steps T of each copy per gradient (the paper's t_max = 5); a gradient comes from n_steps * n_envs steps."""
    learning_rate: FloatOrSchedule = 7e-4
    """Step size η of the parameter holder (SB3's A2C: 7e-4; the paper samples it per run); a float or lin_<x>."""
    gamma: float = 0.99
    """Discount γ (paper: 0.99)."""
    gae_lambda: float = 1.0
    """GAE λ: 1.0 gives the paper's n-step returns (E1); below 1, GAE (SB3's generalisation)."""
    ent_coef: float = 0.0
    """β, weight of the entropy bonus (E3) (SB3: 0.0; the paper: 0.01 on Atari)."""
    vf_coef: float = 0.5
    """Weight of the value loss (E4) in the single loss (SB3: 0.5)."""
    max_grad_norm: float | None = 0.5
    """Deviation: the parameter holder clips each gradient's global norm to this (SB3: 0.5; None: off)."""
    use_rms_prop: bool = True
    """RMSprop as in the paper (E5), one for all workers (shared statistics); False: Adam with ε 1e-5."""
    rms_prop_alpha: float = 0.99
    """RMSprop's decay α of the squared-gradient average (paper and SB3: 0.99)."""
    rms_prop_eps: float = 1e-5
    """Deviation: RMSprop's ε, added outside the square root (PyTorch's RMSprop, as SB3); the paper adds it inside."""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the actor and of the critic (SB3's MlpPolicy: 64, 64)."""
    activation: ActivationName = "tanh"
    """Hidden activation: tanh, relu or elu."""
    shared_trunk: bool = False
    """One trunk for actor and critic with two linear outputs (the paper's design) instead of two MLPs (SB3's)."""
    ortho_init: bool = True
    """Deviation: orthogonal initialisation (hidden sqrt 2, policy 0.01, value 1), as SB3; False: PyTorch's default."""
    log_std_init: float = 0.0
    """Box actions only: initial log σ of the Gaussian policy (σ = 1)."""
    log_interval: int = 10
    """Applied gradients per row of metrics (losses averaged, staleness mean and max over them); callbacks and
    checkpoints are checked once a row."""
    address: str | None = None
    """Ray cluster to run the workers on (auto, HOST:6379 or ray://HOST:10001); None: a local Ray instance (or the
    one already running)."""

    def __post_init__(self):
        super().__post_init__()
        check_ints(self, ("n_workers", "n_envs", "n_steps", "log_interval"))
        check_schedule(self.learning_rate, "learning_rate", 0.0, 1.0)
        check(0.0 < self.gamma <= 1.0, f"gamma must lie in (0, 1], got {self.gamma}")
        check(0.0 <= self.gae_lambda <= 1.0, f"gae_lambda must lie in [0, 1], got {self.gae_lambda}")
        check(self.ent_coef >= 0, f"ent_coef must be >= 0, got {self.ent_coef}")
        check(self.vf_coef >= 0, f"vf_coef must be >= 0, got {self.vf_coef}")
        check(self.max_grad_norm is None or self.max_grad_norm > 0,
              f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        check(0.0 <= self.rms_prop_alpha < 1.0, f"rms_prop_alpha must lie in [0, 1), got {self.rms_prop_alpha}")
        check(self.rms_prop_eps > 0, f"rms_prop_eps must be > 0, got {self.rms_prop_eps}")
        check(self.address is None or (isinstance(self.address, str) and self.address.strip() != ""),
              "address must be a Ray cluster address such as 'auto' or 'ray://host:10001', or None, "
              f"got {self.address!r}")
        self.net_arch = check_network(self.net_arch, self.activation)
        check_log_std_init(self.log_std_init)

    @property
    def segment_size(self) -> int:
        """Env steps behind one gradient: n_steps * n_envs."""
        return self.n_steps * self.n_envs


# --------------------------------------------------------------------------- pure functions
def a3c_gradients(agent: ActorCritic, batch: dict[str, torch.Tensor], cfg) -> tuple[torch.Tensor, dict[str, float]]:
    """(E3, E4) The gradient dθ of A2C's loss on one worker's segment, at the worker's copy θ': one flat tensor."""
    head = agent.head
    dist_params, values = agent(batch["obs"])
    logprob = head.log_prob(dist_params, batch["actions"])
    entropy = head.entropy(dist_params)
    loss, policy_loss, value_loss = a2c_loss(logprob, values, batch["advantages"], batch["returns"], cfg.vf_coef,
                                             entropy, cfg.ent_coef)
    params = list(agent.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])
    ent = float(entropy.detach().mean())
    return flat, {"loss/policy": float(policy_loss.detach()), "loss/value": float(value_loss.detach()),
                  "loss/entropy": -ent, "diag/entropy": ent}


def apply_gradient(agent: ActorCritic, optimizer: torch.optim.Optimizer, grad: torch.Tensor,
                   max_grad_norm: float | None) -> float:
    """(E5, E6) θ ← θ - step(dθ): a gradient computed at a worker's θ' is applied to the current θ. Returns its norm."""
    params = list(agent.parameters())
    offset = 0
    for p in params:
        p.grad = grad[offset:offset + p.numel()].view_as(p).to(p.device, p.dtype).clone()
        offset += p.numel()
    # Deviation: global gradient clipping (max_grad_norm=None: only measure the norm)
    norm = nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm is not None else float("inf"), foreach=True)
    optimizer.step()  # (E5) the one RMSprop (or Adam) of the parameter holder
    return float(norm)


# --------------------------------------------------------------------------- one actor-learner
class A3CWorker:
    """One actor-learner of Algorithm S3: its env copies and its network copy θ'. Runs as a Ray actor."""

    def __init__(self, env_source: Any, n_envs: int, seed: int, vectorization: Vectorization, agent: ActorCritic,
                 cfg: SimpleNamespace, gradients: Callable = a3c_gradients):
        torch.set_num_threads(1)  # one CPU per worker
        torch.manual_seed(seed)
        self.agent, self.cfg, self.gradients = agent, cfg, gradients
        env = make_vec_env(env_source, n_envs, seed=seed, vectorization=vectorization)
        self.collector = RolloutCollector(env, torch.device("cpu"), seed=seed,
                                          generator=torch.Generator().manual_seed(seed))

    def run(self, theta: np.ndarray, version: int) -> dict:
        """Copy θ' ← θ (update ``version`` of θ), play t_max steps, return dθ computed at θ'."""
        cfg = self.cfg
        nn.utils.vector_to_parameters(torch.from_numpy(theta), self.agent.parameters())  # θ' ← θ
        rollout = self.collector.collect(self.agent, cfg.n_steps)  # t_max steps with π(·|·; θ')
        advantages, returns = gae(rollout.rewards, rollout.values_old, rollout.next_values, rollout.terminated,
                                  rollout.truncated, cfg.gamma, cfg.gae_lambda)  # (E1, E2)
        batch = rollout.flat(advantages=advantages, returns=returns)
        grad, metrics = self.gradients(self.agent, batch, cfg)  # (E3, E4)
        return {"grad": grad.numpy(), "version": version, "steps": rollout.rewards.numel(), "metrics": metrics,
                "values": batch["values_old"].numpy(), "returns": batch["returns"].numpy(),
                "episodes": (rollout.episode_returns, rollout.episode_lengths)}


# --------------------------------------------------------------------------- the algorithm
class A3C(Algorithm):
    """Asynchronous advantage actor-critic: ``A3C("CartPole-v1", n_workers=2).learn(200_000)``. Needs Ray.

    Hyperparameters are the fields of :class:`A3CConfig`, passed as keyword arguments; with an
    env id that has a preset, the preset is the starting point (``preset=False`` to skip it).
    """

    name = "a3c"
    config_class = A3CConfig
    sb3_callbacks = False  # function callbacks only (no SB3 counterpart whose hooks to follow)

    def __init__(self, policy: Any = None, env: Any = None, **kwargs: Any):
        super().__init__(policy, env, **kwargs)
        cfg: A3CConfig = self.config
        self.agent = ActorCritic(self.observation_space, self.action_space, cfg.net_arch, cfg.activation,
                                 shared=cfg.shared_trunk, ortho_init=cfg.ortho_init, algo="A3C",
                                 log_std_init=cfg.log_std_init).to(self.device)  # θ, held by the driver
        lr = value_at(cfg.learning_rate, 1.0)
        self.optimizer: torch.optim.Optimizer
        if cfg.use_rms_prop:  # (E5) shared RMSProp: one optimiser state, updated by every worker's gradient
            self.optimizer = torch.optim.RMSprop(self.agent.parameters(), lr=lr, alpha=cfg.rms_prop_alpha,
                                                 eps=cfg.rms_prop_eps)
        else:
            self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=lr, eps=1e-5)
        self._gradients = self._select_backend("a3c", a3c_gradients)  # the reference: A3C has no fast twin

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def _theta(self) -> np.ndarray:
        return nn.utils.parameters_to_vector(self.agent.parameters()).detach().cpu().numpy()

    def _start_workers(self):
        """The K actor-learners on Ray; worker k's copy i is seeded seed + k * n_envs + i."""
        from lucidrl.distributed.a3c_workers import ActorLearners, check_env_source

        cfg: A3CConfig = self.config
        check_env_source(self._env_source)
        loss_cfg = SimpleNamespace(n_steps=cfg.n_steps, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
                                   vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef)
        agent, seed = copy.deepcopy(self.agent).cpu(), self._env_seed()
        args = [(self._env_source, cfg.n_envs, seed + k * cfg.n_envs, self.vectorization, agent, loss_cfg,
                 self._gradients) for k in range(cfg.n_workers)]
        return ActorLearners(A3CWorker, args, address=cfg.address, what="A3C")

    def learn(self, total_timesteps: int, progress_bar: bool = False, reset_num_timesteps: bool = True,
              checkpoint_freq: int | None = None, callback: Callable[[A3C, dict], bool | None] | None = None) -> A3C:
        """Train for ``total_timesteps`` env steps (counted over all workers' envs, as their gradients are applied).

        checkpoint_freq: save ``run_dir/checkpoints/step_N`` every this many steps (needs ``run_dir``).
        callback: called as ``callback(model, metrics)`` once per logged row; returning False stops.
        """
        from lucidrl.distributed import require_ray

        require_ray("A3C (its actor-learners are Ray actors)")
        cfg: A3CConfig = self.config
        with self._learning(total_timesteps, reset_num_timesteps, progress_bar, callback) as (logger, target), \
                self._start_workers() as workers:
            for k in range(cfg.n_workers):  # every worker starts from θ, update number n_updates
                workers.submit(k, self._theta(), self.n_updates)
            window, steps_before = [], self.num_timesteps
            while self.num_timesteps < target:
                lr = value_at(cfg.learning_rate, self._progress_remaining(target))
                set_learning_rate(self.optimizer, lr)

                # 1. the gradient of whichever worker finished first (E1-E4, computed at its θ')
                k, result = workers.next()
                staleness = self.n_updates - result["version"]  # updates applied to θ since k copied it

                # 2. (E5, E6) apply it to the current θ, then send k the new θ for its next segment
                grad_norm = apply_gradient(self.agent, self.optimizer, torch.tensor(result["grad"]),
                                           cfg.max_grad_norm)
                self.n_updates += 1
                self.num_timesteps += result["steps"]
                workers.submit(k, self._theta(), self.n_updates)
                window.append((result, staleness, grad_norm))

                # 3. log every log_interval gradients: means, and the staleness's mean and max
                if len(window) == cfg.log_interval or self.num_timesteps >= target:
                    metrics, episodes = self._summary(window, lr)
                    stop = self._after_update(logger, episodes, metrics, steps_before, checkpoint_freq)
                    window, steps_before = [], self.num_timesteps
                    if stop:
                        break
        return self

    def _summary(self, window: list, lr: float) -> tuple[dict[str, float], SimpleNamespace]:
        results = [r for r, _, _ in window]
        metrics = {key: float(np.mean([r["metrics"][key] for r in results])) for key in results[0]["metrics"]}
        stale = [s for _, s, _ in window]
        values, returns = (torch.from_numpy(np.concatenate([r[key] for r in results])) for key in ("values", "returns"))
        metrics.update({"diag/grad_norm": float(np.mean([g for _, _, g in window])),
                        "diag/explained_variance": explained_variance(values, returns),
                        "diag/staleness": float(np.mean(stale)), "diag/staleness_max": float(max(stale)),
                        "train/learning_rate": lr, "train/n_updates": self.n_updates})
        episodes = SimpleNamespace(episode_returns=[x for r in results for x in r["episodes"][0]],
                                   episode_lengths=[x for r in results for x in r["episodes"][1]])
        return metrics, episodes
