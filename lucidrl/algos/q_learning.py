"""Tabular Q-learning (Watkins 1989; Sutton & Barto 2018, section 6.5), with SARSA, Expected SARSA and Double
Q-learning.

A table Q[s, a] holds one number per (state, action). The agent acts ε-greedily on it and,
after every transition (s, a, r, s'), moves the one entry Q[s, a] a step α towards a
one-step target. The members of the family differ only in that target:

* (E1) ε-greedy policy  a = argmax_a Q[s, a] with probability 1-ε, else uniform        [S&B 2018, sec. 2.2, 5.4]
* (E2) Q-learning       Q[s,a] ← Q[s,a] + α (r + γ max_a' Q[s',a'] - Q[s,a])      [S&B 2018, eq. 6.8; Watkins 1989]
* (E3) SARSA            Q[s,a] ← Q[s,a] + α (r + γ Q[s',a'] - Q[s,a]),  a' ~ ε-greedy(s')  [S&B 2018, eq. 6.7]
* (E4) Expected SARSA   Q[s,a] ← Q[s,a] + α (r + γ Σ_a' π(a'|s') Q[s',a'] - Q[s,a])     [S&B 2018, eq. 6.9]
* (E5) episode ends     the bootstrap term γ(...) is 0 only when s' is *terminal*; after a
                        time-limit truncation it is kept, computed at the true final s'    [Pardo et al. 2018]
* (E6) value iteration's fixed point: Q* = T Q*, T Q(s,a) = E[r + γ max_a' Q(s',a')]      [S&B 2018, eq. 3.20]
* (E7) Double Q-learning Q_A[s,a] ← Q_A[s,a] + α (r + γ Q_B[s', argmax_a' Q_A[s',a']] - Q_A[s,a]), or A and B
                        swapped, by a fair coin; ε-greedy on Q_A + Q_B   [van Hasselt 2010; S&B 2018, sec. 6.7]

(E2) samples the Bellman *optimality* operator (E6): its target uses the max, whatever the behaviour
policy did, so Q-learning is off-policy and converges to Q* (Watkins & Dayan 1992) when every pair is
visited infinitely often and Σα = ∞, Σα² < ∞. (E3) and (E4) sample the Bellman *expectation* operator
of the ε-greedy policy being followed (on-policy): they learn Q^π of it, which becomes Q* only as ε → 0.

**Why Double Q-learning (E7).** E[max_a' Q̂(s',a')] ≥ max_a' E[Q̂(s',a')] biases (E2)'s target upwards; (E7)
picks a' with one table and values it with the other, whose noise took no part in the pick (experiment 16).

**Why no target network.** A table update changes one entry (DQN's step moves every state's output), a
sampled step of the γ-contraction T that converges to Q* without freezing anything (Watkins & Dayan 1992).

Observations: a ``Discrete`` space indexes the table (FrozenLake, Taxi, CliffWalking); a ``Box`` one is
discretised (D1): each dimension clipped to [low_i, high_i], cut into ``n_bins[i]`` equal bins, flattened
to one index; unbounded dimensions need ``bounds`` (CartPole-v1's: ``discretise.KNOWN_BOUNDS``).

Several envs at once (``n_envs`` > 1): all N targets of a step come from the table as it was before
the step; k transitions that hit one entry move it once, by α times their *mean* TD error, a step
towards the mean target that never overshoots. With n_envs=1 this is exactly (E2)-(E4), (E7).

Deviations from Watkins / Sutton & Barto, each a switch: decaying ε (``exploration_*``; the book uses
a constant ε), a learning-rate schedule (``lin_x``), an initial value Q_0 (``initial_q``; optimistic
values explore), random tie-breaking among equal greedy actions in training (``predict``: the first).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from lucidrl.agent import Algorithm
from lucidrl.config import FloatOrSchedule, RunConfig, check, check_schedule, value_at
from lucidrl.envs import space_error
from lucidrl.envs.discretise import Discretiser
from lucidrl.errors import ConfigError
from lucidrl.rollout import VectorStepper

UpdateName = Literal["q_learning", "sarsa", "expected_sarsa", "double_q_learning"]

MAX_TABLE_ENTRIES = 50_000_000  # 400 MB of float64: a larger table is almost surely a mistake


@dataclass
class QLearningConfig(RunConfig):
    """Tabular Q-learning's hyperparameters. Defaults: Sutton & Barto's (α 0.1, ε-greedy), ε decaying as SB3's DQN."""

    n_envs: int = 1
    """Number of parallel envs N; their transitions update one shared table (duplicate entries averaged)."""
    update: UpdateName = "q_learning"
    """Target of the update: q_learning (max, E2, off-policy), sarsa (sampled next action, E3), expected_sarsa
    (E4) or double_q_learning (two tables, E7)."""
    learning_rate: FloatOrSchedule = 0.1
    """Step size α (Sutton & Barto's examples: 0.1); a float or a schedule, e.g. lin_0.1."""
    gamma: float = 0.99
    """Discount γ."""
    exploration_initial_eps: float = 1.0
    """ε at the start of training (SB3's name)."""
    exploration_final_eps: float = 0.05
    """ε after exploration_fraction of training, kept until the end (SB3's name)."""
    exploration_fraction: float = 0.5
    """Share of the training budget over which ε decays from initial to final (SB3's name)."""
    exploration_decay: Literal["linear", "exponential"] = "linear"
    """Shape of the ε decay: linear (as SB3) or exponential (the same factor every step; needs final eps > 0)."""
    initial_q: float = 0.0
    """Deviation: Q_0, the value every table entry starts at (> 0 on negative-reward tasks explores optimistically)."""
    n_bins: list[int] = field(default_factory=lambda: [10])
    """Box observations only (D1): bins per dimension; one number is used for every dimension, 1 ignores a dimension."""
    bounds: list[float] = field(default_factory=list)
    """Box observations only (D1): low_1 high_1 ... low_d high_d; values outside are clipped. Empty: KNOWN_BOUNDS
    (CartPole) or the space's bounds; the bounds used are recorded here."""

    def __post_init__(self):
        super().__post_init__()
        check(isinstance(self.n_envs, int) and self.n_envs >= 1, f"n_envs must be an integer >= 1, got {self.n_envs!r}")
        check(self.update in ("q_learning", "sarsa", "expected_sarsa", "double_q_learning"),
              "update must be 'q_learning', 'sarsa', 'expected_sarsa' or 'double_q_learning', "
              f"got {self.update!r}")
        check_schedule(self.learning_rate, "learning_rate", 0.0, 1.0, low_open=False)
        check(0.0 <= self.gamma <= 1.0, f"gamma must lie in [0, 1], got {self.gamma}")
        for name in ("exploration_initial_eps", "exploration_final_eps"):
            v = getattr(self, name)
            check(isinstance(v, (int, float)) and 0.0 <= v <= 1.0, f"{name} must lie in [0, 1], got {v!r}")
        check(0.0 < self.exploration_fraction <= 1.0,
              f"exploration_fraction must lie in (0, 1], got {self.exploration_fraction}")
        check(self.exploration_decay in ("linear", "exponential"),
              f"exploration_decay must be 'linear' or 'exponential', got {self.exploration_decay!r}")
        check(self.exploration_decay == "linear"
              or (self.exploration_final_eps > 0 and self.exploration_initial_eps > 0),
              "exploration_decay='exponential' needs exploration_initial_eps and exploration_final_eps > 0 "
              "(a geometric decay never reaches 0); use exploration_decay='linear' to reach 0")
        check(math.isfinite(self.initial_q), f"initial_q must be a finite number, got {self.initial_q}")
        check(isinstance(self.n_bins, (list, tuple)) and len(self.n_bins) >= 1
              and all(isinstance(b, int) and b >= 1 for b in self.n_bins),
              f"n_bins must be a list of integers >= 1 such as [10] or [1, 1, 6, 12], got {self.n_bins!r}")
        self.n_bins = list(self.n_bins)
        check(isinstance(self.bounds, (list, tuple)) and len(self.bounds) % 2 == 0
              and all(isinstance(b, (int, float)) and math.isfinite(b) for b in self.bounds)
              and all(lo <= hi for lo, hi in zip(self.bounds[::2], self.bounds[1::2])),  # (=: a constant dimension)
              f"bounds must be finite pairs low_1 high_1 ... low_d high_d with low <= high, got {self.bounds!r}")
        self.bounds = [float(b) for b in self.bounds]
        check(self.device == "cpu", f"the Q-table lives on the CPU; device must be 'cpu', got {self.device!r}")


