"""Running statistics, observation normalisation and discounted-return reward scaling (lucidrl.envs.normalize)."""

import numpy as np
import pytest
import torch

from lucidrl.config import config_from_dict
from lucidrl.envs.normalize import ObsNormalizer, RewardScaler, RunningMeanStd
from lucidrl.errors import ConfigError


def pooled(prior_count, data):
    """Mean and population variance of the data together with the prior pseudo-data (mean 0, var 1)."""
    data = np.asarray(data, dtype=np.float64)
    n = prior_count + data.shape[0]
    mean = data.sum(0) / n
    var = (prior_count * (1.0 + mean**2) + ((data - mean) ** 2).sum(0)) / n
    return mean, var


@pytest.mark.parametrize("as_tensor", [False, True])
def test_running_mean_std_equals_numpy_over_the_concatenated_batches(as_tensor):
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (n, 3)) * [1, 10, 0.1] for n in (1, 7, 50, 2)]
    rms = RunningMeanStd((3,), epsilon=0.0)
    for b in batches:
        rms.update(torch.as_tensor(b) if as_tensor else b)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean.numpy(), everything.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rms.var.numpy(), everything.var(0), rtol=1e-12)
    assert rms.count.item() == len(everything)
    # with SB3's start count 1e-4 the statistics are those of the data pooled with that pseudo-count
    rms = RunningMeanStd((3,))
    for b in batches:
        rms.update(b)
    mean, var = pooled(1e-4, everything)
    np.testing.assert_allclose(rms.mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(rms.var.numpy(), var, rtol=1e-12)


def test_one_row_batches_take_the_exact_same_steps_as_the_general_update():
    """update() on one row (one env: the mean is the row, the variance 0) is bit-identical to the general
    (N1) merge of that row's np.mean / np.var, and the cached NumPy views follow a reload."""
    rng = np.random.default_rng(1)
    fast, ref = RunningMeanStd((5,)), RunningMeanStd((5,))
    for _ in range(200):
        x = rng.normal(3.0, 4.0, (1, 5))
        fast.update(x)
        ref.update_from_moments(x.mean(0), x.var(0), 1)
    for k in ("mean", "var", "count"):
        assert torch.equal(getattr(fast, k), getattr(ref, k)), k
    fast.load_state_dict(RunningMeanStd((5,)).state_dict())  # copied into the same buffers
    assert fast.numpy_views()[0].tolist() == [0.0] * 5 and float(fast.numpy_views()[2]) == pytest.approx(1e-4)


@pytest.mark.parametrize("shape", [(), (5,)])
def test_the_numpy_path_is_bit_identical_to_the_merge_of_np_mean_and_np_var(shape):
    """The CPU path (NumPy reductions, the count as a Python float: less overhead per env step) takes exactly
    the steps of np.mean / np.var of the batch merged by (N1) with 0-d float64 arrays, as SB3's RunningMeanStd
    (which computes the new mean as delta * n / total, here delta * (n / total): within an ulp)."""
    rng = np.random.default_rng(2)
    rms = RunningMeanStd(shape)
    mean, var, count = np.zeros(shape), np.ones(shape), np.float64(1e-4)
    for n in (4, 1, 16, 3, 64) * 20:
        x = rng.normal(-2.0, 30.0, (n, *shape))
        rms.update(x.astype(np.float32))
        x = x.astype(np.float32).astype(np.float64)
        batch_mean, batch_var = np.mean(x, axis=0), np.var(x, axis=0)
        delta, total = batch_mean - mean, count + n
        m2 = var * count + batch_var * n + np.square(delta) * count * n / total
        mean, var, count = mean + delta * (n / total), m2 / total, total
    assert rms.mean.numpy().tolist() == np.asarray(mean).tolist()
    assert rms.var.numpy().tolist() == np.asarray(var).tolist()
    assert rms.count.item() == float(count)


def test_obs_normalizer_standardises_and_clips_and_forward_changes_nothing():
    norm = ObsNormalizer((2,), clip_obs=2.0)
    x = np.array([[0.0, 100.0], [2.0, 100.0], [4.0, 100.0]], np.float32)
    z = norm.update_and_normalize(x)
    mean, var = pooled(1e-4, x)
    expected = np.clip((x - mean) / np.sqrt(var + 1e-8), -2, 2)
    np.testing.assert_allclose(z, expected, rtol=1e-5)
    assert z.dtype == np.float32
    state = {k: v.clone() for k, v in norm.state_dict().items()}
    out = norm(torch.tensor([[1000.0, -1000.0]]))  # frozen: clipped, statistics untouched
    assert out.tolist() == [[2.0, -2.0]]
    assert all(torch.equal(state[k], v) for k, v in norm.state_dict().items())
    # the torch path (any device) and the NumPy path agree
    np.testing.assert_allclose(
        norm(torch.as_tensor(x)).numpy(),
        np.clip((x - norm.rms.mean.numpy()) / np.sqrt(norm.rms.var.numpy() + 1e-8), -2, 2),
        rtol=1e-6,
    )


def test_reward_scaler_matches_a_hand_computation_and_resets_at_episode_ends():
    gamma = 0.9
    scaler = RewardScaler(gamma, clip_reward=10.0)
    rewards = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 4.0], [2.0, 1.0]])
    dones = np.array([[False, False], [True, False], [False, True], [False, False]])
    ret = np.zeros(2)
    seen = []
    for r, d in zip(rewards, dones):
        ret = gamma * ret + r  # R <- γR + r
        seen.append(ret.copy())
        _, var = pooled(1e-4, np.concatenate(seen))
        expected = np.clip(r / np.sqrt(var + 1e-8), -10, 10)
        np.testing.assert_allclose(scaler.scale(r, d), expected, rtol=1e-6)
        ret[d] = 0.0  # a new episode starts from 0
        np.testing.assert_array_equal(scaler.returns, ret)
    # by hand: env 0's return after its episode ended at step 2 restarts: R = 0.5 then 0.9*0.5 + 2
    assert seen[2][0] == 0.5 and seen[3][0] == pytest.approx(0.9 * 0.5 + 2.0)
    assert seen[3][1] == 1.0  # env 1 ended at step 3
    assert scaler.rms.count.item() == pytest.approx(8 + 1e-4)


