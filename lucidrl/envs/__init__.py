"""Building Gymnasium environments the way every lucidrl algorithm needs them.

``make_vec_env`` accepts what a user has at hand (an env id, an env instance, a callable that
builds one, or a ready ``gymnasium.vector.VectorEnv``) and returns a seeded vector env of
``n_envs`` copies. It prefers Gymnasium's native vectorised implementation when the env
registers one (CartPole's ``vector_entry_point`` steps all copies in one NumPy call) for 4 or
more copies (``NATIVE_MIN_ENVS``: for fewer, a loop over plain envs is faster), and otherwise a
``SyncVectorEnv`` (or ``AsyncVectorEnv`` on request) in *same-step* autoreset mode.

Autoreset modes (Gymnasium >= 1.1) decide where the last observation of an episode appears:

* ``SAME_STEP``: the step that ends an episode returns the first observation of the next
  one and puts the final observation in ``info["final_obs"]``.
* ``NEXT_STEP``: the step that ends an episode returns the final observation; the *next*
  ``step`` call ignores its action, resets that copy and returns reward 0. Gymnasium's native
  vector envs (CartPole's included) only offer this mode.

``lucidrl.rollout`` handles both exactly (see its docstring); ``autoreset_mode(env)`` tells
which one a vector env uses.

Atari ids (``"ALE/Pong-v5"``, ``"PongNoFrameskip-v4"``) are built by ``lucidrl.envs.atari``
with the DQN paper's preprocessing: ``make_vec_env`` (training) clips the rewards to their
sign, ``make_env`` (evaluation, play, video) does not; the raw game score is recorded by
``RecordEpisodeStatistics`` and read back by ``episode_scores``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import json
import math
import os
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from lucidrl.envs.atari import is_atari_spec, looks_like_atari_id, make_atari_env, register_atari_envs
from lucidrl.envs.structured import FlattenStructured, is_structured
from lucidrl.errors import ConfigError, EnvError, MissingDependencyError

EnvLike = str | gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv
Vectorization = Literal["auto", "native", "sync", "async", "torch"]

# Which extra installs what an env family needs (used in the missing-dependency message).
_EXTRAS = {"box2d": "box2d", "mujoco": "mujoco", "ale_py": "atari", "atari": "atari", "pygame": "box2d"}


class EnvId(str):
    """An env id with the constructor arguments its envs are made with: ``EnvId("FrozenLake-v1",
    {"is_slippery": False})`` is ``gymnasium.make("FrozenLake-v1", is_slippery=False)`` wherever lucidrl builds
    an env from the id (training copies, evaluation, rollout workers, a loaded model). It is the id string
    itself (presets are looked up by it), and ``kwargs`` travel with it, also when pickled to Ray workers.

    ``max_episode_steps`` is one of them where it differs from the registered time limit (``gymnasium.make``
    takes it as a keyword). Atari's training-only ``clip_reward`` and ``terminal_on_life_loss`` are left out
    of the envs ``make_env`` builds for evaluation, which play whole games for the game's score."""

    kwargs: dict[str, Any]

    def __new__(cls, env_id: str, kwargs: Mapping[str, Any] | None = None):
        self = super().__new__(cls, env_id)
        self.kwargs = dict(kwargs or {})
        return self

    def __reduce__(self):
        return (type(self), (str(self), self.kwargs))

    def __repr__(self) -> str:
        return f"EnvId({str(self)!r}, {self.kwargs!r})" if self.kwargs else repr(str(self))

    def json_kwargs(self) -> tuple[dict[str, Any], list[str]]:
        """The kwargs that JSON can store (a checkpoint's), and the names of those it cannot."""
        stored, dropped = {}, []
        for key, value in self.kwargs.items():
            try:
                json.dumps(value, allow_nan=False)
                stored[key] = value
            except (TypeError, ValueError):
                dropped.append(key)
        return stored, dropped


class SavedEnvId(EnvId):
    """An env id read from a model file (with its saved kwargs). Envs are built from it, but a ``module:EnvId``
    prefix, which makes Gymnasium import that module, is refused: loading a model never runs code the file names."""


def saved_env_id(config: dict[str, Any]) -> SavedEnvId | None:
    """The env id of a checkpoint's config.json with its saved ``env_kwargs``; None for a model saved without one."""
    env_id, kwargs = config.get("env_id"), config.get("env_kwargs")
    return SavedEnvId(env_id, kwargs if isinstance(kwargs, dict) else {}) if isinstance(env_id, str) else None


