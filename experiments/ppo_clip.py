"""Why does PPO clip the probability ratio (or penalise the KL)?

PPO reuses each batch for K epochs of minibatch steps. The surrogate r_t(θ) Â_t, with the
likelihood ratio r_t = π_θ(a_t|s_t) / π_θold(a_t|s_t), has the policy gradient's gradient at
θ = θ_old (``lucidrl.algos.ppo``, E1), but nothing in it stops later epochs from pushing π_θ far from
the π_θold that collected the data, where Â_t no longer says anything. The clip (E2) removes the
incentive to move r_t outside [1 − ε, 1 + ε]; the KL penalty (E3, with the adaptive β of E4) charges
for the distance instead. Here PPO learns CartPole-v1 four ways, all else from lucidrl's preset
(the zoo's: 8 envs x 32 steps, 20 epochs over each 256-step batch, learning rate and ε annealed
linearly from 1e-3 and 0.2):

* ``clip ε=0.2 (preset)``;
* ``no clip, 20 epochs``: ε = 10, so the ratio is never clipped;
* ``no clip, 1 epoch``: ε = 10 and one step per batch, where the surrogate is the vanilla policy gradient;
* ``KL penalty (adaptive β)``: PPO-Penalty with d_targ = 0.01.

Besides the returns, kl_after_update.png shows the exact mean KL(π_old ‖ π_new) of
every update: how far each batch moved the policy.

    python experiments/ppo_clip.py            # 5 seeds, 1.5 min one run at a time (--jobs 1) on an idle 2-core machine
"""

from __future__ import annotations

from pathlib import Path

from _common import budget, parse_args

from lucidrl.compare import Variant, compare_variants, group_runs, load_results, plot_curves

ENV = "CartPole-v1"
VARIANTS = [
    Variant("clip ε=0.2 (preset)", "ppo", {}),
    Variant("no clip, 20 epochs", "ppo", {"clip_range": 10.0}),
    Variant("no clip, 1 epoch", "ppo", {"clip_range": 10.0, "n_epochs": 1}),
    Variant("KL penalty (adaptive β)", "ppo", {"variant": "kl_penalty"}),
]

if __name__ == "__main__":
    args = parse_args("ppo_clip", __doc__.splitlines()[0])
    paths = compare_variants(
        VARIANTS,
        ENV,
        seeds=args.seeds,
        timesteps=budget(args, 100_000, 4_096),
        out=Path(args.out),
        n_jobs=args.jobs,
        force=args.force,
    )
    paths["kl"] = plot_curves(
        group_runs(load_results(args.out)),
        Path(args.out) / "kl_after_update.png",
        metric="diag/kl_after_update",
        ylabel="KL(π_old ‖ π_new) after each update",
        log_y=True,
        title=f"{ENV}: how far each update moved π (mean over seeds, 95% band)",
    )
    print(paths["table"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
