"""`import lucidrl` is light; the public names load on first use, and every import path still registers the
algorithms (lucidrl.agent.ALGORITHMS) and the fast backend (lucidrl.backends) before a model selects one."""

import subprocess
import sys

import pytest


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_lucidrl_does_not_import_torch():
    assert run("import sys, lucidrl; print('torch' in sys.modules, 'gymnasium' in sys.modules)") == "False False"


REGISTERED = (
    "from lucidrl import backends\nfrom lucidrl.agent import ALGORITHMS\n"
    "print(sorted(ALGORITHMS) == ['a2c', 'a3c', 'dqn', 'ppo', 'qlearning', 'reinforce', 'trpo', 'vpg'], "
    "{'ppo', 'a2c', 'dqn_train_round', 'trpo_local_models', 'vpg_policy_step'} <= set(backends._FAST))"
)


@pytest.mark.parametrize(
    "first",
    [
        "from lucidrl import PPO",
        "import lucidrl; lucidrl.load",
        "from lucidrl.algos.ppo import PPO",
        "from lucidrl.algos.a2c import a2c_update",
        "from lucidrl.agent import ALGORITHMS",
        "import lucidrl.algos",
        "from lucidrl.fast import actor_critic",
        "from lucidrl.sb3_import import import_sb3",
    ],
)
def test_every_import_path_registers_the_algorithms_and_the_fast_backend(first):
    assert run(first + "\n" + REGISTERED) == "True True"


def test_public_names_resolve_and_are_listed():
    import lucidrl

    for name in lucidrl.__all__:
        assert getattr(lucidrl, name) is not None, name
    assert set(lucidrl.__all__) <= set(dir(lucidrl))
    assert lucidrl.callbacks.EvalCallback is not None  # a submodule as an attribute, as before
    with pytest.raises(AttributeError):
        lucidrl.no_such_name  # noqa: B018
