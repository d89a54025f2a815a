"""`lucidrl compare`: run directories, the two figures and the table; reuse of finished runs."""

import json
from pathlib import Path

import pytest

import lucidrl
from lucidrl import ConfigError, LucidRLError
from lucidrl.cli import main
from lucidrl.compare import (
    Variant,
    compare,
    compare_variants,
    curve_band,
    group_runs,
    load_results,
    parse_variant,
    plot_curves,
)
from lucidrl.logging import read_metrics
from lucidrl.plotting import METRIC


def test_compare_writes_figures_and_table_and_reuses_finished_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                "ppo",
                "reinforce",
                "--env",
                "CartPole-v1",
                "--seeds",
                "2",
                "--timesteps",
                "2048",
                "--out",
                str(out),
                "--jobs",
                "2",
                "--eval-episodes",
                "2",
            ]
        )
        == 0
    )
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
    runs = [out / "runs" / "ppo-s0", out / "runs" / "ppo-s1"]  # against seconds of training (x): the span both ran
    seconds, by_time, _, _ = curve_band(runs, n_points=10, x="time/elapsed_s")
    elapsed = [[r["time/elapsed_s"] for r in read_metrics(d / "metrics.csv") if METRIC in r] for d in runs]
    assert seconds[0] == max(e[0] for e in elapsed) and seconds[-1] == min(e[-1] for e in elapsed)
    assert by_time.shape == (10,) and (by_time > 0).all()  # returns, read against those seconds

    logs = []  # a second call trains nothing: every run is reused
    compare(["ppo", "reinforce"], "CartPole-v1", seeds=2, timesteps=2048, out=out, eval_episodes=2, log=logs.append)
    assert sum("reusing" in m for m in logs) == 4 and not any("training" in m for m in logs)


def test_compare_refuses_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="unknown algorithm"):
        compare(["ppo", "sac"], "CartPole-v1", out=tmp_path)
    assert main(["compare", "ppo", "--env", "CartPole-v9", "--out", str(tmp_path)]) == 2


def test_variants_are_reported_under_their_labels_with_overrides_and_wrappers(tmp_path):
    """Two variants of one algorithm: their own run directories, labels in the table and results.json, the
    override and the env wrapper applied in the worker, and a metric plotted by name. A list-valued override
    (net_arch) is applied and its finished run reused."""
    out = tmp_path / "var"
    variants = [
        Variant("ppo, 1 epoch", "ppo", {"n_epochs": 1, "net_arch": [16]}),
        Variant("ppo + time", "ppo", {}, wrapper="gymnasium.wrappers:TimeAwareObservation"),
    ]
    paths = compare_variants(
        variants,
        "CartPole-v1",
        seeds=[3],
        timesteps=512,
        out=out,
        n_jobs=1,
        eval_episodes=1,
        metrics=["diag/kl_after_update"],
        log=lambda m: None,
    )
    table = paths["table"].read_text()
    assert "| variant | seeds |" in table and "| ppo, 1 epoch | 1 |" in table and "| ppo + time | 1 |" in table
    results = load_results(out)
    assert [r["label"] for r in results] == ["ppo, 1 epoch", "ppo + time"]
    assert [Path(r["run_dir"]).name for r in results] == ["ppo_1_epoch-s3", "ppo_time-s3"]
    assert json.loads(paths["results"].read_text())[0]["run_dir"] == "runs/ppo_1_epoch-s3"  # relative to out
    assert paths["diag/kl_after_update"].stat().st_size > 1000
    one_epoch = json.loads((out / "runs" / "ppo_1_epoch-s3" / "model" / "config.json").read_text())
    timed = json.loads((out / "runs" / "ppo_time-s3" / "model" / "config.json").read_text())
    assert _field(one_epoch, "n_epochs") == 1 and _field(timed, "n_epochs") == 20  # the preset's, under the wrapper
    assert _field(one_epoch, "net_arch") == [16]
    logs: list[str] = []
    compare_variants(variants[:1], "CartPole-v1", seeds=[3], timesteps=512, out=out, n_jobs=1, eval_episodes=1,
                     log=logs.append)  # fmt: skip
    assert any("reusing" in m for m in logs) and not any("training" in m for m in logs)
    from lucidrl import load

    assert load(out / "runs" / "ppo_time-s3" / "model").observation_space.shape == (5,)  # t was added
    with pytest.raises(LucidRLError, match="no run logged 'diag/nothing'"):
        plot_curves(group_runs(results), tmp_path / "x.png", metric="diag/nothing")


