"""Should the actor and the critic share one network?

lucidrl's actor-critics (A2C, PPO, A3C) keep two MLPs by default, as SB3 does for MLP policies:
π_θ(a|s) and V_φ(s) with no weights in common. ``shared_trunk=True`` gives them one trunk and two
output layers, the layout of A3C's Atari networks (Mnih et al. 2016), where only the output layers
are separate. Then one loss trains the trunk (``lucidrl.algos.ppo``, E6; ``lucidrl.algos.a2c``, the
negated E3 plus the weighted E4):

    L = L_policy + c_v · L_value − c_e · H[π]

and c_v (``vf_coef``) decides how much the trunk's features serve the value regression against the
policy: with separate networks c_v only scales the critic's own step, with a shared trunk it sets
the balance of two objectives in the same weights. CartPole-v1, lucidrl's presets (the zoo's),
100k steps, five variants:

* ``PPO, separate (preset)``, ``PPO, shared, vf_coef 0.5`` (the preset's c_v), ``PPO, shared, vf_coef 0.05``;
* ``A2C, separate (preset)``, ``A2C, shared`` (c_v 0.5).

Besides the returns, explained_variance.png shows how well V predicted the returns of each batch
(1 − Var[G − V] / Var[G], logged as ``diag/explained_variance``). A second measurement looks inside
the shared trunk: for each variant with a shared trunk (5 seeds, 30k steps each; the budget is
``GRAD_STEPS``), before every update, the norms of the two gradients the trunk receives from one
batch, ‖∇_trunk L_policy‖ (the advantages normalised where the algorithm normalises them) and
‖∇_trunk c_v L_value‖, and their ratio (grad_shares.png, grad_shares.md / .json).

    python experiments/shared_trunk.py        # 5 seeds, 3.5 min at --jobs 1 on 2 shared cores
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from _common import budget, parse_args

from lucidrl.advantages import normalize

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lucidrl.compare import Variant, compare_variants, group_runs, load_results, plot_curves

ENV = "CartPole-v1"
VARIANTS = [
    Variant("PPO, separate (preset)", "ppo", {}),
    Variant("PPO, shared, vf_coef 0.5", "ppo", {"shared_trunk": True}),
    Variant("PPO, shared, vf_coef 0.05", "ppo", {"shared_trunk": True, "vf_coef": 0.05}),
    Variant("A2C, separate (preset)", "a2c", {}),
    Variant("A2C, shared", "a2c", {"shared_trunk": True}),
]

GRAD_STEPS = 30_000
SHARED = [v for v in VARIANTS if v.overrides.get("shared_trunk")]


def trunk_gradient_norms(agent, batch, cfg) -> tuple[float, float]:
    """‖∇_trunk L_policy‖ and ‖∇_trunk c_v L_value‖ on one batch, at the parameters that collected it."""
    adv = normalize(batch["advantages"]) if cfg.normalize_advantage else batch["advantages"]
    dist_params, values = agent(batch["obs"])
    policy_loss = -(adv * agent.head.log_prob(dist_params, batch["actions"])).mean()  # the PG term (ratio = 1 here)
    value_loss = cfg.vf_coef * F.mse_loss(values, batch["returns"])
    trunk = list(agent.trunk.parameters())
    norms = []
    for term in (policy_loss, value_loss):
        grads = torch.autograd.grad(term, trunk, retain_graph=True)
        norms.append(float(torch.sqrt(sum((g * g).sum() for g in grads))))
    return norms[0], norms[1]


def measure_gradient_shares(seeds: list[int], steps: int) -> dict:
    """Train each shared variant for ``steps`` and record the two trunk gradients before every update."""
    import lucidrl

    out = {}
    for v in SHARED:
        runs = []
        for seed in seeds:
            model = getattr(lucidrl, v.algo.upper())(ENV, seed=seed, verbose=0, **v.overrides)
            update, rows = model._update, []

            def recording_update(agent, optimizer, batch, cfg, *rest, update=update, rows=rows, model=model):
                pg, vf = trunk_gradient_norms(agent, batch, cfg)
                rows.append({"step": model.num_timesteps, "policy": pg, "value": vf})
                return update(agent, optimizer, batch, cfg, *rest)

            model._update = recording_update
            model.learn(steps)
            runs.append(rows)
        out[v.label] = runs
    return out


def write_gradient_shares(shares: dict, out: Path, steps: int) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    table = [
        "| variant | seeds | updates | median ‖∇ c_v L_value‖ / ‖∇ L_policy‖, first 10% of updates | "
        "median ratio, last 10% | median ‖∇ L_policy‖ | median ‖∇ c_v L_value‖ |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for label, runs in shares.items():
        n = min(len(r) for r in runs)
        ratio = np.array([[row["value"] / max(row["policy"], 1e-12) for row in r[:n]] for r in runs])
        xs = np.array([row["step"] for row in runs[0][:n]])
        ax.plot(xs, np.median(ratio, axis=0), label=f"{label} (median over {len(runs)} seeds)")
        k = max(1, n // 10)
        pol = float(np.median([row["policy"] for r in runs for row in r]))
        val = float(np.median([row["value"] for r in runs for row in r]))
        first, last = float(np.median(ratio[:, :k])), float(np.median(ratio[:, -k:]))
        summary[label] = {
            "seeds": len(runs),
            "updates": n,
            "ratio_first_10pct": first,
            "ratio_last_10pct": last,
            "policy_grad_median": pol,
            "value_grad_median": val,
            "ratio_per_seed_median": [float(np.median(x)) for x in ratio],
            "first_update": [[r[0]["policy"], r[0]["value"]] for r in runs],
        }
        table.append(f"| {label} | {len(runs)} | {n} | {first:.3g} | {last:.3g} | {pol:.3g} | {val:.3g} |")
    ax.set_yscale("log")
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("‖∇_trunk c_v L_value‖ / ‖∇_trunk L_policy‖")
    ax.set_title(f"{ENV}: which loss drives the shared trunk (before each update)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "grad_shares.png", dpi=120)
    plt.close(fig)
    (out / "grad_shares.md").write_text(
        f"# {ENV}: the two gradients in the shared trunk\n\n{steps} env steps per run; norms over all trunk "
        "parameters, on each update's whole batch, before the update.\n\n" + "\n".join(table) + "\n"
    )
    (out / "grad_shares.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    args = parse_args("shared_trunk", __doc__.splitlines()[0])
    out = Path(args.out)
    paths = compare_variants(
        VARIANTS,
        ENV,
        seeds=args.seeds,
        timesteps=budget(args, 100_000, 4_096),
        out=out,
        n_jobs=args.jobs,
        force=args.force,
    )
    paths["explained_variance"] = plot_curves(
        group_runs(load_results(out)),
        out / "explained_variance.png",
        metric="diag/explained_variance",
        ylabel="explained variance of V on each batch",
        title=f"{ENV}: how well the critic fits (mean over seeds, 95% band)",
    )
    seeds = list(range(args.seeds))
    steps = budget(args, GRAD_STEPS, 2_048)
    write_gradient_shares(measure_gradient_shares(seeds, steps), out, steps)
    paths["grad_shares"] = out / "grad_shares.png"
    print(paths["table"].read_text())
    print((out / "grad_shares.md").read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
