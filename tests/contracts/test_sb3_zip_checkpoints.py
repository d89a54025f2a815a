"""``.zip`` checkpoints (issue 17, item 4): ``save("x.zip")`` writes the safetensors + JSON checkpoint as one
zip file; ``load`` reads directories and zips alike, ``load("x")`` finds ``x.zip`` (SB3's habit) and
``load("x.zip")`` finds the directory ``x``; corrupt and foreign zips are refused by name; writing is atomic and
never replaces a file that is not a lucidrl checkpoint."""

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

import lucidrl
from lucidrl.checkpoint import FILES
from lucidrl.cli import main, resolve_resume
from lucidrl.errors import CheckpointError

OBS = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32) * np.float32([1, 1, 0.2, 1])


def small(algo):
    if algo == "ppo":
        m = lucidrl.PPO(
            "CartPole-v1",
            preset=False,
            n_envs=2,
            n_steps=32,
            batch_size=32,
            n_epochs=2,
            seed=0,
            verbose=0,
            tensorboard=False,
        )
    else:
        m = lucidrl.DQN(
            "CartPole-v1",
            preset=False,
            learning_starts=64,
            train_freq=16,
            gradient_steps=4,
            batch_size=32,
            buffer_size=2000,
            target_update_interval=64,
            seed=0,
            verbose=0,
            tensorboard=False,
        )
    return m.learn(256)


def weights(model):
    return {f"{n}/{k}": v for n, mod in model._modules().items() for k, v in mod.state_dict().items()}


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_zip_round_trip_predicts_as_the_model_and_equals_the_directory_checkpoint(algo, tmp_path):
    m = small(algo)
    where = m.save(tmp_path / "model.zip")
    assert where == tmp_path / "model.zip" and where.is_file()
    with zipfile.ZipFile(where) as z:
        assert sorted(z.namelist()) == sorted(FILES)  # the same three files, no pickle
    m.save(tmp_path / "model_dir")
    expected = m.predict(OBS, deterministic=True)[0]
    cls = type(m)
    for loaded in (
        lucidrl.load(tmp_path / "model.zip"),
        cls.load(str(tmp_path / "model.zip")),
        lucidrl.load(tmp_path / "model"),  # SB3's habit: "model" finds model.zip
        lucidrl.load(tmp_path / "model_dir"),
        lucidrl.load(tmp_path / "model_dir.zip"),
    ):  # and the reverse
        assert type(loaded) is cls and loaded.num_timesteps == 256 and loaded.config == m.config
        assert (loaded.predict(OBS, deterministic=True)[0] == expected).all()
        for k, v in weights(m).items():
            assert torch.equal(v, weights(loaded)[k]), k
    z, d = lucidrl.load(tmp_path / "model.zip"), lucidrl.load(tmp_path / "model_dir")
    assert (z.predict(OBS)[0] == d.predict(OBS)[0]).all()  # the RNG state travels in the zip too
    assert (
        m.save(tmp_path / "model.zip").read_bytes() == where.read_bytes()
    )  # same model, same bytes; replaced in place


def test_save_without_zip_keeps_the_directory(tmp_path):
    m = small("ppo")
    assert m.save(tmp_path / "x").is_dir() and not (tmp_path / "x.zip").exists()
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == sorted(FILES)


def test_corrupt_zips_are_refused_by_name(tmp_path):
    m = small("ppo")
    good = m.save(tmp_path / "good.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.zip' is not a readable zip file .*Save the model again"):
        lucidrl.load(tmp_path / "cut.zip")
    with zipfile.ZipFile(tmp_path / "good.zip") as zf:
        offset = zf.getinfo(FILES[0]).header_offset + 30 + len(FILES[0]) + 200  # inside the stored weights
    flipped = bytearray(good)
    flipped[offset] ^= 0xFF
    (tmp_path / "flipped.zip").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=r"flipped\.zip' is a damaged zip .*CRC"):
        lucidrl.load(tmp_path / "flipped.zip")
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(CheckpointError, match="not a readable zip file"):
        lucidrl.load(tmp_path / "text.zip")


