#!/usr/bin/env python3
"""Verify records and experiments from their logs; optionally redraw the README table and plots.

    python tools/check.py [--table] [--plot] [--records DIR] [--readme PATH] [--target TRACK=VALUE]
    python tools/check.py --rerun records/<track>/<record> [--log UUID.txt]
    python tools/check.py --extract PATH    # the source a log embeds, or an arm folder stands for
    python tools/check.py --write-manifest DIR ...   # DIR/MANIFEST.sha256 from its logs as they are

A record is records/<track>/<YYYY-MM-DD>_<Name>/ holding the frozen train_gpt.py, the unedited
logs (<uuid>.txt) of every run of the claim, README.md, and (every record but a Baseline)
previous/: the logs of the script it claims to beat, run beside it on the same machine. That script
is a record's train_gpt.py, or a fork of one stored as previous/fork.diff (see tools/forks.py). All
numbers come from the step lines of the logs, never from a README. Each folder's MANIFEST.sha256
(tools/runlog.py) names a log edited, added or deleted since; each log's `log:` line names its own
file; the runs of a claim (a record, its previous/, an experiment arm) have distinct seeds; an arm's
logs ran with its arms.tsv flags. Prints one line per record and
per experiment folder (experiments/, see tools/forks.py); exits 1 if any fails. Records whose target
was retired stay readable under records/<track>/retired/ and are checked against the target they
were made for.

--table rewrites the records table in the README; --plot redraws records/<track>.png and every
experiment's compare.png from the logs (tools/plots.py). --rerun runs a CPU record's frozen script
again with the hyperparameters and seed of one of its logs, and says whether the final val loss
agrees (see RERUN_SIGMAS).
"""

import argparse
import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import forks  # noqa: E402
import plots  # noqa: E402
from runlog import (
    LogError,
    manifest_errors,
    read_log,
    read_text,
    split_log,
    stats_of,
    summary,
    write_manifest,
)  # noqa: E402

# Target val loss per track. A record named *_Baseline defines its track's target; every other
# record claims it. None = not fixed yet: such records can only have their logs verified.
# cpu_shakespeare: the mean final val loss of the runs of records/cpu_shakespeare/2026-11-25_Baseline
# (nanoGPT's CPU recipe), rounded up to 0.01. Fixed on 2026-11-25; it never moves.
TARGETS = {"8xh100_fineweb": 3.28, "cpu_shakespeare": 4.97}
# Targets of records/<track>/retired/: 5.97 came from a Baseline of this project's own making (360
# steps), which nanoGPT's CPU recipe passes in its first 210 steps; see that folder's README.
RETIRED_TARGETS = {"cpu_shakespeare": 5.97}
P_MAX = 0.01  # a claim needs p < P_MAX (one-sided one-sample t-test, H1: mean < target)
# What makes two runs the same competition: the logged hyperparameters that fix the data, and the
# number of val predictions the script reports. Anything else is the entrant's to change.
RULES = {
    "8xh100_fineweb": dict(
        hparams=dict(
            track="8xh100_fineweb",
            train_files="data/fineweb10B/fineweb_train_*.bin",
            val_files="data/fineweb10B/fineweb_val_*.bin",
            val_tokens="10485760",
        ),
        val_predictions=10485760,
    ),
    "cpu_shakespeare": dict(
        hparams=dict(
            track="cpu_shakespeare",
            train_files="data/shakespeare/shakespeare_train_*.bin",
            val_files="data/shakespeare/shakespeare_val_*.bin",
            val_tokens="0",
        ),
        val_predictions=155120,
    ),
}
# A rerun with a log's seed agrees if its final val loss is within this many standard deviations of
# the record's runs (fresh seeds) of the logged one. The same seed on another machine is not bitwise
# the same run (float rounding differs between CPUs: 5.7940 vs 5.8073 for one seed of the retired
# ModernGPT record, 0.7 of its std of 0.0202), so the bound is the spread of the runs themselves.
RERUN_SIGMAS = 3.0

RECORD_RE = re.compile(r"(\d{4}-\d{2}-\d{2})_(\S+)")
BEGIN, END = "<!-- records:begin -->", "<!-- records:end -->"


