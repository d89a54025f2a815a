"""One update of a lucidrl model and of its Stable-Baselines3 (or sb3-contrib) twin on the same rollout.

``test_ppo_math.py``, ``test_trpo_math.py`` and ``test_a2c_math.py`` check that the reference update equals
SB3's ``train()``: both models get the same weights (SB3's 64x64 ``MlpPolicy`` has the same layers as lucidrl's
actor and critic, ``give_twin_our_weights``); for PPO and TRPO, ``train_twin_on_one_rollout`` writes the same random
rollout, with terminations inside and at its end, into SB3's rollout buffer and into a lucidrl ``Rollout``, lets SB3
compute its advantages and train, and returns lucidrl's batch; the test runs lucidrl's update on it and compares the
weights with ``assert_same_weights``.
"""

from __future__ import annotations

import numpy as np
import torch


def layer_pairs(ours, theirs) -> list[tuple[torch.nn.Linear, torch.nn.Linear]]:
    """(lucidrl layer, SB3 layer) for the actor's and the critic's three linear layers."""
    pol, actor, critic = theirs.policy, ours.agent.actor, ours.agent.critic
    return [(actor[0], pol.mlp_extractor.policy_net[0]), (actor[2], pol.mlp_extractor.policy_net[2]),
            (actor[4], pol.action_net), (critic[0], pol.mlp_extractor.value_net[0]),
            (critic[2], pol.mlp_extractor.value_net[2]), (critic[4], pol.value_net)]  # fmt: skip


def give_twin_our_weights(ours, theirs) -> None:
    """Copy the weights of ``ours`` into ``theirs`` (SB3's policy), log σ too for a Gaussian policy."""
    with torch.no_grad():
        for mine, twin in layer_pairs(ours, theirs):
            twin.weight.copy_(mine.weight)
            twin.bias.copy_(mine.bias)
        if hasattr(theirs.policy, "log_std"):
            theirs.policy.log_std.copy_(ours.agent.actor[5].log_std)


def train_twin_on_one_rollout(ours, theirs, env, T: int, N: int, gamma: float, gae_lambda: float, lr: float):
    """Give ``theirs`` the weights of ``ours`` (log σ too) and a fresh Adam, run ``theirs.train()`` on a random
    rollout of T steps x N envs, and return lucidrl's flat batch of that rollout (GAE advantages and returns)."""
    from stable_baselines3.common.logger import configure

    from lucidrl.advantages import gae
    from lucidrl.rollout import Rollout

    theirs.set_logger(configure(None, []))
    pol, gauss = theirs.policy, hasattr(theirs.policy, "log_std")
    give_twin_our_weights(ours, theirs)
    pol.optimizer = torch.optim.Adam(pol.parameters(), lr=lr, eps=1e-5)  # lucidrl's is fresh too
    g = np.random.default_rng(0)
    obs = torch.as_tensor(g.normal(size=(T, N, env.single_observation_space.shape[0])).astype(np.float32))
    with torch.no_grad():
        params, values = ours.agent(obs)
        actions = ours.agent.head.sample(params, torch.Generator().manual_seed(1))
        logp = ours.agent.head.log_prob(params, actions)
    rewards = torch.as_tensor(g.normal(size=(T, N)).astype(np.float32))
    last_values = torch.as_tensor(g.normal(size=N).astype(np.float32))
    terminated = torch.zeros(T, N, dtype=torch.bool)
    terminated[5, 1] = terminated[T - 1, 2] = True
    buf = theirs.rollout_buffer
    buf.reset()
    for t in range(T):  # SB3's episode_starts[t]: the step before ended an episode
        starts = terminated[t - 1].numpy() if t > 0 else np.zeros(N, bool)
        buf.add(obs[t].numpy(), actions[t].numpy() if gauss else actions[t].numpy()[:, None], rewards[t].numpy(),
                starts, values[t], logp[t])  # fmt: skip
    buf.compute_returns_and_advantage(last_values, terminated[-1].numpy())
    theirs._current_progress_remaining = 1.0
    theirs.train()
    next_values = torch.cat([values[1:], last_values[None]])
    r = Rollout(obs=obs, actions=actions, rewards=rewards, terminated=terminated,
                truncated=torch.zeros_like(terminated), values_old=values, next_values=next_values,
                logprob_old=logp, params_old=params, valid=None)  # fmt: skip
    adv, ret = gae(r.rewards, r.values_old, r.next_values, r.terminated, r.truncated, gamma, gae_lambda)
    return r.flat(advantages=adv, returns=ret)


def assert_same_weights(ours, theirs, atol: float, rtol: float = 0.0) -> None:
    for mine, twin in layer_pairs(ours, theirs):
        torch.testing.assert_close(mine.weight, twin.weight, atol=atol, rtol=rtol)
        torch.testing.assert_close(mine.bias, twin.bias, atol=atol, rtol=rtol)
    if hasattr(theirs.policy, "log_std"):
        torch.testing.assert_close(ours.agent.actor[5].log_std, theirs.policy.log_std, atol=atol, rtol=rtol)
