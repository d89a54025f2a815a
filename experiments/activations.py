"""ReLU or tanh? What the hidden activation changes, with and without observation normalisation and orthogonal init.

A hidden layer computes h = φ(W x + b). With φ = ReLU, h = max(0, z): a unit whose pre-activation z is
negative on every input the network sees outputs 0 everywhere, passes no gradient (φ'(z) = 0 there)
and stays that way: a *dead* unit. With φ = tanh, φ'(z) = 1 − tanh²(z): a unit with |tanh(z)| > 0.99
has φ' < 0.02, so it passes almost no gradient either: a *saturated* unit. Both failures are driven by
the scale of z, i.e. of the weights (the init) and of the inputs (observation normalisation).

The comparisons (lucidrl's CartPole-v1 presets, the zoo's, with one change each):

* PPO, 50k env steps: activation ∈ {tanh, ReLU} × observation normalisation ∈ {off, on}
  (``normalize_obs``: running mean and std, ``lucidrl.envs.normalize``) × init ∈ {orthogonal
  (``ortho_init=True``, the preset), PyTorch's default (``ortho_init=False``)}: 8 variants;
* DQN, 50k env steps (its preset's budget), 3 seeds (a DQN step costs far more than a PPO step):
  activation ∈ {ReLU (the preset), tanh}. lucidrl's DQN has no obs-normalisation or init switch.

After training, every run's networks are loaded from its run directory (``lucidrl.load``) and fed a
probe batch: the states its own policy visits (sampling its actions, 2,000 steps of CartPole-v1).
Forward hooks on every activation module record the hidden outputs h (units × states). Per network:

* dead fraction (ReLU): units with h = 0 on every probe state;
* saturated fraction (tanh): units with |h| > 0.99 on at least 99% of the probe states.

The same is measured on the untrained networks (same seed, states of the untrained policy), and the
gradient norm ‖∇θ L‖ before clipping is read from the runs' logs (``diag/grad_norm``, the mean over the
minibatches of each update).

    python experiments/activations.py            # 5 seeds (DQN 3); 41 min at --jobs 2 on 2 shared, loaded cores
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import torch
from _common import budget, parse_args
from torch import nn

import lucidrl
from lucidrl.agent import ALGORITHMS
from lucidrl.compare import Variant, compare_variants, group_runs, load_results, plot_curves
from lucidrl.plotting import load_curve

ENV = "CartPole-v1"


def ppo_variants() -> list[Variant]:
    out = []
    for act in ("tanh", "relu"):
        for ortho in (True, False):
            for norm in (False, True):
                label = act + ("" if ortho else ", default init") + (" + obs norm" if norm else "")
                out.append(Variant(label, "ppo", {"activation": act, "ortho_init": ortho, "normalize_obs": norm}))
    return out


STUDIES = {  # name: (algorithm, variants, full budget, quick budget, most seeds)
    "ppo": ("ppo", ppo_variants(), 50_000, 2_048, None),
    "dqn": (
        "dqn",
        [Variant("relu (preset)", "dqn", {"activation": "relu"}), Variant("tanh", "dqn", {"activation": "tanh"})],
        50_000,
        2_048,
        3,
    ),  # DQN is ~8x slower a step
}


def probe_states(model, n: int, seed: int) -> np.ndarray:
    """n observations of ENV visited by the model's own (sampling) policy, raw as the env gives them."""
    import gymnasium as gym

    env = gym.make(ENV)
    obs, _ = env.reset(seed=seed)
    states = []
    while len(states) < n:
        states.append(obs)
        obs, _, terminated, truncated, _ = env.step(model.predict(obs, deterministic=False)[0])
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.asarray(states, dtype=np.float32)


