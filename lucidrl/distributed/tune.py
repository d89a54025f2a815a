"""Hyperparameter tuning: Ray Tune runs the trials, Optuna's TPE sampler proposes them, ASHA stops bad ones early.

    lucidrl tune ppo --env CartPole-v1 --trials 16 --timesteps 50000          # local Ray instance
    lucidrl tune ppo --env CartPole-v1 --trials 64 --timesteps 100000 --backend ray --address auto
    lucidrl tune --resume tune-ppo-CartPole-v1                                # finish an interrupted sweep

Each trial builds a model with the public API (``PPO(env_id, preset=False, **sampled, seed=seed)``: the plain
defaults, then the search space's fixed values, then the sampled ones), trains it for ``timesteps`` steps on one
CPU with one torch thread, and every ``timesteps / n_evals`` steps plays ``eval_episodes`` deterministic episodes
(``lucidrl.evaluate``) and reports their mean return, ``eval_return``, to Tune. The search spaces are data,
``lucidrl/presets/search_spaces.yaml``, with the source of their ranges (rl-baselines3-zoo's Optuna tuner).

ASHA (asynchronous successive halving, Li et al. 2018, "A System for Massively Parallel Hyperparameter
Tuning") has rungs at ``timesteps / n_evals`` steps and twice, four times... that: when a trial reaches a rung
its return is compared with the returns the trials before it had there, and it is stopped unless it lies in the
better half (reduction factor 2). The first trial at a rung always goes on. TPE (Bergstra et al. 2011) samples
the first ``N_STARTUP`` trials at random, then from a density of the good trials' values.

Ray is needed either way (``--backend local`` starts a local instance); install it with
``pip install 'lucidrl[ray]'``. Bad input (unknown algorithm or env, trials < 1, no search space, Ray or Optuna
not installed) raises a ConfigError or EnvError before Ray starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import re
import shlex
import signal
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lucidrl.agent import ALGORITHMS
from lucidrl.distributed import env_registration, ray_session, register, require_ray
from lucidrl.envs import EnvId, as_env_kwargs
from lucidrl.errors import ConfigError, LucidRLError
from lucidrl.plotting import finish_figure

METRIC = "eval_return"
EXPERIMENT = "tune"  # Tune's experiment directory inside OUT
SETTINGS = "tune.json"  # the sweep's arguments, for --resume
N_STARTUP = 5  # TPE's random trials before it models the good ones
REDUCTION_FACTOR = 2  # ASHA keeps the better 1/2 at each rung
EVAL_SEED = 10_000  # evaluation episodes are seeded apart from training's
KINDS = ("choice", "uniform", "log_uniform", "one_minus_log_uniform", "train_freq_divided_by")
DEFAULTS = {"seed": 0, "n_evals": 4, "eval_episodes": 5}  # for the arguments left as None by a new sweep


# --------------------------------------------------------------------------- search spaces
@functools.cache
def load_search_spaces() -> dict[str, dict[str, Any]]:
    """Every algorithm's search space, as written in ``lucidrl/presets/search_spaces.yaml``."""
    text = resources.files("lucidrl.presets").joinpath("search_spaces.yaml").read_text()
    return yaml.safe_load(text) or {}


