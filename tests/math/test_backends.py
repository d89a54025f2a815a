"""The fast backend computes what the reference computes: update by update, algorithm by algorithm.

For every algorithm with a fast path (PPO-Clip, A2C, TRPO with categorical and Gaussian
policies, VPG/REINFORCE, DQN) two models are built from the same seed, one per backend; the
reference function and its twin then run one update, and three consecutive updates, on the same
batch, and the parameters, the optimiser state and the metrics are compared. Acting: the same
distribution parameters and values for the same observations, the same actions for the same
noise. Below that, the MLP core's three products (forward, VJP, JVP) are checked against autograd.

Tolerances, and why they are not 0: both backends compute in float32 and do the same arithmetic,
but in another order (the core multiplies the actor and critic as one batched product, NumPy's
BLAS and torch's MKL block their sums differently), so results differ by float rounding:
relative ~1e-6 on a forward pass, more where values cancel (gradients near zero). Adam turns a
gradient g into a step of ~lr·g/(|g| + ε); where |g| is comparable to ε, a rounding difference δg
moves the step by ~lr·δg/ε. With lr ≤ 1e-3 and the ε used here that bounds parameter differences
after a few steps by ~1e-5 absolute; we allow ``PARAM_ATOL`` = 2e-5 (a wrong gradient, a missed
clip or a wrong learning rate moves parameters by ~lr = 1e-3 or more, 50x above it). Moments
and metrics agree to ``RTOL`` = 1e-4 relative (1e-6 absolute).
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from torch import nn

import lucidrl
from lucidrl.advantages import gae
from lucidrl.algos import a2c as ref_a2c
from lucidrl.algos import dqn as ref_dqn
from lucidrl.algos import ppo as ref_ppo
from lucidrl.algos import trpo as ref_trpo
from lucidrl.algos import vpg as ref_vpg
from lucidrl.errors import ConfigError
from lucidrl.fast import actor_critic as fast_ac
from lucidrl.fast import dqn as fast_dqn
from lucidrl.fast import trpo as fast_trpo
from lucidrl.fast import vpg as fast_vpg
from lucidrl.fast.mlp import MLPCore
from lucidrl.rollout import rollout_policy

PARAM_ATOL = 2e-5
RTOL, ATOL = 1e-4, 1e-6
ENVS = {"categorical": "CartPole-v1", "gaussian": "Pendulum-v1"}


def pair(cls, env, **kw):
    """The same model twice (same seed: the same initial weights), under each backend."""
    common = dict(seed=0, verbose=0, preset=False, net_arch=[16, 16], **kw)
    ref, fast = cls(env, backend="reference", **common), cls(env, backend="fast", **common)
    for a, b in zip(ref._checkpoint_modules().values(), fast._checkpoint_modules().values()):
        assert_same_modules(a, b, atol=0)  # exactly equal (and of the same dtype)
    return ref, fast


def rollout_batch(model, n_steps):
    """One rollout of ``model``'s reference acting, with advantages and returns (GAE)."""
    from lucidrl.rollout import RolloutCollector

    collector = RolloutCollector(model.env, model.device, seed=0, generator=torch.Generator().manual_seed(1))
    r = collector.collect(model.agent, n_steps)
    adv, ret = gae(r.rewards, r.values_old, r.next_values, r.terminated, r.truncated, 0.99, 0.95)
    return r, r.flat(advantages=adv, returns=ret)


