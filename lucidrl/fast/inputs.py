"""What the fast backend feeds the first layer: flat float rows, or one-hot rows given by the columns of their ones.

The observation encoders of ``lucidrl.networks`` that the fast backend takes have no weights:

* ``FlattenFloat`` (Box observations): x is the observation, flattened, as float32;
* ``OneHot`` (Discrete, n states): x = onehot(s), one 1 among n columns;
* ``MultiOneHot`` (MultiDiscrete, nvec = (n_1, ..., n_k)): the components' one-hots side by side, k ones among
  n_1 + ... + n_k columns, component i's in columns n_1 + ... + n_{i-1} + s_i.

A one-hot row is not built: ``OneHotRows`` keeps, per row, the columns of its ones, and the MLP core
(``lucidrl.fast.mlp``) computes the first layer's products from them. With x[b] = Σ_j e_{c_bj} (c_bj the
columns of row b's ones), the three products that touch x are

* forward   z[b] = x[b] Wᵀ + b = Σ_j W[:, c_bj] + b: a gather of W's columns (and a sum over the k components);
* backward  ∂W = ∂zᵀ x, whose column c is Σ over the (b, j) with c_bj = c of ∂z[b]: a scatter-add of ∂z's rows
  into the columns the batch visits (all other columns 0);
* JVP       ż[b] = x[b] vWᵀ = Σ_j vW[:, c_bj]: the forward's gather on the direction.

The same numbers as the reference's one-hot product (each is a sum of the same terms; a one-hot product adds
zeros, which changes nothing), at a cost in the batch and the width only, not in n. Measured on this project's
2-core machine for Taxi's 500 states, a batch of 64 and two 64-wide tanh members (actor and critic), one BLAS
thread as ``learn`` runs: the first hidden layer 155 us through the dense one-hot, 14 us by the gather; its weight
gradient 129 us dense, 34 us by the scatter-add (``scatter_columns``); PPO's whole forward and backward pass of such
a minibatch 370 against 224 us.
"""

from __future__ import annotations

import numpy as np
import torch

from lucidrl.networks import FlattenFloat, MultiOneHot, OneHot


class OneHotRows:
    """A batch of 0/1 input rows of width ``n_in`` kept as the columns of their ones: ``cols`` [B, k], integer (NumPy
    or torch), x[b, cols[b, j]] = 1 and every other entry 0. The k columns of a row are distinct (a MultiOneHot's
    components fill disjoint ranges)."""

    __slots__ = ("cols", "n_in")

    def __init__(self, cols, n_in: int):
        self.cols, self.n_in = cols, n_in

    @property
    def shape(self) -> tuple[int, int]:
        return (self.cols.shape[0], self.n_in)

    def dense(self) -> np.ndarray:
        """The rows as a float32 array [B, n_in] (for tests and checks)."""
        cols = np.asarray(self.cols)
        x = np.zeros(self.shape, np.float32)
        x[np.arange(cols.shape[0])[:, None], cols] = 1.0
        return x


def input_unsupported(encoder) -> str | None:
    """Why the fast backend cannot read what this encoder makes (None when it can)."""
    if isinstance(encoder, (FlattenFloat, OneHot, MultiOneHot)):
        return None
    return f"observations encoded by {type(encoder).__name__} (images) rather than flat vectors or one-hots"