def _field(config_json: dict, name: str):
    """A config field from a checkpoint's config.json, wherever the format nests it."""
    if name in config_json:
        return config_json[name]
    return next(v[name] for v in config_json.values() if isinstance(v, dict) and name in v)


def test_a_variant_is_spelled_algo_colon_key_value_pairs():
    assert parse_variant("ppo") == Variant("ppo", "ppo")
    spec = "qlearning:n_bins=[1, 12, 24,24],learning_rate=lin_0.2, gamma=0.9,update='sarsa',bounds=()"
    v = parse_variant(spec)
    assert v.label == spec and v.algo == "qlearning"
    assert v.overrides == {"n_bins": [1, 12, 24, 24], "learning_rate": "lin_0.2", "gamma": 0.9, "update": "sarsa",
                           "bounds": ()}  # fmt: skip
    assert parse_variant("ppo:max_grad_norm=None,net_arch={'pi': [8], 'vf': [8]}").overrides == {
        "max_grad_norm": None,
        "net_arch": {"pi": [8], "vf": [8]},
    }
    for bad in ("ppo:", "ppo:n_epochs", "ppo:=1", "ppo:n_epochs=", ":n_epochs=1", "ppo:1x=2", "ppo:a=1,,b=2"):
        with pytest.raises(ConfigError, match="is not KEY=VALUE; write ALGO or ALGO:KEY=VALUE"):
            parse_variant(bad)
    with pytest.raises(ConfigError, match=r"'64' is not KEY=VALUE.*in brackets, e.g. net_arch=\[64,64\]"):
        parse_variant("ppo:net_arch=64,64")
    with pytest.raises(ConfigError, match="n_epochs is given twice"):
        parse_variant("ppo:n_epochs=1,n_epochs=2")


def test_the_cli_compares_an_algorithm_with_its_variants(tmp_path, capsys):
    """``lucidrl compare ppo ppo:KEY=VALUE,...``: each variant trains with its fields, under its spelling; a field
    that ALGO does not have is refused before anything trains."""
    out = tmp_path / "cmp"
    common = ["--env", "CartPole-v1", "--seeds", "1", "--timesteps", "512", "--eval-episodes", "1", "--out", str(out)]
    assert main(["compare", "ppo", "ppo:n_epochs=1,net_arch=[16]", *common, "--jobs", "1"]) == 0
    table = (out / "results.md").read_text()
    assert "| ppo | 1 |" in table and "| ppo:n_epochs=1,net_arch=[16] | 1 |" in table
    variant = json.loads((out / "runs" / "ppo_n_epochs_1_net_arch_16-s0" / "model" / "config.json").read_text())
    assert _field(variant, "n_epochs") == 1 and _field(variant, "net_arch") == [16]
    plain = json.loads((out / "runs" / "ppo-s0" / "model" / "config.json").read_text())
    assert _field(plain, "n_epochs") == 20  # the CartPole-v1 preset's
    capsys.readouterr()
    assert main(["compare", "ppo:n_epoch=1", *common[:-1], str(tmp_path / "other")]) == 2
    assert "variant 'ppo:n_epoch=1'" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_variants_refuse_bad_input_before_training(tmp_path):
    with pytest.raises(ConfigError, match="own non-empty label"):
        compare_variants([Variant("a", "ppo"), Variant("a", "a2c")], "CartPole-v1", out=tmp_path)
    with pytest.raises(ConfigError, match="same run directory names"):
        compare_variants([Variant("a b", "ppo"), Variant("a_b", "ppo")], "CartPole-v1", out=tmp_path)
    with pytest.raises(ConfigError, match="variant 'wide': .*n_epochs"):
        compare_variants([Variant("wide", "ppo", {"n_epochs": 0})], "CartPole-v1", out=tmp_path)
    with pytest.raises(ConfigError, match="cannot import the env wrapper 'nowhere:wrap'"):
        compare_variants([Variant("w", "ppo", wrapper="nowhere:wrap")], "CartPole-v1", out=tmp_path)
    with pytest.raises(ConfigError, match="'module:function'"):
        compare_variants([Variant("w", "ppo", wrapper="nowhere")], "CartPole-v1", out=tmp_path)
    assert not (tmp_path / "runs").exists()  # nothing started


