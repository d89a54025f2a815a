"""Image observations: the Nature CNN, its use by PPO/A2C/DQN, raw-score episode statistics,
pattern presets, and the errors that name the missing install extra."""

import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import lucidrl
from lucidrl import config as config_module
from lucidrl.envs import episode_scores, make_env, make_vec_env
from lucidrl.errors import ConfigError, EnvError, MissingDependencyError
from lucidrl.networks import ActorCritic, FlattenFloat, NatureCNN, obs_encoder
from lucidrl.rollout import RolloutCollector, VectorStepper, rollout_policy


def _box(shape, dtype=np.uint8):
    return gym.spaces.Box(0, 255, shape, dtype)


# --------------------------------------------------------------------------- the CNN
def test_nature_cnn_shapes_on_atari_frames():
    cnn = NatureCNN(_box((4, 84, 84)))
    # Mnih et al. 2015: 84 -> 20 (8x8 s4) -> 9 (4x4 s2) -> 7 (3x3 s1); 64 * 7 * 7 = 3136 -> 512
    assert [tuple(m.weight.shape) for m in cnn.conv if isinstance(m, torch.nn.Conv2d)] == [
        (32, 4, 8, 8),
        (64, 32, 4, 4),
        (64, 64, 3, 3),
    ]
    assert [m.stride for m in cnn.conv if isinstance(m, torch.nn.Conv2d)] == [(4, 4), (2, 2), (1, 1)]
    assert tuple(cnn.fc[0].weight.shape) == (512, 3136)
    x = torch.randint(0, 256, (5, 3, 4, 84, 84), dtype=torch.uint8)  # [T, N, C, H, W]
    assert cnn(x).shape == (5, 3, 512)
    assert cnn(x[0, 0]).shape == (512,)


def test_cnn_scales_uint8_pixels_inside_the_network():
    cnn = NatureCNN(_box((1, 36, 36)))
    x = torch.randint(0, 256, (7, 1, 36, 36), dtype=torch.uint8)
    torch.testing.assert_close(cnn(x), cnn.fc(cnn.conv(x.float() / 255.0)))  # pixels in [0, 1]
    torch.testing.assert_close(cnn(x), cnn(x.float()))  # a function of the pixel values, not of the dtype
    float_cnn = NatureCNN(gym.spaces.Box(0.0, 1.0, (1, 36, 36), np.float32))
    assert float_cnn.scale == 1.0  # float images are taken as they are


def test_cnn_takes_channels_last_images():
    space = _box((40, 50, 3))
    cnn = NatureCNN(space)
    assert cnn.channels_last and cnn.conv[0].in_channels == 3
    x = torch.randint(0, 256, (2, 40, 50, 3), dtype=torch.uint8)
    chw = NatureCNN(_box((3, 40, 50)))
    chw.load_state_dict(cnn.state_dict())
    torch.testing.assert_close(cnn(x), chw(x.permute(0, 3, 1, 2)))


def test_obs_encoder_chooses_the_cnn_for_images_only():
    enc, dim = obs_encoder(_box((4, 84, 84)), "PPO")
    assert isinstance(enc, NatureCNN) and dim == 512
    enc, dim = obs_encoder(_box((8, 8)), "PPO")
    assert isinstance(enc, FlattenFloat) and dim == 64
    with pytest.raises(EnvError, match="at least 36x36"):
        obs_encoder(_box((1, 20, 20)), "PPO")
    with pytest.raises(EnvError, match="3-D Box"):
        obs_encoder(_box((2, 4, 40, 40)), "PPO")


def test_actor_and_critic_share_one_cnn_run_once_per_forward():
    agent = ActorCritic(_box((4, 84, 84)), gym.spaces.Discrete(6), net_arch=[])
    calls = []
    agent.encoder.register_forward_hook(lambda *a: calls.append(1))
    params, value = agent(torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8))
    assert params.shape == (3, 6) and value.shape == (3,) and len(calls) == 1
    # both losses reach the shared encoder
    value.sum().backward()
    g_value = agent.encoder.conv[0].weight.grad.clone()
    assert g_value.abs().sum() > 0
    agent.zero_grad()
    agent.policy_params(torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8))[:, 0].sum().backward()
    assert agent.encoder.conv[0].weight.grad.abs().sum() > 0
    # acting goes through the same network: the rollout's policy gives the agent's own parameters and values
    x = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    _, acting_params, acting_values = rollout_policy(agent)(x, None)
    torch.testing.assert_close(acting_params, agent.policy_params(x))
    torch.testing.assert_close(acting_values, agent.value(x))


