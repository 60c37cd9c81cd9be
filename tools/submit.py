#!/usr/bin/env python3
"""Freeze runs as a record folder, then check it.

    python tools/submit.py <track> <Name> logs/<uuid>.txt ... --previous logs/<uuid>.txt ...
                           [--date YYYY-MM-DD] [--records DIR]

Creates records/<track>/<date>_<Name>/ with train_gpt.py taken from the first log (so the frozen
script is exactly what ran), the logs copied unchanged, previous/ with the logs of the previous
script run beside them (and, unless that script is a record's train_gpt.py, previous/fork.diff: the
diff to it from the track's nearest record script), MANIFEST.sha256 over the logs, and a README.md
stub with the measured numbers. Refuses (one line, exit 2), creating nothing, if the folder exists,
the track is unknown, the track has a Baseline already and this is another, the date is before the
track's newest record or after today, a log does not parse, the logs of one group embed different
scripts, a record other than a Baseline has no --previous, its claim is not significant (p <
tracks.P_MAX for the val loss against the target, and for the training time against the previous
script's: a one-sided Welch t-test; both p-values are shown side by side), the folder would fail the
check (tools/verify.py, what tools/check.py prints), or a record of the track that passes the check
would fail it beside the new one (records of one date are ordered by name: a new one can become the
record before another). It is built and checked in a temporary folder first (beside links to the
track's records), then moved into place whole; a folder that cannot be written is one line naming
it, the OS error and the fix. Prints the record's check line and its claim.
"""

import argparse
import datetime
import errno
import math
import os
import re
import shutil
import sys
import tempfile

from forkdiff import nearest, source, write_fork
from layout import (
    PREVIOUS,
    RECORD_RE,
    ROOT,
    existing_part,
    find_records,
    name_in,
    record_before,
    record_folders,
    records_dir_of,
    root_of,
    shown,
)
from logformat import LogError, read_log
from manifest import write_manifest
from stats import claim_p, faster_p, fmt, fmt_p, fmt_time, stats_of
from tracks import P_MAX, parse_targets
from verify import check_all, check_record, record_line

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def claim_parts(runs, previous, target):
    """The claim's two tests, side by side: the val loss against the target (if it claims one) and
    the training time against the previous script's runs (if any). Returns (parts, time p)."""
    mean, std, tmean, tstd = stats_of(runs)
    parts, p_time = [], None
    if target is not None and len(runs) > 1:
        p = claim_p([r["val_loss"] for r in runs], target)
        parts.append(
            f"val loss {fmt(mean, '.4f')} ± {fmt(std, '.4f')} against the target {target}: "
            f"p = {fmt_p(p, P_MAX)} (one-sided t-test)"
        )
    if previous:
        p_time = faster_p(runs, previous)
        _, _, pmean, pstd = stats_of(previous)
        parts.append(
            f"train time {fmt_time(tmean, tstd)} against {fmt_time(pmean, pstd)} of the previous "
            f"script ({tmean / pmean:.3f}x, n={len(runs)} against {len(previous)}): "
            f"p = {fmt_p(p_time, P_MAX)} (one-sided Welch t-test)"
        )
    return parts, p_time


def claim_line(runs, previous, target):
    parts, _ = claim_parts(runs, previous, target)
    return "; ".join(parts) + f"; a record needs p < {P_MAX} for each"


def readme_stub(track, name, date, s, runs):
    target = s["target"]
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
    p = "-" if s["p"] is None else fmt_p(s["p"], P_MAX)
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
    ]
    if s["previous"]:
        _, _, pmean, pstd = stats_of(s["previous"])
        p_time = fmt_p(faster_p(runs, s["previous"]), P_MAX)
        lines.append(
            f"- previous script, run beside it: n = {len(s['previous'])}, train time = "
            f"{fmt_time(pmean, pstd)}; {s['time_mean'] / pmean:.3f}x its time, p = {p_time} "
            f"(one-sided Welch t-test, H1: faster; a record needs p < {P_MAX})"
        )
    return "\n".join(lines + [""])


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


