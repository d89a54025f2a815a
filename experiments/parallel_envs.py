"""Does running more environments in parallel make PPO learn faster?

An on-policy algorithm collects a batch of n_envs x n_steps transitions with the current policy, updates
on it, and throws it away (``lucidrl.algos.ppo``). More copies of the env are the usual first move to go
faster: a vector env steps them together, and the policy acts on all of them in one forward pass
(``lucidrl.rollout.RolloutCollector``). What they do to learning depends on what else changes with them.
Here PPO's CartPole-v1 preset (the zoo's: 8 envs x 32 steps, one 256-sample minibatch, 20 epochs, γ = 0.98,
GAE λ = 0.8, learning rate and clip annealed from 1e-3 and 0.2), 100k env steps, 5 seeds, two ways:

* ``same_batch/``: the batch stays 256 transitions, split differently: 1 env x 256 steps, 4 x 64, 8 x 32
  (the preset), 32 x 8, 128 x 2 and 256 x 1. Every variant makes the same 391 updates of 20 gradient steps;
  what changes is how many episodes a batch samples, and after how many steps a rollout ends and GAE
  bootstraps from V (A1–A2 in ``lucidrl/algos/vpg.py``).
* ``more_envs/``: ``n_envs`` changes (``--n-envs`` on the command line): 2, 8 (the preset), 32 and 128
  envs x 32 steps. The minibatch stays 256, so for 8 to 128 envs the gradient steps per env step stay the
  same while the batch grows and the number of updates falls from 391 to 25; for 2 envs the minibatch must
  shrink to the batch, 64, so they take 1,563 updates and four times the gradient steps.

All with the default ``vectorization="auto"``: Gymnasium's SyncVectorEnv for 1 and 2 envs, its batched
CartPoleVectorEnv from 4 envs up.

Besides the tables: learning curves against env steps (as everywhere) and against wall-clock seconds
(``learning_curves_wall_time.png`` in each directory), where the speed of the bigger vector env shows.

    python experiments/parallel_envs.py       # 5 seeds, ~3 min at --jobs 2 on an idle 2-core machine
"""

from __future__ import annotations

from pathlib import Path

from _common import budget, parse_args

from lucidrl.compare import Variant, compare_variants, group_runs, load_results, plot_curves

ENV = "CartPole-v1"
SAME_BATCH = [(1, 256), (4, 64), (8, 32), (32, 8), (128, 2), (256, 1)]
MORE_ENVS = [2, 8, 32, 128]


def label(n_envs: int, n_steps: int) -> str:
    return f"{n_envs} x {n_steps}" + (" (preset)" if (n_envs, n_steps) == (8, 32) else "")


if __name__ == "__main__":
    args = parse_args("parallel_envs", __doc__.splitlines()[0])
    timesteps = budget(args, 100_000, 4_096)
    studies = {
        "same_batch": [Variant(label(n, t), "ppo", {"n_envs": n, "n_steps": t}) for n, t in SAME_BATCH],
        "more_envs": [
            Variant(label(n, 32), "ppo", {"n_envs": n, "n_steps": 32, "batch_size": min(256, n * 32)})
            for n in MORE_ENVS
        ],
    }
    for study, variants in studies.items():
        out = Path(args.out) / study
        paths = compare_variants(
            variants, ENV, seeds=args.seeds, timesteps=timesteps, out=out, n_jobs=args.jobs, force=args.force
        )
        paths["wall_time"] = plot_curves(  # each group's band covers the seconds every one of its seeds ran
            group_runs(load_results(out)),
            out / "learning_curves_wall_time.png",
            x="time/elapsed_s",
            xlabel="seconds of training (one torch thread per run)",
            title=f"{ENV}: return against wall time\n(mean over seeds, 95% bootstrap band)",
        )
        print(f"## {study}\n")
        print(paths["table"].read_text())
        print("wrote " + ", ".join(str(p) for p in paths.values()))
