"""Rollout workers (``rollout_workers=K``): the rollouts K Ray actors collect equal the local collector's,
transition for transition, and so do the weights after updates; bad settings and dead workers give clear errors."""

import dataclasses
import os
import subprocess
import sys
import time

import gymnasium as gym
import pytest
import torch

from lucidrl import A2C, PPO
from lucidrl.errors import ConfigError, EnvError, TrainingError
from lucidrl.rollout import Rollout

pytestmark = pytest.mark.usefixtures("ray_local")


def run(algo, env, k, updates, **kw):
    """Train for ``updates`` updates; returns the model (its workers stopped) and every rollout it collected."""
    model = algo(env, preset=False, verbose=0, seed=3, vectorization="sync", rollout_workers=k, **kw)
    collector, rollouts = model._rollout_collector(), []
    collect = collector.collect
    collector.collect = lambda agent, n: rollouts.append(collect(agent, n)) or rollouts[-1]
    try:
        model.learn(updates * model.config.n_steps * model.config.n_envs)
    finally:
        if k:
            collector.close()
    return model, rollouts


def assert_same(local, remote):
    (m0, r0), (m1, r1) = local, remote
    assert len(r0) == len(r1)
    for a, b in zip(r0, r1):
        for f in dataclasses.fields(Rollout):
            x, y = getattr(a, f.name), getattr(b, f.name)
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, f.name
    for (name, x), y in zip(m0.agent.state_dict().items(), m1.agent.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize(
    "env, n_steps, episodes_end", [("CartPole-v1", 32, "terminated"), ("Pendulum-v1", 128, "truncated")]
)
def test_ppo_with_two_workers_equals_local(env, n_steps, episodes_end):
    kw = dict(n_envs=4, n_steps=n_steps, batch_size=64, n_epochs=2)
    local, remote = run(PPO, env, 0, 2, **kw), run(PPO, env, 2, 2, **kw)
    assert_same(local, remote)
    ends = torch.stack([getattr(r, episodes_end) for r in local[1]])
    assert ends.any()  # the episode ends (and Pendulum's bootstrap from final observations) were exercised
    assert remote[0].num_timesteps == 2 * n_steps * 4


def test_a2c_uneven_split_with_reward_scaling_equals_local():
    kw = dict(n_envs=3, n_steps=16, normalize_reward=True)  # workers step 2 and 1 envs; rewards scaled in the driver
    assert_same(run(A2C, "CartPole-v1", 0, 3, **kw), run(A2C, "CartPole-v1", 2, 3, **kw))


def test_normalize_obs_with_workers_trains_and_keeps_every_observation_in_the_statistics():
    model, rollouts = run(PPO, "CartPole-v1", 2, 2, n_envs=4, n_steps=32, batch_size=64, n_epochs=1, normalize_obs=True)
    # the driver's statistics took in every raw observation: the 4 first ones and 4 per step
    assert model.obs_normalizer.rms.count.item() == pytest.approx(1e-4 + 4 * (1 + 2 * 32))
    obs = rollouts[-1].obs
    assert obs.abs().max() <= 10.0 and obs.mean(dim=(0, 1)).abs().max() < 1.0  # normalised, not raw
    assert all(torch.isfinite(p).all() for p in model.agent.parameters())


def test_rollout_workers_is_checked():
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="rollout_workers"):
            PPO("CartPole-v1", rollout_workers=bad, verbose=0)
    with pytest.raises(ConfigError, match="more than n_envs=2"):
        PPO("CartPole-v1", n_envs=2, rollout_workers=3, verbose=0)
    with pytest.raises(EnvError, match="env instance"):
        PPO(
            gym.make("CartPole-v1"), preset=False, n_envs=1, n_steps=8, batch_size=8, rollout_workers=1, verbose=0
        ).learn(8)
    with pytest.raises(ConfigError, match="native"):
        PPO(
            "CartPole-v1",
            preset=False,
            n_envs=4,
            n_steps=8,
            batch_size=32,
            rollout_workers=2,
            vectorization="native",
            verbose=0,
        ).learn(32)


def test_an_error_in_a_workers_env_reaches_the_driver_as_lucidrls():
    def broken():  # pickled by value into the worker; its observations are NaN
        env = gym.make("CartPole-v1")
        return gym.wrappers.TransformObservation(env, lambda o: o * float("nan"), env.observation_space)

    model = PPO(
        broken, preset=False, n_envs=2, n_steps=8, batch_size=16, rollout_workers=2, verbose=0, vectorization="sync"
    )
    with pytest.raises(EnvError, match="in a rollout worker.*non-finite observation"):
        model.learn(16)


