"""Nothing saved is lost, and bad input gets one clear line: a run directory is never trained over, Ctrl-C and
SIGTERM keep the model, unwritable paths and bad flags are named before anything runs, and `lucidrl eval` /
`plot` / `--resume` say what is wrong in lucidrl's words (no traceback from torch, matplotlib or PIL)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lucidrl
from lucidrl import ConfigError
from lucidrl.cli import _new_run_dir, check_video_path, main
from lucidrl.logging import Logger
from tests.contracts.test_cli_resume import TINY  # the same tiny training flags


def train(run, *extra, timesteps=256):
    return main(
        ["train", "ppo", "--env", "CartPole-v1", "--timesteps", str(timesteps), "--run-dir", str(run), *TINY, *extra]
    )


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("lucidrl: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- A: an existing run is never overwritten
def test_training_into_a_run_directory_that_holds_a_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, "--checkpoint-freq", "128") == 0
    capsys.readouterr()
    kept = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert train(run, timesteps=128) == 2
    err = one_line_error(capsys)
    assert f"the run directory {str(run)!r} already holds a run" in err
    assert f"--resume {run}" in err and "reset_num_timesteps=False" in err and "delete the directory" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == kept  # not one byte changed
    assert main(["train", "ppo", "--resume", str(run), "--timesteps", "128", "--no-progress", "--verbose", "0"]) == 0


def test_a_second_learn_that_starts_a_new_run_in_the_same_run_dir_is_refused(tmp_path):
    model = lucidrl.VPG("CartPole-v1", preset=False, n_envs=1, n_steps=64, seed=0, verbose=0, run_dir=tmp_path / "r")
    model.learn(64)
    rows = (tmp_path / "r" / "metrics.csv").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a run .*a second learn\(\) of a model with the default"):
        model.learn(64)
    assert (tmp_path / "r" / "metrics.csv").read_bytes() == rows
    other = lucidrl.VPG("CartPole-v1", preset=False, n_envs=1, n_steps=64, seed=0, verbose=0, run_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="already holds a run"):
        other.learn(64)
    assert (tmp_path / "r" / "metrics.csv").read_bytes() == rows


def test_default_run_directories_never_collide(tmp_path):
    first = _new_run_dir("ppo-CartPole-v1-s0-20260101-000000")
    assert first == Path("runs/ppo-CartPole-v1-s0-20260101-000000")
    first.mkdir(parents=True)
    assert _new_run_dir(first.name) == Path("runs/ppo-CartPole-v1-s0-20260101-000000-2")


# --------------------------------------------------------------------------- B: Ctrl-C and SIGTERM keep the model
@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_train_saves_the_model_and_says_how_to_go_on(sig, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "lucidrl.cli", "train", "ppo", "--env", "CartPole-v1", "--timesteps", "100000000"]
    p = subprocess.Popen(
        [*cmd, "--run-dir", str(run), *TINY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal, even under a `&` job
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.csv").exists():  # training has begun: the first row is logged
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    steps = lucidrl.load(run).num_timesteps  # model/ is complete and loads
    assert steps > 0 and "Traceback" not in err
    assert "stopping after the update in progress to save the model" in err
    assert f"interrupted at step {steps} of 100000000; the model is saved in {run / 'model'}" in err
    assert f"lucidrl train ppo --resume {run} --timesteps {100000000 - steps}" in err
    assert f"lucidrl eval {run}" in err
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert main(["train", "ppo", "--resume", str(run), "--timesteps", "128", "--no-progress", "--verbose", "0"]) == 0
    assert lucidrl.load(run).num_timesteps >= steps + 128


def test_a_second_interrupt_stops_at_once_and_the_model_is_still_saved(tmp_path, capsys, monkeypatch):
    """A KeyboardInterrupt in the middle of learn (a second Ctrl-C, or one where no handler could be set): the
    model is saved as it is, and the same commands are printed."""
    from lucidrl.algos.ppo import PPO

    learn = PPO.learn

    def interrupted_learn(self, total_timesteps, callback=None, **kwargs):
        def at_the_second_update(model, metrics):
            if model.num_timesteps == 256:
                raise KeyboardInterrupt
            return callback(model, metrics)

        return learn(self, total_timesteps, callback=at_the_second_update, **kwargs)

    monkeypatch.setattr(PPO, "learn", interrupted_learn)
    run = tmp_path / "run"
    assert train(run, timesteps=1024) == 130
    err = capsys.readouterr().err
    assert lucidrl.load(run).num_timesteps == 256  # saved by the CLI: learn itself never got to its end
    assert f"interrupted at step 256 of 1024; the model is saved in {run / 'model'}" in err
    assert f"lucidrl train ppo --resume {run} --timesteps 768" in err and f"lucidrl eval {run}" in err


# --------------------------------------------------------------------------- C: paths that cannot be written
def test_a_run_directory_that_cannot_be_made_is_named(tmp_path, capsys, monkeypatch):
    Path("afile").write_text("not a directory")
    for run_dir, problem in [
        ("afile", "'afile' is a file, not a directory"),
        ("afile/run", "'afile' is a file, not a directory"),
        ("afile/deeper/run", "'afile' is a file, not a directory"),
    ]:
        assert train(run_dir) == 2
        err = one_line_error(capsys)
        assert f"cannot use {run_dir!r} as the run directory: {problem}; give a directory" in err

    def refuse(self, *args, **kwargs):  # what os.access cannot foresee (e.g. /proc as root)
        raise FileNotFoundError(2, "No such file or directory", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(ConfigError, match=r"cannot create the run directory 'new/run' \(No such file or directory\)"):
        Logger("new/run", verbose=0, tensorboard=False)


def test_video_paths_that_cannot_be_written_are_refused_before_any_episode(tmp_path, monkeypatch):
    Path("afile").write_text("not a directory")
    with pytest.raises(ConfigError, match=r"--video 'afile/x.gif': 'afile' is a file, not a directory"):
        check_video_path("afile/x.gif")

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("lucidrl.cli.tempfile.mkstemp", read_only)
    with pytest.raises(ConfigError, match=r"--video 'x.gif': cannot write in '.' \(Read-only file system\)"):
        check_video_path("x.gif")


# --------------------------------------------------------------------------- D: plot
@pytest.fixture
def logged_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "time/total_timesteps,rollout/episode_return,loss/value\r\n128,,1.0\r\n256,20.0,0.5\r\n384,30.0,0.25\r\n"
    )
    return run


def test_plot_prints_the_file_it_wrote(logged_run, capsys):
    assert main(["plot", str(logged_run), "-o", "pl/noext"]) == 0
    assert capsys.readouterr().out == "wrote pl/noext.png\n" and Path("pl/noext.png").is_file()


def test_plot_refuses_a_format_matplotlib_cannot_write(logged_run, capsys):
    assert main(["plot", str(logged_run), "-o", "x.jpg2"]) == 2
    err = one_line_error(capsys)
    assert "'.jpg2' is not an image format" in err and ".png" in err and ".svg" in err and ".pdf" in err
    assert not list(Path(".").glob("x.*"))


def test_plot_names_a_metric_that_is_not_logged_and_lists_the_columns(logged_run, capsys):
    assert main(["plot", str(logged_run), "--metric", "nosuch"]) == 2
    err = one_line_error(capsys)
    assert "has no column 'nosuch'; its columns: time/total_timesteps, rollout/episode_return, loss/value" in err


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"time/total_timesteps,rollout/episode_return\n1,\xff\xfe\n", "holds bytes that are not UTF-8 text"),
        (b"time/total_timesteps,rollout/episode_return\n1,2\n2,fast\n", "line 3: could not convert string"),
    ],
)
def test_plot_of_a_damaged_metrics_csv_names_the_file(logged_run, capsys, content, pattern):
    (logged_run / "metrics.csv").write_bytes(content)
    assert main(["plot", str(logged_run)]) == 2
    err = one_line_error(capsys)
    assert f"{logged_run / 'metrics.csv'} is not a metrics.csv written by lucidrl" in err and pattern in err


# --------------------------------------------------------------------------- F: flags checked by argparse
@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "ppo", "--env", "CartPole-v1", "--eval-episodes", "-1"], "must be >= 0 (0: no evaluation), got -1"),
        (["train", "ppo", "--env", "CartPole-v1", "--checkpoint-freq", "0"], "must be >= 1 (env steps between"),
        (["train", "ppo", "--env", "CartPole-v1", "--checkpoint-freq", "-5"], "must be >= 1 (env steps between"),
        (["train", "grpo", "--eval-prompts", "-1"], "argument --eval-prompts: must be >= 0 (0: all), got -1"),
        (["eval", "some/run", "--prompts", "-1"], "lucidrl eval: argument --prompts: must be >= 0 (0: all), got -1"),
        (
            ["compare", "ppo", "--env", "CartPole-v1", "--eval-episodes", "0"],
            "lucidrl compare: argument --eval-episodes: must be >= 1, got 0",
        ),
        (
            ["train", "ppo", "--env", "CartPole-v1", "--learning-rate", "fast"],
            "--learning-rate/--learning_rate: learning_rate: cannot read 'fast'; write a number such as 3e-4",
        ),
        (
            ["train", "ppo", "--env", "CartPole-v1", "--lr", "0.1"],
            "lucidrl train ppo: unrecognized arguments: --lr 0.1; did you mean --learning-rate? "
            "(see lucidrl train ppo --help)",
        ),
        (["train", "ppo", "--env", "CartPole-v1", "--gama", "0.9"], "did you mean --gamma?"),
        (["eval", "some/run", "--bogus"], "lucidrl eval: unrecognized arguments: --bogus (see lucidrl eval --help)"),
    ],
)
def test_bad_flags_are_usage_errors_in_the_librarys_words(argv, message, capsys):
    assert main(argv) == 2
    assert message in one_line_error(capsys)


def test_compare_help_shows_a_plain_percent_sign():
    out = subprocess.run(
        [sys.executable, "-m", "lucidrl.cli", "compare", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "95% bootstrap CI" in re.sub(r"\s+", " ", out) and "%%" not in out


# --------------------------------------------------------------------------- G: resume keeps the run's settings
@pytest.fixture
def saved_run(tmp_path):
    model = lucidrl.PPO("CartPole-v1", preset=False, n_envs=1, n_steps=64, batch_size=64, seed=0, verbose=0)
    run = tmp_path / "run"
    model.save(run / "model")
    return run


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--env", "CartPole-v0"],
            "--resume continues the run on its env 'CartPole-v1'; drop --env CartPole-v0",
        ),
        (["--preset", "none"], "--resume continues a run with its saved hyperparameters; drop --preset"),
        (["--preset", "CartPole-v1", "--gamma", "0.9"], "drop --gamma, --preset"),
    ],
)
def test_resume_refuses_another_env_or_preset(saved_run, extra, message, capsys):
    before = sorted(p.name for p in saved_run.rglob("*"))
    assert main(["train", "ppo", "--resume", str(saved_run), "--timesteps", "64", *extra, "--no-progress"]) == 2
    assert message in one_line_error(capsys)
    assert sorted(p.name for p in saved_run.rglob("*")) == before


def test_resume_takes_the_same_env_and_passes_on_the_vectorization(saved_run, capsys, monkeypatch):
    from lucidrl.algos.ppo import PPO

    seen = {}
    load = PPO.load.__func__

    def spy(cls, *args, **kwargs):
        seen.update(kwargs)
        return load(cls, *args, **kwargs)

    monkeypatch.setattr(PPO, "load", classmethod(spy))
    argv = ["--resume", str(saved_run), "--timesteps", "64", "--env", "CartPole-v1", "--vectorization", "sync"]
    assert main(["train", "ppo", *argv, "--no-progress", "--verbose", "0", "--eval-episodes", "0"]) == 0
    assert seen["vectorization"] == "sync" and seen["env"] == "CartPole-v1"  # how it steps may change on resume
    assert lucidrl.load(saved_run).num_timesteps == 64


# --------------------------------------------------------------------------- H: eval of a run killed before model/
def test_eval_of_a_run_without_model_uses_its_newest_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, "--checkpoint-freq", "128") == 0
    shutil.rmtree(run / "model")
    (run / "checkpoints" / "step_000000256" / "state.json").unlink()  # a save killed half-way is passed over
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    newest = run / "checkpoints" / "step_000000128"
    assert f"{run} has no complete model/ (the run did not finish); evaluating its newest checkpoint {newest}" in out
    assert "over 1 deterministic episodes" in out
    shutil.rmtree(run / "checkpoints")
    assert main(["eval", str(run)]) == 2
    assert "holds a run's log but no model" in one_line_error(capsys)
