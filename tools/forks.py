#!/usr/bin/env python3
"""Write a fork's diff from its logs (tools/forkdiff.py makes, applies and resolves the diffs).

    python tools/forks.py FOLDER BASE    # FOLDER/fork.diff: BASE -> the source its logs embed

FOLDER is an experiment's arm folder or a record's previous/; BASE is a frozen script, a record's
train_gpt.py as git holds it, or another arm folder (never FOLDER itself or a folder rebuilt from
it), named relative to the repository root. If the logs embed BASE unchanged, no diff is written
(an old one is removed); a previous/ whose logs embed a record's train_gpt.py takes no diff. The
diff is written whole or not at all, and taken back if any record or experiment folder that
passed the check (tools/check.py) would then fail it. Prints the SCRIPT that then stands for the
folder in arms.tsv.
"""

import os
import sys

import tracks
from forkdiff import DIFF, ForkError, base_error, logged_source, source, write_fork
from layout import (
    PREVIOUS,
    experiment_folders,
    folder_kind,
    fork_root,
    frozen_scripts,
    name_in,
    os_error,
    read_text,
    write_atomic,
)
from verify import check_all, check_experiment

USAGE = __doc__.split("\n\n")[1]


def checked(root):
    """{folder: its reasons} for every record and experiment folder under root."""
    out = {}
    if os.path.isdir(os.path.join(root, "records")):
        for r in check_all(os.path.join(root, "records"), tracks.TARGETS):
            out[name_in(r["dir"], root)] = set(r["reasons"])
    experiments = os.path.join(root, "experiments")
    if os.path.isdir(experiments):
        for name in experiment_folders(experiments):
            out[f"experiments/{name}"] = set(check_experiment(os.path.join(experiments, name))[1])
    return out


def refuse(message):
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    folder, base_arg = args
    kind = folder_kind(folder)
    if not os.path.isdir(folder):
        return refuse(f"{folder}: no such folder (FOLDER is an arm folder or a record's previous/)")
    if kind not in ("arm", PREVIOUS):
        return refuse(
            f"{folder}: not an arm folder (experiments/<YYYY-MM-DD>_<Name>/<arm>, beside arms.tsv) "
            f"or a record's previous/"
        )
    root = fork_root(folder)
    base = name_in(base_arg, root)
    why = base_error(base_arg, root)
    if why:
        return refuse(f"BASE {why}")
    try:
        new = logged_source(folder)
        if kind == PREVIOUS:  # logs of a record's own script take no diff (tools/verify.py)
            same = [s for s in frozen_scripts(root) if source(s, root) == new]
            if same and base not in same:
                return refuse(
                    f"{folder}: its logs embed {same[0]} unchanged, so it takes no {DIFF} "
                    f"(python tools/forks.py {folder} {same[0]} removes one)"
                )
        before = checked(root)
        path = os.path.join(folder, DIFF)
        old = read_text(path) if os.path.isfile(path) else None
        script = write_fork(folder, root, base, new)
        broken = [(f, r) for f, r in checked(root).items() if r and not before.get(f)]
        if broken:  # taken back: the folder as it was
            if old is not None:
                write_atomic(path, old)
            elif os.path.exists(path):
                os.remove(path)
            f, reasons = broken[0]
            return refuse(
                f"{DIFF} from {base} not written: {f} would then fail the check: "
                f"{sorted(reasons)[0]}"
            )
    except ForkError as e:
        return refuse(str(e))
    except OSError as e:
        return refuse(os_error(e.filename or folder, e, "make the folder writable and rerun"))
    if script == base:
        print(f"{folder}: its logs embed {script} unchanged: no {DIFF}; ", end="")
        print(f"its arms.tsv SCRIPT is {script}")
    else:
        print(f"wrote {os.path.join(folder, DIFF)}; its arms.tsv SCRIPT is {script}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
