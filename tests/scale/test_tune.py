"""`lucidrl tune`: Ray Tune + Optuna TPE + ASHA over the search spaces in lucidrl/presets/search_spaces.yaml.

The sweeps run on the session's local 2-CPU Ray instance (the ``ray_local`` fixture), which ``tune`` finds
initialised and leaves running.
"""

import dataclasses
import json
import re
import sys

import pytest
import yaml

import lucidrl
from lucidrl import cli
from lucidrl.agent import ALGORITHMS
from lucidrl.config import config_from_dict
from lucidrl.distributed import tune as tune_module
from lucidrl.distributed.tune import load_search_spaces, search_space, to_hyperparams, tune
from lucidrl.errors import ConfigError, EnvError


def table_rows(results_md: str) -> list[list[str]]:
    """The trial rows of results.md's table, as lists of cells."""
    lines = [ln for ln in results_md.splitlines() if ln.startswith("| ") and not ln.startswith("| trial")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_cli_tune_ppo_cartpole_writes_its_outputs(ray_local, tmp_path, capsys):
    """The issue's check: 4 trials of 20000 steps finish; the snippet is a preset that builds a model."""
    out = tmp_path / "sweep"
    rc = cli.main(["tune", "ppo", "--env", "CartPole-v1", "--trials", "4", "--timesteps", "20000", "--out", str(out)])
    assert rc == 0
    assert (out / "tune").is_dir() and (out / "tune.json").is_file()  # Tune's experiment, the sweep's settings
    assert (out / "returns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = table_rows((out / "results.md").read_text())
    assert [r[0].split()[0].strip("*") for r in rows] == ["1", "2", "3", "4"]
    statuses = {r[1] for r in rows}
    assert statuses <= {"complete", "stopped early", "failed"}
    best = [r for r in rows if "(best)" in r[0]]
    assert len(best) == 1 and best[0][1] == "complete"
    complete = [float(r[2]) for r in rows if r[1] == "complete"]
    assert float(best[0][2]) == max(complete)
    for r in rows:  # ASHA's stops end before the budget; complete trials reach it
        steps = int(r[3])
        assert (steps < 20000) == (r[1] == "stopped early") and (r[4] == "yes") == (r[1] == "stopped early")

    snippet = yaml.safe_load((out / "best_preset.yaml").read_text())
    entry = snippet["CartPole-v1"]
    assert entry["source"].startswith("lucidrl tune (sweep): best of 4 trials of 20000 steps")
    assert entry["n_timesteps"] == 20000
    assert f"eval return {float(best[0][2]):.1f}" in entry["source"]
    model = lucidrl.PPO("CartPole-v1", preset=False, verbose=0, **entry["hyperparams"])
    assert model.config.n_steps == entry["hyperparams"]["n_steps"]
    assert "best of 4 trials" in capsys.readouterr().out
    assert ray_local.is_initialized()  # the session's Ray instance was used and left running


def small_space(monkeypatch, clip_ranges):
    """PPO over a few values, one of which a trial may fail on (clip_range -1 is refused by PPOConfig)."""
    space = {
        "ppo": {
            "source": "test",
            "fixed": {"n_steps": 64},
            "params": {
                "learning_rate": {"log_uniform": [3e-4, 3e-3]},
                "batch_size": {"choice": [32, 128]},
                "clip_range": {"choice": clip_ranges},
            },
        }
    }
    monkeypatch.setattr(tune_module, "load_search_spaces", lambda: space)


def test_a_failed_trial_is_reported_and_the_sweep_goes_on(ray_local, tmp_path, monkeypatch):
    small_space(monkeypatch, [0.2, -1.0])
    result = tune("ppo", "CartPole-v1", trials=4, timesteps=800, out=tmp_path / "s", verbose=0)
    assert len(result.trials) == 4 and not result.interrupted
    failed = [r for r in result.trials if r["status"] == "failed"]
    assert failed and len(failed) < 4
    for r in result.trials:
        assert (r["status"] == "failed") == (r["params"]["clip_range"] == -1.0)
    assert all(r["error"] == "ConfigError: clip_range must lie in [0, 10], got -1" for r in failed)
    assert result.best is not None and result.best["params"]["clip_range"] == 0.2
    # batch_size 128 > n_steps 64 is repaired, not failed, and results.md says so
    repaired = [r for r in result.trials if r["repairs"]]
    assert all(r["params"]["batch_size"] == 64 for r in repaired)
    text = (tmp_path / "s" / "results.md").read_text()
    assert "ConfigError: clip_range must lie in [0, 10]" in text
    assert ("batch_size 128 -> 64 (= n_steps * n_envs)" in text) == bool(repaired)


def preset_source(out) -> str:
    return next(iter(yaml.safe_load((out / "best_preset.yaml").read_text()).values()))["source"]


def test_resume_finishes_an_interrupted_sweep(ray_local, tmp_path, monkeypatch, capsys):
    small_space(monkeypatch, [0.1, 0.2])
    out = tmp_path / "s"
    first = tune("ppo", "CartPole-v1", trials=4, timesteps=1000, seed=1, out=out, verbose=0, _interrupt_after=2)
    assert first.interrupted  # as Ctrl+C would: Tune saved its state, some trials never ended
    ended = {r["number"]: r for r in first.trials if r["status"] != "not finished"}
    assert 2 <= len(ended) < 4
    assert "lucidrl tune --resume s" in (out / "results.md").read_text()
    # the preset counts the trials that ended, not the 4 asked for
    assert preset_source(out).startswith(
        f"lucidrl tune (s): best of {len(ended)} trials of 1000 steps (4 asked for: {4 - len(ended)} not finished), "
        "seed 1, "
    )

    # the sweep's seed is 1: --seed 0, the default, given explicitly is refused, not silently ignored
    assert cli.main(["tune", "--resume", str(out), "--seed", "0", "--verbose", "0"]) == 2
    assert "with its own seed (1), not 0" in capsys.readouterr().err
    rc = cli.main(["tune", "--resume", str(out), "--verbose", "0"])  # not given: the sweep's own
    assert rc == 0
    assert preset_source(out).startswith("lucidrl tune (s): best of 4 trials of 1000 steps, seed 1, ")
    rows = table_rows((out / "results.md").read_text())
    assert len(rows) == 4 and all(r[1] in ("complete", "stopped early") for r in rows)
    settings = json.loads((out / "tune.json").read_text())
    again = tune_module.collect_trials(out, settings, settings["space"])
    assert [r["number"] for r in again] == [1, 2, 3, 4]
    for n, r in ended.items():  # the trials that had ended are kept, not run again
        assert again[n - 1]["eval_return"] == r["eval_return"] and again[n - 1]["params"] == r["params"]


@pytest.mark.parametrize("algo", ["ppo", "a2c", "trpo", "dqn", "vpg", "reinforce"])
def test_every_corner_of_a_search_space_builds_a_valid_config(algo):
    """Each parameter at its lowest and highest value (the others at theirs too): repaired, never refused."""
    entry = search_space(algo)
    assert "source" in entry and entry["params"]
    cls = ALGORITHMS[algo].config_class
    for end in (0, -1):
        sampled = {}
        for name, spec in entry["params"].items():
            kind, arg = next(iter(spec.items()))
            key = tune_module._key(name, kind)
            sampled[key] = list(arg)[end]
        hp, repairs = to_hyperparams(algo, entry, sampled, timesteps=10_000)
        config = config_from_dict(cls, dict(hp))
        assert set(hp) <= {f.name for f in dataclasses.fields(config)}
        if algo in ("ppo", "trpo") and end == -1:  # the largest batch with the largest rollout fits
            assert not repairs
    if algo == "trpo":  # the zoo's smallest rollout (8) with its largest batch (512): batch cut to the rollout
        hp, repairs = to_hyperparams(algo, entry, {**sampled, "n_steps": 8, "batch_size": 512}, timesteps=10_000)
        assert hp["batch_size"] == 8 and repairs == ["batch_size 512 -> 8 (= n_steps * n_envs)"]
    if algo == "dqn":  # gamma at the zoo's 1 - x; gradient_steps from train_freq; learning_starts within budget
        hp, repairs = to_hyperparams(
            algo, entry, {**sampled, "train_freq": 256, "gradient_steps_divisor": 2}, timesteps=10_000
        )
        assert hp["gradient_steps"] == 128 and hp["learning_starts"] == 5000


def test_the_search_spaces_name_their_source():
    spaces = load_search_spaces()
    assert {"ppo", "a2c", "trpo", "dqn"} <= set(spaces)
    for algo, entry in spaces.items():
        assert "rl_zoo3/hyperparams_opt.py" in entry["source"] or "lucidrl's own" in entry["source"], algo


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(algo="foo"), ConfigError, "unknown algorithm 'foo'"),
        (dict(algo="qlearning", env_id="FrozenLake-v1"), ConfigError, "no search space for qlearning"),
        (dict(env_id="NoSuchEnv-v0"), EnvError, "NoSuchEnv-v0"),
        (dict(trials=0), ConfigError, "trials must be an integer >= 1"),
        (dict(timesteps=-5), ConfigError, "timesteps must be an integer >= 1"),
        (dict(address="auto"), ConfigError, "use it with --backend ray"),
        (dict(backend="slurm"), ConfigError, "backend must be 'local' or 'ray'"),
    ],
)
def test_bad_inputs_raise_lucidrl_errors_before_anything_runs(tmp_path, kwargs, error, words):
    args = {**dict(algo="ppo", env_id="CartPole-v1", trials=2, timesteps=100, out=tmp_path / "s", verbose=0), **kwargs}
    with pytest.raises(error, match=re.escape(words)):
        tune(**args)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "module, words",
    [("ray", "runs on Ray, which is not installed"), ("optuna", "samples with Optuna, which is not installed")],
)
def test_a_missing_ray_or_optuna_is_a_config_error(tmp_path, monkeypatch, module, words):
    monkeypatch.setitem(sys.modules, module, None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError, match=words) as e:
        tune("ppo", "CartPole-v1", trials=2, timesteps=100, out=tmp_path / "s", verbose=0)
    assert "pip install 'lucidrl[ray]'" in str(e.value)
    assert not (tmp_path / "s").exists()


