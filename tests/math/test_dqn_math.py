"""DQN's math, checked exactly: targets at episode ends, Double DQN, target updates, ε, replay, gradients.

The fast backend's twins (``lucidrl.fast.dqn``) are tested equal to the reference on small networks in
``tests/math/test_backends.py``; the checks here that name ``lucidrl.fast`` cover what those do not reach:
the 256-wide network on batches of 2,048 and 64 rows, and greedy acting one row at a time."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import lucidrl
from lucidrl.algos.dqn import dqn_loss, dqn_train_round, exploration_rate, greedy_policy, soft_update, td_target
from lucidrl.fast import dqn as fast_dqn
from lucidrl.fast.mlp import MLPCore
from lucidrl.replay import ReplayBuffer
from lucidrl.rollout import VectorStepper


class Counter(gym.Env):
    """obs = steps taken so far in the episode; reward 1; terminates when the count reaches ``term_at``."""

    observation_space = gym.spaces.Box(0.0, 1000.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, term_at: int):
        self.term_at = term_at
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, self.t >= self.term_at, False, {}


def _counter_vec(mode: AutoresetMode, term_at: int, limit: int, n: int = 2):
    make = lambda: gym.wrappers.TimeLimit(Counter(term_at), max_episode_steps=limit)  # noqa: E731
    return gym.vector.SyncVectorEnv([make] * n, autoreset_mode=mode)


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
@pytest.mark.parametrize("term_at,limit", [(3, 10), (100, 4)])  # episodes that terminate / are truncated
def test_buffer_stores_the_true_next_obs_and_terminated_in_both_autoreset_modes(mode, term_at, limit):
    env = _counter_vec(mode, term_at, limit)
    m = lucidrl.DQN(
        env,
        seed=0,
        verbose=0,
        preset=False,
        learning_starts=8,
        batch_size=4,
        train_freq=5,
        buffer_size=1000,
        net_arch=[8],
    )
    m.learn(60)
    rb = m.replay
    n = len(rb)
    obs, nxt = rb.obs[:n, 0], rb.next_obs[:n, 0]
    term = rb.terminated[:n].bool()
    # the true next observation: s' = s + 1, never a reset observation 0
    assert torch.equal(nxt, obs + 1), "a reset observation was stored as s'"
    end = min(term_at, limit)
    assert obs.max().item() == end - 1 and (nxt == end).any()
    # terminated only at a true terminal state; a time-limit end is stored as not terminated
    assert torch.equal(term, nxt == term_at)
    if term_at > limit:
        assert not term.any() and (nxt == limit).sum() > 0  # truncations are there, and bootstrapped
    # NEXT_STEP reset steps are not transitions: 60 env steps, minus one per finished episode
    episodes = 60 // 2 // (end + (mode == AutoresetMode.NEXT_STEP))
    expected = 60 - (2 * episodes if mode == AutoresetMode.NEXT_STEP else 0)
    if mode == AutoresetMode.NEXT_STEP:
        assert n in (expected, expected + 2)
    else:
        assert n == 60
    # the target bootstraps on truncation: only terminated transitions lose the γ max Q term
    y = td_target(rb.rewards[:n], rb.terminated[:n], torch.full((n, 2), 5.0), 0.9)
    assert torch.allclose(y, torch.where(term, torch.tensor(1.0), torch.tensor(1.0 + 0.9 * 5.0)))


class RisingCounter(Counter):
    """Counter whose reward is the step number: an episode of ``k`` steps returns 1 + 2 + ... + k."""

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float(self.t), terminated, truncated, info


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
@pytest.mark.parametrize("term_at,limit", [(3, 10), (100, 4)])
def test_episode_returns_and_lengths_carry_across_collection_chunks(mode, term_at, limit):
    make = lambda: gym.wrappers.TimeLimit(RisingCounter(term_at), max_episode_steps=limit)  # noqa: E731
    env = gym.vector.SyncVectorEnv([make] * 2, autoreset_mode=mode)
    m = lucidrl.DQN(env, seed=0, verbose=0, preset=False, learning_starts=8, batch_size=4, net_arch=[8])
    m.replay = ReplayBuffer(1000, m.observation_space, m.action_space)
    m._stepper = VectorStepper(m.env, seed=m.config.seed)  # what learn() starts a collection with
    returns, lengths = [], []
    for _ in range(6):  # chunks of 5 calls: episodes of 3 or 4 steps (+1 reset call in NEXT_STEP) straddle them
        r, n = m._collect(5, 1000)
        returns += r
        lengths += n
    k = min(term_at, limit)
    per_env = 30 // (k + (mode == AutoresetMode.NEXT_STEP))
    assert lengths == [k] * 2 * per_env and returns == [k * (k + 1) / 2] * 2 * per_env
    assert (
        m.num_timesteps == 60
        and m.n_calls == 30
        and len(m.replay) == 60 - (2 * per_env if mode == AutoresetMode.NEXT_STEP else 0)
    )


def test_target_masks_only_terminated():
    rewards = torch.tensor([1.0, 1.0, 2.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([[1.0, 3.0], [2.0, 5.0], [-1.0, -2.0]])
    y = td_target(rewards, terminated, next_q, 0.5)
    assert torch.allclose(y, torch.tensor([1.0 + 0.5 * 3.0, 1.0, 2.0 + 0.5 * -1.0]))


def test_double_dqn_target_uses_the_online_argmax_evaluated_by_the_target_net():
    rewards = torch.zeros(2)
    terminated = torch.tensor([0.0, 1.0])
    q_target = torch.tensor([[10.0, 1.0, 7.0], [4.0, 5.0, 6.0]])
    q_online = torch.tensor([[0.0, 0.0, 9.0], [9.0, 0.0, 0.0]])  # picks action 2, then 0
    y = td_target(rewards, terminated, q_target, 1.0, next_q_online=q_online)
    assert torch.allclose(y, torch.tensor([7.0, 0.0]))  # not max_a' Q_target = 10
    assert torch.allclose(td_target(rewards, terminated, q_target, 1.0), torch.tensor([10.0, 0.0]))


def test_soft_update_tau_one_copies_tau_zero_keeps_and_k_updates_compose():
    g = torch.Generator().manual_seed(0)
    online = [torch.randn(5, generator=g), torch.randn(3, 2, generator=g)]
    target = [torch.randn(5, generator=g), torch.randn(3, 2, generator=g)]
    before = [t.clone() for t in target]
    soft_update(target, online, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(target, before))
    soft_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(target, online))
    # k Polyak steps towards a fixed online net equal one step with 1 - (1 - τ)^k (used in learn())
    a, b = [before[0].clone()], [before[0].clone()]
    for _ in range(3):
        soft_update(a, online[:1], 0.2)
    soft_update(b, online[:1], 1 - 0.8**3)
    assert torch.allclose(a[0], b[0], atol=1e-6)


def test_model_target_update_after_learning_copies_online_net_with_tau_one():
    m = lucidrl.DQN(
        "CartPole-v1",
        seed=0,
        verbose=0,
        preset=False,
        learning_starts=50,
        train_freq=20,
        gradient_steps=5,
        target_update_interval=10,
        net_arch=[16],
    )
    m.learn(200)
    # with C = 10 <= train_freq the target was copied during the last collection, and then the online net moved
    online, target = list(m.q_net.parameters()), list(m.q_net_target.parameters())
    assert not torch.equal(online[0], target[0])
    soft_update(target, online, 1.0)
    for p, q in zip(m.q_net.parameters(), m.q_net_target.parameters()):
        assert torch.equal(p, q)


def test_epsilon_schedule_hits_its_end_points():
    assert exploration_rate(1.0, 1.0, 0.05, 0.1) == 1.0
    assert exploration_rate(0.9, 1.0, 0.05, 0.1) == pytest.approx(0.05)
    assert exploration_rate(0.95, 1.0, 0.05, 0.1) == pytest.approx(0.525)
    assert exploration_rate(0.0, 1.0, 0.05, 0.1) == 0.05
    assert exploration_rate(0.5, 1.0, 0.05, 0.0) == 0.05  # fraction 0: final value at once
    m = lucidrl.DQN(
        "CartPole-v1",
        seed=0,
        verbose=0,
        preset=False,
        learning_starts=10,
        exploration_fraction=0.5,
        exploration_final_eps=0.02,
        net_arch=[8],
    )
    m.learn(100)
    assert m.exploration_rate == pytest.approx(0.02)


def test_replay_sampling_is_consistent_across_the_ring_wrap_around():
    obs_space = gym.spaces.Box(-1e6, 1e6, (2,), np.float32)
    rb = ReplayBuffer(7, obs_space, gym.spaces.Discrete(3), generator=torch.Generator().manual_seed(0))
    i = 0
    for k in (3, 4, 5, 2, 6):  # batches of rows, as several envs per step give; wraps several times
        ids = torch.arange(i, i + k, dtype=torch.float32)
        obs = torch.stack([ids, -ids], 1)
        rb.add(obs, ids.long() % 3, ids * 10, obs + 1, ids.long() % 2 == 0)
        i += k
    assert len(rb) == 7 and rb.pos == i % 7
    b = rb.sample(500)
    s = b["obs"][:, 0]
    assert set(s.long().tolist()) == set(range(i - 7, i))  # exactly the 7 newest transitions
    assert torch.equal(b["obs"][:, 1], -s)
    assert torch.equal(b["next_obs"], b["obs"] + 1)
    assert torch.equal(b["actions"], s.long() % 3)
    assert torch.equal(b["rewards"], s * 10)
    assert torch.equal(b["terminated"], (s.long() % 2 == 0).float())
    # batched sampling for a training round keeps the tuples together too
    g = rb.get(rb.sample_indices(4, 9))
    assert g["obs"].shape == (4, 9, 2) and torch.equal(g["rewards"], g["obs"][..., 0] * 10)


def test_huber_gradient_is_the_papers_clipped_error():
    """(E3) the gradient of the Huber loss in Q(s, a) is the TD error clipped to [-1, 1] (the paper's error
    clipping), divided by the batch size; the other actions' values get none."""
    g = torch.Generator().manual_seed(1)
    q_values = (3 * torch.randn(64, 2, generator=g)).requires_grad_()
    a, y = torch.randint(0, 2, (64,), generator=g), 3 * torch.randn(64, generator=g)
    loss, q = dqn_loss(q_values, a, y)
    loss.backward()
    assert torch.equal(q, q_values.detach().gather(1, a[:, None])[:, 0])
    expected = torch.zeros(64, 2)
    expected[torch.arange(64), a] = (q.detach() - y).clamp(-1.0, 1.0) / 64
    torch.testing.assert_close(q_values.grad, expected)
    assert ((q.detach() - y).abs() > 1).any() and ((q.detach() - y).abs() < 1).any()  # both regimes were checked
    # the Huber loss is quadratic near 0 and linear beyond 1
    assert dqn_loss(torch.tensor([[0.5]]), torch.tensor([0]), torch.tensor([0.0]))[0].item() == pytest.approx(0.125)
    assert dqn_loss(torch.tensor([[3.0]]), torch.tensor([0]), torch.tensor([0.0]))[0].item() == pytest.approx(2.5)


