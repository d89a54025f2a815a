"""Atari smoke tests: the DQN-paper preprocessing, raw scores, and PPO/A2C/DQN training for a few
hundred steps on ALE/Pong-v5. Skipped where the atari extra (ale-py, OpenCV) is not installed."""

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")
pytest.importorskip("cv2")

import gymnasium as gym  # noqa: E402

import lucidrl  # noqa: E402
from lucidrl.envs import make_env, make_vec_env  # noqa: E402
from lucidrl.envs.atari import make_atari_env  # noqa: E402
from lucidrl.networks import NatureCNN  # noqa: E402


def _wrappers(env: gym.Env) -> list[str]:
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return names


def test_atari_ids_get_the_dqn_preprocessing():
    venv = make_vec_env("ALE/Pong-v5", 2, seed=0)
    assert venv.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    env = venv.envs[0]
    # outermost first: clipping after the statistics, so the statistics see the raw score
    assert _wrappers(env)[:4] == [
        "TransformReward",
        "FrameStackObservation",
        "RecordEpisodeStatistics",
        "AtariPreprocessing",
    ]
    pre = env.env.env.env
    assert (pre.noop_max, pre.frame_skip, pre.terminal_on_life_loss) == (30, 4, False)
    assert env.unwrapped._frameskip == 1  # the ALE itself does not skip: no 4 x 4
    venv.close()
    # evaluation envs: the same preprocessing, no clipping
    assert "TransformReward" not in _wrappers(make_env("ALE/Pong-v5"))
    assert make_env("PongNoFrameskip-v4").observation_space.shape == (4, 84, 84)


def test_training_rewards_are_clipped_and_the_recorded_score_is_raw():
    """Space Invaders pays 5 to 30 points per alien: the clipped env gives sign(raw) at every step,
    and both envs record the raw game score."""
    clipped, raw = make_atari_env("ALE/SpaceInvaders-v5"), make_atari_env("ALE/SpaceInvaders-v5", clip_reward=False)
    clipped.reset(seed=3)
    raw.reset(seed=3)
    rng = np.random.default_rng(0)
    raw_rewards, clipped_rewards = [], []
    done = False
    while not done:
        a = int(rng.integers(6))
        _, rc, tc, uc, info_c = clipped.step(a)
        _, rr, tr, ur, info_r = raw.step(a)
        clipped_rewards.append(rc)
        raw_rewards.append(rr)
        done = tc or uc
        assert (tc, uc) == (tr, ur)
    assert max(raw_rewards) > 1  # the game's own rewards
    assert clipped_rewards == [float(np.sign(r)) for r in raw_rewards]
    assert info_c["episode"]["r"] == info_r["episode"]["r"] == sum(raw_rewards)
    assert sum(clipped_rewards) < sum(raw_rewards)


def test_evaluation_reports_the_raw_game_score():
    model = lucidrl.PPO("ALE/SpaceInvaders-v5", n_envs=1, n_steps=8, batch_size=8, seed=0, verbose=0)
    env = make_env("ALE/SpaceInvaders-v5")
    assert "TransformReward" not in _wrappers(env)
    mean, _ = lucidrl.evaluate(model, env, n_episodes=1, deterministic=False, seed=0)
    assert mean == _recorder(env).return_queue[-1]  # the game score the recorder saw
    assert mean > 1 and mean % 5 == 0  # points of Space Invaders, not a count of clipped rewards


def test_ppo_a2c_and_dqn_train_on_pong_for_a_few_hundred_steps(tmp_path):
    ppo = lucidrl.PPO("ALE/Pong-v5", n_envs=2, n_steps=64, batch_size=64, n_epochs=1, seed=0, verbose=0)
    assert ppo.preset_name == "ALE/*" and isinstance(ppo.agent.encoder, NatureCNN)
    before = ppo.agent.encoder.conv[0].weight.detach().clone()
    ppo.learn(256)
    assert ppo.num_timesteps == 256 and not torch.equal(before, ppo.agent.encoder.conv[0].weight)
    ppo.save(tmp_path / "ppo")
    loaded = lucidrl.load(tmp_path / "ppo")
    obs = np.random.default_rng(0).integers(0, 256, (3, 4, 84, 84), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], ppo.predict(obs, deterministic=True)[0])

    a2c = lucidrl.A2C("ALE/Pong-v5", n_envs=2, seed=0, verbose=0)
    assert a2c.preset_name == "ALE/*"
    a2c.learn(100)
    assert a2c.num_timesteps == 100

    dqn = lucidrl.DQN("ALE/Pong-v5", buffer_size=1_000, learning_starts=100, seed=0, verbose=0)
    assert dqn.preset_name == "ALE/*" and dqn.config.target_update_interval == 1000
    dqn.learn(200)
    assert dqn.n_updates == 25  # (200 - 100) / train_freq 4
    assert dqn.replay.obs.dtype == torch.uint8 and dqn.replay.obs.shape[1:] == (4, 84, 84)


