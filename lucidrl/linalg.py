"""Linear algebra for second-order methods: conjugate gradient and flat-parameter helpers.

Nothing here knows about reinforcement learning. ``conjugate_gradient`` solves A x = b for a
symmetric positive-definite A that is only available as a function v -> A v (TRPO's Fisher
matrix is never formed). The flat-parameter helpers turn a list of parameter tensors into one
vector and back, which is the space CG, the step and the line search work in.

Conjugate gradient (Hestenes & Stiefel 1952; Nocedal & Wright, "Numerical Optimization", 2nd
ed. 2006, Algorithm 5.2), from x_0 = 0:

* r_0 = b,  p_0 = r_0
* α_k = r_kᵀr_k / p_kᵀA p_k;   x_{k+1} = x_k + α_k p_k;   r_{k+1} = r_k - α_k A p_k
* β_k = r_{k+1}ᵀr_{k+1} / r_kᵀr_k;   p_{k+1} = r_{k+1} + β_k p_k

In exact arithmetic it solves an n x n system in at most n steps; TRPO stops far earlier
(``max_steps`` of 10-20 on thousands of parameters) and uses the approximate solution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, max_steps: int, residual_tol: float = 1e-10
) -> tuple[torch.Tensor, dict[str, float]]:
    """Approximately solve A x = b for a symmetric positive-definite A given as ``matvec(v) = A v``.

    Starts from x = 0 and stops after ``max_steps`` products with A, or earlier once the squared
    residual norm ‖b - A x‖² falls below ``residual_tol`` (the test of OpenAI's modular_rl and
    SB3-contrib, so their ``residual_tol`` carries over), or if A shows a direction of
    non-positive curvature (pᵀA p <= 0: A is not positive-definite there; x so far is returned).

    Returns ``(x, info)``; ``info``: ``residual_norm`` ‖b - A x‖ (from the CG recursion, which
    equals the true residual up to rounding), ``steps`` (products with A), and ``xAx`` = xᵀA x,
    obtained for free as xᵀ(b - r) since A x = b - r.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r.dot(r)
    steps = 0
    if float(rr) >= residual_tol:
        for steps in range(1, max_steps + 1):  # noqa: B007  (returned: the products with A taken)
            Ap = matvec(p)
            pAp = p.dot(Ap)
            if not float(pAp) > 0.0:  # not positive-definite along p (or NaN): stop with what we have
                break
            alpha = rr / pAp
            x.addcmul_(alpha, p)
            r.addcmul_(alpha, Ap, value=-1.0)
            rr_new = r.dot(r)
            if float(rr_new) < residual_tol:
                rr = rr_new
                break
            p.mul_(rr_new / rr).add_(r)
            rr = rr_new
    return x, {"residual_norm": float(rr.sqrt()), "steps": steps, "xAx": float(x.dot(b - r))}


def flat_grad(
    output: torch.Tensor, params: Sequence[torch.Tensor], retain_graph: bool | None = None, create_graph: bool = False
) -> torch.Tensor:
    """∂output/∂params as one flat vector (parameters that ``output`` does not depend on get zeros)."""
    grads = torch.autograd.grad(output, params, retain_graph=retain_graph, create_graph=create_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def get_flat_params(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """A detached copy of ``params`` concatenated into one vector."""
    return torch.cat([p.detach().reshape(-1) for p in params]).clone()


@torch.no_grad()
def set_flat_params(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    """Copy the vector ``flat`` into ``params`` in place (the inverse of :func:`get_flat_params`)."""
    n = sum(p.numel() for p in params)
    if flat.numel() != n:
        raise ValueError(f"set_flat_params: got a vector of {flat.numel()} values for {n} parameters")
    offset = 0
    for p in params:
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
