"""Configuration plumbing shared by every algorithm: schedules, checks, presets, (de)serialisation.

An algorithm's hyperparameters are a dataclass in its own file (``PPOConfig`` in ``algos/ppo.py``).
This module holds what all of them need:

* schedules: a hyperparameter such as the learning rate is a float or a callable of the
  *remaining progress* (1 at the start of training, 0 at the end), as in Stable-Baselines3;
  ``linear(x)`` is the common one and is written ``lin_<x>`` in presets and on the command line;
* small checks that raise :class:`~lucidrl.errors.ConfigError` with a useful message;
* the tuned presets, kept as data in ``lucidrl/presets/<algo>.yaml``;
* turning a config into JSON and back, refusing unknown keys and never evaluating code;
* the help text of each field, read from the docstring written under it (the CLI uses it).
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import difflib
import fnmatch
import functools
import inspect
import math
import numbers
import re
import textwrap
import types
import typing
from collections.abc import Callable
from importlib import resources
from typing import Any, cast

import numpy as np
import yaml

from lucidrl.errors import ConfigError

Schedule = Callable[[float], float]
"""A function of the remaining progress (1 -> 0) returning the value to use now."""

FloatOrSchedule = float | Schedule


# --------------------------------------------------------------------------- schedules
@dataclasses.dataclass(frozen=True)
class LinearSchedule:
    """Goes linearly from ``start`` (progress 1) to ``end`` (progress 0)."""

    start: float
    end: float = 0.0

    def __call__(self, progress_remaining: float) -> float:
        return self.end + progress_remaining * (self.start - self.end)

    def __repr__(self) -> str:
        return f"lin_{self.start:g}" if self.end == 0.0 else f"linear({self.start:g}, {self.end:g})"


def linear(start: float, end: float = 0.0) -> LinearSchedule:
    """A schedule that decays linearly from ``start`` to ``end`` over training (SB3's ``lin_<x>``)."""
    return LinearSchedule(float(start), float(end))


def value_at(x: FloatOrSchedule, progress_remaining: float) -> float:
    """The value of a float-or-schedule hyperparameter at the given remaining progress."""
    return float(x(progress_remaining)) if callable(x) else float(x)


def literal_or_text(text: str) -> Any:
    """``text`` read as a Python literal (``1``, ``0.5``, ``True``, ``None``, ``[64, 64]``, ``'x'``), else kept as
    text (``lin_1e-3``): how ``--env-kwargs`` and ``lucidrl compare``'s variants read a value. No code runs
    (``ast.literal_eval``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_schedule(text: str | float | int, name: str = "value") -> FloatOrSchedule:
    """Parse ``"3e-4"``, ``3e-4`` or ``"lin_3e-4"``. Never evaluates code."""
    if isinstance(text, bool):
        raise ConfigError(f"{name}: expected a number or 'lin_<number>', got {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    try:
        if s.startswith("lin_"):
            return linear(float(s[4:]))
        return float(s)
    except ValueError:
        raise ConfigError(
            f"{name}: cannot read {text!r}; write a number such as 3e-4 or a linear schedule such as lin_3e-4"
        ) from None


def schedule_to_json(x: FloatOrSchedule, name: str) -> float | str | dict:
    """JSON form of a float-or-schedule: a float, ``"lin_x"``, or a note for a custom callable."""
    if x is None:
        return None
    if isinstance(x, LinearSchedule):
        return {"linear": [x.start, x.end]} if x.end else f"lin_{x.start!r}"
    if callable(x):
        # A user's own function cannot be stored without pickling code; keep its start value.
        return {"custom_schedule": repr(x), "start_value": float(x(1.0))}
    return float(x)


def schedule_from_json(v: Any, name: str) -> FloatOrSchedule | None:
    if v is None or (isinstance(v, str) and v.lower() == "none"):
        return None
    try:
        if isinstance(v, dict) and "linear" in v:
            start, end = v["linear"]
            return linear(float(start), float(end))
        if isinstance(v, dict) and "start_value" in v:
            start = float(v["start_value"])
            import warnings

            warnings.warn(
                f"{name} was a custom schedule ({v.get('custom_schedule')}) that cannot be stored; "
                f"using its start value {start} as a constant. Pass {name}= to choose another.",
                stacklevel=3,
            )
            return start
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name}: cannot read the schedule {_short(v)}; write a number such as 3e-4, "
            f"'lin_3e-4', or {{'linear': [start, end]}}"
        ) from None
    return parse_schedule(v, name)


# --------------------------------------------------------------------------- checks
def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) when condition is false."""
    if not condition:
        raise ConfigError(message)


def check_schedule(x: FloatOrSchedule, name: str, low: float, high: float = float("inf"), low_open=False) -> None:
    """Check a float-or-schedule stays within [low, high] at the start and end of training."""
    if not callable(x) and (not isinstance(x, numbers.Real) or isinstance(x, bool)):
        raise ConfigError(
            f"{name} must be a finite number, 'lin_<number>' or a function of the remaining progress, got {_short(x)}"
        )
    for progress in (1.0, 0.0):
        try:
            v = value_at(x, progress)
        except Exception as e:  # a user's schedule that raises
            raise ConfigError(f"{name}: the schedule failed at progress {progress}: {e}") from None
        ok = (v > low if low_open else v >= low) and v <= high
        if not ok or not math.isfinite(v):
            bound = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            where = f" at progress {progress:g}" if callable(x) else ""  # a schedule's value at that point
            raise ConfigError(f"{name} must lie in {bound}, got {v:g}{where}")


def check_ints(config, names, minimum: int = 1) -> None:
    """Check that each named field of ``config`` is an integer (not a bool) >= ``minimum``."""
    for name in names:
        v = getattr(config, name)
        check(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
            f"{name} must be an integer >= {minimum}, got {v!r}",
        )


def check_network(net_arch, activation: str) -> list[int]:
    """Check the MLP fields every algorithm shares; returns ``net_arch`` as a list."""
    check(
        isinstance(net_arch, (list, tuple)) and all(isinstance(h, int) and h > 0 for h in net_arch),
        f"net_arch must be a list of positive layer sizes such as [64, 64], got {net_arch!r}",
    )
    check(activation in ("tanh", "relu", "elu"), f"activation must be tanh, relu or elu, got {activation!r}")
    return list(net_arch)


def check_log_std_init(value: float) -> None:
    """Check the Gaussian policy's initial log σ against the bounds the network keeps it in."""
    from lucidrl.networks import LOG_STD_MAX, LOG_STD_MIN

    check(
        LOG_STD_MIN <= value <= LOG_STD_MAX,
        f"log_std_init must lie in [{LOG_STD_MIN}, {LOG_STD_MAX}] (the bounds of log σ), got {value}",
    )


def check_normalization(config) -> None:
    """Check the normalisation fields the policy-gradient configs share (see lucidrl.envs.normalize)."""
    for name in ("normalize_obs", "normalize_reward"):
        check(isinstance(getattr(config, name), bool), f"{name} must be true or false, got {getattr(config, name)!r}")
    for name in ("clip_obs", "clip_reward"):
        v = getattr(config, name)
        check(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
            f"{name} must be a number > 0 (the bound of the normalised values), got {v!r}",
        )


# --------------------------------------------------------------------------- shared fields
BACKENDS = ("auto", "reference", "fast")
MATMUL_PRECISIONS = ("auto", "tf32", "ieee")


@dataclasses.dataclass
class RunConfig:
    """The fields every algorithm's config starts with: how a run is seeded, where and how it computes."""

    seed: int | None = None
    """Seed of torch, NumPy and the envs (None: drawn at random and recorded)."""
    device: str = "cpu"
    """'cpu', 'cuda' or 'auto'. Small MLP policies are fastest on the CPU."""
    backend: typing.Literal["auto", "reference", "fast"] = "auto"
    """How the update is computed: 'reference' (the algorithm's file, autograd), 'fast' (lucidrl.fast, the same
    numbers, written out for CPU speed; an error where it does not apply) or 'auto' (fast where it applies)."""
    torch_threads: int | str = "auto"
    """CPU threads for torch while learn() runs (restored after; NumPy's BLAS is held at 1, lucidrl.threads): 'auto'
    (1, or torch's current count for images of 64x64 pixels and more) or a number."""
    compile: bool = False
    """PPO and A2C: torch.compile the update's loss and, on a GPU, capture the rollout (torch envs), GAE and the update
    as CUDA graphs (docs/gpu.md)."""
    matmul_precision: typing.Literal["auto", "tf32", "ieee"] = "auto"
    """How a CUDA GPU computes float32 matrix products while learn() runs (restored after): 'tf32' (TensorFloat-32
    tensor cores, JAX's and TensorFlow's default), 'ieee' (full float32, PyTorch's default) or 'auto' (tf32 on a CUDA
    device). No effect on the CPU (lucidrl.threads.hold_matmul_precision)."""

    def __setattr__(self, name: str, value: Any) -> None:
        """Refuse a name that is no field (``model.config.gama = 0.5`` would otherwise set nothing that counts);
        values are checked before ``learn`` and ``save`` (``Algorithm._check_config``)."""
        if not name.startswith("_") and name not in {f.name for f in dataclasses.fields(self)}:
            names = [f.name for f in dataclasses.fields(self)]
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{type(self).__name__} has no hyperparameter {name!r}.{hint} Valid names: {', '.join(names)}"
            )
        object.__setattr__(self, name, value)

    def __post_init__(self):
        check(
            self.seed is None or (isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0),
            f"seed must be a non-negative integer or None, got {self.seed!r}",
        )
        check(
            isinstance(self.device, str) and re.fullmatch(r"auto|(cpu|cuda|mps|xpu)(:\d+)?", self.device) is not None,
            f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {_short(self.device)}",
        )
        check(self.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        check(
            self.torch_threads == "auto"
            or (
                isinstance(self.torch_threads, int)
                and not isinstance(self.torch_threads, bool)
                and self.torch_threads >= 1
            ),
            f"torch_threads must be 'auto' or an integer >= 1, got {self.torch_threads!r}",
        )
        check(isinstance(self.compile, bool), f"compile must be true or false, got {self.compile!r}")
        check(
            isinstance(self.matmul_precision, str) and self.matmul_precision in MATMUL_PRECISIONS,
            f"matmul_precision must be one of {', '.join(MATMUL_PRECISIONS)}, got {_short(self.matmul_precision)}",
        )


@dataclasses.dataclass
class NormalizationConfig(RunConfig):
    """RunConfig plus the observation / reward normalisation fields of the policy-gradient algorithms."""

    normalize_obs: bool = False
    """Deviation: normalise observations by a running mean and std, clipped to ±clip_obs (SB3 VecNormalize's norm_obs;
    presets: normalize)."""
    normalize_reward: bool = False
    """Deviation: divide rewards by the running std of the discounted return, clipped to ±clip_reward (SB3's
    norm_reward)."""
    clip_obs: float = 10.0
    """Bound of the normalised observations, ±clip_obs (SB3's default 10)."""
    clip_reward: float = 10.0
    """Bound of the scaled rewards, ±clip_reward (SB3's default 10)."""

    def __post_init__(self):
        super().__post_init__()
        check_normalization(self)


@dataclasses.dataclass
class OnPolicyConfig(NormalizationConfig):
    """NormalizationConfig plus where the rollouts are collected: the base of PPO's, A2C's, TRPO's and VPG's configs."""

    rollout_workers: int = 0
    """Ray actors that step the n_envs envs between them, each its share with the current weights, and send back their
    rollout segments (0: collect in this process). Needs pip install 'lucidrl[ray]' and an env id or picklable
    callable; see docs/scale.md."""

    def __post_init__(self):
        super().__post_init__()
        check_rollout_workers(self)


def check_rollout_workers(config) -> None:
    """``rollout_workers``: an integer from 0 to ``n_envs`` (an uneven split gives the first workers one env more).
    Whether Ray is installed is checked when the rollouts start (a checkpoint trained with workers loads
    without Ray)."""
    k, n_envs = config.rollout_workers, getattr(config, "n_envs", 1)
    check(
        isinstance(k, int) and not isinstance(k, bool) and k >= 0,
        f"rollout_workers must be an integer >= 0 (0: collect in this process), got {_short(k)}",
    )
    if k and isinstance(n_envs, int) and not isinstance(n_envs, bool) and n_envs >= 1:
        check(
            k <= n_envs,
            f"rollout_workers={k} is more than n_envs={n_envs}: each worker steps at least one env; "
            f"lower rollout_workers or raise n_envs",
        )


# --------------------------------------------------------------------------- dataclass <-> dict
@functools.cache
def _type_hints(cls) -> dict[str, Any]:
    """The fields' types (evaluated once per config class: ``typing.get_type_hints`` compiles every annotation
    string anew, ~0.7 ms a call, and every ``learn`` checks the whole config)."""
    return typing.get_type_hints(cls)


def is_schedule_field(cls, name: str) -> bool:
    hint = _type_hints(cls)[name]
    return "Callable" in str(hint)


def config_to_dict(config) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (schedules become ``lin_x`` strings)."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = schedule_to_json(v, f.name) if is_schedule_field(type(config), f.name) else v
    return out


def _short(v: Any, limit: int = 80) -> str:
    """``repr(v)``, cut to ``limit`` characters: an error message quotes the value, not a megabyte of it."""
    try:
        text = repr(v)
    except Exception:  # a user's object whose repr fails
        text = f"<{type(v).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_WORDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
_LISTS: dict[Any, str] = {
    int: "a list of integers such as [64, 64]",
    float: "a list of finite numbers such as [-2.4, 2.4]",
}


def _expected(hint: Any) -> str:
    """What a field of type ``hint`` takes, in words: 'an integer', 'one of 'clip', 'kl_penalty''..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple):
        return _LISTS.get(args[0] if args else None, "a list")
    if origin is collections.abc.Callable:
        return "a function"
    if len(args) == 2 and int in args and str in args:
        return "an integer or a word such as 'auto'"
    if origin in (typing.Union, types.UnionType):
        words = [_expected(a) for a in args if a is not type(None)] + (["None"] if type(None) in args else [])
        return " or ".join(words)
    return _WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def _fits(hint: Any, v: Any) -> bool:
    """Whether ``v`` is a value of the annotation ``hint`` (floats finite, bools not integers)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, v) for a in args)
    if origin is typing.Literal:
        return isinstance(v, str) and v in args
    if origin in (list, tuple):
        return isinstance(v, (list, tuple)) and (not args or all(_fits(args[0], x) for x in v))
    if origin is collections.abc.Callable:
        return callable(v) and not isinstance(v, type)
    if hint is type(None):
        return v is None
    if hint is bool:
        return isinstance(v, bool)
    if hint is int:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)
    if hint is float:
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    if hint is str:
        return isinstance(v, str)
    return True  # a type this check does not know: the dataclass's own __post_init__ judges it


