"""Bad input gets a clear error that names the problem and the fix, and nothing saved is lost."""

import json
import os
import pickle

import gymnasium as gym
import numpy as np
import pytest

import lucidrl
from lucidrl import CheckpointError, ConfigError, EnvError
from lucidrl.cli import main

SMALL = dict(n_envs=1, n_steps=64, batch_size=64, n_epochs=1, seed=0, verbose=0, preset=False)


def test_unknown_env_id_suggests_the_right_one():
    with pytest.raises(EnvError, match=r"Unknown environment id 'CartPol-v1'.*Did you mean 'CartPole-v1'"):
        lucidrl.PPO("CartPol-v1")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"gamma": 1.5}, r"gamma must lie in \(0, 1\]"),
        ({"gae_lambda": -0.1}, r"gae_lambda must lie in \[0, 1\]"),
        ({"learning_rate": -1e-3}, r"learning_rate must lie in"),
        ({"n_steps": 16, "batch_size": 64}, r"batch_size=64 is larger than a rollout .*n_steps \* n_envs = 16"),
        ({"variant": "trust"}, r"variant must be 'clip' or 'kl_penalty'"),
        ({"clip_range": 0.0}, r"clip_range must be > 0"),
        ({"net_arch": [64, -1]}, r"net_arch must be a list of positive layer sizes"),
        ({"n_epoch": 3}, r"no hyperparameter 'n_epoch'.*Did you mean 'n_epochs'"),
        ({"learning_rate": "fast"}, r"learning_rate: cannot read 'fast'"),
        ({"device": "cuda:7"}, r"(no CUDA GPU|cuda:7)"),
        ({"backend": "gpu"}, r"backend must be one of auto, reference, fast, got 'gpu'"),
        ({"torch_threads": 0}, r"torch_threads must be 'auto' or an integer >= 1"),
        # a value of the wrong type is named with its field, not a TypeError from a comparison inside the check
        ({"seed": "abc"}, r"seed must be a non-negative integer or None, got 'abc'"),
        ({"gamma": "abc"}, r"gamma must be a finite number, got the string 'abc'; for example gamma=0.99"),
        ({"gae_lambda": [0.9]}, r"gae_lambda must be a finite number, got \[0.9\]"),
        ({"shared_trunk": "yes"}, r"shared_trunk must be true or false, got the string 'yes'"),
        ({"max_grad_norm": float("inf")}, r"max_grad_norm must be a finite number or None, got inf"),
        ({"learning_rate": None}, r"learning_rate must be a finite number, 'lin_<number>' or a function"),
        ({"learning_rate": {"linear": 5}}, r"learning_rate: cannot read the schedule \{'linear': 5\}"),
        ({"device": "gpu0"}, r"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got 'gpu0'"),
        ({"preset": 1}, r"preset must be True, False or a preset name, got 1"),
        # the constructor's own options, not hyperparameters
        ({"run_dir": 5}, r"run_dir must be a path \(a str or pathlib.Path\) or None, got 5"),
        ({"verbose": "x"}, r"verbose must be 0 \(silent\), 1 \(progress bar\) or 2 \(every metric\), got 'x'"),
        ({"tensorboard": "no"}, r"tensorboard must be True or False, got 'no'"),
    ],
)
def test_invalid_hyperparameters_are_refused_before_anything_starts(kwargs, pattern):
    # the env id is wrong too: the config is checked first, before any env is built
    with pytest.raises(ConfigError, match=pattern):
        lucidrl.PPO("NoSuchEnv-v0", **kwargs)


def test_numpy_scalars_are_numbers_to_a_config():
    model = lucidrl.PPO(
        "CartPole-v1",
        **{
            **SMALL,
            "n_steps": np.int64(64),
            "gamma": np.float32(0.9),
            "net_arch": [np.int64(8)],
            "normalize_advantage": np.bool_(False),
        },
    )
    assert model.config.n_steps == 64 and type(model.config.n_steps) is int and model.config.net_arch == [8]


def test_a_bad_value_writes_nothing(tmp_path):
    with pytest.raises(ConfigError, match="seed must be"):
        lucidrl.PPO("CartPole-v1", seed="abc", run_dir=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_unsupported_action_space_names_the_space_and_what_is_supported():
    class TwoKnobs(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (2,))
        action_space = gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.Discrete(3)])

        def reset(self, seed=None, options=None):
            return np.zeros(2, dtype=np.float32), {}

        def step(self, action):
            return np.zeros(2, dtype=np.float32), 0.0, False, False, {}

    with pytest.raises(
        EnvError, match=r"PPO takes a Discrete, MultiDiscrete, MultiBinary or 1-D Box action space; got Tuple\("
    ):
        lucidrl.PPO(TwoKnobs, verbose=0, preset=False)


