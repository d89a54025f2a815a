"""Faults and bad input: non-finite values, crash-safe checkpoints, checked checkpoint files.

Each test is one row of docs/reliability.md: the fault, what lucidrl does, and the proof.
"""

import json
import os
import pickle
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import lucidrl
from lucidrl.checkpoint import recover_checkpoint
from lucidrl.errors import CheckpointError, EnvError, LucidRLError, TrainingError

PPO_SMALL = dict(n_envs=2, n_steps=64, batch_size=64, n_epochs=2, seed=0, verbose=0, tensorboard=False)
SMALL = {
    "ppo": PPO_SMALL,
    "a2c": dict(n_envs=2, n_steps=8, seed=0, verbose=0, tensorboard=False),
    "dqn": dict(
        learning_starts=64,
        train_freq=16,
        gradient_steps=4,
        batch_size=32,
        buffer_size=2000,
        target_update_interval=64,
        seed=0,
        verbose=0,
        tensorboard=False,
    ),
}


class FaultyCartPole(gym.Wrapper):
    """CartPole whose ``field`` turns to ``value`` from its ``start``-th step on (counted over episodes)."""

    def __init__(self, field="obs", start=300, value=np.nan):
        super().__init__(gym.make("CartPole-v1"))
        self.field, self.start, self.value, self.t = field, start, value, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        if self.t >= self.start:
            if self.field == "obs":
                obs = obs.copy()
                obs[2] = self.value
            else:
                reward = self.value
        return obs, reward, terminated, truncated, info


def make_faulty(field="obs", start=300, value=np.nan):
    return lambda: FaultyCartPole(field, start, value)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_a_nan_observation_stops_training_and_keeps_the_good_checkpoints(algo, tmp_path):
    cls = {"ppo": lucidrl.PPO, "a2c": lucidrl.A2C, "dqn": lucidrl.DQN}[algo]
    model = cls(make_faulty("obs", 300), preset=False, run_dir=tmp_path / "run", **SMALL[algo])
    with pytest.raises(EnvError) as info:
        model.learn(5_000, checkpoint_freq=128)
    message = str(info.value)
    assert "env 0" in message and "observation" in message and "step 300" in message
    assert not (tmp_path / "run" / "model").exists()  # no NaN model saved as the final one
    checkpoints = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints  # the good ones before the fault stay, and load
    loaded = lucidrl.load(checkpoints[-1])
    assert all(torch.isfinite(p).all() for p in loaded._modules()[next(iter(loaded._modules()))].parameters())


def test_a_nan_reward_names_the_field():
    model = lucidrl.PPO(make_faulty("reward", 100), preset=False, **PPO_SMALL)
    with pytest.raises(EnvError, match=r"env 0 returned a non-finite reward .* at step 100"):
        model.learn(1_000)


class NaNAtTruncation(gym.Wrapper):
    """CartPole cut at 20 steps whose last observation (the one bootstrapped from) is NaN."""

    def __init__(self):
        super().__init__(gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, 20))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if truncated:
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


def test_a_nan_final_observation_of_a_same_step_reset_is_named():
    # with same-step autoreset the step returns the next episode's first observation, and the
    # final one (which the value bootstrap uses) only in info["final_obs"]: it is checked too
    venv = gym.vector.SyncVectorEnv([NaNAtTruncation], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    model = lucidrl.PPO(venv, preset=False, **{**PPO_SMALL, "n_envs": 1})
    with pytest.raises(
        EnvError,
        match=r"env 0 returned a non-finite final observation \(\[nan, nan, nan, nan\]\) "
        r"at step 20",
    ):
        model.learn(1_000)


def test_a_non_finite_loss_stops_training_without_saving(tmp_path):
    # rewards of 1e38 are finite, but their squared error is not in float32: the value loss overflows
    model = lucidrl.PPO(make_faulty("reward", 1, 1e38), preset=False, run_dir=tmp_path / "run", **PPO_SMALL)
    with pytest.raises(TrainingError, match="non-finite") as info:
        model.learn(1_000, checkpoint_freq=128)
    assert "loss/value" in str(info.value) or "weights" in str(info.value) or "agent/" in str(info.value)
    assert not (tmp_path / "run" / "model").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()  # the first update already failed: nothing saved
    with pytest.raises(CheckpointError, match="non-finite"):  # nor can the NaN model be saved by hand
        model.save(tmp_path / "nan_model")
    assert not (tmp_path / "nan_model").exists()


def test_loading_non_finite_weights_is_refused(tmp_path):
    path = lucidrl.PPO("CartPole-v1", preset=False, **PPO_SMALL).save(tmp_path / "m")
    tensors = load_file(str(path / "weights.safetensors"))
    key = next(k for k in tensors if k.startswith("agent/") and tensors[k].is_floating_point())
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(path / "weights.safetensors"))
    with pytest.raises(CheckpointError, match=f"non-finite .*{key}"):
        lucidrl.load(path)