def _plain(v: Any) -> Any:
    """NumPy scalars (also inside a list or tuple) as Python ones: ``np.int64(8)`` is an integer to a config."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)) and any(isinstance(x, np.generic) for x in v):
        return type(v)(x.item() if isinstance(x, np.generic) else x for x in v)
    return v


def check_field_types(cls, values: dict[str, Any]) -> None:
    """Check each value against its field's annotation; a ConfigError names the first field that does not fit,
    what it takes and an example.

    ``config_from_dict`` calls it when ``__post_init__`` failed with another exception (a value of the
    wrong type reached a comparison or a format string: a ``TypeError`` that names neither the field nor
    the fix) and after ``__post_init__`` accepted the values (a field it does not check). NaN and inf are
    refused (None turns a field off where it may be None).
    """
    hints = _type_hints(cls)
    defaults = {f.name: _default(f) for f in dataclasses.fields(cls)}
    for name, v in values.items():
        hint = hints[name]
        if _fits(hint, v):
            continue
        expected = _expected(hint)
        if is_schedule_field(cls, name):  # what parse_schedule and check_schedule take
            expected = "a finite number, 'lin_<number>' or a function of the remaining progress" + (
                " or None" if type(None) in typing.get_args(hint) else ""
            )
        got = f"the string {_short(v)}" if isinstance(v, str) else _short(v)
        example = "" if defaults[name] is None else f"; for example {name}={defaults[name]!r}"
        raise ConfigError(f"{name} must be {expected}, got {got}{example}")


def config_from_dict(cls, values: dict[str, Any], context: str = "") -> Any:
    """Build ``cls`` from a dict (JSON, YAML, CLI), refusing unknown keys with a suggestion and values of
    the wrong type with the field's name and what it takes (``check_field_types``)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{cls.__name__}{context}: expected a mapping of hyperparameters, got {_short(values)}")
    names = [f.name for f in dataclasses.fields(cls)]
    if "normalize" in values and "normalize_obs" in names:
        values = zoo_normalize(values, context)
    kwargs = {}
    for k, v in values.items():
        if not isinstance(k, str) or k not in names:
            close = difflib.get_close_matches(k, names, n=1) if isinstance(k, str) else []
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{cls.__name__} has no hyperparameter {k!r}{context}.{hint} Valid names: {', '.join(names)}"
            )
        kwargs[k] = schedule_from_json(v, k) if is_schedule_field(cls, k) and not callable(v) else v
    kwargs = {k: _plain(v) for k, v in kwargs.items()}
    try:
        config = cls(**kwargs)  # __post_init__'s own checks speak first: they know each field's range
    except ConfigError:
        raise
    except Exception as e:  # a value of the wrong type reached a comparison or a format string there
        check_field_types(cls, kwargs)  # names the field and what it takes
        raise ConfigError(f"{cls.__name__}{context}: {e}") from None
    check_field_types(cls, kwargs)  # what __post_init__ let through (an unchecked field, inf, a string for a bool)
    return config


