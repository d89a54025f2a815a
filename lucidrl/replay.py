"""Experience replay for the off-policy algorithms: ``ReplayBuffer``.

A ring buffer of ``buffer_size`` transitions ``(obs, action, reward, next_obs, terminated)``,
preallocated as torch tensors on the model's device, so sampling a minibatch is one
``torch.randint`` and one ``index_select`` per field.

Episode ends (see ``lucidrl.rollout`` for the on-policy side; the rule is the same):

* ``next_obs`` is the **true** next observation of the transition: at the end of an episode
  the final observation (``info["final_obs"]`` in SAME_STEP autoreset mode, the returned
  observation in NEXT_STEP mode), never the first observation of the next episode;
* ``terminated`` is stored, not ``done``: a time-limit truncation keeps bootstrapping from
  the final observation; only a true terminal state has value 0 after it.

The caller (``lucidrl.algos.dqn``) decides which rows of a vector-env step are real
transitions (NEXT_STEP reset steps are not) and passes only those.

Transitions of several envs share one ring: a step of N envs writes N consecutive slots (the
order in the ring does not matter for uniform sampling). ``buffer_size`` counts transitions
over all envs, as in SB3 (which splits it into ``buffer_size // n_envs`` per env).

Checkpoints leave the replay buffer out unless ``save_replay_buffer=True`` (DQNConfig): it can be large;
without it a loaded model starts with an empty one.
"""

from __future__ import annotations

import os
import warnings

import gymnasium as gym
import numpy as np
import torch

from lucidrl.errors import ConfigError


