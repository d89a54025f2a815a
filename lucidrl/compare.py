"""``lucidrl compare``: train several algorithms over several seeds on one env, and report honestly.

Every (algorithm, seed) pair is an ordinary training run with its own run directory
(``OUT/runs/ALGO-sSEED``: metrics.csv, TensorBoard events, model/), trained in its own process,
as many at once as there are CPU cores (``jobs``), each on one torch thread; with ``backend="ray"``
each run is a Ray task instead, on a local Ray instance or a cluster, writing the same files
(``lucidrl.distributed.runs``, docs/scale.md). A run directory that already holds a finished run
with the same settings (its ``result.json``) is reused, so an interrupted comparison picks up where
it stopped and a new algorithm can be added later; an unfinished one (a killed run) is trained again
from scratch. Finished runs with other settings (another env, budget, ...), or a report of another
env in the output directory, are refused unless ``force`` (which retrains and replaces them): runs
that are not comparable never end up in one report.

Then three outputs, from the run directories alone:

* ``learning_curves.png``: per algorithm, the mean over seeds of the logged episode return
  (``rollout/episode_return``, itself the mean of the last 100 training episodes) against env
  steps, with a 95% percentile-bootstrap band over seeds;
* ``final_returns.png``: every seed's final deterministic evaluation (10 episodes by default)
  as a dot, and per algorithm the IQM with its 95% bootstrap interval;
* ``results.md``: a table with mean, std, IQM and its interval, and the median wall time of
  training (the statistics of ``lucidrl.stats``, after Agarwal et al. 2021).

A budget too short for any run to finish a training episode gives no learning curve: the other
outputs are written, and ``results.md`` says so.

Seeds that differ only in their seed are the unit of resampling: nothing here pools episodes
across seeds, because episodes of one run are not independent draws of the algorithm.

``compare_variants`` is the same machinery for variants of one algorithm (an ablation: the same
algorithm with one setting changed, or on a wrapped env), reported under their own labels; the
experiments of ``experiments/`` use it. ``compare`` and ``lucidrl compare`` take such variants
spelled ``ALGO:KEY=VALUE,KEY=VALUE`` beside plain algorithm names (``parse_variant``), e.g.
``lucidrl compare ppo ppo:clip_range=10 --env CartPole-v1``.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import importlib
import json
import multiprocessing
import numbers
import os
import shutil
import statistics
import textwrap
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lucidrl.errors import ConfigError, LucidRLError
from lucidrl.logging import STEP_KEY
from lucidrl.plotting import METRIC, figure_path, finish_figure, load_curve
from lucidrl.stats import bootstrap_ci, summarize


@dataclass(frozen=True)
class Job:
    algo: str
    env_id: str
    seed: int
    timesteps: int
    run_dir: str
    eval_episodes: int = 10
    overrides: tuple[tuple[str, Any], ...] = field(default=(), hash=False)
    """The variant's config fields, as sorted pairs; not hashed, since a value may be a list (``net_arch``): jobs
    differ in their run directories anyway."""
    label: str = ""
    """The name the run is reported under (default: the algorithm's)."""
    wrapper: str = ""
    """``"module:function"``: the function wraps every env built from ``env_id`` (training and evaluation)."""

    @property
    def name(self) -> str:
        return self.label or self.algo

    def spec(self) -> dict[str, Any]:
        """What must match for a finished run directory to be reused."""
        return {
            "algo": self.algo,
            "env_id": str(self.env_id),
            "env_kwargs": dict(getattr(self.env_id, "kwargs", {})),  # (an EnvId: the env's constructor arguments)
            "seed": self.seed,
            "timesteps": self.timesteps,
            "eval_episodes": self.eval_episodes,
            "overrides": dict(self.overrides),
            "label": self.name,
            "wrapper": self.wrapper,
        }


@dataclass(frozen=True)
class Variant:
    """One arm of a comparison: an algorithm, the config fields it changes, and optionally an env wrapper."""

    label: str
    algo: str
    overrides: dict[str, Any] | None = None
    wrapper: str = ""
    """``"module:function"`` taking a gymnasium.Env and returning one; the module must be importable
    by the worker processes (an installed package, or a file beside the script that runs the comparison)."""


def parse_variant(spec: str) -> Variant:
    """``ALGO`` or ``ALGO:KEY=VALUE,KEY=VALUE,...`` -> a Variant of ALGO with those config fields, labelled ``spec``.

    A VALUE is read as a Python literal (``1``, ``0.5``, ``None``, ``[64, 64]``), else kept as text
    (``lin_1e-3``); a comma inside brackets or quotes belongs to the value (``qlearning:n_bins=[1,12,24,24]``).
    Whether each KEY is a field of ALGO's config is checked where the variants are (``compare_variants``)."""
    from lucidrl.config import literal_or_text

    algo, sep, rest = spec.partition(":")
    form = "ALGO or ALGO:KEY=VALUE,KEY=VALUE (e.g. ppo:n_epochs=1,clip_range=0.1)"
    if not sep:
        return Variant(spec, spec)
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(rest):  # split at the commas outside brackets and quotes
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(rest[start:i])
            start = i + 1
    parts.append(rest[start:])
    overrides: dict[str, Any] = {}
    for part in parts:
        key, eq, value = part.strip().partition("=")
        key = key.strip()
        if not algo or not eq or not key.isidentifier() or not value.strip():
            hint = "; a list value goes in brackets, e.g. net_arch=[64,64]" if overrides and not eq else ""
            raise ConfigError(f"{spec!r}: {part.strip()!r} is not KEY=VALUE; write {form}{hint}")
        if key in overrides:
            raise ConfigError(f"{spec!r}: {key} is given twice")
        overrides[key] = literal_or_text(value.strip())
    return Variant(spec, algo, overrides)


def load_wrapper(path: str):
    """The function named by ``"module:function"``, with a clear error when it cannot be imported."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ConfigError(f"an env wrapper is named as 'module:function', got {path!r}")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"cannot import the env wrapper {path!r} ({e}); it must be importable by the worker "
            "processes (an installed module, or a file in the directory of the script you run)"
        ) from None
    if not callable(fn):
        raise ConfigError(f"the env wrapper {path!r} is not callable")
    return fn


def wrapped_env(env_id: str, wrapper: str):
    """A single env ``env_id`` passed through the wrapper function ``wrapper`` (``"module:function"``)."""
    from lucidrl.envs import make_env

    return load_wrapper(wrapper)(make_env(env_id))


def build_model(job: Job, run_dir: str | None) -> tuple[Any, Any]:
    """The model ``job`` trains (its algorithm, env, preset, seed and overrides), and the env it was given."""
    from lucidrl.agent import ALGORITHMS
    from lucidrl.config import preset_for_env

    env: Any = job.env_id
    preset: bool | str = True
    if job.wrapper:  # a factory of the wrapped env; the preset is still the one of the env id underneath
        env = functools.partial(wrapped_env, job.env_id, job.wrapper)
        preset = preset_for_env(job.algo, job.env_id) or False
    model = ALGORITHMS[job.algo](env, preset=preset, seed=job.seed, run_dir=run_dir, verbose=0, **dict(job.overrides))
    return model, env


def probe_variants(jobs: Sequence[Job]) -> None:
    """Build each variant's model once, here, before any run starts: what only the model's construction can tell
    (an algorithm that cannot act in the env, such as DQN on Box actions; a setting that does not fit the env)
    fails now, with the variant named, instead of after the runs before it have trained."""
    import random

    import torch

    seen = set()
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()  # a model seeds the global RNGs
    try:
        for job in jobs:
            key = (job.algo, repr(job.overrides), job.wrapper, job.label)  # repr: a value may be a list (net_arch)
            if key in seen:
                continue
            seen.add(key)
            if job.wrapper:  # the user's wrapper code runs in the runs' processes only (it may exit or crash)
                continue
            try:
                model, _ = build_model(job, None)
            except LucidRLError as e:
                raise type(e)(f"{job.name}: {e}") from None
            except Exception:  # anything else: the run itself reports it, with the finished runs kept
                continue
            if model.env is not None:
                model.env.close()
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def run_job(job: Job) -> dict[str, Any]:
    """Train and evaluate one (algorithm, seed) pair in this process; writes and returns ``result.json``."""
    import torch

    import lucidrl

    torch.set_num_threads(1)  # one process per core: more threads per process only contend
    clear_run_dir(job.run_dir)
    Path(job.run_dir).mkdir(parents=True, exist_ok=True)  # marked as compare's before anything else is written
    (Path(job.run_dir) / JOB_MARKER).write_text(json.dumps(_spec(job), indent=1))
    model, env = build_model(job, job.run_dir)
    model.learn(job.timesteps)
    mean, std = lucidrl.evaluate(model, env=env, n_episodes=job.eval_episodes, deterministic=True)
    result = {
        **job.spec(),
        "eval_mean": mean,
        "eval_std": std,
        "train_s": model.last_training_seconds,
        "num_timesteps": model.num_timesteps,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (Path(job.run_dir) / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _result(job: Job) -> dict[str, Any] | None:
    """The ``result.json`` in the job's run directory (None: none, or unreadable)."""
    path = Path(job.run_dir) / "result.json"
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return result if isinstance(result, dict) else None


def _spec(job: Job) -> dict[str, Any]:
    """``job.spec()`` as ``result.json`` holds it (tuples become lists), to compare with one."""
    return json.loads(json.dumps(job.spec(), default=str))


def _saved(result: dict[str, Any], key: str) -> Any:
    """A field of a run's result.json; runs from before ``env_kwargs`` was recorded had none."""
    return result.get(key, {} if key == "env_kwargs" else None)


def _finished(job: Job) -> dict[str, Any] | None:
    result, spec = _result(job), _spec(job)
    return result if result is not None and {k: _saved(result, k) for k in spec} == spec else None


JOB_MARKER = "compare_job.json"  # written first into each run directory compare makes: only those it may clear


def _run_entry(name: str) -> bool:
    """Whether a file or directory of that name is one a comparison's run writes."""
    return name in (JOB_MARKER, "metrics.csv", "result.json", "model", "checkpoints") or name.startswith(
        ("events.out.tfevents.", ".model.")  # TensorBoard's files; a killed save's hidden copies of model/
    )


def clear_run_dir(run_dir: str | os.PathLike) -> None:
    """Empty a comparison's run directory before its run is trained (again) from scratch: a killed run's, or
    one replaced with ``force``. Only a directory that compare made (its ``compare_job.json``) is cleared, and
    only of what a run writes; anything else there (another run, your files) is refused, never removed."""
    path = Path(run_dir)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    others = [] if not path.is_dir() else sorted(p.name for p in path.iterdir() if not _run_entry(p.name))
    if not path.is_dir() or not (path / JOB_MARKER).is_file() or others:
        what = f"files of its own ({', '.join(others[:5])})" if others else "a run that this comparison did not make"
        raise ConfigError(
            f"{str(path)!r} is where a comparison's run goes, but it holds {what}; compare removes only runs it "
            "made itself. Move it away or choose another output directory"
        )
    for entry in path.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def check_out(out: Path, jobs: Sequence[Job], env_id: str) -> None:
    """Refuse (ConfigError) an output directory holding runs that this comparison cannot reuse and would replace:
    finished runs with other settings in the jobs' run directories, or a report (results.json) of another env."""
    other = []
    for job in jobs:
        result = _result(job)
        if result is None:
            continue
        spec = _spec(job)
        differ = [f"{k} {_saved(result, k)!r}, not {v!r}" for k, v in spec.items() if _saved(result, k) != v]
        if differ:
            other.append(f"{_relative(job.run_dir, out)} ({'; '.join(differ)})")
    if other:
        raise ConfigError(
            f"{str(out)!r} holds finished runs with other settings: {', '.join(other[:3])}"
            f"{f' and {len(other) - 3} more' if len(other) > 3 else ''}; runs compared in one report must share "
            "them. Give another output directory (--out), or add --force (force=True) to retrain and replace them"
        )
    try:
        earlier = json.loads((out / "results.json").read_text())
        envs = sorted({r["env_id"] for r in earlier if isinstance(r, dict) and isinstance(r.get("env_id"), str)})
    except (OSError, UnicodeDecodeError, ValueError, TypeError):  # none, or not ours: nothing to protect
        envs = []
    if envs and envs != [env_id]:
        raise ConfigError(
            f"{str(out)!r} holds a comparison on {', '.join(envs)} (its results.json); one on {env_id} there would "
            "replace its report and mix the envs' runs. Give another output directory (--out), or add --force "
            "(force=True) to write there anyway"
        )


def _log_result(log, job: Job, r: dict[str, Any]) -> None:
    log(f"  {job.name} seed {job.seed}: eval {r['eval_mean']:.1f} +/- {r['eval_std']:.1f}, {r['train_s']:.1f} s")


MAIN_GUARD = (
    "the worker processes (fresh Python interpreters, Python's 'spawn' start method) import the script that "
    "called compare again, so a script that starts a comparison at import time starts it in every worker: put "
    'the call under `if __name__ == "__main__":` (a script read from standard input cannot be imported: save '
    "it to a file)"
)


def refuse_in_worker_import() -> None:
    """Raise at once when a compare worker is importing the user's script and the script starts a comparison.

    A spawned worker imports the main script (as ``__mp_main__``) before it takes any job; without the
    ``__main__`` guard the script's top-level ``compare`` would run again there, and clear the run
    directories the parent is about to train in.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # (the test multiprocessing makes itself)
        raise LucidRLError(f"compare was started while a worker process imported its script: {MAIN_GUARD}")


def run_all(
    jobs: Sequence[Job],
    n_jobs: int | None,
    force: bool = False,
    log=print,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float = 1,
    out: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Run the jobs (reusing finished run directories unless ``force``), ``n_jobs`` at a time.

    ``backend="local"``: ``n_jobs`` processes on this machine (default: one per CPU core);
    ``backend="ray"``: one Ray task of ``cpus_per_run`` CPUs per job on the cluster at ``address``
    (``None``: a local Ray instance), at most ``n_jobs`` at once if given (see ``lucidrl.distributed.runs``);
    ``out``: the comparison's directory, which holds the run directories (default: the first run's grandparent).
    """
    refuse_in_worker_import()
    if backend not in ("local", "ray"):
        raise ConfigError(f"backend must be 'local' or 'ray', got {backend!r}")
    if backend == "local" and (address is not None or cpus_per_run != 1):
        raise ConfigError("address and cpus_per_run apply to backend='ray' only; add backend='ray' (--backend ray)")
    results: dict[Job, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        finished = None if force else _finished(job)
        if finished is not None:
            log(f"  reusing {job.run_dir} (eval {finished['eval_mean']:.1f})")
            results[job] = finished
        else:
            todo.append(job)
    if todo and backend == "local":  # (on Ray the runs' machines, not this one, need the envs' packages)
        probe_variants(todo)
    for job in todo:  # a killed run, or one retrained with force: from scratch, in an empty directory
        clear_run_dir(job.run_dir)
    if todo and backend == "ray":
        from lucidrl.distributed.runs import run_on_ray

        def done(job: Job, r: dict[str, Any]) -> None:
            results[job] = r
            _log_result(log, job, r)

        run_on_ray(
            run_job,
            todo,
            out or Path(todo[0].run_dir).parent.parent,
            done,
            name=lambda job: f"{job.name} seed {job.seed}",
            address=address,
            cpus_per_run=cpus_per_run,
            max_in_flight=n_jobs,
            log=log,
        )
    elif todo:
        n_jobs = max(1, min(n_jobs or os.cpu_count() or 1, len(todo)))
        log(f"training {len(todo)} runs, {n_jobs} at a time")
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no torch state shared by fork
        with cf.ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
            futures = {pool.submit(run_job, job): job for job in todo}
            for fut in cf.as_completed(futures):
                job = futures[fut]
                try:
                    results[job] = fut.result()
                except LucidRLError:
                    raise
                except BrokenProcessPool as e:  # a worker died: most often at start, importing main
                    raise LucidRLError(
                        f"a worker process exited before {job.name} seed {job.seed} finished ({job.run_dir}). "
                        f"If it died at start (its traceback is above): {MAIN_GUARD}. Otherwise it was killed, "
                        "e.g. for lack of memory: use fewer jobs at once (n_jobs, --jobs)"
                    ) from e
                except Exception as e:  # a crash in a worker names its run instead of a bare traceback
                    raise LucidRLError(f"{job.name} seed {job.seed} failed in {job.run_dir}: {e!r}") from e
                _log_result(log, job, results[job])
    return [{**results[j], "run_dir": j.run_dir} for j in jobs]


# --------------------------------------------------------------------------- report
def curve_band(
    run_dirs: Sequence[str | os.PathLike],
    n_points: int = 100,
    confidence: float = 0.95,
    metric: str = METRIC,
    x: str = STEP_KEY,
):
    """(steps, mean, low, high) of the runs' learning curves (``metric``) on a common grid of env steps
    (``x``: of another column, e.g. ``time/elapsed_s``).

    Each run's curve is linearly interpolated onto ``n_points`` steps between the latest first
    logged step and the earliest last one (the span every run covers); the band is the
    percentile bootstrap over runs of the mean at each step.
    """
    return band([load_curve(d, metric, x) for d in run_dirs], n_points, confidence)


def band(curves: Sequence[tuple[Sequence[float], Sequence[float]]], n_points: int = 100, confidence: float = 0.95):
    """(steps, mean, low, high) of learning curves given as ``(steps, values)`` pairs (see ``curve_band``)."""
    start, end = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
    grid = np.linspace(start, end, n_points) if end > start else np.array([end], dtype=np.float64)
    ys = np.stack([np.interp(grid, c[0], c[1]) for c in curves])  # [runs, points]
    mean = ys.mean(0)
    if len(curves) < 2:
        return grid, mean, mean, mean
    low, high = bootstrap_ci(ys, "mean", confidence)
    return grid, mean, np.asarray(low), np.asarray(high)


def _label(r: dict[str, Any]) -> str:
    return r.get("label") or r["algo"]


def group_runs(results: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The results by algorithm (or variant label), in the order they first appear."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(_label(r), []).append(r)
    return groups


def plot_curves(
    groups: dict[str, list[dict[str, Any]]],
    path: Path,
    metric: str = METRIC,
    title: str = "",
    ylabel: str | None = None,
    reference: tuple[float, str] | None = None,
    log_y: bool = False,
    x: str = STEP_KEY,
    xlabel: str | None = None,
) -> Path:
    """One PNG: per group, the mean over its runs of ``metric`` against env steps with a 95% bootstrap band.

    ``reference``: (value, label) of a horizontal line to draw (e.g. the best possible value);
    ``log_y``: a logarithmic y axis (for quantities such as a KL divergence that span decades);
    ``x``: another column of metrics.csv on the x axis (e.g. ``time/elapsed_s``), named by ``xlabel``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = figure_path(path)  # a bad name fails before any run is read
    bands = {}
    for name, runs in groups.items():
        try:
            bands[name] = curve_band([Path(r["run_dir"]) for r in runs], metric=metric, x=x)
        except LucidRLError:  # this algorithm does not log the metric: left out of this figure
            continue
    if not bands:
        raise LucidRLError(
            f"no run logged {metric!r}; the metrics an algorithm logs are the columns of a run's "
            "metrics.csv (e.g. diag/approx_kl for ppo, diag/q_mean for dqn)"
        )
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for i, (name, runs) in enumerate(groups.items()):
        if name not in bands:
            continue
        steps, mean, low, high = bands[name]
        color = plt.get_cmap("tab10")(i % 10)
        ax.plot(steps, mean, color=color, linewidth=1.6, label=f"{name} ({len(runs)} seeds)")
        ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
    if reference is not None:
        ax.axhline(reference[0], color="black", linestyle="--", linewidth=1, label=reference[1])
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel or ("environment steps" if x == STEP_KEY else x))
    ax.set_ylabel(ylabel or ("episode return (mean of last 100 training episodes)" if metric == METRIC else metric))
    return finish_figure(fig, ax, path, title)


def write_report(
    out: Path, env_id: str, results: Sequence[dict[str, Any]], timesteps: int, metrics: Sequence[str] = ()
) -> dict[str, Path]:
    """The two PNGs, the markdown table and ``results.json`` from the finished runs; returns their paths.

    ``metrics``: other logged metrics (e.g. ``diag/approx_kl``) to plot like the learning curves, one
    ``curves_<metric>.png`` each. A curve no run logged (no training episode finished within the budget, a
    metric the algorithms do not log) is left out, with a note in ``results.md``; the rest is written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_algo = group_runs(results)
    algos = list(by_algo)  # algorithms, or the variants' labels
    column = "algorithm" if all(_label(r) == r["algo"] for r in results) else "variant"
    colors = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(algos)}
    paths: dict[str, Path] = {}
    notes = []
    for key, metric, png, title in [
        ("learning_curves", METRIC, out / "learning_curves.png", f"{env_id}: mean over seeds, 95% bootstrap band"),
        *[
            (m, m, out / f"curves_{_dir_name(m)}.png", f"{env_id}: {m}, mean over seeds, 95% bootstrap band")
            for m in metrics
        ],
    ]:
        try:
            paths[key] = plot_curves(by_algo, png, metric=metric, title=title)
        except LucidRLError as e:  # the evaluations are still reported
            png.unlink(missing_ok=True)  # an earlier report's figure would not match this table
            notes.append(
                f"No learning curve: no run finished a training episode in {timesteps} steps (none logged {METRIC})."
                if metric == METRIC
                else f"No {png.name}: {e}."
            )

    summaries = {a: summarize([r["eval_mean"] for r in by_algo[a]]) for a in algos}
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(algos) + 1.5), 4.2), dpi=120)
    rng = np.random.default_rng(0)
    for i, a in enumerate(algos):
        scores = [r["eval_mean"] for r in by_algo[a]]
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(scores)), scores, color=colors[a], alpha=0.7, s=22)
        s = summaries[a]
        if s.n >= 2:
            ax.errorbar(
                i + 0.3,
                s.iqm,
                yerr=[[s.iqm - s.iqm_low], [s.iqm_high - s.iqm]],
                fmt="D",
                color="black",
                capsize=4,
                markersize=5,
            )
        else:
            ax.plot(i + 0.3, s.iqm, "D", color="black", markersize=5)
    # long variant names are wrapped onto lines of ~16 characters so that neighbouring labels do not overlap
    ax.set_xticks(range(len(algos)), [textwrap.fill(a, 16, break_long_words=False) for a in algos])
    ax.set_ylabel(f"final return ({results[0]['eval_episodes']} deterministic episodes)")
    ax.set_title(f"{env_id}, {timesteps} steps: each seed (dots);\nIQM and its 95% bootstrap CI (black)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    final_png = out / "final_returns.png"
    fig.savefig(final_png)
    plt.close(fig)

    kwargs = getattr(env_id, "kwargs", {})  # (an EnvId: the env's constructor arguments)
    lines = [
        f"# {env_id}{' (' + ', '.join(f'{k}={v!r}' for k, v in kwargs.items()) + ')' if kwargs else ''}: "
        f"{', '.join(algos)}",
        "",
        f"{timesteps} env steps per run; final return = mean of "
        f"{results[0]['eval_episodes']} deterministic evaluation episodes after training; "
        "statistics over seeds (IQM and its 95% percentile-bootstrap CI after Agarwal et al. 2021); "
        "wall time = training only, one torch thread per run.",
        "",
        *[line for note in notes for line in (note, "")],
        f"| {column} | seeds | mean | std | IQM | IQM 95% CI | median wall time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in algos:
        s = summaries[a]
        ci = f"[{s.iqm_low:.1f}, {s.iqm_high:.1f}]" if s.n >= 2 else "n/a (1 seed)"
        wall = statistics.median(r["train_s"] for r in by_algo[a])
        lines.append(f"| {a} | {s.n} | {s.mean:.1f} | {s.std:.1f} | {s.iqm:.1f} | {ci} | {wall:.1f} |")
    lines += [
        "",
        "Per seed:",
        "",
        f"| {column} | seed | final return | wall time (s) | run directory |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {_label(r)} | {r['seed']} | {r['eval_mean']:.1f} ± {r['eval_std']:.1f} | {r['train_s']:.1f} "
            f"| {Path(r['run_dir']).name} |"
        )
    table = out / "results.md"
    table.write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(
        json.dumps([{**r, "run_dir": _relative(r["run_dir"], out)} for r in results], indent=1)
    )
    return {**paths, "final_returns": final_png, "table": table, "results": out / "results.json"}


def compare(
    algos: Sequence[str],
    env_id: str,
    seeds: int | Sequence[int] = 3,
    timesteps: int = 100_000,
    out: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    eval_episodes: int = 10,
    force: bool = False,
    log=print,
    metrics: Sequence[str] = (),
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float = 1,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Train every (algorithm, seed) pair on ``env_id`` and write the comparison to ``out``.

    ``algos``: algorithm names, or variants spelled ``ALGO:KEY=VALUE,...`` (``parse_variant``: ALGO's preset for
    the env with those fields changed, reported under the spelling), e.g. ``["ppo", "ppo:clip_range=10"]``.
    ``seeds``: a count (seeds 0..n-1) or the seeds themselves; ``metrics``: other logged metrics to
    plot over training, one PNG each. ``backend``: ``"local"`` (processes on this machine) or
    ``"ray"`` (one Ray task of ``cpus_per_run`` CPUs per run, on the cluster at ``address`` or a local
    Ray instance; the same outputs, see docs/scale.md). ``env_kwargs``: the env's constructor arguments
    (``gymnasium.make(env_id, **env_kwargs)``), for every run. Returns the paths of ``learning_curves.png``,
    ``final_returns.png``, ``results.md``, ``results.json`` and the metrics' PNGs.
    """
    if not algos:
        raise ConfigError("compare needs at least one algorithm, e.g. ppo a2c trpo")
    repeated = sorted({a for a in algos if list(algos).count(a) > 1})
    if repeated:
        raise ConfigError(f"compare: each algorithm once; {', '.join(repeated)} is given more than once")
    return compare_variants(
        [parse_variant(a) for a in algos],
        env_id,
        seeds,
        timesteps,
        out,
        n_jobs,
        eval_episodes,
        force,
        log,
        metrics,
        backend,
        address,
        cpus_per_run,
        env_kwargs,
    )


def compare_variants(
    variants: Sequence[Variant],
    env_id: str,
    seeds: int | Sequence[int] = 3,
    timesteps: int = 100_000,
    out: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    eval_episodes: int = 10,
    force: bool = False,
    log=print,
    metrics: Sequence[str] = (),
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float = 1,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """``compare`` for variants: every (variant, seed) pair trained on ``env_id``, reported under the labels.

    Each variant starts from its algorithm's preset for ``env_id`` (as ``compare`` does) with its
    ``overrides`` on top; every override is checked here, before any process starts.
    """
    import lucidrl.algos  # noqa: F401  (registers every algorithm)
    from lucidrl.agent import ALGORITHMS
    from lucidrl.config import resolve_config
    from lucidrl.envs import check_env_id, with_env_kwargs

    known = set(ALGORITHMS)
    unknown = [v.algo for v in variants if v.algo not in known]
    if unknown or not variants:
        raise ConfigError(
            f"unknown algorithm(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(sorted(known))}"
        )
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels) or not all(labels):
        raise ConfigError(f"every variant needs its own non-empty label, got {labels}")
    dirs = [_dir_name(label) for label in labels]
    if len(set(dirs)) != len(dirs):
        raise ConfigError(
            f"the labels {labels} give the same run directory names {dirs} (only ASCII letters, digits, "
            "'.' and '-' are kept); make them differ in those characters"
        )
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("compare needs at least one seed")
    repeated = sorted({s for s in seed_list if seed_list.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"each seed once: {', '.join(map(str, repeated))} is given more than once in the seeds {seed_list} "
            "(one value N means the seeds 0..N-1)"
        )
    if timesteps < 1:
        raise ConfigError(f"timesteps must be a positive integer, got {timesteps}")
    if isinstance(eval_episodes, bool) or not isinstance(eval_episodes, numbers.Integral) or eval_episodes < 1:
        raise ConfigError(
            f"eval_episodes must be an integer >= 1 (the final evaluation's episodes), got {eval_episodes!r}"
        )
    check_env_id(env_id)
    if env_kwargs:  # the env's constructor arguments travel with its id, to every run and its evaluation
        env_id = with_env_kwargs(env_id, env_kwargs)
    if backend not in ("local", "ray"):
        raise ConfigError(f"backend must be 'local' or 'ray', got {backend!r}")
    for v in variants:  # bad hyperparameters or a missing wrapper fail now, with the variant named
        try:
            resolve_config(v.algo, ALGORITHMS[v.algo].config_class, env_id, True, dict(v.overrides or {}))
        except ConfigError as e:
            raise ConfigError(f"variant {v.label!r}: {e}") from None
        if v.wrapper:
            load_wrapper(v.wrapper)
    out = Path(out or f"compare-{env_id.split('/')[-1]}")
    jobs = [
        Job(
            v.algo,
            env_id,
            s,
            int(timesteps),
            str(out / "runs" / f"{_dir_name(v.label)}-s{s}"),
            eval_episodes,
            tuple(sorted((v.overrides or {}).items())),
            "" if v.label == v.algo else v.label,
            v.wrapper,
        )
        for v in variants
        for s in seed_list
    ]
    if not force:
        check_out(out, jobs, env_id)
    if backend == "ray" and address is not None:  # a bad address fails before the output directory is made
        from lucidrl.distributed import check_address

        check_address(address)
    out.mkdir(parents=True, exist_ok=True)
    results = run_all(
        jobs, n_jobs, force=force, log=log, backend=backend, address=address, cpus_per_run=cpus_per_run, out=out
    )
    return write_report(out, env_id, results, int(timesteps), metrics)


def _relative(path: str, base: Path) -> str:
    """``path`` relative to ``base`` when it lies inside it (results.json stays valid if ``base`` moves)."""
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def load_results(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The runs of a comparison written to ``out`` (its ``results.json``), with their ``run_dir`` under ``out``."""
    out = Path(out)
    return [{**r, "run_dir": str(out / r["run_dir"])} for r in json.loads((out / "results.json").read_text())]


def _dir_name(label: str) -> str:
    """A label as a directory name: ASCII letters and digits, '.' and '-' kept, each run of anything else one '_'."""
    name = "".join(c if (c.isascii() and c.isalnum()) or c in ".-" else "_" for c in label)
    return "_".join(part for part in name.split("_") if part) or "run"
