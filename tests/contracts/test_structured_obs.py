"""Dict and Tuple observations (lucidrl/envs/structured.py): flattened once at the env boundary, as SB3's
MultiInputPolicy concatenates its entries. The flat layout is Gymnasium's ``gymnasium.spaces.flatten``; the true
final observations of same-step autoreset are flattened too (the truncation bootstrap reads them); predict takes
the env's own dicts, one or a batch; checkpoints keep the Dict space; a task whose answer needs two entries at
once is learned."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces as S

import lucidrl
from lucidrl import ConfigError, EnvError
from lucidrl.envs import make_vec_env, space_from_json, space_to_json
from lucidrl.envs.structured import FlattenStructured, flatten_observation
from lucidrl.evaluation import evaluate_policy

NESTED = S.Dict(
    {
        "pos": S.Box(-1.0, 1.0, (2,), np.float32),
        "mode": S.Discrete(3, start=1),
        "flags": S.MultiBinary(2),
        "cell": S.MultiDiscrete([2, 3], start=[0, -1]),
        "pair": S.Tuple([S.Discrete(2), S.Box(0.0, 5.0, (1, 2), np.float32)]),
    }
)

# SMALL settings, a few hundred steps each
SMALL = {
    "PPO": dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=2, net_arch=[16]),
    "A2C": dict(n_envs=2, n_steps=8, net_arch=[16]),
    "TRPO": dict(n_envs=2, n_steps=32, batch_size=64, n_critic_updates=2, net_arch=[16]),
    "VPG": dict(n_envs=2, n_steps=32, n_critic_updates=2, net_arch=[16]),
    "DQN": dict(learning_starts=50, train_freq=16, gradient_steps=4, batch_size=16, buffer_size=500, net_arch=[16]),
}


class Signals(gym.Env):
    """One-step episodes (or ``horizon`` steps, truncated): observe {"mode": Discrete(2, start=1), "level": Box}
    with level -0.5 or 0.5. Action 2 (mode - 1) + [level > 0] pays 1: four states, four answers, so a policy that
    reads only one of the two entries is right in at most half of them."""

    observation_space = S.Dict({"level": S.Box(-1.0, 1.0, (1,), np.float32), "mode": S.Discrete(2, start=1)})
    action_space = S.Discrete(4)

    def __init__(self, horizon=1):
        self.horizon = horizon

    def _draw(self):
        self.obs = {
            "level": self.np_random.choice([-0.5, 0.5], size=1).astype(np.float32),
            "mode": int(self.np_random.integers(1, 3)),
        }
        return self.obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def step(self, action):
        assert action in self.action_space, action
        want = 2 * (self.obs["mode"] - 1) + int(self.obs["level"][0] > 0)
        self.t += 1
        reward = float(action == want)
        return self._draw(), reward, False, self.t >= self.horizon, {}


def every_signal():
    return {"level": np.array([[-0.5], [-0.5], [0.5], [0.5]], np.float32), "mode": np.array([1, 2, 1, 2])}


# --------------------------------------------------------------------------- the flat layout
def test_flat_rows_are_gymnasiums_flatten_for_single_observations_and_batches():
    NESTED.seed(0)
    samples = [NESTED.sample() for _ in range(5)]
    want = np.stack([S.flatten(NESTED, s) for s in samples]).astype(np.float32)
    for one, row in zip(samples, want):
        np.testing.assert_array_equal(flatten_observation(NESTED, one), row)
    batch = {
        "pos": np.stack([s["pos"] for s in samples]),
        "mode": np.array([s["mode"] for s in samples]),
        "flags": np.stack([s["flags"] for s in samples]),
        "cell": np.stack([s["cell"] for s in samples]),
        "pair": (np.array([s["pair"][0] for s in samples]), np.stack([s["pair"][1] for s in samples])),
    }
    got = flatten_observation(NESTED, batch)
    assert got.dtype == np.float32 and got.shape == (5, S.flatdim(NESTED))
    np.testing.assert_array_equal(got, want)


def test_the_vector_env_flattens_observations_and_the_true_final_ones():
    venv = make_vec_env(lambda: Signals(horizon=2), 3, seed=0)
    assert isinstance(venv, FlattenStructured) and venv.structured_space == Signals.observation_space
    assert venv.single_observation_space == S.Box(np.array([-1, 0, 0], np.float32), 1.0, (3,), np.float32)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3, 3) and obs.dtype == np.float32
    finals = []
    for _ in range(4):
        obs, _, _, truncated, info = venv.step(np.zeros(3, np.int64))
        if truncated.any():
            finals += [f for f, t in zip(info["final_obs"], truncated) if t]
    assert len(finals) == 6 and all(f.shape == (3,) and f.dtype == np.float32 for f in finals)
    assert all(f[1] + f[2] == 1.0 for f in finals)  # the one-hot of "mode"
    venv.close()


@pytest.mark.parametrize("space", [NESTED, S.Tuple([S.Discrete(2), S.MultiBinary(3)])], ids=["dict", "tuple"])
def test_structured_spaces_round_trip_through_json(space):
    assert space_from_json(space_to_json(space)) == space


# --------------------------------------------------------------------------- every algorithm
@pytest.mark.parametrize("algo", list(SMALL))
def test_dict_observations_train_predict_evaluate_save_and_load(algo, tmp_path):
    m = getattr(lucidrl, algo)(
        "MultiInputPolicy", lambda: Signals(horizon=3), seed=0, verbose=0, preset=False, **SMALL[algo]
    )
    assert m.structured_observation_space == Signals.observation_space
    m.learn(256)
    batch = every_signal()
    actions, _ = m.predict(batch, deterministic=True)
    assert actions.shape == (4,)
    one, _ = m.predict({"level": np.array([0.5], np.float32), "mode": 2}, deterministic=True)
    assert np.shape(one) == () and one == actions[3]
    mean, _ = lucidrl.evaluate(m, Signals(horizon=3), n_episodes=2)
    assert 0.0 <= mean <= 3.0
    # its own training env, a VectorEnv of flat rows that keeps the Dict (structured_space): the spaces fit
    assert 0.0 <= evaluate_policy(m, m.get_env(), n_eval_episodes=2)[0] <= 3.0
    m.save(tmp_path / "m")
    m2 = lucidrl.load(tmp_path / "m")
    assert m2.structured_observation_space == Signals.observation_space
    np.testing.assert_array_equal(m2.predict(batch, deterministic=True)[0], actions)
    with pytest.raises(EnvError, match="does not fit the model's observation space"):
        m2.predict({"level": np.array([0.5], np.float32)})  # "mode" missing


def small_ppo(env, **kwargs):
    """PPO for the learning tests: seed 0, 4 envs x 32 steps, minibatches of 64, one hidden layer of 32."""
    return lucidrl.PPO(
        "MultiInputPolicy",
        env,
        seed=0,
        verbose=0,
        preset=False,
        n_envs=4,
        n_steps=32,
        batch_size=64,
        net_arch=[32],
        **kwargs,
    )


def test_ppo_learns_a_task_that_needs_two_entries_of_the_dict():
    """The answer is a Discrete entry's and a Box entry's together (seed 0, 3,072 steps): every state right."""
    m = small_ppo(Signals, n_epochs=4, learning_rate=3e-3)
    m.learn(3072)
    np.testing.assert_array_equal(m.predict(every_signal(), deterministic=True)[0], [0, 2, 1, 3])


# --------------------------------------------------------------------------- image entries
class Lamps(gym.Env):
    """{"frame": a (1, 36, 36) uint8 image with its left or right half lit, "mode": Discrete(2)}: action
    2 mode + side pays 1. Four states, four answers: the image alone or the mode alone is right half the time."""

    observation_space = S.Dict({"frame": S.Box(0, 255, (1, 36, 36), np.uint8), "mode": S.Discrete(2)})
    action_space = S.Discrete(4)

    def __init__(self, horizon=1):
        self.horizon = horizon

    def _draw(self):
        self.side, self.mode = (int(self.np_random.integers(2)) for _ in range(2))
        return {"frame": lamp_frames([self.side])[0], "mode": self.mode}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def step(self, action):
        self.t += 1
        reward = float(action == 2 * self.mode + self.side)
        return self._draw(), reward, False, self.t >= self.horizon, {}


def lamp_frames(sides):
    frames = np.zeros((len(sides), 1, 36, 36), np.uint8)
    for frame, side in zip(frames, sides):
        frame[:, :, 18 * side : 18 * side + 18] = 255
    return frames


def every_lamp():
    return {"frame": lamp_frames([0, 1, 0, 1]), "mode": np.array([0, 0, 1, 1])}


def test_each_image_entry_is_read_by_its_own_cnn_and_the_rest_passes_as_it_is():
    import torch

    from lucidrl.envs.structured import flat_space
    from lucidrl.networks import NatureCNN, StructuredEncoder, obs_encoder

    space = S.Dict(
        {
            "a_frame": S.Box(0, 255, (3, 36, 36), np.uint8),
            "b_pos": S.Box(-1.0, 1.0, (2,), np.float32),
            "c_mode": S.Discrete(3),
            "d_map": S.Box(0, 255, (40, 36, 1), np.uint8),  # channels last
        }
    )
    encoder, width = obs_encoder(flat_space(space), "PPO")
    assert isinstance(encoder, StructuredEncoder) and width == 256 + 2 + 3 + 256 == encoder.features_dim
    assert [k for _, _, k in encoder.pieces] == [0, -1, 1]  # the two plain entries are one slice
    space.seed(0)
    samples = [space.sample() for _ in range(3)]
    rows = torch.as_tensor(np.stack([flatten_observation(space, s) for s in samples]))
    before = rows.clone()
    with torch.no_grad():
        out = encoder(rows)
        frames = torch.as_tensor(np.stack([s["a_frame"] for s in samples]))
        maps = torch.as_tensor(np.stack([s["d_map"] for s in samples]))
        want = torch.cat([encoder.cnns[0](frames), rows[:, 3 * 36 * 36 : 3 * 36 * 36 + 5], encoder.cnns[1](maps)], 1)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(rows, before)  # the rollout's rows are not scaled in place
    assert isinstance(encoder.cnns[1], NatureCNN) and encoder.cnns[1].channels_last
    # a Dict without images keeps the plain flat encoder (and the fast backend)
    plain, _ = obs_encoder(flat_space(S.Dict({"x": S.Box(-1.0, 1.0, (2,)), "m": S.Discrete(2)})), "PPO")
    assert not isinstance(plain, StructuredEncoder)


def test_the_image_features_are_sb3s_combinedextractor_ones_with_its_weights():
    """SB3's CombinedExtractor on a Dict with an image: a NatureCNN of 256 features on pixels / 255, the other
    entries flattened, in key order. With its CNN's weights copied, lucidrl's encoder gives the same features."""
    pytest.importorskip("stable_baselines3")
    import torch
    from stable_baselines3.common.preprocessing import preprocess_obs
    from stable_baselines3.common.torch_layers import CombinedExtractor

    from lucidrl.envs.structured import flat_space
    from lucidrl.networks import obs_encoder

    space = S.Dict(
        {"frame": S.Box(0, 255, (1, 36, 36), np.uint8), "mode": S.Discrete(3), "pos": S.Box(-1, 1, (2,), np.float32)}
    )
    theirs = CombinedExtractor(space)
    ours, _ = obs_encoder(flat_space(space), "PPO")
    cnn = theirs.extractors["frame"]
    for i in (0, 2, 4):
        ours.cnns[0].conv[i].load_state_dict(cnn.cnn[i].state_dict())
    ours.cnns[0].fc[0].load_state_dict(cnn.linear[0].state_dict())
    space.seed(2)
    samples = [space.sample() for _ in range(4)]
    batch = {key: np.stack([np.asarray(s[key]) for s in samples]) for key in space.spaces}
    with torch.no_grad():
        want = theirs(preprocess_obs({k: torch.as_tensor(v) for k, v in batch.items()}, space))
        got = ours(torch.as_tensor(flatten_observation(space, batch)))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo", list(SMALL))
def test_dict_observations_with_an_image_train_predict_and_load(algo, tmp_path):
    m = getattr(lucidrl, algo)("MultiInputPolicy", Lamps, seed=0, verbose=0, preset=False, **SMALL[algo])
    m.learn(128)
    actions, _ = m.predict(every_lamp(), deterministic=True)
    one, _ = m.predict({"frame": lamp_frames([1])[0], "mode": 1}, deterministic=True)
    assert np.shape(one) == () and one == actions[3]
    assert 0.0 <= lucidrl.evaluate(m, Lamps(horizon=2), n_episodes=2)[0] <= 2.0
    m.save(tmp_path / "m")
    m2 = lucidrl.load(tmp_path / "m", env=Lamps)
    np.testing.assert_array_equal(m2.predict(every_lamp(), deterministic=True)[0], actions)
    m2.learn(64)  # and trains on


def test_ppo_learns_a_task_that_needs_the_image_and_the_index():
    """The answer needs the lit side of the image and the Discrete entry (seed 0, 4,096 steps; seeds 0-2 all solve
    it there, in 5-6 s each on 2 cores): every state right."""
    m = small_ppo(Lamps, n_epochs=8, learning_rate=2.5e-3)
    m.learn(4096)
    np.testing.assert_array_equal(m.predict(every_lamp(), deterministic=True)[0], [0, 1, 2, 3])


# --------------------------------------------------------------------------- refusals
def test_image_entries_and_policies_that_do_not_fit_are_refused():
    class SmallImage(Lamps):
        observation_space = S.Dict({"frame": S.Box(0, 255, (3, 8, 8), np.uint8), "mode": S.Discrete(2)})

        def _draw(self):
            self.side, self.mode = 0, 0
            return {"frame": np.zeros((3, 8, 8), np.uint8), "mode": 0}

    with pytest.raises(EnvError, match="at least 36x36"):
        lucidrl.PPO(SmallImage, verbose=0, preset=False)
    with pytest.raises(ConfigError, match="normalize_obs with image entries"):
        lucidrl.PPO(Lamps, verbose=0, preset=False, normalize_obs=True)
    with pytest.raises(ConfigError, match="Use 'MultiInputPolicy'"):
        lucidrl.PPO("MlpPolicy", Lamps, verbose=0, preset=False)
    with pytest.raises(ConfigError, match="Use 'MultiInputPolicy'"):
        lucidrl.PPO("CnnPolicy", Lamps, verbose=0, preset=False)
    with pytest.raises(ConfigError, match="share_features_extractor"):
        lucidrl.PPO(
            "MultiInputPolicy", Lamps, verbose=0, preset=False, policy_kwargs={"share_features_extractor": False}
        )
    with pytest.raises(ConfigError, match="MultiInputPolicy reads Dict observations"):
        lucidrl.PPO("MultiInputPolicy", "CartPole-v1", verbose=0, preset=False)
    m = lucidrl.PPO("MultiInputPolicy", Signals, verbose=0, preset=False, n_envs=1, n_steps=16, batch_size=16)
    with pytest.raises(EnvError, match="differ from the model's"):
        m.set_env("CartPole-v1")


def test_the_flat_layout_is_what_sb3s_multiinputpolicy_feeds_its_mlp():
    """SB3's CombinedExtractor: each entry preprocessed (one-hot for Discrete/MultiDiscrete) and flattened, in the
    Dict's key order, then concatenated. Starts at 0 here: SB3 one-hot encodes a Discrete without its start."""
    pytest.importorskip("stable_baselines3")
    import torch
    from stable_baselines3.common.preprocessing import preprocess_obs
    from stable_baselines3.common.torch_layers import CombinedExtractor

    space = S.Dict(
        {
            "pos": S.Box(-1.0, 1.0, (2, 2), np.float32),
            "mode": S.Discrete(3),
            "flags": S.MultiBinary(2),
            "cell": S.MultiDiscrete([2, 3]),
        }
    )
    space.seed(1)
    samples = [space.sample() for _ in range(6)]
    batch = {key: np.stack([np.asarray(s[key]) for s in samples]) for key in space.spaces}
    extractor = CombinedExtractor(space)
    with torch.no_grad():
        theirs = extractor(preprocess_obs({k: torch.as_tensor(v) for k, v in batch.items()}, space))
    np.testing.assert_array_equal(flatten_observation(space, batch), theirs.numpy())


