"""Tokenize text into GPT-2 token shards (the format of data/shards.py).

    python data/fineweb.py [INPUT ...] [--out_dir DIR] [--name NAME] [--shard_size N] [--workers W]

Every document becomes <|endoftext|> followed by its GPT-2 tokens (encode_ordinary: a literal
"<|endoftext|>" inside a text stays plain text). The token stream is cut into shards of exactly
shard_size tokens (default 10^8; the last one holds the rest), documents running across shard
boundaries as in llm.c's fineweb.py. The first shard is the validation shard:
NAME_val_000000.bin, then NAME_train_000001.bin, NAME_train_000002.bin, ...

Inputs, read in the order given:
  *.jsonl    one JSON object per line, its "text" field is a document
  *.txt      the whole file is one document
  *.parquet  each row's "text" column is a document (needs pyarrow)
With no inputs, FineWeb's sample-10BT parquet files are fetched from the Hugging Face hub
(HuggingFaceFW/fineweb) and tokenized in order; that needs pyarrow, network access and ~30 GB.
Defaults: --out_dir data/fineweb10B --name fineweb for the hub, data/custom and custom for local
inputs (NAME is a plain name: the folder is --out_dir). Shards are written atomically; an out_dir
that already holds NAME_*.bin is refused, so stale shards never mix with new ones, and one that is
a file or cannot be written is refused before any work. Errors print one line on stderr (a
filesystem error names the path, the OS error and the fix) and exit 1; a failed run leaves none of
its shards.
"""

import argparse
import errno
import glob
import json
import multiprocessing as mp
import os
import re
import sys

import numpy as np
from tqdm import tqdm

import shards
from tokenizer import FetchError, get_gpt2_encoding

HERE = os.path.dirname(os.path.abspath(__file__))
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
FINEWEB_REPO, FINEWEB_SUBSET = "HuggingFaceFW/fineweb", "sample/10BT"


class InputError(Exception):
    """One line for the user, naming the input and what is wrong."""


def import_pyarrow_parquet(why):
    try:
        import pyarrow.parquet
    except ImportError:
        raise InputError(f"{why} needs pyarrow; pip install pyarrow") from None
    return pyarrow.parquet


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(
                    f'{path}:{lineno}: not a JSON object with a "text" field '
                    f"({type(e).__name__}: {e})"
                ) from None
            if not isinstance(text, str):
                raise InputError(f'{path}:{lineno}: "text" is {type(text).__name__}, not a string')
            yield text


def parquet_file(path):
    """The parquet file at path, checked to hold a "text" column of strings; InputError if not."""
    pq = import_pyarrow_parquet(path)
    import pyarrow as pa

    try:
        f = pq.ParquetFile(path)
        schema = f.schema_arrow
    except (OSError, ValueError) as e:  # ValueError: pyarrow's ArrowInvalid on a corrupt file
        raise InputError(f"{path}: cannot read ({e})") from None
    if "text" not in schema.names:
        raise InputError(f'{path}: no "text" column (columns: {", ".join(schema.names)})')
    kind = schema.field("text").type
    if pa.types.is_dictionary(kind):  # dictionary-encoded strings read back as strings
        kind = kind.value_type
    strings = [pa.types.is_string, pa.types.is_large_string]
    strings += [getattr(pa.types, "is_string_view", lambda _: False)]  # pyarrow >= 16
    if not any(is_string(kind) for is_string in strings):
        raise InputError(f'{path}: column "text" holds {kind}, not strings')
    return f


def read_parquet(path):
    f = parquet_file(path)
    for batch in f.iter_batches(columns=["text"], batch_size=1024):
        for text in batch.column(0).to_pylist():
            yield text or ""


def check_input(path):
    if os.path.isdir(path):
        raise InputError(
            f"{path}: {os.strerror(errno.EISDIR)} (pass the .jsonl, .txt or .parquet files in it)"
        )
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if not path.endswith((".jsonl", ".txt", ".parquet")):
        raise InputError(f"{path}: unknown input type (expected .jsonl, .txt or .parquet)")
    if path.endswith(".parquet"):
        parquet_file(path)


def read_texts(path):
    """The documents of one input file, by extension."""
    check_input(path)
    try:
        if path.endswith(".jsonl"):
            yield from read_jsonl(path)
        elif path.endswith(".txt"):
            with open(path, encoding="utf-8") as f:
                yield f.read()
        else:
            yield from read_parquet(path)
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (OSError, ValueError) as e:  # ValueError: pyarrow's ArrowInvalid on a corrupt file
        raise InputError(f"{path}: cannot read ({e})") from None


def fineweb_texts():
    """Documents of FineWeb sample-10BT, fetching one parquet file at a time into the HF cache."""
    from huggingface_hub import HfApi, hf_hub_download

    try:
        files = sorted(
            e.path
            for e in HfApi().list_repo_tree(
                FINEWEB_REPO, path_in_repo=FINEWEB_SUBSET, repo_type="dataset"
            )
            if e.path.endswith(".parquet")
        )
        for name in files:
            yield from read_texts(hf_hub_download(FINEWEB_REPO, name, repo_type="dataset"))
    except InputError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise InputError(
            f"cannot fetch {FINEWEB_REPO} {FINEWEB_SUBSET} from the hub "
            f"({type(e).__name__}: {first}); check the network or pass local files"
        ) from None


