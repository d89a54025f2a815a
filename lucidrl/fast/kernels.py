"""Which CPU kernel multiplies: MKL (PyTorch's default) or oneDNN, chosen by the shape of the product.

Speed only, the same math. PyTorch's CPU ``addmm``/``mm`` call MKL's sgemm, which on this
project's AMD CPU runs its AVX2 code; oneDNN (also inside PyTorch, reached through
``torch.ops.mkldnn._linear_pointwise``) runs AVX-512 there. Measured on one thread, fp32: a
64x256 @ 256x256 product ~80 us with MKL against ~45-55 us with oneDNN, a 1024x64 @ 64x64 one
~87 against ~48 us; but oneDNN loses on thin products (a 4-wide input layer: 15 vs 5 us; a 2-wide
output layer: 14 vs 4.5 us) and on small ones (64x64x64: 16 vs 8 us). So products with both
sides of the weight >= 64 wide and at least ``ONEDNN_MIN_MACS`` multiply-adds go to oneDNN, the
rest stay with MKL (``use_onednn``). Both compute in IEEE fp32; they sum in different orders, so
results agree to float rounding, not bit for bit. The choice depends only on the shapes, so a
run is as reproducible as before. User: ``lucidrl.fast.mlp.TorchOps`` (TRPO's and DQN's products).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

ONEDNN_MIN_MACS = 1 << 21
"""Smallest product (rows x in x out multiply-adds) sent to oneDNN in a forward pass and for δ W."""
ONEDNN_MIN_MACS_DW = 1 << 22
"""The same for ∂W = δᵀ h, which pays a copy into the flat gradient (measured: a tie at 32x256x256)."""


@functools.cache
def _onednn_op() -> Callable | None:
    """``torch.ops.mkldnn._linear_pointwise`` if this PyTorch has it and it agrees with ``addmm`` on a test product."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        if not torch.backends.mkldnn.is_available():
            return None
        g = torch.Generator().manual_seed(0)
        x, w, b, d = (torch.randn(s, generator=g) for s in ((64, 96), (80, 96), (80,), (64, 80)))
        ok = all(torch.allclose(a, e, rtol=1e-4, atol=1e-4) for a, e in (
            (op(x, w, b, "relu", [], ""), torch.addmm(b, x, w.t()).relu_()),  # forward
            (op(d, w.t(), None, "none", [], ""), d @ w),  # δ W, with Wᵀ as a strided view
            (op(d.t(), x.t(), None, "none", [], ""), d.t() @ x)))  # δᵀ h, both strided
        return op if ok else None
    except (AttributeError, RuntimeError, NotImplementedError):
        return None


def onednn_linear() -> Callable | None:
    """oneDNN's fp32 linear ``op(x, W, b, "relu" | "none", [], "")`` = x Wᵀ + b when it computes in full fp32, else None.

    None as well when PyTorch is allowed lower-precision fp32 products (``torch.set_float32_matmul_precision``
    other than "highest", or ``torch.backends.mkldnn.matmul.fp32_precision`` other than "ieee"/"none"), which
    oneDNN would honour and MKL does not, and when oneDNN is switched off (``torch.backends.mkldnn.enabled
    = False``, which gives an A/B against MKL alone).
    """
    fp32 = getattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision", "none")
    if torch.get_float32_matmul_precision() != "highest" or fp32 not in ("none", "ieee") or \
            not torch.backends.mkldnn.enabled:
        return None
    return _onednn_op()


def use_onednn(rows: int, w: torch.Tensor, min_macs: int = ONEDNN_MIN_MACS) -> bool:
    """Whether the product of ``rows`` rows with ``w`` [out, in] goes to oneDNN (see the module docstring)."""
    out_f, in_f = w.shape
    return min(out_f, in_f) >= 64 and rows * out_f * in_f >= min_macs