def test_foreign_zips_are_refused_and_never_replaced(tmp_path):
    foreign = tmp_path / "photos.zip"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("holiday.jpg", b"\xff\xd8 jpeg")
    with pytest.raises(CheckpointError, match=r"is a zip but not a lucidrl checkpoint: it lacks weights\.safetensors"):
        lucidrl.load(foreign)
    sb3_like = tmp_path / "sb3.zip"
    with zipfile.ZipFile(sb3_like, "w") as z:
        z.writestr("data", "{}")
        z.writestr("policy.pth", b"")
    with pytest.raises(CheckpointError, match=r"Stable-Baselines3 model.*from_sb3"):
        lucidrl.load(sb3_like)
    m = small("ppo")
    before = foreign.read_bytes()
    with pytest.raises(CheckpointError, match="not a lucidrl checkpoint; save\\(\\) will not replace it"):
        m.save(foreign)
    (tmp_path / "notes.zip").write_text("my notes")
    with pytest.raises(CheckpointError, match="not a zip archive, not a lucidrl checkpoint"):
        m.save(tmp_path / "notes.zip")
    assert foreign.read_bytes() == before and (tmp_path / "notes.zip").read_text() == "my notes"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_zip_save_killed_before_the_rename_leaves_the_old_zip(tmp_path, monkeypatch):
    m = small("ppo")
    path = m.save(tmp_path / "m.zip")
    before = path.read_bytes()
    m.learn(64, reset_num_timesteps=False)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process were stopped between writing and renaming

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        m.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and lucidrl.load(path).num_timesteps == 256
    assert [p.name for p in tmp_path.iterdir()] == ["m.zip"]  # the temporary file was removed
    (tmp_path / ".m.zip.tmp-deadbeef").write_bytes(b"left by a killed process")
    assert m.save(path) == path and lucidrl.load(path).num_timesteps == 320
    assert [p.name for p in tmp_path.iterdir()] == ["m.zip"]  # the next save cleans up what killed saves left


def test_zip_loading_never_unpickles(tmp_path, monkeypatch):
    path = small("dqn").save(tmp_path / "m.zip")

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load unpickled something")

    for name in ("loads", "load"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert lucidrl.load(path).num_timesteps == 256


def test_cli_eval_and_resume_take_a_zip(tmp_path, capsys):
    path = small("ppo").save(tmp_path / "m.zip")
    assert resolve_resume(tmp_path / "m") == (None, path)  # outside a run: --run-dir is asked for
    assert main(["eval", str(path), "--episodes", "1"]) == 0
    assert "ppo from" in capsys.readouterr().out
    run = tmp_path / "resumed"
    assert (
        main(["train", "ppo", "--resume", str(path), "--run-dir", str(run), "--timesteps", "64", "--verbose", "0"]) == 0
    )
    assert lucidrl.load(run).num_timesteps == 256 + 64


def test_randomly_damaged_zips_raise_only_checkpoint_errors(tmp_path):
    """Whatever bytes are flipped or cut, loading a zip either works or raises CheckpointError."""
    good = small("dqn").save(tmp_path / "good.zip").read_bytes()
    rng = np.random.default_rng(0)
    outcomes = set()
    for i in range(90):
        raw = bytearray(good)
        if i % 3 == 0:
            raw = raw[: int(rng.integers(0, len(raw)))]
        else:
            for j in rng.integers(0, len(raw), size=int(rng.integers(1, 6))):
                raw[j] = int(rng.integers(0, 256))
        path = tmp_path / f"bad{i}.zip"
        path.write_bytes(bytes(raw))
        try:
            lucidrl.load(path)
            outcomes.add("loaded")
        except CheckpointError:
            outcomes.add("refused")
    assert "refused" in outcomes
