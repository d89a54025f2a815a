"""The fast backend's one MLP core: forward, backward (VJP) and forward-mode (JVP) products, written out.

An ``MLPCore`` describes K MLPs ("members") that read the same input and have the same hidden
widths: K = 2 for an actor and a critic side by side (PPO, A2C, acting), K = 1 for one network
(TRPO's actor, a critic, DQN's Q-network). Their weights are blocks of one flat vector, laid out
layer by layer with the members' matrices stacked:

    W_0 [K, h_0, n_in], b_0 [K, 1, h_0], W_1 [K, h_1, h_0], b_1 [K, 1, h_1], ...,
    then each member's output layer: W_out_k [o_k, h_L], b_out_k [o_k]

so that a hidden layer of all K members is one batched product. For K = 1 this is the order of
``nn.Sequential(Linear, act, ..., Linear).parameters()``; for an actor-critic pair it interleaves
the two networks layer by layer (``pair_order``). With h_l the activations (h_0 the input x,
[B, n_in]; then [K, B, width]) and z the pre-activations:

* forward   z_l = h_{l-1} W_lᵀ + b_l,  h_l = act(z_l);   y_k = h_L[k] W_out_kᵀ + b_out_k
* backward  given ∂loss/∂y_k: ∂W_out_k = ∂y_kᵀ h_L[k], ∂b_out_k = Σ_rows ∂y_k, ∂h_L[k] = ∂y_k W_out_k;
            then per layer, top down, ∂z = ∂h ⊙ act'(z), ∂W = ∂zᵀ h_{l-1}, ∂b = Σ_rows ∂z, ∂h_{l-1} = ∂z W
* JVP       the change of every y_k when the weights move along a direction v (blocks vW, vb):
            ż_l = h_{l-1} vW_lᵀ + vb_l + ḣ_{l-1} W_lᵀ,  ḣ_l = act'(z_l) ⊙ ż_l,
            ẏ_k = ḣ_L[k] W_out_kᵀ + h_L[k] vW_out_kᵀ + vb_out_k

act' is read off the output: tanh' = 1 - h², relu' = [h > 0], elu' = 1 where h > 0, else h + 1 (ELU with α = 1:
h = eˣ - 1 there, so eˣ = h + 1). Where x is one-hot (``lucidrl.fast.inputs.OneHotRows``:
a Discrete or MultiDiscrete observation, kept as the columns of its ones), the three products with x (h_0 W_0ᵀ,
∂W_0 = ∂zᵀ h_0, h_0 vW_0ᵀ) are gathers of W_0's or vW_0's columns and a scatter-add (each ops' ``gather_*``).
The algorithm is written once
(``MLPCore``); ``NumpyOps``, ``FeatureMajorOps`` and ``TorchOps`` supply the handful of array
operations it uses. NumPy wins where a pass costs its ops' launches (~1 us an op against torch's
~2-4 us: PPO's and A2C's minibatches, acting on a few rows, DQN's steps); torch (MKL's products)
where the products are large (TRPO's Fisher-vector products on ~1,000 states).
``FeatureMajorOps`` is NumPy with every array transposed ([features, B]) into reused buffers, for
DQN's 256-wide network, where the row-major forward product is OpenBLAS's slow case.
``tests/math/test_backends.py`` checks the products against autograd, for each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lucidrl.fast.inputs import OneHotRows, scatter_columns
from lucidrl.networks import StateIndependentLogStd

_aten = torch.ops.aten
ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.ELU: "elu"}
"""The hidden activations the core computes (lucidrl's activation names; ELU with torch's default α = 1)."""


class NumpyOps:
    """The core's array operations in NumPy (float32 arrays, in place where the core allows it)."""

    @staticmethod
    def refresh() -> None:
        pass

    @staticmethod
    def activate_(z, act: str):
        """act(z) in place: 'tanh', 'relu' or 'elu' (z for z > 0, eᶻ - 1 elsewhere: expm1(min(z, 0)) + max(z, 0))."""
        if act == "tanh":
            return np.tanh(z, out=z)
        if act == "relu":
            return np.maximum(z, 0.0, out=z)
        negative = np.expm1(np.minimum(z, 0.0))
        np.maximum(z, 0.0, out=z)
        z += negative
        return z

    @classmethod
    def hidden(cls, h, w, b, act: str):
        """act(h W_lᵀ + b_l) for all members: h [B, in] (broadcast) or [K, B, in] -> [K, B, out]."""
        z = np.matmul(h, w.transpose(0, 2, 1))
        z += b
        return cls.activate_(z, act)

    @staticmethod
    def gather_linear(cols, w):
        """x Wᵀ for one-hot rows x (``OneHotRows.cols`` [B, k]): Σ_j W[:, cols[:, j]] for all members -> [K, B, out]."""
        wt = w.swapaxes(-1, -2)  # [K, in, out], a view: the gather reads a column of W per row
        z = wt[:, cols[:, 0]]
        for j in range(1, cols.shape[1]):
            z += wt[:, cols[:, j]]
        return z

    @classmethod
    def gather_hidden(cls, cols, w, b, act: str):
        """``hidden`` on one-hot rows: act(Σ_j W[:, cols[:, j]] + b) -> [K, B, out]."""
        z = cls.gather_linear(cols, w)
        z += b
        return cls.activate_(z, act)

    @staticmethod
    def gather_weight_grad(d, cols, out):
        """∂W = dᵀ x for one-hot rows x into ``out`` [K, o, in], from d [K, B, o]: a scatter-add
        (``scatter_columns``)."""
        scatter_columns(d, cols, out)

    @staticmethod
    def output(h, w, b):
        y = h @ w.T
        y += b
        return y

    @staticmethod
    def act_grad_(d, h, act: str):
        """d ⊙ act'(z), in place on d, with act' read off the activation h."""
        if act == "tanh":
            slope = np.multiply(h, h)
            np.subtract(1.0, slope, out=slope)
            d *= slope
        elif act == "relu":
            d *= h > 0
        else:  # elu' = min(h, 0) + 1: 1 where h > 0, eᶻ = h + 1 elsewhere
            slope = np.minimum(h, 0.0)
            slope += 1.0
            d *= slope
        return d

    @staticmethod
    def weight_grad(d, h, out):
        """∂W = dᵀ h into ``out`` ([o, B] x [B, i], or batched over members)."""
        np.matmul(d.swapaxes(-1, -2), h, out=out)

    @staticmethod
    def bias_grad(d, out):
        np.sum(d, axis=-2, out=out.reshape(d.shape[:-2] + d.shape[-1:]))

    @staticmethod
    def back(d, w):
        return d @ w

    @staticmethod
    def stack_back(ds, ws, shape, like):
        out = np.empty(shape, like.dtype)
        for k, (d, w) in enumerate(zip(ds, ws)):
            np.matmul(d, w, out=out[k])
        return out

    @staticmethod
    def linear(h, w):
        """h wᵀ (no bias), batched over members where w is [K, o, i]."""
        return h @ w.swapaxes(-1, -2)


