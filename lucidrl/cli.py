"""The ``lucidrl`` command: train, eval, plot, presets.

The CLI only parses arguments into a config and calls the Python API (the same code path).
Every hyperparameter flag is generated from the algorithm's config dataclass, with the help
text written under each field; only the flags you give override the preset. A run directory
that holds a run is never trained over (``--resume`` continues it); Ctrl-C or SIGTERM during
``train`` saves the model to RUN_DIR/model and prints how to resume and evaluate it.

    lucidrl train ppo --env CartPole-v1                  # zoo preset, 100k steps, run in runs/
    lucidrl train ppo --env CartPole-v1 --variant kl_penalty --timesteps 200000
    lucidrl train ppo --resume runs/ppo-CartPole-v1-s0-... --timesteps 50000   # or RUN/checkpoints/step_N
    lucidrl eval runs/ppo-CartPole-v1-s0-... --episodes 20 --video cartpole.gif
    lucidrl train grpo --task addition --updates 200      # warm start, GRPO, held-out accuracy, model/
    lucidrl eval runs/grpo-addition-s0-...                # a GRPO model: held-out accuracy
    lucidrl plot runs/* -o curves.png
    lucidrl tune ppo --env CartPole-v1 --trials 16 --timesteps 50000   # Ray Tune + Optuna + ASHA
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import difflib
import os
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
import typing
from pathlib import Path
from typing import Any

from lucidrl.config import field_docs, is_schedule_field, literal_or_text, load_presets, parse_schedule
from lucidrl.errors import CheckpointError, ConfigError, LucidRLError


class UsageError(ConfigError):
    """A command line argparse cannot read (unknown flag, missing value, value of the wrong form)."""


# argparse reads a word starting with '-' as an option unless it looks like a negative number; its own test
# knows -1 and -0.5 but not -1e-3, -3E+2, -1_000 or -inf, so `--learning-rate -1e-3` failed with "expected one
# argument" instead of reaching the config's check. This one knows them all (no lucidrl option looks like one).
_NEGATIVE_NUMBER = re.compile(r"^-(\d[\d_]*\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class _Formatter(argparse.HelpFormatter):
    """argparse's help, with an on/off flag shown as ``--x [true|false], --no-x``."""

    def _format_action_invocation(self, action):
        if isinstance(action, BoolFlag):
            on, off = action.option_strings[0], action.option_strings[1]
            return f"{on} [true|false], {off}"
        return super()._format_action_invocation(action)


class _Parser(argparse.ArgumentParser):
    """argparse with two changes: negative numbers in any notation are values (``_NEGATIVE_NUMBER``), and a
    usage error raises :class:`UsageError` (printed as one line by ``main``, exit code 2) instead of exiting
    the process. Sub-parsers are of this class too (argparse makes them of the parent's class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    def parse_args(self, args=None, namespace=None):
        """argparse's, but words no option takes are reported by the (sub-)command they were given to,
        e.g. ``lucidrl train ppo: unrecognized arguments: --lr 0.1 (see lucidrl train ppo --help)``,
        with the options they may have meant."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            parser: argparse.ArgumentParser = self
            while True:  # down to the sub-command that was chosen
                sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
                chosen = getattr(namespace, sub.dest, None) if sub is not None else None
                if sub is None or chosen not in sub.choices:
                    break
                parser = sub.choices[chosen]
            parser.error(f"unrecognized arguments: {' '.join(extras)}{_did_you_mean(parser, extras)}")
        return namespace


