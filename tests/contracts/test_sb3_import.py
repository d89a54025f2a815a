"""Importing trained Stable-Baselines3 / sb3-contrib models (issue 17, item 5): ``lucidrl.from_sb3`` and
``lucidrl import-sb3`` convert an SB3 zip without unpickling anything, and the converted model acts as the SB3
model does: the same deterministic actions, the same logits / means and values (Q-values for DQN)."""

import base64
import io
import json
import pickle
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch

import lucidrl
from lucidrl.cli import main
from lucidrl.errors import CheckpointError

sb3 = pytest.importorskip("stable_baselines3")
sb3_contrib = pytest.importorskip("sb3_contrib")

# SB3 models trained for a few hundred steps (the weights have moved from their initialisation)
TRAIN = {
    "ppo": (sb3.PPO, "CartPole-v1", dict(n_steps=128, batch_size=64, n_epochs=2), 256),
    "a2c": (sb3.A2C, "CartPole-v1", dict(n_steps=8), 200),
    "dqn": (
        sb3.DQN,
        "CartPole-v1",
        dict(learning_starts=64, train_freq=4, buffer_size=1000, target_update_interval=100),
        300,
    ),
    "trpo": (
        sb3_contrib.TRPO,
        "CartPole-v1",
        dict(n_steps=128, batch_size=128, n_critic_updates=2, cg_max_steps=5),
        256,
    ),
    "ppo_box": (
        sb3.PPO,
        "Pendulum-v1",
        dict(
            n_steps=128, batch_size=64, n_epochs=2, policy_kwargs=dict(net_arch=[32, 32], activation_fn=torch.nn.ReLU)
        ),
        128,
    ),
}


@pytest.fixture(scope="module")
def sb3_zips(tmp_path_factory):
    d = tmp_path_factory.mktemp("sb3")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is the fastest
    out = {}
    try:
        for name, (cls, env_id, kwargs, steps) in TRAIN.items():
            model = cls("MlpPolicy", env_id, seed=0, **kwargs).learn(steps)
            model.save(d / name)  # SB3 appends .zip
            out[name] = (model, d / f"{name}.zip")
    finally:
        torch.set_num_threads(threads)
    return out


def observations(env_id, n=100):
    """States the policy meets (a random walk), spread wider with noise so that decisions differ."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    rows = []
    for _ in range(n):
        rows.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    rng = np.random.default_rng(0)
    return (np.stack(rows) + rng.normal(scale=0.3, size=(n, *obs.shape))).astype(np.float32)


def test_a_file_object_converts_as_its_path_does_and_sb3s_save_then_load_habit_works(sb3_zips, tmp_path):
    """from_sb3 takes what SB3's load takes: a path or a binary file object (read from its position; one left at
    its end by model.save(f), as SB3's docs do, is read whole), never unpickling; text streams are refused."""
    sb3_model, path = sb3_zips["ppo"]
    obs = observations("CartPole-v1")
    expected = lucidrl.from_sb3(path, verbose=0).predict(obs, deterministic=True)[0]
    with open(path, "rb") as f:
        opened = lucidrl.from_sb3(f, verbose=0)
    assert f"read {path.name}" in opened.import_report[0]  # named by the file's path
    buffer = io.BytesIO()
    sb3_model.save(buffer)  # SB3's example: save to a buffer, then load from it without a seek
    for model in (opened, lucidrl.from_sb3(buffer, verbose=0), lucidrl.from_sb3(io.BytesIO(path.read_bytes()))):
        assert (model.predict(obs, deterministic=True)[0] == expected).all()
    with pytest.raises(CheckpointError, match="text stream"):
        lucidrl.from_sb3(io.StringIO("not a zip"))
    with pytest.raises(CheckpointError, match="<file object>' is not a readable zip"):
        lucidrl.from_sb3(io.BytesIO(b"not a zip"))
    buffer.seek(0)
    with pytest.raises(CheckpointError, match=r"lucidrl\.from_sb3\(f\)"):  # lucidrl.load names the way
        lucidrl.load(buffer)


