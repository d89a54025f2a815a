"""A2C vs A3C: wall time, sample efficiency, and does the noise of stale gradients help?

A3C (``lucidrl.algos.a3c``, Mnih et al. 2016, Algorithm S3) runs K actor-learners. Each copies the
shared parameters θ' ← θ, plays t_max = 5 steps on its 4 env copies, computes the gradient dθ of A2C's
loss at θ' (E1-E4: n-step returns, advantage, actor and critic gradients) and hands it to the
parameter holder, which applies it to the *current* θ at once (E5-E6). When other workers' gradients
were applied meanwhile, dθ is stale by s updates (``diag/staleness``). A2C (``lucidrl.algos.a2c``) is
the same loss with all envs stepped in lockstep and one gradient per batch: s = 0 always.

CartPole-v1, 30k env steps a run, 5 seeds, A2C's defaults (SB3's: RMSprop η = 7e-4, 5 steps per env
per gradient, no entropy bonus), variants:

* ``A2C, 4 envs``: 20 env steps per gradient, as one A3C worker's; s = 0;
* ``A2C, 8 envs (preset)``: the zoo's preset, 40 steps per gradient: the synchronous counterpart of
  two workers of 4 envs (the same envs, half as many updates);
* ``A3C, 1 worker``: one Ray worker of 4 envs: A2C with 4 envs, through Ray; s = 0;
* ``A3C, 2 workers (preset)``: lucidrl's A3C preset; s measured (it depends on timing);
* ``lockstep A3C, 2 workers`` / ``4 workers``: A3C's own code (``A3CWorker``, ``a3c_gradients``,
  ``apply_gradient``) with the workers run one after another in this process, in a fixed round robin,
  instead of as Ray actors: every gradient after the first K is then exactly K − 1 updates stale,
  and the run is reproducible bit for bit. It isolates the staleness from the timing.

Every run is trained in this one process, one after another, so that wall times compare (``--jobs``
is ignored). Ray is started once for the A3C runs (its start-up time is written to staleness.json
and is not part of any run's train time; starting the workers is). Multi-worker A3C is not
reproducible bit for bit: the order in which gradients arrive depends on timing.

Outputs in docs/experiments/a2c_vs_a3c/: learning_curves.png (return vs env steps), final_returns.png,
results.md, results.json, learning_curves_wall.png (return vs training wall time, each run), staleness.png
(the logged ``diag/staleness``), staleness.json / staleness.md (per variant and seed: updates, train
time, the machine's 1-minute load average before and after, staleness mean and max).

    python experiments/a2c_vs_a3c.py            # 5 seeds, ~25 min on 2 busy cores (runs one at a time)
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

from _common import budget, parse_args

from lucidrl.algos.a3c import A3C, A3CWorker
from lucidrl.compare import Job, _dir_name, group_runs, run_job, write_report
from lucidrl.logging import read_metrics
from lucidrl.plotting import METRIC

ENV = "CartPole-v1"
THRESHOLD = 100.0  # a logged return (mean of the last 100 training episodes, so it lags the policy) showing learning
VARIANTS = [  # (label, algorithm, overrides); algorithms "a2c", "a3c" and "a3c_lockstep" (below)
    ("A2C, 4 envs", "a2c", {"n_envs": 4}),
    ("A2C, 8 envs (preset)", "a2c", {}),
    ("A3C, 1 worker", "a3c", {"n_workers": 1}),
    ("A3C, 2 workers (preset)", "a3c", {}),
    ("lockstep A3C, 2 workers", "a3c_lockstep", {"n_workers": 2}),
    ("lockstep A3C, 4 workers", "a3c_lockstep", {"n_workers": 4}),
]


class LockstepLearners:
    """``ActorLearners``' interface without Ray: the workers live in this process and run in submission order.

    ``submit`` queues a segment; ``next`` runs the oldest queued one. A3C.learn submits every worker at
    θ_0, then after applying a gradient resubmits that worker at the new θ, so the workers take turns
    and each gradient after the first K is computed at θ K − 1 updates old.
    """

    def __init__(self, worker_class: type, worker_args: list[tuple]):
        self.workers = [worker_class(*copy.deepcopy(args)) for args in worker_args]  # own network copy each
        self.queue: list[tuple[int, tuple]] = []

    def submit(self, k: int, *args) -> None:
        self.queue.append((k, args))

    def next(self):
        k, args = self.queue.pop(0)
        return k, self.workers[k].run(*args)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.queue = []


class LockstepA3C(A3C):
    """A3C with ``LockstepLearners`` in place of Ray actors: the same update code, a fixed arrival order."""

    def _start_workers(self):
        cfg = self.config
        loss_cfg = SimpleNamespace(
            n_steps=cfg.n_steps, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef
        )
        agent, seed = copy.deepcopy(self.agent).cpu(), self._env_seed()
        return LockstepLearners(
            A3CWorker,
            [
                (
                    self._env_source,
                    cfg.n_envs,
                    seed + k * cfg.n_envs,
                    self.vectorization,
                    agent,
                    loss_cfg,
                    self._gradients,
                )
                for k in range(cfg.n_workers)
            ],
        )


def register_lockstep() -> None:
    """Make ``run_job`` able to build LockstepA3C (in this process only; it keeps A3C's name and preset)."""
    from lucidrl.agent import ALGORITHMS

    ALGORITHMS["a3c_lockstep"] = LockstepA3C


def finished(job: Job) -> dict | None:
    path = Path(job.run_dir) / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if {k: result.get(k) for k in job.spec()} == job.spec() else None


def staleness(groups: dict[str, list[dict]]) -> dict:
    """Per variant and seed: updates, train time, and the staleness of the applied gradients (A3C only)."""
    out = {}
    for label, runs in groups.items():
        rows = []
        for r in runs:
            metrics = read_metrics(Path(r["run_dir"]) / "metrics.csv")
            stale = [m["diag/staleness"] for m in metrics if "diag/staleness" in m]
            first = next((m for m in metrics if m.get(METRIC, -1.0) >= THRESHOLD), None)
            rows.append(
                {
                    "seed": r["seed"],
                    "eval_mean": r["eval_mean"],
                    "train_s": r["train_s"],
                    "steps_to_threshold": first and int(first["time/total_timesteps"]),
                    "seconds_to_threshold": first and first["time/elapsed_s"],
                    "load_average": r.get("load_average"),
                    "first_row_s": metrics[0]["time/elapsed_s"],  # A3C: mostly the workers' start-up
                    "updates": int([m for m in metrics if "train/n_updates" in m][-1]["train/n_updates"]),
                    "staleness_mean": statistics.mean(stale) if stale else 0.0,
                    "staleness_max": max(
                        (m["diag/staleness_max"] for m in metrics if "diag/staleness_max" in m), default=0.0
                    ),
                }
            )
        out[label] = rows
    return out


def plot_wall(groups: dict[str, list[dict]], path: Path) -> Path:
    """Return against training wall time, one line per run (start-up times differ too much for a common band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lucidrl.plotting import finish_figure

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for i, (label, runs) in enumerate(groups.items()):
        color = plt.get_cmap("tab10")(i % 10)
        for j, r in enumerate(runs):
            rows = [m for m in read_metrics(Path(r["run_dir"]) / "metrics.csv") if METRIC in m]
            ax.plot(
                [m["time/elapsed_s"] for m in rows],
                [m[METRIC] for m in rows],
                color=color,
                linewidth=1.1,
                alpha=0.75,
                label=f"{label} ({len(runs)} seeds)" if j == 0 else None,
            )
    ax.set_xscale("log")
    ax.set_xlabel("training wall time (s, log scale), one run at a time, A3C's worker start included")
    ax.set_ylabel("episode return (mean of last 100 training episodes)")
    return finish_figure(fig, ax, path, f"{ENV}: return against wall time, each run")


def write_staleness(out: Path, stale: dict, ray_start_s: float) -> Path:
    lines = [
        "# Updates, train time and staleness per variant and seed",
        "",
        f"Ray's start-up, once for all A3C runs: {ray_start_s:.1f} s (not in the train times). Staleness: updates "
        "applied to θ between a worker's copy θ' and the application of its gradient (0 for A2C).",
        "",
        f"First reaching a logged return >= {THRESHOLD:g} (mean of the last 100 training episodes): env steps "
        "and training seconds; '-' where a run never did.",
        "",
        "First row: training seconds at the first logged row (A3C: after 10 gradients, mostly the start of its "
        "workers).",
        "",
        "| variant | seed | final return | updates | train time (s) | first row (s) | load average, before → after | "
        f"steps to {THRESHOLD:g} | seconds to {THRESHOLD:g} | staleness, mean | staleness, max |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rows in stale.items():
        for r in rows:
            load = "{:.1f} → {:.1f}".format(*r["load_average"]) if r["load_average"] else "n/a"
            reach = (
                f"{r['steps_to_threshold']} | {r['seconds_to_threshold']:.1f}" if r["steps_to_threshold"] else "- | -"
            )
            lines.append(
                f"| {label} | {r['seed']} | {r['eval_mean']:.1f} | {r['updates']} | {r['train_s']:.1f} "
                f"| {r['first_row_s']:.1f} | {load} "
                f"| {reach} | {r['staleness_mean']:.2f} | {r['staleness_max']:.0f} |"
            )
    path = out / "staleness.md"
    path.write_text("\n".join(lines) + "\n")
    (out / "staleness.json").write_text(json.dumps({"ray_start_s": ray_start_s, "runs": stale}, indent=1))
    return path


if __name__ == "__main__":
    args = parse_args("a2c_vs_a3c", __doc__.splitlines()[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timesteps = budget(args, 30_000, 1_000)
    register_lockstep()
    jobs = [
        Job(
            algo,
            ENV,
            s,
            timesteps,
            str(out / "runs" / f"{_dir_name(label)}-s{s}"),
            10,
            tuple(sorted(overrides.items())),
            label,
        )
        for label, algo, overrides in VARIANTS
        for s in range(args.seeds)
    ]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local Ray instance needs no login token
    from lucidrl.distributed import ray_session

    t0 = time.perf_counter()
    with ray_session(num_cpus=os.cpu_count(), what="A3C") as ray:
        ray_start_s = time.perf_counter() - t0
        results = []
        for job in jobs:  # one at a time: wall times compare, and A3C's workers get the CPUs
            r = None if args.force else finished(job)
            if r is None:
                load_before = os.getloadavg()[0]
                r = run_job(job)
                r["load_average"] = [load_before, os.getloadavg()[0]]  # 1-min load before and after: CPU contention
                (Path(job.run_dir) / "result.json").write_text(json.dumps(r, indent=1))
            print(f"  {job.label} seed {job.seed}: eval {r['eval_mean']:.1f}, {r['train_s']:.1f} s", flush=True)
            results.append({**r, "run_dir": job.run_dir})
    paths = write_report(out, ENV, results, timesteps, metrics=())
    groups = group_runs(results)
    paths["wall"] = plot_wall(groups, out / "learning_curves_wall.png")
    from lucidrl.compare import plot_curves

    paths["staleness"] = plot_curves(
        groups,
        out / "staleness.png",
        metric="diag/staleness",
        ylabel="staleness of the applied gradients (mean per log row)",
        title=f"{ENV}: A3C's staleness, mean over seeds, 95% bootstrap band",
    )
    paths["staleness_table"] = write_staleness(out, staleness(groups), ray_start_s)
    print(paths["table"].read_text())
    print(paths["staleness_table"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
