"""Tabular Q-learning: convergence to value iteration's Q*, the update by hand, the discretiser, the ε schedule;
Double Q-learning's update by hand, its convergence, and the maximisation bias it removes."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import lucidrl
from lucidrl.algos.q_learning import (
    Discretiser,
    apply_td_update,
    bootstrap_values,
    double_q_values,
    epsilon_greedy,
    exploration_rate,
    td_targets,
)


class Chain(gym.Env):
    """A deterministic 5-state chain: action 1 moves right, 0 moves left (wall at 0); -0.1 per step,
    +1 on reaching state 4, which is terminal. Observations: Discrete(5)."""

    N = 5
    observation_space = gym.spaces.Discrete(N)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = int(self.np_random.integers(0, self.N - 1))  # every non-terminal start state
        return self.s, {}

    def step(self, a):
        self.s = min(self.s + 1, self.N - 1) if a == 1 else max(self.s - 1, 0)
        terminated = self.s == self.N - 1
        return self.s, (1.0 if terminated else -0.1), terminated, False, {}


def chain_model():
    """P[s, a] = s', R[s, a], T[s, a] = terminated, read off the env's dynamics."""
    n = Chain.N
    nxt = np.zeros((n, 2), int)
    rew = np.zeros((n, 2))
    term = np.zeros((n, 2), bool)
    for s in range(n - 1):
        for a in range(2):
            nxt[s, a] = min(s + 1, n - 1) if a == 1 else max(s - 1, 0)
            term[s, a] = nxt[s, a] == n - 1
            rew[s, a] = 1.0 if term[s, a] else -0.1
    return nxt, rew, term


def value_iteration(gamma, tol=1e-12):
    """(E6) iterate Q <- r + γ (1 - terminated) max_a' Q(s', a') to its fixed point Q*."""
    nxt, rew, term = chain_model()
    q = np.zeros((Chain.N, 2))
    while True:
        new = rew + gamma * np.where(term, 0.0, q[nxt].max(axis=2))
        new[Chain.N - 1] = 0.0  # the terminal state is never left
        if np.abs(new - q).max() < tol:
            return new
        q = new


@pytest.mark.parametrize("update", ["q_learning", "double_q_learning"])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_q_learning_converges_to_value_iterations_q_star(n_envs, update):
    gamma = 0.9
    q_star = value_iteration(gamma)
    # ε = 1 throughout: a uniformly random behaviour policy, and still Q* (Q-learning is off-policy).
    # A time limit of 6 steps truncates many episodes: they must bootstrap, or Q drifts from Q*.
    env = lambda: gym.wrappers.TimeLimit(Chain(), max_episode_steps=6)  # noqa: E731
    m = lucidrl.QLearning(
        env,
        n_envs=n_envs,
        update=update,
        gamma=gamma,
        learning_rate=0.2,
        exploration_initial_eps=1.0,
        exploration_final_eps=1.0,
        seed=0,
        verbose=0,
    )
    m.learn(30_000)
    for q in (m.agent.q, *([m.agent.q2] if update == "double_q_learning" else [])):  # Double: both tables reach Q*
        assert np.abs(q.numpy()[: Chain.N - 1] - q_star[: Chain.N - 1]).max() < 1e-6
    assert (m.predict(np.arange(4), deterministic=True)[0] == 1).all()  # the greedy policy: go right


def test_masking_the_bootstrap_at_truncation_would_not_reach_q_star():
    """Control for the test above: the same run with truncation treated as termination ends elsewhere."""
    gamma = 0.9
    q_star = value_iteration(gamma)
    q = np.zeros((Chain.N, 2))
    rng = np.random.default_rng(0)
    nxt, rew, term = chain_model()
    s, t = 0, 0
    for _ in range(30_000):
        a = int(rng.integers(2))
        s2, r, terminated = nxt[s, a], rew[s, a], term[s, a]
        t += 1
        truncated = t == 6 and not terminated
        q[s, a] += 0.2 * (r + gamma * (0 if (terminated or truncated) else q[s2].max()) - q[s, a])
        s, t = (int(rng.integers(4)), 0) if (terminated or truncated) else (s2, t)
    assert np.abs(q[:4] - q_star[:4]).max() > 0.05


