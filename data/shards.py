"""llm.c-format token shards: write and validate.

A shard is a header of 256 little-endian int32 (magic 20240520, version 1, token count, the rest
zero) followed by that many little-endian uint16 GPT-2 token ids. The trainer keeps its own reader
(it must stay one self-contained file); everything else in this repo uses this module.
"""

import hashlib
import os

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
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