@torch.no_grad()
def unit_statistics(model, states: np.ndarray) -> dict[str, dict[str, float]]:
    """Per network (actor, critic or q): the fractions of dead and of saturated hidden units on ``states``."""
    x = torch.as_tensor(states)
    if getattr(model, "obs_normalizer", None) is not None:
        x = model.obs_normalizer(x)
    nets = {"q": model.q_net} if hasattr(model, "q_net") else {"actor": model.agent.actor, "critic": model.agent.critic}
    out = {}
    for name, net in nets.items():
        outputs: list[torch.Tensor] = []
        hooks = [
            m.register_forward_hook(lambda _m, _i, h, outputs=outputs: outputs.append(h))
            for m in net.modules()
            if isinstance(m, (nn.ReLU, nn.Tanh))
        ]
        net(x) if name == "q" else (model.agent.policy_params(x) if name == "actor" else model.agent.value(x))
        for h in hooks:
            h.remove()
        h = torch.cat(outputs, dim=1)  # [states, all hidden units of this network]
        out[name] = {
            "units": h.shape[1],
            "dead": (h == 0).all(0).float().mean().item(),
            "saturated": ((h.abs() > 0.99).float().mean(0) >= 0.99).float().mean().item(),
            "zero_output_share": (h == 0).float().mean().item(),
        }
    return out


def median_logged(run_dir: str, metric: str) -> float | None:
    try:
        return statistics.median(load_curve(run_dir, metric)[1])
    except Exception:  # a run too short to have logged it
        return None


def probe_study(algo: str, variants: list[Variant], out: Path, n_states: int) -> list[dict]:
    by_label = {v.label: v for v in variants}
    rows = []
    for r in load_results(out):
        v = by_label[r["label"]]
        trained = lucidrl.load(Path(r["run_dir"]) / "model")
        fresh = ALGORITHMS[algo](ENV, seed=r["seed"], verbose=0, **(v.overrides or {}))  # the same init, untrained
        rows.append(
            {
                "label": r["label"],
                "seed": r["seed"],
                "activation": v.overrides["activation"],
                "eval_mean": r["eval_mean"],
                "grad_norm_median": median_logged(r["run_dir"], "diag/grad_norm"),
                "init": unit_statistics(fresh, probe_states(fresh, n_states, 10_000 + r["seed"])),
                "trained": unit_statistics(trained, probe_states(trained, n_states, 10_000 + r["seed"])),
            }
        )
    return rows


def inactive(row: dict, when: str) -> float:
    """The failure that belongs to the activation: dead units for ReLU, saturated ones for tanh (all networks)."""
    key = "dead" if row["activation"] == "relu" else "saturated"
    nets = row[when].values()
    return sum(n[key] * n["units"] for n in nets) / sum(n["units"] for n in nets)


def fmt(xs: list[float], spec: str = ".1f") -> str:
    return " / ".join(format(x, spec) for x in xs)


