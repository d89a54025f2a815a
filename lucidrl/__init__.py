"""lucidrl: classic deep-RL algorithms on PyTorch and Gymnasium, to use for real and to learn from.

import lucidrl
model = lucidrl.PPO("CartPole-v1", seed=0)
model.learn(total_timesteps=100_000, progress_bar=True)
mean, std = lucidrl.evaluate(model, "CartPole-v1", n_episodes=10)
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

from lucidrl.errors import CheckpointError, ConfigError, EnvError, LucidRLError, MissingDependencyError
from lucidrl.version import __version__

# The public names below are imported on first use (PEP 562), so that `import lucidrl` and `lucidrl --help`
# do not pay for torch and Gymnasium. `from lucidrl import PPO` and `lucidrl.PPO` work as before.
_LAZY = {
    "linear": "lucidrl.config",
    "Algorithm": "lucidrl.agent",
    "evaluate": "lucidrl.agent",
    "load": "lucidrl.agent",
    **{
        name: "lucidrl.algos"
        for name in (
            "PPO",
            "PPOConfig",
            "TRPO",
            "TRPOConfig",
            "DQN",
            "DQNConfig",
            "QLearning",
            "QLearningConfig",
            "GRPO",
            "GRPOConfig",
            "A2C",
            "A2CConfig",
            "VPG",
            "VPGConfig",
            "REINFORCE",
            "REINFORCEConfig",
            "A3C",
            "A3CConfig",
        )
    },
    "make_env": "lucidrl.envs",
    "make_vec_env": "lucidrl.envs",
    "evaluate_policy": "lucidrl.evaluation",
    "from_sb3": "lucidrl.sb3_import",  # Stable-Baselines3 zips, never unpickled
    "vmap_train": "lucidrl.vmap",  # N seeds of PPO at once (docs/gpu.md)
    "evaluate_on_device": "lucidrl.device_rollout",
}

# Registration, as the eager imports of this file used to guarantee on every import path: once lucidrl.agent
# has loaded, every algorithm is in lucidrl.agent.ALGORITHMS (lucidrl.load, compare and tune look them up
# there), and once lucidrl.algos has loaded, lucidrl.fast has registered its twins of the reference updates
# with lucidrl.backends, before any model can select a backend. Algorithm files never import lucidrl.fast
# (tests/contracts/test_structure.py), so the package does it, here, right after the module in question.
_THEN_IMPORT = {"lucidrl.agent": "lucidrl.algos", "lucidrl.algos": "lucidrl.fast"}


class _ImportAfter(importlib.abc.MetaPathFinder):
    """Finds the modules of ``_THEN_IMPORT`` as usual, and imports the module named beside each one right after
    it has run (an import already under way, e.g. lucidrl.algos importing lucidrl.agent, is not restarted)."""

    def find_spec(self, fullname, path=None, target=None):
        then = _THEN_IMPORT.get(fullname)
        if then is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        run, after = spec.loader.exec_module, then

        def exec_module(module):
            run(module)
            importlib.import_module(after)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if not any(isinstance(f, _ImportAfter) for f in sys.meta_path):  # once, even if this file is re-executed
    sys.meta_path.insert(0, _ImportAfter())


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later look-ups are plain attribute reads
        return value
    here = Path(__file__).parent  # a submodule as an attribute (lucidrl.callbacks.EvalCallback, lucidrl.envs, ...)
    if (here / f"{name}.py").is_file() or (here / name / "__init__.py").is_file():
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "A2C",
    "A2CConfig",
    "A3C",
    "A3CConfig",
    "VPG",
    "VPGConfig",
    "REINFORCE",
    "REINFORCEConfig",
    "PPO",
    "PPOConfig",
    "TRPO",
    "TRPOConfig",
    "DQN",
    "DQNConfig",
    "QLearning",
    "QLearningConfig",
    "GRPO",
    "GRPOConfig",
    "Algorithm",
    "load",
    "evaluate",
    "evaluate_policy",
    "linear",
    "make_env",
    "make_vec_env",
    "from_sb3",
    "vmap_train",
    "evaluate_on_device",
    "LucidRLError",
    "ConfigError",
    "EnvError",
    "CheckpointError",
    "MissingDependencyError",
    "__version__",
]
