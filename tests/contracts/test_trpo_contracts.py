"""TRPO's API: presets, metrics, save/load, determinism, bad configs, the CLI."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import lucidrl
from lucidrl import ConfigError
from lucidrl.cli import main
from lucidrl.linalg import get_flat_params

SMALL = dict(n_envs=2, n_steps=64, batch_size=64, n_critic_updates=2, seed=0, verbose=0)


def small_trpo(env="CartPole-v1", **kw):
    return lucidrl.TRPO(env, preset=False, **{**SMALL, **kw})


def test_zoo_preset_and_sb3_contrib_defaults():
    m = lucidrl.TRPO("CartPole-v1", seed=0, verbose=0)
    assert m.preset_name == "CartPole-v1" and "rl-baselines3-zoo hyperparams/trpo.yml" in m.preset_source
    c = m.config
    assert (
        c.n_envs,
        c.n_steps,
        c.batch_size,
        c.cg_damping,
        c.gae_lambda,
        c.gamma,
        c.learning_rate,
        c.n_critic_updates,
    ) == (2, 512, 512, 1e-3, 0.98, 0.99, 1e-3, 20)
    d = lucidrl.TRPOConfig()  # sb3-contrib's TRPO defaults
    assert (
        d.n_steps,
        d.batch_size,
        d.cg_max_steps,
        d.cg_damping,
        d.line_search_shrinking_factor,
        d.line_search_max_iter,
        d.n_critic_updates,
        d.target_kl,
        d.normalize_advantage,
        d.sub_sampling_factor,
        d.learning_rate,
        d.net_arch,
        d.activation,
    ) == (2048, 128, 15, 0.1, 0.8, 10, 10, 0.01, True, 1, 1e-3, [64, 64], "tanh")


@pytest.mark.parametrize("backend", ["reference", "fast"])
def test_actor_and_critic_are_separate_and_the_critic_alone_is_optimised(backend):
    from lucidrl.algos.trpo import fit_critic

    m = small_trpo(backend=backend)
    assert hasattr(m.agent, "actor") and hasattr(m.agent, "critic") and not m.agent.shared
    opt_params = [p for group in m.critic_optimizer.param_groups for p in group["params"]]
    assert [id(p) for p in opt_params] == [id(p) for p in m.agent.critic_parameters()]
    assert [id(p) for p in m.agent.critic_parameters()] == [id(p) for p in m.agent.critic.parameters()]
    assert {id(p) for p in opt_params}.isdisjoint(id(p) for p in m.agent.actor_parameters())
    assert (m._fit_critic is fit_critic) == (backend == "reference")
    actor_before = [p.detach().clone() for p in m.agent.actor_parameters()]
    critic_before = [p.detach().clone() for p in m.agent.critic_parameters()]
    batch = {"obs": torch.randn(64, 4), "returns": torch.randn(64)}
    m._fit_critic(m.agent, m.critic_optimizer, batch, m.config, torch.Generator().manual_seed(0))
    assert all(torch.equal(p, q) for p, q in zip(m.agent.actor_parameters(), actor_before))
    assert all(not torch.equal(p, q) for p, q in zip(m.agent.critic_parameters(), critic_before))


def test_learn_logs_the_trust_region_diagnostics():
    rows = []
    m = small_trpo(run_dir=None)
    m.learn(512, callback=lambda model, metrics: rows.append(metrics))
    assert len(rows) == 4 and m.n_updates == 4 and m.num_timesteps == 512
    for name in [
        "loss/policy",
        "loss/value",
        "loss/entropy",
        "diag/entropy",
        "diag/kl",
        "diag/explained_variance",
        "diag/grad_norm",
        "diag/cg_residual",
        "diag/surrogate_improvement",
        "diag/expected_improvement",
        "diag/step_norm",
        "train/backtracks",
        "train/cg_steps",
        "train/line_search_success",
        "train/learning_rate",
        "train/n_updates",
    ]:
        assert all(name in r and np.isfinite(r[name]) for r in rows), name
    for r in rows:
        assert r["diag/kl"] <= m.config.target_kl
        assert r["train/line_search_success"] == 0.0 or r["diag/surrogate_improvement"] > 0
        assert 1 <= r["train/cg_steps"] <= m.config.cg_max_steps


def test_npg_variant_and_sub_sampling_train():
    rows = []
    small_trpo(variant="npg", sub_sampling_factor=2).learn(256, callback=lambda model, metrics: rows.append(metrics))
    assert all(r["train/backtracks"] == 0 and r["train/line_search_success"] == 1.0 for r in rows)


def test_save_load_round_trip_gives_identical_actions_and_state(tmp_path):
    m = small_trpo(learning_rate=lucidrl.linear(1e-3))
    m.learn(256)
    m.save(tmp_path / "ckpt")
    m2 = lucidrl.load(tmp_path / "ckpt")
    assert type(m2) is lucidrl.TRPO and m2.num_timesteps == 256 and m2.n_updates == m.n_updates
    assert m2.config == m.config
    for p, q in zip(m.agent.state_dict().values(), m2.agent.state_dict().values()):
        assert torch.equal(p, q)
    # the flat θ that the policy step works in holds the loaded weights
    theta, theta2 = get_flat_params(m.agent.actor_parameters()), get_flat_params(m2.agent.actor_parameters())
    torch.testing.assert_close(theta2, theta, rtol=0, atol=0)
    obs = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    assert (m.predict(obs, deterministic=True)[0] == m2.predict(obs, deterministic=True)[0]).all()
    assert (m.predict(obs)[0] == m2.predict(obs)[0]).all()  # the RNG is restored, so sampled actions match too
    s1, s2 = m.critic_optimizer.state_dict(), m2.critic_optimizer.state_dict()
    for k in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][k][name], s2["state"][k][name])
    # resuming continues the same run
    m2.set_env("CartPole-v1")
    m2.learn(128, reset_num_timesteps=False)
    assert m2.num_timesteps == 384


def test_same_seed_same_training():
    a, b = small_trpo(), small_trpo()
    a.learn(256)
    b.learn(256)
    theta = lambda m: get_flat_params(m.agent.actor_parameters())  # noqa: E731
    assert torch.equal(theta(a), theta(b))
    assert all(torch.equal(p, q) for p, q in zip(a.agent.critic_parameters(), b.agent.critic_parameters()))
    c = small_trpo(seed=1)
    c.learn(256)
    assert not torch.equal(theta(a), theta(c))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"target_kl": 0.0}, r"target_kl \(δ\) must be > 0"),
        ({"cg_damping": -0.1}, r"cg_damping must be >= 0"),
        ({"cg_max_steps": 0}, r"cg_max_steps must be an integer >= 1"),
        ({"line_search_shrinking_factor": 1.0}, r"line_search_shrinking_factor must lie in \(0, 1\)"),
        ({"line_search_max_iter": 0}, r"line_search_max_iter must be an integer >= 1"),
        ({"n_critic_updates": 1.5}, r"n_critic_updates must be an integer >= 1"),
        ({"sub_sampling_factor": 0}, r"sub_sampling_factor must be an integer >= 1"),
        ({"n_steps": 8, "batch_size": 64}, r"batch_size=64 is larger than a rollout"),
        ({"variant": "ppo"}, r"variant must be 'trpo' or 'npg'"),
        ({"gamma": 1.5}, r"gamma must lie in \(0, 1\]"),
        ({"cg_dampin": 0.1}, r"no hyperparameter 'cg_dampin'.*Did you mean 'cg_damping'"),
        ({"shared_trunk": True}, r"TRPO keeps the actor and the critic as separate networks"),
    ],
)
def test_invalid_hyperparameters_are_refused_before_anything_starts(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        lucidrl.TRPO("NoSuchEnv-v0", **kwargs)


def test_cli_help_and_a_tiny_training_run(tmp_path, capsys):
    out = subprocess.run(
        [sys.executable, "-m", "lucidrl.cli", "train", "trpo", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--cg-damping" in out and "--target-kl" in out and "--variant {trpo,npg}" in out
    text = " ".join(out.split())  # argparse wraps the help text
    assert "δ, the trust region's radius" in text and "(default: 0.01)" in text and "--shared-trunk" not in out
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "trpo",
                "--env",
                "CartPole-v1",
                "--timesteps",
                "256",
                "--run-dir",
                str(run),
                "--n-envs",
                "2",
                "--n-steps",
                "64",
                "--batch-size",
                "64",
                "--n_critic_updates",
                "2",
                "--seed",
                "0",
                "--eval-episodes",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "mean evaluation return:" in capsys.readouterr().out
    model = lucidrl.load(run)
    assert model.name == "trpo" and model.num_timesteps == 256 and model.config.n_critic_updates == 2
