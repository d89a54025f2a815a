"""Flat weights for the fast backend: a network's parameters and its optimiser's state as views of one tensor.

Why: on CartPole-sized networks an update costs what its ops cost to launch, not what their
arithmetic costs. With every weight a view of one flat tensor, the optimiser step, the gradient
clipping and the written-out backward pass (``lucidrl.fast.mlp``) each touch one tensor instead
of one per layer.

What stays the reference's: the ``nn.Module`` and its ``nn.Parameter`` objects (only their
``.data`` become views, so ``state_dict``, ``load_state_dict`` and every forward are unchanged),
and the ``torch.optim`` optimiser with its per-parameter state in torch's own format (``step``,
``exp_avg``, ``exp_avg_sq`` for Adam; ``step``, ``square_avg`` for RMSprop), whose tensors become
views of flat tensors laid out like the weights. A checkpoint therefore holds exactly what the
reference writes, and either backend can continue from it.

``FlatOptimizer.step`` applies the reference optimiser's own update to the flat tensors at once:
for ``torch.optim.Adam(fused=True)`` (lucidrl's algorithms use it) torch's fused Adam kernel, for
a non-fused Adam or RMSprop torch's single-tensor update (the ops ``torch.optim`` runs on the CPU
by default, in the same order with the same scalars): element by element the arithmetic of the
reference's step (``tests/math/test_backends.py``).
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from torch import nn


class FlatParams:
    """``params`` (in the order given) moved into one flat tensor; each parameter's ``.data`` becomes a view of it."""

    def __init__(self, params: list[nn.Parameter]):
        self.params = list(params)
        total = sum(p.numel() for p in self.params)
        ref = self.params[0]
        self.flat = torch.empty(total, dtype=ref.dtype, device=ref.device)
        self.grad = torch.zeros_like(self.flat)  # the fast backward writes here (``p.grad`` is left alone)
        self.offsets = []
        offset = 0
        with torch.no_grad():
            for p in self.params:
                n = p.numel()
                self.flat[offset : offset + n].copy_(p.reshape(-1))
                p.data = self.flat[offset : offset + n].view_as(p)
                self.offsets.append((offset, n))
                offset += n
        self._ptrs = [p.data_ptr() for p in self.params]

    def intact(self) -> bool:
        """True while the parameters are still the views made here (``module.to()`` replaces them all)."""
        first, last = self.params[0], self.params[-1]
        return first.data_ptr() == self._ptrs[0] and last.data_ptr() == self._ptrs[-1]

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``flat`` (laid out like the weights) cut into one view per parameter."""
        return [flat[o : o + n].view_as(p) for p, (o, n) in zip(self.params, self.offsets)]

    def view(self, flat: torch.Tensor, i: int) -> torch.Tensor:
        """Parameter ``i``'s part of ``flat`` (laid out like the weights), shaped like the parameter."""
        o, n = self.offsets[i]
        return flat[o : o + n].view_as(self.params[i])


