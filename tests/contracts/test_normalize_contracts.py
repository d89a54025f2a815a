"""Normalisation as model state: collected with, saved, restored, frozen at evaluation, raw returns reported."""

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from test_rollout import KnownValueAgent, _venv

import lucidrl
from lucidrl.envs.normalize import ObsNormalizer, RewardScaler
from lucidrl.errors import ConfigError
from lucidrl.rollout import RolloutCollector

NORM = dict(normalize_obs=True, normalize_reward=True)


def _stats(model):
    return {
        f"{m}/{k}": v.clone()
        for m in ("obs_normalizer", "reward_scaler")
        for k, v in getattr(model, m).state_dict().items()
    }


SMALL = {
    lucidrl.PPO: dict(batch_size=64, n_epochs=2),
    lucidrl.TRPO: dict(batch_size=64, n_critic_updates=2),
    lucidrl.A2C: {},
    lucidrl.VPG: {},
}


def _trained(algo=lucidrl.PPO):
    model = algo("CartPole-v1", seed=0, verbose=0, preset=False, n_envs=2, n_steps=64, **SMALL[algo], **NORM)
    model.learn(256)
    return model


def test_defaults_are_off_and_cartpole_presets_unchanged():
    from lucidrl.config import resolve_config

    for algo in (lucidrl.PPO, lucidrl.A2C, lucidrl.VPG, lucidrl.TRPO):
        cfg, name, _ = resolve_config(algo.name, algo.config_class, "CartPole-v1", True, {})
        assert name == "CartPole-v1" and not cfg.normalize_obs and not cfg.normalize_reward
    model = lucidrl.VPG("CartPole-v1", seed=0, verbose=0)
    assert model.obs_normalizer is None and model.reward_scaler is None
    assert set(model._checkpoint_modules()) == set(model._modules()) == {"agent"}


