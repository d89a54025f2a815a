"""PPO where the fast backend once fell back to the reference: ``backend="auto"`` against ``"reference"``.

Until the fast backend took one-hot observations and MultiDiscrete / MultiBinary actions (``lucidrl.fast.inputs``,
``lucidrl.fast.heads``), PPO's value clipping, ``target_kl`` and PPO-Penalty (``lucidrl.fast.actor_critic``) and
ELU networks (``lucidrl.fast.mlp``), ``backend="auto"`` fell back to the reference on them, so ``reference`` is
the "before" and ``auto`` the "after".
Each run is a fresh Python process (this script re-invoked in a hidden ``--worker`` mode that prints one JSON
line): it builds ``lucidrl.PPO(env, seed=0, backend=..., preset=False)`` with PPO's defaults (n_steps 2048,
batch_size 64, 10 epochs, 64x64 tanh networks, one env), with the library's own thread settings, and times
``learn(--timesteps)``. The backends alternate run by run, ``--repeats`` times, so that a slow phase of the
machine hits both alike. Rows are appended to ``benchmarks/results/fast_spaces.jsonl``; the medians are printed.

Cases: ``taxi`` (Taxi-v4: 500 one-hot states, 6 actions), ``frozenlake`` (FrozenLake-v1: 16 states),
``multidiscrete`` (``MatchEnv``: a Box of 4 observations, MultiDiscrete([3, 3, 3, 4]) actions) and
``multibinary`` (``MatchEnv`` with MultiBinary(4) actions); ``vf_clip`` (Pendulum-v1 with ``clip_range_vf=0.2``,
as CleanRL's PPO and lucidrl's Hopper preset), ``target_kl`` (CartPole-v1 with ``target_kl=0.01``) and
``kl_penalty`` (CartPole-v1, PPO-Penalty) and ``elu`` (CartPole-v1, ``activation="elu"``).

    python benchmarks/fast_spaces.py                                    # taxi and multidiscrete, 50k steps, 3 repeats
    python benchmarks/fast_spaces.py --cases frozenlake multibinary --timesteps 20000 --repeats 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import code_version, machine, run_worker  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "fast_spaces.jsonl"


class MatchEnv(gym.Env):
    """Observe 4 numbers u ~ U[-1, 1]; the action has one component per number, and each component that names the
    number's bin pays 1/4: MultiDiscrete([3, 3, 3, 4]) actions (bins of equal width, 3 or 4 of them), or MultiBinary(4)
    (the sign). Episodes of 32 steps (a time limit). A policy that learns the bins earns 32."""

    def __init__(self, multibinary: bool = False):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.bins = np.array([2, 2, 2, 2]) if multibinary else np.array([3, 3, 3, 4])
        self.action_space = gym.spaces.MultiBinary(4) if multibinary else gym.spaces.MultiDiscrete(self.bins)

    def _draw(self) -> np.ndarray:
        self.obs = self.np_random.uniform(-1.0, 1.0, 4).astype(np.float32)
        return self.obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def step(self, action):
        target = np.minimum(((self.obs + 1.0) / 2.0 * self.bins).astype(np.int64), self.bins - 1)
        reward = float(np.mean(np.asarray(action) == target))
        self.t += 1
        return self._draw(), reward, False, self.t >= 32, {}


CASES = {
    "taxi": "Taxi-v4",
    "frozenlake": "FrozenLake-v1",
    "multidiscrete": lambda: MatchEnv(multibinary=False),
    "multibinary": lambda: MatchEnv(multibinary=True),
    "vf_clip": "Pendulum-v1",
    "target_kl": "CartPole-v1",
    "kl_penalty": "CartPole-v1",
    "elu": "CartPole-v1",
}
SETTINGS = {  # on top of PPO's defaults
    "vf_clip": {"clip_range_vf": 0.2},
    "target_kl": {"target_kl": 0.01},
    "kl_penalty": {"variant": "kl_penalty"},
    "elu": {"activation": "elu"},
}


def worker(case: str, backend: str, timesteps: int) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import lucidrl

    model = lucidrl.PPO(CASES[case], seed=0, verbose=0, backend=backend, preset=False, **SETTINGS.get(case, {}))
    t0 = time.perf_counter()
    model.learn(timesteps)
    seconds = time.perf_counter() - t0
    returns = model.ep_info_buffer if hasattr(model, "ep_info_buffer") else []
    mean_return = float(np.mean([e["r"] for e in returns])) if returns else None
    print(json.dumps({
        "case": case, "env": CASES[case] if isinstance(CASES[case], str) else f"MatchEnv({case})", "backend": backend,
        "timesteps": model.num_timesteps, "seconds": round(seconds, 2),
        "steps_per_s": round(model.num_timesteps / seconds), "update_backend": model.backend_lines[0],
        "recent_mean_return": None if mean_return is None else round(mean_return, 3),
    }))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=["taxi", "multidiscrete"], choices=list(CASES))
    p.add_argument("--timesteps", type=int, default=50_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", nargs=2, metavar=("CASE", "BACKEND"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker[0], args.worker[1], args.timesteps)
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    common = {"commit": code_version(), **machine()}
    rows: dict[tuple[str, str], list[dict]] = {}
    failed = False
    for repeat in range(args.repeats):
        for case in args.cases:
            for backend in ("reference", "auto"):
                cmd = [sys.executable, str(Path(__file__).resolve()), "--timesteps", str(args.timesteps),
                       "--worker", case, backend]  # fmt: skip
                r, why = run_worker(cmd)
                if r is None:
                    print(f"{case} {backend}: FAILED\n{why}", file=sys.stderr)
                    failed = True
                    continue
                rows.setdefault((case, backend), []).append(r)
                stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
                with RESULTS.open("a") as f:
                    f.write(json.dumps({"timestamp": stamp, "benchmark": "fast_spaces", "repeat": repeat, **r,
                                        **common}) + "\n")  # fmt: skip
                print(f"  {case} {backend}: {r['seconds']:.1f} s ({r['update_backend']})", file=sys.stderr, flush=True)
    print(f"\nPPO defaults, {args.timesteps} steps, {args.repeats} alternated runs per backend, median (commit "
          f"{common['commit']}, {common['cpu_model']}, {common['cpu_count']} CPUs)\n")  # fmt: skip
    print("| case | reference s | auto s | reference steps/s | auto steps/s | reference / auto |")
    print("|---|---|---|---|---|---|")
    for case in args.cases:
        ref, auto = rows.get((case, "reference")), rows.get((case, "auto"))
        if not ref or not auto:
            continue
        ref_s, auto_s = (statistics.median(r["seconds"] for r in rs) for rs in (ref, auto))
        ref_sps, auto_sps = (statistics.median(r["steps_per_s"] for r in rs) for rs in (ref, auto))
        print(f"| {case} | {ref_s:.1f} | {auto_s:.1f} | {ref_sps:,.0f} | {auto_sps:,.0f} | {ref_s / auto_s:.2f}x |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
