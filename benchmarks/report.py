"""Turn the harness's JSONL results into ``docs/benchmarks.md`` and PNG figures under ``docs/benchmarks/``.

    python benchmarks/report.py                       # benchmarks/results/harness.jsonl -> docs/
    python benchmarks/report.py --results R.jsonl --out /tmp/page.md --figures /tmp/figs

Per env: a table with one line per (algorithm, library, budget): seeds, final return mean ± std
over seeds, IQM with its 95% percentile-bootstrap CI (``lucidrl.stats``, after Agarwal et al.
2021), median training time and steps/s, peak memory, the machine load during the runs, and the
published reference beside them (from ``benchmarks/grid.yaml``); then the learning curves (mean
over seeds with a 95% bootstrap band, ``lucidrl.compare.band``) and the final returns per seed.
Cells of the grid with no result at their full budget are listed with the command that runs them.

When a (algorithm, env, library, budget, seed) was run more than once, the latest row counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lucidrl.compare import band  # noqa: E402
from lucidrl.stats import summarize  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "harness.jsonl"
PAGE = ROOT / "docs" / "benchmarks.md"
FIGURES = ROOT / "docs" / "benchmarks"
ENV_ORDER = ["CartPole-v1", "Acrobot-v1", "LunarLander-v3", "Pendulum-v1"]
ALGO_ORDER = ["ppo", "a2c", "trpo", "dqn", "vpg", "reinforce", "qlearning"]
LIB_NAMES = {"lucidrl": "lucidrl", "sb3": "SB3", "sb3_contrib": "sb3-contrib"}
LOADED = 1.0  # 1-minute load per core above which a timing is flagged as taken on a busy machine


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The successful rows (latest per algo/env/library/budget/seed) and the number of failed ones."""
    latest: dict[tuple, dict[str, Any]] = {}
    failed = 0
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if "error" in r:
            failed += 1
            continue
        latest[(r["algo"], r["env"], r["library"], r["budget"], r["seed"])] = r
    return list(latest.values()), failed


def _fmt_steps(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 and n % 100_000 == 0 else (f"{n / 1e3:g}k" if n % 1000 == 0 else str(n))


def _order(k: tuple) -> tuple:
    """Sort key of an (env, algo, library, budget) group: ALGO_ORDER, lucidrl before its peer, budget."""
    return (ALGO_ORDER.index(k[1]) if k[1] in ALGO_ORDER else len(ALGO_ORDER), k[1], k[2] != "lucidrl", k[3])


def group(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], list[dict[str, Any]]]:
    """Rows by (env, algo, library, budget), seeds in order."""
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[(r["env"], r["algo"], r["library"], r["budget"])].append(r)
    for g in groups.values():
        g.sort(key=lambda r: r["seed"])
    return groups


