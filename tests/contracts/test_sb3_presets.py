"""Every rl-baselines3-zoo preset (PPO, A2C, DQN, TRPO), `lucidrl presets`, and batch sizes that adapt to n_envs.

The zoo's entries are translated field by field by benchmarks/zoo_presets.py into lucidrl/presets/<algo>_zoo.yaml;
lucidrl's own presets (lucidrl/presets/<algo>.yaml) win for the same env id.
"""

import sys
from pathlib import Path

import gymnasium as gym
import pytest

import lucidrl
from lucidrl.agent import ALGORITHMS
from lucidrl.cli import main
from lucidrl.config import _read_presets, config_from_dict, load_presets, preset_for_env, resolve_config
from lucidrl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import zoo_presets  # noqa: E402

ZOO_ALGOS = ("ppo", "a2c", "dqn", "trpo")


def all_presets():
    return [(algo, name, p) for algo in sorted(ALGORITHMS) for name, p in load_presets(algo).items()]


def test_every_preset_loads_resolves_and_names_its_source():
    seen = 0
    for algo, name, p in all_presets():
        assert isinstance(p.get("source"), str) and len(p["source"]) > 10, (algo, name)
        assert isinstance(p.get("n_timesteps"), int) and p["n_timesteps"] > 0, (algo, name)
        assert isinstance(p.get("not_honoured", []), list) and all(
            isinstance(x, str) for x in p.get("not_honoured", [])
        )
        config, got, source = resolve_config(algo, ALGORITHMS[algo].config_class, None, name, {})
        assert got == name and source == p["source"]
        seen += 1
    for algo in ZOO_ALGOS:  # every generated entry says which zoo file, entry and version it comes from
        zoo = _read_presets(f"{algo}_zoo.yaml")
        assert len(zoo) >= 6
        for name, p in zoo.items():
            assert p["source"].startswith(f"rl-baselines3-zoo hyperparams/{algo}.yml, entry "), (algo, name)
            assert "(rl_zoo3 2.9.2)" in p["source"], (algo, name)
            assert name in load_presets(algo)  # shadowed ones too, as zoo/<env id>
    assert seen > 80


def test_zoo_entries_cover_gymnasium_envs_classic_box2d_mujoco_and_atari():
    for algo in ZOO_ALGOS:
        for name in load_presets(algo):
            env = name.removeprefix("zoo/")
            assert any(c in env for c in "*?") or env in gym.registry, (algo, name)
    expected = {
        "ppo": [
            "CartPole-v1",
            "MountainCar-v0",
            "MountainCarContinuous-v0",
            "Acrobot-v1",
            "Pendulum-v1",
            "LunarLander-v3",
            "LunarLanderContinuous-v3",
            "BipedalWalker-v3",
            "BipedalWalkerHardcore-v3",
            "CarRacing-v3",
            "Ant-v4",
            "Ant-v5",
            "Swimmer-v5",
            "HalfCheetah-v5",
            "Hopper-v5",
            "zoo/Hopper-v5",
            "HumanoidStandup-v5",
            "Humanoid-v4",
            "InvertedDoublePendulum-v5",
            "InvertedPendulum-v4",
            "Reacher-v5",
            "Walker2d-v5",
            "ALE/*",
            "*NoFrameskip-v4",
        ],
        "a2c": [
            "CartPole-v1",
            "MountainCar-v0",
            "Acrobot-v1",
            "zoo/Acrobot-v1",
            "MountainCarContinuous-v0",
            "LunarLanderContinuous-v3",
            "BipedalWalker-v3",
            "Humanoid-v5",
            "ALE/*",
        ],
        "dqn": ["CartPole-v1", "MountainCar-v0", "Acrobot-v1", "LunarLander-v3", "ALE/*", "*NoFrameskip-v4"],
        "trpo": [
            "CartPole-v1",
            "MountainCar-v0",
            "MountainCarContinuous-v0",
            "LunarLanderContinuous-v3",
            "HalfCheetah-v5",
            "Swimmer-v4",
            "BipedalWalker-v3",
            "zoo/Pendulum-v1",
        ],
    }
    for algo, names in expected.items():
        missing = set(names) - set(load_presets(algo))
        assert not missing, (algo, missing)
    # field by field: policy_kwargs, normalize, schedules, target_kl, a v4 entry under Gymnasium's v5 name
    hc = load_presets("ppo")["HalfCheetah-v5"]
    assert hc["hyperparams"]["net_arch"] == [256, 256] and hc["hyperparams"]["activation"] == "relu"
    assert hc["hyperparams"]["log_std_init"] == -2 and hc["hyperparams"]["ortho_init"] is False
    assert "entry HalfCheetah-v4" in hc["source"] and "HalfCheetah-v5 is Gymnasium's current version" in hc["source"]
    cfg, _, _ = resolve_config("trpo", lucidrl.TRPOConfig, "HalfCheetah-v5", True, {})
    assert cfg.target_kl == 0.04 and cfg.normalize_obs and cfg.normalize_reward and cfg.cg_max_steps == 25
    cfg, _, _ = resolve_config("ppo", lucidrl.PPOConfig, "BipedalWalkerHardcore-v3", True, {})
    assert cfg.learning_rate == lucidrl.linear(2.5e-4) and cfg.clip_range == lucidrl.linear(0.2)
    car = load_presets("ppo")["CarRacing-v3"]
    assert car["hyperparams"]["net_arch"] == [256] and not car["hyperparams"]["normalize_obs"]
    assert any("GELU" in x for x in car["not_honoured"]) and any("frame_stack=2" in x for x in car["not_honoured"])