def _torch_dtype(space: gym.Space) -> torch.dtype:
    if isinstance(space, gym.spaces.Discrete):
        return torch.long
    return torch.from_numpy(np.zeros((), dtype=space.dtype)).dtype


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory free for a new allocation on ``device`` (RAM: MemAvailable, else free pages); None if unknown."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class ReplayBuffer:
    """Preallocated ring buffer of transitions with uniform minibatch sampling."""

    def __init__(
        self,
        buffer_size: int,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ):
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise ConfigError(f"buffer_size must be an integer >= 1, got {buffer_size!r}")
        self.capacity = buffer_size
        self.device = torch.device(device)
        self.generator = generator
        self.obs_shape = tuple(observation_space.shape or ())
        self.obs_dtype = _torch_dtype(observation_space)
        self.action_shape = tuple(action_space.shape or ())
        self.action_dtype = _torch_dtype(action_space)
        why = (  # a Dict/Tuple with images (lucidrl.envs.structured): its rows hold the pixels as float32
            " (the observations' image entries are kept as float32, 4 bytes a pixel, twice: obs and next_obs)"
            if getattr(observation_space, "has_images", False)
            else ""
        )
        nbytes = self.nbytes_for(buffer_size, observation_space, action_space)
        check_fits_in_memory(nbytes, self.device, buffer_size, why)
        n, dev = buffer_size, self.device
        self.obs = torch.empty((n, *self.obs_shape), dtype=self.obs_dtype, device=dev)
        self.next_obs = torch.empty((n, *self.obs_shape), dtype=self.obs_dtype, device=dev)
        self.actions = torch.empty((n, *self.action_shape), dtype=self.action_dtype, device=dev)
        self.rewards = torch.empty(n, dtype=torch.float32, device=dev)
        self.terminated = torch.empty(n, dtype=torch.float32, device=dev)  # 1.0 / 0.0, used as a mask
        self.pos = 0  # next slot to write
        self.size = 0  # slots filled (<= capacity)

    @staticmethod
    def nbytes_for(buffer_size: int, observation_space: gym.Space, action_space: gym.Space) -> int:
        """Bytes the buffer's tensors take: 2 observations, an action, a reward and a flag per transition."""
        obs = int(np.prod(observation_space.shape or (), dtype=np.int64)) * _torch_dtype(observation_space).itemsize
        act = int(np.prod(action_space.shape or (), dtype=np.int64)) * _torch_dtype(action_space).itemsize
        return buffer_size * (2 * obs + act + 4 + 4)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        """Store a batch of K transitions (K >= 0; rows of one vector-env step) in the ring.

        ``next_obs`` must be the true next observations (the final ones at episode ends), and
        ``terminated`` the Gymnasium flag, not ``terminated | truncated``.
        """
        obs = torch.as_tensor(obs, device=self.device)
        k = obs.shape[0]
        if k == 0:
            return
        if k > self.capacity:  # only the newest fit
            sl = slice(k - self.capacity, k)
            obs, actions, rewards, next_obs, terminated = (x[sl] for x in (obs, actions, rewards, next_obs, terminated))
            k = self.capacity
        idx = (
            (torch.arange(k, device=self.device) + self.pos) % self.capacity
            if self.pos + k > self.capacity
            else slice(self.pos, self.pos + k)
        )
        self.obs[idx] = obs.to(self.obs_dtype)
        self.next_obs[idx] = torch.as_tensor(next_obs, device=self.device).to(self.obs_dtype)
        self.actions[idx] = (
            torch.as_tensor(actions, device=self.device).to(self.action_dtype).reshape(k, *self.action_shape)
        )
        self.rewards[idx] = torch.as_tensor(rewards, device=self.device, dtype=torch.float32)
        self.terminated[idx] = torch.as_tensor(terminated, device=self.device).to(torch.float32)
        self.pos = (self.pos + k) % self.capacity
        self.size = min(self.size + k, self.capacity)

    def sample_indices(self, *shape: int) -> torch.Tensor:
        """Uniform indices into the filled part of the buffer (with replacement, as SB3)."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        return torch.randint(0, self.size, shape, generator=self.generator, device=self.device)

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The transitions at ``idx`` (any shape): each field gets ``idx.shape`` as leading dimensions."""
        flat = idx.reshape(-1)
        out = {
            "obs": self.obs,
            "actions": self.actions,
            "rewards": self.rewards,
            "next_obs": self.next_obs,
            "terminated": self.terminated,
        }
        return {k: v.index_select(0, flat).reshape(*idx.shape, *v.shape[1:]) for k, v in out.items()}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The filled part of the ring and its write position, for a checkpoint (``save_replay_buffer``)."""
        n = self.size
        return {
            "obs": self.obs[:n],
            "next_obs": self.next_obs[:n],
            "actions": self.actions[:n],
            "rewards": self.rewards[:n],
            "terminated": self.terminated[:n],
            "position": torch.tensor([self.pos, self.size], dtype=torch.int64),
        }

    @classmethod
    def from_state(
        cls,
        tensors: dict[str, torch.Tensor],
        buffer_size: int,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> ReplayBuffer:
        """A buffer holding what ``state_tensors`` saved; ValueError when it does not fit these spaces."""
        buffer = cls(buffer_size, observation_space, action_space, device, generator)
        pos, size = (int(v) for v in tensors["position"].tolist())
        if not (
            0 <= size <= buffer.capacity and 0 <= pos < buffer.capacity and (size == buffer.capacity or pos == size)
        ):
            raise ValueError(f"position {pos} / size {size} do not fit a buffer of {buffer.capacity}")
        for name in ("obs", "next_obs", "actions", "rewards", "terminated"):
            dest, src = getattr(buffer, name), tensors[name]
            if tuple(src.shape) != (size, *dest.shape[1:]) or src.dtype != dest.dtype:
                raise ValueError(
                    f"{name} is {src.dtype} {tuple(src.shape)}, expected {dest.dtype} {(size, *dest.shape[1:])}"
                )
            dest[:size] = src.to(dest.device)
        buffer.pos, buffer.size = pos, size
        return buffer

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A uniform minibatch: ``obs``, ``actions``, ``rewards``, ``next_obs``, ``terminated``."""
        return self.get(self.sample_indices(batch_size))


def check_fits_in_memory(nbytes: int, device: torch.device, buffer_size: int, why: str = "") -> None:
    """ConfigError when the buffer cannot fit in the free memory; a warning when it takes over half of it.
    ``why``: what makes a transition large, said after the size."""
    free = available_memory_bytes(device)
    if free is None:
        return
    gib = 1024**3
    where = "GPU memory" if device.type == "cuda" else "RAM"
    if nbytes > free:
        raise ConfigError(
            f"the replay buffer (buffer_size={buffer_size}) needs {nbytes / gib:.2f} GiB{why} but only "
            f"{free / gib:.2f} GiB of {where} is available; lower buffer_size"
        )
    if nbytes > free / 2:
        warnings.warn(
            f"the replay buffer (buffer_size={buffer_size}) will take {nbytes / gib:.2f} GiB{why}, more than "
            f"half of the {free / gib:.2f} GiB of {where} available",
            ResourceWarning,
            stacklevel=3,
        )