def _did_you_mean(parser: argparse.ArgumentParser, words: list[str]) -> str:
    """``"; did you mean --learning-rate?"`` for the unknown options among ``words`` that resemble one of the
    parser's: a close spelling (difflib), or the initials of its words (``--lr`` for ``--learning-rate``)."""
    options = list(
        dict.fromkeys(o.replace("_", "-") for a in parser._actions for o in a.option_strings if o.startswith("--"))
    )
    initials: dict[str, str] = {}
    for o in options:
        initials.setdefault("--" + "".join(w[0] for w in o[2:].split("-") if w), o)
    guesses: list[str] = []
    for word in words:
        if not word.startswith("--"):
            continue
        name = word.split("=", 1)[0].replace("_", "-")
        close = difflib.get_close_matches(name, options, n=3, cutoff=0.75)
        if name in initials and len(name) > 3:
            close.insert(0, initials[name])
        guesses += [o for o in close if o not in guesses]
    return f"; did you mean {' or '.join(guesses[:3])}?" if guesses else ""


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off, any case) as a bool."""
    word = text.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class BoolFlag(argparse.Action):
    """An on/off flag written any of three ways: ``--flag`` (on), ``--flag true|false`` and ``--no-flag`` (off)."""

    def __init__(self, option_strings, dest, default=None, required=False, help=None):
        strings = [s for o in option_strings for s in (o, "--no-" + o[2:])]
        super().__init__(strings, dest, nargs="?", default=default, required=required, help=help, metavar="true|false")

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string.startswith("--no-"):
            if values is not None:
                raise argparse.ArgumentError(self, f"{option_string} takes no value (it means false)")
            value = False
        else:
            try:
                value = True if values is None else parse_bool(values)
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentError(self, str(e)) from None
        setattr(namespace, self.dest, value)

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


# The CLI's algorithms: name -> (module in lucidrl/algos/, class). `lucidrl --help` and `lucidrl train --help` list
# them without importing them (that would import torch and Gymnasium); tests/contracts/test_cli.py checks this
# table against lucidrl.agent.ALGORITHMS, where the classes register themselves.
ALGORITHM_CLASSES = {
    "a2c": ("a2c", "A2C"),
    "a3c": ("a3c", "A3C"),
    "dqn": ("dqn", "DQN"),
    "ppo": ("ppo", "PPO"),
    "qlearning": ("q_learning", "QLearning"),
    "reinforce": ("vpg", "REINFORCE"),
    "trpo": ("trpo", "TRPO"),
    "vpg": ("vpg", "VPG"),
}


def _algorithms() -> dict[str, Any]:  # name -> Algorithm subclass
    import lucidrl.algos  # noqa: F401
    from lucidrl.agent import ALGORITHMS

    return ALGORITHMS


def _summary(module: str, cls: str) -> str:
    """The first line of class ``cls``'s docstring in ``lucidrl/algos/<module>.py``, read without importing it."""
    tree = ast.parse((Path(__file__).parent / "algos" / f"{module}.py").read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    return (ast.get_docstring(node) or "").strip().splitlines()[0]


def _selected_algorithm(argv: list[str]) -> str | None:
    """The ALGO of ``lucidrl train ALGO ...``, the one algorithm whose flags the parser needs; else None."""
    words = [a for a in argv if not a.startswith("-")]
    return words[1] if len(words) > 1 and words[0] == "train" else None


def _with_resumed_algorithm(argv: list[str]) -> list[str]:
    """``lucidrl train --resume RUN ...`` (no ALGO, as ``tune --resume DIR`` is written): the algorithm the run's
    checkpoint names, put where the parser expects it; ``argv`` as it is where it names none or cannot be read
    (the parser's own error, or --resume's, says why)."""
    if len(argv) < 3 or argv[0] != "train" or argv[1] != "--resume" or argv[2].startswith("-"):
        return argv
    try:
        from lucidrl.checkpoint import read_config

        algo = read_config(resolve_resume(argv[2])[1]).get("algo")
    except (LucidRLError, OSError):
        return argv
    return ["train", algo, *argv[1:]] if isinstance(algo, str) and algo in _algorithms() else argv


def _none_or(parse):
    def f(text: str):
        return None if text.lower() in ("none", "null") else parse(text)

    f.__name__ = getattr(parse, "__name__", "value")
    return f


def _int_or_word(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _steps(text: str) -> int:
    """An argparse type for a number of env steps: 100000, 100_000 or 1e5 (a whole number in any of Python's
    spellings)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of steps (100000, 100_000 or 1e5), got {text!r}"
        ) from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number of steps, got {text!r}")
    return int(value)


_steps.__name__ = "number of steps"


def _at_least(minimum: int, meaning: str = ""):
    """An argparse type: a whole number >= ``minimum``; ``meaning`` says what the smallest value means."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{f' ({meaning})' if meaning else ''}, got {n}")
        return n

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _schedule(name: str):
    """An argparse type for a float-or-schedule field: ``lucidrl.config.parse_schedule``, whose ConfigError
    text becomes argparse's message (instead of "invalid parse_schedule value")."""

    def parse(text: str):
        try:
            return parse_schedule(text, name)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = "schedule"
    return parse


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> list[str]:
    """One ``--field-name`` flag per dataclass field; defaults are SUPPRESSed so only given flags override."""
    hints = typing.get_type_hints(config_class)
    docs = field_docs(config_class)
    no_presets = config_class.__name__ == "GRPOConfig"  # (GRPO's toy tasks have no presets)
    overrides = "override the defaults" if no_presets else "override the preset"
    group = parser.add_argument_group(f"{config_class.__name__} hyperparameters ({overrides})")
    names = []
    hidden = getattr(config_class, "cli_hidden", ())
    for f in dataclasses.fields(config_class):
        if f.name in hidden:
            continue
        hint, name = hints[f.name], f.name
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        kw: dict[str, Any] = {
            "default": argparse.SUPPRESS,
            "dest": name,
            "help": f"{docs.get(name, '')} (default: {default})".replace("%", "%%"),
        }
        args = typing.get_args(hint)
        optional = type(None) in args
        if is_schedule_field(config_class, name):
            kw.update(type=_none_or(_schedule(name)) if optional else _schedule(name), metavar="X|lin_X")
        elif hint is bool:
            kw["action"] = BoolFlag
        elif typing.get_origin(hint) is typing.Literal:
            kw["choices"] = list(args)
        elif typing.get_origin(hint) is list:
            kw.update(type=args[0], nargs="+", metavar="N")
        elif set(args) == {int, str}:  # a number or a word, e.g. torch_threads: 2 or auto
            kw.update(type=_int_or_word, metavar="N|auto")
        else:
            base = next((a for a in args if a is not type(None)), hint)
            kw["type"] = _none_or(base) if optional else base
            kw["metavar"] = base.__name__.upper()
        # SB3/zoo spelling (--n_steps) is accepted too, except for on/off flags (--no-x reads better)
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name and hint is not bool else [])
        group.add_argument(*flags, **kw)
        names.append(name)
    return names


# --------------------------------------------------------------------------- resume
_STEP = re.compile(r"^\.?step_(\d+)(\.(tmp|old)-\w+)?$")  # step_N, or the hidden copies of a save killed mid-way


def _complete(path: Path) -> Path | None:
    """The complete checkpoint at ``path`` (weights.safetensors, config.json, state.json), put back in place
    when a save was killed between its two renames (``lucidrl.checkpoint.recover_checkpoint``); else None."""
    from lucidrl.checkpoint import recover_checkpoint

    found = recover_checkpoint(path)
    return found if found is not None and found.parent == path.parent else None


def _newest_step(run_dir: Path) -> Path | None:
    """The complete ``run_dir/checkpoints/step_N`` with the highest N, or None."""
    d = run_dir / "checkpoints"
    if not d.is_dir():
        return None
    steps = {}
    for entry in d.iterdir():
        m = _STEP.match(entry.name)
        if m:
            steps[int(m.group(1))] = d / entry.name.lstrip(".").split(".")[0]
    for n in sorted(steps, reverse=True):
        found = _complete(steps[n])
        if found is not None:
            return found
    return None


