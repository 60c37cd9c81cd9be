"""Download GPT-2-tokenized FineWeb shards from the Hugging Face hub.

    python data/cached_fineweb10B.py [N] [--edu] [--dir DIR]

Fetches <prefix>_val_000000.bin and <prefix>_train_000001.bin .. <prefix>_train_{N:06d}.bin:
  default     dataset kjj0/fineweb10B-gpt2 (103 train shards in all), files fineweb_*.bin,
              into data/fineweb10B/
  --edu       dataset kjj0/finewebedu10B-gpt2 (99 train shards), files finewebedu_*.bin,
              into data/finewebedu10B/
N defaults to 16 (1.6B training tokens, 100M per shard), twice what the trainer's default run
needs: 1390 steps x 524,288 = 729M tokens, 8 shards. With fewer shards than a run needs, the
stream wraps around and repeats data. An N beyond the dataset's shards is refused at once.

Files already present and valid (shards.read_header) are skipped without touching the network,
so a complete directory works offline. Every downloaded file is validated; an invalid one is
deleted and reported. Downloads go through huggingface_hub.hf_hub_download, which writes to a
temporary *.incomplete file under DIR/.cache/huggingface/download/, resumes a connection cut
midway with an HTTP Range request (a few tries within the run), checks the byte count against the
server's size, and only then renames the file to its final name: a .bin under its final name is
always complete. A run that is killed leaves at most that temporary file; the next run starts the
file over. HF_ENDPOINT (read by huggingface_hub at import) selects the server; HF_HUB_OFFLINE=1
forbids network access. Failures print one line on stderr and exit 1 (a filesystem error names the
path, the OS error and the fix: a --dir that is a file or cannot be written is said before any
download); a folder the run made is removed again if no shard reached it.
"""

import argparse
import errno
import glob
import logging
import os
import shutil
import sys
import time

import shards

# --edu -> (repo, default directory, file prefix, train shards in the dataset). The counts are
# upstream's (modded-nanogpt's data/cached_fineweb10B.py: "num_chunks = 103 # full fineweb10B";
# cached_finewebedu10B.py: "num_chunks = 99"): fineweb_train_000001.bin .. _000103.bin.
DATASETS = {
    False: ("kjj0/fineweb10B-gpt2", "fineweb10B", "fineweb", 103),
    True: ("kjj0/finewebedu10B-gpt2", "finewebedu10B", "finewebedu", 99),
}


class DownloadError(Exception):
    """One line for the user: which file failed and what to do."""


def shard_names(prefix, n):
    return [f"{prefix}_val_{0:06d}.bin"] + [f"{prefix}_train_{i:06d}.bin" for i in range(1, n + 1)]


def is_valid(path):
    try:
        shards.read_header(path)
        return True
    except shards.ShardError:
        return False


def explain(exc, fname, repo, endpoint, directory):
    """Turn a huggingface_hub/HTTP exception into one line naming the file and what to do."""
    from huggingface_hub import errors

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return (
            f"{fname}: HF_HUB_OFFLINE is set; unset it to download, or copy the shards into place"
        )
    if isinstance(exc, errors.RepositoryNotFoundError):  # includes gated repos
        return (
            f"{fname}: dataset {repo} not found at {endpoint} "
            f"(HTTP {exc.response.status_code}); check HF_ENDPOINT and --edu"
        )
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        if (
            "_val_" in fname
        ):  # every dataset has its val shard: the repo or the server is not the one
            return (
                f"{fname}: no such file in dataset {repo} (HTTP 404); check HF_ENDPOINT and --edu"
            )
        return f"{fname}: no such file in dataset {repo} (HTTP 404); ask for fewer shards (N)"
    if isinstance(exc, errors.HfHubHTTPError) and exc.response is not None:
        return (
            f"{fname}: server {endpoint} answered HTTP {exc.response.status_code} ({first}); "
            f"try again later"
        )
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename is not None:
        return shards.os_error_line(exc, "--dir", directory)  # the disk, not the network
    if isinstance(exc, errors.LocalEntryNotFoundError) or type(exc).__module__.startswith("httpx"):
        # LocalEntryNotFoundError is how hf_hub_download reports an unreachable server; httpx
        # errors are connections refused, timed out or dropped mid-transfer after its retries.
        return (
            f"{fname}: network error talking to {endpoint} ({first}); check the network or "
            f"HF_ENDPOINT and rerun (finished shards are kept)"
        )
    return f"{fname}: download failed ({type(exc).__name__}: {first}); rerun to retry"


