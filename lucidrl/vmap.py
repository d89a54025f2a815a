"""Many PPO agents at once: ``vmap_train`` trains N independent seeds of one configuration in one process.

A seed study or a sweep over seeds is N times the same small computation. Run one after another,
each agent's rollout and update are thousands of small kernels that leave a GPU idle; run as one,
they are the same kernels on N times the data. This is how PureJaxRL trains thousands of agents on
one GPU (Lu et al. 2022, "Discovered Policy Optimisation", which vmaps whole training runs with JAX).
Here the same idea in PyTorch:

* the N agents' networks are one set of stacked weights (``torch.func.stack_module_state``), and
  the forward pass is ``torch.func.vmap`` of ``torch.func.functional_call`` of one network over
  the agent dimension;
* the N × n_envs envs are one batched torch env (``lucidrl.envs.torch``); agent a's env i is
  seeded with ``seed + a`` + i (the seeds a single PPO(seed=seed + a) would give its envs), and
  stepped by ``lucidrl.device_rollout.DeviceRolloutCollector.run``, the one device rollout, with a
  policy step that runs each agent's stacked weights on its own envs;
* GAE is the reference ``lucidrl.advantages.gae`` on [T, N·n_envs]: its columns are independent;
* each gradient step is ``vmap(grad(loss))`` of the reference ``lucidrl.algos.ppo.ppo_loss`` (per
  agent: its own minibatch, its own advantage normalisation), then each agent's gradient is clipped
  to its own global norm, and one ``torch.optim.Adam`` steps the stacked weights — Adam is
  elementwise, so that is N independent Adams.

``tests/math/test_compiled.py`` checks one update of N stacked agents against N reference
``ppo_update`` calls, for a categorical and a Gaussian policy (its bounded log σ, a custom autograd
function, declares ``generate_vmap_rule``). Observation and reward normalisation are refused: each agent
would need statistics of its own.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from lucidrl.advantages import gae
from lucidrl.config import value_at
from lucidrl.device_rollout import DeviceRolloutCollector
from lucidrl.errors import ConfigError
from lucidrl.networks import ActorCritic
from lucidrl.threads import hold_matmul_precision


class _Bound:
    """One agent's network as a callable over its own weights ``p`` (what ``ppo_loss`` expects of an agent)."""

    def __init__(self, base, p):
        self.base, self.p, self.head = base, p, base.head

    def __call__(self, obs):
        return functional_call(self.base, self.p, (obs,))


def _clip_per_agent(grads: dict[str, torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """Each agent's gradient clipped to its own global norm, as ``nn.utils.clip_grad_norm_`` does for one; the norms
    [A]."""
    norms = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads.values()]).sum(0).sqrt()
    if max_norm is not None:
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads.values():
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms


def vmap_ppo_update(
    base,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    cfg,
    clip_range: float | torch.Tensor,
    beta: float,
    perms: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """K epochs of minibatch steps for A agents at once. ``batch`` tensors are [A, B, ...], ``perms`` [K, A, B]
    (each agent's minibatch order per epoch; None when a minibatch is the whole batch). Per-agent diagnostics [A]."""
    from lucidrl.algos.ppo import ppo_loss

    def loss(p, mb):
        agent = cast(ActorCritic, _Bound(base, p))  # (duck-typed: a call over obs, and .head)
        value, parts = ppo_loss(agent, mb, cfg, clip_range, None, beta)  # the reference's loss (E1-E6)
        return value, (parts["pg"], parts["v"])

    step_grads = vmap(grad(loss, has_aux=True))
    B = next(iter(batch.values())).shape[1]
    bs = min(cfg.batch_size, B)
    pg, v, norms = [], [], []
    for epoch in range(cfg.n_epochs):
        for start in range(0, B, bs):
            if perms is None:
                mb = batch
            else:
                idx = perms[epoch, :, start : start + bs]
                mb = {
                    k: torch.gather(x, 1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))
                    for k, x in batch.items()
                }
            grads, (pg_loss, v_loss) = step_grads(params, mb)
            norms.append(_clip_per_agent(grads, cfg.max_grad_norm))  # Deviation: per-agent gradient clipping
            for name, p in params.items():
                p.grad = grads[name]
            optimizer.step()
            pg.append(pg_loss.detach())
            v.append(v_loss.detach())
    return {
        "loss/policy": torch.stack(pg).mean(0),
        "loss/value": torch.stack(v).mean(0),
        "diag/grad_norm": torch.stack(norms).mean(0),
    }


