"""Checkpoints in file objects (Stable-Baselines3's ``model.save(io.BytesIO())`` / ``PPO.load(f)``): ``save(f)`` writes
the bytes a ``.zip`` save writes, from the object's position, flushed and not closed; ``load(f)``, ``ALGO.load(f)``,
``set_parameters(f)``, ``read_config(f)`` and DQN's ``save_replay_buffer(f)`` / ``load_replay_buffer(f)`` read from
the object's position with every check a ``.zip`` file gets, naming "the file object"; nothing is unpickled. Also
``save(path, exclude=..., include=...)`` over lucidrl's fixed checkpoint content."""

import io
import os
import pickle
import threading
import zipfile

import numpy as np
import pytest
import torch

import lucidrl
from lucidrl.checkpoint import FILES, read_config
from lucidrl.errors import CheckpointError, ConfigError

OBS = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32) * np.float32([1, 1, 0.2, 1])
COMMON = dict(preset=False, seed=0, verbose=0, tensorboard=False, net_arch=[16], backend="reference")


def build(algo):
    if algo == "ppo":
        return lucidrl.PPO("CartPole-v1", n_envs=2, n_steps=32, batch_size=32, n_epochs=1, **COMMON)
    if algo == "a2c":
        return lucidrl.A2C("CartPole-v1", n_envs=2, n_steps=8, **COMMON)
    return lucidrl.DQN(
        "CartPole-v1", learning_starts=32, train_freq=16, gradient_steps=2, batch_size=16, buffer_size=500,
        target_update_interval=32, **COMMON,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained():
    return {algo: build(algo).learn(96) for algo in ("ppo", "a2c", "dqn")}


def rezip(data, name, content):
    """The zip ``data`` with member ``name`` replaced by ``content`` (the others as they were)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, content if info.filename == name else src.read(info.filename))
    return out.getvalue()


@pytest.mark.parametrize("algo", ["ppo", "dqn", "a2c"])
def test_a_bytesio_round_trip_predicts_as_the_model_and_trains_on(algo, trained, tmp_path):
    m = trained[algo]
    buffer = io.BytesIO()
    assert m.save(buffer) is buffer and not buffer.closed
    assert buffer.getvalue() == m.save(tmp_path / "m.zip").read_bytes()  # the very bytes of a .zip save
    expected = m.predict(OBS, deterministic=True)[0]
    cls = type(m)
    for load in (lucidrl.load, cls.load, lambda f: cls.load(f, env="CartPole-v1")):
        buffer.seek(0)
        loaded = load(buffer)
        assert type(loaded) is cls and loaded.num_timesteps == m.num_timesteps and loaded.config == m.config
        assert (loaded.predict(OBS, deterministic=True)[0] == expected).all()
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps == m.num_timesteps + 64


def test_save_writes_from_the_position_flushes_and_neither_seeks_nor_closes(trained):
    class Tracked(io.BytesIO):
        flushes = 0

        def flush(self):
            Tracked.flushes += 1
            super().flush()

    m = trained["ppo"]
    f = Tracked()
    f.write(b"HEADER")
    m.save(f)
    zip_bytes = f.getvalue()[6:]
    assert f.tell() == 6 + len(zip_bytes) and Tracked.flushes >= 1 and not f.closed
    assert zip_bytes == m.save(io.BytesIO()).getvalue()  # a self-contained zip, whatever came before it
    f.seek(6)  # load reads from the object's position
    assert (lucidrl.load(f).predict(OBS, deterministic=True)[0] == m.predict(OBS, deterministic=True)[0]).all()
    # at its end now: as SB3 (zipfile finds the archive that ends the object), the object's last zip is loaded
    assert (lucidrl.load(f).predict(OBS, deterministic=True)[0] == m.predict(OBS, deterministic=True)[0]).all()
    other = lucidrl.PPO("CartPole-v1", seed=1, verbose=0, preset=False, n_steps=64, batch_size=64, n_envs=1)
    other.save(f)  # a second checkpoint after the first: with no seek, the last one (SB3 the same)
    assert lucidrl.load(f).config.seed == 1
    f.seek(6)  # from a position with two checkpoints after it: refused, naming the cause
    with pytest.raises(CheckpointError, match="does not hold one checkpoint from its position.*begins .* further on"):
        lucidrl.load(f)
    unseekable = io.BufferedReader(io.BytesIO(b""))  # at its end and empty: nothing to find
    with pytest.raises(CheckpointError, match="is empty"):
        lucidrl.load(unseekable)


def test_an_open_file_saved_with_wb_loads_with_rb_and_is_named(trained, tmp_path):
    m, p = trained["dqn"], tmp_path / "model.bin"
    with open(p, "wb") as f:
        m.save(f)
        assert not f.closed
    assert p.read_bytes() == m.save(tmp_path / "m.zip").read_bytes()
    with open(p, "rb") as f:
        assert (lucidrl.DQN.load(f).predict(OBS, deterministic=True)[0] == m.predict(OBS, deterministic=True)[0]).all()
    with open(p, "rb") as f:
        assert read_config(f)["algo"] == "dqn"
    with open(p, "wb") as f:  # opened for writing only
        with pytest.raises(CheckpointError, match=r"load: the file object '.*model\.bin' is not open for reading"):
            lucidrl.load(f)
    m.save(p.open("wb")).close()
    with open(p, "rb") as f:  # opened for reading only
        with pytest.raises(CheckpointError, match=r"save: .* is not open for writing \(opened with mode 'rb'\).*'wb'"):
            m.save(f)
    with open(p) as f:  # text mode ("r"), either way
        with pytest.raises(CheckpointError, match=r"is a text stream .*mode 'rb'"):
            lucidrl.load(f)
    with open(tmp_path / "t.txt", "w") as f:
        with pytest.raises(CheckpointError, match=r"is a text stream .*mode 'wb'"):
            m.save(f)
    f = open(p, "rb")
    f.close()
    with pytest.raises(CheckpointError, match="is closed"):
        lucidrl.load(f)


def test_a_stream_that_cannot_seek_saves_and_loads(trained):
    class NoSeek(io.BytesIO):
        def seekable(self):
            return False

        def seek(self, *args):
            raise io.UnsupportedOperation("seek")

        def tell(self):
            raise io.UnsupportedOperation("tell")

    m = trained["ppo"]
    out = NoSeek()
    m.save(out)
    data = out.getvalue()
    assert data == m.save(io.BytesIO()).getvalue()
    r, w = os.pipe()  # a real pipe: the bytes arrive while load reads
    writer = threading.Thread(target=lambda: (os.write(w, data[:1000]), os.write(w, data[1000:]), os.close(w)))
    writer.start()
    with os.fdopen(r, "rb") as pipe:
        assert not pipe.seekable()
        loaded = lucidrl.load(pipe)
    writer.join()
    assert (loaded.predict(OBS, deterministic=True)[0] == m.predict(OBS, deterministic=True)[0]).all()


def test_bad_file_objects_are_refused_by_name(trained):
    good = trained["ppo"].save(io.BytesIO()).getvalue()
    cases = [
        (io.BytesIO(b"certainly not a zip"), r"corrupt checkpoint: the file object holds no readable zip archive"),
        (io.BytesIO(good[: len(good) // 2]), r"the file object holds no readable zip .*truncated or damaged"),
        (io.BytesIO(), r"the file object is empty"),
        (io.StringIO("PK..."), r"load: the file object is a text stream \(StringIO\).*io\.BytesIO"),
    ]
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        offset = z.getinfo(FILES[0]).header_offset + 30 + len(FILES[0]) + 200  # inside the stored weights
    flipped = bytearray(good)
    flipped[offset] ^= 0xFF
    cases.append((io.BytesIO(bytes(flipped)), r"corrupt checkpoint: the file object is a damaged zip .*CRC"))
    photos = io.BytesIO()
    with zipfile.ZipFile(photos, "w") as z:
        z.writestr("holiday.jpg", b"\xff\xd8 jpeg")
    cases.append((io.BytesIO(photos.getvalue()), r"the file object is a zip but not a lucidrl checkpoint: it lacks"))
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        state = z.read(FILES[2]).replace(b'"format_version": 1', b'"format_version": 99')
        weights = z.read(FILES[0])
    cases.append((io.BytesIO(rezip(good, FILES[2], state)), r"the file object was written by .*format 99.*pip install"))
    nan = {k: v.clone() for k, v in trained["ppo"].agent.state_dict().items()}
    key = next(iter(nan))
    nan[key][0] = float("nan")
    from safetensors.torch import load, save

    tensors = load(weights)
    tensors[f"agent/{key}"] = nan[key]
    cases.append(
        (io.BytesIO(rezip(good, FILES[0], save(tensors))), r"weights\.safetensors in the file object holds non-finite")
    )
    cases.append(
        (io.BytesIO(rezip(good, FILES[1], b"{not json")), r"corrupt checkpoint: config\.json in the file object is not")
    )
    for f, message in cases:
        with pytest.raises(CheckpointError, match=message):
            lucidrl.load(f)
        f.seek(0)
        with pytest.raises(CheckpointError, match=message):
            lucidrl.PPO.load(f)
    with pytest.raises(CheckpointError, match="text stream"):
        trained["ppo"].save(io.StringIO())
    with pytest.raises(CheckpointError, match="is a checkpoint of PPO, not of DQN"):
        lucidrl.DQN.load(io.BytesIO(good))


def test_an_sb3_model_in_a_file_object_is_refused_without_unpickling(monkeypatch):
    sb3 = pytest.importorskip("stable_baselines3")
    model = sb3.PPO(
        "MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, policy_kwargs=dict(net_arch=[4]), device="cpu"
    )
    f = io.BytesIO()
    model.save(f)
    for name in ("loads", "load"):
        monkeypatch.setattr(pickle, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("unpickled")))
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("torch.load")))
    f.seek(0)
    with pytest.raises(CheckpointError, match=r"the file object holds a Stable-Baselines3 model.*lucidrl import-sb3"):
        lucidrl.PPO.load(f)


def test_loading_from_a_file_object_never_unpickles(trained, monkeypatch):
    m = trained["dqn"]
    f = m.save(io.BytesIO(), include=["replay_buffer"])
    replay = m.save_replay_buffer(io.BytesIO())
    for name in ("loads", "load"):
        monkeypatch.setattr(pickle, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("unpickled")))
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("torch.load")))
    f.seek(0)
    loaded = lucidrl.load(f)
    assert len(loaded.replay_buffer) == len(m.replay_buffer)
    replay.seek(0)
    loaded.load_replay_buffer(replay)
    f.seek(0)
    loaded.set_parameters(f)


def test_set_parameters_and_the_replay_memory_take_file_objects(trained):
    m = trained["dqn"]
    f = m.save(io.BytesIO())
    fresh = build("dqn")
    f.seek(0)
    fresh.set_parameters(f)
    assert (fresh.predict(OBS, deterministic=True)[0] == m.predict(OBS, deterministic=True)[0]).all()
    fresh.set_parameters(f)  # at its end: the object's last zip, as SB3 reads it
    assert (fresh.predict(OBS, deterministic=True)[0] == m.predict(OBS, deterministic=True)[0]).all()
    rb = io.BytesIO()
    assert m.save_replay_buffer(rb) is rb and not rb.closed
    rb.seek(0)
    fresh.load_replay_buffer(rb)
    n = len(m.replay_buffer)
    assert len(fresh.replay_buffer) == n and torch.equal(fresh.replay_buffer.obs[:n], m.replay.obs[:n])
    fresh.learn(64, reset_num_timesteps=False)
    rb.seek(0, io.SEEK_END)  # a safetensors file is read from its start: no whole-object fallback as for a zip
    with pytest.raises(CheckpointError, match=r"load_replay_buffer: the file object has nothing left to read"):
        fresh.load_replay_buffer(rb)
    with pytest.raises(CheckpointError, match=r"the file object is not a readable safetensors file"):
        fresh.load_replay_buffer(io.BytesIO(b"\x80\x04 a pickle, say"))
    with pytest.raises(CheckpointError, match=r"load_replay_buffer: the file object is a text stream"):
        fresh.load_replay_buffer(io.StringIO(""))


def test_exclude_and_include_change_only_the_replay_memory(trained):
    m = trained["dqn"]

    def members(**kw):
        with zipfile.ZipFile(m.save(io.BytesIO(), **kw)) as z:
            return sorted(z.namelist())

    plain = sorted(FILES)
    assert members() == plain and members(exclude=["env", "_last_obs", "replay_buffer"]) == plain
    assert members(include=["replay_buffer", "policy", "gamma"]) == sorted([*FILES, "replay.safetensors"])
    m.config.save_replay_buffer = True
    try:
        assert members() == sorted([*FILES, "replay.safetensors"]) and members(exclude=["replay_buffer"]) == plain
    finally:
        m.config.save_replay_buffer = False
    for kw, message in (
        (dict(exclude=["policy"]), r"exclude=\['policy'\].*holds fixed content: the networks \(q_net, q_net_target"),
        (dict(exclude=["learning_rate"]), r"'learning_rate' is part of every DQN checkpoint"),
        (dict(include=["env"]), r"cannot hold 'env': an env object cannot be saved"),
        (dict(include=["my_notes"]), r"cannot hold 'my_notes'.*saves no other attributes"),
        (dict(exclude="env"), r"exclude takes a list of attribute names"),
        (dict(exclude=["env"], include=["env"]), r"both excluded and included"),
    ):
        with pytest.raises(ConfigError, match=message):
            m.save(io.BytesIO(), **kw)
    with pytest.raises(ConfigError, match="PPO has no replay memory"):
        trained["ppo"].save(io.BytesIO(), include=["replay_buffer"])


def test_lucidrl_load_hands_a_file_objects_bytes_to_grpos_loader():
    from lucidrl.algos.grpo import GRPO

    model = GRPO("addition", seed=3, n_prompts=4, group_size=4, d_model=32, n_layers=1)
    f = model.save(io.BytesIO())
    f.seek(0)
    loaded = lucidrl.load(f)  # read once: the config says GRPO, whose own loader gets the same bytes
    assert type(loaded) is GRPO
    assert all(torch.equal(v, loaded.policy.state_dict()[k]) for k, v in model.policy.state_dict().items())