# --------------------------------------------------------------------------- pure functions
def exploration_rate(progress_remaining: float, initial: float, final: float, fraction: float,
                     decay: str = "linear") -> float:
    """(E1) ε at a point of training: ``initial`` at progress 1, ``final`` once ``fraction`` of training is done."""
    done = min(1.0, (1.0 - progress_remaining) / fraction)
    if decay == "linear":
        return initial + done * (final - initial)
    return initial * (final / initial) ** done  # geometric: ε_t = ε_0 (ε_end/ε_0)^(t / T_decay)


def epsilon_greedy(q: np.ndarray, states: np.ndarray, eps: float, rng: np.random.Generator,
                   q2: np.ndarray | None = None) -> np.ndarray:
    """(E1) one action per state: greedy (ties broken at random) with probability 1-ε, else uniform. With ``q2``
    (Double Q-learning, E7) greedy on q + q2."""
    qs = q[states] if q2 is None else q[states] + q2[states]
    noise = rng.random(qs.shape)
    greedy = np.where(qs == qs.max(axis=1, keepdims=True), noise, -1.0).argmax(axis=1)  # random tie-break
    explore = rng.random(len(states)) < eps
    return np.where(explore, rng.integers(0, q.shape[1], len(states)), greedy)


def bootstrap_values(q: np.ndarray, next_states: np.ndarray, update: str, eps: float,
                     next_actions: np.ndarray | None = None) -> np.ndarray:
    """The value of s' in the target: max (E2), Q[s', a'] (E3) or the ε-greedy expectation (E4)."""
    qn = q[next_states]
    if update == "q_learning":
        return qn.max(axis=1)  # (E2) Bellman optimality: max_a' Q(s', a')
    if update == "sarsa":
        return qn[np.arange(len(next_states)), next_actions]  # (E3) the action the policy takes next
    if update == "expected_sarsa":  # (E4) Bellman expectation under ε-greedy: (1-ε) max + ε mean (ties share a value)
        return (1.0 - eps) * qn.max(axis=1) + eps * qn.mean(axis=1)
    raise ValueError(f"bootstrap_values: no one-table target for update={update!r}")


