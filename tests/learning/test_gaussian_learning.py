"""The Gaussian policy learns: a one-step continuous toy problem solved in 4,096 steps (about 1 s).

The env shows x ~ U[-1, 1]², the best action is (0.8 x₁, -0.5 x₂), the reward -‖a - a*‖². The
policy that always answers 0 scores -(0.64 + 0.25)/3 ≈ -0.30; a learned mean scores close to 0.
(Pendulum-v1 takes minutes: it lives in benchmarks/continuous.py, not in CI.)
"""

import gymnasium as gym
import numpy as np
import pytest

import lucidrl


class LinearTarget(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Box(-1, 1, (2,))

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self.x, {}

    def step(self, action):
        reward = -float(np.square(np.asarray(action) - self.x * np.array([0.8, -0.5])).sum())
        return self.x, reward, True, False, {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "algo, kwargs",
    [
        ("PPO", dict(n_envs=4, n_steps=64, batch_size=64, n_epochs=10, learning_rate=3e-3)),
        ("TRPO", dict(n_envs=4, n_steps=128, batch_size=128)),
    ],
)
def test_gaussian_policy_learns_a_linear_target(algo, kwargs):
    model = getattr(lucidrl, algo)(LinearTarget, preset=False, seed=0, verbose=0, **kwargs)
    model.learn(4096)
    mean, _ = lucidrl.evaluate(model, LinearTarget(), n_episodes=200)
    assert mean > -0.03, f"{algo}: deterministic return {mean:.3f} (zero policy: -0.30)"
