"""lucidrl against Stable-Baselines3 / sb3-contrib on CartPole-v1: same hyperparameters, same machine.

``--algo`` picks the algorithm: ``ppo`` (SB3 PPO), ``a2c`` (SB3 A2C), ``dqn`` (SB3 DQN), ``trpo`` (sb3-contrib TRPO),
each with the rl-baselines3-zoo CartPole-v1 hyperparameters (table ``ALGOS`` below); the peer's
defaults fill in the rest, and lucidrl's defaults equal them for the same names. ``vpg`` and
``reinforce`` have no SB3 counterpart: they run lucidrl alone, with its tuned CartPole presets.

What it measures, per (library, seed) run:

* ``train_s``: wall time of ``model.learn(total_timesteps)`` only (``time.perf_counter`` around
  the call; building the model and the envs, and the evaluation, are not counted);
* ``steps_per_s``: ``model.num_timesteps / train_s``;
* ``eval_mean`` / ``eval_std``: return of 10 deterministic episodes on a fresh single
  ``CartPole-v1`` env (lucidrl: ``lucidrl.evaluate(..., seed=0)``; SB3: ``evaluate_policy`` on a
  fresh ``gym.make`` env, Monitor-wrapped and seeded with 0);
* ``peak_rss_mib``: peak resident memory of the worker process (``resource.getrusage``);
* ``load_before``: the 1-minute load average when the run started (on 2 cores, above ~0.5 means
  another job was running); ``run_id``: the start time of the invocation, shared by its rows.
* ``code``: the lucidrl commit measured ("-dirty": the library or the benchmark scripts had uncommitted changes).

How:

* ``--lucidrl-kwargs`` adds lucidrl-only overrides (e.g. ``{"variant": "kl_penalty"}``).
* Every run is a fresh Python process (this script re-invoked in a hidden ``--worker`` mode that
  prints one JSON line), so no run warms caches, JIT or allocators for the next one. The runs
  alternate libraries (lucidrl seed 0, SB3 seed 0, lucidrl seed 1, ...) so slow drift of the
  machine affects both alike. Run nothing else heavy meanwhile.
* ``--threads N`` (default 1) calls ``torch.set_num_threads(N)`` in both libraries' workers (and
  gives lucidrl ``torch_threads=N``); ``--threads default`` calls nothing, so each library runs at
  its own default, as a user's script does (torch: one thread per core; lucidrl: ``torch_threads="auto"``,
  which picks its count inside ``learn``). The setting is recorded with every result.

Every result is appended as one JSON line to ``benchmarks/results/<algo>_cartpole.jsonl`` (with a
timestamp, library versions, thread count and a hostname-free machine description); then a
markdown summary is printed.

Examples:

    python benchmarks/cartpole_vs_sb3.py --algo ppo                # 3 seeds, 100k steps, both libs
    python benchmarks/cartpole_vs_sb3.py --algo a2c
    python benchmarks/cartpole_vs_sb3.py --algo dqn --timesteps 50000   # the zoo's DQN budget
    python benchmarks/cartpole_vs_sb3.py --algo ppo --only lucidrl --lucidrl-kwargs '{"variant": "kl_penalty"}'
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
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
ENV_ID = "CartPole-v1"
SOLVED = 475.0
LIBS = ("lucidrl", "sb3")

# rl-baselines3-zoo CartPole-v1 hyperparameters (hyperparams/<algo>.yml). "linear" entries decay
# linearly to 0 (zoo's lin_<x>): lucidrl.linear(x) and SB3's callable of the remaining progress.
ALGOS = {
    "ppo": {
        "lucidrl": "PPO",
        "peer": ("stable_baselines3", "PPO"),
        "hyperparams": dict(
            n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0
        ),
        "linear": {"learning_rate": 1e-3, "clip_range": 0.2},
    },
    "a2c": {
        "lucidrl": "A2C",
        "peer": ("stable_baselines3", "A2C"),
        "hyperparams": dict(n_envs=8, ent_coef=0.0),
        "linear": {},
    },
    # no SB3 counterpart: lucidrl only, with its own tuned presets (lucidrl/presets/vpg.yaml, reinforce.yaml)
    "vpg": {
        "lucidrl": "VPG",
        "peer": None,
        "hyperparams": dict(
            n_envs=8,
            n_steps=250,
            psi="gae",
            learning_rate=3e-3,
            critic_learning_rate=3e-3,
            n_critic_updates=20,
            gamma=0.99,
            gae_lambda=0.97,
        ),
        "linear": {},
    },
    "reinforce": {
        "lucidrl": "REINFORCE",
        "peer": None,
        "hyperparams": dict(n_envs=8, n_steps=250, psi="reward_to_go", learning_rate=3e-3, gamma=0.99),
        "linear": {},
    },
    "dqn": {
        "lucidrl": "DQN",
        "peer": ("stable_baselines3", "DQN"),
        "hyperparams": dict(
            n_envs=1,
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100_000,
            learning_starts=1000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
        ),
        "policy_kwargs": {"net_arch": [256, 256]},  # lucidrl: net_arch=[256, 256]; SB3: policy_kwargs
        "linear": {},
    },
    "trpo": {
        "lucidrl": "TRPO",
        "peer": ("sb3_contrib", "TRPO"),
        "hyperparams": dict(
            n_envs=2,
            n_steps=512,
            batch_size=512,
            cg_damping=1e-3,
            gae_lambda=0.98,
            gamma=0.99,
            learning_rate=1e-3,
            n_critic_updates=20,
        ),
        "linear": {},
    },
}


# --------------------------------------------------------------------------------------------
# Worker: one training run in this process, one JSON line on stdout.
# --------------------------------------------------------------------------------------------


def _train_lucidrl(algo: str, seed: int, timesteps: int, extra: dict):
    import lucidrl

    spec = ALGOS[algo]
    schedules = {k: lucidrl.linear(v) for k, v in spec["linear"].items()}
    model = getattr(lucidrl, spec["lucidrl"])(
        ENV_ID,
        seed=seed,
        verbose=0,
        preset=False,
        **spec["hyperparams"],
        **spec.get("policy_kwargs", {}),
        **schedules,
        **extra,
    )
    t0 = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    train_s = time.perf_counter() - t0
    mean, std = lucidrl.evaluate(model, ENV_ID, n_episodes=10, deterministic=True, seed=0)
    return model.num_timesteps, train_s, mean, std, {"lucidrl": lucidrl.__version__}


def _train_sb3(algo: str, seed: int, timesteps: int, extra: dict):
    import importlib

    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    if extra:
        raise SystemExit("--lucidrl-kwargs do not apply to SB3")
    spec = ALGOS[algo]
    package, cls_name = spec["peer"]
    module = importlib.import_module(package)
    hp = dict(spec["hyperparams"])
    env = make_vec_env(ENV_ID, n_envs=hp.pop("n_envs"), seed=seed)
    schedules = {k: (lambda p, v=v: p * v) for k, v in spec["linear"].items()}
    if spec.get("policy_kwargs"):
        hp["policy_kwargs"] = spec["policy_kwargs"]
    model = getattr(module, cls_name)("MlpPolicy", env, **hp, **schedules, device="cpu", seed=seed, verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    train_s = time.perf_counter() - t0
    eval_env = DummyVecEnv([lambda: Monitor(gym.make(ENV_ID))])
    eval_env.seed(0)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return model.num_timesteps, train_s, float(mean), float(std), {package: module.__version__}


def worker(algo: str, lib: str, seed: int, timesteps: int, threads: str, extra: dict) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import gymnasium
    import numpy
    import torch

    if lib != "lucidrl":
        extra = {}  # --lucidrl-kwargs are lucidrl's alone
    if threads != "default":  # pinned for both; "default": each library as a user's script gets it
        torch.set_num_threads(int(threads))
        if lib == "lucidrl":
            extra = {"torch_threads": int(threads), **extra}
    train = _train_lucidrl if lib == "lucidrl" else _train_sb3
    num_timesteps, train_s, mean, std, lib_version = train(algo, seed, timesteps, extra)
    print(
        json.dumps(
            {
                "algo": algo,
                "library": lib,
                "seed": seed,
                "timesteps": timesteps,
                "num_timesteps": int(num_timesteps),
                "lucidrl_kwargs": extra if lib == "lucidrl" else {},
                "train_s": round(train_s, 3),
                "steps_per_s": round(num_timesteps / train_s, 1),
                "eval_mean": mean,
                "eval_std": std,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "threads_setting": threads,
                "torch_threads": torch.get_num_threads(),
                "versions": {
                    **lib_version,
                    "torch": torch.__version__,
                    "gymnasium": gymnasium.__version__,
                    "numpy": numpy.__version__,
                    "python": platform.python_version(),
                },
            }
        )
    )


# --------------------------------------------------------------------------------------------
# Parent: schedule the runs, record them, print the summary.
# --------------------------------------------------------------------------------------------


def run_one(lib: str, seed: int, args) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--algo",
        args.algo,
        "--worker",
        lib,
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
        print(f"  {lib} seed {seed}: FAILED\n{tail}", file=sys.stderr)
        return {
            "library": lib,
            "seed": seed,
            "timesteps": args.timesteps,
            "error": tail,
            "lucidrl_kwargs": args.lucidrl_kwargs if lib == "lucidrl" else {},
            "torch_threads": args.threads,
        }
    return result


def summarize(results: list[dict], libs: list[str]) -> str:
    out = [
        "| library | seed | train time (s) | steps/s | eval return (mean ± std) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            out.append(f"| {r['library']} | {r['seed']} | FAILED | | | |")
        else:
            out.append(
                f"| {r['library']} | {r['seed']} | {r['train_s']:.1f} | {r['steps_per_s']:.0f} | "
                f"{r['eval_mean']:.1f} ± {r['eval_std']:.1f} | {r['peak_rss_mib']:.0f} |"
            )
    out += ["", "| library | median train time (s) | median steps/s | seeds with return >= 475 |", "|---|---|---|---|"]
    medians = {}
    for lib in libs:
        ok = [r for r in results if r["library"] == lib and "error" not in r]
        n = sum(1 for r in results if r["library"] == lib)
        if not ok:
            out.append(f"| {lib} | - | - | 0/{n} |")
            continue
        medians[lib] = statistics.median(r["train_s"] for r in ok)
        solved = sum(r["eval_mean"] >= SOLVED for r in ok)
        out.append(
            f"| {lib} | {medians[lib]:.1f} | {statistics.median(r['steps_per_s'] for r in ok):.0f} | {solved}/{n} |"
        )
    out.append("")
    if "lucidrl" in medians and "sb3" in medians:
        out.append(
            f"median time ratio lucidrl / sb3: **{medians['lucidrl'] / medians['sb3']:.2f}** (< 1: lucidrl is faster)"
        )
    if "lucidrl" in libs:
        runs = [r for r in results if r["library"] == "lucidrl"]
        solved = sum("error" not in r and r["eval_mean"] >= SOLVED for r in runs)
        need = math.ceil(2 * len(runs) / 3)
        out.append(
            f"lucidrl reached >= {SOLVED:.0f} on {solved}/{len(runs)} seeds (needs {need}): "
            f"**{'PASS' if solved >= need else 'FAIL'}**"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--algo", choices=sorted(ALGOS), default="ppo", help="algorithm (default ppo)")
    p.add_argument("--timesteps", type=int, default=100_000, help="training steps per run (default 100000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument(
        "--threads",
        default="1",
        help="N: torch.set_num_threads(N) for both libraries; 'default': neither sets anything (default 1)",
    )
    p.add_argument("--only", choices=LIBS, help="run one library only")
    p.add_argument(
        "--lucidrl-kwargs",
        type=json.loads,
        default={},
        help='JSON dict of extra lucidrl arguments, e.g. \'{"variant": "kl_penalty"}\'',
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="JSONL file the results are appended to (default benchmarks/results/ALGO_cartpole.jsonl)",
    )
    p.add_argument("--worker", nargs=2, metavar=("LIB", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not isinstance(args.lucidrl_kwargs, dict):
        p.error("--lucidrl-kwargs must be a JSON object")
    if args.threads != "default" and not args.threads.isdigit():
        p.error(f"--threads takes a number or 'default', got {args.threads!r}")

    if args.worker:
        lib, seed = args.worker
        if lib not in LIBS:
            p.error(f"unknown library {lib!r}")
        worker(args.algo, lib, int(seed), args.timesteps, args.threads, args.lucidrl_kwargs)
        return 0

    libs = [args.only] if args.only else [lib for lib in LIBS if lib == "lucidrl" or ALGOS[args.algo]["peer"]]
    args.results = args.results or RESULTS_DIR / f"{args.algo}_cartpole.jsonl"
    args.results.parent.mkdir(parents=True, exist_ok=True)
    run_id = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")  # groups the rows of this invocation
    context = {
        "machine": machine(),
        "code": code_version(),
        "benchmark": "cartpole_vs_sb3",
        "env_id": ENV_ID,
        "run_id": run_id,
    }
    print(
        f"{args.algo.upper()} {ENV_ID}: {args.timesteps} steps, seeds {args.seeds}, libraries {libs}, "
        f"torch threads {args.threads}, lucidrl extra kwargs {args.lucidrl_kwargs or 'none'}",
        file=sys.stderr,
    )
    results = []
    for seed in args.seeds:
        for lib in libs:
            print(f"  running {lib} seed {seed} ...", file=sys.stderr, flush=True)
            load_before = round(os.getloadavg()[0], 2)
            r = run_one(lib, seed, args)
            results.append(r)
            record = {
                "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                **context,
                "load_before": load_before,
                **r,
            }
            with args.results.open("a") as f:
                f.write(json.dumps(record) + "\n")

    print(
        f"\n{args.algo.upper()} {ENV_ID}, {args.timesteps} steps, torch threads {args.threads}"
        + (f", lucidrl kwargs {json.dumps(args.lucidrl_kwargs)}" if args.lucidrl_kwargs else "")
        + "\n"
    )
    print(summarize(results, libs))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