@pytest.mark.parametrize("name", ["ppo", "a2c", "dqn", "trpo", "ppo_box"])
def test_a_converted_model_predicts_as_sb3_does(name, sb3_zips):
    sb3_model, path = sb3_zips[name]
    env_id = TRAIN[name][1]
    model = lucidrl.from_sb3(path, verbose=0)
    assert model.name == name.split("_")[0]
    obs = observations(env_id)
    ours, theirs = model.predict(obs, deterministic=True)[0], sb3_model.predict(obs, deterministic=True)[0]
    assert ours.shape == theirs.shape
    if name == "ppo_box":
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
        assert model.config.net_arch == [32, 32] and model.config.activation == "relu"  # from policy_kwargs
    else:
        assert (ours == theirs).all()
    t = torch.as_tensor(obs)
    with torch.no_grad():  # the networks themselves, not only the argmax
        if name == "dqn":
            torch.testing.assert_close(model.q_net(t), sb3_model.q_net(t), rtol=0, atol=1e-5)
            torch.testing.assert_close(model.q_net_target(t), sb3_model.q_net_target(t), rtol=0, atol=1e-5)
        else:
            dist = sb3_model.policy.get_distribution(t).distribution
            params = model.agent.policy_params(t)
            if name == "ppo_box":
                torch.testing.assert_close(params[:, :1], dist.mean, rtol=0, atol=1e-5)
                torch.testing.assert_close(params[:, 1:].exp(), dist.stddev, rtol=0, atol=1e-5)
            else:
                torch.testing.assert_close(params.log_softmax(-1), dist.logits, rtol=0, atol=1e-5)
            torch.testing.assert_close(
                model.agent.value(t), sb3_model.policy.predict_values(t).squeeze(-1), rtol=0, atol=1e-5
            )
    carried = {"gamma": sb3_model.gamma, "learning_rate": sb3_model.learning_rate}
    for key, value in carried.items():
        assert getattr(model.config, key) == pytest.approx(value), key
    report = "\n".join(model.import_report)
    assert "optimizer state" in report and "VecNormalize" in report and "nothing unpickled" in report


@pytest.mark.parametrize(
    "space",
    [gym.spaces.MultiDiscrete([3, 4, 2]), gym.spaces.MultiBinary(4)],
    ids=["multidiscrete", "multibinary"],
)
def test_multidiscrete_and_multibinary_models_predict_as_sb3_does(space, tmp_path):
    """SB3's MultiCategorical (one softmax per component over its slice of the logits) and Bernoulli (one logit
    per bit) are lucidrl's MultiCategoricalHead and BernoulliHead; SB3 one-hot encodes MultiDiscrete observations
    component by component as lucidrl's MultiOneHot does."""
    from tests.contracts.test_spaces import CopyEnv, every_point

    sb3_model = sb3.PPO("MlpPolicy", CopyEnv(space), seed=0, n_steps=64, batch_size=32, n_epochs=2).learn(64)
    sb3_model.save(tmp_path / "multi")
    model = lucidrl.from_sb3(tmp_path / "multi.zip", verbose=0)
    assert model.observation_space == space and model.action_space == space
    obs = every_point(space)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], sb3_model.predict(obs, deterministic=True)[0]
    )
    t = torch.as_tensor(obs)
    with torch.no_grad():
        dist = sb3_model.policy.get_distribution(t)
        torch.testing.assert_close(
            model.agent.head.log_prob(model.agent.policy_params(t), dist.mode()),
            dist.log_prob(dist.mode()),
            rtol=0,
            atol=1e-5,
        )
        torch.testing.assert_close(
            model.agent.head.entropy(model.agent.policy_params(t)), dist.entropy(), rtol=0, atol=1e-5
        )


