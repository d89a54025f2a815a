"""An MLP whose weights live in one flat tensor, as plain math: TRPO's speed plumbing.

Why: TRPO on the zoo's CartPole preset spends its update in three places, all small enough
that autograd's bookkeeping costs as much as the arithmetic: ~4,000 critic steps on 512
samples, ~1,500 Fisher-vector products (each a double backward through the actor), and ~50k
acting calls on 2 observations. Here the passes are written out once, for a stack of
``nn.Linear`` layers with one activation (tanh or ReLU) between them whose parameters are views
of one flat tensor (``lucidrl.optim.flat_parameters``), which is how TRPO holds its actor (θ)
and its critic (φ):

* ``forward(x)``: z_i = h_{i-1} W_iᵀ + b_i, h_i = act(z_i), keeping every h_i (tanh through the
  sigmoid on large batches, tanh(z) = 2 sigmoid(2z) - 1, as ``lucidrl.networks.Tanh``);
* ``vjp(hs, d_out)``: the vector-Jacobian product (backpropagation), dW_i = δ_iᵀ h_{i-1},
  db_i = Σ δ_i, δ_{i-1} = (δ_i W_i) ⊙ act'(z_{i-1}), into one vector laid out like θ;
* ``jvp(hs, v)``: the Jacobian-vector product (forward-mode): the change of the output when θ
  moves along v, ḣ_i = act'(z_i) ⊙ (h_{i-1} V_iᵀ + v_b_i + ḣ_{i-1} W_iᵀ);
* ``numpy_forward()``: the same forward in NumPy, for acting on a few rows per env step.

Large products (TRPO's Fisher-vector products on ~1,000 states, its critic's on 512) go to
oneDNN instead of MKL where that is faster (``lucidrl.kernels``): a Fisher-vector product on
CartPole's batch ~550 -> ~450 us.

act' is written from the output: tanh' = 1 - h², relu' = [h > 0]. A Gaussian actor's last
module, the state-independent log σ, may follow: its entries of θ are located (``log_std_slice``)
and left to the caller, since μ does not depend on them. Speed only: the same functions as the
module's own forward and autograd's products, up to float rounding (``tests/math/test_flat_mlp.py``).
Anything else (other layers, another activation, another device) gets ``None`` from
``FlatMLP.of`` and the caller keeps autograd.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from lucidrl.kernels import ONEDNN_MIN_MACS, ONEDNN_MIN_MACS_DW, onednn_linear, use_onednn
from lucidrl.networks import LOG_STD_MAX, LOG_STD_MIN, StateIndependentLogStd, Tanh
from lucidrl.packed import numpy_activation, numpy_gaussian_params, numpy_pair_forward

_aten = torch.ops.aten


class FlatMLP:
    """Linear / activation layers over the flat tensor their parameters view; build with :meth:`of`."""

    def __init__(self, linears: list[nn.Linear], tanh: bool, flat: torch.Tensor,
                 log_std: nn.Parameter | None = None):
        self.linears, self.tanh, self.flat = linears, tanh, flat
        base = flat.data_ptr()
        size = flat.element_size()
        self._cuts = []  # (weight offset, weight shape, bias offset, bias size) in the flat layout
        for m in linears:
            w_off, b_off = (m.weight.data_ptr() - base) // size, (m.bias.data_ptr() - base) // size
            self._cuts.append((w_off, tuple(m.weight.shape), b_off, m.bias.numel()))
        self.weights = self.cut(flat.detach())  # views: they follow every in-place update of θ
        # a Gaussian actor's state-independent log σ: its place in θ (vjp leaves it alone, jvp ignores it)
        self.log_std_slice = None
        if log_std is not None:
            offset = (log_std.data_ptr() - base) // size
            self.log_std_slice = slice(offset, offset + log_std.numel())

    @staticmethod
    def of(seq: nn.Sequential, flat: torch.Tensor) -> "FlatMLP | None":
        """A FlatMLP for ``seq`` (Linear, act, ..., Linear; act one of tanh or ReLU; optionally a last
        ``StateIndependentLogStd`` with log σ inside its bounds) whose parameters are contiguous views
        covering all of ``flat`` (float32 or float64, CPU); None for anything else."""
        mods = list(seq)
        log_std = None
        if mods and isinstance(mods[-1], StateIndependentLogStd):
            log_std = mods.pop().log_std
            if not bool(((log_std >= LOG_STD_MIN) & (log_std <= LOG_STD_MAX)).all()):
                return None  # at a bound the clamp's gradient is not the identity
        linears, acts = mods[0::2], mods[1::2]
        if not linears or not all(type(m) is nn.Linear for m in linears) or len(acts) != len(linears) - 1 \
                or len({type(a) for a in acts}) > 1 or not all(isinstance(a, (Tanh, nn.ReLU)) for a in acts):
            return None
        params = [p for m in linears for p in (m.weight, m.bias)] + ([log_std] if log_std is not None else [])
        if flat.dtype not in (torch.float32, torch.float64) or flat.device.type != "cpu" or \
                sum(p.numel() for p in params) != flat.numel():
            return None
        start, end = flat.data_ptr(), flat.data_ptr() + flat.numel() * flat.element_size()
        if not all(p.is_contiguous() and start <= p.data_ptr() < end for p in params):
            return None
        return FlatMLP(linears, isinstance(acts[0], Tanh) if acts else True, flat, log_std)

    def cut(self, vec: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(W_i, b_i) views of a vector laid out like the flat weights (θ, a gradient, a direction v)."""
        return [(vec[w:w + int(np.prod(ws))].view(ws), vec[b:b + n]) for w, ws, b, n in self._cuts]

    def _act(self, z: torch.Tensor, doubled: bool) -> torch.Tensor:
        if not self.tanh:
            return z.relu_()
        if doubled:  # z holds 2z: tanh(z) = 2 sigmoid(2z) - 1, in place
            return z.sigmoid_().mul_(2.0).sub_(1.0)
        return z.tanh_()

    def _act_backward(self, d: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """d ⊙ act'(z), from the activation's output h: tanh' = 1 - h², relu' = [h > 0]."""
        return _aten.tanh_backward(d, h) if self.tanh else _aten.threshold_backward(d, h, 0)

    @staticmethod
    def _kernel(x: torch.Tensor) -> Callable | None:
        """oneDNN's linear for this pass's products, looked up once a pass (``lucidrl.kernels``), or None."""
        return onednn_linear() if x.dtype == torch.float32 else None

    @staticmethod
    def _linear(dnn: Callable | None, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None,
                min_macs: int = ONEDNN_MIN_MACS) -> torch.Tensor | None:
        """a wᵀ (+ b) by oneDNN when the product is large enough to gain from it, else None (MKL's turn)."""
        if dnn is None or not use_onednn(a.shape[0], w, min_macs):
            return None
        return dnn(a, w, b, "none", [], "")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(output, hs): hs[i] is the input of layer i (hs[0] = x), as vjp and jvp take them."""
        hs = [x]
        last = len(self.weights) - 1
        dnn = self._kernel(x)
        for i, (w, b) in enumerate(self.weights):
            z = self._linear(dnn, hs[-1], w, b)
            if i == last:
                return (torch.addmm(b, hs[-1], w.t()) if z is None else z), hs
            doubled = self.tanh and x.shape[0] * w.shape[0] >= 4096 and x.dtype == torch.float32  # as networks.Tanh
            if z is None:
                z = torch.addmm(b, hs[-1], w.t(), beta=2, alpha=2) if doubled else torch.addmm(b, hs[-1], w.t())
            elif doubled:
                z.mul_(2.0)
            hs.append(self._act(z, doubled))
        raise AssertionError("unreachable")

    def vjp(self, hs: list[torch.Tensor], d_out: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(∂out/∂θ)ᵀ d_out: backpropagation of ``d_out`` [B, n_out] into a flat vector (``out``, overwritten).

        The MLP's output is μ for a Gaussian actor; the log σ entries of the vector are not written."""
        g = torch.empty_like(self.flat) if out is None else out
        grads = self.cut(g)
        d = d_out
        dnn = self._kernel(d_out)
        for i in range(len(self.weights) - 1, -1, -1):
            w_grad = grads[i][0]
            big = self._linear(dnn, d.t(), hs[i].t(), min_macs=ONEDNN_MIN_MACS_DW)  # dW_i = δ_iᵀ h_{i-1}
            if big is not None:
                w_grad.copy_(big)
            elif w_grad.shape[1] < w_grad.shape[0]:  # a narrow input (the first layer): (h_{i-1}ᵀ δ_i)ᵀ, ~5x faster in MKL
                w_grad.copy_(torch.mm(hs[i].t(), d).t())
            else:
                torch.mm(d.t(), hs[i], out=w_grad)  # dW_i = δ_iᵀ h_{i-1}
            torch.sum(d, 0, out=grads[i][1])  # db_i = Σ δ_i
            if i:
                w = self.weights[i][0]
                dh = self._linear(dnn, d, w.t())
                d = self._act_backward(d.mm(w) if dh is None else dh, hs[i])  # δ_{i-1} = (δ_i W_i) ⊙ act'
        return g

    @torch.no_grad()
    def mse_backward(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """A critic's regression step (TRPO's and VPG's): mean((V(x) - y)²), its gradient written into
        ``flat.grad`` (overwritten): ∂mean((V - y)²)/∂V = 2 (V - y) / B backpropagated by ``vjp``. Returns the loss."""
        values, hs = self.forward(x)
        diff = values.squeeze(-1) - targets
        loss = diff.square().mean()
        self.vjp(hs, diff.mul_(2.0 / diff.shape[0]).unsqueeze(-1), out=self.flat.grad)
        return loss

    def jvp(self, hs: list[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
        """(∂out/∂θ) v: how the output [B, n_out] moves when θ moves along the flat direction ``v``."""
        dh = None
        last = len(self.weights) - 1
        dnn = self._kernel(v)
        for i, ((w, _), (vw, vb)) in enumerate(zip(self.weights, self.cut(v))):
            dz = self._linear(dnn, hs[i], vw, vb)
            if dz is None:
                dz = torch.addmm(vb, hs[i], vw.t())  # h_{i-1} V_iᵀ + v_b_i
            if dh is not None:
                big = self._linear(dnn, dh, w)
                if big is None:
                    dz.addmm_(dh, w.t())  # + ḣ_{i-1} W_iᵀ
                else:
                    dz += big
            if i == last:
                return dz
            dh = self._act_backward(dz, hs[i + 1])  # ḣ_i = act'(z_i) ⊙ ż_i
        raise AssertionError("unreachable")

    def numpy_forward(self) -> Callable[[np.ndarray], np.ndarray]:
        """The forward in NumPy on a copy of the current weights (make a new one after the weights change).

        For acting on a handful of rows, where NumPy's ~1 us per op beats torch's ~4 us.
        """
        layers = [(w.numpy().T.copy(), b.numpy().copy()) for w, b in self.weights]
        hidden, (w_out, b_out) = layers[:-1], layers[-1]
        act = numpy_activation(self.tanh)

        def forward(x: np.ndarray) -> np.ndarray:
            h = x.astype(np.float32, copy=False).reshape(x.shape[0], -1)
            for w, b in hidden:
                h = act(h @ w + b)
            return h @ w_out + b_out

        return forward


def numpy_actor_critic(actor: FlatMLP, critic: FlatMLP) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """obs -> (actor output, V(s)) in NumPy on a copy of the current weights, for a rollout's acting.

    When the two MLPs have the same hidden layers (TRPO's always do), their layers of equal depth run
    side by side: the first layers as one [in, 2h] matmul, each hidden pair as one stacked [2, h, h]
    matmul (as ``lucidrl.packed`` does for PPO and A2C), ~7 us a call on 2 CartPole observations
    against ~14 us for two separate forwards. Otherwise, two forwards.
    """
    shapes_match = actor.tanh == critic.tanh and len(actor.weights) == len(critic.weights) and len(actor.weights) >= 2 \
        and all(a.shape == c.shape for (a, _), (c, _) in zip(actor.weights[:-1], critic.weights[:-1]))
    if not shapes_match:
        fa, fc = actor.numpy_forward(), critic.numpy_forward()
        return lambda obs: (fa(obs), fc(obs)[:, 0])
    a, c = [(w.numpy(), b.numpy()) for w, b in actor.weights], [(w.numpy(), b.numpy()) for w, b in critic.weights]
    w0 = np.concatenate([a[0][0], c[0][0]]).T.copy()  # [in, 2h]
    b0 = np.concatenate([a[0][1], c[0][1]])
    pairs = [(np.stack([wa.T, wc.T]), np.stack([ba, bc])[:, None, :]) for (wa, ba), (wc, bc) in zip(a[1:-1], c[1:-1])]
    return numpy_pair_forward(w0, b0, pairs, a[-1][0].T.copy(), a[-1][1].copy(), c[-1][0][0].copy(), c[-1][1].copy(),
                              actor.tanh)


def numpy_rollout_policy(actor: FlatMLP | None, critic: FlatMLP | None,
                         n_rows: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """obs -> (distribution parameters, V(s)) in NumPy for one rollout's acting (``RolloutCollector.collect``'s
    ``numpy_policy``), on copies of the current weights: logits, or concat(μ, log σ) with log σ bounded as
    ``StateIndependentLogStd`` for a Gaussian actor. None without a FlatMLP for either network, or when
    ``n_rows`` x the widest layer exceeds 4,096 (NumPy's BLAS may go multi-threaded there). Used by TRPO
    and VPG, whose actor and critic have an optimiser each (PPO and A2C use ``lucidrl.packed``).
    """
    if actor is None or critic is None or n_rows * max(w.shape[0] for w, _ in actor.weights) > 4096:
        return None
    forward = numpy_actor_critic(actor, critic)
    if actor.log_std_slice is None:
        return forward
    return numpy_gaussian_params(forward, actor.flat.detach()[actor.log_std_slice].numpy().copy())
