"""Fast twins for the actor-critic algorithms: PPO's and A2C's updates and the rollouts' acting, in NumPy.

Each twin has the reference function's signature and results (``tests/math/test_backends.py``):

* ``ppo_update`` = ``lucidrl.algos.ppo.ppo_update`` (PPO-Clip and PPO-Penalty, value clipping, ``target_kl``);
* ``a2c_update`` = ``lucidrl.algos.a2c.a2c_update``;
* ``rollout_policy`` = ``lucidrl.rollout.rollout_policy`` (the acting of PPO, A2C, TRPO and VPG).

for an ``ActorCritic`` with separate actor and critic MLPs of equal hidden widths (tanh, ReLU or ELU)
on flat (Box) observations or one-hot encoded ones (Discrete, MultiDiscrete: ``lucidrl.fast.inputs``),
a categorical, MultiCategorical or Bernoulli head or a Gaussian one with a state-independent log σ,
on the CPU in float32. What changes is only how the numbers are computed: the actor and the critic
run side by side as one ``MLPCore`` (K = 2) in NumPy, the loss's gradient is written out
(``lucidrl.fast.heads``, the surrogate's below) instead of built by autograd, and the optimiser
steps the flat weights (``lucidrl.fast.flat``). Why it pays on CartPole's networks: a PPO
minibatch step is ~10 small products and ~40 element-wise passes, where torch spends ~2-4 us
launching each op and autograd records ~20 nodes; NumPy launches an op in ~1 us.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from lucidrl import backends
from lucidrl.advantages import normalize
from lucidrl.algos.ppo import approx_kl, update_diagnostics
from lucidrl.fast.flat import FlatOptimizer, FlatParams, clip_grad_norm, flat_optimizer
from lucidrl.fast.heads import gaussian_terms, head_unsupported, kl_and_grad, logit_terms, sample
from lucidrl.fast.inputs import InputEncoding, input_unsupported
from lucidrl.fast.mlp import MLPCore, acting_forward, numpy_blocks
from lucidrl.networks import LOG_STD_MAX, LOG_STD_MIN, DiagGaussianHead
from lucidrl.rollout import minibatches
from lucidrl.rollout import rollout_policy as reference_rollout_policy

MAX_ACTING_WORK = 131_072
"""Acting in NumPy for at most this many rows x hidden units a step on one torch thread, this divided by torch's thread
count on more (larger batches act with the reference). Measured on this project's 2-core machine, acting on CartPole
with 64x64 tanh networks: NumPy 2.5-3.2x faster than torch for 128-4,096 rows on one thread (torch's ``tanh`` costs
~7x its ``sigmoid`` on this CPU build), 1.4-1.7x for 512-2,048 rows against torch on two threads, where torch led
from 4,096 rows (0.58x); with 256-wide layers on two threads, even at 512 rows. PPO on CartPole, 1,024 native envs:
150-151k steps/s against 133-137k with the earlier limit of 4,096 (docs/algorithms/ppo.md, "Fast backend")."""


def network_unsupported(agent, device: torch.device) -> str | None:
    """Why an ``ActorCritic`` cannot run on the NumPy core (None when it can)."""
    if device.type != "cpu":
        return f"device {device.type!r} (the fast backend is for the CPU)"
    if any(p.dtype != torch.float32 for p in agent.parameters()):
        return "weights other than float32"
    if agent.shared:
        return "a shared trunk (shared_trunk=True)"
    reason = input_unsupported(agent.encoder)
    if reason is not None:
        return reason
    return head_unsupported(agent.head, agent.actor) or MLPCore.members_supported([agent.actor, agent.critic])


class PairNet:
    """An ActorCritic's actor and critic as one NumPy ``MLPCore`` over flat weights (pair layout, log σ last)."""

    def __init__(self, agent):
        members = [agent.actor, agent.critic]
        self.core = MLPCore.of(members, numpy=True)
        self.head, self.inputs = agent.head, InputEncoding(agent.encoder)
        order = MLPCore.parameter_order(members)
        self.gaussian = isinstance(agent.head, DiagGaussianHead)
        if self.gaussian:
            order.append(agent.actor[-1].log_std)
        self.flat = FlatParams(order)
        weights, grad, size = self.flat.flat.numpy(), self.flat.grad.numpy(), self.core.size
        self.w, self.g = self.core.blocks(weights[:size]), self.core.blocks(grad[:size])
        self.log_std, self.log_std_grad = weights[size:], grad[size:]  # raw log σ (empty for a categorical head)

    def loss_backward(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        policy_term,
        returns: np.ndarray,
        vf_coef: float,
        ent_coef: float = 0.0,
        with_entropy: bool = False,
        values_old: np.ndarray | None = None,
        clip_range_vf: float | None = None,
        kl_penalty: tuple[np.ndarray, float] | None = None,
    ):
        """``policy_term(log π) + vf_coef L^VF - ent_coef mean(H)``, its gradient into ``flat.grad`` (overwritten);
        L^VF as ``value_loss_grad``; ``kl_penalty = (π_old's parameters, β)`` adds β mean(KL(π_old || π)) to the
        policy loss (``heads.kl_and_grad``). Returns (distribution parameters, policy loss, value loss, entropy or
        None, extra), extra then (the policy term's extra, mean KL)."""
        B = obs.shape[0]
        (out, v), hs = self.core.forward(self.w, self.inputs.numpy(obs))
        kl = d_kl = None
        beta = 0.0
        if kl_penalty is not None:
            params_old, beta = kl_penalty
            if self.gaussian:  # π's parameters: μ beside the bounded log σ of every row, as the head's
                log_std = np.clip(self.log_std, LOG_STD_MIN, LOG_STD_MAX)
                new = np.concatenate([out, np.broadcast_to(log_std, out.shape)], -1)
            else:
                new = out
            kl, d_kl = kl_and_grad(self.head, params_old, new)
            d_kl *= beta / B  # ∂(β mean KL)/∂(parameters)
        if self.gaussian:
            d = out.shape[1]
            params, d_out, policy_loss, entropy, extra = gaussian_terms(
                out, self.log_std, actions, policy_term, ent_coef, with_entropy, self.log_std_grad,
                None if d_kl is None else d_kl[:, d:].sum(0),
            )  # fmt: skip
            if d_kl is not None:
                d_out += d_kl[:, :d]
        else:
            params, d_out, policy_loss, entropy, extra = logit_terms(
                self.head, out, actions, policy_term, ent_coef, with_entropy
            )
            if d_kl is not None:
                d_out += d_kl
        if kl is not None:
            kl_mean = float(kl.mean())
            policy_loss, extra = policy_loss + beta * kl_mean, (extra, kl_mean)
        old = None if values_old is None else values_old.reshape(B)
        value_loss, d_v = value_loss_grad(v[:, 0], returns.reshape(B), old, clip_range_vf)
        self.core.backward(self.w, self.g, hs, [d_out, (d_v * vf_coef)[:, None]])
        return params, policy_loss, value_loss, entropy, extra


