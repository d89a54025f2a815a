"""Env wrappers the experiments train on, named as ``"env_wrappers:function"`` for the worker processes."""

from __future__ import annotations

import gymnasium as gym


class TruncationAsTermination(gym.Wrapper):
    """Reports a time-limit cut as a terminal state: the bug this wrapper reproduces on purpose.

    It is what code written for the old Gym API did with its single ``done`` flag: a time limit and
    a real ending looked the same, so the value after a timeout was taken to be 0.
    """

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or truncated, False, info


def truncation_as_termination(env: gym.Env) -> gym.Env:
    return TruncationAsTermination(env)


def time_aware_truncation_as_termination(env: gym.Env) -> gym.Env:
    """The time limit made part of the task: the observation gains t / T (Pardo et al. 2018, §3), and the
    cut at T is then a true terminal state of this longer state."""
    return TruncationAsTermination(gym.wrappers.TimeAwareObservation(env, normalize_time=True))


def time_limit_100(env: gym.Env) -> gym.Env:
    """A shorter time limit: the episode is cut (``truncated=True``) after 100 steps instead of the env's own."""
    return gym.wrappers.TimeLimit(env, max_episode_steps=100)