def _fake_run(run_dir: Path, env_id="CartPole-v1", algo="ppo", seed=0, returns=("", ""), **spec) -> dict:
    """A finished run as compare leaves it (metrics.csv and result.json), without training."""
    run_dir.mkdir(parents=True)
    rows = "".join(f"{128 * (i + 1)},{r},1.0\n" for i, r in enumerate(returns))
    (run_dir / "metrics.csv").write_text("time/total_timesteps,rollout/episode_return,loss/value\n" + rows)
    result = {
        "algo": algo,
        "env_id": env_id,
        "seed": seed,
        "timesteps": 1000,
        "eval_episodes": 1,
        "overrides": {},
        "label": algo,
        "wrapper": "",
        **spec,
        "eval_mean": -354.0,
        "eval_std": 0.0,
        "train_s": 0.3,
        "num_timesteps": 1024,
    }
    (run_dir / "result.json").write_text(json.dumps(result))
    return {**result, "run_dir": str(run_dir)}


def test_a_comparison_too_short_for_an_episode_still_writes_its_tables(tmp_path):
    """Acrobot's first episodes last 500 steps: 1000 steps over several envs end none. The evaluations were
    computed, so the tables are written, with a note instead of the learning curve (and of a metric no run logged)."""
    from lucidrl.compare import write_report

    out = tmp_path / "cmp"
    results = [_fake_run(out / "runs" / f"ppo-s{s}", "Acrobot-v1", seed=s) for s in (0, 1)]
    (out / "learning_curves.png").write_bytes(b"an earlier report's figure")
    paths = write_report(out, "Acrobot-v1", results, 1000, metrics=["loss/value", "diag/nothing"])
    table = paths["table"].read_text()
    assert "No learning curve: no run finished a training episode in 1000 steps" in table
    assert "No curves_diag_nothing.png: no run logged 'diag/nothing'" in table
    assert "| ppo | 2 | -354.0 |" in table and "ppo-s1" in table
    assert "learning_curves" not in paths and not (out / "learning_curves.png").exists()  # no stale figure beside it
    assert paths["loss/value"].is_file() and paths["final_returns"].is_file() and paths["results"].is_file()


def test_compare_refuses_repeated_seeds_or_algorithms_and_no_evaluation_up_front(tmp_path):
    out = tmp_path / "cmp"
    with pytest.raises(ConfigError, match=r"each seed once: 1 is given more than once in the seeds \[1, 1\]"):
        compare(["ppo"], "CartPole-v1", seeds=[1, 1], out=out)
    with pytest.raises(ConfigError, match="each algorithm once; ppo is given more than once"):
        compare(["ppo", "a2c", "ppo"], "CartPole-v1", out=out)
    with pytest.raises(ConfigError, match=r"eval_episodes must be an integer >= 1 .*got 0"):
        compare(["ppo"], "CartPole-v1", eval_episodes=0, out=out)
    assert not out.exists()  # refused before anything was made or trained


