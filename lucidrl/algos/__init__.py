"""One file per algorithm; importing this package registers them all with ``lucidrl.load``."""

from lucidrl.algos.a2c import A2C, A2CConfig
from lucidrl.algos.a3c import A3C, A3CConfig
from lucidrl.algos.dqn import DQN, DQNConfig
from lucidrl.algos.grpo import GRPO, GRPOConfig
from lucidrl.algos.ppo import PPO, PPOConfig
from lucidrl.algos.q_learning import QLearning, QLearningConfig
from lucidrl.algos.trpo import TRPO, TRPOConfig
from lucidrl.algos.vpg import REINFORCE, VPG, REINFORCEConfig, VPGConfig

__all__ = ["PPO", "PPOConfig", "TRPO", "TRPOConfig", "VPG", "VPGConfig", "REINFORCE", "REINFORCEConfig", "A2C",
           "A2CConfig", "A3C", "A3CConfig", "DQN", "DQNConfig", "QLearning", "QLearningConfig", "GRPO", "GRPOConfig"]