def test_reward_scaler_keeps_the_sign_clips_and_leaves_invalid_copies_out():
    scaler = RewardScaler(0.99, clip_reward=1.5)
    scaler.scale(np.array([1.0, 1.0]), np.array([False, False]))
    var_before = scaler.rms.var.clone()
    count_before = scaler.rms.count.item()
    out = scaler.scale(np.array([-1000.0, 0.0]), np.array([False, False]), valid=np.array([False, False]))
    assert out[0] == -1.5 and out[1] == 0.0  # scaled, not shifted: a zero reward stays zero
    assert scaler.rms.count.item() == count_before and torch.equal(scaler.rms.var, var_before)
    expected = np.clip(0.01 / np.sqrt(var_before.item() + 1e-8), -1.5, 1.5)
    assert 0 < expected < 1.5
    assert scaler.forward(np.array([0.01]))[0] == pytest.approx(expected, rel=1e-6)  # frozen statistics


def test_zoo_normalize_setting_maps_to_lucidrl_fields():
    from lucidrl.algos.ppo import PPOConfig

    both = config_from_dict(PPOConfig, {"normalize": True})
    assert both.normalize_obs and both.normalize_reward
    zoo = config_from_dict(PPOConfig, {"normalize": "{'norm_obs': True, 'norm_reward': False, 'gamma': 0.9}"})
    assert zoo.normalize_obs and not zoo.normalize_reward
    explicit = config_from_dict(PPOConfig, {"normalize": True, "normalize_reward": False})
    assert explicit.normalize_obs and not explicit.normalize_reward  # the explicit field wins
    with pytest.raises(ConfigError, match="unknown VecNormalize argument 'norm_rew'"):
        config_from_dict(PPOConfig, {"normalize": {"norm_rew": True}})
    with pytest.raises(ConfigError, match="clip_obs must be a number > 0"):
        PPOConfig(clip_obs=0.0)
    with pytest.raises(ConfigError, match="normalize_obs must be true or false"):
        PPOConfig(normalize_obs="yes")


