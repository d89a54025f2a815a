"""The CLI's input handling: --resume finds the run and its newest complete checkpoint and writes into
the run; negative numbers reach the config's checks; on/off flags take a value or none; --video is
checked before anything runs; learn(callback=...) refuses what it cannot call, before anything is written."""

import json
import os
import re
import shutil

import pytest

import lucidrl
from lucidrl import CheckpointError, ConfigError
from lucidrl.callbacks import check_callback
from lucidrl.cli import UsageError, build_parser, main, resolve_resume

TINY = [
    "--n-envs",
    "2",
    "--n-steps",
    "64",
    "--batch-size",
    "64",
    "--n-epochs",
    "1",
    "--seed",
    "0",
    "--eval-episodes",
    "0",
    "--no-progress",
    "--verbose",
    "0",
]
CHECKPOINT_FILES = {"weights.safetensors", "config.json", "state.json"}


def fake_checkpoint(d, steps=0, missing=()):
    """A directory with the three files of a checkpoint (their content is not read by resolve_resume)."""
    d.mkdir(parents=True)
    for name in CHECKPOINT_FILES - set(missing):
        text = json.dumps({"num_timesteps": steps}) if name.endswith(".json") else "weights"
        (d / name).write_text(text)
    return d


# --------------------------------------------------------------------------- resolve_resume
def test_a_run_resumes_from_its_model_when_complete(tmp_path):
    run = tmp_path / "run"
    fake_checkpoint(run / "model", 768)
    fake_checkpoint(run / "checkpoints" / "step_000000512", 512)
    (run / "metrics.csv").write_text("step\n")
    assert resolve_resume(run) == (run, run / "model")
    assert resolve_resume(run / "model") == (run, run / "model")


def test_a_killed_run_resumes_from_its_newest_complete_step(tmp_path):
    run = tmp_path / "run"
    fake_checkpoint(run / "checkpoints" / "step_000000256", 256)
    fake_checkpoint(run / "checkpoints" / "step_000001024", 1024)
    fake_checkpoint(run / "checkpoints" / "step_000000768", 768)
    fake_checkpoint(run / "checkpoints" / "step_000001280", 1280, missing=["state.json"])  # killed mid-save
    assert resolve_resume(run) == (run, run / "checkpoints" / "step_000001024")  # highest N, not newest name order
    fake_checkpoint(run / "model", 99, missing=["weights.safetensors"])  # an incomplete model/ is passed over
    assert resolve_resume(run) == (run, run / "checkpoints" / "step_000001024")
    assert resolve_resume(run / "checkpoints") == (run, run / "checkpoints" / "step_000001024")


def test_a_checkpoint_path_resumes_into_its_run_directory(tmp_path):
    run = tmp_path / "run"
    step = fake_checkpoint(run / "checkpoints" / "step_000000256", 256)
    fake_checkpoint(run / "checkpoints" / "step_000000512", 512)
    assert resolve_resume(step) == (run, step)  # the one asked for, though not the newest
    assert resolve_resume(str(step)) == (run, step)
    bare = fake_checkpoint(tmp_path / "saved", 64)  # model.save(PATH), outside any run
    assert resolve_resume(bare) == (None, bare)


def test_a_run_directory_named_model_is_a_run(tmp_path):
    run = tmp_path / "model"  # lucidrl train ... --run-dir model
    step = fake_checkpoint(run / "checkpoints" / "step_000000256", 256)
    (run / "metrics.csv").write_text("step\n")
    assert resolve_resume(run) == (run, step)


def test_a_save_killed_between_its_renames_is_recovered(tmp_path):
    run = tmp_path / "run"
    fake_checkpoint(run / "checkpoints" / "step_000000256", 256)
    fake_checkpoint(run / "checkpoints" / ".step_000000512.tmp-1a2b3c4d", 512)  # complete, never renamed
    run_dir, found = resolve_resume(run)
    assert run_dir == run and found.parent == run / "checkpoints" and "000000512" in found.name
    assert {p.name for p in found.iterdir()} >= CHECKPOINT_FILES


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda t: t / "nowhere", r"'.*nowhere': the path does not exist"),
        (
            lambda t: (t / "run").mkdir() or t / "run",
            r"no complete checkpoint to resume from; looked for '.*run/model' and '.*run/checkpoints/step_N'",
        ),
        (
            lambda t: fake_checkpoint(t / "run" / "checkpoints" / "step_000000256", missing=["state.json"]),
            r"step_000000256' is not a complete checkpoint \(missing state.json\); give the run directory '.*run'",
        ),
        (lambda t: t / "run" / "model", r"is not a complete checkpoint .*give the run directory"),
        (lambda t: (t / "f.txt").write_text("x") and t / "f.txt", r"is a file"),
    ],
)
def test_what_cannot_be_resumed_is_named(tmp_path, make, pattern):
    with pytest.raises(CheckpointError, match=pattern):
        resolve_resume(make(tmp_path))