# --------------------------------------------------------------------------- crash-safe checkpoints
def _saved(tmp_path, name="ckpt"):
    model = lucidrl.PPO("CartPole-v1", preset=False, **PPO_SMALL)
    return model, model.save(tmp_path / name)


def test_a_checkpoint_left_between_the_two_renames_is_recovered(tmp_path):
    model, path = _saved(tmp_path)
    # the state a save killed between its renames leaves: the old copy renamed away, the new one complete
    old, tmp = path.parent / f".{path.name}.old-dead0001", path.parent / f".{path.name}.tmp-dead0001"
    shutil.copytree(path, tmp)
    os.rename(path, old)
    assert not path.exists()
    loaded = lucidrl.load(path)  # recovers the newer copy into place
    assert path.is_dir() and not tmp.exists()
    assert torch.equal(next(loaded.agent.parameters()), next(model.agent.parameters()))
    model.save(path)  # the next save cleans what the killed one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_only_the_old_copy_left_is_recovered_and_an_incomplete_one_is_not(tmp_path):
    model, path = _saved(tmp_path)
    os.rename(path, path.parent / f".{path.name}.old-dead0002")
    torn = path.parent / f".{path.name}.tmp-dead0002"  # killed while writing: no state.json yet
    torn.mkdir()
    (torn / "weights.safetensors").write_bytes(b"\0" * 10)
    assert recover_checkpoint(path) == path
    assert (path / "state.json").is_file()
    lucidrl.load(path)
    model.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_name_with_glob_characters_never_touches_another_checkpoints_hidden_copies(tmp_path):
    """ "agent[1]" is a name, not a pattern: its save's cleanup and its recovery leave agent1's copies alone (the
    pattern ".agent[1].tmp-*" matched ".agent1.tmp-*": a save deleted another's save in progress, a load
    recovered another model)."""
    model, neighbour = _saved(tmp_path, "agent1")
    in_progress, older = tmp_path / ".agent1.tmp-cafe0001", tmp_path / ".agent1.old-cafe0001"
    shutil.copytree(neighbour, in_progress)
    shutil.copytree(neighbour, older)
    with pytest.raises(CheckpointError):
        lucidrl.load(tmp_path / "agent[1]")  # nothing of its own to recover
    assert not (tmp_path / "agent[1]").exists() and in_progress.is_dir() and older.is_dir()
    model.save(tmp_path / "agent[1]")
    assert in_progress.is_dir() and older.is_dir()
    zipped = model.save(tmp_path / "agent[2].zip")
    (tmp_path / ".agent2.zip.tmp-cafe0002").write_bytes(b"another save in progress")
    model.save(zipped)
    assert (tmp_path / ".agent2.zip.tmp-cafe0002").is_file()


def test_save_refuses_to_replace_what_is_not_a_checkpoint(tmp_path):
    model = lucidrl.PPO("CartPole-v1", preset=False, **PPO_SMALL)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    with pytest.raises(CheckpointError, match="not a lucidrl checkpoint"):
        model.save(notes)
    assert notes.read_text() == "my notes"
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"some": "tool"}')
    with pytest.raises(CheckpointError, match="not a lucidrl checkpoint"):
        model.save(other)
    assert json.loads((other / "config.json").read_text()) == {"some": "tool"}
    path = model.save(tmp_path / "ckpt")
    (path / "mine.txt").write_text("x")
    with pytest.raises(CheckpointError, match="mine.txt"):
        model.save(path)
    assert (path / "mine.txt").exists() and (path / "weights.safetensors").exists()


