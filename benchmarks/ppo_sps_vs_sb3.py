"""Training throughput of lucidrl's PPO against Stable-Baselines3's PPO, same hyperparameters, same env.

The configuration is lucidrl's preset for ``--env`` (``lucidrl/presets/ppo_zoo.yaml`` or ``ppo.yaml``), translated
to SB3's arguments: the same n_envs, n_steps, batch_size, n_epochs, learning rate, γ, λ, clip
range, coefficients and gradient clipping; ``policy_kwargs`` with the same hidden sizes for the
actor and the critic (separate networks), activation, ``log_std_init`` and ``ortho_init``; and
SB3's ``VecNormalize`` (with the algorithm's γ, as rl-baselines3-zoo sets it) where the preset
normalises observations or rewards. Both libraries use ``DummyVecEnv``-style same-process envs.

Per run it records ``steps_per_s`` = env steps / wall time of ``learn()`` (env steps and
gradient steps are the same in both: SB3 and lucidrl both take n_epochs * n_steps * n_envs /
batch_size gradient steps per rollout) and, for reference, the deterministic 10-episode
return after training (raw rewards). Runs alternate libraries, each in a fresh process, one
torch thread. Results append to ``benchmarks/results/ppo_sps_<env>.jsonl``.

    python benchmarks/ppo_sps_vs_sb3.py --env HalfCheetah-v5 --timesteps 100000 --seeds 0 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import code_version, machine, run_worker  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"


def lucidrl_config(env_id: str):
    import lucidrl

    model = lucidrl.PPO(env_id, seed=0, verbose=0)
    if model.preset_name is None:
        raise SystemExit(f"no lucidrl PPO preset for {env_id}")
    return model.config


def sb3_model(env_id: str, seed: int):
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    c = lucidrl_config(env_id)
    for name in ("learning_rate", "clip_range"):
        if callable(getattr(c, name)):
            raise SystemExit(f"{name} is a schedule in the preset; this script compares constant values only")
    env = make_vec_env(env_id, n_envs=c.n_envs, seed=seed)
    if c.normalize_obs or c.normalize_reward:
        env = VecNormalize(
            env,
            norm_obs=c.normalize_obs,
            norm_reward=c.normalize_reward,
            clip_obs=c.clip_obs,
            clip_reward=c.clip_reward,
            gamma=c.gamma,
        )
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU}[c.activation]
    policy_kwargs = dict(
        net_arch=dict(pi=list(c.net_arch), vf=list(c.net_arch)),
        activation_fn=act,
        ortho_init=c.ortho_init,
        log_std_init=c.log_std_init,
    )
    return PPO(
        "MlpPolicy",
        env,
        n_steps=c.n_steps,
        batch_size=c.batch_size,
        n_epochs=c.n_epochs,
        learning_rate=c.learning_rate,
        gamma=c.gamma,
        gae_lambda=c.gae_lambda,
        clip_range=c.clip_range,
        ent_coef=c.ent_coef,
        vf_coef=c.vf_coef,
        max_grad_norm=c.max_grad_norm,
        normalize_advantage=c.normalize_advantage,
        policy_kwargs=policy_kwargs,
        seed=seed,
        verbose=0,
    )


def worker(lib: str, env_id: str, seed: int, timesteps: int) -> None:
    import torch

    torch.set_num_threads(1)
    if lib == "lucidrl":
        import lucidrl

        model = lucidrl.PPO(env_id, seed=seed, verbose=0)
        t0 = time.perf_counter()
        model.learn(timesteps)
        train_s = time.perf_counter() - t0
        mean, std = lucidrl.evaluate(model, n_episodes=10, deterministic=True, seed=0)
        n = model.num_timesteps
    else:
        import gymnasium as gym
        import numpy as np

        model = sb3_model(env_id, seed)
        t0 = time.perf_counter()
        model.learn(timesteps)
        train_s = time.perf_counter() - t0
        venv = model.get_env()
        if hasattr(venv, "training"):
            venv.training = False
        env, returns = gym.make(env_id), []
        for i in range(10):  # raw returns, observations normalised with the frozen statistics
            obs, _ = env.reset(seed=i)
            done, total = False, 0.0
            while not done:
                o = venv.normalize_obs(obs[None]) if hasattr(venv, "normalize_obs") else obs[None]
                action, _ = model.predict(o, deterministic=True)
                obs, r, term, trunc, _ = env.step(action[0])
                total += float(r)
                done = term or trunc
            returns.append(total)
        mean, std, n = float(np.mean(returns)), float(np.std(returns)), int(model.num_timesteps)
    print(
        json.dumps(
            {
                "library": lib,
                "env": env_id,
                "seed": seed,
                "timesteps": timesteps,
                "num_timesteps": n,
                "train_s": round(train_s, 3),
                "steps_per_s": round(n / train_s, 1),
                "eval_mean": mean,
                "eval_std": std,
                "torch_threads": 1,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--timesteps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument(
        "--results", type=Path, default=None, help="JSONL file (default benchmarks/results/ppo_sps_ENV.jsonl)"
    )
    p.add_argument("--worker", nargs=2, metavar=("LIB", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], args.env, int(args.worker[1]), args.timesteps)
        return
    path = args.results or RESULTS_DIR / f"ppo_sps_{args.env}.jsonl"
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results = []
    for seed in args.seeds:
        for lib in ("lucidrl", "sb3"):
            cmd = [
                sys.executable,
                __file__,
                "--env",
                args.env,
                "--timesteps",
                str(args.timesteps),
                "--worker",
                lib,
                str(seed),
            ]
            result, why = run_worker(cmd)
            if result is None:
                raise SystemExit(f"{lib} seed {seed} failed:\n{why}")
            r = {**result, "time": stamp, "machine": machine(), "code": code_version()}
            results.append(r)
            with path.open("a") as f:
                f.write(json.dumps(r) + "\n")
            print(
                f"  {lib} seed {seed}: {r['steps_per_s']:.0f} steps/s ({r['train_s']:.1f} s), "
                f"eval {r['eval_mean']:.1f}",
                flush=True,
            )
    med = {
        lib: statistics.median(r["steps_per_s"] for r in results if r["library"] == lib) for lib in ("lucidrl", "sb3")
    }
    print(
        f"\nPPO {args.env}, {args.timesteps} steps per run: median steps/s lucidrl {med['lucidrl']:.0f}, "
        f"SB3 {med['sb3']:.0f}; ratio lucidrl/SB3 = {med['lucidrl'] / med['sb3']:.2f} (> 1: lucidrl is faster)"
    )


if __name__ == "__main__":
    main()