def test_edge_cases_of_structured_spaces():
    # a Tuple observation whose second entry is a dict is one observation, not reset()'s (obs, info)
    space = S.Tuple([S.Box(-1.0, 1.0, (2,), np.float32), S.Dict({"g": S.Discrete(3)})])

    class Pair(Signals):
        observation_space = space

        def _draw(self):
            self.obs = {"mode": 1, "level": np.array([0.5], np.float32)}  # (the reward's inputs)
            return (np.zeros(2, np.float32), {"g": 1})

    m = lucidrl.PPO(Pair, verbose=0, preset=False, n_envs=1, n_steps=16, batch_size=16)
    action, _ = m.predict((np.zeros(2, np.float32), {"g": 2}))
    assert np.shape(action) == ()
    # a list of dict observations is a batch
    m = lucidrl.PPO(Signals, verbose=0, preset=False, n_envs=1, n_steps=16, batch_size=16)
    one = {"level": np.array([0.5], np.float32), "mode": 2}
    assert m.predict([one, one, one], deterministic=True)[0].shape == (3,)
    # an entry outside its space is named, not wrapped into another one-hot
    with pytest.raises(EnvError, match=r"outside its space Discrete\(2, start=1\)"):
        m.predict({"level": np.array([0.5], np.float32), "mode": 0})
    # keys that are not strings would not survive a checkpoint's JSON: refused when the model is built
    with pytest.raises(EnvError, match="not a string"):
        flatten_observation(S.Dict({2: S.Discrete(2), 10: S.Discrete(2)}), {2: 0, 10: 1})
    # a 3-D Box of floats is features, flattened; only uint8 pixels are an image
    features = S.Dict({"grid": S.Box(0.0, 1.0, (2, 3, 4), np.float32), "mode": S.Discrete(2)})
    row = flatten_observation(features, {"grid": np.ones((2, 3, 4), np.float32), "mode": 1})
    np.testing.assert_array_equal(row, np.r_[np.ones(24), 0.0, 1.0])


