"""The diagonal Gaussian policy for Box actions (lucidrl/networks.py ``DiagGaussianHead``,
``StateIndependentLogStd``), checked against torch.distributions and autograd; TRPO's Fisher-vector
product and PPO's surrogate gradient on a Gaussian policy; clipping only at the env boundary. The fast
backend's Gaussian head is tested equal to this one in ``tests/math/test_backends.py``."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence
from torch.func import functional_call

from lucidrl.algos.ppo import PPO, clipped_surrogate
from lucidrl.algos.trpo import fisher_vector_product, mean_kl
from lucidrl.algos.vpg import policy_gradient_loss
from lucidrl.errors import EnvError
from lucidrl.networks import LOG_STD_MAX, LOG_STD_MIN, ActorCritic, DiagGaussianHead, StateIndependentLogStd, make_head
from lucidrl.rollout import RolloutCollector, rollout_policy

BOX_OBS, BOX_ACT = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-2, 2, (3,))


def _params(n=64, d=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, d, generator=g, dtype=dtype)
    log_std = 0.5 * torch.randn(n, d, generator=g, dtype=dtype)
    return torch.cat([mean, log_std], -1), mean, log_std


# --------------------------------------------------------------------------- the head against torch.distributions
def test_log_prob_entropy_kl_equal_torch_distributions():
    head = DiagGaussianHead(3)
    p, mean, log_std = _params()
    q, mean2, log_std2 = _params(seed=1)
    ref, ref2 = Normal(mean, log_std.exp()), Normal(mean2, log_std2.exp())
    a = ref.sample((5,))  # [5, 64, 3]: broadcasting over leading dims
    torch.testing.assert_close(head.log_prob(p, a), ref.log_prob(a).sum(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head.entropy(p), ref.entropy().sum(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head.kl(p, q), kl_divergence(ref, ref2).sum(-1), rtol=1e-12, atol=1e-12)
    assert torch.all(head.kl(p, p).abs() < 1e-12) and torch.all(head.kl(p, q) > 0)
    torch.testing.assert_close(head.mode(p), mean)


def test_samples_have_the_policy_mean_and_std_within_sampling_error():
    head = DiagGaussianHead(2)
    p = torch.tensor([[0.5, -1.0, math.log(0.3), math.log(2.0)]]).expand(40_000, 4)
    a = head.sample(p, torch.Generator().manual_seed(0)).double()
    n, mu, sd = a.shape[0], torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0])
    # standard errors: of the mean sd/sqrt(n), of the sample std about sd/sqrt(2n); 5 of them allowed
    assert ((a.mean(0) - mu).abs() < 5 * sd / math.sqrt(n)).all()
    assert ((a.std(0) - sd).abs() < 5 * sd / math.sqrt(2 * n)).all()
    # the same generator state gives the same actions (the model's own RNG drives sampling)
    torch.testing.assert_close(
        head.sample(p[:5], torch.Generator().manual_seed(3)), head.sample(p[:5], torch.Generator().manual_seed(3))
    )


def test_make_head_takes_a_1d_box_and_names_the_fix_for_other_shapes():
    head = make_head(gym.spaces.Box(-1, 1, (6,)), "PPO")
    assert isinstance(head, DiagGaussianHead) and head.n_params == 12 and head.action_shape == (6,)
    with pytest.raises(EnvError, match="1-D|one dimension"):
        make_head(gym.spaces.Box(-1, 1, (2, 3)), "PPO")
    with pytest.raises(EnvError, match="Discrete, MultiDiscrete, MultiBinary or 1-D Box"):
        make_head(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), "PPO")


# --------------------------------------------------------------------------- the bounded, state-independent log σ
def test_log_std_is_state_independent_and_bounded_in_value():
    torch.manual_seed(0)
    ac = ActorCritic(BOX_OBS, BOX_ACT, [8], log_std_init=-0.5)
    params = ac.policy_params(torch.randn(10, 4))
    assert params.shape == (10, 6)
    torch.testing.assert_close(params[:, 3:], torch.full((10, 3), -0.5))
    tail = ac.actor[-1]
    with torch.no_grad():
        tail.log_std.copy_(torch.tensor([-1e4, 1e4, 0.0]))
    log_std = tail(torch.zeros(1, 3))[0, 3:]
    assert log_std.tolist() == [LOG_STD_MIN, LOG_STD_MAX, 0.0]
    lp = ac.head.log_prob(tail(torch.zeros(1, 3)), torch.zeros(1, 3))
    assert torch.isfinite(lp).all()


def test_log_std_gradient_never_pushes_further_out_but_pulls_back_in():
    layer = StateIndependentLogStd(3)
    with torch.no_grad():
        layer.log_std.copy_(torch.tensor([-25.0, 0.0, 5.0]))
    # loss = sum(log σ): descent pushes every log σ down; the one below LOG_STD_MIN gets no push
    layer(torch.zeros(1, 3))[0, 3:].sum().backward()
    assert layer.log_std.grad.tolist() == [0.0, 1.0, 1.0]  # the one above LOG_STD_MAX is pulled back
    layer.log_std.grad = None
    (-layer(torch.zeros(1, 3))[0, 3:].sum()).backward()  # descent pushes log σ up
    assert layer.log_std.grad.tolist() == [-1.0, -1.0, 0.0]


def test_log_std_stays_finite_and_bounded_under_an_optimiser_that_drives_it_down_then_up():
    """Minimising the entropy drives σ -> 0 (the collapse); the bound holds it, and it can recover."""
    head, layer = DiagGaussianHead(2), StateIndependentLogStd(2)
    opt = torch.optim.Adam(layer.parameters(), lr=1.0)
    for sign in (1.0, -1.0):
        for _ in range(60):
            opt.zero_grad()
            p = layer(torch.zeros(4, 2))
            (sign * head.entropy(p).mean()).backward()
            opt.step()
            assert torch.isfinite(layer.log_std).all()
            assert torch.isfinite(head.log_prob(p, torch.ones(4, 2))).all()
        bound = LOG_STD_MIN if sign > 0 else LOG_STD_MAX
        torch.testing.assert_close(layer.bounded_log_std().detach(), torch.full((2,), bound))


# --------------------------------------------------------------------------- acting, and log σ among the weights
@pytest.mark.parametrize("act_space", [gym.spaces.Discrete(3), BOX_ACT])
@pytest.mark.parametrize("net_arch", [[16], [16, 16]])
def test_acting_equals_forward(act_space, net_arch):
    torch.manual_seed(0)
    ac = ActorCritic(BOX_OBS, act_space, net_arch, log_std_init=-0.3)
    x = torch.randn(2, 5, 4)  # [T, N, obs]: batch dims are kept
    _, p1, v1 = rollout_policy(ac)(x, None)
    with torch.no_grad():
        p2, v2 = ac(x)
    torch.testing.assert_close(p1, p2, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(v1, v2, rtol=1e-6, atol=1e-6)
    assert p1.shape == (2, 5, 6 if isinstance(act_space, gym.spaces.Box) else 3)


def test_log_std_is_the_actors_last_parameter_and_the_optimiser_steps_it():
    torch.manual_seed(0)
    ac = ActorCritic(BOX_OBS, BOX_ACT, [16, 16])
    log_std = ac.actor[-1].log_std
    assert ac.actor_parameters()[-1] is log_std  # θ ends with log σ (TRPO's flat θ, VPG's policy optimiser)
    assert all(p is not log_std for p in ac.critic_parameters())
    x = torch.randn(7, 4)
    ac(x)[0][:, 3:].sum().backward()  # the gradient reaches log σ: one per state, 7 states
    assert log_std.grad.tolist() == [7.0, 7.0, 7.0]
    model = PPO("Pendulum-v1", seed=0, verbose=0, preset=False, n_steps=64, batch_size=64)
    optimised = [p for group in model.optimizer.param_groups for p in group["params"]]
    assert any(p is model.agent.actor[-1].log_std for p in optimised)
    assert sum(p.numel() for p in optimised) == sum(p.numel() for p in model.agent.parameters())


# --------------------------------------------------------------------------- TRPO and PPO on a Gaussian policy
def _tiny_gaussian(seed=0, n=24):
    torch.manual_seed(seed)
    ac = ActorCritic(BOX_OBS, gym.spaces.Box(-1, 1, (2,)), [6], log_std_init=-0.2).double()
    with torch.no_grad():
        ac.actor[-2].weight.mul_(100.0)  # a mean far from 0, so the KL's curvature in μ is not trivial
        ac.actor[-1].log_std.copy_(torch.tensor([-0.4, 0.3]))
    obs = torch.randn(n, 4, dtype=torch.float64)
    with torch.no_grad():
        params_old = ac.actor(obs)
        actions = ac.head.sample(params_old)
    return ac, obs, params_old, actions, ac.head.log_prob(params_old, actions), torch.randn(n, dtype=torch.float64)


def test_trpo_fvp_equals_hessian_of_mean_kl_times_v_for_a_gaussian_policy():
    ac, obs, params_old, *_ = _tiny_gaussian()
    actor, head = ac.actor, ac.head
    names = [k for k, _ in actor.named_parameters()]
    shapes = [p.shape for p in actor.parameters()]
    assert names[-1].endswith("log_std")  # log σ is one of the actor's parameters: TRPO steps it

    def kl_of(theta):
        chunks = torch.split(theta, [math.prod(s) for s in shapes])
        params = functional_call(actor, {k: c.view(s) for k, c, s in zip(names, chunks, shapes)}, (obs,))
        return mean_kl(head, params_old, params)

    theta_old = torch.cat([p.detach().flatten() for p in actor.parameters()])
    hessian = torch.autograd.functional.hessian(kl_of, theta_old)
    fvp = fisher_vector_product(mean_kl(head, params_old, actor(obs)), list(actor.parameters()), 0.0)
    for seed in range(3):
        v = torch.randn(theta_old.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fvp(v), hessian @ v, rtol=1e-10, atol=1e-12)
    # the log σ block of the Fisher matrix of a diagonal Gaussian is 2 I (per state, per dimension)
    torch.testing.assert_close(hessian[-2:, -2:], 2.0 * torch.eye(2, dtype=torch.float64))
    assert torch.linalg.eigvalsh(hessian).min() > -1e-10


def test_ppo_surrogate_gradient_at_theta_old_equals_the_vanilla_policy_gradient_for_a_gaussian_policy():
    ac, obs, _, actions, logprob_old, adv = _tiny_gaussian(1)

    def grad(loss):
        ac.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in ac.actor.parameters()])

    g_vpg = grad(policy_gradient_loss(ac.head.log_prob(ac.actor(obs), actions), adv))
    g_clip = grad(clipped_surrogate(ac.head.log_prob(ac.actor(obs), actions), logprob_old, adv, 0.2)[0])
    torch.testing.assert_close(g_clip, g_vpg, rtol=1e-10, atol=1e-12)
    assert g_vpg[-2:].abs().min() > 0  # the gradient reaches log σ


# --------------------------------------------------------------------------- clipping at the env boundary only
class _RecordingEnv(gym.Env):
    """1-d observations, actions in [-0.5, 0.5]; remembers every action it receives."""

    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Box(-0.5, 0.5, (2,))

    def __init__(self):
        self.received = []

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self.received.append(np.array(action, copy=True))
        return np.zeros(1, dtype=np.float32), 0.0, False, False, {}


def test_env_gets_clipped_actions_while_the_rollout_keeps_and_scores_the_unclipped_sample():
    venv = gym.vector.SyncVectorEnv([_RecordingEnv], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    torch.manual_seed(0)
    ac = ActorCritic(venv.single_observation_space, venv.single_action_space, [8], log_std_init=1.0)  # σ ≈ 2.7
    rollout = RolloutCollector(venv, torch.device("cpu"), seed=0, generator=torch.Generator().manual_seed(0)).collect(
        ac, 50
    )
    actions = rollout.actions[:, 0].numpy()
    received = np.stack(venv.envs[0].received)
    assert (np.abs(actions) > 0.5).mean() > 0.5  # most samples lie outside the bounds ...
    np.testing.assert_array_equal(received, np.clip(actions, -0.5, 0.5))  # ... and reach the env clipped
    torch.testing.assert_close(rollout.logprob_old, ac.head.log_prob(rollout.params_old, rollout.actions))
    # the clipped action would score differently: what is stored is the sample π drew
    clipped = torch.as_tensor(np.clip(rollout.actions.numpy(), -0.5, 0.5))
    assert not torch.allclose(rollout.logprob_old, ac.head.log_prob(rollout.params_old, clipped))
