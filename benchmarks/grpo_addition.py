"""GRPO on 2-digit addition: held-out accuracy of the supervised warm start vs after GRPO.

    python benchmarks/grpo_addition.py                        # seeds 0 1 2, 400 updates
    python benchmarks/grpo_addition.py --seeds 0 --updates 140

Per seed: ``lucidrl.GRPO("addition", seed=seed)`` (defaults: G=8 completions per prompt, 16
prompts a batch, μ=2, β=0.04, ε=0.2, lr 5e-4, a 2-layer d_model-64 transformer), the warm start
``warm_start()`` (200 Adam steps of cross-entropy on 2000 correct training-split examples), then
``learn(updates)``. Accuracy is greedy exact match on all 2000 held-out prompts (disjoint from
the training prompts), measured after the warm start and at each ``--eval-every`` updates.
``cpu_s`` is process CPU time of the warm start and of GRPO, with torch on ``--threads`` threads.
Results are appended as JSON lines to ``benchmarks/results/grpo_addition.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import lucidrl


def run(seed: int, updates: int, eval_every: int) -> dict:
    model = lucidrl.GRPO("addition", seed=seed)
    t = time.process_time()
    model.warm_start()
    warm_cpu = time.process_time() - t
    curve = [(0, model.evaluate())]
    t = time.process_time()
    grpo_cpu = 0.0
    while model.n_updates < updates:
        model.learn(min(eval_every, updates - model.n_updates))
        grpo_cpu += time.process_time() - t
        curve.append((model.n_updates, model.evaluate()))
        t = time.process_time()
    return {
        "seed": seed,
        "updates": updates,
        "warm_start_accuracy": curve[0][1],
        "grpo_accuracy": curve[-1][1],
        "curve": curve,
        "warm_start_cpu_s": round(warm_cpu, 1),
        "grpo_cpu_s": round(grpo_cpu, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--updates", type=int, default=400)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "grpo_addition.jsonl"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{'seed':>4} {'warm start':>10} {'after GRPO':>10} {'warm cpu s':>10} {'GRPO cpu s':>10}  curve (update, acc)"
    )
    for seed in args.seeds:
        r = run(seed, args.updates, args.eval_every)
        r.update(
            threads=args.threads,
            torch=torch.__version__,
            machine=platform.processor() or platform.machine(),
            lucidrl=lucidrl.__version__,
        )
        print(
            f"{seed:>4} {r['warm_start_accuracy']:>10.3f} {r['grpo_accuracy']:>10.3f} {r['warm_start_cpu_s']:>10} "
            f"{r['grpo_cpu_s']:>10}  {[(u, round(a, 3)) for u, a in r['curve']]}",
            flush=True,
        )
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