class FeatureMajorOps:
    """The core's array operations in NumPy with the batch as the last axis ("feature-major"), into reused buffers.

    The same products as ``NumpyOps``, transposed: x is [n_in, B], h_l [K, width, B], y_k [o_k, B] and
    ∂loss/∂y_k [o_k, B]; with every array the transpose of its row-major self, z_l = W_l h_{l-1} + b_l,
    ∂W_l = ∂z_l h_{l-1}ᵀ and ∂h_{l-1} = W_lᵀ ∂z_l. Why: with
    torch's [out, in] weight layout, the row-major forward h Wᵀ is OpenBLAS's slowest case on the 256-wide
    layers of DQN's network (~25% slower than W hᵀ or Wᵀ d, measured on 64 x 256 x 256); here all three
    products of a step are of the faster kinds. Each result is written into a buffer this object owns, one per
    (operation, weight block, shape): an array returned stays valid until the same operation runs again on the
    same block (the next forward, or the next backward), so a step allocates nothing. Forward and backward only.
    """

    def __init__(self) -> None:
        self._buffers: dict = {}
        self._masks: dict = {}  # id of a ReLU layer's output buffer -> [z > 0] of its latest forward

    def _out(self, key, shape, dtype=np.float32):
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape:
            if buf is not None:  # replaced (another batch size): its ReLU mask goes with it
                self._masks.pop(id(buf), None)
            buf = self._buffers[key] = np.empty(shape, dtype)
        return buf

    @staticmethod
    def refresh() -> None:
        pass

    def hidden(self, h, w, b, act: str):
        """act(W_l h + b_l) for all members: h [in, B] (broadcast) or [K, in, B] -> [K, out, B]."""
        K, out, _ = w.shape
        z = self._out(("z", id(w)), (K, out, h.shape[-1]))
        if K == 1:  # one 2-D product (NumPy's batched matmul is slower on a stack of one)
            np.matmul(w[0], h if h.ndim == 2 else h[0], out=z[0])
        else:
            np.matmul(w, h, out=z)
        np.add(z, b.transpose(0, 2, 1), out=z)
        return self._activate(z, w, act)

    def gather_hidden(self, cols, w, b, act: str):
        """``hidden`` on one-hot rows (``OneHotRows.cols`` [B, k]): act(Σ_j W[:, cols[:, j]] + b) -> [K, out, B]."""
        K, out, _ = w.shape
        z = self._out(("z", id(w)), (K, out, cols.shape[0]))
        np.take(w, cols[:, 0], axis=2, out=z)
        for j in range(1, cols.shape[1]):
            z += np.take(w, cols[:, j], axis=2)
        np.add(z, b.transpose(0, 2, 1), out=z)
        return self._activate(z, w, act)

    def _activate(self, z, w, act: str):
        if act != "relu":
            return NumpyOps.activate_(z, act)
        # ReLU as z ⊙ [z > 0], keeping the mask for the backward pass (act_grad_): two cheap passes where
        # np.maximum's NaN-aware one costs more than both
        mask = self._out(("relu", id(w)), z.shape, bool)
        self._masks[id(z)] = mask  # how act_grad_ finds it from the layer's output
        np.greater(z, 0.0, out=mask)
        return np.multiply(z, mask, out=z)

    def output(self, h, w, b):
        """W_out h + b_out: h [width, B] -> [o, B]."""
        y = self._out(("y", id(w)), (w.shape[0], h.shape[-1]))
        np.matmul(w, h, out=y)
        np.add(y, b[:, None], out=y)
        return y

    def act_grad_(self, d, h, act: str):
        if act == "tanh":
            slope = self._out(("slope", d.shape), d.shape)
            np.multiply(h, h, out=slope)
            np.subtract(1.0, slope, out=slope)
            np.multiply(d, slope, out=d)
        elif act == "elu":  # elu' = min(h, 0) + 1
            slope = self._out(("slope", d.shape), d.shape)
            np.minimum(h, 0.0, out=slope)
            np.add(slope, 1.0, out=slope)
            np.multiply(d, slope, out=d)
        else:  # relu' = [h > 0]: the forward's mask where h is one of its outputs
            mask = self._masks.get(id(h))
            if mask is None or mask.shape != h.shape:
                mask = self._out(("mask", d.shape), d.shape, bool)
                np.greater(h, 0.0, out=mask)
            np.multiply(d, mask, out=d)
        return d

    @staticmethod
    def weight_grad(d, h, out):
        """∂W = d hᵀ into ``out``: d [o, B] or [K, o, B], h [in, B] or [K, in, B]."""
        if out.ndim == 3 and out.shape[0] == 1:
            np.matmul(d[0] if d.ndim == 3 else d, (h[0] if h.ndim == 3 else h).T, out=out[0])
        else:
            np.matmul(d, h.swapaxes(-1, -2), out=out)

    @staticmethod
    def gather_weight_grad(d, cols, out):
        """∂W = d x for one-hot rows x into ``out`` [K, o, in], from d [K, o, B]: a scatter-add
        (``scatter_columns``)."""
        scatter_columns(d.swapaxes(-1, -2), cols, out)

    def bias_grad(self, d, out):
        """Σ over the batch, as a product with a vector of ones (one BLAS call, faster than a reduction here)."""
        ones = self._out(("ones", d.shape[-1]), (d.shape[-1],))
        ones.fill(1.0)
        np.matmul(d, ones, out=out.reshape(d.shape[:-1]))

    def back(self, d, w):
        """∂h = W_lᵀ ∂z: d [K, o, B] -> [K, in, B]."""
        K, _, n_in = w.shape
        out = self._out(("back", id(w)), (K, n_in, d.shape[-1]))
        if K == 1:
            np.matmul(w[0].T, d[0], out=out[0])
        else:
            np.matmul(w.swapaxes(-1, -2), d, out=out)
        return out

    def stack_back(self, ds, ws, shape, like):
        out = self._out(("stack_back", shape), shape, like.dtype)
        for k, (d, w) in enumerate(zip(ds, ws)):
            np.matmul(w.T, d, out=out[k])
        return out


