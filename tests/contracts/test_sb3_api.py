"""Stable-Baselines3's documented examples, run on lucidrl with only the import changed (docs/sb3.md).

Each example is SB3's own text (https://stable-baselines3.readthedocs.io: "Getting started", the PPO,
A2C and DQN pages, "Callbacks", "Examples"), with tiny budgets. Where lucidrl documents a difference
(its get_env() is a Gymnasium VectorEnv: ``obs, info = reset()``, five values from ``step``) the
example is written the way docs/sb3.md says. The examples that do not touch the VecEnv API are run
on Stable-Baselines3 as well, from the same source text, so "only the import changed" is checked, not claimed.
"""

from __future__ import annotations

import os
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import lucidrl
from lucidrl import ConfigError, EnvError
from lucidrl.callbacks import BaseCallback

LUCIDRL = """
from lucidrl import PPO, A2C, DQN, make_vec_env
from lucidrl.callbacks import (BaseCallback, CallbackList, CheckpointCallback, EvalCallback,
                               StopTrainingOnRewardThreshold, StopTrainingOnNoModelImprovement, EveryNTimesteps)
from lucidrl.evaluation import evaluate_policy
"""
SB3 = """
from stable_baselines3 import PPO, A2C, DQN
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.callbacks import (BaseCallback, CallbackList, CheckpointCallback, EvalCallback,
                                                StopTrainingOnRewardThreshold, StopTrainingOnNoModelImprovement,
                                                EveryNTimesteps)
from stable_baselines3.common.evaluation import evaluate_policy
"""


def run_example(source: str, imports: str, tmp_path, **names) -> dict:
    """Exec SB3's example text after ``imports``, in ``tmp_path`` (the examples save to relative paths)."""
    scope = {"gym": gym, "np": np, **names}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        torch.manual_seed(0)
        exec(textwrap.dedent(imports) + textwrap.dedent(source), scope)
    finally:
        os.chdir(cwd)
    return scope


# --------------------------------------------------------------------------- basic usage (lucidrl's VecEnv API)
GETTING_STARTED = """
model = A2C("MlpPolicy", "CartPole-v1", verbose=1)
model.learn(total_timesteps=200)

vec_env = model.get_env()
obs, info = vec_env.reset()                                   # Gymnasium's reset (docs/sb3.md)
for i in range(50):
    action, _state = model.predict(obs, deterministic=True)
    obs, reward, terminated, truncated, info = vec_env.step(action)   # Gymnasium's step
"""

PPO_PAGE = """
# Parallel environments
vec_env = make_vec_env("CartPole-v1", n_envs=4)

model = PPO("MlpPolicy", vec_env, verbose=1, n_steps=32, batch_size=64)
model.learn(total_timesteps=256)
model.save("ppo_cartpole")

del model # remove to demonstrate saving and loading

model = PPO.load("ppo_cartpole")

obs, info = vec_env.reset()
for _ in range(20):
    action, _states = model.predict(obs)
    obs, rewards, terminated, truncated, info = vec_env.step(action)
"""

A2C_PAGE = PPO_PAGE.replace("PPO", "A2C").replace("ppo", "a2c").replace(", n_steps=32, batch_size=64", "")

DQN_PAGE = """
env = gym.make("CartPole-v1")

model = DQN("MlpPolicy", env, verbose=1)
model.learn(total_timesteps=1300, log_interval=4)
model.save("dqn_cartpole")

del model # remove to demonstrate saving and loading

model = DQN.load("dqn_cartpole")

obs, info = env.reset()
for _ in range(50):
    action, _states = model.predict(obs, deterministic=True)
    obs, reward, terminated, truncated, info = env.step(action)
    if terminated or truncated:
        obs, info = env.reset()
"""


@pytest.mark.parametrize(
    "source, algo",
    [(GETTING_STARTED, "A2C"), (PPO_PAGE, "PPO"), (A2C_PAGE, "A2C"), (DQN_PAGE, "DQN")],
    ids=["getting_started", "ppo", "a2c", "dqn"],
)
def test_basic_usage_examples_run(source, algo, tmp_path, capsys):
    scope = run_example(source, LUCIDRL, tmp_path)
    model = scope["model"]
    assert type(model).__name__ == algo and model.num_timesteps > 0
    assert isinstance(scope.get("vec_env", model.get_env()), gym.vector.VectorEnv) or algo == "DQN"
    if "vec_env" in scope:
        assert np.shape(scope["action"]) == (scope["vec_env"].num_envs,)
    else:  # DQN's page: the single env instance given is the one trained on; save("x") writes the directory x
        assert scope["model"].n_envs == 1 and (tmp_path / "dqn_cartpole").is_dir()
    assert f"{algo.lower()}:" in capsys.readouterr().out  # verbose=1 logs


# --------------------------------------------------------------------------- callbacks, save/load, evaluate_policy
CUSTOM_CALLBACK = """
class CustomCallback(BaseCallback):
    \"\"\"SB3's template (docs: Callbacks > Custom Callback), recording the order of its hooks.\"\"\"
    def __init__(self, verbose: int = 0):
        super().__init__(verbose)
        self.events = []

    def _on_training_start(self) -> None:
        self.events.append(("training_start", self.num_timesteps))

    def _on_rollout_start(self) -> None:
        self.events.append(("rollout_start", self.num_timesteps))

    def _on_step(self) -> bool:
        self.events.append(("step", self.num_timesteps, self.n_calls, len(self.locals["dones"])))
        return True

    def _on_rollout_end(self) -> None:
        self.events.append(("rollout_end", self.num_timesteps))

    def _on_training_end(self) -> None:
        self.events.append(("training_end", self.num_timesteps))

callback = CustomCallback()
model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), n_steps=8, batch_size=16, seed=0)
model.learn(total_timesteps=32, callback=callback)
"""