def test_an_output_directory_with_runs_of_other_settings_is_refused_unless_forced(tmp_path):
    out = tmp_path / "cmp"
    _fake_run(out / "runs" / "ppo-s0", "Acrobot-v1")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(
        ConfigError,
        match=r"holds finished runs with other settings: runs/ppo-s0 \(env_id "
        r"'Acrobot-v1', not 'CartPole-v1'\).*--out.*--force",
    ):
        compare(["ppo"], "CartPole-v1", seeds=1, timesteps=1000, eval_episodes=1, out=out)
    with pytest.raises(ConfigError, match=r"runs/ppo-s0 \(timesteps 1000, not 2000\)"):
        compare(["ppo"], "Acrobot-v1", seeds=1, timesteps=2000, eval_episodes=1, out=out)
    (out / "results.json").write_text(json.dumps([{"env_id": "Acrobot-v1", "run_dir": "runs/ppo-s0"}]))
    with pytest.raises(ConfigError, match=r"holds a comparison on Acrobot-v1 \(its results.json\); one on CartPole-v1"):
        compare(["a2c"], "CartPole-v1", seeds=1, timesteps=1000, eval_episodes=1, out=out)  # no run in common
    (out / "results.json").unlink()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing replaced


def test_a_run_is_trained_again_from_scratch_in_an_emptied_directory(tmp_path):
    """A killed run, or one retrained with force: its directory is emptied first (the logger refuses a new run
    where one is); a directory that holds no run is never removed."""
    from lucidrl.compare import Job, clear_run_dir, run_job

    run = tmp_path / "runs" / "ppo-s0"
    tiny = (("batch_size", 64), ("n_envs", 2), ("n_epochs", 1), ("n_steps", 64))
    job = Job("ppo", "CartPole-v1", 0, 128, str(run), 1, tiny)
    first = run_job(job)
    (run / "checkpoints").mkdir()  # something only the earlier run had
    second = run_job(job)
    assert first["eval_mean"] == second["eval_mean"] and not (run / "checkpoints").exists()
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert len((run / "metrics.csv").read_text().splitlines()) == 2  # the header and one update of 128 steps
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match=r"holds files of its own \(notes.txt\)"):
        clear_run_dir(other)
    assert (other / "notes.txt").read_text() == "keep"
    # a run the user trained there themselves (no compare_job.json), even with only a run's files: kept
    users = tmp_path / "users-run"
    lucidrl.PPO("CartPole-v1", **dict(tiny), verbose=0, run_dir=users).learn(128)
    with pytest.raises(ConfigError, match="a run that this comparison did not make"):
        clear_run_dir(users)
    assert (users / "metrics.csv").is_file() and (users / "model").is_dir()
    (run / "notes.txt").write_text("mine")  # a file of the user's inside compare's own run: kept, and refused
    with pytest.raises(ConfigError, match="files of its own"):
        run_job(job)
    assert (run / "notes.txt").read_text() == "mine"


def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path):
    """compare's workers are spawned interpreters that import the calling script; a script that starts a
    comparison at import time gets the fix named (in the workers and in the parent), not a bare
    BrokenProcessPool, and the workers stop before touching the run directories."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "from lucidrl.compare import compare\n"
        f"compare(['ppo'], 'CartPole-v1', seeds=2, timesteps=64, out={str(tmp_path / 'out')!r}, n_jobs=2)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lucidrl.errors.LucidRLError: a worker process exited") and '__name__ == "__main__"' in last
    assert "compare was started while a worker process imported its script" in proc.stderr
    assert proc.stdout.count("training 2 runs") == 1  # the workers refused before compare's own steps


def test_an_algorithm_that_cannot_act_in_the_env_is_refused_before_any_run_trains(tmp_path):
    """DQN on Pendulum's Box actions: the error names the variant and comes before PPO's runs train."""
    with pytest.raises(lucidrl.EnvError, match="dqn: DQN needs a Discrete action space"):
        compare(
            ["ppo", "dqn"], "Pendulum-v1", seeds=1, timesteps=64, out=tmp_path / "cmp", n_jobs=1, log=lambda *a: None
        )
    assert not list((tmp_path / "cmp").glob("runs/*/result.json"))