def resolve_resume(path: str | os.PathLike) -> tuple[Path | None, Path]:
    """What ``--resume PATH`` continues: ``(run_dir, checkpoint_dir)``.

    PATH is a run directory or one of its checkpoints:

    * a run directory RUN: the checkpoint is ``RUN/model`` when it is complete (weights.safetensors,
      config.json and state.json all there), else the newest complete ``RUN/checkpoints/step_N``
      (highest N; a run killed before it wrote ``model/``), else a CheckpointError naming both;
    * ``RUN/checkpoints/step_N`` or ``RUN/model``: that checkpoint, and the run directory RUN, so the
      resumed run writes its log, plot and ``model/`` into RUN, never into the checkpoint;
    * ``RUN/checkpoints``: the newest complete step_N in it;
    * a checkpoint saved outside a run (``model.save(PATH)``, a directory or a ``.zip``; PATH without ``.zip``
      finds PATH.zip): that checkpoint, and run_dir None (the caller asks for ``--run-dir``).
    """
    from lucidrl.checkpoint import FILES, ZIP_SUFFIX, find_checkpoint

    p = Path(path)
    zipped = find_checkpoint(p)  # a zip checkpoint (model.save("x.zip"); "x" finds x.zip): no run directory around it
    if zipped.is_file() and zipped.suffix.lower() == ZIP_SUFFIX:
        return None, zipped
    step_name = p.parent.name == "checkpoints" and _STEP.match(p.name) is not None
    if not p.exists() and not (step_name or p.name == "model"):  # those two may be a save killed mid-way
        raise CheckpointError(
            f"--resume {str(p)!r}: the path does not exist; give a run directory "
            "(it holds model/ or checkpoints/) or a checkpoint directory"
        )
    if p.is_file():
        raise CheckpointError(f"--resume {str(p)!r} is a file; give the run directory or a checkpoint directory")
    holds_files = p.is_dir() and any((p / f).exists() for f in FILES)
    a_run = p.is_dir() and ((p / "model").exists() or (p / "checkpoints").exists())  # (a run named "model")
    if holds_files or step_name or (p.name == "model" and not a_run):  # a checkpoint itself
        found = _complete(p)
        if found is None:
            missing = [f for f in FILES if not (p / f).is_file()] or ["a readable state.json"]
            run_hint = p.parent.parent if p.parent.name == "checkpoints" else p.parent
            raise CheckpointError(
                f"--resume {str(p)!r} is not a complete checkpoint (missing {', '.join(missing)}); "
                f"give the run directory {str(run_hint)!r} to resume from its newest complete one"
            )
        run_dir = p.parent.parent if p.parent.name == "checkpoints" else p.parent if p.name == "model" else None
        return run_dir, found
    run_dir = p.parent if p.name == "checkpoints" else p
    model = None if p.name == "checkpoints" else _complete(run_dir / "model")
    found = model or _newest_step(run_dir)
    if found is None:
        raise CheckpointError(
            f"--resume {str(p)!r}: no complete checkpoint to resume from; looked for {str(run_dir / 'model')!r} "
            f"and {str(run_dir / 'checkpoints' / 'step_N')!r} (each needs {', '.join(FILES)}). A run writes "
            "model/ when it finishes and checkpoints/ with --checkpoint-freq"
        )
    return run_dir, found


# --------------------------------------------------------------------------- train
def _saved_env_id(checkpoint: Path) -> str | None:
    """The env id in a checkpoint's config.json (a directory or a .zip), with its saved constructor arguments
    (an ``EnvId``); None when it has none or cannot be read (loading the checkpoint then reports what is wrong)."""
    from lucidrl.checkpoint import read_config
    from lucidrl.envs import saved_env_id

    try:
        return saved_env_id(read_config(checkpoint))
    except LucidRLError:
        return None


def _add_env_kwargs(parser: argparse.ArgumentParser, more: str = "") -> None:
    parser.add_argument(
        "--env-kwargs",
        nargs="+",
        type=_env_kwarg,
        default=None,
        metavar="KEY:VALUE",
        help="the env's constructor arguments, gymnasium.make(ENV, KEY=VALUE), e.g. is_slippery:False (or =) or "
        f"max_episode_steps:1000 (values read as Python literals, else as text){more}",
    )


def _env_kwarg(text: str) -> tuple[str, Any]:
    """``KEY:VALUE`` (rl-baselines3-zoo's spelling) or ``KEY=VALUE`` -> (KEY, VALUE), VALUE read as a Python
    literal (1, 0.5, True, None, [64, 64], 'x') or else kept as text (as the zoo's --env-kwargs)."""
    cut = min((i for i in (text.find(":"), text.find("=")) if i >= 0), default=-1)  # the first of the two
    key, sep, value = (text[:cut], text[cut], text[cut + 1 :]) if cut >= 0 else (text, "", "")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY:VALUE or KEY=VALUE (e.g. is_slippery:False)")
    return key, literal_or_text(value)


def _new_run_dir(name: str) -> Path:
    """``runs/NAME``, or ``runs/NAME-2``, ``-3``, ... when a run started in the same second has that name."""
    run_dir, n = Path("runs") / name, 1
    while run_dir.exists():
        n += 1
        run_dir = Path("runs") / f"{name}-{n}"
    return run_dir


