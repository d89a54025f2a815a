"""A2C, VPG and REINFORCE through the public API: presets, save/load, errors, options, metrics, CLI."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import lucidrl
from lucidrl import ConfigError
from lucidrl.cli import main

SMALL = {
    "a2c": dict(n_envs=2, n_steps=8, seed=0, verbose=0, preset=False),
    "vpg": dict(n_envs=2, n_steps=32, n_critic_updates=3, seed=0, verbose=0, preset=False),
    "reinforce": dict(n_envs=2, n_steps=32, seed=0, verbose=0, preset=False),
}
CLASSES = {"a2c": lucidrl.A2C, "vpg": lucidrl.VPG, "reinforce": lucidrl.REINFORCE}


def small(algo, env="CartPole-v1", **kw):
    return CLASSES[algo](env, **{**SMALL[algo], **kw})


def test_presets_name_their_source_and_defaults_match_sb3():
    m = lucidrl.A2C("CartPole-v1", seed=0, verbose=0)
    assert m.preset_name == "CartPole-v1" and "rl-baselines3-zoo" in m.preset_source
    c = m.config
    assert (c.n_envs, c.ent_coef, c.n_steps, c.learning_rate, c.gamma, c.gae_lambda) == (8, 0.0, 5, 7e-4, 0.99, 1.0)
    assert (c.vf_coef, c.max_grad_norm, c.rms_prop_eps, c.use_rms_prop, c.normalize_advantage) == (
        0.5,
        0.5,
        1e-5,
        True,
        False,
    )
    assert isinstance(m.optimizer, torch.optim.RMSprop) and m.optimizer.defaults["alpha"] == 0.99
    v = lucidrl.VPG("CartPole-v1", seed=0, verbose=0)
    assert v.preset_name == "CartPole-v1" and "lucidrl-tuned" in v.preset_source and v.config.psi == "gae"
    plain = lucidrl.VPG("CartPole-v1", preset=False, verbose=0).config  # Spinning Up's VPG defaults
    assert (
        plain.n_steps,
        plain.learning_rate,
        plain.critic_learning_rate,
        plain.n_critic_updates,
        plain.gae_lambda,
    ) == (4000, 3e-4, 1e-3, 80, 0.97)
    r = lucidrl.REINFORCE("CartPole-v1", preset=False, verbose=0).config
    assert r.psi == "reward_to_go" and not r.normalize_advantage and not r.uses_critic


@pytest.mark.parametrize("algo", ["a2c", "vpg", "reinforce"])
def test_save_load_round_trip_gives_identical_actions_and_state(algo, tmp_path):
    m = small(algo, learning_rate=lucidrl.linear(1e-3))
    m.learn(256)
    m.save(tmp_path / "ckpt")
    m2 = lucidrl.load(tmp_path / "ckpt")
    assert type(m2) is type(m) and m2.config == m.config
    assert m2.num_timesteps == m.num_timesteps and m2.n_updates == m.n_updates
    for (k, p), q in zip(m.agent.state_dict().items(), m2.agent.state_dict().values()):
        assert torch.equal(p, q), k
    obs = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    assert (m.predict(obs, deterministic=True)[0] == m2.predict(obs, deterministic=True)[0]).all()
    assert (m.predict(obs)[0] == m2.predict(obs)[0]).all()  # the RNG is restored too
    for name, opt in m._optimizers().items():
        s1, s2 = opt.state_dict()["state"], m2._optimizers()[name].state_dict()["state"]
        assert s1.keys() == s2.keys()
        for k in s1:
            for key, value in s1[k].items():
                assert torch.equal(value, s2[k][key]), (name, key)
    assert CLASSES[algo].load(tmp_path / "ckpt").num_timesteps == m.num_timesteps


def test_a2c_resume_continues_the_same_training(tmp_path):
    a = small("a2c")
    a.learn(64)
    a.save(tmp_path / "mid")
    a.learn(64, reset_num_timesteps=False)
    b = lucidrl.load(tmp_path / "mid", env="CartPole-v1", verbose=0)
    b.learn(64, reset_num_timesteps=False)
    assert a.num_timesteps == b.num_timesteps == 128
    # the loaded model continues from the saved weights and optimiser (its env restarts from a new reset)
    assert all(torch.isfinite(p).all() for p in b.agent.parameters())
    # and after loading, the fast backend (auto) still updates the module's own weights
    before = [p.clone() for p in b.agent.parameters()]
    b.learn(16, reset_num_timesteps=False)
    assert not all(torch.equal(x, p) for x, p in zip(before, b.agent.parameters()))


@pytest.mark.parametrize("algo", ["a2c", "vpg"])
def test_same_seed_same_training(algo):
    a, b = small(algo), small(algo)
    a.learn(256)
    b.learn(256)
    assert all(torch.equal(p, q) for p, q in zip(a.agent.parameters(), b.agent.parameters()))


@pytest.mark.parametrize(
    "algo, kwargs, pattern",
    [
        ("a2c", {"n_steps": 0}, r"n_steps must be an integer >= 1"),
        ("a2c", {"gamma": 1.5}, r"gamma must lie in \(0, 1\]"),
        ("a2c", {"gae_lambda": 2.0}, r"gae_lambda must lie in \[0, 1\]"),
        ("a2c", {"rms_prop_eps": 0.0}, r"rms_prop_eps must be > 0"),
        ("a2c", {"rms_prop_alpha": 1.0}, r"rms_prop_alpha must lie in \[0, 1\)"),
        ("a2c", {"vf_coef": -1.0}, r"vf_coef must be >= 0"),
        ("a2c", {"max_grad_norm": 0.0}, r"max_grad_norm must be > 0 or None"),
        ("a2c", {"learning_rate": -7e-4}, r"learning_rate must lie in"),
        ("a2c", {"n_envs": 1, "n_steps": 1, "normalize_advantage": True}, r"normalize_advantage needs at least 2"),
        ("a2c", {"use_rmsprop": False}, r"no hyperparameter 'use_rmsprop'.*Did you mean 'use_rms_prop'"),
        ("vpg", {"psi": "advantage"}, r"psi must be 'total_return', 'reward_to_go', 'reward_to_go_baseline' or 'gae'"),
        ("vpg", {"n_critic_updates": 0}, r"n_critic_updates must be an integer >= 1"),
        ("vpg", {"critic_learning_rate": 2.0}, r"critic_learning_rate must lie in"),
        ("vpg", {"net_arch": [0]}, r"net_arch must be a list of positive layer sizes"),
        ("reinforce", {"psi": "gae"}, r"REINFORCE has no critic: psi must be 'total_return' or 'reward_to_go'"),
    ],
)
def test_invalid_hyperparameters_are_refused_before_anything_starts(algo, kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        CLASSES[algo]("NoSuchEnv-v0", **kwargs)


def test_unsupported_action_shapes_are_refused_naming_the_algorithm():
    class MatrixActions(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (2,))
        action_space = gym.spaces.Box(-1, 1, (2, 2))

        def reset(self, seed=None, options=None):
            return np.zeros(2, dtype=np.float32), {}

        def step(self, action):
            return np.zeros(2, dtype=np.float32), 0.0, False, False, {}

    with pytest.raises(lucidrl.EnvError, match=r"A2C takes a Box action space of one dimension"):
        lucidrl.A2C(MatrixActions, verbose=0, preset=False)
    with pytest.raises(lucidrl.EnvError, match=r"REINFORCE takes a Box action space of one dimension"):
        lucidrl.REINFORCE(MatrixActions, verbose=0, preset=False)
    with pytest.raises(lucidrl.EnvError, match="1-D|one dimension"):
        lucidrl.PPO(MatrixActions, verbose=0, preset=False)


@pytest.mark.parametrize("shared", [False, True])
def test_a2c_shared_trunk_or_separate_networks_both_train(shared):
    m = small("a2c", shared_trunk=shared, ent_coef=0.01, use_rms_prop=shared, normalize_advantage=True)
    assert hasattr(m.agent, "trunk") == shared and hasattr(m.agent, "actor") != shared
    # separate tanh MLPs take the fast backend; a shared trunk the reference, which says why
    line = next(line for line in m.backend_lines if line.startswith("a2c:"))
    if shared:
        assert line.startswith("a2c: reference (lucidrl.algos.a2c.a2c_update)") and "shared trunk" in line
    else:
        assert line == "a2c: fast backend (lucidrl.fast.actor_critic.a2c_update)"
    before = [p.clone() for p in m.agent.parameters()]
    rows = []
    m.learn(160, callback=lambda model, metrics: rows.append(metrics))
    assert len(rows) == 10 and all(np.isfinite(r["loss/value"]) and np.isfinite(r["diag/grad_norm"]) for r in rows)
    assert all(not torch.equal(x, p) for x, p in zip(before, m.agent.parameters()))  # every layer learned


@pytest.mark.parametrize("psi", ["total_return", "reward_to_go", "reward_to_go_baseline", "gae"])
def test_every_psi_trains_and_the_critic_only_when_needed(psi):
    m = small("vpg", psi=psi)
    critic_before = [p.clone() for p in m.agent.critic.parameters()]
    rows = []
    m.learn(128, callback=lambda model, metrics: rows.append(metrics))
    critic_moved = not all(torch.equal(x, p) for x, p in zip(critic_before, m.agent.critic.parameters()))
    assert critic_moved == (psi in ("reward_to_go_baseline", "gae"))
    assert ("loss/value" in rows[0]) == critic_moved and np.isfinite(rows[0]["loss/policy"])


def test_metrics_have_the_shared_names(tmp_path):
    m = small("a2c", run_dir=tmp_path / "run")
    m.learn(64)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in [
        "time/total_timesteps",
        "loss/policy",
        "loss/value",
        "loss/entropy",
        "diag/entropy",
        "diag/explained_variance",
        "diag/grad_norm",
        "time/steps_per_second",
        "train/learning_rate",
    ]:
        assert name in header
    v = small("vpg", run_dir=tmp_path / "vpg")
    v.learn(64)
    header = (tmp_path / "vpg" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ["loss/policy", "loss/value", "diag/kl_after_update", "diag/explained_variance", "diag/grad_norm"]:
        assert name in header


def test_a2c_counts_steps_like_sb3_and_takes_one_gradient_step_per_rollout():
    m = small("a2c")
    m.learn(100)  # rollouts of 2 x 8 = 16 steps: 7 updates reach 112 >= 100
    assert m.num_timesteps == 112 and m.n_updates == 7


def test_same_step_vector_env_has_no_reset_rows_and_trains():
    m = small("a2c", n_envs=3, vectorization="sync")
    assert isinstance(m.env, gym.vector.SyncVectorEnv)
    m.learn(240)
    assert m.num_timesteps == 240


def test_cli_help_and_a_tiny_training_run(tmp_path, capsys):
    out = subprocess.run(
        [sys.executable, "-m", "lucidrl.cli", "train", "a2c", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--rms-prop-eps FLOAT" in out and "--use-rms-prop" in out and "(default: 5)" in out
    out = subprocess.run(
        [sys.executable, "-m", "lucidrl.cli", "train", "vpg", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--psi {total_return,reward_to_go,reward_to_go_baseline,gae}" in out
    for algo in ("a2c", "vpg", "reinforce"):
        run = tmp_path / algo
        assert (
            main(
                [
                    "train",
                    algo,
                    "--env",
                    "CartPole-v1",
                    "--timesteps",
                    "256",
                    "--n-envs",
                    "2",
                    "--n-steps",
                    "16",
                    "--seed",
                    "0",
                    "--eval-episodes",
                    "1",
                    "--no-progress",
                    "--run-dir",
                    str(run),
                ]
            )
            == 0
        )
        assert type(lucidrl.load(run)) is CLASSES[algo]
    assert "mean evaluation return" in capsys.readouterr().out


def test_reinforce_refuses_and_hides_the_critic_settings_it_has_no_use_for(capsys):
    for name, value in (("critic_learning_rate", 1e-2), ("n_critic_updates", 5), ("gae_lambda", 0.9)):
        with pytest.raises(ConfigError, match=f"REINFORCE has no critic, so {name} is unused"):
            lucidrl.REINFORCE("CartPole-v1", verbose=0, **{name: value})
    with pytest.raises(SystemExit):
        main(["train", "reinforce", "--help"])
    help_text = capsys.readouterr().out
    assert "--n-critic-updates" not in help_text and "--gae-lambda" not in help_text
    assert "--critic-learning-rate" not in help_text and "--psi" in help_text
