"""Device check for lucidrl.envs.torch (prepared by the torch-envs helper; run: python this.py [cuda]).

1. Same seeds -> bitwise-equal initial states on the device and on the CPU (the hash is integer math).
2. 300 float64 steps with the same actions: device vs CPU trajectories within 1e-9 (sin/cos ulps aside).
3. Throughput of CartPole functional_step, eager and torch.compile(mode="reduce-overhead"), 4k-256k envs.
"""

import sys
import time

import torch

from lucidrl.envs.torch import TORCH_ENVS, make_torch_vec_env

dev = sys.argv[1] if len(sys.argv) > 1 else "cuda"
for env_id in TORCH_ENVS:
    a = make_torch_vec_env(env_id, 64, device=dev, dtype=torch.float64, seed=3)
    b = make_torch_vec_env(env_id, 64, device="cpu", dtype=torch.float64, seed=3)
    same0 = torch.equal(a.state.cpu(), b.state)
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for _ in range(300):
        act = (
            torch.randint(0, a.single_action_space.n, (64,), generator=g)
            if a._discrete
            else torch.rand(64, 1, generator=g, dtype=torch.float64) * 4 - 2
        )
        oa = a.step(act.to(dev))
        ob = b.step(act)
        assert torch.equal(oa[2].cpu(), ob[2]) and torch.equal(oa[3].cpu(), ob[3]), env_id
        worst = max(worst, (a.state.cpu() - b.state).abs().max().item())
        b.state = a.state.cpu()  # keep chaotic Acrobot comparable step by step
    print(f"{env_id}: initial states equal={same0}, max one-step |device - cpu| = {worst:.2e}", flush=True)
for n in [4096, 65536, 262144]:
    env = make_torch_vec_env("CartPole-v1", n, device=dev, seed=0)
    for name, fn in [
        ("eager", env.functional_step),
        ("compiled", torch.compile(env.functional_step, mode="reduce-overhead" if dev != "cpu" else "default")),
    ]:
        s, e, r = env.state, env.elapsed, env.resets
        act = torch.randint(0, 2, (n,), device=dev)
        for _ in range(5):
            s, e, r, *_ = fn(s, e, env.seeds, r, act)
            s, e, r = s.clone(), e.clone(), r.clone()
        if dev != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        k = 200
        for _ in range(k):
            act = torch.randint(0, 2, (n,), device=dev)
            s, e, r, *_ = fn(s, e, env.seeds, r, act)
            s, e, r = s.clone(), e.clone(), r.clone()
        if dev != "cpu":
            torch.cuda.synchronize()
        print(
            f"CartPole n={n} {name}: {k * n / (time.perf_counter() - t0):,.0f} env steps/s (incl. randint + 3 clones)",
            flush=True,
        )
