"""Why Double Q-learning (and Double DQN)? The maximisation bias, measured.

Q-learning's target r + γ max_a' Q(s', a') takes a max over *estimates*. Each estimate is noisy, and
E[max_a' Q̂(s', a')] ≥ max_a' E[Q̂(s', a')]: the max picks the estimate whose noise happens to be high,
so the target is biased upwards even when every estimate is unbiased (Sutton & Barto 2018, section 6.7;
van Hasselt 2010). Double Q-learning keeps two tables and values the action one picks with the other,
whose noise did not take part in the pick (``lucidrl.algos.q_learning``, E7). Double DQN does the same
with the online network picking a' and the target network valuing it (``lucidrl.algos.dqn``, E5; van
Hasselt, Guez & Silver 2016).

The MDP is Sutton & Barto's Example 6.7 (``MaximisationBias`` below): from A, "left" (action 0) leads to
B with reward 0 and any other action ends the episode with 0; from B each of 10 actions ends it with a
reward drawn from N(-0.1, 1). With γ = 1, Q*(A, left) = -0.1 < Q*(A, right) = 0: going left is a mistake
whose cost only shows on average. The book's A has two actions; here A has the same 10 as B (one left,
nine right), so an ε-greedy policy that prefers right still goes left with probability ε/10 = 1%.

* ``tabular``: lucidrl's QLearning with update="q_learning" and "double_q_learning", the book's settings
  (ε = 0.1 fixed, α = 0.1, Q_0 = 0), 300 episodes, averaged over 1,000 runs (the book: 10,000);
* ``dqn``: lucidrl's DQN with double_q False and True on the same MDP, a linear Q on the one-hot state
  (net_arch=[]), ε = 0.1 fixed, Adam at 0.01, replay of everything, batch 32, one gradient step per env
  step after 100, the target network copied every 500 steps; 2,000 env steps (~1,400-1,600 episodes), 30 seeds.

For each: the share of episodes that went left from A (the book's Figure 6.5), Q(A, left) against its
true value -0.1 (for Double Q-learning the mean of the two tables; for DQN the online network), and the
share of runs whose greedy policy prefers left.

Outputs in docs/experiments/double_q/: left_from_a.png, q_a_left.png, results.md, results.json.

    python experiments/double_q.py            # 4.5 min, one process, on an otherwise idle 2-core machine
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _common import parse_args

import lucidrl
from lucidrl.callbacks import BaseCallback

N_ACTIONS = 10
EPS = 0.1
TABULAR = {"learning_rate": 0.1, "gamma": 1.0, "exploration_initial_eps": EPS, "exploration_final_eps": EPS}
DQN = {
    "gamma": 1.0,
    "learning_rate": 0.01,
    "buffer_size": 100_000,
    "learning_starts": 100,
    "batch_size": 32,
    "train_freq": 1,
    "gradient_steps": 1,
    "target_update_interval": 500,
    "exploration_initial_eps": EPS,
    "exploration_final_eps": EPS,
    "exploration_fraction": 0.001,
    "net_arch": [],
}
DQN_CHUNK = 50  # env steps between readings of Q(A, left)


class MaximisationBias(gym.Env):
    """Sutton & Barto 2018, Example 6.7. States: A = 0, B = 1. Records, for each episode, whether it went left
    from A (``went_left``)."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(N_ACTIONS)

    def __init__(self, probe=None):
        self.went_left: list[bool] = []
        self.probe, self.q_a_left = probe, []  # probe(): the agent's Q(A, left), read as each episode leaves A

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return 0, {}

    def step(self, a):
        if self.s == 0:
            self.went_left.append(a == 0)
            if self.probe is not None:
                self.q_a_left.append(self.probe())
            self.s = 1 if a == 0 else 0
            return self.s, 0.0, a != 0, False, {}
        return 1, float(self.np_random.normal(-0.1, 1.0)), True, False, {}


