"""An env's constructor arguments travel with its id (lucidrl.envs.EnvId): a model trained on
``gymnasium.make("FrozenLake-v1", is_slippery=False)`` (or on the id with ``env_kwargs=``, or
``--env-kwargs`` on the command line) is evaluated, reloaded and resumed on that env, not on the
registered default. Before, a loaded model evaluated on the slippery lake: 0.0 instead of 1.0."""

import json
import pickle

import gymnasium as gym
import numpy as np
import pytest

import lucidrl
from lucidrl import ConfigError
from lucidrl.cli import main
from lucidrl.envs import EnvId, env_id_of, make_env, make_vec_env


def test_an_instance_made_with_arguments_gives_an_id_that_carries_them():
    assert env_id_of(gym.make("CartPole-v1")) == "CartPole-v1" and not isinstance(
        env_id_of(gym.make("CartPole-v1", render_mode="rgb_array")), EnvId
    )  # the registered arguments, and how it is shown, are not the env's own
    env_id = env_id_of(gym.make("FrozenLake-v1", is_slippery=False, max_episode_steps=30))
    assert env_id == "FrozenLake-v1" and env_id.kwargs == {"is_slippery": False, "max_episode_steps": 30}
    again = pickle.loads(pickle.dumps(env_id))  # (as sent to Ray workers)
    assert isinstance(again, EnvId) and again.kwargs == env_id.kwargs
    built = make_env(env_id)
    assert built.spec.kwargs["is_slippery"] is False and built.spec.max_episode_steps == 30
    venv = make_vec_env(env_id, 2, seed=0)
    assert venv.envs[0].spec.kwargs["is_slippery"] is False
    assert make_env(env_id, is_slippery=True).spec.kwargs["is_slippery"] is True  # the caller's argument wins
    assert EnvId("CartPole-v1", {"f": object()}).json_kwargs()[1] == ["f"]


def test_a_loaded_model_is_evaluated_on_the_env_it_was_trained_on(tmp_path):
    lake = gym.make("FrozenLake-v1", is_slippery=False)
    model = lucidrl.QLearning(lake, seed=0, verbose=0)
    model.learn(20_000)
    assert lucidrl.evaluate(model, gym.make("FrozenLake-v1", is_slippery=False), n_episodes=10)[0] == 1.0
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["env_kwargs"] == {"is_slippery": False}
    loaded = lucidrl.load(tmp_path / "m")
    assert loaded.env_id.kwargs == {"is_slippery": False}
    assert lucidrl.evaluate(loaded, n_episodes=10)[0] == 1.0  # (the slippery default: 0.0)
    loaded.learn(100)  # and trains on the same lake
    assert loaded.env.envs[0].spec.kwargs["is_slippery"] is False


def test_env_kwargs_with_an_id_reach_training_evaluation_and_the_checkpoint(tmp_path):
    model = lucidrl.PPO(
        "CartPole-v1", env_kwargs={"max_episode_steps": 20}, n_envs=2, n_steps=64, batch_size=64, seed=0, verbose=0
    )
    model.learn(256)
    assert model.ep_info_buffer and max(e["l"] for e in model.ep_info_buffer) <= 20
    model.save(tmp_path / "m.zip")
    loaded = lucidrl.load(tmp_path / "m.zip")
    returns = lucidrl.evaluate(loaded, n_episodes=3, return_episode_returns=True)[2]
    assert max(returns) <= 20  # CartPole pays 1 a step: episodes cut at 20 steps
    with pytest.raises(ConfigError, match="env_kwargs are the constructor arguments of an env id"):
        lucidrl.PPO(gym.make("CartPole-v1"), env_kwargs={"max_episode_steps": 20}, verbose=0)
    with pytest.raises(ConfigError, match="env_kwargs must be a dict"):
        lucidrl.PPO("CartPole-v1", env_kwargs=[("max_episode_steps", 20)], verbose=0)


