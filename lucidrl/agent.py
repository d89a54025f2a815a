"""The ``Algorithm`` base: what every lucidrl model shares and that is not training.

Construction (config from preset + user values, checked before anything else; seeding; the
vector env), ``predict`` (same signature and return as Stable-Baselines3's), ``save`` /
``load`` (safe checkpoints), ``evaluate``, and the bookkeeping of ``learn`` (logger,
progress bar, periodic checkpoints) as plain methods that each algorithm's ``learn`` calls.
The training math lives in ``lucidrl/algos/<name>.py``, never here.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import glob
import math
import os
import random
import time
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, overload

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from lucidrl import backends
from lucidrl.callbacks import Hooks, SB3Logger, StopTraining, check_callback
from lucidrl.checkpoint import (
    OPTIONAL_FILES,
    CheckpointBytes,
    describe,
    is_file_object,
    legacy_optimizer_state,
    load_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    read_file_object,
    read_tensors_file,
    save_checkpoint,
    save_tensors_file,
)
from lucidrl.config import adapt_batch_size, config_from_dict, config_to_dict, resolve_config
from lucidrl.envs import (
    DiscreteOffsets,
    EnvId,
    EnvLike,
    Vectorization,
    env_id_of,
    make_env,
    make_vec_env,
    saved_env_id,
    space_from_json,
    space_to_json,
    with_env_kwargs,
    with_saved_kwargs,
)
from lucidrl.envs.normalize import make_normalizers
from lucidrl.envs.structured import flat_space, flatten_observation, same_layout
from lucidrl.errors import CheckpointError, ConfigError, EnvError, TrainingError
from lucidrl.evaluation import check_env_fits, single_env_episodes
from lucidrl.logging import RECENT_EPISODES, Logger
from lucidrl.replay import ReplayBuffer
from lucidrl.sb3_api import (
    SAVED_UNDER_SB3_NAMES,
    check_policy,
    policy_kwargs_to_config,
    positional_hyperparameters,
    save_selection,
    split_policy_and_env,
)
from lucidrl.threads import hold_matmul_precision, hold_threads, matmul_precision_for, threads_for
from lucidrl.version import __version__

if TYPE_CHECKING:
    from lucidrl.device_rollout import DeviceRolloutCollector
    from lucidrl.distributed.rollout_workers import RayRolloutCollector
    from lucidrl.rollout import RolloutCollector, VectorStepper

ALGORITHMS: dict[str, type[Algorithm]] = {}
# models outside the Gymnasium-based Algorithm (GRPO's language-model policy) register their ``load`` here,
# so that ``lucidrl.load`` reads every lucidrl checkpoint
OTHER_LOADERS: dict[str, Any] = {}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device {device!r} is not a torch device; use 'cpu', 'cuda', 'cuda:0' or 'auto'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but torch sees no CUDA GPU; use device='cpu'")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (the envs are seeded separately, by ``make_vec_env``)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Algorithm:
    """Base of every lucidrl model. Subclasses set ``name``, ``config_class`` and build their networks."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    state_attributes: ClassVar[tuple[str, ...]] = ()  # scalar attributes saved in state.json (e.g. PPO's beta)
    log_columns: ClassVar[tuple[str, ...]] = ()  # metrics.csv columns of metrics the first rows may lack
    sb3_callbacks: ClassVar[bool] = True  # takes lucidrl.callbacks.BaseCallback (SB3's hook order)
    _stepper: VectorStepper | None  # the algorithms that step envs themselves (DQN, Q-learning): made by learn
    _collector: RolloutCollector | DeviceRolloutCollector | RayRolloutCollector | None = None  # the on-policy ones
    replay: ReplayBuffer | None  # DQN's replay memory (saved with a checkpoint where the config asks)
    import_report: list[str]  # models made by lucidrl.from_sb3: what was carried over and what was not

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Registers each algorithm by its ``name`` (for ``load``). Its constructor takes SB3's positional
        hyperparameters after ``(policy, env)`` by their names, and once it returns records the config the model
        was built from (``_config_seen``): from then on ``model.<hyperparameter> = value`` writes to ``config``
        (``__setattr__``)."""
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            ALGORITHMS[cls.name] = cls
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def built(self, *args: Any, **kw: Any) -> None:
            if len(args) > 2:  # SB3's PPO("MlpPolicy", env, 3e-4, 2048, ...): the values by SB3's names
                policy_name, _ = split_policy_and_env(args[0], args[1])
                kw = {**positional_hyperparameters(self.name, policy_name, args[2:], kw), **kw}
                args = args[:2]
            init(self, *args, **kw)
            object.__setattr__(self, "_config_seen", _config_values(self.config))

        cls.__init__ = built  # type: ignore[method-assign]

    def __init__(
        self,
        policy: Any = None,
        env: EnvLike | None = None,
        *,
        preset: bool | str = True,
        run_dir: str | os.PathLike | None = None,
        verbose: int = 1,
        tensorboard: bool = True,
        vectorization: Vectorization = "auto",
        policy_kwargs: dict[str, Any] | None = None,
        tensorboard_log: str | os.PathLike | None = None,
        env_kwargs: dict[str, Any] | None = None,
        _spaces: tuple[gym.Space, gym.Space] | tuple[gym.Space, gym.Space, gym.Space | None] | None = None,
        **hyperparams: Any,
    ):
        """``ALGO(env, ...)``, or as Stable-Baselines3 ``ALGO("MlpPolicy", env, ...)`` (docs/sb3.md).

        Args:
            policy: ``"MlpPolicy"``, ``"CnnPolicy"`` (images) or, lucidrl's own form, the env itself.
            env: an env id (``"CartPole-v1"``), a ``gymnasium.Env``, a callable returning one, or a
                ``gymnasium.vector.VectorEnv``. A single ``gymnasium.Env`` where the config asks for
                ``n_envs`` > 1 copies: the other copies are made from its spec (the log says so).
            preset: ``True`` starts from the tuned preset for this env id when there is one;
                ``False`` uses the plain defaults; a string names a preset.
            run_dir: where ``learn`` writes ``metrics.csv``, TensorBoard events, checkpoints and the
                final model. ``None``: nothing is written.
            verbose: 0 silent, 1 progress bar and summaries, 2 every metric at every update.
            vectorization: ``"auto"``, ``"native"``, ``"sync"`` or ``"async"`` (see ``make_vec_env``).
            policy_kwargs: SB3's keys (net_arch, activation_fn, ortho_init, log_std_init,
                share_features_extractor), mapped onto the config's fields.
            tensorboard_log: SB3's: each ``learn`` writes its run directory (metrics.csv, TensorBoard events,
                the final model) to ``tensorboard_log/{tb_log_name}_{i}``, as SB3 names its runs.
            env_kwargs: the env's constructor arguments, with an env id (``gymnasium.make(id, **env_kwargs)``,
                e.g. ``{"is_slippery": False}``; ``max_episode_steps`` too). They are saved with the model and
                used wherever it builds the env again (evaluation, a loaded model, rollout workers); an env
                instance made with such arguments has them read from its spec (``lucidrl.envs.EnvId``).
            **hyperparams: fields of the algorithm's config dataclass, applied on top of the preset. After a
                policy name, SB3's hyperparameters are also taken by position, in SB3's order
                (``PPO("MlpPolicy", env, 3e-4, 2048)`` is ``learning_rate=3e-4, n_steps=2048``; ``SB3_POSITIONAL``).
        """
        _check_model_options(run_dir, verbose, tensorboard)
        self.policy_name, env = split_policy_and_env(policy, env)
        mapped = policy_kwargs_to_config(
            self.name, {f.name for f in dataclasses.fields(self.config_class)}, policy_kwargs, hyperparams
        )
        share_features = mapped.pop("share_features_extractor", None)
        hyperparams = {**hyperparams, **mapped}
        if tensorboard_log is not None and run_dir is not None:
            raise ConfigError(
                "pass run_dir or tensorboard_log, not both (tensorboard_log=DIR gives each learn() call "
                "its own run directory DIR/{tb_log_name}_{i})"
            )
        if tensorboard_log is not None and not isinstance(tensorboard_log, (str, os.PathLike)):
            raise ConfigError(f"tensorboard_log must be a directory path or None, got {tensorboard_log!r}")
        self.tensorboard_log = tensorboard_log
        if env_kwargs is not None:
            if not isinstance(env, str):
                raise ConfigError(
                    "env_kwargs are the constructor arguments of an env id (gymnasium.make(id, **env_kwargs)); "
                    f"the env given is {type(env).__name__}: build it with those arguments yourself, or pass its id"
                )
            env = with_env_kwargs(env, env_kwargs)
        self.env_id = env_id_of(env) if env is not None else None
        preset_notes: list[str] = []  # what the preset does not honour, settings adapted to the user's (logged)
        self.config, self.preset_name, self.preset_source = resolve_config(
            self.name, self.config_class, self.env_id, preset, hyperparams, notes=preset_notes
        )
        why_one = _why_one_copy(env)
        if why_one is not None and self.config.n_envs > 1 and "n_envs" not in hyperparams:
            preset_notes[:] = [
                f"{self.name}: the env you passed {why_one}: n_envs {self.config.n_envs} -> 1 (your env)"
            ]
            self.config, self.preset_name, self.preset_source = resolve_config(
                self.name, self.config_class, self.env_id, preset, {**hyperparams, "n_envs": 1}, notes=preset_notes
            )
        if self.config.seed is None:
            self.config.seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**31)
        self.verbose = verbose
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.tensorboard = tensorboard
        self.vectorization = vectorization
        self.device = resolve_device(self.config.device)
        if getattr(self.config, "compile", False) and self.name not in ("ppo", "a2c"):
            raise ConfigError(
                f"compile=True is implemented for PPO and A2C (lucidrl.fast.compiled), not {self.name}; "
                "leave compile at False"
            )
        self.num_timesteps = 0
        self.n_updates = 0
        self.notes: list[str] = []
        self.backend_lines: list[str] = []  # which backend computes what (``_select_backend``), logged by learn
        self._logger: Logger | None = None  # while learn runs: its position goes into each checkpoint
        self._last_logger: Logger | None = None  # the last learn's, for ep_info_buffer after it
        self._resume_log: dict | None = None  # the log position of the checkpoint this model was loaded from
        self._tensorboard_runs: set[Path] = set()  # the tensorboard_log run directories this model wrote
        self.checkpoint_freq: int | None = None  # learn's checkpoint_freq of the run (saved: a resume goes on with it)
        self.target_timesteps: int | None = None  # the step count the last learn was to reach (saved, as above)
        if self.preset_name:
            given = ", ".join(f"{k}={v}" for k, v in hyperparams.items()) or "none"
            self.notes.append(
                f"{self.name}: preset {self.preset_name!r} ({self.preset_source}); your overrides: {given}"
            )
        self.notes.extend(preset_notes)
        seed_everything(self.config.seed)
        # the model's own RNG for sampling actions and shuffling minibatches: two models in one
        # process do not disturb each other's random streams
        self.generator = torch.Generator(self.device).manual_seed(self.config.seed)
        self.env: gym.vector.VectorEnv | None = None
        # a Dict/Tuple observation space as the env gives it; the networks see it flattened (lucidrl.envs.structured)
        self.structured_observation_space: gym.Space | None = None
        if _spaces is not None:  # a loaded model's: an env given with it must fit them (set_env checks)
            self.observation_space, self.action_space = _spaces[0], _spaces[1]
            self.structured_observation_space = _spaces[2] if len(_spaces) > 2 else None
            if self.structured_observation_space is not None:  # the flat Box that knows where images lie in a row
                self.observation_space = flat_space(self.structured_observation_space)
        if env is not None:
            self.set_env(env)
        elif _spaces is None:
            raise EnvError("an env is needed: pass an env id such as 'CartPole-v1', a gymnasium.Env or a VectorEnv")
        check_policy(
            self.name,
            self.policy_name,
            self.observation_space,
            share_features,
            self.name in ("ppo", "a2c"),
            structured=self.structured_observation_space,
        )
        self.policy_kwargs = policy_kwargs
        self._hooks: Hooks | None = None  # the callbacks while learn runs (lucidrl.callbacks)
        self._sb3_logger = SB3Logger()
        self._user_logger: Any = None  # set_logger's (SB3's configure(...)): it also gets every row
        # observation / reward normalisation (lucidrl.envs.normalize), when the config asks for it: part of the
        # model, updated by the rollout collector, applied frozen by predict and evaluate
        self.obs_normalizer, self.reward_scaler = make_normalizers(self.config, self.observation_space, self.device)

    # ------------------------------------------------------------------ env
    def set_env(self, env: EnvLike, force_reset: bool = True) -> None:
        """Attach (or replace) the training env; its spaces must match the model's.

        A single ``gymnasium.Env`` where the config asks for ``n_envs`` > 1: it is the first copy and the others
        are made from its spec (``gymnasium.make(env.spec)``), as the log says. ``force_reset`` (SB3's) is
        accepted: lucidrl always resets the envs when training starts on a new env."""
        n_envs = self.config.n_envs
        if isinstance(env, gym.Env) and not isinstance(env, gym.vector.VectorEnv) and n_envs > 1:
            why_one = _why_one_copy(env)
            if why_one is not None:
                raise EnvError(
                    f"the env you passed {why_one}, but n_envs={n_envs} copies were asked for; pass n_envs=1, "
                    "or pass the env id or a callable that builds the whole env (e.g. lambda: MyWrapper(gym.make(...)))"
                )
            assert env.spec is not None  # (_why_one_copy said it has one)
            self.notes.append(
                f"{self.name}: n_envs={n_envs}: your env is copy 1, copies 2-{n_envs} are made "
                f"from its spec (gymnasium.make({env.spec.id!r}, ...)); pass n_envs=1 to train on it alone"
            )
            env = _copies_from_spec(env)
        # 'auto' on a GPU picks the batched torch envs where they apply (lucidrl.envs.torch), Gymnasium's elsewhere
        env_device = self.device if self.vectorization != "auto" or _torch_envs_apply(self) else "cpu"
        venv = make_vec_env(env, n_envs, seed=self.config.seed, vectorization=self.vectorization, device=env_device)
        if getattr(venv, "functional_step", None) is not None:  # lucidrl.envs.torch: tensors on the device
            _check_torch_env(self, venv)
        if venv.num_envs != self.config.n_envs:
            self.notes.append(
                f"n_envs={venv.num_envs} taken from the given VectorEnv (config said {self.config.n_envs})"
            )
            old = _config_values(self.config)
            adapted = adapt_batch_size(type(self.config), old, {"n_envs": venv.num_envs},
                                       {**old, "n_envs": venv.num_envs}, self.notes)  # fmt: skip
            for name in ("n_envs", "batch_size"):  # (a batch_size of the old rollout would not fit the new one)
                if name in adapted and adapted[name] != old[name]:
                    setattr(self.config, name, adapted[name])
                    if "_config_seen" in self.__dict__:  # the model's envs are rebuilt here: the values are the model's
                        self._config_seen[name] = adapted[name]
        obs_space, act_space = venv.single_observation_space, venv.single_action_space
        if hasattr(self, "observation_space") and (
            obs_space != self.observation_space or act_space != self.action_space
        ):
            raise EnvError(
                f"the env's spaces ({obs_space}, {act_space}) differ from the model's "
                f"({self.observation_space}, {self.action_space}); use an env of the same kind"
            )
        structured = getattr(venv, "structured_space", None)
        if self.structured_observation_space is not None and (
            structured is None or not same_layout(structured, self.structured_observation_space)
        ):
            raise EnvError(
                f"the env's observations ({structured or obs_space}) differ from the model's "
                f"({self.structured_observation_space}), or list their entries in another order; use an env of "
                "the same kind"
            )
        self.observation_space, self.action_space = obs_space, act_space
        self.structured_observation_space = structured
        self.env = venv
        self._env_source = env  # what rollout workers rebuild their copies from (an id or a callable)
        # the env's id and arguments (saved, and used by evaluate); an env without an id keeps the model's
        self.env_id = env_id_of(env) or self.env_id

    def _env_seed(self) -> int:
        """The seed the envs are reset with when a collector starts: the config's seed for a new run; for a
        run resumed at step T, a seed derived from (seed, T), so two resumes of one checkpoint play the same
        episodes (unfinished episodes restart: an env's inner state cannot be saved in general)."""
        if self.num_timesteps == 0:
            return self.config.seed
        return int(np.random.SeedSequence([self.config.seed, self.num_timesteps]).generate_state(1)[0] % 2**31)

    def _require_env(self) -> gym.vector.VectorEnv:
        if self.env is None:
            if self.env_id is None:
                raise EnvError("this model has no env to train on; call model.set_env(env) or load(path, env=env)")
            self.set_env(self.env_id)
        assert self.env is not None  # (set_env made it)
        return self.env

    # ------------------------------------------------------------------ SB3's attributes (docs/sb3.md)
    def get_env(self) -> gym.vector.VectorEnv | None:
        """The training env: a ``gymnasium.vector.VectorEnv`` (Gymnasium's API: ``obs, info = reset()``,
        ``step`` returns 5 values), not SB3's VecEnv (docs/sb3.md)."""
        return self.env

    @property
    def n_envs(self) -> int:
        return self.env.num_envs if self.env is not None else self.config.n_envs

    @property
    def policy(self) -> nn.Module:
        """The torch module that acts: the actor-critic (``self.agent``), DQN's Q-network, ..."""
        return next(iter(self._modules().values()))

    @property
    def logger(self) -> Any:
        """SB3's ``record(key, value)`` / ``record_mean``: the values join the next row of metrics (one per update).
        After ``set_logger(logger)``: that logger."""
        self._sb3_logger.verbose = self.verbose
        return self._sb3_logger if self._user_logger is None else self._user_logger

    def set_logger(self, logger: Any) -> None:
        """SB3's ``set_logger``: ``logger`` (SB3's ``configure(folder, ["stdout", "csv", "tensorboard"])``, or any
        object with ``record(key, value)`` and ``dump(step)``) receives every row lucidrl logs, one per update, and
        is dumped after each; ``model.logger`` is then that logger, so what callbacks record goes to it. lucidrl's
        own ``metrics.csv`` and TensorBoard events are still written where the model has a run directory.
        ``set_logger(None)`` detaches it."""
        if logger is not None and not (
            callable(getattr(logger, "record", None)) and callable(getattr(logger, "dump", None))
        ):
            raise ConfigError(
                f"set_logger needs a logger with record(key, value) and dump(step) methods, such as SB3's "
                f"stable_baselines3.common.logger.configure(folder, ['csv']); got {type(logger).__name__}"
            )
        self._user_logger = logger

    @property
    def ep_info_buffer(self):
        """The last 100 episodes as SB3's ``{"r": return, "l": length}`` dicts (while and after ``learn``)."""
        from collections import deque

        logger = self._logger or getattr(self, "_last_logger", None)
        if logger is None:
            return deque(maxlen=RECENT_EPISODES)
        episodes = zip(logger.recent_returns, logger.recent_lengths)
        return deque(({"r": ret, "l": length} for ret, length in episodes), maxlen=RECENT_EPISODES)

    def __setattr__(self, name: str, value: Any) -> None:
        """SB3's ``model.ent_coef = 0.01``: a hyperparameter written as an attribute goes to ``config``, checked as
        the constructor checks it. The reference reads ``config`` at every update, so a write from a callback
        counts at once there; the next ``learn`` chooses the backends again (``_apply_config_changes``), as a
        fast twin supports some settings only. Attributes the model keeps itself (``device``, the torch device
        it runs on) are not hyperparameters and are set as they are."""
        d = self.__dict__
        if d.get("_config_seen") is None or name in d or name.startswith("_") or name not in d["_config_seen"]:
            object.__setattr__(self, name, value)
            return
        if name == "seed" and value != self.config.seed:
            raise ConfigError(f"model.seed = {value!r}: reseed the model with model.set_random_seed({value!r})")
        if name in BUILT_FIELDS and value != getattr(self.config, name):
            raise ConfigError(
                f"model.{name} = {value!r}: the model's networks, optimiser, envs and normalisers were built with "
                f"{name}={getattr(self.config, name)!r}; build a new model: {type(self).__name__}(env, {name}=...)"
            )
        config = self.config
        values = _config_values(config)
        checked = config_from_dict(type(config), {**values, name: value}, f" (model.{name} = {value!r})")
        setattr(config, name, getattr(checked, name))

    def _check_config(self, when: str) -> None:
        """The config as the constructor checks it, for values written into ``model.config`` directly (a write to
        ``model.ent_coef`` is checked at once): before ``learn`` and ``save``, so that nothing trains on, or is
        saved with, a value that a load would refuse. The checked values replace the written ones (a schedule
        given as ``"lin_0.001"`` becomes the schedule)."""
        config = self.config
        values = _config_values(config)
        try:
            checked = config_from_dict(type(config), values)
        except ConfigError as e:
            raise ConfigError(f"{e} ({when}; model.config holds a value written after the model was built)") from None
        for name in values:
            if getattr(checked, name) is not values[name] and getattr(checked, name) != values[name]:
                object.__setattr__(config, name, getattr(checked, name))

    def _apply_config_changes(self) -> None:
        """At the start of ``learn``: hyperparameters written since the model was built or last trained
        (``model.ent_coef = ...`` or ``model.config.ent_coef = ...``), checked (``_check_config``). Those the
        model was built from (networks, optimiser constants, envs, normalisers) are refused by name; any other
        change chooses the backends again, as a fast or compiled twin supports some settings only and may hold
        others as constants."""
        self._check_config("learn")
        seen = self.__dict__.get("_config_seen")
        now = _config_values(self.config)
        changed = [k for k in now if seen is not None and k in seen and now[k] != seen[k]]
        if not changed:
            return
        built = [k for k in changed if k in BUILT_FIELDS]
        if built:
            raise ConfigError(
                f"{', '.join(built)} changed after the model was built (to {', '.join(repr(now[k]) for k in built)}); "
                "its networks, optimiser, envs and normalisers were made with the old value. Set it back, or build "
                f"a new model: {type(self).__name__}(env, {built[0]}=...)"
            )
        chosen = self.__dict__.get("_backend_choices", {})
        lines, self.backend_lines = self.backend_lines, []
        try:
            for attr, value in list(vars(self).items()):  # the attributes that hold a chosen function
                for name, (reference, function) in list(chosen.items()):
                    if value is function:
                        setattr(self, attr, self._select_backend(name, reference))
        except BaseException:  # e.g. backend="fast" for a setting it does not support: the model stays as it was
            self.backend_lines = lines
            raise
        collector = self._collector  # kept between learn calls: it acts with the policy step chosen now
        if collector is not None and hasattr(collector, "policy") and hasattr(self, "_rollout_policy"):
            collector.policy = self._rollout_policy
        self._config_seen = now

    def __getattr__(self, name: str) -> Any:
        """The hyperparameters as attributes (``model.gamma``, ``model.learning_rate``): read from ``config``."""
        config = self.__dict__.get("config")
        if config is not None and not name.startswith("_") and name in {f.name for f in dataclasses.fields(config)}:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def set_random_seed(self, seed: int | None = None) -> None:
        """Seed Python, NumPy, torch, the model's own generator and the action space; the envs are reset with
        ``seed`` when training next starts (``config.seed`` becomes ``seed``)."""
        if seed is None:
            return
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self.config.seed = int(seed)
        if "_config_seen" in self.__dict__:
            self._config_seen["seed"] = int(seed)
        seed_everything(int(seed))
        self.generator.manual_seed(int(seed))
        self.action_space.seed(int(seed))
        self._drop_collectors()  # the envs restart from the new seed at the next learn

    # ------------------------------------------------------------------ SB3's replay-memory files (DQN)
    @property
    def replay_buffer(self) -> ReplayBuffer | None:
        """SB3's name for DQN's replay memory (``self.replay``; None until ``learn`` makes it)."""
        return self._replay_memory("replay_buffer")

    @overload
    def save_replay_buffer(self, path: str | os.PathLike) -> Path: ...
    @overload
    def save_replay_buffer(self, path: IO[bytes]) -> IO[bytes]: ...
    def save_replay_buffer(self, path: str | os.PathLike | IO[bytes]) -> Path | IO[bytes]:
        """SB3's: the replay memory alone, in one safetensors file (``.safetensors`` added to a name without a
        suffix), written whole or not at all; returns the path. A binary file object (``io.BytesIO``, a file opened
        ``"wb"``) takes the same bytes from its position, flushed, not closed; it is returned. (``save_replay_buffer
        =True`` in the config puts the memory inside every checkpoint instead.)"""
        replay = self._replay_memory("save_replay_buffer")
        if replay is None:
            raise ConfigError("save_replay_buffer: the replay memory is made when learn starts; there is none yet")
        if is_file_object(path):
            save_tensors_file(path, replay.state_tensors(), "save_replay_buffer")  # type: ignore[arg-type]
            return path  # type: ignore[return-value]
        file = Path(path)  # type: ignore[arg-type]
        file = file if file.suffix else file.with_suffix(".safetensors")
        file.parent.mkdir(parents=True, exist_ok=True)
        save_tensors_file(file, replay.state_tensors())
        return file

    def load_replay_buffer(self, path: str | os.PathLike | IO[bytes]) -> None:
        """SB3's: the replay memory from a file of ``save_replay_buffer`` (named with or without ``.safetensors``),
        or from a binary file object's bytes from its position (read without unpickling: safetensors)."""
        self._replay_memory("load_replay_buffer")  # a model that has one
        if is_file_object(path):
            tensors, shown = read_tensors_file(path, "load_replay_buffer"), describe(path)  # type: ignore[arg-type]
        else:
            file = Path(path)  # type: ignore[arg-type]
            if not file.exists() and file.with_suffix(".safetensors").exists():
                file = file.with_suffix(".safetensors")
            if not file.is_file():
                raise CheckpointError(f"load_replay_buffer: no file at {str(path)!r} (written by save_replay_buffer?)")
            tensors, shown = read_tensors_file(file), repr(str(file))
        try:
            self.replay = ReplayBuffer.from_state(
                tensors, self.config.buffer_size, self.observation_space, self.action_space, self.device,
                self.generator,
            )  # fmt: skip
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"the replay memory in {shown} does not fit this model ({e})") from None

    def _replay_memory(self, what: str) -> ReplayBuffer | None:
        if "replay" not in self.__dict__:
            raise AttributeError(f"{what}: {type(self).__name__} has no replay memory (DQN has one)")
        return self.replay

    def get_parameters(self) -> dict[str, dict[str, Any]]:
        """``{name: state_dict}`` of each network (``agent``, or ``q_net``/``q_net_target``), normaliser in use
        (``obs_normalizer``, ``reward_scaler``: their statistics are part of the policy) and optimiser."""
        out: dict[str, dict[str, Any]] = {name: m.state_dict() for name, m in self._checkpoint_modules().items()}
        out.update({name: opt.state_dict() for name, opt in self._optimizers().items()})
        return out

    def set_parameters(
        self,
        load_path_or_dict: str | os.PathLike | IO[bytes] | dict,
        exact_match: bool = True,
        device: str | torch.device = "auto",
    ) -> None:
        """Load the networks' weights, the normalisers' statistics (and the optimisers' state) from
        ``get_parameters()``'s dict or from a checkpoint: a path, or a binary file object holding a zip checkpoint
        from its position (read safely: no unpickling). ``exact_match``: every network and normaliser must be
        given, with all its tensors."""
        modules, optimizers = self._checkpoint_modules(), self._optimizers()
        params = load_path_or_dict
        if not isinstance(params, dict):
            tensors, _, _ = load_checkpoint(params, what="set_parameters")
            params = {
                name: {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + "/")}
                for name in modules
            }
            params = {name: sd for name, sd in params.items() if sd}  # a part the file lacks is named missing below
            for name in ("obs_normalizer", "reward_scaler"):
                if name not in modules and any(k.startswith(name + "/") for k in tensors):
                    raise CheckpointError(
                        f"set_parameters: the checkpoint holds {name} statistics (it was trained with "
                        f"{'normalize_obs' if name == 'obs_normalizer' else 'normalize_reward'}=True) and this "
                        "model has none: its weights read normalised values; build the model with the same setting"
                    )
        unknown = [k for k in params if k not in modules and k not in optimizers]
        missing = [k for k in modules if k not in params]
        if unknown or (exact_match and missing):
            raise CheckpointError(
                f"set_parameters: {'unknown ' + ', '.join(unknown) if unknown else ''}"
                f"{'; ' if unknown and missing else ''}{'missing ' + ', '.join(missing) if missing else ''}"
                f" (this model has {', '.join([*modules, *optimizers])})"
            )
        try:
            for name, sd in params.items():
                if name in modules:
                    modules[name].load_state_dict(sd, strict=exact_match)
                else:
                    optimizers[name].load_state_dict(sd)
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"set_parameters: the weights do not fit this {self.name} model: {e}") from None

    # ------------------------------------------------------------------ acting
    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions of the policy ``self.agent`` (an ActorCritic) for raw observations: its mode, or a sample
        from the model's RNG. Discrete observations and actions are 0-based indices here (``predict`` shifts
        them by the spaces' starts: ``lucidrl.envs.DiscreteOffsets``). With ``normalize_obs`` the observations
        are first normalised with the frozen statistics (never updated here). Algorithms whose agent is not an
        actor-critic (DQN's Q-network) override this."""
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer(obs)
        params = self.agent.policy_params(obs)
        return self.agent.head.mode(params) if deterministic else self.agent.head.sample(params, self.generator)

    @torch.no_grad()
    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """Action(s) for one observation or a batch: ``(actions, None)`` as in SB3.

        ``state`` and ``episode_start`` exist for SB3 compatibility (recurrent policies) and are
        ignored. A single observation gives a single action; a batch [B, ...] gives B actions.
        """
        structured = self.structured_observation_space
        if (
            isinstance(observation, tuple)
            and len(observation) == 2
            and isinstance(observation[1], (dict, list))
            and not isinstance(structured, gym.spaces.Tuple)  # there a 2-tuple may be one observation
        ):
            raise EnvError(
                "predict got a tuple (observation, info): Gymnasium's reset() returns two values; write "
                "obs, info = env.reset() (lucidrl's get_env() is a Gymnasium VectorEnv: docs/sb3.md)"
            )
        if structured is not None and isinstance(observation, (dict, tuple)):
            observation = flatten_observation(structured, observation)
        elif structured is not None and isinstance(observation, list) and observation:  # a list of them
            observation = np.stack([flatten_observation(structured, one) for one in observation])
        obs = np.asarray(observation)
        shape = tuple(self.observation_space.shape or ())
        if obs.shape == shape:
            batch, single = obs[None], True
        elif obs.ndim == len(shape) + 1 and obs.shape[1:] == shape:
            batch, single = obs, False
        else:
            raise EnvError(
                f"predict got an observation of shape {obs.shape}; this model takes {shape} "
                f"(one observation) or (batch, {', '.join(map(str, shape))}) for {self.observation_space}"
            )
        space = self.observation_space
        if isinstance(space, gym.spaces.Discrete) and ((batch < space.start) | (batch >= space.start + space.n)).any():
            raise EnvError(
                f"predict got observation(s) {np.unique(batch).tolist()}, outside the model's observation "
                f"space {space!r} (values {space.start} to {space.start + space.n - 1})"
            )
        if (
            isinstance(space, gym.spaces.MultiDiscrete)
            and ((batch < space.start) | (batch >= space.start + space.nvec)).any()
        ):
            raise EnvError(
                f"predict got observation(s) outside the model's observation space {space!r} (component i takes "
                f"start[i] to start[i] + nvec[i] - 1)"
            )
        # the env's Discrete spaces, start included, outside; 0-based indices inside (as rollout.VectorStepper)
        offsets = DiscreteOffsets(space, self.action_space)
        actions = self._act(torch.as_tensor(offsets.obs_in(batch), device=self.device), deterministic).cpu().numpy()
        if isinstance(self.action_space, gym.spaces.Box):  # as SB3: what leaves for an env lies within its bounds
            actions = np.clip(actions, self.action_space.low, self.action_space.high).astype(
                self.action_space.dtype, copy=False
            )
        actions = offsets.action_out(actions)
        return (actions[0] if single else actions), None

    # ------------------------------------------------------------------ backends
    def _select_backend(self, name: str, reference):
        """``reference`` (a function of the algorithm's file) or its fast twin, by ``config.backend``
        (``lucidrl.backends``); the choice is logged at the start of ``learn``."""
        function, line = backends.select(name, reference, self)
        self.backend_lines.append(line)
        self.__dict__.setdefault("_backend_choices", {})[name] = (reference, function)
        return function

    # ------------------------------------------------------------------ learn bookkeeping
    @contextlib.contextmanager
    def _learning(
        self,
        total_timesteps: int,
        reset_num_timesteps: bool,
        progress_bar: bool,
        callback: Any = None,
        log_interval: int | None = None,
        tb_log_name: str | None = None,
    ):
        """``with self._learning(...) as (logger, target):`` around a training loop.

        Before: checks, the callbacks (``lucidrl.callbacks.Hooks``: ``on_training_start``), the logger, the
        thread settings (``torch_threads``). After: ``on_training_end``, the final model in ``run_dir/model``,
        the summary line; the thread settings are restored and the logger closed however the loop ends. A
        callback's ``on_step`` returning False (``StopTraining``) ends the loop as a normal end.
        """
        self._apply_config_changes()
        hooks = Hooks(self, check_callback(callback))
        if hooks.per_step and not self.sb3_callbacks:
            raise ConfigError(
                f"{type(self).__name__} takes function callbacks callback(model, metrics) only: it has "
                "no SB3 counterpart whose hooks lucidrl.callbacks.BaseCallback would follow"
            )
        _check_learn_options(log_interval, tb_log_name, progress_bar)
        run_dir = self.run_dir
        if self.tensorboard_log is not None and (reset_num_timesteps or self.run_dir is None):
            self.run_dir = _next_run_dir(self.tensorboard_log, tb_log_name or type(self).__name__)
        elif self.tensorboard_log is not None and tb_log_name is not None and not _is_run_of(self.run_dir, tb_log_name):
            self.run_dir = _continued_run_dir(self.tensorboard_log, tb_log_name, self._tensorboard_runs)
        threads = threads_for(self.config.torch_threads, self)
        lines = [f"backend: {line}" for line in self.backend_lines] + [
            f"{self.name}: {threads} CPU thread(s) for torch, 1 for NumPy's BLAS "
            f"(torch_threads={self.config.torch_threads!r})"
        ]
        if self.device.type == "cuda":
            setting = self.config.matmul_precision
            precision = matmul_precision_for(setting)
            lines.append(f"{self.name}: float32 matrix products in {precision} (matmul_precision={setting!r})")
        try:
            logger, target = self._start_learn(
                total_timesteps, reset_num_timesteps, progress_bar or hooks.progress_bar, lines
            )
        except BaseException:
            self.run_dir = run_dir
            raise
        if self.tensorboard_log is not None and self.run_dir is not None:
            self._tensorboard_runs.add(Path(self.run_dir))
        self._hooks, self._log_interval, self._updates_in_learn = hooks, log_interval, 0
        self._sb3_logger.dir = str(self.run_dir) if self.run_dir is not None else None
        self._sb3_logger.attach(logger.writer, logger.info)  # output_formats, info (detached by _end_learn too)
        try:
            with hold_threads(threads, self), hold_matmul_precision(self.config.matmul_precision, self.device):
                hooks.training_start(
                    {
                        "self": self,
                        "total_timesteps": total_timesteps,
                        "callback": callback,
                        "log_interval": log_interval,
                        "tb_log_name": tb_log_name,
                        "reset_num_timesteps": reset_num_timesteps,
                        "progress_bar": progress_bar,
                    }
                )
                try:
                    yield logger, target
                except StopTraining:  # a callback stopped training in the middle of a rollout
                    self._drop_collectors()
                    logger.info(f"{self.name}: a callback stopped training at step {self.num_timesteps}")
                hooks.training_end()
        except BaseException:
            logger.close()
            self._sb3_logger.detach()
            self._logger = self._hooks = None
            self._last_logger = logger
            raise
        self._hooks = None
        self._end_learn(logger)

    def _rollout(self, collect, *args: Any):
        """``collect(*args)`` (a collector's ``collect``, DQN's ``_collect``) between the callbacks'
        ``on_rollout_start`` and ``on_rollout_end``, with their ``on_step`` at every env step; without
        SB3-style callbacks, just ``collect(*args)``."""
        hooks = self._hooks
        if hooks is None or hooks.root is None:
            return collect(*args)
        stepper = getattr(getattr(collect, "__self__", None), "stepper", None) or getattr(self, "_stepper", None)
        hooks.rollout_start(stepper)
        try:
            out = collect(*args)
        finally:  # however the rollout ends (a stop, Ctrl-C, a callback's error), its step hook goes with it
            if stepper is not None:
                stepper.on_step = None
        hooks.rollout_end(stepper)
        return out

    def _drop_collectors(self) -> None:
        """Forget the collectors (after a stop in the middle of a rollout): the next learn starts afresh."""
        collector = self._collector
        if collector is not None and hasattr(collector, "close"):  # (the Ray and device collectors hold resources)
            collector.close()
        self._collector = None
        if hasattr(self, "_stepper"):
            self._stepper = None

    def _start_learn(
        self, total_timesteps: int, reset_num_timesteps: bool, progress_bar: bool, lines: Sequence[str] = ()
    ) -> tuple[Logger, int]:
        whole = isinstance(total_timesteps, (float, np.floating)) and float(total_timesteps).is_integer()  # 1e5
        if (
            not (isinstance(total_timesteps, (int, np.integer)) or whole)
            or isinstance(total_timesteps, bool)
            or total_timesteps < 1
        ):
            raise ConfigError(
                f"total_timesteps must be a positive whole number (100_000 and 1e5 both do), got {total_timesteps!r}"
            )
        self._require_env()
        if getattr(self.config, "rollout_workers", 0) or self.name == "a3c":  # Ray workers: a bad address fails
            from lucidrl.distributed import check_address  # here, before the run directory is written

            check_address(getattr(self.config, "address", None))
        # a resumed run's log continues right after the checkpoint's last row (rows logged after it are dropped)
        resume = None if reset_num_timesteps else self._resume_log
        logger = Logger(  # before the counters are reset: a refused run directory leaves the model as it was
            self.run_dir,
            self.verbose,
            self.tensorboard,
            append=not reset_num_timesteps,
            resume=resume,
            columns=self.log_columns,
        )
        self._resume_log = None
        if reset_num_timesteps:
            self.num_timesteps = 0
            self.n_updates = 0
        self._logger = logger
        self._guarded: list[torch.Tensor] | None = None  # the tensors _check_finite watches (listed at first use)
        rollout = getattr(self.config, "n_steps", 0) * self.n_envs if self.name != "a3c" else 0
        if rollout > int(total_timesteps):  # on-policy: updates come a whole rollout at a time
            lines = [
                *lines,
                f"{self.name}: one rollout is n_steps * n_envs = {rollout} steps, more than the "
                f"{int(total_timesteps)} asked for: learn trains whole rollouts, {rollout} steps here",
            ]
        for note in [*self.notes, *lines]:
            logger.info(note)
        self.notes = []
        target = self.num_timesteps + int(total_timesteps)
        self.target_timesteps = target  # saved with the model: where a killed run was going (the CLI's --resume)
        logger.start(total=target, initial=self.num_timesteps, progress_bar=progress_bar)
        self._t_start = time.perf_counter()
        return logger, target

    def _progress_remaining(self, target: int) -> float:
        """1 at the start of training, 0 at the end (SB3's convention for schedules)."""
        return max(0.0, 1.0 - self.num_timesteps / target)

    def _maybe_checkpoint(self, checkpoint_freq: int | None, steps_before: int) -> None:
        self.checkpoint_freq = checkpoint_freq  # saved with the model: a resumed run keeps checkpointing (the CLI)
        if (
            checkpoint_freq
            and self.run_dir is not None
            and self.num_timesteps // checkpoint_freq > steps_before // checkpoint_freq
        ):
            self.save(self.run_dir / "checkpoints" / f"step_{self.num_timesteps:09d}")

    def _rollout_collector(self):
        """The on-policy collector for the current env (made on first use, kept between ``learn`` calls),
        acting with ``self._rollout_policy`` (``rollout.rollout_policy`` or its fast twin, chosen by the algorithm)."""
        from lucidrl.rollout import RolloutCollector

        old, env = self._collector, self._require_env()
        if old is None or old.env is not env:
            if old is not None and hasattr(old, "close"):
                old.close()
            if getattr(self.config, "rollout_workers", 0):  # K Ray actors (lucidrl.distributed.rollout_workers)
                from lucidrl.distributed import require_ray

                require_ray(f"rollout_workers={self.config.rollout_workers} (set rollout_workers=0 to collect here)")
                from lucidrl.distributed.rollout_workers import RayRolloutCollector

                self._collector = RayRolloutCollector(
                    self._env_source,
                    env,
                    self.config.rollout_workers,
                    self.agent,
                    self.device,
                    self._env_seed(),
                    self.generator,
                    self.obs_normalizer,
                    self.reward_scaler,
                    self._rollout_policy,
                    self.vectorization,
                    log=functools.partial(_log_note, weakref.ref(self)),
                )  # weak: the workers end with the model
                return self._collector
            if getattr(env, "functional_step", None) is not None:  # batched torch envs: the rollout stays on the device
                from lucidrl.device_rollout import DeviceRolloutCollector

                self._collector = DeviceRolloutCollector(
                    env,
                    self.device,
                    seed=self._env_seed(),
                    generator=self.generator,
                    policy=self._rollout_policy,
                    obs_normalizer=self.obs_normalizer,
                    reward_scaler=self.reward_scaler,
                    cuda_graph=self.config.compile,
                    compile_step=self.config.compile
                    and self.device.type == "cuda"
                    and os.environ.get("LUCIDRL_TORCH_COMPILE", "1") != "0",
                )
                return self._collector
            self._collector = RolloutCollector(
                env,
                self.device,
                seed=self._env_seed(),
                generator=self.generator,
                obs_normalizer=self.obs_normalizer,
                reward_scaler=self.reward_scaler,
                policy=self._rollout_policy,
            )
        return self._collector

    def _after_update(
        self, logger: Logger, rollout, metrics: dict, steps_before: int, checkpoint_freq: int | None
    ) -> bool:
        """Log an update's episodes and metrics (with what callbacks recorded through ``model.logger``),
        checkpoint when due, run the function callbacks; True means stop."""
        logger.add_episodes(rollout.episode_returns, rollout.episode_lengths)
        metrics.update(self._sb3_logger.pop())
        logger.record(self.num_timesteps, metrics, exclude=self._sb3_logger.excluded)
        self._sb3_logger.write_media(self.num_timesteps)  # text, histograms, figures, ... (lucidrl.log_media)
        for note in self._sb3_logger.take_notes():
            logger.info(note)
        if self._user_logger is not None:  # set_logger's: the same row, then its dump (its own outputs)
            for key, value in logger.last_row.items():  # (time/total_timesteps too, as SB3 records it)
                self._user_logger.record(key, value)
            self._user_logger.dump(step=self.num_timesteps)
        self._check_finite(metrics)  # before any checkpoint: a NaN model is never saved
        self._maybe_checkpoint(checkpoint_freq, steps_before)
        self._updates_in_learn = getattr(self, "_updates_in_learn", 0) + 1
        interval = getattr(self, "_log_interval", None)
        if interval and self._updates_in_learn % interval == 0:
            logger.info(
                f"{self.name}: step {self.num_timesteps}, update {self.n_updates}, mean return of the last "
                f"{len(logger.recent_returns)} episodes {logger.mean_return:.1f}"
            )
        return self._hooks is not None and self._hooks.after_update(metrics)

    def _nonfinite_weights(self) -> list[str]:
        return [
            f"{name}/{key}"
            for name, module in self._modules().items()
            for key, t in module.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())
        ]

    def _check_finite(self, metrics: dict) -> None:
        """Stop training when an update produced a non-finite loss, gradient norm or weight."""
        bad = [
            k
            for k, v in metrics.items()
            if (k.startswith("loss/") or k == "diag/grad_norm") and isinstance(v, float) and not math.isfinite(v)
        ]
        if not bad:  # one reduction over every weight (NaN and inf propagate), ~20 us an update
            if self._guarded is None:  # the networks' tensors, listed once per learn call
                self._guarded = [
                    t
                    for m in self._modules().values()
                    for t in (*m.parameters(), *m.buffers())
                    if t.is_floating_point()
                ]
            tensors = self._guarded
            with torch.no_grad():
                if not tensors or math.isfinite(float(torch.stack(torch._foreach_norm(tensors)).sum())):
                    return
        weights = self._nonfinite_weights()  # the exact test, naming the tensors
        if bad or weights:
            where = f"checkpoints in {self.run_dir / 'checkpoints'} are kept" if self.run_dir else "nothing was saved"
            raise TrainingError(
                f"{self.name}: update {self.n_updates} (env step {self.num_timesteps}) produced non-finite values "
                f"({', '.join(bad + weights[:4])}); training stopped and no final model was saved ({where}). "
                "Common causes: a learning rate too high, unbounded rewards (try normalize_reward=True), or an env "
                "returning extreme values."
            )

    def _end_learn(self, logger: Logger) -> None:
        seconds = time.perf_counter() - self._t_start
        if self.run_dir is not None:
            self.save(self.run_dir / "model")
        logger.close()
        self._sb3_logger.detach()
        self._logger, self._last_logger = None, logger
        episodes = len(logger.recent_returns)
        returns = f"mean return of the last {episodes} episodes {logger.mean_return:.1f}" if episodes else (
            "no episode ended in this learn call")  # fmt: skip
        logger.info(f"{self.name}: {self.num_timesteps} steps in {seconds:.1f} s; {returns}")
        self.last_training_seconds = seconds

    # ------------------------------------------------------------------ save / load
    def _modules(self) -> dict[str, nn.Module]:
        """The networks saved in a checkpoint (default: ``self.agent``)."""
        return {"agent": self.agent}

    def _checkpoint_modules(self) -> dict[str, nn.Module]:
        """``_modules()`` plus the normalisers in use: their statistics are model state, saved with the weights."""
        modules = dict(self._modules())
        for name in ("obs_normalizer", "reward_scaler"):
            if getattr(self, name, None) is not None:
                modules[name] = getattr(self, name)
        return modules

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def _parameter_names(self, optimizer: torch.optim.Optimizer) -> list[str]:
        """The name (``module/parameter``) of each tensor the optimiser steps, in its order."""
        names = {
            id(p): f"{mod}/{name}" for mod, module in self._modules().items() for name, p in module.named_parameters()
        }
        return [names.get(id(p), "?") for group in optimizer.param_groups for p in group["params"]]

    @overload
    def save(self, path: str | os.PathLike, exclude: Any = None, include: Any = None) -> Path: ...
    @overload
    def save(self, path: IO[bytes], exclude: Any = None, include: Any = None) -> IO[bytes]: ...
    def save(self, path: str | os.PathLike | IO[bytes], exclude: Any = None, include: Any = None) -> Path | IO[bytes]:
        """Save to a checkpoint directory (atomically); a run directory gets it in ``model/``; a path ending in
        ``.zip`` gets one zip file. Returns the path written.

        ``path`` may be a binary file object (``io.BytesIO``, a file opened ``"wb"``): it takes the bytes a
        ``.zip`` save writes, from its position, and is flushed, not closed (as Stable-Baselines3's ``save``);
        it is returned. ``exclude``/``include``: SB3's lists of attribute names. The checkpoint holds fixed
        content, so only ``"replay_buffer"`` changes it (DQN's replay memory in or out of this save); excluding
        what lucidrl never saves (``"env"``, ...) changes nothing; excluding what every checkpoint holds, or
        including anything else, is a ``ConfigError`` that names what the checkpoint holds."""
        replay_wanted = self._save_selection(exclude, include)
        self._check_config("save: nothing was written")
        weights = self._nonfinite_weights()
        if weights:
            where = "nothing was written into it" if is_file_object(path) else "nothing there was changed"
            raise CheckpointError(
                f"{self.name}: will not save non-finite weights ({', '.join(weights[:4])}) at {describe(path)}; {where}"
            )
        tensors: dict[str, torch.Tensor] = {
            "rng/generator": self.generator.get_state(),
            "rng/torch": torch.get_rng_state(),
        }
        np_state = np.random.get_state(legacy=True)  # ('MT19937', keys, pos, has_gauss, cached_gaussian)
        assert isinstance(np_state, tuple)
        py_version, py_internal, py_gauss = random.getstate()
        tensors["rng/numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
        for name, module in self._checkpoint_modules().items():
            tensors.update({f"{name}/{k}": v for k, v in module.state_dict().items()})
        if self.reward_scaler is not None and self.reward_scaler.returns is not None:
            tensors["run/reward_returns"] = torch.from_numpy(self.reward_scaler.returns.copy())
        extra = {}
        replay = getattr(self, "replay", None)
        if replay_wanted is None:
            replay_wanted = bool(getattr(self.config, "save_replay_buffer", False))
        if replay_wanted and replay is not None:
            extra["replay.safetensors"] = replay.state_tensors()
        optim_meta = {}
        for name, opt in self._optimizers().items():
            t, meta = optimizer_to_flat(f"optim/{name}", opt)
            tensors.update(t)
            optim_meta[name] = {**meta, "parameters": self._parameter_names(opt)}
        env_kwargs, unsaved = self.env_id.json_kwargs() if isinstance(self.env_id, EnvId) else ({}, [])
        if unsaved:
            warnings.warn(
                f"save: the env's arguments {', '.join(unsaved)} are not JSON and are not saved with the model; "
                "pass env= when loading it",
                stacklevel=2,
            )
        config = {
            "algo": self.name,
            "lucidrl_version": __version__,
            "env_id": None if self.env_id is None else str(self.env_id),
            "env_kwargs": env_kwargs,
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "config": config_to_dict(self.config),
        }
        if self.structured_observation_space is not None:
            config["structured_observation_space"] = space_to_json(self.structured_observation_space)
        state = {
            "lucidrl_version": __version__,
            "num_timesteps": int(self.num_timesteps),
            "n_updates": int(self.n_updates),
            "attributes": {k: getattr(self, k) for k in self.state_attributes},
            "optimizers": optim_meta,
            "rng": {
                "numpy": [int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": [py_version, list(py_internal), py_gauss],
            },
        }
        if self._logger is not None and self._logger.run_dir is not None:
            state["log"] = self._logger.position()  # where a run resumed from here continues its log
        if self.checkpoint_freq:
            state["checkpoint_freq"] = int(self.checkpoint_freq)
        if self.target_timesteps:
            state["target_timesteps"] = int(self.target_timesteps)
        return save_checkpoint(path, tensors, config, state, extra)

    def _save_selection(self, exclude: Any, include: Any) -> bool | None:
        """``save``'s ``exclude``/``include`` (``sb3_api.save_selection``): whether this save holds the replay memory
        (None: as ``save_replay_buffer`` says)."""
        if exclude is None and include is None:
            return None
        modules, optimizers = list(self._checkpoint_modules()), list(self._optimizers())
        counters = ["num_timesteps", "n_updates", *self.state_attributes]
        holds = (
            f"a lucidrl checkpoint holds fixed content: the networks ({', '.join(modules)}), the optimisers' state "
            f"({', '.join(optimizers) or 'none'}), the hyperparameters (config.json, policy_kwargs' settings among "
            f"them), the counters ({', '.join(counters)}), the random-number states, the spaces and the env's id "
            "and arguments"
        )
        if "replay" in self.__dict__:
            holds += "; the replay memory only with save_replay_buffer=True or include=['replay_buffer']"
        fields = [f.name for f in dataclasses.fields(self.config)]
        saved = {
            *modules, *optimizers, *counters, *fields, *SAVED_UNDER_SB3_NAMES,
            "observation_space", "action_space", "env_id", "env_kwargs", "config",
        }  # fmt: skip
        return save_selection(self.name, holds, saved, "replay" in self.__dict__, exclude, include)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | IO[bytes],
        env: EnvLike | None = None,
        device: str | None = None,
        backend: str | None = None,
        torch_threads: int | str | None = None,
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> Algorithm:
        """Load a checkpoint written by ``save``. ``env`` (or the saved env id) is used by ``learn``; the saved id
        given as a string is the saved env, with its saved arguments (``lucidrl.envs.with_saved_kwargs``).

        ``device``, ``backend`` and ``torch_threads`` replace the saved settings when given: a model
        trained under one backend continues under the other (same networks, same optimiser state).
        SB3's ``custom_objects`` replace saved hyperparameters (as keyword arguments do);
        ``print_system_info`` prints the lucidrl, torch and gymnasium versions; ``force_reset`` is accepted
        (the envs are always reset when training starts).

        ``path`` may be a binary file object (``io.BytesIO``, a file opened ``"rb"``) holding what ``save`` wrote
        into one or into a ``.zip``: it is read from its position to its end and checked as a ``.zip`` file is; one
        already at its end (``model.save(f)`` then ``load(f)``, as SB3 allows) is read whole, its last zip loaded.
        Nothing is unpickled."""
        if print_system_info:
            print(
                f"lucidrl {__version__}, torch {torch.__version__}, gymnasium {gym.__version__}, numpy {np.__version__}"
            )
        for key, value in (custom_objects or {}).items():
            if key in kwargs:
                raise ConfigError(f"load: {key!r} given both in custom_objects and as a keyword argument")
            kwargs[key] = value
        source: str | os.PathLike | CheckpointBytes = (
            read_file_object(path, "load") if is_file_object(path) else path  # type: ignore[assignment]
        )  # a file object is read once: each loader below reads the same bytes
        shown = describe(source)
        tensors, config, state = load_checkpoint(source, extra=OPTIONAL_FILES)
        algo = config["algo"]
        if algo in OTHER_LOADERS and cls is Algorithm:
            if env is not None or device is not None or backend is not None or torch_threads is not None:
                raise ConfigError(
                    f"{shown} is a {algo.upper()} checkpoint, which takes no env, device, backend "
                    f"or torch_threads; load it with lucidrl.load(path)"
                )
            return OTHER_LOADERS[algo](source, **kwargs)
        if algo not in ALGORITHMS:
            raise CheckpointError(f"the checkpoint is of an unknown algorithm {algo!r}; known: {', '.join(ALGORITHMS)}")
        klass = ALGORITHMS[algo]
        if cls is not Algorithm and klass is not cls:
            raise CheckpointError(
                f"{shown} is a checkpoint of {algo.upper()}, not of {cls.name.upper()}; "
                f"load it with lucidrl.load() or lucidrl.{klass.__name__}.load()"
            )
        # a network's layers are at least as large as its input and output: a larger space is an edited file
        # (space_from_json checks it before anything of that size is allocated)
        weights = sum(v.numel() for v in tensors.values())
        try:
            spaces = (
                space_from_json(config["observation_space"], max_size=weights),
                space_from_json(config["action_space"], max_size=weights),
            )
            structured = config.get("structured_observation_space")
            structured = None if structured is None else space_from_json(structured, max_size=weights)
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise CheckpointError(f"corrupt checkpoint: the spaces in config.json cannot be used ({e})") from None
        hyper = dict(config["config"])
        try:  # the saved hyperparameters alone: an error here is the checkpoint's, not the caller's
            resolve_config(klass.name, klass.config_class, None, False, dict(hyper))
        except ConfigError as e:
            raise CheckpointError(
                f"the hyperparameters in {shown} (config.json) do not fit its algorithm "
                f"{algo!r}: {e}. Was config.json edited (its 'algo' or 'config')?"
            ) from None
        for key, value in (("device", device), ("backend", backend), ("torch_threads", torch_threads)):
            if value is not None:
                hyper[key] = value
        saved_hyper = dict(hyper)
        for key in [
            k for k in kwargs if k in hyper
        ]:  # e.g. load(path, seed=1, learning_rate=1e-4): replaces the saved value
            hyper[key] = kwargs.pop(key)
        kwargs.setdefault("verbose", 0 if env is None else 1)
        saved_env = saved_env_id(config)
        env = with_saved_kwargs(env, saved_env)  # env="FrozenLake-v1": the saved id, with its saved arguments
        # a bad override: the caller's ConfigError
        model = klass(env, preset=False, _spaces=(*spaces, structured), **kwargs, **hyper)
        if env is None:  # built from when needed; never a module the file names (envs.SavedEnvId)
            model.env_id = saved_env
        if "obs_normalizer" not in model._checkpoint_modules() and any(
            k.startswith("obs_normalizer/") for k in tensors
        ):
            raise CheckpointError(  # (set_parameters refuses the same): without them the policy reads raw observations
                f"{shown} was trained with normalize_obs=True and holds the observation statistics its policy reads "
                "its inputs through; load it without normalize_obs=False (the statistics are part of the model)"
            )
        try:
            for name, module in model._checkpoint_modules().items():
                sub = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + "/")}
                module.load_state_dict(sub, strict=True)
        except RuntimeError as e:
            given = [k for k in hyper if k in saved_hyper and hyper[k] != saved_hyper[k] and k not in ("device",)]
            why = (  # e.g. load(path, update="double_q_learning") of a one-table model: the caller's, not the file's
                f"; it was built with {', '.join(f'{k}={hyper[k]!r}' for k in given)} given to load, where the "
                f"checkpoint was saved with {', '.join(f'{k}={saved_hyper[k]!r}' for k in given)}: leave "
                f"{'them' if len(given) > 1 else 'it'} out"
                if given
                else ""
            )
            raise CheckpointError(f"the weights in {shown} do not fit this {algo} model{why}: {e}") from None
        for name, opt in model._optimizers().items():
            meta = state.get("optimizers", {}).get(name)
            if meta is None:
                raise CheckpointError(f"corrupt checkpoint: no state for optimiser {name!r} in state.json")
            opt_tensors = tensors
            if "layout" in meta:  # written by a lucidrl that kept the optimiser's state in one flat tensor
                converted = legacy_optimizer_state(f"optim/{name}", tensors, meta, model._parameter_names(opt), opt)
                if converted is None:
                    model.notes.append(
                        f"{algo}: optimiser {name!r} state not restored (an older lucidrl's layout that "
                        "does not match this model); training resumes with fresh optimiser moments"
                    )
                    continue
                opt_tensors, meta = converted
                model.notes.append(f"{algo}: optimiser {name!r} state converted from an older lucidrl's flat layout")
            optimizer_from_flat(f"optim/{name}", opt, opt_tensors, meta)
        model.num_timesteps = int(state.get("num_timesteps", 0))
        model.n_updates = int(state.get("n_updates", 0))
        for k, v in state.get("attributes", {}).items():
            if k in klass.state_attributes:
                setattr(model, k, v)
        if "rng/generator" in tensors:
            model.generator.set_state(tensors["rng/generator"])
        _restore_run_state(model, tensors, state)
        return model


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate; in place where it is a tensor (compile=True: a CUDA graph reads it)."""
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


ON_DEVICE_ALGOS = ("ppo", "a2c", "trpo", "vpg", "reinforce")
"""The algorithms whose rollouts can come from batched torch envs (lucidrl.device_rollout)."""


def _torch_env_unsupported(model: Algorithm) -> str | None:
    """Why the batched torch envs (``vectorization='torch'``) cannot feed this model, as an error message
    (None: they can)."""
    if model.name not in ON_DEVICE_ALGOS:
        return (
            f"vectorization='torch' (batched torch envs) feeds the on-policy algorithms "
            f"({', '.join(ON_DEVICE_ALGOS)}), not {model.name}; use vectorization='auto'"
        )
    cfg = model.config
    if getattr(cfg, "rollout_workers", 0):
        return "vectorization='torch' collects on this process's device; set rollout_workers=0"
    return None


def _torch_envs_apply(model: Algorithm) -> bool:
    """Whether the batched torch envs can feed this model ('auto' on a GPU picks them then)."""
    return _torch_env_unsupported(model) is None


def _check_torch_env(model: Algorithm, venv) -> None:
    """What a batched torch env can and cannot be used with, as a clear error."""
    reason = _torch_env_unsupported(model)
    if reason is not None:
        raise EnvError(reason)
    if venv.dtype != torch.float32:
        raise EnvError(f"the networks train in float32; build the torch env with dtype=torch.float32, not {venv.dtype}")


# Hyperparameters a model is built from: its networks, its optimiser's constants, its envs, its normalisers.
# Changing one afterwards (model.x = ... or model.config.x = ...) is refused when learn starts.
BUILT_FIELDS = frozenset(
    {
        "n_envs", "net_arch", "activation", "ortho_init", "log_std_init", "shared_trunk", "normalize_obs",
        "normalize_reward", "clip_obs", "clip_reward", "device", "compile", "rollout_workers", "address",
        "n_workers", "buffer_size", "adam_eps", "use_rms_prop", "rms_prop_alpha", "rms_prop_eps", "psi",
        "variant", "seed", "n_bins", "bounds", "initial_q",
    }
)  # fmt: skip


def _config_values(config: Any) -> dict[str, Any]:
    """``{field: value}`` of a config dataclass, lists and dicts copied (so later edits in place show as changes);
    other values (numbers, strings, schedules, a user's function) as they are, compared by ``==`` or identity."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return {k: copy.deepcopy(v) if isinstance(v, (list, dict)) else v for k, v in values.items()}


def _why_one_copy(env: Any) -> str | None:
    """Why a single env instance cannot be copied from its spec (``gymnasium.make(env.spec)``), or None."""
    if not isinstance(env, gym.Env) or isinstance(env, gym.vector.VectorEnv):
        return None
    if env.spec is None:
        return "has no spec to make copies from"
    # Gymnasium records a wrapper's arguments only for wrappers that inherit RecordConstructorArgs
    lost = [w.name for w in env.spec.additional_wrappers if w.kwargs is None]
    if lost:
        return f"has wrappers that gymnasium.make cannot rebuild from its spec ({', '.join(lost)})"
    return None


def _copies_from_spec(env: gym.Env):
    """A callable for ``make_vec_env``: ``env`` itself on the first call, a new env from its spec on each later one."""
    given, spec = [env], env.spec
    assert spec is not None  # (called for envs that have one)

    def make() -> gym.Env:
        return given.pop() if given else gym.make(spec)

    make.spec = env.spec  # type: ignore[attr-defined]  # env_id_of finds the id (presets, load)
    return make


def _log_note(model_ref, message: str) -> None:
    """A note of a helper (e.g. a rollout worker replaced) in the run's log, or printed outside ``learn``."""
    model = model_ref()
    if model is not None and model._logger is not None:
        model._logger.info(message)
    else:
        print(message)


def _check_model_options(run_dir: Any, verbose: Any, tensorboard: Any) -> None:
    """The constructor's own options (not hyperparameters): wrong types named before anything is built."""
    if run_dir is not None and not isinstance(run_dir, (str, os.PathLike)):
        raise ConfigError(f"run_dir must be a path (a str or pathlib.Path) or None, got {run_dir!r}")
    if isinstance(verbose, bool) or not isinstance(verbose, int) or verbose not in (0, 1, 2):
        raise ConfigError(f"verbose must be 0 (silent), 1 (progress bar) or 2 (every metric), got {verbose!r}")
    if not isinstance(tensorboard, bool):
        raise ConfigError(f"tensorboard must be True or False, got {tensorboard!r}")


def _check_learn_options(log_interval: Any, tb_log_name: Any, progress_bar: Any) -> None:
    if log_interval is not None and (
        isinstance(log_interval, bool) or not isinstance(log_interval, int) or log_interval < 1
    ):
        raise ConfigError(
            f"log_interval must be a positive integer (updates between summary lines) or None, got {log_interval!r}"
        )
    if tb_log_name is not None and (not isinstance(tb_log_name, str) or not tb_log_name or "/" in tb_log_name):
        raise ConfigError(f"tb_log_name must be a non-empty name without '/', got {tb_log_name!r}")
    if not isinstance(progress_bar, bool):
        raise ConfigError(
            f"progress_bar must be True or False, got {progress_bar!r}; pass learn's arguments after "
            "total_timesteps by keyword (learn(N, callback=..., progress_bar=True))"
        )


def _next_run_dir(tensorboard_log: str | os.PathLike, name: str) -> Path:
    """``tensorboard_log/{name}_{i}`` with i one more than the largest there (SB3's run naming)."""
    root = Path(tensorboard_log)
    # escaped: a name such as "x[1]" is a glob pattern that would match other runs' directories, not its own
    ids = [
        int(p.name[len(name) + 1 :]) for p in root.glob(f"{glob.escape(name)}_*") if p.name[len(name) + 1 :].isdigit()
    ]
    return root / f"{name}_{max(ids, default=0) + 1}"


def _is_run_of(run_dir: Path | None, name: str) -> bool:
    """Whether ``run_dir`` is one of ``name``'s runs, ``{name}_{i}``."""
    return run_dir is not None and run_dir.name.startswith(f"{name}_") and run_dir.name[len(name) + 1 :].isdigit()


def _continued_run_dir(tensorboard_log: str | os.PathLike, name: str, own: set[Path]) -> Path:
    """Where ``learn(tb_log_name=name, reset_num_timesteps=False)`` continues a model's curve, as SB3 names it:
    ``{name}_{i}``, i the largest there (0 if none). Unlike SB3, a directory that holds anything of another run
    (its rows, events or model, even of a run stopped before its first row) is not written into (the two runs
    would mix): ``{name}_{i+1}`` then. ``own``: the directories this model wrote, which it goes on in."""
    latest = _next_run_dir(tensorboard_log, name)
    before = latest.with_name(f"{name}_{int(latest.name[len(name) + 1 :]) - 1}")
    free = not before.exists() or (before.is_dir() and not any(before.iterdir()))
    return before if free or before in own else latest


def _restore_run_state(model: Algorithm, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """What a resumed run's future depends on besides weights and optimisers: the global RNG streams
    (as ``seed_everything`` set them), the reward scaler's running returns, the log position, the replay memory."""
    rng = state.get("rng", {})
    try:
        if "rng/torch" in tensors:
            torch.set_rng_state(tensors["rng/torch"])
        if "rng/numpy" in tensors and "numpy" in rng:
            pos, has_gauss, cached = rng["numpy"]
            np.random.set_state(("MT19937", tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
        if "python" in rng:
            version, internal, gauss = rng["python"]
            random.setstate((version, tuple(internal), gauss))
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"corrupt checkpoint: the saved random-number states cannot be restored ({e})") from None
    returns = tensors.get("run/reward_returns")
    if returns is not None and model.reward_scaler is not None:
        if returns.dim() != 1:
            raise CheckpointError(
                f"corrupt checkpoint: run/reward_returns has shape {tuple(returns.shape)}, "
                f"expected ({model.config.n_envs},)"
            )
        if returns.numel() == model.config.n_envs:
            model.reward_scaler.returns = returns.double().numpy().copy()
        else:  # loaded onto another number of envs: each env's running return starts at 0 (as SB3's set_venv)
            model.notes.append(
                f"{model.name}: the checkpoint's {returns.numel()} running returns (normalize_reward) do not fit "
                f"n_envs={model.config.n_envs}: each env's starts at 0; the statistics are kept"
            )
    model._resume_log = state.get("log")
    freq, target = state.get("checkpoint_freq"), state.get("target_timesteps")
    model.checkpoint_freq = freq if isinstance(freq, int) and not isinstance(freq, bool) and freq > 0 else None
    model.target_timesteps = target if isinstance(target, int) and not isinstance(target, bool) else None
    replay = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("replay.safetensors/")}
    if replay:
        try:
            model.replay = ReplayBuffer.from_state(
                replay,
                model.config.buffer_size,
                model.observation_space,
                model.action_space,
                model.device,
                model.generator,
            )
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"corrupt checkpoint: replay.safetensors does not fit this model ({e})") from None


def load(
    path: str | os.PathLike | IO[bytes], env: EnvLike | None = None, device: str | None = None, **kwargs: Any
) -> Algorithm:
    """Load any lucidrl model (the algorithm is read from the checkpoint; ``import lucidrl`` registered them all).
    ``path``: a checkpoint directory, a ``.zip``, or a binary file object holding one from its position."""
    return Algorithm.load(path, env=env, device=device, **kwargs)


def evaluate(
    model: Algorithm,
    env: EnvLike | None = None,
    n_episodes: int = 10,
    deterministic: bool = True,
    seed: int | None = 0,
    return_episode_returns: bool = False,
):
    """Play ``n_episodes`` full episodes with ``model.predict``; returns ``(mean, std)`` of the raw returns.

    The env is a fresh single env (``env`` or the model's env id), seeded with ``seed`` + episode
    index so evaluations are repeatable. Nothing in the model changes.
    """
    if n_episodes < 1:
        raise ConfigError(f"n_episodes must be >= 1, got {n_episodes}")
    if env is None:
        env = model.env_id
        if env is None:
            raise EnvError("evaluate needs an env: pass env= (the model was not trained on a registered env id)")
    if isinstance(env, gym.vector.VectorEnv):
        raise EnvError(
            "lucidrl.evaluate plays one env: pass an env id, a gymnasium.Env or a function that makes one; for a "
            "VectorEnv use lucidrl.evaluation.evaluate_policy(model, vec_env, n_eval_episodes)"
        )
    e = make_env(env)
    try:
        check_env_fits(model, e.observation_space, e.action_space, "evaluate")
        returns, _ = single_env_episodes(model, e, n_episodes, deterministic, seed=seed)
    finally:
        if not isinstance(env, gym.Env):
            e.close()
    mean, std = float(np.mean(returns)), float(np.std(returns))
    return (mean, std, returns) if return_episode_returns else (mean, std)
