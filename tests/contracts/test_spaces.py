"""Spaces at the env boundary: Discrete spaces that do not start at 0, and the spaces no algorithm takes.

The networks and Q-tables index Discrete observations and actions from 0; ``rollout.VectorStepper``
(training) and ``Algorithm.predict`` (predict, evaluate, play) shift them by the spaces' starts
(``lucidrl.envs.DiscreteOffsets``). The model keeps, and saves, the env's own spaces. Every space an
algorithm cannot take is an EnvError that names the space and the fix, before anything runs.
"""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces as S
from gymnasium.vector import AutoresetMode

import lucidrl
from lucidrl import EnvError
from lucidrl.envs import DiscreteOffsets, space_from_json, space_to_json
from lucidrl.rollout import VectorStepper

OBS = S.Discrete(4, start=5)
ACT = S.Discrete(3, start=1)

# a few hundred steps each, small networks: the whole file runs in seconds
SMALL = {
    "PPO": dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=2, net_arch=[16]),
    "A2C": dict(n_envs=2, n_steps=8, net_arch=[16]),
    "TRPO": dict(n_envs=2, n_steps=32, batch_size=64, n_critic_updates=2, net_arch=[16]),
    "VPG": dict(n_envs=2, n_steps=32, n_critic_updates=2, net_arch=[16]),
    "DQN": dict(
        learning_starts=50,
        train_freq=16,
        gradient_steps=4,
        batch_size=16,
        buffer_size=500,
        target_update_interval=32,
        net_arch=[16],
    ),
    "QLearning": dict(learning_rate=0.5),
}
ALGOS = list(SMALL)
POLICY_GRADIENT = ["PPO", "A2C", "TRPO", "VPG"]


class ShiftedEnv(gym.Env):
    """4 states, episodes of ``horizon`` steps. The env checks every action it receives and every observation it
    returns against its spaces. ``contextual``: reward 1 for the action ``start + s % n`` in state s; else for 2."""

    def __init__(self, observation_space=OBS, action_space=ACT, horizon=4, contextual=False):
        self.observation_space, self.action_space = observation_space, action_space
        self.horizon, self.contextual = horizon, contextual
        self.received: list = []

    def _obs(self):
        space = self.observation_space
        if isinstance(space, S.Discrete):
            obs = int(space.start) + self.s
        else:  # a Box: the state one-hot
            obs = np.eye(4, dtype=np.float32)[self.s]
        assert obs in space, f"the env's own observation {obs!r} is not in {space!r}"
        return obs

    def rewarded(self):
        if isinstance(self.action_space, S.Box):
            return None
        n, start = int(self.action_space.n), int(self.action_space.start)
        return start + self.s % n if self.contextual else 2

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.s = 0, int(self.np_random.integers(4))
        return self._obs(), {}

    def step(self, action):
        assert action in self.action_space, f"the env got action {action!r}, not in {self.action_space!r}"
        self.received.append(action)
        target = self.rewarded()
        reward = float(action == target) if target is not None else -float(np.abs(action).sum())
        self.t += 1
        self.s = int(self.np_random.integers(4))
        return self._obs(), reward, self.t >= self.horizon, False, {}


def make(algo, env, **kw):
    return getattr(lucidrl, algo)(env, seed=0, verbose=0, preset=False, **{**SMALL[algo], **kw})


def all_obs(space, batch=False):
    """Every observation of the 4-state env under ``space`` (a batch [4, ...] or a list of single ones)."""
    if isinstance(space, S.Discrete):
        obs = np.arange(space.n) + space.start
    else:
        obs = np.eye(4, dtype=np.float32)
    return obs if batch else list(obs)


# --------------------------------------------------------------------------- offsets
def test_offsets_shift_only_discrete_spaces_with_a_start():
    off = DiscreteOffsets(OBS, ACT)
    assert (off.obs_start, off.action_start) == (5, 1)
    np.testing.assert_array_equal(off.obs_in(np.array([5, 8])), [0, 3])
    np.testing.assert_array_equal(off.action_out(np.array([0, 2])), [1, 3])
    box = np.zeros(3, np.float32)
    np.testing.assert_array_equal(off.obs_out(off.obs_in(np.array([5, 8]))), [5, 8])  # the inverses
    np.testing.assert_array_equal(off.action_in(off.action_out(np.array([0, 2]))), [0, 2])
    plain = DiscreteOffsets(S.Box(-1, 1, (3,)), S.Discrete(2))
    assert plain.obs_in(box) is box and plain.action_out(box) is box  # untouched, not copied
    assert plain.obs_out(box) is box and plain.action_in(box) is box