def test_cartpole_presets_are_the_zoo_values_unchanged():
    c = lucidrl.PPO("CartPole-v1", seed=0, verbose=0).config
    assert (
        c.n_envs,
        c.n_steps,
        c.batch_size,
        c.gae_lambda,
        c.gamma,
        c.n_epochs,
        c.ent_coef,
        c.learning_rate,
        c.clip_range,
    ) == (8, 32, 256, 0.8, 0.98, 20, 0.0, lucidrl.linear(1e-3), lucidrl.linear(0.2))
    assert (c.net_arch, c.activation, c.normalize_obs) == ([64, 64], "tanh", False)
    t = lucidrl.TRPO("CartPole-v1", seed=0, verbose=0).config
    assert (t.n_envs, t.n_steps, t.batch_size, t.cg_damping, t.n_critic_updates) == (2, 512, 512, 1e-3, 20)


def test_dqn_mountaincar_gets_the_zoo_preset():
    m = lucidrl.DQN("MountainCar-v0", seed=0, verbose=0)
    assert m.preset_name == "MountainCar-v0" and "dqn.yml, entry MountainCar-v0" in m.preset_source
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
    ) == (4e-3, 128, 10_000, 1000, 0.98, 600, 16, 8, 0.2, 0.07, [256, 256])


def test_not_honoured_fields_are_in_the_notes_and_the_log(capsys):
    m = lucidrl.PPO("MountainCarContinuous-v0", seed=0, n_epochs=1)
    note = next(n for n in m.notes if "does not honour" in n)
    assert "use_sde" in note and "gSDE" in note
    m.learn(16, progress_bar=False)
    assert "does not honour: use_sde=True" in capsys.readouterr().out
    assert any("use_sde" in n for n in lucidrl.TRPO("Pendulum-v1", seed=0, verbose=0).notes)  # lucidrl's own preset
    assert not any("does not honour" in n for n in lucidrl.PPO("CartPole-v1", seed=0, verbose=0).notes)


def test_batch_size_adapts_to_the_users_n_envs_and_says_so():
    m = lucidrl.PPO("CartPole-v1", n_envs=2, seed=0, verbose=0)
    assert (m.config.n_envs, m.config.n_steps, m.config.batch_size) == (2, 32, 64)  # still one minibatch per epoch
    assert any("batch_size 256 -> 64" in n and "32 * 2 = 64" in n for n in m.notes)
    m.learn(128)
    assert m.num_timesteps == 128
    cfg, _, _ = resolve_config("ppo", lucidrl.PPOConfig, "CartPole-v1", True, {"n_envs": 3, "n_steps": 30})
    assert cfg.batch_size == 90
    notes = []  # no whole number of the preset's minibatches: the largest divisor of the rollout not above 64
    cfg, _, _ = resolve_config("ppo", lucidrl.PPOConfig, "LunarLander-v3", True, {"n_envs": 3, "n_steps": 1000}, notes)
    assert cfg.batch_size == 60 and "batch_size 64 -> 60" in notes[0]
    # a batch that still divides the rollout is kept (as SB3 keeps it)
    assert resolve_config("trpo", lucidrl.TRPOConfig, "CartPole-v1", True, {"n_envs": 3})[0].batch_size == 512
    assert resolve_config("ppo", lucidrl.PPOConfig, "CartPole-v1", True, {"n_envs": 16})[0].batch_size == 256


def test_values_the_user_set_are_never_changed():
    m = lucidrl.PPO("CartPole-v1", n_envs=2, batch_size=32, seed=0, verbose=0)
    assert m.config.batch_size == 32 and not any("batch_size" in n and "->" in n for n in m.notes)
    with pytest.raises(ConfigError, match="batch_size=256 is larger than a rollout"):
        lucidrl.PPO("CartPole-v1", n_envs=2, batch_size=256, verbose=0)
    m = lucidrl.PPO("CartPole-v1", batch_size=128, seed=0, verbose=0)  # n_envs not changed: nothing adapts
    assert (m.config.n_envs, m.config.batch_size) == (8, 128)