def test_the_import_unpickles_nothing(sb3_zips, monkeypatch):
    """Every way to run a pickle is blocked: pickle's loaders, torch.load without weights_only=True, and the
    base64 decoding that the ':serialized:' entries would need; the import still works."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the SB3 import tried to unpickle something")

    real_load = torch.load

    def weights_only_load(*args, **kwargs):
        if kwargs.get("weights_only") is not True:
            raise AssertionError("torch.load without weights_only=True")
        return real_load(*args, **kwargs)

    for name in ("loads", "load"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(base64, "b64decode", forbidden)
    monkeypatch.setattr(torch, "load", weights_only_load)
    for name in ("ppo", "dqn"):
        assert lucidrl.from_sb3(sb3_zips[name][1], verbose=0).name == name


def test_non_sb3_and_damaged_zips_are_refused(tmp_path, sb3_zips):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(
        CheckpointError, match=r"not a Stable-Baselines3 model, or is a damaged one: the zip lacks data, policy\.pth"
    ):
        lucidrl.from_sb3(other)
    raw = sb3_zips["ppo"][1].read_bytes()
    for cut in (len(raw) // 3, len(raw) - 10):  # the tail of the zip lost: its inner .pth (zips too) may be found
        (tmp_path / "cut.zip").write_bytes(raw[:cut])
        with pytest.raises(
            CheckpointError,
            match=r"cut\.zip' is not a (readable zip file|Stable-Baselines3 model, or is "
            r"a damaged one)",
        ):
            lucidrl.from_sb3(tmp_path / "cut.zip")
    ours = lucidrl.from_sb3(sb3_zips["a2c"][1], verbose=0).save(tmp_path / "ours.zip")
    with pytest.raises(CheckpointError, match="already a lucidrl checkpoint"):
        lucidrl.from_sb3(ours)


def test_spaces_saved_only_as_pickles_need_env(tmp_path, sb3_zips):
    """If the JSON holds a space only in its pickled form, the import asks for env= rather than decode it."""
    src = sb3_zips["ppo"][1]
    stripped = tmp_path / "stripped.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(stripped, "w") as zout:
        for item in zin.namelist():
            blob = zin.read(item)
            if item == "data":
                data = json.loads(blob)
                for key in ("observation_space", "action_space"):
                    data[key] = {k: data[key][k] for k in (":type:", ":serialized:")}
                blob = json.dumps(data).encode()
            zout.writestr(item, blob)
    with pytest.raises(CheckpointError, match="Pass env="):
        lucidrl.from_sb3(stripped, verbose=0)
    model = lucidrl.from_sb3(stripped, env="CartPole-v1", verbose=0)
    assert model.env_id == "CartPole-v1" and model.observation_space == gym.make("CartPole-v1").observation_space
    obs = observations("CartPole-v1")
    assert (model.predict(obs, deterministic=True)[0] == sb3_zips["ppo"][0].predict(obs, deterministic=True)[0]).all()


class Pixels(gym.Env):
    """A 40x40 two-channel uint8 image env (the smallest kind the Nature CNN takes), channels first or last."""

    def __init__(self, channels_last=False):
        self.observation_space = gym.spaces.Box(0, 255, (40, 40, 2) if channels_last else (2, 40, 40), np.uint8)
        self.action_space = gym.spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.mark.parametrize("algo,channels_last", [("ppo", True), ("trpo", False), ("dqn", False)])
def test_cnn_policies_map_layer_for_layer(algo, channels_last, tmp_path):
    cls = {"ppo": sb3.PPO, "trpo": sb3_contrib.TRPO, "dqn": sb3.DQN}[algo]
    kwargs = dict(buffer_size=10) if algo == "dqn" else {}
    sb3_model = cls("CnnPolicy", Pixels(channels_last), seed=0, **kwargs)  # initial weights: the mapping is what counts
    sb3_model.save(tmp_path / "cnn.zip")
    model = lucidrl.from_sb3(tmp_path / "cnn.zip", env=Pixels(channels_last), verbose=0)
    space = sb3_model.observation_space  # channels first (SB3 transposes a channels-last env)
    space.seed(0)
    obs = np.stack([space.sample() for _ in range(20)])
    t = torch.as_tensor(obs)
    ours_in = obs.transpose(0, 2, 3, 1) if channels_last else obs  # lucidrl takes the env's own layout
    assert (model.predict(ours_in, deterministic=True)[0] == sb3_model.predict(obs, deterministic=True)[0]).all()
    with torch.no_grad():
        if algo == "dqn":
            torch.testing.assert_close(model.q_net(t), sb3_model.q_net(t), rtol=0, atol=1e-5)
        else:
            logits = sb3_model.policy.get_distribution(t).distribution.logits
            torch.testing.assert_close(
                model.agent.policy_params(torch.as_tensor(ours_in)).log_softmax(-1), logits, rtol=0, atol=1e-5
            )


def test_cli_import_sb3_writes_a_checkpoint_that_evaluates(tmp_path, sb3_zips, capsys):
    out = tmp_path / "converted.zip"
    assert main(["import-sb3", str(sb3_zips["dqn"][1]), str(out), "--env", "CartPole-v1"]) == 0
    printed = capsys.readouterr().out
    assert "not carried over: optimizer state" in printed and "replay buffer" in printed and str(out) in printed
    model = lucidrl.load(out)
    obs = observations("CartPole-v1")
    assert model.env_id == "CartPole-v1"
    assert (model.predict(obs, deterministic=True)[0] == sb3_zips["dqn"][0].predict(obs, deterministic=True)[0]).all()
    assert main(["eval", str(out), "--episodes", "1"]) == 0
    assert main(["import-sb3", str(tmp_path / "missing.zip"), str(tmp_path / "x")]) == 2


class Camera(gym.Env):
    """A Dict of two images (channels last, which SB3 transposes), a vector and an index."""

    observation_space = gym.spaces.Dict(
        {
            "cam": gym.spaces.Box(0, 255, (36, 36, 3), np.uint8),
            "depth": gym.spaces.Box(0, 255, (36, 40, 1), np.uint8),
            "mode": gym.spaces.Discrete(3),
            "pos": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        }
    )

    def __init__(self, action_space=None):
        self.action_space = action_space or gym.spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.mark.parametrize("algo", ["ppo", "trpo", "dqn"])
def test_multiinputpolicy_models_with_images_map_entry_for_entry(algo, tmp_path):
    """SB3's CombinedExtractor (a NatureCNN of 256 features per image key, the other entries flattened, in key
    order) is lucidrl's StructuredEncoder: the converted model acts and values as the SB3 one. SB3 prints a Dict
    space only as text, so the import takes it from env= and asks for it without."""
    cls = {"ppo": sb3.PPO, "trpo": sb3_contrib.TRPO, "dqn": sb3.DQN}[algo]
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if algo == "trpo" else None
    kwargs = dict(buffer_size=10) if algo == "dqn" else {}
    sb3_model = cls("MultiInputPolicy", Camera(action_space), seed=0, **kwargs)
    sb3_model.save(tmp_path / "dict.zip")
    with pytest.raises(CheckpointError, match="Dict.*pass env="):
        lucidrl.from_sb3(tmp_path / "dict.zip", verbose=0)
    model = lucidrl.from_sb3(tmp_path / "dict.zip", env=Camera(action_space), verbose=0)
    assert model.structured_observation_space == Camera.observation_space
    space = Camera.observation_space
    space.seed(0)
    samples = [space.sample() for _ in range(12)]
    batch = {key: np.stack([np.asarray(s[key]) for s in samples]) for key in space.spaces}
    # SB3 moved the images' channels first (VecTransposeImage); lucidrl takes the env's own layout
    theirs = dict(batch, cam=batch["cam"].transpose(0, 3, 1, 2), depth=batch["depth"].transpose(0, 3, 1, 2))
    np.testing.assert_allclose(
        model.predict(batch, deterministic=True)[0], sb3_model.predict(theirs, deterministic=True)[0], atol=1e-5
    )
    rows = torch.as_tensor(lucidrl.envs.structured.flatten_observation(space, batch))
    obs_t = {k: torch.as_tensor(v) for k, v in theirs.items()}
    with torch.no_grad():
        if algo == "dqn":
            torch.testing.assert_close(model.q_net(rows), sb3_model.q_net(obs_t), rtol=0, atol=1e-5)
        else:
            torch.testing.assert_close(
                model.agent.value(rows), sb3_model.policy.predict_values(obs_t).squeeze(-1), rtol=0, atol=1e-5
            )


def test_a_multiinputpolicy_model_refuses_an_env_whose_dict_has_other_keys(tmp_path):
    """The entries are concatenated in key order: an env whose Dict renames an entry, with the same sizes, would
    read its columns into the wrong weights without any shape error; SB3's JSON prints the keys, which are checked
    (and a Tuple or a Box env is named instead of an AssertionError or a missing-weights error)."""
    sb3.PPO("MultiInputPolicy", Camera(), seed=0, n_steps=16, batch_size=16).save(tmp_path / "dict.zip")

    class Renamed(Camera):  # "mode" is now "zmode": the one-hot moves after "pos"
        observation_space = gym.spaces.Dict(
            {("zmode" if k == "mode" else k): v for k, v in Camera.observation_space.spaces.items()}
        )

    class Tupled(Camera):
        observation_space = gym.spaces.Tuple(list(Camera.observation_space.spaces.values()))

    class Boxed(Camera):
        observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    for env in (Renamed(), Tupled(), Boxed()):
        with pytest.raises(lucidrl.ConfigError, match="the SB3 model was trained on a Dict"):
            lucidrl.from_sb3(tmp_path / "dict.zip", env=env, verbose=0)
