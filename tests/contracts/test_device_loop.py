"""The batched torch envs in the library: chosen by vectorization='torch' (and by 'auto' on a GPU), refused with
a clear error where they do not apply, saved and loaded like any model; compile=True where it applies."""

import numpy as np
import pytest
import torch

import lucidrl
from lucidrl.envs import make_vec_env
from lucidrl.errors import ConfigError, EnvError


def test_vectorization_torch_builds_the_batched_env_and_auto_keeps_gymnasium_on_the_cpu():
    venv = make_vec_env("CartPole-v1", 4, seed=0, vectorization="torch")
    assert type(venv).__name__ == "CartPoleTorchEnv" and venv.num_envs == 4
    assert not isinstance(make_vec_env("CartPole-v1", 4, seed=0), type(venv))
    model = lucidrl.PPO("Pendulum-v1", vectorization="torch", n_envs=4, verbose=0, seed=0)
    assert type(model.env).__name__ == "PendulumTorchEnv"


@pytest.mark.parametrize("env_id", ["LunarLander-v3", "FrozenLake-v1"])
def test_an_env_without_a_torch_version_is_refused_by_name(env_id):
    with pytest.raises(EnvError, match="CartPole-v1"):
        make_vec_env(env_id, 2, vectorization="torch")


@pytest.mark.parametrize("algo", ["DQN", "QLearning", "A3C"])
def test_algorithms_that_step_envs_themselves_refuse_torch_envs(algo):
    with pytest.raises(EnvError, match="on-policy"):
        getattr(lucidrl, algo)("CartPole-v1", vectorization="torch", verbose=0)


def test_normalisation_on_torch_envs_is_saved_loaded_and_resumed(tmp_path):
    """normalize_obs/normalize_reward on batched torch envs: the statistics are updated on the device while
    collecting, saved with the model, applied by predict after a load, and the returns in flight resume."""
    model = lucidrl.PPO("Acrobot-v1", vectorization="torch", n_envs=4, n_steps=32, batch_size=64, verbose=0, seed=0)
    assert model.config.normalize_obs and model.config.normalize_reward  # the preset's (rl-baselines3-zoo)
    model.learn(512)
    rms = model.obs_normalizer.rms
    assert float(rms.count) >= 512 and not torch.equal(rms.mean, torch.zeros_like(rms.mean))
    assert model.reward_scaler.returns.shape == (4,) and (model.reward_scaler.returns != 0).any()
    path = model.save(tmp_path / "m")
    loaded = lucidrl.load(path, env="Acrobot-v1", vectorization="torch")
    torch.testing.assert_close(loaded.obs_normalizer.rms.mean, rms.mean, rtol=0, atol=0)
    obs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    np.testing.assert_array_equal(loaded.reward_scaler.returns, model.reward_scaler.returns)
    collector = loaded._rollout_collector()
    np.testing.assert_array_equal(collector.discounted.numpy(), model.reward_scaler.returns)  # R goes on from there
    loaded.learn(256, reset_num_timesteps=False)
    assert float(loaded.obs_normalizer.rms.count) > float(rms.count)


def test_compile_is_refused_where_it_does_not_apply():
    with pytest.raises(ConfigError, match="PPO and A2C"):
        lucidrl.DQN("CartPole-v1", compile=True, verbose=0)
    with pytest.raises(ConfigError, match="target_kl"):
        lucidrl.PPO("CartPole-v1", compile=True, target_kl=0.01, verbose=0)
    with pytest.raises(ConfigError, match="compile"):
        lucidrl.PPO("CartPole-v1", compile="yes", verbose=0)


def test_a_model_trained_on_torch_envs_saves_loads_and_resumes(tmp_path):
    model = lucidrl.PPO("CartPole-v1", vectorization="torch", n_envs=8, n_steps=16, batch_size=64, verbose=0, seed=0)
    model.learn(1024)
    path = model.save(tmp_path / "m")
    loaded = lucidrl.load(path, vectorization="torch")
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(512, reset_num_timesteps=False)  # training goes on from the checkpoint, on torch envs again
    assert type(loaded.env).__name__ == "CartPoleTorchEnv"
    assert loaded.num_timesteps == 1024 + 512


def test_the_device_rollout_keeps_its_episode_statistics_across_rollouts():
    model = lucidrl.PPO("CartPole-v1", vectorization="torch", n_envs=4, n_steps=8, batch_size=16, verbose=0, seed=0)
    collector = model._rollout_collector()
    lengths = []
    for _ in range(20):
        r = collector.collect(model.agent, 8)
        lengths += r.episode_lengths
        assert r.valid is None and r.obs.shape == (8, 4, 4)
    assert lengths and all(8 <= n <= 500 for n in lengths)  # whole episodes, counted across rollout boundaries
    assert sum(lengths) <= 20 * 8 * 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU defaults")
def test_compile_on_the_cpu_uses_the_compiled_update_and_no_cuda_graph():
    model = lucidrl.PPO("CartPole-v1", vectorization="torch", compile=True, n_envs=4, verbose=0, seed=0)
    assert any("compiled" in line and line.startswith("ppo") for line in model.backend_lines)
    assert not any("CUDA graph" in line for line in model.backend_lines)
    assert model._rollout_collector().cuda_graph is False