def rule_breaks(run, rules):
    """What in a parsed log departs from the track's fixed data and val set (empty if nothing)."""
    out = [
        f"{k}={run['hparams'].get(k)} (the track's is {v})"
        for k, v in rules["hparams"].items()
        if run["hparams"].get(k) != v
    ]
    if run["val_predictions"] != rules["val_predictions"]:
        out.append(
            f"{run['val_predictions']} val predictions (the track's is {rules['val_predictions']})"
        )
    return out


def summarize(runs, target, claims):
    """Statistics of a record's runs, and the reasons its claim fails (empty if it holds)."""
    losses, n = [r["val_loss"] for r in runs], len(runs)
    mean, std, tmean, tstd = stats_of(runs)
    p, reasons = None, []
    if claims and target is not None:
        if n < 2:
            reasons.append(f"{n} run(s): a claim needs at least 2 for a p-value")
        else:
            with (
                warnings.catch_warnings()
            ):  # identical losses give nan with a warning; nan fails below
                warnings.simplefilter("ignore")
                p = float(stats.ttest_1samp(losses, target, alternative="less").pvalue)
            if math.isnan(p):
                reasons.append("p is nan")
            elif mean > target:
                reasons.append(f"mean {mean:.4f} above target {target}")
            elif p >= P_MAX:
                reasons.append(f"p={p:.2g} not below {P_MAX}")
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "p": p,
        "time_mean": tmean,
        "time_std": tstd,
        "reasons": reasons,
    }


def read_runs(folder, script, rules, reasons, prefix=""):
    """Every <uuid>.txt in folder, parsed and checked against the script and the track's rules; what
    fails goes into reasons, one line each."""
    runs, seen, seeds = [], {}, {}
    logs = sorted(f for f in os.listdir(folder) if f.endswith(".txt"))
    if not logs:
        reasons.append(f"{prefix}no logs (*.txt)")
    for f in logs:
        try:
            run = read_log(os.path.join(folder, f))
        except LogError as e:
            reasons.append(f"{prefix}{f}: {e}")
            continue
        if script is not None and run["source"] != script:
            reasons.append(f"{prefix}{f}: embedded source differs from train_gpt.py")
        if rules is not None:
            reasons += [f"{prefix}{f}: {b}" for b in rule_breaks(run, rules)]
        # Real reruns differ at least in their timings; identical step lines mean a copied log.
        if run["steps"] in seen:
            reasons.append(f"{prefix}{f}: same step lines as {seen[run['steps']]} (copied run)")
        seen[run["steps"]] = f
        if run["log_line"] is None or os.path.basename(run["log_line"]) != f:
            reasons.append(
                f"{prefix}{f}: its log: line names {run['log_line']}, not logs/{f} (a renamed or "
                f"pasted log: restore the file the run wrote)"
            )
        seed = run["hparams"].get("seed")
        if seed in seeds:
            reasons.append(
                f"{prefix}{f}: seed={seed} as in {seeds[seed]} (the runs of one claim need distinct "
                f"seeds: a copied or rerun log? keep one)"
            )
        seeds.setdefault(seed, f)
        run["file"] = f
        runs.append(run)
    return runs


def read_script(path, reasons, prefix=""):
    try:
        return read_text(path)
    except (OSError, UnicodeDecodeError):
        reasons.append(f"{prefix}missing or unreadable train_gpt.py")
        return None


def one_source(folder, root, runs):
    """The one source the runs of folder (an arm, or a record's previous/) embed (None if none), and
    what is wrong: two sources, or a .py copy beside the logs. Returns (source, reasons)."""
    name = forks.name_in(folder, root)
    reasons = [
        f"{name}/{f}: a copy of a script the logs embed already: delete it"
        for f in sorted(os.listdir(folder))
        if f.endswith(".py")
    ]
    first = {}
    for r in runs:
        first.setdefault(r["source"], r["file"])
    if len(first) > 1:
        a, b = list(first.values())[:2]
        return None, reasons + [
            f"{name}/{b} embeds another source than {a}: one script per folder, "
            f"move each script's logs to a folder of its own"
        ]
    return next(iter(first), None), reasons


