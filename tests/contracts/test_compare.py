"""`lucidrl compare`: run directories, the two figures and the table; reuse of finished runs."""

import json
from pathlib import Path

import pytest

from lucidrl import ConfigError, LucidRLError
from lucidrl.cli import main
from lucidrl.compare import Variant, compare, compare_variants, curve_band, group_runs, load_results, plot_curves


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

    logs = []  # a second call trains nothing: every run is reused
    compare(["ppo", "reinforce"], "CartPole-v1", seeds=2, timesteps=2048, out=out, eval_episodes=2, log=logs.append)
    assert sum("reusing" in m for m in logs) == 4 and not any("training" in m for m in logs)


def test_compare_refuses_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="unknown algorithm"):
        compare(["ppo", "sac"], "CartPole-v1", out=tmp_path)
    assert main(["compare", "ppo", "--env", "CartPole-v9", "--out", str(tmp_path)]) == 2


def test_variants_are_reported_under_their_labels_with_overrides_and_wrappers(tmp_path):
    """Two variants of one algorithm: their own run directories, labels in the table and results.json, the
    override and the env wrapper applied in the worker, and a metric plotted by name."""
    out = tmp_path / "var"
    variants = [
        Variant("ppo, 1 epoch", "ppo", {"n_epochs": 1}),
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
    from lucidrl import load

    assert load(out / "runs" / "ppo_time-s3" / "model").observation_space.shape == (5,)  # t was added
    with pytest.raises(LucidRLError, match="no run logged 'diag/nothing'"):
        plot_curves(group_runs(results), tmp_path / "x.png", metric="diag/nothing")


def _field(config_json: dict, name: str):
    """A config field from a checkpoint's config.json, wherever the format nests it."""
    if name in config_json:
        return config_json[name]
    return next(v[name] for v in config_json.values() if isinstance(v, dict) and name in v)


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
