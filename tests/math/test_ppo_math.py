"""PPO's surrogate objectives at and around θ_old, its diagnostics, the β rule, the categorical head, and the
fast backend's pieces that its update-by-update equality (``tests/math/test_backends.py``) does not isolate:
the written-out surrogate gradient, the sigmoid tanh, the flat optimiser across a reload, the gradient clip."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from lucidrl.algos.ppo import (
    adapt_beta,
    approx_kl,
    clipped_surrogate,
    kl_penalty_surrogate,
    update_diagnostics,
    value_loss,
)
from lucidrl.fast.actor_critic import clipped_surrogate_grad
from lucidrl.fast.flat import FlatOptimizer, FlatParams, clip_grad_norm, flat_optimizer
from lucidrl.fast.mlp import TorchOps
from lucidrl.networks import ActorCritic, CategoricalHead


def _tiny_policy(seed=0):
    torch.manual_seed(seed)
    ac = ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4), net_arch=[8])
    obs = torch.randn(32, 3)
    with torch.no_grad():
        logits_old = ac.policy_params(obs)
        actions = ac.head.sample(logits_old)
        logprob_old = ac.head.log_prob(logits_old, actions)
    adv = torch.randn(32)
    return ac, obs, actions, logits_old, logprob_old, adv


def _grad(loss, module):
    module.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in module.actor.parameters()])


def _diagnostics(head, params, ratio, clip_range=0.2):
    """The update's diagnostics (``update_diagnostics``) of one gradient step that saw these ratios."""
    seen = {
        "params": [params.detach()],
        "ratio": [ratio],
        "pg": [torch.tensor(0.0)],
        "v": [torch.tensor(0.0)],
        "grad_norm": [torch.tensor(0.0)],
        "kl": [],
    }
    return update_diagnostics(head, seen, 1, clip_range, "clip")


def test_at_theta_old_the_ratio_is_one_and_nothing_is_clipped():
    ac, obs, actions, _, logprob_old, adv = _tiny_policy()
    params = ac.policy_params(obs)
    logprob = ac.head.log_prob(params, actions)
    loss, ratio = clipped_surrogate(logprob, logprob_old, adv, 0.2)
    torch.testing.assert_close(loss, -adv.mean())
    torch.testing.assert_close(ratio, torch.ones(32))
    assert not ratio.requires_grad  # the ratios are for the diagnostics
    m = _diagnostics(ac.head, params, ratio)
    assert m["diag/clip_fraction"] == 0.0
    assert abs(m["diag/approx_kl"]) < 1e-6
    torch.testing.assert_close(m["diag/entropy"], float(ac.head.entropy(params.detach()).mean()))


def test_approx_kl_is_the_k3_estimator_and_never_negative():
    ratio = torch.tensor([0.5, 1.0, 2.0, 1.2])
    torch.testing.assert_close(approx_kl(ratio), ((ratio - 1) - ratio.log()).mean())
    assert approx_kl(ratio) > 0 and approx_kl(torch.ones(5)) == 0


@pytest.mark.parametrize("variant", ["clip", "kl_penalty"])
def test_surrogate_gradient_at_theta_old_equals_vanilla_policy_gradient(variant):
    ac, obs, actions, logits_old, logprob_old, adv = _tiny_policy(1)
    logits = ac.policy_params(obs)
    logprob = ac.head.log_prob(logits, actions)
    if variant == "clip":
        loss, _ = clipped_surrogate(logprob, logprob_old, adv, 0.2)
    else:  # the KL term has zero gradient at θ_old (its minimum)
        loss, _ = kl_penalty_surrogate(logprob, logprob_old, adv, ac.head.kl(logits_old, logits), beta=3.0)
    g_ppo = _grad(loss, ac)
    vpg_loss = -(ac.head.log_prob(ac.policy_params(obs), actions) * adv).mean()  # -E[log π(a|s) Â]
    g_vpg = _grad(vpg_loss, ac)
    torch.testing.assert_close(g_ppo, g_vpg, rtol=1e-5, atol=1e-7)


def test_clipping_removes_the_gradient_only_where_the_min_picks_the_clipped_term():
    logprob_old = torch.zeros(4)
    # ratios 1.5, 0.5, 1.5, 0.5 with advantages +, -, -, +
    logprob = torch.log(torch.tensor([1.5, 0.5, 1.5, 0.5])).requires_grad_()
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    loss, ratio = clipped_surrogate(logprob, logprob_old, adv, 0.2)
    loss.backward()
    g = logprob.grad
    # A>0, r>1+ε and A<0, r<1-ε: the objective is flat (no incentive to move further)
    assert g[0] == 0 and g[1] == 0
    # A<0, r>1+ε and A>0, r<1-ε: the unclipped term is the minimum, the gradient pulls back
    assert g[2] != 0 and g[3] != 0
    assert _diagnostics(CategoricalHead(2), torch.zeros(4, 2), ratio)["diag/clip_fraction"] == 1.0
    # value of the objective: mean of min(rA, clip(r)A)
    torch.testing.assert_close(loss, -torch.tensor([1.2, -0.8, -1.5, 0.5]).mean())