class TorchOps:
    """The core's array operations in torch.

    Single-member ([1, B, n]) arrays are handled as 2-D matrices (``addmm``/``mm``: one MKL call, the
    bias fused); tanh of large batches goes through the sigmoid, 2 sigmoid(2z) - 1, which is several
    times faster than ``torch.tanh`` on this CPU build of torch (~9 us against ~43 us on [256, 64]).
    """

    @staticmethod
    def refresh() -> None:
        pass

    @staticmethod
    def _mm_t(a, w, b=None):
        """a wᵀ (+ b) for 2-D a and w."""
        return torch.addmm(b, a, w.t()) if b is not None else a.mm(w.t())

    @classmethod
    def hidden(cls, h, w, b, act: str):
        if w.shape[0] == 1:
            x = h if h.dim() == 2 else h[0]
            z = cls._mm_t(x, w[0], b[0, 0]).unsqueeze(0)
        else:
            z = torch.matmul(h, w.transpose(1, 2)).add_(b)
        return cls._activate_(z, act)

    @staticmethod
    def _activate_(z, act: str):
        if act == "relu":
            return z.relu_()
        if act == "elu":
            return torch.nn.functional.elu(z, inplace=True)
        if z[0].numel() >= 4096 and z.dtype == torch.float32:  # tanh(z) = 2 sigmoid(2z) - 1
            return z.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
        return z.tanh_()

    @staticmethod
    def gather_linear(cols, w):
        """x Wᵀ for one-hot rows x (``OneHotRows.cols`` [B, k]): Σ_j W[:, cols[:, j]] for all members -> [K, B, out]."""
        wt = w.transpose(1, 2)  # [K, in, out], a view
        z = wt[:, cols[:, 0]]
        for j in range(1, cols.shape[1]):
            z += wt[:, cols[:, j]]
        return z

    @classmethod
    def gather_hidden(cls, cols, w, b, act: str):
        return cls._activate_(cls.gather_linear(cols, w).add_(b), act)

    @staticmethod
    def gather_weight_grad(d, cols, out):
        """∂W = dᵀ x for one-hot rows x into ``out`` [K, o, in], from d [K, B, o]: a scatter-add (``index_add_``)."""
        out.zero_()
        for j in range(cols.shape[1]):
            out.index_add_(2, cols[:, j], d.transpose(1, 2))

    @classmethod
    def output(cls, h, w, b):
        return cls._mm_t(h, w, b)

    @staticmethod
    def act_grad_(d, h, act: str):
        if act == "elu":  # from the result h (is_result=True), α = scale = input_scale = 1
            return _aten.elu_backward(d, 1.0, 1.0, 1.0, True, h)
        return _aten.tanh_backward(d, h) if act == "tanh" else _aten.threshold_backward(d, h, 0)

    @staticmethod
    def weight_grad(d, h, out):
        if out.dim() == 3 and out.shape[0] == 1:
            d, out = d[0], out[0]
            h = h if h.dim() == 2 else h[0]
        if out.dim() == 2 and out.shape[1] < out.shape[0]:  # a narrow input: (hᵀ d)ᵀ, several times faster in MKL
            out.copy_(h.t().mm(d).t())
        elif out.dim() == 2:
            torch.mm(d.t(), h, out=out)
        else:
            torch.matmul(d.transpose(-1, -2), h, out=out)

    @staticmethod
    def bias_grad(d, out):
        torch.sum(d, dim=-2, out=out.view(d.shape[:-2] + d.shape[-1:]))

    @staticmethod
    def back(d, w):
        if w.shape[0] == 1 and d.shape[0] == 1:
            return d[0].mm(w[0]).unsqueeze(0)
        return torch.matmul(d, w)

    @staticmethod
    def stack_back(ds, ws, shape, like):
        if len(ds) == 1:
            return ds[0].mm(ws[0]).unsqueeze(0)
        out = torch.empty(shape, dtype=like.dtype, device=like.device)
        for k, (d, w) in enumerate(zip(ds, ws)):
            torch.mm(d, w, out=out[k])
        return out

    @classmethod
    def linear(cls, h, w):
        if w.shape[0] == 1:
            return cls._mm_t(h if h.dim() == 2 else h[0], w[0]).unsqueeze(0)
        return torch.matmul(h, w.transpose(-1, -2))


