"""DQN through the public API: preset, save/load, errors before training, metrics, CLI registration."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import lucidrl
from lucidrl import ConfigError, EnvError
from lucidrl.replay import ReplayBuffer

SMALL = dict(
    seed=0,
    verbose=0,
    preset=False,
    learning_starts=50,
    train_freq=16,
    gradient_steps=4,
    batch_size=16,
    buffer_size=500,
    target_update_interval=32,
    net_arch=[16, 16],
)


def test_preset_is_the_zoo_entry_and_defaults_are_sb3s():
    m = lucidrl.DQN("CartPole-v1", seed=0, verbose=0)
    assert m.preset_name == "CartPole-v1" and "rl-baselines3-zoo" in m.preset_source
    c = m.config
    assert (
        c.learning_rate,
        c.batch_size,
        c.buffer_size,
        c.learning_starts,
        c.gamma,
        c.target_update_interval,
        c.train_freq,
        c.gradient_steps,
        c.exploration_fraction,
        c.exploration_final_eps,
        c.net_arch,
    ) == (2.3e-3, 64, 100_000, 1000, 0.99, 10, 256, 128, 0.16, 0.04, [256, 256])
    d = lucidrl.DQNConfig()
    assert (
        d.learning_rate,
        d.buffer_size,
        d.learning_starts,
        d.batch_size,
        d.tau,
        d.train_freq,
        d.gradient_steps,
        d.target_update_interval,
        d.exploration_fraction,
        d.exploration_initial_eps,
        d.exploration_final_eps,
        d.max_grad_norm,
        d.net_arch,
    ) == (1e-4, 1_000_000, 100, 32, 1.0, 4, 1, 10_000, 0.1, 1.0, 0.05, 10.0, [64, 64])


def test_save_load_round_trip_gives_identical_greedy_actions_and_state(tmp_path):
    m = lucidrl.DQN("CartPole-v1", **SMALL)
    m.learn(300)
    m.save(tmp_path / "ckpt")
    m2 = lucidrl.load(tmp_path / "ckpt")
    assert type(m2) is lucidrl.DQN and m2.config == m.config
    assert (m2.num_timesteps, m2.n_updates, m2.n_calls) == (m.num_timesteps, m.n_updates, m.n_calls)
    assert m2.exploration_rate == m.exploration_rate
    for name, module in m._modules().items():
        for (k, p), q in zip(module.state_dict().items(), m2._modules()[name].state_dict().values()):
            assert torch.equal(p, q), f"{name}/{k}"
    obs = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    assert (m.predict(obs, deterministic=True)[0] == m2.predict(obs, deterministic=True)[0]).all()
    s1, s2 = m.optimizer.state_dict()["state"], m2.optimizer.state_dict()["state"]
    for k in s1:
        for key, value in s1[k].items():
            assert torch.equal(value, s2[k][key]), key
    # the loaded model trains on (the update moves the network's own weights) and has a fresh replay buffer
    assert m2.replay is None
    before = [p.detach().clone() for p in m2.q_net.parameters()]
    m2.learn(
        200,
        reset_num_timesteps=False,
    )
    assert m.num_timesteps == 304  # whole rounds of train_freq=16 calls, as SB3: 19 rounds for 300 steps
    assert m2.num_timesteps == 512  # 200 more, rounded up to whole rounds
    assert all(not torch.equal(x, p) for x, p in zip(before, m2.q_net.parameters()))
    with torch.no_grad():  # and those weights are what acts
        greedy = m2.q_net(torch.from_numpy(obs)).argmax(-1).numpy()
    assert (m2.predict(obs, deterministic=True)[0] == greedy).all()


def test_learning_starts_at_or_beyond_the_budget_is_an_error_before_training():
    m = lucidrl.DQN("CartPole-v1", **{**SMALL, "learning_starts": 1000})
    with pytest.raises(ConfigError, match="learning_starts=1000"):
        m.learn(1000)
    assert m.num_timesteps == 0 and m.replay is None
    m.learn(1100)  # just beyond: trains
    assert m.n_updates > 0


def test_box_actions_are_refused_with_a_clear_error():
    with pytest.raises(EnvError, match="Discrete action space") as e:
        lucidrl.DQN("Pendulum-v1", verbose=0, preset=False)
    assert "PPO, A2C, TRPO, VPG" in str(e.value) and "Gaussian" in str(e.value)


@pytest.mark.parametrize(
    "bad",
    [
        dict(gamma=1.5),
        dict(tau=-0.1),
        dict(tau=2.0),
        dict(batch_size=0),
        dict(buffer_size=0),
        dict(train_freq=0),
        dict(gradient_steps=-2),
        dict(learning_starts=-1),
        dict(exploration_fraction=1.5),
        dict(exploration_final_eps=2.0),
        dict(max_grad_norm=0.0),
        dict(net_arch=[0]),
        dict(activation="sigmoid"),
        dict(target_update_interval=0),
        dict(learning_rate=-1.0),
        dict(buffer_siz=10),
    ],
)
def test_bad_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        lucidrl.DQN("CartPole-v1", verbose=0, preset=False, **bad)


def test_replay_buffer_too_large_for_memory_is_an_error_before_training():
    m = lucidrl.DQN("CartPole-v1", **{**SMALL, "buffer_size": 10**13})
    with pytest.raises(ConfigError, match="replay buffer"):
        m.learn(1000)
    with pytest.raises(ConfigError, match="lower buffer_size"):
        ReplayBuffer(10**13, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))


def test_several_envs_metrics_and_determinism():
    rows = []
    m = lucidrl.DQN(
        "CartPole-v1",
        **{**SMALL, "n_envs": 4},
    )
    m.learn(640, callback=lambda model, metrics: rows.append(metrics))
    assert m.num_timesteps == 640 and len(m.replay) > 500 - 1
    trained = [r for r in rows if "loss/value" in r]
    assert trained and all(np.isfinite(r["loss/value"]) and np.isfinite(r["diag/q_mean"]) for r in trained)
    assert {"train/exploration_rate", "train/n_updates"} <= set(rows[-1])
    m2 = lucidrl.DQN("CartPole-v1", **{**SMALL, "n_envs": 4})
    m2.learn(640)
    assert all(torch.equal(p, q) for p, q in zip(m.q_net.parameters(), m2.q_net.parameters()))


def test_gradient_steps_minus_one_takes_as_many_as_env_steps():
    m = lucidrl.DQN("CartPole-v1", **{**SMALL, "gradient_steps": -1, "n_envs": 2, "train_freq": 8})
    m.learn(160)  # rounds of 16 env steps; training once past 50 steps: after 64, 80, ..., 160
    assert m.n_updates == 16 * 7


def test_dqn_is_registered_for_the_cli():
    from lucidrl.agent import ALGORITHMS

    assert ALGORITHMS["dqn"] is lucidrl.DQN


@pytest.mark.parametrize(
    "options",
    [
        dict(double_q=True),
        dict(activation="tanh"),
        dict(tau=0.5),
        dict(double_q=True, activation="elu", max_grad_norm=None),
    ],
)
def test_options_train_and_keep_the_target_net_apart(options):
    rows = []
    m = lucidrl.DQN("CartPole-v1", **{**SMALL, **options})
    m.learn(300, callback=lambda model, metrics: rows.append(metrics))
    trained = [r for r in rows if "loss/value" in r]
    assert trained and all(np.isfinite(r["loss/value"]) and np.isfinite(r["diag/q_mean"]) for r in trained)
    assert not torch.equal(m.q_net.q[0].weight, m.q_net_target.q[0].weight)
    assert all(not p.requires_grad for p in m.q_net_target.parameters())
