"""Does ``torch.compile`` pay for PPO's gradient step on CartPole? (issue 6: "torch.compile where it pays")

Times one PPO-Clip gradient step on the zoo's CartPole-v1 preset (a 256-sample minibatch, two
64x64 tanh MLPs) three ways, in microseconds per step after a warm-up:

* ``eager``: ``ActorCritic`` forward, ``clipped_surrogate`` + ``value_loss``, ``backward()``,
  ``clip_grad_norm_``, ``torch.optim.Adam.step()``: the textbook autograd step;
* ``compiled``: the same with the loss function (forward and loss) wrapped in ``torch.compile``
  (inductor; on the CPU it generates and builds C++ with the system compiler), plus the
  one-time compile cost in seconds;
* ``lucidrl``: the step ``ppo_update`` takes on this preset (the gradient written out in NumPy,
  ``PackedActorCritic.policy_value_backward_numpy``, then the clip and the Adam step).

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
    from lucidrl.algos.ppo import clipped_surrogate, clipped_surrogate_grad_numpy, value_loss
    from lucidrl.optim import clip_grad_norm, optimizer_step

    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0)
    model.learn(2048)  # a policy that has moved off its initialisation
    rollout = model._rollout_collector().collect(model._net, model.config.n_steps)
    adv, ret = gae(rollout.rewards, rollout.values_old, rollout.next_values, rollout.terminated, rollout.truncated,
                   model.config.gamma, model.config.gae_lambda)
    batch = rollout.flat(advantages=adv, returns=ret)
    adv = normalize(batch["advantages"])

    agent = copy.deepcopy(model.agent)
    opt = torch.optim.Adam(agent.parameters(), lr=1e-3, eps=1e-5)

    def loss_fn(obs, actions, logprob_old, advantages, returns):
        params, values = agent(obs)
        pg, _ = clipped_surrogate(agent.head.log_prob(params, actions), logprob_old, advantages, 0.2)
        return pg + 0.5 * value_loss(values, None, returns, None)

    def autograd_step(fn):
        opt.zero_grad(set_to_none=False)
        fn(batch["obs"], batch["actions"], batch["logprob_old"], adv, batch["returns"]).backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
        opt.step()

    net = model._net
    np_in = [t.numpy() for t in (batch["obs"], batch["actions"], batch["returns"], batch["logprob_old"], adv)]

    def lucidrl_step():
        obs, actions, returns, lp_old, a = np_in
        with net.numpy_update(obs.shape[0]):
            net.policy_value_backward_numpy(obs, actions, lambda lp: clipped_surrogate_grad_numpy(lp, lp_old, a, 0.2),
                                            returns, 0.5)
        clip_grad_norm([net.flat], 0.5)
        optimizer_step(model.optimizer)

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
    ours = per_step_us(lucidrl_step)
    n = 7820
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.iters} steps each")
    print(f"eager autograd step: {eager:8.1f} us   ({n} steps: {eager * n / 1e6:.2f} s)")
    print(f"torch.compile step:  {compiled:8.1f} us   ({n} steps: {compiled * n / 1e6:.2f} s) "
          f"+ {compile_s:.1f} s to compile")
    print(f"lucidrl's step:      {ours:8.1f} us   ({n} steps: {ours * n / 1e6:.2f} s)")


if __name__ == "__main__":
    main()