def check_diff(folder, root, new):
    """What is wrong with folder/fork.diff as the store of new, the source its logs embed: a base
    that is missing, a diff that does not rebuild new from it, or one that is not byte for byte the
    diff recomputed from the logs. Returns the reasons (none if it holds)."""
    name = forks.name_in(folder, root)
    fix = f"(python tools/forks.py {name} BASE rewrites it from the logs)"
    try:
        diff = read_text(os.path.join(folder, forks.DIFF))
        base = forks.base_of(diff, f"{name}/{forks.DIFF}")
        rebuilt = forks.source(name, root)
    except forks.ForkError as e:
        return [f"{e} {fix}"]
    if rebuilt != new:
        return [
            f"{name}/{forks.DIFF}: applied to {base}, it does not give the source the logs embed {fix}"
        ]
    if diff != forks.make_diff(forks.source(base, root), new, base, name):
        return [f"{name}/{forks.DIFF}: not the diff recomputed from the logs {fix}"]
    return []


def check_previous(rdir, track, rules, before, reasons):
    """The previous/ folder of a record: the logs of the script it beats, run beside it. That script
    is a record's train_gpt.py (logs only) or a fork of one (previous/fork.diff); if the record before
    it in the track is not a Baseline, it is that record's. Returns the previous runs."""
    pdir = os.path.join(rdir, "previous")
    if not os.path.isdir(pdir):
        reasons.append(
            "no previous/: the logs of the script it beats, run beside it on the same machine"
        )
        return []
    runs = read_runs(pdir, None, rules, reasons, "previous/")
    root = forks.root_of(pdir)
    new, more = one_source(pdir, root, runs)
    reasons += more
    if new is None:
        return runs
    records = os.path.dirname(os.path.dirname(os.path.abspath(rdir)))
    same = [
        os.path.basename(d)
        for t, d, _ in find_records(records)
        if t == track and read_script(os.path.join(d, "train_gpt.py"), []) == new
    ]
    if os.path.isfile(os.path.join(pdir, forks.DIFF)):
        reasons += (
            [f"previous/{forks.DIFF}: its logs embed {same[0]}'s train_gpt.py: delete the diff"]
            if same
            else check_diff(pdir, root, new)
        )
    elif not same:
        reasons.append(
            f"previous/: its logs embed no record's train_gpt.py: add the diff from the nearest "
            f"(python tools/forks.py {forks.name_in(pdir, root)} records/<track>/<record>/train_gpt.py)"
        )
    if (
        before is not None
        and not before["baseline"]
        and new != read_script(os.path.join(before["dir"], "train_gpt.py"), [])
    ):
        reasons.append(
            f"previous/: its logs do not embed the script of the record before it ({before['name']})"
        )
    return runs


def check_record(rdir, track, targets, rules=None, before=None, retired=False):
    """Check one record folder; before is the check_record result of the record before it in its
    track (None for the first). Returns a dict with name, track, runs, previous runs, the summarize()
    fields, ok, reasons and note."""
    name = os.path.basename(os.path.normpath(rdir))
    reasons = []
    if track not in targets:
        reasons.append(f"unknown track (known: {', '.join(sorted(targets))})")
    if not RECORD_RE.fullmatch(name):
        reasons.append("folder name is not YYYY-MM-DD_Name")
    script = read_script(os.path.join(rdir, "train_gpt.py"), reasons)
    if not os.path.isfile(os.path.join(rdir, "README.md")):
        reasons.append("missing README.md")
    rules = (RULES if rules is None else rules).get(track)
    reasons += manifest_errors(rdir, shown(rdir))
    runs = read_runs(rdir, script, rules, reasons)
    baseline = name.endswith("_Baseline")
    target = targets.get(track)
    s = summarize(runs, target, claims=not baseline)
    reasons += s.pop("reasons")
    previous, ratio = [], None
    if not baseline and not retired:
        previous = check_previous(rdir, track, rules, before, reasons)
        if previous and runs:
            ratio = s["time_mean"] / stats_of(previous)[2]
            if ratio >= 1:
                reasons.append(
                    f"not faster than the previous script run beside it ({ratio:.3f}x its time)"
                )
    note = (
        "baseline, defines the target"
        if baseline
        else "target not set, logs verified only"
        if target is None
        else f"{ratio:.3f}x the time of the previous script beside it"
        if ratio
        else ""
    )
    return dict(
        s,
        name=name,
        track=track,
        dir=rdir,
        runs=runs,
        previous=previous,
        ratio=ratio,
        baseline=baseline,
        retired=retired,
        target=target,
        ok=not reasons,
        reasons=reasons,
        note=note,
    )


