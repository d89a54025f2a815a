"""lucidrl.flat_mlp (TRPO's written-out passes) against the module's forward, autograd and the exact Hessian.

Speed-only code must compute the same functions: the forward, the vector-Jacobian product
(backprop), the Jacobian-vector product, the written-out Fisher-vector product of a softmax
policy (against the Hessian of the mean KL, as tests/math/test_trpo_math.py does for the autograd
one), the surrogate's gradient in the logits, the critic's fit and a whole TRPO policy step.
"""

import numpy as np
import pytest
import torch
from torch.func import functional_call

import lucidrl.algos.trpo as trpo
from lucidrl.algos.trpo import (TRPOConfig, categorical_fisher_vector_product, fisher_vector_product, fit_critic,
                                mean_kl, surrogate_advantage, surrogate_and_logit_gradient, trpo_policy_step)
from lucidrl.flat_mlp import FlatMLP, numpy_actor_critic
from lucidrl.networks import CategoricalHead, mlp
from lucidrl.optim import Adam, flat_parameters


def _net(activation="tanh", dtype=torch.float64, hidden=(8, 8), n_out=3, seed=0):
    torch.manual_seed(seed)
    net = mlp(4, list(hidden), n_out, activation, out_std=1.0).to(dtype)
    flat = flat_parameters(net)
    return net, flat, FlatMLP.of(net, flat)


def _as_function(net, x):
    names, shapes = [n for n, _ in net.named_parameters()], [p.shape for p in net.parameters()]

    def f(flat):
        chunks = torch.split(flat, [s.numel() for s in shapes])
        return functional_call(net, {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}, (x,))

    return f


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("rows,dtype", [(16, torch.float64), (700, torch.float32)])  # 700 x 8 >= 4096: sigmoid path
def test_forward_vjp_and_jvp_match_the_module_and_autograd(activation, rows, dtype):
    net, flat, fast = _net(activation, dtype)
    x = torch.randn(rows, 4, dtype=dtype)
    out, hs = fast.forward(x)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out, net(x), **tol)
    # the reference in float64, which never takes the sigmoid path (a custom autograd.Function)
    net64 = mlp(4, [8, 8], 3, activation).double()
    net64.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    f = _as_function(net64, x.double())
    d_out, v = torch.randn_like(out), torch.randn_like(flat)
    jac = torch.autograd.functional.jacobian(f, flat.detach().double())  # [rows, n_out, P], exact
    torch.testing.assert_close(fast.vjp(hs, d_out), torch.einsum("bo,bop->p", d_out.double(), jac).to(dtype), **tol)
    torch.testing.assert_close(fast.jvp(hs, v), (jac @ v.double()).to(dtype), **tol)


def test_of_refuses_what_it_cannot_compute():
    net = mlp(4, [8], 3, "elu")
    assert FlatMLP.of(net, flat_parameters(net)) is None  # another activation
    net = mlp(4, [8], 3, "tanh")
    assert FlatMLP.of(net, torch.zeros(3)) is None  # parameters that are not views of the flat tensor