def write_summary(out: Path, rows: dict[str, list[dict]], steps: dict[str, int]) -> Path:
    lines = [
        "# ReLU or tanh: returns, dead and saturated units, gradient norms",
        "",
        "Probe: the states each network's own policy visits (sampling), "
        f"{rows['ppo'][0]['probe_states']} per run. *Inactive units*: for ReLU the dead ones (output 0 on "
        "every probe state), for tanh the saturated ones (|output| > 0.99 on ≥ 99% of the probe states), as a "
        "share of all hidden units of the run's networks (actor + critic, or the Q-network). "
        "Grad norm: median over the run of the logged ‖∇L‖ before clipping (diag/grad_norm).",
        "",
    ]
    for study, srows in rows.items():
        lines += [
            f"## {study.upper()}, {ENV}, {steps[study]} env steps",
            "",
            "| variant | final return, mean | final return, per seed | inactive units at init, mean | "
            "inactive units trained, mean (max) | trained, by network | ReLU outputs that are 0, trained | "
            "median grad norm |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label in dict.fromkeys(r["label"] for r in srows):
            g = [r for r in srows if r["label"] == label]
            zero = [
                sum(n["zero_output_share"] * n["units"] for n in r["trained"].values())
                / sum(n["units"] for n in r["trained"].values())
                for r in g
            ]
            gn = [r["grad_norm_median"] for r in g if r["grad_norm_median"] is not None]
            trained = [inactive(r, "trained") for r in g]
            key = "dead" if g[0]["activation"] == "relu" else "saturated"
            by_net = ", ".join(f"{n} {np.mean([r['trained'][n][key] for r in g]):.1%}" for n in g[0]["trained"])
            lines.append(
                f"| {label} | {np.mean([r['eval_mean'] for r in g]):.1f} | {fmt([r['eval_mean'] for r in g], '.0f')} "
                f"| {np.mean([inactive(r, 'init') for r in g]):.1%} "
                f"| {np.mean(trained):.1%} ({max(trained):.1%}) | {by_net} "
                f"| {f'{np.mean(zero):.0%}' if g[0]['activation'] == 'relu' else '—'} "
                f"| {f'{statistics.median(gn):.3g}' if gn else 'n/a'} |"
            )
        lines.append("")
    path = out / "units.md"
    path.write_text("\n".join(lines))
    return path


def plot_units(out: Path, rows: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), dpi=120)
    rng = np.random.default_rng(0)
    for i, label in enumerate(labels):
        g = [r for r in rows if r["label"] == label]
        color = "tab:red" if g[0]["activation"] == "relu" else "tab:blue"
        for j, when in enumerate(("init", "trained")):
            ys = [100 * inactive(r, when) for r in g]
            x = i + (j - 0.5) * 0.35
            axes[0].bar(x, np.mean(ys), width=0.33, color=color, alpha=0.35 if when == "init" else 0.85)
            axes[0].scatter(x + rng.uniform(-0.06, 0.06, len(ys)), ys, color="black", s=8, zorder=3)
        gn = [r["grad_norm_median"] for r in g if r["grad_norm_median"] is not None]
        axes[1].scatter(np.full(len(gn), i) + rng.uniform(-0.1, 0.1, len(gn)), gn, color=color, s=18)
    axes[0].set_ylabel("inactive hidden units (%): ReLU dead, tanh saturated")
    axes[0].set_title("per variant: at init (light) and after training (dark); dots: seeds", fontsize=10)
    axes[1].set_ylabel("median logged ‖∇L‖ before clipping")
    axes[1].set_yscale("log")
    axes[1].set_title("gradient norm over training, one dot per seed", fontsize=10)
    for ax in axes:
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path = out / "units.png"
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = parse_args("activations", __doc__.splitlines()[0])
    out = Path(args.out)
    n_states = budget(args, 2_000, 256)
    rows, steps, written = {}, {}, []
    for study, (algo, variants, full, quick, most_seeds) in STUDIES.items():
        steps[study] = budget(args, full, quick)
        sub = out / f"{algo}_{ENV.split('-')[0].lower()}"
        paths = compare_variants(
            variants,
            ENV,
            seeds=min(args.seeds, most_seeds or args.seeds),
            timesteps=steps[study],
            out=sub,
            n_jobs=args.jobs,
            force=args.force,
        )
        paths["grad_norm"] = plot_curves(
            group_runs(load_results(sub)),
            sub / "grad_norm.png",
            metric="diag/grad_norm",
            ylabel="‖∇L‖ before clipping (diag/grad_norm)",
            log_y=True,
            title=f"{ENV}, {algo.upper()}: gradient norm (mean over seeds, 95% band)",
        )
        rows[study] = probe_study(algo, variants, sub, n_states)
        for r in rows[study]:
            r["probe_states"] = n_states
        paths["units"] = plot_units(sub, rows[study])
        written += paths.values()
    (out / "units.json").write_text(
        json.dumps({"env": ENV, "steps": steps, "probe_states": n_states, "runs": rows}, indent=1)
    )
    summary = write_summary(out, rows, steps)
    print(summary.read_text())
    print("wrote " + ", ".join(str(p) for p in [*written, summary, out / "units.json"]))
