"""Fast twins for TRPO: ``local_models`` and ``fit_critic`` of ``lucidrl.algos.trpo`` with the passes written out.

Where TRPO spends its time on CartPole's preset: ~1,500 Fisher-vector products a run, each a
double backward through the actor, and ~4,000 critic steps on 512 samples, where autograd's
bookkeeping costs as much as the arithmetic. The twins compute the same quantities on the actor
or critic as a K = 1 ``MLPCore`` (the actor's Fisher products in torch; the critic's regression steps,
whose ops cost their launches more than their products, in NumPy):

* g = ∇L(θ_old): the surrogate's gradient in the network's output, written out, then one VJP;
* F v: at θ_old the KL's gradient in the output vanishes, so its Hessian is Jᵀ M J (the paper's
  App. C.1 form), with J the Jacobian of the output in θ and M the Hessian of the KL in the output
  (``kl_hessian_product``): diag(p) - p pᵀ per state for a softmax, one such block per component
  for a MultiCategorical (its KL is the sum of the components'), diag(p (1 - p)) for Bernoulli bits
  (∂KL(p_old || σ(l))/∂l = σ(l) - p_old, whose derivative is σ'(l) = p (1 - p)), diag(σ⁻²) for a
  Gaussian's μ (and 2 for each log σ). So F v is a JVP (J v), a multiplication by M, and a VJP: no
  double backward, ~3x cheaper;
* the critic's regression step: ∂mean((V - R)²)/∂V = 2 (V - R) / B, one VJP, and the optimiser's
  step on the flat weights (``lucidrl.fast.flat``).

Supported: MLP actor and critic (tanh, ReLU or ELU) on flat observations or one-hot encoded ones
(Discrete, MultiDiscrete: the first layer as a gather, ``lucidrl.fast.inputs``), a categorical,
MultiCategorical or Bernoulli head or a Gaussian one with a state-independent log σ, on the CPU in
float32. A Gaussian log σ at its bound (where the clamp's gradient is not the identity) falls back to
the reference for that update.
"""

from __future__ import annotations

import numpy as np
import torch

from lucidrl import backends
from lucidrl.algos.trpo import local_models as reference_local_models
from lucidrl.algos.trpo import mean_kl, surrogate_advantage
from lucidrl.fast.flat import FlatOptimizer, flat_optimizer
from lucidrl.fast.heads import head_unsupported, logit_terms
from lucidrl.fast.inputs import InputEncoding, input_unsupported
from lucidrl.fast.mlp import MLPCore, single_net
from lucidrl.networks import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    BernoulliHead,
    CategoricalHead,
    DiagGaussianHead,
    MultiCategoricalHead,
)
from lucidrl.rollout import minibatches


def surrogate_and_logit_gradient(
    logits: torch.Tensor, actions: torch.Tensor, logprob_old: torch.Tensor, advantages: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(E1) for a softmax policy with its gradient in the logits: L, and ∂L/∂l = (1/B) r Â (onehot(a) - p)."""
    logp = logits.log_softmax(-1)
    idx = actions.long().unsqueeze(-1)
    weight = (logp.gather(-1, idx).squeeze(-1) - logprob_old).exp_().mul_(advantages)  # r Â
    surrogate = weight.mean()
    weight = weight.div_(logits.shape[0]).unsqueeze(-1)
    return surrogate, logp.exp_().mul_(weight).neg_().scatter_add_(-1, idx, weight)


def surrogate_and_head_gradient(
    head, logits: torch.Tensor, actions: torch.Tensor, logprob_old: torch.Tensor, advantages: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(E1) for a head with logits: L, and ∂L/∂l = (1/B) r Â ∂log π/∂l, with the head's ∂log π/∂l
    (``lucidrl.fast.heads.logit_terms``: onehot(a_i) - p_i per MultiCategorical part, a - σ(l) per Bernoulli bit)."""
    if isinstance(head, CategoricalHead):
        return surrogate_and_logit_gradient(logits, actions, logprob_old, advantages)
    lp_old, adv = logprob_old.numpy(), advantages.numpy()

    def surrogate(logprob):  # L = mean(r Â), and ∂L/∂log π = r Â / B
        weight = np.exp(logprob - lp_old) * adv
        return torch.tensor(weight.mean(dtype=np.float32)), weight / weight.shape[0], None

    _, d_logits, value, _, _ = logit_terms(head, logits.numpy(), actions.numpy(), surrogate, 0.0, False)
    return value, torch.from_numpy(d_logits)


def kl_hessian_product(head, logits: torch.Tensor, B: int):
    """u -> M u / B, M the Hessian of KL(π_old || π) in the network's output at π = π_old, per state: for a
    softmax diag(p) - p pᵀ, so M u = p ⊙ (u - pᵀu); one such block per MultiCategorical component; for Bernoulli
    bits diag(p (1 - p))."""
    if isinstance(head, BernoulliHead):
        p = logits.sigmoid()
        scale = p * (1.0 - p) / B
        return lambda u: u.mul_(scale)
    sizes = head.nvec if isinstance(head, MultiCategoricalHead) else [logits.shape[-1]]  # a categorical: one block
    ps = [part.softmax(-1) for part in logits.split(sizes, -1)]

    def product(u: torch.Tensor) -> torch.Tensor:
        blocks = [p * (v - (p * v).sum(-1, keepdim=True)) / B for p, v in zip(ps, u.split(sizes, -1))]
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, -1)

    return product