def test_adaptive_beta_rule_of_section_4():
    assert adapt_beta(1.0, kl=0.001, d_targ=0.01) == 0.5
    assert adapt_beta(1.0, kl=0.1, d_targ=0.01) == 2.0
    assert adapt_beta(1.0, kl=0.01, d_targ=0.01) == 1.0
    assert adapt_beta(1.0, kl=0.014, d_targ=0.01) == 1.0


def test_value_clipping_takes_the_pessimistic_error():
    v_old = torch.tensor([0.0, 0.0])
    v = torch.tensor([1.0, -1.0])
    ret = torch.tensor([2.0, 0.0])
    # unclipped errors: 1, 1; clipped (±0.5): v_c = 0.5, -0.5 -> errors 2.25, 0.25; max -> 2.25, 1
    torch.testing.assert_close(value_loss(v, v_old, ret, 0.5), torch.tensor((2.25 + 1.0) / 2))
    torch.testing.assert_close(value_loss(v, v_old, ret, None), torch.tensor(1.0))


def test_categorical_head_matches_torch_distributions():
    torch.manual_seed(0)
    logits, logits2 = torch.randn(50, 5), torch.randn(50, 5)
    head = CategoricalHead(5)
    ref, ref2 = torch.distributions.Categorical(logits=logits), torch.distributions.Categorical(logits=logits2)
    a = ref.sample()
    torch.testing.assert_close(head.log_prob(logits, a), ref.log_prob(a))
    torch.testing.assert_close(head.entropy(logits), ref.entropy())
    torch.testing.assert_close(head.kl(logits, logits2), torch.distributions.kl_divergence(ref, ref2))
    torch.testing.assert_close(head.mode(logits), ref.probs.argmax(-1))


def test_gumbel_max_sampling_has_softmax_frequencies():
    torch.manual_seed(0)
    logits = torch.tensor([0.0, 1.0, -1.0, 2.0])
    samples = CategoricalHead(4).sample(logits.expand(200_000, 4))
    freq = torch.bincount(samples, minlength=4).float() / samples.numel()
    torch.testing.assert_close(freq, logits.softmax(-1), atol=4e-3, rtol=0)  # ~4 standard errors


def test_the_fast_cores_sigmoid_tanh_equals_torch_tanh_in_value_and_gradient():
    """The fast core computes tanh of large batches as 2 sigmoid(2z) - 1, and its derivative as 1 - h² from the
    output (``lucidrl.fast.mlp.TorchOps``): both against torch.tanh and autograd."""
    x = torch.linspace(-12, 12, 256 * 64).reshape(256, 64).requires_grad_()
    eye, zero = torch.eye(64)[None], torch.zeros(1, 1, 64)  # z = x Iᵀ + 0 = x
    y = TorchOps.hidden(x.detach(), eye, zero, act="tanh")[0]
    y2 = torch.tanh(x)
    torch.testing.assert_close(y, y2.detach(), atol=1e-6, rtol=0)
    g = torch.randn(256, 64)
    y2.backward(g)
    torch.testing.assert_close(TorchOps.act_grad_(g.clone(), y, "tanh"), x.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_the_fast_flat_optimiser_follows_torchs_step_across_a_state_reload_and_a_schedule(kind):
    """``FlatOptimizer`` steps the torch optimiser's own state, laid out flat; after ``load_state_dict`` (a
    checkpoint) it takes the loaded state over, and it reads the learning rate at every step."""
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    b = copy.deepcopy(a)
    make = (
        (lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=1e-5, fused=True))
        if kind == "adam"
        else (lambda ps: torch.optim.RMSprop(ps, lr=7e-3, alpha=0.99, eps=1e-5))
    )
    oa, ob = make(a.parameters()), make(b.parameters())
    assert FlatOptimizer.unsupported(oa, list(a.parameters())) is None
    flat = FlatParams(list(a.parameters()))
    for i in range(30):
        x = torch.randn(11, 5)
        if i == 0:  # the first step by torch creates the state, which the flat optimiser then takes over
            oa.zero_grad()
            a(x).pow(2).sum().backward()
            oa.step()
        else:
            a.zero_grad()
            a(x).pow(2).sum().backward()
            flat.grad.copy_(torch.cat([p.grad.reshape(-1) for p in a.parameters()]))
            flat_optimizer(oa, flat).step()
        ob.zero_grad()
        b(x).pow(2).sum().backward()
        ob.step()
        if i == 10:
            oa.load_state_dict(copy.deepcopy(oa.state_dict()))  # a checkpoint reload in the middle
        if i == 20:
            for group in oa.param_groups + ob.param_groups:
                group["lr"] = 1e-3  # a schedule changes the learning rate between steps
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
    for k in sb:
        assert float(sa[k]["step"]) == float(sb[k]["step"]) == 30.0
        for name in sb[k]:
            torch.testing.assert_close(sa[k][name], sb[k][name], rtol=1e-5, atol=1e-9)


