"""The callback contract of ``learn``, checked before training starts.

lucidrl calls ``callback(model, metrics)`` after every update, with the model and the dict of
that update's metrics (``loss/policy``, ``diag/approx_kl``, ...); returning ``False`` stops
training, anything else (``None``, ``True``) continues::

    def stop_at(model, metrics):
        return model.num_timesteps < 50_000   # False once 50k steps are done: stop

    model.learn(100_000, callback=stop_at)

Stable-Baselines3's callback objects (``BaseCallback`` and its subclasses, ``CallbackList``)
hook into SB3's own training loop (``self.locals``, ``self.training_env``, ...), which lucidrl
does not have; ``check_callback`` refuses them with a ``ConfigError`` that says what to pass
instead, before anything is written or trained, rather than failing after the first update.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from lucidrl.errors import ConfigError

Callback = Callable[[Any, dict], "bool | None"]

_CONTRACT = ("lucidrl's learn(callback=...) takes a function callback(model, metrics), called after every "
             "update, that returns False to stop training (None or True continues)")
_SB3_HOOKS = ("_on_step", "on_step", "init_callback")


def _name(obj: Any) -> str:
    return obj.__name__ if isinstance(obj, type) else type(obj).__name__


def check_callback(callback: Any) -> Callback | None:
    """Return ``callback`` when it fits lucidrl's contract (``None``, or a callable taking ``(model, metrics)``);
    raise :class:`~lucidrl.errors.ConfigError` saying what to pass otherwise."""
    if callback is None:
        return None
    if isinstance(callback, (list, tuple)):
        raise ConfigError(
            f"{_CONTRACT}; got a {type(callback).__name__} of {len(callback)} callbacks. Pass one function; to run "
            "several, combine them: callback=lambda model, metrics: all([cb(model, metrics) is not False for cb in "
            "callbacks])")
    if any(hasattr(callback, hook) for hook in _SB3_HOOKS):
        raise ConfigError(
            f"{_CONTRACT}; got {_name(callback)}, a Stable-Baselines3-style callback object (it has "
            f"{', '.join(h for h in _SB3_HOOKS if hasattr(callback, h))}), which needs SB3's training loop. "
            "Write the check as a function instead, e.g. def callback(model, metrics): return "
            "model.num_timesteps < 50_000; for periodic checkpoints use learn(..., checkpoint_freq=N) with a run_dir")
    if not callable(callback):
        raise ConfigError(f"{_CONTRACT}; got {_name(callback)} {callback!r:.80}, which is not callable")
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):  # a builtin or extension callable without a signature: trust it
        return callback
    try:
        signature.bind(object(), {})
    except TypeError:
        raise ConfigError(f"{_CONTRACT}; {getattr(callback, '__qualname__', _name(callback))}{signature} cannot be "
                          "called with the two arguments (model, metrics)") from None
    return callback