def assert_same_modules(a: nn.Module, b: nn.Module, atol: float = PARAM_ATOL):
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(y, x, rtol=0, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


def assert_same_optimizer(a: torch.optim.Optimizer, b: torch.optim.Optimizer):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys() and sa["state"]
    for i in sa["state"]:
        for k, x in sa["state"][i].items():
            y = sb["state"][i][k]
            if k == "step":
                assert float(x) == float(y)
            else:  # second moments are squares of gradients: compare them relative to their size
                torch.testing.assert_close(
                    y,
                    x,
                    rtol=1e-3,
                    atol=1e-9 if k == "exp_avg_sq" else 1e-6,
                    msg=lambda m, i=i, k=k: f"state {i}/{k}: {m}",
                )


def assert_same_metrics(ma: dict, mb: dict, loose: tuple[str, ...] = ()):
    assert ma.keys() == mb.keys()
    for k in ma:
        tol = 1e-3 if k in loose else RTOL
        assert np.isclose(mb[k], ma[k], rtol=tol, atol=ATOL, equal_nan=True), (k, ma[k], mb[k])


# --------------------------------------------------------------------------- the MLP core
def assert_jvp_equals_autograd(core, members, params, flat, hs, x):
    """JVP: (∂y/∂θ) v equals the directional derivative by forward-mode autograd, for a random direction v; ``hs``
    are the activations of ``core.forward`` at ``flat`` on the input ``x`` (``x`` dense, as the members take it)."""
    v = torch.randn_like(flat)
    vs = list(torch.split(v, [p.numel() for p in params]))
    position = {id(p): i for i, p in enumerate(params)}
    for member, got in zip(members, core.jvp(core.blocks(flat), hs, core.blocks(v))):
        mine = list(member.parameters())
        tangents = tuple(vs[position[id(p)]].view_as(p) for p in mine)
        _, expected_dot = torch.func.jvp(
            lambda *ps, member=member: torch.func.functional_call(
                member, {n: q for (n, _), q in zip(member.named_parameters(), ps)}, (x,)
            ),
            tuple(mine),
            tangents,
        )
        torch.testing.assert_close(got, expected_dot, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ops", ["numpy", "torch", "feature_major"])
@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU, nn.ELU])
@pytest.mark.parametrize("k", [1, 2])
def test_the_mlp_core_forward_vjp_and_jvp_equal_autograd(ops, act, k):
    torch.manual_seed(0)
    outs = [3, 1][:k]
    members = [nn.Sequential(nn.Linear(5, 8), act(), nn.Linear(8, 7), act(), nn.Linear(7, o)) for o in outs]
    core = MLPCore.of(members, numpy=ops != "torch", feature_major=ops == "feature_major")
    params = MLPCore.parameter_order(members)
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    as_array = (lambda t: t.numpy()) if ops != "torch" else (lambda t: t)
    # feature-major arrays are the row-major ones transposed ([features, B]); made contiguous, as a caller does
    rows = (lambda a: np.ascontiguousarray(a.T)) if ops == "feature_major" else (lambda a: a)
    x = torch.randn(11, 5)
    for _ in range(2):  # twice: the feature-major buffers are reused by the second pass
        y, hs = core.forward(core.blocks(as_array(flat)), rows(as_array(x)))
        for member, out in zip(members, y):
            torch.testing.assert_close(torch.as_tensor(rows(out)), member(x).detach(), rtol=1e-5, atol=1e-6)
        # VJP: (∂y/∂θ)ᵀ d equals autograd's gradient of Σ d·y
        ds = [torch.randn(11, o) for o in outs]
        loss = sum((m(x) * d).sum() for m, d in zip(members, ds))
        expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
        g = torch.zeros_like(flat)
        core.backward(core.blocks(as_array(flat)), core.blocks(as_array(g)), hs, [rows(as_array(d)) for d in ds])
        torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-5)
    if ops != "torch":
        return  # the JVP runs in torch only (TRPO's Fisher products)
    assert_jvp_equals_autograd(core, members, params, flat, hs, x)


def assert_learn_agrees(ref, fast, steps, atol=PARAM_ATOL, attrs=None):
    """``steps`` of learn() under each backend, from the same weights, end with the same weights (to ``atol``): those
    of the modules ``attrs`` names, or (None) of every module a checkpoint saves."""
    ref.learn(steps)
    fast.learn(steps)
    if attrs is None:
        pairs = zip(ref._checkpoint_modules().values(), fast._checkpoint_modules().values())
    else:
        pairs = ((getattr(ref, name), getattr(fast, name)) for name in attrs)
    for a, b in pairs:
        assert_same_modules(a, b, atol=atol)


@pytest.mark.parametrize("cls", [lucidrl.PPO, lucidrl.A2C, lucidrl.TRPO, lucidrl.VPG, lucidrl.DQN])
def test_elu_networks_take_the_fast_backend_and_learn_as_the_reference(cls):
    """activation='elu' (elu' = 1 above 0, h + 1 below): two updates' worth of learn under each backend, the same
    weights to float rounding."""
    kw = {
        lucidrl.PPO: dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=2),
        lucidrl.A2C: dict(n_envs=2, n_steps=8),
        lucidrl.TRPO: dict(n_envs=2, n_steps=32, batch_size=32, n_critic_updates=2),
        lucidrl.VPG: dict(n_envs=2, n_steps=32, n_critic_updates=2),
        lucidrl.DQN: dict(learning_starts=32, train_freq=16, gradient_steps=4, batch_size=16, buffer_size=200),
    }[cls]
    ref, fast = pair(cls, "CartPole-v1", activation="elu", **kw)
    assert all(line.startswith(line.split(":")[0] + ": fast") for line in fast.backend_lines)
    steps = 2 * (kw.get("n_steps", 0) * kw.get("n_envs", 1)) or 64
    assert_learn_agrees(ref, fast, steps, atol=1e-4)


