"""The `lucidrl` command: train writes a complete run directory; eval, plot, resume and --help work."""

import subprocess
import sys
from pathlib import Path

import lucidrl
from lucidrl.cli import main

TINY = ["--n-envs", "2", "--n-steps", "64", "--batch-size", "64", "--n-epochs", "1", "--seed", "0",
        "--eval-episodes", "2", "--no-progress"]


def test_train_eval_plot_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "ppo", "--env", "CartPole-v1", "--timesteps", "512", "--run-dir", str(run),
                 "--checkpoint-freq", "256", "--learning-rate", "lin_1e-3", "--no-normalize-advantage", *TINY]) == 0
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

    assert main(["train", "ppo", "--resume", str(run), "--timesteps", "256", "--no-progress", "--eval-episodes", "0"]) == 0
    assert lucidrl.load(run).num_timesteps == 768
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 768 // 128  # the resumed run appends to the same metrics

    assert main(["plot", str(run), str(run), "-o", str(tmp_path / "both.png")]) == 0
    assert (tmp_path / "both.png").exists()


def test_default_run_directory_is_named_after_algo_env_and_seed(tmp_path, capsys):
    assert main(["train", "ppo", "--env", "CartPole-v1", "--timesteps", "128", *TINY]) == 0
    runs = list(Path("runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("ppo-CartPole-v1-s0-")


def test_help_is_generated_from_the_config_dataclass():
    out = subprocess.run([sys.executable, "-m", "lucidrl.cli", "train", "ppo", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--clip-range X|lin_X" in out and "ε of the clipped surrogate" in out and "(default: 0.2)" in out
    assert "--variant {clip,kl_penalty}" in out
    presets = subprocess.run([sys.executable, "-m", "lucidrl.cli", "presets"], capture_output=True, text=True,
                             check=True).stdout
    assert "CartPole-v1" in presets and "rl-baselines3-zoo" in presets