def not_significant(runs, previous, target):
    """Why the claim of runs, beside previous, is not significant (None if it is): a val loss at or
    below the target with p >= P_MAX (one above it is the check's to name), or a training time
    whose one-sided Welch p against previous is not below P_MAX. Both p-values are shown."""
    parts, p_time = claim_parts(runs, previous, target)
    mean = stats_of(runs)[0]
    loss_fails = (
        target is not None
        and len(runs) > 1
        and mean <= target
        and not claim_p([r["val_loss"] for r in runs], target) < P_MAX
    )
    if loss_fails:
        return (
            f"the val loss claim is not significant: {'; '.join(parts)}; a claim needs p < {P_MAX}"
        )
    if not p_time < P_MAX:
        need = "2 runs of each, not all alike" if math.isnan(p_time) else "more runs of each"
        return (
            f"its speed-up is not significant: {'; '.join(parts)}; a record needs p < {P_MAX} for "
            f"each: run both scripts alternated on one machine (tools/compare.py), {need}"
        )
    return None


def broken_by(records, staged_records, track, targets):
    """The records of track that pass the check in records and fail it in staged_records (the same
    track with the new record in it): [(name, reasons)], in record order."""
    if not os.path.isdir(records):
        return []
    ok = {
        (r["retired"], r["name"])
        for r in check_all(records, targets)
        if r["track"] == track and r["ok"]
    }
    return [
        (("retired/" if r["retired"] else "") + r["name"], r["reasons"])
        for r in check_all(staged_records, targets)
        if r["track"] == track and (r["retired"], r["name"]) in ok and not r["ok"]
    ]