def value_loss_grad(
    values: np.ndarray, returns: np.ndarray, values_old: np.ndarray | None, clip_range_vf: float | None
) -> tuple[float, np.ndarray]:
    """L^VF (``lucidrl.algos.ppo.value_loss``) and ∂L^VF/∂V. Unclipped: mean((V - R)²), gradient 2 (V - R) / B.
    Clipped: mean(max((V - R)², (V_clip - R)²)) with V_clip = V_old + clip(V - V_old, -ε_V, ε_V); a sample's
    gradient is that of its larger term, V_clip's being 2 (V_clip - R) inside the clip range (ends included, as
    torch's clamp) and 0 outside it (V_clip does not move with V there); on a tie, torch's maximum gives each term
    half, as here."""
    B = values.shape[0]
    diff = values - returns
    if clip_range_vf is None:
        return float(np.mean(diff * diff)), diff * (2.0 / B)
    delta = values - values_old
    diff_clipped = values_old + np.clip(delta, -clip_range_vf, clip_range_vf) - returns
    unclipped, clipped = diff * diff, diff_clipped * diff_clipped
    inside = (delta >= -clip_range_vf) & (delta <= clip_range_vf)
    g_unclipped, g_clipped = 2.0 * diff, np.where(inside, 2.0 * diff_clipped, 0.0)
    grad = np.where(
        unclipped > clipped, g_unclipped, np.where(unclipped < clipped, g_clipped, 0.5 * (g_unclipped + g_clipped))
    )
    return float(np.mean(np.maximum(unclipped, clipped))), grad * (1.0 / B)


_NETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def pair_net(agent) -> PairNet:
    """The agent's PairNet, made once (again only if its weights were replaced, e.g. by ``module.to``)."""
    net = _NETS.get(agent)
    if net is None or not net.flat.intact():
        net = _NETS[agent] = PairNet(agent)
    return net


