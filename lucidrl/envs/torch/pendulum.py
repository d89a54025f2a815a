"""Pendulum-v1 as a batched torch env.

The inverted-pendulum swing-up task (a classic of the control literature, in the form of
OpenAI Gym's Pendulum) with the constants, integration (semi-implicit Euler, dt = 0.05 s), speed
clip (8 rad/s), torque clip (2 N m) and cost ``normalise(theta)**2 + 0.1 theta_dot**2 +
0.001 u**2`` of Gymnasium 1.4's ``gymnasium/envs/classic_control/pendulum.py``. No termination;
the time limit (200) truncates.

State: ``[theta, theta_dot]``; observation ``[cos theta, sin theta, theta_dot]``; action
``[N, 1]`` torque. Gymnasium's action space is float32 and NumPy keeps float32 in
``3.0 * u`` and ``0.001 * u**2``; this env does the same (in float64 mode too) so that its
float64 trajectories equal Gymnasium's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lucidrl.envs.torch.base import TorchVectorEnv

MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
G, M, L = 10.0, 1.0, 1.0


class PendulumTorchEnv(TorchVectorEnv):
    """Batched Pendulum-v1."""

    env_id = "Pendulum-v1"
    state_dim = 2
    reset_dim = 2

    def initial_state(self, u: Tensor) -> Tensor:
        # theta uniform in [-pi, pi), theta_dot in [-1, 1).
        theta = -math.pi + (math.pi - -math.pi) * u[..., 0]
        theta_dot = -1.0 + (1.0 - -1.0) * u[..., 1]
        return torch.stack((theta, theta_dot), -1)

    def observation(self, state: Tensor) -> Tensor:
        theta, theta_dot = state.unbind(-1)
        return torch.stack((torch.cos(theta), torch.sin(theta), theta_dot), -1).to(self.dtype)

    def dynamics(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        theta, theta_dot = state.unbind(-1)
        u = action[..., 0].to(torch.float32).clamp(-MAX_TORQUE, MAX_TORQUE)
        dtype = state.dtype
        wrapped = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi
        cost = wrapped**2 + 0.1 * theta_dot**2 + (0.001 * u**2).to(dtype)
        theta_dot = theta_dot + (3 * G / (2 * L) * torch.sin(theta) + (3.0 / (M * L**2) * u).to(dtype)) * DT
        theta_dot = theta_dot.clamp(-MAX_SPEED, MAX_SPEED)
        theta = theta + theta_dot * DT
        terminated = torch.zeros_like(theta, dtype=torch.bool)
        return torch.stack((theta, theta_dot), -1), -cost, terminated
