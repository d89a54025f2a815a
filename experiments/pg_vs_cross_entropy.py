"""Is the policy-gradient loss just a cross-entropy? And if so, why is RL so much slower than supervised learning?

Two parts:

1. **The identity, numerically.** For a categorical policy π_θ(a|s) = softmax(z_θ(s))_a, the
   cross-entropy of the logits z against a label a is CE(z, a) = −log softmax(z)_a = −log π(a|s).
   So the policy-gradient pseudo-loss (``lucidrl.algos.vpg.policy_gradient_loss``, VPG's E3)
       L_PG(θ) = −(1/N) Σ_i A_i log π_θ(a_i|s_i)
   is the advantage-weighted cross-entropy (1/N) Σ_i A_i CE(z_θ(s_i), a_i), term by term. The
   script checks the value and the gradient on a small policy network (the [64, 64] tanh MLP of
   VPG/REINFORCE) and a batch of states, with actions sampled from the policy itself; and that
   with A ≡ 1 and an expert's actions it is behaviour cloning's loss, F.cross_entropy(z, a).
2. **What differs: where a and A come from.** On CartPole-v1: behaviour cloning (BC) of a PPO
   expert (cross-entropy on the expert's state-action pairs) against REINFORCE (the same loss,
   with the policy's own actions and the reward-to-go as A), on the same network and
   initialisation, 5 seeds: return against env interactions and against gradient steps.

    python experiments/pg_vs_cross_entropy.py   # 5 seeds, 2 min one run at a time (--jobs 1) on an idle 2-core machine
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import budget, parse_args

ENV = "CartPole-v1"
PG_LABEL = "REINFORCE (reward-to-go)"
PG_BATCH = 8 * 250  # REINFORCE's CartPole preset: n_envs x n_steps env steps per gradient step


# --------------------------------------------------------------------------- part 1: the identity
def identity_check(seed: int = 0, n: int = 512) -> dict:
    """Value and gradient of the PG loss and of the A-weighted cross-entropy, in float32 and float64."""
    import gymnasium as gym

    from lucidrl.algos.vpg import policy_gradient_loss
    from lucidrl.networks import ActorCritic

    env = gym.make(ENV)
    out = {"n_states": n, "seed": seed}
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(seed)
        net = ActorCritic(env.observation_space, env.action_space, [64, 64], "tanh", ortho_init=False).to(dtype)
        params = net.actor_parameters()
        g = torch.Generator().manual_seed(seed)
        states = torch.randn(n, 4, generator=g, dtype=dtype) * torch.tensor([1.0, 1.0, 0.1, 1.0], dtype=dtype)
        logits = net.actor(states)  # the policy's MLP (its encoder only casts to float32)
        actions = net.head.sample(logits.detach(), generator=g)  # the policy's own samples
        adv = torch.randn(n, generator=g, dtype=dtype)  # any fixed weights: advantages are constants here

        def value_and_grad(loss: torch.Tensor, params=params) -> tuple[float, torch.Tensor]:
            grads = torch.autograd.grad(loss, params, retain_graph=True)
            return float(loss.detach()), torch.cat([x.flatten() for x in grads])

        pg, g_pg = value_and_grad(policy_gradient_loss(net.head.log_prob(logits, actions), adv))  # lucidrl's (E3)
        ce, g_ce = value_and_grad((F.cross_entropy(logits, actions, reduction="none") * adv).mean())
        # the gradient with respect to the logits, by hand: ∂/∂z [A · CE(z, a)] = A (softmax(z) − onehot(a)) / N
        z = logits.detach().requires_grad_(True)
        (g_z,) = torch.autograd.grad((F.cross_entropy(z, actions, reduction="none") * adv).mean(), z)
        by_hand = adv[:, None] * (z.detach().softmax(-1) - F.one_hot(actions, 2).to(dtype)) / n
        # A ≡ 1 and an expert's labels (a fixed rule: push the cart towards where the pole falls): BC's loss
        expert = (states[:, 2] + 0.5 * states[:, 3] > 0).long()
        bc = float(F.cross_entropy(logits, expert).detach())
        pg1, g_pg1 = value_and_grad(policy_gradient_loss(net.head.log_prob(logits, expert), torch.ones(n, dtype=dtype)))
        _, g_bc = value_and_grad(F.cross_entropy(logits, expert))
        name = str(dtype).replace("torch.", "")
        out[name] = {
            "pg_loss": pg,
            "weighted_ce": ce,
            "value_abs_diff": abs(pg - ce),
            "grad_norm": float(g_pg.norm()),
            "grad_max_abs_diff": float((g_pg - g_ce).abs().max()),
            "grad_rel_diff": float((g_pg - g_ce).norm() / g_pg.norm()),
            "logit_grad_by_hand_max_abs_diff": float((g_z - by_hand).abs().max()),
            "bc_loss": bc,
            "pg_loss_A1_expert": pg1,
            "bc_value_abs_diff": abs(bc - pg1),
            "bc_grad_rel_diff": float((g_pg1 - g_bc).norm() / g_bc.norm()),
            "n_params": int(g_pg.numel()),
        }
    return out


# --------------------------------------------------------------------------- part 2: BC against REINFORCE
def train_expert(timesteps: int, seed: int = 1000):
    from lucidrl import PPO, evaluate

    expert = PPO(ENV, seed=seed, verbose=0).learn(timesteps)  # the zoo's CartPole preset
    mean, _ = evaluate(expert, n_episodes=10, deterministic=True, seed=10_000)
    return expert, float(mean)


def expert_data(expert, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` (state, action) pairs the expert (acting deterministically) produces in fresh episodes."""
    import gymnasium as gym

    env = gym.make(ENV)
    obs_list, act_list, ep = [], [], 0
    while len(obs_list) < n:
        obs, _ = env.reset(seed=seed * 1000 + ep)
        done = False
        while not done and len(obs_list) < n:
            action, _ = expert.predict(obs, deterministic=True)
            obs_list.append(obs)
            act_list.append(int(action))
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        ep += 1
    return np.asarray(obs_list, dtype=np.float32), np.asarray(act_list)