@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_written_out_fvp_equals_the_hessian_of_the_mean_kl_and_autograds_fvp(damping):
    actor, theta, fast = _net()
    head = CategoricalHead(3)
    obs = torch.randn(32, 4, dtype=torch.float64)
    logits_old, hs = fast.forward(obs)
    f = _as_function(actor, obs)
    hessian = torch.autograd.functional.hessian(lambda t: mean_kl(head, logits_old, f(t)), theta.detach().clone())
    fvp = categorical_fisher_vector_product(fast, hs, logits_old, damping)
    fvp_autograd = fisher_vector_product(mean_kl(head, logits_old, actor(obs)), list(actor.parameters()), damping)
    for seed in range(3):
        v = torch.randn(theta.numel(), dtype=theta.dtype, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fvp(v), hessian @ v + damping * v, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(fvp(v), fvp_autograd(v), rtol=1e-10, atol=1e-12)


def test_surrogate_and_its_logit_gradient_match_autograd():
    torch.manual_seed(0)
    logits = torch.randn(20, 3, dtype=torch.float64, requires_grad=True)
    head = CategoricalHead(3)
    actions = torch.randint(0, 3, (20,))
    logprob_old = head.log_prob(logits.detach() + 0.3 * torch.randn(20, 3, dtype=torch.float64), actions)
    adv = torch.randn(20, dtype=torch.float64)
    want = surrogate_advantage(head.log_prob(logits, actions), logprob_old, adv)
    (grad,) = torch.autograd.grad(want, logits)
    got, d_logits = surrogate_and_logit_gradient(logits.detach(), actions, logprob_old, adv)
    torch.testing.assert_close(got, want.detach())
    torch.testing.assert_close(d_logits, grad)


def test_fit_critic_written_out_takes_the_same_adam_steps_as_autograd():
    results = []
    for use_fast in (False, True):
        critic, phi, fast = _net(n_out=1, dtype=torch.float32, hidden=(16, 16))
        opt = Adam([phi], lr=1e-2, eps=1e-5)
        gen = torch.Generator().manual_seed(3)
        x, returns = torch.randn(64, 4, generator=gen), torch.randn(64, generator=gen)
        metrics = fit_critic(critic, opt, x, returns, n_epochs=3, batch_size=16, generator=gen,
                             fast=fast if use_fast else None)
        results.append((metrics["loss/value"], phi.detach().clone()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-5)
    assert not torch.equal(results[1][1], _net(n_out=1, dtype=torch.float32, hidden=(16, 16))[1])  # it moved


def test_policy_step_written_out_lands_where_the_autograd_step_lands(monkeypatch):
    cfg = TRPOConfig(target_kl=0.01, cg_damping=0.01, cg_max_steps=10)
    out = []
    for use_fast in (False, True):
        actor, theta, _ = _net(dtype=torch.float32, hidden=(16, 16))
        head = CategoricalHead(3)
        gen = torch.Generator().manual_seed(1)
        obs = torch.randn(256, 4, generator=gen)
        with torch.no_grad():
            logits_old = actor(obs)
        actions = head.sample(logits_old, gen)
        batch = {"x": obs, "actions": actions, "logprob_old": head.log_prob(logits_old, actions),
                 "params_old": logits_old, "advantages": torch.randn(256, generator=gen)}
        if not use_fast:
            monkeypatch.setattr(trpo.FlatMLP, "of", staticmethod(lambda *a: None))
        else:
            monkeypatch.undo()
        metrics = trpo_policy_step(actor, theta, head, batch, cfg)
        out.append((metrics, theta.detach().clone()))
    (m_auto, th_auto), (m_fast, th_fast) = out
    assert m_fast["train/line_search_success"] == m_auto["train/line_search_success"] == 1.0
    assert m_fast["train/backtracks"] == m_auto["train/backtracks"]
    assert m_fast["diag/kl"] == pytest.approx(m_auto["diag/kl"], rel=1e-3)
    torch.testing.assert_close(th_fast, th_auto, rtol=1e-3, atol=1e-5)


def test_numpy_actor_critic_matches_the_torch_forwards():
    actor, theta, fa = _net(dtype=torch.float32, hidden=(8, 8))
    critic, phi, fc = _net(dtype=torch.float32, hidden=(8, 8), n_out=1, seed=1)
    obs = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    logits, values = numpy_actor_critic(fa, fc)(obs)
    with torch.no_grad():
        np.testing.assert_allclose(logits, actor(torch.from_numpy(obs)).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(values, critic(torch.from_numpy(obs)).numpy()[:, 0], rtol=1e-5, atol=1e-6)
    critic_wide, phi_w, fw = _net(dtype=torch.float32, hidden=(8, 12), n_out=1)  # unequal layers: two forwards
    _, values = numpy_actor_critic(fa, fw)(obs)
    with torch.no_grad():
        np.testing.assert_allclose(values, critic_wide(torch.from_numpy(obs)).numpy()[:, 0], rtol=1e-5, atol=1e-6)


def test_trpo_numpy_acting_of_a_gaussian_actor_equals_the_agents_forward():
    """TRPO's NumPy policy for Box actions: concat(μ, bounded log σ) and V(s), as the agent's own forward."""
    import lucidrl
    model = lucidrl.TRPO("Pendulum-v1", preset=False, seed=0, verbose=0, n_envs=2, n_steps=64, batch_size=64)
    with torch.no_grad():
        model.agent.actor[-1].log_std.copy_(torch.tensor([3.0]))  # above the bound: acting sees it clamped
    policy = model._numpy_policy()
    assert policy is not None
    obs = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    params, values = policy(obs)
    with torch.no_grad():
        ref_params, ref_values = model.agent(torch.from_numpy(obs))
    np.testing.assert_allclose(params, ref_params.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values, ref_values.numpy(), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- Gaussian actors
def _gaussian_actor(seed=0, n=24):
    import gymnasium as gym

    from lucidrl.networks import ActorCritic
    torch.manual_seed(seed)
    ac = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2,)), [6, 6], log_std_init=-0.2).double()
    theta = flat_parameters(ac.actor)
    with torch.no_grad():
        ac.actor[-2].weight.mul_(30.0)  # a mean far from 0, so the KL's curvature in μ is not trivial
        ac.actor[-1].log_std.copy_(torch.tensor([-0.4, 0.3]))
        obs = torch.randn(n, 4, dtype=torch.float64)
        params_old = ac.actor(obs)
        actions = ac.head.sample(params_old)
    return ac, theta, obs, params_old, actions, ac.head.log_prob(params_old, actions), torch.randn(n, dtype=torch.float64)


def test_gaussian_fvp_written_out_equals_the_hessian_of_the_mean_kl():
    ac, theta, obs, params_old, *_ = _gaussian_actor()
    fast = FlatMLP.of(ac.actor, theta)
    assert fast is not None and fast.log_std_slice == slice(theta.numel() - 2, theta.numel())
    mean, hs = fast.forward(obs)
    f = _as_function(ac.actor, obs)
    hessian = torch.autograd.functional.hessian(lambda t: mean_kl(ac.head, params_old, f(t)), theta.detach().clone())
    fvp = trpo.gaussian_fisher_vector_product(fast, hs, theta.detach()[fast.log_std_slice], 0.1)
    for seed in range(3):
        v = torch.randn(theta.numel(), dtype=theta.dtype, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fvp(v), hessian @ v + 0.1 * v, rtol=1e-10, atol=1e-12)


def test_gaussian_surrogate_and_its_gradient_match_autograd():
    ac, theta, obs, params_old, actions, logprob_old, adv = _gaussian_actor(1)
    with torch.no_grad():
        theta.add_(0.05 * torch.randn_like(theta))  # away from θ_old, so the ratios differ from 1
    params = ac.actor(obs)
    want = surrogate_advantage(ac.head.log_prob(params, actions), logprob_old, adv)
    (grad,) = torch.autograd.grad(want, params)
    mean, log_std = ac.head.split(params.detach())
    got, d_mean, d_log_std = trpo.surrogate_and_gaussian_gradient(ac.head, mean, log_std[0], actions, logprob_old, adv)
    torch.testing.assert_close(got, want.detach())
    torch.testing.assert_close(d_mean, grad[:, :2])
    torch.testing.assert_close(d_log_std, grad[:, 2:].sum(0))  # log σ is shared by every state


def test_gaussian_policy_step_written_out_lands_where_the_autograd_step_lands(monkeypatch):
    cfg = TRPOConfig(target_kl=0.01, cg_damping=0.01, cg_max_steps=10)
    out = []
    for use_fast in (False, True):
        ac, theta, obs, params_old, actions, logprob_old, adv = _gaussian_actor(2, n=128)
        batch = {"x": obs, "actions": actions, "logprob_old": logprob_old, "params_old": params_old, "advantages": adv}
        if use_fast:
            monkeypatch.undo()
        else:
            monkeypatch.setattr(trpo.FlatMLP, "of", staticmethod(lambda *a: None))
        metrics = trpo_policy_step(ac.actor, theta, ac.head, batch, cfg)
        out.append((metrics, theta.detach().clone()))
    (m_auto, th_auto), (m_fast, th_fast) = out
    assert m_fast["train/line_search_success"] == m_auto["train/line_search_success"] == 1.0
    assert m_fast["diag/kl"] == pytest.approx(m_auto["diag/kl"], rel=1e-6)
    torch.testing.assert_close(th_fast, th_auto, rtol=1e-6, atol=1e-9)


def test_a_log_std_at_its_bound_falls_back_to_autograd():
    ac, theta, *_ = _gaussian_actor()
    with torch.no_grad():
        ac.actor[-1].log_std[0] = -25.0  # below LOG_STD_MIN: the clamp's gradient is not the identity there
    assert FlatMLP.of(ac.actor, theta) is None


def test_large_products_take_onednn_and_still_match_float64():
    """1,024 states through 64-wide layers: the products go to oneDNN (lucidrl.kernels) where it is available."""
    from lucidrl.kernels import onednn_linear, use_onednn
    torch.manual_seed(3)
    net = mlp(4, [64, 64], 3, "tanh")
    flat = flat_parameters(net)
    fast = FlatMLP.of(net, flat)
    x = torch.randn(1024, 4)
    assert use_onednn(1024, fast.weights[1][0]) or onednn_linear() is None
    out, hs = fast.forward(x)
    net64 = mlp(4, [64, 64], 3, "tanh").double()
    net64.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    f = _as_function(net64, x.double())
    theta64 = flat.detach().double()
    torch.testing.assert_close(out.double(), f(theta64), rtol=1e-4, atol=1e-5)
    d_out, v = torch.randn_like(out), torch.randn_like(flat)
    _, vjp = torch.autograd.functional.vjp(f, theta64, d_out.double())
    _, jvp = torch.autograd.functional.jvp(f, theta64, v.double())
    got_vjp, got_jvp = fast.vjp(hs, d_out).double(), fast.jvp(hs, v).double()
    assert (got_vjp - vjp).norm() < 1e-5 * vjp.norm() and (got_jvp - jvp).norm() < 1e-5 * jvp.norm()
