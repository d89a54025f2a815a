"""A2C: n-step return targets by hand, the lean RMSprop against torch's, the packed actor-critic against
the plain one, and one whole update against Stable-Baselines3's A2C.train on the same data."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from lucidrl.advantages import gae
from lucidrl.algos.a2c import A2C, a2c_loss, a2c_update
from lucidrl.networks import ActorCritic
from lucidrl.optim import RMSprop, flat_parameters
from lucidrl.packed import PackedActorCritic
from lucidrl.rollout import Rollout


# --------------------------------------------------------------------------- n-step returns (E1, E2)
def test_gae_lambda_one_gives_the_papers_n_step_returns_by_hand():
    # two envs, T = 3 steps. env 0: no episode end, bootstraps from V(s_3) at the rollout end.
    # env 1: terminates after step 0 (no bootstrap), then a new episode that is truncated after
    # step 1 (bootstraps from V(final obs) = 7), then one more step cut by the rollout end.
    g = 0.9
    r = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    v = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    v_last = torch.tensor([10.0, 20.0])  # V(s_3)
    v_final = 7.0  # V(final observation of env 1's truncated episode)
    nv = torch.cat([v[1:], v_last[None]])
    nv[1, 1] = v_final
    nv[0, 1] = 99.0  # after a termination: masked, never used
    term = torch.tensor([[False, True], [False, False], [False, False]])
    trunc = torch.tensor([[False, False], [False, True], [False, False]])
    adv, ret = gae(r, v, nv, term, trunc, g, 1.0)
    # env 0: k = 3, 2, 1 steps of real reward, then γ^k V(s_3)      (E1, forward view)
    expected_0 = [1 + g * 3 + g**2 * 5 + g**3 * 10, 3 + g * 5 + g**2 * 10, 5 + g * 10]
    # env 1: R_0 = r_0 (terminal), R_1 = r_1 + γ V(final obs) (time limit), R_2 = r_2 + γ V(s_3)
    expected_1 = [2.0, 4 + g * v_final, 6 + g * 20]
    torch.testing.assert_close(ret, torch.tensor([expected_0, expected_1]).T)
    torch.testing.assert_close(adv, ret - v)  # (E2) A_t = R_t - V(s_t)


def test_a2c_loss_is_sb3s_loss_and_its_gradients():
    torch.manual_seed(0)
    logprob, values = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    entropy = torch.rand(6, requires_grad=True)
    adv, ret = torch.randn(6), torch.randn(6)
    loss, pl, vl = a2c_loss(logprob, values, adv, ret, vf_coef=0.5, entropy=entropy, ent_coef=0.01)
    torch.testing.assert_close(loss, -(adv * logprob).mean() + 0.5 * ((values - ret) ** 2).mean() - 0.01 * entropy.mean())
    loss.backward()
    torch.testing.assert_close(logprob.grad, -adv / 6)  # the policy-gradient weights
    torch.testing.assert_close(values.grad, 0.5 * 2 * (values - ret).detach() / 6)
    torch.testing.assert_close(entropy.grad, torch.full((6,), -0.01 / 6))


# --------------------------------------------------------------------------- RMSprop (E5)
@pytest.mark.parametrize("flat", [True, False])
def test_lean_rmsprop_follows_torch_rmsprop_exactly(flat):
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    b = copy.deepcopy(a)
    pa = [flat_parameters(a)] if flat else list(a.parameters())
    pb = [flat_parameters(b)] if flat else list(b.parameters())
    oa = RMSprop(pa, lr=7e-3, alpha=0.99, eps=1e-5)
    ob = torch.optim.RMSprop(pb, lr=7e-3, alpha=0.99, eps=1e-5)
    for i in range(300):
        x = torch.randn(11, 5)
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad(set_to_none=False)
            m(x).pow(2).sum().backward()
            o.step()
        if i == 100:
            oa.load_state_dict(oa.state_dict())  # a checkpoint reload in the middle
        if i == 200:
            for group in oa.param_groups + ob.param_groups:
                group["lr"] = 1e-3  # a schedule changes the learning rate between steps
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)  # the same ops in the same order: bitwise equal
    sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
    assert float(sa[0]["step"]) == float(sb[0]["step"]) == 300.0
    assert all(torch.equal(sa[k]["square_avg"], sb[k]["square_avg"]) for k in sb)


def test_lean_rmsprop_falls_back_for_options_it_does_not_cover():
    p = torch.nn.Parameter(torch.ones(3))
    q = torch.nn.Parameter(torch.ones(3))
    oa = RMSprop([p], lr=0.1, momentum=0.9, centered=True)
    ob = torch.optim.RMSprop([q], lr=0.1, momentum=0.9, centered=True)
    for _ in range(5):
        for x, o in ((p, oa), (q, ob)):
            x.grad = torch.tensor([1.0, -2.0, 3.0])
            o.step()
    assert torch.equal(p, q)


# --------------------------------------------------------------------------- the packed actor-critic
@pytest.mark.parametrize("net_arch, activation", [([64, 64], "tanh"), ([32], "relu"), ([16, 8, 8], "tanh")])
def test_packed_actor_critic_equals_actor_critic_in_value_and_gradient(net_arch, activation):
    torch.manual_seed(0)
    a = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3), net_arch, activation)
    b = copy.deepcopy(a)
    packed, flat_b = PackedActorCritic(a), flat_parameters(b)
    assert packed.packed
    x = torch.randn(40, 4)
    p1, v1 = packed(x)
    p2, v2 = b(x)
    torch.testing.assert_close(p1, p2, atol=1e-6, rtol=1e-5)  # tanh through the sigmoid: ~1e-7 off
    torch.testing.assert_close(v1, v2, atol=1e-6, rtol=1e-5)
    (p1.pow(2).sum() + v1.pow(3).sum()).backward()
    (p2.pow(2).sum() + v2.pow(3).sum()).backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):  # the module's grads are views of flat.grad
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(packed.flat.grad.sum(), flat_b.grad.sum(), atol=1e-4, rtol=1e-5)
    # acting: the same function, exactly (torch.tanh), and the weights are views (no copies to refresh)
    pa, va = packed.acting_forward()(x[:8])
    torch.testing.assert_close(pa, p2[:8].detach(), atol=1e-6, rtol=1e-6)
    with torch.no_grad():
        packed.flat.add_(0.1)
        torch.testing.assert_close(packed.acting_forward()(x[:8])[0], a.policy_params(x[:8]))
    # the module still has its parameters by name, now views of the packed storage
    assert set(a.state_dict()) == set(b.state_dict())


def test_packed_falls_back_for_a_shared_trunk():
    agent = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), [16], shared=True)
    packed = PackedActorCritic(agent)
    assert not packed.packed and packed.flat.numel() == sum(p.numel() for p in agent.parameters())
    x = torch.randn(5, 4)
    torch.testing.assert_close(packed(x)[0], agent(x)[0])


# --------------------------------------------------------------------------- one update against SB3
def _sb3_a2c_and_ours(seed=0):
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    env = gym.make_vec("CartPole-v1", 8, vectorization_mode="sync")
    ours = A2C(env, preset=False, n_envs=8, seed=seed, verbose=0)
    theirs = sb3.A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=seed), seed=seed, device="cpu")
    theirs.set_logger(configure(None, []))
    pol = theirs.policy
    pairs = [(ours.agent.actor[0], pol.mlp_extractor.policy_net[0]), (ours.agent.actor[2], pol.mlp_extractor.policy_net[2]),
             (ours.agent.actor[4], pol.action_net), (ours.agent.critic[0], pol.mlp_extractor.value_net[0]),
             (ours.agent.critic[2], pol.mlp_extractor.value_net[2]), (ours.agent.critic[4], pol.value_net)]
    with torch.no_grad():
        for mine, sb3_layer in pairs:
            sb3_layer.weight.copy_(mine.weight)
            sb3_layer.bias.copy_(mine.bias)
    return ours, theirs, pairs


def test_one_update_equals_sb3_a2c_train_on_the_same_rollout():
    ours, theirs, pairs = _sb3_a2c_and_ours()
    g = np.random.default_rng(0)
    T, N = 5, 8
    for update in range(3):  # three updates: RMSprop's running average matters from the second on
        obs = g.normal(size=(T, N, 4)).astype(np.float32)
        actions = g.integers(0, 2, size=(T, N))
        rewards = np.ones((T, N), np.float32)
        values = g.normal(size=(T, N)).astype(np.float32)
        last_values = g.normal(size=N).astype(np.float32)
        terminated = np.zeros((T, N), bool)
        terminated[2, 3] = terminated[4, 5] = True  # a termination inside the rollout and one at its end
        # SB3's buffer: episode_starts[t] says s_t began an episode (the previous step ended one)
        buf = theirs.rollout_buffer
        buf.reset()
        for t in range(T):
            starts = terminated[t - 1] if t > 0 else np.zeros(N, bool)
            buf.add(obs[t], actions[t][:, None], rewards[t], starts, torch.as_tensor(values[t]), torch.zeros(N))
        buf.compute_returns_and_advantage(torch.as_tensor(last_values), terminated[-1])
        sb3_advantages = buf.advantages.copy()  # [T, N]; train() reorders the buffer
        theirs.train()
        # ours: the same transitions as a Rollout
        vt = torch.as_tensor(values)
        r = Rollout(obs=torch.as_tensor(obs), actions=torch.as_tensor(actions), rewards=torch.as_tensor(rewards),
                    terminated=torch.as_tensor(terminated), truncated=torch.zeros(T, N, dtype=torch.bool),
                    values_old=vt, next_values=torch.cat([vt[1:], torch.as_tensor(last_values)[None]]),
                    logprob_old=torch.zeros(T, N), params_old=torch.zeros(T, N, 2), valid=None)
        adv, ret = gae(r.rewards, r.values_old, r.next_values, r.terminated, r.truncated, 0.99, 1.0)
        np.testing.assert_allclose(adv.numpy(), sb3_advantages, rtol=1e-5, atol=1e-5)
        a2c_update(ours._net, ours.optimizer, ours._params, r.flat(advantages=adv, returns=ret), ours.config)
        for mine, sb3_layer in pairs:
            torch.testing.assert_close(mine.weight, sb3_layer.weight, atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(mine.bias, sb3_layer.bias, atol=2e-5, rtol=1e-4)
    assert isinstance(theirs.policy.optimizer, torch.optim.RMSprop)
    assert theirs.policy.optimizer.defaults["eps"] == ours.optimizer.defaults["eps"] == 1e-5