def test_unsupported_observations_are_refused_clearly():
    def env_with(shape):
        class ObsEnv(gym.Env):
            observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
            action_space = gym.spaces.Discrete(2)

            def reset(self, *, seed=None, options=None):
                return np.zeros(shape, np.uint8), {}

        return ObsEnv()

    # images (3-D Box) go to the Nature CNN (tests/contracts/test_images.py); 4-D is refused
    with pytest.raises(EnvError, match=r"an image \(a 3-D Box.*got Box\(0, 255, \(2, 84, 84, 3\)"):
        lucidrl.PPO(env_with((2, 84, 84, 3)), **SMALL)
    with pytest.raises(EnvError, match=r"at least 36x36 pixels.*got 20x20"):
        lucidrl.PPO(env_with((20, 20, 3)), **SMALL)


def test_env_instance_cannot_be_copied_into_many_envs():
    from gymnasium.envs.classic_control import CartPoleEnv

    # an instance without a spec (one with a spec is copied from it: tests/contracts/test_sb3_api.py)
    with pytest.raises(EnvError, match="pass the env id or a callable"):
        lucidrl.PPO(CartPoleEnv(), **{**SMALL, "n_envs": 4})


def test_learn_needs_a_positive_budget():
    with pytest.raises(ConfigError, match="total_timesteps must be a positive whole number"):
        lucidrl.PPO("CartPole-v1", **SMALL).learn(0)


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture
def saved(tmp_path):
    m = lucidrl.PPO("CartPole-v1", **SMALL)
    m.learn(64)
    return m, m.save(tmp_path / "ckpt")


def test_load_takes_hyperparameters_that_replace_the_saved_ones(saved):
    # seed= and other config fields given to load replace the saved values instead of colliding with them
    model = lucidrl.PPO.load(saved[1], seed=7, learning_rate=1e-4)
    assert model.config.seed == 7 and model.config.learning_rate == 1e-4
    with pytest.raises(ConfigError, match=r"seed must be a non-negative integer or None, got 'abc'"):
        lucidrl.PPO.load(saved[1], seed="abc")


def test_missing_checkpoint_and_missing_files(tmp_path, saved):
    with pytest.raises(CheckpointError, match="does not exist"):
        lucidrl.load(tmp_path / "nowhere")
    _, path = saved
    os.remove(path / "state.json")
    with pytest.raises(CheckpointError, match=r"not a complete lucidrl checkpoint: missing state.json"):
        lucidrl.load(path)


def test_corrupt_json_and_corrupt_weights(saved):
    _, path = saved
    good = (path / "weights.safetensors").read_bytes()
    (path / "weights.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="weights.safetensors is not a readable safetensors file"):
        lucidrl.load(path)
    (path / "weights.safetensors").write_bytes(good)
    (path / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        lucidrl.load(path)


def test_newer_format_and_other_algorithm(saved):
    _, path = saved
    state = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**state, "format_version": 99}))
    with pytest.raises(CheckpointError, match=r"format 99.*reads formats up to 1.*pip install -U lucidrl"):
        lucidrl.load(path)
    (path / "state.json").write_text(json.dumps(state))
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "algo": "dqn9"}))
    with pytest.raises(CheckpointError, match="unknown algorithm 'dqn9'"):
        lucidrl.load(path)