@dataclass
class VmapResult:
    """What ``vmap_train`` returns: the agents' weights and their learning curves."""

    params: dict[str, torch.Tensor]
    """Stacked weights: each tensor [n_agents, ...] (``model(i)`` makes agent i a regular PPO model)."""
    seeds: list[int]
    template: Any
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """What ``vmap_train`` was given (``model(i)`` builds agent i with them)."""
    curves: list[list[tuple[int, float]]] = field(default_factory=list)
    """Per agent: (env steps of that agent, mean return of the episodes that ended in that update)."""
    env_steps: int = 0
    """Env steps taken, all agents together."""
    seconds: float = 0.0
    iteration_seconds: list[float] = field(default_factory=list)
    """Wall time of each iteration (rollout + update of every agent), the first ones with the warm-up and capture."""

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / self.seconds if self.seconds else float("nan")

    def model(self, i: int):
        """Agent i as a ``lucidrl.PPO`` (its config, its seed, its weights), to evaluate, save or train on."""
        from lucidrl.algos.ppo import PPO

        t = self.template
        m = PPO(t.env_id, verbose=0, **{**self.hyperparams, "seed": self.seeds[i]})
        m.agent.load_state_dict({k: v[i].detach().clone().to(m.device) for k, v in self.params.items()})
        return m


