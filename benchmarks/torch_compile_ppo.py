"""Does ``torch.compile`` pay for PPO's gradient step on CartPole? (issue 6: "torch.compile where it pays")

Times one PPO-Clip gradient step on the zoo's CartPole-v1 preset (a 256-sample minibatch, two
64x64 tanh MLPs) three ways, in microseconds per step after a warm-up:

* ``eager``: ``ActorCritic`` forward, ``clipped_surrogate`` + ``value_loss``, ``backward()``,
  ``clip_grad_norm_``, ``torch.optim.Adam.step()``: the textbook autograd step;
* ``compiled``: the same with the loss function (forward and loss) wrapped in ``torch.compile``
  (inductor; on the CPU it generates and builds C++ with the system compiler), plus the
  one-time compile cost in seconds;
* ``fast``: the fast backend's step (``lucidrl.fast.actor_critic.ppo_update``, one epoch: the gradient
  written out in NumPy on the MLP core, then the clip and the fused Adam step on the flat weights).

``eager`` is what ``backend="reference"`` runs (``lucidrl.algos.ppo.ppo_update``), ``fast`` what
``backend="auto"`` runs on this preset.

A 100k-step run takes 7,820 such steps, so the compile cost is weighed against a whole run.
One torch thread (``--threads`` to change); run nothing else heavy meanwhile.

    python benchmarks/torch_compile_ppo.py [--iters 1000]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import lucidrl
    from lucidrl.advantages import gae, normalize
    from lucidrl.algos.ppo import clipped_surrogate, value_loss
    from lucidrl.fast.actor_critic import ppo_update as fast_ppo_update

    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0)
    model.learn(2048)  # a policy that has moved off its initialisation
    rollout = model._rollout_collector().collect(model.agent, model.config.n_steps)
    adv, ret = gae(
        rollout.rewards,
        rollout.values_old,
        rollout.next_values,
        rollout.terminated,
        rollout.truncated,
        model.config.gamma,
        model.config.gae_lambda,
    )
    batch = rollout.flat(advantages=adv, returns=ret)
    adv = normalize(batch["advantages"])

    agent = copy.deepcopy(model.agent)
    opt = torch.optim.Adam(agent.parameters(), lr=1e-3, eps=1e-5, fused=True)  # as the reference's

    def loss_fn(obs, actions, logprob_old, advantages, returns):
        params, values = agent(obs)
        pg, _ = clipped_surrogate(agent.head.log_prob(params, actions), logprob_old, advantages, 0.2)
        return pg + 0.5 * value_loss(values, None, returns, None)

    def autograd_step(fn):
        opt.zero_grad()
        fn(batch["obs"], batch["actions"], batch["logprob_old"], adv, batch["returns"]).backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
        opt.step()

    fast_agent, fast_opt = copy.deepcopy(model.agent), None
    fast_opt = torch.optim.Adam(fast_agent.parameters(), lr=1e-3, eps=1e-5, fused=True)
    one_step = copy.copy(model.config)
    one_step.n_epochs = 1  # the preset's batch is one minibatch: one epoch is one gradient step

    def fast_step():
        fast_ppo_update(fast_agent, fast_opt, batch, one_step, 0.2, None, 1.0)

    def per_step_us(step) -> float:
        for _ in range(50):
            step()
        start = time.perf_counter()
        for _ in range(args.iters):
            step()
        return (time.perf_counter() - start) / args.iters * 1e6

    eager = per_step_us(lambda: autograd_step(loss_fn))
    start = time.perf_counter()
    compiled_fn = torch.compile(loss_fn)
    autograd_step(compiled_fn)
    compile_s = time.perf_counter() - start
    compiled = per_step_us(lambda: autograd_step(compiled_fn))
    ours = per_step_us(fast_step)
    n = 7820
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.iters} steps each")
    print(f"eager autograd step: {eager:8.1f} us   ({n} steps: {eager * n / 1e6:.2f} s)")
    print(
        f"torch.compile step:  {compiled:8.1f} us   ({n} steps: {compiled * n / 1e6:.2f} s) "
        f"+ {compile_s:.1f} s to compile"
    )
    print(f"fast backend step:   {ours:8.1f} us   ({n} steps: {ours * n / 1e6:.2f} s; includes its diagnostics)")


if __name__ == "__main__":
    main()
