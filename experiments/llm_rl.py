"""In LLMs, why do people say RL only started working in 2025? Why was RLHF alone not enough?

The same warm-started language model (``lucidrl.GRPO.warm_start``: a 2-layer, d_model-64 causal
transformer after 200 steps of cross-entropy on correct 2-digit additions, the "SFT" model) is
trained three ways, with the same number of updates, sampled completions per update (128), gradient
steps per batch (μ = 2), learning rate, clip range and KL weight β:

* ``PPO on a reward model (RLHF)``: the recipe of Stiennon et al. 2020 and Ouyang et al. 2022
  (InstructGPT). First a reward model r_φ (the SFT model with its token head replaced by a scalar
  head, as in InstructGPT) is fitted to a limited set of comparisons: 8 completions sampled from the
  SFT model for each of 2,000 training prompts, labelled by the verifier, up to 4 pairs
  (right, wrong) of the same prompt as comparisons,
  Bradley-Terry loss −log σ(r_φ(q, o_w) − r_φ(q, o_l)) (InstructGPT eq. 1). Then PPO maximises the
  per-token reward (R1) with a critic (initialised from r_φ, as in Stiennon et al.), GAE over tokens
  (R2) and the clipped ratio (R3).
* ``PPO on the verifier``: the same PPO, critic and KL penalty, with the verifier's 0/1 reward in
  place of r_φ in (R1): it separates "which reward" from "critic or group baseline".
* ``GRPO on the verifier``: ``lucidrl.GRPO`` (group baseline, no critic, reward 1 when the sum is
  exactly right), as in ``lucidrl/algos/grpo.py`` E1-E5.

Equations of the PPO-for-LM code below (tags R1..R3; GRPO's are E1..E5 in grpo.md):

* (R1) per-token reward  r_t = −β (log π_old(o_t|·) − log π_ref(o_t|·)) + [t = last] r_φ(q, o)
       (Shao et al. 2024 eq. 2; the per-token form of Ouyang et al. 2022 eq. 2 without its pretraining term)
* (R2) GAE over the tokens of one completion, γ = 1, λ = 0.95, V_φ(q, o_<t) the critic
* (R3) L = −mean_t min(ρ_t Â_t, clip(ρ_t, 1−ε, 1+ε) Â_t) + ½ mean_t (V_φ − R̂_t)², Â whitened

Measured every ``eval_every`` updates on held-out prompts (never trained on): greedy exact-match
accuracy (the true verifier), and on one sampled completion per prompt: the true reward, the
reward model's normalised score, and the KL to π_ref per completion, Σ_t (log π − log π_ref).

    python experiments/llm_rl.py --jobs 2   # 5 seeds, 200 updates per method, ~6 min on 2 idle cores
"""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import parse_args
from torch import nn

TASK = "addition"
LABELS = {
    "ppo_rlhf": "PPO on a reward model (RLHF)",
    "ppo_verifier": "PPO on the verifier",
    "grpo": "GRPO on the verifier",
}
COLORS = {"ppo_rlhf": "tab:red", "ppo_verifier": "tab:green", "grpo": "tab:blue"}
FULL = dict(
    updates=200,
    eval_every=25,
    warm_steps=200,
    rm_prompts=2000,
    rm_samples=8,
    rm_pairs_per_prompt=4,
    rm_steps=600,
    rm_batch=64,
    rm_lr=3e-4,
    greedy_prompts=1000,
    sampled_prompts=500,
)
QUICK = dict(
    FULL, updates=4, eval_every=2, warm_steps=20, rm_prompts=64, rm_steps=10, greedy_prompts=100, sampled_prompts=100
)
PPO = dict(
    n_prompts=128,
    n_epochs=2,
    learning_rate=5e-4,
    critic_learning_rate=5e-4,
    clip_range=0.2,
    beta=0.04,
    gamma=1.0,
    gae_lambda=0.95,
    max_grad_norm=1.0,
)  # as GRPO's defaults where they share a meaning


