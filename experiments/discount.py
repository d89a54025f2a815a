"""Should γ depend on the episode length? And are the first actions' rewards always larger?

In CartPole every step pays r = +1 until the pole falls or the time limit T cuts the episode. The
discounted return-to-go of step t of an episode that survives to the limit is

    (E1)  G_t = Σ_{k=0}^{T−t−1} γ^k · 1 = (1 − γ^{T−t}) / (1 − γ),

largest at t = 0 and falling to 1 at t = T − 1: early steps get larger returns only because more
reward lies ahead of them, not because their actions were better. The discount caps it:

    (E2)  G_t < Σ_{k≥0} γ^k = 1 / (1 − γ) =: H,

the *effective horizon*: a reward k steps ahead weighs γ^k, and γ^H ≈ e^{−1}. When T − t ≫ H, G_t ≈ H
whatever t is. The cut at T is a time limit, not a failure, so lucidrl bootstraps it with the value
of the last state (``lucidrl.advantages``; experiment 2); the target of step t is then

    (E3)  G_t^boot = Σ_{k=0}^{T−t−1} γ^k + γ^{T−t} V(s_T),   = H for every t if V ≡ H,

so a critic that cannot see t can be right, and none of E1's decline is needed.

The comparison: PPO on CartPole-v1 (lucidrl's preset, the zoo's: γ = 0.98, λ = 0.8), 50k env steps,
γ ∈ {0.9, 0.95, 0.99, 0.999} × time limit T ∈ {100, 500} (500: the env's own; 100:
``env_wrappers.time_limit_100``, a gymnasium TimeLimit). H = 10, 20, 100, 1000 steps. Measured:
the final return as a fraction of T; and, for every trained run, the critic's V(s_t) along one greedy
episode of 500 steps, set against E1 and E3. E1 and E3 are also checked against
``lucidrl.advantages.discounted_returns`` on a 500-step episode of +1 rewards.

    python experiments/discount.py            # 5 seeds; 33 min at --jobs 1 on 2 shared, loaded cores
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from _common import budget, parse_args

import lucidrl
from lucidrl.advantages import discounted_returns
from lucidrl.compare import Variant, compare_variants, load_results

ENV = "CartPole-v1"
GAMMAS = (0.9, 0.95, 0.99, 0.999)
LIMITS = {100: "env_wrappers:time_limit_100", 500: ""}  # T: the wrapper that sets it ("": the env's own 500)
PROBE_T = 500


def variants(limit: int) -> list[Variant]:
    return [Variant(f"γ={g}", "ppo", {"gamma": g}, wrapper=LIMITS[limit]) for g in GAMMAS]


def closed_form(gamma: float, T: int) -> np.ndarray:
    """(E1): G_t of an episode of T rewards of +1, t = 0..T−1."""
    return (1 - gamma ** (T - np.arange(T))) / (1 - gamma)


def check_equations(T: int = PROBE_T) -> dict[str, dict[str, float]]:
    """E1 and E3 against lucidrl's discounted_returns on one T-step episode of +1 rewards, cut at T."""
    out = {}
    rewards = torch.ones(T, 1, dtype=torch.float64)
    terminated = torch.zeros(T, 1, dtype=torch.bool)
    truncated = torch.zeros(T, 1, dtype=torch.bool)
    truncated[-1] = True
    for g in GAMMAS:
        mc = discounted_returns(rewards, terminated, truncated, g)[:, 0].numpy()
        boot = discounted_returns(
            rewards, terminated, truncated, g, next_values=torch.full((T, 1), 1 / (1 - g), dtype=torch.float64)
        )[:, 0].numpy()
        out[str(g)] = {
            "horizon": 1 / (1 - g),
            "G0": float(mc[0]),
            "G_half": float(mc[T // 2]),
            "G_last": float(mc[-1]),
            "G_first50_mean": float(mc[:50].mean()),
            "G_last50_mean": float(mc[-50:].mean()),
            "e1_max_abs_diff": float(np.abs(mc - closed_form(g, T)).max()),
            "e3_max_abs_diff": float(np.abs(boot - 1 / (1 - g)).max()),
        }
    return out


@torch.no_grad()
def value_along_episode(model, seed: int) -> tuple[float, list[float], str]:
    """One greedy episode of CartPole-v1 cut at PROBE_T steps: its return, the critic's V(s_t) at each step, and
    how it ended: "limit" (cut at PROBE_T), "cart" (|x| > 2.4: the cart left the track) or "pole" (|θ| > 12°)."""
    import gymnasium as gym

    env = gym.make(ENV, max_episode_steps=PROBE_T)
    obs, _ = env.reset(seed=seed)
    values, ret, done = [], 0.0, False
    while not done:
        x = torch.as_tensor(obs, dtype=torch.float32)[None]
        if model.obs_normalizer is not None:
            x = model.obs_normalizer(x)
        values.append(round(float(model.agent.value(x)[0]), 3))
        obs, r, terminated, truncated, _ = env.step(model.predict(obs, deterministic=True)[0])
        ret += float(r)
        done = terminated or truncated
    env.close()
    end = "limit" if not terminated else ("cart" if abs(obs[0]) > 2.4 else "pole")
    return ret, values, end


def plot_returns_to_go(out: Path, runs: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.6), dpi=120)
    t = np.arange(PROBE_T)
    cmap = plt.get_cmap("viridis")
    for i, g in enumerate(GAMMAS):
        color = cmap(i / len(GAMMAS))
        axes[0].plot(t, closed_form(g, PROBE_T), color=color, label=f"γ={g}: G_t (E1), H = {1 / (1 - g):.0f}")
        for ax in axes:
            ax.axhline(1 / (1 - g), color=color, linestyle=":", linewidth=1)
        for limit, style in ((500, "-"), (100, "--")):
            vs = [r["values"] for r in runs if r["gamma"] == g and r["limit"] == limit]
            n = min(len(v) for v in vs)
            if n:
                axes[1].plot(
                    np.arange(n),
                    np.mean([v[:n] for v in vs], axis=0),
                    color=color,
                    linestyle=style,
                    label=f"γ={g}, trained with T={limit}",
                )
    axes[0].plot(t, PROBE_T - t, color="grey", label="γ=1: T − t")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("return-to-go of step t (log scale)")
    axes[0].set_title(f"E1: every reward +1, episode cut at T={PROBE_T}; dotted: H = 1/(1−γ)", fontsize=10)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("critic's V(s_t), mean over seeds (log scale)")
    axes[1].set_title(
        f"trained critics' V(s_t) on one greedy episode (limit {PROBE_T}),\n"
        "mean over seeds up to the shortest seed's end; dotted: H",
        fontsize=10,
    )
    for ax in axes:
        ax.axvline(100, color="black", linewidth=0.8, linestyle="--")
        ax.set_xlabel("time step t")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "returns_to_go.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_horizon(out: Path, runs: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=120)
    rng = np.random.default_rng(0)
    for limit, color in ((100, "tab:orange"), (500, "tab:blue")):
        hs = [1 / (1 - g) for g in GAMMAS]
        means = [
            np.mean([r["eval_mean"] / limit for r in runs if r["gamma"] == g and r["limit"] == limit]) for g in GAMMAS
        ]
        ax.plot(hs, means, "o-", color=color, label=f"time limit T = {limit}: mean over seeds")
        for g in GAMMAS:
            ys = [r["eval_mean"] / limit for r in runs if r["gamma"] == g and r["limit"] == limit]
            ax.scatter(
                np.full(len(ys), 1 / (1 - g)) * np.exp(rng.uniform(-0.06, 0.06, len(ys))),
                ys,
                color=color,
                s=10,
                alpha=0.6,
            )
        ax.axvline(limit, color=color, linestyle="--", linewidth=1, label=f"H = T = {limit}")
    ax.set_xscale("log")
    ax.set_xlabel("effective horizon H = 1/(1−γ) (steps)")
    ax.set_ylabel("final return / T (10 greedy episodes)")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"PPO, {ENV}: final return as a fraction of the limit", fontsize=10)
    fig.tight_layout()
    path = out / "horizon.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def write_summary(out: Path, runs: list[dict], eq: dict, steps: int) -> Path:
    lines = [
        "# Discount factor against the time limit",
        "",
        f"PPO, {ENV}, {steps} env steps per run, lucidrl's preset with γ changed. *Final return / T*: mean of 10 "
        f"greedy episodes under the run's own limit T, divided by T. *Greedy {PROBE_T}*: one greedy episode with "
        f"the limit set to {PROBE_T} (for T = 100 runs: five times longer than training ever saw). "
        f"V(s_t): the trained critic along that episode, mean over seeds of the mean over t < 50 and over "
        "450 ≤ t < 500 (only episodes that got there). End: how that episode ended: *limit* (cut at 500), "
        "*cart* (|x| > 2.4, the cart left "
        "the track) or *pole* (|θ| > 12°).",
        "",
        "| T | γ | H = 1/(1−γ) | final return / T, mean | per seed | greedy 500-step return, per seed (end) | "
        "V(s_t), t < 50 | V(s_t), t ≥ 450 | E1: G_0 at T | E1: G_0 at 500 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for limit in LIMITS:
        for g in GAMMAS:
            rs = [r for r in runs if r["gamma"] == g and r["limit"] == limit]
            frac = [r["eval_mean"] / limit for r in rs]
            early = [np.mean(r["values"][:50]) for r in rs]
            late = [np.mean(r["values"][450:]) for r in rs if len(r["values"]) >= 500]
            probes = " / ".join(f"{r['probe_return']:.0f} ({r['probe_end']})" for r in rs)
            lines.append(
                f"| {limit} | {g} | {1 / (1 - g):.0f} | {np.mean(frac):.2f} | "
                f"{' / '.join(f'{f:.2f}' for f in frac)} | {probes} "
                f"| {np.mean(early):.1f} | {f'{np.mean(late):.1f}' if late else '—'} "
                f"| {closed_form(g, limit)[0]:.1f} | {closed_form(g, PROBE_T)[0]:.1f} |"
            )
    lines += [
        "",
        f"E1 and E3 against `lucidrl.advantages.discounted_returns` on a {PROBE_T}-step episode of +1 rewards "
        "(max abs difference over t):",
        "",
        "| γ | H | G_0 | G_250 | G_499 | mean G_t, t < 50 | mean G_t, t ≥ 450 | E1 diff | E3 diff (bootstrap V = H) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g, e in eq.items():
        lines.append(
            f"| {g} | {e['horizon']:.0f} | {e['G0']:.2f} | {e['G_half']:.2f} | {e['G_last']:.2f} "
            f"| {e['G_first50_mean']:.1f} | {e['G_last50_mean']:.1f} "
            f"| {e['e1_max_abs_diff']:.1e} | {e['e3_max_abs_diff']:.1e} |"
        )
    path = out / "discount.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = parse_args("discount", __doc__.splitlines()[0])
    out = Path(args.out)
    steps = budget(args, 50_000, 2_048)
    eq = check_equations()
    runs, written = [], []
    for limit in LIMITS:
        sub = out / f"limit_{limit}"
        paths = compare_variants(
            variants(limit), ENV, seeds=args.seeds, timesteps=steps, out=sub, n_jobs=args.jobs, force=args.force
        )
        written += paths.values()
        for r in load_results(sub):
            model = lucidrl.load(Path(r["run_dir"]) / "model")
            ret, values, end = value_along_episode(model, 20_000 + r["seed"])
            runs.append(
                {
                    "limit": limit,
                    "gamma": dict(r["overrides"])["gamma"],
                    "seed": r["seed"],
                    "eval_mean": r["eval_mean"],
                    "probe_return": ret,
                    "probe_end": end,
                    "values": values,
                }
            )
    (out / "discount.json").write_text(
        json.dumps({"env": ENV, "steps": steps, "probe_T": PROBE_T, "equations": eq, "runs": runs})
    )
    written += [
        plot_returns_to_go(out, runs),
        plot_horizon(out, runs),
        write_summary(out, runs, eq, steps),
        out / "discount.json",
    ]
    print((out / "discount.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written))
