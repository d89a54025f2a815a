"""``evaluate_policy``: Stable-Baselines3's function, with its signature and returns, for lucidrl models.

``lucidrl.evaluate(model, env, n_episodes)`` is lucidrl's own (seeded, one env); this one takes what SB3's
takes: an env id, a ``gymnasium.Env`` or a ``gymnasium.vector.VectorEnv`` (lucidrl's stand-in for SB3's
VecEnv), and returns ``(mean, std)`` or, with ``return_episode_rewards=True``, the lists of episode
returns and lengths. Over a vector env the episodes are spread over the copies as SB3 does (copy i plays
``(n_eval_episodes + i) // n_envs`` of them), so short episodes are not favoured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from lucidrl.envs import make_env
from lucidrl.envs.structured import same_layout
from lucidrl.errors import ConfigError, EnvError


def check_env_fits(model: Any, observation_space: gym.Space, action_space: gym.Space, where: str) -> None:
    """Refuse, before the first step, an env whose spaces are not the model's: the model was trained on another
    kind of env, and ``predict`` would fail on its first observation, or, where the shapes happen to agree, play
    a game it never learned and report a number."""
    if not hasattr(model, "structured_observation_space"):  # not a lucidrl model (SB3's): its predict speaks
        return
    model_obs = model.structured_observation_space or model.observation_space
    model_act = model.action_space
    if same_layout(observation_space, model_obs) and action_space == model_act:
        return
    env_id = getattr(model, "env_id", None)
    trained = f", trained on {str(env_id)!r}" if env_id else ""
    raise EnvError(
        f"{where}: the env's spaces ({observation_space}, {action_space}) differ from the model's ({model_obs}, "
        f"{model_act}{trained}); evaluate the model on an env of the kind it was trained on"
    )


def evaluate_policy(
    model: Any,
    env: Any,
    n_eval_episodes: int = 10,
    deterministic: bool = True,
    render: bool = False,
    callback: Callable[[dict, dict], None] | None = None,
    reward_threshold: float | None = None,
    return_episode_rewards: bool = False,
    warn: bool = True,
):
    """Play ``n_eval_episodes`` episodes with ``model.predict``; ``(mean_reward, std_reward)``, or
    ``(episode_rewards, episode_lengths)`` with ``return_episode_rewards``. ``callback(locals, globals)`` is
    called after each step, once per env copy, with SB3's names in ``locals``: ``i`` (the copy), ``done``,
    ``info``, ``reward``, ``episode_rewards``, ``episode_lengths``; ``reward_threshold``: an AssertionError, as
    SB3's, when the mean is not above it.
    ``warn`` is accepted (lucidrl counts the raw rewards itself, no Monitor wrapper needed)."""
    if isinstance(n_eval_episodes, bool) or not isinstance(n_eval_episodes, (int, np.integer)) or n_eval_episodes < 1:
        raise ConfigError(f"n_eval_episodes must be an integer >= 1, got {n_eval_episodes!r}")
    if isinstance(env, gym.vector.VectorEnv):
        space = getattr(env, "structured_space", None) or env.single_observation_space  # (lucidrl's: Dict as given)
        check_env_fits(model, space, env.single_action_space, "evaluate_policy")
        rewards, lengths = _vector_episodes(model, env, int(n_eval_episodes), deterministic, render, callback)
    else:
        if env is None:
            raise EnvError("evaluate_policy needs an env: an env id, a gymnasium.Env or a gymnasium.vector.VectorEnv")
        e = make_env(env)
        try:
            check_env_fits(model, e.observation_space, e.action_space, "evaluate_policy")
            rewards, lengths = single_env_episodes(model, e, int(n_eval_episodes), deterministic, render, callback)
        finally:
            if not isinstance(env, gym.Env):
                e.close()
    mean, std = float(np.mean(rewards)), float(np.std(rewards))
    if reward_threshold is not None:
        assert mean > reward_threshold, f"Mean reward below threshold: {mean:.2f} < {reward_threshold:.2f}"
    return (rewards, lengths) if return_episode_rewards else (mean, std)


def single_env_episodes(
    model, env: gym.Env, n: int, deterministic: bool, render: bool = False, callback=None, seed: int | None = None
) -> tuple[list[float], list[int]]:
    """``n`` full episodes of ``model.predict`` on one env: their returns and lengths. ``seed``: episode i is
    reset with ``seed + i`` (``lucidrl.evaluate``'s repeatable evaluations); None: the env's own stream (SB3's).
    An episode is a whole game where lost lives end training episodes (``info["life_lost"]``), as in the vector
    envs' statistics (``lucidrl.envs.game_goes_on``)."""
    rewards: list[float] = []
    lengths: list[int] = []
    for i in range(n):
        obs, _ = env.reset(seed=None if seed is None else seed + i)
        total, length, done = 0.0, 0, False
        while not done:
            action, _ = model.predict(obs, deterministic=deterministic)
            obs, reward, terminated, truncated, info = env.step(action)
            total, length, done = total + float(reward), length + 1, bool(terminated or truncated)
            if callback is not None:  # SB3's names: i is the env copy (one here), episode_rewards the list so far
                callback({**locals(), "i": 0, "episode_rewards": rewards, "episode_lengths": lengths}, globals())
            if render:
                env.render()
            if done and info.get("life_lost"):  # a lost Atari life (lucidrl.envs.atari.EpisodicLife): the game goes on
                obs, _ = env.reset()
                done = False
        rewards.append(total)
        lengths.append(length)
    return rewards, lengths


def _vector_episodes(model, env: gym.vector.VectorEnv, n: int, deterministic: bool, render: bool, callback):
    """Copy i plays its share of the ``n`` episodes; the episode ends, in either autoreset mode, and the scores
    (an env's recorded raw score where it keeps one, as Atari's) are read by ``lucidrl.rollout.VectorStepper``, the
    one place that turns vector-env steps into transitions (DESIGN.md, "Episode ends")."""
    from lucidrl.rollout import VectorStepper

    n_envs = env.num_envs
    targets = np.array([(n + i) // n_envs for i in range(n_envs)])
    counts = np.zeros(n_envs, dtype=int)
    rewards: list[float] = []
    lengths: list[int] = []
    stepper = VectorStepper(env)  # resets the env
    step_info: list[dict] = [{}]  # the vector env's info of the last step, for the callback
    if callback is not None:
        stepper.on_step = lambda actions, tr, info: step_info.__setitem__(0, info)
    offsets = stepper.offsets  # the stepper works in 0-based Discrete indices, predict in the env's own values
    while (counts < targets).any():
        actions, _ = model.predict(offsets.obs_out(stepper.obs), deterministic=deterministic)
        tr = stepper.step(offsets.action_in(np.asarray(actions)))
        for i, ret, length in zip(tr.episode_rows, tr.episode_returns, tr.episode_lengths):
            if counts[i] < targets[i]:
                rewards.append(float(ret))
                lengths.append(int(length))
                counts[i] += 1
        if callback is not None:  # as SB3's: once per copy, with its done, info and reward
            dones = tr.terminated | tr.truncated
            for k in range(n_envs):
                info = copy_info(step_info[0], k, bool(dones[k]))
                env_locals = {
                    "i": k,
                    "done": bool(dones[k]),
                    "info": info,
                    "reward": float(tr.reward[k]),
                    "dones": dones,
                }
                callback({**locals(), **env_locals, "episode_rewards": rewards, "episode_lengths": lengths}, globals())
        if render:
            env.render()
    return rewards, lengths


def copy_info(info: dict, i: int, done: bool) -> dict:
    """Copy ``i``'s entries of a vector env's ``info`` (Gymnasium keeps each key's values in an array beside an
    ``_key`` mask); where its episode ended on a same-step-autoreset env, the ending step's (``final_info``)."""
    if done and isinstance(info.get("final_info"), dict):
        info = info["final_info"]
    out: dict = {}
    for key, values in info.items():
        mask = info.get(f"_{key}")
        if key.startswith("_") or mask is None or not bool(np.asarray(mask)[i]):
            continue
        out[key] = copy_info(values, i, False) if isinstance(values, dict) else values[i]
    return out