# --------------------------------------------------------------------------- acting
def assert_acting_agrees(model, obs, noise):
    """The fast acting gives the reference's distribution parameters and values for ``obs``; returns the actions
    each backend draws with ``noise`` (reference, fast), which the caller compares as its head allows."""
    a_ref, p_ref, v_ref = rollout_policy(model.agent)(obs, noise)
    a_fast, p_fast, v_fast = fast_ac.rollout_policy(model.agent)(obs, noise)
    torch.testing.assert_close(p_fast, p_ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v_fast, v_ref.detach(), rtol=1e-5, atol=1e-6)
    return a_ref, a_fast


def assert_same_greedy_actions(q_net, obs):
    """DQN's fast greedy acting takes the reference's argmax, on a batch of observations and on one row."""
    assert np.array_equal(fast_dqn.greedy_policy(q_net)(obs), ref_dqn.greedy_policy(q_net)(obs))
    assert np.array_equal(fast_dqn.greedy_policy(q_net)(obs[:1]), ref_dqn.greedy_policy(q_net)(obs[:1]))


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_acting_gives_the_same_parameters_values_and_actions_for_the_same_noise(kind):
    model = lucidrl.PPO(ENVS[kind], seed=0, verbose=0, preset=False, n_envs=4, net_arch=[16, 16])
    obs = torch.randn(4, *model.observation_space.shape)
    noise = model.agent.head.noise((4,), torch.Generator().manual_seed(3))
    a_ref, a_fast = assert_acting_agrees(model, obs, noise)
    if kind == "categorical":
        assert torch.equal(a_fast, a_ref)
    else:
        torch.testing.assert_close(a_fast, a_ref, rtol=1e-5, atol=1e-6)
    assert fast_ac.rollout_policy(model.agent)(obs, None)[0] is None  # no noise: no action, only π and V


def test_dqn_greedy_acting_is_the_same_argmax():
    model = lucidrl.DQN("CartPole-v1", seed=0, verbose=0, preset=False, net_arch=[32, 32])
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    assert_same_greedy_actions(model.q_net, obs)


def test_gae_twin_equals_the_reference():
    from lucidrl.advantages import gae as reference_gae
    from lucidrl.fast.advantages import gae as fast_gae

    g = torch.Generator().manual_seed(0)
    T, N = 12, 3
    rewards, values, next_values = (torch.randn(T, N, generator=g) for _ in range(3))
    terminated, truncated = torch.rand(T, N, generator=g) < 0.15, torch.rand(T, N, generator=g) < 0.15
    for a, b in zip(
        reference_gae(rewards, values, next_values, terminated, truncated, 0.99, 0.95),
        fast_gae(rewards, values, next_values, terminated, truncated, 0.99, 0.95),
    ):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- PPO
def assert_ppo_updates_agree(ref, fast, batch, updates, clip_range, clip_range_vf=None, beta=1.0):
    """``updates`` PPO updates (``ppo_update``'s clip ranges and KL coefficient β) on one ``batch`` under each
    backend, each update shuffling its minibatches alike: the same metrics after every update, the same weights and
    optimiser state after the last. Returns every update's metrics, (reference, fast)."""
    history = []
    for _ in range(updates):
        gens = [torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)]
        coefs = (clip_range, clip_range_vf, beta)
        m_ref = ref_ppo.ppo_update(ref.agent, ref.optimizer, batch, ref.config, *coefs, gens[0])
        m_fast = fast_ac.ppo_update(fast.agent, fast.optimizer, batch, fast.config, *coefs, gens[1])
        assert_same_metrics(m_ref, m_fast)
        history.append((m_ref, m_fast))
    assert_same_modules(ref.agent, fast.agent)
    assert_same_optimizer(ref.optimizer, fast.optimizer)
    return history


