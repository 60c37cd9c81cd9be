"""Forks stored as diffs, in one place: making, applying and resolving them.

A script is stored once (a record's train_gpt.py); a fork is a folder of unedited logs plus, where
the source they embed is not its base's, fork.diff: the unified diff from the base's source to that
source. Its `--- ` line names the base, its `+++ ` line the folder itself, both relative to the
repository root. A base is a tracked script or an arm folder (a fork of a fork).

An arm folder (tools/layout.py) with fork.diff stands for its base's source with the diff applied;
one without stands for the source of the SCRIPT its experiment's arms.tsv line names. A record's
previous/ folder is the same kind of folder (tools/verify.py says when it needs a fork.diff).
Diffs are made with difflib and applied strictly here: any mismatch is refused, never fuzzed.
`python tools/forks.py FOLDER BASE` writes a folder's fork.diff from its logs.
"""

import difflib
import os
import re
import subprocess

from layout import (
    ARMS,
    FROZEN_RE,
    LayoutError,
    folder_kind,
    fork_root,
    frozen_scripts,
    name_in,
    read_arms,
    read_text,
    write_atomic,
)
from logformat import LogError, read_log

DIFF = "fork.diff"
NO_EOL = "\\ No newline at end of file\n"
HUNK_RE = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@\n")


class ForkError(LayoutError):
    """A fork that cannot be rebuilt; the message is one line naming the file."""


