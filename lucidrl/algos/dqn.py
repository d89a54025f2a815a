"""Deep Q-Network (DQN): Q-learning with a neural network, experience replay and a target network
(Mnih et al. 2013, "Playing Atari with Deep Reinforcement Learning", arXiv:1312.5602; Mnih et al.
2015, "Human-level control through deep reinforcement learning", Nature 518, Methods).

DQN learns the optimal action values Q*(s, a) from the Bellman *optimality* equation
Q*(s, a) = E[r + γ max_a' Q*(s', a')]: it regresses Q_θ(s, a) on a bootstrapped target built with
a slowly moving copy θ⁻ of the network, on minibatches drawn uniformly from a replay memory of
past transitions, while acting ε-greedily. Because the target takes a max (it is the value of the
greedy policy, not of the behaviour policy), the data may come from any policy: DQN is off-policy.

Equations (2015 paper, Methods and Algorithm 1; equation numbers of the Nature paper):

* (E1) ε-greedy behaviour  a_t = random action with probability ε, else argmax_a Q_θ(s_t, a)      [Alg. 1]
  ε decays linearly from ``exploration_initial_eps`` to ``exploration_final_eps`` over the first
  ``exploration_fraction`` of training                                                      [Methods]
* (E2) target              y = r + γ (1 - terminated) max_a' Q_θ⁻(s', a')                       [eq. 2; Alg. 1]
  masked on ``terminated`` only: a time-limit truncation bootstraps from the true final s'.
* (E3) loss                L(θ) = E_{(s,a,r,s')~U(D)} [ℓ(y - Q_θ(s, a))],  ℓ = Huber              [eq. 2; Methods]
  (the paper clips the error term to [-1, 1], which is the gradient of the Huber loss with δ = 1)
* (E4) target network      θ⁻ ← θ every C steps (hard);  θ⁻ ← τ θ + (1 - τ) θ⁻ (soft, Polyak;
  Lillicrap et al. 2016, DDPG);  τ = 1 is the hard copy                                        [Methods]
* (E5) Double DQN target   y = r + γ (1 - terminated) Q_θ⁻(s', argmax_a' Q_θ(s', a'))
  (van Hasselt, Guez, Silver 2016, "Deep Reinforcement Learning with Double Q-learning", eq. 4)

Defaults are Stable-Baselines3's DQN, and ``train_freq``, ``gradient_steps``,
``target_update_interval`` and ``learning_starts`` have SB3's semantics, so rl-baselines3-zoo
presets carry over: every ``train_freq`` calls of ``env.step`` (each call is ``n_envs`` steps),
if more than ``learning_starts`` env steps were taken, ``gradient_steps`` gradient steps
(-1: as many as env steps just collected); the target network is updated every
``target_update_interval // n_envs`` calls of ``env.step``, during collection. Before
``learning_starts`` the actions are uniformly random. ``learn`` runs whole rounds, as SB3 does,
so the last one may overshoot ``total_timesteps`` (the zoo's CartPole budget of 50,000 steps is
50,176 in both libraries: 196 rounds of 256).

Deviations from the paper, each with a switch: Adam instead of RMSProp (``learning_rate``, as
SB3), gradient-norm clipping (``max_grad_norm``, SB3's 10), Huber loss instead of error clipping
(same gradient; always on), soft target updates (``tau``), Double DQN (``double_q``, off).
Frame stacking, reward clipping and the Atari preprocessing of the paper are env wrappers
(``lucidrl.envs.atari``), not part of this file; image observations go through the paper's CNN
(``lucidrl.networks.NatureCNN``), and the replay memory keeps them as uint8 (also the pixels of a Dict
observation's image entries: ``lucidrl.replay.PackedRows``).

This file is the reference: every gradient step samples its minibatch, builds its targets and
steps ``torch.optim.Adam`` through autograd, as Algorithm 1 reads. ``lucidrl.fast`` computes the
same round of steps with the gradient written out for ReLU MLPs on the CPU (using one fact: with
SB3's semantics the target network changes only while collecting, so a round's targets can be
computed in one batched pass), tested equal (``tests/math/test_backends.py``; ``docs/algorithms/dqn.md``).
The replay buffer goes into checkpoints only with ``save_replay_buffer=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lucidrl.agent import Algorithm, set_learning_rate
from lucidrl.config import FloatOrSchedule, RunConfig, check, check_ints, check_network, check_schedule, value_at
from lucidrl.errors import ConfigError
from lucidrl.networks import ActivationName, QNetwork
from lucidrl.replay import ReplayBuffer
from lucidrl.rollout import VectorStepper


@dataclass
class DQNConfig(RunConfig):
    """DQN's hyperparameters. Defaults: Stable-Baselines3's DQN (itself the Nature paper's, scaled down)."""

    n_envs: int = 1
    """Number of parallel envs N; each call of env.step adds N transitions."""
    learning_rate: FloatOrSchedule = 1e-4
    """Adam step size (SB3: 1e-4); a float or a schedule, e.g. lin_1e-4."""
    buffer_size: int = 1_000_000
    """Replay memory size |D| in transitions over all envs (paper and SB3: 1M)."""
    save_replay_buffer: bool = False
    """Save the replay memory in each checkpoint (``replay.safetensors``): a resumed run samples as it would have."""
    learning_starts: int = 100
    """Env steps of uniformly random actions before the first gradient step (SB3: 100; paper: 50k)."""
    batch_size: int = 32
    """Minibatch size of each gradient step (paper and SB3: 32)."""
    tau: float = 1.0
    """Polyak coefficient τ of the target update (E4): 1.0 is the paper's hard copy (SB3: 1.0)."""
    gamma: float = 0.99
    """Discount γ (paper and SB3: 0.99)."""
    train_freq: int = 4
    """Train every this many calls of env.step, as SB3 (paper and SB3: 4)."""
    gradient_steps: int = 1
    """Gradient steps per training round (SB3: 1); -1: as many as env steps collected in the round."""
    target_update_interval: int = 10_000
    """C: update the target network every C env steps (SB3: 10000, counted in calls of env.step times n_envs)."""
    exploration_fraction: float = 0.1
    """Fraction of training over which ε decays linearly (SB3: 0.1; paper: the first 1M frames)."""
    exploration_initial_eps: float = 1.0
    """ε at the start of training (paper and SB3: 1.0)."""
    exploration_final_eps: float = 0.05
    """ε after the decay (SB3: 0.05; paper: 0.1)."""
    max_grad_norm: float | None = 10.0
    """Deviation: clip the global gradient norm to this (SB3: 10; None: off)."""
    double_q: bool = False
    """Double DQN target (E5): the online net picks argmax a', the target net evaluates it (van Hasselt 2016)."""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the Q-network (SB3's DQN MlpPolicy: 64, 64)."""
    activation: ActivationName = "relu"
    """Hidden activation: relu (SB3 and the paper), tanh or elu."""

    def __post_init__(self):
        super().__post_init__()
        check_ints(self, ("n_envs", "buffer_size", "batch_size", "train_freq", "target_update_interval"))
        check_ints(self, ("learning_starts",), minimum=0)
        check(isinstance(self.gradient_steps, int) and (self.gradient_steps >= 0 or self.gradient_steps == -1),
              f"gradient_steps must be an integer >= 0, or -1 (as many as env steps), got {self.gradient_steps!r}")
        check_schedule(self.learning_rate, "learning_rate", 0.0, 1.0, low_open=False)
        check(0.0 <= self.tau <= 1.0, f"tau must lie in [0, 1] (1: hard target update), got {self.tau}")
        check(0.0 < self.gamma <= 1.0, f"gamma must lie in (0, 1], got {self.gamma}")
        check(0.0 <= self.exploration_fraction <= 1.0,
              f"exploration_fraction must lie in [0, 1], got {self.exploration_fraction}")
        for name in ("exploration_initial_eps", "exploration_final_eps"):
            v = getattr(self, name)
            check(0.0 <= v <= 1.0, f"{name} must lie in [0, 1], got {v}")
        check(self.max_grad_norm is None or self.max_grad_norm > 0,
              f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        self.net_arch = check_network(self.net_arch, self.activation)


# --------------------------------------------------------------------------- pure functions
def exploration_rate(progress_remaining: float, initial_eps: float, final_eps: float, fraction: float) -> float:
    """(E1) ε now: linear from ``initial_eps`` (progress 1) to ``final_eps`` once a ``fraction`` of training is done."""
    done = 1.0 - progress_remaining
    if fraction <= 0.0 or done >= fraction:
        return final_eps
    return initial_eps + done * (final_eps - initial_eps) / fraction


def td_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q_target: torch.Tensor, gamma: float,
              next_q_online: torch.Tensor | None = None) -> torch.Tensor:
    """The bootstrapped target y of each transition, no gradient.

    ``next_q_target``: Q_θ⁻(s', ·) [..., n_actions] at the true next observation s'. Without
    ``next_q_online``: (E2) y = r + γ (1 - terminated) max_a' Q_θ⁻(s', a'). With it (Double DQN):
    (E5) y = r + γ (1 - terminated) Q_θ⁻(s', argmax_a' Q_θ(s', a')). Only ``terminated`` masks
    the bootstrap; a truncated transition bootstraps like any other.
    """
    if next_q_online is None:
        next_v = next_q_target.max(-1).values  # (E2) max_a' Q_θ⁻(s', a')
    else:
        best = next_q_online.argmax(-1, keepdim=True)  # (E5) the online net picks a'
        next_v = next_q_target.gather(-1, best).squeeze(-1)  # (E5) ... the target net evaluates it
    return rewards + gamma * (1.0 - terminated.to(rewards.dtype)) * next_v  # (E2) mask on terminated only


def dqn_loss(q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E3) Huber loss between Q_θ(s, a) and y (SB3's smooth_l1, δ = 1); returns ``(loss, Q_θ(s, a))``."""
    q = q_values.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return F.smooth_l1_loss(q, targets), q


@torch.no_grad()
def soft_update(target: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
    """(E4) θ⁻ ← τ θ + (1 - τ) θ⁻ in place; τ = 1 copies θ exactly, τ = 0 leaves θ⁻ as it is."""
    if tau == 1.0:
        torch._foreach_copy_(target, online)
    elif tau > 0.0:
        torch._foreach_lerp_(target, online, tau)


# --------------------------------------------------------------------------- one training round
def dqn_train_round(q_net: QNetwork, q_target: QNetwork, optimizer: torch.optim.Optimizer, buffer: ReplayBuffer,
                    n_steps: int, cfg: DQNConfig) -> dict[str, float]:
    """``n_steps`` gradient steps (E2, E3, E5) on minibatches drawn uniformly from ``buffer`` (SB3's ``DQN.train``)."""
    stats, params = [], list(q_net.parameters())  # per step: the loss, the mean Q, the gradient's norm
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else float("inf")
    for _ in range(n_steps):
        batch = buffer.sample(cfg.batch_size)  # a uniform minibatch of the replay memory
        with torch.no_grad():  # the target y, held fixed: no gradient flows into it
            next_q_online = q_net(batch["next_obs"]) if cfg.double_q else None  # (E5) Double DQN picks a' with θ
            y = td_target(batch["rewards"], batch["terminated"], q_target(batch["next_obs"]), cfg.gamma,
                          next_q_online)  # (E2)
        loss, q = dqn_loss(q_net(batch["obs"]), batch["actions"], y)  # (E3)
        optimizer.zero_grad()
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(params, max_norm, foreach=True)  # Deviation: clipping (SB3: 10)
        optimizer.step()
        stats.append(torch.stack([loss.detach(), q.detach().mean(), grad_norm]))
    loss_m, q_m, gn_m = torch.stack(stats).mean(0).tolist()
    return {"loss/value": loss_m, "diag/q_mean": q_m, "diag/grad_norm": gn_m}


def greedy_policy(q_net: QNetwork) -> Callable[[np.ndarray], np.ndarray]:
    """obs -> argmax_a Q_θ(s, a), for acting; made at the start of each collection chunk (θ is fixed during it)."""
    device = next(q_net.parameters()).device

    @torch.no_grad()
    def greedy(obs: np.ndarray) -> np.ndarray:
        return q_net(torch.as_tensor(obs, device=device)).argmax(-1).cpu().numpy()

    return greedy


# --------------------------------------------------------------------------- the algorithm
class DQN(Algorithm):
    """Deep Q-Network on a Gymnasium env with Discrete actions. ``DQN("CartPole-v1").learn(50_000)``.

    Hyperparameters are the fields of :class:`DQNConfig`, passed as keyword arguments; with an
    env id that has a preset, the preset is the starting point (``preset=False`` to skip it).
    """

    name = "dqn"
    config_class = DQNConfig
    state_attributes = ("n_calls", "exploration_rate")
    log_columns = ("loss/value", "diag/q_mean", "diag/grad_norm", "train/learning_rate")  # after learning_starts

    def __init__(self, policy: Any = None, env: Any = None, **kwargs: Any):
        super().__init__(policy, env, **kwargs)
        cfg: DQNConfig = self.config
        self.q_net = QNetwork(self.observation_space, self.action_space, cfg.net_arch, cfg.activation).to(self.device)
        self.q_net_target = QNetwork(self.observation_space, self.action_space, cfg.net_arch,
                                     cfg.activation).to(self.device)
        self.q_net_target.load_state_dict(self.q_net.state_dict())
        for p in self.q_net_target.parameters():  # the target net is never trained
            p.requires_grad_(False)
        # fused=True: torch's one-kernel Adam (the same update), several times cheaper a step on small networks
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=value_at(cfg.learning_rate, 1.0), fused=True)
        # this file's functions, or lucidrl.fast's twins (the same numbers)
        self._train_round = self._select_backend("dqn_train_round", dqn_train_round)
        self._greedy = self._select_backend("dqn_greedy", greedy_policy)
        self.n_calls = 0  # calls of env.step, over all learn() calls (SB3's _n_calls): times target updates
        self.exploration_rate = cfg.exploration_initial_eps
        self.replay: ReplayBuffer | None = None
        self._stepper: VectorStepper | None = None

    def _modules(self):
        return {"q_net": self.q_net, "q_net_target": self.q_net_target}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Greedy actions, or (E1) ε-greedy ones at the current exploration rate (as SB3's predict)."""
        greedy = self.q_net(obs).argmax(-1)
        if deterministic or self.exploration_rate <= 0:
            return greedy
        n = obs.shape[0]
        explore = torch.rand(n, generator=self.generator, device=self.device) < self.exploration_rate
        random = torch.randint(0, self.q_net.n_actions, (n,), generator=self.generator, device=self.device)
        return torch.where(explore, random, greedy)

    # ------------------------------------------------------------------ collection
    @torch.no_grad()
    def _collect(self, n_calls: int, target: int) -> tuple[list[float], list[int]]:
        """``n_calls`` calls of env.step with (E1) ε-greedy actions (uniform before ``learning_starts``).

        Stores the real transitions in the replay buffer (``rollout.VectorStepper``: the true next
        observation at episode ends, ``terminated`` (not done), nothing for NEXT_STEP reset steps).
        Returns the finished episodes' raw returns and lengths.
        """
        cfg, N, stepper, replay = self.config, self.n_envs, self._stepper, self.replay
        assert stepper is not None and replay is not None  # (made by learn)
        greedy = self._greedy(self.q_net)  # argmax_a Q_θ(s, a), θ fixed during the chunk
        # the chunk's random numbers, drawn at once from the model's generator
        coins = torch.rand((n_calls, N), generator=self.generator).numpy()
        random_actions = torch.randint(0, self.q_net.n_actions, (n_calls, N), generator=self.generator).numpy()
        # (E1) ε before each call, from the env steps taken before it (the first call keeps the current ε)
        eps = [self.exploration_rate] + [exploration_rate(
            max(0.0, 1.0 - (self.num_timesteps + N * t) / target), cfg.exploration_initial_eps,
            cfg.exploration_final_eps, cfg.exploration_fraction) for t in range(1, n_calls + 1)]
        explore = coins < np.asarray(eps[:n_calls], dtype=np.float32)[:, None]
        # uniform actions: during the warm-up (as SB3), and where every env explores (no greedy pass needed)
        uniform = explore.all(1) | (self.num_timesteps + N * np.arange(n_calls) < cfg.learning_starts)
        obs = stepper.obs
        shape = (n_calls, N)
        buf = {"obs": np.empty((*shape, *obs.shape[1:]), obs.dtype), "actions": np.empty(shape, np.int64),
               "rewards": np.empty(shape, np.float32), "next_obs": np.empty((*shape, *obs.shape[1:]), obs.dtype),
               "terminated": np.empty(shape, bool)}
        valid = np.empty(shape, bool)
        ep_returns, ep_lengths = list[float](), list[int]()
        for t, uniform_t in enumerate(uniform.tolist()):
            actions = random_actions[t] if uniform_t else np.where(explore[t], random_actions[t], greedy(obs))
            tr = stepper.step(actions)
            buf["obs"][t], buf["actions"][t], buf["rewards"][t] = obs, actions, tr.reward
            buf["next_obs"][t], buf["terminated"][t], valid[t] = tr.next_obs(), tr.terminated, tr.valid
            ep_returns += tr.episode_returns
            ep_lengths += tr.episode_lengths
            obs = tr.obs
        self.num_timesteps += N * n_calls
        self.n_calls += n_calls
        self.exploration_rate = eps[n_calls]
        keep = valid.reshape(-1)
        replay.add(*(torch.from_numpy(buf[k].reshape(n_calls * N, *buf[k].shape[2:])[keep]) for k in
                          ("obs", "actions", "rewards", "next_obs", "terminated")))
        return ep_returns, ep_lengths

    # ------------------------------------------------------------------ learn
    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int | None = None,
              tb_log_name: str | None = None, reset_num_timesteps: bool = True, progress_bar: bool = False,
              checkpoint_freq: int | None = None) -> DQN:
        """Train for ``total_timesteps`` env steps (counted over all envs, NEXT_STEP reset steps included).

        SB3's arguments (docs/sb3.md): callback is a function ``callback(model, metrics)`` called after each
        update (False stops), a ``lucidrl.callbacks.BaseCallback`` or a list; log_interval: updates between
        summary lines. checkpoint_freq: save ``run_dir/checkpoints/step_N`` every this many steps.
        """
        cfg: DQNConfig = self.config
        with self._learning(total_timesteps, reset_num_timesteps, progress_bar, callback, log_interval,
                            tb_log_name) as (logger, target):
            if cfg.learning_starts >= target:
                raise ConfigError(
                    f"learning_starts={cfg.learning_starts} is at or beyond the training budget ({target} env steps): "
                    f"DQN would only act randomly and never take a gradient step. Train for more than "
                    f"{cfg.learning_starts} steps or lower learning_starts.")
            if self.replay is None:  # checks that it fits in memory before allocating
                self.replay = ReplayBuffer(cfg.buffer_size, self.observation_space, self.action_space, self.device,
                                           self.generator)
            if reset_num_timesteps or self._stepper is None or self._stepper.env is not self.env:
                self._stepper = VectorStepper(self._require_env(), seed=self._env_seed())
            update_every = max(cfg.target_update_interval // self.n_envs, 1)  # in calls of env.step, as SB3
            while self.num_timesteps < target:
                # 1. act ε-greedily for train_freq calls of env.step, storing transitions in the replay memory
                steps_before, calls_before = self.num_timesteps, self.n_calls
                ep_returns, ep_lengths = self._rollout(self._collect, cfg.train_freq, target)  # whole rounds, as SB3

                # 2. (E4) target updates due during this collection; the online net was fixed meanwhile,
                #    so k Polyak updates equal one with 1 - (1 - τ)^k (k hard copies equal one copy)
                k = self.n_calls // update_every - calls_before // update_every
                if k:
                    soft_update(list(self.q_net_target.parameters()), list(self.q_net.parameters()),
                                1.0 - (1.0 - cfg.tau) ** k)

                # 3. a round of gradient steps (E2, E3), once past learning_starts
                metrics: dict[str, float] = {"train/exploration_rate": self.exploration_rate}
                n_grad = cfg.gradient_steps if cfg.gradient_steps >= 0 else (self.num_timesteps - steps_before)
                if self.num_timesteps > cfg.learning_starts and n_grad > 0:
                    lr = value_at(cfg.learning_rate, self._progress_remaining(target))
                    set_learning_rate(self.optimizer, lr)
                    metrics.update(self._train_round(self.q_net, self.q_net_target, self.optimizer, self.replay,
                                                     n_grad, cfg))
                    self.n_updates += n_grad
                    metrics["train/learning_rate"] = lr
                metrics["train/n_updates"] = self.n_updates

                # 4. log
                rollout = SimpleNamespace(episode_returns=ep_returns, episode_lengths=ep_lengths)
                if self._after_update(logger, rollout, metrics, steps_before, checkpoint_freq):
                    break
        return self
