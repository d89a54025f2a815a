"""Why does TRPO maximise a likelihood ratio instead of the log-probability, and why only within a KL limit?

The policy gradient can be written as the gradient of ``E[log π_θ(a|s) Â]`` or of TRPO's surrogate
``L(θ) = E[π_θ(a|s) / π_old(a|s) · Â]`` (``lucidrl.algos.trpo``, E1): at θ = θ_old the two have the
same gradient. Importance sampling makes L, at every θ, an estimate of how much better π_θ is than
π_old (with π_old's states), from data π_old collected; the log-probability objective's change,
E[log r Â], matches it only to first order in θ − θ_old. The line search (E8) needs such a value:
it evaluates candidate steps on the old batch. Two measurements:

1. **A one-step problem** (a contextual bandit: a state, an action, a reward, the end). The states
   do not depend on the policy, so the true improvement J(θ) − J(θ_old) is known exactly. Along
   TRPO's step direction, the ratio surrogate is compared with it, and so is the log-probability
   objective.
2. **CartPole-v1**, where the policy also changes which states are visited. A TRPO policy after
   10k steps (lucidrl's preset) collects 300 episodes. Along its natural-gradient step, scaled
   from 0 to 8 times the step TRPO would take (KL = δ = 0.01), the surrogate's prediction of the
   change in discounted return (Kakade & Langford 2002; TRPO paper eqs. 1-3),
   E_τ∼π_old[Σ_t γ^t (r_t(θ) − 1) Â_t], is compared with the change measured by running π_θ for
   2,000 episodes, on the same env seeds and sampling noise as π_old's 2,000 (common random
   numbers, so the difference is measured more precisely than either return).

    python experiments/surrogate.py            # ~15 s on a 2-core machine
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _common import budget, parse_args

from lucidrl.advantages import gae, normalize
from lucidrl.algos.trpo import fisher_vector_product, mean_kl, surrogate_advantage
from lucidrl.linalg import conjugate_gradient, flat_grad, get_flat_params, set_flat_params
from lucidrl.networks import CategoricalHead

DELTA = 0.01  # TRPO's δ (the preset's target_kl)
SCALES = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]


def natural_step(
    actor: torch.nn.Module,
    head: CategoricalHead,
    obs: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    damping: float = 1e-3,
) -> torch.Tensor:
    """TRPO's full step (E4-E7) at the actor's current weights: s ≈ F⁻¹g scaled so that ½ sᵀFs = δ."""
    params = list(actor.parameters())
    logits = actor(obs)
    logp = head.log_prob(logits, actions)
    surrogate = surrogate_advantage(logp, logp.detach(), normalize(advantages))  # (E1) with normalised Â, as TRPO
    g = flat_grad(surrogate, params, retain_graph=True)  # (E4)
    fvp = fisher_vector_product(mean_kl(head, logits.detach(), logits), params, damping)  # (E5)
    s, cg = conjugate_gradient(fvp, g, 10)  # (E6)
    return math.sqrt(2 * DELTA / cg["xAx"]) * s.detach()  # (E7)


# --------------------------------------------------------------------------- 1. a one-step problem
def bandit(n_states: int, seed: int = 0) -> dict:
    """Exact J(θ) − J(θ_old) against the ratio surrogate and the log-probability objective along TRPO's step."""
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(n_states, 4, generator=g)
    reward_w = torch.randn(4, 3, generator=g)
    rewards = states @ reward_w  # r(s, a): every action's reward, known exactly
    torch.manual_seed(seed)
    actor = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    head, params = CategoricalHead(3), list(actor.parameters())
    with torch.no_grad():
        logits_old = actor(states)
        p_old = logits_old.softmax(-1)
    actions = torch.multinomial(p_old, 1, generator=g).squeeze(-1)  # one action per state, from π_old
    baseline = (p_old * rewards).sum(-1)  # V_old(s), exact
    adv = rewards.gather(-1, actions[:, None]).squeeze(-1) - baseline  # A_old(s, a), exact
    logp_old = head.log_prob(logits_old, actions)
    theta_old = get_flat_params(params)
    step = natural_step(actor, head, states, actions, adv)
    rows = []
    for scale in SCALES:
        set_flat_params(params, theta_old + scale * step)
        with torch.no_grad():
            logits = actor(states)
            p = logits.softmax(-1)
            log_ratio = head.log_prob(logits, actions) - logp_old
            rows.append(
                {
                    "scale": scale,
                    "kl": float(head.kl(logits_old, logits).mean()),
                    "true": float(((p - p_old) * rewards).sum(-1).mean()),  # exact, over every action
                    "ratio": float(((log_ratio.exp() - 1) * adv).mean()),  # (E1) minus L(θ_old)
                    "log": float((log_ratio * adv).mean()),
                }
            )
    set_flat_params(params, theta_old)
    return {"n_states": n_states, "rows": rows}


