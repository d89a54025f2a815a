"""Why does DQN need a target network?

DQN regresses Q_θ(s, a) on y = r + γ max_a' Q_θ⁻(s', a') (``lucidrl.algos.dqn``, E2-E3). Here the
same DQN learns CartPole-v1 three ways, all else equal:

* ``target net, hard copy``: θ⁻ ← θ every 512 env steps (128 gradient steps), the lag of the zoo preset;
* ``no target net``: θ⁻ ← θ before every gradient step, so y moves with every step of θ;
* ``target net, soft τ=0.005``: θ⁻ ← 0.005 θ + 0.995 θ⁻ before every gradient step (Polyak averaging).

Budget: 100k env steps, one gradient step per 4 env steps (25k steps, as many as the zoo preset's
50k-step run), every other hyperparameter from lucidrl's CartPole-v1 preset (the zoo's).

Outputs in docs/experiments/target_network/: the comparison (learning_curves.png, final_returns.png,
results.md) and q_values.png, the mean of Q_θ(s, a) over each round's minibatch against the largest
discounted return CartPole can give, Σ_{t<500} γ^t ≈ 99.3 with γ = 0.99.

    python experiments/target_network.py     # 5 seeds, 7.5 min one run at a time (--jobs 1) on an idle 2-core machine
"""

from __future__ import annotations

from pathlib import Path

from _common import budget, parse_args

from lucidrl.compare import Variant, compare_variants, group_runs, load_results, plot_curves

ENV = "CartPole-v1"
COMMON = {"train_freq": 4, "gradient_steps": 1}
VARIANTS = [
    Variant("target net, hard copy", "dqn", {**COMMON, "target_update_interval": 512}),
    Variant("no target net", "dqn", {**COMMON, "target_update_interval": 4}),
    Variant("target net, soft tau=0.005", "dqn", {**COMMON, "target_update_interval": 4, "tau": 0.005}),
]
GAMMA = 0.99


if __name__ == "__main__":
    args = parse_args("target_network", __doc__.splitlines()[0])
    out = Path(args.out)
    paths = compare_variants(
        VARIANTS,
        ENV,
        seeds=args.seeds,
        timesteps=budget(args, 100_000, 3_000),
        out=out,
        n_jobs=args.jobs,
        force=args.force,
    )
    paths["q_values"] = plot_curves(
        group_runs(load_results(out)),
        out / "q_values.png",
        metric="diag/q_mean",
        ylabel="mean Q(s, a) on the minibatches",
        title=f"{ENV}: the Q estimates, mean over seeds, 95% bootstrap band",
        reference=((1 - GAMMA**500) / (1 - GAMMA), "largest possible: Σ γ^t over 500 steps"),
        log_y=True,
    )
    print(paths["table"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