def test_one_update_by_hand_terminated_vs_truncated():
    gamma, alpha = 0.9, 0.5
    q = np.array([[0.0, 1.0], [2.0, 4.0], [0.0, 0.0]])
    states, actions = np.array([0, 0]), np.array([1, 1])
    next_states = np.array([1, 1])
    rewards = np.array([1.0, 1.0])
    terminated = np.array([True, False])  # the second transition is a truncation: it bootstraps
    v = bootstrap_values(q, next_states, "q_learning", eps=0.0)
    np.testing.assert_allclose(v, [4.0, 4.0])  # max_a' Q(s'=1, a')
    targets = td_targets(rewards, terminated, v, gamma)
    np.testing.assert_allclose(targets, [1.0, 1.0 + 0.9 * 4.0])
    # each on its own table: Q[0,1] = 1 + 0.5 (target - 1)
    for target in targets:
        qq = q.copy()
        apply_td_update(qq, states[:1], actions[:1], np.array([target]), alpha)
        assert qq[0, 1] == pytest.approx(1.0 + alpha * (target - 1.0))
        assert (np.delete(qq.ravel(), 1) == np.delete(q.ravel(), 1)).all()  # nothing else moved
    # both in one step hit the same entry: it moves once, by α times the mean TD error
    qq = q.copy()
    td = apply_td_update(qq, states, actions, targets, alpha)
    np.testing.assert_allclose(td, targets - 1.0)
    assert qq[0, 1] == pytest.approx(1.0 + alpha * np.mean(targets - 1.0))


def test_sarsa_and_expected_sarsa_targets():
    q = np.array([[1.0, 3.0, 2.0]])
    s = np.array([0])
    assert bootstrap_values(q, s, "sarsa", eps=0.3, next_actions=np.array([2]))[0] == 2.0
    # ε-greedy: greedy action w.p. 1-ε+ε/3, others ε/3 each
    eps = 0.3
    expected = (1 - eps + eps / 3) * 3.0 + eps / 3 * (1.0 + 2.0)
    assert bootstrap_values(q, s, "expected_sarsa", eps=eps)[0] == pytest.approx(expected)
    assert bootstrap_values(q, s, "expected_sarsa", eps=0.0)[0] == bootstrap_values(q, s, "q_learning", 0.0)[0]


def test_epsilon_greedy_is_greedy_at_zero_and_uniform_at_one():
    rng = np.random.default_rng(0)
    q = np.array([[0.0, 5.0, 1.0]])
    s = np.zeros(3000, int)
    assert (epsilon_greedy(q, s, 0.0, rng) == 1).all()
    counts = np.bincount(epsilon_greedy(q, s, 1.0, rng), minlength=3) / 3000
    np.testing.assert_allclose(counts, 1 / 3, atol=0.03)
    ties = np.bincount(epsilon_greedy(np.zeros((1, 4)), np.zeros(4000, int), 0.0, rng), minlength=4) / 4000
    np.testing.assert_allclose(ties, 0.25, atol=0.03)  # equal values: broken at random


def test_discretiser_maps_bounds_and_edges_to_the_right_bins():
    d = Discretiser(low=np.array([-1.0, 0.0]), high=np.array([1.0, 10.0]), n_bins=np.array([4, 5]))
    assert d.n_states == 20
    x = np.array(
        [
            [-1.0, 0.0],  # lows -> first bins
            [1.0, 10.0],  # highs -> last bins (not one past)
            [-5.0, 99.0],  # outside -> clipped
            [-0.5, 2.0],  # an inner edge belongs to the bin above it
            [-0.5001, 1.999],
            [0.0, 5.0],
        ]
    )
    np.testing.assert_array_equal(d.bins(x), [[0, 0], [3, 4], [0, 4], [1, 1], [0, 0], [2, 2]])
    np.testing.assert_array_equal(d(x), [0, 19, 4, 6, 0, 12])  # row-major: bin_0 * 5 + bin_1
    one = Discretiser(np.array([0.0]), np.array([1.0]), np.array([1]))
    assert (one(np.array([[-3.0], [0.5], [7.0]])) == 0).all()  # one bin ignores the dimension


def test_cartpole_gets_its_default_bounds():
    m = lucidrl.QLearning("CartPole-v1", preset=False, n_bins=[1, 6, 12, 12], seed=0, verbose=0)
    np.testing.assert_allclose(m.discretiser.high, [2.4, 3.0, 0.21, 3.5])
    assert m.agent.q.shape == (1 * 6 * 12 * 12, 2)


