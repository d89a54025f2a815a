"""The device loop computes what the reference computes.

* ``compile=True`` (``lucidrl.fast.compiled``): PPO's and A2C's updates, compiled with torch.compile
  (and on a GPU captured as CUDA graphs), against the reference ``ppo_update`` / ``a2c_update`` on the
  same batch: one update and three, parameters, optimiser state and metrics. Tolerances as in
  ``test_backends.py``: inductor fuses and reorders float32 arithmetic, so results differ by rounding.
* ``DeviceRolloutCollector`` (``lucidrl.device_rollout``) against the reference ``RolloutCollector``
  driving the same batched torch env through a NumPy adapter: the same transitions, values,
  bootstraps and episode statistics, so the device rollout keeps the episode-end rules.
* ``vmap_ppo_update`` (``lucidrl.vmap``): A stacked agents against A reference ``ppo_update`` calls.

On a machine with CUDA the same tests also run the GPU path (CUDA graphs) against the reference on the GPU.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import lucidrl
from lucidrl.advantages import gae
from lucidrl.algos import a2c as ref_a2c
from lucidrl.algos import ppo as ref_ppo
from lucidrl.device_rollout import DeviceRolloutCollector, evaluate_on_device
from lucidrl.envs.normalize import make_normalizers
from lucidrl.envs.torch import make_torch_vec_env
from lucidrl.fast.compiled import CompiledA2CUpdate, CompiledPPOUpdate, GraphedGAE
from lucidrl.logging import RECENT_EPISODES
from lucidrl.rollout import RolloutCollector
from tests.math.test_backends import assert_same_metrics, assert_same_modules, assert_same_optimizer

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _inductor_works() -> bool:
    try:
        return bool(torch.compile(lambda x: x * 2 + 1)(torch.ones(2)).sum() == 6)
    except Exception:  # no C++ compiler, or an unsupported platform
        return False


needs_inductor = pytest.mark.skipif(not _inductor_works(), reason="torch.compile (inductor) does not run here")


def _pair(cls, device, **kw):
    common = dict(
        seed=0,
        verbose=0,
        preset=False,
        vectorization="torch",
        device=device,
        net_arch=[16, 16],
        n_envs=8,
        backend="reference",
        **kw,
    )
    return cls("CartPole-v1", **common), cls("CartPole-v1", compile=True, **common)


def _batch(model, n_steps):
    collector = DeviceRolloutCollector(
        model.env, model.device, seed=0, generator=torch.Generator(model.device).manual_seed(1)
    )
    r = collector.collect(model.agent, n_steps)
    adv, ret = gae(r.rewards, r.values_old, r.next_values, r.terminated, r.truncated, 0.99, 0.95)
    return {k: v.clone() for k, v in r.flat(advantages=adv, returns=ret).items()}


@needs_inductor
@pytest.mark.parametrize("device", DEVICES)
def test_the_compiled_ppo_update_equals_the_reference_update(device):
    ref, comp = _pair(lucidrl.PPO, device, n_steps=16, batch_size=32, n_epochs=2, learning_rate=1e-3)
    batch = _batch(ref, 16)
    update = CompiledPPOUpdate(comp)
    assert update.graphed.cuda == (device == "cuda")
    g_ref, g_comp = (torch.Generator(device).manual_seed(7) for _ in range(2))
    for _n in range(3):  # one update, then two more on the same batch
        m_ref = ref_ppo.ppo_update(ref.agent, ref.optimizer, batch, ref.config, 0.2, None, 0.0, g_ref)
        m_comp = update(comp.agent, comp.optimizer, batch, comp.config, 0.2, None, 0.0, g_comp)
        assert_same_modules(ref.agent, comp.agent)
        assert_same_metrics(m_ref, m_comp, loose=("diag/approx_kl", "diag/clip_fraction", "diag/grad_norm"))
    if device == "cpu":
        assert_same_optimizer(ref.optimizer, comp.optimizer)
    # the update really moved the weights (a no-op "compiled" update would not)
    fresh = lucidrl.PPO("CartPole-v1", seed=0, verbose=0, preset=False, net_arch=[16, 16], n_envs=8, device=device)
    moved = max((a - b).abs().max().item() for a, b in zip(fresh.agent.parameters(), comp.agent.parameters()))
    assert moved > 1e-3


@needs_inductor
@pytest.mark.parametrize("device", DEVICES)
def test_the_compiled_a2c_update_equals_the_reference_update(device):
    ref, comp = _pair(lucidrl.A2C, device, n_steps=5)
    batch = _batch(ref, 5)
    update = CompiledA2CUpdate(comp)
    for _ in range(3):
        m_ref = ref_a2c.a2c_update(ref.agent, ref.optimizer, batch, ref.config)
        m_comp = update(comp.agent, comp.optimizer, batch, comp.config)
        assert_same_modules(ref.agent, comp.agent)
        assert_same_metrics(m_ref, m_comp, loose=("diag/grad_norm",))


@pytest.mark.parametrize("device", DEVICES)
def test_graphed_gae_equals_gae(device):
    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0, preset=False, device=device)
    g = GraphedGAE(model, gae)
    T, N = 12, 5
    gen = torch.Generator(device).manual_seed(0)
    for _ in range(2):  # the second call replays the graph on new inputs
        r, v, nv = (torch.randn(T, N, generator=gen, device=device) for _ in range(3))
        term, trunc = (torch.rand(T, N, generator=gen, device=device) < 0.2 for _ in range(2))
        for got, want in zip(g(r, v, nv, term, trunc, 0.99, 0.95), gae(r, v, nv, term, trunc, 0.99, 0.95)):
            torch.testing.assert_close(got, want)


# --------------------------------------------------------------------------- the device rollout
class _NumpyAdapter(gym.vector.VectorEnv):
    """A batched torch env seen through Gymnasium's NumPy interface (same-step autoreset, final_obs as objects)."""

    def __init__(self, env):
        self.env, self.num_envs = env, env.num_envs
        self.single_observation_space, self.single_action_space = env.single_observation_space, env.single_action_space
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed)
        return obs.numpy(), {}

    def step(self, actions):
        obs, r, term, trunc, info = self.env.step(torch.as_tensor(actions))
        done = (term | trunc).numpy()
        out = {}
        if done.any():
            final = np.empty(self.num_envs, dtype=object)
            for i in np.flatnonzero(done):
                final[i] = info["final_obs"][i].numpy()
            out = {"final_obs": final, "_final_obs": done}
        return obs.numpy(), r.numpy(), term.numpy(), trunc.numpy(), out


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_the_device_rollout_equals_the_reference_rollout_on_the_same_envs(env_id):
    model = lucidrl.PPO(env_id, seed=0, verbose=0, preset=False, n_envs=6, net_arch=[16, 16], backend="reference")
    n_envs, T = 6, 250  # long enough for Pendulum's 200-step time limit: truncations bootstrap
    dev_env = make_torch_vec_env(env_id, n_envs, max_episode_steps=None)
    ref_env = _NumpyAdapter(make_torch_vec_env(env_id, n_envs))
    device = DeviceRolloutCollector(dev_env, model.device, seed=3, generator=torch.Generator().manual_seed(5))
    reference = RolloutCollector(ref_env, model.device, seed=3, generator=torch.Generator().manual_seed(5))
    for _ in range(2):  # the second rollout continues the episodes of the first
        a, b = device.collect(model.agent, T), reference.collect(model.agent, T)
        for name in ("obs", "actions", "rewards", "terminated", "truncated", "values_old", "logprob_old", "params_old"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), msg=lambda m, n=name: f"{n}: {m}")
        # V(s_{t+1}) wherever it counts: after a terminal state GAE masks it (the two collectors leave
        # different numbers there: V of the final observation here, of the next episode's first there)
        torch.testing.assert_close(
            a.next_values.masked_fill(a.terminated, 0), b.next_values.masked_fill(b.terminated, 0)
        )
        assert b.valid is None and a.valid is None
        np.testing.assert_allclose(a.episode_returns, b.episode_returns[-RECENT_EPISODES:])
        assert a.episode_lengths == b.episode_lengths[-RECENT_EPISODES:] and len(a.episode_lengths) > 0
        assert a.truncated.any() or a.terminated.any()
    if env_id == "Pendulum-v1":
        assert b.truncated.any()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_the_device_rollout_normalises_as_the_reference_rollout(env_id):
    """normalize_obs and normalize_reward on the device: at every step the observations update the running
    statistics and are normalised with them (final observations too, without updating), and rewards are scaled
    by the running std of the discounted return, as ``RolloutCollector`` does in NumPy on the host."""
    model = lucidrl.PPO(env_id, seed=0, verbose=0, preset=False, n_envs=6, net_arch=[16, 16], backend="reference")
    n_envs, T = 6, 250
    norms = [
        make_normalizers(
            SimpleNamespace(normalize_obs=True, normalize_reward=True, clip_obs=5.0, clip_reward=10.0, gamma=0.9),
            model.observation_space,
            "cpu",
        )
        for _ in range(2)
    ]
    device = DeviceRolloutCollector(
        make_torch_vec_env(env_id, n_envs),
        model.device,
        seed=3,
        generator=torch.Generator().manual_seed(5),
        obs_normalizer=norms[0][0],
        reward_scaler=norms[0][1],
    )
    reference = RolloutCollector(
        _NumpyAdapter(make_torch_vec_env(env_id, n_envs)),
        model.device,
        seed=3,
        generator=torch.Generator().manual_seed(5),
        obs_normalizer=norms[1][0],
        reward_scaler=norms[1][1],
    )
    for _ in range(2):
        a, b = device.collect(model.agent, T), reference.collect(model.agent, T)
        for name in ("obs", "actions", "rewards", "terminated", "truncated", "values_old", "logprob_old"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), msg=lambda m, n=name: f"{n}: {m}")
        torch.testing.assert_close(
            a.next_values.masked_fill(a.terminated, 0), b.next_values.masked_fill(b.terminated, 0)
        )
        np.testing.assert_allclose(a.episode_returns, b.episode_returns[-RECENT_EPISODES:])  # the env's rewards
        for x, y in zip(norms[0], norms[1]):
            for k, v in x.rms.state_dict().items():
                torch.testing.assert_close(v, y.rms.state_dict()[k], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(norms[0][1].returns, norms[1][1].returns, rtol=1e-12)
    assert (a.obs.abs() <= 5.0).all() and float(norms[0][1].rms.count) >= 2 * T * n_envs  # both were updated


@pytest.mark.parametrize("device", DEVICES)
def test_the_captured_device_rollout_equals_the_eager_one(device):
    """With ``cuda_graph`` (compile=True) a rollout is recorded once as a CUDA graph and replayed: the replays
    give the rollouts, episode statistics and normaliser statistics of eager collection on the same device
    (on the CPU there is no graph and this checks the eager path against itself)."""
    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0, preset=False, n_envs=2, net_arch=[16, 16], device=device)
    out = []
    for graph in (False, True):
        obs_norm, rew_scale = make_normalizers(
            SimpleNamespace(normalize_obs=True, normalize_reward=True, clip_obs=10.0, clip_reward=10.0, gamma=0.99),
            model.observation_space,
            device,
        )
        col = DeviceRolloutCollector(
            make_torch_vec_env("CartPole-v1", 16, device=device, max_episode_steps=30),
            model.device,
            seed=2,
            generator=torch.Generator(device).manual_seed(3),
            cuda_graph=graph,
            obs_normalizer=obs_norm,
            reward_scaler=rew_scale,
        )
        assert col.cuda_graph == (graph and device == "cuda")
        out.append(([col.collect(model.agent, 24) for _ in range(3)], obs_norm, rew_scale))
    (eager, n0, r0), (graphed, n1, r1) = out
    for a, b in zip(eager, graphed):
        for name in ("obs", "actions", "rewards", "terminated", "truncated", "values_old", "next_values"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), msg=lambda m, n=name: f"{n}: {m}")
        assert a.episode_lengths == b.episode_lengths and len(a.episode_lengths) > 0
        np.testing.assert_allclose(a.episode_returns, b.episode_returns)
    torch.testing.assert_close(n0.rms.mean, n1.rms.mean)
    np.testing.assert_allclose(r0.returns, r1.returns)