@pytest.mark.parametrize("updates", [1, 3])
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_ppo_clip_update_equals_the_reference(kind, updates):
    # two minibatches an epoch (shuffled), two epochs, clipping active, an entropy bonus
    ref, fast = pair(
        lucidrl.PPO,
        ENVS[kind],
        n_envs=2,
        n_steps=32,
        batch_size=32,
        n_epochs=2,
        ent_coef=0.01,
        learning_rate=1e-3,
        max_grad_norm=0.5,
    )
    _, batch = rollout_batch(ref, 32)
    m_ref, _ = assert_ppo_updates_agree(ref, fast, batch, updates, 0.2)[-1]
    assert m_ref["diag/clip_fraction"] >= 0 and m_ref["train/gradient_steps"] == 4


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_ppo_value_clipping_and_early_stop_equal_the_reference(kind):
    """clip_range_vf (the max of clipped and unclipped errors) and target_kl (stop before a step whose minibatch's
    approximate KL passed 1.5 target_kl): the same steps, weights and metrics as the reference."""
    kw = dict(n_envs=2, n_steps=32, batch_size=16, n_epochs=4, learning_rate=3e-3, max_grad_norm=0.5)
    ref, fast = pair(lucidrl.PPO, ENVS[kind], clip_range_vf=0.05, target_kl=0.004, **kw)
    _, batch = rollout_batch(ref, 32)
    batch["values_old"] = batch["values_old"] + 0.3 * torch.randn(batch["values_old"].shape)  # V_old ≠ V: clips bite
    history = assert_ppo_updates_agree(ref, fast, batch, 3, 0.2, clip_range_vf=0.05)
    stopped = [m_ref["train/gradient_steps"] < 16 for m_ref, _ in history]
    assert any(stopped), "target_kl never stopped an update: the test would not see the early stop"


def test_an_overflowing_ratio_stops_the_update_under_target_kl_in_both_backends():
    """A sample whose old log-probability is -200 has a ratio of e^200 = inf in float32, and the k3 estimate
    (r - 1) - log r is then inf - inf = NaN; NaN > 1.5 target_kl is False, so the update went on. It stops."""
    kw = dict(n_envs=2, n_steps=32, batch_size=16, n_epochs=2, target_kl=0.01)
    ref, fast = pair(lucidrl.PPO, "CartPole-v1", **kw)
    _, batch = rollout_batch(ref, 32)
    batch["logprob_old"] = batch["logprob_old"].clone()
    batch["logprob_old"][:] = -200.0
    before = copy.deepcopy(ref.agent.state_dict())
    for model, update in ((ref, ref_ppo.ppo_update), (fast, fast_ac.ppo_update)):
        m = update(model.agent, model.optimizer, batch, model.config, 0.2, None, 1.0, torch.Generator().manual_seed(7))
        assert m["train/gradient_steps"] == 0 and m["train/epochs"] == 0
        for k, v in model.agent.state_dict().items():
            assert torch.equal(v, before[k]), k


