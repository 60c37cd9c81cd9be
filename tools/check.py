#!/usr/bin/env python3
"""Verify records and experiments from their logs; optionally rewrite the tables and the plots.

    python tools/check.py [--table] [--plot] [--records DIR] [--readme PATH] [--target TRACK=VALUE]
    python tools/check.py --rerun records/<track>/<record> [--log UUID.txt]
    python tools/check.py --extract PATH    # the source a log, an arm folder or a record stands for
    python tools/check.py --write-manifest DIR ...   # DIR/MANIFEST.sha256 from its logs as they are

Prints one line per record (records/, the rules in tools/verify.py), per experiment folder
(experiments/), and one for experiments/README.md, whose ideas table must be what --table writes
(tools/tables.py); exits 1 if any fails. Records whose target was retired stay readable under
records/<track>/retired/ and are checked against the target they were made for. What the check
guarantees, and what it cannot: tools/README.md.

--table rewrites the records table in README.md and the ideas table in experiments/README.md;
--plot redraws records/<track>.png and every experiment's compare.png from the logs
(tools/plots.py). --rerun runs a CPU record's frozen script again with the hyperparameters and seed
of one of its logs, and says whether the final val loss agrees (see RERUN_SIGMAS).

--extract PATH prints, byte for byte, the source a log (<uuid>.txt) embeds, the one an arm folder
(experiments/<date>_<Name>/<arm>) or a record's previous/ stands for, or a record folder's
train_gpt.py. --write-manifest takes record folders (records/<track>/<YYYY-MM-DD>_<Name>) and
experiment folders (experiments/<YYYY-MM-DD>_<Name>) only, and writes nothing unless it can take
them all.
"""

import argparse
import os
import subprocess
import sys

import numpy as np

import plots
import tables
from forkdiff import DIFF, ForkError, logged_source, source
from layout import (
    PREVIOUS,
    ROOT,
    experiment_folders,
    folder_kind,
    fork_root,
    name_in,
    os_error,
    read_text,
    unwritable,
)
from logformat import LogError, read_log, split_log
from manifest import linked_logs, write_manifest
from tracks import parse_targets
from verify import check_all, check_experiment, read_runs, record_line

# A rerun with a log's seed agrees if its final val loss is within this many standard deviations of
# the record's runs (fresh seeds) of the logged one. The same seed on another machine is not bitwise
# the same run (float rounding differs between CPUs: 5.7940 vs 5.8073 for one seed of the retired
# ModernGPT record, 0.7 of its std of 0.0202), so the bound is the spread of the runs themselves.
RERUN_SIGMAS = 3.0


def rerun(rdir, log_name, workdir):
    """Run a record's frozen script again with one log's hyperparameters (its seed included) and
    compare the final val loss; returns the exit code."""
    if not os.path.isfile(os.path.join(rdir, "train_gpt.py")):
        print(
            f"error: --rerun {rdir}: not a record folder (one holding train_gpt.py and its logs, "
            f"records/<track>/<YYYY-MM-DD>_<Name>)",
            file=sys.stderr,
        )
        return 2
    reasons = []
    runs = read_runs(rdir, None, None, reasons)
    run = next((r for r in runs if r["file"] == (log_name or r["file"])), None)
    if run is None or len(runs) < 2:
        why = f"no log {log_name}" if log_name and run is None else "fewer than 2 runs: no spread"
        print(f"error: {rdir}: {why}" + (f"; {reasons[0]}" if reasons else ""), file=sys.stderr)
        return 2
    tolerance = RERUN_SIGMAS * float(np.std([r["val_loss"] for r in runs], ddof=1))
    cmd = [sys.executable, os.path.abspath(os.path.join(rdir, "train_gpt.py"))]
    cmd += [f"--{k}={v}" for k, v in run["hparams"].items()]
    print(f"rerunning {run['file']} (seed {run['hparams'].get('seed')}) in {workdir}:", flush=True)
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, text=True)
    new_log = None
    for line in proc.stdout:
        print(line, end="", flush=True)
        new_log = new_log or (line[len("log: ") :].strip() if line.startswith("log: ") else None)
    if proc.wait() != 0 or new_log is None:
        print(f"error: the rerun failed (exit {proc.returncode})", file=sys.stderr)
        return 2
    new = read_log(os.path.join(workdir, new_log))
    diff = abs(new["val_loss"] - run["val_loss"])
    agrees = diff <= tolerance
    print(
        f"rerun of {run['file']}: final val loss {new['val_loss']:.4f} vs logged "
        f"{run['val_loss']:.4f}, |diff| {diff:.4f} {'<=' if agrees else '>'} tolerance "
        f"{tolerance:.4f} ({RERUN_SIGMAS:g} x the std of the record's {len(runs)} runs): "
        f"{'agrees' if agrees else 'DISAGREES'}; train time {new['train_time_ms'] / 1000:.1f} s "
        f"here vs {run['train_time_ms'] / 1000:.1f} s logged"
    )
    return 0 if agrees else 1


