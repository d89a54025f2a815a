"""TRPO learns CartPole-v1 with the rl-baselines3-zoo preset (fixed seed, 100k steps: about 8 s on one core)."""

import pytest

import lucidrl

pytestmark = pytest.mark.slow


def test_trpo_with_the_zoo_preset_solves_cartpole():
    model = lucidrl.TRPO("CartPole-v1", seed=1, verbose=0)
    assert model.preset_name == "CartPole-v1"
    rows = []
    model.learn(100_000, callback=lambda m, metrics: rows.append(metrics))
    mean, _ = lucidrl.evaluate(model, "CartPole-v1", n_episodes=10, deterministic=True)
    assert mean >= 475, f"TRPO reached only {mean} after 100k steps"
    # every accepted step kept to the trust region
    assert all(r["diag/kl"] <= model.config.target_kl for r in rows)
