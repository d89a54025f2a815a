"""Why does DQN replay old transitions, and what do big, infrequent updates do?

DQN (``lucidrl.algos.dqn``) regresses Q_θ(s, a) on y = r + γ max_a' Q_θ⁻(s', a') (E2) with the Huber
loss (E3) on minibatches drawn uniformly from a replay memory D, L(θ) = E_{(s,a,r,s')~U(D)}[ℓ(y − Q_θ(s, a))]
(``lucidrl.replay.ReplayBuffer``), and copies θ into the target network θ⁻ every C steps (E4). The same
DQN learns CartPole-v1 eight ways, everything else from lucidrl's CartPole-v1 preset (the zoo's: batch
64, a round of 128 gradient steps every 256 env steps, θ⁻ ← θ once per round, so a lag of 128 gradient
steps). A "replay ratio" below is how many times a transition is drawn, on average: gradient steps ×
batch size / env steps.

The replay memory (same target lag, 128 gradient steps or 256 env steps):

* ``replay 100k (preset)``: |D| = 100,000 (every transition of the run), replay ratio 32;
* ``replay 1k``: |D| = 1,000, the newest ~4 rounds of data; replay ratio 32;
* ``online, each used once``: |D| = 64 = the batch size, one gradient step every 64 env steps, so
  each step uses the 64 newest transitions (drawn with replacement) and each transition is drawn about
  once (replay ratio 1, 1/32 of the preset's gradient steps); θ⁻ ← θ every 256 env steps, which is
  every 4 gradient steps here;
* ``online, each used once, lag 128``: the same, with θ⁻ ← θ every 8,192 env steps (128 gradient steps);
* ``online, newest 64, same updates``: |D| = 64, one gradient step every 2 env steps (as many gradient
  steps as the preset, replay ratio 32), each on the 64 newest transitions: a sliding window of about
  one episode; θ⁻ ← θ every 256 env steps (128 gradient steps).

Big, infrequent updates (replay 100k, replay ratio 32; rounds of 8 gradient steps every 16 env steps
instead of 128 every 256):

* ``small rounds, lag 128``: the preset's target lag, but the behaviour policy changes 16× as often
  and by 16× fewer steps each time;
* ``small rounds, lag 8`` and ``small rounds, lag 1280``: θ⁻ ← θ every 16 and every 2,560 env steps.

Budget: 30k env steps a run (the preset is tuned for 50k). Outputs in docs/experiments/replay/: the
comparison (learning_curves.png with all eight, final_returns.png, results.md, results.json),
learning_curves_replay.png and learning_curves_updates.png (the two groups), q_values.png and
td_loss.png (the logged ``diag/q_mean`` and ``loss/value``), and diagnostics.json / diagnostics.md
(per variant and seed: gradient steps, the last and the largest logged mean Q).

    python experiments/replay.py            # 5 seeds, ~25 min at --jobs 2 on 2 busy cores
"""

from __future__ import annotations

import json
from pathlib import Path

from _common import budget, parse_args

from lucidrl.compare import Variant, compare_variants, group_runs, load_results, plot_curves
from lucidrl.plotting import load_curve

ENV = "CartPole-v1"
GAMMA = 0.99
THRESHOLD = 100.0  # a logged return (mean of the last 100 training episodes, so it lags the policy) showing learning
ONLINE = {"buffer_size": 64, "gradient_steps": 1, "target_update_interval": 256}  # batch_size 64 (preset)
SMALL = {"train_freq": 16, "gradient_steps": 8}  # the preset's ratio of gradient steps to env steps, 16x finer
REPLAY = [
    "replay 100k (preset)",
    "replay 1k",
    "online, each used once",
    "online, each used once, lag 128",
    "online, newest 64, same updates",
]
UPDATES = ["replay 100k (preset)", "small rounds, lag 128", "small rounds, lag 8", "small rounds, lag 1280"]
VARIANTS = [
    Variant("replay 100k (preset)", "dqn", {}),
    Variant("replay 1k", "dqn", {"buffer_size": 1_000}),
    Variant("online, each used once", "dqn", {**ONLINE, "train_freq": 64}),
    Variant("online, each used once, lag 128", "dqn", {**ONLINE, "train_freq": 64, "target_update_interval": 8_192}),
    Variant("online, newest 64, same updates", "dqn", {**ONLINE, "train_freq": 2}),
    Variant("small rounds, lag 128", "dqn", {**SMALL, "target_update_interval": 256}),
    Variant("small rounds, lag 8", "dqn", {**SMALL, "target_update_interval": 16}),
    Variant("small rounds, lag 1280", "dqn", {**SMALL, "target_update_interval": 2_560}),
]