def as_env_kwargs(env_kwargs: Any) -> dict[str, Any]:
    """``env_kwargs`` if it is a dict keyed by argument names (a checkpoint's config.json takes only those), else a
    ConfigError."""
    if not (isinstance(env_kwargs, dict) and all(isinstance(k, str) and k.isidentifier() for k in env_kwargs)):
        raise ConfigError(f"env_kwargs must be a dict of keyword arguments, got {env_kwargs!r}")
    return env_kwargs


def with_env_kwargs(env_id: str, env_kwargs: Any) -> EnvId:
    """``env_id`` (an id or an :class:`EnvId`) with ``env_kwargs`` (checked) on top of its own arguments."""
    return EnvId(env_id, {**getattr(env_id, "kwargs", {}), **as_env_kwargs(env_kwargs)})


def with_saved_kwargs(env: Any, saved: str | None) -> Any:
    """``env`` as given, but a bare id equal to the ``saved`` one (a model's :class:`EnvId`) with the arguments it
    was saved with: ``load(path, env="FrozenLake-v1")`` or ``--env FrozenLake-v1`` name the model's own env (as the
    error for a ``module:EnvId`` id asks), not the registered default. An ``EnvId`` or an instance is the caller's."""
    if type(env) is str and isinstance(saved, EnvId) and saved.kwargs and env == saved:
        return EnvId(env, saved.kwargs)
    return env


_NOT_KWARGS = ("render_mode",)  # how an env is shown, not which env it is


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.all(a == b)) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else bool(a == b)
    except Exception:  # values that cannot be compared count as changed
        return False


def env_id_of(env: EnvLike) -> str | None:
    """The registered id of ``env`` if it has one (used to pick presets and to rebuild envs, also on load): an
    :class:`EnvId` with the constructor arguments of ``env``'s spec that differ from the registered ones
    (``gymnasium.make("FrozenLake-v1", is_slippery=False)`` -> ``EnvId("FrozenLake-v1", {"is_slippery": False})``)."""
    if isinstance(env, str):
        return env
    spec = getattr(env, "spec", None)
    env_id = getattr(spec, "id", None)
    if spec is None or env_id is None:
        return None
    try:
        registered = gym.spec(env_id)
    except gym.error.Error:  # (an id no longer in the registry: nothing to compare with)
        return env_id
    changed = {
        k: v
        for k, v in (spec.kwargs or {}).items()
        if k not in _NOT_KWARGS and not (k in registered.kwargs and _same(registered.kwargs[k], v))
    }
    if is_atari_spec(spec):
        changed.pop("frameskip", None)  # lucidrl.envs.atari sets it to 1 itself (its wrapper skips frames)
    if spec.max_episode_steps != registered.max_episode_steps and spec.max_episode_steps is not None:
        changed["max_episode_steps"] = spec.max_episode_steps
    return EnvId(env_id, changed) if changed else env_id


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The spec of a registered env id, or an EnvError that suggests the closest ids."""
    if ":" in env_id and isinstance(env_id, SavedEnvId):
        raise EnvError(
            f"the model file names its env {str(env_id)!r}, whose prefix is a module for Gymnasium to import; "
            "lucidrl does not import code that a model file names. If you trust that module, pass the env "
            f"yourself: load(path, env={str(env_id)!r}), model.set_env(...), or --env on the command line"
        )
    if ":" in env_id:  # "module:EnvId" imports the module that registers it (as gymnasium.make does; gym.spec not)
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not f"{module}.".startswith(f"{e.name}."):
                raise  # the module is there, and something it imports is missing
            raise EnvError(
                f"the env id {module}:{env_id} names the module {module!r} to import, which is not found ({e}); "
                "put it on the Python path (run from its folder, or set PYTHONPATH)"
            ) from None
    if looks_like_atari_id(env_id):
        register_atari_envs()  # Gymnasium >= 1.0 registers ale-py's ids only when asked; names the extra if missing
    elif env_id not in gym.registry:
        try:  # maybe one of ale-py's other names ("Pong-v4")
            register_atari_envs()
        except MissingDependencyError:
            pass
    try:
        return gym.spec(env_id)
    except gym.error.Error as e:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise EnvError(
            f"Unknown environment id {env_id!r} ({e}).{hint} "
            'List the registered ids with `python -c "import gymnasium; gymnasium.pprint_registry()"`; '
            "Atari, Box2D and MuJoCo ids need `pip install 'lucidrl[atari]'`, '[box2d]' or '[mujoco]'."
        ) from None


def _missing_dependency(env_id: str, e: Exception) -> MissingDependencyError:
    text = f"{e}".lower()
    extra = next((x for k, x in _EXTRAS.items() if k in text or k in env_id.lower()), None)
    fix = f"pip install 'lucidrl[{extra}]'" if extra else "install the package the message names"
    return MissingDependencyError(f"{env_id} needs a package that is not installed ({e}). Fix: {fix}")


_MAKE_KWARGS = ("max_episode_steps", "disable_env_checker", "render_mode")  # taken by gymnasium.make itself


def check_env_kwargs(env_id: str, spec: gym.envs.registration.EnvSpec, kwargs: dict[str, Any]) -> None:
    """An EnvError naming a keyword the env's constructor does not take (a typo in ``env_kwargs``), with a close
    match and the ones it takes, instead of the constructor's TypeError from inside Gymnasium. Nothing is checked
    where the constructor takes ``**kwargs`` or cannot be loaded here (a missing dependency is reported when the env
    is made)."""
    if not kwargs:
        return
    try:
        entry: Any = spec.entry_point
        creator = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
        params = inspect.signature(creator).parameters
    except Exception:  # (a module that cannot be imported here, a builtin without a signature)
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    known = {name for name, p in params.items() if p.kind in named} | set(_MAKE_KWARGS)
    if is_atari_spec(spec):  # lucidrl.envs.atari's own: clip_reward, terminal_on_life_loss, ...
        known |= {n for n, p in inspect.signature(make_atari_env).parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = [k for k in kwargs if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EnvError(
            f"{env_id} takes no argument {', '.join(map(repr, unknown))}{hint}; its arguments: "
            f"{', '.join(sorted(known))}"
        )


def _sb3_vec_env(env: Any) -> str:
    """For an env object of SB3's ``stable_baselines3.common.vec_env``: what lucidrl takes in its place (with a
    leading "; "); "" for anything else. lucidrl trains on Gymnasium's VectorEnv (docs/sb3.md)."""
    if not type(env).__module__.startswith("stable_baselines3.common.vec_env"):
        return ""
    name, inner = type(env).__name__, env
    while hasattr(inner, "venv"):  # the wrapped VecEnvs, outside in: VecNormalize(VecFrameStack(DummyVecEnv))
        inner = inner.venv
        name += f"({type(inner).__name__}"
    name += ")" * name.count("(")
    chain = name.replace("(", " ").replace(")", " ").split()
    if "VecNormalize" in chain:
        what = ("pass the env (an id or a callable) with normalize_obs=True, normalize_reward=True (and clip_obs=, "
                "clip_reward= as SB3's): the statistics are saved with the model (docs/normalization.md)")  # fmt: skip
    elif "VecFrameStack" in chain or "VecTransposeImage" in chain:
        what = ("pass the Atari id (e.g. 'ALE/Breakout-v5'): lucidrl applies SB3's Atari preprocessing and the "
                "4-frame stack itself (docs/atari.md)")  # fmt: skip
    else:
        what = ("pass the env id or a callable with n_envs=N (vectorization='sync' or 'async', as DummyVecEnv and "
                "SubprocVecEnv), or a gymnasium.vector.SyncVectorEnv / AsyncVectorEnv")  # fmt: skip
    return f"; {name} is Stable-Baselines3's VecEnv, and lucidrl trains on Gymnasium's vector envs: {what}"