def tabular_run(update: str, seed: int, episodes: int) -> dict:
    """Q(A, left) as each episode leaves A and whether it went left, for ``episodes`` episodes."""
    env = MaximisationBias()
    model = lucidrl.QLearning(env, update=update, seed=seed, verbose=0, preset=False, **TABULAR)
    q_a, q_b = model.agent.numpy(), model.agent.numpy2()  # views: they follow the updates
    env.probe = (lambda: float(q_a[0, 0])) if q_b is None else (lambda: float(q_a[0, 0] + q_b[0, 0]) / 2)
    while len(env.went_left) < episodes:  # an episode is 1 or 2 steps
        model.learn(2 * (episodes - len(env.went_left)), reset_num_timesteps=False, log_interval=10**9)
    q = q_a if q_b is None else (q_a + q_b) / 2
    return {
        "went_left": env.went_left[:episodes],
        "q_a_left": env.q_a_left[:episodes],
        "greedy_left": bool(q[0, 0] > q[0, 1:].max()),
    }


def dqn_run(double: bool, seed: int, steps: int) -> dict:
    env = MaximisationBias()
    model = lucidrl.DQN("MlpPolicy", env, double_q=double, seed=seed, verbose=0, preset=False, **DQN)
    readings = []

    class Read(BaseCallback):  # Q(A, ·) of the online network every DQN_CHUNK env steps
        def _on_step(self) -> bool:
            if self.num_timesteps % DQN_CHUNK == 0:
                with torch.no_grad():
                    q = model.q_net(torch.tensor([0]))[0]
                readings.append((self.num_timesteps, float(q[0]), bool(q[0] > q[1:].max())))
            return True

    model.learn(steps, callback=Read())
    return {"went_left": env.went_left, "readings": readings}


def mean_curve(rows: list[list[float]], length: int) -> list[float]:
    return [statistics.fmean(r[i] for r in rows if len(r) > i) for i in range(length)]


