import os

import pytest
import torch

# Small MLPs run fastest on one thread; it also makes timings in tests steadier on 2-core CI.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    """Every test runs in its own empty directory, so nothing lands in the repository (runs/...)."""
    monkeypatch.chdir(tmp_path)
