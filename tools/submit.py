#!/usr/bin/env python3
"""Freeze runs as a record folder, then check it.

    python tools/submit.py <track> <Name> logs/<uuid>.txt ... --previous logs/<uuid>.txt ...
                           [--date YYYY-MM-DD] [--records DIR]

Creates records/<track>/<date>_<Name>/ with train_gpt.py taken from the first log (so the frozen
script is exactly what ran), the logs copied unchanged, previous/ with the logs of the previous
script run beside them (and, unless that script is a record's train_gpt.py, previous/fork.diff: the
diff to it from the track's nearest record script), MANIFEST.sha256 over the logs, and a README.md
stub with the measured numbers. Refuses (one line, exit 2), creating nothing, if the folder exists,
the track is unknown, a log does not parse, the logs of one group embed different scripts, a record
other than a Baseline has no --previous, or the folder would fail the check (tools/verify.py, what
tools/check.py prints): it is built and checked in a temporary folder first (beside links to the
track's records), then moved into place whole. Prints the record's check line.
"""

import argparse
import datetime
import os
import re
import shutil
import sys
import tempfile

from forkdiff import nearest, source, write_fork
from layout import (
    PREVIOUS,
    ROOT,
    find_records,
    name_in,
    record_before,
    records_dir_of,
    root_of,
)
from logformat import LogError, read_log
from manifest import write_manifest
from stats import fmt, fmt_time
from tracks import P_MAX, parse_targets
from verify import check_record, record_line

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def readme_stub(track, name, date, s, runs):
    target = s["target"]
    p = "-" if s["p"] is None else fmt(s["p"], ".2g")
    lines = [
        f"# {name} ({track}, {date})",
        "",
        "## What changed and why",
        "",
        "TODO: describe the change against the previous record, and why it should help.",
        "",
        "## Results",
        "",
        "Measured by tools/submit.py from the step lines of the logs in this folder; "
        "`python tools/check.py` recomputes them.",
        "",
        "| log | final val loss | train time |",
        "|---|--:|--:|",
    ]
    lines += [
        f"| {r['file']} | {r['val_loss']:.4f} | {r['train_time_ms'] / 1000:.1f} s |" for r in runs
    ]
    lines += [
        "",
        f"- n = {s['n']}",
        f"- val loss = {fmt(s['mean'], '.4f')} ± {fmt(s['std'], '.4f')} (mean ± std)",
        f"- target = {'not set' if target is None else target}; "
        + (
            "baseline: defines the target, no p-test"
            if s["baseline"]
            else f"p = {p} (one-sided one-sample t-test, H1: mean < target; a claim needs "
            f"p < {P_MAX})"
        ),
        f"- train time = {fmt_time(s['time_mean'], s['time_std'])} (mean ± std)",
        "",
    ]
    return "\n".join(lines)