def plot(result: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"Q-learning": "tab:red", "Double Q-learning": "tab:blue", "DQN": "tab:red", "Double DQN": "tab:blue"}
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    for ax, part, x_label in ((axes[0], "tabular", "episode"), (axes[1], "dqn", "episode")):
        for name, curve in result[part]["left_curve"].items():
            ax.plot(np.arange(1, len(curve) + 1), 100 * np.asarray(curve), label=name, color=colours[name])
        optimal = f"optimal under ε-greedy ({EPS / N_ACTIONS:.0%})"
        ax.axhline(100 * EPS / N_ACTIONS, color="k", ls="--", lw=0.8, label=optimal)
        ax.set(xlabel=x_label, ylabel="% of episodes going left from A", title=result[part]["title"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "left_from_a.png", bbox_inches="tight")
    plt.close(fig)
    paths.append(out / "left_from_a.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    for ax, part in ((axes[0], "tabular"), (axes[1], "dqn")):
        for name, (x, curve) in result[part]["q_curve"].items():
            ax.plot(x, curve, label=name, color=colours[name])
        ax.axhline(-0.1, color="k", ls="--", lw=0.8, label="true Q(A, left) = -0.1")
        ax.axhline(0.0, color="grey", ls=":", lw=0.8, label="Q(A, right) = 0")
        if part == "dqn":
            ax.axvline(DQN["target_update_interval"], color="grey", lw=0.8, label="θ⁻'s first copy of θ")
        ax.set(
            xlabel="episode" if part == "tabular" else "env step",
            ylabel="mean estimate of Q(A, left)",
            title=result[part]["title"],
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "q_a_left.png", bbox_inches="tight")
    plt.close(fig)
    paths.append(out / "q_a_left.png")
    return paths


if __name__ == "__main__":
    args = parse_args("double_q", __doc__.splitlines()[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = 40 if args.quick else 1000
    episodes = 30 if args.quick else 300
    dqn_seeds = 2 if args.quick else 30
    dqn_steps = 600 if args.quick else 2000
    result: dict = {"settings": {"tabular": TABULAR, "dqn": DQN, "n_actions": N_ACTIONS, "runs": runs,
                                 "episodes": episodes, "dqn_seeds": dqn_seeds, "dqn_steps": dqn_steps}}  # fmt: skip

    tabular = {"title": f"tabular, α = 0.1, mean of {runs} runs", "left_curve": {}, "q_curve": {}, "summary": {}}
    for update, name in (("q_learning", "Q-learning"), ("double_q_learning", "Double Q-learning")):
        done = [tabular_run(update, seed, episodes) for seed in range(runs)]
        left = mean_curve([r["went_left"] for r in done], episodes)
        q = mean_curve([r["q_a_left"] for r in done], episodes)
        tabular["left_curve"][name] = left
        tabular["q_curve"][name] = (list(range(1, episodes + 1)), q)
        tabular["summary"][name] = {
            "left_first_50": statistics.fmean(left[:50]),
            "left_last_50": statistics.fmean(left[-50:]),
            "peak_left": max(left),
            "peak_episode": 1 + int(np.argmax(left)),
            "q_a_left_peak": max(q),
            "q_a_left_end": q[-1],
            "greedy_left_end": statistics.fmean(r["greedy_left"] for r in done),
        }
        print(name, tabular["summary"][name], flush=True)
    result["tabular"] = tabular

    dqn = {"title": f"DQN (linear Q), mean of {dqn_seeds} seeds", "left_curve": {}, "q_curve": {}, "summary": {}}
    for double, name in ((False, "DQN"), (True, "Double DQN")):
        done = [dqn_run(double, seed, dqn_steps) for seed in range(dqn_seeds)]
        n_episodes = min(len(r["went_left"]) for r in done)
        left = mean_curve([r["went_left"] for r in done], n_episodes)
        window = 25  # episodes: a moving mean over seeds and a window (each seed's curve is 0/1)
        smooth = [statistics.fmean(left[max(0, i - window + 1) : i + 1]) for i in range(n_episodes)]
        x = [step for step, _, _ in done[0]["readings"]]
        q = [statistics.fmean(r["readings"][i][1] for r in done) for i in range(len(x))]
        greedy_left = [statistics.fmean(r["readings"][i][2] for r in done) for i in range(len(x))]
        dqn["left_curve"][name] = smooth
        dqn["q_curve"][name] = (x, q)
        copied = [i for i, step in enumerate(x) if step > DQN["target_update_interval"]]  # after θ⁻'s first copy
        dqn["summary"][name] = {
            "episodes": statistics.fmean(len(r["went_left"]) for r in done),  # per seed, on average
            "left_first_200": statistics.fmean(left[:200]),
            "left_last_500": statistics.fmean(statistics.fmean(r["went_left"][-500:]) for r in done),  # each seed's
            "q_a_left_before_first_copy": statistics.fmean(q[i] for i, step in enumerate(x) if 100 < step <= 500),
            "q_a_left_after_first_copy": statistics.fmean(q[i] for i in copied),
            "q_a_left_end": q[-1],
            "greedy_left_after_first_copy": statistics.fmean(greedy_left[i] for i in copied),
            "greedy_left_end": greedy_left[-1],
        }
        print(name, dqn["summary"][name], flush=True)
    result["dqn"] = dqn

    paths = plot(result, out)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# Maximisation bias: Q-learning vs Double Q-learning, DQN vs Double DQN",
        "",
        f"Sutton & Barto's Example 6.7 with {N_ACTIONS} actions, ε = {EPS}; optimal left share under ε-greedy: "
        f"{EPS / N_ACTIONS:.1%}; true Q(A, left) = -0.1.",
        "",
        f"Tabular ({runs} runs, {episodes} episodes each):",
        "",
        "| | left, episodes 1-50 | left, last 50 | peak left (episode) | peak mean Q(A, left) | mean Q(A, left) at "
        "the end | runs greedy-left at the end |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in tabular["summary"].items():
        lines.append(
            f"| {name} | {s['left_first_50']:.1%} | {s['left_last_50']:.1%} | {s['peak_left']:.1%} "
            f"({s['peak_episode']}) | {s['q_a_left_peak']:+.3f} | {s['q_a_left_end']:+.3f} | "
            f"{s['greedy_left_end']:.1%} |"
        )
    lines += [
        "",
        f"DQN, linear Q on the one-hot state ({dqn_seeds} seeds, {dqn_steps} env steps):",
        "",
        "| | episodes | left, first 200 | left, last 500 | mean Q(A, left), steps 101-500 (θ⁻ the initial net) | "
        "after step 500 | at the end | greedy policy left, after step 500 | at the end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in dqn["summary"].items():
        lines.append(
            f"| {name} | {s['episodes']:.0f} | {s['left_first_200']:.1%} | {s['left_last_500']:.1%} | "
            f"{s['q_a_left_before_first_copy']:+.3f} | {s['q_a_left_after_first_copy']:+.3f} | "
            f"{s['q_a_left_end']:+.3f} | "
            f"{s['greedy_left_after_first_copy']:.1%} | {s['greedy_left_end']:.1%} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("wrote " + ", ".join(str(p) for p in [*paths, out / "results.md", out / "results.json"]))