def check_experiment(edir, plot=False):
    """An experiment folder from tools/compare.py --freeze (see tools/forks.py): each arm's logs parse
    and embed one source, which its fork.diff (if any) rebuilds and its arms.tsv SCRIPT stands for,
    and README.md holds the table recomputed from them. With plot, redraws its compare.png from the
    logs if they pass. Returns (name, reasons)."""
    name = os.path.basename(os.path.normpath(edir))
    root = os.path.dirname(os.path.dirname(os.path.abspath(edir)))
    try:
        arms = forks.read_arms(edir)
    except forks.ForkError as e:
        return name, [str(e)]
    reasons, results = manifest_errors(edir, shown(edir)), {}
    for arm, words in arms:
        adir = os.path.join(edir, arm)
        if not os.path.isdir(adir):
            reasons.append(f"{arm}/: no such folder (arms.tsv names it)")
            continue
        results[arm] = read_runs(adir, None, None, reasons, f"{arm}/")
        reasons += [
            f"{arm}/{r['file']}: {m}"
            for r in results[arm]
            for m in flag_mismatches(words[1:], r["hparams"])
        ]
        new, more = one_source(adir, root, results[arm])
        if new is not None and os.path.isfile(os.path.join(adir, forks.DIFF)):
            more += check_diff(adir, root, new)
        reasons += more
        if new is None or more:
            continue
        try:
            same = forks.source(words[0], root) == new
        except forks.ForkError as e:
            reasons.append(f"arms.tsv: {arm}: {e}")
            continue
        if not same:
            reasons.append(
                f"arms.tsv: {arm}: {words[0]} is not the source its logs embed (name the script "
                f"they ran, or the arm's folder with a {forks.DIFF} from it)"
            )
    try:
        readme = read_text(os.path.join(edir, "README.md"))
    except (OSError, UnicodeDecodeError):
        return name, reasons + ["missing or unreadable README.md"]
    if not reasons and summary(arms, results) not in readme:
        reasons.append("README.md does not hold the table recomputed from the logs")
    if plot and not reasons:
        plots.comparison(arms, results, os.path.join(edir, "compare.png"))
    return name, reasons


def shown(folder):
    """folder as the user types it: relative to the working directory if below it."""
    rel = os.path.relpath(folder)
    return os.path.abspath(folder) if rel.startswith("..") else rel


def same_value(flag, logged):
    """Whether a flag's value and the logged hyperparameter agree after the trainer's type conversion."""
    if logged in ("True", "False"):
        return {"true": "True", "1": "True", "false": "False", "0": "False"}.get(
            flag.lower()
        ) == logged
    try:
        return float(flag) == float(logged)
    except ValueError:
        return flag == logged


def flag_mismatches(flags, hparams):
    """Each --name=value of an arm's flags (but --seed) that a log's hparams disagree with, one line each."""
    out = []
    for flag in flags:
        name, sep, value = flag[2:].partition("=")
        if (
            flag.startswith("--")
            and sep
            and name != "seed"
            and not same_value(value, hparams.get(name, ""))
        ):
            out.append(
                f"ran with {name}={hparams.get(name, '(not logged)')}, but arms.tsv says --{name}={value} "
                f"(a log moved to another arm? move it back)"
            )
    return out


