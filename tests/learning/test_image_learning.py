"""The image pipeline learns: PPO, A2C, TRPO, VPG and DQN with the Nature CNN solve a tiny synthetic image env.

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
        img[0, :, x : x + 4] = 255
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


def cnn_weights(model) -> list[torch.Tensor]:
    encoders = (
        [model.q_net.encoder]
        if hasattr(model, "q_net")
        else [e for e in (model.agent.encoder, model.agent.critic_encoder) if e is not None]
    )
    return [p.detach().clone() for e in encoders for p in e.parameters()]


# (algorithm, its settings, the env-step budget within which it must reach 0.95)
CASES = {
    "PPO": (dict(n_envs=4, n_steps=64, batch_size=64, n_epochs=4, learning_rate=1e-3), 3_072),
    "A2C": (dict(n_envs=8, n_steps=5, learning_rate=1e-3), 3_000),
    "TRPO": (dict(n_envs=4, n_steps=64, batch_size=64, cg_max_steps=10), 1_024),
    "VPG": (dict(n_envs=4, n_steps=64, learning_rate=1e-3, n_critic_updates=5), 2_048),
    "DQN": (
        dict(
            n_envs=1,
            learning_rate=1e-3,
            buffer_size=1_000,
            learning_starts=100,
            train_freq=1,
            target_update_interval=100,
            exploration_fraction=0.3,
            exploration_final_eps=0.02,
        ),
        700,
    ),
}


@pytest.mark.parametrize("algo", list(CASES))
def test_every_algorithm_trains_its_cnn_and_learns_to_see_the_bar(algo):
    settings, budget = CASES[algo]
    model = getattr(lucidrl, algo)(BarSideEnv, net_arch=[], seed=0, verbose=0, **settings)
    # the fast backend's networks are for flat observations (GAE, which sees no network, may be fast)
    assert all("reference" in line for line in model.backend_lines if not line.startswith("gae:"))
    before = cnn_weights(model)
    assert before and type((model.q_net if algo == "DQN" else model.agent).encoder).__name__ == "NatureCNN"
    first = []

    def record(m, metrics):  # the CNN's weights after the first gradient step(s)
        if not first and m.n_updates > 0:
            first.append(cnn_weights(m))

    model.learn(budget, callback=record)
    # the first update (PPO: its epochs; DQN: its first round of gradient steps) moved every CNN weight tensor,
    # the actor's and the critic's where they have their own
    assert all(not torch.equal(a, b) for a, b in zip(before, first[0])), (
        f"{algo}: the first update left the CNN as it was"
    )
    after = success_rate(model)
    assert after >= 0.95, f"{algo} with the CNN named the bar's side in only {after:.2f} of pictures"
    if algo == "DQN":
        assert model.replay.obs.dtype == model.replay.next_obs.dtype == torch.uint8  # pixels kept as bytes