def diagnostics(groups: dict[str, list[dict]]) -> dict:
    """Per variant and seed: gradient steps taken, the last and the largest logged mean Q, the last TD loss."""
    out = {}
    for label, runs in groups.items():
        rows = []
        for r in runs:
            _, q = load_curve(r["run_dir"], "diag/q_mean")
            _, loss = load_curve(r["run_dir"], "loss/value")
            _, n_updates = load_curve(r["run_dir"], "train/n_updates")
            steps, returns = load_curve(r["run_dir"])
            first = next((int(t) for t, g in zip(steps, returns) if g >= THRESHOLD), None)
            rows.append(
                {
                    "seed": r["seed"],
                    "eval_mean": r["eval_mean"],
                    "gradient_steps": int(n_updates[-1]),
                    "steps_to_threshold": first,
                    "q_last": q[-1],
                    "q_max": max(q),
                    "td_loss_last": loss[-1],
                }
            )
        out[label] = rows
    return out


def write_diagnostics(out: Path, diag: dict) -> Path:
    lines = [
        "# Logged diagnostics per variant and seed",
        "",
        "gradient steps taken; mean Q(s, a) over the last logged round's minibatches (q_last) and the largest "
        f"logged (q_max), against the largest discounted return, Σ_(t<500) γ^t ≈ {(1 - GAMMA**500) / (1 - GAMMA):.1f}; "
        f"the last logged Huber TD loss; the env steps at which the logged return (mean of the last 100 training "
        f"episodes) first reached {THRESHOLD:g} ('-': never).",
        "",
        f"| variant | seed | final return | gradient steps | q_last | q_max | TD loss, last | steps to {THRESHOLD:g} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, rows in diag.items():
        for r in rows:
            lines.append(
                f"| {label} | {r['seed']} | {r['eval_mean']:.1f} | {r['gradient_steps']} | {r['q_last']:.1f} "
                f"| {r['q_max']:.1f} | {r['td_loss_last']:.3g} | {r['steps_to_threshold'] or '-'} |"
            )
    path = out / "diagnostics.md"
    path.write_text("\n".join(lines) + "\n")
    (out / "diagnostics.json").write_text(json.dumps(diag, indent=1))
    return path


if __name__ == "__main__":
    args = parse_args("replay", __doc__.splitlines()[0])
    out = Path(args.out)
    paths = compare_variants(
        VARIANTS,
        ENV,
        seeds=args.seeds,
        timesteps=budget(args, 30_000, 1_500),
        out=out,
        n_jobs=args.jobs,
        force=args.force,
    )
    groups = group_runs(load_results(out))
    for name, labels in (("replay", REPLAY), ("updates", UPDATES)):
        paths[f"curves_{name}"] = plot_curves(
            {k: groups[k] for k in labels},
            out / f"learning_curves_{name}.png",
            title=f"{ENV}: mean over seeds, 95% bootstrap band",
        )
    paths["q_values"] = plot_curves(
        groups,
        out / "q_values.png",
        metric="diag/q_mean",
        ylabel="mean Q(s, a) on the minibatches",
        title=f"{ENV}: the Q estimates, mean over seeds, 95% bootstrap band",
        reference=((1 - GAMMA**500) / (1 - GAMMA), "largest possible: Σ γ^t over 500 steps"),
        log_y=True,
    )
    paths["td_loss"] = plot_curves(
        groups,
        out / "td_loss.png",
        metric="loss/value",
        ylabel="Huber TD loss (E3)",
        title=f"{ENV}: TD loss, mean over seeds, 95% bootstrap band",
        log_y=True,
    )
    paths["diagnostics"] = write_diagnostics(out, diagnostics(groups))
    print(paths["table"].read_text())
    print(paths["diagnostics"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
