"""What do the Bellman equations say, and how do I check that a value function satisfies them?

On FrozenLake-v1 (4x4, slippery) the whole model is known: ``env.unwrapped.P[s][a]`` lists the
(probability, next state, reward, terminated) of every transition. So every value here is exact,
not learned:

* (B1) policy evaluation: V_π = (I − γ P_π)⁻¹ R_π, the solution of the linear system
  V = R_π + γ P_π V, with P_π[s, s'] = Σ_a π(a|s) P(s'|s, a) and R_π[s] = Σ_a π(a|s) r(s, a);
* (B2) the Bellman expectation operator  T^π V = R_π + γ P_π V           (V_π is its fixed point);
* (B3) the Bellman optimality operator   T* V(s) = max_a [r(s, a) + γ Σ_s' P(s'|s, a) V(s')]
                                                                               (V* is its only fixed point);
* π*: value iteration V ← T* V to convergence, then π*(s) = argmax_a of the bracket in (B3).

For three policies (uniform random, ε-greedy around π* with ε = 0.3, π*), the script solves (B1)
and measures both residuals max_s |V_π − T V_π|. The expectation residual is ~0 for every policy;
the optimality residual is ~0 only for π*. Two sampled checks, each over 5 seeds: Monte-Carlo
returns from the start state (mean of N discounted episode returns ≈ V_π(s0)), and lucidrl's tabular
Q-learning (its greedy policy's exact value, from (B1), against V*).

    python experiments/bellman.py            # 5 seeds, 1.5 min one run at a time (--jobs 1) on an idle 2-core machine
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
from _common import budget, parse_args

ENV = "FrozenLake-v1"
GAMMA = 0.99
EPS = 0.3
NAMES = ["random", f"ε-greedy (ε={EPS}) around π*", "π* (value iteration)"]


def tables(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """P[s, a, s'] and the expected reward r[s, a] from ``env.unwrapped.P``. Terminal states absorb with reward 0."""
    n_s, n_a = env.observation_space.n, env.action_space.n
    P, r = np.zeros((n_s, n_a, n_s)), np.zeros((n_s, n_a))
    for s in range(n_s):
        for a in range(n_a):
            for prob, s2, rew, terminated in env.unwrapped.P[s][a]:
                r[s, a] += prob * rew
                if not terminated:  # a terminal next state has value 0: its row of P is left out
                    P[s, a, s2] += prob
    return P, r


def evaluate_policy(pi: np.ndarray, P: np.ndarray, r: np.ndarray, gamma: float) -> np.ndarray:
    """(B1) V_π = (I − γ P_π)⁻¹ R_π, solved exactly (no iteration)."""
    P_pi = np.einsum("sa,sat->st", pi, P)
    R_pi = (pi * r).sum(1)
    return np.linalg.solve(np.eye(len(R_pi)) - gamma * P_pi, R_pi)


def t_pi(V: np.ndarray, pi: np.ndarray, P: np.ndarray, r: np.ndarray, gamma: float) -> np.ndarray:
    """(B2) T^π V = R_π + γ P_π V."""
    return (pi * (r + gamma * P @ V)).sum(1)


def t_star(V: np.ndarray, P: np.ndarray, r: np.ndarray, gamma: float) -> np.ndarray:
    """(B3) T* V = max_a [r + γ P V]."""
    return (r + gamma * P @ V).max(1)


def value_iteration(
    P: np.ndarray, r: np.ndarray, gamma: float, tol: float = 1e-13
) -> tuple[np.ndarray, np.ndarray, int]:
    """V ← T* V until the change is below ``tol``; returns (V*, the greedy π* as one-hot rows, iterations)."""
    V = np.zeros(len(r))
    for it in range(1, 100_000):  # noqa: B007  (returned: the number of iterations)
        V_new = t_star(V, P, r, gamma)
        if np.abs(V_new - V).max() < tol:
            V = V_new
            break
        V = V_new
    greedy = (r + gamma * P @ V).argmax(1)
    return V, np.eye(r.shape[1])[greedy], it


def monte_carlo(env: gym.Env, pi: np.ndarray, gamma: float, episodes: int, seed: int) -> np.ndarray:
    """The discounted returns of ``episodes`` episodes from the start state (their mean estimates V_π(s0)).

    ``env`` has no 100-step limit (see ``main``): V_π counts every future reward, so a cut episode would
    bias the estimate low; γ^2000 < 1e-8 bounds what the 2,000-step cap leaves out."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(pi, axis=1)
    returns = np.zeros(episodes)
    for ep, env_seed in enumerate(rng.integers(2**31, size=episodes)):
        s, _ = env.reset(seed=int(env_seed))
        g, disc, done = 0.0, 1.0, False
        while not done:
            a = min(int(np.searchsorted(cdf[s], rng.random(), side="right")), pi.shape[1] - 1)  # a ~ π(·|s)
            s, rew, terminated, truncated, _ = env.step(a)
            g += disc * rew
            disc *= gamma
            done = terminated or truncated
        returns[ep] = g
    return returns


def q_learning(seed: int, timesteps: int) -> np.ndarray:
    """lucidrl's tabular Q-learning (FrozenLake preset, γ = 0.99); returns its table Q[s, a]."""
    import torch

    from lucidrl import QLearning

    torch.set_num_threads(1)
    model = QLearning(ENV, seed=seed, verbose=0).learn(timesteps)
    return model.agent.numpy().copy()  # the QTable, [n_states, n_actions]


ARROWS = "←↓→↑"  # FrozenLake's actions 0-3


def heatmaps(
    values: dict[str, np.ndarray], desc: np.ndarray, path: Path, title: str, greedy: np.ndarray | None = None
) -> Path:
    """One 4x4 map per policy; ``greedy`` (π*'s actions) is drawn as arrows on the last map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = int(np.sqrt(len(next(iter(values.values())))))
    fig, axes = plt.subplots(1, len(values), figsize=(3.4 * len(values), 3.6), dpi=120)
    vmax = max(v.max() for v in values.values())
    for k, (ax, (name, V)) in enumerate(zip(axes, values.items())):
        im = ax.imshow(V.reshape(n, n), cmap="viridis", vmin=0, vmax=vmax)
        for i in range(n):
            for j in range(n):
                cell = desc[i, j]
                text = cell if cell in ("H", "G") else f"{V[i * n + j]:.3f}"
                if greedy is not None and k == len(values) - 1 and cell not in ("H", "G"):
                    text += "\n" + ARROWS[greedy[i * n + j]]
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if V[i * n + j] < 0.6 * vmax else "black",
                )
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="V_π(s) (exact, γ=0.99)")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    args = parse_args("bellman", __doc__.splitlines()[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = gym.make(ENV, map_name="4x4", is_slippery=True)
    mc_env = gym.make(ENV, map_name="4x4", is_slippery=True, max_episode_steps=2000)
    n_s, n_a = env.observation_space.n, env.action_space.n
    P, r = tables(env)
    V_star, pi_star, vi_iters = value_iteration(P, r, GAMMA)
    policies = {NAMES[0]: np.full((n_s, n_a), 1.0 / n_a), NAMES[1]: (1 - EPS) * pi_star + EPS / n_a, NAMES[2]: pi_star}
    seeds = list(range(args.seeds))
    mc_episodes = budget(args, 6_000, 300)
    rows, values = [], {}
    for name, pi in policies.items():
        V = evaluate_policy(pi, P, r, GAMMA)
        values[name] = V
        mc = [monte_carlo(mc_env, pi, GAMMA, mc_episodes, seed) for seed in seeds]
        pooled = np.concatenate(mc)
        se = float(pooled.std(ddof=1) / np.sqrt(len(pooled)))
        rows.append(
            {
                "policy": name,
                "V_s0": float(V[0]),
                "expectation_residual": float(np.abs(V - t_pi(V, pi, P, r, GAMMA)).max()),
                "optimality_residual": float(np.abs(V - t_star(V, P, r, GAMMA)).max()),
                "gap_to_V_star": float(np.abs(V - V_star).max()),
                "mc_returns": [float(m.mean()) for m in mc],
                "mc_mean": float(pooled.mean()),
                "mc_standard_error": se,
                "mc_error_in_standard_errors": float((pooled.mean() - V[0]) / se),
            }
        )
    q_steps = budget(args, 200_000, 5_000)
    Q_star = r + GAMMA * P @ V_star  # Q*(s, a) = r(s, a) + γ Σ_s' P(s'|s, a) V*(s')
    q_rows = []
    for seed in seeds:
        q = q_learning(seed, q_steps)
        pi_q = np.eye(n_a)[q.argmax(1)]  # its greedy policy (predict's choice: the first maximum)
        V_q = evaluate_policy(pi_q, P, r, GAMMA)
        q_rows.append(
            {
                "seed": seed,
                "V_s0": float(V_q[0]),
                "V_star_s0": float(V_star[0]),
                "max_gap_to_V_star": float(np.abs(V_q - V_star).max()),
                "table_max_abs_error": float(np.abs(q - Q_star).max()),
                "table_error_s0": float(np.abs(q[0] - Q_star[0]).max()),
                "optimality_residual": float(np.abs(V_q - t_star(V_q, P, r, GAMMA)).max()),
                "same_actions_as_pi_star": int(
                    ((pi_q * (r + GAMMA * P @ V_star)).sum(1) >= (r + GAMMA * P @ V_star).max(1) - 1e-9).sum()
                ),
            }
        )
    result = {
        "env": ENV,
        "gamma": GAMMA,
        "epsilon": EPS,
        "value_iteration_sweeps": vi_iters,
        "seeds": seeds,
        "mc_episodes_per_seed": mc_episodes,
        "q_learning_timesteps": q_steps,
        "policies": rows,
        "q_learning": q_rows,
        "V_star": V_star.tolist(),
        "pi_star": pi_star.argmax(1).tolist(),
    }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    desc = np.asarray(env.unwrapped.desc, dtype=str)
    heatmaps(
        values,
        desc,
        out / "values.png",
        f"{ENV} (4x4, slippery): exact values of three policies (arrows: π*)",
        greedy=pi_star.argmax(1),
    )
    lines = [
        f"# Bellman residuals on {ENV} (4x4, slippery, γ = {GAMMA})",
        "",
        f"Exact values from (I − γ P_π) V = R_π; π* from {vi_iters} sweeps of value iteration. "
        f"Monte-Carlo: {mc_episodes} episodes from s0 per seed, {len(seeds)} seeds, pooled; seed means: see "
        "results.json.",
        "",
        "| policy | V_π(s0) exact | Monte-Carlo mean ± standard error (difference in SEs) "
        "| max\\|V_π − T^π V_π\\| | max\\|V_π − T* V_π\\| "
        "| max\\|V_π − V*\\| |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['policy']} | {row['V_s0']:.4f} | {row['mc_mean']:.4f} ± {row['mc_standard_error']:.4f} "
            f"({row['mc_error_in_standard_errors']:+.1f}) "
            f"| {row['expectation_residual']:.1e} | {row['optimality_residual']:.1e} | {row['gap_to_V_star']:.1e} |"
        )
    lines += [
        "",
        f"Tabular Q-learning (lucidrl.QLearning, FrozenLake preset, {q_steps} steps): the exact value of "
        "its greedy policy.",
        "",
        "| seed | V(s0) of the greedy policy | V*(s0) | max_s \\|V − V*\\| | max\\|V − T* V\\| "
        f"| states where its action is optimal (of {n_s}; in the 5 holes and the goal every action is) "
        "| its table: max_{s,a} \\|Q − Q*\\| |",
        "|---|---|---|---|---|---|---|",
    ]
    for q in q_rows:
        lines.append(
            f"| {q['seed']} | {q['V_s0']:.4f} | {q['V_star_s0']:.4f} | {q['max_gap_to_V_star']:.1e} "
            f"| {q['optimality_residual']:.1e} | {q['same_actions_as_pi_star']} | {q['table_max_abs_error']:.3f} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'values.png'}")


if __name__ == "__main__":
    main()
