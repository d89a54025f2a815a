"""PPO learns CartPole-v1 (fixed seeds, small budgets, still in CI: about 40 s together)."""

import pytest

import lucidrl

pytestmark = pytest.mark.slow


def _solve(budget, **kwargs):
    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0, **kwargs)
    model.learn(budget)
    mean, _ = lucidrl.evaluate(model, "CartPole-v1", n_episodes=10, deterministic=True)
    return mean, model


def test_ppo_clip_with_the_zoo_preset_solves_cartpole():
    mean, model = _solve(100_000)
    assert model.preset_name == "CartPole-v1"
    assert mean >= 475, f"PPO-Clip reached only {mean} after 100k steps"


def test_ppo_kl_penalty_solves_cartpole():
    mean, model = _solve(100_000, variant="kl_penalty")
    assert mean >= 475, f"PPO-Penalty reached only {mean} after 100k steps"


def test_plain_defaults_learn_cartpole():
    mean, model = _solve(100_000, preset=False)
    assert (model.config.n_envs, model.config.n_steps, model.config.batch_size) == (1, 2048, 64)
    assert mean >= 475, f"PPO with the plain defaults reached only {mean} after 100k steps"