# --------------------------------------------------------------------------- resume, end to end
@pytest.fixture
def trained_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "ppo",
                "--env",
                "CartPole-v1",
                "--timesteps",
                "512",
                "--run-dir",
                str(run),
                "--checkpoint-freq",
                "256",
                *TINY,
            ]
        )
        == 0
    )
    capsys.readouterr()
    return run


def test_a_run_without_model_resumes_from_its_newest_checkpoint_into_the_run(trained_run, capsys):
    run = trained_run
    shutil.rmtree(run / "model")  # killed before the final model/ ...
    (run / "checkpoints" / "step_000000512" / "state.json").unlink()  # ... and before step_512 was complete
    before = sorted(p.name for p in (run / "checkpoints" / "step_000000256").iterdir())
    assert (
        main(
            [
                "train",
                "ppo",
                "--resume",
                str(run),
                "--timesteps",
                "128",
                "--no-progress",
                "--eval-episodes",
                "0",
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"resuming ppo from {run / 'checkpoints' / 'step_000000256'} (step 256)" in out
    assert lucidrl.load(run).num_timesteps == 256 + 128 and (run / "model" / "state.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints" / "step_000000256").iterdir()) == before


def test_resuming_from_a_checkpoint_path_writes_into_the_run_directory(trained_run, capsys):
    run = trained_run
    step = run / "checkpoints" / "step_000000256"
    assert (
        main(
            [
                "train",
                "ppo",
                "--resume",
                str(step),
                "--timesteps",
                "128",
                "--no-progress",
                "--eval-episodes",
                "0",
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    assert f"resuming ppo from {step} (step 256)" in capsys.readouterr().out
    assert {p.name for p in step.iterdir()} == CHECKPOINT_FILES  # no log, plot or model/ inside the checkpoint
    assert lucidrl.load(run).num_timesteps == 384  # the run's model/ is the resumed one
    assert (run / "learning_curve.png").exists() and (run / "metrics.csv").exists()


def test_a_bare_checkpoint_needs_a_run_directory(tmp_path, capsys):
    model = lucidrl.PPO("CartPole-v1", preset=False, n_envs=1, n_steps=64, batch_size=64, seed=0, verbose=0)
    path = model.save(tmp_path / "saved")
    assert main(["train", "ppo", "--resume", str(path), "--timesteps", "64", "--no-progress"]) == 2
    assert "outside a run directory; give --run-dir" in capsys.readouterr().err
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "ppo",
                "--resume",
                str(path),
                "--run-dir",
                str(run),
                "--timesteps",
                "64",
                "--no-progress",
                "--eval-episodes",
                "0",
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    assert lucidrl.load(run).num_timesteps == 64 and {p.name for p in path.iterdir()} == CHECKPOINT_FILES


# --------------------------------------------------------------------------- flags
@pytest.mark.parametrize(
    "flag, value, pattern",
    [
        ("--learning-rate", "-1e-3", r"learning_rate must lie in \[0, 1\], got -0.001"),
        ("--learning-rate", "-3E+2", r"learning_rate must lie in"),
        ("--gae-lambda", "-0.5", r"gae_lambda must lie in \[0, 1\]"),
        ("--clip-obs", "-1_0", r"clip_obs must be a number > 0"),
        ("--clip-obs", "-inf", r"clip_obs must be a number > 0"),
        ("--ent-coef", "-inf", r"ent_coef must be >= 0, got -inf"),
        ("--max-grad-norm", "inf", r"max_grad_norm must be a finite number or None, got inf"),
        ("--seed", "-3", r"seed must be a non-negative integer"),
        ("--ent-coef", "-nan", r"ent_coef must be >= 0, got nan"),
    ],
)
def test_negative_numbers_reach_the_config_check(flag, value, pattern, capsys):
    assert main(["train", "ppo", "--env", "CartPole-v1", flag, value, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lucidrl: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(pattern, err), err
    assert os.listdir() == []  # refused before any run directory


def test_negative_numbers_in_lists_and_other_algorithms_parse():
    parser, _ = build_parser()
    args = parser.parse_args(["train", "qlearning", "--bounds", "-2.4", "2.4", "-3e0", "3", "--initial-q", "-1e-2"])
    assert args.bounds == [-2.4, 2.4, -3.0, 3.0] and args.initial_q == -0.01
    args = parser.parse_args(["train", "ppo", "--log-std-init", "-.5", "--torch-threads", "-2"])
    assert args.log_std_init == -0.5 and args.torch_threads == -2


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--save-replay-buffer"], True),
        (["--save-replay-buffer", "true"], True),
        (["--save-replay-buffer", "False"], False),
        (["--save-replay-buffer", "1"], True),
        (["--no-save-replay-buffer"], False),
        (["--save-replay-buffer", "--double-q", "no"], True),
    ],
)
def test_on_off_flags_take_a_value_or_none(argv, expected):
    args = build_parser()[0].parse_args(["train", "dqn", "--env", "CartPole-v1", *argv])
    assert args.save_replay_buffer is expected


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["--save-replay-buffer", "maybe"], "expected true or false, got 'maybe'"),
        (["--no-save-replay-buffer", "true"], "--no-save-replay-buffer takes no value"),
        (["--gamma"], "expected one argument"),
        (["--gamma", "abc"], "invalid float value: 'abc'"),
        (["--bogus", "1"], "unrecognized arguments: --bogus 1"),
    ],
)
def test_usage_errors_are_lucidrl_errors(argv, pattern, capsys):
    with pytest.raises(UsageError, match=pattern):
        build_parser()[0].parse_args(["train", "dqn", "--env", "CartPole-v1", *argv])
    assert main(["train", "dqn", "--env", "CartPole-v1", *argv]) == 2  # no SystemExit, one line
    err = capsys.readouterr().err
    assert err.startswith("lucidrl: error: ") and err.count("\n") == 1 and pattern in err


def test_save_replay_buffer_flag_reaches_the_model(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "dqn",
                "--env",
                "CartPole-v1",
                "--preset",
                "none",
                "--timesteps",
                "256",
                "--run-dir",
                str(run),
                "--learning-starts",
                "64",
                "--buffer-size",
                "1000",
                "--save-replay-buffer",
                "--eval-episodes",
                "0",
                "--no-progress",
                "--verbose",
                "0",
                "--seed",
                "0",
            ]
        )
        == 0
    )
    assert lucidrl.load(run).config.save_replay_buffer is True


