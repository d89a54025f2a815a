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

Observations are kept in their own dtype: an image's uint8 pixels as uint8 (1 byte each, where the network
reads floats). A Dict/Tuple observation with image entries arrives as one flat float row
(``lucidrl.envs.structured``); :class:`PackedRows` keeps its pixel columns as uint8 and the rest in the row's
dtype, and gives back the same float rows when sampled: 4x less memory for the pixels, as SB3's
``DictReplayBuffer`` keeps them.
"""

from __future__ import annotations

import os
import warnings

import gymnasium as gym
import numpy as np
import torch

from lucidrl.envs.structured import entries, is_image_entry
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


def _column_runs(observation_space: gym.Space) -> list[tuple[int, int, bool]] | None:
    """For a flattened Dict/Tuple with image entries: its row as runs (start, stop, pixels?) of adjacent columns
    that are all pixels or all other values, in row order; None for any other space (kept as it is)."""
    if not getattr(observation_space, "has_images", False):
        return None
    runs: list[tuple[int, int, bool]] = []
    for start, stop, leaf in entries(observation_space.structure):  # type: ignore[attr-defined]
        pixels = is_image_entry(leaf)
        if runs and runs[-1][2] == pixels:
            runs[-1] = (runs[-1][0], stop, pixels)
        else:
            runs.append((start, stop, pixels))
    return runs


class PackedRows:
    """``n`` flat rows of a Dict/Tuple observation with image entries, the pixel columns stored as uint8 and the
    other columns in the row's dtype. Rows go in and come out as the flat float rows the networks read
    (``rows[idx] = x``, ``rows.index_select(0, idx)``, ``rows[:k]``); pixels are whole numbers 0-255, so the
    round trip is exact."""

    def __init__(self, n: int, runs: list[tuple[int, int, bool]], dtype: torch.dtype, device: torch.device):
        self.runs, self.dtype, self.device = runs, dtype, device
        self.width = runs[-1][1]
        self.shape = (n, self.width)
        # where each run lies in its store: (pixels?, start, stop) in `pixels` or `values`
        self._parts: list[tuple[bool, int, int]] = []
        count = {True: 0, False: 0}
        for start, stop, pixels in runs:
            self._parts.append((pixels, count[pixels], count[pixels] + stop - start))
            count[pixels] += stop - start
        self.pixels = torch.empty((n, count[True]), dtype=torch.uint8, device=device)
        self.values = torch.empty((n, count[False]), dtype=dtype, device=device)

    @staticmethod
    def row_nbytes(runs: list[tuple[int, int, bool]], dtype: torch.dtype) -> int:
        return sum((stop - start) * (1 if pixels else dtype.itemsize) for start, stop, pixels in runs)

    def columns(self, rows: torch.Tensor, pixels: bool) -> torch.Tensor:
        """The pixel columns (``pixels=True``) or the other columns of flat ``rows``, side by side, as they are."""
        cut = [rows[:, start:stop] for start, stop, is_pix in self.runs if is_pix == pixels]
        return torch.cat(cut, 1) if cut else rows[:, :0]

    def _split(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.columns(rows, True).to(torch.uint8), self.columns(rows, False).to(self.dtype)

    def _join(self, pixels: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        rows = torch.empty((pixels.shape[0], self.width), dtype=self.dtype, device=self.device)
        for (start, stop, _), (is_pix, a, b) in zip(self.runs, self._parts):
            rows[:, start:stop] = (pixels if is_pix else values)[:, a:b]  # uint8 -> float in the copy
        return rows

    def __setitem__(self, idx, rows: torch.Tensor) -> None:
        if rows.dim() == 1:  # one row
            pixels, values = self._split(rows[None])
            self.pixels[idx], self.values[idx] = pixels[0], values[0]
        else:
            self.pixels[idx], self.values[idx] = self._split(rows)

    def __getitem__(self, idx) -> torch.Tensor:
        pixels, values = self.pixels[idx], self.values[idx]
        if pixels.dim() == 1:  # one row
            return self._join(pixels[None], values[None])[0]
        return self._join(pixels, values)

    def index_select(self, dim: int, index: torch.Tensor) -> torch.Tensor:
        assert dim == 0
        return self._join(self.pixels.index_select(0, index), self.values.index_select(0, index))


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
        runs = _column_runs(observation_space)  # a Dict/Tuple with images: pixels kept as uint8 (PackedRows)
        why = " (the observations' pixels at 1 byte each, twice: obs and next_obs)" if runs else ""
        nbytes = self.nbytes_for(buffer_size, observation_space, action_space)
        check_fits_in_memory(nbytes, self.device, buffer_size, why)
        n, dev = buffer_size, self.device
        self.obs: torch.Tensor | PackedRows
        self.next_obs: torch.Tensor | PackedRows
        if runs is not None:
            self.obs = PackedRows(n, runs, self.obs_dtype, dev)
            self.next_obs = PackedRows(n, runs, self.obs_dtype, dev)
        else:
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
        runs = _column_runs(observation_space)
        obs = (
            PackedRows.row_nbytes(runs, _torch_dtype(observation_space))
            if runs is not None
            else int(np.prod(observation_space.shape or (), dtype=np.int64)) * _torch_dtype(observation_space).itemsize
        )
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
        """The filled part of the ring and its write position, for a checkpoint (``save_replay_buffer``). Packed
        rows are saved as they are stored: ``obs.pixels`` (uint8) and ``obs.values``, the same for ``next_obs``."""
        n = self.size
        out: dict[str, torch.Tensor] = {}
        for name in ("obs", "next_obs"):
            rows = getattr(self, name)
            if isinstance(rows, PackedRows):
                out[f"{name}.pixels"], out[f"{name}.values"] = rows.pixels[:n], rows.values[:n]
            else:
                out[name] = rows[:n]
        return out | {
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
        fields: list[tuple[str, torch.Tensor | PackedRows]] = []
        for name in ("obs", "next_obs"):
            rows = getattr(buffer, name)
            if isinstance(rows, PackedRows) and f"{name}.pixels" in tensors:  # stored packed
                fields += [(f"{name}.pixels", rows.pixels), (f"{name}.values", rows.values)]
            else:  # flat rows (also a packed buffer's, as saved before it was packed)
                fields.append((name, rows))
        fields += [(name, getattr(buffer, name)) for name in ("actions", "rewards", "terminated")]
        for name, dest in fields:
            src = tensors[name]
            if tuple(src.shape) != (size, *dest.shape[1:]) or src.dtype != dest.dtype:
                raise ValueError(
                    f"{name} is {src.dtype} {tuple(src.shape)}, expected {dest.dtype} {(size, *dest.shape[1:])}"
                )
            if isinstance(dest, PackedRows) and not _whole_pixels(src, dest):
                raise ValueError(f"{name} holds pixel values that are not whole numbers 0-255")
            dest[:size] = src.to(dest.device)
        buffer.pos, buffer.size = pos, size
        return buffer

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A uniform minibatch: ``obs``, ``actions``, ``rewards``, ``next_obs``, ``terminated``."""
        return self.get(self.sample_indices(batch_size))


def _whole_pixels(rows: torch.Tensor, packed: PackedRows) -> bool:
    """Whether the pixel columns of flat ``rows`` hold whole numbers 0-255 (what uint8 keeps exactly)."""
    pixels = packed.columns(rows, pixels=True)
    return bool(((pixels >= 0) & (pixels <= 255) & (pixels == pixels.round())).all())


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
