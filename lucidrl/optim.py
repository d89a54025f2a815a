"""Optimiser plumbing for small networks, where Python overhead costs more than the math.

``Adam`` is ``torch.optim.Adam`` (same math, same ``state_dict``, so checkpoints are
interchangeable) whose ``step`` calls PyTorch's fused Adam kernel directly. Measured on this
project's CPU (benchmarks/micro_ops.py): ``torch.optim.Adam(fused=True).step()`` costs ~54 us
on the 9k parameters of two 64x64 MLPs, of which the kernel is ~8 us; the rest is the generic
bookkeeping of ``Optimizer.step``. PPO on CartPole takes thousands of steps, so this matters.
Anything unusual (amsgrad, maximize, a closure, a missing kernel) falls back to the parent.

``RMSprop`` is the same idea for ``torch.optim.RMSprop`` (A2C's optimiser, as in the A3C paper
and SB3). PyTorch 2.13 has no fused RMSprop kernel, so its ``step`` issues the five tensor ops of
torch's own single-tensor RMSprop directly, on all of a group's parameters at once.

``clip_grad_norm`` is the rule of ``torch.nn.utils.clip_grad_norm_`` in four fused ops (two on
one flat tensor). ``optimizer_step`` calls an optimiser's own ``step`` without the profiling
wrapper torch puts around it (~6 us a call: Adam's step ~16 -> ~10 us, RMSprop's ~23 -> ~17 us on
9k parameters), when no step hooks are registered. Both speed only, the same updates (tested).
"""

from __future__ import annotations

import torch
import torch.optim.optimizer as _torch_optimizer


