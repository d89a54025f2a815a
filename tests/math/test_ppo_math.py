"""PPO's surrogate objectives at and around θ_old, the β rule, the categorical head, and the fast kernels."""

import gymnasium as gym
import pytest
import torch

from lucidrl.algos.ppo import FusedClippedSurrogate, adapt_beta, clipped_surrogate, kl_penalty_surrogate, value_loss
from lucidrl.networks import ActorCritic, CategoricalHead, Tanh
from lucidrl.optim import Adam, clip_grad_norm


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


def test_at_theta_old_the_ratio_is_one_and_nothing_is_clipped():
    ac, obs, actions, _, logprob_old, adv = _tiny_policy()
    logprob = ac.head.log_prob(ac.policy_params(obs), actions)
    loss, m = clipped_surrogate(logprob, logprob_old, adv, 0.2)
    torch.testing.assert_close(loss, -adv.mean())
    assert m["diag/clip_fraction"].item() == 0.0
    assert abs(m["diag/approx_kl"].item()) < 1e-6


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
    loss, m = clipped_surrogate(logprob, logprob_old, adv, 0.2)
    loss.backward()
    g = logprob.grad
    # A>0, r>1+ε and A<0, r<1-ε: the objective is flat (no incentive to move further)
    assert g[0] == 0 and g[1] == 0
    # A<0, r>1+ε and A>0, r<1-ε: the unclipped term is the minimum, the gradient pulls back
    assert g[2] != 0 and g[3] != 0
    assert m["diag/clip_fraction"].item() == 1.0
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


def test_fast_tanh_equals_torch_tanh_in_value_and_gradient():
    x = torch.linspace(-12, 12, 256 * 64).reshape(256, 64).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    y, y2 = Tanh()(x), torch.tanh(x2)
    torch.testing.assert_close(y, y2, atol=1e-6, rtol=0)
    g = torch.randn(256, 64)
    y.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-6, rtol=1e-5)


def test_lean_adam_follows_torch_adam_exactly_including_after_a_state_reload():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    oa, ob = Adam(a.parameters(), lr=1e-2, eps=1e-5), torch.optim.Adam(b.parameters(), lr=1e-2, eps=1e-5)
    for i in range(30):
        x = torch.randn(7, 5)
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
        if i == 10:
            oa.load_state_dict(oa.state_dict())
        if i == 20:
            for g in oa.param_groups + ob.param_groups:
                g["lr"] = 3e-3  # a schedule changes the learning rate between steps
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    assert float(oa.state_dict()["state"][0]["step"]) == 30.0


@pytest.mark.parametrize("max_norm", [0.01, 1e6])
def test_clip_grad_norm_matches_torch(max_norm):
    torch.manual_seed(0)
    a, b = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(9, 6)
    a(x).sum().backward()
    b(x).sum().backward()
    n1 = clip_grad_norm(list(a.parameters()), max_norm)
    n2 = torch.nn.utils.clip_grad_norm_(b.parameters(), max_norm)
    torch.testing.assert_close(n1, n2)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_fused_clipped_surrogate_has_the_same_value_and_gradient():
    torch.manual_seed(0)
    logprob_old = torch.randn(500) - 1
    adv = torch.randn(500)
    # ratios spread well beyond [1-ε, 1+ε] on both sides, so every case of the min occurs
    base = (logprob_old + 0.5 * torch.randn(500)).detach()
    a, b = base.clone().requires_grad_(), base.clone().requires_grad_()
    ref, m_ref = clipped_surrogate(a, logprob_old, adv, 0.2)
    fused, ratio = FusedClippedSurrogate.apply(b, logprob_old, adv, 0.2)
    torch.testing.assert_close(fused, ref)
    (3.0 * ref).backward()
    (3.0 * fused).backward()
    torch.testing.assert_close(b.grad, a.grad)
    assert (a.grad == 0).float().mean() > 0.2  # a good share of the samples were clipped
    assert not ratio.requires_grad


def test_lean_adam_with_two_groups_steps_each_group_once():
    torch.manual_seed(0)
    a1, a2, b1, b2 = (torch.nn.Linear(3, 2) for _ in range(4))
    b1.load_state_dict(a1.state_dict())
    b2.load_state_dict(a2.state_dict())
    oa = Adam([{"params": a1.parameters()}, {"params": a2.parameters(), "lr": 1e-2}], lr=1e-3)
    ob = torch.optim.Adam([{"params": b1.parameters()}, {"params": b2.parameters(), "lr": 1e-2}], lr=1e-3)
    for i in range(5):
        x = torch.randn(4, 3)
        for (m1, m2, o) in ((a1, a2, oa), (b1, b2, ob)):
            o.zero_grad()
            # the second group gets gradients only from step 2 on: its state is created late
            (m1(x).sum() + (m2(x).sum() if i >= 2 else 0.0)).backward()
            o.step()
    for p, q in zip(list(a1.parameters()) + list(a2.parameters()), list(b1.parameters()) + list(b2.parameters())):
        torch.testing.assert_close(p, q)
