"""Translate rl-baselines3-zoo's hyperparameter files into lucidrl presets, field by field.

Writes ``lucidrl/presets/<algo>_zoo.yaml`` for PPO, A2C, DQN and TRPO: one entry per (algorithm, env)
of the zoo's ``hyperparams/<algo>.yml`` whose env exists in Gymnasium 1.x (classic control, Box2D,
MuJoCo under its v4 and v5 names, the ``atari`` entry under the pattern keys ``ALE/*`` and
``*NoFrameskip-v4``). Each entry names its source (file, entry, zoo version), the zoo's budget
(``n_timesteps``), the hyperparameters under lucidrl's field names, and ``not_honoured``: what the
zoo sets that lucidrl does not do (gSDE, wrappers it lacks, ...), which the model logs at construction.

``lucidrl/presets/<algo>.yaml`` holds lucidrl's own presets (measured deviations from the zoo, and
presets the zoo has not): ``lucidrl.config.load_presets`` reads both, the hand-written file winning
for the same key. A zoo entry shadowed so is written here under ``zoo/<key>`` (e.g. ``zoo/Hopper-v5``):
pass ``preset="zoo/Hopper-v5"`` to use the zoo's values instead.

The zoo's files come from its wheel (no code of it is run; the YAML is read with ``yaml.safe_load``,
``policy_kwargs`` strings with ``ast``, never ``eval``):

    pip download rl_zoo3==2.9.2 --no-deps -d /tmp/zoo && (cd /tmp/zoo && unzip -o -q rl_zoo3-*.whl)
    python benchmarks/zoo_presets.py --zoo /tmp/zoo/rl_zoo3/hyperparams --version 2.9.2
    python benchmarks/zoo_presets.py --zoo ... --check       # exit 1 if the files would change

Field by field (zoo -> lucidrl):

* ``n_timesteps`` -> the preset's budget ``n_timesteps``; ``policy``: ``MlpPolicy`` needs nothing,
  ``CnnPolicy`` is what lucidrl builds for image observations (Nature CNN), with ``net_arch: []``
  as SB3's CNN policies (linear heads on the CNN features) unless ``policy_kwargs`` say otherwise;
* ``normalize`` (true, or a dict of VecNormalize arguments) -> ``normalize_obs`` /
  ``normalize_reward`` / ``clip_obs`` / ``clip_reward`` (VecNormalize's ``gamma`` is the algorithm's γ);
* ``policy_kwargs`` (a string such as ``"dict(log_std_init=-2, ortho_init=False,
  activation_fn=nn.ReLU, net_arch=dict(pi=[256], vf=[256]))"``, parsed with ``ast``):
  ``log_std_init``, ``ortho_init``, ``activation_fn`` (ReLU, Tanh, ELU -> relu, tanh, elu),
  ``net_arch`` (a list; ``dict(pi=a, vf=a)`` or ``dict(qf=a)`` -> ``a``), A2C's
  ``optimizer_class=RMSpropTFLike`` -> ``use_rms_prop`` with its ``eps`` as ``rms_prop_eps``;
* ``learning_rate: lin_3e-4`` and ``clip_range: lin_0.2`` stay as they are: lucidrl reads ``lin_<x>``
  as SB3's linear schedule (``lucidrl.config.linear``);
* every other key that is a field of lucidrl's config is copied unchanged;
* not honoured (listed in the entry): ``use_sde`` / ``sde_sample_freq`` (gSDE), wrappers lucidrl
  lacks (``env_wrapper``, ``frame_stack`` outside Atari), activations it lacks, ``pi`` and ``vf``
  networks of different sizes, any key it does not know. The Atari entry: ``lucidrl.envs.atari``
  does the AtariWrapper's no-op reset, frame skip 4, 84x84 grey frames and reward clipping, and
  stacks 4 frames (the zoo's ``frame_stack: 4``), but plays a whole game per episode by default (its
  end-of-life episodes and FIRE on reset are ``env_kwargs`` away: docs/atari.md).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALGOS = ("ppo", "a2c", "dqn", "trpo")
PRESETS = ROOT / "lucidrl" / "presets"
ATARI_KEYS = ("ALE/*", "*NoFrameskip-v4")
ACTIVATIONS = {"nn.ReLU": "relu", "nn.Tanh": "tanh", "nn.ELU": "elu"}
ATARI_WRAPPER = (
    "env_wrapper stable_baselines3.common.atari_wrappers.AtariWrapper: partly; lucidrl.envs.atari does "
    "its no-op reset, frame skip 4, 84x84 grey frames and reward clipping; by default an episode is a whole "
    "game, and env_kwargs={'terminal_on_life_loss': True, 'fire_reset': True} give its episode end on a lost "
    "life and FIRE on reset"
)
SDE = "use_sde=True (gSDE): lucidrl's Gaussian policy has state-independent noise (log_std_init, a learned vector)"


# --------------------------------------------------------------------------- policy_kwargs, read without eval
def literal(node: ast.AST) -> Any:
    """The value of a policy_kwargs expression: numbers, strings, bools, None, lists, ``dict(...)`` calls;
    a name such as ``nn.ReLU`` or ``RMSpropTFLike`` becomes its text. Anything else is refused."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = literal(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, (ast.List, ast.Tuple)):
        return [literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {literal(k): literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: literal(kw.value) for kw in node.keywords}
    if isinstance(node, (ast.Name, ast.Attribute)):
        return ast.unparse(node)
    raise ValueError(f"cannot read {ast.unparse(node)!r} without running code")


def parse_policy_kwargs(text: str | dict) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    value = literal(ast.parse(" ".join(str(text).split()), mode="eval").body)
    if not isinstance(value, dict):
        raise ValueError(f"policy_kwargs: expected dict(...), got {text!r}")
    return value


def net_arch_of(arch: Any, not_honoured: list[str]) -> list[int] | None:
    if isinstance(arch, list):
        return arch
    if isinstance(arch, dict):
        sizes = [v for k, v in arch.items() if k in ("pi", "vf", "qf")]
        if sizes and all(s == sizes[0] for s in sizes) and set(arch) <= {"pi", "vf", "qf"}:
            return sizes[0]
        pi = arch.get("pi", sizes[0] if sizes else None)
        not_honoured.append(f"net_arch={arch}: lucidrl's actor and critic have the same layers; using pi's {pi}")
        return pi
    not_honoured.append(f"net_arch={arch!r}: not understood")
    return None


# --------------------------------------------------------------------------- one entry
def translate(algo: str, cls, entry: str, zoo: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(lucidrl hyperparams, not-honoured notes) of one zoo entry for the config dataclass ``cls``."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    hp: dict[str, Any] = {}
    nh: list[str] = []
    atari = entry == "atari"
    for key, value in zoo.items():
        if key in ("n_timesteps",):
            continue
        if key == "policy":
            if value == "CnnPolicy":
                hp["net_arch"] = []  # SB3's CNN policies: linear heads on the Nature-CNN features
            elif value not in ("MlpPolicy", "MultiInputPolicy"):
                nh.append(f"policy={value}")
        elif key == "normalize":
            setting = value
            if isinstance(setting, str):
                setting = ast.literal_eval(setting) if setting.strip().startswith("{") else setting.lower() == "true"
            if isinstance(setting, bool):
                setting = {"norm_obs": setting, "norm_reward": setting}
            names = {
                "norm_obs": "normalize_obs",
                "norm_reward": "normalize_reward",
                "clip_obs": "clip_obs",
                "clip_reward": "clip_reward",
            }
            for k, v in setting.items():
                if k in names and names[k] in fields:
                    hp[names[k]] = v
                elif k != "gamma":
                    nh.append(f"normalize {k}={v!r}")
        elif key == "policy_kwargs":
            for k, v in parse_policy_kwargs(value).items():
                if k == "net_arch":
                    arch = net_arch_of(v, nh)
                    if arch is not None:
                        hp["net_arch"] = arch
                elif k == "activation_fn":
                    if v in ACTIVATIONS:
                        hp["activation"] = ACTIVATIONS[v]
                    else:
                        nh.append(f"activation_fn={v}: lucidrl has tanh, relu and elu; keeping its default")
                elif k in ("log_std_init", "ortho_init") and k in fields:
                    hp[k] = v
                elif k == "optimizer_class" and v == "RMSpropTFLike" and "use_rms_prop" in fields:
                    hp["use_rms_prop"] = True
                    nh.append(
                        "optimizer_class=RMSpropTFLike (TensorFlow's RMSprop, ε inside the square root): "
                        "PyTorch's RMSprop (ε outside) with the same ε"
                    )
                elif k == "optimizer_kwargs" and "use_rms_prop" in fields and set(v) <= {"eps", "alpha"}:
                    for name, x in v.items():
                        hp[f"rms_prop_{name}"] = float(x)
                else:
                    nh.append(f"policy_kwargs {k}={v}")
        elif key == "use_sde":
            if value:
                nh.append(SDE)
        elif key == "sde_sample_freq":
            if zoo.get("use_sde"):
                nh.append(f"sde_sample_freq={value} (gSDE)")
        elif key == "env_wrapper":
            wrappers = value if isinstance(value, list) else [value]
            for w in wrappers:
                if atari and w == "stable_baselines3.common.atari_wrappers.AtariWrapper":
                    nh.append(ATARI_WRAPPER)
                else:
                    nh.append(
                        f"env_wrapper {w if isinstance(w, str) else yaml.safe_dump(w, default_flow_style=True).strip()}"
                    )
        elif key == "frame_stack":
            if not (atari and value == 4):  # lucidrl.envs.atari stacks 4 frames
                nh.append(f"frame_stack={value}")
        elif key == "optimize_memory_usage":
            if value:
                nh.append("optimize_memory_usage=True: lucidrl stores obs and next_obs separately")
        elif key in fields:
            hp[key] = float(value) if isinstance(value, float) else value
        else:
            nh.append(f"{key}={value!r}")
    if {"batch_size", "n_steps"} <= fields and "batch_size" in hp:  # SB3 takes one minibatch of the whole rollout
        rollout = hp.get("n_steps", cls.n_steps) * hp.get("n_envs", cls.n_envs)
        if hp["batch_size"] > rollout:
            nh.append(
                f"batch_size={hp['batch_size']} is more than a rollout (n_steps * n_envs = {rollout}): SB3 then "
                f"takes the whole rollout as one minibatch, as lucidrl does with batch_size={rollout}"
            )
            hp["batch_size"] = rollout
    return hp, nh


def gymnasium_keys(entry: str, registry) -> list[str]:
    """The Gymnasium 1.x ids a zoo entry stands for ([] when its env is not in Gymnasium)."""
    if entry == "atari":
        return list(ATARI_KEYS)
    if entry not in registry:
        return []
    spec = registry[entry]
    if "mujoco" in str(spec.entry_point):  # the zoo's -v2/-v3/-v4 MuJoCo tasks: Gymnasium's v4 and v5
        base = entry.rsplit("-v", 1)[0]
        return [f"{base}-v{v}" for v in (4, 5) if f"{base}-v{v}" in registry]
    return [entry]


def source_of(algo: str, entry: str, key: str, version: str) -> str:
    text = f"rl-baselines3-zoo hyperparams/{algo}.yml, entry {entry} (rl_zoo3 {version})"
    if key != entry and entry != "atari":
        text += f"; {key} is Gymnasium's current version of the same task"
    if entry == "atari":
        text += "; every Atari game"
    return text


def build(zoo_dir: Path, version: str) -> tuple[dict[str, str], list[str]]:
    """{algo: YAML text} and the report lines (skipped entries, shadowed ones)."""
    import gymnasium as gym

    import lucidrl  # noqa: F401  registers every algorithm
    from lucidrl.agent import ALGORITHMS
    from lucidrl.config import config_from_dict

    report: list[str] = []
    texts = {}
    for algo in ALGOS:
        cls = ALGORITHMS[algo].config_class
        zoo = yaml.safe_load((zoo_dir / f"{algo}.yml").read_text())
        curated = yaml.safe_load((PRESETS / f"{algo}.yaml").read_text()) or {}
        out: dict[str, Any] = {}
        skipped = []
        for entry, values in zoo.items():
            if entry == "default":
                continue
            keys = gymnasium_keys(entry, gym.registry)
            if not keys:
                skipped.append(entry)
                continue
            hp, nh = translate(algo, cls, entry, values)
            config_from_dict(cls, dict(hp), f" (zoo entry {entry})")  # every translation is a valid config
            for key in keys:
                item = {
                    "source": source_of(algo, entry, key, version),
                    "n_timesteps": int(values["n_timesteps"]),
                    "hyperparams": hp,
                }
                if nh:
                    item["not_honoured"] = nh
                name = key
                if key in curated:
                    name = f"zoo/{key}"
                    same = (
                        config_from_dict(cls, dict(curated[key].get("hyperparams", {})))
                        == config_from_dict(cls, dict(hp))
                        and int(curated[key].get("n_timesteps", -1)) == item["n_timesteps"]
                    )
                    report.append(
                        f"{algo} {key}: lucidrl/presets/{algo}.yaml has its own entry "
                        + ("IDENTICAL in effect: delete it there" if same else "(differs; zoo's as " + name + ")")
                    )
                out[name] = item
        header = (
            f"# GENERATED by benchmarks/zoo_presets.py from rl_zoo3 {version} (the zoo's wheel), "
            f"hyperparams/{algo}.yml: do not edit, rerun the script.\n"
            f"# lucidrl's own presets are in {algo}.yaml and win over these for the same env id; a zoo entry\n"
            f"# shadowed so is kept here as zoo/<env id>. Zoo entries whose env is not in Gymnasium 1.x, skipped:\n"
            f"# {', '.join(skipped) or 'none'}\n"
        )
        texts[algo] = header + yaml.dump(out, Dumper=_NoAliases, sort_keys=False, width=120, allow_unicode=True)
        report.append(
            f"{algo}: {len(out)} presets from {len(zoo) - 1 - len(skipped)} zoo entries; skipped {len(skipped)}"
        )
    return texts, report


class _NoAliases(yaml.SafeDumper):
    """Writes each preset out in full (no ``&id001`` anchors): the file is read by people too."""

    def ignore_aliases(self, data):
        return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, required=True, help="the zoo's hyperparams/ folder (rl_zoo3/hyperparams)")
    ap.add_argument("--version", required=True, help="the rl_zoo3 version or commit the files come from")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    args = ap.parse_args(argv)
    texts, report = build(args.zoo, args.version)
    print("\n".join(report))
    changed = []
    for algo, text in texts.items():
        path = PRESETS / f"{algo}_zoo.yaml"
        if not path.exists() or path.read_text() != text:
            changed.append(path.name)
            if not args.check:
                path.write_text(text)
    print(("would change: " if args.check else "wrote: ") + (", ".join(changed) or "nothing"))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