EXTRACTS = (
    "a log (<uuid>.txt), an arm folder (experiments/<date>_<Name>/<arm>), a record's previous/ or "
    "a record folder (records/<track>/<date>_<Name>)"
)


def extract(path):
    """Print the source a log embeds, the one an arm folder (or a record's previous/) stands for,
    or a record folder's train_gpt.py."""
    kind = folder_kind(path)
    try:
        if kind == "record":
            text = read_text(os.path.join(path, "train_gpt.py"))
        elif kind == PREVIOUS and not os.path.isfile(os.path.join(path, DIFF)):
            text = logged_source(path)  # logs of a record's train_gpt.py (the check proves which)
        elif kind in ("arm", PREVIOUS):
            root = fork_root(path)
            text = source(name_in(path, root), root)
        elif os.path.isdir(path):
            print(f"error: --extract {path}: a folder, but not {EXTRACTS}", file=sys.stderr)
            return 2
        else:
            text = split_log(read_text(path))[0]
    except (ForkError, LogError) as e:
        print(f"error: --extract {path}: {e}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or "not UTF-8 text"
        print(f"error: --extract {path}: {why} (PATH is {EXTRACTS})", file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8"))
    return 0


def write_manifests(folders):
    """--write-manifest: every folder must be a record or an experiment folder whose logs are files
    before any manifest is written. Returns the exit code."""
    kinds = {"arm": "an arm folder", PREVIOUS: "a record's previous/", None: "no such folder"}
    for folder in folders:
        kind = folder_kind(folder)
        if kind not in ("record", "experiment"):
            what = kinds[kind] if kind or not os.path.isdir(folder) else "a folder"
            print(
                f"error: --write-manifest {folder or repr(folder)}: {what}, not a record folder "
                f"(records/<track>/<YYYY-MM-DD>_<Name>, holding train_gpt.py) or an experiment "
                f"folder (holding arms.tsv); nothing written",
                file=sys.stderr,
            )
            return 2
        linked = linked_logs(folder)
        if linked:
            print(
                f"error: --write-manifest {folder}: {linked[0]} is a symbolic link, not a log (put "
                f"the file it names in its place); nothing written",
                file=sys.stderr,
            )
            return 2
    for folder in folders:
        try:
            print(f"wrote {write_manifest(folder)}")
        except OSError as e:
            fix = "make the folder writable and rerun"
            print(
                f"error: --write-manifest: {os_error(e.filename or folder, e, fix)}",
                file=sys.stderr,
            )
            return 2
    return 0


def targets_of(overrides):
    """--target TRACK=VALUE overrides as tools/tracks.py reads them; raises ValueError naming the
    flag."""
    for o in overrides or []:
        track, sep, value = o.partition("=")
        if not sep or not track:
            raise ValueError(f"--target {o!r}: expected TRACK=VALUE")
        if value.lower() == "none":
            continue
        try:
            finite = np.isfinite(float(value))
        except ValueError:
            raise ValueError(
                f"--target {o!r}: VALUE {value!r} is not a number (a val loss, or none to unset)"
            ) from None
        if not finite:
            raise ValueError(f"--target {o!r}: VALUE {value!r} is not a finite val loss")
    return parse_targets(overrides)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--table",
        action="store_true",
        help="rewrite the records table in README.md and the ideas table in experiments/README.md",
    )
    ap.add_argument(
        "--plot",
        action="store_true",
        help="draw records/<track>.png and every experiment's compare.png",
    )
    ap.add_argument(
        "--records",
        default=os.path.join(ROOT, "records"),
        help="records folder (default: records/)",
    )
    ap.add_argument(
        "--experiments",
        help="experiment folders to verify (default: experiments/ next to the records folder)",
    )
    ap.add_argument(
        "--extract",
        metavar="PATH",
        help="print the source a log embeds, or the one an arm folder "
        "stands for (rebuilt from its base and fork.diff), byte for byte",
    )
    ap.add_argument(
        "--write-manifest",
        nargs="+",
        metavar="DIR",
        help="write DIR/MANIFEST.sha256 from the logs "
        "of a record or experiment folder as they are (after a real change to its logs)",
    )
    ap.add_argument(
        "--rerun",
        metavar="RECORD_DIR",
        help="rerun this record with a logged seed, compare its loss",
    )
    ap.add_argument("--log", help="with --rerun: which log to reproduce (default: the first)")
    ap.add_argument(
        "--workdir", default=ROOT, help="with --rerun: where to run it (default: the repository)"
    )
    ap.add_argument(
        "--readme", help="README to update (default: README.md next to the records folder)"
    )
    ap.add_argument(
        "--target",
        action="append",
        metavar="TRACK=VALUE",
        help="override a track's target (for tests); repeatable",
    )
    args = ap.parse_args(argv)
    try:
        targets = targets_of(args.target)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.extract is not None:
        if not args.extract:
            print(f"error: --extract '': empty; PATH is {EXTRACTS}", file=sys.stderr)
            return 2
        return extract(args.extract)
    if args.write_manifest is not None:
        return write_manifests(args.write_manifest)
    if args.rerun is not None:
        if not os.path.isdir(args.rerun):
            print(f"error: --rerun {args.rerun}: no such record folder", file=sys.stderr)
            return 2
        if not os.path.isdir(args.workdir):
            print(
                f"error: --workdir {args.workdir}: no such folder (where the rerun runs: its data "
                f"paths are relative to it; default the repository)",
                file=sys.stderr,
            )
            return 2
        bad = unwritable(os.path.join(args.workdir, "logs"))
        if bad:
            fix = "the rerun writes its log in WORKDIR/logs/: make it writable"
            print(
                f"error: --workdir {args.workdir}: {os_error(bad[0], bad[1], fix)}", file=sys.stderr
            )
            return 2
        return rerun(args.rerun, args.log, args.workdir)
    records = os.path.abspath(args.records)
    if not os.path.isdir(records):
        print(f"error: --records {args.records}: no such folder", file=sys.stderr)
        return 2
    readme = args.readme or os.path.join(os.path.dirname(records), "README.md")
    experiments = args.experiments or os.path.join(os.path.dirname(records), "experiments")

    results = check_all(records, targets)
    for r in results:
        print(record_line(r))
    if not results:
        print(f"no records under {records}")
    experiments_ok = True
    if os.path.isdir(experiments):
        for name in experiment_folders(experiments):
            name, reasons = check_experiment(os.path.join(experiments, name), args.plot)
            experiments_ok &= not reasons
            print(f"experiments/{name}  {'OK' if not reasons else 'FAIL: ' + '; '.join(reasons)}")
    if args.plot:
        try:
            plots.records(results, targets, records)
        except OSError as e:
            fix = "make it writable, then rerun --plot"
            print(f"error: {os_error(e.filename or records, e, fix)}", file=sys.stderr)
            return 2
    if args.table:
        # Link a track's plot only if it exists (just drawn or from an earlier --plot).
        with_plot = {
            t
            for t in set(targets) | {r["track"] for r in results}
            if os.path.isfile(os.path.join(records, f"{t}.png"))
        }
        readme_dir = os.path.dirname(os.path.abspath(readme))
        table = tables.records_table(results, targets, readme_dir, records, with_plot)
        err = tables.write_between(readme, tables.RECORDS_BEGIN, tables.RECORDS_END, table)
        if err is None and os.path.isdir(experiments):
            index = os.path.join(experiments, "README.md")
            table = tables.ideas_table(experiments)[0]
            err = tables.write_between(index, tables.IDEAS_BEGIN, tables.IDEAS_END, table)
        if err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if os.path.isdir(experiments):
        reasons = tables.ideas_errors(experiments)
        experiments_ok &= not reasons
        print(f"experiments/README.md  {'OK' if not reasons else 'FAIL: ' + '; '.join(reasons)}")
    return 0 if experiments_ok and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