def test_auto_on_a_gpu_would_pick_torch_envs_only_where_they_apply():
    from lucidrl.agent import _torch_envs_apply

    assert _torch_envs_apply(lucidrl.PPO("CartPole-v1", verbose=0))
    assert _torch_envs_apply(lucidrl.A2C("CartPole-v1", verbose=0))
    assert not _torch_envs_apply(lucidrl.DQN("CartPole-v1", verbose=0))  # DQN on a GPU keeps Gymnasium's envs
    assert _torch_envs_apply(lucidrl.PPO("Acrobot-v1", verbose=0))  # its preset normalises, on the device too
    assert not _torch_envs_apply(lucidrl.PPO("CartPole-v1", rollout_workers=2, verbose=0))


def test_vmap_train_takes_box_actions_and_refuses_normalisation_by_name():
    result = lucidrl.vmap_train(
        "Pendulum-v1", n_agents=2, total_timesteps=512, seed=0, n_envs=2, n_steps=32, batch_size=32, n_epochs=1
    )
    assert result.env_steps == 2 * 512 and all(len(c) == 1 for c in result.curves)  # the 200-step episodes ended
    model = result.model(1)
    assert type(model.action_space).__name__ == "Box"
    for k, p in model.agent.named_parameters():
        torch.testing.assert_close(p.detach(), result.params[k][1])  # agent 1's own weights, log σ included
    with pytest.raises(ConfigError, match="normalize_obs=False"):
        lucidrl.vmap_train("Acrobot-v1", n_agents=2, total_timesteps=64)  # its preset normalises


def test_matmul_precision_holds_tf32_on_a_gpu_and_restores_what_was_there():
    """matmul_precision: 'auto' = TensorFloat-32 on a CUDA device (JAX's default there), 'ieee' = full float32,
    nothing on the CPU; the setting before is back after, also when the block raises."""
    from lucidrl.threads import hold_matmul_precision

    matmul, cuda = torch.backends.cuda.matmul, torch.device("cuda")
    before = matmul.fp32_precision
    for setting, expected in (("auto", "tf32"), ("tf32", "tf32"), ("ieee", "ieee")):
        with hold_matmul_precision(setting, cuda) as precision:
            assert precision == expected and matmul.fp32_precision == expected
        assert matmul.fp32_precision == before
    with pytest.raises(KeyError), hold_matmul_precision("tf32", cuda):
        raise KeyError("a failing learn")
    assert matmul.fp32_precision == before
    with hold_matmul_precision("tf32", torch.device("cpu")) as precision:
        assert precision == "ieee" and matmul.fp32_precision == before  # the CPU's products are full float32


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_learn_computes_under_the_models_matmul_precision(device):
    matmul = torch.backends.cuda.matmul
    before, seen = matmul.fp32_precision, []
    model = lucidrl.PPO("CartPole-v1", device=device, n_envs=2, n_steps=16, batch_size=32, verbose=0, seed=0)
    model.learn(32, callback=lambda m, metrics: seen.append(matmul.fp32_precision))
    assert seen == ["tf32" if device == "cuda" else before] and matmul.fp32_precision == before
    with pytest.raises(ConfigError, match="matmul_precision must be one of auto, tf32, ieee, got 'fp16'"):
        lucidrl.PPO("CartPole-v1", matmul_precision="fp16", verbose=0)


def test_matmul_precision_uses_allow_tf32_where_torch_has_no_fp32_precision(monkeypatch):
    """torch 2.4-2.8 (lucidrl allows torch >= 2.4) know only the legacy flag."""
    from lucidrl.threads import hold_matmul_precision

    class Legacy:  # torch.backends.cuda.matmul before torch 2.9
        allow_tf32 = False

    legacy = Legacy()
    monkeypatch.setattr(torch.backends.cuda, "matmul", legacy)
    with hold_matmul_precision("auto", torch.device("cuda")) as precision:
        assert precision == "tf32" and legacy.allow_tf32 is True
    assert legacy.allow_tf32 is False
    with hold_matmul_precision("ieee", torch.device("cuda")) as precision:
        assert precision == "ieee" and legacy.allow_tf32 is False


def test_box_actions_reach_the_torch_env_clipped_and_the_rollout_keeps_the_sample():
    """As RolloutCollector: MountainCarContinuous charges 0.1 a^2 on the action it receives, so an unclipped
    action of 3 would cost 0.9 a step where Gymnasium's collector (and the action space) allows at most 0.1."""
    from lucidrl.device_rollout import evaluate_on_device

    model = lucidrl.PPO(
        "MountainCarContinuous-v0",
        vectorization="torch",
        n_envs=4,
        n_steps=16,
        batch_size=16,
        log_std_init=1.0,
        preset=False,
        verbose=0,
        seed=0,
    )
    with torch.no_grad():
        model.agent.actor[-2].bias.fill_(3.0)  # μ ≈ 3, beyond the bound 1
    r = model._rollout_collector().collect(model.agent, 16)
    a = r.actions[..., 0]
    assert (a.abs() > 1).any()  # the stored sample is the one π drew, unclipped
    not_goal = ~r.terminated
    expected = -0.1 * a.clamp(-1, 1).square()
    torch.testing.assert_close(r.rewards[not_goal], expected[not_goal].to(r.rewards.dtype))
    mean, _ = evaluate_on_device(model, 4, deterministic=True)  # full force right for 999 steps, never the goal
    assert mean == pytest.approx(-0.1 * 999, rel=1e-4)
