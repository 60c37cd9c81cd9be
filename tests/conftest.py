"""Shared set-up: the repository's scripts import as modules (train_gpt, data/*.py, tools/*.py,
tests/fakehub.py), and the tests read the log format through tools/logformat.py, its one home.
The workdir fixture: the tiny shards the trainer's tests train on."""

import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for folder in ("", "data", "tools", "tests"):
    sys.path.insert(0, os.path.join(REPO, folder))

import shards  # noqa: E402


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A learnable token stream: a repeated random phrase of ids < 1000, broken every 97 tokens."""
    d = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    stream = np.tile(rng.integers(0, 1000, size=500), 200)
    stream[::97] = 999
    shards.write_shard(d / "train_000000.bin", stream[:60000])
    shards.write_shard(d / "val_000000.bin", stream[60000:65000])
    return d