def test_torch_threads_auto_counts_a_large_image_entry_as_a_large_image():
    from types import SimpleNamespace

    import torch

    from lucidrl.envs.structured import flat_space
    from lucidrl.threads import auto_threads

    def model(frame_shape):
        space = S.Dict({"frame": S.Box(0, 255, frame_shape, np.uint8), "v": S.Box(-1.0, 1.0, (2,), np.float32)})
        return SimpleNamespace(device=torch.device("cpu"), observation_space=flat_space(space))

    assert auto_threads(model((84, 84, 3))) == torch.get_num_threads()  # Atari-sized: the convolutions use threads
    assert auto_threads(model((1, 36, 36))) == 1


# --------------------------------------------------------------------------- key order, the CLI, memory
class Ordered(Lamps):
    """Lamps with two same-sized entries listed "z", "a" (a list of pairs keeps Gymnasium's Dict in that order;
    a plain dict would sort it): the flat row holds z's values before a's."""

    observation_space = S.Dict(
        [
            ("z", S.Box(-1.0, 1.0, (2,), np.float32)),
            ("a", S.Box(-1.0, 1.0, (2,), np.float32)),
            *Lamps.observation_space.spaces.items(),
        ]
    )

    def _draw(self):
        obs = super()._draw()
        return {"z": np.full(2, 0.5, np.float32), "a": np.full(2, -0.5, np.float32), **obs}


