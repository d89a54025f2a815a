"""A2C: n-step return targets by hand, its RMSprop step (E5) by hand, acting with the agent's own network,
and one whole update against Stable-Baselines3's A2C.train on the same data.

The fast backend's twin of ``a2c_update`` (and of the acting) is tested equal to the reference in
``tests/math/test_backends.py``."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from lucidrl.advantages import gae
from lucidrl.algos.a2c import A2C, a2c_loss, a2c_update
from lucidrl.networks import ActorCritic
from lucidrl.rollout import Rollout, rollout_policy
from tests.math.sb3_twins import assert_same_weights, give_twin_our_weights


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
    torch.testing.assert_close(
        loss, -(adv * logprob).mean() + 0.5 * ((values - ret) ** 2).mean() - 0.01 * entropy.mean()
    )
    loss.backward()
    torch.testing.assert_close(logprob.grad, -adv / 6)  # the policy-gradient weights
    torch.testing.assert_close(values.grad, 0.5 * 2 * (values - ret).detach() / 6)
    torch.testing.assert_close(entropy.grad, torch.full((6,), -0.01 / 6))


# --------------------------------------------------------------------------- RMSprop (E5)
def test_a2c_steps_the_papers_rmsprop_by_hand_across_a_reload_and_a_schedule():
    """(E5) with PyTorch's ε outside the root: g ← α g + (1 - α) Δθ²;  θ ← θ - η Δθ / (√g + ε), on every weight
    of the agent, through a checkpoint-style reload of the optimiser and a learning-rate change between steps."""
    model = A2C(
        "CartPole-v1", preset=False, seed=0, verbose=0, rms_prop_alpha=0.9, rms_prop_eps=1e-3, learning_rate=7e-3
    )
    opt, params = model.optimizer, list(model.agent.parameters())
    assert isinstance(opt, torch.optim.RMSprop)
    assert [id(p) for g in opt.param_groups for p in g["params"]] == [id(p) for p in params]
    assert (opt.defaults["alpha"], opt.defaults["eps"], opt.defaults["momentum"], opt.defaults["centered"]) == (
        0.9,
        1e-3,
        0,
        False,
    )
    theta = [p.detach().double().clone() for p in params]
    square_avg = [torch.zeros_like(t) for t in theta]
    lr = 7e-3
    gen = torch.Generator().manual_seed(0)
    for i in range(30):
        x = torch.randn(11, 4, generator=gen)
        opt.zero_grad()
        params_out, values = model.agent(x)
        (params_out.pow(2).sum() + values.pow(2).sum()).backward()
        grads = [p.grad.detach().double() for p in params]
        opt.step()
        for k, g in enumerate(grads):
            square_avg[k] = 0.9 * square_avg[k] + 0.1 * g * g
            theta[k] = theta[k] - lr * g / (square_avg[k].sqrt() + 1e-3)
            # the step is taken from the network's own float32 weights: compare, then follow them
            torch.testing.assert_close(params[k].detach().double(), theta[k], atol=1e-6, rtol=1e-5)
            theta[k] = params[k].detach().double().clone()
        if i == 10:
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # a checkpoint reload in the middle
        if i == 20:
            lr = 1e-3
            for group in opt.param_groups:
                group["lr"] = lr  # a schedule changes the learning rate between steps
    state = opt.state_dict()["state"]
    assert all(float(st["step"]) == 30.0 for st in state.values()) and len(state) == len(params)
    for k, st in state.items():
        torch.testing.assert_close(st["square_avg"].double(), square_avg[k], atol=1e-7, rtol=1e-4)


def test_a2c_without_rmsprop_takes_adam_with_sb3s_eps():
    model = A2C("CartPole-v1", preset=False, use_rms_prop=False, seed=0, verbose=0)
    assert isinstance(model.optimizer, torch.optim.Adam) and model.optimizer.defaults["eps"] == 1e-5
    assert [id(p) for g in model.optimizer.param_groups for p in g["params"]] == [
        id(p) for p in model.agent.parameters()
    ]


# --------------------------------------------------------------------------- acting
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("net_arch, activation", [([64, 64], "tanh"), ([32], "relu")])
def test_acting_is_the_agents_own_forward_and_its_heads_sample(net_arch, activation, shared):
    torch.manual_seed(0)
    agent = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3), net_arch, activation, shared=shared)
    x = torch.randn(8, 4)
    noise = agent.head.noise((8,), torch.Generator().manual_seed(1))
    action, params, values = rollout_policy(agent)(x, noise)
    p2, v2 = agent(x)
    assert torch.equal(params, p2) and torch.equal(values, v2)  # the same network, the same function
    assert torch.equal(action, agent.head.sample(p2, noise=noise))
    assert rollout_policy(agent)(x, None)[0] is None  # no noise: parameters and values only
    with torch.no_grad():  # it reads the weights as they are (no copies to refresh)
        for p in agent.parameters():
            p.add_(0.1)
    torch.testing.assert_close(rollout_policy(agent)(x, None)[1], agent.policy_params(x))


# --------------------------------------------------------------------------- one update against SB3
def _sb3_a2c_and_ours(seed=0):
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    env = gym.make_vec("CartPole-v1", 8, vectorization_mode="sync")
    ours = A2C(env, preset=False, n_envs=8, seed=seed, verbose=0)
    theirs = sb3.A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=seed), seed=seed, device="cpu")
    theirs.set_logger(configure(None, []))
    give_twin_our_weights(ours, theirs)
    return ours, theirs


def test_one_update_equals_sb3_a2c_train_on_the_same_rollout():
    ours, theirs = _sb3_a2c_and_ours()
    g = np.random.default_rng(0)
    T, N = 5, 8
    for _update in range(3):  # three updates: RMSprop's running average matters from the second on
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
        r = Rollout(
            obs=torch.as_tensor(obs),
            actions=torch.as_tensor(actions),
            rewards=torch.as_tensor(rewards),
            terminated=torch.as_tensor(terminated),
            truncated=torch.zeros(T, N, dtype=torch.bool),
            values_old=vt,
            next_values=torch.cat([vt[1:], torch.as_tensor(last_values)[None]]),
            logprob_old=torch.zeros(T, N),
            params_old=torch.zeros(T, N, 2),
            valid=None,
        )
        adv, ret = gae(r.rewards, r.values_old, r.next_values, r.terminated, r.truncated, 0.99, 1.0)
        np.testing.assert_allclose(adv.numpy(), sb3_advantages, rtol=1e-5, atol=1e-5)
        a2c_update(ours.agent, ours.optimizer, r.flat(advantages=adv, returns=ret), ours.config)
        assert_same_weights(ours, theirs, atol=2e-5, rtol=1e-4)
    assert isinstance(theirs.policy.optimizer, torch.optim.RMSprop)
    assert theirs.policy.optimizer.defaults["eps"] == ours.optimizer.defaults["eps"] == 1e-5
