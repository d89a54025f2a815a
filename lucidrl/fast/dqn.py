"""Fast twins for DQN: ``dqn_train_round`` and ``greedy_policy`` of ``lucidrl.algos.dqn``, written out.

Where DQN spends its time on the zoo's CartPole preset: ~24.7k gradient steps on minibatches of 64
through a 4-256-256-2 ReLU network, where autograd's bookkeeping costs about as much as the
matrix products, and ~50k acting calls on one observation. The twins:

* draw the round's minibatches at once (the same uniform indices, in the same order, from the
  same generator as ``buffer.sample`` step by step);
* compute every target of the round in one batched pass of the target network, in chunks of 1,024
  columns, once per distinct transition drawn (a round of 128 x 64 draws from a memory of ~25k
  transitions repeats ~15% of them; early on, many more): with SB3's semantics the target network
  changes only while collecting, never during a round (Double DQN still picks a' with the online
  network step by step, as it moves);
* take each step through the Q-network as a K = 1 NumPy ``MLPCore`` in the feature-major layout
  (``FeatureMajorOps``: arrays [features, batch], written into reused buffers; the forward product
  W h is ~25% faster in OpenBLAS than the row-major h Wᵀ here). A step is ~40 small array operations
  around three 64x256x256 products (NumPy launches an op in ~1 us, torch in ~3-4 us, and its BLAS
  multiplies as fast as torch's here): Huber's gradient in Q(s, a) is clamp(Q - y, -1, 1) / B,
  backpropagated, then the gradient clipping and Adam's step on the flat weights;
* act with a NumPy copy of the weights (made once per collection chunk).

Supported: a ReLU, tanh or ELU MLP on flat (1-D Box) observations or one-hot encoded ones (Discrete,
MultiDiscrete: the first layer as a gather of its weight's columns, ``lucidrl.fast.inputs``), float32,
on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lucidrl import backends
from lucidrl.algos.dqn import td_target
from lucidrl.fast.flat import FlatOptimizer, clip_grad_norm, flat_optimizer
from lucidrl.fast.inputs import InputEncoding, OneHotRows, input_unsupported
from lucidrl.fast.mlp import MLPCore, acting_forward, numpy_blocks, single_net
from lucidrl.networks import FlattenFloat


def dqn_train_round(q_net, q_target, optimizer, buffer, n_steps, cfg) -> dict[str, float]:
    """``lucidrl.algos.dqn.dqn_train_round``: the same minibatches, targets, Huber gradients and Adam steps."""
    # feature-major (FeatureMajorOps): every array below is [features, B], the transpose of the reference's
    net = single_net(q_net.q, numpy=True, feature_major=True)
    target = single_net(q_target.q, numpy=True, feature_major=True)
    opt = flat_optimizer(optimizer, net.flat)
    B, A = cfg.batch_size, q_net.n_actions
    idx = buffer.sample_indices(n_steps, B)
    batch = buffer.get(idx)  # [n_steps, B, ...]: step g's minibatch is row g

    encoding = InputEncoding(q_net.encoder)  # flat observations, or one-hot rows kept as the columns of their ones

    def columns(x: torch.Tensor):  # [n_steps, B, n_in] -> [n_steps, n_in, B], contiguous (or each step's one-hot rows)
        if encoding.one_hot:
            cols = encoding.columns(x.reshape(n_steps * B, *x.shape[2:]).numpy()).reshape(n_steps, B, -1)
            return [OneHotRows(c, encoding.n_in) for c in cols]
        return np.ascontiguousarray(x.float().numpy().reshape(n_steps, B, -1).transpose(0, 2, 1))

    grad = net.blocks(net.flat.grad.numpy())
    obs = columns(batch["obs"])
    rewards, terminated = batch["rewards"], batch["terminated"]
    with torch.no_grad():  # Q_θ⁻(s', ·) for the whole round (θ⁻ is fixed during a round), once per distinct
        # transition drawn (a round draws some twice), 1,024 columns at a time
        _, first, inverse = np.unique(idx.numpy().reshape(-1), return_index=True, return_inverse=True)
        next_obs_drawn = batch["next_obs"].reshape(n_steps * B, *batch["next_obs"].shape[2:])
        starts = range(0, len(first), 1024)
        if encoding.one_hot:
            drawn = encoding.columns(next_obs_drawn.numpy()[first])
            chunks: list = [OneHotRows(drawn[start : start + 1024], encoding.n_in) for start in starts]
        else:
            cols = np.ascontiguousarray(next_obs_drawn.float().numpy().reshape(n_steps * B, -1)[first].T)
            chunks = [cols[:, start : start + 1024] for start in starts]
        q_distinct = np.empty((A, len(first)), np.float32)
        for start, x in zip(starts, chunks):  # (each forward's output is a buffer the next one reuses)
            q_distinct[:, start : start + 1024] = target.forward(x)[0]
        next_q_target = torch.from_numpy(np.ascontiguousarray(q_distinct[:, inverse].T)).view(n_steps, B, A)
        targets = None if cfg.double_q else td_target(rewards, terminated, next_q_target, cfg.gamma).numpy()
    next_obs = columns(batch["next_obs"]) if cfg.double_q else None
    actions = batch["actions"].long().numpy()
    onehot = np.ascontiguousarray(np.eye(A, dtype=np.float32)[actions].transpose(0, 2, 1))  # [n_steps, A, B]
    diffs, ys, norms = np.empty((n_steps, B), np.float32), np.empty((n_steps, B), np.float32), []
    for g in range(n_steps):
        if targets is None:  # (E5) the online network, as it is now, picks a'
            online = torch.from_numpy(net.forward(next_obs[g])[0].T)  # type: ignore[index]
            y = td_target(rewards[g], terminated[g], next_q_target[g], cfg.gamma, next_q_online=online).numpy()
        else:
            y = targets[g]
        ys[g] = y
        d_q, hs = net.forward(obs[g])  # Q(s, ·) [A, B], in a buffer the next forward reuses: changed in place
        np.subtract(d_q, y, out=d_q)
        np.multiply(d_q, onehot[g], out=d_q)  # Q(s, a) - y at the action taken, 0 elsewhere
        np.sum(d_q, axis=0, out=diffs[g])
        np.clip(d_q, -1.0, 1.0, out=d_q)
        np.divide(d_q, B, out=d_q)  # Huber's gradient in Q(s, ·): clamp(Q(s, a) - y, -1, 1) / B
        net.core.backward(net.w, grad, hs, [d_q])  # (E3)
        norms.append(clip_grad_norm(net.flat.grad, cfg.max_grad_norm))
        opt.step()
    loss = F.smooth_l1_loss(torch.from_numpy(diffs), torch.zeros(n_steps, B))
    return {
        "loss/value": float(loss),
        "diag/q_mean": float((diffs + ys).mean(dtype=np.float64)),
        "diag/grad_norm": float(np.mean(norms)),
    }


def train_round_unsupported(model) -> str | None:
    q_net = model.q_net
    if model.device.type != "cpu":
        return f"device {model.device.type!r} (the fast backend is for the CPU)"
    reason = input_unsupported(q_net.encoder)
    if reason is not None:
        return reason
    if isinstance(q_net.encoder, FlattenFloat) and q_net.encoder.ndim != 1:
        return f"observations of {q_net.encoder.ndim} dimensions (a Box of one is)"
    if any(p.dtype != torch.float32 for p in q_net.parameters()):
        return "weights other than float32"
    return MLPCore.members_supported([q_net.q]) or FlatOptimizer.unsupported(model.optimizer, list(q_net.parameters()))


def greedy_policy(q_net):
    """``lucidrl.algos.dqn.greedy_policy`` in NumPy on a copy of the weights (θ is fixed during a chunk)."""
    core = MLPCore.of([q_net.q], numpy=True)
    forward, encode = acting_forward(core, numpy_blocks(core, [q_net.q])), InputEncoding(q_net.encoder).numpy

    def greedy(obs: np.ndarray) -> np.ndarray:
        return forward(encode(obs))[0].argmax(-1)

    return greedy


backends.register("dqn_train_round", dqn_train_round, train_round_unsupported)
backends.register("dqn_greedy", greedy_policy, train_round_unsupported)
