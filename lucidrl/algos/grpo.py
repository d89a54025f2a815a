"""Group Relative Policy Optimization (Shao et al. 2024, "DeepSeekMath: Pushing the Limits of
Mathematical Reasoning in Open Language Models", arXiv:2402.03300, §4.1).

GRPO is PPO for language models without a critic. For each prompt (question) q it samples a
*group* of G completions o_1..o_G from the old policy π_old, scores each with a reward, and uses
the group itself as the baseline: a completion's advantage is how much better its reward is than
its siblings', in units of the group's spread. Every token of a completion gets that advantage
(outcome supervision). The update is PPO's clipped surrogate per token, averaged over each
completion's tokens and over the group, with a KL penalty that keeps π_θ near a frozen reference
policy π_ref (the supervised model RL starts from).

Equations (numbers are the paper's):

* (E1) ratio       ρ_{i,t} = π_θ(o_{i,t}|q,o_{i,<t}) / π_old(o_{i,t}|q,o_{i,<t})                     [eq. 3]
* (E2) advantage   Â_{i,t} = r̃_i = (r_i - mean(r_1..r_G)) / std(r_1..r_G), for every token t of o_i  [§4.1.2]
* (E3) KL estimator D_KL[π_θ||π_ref] ≈ π_ref/π_θ - log(π_ref/π_θ) - 1  (>= 0; Schulman 2020,
       "Approximating KL divergence", the k3 estimator; unbiased for tokens drawn from π_θ, and so
       only approximately after the first of the μ inner updates, whose tokens came from π_old,
       as in the paper)                                                                             [eq. 4]
* (E4) objective   J(θ) = E[ 1/G Σ_i 1/|o_i| Σ_t { min(ρ_{i,t} Â_{i,t}, clip(ρ_{i,t}, 1-ε, 1+ε) Â_{i,t})
                                                      - β D_KL[π_θ||π_ref]_{i,t} } ]                [eq. 3]
* (E5) μ inner updates per batch with π_old fixed (Algorithm 1, "for GRPO iteration = 1..μ")      [Alg. 1]

Each gradient step minimises -J on one batch of ``n_prompts`` prompts x ``group_size`` completions.

Deviations, stated: std in (E2) is the population std of the group (the paper does not say
which; TRL uses the sample std) plus ``eps`` in the denominator, so a group whose rewards are
all equal has advantage 0 and gives no policy gradient (only the KL term acts). Gradient-norm
clipping (``max_grad_norm``). π_ref stays the policy at the start of ``learn`` (the paper's
iterative GRPO also refreshes π_ref and the reward model; here the reward is a verifier, not a
model). Adam with the learning rate tuned here for a 2-layer toy model (the paper: 1e-6 on 7B).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lucidrl.agent import OTHER_LOADERS
from lucidrl.checkpoint import load_checkpoint, optimizer_from_flat, optimizer_to_flat, save_checkpoint
from lucidrl.config import check
from lucidrl.envs.text import TextTask, make_task
from lucidrl.errors import CheckpointError, ConfigError
from lucidrl.lm import CausalLM, accuracy, make_policy, supervised_warm_start
from lucidrl.logging import Logger
from lucidrl.threads import hold_threads
from lucidrl.version import __version__


@dataclass
class GRPOConfig:
    """GRPO's hyperparameters. Paper values (§4.2): G=64, β=0.04, μ=1, lr 1e-6; toy defaults tuned here."""

    task: str = "addition"
    """Toy text task of ``lucidrl.envs.text``: 'addition' or 'sort'."""
    group_size: int = 8
    """G, completions sampled per prompt (paper: 64)."""
    n_prompts: int = 16
    """Prompts per batch; a batch holds n_prompts * group_size completions."""
    clip_range: float = 0.2
    """ε of the clipped ratio (E4) (PPO's 0.2)."""
    beta: float = 0.04
    """β, weight of the KL penalty to π_ref (E4) (paper: 0.04)."""
    learning_rate: float = 5e-4
    """Adam step size (tuned here for the toy model; paper: 1e-6 on a 7B model)."""
    n_epochs: int = 2
    """μ, gradient steps on each batch with π_old fixed (E5) (paper: 1)."""
    temperature: float = 1.0
    """Sampling temperature; log-probs of π_θ, π_old and π_ref are taken at the same temperature."""
    max_new_tokens: int | None = None
    """Longest completion, EOS included (None: the task's answer length + 1, also the most it may be)."""
    eps: float = 1e-4
    """Deviation: added to the group std in (E2)."""
    max_grad_norm: float | None = 1.0
    """Deviation: clip the global gradient norm to this (None: off)."""
    d_model: int = 64
    """Transformer width."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads."""
    seed: int = 0
    """Seed of the model's initialisation, sampling and prompt draws."""
    torch_threads: int | str = "auto"
    """CPU threads for torch in warm_start, learn and evaluate (restored after): 'auto' (1: the toy model's products
    are too small to split, and one thread gives the same numbers on every machine) or a number."""

    def __post_init__(self):
        for name in ("group_size", "n_prompts", "n_epochs", "d_model", "n_layers", "n_heads"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 1, f"{name} must be an integer >= 1, got {v!r}")
        check(self.group_size >= 2, f"group_size must be >= 2 (the group is the baseline), got {self.group_size}")
        check(self.d_model % self.n_heads == 0,
              f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        check(0 < self.clip_range < 10, f"clip_range must lie in (0, 10), got {self.clip_range}")
        check(self.beta >= 0, f"beta must be >= 0, got {self.beta}")
        check(0 < self.learning_rate < 1, f"learning_rate must lie in (0, 1), got {self.learning_rate}")
        check(self.temperature > 0, f"temperature must be > 0 for sampling, got {self.temperature}")
        check(self.max_new_tokens is None or (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1),
              f"max_new_tokens must be an integer >= 1 or None, got {self.max_new_tokens!r}")
        check(self.eps > 0, f"eps must be > 0, got {self.eps}")
        check(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm must be > 0 or None")
        check(self.torch_threads == "auto" or (type(self.torch_threads) is int and self.torch_threads >= 1),
              f"torch_threads must be 'auto' or an integer >= 1, got {self.torch_threads!r}")


# --------------------------------------------------------------------------- pure functions
def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(E2) r̃_i = (r_i - mean) / (std + eps) within each consecutive group of ``group_size`` rewards."""
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ConfigError(f"rewards must be 1-D with a length divisible by group_size={group_size}, "
                          f"got shape {tuple(rewards.shape)}")
    r = rewards.view(-1, group_size)
    adv = (r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + eps)  # (E2)
    return adv.reshape(-1)


def k3_kl(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """(E3) per-token π_ref/π_θ - log(π_ref/π_θ) - 1 >= 0, an estimate of KL(π_θ||π_ref) (unbiased on π_θ's samples)."""
    log_r = logp_ref - logp
    return log_r.exp() - log_r - 1.0  # (E3)


def grpo_loss(logp: torch.Tensor, logp_old: torch.Tensor, logp_ref: torch.Tensor | None, advantages: torch.Tensor,
              mask: torch.Tensor, clip_range: float, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-J (E4) to minimise. logp, logp_old, logp_ref, mask: (B, N) per token; advantages: (B,) one per
    completion (broadcast over its tokens). Padding (mask 0) contributes nothing."""
    adv = advantages.unsqueeze(1)  # (E2) the same advantage for every token of completion i
    ratio = (logp - logp_old).exp()  # (E1)
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - clip_range, 1 + clip_range) * adv)  # (E4) clipped term
    per_token = surrogate
    kl = torch.zeros_like(logp) if logp_ref is None else k3_kl(logp, logp_ref)
    if beta:
        per_token = per_token - beta * kl  # (E4) KL penalty inside the per-token sum
    per_token = torch.where(mask > 0, per_token, 0.0)  # padding: nothing (not even a NaN from its log-probs)
    per_sequence = per_token.sum(1) / mask.sum(1).clamp(min=1)  # (E4) 1/|o_i| Σ_t
    loss = -per_sequence.mean()  # (E4) 1/G Σ_i (and the mean over prompts)
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        on = mask > 0
        metrics = {"diag/kl_ref": kl[on].sum() / n,
                   "diag/clip_fraction": ((ratio[on] - 1).abs() > clip_range).sum() / n,
                   "diag/approx_kl": ((ratio[on] - 1) - (logp - logp_old)[on]).sum() / n}
    return loss, metrics


# --------------------------------------------------------------------------- one update
def grpo_update(policy: CausalLM, reference: CausalLM, optimizer: torch.optim.Optimizer,
                batch: dict[str, torch.Tensor], cfg: GRPOConfig) -> dict[str, float]:
    """μ = n_epochs gradient steps (E5) on one batch of sampled completions; π_old's log-probs are fixed."""
    q, o, mask = batch["prompts"], batch["completions"], batch["mask"]
    with torch.no_grad():
        logp_old = policy.logprobs(q, o, cfg.temperature)  # π_old: the policy that sampled the batch
        logp_ref = reference.logprobs(q, o, cfg.temperature) if cfg.beta else None
    seen: dict[str, list[float]] = {}
    for _ in range(cfg.n_epochs):  # (E5)
        logp = policy.logprobs(q, o, cfg.temperature)
        loss, metrics = grpo_loss(logp, logp_old, logp_ref, batch["advantages"], mask, cfg.clip_range, cfg.beta)
        optimizer.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm or float("inf"))  # Deviation
        optimizer.step()
        for k, v in {"loss/policy": loss.detach(), "diag/grad_norm": norm, **metrics}.items():
            seen.setdefault(k, []).append(float(v))
    return {k: sum(v) / len(v) for k, v in seen.items()}


# --------------------------------------------------------------------------- the algorithm
class GRPO:
    """GRPO on a toy text task. ``GRPO("addition", seed=0).warm_start().learn(200)``.

    Not a subclass of ``lucidrl.Algorithm``: that base is built around Gymnasium spaces and vector
    envs, while here the "env" is a prompt sampler and a verifier. Save/load use the same
    checkpoint format (safetensors + JSON, ``lucidrl.checkpoint``); load with ``GRPO.load``.
    """

    name = "grpo"

    def __init__(self, task: str | TextTask = "addition", *, run_dir: str | Path | None = None, verbose: int = 0,
                 **hyperparams: Any):
        unknown = sorted(set(hyperparams) - set(GRPOConfig.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown GRPO hyperparameters {unknown}; "
                              f"known: {', '.join(GRPOConfig.__dataclass_fields__)}")
        name = task.name if isinstance(task, TextTask) else task
        self.config = GRPOConfig(task=name, **hyperparams)
        self.task = make_task(task)
        cfg = self.config
        self.max_new_tokens = cfg.max_new_tokens or self.task.max_new_tokens
        if self.max_new_tokens > self.task.max_new_tokens:  # the policy has positions for the task's longest only
            raise ConfigError(f"max_new_tokens={cfg.max_new_tokens} is more than task {name!r} needs: at most "
                              f"{self.task.max_new_tokens} (its longest answer and the EOS; the policy has positions "
                              "for no more); leave it None for that")
        torch.manual_seed(cfg.seed)
        self.policy = make_policy(self.task, cfg.d_model, cfg.n_layers, cfg.n_heads)
        self.reference: CausalLM | None = None  # π_ref: frozen at the start of the first learn()
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.learning_rate)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.run_dir, self.verbose = (Path(run_dir) if run_dir is not None else None), verbose
        self.n_updates = 0
        self.num_prompts = 0
        self.last_metrics: dict[str, float] = {}

    def warm_start(self, n_examples: int = 2000, steps: int = 200, learning_rate: float = 3e-3) -> GRPO:
        """Supervised cross-entropy on correct training-split examples (the SFT stage before RL)."""
        with self._threads():
            supervised_warm_start(self.policy, self.task, n_examples, steps, self.generator,
                                  learning_rate=learning_rate)
        return self

    def _threads(self):
        """torch on ``torch_threads`` threads (``lucidrl.threads.hold_threads``), restored after."""
        n = self.config.torch_threads
        return hold_threads(1 if n == "auto" else n, None)

    def evaluate(self, n_prompts: int | None = None, split: str = "heldout") -> float:
        """Greedy exact-match accuracy on the first ``n_prompts`` prompts of a split (None: all)."""
        prompts = self.task.splits[split][:n_prompts]
        with self._threads():
            return accuracy(self.policy, self.task, prompts)

    def _sample_batch(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        cfg, task = self.config, self.task
        prompts = task.sample_prompts(cfg.n_prompts, self.generator, "train")
        prompts = [p for p in prompts for _ in range(cfg.group_size)]  # G completions of each prompt
        q = task.encode_prompts(prompts)
        o, _, mask = self.policy.sample(q, self.max_new_tokens, self.generator, cfg.temperature)
        rewards = torch.tensor([task.score(p, c) for p, c in zip(prompts, o)])
        adv = group_advantages(rewards, cfg.group_size, cfg.eps)  # (E2)
        return {"prompts": q, "completions": o, "mask": mask, "advantages": adv}, rewards

    def learn(self, total_updates: int, eval_every: int = 0, eval_prompts: int = 200, progress_bar: bool = False
              ) -> GRPO:
        """``total_updates`` batches: sample G completions per prompt, score, group advantages, μ steps
        (``progress_bar``: tqdm's, counting updates)."""
        if not (isinstance(total_updates, int) and total_updates >= 1):
            raise ConfigError(f"total_updates must be an integer >= 1, got {total_updates!r}")
        if self.reference is None:
            self.reference = copy.deepcopy(self.policy).requires_grad_(False)
        logger = Logger(self.run_dir, verbose=self.verbose, tensorboard=False, append=self.n_updates > 0,
                        columns=("eval/heldout_accuracy",) if eval_every else ())  # step: prompts seen
        logger.start(self.num_prompts + total_updates * self.config.n_prompts, self.num_prompts, progress_bar)
        t0 = time.process_time()
        try:
            with self._threads():  # (torch_threads; evaluate inside holds the same)
                for _ in range(total_updates):
                    batch, rewards = self._sample_batch()  # 1. sample a group per prompt from π_old, score it
                    metrics = grpo_update(self.policy, self.reference, self.optimizer, batch, self.config)  # 2. μ steps
                    self.n_updates += 1
                    self.num_prompts += self.config.n_prompts
                    metrics.update({"rollout/reward": float(rewards.mean()), "train/n_updates": self.n_updates,
                                    "rollout/completion_length": float(batch["mask"].sum(1).mean()),
                                    "time/cpu_s": time.process_time() - t0})
                    if eval_every and self.n_updates % eval_every == 0:
                        metrics["eval/heldout_accuracy"] = self.evaluate(eval_prompts)
                    logger.record(self.num_prompts, metrics)  # 3. log
                    self.last_metrics = metrics
        finally:
            logger.close()
        return self

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | Path) -> Path:
        tensors = {f"policy/{k}": v for k, v in self.policy.state_dict().items()}
        if self.reference is not None:
            tensors.update({f"reference/{k}": v for k, v in self.reference.state_dict().items()})
        opt_tensors, opt_meta = optimizer_to_flat("optim/optimizer", self.optimizer)
        tensors.update(opt_tensors)
        tensors["rng/generator"] = self.generator.get_state()
        space = {"type": "text", "task": self.config.task, "vocab": self.task.tokenizer.chars}
        config = {"algo": self.name, "lucidrl_version": __version__, "env_id": self.config.task,
                  "observation_space": space, "action_space": space, "config": asdict(self.config)}
        state = {"lucidrl_version": __version__, "n_updates": self.n_updates, "num_timesteps": self.num_prompts,
                 "optimizers": {"optimizer": opt_meta}}
        return save_checkpoint(path, tensors, config, state)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> GRPO:
        """A model saved by ``save``; ``task=`` a TextTask instance built with non-default options (the
        checkpoint records the task's name), other keywords as in ``GRPO(...)`` (run_dir, verbose)."""
        tensors, config, state = load_checkpoint(path)
        if config.get("algo") != cls.name:
            raise CheckpointError(f"{str(path)!r} is a checkpoint of {config.get('algo')!r}, not of GRPO; "
                                  "load it with lucidrl.load()")
        hyper = dict(config["config"])
        task = kwargs.pop("task", None) or hyper.pop("task", None)  # a TextTask instance: the checkpoint names its kind
        hyper.pop("task", None)
        if task is None:
            raise CheckpointError(f"{str(path)!r}: config.json names no task, so it is no GRPO checkpoint "
                                  "(was its 'algo' edited?)")
        try:
            model = cls(task, **kwargs, **hyper)
        except (ConfigError, TypeError) as e:
            raise CheckpointError(f"the hyperparameters in {str(path)!r} (config.json) do not fit GRPO: {e}") from None
        try:
            model.policy.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("policy/")})
            if any(k.startswith("reference/") for k in tensors):
                model.reference = copy.deepcopy(model.policy).requires_grad_(False)
                model.reference.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("reference/")})
        except RuntimeError as e:
            raise CheckpointError(f"the weights in {str(path)!r} do not fit this GRPO model: {e}") from None
        opt_state, rng = state.get("optimizers", {}).get("optimizer"), tensors.get("rng/generator")
        if opt_state is None or rng is None:
            raise CheckpointError(f"corrupt checkpoint: {str(path)!r} lacks the optimiser state or the generator's")
        optimizer_from_flat("optim/optimizer", model.optimizer, tensors, opt_state)
        try:
            model.generator.set_state(rng)
        except (RuntimeError, TypeError) as e:
            raise CheckpointError(f"corrupt checkpoint: {str(path)!r} has an unusable generator state ({e})") from None
        model.n_updates, model.num_prompts = int(state.get("n_updates", 0)), int(state.get("num_timesteps", 0))
        return model


OTHER_LOADERS[GRPO.name] = GRPO.load  # lucidrl.load(path) reads a GRPO checkpoint too

__all__ = ["GRPO", "GRPOConfig", "group_advantages", "k3_kl", "grpo_loss", "grpo_update"]
