"""Atari 2600 games (the Arcade Learning Environment, ``ale-py``) preprocessed as in the DQN paper.

``make_atari_env("ALE/Pong-v5")`` returns one Gymnasium env built only from Gymnasium's own
wrappers, in this order (Mnih et al. 2015, "Human-level control through deep reinforcement
learning", Nature 518, Methods: "Preprocessing" and "Training details"; Machado et al. 2018,
"Revisiting the Arcade Learning Environment", JAIR 61, for the evaluation protocol):

1. the ALE env made with ``frameskip=1``, so that the wrapper below is the only one that skips
   frames (a ``-v5`` id skips 4 frames itself by default; 4 x 4 would act every 16 frames);
2. ``AtariPreprocessing``: 1 to ``noop_max`` (30) no-op actions after each reset, so episodes
   start in different states; the agent acts every ``frame_skip`` (4) frames and the action is
   repeated in between; the observation is the pixel-wise max of the last two frames (some
   games draw sprites only on every other frame); grey, resized to 84x84, uint8;
   ``terminal_on_life_loss=False``: an episode is a whole game (``True`` is refused: Gymnasium's
   wrapper then restarts the whole game at each lost life, see ``make_atari_env``);
3. ``FrameStackObservation``: the last ``frame_stack`` (4) frames, shape (4, 84, 84): one frame
   holds no velocity, a stack does;
4. ``RecordEpisodeStatistics``: the *raw* game score and length of each finished episode in
   ``info["episode"]`` — lucidrl's collectors report this score (see
   ``lucidrl.envs.episode_scores``), not the sum of the clipped rewards below;
5. with ``clip_reward=True`` (training only): ``TransformReward(np.sign)``, rewards clipped to
   {-1, 0, +1} as in the paper, so that one learning rate suits games whose scores differ by
   orders of magnitude. Evaluation (``lucidrl.evaluate``, ``lucidrl eval``) builds the env with
   ``clip_reward=False`` and reports the game score.

The sticky actions of ``-v5`` ids (``repeat_action_probability=0.25``, Machado et al. 2018) are
kept; ``...NoFrameskip-v4`` ids have none, as in the DQN paper and rl-baselines3-zoo. Pass
``repeat_action_probability=`` to choose.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from lucidrl.errors import EnvError, MissingDependencyError

ATARI_EXTRA_FIX = "pip install 'lucidrl[atari]'"


def sign_reward(reward: SupportsFloat) -> float:
    """The DQN paper's reward clipping: +1 for a positive reward, -1 for a negative one, 0 for 0."""
    return float(np.sign(float(reward)))


def looks_like_atari_id(env_id: str) -> bool:
    """An id of ale-py's namespace ("ALE/Pong-v5") or of its classic names ("PongNoFrameskip-v4")."""
    name = env_id.split(":", 1)[-1]
    return name.startswith("ALE/") or name.endswith(
        ("NoFrameskip-v4", "NoFrameskip-v0", "Deterministic-v4", "Deterministic-v0")
    )


def register_atari_envs() -> None:
    """Register ale-py's envs with Gymnasium (Gymnasium >= 1.0 no longer does it on import), or raise
    MissingDependencyError naming the extra to install."""
    try:
        import ale_py
    except ImportError as e:
        raise MissingDependencyError(
            f"Atari envs need the ale-py package, which is not installed ({e}). Fix: {ATARI_EXTRA_FIX}"
        ) from None
    gym.register_envs(ale_py)


def is_atari_spec(spec: gym.envs.registration.EnvSpec) -> bool:
    """Whether a registered env is one of ale-py's Atari games."""
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    return str(entry).startswith("ale_py")


def make_atari_env(
    env_id: str,
    *,
    clip_reward: bool = True,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    terminal_on_life_loss: bool = False,
    **kwargs: Any,
) -> gym.Env:
    """One preprocessed Atari env (see the module docstring); ``kwargs`` go to ``gymnasium.make``.

    ``clip_reward``: True for training (rewards in {-1, 0, 1}), False for evaluation (the game
    score). The raw score is in ``info["episode"]["r"]`` at the end of each episode either way.
    ``terminal_on_life_loss`` must stay False: with True, Gymnasium's ``AtariPreprocessing`` ends the
    episode at each lost life and the next reset restarts the whole game, so the agent would only
    ever play its first life (unlike SB3's ``EpisodicLifeEnv``, which plays on).
    """
    if terminal_on_life_loss:
        raise EnvError(
            f"{env_id}: terminal_on_life_loss=True is not supported: Gymnasium's AtariPreprocessing then ends the "
            "episode at every lost life and the reset restarts the whole game, so the agent never plays its later "
            "lives and the recorded score is that of one life (SB3's EpisodicLifeEnv plays on instead). lucidrl "
            "trains on whole games (Machado et al. 2018): leave terminal_on_life_loss=False"
        )
    if kwargs.get("frameskip", 1) != 1:
        raise EnvError(
            f"{env_id}: frameskip={kwargs['frameskip']!r} is the ALE's own frame skip, which lucidrl keeps at 1 "
            "(AtariPreprocessing skips and max-pools the last two frames); pass frame_skip=k, an int, instead"
        )
    register_atari_envs()
    kwargs["frameskip"] = 1  # AtariPreprocessing skips frames; the ALE must not skip as well
    try:
        env = gym.make(env_id, **kwargs)
        env = gym.wrappers.AtariPreprocessing(
            env,
            noop_max=noop_max,
            frame_skip=frame_skip,
            screen_size=screen_size,
            terminal_on_life_loss=terminal_on_life_loss,
            grayscale_obs=True,
            scale_obs=False,
        )
    except gym.error.DependencyNotInstalled as e:  # AtariPreprocessing needs OpenCV for the resize
        raise MissingDependencyError(
            f"{env_id} needs a package that is not installed ({e}). Fix: {ATARI_EXTRA_FIX}"
        ) from None
    if frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, frame_stack)
    env = gym.wrappers.RecordEpisodeStatistics(env)  # before the clipping: records the raw score
    if clip_reward:
        env = gym.wrappers.TransformReward(env, sign_reward)
    return env
