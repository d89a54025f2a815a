"""MountainCar-v0 and MountainCarContinuous-v0 as batched torch envs.

The under-powered car of Moore (1990), "Efficient memory-based learning for robot control"
(PhD thesis, Cambridge), in the form of Sutton & Barto's book, with the constants, update
order, bounds, inelastic left wall, goal tests and rewards of Gymnasium 1.4's
``gymnasium/envs/classic_control/mountain_car.py`` (discrete: force +-0.001, goal x >= 0.5,
reward -1 per step) and ``continuous_mountain_car.py`` (power 0.0015, goal x >= 0.45, reward
100 at the goal minus 0.1 a**2 per step, with the unclipped action).

State = observation = ``[position, velocity]``.

The continuous env of Gymnasium keeps its state in float32 and NumPy evaluates its step in
float32 except ``math.cos`` (float64) and, when the action is clipped, the Python-float force
term. ``MountainCarContinuousTorchEnv.dynamics`` reproduces that arithmetic in every dtype, so
its states are float32 numbers even in float64 mode. One difference: Gymnasium's reset leaves
a float64 position for the first step; here the initial position is rounded to float32 at once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lucidrl.envs.torch.base import TorchVectorEnv

MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
GRAVITY = 0.0025


def _initial_position(u: Tensor) -> Tensor:
    # Position uniform in [-0.6, -0.4), velocity 0.
    return -0.6 + (-0.4 - -0.6) * u


class MountainCarTorchEnv(TorchVectorEnv):
    """Batched MountainCar-v0 (actions int64 in {0, 1, 2}: push left, none, right)."""

    env_id = "MountainCar-v0"
    state_dim = 2
    reset_dim = 1
    FORCE = 0.001
    GOAL_POSITION = 0.5

    def initial_state(self, u: Tensor) -> Tensor:
        position = _initial_position(u[..., 0])
        return torch.stack((position, torch.zeros_like(position)), -1)

    def observation(self, state: Tensor) -> Tensor:
        return state.to(self.dtype)

    def dynamics(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        position, velocity = state.unbind(-1)
        push = (action.to(state.dtype) - 1.0) * self.FORCE
        velocity = velocity + (push + torch.cos(3 * position) * (-GRAVITY))
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED)
        position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION)
        # Inelastic wall on the left.
        velocity = torch.where((position == MIN_POSITION) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.GOAL_POSITION) & (velocity >= 0)
        reward = torch.full_like(position, -1.0)
        return torch.stack((position, velocity), -1), reward, terminated


class MountainCarContinuousTorchEnv(TorchVectorEnv):
    """Batched MountainCarContinuous-v0 (action ``[N, 1]`` force, clipped to [-1, 1])."""

    env_id = "MountainCarContinuous-v0"
    state_dim = 2
    reset_dim = 1
    POWER = 0.0015
    GOAL_POSITION = 0.45

    def initial_state(self, u: Tensor) -> Tensor:
        position = _initial_position(u[..., 0]).to(torch.float32).to(self.dtype)
        return torch.stack((position, torch.zeros_like(position)), -1)

    def observation(self, state: Tensor) -> Tensor:
        return state.to(self.dtype)

    def dynamics(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f32, f64 = torch.float32, torch.float64
        position, velocity = state.to(f32).unbind(-1)
        a = action[..., 0].to(f32)
        # cos of the float32 product 3 * position, evaluated in float64 (math.cos).
        slope = 0.0025 * torch.cos((3 * position).to(f64))
        # Unclipped force: float32 throughout; clipped force (a Python float +-1.0): the
        # acceleration is formed in float64 and rounded once.
        inside = a * self.POWER - slope.to(f32)
        clipped = (torch.sign(a).to(f64) * self.POWER - slope).to(f32)
        accel = torch.where(a.abs() > 1.0, clipped, inside)
        velocity = (velocity + accel).clamp(-MAX_SPEED, MAX_SPEED)
        position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION)
        velocity = torch.where((position == MIN_POSITION) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.GOAL_POSITION) & (velocity >= 0)
        dtype = state.dtype
        a_sq = a.to(dtype) ** 2 * 0.1
        reward = torch.where(terminated, 100.0, 0.0).to(dtype) - a_sq
        return torch.stack((position, velocity), -1).to(dtype), reward, terminated
