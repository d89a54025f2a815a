"""The image pipeline learns: PPO, A2C and DQN with the Nature CNN solve a tiny synthetic image env.

``BarSideEnv``: each observation is one 36x36 grey uint8 picture (channels first, (1, 36, 36),
the smallest size the Nature CNN takes) that is black but for a bright vertical bar, 4 pixels
wide, at a random place in its left or right half. The action is 0 (left) or 1 (right); reward
1 when it names the bar's side, else 0; every episode is one step. Nothing but the pixels tells
the side, so a success rate near 1 means the CNN learnt to see the bar; a random or blind policy
scores 0.5.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

import lucidrl

pytestmark = pytest.mark.slow


class BarSideEnv(gym.Env):
    """One-step episodes: which half of the picture holds the bright bar? (see the module docstring)"""

    metadata = {"render_modes": []}
    size = 36

    def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (1, self.size, self.size), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self._side = 0

    def _picture(self) -> np.ndarray:
        self._side = int(self.np_random.integers(2))
        half = self.size // 2
        x = int(self.np_random.integers(0, half - 4)) + half * self._side
        img = np.zeros((1, self.size, self.size), np.uint8)
        img[0, :, x:x + 4] = 255
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._picture(), {}

    def step(self, action):
        reward = float(int(action) == self._side)
        return self._picture(), reward, True, False, {}


def success_rate(model, n=200, seed=123) -> float:
    """Fraction of n fresh pictures whose side the deterministic policy names."""
    env = BarSideEnv()
    obs, _ = env.reset(seed=seed)
    hits = 0
    for _ in range(n):
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, *_ = env.step(action)
        hits += reward
    return hits / n


def test_ppo_cnn_learns_to_see_the_bar():
    model = lucidrl.PPO(BarSideEnv, n_envs=4, n_steps=64, batch_size=64, n_epochs=4, learning_rate=1e-3,
                        net_arch=[], seed=0, verbose=0)
    assert type(model.agent.encoder).__name__ == "NatureCNN"
    before = success_rate(model)
    model.learn(3_072)
    after = success_rate(model)
    assert after >= 0.95, f"PPO with the CNN named the bar's side in only {after:.2f} of pictures (before: {before:.2f})"


def test_a2c_cnn_learns_to_see_the_bar():
    model = lucidrl.A2C(BarSideEnv, n_envs=8, n_steps=5, learning_rate=1e-3, net_arch=[], seed=0, verbose=0)
    model.learn(3_000)
    after = success_rate(model)
    assert after >= 0.95, f"A2C with the CNN named the bar's side in only {after:.2f} of pictures"


def test_dqn_cnn_learns_to_see_the_bar():
    model = lucidrl.DQN(BarSideEnv, n_envs=1, learning_rate=1e-3, buffer_size=1_000, learning_starts=100,
                        train_freq=1, target_update_interval=100, exploration_fraction=0.3,
                        exploration_final_eps=0.02, net_arch=[], seed=0, verbose=0)
    model.learn(700)
    assert model.replay.obs.dtype == model.replay.next_obs.dtype == torch.uint8  # pixels kept as bytes
    after = success_rate(model)
    assert after >= 0.95, f"DQN with the CNN named the bar's side in only {after:.2f} of pictures"
