"""Speed paths compute the same function as the plain autograd path (lucidrl.packed, lucidrl.rollout).

* ``PackedActorCritic.policy_value_backward`` with PPO's clipped surrogate and with A2C's policy
  term: loss and gradient against ``ActorCritic`` + the algorithm's own loss + ``backward()``;
* ``PackedActorCritic.policy_value_backward_numpy`` (A2C's small batches) the same way;
* ``PackedActorCritic.numpy_policy``: logits and values in NumPy against ``forward``;
* the collector's NumPy acting path: stored actions, π_old's log-probabilities, values and
  bootstraps against the agent's own forward, and reproducibility from the model's generator;
* ``clip_grad_norm`` on one flat tensor against torch's.
"""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from lucidrl.algos.a2c import a2c_loss, a2c_policy_term
from lucidrl.algos.ppo import clipped_surrogate, clipped_surrogate_grad, value_loss
from lucidrl.networks import ActorCritic
from lucidrl.optim import clip_grad_norm, flat_parameters
from lucidrl.packed import PackedActorCritic
from lucidrl.rollout import RolloutCollector

ARCHS = [([64, 64], "tanh"), ([32], "relu"), ([16, 8, 8], "tanh")]


def _pair(net_arch, activation, n_actions=3, seed=0):
    torch.manual_seed(seed)
    a = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(n_actions), net_arch, activation)
    b = copy.deepcopy(a)
    packed, flat_b = PackedActorCritic(a), flat_parameters(b)
    assert packed.packed
    return a, packed, b, flat_b


def _assert_same_grads(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=2e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("net_arch, activation", ARCHS)
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
def test_ppo_loss_gradient_without_autograd_equals_autograd(net_arch, activation, ent_coef):
    a, packed, b, flat_b = _pair(net_arch, activation)
    g = torch.Generator().manual_seed(1)
    n = 64
    obs, actions = torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)
    adv, returns = torch.randn(n, generator=g), torch.randn(n, generator=g)
    with torch.no_grad():  # π_old a little off π_θ, so that some ratios are clipped on both sides
        logprob_old = b.head.log_prob(b.policy_params(obs), actions) + 0.4 * torch.randn(n, generator=g)
    clip, vf_coef = 0.2, 0.5
    packed.flat.grad.fill_(123.0)  # overwritten, not accumulated
    logits, pg, vl, ent, ratio = packed.policy_value_backward(
        obs, actions, lambda lp: clipped_surrogate_grad(lp, logprob_old, adv, clip), returns, vf_coef, ent_coef)
    # the reference: the module's forward, the pure losses of ppo.py, autograd
    params, values = b(obs)
    logprob = b.head.log_prob(params, actions)
    pg_ref, diag = clipped_surrogate(logprob, logprob_old, adv, clip)
    vl_ref = value_loss(values, None, returns, None)
    loss = pg_ref + vf_coef * vl_ref - ent_coef * b.head.entropy(params).mean()
    loss.backward()
    assert 0.05 < diag["diag/clip_fraction"] < 0.95  # the test covers clipped and unclipped samples
    torch.testing.assert_close(logits, params.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pg, pg_ref.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(vl, vl_ref.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ratio, (logprob - logprob_old).exp().detach(), atol=1e-6, rtol=1e-5)
    if ent_coef:
        torch.testing.assert_close(ent, b.head.entropy(params).detach(), atol=1e-6, rtol=1e-5)
    _assert_same_grads(a, b)


@pytest.mark.parametrize("net_arch, activation", ARCHS[:2])
def test_a2c_loss_gradient_without_autograd_equals_autograd(net_arch, activation):
    a, packed, b, flat_b = _pair(net_arch, activation, n_actions=2)
    g = torch.Generator().manual_seed(2)
    n = 40
    obs, actions = torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)
    adv, returns = torch.randn(n, generator=g), torch.randn(n, generator=g)
    _, pl, vl, _, _ = packed.policy_value_backward(obs, actions, a2c_policy_term(adv), returns, 0.5, 0.0)
    params, values = b(obs)
    loss, pl_ref, vl_ref = a2c_loss(b.head.log_prob(params, actions), values, adv, returns, 0.5)
    loss.backward()
    torch.testing.assert_close(pl, pl_ref.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(vl, vl_ref.detach(), atol=1e-6, rtol=1e-5)
    _assert_same_grads(a, b)


@pytest.mark.parametrize("net_arch, activation", ARCHS)
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
def test_a2c_loss_gradient_in_numpy_equals_autograd(net_arch, activation, ent_coef):
    a, packed, b, flat_b = _pair(net_arch, activation, n_actions=3)
    g = torch.Generator().manual_seed(4)
    n = 40
    obs, actions = torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)
    adv, returns = torch.randn(n, generator=g), torch.randn(n, generator=g)
    assert packed.numpy_update_fits(n) and not packed.numpy_update_fits(100_000)
    packed.flat.grad.fill_(123.0)  # overwritten, not accumulated
    logits, pl, vl, ent = packed.policy_value_backward_numpy(obs.numpy(), actions.numpy(), a2c_policy_term(adv.numpy()),
                                                             returns.numpy(), 0.5, ent_coef)
    params, values = b(obs)
    entropy = b.head.entropy(params)
    loss, pl_ref, vl_ref = a2c_loss(b.head.log_prob(params, actions), values, adv, returns, 0.5, entropy, ent_coef)
    loss.backward()
    np.testing.assert_allclose(logits, params.detach().numpy(), atol=1e-6, rtol=1e-5)
    assert float(pl) == pytest.approx(float(pl_ref.detach()), abs=1e-6, rel=1e-5)
    assert float(vl) == pytest.approx(float(vl_ref.detach()), abs=1e-6, rel=1e-5)
    np.testing.assert_allclose(ent, entropy.detach().numpy(), atol=1e-6, rtol=1e-5)
    _assert_same_grads(a, b)


