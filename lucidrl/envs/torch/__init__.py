"""Batched classic-control environments as torch tensors, on any device.

``make_torch_vec_env("CartPole-v1", 4096, device="cuda")`` returns a ``gymnasium.vector.VectorEnv``
whose observations, rewards and flags are torch tensors on that device, with same-step
autoreset (``info["final_obs"]``), the registered time limit as truncation, and per-env seeding.
The dynamics follow Gymnasium 1.4's classic-control code operation for operation and are tested
step for step against it (``tests/math/test_torch_envs.py``). See ``base.TorchVectorEnv``.
"""

from __future__ import annotations

import torch

from lucidrl.envs.torch.acrobot import AcrobotTorchEnv
from lucidrl.envs.torch.base import TorchVectorEnv, uniforms
from lucidrl.envs.torch.cartpole import CartPoleTorchEnv
from lucidrl.envs.torch.mountain_car import MountainCarContinuousTorchEnv, MountainCarTorchEnv
from lucidrl.envs.torch.pendulum import PendulumTorchEnv
from lucidrl.errors import EnvError

TORCH_ENVS: dict[str, type[TorchVectorEnv]] = {
    cls.env_id: cls
    for cls in (
        CartPoleTorchEnv,
        AcrobotTorchEnv,
        PendulumTorchEnv,
        MountainCarTorchEnv,
        MountainCarContinuousTorchEnv,
    )
}


def has_torch_env(env_id: str) -> bool:
    """Whether ``env_id`` (exact registered id, e.g. ``"CartPole-v1"``) has a torch version."""
    return isinstance(env_id, str) and env_id in TORCH_ENVS


def make_torch_vec_env(
    env_id: str,
    num_envs: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int | list[int] | None = None,
    max_episode_steps: int | None = None,
) -> TorchVectorEnv:
    """Build the batched torch version of ``env_id`` and reset it once with ``seed``."""
    if not has_torch_env(env_id):
        raise EnvError(
            f"no batched torch env for {env_id!r}; vectorization='torch' supports only "
            f"{', '.join(TORCH_ENVS)}. Use vectorization='auto' or 'sync' for other envs."
        )
    env = TORCH_ENVS[env_id](num_envs, device=device, dtype=dtype, max_episode_steps=max_episode_steps)
    env.reset(seed=seed)
    return env


__all__ = [
    "TORCH_ENVS",
    "TorchVectorEnv",
    "has_torch_env",
    "make_torch_vec_env",
    "uniforms",
    "AcrobotTorchEnv",
    "CartPoleTorchEnv",
    "MountainCarContinuousTorchEnv",
    "MountainCarTorchEnv",
    "PendulumTorchEnv",
]