def test_a_training_round_clips_the_gradient_and_leaves_the_target_net_alone():
    """Each step clips the global gradient norm to max_grad_norm (with SGD at lr 1 the step is the clipped
    gradient); the reported norm is the one before clipping; the round never moves θ⁻."""
    m = lucidrl.DQN(
        "CartPole-v1", seed=0, verbose=0, preset=False, net_arch=[32, 16], batch_size=16, max_grad_norm=0.25
    )
    rb = ReplayBuffer(200, m.observation_space, m.action_space, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(200, 4, generator=g)
    rb.add(
        obs,
        torch.randint(0, 2, (200,), generator=g),
        5 * torch.rand(200, generator=g),
        obs + 0.1 * torch.randn(200, 4, generator=g),
        torch.rand(200, generator=g) < 0.1,
    )
    target_before = {k: v.clone() for k, v in m.q_net_target.state_dict().items()}
    before = torch.cat([p.detach().reshape(-1) for p in m.q_net.parameters()]).clone()
    sgd = torch.optim.SGD(m.q_net.parameters(), lr=1.0)
    metrics = dqn_train_round(m.q_net, m.q_net_target, sgd, rb, 1, m.config)
    after = torch.cat([p.detach().reshape(-1) for p in m.q_net.parameters()])
    assert metrics["diag/grad_norm"] > 0.25  # the clip acted ...
    assert float((after - before).norm()) == pytest.approx(0.25, rel=1e-4)  # ... and the step is the clipped one
    m.optimizer = torch.optim.Adam(m.q_net.parameters(), lr=1e-3)
    dqn_train_round(m.q_net, m.q_net_target, m.optimizer, rb, 5, m.config)
    for k, v in m.q_net_target.state_dict().items():
        assert torch.equal(v, target_before[k]), k


def test_the_fast_mlp_forward_equals_the_module_on_large_and_small_batches():
    m = lucidrl.DQN("CartPole-v1", seed=0, verbose=0, preset=False, net_arch=[256, 256])
    core = MLPCore.of([m.q_net_target.q], numpy=False)
    w = core.blocks(torch.cat([p.detach().reshape(-1) for p in MLPCore.parameter_order([m.q_net_target.q])]))
    x = torch.randn(2048, 4, generator=torch.Generator().manual_seed(0))
    for rows in (2048, 64, 1):  # the target pass, a minibatch, one observation
        with torch.no_grad():
            torch.testing.assert_close(core.forward(w, x[:rows])[0][0], m.q_net_target(x[:rows]), rtol=1e-5, atol=1e-5)


def _filled_model(backend: str, double_q: bool):
    m = lucidrl.DQN(
        "CartPole-v1",
        seed=0,
        verbose=0,
        preset=False,
        net_arch=[256, 256],
        batch_size=64,
        learning_rate=1e-4,
        max_grad_norm=0.25,
        double_q=double_q,
        backend=backend,
    )
    g = torch.Generator().manual_seed(3)
    rb = ReplayBuffer(500, m.observation_space, m.action_space, generator=torch.Generator().manual_seed(4))
    obs = torch.randn(500, 4, generator=g)
    rb.add(
        obs,
        torch.randint(0, 2, (500,), generator=g),
        torch.rand(500, generator=g),
        obs + 0.1 * torch.randn(500, 4, generator=g),
        torch.rand(500, generator=g) < 0.1,
    )
    with torch.no_grad():  # a target net different from the online one
        first = next(m.q_net_target.parameters())
        first.add_(0.05 * torch.randn(first.shape, generator=g))
    return m, rb


@pytest.mark.parametrize("double_q", [False, True])
def test_fast_training_round_on_the_presets_network_equals_the_reference(double_q):
    """The fast round against the reference's autograd round on the CartPole preset's 256x256 network.

    ``tests/math/test_backends.py`` compares the two on small networks. A small max_grad_norm makes the
    clipping act, so the clip rule is checked as well. The small learning rate keeps the two runs on the
    same ReLU pattern: with the preset's 2.3e-3 a rare unit near 0 flips on one side and not the other after
    a few steps (the two sum in different orders), and Adam's per-weight normalisation magnifies that.
    """
    m1, rb1 = _filled_model("fast", double_q)
    m2, rb2 = _filled_model("reference", double_q)
    assert m1._train_round is fast_dqn.dqn_train_round and m2._train_round is dqn_train_round
    p1, p2 = list(m1.q_net.parameters()), list(m2.q_net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    for _ in range(2):  # the first round creates Adam's state, the second continues from it
        r1 = m1._train_round(m1.q_net, m1.q_net_target, m1.optimizer, rb1, 6, m1.config)
        r2 = m2._train_round(m2.q_net, m2.q_net_target, m2.optimizer, rb2, 6, m2.config)
        assert r1["diag/grad_norm"] > 0.25  # clipped
        for k in r1:
            assert r1[k] == pytest.approx(r2[k], rel=1e-5, abs=1e-6), k
        for a, b in zip(p1, p2):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not torch.equal(p1[0], next(m1.q_net_target.parameters()))


@pytest.mark.parametrize("policy", [greedy_policy, fast_dqn.greedy_policy], ids=["reference", "fast"])
def test_greedy_acting_picks_the_module_argmax_for_one_row_and_for_a_batch(policy):
    m = lucidrl.DQN("CartPole-v1", seed=0, verbose=0, preset=False, net_arch=[256, 256])
    greedy = policy(m.q_net)
    x = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    with torch.no_grad():
        q = m.q_net(torch.from_numpy(x))
    clear = (q[:, 0] - q[:, 1]).abs() > 1e-5  # rounding may only decide near-ties
    assert clear.sum() > 250
    batched = greedy(x)
    one_by_one = np.concatenate([greedy(x[i : i + 1]) for i in range(len(x))])
    assert one_by_one.shape == batched.shape == (300,)
    expected = q.argmax(-1).numpy()
    assert np.array_equal(batched[clear.numpy()], expected[clear.numpy()])
    assert np.array_equal(one_by_one[clear.numpy()], expected[clear.numpy()])
