"""data/fineweb.py: local documents -> GPT-2 token shards -> the same documents back."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import fineweb  # noqa: E402
import shards  # noqa: E402
from fakehub import FakeHub, hub_env  # noqa: E402
from tokenizer import get_gpt2_encoding  # noqa: E402

SCRIPT = os.path.join(REPO, "data", "fineweb.py")
DOCS = [
    "Hello world.",
    "",  # an empty document still gets its <|endoftext|>
    "A literal <|endoftext|> inside a text is plain text, not the separator.",
    "Unicode: naïve café, 東京, emoji 🎉, and a tab\there.\nSecond line.",
    " ".join(f"word{i}" for i in range(200)),  # longer than a shard: spans several
    "Last one.",
]


def decode_docs(paths):
    """Concatenate shards in order and split at EOT: one decoded text per document."""
    tokens = np.concatenate([shards.read_shard(p) for p in paths]).astype(np.int64)
    assert tokens[0] == shards.EOT
    starts = np.flatnonzero(tokens == shards.EOT)
    enc = get_gpt2_encoding()
    return [enc.decode(list(t[1:])) for t in np.split(tokens, starts[1:])]


def expected_total(docs):
    enc = get_gpt2_encoding()
    return sum(1 + len(enc.encode_ordinary(d)) for d in docs)


def check_shards(out_dir, name, shard_size, docs):
    paths = sorted(out_dir.glob(f"{name}_*.bin"), key=lambda p: p.name[-10:])  # by index
    assert paths[0].name == f"{name}_val_000000.bin"
    assert [p.name for p in paths[1:]] == [
        f"{name}_train_{i:06d}.bin" for i in range(1, len(paths))
    ]
    sizes = [shards.read_header(p) for p in paths]
    assert all(n == shard_size for n in sizes[:-1]) and 0 < sizes[-1] <= shard_size
    assert sum(sizes) == expected_total(docs)
    assert decode_docs(paths) == docs
    return paths


def test_jsonl_roundtrip(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text(
        "".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(DOCS)),
        encoding="utf-8",
    )
    written = fineweb.tokenize_to_shards(
        fineweb.read_texts(str(src)), str(tmp_path / "out"), "tiny", shard_size=64, workers=2
    )
    paths = check_shards(tmp_path / "out", "tiny", 64, DOCS)
    assert [p for p, _ in written] == [str(p) for p in paths]
    assert len(paths) > 3


def test_cli_parquet_and_txt(tmp_path):
    pq.write_table(pa.table({"id": list(range(4)), "text": DOCS[:4]}), tmp_path / "a.parquet")
    (tmp_path / "b.txt").write_text(DOCS[4], encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": DOCS[5]}) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        SCRIPT,
        "a.parquet",
        "b.txt",
        "c.jsonl",
        "--out_dir",
        str(out),
        "--name",
        "mix",
        "--shard_size",
        "50",
        "--workers",
        "2",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    check_shards(out, "mix", 50, DOCS)  # inputs are read in command-line order

    # A second run must not mix new shards with the old ones.
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "already holds" in proc.stderr
    check_shards(out, "mix", 50, DOCS)


def parquet_bytes(tmp_path, texts):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": texts, "url": ["u"] * len(texts)}), path)
    return path.read_bytes()


def test_fineweb_from_hub(tmp_path):
    """No inputs: sample-10BT's parquet files, listed and fetched from a fake hub, in name order."""
    files = {
        "sample/10BT/001_00000.parquet": parquet_bytes(tmp_path, DOCS[3:]),
        "sample/10BT/000_00000.parquet": parquet_bytes(tmp_path, DOCS[:3]),
        "sample/100BT/000_00000.parquet": parquet_bytes(tmp_path, ["not this one"]),
    }
    with FakeHub({"HuggingFaceFW/fineweb": files}) as hub:
        proc = subprocess.run(
            [sys.executable, SCRIPT, "--out_dir", "out", "--shard_size", "40", "--workers", "2"],
            cwd=tmp_path,
            env=hub_env(hub.url, tmp_path / "hf"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    check_shards(tmp_path / "out", "fineweb", 40, DOCS)


def test_fineweb_hub_unreachable_is_one_line(tmp_path):
    with FakeHub({}) as hub:  # no such repo
        proc = subprocess.run(
            [sys.executable, SCRIPT, "--out_dir", "out"],
            cwd=tmp_path,
            env=hub_env(hub.url, tmp_path / "hf"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "HuggingFaceFW/fineweb" in errors[0]
    assert not list(tmp_path.glob("out/*.bin"))


def test_everything_fits_in_val(tmp_path):
    fineweb.tokenize_to_shards(iter(DOCS[:2]), str(tmp_path), "small", shard_size=10**6, workers=1)
    assert [p.name for p in tmp_path.glob("*.bin")] == ["small_val_000000.bin"]
    assert decode_docs([tmp_path / "small_val_000000.bin"]) == DOCS[:2]


@pytest.mark.parametrize(
    "filename, content, message",
    [
        ("bad.jsonl", '{"text": "ok"}\n{"text": 3}\n', 'bad.jsonl:2: "text" is int'),
        ("bad.jsonl", '{"text": "ok"}\nnot json\n', "bad.jsonl:2: not a JSON object"),
        ("bad.txt", b"caf\xe9", "bad.txt: not UTF-8"),
        ("bad.parquet", b"not parquet", "bad.parquet: cannot read"),
        ("empty.txt", "", "the inputs hold no text: nothing to tokenize, no shard written"),
        ("empty.jsonl", "", "the inputs hold no text: nothing to tokenize, no shard written"),
        (
            "blank.jsonl",
            '{"text": ""}\n',
            "the inputs hold no text: nothing to tokenize, no shard written",
        ),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_shards(tmp_path, filename, content, message):
    path = tmp_path / filename
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    proc = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            filename,
            "--out_dir",
            "out",
            "--shard_size",
            "1",
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    # tqdm bars share stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not list(tmp_path.glob("out/*.bin"))


def test_error_midway_removes_shards_already_written(tmp_path, monkeypatch):
    written = []
    real_write = shards.write_shard
    monkeypatch.setattr(shards, "write_shard", lambda p, t: (written.append(p), real_write(p, t)))

    def texts():
        yield from ["some words"] * 100
        raise fineweb.InputError("input.jsonl:101: broken")

    with pytest.raises(fineweb.InputError, match="input.jsonl:101"):
        fineweb.tokenize_to_shards(texts(), str(tmp_path), "x", shard_size=10, workers=2)
    assert written and not list(tmp_path.glob("*.bin"))


def test_missing_input_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, SCRIPT, "nope.jsonl", "--out_dir", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: nope.jsonl: no such file"


@pytest.mark.parametrize("workers", ["-1", "0"])
def test_fewer_than_one_worker_is_one_line(tmp_path, workers):
    (tmp_path / "doc.txt").write_text("Hello world.")
    proc = subprocess.run(
        [sys.executable, SCRIPT, "doc.txt", "--out_dir", "out", f"--workers={workers}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: --workers={workers}: the number of tokenizer processes must be at least 1\n"
    )
    assert not (tmp_path / "out").exists()
