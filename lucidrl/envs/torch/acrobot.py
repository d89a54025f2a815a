"""Acrobot-v1 as a batched torch env.

The two-link underactuated swing-up task of Sutton (1996), "Generalization in reinforcement
learning: successful examples using sparse coarse coding", NIPS 8, with the equations of motion
of Sutton & Barto's book (the "book" variant, as in Geramifard et al.'s RLPy, from which
Gymnasium's version derives). Constants, integration (one classical Runge-Kutta-4 step of
dt = 0.2 s), angle wrapping, velocity bounds, reward (-1 per step, 0 on the terminating step)
and termination (-cos(t1) - cos(t1 + t2) > 1) follow Gymnasium 1.4's
``gymnasium/envs/classic_control/acrobot.py``; the arithmetic keeps Gymnasium's operation order.

State: ``[theta1, theta2, dtheta1, dtheta2]``; observation:
``[cos t1, sin t1, cos t2, sin t2, dtheta1, dtheta2]``; actions int64 in {0, 1, 2}
(torque -1, 0, +1). Initial states are uniform in [-0.1, 0.1) and rounded to float32, as
Gymnasium's reset does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lucidrl.envs.torch.base import TorchVectorEnv

PI = math.pi
DT = 0.2
MAX_VEL_1 = 4 * PI
MAX_VEL_2 = 9 * PI
# Link masses, length of link 1, centre-of-mass positions, moments of inertia, gravity.
M1, M2, L1, LC1, LC2, I1, I2, G = 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 9.8


def _wrap(x: Tensor, low: float, high: float) -> Tensor:
    """Gymnasium's ``wrap`` (subtract / add the period while out of range), unrolled twice:
    one RK4 step moves an angle by less than two periods, and repeated subtraction keeps
    Gymnasium's rounding."""
    period = high - low
    x = torch.where(x > high, x - period, x)
    x = torch.where(x > high, x - period, x)
    x = torch.where(x < low, x + period, x)
    return torch.where(x < low, x + period, x)


def _derivatives(y: Sequence[Tensor], torque: Tensor):
    """Time derivatives of the state y = (θ1, θ2, θ1', θ2') (the book's equations), in Gymnasium's operation order."""
    t1, t2, d1_, d2_ = y
    cos_t2 = torch.cos(t2)
    sin_t2 = torch.sin(t2)
    d1 = M1 * LC1**2 + M2 * (L1**2 + LC2**2 + 2 * L1 * LC2 * cos_t2) + I1 + I2
    d2 = M2 * (LC2**2 + L1 * LC2 * cos_t2) + I2
    phi2 = M2 * LC2 * G * torch.cos(t1 + t2 - PI / 2.0)
    phi1 = (
        -M2 * L1 * LC2 * d2_**2 * sin_t2
        - 2 * M2 * L1 * LC2 * d2_ * d1_ * sin_t2
        + (M1 * LC1 + M2 * L1) * G * torch.cos(t1 - PI / 2)
        + phi2
    )
    dd2 = (torque + d2 / d1 * phi1 - M2 * L1 * LC2 * d1_**2 * sin_t2 - phi2) / (M2 * LC2**2 + I2 - d2**2 / d1)
    dd1 = -(d2 * dd2 + phi1) / d1
    return d1_, d2_, dd1, dd2


class AcrobotTorchEnv(TorchVectorEnv):
    """Batched Acrobot-v1."""

    env_id = "Acrobot-v1"
    state_dim = 4
    reset_dim = 4

    def initial_state(self, u: Tensor) -> Tensor:
        return (-0.1 + (0.1 - -0.1) * u).to(torch.float32).to(self.dtype)

    def observation(self, state: Tensor) -> Tensor:
        t1, t2, d1, d2 = state.unbind(-1)
        return torch.stack((torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2), d1, d2), -1).to(self.dtype)

    def dynamics(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y = state.unbind(-1)
        torque = action.to(state.dtype) - 1.0
        half, sixth = DT / 2.0, DT / 6.0
        k1 = _derivatives(y, torque)
        k2 = _derivatives([a + half * b for a, b in zip(y, k1)], torque)
        k3 = _derivatives([a + half * b for a, b in zip(y, k2)], torque)
        k4 = _derivatives([a + DT * b for a, b in zip(y, k3)], torque)
        t1, t2, d1, d2 = [a + sixth * (b1 + 2 * b2 + 2 * b3 + b4) for a, b1, b2, b3, b4 in zip(y, k1, k2, k3, k4)]
        t1 = _wrap(t1, -PI, PI)
        t2 = _wrap(t2, -PI, PI)
        d1 = d1.clamp(-MAX_VEL_1, MAX_VEL_1)
        d2 = d2.clamp(-MAX_VEL_2, MAX_VEL_2)
        terminated = -torch.cos(t1) - torch.cos(t2 + t1) > 1.0
        reward = terminated.to(state.dtype) - 1.0
        return torch.stack((t1, t2, d1, d2), -1), reward, terminated