def test_the_fast_backend_leaves_optimisers_it_does_not_cover_to_the_reference():
    a1, a2 = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    params = list(a1.parameters()) + list(a2.parameters())
    two_groups = torch.optim.Adam([{"params": a1.parameters()}, {"params": a2.parameters(), "lr": 1e-2}], lr=1e-3)
    assert "several parameter groups" in FlatOptimizer.unsupported(two_groups, params)
    assert "options" in FlatOptimizer.unsupported(torch.optim.RMSprop(params, lr=0.1, momentum=0.9), params)
    assert "options" in FlatOptimizer.unsupported(torch.optim.RMSprop(params, lr=0.1, centered=True), params)
    assert "SGD" in FlatOptimizer.unsupported(torch.optim.SGD(params, lr=0.1), params)


@pytest.mark.parametrize("max_norm", [0.01, 1e6, None])
def test_the_fast_clip_grad_norm_matches_torch(max_norm):
    torch.manual_seed(0)
    a = torch.nn.Linear(6, 4)
    a(torch.randn(9, 6)).sum().backward()
    flat = torch.cat([p.grad.reshape(-1) for p in a.parameters()])
    n1 = clip_grad_norm(flat, max_norm)
    n2 = torch.nn.utils.clip_grad_norm_(a.parameters(), max_norm if max_norm is not None else float("inf"))
    assert n1 == pytest.approx(float(n2), rel=1e-6)
    torch.testing.assert_close(flat, torch.cat([p.grad.reshape(-1) for p in a.parameters()]))


def test_the_written_out_clipped_surrogate_has_the_references_value_and_gradient():
    torch.manual_seed(0)
    logprob_old = torch.randn(500) - 1
    adv = torch.randn(500)
    # ratios spread well beyond [1-ε, 1+ε] on both sides, so every case of the min occurs
    base = (logprob_old + 0.5 * torch.randn(500)).detach()
    a = base.clone().requires_grad_()
    ref, ratio_ref = clipped_surrogate(a, logprob_old, adv, 0.2)
    loss, d_logprob, ratio = clipped_surrogate_grad(base.numpy(), logprob_old.numpy(), adv.numpy(), 0.2)
    assert loss == pytest.approx(float(ref.detach()), rel=1e-6)
    ref.backward()
    np.testing.assert_allclose(d_logprob, a.grad.numpy(), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(ratio, ratio_ref.numpy(), rtol=1e-6)
    assert (a.grad == 0).float().mean() > 0.2  # a good share of the samples were clipped


# --------------------------------------------------------------------------- one update against SB3
@pytest.mark.parametrize("env_id, target_kl", [("Pendulum-v1", None), ("CartPole-v1", None), ("CartPole-v1", 0.002)])
def test_one_update_equals_sb3_ppo_train_on_the_same_rollout(env_id, target_kl):
    """The same rollout (terminations inside and at the end), the same initial weights and a fresh Adam: lucidrl's
    reference ppo_update and SB3's PPO.train end with the same weights (log σ included). One minibatch per epoch, so
    the shuffles cannot differ; four epochs with clipping, an entropy bonus and gradient clipping; with target_kl
    both stop after the same epoch. Advantages: lucidrl's gae, SB3's compute_returns_and_advantage."""
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env

    from lucidrl.algos.ppo import PPO, ppo_update
    from tests.math.sb3_twins import assert_same_weights, train_twin_on_one_rollout

    T, N = 16, 4
    kw = dict(n_steps=T, batch_size=T * N, n_epochs=4, learning_rate=3e-3, ent_coef=0.01, vf_coef=0.5,
              max_grad_norm=0.5, clip_range=0.2, gae_lambda=0.9, gamma=0.95, target_kl=target_kl)  # fmt: skip
    env = gym.make_vec(env_id, N, vectorization_mode="sync")
    ours = PPO(env, preset=False, n_envs=N, seed=0, verbose=0, backend="reference", **kw)
    theirs = sb3.PPO("MlpPolicy", make_vec_env(env_id, n_envs=N, seed=0), seed=0, device="cpu", **kw)
    first = ours.agent.actor[0].weight.detach().clone()
    batch = train_twin_on_one_rollout(ours, theirs, env, T, N, kw["gamma"], kw["gae_lambda"], kw["learning_rate"])
    m = ppo_update(ours.agent, ours.optimizer, batch, ours.config, 0.2, None, 1.0)
    assert m["train/epochs"] == (4 if target_kl is None else 3)  # (the early stop is seen)
    assert_same_weights(ours, theirs, atol=1e-6)
    assert (ours.agent.actor[0].weight - first).abs().max() > 1e-3  # the update moved the weights (both the same way)