# --------------------------------------------------------------------------- --video
@pytest.fixture
def no_episodes(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an episode ran before --video was checked")

    monkeypatch.setattr(lucidrl, "evaluate", refuse)
    monkeypatch.setattr(lucidrl, "load", refuse)


@pytest.mark.parametrize(
    "video, pattern",
    [
        ("clip.mp4", r"--video writes an animated GIF; give a path ending in .gif, not 'clip.mp4'"),
        ("missing/dir/ep.gif", r"the directory 'missing/dir' does not exist; create it \(mkdir -p missing/dir\)"),
        ("adir.gif", r"'adir.gif' is a directory; give a file path such as 'adir.gif/episode.gif'"),
    ],
)
def test_video_path_is_checked_before_any_episode(video, pattern, no_episodes, capsys):
    os.mkdir("adir.gif")
    assert main(["eval", "some/run", "--video", video]) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_video_into_a_read_only_directory_is_refused(tmp_path, no_episodes, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["eval", "some/run", "--video", str(ro / "ep.gif")]) == 2
    finally:
        ro.chmod(0o700)
    assert "cannot write there (permission denied)" in capsys.readouterr().err


# --------------------------------------------------------------------------- callbacks
def test_check_callback_accepts_functions_of_model_and_metrics():
    def stop(model, metrics):
        return False

    assert check_callback(None) is None
    assert check_callback(stop) is stop
    for ok in (lambda m, x: None, lambda *args: None, lambda m, x, extra=1: None, print):
        assert check_callback(ok) is ok
    listed = check_callback([stop, lambda m, x: None])  # a list: a CallbackList running each after every update
    assert type(listed).__name__ == "CallbackList" and listed.callbacks[0].callback is stop


@pytest.mark.parametrize(
    "callback, pattern",
    [
        (lambda model: None, r"cannot be called with the two arguments \(model, metrics\)"),
        (lambda a, b, c: None, r"cannot be called with the two arguments"),
        (42, r"got int 42, which is not callable"),
        ([lambda m: None], r"cannot be called with the two arguments"),  # a list's items are checked too
        (
            type("MyCallback", (), {"_on_step": lambda self: True})(),
            r"got MyCallback, a Stable-Baselines3-style callback",
        ),
    ],
)
def test_check_callback_refuses_what_learn_cannot_call(callback, pattern):
    with pytest.raises(ConfigError, match=pattern) as e:
        check_callback(callback)
    assert "callback(model, metrics)" in str(e.value) and "returns False to stop" in str(e.value)


ALGOS = [
    (lucidrl.PPO, "CartPole-v1", dict(n_envs=1, n_steps=64, batch_size=64)),
    (lucidrl.A2C, "CartPole-v1", {}),
    (lucidrl.TRPO, "CartPole-v1", dict(n_steps=64, batch_size=64)),
    (lucidrl.VPG, "CartPole-v1", dict(n_steps=64)),
    (lucidrl.DQN, "CartPole-v1", dict(buffer_size=1000)),
    (lucidrl.QLearning, "FrozenLake-v1", {}),
]


@pytest.mark.parametrize("cls, env, kw", ALGOS, ids=lambda x: getattr(x, "__name__", None))
def test_an_sb3_callback_is_refused_before_the_run_directory_is_written(cls, env, kw, tmp_path):
    sb3 = pytest.importorskip("stable_baselines3.common.callbacks")
    model = cls(env, preset=False, seed=0, verbose=0, run_dir=tmp_path / "run", **kw)
    with pytest.raises(
        ConfigError,
        match=r"got CheckpointCallback, a Stable-Baselines3-style callback.*"
        r"def callback\(model, metrics\)",
    ):
        model.learn(1000, callback=sb3.CheckpointCallback(save_freq=100, save_path=str(tmp_path / "sb3")))
    assert not (tmp_path / "run").exists() and model.num_timesteps == 0


def test_a_resumed_run_keeps_checkpointing_as_it_did(trained_run, capsys):
    """The run's --checkpoint-freq is saved with its model: a resume without the flag goes on writing checkpoints
    (a second kill would otherwise lose everything since the resume), and says so; the flag still changes it."""
    run = trained_run
    assert lucidrl.load(run).checkpoint_freq == 256
    resume = ["train", "ppo", "--resume", str(run), "--no-progress", "--eval-episodes", "0", "--verbose", "0"]
    assert main([*resume, "--timesteps", "512"]) == 0
    assert "checkpoints every 256 steps, as the run did before" in capsys.readouterr().out
    assert (run / "checkpoints" / "step_000000768").is_dir() and (run / "checkpoints" / "step_000001024").is_dir()
    assert main([*resume, "--timesteps", "512", "--checkpoint-freq", "512"]) == 0
    assert (run / "checkpoints" / "step_000001536").is_dir() and not (run / "checkpoints" / "step_000001280").exists()


def test_a_killed_run_resumes_without_timesteps_to_the_end_of_its_budget(trained_run, capsys):
    """The budget a run was given is saved with each checkpoint: --resume without --timesteps trains what was left
    (here 512 - 256), and a finished run asks for --timesteps."""
    run = trained_run
    resume = ["train", "ppo", "--resume", str(run), "--no-progress", "--eval-episodes", "0", "--verbose", "0"]
    assert main(resume) == 2
    assert "finished the budget it was trained with (512 steps); give --timesteps N" in capsys.readouterr().err
    shutil.rmtree(run / "model")  # killed at step 256's checkpoint
    shutil.rmtree(run / "checkpoints" / "step_000000512")
    assert main(resume) == 0
    assert "training the 256 steps left of the run's budget of 512" in capsys.readouterr().out
    assert lucidrl.load(run).num_timesteps == 512


def test_resume_without_the_algorithm_reads_it_from_the_run(trained_run, capsys):
    """lucidrl train --resume RUN (as tune --resume DIR is written): the algorithm is the checkpoint's."""
    run = trained_run
    argv = ["train", "--resume", str(run), "--timesteps", "128", "--no-progress", "--eval-episodes", "0"]
    assert main([*argv, "--verbose", "0"]) == 0
    assert "resuming ppo from" in capsys.readouterr().out and lucidrl.load(run).num_timesteps == 512 + 128
    assert main(["train", "--resume", str(run / "nothing-here"), "--timesteps", "1"]) == 2  # the parser's error