# --------------------------------------------------------------------------- 2. CartPole
def run_episodes(actor: torch.nn.Module, critic: torch.nn.Module | None, n: int, seed: int, gamma: float) -> dict:
    """``n`` CartPole episodes with the stochastic policy, all at once in Gymnasium's native vector env.

    Env seeds and the uniform numbers that pick the actions depend only on ``seed``, so two policies
    run with the same seed share their randomness (common random numbers). Returns the discounted
    returns, and with a critic the [T, n] arrays of a batch (padding after each episode's end).
    """
    env = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    alive = np.ones(n, dtype=bool)
    disc = np.zeros(n)
    t = 0
    rec = {k: [] for k in ("obs", "actions", "rewards", "terminated", "truncated", "alive", "final_obs")}
    while alive.any():
        with torch.no_grad():
            p = actor(torch.as_tensor(obs, dtype=torch.float32)).softmax(-1).numpy()
        u = rng.random(n)
        actions = (u > p[:, 0]).astype(np.int64)  # inverse-CDF sampling: the same u for every policy
        next_obs, r, term, trunc, _ = env.step(actions)
        disc += alive * gamma**t * r
        if critic is not None:
            for k, v in (
                ("obs", obs),
                ("actions", actions),
                ("rewards", r * alive),
                ("terminated", term | ~alive),
                ("truncated", trunc & alive),
                ("alive", alive.copy()),
                ("final_obs", next_obs),
            ):
                rec[k].append(np.asarray(v))
        alive &= ~(term | trunc)
        obs = next_obs
        t += 1
    env.close()
    out = {"discounted": disc}
    if critic is not None:
        out.update({k: np.stack(v) for k, v in rec.items()})
    return out


def cartpole(snapshot_steps: int, n_batch: int, n_eval: int, seed: int = 0) -> dict:
    from lucidrl import TRPO

    torch.set_num_threads(1)
    model = TRPO("CartPole-v1", seed=seed, verbose=0).learn(snapshot_steps)
    cfg, actor, critic, head = model.config, model.agent.actor, model.agent.critic, model.agent.head
    params = list(actor.parameters())
    theta_old = get_flat_params(params)
    b = run_episodes(actor, critic, n_batch, seed=10_000, gamma=cfg.gamma)
    T, N = b["rewards"].shape
    with torch.no_grad():
        obs = torch.as_tensor(b["obs"], dtype=torch.float32)
        values = critic(obs).squeeze(-1) * torch.as_tensor(b["alive"])
        # V(s_{t+1}) of the true next state: the row's next observation (the final one at an episode's end);
        # masked by gae where terminated, which padding rows after an episode's end are marked
        next_values = critic(torch.as_tensor(b["final_obs"], dtype=torch.float32)).squeeze(-1)
        trunc = torch.as_tensor(b["truncated"])
        adv, _ = gae(
            torch.as_tensor(b["rewards"], dtype=torch.float32),
            values,
            next_values,
            torch.as_tensor(b["terminated"]),
            trunc,
            cfg.gamma,
            cfg.gae_lambda,
        )  # Â_t, as TRPO's
    alive = torch.as_tensor(b["alive"])
    actions = torch.as_tensor(b["actions"])
    discount = (cfg.gamma ** torch.arange(T, dtype=torch.float32))[:, None] * alive  # γ^t on real steps
    with torch.no_grad():
        logits_old = actor(obs)
        logp_old = head.log_prob(logits_old, actions)
    step = natural_step(actor, head, obs[alive], actions[alive], adv[alive], cfg.cg_damping)
    base = run_episodes(actor, None, n_eval, seed=20_000, gamma=cfg.gamma)["discounted"]
    rows = []
    for scale in SCALES:
        set_flat_params(params, theta_old + scale * step)
        with torch.no_grad():
            logits = actor(obs)
            log_ratio = head.log_prob(logits, actions) - logp_old
            kl = float(mean_kl(head, logits_old[alive], logits[alive]))
            ratio_pred = float(((log_ratio.exp() - 1) * adv * discount).sum(0).mean())  # per episode, then mean
            log_pred = float((log_ratio * adv * discount).sum(0).mean())
        diff = run_episodes(actor, None, n_eval, seed=20_000, gamma=cfg.gamma)["discounted"] - base
        rows.append(
            {
                "scale": scale,
                "kl": kl,
                "ratio": ratio_pred,
                "log": log_pred,
                "true": float(diff.mean()),
                "true_se": float(diff.std(ddof=1) / math.sqrt(n_eval)) if scale else 0.0,
            }
        )
    set_flat_params(params, theta_old)
    return {
        "snapshot_steps": snapshot_steps,
        "n_batch_episodes": n_batch,
        "batch_steps": int(alive.sum()),
        "n_eval_episodes": n_eval,
        "mean_discounted_return_old": float(base.mean()),
        "mean_episode_length_batch": float(alive.sum(0).float().mean()),
        "gamma": cfg.gamma,
        "rows": rows,
    }


