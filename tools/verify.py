"""What a record folder and an experiment folder must prove, checked from their logs: the library
behind tools/check.py (which prints it) and tools/submit.py (which refuses a record that fails it).

A record (tools/layout.py) holds the frozen train_gpt.py, the unedited logs of every run of the
claim, README.md, MANIFEST.sha256 (tools/manifest.py) and, every record but a Baseline, previous/:
the logs of the script it claims to beat, run beside it on the same machine; that script is a
record's train_gpt.py, or a fork of one stored as previous/fork.diff (tools/forkdiff.py). Every
number comes from the step lines of the logs (tools/logformat.py), never from a README; the
track's target, fixed data and p-value threshold come from tools/tracks.py. An experiment folder
(tools/compare.py --freeze) holds arms.tsv and an arm folder per arm; each arm's logs embed one
source, which its fork.diff rebuilds and its arms.tsv SCRIPT stands for, and ran with its flags.
"""

import math
import os

import forkdiff
import plots
import tables
import tracks
from layout import (
    LayoutError,
    PREVIOUS,
    RECORD_RE,
    find_records,
    fork_root,
    name_in,
    os_error,
    read_arms,
    read_text,
    records_dir_of,
    root_of,
    shown,
)
from logformat import LogError, read_log
from manifest import manifest_errors
from stats import claim_p, faster_p, fmt, fmt_p, fmt_time, stats_of, summary


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
            p = claim_p(losses, target)
            if math.isnan(p):
                reasons.append("p is nan")
            elif mean > target:
                reasons.append(f"mean {mean:.4f} above target {target}")
            elif p >= tracks.P_MAX:
                reasons.append(f"p={fmt_p(p, tracks.P_MAX)} not below {tracks.P_MAX}")
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
        if os.path.islink(os.path.join(folder, f)):
            reasons.append(
                f"{prefix}{f}: a symbolic link, not a log (a clone would hold the link, not the "
                f"run: put the log file it names in its place, or delete it)"
            )
            continue
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
                f"{prefix}{f}: seed={seed} as in {seeds[seed]} (the runs of one claim need "
                f"distinct seeds: a copied or rerun log? keep one)"
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
    name = name_in(folder, root)
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
    name = name_in(folder, root)
    fix = f"(python tools/forks.py {name} BASE rewrites it from the logs)"
    try:
        diff = read_text(os.path.join(folder, forkdiff.DIFF))
        base = forkdiff.base_of(diff, f"{name}/{forkdiff.DIFF}")
        rebuilt = forkdiff.source(name, root)
    except forkdiff.ForkError as e:
        return [f"{e} {fix}"]
    if rebuilt != new:
        return [
            f"{name}/{forkdiff.DIFF}: applied to {base}, it does not give the source the logs "
            f"embed {fix}"
        ]
    if diff != forkdiff.make_diff(forkdiff.source(base, root), new, base, name):
        return [f"{name}/{forkdiff.DIFF}: not the diff recomputed from the logs {fix}"]
    return []


def check_previous(rdir, track, rules, before, reasons):
    """The previous/ folder of a record: the logs of the script it beats, run beside it. That
    script is a record's train_gpt.py (logs only) or a fork of one (previous/fork.diff); if the
    record before it in the track is not a Baseline, it is that record's. Returns the previous
    runs."""
    pdir = os.path.join(rdir, PREVIOUS)
    if not os.path.isdir(pdir):
        reasons.append(
            "no previous/: the logs of the script it beats, run beside it on the same machine"
        )
        return []
    runs = read_runs(pdir, None, rules, reasons, "previous/")
    root = fork_root(pdir)
    new, more = one_source(pdir, root, runs)
    reasons += more
    if new is None:
        return runs
    records = records_dir_of(rdir)
    same = [
        os.path.basename(d)
        for t, d, _ in find_records(records)
        if t == track and read_script(os.path.join(d, "train_gpt.py"), []) == new
    ]
    if os.path.isfile(os.path.join(pdir, forkdiff.DIFF)):
        reasons += (
            [f"previous/{forkdiff.DIFF}: its logs embed {same[0]}'s train_gpt.py: delete the diff"]
            if same
            else check_diff(pdir, root, new)
        )
    elif not same:
        reasons.append(
            f"previous/: its logs embed no record's train_gpt.py: add the diff from the nearest "
            f"(python tools/forks.py {name_in(pdir, root)} records/<track>/<record>/train_gpt.py)"
        )
    if (
        before is not None
        and not before["baseline"]
        and new != read_script(os.path.join(before["dir"], "train_gpt.py"), [])
    ):
        reasons.append(
            "previous/: its logs do not embed the script of the record before it "
            f"({before['name']})"
        )
    return runs