@pytest.mark.parametrize("imports", [LUCIDRL, SB3], ids=["lucidrl", "sb3"])
def test_custom_callback_hooks_in_sb3_order(imports, tmp_path):
    if imports is SB3:
        pytest.importorskip("stable_baselines3")
    scope = run_example(CUSTOM_CALLBACK, imports, tmp_path)
    events = scope["callback"].events
    # 2 rollouts of 8 steps in 2 envs: training_start, (rollout_start, 8 steps, rollout_end) x 2, training_end
    steps = [e for e in events if e[0] == "step"]
    assert [e[0] for e in events] == (
        ["training_start"] + (["rollout_start"] + ["step"] * 8 + ["rollout_end"]) * 2 + ["training_end"]
    )
    assert [e[1] for e in steps] == list(range(2, 33, 2))  # num_timesteps moves per vector-env step, over all envs
    assert [e[2] for e in steps] == list(range(1, 17)) and {e[3] for e in steps} == {2}
    assert events[-1] == ("training_end", 32) and scope["model"].num_timesteps == 32


EVAL_STOP = """
eval_env = gym.make("CartPole-v1")
callback_on_best = StopTrainingOnRewardThreshold(reward_threshold=30, verbose=1)
eval_callback = EvalCallback(eval_env, callback_on_new_best=callback_on_best, eval_freq=16, n_eval_episodes=3,
                             best_model_save_path="./logs/", log_path="./logs/", verbose=1)
model = PPO("MlpPolicy", "CartPole-v1", verbose=1, seed=0)
model.learn(int(1e10), callback=eval_callback)
"""


def test_eval_callback_stops_on_reward_threshold_and_writes_sb3_files(tmp_path):
    scope = run_example(EVAL_STOP, LUCIDRL, tmp_path)
    model, cb = scope["model"], scope["eval_callback"]
    assert model.num_timesteps < 20_000  # stopped long before 1e10
    assert cb.best_mean_reward >= 30 and max(np.mean(r) for r in cb.evaluations_results) == cb.best_mean_reward
    npz = np.load(tmp_path / "logs" / "evaluations.npz")
    assert npz["results"].shape == (len(cb.evaluations_timesteps), 3)
    assert list(npz["timesteps"]) == [
        16 * 8 * (i + 1) for i in range(len(npz["timesteps"]))
    ]  # eval_freq calls x 8 envs
    best = lucidrl.PPO.load(tmp_path / "logs" / "best_model.zip")
    assert best.num_timesteps == npz["timesteps"][int(np.argmax(npz["results"].mean(1)))]


CHECKPOINTS = """
checkpoint_callback = CheckpointCallback(save_freq=100, save_path="./logs/", name_prefix="rl_model",
                                         save_replay_buffer=True, save_vecnormalize=True)
model = DQN("MlpPolicy", "CartPole-v1", learning_starts=250, train_freq=4, gradient_steps=1, buffer_size=2000)
model.learn(300, callback=checkpoint_callback)
"""


@pytest.mark.parametrize("imports", [LUCIDRL, SB3], ids=["lucidrl", "sb3"])
def test_checkpoint_callback_saves_every_save_freq_steps(imports, tmp_path):
    if imports is SB3:
        pytest.importorskip("stable_baselines3")
    run_example(CHECKPOINTS, imports, tmp_path)
    saved = sorted(p for p in os.listdir(tmp_path / "logs") if p.endswith("_steps.zip"))
    assert saved == ["rl_model_100_steps.zip", "rl_model_200_steps.zip", "rl_model_300_steps.zip"]
    if imports is LUCIDRL:
        model = lucidrl.DQN.load(tmp_path / "logs" / "rl_model_200_steps.zip")
        # save_replay_buffer: the memory is inside the checkpoint; the train_freq chunk in progress (4 steps) joins it
        # when the chunk ends (SB3 stores each transition after on_step: 199 there)
        assert model.num_timesteps == 200 and len(model.replay) == 196


SAVE_LOAD_EVALUATE = """
model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, seed=0)
model.learn(total_timesteps=256)
model.save("ppo_cartpole.zip")
loaded = PPO.load("ppo_cartpole.zip", env=gym.make("CartPole-v1"))
mean_reward, std_reward = evaluate_policy(loaded, loaded.get_env(), n_eval_episodes=5)
rewards, lengths = evaluate_policy(loaded, gym.make("CartPole-v1"), n_eval_episodes=4, return_episode_rewards=True)
"""


@pytest.mark.parametrize("imports", [LUCIDRL, SB3], ids=["lucidrl", "sb3"])
def test_save_load_and_evaluate_policy(imports, tmp_path):
    if imports is SB3:
        pytest.importorskip("stable_baselines3")
    scope = run_example(SAVE_LOAD_EVALUATE, imports, tmp_path)
    assert isinstance(scope["mean_reward"], float) and scope["mean_reward"] > 0 and scope["std_reward"] >= 0
    assert len(scope["rewards"]) == len(scope["lengths"]) == 4 and scope["rewards"] == [
        float(x) for x in scope["lengths"]
    ]
    if imports is LUCIDRL:
        loaded, model = scope["loaded"], scope["model"]
        assert loaded.n_envs == model.n_envs == 8  # the preset's 8 envs: copies of the given env made from its spec
        obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        np.testing.assert_array_equal(
            loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
        )


def test_evaluate_policy_spreads_episodes_over_vector_copies_like_sb3():
    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0)
    venv = lucidrl.make_vec_env("CartPole-v1", n_envs=3, seed=1)
    rewards, lengths = lucidrl.evaluate_policy(model, venv, n_eval_episodes=7, return_episode_rewards=True)
    assert len(rewards) == 7 and rewards == [float(x) for x in lengths]  # CartPole: reward 1 a step
    with pytest.raises(AssertionError, match="Mean reward below threshold"):
        lucidrl.evaluate_policy(model, "CartPole-v1", n_eval_episodes=2, reward_threshold=1e6)


