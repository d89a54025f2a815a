"""The benchmark harness (benchmarks/harness.py) and its report (benchmarks/report.py); env-step throughput logging."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import lucidrl
from lucidrl.logging import read_metrics
from lucidrl.stats import summarize

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402
import report  # noqa: E402

TINY_GRID = """
cells:
  - {algo: ppo, env: CartPole-v1, peer: sb3, budget: preset, hyperparams: preset,
     reference: [{source: "rl-baselines3-zoo benchmark.md", budget: 100000, mean: 500.0, std: 0.0, episodes: 300}]}
  - {algo: vpg, env: Acrobot-v1, peer: null, budget: 500000, hyperparams: default, reference: []}
"""


def _row(algo, lib, seed, ret, train_s, env="CartPole-v1", budget=100000, curve_end=400.0, load=0.5):
    steps = [1000 * (i + 1) for i in range(10)]
    return {
        "timestamp": f"2026-11-30T00:00:0{seed}+00:00",
        "machine": {"cpu_count": 2, "cpu_model": "test cpu"},
        "algo": algo,
        "env": env,
        "library": lib,
        "seed": seed,
        "budget": budget,
        "full_budget": True,
        "num_timesteps": budget,
        "train_s": train_s,
        "steps_per_s": budget / train_s,
        "eval_mean": ret,
        "eval_std": 1.0,
        "eval_returns": [ret] * 10,
        "eval_episodes": 10,
        "peak_rss_mib": 300.0 + seed,
        "load_before": [load, load, load],
        "load_after": [load, load, load],
        "curve": [[s, curve_end * (i + 1) / 10] for i, s in enumerate(steps)],
    }


def test_report_tables_hold_the_statistics_and_figures_are_written(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(TINY_GRID)
    lucid = [(0, 500.0, 10.0), (1, 450.0, 12.0), (2, 300.0, 11.0), (3, 480.0, 13.0)]
    rows = [_row("ppo", "lucidrl", s, r, t) for s, r, t in lucid]
    rows += [_row("ppo", "sb3", s, r, t) for s, r, t in [(0, 500.0, 30.0), (1, 200.0, 20.0), (2, 400.0, 40.0)]]
    rows.append(_row("ppo", "sb3", 0, 100.0, 99.0))  # an earlier seed-0 row is superseded...
    rows[-1], rows[4] = rows[4], rows[-1]  # ...by the later one (the latest row counts)
    rows.append({**_row("ppo", "lucidrl", 9, 0.0, 1.0), "error": "boom"})
    rows += [_row("ppo", "lucidrl", s, 100.0, 5.0, budget=50000) for s in range(3)]  # an earlier budget of the cell
    results = tmp_path / "harness.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, figs = tmp_path / "docs" / "benchmarks.md", tmp_path / "docs" / "benchmarks"
    assert report.main(["--results", str(results), "--grid", str(grid), "--out", str(out), "--figures", str(figs)]) == 0
    page = out.read_text()

    s = summarize([500.0, 450.0, 300.0, 480.0])  # 4 seeds: the IQM drops the lowest and the highest
    assert s.iqm == pytest.approx(465.0)
    lucid_line = next(ln for ln in page.splitlines() if ln.startswith("| ppo | lucidrl | 100k |"))
    assert f"| {s.mean:.1f} ± {s.std:.1f} |" in lucid_line
    assert f"| {s.iqm:.1f} [{s.iqm_low:.1f}, {s.iqm_high:.1f}] |" in lucid_line
    assert "| 100k | 4 |" in lucid_line and "| 11.5 |" in lucid_line  # median of 10, 12, 11, 13 s
    assert "| 0.33 |" in lucid_line  # median of the seed pairs 10/30, 12/20, 11/40 (seed 3: no pair)
    assert "500.0 ± 0.0 at 100k steps" in lucid_line  # the published reference
    earlier = next(ln for ln in page.splitlines() if ln.startswith("| ppo | lucidrl | 50k ‡ |"))
    assert "| 3 | 100.0 ± 0.0 |" in earlier and "at 100k steps" not in earlier  # marked, without the reference
    assert "‡ An earlier configuration of a grid cell" in page
    peer_line = next(ln for ln in page.splitlines() if ln.startswith("| ppo | SB3 |"))
    sb3 = summarize([500.0, 200.0, 400.0])
    assert f"| {sb3.mean:.1f} ± {sb3.std:.1f} |" in peer_line and "| 3 |" in peer_line and "| 30.0 |" in peer_line
    assert "1 failed runs not shown" in page and "shared machine" in page
    # the grid's cell without results is listed with the command that runs it
    assert "Still to run" in page and "python benchmarks/harness.py --envs Acrobot-v1 --algos vpg" in page
    for name in ("CartPole-v1_curves.png", "CartPole-v1_final.png"):
        assert (figs / name).stat().st_size > 5000
        assert f"(benchmarks/{name})" in page


def test_report_band_is_the_bootstrap_of_the_seed_curves():
    runs = [_row("a2c", "lucidrl", s, 1.0, 1.0, curve_end=e) for s, e in enumerate([100.0, 200.0, 300.0])]
    steps, mean, low, high = report.band(report._curves(runs), n_points=10)
    assert steps[0] == 1000 and steps[-1] == 10000
    assert mean[-1] == pytest.approx(200.0)
    assert (low <= mean + 1e-9).all() and (mean <= high + 1e-9).all() and high[-1] - low[-1] > 0


def test_sb3_arguments_translate_the_resolved_lucidrl_config():
    cfg = lucidrl.PPO("CartPole-v1", seed=0, verbose=0).config  # zoo preset: lin_0.001, lin_0.2
    kwargs, vec, norm = harness.sb3_arguments("ppo", cfg)
    assert vec == {"n_envs": 8} and norm is None
    assert (kwargs["n_steps"], kwargs["batch_size"], kwargs["n_epochs"], kwargs["gae_lambda"]) == (32, 256, 20, 0.8)
    assert kwargs["learning_rate"](1.0) == pytest.approx(1e-3) and kwargs["learning_rate"](0.25) == pytest.approx(
        2.5e-4
    )
    assert kwargs["clip_range"](0.5) == pytest.approx(0.1)
    assert kwargs["policy_kwargs"]["net_arch"] == {"pi": [64, 64], "vf": [64, 64]}
    assert kwargs["policy_kwargs"]["optimizer_kwargs"] == {"eps": 1e-5}
    assert "variant" not in kwargs and "seed" not in kwargs

    cfg = lucidrl.TRPO("Acrobot-v1", seed=0, verbose=0).config  # zoo: normalize true
    kwargs, vec, norm = harness.sb3_arguments("trpo", cfg)
    assert norm == dict(norm_obs=True, norm_reward=True, clip_obs=10.0, clip_reward=10.0, gamma=0.99)
    assert vec == {"n_envs": 2} and kwargs["n_steps"] == 1024 and kwargs["cg_damping"] == cfg.cg_damping

    cfg = lucidrl.DQN("CartPole-v1", seed=0, verbose=0).config
    kwargs, _, _ = harness.sb3_arguments("dqn", cfg)
    assert kwargs["policy_kwargs"]["net_arch"] == [256, 256] and kwargs["gradient_steps"] == 128
    cfg = lucidrl.DQN("CartPole-v1", seed=0, verbose=0, double_q=True).config
    with pytest.raises(SystemExit, match="double_q"):  # no counterpart: refused, not dropped
        harness.sb3_arguments("dqn", cfg)


def test_grid_resolves_preset_budgets_and_covers_the_issue_envs():
    cells = harness.load_grid()
    by = {(c["algo"], c["env"]): c for c in cells}
    assert by[("a2c", "CartPole-v1")]["budget"] == 500_000 and by[("dqn", "CartPole-v1")]["budget"] == 50_000
    for env in ("CartPole-v1", "Acrobot-v1", "LunarLander-v3", "Pendulum-v1"):
        assert {"ppo", "a2c", "trpo", "vpg", "reinforce"} <= {c["algo"] for c in cells if c["env"] == env}
    assert ("dqn", "Pendulum-v1") not in by and ("qlearning", "CartPole-v1") in by


def test_harness_tiny_grid_alternates_fresh_processes_and_records_everything(tmp_path):
    pytest.importorskip("stable_baselines3")
    grid = tmp_path / "grid.yaml"
    grid.write_text(TINY_GRID)
    results = tmp_path / "h.jsonl"
    common = [
        "--grid",
        str(grid),
        "--results",
        str(results),
        "--envs",
        "CartPole-v1",
        "--timesteps",
        "1024",
        "--run-root",
        str(tmp_path / "runs"),
    ]
    assert harness.main(common + ["--seeds", "0", "1", "--libs", "lucidrl", "peer"]) == 0
    assert harness.main(common + ["--seeds", "2", "--libs", "lucidrl"]) == 0  # lucidrl alone
    rows = [json.loads(ln) for ln in results.read_text().splitlines()]
    assert [(r["library"], r["seed"]) for r in rows] == [
        ("lucidrl", 0),
        ("sb3", 0),
        ("lucidrl", 1),
        ("sb3", 1),
        ("lucidrl", 2),
    ]
    for r in rows:
        assert "error" not in r and r["budget"] == 1024 and not r["full_budget"]
        assert r["num_timesteps"] >= 1024
        assert r["steps_per_s"] == pytest.approx(r["num_timesteps"] / r["train_s"], rel=1e-2)
        assert len(r["eval_returns"]) == 10 and r["eval_mean"] == pytest.approx(np.mean(r["eval_returns"]), abs=1e-3)
        assert r["curve"] and r["curve"][-1][0] <= r["num_timesteps"] and len(r["load_before"]) == 3
        assert r["peak_rss_mib"] > 50 and r["torch_threads"] == 1
        # the zoo preset, in both libraries
        assert (r["hyperparams"]["n_steps"], r["hyperparams"]["n_envs"], r["hyperparams"]["learning_rate"]) == (
            32,
            8,
            "lin_0.001",
        )
    assert (ROOT / "benchmarks" / "runs").exists() is False or not any(  # run dirs went where they were sent
        p.name.startswith("ppo-CartPole-v1-s") and str(tmp_path) in str(p)
        for p in (ROOT / "benchmarks" / "runs").iterdir()
    )
    assert len(list((tmp_path / "runs").iterdir())) == 3 and rows[0]["run_dir"].startswith(str(tmp_path))
    assert rows[0]["eval_returns"] != rows[2]["eval_returns"] or rows[0]["curve"] != rows[2]["curve"]  # seeds differ


@pytest.mark.parametrize(
    "algo, env_id, kwargs",
    [
        ("ppo", "CartPole-v1", dict(n_envs=4, n_steps=16, batch_size=32, n_epochs=1)),
        ("a2c", "CartPole-v1", dict(n_envs=4)),
        ("trpo", "CartPole-v1", dict(n_envs=2, n_steps=64, batch_size=64, n_critic_updates=1)),
        ("vpg", "CartPole-v1", dict(n_envs=2, n_steps=64, n_critic_updates=1)),
        ("reinforce", "CartPole-v1", dict(n_envs=2, n_steps=64)),
        ("dqn", "CartPole-v1", dict(n_envs=2, learning_starts=64, train_freq=8, buffer_size=1000)),
        ("qlearning", "CartPole-v1", dict(n_envs=3)),
    ],
)
def test_steps_per_second_counts_env_steps(tmp_path, algo, env_id, kwargs):
    """time/steps_per_second * time/elapsed_s is the env steps taken: every sub-env's step counts."""
    from lucidrl.agent import ALGORITHMS

    model = ALGORITHMS[algo](
        env_id, seed=0, verbose=0, preset=False, run_dir=tmp_path / algo, tensorboard=False, **kwargs
    )
    model.learn(600)
    rows = read_metrics(tmp_path / algo / "metrics.csv")
    assert rows and model.num_timesteps >= 600
    last = rows[-1]
    assert last["time/total_timesteps"] == model.num_timesteps
    # one vector step of N envs adds N: the count is a multiple of n_envs, not of vector steps
    assert model.num_timesteps % kwargs["n_envs"] == 0
    assert math.isclose(last["time/steps_per_second"] * last["time/elapsed_s"], model.num_timesteps, rel_tol=1e-3)
