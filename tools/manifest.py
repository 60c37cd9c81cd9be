"""The manifest, in one place: MANIFEST.sha256 in every record and experiment folder.

It is in `sha256sum` format (`<hex>  <path>`, so `sha256sum -c MANIFEST.sha256` reads it) over the
folder's logs: the *.txt in it and in its subfolders (a record's previous/, an experiment's arms).
tools/submit.py and tools/compare.py --freeze write it, `python tools/check.py --write-manifest DIR`
after a real change; tools/check.py names every log edited, added or deleted since. It catches
careless edits, not a forger who rewrites a log and its manifest together.
"""

import hashlib
import os
import re

from layout import read_text, write_atomic

MANIFEST = "MANIFEST.sha256"


def manifest_logs(folder):
    """The logs a folder's manifest covers: *.txt in it and in its subfolders, as sorted relative
    paths."""
    out = []
    subs = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    for sub in ["", *subs]:
        out += [
            os.path.join(sub, f) if sub else f
            for f in sorted(os.listdir(os.path.join(folder, sub)))
            if f.endswith(".txt")
        ]
    return sorted(p.replace(os.sep, "/") for p in out)


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def linked_logs(folder):
    """The logs of folder (as manifest_logs names them) that are symbolic links, not files: a clone
    holds a link, not the log, so none belongs in a manifest."""
    return [p for p in manifest_logs(folder) if os.path.islink(os.path.join(folder, p))]


def write_manifest(folder):
    """Write folder/MANIFEST.sha256 from its logs as they are, whole or not at all; returns its
    path. Raises OSError (a symbolic link for a log: EINVAL, naming it)."""
    linked = linked_logs(folder)
    if linked:
        link = os.path.join(folder, linked[0])
        raise OSError(22, "a symbolic link, not a log (put the file it names in its place)", link)
    path = os.path.join(folder, MANIFEST)
    lines = [f"{sha256_of(os.path.join(folder, p))}  {p}\n" for p in manifest_logs(folder)]
    write_atomic(path, "".join(lines))
    return path


def manifest_errors(folder, name):
    """One line per log of folder that is edited, missing or added since its manifest (name: the
    folder as the user should type it in the fix)."""
    fix = f"python tools/check.py --write-manifest {name}"
    try:
        text = read_text(os.path.join(folder, MANIFEST))
    except (OSError, UnicodeDecodeError):
        return [f"no {MANIFEST}: the logs' sha256 ({fix} writes it from the logs as they are)"]
    listed = {}
    for i, line in enumerate(text.splitlines(), 1):
        digest, sep, path = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
            return [f"{MANIFEST}: line {i} is not '<sha256>  <path>' ({fix} rewrites it)"]
        listed[path] = digest
    present = manifest_logs(folder)
    out = [
        f"{p}: in the manifest but missing (restore it, e.g. git checkout {name}/{p})"
        for p in sorted(listed)
        if p not in present
    ]
    for p in present:
        if os.path.islink(os.path.join(folder, p)):
            continue  # not a log: tools/verify.py names it
        if p not in listed:
            out.append(f"{p}: not in the manifest (delete it, or if it is a real run, {fix})")
        elif sha256_of(os.path.join(folder, p)) != listed[p]:
            out.append(
                f"{p}: edited since the manifest (restore it, e.g. git checkout {name}/{p}; "
                f"logs stay unedited)"
            )
    return out
