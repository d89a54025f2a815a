"""DQN's speed plumbing for plain ReLU MLPs: the Huber TD loss's gradient written out, and NumPy acting.

Same math as ``lucidrl.algos.dqn.dqn_loss`` followed by ``loss.backward()``, and as
``QNetwork.forward(obs).argmax(-1)``, up to float rounding (``tests/math/test_dqn_math.py``).
Why it exists: on the zoo's CartPole preset a DQN run takes ~24.6k gradient steps on a batch of
64 through a 256x256 MLP, where autograd's bookkeeping costs about as much as the matrix
products, and ~50k acting calls on one observation, where torch's per-op overhead (~5 us)
outweighs the math. Networks of any other kind (a CNN encoder, tanh, one-hot observations,
float64) get ``None`` from ``relu_mlp_layers`` / ``numpy_greedy`` and DQN uses autograd.

Which kernel multiplies (speed only, same math): the 256-wide products go to oneDNN, which runs
AVX-512 on this project's AMD CPU where MKL runs AVX2, and the thin first and last layers stay
with MKL (``lucidrl.kernels``: the shape rule, the measurements, and why results agree with
MKL's to float rounding only).

Measured (one thread, a round of 128 steps of the CartPole preset, A/B alternated with the
previous MKL-only version on a shared 2-core AMD EPYC): 518-536 -> 341 us per gradient step;
whole 50k-step runs (``dqn_train_round`` total) 14.0-14.2 -> 9.2 s. With 2 threads only the
single products could be timed (OMP_WAIT_POLICY=ACTIVE on the shared machine): the 64-row
forward 34 vs 46 us, δ W 29 vs 45 us, ∂W 46 (with its copy) vs 43 us, oneDNN vs MKL; whole runs
were not measurable there. ``torch.backends.mkldnn.enabled = False`` switches back to MKL for an A/B.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch

from lucidrl.kernels import ONEDNN_MIN_MACS_DW, onednn_linear, use_onednn
from lucidrl.networks import FlattenFloat, QNetwork

def relu_mlp_layers(q_net: QNetwork, need_grad: bool = True) -> list[torch.nn.Linear] | None:
    """The Linear layers of ``q_net`` if it is a plain float ReLU MLP (with gradients allocated, unless
    ``need_grad`` is False, as for a target network), else None."""
    mods = list(q_net.q)
    linears = mods[0::2]
    if not isinstance(q_net.encoder, FlattenFloat) or q_net.encoder.ndim != 1 or \
            not all(isinstance(m, torch.nn.Linear) for m in linears) or \
            not all(isinstance(m, torch.nn.ReLU) for m in mods[1::2]) or len(linears) != (len(mods) + 1) // 2 or \
            any((need_grad and p.grad is None) or p.dtype != torch.float32 for m in linears for p in (m.weight, m.bias)):
        return None
    return linears


class LayerView(NamedTuple):
    """One Linear layer's tensors, detached views made once per round: W, Wᵀ, b, ∂W, ∂b (None without grads)."""

    w: torch.Tensor
    wt: torch.Tensor
    b: torch.Tensor
    w_grad: torch.Tensor | None
    b_grad: torch.Tensor | None


def layer_views(layers: list[torch.nn.Linear]) -> list[LayerView]:
    """(W, Wᵀ, b, ∂W, ∂b) of each layer: views made once per round instead of once per step."""
    return [LayerView(m.weight.detach(), m.weight.detach().t(), m.bias.detach(), m.weight.grad, m.bias.grad)
            for m in layers]


def _linear(v: LayerView, x: torch.Tensor, relu: bool, dnn: Callable | None) -> torch.Tensor:
    """relu(x Wᵀ + b) or x Wᵀ + b, with the kernel chosen by shape."""
    if dnn is not None and use_onednn(x.shape[0], v.w):
        return dnn(x, v.w, v.b, "relu" if relu else "none", [], "")
    y = torch.addmm(v.b, x, v.wt)
    return y.relu_() if relu else y


@torch.no_grad()
def relu_mlp_forward(views: list[LayerView], x: torch.Tensor, dnn: Callable | None = ...) -> torch.Tensor:
    """Q(x, ·) of the MLP whose ``layer_views`` are ``views``, no gradient (the batched target pass).

    ``dnn``: ``onednn_linear()``'s answer, if the caller looked it up once for many calls (~2 us each)."""
    if dnn is ...:
        dnn = onednn_linear() if x.device.type == "cpu" else None
    h = x.float()
    for v in views[:-1]:
        h = _linear(v, h, True, dnn)
    return _linear(views[-1], h, False, dnn)