def find_records(records_dir):
    """(track, record_dir, retired) for every record folder, sorted by track, then the retired ones,
    then by date."""
    out = []
    for track in sorted(os.listdir(records_dir)):
        tdir = os.path.join(records_dir, track)
        if not os.path.isdir(tdir) or track.startswith("."):
            continue
        for retired, folder in ((True, os.path.join(tdir, "retired")), (False, tdir)):
            if os.path.isdir(folder):
                # by date; on one date a Baseline comes first, since the records after it claim its target
                names = sorted(
                    os.listdir(folder), key=lambda n: (n[:10], not n.endswith("_Baseline"), n)
                )
                out += [
                    (track, os.path.join(folder, name), retired)
                    for name in names
                    if os.path.isdir(os.path.join(folder, name))
                    and not name.startswith(".")
                    and name != "retired"
                ]
    return out


def check_all(records_dir, targets, rules=None):
    """check_record for every record, each knowing the record before it in its track."""
    results, before = [], {}
    for track, rdir, retired in find_records(records_dir):
        r = check_record(
            rdir,
            track,
            RETIRED_TARGETS if retired else targets,
            rules,
            before.get((track, retired)),
            retired,
        )
        before[(track, retired)] = r
        results.append(r)
    return results


def fmt(x, spec):
    return "nan" if x is None or math.isnan(x) else format(x, spec)


def fmt_time(mean, std):
    """Seconds in human units, the unit chosen from the mean."""
    if math.isnan(mean):
        return "-"
    unit, div = ("s", 1) if mean < 120 else ("min", 60) if mean < 7200 else ("h", 3600)
    spec = ".1f" if unit == "s" else ".2f"
    return f"{fmt(mean / div, spec)} ± {fmt(std / div, spec)} {unit}"


def record_line(r):
    p = "-" if r["p"] is None else fmt(r["p"], ".2g")
    status = "OK" if r["ok"] else "FAIL: " + "; ".join(r["reasons"])
    if r["ok"] and r["note"]:
        status += f" ({r['note']})"
    return (
        f"{r['track']}/{'retired/' if r['retired'] else ''}{r['name']}  n={r['n']}  val_loss={fmt(r['mean'], '.4f')}±{fmt(r['std'], '.4f')}"
        f"  p={p}  time={fmt_time(r['time_mean'], r['time_std'])}  {status}"
    )


def table_row(r, rel):
    m = RECORD_RE.fullmatch(r["name"])
    date, name = (m[1], m[2]) if m else ("-", r["name"])
    previous = ratio = "-"
    if r["previous"]:
        loss, loss_std, t, t_std = stats_of(r["previous"])
        previous = f"n={len(r['previous'])}: {fmt(loss, '.4f')} ± {fmt(loss_std, '.4f')}, {fmt_time(t, t_std)}"
    if r["ratio"]:
        ratio = f"{r['ratio']:.3f}x"
    return (
        f"| {date} | [{name}]({rel(r['dir'])}) | {r['n']} | {fmt(r['mean'], '.4f')} ± {fmt(r['std'], '.4f')} "
        f"| {'-' if r['p'] is None else fmt(r['p'], '.2g')} | {fmt_time(r['time_mean'], r['time_std'])} "
        f"| {previous} | {ratio} | {'OK' if r['ok'] else 'FAIL'} |"
    )


def table(results, targets, readme_dir, records_dir, tracks_with_plot):
    """The markdown between the markers. Depends only on the measured numbers, so reruns are identical."""
    rel = lambda path: os.path.relpath(path, readme_dir).replace(os.sep, "/")
    header = [
        "| date | record | n | val loss | p | time | previous script, run beside it | time vs previous | check |",
        "|---|---|--:|---|--:|---|---|--:|---|",
    ]
    lines = []
    for track in sorted(set(targets) | {r["track"] for r in results}):
        rows = [r for r in results if r["track"] == track and not r["retired"]]
        retired = [r for r in results if r["track"] == track and r["retired"]]
        target = targets.get(track)
        lines += [f"### {track}", ""]
        head = f"Target val loss: {'not set yet' if target is None else target}."
        if track in tracks_with_plot:
            png = rel(os.path.join(records_dir, f"{track}.png"))
            head += f" Plot: [{track}.png]({png})."
        lines += [head, ""]
        lines += header + [table_row(r, rel) for r in rows] if rows else ["No records yet."]
        lines.append("")
        if retired:
            folder = rel(os.path.join(records_dir, track, "retired"))
            lines += [
                f"Retired (target {RETIRED_TARGETS.get(track)}; why: [{folder}]({folder}/README.md)):",
                "",
            ]
            lines += header + [table_row(r, rel) for r in retired] + [""]
    return "\n".join(lines)


