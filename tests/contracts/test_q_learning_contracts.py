"""QLearning through the public API: save/load, presets, errors, vector envs, SARSA options, CLI."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import lucidrl
from lucidrl import ConfigError, EnvError
from lucidrl.cli import main


def small(env="FrozenLake-v1", **kw):
    return lucidrl.QLearning(env, **{"seed": 0, "verbose": 0, "preset": False, **kw})


@pytest.mark.parametrize(
    "env, obs",
    [
        ("FrozenLake-v1", np.arange(16)),
        ("CartPole-v1", np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)),
    ],
)
def test_save_load_round_trip_gives_the_identical_table_and_actions(env, obs, tmp_path):
    kw = {"n_bins": [1, 6, 12, 12]} if env == "CartPole-v1" else {}
    m = small(env, learning_rate=lucidrl.linear(0.3), **kw)
    m.learn(3000)
    assert m.agent.q.abs().sum() > 0
    m.save(tmp_path / "ckpt")
    m2 = lucidrl.load(tmp_path / "ckpt")
    assert type(m2) is lucidrl.QLearning and m2.config == m.config
    assert torch.equal(m.agent.q, m2.agent.q) and m2.agent.q.dtype == torch.float64
    assert m2.num_timesteps == m.num_timesteps and m2.exploration_rate == m.exploration_rate
    assert (m.predict(obs, deterministic=True)[0] == m2.predict(obs, deterministic=True)[0]).all()
    assert (m.predict(obs)[0] == m2.predict(obs)[0]).all()  # ε-greedy with the restored RNG
    # the loaded table trains on: its NumPy view and the saved buffer are the same memory
    m3 = lucidrl.QLearning.load(tmp_path / "ckpt", env=env, verbose=0)
    m3.learn(500, reset_num_timesteps=False)
    assert m3.num_timesteps == m.num_timesteps + 500 and not torch.equal(m3.agent.q, m.agent.q)


def test_double_q_learning_saves_both_tables_and_acts_on_their_sum(tmp_path):
    m = small(env_kwargs={"is_slippery": False}, update="double_q_learning", exploration_fraction=0.3)
    m.learn(5000)
    q_a, q_b = m.agent.q.numpy(), m.agent.q2.numpy()
    assert np.abs(q_a).sum() > 0 and np.abs(q_b).sum() > 0 and not np.array_equal(q_a, q_b)
    states = np.arange(16)
    assert (m.predict(states, deterministic=True)[0] == (q_a + q_b).argmax(1)).all()
    m.save(tmp_path / "ckpt")
    m2 = lucidrl.load(tmp_path / "ckpt")
    assert torch.equal(m2.agent.q, m.agent.q) and torch.equal(m2.agent.q2, m.agent.q2)
    assert (m2.predict(states, deterministic=True)[0] == m.predict(states, deterministic=True)[0]).all()
    assert lucidrl.evaluate(m2, n_episodes=5)[0] == 1.0  # the still lake is solved
    m2.learn(500, reset_num_timesteps=False)
    assert not torch.equal(m2.agent.q2, m.agent.q2) or not torch.equal(m2.agent.q, m.agent.q)


def test_switching_to_or_from_double_q_learning_needs_a_new_model(tmp_path):
    """Double Q-learning has two tables: model.update = ... across that line is refused at learn (the others switch
    freely), and loading a one-table checkpoint with update='double_q_learning' names the override, not corruption."""
    m = small()
    m.learn(200)
    m.update = "sarsa"
    m.learn(100)  # one table either way
    m.update = "double_q_learning"
    with pytest.raises(ConfigError, match="needs a new model: this one's Q-tables were made for another"):
        m.learn(100)
    m.update = "q_learning"
    m.save(tmp_path / "one")
    with pytest.raises(lucidrl.CheckpointError, match="update='double_q_learning' given to load, where the checkpoint"):
        lucidrl.load(tmp_path / "one", update="double_q_learning")


def test_predict_single_and_batch():
    m = small()
    a, _ = m.predict(5, deterministic=True)
    assert np.ndim(a) == 0 and 0 <= a < 4
    a, _ = m.predict(np.array([0, 5, 15]), deterministic=True)
    assert a.shape == (3,)


def test_presets_name_their_source():
    for env in ("FrozenLake-v1", "Taxi-v4", "CartPole-v1"):
        m = lucidrl.QLearning(env, seed=0, verbose=0)
        assert m.preset_name == env and "lucidrl-tuned" in m.preset_source and "Sutton & Barto" in m.preset_source


def test_same_seed_same_table():
    a, b = small(n_envs=2), small(n_envs=2)
    a.learn(2000)
    b.learn(2000)
    assert torch.equal(a.agent.q, b.agent.q)


@pytest.mark.parametrize("update", ["q_learning", "sarsa", "expected_sarsa"])
@pytest.mark.parametrize("env", ["Taxi-v4", "CartPole-v1"])  # SAME_STEP (sync) and NEXT_STEP (native) autoreset
def test_every_update_runs_on_several_envs_and_logs(update, env, tmp_path):
    seen = []
    m = small(
        env, update=update, n_envs=3, run_dir=tmp_path / "run", tensorboard=False, exploration_decay="exponential"
    )
    m.learn(3000, callback=lambda model, metrics: seen.append(metrics), log_interval=600)
    assert m.num_timesteps == 3000 and len(seen) == 5
    assert {"train/exploration_rate", "train/learning_rate", "diag/mean_abs_td_error"} <= set(seen[-1])
    assert np.isfinite(m.agent.q.numpy()).all() and m.agent.q.abs().sum() > 0
    assert (tmp_path / "run" / "metrics.csv").exists() and (tmp_path / "run" / "model").exists()


def test_episode_statistics_count_real_steps_on_native_vector_envs():
    # CartPole's native vector env uses NEXT_STEP autoreset: reset steps are not episode steps
    lengths = []
    m = small("CartPole-v1", n_envs=2, n_bins=[1, 6, 12, 12])
    orig = m._after_update

    def after(logger, rollout, *args):
        lengths.extend(rollout.episode_lengths)
        return orig(logger, rollout, *args)

    m._after_update = after
    m.learn(2000, log_interval=100)
    assert lengths and min(lengths) >= 8 and max(lengths) <= 500  # CartPole cannot fail in fewer than 8 steps


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"learning_rate": 1.5}, r"learning_rate must lie in"),
        ({"gamma": 1.5}, r"gamma must lie in \[0, 1\]"),
        ({"update": "dqn"}, r"update must be 'q_learning', 'sarsa', 'expected_sarsa' or 'double_q_learning'"),
        ({"exploration_final_eps": -0.1}, r"exploration_final_eps must lie in \[0, 1\]"),
        ({"exploration_fraction": 0.0}, r"exploration_fraction must lie in \(0, 1\]"),
        ({"exploration_decay": "exponential", "exploration_final_eps": 0.0}, r"needs exploration_initial_eps and"),
        ({"n_bins": [0]}, r"n_bins must be a list of integers >= 1"),
        ({"bounds": [1.0, -1.0]}, r"bounds must be finite pairs"),
        ({"bounds": [1.0]}, r"bounds must be finite pairs"),
        ({"device": "cuda"}, r"device must be 'cpu'"),
        ({"epsilon": 0.1}, r"no hyperparameter 'epsilon'"),
    ],
)
def test_invalid_hyperparameters_are_refused(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        lucidrl.QLearning("NoSuchEnv-v0", **kwargs)


def test_discretiser_settings_must_fit_the_observations():
    with pytest.raises(ConfigError, match=r"n_bins has 3 entries but the observations have 4 dimensions"):
        small("CartPole-v1", n_bins=[2, 2, 2])
    with pytest.raises(ConfigError, match=r"bounds has 2 numbers; 4-dimensional observations need 8"):
        small("CartPole-v1", bounds=[-1.0, 1.0])
    with pytest.raises(ConfigError, match=r"unbounded; give bounds="):
        small(lambda: gym.make("CartPole-v1"), n_bins=[4])  # no env id: no known bounds for the velocities
    with pytest.raises(ConfigError, match=r"use fewer n_bins"):
        small("CartPole-v1", n_bins=[200])


def test_box_actions_and_other_spaces_are_refused_clearly():
    with pytest.raises(EnvError, match=r"QLearning needs a Discrete action space.*PPO"):
        small("Pendulum-v1")
    env = lambda: gym.make("FrozenLake-v1")  # noqa: E731
    with pytest.raises(EnvError, match=r"QLearning needs a Discrete observation space, or a Box one"):
        small(
            lambda: gym.wrappers.TransformObservation(
                env(), lambda o: (o, 0), gym.spaces.Tuple([gym.spaces.Discrete(16), gym.spaces.Discrete(2)])
            )
        )


def test_cli_trains_frozenlake_and_help_lists_the_fields(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "qlearning",
                "--env",
                "FrozenLake-v1",
                "--timesteps",
                "2000",
                "--run-dir",
                str(run),
                "--seed",
                "0",
                "--eval-episodes",
                "5",
                "--no-progress",
                "--update",
                "expected_sarsa",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "mean evaluation return:" in out
    m = lucidrl.load(run)
    assert m.config.update == "expected_sarsa" and m.num_timesteps == 2000
    with pytest.raises(SystemExit):
        main(["train", "qlearning", "--help"])
    out = capsys.readouterr().out
    for flag in ("--exploration-fraction", "--n-bins", "--bounds", "--update", "--learning-rate"):
        assert flag in out


def test_a_box_with_a_constant_dimension_trains_saves_and_loads(tmp_path):
    """Its recorded bounds hold low == high for that dimension (one bin): the config accepts them again."""

    class ConstantDim(gym.Env):
        observation_space = gym.spaces.Box(np.array([-1, 0], np.float32), np.array([1, 0], np.float32))
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return np.zeros(2, np.float32), {}

        def step(self, action):
            self.t += 1
            obs = np.array([self.np_random.uniform(-1, 1), 0.0], np.float32)
            return obs, float(action), False, self.t >= 10, {}

    model = lucidrl.QLearning(ConstantDim(), verbose=0, n_envs=1, seed=0)
    model.learn(300)
    assert model.config.bounds[2:] == [0.0, 0.0]
    assert lucidrl.load(model.save(tmp_path / "q")).config.bounds == model.config.bounds