def test_a_lost_life_ends_the_training_episode_and_the_game_plays_on():
    """terminal_on_life_loss=True (lucidrl's EpisodicLife, not Gymnasium's flag, which restarts the whole game):
    Breakout's 5 lives give 4 steps with terminated=True and life_lost=True after which reset() continues the
    same game (the lives stay as they were), then the real game over, whose recorded score is the whole game's."""
    env = make_atari_env("ALE/Breakout-v5", terminal_on_life_loss=True, clip_reward=False)
    assert _wrappers(env)[:2] == ["FrameStackObservation", "EpisodicLife"]
    assert env.env.env.env.terminal_on_life_loss is False  # Gymnasium's flag is never set
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    lost, game_score = [], 0.0
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
        game_score += reward
        if terminated and info.get("life_lost"):
            lives = env.unwrapped.ale.lives()
            lost.append(lives)
            env.reset()
            assert env.unwrapped.ale.lives() == lives  # the same game, not a new one
        elif terminated or truncated:
            break
    assert lost == [4, 3, 2, 1] and "life_lost" not in info
    assert info["episode"]["r"] == game_score  # (the no-op after a lost life scores nothing in Breakout)


def test_training_statistics_count_whole_games_when_lives_end_training_episodes():
    """The collectors see terminated=True at every lost life (no bootstrap past it) but log one episode per game,
    with the recorded raw score; the game's length counts the agent's steps over all its lives."""
    from lucidrl.rollout import VectorStepper

    venv = make_vec_env("ALE/Breakout-v5", 2, seed=0, terminal_on_life_loss=True)
    stepper = VectorStepper(venv, seed=0)
    rng = np.random.default_rng(1)
    terminations, games = 0, []
    steps = np.zeros(2, dtype=int)
    while len(games) < 3:
        tr = stepper.step(rng.integers(4, size=2))
        steps += 1
        terminations += int(tr.terminated.sum())
        for i, ret, length in zip(tr.episode_rows, tr.episode_returns, tr.episode_lengths):
            games.append((ret, length, steps[i]))
            assert ret == _recorder(venv.envs[i]).return_queue[-1]
            steps[i] = 0
    assert terminations >= 5 * len(games) - 2  # every lost life of every game (the last ones may be unfinished)
    assert all(length == n for _, length, n in games)
    venv.close()


def test_evaluation_on_one_env_whose_lives_end_training_episodes_plays_whole_games():
    """evaluate_policy / lucidrl.evaluate on one env made with terminal_on_life_loss=True count whole games, as the
    vector envs' statistics do. Before, each lost life ended an evaluation episode (and lucidrl.evaluate's seeded
    reset restarted the game), so the scores were those of the first life: lengths ~30 instead of ~150."""
    from lucidrl.evaluation import evaluate_policy

    class RandomPolicy:
        rng = np.random.default_rng(0)

        def predict(self, obs, deterministic=True):
            return int(self.rng.integers(4)), None

    env = make_atari_env("ALE/Breakout-v5", terminal_on_life_loss=True, clip_reward=False)
    env.reset(seed=0)
    calls = []
    scores, lengths = evaluate_policy(
        RandomPolicy(), env, 1, return_episode_rewards=True, callback=lambda loc, _: calls.append(loc["done"])
    )
    recorder = _recorder(env)
    assert env.unwrapped.ale.game_over() and sum(calls) == 5  # every lost life is seen by the callback, as SB3's
    assert scores[0] == recorder.return_queue[-1]  # the whole game's (the no-ops after lost lives score nothing)
    assert lengths[0] == recorder.length_queue[-1] - 4  # the agent's steps of all 5 lives (not the 4 no-ops)
    mean, _ = lucidrl.evaluate(RandomPolicy(), env, n_episodes=1)
    assert env.unwrapped.ale.game_over()


