"""Fast twins for VPG and REINFORCE: ``policy_step`` and ``fit_critic`` of ``lucidrl.algos.vpg``, written out.

The policy step runs the actor as a K = 1 NumPy ``MLPCore`` and writes the pseudo-loss's gradient
out (``lucidrl.fast.heads``: ∂(-mean(Ψ log π))/∂log π = -Ψ/B, then the head's rule); the critic's
full-batch regression steps (``n_critic_updates`` of them on thousands of samples) run the
critic as a K = 1 NumPy core with its gradient written out, as TRPO's. Both step their Adam on
flat weights (``lucidrl.fast.flat``). Supported: what TRPO's twins support (flat or one-hot observations; categorical,
MultiCategorical, Bernoulli and Gaussian heads).
"""

from __future__ import annotations

import numpy as np
import torch

from lucidrl import backends
from lucidrl.advantages import normalize
from lucidrl.algos.vpg import step_diagnostics
from lucidrl.fast.flat import FlatOptimizer, clip_grad_norm, flat_optimizer
from lucidrl.fast.heads import gaussian_terms, logit_terms
from lucidrl.fast.inputs import InputEncoding
from lucidrl.fast.mlp import single_net
from lucidrl.fast.trpo import actor_unsupported, critic_unsupported


def policy_step(agent, optimizer, batch, cfg) -> dict[str, float]:
    """``lucidrl.algos.vpg.policy_step``: the same pseudo-loss (E3), clipping and Adam step."""
    net = single_net(agent.actor, numpy=True)
    opt = flat_optimizer(optimizer, net.flat)
    psi = (normalize(batch["psi"]) if cfg.normalize_advantage else batch["psi"]).numpy()
    x = InputEncoding(agent.encoder).numpy(batch["obs"].numpy())  # float rows, or one-hot rows as their columns
    actions = batch["actions"].numpy()
    weights, grad = net.flat.flat.numpy(), net.flat.grad.numpy()

    def policy_term(logprob):  # (E3) -mean(Ψ log π) and its gradient -Ψ / B
        return -float((logprob * psi).mean()), psi * (-1.0 / psi.shape[0]), None

    out, hs = net.forward(x)
    if net.log_std is not None:
        _, d_out, pg_loss, entropy, _ = gaussian_terms(
            out, weights[net.tail], actions, policy_term, cfg.ent_coef, True, grad[net.tail]
        )
    else:
        _, d_out, pg_loss, entropy, _ = logit_terms(agent.head, out, actions, policy_term, cfg.ent_coef, True)
    net.core.backward(net.w, net.blocks(grad), hs, [d_out])
    grad_norm = clip_grad_norm(net.flat.grad, cfg.max_grad_norm)
    theta_old = torch.cat([p.detach().reshape(-1) for p in agent.actor_parameters()])
    opt.step()
    ent = float(np.mean(entropy))
    return {
        "loss/policy": pg_loss,
        "diag/entropy": ent,
        "loss/entropy": -ent,
        "diag/grad_norm": grad_norm,
        **step_diagnostics(agent, batch, torch.from_numpy(psi), theta_old),
    }  # the reference's measurements


def policy_unsupported(model) -> str | None:
    return actor_unsupported(model) or FlatOptimizer.unsupported(model.policy_optimizer, model.agent.actor_parameters())


def fit_critic(agent, optimizer, batch, cfg) -> dict[str, float]:
    """``lucidrl.algos.vpg.fit_critic``: the same full-batch regression steps and Adam."""
    net = single_net(agent.critic, numpy=True)
    opt = flat_optimizer(optimizer, net.flat)
    x, targets = InputEncoding(agent.encoder).numpy(batch["obs"].numpy()), batch["targets"].numpy()
    losses = []
    with torch.no_grad():
        for _ in range(cfg.n_critic_updates):
            losses.append(net.mse_backward(x, targets))  # (E4)
            opt.step()
    return {
        "loss/value": sum(losses) / len(losses),
        "diag/value_loss_before": losses[0],
        "diag/value_loss_last": losses[-1],
    }


backends.register("vpg_policy_step", policy_step, policy_unsupported)
backends.register("vpg_fit_critic", fit_critic, critic_unsupported)