def test_a_dicts_key_order_is_its_row_layout_and_survives_save_and_load(tmp_path):
    """The saved Dict keeps its key order (its JSON did, but it was read back into a sorted Dict: a reloaded model
    read z's columns as a's, and its CNN's columns elsewhere); an env that lists the same entries in another order
    is refused (Gymnasium's Dict equality ignores the order)."""
    assert list(space_from_json(space_to_json(Ordered.observation_space)).spaces) == ["z", "a", "frame", "mode"]
    m = lucidrl.PPO("MultiInputPolicy", Ordered, seed=0, verbose=0, preset=False, n_envs=1, n_steps=16, batch_size=16)
    space = Ordered.observation_space
    space.seed(0)
    samples = [space.sample() for _ in range(8)]
    m.save(tmp_path / "m")
    loaded = lucidrl.load(tmp_path / "m")
    assert list(loaded.structured_observation_space.spaces) == ["z", "a", "frame", "mode"]
    assert loaded.agent.encoder.pieces == m.agent.encoder.pieces
    np.testing.assert_array_equal(loaded.predict(samples)[0], m.predict(samples)[0])

    class Swapped(Ordered):
        observation_space = S.Dict([(k, Ordered.observation_space[k]) for k in ("a", "z", "frame", "mode")])

    assert Swapped.observation_space == Ordered.observation_space  # to Gymnasium, the same space
    with pytest.raises(EnvError, match="another order"):
        lucidrl.load(tmp_path / "m", env=Swapped)


