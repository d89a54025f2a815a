"""Box actions through the API and the CLI: every policy-gradient algorithm trains on Pendulum-v1,
predict clips to the bounds, save/load keeps the Gaussian policy exactly, errors name the fix."""

import numpy as np
import pytest
import torch

import lucidrl
from lucidrl.cli import main
from lucidrl.errors import ConfigError, EnvError

TINY = {
    "PPO": dict(n_envs=2, n_steps=64, batch_size=64, n_epochs=2),
    "A2C": dict(n_envs=2, n_steps=8),
    "VPG": dict(n_envs=2, n_steps=64, n_critic_updates=2),
    "REINFORCE": dict(n_envs=2, n_steps=64),
    "TRPO": dict(n_envs=2, n_steps=64, batch_size=64, n_critic_updates=2),
}


@pytest.mark.parametrize("algo", sorted(TINY))
def test_every_policy_gradient_algorithm_trains_on_pendulum(algo):
    m = getattr(lucidrl, algo)("Pendulum-v1", preset=False, seed=0, verbose=0, log_std_init=-0.5, **TINY[algo])
    before = m.agent.actor[-1].log_std.detach().clone()
    m.learn(256)
    assert m.num_timesteps == 256
    log_std = m.agent.actor[-1].log_std.detach()
    assert torch.isfinite(log_std).all() and not torch.equal(log_std, before)  # log σ is trained
    action, _ = m.predict(np.zeros(3, dtype=np.float32), deterministic=True)
    assert action.shape == (1,) and action.dtype == np.float32


def test_a2c_with_a_shared_trunk_takes_box_actions():
    m = lucidrl.A2C("Pendulum-v1", preset=False, seed=0, verbose=0, shared_trunk=True, **TINY["A2C"])
    m.learn(64)
    params = m.agent.policy_params(torch.zeros(5, 3))
    assert params.shape == (5, 2) and torch.isfinite(params).all()


def test_predict_clips_to_the_action_bounds_and_evaluate_uses_it():
    m = lucidrl.PPO("Pendulum-v1", preset=False, seed=0, verbose=0, log_std_init=2.0, **TINY["PPO"])
    with torch.no_grad():  # a mean far outside [-2, 2]
        m.agent.actor[-2].bias.fill_(10.0)
    obs = np.zeros((50, 3), dtype=np.float32)
    det, _ = m.predict(obs, deterministic=True)
    np.testing.assert_array_equal(det, np.full((50, 1), 2.0, dtype=np.float32))
    sampled, _ = m.predict(obs)
    assert sampled.shape == (50, 1) and (np.abs(sampled) <= 2.0).all()
    mean, _ = lucidrl.evaluate(m, n_episodes=1)
    assert np.isfinite(mean)


def test_save_load_round_trip_of_a_gaussian_ppo_gives_identical_actions(tmp_path):
    m = lucidrl.PPO("Pendulum-v1", preset=False, seed=3, verbose=0, log_std_init=-0.7, **TINY["PPO"])
    m.learn(256)
    m.save(tmp_path / "model")
    loaded = lucidrl.load(tmp_path / "model")
    assert isinstance(loaded, lucidrl.PPO) and loaded.config.log_std_init == -0.7
    torch.testing.assert_close(loaded.agent.actor[-1].log_std, m.agent.actor[-1].log_std, rtol=0, atol=0)
    obs = np.random.default_rng(0).uniform(-1, 1, (20, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], m.predict(obs, deterministic=True)[0])
    # the RNG is restored too: the same stochastic actions
    np.testing.assert_array_equal(loaded.predict(obs)[0], m.predict(obs)[0])


def test_box_action_errors_name_the_fix():
    with pytest.raises(ConfigError, match="log_std_init"):
        lucidrl.PPO("Pendulum-v1", preset=False, log_std_init=5.0, verbose=0)
    with pytest.raises(EnvError, match="PPO, A2C, TRPO, VPG"):
        lucidrl.DQN("Pendulum-v1", preset=False, verbose=0)


def test_pendulum_presets_are_found_with_their_source():
    for algo in ("PPO", "TRPO"):
        m = getattr(lucidrl, algo)("Pendulum-v1", seed=0, verbose=0)
        assert m.preset_name == "Pendulum-v1" and "rl-baselines3-zoo" in m.preset_source and "gSDE" in m.preset_source
        assert m.config.gamma == 0.9 and m.config.gae_lambda == 0.95


def test_cli_trains_ppo_on_pendulum(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "ppo",
                "--env",
                "Pendulum-v1",
                "--timesteps",
                "512",
                "--run-dir",
                str(run),
                "--n-envs",
                "2",
                "--n-steps",
                "64",
                "--batch-size",
                "64",
                "--n-epochs",
                "1",
                "--log-std-init",
                "-0.5",
                "--seed",
                "0",
                "--eval-episodes",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "mean evaluation return:" in capsys.readouterr().out
    assert lucidrl.load(run).config.log_std_init == -0.5