def test_resume_needs_a_tune_directory(tmp_path):
    with pytest.raises(ConfigError, match="not the output directory of a tune run"):
        tune(resume=tmp_path)
    assert cli.main(["tune", "--resume", str(tmp_path)]) == 2


def test_the_preset_says_how_many_trials_the_best_was_picked_from(tmp_path):
    """Failed and unfinished trials are not counted (the preset used to say "best of N" with N the trials asked for)."""
    settings = dict(
        algo="ppo", env_id="CartPole-v1", trials=5, timesteps=100, seed=0, n_evals=2, eval_episodes=1, out="s"
    )
    settings["command"] = "lucidrl tune ppo --env CartPole-v1 --trials 5 --timesteps 100 --seed 0"
    row = dict(eval_return=None, mean_so_far=None, steps=0, params={"gamma": 0.9}, repairs=[], error=None)
    statuses = ["complete", "stopped early by ASHA", "failed", "not finished", "complete"]
    rows = [{**row, "number": i + 1, "status": s} for i, s in enumerate(statuses)]
    for r in rows[:2] + rows[4:]:
        r.update(eval_return=10.0 * r["number"], steps=100 if r["status"] == "complete" else 50)
    rows[2]["error"] = "ConfigError: no"

    def source(rows) -> str:
        tune_module.write_outputs(tmp_path, settings, {"source": "test"}, rows, tune_module.pick_best(rows))
        return yaml.safe_load((tmp_path / "best_preset.yaml").read_text())["CartPole-v1"]["source"]

    assert source(rows) == (
        "lucidrl tune (s): best of 3 trials of 100 steps (5 asked for: 1 failed, 1 not finished), seed 0, "
        "trial 5, eval return 50.0"
    )
    assert "best of 1 trial of 100 steps (5 asked for: 1 failed, 3 not finished)" in source([rows[0], rows[2], rows[3]])
    assert "best of 5 trials of 100 steps, seed 0" in source([{**r, "status": "complete"} for r in rows])


