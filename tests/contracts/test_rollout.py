"""Episode ends in rollouts: both of Gymnasium's autoreset modes give the same transitions and values."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from lucidrl.advantages import gae
from lucidrl.envs import make_vec_env
from lucidrl.networks import CategoricalHead
from lucidrl.rollout import RolloutCollector


class CounterEnv(gym.Env):
    """obs = steps taken in this episode; reward = 1 + obs; terminates after ``terminate_at`` steps if set."""

    observation_space = gym.spaces.Box(0, 1000, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, terminate_at=None):
        self.terminate_at = terminate_at

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return np.array([self.t], np.float32), float(self.t), terminated, False, {}


class KnownValueAgent(torch.nn.Module):
    """Uniform policy; V(s) = 10 * obs + 1, so the value of any observation is recognisable."""

    head = CategoricalHead(2)

    def value(self, obs):
        return obs[..., 0] * 10 + 1

    def forward(self, obs):
        return torch.zeros(*obs.shape[:-1], 2), self.value(obs)


def _venv(mode, terminate_at=None, max_steps=None):
    def make():
        env = CounterEnv(terminate_at)
        return gym.wrappers.TimeLimit(env, max_steps) if max_steps else env

    return gym.vector.SyncVectorEnv([make], autoreset_mode=mode)


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
def test_truncation_bootstraps_from_the_final_observation(mode):
    r = RolloutCollector(_venv(mode, max_steps=4), torch.device("cpu"), seed=0).collect(KnownValueAgent(), 12)
    rows = torch.nonzero(r.truncated[:, 0]).flatten().tolist()
    assert rows, "the time limit should have truncated an episode"
    for t in rows:
        assert r.next_values[t, 0].item() == 10 * 4 + 1  # V(final obs = 4), not V(first obs of the next episode)
    assert r.episode_lengths == [4] * len(r.episode_lengths)
    assert r.episode_returns == [1 + 2 + 3 + 4] * len(r.episode_returns)
    if mode == AutoresetMode.NEXT_STEP:  # the row after each end is a reset row, marked invalid
        assert r.valid is not None
        assert [t + 1 for t in rows if t + 1 < 12] == torch.nonzero(~r.valid[:, 0]).flatten().tolist()
    else:
        assert r.valid is None


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
def test_termination_is_flagged_and_masks_the_bootstrap(mode):
    r = RolloutCollector(_venv(mode, terminate_at=3, max_steps=100), torch.device("cpu"), seed=0).collect(
        KnownValueAgent(), 9
    )
    assert not r.truncated.any()
    rows = torch.nonzero(r.terminated[:, 0]).flatten().tolist()
    adv, _ = gae(r.rewards, r.values_old, r.next_values, r.terminated, r.truncated, 0.9, 0.7)
    for t in rows:  # Â = r - V(s): nothing after a terminal state
        torch.testing.assert_close(adv[t], r.rewards[t] - r.values_old[t])


def test_both_modes_give_the_same_advantages_per_episode():
    agent, out = KnownValueAgent(), {}
    for mode in (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP):
        r = RolloutCollector(_venv(mode, terminate_at=None, max_steps=3), torch.device("cpu"), seed=0).collect(
            agent, 11
        )
        adv, ret = gae(r.rewards, r.values_old, r.next_values, r.terminated, r.truncated, 0.9, 0.8)
        keep = torch.ones_like(r.rewards, dtype=torch.bool) if r.valid is None else r.valid
        out[mode] = (adv[keep][:6], r.obs[keep][:6, 0])  # the first two complete episodes
    torch.testing.assert_close(out[AutoresetMode.SAME_STEP][1], out[AutoresetMode.NEXT_STEP][1])
    torch.testing.assert_close(out[AutoresetMode.SAME_STEP][0], out[AutoresetMode.NEXT_STEP][0])


def test_native_cartpole_vector_env_rollout_shapes_and_flags():
    venv = make_vec_env("CartPole-v1", 4, seed=0)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP  # Gymnasium's native CartPole
    from lucidrl.networks import ActorCritic

    ac = ActorCritic(venv.single_observation_space, venv.single_action_space)
    r = RolloutCollector(venv, torch.device("cpu"), seed=0).collect(ac, 64)
    assert r.obs.shape == (64, 4, 4) and r.actions.shape == (64, 4) and r.params_old.shape == (64, 4, 2)
    assert r.actions.dtype == torch.long and r.rewards.dtype == torch.float32
    done = r.terminated | r.truncated
    assert r.episode_returns, "a random policy ends CartPole episodes within 64 steps"
    # a reset row follows every episode end and nothing else is invalid
    assert torch.equal(~r.valid[1:], done[:-1])
    assert sum(r.episode_lengths) <= r.n_transitions


def test_minibatches_are_each_epochs_permutation_cut_in_order():
    """Minibatch j of an epoch holds the samples order[j*bs:(j+1)*bs] of that epoch's permutation (drawn from the
    generator), every sample once per epoch; the last minibatch may be shorter."""
    from lucidrl.rollout import minibatches

    batch = {"x": torch.arange(10.0), "y": torch.arange(10) * 2}
    got = list(minibatches(batch, 4, 2, torch.Generator().manual_seed(3)))
    g = torch.Generator().manual_seed(3)
    expected = []
    for epoch in range(2):
        order = torch.randperm(10, generator=g)
        expected += [(epoch, order[s : s + 4]) for s in range(0, 10, 4)]
    assert [e for e, _ in got] == [e for e, _ in expected] == [0, 0, 0, 1, 1, 1]
    for (_, mb), (_, idx) in zip(got, expected):
        assert torch.equal(mb["x"], idx.float()) and torch.equal(mb["y"], idx * 2)