def test_the_device_rollout_hands_over_the_latest_episodes_the_logger_reads():
    """Of the many episodes that end in a large rollout only the latest RECENT_EPISODES reach the host (the
    logger's window): the same returns and lengths as the tail of the reference collector's list."""
    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0, preset=False, n_envs=2, net_arch=[8], backend="reference")
    n_envs, T = 64, 60
    device = DeviceRolloutCollector(
        make_torch_vec_env("CartPole-v1", n_envs), model.device, seed=1, generator=torch.Generator().manual_seed(2)
    )
    reference = RolloutCollector(
        _NumpyAdapter(make_torch_vec_env("CartPole-v1", n_envs)),
        model.device,
        seed=1,
        generator=torch.Generator().manual_seed(2),
    )
    a, b = device.collect(model.agent, T), reference.collect(model.agent, T)
    assert len(b.episode_returns) > RECENT_EPISODES and len(a.episode_returns) == RECENT_EPISODES
    np.testing.assert_allclose(a.episode_returns, b.episode_returns[-RECENT_EPISODES:])
    assert a.episode_lengths == b.episode_lengths[-RECENT_EPISODES:]


class _CountOps(TorchDispatchMode):
    """Counts the aten ops that do work (a GPU kernel each, give or take), views left out."""

    VIEWS = {
        "view",
        "unbind",
        "select",
        "slice",
        "unsqueeze",
        "squeeze",
        "t",
        "transpose",
        "expand",
        "detach",
        "_unsafe_view",
        "as_strided",
        "alias",
        "permute",
        "reshape",
        "flatten",
        "split",
        "lift_fresh",
    }

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += func.__name__.split(".")[0] not in self.VIEWS
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_the_gpu_form_of_the_device_rollout_is_the_same_rollout_in_fewer_ops(env_id, monkeypatch):
    """The form a GPU runs (reset states drawn per rollout, every row's reset branch-free) collects the same
    rollout as the CPU's, and launches few ops a step: on a GPU each is a kernel, and for a few thousand
    envs their launches, not their arithmetic, set the rollout's time (123 ops a CartPole step before the
    reset pool, the stacked buffers and the episode counters after the loop; 65 after)."""
    model = lucidrl.PPO(env_id, seed=0, verbose=0, preset=False, n_envs=2, net_arch=[16, 16], backend="reference")
    T, collected, ops = 64, [], []
    for gpu_form in (False, True):
        col = DeviceRolloutCollector(
            make_torch_vec_env(env_id, 8, max_episode_steps=20),
            model.device,
            seed=3,
            generator=torch.Generator().manual_seed(5),
        )
        col.reset_pool = gpu_form
        if gpu_form:
            monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the env's branch-free resets
        col.collect(model.agent, T)
        with _CountOps() as count:
            collected.append(col.collect(model.agent, T))
        ops.append(count.n / T)
    a, b = collected
    for name in ("obs", "actions", "rewards", "terminated", "truncated", "values_old", "next_values", "logprob_old"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.episode_returns == b.episode_returns and a.episode_lengths == b.episode_lengths
    assert ops[1] <= 70, f"{ops[1]:.1f} ops a step on the GPU form of the rollout"


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_evaluate_on_device_scores_the_episodes_gymnasium_plays_from_the_same_states(env_id):
    """Each env plays one episode to its end or the time limit: from the same initial states, Gymnasium's env
    driven by ``predict`` gives the same returns (their mean and std)."""
    model = lucidrl.PPO(env_id, seed=0, verbose=0, preset=False, net_arch=[16, 16])
    model.learn(2048)  # a policy that is not uniform
    n = 12
    mean, std = evaluate_on_device(model, n, seed=7)
    starts = make_torch_vec_env(env_id, n, seed=7)
    starts.reset(seed=7)
    returns = []
    for s in starts.state.double().numpy():
        env = gym.make(env_id)
        env.reset(seed=0)
        env.unwrapped.state = s.copy()  # CartPole's state; Pendulum's (θ, θ̇)
        obs = env.unwrapped._get_obs() if hasattr(env.unwrapped, "_get_obs") else np.asarray(s, np.float32)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = env.step(action)
            total, done = total + float(r), term or trunc
        returns.append(total)
    assert mean == pytest.approx(np.mean(returns), rel=1e-4) and std == pytest.approx(
        np.std(returns), rel=1e-3, abs=1e-3
    )


# --------------------------------------------------------------------------- vmapped agents
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])  # categorical and Gaussian (bounded log σ)
def test_a_vmapped_update_of_stacked_agents_equals_reference_updates(env_id):
    from torch.func import stack_module_state

    from lucidrl.vmap import vmap_ppo_update

    A = 3
    models = [
        lucidrl.PPO(
            env_id,
            seed=s,
            verbose=0,
            preset=False,
            n_envs=4,
            n_steps=16,
            batch_size=16,
            n_epochs=2,
            net_arch=[16, 16],
            backend="reference",
            vectorization="torch",
        )
        for s in range(A)
    ]
    batches = [_batch(m, 16) for m in models]
    cfg = models[0].config
    params, _ = stack_module_state([m.agent for m in models])
    params = {k: v.detach().clone() for k, v in params.items()}
    base = copy.deepcopy(models[0].agent).to("meta")
    opt = torch.optim.Adam(list(params.values()), lr=cfg.learning_rate, eps=cfg.adam_eps)
    # each agent's minibatch order: what the reference draws from its generator, epoch by epoch
    n = batches[0]["obs"].shape[0]
    gens = [torch.Generator().manual_seed(10 + a) for a in range(A)]
    perms = torch.stack([torch.stack([torch.randperm(n, generator=g) for g in gens]) for _ in range(cfg.n_epochs)])
    stacked = {k: torch.stack([b[k] for b in batches]) for k in batches[0]}
    out = vmap_ppo_update(base, params, opt, stacked, cfg, 0.2, 0.0, perms)
    for a, m in enumerate(models):
        metrics = ref_ppo.ppo_update(
            m.agent, m.optimizer, batches[a], cfg, 0.2, None, 0.0, torch.Generator().manual_seed(10 + a)
        )
        for k, p in m.agent.named_parameters():
            torch.testing.assert_close(params[k][a], p.detach(), rtol=0, atol=2e-5, msg=lambda msg, k=k: f"{k}: {msg}")
        assert np.isclose(float(out["loss/value"][a]), metrics["loss/value"], rtol=1e-4)