class MLPCore:
    """K same-width MLPs over one flat weight vector (see the module docstring); build with :meth:`of`."""

    def __init__(
        self,
        n_in: int,
        widths: Sequence[int],
        n_outs: Sequence[int],
        act: str,
        numpy: bool,
        feature_major: bool = False,
    ):
        self.n_in, self.widths, self.n_outs, self.act = n_in, list(widths), list(n_outs), act
        self.K, self.L = len(n_outs), len(widths)
        self.feature_major = feature_major  # arrays [features, B] (FeatureMajorOps: NumPy, forward and backward)
        self.ops = FeatureMajorOps() if feature_major else NumpyOps if numpy else TorchOps
        shapes: list[tuple[int, ...]] = []
        prev = n_in
        for h in widths:
            shapes += [(self.K, h, prev), (self.K, 1, h)]
            prev = h
        for o in n_outs:
            shapes += [(o, prev), (o,)]
        self.shapes = shapes
        self.size = sum(math.prod(s) for s in shapes)

    @staticmethod
    def members_supported(members: Sequence[nn.Sequential]) -> str | None:
        """Why these MLPs cannot run on one core (None when they can): Linear / act stacks, one activation,
        tanh, ReLU or ELU (α = 1), at least one hidden layer, the same hidden widths."""
        acts = set()
        shapes = []
        for seq in members:
            mods = [m for m in seq if not isinstance(m, StateIndependentLogStd)]
            linears, between = mods[0::2], mods[1::2]
            if not all(type(m) is nn.Linear for m in linears) or len(between) != len(linears) - 1:
                return "networks other than Linear/activation stacks"
            acts |= {type(a) for a in between}
            shapes.append([tuple(m.weight.shape) for m in linears[:-1]])  # type: ignore[arg-type]
        if not shapes[0]:
            return "a network without hidden layers (net_arch=[])"
        if len(acts) != 1 or not acts <= set(ACTIVATIONS):
            return "activations other than one of tanh, ReLU or ELU"
        if any(isinstance(m, nn.ELU) and m.alpha != 1.0 for seq in members for m in seq):
            return "an ELU with α other than 1"
        if any(s != shapes[0] for s in shapes):
            return "an actor and a critic of different hidden layers"
        return None

    @classmethod
    def of(cls, members: Sequence[nn.Sequential], numpy: bool, feature_major: bool = False) -> MLPCore:
        """The core for these MLPs (check ``members_supported`` first); ``feature_major``: NumPy arrays with the
        batch last (``FeatureMajorOps``)."""
        linears = [[m for m in seq if type(m) is nn.Linear] for seq in members]
        first = linears[0]
        act = next(ACTIVATIONS[type(m)] for m in members[0] if type(m) in ACTIVATIONS)
        return cls(
            first[0].in_features,
            [m.out_features for m in first[:-1]],
            [ls[-1].out_features for ls in linears],
            act,
            numpy,
            feature_major,
        )

    @staticmethod
    def parameter_order(members: Sequence[nn.Sequential]) -> list[nn.Parameter]:
        """The members' Linear parameters in the core's flat layout: per hidden layer every member's weight, then
        every member's bias; then each member's output weight and bias."""
        linears = [[m for m in seq if type(m) is nn.Linear] for seq in members]
        order: list = []  # nn.Parameter (typed Tensor through Module.__getattr__)
        for depth in range(len(linears[0]) - 1):
            order += [ls[depth].weight for ls in linears] + [ls[depth].bias for ls in linears]
        for ls in linears:
            order += [ls[-1].weight, ls[-1].bias]
        return order

    def blocks(self, flat):
        """``flat`` (weights, a gradient or a direction, NumPy or torch) cut into the layout's blocks (views)."""
        out, offset = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append(flat[offset : offset + n].reshape(shape))
            offset += n
        return out

    def forward(self, w, x):
        """(outputs [y_0, ..., y_{K-1}], hs): hs[0] = x [B, n_in] (or ``OneHotRows``), hs[l] = h_l [K, B, width]."""
        ops, L = self.ops, self.L
        ops.refresh()
        hs = [x]
        h = x
        for layer in range(L):
            if layer == 0 and isinstance(x, OneHotRows):  # the first product as a gather of W_0's columns
                h = ops.gather_hidden(x.cols, w[0], w[1], self.act)
            else:
                h = ops.hidden(h, w[2 * layer], w[2 * layer + 1], self.act)
            hs.append(h)
        outs = [ops.output(h[k], w[2 * L + 2 * k], w[2 * L + 2 * k + 1]) for k in range(self.K)]
        return outs, hs

    def backward(self, w, g, hs, d_outs) -> None:
        """Write ∂loss/∂weights into the blocks ``g`` (overwritten), from ∂loss/∂y_k ([B, o_k] each) and ``hs``."""
        ops, L, K = self.ops, self.L, self.K
        ops.refresh()
        last = hs[L]
        for k in range(K):
            ops.weight_grad(d_outs[k], last[k], g[2 * L + 2 * k])
            ops.bias_grad(d_outs[k], g[2 * L + 2 * k + 1])
        dh = ops.stack_back(d_outs, [w[2 * L + 2 * k] for k in range(K)], last.shape, last)
        for layer in range(L - 1, -1, -1):
            dz = ops.act_grad_(dh, hs[layer + 1], self.act)
            if layer == 0 and isinstance(hs[0], OneHotRows):  # ∂W_0 = ∂zᵀ x as a scatter-add into W_0's columns
                ops.gather_weight_grad(dz, hs[0].cols, g[0])
            else:
                ops.weight_grad(dz, hs[layer], g[2 * layer])
            ops.bias_grad(dz, g[2 * layer + 1])
            if layer:
                dh = ops.back(dz, w[2 * layer])

    def jvp(self, w, hs, v):
        """[ẏ_0, ...]: how each output moves when the weights move along ``v`` (cut with ``blocks``)."""
        ops: Any = self.ops  # NumpyOps or TorchOps (they have ``linear``)
        L = self.L
        if self.feature_major:
            raise NotImplementedError("the JVP runs on the row-major ops (TRPO's Fisher products use TorchOps)")
        ops.refresh()
        dh: Any = None
        for layer in range(L):
            x = hs[layer]
            dz = ops.gather_linear(x.cols, v[0]) if isinstance(x, OneHotRows) else ops.linear(x, v[2 * layer])
            dz += v[2 * layer + 1]
            if dh is not None:
                dz += ops.linear(dh, w[2 * layer])
            dh = ops.act_grad_(dz, hs[layer + 1], self.act)
        last = hs[L]
        return [
            ops.output(dh[k], w[2 * L + 2 * k], v[2 * L + 2 * k + 1]) + ops.linear(last[k], v[2 * L + 2 * k][None])[0]
            for k in range(self.K)
        ]


