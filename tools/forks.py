#!/usr/bin/env python3
"""Write a fork's diff from its logs (tools/forkdiff.py makes, applies and resolves the diffs).

    python tools/forks.py FOLDER BASE    # FOLDER/fork.diff: BASE -> the source its logs embed

FOLDER is an experiment's arm folder or a record's previous/; BASE is a tracked script or an arm
folder, named relative to the repository root. If the logs embed BASE unchanged, no diff is written
(an old one is removed). Prints the SCRIPT that then stands for the folder in arms.tsv.
"""

import os
import sys

from forkdiff import DIFF, ForkError, logged_source, write_fork
from layout import fork_root, name_in


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not os.path.isdir(args[0]):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    folder, root = args[0], fork_root(args[0])
    base = name_in(args[1], root)
    try:
        script = write_fork(folder, root, base, logged_source(folder))
    except ForkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if script == base:
        print(f"{folder}: its logs embed {script} unchanged: no {DIFF}; ", end="")
        print(f"its arms.tsv SCRIPT is {script}")
    else:
        print(f"wrote {os.path.join(folder, DIFF)}; its arms.tsv SCRIPT is {script}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