def search_space(algo: str) -> dict[str, Any]:
    """The checked search space of ``algo``: ``{"source": str, "fixed": {...}, "params": {name: {kind: arg}}}``."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algo!r}; known: {', '.join(sorted(ALGORITHMS))}")
    spaces = load_search_spaces()
    if algo not in spaces:
        raise ConfigError(
            f"there is no search space for {algo}; spaces exist for {', '.join(sorted(spaces))}. "
            f"Add one under '{algo}:' in lucidrl/presets/search_spaces.yaml"
        )
    entry = spaces[algo]
    where = f"search_spaces.yaml, {algo}"
    fields = {f.name for f in dataclasses.fields(ALGORITHMS[algo].config_class)}
    if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict) or not entry["params"]:
        raise ConfigError(f"{where}: expected 'source', 'fixed' and a non-empty 'params' mapping")
    for name in [*entry["params"], *(entry.get("fixed") or {})]:
        if name not in fields:
            raise ConfigError(
                f"{where}: {name!r} is not a hyperparameter of {algo}; valid: {', '.join(sorted(fields))}"
            )
    for name, spec in entry["params"].items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ConfigError(f"{where}, {name}: expected one of {{{': ..., '.join(KINDS)}: ...}}, got {spec!r}")
        kind, arg = next(iter(spec.items()))
        if kind == "choice" and not (isinstance(arg, dict) or isinstance(arg, list)) or not arg:
            raise ConfigError(f"{where}, {name}: a non-empty list or mapping of values is needed, got {arg!r}")
        if kind in ("uniform", "log_uniform", "one_minus_log_uniform") and not (
            isinstance(arg, list)
            and len(arg) == 2
            and all(isinstance(x, (int, float)) for x in arg)
            and arg[0] < arg[1]
            and (kind == "uniform" or arg[0] > 0)
        ):
            raise ConfigError(
                f"{where}, {name}: {kind} needs [low, high] with low < high (and low > 0 in log scale), got {arg!r}"
            )
        if (
            kind == "train_freq_divided_by"
            and "train_freq" not in entry["params"]
            and "train_freq" not in (entry.get("fixed") or {})
        ):
            raise ConfigError(f"{where}, {name}: train_freq_divided_by needs train_freq in the space")
    return entry


def _key(name: str, kind: str) -> str:
    """The name the sampler sees: the value it samples is not the hyperparameter itself for two kinds."""
    return {"one_minus_log_uniform": f"one_minus_{name}", "train_freq_divided_by": f"{name}_divisor"}.get(kind, name)


def tune_space(entry: dict[str, Any]) -> dict[str, Any]:
    """The search space as Ray Tune domains (OptunaSearch turns them into Optuna distributions)."""
    from ray import tune as ray_tune

    space = {}
    for name, spec in entry["params"].items():
        kind, arg = next(iter(spec.items()))
        if kind == "choice":
            space[_key(name, kind)] = ray_tune.choice(list(arg))  # the names of a mapping's values
        elif kind == "uniform":
            space[_key(name, kind)] = ray_tune.uniform(float(arg[0]), float(arg[1]))
        elif kind in ("log_uniform", "one_minus_log_uniform"):
            space[_key(name, kind)] = ray_tune.loguniform(float(arg[0]), float(arg[1]))
        else:  # train_freq_divided_by
            space[_key(name, kind)] = ray_tune.choice(list(arg))
    return space


def to_hyperparams(
    algo: str, entry: dict[str, Any], sampled: dict[str, Any], timesteps: int
) -> tuple[dict[str, Any], list[str]]:
    """The model's hyperparameters for one sampled point, and the repairs made so the config accepts them.

    Fixed values first, then the sampled ones converted (``1 - x``, a named value, ``train_freq // d``);
    then the repairs: ``batch_size`` at most a rollout (``n_steps * n_envs``), ``learning_starts`` at most half
    the trial's budget.
    """
    hp: dict[str, Any] = dict(entry.get("fixed") or {})
    divisors = {}
    for name, spec in entry["params"].items():
        kind, arg = next(iter(spec.items()))
        v = sampled[_key(name, kind)]
        if kind == "choice":
            hp[name] = arg[v] if isinstance(arg, dict) else v
        elif kind == "one_minus_log_uniform":
            hp[name] = 1.0 - float(v)
        elif kind == "train_freq_divided_by":
            divisors[name] = int(v)
        else:
            hp[name] = float(v)
    for name, d in divisors.items():
        hp[name] = max(int(hp["train_freq"]) // d, 1)
    hp = {k: _plain(v) for k, v in hp.items()}
    repairs = []
    defaults = {f.name: f.default for f in dataclasses.fields(ALGORITHMS[algo].config_class)}
    if "batch_size" in hp and "n_steps" in defaults:
        rollout = hp.get("n_steps", defaults["n_steps"]) * hp.get("n_envs", defaults["n_envs"])
        if hp["batch_size"] > rollout:
            repairs.append(f"batch_size {hp['batch_size']} -> {rollout} (= n_steps * n_envs)")
            hp["batch_size"] = rollout
    if "learning_starts" in hp and hp["learning_starts"] > timesteps // 2:
        repairs.append(f"learning_starts {hp['learning_starts']} -> {timesteps // 2} (half the budget)")
        hp["learning_starts"] = timesteps // 2
    return hp, repairs


def _plain(v: Any) -> Any:
    """NumPy scalars as Python ones, floats to 6 significant digits (what a preset file shows)."""
    if hasattr(v, "item") and not isinstance(v, (list, tuple)):
        v = v.item()
    if isinstance(v, float):
        return float(f"{v:.6g}")
    return list(v) if isinstance(v, tuple) else v


# --------------------------------------------------------------------------- one trial (runs in a Ray worker)
class TrialFailed(RuntimeError):
    """A lucidrl error inside a trial: the trial is marked failed with this message and the sweep goes on."""


def run_trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """Tune's function trainable: build, train, evaluate every ``timesteps / n_evals`` steps, report."""
    import ray.tune as ray_tune

    import lucidrl

    algo, timesteps = setup["algo"], setup["timesteps"]
    env_id = EnvId(setup["env_id"], setup.get("env_kwargs") or {})  # with the env's constructor arguments
    register(setup["env_spec"])  # an env id the driver's script registered: unknown in this process otherwise
    milestones = [timesteps * k // setup["n_evals"] for k in range(1, setup["n_evals"])]
    returns: list[float] = []

    def report(model, finished: bool) -> None:
        mean, std = lucidrl.evaluate(
            model, env_id, n_episodes=setup["eval_episodes"], deterministic=True, seed=EVAL_SEED
        )
        returns.append(mean)
        ray_tune.report(
            {
                METRIC: mean,
                "eval_return_std": std,
                "eval_return_mean_so_far": sum(returns) / len(returns),
                "steps": int(model.num_timesteps),
                "finished": finished,
            }
        )

    def callback(model, metrics) -> None:
        if milestones and model.num_timesteps >= milestones[0]:
            while milestones and model.num_timesteps >= milestones[0]:
                milestones.pop(0)
            if model.num_timesteps < timesteps:
                report(model, False)

    try:
        hp, _ = to_hyperparams(algo, setup["space"], config, timesteps)
        model = ALGORITHMS[algo](env_id, preset=False, seed=setup["seed"], verbose=0, torch_threads=1, **hp)
        model.learn(timesteps, callback=callback)
        report(model, True)
    except LucidRLError as e:  # Tune records the trial as failed with this message; the sweep goes on
        raise TrialFailed(f"{type(e).__name__}: {e}") from None


# --------------------------------------------------------------------------- driver-side helpers for Tune
def _progress_callback(total: int, verbose: int, interrupt_after: int | None = None):
    from ray.tune import Callback

    class Progress(Callback):
        """One line per ended trial, instead of Tune's own tables.

        ``interrupt_after`` (for tests) interrupts the sweep once that many trials have ended, as Ctrl+C
        would: Tune's own signal handler (SIGUSR1, like SIGINT) saves the state and returns, the running
        trials stay unfinished. The count is dropped when Tune pickles the callback (for Tuner.restore),
        so a resumed sweep runs to its end."""

        def __init__(self):
            self.ended: set = set()
            self.interrupt_after = interrupt_after

        def __getstate__(self):
            return {**self.__dict__, "interrupt_after": None}

        def _line(self, trial, what: str) -> None:
            self.ended.add(trial.trial_id)
            if verbose:
                print(f"trial {_number(trial)}/{total} {what}", flush=True)
            if self.interrupt_after is not None and len(self.ended) >= self.interrupt_after:
                self.interrupt_after = None
                os.kill(os.getpid(), signal.SIGUSR1)

        def on_trial_complete(self, iteration, trials, trial, **info):
            r = trial.last_result or {}
            how = "finished" if r.get("finished") else "stopped early by ASHA"
            self._line(trial, f"{how}: eval return {r.get(METRIC, float('nan')):.1f} after {r.get('steps', 0)} steps")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._line(trial, f"failed: {_error_message(trial)}")

    return Progress()


def _number(trial) -> int:
    """The trial's number, 1 for the first: Tune's experiment tag starts with it (``3_activation=relu,...``)."""
    match = re.match(r"(\d+)", getattr(trial, "experiment_tag", "") or "")
    return int(match.group(1)) if match else 0


@contextlib.contextmanager
def _quiet_tune(verbose: int):
    """Around ``Tuner.fit``: Tune's own console output off below verbose=2 (its banner: the older reporter honours
    verbose=0, the newer prints it anyway; a failed trial's traceback; the note on trials without results: the
    progress lines and results.md say what happened to each trial), and the SIGINT / SIGUSR1 handlers Tune
    installs (Ctrl+C ends the sweep resumably) given back afterwards, so a later Ctrl+C interrupts the caller."""
    saved = os.environ.get("RAY_AIR_NEW_OUTPUT")
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    signals = [s for s in (signal.SIGINT, getattr(signal, "SIGUSR1", None)) if s is not None]
    handlers = (
        {s: signal.getsignal(s) for s in signals} if threading.current_thread() is threading.main_thread() else {}
    )
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    if verbose < 2:
        tune_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        tune_logger.setLevel(level)
        if saved is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved


def _error_message(trial) -> str:
    """Why a trial failed: the lucidrl error it raised (``TrialFailed``), else the last line of Tune's record."""
    text = ""
    for path in (trial.error_file, Path(trial.path, "error.txt") if trial.path else None):
        if path and Path(path).is_file():
            text = Path(path).read_text()
            break
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "unknown error (see Tune's error.txt in the trial's directory)"
    marker = TrialFailed.__name__ + ": "
    return lines[-1].split(marker, 1)[1] if marker in lines[-1] else lines[-1]


# --------------------------------------------------------------------------- the sweep
@dataclasses.dataclass
class TuneResult:
    """What ``tune`` returns: every trial (in order), the best one, and the files written."""

    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    out: Path
    files: dict[str, Path]
    wall_seconds: float
    interrupted: bool
    """True when some trials did not end (the sweep was interrupted): ``tune(resume=out)`` finishes it."""


def _check_settings(s: dict[str, Any]) -> None:
    what = {"algo": "an algorithm", "env_id": "an env id (--env)", "trials": "a number of trials (--trials)",
            "timesteps": "a number of timesteps per trial (--timesteps)"}  # fmt: skip
    missing = [text for key, text in what.items() if s[key] is None]
    if missing:
        raise ConfigError(
            f"tune needs an algorithm, an env id, a number of trials and a number of timesteps; missing: "
            f"{', '.join(missing)} (e.g. lucidrl tune ppo --env CartPole-v1 --trials 16 --timesteps 50000), or "
            "--resume DIR"
        )
    for name in ("trials", "timesteps", "n_evals", "eval_episodes"):
        v = s[name]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
    if not isinstance(s["seed"], int) or isinstance(s["seed"], bool) or s["seed"] < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {s['seed']!r}")
    if s["timesteps"] < s["n_evals"]:
        raise ConfigError(f"timesteps ({s['timesteps']}) must be at least n_evals ({s['n_evals']})")


def _check_env(algo: str, env_id: str) -> None:
    """Build one model with the plain defaults: an unknown env, or one the algorithm cannot act in, fails here,
    before Ray starts (as EnvError)."""
    cls = ALGORITHMS[algo]
    small: dict[str, Any] = {"buffer_size": 64, "n_steps": 8, "batch_size": 8, "learning_starts": 0}  # no large buffer
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    model = cls(env_id, preset=False, seed=0, verbose=0, **{k: v for k, v in small.items() if k in fields})
    if model.env is not None:
        model.env.close()


def tune(
    algo: str | None = None,
    env_id: str | None = None,
    trials: int | None = None,
    timesteps: int | None = None,
    backend: str = "local",
    address: str | None = None,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    seed: int | None = None,
    n_evals: int | None = None,
    eval_episodes: int | None = None,
    verbose: int = 1,
    env_kwargs: dict[str, Any] | None = None,
    _interrupt_after: int | None = None,
) -> TuneResult:
    """Tune ``algo``'s hyperparameters on ``env_id`` with ``trials`` trials of ``timesteps`` steps each.

    Args:
        backend: ``"local"`` (a local Ray instance, started and shut down here, or the one already initialised
            in this process) or ``"ray"`` (join the cluster at ``address``, e.g. ``"auto"``;
            without one, a local instance is started, as ``lucidrl compare --backend ray`` does).
        out: the output directory (default ``tune-ALGO-ENV``): ``best_preset.yaml``, ``results.md``,
            ``returns.png``, ``tune.json`` (these arguments) and Tune's experiment directory ``tune/``.
        resume: an output directory of an interrupted sweep: its unfinished trials are run, the remaining ones
            sampled, the outputs rewritten. The other arguments are read from its ``tune.json``; one given that
            differs from it (even if it is the default) is a ConfigError.
        seed: seeds the TPE sampler and every trial's training (all trials train with the same seed); default 0.
        n_evals: evaluations per trial, every ``timesteps / n_evals`` steps; ASHA's rungs are at ``timesteps / n_evals``
            steps and its doublings below ``timesteps``; default 4.
        eval_episodes: deterministic episodes per evaluation; default 5.
        env_kwargs: the env's constructor arguments (``gymnasium.make(env_id, **env_kwargs)``) for every trial.
    """
    started = time.perf_counter()
    if env_kwargs is not None:
        as_env_kwargs(env_kwargs)
        try:  # as tune.json keeps them (a tuple is a list): the same for every trial, resumed or not
            env_kwargs = json.loads(json.dumps(env_kwargs))
        except (TypeError, ValueError):
            raise ConfigError(f"env_kwargs must be JSON values (tune.json keeps them), got {env_kwargs!r}") from None
    given = {
        "algo": algo,
        "env_id": env_id,
        "trials": trials,
        "timesteps": timesteps,
        "seed": seed,
        "n_evals": n_evals,
        "eval_episodes": eval_episodes,
        "env_kwargs": env_kwargs,
    }
    if backend not in ("local", "ray"):
        raise ConfigError(f"backend must be 'local' or 'ray', got {backend!r}")
    if backend == "local" and address is not None:
        raise ConfigError("--address joins a Ray cluster; use it with --backend ray")
    if resume is not None:
        out = Path(resume)
        if not (out / SETTINGS).is_file() or not (out / EXPERIMENT).is_dir():
            raise ConfigError(
                f"--resume {str(out)!r}: not the output directory of a tune run (it needs {SETTINGS} and {EXPERIMENT}/)"
            )
        settings = json.loads((out / SETTINGS).read_text())
        settings.setdefault("env_kwargs", {})  # (sweeps from before it was recorded had none)
        for k, v in given.items():  # None: not given (a given default is checked too)
            if v is not None and v != settings[k]:
                raise ConfigError(
                    f"--resume continues the sweep in {str(out)!r} with its own {k} ({settings[k]!r}), "
                    f"not {v!r}; drop that argument or start a new sweep with another --out"
                )
    else:
        settings = {k: DEFAULTS[k] if v is None and k in DEFAULTS else v for k, v in given.items()}
        settings["env_kwargs"] = env_kwargs or {}
        _check_settings(settings)
    if resume is None:
        entry = search_space(settings["algo"])  # unknown algorithm, no or a broken search space
    else:  # the space the sweep started with, even if search_spaces.yaml changed since
        entry = settings["space"]
    _check_env(settings["algo"], EnvId(settings["env_id"], settings["env_kwargs"]))
    require_ray("lucidrl tune")
    try:
        import optuna
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise ConfigError(
            "lucidrl tune samples with Optuna, which is not installed; install it with pip install 'lucidrl[ray]'"
        ) from None

    if out is None:
        out = Path(f"tune-{settings['algo']}-{settings['env_id'].split('/')[-1].replace(':', '-')}")
    out = Path(out).resolve()
    if resume is None:
        if (out / EXPERIMENT).exists():
            raise ConfigError(
                f"{str(out)!r} already holds a tune run; resume it with --resume {out} or choose another --out"
            )
        if backend == "ray" and address is not None:  # a bad address fails before anything is written
            from lucidrl.distributed import check_address

            check_address(address)
        out.mkdir(parents=True, exist_ok=True)
        settings["command"] = "lucidrl tune " + " ".join(
            shlex.quote(str(a))
            for a in [
                settings["algo"],
                "--env",
                settings["env_id"],
                "--trials",
                settings["trials"],
                "--timesteps",
                settings["timesteps"],
                "--seed",
                settings["seed"],
                *(["--env-kwargs", *(f"{k}:{v!r}" for k, v in settings["env_kwargs"].items())] if env_kwargs else []),
            ]
        )
        settings["out"] = out.name
        settings["space"] = entry
        (out / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
    setup = {k: settings[k] for k in ("algo", "env_id", "env_kwargs", "timesteps", "seed", "n_evals", "eval_episodes")}
    setup["space"] = entry
    setup["env_spec"] = env_registration(settings["env_id"])

    from ray import tune as ray_tune
    from ray.tune.schedulers import ASHAScheduler

    with ray_session(address=address if backend == "ray" else None, what="lucidrl tune"), _quiet_tune(verbose):
        trainable = ray_tune.with_resources(ray_tune.with_parameters(run_trial, setup=setup), {"cpu": 1})
        if resume is not None:
            if verbose:
                print(f"resuming the sweep in {out}", flush=True)
            try:
                tuner = ray_tune.Tuner.restore(str(out / EXPERIMENT), trainable=trainable, resume_unfinished=True)
            except Exception as e:  # a state file Tune cannot read
                raise ConfigError(
                    f"--resume {str(out)!r}: Ray Tune cannot restore the sweep in {EXPERIMENT}/: "
                    f"{type(e).__name__}: {e}"
                ) from None
        else:
            timesteps, k = settings["timesteps"], settings["n_evals"]
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = optuna.samplers.TPESampler(seed=settings["seed"], n_startup_trials=N_STARTUP)
            tuner = ray_tune.Tuner(
                trainable,
                param_space=tune_space(entry),
                tune_config=ray_tune.TuneConfig(
                    metric=METRIC,
                    mode="max",
                    num_samples=settings["trials"],
                    reuse_actors=True,
                    search_alg=OptunaSearch(sampler=sampler),
                    scheduler=ASHAScheduler(
                        time_attr="steps",
                        max_t=timesteps,
                        grace_period=max(1, timesteps // k),
                        reduction_factor=REDUCTION_FACTOR,
                    ),
                ),
                run_config=ray_tune.RunConfig(
                    name=EXPERIMENT,
                    storage_path=str(out),
                    verbose=0,
                    callbacks=[_progress_callback(settings["trials"], verbose, _interrupt_after)],
                    failure_config=ray_tune.FailureConfig(max_failures=0, fail_fast=False),
                ),
            )
        try:
            tuner.fit()
        except LucidRLError:
            raise
        except Exception as e:  # Tune itself failed (not a trial: those are recorded and the sweep goes on)
            raise ConfigError(
                f"Ray Tune stopped the sweep: {type(e).__name__}: {e}; resume it with lucidrl tune --resume {out}"
            ) from None
        rows = collect_trials(out, settings, entry)

    best = pick_best(rows)
    files = write_outputs(out, settings, entry, rows, best)
    ended = sum(r["status"] != "not finished" for r in rows)
    result = TuneResult(rows, best, out, files, time.perf_counter() - started, ended < settings["trials"])
    if verbose:
        print(
            f"{ended} of {settings['trials']} trials ended in {result.wall_seconds:.0f} s; best: "
            + (f"trial {best['number']}, eval return {best['eval_return']:.1f}" if best else "none"),
            flush=True,
        )
        print("wrote " + ", ".join(str(p) for p in files.values()), flush=True)
        if result.interrupted:
            print(f"the sweep was interrupted; finish it with: lucidrl tune --resume {out}", flush=True)
    return result


# --------------------------------------------------------------------------- reading the sweep back
def collect_trials(out: Path, settings: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per trial Tune created, in order: status, last evaluation, steps, hyperparameters, repairs."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(out / EXPERIMENT))
    rows = []
    for trial in sorted(analysis.trials, key=lambda t: _number(t)):
        r = trial.last_result or {}
        try:
            hp, repairs = to_hyperparams(settings["algo"], entry, trial.config, settings["timesteps"])
        except (KeyError, TypeError, IndexError):
            hp, repairs = dict(trial.config), []
        if trial.status == "ERROR":
            status = "failed"
        elif trial.status == "TERMINATED":
            status = "complete" if r.get("finished") else "stopped early by ASHA"
        else:
            status = "not finished"
        rows.append(
            {
                "number": _number(trial),
                "trial_id": trial.trial_id,
                "status": status,
                "eval_return": r.get(METRIC),
                "eval_return_std": r.get("eval_return_std"),
                "mean_so_far": r.get("eval_return_mean_so_far"),
                "steps": r.get("steps", 0),
                "params": hp,
                "repairs": repairs,
                "error": _error_message(trial) if status == "failed" else None,
            }
        )
    return rows


def pick_best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The complete trial with the highest final return; ties go to the one whose evaluations averaged higher
    (it learned sooner), then to the earlier trial. Without a complete trial: the best of those with a return."""
    scored = [r for r in rows if r["eval_return"] is not None and r["status"] == "complete"] or [
        r for r in rows if r["eval_return"] is not None
    ]
    if not scored:
        return None
    return max(scored, key=lambda r: (r["eval_return"], r["mean_so_far"] or -math.inf, -r["number"]))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


def _best_of(rows: list[dict[str, Any]], n: int, timesteps: int) -> str:
    """The preset's "best of 4 trials of 20000 steps": the trials counted are those the best was picked from
    (run to their end or to an ASHA stop); when fewer than the ``n`` asked for, what became of the others."""
    compared = sum(r["status"] in ("complete", "stopped early by ASHA") for r in rows)
    text = f"best of {compared} trial{'' if compared == 1 else 's'} of {timesteps} steps"
    if compared == n:
        return text
    failed = sum(r["status"] == "failed" for r in rows)
    others = [f"{failed} failed"] if failed else []
    if n - compared - failed:  # not finished, or never started
        others.append(f"{n - compared - failed} not finished")
    return f"{text} ({n} asked for: {', '.join(others)})"


def write_outputs(
    out: Path, settings: dict[str, Any], entry: dict[str, Any], rows: list[dict[str, Any]], best: dict[str, Any] | None
) -> dict[str, Path]:
    """``best_preset.yaml``, ``results.md`` and ``returns.png`` in ``out``."""
    files = {"results": out / "results.md", "plot": out / "returns.png"}
    algo, env_id, n = settings["algo"], settings["env_id"], settings["trials"]
    if best is not None:
        preset = {
            env_id: {
                "source": f"lucidrl tune ({settings['out']}): {_best_of(rows, n, settings['timesteps'])}, "
                f"seed {settings['seed']}, trial {best['number']}, eval return {best['eval_return']:.1f}",
                "n_timesteps": settings["timesteps"],
                "hyperparams": best["params"],
            }
        }
        text = (
            f"# The best configuration of `{settings['command']}` ({settings['out']}/results.md).\n"
            f"# Paste this entry into lucidrl/presets/{algo}.yaml (replacing any entry for {env_id}).\n"
            + yaml.safe_dump(preset, sort_keys=False, default_flow_style=None, width=120)
        )
        files["preset"] = out / "best_preset.yaml"
        files["preset"].write_text(text)
    names = list(dict.fromkeys(k for r in rows for k in r["params"]))
    lines = [
        f"# Tuning {algo} on {env_id}",
        "",
        f"`{settings['command']}`: {n} trials of {settings['timesteps']} steps each, Optuna TPE (seed "
        f"{settings['seed']}, the first {N_STARTUP} at random) with ASHA early stopping (rungs every "
        f"{settings['timesteps'] // settings['n_evals']} steps, reduction factor {REDUCTION_FACTOR}). "
        f"Eval return: mean of {settings['eval_episodes']} deterministic episodes at the trial's last "
        f"evaluation. Search space: {entry.get('source', '?')}.",
        "",
    ]
    if best is not None:
        lines += [f"Best: trial {best['number']}, eval return {best['eval_return']:.1f} (best_preset.yaml).", ""]
    ended = sum(r["status"] != "not finished" for r in rows)
    if ended < n:
        lines += [
            f"Unfinished: {ended} of {n} trials ended; `lucidrl tune --resume {settings['out']}` finishes the sweep.",
            "",
        ]
    lines += [
        "| trial | status | eval return | steps | stopped early by ASHA | " + " | ".join(names) + " | notes |",
        "|---" * (len(names) + 6) + "|",
    ]
    for r in rows:
        mark = f"**{r['number']} (best)**" if best is not None and r["number"] == best["number"] else str(r["number"])
        ret = "" if r["eval_return"] is None else f"{r['eval_return']:.1f}"
        notes = "; ".join(r["repairs"] + ([r["error"].replace("|", "/")] if r["error"] else []))
        lines.append(
            f"| {mark} | {r['status'].split(' by ')[0] if r['status'] != 'failed' else 'failed'} | {ret} | "
            f"{r['steps'] or ''} | {'yes' if r['status'] == 'stopped early by ASHA' else 'no'} | "
            + " | ".join(_fmt(r["params"].get(k, "")) for k in names)
            + f" | {notes} |"
        )
    files["results"].write_text("\n".join(lines) + "\n")
    plot_returns(rows, best, files["plot"], f"{algo} on {env_id}: {n} trials of {settings['timesteps']} steps")
    return files


def plot_returns(rows: list[dict[str, Any]], best: dict[str, Any] | None, path: Path, title: str) -> Path:
    """Eval return against trial number: complete trials, trials ASHA stopped (at their last rung), the best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for status, marker, label in (
        ("complete", "o", "complete"),
        ("stopped early by ASHA", "x", "stopped early by ASHA"),
    ):
        pts = [(r["number"], r["eval_return"]) for r in rows if r["status"] == status and r["eval_return"] is not None]
        if pts:
            numbers, returns = zip(*pts)
            ax.scatter(numbers, returns, marker=marker, label=label, s=36)
    if best is not None:
        ax.scatter(
            [best["number"]],
            [best["eval_return"]],
            marker="*",
            s=220,
            facecolors="none",
            edgecolors="red",
            label=f"best (trial {best['number']})",
        )
    failed = [r["number"] for r in rows if r["status"] == "failed"]
    for i, x in enumerate(failed):
        ax.axvline(x, color="grey", alpha=0.4, linestyle=":", label="failed" if i == 0 else None)
    ax.set_xlabel("trial number")
    ax.set_ylabel("eval return (deterministic, last evaluation)")
    return finish_figure(fig, ax, path, title)
