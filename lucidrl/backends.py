"""Choosing how an algorithm computes its update: the reference, or the fast CPU backend.

Every algorithm file in ``lucidrl/algos/`` defines its update as a function of the reference
networks (``ppo_update(agent, optimizer, batch, cfg, ...)``) and picks it once:

    self._update = self._select_backend("ppo", ppo_update)

which comes here. ``lucidrl.fast`` registers, for some of these names, a function with the same
signature and the same results (``tests/math/test_backends.py`` proves it), written for speed on
the CPU, together with a check of which configurations it supports. The config's ``backend``
decides:

* ``"reference"``: the algorithm file's own function, always;
* ``"fast"``: the registered twin; a configuration it does not support is a ConfigError that
  names what is unsupported;
* ``"auto"`` (the default): the twin where it supports the configuration, else the reference.

Algorithm files never import ``lucidrl.fast``, and neither does this module: ``lucidrl/__init__``
imports it after the algorithms, and its modules call ``register`` (so ``fast`` may reuse the
reference's pure functions without an import cycle). Both backends read and write the same networks and the
same ``torch.optim`` state, so a checkpoint written under one loads and continues under the other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lucidrl.errors import ConfigError


@dataclass(frozen=True)
class FastPath:
    """A fast twin of a reference function: ``unsupported(model)`` says why it cannot run (None: it can)."""

    function: Callable
    unsupported: Callable[[Any], str | None]


_FAST: dict[str, FastPath] = {}
_COMPILED: dict[str, FastPath] = {}


def register(name: str, function: Callable, unsupported: Callable[[Any], str | None]) -> None:
    """Called by ``lucidrl.fast`` for each of its twins."""
    _FAST[name] = FastPath(function, unsupported)


def register_compiled(
    name: str, factory: Callable[[Any, Callable], Callable], unsupported: Callable[[Any], str | None]
) -> None:
    """Called by ``lucidrl.fast.compiled``: ``factory(model, reference)`` makes the compiled twin of ``reference``."""
    _COMPILED[name] = FastPath(factory, unsupported)


def select(name: str, reference: Callable, model: Any) -> tuple[Callable, str]:
    """The function to run for ``name`` under ``model.config.backend``, and a line saying which and why.

    With ``compile=True`` in the config: the compiled twin where ``lucidrl.fast.compiled`` has one (the
    reference's own loss, compiled, and captured as a CUDA graph on a GPU), else the reference itself
    (the fast CPU twins are NumPy code that neither compiles nor runs on a GPU)."""
    if getattr(model.config, "compile", False):
        path = _COMPILED.get(name)
        if path is None:
            return reference, f"{name}: reference ({_where(reference)}), compile=True"
        reason = path.unsupported(model)
        if reason is not None:
            raise ConfigError(
                f"compile=True: the compiled {name} does not support {reason}; set compile=False or change that setting"
            )
        graphs = " and captured as a CUDA graph" if model.device.type == "cuda" else ""
        return path.function(model, reference), f"{name}: {_where(reference)}, compiled{graphs} (lucidrl.fast.compiled)"
    backend = model.config.backend
    if backend == "reference":
        return reference, f"{name}: reference ({_where(reference)}), as asked"
    path = _FAST.get(name)
    if path is None:
        if backend == "fast":
            raise ConfigError(
                f"backend='fast': {name} has no fast backend (its reference is all there is); "
                "use backend='auto' or backend='reference'"
            )
        return reference, f"{name}: reference ({_where(reference)}); it has no fast backend"
    reason = path.unsupported(model)
    if reason is None:
        return path.function, f"{name}: fast backend ({_where(path.function)})"
    if backend == "fast":
        raise ConfigError(
            f"backend='fast': the fast backend of {name} does not support {reason}; "
            "use backend='auto' (fast where it applies) or backend='reference'"
        )
    return reference, f"{name}: reference ({_where(reference)}); the fast backend does not support {reason}"


def inductor_enabled(config: Any) -> bool:
    """Whether ``compile=True`` also runs ``torch.compile`` (inductor) over the loss and the rollout step.
    ``LUCIDRL_TORCH_COMPILE=0`` keeps the CUDA graphs and skips inductor: no compile time, for short runs where
    it would not pay (docs/gpu.md)."""
    return getattr(config, "compile", False) is True and os.environ.get("LUCIDRL_TORCH_COMPILE", "1") != "0"


def _where(function: Callable) -> str:
    return f"{function.__module__}.{function.__qualname__}"