def test_the_clipped_value_gradient_is_autograds_including_the_clip_ends_and_ties():
    """``value_loss_grad`` against autograd through ``ppo.value_loss``: samples inside the clip range, outside it
    on both sides, on its ends, and where the clipped and unclipped errors tie."""
    eps = 0.25
    # inside; outside above and below (either term larger); on both ends; clipped and unclipped errors tied while
    # the clip is active (V = 1, V_clip = 0.25, R = 0.625: ±0.375, exact in binary, so torch splits the gradient)
    values_old = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 0.0])
    values = torch.tensor([0.1, 0.9, -0.7, 0.25, -0.25, 1.6, 0.3, 2.5, 1.0], requires_grad=True)
    returns = torch.tensor([0.5, 0.0, 0.2, 1.0, -1.0, 1.25, 0.65, 3.0, 0.625])
    loss = ref_ppo.value_loss(values, values_old, returns, eps)
    loss.backward()
    for clip in (eps, None):
        ref_loss = ref_ppo.value_loss(values.detach(), values_old, returns, clip)
        v = values.detach().numpy()
        fast_loss, grad = fast_ac.value_loss_grad(v, returns.numpy(), values_old.numpy(), clip)
        assert np.isclose(fast_loss, float(ref_loss), rtol=1e-6)
        if clip is not None:
            np.testing.assert_allclose(grad, values.grad.numpy(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_ppo_penalty_update_equals_the_reference(kind):
    """PPO-Penalty: -mean(r Â) + β mean(KL(π_old || π)), its KL gradient written out (``heads.kl_and_grad``);
    three updates on one batch, so π moves away from π_old and the penalty's gradient grows."""
    kw = dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=2, ent_coef=0.01, learning_rate=3e-3, max_grad_norm=0.5)
    ref, fast = pair(lucidrl.PPO, ENVS[kind], variant="kl_penalty", **kw)
    _, batch = rollout_batch(ref, 32)
    m_ref, m_fast = assert_ppo_updates_agree(ref, fast, batch, 3, 0.2, beta=3.0)[-1]
    assert m_ref["diag/kl"] > 1e-4 and "diag/clip_fraction" not in m_fast


# --------------------------------------------------------------------------- A2C
def assert_a2c_updates_agree(ref, fast, batch, updates):
    """``updates`` A2C updates on one ``batch`` under each backend: the same metrics after every update, the same
    weights and optimiser state after the last."""
    for _ in range(updates):
        m_ref = ref_a2c.a2c_update(ref.agent, ref.optimizer, batch, ref.config)
        m_fast = fast_ac.a2c_update(fast.agent, fast.optimizer, batch, fast.config)
        assert_same_metrics(m_ref, m_fast)
    assert_same_modules(ref.agent, fast.agent)
    assert_same_optimizer(ref.optimizer, fast.optimizer)


@pytest.mark.parametrize("rms_prop", [True, False])
@pytest.mark.parametrize("updates", [1, 3])
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_a2c_update_equals_the_reference(kind, updates, rms_prop):
    ref, fast = pair(
        lucidrl.A2C, ENVS[kind], n_envs=4, n_steps=5, ent_coef=0.01, use_rms_prop=rms_prop, normalize_advantage=True
    )
    _, batch = rollout_batch(ref, 5)
    assert_a2c_updates_agree(ref, fast, batch, updates)


# --------------------------------------------------------------------------- TRPO
def assert_trpo_local_models_agree(ref, fast, batch):
    """TRPO's local models on ``batch`` under each backend: the surrogate L, its gradient g, the Fisher-vector
    product and the evaluation of a nearby θ (surrogate and KL) agree."""
    adv = batch["advantages"]
    L_ref, g_ref, fvp_ref, eval_ref, _ = ref_trpo.local_models(ref.agent, batch, adv, 0.1)
    L_fast, g_fast, fvp_fast, eval_fast, _ = fast_trpo.local_models(fast.agent, batch, adv, 0.1)
    assert np.isclose(L_fast, L_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-6)
    v = torch.randn_like(g_ref)
    torch.testing.assert_close(fvp_fast(v), fvp_ref(v), rtol=1e-4, atol=1e-5)  # F v: Jᵀ M J v = double backward
    theta = ref_trpo.get_flat_params(ref.agent.actor_parameters()) + 0.01 * torch.randn_like(g_ref)
    for a, b in zip(eval_ref(theta.clone()), eval_fast(theta.clone())):
        assert np.isclose(float(b), float(a), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_trpo_local_models_equal_the_reference(kind):
    ref, fast = pair(lucidrl.TRPO, ENVS[kind], n_envs=2, n_steps=64, batch_size=32)
    _, batch = rollout_batch(ref, 64)
    assert_trpo_local_models_agree(ref, fast, batch)


def assert_trpo_updates_agree(ref, fast, batch, updates):
    """``updates`` TRPO updates (the natural-gradient policy step, with ``cg_max_steps`` <= 6, then the critic's
    fit) on one ``batch`` under each backend: the same metrics after every update (CG's to 1e-3), the same weights
    (to 1e-4) and critic optimiser state after the last, every line search a success."""
    for _ in range(updates):
        with torch.no_grad():  # each update starts at θ_old, as after a new rollout: π_old is the current policy
            batch["params_old"] = ref.agent.policy_params(batch["obs"])
            batch["logprob_old"] = ref.agent.head.log_prob(batch["params_old"], batch["actions"])
        m_ref = ref_trpo.trpo_policy_step(ref.agent, batch, ref.config, ref_trpo.local_models)
        m_fast = ref_trpo.trpo_policy_step(fast.agent, batch, fast.config, fast_trpo.local_models)
        m_ref.update(
            ref_trpo.fit_critic(ref.agent, ref.critic_optimizer, batch, ref.config, torch.Generator().manual_seed(5))
        )
        m_fast.update(
            fast_trpo.fit_critic(
                fast.agent, fast.critic_optimizer, batch, fast.config, torch.Generator().manual_seed(5)
            )
        )
        # at most 6 CG steps (with more, the step where CG stops at its residual of 1e-10 depends on rounding);
        # CG's residual, the step it solves for and the improvements are small differences of larger numbers,
        # which CG's recursion amplifies: compared to 1e-3
        residuals = m_ref.pop("diag/cg_residual"), m_fast.pop("diag/cg_residual")
        assert np.isclose(*residuals, rtol=1e-2, atol=1e-6), residuals  # the smallest of CG's quantities
        assert_same_metrics(
            m_ref,
            m_fast,
            loose=(
                "diag/expected_improvement",
                "diag/step_norm",
                "diag/surrogate_improvement",
                "loss/policy",
                "diag/kl",
            ),
        )
    assert m_ref["train/line_search_success"] == 1.0
    # the policy moves by the natural-gradient step (norm ~0.15 here), which CG finds to ~1e-4 relative (its
    # recursion amplifies rounding): elements agree to ~1e-4 after three steps; a wrong F or g moves them by ~0.1
    assert_same_modules(ref.agent, fast.agent, atol=1e-4)
    assert_same_optimizer(ref.critic_optimizer, fast.critic_optimizer)


@pytest.mark.parametrize("updates", [1, 3])
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_trpo_update_equals_the_reference(kind, updates):
    ref, fast = pair(lucidrl.TRPO, ENVS[kind], n_envs=2, n_steps=64, batch_size=32, n_critic_updates=2, cg_max_steps=6)
    _, batch = rollout_batch(ref, 64)
    assert_trpo_updates_agree(ref, fast, batch, updates)


# --------------------------------------------------------------------------- VPG / REINFORCE
def vpg_batch(model, n_steps):
    """One rollout of ``n_steps`` (``rollout_batch``), flat, with VPG's ψ and the critic's targets."""
    rollout, _ = rollout_batch(model, n_steps)
    psi, targets = ref_vpg.psi_and_targets(rollout, model.config)
    return rollout.flat(psi=psi, targets=targets)


def assert_vpg_updates_agree(ref, fast, batch, updates):
    """``updates`` VPG / REINFORCE updates (the policy step, then the critic's fit where there is a critic) on one
    ``batch`` under each backend: the same metrics after every update, the same weights and optimiser states after
    the last."""
    for _ in range(updates):
        m_ref = ref_vpg.policy_step(ref.agent, ref.policy_optimizer, batch, ref.config)
        m_fast = fast_vpg.policy_step(fast.agent, fast.policy_optimizer, batch, fast.config)
        if ref.config.uses_critic:
            m_ref.update(ref_vpg.fit_critic(ref.agent, ref.critic_optimizer, batch, ref.config))
            m_fast.update(fast_vpg.fit_critic(fast.agent, fast.critic_optimizer, batch, fast.config))
        assert_same_metrics(m_ref, m_fast)
    assert_same_modules(ref.agent, fast.agent)
    assert_same_optimizer(ref.policy_optimizer, fast.policy_optimizer)
    if ref.config.uses_critic:
        assert_same_optimizer(ref.critic_optimizer, fast.critic_optimizer)


@pytest.mark.parametrize("cls", [lucidrl.VPG, lucidrl.REINFORCE])
@pytest.mark.parametrize("updates", [1, 3])
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_vpg_and_reinforce_updates_equal_the_reference(cls, kind, updates):
    ref, fast = pair(
        cls,
        ENVS[kind],
        n_envs=2,
        n_steps=64,
        ent_coef=0.01,
        max_grad_norm=1.0,
        **({"n_critic_updates": 3} if cls is lucidrl.VPG else {}),
    )
    assert_vpg_updates_agree(ref, fast, vpg_batch(ref, 64), updates)


# --------------------------------------------------------------------------- DQN
def filled_replay(model, n=600):
    """A replay memory of ``n`` CartPole-like transitions (random states, some terminal)."""
    from lucidrl.replay import ReplayBuffer

    g = torch.Generator().manual_seed(2)
    buffer = ReplayBuffer(n, model.observation_space, model.action_space)
    buffer.add(
        torch.randn(n, 4, generator=g),
        torch.randint(0, 2, (n,), generator=g),
        torch.ones(n),
        torch.randn(n, 4, generator=g),
        torch.rand(n, generator=g) < 0.1,
    )
    return buffer


def assert_dqn_round_agrees(ref, fast, buffer, steps):
    """One DQN training round of ``steps`` gradient steps under each backend, from the same weights, a target network
    apart from the online one and the same minibatches of ``buffer``: the same metrics, online and target weights
    and optimiser state."""
    ref.q_net_target.load_state_dict({k: v + 0.01 for k, v in ref.q_net.state_dict().items()})  # θ⁻ ≠ θ
    fast.q_net_target.load_state_dict(ref.q_net_target.state_dict())
    fast_buffer = copy.copy(buffer)
    buffer.generator, fast_buffer.generator = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    m_ref = ref_dqn.dqn_train_round(ref.q_net, ref.q_net_target, ref.optimizer, buffer, steps, ref.config)
    m_fast = fast_dqn.dqn_train_round(fast.q_net, fast.q_net_target, fast.optimizer, fast_buffer, steps, fast.config)
    assert_same_metrics(m_ref, m_fast)
    assert_same_modules(ref.q_net, fast.q_net)
    assert_same_modules(ref.q_net_target, fast.q_net_target)  # untouched by a round, in both
    assert_same_optimizer(ref.optimizer, fast.optimizer)


@pytest.mark.parametrize("double_q", [False, True])
@pytest.mark.parametrize("steps", [1, 3, 64])  # 64: ~1,600 distinct of 4,000 drawn: targets in two chunks
def test_dqn_round_equals_the_reference(steps, double_q):
    kw = dict(buffer_size=1000, batch_size=32, learning_rate=1e-3, double_q=double_q, max_grad_norm=1.0)
    ref, fast = pair(lucidrl.DQN, "CartPole-v1", **kw)
    assert_dqn_round_agrees(ref, fast, filled_replay(ref, n=4000 if steps > 3 else 600), steps)


# --------------------------------------------------------------------------- selection
def test_auto_takes_the_fast_backend_where_it_applies_and_says_why_not_elsewhere():
    m = lucidrl.PPO("CartPole-v1", seed=0, verbose=0)
    assert m.backend_lines == [
        "ppo: fast backend (lucidrl.fast.actor_critic.ppo_update)",
        "rollout: fast backend (lucidrl.fast.actor_critic.rollout_policy)",
        "gae: fast backend (lucidrl.fast.advantages.gae)",
    ]
    m = lucidrl.PPO("CartPole-v1", seed=0, verbose=0, shared_trunk=True)
    assert m.backend_lines[0].startswith("ppo: reference") and "shared trunk" in m.backend_lines[0]
    assert m.backend_lines[1].startswith("rollout: reference") and "shared trunk" in m.backend_lines[1]
    m = lucidrl.PPO("CartPole-v1", seed=0, verbose=0, backend="reference")
    assert m.backend_lines == [
        "ppo: reference (lucidrl.algos.ppo.ppo_update), as asked",
        "rollout: reference (lucidrl.rollout.rollout_policy), as asked",
        "gae: reference (lucidrl.advantages.gae), as asked",
    ]
    m = lucidrl.QLearning("FrozenLake-v1", seed=0, verbose=0)
    assert m.backend_lines == [
        "qlearning: reference (lucidrl.algos.q_learning.apply_td_update); it has no fast backend"
    ]


def test_acting_on_many_rows_takes_the_reference_acting():
    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0, preset=False, n_envs=2, net_arch=[64, 64])
    obs = torch.randn(fast_ac.MAX_ACTING_WORK // torch.get_num_threads() // 64 + 1, 4)
    noise = model.agent.head.noise((obs.shape[0],), torch.Generator().manual_seed(0))
    a_ref, p_ref, v_ref = rollout_policy(model.agent)(obs, noise)
    a_fast, p_fast, v_fast = fast_ac.rollout_policy(model.agent)(obs, noise)
    assert torch.equal(a_fast, a_ref) and torch.equal(p_fast, p_ref) and torch.equal(v_fast, v_ref)  # the same function


@pytest.mark.parametrize(
    "cls, kwargs, what",
    [
        (lucidrl.PPO, {"shared_trunk": True}, "shared trunk"),
        (lucidrl.DQN, {"net_arch": []}, "without hidden layers"),
        (lucidrl.QLearning, {}, "has no fast backend"),
    ],
)
def test_fast_on_an_unsupported_configuration_names_what_is_unsupported(cls, kwargs, what):
    env = "FrozenLake-v1" if cls is lucidrl.QLearning else "CartPole-v1"
    with pytest.raises(ConfigError, match=f"backend='fast'.*{what}"):
        cls(env, seed=0, verbose=0, backend="fast", **kwargs)


@pytest.mark.parametrize("first, second", [("fast", "reference"), ("reference", "fast")])
def test_a_checkpoint_continues_under_the_other_backend_with_its_optimiser_state(tmp_path, first, second):
    kw = dict(seed=0, verbose=0, n_envs=2, n_steps=16, batch_size=16, n_epochs=2, net_arch=[16, 16])
    model = lucidrl.PPO("CartPole-v1", backend=first, **kw)
    model.learn(64)
    model.save(tmp_path / "m")
    loaded = lucidrl.load(tmp_path / "m", backend=second)
    assert loaded.config.backend == second and loaded.backend_lines[0].startswith(
        "ppo: fast" if second == "fast" else "ppo: reference"
    )
    assert_same_modules(model.agent, loaded.agent)
    sa, sb = model.optimizer.state_dict()["state"], loaded.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])  # exactly what was saved
    loaded.learn(64, reset_num_timesteps=False)  # and it continues from there
    assert loaded.num_timesteps == 128
    assert all(float(s["step"]) > float(sa[0]["step"]) for s in loaded.optimizer.state_dict()["state"].values())


