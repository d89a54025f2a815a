"""Episode ends are written once (``rollout.VectorStepper``) and every collector sees the same transitions
whichever autoreset mode the vector env uses: the on-policy collector (PPO, A2C, TRPO, VPG), DQN's
replay memory and tabular Q-learning's updates, each under SAME_STEP and NEXT_STEP.

``ScriptedEnv``: one action; the observation is the step count t in the episode (a float); reward
t + 1. Even-numbered episodes of a copy terminate after 3 steps, odd ones are truncated (a time
limit) after 2. So every copy's transitions are known in advance, and in NEXT_STEP mode the
reset step after each episode must be no transition at all.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import lucidrl
from lucidrl.rollout import VectorStepper

MODES = {"same_step": AutoresetMode.SAME_STEP, "next_step": AutoresetMode.NEXT_STEP}


class ScriptedEnv(gym.Env):
    observation_space = gym.spaces.Box(0.0, 10.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(1)

    def __init__(self):
        self.episode = 0  # episodes finished (counted at their end, so that extra resets change nothing)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float(self.t)
        terminated = self.episode % 2 == 0 and self.t == 3
        truncated = self.episode % 2 == 1 and self.t == 2
        self.episode += terminated or truncated
        return np.array([float(self.t)], np.float32), reward, terminated, truncated, {}


def expected_transitions(n: int) -> list[tuple[float, float, bool, bool, float]]:
    """(s, r, terminated, truncated, true s') of one copy's first n transitions."""
    out, episode = [], 0
    while len(out) < n:
        length = 3 if episode % 2 == 0 else 2
        for t in range(length):
            out.append((float(t), float(t + 1), episode % 2 == 0 and t == 2, episode % 2 == 1 and t == 1, float(t + 1)))
        episode += 1
    return out[:n]


def transitions_in(calls: int, mode: str) -> int:
    """Transitions of one copy in ``calls`` calls of step: NEXT_STEP spends one call on a reset after each episode."""
    if mode == "same_step":
        return calls
    n = episode = 0
    while calls > 0:
        length = 3 if episode % 2 == 0 else 2
        n += min(length, calls)
        calls -= length + 1
        episode += 1
    return n


def vector_env(mode: str, n_envs: int = 2) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([ScriptedEnv] * n_envs, autoreset_mode=MODES[mode])


@pytest.mark.parametrize("mode", list(MODES))
def test_the_stepper_turns_both_modes_into_the_same_transitions(mode):
    stepper = VectorStepper(vector_env(mode), seed=0)
    rows: list[list] = [[], []]
    returns = []
    obs = stepper.obs
    for _ in range(14):
        tr = stepper.step(np.zeros(2, np.int64))
        next_obs = tr.next_obs()
        for i in range(2):
            if tr.valid[i]:
                rows[i].append(
                    (
                        float(obs[i, 0]),
                        float(tr.reward[i]),
                        bool(tr.terminated[i]),
                        bool(tr.truncated[i]),
                        float(next_obs[i, 0]),
                    )
                )
        returns += tr.episode_returns
        obs = tr.obs
    n = min(len(r) for r in rows)
    assert n >= 10 and rows[0][:n] == rows[1][:n] == expected_transitions(n)
    assert returns[:4] == [6.0, 6.0, 3.0, 3.0]  # 1+2+3 and 1+2, each counted once, per copy
    assert (mode == "next_step") == stepper.next_step


@pytest.mark.parametrize("mode", list(MODES))
def test_the_on_policy_collector_sees_the_same_transitions_and_bootstraps_from_the_true_final_state(mode):
    model = lucidrl.PPO(vector_env(mode), n_steps=12, batch_size=8, seed=0, verbose=0, net_arch=[8])
    rollout = model._rollout_collector().collect(model.agent, 12)
    batch = rollout.flat(
        rewards=rollout.rewards,
        terminated=rollout.terminated,
        truncated=rollout.truncated,
        next_values=rollout.next_values,
    )
    valid = np.ones((12, 2), bool) if rollout.valid is None else rollout.valid.numpy()
    per_copy = [[], []]
    k = 0
    for t in range(12):
        for i in range(2):
            if valid[t, i]:
                per_copy[i].append(k)
            k += valid[t, i]
    n = min(map(len, per_copy))
    expected = expected_transitions(n)
    for i in range(2):
        rows = per_copy[i][:n]
        got = [
            (
                float(batch["obs"][j, 0]),
                float(batch["rewards"][j]),
                bool(batch["terminated"][j]),
                bool(batch["truncated"][j]),
            )
            for j in rows
        ]
        assert got == [e[:4] for e in expected]
        # V(s') of the true next state where the episode did not terminate (after a truncation: the final state)
        for j, e in zip(rows, expected):
            if not e[2]:
                v = model.agent.value(torch.tensor([[e[4]]]))
                assert torch.allclose(batch["next_values"][j], v, atol=1e-6)
    assert (rollout.valid is not None) == (mode == "next_step")  # reset rows only in NEXT_STEP mode


@pytest.mark.parametrize("mode", list(MODES))
def test_dqn_stores_the_same_transitions_terminated_not_done(mode):
    model = lucidrl.DQN(
        vector_env(mode, n_envs=1),
        learning_starts=19,
        train_freq=20,
        batch_size=4,
        buffer_size=100,
        seed=0,
        verbose=0,
        net_arch=[8],
    )
    model.learn(20)
    n = len(model.replay)
    assert n == transitions_in(20, mode) == (20 if mode == "same_step" else 15)
    got = [
        (
            float(model.replay.obs[j, 0]),
            float(model.replay.rewards[j]),
            bool(model.replay.terminated[j]),
            float(model.replay.next_obs[j, 0]),
        )
        for j in range(n)
    ]
    assert got == [(e[0], e[1], e[2], e[4]) for e in expected_transitions(n)]


@pytest.mark.parametrize("mode", list(MODES))
def test_q_learning_updates_on_the_same_transitions(mode, monkeypatch):
    model = lucidrl.QLearning(vector_env(mode, n_envs=1), bounds=[0.0, 10.0], n_bins=[10], seed=0, verbose=0)
    seen = []
    update = model._td_update

    def record(q, states, actions, targets, alpha):
        seen.extend(zip(states.tolist(), targets.tolist()))
        return update(q, states, actions, targets, alpha)

    monkeypatch.setattr(model, "_td_update", record)
    model.learn(20)
    n = len(seen)
    assert n == transitions_in(20, mode)
    # the state index is the step count; the target is r + γ max Q(s') with s' the true next state, 0 after termination
    expected = expected_transitions(n)
    assert [s for s, _ in seen] == [int(e[0]) for e in expected]
    assert all(y == e[1] for (_, y), e in zip(seen, expected) if e[2])  # after a termination: r, no bootstrap