def test_the_cli_trains_on_a_dict_image_env_a_module_registers(tmp_path, monkeypatch):
    """--env module:EnvId imports the module that registers the env (gym.spec, which check_env_id called, does not
    import it: the id was unknown), and the model reads the image entry with its CNN."""
    from lucidrl.cli import main
    from lucidrl.networks import StructuredEncoder

    (tmp_path / "lamps_env_for_cli.py").write_text(
        "import gymnasium\n"
        "from tests.contracts.test_structured_obs import Lamps\n"
        "gymnasium.register('LampsCli-v0', entry_point=Lamps)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    args = ["--timesteps", "32", "--run-dir", str(run), "--n-envs", "1", "--n-steps", "16", "--batch-size", "16"]
    assert main(["train", "ppo", "--env", "lamps_env_for_cli:LampsCli-v0", *args]) == 0
    model = lucidrl.load(run / "model", env="lamps_env_for_cli:LampsCli-v0")
    assert isinstance(model.agent.encoder, StructuredEncoder)
    with pytest.raises(EnvError, match="names the module 'no_such_module_here'"):
        lucidrl.PPO("MultiInputPolicy", "no_such_module_here:LampsCli-v0", verbose=0, preset=False)


def test_a_replay_memory_keeps_the_image_entries_pixels_as_uint8_and_gives_back_the_same_rows(tmp_path):
    """A Dict with images: the pixel columns are stored as uint8 (SB3's DictReplayBuffer: 4x less than the float32
    rows), the other columns as they are; sampled rows equal the rows stored, around the ring and after a save and
    load of the memory; the memory guard counts 1 byte a pixel."""
    import torch

    from lucidrl.envs.structured import flat_space
    from lucidrl.replay import PackedRows, ReplayBuffer

    space = S.Dict(
        {
            "a_pos": S.Box(-1.0, 1.0, (2,), np.float32),
            "b_frame": S.Box(0, 255, (1, 36, 36), np.uint8),
            "c_mode": S.Discrete(3),
            "d_map": S.Box(0, 255, (36, 36, 2), np.uint8),
            "e_pos": S.Box(-1.0, 1.0, (1,), np.float32),
        }
    )
    flat = flat_space(space)
    width, pixels = flat.shape[0], 36 * 36 * 3
    assert ReplayBuffer.nbytes_for(10, flat, S.Discrete(4)) == 10 * (2 * (pixels + 4 * (width - pixels)) + 8 + 8)
    buffer = ReplayBuffer(10, flat, S.Discrete(4), generator=torch.Generator().manual_seed(0))
    assert isinstance(buffer.obs, PackedRows) and buffer.obs.pixels.dtype == torch.uint8
    assert buffer.obs.pixels.shape == (10, pixels) and buffer.obs.values.shape == (10, width - pixels)
    space.seed(0)
    rows = torch.from_numpy(np.stack([flatten_observation(space, space.sample()) for _ in range(14)]))
    for k in range(0, 14, 7):  # 14 rows through a ring of 10: the second batch wraps around
        sl = slice(k, k + 7)
        buffer.add(rows[sl], torch.arange(7) % 4, torch.ones(7), rows[sl].flip(0), torch.zeros(7))
    in_ring = lambda x: torch.cat([x[10:], x[4:10]])  # noqa: E731  rows 10-13 in slots 0-3, rows 4-9 in slots 4-9
    ring, ring_next = in_ring(rows), in_ring(torch.cat([rows[:7].flip(0), rows[7:].flip(0)]))
    assert torch.equal(buffer.obs[:10], ring)
    idx = torch.tensor([[3, 0], [9, 5]])
    batch = buffer.get(idx)
    assert batch["obs"].dtype == torch.float32 and batch["obs"].shape == (2, 2, width)
    assert torch.equal(batch["obs"], ring[idx])
    assert torch.equal(batch["next_obs"], ring_next[idx])
    from lucidrl.checkpoint import read_tensors_file, save_tensors_file

    save_tensors_file(tmp_path / "replay.safetensors", buffer.state_tensors())
    saved = read_tensors_file(tmp_path / "replay.safetensors")
    assert saved["obs.pixels"].dtype == torch.uint8 and "obs" not in saved
    back = ReplayBuffer.from_state(saved, 10, flat, S.Discrete(4))
    assert torch.equal(back.obs[:10], ring) and torch.equal(back.next_obs[:10], buffer.next_obs[:10])
    # flat float rows (a memory saved before it was packed) load too; pixel values uint8 cannot hold do not
    old = {k: v for k, v in saved.items() if not k.startswith(("obs.", "next_obs."))}
    old |= {"obs": ring.clone(), "next_obs": buffer.next_obs[:10]}
    assert torch.equal(ReplayBuffer.from_state(old, 10, flat, S.Discrete(4)).obs[:10], ring)
    old["obs"][0, 2] = 0.5  # the first pixel of b_frame
    with pytest.raises(ValueError, match="not whole numbers 0-255"):
        ReplayBuffer.from_state(old, 10, flat, S.Discrete(4))
    with pytest.raises(ConfigError, match="pixels at 1 byte each"):
        ReplayBuffer(10**12, flat, S.Discrete(4))


def test_dqn_on_a_dict_with_an_image_stores_uint8_pixels_and_saves_and_resumes_its_memory(tmp_path):
    import torch

    model = lucidrl.DQN("MultiInputPolicy", Lamps, seed=0, verbose=0, preset=False, save_replay_buffer=True,
                        **SMALL["DQN"])  # fmt: skip
    model.learn(200)
    n = len(model.replay)  # whole rounds of train_freq calls: 208
    assert model.replay.obs.pixels.dtype == torch.uint8 and n >= 200
    model.save(tmp_path / "m")
    back = lucidrl.load(tmp_path / "m", env=Lamps)
    assert torch.equal(back.replay.obs[:n], model.replay.obs[:n])
    assert torch.equal(back.replay.next_obs.pixels[:n], model.replay.next_obs.pixels[:n])
    back.learn(100, reset_num_timesteps=False)
    assert len(back.replay) > n


def test_predict_does_not_rebuild_the_flat_space_for_each_observation(monkeypatch):
    """flatten_observation took the rows' dtype from flat_space(space), whose bounds for an 84x84x4 image entry
    cost ~0.8 ms a call: 30x the flattening itself, in every predict and evaluation step."""
    import lucidrl.envs.structured as structured

    m = lucidrl.PPO("MultiInputPolicy", Lamps, seed=0, verbose=0, preset=False, n_envs=1, n_steps=16, batch_size=16)

    def rebuilt(space):
        raise AssertionError("flat_space rebuilt in predict")

    monkeypatch.setattr(structured, "flat_space", rebuilt)
    assert np.shape(m.predict(every_lamp(), deterministic=True)[0]) == (4,)
    assert flatten_observation(Lamps.observation_space, every_lamp()).dtype == np.float32


def test_the_bounds_of_a_long_flat_row_are_saved_as_runs(tmp_path):
    """The flat row of a Dict with an 84x84x3 image has 21,171 bounds of 2 values: config.json stores the runs
    (before: every value, 0.5 MB), they read back to the same space, and runs that do not fill it are refused."""
    import json

    from lucidrl.envs import space_from_json, space_to_json
    from lucidrl.envs.structured import flat_space
    from lucidrl.errors import CheckpointError

    big = flat_space(S.Dict({"cam": S.Box(0, 255, (84, 84, 3), np.uint8), "v": S.Box(-1.0, 1.0, (3,), np.float32)}))
    described = space_to_json(big)
    assert described["low"] == {"runs": [[0.0, 84 * 84 * 3], [-1.0, 3]]} and len(json.dumps(described)) < 200
    assert space_from_json(described) == big
    few = S.Box(
        np.arange(10.0), np.arange(10.0) + 1, dtype=np.float64
    )  # short, or of many runs: every value, as before
    assert space_to_json(few)["low"] == list(np.arange(10.0)) and space_from_json(space_to_json(few)) == few

    lucidrl.PPO("MultiInputPolicy", Lamps, verbose=0, preset=False, n_envs=1, n_steps=16, batch_size=16).save(
        tmp_path / "m"
    )
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    assert path.stat().st_size < 20_000
    config["observation_space"]["high"]["runs"][0][1] += 1  # (255 for the pixels, then 1 for the one-hot)
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fill the shape"):
        lucidrl.load(tmp_path / "m")