def write_previous_diff(dest, track, script):
    """previous/fork.diff from the track's nearest record script to script, unless script is one."""
    records, root = records_dir_of(dest), root_of(dest, "record")
    bases = [
        name_in(os.path.join(d, "train_gpt.py"), root)
        for t, d, _ in find_records(records)
        if t == track
    ]
    if not any(source(b, root) == script for b in bases):
        write_fork(os.path.join(dest, PREVIOUS), root, nearest(script, bases, root), script)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("track")
    ap.add_argument(
        "name", help="record name, e.g. Baseline or MuonLR; the folder is <date>_<name>"
    )
    ap.add_argument("logs", nargs="+", help="logs/<uuid>.txt of every run of the claim")
    ap.add_argument(
        "--previous",
        nargs="+",
        default=[],
        metavar="LOG",
        help="logs of the previous script, run beside these on the same machine "
        "(not for a Baseline)",
    )
    ap.add_argument(
        "--date", default=datetime.date.today().isoformat(), help="YYYY-MM-DD (default: today)"
    )
    ap.add_argument(
        "--records",
        default=os.path.join(ROOT, "records"),
        help="records folder (default: records/)",
    )
    ap.add_argument(
        "--target",
        action="append",
        metavar="TRACK=VALUE",
        help="override a track's target (for tests); repeatable",
    )
    args = ap.parse_args(argv)
    try:
        targets = parse_targets(args.target)
    except ValueError as e:
        ap.error(str(e))

    def refuse(msg):
        print(f"refused: {msg}", file=sys.stderr)
        return 2

    if args.track not in targets:
        return refuse(f"unknown track {args.track!r} (known: {', '.join(sorted(targets))})")
    if not NAME_RE.fullmatch(args.name):
        return refuse(f"name {args.name!r}: use letters, digits, '_', '-', '.'")
    try:
        ok_date = bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.date)) and bool(
            datetime.date.fromisoformat(args.date)
        )
    except ValueError:
        ok_date = False
    if not ok_date:
        return refuse(f"date {args.date!r} is not YYYY-MM-DD")
    dest = os.path.join(os.path.abspath(args.records), args.track, f"{args.date}_{args.name}")
    if os.path.exists(dest):
        return refuse(f"{dest} already exists")

    # Everything is read and checked before anything is written, so a refusal leaves no debris.
    groups = [(dest, args.logs)] + (
        [(os.path.join(dest, "previous"), args.previous)] if args.previous else []
    )
    scripts = []
    for _, logs in groups:
        names = [os.path.basename(p) for p in logs]
        if len(set(names)) != len(names):
            return refuse("two logs share a file name")
        if not all(n.endswith(".txt") for n in names):
            return refuse("logs must be named <uuid>.txt")
        sources = []
        for path in logs:
            try:
                sources.append(read_log(path)["source"])
            except LogError as e:
                return refuse(f"{path}: {e}")
            if sources[-1] != sources[0]:
                return refuse(f"{path} embeds a different script than {logs[0]}")
        scripts.append(sources[0])

    if not os.path.basename(dest).endswith("_Baseline") and not args.previous:
        return refuse(
            f"{args.name} is not a Baseline, so it needs --previous logs/<uuid>.txt ...: the runs "
            f"of the script it beats, run beside it on the same machine; nothing written"
        )

    # Built and checked in a temporary copy of the track (links to its records, which diffs may
    # name), so a record that would fail the check is never written.
    with tempfile.TemporaryDirectory() as tmp:
        track_dir = os.path.join(tmp, "records", args.track)
        os.makedirs(track_dir)
        for name in (
            os.listdir(os.path.dirname(dest)) if os.path.isdir(os.path.dirname(dest)) else []
        ):
            os.symlink(os.path.join(os.path.dirname(dest), name), os.path.join(track_dir, name))
        staged = os.path.join(track_dir, os.path.basename(dest))
        for folder, logs in groups:
            folder = os.path.join(staged, os.path.relpath(folder, dest))
            os.makedirs(folder)
            for path in logs:
                shutil.copyfile(path, os.path.join(folder, os.path.basename(path)))
        with open(os.path.join(staged, "train_gpt.py"), "w", encoding="utf-8", newline="") as f:
            f.write(scripts[0])
        if args.previous:
            write_previous_diff(staged, args.track, scripts[1])
        write_manifest(staged)
        # The stub's numbers come from the same check that verifies the folder afterwards.
        track_dir, name = os.path.split(dest)
        before = record_before(track_dir, name)
        if before is not None:
            before = check_record(os.path.join(track_dir, before), args.track, targets)
        r = check_record(staged, args.track, targets, before=before)
        with open(os.path.join(staged, "README.md"), "w", encoding="utf-8") as f:
            f.write(readme_stub(args.track, args.name, args.date, r, r["runs"]))
        r = check_record(staged, args.track, targets, before=before)
        if not r["ok"]:
            return refuse(
                f"{args.track}/{os.path.basename(dest)} would fail the check: "
                f"{'; '.join(r['reasons'])}; nothing written"
            )
        # Copied next to its place under a hidden name, then renamed: the folder appears whole or
        # not at all.
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        partial = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.partial")
        shutil.rmtree(partial, ignore_errors=True)  # from a copy cut short
        shutil.copytree(staged, partial)
        os.rename(partial, dest)
    r = check_record(dest, args.track, targets, before=before)
    print(record_line(r))
    print(f"created {dest}: fill in '## What changed and why' in its README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