@pytest.mark.parametrize("option, saved, given", [("seed", 1, 0), ("n_evals", 2, 4), ("eval_episodes", 3, 5)])
def test_resume_refuses_a_given_default_that_differs_from_the_sweep(tmp_path, option, saved, given):
    """An option given on resume is checked against the sweep's even when it is the default (it used to be
    ignored: the sweep went on with its own value without a word)."""
    out = tmp_path / "s"
    (out / "tune").mkdir(parents=True)
    settings = dict(algo="ppo", env_id="CartPole-v1", trials=2, timesteps=100, seed=0, n_evals=4, eval_episodes=5)
    (out / "tune.json").write_text(json.dumps({**settings, option: saved}))
    words = f"with its own {option} ({saved}), not {given}; drop that argument or start a new sweep with another --out"
    with pytest.raises(ConfigError, match=re.escape(words)):
        tune(resume=out, verbose=0, **{option: given})


def test_an_env_id_the_script_registered_is_tuned(ray_local, tmp_path, monkeypatch):
    """The trials run in Ray workers, which never ran the script's gym.register: the registration goes with them
    (every trial used to fail with 'Unknown environment id')."""
    import gymnasium as gym
    from gymnasium.envs.classic_control import CartPoleEnv

    small_space(monkeypatch, [0.2])
    gym.register("ScaleTuneCart-v0", entry_point=lambda **kw: CartPoleEnv(**kw), max_episode_steps=50)
    try:
        result = tune("ppo", "ScaleTuneCart-v0", trials=1, timesteps=256, n_evals=1, out=tmp_path / "s", verbose=0)
    finally:
        del gym.registry["ScaleTuneCart-v0"]
    assert [r["status"] for r in result.trials] == ["complete"], result.trials[0]["error"]