def move_into_place(staged, dest):
    """Copied next to its place under a hidden name, then renamed: the folder appears whole or not
    at all; a copy cut short is removed again."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    partial = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # from a copy cut short
    try:
        shutil.copytree(staged, partial)
        os.rename(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def write_error(e, dest):
    """An OSError met while writing dest as one line: the path, the OS error, the fix."""
    if isinstance(e, shutil.Error):  # copytree's list of (src, dst, reason)
        _, path, reason = e.args[0][0]
    else:
        path, reason = e.filename or dest, e.strerror or str(e)
    track_dir = os.path.dirname(dest)
    path = shown(path)
    blocker = existing_part(path)
    if e.errno in (errno.ENOTDIR, errno.EEXIST) and os.path.isfile(blocker):
        fix = f"{shown(blocker)} is a file where a folder belongs: move it, or pass --records DIR"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {shown(track_dir)} writable, or pass --records DIR"
    elif e.errno == errno.ENOSPC:
        fix = "free some disk space and rerun"
    else:
        fix = "fix that path, or pass --records DIR"
    return f"cannot write {shown(dest)}: {path}: {reason} ({fix})"


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
    today = datetime.date.today().isoformat()
    if args.date > today:
        return refuse(
            f"date {args.date} is after today ({today}): a record is dated the day it is "
            f"submitted (the default); nothing written"
        )
    records = os.path.abspath(args.records)
    track_dir = os.path.join(records, args.track)
    dest = os.path.join(track_dir, f"{args.date}_{args.name}")
    if os.path.exists(dest):
        return refuse(f"{dest} already exists")
    baseline = os.path.basename(dest).endswith("_Baseline")
    existing = [n for n in record_folders(track_dir) if RECORD_RE.fullmatch(n)]
    baselines = [n for n in existing if n.endswith("_Baseline")]
    if baseline and baselines:
        return refuse(
            f"{args.track} has its Baseline already ({baselines[0]}), which fixed the target "
            f"{targets[args.track]}; a second one would move it. Submit the runs as a record with "
            f"another name and --previous; nothing written"
        )
    newest = max(existing, key=lambda n: n[:10], default=None)
    if newest is not None and args.date < newest[:10]:
        return refuse(
            f"date {args.date} is before {args.track}'s newest record {newest}: a record is dated "
            f"the day it is submitted (the default), after the records it follows; nothing written"
        )

    # Everything is read and checked before anything is written, so a refusal leaves no debris.
    groups = [(dest, args.logs)] + (
        [(os.path.join(dest, "previous"), args.previous)] if args.previous else []
    )
    scripts, parsed = [], []
    for _, logs in groups:
        names = [os.path.basename(p) for p in logs]
        if len(set(names)) != len(names):
            return refuse("two logs share a file name")
        if not all(n.endswith(".txt") for n in names):
            return refuse("logs must be named <uuid>.txt")
        runs = []
        for path in logs:
            try:
                runs.append(read_log(path))
            except LogError as e:
                return refuse(f"{path}: {e}")
            if runs[-1]["source"] != runs[0]["source"]:
                return refuse(f"{path} embeds a different script than {logs[0]}")
        scripts.append(runs[0]["source"])
        parsed.append(runs)

    if not baseline and not args.previous:
        return refuse(
            f"{args.name} is not a Baseline, so it needs --previous logs/<uuid>.txt ...: the runs "
            f"of the script it beats, run beside it on the same machine; nothing written"
        )
    folder = f"{args.track}/{os.path.basename(dest)}"
    if not baseline:
        why = not_significant(parsed[0], parsed[1], targets[args.track])
        if why:
            return refuse(f"{folder}: {why}; nothing written")

    # Built and checked in a temporary copy of the track (links to its records, which diffs may
    # name), so a record that would fail the check is never written.
    with tempfile.TemporaryDirectory() as tmp:
        staged_records = os.path.join(tmp, "records")
        staged_track = os.path.join(staged_records, args.track)
        os.makedirs(staged_track)
        for name in os.listdir(track_dir) if os.path.isdir(track_dir) else []:
            os.symlink(os.path.join(track_dir, name), os.path.join(staged_track, name))
        staged = os.path.join(staged_track, os.path.basename(dest))
        for group, logs in groups:
            group = os.path.join(staged, os.path.relpath(group, dest))
            os.makedirs(group)
            for path in logs:
                shutil.copyfile(path, os.path.join(group, os.path.basename(path)))
        with open(os.path.join(staged, "train_gpt.py"), "w", encoding="utf-8", newline="") as f:
            f.write(scripts[0])
        if args.previous:
            write_previous_diff(staged, args.track, scripts[1])
        write_manifest(staged)
        # The stub's numbers come from the same check that verifies the folder afterwards.
        before = record_before(track_dir, os.path.basename(dest))
        if before is not None:
            before = check_record(os.path.join(track_dir, before), args.track, targets)
        r = check_record(staged, args.track, targets, before=before)
        with open(os.path.join(staged, "README.md"), "w", encoding="utf-8") as f:
            f.write(readme_stub(args.track, args.name, args.date, r, r["runs"]))
        r = check_record(staged, args.track, targets, before=before)
        if not r["ok"]:
            return refuse(
                f"{folder} would fail the check: {'; '.join(r['reasons'])}; nothing written"
            )
        broken = broken_by(records, staged_records, args.track, targets)
        if broken:
            name, reasons = broken[0]
            return refuse(
                f"{folder} would make {args.track}/{name}, which passes the check, fail it: "
                f"{'; '.join(reasons)} (records of one date follow each other by name: date it "
                f"later, or pick a name that sorts after {name}); nothing written"
            )
        try:
            move_into_place(staged, dest)
        except OSError as e:
            return refuse(f"{write_error(e, dest)}; nothing written")
    r = check_record(dest, args.track, targets, before=before)
    print(record_line(r))
    if not baseline:
        print(f"claim: {claim_line(r['runs'], r['previous'], r['target'])}")
    print(f"created {dest}: fill in '## What changed and why' in its README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
