"""The `lucidrl` command: train writes a complete run directory; eval, plot, resume and --help work."""

import subprocess
import sys
from pathlib import Path

import lucidrl
from lucidrl.cli import main

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
    "2",
    "--no-progress",
]


def test_train_eval_plot_resume(tmp_path, capsys):
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
                "--learning-rate",
                "lin_1e-3",
                "--no-normalize-advantage",
                *TINY,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "mean evaluation return:" in out and str(run) in out
    names = {p.name for p in run.iterdir()}
    assert {"metrics.csv", "model", "checkpoints", "learning_curve.png"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = lucidrl.load(run)
    assert model.config.learning_rate == lucidrl.linear(1e-3) and model.config.normalize_advantage is False
    assert model.config.n_epochs == 1 and model.preset_name is None  # loaded with its own saved config

    assert main(["eval", str(run), "--episodes", "3", "--video", str(tmp_path / "ep.gif")]) == 0
    out = capsys.readouterr().out
    assert "over 3 deterministic episodes" in out and (tmp_path / "ep.gif").stat().st_size > 1000

    assert (
        main(["train", "ppo", "--resume", str(run), "--timesteps", "256", "--no-progress", "--eval-episodes", "0"]) == 0
    )
    assert lucidrl.load(run).num_timesteps == 768
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 768 // 128  # the resumed run appends to the same metrics

    assert main(["plot", str(run), str(run), "-o", str(tmp_path / "both.png")]) == 0
    assert (tmp_path / "both.png").exists()
    curve = (run / "learning_curve.png").read_bytes()
    assert main(["plot", str(run), "--metric", "diag/approx_kl"]) == 0  # its own file: the return's curve stays
    assert (run / "diag_approx_kl.png").is_file() and (run / "learning_curve.png").read_bytes() == curve


def test_default_run_directory_is_named_after_algo_env_and_seed(tmp_path, capsys):
    assert main(["train", "ppo", "--env", "CartPole-v1", "--timesteps", "128", *TINY]) == 0
    runs = list(Path("runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("ppo-CartPole-v1-s0-")


def test_help_is_generated_from_the_config_dataclass():
    out = subprocess.run(
        [sys.executable, "-m", "lucidrl.cli", "train", "ppo", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--clip-range X|lin_X" in out and "ε of the clipped surrogate" in out and "(default: 0.2)" in out
    assert "--variant {clip,kl_penalty}" in out
    presets = subprocess.run(
        [sys.executable, "-m", "lucidrl.cli", "presets"], capture_output=True, text=True, check=True
    ).stdout
    assert "CartPole-v1" in presets and "rl-baselines3-zoo" in presets


def test_train_and_eval_grpo(tmp_path, capsys):
    run = tmp_path / "grpo"
    tiny = ["--n-prompts", "2", "--group-size", "2", "--d-model", "16", "--n-layers", "1", "--verbose", "0"]
    assert (
        main(
            [
                "train",
                "grpo",
                "--task",
                "addition",
                "--updates",
                "2",
                "--warm-start-steps",
                "5",
                "--warm-start-examples",
                "64",
                "--eval-prompts",
                "20",
                "--run-dir",
                str(run),
                "--seed",
                "3",
                *tiny,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "held-out accuracy (greedy, exact match, 20 prompts)" in out and "after 2 GRPO updates" in out
    model = lucidrl.load(run)  # the run directory's model/
    assert type(model) is lucidrl.GRPO and model.n_updates == 2 and model.reference is not None
    assert (model.config.group_size, model.config.d_model, model.config.seed) == (2, 16, 3)
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 2  # a header and one row per update

    assert main(["eval", str(run), "--prompts", "20"]) == 0
    assert f"held-out accuracy {model.evaluate(20):.3f} (greedy, exact match, 20 prompts)" in capsys.readouterr().out
    assert main(["eval", str(run), "--video", str(tmp_path / "x.gif")]) == 2  # no episodes to film
    assert main(["train", "grpo", "--updates", "0"]) == 2
    assert main(["train", "grpo", "--updates", "1", "--group-size", "1", "--run-dir", str(tmp_path / "no")]) == 2
    assert "group_size must be >= 2" in capsys.readouterr().err and not (tmp_path / "no").exists()
    # --verbose 1 shows a progress bar of prompts with the batches' mean reward; --no-progress none, as train's
    again = ["train", "grpo", "--updates", "1", "--warm-start-steps", "0", "--eval-prompts", "5", *tiny[:-2]]
    assert main([*again, "--run-dir", str(tmp_path / "bar")]) == 0
    assert "2/2 [" in capsys.readouterr().out  # 1 update x 2 prompts
    assert main([*again, "--run-dir", str(tmp_path / "nobar"), "--no-progress"]) == 0
    assert "2/2 [" not in capsys.readouterr().out


def test_help_imports_neither_torch_nor_gymnasium_nor_matplotlib():
    """`lucidrl --help` and `lucidrl train --help` answer without the heavy imports (they took ~2 s with them)."""
    check = (
        "import sys\nfrom lucidrl.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['presets']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'gymnasium', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]", out[-500:]


def test_the_cli_table_of_algorithms_is_the_registry():
    from lucidrl.agent import ALGORITHMS
    from lucidrl.cli import ALGORITHM_CLASSES, _summary

    assert {name: (cls.__module__, cls.__name__) for name, cls in ALGORITHMS.items() if name in ALGORITHM_CLASSES} == {
        name: (f"lucidrl.algos.{m}", c) for name, (m, c) in ALGORITHM_CLASSES.items()
    }
    assert set(ALGORITHM_CLASSES) == {n for n in ALGORITHMS if not n.startswith("a3c_")}  # experiments add a3c_*
    for name, (module, cls) in ALGORITHM_CLASSES.items():
        assert _summary(module, cls) == (ALGORITHMS[name].__doc__ or "").strip().splitlines()[0]


def test_timesteps_are_read_in_any_spelling_of_a_whole_number():
    import argparse

    import pytest

    from lucidrl.cli import _steps

    assert _steps("100000") == _steps("100_000") == _steps("1e5") == _steps("1.0e5") == 100_000
    for bad in ("1.5", "1e-3", "many", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="whole number of steps"):
            _steps(bad)


def test_a_broken_pipe_ends_quietly_only_when_it_is_lucidrls_own_output(tmp_path):
    """lucidrl presets | head: the reader goes away while lucidrl prints, and the command ends with no traceback;
    a pipe broken elsewhere (a dead AsyncVectorEnv worker) keeps its traceback."""
    script = tmp_path / "pipe.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from lucidrl import cli\n"
        "where = str(Path(cli.__file__)) if sys.argv[1] == 'output' else 'elsewhere.py'\n"
        "namespace = {}\n"
        "source = 'def broken(args):\\n    raise BrokenPipeError(32, \"Broken pipe\")\\n'\n"
        "exec(compile(source, where, 'exec'), namespace)\n"
        "cli.cmd_presets = namespace['broken']\n"
        "sys.exit(cli.main(['presets', 'ppo']))\n"
    )
    quiet = subprocess.run([sys.executable, str(script), "output"], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 1 and quiet.stderr == ""
    loud = subprocess.run([sys.executable, str(script), "other"], capture_output=True, text=True, timeout=120)
    assert loud.returncode == 1 and "BrokenPipeError" in loud.stderr and "Traceback" in loud.stderr
