"""Random bad input gets a lucidrl error, never another exception, and writes nothing.

Property-based (hypothesis): random hyperparameters (the config's own field names, with values of
every kind: integers, floats including NaN, inf and negatives, strings, None, bools, lists; plus
names that are no field) go to each algorithm's constructor, and random values for a few flags go
through ``lucidrl train``. Either the input is accepted or a ``LucidRLError`` says why; nothing
else may escape, and nothing may be written in the working directory.

40 examples a test, the same ones every run (derandomized: CI stays reproducible). For a longer search
with fresh random examples: LUCIDRL_FUZZ_EXAMPLES=1000 pytest tests/contracts/test_fuzz_inputs.py
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
import re
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lucidrl  # noqa: F401  (registers every algorithm in ALGORITHMS)
from lucidrl.agent import ALGORITHMS
from lucidrl.cli import main
from lucidrl.errors import LucidRLError

FUZZ = settings(
    max_examples=int(os.environ.get("LUCIDRL_FUZZ_EXAMPLES", 40)),
    deadline=None,
    derandomize="LUCIDRL_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

OUTCOMES: dict = {}
ENVS = {"qlearning": "FrozenLake-v1"}  # the tabular learner; the others learn CartPole

# Integers stay small enough that an accepted config builds in milliseconds (n_envs=10**9 is a resource
# limit, not a type error); every other kind is drawn without bounds.
INTS = st.one_of(st.integers(-3, 300), st.sampled_from([0, -1, 1, 2, -(2**31), -(2**63)]))
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, -1e-3, 1e300, 5e-324]),
)
WORDS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "auto",
            "cpu",
            "cuda",
            "meta",
            "lin_3e-4",
            "lin_-1",
            "lin_nan",
            "3e-4",
            "tanh",
            "clip",
            "none",
            "None",
            "true",
            "reference",
            "fast",
            "q_learning",
            "exponential",
            "",
            " ",
            "-1",
            "inf",
        ]
    ),
)
SCALARS = st.one_of(INTS, FLOATS, WORDS, st.none(), st.booleans())
VALUES = st.one_of(
    SCALARS,
    st.lists(st.one_of(st.integers(-3, 128), FLOATS, WORDS, st.none()), max_size=4),
    st.dictionaries(st.sampled_from(["linear", "start_value", "norm_obs", "x"]), SCALARS, max_size=2),
)


@contextlib.contextmanager
def empty_cwd():
    """A fresh empty working directory for one example (hypothesis runs many in one test)."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        try:
            yield d
        finally:
            os.chdir(old)


def plausible(field: dataclasses.Field):
    """Values near the field's default (of its type), so that many drawn configs are accepted and get built."""
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return st.just(default)
    return st.sampled_from([default, default * 2, default / 2 if isinstance(default, float) else default + 1])


def hyperparameters(algo: str):
    fields = dataclasses.fields(ALGORITHMS[algo].config_class)
    names = [f.name for f in fields]
    near = st.sampled_from(fields).flatmap(lambda f: plausible(f).map(lambda v: (f.name, v)))
    # the constructor's own arguments (env, preset, run_dir, verbose, ...) are not hyperparameters: not drawn
    own = set(inspect.signature(ALGORITHMS[algo].__init__).parameters)
    unknown = st.one_of(
        st.sampled_from(["n_step", "lr", "learning_rat", "policy_kwargs", "normalize", "gama"]),
        st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(lambda n: n not in names + list(own)),
    )
    wild = st.tuples(st.one_of(st.sampled_from(names), unknown), VALUES)
    return st.lists(st.one_of(near, near, wild), max_size=4).map(dict)


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_random_hyperparameters_are_accepted_or_refused_with_a_lucidrl_error(algo):
    cls, env = ALGORITHMS[algo], ENVS.get(algo, "CartPole-v1")

    @FUZZ
    @given(kwargs=hyperparameters(algo), preset=st.sampled_from([True, False]))
    def check(kwargs, preset):
        with empty_cwd() as d:
            try:
                model = cls(env, preset=preset, verbose=0, **kwargs)
            except LucidRLError:
                OUTCOMES[algo, "refused"] = OUTCOMES.get((algo, "refused"), 0) + 1
            else:
                model.env.close()
                OUTCOMES[algo, "built"] = OUTCOMES.get((algo, "built"), 0) + 1
            assert os.listdir(d) == []

    check()
    assert OUTCOMES.get((algo, "built")) and OUTCOMES.get((algo, "refused"))  # the fuzz reaches both ends


# --------------------------------------------------------------------------- the CLI
FLAGS = [
    "--learning-rate",
    "--gamma",
    "--n-steps",
    "--batch-size",
    "--seed",
    "--net-arch",
    "--normalize-obs",
    "--variant",
    "--clip-range",
    "--device",
    "--torch-threads",
    "--timesteps",
    "--preset",
    "--target-kl",
]
# a value that argparse would read as a request for help exits the process by design: not fuzzed
TOKENS = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=10),
    st.sampled_from(
        [
            "-1e-3",
            "-3E+2",
            "-inf",
            "nan",
            "lin_-1",
            "lin_1e-3",
            "1e9",
            "0",
            "-0",
            "-",
            "--",
            "-x",
            "--gam",
            "true",
            "no",
            "none",
            "64",
            "-64",
            "1_000",
            "0x10",
            "1e-3",
            "auto",
            "cuda:0",
        ]
    ),
    st.integers(-1000, 1000).map(str),
    st.floats().map(repr),  # (--net-arch 10**6 10**6 is out of memory)
).filter(lambda t: not re.match(r"^-(h|-h)", t))


class _ReachedLearn(Exception):
    pass


def test_random_flag_values_give_exit_code_2_or_reach_learn(monkeypatch, capsys):
    def stop(self, *args, **kwargs):  # the config was accepted and the model built: enough, no training
        raise _ReachedLearn

    for cls in ALGORITHMS.values():
        monkeypatch.setattr(cls, "learn", stop)

    @FUZZ
    @given(flags=st.lists(st.tuples(st.sampled_from(FLAGS), st.lists(TOKENS, min_size=0, max_size=2)), max_size=3))
    def check(flags):
        argv = ["train", "ppo", "--env", "CartPole-v1", "--no-progress", "--verbose", "0"]
        for flag, values in flags:
            argv += [flag, *values]
        with empty_cwd() as d:
            capsys.readouterr()
            try:
                code = main(argv)
            except _ReachedLearn:
                code = 0
            err = capsys.readouterr().err
            assert code in (0, 2), (argv, code, err)
            if code == 2:
                assert err.startswith("lucidrl: error: ") and "Traceback" not in err, (argv, err)
            assert os.listdir(d) == [], argv

    check()
