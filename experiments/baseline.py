"""Why does the policy gradient use reward-to-go and a baseline?

The policy gradient ∇J = E[Σ_t ∇log π(a_t|s_t) Ψ_t] (``lucidrl.algos.vpg``, E2) holds for several
weights Ψ_t: the episode's total return (REINFORCE as first written), the reward-to-go G_t (the
rewards before t cannot depend on a_t), G_t − V(s_t) (a baseline that does not depend on a_t), and
GAE (a bootstrapped, slightly biased Â_t). At γ = 1 the first three have the same expectation and
differ in variance; at γ < 1 (here 0.99) the total return weighs step t by an extra γ^(t−t0) that
the others drop (Thomas 2014), so their expectations differ too. Two measurements answer the
question:

1. **Learning**: VPG on CartPole-v1 with each Ψ, 300k env steps, every other hyperparameter from
   lucidrl's VPG preset, except that Ψ is *not* normalised (normalising subtracts the batch mean,
   which is itself a baseline and would blur the comparison).
2. **The gradient itself**: one policy and critic, taken from a VPG run after 50k steps, held
   fixed; 2 x 200 batches of 2,000 env steps (the preset's batch) collected with it. For each Ψ,
   each batch's gradient estimate is compared with the "true" gradient, the mean of the
   G_t − V(s_t) estimates over the other 200 batches: their cosine (does one batch point the right
   way?) and the variance of the estimate relative to the true gradient's squared norm.

    python experiments/baseline.py            # 5 seeds, 2 min one run at a time (--jobs 1) on an idle 2-core machine
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from _common import budget, parse_args

from lucidrl.compare import Variant, compare_variants

ENV = "CartPole-v1"
PSIS = ["total_return", "reward_to_go", "reward_to_go_baseline", "gae"]
LABELS = {
    "total_return": "total return",
    "reward_to_go": "reward-to-go",
    "reward_to_go_baseline": "reward-to-go − V(s)",
    "gae": "GAE (λ=0.97)",
}


def gradient_statistics(
    out: Path, snapshot_steps: int, n_batches: int, seed: int = 0, estimators: dict[str, dict] | None = None
) -> dict:
    """Per Ψ: the cosine of each batch's gradient with the true one, and the relative variance (see the docstring).
    ``estimators``: name -> the VPG settings that make that Ψ (default: each of PSIS, ``{"psi": name}``);
    ``experiments/gae_lambda.py`` passes GAE at several λ."""
    estimators = estimators or {name: {"psi": name} for name in PSIS}
    from lucidrl import VPG
    from lucidrl.algos.vpg import policy_gradient_loss, psi_and_targets

    torch.set_num_threads(1)
    model = VPG(ENV, seed=seed, verbose=0).learn(snapshot_steps)  # preset: Ψ = GAE, critic trained
    collector = model._rollout_collector()
    agent, cfg = model.agent, model.config
    params = list(agent.actor.parameters())

    def gradients(settings: dict[str, dict]) -> dict[str, np.ndarray]:
        rollout = collector.collect(agent, cfg.n_steps)
        out_g = {}
        for name, overrides in settings.items():
            psi, _ = psi_and_targets(rollout, dataclasses.replace(cfg, **overrides))
            batch = rollout.flat(psi=psi)
            logprob = agent.head.log_prob(agent.policy_params(batch["obs"]), batch["actions"])
            grads = torch.autograd.grad(-policy_gradient_loss(logprob, batch["psi"]), params)  # ∇ of (E3)'s estimate
            out_g[name] = torch.cat([g.flatten() for g in grads]).numpy().copy()
        return out_g

    true_psi = {"g": {"psi": "reward_to_go_baseline"}}
    reference = np.mean([gradients(true_psi)["g"] for _ in range(n_batches)], 0)
    samples = [gradients(estimators) for _ in range(n_batches)]
    ref_sq = float(reference @ reference)
    stats = {
        "snapshot_steps": snapshot_steps,
        "n_batches": n_batches,
        "batch_steps": cfg.n_steps * cfg.n_envs,
        "seed": seed,
        "psi": {},
    }
    for name in estimators:
        g = np.stack([s[name] for s in samples])  # [batches, params]
        cos = g @ reference / (np.linalg.norm(g, axis=1) * np.sqrt(ref_sq))
        mean = g.mean(0)
        stats["psi"][name] = {
            "cosine_mean": float(cos.mean()),
            "cosine_median": float(np.median(cos)),
            "cosine_below_zero": float((cos < 0).mean()),
            "cosine_q25": float(np.quantile(cos, 0.25)),
            "cosine_q75": float(np.quantile(cos, 0.75)),
            "cosines": cos.round(4).tolist(),
            "relative_variance": float(((g - mean) ** 2).sum(1).mean() / ref_sq),
            "mean_cosine_to_reference": float(mean @ reference / (np.linalg.norm(mean) * np.sqrt(ref_sq))),
            "mean_norm_over_reference_norm": float(np.linalg.norm(mean) / np.sqrt(ref_sq)),
        }
    return stats


def write_gradient_report(out: Path, stats: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "gradient_statistics.json").write_text(json.dumps(stats, indent=1))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.boxplot([stats["psi"][p]["cosines"] for p in PSIS], whis=(5, 95), showfliers=False)
    ax.set_xticks(range(1, len(PSIS) + 1), [LABELS[p] for p in PSIS])
    ax.set_ylabel("cosine(one batch's gradient, true gradient)")
    ax.set_title(
        f"{ENV}: {stats['n_batches']} batches of {stats['batch_steps']} steps, one fixed policy\n"
        f"(VPG after {stats['snapshot_steps']} steps); boxes: quartiles, whiskers: 5-95%",
        fontsize=10,
    )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    png = out / "gradient_cosines.png"
    fig.savefig(png)
    plt.close(fig)
    lines = [
        f"# The gradient estimates of one fixed policy ({ENV})",
        "",
        f"Policy and critic: VPG (preset, Ψ = GAE) after {stats['snapshot_steps']} env steps, seed {stats['seed']}. "
        f"{stats['n_batches']} batches of {stats['batch_steps']} env steps each; the true gradient is the mean of "
        f"the reward-to-go − V(s) estimates over {stats['n_batches']} other batches.",
        "",
        "| Ψ | cosine with the true gradient: median [quartiles] | batches with cosine < 0 "
        "| variance / ‖true gradient‖² "
        "| cosine of the mean estimate with the true gradient | ‖mean estimate‖ / ‖true gradient‖ |",
        "|---|---|---|---|---|---|",
    ]
    for p in PSIS:
        s = stats["psi"][p]
        lines.append(
            f"| {LABELS[p]} | {s['cosine_median']:.3f} [{s['cosine_q25']:.3f}, {s['cosine_q75']:.3f}] "
            f"| {100 * s['cosine_below_zero']:.1f}% | {s['relative_variance']:.2f} "
            f"| {s['mean_cosine_to_reference']:.3f} "
            f"| {s['mean_norm_over_reference_norm']:.2f} |"
        )
    table = out / "gradient_statistics.md"
    table.write_text("\n".join(lines) + "\n")
    return [png, table]


if __name__ == "__main__":
    args = parse_args("baseline", __doc__.splitlines()[0])
    out = Path(args.out)
    variants = [Variant(LABELS[p], "vpg", {"psi": p, "normalize_advantage": False}) for p in PSIS]
    paths = compare_variants(
        variants,
        ENV,
        seeds=args.seeds,
        timesteps=budget(args, 300_000, 8_000),
        out=out,
        n_jobs=args.jobs,
        force=args.force,
    )
    print(paths["table"].read_text())
    stats = gradient_statistics(out, budget(args, 50_000, 4_000), budget(args, 200, 4))
    extra = write_gradient_report(out, stats)
    print((out / "gradient_statistics.md").read_text())
    print("wrote " + ", ".join(str(p) for p in [*paths.values(), *extra]))