def test_missing_ray_names_the_extra(monkeypatch):
    model = PPO("CartPole-v1", preset=False, n_envs=2, n_steps=8, batch_size=16, rollout_workers=2, verbose=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    with pytest.raises(ConfigError, match=r"pip install 'lucidrl\[ray\]'"):
        model.learn(16)


def test_dead_worker_is_replaced_then_the_run_stops_with_a_clear_error(ray_local):
    model = PPO(
        "CartPole-v1",
        preset=False,
        verbose=0,
        seed=0,
        n_envs=2,
        n_steps=16,
        batch_size=32,
        n_epochs=1,
        rollout_workers=2,
    )
    collector = model._rollout_collector()
    collector.max_restarts = 1
    kills = []

    def kill(m, metrics):  # between rollouts, as a lost node would
        ray_local.kill(collector.workers[0])
        kills.append(m.num_timesteps)

    try:
        model.learn(32 * 2, callback=kill)  # the second rollout finds worker 0 dead: replaced, the run finishes
        assert collector.restarts == 1 and model.num_timesteps == 64 and len(collector.workers) == 2
        with pytest.raises(TrainingError, match="rollout worker 0 died"):  # the second death: no replacement left
            model.learn(32 * 2, callback=kill, reset_num_timesteps=False)
    finally:
        collector.close()


def test_cli_trains_with_workers_and_resumes_without(tmp_path, capsys, ray_local):
    ray = ray_local
    from lucidrl.cli import main

    run = tmp_path / "run"
    common = ["--timesteps", "64", "--run-dir", str(run), "--eval-episodes", "0", "--no-progress", "--verbose", "0"]
    assert (
        main(
            [
                "train",
                "ppo",
                "--env",
                "CartPole-v1",
                "--preset",
                "none",
                "--n-envs",
                "2",
                "--n-steps",
                "16",
                "--batch-size",
                "32",
                "--n-epochs",
                "1",
                "--rollout-workers",
                "2",
                *common,
            ]
        )
        == 0
    )
    assert '"rollout_workers": 2' in (run / "model" / "config.json").read_text()
    # how the rollouts are collected may change on resume, as device and backend may
    assert main(["train", "ppo", "--resume", str(run), "--rollout-workers", "0", *common]) == 0
    assert "resuming ppo" in capsys.readouterr().out
    for _ in range(50):  # the workers ended with the model: their CPUs are free again
        if ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"rollout workers outlived their model: {ray.available_resources()}")


def test_workers_build_an_env_id_the_script_registered_and_raise_its_build_errors_as_lucidrls():
    """An id registered by the user's script (unknown to the workers' processes) trains as locally; an env that
    cannot be built in a worker is the lucidrl error it raised, not Ray's ActorDiedError with a traceback."""
    from gymnasium.envs.classic_control import CartPoleEnv

    gym.register("ScaleTestCart-v0", entry_point=lambda **kw: CartPoleEnv(**kw), max_episode_steps=50)
    try:
        kw = dict(n_envs=2, n_steps=16, batch_size=32, n_epochs=1)
        assert_same(run(PPO, "ScaleTestCart-v0", 0, 1, **kw), run(PPO, "ScaleTestCart-v0", 2, 1, **kw))
    finally:
        del gym.registry["ScaleTestCart-v0"]

    driver = os.getpid()

    def here_only():  # pickled by value into the workers, where it refuses to build
        if os.getpid() != driver:
            raise EnvError("the simulator's licence is on the driver's machine only")
        return gym.make("CartPole-v1")

    model = PPO(here_only, preset=False, n_envs=2, n_steps=8, batch_size=16, rollout_workers=2, verbose=0)
    with pytest.raises(EnvError, match=r"^\(in a rollout worker\) the simulator's licence is on the driver's"):
        model.learn(16)


def test_a_ray_started_for_workers_ends_with_its_last_user_not_its_first():
    """In a fresh interpreter (Ray not initialised): two models' workers share the Ray instance the first one
    started; dropping that model leaves the second one's workers running (they used to die with Ray), and
    dropping both shuts Ray down."""
    script = """
import gc, ray, lucidrl
kw = dict(preset=False, n_envs=1, n_steps=16, batch_size=16, n_epochs=1, verbose=0, rollout_workers=1)
a, b = lucidrl.PPO("CartPole-v1", **kw), lucidrl.PPO("CartPole-v1", **kw)
a.learn(16)
b.learn(16)
del a
gc.collect()
b.learn(16, reset_num_timesteps=False)
print("B:", b.num_timesteps, "RAY UP:", ray.is_initialized())
del b
gc.collect()
print("BOTH GONE, RAY UP:", ray.is_initialized())
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert "B: 32 RAY UP: True" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "BOTH GONE, RAY UP: False" in proc.stdout


def test_workers_that_find_no_free_cpu_on_lucidrls_local_ray_are_refused_at_once():
    """In a fresh interpreter: a model's workers hold all the local Ray's CPUs; a second model's workers, which
    waited 120 s for CPUs no node can bring, are a ConfigError within seconds; once the first model is deleted
    they start."""
    script = """
import gc, os, time, lucidrl
n = os.cpu_count()  # the local Ray's CPUs: one model's workers take them all
kw = dict(preset=False, n_envs=n, n_steps=8, batch_size=8 * n, n_epochs=1, verbose=0, rollout_workers=n)
a, b = lucidrl.PPO("CartPole-v1", **kw), lucidrl.PPO("CartPole-v1", **kw)
a.learn(16)
t0 = time.monotonic()
try:
    b.learn(16)
except lucidrl.ConfigError as e:
    print("REFUSED in", round(time.monotonic() - t0), "s:", e)
del a
gc.collect()
b.learn(16)
print("B:", b.num_timesteps == 8 * n)
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    out = proc.stdout
    assert "REFUSED in" in out and "other models' workers hold the rest" in out, out[-2000:] + proc.stderr[-2000:]
    assert int(out.split("REFUSED in")[1].split("s:")[0]) <= 20 and "B: True" in out