def write_table(readme, text):
    """Replace what lies between the markers. Returns an error message, or None."""
    try:
        old = read_text(readme)
    except (OSError, UnicodeDecodeError):
        return f"{readme}: cannot read"
    i, j = old.find(BEGIN), old.find(END)
    if i < 0 or j < i:
        return f"{readme}: missing {BEGIN} ... {END} markers"
    new = old[: i + len(BEGIN)] + "\n" + text + "\n" + old[j:]
    with open(readme, "w", encoding="utf-8", newline="") as f:
        f.write(new)
    return None


def parse_targets(overrides):
    """TARGETS with --target TRACK=VALUE overrides (VALUE 'none' unsets); raises ValueError."""
    targets = dict(TARGETS)
    for o in overrides or []:
        track, sep, value = o.partition("=")
        if not sep or not track:
            raise ValueError(f"--target {o!r}: expected TRACK=VALUE")
        targets[track] = None if value.lower() == "none" else float(value)
    return targets


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
        f"rerun of {run['file']}: final val loss {new['val_loss']:.4f} vs logged {run['val_loss']:.4f}, "
        f"|diff| {diff:.4f} {'<=' if agrees else '>'} tolerance {tolerance:.4f} ({RERUN_SIGMAS:g} x the std of "
        f"the record's {len(runs)} runs): {'agrees' if agrees else 'DISAGREES'}; train time "
        f"{new['train_time_ms'] / 1000:.1f} s here vs {run['train_time_ms'] / 1000:.1f} s logged"
    )
    return 0 if agrees else 1


def extract(path):
    """Print the source a log embeds, or the one an arm folder (or a record's previous/) stands for."""
    try:
        if os.path.isdir(path):
            root = forks.root_of(path)
            source = forks.source(forks.name_in(path, root), root)
        else:
            source = split_log(read_text(path))[0]
    except (forks.ForkError, LogError) as e:
        print(f"error: --extract {path}: {e}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError):
        print(f"error: --extract {path}: no such log or folder, or unreadable", file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stdout.buffer.write(source.encode("utf-8"))
    return 0


def main(argv=None):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", action="store_true", help="rewrite the records table in the README")
    ap.add_argument(
        "--plot",
        action="store_true",
        help="draw records/<track>.png and every experiment's compare.png",
    )
    ap.add_argument(
        "--records",
        default=os.path.join(repo, "records"),
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
        "--workdir", default=repo, help="with --rerun: where to run it (default: the repository)"
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
        targets = parse_targets(args.target)
    except ValueError as e:
        ap.error(str(e))
    if args.extract:
        return extract(args.extract)
    if args.write_manifest:
        for folder in args.write_manifest:
            if not os.path.isdir(folder):
                print(f"error: --write-manifest {folder}: no such folder", file=sys.stderr)
                return 2
            print(f"wrote {write_manifest(folder)}")
        return 0
    if args.rerun:
        if not os.path.isdir(args.rerun):
            print(f"error: --rerun {args.rerun}: no such record folder", file=sys.stderr)
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
        for name in sorted(os.listdir(experiments)):
            if os.path.isdir(os.path.join(experiments, name)) and not name.startswith("."):
                name, reasons = check_experiment(os.path.join(experiments, name), args.plot)
                experiments_ok &= not reasons
                print(
                    f"experiments/{name}  {'OK' if not reasons else 'FAIL: ' + '; '.join(reasons)}"
                )
    if args.plot:
        plots.records(results, targets, records)
    if args.table:
        # Link a track's plot only if it exists (just drawn or from an earlier --plot).
        with_plot = {
            t
            for t in set(targets) | {r["track"] for r in results}
            if os.path.isfile(os.path.join(records, f"{t}.png"))
        }
        err = write_table(
            readme,
            table(results, targets, os.path.dirname(os.path.abspath(readme)), records, with_plot),
        )
        if err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0 if experiments_ok and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