def make_env(env: EnvLike, **kwargs: Any) -> gym.Env:
    """One (non-vector) env from an id, an instance (returned as is) or a callable; a VectorEnv is refused."""
    if isinstance(env, gym.vector.VectorEnv):
        raise EnvError("make_env needs a single env, got a VectorEnv; pass its id or a callable instead")
    if isinstance(env, gym.Env):
        return env
    if callable(env):
        out = env()
        if not isinstance(out, gym.Env):
            raise EnvError(f"the env factory returned {type(out).__name__}, not a gymnasium.Env")
        return out
    if isinstance(env, str):
        spec = check_env_id(env)
        if isinstance(env, EnvId):  # the kwargs it was trained with; the caller's win
            saved = dict(env.kwargs)
            if is_atari_spec(spec):  # evaluation plays whole games for the game's score
                saved = {k: v for k, v in saved.items() if k not in ("clip_reward", "terminal_on_life_loss")}
            kwargs = {**saved, **kwargs}
        check_env_kwargs(env, spec, kwargs)
        try:
            if is_atari_spec(spec):  # evaluation and play: the preprocessing, but the game's own rewards
                return make_atari_env(env, **{"clip_reward": False, **kwargs})
            return gym.make(env, **kwargs)
        except gym.error.DependencyNotInstalled as e:
            raise _missing_dependency(env, e) from None
    raise EnvError(
        f"cannot build an env from {type(env).__name__}"
        + (_sb3_vec_env(env) or "; pass an env id, a gymnasium.Env or a callable")
    )


