"""PPO on LunarLander-v3 (issue "Continuous control": >= 200 within 1M steps on at least 2 of 3 seeds).

Hyperparameters: lucidrl's ``LunarLander-v3`` preset (``lucidrl/presets/ppo_zoo.yaml``), taken from
rl-baselines3-zoo's PPO ``LunarLander-v2`` entry (n_envs 16, n_steps 1024, batch_size 64,
gae_lambda 0.98, gamma 0.999, n_epochs 4, ent_coef 0.01; SB3's defaults otherwise, which are
lucidrl's). The zoo reports a mean return of 242 for SB3 PPO at 1M steps (benchmark.md).

What it measures, per seed (each a fresh Python process, seeds run one after another):

* ``train_s``: wall time of ``model.learn(total_timesteps)`` only;
* ``steps_per_s``: ``model.num_timesteps / train_s``;
* ``eval_mean`` / ``eval_std``: ``lucidrl.evaluate(model, "LunarLander-v3", n_episodes=10,
  deterministic=True, seed=0)`` on a fresh single env: the raw, unscaled game score;
* ``peak_rss_mib``: peak resident memory of the worker.

Every result is appended as one JSON line to ``benchmarks/results/ppo_LunarLander-v3.jsonl``,
then a markdown summary is printed. ``--lucidrl-kwargs`` adds overrides on top of the preset
(e.g. ``'{"normalize_obs": true}'``); they are recorded with each result.

Examples:

    python benchmarks/lunarlander.py                       # seeds 0 1 2, 1M steps
    python benchmarks/lunarlander.py --seeds 0 --timesteps 200000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import code_version, machine, run_worker  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
ENV_ID = "LunarLander-v3"
SOLVED = 200.0


def worker(seed: int, timesteps: int, threads: int, extra: dict) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import gymnasium
    import numpy
    import torch

    import lucidrl

    torch.set_num_threads(threads)
    model = lucidrl.PPO(ENV_ID, seed=seed, verbose=0, **extra)  # the LunarLander-v3 preset
    t0 = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    train_s = time.perf_counter() - t0
    mean, std = lucidrl.evaluate(model, ENV_ID, n_episodes=10, deterministic=True, seed=0)
    print(
        json.dumps(
            {
                "algo": "ppo",
                "library": "lucidrl",
                "env_id": ENV_ID,
                "seed": seed,
                "timesteps": timesteps,
                "num_timesteps": int(model.num_timesteps),
                "preset": model.preset_name,
                "lucidrl_kwargs": extra,
                "train_s": round(train_s, 3),
                "steps_per_s": round(model.num_timesteps / train_s, 1),
                "eval_mean": mean,
                "eval_std": std,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "torch_threads": torch.get_num_threads(),
                "versions": {
                    "lucidrl": lucidrl.__version__,
                    "torch": torch.__version__,
                    "gymnasium": gymnasium.__version__,
                    "numpy": numpy.__version__,
                    "python": platform.python_version(),
                },
            }
        )
    )


def run_one(seed: int, args) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(seed),
        "--timesteps",
        str(args.timesteps),
        "--threads",
        str(args.threads),
        "--lucidrl-kwargs",
        json.dumps(args.lucidrl_kwargs),
    ]
    result, tail = run_worker(cmd)
    if result is None:
        print(f"  seed {seed}: FAILED\n{tail}", file=sys.stderr)
        return {
            "library": "lucidrl",
            "seed": seed,
            "timesteps": args.timesteps,
            "error": tail,
            "lucidrl_kwargs": args.lucidrl_kwargs,
            "torch_threads": args.threads,
        }
    return result


def summarize(results: list[dict]) -> str:
    out = [
        "| seed | steps | train time (s) | steps/s | eval return (mean ± std) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            out.append(f"| {r['seed']} | FAILED | | | | |")
        else:
            out.append(
                f"| {r['seed']} | {r['num_timesteps']} | {r['train_s']:.1f} | {r['steps_per_s']:.0f} | "
                f"{r['eval_mean']:.1f} ± {r['eval_std']:.1f} | {r['peak_rss_mib']:.0f} |"
            )
    ok = [r for r in results if "error" not in r]
    solved = sum(r["eval_mean"] >= SOLVED for r in ok)
    need = math.ceil(2 * len(results) / 3)
    if ok:
        out += [
            "",
            f"median train time {statistics.median(r['train_s'] for r in ok):.1f} s, "
            f"median steps/s {statistics.median(r['steps_per_s'] for r in ok):.0f}",
        ]
    out.append(
        f"lucidrl PPO reached >= {SOLVED:.0f} on {solved}/{len(results)} seeds (needs {need}): "
        f"**{'PASS' if solved >= need else 'FAIL'}**"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--timesteps", type=int, default=1_000_000, help="training steps per run (default 1000000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument(
        "--lucidrl-kwargs",
        type=json.loads,
        default={},
        help="JSON dict of overrides on top of the preset, e.g. '{\"normalize_obs\": true}'",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="JSONL file the results are appended to (default benchmarks/results/ppo_LunarLander-v3.jsonl)",
    )
    p.add_argument("--worker", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not isinstance(args.lucidrl_kwargs, dict):
        p.error("--lucidrl-kwargs must be a JSON object")
    if args.worker is not None:
        worker(args.worker, args.timesteps, args.threads, args.lucidrl_kwargs)
        return 0

    args.results = args.results or RESULTS_DIR / f"ppo_{ENV_ID}.jsonl"
    args.results.parent.mkdir(parents=True, exist_ok=True)
    context = {"machine": machine(), "code": code_version(), "benchmark": "lunarlander"}
    print(
        f"PPO {ENV_ID}: {args.timesteps} steps, seeds {args.seeds}, torch threads {args.threads}, "
        f"overrides {args.lucidrl_kwargs or 'none'}",
        file=sys.stderr,
    )
    results = []
    for seed in args.seeds:
        print(f"  running seed {seed} ...", file=sys.stderr, flush=True)
        r = run_one(seed, args)
        results.append(r)
        record = {"timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **context, **r}
        with args.results.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"  seed {seed}: {r.get('eval_mean', 'FAILED')}", file=sys.stderr, flush=True)
    print(
        f"\nPPO {ENV_ID}, {args.timesteps} steps, torch threads {args.threads}"
        + (f", overrides {json.dumps(args.lucidrl_kwargs)}" if args.lucidrl_kwargs else "")
        + "\n"
    )
    print(summarize(results))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