# --------------------------------------------------------------------------- the reward model and the critic
class ScalarLM(nn.Module):
    """``lucidrl.lm.CausalLM`` with a scalar head: r_φ(q, o) (score at o's last token) or V_φ(q, o_<t)."""

    def __init__(self, task, d_model: int = 64, n_layers: int = 2, n_heads: int = 4):
        from lucidrl.lm import make_policy

        super().__init__()
        self.lm = make_policy(task, d_model, n_layers, n_heads)
        self.lm.head = nn.Linear(d_model, 1)
        self.register_buffer("shift", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def score(self, q: torch.Tensor, o: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) the output at the last real token of each completion, normalised by shift/scale."""
        out = self.lm(torch.cat([q, o], 1))[..., 0]
        last = q.shape[1] + mask.sum(1).long() - 1
        return (out.gather(1, last[:, None]).squeeze(1) - self.shift) / self.scale

    def token_values(self, q: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """(B, N) V(q, o_<t): the output at the position that predicts token t (as CausalLM.logprobs)."""
        P, N = q.shape[1], o.shape[1]
        return self.lm(torch.cat([q, o[:, :-1]], 1))[:, P - 1 : P - 1 + N, 0]


def sample_scored(policy, task, prompts: list[str], gen: torch.Generator):
    q = task.encode_prompts(prompts)
    o, _, mask = policy.sample(q, task.max_new_tokens, gen, 1.0)
    r = torch.tensor([task.score(p, c) for p, c in zip(prompts, o)])
    return q, o, mask, r


def comparisons(policy, task, n_prompts: int, k: int, per_prompt: int, split: str, gen: torch.Generator):
    """Indices (winner, loser) of pairs (right, wrong) among k samples of the same prompt."""
    prompts = [p for p in task.sample_prompts(n_prompts, gen, split) for _ in range(k)]
    q, o, mask, r = sample_scored(policy, task, prompts, gen)
    wins, losses = [], []
    for g in range(n_prompts):
        idx = range(g * k, (g + 1) * k)
        pairs = [(i, j) for i in idx for j in idx if r[i] > r[j]]
        for n in torch.randperm(len(pairs), generator=gen)[:per_prompt].tolist():
            wins.append(pairs[n][0])
            losses.append(pairs[n][1])
    return q, o, mask, r, torch.tensor(wins, dtype=torch.long), torch.tensor(losses, dtype=torch.long)


def train_reward_model(sft, task, b: dict, gen: torch.Generator) -> tuple[ScalarLM, dict]:
    """Bradley-Terry fit on a limited set of comparisons of SFT samples (InstructGPT eq. 1)."""
    q, o, mask, r, w, lose = comparisons(
        sft, task, b["rm_prompts"], b["rm_samples"], b["rm_pairs_per_prompt"], "train", gen
    )
    rm = ScalarLM(task)
    rm.lm.load_state_dict({k: v for k, v in sft.state_dict().items() if not k.startswith("head.")}, strict=False)
    opt = torch.optim.Adam(rm.parameters(), lr=b["rm_lr"])
    for _ in range(b["rm_steps"]):
        i = torch.randint(len(w), (min(b["rm_batch"], len(w)),), generator=gen)
        sw, sl = rm.score(q[w[i]], o[w[i]], mask[w[i]]), rm.score(q[lose[i]], o[lose[i]], mask[lose[i]])
        loss = -F.logsigmoid(sw - sl).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rm.requires_grad_(False)
    with torch.no_grad():
        s = rm.score(q, o, mask)
        rm.shift.fill_(float(s.mean()))  # SFT samples score mean 0, std 1 (InstructGPT normalises its RM too)
        rm.scale.fill_(float(s.std()))
        s = rm.score(q, o, mask)
        hq, ho, hm, hr, hw, hl = comparisons(sft, task, 500, b["rm_samples"], b["rm_pairs_per_prompt"], "heldout", gen)
        hs = rm.score(hq, ho, hm)
    info = {
        "comparisons": len(w),
        "sft_samples": len(r),
        "sft_sample_accuracy": float(r.mean()),
        "train_pair_accuracy": float((s[w] > s[lose]).float().mean()),
        "heldout_pair_accuracy": float((hs[hw] > hs[hl]).float().mean()),
        "heldout_score_right": float(hs[hr == 1].mean()),
        "heldout_score_wrong": float(hs[hr == 0].mean()),
    }
    return rm, info


# --------------------------------------------------------------------------- PPO on the reward model
def ppo_rlhf_update(
    policy, critic, reference, rm, opt_pi, opt_v, task, gen: torch.Generator, verifier: bool = False
) -> dict:
    """Sample 128 completions, score them with r_φ (``verifier``: with the true 0/1 reward instead), per-token
    rewards (R1), GAE (R2), μ clipped steps (R3)."""
    from lucidrl.advantages import gae

    c = PPO
    prompts = task.sample_prompts(c["n_prompts"], gen, "train")
    q, o, mask, true_r = sample_scored(policy, task, prompts, gen)
    with torch.no_grad():
        logp_old, logp_ref = policy.logprobs(q, o), reference.logprobs(q, o)
        values = critic.token_values(q, o) * mask
        score = rm.score(q, o, mask)
    reward = true_r if verifier else score
    last = mask.sum(1).long() - 1
    rewards = -c["beta"] * (logp_old - logp_ref) * mask  # (R1) the KL penalty, every token
    rewards[torch.arange(len(q)), last] += reward  # (R1) r_φ (or the verifier) at the last token
    terminated = torch.zeros_like(mask, dtype=torch.bool)
    terminated[torch.arange(len(q)), last] = True  # the completion ends: no value after it
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1)
    adv, returns = gae(
        rewards.T, values.T, next_values.T, terminated.T, torch.zeros_like(terminated.T), c["gamma"], c["gae_lambda"]
    )  # (R2), time along the tokens
    adv, returns = adv.T, returns.T
    n = mask.sum()
    mean = (adv * mask).sum() / n
    adv = (adv - mean) / (((adv - mean) ** 2 * mask).sum() / n).sqrt().clamp(min=1e-8)  # Deviation: whitened
    for _ in range(c["n_epochs"]):
        logp = policy.logprobs(q, o)
        ratio = (logp - logp_old).exp()
        surr = torch.min(ratio * adv, ratio.clamp(1 - c["clip_range"], 1 + c["clip_range"]) * adv)  # (R3)
        loss_pi = -(surr * mask).sum() / n
        loss_v = 0.5 * (((critic.token_values(q, o) - returns) ** 2) * mask).sum() / n  # (R3) critic
        for loss, opt, net in ((loss_pi, opt_pi, policy), (loss_v, opt_v, critic)):
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), c["max_grad_norm"])
            opt.step()
    return {"rm_score": float(score.mean()), "true_reward": float(true_r.mean())}


# --------------------------------------------------------------------------- measurement
@torch.no_grad()
def measure(policy, reference, rm, task, b: dict, seed: int) -> dict:
    from lucidrl.lm import accuracy

    held = task.splits["heldout"]
    gen = torch.Generator().manual_seed(50_000 + seed)  # the same draws for both methods at every point
    q, o, mask, r = sample_scored(policy, task, held[: b["sampled_prompts"]], gen)
    kl = ((policy.logprobs(q, o) - reference.logprobs(q, o)) * mask).sum(1)  # Σ_t log π/π_ref, o ~ π
    return {
        "greedy_accuracy": accuracy(policy, task, held[: b["greedy_prompts"]]),
        "sampled_accuracy": float(r.mean()),
        "rm_score": float(rm.score(q, o, mask).mean()),
        "kl": float(kl.mean()),
    }


def run_seed(seed: int, b: dict, cache: Path, force: bool) -> dict:
    if cache.is_file() and not force:
        return json.loads(cache.read_text())
    torch.set_num_threads(1)
    from lucidrl import GRPO

    t0 = time.time()
    grpo = GRPO(TASK, seed=seed).warm_start(steps=b["warm_steps"])
    task = grpo.task
    sft = copy.deepcopy(grpo.policy).requires_grad_(False)  # π_ref of both methods
    gen = torch.Generator().manual_seed(1000 + seed)
    torch.manual_seed(1000 + seed)
    rm, rm_info = train_reward_model(sft, task, b, gen)
    points = list(range(0, b["updates"] + 1, b["eval_every"]))
    out = {"seed": seed, "updates": points, "reward_model": rm_info, "rm_seconds": time.time() - t0}

    t = time.time()
    curve = [measure(grpo.policy, sft, rm, task, b, seed)]
    while grpo.n_updates < b["updates"]:
        grpo.learn(min(b["eval_every"], b["updates"] - grpo.n_updates))
        curve.append(measure(grpo.policy, sft, rm, task, b, seed))
    out["grpo"] = {k: [c[k] for c in curve] for k in curve[0]} | {"seconds": time.time() - t}

    for method in ("ppo_rlhf", "ppo_verifier"):
        t = time.time()
        policy = copy.deepcopy(sft).requires_grad_(True)
        critic = copy.deepcopy(rm).requires_grad_(True)  # V_φ initialised from r_φ, as Stiennon et al. 2020 do
        opt_pi = torch.optim.Adam(policy.parameters(), lr=PPO["learning_rate"])
        opt_v = torch.optim.Adam(critic.parameters(), lr=PPO["critic_learning_rate"])
        gen = torch.Generator().manual_seed(2000 + seed)
        curve, train = [measure(policy, sft, rm, task, b, seed)], []
        for u in range(1, b["updates"] + 1):
            train.append(ppo_rlhf_update(policy, critic, sft, rm, opt_pi, opt_v, task, gen, method == "ppo_verifier"))
            if u % b["eval_every"] == 0:
                curve.append(measure(policy, sft, rm, task, b, seed))
        out[method] = {k: [c[k] for c in curve] for k in curve[0]} | {
            "seconds": time.time() - t,
            "train_rm_score": [x["rm_score"] for x in train],
            "train_true_reward": [x["true_reward"] for x in train],
        }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


# --------------------------------------------------------------------------- outputs
def figures(out: Path, runs: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array(runs[0]["updates"])
    panels = [
        ("accuracy.png", [("greedy_accuracy", "-", "")], "held-out accuracy (greedy, true verifier)"),
        (
            "reward_model.png",
            [("rm_score", "-", "reward-model score"), ("sampled_accuracy", "--", "true reward")],
            "held-out, sampled completions: r_φ score (left axis)\nand true reward = accuracy (dashed, right axis)",
        ),
        ("kl.png", [("kl", "-", "")], "KL(π || π_ref) per completion (nats)"),
    ]
    paths = []
    for name, series, ylabel in panels:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        twin = ax.twinx() if name == "reward_model.png" else None
        for method in LABELS:
            for key, style, what in series:
                axis = twin if (twin is not None and key == "sampled_accuracy") else ax
                y = np.array([r[method][key] for r in runs])
                for row in y:
                    axis.plot(x, row, style, color=COLORS[method], alpha=0.15, linewidth=0.8)
                axis.plot(
                    x,
                    y.mean(0),
                    style,
                    color=COLORS[method],
                    linewidth=2,
                    label=f"{LABELS[method]}{', ' + what if what else ''} (mean of {len(runs)} seeds)",
                )
        ax.set_xlabel("updates (128 sampled completions each)")
        ax.set_ylabel(ylabel.split("\n")[0] if twin is None else "reward-model score (normalised)")
        if twin is not None:
            twin.set_ylabel("true reward (sampled accuracy)")
            twin.set_ylim(0, 1)
            lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
            ax.legend(lines, [h.get_label() for h in lines], fontsize=7, loc="upper left")
        else:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax.set_title(
            f"2-digit addition: {ylabel.splitlines()[0] if twin is None else 'reward model vs truth'}"
            f"\n(thin: each seed)",
            fontsize=9,
        )
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        paths.append(out / name)
    return paths


def table(out: Path, runs: list[dict], b: dict, quick: bool) -> Path:
    x = runs[0]["updates"]
    rm = {k: np.mean([r["reward_model"][k] for r in runs]) for k in runs[0]["reward_model"]}
    lines = [
        f"# RLHF-style PPO on a reward model vs GRPO on the verifier (2-digit addition, {len(runs)} seeds)",
        "",
        f"Budget per method and seed: {b['updates']} updates x 128 sampled completions, μ = 2, lr 5e-4, ε = 0.2, "
        f"β = 0.04; warm start {b['warm_steps']} steps. Held-out: greedy accuracy on {b['greedy_prompts']} "
        f"prompts; sampled reward, r_φ score and KL on one completion for each of {b['sampled_prompts']} prompts."
        + (" QUICK RUN: answers nothing." if quick else ""),
        "",
        f"Reward model (mean over seeds): {rm['comparisons']:.0f} comparisons from {rm['sft_samples']:.0f} SFT "
        f"samples (SFT sample accuracy {rm['sft_sample_accuracy']:.3f}); pairwise accuracy train "
        f"{rm['train_pair_accuracy']:.3f}, held-out {rm['heldout_pair_accuracy']:.3f}; held-out mean score of right "
        f"answers {rm['heldout_score_right']:.2f}, of wrong ones {rm['heldout_score_wrong']:.2f}.",
        "",
        "Mean over seeds at each evaluation:",
        "",
        "| updates | method | greedy accuracy | sampled true reward | r_φ score | KL to π_ref |",
        "|---|---|---|---|---|---|",
    ]
    for i, u in enumerate(x):
        for m in LABELS:
            v = {
                k: np.mean([r[m][k][i] for r in runs])
                for k in ("greedy_accuracy", "sampled_accuracy", "rm_score", "kl")
            }
            lines.append(
                f"| {u} | {LABELS[m]} | {v['greedy_accuracy']:.3f} | {v['sampled_accuracy']:.3f} "
                f"| {v['rm_score']:.2f} | {v['kl']:.3f} |"
            )
    lines += [
        "",
        "Per seed, greedy held-out accuracy: warm start -> best -> last, and the r_φ score at the last point:",
        "",
        "| seed | method | warm start | best (at update) | last | r_φ score last | KL last |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for m in LABELS:
            acc = r[m]["greedy_accuracy"]
            k = int(np.argmax(acc))
            lines.append(
                f"| {r['seed']} | {LABELS[m]} | {acc[0]:.3f} | {acc[k]:.3f} ({x[k]}) | {acc[-1]:.3f} "
                f"| {r[m]['rm_score'][-1]:.2f} | {r[m]['kl'][-1]:.3f} |"
            )
    path = out / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    args = parse_args("llm_rl", __doc__.splitlines()[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    b = QUICK if args.quick else FULL
    t0 = time.time()
    caches = [out / "runs" / f"seed_{s}.json" for s in range(args.seeds)]
    if (args.jobs or 1) > 1 and args.seeds > 1:
        with ProcessPoolExecutor(min(args.jobs, args.seeds)) as pool:
            runs = list(pool.map(run_seed, range(args.seeds), [b] * args.seeds, caches, [args.force] * args.seeds))
    else:
        runs = [run_seed(s, b, c, args.force) for s, c in zip(range(args.seeds), caches)]
    summary = {
        "task": TASK,
        "budget": b,
        "ppo": PPO,
        "labels": LABELS,
        "quick": args.quick,
        "wall_seconds": time.time() - t0,
        "runs": runs,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    paths = [table(out, runs, b, args.quick), out / "results.json", *figures(out, runs)]
    print((out / "results.md").read_text())
    print(f"{time.time() - t0:.0f} s; wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
