"""The fast backend on one-hot observations and on MultiDiscrete and MultiBinary actions equals the reference.

What ``tests/math/test_backends.py`` proves for flat observations and categorical / Gaussian heads, for
the spaces added since: Discrete observations (``OneHot``: FrozenLake, Taxi), MultiDiscrete ones
(``MultiOneHot``), MultiDiscrete actions (``MultiCategoricalHead``) and MultiBinary actions
(``BernoulliHead``). From the bottom up:

* the one-hot rows' products (``lucidrl.fast.inputs``: the first layer as a gather of W's columns, its
  gradient as a scatter-add, the JVP as a gather of the direction) equal autograd through the dense one-hot;
* the heads' written-out gradients (``lucidrl.fast.heads``) equal autograd through ``head.log_prob`` and
  ``head.entropy``;
* every twin (PPO, A2C, TRPO, VPG/REINFORCE, DQN, acting) gives the reference's parameters, optimiser state and
  metrics from the same weights and batch, with the tolerances ``test_backends.py``'s docstring explains;
* ``backend="auto"`` takes the fast twins on these spaces, and a short run under each backend ends with the
  same weights.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces as S
from torch import nn

import lucidrl
from lucidrl.fast import actor_critic as fast_ac
from lucidrl.fast import trpo as fast_trpo
from lucidrl.fast.heads import kl_and_grad, logit_terms, sample
from lucidrl.fast.inputs import SCATTER_BY_PRODUCT, OneHotRows, scatter_columns
from lucidrl.fast.mlp import MLPCore
from lucidrl.networks import BernoulliHead, CategoricalHead, DiagGaussianHead, MultiCategoricalHead
from tests.math.test_backends import (
    assert_a2c_updates_agree,
    assert_acting_agrees,
    assert_dqn_round_agrees,
    assert_jvp_equals_autograd,
    assert_learn_agrees,
    assert_ppo_updates_agree,
    assert_same_greedy_actions,
    assert_trpo_local_models_agree,
    assert_trpo_updates_agree,
    assert_vpg_updates_agree,
    pair,
    rollout_batch,
    vpg_batch,
)


class SpacesEnv(gym.Env):
    """Observations drawn from ``observation_space``, any action of ``action_space``; the reward is the sum of the
    action's components modulo 3, episodes of ``horizon`` steps (a time limit). Small and fast, for any spaces."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, horizon: int = 5):
        self.observation_space, self.action_space, self.horizon = observation_space, action_space, horizon

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert action in self.action_space, action
        self.t += 1
        reward = float(np.sum(action) % 3)
        return self.observation_space.sample(), reward, False, self.t >= self.horizon, {}


SPACES = {  # (env, what it adds): one case per new encoder and head
    "discrete_obs": "FrozenLake-v1",  # OneHot (16 states), categorical actions
    "multidiscrete": lambda: SpacesEnv(S.MultiDiscrete([3, 4, 2]), S.MultiDiscrete([3, 2, 4])),  # MultiOneHot
    "multibinary": lambda: SpacesEnv(S.Box(-1.0, 1.0, (3,), np.float32), S.MultiBinary(4)),  # Bernoulli
}


DQN_SPACES = {  # Discrete actions (one Q-value each), one-hot observations
    "discrete_obs": "FrozenLake-v1",
    "multidiscrete_obs": lambda: SpacesEnv(S.MultiDiscrete([3, 4, 2]), S.Discrete(3)),
    "taxi": "Taxi-v4",  # 500 states
}