def check_record(rdir, track, targets, rules=None, before=None, retired=False):
    """Check one record folder; before is the check_record result of the record before it in its
    track (None for the first). Returns a dict with name, track, runs, previous runs, the
    summarize() fields, ok, reasons and note."""
    name = os.path.basename(os.path.normpath(rdir))
    reasons = []
    if track not in targets:
        reasons.append(f"unknown track (known: {', '.join(sorted(targets))})")
    if not RECORD_RE.fullmatch(name):
        reasons.append("folder name is not YYYY-MM-DD_Name")
    script = read_script(os.path.join(rdir, "train_gpt.py"), reasons)
    if not os.path.isfile(os.path.join(rdir, "README.md")):
        reasons.append("missing README.md")
    rules = (tracks.RULES if rules is None else rules).get(track)
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
            p_time = faster_p(runs, previous)
            if ratio >= 1:
                reasons.append(
                    f"not faster than the previous script run beside it ({ratio:.3f}x its time)"
                )
            elif not p_time < tracks.P_MAX:
                reasons.append(
                    f"not significantly faster than the previous script run beside it: "
                    f"p={fmt_p(p_time, tracks.P_MAX)} (one-sided Welch t-test on the training "
                    f"times) not below {tracks.P_MAX}"
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


def check_all(records_dir, targets, rules=None):
    """check_record for every record, each knowing the record before it in its track."""
    results, before = [], {}
    for track, rdir, retired in find_records(records_dir):
        r = check_record(
            rdir,
            track,
            tracks.RETIRED_TARGETS if retired else targets,
            rules,
            before.get((track, retired)),
            retired,
        )
        before[(track, retired)] = r
        results.append(r)
    return results


def check_experiment(edir, plot=False):
    """An experiment folder from tools/compare.py --freeze: each arm's logs parse and embed one
    source, which its fork.diff (if any) rebuilds and its arms.tsv SCRIPT stands for, and README.md
    holds the table recomputed from them. With plot, redraws its compare.png from the logs if they
    pass. Returns (name, reasons)."""
    name = os.path.basename(os.path.normpath(edir))
    root = root_of(edir, "experiment")
    try:
        arms = read_arms(edir)
    except LayoutError as e:
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
        if new is not None and os.path.isfile(os.path.join(adir, forkdiff.DIFF)):
            more += check_diff(adir, root, new)
        reasons += more
        if new is None or more:
            continue
        try:
            same = forkdiff.source(words[0], root) == new
        except forkdiff.ForkError as e:
            reasons.append(f"arms.tsv: {arm}: {e}")
            continue
        if not same:
            reasons.append(
                f"arms.tsv: {arm}: {words[0]} is not the source its logs embed (name the script "
                f"they ran, or the arm's folder with a {forkdiff.DIFF} from it)"
            )
    try:
        readme = read_text(os.path.join(edir, "README.md"))
    except (OSError, UnicodeDecodeError):
        return name, reasons + ["missing or unreadable README.md"]
    if not reasons and summary(arms, results) not in readme:
        reasons.append("README.md does not hold the table recomputed from the logs")
    todo = tables.todo_lines(readme)
    if todo:
        reasons.append(
            f"README.md still holds the stub's {tables.TODO} (line{'s' * (len(todo) > 1)} "
            f"{', '.join(map(str, todo))}): fill in what was changed and why, and its Summary row"
        )
    if plot and not reasons:
        try:
            plots.comparison(arms, results, os.path.join(edir, "compare.png"))
        except OSError as e:
            reasons.append(os_error(e.filename or edir, e, "make it writable, then rerun --plot"))
    return name, reasons


def same_value(flag, logged):
    """Whether a flag's value and the logged hyperparameter agree after the trainer's type
    conversion."""
    if logged in ("True", "False"):
        return {"true": "True", "1": "True", "false": "False", "0": "False"}.get(
            flag.lower()
        ) == logged
    try:
        return float(flag) == float(logged)
    except ValueError:
        return flag == logged


def flag_mismatches(flags, hparams):
    """Each --name=value of an arm's flags (but --seed) that a log's hparams disagree with, one line
    each: a name the log does not hold is no hyperparameter of the script that ran (the trainer
    refuses unknown flags), so arms.tsv is wrong; a value that differs is a log moved from another
    arm."""
    out = []
    for flag in flags:
        name, sep, value = flag[2:].partition("=")
        if not flag.startswith("--") or not sep or name == "seed":
            continue
        if name not in hparams:
            out.append(
                f"arms.tsv says --{name}={value}, but its script has no hyperparameter {name} "
                f"(its log holds none, and the script refuses unknown flags): fix the arms.tsv line"
            )
        elif not same_value(value, hparams[name]):
            out.append(
                f"ran with {name}={hparams[name]}, but arms.tsv says --{name}={value} "
                f"(a log moved to another arm? move it back)"
            )
    return out


def record_line(r):
    """A check_record result as the one line tools/check.py prints for it."""
    p = "-" if r["p"] is None else fmt_p(r["p"], tracks.P_MAX)
    status = "OK" if r["ok"] else "FAIL: " + "; ".join(r["reasons"])
    if r["ok"] and r["note"]:
        status += f" ({r['note']})"
    folder = f"{r['track']}/{'retired/' if r['retired'] else ''}{r['name']}"
    loss = f"{fmt(r['mean'], '.4f')}±{fmt(r['std'], '.4f')}"
    time = fmt_time(r["time_mean"], r["time_std"])
    return f"{folder}  n={r['n']}  val_loss={loss}  p={p}  time={time}  {status}"
