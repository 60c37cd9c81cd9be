"""data/cached_fineweb10B.py against a fake hub on 127.0.0.1 (tests/fakehub.py).

The downloader runs in a subprocess, as a user would run it, with HF_ENDPOINT pointing at the fake
server, HF_HOME and the target directory (--dir) in tmp_path.
"""

import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import shards  # noqa: E402
from fakehub import FakeHub, hub_env  # noqa: E402

SCRIPT = os.path.join(REPO, "data", "cached_fineweb10B.py")
FINEWEB = "kjj0/fineweb10B-gpt2"
VAL, T1, T2, T3 = (
    "fineweb_val_000000.bin",
    "fineweb_train_000001.bin",
    "fineweb_train_000002.bin",
    "fineweb_train_000003.bin",
)


def shard_bytes(tmp_path, tokens, ntok=None):
    """Bytes of a shard holding tokens; ntok overrides the header's count (a lying header)."""
    path = tmp_path / "src.bin"
    shards.write_shard(path, tokens)
    data = bytearray(path.read_bytes())
    if ntok is not None:
        data[8:12] = np.int32(ntok).astype("<i4").tobytes()
    return bytes(data)


@pytest.fixture
def tokens():
    rng = np.random.default_rng(0)
    return {
        VAL: rng.integers(0, 50257, 3000),
        T1: rng.integers(0, 50257, 20000),
        T2: rng.integers(0, 50257, 20000),
    }


@pytest.fixture
def hub(tmp_path, tokens):
    files = {name: shard_bytes(tmp_path, t) for name, t in tokens.items()}
    with FakeHub({FINEWEB: files}) as h:
        yield h


