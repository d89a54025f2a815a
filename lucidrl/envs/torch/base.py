"""The batched torch environment base class and its stateless per-env random numbers.

A ``TorchVectorEnv`` holds ``num_envs`` copies of one classic-control system as a single state
tensor ``[num_envs, state_dim]`` on any device. Each concrete env supplies three pure per-row
functions (``initial_state``, ``observation``, ``dynamics``); this class turns them into

* ``functional_step``: a pure function of ``(state, elapsed, seeds, resets, action)`` that steps
  the dynamics, applies the time limit as truncation (as Gymnasium's ``TimeLimit`` does), and
  resets the finished rows on the same step. On a GPU and under ``torch.compile`` every row is
  reset-computed and the finished ones selected with ``torch.where``, so shapes are static and
  nothing reads a tensor value on the host: it runs under CUDA graphs and ``torch.func.vmap``.
  Eager on the CPU, where a host check costs nothing, only the finished rows are drawn (the same
  numbers: ``tests/math/test_torch_envs.py`` compares the two).
* the ``gymnasium.vector.VectorEnv`` API (``reset`` / ``step``) in same-step autoreset mode with
  ``info["final_obs"]`` / ``info["_final_obs"]``, as lucidrl's rollout code expects.

Seeding without generator state: the ``k``-th initial state of env ``i`` is a function of
``(seeds[i], k)`` only, through ``uniforms`` (a counter-based hash, in the spirit of Salmon et
al. 2011, "Parallel random numbers: as easy as 1, 2, 3"), so an env's episodes are the same on
the CPU and the GPU, whatever the batch size and whatever the other envs do.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from torch import Tensor

_MASK32 = 0xFFFFFFFF


def _mix32(h: Tensor) -> Tensor:
    """Thomas Mueller's 32-bit integer hash (xorshift-multiply, twice) on int64 words.

    ``h`` holds values in ``[0, 2**32)`` and the constant ``0x45D9F3B`` is below ``2**31``, so
    the products stay below ``2**63``: no int64 overflow, hence defined behaviour on every
    backend (eager CPU/CUDA, inductor's C++ and Triton code). Eight tensor operations.
    """
    h = h ^ (h >> 16)
    h = (h * 0x45D9F3B) & _MASK32
    h = h ^ (h >> 16)
    h = (h * 0x45D9F3B) & _MASK32
    return h ^ (h >> 16)


def uniforms(seeds: Tensor, resets: Tensor, k: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``[N, k]`` uniform numbers in ``[0, 1)`` that depend only on ``(seeds[i], resets[i], j)``.

    A stateless counter-based generator: the low 32 bits of the seed are hashed, the episode
    counter (offset by the seed's high 32 bits times an odd constant) is absorbed and hashed,
    then each column index, and the top 24 bits of the final word give
    ``u = (x >> 8) * 2**-24``, exact in float32 and float64, so both dtypes see the same numbers.
    The same inputs give the same numbers on every device and at every batch size.
    """
    seeds = seeds.to(torch.int64)
    h = _mix32((seeds & _MASK32) ^ 0x3C6EF372)
    counter = (resets.to(torch.int64) + ((((seeds >> 32) & _MASK32) * 0x61C88647) & _MASK32)) & _MASK32
    h = _mix32(h ^ counter)
    cols = (torch.arange(1, k + 1, device=seeds.device, dtype=torch.int64) * 0x2545F491) & _MASK32
    x = _mix32(h.unsqueeze(-1) ^ cols)
    return (x >> 8).to(dtype) * (2.0**-24)


def _as_tensor(x: Any, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    return x.to(device=device, dtype=dtype)


class TorchVectorEnv(gym.vector.VectorEnv):
    """Base class of lucidrl's batched torch envs (see the module docstring).

    Subclasses set ``env_id``, ``state_dim``, ``reset_dim`` and implement ``initial_state``,
    ``observation`` and ``dynamics`` as pure, branch-free tensor functions.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
    env_id: str
    state_dim: int
    reset_dim: int
    max_episode_steps: int

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        max_episode_steps: int | None = None,
    ):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.dtype = dtype
        self.spec = gym.spec(self.env_id)
        limit = max_episode_steps if max_episode_steps is not None else self.spec.max_episode_steps
        if limit is None:
            raise ValueError(f"{self.env_id} registers no time limit; pass max_episode_steps")
        self.max_episode_steps = int(limit)
        self.render_mode = None
        # The spaces are those of Gymnasium's own env (built once, without wrappers).
        entry_point = self.spec.entry_point
        creator = gym.envs.registration.load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
        if creator is None:
            raise ValueError(f"{self.env_id} has no entry point")
        reference = creator()
        self.single_observation_space = reference.observation_space
        self.single_action_space = reference.action_space
        reference.close()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._discrete = isinstance(self.single_action_space, gym.spaces.Discrete)
        n = self.num_envs
        self._state = torch.zeros(n, self.state_dim, device=self.device, dtype=dtype)
        self.elapsed = torch.zeros(n, device=self.device, dtype=torch.int64)
        self.seeds = torch.zeros(n, device=self.device, dtype=torch.int64)
        self.resets = torch.zeros(n, device=self.device, dtype=torch.int64)
        self._seeded = False
        self.closed = False

    # ----- what each env implements (pure, per row) ------------------------------------------
    def initial_state(self, u: Tensor) -> Tensor:
        """``u``: ``[N, reset_dim]`` uniforms in [0, 1) -> initial states ``[N, state_dim]``."""
        raise NotImplementedError

    def observation(self, state: Tensor) -> Tensor:
        """States ``[N, state_dim]`` -> observations ``[N, obs_dim]`` in ``self.dtype``."""
        raise NotImplementedError

    def dynamics(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step of every row: ``(next_state, reward [N], terminated [N] bool)``."""
        raise NotImplementedError

    # ----- provided here ---------------------------------------------------------------------
    def reset_pool(self, seeds: Tensor, resets: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """The initial states of every env's next ``n`` episodes, drawn in one batch: ``(resets, states)`` with
        ``states[j]`` ``[num_envs, state_dim]`` the state env i resets to at its (j+1)-th reset from now (episode
        counter ``resets[i] + j + 1``). Given to ``functional_step`` as ``pool`` for up to ``n`` steps, it replaces
        the per-step draw of fresh states for every row (~40 small ops) by one gather: the same numbers."""
        N = seeds.shape[0]
        ahead = torch.arange(1, n + 1, device=seeds.device, dtype=torch.int64).unsqueeze(1)
        u = uniforms(seeds.repeat(n), (resets.unsqueeze(0) + ahead).reshape(-1), self.reset_dim, self.dtype)
        return resets.clone(), self.initial_state(u).view(n, N, -1)

    def functional_step(
        self,
        state: Tensor,
        elapsed: Tensor,
        seeds: Tensor,
        resets: Tensor,
        action: Tensor,
        pool: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Pure batched step with time limit and same-step autoreset; no host synchronisation.

        Returns ``(state, elapsed, resets, obs, reward, terminated, truncated, final_obs)``:
        ``state``/``elapsed``/``resets`` are those after the autoreset, ``obs`` the observation
        of ``state``, ``final_obs`` the observation of the state the step reached (before any
        reset). ``truncated`` is set at ``elapsed >= max_episode_steps`` whether or not the step
        also terminated, as Gymnasium's ``TimeLimit`` does. ``pool``: the next initial states from
        ``reset_pool`` (made at most its length of steps ago), used instead of drawing them here.
        """
        next_state, reward, terminated = self.dynamics(state, action)
        elapsed = elapsed + 1
        truncated = elapsed >= self.max_episode_steps
        done = terminated | truncated
        final_obs = self.observation(next_state)
        resets = resets + done.to(resets.dtype)
        if pool is not None:  # a finished row's k-th reset since the pool was made takes pool[k - 1]
            first, pooled = pool
            k = (resets - first - 1).clamp(0, pooled.shape[0] - 1)
            fresh = pooled.gather(0, k.view(1, -1, 1).expand(1, -1, pooled.shape[-1]))[0]
            state = torch.where(done.unsqueeze(-1), fresh, next_state)
        elif state.device.type == "cpu" and not torch.compiler.is_compiling():
            # eager on the CPU a host check is free, and most steps end no episode: draw the new initial
            # states of the finished rows only (the same numbers; ~half of a step's ops saved)
            rows = done.nonzero().squeeze(1)
            state = (
                next_state
                if rows.numel() == 0
                else next_state.index_copy(
                    0, rows, self.initial_state(uniforms(seeds[rows], resets[rows], self.reset_dim, self.dtype))
                )
            )
        else:
            fresh = self.initial_state(uniforms(seeds, resets, self.reset_dim, self.dtype))
            state = torch.where(done.unsqueeze(-1), fresh, next_state)
        elapsed = elapsed.masked_fill(done, 0)
        obs = self.observation(state)
        return state, elapsed, resets, obs, reward, terminated, truncated, final_obs

    @property
    def state(self) -> Tensor:
        """The physical state, ``[num_envs, state_dim]`` in ``self.dtype`` on ``self.device``."""
        return self._state

    @state.setter
    def state(self, value: Any) -> None:
        value = _as_tensor(value, self.device, self.dtype)
        if tuple(value.shape) != (self.num_envs, self.state_dim):
            raise ValueError(f"state must have shape ({self.num_envs}, {self.state_dim}), got {tuple(value.shape)}")
        self._state = value.clone()

    def _prepare_action(self, actions: Any) -> Tensor:
        if self._discrete:
            return _as_tensor(actions, self.device, torch.int64).reshape(self.num_envs)
        return _as_tensor(actions, self.device, self.dtype).reshape(self.num_envs, -1)

    def step(self, actions: Any):
        """Step every env; finished envs reset on the same step (see ``functional_step``)."""
        action = self._prepare_action(actions)
        (self._state, self.elapsed, self.resets, obs, reward, terminated, truncated, final_obs) = self.functional_step(
            self._state, self.elapsed, self.seeds, self.resets, action
        )
        info = {"final_obs": final_obs, "_final_obs": terminated | truncated}
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Reset every env.

        ``seed``: an int ``s`` gives env ``i`` the seed ``s + i``; a list gives one seed per env;
        ``None`` draws fresh seeds on the first reset and afterwards keeps the seeds and moves
        each env on to its next episode. ``options={"state": states}`` starts from the given
        states instead of sampled ones.
        """
        n = self.num_envs
        if seed is not None:
            if isinstance(seed, (int, np.integer)):
                seeds = [int(seed) + i for i in range(n)]
            else:
                seeds = [int(s) for s in seed]
                if len(seeds) != n:
                    raise ValueError(f"got {len(seeds)} seeds for {n} envs")
            self.seeds = torch.tensor(seeds, dtype=torch.int64, device=self.device)
            self.resets = torch.ones(n, dtype=torch.int64, device=self.device)
            self._seeded = True
        elif not self._seeded:
            fresh = np.random.default_rng().integers(0, 2**62, size=n, dtype=np.int64)
            self.seeds = torch.as_tensor(fresh).to(self.device)
            self.resets = torch.ones(n, dtype=torch.int64, device=self.device)
            self._seeded = True
        else:
            self.resets = self.resets + 1
        if options is not None and "state" in options:
            self.state = options["state"]
        else:
            self._state = self.initial_state(uniforms(self.seeds, self.resets, self.reset_dim, self.dtype))
        self.elapsed = torch.zeros(n, dtype=torch.int64, device=self.device)
        return self.observation(self._state), {}

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release: the envs are tensors."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.env_id}, num_envs={self.num_envs}, device={self.device}, dtype={self.dtype})"
        )