@pytest.mark.parametrize(
    "space",
    [
        S.Discrete(3, start=1),
        S.Discrete(4, start=-2),
        S.Discrete(2),
        S.Box(-1.0, 1.0, (2,), np.float32),
        S.MultiDiscrete([3, 4, 2], start=[1, 0, -1]),
        S.MultiDiscrete([2, 2], dtype=np.int32),
        S.MultiBinary(5),
        S.MultiBinary([2, 3]),
    ],
)
def test_spaces_round_trip_through_json_with_their_start(space):
    back = space_from_json(space_to_json(space))
    assert back == space and np.array_equal(getattr(back, "start", 0), getattr(space, "start", 0))
    assert back.dtype == space.dtype


def test_offsets_shift_multidiscrete_spaces_component_by_component():
    space = S.MultiDiscrete([3, 4, 2], start=[1, 0, -1])
    off = DiscreteOffsets(space, space)
    np.testing.assert_array_equal(off.obs_in(np.array([[1, 0, -1], [3, 3, 0]])), [[0, 0, 0], [2, 3, 1]])
    np.testing.assert_array_equal(off.action_out(np.array([[2, 3, 1]])), [[3, 3, 0]])
    plain = DiscreteOffsets(S.MultiDiscrete([3, 4]), S.MultiBinary(2))
    x = np.zeros(2, np.int64)
    assert plain.obs_in(x) is x and plain.action_out(x) is x  # a start of 0 everywhere: untouched


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
def test_the_stepper_is_the_training_boundary_in_both_autoreset_modes(mode):
    venv = gym.vector.SyncVectorEnv([lambda: ShiftedEnv(horizon=2)] * 2, autoreset_mode=mode)
    stepper = VectorStepper(venv, seed=0)
    assert np.isin(stepper.obs, np.arange(4)).all()  # 0-based
    for t in range(6):
        tr = stepper.step(np.array([t % 3, 2]))  # 0-based actions: the envs get 1..3
        for obs in (tr.obs, tr.next_obs(), *tr.final_obs.values()):
            assert np.isin(obs, np.arange(4)).all(), obs
    received = [a for e in venv.envs for a in e.received]
    assert received and set(received) <= {1, 2, 3} and 3 in received


def test_evaluate_policy_over_vector_envs_plays_the_same_episodes_in_both_autoreset_modes():
    """SB3's evaluate_policy over a vector env reads episode ends through the stepper: the same returns and lengths
    whichever autoreset mode the vector env uses, and predict sees (and the envs get) the spaces' own values."""
    m = lucidrl.PPO(lambda: ShiftedEnv(horizon=3, contextual=True), seed=0, verbose=0, **SMALL["PPO"])
    played = {}
    for mode in (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP):
        venv = gym.vector.SyncVectorEnv([lambda: ShiftedEnv(horizon=3, contextual=True)] * 2, autoreset_mode=mode)
        venv.reset(seed=3)  # the stepper's reset continues these envs' random streams
        played[mode] = lucidrl.evaluate_policy(m, venv, n_eval_episodes=5, return_episode_rewards=True)
        received = [a for e in venv.envs for a in e.received]
        assert set(received) <= {1, 2, 3} and len(received) >= 5 * 3
    rewards, lengths = played[AutoresetMode.SAME_STEP]
    assert len(rewards) == 5 and lengths == [3] * 5 and all(0 <= r <= 3 for r in rewards)
    assert played[AutoresetMode.NEXT_STEP] == (rewards, lengths)