def test_training_updates_the_statistics_by_every_observation_seen():
    model = lucidrl.PPO(
        "CartPole-v1", seed=0, verbose=0, preset=False, n_envs=2, n_steps=64, batch_size=64, n_epochs=1, **NORM
    )
    assert model.obs_normalizer.rms.count.item() == pytest.approx(1e-4)
    model.learn(128)
    # the reset observations of both envs, then one new observation per env step
    assert model.obs_normalizer.rms.count.item() == pytest.approx(2 + 128 + 1e-4)
    assert model.reward_scaler.rms.count.item() > 100  # every valid step's return (NEXT_STEP reset rows excluded)
    assert not torch.allclose(model.obs_normalizer.rms.mean, torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize("algo", [lucidrl.PPO, lucidrl.A2C, lucidrl.VPG, lucidrl.TRPO])
def test_save_load_restores_the_statistics_exactly_and_gives_identical_actions(algo, tmp_path):
    model = _trained(algo)
    path = model.save(tmp_path / "m")
    loaded = lucidrl.load(path)
    assert loaded.config.normalize_obs and loaded.config.normalize_reward
    before, after = _stats(model), _stats(loaded)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    obs = np.random.default_rng(0).normal(0, 1, (50, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_predict_uses_the_normalised_observation():
    model = _trained()
    obs = np.random.default_rng(1).normal(0, 1, (20, 4)).astype(np.float32)
    with torch.no_grad():
        z = model.obs_normalizer(torch.as_tensor(obs))
        expected = model.agent.head.mode(model.agent.policy_params(z)).numpy()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], expected)


def test_predict_and_evaluate_leave_the_statistics_frozen(tmp_path):
    model = _trained()
    before = _stats(model)
    model.predict(np.zeros(4, np.float32))
    model.predict(np.ones((8, 4), np.float32), deterministic=False)
    mean, _ = lucidrl.evaluate(model, n_episodes=2)
    assert mean > 0  # raw returns of CartPole (1 per step), not scaled ones
    after = _stats(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the CLI's eval goes through load + predict
    from lucidrl.cli import main

    assert main(["eval", str(model.save(tmp_path / "m")), "--episodes", "1"]) == 0
    loaded = lucidrl.load(tmp_path / "m")
    assert all(torch.equal(before[k], v) for k, v in _stats(loaded).items())


@pytest.mark.parametrize("vectorization", ["native", "sync"])
def test_episode_returns_stay_raw_when_rewards_are_scaled(vectorization):
    model = lucidrl.PPO(
        "CartPole-v1",
        seed=0,
        verbose=0,
        preset=False,
        n_envs=4,
        n_steps=128,
        batch_size=64,
        normalize_reward=True,
        vectorization=vectorization,
    )
    model._require_env()
    rollout = model._rollout_collector().collect(model.agent, 128)
    assert rollout.episode_returns, "episodes should have ended in 512 random-policy steps"
    # CartPole pays 1 per step: a raw return equals the episode length
    assert rollout.episode_returns == [float(n) for n in rollout.episode_lengths]
    rewards = rollout.rewards if rollout.valid is None else rollout.rewards[rollout.valid]
    assert not torch.allclose(rewards, torch.ones_like(rewards))  # the training rewards are scaled
    assert torch.all(rewards > 0) and torch.all(rewards <= model.config.clip_reward)


@pytest.mark.parametrize("vectorization", ["native", "sync"])
def test_ratio_is_one_at_theta_old_with_normalisation_on(vectorization):
    """log π_old is computed on the stored (normalised) observations, so the first epoch starts at ratio 1."""
    model = lucidrl.PPO(
        "CartPole-v1",
        seed=0,
        verbose=0,
        preset=False,
        n_envs=4,
        n_steps=64,
        batch_size=64,
        vectorization=vectorization,
        **NORM,
    )
    model._require_env()
    collector = model._rollout_collector()
    collector.collect(model.agent, 64)  # move the statistics away from their start values first
    rollout = collector.collect(model.agent, 64)
    batch = rollout.flat()
    assert batch["obs"].abs().max() <= model.config.clip_obs
    assert batch["obs"].mean(0).abs().max() < 1.0  # normalised, not raw
    with torch.no_grad():
        logprob = model.agent.head.log_prob(model.agent.policy_params(batch["obs"]), batch["actions"])
        values = model.agent.value(batch["obs"])
    torch.testing.assert_close(logprob, batch["logprob_old"], rtol=0, atol=1e-6)
    torch.testing.assert_close(values, batch["values_old"], rtol=0, atol=1e-6)
    # so the ratio of the first minibatch of the first epoch is exactly 1
    from lucidrl.algos.ppo import clipped_surrogate

    _, ratio = clipped_surrogate(logprob, batch["logprob_old"], torch.ones_like(logprob), 0.2)
    torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=0, atol=1e-6)


def test_truncation_bootstrap_uses_the_final_observation_normalised_with_the_same_statistics():
    norm = ObsNormalizer((1,))
    collector = RolloutCollector(
        _venv(AutoresetMode.SAME_STEP, max_steps=4), torch.device("cpu"), seed=0, obs_normalizer=norm
    )
    r = collector.collect(KnownValueAgent(), 4)
    assert r.truncated[3, 0] and not r.truncated[:3].any()
    # observations seen when the bootstrap is computed: reset 0, steps 1 2 3, then the next episode's 0
    seen = np.array([0.0, 1.0, 2.0, 3.0, 0.0])
    n = 1e-4 + len(seen)
    mean = seen.sum() / n
    var = (1e-4 * (1 + mean**2) + ((seen - mean) ** 2).sum()) / n
    final = (4.0 - mean) / np.sqrt(var + 1e-8)  # the final observation 4, normalised
    assert r.next_values[3, 0].item() == pytest.approx(10 * final + 1, rel=1e-5)  # KnownValueAgent: V = 10 obs + 1
    assert norm.rms.count.item() == pytest.approx(n)  # the final observation did not enter the statistics
    assert r.obs.abs().max() < 3


def test_reward_scaling_needs_no_box_but_obs_normalisation_does():
    with pytest.raises(ConfigError, match="normalize_obs needs a Box observation space"):
        lucidrl.PPO("FrozenLake-v1", verbose=0, normalize_obs=True)
    model = lucidrl.PPO("FrozenLake-v1", verbose=0, normalize_reward=True)
    assert isinstance(model.reward_scaler, RewardScaler) and model.obs_normalizer is None


def test_a_checkpoint_without_normalisation_still_loads(tmp_path):
    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0)
    loaded = lucidrl.load(model.save(tmp_path / "plain"))
    assert loaded.obs_normalizer is None
    obs = np.zeros((3, 4), np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_a_ppo_update_at_zero_step_size_sees_ratio_one_everywhere_with_normalisation_on():
    """Through the real update: with learning_rate 0 the policy stays π_old, so every minibatch of every
    epoch must see ratio 1 (approx KL 0, nothing clipped): log π_old was computed on the stored inputs.
    PyTorch's default initialisation (not the orthogonal one, whose 0.01 output gain gives a nearly uniform
    policy) makes π depend on the input enough that inconsistent inputs would show."""
    seen = []
    model = lucidrl.PPO(
        "CartPole-v1",
        seed=0,
        verbose=0,
        preset=False,
        n_envs=4,
        n_steps=64,
        batch_size=32,
        n_epochs=3,
        learning_rate=0.0,
        vectorization="sync",
        ortho_init=False,
        **NORM,
    )
    model.learn(512, callback=lambda m, metrics: seen.append(metrics))
    assert len(seen) == 2
    assert seen[0]["diag/entropy"] < 0.69  # not the uniform policy (log 2 = 0.693)
    for metrics in seen:
        assert abs(metrics["diag/approx_kl"]) < 1e-7
        assert metrics["diag/clip_fraction"] == 0.0


def test_a_reward_scaled_model_loads_onto_another_number_of_envs(tmp_path):
    """SB3's VecNormalize.load(path, venv) takes a venv of any size (its returns restart at 0); so must load."""
    from lucidrl.envs import make_vec_env

    model = _trained()  # n_envs=2, both normalisers on
    path = model.save(tmp_path / "m")
    loaded = lucidrl.load(path, env=make_vec_env("CartPole-v1", n_envs=3, seed=1), verbose=0)
    assert loaded.config.n_envs == 3
    assert all(torch.equal(v, _stats(model)[k]) for k, v in _stats(loaded).items())  # the statistics are kept
    loaded.learn(64 * 3)
    assert loaded.reward_scaler.returns.shape == (3,)


def test_set_parameters_from_a_checkpoint_restores_the_statistics_with_the_weights(tmp_path):
    """The statistics are part of the policy (docs/normalization.md, section 5): weights alone act differently."""
    model = _trained()
    path = model.save(tmp_path / "m")
    other = lucidrl.PPO("CartPole-v1", seed=1, verbose=0, preset=False, n_envs=2, n_steps=64, **NORM)
    other.set_parameters(path)
    assert all(torch.equal(v, _stats(model)[k]) for k, v in _stats(other).items())
    copy = lucidrl.PPO("CartPole-v1", seed=2, verbose=0, preset=False, n_envs=2, n_steps=64, **NORM)
    copy.set_parameters(model.get_parameters())
    assert all(torch.equal(v, _stats(model)[k]) for k, v in _stats(copy).items())


def test_set_parameters_refuses_a_normalised_checkpoint_for_a_model_without_normalisation(tmp_path):
    model = _trained()
    path = model.save(tmp_path / "m")
    plain = lucidrl.PPO("CartPole-v1", seed=1, verbose=0, preset=False, n_envs=2, n_steps=64)
    with pytest.raises(lucidrl.CheckpointError, match="obs_normalizer statistics.*build the model with the same"):
        plain.set_parameters(path)


def test_load_refuses_to_drop_the_observation_statistics_the_policy_reads(tmp_path):
    """load(path, normalize_obs=False) of a normalised model built it without its statistics, so predict read raw
    observations through weights trained on normalised ones: refused, as set_parameters refuses it."""
    path = _trained().save(tmp_path / "m")
    with pytest.raises(lucidrl.CheckpointError, match="trained with normalize_obs=True.*without normalize_obs=False"):
        lucidrl.load(path, normalize_obs=False)
    assert lucidrl.load(path).obs_normalizer is not None