def test_the_cli_takes_env_kwargs_and_eval_and_resume_keep_them(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--env", "FrozenLake-v1", "--env-kwargs", "is_slippery:False", "map_name:4x4", "--no-progress"]
    assert main(["train", "qlearning", *args, "--timesteps", "20000", "--run-dir", str(run), "--seed", "0"]) == 0
    assert "mean evaluation return: 1.0" in capsys.readouterr().out
    assert main(["eval", str(run), "--episodes", "5"]) == 0
    out = capsys.readouterr().out
    assert "on 'FrozenLake-v1' (is_slippery=False, map_name='4x4')" in out and "mean return 1.00" in out
    assert main(["train", "qlearning", "--resume", str(run), "--timesteps", "100", "--no-progress"]) == 0
    assert "mean evaluation return: 1.0" in capsys.readouterr().out
    assert main(["train", "qlearning", "--env", "FrozenLake-v1", "--env-kwargs", "is slippery=False"]) == 2
    assert "'is slippery=False' is not KEY:VALUE or KEY=VALUE" in capsys.readouterr().err
    from lucidrl.cli import _env_kwarg

    assert _env_kwarg("is_slippery=False") == _env_kwarg("is_slippery:False") == ("is_slippery", False)
    assert _env_kwarg("x:a=b") == ("x", "a=b")  # the first of ':' and '=' separates
    np.testing.assert_equal(lucidrl.load(run / "model").env_id.kwargs, {"is_slippery": False, "map_name": "4x4"})


def test_a_malformed_env_kwargs_in_a_checkpoint_is_named(tmp_path):
    from lucidrl.errors import CheckpointError

    lucidrl.PPO("CartPole-v1", env_kwargs={"max_episode_steps": 20}, n_envs=1, verbose=0).save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "env_kwargs": ["max_episode_steps", 20]}))
    with pytest.raises(CheckpointError, match="env_kwargs"):
        lucidrl.load(tmp_path / "m")


def test_compare_trains_and_evaluates_every_run_on_the_env_with_its_arguments(tmp_path, capsys):
    from lucidrl.compare import compare

    out = tmp_path / "cmp"
    cli = ["compare", "ppo", "--env", "CartPole-v1", "--env-kwargs", "max_episode_steps:20", "--seeds", "1"]
    assert main([*cli, "--timesteps", "2048", "--eval-episodes", "2", "--jobs", "1", "--out", str(out)]) == 0
    result = json.loads((out / "runs" / "ppo-s0" / "result.json").read_text())
    assert result["env_kwargs"] == {"max_episode_steps": 20} and result["eval_mean"] <= 20
    assert (out / "results.md").read_text().startswith("# CartPole-v1 (max_episode_steps=20): ppo")
    with pytest.raises(ConfigError, match=r"env_kwargs \{'max_episode_steps': 20\}, not \{\}"):
        compare(["ppo"], "CartPole-v1", seeds=1, timesteps=2048, eval_episodes=2, out=out)


