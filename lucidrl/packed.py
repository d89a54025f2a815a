"""The actor and critic MLPs of an ``ActorCritic`` as one small set of ops, with the gradient written out.

Why: A2C takes one gradient step on 40 samples (CartPole, 8 envs x 5 steps) 2,500 times per
100k env steps, and acts 12,500 times on 8 observations. At that size a pass costs what its
ops cost to launch, not what their arithmetic costs, and two things dominate on this project's
CPU build of torch: the autograd bookkeeping of ~20 nodes, and ``torch.tanh`` (~12 us on a
[40, 128] tensor against ~2 us for ``torch.sigmoid``). Measured with ``benchmarks/micro_ops.py``
on CartPole's networks: forward + backward of an A2C update ~200 us -> ~140 us, acting for a
5-step rollout of 8 envs ~160 us -> ~115 us (no per-rollout weight copies, unlike
``ActorCritic.acting_forward``); a 100k-step A2C run ~6% faster in all.

What it does, exact up to float rounding (``tests/math/test_a2c_math.py`` checks values and
gradients against ``ActorCritic.forward``):

* **One flat tensor, pairs side by side.** Every weight moves into one flat tensor (as
  ``lucidrl.optim.flat_parameters`` does), in an order that puts each actor layer next to the
  critic layer of the same depth. Each pair is then one view: the first layers a [2h, in]
  matrix (one matmul), each hidden pair a [2, h, h] block (one batched matmul). The optimiser,
  clipping and zeroing see one tensor. The module's own parameters are views of the same
  storage, so ``state_dict``, ``load_state_dict``, ``predict`` and ``forward`` are unchanged.
* **tanh through the sigmoid** in the update: tanh(z) = 2 sigmoid(2z) - 1, where the matmul
  returns 2z directly (``addmm(..., beta=2, alpha=2)``). Acting keeps ``torch.tanh``, cheaper
  on a handful of rows (as in ``lucidrl.networks.Tanh``).
* **The backward written out** (``_PairMLP``, one autograd node): from the top layer down,
  dz = dh * act'(z), dW = dzᵀ h_in, db = Σ dz, dh_in = dz W, written into one gradient buffer
  laid out like the flat tensor.

* **No autograd at all in PPO's and A2C's updates** (``policy_value_backward``; speed only, same
  math, tested in ``tests/math/test_packed_speed.py`` against ``ActorCritic`` + ``clipped_surrogate``
  / ``a2c_loss`` + ``backward()``): the gradient of the loss with respect to the logits and
  values is written out (∂log π(a)/∂l = onehot(a) - softmax(l), ∂H/∂l = -p (log p + H),
  ∂mean((V-R)²)/∂V = 2 (V-R)/B) and goes straight into ``backward_into``, overwriting
  ``flat.grad`` (no zeroing). PPO on the zoo's CartPole preset (7,820 gradient steps on ~250
  samples): ~640 us -> ~420 us per gradient step with the optimiser step included; A2C's whole
  update (2,500 of them on 40 samples) ~480 us -> ~290 us (process CPU time, in a 100k-step run).
* **PPO's and A2C's updates in NumPy** (``policy_value_backward_numpy``; speed only, same math,
  tested against autograd and against the torch path): at these sizes an op costs its launch and its
  element-wise passes, ~1 us in NumPy against ~2-4 us in torch, and ``np.tanh`` on [2, 256, 64] ~6 us
  against ~12 us for torch's sigmoid route; every array is a buffer allocated once per batch size.
  A2C's update (40 rows) ~200 us -> ~140 us; PPO's loss and gradient on CartPole (256 rows) ~300 us ->
  ~235 us, a 100k-step PPO run ~3.7 s -> ~3.2 s. Only inside ``numpy_update``'s context, which holds
  NumPy's own BLAS (OpenBLAS, which ignores ``torch.set_num_threads``) to torch's thread count.
* **NumPy acting** (``numpy_policy``; speed only, same function as ``forward``, tested in
  ``tests/math/test_packed_speed.py``): the collector's per-step forward on 8 observations in
  NumPy on views of the same weights, ~10 us against ~33 us for the packed torch forward plus
  ~10 us for torch's sampling (see ``lucidrl.rollout``).

* **Gaussian actors** (Box actions, a state-independent log σ, ``networks.StateIndependentLogStd``):
  log σ sits last in the flat tensor, after the packed layers. The update's gradient is written out
  the same way, with z = (a - μ)/σ: ∂log π/∂μ = z/σ, ∂log π/∂log σ = z² - 1, ∂H/∂log σ = 1, and
  the log σ bound's rule of ``networks._BoundedLogStd``; acting samples μ + σ ε in NumPy. The
  autograd ``forward`` of a Gaussian agent is the module's own (its parameters are views of the
  flat tensor, so its gradients land in ``flat.grad`` too). On HalfCheetah-v5's preset (256x256
  ReLU MLPs, minibatches of 64) a gradient step ~1,020 us (autograd) -> ~600 us (NumPy), and a
  50k-step run trains at ~2,500 env steps/s against ~1,450 before.

Layouts other than two tanh or ReLU MLPs with equal hidden sizes on a flat Box observation (a
shared trunk, one-hot observations, ELU) fall back to ``flat_parameters`` and the module's own
forward with autograd; ``numpy_policy`` returns None for them (and for other devices, float64,
and batches above 4,096 hidden units x rows, where NumPy's BLAS may go multi-threaded).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from lucidrl.kernels import numpy_blas_threads, numpy_blas_threads_held
from lucidrl.networks import (LOG_STD_MAX, LOG_STD_MIN, ActorCritic, CategoricalHead, DiagGaussianHead, FlattenFloat,
                              StateIndependentLogStd, Tanh, bound_gradient_passes)
from lucidrl.optim import flat_parameters

_aten = torch.ops.aten
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _linears(seq: nn.Sequential) -> list[nn.Linear]:
    return [m for m in seq if isinstance(m, nn.Linear)]


class PackedActorCritic:
    """Wraps an ``ActorCritic``: ``forward`` (with gradients), ``acting_forward`` (for the collector),
    ``value``, ``head`` and ``flat``, the one Parameter that holds every weight (give it to the optimiser).

    Build it after the agent is on its device: moving the agent afterwards would replace the views.
    """

    def __init__(self, agent: ActorCritic):
        self.agent = agent
        self.head = agent.head
        self.packed = self.supports(agent)
        if not self.packed:
            self.flat = flat_parameters(agent)
            return
        actor, critic = _linears(agent.actor), _linears(agent.critic)
        self.tanh = isinstance(agent.actor[1], Tanh)
        # actor and critic layers of the same depth side by side, the output layers last
        order: list[nn.Parameter] = []
        for a, c in zip(actor[:-1], critic[:-1]):
            order += [a.weight, c.weight, a.bias, c.bias]
        order += [actor[-1].weight, actor[-1].bias, critic[-1].weight, critic[-1].bias]
        self.gaussian = isinstance(agent.head, DiagGaussianHead)
        if self.gaussian:  # a Gaussian actor's state-independent log σ, last
            order.append(agent.actor[-1].log_std)
        self.flat = nn.Parameter(torch.cat([p.detach().flatten() for p in order]))
        self.flat.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in order:  # the module's parameters (and their gradients) become views of the flat tensors
            n = p.numel()
            p.data = self.flat.data[offset:offset + n].view_as(p)
            p.grad = self.flat.grad[offset:offset + n].view_as(p)
            offset += n
        # the same storage cut into layer pairs: [2h, in], [2h], then [2, out, in], [2, 1, out] per
        # hidden pair, then the actor's and the critic's output weight and bias
        shapes = [(2 * actor[0].out_features, actor[0].in_features), (2 * actor[0].out_features,)]
        shapes += [s for a in actor[1:-1] for s in ((2, *a.weight.shape), (2, 1, a.out_features))]
        shapes += [tuple(actor[-1].weight.shape), (actor[-1].out_features,), tuple(critic[-1].weight.shape), (1,)]
        self._cuts, offset = [], 0
        for shape in shapes:
            n = torch.Size(shape).numel()
            self._cuts.append((offset, offset + n, shape))
            offset += n
        self._log_std_at = (offset, self.flat.numel())  # empty for a categorical head
        self.log_std = self.flat.detach()[offset:]  # a view: raw log σ (bounded where it is used)
        self.w = self.blocks(self.flat.detach())  # views: they follow every in-place update of the weights
        # transposed once, as the matmuls take them: x @ W0ᵀ, h @ Wᵀ per pair, h @ W_outᵀ
        self.w_t = [w.mT if i % 2 == 0 else w for i, w in enumerate(self.w)]  # weights at even places
        self.n_hidden_pairs = len(actor) - 2
        self.n_in, self.width, self.obs_ndim = actor[0].in_features, actor[0].out_features, agent.encoder.ndim
        self._grad = torch.empty_like(self.flat)  # the backward's output buffer, reused (see _PairMLP.backward)
        self._grad_blocks = self.blocks(self._grad)

    @staticmethod
    def supports(agent: ActorCritic) -> bool:
        """Two tanh or ReLU MLPs with equal hidden layers on a flat Box observation, and a categorical head
        or a Gaussian one with a state-independent log σ."""
        if agent.shared or not isinstance(agent.encoder, FlattenFloat):
            return False
        if not (isinstance(agent.head, CategoricalHead) or (isinstance(agent.head, DiagGaussianHead)
                                                            and isinstance(agent.actor[-1], StateIndependentLogStd))):
            return False
        actor, critic = _linears(agent.actor), _linears(agent.critic)
        acts = {type(m) for m in list(agent.actor) + list(agent.critic)
                if not isinstance(m, (nn.Linear, StateIndependentLogStd))}
        return (len(actor) >= 2 and len(actor) == len(critic) and len(acts) == 1 and acts <= {Tanh, nn.ReLU}
                and all(a.weight.shape == c.weight.shape for a, c in zip(actor[:-1], critic[:-1])))

    def blocks(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``flat`` (the weights, or a gradient laid out like them) cut into the layer-pair views."""
        return [flat[a:b].view(shape) for a, b, shape in self._cuts]

    # ------------------------------------------------------------------ forward
    def hidden(self, x: torch.Tensor, via_sigmoid: bool) -> list[torch.Tensor]:
        """Hidden activations of both MLPs (no autograd): [B, 2h] for the first layers, [2, B, h] per hidden pair."""
        w = self.w_t
        if not self.tanh:
            act, scale = torch.relu_, {}
        elif via_sigmoid:  # the matmul returns 2z; tanh(z) = 2 sigmoid(2z) - 1
            act, scale = _tanh_of_doubled, {"beta": 2, "alpha": 2}
        else:
            act, scale = torch.tanh, {}
        hs = [act(torch.addmm(w[1], x, w[0], **scale))]
        h = self.pairs(hs[0])
        for i in range(2, 2 + 2 * self.n_hidden_pairs, 2):
            h = act(torch.baddbmm(w[i + 1], h, w[i], **scale))
            hs.append(h)
        return hs

    def pairs(self, h0: torch.Tensor) -> torch.Tensor:
        """The first layers' output [B, 2h] seen as [2, B, h] (actor, critic); a view."""
        return h0.view(h0.shape[0], 2, self.width).transpose(0, 1)

    def outputs(self, last: torch.Tensor, batch_shape) -> tuple[torch.Tensor, torch.Tensor]:
        """Output layers on the last hidden pair [2, B, h]: (policy params, V(s))."""
        w = self.w_t
        params = torch.addmm(w[-3], last[0], w[-4])
        values = torch.addmm(w[-1], last[1], w[-2])
        if len(batch_shape) == 1:
            return params, values.view(batch_shape)
        return params.reshape(*batch_shape, -1), values.reshape(batch_shape)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy params, V(s)), the same function as ``ActorCritic.forward``; gradients reach ``flat.grad``."""
        if not self.packed or self.gaussian:  # Gaussian: the module's forward; its gradients land in flat.grad too
            return self.agent(obs)
        return _PairMLP.apply(self.flat, obs, self)

    __call__ = forward

    def _inputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        batch_shape = obs.shape[:obs.dim() - self.obs_ndim]
        x = obs if obs.dtype == torch.float32 and obs.dim() == 2 else obs.float().reshape(-1, self.n_in)
        return x, batch_shape

    @torch.no_grad()
    def _acting(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, batch_shape = self._inputs(obs)
        hs = self.hidden(x, via_sigmoid=x.shape[0] * self.width >= 2048)  # torch.tanh on a handful of rows only
        params, values = self.outputs(hs[-1] if self.n_hidden_pairs else self.pairs(hs[0]), batch_shape)
        if self.gaussian:  # concat(μ, log σ), as StateIndependentLogStd
            params = torch.cat([params, self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).expand_as(params)], -1)
        return params, values

    def numpy_policy(self, n_rows: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        """``obs -> (logits, V(s))`` in NumPy for a batch of ``n_rows`` observations, or None where it does not pay.

        Speed only, the same function as ``forward`` (float32 NumPy on views of the packed weights,
        so it follows every update; ``tests/math/test_packed_speed.py``). At CartPole's size (8
        rows, 64-unit layers) a call costs ~10 us against ~33 us for the packed torch forward:
        NumPy's per-op overhead is ~1 us, torch's ~4 us. The layout is the packed one: the first
        layers side by side ([in, 2h]), each hidden pair as one stacked [2, h, h] matmul. Larger
        batches stay in torch (NumPy's BLAS may go multi-threaded there); so do other devices and dtypes.
        """
        if not self.packed or self.flat.device.type != "cpu" or self.flat.dtype != torch.float32 \
                or n_rows * self.width > 4096:
            return None
        cached = self.__dict__.get("_numpy_policy")
        if cached is None or cached[0] != self.flat.data_ptr():  # made once: views of the weights
            self._numpy_policy = cached = (self.flat.data_ptr(), self._make_numpy_policy())
        return cached[1]

    def _make_numpy_policy(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        w = [t.numpy() for t in self.w]  # views of the flat weights, laid out as ``blocks``
        pairs = [(w[i].transpose(0, 2, 1), w[i + 1]) for i in range(2, 2 + 2 * self.n_hidden_pairs, 2)]
        # views (b_v [1], not a scalar copy)
        forward = numpy_pair_forward(w[0].T, w[1], pairs, w[-4].T, w[-3], w[-2][0], w[-1], self.tanh)
        return numpy_gaussian_params(forward, self.log_std.numpy()) if self.gaussian else forward  # a view of log σ

    def policy_value_backward(self, obs: torch.Tensor, actions: torch.Tensor, policy_term: Callable,
                              returns: torch.Tensor, vf_coef: float, ent_coef: float = 0.0, with_entropy: bool = False):
        """One loss of the form ``policy_term(log π(a|s)) + vf_coef mean((V - R)²) - ent_coef mean(H)``,
        its gradient written into ``flat.grad`` (overwritten: no zeroing needed), without autograd.

        ``policy_term(logprob) -> (loss, ∂loss/∂logprob, extra)`` is the algorithm's surrogate with its
        gradient (PPO's clipped surrogate, A2C's -mean(A log π)). Returns ``(params, policy_loss,
        value_loss, entropy or None, extra)``: ``params`` the distribution's (logits, or concat(μ, log σ)),
        ``entropy`` (per state) only when ``ent_coef`` > 0 or ``with_entropy``.

        Speed only, same math as ``forward`` + the loss + ``backward()`` (``tests/math/test_packed_speed.py``
        checks loss and gradient against autograd). Categorical, with l the logits and p = softmax(l):
        ∂log π(a)/∂l = onehot(a) - p, ∂H/∂l = -p (log p + H). Gaussian, with z = (a - μ)/σ:
        ∂log π/∂μ = z/σ, ∂log π/∂log σ = z² - 1, ∂H/∂log σ = 1 (log σ bounded as ``StateIndependentLogStd``).
        Both: ∂mean((V-R)²)/∂V = 2 (V - R) / B; then ``backward_into``.
        """
        x, _ = self._inputs(obs)
        B = x.shape[0]
        hs = self.hidden(x, via_sigmoid=True)
        out, values = self.outputs(hs[-1] if self.n_hidden_pairs else self.pairs(hs[0]), (B,))
        if self.gaussian:
            params, d_out, policy_loss, entropy, extra = self._gaussian_terms(out, actions, policy_term, ent_coef,
                                                                              with_entropy)
        else:
            params, d_out, policy_loss, entropy, extra = self._categorical_terms(out, actions, policy_term, ent_coef,
                                                                                 with_entropy)
        diff = values - returns.reshape(B)
        value_loss = diff.square().mean()
        d_values = diff.mul_(2.0 * vf_coef / B)
        self.backward_into(self._flat_grad_blocks(), x, hs, d_out, d_values)
        return params, policy_loss, value_loss, entropy, extra

    def _categorical_terms(self, logits, actions, policy_term, ent_coef, with_entropy):
        """(logits, ∂loss/∂logits, policy loss, entropy or None, extra) of the policy part of the loss."""
        B = logits.shape[0]
        logp = logits.log_softmax(-1)
        idx = actions.reshape(B, 1)
        if idx.dtype != torch.long:
            idx = idx.long()
        policy_loss, d_logprob, extra = policy_term(logp.gather(-1, idx).squeeze(-1))
        p = logp.exp()
        entropy = -(p * logp).sum(-1) if ent_coef or with_entropy else None
        if ent_coef:
            d_ent = p * (logp + entropy.unsqueeze(-1)) * (ent_coef / B)  # ∂(-ent_coef mean H)/∂l
        d_lp = d_logprob.unsqueeze(-1)
        d_logits = p.mul_(d_lp).neg_().scatter_add_(-1, idx, d_lp)  # d (onehot - p)
        if ent_coef:
            d_logits += d_ent
        return logits, d_logits, policy_loss, entropy, extra

    def _gaussian_terms(self, mean, actions, policy_term, ent_coef, with_entropy):
        """(concat(μ, log σ), ∂loss/∂μ, policy loss, entropy or None, extra); writes ∂loss/∂log σ into flat.grad."""
        B, d = mean.shape
        raw = self.log_std
        log_std = raw.clamp(LOG_STD_MIN, LOG_STD_MAX)
        inv_std = log_std.neg().exp_()
        z = (actions.reshape(B, d) - mean).mul_(inv_std)  # (a - μ) / σ
        logprob = (z.square().mul_(-0.5) - log_std).sum(-1) - d * _HALF_LOG_2PI
        policy_loss, d_logprob, extra = policy_term(logprob)
        d_lp = d_logprob.unsqueeze(-1)
        d_mean = z * inv_std * d_lp  # ∂log π/∂μ = z / σ
        d_log_std = ((z.square() - 1.0) * d_lp).sum(0)  # ∂log π/∂log σ = z² - 1
        if ent_coef:
            d_log_std -= ent_coef  # ∂(-ent_coef mean H)/∂log σ, H = Σ log σ + d (1 + log 2π) / 2
        # the bound's rule (networks._BoundedLogStd): pass inside, and outside only towards the bounds
        self._log_std_grad().copy_(d_log_std.mul_(bound_gradient_passes(raw, d_log_std)))
        entropy = (log_std.sum() + d * (0.5 + _HALF_LOG_2PI)).expand(B) if ent_coef or with_entropy else None
        return torch.cat([mean, log_std.expand(B, d)], -1), d_mean, policy_loss, entropy, extra

    def _log_std_grad(self) -> torch.Tensor:
        self._flat_grad_blocks()  # makes flat.grad if it is missing
        a, b = self._log_std_at
        return self.flat.grad[a:b]

    def numpy_update(self, n_rows: int) -> "contextlib.AbstractContextManager | None":
        """The context to run ``policy_value_backward_numpy`` in for batches of ``n_rows``, or None where it
        does not apply (not packed, not a float32 CPU agent).

        NumPy's BLAS must stay on torch's thread count, so that a single-threaded run stays single-threaded:
        where every product is small enough that OpenBLAS keeps it on one core (m·n·k <= 65536·4, its
        threshold for threading) no context is needed; larger ones run inside ``numpy_blas_threads()``
        (threadpoolctl), or stay in torch without it. Enter it once around many steps (~8 us)."""
        if not self.packed or self.flat.device.type != "cpu" or self.flat.dtype != torch.float32:
            return None
        if n_rows * self.width * max(self.width, 2 * self.n_in) <= 2 ** 18:  # [B, w] x [w, w]; [B, in] x [in, 2w]
            return contextlib.nullcontext()
        return numpy_blas_threads() if numpy_blas_threads_held() else None

    def policy_value_backward_numpy(self, obs: np.ndarray, actions: np.ndarray, policy_term: Callable,
                                    returns: np.ndarray, vf_coef: float, ent_coef: float = 0.0,
                                    with_entropy: bool = False):
        """``policy_value_backward`` in NumPy: the same loss, gradient and returns, as NumPy values.

        Speed only, the same math and the same layout (``tests/math/test_packed_speed.py`` checks loss
        and gradient against autograd). Where a pass costs its ops' launches and its element-wise
        passes, not its arithmetic, NumPy wins: an op costs ~1 us against torch's ~2-4 us, ``np.tanh``
        is ~6 us on [2, 256, 64] against ~12 us for torch's sigmoid route, and every array lives in a
        buffer allocated once per batch size (64-byte aligned: torch allocates them), written with
        ``out=``. A2C's update on 40 rows: ~120 us -> ~70 us; PPO's on 256 rows (CartPole, 64-unit
        layers): ~300 us -> ~235 us, of which ~120 us are the three [2, 256, 64] x [2, 64, 64] products.

        ``policy_term`` takes and returns NumPy arrays. The gradient overwrites ``flat.grad``. The
        returned distribution parameters are a buffer the next call overwrites: copy them to keep them. Run it inside
        ``numpy_update(n_rows)``'s context, and only where that is not None.
        """
        w, g = self._numpy_blocks()
        B, h, n_in, P = obs.shape[0], self.width, self.n_in, self.n_hidden_pairs
        buf = self._numpy_buffers(B)
        hs = buf["hs"]  # each layer's activations, actor and critic stacked: [2, B, h]
        x = obs.reshape(B, n_in).astype(np.float32, copy=False)
        act = numpy_activation(self.tanh)
        # forward: the first layers (x W0ᵀ + b0, [2h, in] seen as [2, h, in]), then each hidden pair
        np.matmul(x, w[0].reshape(2, h, n_in).transpose(0, 2, 1), out=hs[0])
        hs[0] += w[1].reshape(2, 1, h)
        act(hs[0])
        for k in range(1, P + 1):
            np.matmul(hs[k - 1], w[2 * k].transpose(0, 2, 1), out=hs[k])
            hs[k] += w[2 * k + 1]
            act(hs[k])
        last = hs[P]
        out = np.matmul(last[0], w[-4].T, out=buf["out"])
        out += w[-3]
        values = np.matmul(last[1], w[-2][0], out=buf["values"])
        values += w[-1][0]
        if self.gaussian:
            params, d_out, policy_loss, entropy, extra = self._gaussian_terms_numpy(
                out, actions, policy_term, ent_coef, with_entropy, buf)
        else:
            params, d_out, policy_loss, entropy, extra = self._categorical_terms_numpy(
                out, actions, policy_term, ent_coef, with_entropy, buf)
        # ∂mean((V-R)²)/∂V = 2 (V - R) / B
        diff = values - returns.reshape(B)
        value_loss = np.mean(diff * diff)
        d_values = diff * (2.0 * vf_coef / B)
        # backward, the layout of backward_into: dW = dzᵀ h_in, db = Σ dz, dh_in = dz W
        np.matmul(d_out.T, last[0], out=g[-4])
        np.sum(d_out, 0, out=g[-3])
        np.matmul(d_values, last[1], out=g[-2][0])
        g[-1][0] = d_values.sum()
        dhs, tmps = buf["dh"], buf["tmp"]  # dh: ∂loss/∂h of each layer, shaped like hs, then dz in place
        np.matmul(d_out, w[-4], out=dhs[P][0])
        np.multiply(d_values[:, None], w[-2][0], out=dhs[P][1])
        for k in range(P, -1, -1):
            dh = dhs[k]
            if self.tanh:  # dz = dh (1 - h²)
                np.multiply(hs[k], hs[k], out=tmps[k])
                np.subtract(1.0, tmps[k], out=tmps[k])
                dh *= tmps[k]
            else:
                dh *= hs[k] > 0
            if k == 0:
                break
            np.matmul(dh.transpose(0, 2, 1), hs[k - 1], out=g[2 * k])
            np.sum(dh, 1, keepdims=True, out=g[2 * k + 1])
            np.matmul(dh, w[2 * k], out=dhs[k - 1])
        np.matmul(dh.transpose(0, 2, 1), x, out=g[0].reshape(2, h, n_in))
        np.sum(dh, 1, out=g[1].reshape(2, h))
        return params, policy_loss, value_loss, entropy, extra

    @staticmethod
    def _categorical_terms_numpy(logits, actions, policy_term, ent_coef, with_entropy, buf):
        """``_categorical_terms`` in NumPy, into the buffers ``buf``."""
        B, n_out = logits.shape
        # log π and π from the logits, a column at a time (a reduction along a short last axis is slow)
        col, total, p = buf["col"], buf["total"], buf["p"]
        np.copyto(col, logits[:, 0])
        for j in range(1, n_out):
            np.maximum(col, logits[:, j], out=col)
        logp = np.subtract(logits, col[:, None], out=buf["logp"])
        np.exp(logp, out=p)
        np.copyto(total, p[:, 0])
        for j in range(1, n_out):
            total += p[:, j]
        p /= total[:, None]
        logp -= np.log(total, out=col)[:, None]
        rows, idx = buf["rows"], actions.reshape(B)
        policy_loss, d_logprob, extra = policy_term(logp[rows, idx])
        # ∂loss/∂logits: ∂log π(a)/∂l = onehot(a) - p, ∂H/∂l = -p (log p + H)
        d_logits = np.multiply(p, -d_logprob[:, None], out=buf["d_out"])
        d_logits[rows, idx] += d_logprob
        entropy = -(p * logp).sum(-1) if ent_coef or with_entropy else None
        if ent_coef:
            d_logits += p * (logp + entropy[:, None]) * (ent_coef / B)  # ∂(-ent_coef mean H)/∂l
        return logits, d_logits, policy_loss, entropy, extra

    def _gaussian_terms_numpy(self, mean, actions, policy_term, ent_coef, with_entropy, buf):
        """``_gaussian_terms`` in NumPy: ∂loss/∂log σ goes into flat.grad, the rest as there."""
        B, d = mean.shape
        raw = self.log_std.numpy()
        log_std = np.clip(raw, LOG_STD_MIN, LOG_STD_MAX)
        inv_std = np.exp(-log_std)
        z = np.subtract(actions.reshape(B, d), mean, out=buf["p"])
        z *= inv_std  # (a - μ) / σ
        z2 = z * z
        logprob = (z2 * -0.5 - log_std).sum(-1) - d * _HALF_LOG_2PI
        policy_loss, d_logprob, extra = policy_term(logprob)
        d_lp = d_logprob[:, None]
        d_mean = np.multiply(z, inv_std, out=buf["d_out"])
        d_mean *= d_lp  # ∂log π/∂μ = z / σ
        z2 -= 1.0
        z2 *= d_lp
        d_log_std = z2.sum(0)  # ∂log π/∂log σ = z² - 1
        if ent_coef:
            d_log_std -= ent_coef  # ∂(-ent_coef mean H)/∂log σ
        passes = bound_gradient_passes(raw, d_log_std)  # the bound's rule, as networks._BoundedLogStd
        self._log_std_grad().numpy()[...] = np.where(passes, d_log_std, 0.0)
        entropy = np.full(B, log_std.sum() + d * (0.5 + _HALF_LOG_2PI), np.float32) if ent_coef or with_entropy \
            else None
        params = buf["params"]
        params[:, :d] = mean
        params[:, d:] = log_std
        return params, d_mean, policy_loss, entropy, extra

    def _numpy_buffers(self, n_rows: int) -> dict[str, np.ndarray]:
        """The arrays ``policy_value_backward_numpy`` writes into, allocated once per batch size.

        torch allocates them (64-byte aligned; NumPy's own arrays may be only 16-byte aligned, which
        makes the element-wise passes' speed depend on where malloc put them)."""
        cache = self.__dict__.setdefault("_np_buffers", {})
        if n_rows not in cache:
            def empty(*shape):
                return torch.empty(shape, dtype=torch.float32).numpy()
            h, n_out = self.width, self.w[-4].shape[0]
            widths = [h] + [self.w[2 * k].shape[1] for k in range(1, self.n_hidden_pairs + 1)]
            cache[n_rows] = {
                "hs": [empty(2, n_rows, n) for n in widths], "dh": [empty(2, n_rows, n) for n in widths],
                "tmp": [empty(2, n_rows, n) for n in widths],
                "out": empty(n_rows, n_out), "values": empty(n_rows), "logp": empty(n_rows, n_out),
                "p": empty(n_rows, n_out), "d_out": empty(n_rows, n_out), "col": empty(n_rows),
                "params": empty(n_rows, 2 * n_out),
                "total": empty(n_rows),
                "rows": np.arange(n_rows)}
        return cache[n_rows]

    def _numpy_blocks(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """NumPy views of the weight blocks and of ``flat.grad``'s blocks, made once per storage."""
        grad = self._flat_grad_blocks()
        key = (self.flat.data_ptr(), grad[0].data_ptr())
        cached = self.__dict__.get("_np_blocks")
        if cached is None or cached[0] != key:
            self._np_blocks = cached = (key, [t.numpy() for t in self.w], [t.numpy() for t in grad])
        return cached[1], cached[2]

    def _flat_grad_blocks(self) -> list[torch.Tensor]:
        grad = self.flat.grad
        if grad is None:
            grad = self.flat.grad = torch.zeros_like(self.flat)
        if getattr(self, "_flat_grad_of", None) is not grad:  # cut once, again only if flat.grad was replaced
            self._flat_grad_of, self._flat_grad_cut = grad, self.blocks(grad)
        return self._flat_grad_cut

    def acting_forward(self):
        """The no-grad forward the rollout collector calls at every env step (no per-rollout copies)."""
        return self._acting if self.packed else self.agent.acting_forward()

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.agent.value(obs)

    def backward_into(self, g: list[torch.Tensor], x: torch.Tensor, hs: list[torch.Tensor],
                      d_params: torch.Tensor, d_values: torch.Tensor) -> None:
        """Write ∂loss/∂weights into the blocks ``g`` (laid out like ``blocks(flat)``), overwriting them,
        from the gradients at the outputs and what ``hidden(x, ...)`` returned."""
        w, B = self.w, x.shape[0]
        act_backward = _aten.tanh_backward if self.tanh else (lambda d, h: _aten.threshold_backward(d, h, 0))
        d_params, d_values = d_params.reshape(B, -1), d_values.reshape(B, 1)
        last = hs[-1] if self.n_hidden_pairs else self.pairs(hs[0])
        # output layers: dW = dyᵀ h, db = Σ dy; then dh, the gradient at each MLP's last hidden layer
        torch.mm(d_params.t(), last[0], out=g[-4])
        torch.sum(d_params, 0, out=g[-3])
        torch.mm(d_values.t(), last[1], out=g[-2])
        torch.sum(d_values, 0, out=g[-1])
        dh = torch.empty(2, B, last.shape[-1], dtype=x.dtype, device=x.device)
        torch.mm(d_params, w[-4], out=dh[0])
        torch.mul(d_values, w[-2], out=dh[1])
        # hidden pairs, top down: dz = dh * act'(z), dW = dzᵀ h_in, db = Σ dz, dh_in = dz W
        for k in range(self.n_hidden_pairs, 0, -1):
            dz = act_backward(dh, hs[k])
            h_in = hs[k - 1] if k > 1 else self.pairs(hs[0])
            torch.bmm(dz.transpose(1, 2), h_in, out=g[2 * k])
            torch.sum(dz, 1, keepdim=True, out=g[2 * k + 1])
            dh = torch.bmm(dz, w[2 * k])
        # first layers: their [2h, in] weight gradient seen as [2, h, in], so dz stays [2, B, h] (no copy)
        dz = act_backward(dh, self.pairs(hs[0]))
        g0 = g[0].view(2, self.width, -1)
        if x.shape[1] < self.width:  # a narrow observation: (xᵀ dz)ᵀ, ~3x faster in MKL than dzᵀ x (256 rows, 4 inputs)
            g0.copy_(torch.matmul(x.t(), dz).transpose(1, 2))
        else:
            torch.matmul(dz.transpose(1, 2), x, out=g0)
        torch.sum(dz, 1, out=g[1].view(2, self.width))


def numpy_activation(tanh: bool) -> Callable[[np.ndarray], np.ndarray]:
    """NumPy's tanh or a ReLU, in place (on a fresh pre-activation or a buffer), returning its argument."""
    return (lambda z: np.tanh(z, out=z)) if tanh else (lambda z: np.maximum(z, 0.0, out=z))


def numpy_gaussian_params(forward: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                          log_std: np.ndarray) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``forward``'s (μ, V(s)) turned into (concat(μ, log σ), V(s)), log σ bounded as ``StateIndependentLogStd``
    at each call (``log_std`` may be a view that follows the updates, or a rollout's copy)."""
    def gaussian(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, values = forward(obs)
        bounded = np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
        return np.concatenate([mean, np.broadcast_to(bounded, mean.shape)], -1), values
    return gaussian


def numpy_pair_forward(w0: np.ndarray, b0: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]], w_pi: np.ndarray,
                       b_pi: np.ndarray, w_v: np.ndarray, b_v: np.ndarray,
                       tanh: bool) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """obs -> (actor output, V(s)) in NumPy for an actor and a critic MLP with equal hidden layers, side by side.

    ``w0`` [in, 2h] and ``b0`` [2h]: both first layers as one matmul; ``pairs``: per hidden pair
    (Wᵀ [2, h, h], b [2, 1, h]), one stacked matmul; ``w_pi`` [h, out], ``b_pi``; ``w_v`` [h], ``b_v`` [1].
    Used by ``PackedActorCritic.numpy_policy`` (views of the packed weights) and by TRPO's
    ``lucidrl.flat_mlp.numpy_actor_critic`` (copies made once per rollout).
    """
    act = numpy_activation(tanh)
    width = b0.shape[0] // 2

    def forward(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = obs.shape[0]
        h = act(obs.reshape(n, -1).astype(np.float32, copy=False) @ w0 + b0)
        h = h.reshape(n, 2, width).transpose(1, 0, 2)  # [2, B, h]: actor, critic
        for wt, b in pairs:
            h = act(h @ wt + b)
        return h[0] @ w_pi + b_pi, h[1] @ w_v + b_v

    return forward


def _tanh_of_doubled(z2: torch.Tensor) -> torch.Tensor:
    """tanh(z) from 2z, as 2 sigmoid(2z) - 1, in place after the sigmoid."""
    return z2.sigmoid_().mul_(2.0).sub_(1.0)


class _PairMLP(torch.autograd.Function):
    """(flat weights, obs) -> (policy params, values) for a ``PackedActorCritic``, one autograd node."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, obs: torch.Tensor, net: PackedActorCritic):
        x, batch_shape = net._inputs(obs)
        hs = net.hidden(x, via_sigmoid=True)
        ctx.save_for_backward(x, *hs)
        ctx.net = net
        return net.outputs(hs[-1] if net.n_hidden_pairs else net.pairs(hs[0]), batch_shape)

    @staticmethod
    def backward(ctx, d_params: torch.Tensor, d_values: torch.Tensor):
        x, *hs = ctx.saved_tensors
        net = ctx.net
        if net.flat.grad is not None:  # autograd adds our result into flat.grad and drops it: reuse the buffer
            grad, g = net._grad, net._grad_blocks
        else:  # autograd would keep our tensor as flat.grad itself: give it a fresh one
            grad = torch.empty_like(net.flat)
            g = net.blocks(grad)
        net.backward_into(g, x, hs, d_params, d_values)
        return grad, None, None