class _Interrupts:
    """Ctrl-C (SIGINT) or SIGTERM (``kill PID``, a job scheduler's stop) during ``lucidrl train``. The first one
    stops training after the update in progress, through learn's callback: the model is saved as at a normal end
    (with its log position, for an exact resume). A second one stops at once (KeyboardInterrupt) and the model is
    saved as it is. A signal this process ignores (SIG_IGN, e.g. SIGINT in a ``cmd &`` job) stays ignored."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, model: Any, metrics: dict) -> bool:
        """learn's callback, after each update: False (stop) once a signal came."""
        return self.signum is None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        # os.write, not print: a handler may run in the middle of a print (a reentrant write would fail)
        os.write(2, b"lucidrl: stopping after the update in progress to save the model (again: stop at once)\n")

    @contextlib.contextmanager
    def installed(self):
        """The handlers, while training (signal handlers can only be set in the main thread: elsewhere, none)."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _interrupted(args: argparse.Namespace, model: Any, steps_before: int, target: int, saved: bool) -> int:
    """After training was interrupted: save the model to ``RUN_DIR/model`` unless ``saved`` (learn did, when it
    stopped after an update), and print where it is and how to go on; exit code 130."""
    run_dir = model.run_dir
    if run_dir is None or model.num_timesteps <= steps_before:
        print("lucidrl: interrupted before any training step; nothing new to save", file=sys.stderr)
        return 130
    path = run_dir / "model"
    if not saved:
        try:
            path = model.save(path)
        except KeyboardInterrupt:
            print(
                f"lucidrl: interrupted again while saving; {path} is as it was before (saves are atomic); "
                f"checkpoints, if any, are in {run_dir / 'checkpoints'}",
                file=sys.stderr,
            )
            return 130
        except LucidRLError as e:  # e.g. weights made non-finite by the update that was cut short
            print(
                f"lucidrl: interrupted at step {model.num_timesteps}; the model could not be saved: {e}",
                file=sys.stderr,
            )
            return 130
    run, left = shlex.quote(str(run_dir)), target - model.num_timesteps
    print(
        f"lucidrl: interrupted at step {model.num_timesteps} of {target}; the model is saved in {path}\n"
        + (f"  continue: lucidrl train {args.algo} --resume {run} --timesteps {left}\n" if left > 0 else "")
        + (
            f"  (the resumed run checkpoints every {model.checkpoint_freq} steps, as this one did)\n"
            if left > 0 and model.checkpoint_freq
            else ""
        )
        + f"  evaluate: lucidrl eval {run}",
        file=sys.stderr,
    )
    return 130


def cmd_train(args: argparse.Namespace, config_names: list[str]) -> int:
    import lucidrl
    from lucidrl.logging import check_run_dir
    from lucidrl.plotting import plot_runs

    algos = _algorithms()
    cls = algos[args.algo]
    overrides = {k: getattr(args, k) for k in config_names if hasattr(args, k)}
    if args.resume:
        # how a run computes (device, backend, threads, workers, A3C's Ray address) may change on resume;
        # its hyperparameters may not
        settings: dict[str, Any] = {
            k: overrides.pop(k)
            for k in (
                "device",
                "backend",
                "torch_threads",
                "matmul_precision",
                "rollout_workers",
                "n_workers",
                "address",
            )
            if k in overrides
        }
        if args.vectorization is not None:
            settings["vectorization"] = args.vectorization
        refused = ["--" + k.replace("_", "-") for k in overrides] + (["--preset"] if args.preset is not None else [])
        refused += ["--env-kwargs"] if args.env_kwargs else []
        if refused:
            raise ConfigError("--resume continues a run with its saved hyperparameters; drop " + ", ".join(refused))
        timesteps = args.timesteps
        run_dir, checkpoint = resolve_resume(args.resume)
        saved_env = _saved_env_id(checkpoint)
        if args.env is not None and saved_env is not None and args.env != saved_env:
            raise ConfigError(
                f"--resume continues the run on its env {saved_env!r}; drop --env {args.env} (--env on resume "
                "only names the env of a model saved without one, or confirms a saved 'module:EnvId'). To train "
                f"this model on {args.env}, start a new run from it in Python: "
                f"lucidrl.load(PATH, env={args.env!r}, run_dir=NEW_DIR).learn(STEPS); that needs an env with "
                f"{saved_env}'s observation and action spaces (for another kind of env, train a new model)"
            )
        if args.run_dir:
            run_dir = Path(args.run_dir)
        if run_dir is None:
            raise ConfigError(
                f"--resume {args.resume!r} is a checkpoint outside a run directory; give --run-dir DIR "
                "for the resumed run's log, plot and model/"
            )
        check_run_dir(run_dir)
        model = cls.load(checkpoint, env=args.env, verbose=args.verbose, run_dir=run_dir, **settings)
        print(f"resuming {args.algo} from {checkpoint} (step {model.num_timesteps})")
        reset = False
        if timesteps is None:  # the rest of the budget the run was given (saved with each checkpoint)
            left = (model.target_timesteps or 0) - model.num_timesteps
            if left <= 0:
                raise ConfigError(
                    f"{checkpoint} finished the budget it was trained with"
                    + (f" ({model.target_timesteps} steps)" if model.target_timesteps else "")
                    + "; give --timesteps N to train N more steps"
                )
            timesteps = left
            print(f"training the {left} steps left of the run's budget of {model.target_timesteps} (--timesteps N "
                  "to choose)")  # fmt: skip
    else:
        if args.env is None:
            raise ConfigError("train needs --env ID (e.g. --env CartPole-v1), or --resume RUN_DIR")
        if args.run_dir:  # before the model is built: an existing run there is never overwritten
            check_run_dir(args.run_dir, new=True)
        preset: bool | str = True if args.preset is None else (False if args.preset.lower() == "none" else args.preset)
        model = cls(
            args.env,
            preset=preset,
            verbose=args.verbose,
            vectorization=args.vectorization or "auto",
            env_kwargs=dict(args.env_kwargs) if args.env_kwargs else None,
            **overrides,
        )
        if args.run_dir:
            model.run_dir = Path(args.run_dir)
        else:  # named after what it holds; a seed drawn at random is known only now
            env_name = args.env.split("/")[-1].replace(":", "-")
            model.run_dir = _new_run_dir(
                f"{args.algo}-{env_name}-s{model.config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
            )
        timesteps = args.timesteps
        if timesteps is None:
            timesteps = load_presets(args.algo).get(model.preset_name or "", {}).get("n_timesteps", 100_000)
        reset = True
    checkpoint_freq = args.checkpoint_freq
    if checkpoint_freq is None and not reset and model.checkpoint_freq:  # a resumed run checkpoints as it did
        checkpoint_freq = model.checkpoint_freq
        print(f"checkpoints every {checkpoint_freq} steps, as the run did before (--checkpoint-freq changes it)")
    print(f"lucidrl train {args.algo} on {model.env_id} for {timesteps} steps -> {model.run_dir}")
    steps_before = 0 if reset else model.num_timesteps
    target = steps_before + int(timesteps)
    interrupts = _Interrupts()  # Ctrl-C or SIGTERM: what was trained is kept
    try:
        with interrupts.installed():
            model.learn(
                int(timesteps),
                callback=interrupts,
                progress_bar=not args.no_progress and model.verbose >= 1,  # --verbose 0: silent
                reset_num_timesteps=reset,
                checkpoint_freq=checkpoint_freq,
            )
    except KeyboardInterrupt:  # a second signal, or one where no handler could be set: at once
        return _interrupted(args, model, steps_before, target, saved=False)
    if interrupts.signum is not None:  # learn stopped after an update and saved model/
        return _interrupted(args, model, steps_before, target, saved=True)
    try:
        png = plot_runs([model.run_dir], model.run_dir / "learning_curve.png", title=f"{args.algo} on {model.env_id}")
        curve = png.name
    except LucidRLError as e:  # a run too short to finish an episode (e.g. a few thousand steps of Pong)
        print(f"no learning curve: {e}")
        curve = "no learning curve: no episode finished"
    if args.eval_episodes > 0:
        mean, std = lucidrl.evaluate(model, n_episodes=args.eval_episodes, deterministic=True)
        print(
            f"mean evaluation return: {mean:.1f} +/- {std:.1f} "
            f"({args.eval_episodes} deterministic episodes, {model.num_timesteps} training steps, "
            f"{model.last_training_seconds:.1f} s of training)"
        )
    print(f"run directory: {model.run_dir}  (model/, metrics.csv, TensorBoard events, {curve})")
    return 0


def cmd_train_grpo(args: argparse.Namespace, config_names: list[str]) -> int:
    """GRPO on a toy text task: supervised warm start, ``learn(updates)``, held-out accuracy, ``RUN_DIR/model``."""
    from lucidrl.algos.grpo import GRPO
    from lucidrl.logging import check_run_dir

    overrides = {k: getattr(args, k) for k in config_names if hasattr(args, k)}
    if args.updates < 1:
        raise ConfigError(f"--updates must be >= 1, got {args.updates}")
    if args.warm_start_steps < 0:
        raise ConfigError(f"--warm-start-steps must be >= 0, got {args.warm_start_steps}")
    if args.run_dir:  # before the model is built: an existing run there is never overwritten
        check_run_dir(args.run_dir, new=True)
    model = GRPO(verbose=args.verbose, **overrides)
    cfg = model.config
    model.run_dir = (
        Path(args.run_dir)
        if args.run_dir
        else _new_run_dir(f"grpo-{cfg.task}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    eval_prompts = args.eval_prompts or None  # 0: every held-out prompt
    print(f"lucidrl train grpo on {cfg.task} for {args.updates} updates -> {model.run_dir}")
    if args.warm_start_steps:
        model.warm_start(n_examples=args.warm_start_examples, steps=args.warm_start_steps)
    before = model.evaluate(eval_prompts)
    model.learn(args.updates, progress_bar=not args.no_progress and model.verbose >= 1)
    after = model.evaluate(eval_prompts)
    model.save(model.run_dir / "model")
    n = len(model.task.splits["heldout"][:eval_prompts])
    print(
        f"held-out accuracy (greedy, exact match, {n} prompts): {before:.3f} after the warm start, "
        f"{after:.3f} after {model.n_updates} GRPO updates"
    )
    print(f"run directory: {model.run_dir}  (model/, metrics.csv)")
    return 0


# --------------------------------------------------------------------------- eval
def check_video_path(path: str | os.PathLike) -> Path:
    """Check where ``--video`` will write, before any episode runs: a ``.gif`` in an existing, writable directory."""
    out = Path(path)
    if out.suffix.lower() != ".gif":
        raise ConfigError(f"--video writes an animated GIF; give a path ending in .gif, not {str(out)!r}")
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ConfigError(f"--video {str(out)!r} is a directory; give a file path such as {str(out / 'episode.gif')!r}")
    if not parent.is_dir():
        above = next((p for p in [parent, *parent.parents] if p.exists()), parent)  # the nearest existing path
        if above.exists() and not above.is_dir():
            raise ConfigError(
                f"--video {str(out)!r}: {str(above)!r} is a file, not a directory; give a path in a directory"
            )
        raise ConfigError(
            f"--video {str(out)!r}: the directory {str(parent)!r} does not exist; create it "
            f"(mkdir -p {parent}) or give a path in an existing directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError(
            f"--video {str(out)!r}: cannot write there (permission denied); give a path in a directory you can write to"
        )
    try:  # what os.access cannot tell (a read-only or virtual file system such as /proc, as root): try it
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".lucidrl-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(
            f"--video {str(out)!r}: cannot write in {str(parent)!r} ({e.strerror or e}); "
            "give a path in a directory you can write to"
        ) from None
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    import lucidrl
    from lucidrl.envs import with_env_kwargs, with_saved_kwargs

    if args.video:
        check_video_path(args.video)  # before the model is loaded or any episode runs
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    torch.set_num_threads(1)  # acting on one observation at a time: more threads only add overhead

    path = Path(args.run_dir)
    if path.is_dir() and (path / "checkpoints").is_dir() and _complete(path / "model") is None:
        newest = _newest_step(path)  # a run killed before it wrote model/: its newest complete checkpoint
        if newest is not None:
            print(f"{path} has no complete model/ (the run did not finish); evaluating its newest checkpoint {newest}")
            path = newest
    if path.is_dir() and (path / "metrics.csv").is_file() and _complete(path / "model") is None:
        raise CheckpointError(
            f"{str(path)!r} holds a run's log but no model: no complete model/ and no complete checkpoints/step_N "
            "(the run stopped before it saved one; train with --checkpoint-freq STEPS to keep checkpoints)"
        )
    model = lucidrl.load(path)
    if model.name == "grpo":  # a language model on a text task: accuracy on held-out prompts, not episodes
        if args.video or args.env or args.stochastic or args.env_kwargs:
            raise ConfigError(
                "a GRPO model is evaluated by greedy held-out accuracy; drop --video, --env, --env-kwargs and "
                "--stochastic"
            )
        n = len(model.task.splits["heldout"][: args.prompts or None])
        accuracy = model.evaluate(args.prompts or None)
        print(
            f"grpo from {args.run_dir} on {model.config.task}: held-out accuracy {accuracy:.3f} "
            f"(greedy, exact match, {n} prompts)"
        )
        return 0
    env = with_saved_kwargs(args.env, model.env_id) or model.env_id  # --env ID: the model's, with its arguments
    if args.env_kwargs:  # on top of those
        if env is None:
            raise ConfigError("--env-kwargs are the arguments of an env id: give --env ID (the model has none)")
        env = with_env_kwargs(env, dict(args.env_kwargs))
    if env is None:
        raise ConfigError(
            f"{args.run_dir}: the model was saved without an env id (e.g. imported from SB3, or trained on an env "
            "instance); give the env to play with --env ID"
        )
    mean, std, returns = lucidrl.evaluate(
        model,
        env,
        n_episodes=args.episodes,
        deterministic=not args.stochastic,
        seed=args.seed,
        return_episode_returns=True,
    )
    print(
        f"{model.name} from {args.run_dir} on {describe_env(env)}: mean return {mean:.2f} +/- {std:.2f} over "
        f"{args.episodes} {'stochastic' if args.stochastic else 'deterministic'} episodes"
    )
    if args.video:
        path = record_gif(model, env, args.video, deterministic=not args.stochastic, seed=args.seed)
        print(f"video of one episode: {path}")
    return 0


def describe_env(env: Any) -> str:
    """An env id as a person writes it: 'FrozenLake-v1' or 'FrozenLake-v1 (is_slippery=False)'."""
    kwargs = getattr(env, "kwargs", None)
    if isinstance(env, str) and kwargs:
        return f"{str(env)!r} ({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    return repr(str(env)) if isinstance(env, str) else repr(env)


def cmd_import_sb3(args: argparse.Namespace) -> int:
    from lucidrl.sb3_import import import_sb3

    where, _ = import_sb3(args.path, args.out, env=args.env, algo=args.algo, verbose=1)
    print(
        f"saved the lucidrl model to {where}; evaluate it with `lucidrl eval {where}"
        f"{'' if args.env else ' --env ENV_ID'}`"
    )
    return 0


def record_gif(model, env_id: str, path: str, deterministic: bool = True, seed: int = 0, fps: int = 30) -> Path:
    """Play one episode with ``render_mode='rgb_array'`` and write its frames as an animated GIF."""
    from PIL import Image

    from lucidrl.envs import make_env

    out = check_video_path(path)
    import gymnasium as gym

    from lucidrl.errors import MissingDependencyError

    env = make_env(env_id, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
        frames: list[Any] = [env.render()]
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=deterministic)
            obs, _, terminated, truncated, _ = env.step(action)
            frames.append(env.render())
            done = terminated or truncated
    except gym.error.DependencyNotInstalled as e:
        raise MissingDependencyError(f"rendering {env_id} needs a package that is not installed: {e}") from None
    finally:
        env.close()
    images = [Image.fromarray(f) for f in frames if f is not None]
    if not images:
        raise LucidRLError(f"{env_id} rendered no frames in rgb_array mode")
    try:
        images[0].save(out, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    except OSError as e:  # e.g. the disk filled up while writing
        raise ConfigError(f"--video {str(out)!r}: cannot write the GIF ({e.strerror or e})") from None
    return out


# --------------------------------------------------------------------------- plot / presets
def cmd_plot(args: argparse.Namespace) -> int:
    from lucidrl.plotting import plot_runs

    # another metric than the return gets its own file: the run's learning_curve.png (the return) stays
    stem = "learning_curve" if args.metric == "rollout/episode_return" else re.sub(r"\W+", "_", args.metric).strip("_")
    out = args.output or (str(Path(args.run_dirs[0]) / f"{stem}.png") if len(args.run_dirs) == 1 else f"{stem}s.png")
    path = plot_runs(args.run_dirs, out, metric=args.metric)
    print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from lucidrl.compare import compare

    seeds = args.seeds[0] if len(args.seeds) == 1 else args.seeds
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    if args.backend == "local" and (args.address is not None or args.cpus_per_run is not None):
        raise ConfigError("--address and --cpus-per-run apply to --backend ray only; add --backend ray")
    paths = compare(
        args.algos,
        args.env,
        seeds=seeds,
        timesteps=args.timesteps,
        out=args.out,
        n_jobs=args.jobs,
        eval_episodes=args.eval_episodes,
        force=args.force,
        metrics=args.metrics,
        backend=args.backend,
        address=args.address,
        cpus_per_run=args.cpus_per_run or 1,
        env_kwargs=dict(args.env_kwargs) if args.env_kwargs else None,
    )
    print(paths["table"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from lucidrl.distributed.tune import tune

    result = tune(
        args.algo,
        args.env,
        trials=args.trials,
        timesteps=args.timesteps,
        backend=args.backend,
        address=args.address,
        out=args.out,
        resume=args.resume,
        seed=args.seed,
        n_evals=args.evals,
        eval_episodes=args.eval_episodes,
        verbose=args.verbose,
        env_kwargs=dict(args.env_kwargs) if args.env_kwargs else None,
    )
    if result.best is not None and "preset" in result.files:
        print(result.files["preset"].read_text())
    return 130 if result.interrupted else 0


def cmd_presets(args: argparse.Namespace) -> int:
    """One line per preset (algorithm, name, budget, source), its not-honoured zoo fields below it; with
    ``--env``, only the preset that env id gets (and the zoo's own entry where lucidrl's shadows it), with
    its hyperparameters."""
    from lucidrl.config import preset_for_env

    known = sorted(ALGORITHM_CLASSES)
    if args.algo and args.algo not in known:
        raise ConfigError(f"no algorithm {args.algo!r}; `lucidrl presets` takes one of {', '.join(known)}")
    algos = [args.algo] if args.algo else known
    width = max(map(len, algos))
    found = 0
    for algo in algos:
        presets = load_presets(algo)
        names = list(presets)
        if args.env:
            name = preset_for_env(algo, args.env)
            names = [n for n in (name, f"zoo/{name}") if name is not None and n in presets]
        for name in names:
            p, found = presets[name], found + 1
            print(f"{algo:{width}s} {name:24s} {p.get('n_timesteps', ''):>9} steps  source: {p.get('source', '?')}")
            if args.env:
                print(
                    " " * width
                    + "   hyperparams: "
                    + ", ".join(f"{k}={v}" for k, v in p.get("hyperparams", {}).items())
                )
            for note in p.get("not_honoured", []):
                print(" " * width + f"   not honoured: {note}")
    if args.env and not found:
        from lucidrl.envs import check_env_id

        print(f"no preset for {args.env}" + (f" in {args.algo}" if args.algo else "") + ": the plain defaults apply")
        try:
            check_env_id(args.env)
        except LucidRLError as e:  # a misspelt id is named (an env your code registers at run time is fine)
            print(f"note: {e}")
    return 0


# --------------------------------------------------------------------------- main
def build_parser(algos: typing.Collection[str] | None = None) -> tuple[argparse.ArgumentParser, dict[str, list[str]]]:
    """The parser, and each algorithm's config flags. ``algos``: the algorithms whose config flags to add (each
    imports its module, and so torch); None: all. ``main`` asks for the one on its command line, if any."""
    from lucidrl.version import __version__

    parser = _Parser(prog="lucidrl", description="Train, evaluate and plot RL agents (lucidrl).")
    parser.add_argument("--version", action="version", version=f"lucidrl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an agent", description="Train an agent; writes a run directory.")
    algo_sub = train.add_subparsers(dest="algo", required=True, metavar="ALGO")
    config_names = {}
    for name, (module, class_name) in sorted(ALGORITHM_CLASSES.items()):
        p = algo_sub.add_parser(
            name,
            help=_summary(module, class_name),
            description=f"Train {name.upper()}. Flags below the options override the preset.",
        )
        p.add_argument("--env", help="Gymnasium env id, e.g. CartPole-v1")
        _add_env_kwargs(p, "; saved with the model")
        p.add_argument(
            "--timesteps",
            type=_steps,
            default=None,
            help="env steps to train, e.g. 100000 or 1e5 (default: the preset's budget, else 100000)",
        )
        p.add_argument(
            "--preset",
            default=None,
            help="preset name (default: the env id when a preset exists); 'none' for the plain defaults",
        )
        p.add_argument("--run-dir", default=None, help="run directory (default: runs/ALGO-ENV-sSEED-TIME)")
        p.add_argument(
            "--resume",
            default=None,
            metavar="RUN_DIR",
            help="continue the run in RUN_DIR from its model/, else from its newest complete "
            "checkpoints/step_N (a killed run); or from RUN_DIR/checkpoints/step_N, continuing RUN_DIR",
        )
        p.add_argument(
            "--checkpoint-freq",
            type=_at_least(1, "env steps between checkpoints"),
            default=None,
            metavar="STEPS",
            help="also save RUN_DIR/checkpoints/step_N every STEPS steps",
        )
        p.add_argument(
            "--eval-episodes",
            type=_at_least(0, "0: no evaluation"),
            default=10,
            help="deterministic evaluation episodes after training; 0: none (default: 10)",
        )
        p.add_argument(
            "--vectorization",
            choices=["auto", "native", "sync", "async", "torch"],
            default=None,
            help="how the n_envs copies are stepped (default: auto)",
        )
        p.add_argument("--verbose", type=int, default=1, help="0 silent, 1 progress bar (default), 2 every metric")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        if algos is None or name in algos:
            config_names[name] = add_config_arguments(p, _algorithms()[name].config_class)
    p = algo_sub.add_parser(
        "grpo",
        help="GRPO on a toy text task (a small transformer, a verifiable reward)",
        description="Supervised warm start, GRPO, held-out accuracy before and after; writes "
        "RUN_DIR/model and RUN_DIR/metrics.csv (docs/algorithms/grpo.md).",
    )
    p.add_argument(
        "--updates",
        type=int,
        default=200,
        help="GRPO updates (batches of n_prompts x group_size completions) (default: 200)",
    )
    p.add_argument(
        "--warm-start-steps",
        type=int,
        default=200,
        help="Adam steps of the supervised warm start; 0: none (default: 200)",
    )
    p.add_argument(
        "--warm-start-examples",
        type=int,
        default=2000,
        help="correct training examples of the warm start (default: 2000)",
    )
    p.add_argument(
        "--eval-prompts",
        type=_at_least(0, "0: all"),
        default=0,
        help="held-out prompts to score before and after; 0: all (default: 0)",
    )
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/grpo-TASK-sSEED-TIME)")
    p.add_argument("--verbose", type=int, default=1, help="0 silent, 1 progress bar (default), 2 every metric")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    if algos is None or "grpo" in algos:
        from lucidrl.algos.grpo import GRPOConfig

        config_names["grpo"] = add_config_arguments(p, GRPOConfig)

    ev = sub.add_parser("eval", help="evaluate a saved model", description="Evaluate a saved model or run directory.")
    ev.add_argument("run_dir", help="a run directory, a checkpoint directory or a checkpoint .zip")
    ev.add_argument("--episodes", type=int, default=10, help="episodes to play (default: 10)")
    ev.add_argument(
        "--env", default=None, help="env id (default: the one the model was trained on; that id: with its arguments)"
    )
    _add_env_kwargs(ev, "; on top of the model's own (e.g. is_slippery:True to try it on the slippery lake)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the first episode (then +1 per episode)")
    ev.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the most likely")
    ev.add_argument("--video", default=None, metavar="PATH.gif", help="also record one episode as an animated GIF")
    ev.add_argument(
        "--prompts",
        type=_at_least(0, "0: all"),
        default=0,
        help="GRPO models: held-out prompts to score; 0: all (default: 0)",
    )

    pl = sub.add_parser("plot", help="plot learning curves", description="Plot learning curves of run directories.")
    pl.add_argument("run_dirs", nargs="+")
    pl.add_argument(
        "-o",
        "--output",
        default=None,
        help="PNG path (default, one run: RUN_DIR/learning_curve.png for the return, RUN_DIR/METRIC.png for another "
        "metric, e.g. diag_approx_kl.png; several runs: learning_curves.png or METRICs.png here)",
    )
    pl.add_argument("--metric", default="rollout/episode_return", help="a column of metrics.csv")

    cp = sub.add_parser(
        "compare",
        help="train algorithms over seeds and compare them",
        description="Train every (algorithm, seed) pair on one env, in parallel processes (or Ray "
        "tasks, --backend ray), then write learning_curves.png, final_returns.png and "
        "results.md (mean, std, IQM with a 95% bootstrap CI, wall time). Finished runs "
        "in OUT are reused; runs there with other settings (env, budget, ...) are refused unless --force.",
    )
    cp.add_argument(
        "algos",
        nargs="+",
        metavar="ALGO",
        help="algorithms, e.g. ppo a2c trpo; ALGO:KEY=VALUE,KEY=VALUE is a variant of ALGO with those "
        "hyperparameters changed, reported under that name, e.g. ppo ppo:clip_range=10 or "
        "'qlearning:n_bins=[1,6,12,12]' (values read as Python literals, else as text)",
    )
    cp.add_argument("--env", required=True, help="Gymnasium env id, e.g. CartPole-v1")
    _add_env_kwargs(cp, "; for every run")
    cp.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[3],
        help="a number of seeds (0..N-1; default 3) or, with several values, the seeds themselves",
    )
    cp.add_argument("--timesteps", type=_steps, default=100_000, help="env steps per run (default: 100000)")
    cp.add_argument("--out", default=None, help="output directory (default: compare-ENV)")
    cp.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="runs at a time (default: the number of CPU cores; with --backend ray, as many as the "
        "cluster's CPUs allow)",
    )
    cp.add_argument(
        "--eval-episodes",
        type=_at_least(1),
        default=10,
        help="deterministic evaluation episodes per run (default: 10)",
    )
    cp.add_argument(
        "--force",
        action="store_true",
        help="retrain runs that are already finished in OUT, and replace runs in OUT with other settings "
        "(another env, budget, ...) instead of refusing them",
    )
    cp.add_argument(
        "--metrics",
        nargs="+",
        default=[],
        metavar="METRIC",
        help="other logged metrics to plot over training, one PNG each (e.g. diag/approx_kl)",
    )
    cp.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="local: processes on this machine (default); ray: one Ray task per run, on a local Ray "
        "instance started here or on the cluster at --address (same outputs; docs/scale.md)",
    )
    cp.add_argument(
        "--address",
        default=None,
        help="with --backend ray: a running cluster's address (auto, HOST:6379 or ray://HOST:10001); "
        "default: start a local Ray instance",
    )
    cp.add_argument(
        "--cpus-per-run",
        type=float,
        default=None,
        metavar="N",
        help="with --backend ray: CPUs Ray reserves for each run (default: 1)",
    )

    tu = sub.add_parser(
        "tune",
        help="tune hyperparameters (Ray Tune, Optuna TPE, ASHA)",
        description="Tune an algorithm's hyperparameters on one env: Optuna's TPE sampler proposes "
        "trials from lucidrl/presets/search_spaces.yaml, Ray Tune runs them (one CPU "
        "each) and ASHA stops those whose evaluation return falls behind. Tune needs "
        "Ray either way: --backend local starts a local Ray instance, --backend ray "
        "joins a cluster. Writes OUT/best_preset.yaml (paste it into the presets), "
        "OUT/results.md, OUT/returns.png and Tune's own OUT/tune/.",
    )
    tu.add_argument(
        "algo", nargs="?", metavar="ALGO", help="algorithm with a search space: ppo, a2c, trpo, dqn, vpg, reinforce"
    )
    tu.add_argument("--env", default=None, help="Gymnasium env id, e.g. CartPole-v1")
    _add_env_kwargs(tu, "; for every trial")
    tu.add_argument("--trials", type=int, default=None, help="number of trials (each one sampled configuration)")
    tu.add_argument("--timesteps", type=_steps, default=None, help="env steps per trial (unless ASHA stops it earlier)")
    tu.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="local: a Ray instance on this machine, started and shut down here (default); "
        "ray: join the Ray cluster at --address",
    )
    tu.add_argument(
        "--address",
        default=None,
        help="with --backend ray: the cluster's address (auto, HOST:6379 or "
        "ray://HOST:10001); without it a local Ray instance is started",
    )
    tu.add_argument("--out", default=None, help="output directory (default: tune-ALGO-ENV)")
    tu.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="finish the interrupted sweep in DIR (its settings are read from DIR/tune.json)",
    )
    tu.add_argument(
        "--seed", type=int, default=None, help="seed of the sampler and of every trial's training (default: 0)"
    )
    tu.add_argument(
        "--evals",
        type=int,
        default=None,
        help="evaluations per trial, every TIMESTEPS/EVALS steps; ASHA's rungs, where it may stop a "
        "trial, are at TIMESTEPS/EVALS steps and its doublings (default: 4)",
    )
    tu.add_argument(
        "--eval-episodes", type=int, default=None, help="deterministic episodes per evaluation (default: 5)"
    )
    tu.add_argument("--verbose", type=int, default=1, help="0 silent, 1 a line per trial (default), 2 Tune's logs too")

    im = sub.add_parser(
        "import-sb3",
        help="convert a Stable-Baselines3 model (.zip) into a lucidrl checkpoint",
        description="Convert a Stable-Baselines3 / sb3-contrib .zip (PPO, A2C, DQN, TRPO; MLP or CNN "
        "policy) into a lucidrl checkpoint, without unpickling anything (see "
        "lucidrl.from_sb3). Prints what was carried over and what was not.",
    )
    im.add_argument("path", metavar="PATH", help="the SB3 model's .zip")
    im.add_argument("out", metavar="OUT", help="where to save: a directory, or one file for a name ending in .zip")
    im.add_argument(
        "--env",
        default=None,
        help="env id the model was trained on (SB3 does not store it; needed for "
        "`lucidrl eval` later, and for the spaces when the zip lacks them)",
    )
    im.add_argument(
        "--algo",
        default=None,
        choices=["ppo", "a2c", "dqn", "trpo"],
        help="the SB3 algorithm (default: read from the zip)",
    )

    pr = sub.add_parser(
        "presets",
        help="list the tuned presets",
        description="List the presets: algorithm, name (an env id, a pattern such as ALE/*, or "
        "zoo/<env id> for a zoo entry that one of lucidrl's own presets shadows), budget, "
        "source, and what of the zoo's entry lucidrl does not honour.",
    )
    pr.add_argument("algo", nargs="?", help="only this algorithm's presets (default: all)")
    pr.add_argument("--env", default=None, help="only the preset this env id gets, with its hyperparameters")
    return parser, config_names


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns its exit code: 0, 2 for a LucidRLError or a usage error (one line on stderr,
    no traceback), 130 when interrupted. ``--help`` and ``--version`` exit as argparse does (SystemExit(0))."""
    argv = sys.argv[1:] if argv is None else argv
    argv = _with_resumed_algorithm(argv)
    selected = _selected_algorithm(argv)
    parser, config_names = build_parser([selected] if selected else [])
    try:
        args = parser.parse_args(argv)
        if args.command == "train" and args.algo == "grpo":
            return cmd_train_grpo(args, config_names["grpo"])
        if args.command == "train":
            return cmd_train(args, config_names[args.algo])
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "plot":
            return cmd_plot(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "tune":
            return cmd_tune(args)
        if args.command == "import-sb3":
            return cmd_import_sb3(args)
        return cmd_presets(args)
    except LucidRLError as e:
        print(f"lucidrl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lucidrl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as e:
        if not _printing(e):  # another pipe broke (e.g. an AsyncVectorEnv worker died): its error stands
            raise
        # the output's reader stopped early (lucidrl presets | head): end quietly, as Python's docs advise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (Python flushes stdout again at exit, which would fail too)
        return 1


def _printing(error: BaseException) -> bool:
    """Whether ``error`` rose from lucidrl's own code writing its output (print is a builtin: no frame of its own),
    not from inside a library that talks over a pipe."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(Path(__file__).parent)


if __name__ == "__main__":
    sys.exit(main())