# --------------------------------------------------------------------------- every algorithm, start != 0
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("obs_space", [OBS, S.Box(0.0, 1.0, (4,), np.float32)], ids=["discrete_obs", "box_obs"])
def test_shifted_discrete_spaces_train_predict_evaluate_save_and_load(algo, obs_space, tmp_path):
    if algo == "QLearning" and isinstance(obs_space, S.Box):
        kw = {"n_bins": [2]}
    else:
        kw = {}
    m = make(algo, lambda: ShiftedEnv(obs_space), **kw)
    assert m.observation_space == obs_space and m.action_space == ACT  # the user's spaces, start included
    m.learn(256)  # every action sent to the env is checked in ShiftedEnv.step
    received = [a for e in m.env.envs for a in e.received]
    assert len(received) >= 256 // m.env.num_envs and set(received) <= {1, 2, 3}

    batch = all_obs(obs_space, batch=True)
    for deterministic in (True, False):
        actions, _ = m.predict(batch, deterministic=deterministic)
        assert actions.shape == (4,) and all(a in ACT for a in actions), actions
        for obs in all_obs(obs_space):
            action, _ = m.predict(obs, deterministic=deterministic)
            assert np.shape(action) == () and action in ACT, action
    mean, _ = lucidrl.evaluate(m, ShiftedEnv(obs_space), n_episodes=2)  # the env checks evaluate's actions
    assert 0.0 <= mean <= 4.0

    m.save(tmp_path / "ckpt")
    m2 = lucidrl.load(tmp_path / "ckpt")
    assert m2.observation_space == obs_space and m2.action_space == ACT and m2.action_space.start == 1
    if isinstance(obs_space, S.Discrete):
        assert m2.observation_space.start == 5
    np.testing.assert_array_equal(m2.predict(batch, deterministic=True)[0], m.predict(batch, deterministic=True)[0])
    np.testing.assert_array_equal(m2.predict(batch)[0], m.predict(batch)[0])  # the RNG is restored too
    lucidrl.evaluate(m2, ShiftedEnv(obs_space), n_episodes=1)


@pytest.mark.parametrize("algo", POLICY_GRADIENT)
def test_a_negative_start_observation_space_with_box_actions(algo):
    obs_space, act_space = S.Discrete(4, start=-2), S.Box(-1.0, 1.0, (2,), np.float32)
    m = make(algo, lambda: ShiftedEnv(obs_space, act_space))
    m.learn(128)
    actions, _ = m.predict(np.arange(-2, 2))
    assert actions.shape == (4, 2) and all(a in act_space for a in actions)
    lucidrl.evaluate(m, ShiftedEnv(obs_space, act_space), n_episodes=1)


@pytest.mark.parametrize("algo", ["PPO", "DQN", "QLearning"])
def test_an_observation_outside_the_space_is_an_env_error(algo):
    m = make(algo, lambda: ShiftedEnv())
    for bad in (0, 9, np.array([5, 4])):
        with pytest.raises(EnvError, match=r"outside the model's observation space Discrete\(4, start=5\)"):
            m.predict(bad)


# --------------------------------------------------------------------------- learning, on a budget
@pytest.mark.parametrize(
    "algo, budget, kw",
    [
        ("QLearning", 400, dict(learning_rate=0.5, exploration_fraction=0.5)),
        ("PPO", 1024, dict(n_envs=4, n_steps=32, batch_size=64, n_epochs=4, learning_rate=3e-3, net_arch=[32])),
    ],
)
def test_the_rewarded_action_of_a_contextual_bandit_is_learned(algo, budget, kw):
    """One-step episodes, 4 states 5..8, actions 1..3: action 1 + (s - 5) % 3 pays 1 (seed 0, ``budget`` steps)."""
    m = make(algo, lambda: ShiftedEnv(horizon=1, contextual=True), **kw)
    m.learn(budget)
    actions, _ = m.predict(np.arange(5, 9), deterministic=True)
    np.testing.assert_array_equal(actions, [1, 2, 3, 1])
    assert lucidrl.evaluate(m, ShiftedEnv(horizon=1, contextual=True), n_episodes=8)[0] == 1.0


