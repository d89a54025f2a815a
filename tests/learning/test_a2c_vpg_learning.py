"""A2C, VPG and REINFORCE learn CartPole-v1 with their presets (fixed seed, small budgets, still in CI).

Each threshold held on more seeds than the one tested (measured on this project's machine): A2C
with the zoo preset reached 500 on all of seeds 0-9 at 200k steps, VPG (GAE) on all of seeds 0-5
at 150k, REINFORCE (the preset from lucidrl tune) 500 on seeds 0-2 at 100k. So another CPU's rounding,
which changes the trajectory like another seed would, should not break them. About 15 s in all
on one core.
"""

import pytest

import lucidrl

pytestmark = pytest.mark.slow


def _train(cls, budget, **kwargs):
    model = cls("CartPole-v1", seed=0, verbose=0, **kwargs)
    model.learn(budget)
    mean, _ = lucidrl.evaluate(model, "CartPole-v1", n_episodes=10, deterministic=True)
    return mean, model


def test_a2c_with_the_zoo_preset_solves_cartpole():
    mean, model = _train(lucidrl.A2C, 200_000)
    assert model.preset_name == "CartPole-v1" and model.config.n_envs == 8
    assert mean >= 475, f"A2C reached only {mean} after 200k steps"


def test_vpg_with_gae_and_its_preset_solves_cartpole():
    mean, model = _train(lucidrl.VPG, 150_000)
    assert model.preset_name == "CartPole-v1" and model.config.psi == "gae"
    assert mean >= 475, f"VPG reached only {mean} after 150k steps"


def test_reinforce_without_a_critic_learns_cartpole():
    mean, model = _train(lucidrl.REINFORCE, 100_000)
    assert model.config.psi == "reward_to_go"
    assert mean >= 150, f"REINFORCE reached only {mean} after 100k steps (a random policy gets ~10)"