def first_request(head, tries=3):
    """One HEAD before the first download: hf_hub_download retries an unreachable server with
    backoff for ~25 s before giving up, which is only worth it mid-run. A server error (5xx) is
    transient whenever it comes, so that is retried here too, after 1 s and 2 s."""
    from huggingface_hub import errors

    for attempt in range(tries):
        try:
            return head()
        except errors.HfHubHTTPError as e:
            if e.response is None or e.response.status_code < 500 or attempt == tries - 1:
                raise
            time.sleep(2**attempt)


def download(names, directory, repo):
    """Fetch the missing or invalid files among names into directory; return how many it fetched."""
    todo, invalid = [], []
    for fname in names:
        path = os.path.join(directory, fname)
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if os.path.exists(path) and not is_valid(path):
            invalid.append(path)
        if not os.path.exists(path) or path in invalid:
            todo.append(fname)
    if not todo:
        return 0
    # A file in the way or a folder that cannot be written: said before any download.
    shards.check_folder(directory)
    for path in invalid:
        # hf_hub_download would keep a bad file whose download metadata looks current.
        print(f"{os.path.basename(path)}: present but invalid, downloading it again")
        os.remove(path)

    # Imported here so that HF_* variables set by the caller are read at import.
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.utils import logging as hf_logging

    # Its retry warnings are multi-line; our own messages say what failed.
    hf_logging.set_verbosity(logging.ERROR)
    endpoint = constants.ENDPOINT

    # A killed run can leave an empty temporary file behind; a non-empty one is resumed, so it
    # stays.
    for stale in glob.glob(
        os.path.join(
            glob.escape(directory), ".cache", "huggingface", "download", "**", "*.incomplete"
        ),
        recursive=True,
    ):
        if os.path.getsize(stale) == 0:
            os.remove(stale)
    new = outermost_missing(directory)
    os.makedirs(directory, exist_ok=True)
    try:
        for i, fname in enumerate(todo):
            path = os.path.join(directory, fname)
            try:
                if i == 0:
                    first_request(
                        lambda fname=fname: get_hf_file_metadata(
                            hf_hub_url(repo, fname, repo_type="dataset")
                        )
                    )
                print(f"downloading {fname} ({i + 1}/{len(todo)})", flush=True)
                hf_hub_download(
                    repo_id=repo, filename=fname, repo_type="dataset", local_dir=directory
                )
            except Exception as e:  # every failure ends the same way: one line, exit 1
                raise DownloadError(explain(e, fname, repo, endpoint, directory)) from None
            try:
                shards.read_header(path)
            except shards.ShardError as e:
                os.remove(path)
                raise DownloadError(
                    f"{e}; deleted it. Rerun to fetch it again; if this repeats, the "
                    f"copy on {endpoint} is bad"
                ) from None
    except BaseException:
        # A folder this run made and no shard reached holds only the hub's bookkeeping: leave no
        # trace.
        if new and not glob.glob(os.path.join(glob.escape(directory), "*.bin")):
            shutil.rmtree(new, ignore_errors=True)
        raise
    return len(todo)


def outermost_missing(path):
    """The outermost folder of path that does not exist yet (None if path exists)."""
    path, missing = os.path.abspath(path), None
    while not os.path.exists(path):
        path, missing = os.path.dirname(path), path
    return missing


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "n",
        nargs="?",
        type=int,
        default=16,
        help="number of training shards, ~100M tokens each (default 16)",
    )
    p.add_argument("--edu", action="store_true", help="FineWeb-Edu instead of FineWeb")
    p.add_argument("--dir", help="target directory (default data/fineweb10B or data/finewebedu10B)")
    args = p.parse_args(argv)
    repo, default_dir, prefix, count = DATASETS[args.edu]
    if not 0 <= args.n <= count:
        print(
            f"error: N={args.n}: {repo} has {count} train shards ({prefix}_train_000001.bin .. "
            f"{prefix}_train_{count:06d}.bin); ask for 0 to {count}",
            file=sys.stderr,
        )
        return 2
    directory = args.dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), default_dir)
    names = shard_names(prefix, args.n)
    try:
        fetched = download(names, directory, repo)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {shards.os_error_line(e, '--dir', directory)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun to continue (finished shards are kept)", file=sys.stderr)
        return 130
    print(f"{len(names)} shards ready in {directory} ({fetched} downloaded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