@pytest.mark.parametrize("decay", ["linear", "exponential"])
def test_epsilon_schedule_hits_its_end_points(decay):
    f = lambda p: exploration_rate(p, 1.0, 0.05, 0.4, decay)  # noqa: E731
    assert f(1.0) == 1.0
    assert f(0.6) == pytest.approx(0.05) and f(0.3) == pytest.approx(0.05) and f(0.0) == pytest.approx(0.05)
    mid = f(0.8)  # half of the decay
    assert mid == pytest.approx(0.525 if decay == "linear" else np.sqrt(0.05))
    vals = [f(p) for p in np.linspace(1, 0, 50)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))  # never increases


def test_training_reaches_the_final_epsilon_and_logs_it():
    seen = []
    m = lucidrl.QLearning(
        "FrozenLake-v1", preset=False, exploration_fraction=0.5, exploration_final_eps=0.1, seed=0, verbose=0
    )
    m.learn(4000, callback=lambda model, metrics: seen.append(metrics["train/exploration_rate"]), log_interval=500)
    assert seen[0] < 1.0 and seen[-1] == pytest.approx(0.1) and m.exploration_rate == pytest.approx(0.1)
    assert torch.is_tensor(m.agent.q) and not m.agent.q.requires_grad


def test_double_q_learning_picks_with_one_table_and_values_with_the_other():
    """(E7) by hand: the target of an update of Q_A values Q_A's greedy action at s' with Q_B."""
    q_a = np.array([[0.0, 0.0, 0.0], [1.0, 5.0, 2.0]])
    q_b = np.array([[0.0, 0.0, 0.0], [4.0, -1.0, 3.0]])
    s_next = np.array([1])
    assert double_q_values(q_a, q_b, s_next)[0] == -1.0  # Q_A picks action 1; Q_B says -1
    assert double_q_values(q_b, q_a, s_next)[0] == 1.0  # Q_B picks action 0; Q_A says 1
    assert bootstrap_values(q_a, s_next, "q_learning", 0.0)[0] == 5.0  # Q-learning: the max of one table
    # ε-greedy acts on Q_A + Q_B: [5, 4, 5] at s=1 (ties broken at random among actions 0 and 2)
    picks = epsilon_greedy(q_a, np.ones(400, int), 0.0, np.random.default_rng(0), q_b)
    assert set(np.unique(picks)) == {0, 2}


class MaximisationBias(gym.Env):
    """Sutton & Barto 2018, Example 6.7: from A (state 0) action 0 ("left") leads to B with reward 0, any other
    action ends the episode with 0; from B (state 1) each of the 8 actions ends it with a reward ~ N(-0.1, 1).
    With γ = 1: Q*(A, left) = -0.1 < Q*(A, right) = 0."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return 0, {}

    def step(self, a):
        if self.s == 0:
            self.s = 1 if a == 0 else 0
            return self.s, 0.0, a != 0, False, {}
        return 1, float(self.np_random.normal(-0.1, 1.0)), True, False, {}


def test_q_learning_overestimates_where_double_q_learning_does_not():
    """The maximisation bias (S&B 6.7): after 80 steps (~40 episodes) of ε = 0.1, α = 0.1 from Q = 0, Q-learning's
    Q(A, left) is pulled up by max_b Q(B, b), the max of 8 noisy estimates of -0.1, above Q(A, right) = 0 on most
    seeds: its greedy policy goes left. Double Q-learning's estimate is not (its noise is not the one selected):
    it prefers left on few seeds. (Measured, 40 seeds: mean Q(A, left) 0.090 vs -0.000, left on 92% vs 15%.)"""
    estimates, lefts = {}, {}
    for update in ("q_learning", "double_q_learning"):
        est, left = [], []
        for seed in range(20):
            eps = {"exploration_initial_eps": 0.1, "exploration_final_eps": 0.1}
            m = lucidrl.QLearning(
                MaximisationBias(), update=update, gamma=1.0, learning_rate=0.1, seed=seed, verbose=0, **eps
            )
            m.learn(80)
            q = m.agent.q.numpy() if update == "q_learning" else (m.agent.q.numpy() + m.agent.q2.numpy()) / 2
            est.append(q[0, 0])
            left.append(q[0, 0] > q[0, 1:].max())  # strictly: a tie is not a preference
        estimates[update], lefts[update] = float(np.mean(est)), float(np.mean(left))
    assert estimates["q_learning"] > 0.05 and lefts["q_learning"] >= 0.7, (estimates, lefts)
    assert estimates["double_q_learning"] < 0.01 and lefts["double_q_learning"] <= 0.3, (estimates, lefts)