def relu_mlp_huber_backward(layers: list[torch.nn.Linear], obs: torch.Tensor, actions: torch.Tensor,
                            targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E3) for a ReLU MLP: the Huber loss and Q_θ(s, a), with ∂loss/∂θ written into the parameters' ``.grad``.

    The numbers of ``dqn_loss`` followed by ``loss.backward()``, up to float rounding (tested); see
    ``relu_mlp_td_backward``.
    """
    onehot = torch.nn.functional.one_hot(actions.long(), layers[-1].out_features).float().div_(obs.shape[0])
    diff = relu_mlp_td_backward(layer_views(layers), obs, onehot, targets.unsqueeze(-1))
    diff = diff.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # Q(s, a) - y
    return torch.nn.functional.smooth_l1_loss(diff, torch.zeros_like(diff)), diff + targets


def relu_mlp_td_backward(views: list[LayerView], obs: torch.Tensor, onehot_over_b: torch.Tensor,
                         targets: torch.Tensor, out: torch.Tensor | None = None,
                         dnn: Callable | None = ...) -> torch.Tensor:
    """The gradient of (E3) for a ReLU MLP into the parameters' ``.grad``; returns Q_θ(s, k) - y for every action k.

    Deviation (speed only, same math): autograd's bookkeeping costs about as much as the matrix
    products of a 256x256 MLP on a batch of 64, so the forward and backward passes are written
    out: z_i = h_{i-1} W_iᵀ + b_i, h_i = relu(z_i); with a the action taken,
    ∂L/∂Q(s, k) = onehot_k(a) clamp(Q(s, k) - y, -1, 1) / B (Huber, δ = 1; only k = a is nonzero,
    where it is clamp(Q(s, a) - y, -1, 1) / B); ∂L/∂W_i = δ_iᵀ h_{i-1}, ∂L/∂b_i = Σ δ_i,
    δ_{i-1} = (δ_i W_i) ⊙ [h_{i-1} > 0]. ``onehot_over_b`` is onehot(a) / B [B, A]; ``targets`` is
    y as a column [B, 1]; ``out`` [B, A], if given, receives the result. Gradients overwrite
    ``.grad`` (no zeroing needed). The products go to MKL or oneDNN by shape (module docstring);
    ``dnn`` as in ``relu_mlp_forward``.
    """
    if dnn is ...:
        dnn = onednn_linear() if obs.device.type == "cpu" else None
    with torch.no_grad():
        hs = [obs.float()]
        for v in views[:-1]:
            hs.append(_linear(v, hs[-1], True, dnn))
        diff = torch.sub(_linear(views[-1], hs[-1], False, dnn), targets, out=out)  # Q(s, k) - y
        delta = diff.clamp(-1.0, 1.0).mul_(onehot_over_b)  # ∂L/∂Q
        rows = obs.shape[0]
        for i in range(len(views) - 1, -1, -1):
            v, h = views[i], hs[i]
            if dnn is not None and use_onednn(rows, v.w, ONEDNN_MIN_MACS_DW):
                v.w_grad.copy_(dnn(delta.t(), h.t(), None, "none", [], ""))  # δᵀ h
            elif v.w.shape[1] < v.w.shape[0]:  # a thin input (e.g. 4 features): hᵀ δ is ~2x faster in MKL
                v.w_grad.copy_(torch.mm(h.t(), delta).t())
            else:
                torch.mm(delta.t(), h, out=v.w_grad)
            torch.sum(delta, 0, out=v.b_grad)
            if i > 0:
                back = dnn(delta, v.wt, None, "none", [], "") if dnn is not None and use_onednn(rows, v.w) else delta.mm(v.w)
                delta = torch.ops.aten.threshold_backward(back, h, 0.0)
    return diff


def numpy_greedy(q_net: QNetwork) -> Callable[[np.ndarray], np.ndarray] | None:
    """argmax_a Q_θ(s, a) in NumPy, or None when ``q_net`` is not a plain float ReLU MLP on the CPU.

    The NumPy arrays are views of the weights (no copy), so they follow every training update.
    One observation (DQN's usual n_envs = 1) goes through matrix-vector products with in-place
    bias and ReLU: ~7.3 us instead of ~8.6 us a call for CartPole's 4-256-256-2 net (speed only).
    """
    layers = relu_mlp_layers(q_net)
    if layers is None or layers[0].weight.device.type != "cpu":
        return None
    weights = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in layers]  # W [out, in], b

    def greedy(obs: np.ndarray) -> np.ndarray:
        h = obs.astype(np.float32, copy=False).reshape(obs.shape[0], -1)
        if h.shape[0] == 1:
            h = h[0]
            for w, b in weights[:-1]:
                h = w @ h
                h += b
                np.maximum(h, 0.0, out=h)
            w, b = weights[-1]
            q = w @ h
            q += b
            return q.argmax(keepdims=True)
        for w, b in weights[:-1]:
            h = np.maximum(h @ w.T + b, 0.0)
        w, b = weights[-1]
        return (h @ w.T + b).argmax(-1)

    return greedy
