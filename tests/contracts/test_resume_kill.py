"""Resume continues the run: a CLI run killed with SIGKILL after a checkpoint, resumed from it.

Checked: the counters, the log (no gap, duplicate, backward step or torn row; rows before the
checkpoint byte-identical), that two resumes of one checkpoint give bit-identical weights, and
that DQN resumed with its replay memory samples the same memory.
"""

import csv
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

import lucidrl
from lucidrl.cli import main

ROWS_APART = 256  # PPO's CartPole preset: 8 envs x 32 steps per update, one row each


def _complete_checkpoints(run: Path) -> list[Path]:
    d = run / "checkpoints"
    return sorted(p for p in d.glob("step_*") if (p / "state.json").is_file()) if d.is_dir() else []


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_a_killed_cli_run_resumes_from_its_checkpoint_exactly(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "lucidrl.cli",
        "train",
        "ppo",
        "--env",
        "CartPole-v1",
        "--seed",
        "0",
        "--timesteps",
        "1000000",
        "--checkpoint-freq",
        "1024",
        "--run-dir",
        str(run),
        "--no-progress",
        "--eval-episodes",
        "0",
        "--verbose",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(_complete_checkpoints(run)) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.13)  # past the checkpoint, in the middle of later updates
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(_complete_checkpoints(run)) >= 3, proc.stderr.read().decode()
    assert not (run / "model").exists()  # killed: no final model; resume takes the newest checkpoint
    newest = _complete_checkpoints(run)[-1]
    step = int(newest.name.split("_")[1])
    before = (run / "metrics.csv").read_bytes()

    copies = [tmp_path / "a", tmp_path / "b"]
    for c in copies:
        shutil.copytree(run, c)
        assert (
            main(
                [
                    "train",
                    "ppo",
                    "--resume",
                    str(c),
                    "--timesteps",
                    "2048",
                    "--no-progress",
                    "--eval-episodes",
                    "0",
                    "--verbose",
                    "0",
                ]
            )
            == 0
        )

    for c in copies:
        model = lucidrl.load(c)
        assert model.num_timesteps == step + 2048  # counters continue from the checkpoint
        assert not any(p.name.startswith("step_") for p in c.iterdir())  # the run dir stays the run dir
        rows = _rows(c / "metrics.csv")
        header, body = rows[0], rows[1:]
        assert all(len(r) == len(header) for r in body)  # no torn row
        steps = [int(float(r[0])) for r in body]
        assert steps == list(range(ROWS_APART, step + 2048 + 1, ROWS_APART))  # no gap, duplicate or step back
        after = (c / "metrics.csv").read_bytes()
        kept = before[: before.index(f"\n{step},".encode())]
        assert after.startswith(kept)  # rows up to the checkpoint are byte-identical

    a, b = (load_file(str(c / "model" / "weights.safetensors")) for c in copies)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # two resumes of one checkpoint: bit-identical


def test_dqn_resumed_with_its_replay_memory(tmp_path):
    kw = dict(
        learning_starts=200,
        train_freq=64,
        gradient_steps=16,
        batch_size=32,
        buffer_size=5_000,
        target_update_interval=256,
        seed=3,
        verbose=0,
        tensorboard=False,
    )
    model = lucidrl.DQN("CartPole-v1", preset=False, save_replay_buffer=True, **kw)
    model.learn(1_000)
    path = model.save(tmp_path / "ckpt")
    assert (path / "replay.safetensors").is_file()
    resumed = [lucidrl.DQN.load(path, env="CartPole-v1") for _ in range(2)]
    for r in resumed:
        assert (r.replay.pos, r.replay.size) == (model.replay.pos, model.replay.size)
        for name in ("obs", "next_obs", "actions", "rewards", "terminated"):
            assert torch.equal(
                getattr(r.replay, name)[: r.replay.size], getattr(model.replay, name)[: model.replay.size]
            )
        assert r.exploration_rate == model.exploration_rate and r.n_calls == model.n_calls
        r.learn(512, reset_num_timesteps=False)
    for pa, pb in zip(resumed[0].q_net.parameters(), resumed[1].q_net.parameters()):
        assert torch.equal(pa, pb)
    # without the flag no memory is saved, and a resumed run starts with an empty one (said in the docs)
    plain = lucidrl.DQN("CartPole-v1", preset=False, **kw)
    plain.learn(1_000)
    assert not (plain.save(tmp_path / "plain") / "replay.safetensors").exists()
    assert lucidrl.DQN.load(tmp_path / "plain").replay is None


def test_a_load_restores_every_random_stream_as_it_was_at_the_save(tmp_path):
    model = lucidrl.PPO(
        "CartPole-v1", preset=False, n_envs=2, n_steps=64, batch_size=64, seed=5, verbose=0, tensorboard=False
    )
    model.learn(256)
    path = model.save(tmp_path / "m")
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    expected = (torch.rand(3), np.random.rand(3), __import__("random").random(), model.predict(obs)[0])
    torch.manual_seed(123), np.random.seed(123), __import__("random").seed(123)  # anything drawn in between
    loaded = lucidrl.load(path)
    got = (torch.rand(3), np.random.rand(3), __import__("random").random(), loaded.predict(obs)[0])
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]
    assert np.array_equal(got[3], expected[3])  # the model's own sampling stream
