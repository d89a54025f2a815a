"""PPO on CartPole with batched torch envs: training steps/s against the number of envs and of vmapped agents,
and the time to solve CartPole from a cold process start (docs/gpu.md).

    python benchmarks/gpu_throughput.py envs   --device cuda --envs 1024 4096 16384 65536 --compile 0 1
    python benchmarks/gpu_throughput.py agents --device cuda --agents 1 8 64 512 2048
    python benchmarks/gpu_throughput.py solve  --device cuda
    python benchmarks/gpu_throughput.py cpu    # torch envs vs Gymnasium's native vector env, 8/64/1024 envs

"Training steps/s" counts env steps of the whole loop (rollout, GAE, K epochs of minibatch updates,
the per-update host read of the diagnostics), measured after a warm-up that includes any compile
and CUDA-graph capture, with the GPU synchronised at the end. Each row prints as JSON; ``--out``
appends them to a JSON-lines file. The PPO settings are PureJaxRL's CartPole config (Lu et al. 2022:
128 steps per env, 4 epochs, 4 minibatches, lr 2.5e-4 annealed, clip 0.2, entropy 0.01, 64x64 tanh).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PUREJAXRL = dict(
    n_steps=128,
    n_epochs=4,
    learning_rate="lin_2.5e-4",
    clip_range=0.2,
    ent_coef=0.01,
    vf_coef=0.5,
    max_grad_norm=0.5,
    gamma=0.99,
    gae_lambda=0.95,
    net_arch=[64, 64],
    activation="tanh",
)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def emit(row: dict, out: str | None) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def bench_envs(args) -> None:
    """Steps/s of one agent's training against n_envs (torch envs on --device)."""
    from lucidrl import PPO

    for compile_, precision, n in [(c, p, n) for c in args.compile for p in args.matmul_precision for n in args.envs]:
        cfg = dict(PUREJAXRL, n_steps=args.n_steps)
        model = PPO(
            "CartPole-v1",
            preset=False,
            vectorization="torch",
            device=args.device,
            n_envs=n,
            batch_size=n * cfg["n_steps"] // 4,
            seed=0,
            verbose=0,
            compile=bool(compile_),
            torch_threads="auto",
            matmul_precision=precision,
            **cfg,
        )
        per_update = n * cfg["n_steps"]
        t = time.perf_counter()
        model.learn(2 * per_update)  # warm-up: allocation, compile, graph capture
        _sync(args.device)
        warm = time.perf_counter() - t
        updates = max(3, min(args.max_updates, int(args.target_steps // per_update)))
        t = time.perf_counter()
        model.learn(updates * per_update, reset_num_timesteps=False)
        _sync(args.device)
        dt = time.perf_counter() - t
        emit(
            {
                "bench": "envs",
                "device": args.device,
                "compile": bool(compile_),
                "matmul_precision": precision,
                "n_envs": n,
                "n_steps": cfg["n_steps"],
                "updates": updates,
                "seconds": round(dt, 4),
                "warmup_s": round(warm, 2),
                "steps_per_s": round(updates * per_update / dt),
            },
            args.out,
        )
        del model


def bench_agents(args) -> None:
    """Aggregate steps/s of N vmapped agents (lucidrl.vmap_train), 4 envs each as PureJaxRL."""
    from lucidrl.vmap import vmap_train

    cfg = dict(PUREJAXRL, n_envs=args.agent_envs, n_steps=args.n_steps)
    cfg["batch_size"] = cfg["n_envs"] * cfg["n_steps"] // 4
    for a in args.agents:
        per_update = cfg["n_envs"] * cfg["n_steps"]
        r = vmap_train(
            "CartPole-v1",
            n_agents=a,
            total_timesteps=args.agent_updates * per_update,
            device=args.device,
            preset=False,
            matmul_precision=args.matmul_precision[0],
            **cfg,
        )
        steady = sorted(r.iteration_seconds[2:])  # after the eager first iteration and the graph's capture
        median = steady[len(steady) // 2] if steady else float("nan")
        emit(
            {
                "bench": "agents",
                "device": args.device,
                "n_agents": a,
                "matmul_precision": args.matmul_precision[0],
                "n_envs_per_agent": cfg["n_envs"],
                "updates": args.agent_updates,
                "seconds": round(r.seconds, 4),
                "steps_per_s": round(r.steps_per_second),
                "steady_steps_per_s": round(a * per_update / median) if steady else None,
                "first_two_s": [round(x, 3) for x in r.iteration_seconds[:2]],
                "final_mean_return": round(
                    sum(c[-1][1] for c in r.curves if c) / max(1, sum(1 for c in r.curves if c)), 1
                ),
            },
            args.out,
        )


SOLVE = """
import time, sys, json
t_import = time.perf_counter()
import torch
from lucidrl import PPO
from lucidrl.device_rollout import evaluate_on_device
cfg = json.loads(sys.argv[1])
dev, chunk, budget = cfg.pop("device"), cfg.pop("eval_every"), cfg.pop("budget")
t_imported = time.perf_counter()
m = PPO("CartPole-v1", preset=False, vectorization="torch", device=dev, seed=cfg.pop("seed"), verbose=0, **cfg)
if dev.startswith("cuda"):
    torch.cuda.synchronize()
t_built = time.perf_counter()
steps, result, mean, evals, last, first_chunk, eval_s = 0, None, float("nan"), 0, {}, None, 0.0


def keep(model, metrics):  # the mean training return of the last 100 episodes, after each update
    last["r"] = model._logger.mean_return
    return True


while steps < budget:
    m.learn(chunk, callback=keep, reset_num_timesteps=False)
    steps += chunk
    first_chunk = first_chunk or round(time.perf_counter() - t_built, 3)  # the captures and first updates
    train = last.get("r", float("nan"))
    print(json.dumps({"steps": steps, "train_return": train, "t": round(time.perf_counter() - t_import, 3)}),
          file=sys.stderr, flush=True)
    if not train >= 400:  # evaluate (128 deterministic episodes on the device) once training returns are close
        continue
    t_eval = time.perf_counter()
    mean, std = evaluate_on_device(m, 128)
    eval_s += time.perf_counter() - t_eval
    evals += 1
    if mean >= 475:
        result = mean
        break
t1 = time.perf_counter()
print(json.dumps({"solved": result is not None, "eval": mean, "steps": steps, "evals": evals,
                  "import_s": round(t_imported - t_import, 3), "train_s": round(t1 - t_imported, 3),
                  "in_process_s": round(t1 - t_import, 3), "build_s": round(t_built - t_imported, 3),
                  "first_chunk_s": first_chunk, "eval_s": round(eval_s, 3)}))
"""


def bench_solve(args) -> None:
    """Time to solve (evaluation >= 475 over 128 episodes) from a cold process start, compile included."""
    configs = (
        json.loads(args.configs)
        if args.configs
        else [
            dict(n_envs=256, n_steps=16, n_epochs=4, batch_size=1024, learning_rate=2.5e-3, ent_coef=0.0),
            dict(n_envs=1024, n_steps=16, n_epochs=4, batch_size=4096, learning_rate=2.5e-3, ent_coef=0.0),
            dict(n_envs=2048, n_steps=8, n_epochs=4, batch_size=4096, learning_rate=3e-3, ent_coef=0.0),
        ]
    )
    for compile_ in args.compile:
        for seed in range(args.seeds):
            for c in configs:
                n_upd = c["n_envs"] * c["n_steps"]
                cfg = dict(
                    c,
                    device=args.device,
                    seed=seed,
                    compile=bool(compile_),
                    matmul_precision=args.matmul_precision[0],
                    eval_every=n_upd * args.eval_updates,
                    budget=args.solve_budget,
                )
                t = time.perf_counter()
                try:
                    p = subprocess.run(
                        [sys.executable, "-c", SOLVE, json.dumps(cfg)],
                        capture_output=True,
                        text=True,
                        timeout=args.solve_timeout,
                    )
                    out = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr[-500:]
                except subprocess.TimeoutExpired as e:
                    err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
                    out = "timeout; last progress: " + (err.strip().splitlines() or [""])[-1]
                wall = time.perf_counter() - t
                try:
                    row = json.loads(out)
                except (json.JSONDecodeError, TypeError):
                    row = {"error": out}
                emit(
                    {
                        "bench": "solve",
                        **c,
                        "compile": bool(compile_),
                        "seed": seed,
                        "process_wall_s": round(wall, 3),
                        **row,
                    },
                    args.out,
                )


def bench_cpu(args) -> None:
    """PPO CartPole steps/s on the CPU: lucidrl's torch envs against Gymnasium's native vector env."""
    from lucidrl import PPO

    for n in args.envs:
        for vec in ("torch", "native"):
            cfg = dict(PUREJAXRL, n_steps=max(8, 4096 // n) if n < 512 else 16)
            model = PPO(
                "CartPole-v1",
                preset=False,
                vectorization=vec,
                n_envs=n,
                batch_size=n * cfg["n_steps"] // 4,
                seed=0,
                verbose=0,
                **cfg,
            )
            per_update = n * cfg["n_steps"]
            model.learn(per_update)
            updates = max(3, int(args.target_steps // per_update))
            t = time.perf_counter()
            model.learn(updates * per_update, reset_num_timesteps=False)
            dt = time.perf_counter() - t
            emit(
                {
                    "bench": "cpu",
                    "vectorization": vec,
                    "n_envs": n,
                    "n_steps": cfg["n_steps"],
                    "threads": os.environ.get("OMP_NUM_THREADS", "default"),
                    "seconds": round(dt, 3),
                    "steps_per_s": round(updates * per_update / dt),
                },
                args.out,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["envs", "agents", "solve", "cpu"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--envs", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    ap.add_argument("--agents", type=int, nargs="+", default=[1, 8, 64, 512, 2048])
    ap.add_argument("--agent-envs", type=int, default=4)
    ap.add_argument("--agent-updates", type=int, default=5)
    ap.add_argument("--compile", type=int, nargs="+", default=[0])
    ap.add_argument("--n-steps", type=int, default=128)
    ap.add_argument(
        "--matmul-precision",
        nargs="+",
        default=["auto"],
        choices=["auto", "tf32", "ieee"],
        help="float32 products on a GPU (envs: each; agents, solve: the first); auto = tf32",
    )
    ap.add_argument("--target-steps", type=float, default=5e7, help="steps timed per row (envs, cpu)")
    ap.add_argument("--max-updates", type=int, default=20)
    ap.add_argument("--configs", default=None, help="solve: a JSON list of PPO settings")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--eval-updates", type=int, default=2, help="solve: evaluate every this many updates")
    ap.add_argument("--solve-budget", type=int, default=3_000_000)
    ap.add_argument("--solve-timeout", type=float, default=120)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    {"envs": bench_envs, "agents": bench_agents, "solve": bench_solve, "cpu": bench_cpu}[args.what](args)


if __name__ == "__main__":
    main()
