"""The generated tables, in one place: the records table in README.md and the ideas table in
experiments/README.md, each between two marker lines that `python tools/check.py --table` rewrites.

The records table is computed from the logs (tools/verify.py); it depends only on the measured
numbers, so a rewrite without new logs changes nothing. The ideas table collects what each
experiment folder says of itself: the rows under `## Summary` in its README.md (one row per idea, in
the columns of IDEAS_HEADER, links relative to that folder), newest folder first, then by folder
name, the rows of a folder in the order it writes them; its links are rewritten to start from
experiments/. A folder without rows must be linked from another folder's row (a sweep split over
folders), so every experiment is reachable from the table.
"""

import os
import re

from layout import RECORD_RE, experiment_folders, read_text, write_atomic
from stats import fmt, fmt_time, stats_of
from tracks import RETIRED_TARGETS

RECORDS_BEGIN, RECORDS_END = "<!-- records:begin -->", "<!-- records:end -->"
IDEAS_BEGIN, IDEAS_END = "<!-- ideas:begin -->", "<!-- ideas:end -->"
SUMMARY = "## Summary"
IDEAS_HEADER = [
    "| date | idea (against) | loss | time | verdict | folder |",
    "|---|---|---|---|---|---|",
]
RECORDS_HEADER = [
    "| date | record | n | val loss | p | time | previous script, run beside it "
    "| time vs previous | check |",
    "|---|---|--:|---|--:|---|---|--:|---|",
]
LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
TODO = "TODO"  # what a stub leaves to be filled in (summary_stub, tools/compare.py's README)


def records_row(r, rel):
    """One record (a verify.check_record result) as a row; rel(path) is path from the README."""
    m = RECORD_RE.fullmatch(r["name"])
    date, name = (m[1], m[2]) if m else ("-", r["name"])
    previous = ratio = "-"
    if r["previous"]:
        loss, loss_std, t, t_std = stats_of(r["previous"])
        previous = (
            f"n={len(r['previous'])}: {fmt(loss, '.4f')} ± {fmt(loss_std, '.4f')}, "
            f"{fmt_time(t, t_std)}"
        )
    if r["ratio"]:
        ratio = f"{r['ratio']:.3f}x"
    p = "-" if r["p"] is None else fmt(r["p"], ".2g")
    return (
        f"| {date} | [{name}]({rel(r['dir'])}) | {r['n']} | "
        f"{fmt(r['mean'], '.4f')} ± {fmt(r['std'], '.4f')} | {p} "
        f"| {fmt_time(r['time_mean'], r['time_std'])} | {previous} | {ratio} "
        f"| {'OK' if r['ok'] else 'FAIL'} |"
    )


def records_table(results, targets, readme_dir, records_dir, tracks_with_plot):
    """The markdown between the records markers: per track its target, plot and notes (a track's
    README.md), its records, then its retired ones."""

    def rel(path):
        return os.path.relpath(path, readme_dir).replace(os.sep, "/")

    lines = []
    for track in sorted(set(targets) | {r["track"] for r in results}):
        rows = [r for r in results if r["track"] == track and not r["retired"]]
        retired = [r for r in results if r["track"] == track and r["retired"]]
        target = targets.get(track)
        lines += [f"### {track}", ""]
        head = f"Target val loss: {'not set yet' if target is None else target}."
        if track in tracks_with_plot:
            head += f" Plot: [{track}.png]({rel(os.path.join(records_dir, f'{track}.png'))})."
        notes = os.path.join(records_dir, track, "README.md")
        if os.path.isfile(notes):
            head += f" About the track: [{track}/README.md]({rel(notes)})."
        lines += [head, ""]
        if rows:
            lines += RECORDS_HEADER + [records_row(r, rel) for r in rows]
        else:
            lines.append("No records yet.")
        lines.append("")
        if retired:
            folder = rel(os.path.join(records_dir, track, "retired"))
            target = RETIRED_TARGETS.get(track)
            lines += [f"Retired (target {target}; why: [{folder}]({folder}/README.md)):", ""]
            lines += RECORDS_HEADER + [records_row(r, rel) for r in retired] + [""]
    return "\n".join(lines)


def between(text, begin, end):
    """(start, stop) of what lies between the marker lines in text; None if they are missing."""
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return None
    return i + len(begin), j