def split_lines(text):
    """text as lines that keep their "\\n" (only "\\n" ends a line), so "".join gives text back."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def make_diff(old, new, old_name, new_name):
    """The unified diff (3 lines of context) from old to new; "" if they are equal."""
    out = []
    for line in difflib.unified_diff(split_lines(old), split_lines(new), old_name, new_name):
        out.append(line if line.endswith("\n") else line + "\n" + NO_EOL)
    return "".join(out)


def base_of(diff, where):
    """The base a diff names on its `--- ` line."""
    lines = split_lines(diff)
    if len(lines) < 3 or not lines[0].startswith("--- ") or not lines[1].startswith("+++ "):
        raise ForkError(f"{where}: not a unified diff (expected '--- BASE', '+++ FOLDER', hunks)")
    return lines[0][4:].rstrip("\n")


def apply_diff(diff, old, where):
    """new from old and the diff from old to new. Every context and removed line must match old
    exactly, at the line numbers the hunk headers give; anything else raises ForkError."""
    base_of(diff, where)
    lines, src, out, pos, i = split_lines(diff), split_lines(old), [], 0, 2
    while i < len(lines):
        m = HUNK_RE.fullmatch(lines[i])
        if m is None:
            raise ForkError(f"{where}: line {i + 1}: expected a hunk header '@@ -a,b +c,d @@'")
        old_n, new_n = int(m[2] or 1), int(m[4] or 1)
        start = int(m[1]) - (
            old_n > 0
        )  # a hunk that removes and keeps nothing names the line it follows
        if not pos <= start <= len(src):
            raise ForkError(
                f"{where}: line {i + 1}: hunk outside the base or before the previous hunk"
            )
        out += src[pos:start]
        pos = start
        if int(m[3]) - (new_n > 0) != len(out):
            raise ForkError(f"{where}: line {i + 1}: hunk header's new line number does not follow")
        i += 1
        while old_n or new_n:
            if i == len(lines):
                raise ForkError(f"{where}: ends inside a hunk")
            tag, text = lines[i][:1], lines[i][1:]
            i += 1
            if lines[i : i + 1] == [NO_EOL]:
                text, i = text[:-1], i + 1
            if tag not in (" ", "-", "+"):
                raise ForkError(
                    f"{where}: line {i}: expected ' ', '-' or '+' at the start of a hunk line"
                )
            if tag != "+":
                if pos == len(src) or src[pos] != text:
                    raise ForkError(f"{where}: line {i}: does not match line {pos + 1} of the base")
                pos, old_n = pos + 1, old_n - 1
            if tag != "-":
                out.append(text)
                new_n -= 1
            if old_n < 0 or new_n < 0:
                raise ForkError(f"{where}: line {i}: more hunk lines than its header counts")
    return "".join(out + src[pos:])


def diff_size(diff):
    """(lines added, lines removed) by a diff."""
    lines = split_lines(diff)[2:]
    return sum(x.startswith("+") for x in lines), sum(x.startswith("-") for x in lines)


def lineage(script, root, _seen=()):
    """The absolute paths SCRIPT's source is rebuilt from, itself first: for an arm folder, the
    folder, then its fork.diff's base or its arms.tsv SCRIPT, and so on down to a script. Stops at
    what cannot be read or at a cycle (source() names those)."""
    path = os.path.abspath(os.path.join(root, script))
    if not os.path.isdir(path) or path in _seen:
        return [*_seen, path]
    diff_path = os.path.join(path, DIFF)
    try:
        if os.path.isfile(diff_path):
            return lineage(base_of(read_text(diff_path), diff_path), root, (*_seen, path))
        scripts = {name: words[0] for name, words in read_arms(os.path.dirname(path))}
        return lineage(scripts[os.path.basename(path)], root, (*_seen, path))
    except (OSError, UnicodeDecodeError, LayoutError, KeyError):
        return [*_seen, path]


def source(script, root, _seen=()):
    """The source SCRIPT (relative to root, or absolute) stands for: a script's text; for a folder
    with fork.diff, its base's source with the diff applied; for an arm folder without, the source
    of the SCRIPT its arms.tsv line names."""
    path = os.path.normpath(os.path.join(root, script))
    if not os.path.isdir(path):
        try:
            return read_text(path)
        except (OSError, UnicodeDecodeError):
            raise ForkError(f"{script} does not exist or is unreadable") from None
    if path in _seen:
        raise ForkError(f"{script}: its script names itself (an arm folder without fork.diff)")
    diff_path = os.path.join(path, DIFF)
    if os.path.isfile(diff_path):
        where = name_in(diff_path, root)
        try:
            diff = read_text(diff_path)
        except UnicodeDecodeError:
            raise ForkError(f"{where}: not UTF-8 text") from None
        base = base_of(diff, where)
        try:
            old = source(base, root, _seen + (path,))
        except ForkError as e:
            raise ForkError(f"{where}: its base {e}") from None
        return apply_diff(diff, old, where)
    scripts = {}
    if os.path.isfile(os.path.join(os.path.dirname(path), ARMS)):
        try:
            scripts = {name: words[0] for name, words in read_arms(os.path.dirname(path))}
        except LayoutError as e:
            raise ForkError(str(e)) from None
    if os.path.basename(path) not in scripts:
        raise ForkError(f"{script}: no {DIFF}, and no {ARMS} line beside it names its script")
    return source(scripts[os.path.basename(path)], root, _seen + (path,))


def logged_source(folder):
    """The one source every log (<uuid>.txt) in folder embeds; ForkError if none or several."""
    sources = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".txt"):
            try:
                sources.setdefault(read_log(os.path.join(folder, f))["source"], f)
            except LogError as e:
                raise ForkError(f"{os.path.join(folder, f)}: {e}") from None
    if not sources:
        raise ForkError(f"{folder}: no logs (*.txt)")
    if len(sources) > 1:
        raise ForkError(
            f"{folder}: its logs embed {len(sources)} different sources (first in "
            f"{', '.join(sources.values())}): one arm, one script"
        )
    return next(iter(sources))


def write_fork(folder, root, base, new, name=None):
    """Make folder/fork.diff the diff from base (a SCRIPT relative to root) to new, or remove it if
    new is base's source; name is what its `+++ ` line calls the folder (default: the folder
    relative to root). Returns the SCRIPT that stands for new: the folder (its name), or the base.
    Written whole or not at all (OSError); a base that is the folder, or is rebuilt from it, raises
    ForkError."""
    name = name or name_in(folder, root)
    if os.path.abspath(folder) in lineage(base, root):
        what = (
            "is the folder itself"
            if lineage(base, root)[0] == os.path.abspath(folder)
            else ("is rebuilt from the folder (a cycle)")
        )
        raise ForkError(
            f"{name}: the base {base} {what}: a fork.diff starts from a record's train_gpt.py "
            f"or another arm folder"
        )
    diff = make_diff(source(base, root), new, base, name)
    path = os.path.join(folder, DIFF)
    if not diff:
        if os.path.exists(path):
            os.remove(path)
        return base
    write_atomic(path, diff)
    return name


def git_state(path):
    """What git says of the file at path: clean (tracked, as HEAD holds it), untracked (or
    ignored) or modified; None where git cannot say (no git, or not in a repository)."""
    try:
        git = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--", os.path.basename(path)],
            cwd=os.path.dirname(os.path.abspath(path)),
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if git.returncode != 0:
        return None
    status = git.stdout[:2]
    return "clean" if not status else "untracked" if status in ("??", "!!") else "modified"


def base_error(path, root):
    """Why the file or folder at path cannot be a fork's base (one line naming it), or None. A base
    is frozen: an arm folder whose source rebuilds, or a record's train_gpt.py
    (records/<track>/<YYYY-MM-DD>_<Name>/train_gpt.py) as git holds it, so a clone rebuilds every
    fork; never the root train_gpt.py, which changes with every record."""
    name = name_in(path, root)
    if os.path.isdir(path):
        if folder_kind(path) not in ("arm", "previous"):
            return (
                f"{name} is a folder but no arm folder (experiments/<YYYY-MM-DD>_<Name>/<arm>, "
                f"beside arms.tsv): a fork's base is a record's train_gpt.py or an arm folder"
            )
        try:
            source(name_in(path, fork_root(path)), fork_root(path))
        except ForkError as e:
            return str(e)
        return None
    if not os.path.isfile(path):
        return f"{name} does not exist"
    if not FROZEN_RE.fullmatch(name):
        why = " (the root train_gpt.py changes with every record)" if name == "train_gpt.py" else ""
        return (
            f"{name} is not a frozen script{why}: a fork's base is a record's "
            f"train_gpt.py (records/<track>/<YYYY-MM-DD>_<Name>/train_gpt.py) or an arm folder"
        )
    state = git_state(path)
    if state == "untracked":
        return (
            f"{name} is not tracked by git, so a clone would lack it: name the tracked script "
            f"it forks, e.g. --base records/<track>/<record>/train_gpt.py"
        )
    if state == "modified":
        return (
            f"{name} differs from what git holds (git diff HEAD -- {name} shows how), so a clone "
            f"would rebuild another fork: restore it (git checkout HEAD -- {name})"
        )
    return None


def check_base(path, root):
    """Raise ForkError (base_error's line) if path cannot be a fork's base."""
    why = base_error(path, root)
    if why:
        raise ForkError(why)


def frozen_bases(root):
    """The records' train_gpt.py under root that can be a base (base_error is None), relative to
    root."""
    return [s for s in frozen_scripts(root) if base_error(os.path.join(root, s), root) is None]


def nearest(new, bases, root):
    """The base (a SCRIPT relative to root) whose source differs least from new."""
    return min(bases, key=lambda b: len(make_diff(source(b, root), new, "", "").splitlines()))