class FlatOptimizer:
    """A ``torch.optim.Adam`` or ``RMSprop`` over exactly ``flat.params``, stepped on the flat tensors.

    Supported: one parameter group, no weight decay, no AMSGrad/maximize/capturable/differentiable,
    RMSprop without momentum or centring (``unsupported`` says what else).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, flat: FlatParams):
        self.optimizer, self.flat_params = optimizer, flat
        self.adam = isinstance(optimizer, torch.optim.Adam)
        names = ("exp_avg", "exp_avg_sq") if self.adam else ("square_avg",)
        params = flat.params
        state = optimizer.state
        first = not state.get(params[0])
        self.moments = {k: torch.zeros_like(flat.flat) for k in names}
        self.steps = torch.zeros(len(params), dtype=torch.float32)
        with torch.no_grad():
            for i, p in enumerate(params):
                st = state[p]
                if not first:  # carry the reference's state over into the flat layout
                    self.steps[i] = st["step"]
                    for k in names:
                        o, n = flat.offsets[i]
                        self.moments[k][o : o + n].copy_(st[k].reshape(-1))
                st["step"] = self.steps[i]  # 0-d views: torch's own step() still counts each one
                for k in names:
                    st[k] = flat.view(self.moments[k], i)
        self._numpy_steps = self.steps.numpy()  # views: NumPy's in-place updates are the optimiser's state
        self._numpy_square_avg = (
            None if self.adam or flat.flat.device.type != "cpu" else self.moments["square_avg"].numpy()
        )
        self._key = names[0]
        self._bound = [state[p][self._key] for p in params]

    @staticmethod
    def unsupported(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> str | None:
        if type(optimizer) not in (torch.optim.Adam, torch.optim.RMSprop):
            return f"the optimiser {type(optimizer).__name__} (Adam and RMSprop are)"
        if (
            len(optimizer.param_groups) != 1
            or {id(p) for p in optimizer.param_groups[0]["params"]} != {id(p) for p in params}
            or len(optimizer.param_groups[0]["params"]) != len(params)
        ):
            return "an optimiser over other parameters than the network's, or several parameter groups"
        g = optimizer.param_groups[0]
        if (
            g.get("weight_decay")
            or g.get("maximize")
            or g.get("amsgrad")
            or g.get("capturable")
            or g.get("differentiable")
            or g.get("momentum")
            or g.get("centered")
            or (g.get("fused") and not hasattr(torch, "_fused_adam_"))
        ):
            return "optimiser options (weight decay, AMSGrad, maximize, momentum, centred, capturable)"
        return None

    def intact(self) -> bool:
        """True while the optimiser still holds the state views made here (``load_state_dict`` replaces them all)."""
        params, state, key = self.flat_params.params, self.optimizer.state, self._key
        return state[params[0]].get(key) is self._bound[0] and state[params[-1]].get(key) is self._bound[-1]

    def step(self) -> None:
        """One step of the optimiser's own update on the flat weights, with ``flat.grad``.

        (No autograd to switch off: the flat tensors are plain tensors, the parameters only views of them.)"""
        group = self.optimizer.param_groups[0]
        param, grad, lr = self.flat_params.flat, self.flat_params.grad, float(group["lr"])
        self._numpy_steps += 1  # the step counts (on the CPU in any case), through a NumPy view: ~1 us, torch's ~4
        if not self.adam and param.device.type == "cpu":  # RMSprop's five element-wise passes, on NumPy views
            p, g, square_avg, alpha = param.numpy(), grad.numpy(), self._numpy_square_avg, group["alpha"]
            square_avg *= alpha
            square_avg += (1 - alpha) * g * g
            avg = np.sqrt(square_avg)
            avg += group["eps"]
            p += -lr * (g / avg)
            return
        if self.adam and group.get("fused"):
            beta1, beta2 = group["betas"]
            torch._fused_adam_(
                [param],
                [grad],
                [self.moments["exp_avg"]],
                [self.moments["exp_avg_sq"]],
                [],
                [self.steps[0]],
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,
                eps=group["eps"],
                amsgrad=False,
                maximize=False,
            )
        elif self.adam:
            beta1, beta2 = group["betas"]
            exp_avg, exp_avg_sq = self.moments["exp_avg"], self.moments["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = float(self.steps[0])
            bias_correction1 = 1 - beta1**step
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(group["eps"])
            param.addcdiv_(exp_avg, denom, value=-(lr / bias_correction1))
        else:
            avg_sq = self.moments["square_avg"]
            alpha = group["alpha"]
            avg_sq.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
            param.addcdiv_(grad, avg_sq.sqrt().add_(group["eps"]), value=-lr)


_OPTIMIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def flat_optimizer(optimizer: torch.optim.Optimizer, flat: FlatParams) -> FlatOptimizer:
    """The optimiser's state as views of flat tensors laid out like ``flat``, made once (again after
    ``optimizer.load_state_dict``, which replaces the state's tensors, or when the weights were re-packed)."""
    opt = _OPTIMIZERS.get(optimizer)
    if opt is None or opt.flat_params is not flat or not opt.intact():
        opt = _OPTIMIZERS[optimizer] = FlatOptimizer(optimizer, flat)
    return opt


def clip_grad_norm(grad: torch.Tensor, max_norm: float | None) -> float:
    """``torch.nn.utils.clip_grad_norm_``'s rule on one flat gradient: scale by max_norm / (norm + 1e-6) when
    that is below 1. Returns the norm before clipping (None: only measure it). On the CPU through NumPy."""
    g = grad.numpy() if grad.device.type == "cpu" else None
    total = float(np.sqrt(np.dot(g, g))) if g is not None else float(torch.linalg.vector_norm(grad))
    if max_norm is not None:
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            if g is not None:
                g *= np.float32(coef)
            else:
                grad.mul_(coef)
    return total
