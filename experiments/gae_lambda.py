"""What does GAE's λ trade? Bias against variance, measured on the gradient and on learning.

GAE (Schulman et al. 2016; ``lucidrl.advantages.gae``) weighs the k-step advantage estimates
Â_t^(k) = Σ_{l<k} γ^l r_{t+l} + γ^k V(s_{t+k}) − V(s_t) by (1 − λ) λ^(k−1):

    Â_t = Σ_l (γλ)^l δ_{t+l},   δ_t = r_t + γ V(s_{t+1}) − V(s_t)

λ = 0 is the one-step TD error δ_t: one sampled reward, the rest the critic's guess (low variance, and
biased wherever V is wrong); λ = 1 is G_t − V(s_t), the sampled return minus a baseline (no bias from V
beyond the baseline's, which changes no expectation, and the most variance). Between them λ sets how far
into the sampled future an advantage reaches before it trusts V.

Two measurements, both with lucidrl's VPG preset on CartPole-v1 (Ψ = GAE, γ = 0.99, λ = 0.97 in the
preset), each λ ∈ {0, 0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 1}:

1. **The gradient** (``baseline.gradient_statistics``, as in experiment 3): one policy and critic held
   fixed, from a VPG run after 10k steps (a young critic) and after 50k; 200 batches of 2,000 env steps,
   each giving one gradient estimate per λ from the same batch; the "true" gradient is the mean of the
   G_t − V(s_t) estimates over 200 other batches. Per λ: the cosine of one batch's estimate with the true
   gradient, the variance (relative to the true gradient's squared norm, and to the estimator's own mean's:
   noise against signal whatever the scale), and the mean estimate's cosine and length against the true
   gradient (bias).
2. **Learning**: VPG with each λ for 300k env steps, 5 seeds, everything else from the preset (advantages
   normalised, as the preset does).

Outputs in docs/experiments/gae_lambda/: the comparison (learning_curves.png, final_returns.png,
results.md, results.json), gradient_statistics.md / .json and bias_variance.png.

    python experiments/gae_lambda.py            # 5 seeds, ~7 min at --jobs 1 on a 2-core machine with other work
"""

from __future__ import annotations

from pathlib import Path

from _common import budget, parse_args
from baseline import gradient_statistics

from lucidrl.compare import Variant, compare_variants

ENV = "CartPole-v1"
LAMBDAS = [0.0, 0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 1.0]
PRESET_LAMBDA = 0.97


def label(lam: float) -> str:
    return f"λ = {lam:g}" + (" (preset)" if lam == PRESET_LAMBDA else "")


def scale_free_variance(s: dict) -> float:
    """Variance relative to the squared length of the estimator's own mean: its noise against its signal,
    whatever its scale (the preset normalises Ψ per batch, so the scale is not what the step sees)."""
    return s["relative_variance"] / s["mean_norm_over_reference_norm"] ** 2


def write_report(out: Path, snapshots: dict[int, dict]) -> list[Path]:
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "gradient_statistics.json").write_text(json.dumps({str(k): v for k, v in snapshots.items()}, indent=1))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    for (steps, stats), style in zip(snapshots.items(), ("o-", "s--")):
        rows = [stats["psi"][label(lam)] for lam in LAMBDAS]
        when = f"after {steps // 1000}k steps"
        axes[0].plot(LAMBDAS, [scale_free_variance(r) for r in rows], style, label=when)
        axes[1].plot(LAMBDAS, [r["mean_cosine_to_reference"] for r in rows], style, label=when)
    axes[0].set(xlabel="λ", ylabel="variance / ‖mean estimate‖²", title="noise of one batch's estimate")
    axes[0].set_yscale("log")
    axes[1].set(xlabel="λ", ylabel="cosine(mean estimate, true gradient)", title="bias: where the mean points")
    axes[1].axhline(1.0, color="k", lw=0.8)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    some = next(iter(snapshots.values()))
    fig.suptitle(
        f"{ENV}: VPG's policy and critic held fixed at two points of one run; {some['n_batches']} batches of "
        f"{some['batch_steps']} steps each",
        fontsize=10,
    )
    fig.tight_layout()
    png = out / "bias_variance.png"
    fig.savefig(png)
    plt.close(fig)
    lines = [
        f"# GAE's λ on the gradient of one fixed policy ({ENV})",
        "",
        f"Policy and critic: VPG (preset, Ψ = GAE with λ = {PRESET_LAMBDA}, seed {some['seed']}) after "
        f"{' and after '.join(str(k) for k in snapshots)} env steps. {some['n_batches']} batches of "
        f"{some['batch_steps']} env steps, every λ on the same batches; the true gradient is the mean of the "
        f"G_t − V(s) estimates over {some['n_batches']} other batches. Ψ is not normalised here.",
    ]
    for steps, stats in snapshots.items():
        lines += [
            "",
            f"After {steps} env steps:",
            "",
            "| λ | one batch: cosine with the true gradient, median [quartiles] | batches with cosine < 0 "
            "| variance / ‖true gradient‖² | variance / ‖mean estimate‖² | cosine of the mean estimate with the "
            "true gradient | ‖mean estimate‖ / ‖true gradient‖ |",
            "|---|---|---|---|---|---|---|",
        ]
        for lam in LAMBDAS:
            s = stats["psi"][label(lam)]
            lines.append(
                f"| {label(lam)} | {s['cosine_median']:.3f} [{s['cosine_q25']:.3f}, {s['cosine_q75']:.3f}] "
                f"| {100 * s['cosine_below_zero']:.1f}% | {s['relative_variance']:.3f} | {scale_free_variance(s):.3f} "
                f"| {s['mean_cosine_to_reference']:.3f} | {s['mean_norm_over_reference_norm']:.2f} |"
            )
    table = out / "gradient_statistics.md"
    table.write_text("\n".join(lines) + "\n")
    return [png, table]


if __name__ == "__main__":
    args = parse_args("gae_lambda", __doc__.splitlines()[0])
    out = Path(args.out)
    lambdas = LAMBDAS if not args.quick else [0.0, PRESET_LAMBDA, 1.0]
    paths = compare_variants(
        [Variant(label(lam), "vpg", {"psi": "gae", "gae_lambda": lam}) for lam in lambdas],
        ENV,
        seeds=args.seeds,
        timesteps=budget(args, 300_000, 8_000),
        out=out,
        n_jobs=args.jobs,
        force=args.force,
    )
    print(paths["table"].read_text())
    estimators = {label(lam): {"psi": "gae", "gae_lambda": lam} for lam in LAMBDAS}
    snapshots = {
        steps: gradient_statistics(out, steps, budget(args, 200, 4), estimators=estimators)
        for steps in (budget(args, 10_000, 2_000), budget(args, 50_000, 4_000))
    }
    extra = write_report(out, snapshots)
    print((out / "gradient_statistics.md").read_text())
    print("wrote " + ", ".join(str(p) for p in [*paths.values(), *extra]))