def _init_worker():
    global _enc
    _enc = get_gpt2_encoding()


def _tokenize(text):
    ids = _enc.encode_ordinary(text)
    tokens = np.empty(
        len(ids) + 1, dtype=np.uint16
    )  # uint16: a quarter of what int64 would pipe back
    tokens[0] = shards.EOT
    tokens[1:] = ids
    return tokens


def shard_path(out_dir, name, index):
    return os.path.join(out_dir, f"{name}_{'val' if index == 0 else 'train'}_{index:06d}.bin")


def tokenize_to_shards(texts, out_dir, name, shard_size=10**8, workers=None):
    """Tokenize an iterable of documents into shards; return [(path, token count)] in order."""
    if shard_size <= 0:
        raise InputError(f"shard_size must be positive, got {shard_size}")
    existing = sorted(glob.glob(os.path.join(glob.escape(out_dir), f"{glob.escape(name)}_*.bin")))
    if existing:
        raise InputError(
            f"{out_dir} already holds {len(existing)} {name}_*.bin shards "
            f"({os.path.basename(existing[0])}, ...); delete them or pick another "
            f"--out_dir/--name"
        )
    written = []
    buf = np.empty(shard_size, dtype=np.uint16)
    fill = docs = 0

    def flush():
        os.makedirs(out_dir, exist_ok=True)
        path = shard_path(out_dir, name, len(written))
        shards.write_shard(path, buf[:fill])
        written.append((path, fill))

    # Load the encoding once here, so forked workers inherit it and errors surface early.
    _init_worker()
    bar = tqdm(total=shard_size, unit="tok", unit_scale=True, desc="shard 0")
    try:
        with mp.Pool(workers or os.cpu_count(), initializer=_init_worker) as pool:
            # imap keeps document order; input errors raised while reading come back here in order.
            for tokens in pool.imap(_tokenize, texts, chunksize=16):
                docs += 1
                while len(tokens):
                    take = min(shard_size - fill, len(tokens))
                    buf[fill : fill + take] = tokens[:take]
                    fill += take
                    tokens = tokens[take:]
                    bar.update(take)
                    if fill == shard_size:
                        flush()
                        fill = 0
                        bar.close()
                        bar = tqdm(
                            total=shard_size,
                            unit="tok",
                            unit_scale=True,
                            desc=f"shard {len(written)}",
                        )
        bar.close()
        # Nothing, or only the <|endoftext|> of empty documents:
        if len(written) * shard_size + fill <= docs:
            raise InputError("the inputs hold no text: nothing to tokenize, no shard written")
        if fill:
            flush()
    except BaseException:
        bar.close()
        # A partial set of shards would be refused by the next run anyway; leave nothing behind.
        for path, _ in written:
            shards.remove_quietly(path)
        raise
    return written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "inputs", nargs="*", help=".jsonl/.txt/.parquet files (none: FineWeb sample-10BT)"
    )
    p.add_argument(
        "--out_dir",
        help="output directory (default data/fineweb10B, or data/custom for local inputs)",
    )
    p.add_argument("--name", help="shard name prefix (default fineweb, or custom for local inputs)")
    p.add_argument("--shard_size", type=int, default=10**8, help="tokens per shard (default 10^8)")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count(),
        help="tokenizer processes (default: all cores)",
    )
    args = p.parse_args(argv)
    if args.workers < 1:
        print(
            f"error: --workers={args.workers}: the number of tokenizer processes must be at "
            "least 1",
            file=sys.stderr,
        )
        return 2
    if args.name is not None and not NAME_RE.fullmatch(args.name):
        print(
            f"error: --name={args.name!r}: the shards' file name prefix, a plain name (letters, "
            "digits, '_', '-', '.'; no '/'): the folder is --out_dir's",
            file=sys.stderr,
        )
        return 2
    local = bool(args.inputs)
    out_dir = args.out_dir or os.path.join(HERE, "custom" if local else "fineweb10B")
    name = args.name or ("custom" if local else "fineweb")
    texts = (t for path in args.inputs for t in read_texts(path)) if local else fineweb_texts()
    try:
        for path in args.inputs:  # fail before any work on a typo
            check_input(path)
        if not local:
            import_pyarrow_parquet("reading FineWeb")
        shards.check_folder(out_dir)  # a file in the way, or no permission: before any work
        written = tokenize_to_shards(texts, out_dir, name, args.shard_size, args.workers)
    except (InputError, FetchError) as e:  # FetchError: the GPT-2 ranks could not be fetched
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {shards.os_error_line(e, '--out_dir', out_dir)}", file=sys.stderr)
        return 1
    total = sum(n for _, n in written)
    print(
        f"{total} tokens in {len(written)} shards ({max(len(written) - 1, 0)} train + val) "
        f"in {out_dir}"
    )
    if len(written) < 2:
        print(
            "note: everything fit in the val shard; lower --shard_size to get train shards",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