def write_between(path, begin, end, table):
    """Replace what lies between the markers in the file at path. Returns an error, or None."""
    try:
        old = read_text(path)
    except (OSError, UnicodeDecodeError):
        return f"{path}: cannot read"
    span = between(old, begin, end)
    if span is None:
        return f"{path}: missing {begin} ... {end} markers"
    try:
        write_atomic(path, old[: span[0]] + "\n" + table + "\n" + old[span[1] :])
    except OSError as e:
        return f"{path}: {e.strerror} (make it and its folder writable, then rerun --table)"
    return None


def relink(row, source_dir, target_dir):
    """row with its relative links, written from source_dir, rewritten to start from target_dir."""

    def move(m):
        path, hash_, anchor = m[1].partition("#")
        if not path or "://" in path or path.startswith(("/", "mailto:")):
            return m[0]
        moved = os.path.relpath(os.path.join(source_dir, path), target_dir)
        return f"]({moved.replace(os.sep, '/')}{hash_}{anchor})"

    return LINK_RE.sub(move, row)


def summary_rows(edir):
    """The rows under `## Summary` in an experiment's README.md, links as written, and what is
    wrong with them (one line each)."""
    name = os.path.basename(os.path.normpath(edir))
    where = f"{name}/README.md"
    try:
        lines = read_text(os.path.join(edir, "README.md")).splitlines()
    except (OSError, UnicodeDecodeError):
        return [], [f"{where}: missing or unreadable"]
    if SUMMARY not in lines:
        return [], []
    i = lines.index(SUMMARY) + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    if lines[i : i + 2] != IDEAS_HEADER:
        return [], [f"{where}: {SUMMARY} does not start with the header {IDEAS_HEADER[0]}"]
    rows = []
    for line in lines[i + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    m = RECORD_RE.fullmatch(name)
    reasons = [] if rows else [f"{where}: {SUMMARY} has a header but no rows"]
    for k, row in enumerate(rows, 1):
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != len(IDEAS_HEADER[0].strip("|").split("|")):
            reasons.append(f"{where}: {SUMMARY} row {k} has {len(cells)} cells, not 6")
        elif m is None or cells[0] != m[1]:
            reasons.append(
                f"{where}: {SUMMARY} row {k}: date {cells[0]} is not the folder's ({name[:10]})"
            )
    return rows, reasons


def ideas_table(experiments_dir):
    """The markdown between the ideas markers of experiments/README.md, and what is wrong with the
    folders' rows (one line each)."""
    folders = experiment_folders(experiments_dir)
    newest_first = sorted(sorted(folders), key=lambda n: n[:10], reverse=True)
    rows, reasons, linked = [], [], set()
    for name in newest_first:
        edir = os.path.join(experiments_dir, name)
        found, wrong = summary_rows(edir)
        reasons += wrong
        for row in found:
            rows.append(relink(row, edir, experiments_dir))
            linked |= {link.split("/")[0] for link in LINK_RE.findall(rows[-1])}
    reasons += [
        f"{name}/README.md: no {SUMMARY} row, and no other folder's row links it (add one)"
        for name in folders
        if name not in linked
    ]
    return "\n".join(IDEAS_HEADER + rows) if rows else "No experiments yet.", reasons


def ideas_errors(experiments_dir):
    """What is wrong with experiments/README.md: missing, no markers, or a table that is not what
    ideas_table() makes now; and what is wrong with the folders' rows."""
    table, reasons = ideas_table(experiments_dir)
    try:
        text = read_text(os.path.join(experiments_dir, "README.md"))
    except (OSError, UnicodeDecodeError):
        return reasons + ["missing or unreadable (it holds the ideas table between markers)"]
    span = between(text, IDEAS_BEGIN, IDEAS_END)
    if span is None:
        return reasons + [f"missing {IDEAS_BEGIN} ... {IDEAS_END} markers"]
    if text[span[0] : span[1]] != f"\n{table}\n":
        reasons.append("the ideas table is stale: python tools/check.py --table rewrites it")
    return reasons


def todo_lines(text):
    """The numbers of the lines of a README that still hold a stub's TODO."""
    return [k for k, line in enumerate(text.splitlines(), 1) if re.search(rf"\b{TODO}\b", line)]


def summary_stub(edir):
    """The `## Summary` section that tools/compare.py --freeze writes into a new experiment's
    README.md, to be filled in: one row, its date and folder filled."""
    name = os.path.basename(os.path.normpath(edir))
    m = RECORD_RE.fullmatch(name)
    date = m[1] if m else f"{TODO}: YYYY-MM-DD (the folder's date)"
    row = (
        f"| {date} | {TODO}: the idea (against what), n | {TODO} | {TODO} | {TODO} | [{name}](.) |"
    )
    return "\n".join([SUMMARY, "", *IDEAS_HEADER, row, ""])