def acting_forward(core: MLPCore, w) -> Callable[[np.ndarray | OneHotRows], list[np.ndarray]]:
    """x -> [y_0, ...] in NumPy for the few rows of an acting step (the one acting forward of every algorithm).

    The forward of ``MLPCore.forward``, with the weights transposed once (per rollout or collection chunk,
    while they stay fixed) into the layout the products take: the members' first layers as one [n_in, K·h]
    matrix, each hidden layer as [K, h, h'], each output layer as [h, o]. On a few rows the cost is the ops'
    launches, ~1 us each in NumPy; this takes 3 + 3 per hidden layer + 2 per member.
    """
    K = core.K
    first_w = np.ascontiguousarray(np.asarray(w[0]).reshape(K * core.widths[0], core.n_in).T)
    first_b = np.asarray(w[1]).reshape(-1).copy()
    hidden = [
        (np.ascontiguousarray(np.asarray(w[2 * layer]).transpose(0, 2, 1)), np.asarray(w[2 * layer + 1]).copy())
        for layer in range(1, core.L)
    ]
    outputs = [
        (np.ascontiguousarray(np.asarray(w[2 * core.L + 2 * k]).T), np.asarray(w[2 * core.L + 2 * k + 1]).copy())
        for k in range(K)
    ]

    def act(z):
        return NumpyOps.activate_(z, core.act)

    def forward(x: np.ndarray | OneHotRows) -> list[np.ndarray]:
        if isinstance(x, OneHotRows):  # one-hot rows: the rows of first_w at their ones
            cols = x.cols
            h = first_w[cols[:, 0]]
            for j in range(1, cols.shape[1]):
                h += first_w[cols[:, j]]
        else:
            h = x @ first_w
        h += first_b
        h = act(h).reshape(h.shape[0], K, -1).transpose(1, 0, 2)  # [K, B, h]
        for wt, b in hidden:
            h = h @ wt
            h += b
            act(h)
        outs = []
        for k, (wt, b) in enumerate(outputs):
            y = h[k] @ wt
            y += b
            outs.append(y)
        return outs

    return forward