def test_arguments_json_cannot_hold_are_named_when_saving(tmp_path):
    gym.register("lucidrl-test/Shaped-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    try:
        env = gym.make("lucidrl-test/Shaped-v0", max_episode_steps=30)
        env.spec.kwargs["shaping"] = object()  # (an argument of an object, as a user's env might take)
        model = lucidrl.PPO(env, n_envs=1, n_steps=16, batch_size=16, verbose=0)
        with pytest.warns(UserWarning, match="shaping are not JSON.*pass env= when loading"):
            model.save(tmp_path / "m")
        assert json.loads((tmp_path / "m" / "config.json").read_text())["env_kwargs"] == {"max_episode_steps": 30}
    finally:
        gym.registry.pop("lucidrl-test/Shaped-v0")


def test_the_models_own_id_given_back_to_load_or_eval_keeps_its_arguments(tmp_path, capsys, monkeypatch):
    """A model file naming a ``module:EnvId`` id asks for the env to be passed (``load(path, env=ID)``, ``--env ID``):
    that id then means the saved env, with its saved arguments. Before, they were dropped: the non-slippery lake's
    model played the slippery one (0.0 instead of 1.0). Another id, an EnvId or an instance is the caller's."""
    (tmp_path / "lakes.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('lucidrl-test/Lake-v0', entry_point='gymnasium.envs.toy_text.frozen_lake:FrozenLakeEnv', "
        "max_episode_steps=100)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    env_id = "lakes:lucidrl-test/Lake-v0"
    try:
        model = lucidrl.QLearning(env_id, env_kwargs={"is_slippery": False}, seed=0, verbose=0)
        model.learn(20_000)
        model.save(tmp_path / "m")
        loaded = lucidrl.load(tmp_path / "m", env=env_id)
        assert loaded.env_id.kwargs == {"is_slippery": False}
        assert loaded.env.envs[0].spec.kwargs["is_slippery"] is False
        assert lucidrl.evaluate(loaded, n_episodes=5)[0] == 1.0
        assert main(["eval", str(tmp_path / "m"), "--env", env_id, "--episodes", "5"]) == 0
        assert "mean return 1.00" in capsys.readouterr().out
        other = lucidrl.load(tmp_path / "m", env=EnvId(env_id, {"is_slippery": True}))
        assert other.env.envs[0].spec.kwargs["is_slippery"] is True
    finally:
        gym.registry.pop("lucidrl-test/Lake-v0", None)


def test_set_env_makes_the_new_env_the_models(tmp_path):
    """A model moved to another env with set_env saves, and is evaluated on, that env's id and arguments. Before,
    the first env's stayed: fine-tuned on the slippery lake, it was saved and evaluated as is_slippery=False."""
    model = lucidrl.QLearning("FrozenLake-v1", env_kwargs={"is_slippery": False}, seed=0, verbose=0)
    model.set_env(gym.make("FrozenLake-v1", desc=LAKE))
    assert model.env_id == "FrozenLake-v1" and model.env_id.kwargs == {"desc": LAKE}
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["env_kwargs"] == {"desc": LAKE}
    model.set_env(lambda: gym.make("FrozenLake-v1"))  # (no id to read: the model's stays)
    assert model.env_id.kwargs == {"desc": LAKE}


LAKE = ["SFFF", "FFFF", "FFFF", "HFFG"]


def test_eval_can_try_a_model_on_other_arguments(tmp_path, capsys):
    """lucidrl eval RUN --env-kwargs is_slippery:True: the model trained on the still lake, tried on the slippery one
    (the arguments go on top of the model's own)."""
    model = lucidrl.QLearning(gym.make("FrozenLake-v1", is_slippery=False), seed=0, verbose=0)
    model.learn(20_000)
    model.save(tmp_path / "m")
    assert main(["eval", str(tmp_path / "m"), "--episodes", "20"]) == 0
    assert "mean return 1.00" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "m"), "--episodes", "20", "--env-kwargs", "is_slippery:True"]) == 0
    out = capsys.readouterr().out
    assert "(is_slippery=True)" in out and "mean return 1.00" not in out


def test_a_misspelt_env_argument_is_named_with_the_ones_the_env_takes():
    """--env-kwargs is_slipery:False used to end in FrozenLakeEnv.__init__'s TypeError from inside Gymnasium."""
    from lucidrl.errors import EnvError

    with pytest.raises(
        EnvError, match=r"FrozenLake-v1 takes no argument 'is_slipery' \(did you mean 'is_slippery'\?\)"
    ):
        lucidrl.PPO("FrozenLake-v1", env_kwargs={"is_slipery": False}, verbose=0)
    with pytest.raises(EnvError, match="its arguments: .*max_episode_steps.*sutton_barto_reward"):
        make_env("CartPole-v1", reward_scale=2)
    assert main(["train", "ppo", "--env", "FrozenLake-v1", "--env-kwargs", "is_slipery:False"]) == 2
    make_vec_env("CartPole-v1", 2, max_episode_steps=10, sutton_barto_reward=True)  # gymnasium.make's and the env's
