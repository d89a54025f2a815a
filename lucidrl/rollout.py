"""Collecting on-policy experience: ``RolloutCollector.collect(agent, n_steps) -> Rollout``.

A rollout holds time-major tensors [T, N, ...] (T steps of N parallel envs). Row t is the
transition (s_t, a_t, r_t, terminated_t, truncated_t, s_{t+1}), in Gymnasium's words.

Episode ends, the one place they are handled (``lucidrl.advantages`` does the math):

* ``next_values[t]`` is V(s_{t+1}) for the **true** next state of transition t. When an episode
  is truncated (time limit) that is the value of its final observation, which the algorithms
  bootstrap from; when it terminated the value is masked to 0 by ``terminated``.
* Gymnasium vector envs reset finished copies automatically, in one of two modes:

  - SAME_STEP (lucidrl's ``SyncVectorEnv``/``AsyncVectorEnv``): the ending step returns the next
    episode's first observation and puts the final one in ``info["final_obs"]``; we evaluate
    V(final_obs) there, only for the truncated copies.
  - NEXT_STEP (Gymnasium's native vector envs, e.g. CartPole's): the ending step returns the
    final observation, so V(s_{t+1}) is simply the next row's value; the *following* step is a
    reset step (its action is ignored, reward 0). Such rows get ``valid = False`` and the
    algorithms leave them out of every loss and statistic.

Episode statistics (return, length) are counted here on the raw rewards, before any scaling;
an env that records its episodes with ``RecordEpisodeStatistics`` (lucidrl's Atari envs, which
clip the training rewards after it) reports its recorded raw score instead
(``lucidrl.envs.episode_scores``).

Box actions: the Gaussian sample goes to ``env.step`` clipped to the action space's bounds, but
the rollout stores (and ``log_prob`` scores) the unclipped sample, the one π actually drew.

Normalisation (``lucidrl.envs.normalize``, optional), the way SB3's VecNormalize does it: each
observation the env returns first updates the observation statistics, then is normalised with
them, and that normalised observation is what the policy sees and what the rollout stores, so
``logprob_old`` and the update's log π are computed on the same input. Final observations of
truncated episodes (SAME_STEP) are normalised with the same statistics, without updating them.
Rewards are scaled for ``Rollout.rewards`` only; the episode returns stay raw.

Speed path (speed only, same math; ``tests/math/test_packed_speed.py``): with a policy whose agent
offers ``numpy_policy`` (``lucidrl.packed.PackedActorCritic``: PPO and A2C with separate tanh/ReLU
MLPs on CPU), or whose algorithm passes one (TRPO and VPG, ``lucidrl.flat_mlp.numpy_rollout_policy``),
each step's distribution parameters and V(s) are computed in NumPy. A categorical action is the
Gumbel-max sample argmax(logits + g), an exact sample of softmax(logits); a Gaussian one is
μ + σ ε. The noise (g or ε) of the whole rollout is drawn at the start from the model's own
``generator`` (so a seed still fixes every action, and the saved generator state still continues
the stream). log π_old and the other [T, N] tensors are made once after the loop. On
CartPole with 8 envs this takes a step's acting from ~43 us (packed torch forward + torch
sampling) to ~12 us; the zoo's PPO preset collects 100k steps in ~0.8 s instead of ~1.2 s and A2C
in ~1.1 s instead of ~1.5 s (process CPU time; ~0.5 s of either is CartPole's own ``step``).
On HalfCheetah-v5 (1 env, 256x256 ReLU MLPs) acting went from ~44 to ~19 us a step. Everything
else (shared trunks, CNNs, other devices) acts with torch, one batched forward and one
``head.sample`` per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from lucidrl.envs import autoreset_mode, episode_scores
from lucidrl.envs.normalize import ObsNormalizer, RewardScaler
from lucidrl.networks import ActorCritic, CategoricalHead, DiagGaussianHead


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
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)

    def flat(self, **per_step: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The batch of an update: ``obs``, ``actions``, ``logprob_old``, ``values_old``, ``params_old``
        and the [T, N, ...] tensors given by name (e.g. ``advantages=...``; ``None`` ones are left
        out), flattened to [T*N, ...] without the NEXT_STEP reset rows (``valid`` False)."""
        batch = {"obs": self.obs, "actions": self.actions, "logprob_old": self.logprob_old,
                 "values_old": self.values_old, "params_old": self.params_old}
        batch.update({k: v for k, v in per_step.items() if v is not None})
        if self.valid is None:
            return {k: v.flatten(0, 1) for k, v in batch.items()}
        rows = self.valid.flatten().nonzero().squeeze(1)  # once, not a boolean mask (a nonzero) per tensor
        return {k: v.flatten(0, 1).index_select(0, rows) for k, v in batch.items()}

    @property
    def n_transitions(self) -> int:
        return self.rewards.numel() if self.valid is None else int(self.valid.sum())