def test_the_choice_is_saved_in_the_config_and_logged_when_learn_starts(tmp_path, capsys):
    model = lucidrl.PPO(
        "CartPole-v1",
        seed=0,
        verbose=1,
        n_envs=2,
        n_steps=16,
        batch_size=16,
        net_arch=[8],
        backend="reference",
        run_dir=tmp_path / "run",
    )
    model.learn(32)
    out = capsys.readouterr().out
    assert "backend: ppo: reference (lucidrl.algos.ppo.ppo_update), as asked" in out
    assert "backend: rollout: reference" in out and "1 CPU thread(s)" in out
    import json

    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["config"]["backend"] == "reference"


def test_learn_holds_its_threads_and_gives_the_users_back():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []

        def record(model, metrics):
            blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
            seen.append((torch.get_num_threads(), max(blas) if blas else 1))

        lucidrl.PPO("CartPole-v1", seed=0, verbose=0, n_envs=2, n_steps=16, batch_size=16, net_arch=[8]).learn(
            32, callback=record
        )
        assert seen and all(s == (1, 1) for s in seen)  # "auto": one thread for an MLP, torch and NumPy's BLAS
        assert torch.get_num_threads() == 2  # the user's setting again
        seen.clear()
        lucidrl.PPO(
            "CartPole-v1", seed=0, verbose=0, n_envs=2, n_steps=16, batch_size=16, net_arch=[8], torch_threads=2
        ).learn(32, callback=record)
        assert seen and all(s == (2, 1) for s in seen)  # NumPy's BLAS stays on one (lucidrl.threads' docstring)
    finally:
        torch.set_num_threads(before)


