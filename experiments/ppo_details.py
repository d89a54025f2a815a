"""Which of PPO's implementation details matter?

The PPO paper's one idea is the clipped ratio (``lucidrl.algos.ppo``, E2). The code that reproduces its results
does more: it normalises the advantages of each minibatch, initialises the layers orthogonally (the policy's last
layer 100 times smaller), clips the gradient's global norm, and, in some versions, clips the value function's
change, anneals the learning rate, and normalises observations and rewards by running statistics. Engstrom et al.
(2020, "Implementation Matters in Deep Policy Gradients") found that such code-level details explained more of
PPO's lead over TRPO than the clip; Andrychowicz et al. (2021, "What Matters In On-Policy Reinforcement Learning?",
250,000 runs) found observation normalisation and the policy's initialisation among the choices that matter most,
advantage normalisation and gradient clipping of small effect, and value clipping harmful more often than not.

Here each detail is switched (one at a time) in lucidrl's PPO preset for Pendulum-v1 (the zoo's values without
gSDE: 4 envs x 1024 steps, 10 epochs of 64-sample minibatches, γ = 0.9, λ = 0.95, learning rate 1e-3; advantage
normalisation, orthogonal initialisation and gradient clipping at 0.5 are on, the rest off), 300k env steps, and
the clip itself is removed once for scale:

* ``preset``;
* ``no advantage normalisation`` (normalize_advantage=False), ``no orthogonal init`` (ortho_init=False: PyTorch's
  default initialisation), ``no gradient clipping`` (max_grad_norm=None);
* ``+ value clipping 0.2`` (clip_range_vf=0.2), ``+ annealed learning rate`` (lin_0.001),
  ``+ obs & reward normalisation`` (normalize_obs and normalize_reward);
* ``no ratio clip (ε = 10)``.

Besides the returns: the explained variance of the critic (curves_diag_explained_variance.png), the gradient's
norm before clipping (curves_diag_grad_norm.png) and the exact KL each update moved π (curves_diag_kl_after_update.png).
One environment answers for one environment: the two papers found that the size, and at times the sign, of an
effect changes with the task.

    python experiments/ppo_details.py          # 5 seeds, ~8 min at --jobs 2 on an idle 2-core machine
"""

from __future__ import annotations

from pathlib import Path

from _common import budget, parse_args

from lucidrl.compare import Variant, compare_variants, group_runs, load_results, plot_curves

ENV = "Pendulum-v1"
VARIANTS = [
    Variant("preset", "ppo", {}),
    Variant("no advantage normalisation", "ppo", {"normalize_advantage": False}),
    Variant("no orthogonal init", "ppo", {"ortho_init": False}),
    Variant("no gradient clipping", "ppo", {"max_grad_norm": None}),
    Variant("+ value clipping 0.2", "ppo", {"clip_range_vf": 0.2}),
    Variant("+ annealed learning rate", "ppo", {"learning_rate": "lin_0.001"}),
    Variant("+ obs & reward normalisation", "ppo", {"normalize_obs": True, "normalize_reward": True}),
    Variant("no ratio clip (ε = 10)", "ppo", {"clip_range": 10.0}),
]
CURVES = {  # metric: (y label, title, logarithmic y)
    "diag/explained_variance": ("explained variance", "the critic's explained variance before each update", False),
    "diag/grad_norm": ("gradient norm", "gradient norm before clipping, mean of an update's steps", True),
    "diag/kl_after_update": ("KL(π_old ‖ π_new)", "how far each update moved π", True),
}

if __name__ == "__main__":
    args = parse_args("ppo_details", __doc__.splitlines()[0])
    out = Path(args.out)
    paths = compare_variants(
        VARIANTS,
        ENV,
        seeds=args.seeds,
        timesteps=budget(args, 300_000, 8_192),
        out=out,
        n_jobs=args.jobs,
        force=args.force,
    )
    groups = group_runs(load_results(out))
    for metric, (ylabel, title, log_y) in CURVES.items():
        paths[metric] = plot_curves(
            groups,
            out / f"curves_{metric.replace('/', '_')}.png",
            metric=metric,
            ylabel=ylabel,
            log_y=log_y,
            title=f"{ENV}: {title}\n(mean over seeds, 95% bootstrap band)",
        )
    print(paths["table"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