# --------------------------------------------------------------------------- checked checkpoint files
def _edit(path, name, change):
    doc = json.loads((path / name).read_text())
    change(doc)
    (path / name).write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "name, change, expected",
    [
        (
            "state.json",
            lambda d: d.update(num_timesteps="lots"),
            r"state.json field 'num_timesteps' should be a non-negative",
        ),
        ("state.json", lambda d: d.update(n_updates=-3), r"field 'n_updates'"),
        ("state.json", lambda d: d.update(attributes={"beta": "x"}), r"field 'attributes.beta'"),
        ("state.json", lambda d: d.update(optimizers=[]), r"field 'optimizers'"),
        ("state.json", lambda d: d.update(format_version="1"), r"no format_version \(an integer >= 1\)"),
        ("state.json", lambda d: d.update(format_version=0), r"no format_version \(an integer >= 1\)"),
        ("config.json", lambda d: d.update(algo=7), r"config.json field 'algo'"),
        ("config.json", lambda d: d.update(algo="dqn"), r"do not fit its algorithm 'dqn'"),
        ("config.json", lambda d: d.update(env_id=["x"]), r"field 'env_id'"),
        ("config.json", lambda d: d["config"].update(n_steps="many"), r"n_steps"),
        ("config.json", lambda d: d.pop("action_space"), r"no 'action_space' entry"),
    ],
)
def test_each_checkpoint_field_is_checked_and_named(tmp_path, name, change, expected):
    _, path = _saved(tmp_path)
    _edit(path, name, change)
    with pytest.raises(CheckpointError, match=expected):
        lucidrl.load(path)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    _, path = _saved(tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load unpickled something")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    lucidrl.load(path)


def test_randomly_corrupted_checkpoints_raise_only_lucidrl_errors(tmp_path, monkeypatch):
    """Property: whatever bytes or JSON values a checkpoint holds, loading either works or raises a
    LucidRLError, and never unpickles (hypothesis draws the corruptions)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    _, clean = _saved(tmp_path, "clean")
    for name in ("loads", "load"):
        monkeypatch.setattr(pickle, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("unpickled")))
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=6,
    )
    counter = iter(range(10**6))

    @hypothesis.settings(max_examples=120, deadline=None, derandomize=True)
    @hypothesis.given(data=st.data())
    def check(data):
        path = tmp_path / f"c{next(counter)}"
        shutil.copytree(clean, path)
        name = data.draw(st.sampled_from(["weights.safetensors", "config.json", "state.json"]))
        file = path / name
        raw = bytearray(file.read_bytes())
        how = data.draw(
            st.sampled_from(["flip", "truncate", "json"] if name.endswith(".json") else ["flip", "truncate"])
        )
        if how == "flip":
            for _ in range(data.draw(st.integers(1, 8))):
                i = data.draw(st.integers(0, len(raw) - 1))
                raw[i] = data.draw(st.integers(0, 255))
            file.write_bytes(bytes(raw))
        elif how == "truncate":
            file.write_bytes(bytes(raw[: data.draw(st.integers(0, len(raw)))]))
        else:  # replace one field (possibly nested one level) with an arbitrary JSON value
            doc = json.loads(raw)
            key = data.draw(st.sampled_from(sorted(doc)))
            if isinstance(doc[key], dict) and doc[key] and data.draw(st.booleans()):
                doc[key][data.draw(st.sampled_from(sorted(doc[key])))] = data.draw(json_values)
            else:
                doc[key] = data.draw(json_values)
            file.write_text(json.dumps(doc))
        try:
            model = lucidrl.load(path)
            model.predict(np.zeros(4, dtype=np.float32))
        except LucidRLError:
            pass
        shutil.rmtree(path)

    check()


def test_another_algorithms_optimiser_state_is_named_at_load(tmp_path):
    """A2C's RMSprop state inside a PPO checkpoint (its weights file swapped in) would load and then fail in the
    first update (KeyError 'exp_avg'); it is refused at load, naming both optimisers' state."""
    small = dict(n_envs=2, verbose=0, seed=0, preset=False)
    a2c = lucidrl.A2C("CartPole-v1", **small, n_steps=5).learn(40)
    ppo = lucidrl.PPO("CartPole-v1", **small, n_steps=16, batch_size=16).learn(32)
    a2c.save(tmp_path / "a2c")
    ppo.save(tmp_path / "ppo")
    lucidrl.load(tmp_path / "ppo").learn(32)  # its own state loads and trains
    shutil.copy(tmp_path / "a2c" / "weights.safetensors", tmp_path / "ppo" / "weights.safetensors")
    with pytest.raises(CheckpointError, match=r"holds \['square_avg', 'step'\].*Adam keeps \['exp_avg'"):
        lucidrl.load(tmp_path / "ppo")
    shutil.copy(tmp_path / "a2c" / "state.json", tmp_path / "ppo" / "state.json")
    with pytest.raises(CheckpointError, match=r"is a RMSprop's, but this model's optimiser is Adam"):
        lucidrl.load(tmp_path / "ppo")


@pytest.mark.parametrize(
    "role, space",
    [
        ("action_space", {"type": "Discrete", "n": 10**12, "start": 0}),
        ("observation_space", {"type": "Box", "shape": [10**6, 10**6], "dtype": "float32", "low": 0, "high": 1}),
    ],
)
def test_a_space_larger_than_the_weights_is_refused_before_it_is_allocated(tmp_path, role, space):
    path = lucidrl.PPO("CartPole-v1", n_envs=2, n_steps=16, batch_size=16, verbose=0, preset=False).save(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, role: space}))
    with pytest.raises(CheckpointError, match="is larger than all the weights"):
        lucidrl.load(path)


@pytest.mark.parametrize("shape", [["a", "b"], 4, [-1]])
def test_a_malformed_space_shape_is_named(tmp_path, shape):
    path = lucidrl.PPO("CartPole-v1", n_envs=2, n_steps=16, batch_size=16, verbose=0, preset=False).save(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    config["observation_space"]["shape"] = shape
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="the spaces in config.json cannot be used"):
        lucidrl.load(path)


def test_a_grpo_checkpoint_that_is_not_one_is_named(tmp_path):
    path = lucidrl.PPO("CartPole-v1", n_envs=2, n_steps=16, batch_size=16, verbose=0, preset=False).save(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "algo": "grpo"}))
    with pytest.raises(CheckpointError, match="names no task"):
        lucidrl.load(path)