def surrogate_and_gaussian_gradient(
    head: DiagGaussianHead,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    actions: torch.Tensor,
    logprob_old: torch.Tensor,
    advantages: torch.Tensor,
):
    """(E1) for a diagonal Gaussian: L, ∂L/∂μ = (1/B) r Â z/σ and ∂L/∂log σ = (1/B) Σ_states r Â (z² - 1)."""
    inv_std = (-log_std).exp()
    z = (actions - mean) * inv_std
    logprob = head.log_prob(torch.cat([mean, log_std.expand_as(mean)], -1), actions)
    weight = (logprob - logprob_old).exp_().mul_(advantages)  # r Â
    surrogate = weight.mean()
    weight = weight.div_(mean.shape[0]).unsqueeze(-1)
    return surrogate, weight * z * inv_std, (weight * (z.square() - 1.0)).sum(0)


def local_models(agent, batch, advantages, cg_damping):
    """``lucidrl.algos.trpo.local_models``: the same (L(θ_old), g, fvp, evaluate, set_theta)."""
    net = single_net(agent.actor, numpy=False)
    log_std = net.log_std
    gaussian = log_std is not None
    if log_std is not None and not bool(((log_std > LOG_STD_MIN) & (log_std < LOG_STD_MAX)).all()):
        return reference_local_models(agent, batch, advantages, cg_damping)  # at a bound: the reference's rule
    head, core, flat = agent.head, net.core, net.flat.flat
    x = InputEncoding(agent.encoder).tensor(batch["obs"])  # float rows, or one-hot rows as their columns
    actions, logprob_old, params_old = batch["actions"], batch["logprob_old"], batch["params_old"]
    B = x.shape[0]
    with torch.no_grad():
        out, hs = net.forward(x)
        g = torch.empty_like(flat)
        if gaussian:
            log_std = flat[net.tail]
            surrogate, d_mean, d_log_std = surrogate_and_gaussian_gradient(
                head, out, log_std, actions, logprob_old, advantages
            )  # (E1)
            core.backward(net.w, net.blocks(g), hs, [d_mean])  # (E4) g = ∇L(θ_old)
            g[net.tail] = d_log_std
            scale = (-2.0 * log_std).exp() / B  # M = diag(σ⁻²) for μ, per state, over B
        else:
            surrogate, d_logits = surrogate_and_head_gradient(head, out, actions, logprob_old, advantages)  # (E1)
            core.backward(net.w, net.blocks(g), hs, [d_logits])  # (E4)
            kl_hessian = kl_hessian_product(head, out, B)

    @torch.no_grad()
    def fvp(v: torch.Tensor) -> torch.Tensor:  # (E5) F v = Jᵀ M J v, no double backward
        jv = core.jvp(net.w, hs, net.blocks(v))[0]  # J v
        u = jv.mul_(scale) if gaussian else kl_hessian(jv)  # M J v
        result = torch.empty_like(v)
        core.backward(net.w, net.blocks(result), hs, [u])  # Jᵀ M J v
        if gaussian:
            result[net.tail] = 2.0 * v[net.tail]  # the KL's Hessian in log σ
        return result.add_(v, alpha=cg_damping)  # Deviation: + λ v

    @torch.no_grad()
    def evaluate(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat.copy_(theta)
        mean = net.forward(x)[0]
        new_params = (
            torch.cat([mean, flat[net.tail].clamp(LOG_STD_MIN, LOG_STD_MAX).expand_as(mean)], -1) if gaussian else mean
        )
        return surrogate_advantage(head.log_prob(new_params, actions), logprob_old, advantages), mean_kl(
            head, params_old, new_params
        )  # (E1), (E2)

    return float(surrogate), g, fvp, evaluate, lambda theta: flat.copy_(theta)


def actor_unsupported(model) -> str | None:
    agent = model.agent
    if model.device.type != "cpu":
        return f"device {model.device.type!r} (the fast backend is for the CPU)"
    reason = input_unsupported(agent.encoder)
    if reason is not None:
        return reason
    if any(p.dtype != torch.float32 for p in agent.parameters()):
        return "weights other than float32"
    return head_unsupported(agent.head, agent.actor) or MLPCore.members_supported([agent.actor])


def fit_critic(agent, optimizer, batch, cfg, generator=None) -> dict[str, float]:
    """``lucidrl.algos.trpo.fit_critic``: the same minibatches, regression steps and Adam."""
    net = single_net(agent.critic, numpy=True)
    opt = flat_optimizer(optimizer, net.flat)
    losses = []
    encode = InputEncoding(agent.encoder).numpy  # float rows, or one-hot rows as their columns
    data = {"obs": batch["obs"], "returns": batch["returns"]}
    with torch.no_grad():
        for _, mb in minibatches(data, cfg.batch_size, cfg.n_critic_updates, generator):
            losses.append(net.mse_backward(encode(mb["obs"].numpy()), mb["returns"].numpy()))  # (E9)
            opt.step()
    return {"loss/value": sum(losses) / len(losses)}


def critic_unsupported(model) -> str | None:
    agent = model.agent
    if model.device.type != "cpu":
        return f"device {model.device.type!r} (the fast backend is for the CPU)"
    reason = input_unsupported(agent.encoder)
    if reason is not None or agent.critic_encoder is not None:
        return reason or f"a critic with its own {type(agent.critic_encoder).__name__}"
    if any(p.dtype != torch.float32 for p in agent.critic.parameters()):
        return "weights other than float32"
    return MLPCore.members_supported([agent.critic]) or FlatOptimizer.unsupported(
        model.critic_optimizer, agent.critic_parameters()
    )


backends.register("trpo_local_models", local_models, actor_unsupported)
backends.register("trpo_fit_critic", fit_critic, critic_unsupported)
