"""Batched torch envs (lucidrl.envs.torch) against Gymnasium's classic-control code.

Step-for-step equivalence: 16 torch envs are each paired with their own Gymnasium env (made
with ``gym.make``, so its ``TimeLimit`` decides truncation) and both are driven with the same
random actions for 625 batched steps (10,000 env steps per env id). After every reset of a torch
env (its same-step autoreset), the paired Gymnasium env is reset and given the same state.

* float64 mode, open loop: states agree with Gymnasium's float64 states to 1e-9, rewards to
  1e-9, observations with Gymnasium's float32 observations to float32 rounding, and the flags
  exactly. NumPy's and torch's ``sin``/``cos`` differ in the last ulp for about 1 argument in
  700. CartPole, Pendulum and the mountain cars stay within ~1e-15 over whole episodes;
  Acrobot is chaotic and grows such an ulp to ~1e-9 over some 500-step episodes (seed-dependent),
  so its Gymnasium twin is given the torch state again every ``ACROBOT_RESYNC`` = 100 steps
  (open loop over 100 steps its error stays below ~1e-14).
* float32 mode: Gymnasium's state is set from the torch state before every step and the one-step
  outputs are compared within ``FLOAT32_TOL`` (see there for the reasoning).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from lucidrl.envs.torch import (
    TORCH_ENVS,
    CartPoleTorchEnv,
    MountainCarContinuousTorchEnv,
    MountainCarTorchEnv,
    has_torch_env,
    make_torch_vec_env,
    uniforms,
)
from lucidrl.errors import EnvError

ENV_IDS = ["CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0"]
N_ENVS = 16
N_STEPS = 625  # x 16 envs = 10,000 steps per env id
ACROBOT_RESYNC = 100

# float32 mode, one step from the same state: absolute tolerance on the next state and the
# observation. float32 rounds each operation to 2**-24 relative (one ulp is 1.2e-7 at 1 and
# 1.9e-6 at Acrobot's top speed of 28); a step is 20 (MountainCar) to ~150 (Acrobot's RK4)
# operations. Largest differences seen on this seed: CartPole 2.4e-7, Acrobot 9.5e-7,
# Pendulum 9.4e-7, MountainCar 6e-8, MountainCarContinuous 0 (it reproduces Gymnasium's own
# float32 arithmetic); the bounds leave a 5-15x margin.
FLOAT32_TOL = {
    "CartPole-v1": 2e-6,
    "Acrobot-v1": 1e-5,
    "Pendulum-v1": 1e-5,
    "MountainCar-v0": 1e-6,
    "MountainCarContinuous-v0": 1e-6,
}
# Pendulum's angle is not wrapped in its state and grows while the pole spins (to ~100 rad in
# 200 steps), so float32 states get a relative tolerance too (FLOAT32_RTOL, ~8 ulps).
FLOAT32_RTOL = 1e-6
# Rewards in float32: MountainCarContinuous's 100 - 0.1 a**2 carries a few ulps of 100 (largest
# seen 3.5e-6); Pendulum's cost wraps an angle of up to ~100 rad, whose float32 ulp (7.6e-6)
# passes into the wrapped angle and, squared, up to 2 pi times that (~5e-5) into the cost; the
# other rewards are exact.
FLOAT32_REWARD_RTOL = 2e-6
FLOAT32_REWARD_ATOL = {"Pendulum-v1": 1e-4}


def _start_states(env_id: str, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """States for the first half of the batch that reach the terminations and bounds soon (None: sampled)."""
    if env_id in ("MountainCar-v0", "MountainCarContinuous-v0"):
        # Near the goal moving right; against the left wall moving left (the inelastic stop);
        # at the bottom at top speed (the speed clip).
        kind = np.arange(n) % 3
        pos = np.choose(kind, [rng.uniform(0.3, 0.5, n), rng.uniform(-1.2, -1.1, n), rng.uniform(-0.55, -0.5, n)])
        vel = np.choose(kind, [rng.uniform(0.02, 0.07, n), rng.uniform(-0.07, -0.03, n), rng.uniform(0.0695, 0.07, n)])
        states = np.stack([pos, vel], 1)
    elif env_id == "Acrobot-v1":
        states = np.stack(
            [rng.uniform(1.6, 2.2, n), rng.uniform(-0.3, 0.3, n), rng.uniform(0.0, 2.0, n), rng.uniform(-1.0, 1.0, n)],
            1,
        )
    elif env_id == "CartPole-v1":  # near either end of the track, moving outwards: ends by |x| > 2.4
        side = rng.choice([-1.0, 1.0], n)
        states = np.stack(
            [side * rng.uniform(2.2, 2.39, n), side * rng.uniform(0.3, 1.5, n), rng.uniform(-0.05, 0.05, n), 0 * side],
            1,
        )
    else:
        return None
    if env_id == "MountainCarContinuous-v0":
        states = states.astype(np.float32).astype(np.float64)
    return states


def _gym_state(env_id: str, row: np.ndarray):
    if env_id == "MountainCarContinuous-v0":
        return row.astype(np.float32)  # Gymnasium keeps this env's state in float32
    return row.astype(np.float64).copy()


def _gym_state_of(env_id: str, genv) -> np.ndarray:
    return np.asarray(genv.unwrapped.state, dtype=np.float64)


def _random_actions(env, rng: np.random.Generator):
    space = env.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=env.num_envs)
    # Beyond the bounds too, to exercise the clipping (Gymnasium clips the same way).
    return (rng.uniform(-1.5, 1.5, size=(env.num_envs, 1)) * space.high).astype(np.float32)


def _run_against_gymnasium(env_id: str, dtype: torch.dtype, resync_every: int):
    rng = np.random.default_rng(12345)
    env = make_torch_vec_env(env_id, N_ENVS, dtype=dtype, seed=7)
    start = _start_states(env_id, N_ENVS, rng)
    if start is not None:
        start[N_ENVS // 2 :] = env.state[N_ENVS // 2 :].double().numpy()
        env.reset(options={"state": torch.as_tensor(start)})
    genvs = [gym.make(env_id, disable_env_checker=True) for _ in range(N_ENVS)]

    def sync(i):
        genvs[i].unwrapped.state = _gym_state(env_id, env.state[i].double().numpy())

    # Start each episode part-way through its time limit, so every env id truncates within the
    # run (MountainCarContinuous's limit, 999, exceeds the 625 steps); Gymnasium's TimeLimit
    # is given the same count.
    limit = gym.spec(env_id).max_episode_steps
    env.elapsed = torch.as_tensor(rng.integers(0, limit, N_ENVS))
    for i, g in enumerate(genvs):
        g.reset(seed=i)
        g._elapsed_steps = int(env.elapsed[i])
        sync(i)
    since_sync = 0
    counts = {"terminated": 0, "truncated": 0, "steps": 0}
    max_err = 0.0
    for _ in range(N_STEPS):
        if since_sync >= resync_every:
            for i in range(N_ENVS):
                sync(i)
            since_sync = 0
        actions = _random_actions(env, rng)
        obs, reward, terminated, truncated, info = env.step(actions)
        since_sync += 1
        assert obs.dtype == dtype and reward.dtype == dtype
        assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
        term, trunc = terminated.numpy(), truncated.numpy()
        done = term | trunc
        assert np.array_equal(info["_final_obs"].numpy(), done)
        # The observation each torch env reached: final_obs where it ended, else obs.
        last_obs = np.where(done[:, None], info["final_obs"].numpy(), obs.numpy())
        state = env.state.double().numpy()
        g_out = [g.step(int(a) if isinstance(a, np.integer) else a)[:4] for g, a in zip(genvs, actions)]
        g_obs = np.stack([o[0] for o in g_out])
        g_rew = np.array([float(o[1]) for o in g_out])
        assert np.array_equal(term, [o[2] for o in g_out]), (env_id, term)
        assert np.array_equal(trunc, [o[3] for o in g_out]), (env_id, trunc)
        g_state = np.stack([_gym_state_of(env_id, g) for g in genvs])
        if dtype == torch.float64:
            np.testing.assert_allclose(last_obs.astype(np.float32), g_obs, rtol=3e-7, atol=1e-8)
            np.testing.assert_allclose(reward.numpy(), g_rew, rtol=1e-9, atol=1e-9)
            err = np.abs(state - g_state)[~done]  # (rows that ended were reset: compared via final_obs)
            max_err = max(max_err, float(err.max(initial=0.0)))
            assert max_err <= 1e-9, (env_id, max_err)
        else:
            np.testing.assert_allclose(last_obs, g_obs, rtol=FLOAT32_RTOL, atol=FLOAT32_TOL[env_id])
            r_atol = FLOAT32_REWARD_ATOL.get(env_id, 1e-6)
            np.testing.assert_allclose(reward.numpy(), g_rew, rtol=FLOAT32_REWARD_RTOL, atol=r_atol)
            np.testing.assert_allclose(state[~done], g_state[~done], rtol=FLOAT32_RTOL, atol=FLOAT32_TOL[env_id])
        for i in np.flatnonzero(done):
            genvs[i].reset()
            sync(i)
        counts["terminated"] += int(term.sum())
        counts["truncated"] += int(trunc.sum())
        counts["steps"] += N_ENVS
        if dtype == torch.float32:
            for i in range(N_ENVS):  # one-step comparison: start every step from the same state
                sync(i)
    return counts, max_err


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_float64_open_loop_equals_gymnasium(env_id):
    resync = ACROBOT_RESYNC if env_id == "Acrobot-v1" else N_STEPS + 1  # the others: never re-synced
    counts, max_err = _run_against_gymnasium(env_id, torch.float64, resync)
    assert max_err <= 1e-9
    assert counts["steps"] == 10_000
    # Episodes end several times in every run: by termination (Pendulum has none) and, except
    # for CartPole, by truncation at the time limit.
    if env_id != "Pendulum-v1":
        assert counts["terminated"] >= 5
    if env_id != "CartPole-v1":
        assert counts["truncated"] >= 4


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_float32_one_step_equals_gymnasium(env_id):
    counts, _ = _run_against_gymnasium(env_id, torch.float32, 1)
    assert counts["terminated"] >= (0 if env_id == "Pendulum-v1" else 5)


def test_mountain_car_goal_termination_from_chosen_states():
    env = MountainCarTorchEnv(2, dtype=torch.float64)
    env.reset(seed=0, options={"state": torch.tensor([[0.49, 0.07], [0.49, 0.0]])})
    obs, reward, terminated, truncated, info = env.step(np.array([2, 0]))
    assert terminated.tolist() == [True, False]
    g = gym.make("MountainCar-v0", disable_env_checker=True)
    g.reset(seed=0)
    g.unwrapped.state = np.array([0.49, 0.07])
    g_obs, g_rew, g_term, _, _ = g.step(2)
    assert g_term and np.allclose(info["final_obs"][0].numpy(), g_obs, atol=1e-7)
    assert bool(info["_final_obs"][0]) and reward.tolist() == [-1.0, -1.0]
    # Same-step autoreset: the returned observation is a fresh start (position in [-0.6, -0.4), v = 0).
    assert -0.6 <= float(obs[0, 0]) < -0.4 and float(obs[0, 1]) == 0.0
    assert env.elapsed.tolist() == [0, 1] and env.resets.tolist() == [2, 1]

    env = MountainCarContinuousTorchEnv(2, dtype=torch.float64)
    env.reset(seed=0, options={"state": torch.tensor([[0.44, 0.07], [0.44, 0.0]])})
    _, reward, terminated, _, _ = env.step(np.array([[1.0], [0.0]], dtype=np.float32))
    assert terminated.tolist() == [True, False]
    assert math.isclose(float(reward[0]), 100.0 - 0.1) and float(reward[1]) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("env_id", ["MountainCar-v0", "MountainCarContinuous-v0"])
def test_mountain_car_bounds_from_chosen_states(env_id, dtype):
    """Speed clip, left wall (velocity zeroed), right clip and the goal, against Gymnasium."""
    states = np.array([[-0.52, 0.0699], [-0.52, -0.0699], [-1.19, -0.05], [-1.2, 0.0], [0.59, 0.07], [0.3, 0.02]])
    if env_id == "MountainCar-v0":
        actions = np.array([2, 0, 0, 0, 2, 1])
    else:
        actions = np.array([[1.3], [-1.0], [-0.7], [-2.0], [0.9], [0.0]], dtype=np.float32)
        states = states.astype(np.float32).astype(np.float64)
    env = TORCH_ENVS[env_id](len(states), dtype=dtype)
    env.reset(seed=0, options={"state": torch.as_tensor(states)})
    _, reward, terminated, _, info = env.step(actions)
    g = gym.make(env_id, disable_env_checker=True)
    for i, (row, a) in enumerate(zip(states, actions)):
        g.reset(seed=0)
        g.unwrapped.state = _gym_state(env_id, row)
        g_obs, g_rew, g_term, _, _ = g.step(int(a) if np.ndim(a) == 0 else a)
        assert bool(terminated[i]) == g_term
        np.testing.assert_allclose(info["final_obs"][i].numpy(), g_obs, rtol=0, atol=1e-7)
        np.testing.assert_allclose(float(reward[i]), g_rew, rtol=1e-6)
    final = info["final_obs"].double().numpy()
    assert final[0, 1] == pytest.approx(0.07) and final[1, 1] == pytest.approx(-0.07)  # speed clip
    assert final[2, 0] == pytest.approx(-1.2) and final[2, 1] == 0.0  # inelastic wall
    assert final[4, 0] == pytest.approx(0.6) and bool(terminated[4])  # right bound, goal


def test_truncation_at_exactly_the_limit_and_final_obs():
    env = make_torch_vec_env("Pendulum-v1", 3, seed=1)
    assert env.max_episode_steps == gym.spec("Pendulum-v1").max_episode_steps == 200
    zeros = np.zeros((3, 1), dtype=np.float32)
    for t in range(1, 200):
        _, _, terminated, truncated, info = env.step(zeros)
        assert not truncated.any() and not terminated.any() and not info["_final_obs"].any()
        assert env.elapsed.tolist() == [t] * 3
    before = env.state.clone()
    expected_final = env.observation(env.dynamics(before, torch.zeros(3, 1))[0])
    obs, _, terminated, truncated, info = env.step(zeros)
    assert truncated.all() and not terminated.any() and info["_final_obs"].all()
    torch.testing.assert_close(info["final_obs"], expected_final)
    assert env.elapsed.tolist() == [0, 0, 0] and env.resets.tolist() == [2, 2, 2]
    # The new episode's first observation is the k = 2 initial state of each env's seed.
    fresh = env.initial_state(uniforms(env.seeds, env.resets, env.reset_dim, env.dtype))
    torch.testing.assert_close(obs, env.observation(fresh))
    # A shorter limit is honoured too, and truncation is flagged even on a terminating step.
    env = make_torch_vec_env("CartPole-v1", 2, seed=0, max_episode_steps=1)
    env.state = torch.tensor([[2.399, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    _, _, terminated, truncated, _ = env.step(np.array([1, 1]))
    assert terminated.tolist() == [True, False] and truncated.tolist() == [True, True]


def test_final_obs_is_the_step_observation_on_rows_that_continue():
    env = make_torch_vec_env("CartPole-v1", 64, seed=3)
    rng = np.random.default_rng(0)
    saw_done = False
    for _ in range(60):
        state = env.state.clone()
        action = torch.as_tensor(rng.integers(0, 2, 64))
        expected, _, _ = env.dynamics(state, action)
        obs, _, terminated, truncated, info = env.step(action)
        done = info["_final_obs"]
        torch.testing.assert_close(info["final_obs"], expected)
        torch.testing.assert_close(obs[~done], expected[~done])
        assert (obs[done] - expected[done]).abs().max() > 0 if done.any() else True
        saw_done |= bool(done.any())
    assert saw_done


def test_uniforms_are_per_env_and_uniform():
    seeds = torch.arange(100, 108)
    resets = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
    u = uniforms(seeds, resets, 4, torch.float64)
    assert u.shape == (8, 4)
    for i in range(8):
        one = uniforms(seeds[i : i + 1], resets[i : i + 1], 4, torch.float64)
        assert torch.equal(one, u[i : i + 1])
    assert torch.equal(uniforms(seeds, resets, 4, torch.float32).double(), u)
    assert not torch.equal(uniforms(seeds, resets + 1, 4), uniforms(seeds, resets, 4))
    big = uniforms(torch.arange(100_000), torch.ones(100_000, dtype=torch.int64), 2, torch.float64)
    assert big.min() >= 0 and big.max() < 1
    assert abs(big.mean().item() - 0.5) < 0.005 and abs(big.std().item() - math.sqrt(1 / 12)) < 0.005
    assert abs(torch.corrcoef(big.T)[0, 1].item()) < 0.01
    # Large and negative seeds are fine.
    huge = uniforms(torch.tensor([2**62, -5]), torch.tensor([1, 1]), 3)
    assert huge.min() >= 0 and huge.max() < 1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeding_is_per_env(env_id):
    a = make_torch_vec_env(env_id, 8, seed=5)
    b = make_torch_vec_env(env_id, 8, seed=5)
    assert torch.equal(a.state, b.state) and a.seeds.tolist() == list(range(5, 13))
    for i in range(8):
        one = make_torch_vec_env(env_id, 1, seed=5 + i)
        assert torch.equal(one.state[0], a.state[i])
    c = make_torch_vec_env(env_id, 3, seed=[11, 5, 7])
    assert torch.equal(c.state[1], a.state[0]) and torch.equal(c.state[2], a.state[2])
    assert not torch.equal(make_torch_vec_env(env_id, 8, seed=6).state, a.state)
    # reset() without a seed keeps the seeds and moves every env on to its next episode.
    first = a.state.clone()
    a.reset()
    assert a.resets.tolist() == [2] * 8 and not torch.equal(a.state, first)
    b.reset(seed=5)
    assert torch.equal(b.state, first)
    # Unseeded envs draw fresh seeds.
    assert not torch.equal(make_torch_vec_env(env_id, 4).seeds, make_torch_vec_env(env_id, 4).seeds)
    # The initial states lie where Gymnasium's reset puts them.
    many = make_torch_vec_env(env_id, 4096, seed=0, dtype=torch.float64)
    g = gym.make(env_id, disable_env_checker=True)
    ref = []
    for s in range(200):
        g.reset(seed=s)
        ref.append(np.asarray(g.unwrapped.state, dtype=np.float64))
    ref = np.array(ref)
    assert np.all(many.state.numpy().min(0) >= ref.min(0) - 0.02 * np.abs(ref).max(0) - 1e-12)
    assert np.all(many.state.numpy().max(0) <= ref.max(0) + 0.02 * np.abs(ref).max(0) + 1e-12)


def test_state_read_and_set_and_spaces():
    env = make_torch_vec_env("Acrobot-v1", 4, seed=0, dtype=torch.float64)
    ref = gym.make("Acrobot-v1")
    assert env.single_observation_space == ref.observation_space
    assert env.single_action_space == ref.action_space
    assert env.observation_space.shape == (4, 6) and env.spec.id == "Acrobot-v1"
    assert env.state.shape == (4, 4) and env.state.dtype == torch.float64
    new = np.zeros((4, 4))
    env.state = new
    new[0, 0] = 1.0  # the setter copied
    assert env.state.abs().sum() == 0
    obs, *_ = env.step(torch.ones(4, dtype=torch.int64))
    assert torch.allclose(obs[:, 0], torch.ones(4, dtype=torch.float64))  # hanging still: cos(0) = 1
    with pytest.raises(ValueError):
        env.state = torch.zeros(3, 4)
    obs, info = env.reset(options={"state": torch.full((4, 4), 0.5)})
    assert torch.equal(env.state, torch.full((4, 4), 0.5, dtype=torch.float64)) and info == {}
    assert env.elapsed.tolist() == [0] * 4
    env.close()


def test_numpy_and_torch_actions_agree():
    a = make_torch_vec_env("Pendulum-v1", 5, seed=0)
    b = make_torch_vec_env("Pendulum-v1", 5, seed=0)
    act = np.linspace(-3, 3, 5, dtype=np.float32).reshape(5, 1)
    out_a = a.step(act)
    out_b = b.step(torch.as_tensor(act))
    for x, y in zip(out_a[:4], out_b[:4]):
        assert torch.equal(x, y)
    c = make_torch_vec_env("CartPole-v1", 3, seed=0)
    obs, reward, *_ = c.step(np.array([0, 1, 0]))
    assert obs.shape == (3, 4) and reward.dtype == torch.float32


def test_bad_env_id_raises_env_error():
    assert set(TORCH_ENVS) == set(ENV_IDS)
    assert has_torch_env("CartPole-v1") and not has_torch_env("CartPole-v0")
    assert not has_torch_env("cartpole") and not has_torch_env("LunarLander-v3")
    with pytest.raises(EnvError, match="vectorization='auto' or 'sync'"):
        make_torch_vec_env("LunarLander-v3", 4)
    with pytest.raises(EnvError, match="CartPole-v1"):
        make_torch_vec_env("CartPole-v0", 4)


def _inductor_available() -> bool:
    try:
        import torch._inductor  # noqa: F401
        from torch._inductor import cpp_builder  # noqa: F401
    except Exception:
        return False
    import shutil

    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@pytest.mark.skipif(not _inductor_available(), reason="torch inductor (with a C++ compiler) unavailable")
def test_compiled_functional_step_matches_eager():
    env = CartPoleTorchEnv(256, dtype=torch.float32)
    env.reset(seed=0)
    step = torch.compile(env.functional_step)
    rng = np.random.default_rng(0)
    eager = (env.state, env.elapsed, env.seeds, env.resets)
    comp = eager
    for _ in range(30):
        action = torch.as_tensor(rng.integers(0, 2, 256))
        e = env.functional_step(*eager, action)
        c = step(*comp, action)
        for x, y in zip(e, c):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
        eager = (e[0], e[1], env.seeds, e[2])
        comp = (e[0], e[1], env.seeds, e[2])  # same inputs each step: compare one step at a time


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_pool_gives_the_states_the_step_would_draw(env_id):
    """``functional_step`` with a ``reset_pool`` (a rollout's reset states drawn up front) takes every step to the
    same states as drawing them per step, on the branch-free path a GPU runs and the CPU's finished-rows path,
    over more resets per env than one (short time limits)."""
    env = make_torch_vec_env(env_id, 32, max_episode_steps=7)
    env.reset(seed=4)
    rng = np.random.default_rng(1)
    T = 40  # ~5 episodes per env
    pool = env.reset_pool(env.seeds, env.resets, T)
    with_pool = without = (env.state, env.elapsed, env.resets)
    branch_free = torch.compiler.is_compiling
    for _ in range(T):
        if env._discrete:
            action = torch.as_tensor(rng.integers(0, env.single_action_space.n, 32))
        else:
            action = torch.as_tensor(rng.uniform(-1, 1, (32, 1)), dtype=env.dtype)
        a = env.functional_step(*with_pool[:2], env.seeds, with_pool[2], action, pool)
        b = env.functional_step(*without[:2], env.seeds, without[2], action)
        try:  # the branch-free draw of every row's fresh state, as on a GPU
            torch.compiler.is_compiling = lambda: True
            c = env.functional_step(*without[:2], env.seeds, without[2], action)
        finally:
            torch.compiler.is_compiling = branch_free
        for x, y, z in zip(a, b, c):
            assert torch.equal(x, y) and torch.equal(x, z)
        with_pool, without = (a[0], a[1], a[2]), (b[0], b[1], b[2])
    assert int((with_pool[2] - env.resets).min()) >= 5  # every env reset several times
