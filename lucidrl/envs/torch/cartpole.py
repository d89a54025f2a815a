"""CartPole-v1 as a batched torch env.

The cart-pole balancing task of Barto, Sutton & Anderson (1983), "Neuronlike adaptive elements
that can solve difficult learning control problems", IEEE Trans. SMC 13(5), with the physics
and constants of Gymnasium 1.4's ``gymnasium/envs/classic_control/cartpole.py`` (explicit Euler,
tau = 0.02 s, force +-10 N, termination at |x| > 2.4 or |theta| > 12 degrees, reward 1 on every
step including the last). The arithmetic is written in the same order as Gymnasium's, so in
float64 the states agree with Gymnasium's bit for bit up to the last-ulp differences of
``sin``/``cos`` between NumPy and torch.

State = observation = ``[x, x_dot, theta, theta_dot]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lucidrl.envs.torch.base import TorchVectorEnv

GRAVITY = 9.8
MASS_POLE = 0.1
TOTAL_MASS = MASS_POLE + 1.0  # pole + cart
HALF_LENGTH = 0.5
POLEMASS_LENGTH = MASS_POLE * HALF_LENGTH
FORCE = 10.0
TAU = 0.02
THETA_LIMIT = 12 * 2 * math.pi / 360
X_LIMIT = 2.4


class CartPoleTorchEnv(TorchVectorEnv):
    """Batched CartPole-v1 (actions: int64 ``[N]`` in {0, 1}, 0 pushes left)."""

    env_id = "CartPole-v1"
    state_dim = 4
    reset_dim = 4

    def initial_state(self, u: Tensor) -> Tensor:
        # Uniform in [-0.05, 0.05) per coordinate, as Gymnasium's reset.
        return -0.05 + (0.05 - -0.05) * u

    def observation(self, state: Tensor) -> Tensor:
        return state.to(self.dtype)

    def dynamics(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, x_dot, theta, theta_dot = state.unbind(-1)
        force = action.to(state.dtype) * (2 * FORCE) - FORCE  # exactly +-10
        cos_t = torch.cos(theta)
        sin_t = torch.sin(theta)
        # Same operation order as Gymnasium's step (so float64 rounding matches).
        temp = (force + POLEMASS_LENGTH * theta_dot.square() * sin_t) / TOTAL_MASS
        theta_acc = (GRAVITY * sin_t - cos_t * temp) / (
            HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos_t.square() / TOTAL_MASS)
        )
        x_acc = temp - POLEMASS_LENGTH * theta_acc * cos_t / TOTAL_MASS
        x_new = x + TAU * x_dot
        theta_new = theta + TAU * theta_dot
        next_state = torch.stack((x_new, x_dot + TAU * x_acc, theta_new, theta_dot + TAU * theta_acc), dim=-1)
        # |v| > c is the same test as v < -c or v > c.
        terminated = (x_new.abs() > X_LIMIT) | (theta_new.abs() > THETA_LIMIT)
        reward = torch.ones_like(x)
        return next_state, reward, terminated
