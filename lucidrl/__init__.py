"""lucidrl: classic deep-RL algorithms on PyTorch and Gymnasium, to use for real and to learn from.

    import lucidrl
    model = lucidrl.PPO("CartPole-v1", seed=0)
    model.learn(total_timesteps=100_000, progress_bar=True)
    mean, std = lucidrl.evaluate(model, "CartPole-v1", n_episodes=10)
"""

from lucidrl.version import __version__  # noqa: E402

from lucidrl.config import linear  # noqa: E402
from lucidrl.agent import Algorithm, evaluate, load  # noqa: E402
from lucidrl.algos import PPO, PPOConfig  # noqa: E402
from lucidrl.algos import TRPO, TRPOConfig  # noqa: E402
from lucidrl.algos import DQN, DQNConfig  # noqa: E402
from lucidrl.algos import QLearning, QLearningConfig  # noqa: E402
from lucidrl.algos import GRPO, GRPOConfig  # noqa: E402
from lucidrl.algos import A2C, REINFORCE, VPG, A2CConfig, REINFORCEConfig, VPGConfig  # noqa: E402
from lucidrl.algos import A3C, A3CConfig  # noqa: E402
from lucidrl.envs import make_env, make_vec_env  # noqa: E402
from lucidrl.evaluation import evaluate_policy  # noqa: E402
import lucidrl.callbacks  # noqa: E402,F401  (SB3-style callbacks: lucidrl.callbacks.EvalCallback, ...)
from lucidrl.sb3_import import from_sb3  # noqa: E402  (Stable-Baselines3 zips, never unpickled)
import lucidrl.fast  # noqa: E402,F401  (registers the fast backend's twins of the reference updates)
from lucidrl.errors import CheckpointError, ConfigError, EnvError, LucidRLError, MissingDependencyError  # noqa: E402

__all__ = [
    "A2C", "A2CConfig", "A3C", "A3CConfig", "VPG", "VPGConfig", "REINFORCE", "REINFORCEConfig",
    "PPO", "PPOConfig", "TRPO", "TRPOConfig", "DQN", "DQNConfig", "QLearning", "QLearningConfig", "GRPO", "GRPOConfig", "Algorithm", "load", "evaluate", "evaluate_policy", "linear", "make_env", "make_vec_env", "from_sb3",
    "LucidRLError", "ConfigError", "EnvError", "CheckpointError", "MissingDependencyError", "__version__",
]
