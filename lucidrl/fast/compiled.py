"""``compile=True``: the reference updates of PPO and A2C, compiled, and on a GPU captured as CUDA graphs.

Nothing is rewritten here: every gradient step calls the algorithm file's own loss
(``lucidrl.algos.ppo.ppo_loss``, ``lucidrl.algos.a2c.a2c_loss``), autograd computes its gradient and
``torch.optim.Adam`` (or RMSprop) steps. What changes is how the steps run:

* the loss is ``torch.compile``d (inductor fuses its elementwise ops; ``dynamic=False``: the shapes
  of a run's minibatches are fixed);
* on a CUDA device the whole update (every epoch and minibatch: gather, loss, backward, gradient
  clipping, the optimiser's step) is recorded once as one CUDA graph and replayed for each update
  (``torch.cuda.CUDAGraph``). A graph replays fixed memory, so what changes between updates lives in
  device tensors that are filled before each replay: the minibatch order (drawn from the model's
  generator exactly as ``lucidrl.rollout.minibatches`` draws it), the learning rate (the optimiser
  is made ``capturable``, with its ``lr`` a tensor), the clip range and β; the diagnostics are summed
  in device tensors and read once per update.

``tests/math/test_compiled.py`` checks one and three updates against the reference update.
What cannot be captured is refused with its reason (``target_kl`` needs a host decision after every
minibatch).
"""

from __future__ import annotations

import torch
from torch import nn

from lucidrl import backends
from lucidrl.advantages import explained_variance, normalize
from lucidrl.algos.a2c import a2c_loss
from lucidrl.algos.ppo import ppo_loss


def _compiled(fn, enabled: bool):
    return torch.compile(fn, dynamic=False) if enabled else fn


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Let the optimiser's step be captured in a CUDA graph: its step counts and ``lr`` become device tensors
    (the same arithmetic; ``lucidrl.agent.set_learning_rate`` then fills ``lr`` in place)."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not torch.is_tensor(group["lr"]):
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
    for state in optimizer.state.values():
        if "step" in state and torch.is_tensor(state["step"]):
            state["step"] = state["step"].to(device=device, dtype=torch.float32)


class _Graphed:
    """Runs ``body()`` eagerly, or records it once as a CUDA graph and replays it.

    A capture needs one warm-up run first (allocations, cuBLAS workspaces, compiled kernels). For an
    update that run is a real optimiser step, so the weights and the optimiser's state are saved
    before it and put back after (in place: the graph reads these very tensors); optimiser state
    that the warm-up created is zeroed, which is the state Adam and RMSprop start from."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.key = None

    def run(self, key, body, params=(), optimizer: torch.optim.Optimizer | None = None) -> None:
        if not self.cuda:
            body()
            return
        if self.graph is None or self.key != key:
            saved = [p.detach().clone() for p in params]
            state = (
                {}
                if optimizer is None
                else {
                    id(p): {k: v.clone() for k, v in optimizer.state[p].items() if torch.is_tensor(v)}
                    for p in params
                    if p in optimizer.state
                }
            )
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                body()
            torch.cuda.current_stream(self.device).wait_stream(side)
            with torch.no_grad():
                for p, x in zip(params, saved):
                    p.copy_(x)
                for p in params if optimizer is not None else ():
                    assert optimizer is not None
                    for k, v in optimizer.state.get(p, {}).items():
                        if torch.is_tensor(v):
                            v.copy_(state[id(p)][k]) if id(p) in state else v.zero_()
            self.graph, self.key = torch.cuda.CUDAGraph(), key
            with torch.cuda.graph(self.graph):
                body()
        self.graph.replay()


def _static(store: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` copied into fixed tensors (made on first use): what a captured graph reads on every replay."""
    for k, v in batch.items():
        if k not in store or store[k].shape != v.shape or store[k].dtype != v.dtype:
            store[k] = torch.empty_like(v)
        store[k].copy_(v)
    return {k: store[k] for k in batch}