def behaviour_cloning(
    seed: int,
    obs: np.ndarray,
    actions: np.ndarray,
    grad_steps: int,
    checkpoints: list[int],
    eval_episodes: int,
    batch_size: int = 64,
    lr: float = 1e-3,
) -> dict[int, tuple[float, float]]:
    """A fresh REINFORCE network (same architecture and initialisation as REINFORCE's seed) fitted by cross-entropy.

    Returns {gradient steps: (return of the sampling policy, return of the greedy policy)} at ``checkpoints``."""
    from lucidrl import REINFORCE, evaluate

    model = REINFORCE(ENV, seed=seed, verbose=0)  # not trained: its untouched network is the student
    agent = model.agent
    opt = torch.optim.Adam(agent.actor_parameters(), lr=lr)
    x, y = torch.as_tensor(obs), torch.as_tensor(actions)
    g = torch.Generator().manual_seed(seed)
    scores = {}
    for step in range(grad_steps + 1):
        if step in checkpoints:
            scores[step] = (
                evaluate(model, n_episodes=eval_episodes, deterministic=False, seed=20_000 + seed)[0],
                evaluate(model, n_episodes=eval_episodes, deterministic=True, seed=20_000 + seed)[0],
            )
        if step == grad_steps:
            break
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=g)
        loss = F.cross_entropy(agent.policy_params(x[idx]), y[idx])  # BC: maximum likelihood of the expert's actions
        opt.zero_grad()
        loss.backward()
        opt.step()
    return scores


