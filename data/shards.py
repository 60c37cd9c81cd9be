"""llm.c-format token shards: write and validate; and the data scripts' filesystem errors.

A shard is a header of 256 little-endian int32 (magic 20240520, version 1, token count, the rest
zero) followed by that many little-endian uint16 GPT-2 token ids. The trainer keeps its own reader
(it must stay one self-contained file); everything else in this repo uses this module.

Every data/ script reports a filesystem error the same way, as one line naming the path, the OS
error and the fix (os_error_line), and checks an output folder before any work (check_folder).
"""

import contextlib
import errno
import hashlib
import os
import tempfile

import numpy as np

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
EOT = 50256  # <|endoftext|>, first token of every document


class ShardError(ValueError):
    """A file that is not a valid shard; the message is one line naming the file."""


def write_shard(path, tokens):
    """Write tokens (any int array-like, all in [0, 65535]) as a shard, atomically: the file
    appears under its final name only once complete."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() > 65535):
        raise ValueError(f"{path}: token ids must fit in uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC, VERSION, tokens.size)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(header.tobytes())
            f.write(tokens.astype("<u2").tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        remove_quietly(tmp)  # a full disk or a folder in the way leaves no half-written file
        if isinstance(e, OSError) and e.filename is None:  # a failed write names no file
            raise OSError(e.errno, e.strerror, os.fspath(path)) from None
        raise


def read_header(path):
    """Return the token count of a shard, or raise ShardError naming the file and what is wrong."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError as e:
        raise ShardError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) < HEADER_BYTES:
        raise ShardError(f"{path}: {size} bytes, shorter than the {HEADER_BYTES}-byte header")
    header = np.frombuffer(raw, dtype="<i4")
    if header[0] != MAGIC:
        raise ShardError(f"{path}: bad magic {header[0]} (expected {MAGIC}); not a token shard")
    if header[1] != VERSION:
        raise ShardError(f"{path}: unsupported version {header[1]} (expected {VERSION})")
    ntok = int(header[2])
    if size != HEADER_BYTES + 2 * ntok:
        raise ShardError(
            f"{path}: header says {ntok} tokens ({HEADER_BYTES + 2 * ntok} bytes) "
            f"but the file has {size} bytes; truncated or corrupt"
        )
    return ntok


def read_shard(path):
    """Validate and return the tokens of a shard as a uint16 array."""
    ntok = read_header(path)
    return np.fromfile(path, dtype="<u2", count=ntok, offset=HEADER_BYTES)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remove_quietly(path):
    """Remove a file if it is there; an error here must not hide the one being handled."""
    with contextlib.suppress(OSError):
        os.remove(path)


def parents(path):
    """path and the folders above it, innermost first."""
    path = os.path.abspath(path)
    while True:
        yield path
        if os.path.dirname(path) == path:
            return
        path = os.path.dirname(path)


def shown(path):
    """path as the user typed it: relative to the working directory if below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


def related(a, b):
    """Whether one of two paths lies inside the other (or they are the same)."""
    a, b = os.path.abspath(a), os.path.abspath(b)
    return os.path.commonpath([a, b]) in (a, b)


def os_error_line(e, flag=None, folder=None):
    """An OSError as one line: the path, the OS error, the fix. flag and folder: the option that
    chose folder (e.g. "--out_dir"), offered as the way around an error at or around folder."""
    path = e.filename2 if e.filename2 is not None and e.errno == errno.EISDIR else e.filename
    path = os.fspath(path) if path is not None else "?"
    reason = e.strerror or str(e)
    other = f", or pass another {flag}" if flag and related(path, folder) else ""
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and os.path.isfile(path):
        return f"{shown(path)}: {reason} (let yourself read and write it: chmod u+rw {shown(path)})"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        # Creating, removing or renaming an entry failed: the folder is what needs the permission.
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        return (
            f"{shown(folder)}: {reason} (no files can be created or changed there: make it "
            f"writable, e.g. chmod u+w {shown(folder)}{other})"
        )
    if e.errno == errno.EISDIR:
        return f"{shown(path)}: {reason} (a folder where a file belongs: move it away and rerun)"
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in parents(path) if os.path.isfile(p)), path)
        return (
            f"{shown(blocker)}: {os.strerror(errno.ENOTDIR)} (a file where a folder belongs: "
            f"move it away{other})"
        )
    if e.errno == errno.ENOSPC:
        return f"{shown(path)}: {reason} (free some disk space and rerun)"
    return f"{shown(path)}: {reason} (check that path{other})"


def check_folder(path):
    """Raise OSError (for os_error_line) unless path is a folder this process can create files in,
    or one it can create: a file in the way (path or a folder above it), or no permission to write
    where it is or would be made. Creates nothing that stays."""
    for p in parents(path):
        if not os.path.exists(p):
            continue
        if not os.path.isdir(p):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), p)
        try:  # the one sure test of write permission (root ignores the mode bits): try it
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=p)
        except OSError as e:
            raise type(e)(e.errno, e.strerror, p) from None
        os.close(fd)
        os.remove(probe)
        return