def zoo_normalize(values: dict[str, Any], context: str = "") -> dict[str, Any]:
    """Translate rl-baselines3-zoo's ``normalize`` setting into lucidrl's fields.

    The zoo writes ``normalize: true`` (observations and rewards, as SB3's VecNormalize
    defaults) or a dict, or its string form, of VecNormalize arguments:
    ``"{'norm_obs': True, 'norm_reward': False}"``; ``norm_obs``, ``norm_reward``,
    ``clip_obs`` and ``clip_reward`` map to ``normalize_obs``, ``normalize_reward``,
    ``clip_obs`` and ``clip_reward``; ``gamma`` is dropped, since lucidrl always uses the
    algorithm's γ (as the zoo does). The string is read with ``ast.literal_eval``: no code runs.
    """
    values = dict(values)
    setting = values.pop("normalize")
    if isinstance(setting, str) and setting.strip().lower() in ("true", "false"):
        setting = setting.strip().lower() == "true"
    elif isinstance(setting, str):
        try:
            setting = ast.literal_eval(setting)
        except (ValueError, SyntaxError):
            setting = None
    if isinstance(setting, bool):
        setting = {"norm_obs": setting, "norm_reward": setting}
    if not isinstance(setting, dict):
        raise ConfigError(
            f"normalize{context}: expected true, false or a dict such as "
            f"{{'norm_obs': True, 'norm_reward': False}}, got {setting!r}"
        )
    names = {
        "norm_obs": "normalize_obs",
        "norm_reward": "normalize_reward",
        "clip_obs": "clip_obs",
        "clip_reward": "clip_reward",
    }
    for k, v in setting.items():
        if k == "gamma":
            continue
        if k not in names:
            raise ConfigError(f"normalize{context}: unknown VecNormalize argument {k!r}; known: {', '.join(names)}")
        values.setdefault(names[k], v)  # an explicit normalize_obs=... wins over the zoo setting
    return values