# --------------------------------------------------------------------------- PPO
def clipped_surrogate_grad(
    logprob: np.ndarray, logprob_old: np.ndarray, advantages: np.ndarray, clip_range: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """-L^CLIP (``ppo.clipped_surrogate``), its gradient in log π and the ratios. With r = exp(log π - log π_old),
    ∂(r Â)/∂log π = r Â, so ∂(-L^CLIP)/∂log π_t = -r_t Â_t / n where the minimum picks the unclipped term, and 0
    where it picks the clipped one (r_t outside [1-ε, 1+ε] on the side Â_t rewards: no push further)."""
    ratio = np.exp(logprob - logprob_old)
    unclipped = ratio * advantages
    clipped = np.clip(ratio, 1.0 - clip_range, 1.0 + clip_range) * advantages
    loss = -float(np.minimum(unclipped, clipped).mean())
    d_logprob = np.where(unclipped <= clipped, unclipped, 0.0) * (-1.0 / unclipped.size)
    return loss, d_logprob, ratio


def penalty_surrogate_grad(
    logprob: np.ndarray, logprob_old: np.ndarray, advantages: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """-mean(r Â), PPO-Penalty's surrogate without its KL term (``ppo.kl_penalty_surrogate``), its gradient in
    log π (∂(r Â)/∂log π = r Â: -r_t Â_t / n) and the ratios."""
    ratio = np.exp(logprob - logprob_old)
    weighted = ratio * advantages
    return -float(weighted.mean()), weighted * (-1.0 / weighted.size), ratio


def ppo_update(agent, optimizer, batch, cfg, clip_range, clip_range_vf, beta, generator=None) -> dict[str, float]:
    """``lucidrl.algos.ppo.ppo_update``: the same minibatches, loss (PPO-Clip's clipped surrogate or PPO-Penalty's
    β-weighted KL), value clipping, early stop and Adam step."""
    net = pair_net(agent)
    opt = flat_optimizer(optimizer, net.flat)
    params, ratios, pg, v, norms, kls = [], [], [], [], [], []
    penalty = cfg.variant == "kl_penalty"
    epochs = cfg.n_epochs  # passes completed
    for epoch, mb in minibatches(batch, cfg.batch_size, cfg.n_epochs, generator):
        if mb is not batch or epoch == 0:  # (a batch that is one minibatch is the same one every epoch)
            adv = normalize(mb["advantages"]) if cfg.normalize_advantage else mb["advantages"]
            obs, actions, returns, lp_old, adv_np, v_old, p_old = (
                t.numpy()
                for t in (mb["obs"], mb["actions"], mb["returns"], mb["logprob_old"], adv, mb["values_old"],
                          mb["params_old"])
            )  # fmt: skip
        if penalty:
            term = lambda lp, lp_old=lp_old, adv_np=adv_np: penalty_surrogate_grad(lp, lp_old, adv_np)  # noqa: E731
        else:
            term = lambda lp, lp_old=lp_old, adv_np=adv_np: clipped_surrogate_grad(lp, lp_old, adv_np, clip_range)  # noqa: E731
        p, pg_loss, v_loss, _, extra = net.loss_backward(
            obs,
            actions,
            term,
            returns,
            cfg.vf_coef,
            cfg.ent_coef,
            values_old=v_old,
            clip_range_vf=clip_range_vf,
            kl_penalty=(p_old, float(beta)) if penalty else None,
        )
        ratio, kl = extra if penalty else (extra, None)
        if cfg.target_kl is not None and not float(approx_kl(torch.from_numpy(ratio))) <= 1.5 * cfg.target_kl:
            epochs = epoch  # as the reference: π moved far enough from π_old; this gradient is not applied
            break
        norms.append(clip_grad_norm(net.flat.grad, cfg.max_grad_norm))
        opt.step()
        params.append(p.copy())
        ratios.append(ratio)
        pg.append(pg_loss)
        v.append(v_loss)
        if kl is not None:
            kls.append(kl)
    seen = {
        "params": [torch.from_numpy(np.concatenate(params))] if params else [],  # (none: stopped at once)
        "ratio": [torch.from_numpy(np.concatenate(ratios))] if ratios else [],
        "pg": list(torch.tensor(pg, dtype=torch.float32)),
        "v": list(torch.tensor(v, dtype=torch.float32)),
        "grad_norm": list(torch.tensor(norms, dtype=torch.float32)),
        "kl": list(torch.tensor(kls, dtype=torch.float32)),
    }
    return update_diagnostics(agent.head, seen, epochs, clip_range, cfg.variant)


def ppo_unsupported(model) -> str | None:
    return network_unsupported(model.agent, model.device) or FlatOptimizer.unsupported(
        model.optimizer, list(model.agent.parameters())
    )


# --------------------------------------------------------------------------- A2C
def a2c_update(agent, optimizer, batch, cfg) -> dict[str, float]:
    """``lucidrl.algos.a2c.a2c_update``: the same loss, clipping and RMSprop (or Adam) step."""
    net = pair_net(agent)
    opt = flat_optimizer(optimizer, net.flat)
    adv = (normalize(batch["advantages"]) if cfg.normalize_advantage else batch["advantages"]).numpy()

    def policy_term(logprob):  # (E3) -mean(A log π), negated, and its gradient -A / B
        return -float((adv * logprob).mean()), adv * (-1.0 / adv.shape[0]), None

    _, policy_loss, value_loss, entropy, _ = net.loss_backward(
        batch["obs"].numpy(),
        batch["actions"].numpy(),
        policy_term,
        batch["returns"].numpy(),
        cfg.vf_coef,
        cfg.ent_coef,
        with_entropy=True,
    )
    grad_norm = clip_grad_norm(net.flat.grad, cfg.max_grad_norm)
    opt.step()
    ent = float(entropy.mean())
    returns = batch["returns"].numpy()
    var_returns = float(returns.var(ddof=1)) if returns.size > 1 else float("nan")  # as explained_variance
    residual = returns - batch["values_old"].numpy()
    explained = 1.0 - float(residual.var(ddof=1)) / var_returns if var_returns > 0 else float("nan")
    return {
        "loss/policy": policy_loss,
        "loss/value": value_loss,
        "loss/entropy": -ent,
        "diag/entropy": ent,
        "diag/grad_norm": grad_norm,
        "diag/explained_variance": explained,
    }


def a2c_unsupported(model) -> str | None:
    return network_unsupported(model.agent, model.device) or FlatOptimizer.unsupported(
        model.optimizer, list(model.agent.parameters())
    )


# --------------------------------------------------------------------------- acting
def rollout_policy(agent):
    """``lucidrl.rollout.rollout_policy`` in NumPy, on the weights as they are at the rollout's start.

    Batches of more than ``MAX_ACTING_WORK`` / torch's thread count rows x hidden units a step act with the
    reference's own function (torch's threads are faster there; NumPy's BLAS is held at one thread in ``learn``).

    The weights are read from the flat weights where the update is fast too (PPO, A2C), else copied,
    and laid out for acting once per rollout (``lucidrl.fast.mlp.acting_forward``). On CartPole's 8
    envs a step's acting takes ~15 us against ~60 us for the torch forward and sampling.
    """
    net = _NETS.get(agent)
    if net is not None and net.flat.intact():
        core, w = net.core, net.w
    else:
        members = [agent.actor, agent.critic]
        core = MLPCore.of(members, numpy=True)
        w = numpy_blocks(core, members)
    forward, encode, head = acting_forward(core, w), InputEncoding(agent.encoder).numpy, agent.head
    reference, widest = reference_rollout_policy(agent), max(core.widths)
    limit = MAX_ACTING_WORK // torch.get_num_threads()  # (read inside learn: the threads it runs on)
    gaussian = isinstance(head, DiagGaussianHead)
    if gaussian:
        log_std = np.clip(agent.actor[-1].log_std.detach().numpy(), LOG_STD_MIN, LOG_STD_MAX)
        std = np.exp(log_std)

    def step(obs: torch.Tensor, noise: torch.Tensor | None):
        if obs.shape[0] * widest > limit:
            return reference(obs, noise)
        out, v = forward(encode(obs.numpy()))
        params = np.concatenate([out, np.broadcast_to(log_std, out.shape)], -1) if gaussian else out
        action = None
        if noise is not None:  # the head's sample: μ + σ ε, or from the logits (Gumbel-max, u < σ(l))
            action = torch.from_numpy(out + std * noise.numpy() if gaussian else sample(head, out, noise.numpy()))
        return action, torch.from_numpy(params), torch.from_numpy(v[:, 0])

    return step


def rollout_unsupported(model) -> str | None:
    return network_unsupported(model.agent, model.device)


backends.register("ppo", ppo_update, ppo_unsupported)
backends.register("a2c", a2c_update, a2c_unsupported)
backends.register("rollout", rollout_policy, rollout_unsupported)
