"""`lucidrl compare`: run directories, the two figures and the table; reuse of finished runs."""

import json

import pytest

from lucidrl import ConfigError
from lucidrl.cli import main
from lucidrl.compare import compare, curve_band


def test_compare_writes_figures_and_table_and_reuses_finished_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "ppo", "reinforce", "--env", "CartPole-v1", "--seeds", "2", "--timesteps", "2048",
                 "--out", str(out), "--jobs", "2", "--eval-episodes", "2"]) == 0
    printed = capsys.readouterr().out
    for name in ("learning_curves.png", "final_returns.png", "results.md"):
        assert (out / name).stat().st_size > 1000 or name == "results.md"
    table = (out / "results.md").read_text()
    assert "| ppo | 2 |" in table and "| reinforce | 2 |" in table and "IQM 95% CI" in table
    assert "| ppo |" in printed
    for algo in ("ppo", "reinforce"):
        for seed in (0, 1):
            run = out / "runs" / f"{algo}-s{seed}"
            result = json.loads((run / "result.json").read_text())
            assert (result["algo"], result["seed"], result["timesteps"]) == (algo, seed, 2048)
            assert (run / "metrics.csv").is_file() and (run / "model" / "weights.safetensors").is_file()
    steps, mean, low, high = curve_band([out / "runs" / "ppo-s0", out / "runs" / "ppo-s1"], n_points=10)
    assert len(steps) == len(mean) == 10 and (low <= mean + 1e-9).all() and (mean <= high + 1e-9).all()

    logs = []  # a second call trains nothing: every run is reused
    compare(["ppo", "reinforce"], "CartPole-v1", seeds=2, timesteps=2048, out=out, eval_episodes=2, log=logs.append)
    assert sum("reusing" in m for m in logs) == 4 and not any("training" in m for m in logs)


def test_compare_refuses_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="unknown algorithm"):
        compare(["ppo", "sac"], "CartPole-v1", out=tmp_path)
    assert main(["compare", "ppo", "--env", "CartPole-v9", "--out", str(tmp_path)]) == 2
