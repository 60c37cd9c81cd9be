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

import errno
import importlib.util
import os
import re
import shlex
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD_RE = re.compile(r"(\d{4}-\d{2}-\d{2})_(\S+)")  # a record or experiment folder: date, name
RETIRED = "retired"
PREVIOUS = "previous"
ARMS = "arms.tsv"
# How many folders below the root each kind of folder lies.
DEPTH = {"records": 1, "experiments": 1, "experiment": 2, "record": 3, "arm": 3, "previous": 4}
# A record's frozen script, relative to the root: the only kind of script a fork.diff starts from
# (besides an arm folder). The root train_gpt.py is none: it changes with every record.
FROZEN_RE = re.compile(r"records/[^/]+/(?:retired/)?\d{4}-\d{2}-\d{2}_[^/]+/train_gpt\.py")
# An arm's name is its folder's name and the first cell of its arms.tsv line.
ARM_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=,-]*")
EXPERIMENT_FILES = (ARMS, "README.md", "MANIFEST.sha256", "compare.png")  # beside the arm folders


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


def arm_name_error(name):
    """Why name cannot name an arm (its folder, and the first cell of its arms.tsv line); None if it
    can."""
    rule = "an arm's name is its folder's: letters, digits and _ . - + = ,"
    if not name:
        return f"the arm's name is empty ({rule})"
    for bad, what in (("/", "'/'"), ("\\", "'\\'"), ("\t", "a tab"), ("\n", "a line break")):
        if bad in name:
            return f"arm name {name!r} holds {what} ({rule})"
    if ".." in name:
        return f"arm name {name!r} holds '..' ({rule})"
    if name in EXPERIMENT_FILES:
        return f"arm name {name!r} names a file of the experiment folder: pick another"
    if not name[0].isascii() or not name[0].isalnum():
        return f"arm name {name!r} starts with {name[0]!r} ({rule}; the first a letter or digit)"
    bad = [c for c in name if not ARM_NAME_RE.fullmatch("a" + c)]
    if bad:
        return f"arm name {name!r} holds {bad[0]!r} ({rule})"
    return None


def read_arms(edir):
    """arms.tsv of an experiment folder as [(name, words)]: words are SCRIPT and its flags. Raises
    LayoutError for a line that is not NAME<TAB>SCRIPT [--name=value ...], a name that cannot name
    an arm folder, or a name on two lines."""
    path = os.path.join(edir, ARMS)
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError):
        raise LayoutError(f"{path}: missing or unreadable") from None
    arms, lines = [], {}
    for k, line in enumerate(text.splitlines(), 1):
        name, tab, command = line.partition("\t")
        try:
            words = shlex.split(command) if tab else []
        except ValueError:  # an unclosed quote
            words = []
        if not name or not words:
            raise LayoutError(f"{path}: line {k}: expected NAME<TAB>SCRIPT [--name=value ...]")
        why = arm_name_error(name)
        if why:
            raise LayoutError(f"{path}: line {k}: {why}")
        if name in lines:
            raise LayoutError(
                f"{path}: line {k}: arm {name} again (first on line {lines[name]}): one line per "
                f"arm, its name its folder's"
            )
        lines[name] = k
        arms.append((name, words))
    return arms


def write_arms(edir, arms):
    """arms.tsv from [(name, words)], one line per arm: `NAME<TAB>SCRIPT [--name=value ...]`."""
    write_atomic(
        os.path.join(edir, ARMS), "".join(f"{name}\t{shlex.join(words)}\n" for name, words in arms)
    )


def folder_kind(path):
    """What a folder is in the layout: "experiment" (holds arms.tsv), "arm" (beside an arms.tsv),
    "previous" (a record's previous/), "record" (a date-named folder holding train_gpt.py), or None
    (anything else, or no folder)."""
    if not os.path.isdir(path):
        return None
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    if os.path.isfile(os.path.join(path, ARMS)):
        return "experiment"
    if os.path.isfile(os.path.join(parent, ARMS)):
        return "arm"
    if name == PREVIOUS and os.path.isfile(os.path.join(parent, "train_gpt.py")):
        return "previous"
    if RECORD_RE.fullmatch(name) and os.path.isfile(os.path.join(path, "train_gpt.py")):
        return "record"
    return None


def frozen_scripts(root):
    """Every record's train_gpt.py under root/records, relative to root, in record order."""
    records = os.path.join(root, "records")
    if not os.path.isdir(records):
        return []
    return [
        name_in(os.path.join(d, "train_gpt.py"), root)
        for _, d, _ in find_records(records)
        if os.path.isfile(os.path.join(d, "train_gpt.py"))
    ]


def write_atomic(path, text):
    """Write text to path (UTF-8, newlines as given) through a temporary file beside it, renamed
    over it: path holds the old text or the new one, never a part. Raises OSError, leaving no
    temporary file."""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.tmp-", dir=os.path.dirname(path) or "."
    )
    try:
        with open(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def os_error(path, err, fix):
    """A filesystem error as one line: the path, what the OS said, and the fix."""
    return f"{path}: {err.strerror or err.__class__.__name__} ({fix})"


def existing_part(path):
    """The innermost of path and the folders above it that exists: where making path would start,
    and, if it is a file, the file that stands where a folder belongs."""
    at = os.path.abspath(path)
    while not os.path.lexists(at):
        at = os.path.dirname(at)
    return at


def unwritable(folder):
    """Whether files can be made in folder (made with its parents if missing): None if they can,
    else (path, OSError) naming the path that refuses. Tried by making and removing a folder there,
    not read from permission bits, which root passes."""
    at = existing_part(folder)
    if not os.path.isdir(at):
        return at, NotADirectoryError(errno.ENOTDIR, "a file where a folder belongs", at)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=at))
    except OSError as e:
        return at, e
    return None


def load_script(path, name):
    """A script of the repository (train_gpt.py, a record's or a checkpoint's copy of it, data/'s)
    loaded as the module `name`: its definitions run, its main does not."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