def figure(
    out: Path, pg_runs: list[dict], bc_sizes: dict, bc_steps: dict, expert_return: float, expert_steps: int
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lucidrl.compare import band
    from lucidrl.plotting import load_curve

    curves = [load_curve(r["run_dir"]) for r in pg_runs]
    steps, mean, low, high = band(curves)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), dpi=120)
    for ax, x in ((axes[0], steps), (axes[1], steps / PG_BATCH)):
        ax.plot(x, mean, color="tab:blue", label=f"{PG_LABEL}: training episodes ({len(pg_runs)} seeds)")
        ax.fill_between(x, low, high, color="tab:blue", alpha=0.2, linewidth=0)
    for ax, data in ((axes[0], bc_sizes), (axes[1], bc_steps)):
        xs = np.array(sorted(data, key=int), dtype=float)
        for k, (style, what) in enumerate((("-o", "sampling π"), (":s", "greedy π"))):
            ys = np.array([[s[k] for s in data[x]] for x in sorted(data, key=int)])
            ax.plot(
                xs,
                ys.mean(1),
                style,
                color="tab:orange",
                markersize=4,
                label=f"behaviour cloning, {what} ({ys.shape[1]} seeds)",
            )
            if k == 0:
                ax.fill_between(xs, ys.min(1), ys.max(1), color="tab:orange", alpha=0.15, linewidth=0)
        ax.axhline(expert_return, color="black", linestyle="--", linewidth=1, label=f"expert (PPO) {expert_return:.0f}")
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
    axes[0].set_xscale("log")
    axes[1].set_xscale("symlog", linthresh=1)  # BC's untrained network sits at 0 steps
    axes[1].set_xlim(left=0)
    axes[0].axvline(expert_steps, color="grey", linewidth=1)
    axes[0].text(expert_steps, 20, " the expert's own\n training (PPO)", fontsize=8, color="grey")
    axes[0].set_xlabel("env interactions (BC: expert transitions in its data set;\nREINFORCE: its own steps)")
    axes[1].set_xlabel(
        f"gradient steps (BC: minibatches of 64, largest data set;\nREINFORCE: one per {PG_BATCH} env steps)"
    )
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"{ENV}: the same network learns from labels (BC, orange) or from rewards (REINFORCE, blue); "
        "BC band: min-max over seeds",
        fontsize=10,
    )
    fig.tight_layout()
    path = out / "pg_vs_bc.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    from lucidrl.compare import Variant, compare_variants

    args = parse_args("pg_vs_cross_entropy", __doc__.splitlines()[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    ident = identity_check()
    (out / "identity.json").write_text(json.dumps(ident, indent=1))

    pg_steps = budget(args, 300_000, 8_000)
    paths = compare_variants(
        [Variant(PG_LABEL, "reinforce", {})],
        ENV,
        seeds=args.seeds,
        timesteps=pg_steps,
        out=out,
        n_jobs=args.jobs,
        force=args.force,
    )
    pg_runs = json.loads(paths["results"].read_text())
    for r in pg_runs:
        r["run_dir"] = str(out / r["run_dir"])

    expert_steps = budget(args, 100_000, 4_000)
    expert, expert_return = train_expert(expert_steps)
    sizes = [50, 100, 200, 500, 1000, 2000, 5000] if not args.quick else [50, 200]
    grad_steps = budget(args, 2000, 50)
    checkpoints = [0, 10, 25, 50, 100, 200, 500, 1000, 2000] if not args.quick else [0, 10, 50]
    eval_episodes = budget(args, 10, 2)
    bc_sizes: dict[int, list] = {n: [] for n in sizes}
    bc_steps: dict[int, list] = {c: [] for c in checkpoints}
    for seed in range(args.seeds):
        obs, actions = expert_data(expert, max(sizes), seed)
        for n in sizes:  # a data set of the first n expert transitions, fitted with the full gradient budget
            scores = behaviour_cloning(
                seed, obs[:n], actions[:n], grad_steps, checkpoints if n == max(sizes) else [grad_steps], eval_episodes
            )
            bc_sizes[n].append(scores[grad_steps])
            if n == max(sizes):
                for c in checkpoints:
                    bc_steps[c].append(scores[c])
    png = figure(out, pg_runs, bc_sizes, bc_steps, expert_return, expert_steps)

    pg_final = [r["eval_mean"] for r in pg_runs]
    curves_at = {}
    from lucidrl.plotting import load_curve

    for target in sorted({t for t in (5_000, 20_000, 50_000, expert_steps, pg_steps) if t <= pg_steps}):
        vals = []
        for r in pg_runs:
            s, v = load_curve(r["run_dir"])
            vals.append(float(np.interp(target, s, v)) if target >= s[0] else float("nan"))
        curves_at[target] = vals
    summary = {
        "identity": ident,
        "expert": {"algo": "ppo", "timesteps": expert_steps, "eval_return": expert_return},
        "bc": {
            "sizes": {str(k): v for k, v in bc_sizes.items()},
            "grad_steps": grad_steps,
            "curve": {str(k): v for k, v in bc_steps.items()},
            "batch_size": 64,
            "lr": 1e-3,
            "eval_episodes": eval_episodes,
        },
        "reinforce": {
            "timesteps": pg_steps,
            "gradient_steps": pg_steps // PG_BATCH,
            "eval_return": pg_final,
            "training_return_at": {str(k): v for k, v in curves_at.items()},
        },
    }
    (out / "bc_vs_pg.json").write_text(json.dumps(summary, indent=1))

    f32, f64 = ident["float32"], ident["float64"]
    lines = [
        f"# The policy-gradient loss and the cross-entropy ({ENV})",
        "",
        f"## 1. The identity ({ident['n_states']} states, the [64, 64] tanh policy, {f32['n_params']} parameters)",
        "",
        "| check | float32 | float64 |",
        "|---|---|---|",
        f"| \\|L_PG − A-weighted CE\\| (value {f32['pg_loss']:.4f}) | {f32['value_abs_diff']:.1e} "
        f"| {f64['value_abs_diff']:.1e} |",
        f"| max \\|∇L_PG − ∇CE\\| over parameters (‖∇‖ = {f32['grad_norm']:.3f}) | {f32['grad_max_abs_diff']:.1e} "
        f"| {f64['grad_max_abs_diff']:.1e} |",
        f"| ‖∇L_PG − ∇CE‖ / ‖∇L_PG‖ | {f32['grad_rel_diff']:.1e} | {f64['grad_rel_diff']:.1e} |",
        f"| ∂/∂z by autograd vs A(softmax(z) − onehot(a))/N | {f32['logit_grad_by_hand_max_abs_diff']:.1e} "
        f"| {f64['logit_grad_by_hand_max_abs_diff']:.1e} |",
        f"| A ≡ 1, expert labels: \\|L_PG − BC loss\\| (value {f32['bc_loss']:.4f}) | {f32['bc_value_abs_diff']:.1e} "
        f"| {f64['bc_value_abs_diff']:.1e} |",
        f"| A ≡ 1, expert labels: relative gradient difference | {f32['bc_grad_rel_diff']:.1e} "
        f"| {f64['bc_grad_rel_diff']:.1e} |",
        "",
        f"## 2. Behaviour cloning against REINFORCE ({args.seeds} seeds)",
        "",
        f"Expert: PPO (zoo preset), {expert_steps} env steps, greedy return {expert_return:.1f}. BC: a fresh network "
        f"of REINFORCE's architecture and initialisation, {grad_steps} Adam steps (lr 1e-3, minibatch 64) on the "
        f"expert's first n transitions; return over {eval_episodes} episodes, per seed.",
        "",
        "| BC data set (expert transitions) | return, sampling π (per seed) | mean | return, greedy π (mean) |",
        "|---|---|---|---|",
    ]
    for n in sizes:
        samp = [s[0] for s in bc_sizes[n]]
        lines.append(
            f"| {n} | {' / '.join(f'{v:.0f}' for v in samp)} | {np.mean(samp):.1f} "
            f"| {np.mean([s[1] for s in bc_sizes[n]]):.1f} |"
        )
    lines += [
        "",
        f"BC on {max(sizes)} transitions, against gradient steps:",
        "",
        "| gradient steps | return, sampling π (per seed) | mean |",
        "|---|---|---|",
    ]
    for c in checkpoints:
        samp = [s[0] for s in bc_steps[c]]
        lines.append(f"| {c} | {' / '.join(f'{v:.0f}' for v in samp)} | {np.mean(samp):.1f} |")
    lines += [
        "",
        f"{PG_LABEL} (preset: {PG_BATCH} env steps per gradient step), training-episode return "
        "(mean of the last 100 episodes; sampling π):",
        "",
        "| env steps | gradient steps | return (per seed) | mean |",
        "|---|---|---|---|",
    ]
    for target, vals in curves_at.items():
        lines.append(
            f"| {target} | {target // PG_BATCH} | {' / '.join(f'{v:.0f}' for v in vals)} | {np.nanmean(vals):.1f} |"
        )
    lines.append(
        f"| final greedy evaluation ({pg_steps} steps) | {pg_steps // PG_BATCH} "
        f"| {' / '.join(f'{v:.0f}' for v in pg_final)} | {np.mean(pg_final):.1f} |"
    )
    (out / "bc_vs_pg.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(
        "wrote "
        + ", ".join(
            str(p) for p in [*paths.values(), png, out / "bc_vs_pg.md", out / "bc_vs_pg.json", out / "identity.json"]
        )
    )


if __name__ == "__main__":
    main()