def test_dqn_with_a_cnn_selects_the_reference_backend_which_trains_the_cnn():
    class Img(gym.Env):
        observation_space, action_space = _box((1, 36, 36)), gym.spaces.Discrete(3)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.np_random.integers(0, 256, (1, 36, 36), dtype=np.uint8), {}

        def step(self, a):
            return np.full((1, 36, 36), 200, np.uint8), 1.0, True, False, {}

    kwargs = dict(buffer_size=64, learning_starts=8, batch_size=4, train_freq=1, net_arch=[], seed=0, verbose=0)
    model = lucidrl.DQN(Img, **kwargs)
    # the fast backend is for flat MLPs: with a CNN, backend="auto" picks the reference and says why
    lines = {line.split(":", 1)[0]: line for line in model.backend_lines}
    for name in ("dqn_train_round", "dqn_greedy"):
        assert lines[name].startswith(f"{name}: reference (lucidrl.algos.dqn."), lines[name]
        assert "NatureCNN" in lines[name]
    assert model._train_round is lucidrl.algos.dqn.dqn_train_round
    with pytest.raises(ConfigError, match="NatureCNN"):  # asking for the fast backend names what it lacks
        lucidrl.DQN(Img, backend="fast", **kwargs)
    conv_before = model.q_net.encoder.conv[0].weight.detach().clone()
    model.learn(16)
    assert model.n_updates > 0
    assert not torch.equal(conv_before, model.q_net.encoder.conv[0].weight)  # autograd trained the CNN
    assert model.replay.obs.dtype == torch.uint8


