"""Micro-benchmarks of lucidrl's hand-tuned small ops against their plain PyTorch counterparts.

Prints microseconds per call (median of several timed blocks, after a warm-up) for:

* tanh on a [256, 64] float32 tensor (one PPO minibatch through a 64-unit hidden layer):
  ``torch.tanh`` vs ``lucidrl.networks.Tanh()`` (2 sigmoid(2x) - 1 on large CPU batches),
  forward only and forward + backward;
* one optimiser step on the parameters of ``lucidrl.networks.ActorCritic`` for CartPole
  (Box(4) observations, Discrete(2) actions; two 64x64 MLPs) with random gradients set:
  ``torch.optim.Adam(fused=True).step()`` vs ``lucidrl.optim.Adam.step()``;
* gradient clipping on the same parameters: ``torch.nn.utils.clip_grad_norm_`` vs
  ``lucidrl.optim.clip_grad_norm``;
* A2C's per-update and per-step work on the same network (flat parameters in both columns):
  ``torch.optim.RMSprop.step()`` vs ``lucidrl.optim.RMSprop.step()``; forward + backward on 40
  observations (8 envs x 5 steps), ``ActorCritic`` with autograd vs ``lucidrl.packed.PackedActorCritic``;
  acting for one 5-step rollout on 8 observations, ``ActorCritic.acting_forward()`` (built once
  per rollout) vs the packed acting forward.

Runs with ``torch.set_num_threads(1)`` (``--threads`` to change). Run nothing else heavy meanwhile.

    python benchmarks/micro_ops.py [--iters 3000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

import lucidrl  # noqa: E402
from lucidrl.networks import ActorCritic, Tanh  # noqa: E402
from lucidrl.optim import Adam, RMSprop, clip_grad_norm, flat_parameters  # noqa: E402
from lucidrl.packed import PackedActorCritic  # noqa: E402


def time_us(fn: Callable[[], object], iters: int, repeats: int, warmup: int) -> float:
    """Median over ``repeats`` blocks of the mean time of one call, in microseconds."""
    for _ in range(warmup):
        fn()
    blocks = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        blocks.append((time.perf_counter() - t0) / iters * 1e6)
    return statistics.median(blocks)


def tanh_cases():
    x = torch.randn(256, 64)
    xg = x.clone().requires_grad_(True)
    g = torch.randn(256, 64)
    ours = Tanh()

    def fwd_bwd(f):
        def run():
            f(xg).backward(g)
            xg.grad = None
        return run

    with torch.no_grad():
        err = (ours(x) - torch.tanh(x)).abs().max().item()
    return [
        ("tanh forward [256, 64]", lambda: torch.tanh(x), lambda: ours(x)),
        ("tanh forward+backward [256, 64]", fwd_bwd(torch.tanh), fwd_bwd(ours)),
    ], f"lucidrl Tanh vs torch.tanh max abs error: {err:.1e}"


def fresh_params_with_grads(seed: int = 0) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    net = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    params = list(net.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    return params


def optim_cases():
    p_torch, p_ours = fresh_params_with_grads(), fresh_params_with_grads()
    n = sum(p.numel() for p in p_torch)
    opt_torch = torch.optim.Adam(p_torch, lr=1e-3, eps=1e-5, fused=True)
    opt_ours = Adam(p_ours, lr=1e-3, eps=1e-5)
    # The gradients' norm (~1) exceeds max_norm 0.5, so both functions really scale on every call.
    return [
        ("Adam step (ActorCritic)", opt_torch.step, opt_ours.step),
        ("clip grad norm (ActorCritic)",
         lambda: torch.nn.utils.clip_grad_norm_(p_torch, 0.5), lambda: clip_grad_norm(p_ours, 0.5)),
    ], f"ActorCritic(Box(4), Discrete(2)): {len(p_torch)} tensors, {n} parameters"


def a2c_cases():
    def net():
        torch.manual_seed(0)
        return ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))

    plain, packed = net(), PackedActorCritic(net())
    flat = flat_parameters(plain)
    flat.grad.normal_(0, 1e-2)
    packed.flat.grad.copy_(flat.grad)
    rms_torch = torch.optim.RMSprop([flat], lr=1e-9, alpha=0.99, eps=1e-5)  # tiny lr: the weights stay put
    rms_ours = RMSprop([packed.flat], lr=1e-9, alpha=0.99, eps=1e-5)
    x, acting_obs = torch.randn(40, 4), torch.randn(8, 4)

    def fwd_bwd(f):
        def run():
            p, v = f(x)
            (p.sum() + v.sum()).backward()
        return run

    def acting_plain():  # both under no_grad, as in RolloutCollector.collect
        act = plain.acting_forward()
        with torch.no_grad():
            for _ in range(5):
                act(acting_obs)

    def acting_packed():
        act = packed.acting_forward()
        with torch.no_grad():
            for _ in range(5):
                act(acting_obs)

    return [
        ("RMSprop step (flat ActorCritic)", rms_torch.step, rms_ours.step),
        ("A2C forward+backward [40, 4]", fwd_bwd(plain), fwd_bwd(packed)),
        ("acting, one 5-step rollout [8, 4]", acting_plain, acting_packed),
    ], "A2C cases: the same ActorCritic as above, with every weight in one flat tensor"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=3000, help="calls per timed block (default 3000)")
    ap.add_argument("--repeats", type=int, default=5, help="timed blocks; the median is reported (default 5)")
    ap.add_argument("--warmup", type=int, default=300, help="untimed calls first (default 300)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cases, notes = [], []
    for make in (tanh_cases, optim_cases, a2c_cases):
        c, note = make()
        cases += c
        notes.append(note)

    print(f"torch {torch.__version__}, lucidrl {lucidrl.__version__}, torch threads {torch.get_num_threads()}, "
          f"{args.repeats} x {args.iters} calls after {args.warmup} warm-up, median block\n")
    print("| op | torch (us) | lucidrl (us) | speed-up |")
    print("|---|---|---|---|")
    for name, torch_fn, ours_fn in cases:
        t = time_us(torch_fn, args.iters, args.repeats, args.warmup)
        o = time_us(ours_fn, args.iters, args.repeats, args.warmup)
        print(f"| {name} | {t:.1f} | {o:.1f} | {t / o:.2f}x |")
    print()
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