def _default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (its default_factory called where it has one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    factory = f.default_factory
    return factory() if callable(factory) else None  # (MISSING: a field without a default)


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """The docstring written under each dataclass field (``x: int = 1`` then ``\"\"\"help\"\"\"``)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cast(type, klass))))
        except (OSError, TypeError):
            continue
        first = tree.body[0]
        if not isinstance(first, ast.ClassDef):
            continue
        body = first.body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


# --------------------------------------------------------------------------- presets
def _read_presets(filename: str) -> dict[str, dict[str, Any]]:
    try:
        text = resources.files("lucidrl.presets").joinpath(filename).read_text()
    except FileNotFoundError:
        return {}
    return yaml.safe_load(text) or {}


@functools.cache
def load_presets(algo: str) -> dict[str, dict[str, Any]]:
    """All presets of one algorithm: ``{name: {"source": str, "n_timesteps": int, "hyperparams": {...},
    "not_honoured": [str, ...]}}``.

    Two files: ``<algo>_zoo.yaml``, every rl-baselines3-zoo entry translated field by field
    (generated by ``benchmarks/zoo_presets.py``), and ``<algo>.yaml``, lucidrl's own presets, which win
    for the same name (the zoo's entry they shadow is kept as ``zoo/<env id>``).
    """
    return {**_read_presets(f"{algo}_zoo.yaml"), **_read_presets(f"{algo}.yaml")}


def get_preset(algo: str, name: str) -> dict[str, Any]:
    presets = load_presets(algo)
    if name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"No {algo} preset named {name!r}.{hint} `lucidrl presets {algo}` lists them "
            f"({len(presets)}); or use preset=False (CLI: --preset none) for the plain defaults."
        )
    return presets[name]


def preset_for_env(algo: str, env_id: str) -> str | None:
    """The name of the preset for ``env_id``: the one named exactly so, else the first pattern key that
    matches it (shell-style, e.g. ``ALE/*`` for every Atari game of ale-py's namespace), else None."""
    presets = load_presets(algo)
    if env_id in presets:
        return env_id
    for key in presets:
        if any(c in key for c in "*?[") and fnmatch.fnmatchcase(env_id, key):
            return key
    return None


def resolve_config(
    algo: str, cls, env_id: str | None, preset: bool | str, overrides: dict[str, Any], notes: list[str] | None = None
):
    """Build the config: the preset for ``env_id`` (or the named one), then the user's values on top.

    Settings derived from others adapt to the user's values (``adapt_batch_size``); what the preset
    does not honour and what was adapted are appended to ``notes`` (the model logs them).
    Returns ``(config, preset_name_or_None, preset_source_or_None)``.
    """
    name = None
    if preset is True and env_id is not None:
        name = preset_for_env(algo, env_id)
    elif isinstance(preset, str):
        name = preset
    elif preset is not True and preset is not False and preset is not None:
        raise ConfigError(f"preset must be True, False or a preset name, got {_short(preset)}")
    preset_values: dict[str, Any] = {}
    source = None
    if name is not None:
        p = get_preset(algo, name)
        preset_values = dict(p.get("hyperparams", {}))
        source = p.get("source")
        if p.get("not_honoured") and notes is not None:
            notes.append(f"{algo}: preset {name!r} does not honour: " + "; ".join(map(str, p["not_honoured"])))
    values = {**preset_values, **overrides}
    values = adapt_batch_size(cls, preset_values, overrides, values, notes)
    context = f" (preset {name!r})" if name and not overrides else ""
    return config_from_dict(cls, values, context), name, source


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def adapt_batch_size(
    cls,
    preset_values: dict[str, Any],
    overrides: dict[str, Any],
    values: dict[str, Any],
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """``values`` with ``batch_size`` adapted when the user changed ``n_envs`` or ``n_steps`` but not ``batch_size``
    and the rollout (``n_steps * n_envs``) is no longer a whole number of minibatches of it.

    The preset's number of minibatches per epoch is kept where it divides the new rollout (the preset's
    8 envs x 32 steps in one minibatch of 256 become, with ``n_envs=2``, one of 64); else the batch is
    the largest divisor of the rollout not above the old one. A value the user set is never changed (their
    own conflicting values meet the config's ConfigError); what changed is appended to ``notes``.
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    if (
        not {"batch_size", "n_steps", "n_envs"} <= set(names)
        or "batch_size" in overrides
        or not {"n_envs", "n_steps"} & set(overrides)
    ):
        return values

    def get(d, k):
        return d.get(k, names[k].default)

    batch, n_steps, n_envs = get(values, "batch_size"), get(values, "n_steps"), get(values, "n_envs")
    before = (get(preset_values, "n_steps"), get(preset_values, "n_envs"))
    if not all(map(_whole, (batch, n_steps, n_envs, *before))) or n_steps * n_envs < 2:
        return values  # the config's own checks name what is wrong
    rollout = n_steps * n_envs
    if rollout % batch == 0:
        return values
    per_epoch = max(1, before[0] * before[1] // batch)  # minibatches per epoch the preset (or the defaults) made
    if rollout % per_epoch == 0 and rollout // per_epoch >= 2:
        new = rollout // per_epoch
    else:
        new = max((d for d in range(2, min(batch, rollout) + 1) if rollout % d == 0), default=rollout)
    origin = "the preset's" if "batch_size" in preset_values else "the default"
    if notes is not None:
        notes.append(
            f"batch_size {batch} -> {new}: {origin} batch_size does not divide the rollout of your "
            f"n_steps * n_envs = {n_steps} * {n_envs} = {rollout}; now {rollout // new} minibatch(es) of "
            f"{new} per epoch (it was {per_epoch}). Pass batch_size= to choose another."
        )
    return {**values, "batch_size": new}