# --------------------------------------------------------------------------- unsupported spaces
BOX = S.Box(-1.0, 1.0, (3,), np.float32)
NEURAL = [algo for algo in ALGOS if algo != "QLearning"]
BAD_OBS = [
    S.Dict({"a": BOX, "frame": S.Box(0, 255, (3, 8, 8), np.uint8)}),  # an image entry smaller than the CNN takes
    S.Tuple([BOX, S.Text(5)]),
    S.Text(5),
    S.Graph(BOX, None),
    S.Sequence(BOX),
    S.MultiDiscrete([[2, 3], [2, 2]]),  # the networks take 1-D MultiDiscrete observations
]
BAD_ACT = [
    S.Dict({"a": S.Discrete(2)}),
    S.Tuple([S.Discrete(2)]),
    S.Text(5),
    S.MultiDiscrete([[2, 3], [2, 2]]),  # the policy-gradient algorithms take 1-D MultiDiscrete and MultiBinary
    S.MultiBinary([2, 2]),
]
CASES = (
    [(algo, "observation", space) for algo in ALGOS for space in BAD_OBS]
    + [(algo, "observation", S.Box(0.0, 1.0, (2, 2, 2, 2))) for algo in NEURAL]
    + [
        ("QLearning", "observation", space)
        for space in (
            S.MultiBinary(4),
            S.MultiDiscrete([2, 3], start=[1, 1]),
            S.Dict({"a": BOX}),
            S.Tuple([BOX, S.Discrete(2)]),
        )
    ]
    + [(algo, "action", space) for algo in ALGOS for space in BAD_ACT]
    + [
        (algo, "action", space)
        for algo in ("DQN", "QLearning")
        for space in (S.Box(-1.0, 1.0, (2,), np.float32), S.MultiDiscrete([2, 3], start=[1, 1]), S.MultiBinary(3))
    ]
    + [
        (algo, "action", space)
        for algo in POLICY_GRADIENT
        for space in (S.Box(-1.0, 1.0, (2, 2), np.float32), S.Box(0, 5, (2,), np.int64))
    ]
)


def env_with(obs_space, act_space):
    class Env(gym.Env):
        observation_space, action_space = obs_space, act_space

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.observation_space.seed(0)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    return Env


@pytest.mark.parametrize("algo, role, space", CASES, ids=[f"{a}-{r}-{type(s).__name__}" for a, r, s in CASES])
def test_unsupported_spaces_are_env_errors_that_name_the_space_and_the_fix(algo, role, space):
    obs_space, act_space = (space, S.Discrete(2)) if role == "observation" else (BOX, space)
    with pytest.raises(EnvError) as e:
        getattr(lucidrl, algo)(env_with(obs_space, act_space), seed=0, verbose=0, preset=False)
    message = str(e.value)
    assert repr(space) in message, message
    assert f"{role} space" in message and "gymnasium." in message, message  # what is taken, and a wrapper that fixes it


# --------------------------------------------------------------------------- MultiDiscrete and MultiBinary
MULTI = S.MultiDiscrete([3, 4, 2], start=[1, 0, -1])  # components 1..3, 0..3, -1..0
BITS = S.MultiBinary(4)


class CopyEnv(gym.Env):
    """Observe a random point of ``space``; the action is a point of the same space, and the reward is the
    fraction of its components that copy the observation. Checks every action it gets against its space."""

    def __init__(self, space, horizon=1):
        self.observation_space = self.action_space = space
        self.horizon = horizon
        self.received: list = []

    def _draw(self):
        space = self.observation_space
        if isinstance(space, S.MultiDiscrete):
            return (space.start + self.np_random.integers(0, space.nvec)).astype(space.dtype)
        return self.np_random.integers(0, 2, space.shape).astype(space.dtype)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.obs = 0, self._draw()
        return self.obs, {}

    def step(self, action):
        assert action in self.action_space, f"the env got action {action!r}, not in {self.action_space!r}"
        self.received.append(np.array(action))
        reward = float(np.mean(np.asarray(action) == self.obs))
        self.t += 1
        self.obs = self._draw()
        return self.obs, reward, False, self.t >= self.horizon, {}


def every_point(space):
    """All points of a small MultiDiscrete or MultiBinary space, as a batch."""
    nvec = space.nvec if isinstance(space, S.MultiDiscrete) else np.full(space.shape, 2)
    start = space.start if isinstance(space, S.MultiDiscrete) else 0
    return np.stack(np.meshgrid(*[np.arange(n) for n in nvec], indexing="ij"), -1).reshape(-1, len(nvec)) + start