def test_policy_kwargs_are_read_without_running_code():
    text = "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256], vf=[256]))"
    assert zoo_presets.parse_policy_kwargs(text) == {
        "log_std_init": -2,
        "ortho_init": False,
        "activation_fn": "nn.ReLU",
        "net_arch": {"pi": [256], "vf": [256]},
    }
    for bad in ("__import__('os').system('echo pwned')", "dict(x=open('f'))", "[1, 2]"):
        with pytest.raises(ValueError):
            zoo_presets.parse_policy_kwargs(bad)
    hp, nh = zoo_presets.translate(
        "ppo",
        lucidrl.PPOConfig,
        "X-v0",
        {
            "n_timesteps": 1e5,
            "policy": "MlpPolicy",
            "normalize": "{'norm_obs': False, 'norm_reward': True}",
            "learning_rate": "lin_3e-4",
            "use_sde": True,
            "sde_sample_freq": 4,
            "some_zoo_key": 1,
            "policy_kwargs": "dict(activation_fn=nn.GELU, net_arch=dict(pi=[32], vf=[64]))",
        },
    )
    assert hp == {"normalize_obs": False, "normalize_reward": True, "learning_rate": "lin_3e-4", "net_arch": [32]}
    assert [x.split(" ")[0].split("=")[0] for x in nh] == [
        "use_sde",
        "sde_sample_freq",
        "some_zoo_key",
        "activation_fn",
        "net_arch",
    ]
    config_from_dict(lucidrl.PPOConfig, hp)
    hp, nh = zoo_presets.translate(
        "a2c",
        lucidrl.A2CConfig,
        "atari",
        {
            "policy": "CnnPolicy",
            "frame_stack": 4,
            "n_envs": 16,
            "policy_kwargs": "dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=1e-5))",
        },
    )
    assert hp == {"net_arch": [], "n_envs": 16, "use_rms_prop": True, "rms_prop_eps": 1e-5}
    assert len(nh) == 1 and "RMSpropTFLike" in nh[0]


def test_generator_builds_the_files_from_the_zoo_yaml(tmp_path):
    (tmp_path / "ppo.yml").write_text(
        "default: {n_timesteps: !!float 1e6, policy: MlpPolicy}\n"
        "Walker2d-v4: {normalize: true, n_timesteps: !!float 1e6, policy: MlpPolicy, batch_size: 32, n_steps: 512}\n"
        "Hopper-v4: {n_timesteps: !!float 1e6, policy: MlpPolicy, n_steps: 512}\n"
        "MiniGrid-Empty-5x5-v0: {n_timesteps: !!float 1e5, policy: MlpPolicy}\n"
    )
    for algo in ("a2c", "dqn", "trpo"):
        (tmp_path / f"{algo}.yml").write_text("CartPole-v1: {n_timesteps: !!float 5e4, policy: MlpPolicy}\n")
    texts, report = zoo_presets.build(tmp_path, "test")
    import yaml

    ppo = yaml.safe_load(texts["ppo"])
    assert set(ppo) == {"Walker2d-v4", "Walker2d-v5", "zoo/Hopper-v4", "zoo/Hopper-v5"}  # Hopper: lucidrl's own wins
    assert ppo["Walker2d-v5"]["hyperparams"] == {
        "normalize_obs": True,
        "normalize_reward": True,
        "batch_size": 32,
        "n_steps": 512,
    }
    assert ppo["Walker2d-v5"]["n_timesteps"] == 1_000_000 and "(rl_zoo3 test)" in ppo["Walker2d-v5"]["source"]
    assert "MiniGrid-Empty-5x5-v0" in texts["ppo"].split("\n", 4)[3]  # named as skipped in the header


def test_cli_presets_lists_them(capsys):
    assert main(["presets", "ppo"]) == 0
    out = capsys.readouterr().out
    for name in load_presets("ppo"):
        assert f"ppo {name} " in out
    assert "rl_zoo3 2.9.2" in out and "not honoured: use_sde=True" in out
    assert main(["presets", "--env", "MountainCar-v0"]) == 0
    out = capsys.readouterr().out
    assert all(f"{algo:9s} MountainCar-v0" in out for algo in ZOO_ALGOS)
    assert "learning_rate=0.004" in out and "steps  source: rl-baselines3-zoo hyperparams/dqn.yml" in out
    assert main(["presets", "ppo", "--env", "ALE/Pong-v5"]) == 0
    assert "ALE/*" in capsys.readouterr().out
    assert main(["presets", "ppo", "--env", "MyEnv-v0"]) == 0
    assert "no preset for MyEnv-v0" in capsys.readouterr().out
    assert main(["presets", "ppo", "--env", "CartPol-v1"]) == 0  # a misspelt id is named, with the closest ones
    assert "note: Unknown environment id 'CartPol-v1'" in capsys.readouterr().out
    assert main(["presets", "nope"]) == 2
    assert preset_for_env("ppo", "Hopper-v5") == "Hopper-v5" and "zoo/Hopper-v5" in load_presets("ppo")
