"""Benchmark harness: lucidrl against Stable-Baselines3 2.9.x / sb3-contrib over a grid of (algorithm, env).

The grid is data: ``benchmarks/grid.yaml`` names, per (algorithm, env) cell, the peer library (if
any has the algorithm), the budget and where the hyperparameters come from, and the published
reference returns. One command runs it; ``benchmarks/report.py`` turns the results into
``docs/benchmarks.md`` and the figures under ``docs/benchmarks/``.

Same hyperparameters: the lucidrl run uses lucidrl's preset for the env (or its documented
defaults where a cell says ``hyperparams: default``); the peer gets that *resolved* lucidrl
config translated field by field (``sb3_arguments``): every config field that is also an argument
of the peer's constructor is passed with lucidrl's value (``lin_x`` schedules become SB3's
callable of the remaining progress), ``net_arch``/``activation``/``ortho_init``/``log_std_init``/
``adam_eps`` go into ``policy_kwargs``, ``n_envs`` to ``make_vec_env``, and ``normalize_obs``/
``normalize_reward``/``clip_*`` to SB3's ``VecNormalize`` (with the algorithm's γ, as the zoo
does). A lucidrl-only field with a value other than lucidrl's default (e.g. ``double_q=True``)
would make the runs differ: such a cell is refused for the peer.

What each run records (one JSON line in ``benchmarks/results/harness.jsonl``):

* ``train_s``: wall time of ``learn(budget)`` alone (``time.perf_counter`` around the call);
* ``steps_per_s``: env steps taken by ``learn`` / ``train_s`` (env steps: one per sub-env per
  vector step, as ``time/steps_per_second`` in lucidrl's logs and ``time/fps`` in SB3's);
* ``peak_rss_mib``: peak resident memory of the run's process (``resource.getrusage``);
* ``eval_mean`` / ``eval_std`` / ``eval_returns``: 10 deterministic episodes after training on a
  fresh single env, episode ``i`` reset with seed ``i``, on the raw rewards (observation
  normalisation, where used, applied with its frozen statistics);
* ``curve``: the learning curve, ``[env steps, mean return of the last 100 training episodes]``
  pairs (lucidrl: ``rollout/episode_return`` of the run directory's ``metrics.csv``; SB3: the
  Monitor episode buffer ``ep_info_buffer`` after each rollout), thinned to at most 200 points;
* ``load_before`` / ``load_after``: the 1/5/15-minute load averages (as ``uptime`` prints them)
  when the run started and ended: timings taken on a loaded machine are not speed claims;
* versions, torch threads, the hyperparameters as given to each library.

Runs alternate libraries (lucidrl seed 0, peer seed 0, lucidrl seed 1, ...) so slow drift of the
machine affects both alike, and each runs in a fresh Python process (this file in a hidden
``--worker`` mode) with one torch thread.

Examples:

    python benchmarks/harness.py --list                                # the grid, with budgets
    python benchmarks/harness.py                                       # everything, 3 seeds
    python benchmarks/harness.py --envs CartPole-v1 --algos ppo a2c dqn trpo --seeds 0 1 2
    python benchmarks/harness.py --envs Acrobot-v1 --algos a2c --libs lucidrl
    python benchmarks/report.py                                        # docs/benchmarks.md + PNGs
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import inspect
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import code_version, machine, run_worker  # noqa: E402

GRID = ROOT / "benchmarks" / "grid.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "harness.jsonl"
PEERS = {  # lucidrl algorithm -> (peer label, module, class)
    "ppo": ("sb3", "stable_baselines3", "PPO"),
    "a2c": ("sb3", "stable_baselines3", "A2C"),
    "dqn": ("sb3", "stable_baselines3", "DQN"),
    "trpo": ("sb3_contrib", "sb3_contrib", "TRPO"),
}
EVAL_EPISODES = 10
MAX_CURVE_POINTS = 200
# lucidrl config fields handled outside the generic name match (or meaningless for the peer)
_SPECIAL = {
    "n_envs",
    "seed",
    "device",
    "net_arch",
    "activation",
    "ortho_init",
    "log_std_init",
    "adam_eps",
    "normalize_obs",
    "normalize_reward",
    "clip_obs",
    "clip_reward",
    "shared_trunk",
    "rms_prop_alpha",
}


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------


def load_grid(path: Path = GRID) -> list[dict[str, Any]]:
    """The cells of the grid, each with its budget resolved to a number and its preset named."""
    import yaml

    from lucidrl.config import get_preset, preset_for_env

    cells = yaml.safe_load(Path(path).read_text())["cells"]
    out = []
    for c in cells:
        c = dict(c)
        preset = preset_for_env(c["algo"], c["env"]) if c.get("hyperparams", "preset") == "preset" else None
        if c.get("hyperparams", "preset") == "preset" and preset is None:
            raise SystemExit(
                f"{path}: {c['algo']} on {c['env']} says hyperparams: preset, but lucidrl has no "
                f"{c['algo']} preset for {c['env']}; add one or write hyperparams: default"
            )
        c["preset"] = preset
        if c.get("budget", "preset") == "preset":
            if preset is None:
                raise SystemExit(f"{path}: {c['algo']} on {c['env']}: budget: preset needs a preset")
            c["budget"] = int(get_preset(c["algo"], preset)["n_timesteps"])
        c["budget"] = int(c["budget"])
        if c.get("peer") and c["algo"] not in PEERS:
            raise SystemExit(f"{path}: no peer is known for {c['algo']}")
        c.setdefault("reference", [])
        out.append(c)
    return out


# --------------------------------------------------------------------------------------------
# lucidrl config -> SB3 arguments
# --------------------------------------------------------------------------------------------


def _schedule_for_sb3(value):
    from lucidrl.config import LinearSchedule

    if isinstance(value, LinearSchedule):
        return value  # already what SB3 wants: a function of the remaining progress (1 -> 0)
    if callable(value):
        raise SystemExit(f"cannot translate the custom schedule {value!r} for the peer")
    return value


def sb3_arguments(algo: str, config) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(constructor kwargs, ``make_vec_env`` kwargs, ``VecNormalize`` kwargs or None) for the peer.

    Every field of lucidrl's resolved ``config`` that is also an argument of the peer's constructor
    is passed unchanged (schedules translated); the network fields go into ``policy_kwargs``.
    """
    import importlib

    import torch

    _, module, cls_name = PEERS[algo]
    cls = getattr(importlib.import_module(module), cls_name)
    params = inspect.signature(cls.__init__).parameters
    defaults = type(config)()
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in _SPECIAL:
            continue
        if f.name in params:
            kwargs[f.name] = _schedule_for_sb3(value)
        elif value != getattr(defaults, f.name):
            raise SystemExit(
                f"{algo}: lucidrl's {f.name}={value!r} has no counterpart in {module}.{cls_name}; "
                "the runs would not use the same method"
            )
    if getattr(config, "shared_trunk", False):
        raise SystemExit(f"{algo}: shared_trunk=True has no counterpart in SB3 2.x (separate pi and vf networks)")
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU}[config.activation]
    policy_kwargs: dict[str, Any] = {"activation_fn": act}
    if algo == "dqn":
        policy_kwargs["net_arch"] = list(config.net_arch)
    else:
        policy_kwargs["net_arch"] = dict(pi=list(config.net_arch), vf=list(config.net_arch))
        policy_kwargs["ortho_init"] = config.ortho_init
        policy_kwargs["log_std_init"] = config.log_std_init
        if hasattr(config, "adam_eps"):
            policy_kwargs["optimizer_kwargs"] = {"eps": config.adam_eps}
        if algo == "a2c" and (config.rms_prop_alpha != 0.99 or not config.use_rms_prop):
            # SB3's A2C fixes RMSprop's alpha at 0.99 and, without RMSprop, uses its own Adam settings
            raise SystemExit("a2c: only use_rms_prop=True with rms_prop_alpha=0.99 has an exact SB3 counterpart")
    kwargs["policy_kwargs"] = policy_kwargs
    vec = {"n_envs": config.n_envs}
    norm = None
    if getattr(config, "normalize_obs", False) or getattr(config, "normalize_reward", False):
        norm = dict(
            norm_obs=config.normalize_obs,
            norm_reward=config.normalize_reward,
            clip_obs=config.clip_obs,
            clip_reward=config.clip_reward,
            gamma=config.gamma,
        )
    return kwargs, vec, norm


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = _jsonable(v)
        elif isinstance(v, type):
            out[k] = v.__name__
        elif callable(v):
            out[k] = repr(v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------
# Worker: one training run in this process, one JSON line on stdout
# --------------------------------------------------------------------------------------------


def _thin(points: list[tuple[float, float]]) -> list[list[float]]:
    if len(points) > MAX_CURVE_POINTS:
        idx = sorted({round(i * (len(points) - 1) / (MAX_CURVE_POINTS - 1)) for i in range(MAX_CURVE_POINTS)})
        points = [points[i] for i in idx]
    return [[int(s), round(float(r), 3)] for s, r in points]


def _lucidrl_config(algo: str, env_id: str, seed: int, hyperparams: str):
    from lucidrl.agent import ALGORITHMS

    return ALGORITHMS[algo](env_id, seed=seed, verbose=0, preset=(hyperparams == "preset"))


def train_lucidrl(algo: str, env_id: str, seed: int, budget: int, hyperparams: str, run_dir: str) -> dict:
    import lucidrl
    from lucidrl.agent import ALGORITHMS
    from lucidrl.config import config_to_dict
    from lucidrl.errors import LucidRLError
    from lucidrl.plotting import load_curve

    model = ALGORITHMS[algo](
        env_id, seed=seed, verbose=0, preset=(hyperparams == "preset"), run_dir=run_dir, tensorboard=False
    )
    t0 = time.perf_counter()
    model.learn(budget)
    train_s = time.perf_counter() - t0
    returns = lucidrl.evaluate(
        model, n_episodes=EVAL_EPISODES, deterministic=True, seed=0, return_episode_returns=True
    )[2]
    try:
        steps, values = load_curve(run_dir)
    except LucidRLError:  # no episode finished during training
        steps, values = [], []
    return {
        "num_timesteps": int(model.num_timesteps),
        "train_s": train_s,
        "eval_returns": returns,
        "curve": _thin(list(zip(steps, values))),
        "hyperparams": config_to_dict(model.config),
        "preset": model.preset_name,
        "versions": {"lucidrl": lucidrl.__version__},
    }


def train_peer(algo: str, env_id: str, seed: int, budget: int, hyperparams: str) -> dict:
    import importlib

    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    config = _lucidrl_config(algo, env_id, seed, hyperparams).config
    kwargs, vec, norm = sb3_arguments(algo, config)
    _, module_name, cls_name = PEERS[algo]
    module = importlib.import_module(module_name)
    env = make_vec_env(env_id, seed=seed, **vec)  # Monitor inside: episode returns are raw
    if norm is not None:
        env = VecNormalize(env, **norm)

    class Curve(BaseCallback):
        def __init__(self):
            super().__init__()
            self.points: list[tuple[int, float]] = []

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            buf = self.model.ep_info_buffer  # the last 100 Monitor episodes
            if buf:
                self.points.append((self.model.num_timesteps, float(np.mean([e["r"] for e in buf]))))

    model = getattr(module, cls_name)("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
    curve = Curve()
    t0 = time.perf_counter()
    model.learn(budget, callback=curve)
    train_s = time.perf_counter() - t0
    venv = model.get_env()
    if isinstance(venv, VecNormalize):
        venv.training = False
    e, returns = gym.make(env_id), []
    for i in range(EVAL_EPISODES):  # as lucidrl.evaluate: episode i reset with seed i, raw rewards
        obs, _ = e.reset(seed=i)
        done, total = False, 0.0
        while not done:
            o = venv.normalize_obs(obs[None]) if isinstance(venv, VecNormalize) else obs[None]
            action, _ = model.predict(o, deterministic=True)
            obs, r, term, trunc, _ = e.step(action[0])
            total += float(r)
            done = term or trunc
        returns.append(total)
    e.close()
    return {
        "num_timesteps": int(model.num_timesteps),
        "train_s": train_s,
        "eval_returns": returns,
        "curve": _thin(curve.points),
        "hyperparams": _jsonable({**kwargs, **vec, "vec_normalize": norm}),
        "preset": None,
        "versions": {module_name: module.__version__},
    }


def worker(algo: str, env_id: str, lib: str, seed: int, budget: int, hyperparams: str, run_dir: str) -> None:
    import gymnasium
    import numpy as np
    import torch

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    load_before = list(os.getloadavg())
    if lib == "lucidrl":
        r = train_lucidrl(algo, env_id, seed, budget, hyperparams, run_dir)
    else:
        r = train_peer(algo, env_id, seed, budget, hyperparams)
    returns = r.pop("eval_returns")
    n, train_s = r.pop("num_timesteps"), r.pop("train_s")
    print(
        json.dumps(
            {
                "algo": algo,
                "env": env_id,
                "library": lib,
                "seed": seed,
                "budget": budget,
                "num_timesteps": n,
                "train_s": round(train_s, 3),
                "steps_per_s": round(n / train_s, 1),
                **r,
                "eval_mean": float(np.mean(returns)),
                "eval_std": float(np.std(returns)),
                "eval_returns": [round(x, 3) for x in returns],
                "eval_episodes": EVAL_EPISODES,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "torch_threads": torch.get_num_threads(),
                "load_before": load_before,
                "load_after": list(os.getloadavg()),
                "versions_common": {
                    "torch": torch.__version__,
                    "gymnasium": gymnasium.__version__,
                    "numpy": np.__version__,
                    "python": platform.python_version(),
                },
            }
        )
    )


# --------------------------------------------------------------------------------------------
# Parent: schedule the runs, append the results
# --------------------------------------------------------------------------------------------


def run_one(cell: dict, lib: str, seed: int, budget: int, run_root: Path, timeout: float | None) -> dict:
    run_dir = run_root / f"{cell['algo']}-{cell['env']}-s{seed}-{int(time.time() * 1000)}"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        cell["algo"],
        cell["env"],
        lib,
        str(seed),
        str(budget),
        cell.get("hyperparams", "preset"),
        str(run_dir),
    ]
    r, why = run_worker(cmd, timeout, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if r is None:
        return {"error": why}
    r["run_dir"] = (
        str(run_dir.relative_to(ROOT))
        if lib == "lucidrl" and run_dir.is_relative_to(ROOT)
        else (str(run_dir) if lib == "lucidrl" else None)
    )
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--grid", type=Path, default=GRID, help="grid file (default benchmarks/grid.yaml)")
    p.add_argument("--results", type=Path, default=RESULTS, help="JSONL file the rows are appended to")
    p.add_argument("--algos", nargs="+", help="only these algorithms")
    p.add_argument("--envs", nargs="+", help="only these env ids")
    p.add_argument(
        "--libs",
        nargs="+",
        choices=["lucidrl", "peer"],
        default=["lucidrl", "peer"],
        help="lucidrl, the peer (SB3 / sb3-contrib), or both (default)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument("--timesteps", type=int, help="override every cell's budget (tests, smoke runs)")
    p.add_argument(
        "--run-root",
        type=Path,
        default=ROOT / "benchmarks" / "runs",
        help="where lucidrl's run directories go (metrics.csv, model)",
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds after which one run is abandoned")
    p.add_argument("--list", action="store_true", help="print the grid and exit")
    p.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if args.worker:
        algo, env_id, lib, seed, budget, hp, run_dir = args.worker
        worker(algo, env_id, lib, int(seed), int(budget), hp, run_dir)
        return 0

    cells = [
        c
        for c in load_grid(args.grid)
        if (not args.algos or c["algo"] in args.algos) and (not args.envs or c["env"] in args.envs)
    ]
    if args.list or not cells:
        for c in cells:
            print(
                f"{c['algo']:10s} {c['env']:16s} budget {c['budget']:>8d}  peer {c.get('peer') or '-':12s} "
                f"hyperparams {c.get('preset') or 'lucidrl defaults'}"
            )
        if not cells:
            print("no cell matches --algos/--envs", file=sys.stderr)
        return 0 if cells else 2
    args.results.parent.mkdir(parents=True, exist_ok=True)
    context = {"machine": machine(), "code": code_version(), "grid": str(args.grid.name)}
    failed = 0
    for c in cells:
        budget = args.timesteps or c["budget"]
        libs = [lib if lib == "lucidrl" else c["peer"] for lib in args.libs if lib == "lucidrl" or c.get("peer")]
        print(f"{c['algo']} {c['env']}: {budget} steps, seeds {args.seeds}, {libs}", file=sys.stderr, flush=True)
        for seed in args.seeds:
            for lib in libs:  # alternate libraries seed by seed
                stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
                r = run_one(c, lib, seed, budget, args.run_root, args.timeout)
                row = {
                    "timestamp": stamp,
                    **context,
                    "algo": c["algo"],
                    "env": c["env"],
                    "library": lib,
                    "seed": seed,
                    "budget": budget,
                    "full_budget": budget == c["budget"],
                    "hyperparams_source": c.get("preset") and f"lucidrl preset {c['preset']!r}" or "lucidrl defaults",
                    **r,
                }
                with args.results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                if "error" in r:
                    failed += 1
                    print(f"  {lib} seed {seed}: FAILED\n{r['error']}", file=sys.stderr, flush=True)
                else:
                    print(
                        f"  {lib:11s} seed {seed}: return {r['eval_mean']:8.1f} ± {r['eval_std']:6.1f}  "
                        f"{r['train_s']:7.1f} s  {r['steps_per_s']:8.0f} steps/s  load {r['load_before'][0]:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
