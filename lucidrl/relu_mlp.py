"""DQN's speed plumbing for plain ReLU MLPs: the Huber TD loss's gradient written out, and NumPy acting.

Same math as ``lucidrl.algos.dqn.dqn_loss`` followed by ``loss.backward()``, and as
``QNetwork.forward(obs).argmax(-1)``, up to float rounding (``tests/math/test_dqn_math.py``).
Why it exists: on the zoo's CartPole preset a DQN run takes ~24.6k gradient steps on a batch of
64 through a 256x256 MLP, where autograd's bookkeeping costs about as much as the matrix
products, and ~50k acting calls on one observation, where torch's per-op overhead (~5 us)
outweighs the math. Networks of any other kind (a CNN encoder, tanh, one-hot observations,
float64) get ``None`` from ``relu_mlp_layers`` / ``numpy_greedy`` and DQN uses autograd.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lucidrl.networks import FlattenFloat, QNetwork


def relu_mlp_layers(q_net: QNetwork) -> list[torch.nn.Linear] | None:
    """The Linear layers of ``q_net`` if it is a plain float ReLU MLP with gradients allocated, else None."""
    mods = list(q_net.q)
    linears = mods[0::2]
    if not isinstance(q_net.encoder, FlattenFloat) or q_net.encoder.ndim != 1 or \
            not all(isinstance(m, torch.nn.Linear) for m in linears) or \
            not all(isinstance(m, torch.nn.ReLU) for m in mods[1::2]) or len(linears) != (len(mods) + 1) // 2 or \
            any(p.grad is None or p.dtype != torch.float32 for m in linears for p in (m.weight, m.bias)):
        return None
    return linears


def relu_mlp_huber_backward(layers: list[torch.nn.Linear], obs: torch.Tensor, actions: torch.Tensor,
                            targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E3) for a ReLU MLP: the Huber loss and Q_θ(s, a), with ∂loss/∂θ written into the parameters' ``.grad``.

    The numbers of ``dqn_loss`` followed by ``loss.backward()``, up to float rounding (tested); see
    ``relu_mlp_td_backward``.
    """
    onehot = F.one_hot(actions.long(), layers[-1].out_features).float().div_(obs.shape[0])
    diff = relu_mlp_td_backward(layers, obs, onehot, targets)
    return F.smooth_l1_loss(diff, torch.zeros_like(diff)), diff + targets


def relu_mlp_td_backward(layers: list, obs: torch.Tensor, onehot_over_b: torch.Tensor,
                          targets: torch.Tensor) -> torch.Tensor:
    """The gradient of (E3) for a ReLU MLP into the parameters' ``.grad``; returns the TD errors Q_θ(s, a) - y.

    Deviation (speed only, same math): autograd's bookkeeping costs about as much as the matrix
    products of a 256x256 MLP on a batch of 64, so the forward and backward passes are written
    out: z_i = h_{i-1} W_iᵀ + b_i, h_i = relu(z_i); Q(s, a) = Σ_k onehot_k(a) Q(s, k);
    ∂L/∂Q(s, ·) = onehot(a) clamp(Q(s, a) - y, -1, 1) / B (Huber, δ = 1); ∂L/∂W_i = δ_iᵀ h_{i-1},
    ∂L/∂b_i = Σ δ_i, δ_{i-1} = (δ_i W_i) ⊙ [h_{i-1} > 0]. ``onehot_over_b`` is onehot(a) / B.
    Gradients overwrite ``.grad`` (no zeroing needed). ``layers``: the Linear layers, or their
    ``layer_views``.
    """
    with torch.no_grad():
        views = layers if isinstance(layers[0], tuple) else layer_views(layers)
        hs = [obs.float()]
        for w, wt, b, _, _ in views[:-1]:
            hs.append(torch.addmm(b, hs[-1], wt).relu_())
        w, wt, b, _, _ = views[-1]
        q_all = torch.addmm(b, hs[-1], wt)
        diff = torch.sum(q_all.mul_(onehot_over_b), -1).mul_(onehot_over_b.shape[0]).sub_(targets)  # Q(s, a) - y
        delta = onehot_over_b * diff.clamp(-1.0, 1.0).unsqueeze_(-1)
        for i in range(len(views) - 1, -1, -1):
            w, _, _, w_grad, b_grad = views[i]
            torch.mm(delta.t(), hs[i], out=w_grad)
            torch.sum(delta, 0, out=b_grad)
            if i > 0:
                delta = torch.ops.aten.threshold_backward(delta.mm(w), hs[i], 0.0)
    return diff


def layer_views(layers: list[torch.nn.Linear]) -> list[tuple[torch.Tensor, ...]]:
    """(W, Wᵀ, b, ∂W, ∂b) of each layer: views made once per round instead of once per step."""
    return [(m.weight.detach(), m.weight.detach().t(), m.bias.detach(), m.weight.grad, m.bias.grad) for m in layers]


def numpy_greedy(q_net: QNetwork) -> Callable[[np.ndarray], np.ndarray] | None:
    """argmax_a Q_θ(s, a) in NumPy, or None when ``q_net`` is not a plain float ReLU MLP on the CPU.

    The NumPy arrays are views of the weights (no copy), so they follow every training update.
    """
    layers = relu_mlp_layers(q_net)
    if layers is None or layers[0].weight.device.type != "cpu":
        return None
    weights = [(m.weight.detach().numpy().T, m.bias.detach().numpy()) for m in layers]

    def greedy(obs: np.ndarray) -> np.ndarray:
        h = obs.astype(np.float32, copy=False).reshape(obs.shape[0], -1)
        for w, b in weights[:-1]:
            h = np.maximum(h @ w + b, 0.0)
        w, b = weights[-1]
        return (h @ w + b).argmax(-1)

    return greedy
