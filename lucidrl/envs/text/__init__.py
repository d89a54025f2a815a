"""Toy language tasks with verifiable rewards, for RL on language models (GRPO) on a CPU.

A task is a set of prompts, a way to check an answer, and a tiny character-level vocabulary:

* ``AdditionTask``: ``"12+35="`` -> ``"47"``. Operands are written with ``n_digits`` digits
  (zero-padded, so every prompt has the same length); the answer is the plain sum, no padding.
* ``SortTask``: ``"3142="`` -> ``"1234"``: the prompt's digits in ascending order.

Every task splits its prompts once, by a fixed permutation of all of them (``split_seed``), into
a training part and a held-out part (``holdout_fraction``); the two never share a prompt.
``sample_prompts(n, generator, split)`` draws prompts from one part with a seeded
``torch.Generator``. ``reward(prompt, completion)`` is the verifiable reward: 1.0 when the
completion is exactly the answer, else 0.0; with ``format_reward > 0`` a wrong answer made only
of digits (a well-formed number of the right length range) earns that much instead (off by default).
A completion ends at the first end-of-sequence token; ``decode`` drops it and what follows.
"""

from __future__ import annotations

import itertools

import torch

from lucidrl.errors import ConfigError

PAD, EOS = 0, 1


class Tokenizer:
    """Characters <-> token ids: 0 is padding, 1 end-of-sequence, then one id per character."""

    def __init__(self, chars: str = "0123456789+="):
        if len(set(chars)) != len(chars):
            raise ConfigError(f"the tokenizer's characters must be distinct, got {chars!r}")
        self.chars = chars
        self.index = {c: i + 2 for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 2

    def encode(self, text: str, eos: bool = False) -> list[int]:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ConfigError(f"characters {unknown} are not in this tokenizer's vocabulary {self.chars!r}")
        return [self.index[c] for c in text] + ([EOS] if eos else [])

    def decode(self, ids) -> str:
        """Text of the ids up to the first EOS (padding skipped)."""
        out = []
        for i in ids.tolist() if torch.is_tensor(ids) else ids:
            if i == EOS:
                break
            if i >= 2:
                out.append(self.chars[i - 2])
        return "".join(out)

    def encode_batch(self, texts: list[str], eos: bool = False, length: int | None = None) -> torch.Tensor:
        """A (len(texts), length) LongTensor, right-padded with PAD."""
        rows = [self.encode(t, eos) for t in texts]
        length = max(map(len, rows)) if length is None else length
        out = torch.full((len(rows), length), PAD, dtype=torch.long)
        for r, ids in enumerate(rows):
            out[r, : len(ids)] = torch.tensor(ids[:length], dtype=torch.long)
        return out


class TextTask:
    """Base: subclasses set ``name``, ``prompt_len``, ``answer_len`` (max answer characters) and
    implement ``all_prompts()`` and ``answer(prompt)``."""

    name = "text"
    prompt_len: int
    answer_len: int

    def __init__(self, holdout_fraction: float = 0.2, split_seed: int = 1234, format_reward: float = 0.0):
        if not 0.0 < holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must lie in (0, 1), got {holdout_fraction}")
        if not 0.0 <= format_reward < 1.0:
            raise ConfigError(f"format_reward must lie in [0, 1), got {format_reward}")
        self.tokenizer = Tokenizer()
        self.format_reward = format_reward
        prompts = self.all_prompts()
        order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(split_seed)).tolist()
        n_held = max(1, int(round(holdout_fraction * len(prompts))))
        self.splits = {"heldout": [prompts[i] for i in order[:n_held]], "train": [prompts[i] for i in order[n_held:]]}

    @property
    def max_new_tokens(self) -> int:
        return self.answer_len + 1  # the answer and its EOS

    def all_prompts(self) -> list[str]:
        raise NotImplementedError

    def answer(self, prompt: str) -> str:
        raise NotImplementedError

    def sample_prompts(self, n: int, generator: torch.Generator, split: str = "train") -> list[str]:
        if split not in self.splits:
            raise ConfigError(f"split must be 'train' or 'heldout', got {split!r}")
        pool = self.splits[split]
        idx = torch.randint(len(pool), (n,), generator=generator).tolist()
        return [pool[i] for i in idx]

    def reward(self, prompt: str, completion: str) -> float:
        """1.0 for exactly the right answer; ``format_reward`` for a wrong well-formed one; else 0."""
        if completion == self.answer(prompt):
            return 1.0
        if self.format_reward and completion.isdigit() and 1 <= len(completion) <= self.answer_len:
            return self.format_reward
        return 0.0

    def score(self, prompt: str, ids) -> float:
        """The reward of a sampled completion, given as token ids: ``reward(prompt, decode(ids))``, except that a
        PAD before the completion's end (its first EOS, else its last token) scores 0. PAD is not text: ``decode``
        skips it, so ``4 PAD 7 EOS`` would otherwise pass for ``"47"``; the policy can sample it (it is in the
        vocabulary), and a malformed completion earns nothing, as a wrong one."""
        ids = ids.tolist() if torch.is_tensor(ids) else list(ids)
        end = ids.index(EOS) if EOS in ids else len(ids)
        if PAD in ids[:end]:
            return 0.0
        return self.reward(prompt, self.tokenizer.decode(ids))

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return self.tokenizer.encode_batch(prompts, length=self.prompt_len)


class AdditionTask(TextTask):
    """``a+b=`` with a, b of ``n_digits`` digits (zero-padded); the answer is a+b in plain decimal."""

    name = "addition"

    def __init__(self, n_digits: int = 2, **kwargs):
        if not (isinstance(n_digits, int) and 1 <= n_digits <= 3):
            raise ConfigError(f"n_digits must be 1, 2 or 3, got {n_digits!r}")
        self.n_digits = n_digits
        self.prompt_len, self.answer_len = 2 * n_digits + 2, n_digits + 1
        super().__init__(**kwargs)

    def all_prompts(self) -> list[str]:
        r = range(10**self.n_digits)
        return [f"{a:0{self.n_digits}d}+{b:0{self.n_digits}d}=" for a in r for b in r]

    def answer(self, prompt: str) -> str:
        a, b = prompt.rstrip("=").split("+")
        return str(int(a) + int(b))


class SortTask(TextTask):
    """``n_digits`` digits then ``=``; the answer is the same digits in ascending order."""

    name = "sort"

    def __init__(self, n_digits: int = 4, **kwargs):
        if not (isinstance(n_digits, int) and 2 <= n_digits <= 6):
            raise ConfigError(f"n_digits must be an integer in [2, 6], got {n_digits!r}")
        self.n_digits = n_digits
        self.prompt_len, self.answer_len = n_digits + 1, n_digits
        super().__init__(**kwargs)

    def all_prompts(self) -> list[str]:
        return ["".join(d) + "=" for d in itertools.product("0123456789", repeat=self.n_digits)]

    def answer(self, prompt: str) -> str:
        return "".join(sorted(prompt.rstrip("=")))


TASKS = {"addition": AdditionTask, "sort": SortTask}


def make_task(task: str | TextTask, **kwargs) -> TextTask:
    """A task by name (``"addition"``, ``"sort"``) or the task instance itself."""
    if isinstance(task, TextTask):
        return task
    if task not in TASKS:
        raise ConfigError(f"unknown text task {task!r}; known: {', '.join(TASKS)}")
    return TASKS[task](**kwargs)


__all__ = ["PAD", "EOS", "Tokenizer", "TextTask", "AdditionTask", "SortTask", "TASKS", "make_task"]
