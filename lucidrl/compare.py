"""``lucidrl compare``: train several algorithms over several seeds on one env, and report honestly.

Every (algorithm, seed) pair is an ordinary training run with its own run directory
(``OUT/runs/ALGO-sSEED``: metrics.csv, TensorBoard events, model/), trained in its own process,
as many at once as there are CPU cores (``jobs``), each on one torch thread. A run directory
that already holds a finished run with the same settings (its ``result.json``) is reused, so an
interrupted comparison picks up where it stopped and a new algorithm can be added later.

Then three outputs, from the run directories alone:

* ``learning_curves.png``: per algorithm, the mean over seeds of the logged episode return
  (``rollout/episode_return``, itself the mean of the last 100 training episodes) against env
  steps, with a 95% percentile-bootstrap band over seeds;
* ``final_returns.png``: every seed's final deterministic evaluation (10 episodes by default)
  as a dot, and per algorithm the IQM with its 95% bootstrap interval;
* ``results.md``: a table with mean, std, IQM and its interval, and the median wall time of
  training (the statistics of ``lucidrl.stats``, after Agarwal et al. 2021).

Seeds that differ only in their seed are the unit of resampling: nothing here pools episodes
across seeds, because episodes of one run are not independent draws of the algorithm.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lucidrl.errors import ConfigError, LucidRLError
from lucidrl.plotting import load_curve
from lucidrl.stats import bootstrap_ci, summarize


@dataclass(frozen=True)
class Job:
    algo: str
    env_id: str
    seed: int
    timesteps: int
    run_dir: str
    eval_episodes: int = 10
    overrides: tuple[tuple[str, Any], ...] = ()

    def spec(self) -> dict[str, Any]:
        """What must match for a finished run directory to be reused."""
        return {"algo": self.algo, "env_id": self.env_id, "seed": self.seed, "timesteps": self.timesteps,
                "eval_episodes": self.eval_episodes, "overrides": dict(self.overrides)}


def run_job(job: Job) -> dict[str, Any]:
    """Train and evaluate one (algorithm, seed) pair in this process; writes and returns ``result.json``."""
    import torch

    import lucidrl
    from lucidrl.agent import ALGORITHMS

    torch.set_num_threads(1)  # one process per core: more threads per process only contend
    model = ALGORITHMS[job.algo](job.env_id, seed=job.seed, run_dir=job.run_dir, verbose=0, **dict(job.overrides))
    model.learn(job.timesteps)
    mean, std = lucidrl.evaluate(model, n_episodes=job.eval_episodes, deterministic=True)
    result = {**job.spec(), "eval_mean": mean, "eval_std": std, "train_s": model.last_training_seconds,
              "num_timesteps": model.num_timesteps, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (Path(job.run_dir) / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _finished(job: Job) -> dict[str, Any] | None:
    path = Path(job.run_dir) / "result.json"
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if {k: result.get(k) for k in job.spec()} == job.spec() else None


def run_all(jobs: Sequence[Job], n_jobs: int, force: bool = False, log=print) -> list[dict[str, Any]]:
    """Run the jobs (reusing finished run directories unless ``force``), ``n_jobs`` processes at a time."""
    results: dict[Job, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        done = None if force else _finished(job)
        if done is not None:
            log(f"  reusing {job.run_dir} (eval {done['eval_mean']:.1f})")
            results[job] = done
        else:
            todo.append(job)
    if todo:
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
                except Exception as e:  # a crash in a worker names its run instead of a bare traceback
                    raise LucidRLError(f"{job.algo} seed {job.seed} failed in {job.run_dir}: {e!r}") from e
                r = results[job]
                log(f"  {job.algo} seed {job.seed}: eval {r['eval_mean']:.1f} +/- {r['eval_std']:.1f}, "
                    f"{r['train_s']:.1f} s")
    return [{**results[j], "run_dir": j.run_dir} for j in jobs]


# --------------------------------------------------------------------------- report
def curve_band(run_dirs: Sequence[str | os.PathLike], n_points: int = 100, confidence: float = 0.95):
    """(steps, mean, low, high) of the runs' learning curves on a common grid of env steps.

    Each run's curve is linearly interpolated onto ``n_points`` steps between the latest first
    logged step and the earliest last one (the span every run covers); the band is the
    percentile bootstrap over runs of the mean at each step.
    """
    return band([load_curve(d) for d in run_dirs], n_points, confidence)


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


def write_report(out: Path, env_id: str, results: Sequence[dict[str, Any]], timesteps: int) -> dict[str, Path]:
    """The two PNGs and the markdown table from the finished runs; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(dict.fromkeys(r["algo"] for r in results))
    by_algo = {a: [r for r in results if r["algo"] == a] for a in algos}
    colors = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(algos)}

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for a in algos:
        steps, mean, low, high = curve_band([Path(r["run_dir"]) for r in by_algo[a]])
        ax.plot(steps, mean, color=colors[a], linewidth=1.6, label=f"{a} ({len(by_algo[a])} seeds)")
        ax.fill_between(steps, low, high, color=colors[a], alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return (mean of last 100 training episodes)")
    ax.set_title(f"{env_id}: mean over seeds, 95% bootstrap band")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    curves_png = out / "learning_curves.png"
    fig.savefig(curves_png)
    plt.close(fig)

    summaries = {a: summarize([r["eval_mean"] for r in by_algo[a]]) for a in algos}
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(algos) + 1.5), 4.2), dpi=120)
    rng = np.random.default_rng(0)
    for i, a in enumerate(algos):
        scores = [r["eval_mean"] for r in by_algo[a]]
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(scores)), scores, color=colors[a], alpha=0.7, s=22)
        s = summaries[a]
        if s.n >= 2:
            ax.errorbar(i + 0.3, s.iqm, yerr=[[s.iqm - s.iqm_low], [s.iqm_high - s.iqm]], fmt="D", color="black",
                        capsize=4, markersize=5)
        else:
            ax.plot(i + 0.3, s.iqm, "D", color="black", markersize=5)
    ax.set_xticks(range(len(algos)), algos)
    ax.set_ylabel("final return (10 deterministic episodes)")
    ax.set_title(f"{env_id}, {timesteps} steps: each seed (dots);\nIQM and its 95% bootstrap CI (black)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    final_png = out / "final_returns.png"
    fig.savefig(final_png)
    plt.close(fig)

    lines = [f"# {env_id}: {', '.join(algos)}", "",
             f"{timesteps} env steps per run; final return = mean of "
             f"{results[0]['eval_episodes']} deterministic evaluation episodes after training; "
             "statistics over seeds (IQM and its 95% percentile-bootstrap CI after Agarwal et al. 2021); "
             "wall time = training only, one torch thread per run.", "",
             "| algorithm | seeds | mean | std | IQM | IQM 95% CI | median wall time (s) |",
             "|---|---|---|---|---|---|---|"]
    for a in algos:
        s = summaries[a]
        ci = f"[{s.iqm_low:.1f}, {s.iqm_high:.1f}]" if s.n >= 2 else "n/a (1 seed)"
        wall = statistics.median(r["train_s"] for r in by_algo[a])
        lines.append(f"| {a} | {s.n} | {s.mean:.1f} | {s.std:.1f} | {s.iqm:.1f} | {ci} | {wall:.1f} |")
    lines += ["", "Per seed:", "", "| algorithm | seed | final return | wall time (s) | run directory |",
              "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['algo']} | {r['seed']} | {r['eval_mean']:.1f} ± {r['eval_std']:.1f} | {r['train_s']:.1f} "
                     f"| {Path(r['run_dir']).name} |")
    table = out / "results.md"
    table.write_text("\n".join(lines) + "\n")
    return {"learning_curves": curves_png, "final_returns": final_png, "table": table}


def compare(algos: Sequence[str], env_id: str, seeds: int | Sequence[int] = 3, timesteps: int = 100_000,
            out: str | os.PathLike | None = None, n_jobs: int | None = None, eval_episodes: int = 10,
            force: bool = False, log=print) -> dict[str, Path]:
    """Train every (algorithm, seed) pair on ``env_id`` and write the comparison to ``out``.

    ``seeds``: a count (seeds 0..n-1) or the seeds themselves. Returns the paths of
    ``learning_curves.png``, ``final_returns.png`` and ``results.md``.
    """
    import lucidrl.algos  # noqa: F401  (registers every algorithm)
    from lucidrl.agent import ALGORITHMS
    from lucidrl.envs import check_env_id

    known = set(ALGORITHMS)
    unknown = [a for a in algos if a not in known]
    if unknown or not algos:
        raise ConfigError(f"unknown algorithm(s) {', '.join(unknown) or '(none given)'}; choose from "
                          f"{', '.join(sorted(known))}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("compare needs at least one seed")
    if timesteps < 1:
        raise ConfigError(f"timesteps must be a positive integer, got {timesteps}")
    check_env_id(env_id)
    out = Path(out or f"compare-{env_id.split('/')[-1]}")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [Job(a, env_id, s, int(timesteps), str(out / "runs" / f"{a}-s{s}"), eval_episodes)
            for a in dict.fromkeys(algos) for s in seed_list]
    n_jobs = n_jobs or os.cpu_count() or 1
    results = run_all(jobs, max(1, min(n_jobs, len(jobs))), force=force, log=log)
    return write_report(out, env_id, results, int(timesteps))
