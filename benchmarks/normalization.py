"""With and without normalisation: the same algorithm, preset and seed, ``normalize_obs``/``normalize_reward``
on and off.

Each run is a fresh Python process (this script re-invoked in a hidden ``--worker`` mode that
prints one JSON line); runs go one after another. A run builds ``lucidrl.<ALGO>(env, seed=s)``
from the env's preset, with normalisation as the preset has it (``preset``) and with both
switches overridden off (``off``) or on (``on``), trains ``--timesteps`` steps and evaluates 10
deterministic episodes with ``lucidrl.evaluate(model, env, n_episodes=10, deterministic=True,
seed=0)`` (raw returns, statistics frozen). Results are appended to
``benchmarks/results/normalization.jsonl``; a markdown table is printed.

Examples:

    python benchmarks/normalization.py --algo ppo --env MountainCar-v0 --timesteps 1000000
    python benchmarks/normalization.py --algo a2c --env Acrobot-v1 --timesteps 500000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import run_worker  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "normalization.jsonl"
SETTINGS = {
    "preset": {},
    "off": {"normalize_obs": False, "normalize_reward": False},
    "on": {"normalize_obs": True, "normalize_reward": True},
}


def worker(algo: str, env: str, seed: int, timesteps: int, setting: str) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import torch

    import lucidrl

    torch.set_num_threads(1)
    model = getattr(lucidrl, algo.upper())(env, seed=seed, verbose=0, **SETTINGS[setting])
    t0 = time.perf_counter()
    model.learn(timesteps)
    train_s = time.perf_counter() - t0
    mean, std = lucidrl.evaluate(model, env, n_episodes=10, deterministic=True, seed=0)
    print(
        json.dumps(
            {
                "algo": algo,
                "env_id": env,
                "seed": seed,
                "setting": setting,
                "preset": model.preset_name,
                "num_timesteps": model.num_timesteps,
                "normalize_obs": model.config.normalize_obs,
                "normalize_reward": model.config.normalize_reward,
                "train_s": round(train_s, 2),
                "eval_mean": mean,
                "eval_std": std,
                "lucidrl": lucidrl.__version__,
                "torch_threads": 1,
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", default="ppo", choices=["ppo", "a2c", "vpg", "trpo"])
    p.add_argument("--env", default="MountainCar-v0")
    p.add_argument("--timesteps", type=int, default=1_000_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--settings", nargs="+", default=["preset", "off"], choices=sorted(SETTINGS))
    p.add_argument("--worker", nargs=2, metavar=("SEED", "SETTING"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.algo, args.env, int(args.worker[0]), args.timesteps, args.worker[1])
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    rows, failed = [], False
    for seed in args.seeds:
        for setting in args.settings:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--algo",
                args.algo,
                "--env",
                args.env,
                "--timesteps",
                str(args.timesteps),
                "--worker",
                str(seed),
                setting,
            ]
            r, why = run_worker(cmd)
            if r is None:
                print(f"seed {seed} {setting}: FAILED\n{why}", file=sys.stderr)
                failed = True
                continue
            rows.append(r)
            with RESULTS.open("a") as f:
                f.write(
                    json.dumps(
                        {
                            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                            "benchmark": "normalization",
                            **r,
                        }
                    )
                    + "\n"
                )
            print(f"  seed {seed} {setting}: {r['eval_mean']:.1f}", file=sys.stderr, flush=True)
    print(f"\n{args.algo.upper()} {args.env}, {args.timesteps} steps\n")
    print("| seed | setting | normalize_obs | normalize_reward | eval return (mean ± std) | train time (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['setting']} | {r['normalize_obs']} | {r['normalize_reward']} | "
            f"{r['eval_mean']:.1f} ± {r['eval_std']:.1f} | {r['train_s']:.1f} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