def double_q_values(q_pick: np.ndarray, q_value: np.ndarray, next_states: np.ndarray) -> np.ndarray:
    """(E7) the value of s' in Double Q-learning's target: Q_value[s', argmax_a' Q_pick[s', a']] (the updated table
    picks a', the other one values it; ties: the first maximum)."""
    picked = q_pick[next_states].argmax(axis=1)
    return q_value[next_states, picked]


def td_targets(rewards: np.ndarray, terminated: np.ndarray, next_values: np.ndarray, gamma: float) -> np.ndarray:
    """(E5) r + γ V(s'), with V(s') = 0 only where s' is terminal; truncated transitions keep the bootstrap."""
    return rewards + gamma * np.where(terminated, 0.0, next_values)


def apply_td_update(q: np.ndarray, states: np.ndarray, actions: np.ndarray, targets: np.ndarray,
                    alpha: float) -> np.ndarray:
    """Q[s,a] += α (target - Q[s,a]) in place, one entry per transition (E2-E4); returns the TD errors.

    Transitions that share an entry move it once, by α times their mean TD error (all errors are
    computed from the table before this call)."""
    td = targets - q[states, actions]
    if len(states) == 1:
        q[states[0], actions[0]] += alpha * td[0]
        return td
    entries, which = np.unique(states * q.shape[1] + actions, return_inverse=True)
    mean_td = np.bincount(which, weights=td) / np.bincount(which)  # per entry: Σ td / count
    q.reshape(-1)[entries] += alpha * mean_td  # (a view: q itself changes)
    return td


# --------------------------------------------------------------------------- the table as a module
class QTable(nn.Module):
    """The Q-table as a float64 buffer [n_states, n_actions], so checkpoints save it like any network; with
    ``double=True`` a second one, ``q2`` (Double Q-learning's Q_B; ``q`` is Q_A)."""

    q: torch.Tensor  # the buffers
    q2: torch.Tensor

    def __init__(self, n_states: int, n_actions: int, initial_q: float = 0.0, double: bool = False):
        super().__init__()
        for name in ("q", "q2") if double else ("q",):
            self.register_buffer(name, torch.full((n_states, n_actions), float(initial_q), dtype=torch.float64))

    def numpy(self) -> np.ndarray:
        """A NumPy view sharing the buffer's memory: updates through it change the module."""
        return self.q.numpy()

    def numpy2(self) -> np.ndarray | None:
        """Q_B's NumPy view (Double Q-learning), else None."""
        return self.q2.numpy() if hasattr(self, "q2") else None


