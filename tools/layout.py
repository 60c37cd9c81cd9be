"""The repository's layout, in one place: its root, the record folders and their order, the
experiment and arm folders, and arms.tsv. Every tool finds its folders through this module.

    records/<track>/<YYYY-MM-DD>_<Name>/          a record: train_gpt.py, its logs, README.md,
                                                  MANIFEST.sha256, previous/ (the logs of the
                                                  script it beats, and fork.diff if a fork)
    records/<track>/retired/<YYYY-MM-DD>_<Name>/  a record whose target was retired
    records/<track>/README.md, records/<track>.png    a track's notes and its plot: not records
    experiments/<YYYY-MM-DD>_<Name>/              an experiment: arms.tsv, README.md, compare.png,
                                                  MANIFEST.sha256
    experiments/<YYYY-MM-DD>_<Name>/<arm>/        an arm: its logs, and fork.diff if a fork
    experiments/README.md                         the ideas table (tools/tables.py)

Paths in fork.diff and arms.tsv are relative to the root. A folder's root is found from its place in
this layout, not from where the tools lie, so a copy of the layout anywhere (a test's temporary
folder) works the same; ROOT is the checkout the tools belong to, the default for the commands.
"""

import os
import re
import shlex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD_RE = re.compile(r"(\d{4}-\d{2}-\d{2})_(\S+)")  # a record or experiment folder: date, name
RETIRED = "retired"
PREVIOUS = "previous"
ARMS = "arms.tsv"
# How many folders below the root each kind of folder lies.
DEPTH = {"records": 1, "experiments": 1, "experiment": 2, "record": 3, "arm": 3, "previous": 4}


class LayoutError(ValueError):
    """A folder or file that does not fit the layout; the message is one line naming it."""


def read_text(path):
    """A file's text as it is: newline="" keeps \\r\\n etc., so "byte for byte" comparisons stay
    exact."""
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def root_of(folder, kind):
    """The repository root above folder, a folder of the given kind (a key of DEPTH)."""
    return os.path.abspath(os.path.join(folder, *[os.pardir] * DEPTH[kind]))


def records_dir_of(record_dir):
    """The records folder above a record folder (records/<track>/<record>; not a retired one)."""
    return os.path.abspath(os.path.join(record_dir, os.pardir, os.pardir))


def fork_root(folder):
    """The root above a folder that may hold a fork.diff: an experiment's arm, or a record's
    previous/."""
    kind = PREVIOUS if os.path.basename(os.path.normpath(folder)) == PREVIOUS else "arm"
    return root_of(folder, kind)


def name_in(path, root):
    """path as fork.diff and arms.tsv name it: relative to root if inside it, else absolute."""
    rel = os.path.relpath(os.path.abspath(path), root)
    return os.path.abspath(path) if rel.startswith(os.pardir) else rel.replace(os.sep, "/")


def shown(folder):
    """folder as the user types it: relative to the working directory if below it."""
    rel = os.path.relpath(folder)
    return os.path.abspath(folder) if rel.startswith(os.pardir) else rel


def record_key(name):
    """The order of the records of a track: by date; on one date a Baseline comes first, since the
    records after it claim its target."""
    return name[:10], not name.endswith("_Baseline"), name


def record_folders(folder):
    """The names of the record folders in a track's folder (or its retired/), in record order: every
    folder but hidden ones and retired/. Files (a track's README.md) are not records."""
    if not os.path.isdir(folder):
        return []
    names = [
        name
        for name in os.listdir(folder)
        if os.path.isdir(os.path.join(folder, name))
        and not name.startswith(".")
        and name != RETIRED
    ]
    return sorted(names, key=record_key)


def find_records(records_dir):
    """(track, record_dir, retired) for every record folder, sorted by track, then the retired ones,
    then in record order."""
    out = []
    for track in sorted(os.listdir(records_dir)):
        tdir = os.path.join(records_dir, track)
        if not os.path.isdir(tdir) or track.startswith("."):
            continue
        for retired, folder in ((True, os.path.join(tdir, RETIRED)), (False, tdir)):
            out += [(track, os.path.join(folder, name), retired) for name in record_folders(folder)]
    return out


def record_before(track_dir, name):
    """The name of the record that a record called name follows in its track (None if the first)."""
    before = [n for n in record_folders(track_dir) if record_key(n) < record_key(name)]
    return before[-1] if before else None


def experiment_folders(experiments_dir):
    """The names of the experiment folders, sorted: every folder but hidden ones."""
    return sorted(
        name
        for name in os.listdir(experiments_dir)
        if os.path.isdir(os.path.join(experiments_dir, name)) and not name.startswith(".")
    )


def read_arms(edir):
    """arms.tsv of an experiment folder as [(name, words)]: words are SCRIPT and its flags."""
    path = os.path.join(edir, ARMS)
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError):
        raise LayoutError(f"{path}: missing or unreadable") from None
    arms = []
    for k, line in enumerate(text.splitlines(), 1):
        name, tab, command = line.partition("\t")
        words = shlex.split(command) if tab else []
        if not name or not words:
            raise LayoutError(f"{path}: line {k}: expected NAME<TAB>SCRIPT [--name=value ...]")
        arms.append((name, words))
    return arms


def write_arms(edir, arms):
    """arms.tsv from [(name, words)], one line per arm: `NAME<TAB>SCRIPT [--name=value ...]`."""
    with open(os.path.join(edir, ARMS), "w", encoding="utf-8", newline="") as f:
        f.writelines(f"{name}\t{shlex.join(words)}\n" for name, words in arms)
