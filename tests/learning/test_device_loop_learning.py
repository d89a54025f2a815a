"""Learning on batched torch envs (lucidrl.envs.torch), on the CPU as CI runs it: the policy trained on the
torch CartPole is evaluated on Gymnasium's own CartPole-v1, and N vmapped agents learn together."""

import pytest

import lucidrl

pytestmark = pytest.mark.slow


def test_ppo_on_torch_envs_solves_gymnasiums_cartpole():
    model = lucidrl.PPO(
        "CartPole-v1",
        vectorization="torch",
        n_envs=64,
        n_steps=32,
        batch_size=512,
        n_epochs=4,
        learning_rate=1e-3,
        seed=0,
        verbose=0,
    )
    assert type(model.env).__name__ == "CartPoleTorchEnv"
    model.learn(200_000)
    mean, _ = lucidrl.evaluate(model, "CartPole-v1", n_episodes=10, deterministic=True)  # Gymnasium's env
    assert mean >= 475, f"PPO on torch envs reached only {mean} on Gymnasium's CartPole-v1"
    on_device, _ = lucidrl.evaluate_on_device(model, 64)
    assert on_device >= 475


def test_ppo_on_torch_envs_with_normalisation_learns_acrobot():
    """The Acrobot preset normalises observations and rewards: on torch envs the statistics live on the device."""
    model = lucidrl.PPO("Acrobot-v1", vectorization="torch", seed=0, verbose=0)
    assert model.config.normalize_obs and model.config.normalize_reward
    model.learn(50_000)
    mean, _ = lucidrl.evaluate(model, "Acrobot-v1", n_episodes=10, deterministic=True)  # Gymnasium's env
    assert mean >= -120, f"PPO on torch Acrobot reached only {mean} after 50k steps (random: -500)"
    on_device, _ = lucidrl.evaluate_on_device(model, 32)  # normalised with the saved statistics there too
    assert on_device >= -120


def test_a2c_on_torch_envs_learns_cartpole():
    model = lucidrl.A2C("CartPole-v1", vectorization="torch", seed=0, verbose=0)
    model.learn(100_000)
    mean, _ = lucidrl.evaluate(model, "CartPole-v1", n_episodes=10, deterministic=True)
    assert mean >= 150, f"A2C on torch envs reached only {mean} after 100k steps"


def test_vmap_train_trains_independent_agents_that_learn():
    result = lucidrl.vmap_train(
        "CartPole-v1",
        n_agents=3,
        total_timesteps=40_000,
        seed=0,
        n_envs=16,
        n_steps=64,
        batch_size=256,
        n_epochs=4,
        learning_rate=1e-3,
    )
    finals = [curve[-1][1] for curve in result.curves]
    assert min(finals) >= 100, finals  # each agent learned (a random policy scores ~22)
    assert len(set(round(f, 3) for f in finals)) == 3  # different seeds, different runs
    model = result.model(0)
    mean, _ = lucidrl.evaluate(model, "CartPole-v1", n_episodes=5, deterministic=True)
    assert mean >= 100