def test_env_kwargs_reach_every_trial_and_the_resume_check(ray_local, tmp_path, monkeypatch):
    """--env-kwargs max_episode_steps:20: every trial trains and is evaluated on CartPole cut at 20 steps (its eval
    return at most 20); tune.json keeps them, and a resume with other ones is refused."""
    small_space(monkeypatch, [0.2])
    out = tmp_path / "s"
    result = tune(
        "ppo",
        "CartPole-v1",
        trials=1,
        timesteps=256,
        n_evals=1,
        out=out,
        verbose=0,
        env_kwargs={"max_episode_steps": 20},
    )
    assert [r["status"] for r in result.trials] == ["complete"], result.trials[0]["error"]
    assert result.trials[0]["eval_return"] <= 20
    settings = json.loads((out / "tune.json").read_text())
    assert (
        settings["env_kwargs"] == {"max_episode_steps": 20}
        and "--env-kwargs max_episode_steps:20" in settings["command"]
    )
    with pytest.raises(ConfigError, match=r"with its own env_kwargs \(\{'max_episode_steps': 20\}\), not \{\}"):
        tune(resume=out, verbose=0, env_kwargs={})


def test_env_kwargs_a_resume_gives_again_are_compared_as_tune_json_keeps_them(tmp_path):
    """--env-kwargs desc:('SF','HG') reads a tuple, which tune.json keeps as a list: giving it again with --resume
    is the same sweep (before: "continues the sweep with its own env_kwargs ..., not ..."), and every trial, resumed
    or not, gets the list. Arguments JSON cannot hold are a ConfigError before anything runs. (No Ray: the checks
    come first.)"""
    out = tmp_path / "s"
    (out / "tune").mkdir(parents=True)
    settings = {"algo": "nope", "env_id": "FrozenLake-v1", "trials": 1, "timesteps": 64, "seed": 0, "n_evals": 1,
                "eval_episodes": 1, "env_kwargs": {"desc": ["SF", "HG"]}, "space": {}}  # fmt: skip
    (out / "tune.json").write_text(json.dumps(settings))
    checked = []

    def check_env(algo, env_id):  # the resume check passed: what the trials would get, then stop
        checked.append(env_id.kwargs)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tune_module, "_check_env", check_env)
        with pytest.raises(KeyboardInterrupt):
            tune(resume=out, verbose=0, env_kwargs={"desc": ("SF", "HG")})
    assert checked == [{"desc": ["SF", "HG"]}]
    with pytest.raises(ConfigError, match="env_kwargs must be JSON values"):
        tune("ppo", "FrozenLake-v1", env_kwargs={"f": object()})
