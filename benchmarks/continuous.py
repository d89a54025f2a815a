"""lucidrl alone on one env (continuous control, or any other): returns and speed per seed.

``--algo`` (ppo, a2c, vpg, trpo, reinforce) and ``--env`` (default Pendulum-v1) pick the run; lucidrl's
preset for that (algorithm, env) is the configuration (``lucidrl/presets/<algo>.yaml``, whose
``source`` line names where it comes from), with ``--lucidrl-kwargs`` on top.

What it measures, per seed (the same definitions as ``benchmarks/cartpole_vs_sb3.py``):

* ``train_s``: wall time of ``model.learn(total_timesteps)`` only;
* ``steps_per_s``: ``model.num_timesteps / train_s``;
* ``eval_mean`` / ``eval_std``: return of 10 deterministic episodes on a fresh single env
  (``lucidrl.evaluate(model, n_episodes=10, deterministic=True, seed=0)``);
* ``peak_rss_mib``: peak resident memory of the worker process.

Every run is a fresh Python process (this script re-invoked in a hidden ``--worker`` mode that
prints one JSON line); ``torch.set_num_threads(--threads)`` (default 1). Each result is appended
as one JSON line to ``benchmarks/results/<algo>_<env>.jsonl``; then a markdown summary is printed.

Examples:

    python benchmarks/continuous.py --algo ppo --env Pendulum-v1 --timesteps 300000 --seeds 0 1 2
    python benchmarks/continuous.py --algo trpo --env Pendulum-v1 --timesteps 300000 --seeds 0 1 2
    python benchmarks/continuous.py --algo ppo --env LunarLander-v3 --timesteps 1000000   # its bar: >= 200

(``benchmarks/harness.py`` trains lucidrl beside SB3 over a grid of envs; this script is for one env, alone.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import code_version, machine, run_worker  # noqa: E402

ALGOS = {"ppo": "PPO", "a2c": "A2C", "vpg": "VPG", "trpo": "TRPO", "reinforce": "REINFORCE"}
# issue 5 (continuous control): Pendulum >= -250 within 300k steps (PPO, TRPO), LunarLander >= 200 within 1M steps
# (PPO), each on at least 2 of 3 seeds
BARS = {"Pendulum-v1": -250.0, "LunarLander-v3": 200.0}


def worker(algo: str, env_id: str, seed: int, timesteps: int, threads: int, extra: dict) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import gymnasium
    import numpy
    import torch

    torch.set_num_threads(threads)
    import lucidrl

    model = getattr(lucidrl, ALGOS[algo])(env_id, seed=seed, verbose=0, **extra)
    t0 = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    train_s = time.perf_counter() - t0
    mean, std = lucidrl.evaluate(model, env_id, n_episodes=10, deterministic=True, seed=0)
    print(
        json.dumps(
            {
                "algo": algo,
                "library": "lucidrl",
                "env": env_id,
                "seed": seed,
                "timesteps": timesteps,
                "num_timesteps": int(model.num_timesteps),
                "preset": model.preset_name,
                "preset_source": model.preset_source,
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
        "--algo",
        args.algo,
        "--env",
        args.env,
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
            "algo": args.algo,
            "env": args.env,
            "seed": seed,
            "timesteps": args.timesteps,
            "error": tail,
            "lucidrl_kwargs": args.lucidrl_kwargs,
            "torch_threads": args.threads,
        }
    return result


def summarize(results: list[dict], env_id: str) -> str:
    out = [
        "| algo | env | seed | steps | train time (s) | steps/s | eval return (mean ± std, 10 det. episodes) "
        "| peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            out.append(f"| {r['algo']} | {r['env']} | {r['seed']} | | FAILED | | | |")
        else:
            out.append(
                f"| {r['algo']} | {r['env']} | {r['seed']} | {r['num_timesteps']} | {r['train_s']:.1f} | "
                f"{r['steps_per_s']:.0f} | {r['eval_mean']:.1f} ± {r['eval_std']:.1f} | {r['peak_rss_mib']:.0f} |"
            )
    ok = [r for r in results if "error" not in r]
    if ok:
        out.append("")
        out.append(
            f"median train time {statistics.median(r['train_s'] for r in ok):.1f} s, median steps/s "
            f"{statistics.median(r['steps_per_s'] for r in ok):.0f}; eval returns "
            + ", ".join(f"{r['eval_mean']:.1f}" for r in ok)
        )
        if env_id in BARS:
            n = sum(r["eval_mean"] >= BARS[env_id] for r in ok)
            out.append(f"bar >= {BARS[env_id]:g}: met by {n} of {len(results)} seeds")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algo", choices=sorted(ALGOS), required=True)
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--timesteps", type=int, default=300_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--lucidrl-kwargs",
        type=json.loads,
        default={},
        help="JSON object of overrides on top of the preset, e.g. '{\"normalize_obs\": true}'",
    )
    p.add_argument(
        "--results", type=Path, default=None, help="JSONL file to append to (default: results/ALGO_ENV.jsonl)"
    )
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if not isinstance(args.lucidrl_kwargs, dict):
        p.error("--lucidrl-kwargs must be a JSON object")
    if args.worker is not None:
        worker(args.algo, args.env, args.worker, args.timesteps, args.threads, args.lucidrl_kwargs)
        return
    path = args.results or RESULTS_DIR / f"{args.algo}_{args.env}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results = []
    for seed in args.seeds:
        r = run_one(seed, args)
        r.update({"time": stamp, "machine": machine(), "code": code_version()})
        results.append(r)
        with path.open("a") as f:
            f.write(json.dumps(r) + "\n")
        if "error" not in r:
            print(
                f"  {args.algo} {args.env} seed {seed}: {r['eval_mean']:.1f} ± {r['eval_std']:.1f} "
                f"in {r['train_s']:.1f} s",
                flush=True,
            )
    print(summarize(results, args.env))
    print(f"\nappended to {path}")


if __name__ == "__main__":
    main()