def test_weights_of_another_architecture_are_named(saved, tmp_path):
    other = lucidrl.PPO("CartPole-v1", **{**SMALL, "net_arch": [32]})
    p = other.save(tmp_path / "other")
    config = json.loads((p / "config.json").read_text())
    config["config"]["net_arch"] = [64, 64]  # claims an architecture its weights do not have
    (p / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit this ppo model"):
        lucidrl.load(p)


class _Payload:
    def __reduce__(self):
        return (open, ("PWNED", "w"))


def test_loading_a_tampered_file_runs_no_code(saved, tmp_path):
    _, path = saved
    (path / "weights.safetensors").write_bytes(pickle.dumps({"agent/x": _Payload()}))
    with pytest.raises(CheckpointError):
        lucidrl.load(path)
    assert not (tmp_path / "PWNED").exists()
    # a code string in the config is data, never evaluated
    (path / "weights.safetensors").unlink()
    p2 = saved[0].save(tmp_path / "ckpt2")
    config = json.loads((p2 / "config.json").read_text())
    config["config"]["learning_rate"] = "__import__('os').system('touch PWNED')"
    (p2 / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json.*learning_rate: cannot read"):  # the file is at fault
        lucidrl.load(p2)
    assert not (tmp_path / "PWNED").exists()


def test_a_failed_save_keeps_the_previous_checkpoint(saved, monkeypatch):
    m, path = saved
    before = (path / "weights.safetensors").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("lucidrl.checkpoint.save_file", boom)
    with pytest.raises(CheckpointError, match="cannot save a checkpoint at .*: disk full; nothing there was changed"):
        m.save(path)
    assert (path / "weights.safetensors").read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary leftovers
    assert lucidrl.load(path).num_timesteps == 64


def test_saving_into_a_run_directory_never_overwrites_its_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("keep me")
    lucidrl.PPO("CartPole-v1", **SMALL).save(run)
    assert (run / "metrics.csv").read_text() == "keep me" and (run / "model" / "weights.safetensors").exists()


# --------------------------------------------------------------------------- CLI
def test_cli_reports_errors_in_one_line_without_a_traceback(capsys):
    assert main(["train", "ppo", "--env", "CartPol-v1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lucidrl: error: Unknown environment id 'CartPol-v1'") and "Traceback" not in err
    assert main(["train", "ppo", "--env", "CartPole-v1", "--gamma", "2"]) == 2
    assert "gamma must lie in" in capsys.readouterr().err
    assert main(["eval", "does/not/exist"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_loading_a_checkpoint_of_another_algorithm_names_both(tmp_path):
    a2c = lucidrl.A2C("CartPole-v1", n_envs=1, seed=0, verbose=0)
    path = a2c.save(tmp_path / "a2c")
    with pytest.raises(CheckpointError, match=r"is a checkpoint of A2C, not of PPO.*lucidrl.load\(\)"):
        lucidrl.PPO.load(path)
    assert type(lucidrl.load(path)) is lucidrl.A2C


class _Box3(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (3,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}


class _ResetShape(_Box3):
    def reset(self, seed=None, options=None):
        return np.zeros(5, np.float32), {}


class _StepShape(_Box3):
    def step(self, action):
        return np.zeros(5, np.float32), 0.0, False, False, {}


class _OldReset(_Box3):
    def reset(self, seed=None, options=None):
        return np.zeros(3, np.float32)


class _OldStep(_Box3):
    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, {}


@pytest.mark.parametrize(
    "cls, pattern",
    [
        (_ResetShape, r"reset\(\) returned an observation of shape \(5,\), but the observation space is Box"),
        (_StepShape, r"step\(\).*an observation's shape differs from the observation space"),
        (_OldReset, r"reset\(\) must return \(observation, info\)"),
        (_OldStep, r"step\(\) must return \(observation, reward, terminated, truncated, info\)"),
    ],
)
@pytest.mark.parametrize("n_envs", [1, 2])
def test_an_env_that_breaks_gymnasiums_api_is_named_not_a_numpy_traceback(cls, pattern, n_envs):
    env = cls() if n_envs == 1 else cls
    with pytest.raises(EnvError, match=pattern):
        lucidrl.PPO(env, **{**SMALL, "n_envs": n_envs}).learn(128)


def test_an_error_of_the_envs_own_is_left_as_it_is():
    class Buggy(_Box3):
        def step(self, action):
            raise ValueError("my bug")

    with pytest.raises(ValueError, match="my bug"):
        lucidrl.PPO(Buggy(), **SMALL).learn(128)

    class Unpacks(_Box3):  # the same message Gymnasium's unpacking gives, but raised in the env's own code
        def reset(self, seed=None, options=None):
            low, high = (0, 1, 2)
            return np.full(3, low + high, np.float32), {}

    with pytest.raises(ValueError, match=r"too many values to unpack \(expected 2"):
        lucidrl.PPO(Unpacks(), **SMALL)


def test_a_module_named_by_a_model_file_is_never_imported(tmp_path, monkeypatch):
    """gymnasium.make('mod:Env-v0') imports mod: a saved env id with that prefix must not make lucidrl run it."""
    (tmp_path / "planted.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "model"
    lucidrl.PPO("CartPole-v1", **SMALL).save(path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "env_id": "planted:CartPole-v1"}))
    model = lucidrl.load(path)
    for use in (lambda: lucidrl.evaluate(model, n_episodes=1), lambda: model.learn(64)):
        with pytest.raises(EnvError, match="does not import code that a model file names"):
            use()
    assert main(["eval", str(path), "--episodes", "1"]) != 0
    assert not (tmp_path / "ran").exists()


def test_a_model_loaded_with_an_env_of_other_spaces_is_named_before_the_weights(saved):
    with pytest.raises(EnvError, match=r"the env's spaces \(Box.*\(6,\).*Discrete\(3\)\) differ from the model's"):
        lucidrl.load(saved[1], env="Acrobot-v1")


@pytest.mark.parametrize("path", ["", 3])  # (file objects are taken: test_file_object_checkpoints.py)
def test_save_and_load_name_a_path_that_is_no_path(path, tmp_path):
    model = lucidrl.PPO("CartPole-v1", **SMALL)
    with pytest.raises(CheckpointError, match="needs a path"):
        model.save(path)
    with pytest.raises(CheckpointError, match="needs the path of a checkpoint"):
        lucidrl.load(path)


def test_save_to_a_path_that_cannot_be_written_names_it(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match=r"cannot save a checkpoint at '.*afile/sub'"):
        lucidrl.PPO("CartPole-v1", **SMALL).save(tmp_path / "afile" / "sub")