def test_a_reset_that_follows_no_lost_life_starts_a_new_game():
    """Only the reset right after a lost life continues the game. Before, any reset in the middle of a life (or a
    second reset) took a no-op step in the running game: an evaluation on an env the user had stepped, or reset,
    played on from there."""
    env = make_atari_env("ALE/Breakout-v5", terminal_on_life_loss=True, clip_reward=False)
    env.reset(seed=0)
    for _ in range(20):
        env.step(0)
    assert env.unwrapped.ale.getEpisodeFrameNumber() >= 80
    env.reset()
    assert env.unwrapped.ale.getEpisodeFrameNumber() <= 30  # a new game: only the reset's random no-ops


def _recorder(env: gym.Env) -> gym.wrappers.RecordEpisodeStatistics:
    while not isinstance(env, gym.wrappers.RecordEpisodeStatistics):
        env = env.env
    return env


def test_the_ales_own_frameskip_is_refused_with_the_wrappers_name():
    """frameskip=5 used to be overwritten to 1 silently, so the agent acted every 4 frames, not every 5."""
    from lucidrl.errors import EnvError

    with pytest.raises(EnvError, match=r"frameskip=5 .*pass frame_skip=k, an int"):
        make_atari_env("ALE/Pong-v5", frameskip=5)
    env = make_atari_env("ALE/Pong-v5", frameskip=1, frame_skip=5)  # frameskip=1 is what lucidrl sets anyway
    assert env.unwrapped._frameskip == 1 and env.env.env.env.frame_skip == 5


def test_clip_reward_given_as_an_env_kwarg_is_the_users_choice():
    """Training clips rewards and evaluation does not, unless the env kwargs say otherwise (no TypeError)."""
    assert "TransformReward" not in _wrappers(make_vec_env("ALE/Pong-v5", 1, seed=0, clip_reward=False).envs[0])
    assert "TransformReward" in _wrappers(make_env("ALE/Pong-v5", clip_reward=True))


def test_env_kwargs_ask_for_lost_lives_in_training_only():
    """PPO("ALE/Breakout-v5", env_kwargs={"terminal_on_life_loss": True}) (or --env-kwargs terminal_on_life_loss:True):
    the training copies end episodes at lost lives, the preset still applies, and evaluation plays whole games."""
    model = lucidrl.PPO("ALE/Breakout-v5", env_kwargs={"terminal_on_life_loss": True}, n_envs=2, seed=0, verbose=0)
    assert model.preset_name == "ALE/*"
    assert "EpisodicLife" in _wrappers(model.env.envs[0])
    evaluation_env = make_env(model.env_id)
    assert "EpisodicLife" not in _wrappers(evaluation_env) and "TransformReward" not in _wrappers(evaluation_env)


def test_fire_reset_serves_after_every_reset_in_games_that_wait_for_fire():
    """fire_reset=True (SB3's FireResetEnv): FIRE then action 2 after the reset, 2 x 4 more frames than the same
    seeded reset without it; with lost lives it also serves again; games without FIRE are left as they are."""

    def frames_after_reset(**kw):
        env = make_atari_env("ALE/Breakout-v5", **kw)
        env.reset(seed=0)
        return env, env.unwrapped.ale.getEpisodeFrameNumber()

    plain, plain_frames = frames_after_reset()
    fired, fired_frames = frames_after_reset(fire_reset=True)
    assert "FireReset" in _wrappers(fired) and "FireReset" not in _wrappers(plain)
    assert fired_frames == plain_frames + 2 * 4
    lives, _ = frames_after_reset(fire_reset=True, terminal_on_life_loss=True)
    assert _wrappers(lives)[:3] == ["TransformReward", "FrameStackObservation", "FireReset"]
    assert "FireReset" not in _wrappers(make_atari_env("ALE/Freeway-v5", fire_reset=True))  # NOOP, UP, DOWN