# --------------------------------------------------------------------------- report
def write_report(out: Path, one_step: dict, cart: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "surrogate.json").write_text(json.dumps({"one_step": one_step, "cartpole": cart}, indent=1))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for ax, data, title, unit in (
        (axes[0], one_step, f"one-step problem ({one_step['n_states']} states): exact", "J(θ) − J(θ_old)"),
        (axes[1], cart, f"CartPole-v1: {cart['n_eval_episodes']} episodes per point", "change in discounted return"),
    ):
        rows = data["rows"]
        kl = [r["kl"] for r in rows]
        ax.plot(kl, [r["true"] for r in rows], "o-", color="black", label="true change")
        if "true_se" in rows[0]:
            ax.errorbar(
                kl,
                [r["true"] for r in rows],
                yerr=[1.96 * r["true_se"] for r in rows],
                fmt="none",
                color="black",
                capsize=3,
            )
        ax.plot(kl, [r["ratio"] for r in rows], "s--", color="C0", label="ratio surrogate (TRPO, E1)")
        ax.plot(kl, [r["log"] for r in rows], "^:", color="C3", label="log-probability objective")
        ax.axvline(DELTA, color="gray", linewidth=1, linestyle="--", label=f"δ = {DELTA} (TRPO's limit)")
        shown = [r[k] for r in rows for k in ("true", "ratio")]
        pad = 0.15 * (max(shown) - min(shown))
        low, high = min(shown) - pad, max(shown) + pad
        off = [f"{r['log']:.3g}" for r in rows if not low <= r["log"] <= high]
        if off:  # the log-probability objective leaves the chart: say where it went instead of squashing the rest
            ax.set_ylim(low, high)
            ax.text(
                0.98,
                0.04,
                "log-probability objective off the chart: " + ", ".join(off),
                transform=ax.transAxes,
                ha="right",
                fontsize=8,
                color="C3",
            )
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.set_xlim(left=0)
        ax.set_xlabel("mean KL(π_old ‖ π_θ) along TRPO's step direction")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = out / "surrogate.png"
    fig.savefig(png)
    plt.close(fig)
    lines = ["# The surrogate along TRPO's step direction", ""]
    for name, data in (("One-step problem (exact)", one_step), ("CartPole-v1", cart)):
        lines += [
            f"## {name}",
            "",
            "| step / TRPO's step | mean KL | true change | ratio surrogate | log-probability |",
            "|---|---|---|---|---|",
        ]
        for r in data["rows"]:
            true = f"{r['true']:.3f}" + (f" ± {1.96 * r['true_se']:.3f}" if r.get("true_se") else "")
            lines.append(f"| {r['scale']:g} | {r['kl']:.4f} | {true} | {r['ratio']:.3f} | {r['log']:.3f} |")
        lines.append("")
    lines.append(
        f"CartPole: the policy is TRPO (lucidrl's preset) after {cart['snapshot_steps']} env steps, mean "
        f"discounted return {cart['mean_discounted_return_old']:.2f} (γ = {cart['gamma']}); batch of "
        f"{cart['n_batch_episodes']} episodes ({cart['batch_steps']} steps); true change ± 1.96 standard "
        f"errors of the paired differences over {cart['n_eval_episodes']} episodes."
    )
    table = out / "surrogate.md"
    table.write_text("\n".join(lines) + "\n")
    return [png, table]


if __name__ == "__main__":
    args = parse_args("surrogate", __doc__.splitlines()[0], seeds=1)
    one = bandit(budget(args, 20_000, 500))
    cart = cartpole(budget(args, 10_240, 2_048), budget(args, 300, 20), budget(args, 2_000, 50))
    paths = write_report(Path(args.out), one, cart)
    print((Path(args.out) / "surrogate.md").read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
