"""The heads for MultiDiscrete and MultiBinary actions (lucidrl/networks.py ``MultiCategoricalHead``,
``BernoulliHead``) and the MultiDiscrete observation encoder (``MultiOneHot``), checked against
torch.distributions, against sampling frequencies, and through TRPO's Fisher-vector product against the
explicit Hessian of the mean KL."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Categorical, kl_divergence
from torch.func import functional_call

from lucidrl.algos.trpo import fisher_vector_product, mean_kl
from lucidrl.errors import EnvError
from lucidrl.networks import ActorCritic, BernoulliHead, MultiCategoricalHead, MultiOneHot, make_head, obs_encoder

NVEC = [3, 2, 4]


def _logits(n=64, width=9, seed=0):  # 9 = sum(NVEC)
    return 2.0 * torch.randn(n, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _components(params):
    return [Categorical(logits=chunk) for chunk in params.split(NVEC, -1)]


# --------------------------------------------------------------------------- against torch.distributions
def test_multicategorical_is_independent_categoricals():
    head = MultiCategoricalHead(NVEC)
    p, q = _logits(), _logits(seed=1)
    ref_p, ref_q = _components(p), _components(q)
    a = torch.stack([c.sample((5,)) for c in ref_p], -1)  # [5, 64, 3]: five actions in each state
    want = sum(c.log_prob(a[..., i]) for i, c in enumerate(ref_p))
    torch.testing.assert_close(head.log_prob(p.expand(5, -1, -1), a), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head.entropy(p), sum(c.entropy() for c in ref_p), rtol=1e-12, atol=1e-12)
    kl = sum(kl_divergence(cp, cq) for cp, cq in zip(ref_p, ref_q))
    torch.testing.assert_close(head.kl(p, q), kl, rtol=1e-12, atol=1e-12)
    assert torch.all(head.kl(p, p).abs() < 1e-12) and torch.all(head.kl(p, q) > 0)
    torch.testing.assert_close(head.mode(p), torch.stack([c.probs.argmax(-1) for c in ref_p], -1))
    assert (head.n_params, head.action_shape, head.action_dtype) == (9, (3,), torch.long)


def test_bernoulli_head_is_independent_coins():
    head = BernoulliHead(5)
    p, q = _logits(width=5), _logits(width=5, seed=1)
    ref_p, ref_q = Bernoulli(logits=p), Bernoulli(logits=q)
    a = ref_p.sample((5,)).long()
    torch.testing.assert_close(head.log_prob(p, a), ref_p.log_prob(a.double()).sum(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head.entropy(p), ref_p.entropy().sum(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head.kl(p, q), kl_divergence(ref_p, ref_q).sum(-1), rtol=1e-10, atol=1e-12)
    assert torch.all(head.kl(p, p).abs() < 1e-12) and torch.all(head.kl(p, q) > 0)
    torch.testing.assert_close(head.mode(p), (ref_p.probs > 0.5).long())


def test_bernoulli_log_probabilities_stay_finite_at_extreme_logits():
    """log(1 - σ(60)) is -60, not log(0): the head works with log σ(-l), never with 1 - p."""
    head = BernoulliHead(2)
    logits = torch.tensor([[60.0, -60.0]])
    torch.testing.assert_close(head.log_prob(logits, torch.tensor([[0, 1]])), torch.tensor([-120.0]))
    assert torch.isfinite(head.entropy(logits)).all() and torch.isfinite(head.kl(logits, -logits)).all()


# --------------------------------------------------------------------------- sampling
def test_samples_have_each_component_s_probabilities_within_sampling_error():
    head = MultiCategoricalHead(NVEC)
    params = _logits(n=1).expand(40_000, -1)
    a = head.sample(params, torch.Generator().manual_seed(0))
    assert a.shape == (40_000, 3) and a.dtype == torch.long
    for i, probs in enumerate(params[0].split(NVEC)):
        freq = torch.bincount(a[:, i], minlength=NVEC[i]).double() / a.shape[0]
        p = probs.softmax(-1)
        assert ((freq - p).abs() <= 5 * (p * (1 - p) / a.shape[0]).sqrt() + 1e-12).all(), (freq, p)
    # independent components: the joint frequency of (0, 0) is the product of the marginals
    p0 = [chunk.softmax(-1)[0] for chunk in params[0].split(NVEC)]
    joint = ((a[:, 0] == 0) & (a[:, 1] == 0)).double().mean()
    assert abs(joint - p0[0] * p0[1]) < 5 * math.sqrt(p0[0] * p0[1] / a.shape[0])
    # the same generator state gives the same actions
    torch.testing.assert_close(
        head.sample(params[:5], torch.Generator().manual_seed(3)),
        head.sample(params[:5], torch.Generator().manual_seed(3)),
    )


def test_bernoulli_samples_have_the_coins_probabilities_within_sampling_error():
    head = BernoulliHead(3)
    logits = torch.tensor([[-2.0, 0.0, 1.5]]).expand(40_000, 3)
    a = head.sample(logits, torch.Generator().manual_seed(0))
    assert set(a.unique().tolist()) == {0, 1} and a.dtype == torch.long
    p = logits[0].sigmoid().double()
    assert ((a.double().mean(0) - p).abs() <= 5 * (p * (1 - p) / a.shape[0]).sqrt()).all()


# --------------------------------------------------------------------------- TRPO's Fisher-vector product
@pytest.mark.parametrize(
    "space", [gym.spaces.MultiDiscrete(NVEC), gym.spaces.MultiBinary(3)], ids=["multidiscrete", "multibinary"]
)
def test_fvp_equals_the_hessian_of_the_mean_kl(space):
    """F v = ∇²_θ mean KL(π_old || π_θ) v at θ = θ_old, for a policy with this head (float64, exact)."""
    torch.manual_seed(0)
    agent = ActorCritic(gym.spaces.Box(-1, 1, (4,)), space, [8], algo="TRPO", share_encoder=False).double()
    actor, head = agent.actor, agent.head
    obs = torch.randn(16, 4, dtype=torch.float64)
    for p in actor.parameters():  # far from uniform
        p.data.normal_(0.0, 1.0)
    with torch.no_grad():
        params_old = actor(obs)
    names = [n for n, _ in actor.named_parameters()]
    shapes = [p.shape for p in actor.parameters()]
    theta_old = torch.cat([p.detach().reshape(-1) for p in actor.parameters()])

    def kl_of(theta):
        chunks = theta.split([math.prod(s) for s in shapes])
        params = functional_call(actor, {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}, (obs,))
        return mean_kl(head, params_old, params)

    hessian = torch.autograd.functional.hessian(kl_of, theta_old)
    fvp = fisher_vector_product(mean_kl(head, params_old, actor(obs)), list(actor.parameters()), 0.0)
    for seed in range(3):
        v = torch.randn(theta_old.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fvp(v), hessian @ v, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(hessian).min() > -1e-10  # a Fisher matrix: positive semi-definite


# --------------------------------------------------------------------------- observations and spaces
def test_multidiscrete_observations_are_the_components_one_hots_side_by_side():
    encoder, width = obs_encoder(gym.spaces.MultiDiscrete(NVEC), "PPO")
    assert isinstance(encoder, MultiOneHot) and width == 9
    obs = torch.tensor([[0, 0, 0], [2, 1, 3], [1, 0, 2]])
    want = torch.cat([F.one_hot(obs[:, i], n) for i, n in enumerate(NVEC)], -1).float()
    torch.testing.assert_close(encoder(obs), want)
    torch.testing.assert_close(encoder(obs[None]), want[None])  # leading dimensions kept ([T, N, 3])
    encoder, width = obs_encoder(gym.spaces.MultiBinary(4), "PPO")
    assert width == 4 and encoder(torch.tensor([[1, 0, 1, 1]], dtype=torch.int8)).dtype == torch.float32


def test_multidimensional_multi_spaces_are_env_errors_that_name_the_fix():
    for space in (gym.spaces.MultiDiscrete(np.full((2, 2), 3)), gym.spaces.MultiBinary([2, 2])):
        with pytest.raises(EnvError, match=r"(?s)action space of one dimension.*gymnasium\.ActionWrapper"):
            make_head(space, "PPO")