@pytest.mark.parametrize("algo", POLICY_GRADIENT)
@pytest.mark.parametrize("space", [MULTI, BITS], ids=["multidiscrete", "multibinary"])
def test_multidiscrete_and_multibinary_spaces_train_predict_evaluate_save_and_load(algo, space, tmp_path):
    m = make(algo, lambda: CopyEnv(space, horizon=3))
    assert m.observation_space == space and m.action_space == space
    m.learn(256)  # every action sent to the env is checked in CopyEnv.step
    assert sum(len(e.received) for e in m.env.envs) >= 256

    batch = every_point(space)
    for deterministic in (True, False):
        actions, _ = m.predict(batch, deterministic=deterministic)
        assert actions.shape == batch.shape and all(a in space for a in actions), actions
        action, _ = m.predict(batch[0], deterministic=deterministic)
        assert action.shape == space.shape and action in space, action
    mean, _ = lucidrl.evaluate(m, CopyEnv(space, horizon=3), n_episodes=2)  # the env checks evaluate's actions
    assert 0.0 <= mean <= 3.0

    m.save(tmp_path / "ckpt")
    m2 = lucidrl.load(tmp_path / "ckpt")
    assert m2.observation_space == space and m2.action_space == space
    np.testing.assert_array_equal(m2.predict(batch, deterministic=True)[0], m.predict(batch, deterministic=True)[0])
    np.testing.assert_array_equal(m2.predict(batch)[0], m.predict(batch)[0])  # the RNG is restored too


@pytest.mark.parametrize("space", [MULTI, BITS], ids=["multidiscrete", "multibinary"])
def test_dqn_takes_multidiscrete_and_multibinary_observations(space, tmp_path):
    class Pick(CopyEnv):  # Discrete(2) actions: reward 1 for the first component's parity
        def __init__(self):
            super().__init__(space, horizon=3)
            self.action_space = S.Discrete(2)

        def step(self, action):
            assert action in self.action_space, action
            reward = float(action == self.obs[0] % 2)
            self.t += 1
            self.obs = self._draw()
            return self.obs, reward, False, self.t >= self.horizon, {}

    m = make("DQN", Pick)
    m.learn(256)
    actions, _ = m.predict(every_point(space), deterministic=True)
    assert set(actions.tolist()) <= {0, 1}
    m.save(tmp_path / "dqn")
    batch = every_point(space)
    np.testing.assert_array_equal(lucidrl.load(tmp_path / "dqn").predict(batch, deterministic=True)[0], actions)


@pytest.mark.parametrize("space, budget", [(MULTI, 2048), (BITS, 4096)], ids=["multidiscrete", "multibinary"])
def test_ppo_learns_to_copy_a_multidiscrete_or_multibinary_observation(space, budget):
    """One-step episodes: reward = the fraction of components of the action equal to the observation's. After
    ``budget`` steps (seed 0) the deterministic policy copies every point of the space."""
    kw = dict(n_envs=4, n_steps=32, batch_size=64, n_epochs=4, learning_rate=3e-3, net_arch=[32])
    m = make("PPO", lambda: CopyEnv(space), **kw)
    m.learn(budget)
    batch = every_point(space)
    np.testing.assert_array_equal(m.predict(batch, deterministic=True)[0], batch)


def test_a_multidiscrete_observation_outside_the_space_is_an_env_error():
    m = make("PPO", lambda: CopyEnv(MULTI))
    for bad in ([0, 0, 0], [1, 4, 0], [[1, 0, 0], [4, 0, 0]]):
        with pytest.raises(EnvError, match=r"outside the model's observation space MultiDiscrete\(\[3 4 2\]"):
            m.predict(np.array(bad))


@pytest.mark.parametrize("algo", ["PPO", "A2C"])
def test_a_float16_box_gets_float16_actions_in_training_and_predict(algo):
    """Gymnasium's Box.contains refuses a float32 action for a float16 space: the actions leave in its dtype."""
    act_space = S.Box(-1.0, 1.0, (2,), np.float16)
    m = make(algo, lambda: ShiftedEnv(S.Discrete(4), act_space))
    m.learn(64)  # ShiftedEnv.step asserts every action is in the space
    action, _ = m.predict(0)
    assert action.dtype == np.float16 and action in act_space