# --------------------------------------------------------------------------- the one-hot products
@pytest.mark.parametrize("ops", ["numpy", "torch", "feature_major"])
@pytest.mark.parametrize("k", [1, 3])  # a OneHot, a MultiOneHot of three components
@pytest.mark.parametrize("k_members", [1, 2])
def test_one_hot_rows_through_the_core_equal_autograd_through_the_dense_one_hot(ops, k, k_members):
    torch.manual_seed(0)
    n_in, B = 12, 9
    outs = [3, 1][:k_members]
    members = [nn.Sequential(nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, o)) for o in outs]
    core = MLPCore.of(members, numpy=ops != "torch", feature_major=ops == "feature_major")
    params = MLPCore.parameter_order(members)
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    cols = torch.stack([torch.randint(0, n_in // k, (B,)) + j * (n_in // k) for j in range(k)], -1)  # disjoint ranges
    x = torch.zeros(B, n_in).scatter_(1, cols, 1.0)  # the dense one-hot rows the reference's encoder makes
    rows = OneHotRows(cols if ops == "torch" else cols.numpy(), n_in)
    np.testing.assert_array_equal(OneHotRows(cols.numpy(), n_in).dense(), x.numpy())
    as_array = (lambda t: t) if ops == "torch" else (lambda t: t.numpy())
    fm = (lambda a: np.ascontiguousarray(a.T)) if ops == "feature_major" else (lambda a: a)  # [features, B]
    y, hs = core.forward(core.blocks(as_array(flat)), rows)
    for member, out in zip(members, y):
        torch.testing.assert_close(torch.as_tensor(fm(out)), member(x).detach(), rtol=1e-5, atol=1e-6)
    ds = [torch.randn(B, o) for o in outs]
    loss = sum((m(x) * d).sum() for m, d in zip(members, ds))
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    g = torch.zeros_like(flat)
    core.backward(core.blocks(as_array(flat)), core.blocks(as_array(g)), hs, [fm(as_array(d)) for d in ds])
    torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-5)  # the scatter-add: ∂W_0 = ∂zᵀ x
    if ops != "torch":
        return  # the JVP runs in torch only (TRPO's Fisher products)
    assert_jvp_equals_autograd(core, members, params, flat, hs, x)  # the JVP: a gather of the direction's columns


@pytest.mark.parametrize("B, n", [(40, 10), (600, 300)])  # by the product with the 0/1 matrix; sorted and summed
@pytest.mark.parametrize("k", [1, 3])
def test_scatter_columns_is_the_dense_weight_gradient(B, n, k):
    rng = np.random.default_rng(0)
    cols = np.stack([rng.integers(0, n, B) + n * j for j in range(k)], -1)  # component j's columns: [n j, n (j + 1))
    visited = len(np.unique(cols))
    assert (visited > 64 and B * visited > SCATTER_BY_PRODUCT) == (B == 600)  # the two ways are both taken
    d = rng.standard_normal((2, B, 5)).astype(np.float32)  # [K, B, o]
    out = np.full((2, 5, n * k), np.nan, np.float32)  # every entry must be written
    scatter_columns(d, cols, out)
    np.testing.assert_allclose(out, d.swapaxes(-1, -2) @ OneHotRows(cols, n * k).dense(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- the heads
@pytest.mark.parametrize("head", [MultiCategoricalHead([3, 2, 4]), BernoulliHead(5)], ids=["multi", "bernoulli"])
@pytest.mark.parametrize("ent_coef", [0.0, 0.3])
def test_the_written_out_head_gradients_equal_autograd(head, ent_coef):
    g = torch.Generator().manual_seed(0)
    B = 32
    logits = 3.0 * torch.randn(B, head.n_params, generator=g)
    logits[0, :2] = torch.tensor([40.0, -40.0])  # far in the tails: log σ(±40), a softmax of one certain action
    actions = head.sample(logits, g)
    weights = torch.randn(B, generator=g)

    def policy_term(logprob):  # -mean(w log π) and its gradient -w / B
        w = weights.numpy()
        return -float((w * logprob).mean()), w * (-1.0 / B), None

    params, d_logits, loss, entropy, _ = logit_terms(head, logits.numpy(), actions.numpy(), policy_term, ent_coef, True)
    l_ref = logits.clone().requires_grad_()
    logprob, h = head.log_prob(l_ref, actions), head.entropy(l_ref)
    ref_loss = -(weights * logprob).mean() - ent_coef * h.mean()
    ref_loss.backward()
    torch.testing.assert_close(torch.from_numpy(d_logits), l_ref.grad, rtol=1e-5, atol=1e-6)
    assert np.isclose(loss, float(-(weights * logprob.detach()).mean()), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(entropy), h.detach(), rtol=1e-5, atol=1e-6)
    noise = head.noise((B,), g)
    assert torch.equal(torch.from_numpy(sample(head, logits.numpy(), noise.numpy())), head.sample(logits, noise=noise))


# --------------------------------------------------------------------------- acting
@pytest.mark.parametrize("space", [*SPACES, "Taxi-v4"])
def test_acting_gives_the_same_parameters_values_and_actions_for_the_same_noise(space):
    model = lucidrl.PPO(SPACES.get(space, space), seed=0, verbose=0, preset=False, n_envs=4, net_arch=[16, 16])
    space_ = model.observation_space
    obs = torch.as_tensor(np.stack([space_.sample() for _ in range(64)]))
    noise = model.agent.head.noise((64,), torch.Generator().manual_seed(3))
    a_ref, a_fast = assert_acting_agrees(model, obs, noise)
    assert a_fast.dtype == a_ref.dtype and torch.equal(a_fast, a_ref)


@pytest.mark.parametrize("space", DQN_SPACES)
def test_dqn_greedy_acting_on_one_hot_observations_is_the_same_argmax(space):
    model = lucidrl.DQN(DQN_SPACES[space], seed=0, verbose=0, preset=False, net_arch=[32, 32])
    obs = np.stack([model.observation_space.sample() for _ in range(64)])
    assert_same_greedy_actions(model.q_net, obs)


# --------------------------------------------------------------------------- PPO, A2C
@pytest.mark.parametrize("updates", [1, 3])
@pytest.mark.parametrize("space", SPACES)
def test_ppo_clip_update_equals_the_reference(space, updates):
    # two minibatches an epoch (shuffled), two epochs, clipping active (ε = 0.02), an entropy bonus
    kw = dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=2, ent_coef=0.01, learning_rate=1e-3, max_grad_norm=0.5)
    ref, fast = pair(lucidrl.PPO, SPACES[space], **kw)
    _, batch = rollout_batch(ref, 32)
    m_ref, _ = assert_ppo_updates_agree(ref, fast, batch, updates, 0.02)[-1]
    assert updates == 1 or m_ref["diag/clip_fraction"] > 0  # ε = 0.02: the clip is active by the third update


@pytest.mark.parametrize("space", SPACES)
def test_ppo_penalty_update_equals_the_reference(space):
    kw = dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=2, learning_rate=3e-3, variant="kl_penalty")
    ref, fast = pair(lucidrl.PPO, SPACES[space], **kw)
    _, batch = rollout_batch(ref, 32)
    m_ref, _ = assert_ppo_updates_agree(ref, fast, batch, 3, 0.2, beta=3.0)[-1]
    assert m_ref["diag/kl"] > 1e-4


@pytest.mark.parametrize(
    "head",
    [CategoricalHead(4), MultiCategoricalHead([3, 2, 4]), BernoulliHead(5), DiagGaussianHead(3)],
    ids=["categorical", "multi", "bernoulli", "gaussian"],
)
def test_the_written_out_kl_gradient_equals_autograd_through_head_kl(head):
    g = torch.Generator().manual_seed(0)
    width = {CategoricalHead: 4, MultiCategoricalHead: 9, BernoulliHead: 5, DiagGaussianHead: 6}[type(head)]
    old = torch.randn(64, width, generator=g, dtype=torch.float64)
    new = (old + 0.5 * torch.randn(64, width, generator=g, dtype=torch.float64)).requires_grad_()
    kl = head.kl(old, new)
    kl.sum().backward()
    kl_fast, grad_fast = kl_and_grad(head, old.numpy(), new.detach().numpy())
    np.testing.assert_allclose(kl_fast, kl.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_fast, new.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert kl.min() > 0  # the parameters moved: every row's KL is positive


@pytest.mark.parametrize("rms_prop", [True, False])
@pytest.mark.parametrize("space", SPACES)
def test_a2c_update_equals_the_reference(space, rms_prop):
    kw = dict(n_envs=4, n_steps=5, ent_coef=0.01, use_rms_prop=rms_prop, normalize_advantage=True)
    ref, fast = pair(lucidrl.A2C, SPACES[space], **kw)
    _, batch = rollout_batch(ref, 5)
    assert_a2c_updates_agree(ref, fast, batch, 3)


# --------------------------------------------------------------------------- TRPO
@pytest.mark.parametrize("space", [*SPACES, "Taxi-v4"])
def test_trpo_local_models_equal_the_reference(space):
    ref, fast = pair(lucidrl.TRPO, SPACES.get(space, space), n_envs=2, n_steps=64, batch_size=32)
    _, batch = rollout_batch(ref, 64)
    assert_trpo_local_models_agree(ref, fast, batch)


@pytest.mark.parametrize("space", SPACES)
def test_trpo_update_equals_the_reference(space):
    kw = dict(n_envs=2, n_steps=64, batch_size=32, n_critic_updates=2, cg_max_steps=6)
    ref, fast = pair(lucidrl.TRPO, SPACES[space], **kw)
    _, batch = rollout_batch(ref, 64)
    assert_trpo_updates_agree(ref, fast, batch, 2)


# --------------------------------------------------------------------------- VPG / REINFORCE
@pytest.mark.parametrize("cls", [lucidrl.VPG, lucidrl.REINFORCE])
@pytest.mark.parametrize("space", [*SPACES, "Taxi-v4"])
def test_vpg_and_reinforce_updates_equal_the_reference(cls, space):
    taxi = space == "Taxi-v4"  # 32 envs x 12 steps: ~100 states in 384 rows, whose gradient the scatter sorts and sums
    kw = dict(n_envs=32 if taxi else 2, n_steps=12 if taxi else 64, ent_coef=0.01, max_grad_norm=1.0)
    ref, fast = pair(cls, SPACES.get(space, space), **kw, **({"n_critic_updates": 3} if cls is lucidrl.VPG else {}))
    batch = vpg_batch(ref, kw["n_steps"])
    if taxi:
        visited = len(torch.unique(batch["obs"]))
        assert visited > 64 and len(batch["obs"]) * visited > SCATTER_BY_PRODUCT, visited
    assert_vpg_updates_agree(ref, fast, batch, 2)


# --------------------------------------------------------------------------- DQN
def filled_replay(model, n):
    """A replay memory of ``n`` transitions between random observations of the model's space (some terminal)."""
    from lucidrl.replay import ReplayBuffer

    space = model.observation_space
    space.seed(2)
    g = torch.Generator().manual_seed(2)
    buffer = ReplayBuffer(n, space, model.action_space)
    draw = lambda: torch.as_tensor(np.stack([space.sample() for _ in range(n)]))  # noqa: E731
    buffer.add(draw(), torch.randint(0, model.q_net.n_actions, (n,), generator=g), torch.ones(n), draw(),
               torch.rand(n, generator=g) < 0.1)  # fmt: skip
    return buffer


@pytest.mark.parametrize("double_q", [False, True])
@pytest.mark.parametrize("steps", [3, 48])  # 48: ~1,300 distinct of 1,536 drawn, targets in two chunks
@pytest.mark.parametrize("space", DQN_SPACES)
def test_dqn_round_equals_the_reference(space, steps, double_q):
    kw = dict(buffer_size=4000, batch_size=32, learning_rate=1e-3, double_q=double_q, max_grad_norm=1.0)
    ref, fast = pair(lucidrl.DQN, DQN_SPACES[space], **kw)
    assert_dqn_round_agrees(ref, fast, filled_replay(ref, n=4000 if steps > 3 else 600), steps)


# --------------------------------------------------------------------------- selection, and whole runs
FAST_LINES = {
    lucidrl.PPO: ["ppo", "rollout", "gae"],
    lucidrl.A2C: ["a2c", "rollout", "gae"],
    lucidrl.TRPO: ["trpo_local_models", "trpo_fit_critic", "rollout", "gae"],
    lucidrl.VPG: ["vpg_policy_step", "vpg_fit_critic", "rollout"],
}


@pytest.mark.parametrize("space", [*SPACES, "Taxi-v4", "CliffWalking-v1"])
@pytest.mark.parametrize("cls", list(FAST_LINES))
def test_auto_takes_the_fast_backend_on_these_spaces(cls, space):
    m = cls(SPACES.get(space, space), seed=0, verbose=0, preset=False, n_steps=8)
    lines = dict(line.split(": ", 1) for line in m.backend_lines)
    assert [name for name in lines if lines[name].startswith("fast backend")] == FAST_LINES[cls], m.backend_lines
    if not isinstance(m.observation_space, S.Box):
        assert fast_ac.rollout_unsupported(m) is None and fast_trpo.actor_unsupported(m) is None


@pytest.mark.parametrize("space", DQN_SPACES)
def test_auto_takes_dqns_fast_backend_on_one_hot_observations(space):
    m = lucidrl.DQN(DQN_SPACES[space], seed=0, verbose=0, preset=False)
    assert m.backend_lines == [
        "dqn_train_round: fast backend (lucidrl.fast.dqn.dqn_train_round)",
        "dqn_greedy: fast backend (lucidrl.fast.dqn.greedy_policy)",
    ]


@pytest.mark.parametrize(
    "cls, kw",
    [
        (lucidrl.PPO, dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=2)),
        (lucidrl.A2C, dict(n_envs=2, n_steps=8)),
        (lucidrl.TRPO, dict(n_envs=2, n_steps=32, batch_size=32, n_critic_updates=2, cg_max_steps=5)),
        (lucidrl.VPG, dict(n_envs=2, n_steps=32, n_critic_updates=3)),
    ],
    ids=["ppo", "a2c", "trpo", "vpg"],
)
@pytest.mark.parametrize("space", SPACES)
def test_two_updates_of_learn_under_each_backend_end_with_the_same_weights(cls, kw, space):
    """learn() end to end (acting with the model's generator, GAE, the updates): after two updates the weights agree
    to rounding, so both backends acted alike (an action sampled differently would move them by ~lr)."""
    ref, fast = pair(cls, SPACES[space], learning_rate=1e-3, **kw)
    steps = 2 * kw["n_envs"] * kw["n_steps"]
    assert_learn_agrees(ref, fast, steps, atol=1e-4 if cls is lucidrl.TRPO else 2e-5, attrs=["agent"])
    assert fast.backend_lines[0].split(": ")[1].startswith("fast backend")


@pytest.mark.parametrize("space", ["discrete_obs", "multidiscrete_obs"])
def test_dqn_learn_under_each_backend_ends_with_the_same_weights(space):
    kw = dict(learning_starts=64, train_freq=4, gradient_steps=2, batch_size=16, target_update_interval=50)
    ref, fast = pair(lucidrl.DQN, DQN_SPACES[space], learning_rate=1e-3, **kw)
    assert_learn_agrees(ref, fast, 256, attrs=["q_net"])


def test_an_index_outside_the_space_is_refused_as_the_reference_refuses_it():
    """The reference's one_hot raises on an index outside [0, n); the fast gather would wrap a negative one (NumPy)
    or read the next component's column: it raises too, naming the index."""
    from lucidrl.fast.inputs import InputEncoding
    from lucidrl.networks import MultiOneHot, OneHot

    multi = InputEncoding(MultiOneHot([3, 4]))
    assert multi.columns(np.array([[2, 3], [0, 0]])).tolist() == [[2, 6], [0, 3]]
    for bad, index in (([[3, 0]], 3), ([[0, -1]], -1)):
        with pytest.raises(ValueError, match=f"holds the index {index}, outside"):
            multi.columns(np.array(bad))
    with pytest.raises(ValueError, match="index 5, outside"):
        InputEncoding(OneHot(5)).columns(np.array([5]))