_CHURN = """
import json, resource, sys
import numpy as np
import lucidrl
from lucidrl import threads

def faults():  # minor page faults of freeing and allocating 16 arrays of 1 MiB, 50 times (a large minibatch's work)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        xs = [np.ones((4096, 64), np.float32) for _ in range(16)]
        del xs
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
untuned = faults()
lucidrl.PPO("CartPole-v1", seed=0, verbose=0, n_envs=2, n_steps=16, batch_size=16, net_arch=[8]).learn(32)
print(json.dumps({"tuned": threads.tune_malloc(), "untuned": untuned, "after_learn": faults()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_learn_stops_glibc_from_faulting_in_every_minibatchs_memory_afresh():
    """lucidrl.threads.tune_malloc: in a fresh process, a minibatch-sized alloc/free loop faults its pages in every
    time (glibc hands freed blocks back); after learn() it reuses them. LUCIDRL_TUNE_MALLOC=0 leaves glibc alone."""
    import json
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    runs = []
    for opt_out in ("1", "0"):
        out = subprocess.run(
            [sys.executable, "-c", _CHURN],
            env={**env, "LUCIDRL_TUNE_MALLOC": opt_out},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    tuned, left_alone = runs
    assert tuned["tuned"] and tuned["untuned"] > 50_000 and tuned["after_learn"] < tuned["untuned"] / 20
    assert not left_alone["tuned"] and left_alone["after_learn"] > 50_000
