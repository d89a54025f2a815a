"""Experience from a vector env: ``VectorStepper.step`` (every collector) and ``RolloutCollector`` (on-policy).

Episode ends, written once. Row i of a vector-env step is the transition (s_t, a_t, r_t,
terminated_t, truncated_t, s_{t+1}) of copy i, in Gymnasium's words:

* ``terminated``: s_{t+1} is terminal, its value is 0: no bootstrap;
* ``truncated`` (a time limit): the episode was cut at a state that is *not* terminal:
  bootstrap from the value of the true final observation s_{t+1};
* ``terminated | truncated`` only ever means "cut the trace" (GAE, returns, episode statistics).

Gymnasium's vector envs reset finished copies automatically, in one of two modes, and
``VectorStepper.step`` turns either into the same transitions:

* SAME_STEP (lucidrl's ``SyncVectorEnv``/``AsyncVectorEnv``): the ending step returns the next
  episode's first observation; the true s_{t+1} is ``info["final_obs"]`` (``Transitions.final_obs``).
* NEXT_STEP (Gymnasium's native vector envs, e.g. CartPole's): the ending step returns the final
  observation itself, and the *following* step is a reset step (its action is ignored, reward 0).
  That row is no transition: ``valid`` is False there, and every algorithm leaves it out of every
  loss, statistic and replay memory.

The on-policy collector (PPO, A2C, TRPO, VPG), DQN's collector and tabular Q-learning all call
``VectorStepper.step``. Episode statistics (return, length) are counted there on the raw rewards;
an env that records its episodes with ``RecordEpisodeStatistics`` (lucidrl's Atari envs, which clip
the training rewards after it) reports its recorded raw score instead (``lucidrl.envs.episode_scores``).
A step that ends the *training* episode while the game plays on (a lost Atari life under
``terminal_on_life_loss=True``, ``info["life_lost"]``) is ``terminated`` for the algorithms but ends no
episode in the statistics: the game's score is counted when the game ends.

``VectorStepper`` is also the env boundary of Discrete spaces that do not start at 0
(``Discrete(3, start=1)``; ``lucidrl.envs.DiscreteOffsets``): the collectors and networks work with
0-based indices, the stepper adds the action space's start to the actions it sends and subtracts the
observation space's start from every observation it returns (``obs``, ``final_obs``, ``next_obs()``).
``Algorithm.predict`` does the same for the observations it is given and the actions it returns.

The on-policy rollout holds time-major tensors [T, N, ...]. ``next_values[t]`` is V(s_{t+1}) of
the true next state: the next row's value while an episode goes on (NEXT_STEP: also at its end,
where the returned observation is the final one), V(final_obs) after a SAME_STEP truncation.
Box actions go to ``env.step`` clipped to the action space's bounds, but the rollout stores (and
``log_prob`` scores) the unclipped sample, the one π actually drew. The noise of a rollout's
samples (Gumbel for a categorical policy, normal for a Gaussian one; ``head.noise``) is drawn at
its start from the model's generator, so a seed fixes every action whichever backend computes π.

Normalisation (``lucidrl.envs.normalize``, optional), as SB3's VecNormalize: each observation the
env returns first updates the statistics, then is normalised with them, and that is what the
policy sees and the rollout stores; final observations of SAME_STEP truncations are normalised
with the same statistics without updating them. Rewards are scaled for ``Rollout.rewards`` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from lucidrl.envs import (
    DiscreteOffsets,
    autoreset_mode,
    env_api_error,
    episode_scores,
    game_goes_on,
    reset_vector_env,
)
from lucidrl.envs.normalize import ObsNormalizer, RewardScaler
from lucidrl.errors import EnvError
from lucidrl.networks import ActorCritic

# --------------------------------------------------------------------------- one vector-env step
_NONE: tuple = ()  # what a step without an episode end returns (shared: nothing here is ever mutated)
_NO_FINALS: Mapping[int, np.ndarray] = MappingProxyType({})


@dataclass(slots=True)
class Transitions:
    """One vector-env step as N transitions (row i: copy i); see the module docstring."""

    obs: np.ndarray  # what each copy shows now: s_{t+1}, or the next episode's first observation (SAME_STEP)
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray  # False on NEXT_STEP reset rows: no transition
    final_obs: Mapping[int, np.ndarray]  # SAME_STEP: the true s_{t+1} of the copies whose episode ended
    episode_returns: list[float] | tuple  # of the episodes that ended on this step
    episode_lengths: list[int] | tuple
    episode_rows: list[int] | tuple  # their copies (a lost Atari life is terminated but ends no episode)

    def next_obs(self) -> np.ndarray:
        """The true s_{t+1} of every row (the final observation where an episode ended)."""
        if not self.final_obs:
            return self.obs
        out = self.obs.copy()
        for i, final in self.final_obs.items():
            out[i] = final
        return out


class VectorStepper:
    """Steps a vector env and turns each step into ``Transitions``, in either autoreset mode; counts episodes.

    Actions in and observations out are 0-based for Discrete spaces (the spaces' starts are applied here)."""

    def __init__(self, env: gym.vector.VectorEnv, seed: int | list[int] | None = None):
        self.env = env
        self.n_envs = env.num_envs
        self.next_step = autoreset_mode(env) == AutoresetMode.NEXT_STEP
        self.offsets = DiscreteOffsets(env.single_observation_space, env.single_action_space)
        self.obs = self.offsets.obs_in(reset_vector_env(env, seed)[0])
        self.n_calls = 0  # calls of env.step since the reset
        self._float_obs = isinstance(self.obs, np.ndarray) and self.obs.dtype.kind == "f"  # others cannot be NaN
        self._check_finite(self.obs, np.zeros(self.n_envs))
        self.prev_done = np.zeros(self.n_envs, dtype=bool)  # NEXT_STEP: the next step is a reset step there
        self.episode_return = np.zeros(self.n_envs, dtype=np.float64)
        self.episode_length = np.zeros(self.n_envs, dtype=np.int64)
        self._all_valid = np.ones(self.n_envs, dtype=bool)
        self.on_step: Callable | None = None  # SB3-style callbacks' per-step hook (lucidrl.callbacks.Hooks.step)

    def step(self, actions: np.ndarray) -> Transitions:
        offsets = self.offsets
        try:
            obs, reward, terminated, truncated, info = self.env.step(offsets.action_out(actions))
        except (ValueError, TypeError) as e:
            if (err := env_api_error(self.env, "step", e)) is None:
                raise
            raise err from e
        self.n_calls += 1
        # NaN would reach every weight within an update: one sum (NaN and inf propagate) per step, ~1 us
        if not math.isfinite(float(_sum(reward, None)) + (float(_sum(obs, None)) if self._float_obs else 0.0)):
            self._check_finite(obs, reward)
        obs = offsets.obs_in(obs)
        valid = ~self.prev_done if self.next_step else self._all_valid
        done = terminated | truncated
        self.episode_return += reward  # a NEXT_STEP reset row adds reward 0 ...
        self.episode_length += valid  # ... and no step
        returns: list[float] | tuple = _NONE
        lengths: list[int] | tuple = _NONE
        rows: list[int] | tuple = _NONE
        final: Mapping[int, np.ndarray] = _NO_FINALS
        if done.any():
            idx = np.flatnonzero(done)
            ended = idx[~game_goes_on(info, idx)]  # not the lost lives of a game that plays on
            returns = episode_scores(info, ended, self.episode_return)  # the raw score where it is recorded
            lengths = self.episode_length[ended].tolist()
            rows = ended.tolist()
            self.episode_return[ended] = 0.0
            self.episode_length[ended] = 0
            if not self.next_step:
                final = {int(i): offsets.obs_in(info["final_obs"][i]) for i in idx}
                if self._float_obs:
                    for i, x in final.items():
                        self._check_finite(np.asarray(x)[None], np.zeros(1), "final observation", i)
        if self.next_step:
            self.prev_done = done
        self.obs = obs
        tr = Transitions(obs, reward, terminated, truncated, valid, final, returns, lengths, rows)
        if self.on_step is not None:
            self.on_step(actions, tr, info)
        return tr

    def _check_finite(
        self, obs: np.ndarray, reward: np.ndarray, field: str = "observation", env_index: int | None = None
    ) -> None:
        """EnvError naming the env, the step and the field when an observation or reward is not finite
        (the exact test, after the step's sum was not: a sum of huge finite values can overflow)."""
        for name, values in ((field, obs if self._float_obs else None), ("reward", reward)):
            if values is None or np.isfinite(values).all():
                continue
            rows = values.reshape(values.shape[0], -1)
            i = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
            self._nonfinite(name, rows[i], i if env_index is None else env_index)

    def _nonfinite(self, field: str, row: np.ndarray, i: int):
        raise EnvError(
            f"env {i} returned a non-finite {field} ({row.tolist() if row.size <= 8 else row[~np.isfinite(row)][:4]}) "
            f"at step {self.n_calls} (calls of env.step since the envs were reset); training stopped before it reached "
            "the weights, and checkpoints already saved are kept. Fix the env, or wrap it (e.g. gymnasium.wrappers."
            "TransformObservation / TransformReward) so that it returns finite numbers."
        )


_sum = np.add.reduce


# --------------------------------------------------------------------------- on-policy rollouts
@dataclass
class Rollout:
    """Time-major on-policy batch; every tensor is [T, N, ...] on the agent's device."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    values_old: torch.Tensor  # V_old(s_t)
    next_values: torch.Tensor  # V_old(s_{t+1}) of the true next state
    logprob_old: torch.Tensor  # log π_old(a_t|s_t)
    params_old: torch.Tensor  # π_old's distribution parameters (logits, or concat(μ, log σ)), for exact KL
    valid: torch.Tensor | None  # False on NEXT_STEP reset rows; None when every row is valid
    # the episodes that ended in the rollout, in time-major order (DeviceRolloutCollector: the latest
    # lucidrl.logging.RECENT_EPISODES of them, all that the logger reads)
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)

    def flat(self, **per_step: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The batch of an update: ``obs``, ``actions``, ``logprob_old``, ``values_old``, ``params_old``
        and the [T, N, ...] tensors given by name (e.g. ``advantages=...``; ``None`` ones are left
        out), flattened to [T*N, ...] without the NEXT_STEP reset rows (``valid`` False)."""
        batch = {
            "obs": self.obs,
            "actions": self.actions,
            "logprob_old": self.logprob_old,
            "values_old": self.values_old,
            "params_old": self.params_old,
        }
        batch.update({k: v for k, v in per_step.items() if v is not None})
        if self.valid is None:
            return {k: v.flatten(0, 1) for k, v in batch.items()}
        rows = self.valid.flatten().nonzero().squeeze(1)  # once, not a boolean mask (a nonzero) per tensor
        return {k: v.flatten(0, 1).index_select(0, rows) for k, v in batch.items()}

    @property
    def n_transitions(self) -> int:
        return self.rewards.numel() if self.valid is None else int(self.valid.sum())


PolicyStep = Callable[[torch.Tensor, "torch.Tensor | None"], tuple["torch.Tensor | None", torch.Tensor, torch.Tensor]]


def rollout_policy(agent: ActorCritic) -> PolicyStep:
    """How π_old acts during one rollout: ``step(obs, noise) -> (a, π_old's parameters, V_old(s))``.

    ``noise`` is the head's noise for these observations (``head.noise``); ``None`` gives no action
    (only the parameters and values, e.g. for the observation after the last step). Made at the
    start of each rollout, while the weights stay fixed.
    """

    @torch.no_grad()
    def step(obs: torch.Tensor, noise: torch.Tensor | None):
        params, values = agent(obs)
        return (None if noise is None else agent.head.sample(params, noise=noise)), params, values

    return step


class RolloutCollector:
    """Steps a vector env with the current policy; carries the last observation between calls."""

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        device: torch.device,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        obs_normalizer: ObsNormalizer | None = None,
        reward_scaler: RewardScaler | None = None,
        policy: Callable[[ActorCritic], PolicyStep] = rollout_policy,
    ):
        """``generator``: the torch RNG for sampling actions (the model's own, so runs are reproducible).
        ``obs_normalizer`` / ``reward_scaler``: the model's normalisers (None: off); collecting updates them.
        ``policy``: ``rollout_policy`` or its fast twin (``lucidrl.backends``)."""
        self.env = env
        self.stepper = VectorStepper(env, seed)
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        self.generator = generator
        self.device = device
        self.policy = policy
        self._on_cpu = torch.device(device).type == "cpu"
        self.n_envs = env.num_envs
        self.obs = self.stepper.obs  # what the policy sees next (normalised with normalize_obs)
        if obs_normalizer is not None:
            self.obs = obs_normalizer.update_and_normalize(self.obs)
        space = env.single_action_space  # Box actions are clipped to the bounds on their way to the env only
        self.action_bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
        self.action_dtype = space.dtype if isinstance(space, gym.spaces.Box) else None  # e.g. float16 Box

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        if self._on_cpu and x.flags.writeable:
            return torch.from_numpy(x)  # the same memory, as as_tensor, a few us cheaper
        return torch.as_tensor(x, device=self.device)

    @torch.no_grad()
    def collect(self, agent: ActorCritic, n_steps: int) -> Rollout:
        """T = ``n_steps`` steps in each env with ``agent``'s policy."""
        T, N = n_steps, self.n_envs
        head, stepper = agent.head, self.stepper
        act = self.policy(agent)
        noise = head.noise((T, N), self.generator, self.device).unbind(
            0
        )  # the whole rollout's, from the model's generator
        obs_buf = np.empty((T, *self.obs.shape), dtype=self.obs.dtype)
        rew_buf = np.empty((T, N), dtype=np.float32)
        term_buf = np.empty((T, N), dtype=bool)
        trunc_buf = np.empty((T, N), dtype=bool)
        valid_buf = np.empty((T, N), dtype=bool)
        actions: list[torch.Tensor] = []
        params: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        final_values: list[tuple[int, np.ndarray, torch.Tensor]] = []  # SAME_STEP truncations
        ep_returns: list[float] = []
        ep_lengths: list[int] = []
        obs_norm, rew_scale = self.obs_normalizer, self.reward_scaler
        obs = self.obs
        for t in range(T):
            obs_buf[t] = obs
            action, p, v = act(self._tensor(obs), noise[t])  # a_t ~ π_old(·|s_t), and V_old(s_t)
            assert action is not None  # (given noise, the policy step samples)
            actions.append(action)
            params.append(p)
            values.append(v)
            env_action = action.numpy() if self._on_cpu else action.cpu().numpy()
            if self.action_bounds is not None:
                env_action = np.clip(env_action, *self.action_bounds).astype(self.action_dtype, copy=False)
            tr = stepper.step(env_action)
            obs = tr.obs if obs_norm is None else obs_norm.update_and_normalize(tr.obs)
            rew_buf[t], term_buf[t], trunc_buf[t], valid_buf[t] = tr.reward, tr.terminated, tr.truncated, tr.valid
            if rew_scale is not None:  # the scaled reward trains; NEXT_STEP reset rows stay out of the statistics
                rew_buf[t] = rew_scale.scale(
                    tr.reward, tr.terminated | tr.truncated, valid=tr.valid if stepper.next_step else None
                )
            ep_returns += tr.episode_returns
            ep_lengths += tr.episode_lengths
            truncated = [i for i in tr.final_obs if tr.truncated[i]] if tr.final_obs else None
            if truncated:  # bootstrap from V(final observation)
                final = self._tensor(np.stack([tr.final_obs[i] for i in truncated]))
                if obs_norm is not None:
                    final = obs_norm(final)  # the same statistics as the step's observations, not updated
                final_values.append((t, np.asarray(truncated), act(final, None)[2]))
        self.obs = obs

        last_value = act(self._tensor(obs), None)[2]
        act_buf, params_buf, val_buf = torch.stack(actions), torch.stack(params), torch.stack(values)
        next_values = torch.cat([val_buf[1:], last_value.unsqueeze(0)])  # V(s_{t+1}) while episodes go on
        for t, idx, v in final_values:
            next_values[t, torch.as_tensor(idx, device=self.device)] = v
        valid = None if valid_buf.all() else self._tensor(valid_buf)
        return Rollout(
            obs=self._tensor(obs_buf),
            actions=act_buf,
            rewards=self._tensor(rew_buf),
            terminated=self._tensor(term_buf),
            truncated=self._tensor(trunc_buf),
            values_old=val_buf,
            next_values=next_values,
            logprob_old=head.log_prob(params_buf, act_buf),  # one batched op instead of one per step
            params_old=params_buf,
            valid=valid,
            episode_returns=ep_returns,
            episode_lengths=ep_lengths,
        )


def minibatches(
    batch: dict[str, torch.Tensor], batch_size: int, n_epochs: int, generator: torch.Generator | None = None
):
    """Yield (epoch, minibatch) for ``n_epochs`` passes over ``batch`` in random minibatches of ``batch_size``
    (a new order each epoch). A batch of at most ``batch_size`` samples is one minibatch, used as it is.

    Each epoch shuffles the whole batch once and cuts consecutive slices (views) from it: the same minibatches
    as gathering each one by its indices, in one gather per tensor instead of one per minibatch (Pendulum's
    preset, 64 minibatches an epoch: 2-5% of its training time)."""
    n = next(iter(batch.values())).shape[0]
    for epoch in range(n_epochs):
        if batch_size >= n:  # one minibatch per epoch: its order does not matter, no shuffling
            yield epoch, batch
            continue
        order = torch.randperm(n, device=next(iter(batch.values())).device, generator=generator)
        shuffled = {k: v[order] for k, v in batch.items()}
        for start in range(0, n, batch_size):
            yield epoch, {k: v[start : start + batch_size] for k, v in shuffled.items()}