# --------------------------------------------------------------------------- raw-score episode statistics
class _FiveEnv(gym.Env):
    """Two steps per episode, reward 5 each: raw return 10; clipped to its sign, 2."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), 5.0, self.t == 2, False, {}


def _recorded_and_clipped():
    env = gym.wrappers.RecordEpisodeStatistics(_FiveEnv())
    return gym.wrappers.TransformReward(env, np.sign)


@pytest.mark.parametrize("mode", [gym.vector.AutoresetMode.SAME_STEP, gym.vector.AutoresetMode.NEXT_STEP])
def test_collectors_report_the_recorded_raw_score_not_the_clipped_sum(mode):
    venv = gym.vector.SyncVectorEnv([_recorded_and_clipped] * 2, autoreset_mode=mode)
    agent = ActorCritic(venv.single_observation_space, venv.single_action_space)
    rollout = RolloutCollector(venv, torch.device("cpu"), seed=0).collect(agent, 9)
    assert set(rollout.rewards.flatten().tolist()) <= {0.0, 1.0}  # the agent trains on clipped rewards
    assert rollout.episode_returns and all(r == 10.0 for r in rollout.episode_returns)

    model = lucidrl.DQN(
        gym.vector.SyncVectorEnv([_recorded_and_clipped] * 2, autoreset_mode=mode),
        learning_starts=4,
        buffer_size=64,
        batch_size=4,
        seed=0,
        verbose=0,
    )
    model.learn(8)  # allocates the replay memory
    model._stepper = VectorStepper(model.env, seed=0)  # a fresh start of the collection
    returns, _ = model._collect(6, target=10**6)  # 6 calls of env.step: 3 episodes in each of 2 envs
    assert returns and all(r == 10.0 for r in returns)
    assert set(model.replay.rewards[: model.replay.size].tolist()) <= {0.0, 1.0}


def test_episode_scores_falls_back_to_the_counted_sum():
    counted = np.array([3.0, 4.0])
    assert episode_scores({}, np.array([1]), counted) == [4.0]
    same_step = {"final_info": {"episode": {"r": np.array([0.0, 21.0])}, "_episode": np.array([False, True])}}
    assert episode_scores(same_step, np.array([1]), counted) == [21.0]
    next_step = {"episode": {"r": np.array([-7.0, 0.0])}, "_episode": np.array([True, False])}
    assert episode_scores(next_step, np.array([0]), counted) == [-7.0]


# --------------------------------------------------------------------------- presets
def test_atari_ids_get_the_zoo_atari_presets_by_pattern():
    for algo in ("ppo", "a2c", "dqn"):
        assert config_module.preset_for_env(algo, "ALE/Breakout-v5") == "ALE/*"
        assert config_module.preset_for_env(algo, "PongNoFrameskip-v4") == "*NoFrameskip-v4"
        assert config_module.preset_for_env(algo, "CartPole-v1") == "CartPole-v1"
        assert config_module.preset_for_env(algo, "MyEnv-v0") is None
    ppo = config_module.load_presets("ppo")["ALE/*"]["hyperparams"]
    assert (ppo["n_envs"], ppo["n_steps"], ppo["n_epochs"], ppo["batch_size"]) == (8, 128, 4, 256)
    dqn = config_module.load_presets("dqn")["*NoFrameskip-v4"]["hyperparams"]
    assert (dqn["buffer_size"], dqn["learning_starts"], dqn["target_update_interval"]) == (100_000, 100_000, 1000)
    assert config_module.load_presets("a2c")["ALE/*"]["hyperparams"]["n_envs"] == 16


def test_an_exact_id_wins_over_a_pattern(monkeypatch):
    presets = {"ALE/*": {"hyperparams": {"n_envs": 8}}, "ALE/Pong-v5": {"hyperparams": {"n_envs": 2}}}
    monkeypatch.setattr(config_module, "load_presets", lambda algo: presets)
    assert config_module.preset_for_env("ppo", "ALE/Pong-v5") == "ALE/Pong-v5"
    assert config_module.preset_for_env("ppo", "ALE/Qbert-v5") == "ALE/*"


# --------------------------------------------------------------------------- missing extras
def test_missing_ale_py_names_the_atari_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # `import ale_py` now raises ImportError
    for env_id in ("ALE/Pong-v5", "PongNoFrameskip-v4"):
        with pytest.raises(MissingDependencyError, match=r"pip install 'lucidrl\[atari\]'"):
            make_env(env_id)
        with pytest.raises(MissingDependencyError, match=r"pip install 'lucidrl\[atari\]'"):
            make_vec_env(env_id, 2)


def _without(monkeypatch, package: str, env_modules: str):
    """Simulate an uninstalled ``package``: its import fails, and Gymnasium's env modules are re-imported."""
    monkeypatch.setitem(sys.modules, package, None)
    for name in [m for m in sys.modules if m.startswith(env_modules)]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize(
    "package, env_modules, env_id, extra",
    [
        ("Box2D", "gymnasium.envs.box2d", "LunarLander-v3", "box2d"),
        ("mujoco", "gymnasium.envs.mujoco", "HalfCheetah-v5", "mujoco"),
    ],
)
def test_a_missing_physics_engine_names_its_extra(monkeypatch, package, env_modules, env_id, extra):
    _without(monkeypatch, package, env_modules)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'lucidrl\[{extra}\]'"):
        make_env(env_id)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'lucidrl\[{extra}\]'"):
        make_vec_env(env_id, 2)


def test_missing_opencv_for_the_atari_preprocessing_names_the_atari_extra(monkeypatch):
    pytest.importorskip("ale_py")
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lucidrl\[atari\]'"):
        make_env("ALE/Pong-v5")


def test_cli_train_shorter_than_an_episode_still_evaluates(tmp_path, capsys):
    """A short run (a few thousand steps of Pong; here 4 steps of CartPole) may finish no episode:
    the learning curve is skipped with a note, and training still saves and evaluates."""
    from lucidrl.cli import main

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "ppo",
                "--env",
                "CartPole-v1",
                "--timesteps",
                "4",
                "--n-envs",
                "1",
                "--n-steps",
                "4",
                "--batch-size",
                "4",
                "--run-dir",
                str(run),
                "--no-progress",
                "--eval-episodes",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "no learning curve" in out and "mean evaluation return" in out
    assert (run / "model").is_dir()