def cell_stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Statistics over the seeds of one (env, algo, library, budget) group."""
    s = summarize([r["eval_mean"] for r in runs])
    cores = max(1, runs[0].get("machine", {}).get("cpu_count") or 1)
    load = statistics.median(r["load_before"][0] for r in runs)
    return {
        "n": s.n,
        "mean": s.mean,
        "std": s.std,
        "iqm": s.iqm,
        "iqm_low": s.iqm_low,
        "iqm_high": s.iqm_high,
        "train_s": statistics.median(r["train_s"] for r in runs),
        "steps_per_s": statistics.median(r["steps_per_s"] for r in runs),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "load": load,
        "loaded": load / cores > LOADED,
        "full_budget": all(r.get("full_budget", True) for r in runs),
        "seeds": [r["seed"] for r in runs],
        "returns": [r["eval_mean"] for r in runs],
    }


def _reference_text(cell: dict[str, Any] | None) -> str:
    if not cell or not cell.get("reference"):
        return "none verified"
    parts = []
    for ref in cell["reference"]:
        note = f", {ref['note']}" if ref.get("note") else ""
        parts.append(
            f"{ref['mean']:.1f} ± {ref['std']:.1f} at {_fmt_steps(int(ref['budget']))} steps "
            f"(zoo benchmark, 1 agent, {ref['episodes']} episodes{note})"
            if "zoo" in ref["source"]
            else f"{ref['mean']:.1f} ± {ref['std']:.1f} at {_fmt_steps(int(ref['budget']))} steps "
            f"({ref['source'].split(',')[0]}, training episodes{note})"
        )
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _curves(runs):
    return [([p[0] for p in r["curve"]], [p[1] for p in r["curve"]]) for r in runs if len(r.get("curve") or []) >= 1]


def plot_env(env: str, groups: dict, out_dir: Path) -> dict[str, Path]:
    """Learning curves (one panel per algorithm: lucidrl vs peer) and final returns for one env."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = sorted((k for k in groups if k[0] == env), key=_order)
    if not keys:
        return {}
    algos = list(dict.fromkeys(k[1] for k in keys))
    colors = {"lucidrl": "tab:blue", "sb3": "tab:orange", "sb3_contrib": "tab:green"}
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = env.replace("/", "_")

    ncols = min(4, len(algos))
    nrows = -(-len(algos) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows + 0.4), dpi=110, squeeze=False)
    for ax in axes.flat[len(algos) :]:
        ax.set_visible(False)
    for ax, algo in zip(axes.flat, algos):
        for k in (k for k in keys if k[1] == algo):
            curves = _curves(groups[k])
            if not curves:
                continue
            steps, mean, low, high = band(curves)
            label = f"{LIB_NAMES.get(k[2], k[2])} ({len(curves)} seeds, {_fmt_steps(k[3])})"
            ax.plot(steps, mean, color=colors.get(k[2]), linewidth=1.5, label=label)
            ax.fill_between(steps, low, high, color=colors.get(k[2]), alpha=0.2, linewidth=0)
        ax.set_title(algo.upper(), fontsize=10)
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for row in axes:
        row[0].set_ylabel("mean return, last 100\ntraining episodes")
    fig.suptitle(f"{env}: mean over seeds, 95% bootstrap band", fontsize=11)
    fig.tight_layout()
    curves_png = out_dir / f"{stem}_curves.png"
    fig.savefig(curves_png)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(keys) + 1.5), 3.8), dpi=110)
    rng = np.random.default_rng(0)
    labels = []
    for i, k in enumerate(keys):
        st = cell_stats(groups[k])
        ax.scatter(i + rng.uniform(-0.1, 0.1, st["n"]), st["returns"], color=colors.get(k[2]), alpha=0.75, s=20)
        if st["n"] >= 2:
            ax.errorbar(
                i + 0.28,
                st["iqm"],
                yerr=[[st["iqm"] - st["iqm_low"]], [st["iqm_high"] - st["iqm"]]],
                fmt="D",
                color="black",
                capsize=3,
                markersize=4,
            )
        labels.append(f"{k[1]}\n{LIB_NAMES.get(k[2], k[2])}\n{_fmt_steps(k[3])}")
    ax.set_xticks(range(len(keys)), labels, fontsize=7)
    ax.set_ylabel("final return (10 deterministic episodes)")
    ax.set_title(f"{env}: each seed (dots), IQM and 95% bootstrap CI (black)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    final_png = out_dir / f"{stem}_final.png"
    fig.savefig(final_png)
    plt.close(fig)
    return {"curves": curves_png, "final": final_png}


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------

METHOD = """\
## How the figures are measured

* **Final return**: after training, 10 episodes with the deterministic policy (argmax / Gaussian
  mean) on a fresh single env, episode *i* reset with seed *i*, summing the env's raw rewards
  (observation normalisation, where a preset uses it, applied with its frozen statistics; reward
  scaling never enters the figure). One number per training seed; the table gives the mean ±
  standard deviation over seeds (ddof 0) and the interquartile mean with its 95% percentile-
  bootstrap interval over seeds (`lucidrl.stats`, after Agarwal et al. 2021, "Deep RL at the
  Edge of the Statistical Precipice"). With 3 seeds the IQM trims nothing and equals the mean.
* **Training time**: wall time of `learn(budget)` alone, `time.perf_counter` around the call in
  both libraries (building the model and envs and the evaluation excluded); the median over seeds.
* **Steps/s**: env steps taken by `learn` divided by that wall time. An env step is one step of
  one sub-environment: a vector step of 8 envs counts 8. This is what lucidrl logs as
  `time/steps_per_second` (every algorithm, DQN and Q-learning included: all count
  `num_timesteps` in env steps and log through the same logger) and what SB3 logs as `time/fps`.
* **Learning curves**: the mean return of the last 100 *training* episodes against env steps
  (lucidrl: `rollout/episode_return` of the run's `metrics.csv`; SB3: its Monitor episode buffer
  after each rollout), averaged over seeds on a common step grid, with a 95% bootstrap band.
* **Same work**: both libraries get the same hyperparameters: lucidrl's preset for the env (for
  most cells rl-baselines3-zoo's tuned values; the source is named in `lucidrl/presets/*.yaml`),
  translated field by field to SB3's arguments by `benchmarks/harness.py` (`sb3_arguments`), so
  env steps, rollout sizes, epochs, minibatches and gradient steps are identical.
* **Process**: every run is a fresh Python process with `torch.set_num_threads(1)`; runs
  alternate libraries seed by seed (lucidrl s0, peer s0, lucidrl s1, ...). Peak memory is the
  process's `ru_maxrss`.
* **Published references** are quoted with their own budget and metric. rl-baselines3-zoo's
  benchmark table is one trained agent per cell, evaluated over ~150k steps, not a mean over
  seeds; its LunarLander rows are v2 (Gymnasium renamed the task v3) and its Pendulum agents use
  gSDE, which lucidrl lacks (lucidrl's Pendulum presets use plain Gaussian noise and a 300k
  budget instead). CleanRL's figures (PPO and DQN on CartPole-v1 and Acrobot-v1, from its docs)
  are the mean return of the training episodes over 3 seeds, with CleanRL's own hyperparameters
  and 500k steps: a different metric, budget and configuration, shown for orientation only.
  Spinning Up benchmarks five MuJoCo tasks only (openai/spinningup docs/spinningup/bench.rst), so
  none is quoted here. Sources and
  commits: `benchmarks/grid.yaml`.
"""


# The speed bars of record: (algorithm, budget, peer name, bar on the median time ratio), from
# benchmarks/cartpole_vs_sb3.py's side-by-side runs with the zoo's CartPole-v1 hyperparameters.
SPEED_BARS = [
    ("ppo", 100_000, "SB3", 0.25),
    ("a2c", 100_000, "SB3", 0.25),
    ("trpo", 100_000, "sb3-contrib", 0.25),
    ("dqn", 50_000, "SB3", 0.33),
]


REFERENCE_BAR = {"ppo": 0.6}
"""Bars for ``backend="reference"`` runs (issue 13: PPO's reference at most 0.6x SB3's time)."""


def run_backend(r: dict[str, Any]) -> str | None:
    """The lucidrl backend a row ran ("auto", "reference"), or None for rows with other extra arguments. The
    thread setting the benchmark passes (``torch_threads``) is not an extra argument."""
    extra = {k: v for k, v in (r.get("lucidrl_kwargs") or {}).items() if k != "torch_threads"}
    backend = extra.pop("backend", "auto")
    return None if extra else backend


def side_by_side_runs(path: Path, budget: int) -> list[list[dict[str, Any]]]:
    """The ``cartpole_vs_sb3.py`` invocations (``run_id``) at ``budget`` with both libraries and no extra lucidrl
    arguments but the backend, newest first; each a list of rows."""
    if not path.is_file():
        return []
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        r = json.loads(line) if line.strip() else {}
        if r.get("run_id") and r.get("timesteps") == budget and run_backend(r) and "error" not in r:
            runs[r["run_id"]].append(r)
    complete = [rid for rid, rows in runs.items() if {r["library"] for r in rows} == {"lucidrl", "sb3"}]
    return [runs[rid] for rid in sorted(complete, reverse=True)]


def render_speed(results_dir: Path) -> list[str]:
    """The speed section: per algorithm, every side-by-side run of 3 seeds per library (newest first)."""
    lines = [
        "## Speed on CartPole-v1: the side-by-side runs",
        "",
        "`benchmarks/cartpole_vs_sb3.py --algo ALGO` (DQN: `--timesteps 50000`) trains both libraries "
        "with the zoo's CartPole-v1 hyperparameters, the same env steps and gradient steps, seeds 0-2, runs "
        "alternated, each in a fresh process. The figure of record is the ratio of the median training times; a "
        "bar counts as met when the ratio is at or under it *and* lucidrl reaches >= 475 on at least 2 of the 3 "
        "seeds. Every run of the current record format is listed, newest first, so the spread between runs shows. "
        "Load: the 1-minute load average when each run started; a run adds about 1 itself, so on 2 cores a value "
        "above ~1.5 means another job was running. Run: its start time, and the lucidrl commit it measured "
        "where recorded (`-dirty`: with uncommitted changes; in rows before 2026-11-30 08:50 these may be only the "
        "results files the runs append to, later rows count the library and the scripts only). Torch threads: a "
        "number: both libraries pinned to it; `default`: each at its own default, as a user's script runs (torch: "
        'one thread per core; lucidrl: `torch_threads="auto"`). `(reference)`: lucidrl with '
        '`backend="reference"`, the plain-PyTorch algorithm files (bar for PPO: 0.6); otherwise `backend="auto"`.',
        "",
        "| algorithm | budget | torch threads | lucidrl train time (s), seeds 0/1/2 | peer train time (s) | "
        "median ratio lucidrl / peer | bar | lucidrl returns | peer returns | load | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for algo, budget, _peer, bar in SPEED_BARS:
        runs = side_by_side_runs(results_dir / f"{algo}_cartpole.jsonl", budget)
        if not runs:
            lines.append(f"| {algo} | {_fmt_steps(budget)} | | not yet run with run ids | | | ≤ {bar} | | | | |")
        for rows in runs:
            by = {
                lib: sorted((r for r in rows if r["library"] == lib), key=lambda r: r["seed"])
                for lib in ("lucidrl", "sb3")
            }
            med = {lib: statistics.median(r["train_s"] for r in by[lib]) for lib in by}
            ratio = med["lucidrl"] / med["sb3"]
            solved = sum(r["eval_mean"] >= 475 for r in by["lucidrl"])
            backend = run_backend(by["lucidrl"][0])
            row_bar = bar if backend == "auto" else REFERENCE_BAR.get(algo, float("inf"))
            met = ratio <= row_bar and solved >= 2 * len(by["lucidrl"]) / 3
            loads = [r.get("load_before", float("nan")) for r in rows]
            threads = by["lucidrl"][0].get("threads_setting", rows[0]["torch_threads"])
            lines.append(
                f"| {algo}{'' if backend == 'auto' else f' ({backend})'} | {_fmt_steps(budget)} | {threads} | "
                + " / ".join(f"{r['train_s']:.2f}" for r in by["lucidrl"])
                + " | "
                + " / ".join(f"{r['train_s']:.2f}" for r in by["sb3"])
                + f" | **{ratio:.3f}** | "
                + (f"≤ {row_bar} " + ("(met)" if met else "(not met)") if row_bar != float("inf") else "-")
                + " | "
                + " / ".join(f"{r['eval_mean']:.1f}" for r in by["lucidrl"])
                + f" ({solved} >= 475) | "
                + " / ".join(f"{r['eval_mean']:.1f}" for r in by["sb3"])
                + f" | {min(loads):.2f}-{max(loads):.2f} | "
                + f"{rows[0]['run_id']}"
                + (f" `{rows[0]['code']}`" if rows[0].get("code") else "")
                + " |"
            )
    return lines + [""] + render_seed_sweeps(results_dir)


def render_seed_sweeps(results_dir: Path) -> list[str]:
    """How often each library ends on a solved policy, over many seeds (``ALGO_cartpole_seeds.jsonl``).

    At the zoo's budgets DQN's (and A2C's) final greedy policy is good or bad depending on the seed in
    both libraries, so 3 seeds say little about which library solves more often; these sweeps do.
    One row per (library, seed): the newest run of that seed."""
    lines: list[str] = []
    for algo, budget, peer, _ in SPEED_BARS:
        path = results_dir / f"{algo}_cartpole_seeds.jsonl"
        if not path.is_file():
            continue
        newest: dict[tuple[str, int], dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            r = json.loads(line) if line.strip() else {}
            if r.get("timesteps") == budget and not r.get("lucidrl_kwargs") and "eval_mean" in r:
                key = (r["library"], r["seed"])
                if key not in newest or r["timestamp"] > newest[key]["timestamp"]:
                    newest[key] = r
        if not lines:
            lines = [
                "### Final returns over many seeds",
                "",
                "`benchmarks/cartpole_vs_sb3.py ... --seeds S ... "
                "--results benchmarks/results/ALGO_cartpole_seeds.jsonl`: "
                "the same protocol as above over more seeds, to tell a library that solves less often from a "
                "draw of 3 seeds. Solved: the final 10-episode deterministic evaluation >= 475.",
                "",
                "| algorithm | budget | library | seeds | solved | unsolved seeds (return) | commits |",
                "|---|---|---|---|---|---|---|",
            ]
        for lib in ("lucidrl", "sb3"):
            rows = sorted((r for (lb, _), r in newest.items() if lb == lib), key=lambda r: r["seed"])
            if not rows:
                continue
            seeds = [r["seed"] for r in rows]
            solved = sum(r["eval_mean"] >= 475 for r in rows)
            failed = ", ".join(f"{r['seed']} ({r['eval_mean']:.1f})" for r in rows if r["eval_mean"] < 475)
            codes = ", ".join(sorted({f"`{r['code']}`" for r in rows if r.get("code")})) if lib == "lucidrl" else ""
            span = (
                f"{min(seeds)}-{max(seeds)}"
                if seeds == list(range(min(seeds), max(seeds) + 1))
                else ", ".join(map(str, seeds))
            )
            lines.append(
                f"| {algo} | {_fmt_steps(budget)} | {lib if lib == 'lucidrl' else peer} | {span} | "
                f"**{solved} / {len(rows)}** | {failed or '-'} | {codes} |"
            )
    return lines + [""] if lines else []


def _done(cell: dict[str, Any], groups: dict) -> bool:
    """Whether a grid cell has 3 seeds at its full budget for lucidrl and for its peer (if any)."""

    def n(lib):
        return len(groups.get((cell["env"], cell["algo"], lib, cell["budget"]), []))

    return n("lucidrl") >= 3 and (not cell.get("peer") or n(cell["peer"]) >= 3)


def render(rows: list[dict[str, Any]], failed: int, cells: list[dict[str, Any]], figures: Path, page: Path) -> str:
    groups = group(rows)
    by_cell = {(c["algo"], c["env"]): c for c in cells}
    envs = [e for e in ENV_ORDER if any(k[0] == e for k in groups) or any(c["env"] == e for c in cells)]
    envs += sorted({k[0] for k in groups} - set(envs))
    machines = {json.dumps(r.get("machine", {}), sort_keys=True) for r in rows}
    loads = [r["load_before"][0] for r in rows]
    stamps = sorted(r["timestamp"] for r in rows)
    lines = [
        "# Benchmarks: lucidrl beside Stable-Baselines3 and sb3-contrib",
        "",
        "Generated by `python benchmarks/report.py` from `benchmarks/results/harness.jsonl`, which "
        "`python benchmarks/harness.py` fills (the grid: `benchmarks/grid.yaml`). Do not edit by hand.",
        "",
    ]
    if rows:
        m = json.loads(sorted(machines)[0])
        cores = m.get("cpu_count") or 1
        lines += [
            f"Runs from {stamps[0]} to {stamps[-1]} on {m.get('cpu_model', '?')} ({cores} cores), "
            f"torch threads 1 per run; {len(rows)} runs"
            + (f", {failed} failed runs not shown" if failed else "")
            + ".",
            "",
        ]
        busy = sum(ld / cores > LOADED for ld in loads)
        lines += [
            f"**Timings were taken on a shared machine**: the 1-minute load average when a run started was "
            f"{min(loads):.2f} to {max(loads):.2f} on {cores} cores (median {statistics.median(loads):.2f}); "
            f"{busy} of {len(rows)} runs started above {LOADED:g} per core (marked † in the tables). Other jobs "
            "ran meanwhile, so absolute times and steps/s here are not speed claims; the lucidrl/peer ratio is "
            "less affected (runs alternate) but still noisy. Rerun the grid on an idle machine for speed "
            "figures.",
            "",
        ]
    done = sum(_done(c, groups) for c in cells)
    lines += [
        f"**Coverage**: {done} of the {len(cells)} cells of the grid have 3 seeds at their full budget in lucidrl "
        "and in the peer library (where one has the algorithm); the others are listed under each env as "
        "*still to run*, with the command that runs them.",
        "",
    ]
    lines += render_speed(RESULTS.parent)
    lines += [METHOD, ""]

    def rel(p):
        here = page.resolve().parent
        return Path(p).resolve().relative_to(here) if Path(p).resolve().is_relative_to(here) else Path(p).resolve()

    for env in envs:
        keys = sorted((k for k in groups if k[0] == env), key=_order)
        lines += [f"## {env}", ""]
        if keys:
            lines += [
                "| algorithm | library | budget (env steps) | seeds | final return, mean ± std | IQM [95% CI] "
                "| median train time (s) | median steps/s | time ratio lucidrl / peer (median over seed pairs) "
                "| peak RSS (MiB) "
                "| published reference |",
                "|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            any_earlier = False
            for k in keys:
                st = cell_stats(groups[k])
                ci = (
                    f"{st['iqm']:.1f} [{st['iqm_low']:.1f}, {st['iqm_high']:.1f}]"
                    if st["n"] >= 2
                    else f"{st['iqm']:.1f} (1 seed)"
                )
                ratio = ""
                if k[2] == "lucidrl":
                    peer = [q for q in groups if q[0] == env and q[1] == k[1] and q[3] == k[3] and q[2] != "lucidrl"]
                    if peer:  # runs alternate: lucidrl seed i and the peer's seed i ran back to back
                        peer_s = {r["seed"]: r["train_s"] for r in groups[peer[0]]}
                        pairs = [r["train_s"] / peer_s[r["seed"]] for r in groups[k] if r["seed"] in peer_s]
                        ratio = f"{statistics.median(pairs):.2f}" if pairs else ""
                budget = _fmt_steps(k[3]) + ("" if st["full_budget"] else " (reduced)")
                current = by_cell.get((k[1], env))
                earlier = current is not None and k[3] != current["budget"]
                budget += " ‡" if earlier else ""
                any_earlier |= earlier
                lines.append(
                    f"| {k[1]} | {LIB_NAMES.get(k[2], k[2])} | {budget} | {st['n']} | "
                    f"{st['mean']:.1f} ± {st['std']:.1f} | {ci} | {st['train_s']:.1f}{' †' if st['loaded'] else ''} | "
                    f"{st['steps_per_s']:.0f} | {ratio} | {st['peak_rss_mib']:.0f} | "
                    f"{_reference_text(current) if k[2] == 'lucidrl' and not earlier else ''} |"
                )
            if any_earlier:
                lines += [
                    "",
                    "‡ An earlier configuration of a grid cell (the grid's budget, or the preset behind it, has "
                    "changed since these runs; each row's `hyperparams` in the results file says what ran): not the "
                    "cell's current result, so no published reference is set beside it.",
                ]
            lines += [
                "",
                "Final return per seed: "
                + "; ".join(
                    f"{k[1]} {LIB_NAMES.get(k[2], k[2])}: "
                    + ", ".join(f"{x:.1f}" for x in cell_stats(groups[k])["returns"])
                    for k in keys
                )
                + ".",
                "",
            ]
            paths = plot_env(env, groups, figures)
            for name, path in paths.items():
                lines += [f"![{env} {'learning curves' if name == 'curves' else 'final returns'}]({rel(path)})", ""]
        todo = [c for c in cells if c["env"] == env and not _done(c, groups)]
        if todo:
            lines += [
                "**Still to run** at the full budget with 3 seeds (the reference figures are given for when they are):",
                "",
                "| algorithm | peer | budget | hyperparameters | published reference |",
                "|---|---|---|---|---|",
            ]
            for c in todo:
                lines.append(
                    f"| {c['algo']} | {LIB_NAMES.get(c.get('peer') or '', c.get('peer') or '-')} | "
                    f"{_fmt_steps(c['budget'])} | "
                    f"{('lucidrl preset ' + repr(c['preset'])) if c.get('preset') else 'lucidrl defaults'} "
                    f"| {_reference_text(c)} |"
                )
            lines += [
                "",
                "```",
                f"python benchmarks/harness.py --envs {env} --algos "
                + " ".join(dict.fromkeys(c["algo"] for c in todo))
                + " --seeds 0 1 2",
                "```",
                "",
            ]
    lines += [
        "## Reproduce",
        "",
        "```",
        "python benchmarks/harness.py --list     # the grid",
        "python benchmarks/harness.py            # every cell, both libraries, seeds 0 1 2",
        "python benchmarks/report.py             # this page and docs/benchmarks/*.png",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--grid", type=Path, default=ROOT / "benchmarks" / "grid.yaml")
    p.add_argument("--out", type=Path, default=PAGE, help="markdown page (default docs/benchmarks.md)")
    p.add_argument("--figures", type=Path, default=FIGURES, help="folder of the PNGs (default docs/benchmarks/)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from harness import load_grid

    rows, failed = read_rows(args.results) if args.results.is_file() else ([], 0)
    text = render(rows, failed, load_grid(args.grid), args.figures, args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(rows)} runs) and figures in {args.figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
