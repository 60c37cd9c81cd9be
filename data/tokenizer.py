"""GPT-2's tokenizer, usable without tiktoken's download host.

get_gpt2_encoding() first tries tiktoken.get_encoding("gpt2"). That needs
openaipublic.blob.core.windows.net (or a warm tiktoken cache); when it is unreachable we build the
identical encoding from the GPT-2 BPE ranks that ship inside the PyPI sdist openai-whisper==20250625
(whisper/assets/gpt2.tiktoken), which only needs the package index. The ranks are written to
data/cache/gpt2.tiktoken (standard .tiktoken format: base64 token, space, rank, one per line),
where later runs and the tests find it without the network, so keep the path and format.

Run `python data/tokenizer.py` to fetch the ranks file ahead of time. A filesystem error in
data/cache (a folder where a file belongs, no permission) is an OSError naming the path, for the
caller to print as one line (shards.os_error_line); what was being written is removed.
"""

import contextlib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

import tiktoken
import tiktoken.load

import shards

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(REPO, "data", "cache")
RANKS_PATH = os.path.join(CACHE, "gpt2.tiktoken")
# Byte-identical to tiktoken's r50k_base.tiktoken (GPT-2 and r50k_base share their ranks).
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
WHISPER_SDIST = (
    "openai-whisper",
    "20250625",
    "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
)
WHISPER_MEMBER = "openai_whisper-20250625/whisper/assets/gpt2.tiktoken"
# GPT-2's pre-tokenizer split pattern, verbatim from tiktoken_ext.openai_public.r50k_pat_str.
GPT2_PAT_STR = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
EOT = 50256


class FetchError(RuntimeError):
    """Could not obtain a pinned artifact; the message is one line meant for the user."""


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def _sha256_path(path):
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def _tarball_names(package, version):
    # Modern sdists are named with the normalised project name (PEP 625: openai_whisper-...);
    # older ones kept the name as typed. Accept either.
    normalised = re.sub(r"[-_.]+", "_", package).lower()
    return [f"{normalised}-{version}.tar.gz", f"{package}-{version}.tar.gz"]


def sdist_path(package, version, sha256):
    """Path of the verified sdist tarball of package==version in data/cache, pip-downloading it
    if needed. The package is never installed; raises FetchError on any failure."""
    names = _tarball_names(package, version)
    for name in names:
        path = os.path.join(CACHE, name)
        if os.path.exists(path):
            if _sha256_path(path) == sha256:
                return path
            os.remove(path)  # stale or corrupt: fetch it again below

    os.makedirs(CACHE, exist_ok=True)
    # Download into a private directory and move the verified file into place, so concurrent
    # runs never see a half-written tarball.
    tmpdir = tempfile.mkdtemp(prefix=".pip-download-", dir=CACHE)
    try:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "--no-input",
            f"{package}=={version}",
            "-d",
            tmpdir,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("ERROR")]
            reason = (errors or lines or [f"pip exited with status {proc.returncode}"])[-1]
            reason = reason.removeprefix("ERROR: ")
            raise FetchError(
                f"cannot fetch {package}=={version} from the package index: "
                f"{reason}; run with network access to PyPI"
            )
        found = [n for n in names if os.path.exists(os.path.join(tmpdir, n))]
        if not found:
            raise FetchError(
                f"pip downloaded {package}=={version} but no {names[0]} appeared "
                f"(got: {', '.join(sorted(os.listdir(tmpdir))) or 'nothing'})"
            )
        got = _sha256_path(os.path.join(tmpdir, found[0]))
        if got != sha256:
            # The temporary copy is deleted with tmpdir below.
            raise FetchError(
                f"{found[0]} from the package index has sha256 {got}, expected "
                f"{sha256}; refusing to use it"
            )
        path = os.path.join(CACHE, found[0])
        os.replace(os.path.join(tmpdir, found[0]), path)
        return path
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def sdist_member(package, version, sha256, member):
    """Bytes of one file inside the verified sdist of package==version (see sdist_path)."""
    path = sdist_path(package, version, sha256)
    with tarfile.open(path, "r:gz") as tar:
        try:
            f = tar.extractfile(member)
        except KeyError:
            f = None
        if f is None:
            raise FetchError(f"{os.path.basename(path)} has no regular file {member}")
        return f.read()


def ensure_ranks_file():
    """Path of data/cache/gpt2.tiktoken, extracted from the whisper sdist if missing or wrong."""
    if os.path.exists(RANKS_PATH) and _sha256_path(RANKS_PATH) == RANKS_SHA256:
        return RANKS_PATH
    data = sdist_member(*WHISPER_SDIST, WHISPER_MEMBER)
    if sha256_bytes(data) != RANKS_SHA256:
        raise FetchError(
            f"{WHISPER_MEMBER} has sha256 {sha256_bytes(data)}, expected {RANKS_SHA256}"
        )
    os.makedirs(CACHE, exist_ok=True)
    tmp = f"{RANKS_PATH}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, RANKS_PATH)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)  # a full disk or a folder in the way leaves no half-written file
        raise
    return RANKS_PATH


def fallback_encoding():
    """The GPT-2 encoding built from data/cache/gpt2.tiktoken (no tiktoken download)."""
    # expected_hash matters: tiktoken caches even local files in a temp dir keyed by *path*, and
    # without a hash it would trust whatever an earlier run left there.
    ranks = tiktoken.load.load_tiktoken_bpe(ensure_ranks_file(), expected_hash=RANKS_SHA256)
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PAT_STR,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": EOT},
    )


@functools.lru_cache(maxsize=None)
def get_gpt2_encoding():
    """A tiktoken.Encoding identical to GPT-2's (n_vocab 50257, <|endoftext|> = 50256)."""
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception:
        pass  # usually the download host is unreachable; the fallback gives the same encoding
    return fallback_encoding()


def main():
    try:
        path = ensure_ranks_file()
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # data/cache: a folder where a file belongs, or no permission
        print(f"error: {shards.os_error_line(e)}", file=sys.stderr)
        return 1
    print(f"{path}: GPT-2 BPE ranks, sha256 {RANKS_SHA256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