# --------------------------------------------------------------------------- the constructor and attributes
def test_constructor_forms_policy_kwargs_and_attributes():
    old = lucidrl.PPO("CartPole-v1", seed=0, verbose=0)  # lucidrl's own form keeps working
    new = lucidrl.PPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        verbose=0,
        policy_kwargs=dict(
            net_arch=dict(pi=[32, 32], vf=[32, 32]), activation_fn=nn.ReLU, ortho_init=False, log_std_init=-0.5
        ),
    )
    kw = lucidrl.PPO(policy="MlpPolicy", env="CartPole-v1", verbose=0)
    assert old.policy_name is None and new.policy_name == kw.policy_name == "MlpPolicy"
    assert (new.net_arch, new.activation, new.ortho_init, new.log_std_init) == ([32, 32], "relu", False, -0.5)
    assert new.policy is new.agent and new.policy.actor[0].out_features == 32
    assert isinstance(new.policy.actor[1], nn.ReLU)
    assert (new.gamma, new.n_steps, new.n_envs, new.seed) == (0.98, 32, 8, 0)  # the preset's, read from config
    assert new.learning_rate is new.config.learning_rate and new.get_env() is new.env and new.num_timesteps == 0
    dqn = lucidrl.DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=dict(qf=[16])), verbose=0)
    assert dqn.net_arch == [16] and dqn.policy is dqn.q_net
    with pytest.raises(AttributeError):
        new.no_such_thing  # noqa: B018  (the attribute look-up is what raises)
    with pytest.raises(EnvError, match=r"obs, info = env.reset\(\)"):  # SB3's obs = vec_env.reset() habit
        new.predict(new.get_env().reset())