def vmap_train(
    env: str = "CartPole-v1",
    n_agents: int = 8,
    total_timesteps: int = 100_000,
    seed: int = 0,
    device: str = "cpu",
    **hyperparams: Any,
) -> VmapResult:
    """Train ``n_agents`` PPO agents with seeds ``seed``, ..., ``seed + n_agents - 1`` at once, each for
    ``total_timesteps`` of its own env steps. Hyperparameters: PPO's (the env's preset, then these)."""
    from lucidrl.algos.ppo import PPO
    from lucidrl.envs.torch import make_torch_vec_env

    if not isinstance(n_agents, int) or n_agents < 1:
        raise ConfigError(f"n_agents must be an integer >= 1, got {n_agents!r}")
    template = PPO(env, verbose=0, vectorization="torch", device=device, seed=seed, **hyperparams)
    cfg = template.config
    if cfg.target_kl is not None or cfg.variant != "clip" or cfg.clip_range_vf is not None:
        raise ConfigError("vmap_train runs PPO-Clip without target_kl and clip_range_vf; unset them")
    if cfg.normalize_obs or cfg.normalize_reward:
        raise ConfigError(
            "vmap_train does not normalise observations or rewards (each agent would need statistics of its own); "
            "set normalize_obs=False and normalize_reward=False"
        )
    dev, A, n, T = template.device, n_agents, cfg.n_envs, cfg.n_steps
    seeds = [seed + a for a in range(A)]
    agents = []
    for s in seeds:  # each agent initialised as PPO(seed=s) initialises its networks
        torch.manual_seed(s)
        agents.append(
            type(template.agent)(
                template.observation_space,
                template.action_space,
                cfg.net_arch,
                cfg.activation,
                shared=cfg.shared_trunk,
                ortho_init=cfg.ortho_init,
                algo="PPO",
                log_std_init=cfg.log_std_init,
            ).to(dev)
        )
    params, _ = stack_module_state(agents)
    params = {k: v.detach().clone() for k, v in params.items()}
    base = copy.deepcopy(agents[0]).to("meta")
    head = base.head
    cuda = dev.type == "cuda"  # on a GPU each iteration is one CUDA graph (see lucidrl.fast.compiled)
    lr = torch.tensor(value_at(cfg.learning_rate, 1.0), device=dev) if cuda else value_at(cfg.learning_rate, 1.0)
    optimizer = torch.optim.Adam(list(params.values()), lr=lr, eps=cfg.adam_eps, fused=cuda, capturable=cuda)
    venv = make_torch_vec_env(env, A * n, device=dev)
    # the rollout is DeviceRolloutCollector's (the same T steps on static buffers, graph-capturable), with a
    # policy step that runs each agent on its own n envs: rows are [.., A*n], agent a's envs a*n .. a*n + n - 1
    collector = DeviceRolloutCollector(venv, dev, seed=[s + i for s in seeds for i in range(n)])
    forward = vmap(lambda p, x: functional_call(base, p, (x,)))

    def step(obs, noise):
        R, d = obs.shape[0], obs.shape[1:]
        p, v = forward(params, obs.view(R // (A * n), A, n, *d).transpose(0, 1).reshape(A, R // A, *d))
        p = p.view(A, R // (A * n), n, -1).transpose(0, 1).reshape(R, -1)
        v = v.view(A, R // (A * n), n).transpose(0, 1).reshape(R)
        return (None if noise is None else head.sample(p, noise=noise)), p, v

    gen = torch.Generator(dev).manual_seed(seed)
    B = T * n
    b = collector.allocate(agents[0], T)
    fixed = {
        "clip_range": torch.zeros((), device=dev),
        "perms": torch.zeros((cfg.n_epochs, A, B), dtype=torch.long, device=dev),
    }
    shuffle = cfg.batch_size < B
    out: dict[str, torch.Tensor] = {}
    result = VmapResult(params, seeds, template, {**hyperparams, "device": device}, curves=[[] for _ in range(A)])

    def per_agent(x):  # [T, A*n, ...] -> [A, T*n, ...]
        return x.view(T, A, n, *x.shape[2:]).transpose(0, 1).reshape(A, T * n, *x.shape[2:])

    def iteration():
        """One rollout of every env of every agent, GAE, and K epochs of updates, on fixed tensors."""
        with torch.no_grad():
            collector.run(agents[0], step, b, T)  # 1. T steps (agents[0].head: the log-probabilities)
            adv, ret = gae(b["rewards"], b["values"], b["next_values"], b["terminated"], b["truncated"], cfg.gamma,
                           cfg.gae_lambda)  # 2.  # fmt: skip
            batch = {
                "obs": b["obs"],
                "actions": b["actions"],
                "logprob_old": b["logprob"],
                "values_old": b["values"],
                "params_old": b["params"],
                "advantages": adv,
                "returns": ret,
            }
            batch = {k: per_agent(v) for k, v in batch.items()}
        vmap_ppo_update(
            base,
            params,
            optimizer,
            batch,
            cfg,
            fixed["clip_range"],
            0.0,  # 3. K epochs, every agent
            fixed["perms"] if shuffle else None,
        )
        # 4. the returns of the episodes that ended (NaN elsewhere)
        out["returns"] = per_agent(torch.where(b["terminated"] | b["truncated"], b["ep_return"], torch.nan))

    graph, warm = None, False
    steps, t0 = 0, time.perf_counter()
    t_last = t0
    with hold_matmul_precision(cfg.matmul_precision, dev):  # (as learn(): tf32 on a GPU by default)
        while steps < total_timesteps:
            progress = max(0.0, 1.0 - (steps + T * n) / total_timesteps)  # (after this rollout, as learn())
            for g in optimizer.param_groups:
                g["lr"].fill_(value_at(cfg.learning_rate, progress)) if cuda else g.__setitem__(
                    "lr", value_at(cfg.learning_rate, progress)
                )
            fixed["clip_range"].fill_(value_at(cfg.clip_range, progress))
            b["noise"].copy_(head.noise((T, A * n), gen, dev))
            if shuffle:
                fixed["perms"].copy_(torch.rand((cfg.n_epochs, A, B), generator=gen, device=dev).argsort(-1))
            if not cuda:
                iteration()
            elif not warm:  # the first iteration runs eagerly (on a side stream, as a capture needs), the rest replay
                side = torch.cuda.Stream(dev)
                side.wait_stream(torch.cuda.current_stream(dev))
                with torch.cuda.stream(side):
                    iteration()
                torch.cuda.current_stream(dev).wait_stream(side)
                warm = True
            else:
                if graph is None:
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        iteration()
                graph.replay()
            steps += T * n
            result.env_steps += T * n * A
            rets = out["returns"]
            counts = (~rets.isnan()).sum(1)
            means = (rets.nan_to_num(0.0).sum(1) / counts.clamp(min=1)).tolist()
            for a, (c, m) in enumerate(zip(counts.tolist(), means)):
                if c:
                    result.curves[a].append((steps, m))
            now = time.perf_counter()  # (after the host read above: the iteration has finished on the device)
            result.iteration_seconds.append(now - t_last)
            t_last = now
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    result.seconds = time.perf_counter() - t0
    return result