def numpy_blocks(core: MLPCore, members: Sequence[nn.Sequential]) -> list[np.ndarray]:
    """A NumPy copy of the members' current weights in the core's layout (for acting: made once per rollout)."""
    params = MLPCore.parameter_order(members)
    flat = torch.cat([p.detach().reshape(-1) for p in params]).to("cpu", torch.float32).numpy()
    return core.blocks(flat)


class SingleNet:
    """One MLP (``nn.Sequential``, optionally ending with a state-independent log σ) as a K = 1 core over its
    weights made flat in module order, the order of ``seq.parameters()`` (log σ last)."""

    def __init__(self, seq: nn.Sequential, numpy: bool, feature_major: bool = False):
        from lucidrl.fast.flat import FlatParams

        self.core = MLPCore.of([seq], numpy=numpy, feature_major=feature_major)
        order = MLPCore.parameter_order([seq])
        self.log_std: torch.Tensor | None = seq[-1].log_std if isinstance(seq[-1], StateIndependentLogStd) else None
        if self.log_std is not None:
            order.append(self.log_std)
        assert [id(p) for p in order] == [id(p) for p in seq.parameters()], "module order expected"
        self.flat = FlatParams(order)
        self.numpy = numpy
        weights = self.flat.flat.detach()
        self.w = self.core.blocks(weights.numpy() if numpy else weights)
        self.tail = slice(self.core.size, self.flat.flat.numel())  # log σ's place in the flat vector

    def blocks(self, vec):
        """A flat vector laid out like the weights (a gradient, a direction) cut into the core's blocks."""
        return self.core.blocks(vec)

    def forward(self, x):
        """(output [B, o], hs)."""
        (out,), hs = self.core.forward(self.w, x)
        return out, hs

    def mse_backward(self, x, targets) -> float:
        """A critic's regression step: mean((V(x) - y)²), its gradient written into ``flat.grad`` (overwritten):
        ∂mean((V - y)²)/∂V = 2 (V - y) / B, backpropagated."""
        values, hs = self.forward(x)
        diff = values[:, 0] - targets
        loss = float((diff * diff).mean())
        grad = self.flat.grad.numpy() if self.numpy else self.flat.grad
        self.core.backward(self.w, self.core.blocks(grad), hs, [(diff * (2.0 / diff.shape[0]))[:, None]])
        return loss


_SINGLE: dict = {}


def single_net(seq: nn.Sequential, numpy: bool, feature_major: bool = False) -> SingleNet:
    """``seq``'s SingleNet, made once (again only if its weights were replaced, e.g. by ``module.to``)."""
    import weakref

    cache = _SINGLE.setdefault((numpy, feature_major), weakref.WeakKeyDictionary())
    net = cache.get(seq)
    if net is None or not net.flat.intact():
        net = cache[seq] = SingleNet(seq, numpy, feature_major)
    return net
