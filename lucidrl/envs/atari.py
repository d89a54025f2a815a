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
   Gymnasium's own ``terminal_on_life_loss`` stays False (it would restart the whole game at each lost
   life, see ``make_atari_env``);
3. ``RecordEpisodeStatistics``: the *raw* game score and length of each finished game in
   ``info["episode"]`` — lucidrl's collectors report this score (see
   ``lucidrl.envs.episode_scores``), not the sum of the clipped rewards below;
4. with ``terminal_on_life_loss=True`` (off by default): :class:`EpisodicLife`, a lost life ends the
   training episode (``terminated``) while the game plays on, as in the DQN paper and SB3's
   ``AtariWrapper``; with ``fire_reset=True`` (off by default): :class:`FireReset`, FIRE after each reset
   in games that wait for it, as SB3's ``AtariWrapper``;
5. ``FrameStackObservation``: the last ``frame_stack`` (4) frames, shape (4, 84, 84): one frame
   holds no velocity, a stack does;
6. with ``clip_reward=True`` (training only): ``TransformReward(np.sign)``, rewards clipped to
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


class EpisodicLife(gym.Wrapper):
    """A lost life ends the training episode; the game plays on.

    The DQN paper trains with "a life loss as terminal" (Mnih et al. 2015, Methods, "Training details"), and
    SB3's ``AtariWrapper`` (``EpisodicLifeEnv``) and CleanRL do too: the step that loses a life returns
    ``terminated=True``, so the value targets learn that losing a life ends the return (γ^k V(s) is not
    bootstrapped past it), which speeds learning in games with several lives. The game is not restarted:
    the ``reset()`` right after it is one no-op step from where the life was lost; any other reset (after a game
    over, a truncation, a seed, or in the middle of a life) starts a new game. The losing step's info has
    ``life_lost=True``: lucidrl's collectors then count no episode end (``lucidrl.envs.game_goes_on``), and the
    score logged is the whole game's, recorded below this wrapper. Machado et al. 2018 advise against it for comparing
    results (it gives the agent the number of lives, which not every game shows), so it is off by default.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.life_lost = False  # the last step lost a life (and the game goes on): reset() continues the game

    def _ale_lives(self) -> int:
        return int(self.env.unwrapped.ale.lives())  # type: ignore[attr-defined]

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self._ale_lives()
        self.life_lost = 0 < lives < self.lives and not (terminated or truncated)
        if self.life_lost:
            terminated = True
            info = {**info, "life_lost": True}
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if not self.life_lost or seed is not None:  # a new game (also a reset in the middle of one)
            obs, info = self.env.reset(seed=seed, options=options)
        else:  # a life was lost: the game goes on from there, after one no-op
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # (the game ended on that no-op)
                obs, info = self.env.reset(options=options)
        self.life_lost = False
        self.lives = self._ale_lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Presses FIRE after every reset, in games whose play waits for it (Breakout serves the ball on FIRE).

    SB3's ``AtariWrapper`` (``FireResetEnv``) and CleanRL do this: after the reset, action 1 (FIRE) and then
    action 2, as theirs, each repeated ``frame_skip`` frames by the preprocessing below, resetting again if either
    ends the game. Outside :class:`EpisodicLife`, it also serves again after a lost life. Without it the agent
    has to learn to press FIRE itself, which it does, more slowly; off by default."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        return obs, info


def make_atari_env(
    env_id: str,
    *,
    clip_reward: bool = True,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    terminal_on_life_loss: bool = False,
    fire_reset: bool = False,
    **kwargs: Any,
) -> gym.Env:
    """One preprocessed Atari env (see the module docstring); ``kwargs`` go to ``gymnasium.make``.

    ``clip_reward``: True for training (rewards in {-1, 0, 1}), False for evaluation (the game
    score). The raw score of the whole game is in ``info["episode"]["r"]`` when it ends, either way.
    ``terminal_on_life_loss=True``: :class:`EpisodicLife` (a lost life is ``terminated``, the game plays
    on; SB3's ``AtariWrapper`` default). Gymnasium's ``AtariPreprocessing`` has a flag of the same name that
    restarts the whole game at each lost life; lucidrl never sets that one.
    ``fire_reset=True``: :class:`FireReset` in games whose actions include FIRE (SB3's ``AtariWrapper`` default);
    in the others it changes nothing.
    """
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
            terminal_on_life_loss=False,  # (it would restart the game at each lost life: EpisodicLife below)
            grayscale_obs=True,
            scale_obs=False,
        )
    except gym.error.DependencyNotInstalled as e:  # AtariPreprocessing needs OpenCV for the resize
        raise MissingDependencyError(
            f"{env_id} needs a package that is not installed ({e}). Fix: {ATARI_EXTRA_FIX}"
        ) from None
    env = gym.wrappers.RecordEpisodeStatistics(env)  # before the clipping and the lost lives: whole games' scores
    if terminal_on_life_loss:
        env = EpisodicLife(env)
    meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
    if fire_reset and len(meanings) >= 3 and meanings[1] == "FIRE":  # (as SB3's FireResetEnv asks)
        env = FireReset(env)
    if frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, frame_stack)
    if clip_reward:
        env = gym.wrappers.TransformReward(env, sign_reward)
    return env