@pytest.mark.parametrize(
    "args, kwargs, error, pattern",
    [
        (("CnnPolicy", "CartPole-v1"), {}, ConfigError, r"CnnPolicy needs image observations.*Use 'MlpPolicy'"),
        (("MultiInputPolicy", "CartPole-v1"), {}, ConfigError, r"MultiInputPolicy reads Dict observations"),
        (("CartPole-v1", "MlpPolicy"), {}, ConfigError, r"the first argument is the policy"),
        (
            ("MlpPolicy", "CartPole-v1"),
            dict(policy_kwargs=dict(optimizer_class=torch.optim.SGD)),
            ConfigError,
            r"does not take 'optimizer_class'; it accepts net_arch, activation_fn, ortho_init, log_std_init",
        ),
        (
            ("MlpPolicy", "CartPole-v1"),
            dict(policy_kwargs=dict(net_arch=dict(pi=[64], vf=[32]))),
            ConfigError,
            r"same hidden layers",
        ),
        (
            ("MlpPolicy", "CartPole-v1"),
            dict(policy_kwargs=dict(activation_fn=nn.GELU)),
            ConfigError,
            r"nn.Tanh, nn.ReLU",
        ),
        (
            ("MlpPolicy", "CartPole-v1"),
            dict(policy_kwargs=dict(net_arch=[8]), net_arch=[8]),
            ConfigError,
            r"pass it once",
        ),
        (
            ("MlpPolicy", "CartPole-v1"),
            dict(tensorboard_log="x", run_dir="y"),
            ConfigError,
            r"run_dir or tensorboard_log",
        ),
    ],
)
def test_what_lucidrl_cannot_honour_is_refused(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        lucidrl.PPO(*args, verbose=0, **kwargs)


class NoSpecCartPole(gym.Wrapper):
    """A CartPole whose spec is hidden: lucidrl cannot make copies of it."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))

    @property
    def spec(self):
        return None


def test_a_single_env_instance_just_works(capsys):
    env = gym.make("CartPole-v1")
    model = lucidrl.PPO("MlpPolicy", env, seed=0)  # the preset asks for 8 envs
    assert model.n_envs == 8 and model.env.envs[0] is env  # the given env is copy 1, the others from its spec
    model.learn(256)
    assert "your env is copy 1, copies 2-8 are made from its spec" in capsys.readouterr().out
    lone = lucidrl.PPO("MlpPolicy", NoSpecCartPole(), preset="CartPole-v1", seed=0)
    assert lone.n_envs == 1 and lone.batch_size <= lone.n_steps  # the batch adapts to one copy
    lone.learn(64)
    out = capsys.readouterr().out
    assert "no spec to make copies from: n_envs 8 -> 1" in out and "batch_size 256 ->" in out
    with pytest.raises(EnvError, match="no spec to make copies from, but n_envs=2"):
        lucidrl.PPO("MlpPolicy", NoSpecCartPole(), n_envs=2, verbose=0)


class BonusReward(gym.RewardWrapper):  # a user's wrapper: gymnasium.make cannot rebuild it from the spec
    def reward(self, reward):
        return 10.0


def test_an_env_with_a_wrapper_the_spec_cannot_rebuild_is_one_copy(capsys):
    model = lucidrl.PPO("MlpPolicy", BonusReward(gym.make("CartPole-v1")), seed=0)  # the preset asks for 8
    assert model.n_envs == 1
    model.learn(64)
    assert "cannot rebuild from its spec (BonusReward): n_envs 8 -> 1" in capsys.readouterr().out
    with pytest.raises(EnvError, match=r"cannot rebuild from its spec \(BonusReward\), but n_envs=2"):
        lucidrl.PPO("MlpPolicy", BonusReward(gym.make("CartPole-v1")), n_envs=2, verbose=0)
    copied = lucidrl.PPO(gym.wrappers.ClipReward(gym.make("CartPole-v1"), -1, 1), n_envs=2, verbose=0)
    assert type(copied.env.envs[1]).__name__ == "ClipReward"  # a Gymnasium wrapper is rebuilt in each copy


def test_a_new_tb_log_name_continues_the_curve_in_its_own_directory_as_sb3s_tensorboard_example(tmp_path):
    model = lucidrl.PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=16, batch_size=32, verbose=0,
                        tensorboard_log=tmp_path)  # fmt: skip
    model.learn(64, tb_log_name="first_run")
    model.learn(64, tb_log_name="second_run", reset_num_timesteps=False)
    model.learn(64, tb_log_name="third_run", reset_num_timesteps=False)
    model.learn(64, reset_num_timesteps=False)  # no name: the same directory
    assert sorted(os.listdir(tmp_path)) == ["first_run_1", "second_run_0", "third_run_0"]  # SB3's names
    steps = {d: [r["time/total_timesteps"] for r in lucidrl.logging.read_metrics(tmp_path / d / "metrics.csv")]
             for d in os.listdir(tmp_path)}  # fmt: skip
    assert steps == {"first_run_1": [32, 64], "second_run_0": [96, 128], "third_run_0": [160, 192, 224, 256]}
    model.learn(64, tb_log_name="second_run", reset_num_timesteps=False)  # its own directory: goes on there, as SB3
    assert sorted(os.listdir(tmp_path)) == ["first_run_1", "second_run_0", "third_run_0"]
    other = lucidrl.PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=16, batch_size=32, verbose=0,
                        tensorboard_log=tmp_path)  # fmt: skip
    other.learn(32, tb_log_name="mine")
    other.learn(32, tb_log_name="second_run", reset_num_timesteps=False)  # never into another model's directory
    assert other.run_dir == tmp_path / "second_run_1"
    rows = lucidrl.logging.read_metrics(tmp_path / "second_run_0" / "metrics.csv")
    assert [r["time/total_timesteps"] for r in rows] == [96, 128, 288, 320]


def test_a_run_directory_with_only_events_or_a_glob_character_in_its_name_is_never_shared(tmp_path):
    """A run stopped before its first row (events and model/, no metrics.csv) is another run's directory too;
    a tb_log_name such as "x[1]" is a name, not a glob pattern (SB3 escapes it as well)."""
    kw = dict(n_envs=2, n_steps=16, batch_size=32, verbose=0, tensorboard_log=tmp_path)
    stopped = lucidrl.PPO("MlpPolicy", "CartPole-v1", **kw)

    class Stop(lucidrl.callbacks.BaseCallback):
        def _on_step(self):
            return False  # at the first env step: before any row

    stopped.learn(64, tb_log_name="r", callback=Stop())
    assert (tmp_path / "r_1").is_dir() and not (tmp_path / "r_1" / "metrics.csv").exists()
    b = lucidrl.PPO("MlpPolicy", "CartPole-v1", **kw)
    b.learn(32, tb_log_name="first")
    b.learn(32, tb_log_name="r", reset_num_timesteps=False)
    assert b.run_dir == tmp_path / "r_2"
    a, c = lucidrl.PPO("MlpPolicy", "CartPole-v1", **kw), lucidrl.PPO("MlpPolicy", "CartPole-v1", **kw)
    a.learn(32, tb_log_name="x[1]")
    a.learn(32, tb_log_name="x[1]")  # a new run: x[1]_2, as SB3 (the glob once missed x[1]_1: "already holds a run")
    c.learn(32, tb_log_name="y")
    c.learn(32, tb_log_name="x[1]", reset_num_timesteps=False)
    assert sorted(p.name for p in tmp_path.glob("x*")) == ["x[1]_1", "x[1]_2", "x[1]_3"]
    assert c.run_dir == tmp_path / "x[1]_3"


def test_sb3s_vec_envs_are_refused_with_lucidrls_way_named():
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    cases = [
        (VecNormalize(sb3_make_vec_env("CartPole-v1", 2)), r"VecNormalize\(DummyVecEnv\) is Stable-Baselines3's "
         r"VecEnv.*normalize_obs=True, normalize_reward=True"),
        (sb3_make_vec_env("CartPole-v1", 2), r"DummyVecEnv is .*n_envs=N \(vectorization='sync' or 'async'"),
        (VecFrameStack(sb3_make_vec_env("CartPole-v1", 2), 4), "pass the Atari id"),
    ]  # fmt: skip
    for venv, message in cases:
        with pytest.raises(EnvError, match=message):
            lucidrl.PPO("MlpPolicy", venv)
    with pytest.raises(EnvError, match="DummyVecEnv is Stable-Baselines3's VecEnv"):
        lucidrl.evaluate_policy(lucidrl.PPO("CartPole-v1", verbose=0), cases[1][0])


def test_parameters_seed_logger_and_tensorboard_log(tmp_path):
    class Record(BaseCallback):
        def _on_rollout_end(self) -> None:
            self.logger.record("custom/steps", self.num_timesteps)

    def trained(seed):
        model = lucidrl.PPO(
            "MlpPolicy",
            "CartPole-v1",
            n_envs=2,
            n_steps=16,
            batch_size=32,
            verbose=0,
            seed=1,
            tensorboard_log=tmp_path / "tb",
        )
        model.set_random_seed(seed)
        model.learn(64, callback=Record(), tb_log_name="run")
        return model

    a, b, c = trained(7), trained(7), trained(8)  # the same initial weights; set_random_seed fixes what follows
    for (name, x), y, z in zip(
        a.get_parameters()["agent"].items(), b.get_parameters()["agent"].values(), c.get_parameters()["agent"].values()
    ):
        torch.testing.assert_close(x, y, msg=name)
        assert name.endswith("log_std") or not torch.equal(x, z), name
    fresh = lucidrl.PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=16, batch_size=32, verbose=0)
    fresh.set_parameters(a.get_parameters())
    obs = np.zeros((3, 4), np.float32)
    np.testing.assert_array_equal(fresh.predict(obs, deterministic=True)[0], a.predict(obs, deterministic=True)[0])
    torch.testing.assert_close(
        fresh.optimizer.state_dict()["state"][0]["exp_avg"], a.optimizer.state_dict()["state"][0]["exp_avg"]
    )
    with pytest.raises(lucidrl.CheckpointError, match="unknown q_net"):
        fresh.set_parameters({"q_net": {}})
    assert sorted(os.listdir(tmp_path / "tb")) == ["run_1", "run_2", "run_3"]  # SB3's naming: {tb_log_name}_{i}
    run = tmp_path / "tb" / "run_1"
    assert any(p.startswith("events.out.tfevents") for p in os.listdir(run))
    rows = lucidrl.logging.read_metrics(run / "metrics.csv")
    assert [r["custom/steps"] for r in rows] == [32.0, 64.0]


def test_a_step_callback_returning_false_stops_at_once_and_learn_continues_after():
    class StopAtThird(BaseCallback):
        def _on_step(self) -> bool:
            return self.n_calls < 3

    for cls in (lucidrl.PPO, lucidrl.DQN):
        model = cls(
            "MlpPolicy",
            "CartPole-v1",
            n_envs=2,
            verbose=0,
            seed=0,
            **(dict(n_steps=16, batch_size=32) if cls is lucidrl.PPO else dict(learning_starts=10)),
        )
        model.learn(10_000, callback=StopAtThird())
        assert model.num_timesteps == 6  # 3 calls of step in 2 envs, as SB3
        model.learn(64, reset_num_timesteps=False)
        assert model.num_timesteps >= 70


def test_callbacks_are_refused_where_no_sb3_hook_order_exists(tmp_path):
    model = lucidrl.QLearning("FrozenLake-v1", verbose=0, run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="takes function callbacks callback\\(model, metrics\\) only"):
        model.learn(100, callback=BaseCallback())
    assert not (tmp_path / "run").exists()
    calls = []
    model.learn(2000, callback=[lambda m, metrics: calls.append(m.num_timesteps)])  # a list of functions is fine
    assert calls


def test_every_n_timesteps_and_stop_on_max_episodes(capsys):
    from lucidrl.callbacks import CallbackList, EveryNTimesteps, StopTrainingOnMaxEpisodes

    class Count(BaseCallback):
        def _on_step(self) -> bool:
            self.calls = getattr(self, "calls", []) + [self.parent.num_timesteps]
            return True

    count, stop = Count(), StopTrainingOnMaxEpisodes(max_episodes=2, verbose=1)
    model = lucidrl.PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=16, batch_size=32, verbose=0, seed=0)
    model.learn(100_000, callback=CallbackList([EveryNTimesteps(n_steps=20, callback=count), stop]))
    assert stop.n_episodes == 4 and model.num_timesteps < 1000  # 2 episodes per env copy
    said = f"Stopping training at step {model.num_timesteps}: 4 episodes ended (2.00 per env on average)"
    assert said in capsys.readouterr().out
    assert count.calls == list(range(20, model.num_timesteps + 1, 20))  # every 20 env steps (10 calls of 2 envs)


def test_evaluate_policy_over_a_vector_env_counts_the_recorded_raw_score():
    """Copies that record their episodes (RecordEpisodeStatistics under a reward-changing wrapper, as lucidrl's
    Atari envs clip rewards) are scored by the recorded raw return, not by the rewards the vector env hands out."""

    def make():
        env = gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))
        return gym.wrappers.TransformReward(env, lambda r: 0.0)  # what the agent sees: 0 a step

    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0)
    venv = gym.vector.SyncVectorEnv([make] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    rewards, lengths = lucidrl.evaluate_policy(model, venv, n_eval_episodes=4, return_episode_rewards=True)
    assert len(rewards) == 4 and rewards == [float(x) for x in lengths] and min(rewards) > 0


SMALL_PPO = dict(n_envs=2, n_steps=16, batch_size=16, verbose=0, seed=0, preset=False)


def test_a_callback_that_raised_does_not_stay_attached():
    class Flaky(BaseCallback):
        calls = 0

        def _on_step(self) -> bool:
            Flaky.calls += 1
            if Flaky.calls == 5:
                raise KeyboardInterrupt  # Ctrl-C, or a bug in the callback
            return True

    for model in (lucidrl.PPO("CartPole-v1", **SMALL_PPO), lucidrl.DQN("CartPole-v1", verbose=0, learning_starts=10)):
        Flaky.calls = 0
        with pytest.raises(KeyboardInterrupt):
            model.learn(200, callback=Flaky())
        model.learn(64, reset_num_timesteps=False)
        assert Flaky.calls == 5


def test_make_vec_env_takes_sb3s_env_kwargs_and_wrapper_class():
    venv = lucidrl.make_vec_env("Pendulum-v1", n_envs=2, env_kwargs=dict(g=5.0))
    assert venv.envs[0].unwrapped.g == 5.0
    venv = lucidrl.make_vec_env(
        "CartPole-v1",
        n_envs=2,
        wrapper_class=gym.wrappers.ClipReward,
        wrapper_kwargs=dict(min_reward=0, max_reward=0.5),
    )
    assert venv.step(venv.action_space.sample())[1].tolist() == [0.5, 0.5]
    with pytest.raises(ConfigError, match="vec_env_cls is Stable-Baselines3's; lucidrl uses vectorization="):
        lucidrl.make_vec_env("CartPole-v1", n_envs=2, vec_env_cls=object)
    with pytest.raises(ConfigError, match="monitor_dir"):
        lucidrl.make_vec_env("CartPole-v1", n_envs=2, monitor_dir="logs")


def test_ep_info_buffer_and_terminal_observation_in_either_autoreset_mode():
    class Check(BaseCallback):
        ends = missing = 0

        def _on_step(self) -> bool:
            for i, done in enumerate(self.locals["dones"]):
                if done:
                    Check.ends += 1
                    Check.missing += "terminal_observation" not in self.locals["infos"][i]
            return True

    for n_envs in (2, 8):  # 8 CartPoles: Gymnasium's native vector env, which resets on the next step
        model = lucidrl.PPO("CartPole-v1", **{**SMALL_PPO, "n_envs": n_envs, "n_steps": 64, "batch_size": 64})
        model.learn(1024, callback=Check())
        assert len(model.ep_info_buffer) > 0 and {"r", "l"} <= set(model.ep_info_buffer[0])  # after learn too
    assert Check.ends > 0 and Check.missing == 0


def test_a_hyperparameter_written_as_an_attribute_counts_and_is_checked():
    model = lucidrl.PPO("CartPole-v1", **SMALL_PPO)
    assert "fast backend" in model.backend_lines[0]
    model.ent_coef, model.learning_rate, model.target_kl, model.backend = 0.5, "lin_0.001", 0.01, "reference"
    assert model.config.ent_coef == 0.5 and model.ent_coef == 0.5
    model.learn(32)
    assert model.backend_lines[0] == "ppo: reference (lucidrl.algos.ppo.ppo_update), as asked"  # chosen again
    twin = lucidrl.PPO(
        "CartPole-v1", **SMALL_PPO, ent_coef=0.5, learning_rate="lin_0.001", target_kl=0.01, backend="reference"
    )
    twin.learn(32)
    assert all(torch.equal(a, b) for a, b in zip(model.agent.parameters(), twin.agent.parameters()))
    with pytest.raises(ConfigError, match="gamma must lie in"):
        model.gamma = 2.0
    with pytest.raises(ConfigError, match="built with n_envs=2; build a new model"):
        model.n_envs = 4
    with pytest.raises(ConfigError, match=r"model.set_random_seed\(3\)"):
        model.seed = 3
    model.config.net_arch = [32]  # through config: refused when learn starts
    with pytest.raises(ConfigError, match="net_arch changed after the model was built"):
        model.learn(32)


def test_a_value_written_into_model_config_is_checked_before_learn_and_save(tmp_path):
    """model.config.X = v (not through the model's attribute, which checks at once): an unknown name is refused at
    the write; a value the constructor would refuse stops learn and save, and nothing is written, so no checkpoint
    exists that load would refuse; a valid value (a schedule as text too) trains and saves."""
    model = lucidrl.PPO("CartPole-v1", **SMALL_PPO)
    with pytest.raises(ConfigError, match="no hyperparameter 'gama'.*Did you mean 'gamma'"):
        model.config.gama = 0.5
    model.config.gamma = 5
    steps = model.num_timesteps
    with pytest.raises(ConfigError, match=r"gamma must lie in \(0, 1\], got 5 \(learn;"):
        model.learn(32)
    assert model.num_timesteps == steps
    with pytest.raises(ConfigError, match="gamma must lie in.*save: nothing was written"):
        model.save(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    model.config.gamma, model.config.learning_rate = 0.9, "lin_0.001"
    model.learn(32)
    assert model.config.learning_rate(0.5) == pytest.approx(0.0005)  # the text became the schedule
    assert lucidrl.load(model.save(tmp_path / "good")).config.gamma == 0.9


def test_logger_record_takes_one_number_of_any_kind_and_says_what_it_left_out(tmp_path, capsys):
    class Record(BaseCallback):
        def _on_step(self) -> bool:
            self.logger.record("custom/tensor", torch.tensor(1.5))
            self.logger.record("custom/array", np.array(2.5))
            self.logger.record("custom/text", "hello")  # TensorBoard's text (tests/contracts/test_log_media.py)
            self.logger.record("custom/dict", {"a": 1})
            return True

    model = lucidrl.PPO("CartPole-v1", **{**SMALL_PPO, "verbose": 1}, run_dir=tmp_path)
    model.learn(32, callback=Record())
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"custom/tensor", "custom/array"} <= set(header) and not {"custom/text", "custom/dict"} & set(header)
    out = capsys.readouterr().out
    assert out.count("'custom/dict', ...): a dict is left out") == 1 and "'custom/text'" not in out


def test_progress_bar_shows_at_verbose_zero(capsys):
    lucidrl.PPO("CartPole-v1", **SMALL_PPO).learn(32, progress_bar=True)
    assert "32/32" in capsys.readouterr().out


def test_a_net_arch_dict_with_one_key_is_no_hidden_layer_for_the_other_as_in_sb3():
    with pytest.raises(ConfigError, match=r"gives the actor \[\] and the critic \[16\]"):
        lucidrl.PPO("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=dict(vf=[16])), verbose=0)


def test_dqn_saves_and_loads_its_replay_buffer_alone(tmp_path):
    model = lucidrl.DQN("CartPole-v1", verbose=0, learning_starts=50, preset=False, seed=0)
    with pytest.raises(ConfigError, match="no.*replay memory.*yet|none yet"):
        model.save_replay_buffer(tmp_path / "rb")
    model.learn(200)
    path = model.save_replay_buffer(tmp_path / "rb")
    assert path.name == "rb.safetensors" and len(model.replay_buffer) == 200
    other = lucidrl.DQN("CartPole-v1", verbose=0, learning_starts=50, preset=False, seed=0)
    other.load_replay_buffer(tmp_path / "rb")
    assert torch.equal(other.replay_buffer.obs[:200], model.replay.obs[:200])
    other.learn(64, reset_num_timesteps=False)
    assert len(other.replay_buffer) == 264
    with pytest.raises(AttributeError, match="PPO has no replay memory"):
        lucidrl.PPO("CartPole-v1", **SMALL_PPO).save_replay_buffer(tmp_path / "x")


def test_evaluate_policy_calls_back_with_sb3s_locals_per_copy():
    class Success(gym.Wrapper):
        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            return obs, reward, terminated, truncated, {**info, "is_success": terminated}

    model = lucidrl.PPO("CartPole-v1", **SMALL_PPO)
    seen = []

    def callback(locals_, globals_):
        if locals_["done"]:
            seen.append((locals_["i"], bool(locals_["info"].get("is_success"))))

    for same_step in (True, False):
        mode = gym.vector.AutoresetMode.SAME_STEP if same_step else gym.vector.AutoresetMode.NEXT_STEP
        venv = gym.vector.SyncVectorEnv([lambda: Success(gym.make("CartPole-v1"))] * 3, autoreset_mode=mode)
        seen.clear()
        lucidrl.evaluate_policy(model, venv, n_eval_episodes=4, callback=callback)
        assert len(seen) >= 4 and {i for i, _ in seen} == {0, 1, 2} and all(ok for _, ok in seen)


def test_set_logger_takes_sb3s_configured_logger(tmp_path):
    """SB3's ``configure(folder, ["csv"])`` then ``model.set_logger(it)``: SB3's own logger writes a row per update
    (lucidrl's metrics, and what a callback recorded through ``self.logger``) to its progress.csv."""
    pytest.importorskip("stable_baselines3")
    import csv

    from stable_baselines3.common.logger import configure

    from lucidrl import PPO
    from lucidrl.callbacks import BaseCallback

    class Note(BaseCallback):
        def _on_rollout_end(self) -> None:
            self.logger.record("custom/seen", 7)

        def _on_step(self) -> bool:
            return True

    model = PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=64, batch_size=64, n_epochs=1, seed=0, verbose=0)
    theirs = configure(str(tmp_path / "sb3log"), ["csv"])
    model.set_logger(theirs)
    assert model.logger is theirs
    model.learn(512, callback=Note())
    rows = list(csv.DictReader((tmp_path / "sb3log" / "progress.csv").open()))
    assert len(rows) == 4 and [int(r["time/total_timesteps"]) for r in rows] == [128, 256, 384, 512]
    assert all(r["custom/seen"] == "7" for r in rows) and rows[-1]["loss/value"] and rows[-1]["rollout/episode_return"]
    with pytest.raises(ConfigError, match="set_logger needs a logger with record"):
        model.set_logger("logs/")


def test_hyperparameters_given_by_position_follow_sb3s_order():
    """PPO("MlpPolicy", env, 3e-4, 2048, 64) means what it means in SB3: learning_rate, n_steps, batch_size. The
    order lucidrl reads is SB3's (sb3-contrib's for TRPO) own, read from their signatures here."""
    import inspect

    from lucidrl import A2C, DQN, PPO, TRPO
    from lucidrl.sb3_api import SB3_POSITIONAL

    sb3 = pytest.importorskip("stable_baselines3")
    contrib = pytest.importorskip("sb3_contrib")
    for algo, cls in (("ppo", sb3.PPO), ("a2c", sb3.A2C), ("dqn", sb3.DQN), ("trpo", contrib.TRPO)):
        theirs = list(inspect.signature(cls.__init__).parameters)[3:]  # after self, policy, env
        assert theirs[: theirs.index("tensorboard_log")] == list(SB3_POSITIONAL[algo]), algo

    ppo = PPO("MlpPolicy", "CartPole-v1", 1e-3, 256, 64, 3, verbose=0)
    assert (ppo.config.learning_rate, ppo.config.n_steps, ppo.config.batch_size, ppo.config.n_epochs) == (
        1e-3,
        256,
        64,
        3,
    )
    dqn = DQN("MlpPolicy", "CartPole-v1", 5e-4, 5_000, 100, verbose=0)
    assert (dqn.config.learning_rate, dqn.config.buffer_size, dqn.config.learning_starts) == (5e-4, 5_000, 100)
    a2c = A2C("MlpPolicy", "CartPole-v1", 7e-4, 5, 0.98, verbose=0)
    assert (a2c.config.n_steps, a2c.config.gamma) == (5, 0.98)
    assert TRPO("MlpPolicy", "CartPole-v1", 1e-3, 512, verbose=0).config.n_steps == 512
    with pytest.raises(ConfigError, match="given both by position and by name"):
        PPO("MlpPolicy", "CartPole-v1", 1e-3, learning_rate=3e-4, verbose=0)
    with pytest.raises(ConfigError, match=r"PPO\(env, \.\.\.\) takes its hyperparameters by name"):
        PPO("CartPole-v1", None, 1e-3, verbose=0)
    with pytest.raises(ConfigError, match="use_sde"):  # an SB3-only setting, named as when given by name
        PPO("MlpPolicy", "CartPole-v1", *[3e-4, 2048, 64, 10, 0.99, 0.95, 0.2, None, True, 0.0, 0.5, 0.5, True])
    with pytest.raises(ConfigError, match="give tensorboard_log, policy_kwargs, verbose, seed and device by name"):
        PPO("MlpPolicy", "CartPole-v1", *range(19))


@pytest.mark.parametrize("algo", ["PPO", "A2C", "TRPO", "DQN"])
def test_a_learning_rate_schedule_gets_the_progress_sb3_gives_it(algo):
    """Each update uses the rate at the progress SB3 passes at that point: on-policy after the rollout
    (1 - 1/n for the first of n, 0 for the last), DQN before each round of gradient steps."""
    sb3 = pytest.importorskip("stable_baselines3")
    contrib = pytest.importorskip("sb3_contrib")
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    kwargs = {
        "PPO": {"n_steps": 16, "batch_size": 32, "n_epochs": 1},
        "A2C": {"n_steps": 16},
        "TRPO": {"n_steps": 16, "batch_size": 32},
        "DQN": {"learning_starts": 40, "train_freq": 8, "buffer_size": 1000, "batch_size": 8},
    }[algo]
    total = 160
    seen, recording = [], [False]

    def schedule(progress):
        if recording[0]:
            seen.append(progress)
        return 1e-3 * progress

    theirs_cls = getattr(contrib if algo == "TRPO" else sb3, algo)
    theirs = theirs_cls(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        learning_rate=schedule,
        seed=0,
        device="cpu",
        **kwargs,
    )
    theirs.set_logger(configure(None, []))
    recording[0] = True
    theirs.learn(total)
    expected = [1e-3 * p for p in sorted(set(seen), reverse=True)]  # (SB3 asks twice an update: log and set)

    ours = getattr(lucidrl, algo)("CartPole-v1", n_envs=2, seed=0, learning_rate=schedule, preset=False, **kwargs)
    rates = []
    ours.learn(total, callback=lambda model, metrics: rates.append(metrics.get("train/learning_rate")) or True)
    rates = [r for r in rates if r is not None]  # (DQN: rounds before learning_starts take no step)
    assert len(rates) == len(expected) >= 3
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-12)
    if algo != "DQN":
        assert rates[-1] == 0.0  # the last update of a schedule to zero runs at zero, as in SB3


def test_sb3s_function_callback_with_locals_and_globals_runs_at_every_step_as_in_sb3():
    """SB3's callback(locals_, globals_): called at each env step with SB3's local names, stopping training when it
    returns a false value; it stops SB3 and lucidrl at the same step."""
    sb3 = pytest.importorskip("stable_baselines3")
    seen = []

    def callback(locals_, globals_):
        seen.append(sorted(k for k in ("self", "infos", "dones", "new_obs") if k in locals_))
        return locals_["self"].num_timesteps < 96

    ours = lucidrl.PPO("CartPole-v1", seed=0, verbose=0, preset=False, n_steps=64, batch_size=64)
    ours.learn(1000, callback=callback)
    theirs = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu")
    theirs.learn(1000, callback=callback)
    assert ours.num_timesteps == theirs.num_timesteps == 96
    assert seen[0] == ["dones", "infos", "new_obs", "self"] and len(seen) == 2 * 96


def test_learn_takes_a_whole_number_written_as_a_float_as_sb3_does():
    model = lucidrl.PPO("CartPole-v1", **SMALL_PPO)
    model.learn(1e2)  # SB3's examples write budgets as 1e5
    assert model.num_timesteps >= 100
    for bad in (1.5, float("nan"), -1e3, "100"):
        with pytest.raises(ConfigError, match="total_timesteps must be a positive whole number"):
            model.learn(bad)


def test_evaluating_on_an_env_of_another_kind_is_refused_before_the_first_step():
    """The spaces are checked before any step: a CartPole model on Acrobot (predict would fail on the first
    observation), a 4x4 FrozenLake model on the 8x8 map (it would play on until an unseen state)."""
    from lucidrl.evaluation import evaluate_policy

    cartpole = lucidrl.PPO("CartPole-v1", **SMALL_PPO)
    frozen = lucidrl.QLearning("FrozenLake-v1", verbose=0, seed=0)
    for model, env in ((cartpole, "Acrobot-v1"), (frozen, "FrozenLake8x8-v1")):
        with pytest.raises(EnvError, match=r"evaluate: the env's spaces .* differ from the model's .*trained on"):
            lucidrl.evaluate(model, env, n_episodes=1)
    with pytest.raises(EnvError, match="evaluate_policy: the env's spaces"):
        evaluate_policy(cartpole, gym.make_vec("Acrobot-v1", num_envs=2), n_eval_episodes=1)
    with pytest.raises(EnvError, match=r"plays one env.*evaluate_policy\(model, vec_env"):
        lucidrl.evaluate(cartpole, gym.make_vec("CartPole-v1", num_envs=2))
    assert lucidrl.evaluate(frozen, "FrozenLake-v1", n_episodes=1)[0] in (0.0, 1.0)  # its own kind still plays


def test_a_vector_env_of_another_size_than_the_presets_trains_saves_and_loads(tmp_path):
    """The CartPole preset's 8 envs x 32 steps in minibatches of 256, given SB3's make_vec_env of 4: the VectorEnv's
    count wins and the batch follows the rollout (128), so learn's config check and a later load accept it."""
    model = lucidrl.PPO("MlpPolicy", lucidrl.make_vec_env("CartPole-v1", n_envs=4), verbose=0, seed=0)
    assert (model.config.n_envs, model.config.batch_size) == (4, 128)
    model.learn(256)
    loaded = lucidrl.load(model.save(tmp_path / "m"), env=lucidrl.make_vec_env("CartPole-v1", n_envs=2))
    assert (loaded.config.n_envs, loaded.config.batch_size) == (2, 64)
    loaded.learn(128)


def test_a_budget_smaller_than_one_rollout_is_said_to_train_the_whole_rollout(capsys):
    model = lucidrl.PPO("CartPole-v1", n_envs=2, n_steps=64, batch_size=64, verbose=1, seed=0, preset=False)
    model.learn(100)
    assert model.num_timesteps == 128
    assert "one rollout is n_steps * n_envs = 128 steps, more than the 100 asked for" in capsys.readouterr().out