def run(tmp_path, endpoint, *args, offline=False):
    return subprocess.run(
        [sys.executable, SCRIPT, *args, "--dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=hub_env(endpoint, tmp_path / "hf", offline),
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def leftovers(tmp_path):
    """Partial downloads anywhere under the data dir (the hub keeps them in .cache/)."""
    return [p.name for p in (tmp_path / "data").rglob("*") if ".incomplete" in p.name]


def test_fresh_download_then_rerun_fetches_nothing(tmp_path, hub, tokens):
    proc = run(tmp_path, hub.url, "2")
    assert proc.returncode == 0, proc.stderr
    for name, t in tokens.items():
        assert np.array_equal(shards.read_shard(tmp_path / "data" / name), t)
    assert len(hub.gets()) == 3 and not leftovers(tmp_path)

    requests = len(hub.log)
    proc = run(tmp_path, hub.url, "2")
    assert proc.returncode == 0, proc.stderr
    assert "0 downloaded" in proc.stdout
    # Valid files are skipped before any request, so a complete directory also works offline.
    assert run(tmp_path, hub.url, "2", offline=True).returncode == 0
    assert len(hub.log) == requests


def test_invalid_local_file_is_fetched_again(tmp_path, hub, tokens):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / T1).write_bytes(b"\0" * 100)
    proc = run(tmp_path, hub.url, "1")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(shards.read_shard(tmp_path / "data" / T1), tokens[T1])


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "no-range"])
def test_cut_transfer_is_resumed(tmp_path, hub, ranges):
    # Bigger than the hub client's 10 MiB read chunk, so the cut comes after a chunk reached disk
    # and the retry really continues from an offset instead of starting over.
    big = np.random.default_rng(1).integers(0, 50257, 12_000_000, dtype=np.uint16)  # 24 MB
    hub.repos[FINEWEB][T1] = shard_bytes(tmp_path, big)
    hub.cut[T1] = 1
    hub.ignore_range = not ranges
    proc = run(tmp_path, hub.url, "1")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(shards.read_shard(tmp_path / "data" / T1), big)
    gets = hub.gets(T1)
    assert len(gets) == 2 and gets[0][2] is None
    # The retry asks for the rest (a server that ignores Range sends it all again, and the client
    # starts the file over); either way the result above is byte-exact.
    offset = int(gets[1][2].removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= len(hub.repos[FINEWEB][T1]) // 2
    assert not leftovers(tmp_path)


def test_transfer_that_keeps_failing_leaves_no_partial_bin(tmp_path, hub, tokens):
    hub.cut[T1] = 1
    hub.empty[T1] = 100  # every retry gets headers and no body
    proc = run(tmp_path, hub.url, "1")
    assert proc.returncode != 0
    line = one_line(proc.stderr)
    assert T1 in line and "rerun" in line
    assert not (tmp_path / "data" / T1).exists() and not leftovers(tmp_path)
    assert shards.read_header(tmp_path / "data" / VAL) == 3000  # finished files are kept

    hub.empty.clear()
    proc = run(tmp_path, hub.url, "1")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(shards.read_shard(tmp_path / "data" / T1), tokens[T1])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_killed_mid_transfer_leaves_no_partial_bin(tmp_path, hub, tokens, sig):
    hub.stall.add(T1)
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "1", "--dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=hub_env(hub.url, tmp_path / "hf"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell that started us in the background ignores SIGINT, and the child
        # would inherit that; a user's Ctrl-C reaches a foreground process
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert hub.stalled.wait(30)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert not (tmp_path / "data" / T1).exists()
    if sig == signal.SIGINT:  # a clean stop: one line, and the hub's temporary file is removed
        assert "interrupted" in one_line(err)
        assert not leftovers(tmp_path)

    hub.stall.clear()
    hub.release.set()
    rerun = run(tmp_path, hub.url, "1")  # starts the file over, whatever a kill left in .cache/
    assert rerun.returncode == 0, rerun.stderr
    assert np.array_equal(shards.read_shard(tmp_path / "data" / T1), tokens[T1])


def test_file_whose_header_lies_is_deleted(tmp_path, hub, tokens):
    hub.repos[FINEWEB][T1] = shard_bytes(tmp_path, tokens[T1], ntok=20001)
    proc = run(tmp_path, hub.url, "1")
    assert proc.returncode != 0
    line = one_line(proc.stderr)
    assert T1 in line and "deleted" in line
    assert not (tmp_path / "data" / T1).exists()


def test_missing_file(tmp_path, hub):
    proc = run(tmp_path, hub.url, "3")
    assert proc.returncode != 0
    line = one_line(proc.stderr)
    assert T3 in line and "404" in line
    assert not (tmp_path / "data" / T3).exists()
    assert (tmp_path / "data" / T2).exists()


def test_missing_repo(tmp_path, hub):
    proc = run(tmp_path, hub.url, "1", "--edu")  # the fake hub has no kjj0/finewebedu10B-gpt2
    assert proc.returncode != 0
    line = one_line(proc.stderr)
    assert "finewebedu_val_000000.bin" in line and "kjj0/finewebedu10B-gpt2 not found" in line


def test_server_down(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run(tmp_path, f"http://127.0.0.1:{port}", "1")
    assert proc.returncode != 0
    line = one_line(proc.stderr)
    assert VAL in line and f"127.0.0.1:{port}" in line
    assert not list((tmp_path / "data").glob("*.bin"))


def test_offline_mode(tmp_path, hub):
    proc = run(tmp_path, hub.url, "1", offline=True)
    assert proc.returncode != 0
    assert "HF_HUB_OFFLINE" in one_line(proc.stderr)
    assert not hub.log


def test_server_error_on_the_first_file_is_retried(tmp_path, hub, tokens):
    hub.server_errors[VAL] = 1
    proc = run(tmp_path, hub.url, "1")
    assert proc.returncode == 0, proc.stderr
    heads = [r for r in hub.log if r[:2] == ("HEAD", VAL)]
    assert len(heads) >= 2, hub.log  # the 500, then the retry
    assert np.array_equal(shards.read_shard(tmp_path / "data" / VAL), tokens[VAL])


def test_missing_val_shard_names_the_dataset_not_the_count(tmp_path, hub):
    del hub.repos[FINEWEB][VAL]
    proc = run(tmp_path, hub.url, "1")
    line = one_line(proc.stderr)
    assert proc.returncode != 0 and VAL in line and "check HF_ENDPOINT and --edu" in line
    assert "fewer shards" not in line


def test_empty_leftover_from_a_killed_run_is_removed(tmp_path, hub, tokens):
    stale = tmp_path / "data" / ".cache" / "huggingface" / "download" / "old.bin.abc.incomplete"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    proc = run(tmp_path, hub.url, "1")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("fault", ["server down", "no such repo", "server error", "empty body"])
def test_a_download_that_fails_before_any_shard_leaves_no_folder(tmp_path, hub, fault):
    url = hub.url
    if fault == "server down":
        with socket.socket() as s:  # a port that nothing listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}"
    elif fault == "no such repo":
        del hub.repos[FINEWEB]
    elif fault == "server error":
        hub.server_errors[VAL] = 100  # past the retries
    else:  # the file's metadata comes, then every GET sends headers, no body: .cache/ is made
        hub.cut[VAL] = 1
        hub.empty[VAL] = 100
    proc = run(tmp_path, url, "1")
    assert proc.returncode == 1
    assert VAL in one_line(proc.stderr)
    assert not (tmp_path / "data").exists()
