"""``lucidrl compare`` locally and with ``--backend ray``: the two wall times, their ratio, and whether the runs agree.

Runs, one after the other, in fresh output directories (nothing is reused):

    lucidrl compare ppo a2c trpo --env CartPole-v1 --seeds 5 --timesteps 100000 --out OUT/local
    lucidrl compare ppo a2c trpo --env CartPole-v1 --seeds 5 --timesteps 100000 --out OUT/ray --backend ray

each as a subprocess, so the wall time counts everything a user waits for (the interpreter, Ray's start and
shutdown, every run, the report). The local backend runs one process per CPU core; the Ray backend starts a
local Ray instance with this machine's CPUs and runs one task of one CPU per run (or joins ``--address``).
Then it checks that every run's saved weights are bit-identical under both backends.

    python benchmarks/scale_compare.py [--seeds 5] [--timesteps 100000] [--out /tmp/scale-compare] [--address ADDR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file


def timed(cmd: list[str]) -> float:
    env = {**os.environ}
    env.setdefault("RAY_AUTH_MODE", "disabled")  # a local Ray instance needs no login token
    print("$ " + " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a / "model" / "weights.safetensors"), load_file(b / "model" / "weights.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=["ppo", "a2c", "trpo"])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--timesteps", type=int, default=100_000)
    p.add_argument("--out", default="/tmp/scale-compare")
    p.add_argument("--address", default=None, help="a running Ray cluster to use instead of a local instance")
    args = p.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    base = [
        sys.executable,
        "-m",
        "lucidrl.cli",
        "compare",
        *args.algos,
        "--env",
        args.env,
        "--seeds",
        str(args.seeds),
        "--timesteps",
        str(args.timesteps),
    ]
    local = timed([*base, "--out", str(out / "local")])
    ray_cmd = [*base, "--out", str(out / "ray"), "--backend", "ray"]
    ray = timed(ray_cmd + (["--address", args.address] if args.address else []))

    runs = sorted(d.name for d in (out / "local" / "runs").iterdir())
    equal = sum(same_weights(out / "local" / "runs" / r, out / "ray" / "runs" / r) for r in runs)
    n = len(args.algos) * args.seeds
    print(
        f"\n{' '.join(args.algos)} on {args.env}: {args.seeds} seeds x {args.timesteps} steps = {n} runs, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"local backend ({os.cpu_count()} processes): {local:.1f} s")
    print(f"ray backend ({'cluster ' + args.address if args.address else 'local instance'}): {ray:.1f} s")
    print(f"ray / local: {ray / local:.2f}")
    print(f"runs with bit-identical weights under both backends: {equal} of {len(runs)}")
    print(f"outputs: {out}/local, {out}/ray")


if __name__ == "__main__":
    main()