# --------------------------------------------------------------------------- PPO
class CompiledPPOUpdate:
    """``lucidrl.algos.ppo.ppo_update``'s signature and results; see the module docstring."""

    def __init__(self, model):
        self.device = model.device
        self.loss = _compiled(ppo_loss, compile_loss(model))
        self.graphed = _Graphed(self.device)
        self.static: dict[str, torch.Tensor] = {}
        self.batch: dict[str, torch.Tensor] = {}

    def _tensor(self, name: str, value: float) -> torch.Tensor:
        t = self.static.get(name)
        if t is None:
            t = self.static[name] = torch.zeros((), dtype=torch.float32, device=self.device)
        t.fill_(value)
        return t

    def __call__(
        self,
        agent,
        optimizer,
        batch: dict[str, torch.Tensor],
        cfg,
        clip_range: float,
        clip_range_vf: float | None,
        beta: float,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        if self.graphed.cuda:
            batch = _static(self.batch, batch)
        n = next(iter(batch.values())).shape[0]
        E, bs = cfg.n_epochs, cfg.batch_size
        shuffle = bs < n
        if "order" not in self.static or self.static["order"].shape != (E, n):
            self.static["order"] = torch.empty((E, n), dtype=torch.long, device=self.device)
        order = self.static["order"]
        if shuffle:  # the same draws as lucidrl.rollout.minibatches
            for e in range(E):
                order[e].copy_(torch.randperm(n, device=self.device, generator=generator))
        clip_t = self._tensor("clip_range", clip_range)
        clip_vf_t = None if clip_range_vf is None else self._tensor("clip_range_vf", clip_range_vf)
        beta_t = self._tensor("beta", beta)
        if self.graphed.cuda:
            make_capturable(optimizer, self.device)
        params = list(agent.parameters())
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else float("inf")
        sums = self.static.setdefault("sums", torch.zeros(8, dtype=torch.float64, device=self.device))
        steps = E * ((n + bs - 1) // bs if shuffle else 1)

        def body():
            sums.zero_()
            for e in range(E):
                for start in range(0, n, bs) if shuffle else (0,):
                    mb = batch if not shuffle else {k: v[order[e, start : start + bs]] for k, v in batch.items()}
                    loss, parts = self.loss(agent, mb, cfg, clip_t, clip_vf_t, beta_t)
                    optimizer.zero_grad(set_to_none=False)
                    loss.backward()
                    grad_norm = nn.utils.clip_grad_norm_(params, max_norm, foreach=True)  # Deviation (as the reference)
                    optimizer.step()
                    ratio = parts["ratio"]
                    zero = ratio.new_zeros(())
                    sums.add_(
                        torch.stack(
                            [
                                x.double()
                                for x in (
                                    (ratio - ratio.log()).sum() - ratio.numel(),  # approx KL, summed over samples
                                    ((ratio - 1.0).abs() > clip_t).sum(),
                                    agent.head.entropy(parts["params"].detach()).sum(),
                                    parts["pg"].detach(),
                                    parts["v"].detach(),
                                    grad_norm,
                                    parts["kl"].detach() if "kl" in parts else zero,
                                    zero + ratio.numel(),
                                )
                            ]
                        )
                    )

        for p in params:  # gradients exist before a capture, and zero_grad keeps them (fixed memory)
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.graphed.run((n, E, bs, id(agent), id(optimizer)), body, params, optimizer)
        s = sums.tolist()  # the one host read of the update
        count = s[7]
        out = {"train/epochs": E, "train/gradient_steps": steps, "diag/approx_kl": s[0] / count}
        if cfg.variant == "clip":
            out["diag/clip_fraction"] = s[1] / count
        out.update(
            {
                "diag/entropy": s[2] / count,
                "loss/policy": s[3] / steps,
                "loss/value": s[4] / steps,
                "diag/grad_norm": s[5] / steps,
            }
        )
        if cfg.variant != "clip":
            out["diag/kl"] = s[6] / steps
        out["loss/entropy"] = -out["diag/entropy"]
        return out


def ppo_unsupported(model) -> str | None:
    if model.config.target_kl is not None:
        return "target_kl (stopping the epochs early needs a host decision after every minibatch)"
    return None


# --------------------------------------------------------------------------- A2C
class CompiledA2CUpdate:
    """``lucidrl.algos.a2c.a2c_update``'s signature and results: one gradient step on the whole batch."""

    def __init__(self, model):
        self.device = model.device
        self.graphed = _Graphed(self.device)
        self.out: dict[str, torch.Tensor] = {}
        self.batch: dict[str, torch.Tensor] = {}

        def loss_fn(agent, batch, cfg):
            head = agent.head
            adv = normalize(batch["advantages"]) if cfg.normalize_advantage else batch["advantages"]  # Deviation
            dist_params, values = agent(batch["obs"])
            entropy = head.entropy(dist_params)
            loss, pg, v = a2c_loss(
                head.log_prob(dist_params, batch["actions"]),
                values,
                adv,
                batch["returns"],
                cfg.vf_coef,
                entropy,
                cfg.ent_coef,
            )
            return loss, pg, v, entropy.mean()

        self.loss = _compiled(loss_fn, compile_loss(model))

    def __call__(self, agent, optimizer, batch: dict[str, torch.Tensor], cfg) -> dict[str, float]:
        if self.graphed.cuda:
            make_capturable(optimizer, self.device)
            batch = _static(self.batch, batch)
        params = list(agent.parameters())
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else float("inf")
        out = self.out

        def body():
            loss, pg, v, ent = self.loss(agent, batch, cfg)
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            out["grad_norm"] = nn.utils.clip_grad_norm_(params, max_norm, foreach=True)  # Deviation (as the reference)
            optimizer.step()
            out["stats"] = torch.stack([pg.detach(), v.detach(), ent.detach(), out["grad_norm"]])

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.graphed.run((batch["obs"].shape, id(agent), id(optimizer)), body, params, optimizer)
        pg, v, ent, grad_norm = out["stats"].tolist()
        return {
            "loss/policy": pg,
            "loss/value": v,
            "loss/entropy": -ent,
            "diag/entropy": ent,
            "diag/grad_norm": grad_norm,
            "diag/explained_variance": explained_variance(batch["values_old"], batch["returns"]),
        }


# --------------------------------------------------------------------------- GAE
class GraphedGAE:
    """``lucidrl.advantages.gae`` recorded as one CUDA graph (its T-step recursion is ~2T small kernels)."""

    def __init__(self, model, reference):
        self.reference = reference
        self.graphed = _Graphed(model.device)
        self.out: tuple | None = None
        self.inputs: tuple | None = None

    def __call__(self, rewards, values, next_values, terminated, truncated, gamma: float, gae_lambda: float):
        if not self.graphed.cuda:
            return self.reference(rewards, values, next_values, terminated, truncated, gamma, gae_lambda)
        args = (rewards, values, next_values, terminated, truncated)
        if self.inputs is None or any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(args, self.inputs)):
            self.inputs = tuple(a.clone() for a in args)  # the graph's own inputs
            self.graphed.graph = None
        for dst, src in zip(self.inputs, args):
            dst.copy_(src)

        inputs = self.inputs

        def body():
            self.out = self.reference(*inputs, gamma, gae_lambda)

        self.graphed.run((gamma, gae_lambda), body)
        assert self.out is not None
        return self.out[0].clone(), self.out[1].clone()


# --------------------------------------------------------------------------- registration
def compile_loss(model) -> bool:
    """torch.compile the loss (inductor: on CUDA, and on the CPU with a C++ compiler);
    see ``backends.inductor_enabled``."""
    return backends.inductor_enabled(model.config)


def no_reason(model) -> str | None:
    return None


backends.register_compiled("ppo", lambda model, reference: CompiledPPOUpdate(model), ppo_unsupported)
backends.register_compiled("a2c", lambda model, reference: CompiledA2CUpdate(model), no_reason)
backends.register_compiled("gae", lambda model, reference: GraphedGAE(model, reference), no_reason)
