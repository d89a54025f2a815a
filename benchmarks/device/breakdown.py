"""Where one PPO update's time goes with batched torch envs: rollout, GAE, the K-epoch update and what follows it.

    python benchmarks/device/breakdown.py --device cuda --envs 4096 262144 [--compile 1] [--updates 5] [--profile 15]

Runs PureJaxRL's CartPole settings (as ``benchmarks/gpu_throughput.py``) through the same calls as
``PPO.learn`` (``collector.collect``, ``model._gae``, ``model._update``, the exact KL and the explained variance
after it), synchronising the device around each phase so that each is timed alone (the sum is a little more than
an unsynchronised update). Prints one JSON row per envs setting: median milliseconds per phase after two warm-up
updates (captures and compiles), and the env steps per second those medians imply.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

PUREJAXRL = dict(
    n_steps=128, n_epochs=4, learning_rate=2.5e-4, clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
    gamma=0.99, gae_lambda=0.95, net_arch=[64, 64], activation="tanh",
)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--envs", type=int, nargs="+", default=[4096])
    ap.add_argument("--compile", type=int, default=1, help="compile=True (CUDA graphs on a GPU)")
    ap.add_argument("--updates", type=int, default=5)
    ap.add_argument("--matmul-precision", nargs="+", default=["auto"], choices=["auto", "tf32", "ieee"])
    ap.add_argument("--profile", type=int, default=0, help="print the N ops that took the most time of one iteration")
    args = ap.parse_args()
    from lucidrl import PPO
    from lucidrl.advantages import explained_variance
    from lucidrl.threads import hold_matmul_precision, hold_threads

    cuda = args.device.startswith("cuda")

    def sync() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    for precision, n in [(p, n) for p in args.matmul_precision for n in args.envs]:
        m = PPO("CartPole-v1", preset=False, vectorization="torch", device=args.device, n_envs=n,
                batch_size=n * PUREJAXRL["n_steps"] // 4, seed=0, verbose=0, compile=bool(args.compile),
                matmul_precision=precision, **PUREJAXRL)  # fmt: skip
        cfg, col = m.config, m._rollout_collector()
        phases: dict[str, list[float]] = {k: [] for k in ("rollout", "gae", "update", "after", "total")}

        def iteration(m=m, col=col, cfg=cfg) -> list[float]:
            """One PPO iteration as learn() runs it; the synchronised time at each phase's end."""
            marks = [sync()]
            r = col.collect(m.agent, cfg.n_steps)
            marks.append(sync())
            adv, ret = m._gae(r.rewards, r.values_old, r.next_values, r.terminated, r.truncated, cfg.gamma,
                              cfg.gae_lambda)  # fmt: skip
            batch = r.flat(advantages=adv, returns=ret)
            marks.append(sync())
            m._update(m.agent, m.optimizer, batch, cfg, 0.2, None, 0.0, m.generator)
            marks.append(sync())
            with torch.no_grad():
                m.agent.head.kl(batch["params_old"], m.agent.policy_params(batch["obs"])).mean().item()
            explained_variance(batch["values_old"], batch["returns"])
            marks.append(sync())
            return marks

        # the CPU threads and the GPU's float32 products learn() runs with
        with hold_threads(cfg.torch_threads, m), hold_matmul_precision(precision, m.device):
            for i in range(2 + args.updates):
                t0, t1, t2, t3, t4 = iteration()
                if i >= 2:
                    for k, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                        phases[k].append(dt * 1e3)
            if args.profile:  # which ops take the time of one more iteration (kernels inside CUDA graphs included
                # where the profiler sees them; compile=0 profiles every op eagerly)
                from torch.profiler import ProfilerActivity, profile

                activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
                with profile(activities=activities) as prof:
                    iteration()
                key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
                print(f"profile: {n} envs, {precision}, compile={args.compile}", flush=True)
                print(prof.key_averages().table(sort_by=key, row_limit=args.profile, max_name_column_width=60))
        med = {k: round(statistics.median(v), 3) for k, v in phases.items()}
        row = {"bench": "breakdown", "device": args.device, "compile": bool(args.compile), "n_envs": n,
               "matmul_precision": precision,
               "ms": med, "steps_per_s": round(n * cfg.n_steps / med["total"] * 1e3)}  # fmt: skip
        print(json.dumps(row), flush=True)
        del m, col


if __name__ == "__main__":
    main()