# --------------------------------------------------------------------------- the algorithm
class QLearning(Algorithm):
    """Tabular Q-learning (or SARSA / Expected SARSA). ``QLearning("FrozenLake-v1").learn(300_000)``.

    Hyperparameters are the fields of :class:`QLearningConfig`; with an env id that has a preset,
    the preset is the starting point (``preset=False`` to skip it).
    """

    name = "qlearning"
    config_class = QLearningConfig
    sb3_callbacks = False  # function callbacks only (no SB3 counterpart whose hooks to follow)
    state_attributes = ("exploration_rate",)

    def __init__(self, policy: Any = None, env: Any = None, **kwargs: Any):
        super().__init__(policy, env, **kwargs)
        cfg: QLearningConfig = self.config
        obs_space, act_space = self.observation_space, self.action_space
        if self.structured_observation_space is not None:  # a Dict/Tuple, which the table cannot index (below)
            obs_space = self.structured_observation_space
        if not isinstance(act_space, gym.spaces.Discrete):
            raise space_error("QLearning", "needs a Discrete action space (one table column per action)", act_space,
                              "action")
        self.discretiser: Discretiser | None = None
        if isinstance(obs_space, gym.spaces.Discrete):
            n_states = int(obs_space.n)  # row s - start for observation s: the stepper and predict shift it
            if cfg.bounds or cfg.n_bins != [10]:
                self.notes.append("qlearning: n_bins and bounds are ignored: the observations are Discrete already")
        elif isinstance(obs_space, gym.spaces.Box):
            self.discretiser = Discretiser.for_space(obs_space, cfg.n_bins, cfg.bounds, self.env_id)
            cfg.n_bins, cfg.bounds = self.discretiser.settings()  # recorded: a saved model rebuilds the same cells
            n_states = self.discretiser.n_states
        else:
            raise space_error("QLearning", "needs a Discrete observation space, or a Box one to discretise", obs_space,
                              "observation", "Map each observation to one Discrete index with a gymnasium.Observation"
                              "Wrapper (e.g. np.ravel_multi_index), or to a bounded Box (FlattenObservation).")
        if n_states * int(act_space.n) > MAX_TABLE_ENTRIES:
            raise ConfigError(f"the Q-table would have {n_states} states x {act_space.n} actions "
                              f"(> {MAX_TABLE_ENTRIES:,} entries); use fewer n_bins")
        self.agent = QTable(n_states, int(act_space.n), cfg.initial_q, double=cfg.update == "double_q_learning")
        self._td_update = self._select_backend("qlearning", apply_td_update)  # NumPy is its reference already
        self.exploration_rate = cfg.exploration_initial_eps

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}  # the table is updated by (E2)-(E4) directly, not by an optimiser

    def states(self, obs: np.ndarray) -> np.ndarray:
        """Table row of each observation in a batch (Discrete: the 0-based index, ``VectorStepper`` and ``predict``
        subtract the space's start; Box: the discretised cell)."""
        if self.discretiser is None:
            return np.asarray(obs, np.int64).reshape(-1)
        return self.discretiser(np.asarray(obs).reshape(len(obs), -1))

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        q, q2 = self.agent.numpy(), self.agent.numpy2()
        s = self.states(obs.cpu().numpy())
        greedy = (q[s] if q2 is None else q[s] + q2[s]).argmax(axis=1)  # the first maximum: repeatable
        if deterministic:
            return torch.as_tensor(greedy)
        explore = torch.rand(len(s), generator=self.generator).numpy() < self.exploration_rate
        random_a = torch.randint(q.shape[1], (len(s),), generator=self.generator).numpy()
        return torch.as_tensor(np.where(explore, random_a, greedy))

    def learn(self, total_timesteps: int, progress_bar: bool = False, reset_num_timesteps: bool = True,
              checkpoint_freq: int | None = None, callback: Callable[[QLearning, dict], bool | None] | None = None,
              log_interval: int = 1000) -> QLearning:
        """Train for ``total_timesteps`` env steps (counted over all envs).

        log_interval: env steps between rows of metrics (and callback calls).
        checkpoint_freq: save ``run_dir/checkpoints/step_N`` every this many steps (needs ``run_dir``).
        callback: called as ``callback(model, metrics)`` after each logged chunk; returning False stops.
        """
        cfg: QLearningConfig = self.config
        with self._learning(total_timesteps, reset_num_timesteps, progress_bar, callback) as (logger, target):
            # NumPy RNG drawn from the model's saved torch generator: a loaded model continues the stream
            rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=self.generator)))
            q, q2 = self.agent.numpy(), self.agent.numpy2()  # q2: Q_B of Double Q-learning (E7), else None
            if (q2 is not None) != (cfg.update == "double_q_learning"):  # model.update = ... after it was built
                raise ConfigError(f"update={cfg.update!r} needs a new model: this one's Q-tables were made for another")
            stepper = getattr(self, "_stepper", None)
            if stepper is None or stepper.env is not self.env:
                stepper = self._stepper = VectorStepper(self._require_env(), seed=self._env_seed())
            ep_returns: list[float] = []
            ep_lengths: list[int] = []
            td_abs, n_updates, chunk_start = 0.0, 0, self.num_timesteps
            s = self.states(stepper.obs)
            a = epsilon_greedy(q, s, self.exploration_rate, rng, q2)
            while self.num_timesteps < target:
                progress = self._progress_remaining(target)
                eps = exploration_rate(progress, cfg.exploration_initial_eps, cfg.exploration_final_eps,
                                       cfg.exploration_fraction, cfg.exploration_decay)
                alpha = value_at(cfg.learning_rate, progress)
                self.exploration_rate = eps

                # 1. act in every env; the true next state s' of each transition (rollout.VectorStepper)
                tr = stepper.step(a)
                s_next = self.states(tr.next_obs())

                # 2. the next action: ε-greedy at s' (SARSA's a' of (E3), and the action taken next)
                a_next = epsilon_greedy(q, s_next, eps, rng, q2)

                # 3. one TD update per transition (E2)-(E5); NEXT_STEP reset rows are none
                if tr.valid.any():
                    sides: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = [(q, None, tr.valid)]  # (E2)-(E4)
                    if q2 is not None:  # (E7) a fair coin per transition: update Q_A (a' picked by Q_A, valued by Q_B)
                        coin = rng.random(len(s)) < 0.5  # or Q_B (the roles swapped)
                        sides = [(q, q2, tr.valid & coin), (q2, q, tr.valid & ~coin)]
                    sides = [(table, other, np.flatnonzero(rows)) for table, other, rows in sides if rows.any()]
                    # every target from the tables as they were before this step; (E5) masks terminal s' only
                    targets = [td_targets(tr.reward[v], tr.terminated[v],
                               bootstrap_values(q, s_next[v], cfg.update, eps, a_next[v]) if other is None
                               else double_q_values(table, other, s_next[v]), cfg.gamma) for table, other, v in sides]
                    for (table, _, v), y in zip(sides, targets):
                        td = self._td_update(table, s[v], a[v], y, alpha)
                        td_abs += float(np.abs(td).sum())
                        n_updates += len(td)

                # 4. move on to s'; SAME_STEP: a new episode's action is chosen at its first state
                ep_returns += tr.episode_returns
                ep_lengths += tr.episode_lengths
                if tr.final_obs:
                    s_next = self.states(tr.obs)
                    ended = np.isin(np.arange(len(s_next)), list(tr.final_obs))
                    a_next = np.where(ended, epsilon_greedy(q, s_next, eps, rng, q2), a_next)
                s, a = s_next, a_next
                self.num_timesteps += self.n_envs

                # 5. log a row every log_interval steps
                if self.num_timesteps - chunk_start >= log_interval or self.num_timesteps >= target:
                    self.n_updates += n_updates
                    metrics = {"train/learning_rate": alpha, "train/exploration_rate": eps,
                               "diag/mean_abs_td_error": td_abs / max(n_updates, 1), "train/n_updates": self.n_updates}
                    stop = self._after_update(logger, SimpleNamespace(episode_returns=ep_returns,
                                                                      episode_lengths=ep_lengths),
                                              metrics, chunk_start, checkpoint_freq)
                    ep_returns, ep_lengths = [], []
                    td_abs, n_updates, chunk_start = 0.0, 0, self.num_timesteps
                    if stop:
                        break
        return self