class Adam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` with a lean ``step`` (identical updates; tested)."""

    def __init__(self, params, lr: float = 1e-3, eps: float = 1e-8, **kwargs):
        super().__init__(params, lr=lr, eps=eps, fused=True, **kwargs)
        self._lean = hasattr(torch, "_fused_adam_") and all(
            not g["amsgrad"] and not g["maximize"] and not g.get("differentiable") and not g.get("decoupled_weight_decay")
            for g in self.param_groups)
        self._counters: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._counters = {}

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None or not self._lean:
            return super().step(closure)
        work = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            states = [self.state[p] for p in params]
            if any(not s for s in states) or len({s["step"].device for s in states}) > 1:
                return super().step()  # first step, or an unusual layout: torch steps every group
            if params:
                work.append((group, params, states))
        for group, params, states in work:
            steps = [s["step"] for s in states]
            counter = self._counters.get(id(group))
            if counter is None or counter[1] != steps:
                # one tensor holds every parameter's step count; the state's "step" entries are views
                # of it, so a single add_ advances all (a per-tensor foreach add costs ~15 us here)
                vec = torch.stack([s.detach().reshape(()) for s in steps]).to(torch.float32)
                for i, s in enumerate(states):
                    s["step"] = vec[i]
                counter = (vec, [s["step"] for s in states])
                self._counters[id(group)] = counter
                steps = counter[1]
            counter[0].add_(1.0)
            beta1, beta2 = group["betas"]
            torch._fused_adam_(
                params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                [], steps, lr=float(group["lr"]), beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                eps=group["eps"], amsgrad=False, maximize=False)
        return None


class RMSprop(torch.optim.RMSprop):
    """``torch.optim.RMSprop`` with a lean ``step`` (identical updates and ``state_dict``; tested).

    Non-centred RMSprop without momentum or weight decay, PyTorch's rule (ε outside the root):

        square_avg ← α square_avg + (1 - α) g²;    θ ← θ - lr g / (√square_avg + ε)

    A2C on CartPole steps 2,500 times per 100k env steps, so the bookkeeping around the math
    counts: on one flat tensor of 9k parameters torch's ``step`` takes ~26 us, this one ~23 us, of
    which ~14 us are the five kernels (``benchmarks/micro_ops.py``; with one tensor per layer
    the gap is larger). This ``step`` issues the same ops in the same order as torch's
    ``_single_tensor_rmsprop``, so the results are bitwise equal: ``mul_`` + ``addcmul_`` for the
    average, ``sqrt`` + ``add_`` for the denominator, one ``addcdiv_`` for the parameters, and the
    step counter's ``add_`` (kept so checkpoints match torch's). ``torch._fused_rmsprop_`` does not exist in torch 2.13;
    several tensors go through the matching ``torch._foreach_*`` ops. Anything else (momentum,
    centred, weight decay, maximize, complex parameters, a closure, the first step, which creates
    the state) falls back to the parent.
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, **kwargs):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, **kwargs)
        self._lean = self._plain()

    def _plain(self) -> bool:
        return all(not g["momentum"] and not g["centered"] and not g["weight_decay"] and not g["maximize"]
                   and not g.get("differentiable") and not g.get("capturable") for g in self.param_groups)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._lean = self._plain()  # the loaded groups' options decide

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None or not self._lean:
            return super().step(closure)
        work = []
        for group in self.param_groups:  # check every group before touching any
            params = [p for p in group["params"] if p.grad is not None]
            states = [self.state[p] for p in params]
            if any(not s or p.is_complex() or p.grad.is_sparse for p, s in zip(params, states)):
                return super().step()
            if params:
                work.append((group, params, states))
        for group, params, states in work:
            alpha, eps, lr = group["alpha"], group["eps"], float(group["lr"])
            if len(params) == 1:  # one flat parameter tensor (lucidrl.optim.flat_parameters)
                (p,), (s,) = params, states
                g, square_avg = p.grad, s["square_avg"]
                s["step"].add_(1)
                square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
                p.addcdiv_(g, square_avg.sqrt().add_(eps), value=-lr)
            else:
                grads, square_avgs = [p.grad for p in params], [s["square_avg"] for s in states]
                torch._foreach_add_([s["step"] for s in states], 1)
                torch._foreach_mul_(square_avgs, alpha)
                torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
                avg = torch._foreach_sqrt(square_avgs)
                torch._foreach_add_(avg, eps)
                torch._foreach_addcdiv_(params, grads, avg, value=-lr)
        return None


def clip_grad_norm(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale the gradients so their global L2 norm is at most ``max_norm``; returns the norm before.

    The rule of ``torch.nn.utils.clip_grad_norm_`` (coefficient max_norm / (norm + 1e-6),
    capped at 1) in four fused ops; it runs on every minibatch. One flat CPU tensor: the norm and
    one multiply when the coefficient is below 1 (~10 us -> ~4 us a call on 9k parameters).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if len(grads) == 1:  # one flat tensor (flat_parameters, PackedActorCritic): the same rule in two ops
        total = torch.linalg.vector_norm(grads[0])
        if grads[0].device.type == "cpu":  # the host reads a CPU norm for free: scale only when clipping bites
            coef = max_norm / (float(total) + 1e-6)
            if coef < 1.0:
                grads[0].mul_(coef)
            return total
        grads[0].mul_((max_norm / (total + 1e-6)).clamp_(max=1.0))  # on an accelerator: no host sync
        return total
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp_(max=1.0))
    return total


def flat_parameters(module: torch.nn.Module) -> torch.nn.Parameter:
    """Move all of ``module``'s parameters into one contiguous tensor; return it as a Parameter.

    Each parameter becomes a view into the flat tensor, and so does its gradient (a view into the
    flat tensor's ``.grad``, which backward accumulates into in place). The optimiser, gradient
    clipping and zeroing then handle *one* tensor instead of one per layer: measured ~8% faster
    per PPO minibatch step on CartPole's two 64x64 MLPs (benchmarks/micro_ops.py), where
    per-tensor overhead outweighs the math. The module keeps working as before: ``state_dict``,
    ``load_state_dict`` and forward are unchanged.

    Zero the gradients with ``optimizer.zero_grad(set_to_none=False)``, which keeps the views.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    total = sum(p.numel() for p in params)
    device, dtype = params[0].device, params[0].dtype
    flat = torch.nn.Parameter(torch.empty(total, device=device, dtype=dtype))
    flat.grad = torch.zeros(total, device=device, dtype=dtype)
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            flat[offset:offset + n].copy_(p.flatten())
            p.data = flat.data[offset:offset + n].view_as(p)
            p.grad = flat.grad[offset:offset + n].view_as(p)
            offset += n
    return flat


def zero_grad(parameters: list[torch.Tensor]) -> None:
    """Zero the gradients in place (views into a flat gradient stay views); skip those not yet made."""
    for p in parameters:
        if p.grad is not None:
            p.grad.zero_()


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()`` without the profiling wrapper torch puts around every ``step`` (~6 us a call,
    measured on this project's CPU), when no step hooks are registered; with hooks, the plain ``step()``.

    Speed only, the same update: the wrapped function is the optimiser's own ``step``.
    """
    lean = getattr(type(optimizer).step, "__wrapped__", None)
    hooks = getattr(optimizer, "_optimizer_step_pre_hooks", True) or getattr(optimizer, "_optimizer_step_post_hooks", True) \
        or getattr(_torch_optimizer, "_global_optimizer_pre_hooks", True) \
        or getattr(_torch_optimizer, "_global_optimizer_post_hooks", True)
    if lean is None or hooks:
        optimizer.step()
    else:
        lean(optimizer)