@pytest.mark.parametrize("net_arch, activation", ARCHS)
def test_numpy_policy_equals_forward_and_follows_the_weights(net_arch, activation):
    a, packed, _, _ = _pair(net_arch, activation)
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    for _ in range(2):
        logits, values = packed.numpy_policy(8)(obs)
        ref_logits, ref_values = a(torch.from_numpy(obs))
        np.testing.assert_allclose(logits, ref_logits.detach().numpy(), atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(values, ref_values.detach().numpy(), atol=1e-6, rtol=1e-5)
        with torch.no_grad():
            packed.flat.add_(0.05)  # an optimiser step: the next rollout's numpy_policy sees it
    assert packed.numpy_policy(10_000) is None  # large batches stay in torch


def test_numpy_acting_rollout_matches_the_agent_and_is_reproducible():
    def collect(seed):
        torch.manual_seed(0)
        agent = ActorCritic(gym.spaces.Box(-np.inf, np.inf, (4,)), gym.spaces.Discrete(2), [64, 64], "tanh")
        net = PackedActorCritic(agent)
        env = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="vector_entry_point")
        col = RolloutCollector(env, torch.device("cpu"), seed=0, generator=torch.Generator().manual_seed(seed))
        assert net.numpy_policy(4) is not None
        return agent, col.collect(net, 40), col.collect(net, 40)

    agent, r, r2 = collect(0)
    params, values = agent(r.obs)
    with torch.no_grad():
        torch.testing.assert_close(r.params_old, params, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r.values_old, values, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r.logprob_old, agent.head.log_prob(params, r.actions), atol=1e-6, rtol=1e-5)
        # V(s_{t+1}) is the next row's value, and V(last observation) after the last row (NEXT_STEP env)
        torch.testing.assert_close(r.next_values[:-1], values[1:], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r.next_values[-1], agent.value(r2.obs[0]), atol=1e-6, rtol=1e-5)
    assert r.valid is not None and not r.valid.all()  # episodes ended inside the rollout
    # the same seed gives the same rollouts; another seed of the model's generator other actions
    _, same, same2 = collect(0)
    assert torch.equal(same.actions, r.actions) and torch.equal(same2.actions, r2.actions)
    _, other, _ = collect(1)
    assert not torch.equal(other.actions, r.actions)


@pytest.mark.parametrize("max_norm", [0.01, 1e6])
def test_clip_grad_norm_of_one_flat_tensor_matches_torch(max_norm):
    p, q = torch.nn.Parameter(torch.randn(50)), torch.nn.Parameter(torch.randn(50))
    p.grad = torch.randn(50)
    q.grad = p.grad.clone()
    torch.testing.assert_close(clip_grad_norm([p], max_norm), torch.nn.utils.clip_grad_norm_([q], max_norm))
    torch.testing.assert_close(p.grad, q.grad)


@pytest.mark.parametrize("gae_lambda", [0.0, 0.8, 1.0])
def test_gae_through_numpy_equals_the_torch_loop(gae_lambda):
    from lucidrl.advantages import gae
    g = torch.Generator().manual_seed(3)
    T, N = 7, 5
    r, v, nv = (torch.randn(T, N, generator=g) for _ in range(3))
    term = torch.rand(T, N, generator=g) < 0.2
    trunc = (torch.rand(T, N, generator=g) < 0.2) & ~term
    adv, ret = gae(r, v, nv, term, trunc, 0.98, gae_lambda)  # CPU, no gradient: the NumPy path
    adv_t, ret_t = gae(r, v.clone().requires_grad_(), nv, term, trunc, 0.98, gae_lambda)  # the torch loop
    torch.testing.assert_close(adv, adv_t.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ret, ret_t.detach(), atol=1e-6, rtol=1e-6)


def test_optimizer_step_is_the_optimisers_own_step_and_keeps_hooks():
    from lucidrl.optim import Adam, RMSprop, optimizer_step
    for make in (lambda ps: Adam(ps, lr=1e-2, eps=1e-5), lambda ps: RMSprop(ps, lr=1e-2, alpha=0.99, eps=1e-5)):
        p, q = torch.nn.Parameter(torch.randn(20)), None
        q = torch.nn.Parameter(p.detach().clone())
        op, oq = make([p]), make([q])
        for i in range(3):
            p.grad = torch.full((20,), float(i + 1))
            q.grad = p.grad.clone()
            optimizer_step(op)
            oq.step()
        assert torch.equal(p, q)
        calls = []
        op.register_step_post_hook(lambda *a: calls.append(1))
        optimizer_step(op)  # with a hook: the plain step(), which runs it
        assert calls == [1]