# --------------------------------------------------------------------------- lucidrl.envs.discretise
# (the discretiser's main tests are in test_q_learning_math.py; these are its edges at the env boundary)
def test_discretiser_puts_huge_and_infinite_values_in_the_edge_bins_and_refuses_nan():
    from lucidrl.envs.discretise import Discretiser
    from lucidrl.errors import EnvError

    d = Discretiser(low=np.array([-1.0, 0.0]), high=np.array([1.0, 10.0]), n_bins=np.array([4, 5]))
    x = np.array([[np.inf, -np.inf], [1e30, -1e30], [-np.inf, np.inf], [-1e30, 1e30]])
    # beyond the bounds is clipped to them (the old code cast inf / 1e30 to int64 and wrapped to bin 0)
    np.testing.assert_array_equal(d.bins(x), [[3, 0], [3, 0], [0, 4], [0, 4]])
    with pytest.raises(EnvError, match=r"dimensions \[1\] are NaN"):
        d(np.array([[0.0, np.nan]]))
    flat = Discretiser(low=np.array([0.0, 2.0]), high=np.array([1.0, 2.0]), n_bins=np.array([2, 3]))  # low == high
    np.testing.assert_array_equal(flat.bins(np.array([[0.7, 2.0], [0.2, 5.0]])), [[1, 0], [0, 0]])


def test_a_rollout_normalises_as_sb3s_vecnormalize_across_terminations_and_truncations():
    """The collector with an ObsNormalizer and a RewardScaler, and SB3's VecNormalize, on the same env stream (the
    same seeds and actions; 15-step time limits, so both episode ends occur): the same normalised observations and
    scaled rewards at every step, the same statistics and the same returns in flight at the end."""
    pytest.importorskip("stable_baselines3")
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from lucidrl.envs import make_vec_env
    from lucidrl.networks import ActorCritic
    from lucidrl.rollout import RolloutCollector

    N, T, SEED, GAMMA = 3, 200, 5, 0.9

    def make():
        return gym.make("CartPole-v1", max_episode_steps=15)

    venv = make_vec_env(make, N, seed=SEED, vectorization="sync")
    obs_n, rew_s = ObsNormalizer(venv.single_observation_space.shape), RewardScaler(GAMMA)
    torch.manual_seed(0)
    agent = ActorCritic(venv.single_observation_space, venv.single_action_space, [8], "tanh")
    collector = RolloutCollector(venv, torch.device("cpu"), seed=SEED, generator=torch.Generator().manual_seed(0),
                                 obs_normalizer=obs_n, reward_scaler=rew_s)  # fmt: skip
    r = collector.collect(agent, T)
    assert r.terminated.sum() >= 3 and (r.truncated & ~r.terminated).sum() >= 3  # both kinds of end happened
    theirs = VecNormalize(DummyVecEnv([make] * N), gamma=GAMMA)
    theirs.seed(SEED)
    obs, rewards = [theirs.reset()], []
    for t in range(T):
        o, reward, _, _ = theirs.step(r.actions[t].numpy())
        obs.append(o)
        rewards.append(reward)
    np.testing.assert_allclose(np.stack(obs[:T]), r.obs.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.stack(rewards), r.rewards.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(theirs.obs_rms.mean, obs_n.rms.mean.numpy(), atol=1e-7, rtol=0)
    np.testing.assert_allclose(theirs.obs_rms.var, obs_n.rms.var.numpy(), atol=1e-7, rtol=1e-7)
    assert theirs.obs_rms.count == pytest.approx(float(obs_n.rms.count))
    np.testing.assert_allclose(theirs.ret_rms.var, float(rew_s.rms.var), rtol=1e-9)
    np.testing.assert_allclose(theirs.returns, np.asarray(rew_s.returns), rtol=1e-9)