NATIVE_MIN_ENVS = 4
"""Below this many copies ``"auto"`` prefers a SyncVectorEnv to a native vector env. Measured on this
project's CPU (Gymnasium 1.4, CartPole-v1, the only classic env with a native one): the native env
takes ~27 us a step whatever the number of copies (its NumPy calls cost the same on 1 row or 16),
the SyncVectorEnv ~5 us per copy plus ~5 us: 10.6 us for 1 copy, 15.4 for 2, 26.4 for 4, 45 for 8."""


def make_vec_env(
    env: EnvLike,
    n_envs: int = 1,
    seed: int | None = None,
    vectorization: Vectorization = "auto",
    device: str | Any = "cpu",
    **kwargs: Any,
) -> gym.vector.VectorEnv:
    """A seeded vector env of ``n_envs`` copies of ``env``, reset once.

    vectorization: ``"auto"`` uses lucidrl's batched torch env (``lucidrl.envs.torch``) when ``device``
    is a GPU and the env id has one, else the env's native vector implementation when it registers
    one and ``n_envs >= NATIVE_MIN_ENVS``, else ``"sync"``; ``"native"`` insists on the native one;
    ``"sync"``/``"async"`` build a ``SyncVectorEnv``/``AsyncVectorEnv`` (one process per copy) in
    same-step autoreset mode; ``"torch"`` the batched torch env on ``device`` (five classic-control ids).

    SB3's ``make_vec_env`` keywords: ``env_kwargs`` (the env's constructor arguments, as plain keywords
    are) and ``wrapper_class`` / ``wrapper_kwargs`` (a wrapper put around each copy) are taken; the
    others name what to use instead (``vectorization`` for ``vec_env_cls``, for instance).

    Dict and Tuple observations come out flattened into one vector (``lucidrl.envs.structured``, as SB3's
    MultiInputPolicy concatenates its entries); the env's own space is ``venv.structured_space``.
    """
    kwargs, wrapper = _sb3_keywords(kwargs)
    if isinstance(env, EnvId):  # the constructor arguments that travel with the id; the caller's win
        kwargs = {**env.kwargs, **kwargs}
    if vectorization not in ("auto", "native", "sync", "async", "torch"):
        raise EnvError(f"vectorization must be 'auto', 'native', 'sync', 'async' or 'torch', got {vectorization!r}")
    if n_envs < 1:
        raise EnvError(f"n_envs must be >= 1, got {n_envs}")
    from lucidrl.envs.torch import has_torch_env, make_torch_vec_env

    on_gpu = str(device).split(":")[0] not in ("cpu", "auto")
    plain = not kwargs and wrapper is None  # "auto" takes the torch envs only for an id as it is
    if vectorization == "torch" or (
        vectorization == "auto" and on_gpu and isinstance(env, str) and has_torch_env(env) and plain
    ):
        if not isinstance(env, str):
            raise EnvError(
                "vectorization='torch' needs an env id (CartPole-v1, Acrobot-v1, Pendulum-v1, "
                "MountainCar-v0, MountainCarContinuous-v0), not an env object"
            )
        if kwargs or wrapper is not None:
            given = sorted(kwargs) + (["wrapper_class"] if wrapper is not None else [])
            raise EnvError(f"vectorization='torch' takes no env keyword arguments or wrappers, got {given}")
        return make_torch_vec_env(env, n_envs, device=device, seed=seed)
    same_step = {"autoreset_mode": AutoresetMode.SAME_STEP}

    if isinstance(env, gym.vector.VectorEnv):
        if wrapper is not None:
            raise EnvError("wrapper_class wraps each copy as it is made; this VectorEnv is already built")
        venv = env
    elif isinstance(env, str):
        spec = check_env_id(env)
        check_env_kwargs(env, spec, kwargs)
        atari = is_atari_spec(spec)
        native = spec.vector_entry_point is not None and not atari and wrapper is None
        if vectorization == "native" and wrapper is not None:
            raise EnvError("a native vector env has no copies to wrap; use vectorization='sync' with wrapper_class")
        if vectorization == "native" and atari:
            raise EnvError(
                f"lucidrl builds {env} with Gymnasium's preprocessing wrappers (lucidrl.envs.atari), not "
                "ale-py's native AtariVectorEnv; use vectorization='auto', 'sync' or 'async'"
            )
        if vectorization == "native" and not native:
            raise EnvError(f"{env} registers no native vector implementation; use vectorization='sync'")
        try:
            if atari:  # training: DQN-paper preprocessing with the rewards clipped to their sign
                cls = gym.vector.AsyncVectorEnv if vectorization == "async" else gym.vector.SyncVectorEnv
                make = functools.partial(make_atari_env, env, **{"clip_reward": True, **kwargs})
                venv = cls([_wrapped(make, wrapper)] * n_envs, autoreset_mode=AutoresetMode.SAME_STEP)
            elif native and (vectorization == "native" or (vectorization == "auto" and n_envs >= NATIVE_MIN_ENVS)):
                venv = gym.make_vec(env, n_envs, vectorization_mode="vector_entry_point", **kwargs)
            else:
                mode = "async" if vectorization == "async" else "sync"
                wrappers = None if wrapper is None else [wrapper]
                venv = gym.make_vec(
                    env, n_envs, vectorization_mode=mode, vector_kwargs=same_step, wrappers=wrappers, **kwargs
                )
        except gym.error.DependencyNotInstalled as e:
            raise _missing_dependency(env, e) from None
    elif isinstance(env, gym.Env):
        if n_envs != 1:
            raise EnvError(
                f"an env instance is one copy, but n_envs={n_envs} copies were asked for; "
                "pass the env id or a callable that builds the env (e.g. lambda: MyEnv()) instead"
            )
        one = env if wrapper is None else wrapper(env)
        venv = gym.vector.SyncVectorEnv([lambda: one], autoreset_mode=AutoresetMode.SAME_STEP)
    elif callable(env):
        cls = gym.vector.AsyncVectorEnv if vectorization == "async" else gym.vector.SyncVectorEnv
        venv = cls([_wrapped(env, wrapper)] * n_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    else:
        raise EnvError(
            f"cannot build an env from {type(env).__name__}"
            + (
                _sb3_vec_env(env)
                or "; pass an env id such as 'CartPole-v1', a gymnasium.Env, a callable returning one, or a "
                "gymnasium.vector.VectorEnv"
            )
        )
    autoreset_mode(venv)  # refuses DISABLED early
    if is_structured(venv.single_observation_space):  # Dict/Tuple observations: one flat vector from here on
        venv = FlattenStructured(venv)
    if seed is not None:
        venv.action_space.seed(seed)
    reset_vector_env(venv, seed)
    return venv


def reset_vector_env(venv: gym.vector.VectorEnv, seed: int | list[int] | None = None) -> tuple[Any, dict]:
    """``venv.reset(seed=seed)``; an env that breaks Gymnasium's API there is an EnvError (``env_api_error``).
    A list: one seed a copy (Sync/AsyncVectorEnv take it; VectorEnv.reset's annotation says int only)."""
    try:
        return venv.reset(seed=seed)  # type: ignore[arg-type]
    except (ValueError, TypeError) as e:
        if (err := env_api_error(venv, "reset", e)) is None:
            raise
        raise err from e


def env_api_error(venv: gym.vector.VectorEnv, call: str, e: Exception) -> EnvError | None:
    """An EnvError saying what an env returned wrong, for a ValueError/TypeError raised while a vector env
    gathered what its copies' ``reset`` or ``step`` returned (the old gym API, an observation of another shape);
    None for any other error (the env's own, which is re-raised as it is)."""
    # only errors raised where Gymnasium gathers the copies' results (its own code, or NumPy called from it);
    # one raised inside the env's own code is the env's and stays as it is
    frames = [f.filename for f in traceback.extract_tb(e.__traceback__)]
    own = [f for f in frames if f"{os.sep}numpy{os.sep}" not in f]
    if not own or f"{os.sep}gymnasium{os.sep}" not in own[-1]:
        return None
    text = str(e)
    space = venv.single_observation_space
    if call == "reset" and "too many values to unpack" in text:
        why = (
            "reset() must return (observation, info), Gymnasium's API since 0.26; "
            "the old gym API returned the observation alone"
        )
    elif call == "step" and "values to unpack (expected 5" in text:
        why = (
            "step() must return (observation, reward, terminated, truncated, info), Gymnasium's API since 0.26; "
            "the old gym API returned four values (observation, reward, done, info)"
        )
    elif "shape" in text or "broadcast" in text:
        why = f"an observation's shape differs from the observation space {space} the env declares"
        sub_envs = getattr(venv, "envs", None)
        if sub_envs and call == "reset":  # say which shape it was
            try:
                obs = sub_envs[0].reset()[0]
                why = f"reset() returned an observation of shape {np.shape(obs)}, but the observation space is {space}"
            except Exception:
                pass
    else:
        return None  # not a known mismatch: the env's own error stands
    return EnvError(f"the env's {call}() does not fit Gymnasium's API: {why}")


# SB3's make_vec_env keywords that lucidrl does not take, and what to use instead
_SB3_INSTEAD = {
    "vec_env_cls": "vectorization='sync' (DummyVecEnv) or 'async' (SubprocVecEnv, one process per copy)",
    "vec_env_kwargs": "vectorization='async' (Gymnasium's AsyncVectorEnv picks its start method itself)",
    "monitor_dir": "the run's metrics.csv (run_dir=...), which logs every episode's return and length",
    "monitor_kwargs": "the run's metrics.csv (run_dir=...), which logs every episode's return and length",
    "start_index": "seed=...: copy i is reset with seed + i",
}


def _sb3_keywords(kwargs: dict[str, Any]) -> tuple[dict[str, Any], Callable[[gym.Env], gym.Wrapper] | None]:
    """SB3's ``env_kwargs`` merged into the env's keywords, and ``wrapper_class(env, **wrapper_kwargs)`` as one
    callable (None without a wrapper); a clear error for SB3's other keywords."""
    for key, instead in _SB3_INSTEAD.items():
        if key in kwargs:
            raise ConfigError(f"make_vec_env: {key} is Stable-Baselines3's; lucidrl uses {instead}")
    kwargs = dict(kwargs)
    env_kwargs = kwargs.pop("env_kwargs", None) or {}
    wrapper_class = kwargs.pop("wrapper_class", None)
    wrapper_kwargs = kwargs.pop("wrapper_kwargs", None) or {}
    if not isinstance(env_kwargs, dict) or not isinstance(wrapper_kwargs, dict):
        raise ConfigError("make_vec_env: env_kwargs and wrapper_kwargs must be dicts of keyword arguments")
    if wrapper_kwargs and wrapper_class is None:
        raise ConfigError("make_vec_env: wrapper_kwargs given without a wrapper_class to pass them to")
    if wrapper_class is not None and not callable(wrapper_class):
        raise ConfigError(f"make_vec_env: wrapper_class must be a gymnasium.Wrapper class, got {wrapper_class!r}")
    wrapper = None if wrapper_class is None else functools.partial(wrapper_class, **wrapper_kwargs)
    return {**env_kwargs, **kwargs}, wrapper


def _wrapped(make: Callable[[], gym.Env], wrapper: Callable[[gym.Env], gym.Wrapper] | None) -> Callable[[], gym.Env]:
    """``make`` with ``wrapper`` put around what it builds."""
    return make if wrapper is None else lambda: wrapper(make())


def autoreset_mode(venv: gym.vector.VectorEnv) -> AutoresetMode:
    """SAME_STEP or NEXT_STEP; an EnvError for DISABLED (nothing would reset the copies)."""
    mode = venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if isinstance(mode, str):
        mode = AutoresetMode(mode)
    if mode == AutoresetMode.DISABLED:
        raise EnvError("this vector env has autoreset disabled; build it with AutoresetMode.SAME_STEP or NEXT_STEP")
    return mode


def episode_scores(info: dict, idx: np.ndarray, counted: np.ndarray) -> list[float]:
    """The returns of the episodes of copies ``idx`` that ended on this vector-env step.

    Where the env records them with ``gymnasium.wrappers.RecordEpisodeStatistics`` (lucidrl's
    Atari envs do, before clipping the rewards), the recorded score: the game's raw score, not
    the sum of the clipped rewards the agent trains on. Otherwise ``counted[idx]``, the sum of
    the rewards the collector received. SAME_STEP vector envs put the ending step's info under
    ``info["final_info"]``; NEXT_STEP ones return it as ``info``.
    """
    src = info.get("final_info", info) if isinstance(info, dict) else {}
    episode, mask = src.get("episode"), src.get("_episode")
    if isinstance(episode, dict) and "r" in episode and mask is not None and np.all(mask[idx]):
        return np.asarray(episode["r"], dtype=np.float64)[idx].tolist()
    return counted[idx].tolist()


def game_goes_on(info: dict, idx: np.ndarray) -> np.ndarray:
    """For the copies ``idx`` whose step ended: True where only a life was lost and the game plays on
    (``info["life_lost"]``, set by ``lucidrl.envs.atari.EpisodicLife``): terminated for learning, no episode end
    for the statistics."""
    src = info.get("final_info", info) if isinstance(info, dict) else {}
    lost, mask = src.get("life_lost"), src.get("_life_lost")
    if lost is None or mask is None:
        return np.zeros(len(idx), dtype=bool)
    return np.asarray(mask, dtype=bool)[idx] & np.asarray(lost, dtype=bool)[idx]


# --------------------------------------------------------------------------- spaces <-> JSON
def space_to_json(space: gym.Space) -> dict[str, Any]:
    """A JSON description of a Discrete, MultiDiscrete (with their start), MultiBinary or Box space (stored in
    checkpoints to rebuild networks)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": space.nvec.tolist(),
            "start": space.start.tolist(),
            "dtype": str(space.dtype),
        }
    if isinstance(space, gym.spaces.MultiBinary):
        # n as given, an int or a shape: Gymnasium's MultiBinary(5) != MultiBinary([5])
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, gym.spaces.Dict):  # the env's own Dict/Tuple (lucidrl.envs.structured), kept by checkpoints
        return {"type": "Dict", "spaces": {key: space_to_json(sub) for key, sub in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(sub) for sub in space.spaces]}
    if isinstance(space, gym.spaces.Box):

        def bound(a: np.ndarray):
            """One number for a uniform bound; runs of equal values for a long one of few runs (the flat row of a
            Dict with an image: 21,168 pixels bounded by 0 and 255 beside a few other entries); else every value."""
            if a.size and np.all(a == a.flat[0]):
                return a.flat[0].item()
            flat = a.reshape(-1)
            starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
            if flat.size >= 64 and len(starts) <= flat.size // 8:
                counts = np.diff(np.r_[starts, flat.size])
                return {"runs": [[flat[i].item(), int(n)] for i, n in zip(starts, counts)]}
            return a.tolist()

        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": bound(space.low),
            "high": bound(space.high),
        }
    raise EnvError(
        f"cannot describe space {space!r}: checkpoints store Discrete, MultiDiscrete, MultiBinary, Box, Dict and "
        "Tuple spaces only"
    )


def space_from_json(d: dict[str, Any], max_size: int | None = None) -> gym.Space:
    """The space ``space_to_json`` described. ``max_size``: a bound on its number of actions (Discrete), of
    one-hot entries (MultiDiscrete) or of numbers in an observation (Box, MultiBinary), checked before anything
    of that size is made (a ValueError above it)."""
    if d.get("type") == "Discrete":
        n = int(d["n"])
        _check_space_size(n, max_size)
        return gym.spaces.Discrete(n, start=int(d.get("start", 0)))
    if d.get("type") == "MultiDiscrete":
        nvec = np.asarray(d["nvec"], dtype=np.int64)
        _check_space_size(int(nvec.sum()), max_size)
        dtype = np.dtype(d.get("dtype", "int64"))
        start = np.broadcast_to(np.asarray(d.get("start", 0), dtype=np.int64), nvec.shape)
        return gym.spaces.MultiDiscrete(nvec, dtype=dtype, start=start)
    if d.get("type") == "MultiBinary":
        bits = np.asarray(d["n"], dtype=np.int64)
        _check_space_size(int(bits.prod()), max_size)
        return gym.spaces.MultiBinary(int(bits) if bits.ndim == 0 else bits.tolist())
    if d.get("type") == "Dict":
        # a list of pairs keeps the saved key order (a dict would be sorted), which is the order of the flat row
        return gym.spaces.Dict([(str(k), space_from_json(sub, max_size)) for k, sub in d["spaces"].items()])
    if d.get("type") == "Tuple":
        return gym.spaces.Tuple([space_from_json(sub, max_size) for sub in d["spaces"]])
    if d.get("type") == "Box":
        shape = tuple(int(s) for s in d["shape"])
        _check_space_size(math.prod(shape), max_size)
        dtype = np.dtype(d["dtype"])
        low, high = (_bound_from_json(d[key], shape) for key in ("low", "high"))
        return gym.spaces.Box(low.astype(dtype), high.astype(dtype), shape=shape, dtype=dtype)
    raise ValueError(f"unknown space description {d!r}")


def _bound_from_json(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A Box bound as ``space_to_json`` wrote it: a number, every value, or ``{"runs": [[value, count], ...]}``."""
    if isinstance(value, dict):
        values, counts = zip(*value["runs"]) if value["runs"] else ((), ())
        if any(int(n) < 1 for n in counts) or sum(int(n) for n in counts) != math.prod(shape):
            raise ValueError(f"the runs of a bound do not fill the shape {shape}")
        return np.repeat(np.asarray(values, dtype=np.float64), [int(n) for n in counts]).reshape(shape)
    return np.broadcast_to(np.asarray(value, dtype=np.float64), shape)


def _check_space_size(size: int, max_size: int | None) -> None:
    if max_size is not None and size > max_size:
        raise ValueError(f"a space of {size} numbers is larger than all the weights together ({max_size} numbers)")


# --------------------------------------------------------------------------- spaces at the env boundary
def discrete_start(space: gym.Space) -> int | np.ndarray:
    """The first value of a Discrete space (``Discrete(3, start=1)`` holds 1, 2, 3), or the first values of a
    MultiDiscrete's components (an array); 0 for any other space.

    lucidrl's networks and Q-tables index discrete observations and actions from 0. The env boundary
    shifts them, in two places only, both through :class:`DiscreteOffsets`: ``rollout.VectorStepper``
    (every training collector: on-policy, DQN, Q-learning) and ``Algorithm.predict`` (and so
    ``evaluate`` and the CLI's play). The model keeps the env's own spaces, start included
    (``model.observation_space``, ``model.action_space``, and in checkpoints via ``space_to_json``).
    """
    if isinstance(space, gym.spaces.Discrete):
        return int(space.start)
    if isinstance(space, gym.spaces.MultiDiscrete) and np.any(space.start):
        return space.start
    return 0


class DiscreteOffsets:
    """The shift between an env's Discrete (and MultiDiscrete) spaces and the 0-based indices the networks and
    tables use.

    ``obs_in`` / ``action_in``: the env's values -> 0-based; ``obs_out`` / ``action_out``: 0-based -> the env's.
    Each returns its input unchanged where the start is 0 (every space but a shifted Discrete or MultiDiscrete).
    """

    __slots__ = ("obs_start", "action_start")

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        # None where there is nothing to shift: the common case costs one comparison a step
        self.obs_start = self._shift(observation_space)
        self.action_start = self._shift(action_space)

    @staticmethod
    def _shift(space: gym.Space) -> int | np.ndarray | None:
        start = discrete_start(space)
        return start if np.any(start) else None

    def obs_in(self, obs):
        return obs if self.obs_start is None else obs - self.obs_start

    def action_out(self, actions):
        return actions if self.action_start is None else actions + self.action_start

    def obs_out(self, obs):
        return obs if self.obs_start is None else obs + self.obs_start

    def action_in(self, actions):
        return actions if self.action_start is None else actions - self.action_start


def space_error(
    algo: str, needs: str, space: gym.Space, role: Literal["observation", "action"], fix: str | None = None
) -> EnvError:
    """The EnvError for a space an algorithm does not take: ``"{algo} {needs}; got {space!r}. {fix}"``.

    ``fix`` (default: ``space_fix(space, role)``) says how to turn the space into one that is taken."""
    return EnvError(f"{algo} {needs}; got {space!r}. {fix or space_fix(space, role)}")


def space_fix(space: gym.Space, role: Literal["observation", "action"]) -> str:
    """How to make ``space`` usable as an observation or action space (a Gymnasium wrapper, as a rule)."""
    S = gym.spaces
    if role == "observation":
        if isinstance(space, (S.Dict, S.Tuple)):
            return "Flatten it into one Box with gymnasium.wrappers.FlattenObservation."
        if isinstance(space, S.MultiDiscrete):
            return (
                "Wrap the env with gymnasium.wrappers.FlattenObservation, which one-hot encodes each component "
                "(start included) into one flat Box."
            )
        if isinstance(space, S.MultiBinary):
            return "Wrap the env with gymnasium.wrappers.FlattenObservation to see it as a flat Box of 0/1."
        if isinstance(space, S.Box):
            return (
                "Flatten it with gymnasium.wrappers.FlattenObservation; an image must be (C, H, W) or (H, W, C) "
                "(gymnasium.wrappers.ResizeObservation and GrayscaleObservation shrink large frames)."
            )
        return (
            "Networks read fixed-size numbers: encode each observation with a gymnasium.ObservationWrapper "
            "whose observation_space is a Box (e.g. padded token ids or features) or a Discrete index."
        )
    if isinstance(space, S.Box):
        return (
            "Continuous (Box) actions are taken by the policy-gradient algorithms (PPO, A2C, TRPO, VPG), which "
            "use a diagonal Gaussian policy, e.g. lucidrl.PPO(env); or discretise the actions with a "
            "gymnasium.ActionWrapper whose action_space is Discrete(k)."
        )
    if isinstance(space, S.MultiDiscrete):
        return (
            "PPO, A2C, TRPO and VPG take a 1-D MultiDiscrete as it is; for the others expose one Discrete action "
            "per combination with a gymnasium.ActionWrapper: action_space = Discrete(prod(nvec)), "
            "action(a) = np.unravel_index(a, nvec) + start."
        )
    if isinstance(space, S.MultiBinary):
        return (
            "PPO, A2C, TRPO and VPG take a 1-D MultiBinary as it is; for the others expose one Discrete action "
            "per combination with a gymnasium.ActionWrapper (Discrete(2**n))."
        )
    return (
        "Expose a single Discrete action space (or, for PPO, A2C, TRPO and VPG, a 1-D Box of floats, MultiDiscrete "
        "or MultiBinary) with a gymnasium.ActionWrapper that translates its actions into the env's."
    )