class RolloutCollector:
    """Steps a vector env with the current policy; carries the last observation between calls."""

    def __init__(self, env: gym.vector.VectorEnv, device: torch.device, seed: int | None = None,
                 generator: torch.Generator | None = None, obs_normalizer: ObsNormalizer | None = None,
                 reward_scaler: RewardScaler | None = None):
        """``generator``: the torch RNG for sampling actions (the model's own, so runs are reproducible).
        ``obs_normalizer`` / ``reward_scaler``: the model's normalisers (None: off); collecting updates them."""
        self.env = env
        self.obs_normalizer = obs_normalizer
        self.reward_scaler = reward_scaler
        self.generator = generator
        self.device = device
        self._on_cpu = torch.device(device).type == "cpu"
        self.n_envs = env.num_envs
        self.mode = autoreset_mode(env)
        self.next_step = self.mode == AutoresetMode.NEXT_STEP
        self.obs, _ = env.reset(seed=seed)  # what the policy sees next (normalised with normalize_obs)
        if obs_normalizer is not None:
            self.obs = self._normalize(self.obs)
        self.prev_done = np.zeros(self.n_envs, dtype=bool)  # NEXT_STEP: the next step is a reset step
        self.episode_return = np.zeros(self.n_envs, dtype=np.float64)
        self.episode_length = np.zeros(self.n_envs, dtype=np.int64)
        space = env.single_action_space  # Box actions are clipped to the bounds on their way to the env only
        self.action_bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        if self._on_cpu and x.flags.writeable:
            return torch.from_numpy(x)  # the same memory, as as_tensor, a few us cheaper
        return torch.as_tensor(x, device=self.device)

    def _normalize(self, raw_obs: np.ndarray) -> np.ndarray:
        """Update the observation statistics with a batch of raw observations, then normalise it (N2)."""
        return self.obs_normalizer.update_and_normalize(raw_obs)

    @torch.no_grad()
    def collect(self, agent: ActorCritic, n_steps: int, numpy_policy=None) -> Rollout:
        """T = ``n_steps`` steps in each env with ``agent``'s policy. ``numpy_policy``: the algorithm's own
        NumPy ``obs -> (logits, V(s))`` for a categorical policy (speed only), else the agent's, if any."""
        T, N, dev = n_steps, self.n_envs, self.device
        next_step = self.next_step
        head = agent.head
        obs_buf = np.empty((T, *self.obs.shape), dtype=self.obs.dtype)
        rew_buf = np.empty((T, N), dtype=np.float32)
        term_buf = np.empty((T, N), dtype=bool)
        trunc_buf = np.empty((T, N), dtype=bool)
        valid_buf = np.empty((T, N), dtype=bool)  # every row is written below (NEXT_STEP) or filled here
        if not next_step:
            valid_buf.fill(True)
        # the policy's outputs stay on the device; stacked once at the end (cheaper than T indexed writes)
        actions: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        dist_params: list[torch.Tensor] = []
        final_values: list[tuple[int, np.ndarray, torch.Tensor]] = []  # SAME_STEP truncations
        ep_returns: list[float] = []
        ep_lengths: list[int] = []

        act_fn = agent.acting_forward() if hasattr(agent, "acting_forward") else agent
        # speed only (see the module docstring): the actor in NumPy, π_old's outputs in one pass at the end
        policy_np = numpy_policy
        gaussian = isinstance(head, DiagGaussianHead)
        if policy_np is None and isinstance(head, (CategoricalHead, DiagGaussianHead)) and hasattr(agent, "numpy_policy"):
            policy_np = agent.numpy_policy(N)
        if policy_np is not None:
            # the noise of the whole rollout drawn at once from the model's generator: Gumbel (Gumbel-max)
            # for a categorical policy, standard normal (a = μ + σ ε) for a Gaussian one
            if gaussian:
                noise = torch.randn((T, N, head.d), generator=self.generator).numpy()
                act_np = np.empty((T, N, head.d), dtype=np.float32)
            else:
                gumbel = np.log(torch.empty((T, N, head.n)).exponential_(generator=self.generator).numpy())
                np.negative(gumbel, out=gumbel)
                act_np = np.empty((T, N), dtype=np.int64)
            params_np = np.empty((T, N, head.n_params), dtype=np.float32)
            values_np = np.empty((T + 1, N), dtype=np.float32)  # row T: V(last observation)
        obs_norm, rew_scale = self.obs_normalizer, self.reward_scaler
        obs = self.obs
        for t in range(T):
            obs_buf[t] = obs
            if policy_np is not None:
                params, values_np[t] = policy_np(obs)
                params_np[t] = params
                if gaussian:
                    d = head.d
                    env_action = act_np[t] = params[:, :d] + np.exp(params[:, d:]) * noise[t]
                else:
                    env_action = act_np[t] = (params + gumbel[t]).argmax(-1)
            else:
                params, value = act_fn(self._tensor(obs))
                action = head.sample(params, self.generator)
                actions.append(action)
                values.append(value)
                dist_params.append(params)
                env_action = action.cpu().numpy()
            if next_step:
                valid_buf[t] = ~self.prev_done
            if self.action_bounds is not None:
                env_action = np.clip(env_action, *self.action_bounds)
            obs, reward, terminated, truncated, info = self.env.step(env_action)
            if obs_norm is not None:
                obs = self._normalize(obs)
            rew_buf[t], term_buf[t], trunc_buf[t] = reward, terminated, truncated
            if rew_scale is not None:  # the scaled reward trains; NEXT_STEP reset rows stay out of the statistics
                rew_buf[t] = rew_scale.scale(reward, terminated | truncated, valid=valid_buf[t] if next_step else None)

            # episode statistics on the raw reward (a NEXT_STEP reset row adds reward 0, length 0)
            self.episode_return += reward
            self.episode_length += valid_buf[t]
            done = terminated | truncated
            if done.any():
                idx = np.flatnonzero(done)
                ep_returns += episode_scores(info, idx, self.episode_return)  # raw score if recorded
                ep_lengths += self.episode_length[idx].tolist()
                self.episode_return[idx] = 0.0
                self.episode_length[idx] = 0
                if not next_step and truncated.any():  # bootstrap from V(final observation)
                    tidx = np.flatnonzero(truncated)
                    final = self._tensor(np.stack([info["final_obs"][i] for i in tidx]))
                    if obs_norm is not None:
                        final = obs_norm(final)  # the same statistics as the step's observations, not updated
                    final_values.append((t, tidx, agent.value(final)))
            if next_step:
                self.prev_done = done
        self.obs = obs

        if policy_np is not None:
            values_np[T] = policy_np(obs)[1]
            act_buf, params_buf, all_values = self._tensor(act_np), self._tensor(params_np), self._tensor(values_np)
            val_buf, next_values = all_values[:T], all_values[1:].clone()  # V(s_{t+1}) while episodes go on
        else:
            last_value = agent.value(self._tensor(obs))
            act_buf, params_buf = torch.stack(actions), torch.stack(dist_params)
            val_buf = torch.stack(values)
            next_values = torch.cat([val_buf[1:], last_value.unsqueeze(0)])  # V(s_{t+1}) while episodes go on
        for t, tidx, v in final_values:
            next_values[t, torch.as_tensor(tidx, device=dev)] = v

        valid = None
        if next_step and not valid_buf.all():
            valid = self._tensor(valid_buf)
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
