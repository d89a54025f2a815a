"""Speed paths compute the same function as the plain autograd path (lucidrl.packed, lucidrl.rollout).

* ``PackedActorCritic.policy_value_backward`` with PPO's clipped surrogate and with A2C's policy
  term: loss and gradient against ``ActorCritic`` + the algorithm's own loss + ``backward()``;
* ``PackedActorCritic.policy_value_backward_numpy`` (A2C's small batches) the same way, and with
  PPO's clipped surrogate in NumPy (256 rows) against the torch path; ``numpy_blas_threads``;
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
from lucidrl.algos.ppo import clipped_surrogate, clipped_surrogate_grad, clipped_surrogate_grad_numpy, value_loss
from lucidrl.kernels import numpy_blas_threads, numpy_blas_threads_held
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
    assert packed.numpy_update(n) is not None
    packed.flat.grad.fill_(123.0)  # overwritten, not accumulated
    logits, pl, vl, ent, _ = packed.policy_value_backward_numpy(
        obs.numpy(), actions.numpy(), a2c_policy_term(adv.numpy()), returns.numpy(), 0.5, ent_coef, with_entropy=True)
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
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
def test_ppo_loss_gradient_in_numpy_equals_the_torch_path(net_arch, activation, ent_coef):
    """PPO's NumPy update (256 rows: above OpenBLAS's threading threshold, so inside numpy_blas_threads)
    against the torch path, which the test above checks against autograd."""
    a, packed, b, _ = _pair(net_arch, activation)
    twin = PackedActorCritic(b)  # the same weights, a torch path of its own
    g = torch.Generator().manual_seed(5)
    n = 256
    obs, actions = torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)
    adv, returns = torch.randn(n, generator=g), torch.randn(n, generator=g)
    with torch.no_grad():
        logprob_old = b.head.log_prob(b.policy_params(obs), actions) + 0.4 * torch.randn(n, generator=g)
    clip = 0.2
    assert packed.numpy_update(n) is not None
    logits_t, pg_t, vl_t, ent_t, ratio_t = twin.policy_value_backward(
        obs, actions, lambda lp: clipped_surrogate_grad(lp, logprob_old, adv, clip), returns, 0.5, ent_coef)
    for _ in range(2):  # the second call reuses the buffers
        packed.flat.grad.fill_(123.0)
        with packed.numpy_update(n):
            logits, pg, vl, ent, ratio = packed.policy_value_backward_numpy(
                obs.numpy(), actions.numpy(),
                lambda lp: clipped_surrogate_grad_numpy(lp, logprob_old.numpy(), adv.numpy(), clip),
                returns.numpy(), 0.5, ent_coef)
        np.testing.assert_allclose(logits, logits_t.numpy(), atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(ratio, ratio_t.numpy(), atol=1e-6, rtol=1e-5)
        assert float(pg) == pytest.approx(float(pg_t), abs=1e-6, rel=1e-5)
        assert float(vl) == pytest.approx(float(vl_t), abs=1e-6, rel=1e-5)
        assert (ent is None) == (ent_t is None)
        if ent_coef:
            np.testing.assert_allclose(ent, ent_t.numpy(), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(packed.flat.grad, twin.flat.grad, atol=2e-6, rtol=1e-4)


def test_numpy_blas_threads_holds_numpys_blas_to_torchs_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    assert numpy_blas_threads_held()

    def blas_threads():
        return {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}
    before, torch_threads = blas_threads(), torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with numpy_blas_threads():
            assert blas_threads() == {1}
        with numpy_blas_threads(2):
            assert blas_threads() == {2}
    finally:
        torch.set_num_threads(torch_threads)
    assert blas_threads() == before  # restored on the way out


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


@pytest.mark.parametrize("batch_size", [256, 64])
@pytest.mark.parametrize("gaussian", [False, True])
def test_ppo_update_in_numpy_equals_the_torch_update(batch_size, gaussian):
    """Whole updates (K epochs, shuffled minibatches or one full batch, Adam, clipping, diagnostics):
    the NumPy path and the torch path end at the same weights and report the same figures."""
    from lucidrl.algos.ppo import PPOConfig, ppo_update
    from lucidrl.optim import Adam
    a, packed, b, _ = _gaussian_pair([64, 64], "tanh", d=2) if gaussian else _pair([64, 64], "tanh", n_actions=2)
    twin = PackedActorCritic(b)
    twin.numpy_update = lambda n_rows: None  # the torch path
    g = torch.Generator().manual_seed(6)
    n = 256
    obs = torch.randn(n, 4, generator=g)
    with torch.no_grad():
        params_old, values_old = a(obs)
    actions = a.head.sample(params_old, g)
    batch = {"obs": obs, "actions": actions, "logprob_old": a.head.log_prob(params_old, actions),
             "advantages": torch.randn(n, generator=g), "returns": torch.randn(n, generator=g),
             "values_old": values_old, "params_old": params_old}
    cfg = PPOConfig(n_envs=8, n_steps=32, batch_size=batch_size, n_epochs=4, learning_rate=1e-2)
    out = []
    for net in (packed, twin):
        opt = Adam([net.flat], lr=1e-2, eps=1e-5)
        out.append(ppo_update(net, opt, batch, cfg, 0.2, None, 1.0, torch.Generator().manual_seed(7)))
    torch.testing.assert_close(packed.flat, twin.flat, atol=1e-5, rtol=1e-4)
    assert out[0].keys() == out[1].keys()
    for key in out[0]:
        assert out[0][key] == pytest.approx(out[1][key], rel=1e-4, abs=1e-5), key
    assert out[0]["train/gradient_steps"] == 4 * n // batch_size
    assert out[0]["diag/clip_fraction"] > 0  # the policy moved far enough for clipping to act


def _gaussian_pair(net_arch, activation, d=3, log_std=None, seed=0):
    torch.manual_seed(seed)
    a = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (d,)), net_arch, activation, log_std_init=-0.3)
    if log_std is not None:
        with torch.no_grad():
            a.actor[-1].log_std.copy_(torch.as_tensor(log_std))
    b = copy.deepcopy(a)
    packed, flat_b = PackedActorCritic(a), flat_parameters(b)
    assert packed.packed and packed.gaussian
    return a, packed, b, flat_b


# log σ inside its bounds, and one component above the upper one (the bound's rule: the gradient may only pull
# it back); below the lower bound σ = e^-20 makes every gradient ~1e9, see the test after the next
LOG_STDS = [None, [3.0, -0.5, 0.2]]


@pytest.mark.parametrize("net_arch, activation", ARCHS)
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
@pytest.mark.parametrize("log_std", LOG_STDS)
@pytest.mark.parametrize("in_numpy", [False, True])
def test_gaussian_ppo_gradient_without_autograd_equals_autograd(net_arch, activation, ent_coef, log_std, in_numpy):
    """A Gaussian actor (state-independent log σ, last in the flat tensor): PPO's loss and gradient, torch and
    NumPy paths, against ActorCritic + clipped_surrogate + the entropy bonus + backward()."""
    a, packed, b, flat_b = _gaussian_pair(net_arch, activation, log_std=log_std)
    g = torch.Generator().manual_seed(8)
    n = 256
    obs = torch.randn(n, 4, generator=g)
    with torch.no_grad():
        params_old = b.policy_params(obs)
        actions = b.head.sample(params_old, g)
        logprob_old = b.head.log_prob(params_old, actions) + 0.3 * torch.randn(n, generator=g)
    adv, returns = torch.randn(n, generator=g), torch.randn(n, generator=g)
    clip, vf_coef = 0.2, 0.5
    packed.flat.grad.fill_(123.0)  # overwritten, not accumulated
    if in_numpy:
        with packed.numpy_update(n):
            params, pg, vl, ent, ratio = packed.policy_value_backward_numpy(
                obs.numpy(), actions.numpy(),
                lambda lp: clipped_surrogate_grad_numpy(lp, logprob_old.numpy(), adv.numpy(), clip),
                returns.numpy(), vf_coef, ent_coef, with_entropy=True)
        params, ratio, ent = (torch.from_numpy(np.array(v)) for v in (params, ratio, ent))
        pg, vl = torch.tensor(float(pg)), torch.tensor(float(vl))
    else:
        params, pg, vl, ent, ratio = packed.policy_value_backward(
            obs, actions, lambda lp: clipped_surrogate_grad(lp, logprob_old, adv, clip), returns, vf_coef, ent_coef,
            with_entropy=True)
    params_ref, values = b(obs)
    logprob = b.head.log_prob(params_ref, actions)
    pg_ref, diag = clipped_surrogate(logprob, logprob_old, adv, clip)
    vl_ref = value_loss(values, None, returns, None)
    entropy = b.head.entropy(params_ref)
    (pg_ref + vf_coef * vl_ref - ent_coef * entropy.mean()).backward()
    assert 0.05 < diag["diag/clip_fraction"] < 0.95
    torch.testing.assert_close(params, params_ref.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pg, pg_ref.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vl, vl_ref.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ratio, (logprob - logprob_old).exp().detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent.float(), entropy.detach(), atol=1e-5, rtol=1e-5)
    _assert_same_grads(a, b)
    if log_std is not None:  # the bounds were in play: one component's gradient is blocked, as autograd's
        assert (b.actor[-1].log_std.grad == 0).any()


@pytest.mark.parametrize("in_numpy", [False, True])
def test_gaussian_log_std_below_its_bound_gets_autograds_gradient(in_numpy):
    a, packed, b, _ = _gaussian_pair([16], "tanh", d=2, log_std=[-25.0, -0.5])
    g = torch.Generator().manual_seed(10)
    n = 64
    obs, actions = torch.randn(n, 4, generator=g), torch.randn(n, 2, generator=g)
    adv, returns = torch.randn(n, generator=g), torch.randn(n, generator=g)
    if in_numpy:
        with packed.numpy_update(n):
            packed.policy_value_backward_numpy(obs.numpy(), actions.numpy(), a2c_policy_term(adv.numpy()),
                                               returns.numpy(), 0.5, 0.01)
    else:
        packed.policy_value_backward(obs, actions, a2c_policy_term(adv), returns, 0.5, 0.01)
    params, values = b(obs)
    loss, _, _ = a2c_loss(b.head.log_prob(params, actions), values, adv, returns, 0.5, b.head.entropy(params), 0.01)
    loss.backward()
    torch.testing.assert_close(a.actor[-1].log_std.grad, b.actor[-1].log_std.grad, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("in_numpy", [False, True])
def test_gaussian_a2c_gradient_without_autograd_equals_autograd(in_numpy):
    a, packed, b, flat_b = _gaussian_pair([64, 64], "tanh", d=1)
    g = torch.Generator().manual_seed(9)
    n = 40
    obs = torch.randn(n, 4, generator=g)
    actions = torch.randn(n, 1, generator=g)
    adv, returns = torch.randn(n, generator=g), torch.randn(n, generator=g)
    if in_numpy:
        with packed.numpy_update(n):
            _, pl, vl, _, _ = packed.policy_value_backward_numpy(obs.numpy(), actions.numpy(),
                                                                 a2c_policy_term(adv.numpy()), returns.numpy(), 0.5)
    else:
        _, pl, vl, _, _ = packed.policy_value_backward(obs, actions, a2c_policy_term(adv), returns, 0.5)
    params, values = b(obs)
    loss, pl_ref, vl_ref = a2c_loss(b.head.log_prob(params, actions), values, adv, returns, 0.5)
    loss.backward()
    assert float(pl) == pytest.approx(float(pl_ref.detach()), abs=1e-5, rel=1e-5)
    assert float(vl) == pytest.approx(float(vl_ref.detach()), abs=1e-5, rel=1e-5)
    _assert_same_grads(a, b)


def test_gaussian_packed_acting_and_forward_equal_the_module():
    a, packed, b, _ = _gaussian_pair([64, 64], "tanh", log_std=[3.0, 0.1, -0.2])
    obs = torch.randn(8, 4)
    params, values = b(obs)
    for fwd in (packed.acting_forward(), packed.forward):
        p, v = fwd(obs)
        torch.testing.assert_close(p, params.detach(), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(v, values.detach(), atol=1e-6, rtol=1e-5)
    # the module's own parameters are views of the flat tensor, log σ included
    assert a.actor[-1].log_std.data_ptr() == packed.flat.data_ptr() + 4 * (packed.flat.numel() - 3)


def test_gaussian_numpy_acting_rollout_matches_the_agent_and_is_reproducible():
    def collect(seed):
        torch.manual_seed(0)
        agent = ActorCritic(gym.spaces.Box(-np.inf, np.inf, (3,)), gym.spaces.Box(-2, 2, (1,)), [64, 64], "tanh",
                            log_std_init=-0.5)
        net = PackedActorCritic(agent)
        env = gym.make_vec("Pendulum-v1", num_envs=4, vectorization_mode="sync")
        col = RolloutCollector(env, torch.device("cpu"), seed=0, generator=torch.Generator().manual_seed(seed))
        assert net.numpy_policy(4) is not None
        return agent, col.collect(net, 200)

    agent, r = collect(0)
    params, values = agent(r.obs)
    with torch.no_grad():
        torch.testing.assert_close(r.params_old, params, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r.values_old, values, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r.logprob_old, agent.head.log_prob(params, r.actions), atol=1e-5, rtol=1e-5)
        mean, log_std = agent.head.split(params)
        z = (r.actions - mean) / log_std.exp()  # the stored, unclipped sample: standard normal noise
    assert abs(float(z.mean())) < 0.1 and abs(float(z.std()) - 1.0) < 0.1
    assert (r.actions.abs() > 2).any()  # stored unclipped (only the env's copy is clipped to [-2, 2])
    _, same = collect(0)
    assert torch.equal(same.actions, r.actions)
    _, other = collect(1)
    assert not torch.equal(other.actions, r.actions)