class InputEncoding:
    """An encoder's output as the core's input: ``numpy(obs)`` and ``tensor(obs)`` take a batch of raw observations
    ([B, ...], as the rollout and the replay memory keep them) and return float32 rows [B, n_in] (``FlattenFloat``)
    or ``OneHotRows`` (``OneHot``, ``MultiOneHot``: the columns of the ones, a component's start added)."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.one_hot = isinstance(encoder, (OneHot, MultiOneHot))
        self.n_in = int(encoder.n) if self.one_hot else 0
        first = encoder.first.to("cpu", torch.long) if isinstance(encoder, MultiOneHot) else None
        self.k = 1 if first is None else int(first.numel())
        self._first_torch = first
        self._first = None if first is None else first.numpy().astype(np.intp)
        # each component's number of values: an index outside [0, n_i) is an error (the reference's one_hot raises)
        self._sizes = np.diff(np.append(self._first, self.n_in)) if self._first is not None else np.array([self.n_in])

    def numpy(self, obs: np.ndarray) -> np.ndarray | OneHotRows:
        B = obs.shape[0]
        if not self.one_hot:
            return obs if obs.ndim == 2 and obs.dtype == np.float32 else obs.reshape(B, -1).astype(np.float32)
        return OneHotRows(self.columns(obs), self.n_in)

    def columns(self, obs: np.ndarray) -> np.ndarray:
        """The columns of the ones of one-hot encoded observations [B, ...]: [B, k] (k components), a start added."""
        cols = obs.reshape(obs.shape[0], self.k).astype(np.intp, copy=False)
        if cols.size and (cols.min() < 0 or (cols >= self._sizes).any()):  # a gather would wrap or read a neighbour
            bad = cols[(cols < 0) | (cols >= self._sizes)][0]
            raise ValueError(
                f"a one-hot encoded observation holds the index {bad}, outside [0, n) of its space "
                f"(sizes {self._sizes.tolist()}); the env returned an observation outside its observation space"
            )
        return cols if self._first is None else cols + self._first

    def tensor(self, obs: torch.Tensor) -> torch.Tensor | OneHotRows:
        """As ``numpy``, in torch (the float rows by the encoder itself)."""
        if not self.one_hot:
            return self.encoder(obs)
        cols = obs.reshape(obs.shape[0], self.k).long()
        return OneHotRows(cols if self._first_torch is None else cols + self._first_torch.to(cols.device), self.n_in)


SCATTER_BY_PRODUCT = 32_768
"""``scatter_columns`` multiplies by the batch's 0/1 matrix while rows x visited columns stay within this (or at most
64 columns are visited), and sorts and sums above it."""


def scatter_columns(d_rows: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """``out`` [..., o, n_in] = the weight gradient dᵀ x of one-hot rows x (``OneHotRows``) from ``d_rows``
    [..., B, o] (∂z, one row per input row): column c of ``out`` is the sum of the rows of d whose input has a one
    in column c, and every column no row visits is 0.

    The rows' columns are sorted once (the U distinct ones are the columns visited); then either one product with
    the [B, U] 0/1 matrix of the visited columns (the batch's one-hot restricted to them), whose cost grows with
    B x U, or the rows of d in that order summed per column (``np.add.reduceat``), whose cost grows with B alone.
    Measured on this project's 2-core machine (one BLAS thread, as ``learn`` runs), 64-wide members, per call:
    2 members x 64 rows on Taxi's 500 states 35 us by the product against 57 us summed (``np.add.at`` 86 us, the
    dense product of the one-hot rows 129 us); 500 states, 256 rows 157 against 175 us, 2,048 rows 3,205 against
    777 us; 16 states (FrozenLake), 4,000 rows 319 against 800 us, and 48 states 566 against 809 us."""
    B, k = cols.shape
    flat = cols.reshape(-1)
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    first = np.empty(ordered.shape, bool)
    first[0], first[1:] = True, ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first)  # each visited column's first place in the order
    visited = ordered[starts]
    U = visited.shape[0]
    out.fill(0.0)
    if U <= 64 or B * U <= SCATTER_BY_PRODUCT:
        inverse = np.empty_like(order)
        inverse[order] = np.cumsum(first) - 1  # each (row, component)'s place among the visited columns
        ones = np.zeros((B, U), out.dtype)
        ones[np.repeat(np.arange(B), k), inverse] = 1.0  # (a row's k columns are distinct)
        out[..., visited] = d_rows.swapaxes(-1, -2) @ ones
    else:
        sums = np.add.reduceat(d_rows[..., order // k, :], starts, axis=-2)  # [..., U, o]: a row per visited column
        out.swapaxes(-1, -2)[..., visited, :] = sums
