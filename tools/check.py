#!/usr/bin/env python3
"""Verify every record from its logs, and optionally redraw the README table and the plots.

    python tools/check.py [--table] [--plot] [--records DIR] [--readme PATH] [--target TRACK=VALUE]
    python tools/check.py --rerun records/<track>/<record> [--log UUID.txt]

A record is records/<track>/<YYYY-MM-DD>_<Name>/ holding the frozen train_gpt.py, the unedited
logs (<uuid>.txt) of every run of the claim, README.md, and (every record but a Baseline)
previous/: the script it claims to beat, previous/train_gpt.py, with the logs of that script run
beside it on the same machine. All numbers come from the step lines of the logs, never from a
README. Prints one line per record; exits 1 if any record fails. Records whose target was retired
stay readable under records/<track>/retired/ and are checked against the target they were made for.

--rerun runs a CPU record's frozen script again with the hyperparameters and seed of one of its
logs, and says whether the final val loss agrees (see RERUN_SIGMAS).
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
    "8xh100_fineweb": dict(hparams=dict(track="8xh100_fineweb", train_files="data/fineweb10B/fineweb_train_*.bin",
                                        val_files="data/fineweb10B/fineweb_val_*.bin", val_tokens="10485760"),
                           val_predictions=10485760),
    "cpu_shakespeare": dict(hparams=dict(track="cpu_shakespeare", train_files="data/shakespeare/shakespeare_train_*.bin",
                                         val_files="data/shakespeare/shakespeare_val_*.bin", val_tokens="0"),
                            val_predictions=155120),
}
# A rerun with a log's seed agrees if its final val loss is within this many standard deviations of
# the record's runs (fresh seeds) of the logged one. The same seed on another machine is not bitwise
# the same run (float rounding differs between CPUs: 5.7940 vs 5.8073 for one seed of the retired
# ModernGPT record, 0.7 of its std of 0.0202), so the bound is the spread of the runs themselves.
RERUN_SIGMAS = 3.0

RULER = "=" * 100
# The step-line format; the tests read step lines through this module too.
STEP_RE = re.compile(r"step:(\d+)/(\d+) (?:val_loss:(\S+)|train_loss:(\S+) lr:(\S+) grad_norm:(\S+)) "
                     r"train_time:(\d+)ms step_avg:(\S+)ms")
HPARAMS_RE = re.compile(r"^hparams: (.*)$", re.M)
VAL_COUNT_RE = re.compile(r" val_tokens:(\d+)")
FINAL_RE = re.compile(r"final_val_loss:(\S+) train_time:(\d+)ms")
RECORD_RE = re.compile(r"(\d{4}-\d{2}-\d{2})_(\S+)")
BEGIN, END = "<!-- records:begin -->", "<!-- records:end -->"


class LogError(ValueError):
    """A log that cannot be trusted; the message is one line."""


def read_text(path):
    # newline="" keeps \r\n etc. as they are, so "byte for byte" comparisons stay exact.
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def _decimals(s):
    return len(s.split(".")[1]) if "." in s else 0


def parse_log(text):
    """Parse one log. Returns a dict: source, env, steps (tuple of the step lines), vals (list of
    (step, val_loss, train_time_ms)), total, val_loss and train_time_ms (of the final val line).
    Raises LogError for anything malformed, unfinished or inconsistent."""
    parts = text.split(RULER + "\n", 3)
    if len(parts) < 4 or parts[0]:
        raise LogError("not a log: expected a ruler line, the source, a ruler, the environment, a ruler")
    _, source, env, body = parts
    steps, vals, final = [], [], None
    prev = {"step": -1, "time": -1, "train": -1, "val": -1}
    total = None
    for line in body.split("\n"):
        m = STEP_RE.fullmatch(line)
        if m is None:
            # Anything else may be free text (warnings, a sample), but not a near-miss step line:
            # that would let an edited line silently drop out of the checks.
            if line.startswith("step:"):
                raise LogError(f"malformed step line {line[:60]!r}")
            f = FINAL_RE.fullmatch(line)
            if f:
                final = f
                break  # what follows (a generated sample) is free text, even if it looks like a step line
            if line.startswith("final_val_loss:"):
                raise LogError(f"malformed final line {line[:60]!r}")
            continue
        step, n, time_ms = int(m[1]), int(m[2]), int(m[7])
        kind = "val" if m[3] is not None else "train"
        if total is None:
            total = n
        if n != total or step > total:
            raise LogError(f"step line {step}/{n} disagrees with total {total}")
        # A train and a val line may share a step; otherwise steps only go up.
        if step < prev["step"] or step <= prev[kind]:
            raise LogError(f"step numbers do not increase at step {step}")
        if time_ms < prev["time"]:
            raise LogError(f"train_time decreases at step {step}")
        prev.update(step=step, time=time_ms)
        prev[kind] = step
        steps.append(line)
        if kind == "val":
            try:
                vals.append((step, float(m[3]), time_ms, m[3]))
            except ValueError:
                raise LogError(f"bad val_loss {m[3]!r} at step {step}") from None
    if not steps:
        raise LogError("no step lines")
    if not vals or vals[-1][0] != total:
        last = vals[-1][0] if vals else None
        raise LogError(f"unfinished run: last val_loss at step {last}, not {total}")
    if final is None:
        raise LogError("no final_val_loss line")
    step, loss, time_ms, loss_str = vals[-1]
    if not math.isfinite(loss):
        raise LogError(f"final val_loss is {loss_str}")
    # The summary must say what the step line says, up to the coarser of the two printed precisions.
    claimed = final[1]
    try:
        ok = abs(float(claimed) - loss) <= 0.5 * 10 ** -min(_decimals(claimed), _decimals(loss_str)) + 1e-12
    except ValueError:
        ok = False
    if not ok:
        raise LogError(f"final_val_loss:{claimed} disagrees with step {total} val_loss:{loss_str}")
    if int(final[2]) != time_ms:
        raise LogError(f"final train_time {final[2]}ms disagrees with step {total} ({time_ms}ms)")
    hp = HPARAMS_RE.search(env)
    count = VAL_COUNT_RE.search(env)
    if hp is None or count is None:
        raise LogError("no hparams: line or no val_tokens: count in the environment")
    hparams = dict(kv.split("=", 1) for kv in hp[1].split(" ") if "=" in kv)
    return {"source": source, "env": env, "steps": tuple(steps), "total": total, "hparams": hparams,
            "val_predictions": int(count[1]), "vals": [v[:3] for v in vals], "val_loss": loss,
            "train_time_ms": time_ms}


def rule_breaks(run, rules):
    """What in a parsed log departs from the track's fixed data and val set (empty if nothing)."""
    out = [f"{k}={run['hparams'].get(k)} (the track's is {v})" for k, v in rules["hparams"].items()
           if run["hparams"].get(k) != v]
    if run["val_predictions"] != rules["val_predictions"]:
        out.append(f"{run['val_predictions']} val predictions (the track's is {rules['val_predictions']})")
    return out


def read_log(path):
    """parse_log of a file; unreadable files raise LogError too."""
    try:
        return parse_log(read_text(path))
    except (OSError, UnicodeDecodeError) as e:
        raise LogError(f"unreadable ({e.__class__.__name__})") from None


def stats_of(runs):
    """(mean, std) of the final val loss and of the training seconds over runs; nan where undefined."""
    losses, times = [r["val_loss"] for r in runs], [r["train_time_ms"] / 1000 for r in runs]
    mean = lambda xs: float(np.mean(xs)) if xs else math.nan
    std = lambda xs: float(np.std(xs, ddof=1)) if len(xs) > 1 else math.nan
    return mean(losses), std(losses), mean(times), std(times)


def summarize(runs, target, claims):
    """Statistics of a record's runs, and the reasons its claim fails (empty if it holds)."""
    losses, n = [r["val_loss"] for r in runs], len(runs)
    mean, std, tmean, tstd = stats_of(runs)
    p, reasons = None, []
    if claims and target is not None:
        if n < 2:
            reasons.append(f"{n} run(s): a claim needs at least 2 for a p-value")
        else:
            with warnings.catch_warnings():  # identical losses give nan with a warning; nan fails below
                warnings.simplefilter("ignore")
                p = float(stats.ttest_1samp(losses, target, alternative="less").pvalue)
            if math.isnan(p):
                reasons.append("p is nan")
            elif mean > target:
                reasons.append(f"mean {mean:.4f} above target {target}")
            elif p >= P_MAX:
                reasons.append(f"p={p:.2g} not below {P_MAX}")
    return {"n": n, "mean": mean, "std": std, "p": p, "time_mean": tmean, "time_std": tstd,
            "reasons": reasons}


def read_runs(folder, script, rules, reasons, prefix=""):
    """Every <uuid>.txt in folder, parsed and checked against the script and the track's rules; what
    fails goes into reasons, one line each."""
    runs, seen = [], {}
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
        run["file"] = f
        runs.append(run)
    return runs


def read_script(path, reasons, prefix=""):
    try:
        return read_text(path)
    except (OSError, UnicodeDecodeError):
        reasons.append(f"{prefix}missing or unreadable train_gpt.py")
        return None


def check_previous(rdir, rules, before, reasons):
    """The previous/ folder of a record: the script it beats and that script's runs beside it. If the
    record before it in the track is not a Baseline, previous/ must hold that record's exact script.
    Returns the previous runs."""
    pdir = os.path.join(rdir, "previous")
    if not os.path.isdir(pdir):
        reasons.append("no previous/: the logs of the script it beats, run beside it on the same machine")
        return []
    script = read_script(os.path.join(pdir, "train_gpt.py"), reasons, "previous/")
    if before is not None and not before["baseline"] and script is not None \
            and script != read_script(os.path.join(before["dir"], "train_gpt.py"), []):
        reasons.append(f"previous/train_gpt.py is not the script of the record before it ({before['name']})")
    return read_runs(pdir, script, rules, reasons, "previous/")


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
    runs = read_runs(rdir, script, rules, reasons)
    baseline = name.endswith("_Baseline")
    target = targets.get(track)
    s = summarize(runs, target, claims=not baseline)
    reasons += s.pop("reasons")
    previous, ratio = [], None
    if not baseline and not retired:
        previous = check_previous(rdir, rules, before, reasons)
        if previous and runs:
            ratio = s["time_mean"] / stats_of(previous)[2]
            if ratio >= 1:
                reasons.append(f"not faster than the previous script run beside it ({ratio:.3f}x its time)")
    note = ("baseline, defines the target" if baseline else
            "target not set, logs verified only" if target is None else
            f"{ratio:.3f}x the time of the previous script beside it" if ratio else "")
    return dict(s, name=name, track=track, dir=rdir, runs=runs, previous=previous, ratio=ratio,
                baseline=baseline, retired=retired, target=target, ok=not reasons, reasons=reasons, note=note)


def check_experiment(edir):
    """An experiment folder from tools/compare.py --freeze: each arm's logs parse and embed that arm's
    train_gpt.py, and README.md holds the table recomputed from them. Returns (name, reasons)."""
    import compare  # it imports this module; imported here, when needed
    reasons, results = [], {}
    try:
        with open(os.path.join(edir, "arms.tsv")) as f:
            arms = [tuple(line.rstrip("\n").split("\t", 1)) for line in f if line.strip()]
        readme = read_text(os.path.join(edir, "README.md"))
    except (OSError, UnicodeDecodeError):
        return os.path.basename(edir), ["missing arms.tsv or README.md"]
    for arm, _ in arms:
        adir = os.path.join(edir, arm)
        script = read_script(os.path.join(adir, "train_gpt.py"), reasons, f"{arm}/")
        read_runs(adir, script, None, reasons, f"{arm}/")
        try:
            results[arm] = [compare.load(os.path.join(adir, f)) for f in sorted(os.listdir(adir)) if f.endswith(".txt")]
        except LogError:
            continue  # read_runs said why
    if not reasons and compare.summary(arms, results) not in readme:
        reasons.append("README.md does not hold the table recomputed from the logs")
    return os.path.basename(os.path.normpath(edir)), reasons


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
                names = sorted(os.listdir(folder), key=lambda n: (n[:10], not n.endswith("_Baseline"), n))
                out += [(track, os.path.join(folder, name), retired) for name in names
                        if os.path.isdir(os.path.join(folder, name)) and not name.startswith(".") and name != "retired"]
    return out


def check_all(records_dir, targets, rules=None):
    """check_record for every record, each knowing the record before it in its track."""
    results, before = [], {}
    for track, rdir, retired in find_records(records_dir):
        r = check_record(rdir, track, RETIRED_TARGETS if retired else targets, rules,
                         before.get((track, retired)), retired)
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
    return (f"{r['track']}/{'retired/' if r['retired'] else ''}{r['name']}  n={r['n']}  val_loss={fmt(r['mean'], '.4f')}±{fmt(r['std'], '.4f')}"
            f"  p={p}  time={fmt_time(r['time_mean'], r['time_std'])}  {status}")


def table_row(r, rel):
    m = RECORD_RE.fullmatch(r["name"])
    date, name = (m[1], m[2]) if m else ("-", r["name"])
    previous = ratio = "-"
    if r["previous"]:
        loss, loss_std, t, t_std = stats_of(r["previous"])
        previous = f"n={len(r['previous'])}: {fmt(loss, '.4f')} ± {fmt(loss_std, '.4f')}, {fmt_time(t, t_std)}"
    if r["ratio"]:
        ratio = f"{r['ratio']:.3f}x"
    return (f"| {date} | [{name}]({rel(r['dir'])}) | {r['n']} | {fmt(r['mean'], '.4f')} ± {fmt(r['std'], '.4f')} "
            f"| {'-' if r['p'] is None else fmt(r['p'], '.2g')} | {fmt_time(r['time_mean'], r['time_std'])} "
            f"| {previous} | {ratio} | {'OK' if r['ok'] else 'FAIL'} |")


def table(results, targets, readme_dir, records_dir, tracks_with_plot):
    """The markdown between the markers. Depends only on the measured numbers, so reruns are identical."""
    rel = lambda path: os.path.relpath(path, readme_dir).replace(os.sep, "/")
    header = ["| date | record | n | val loss | p | time | previous script, run beside it | time vs previous | check |",
              "|---|---|--:|---|--:|---|---|--:|---|"]
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
            lines += [f"Retired (target {RETIRED_TARGETS.get(track)}; why: [{folder}]({folder}/README.md)):", ""]
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
    new = old[:i + len(BEGIN)] + "\n" + text + "\n" + old[j:]
    with open(readme, "w", encoding="utf-8", newline="") as f:
        f.write(new)
    return None


def plot(results, targets, records_dir):
    """records/<track>.png: val loss against training time, one thin line per run, one colour per
    record (dashed: the previous script's runs beside it), the target as a horizontal line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for track in sorted({r["track"] for r in results if r["runs"] and not r["retired"]}):
        rows = [r for r in results if r["track"] == track and r["runs"] and not r["retired"]]
        longest = max(run["train_time_ms"] for r in rows for run in r["runs"] + r["previous"]) / 1000
        unit, div = ("s", 1) if longest < 300 else ("min", 60)
        fig, ax = plt.subplots(figsize=(8, 5))
        for k, r in enumerate(rows):
            for style, label, runs in (("-", r["name"], r["runs"]), ("--", f"{r['name']}: previous, beside it", r["previous"])):
                for j, run in enumerate(runs):
                    # Step 0 is the untrained model (~10.8 for every run); it would only squash the axis.
                    pts = [(t / 1000 / div, loss) for step, loss, t in run["vals"] if step > 0]
                    ax.plot([x for x, _ in pts], [y for _, y in pts], style, color=f"C{k % 10}", lw=0.8,
                            alpha=0.8, label=label if j == 0 else None)
        if targets.get(track) is not None:
            ax.axhline(targets[track], color="k", ls="--", lw=1, label=f"target {targets[track]}")
        ax.set(xlabel=f"training time ({unit})", ylabel="val loss", title=track)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        # No "Software" metadata: the PNG bytes then depend only on the data.
        fig.savefig(os.path.join(records_dir, f"{track}.png"), dpi=100, metadata={"Software": None})
        plt.close(fig)


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
        print(f"error: --rerun {rdir}: not a record folder (one holding train_gpt.py and its logs, "
              f"records/<track>/<YYYY-MM-DD>_<Name>)", file=sys.stderr)
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
        new_log = new_log or (line[len("log: "):].strip() if line.startswith("log: ") else None)
    if proc.wait() != 0 or new_log is None:
        print(f"error: the rerun failed (exit {proc.returncode})", file=sys.stderr)
        return 2
    new = read_log(os.path.join(workdir, new_log))
    diff = abs(new["val_loss"] - run["val_loss"])
    agrees = diff <= tolerance
    print(f"rerun of {run['file']}: final val loss {new['val_loss']:.4f} vs logged {run['val_loss']:.4f}, "
          f"|diff| {diff:.4f} {'<=' if agrees else '>'} tolerance {tolerance:.4f} ({RERUN_SIGMAS:g} x the std of "
          f"the record's {len(runs)} runs): {'agrees' if agrees else 'DISAGREES'}; train time "
          f"{new['train_time_ms'] / 1000:.1f} s here vs {run['train_time_ms'] / 1000:.1f} s logged")
    return 0 if agrees else 1


def main(argv=None):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", action="store_true", help="rewrite the records table in the README")
    ap.add_argument("--plot", action="store_true", help="draw records/<track>.png")
    ap.add_argument("--records", default=os.path.join(repo, "records"), help="records folder (default: records/)")
    ap.add_argument("--experiments", help="experiment folders to verify (default: experiments/ next to the records folder)")
    ap.add_argument("--rerun", metavar="RECORD_DIR", help="rerun this record with a logged seed, compare its loss")
    ap.add_argument("--log", help="with --rerun: which log to reproduce (default: the first)")
    ap.add_argument("--workdir", default=repo, help="with --rerun: where to run it (default: the repository)")
    ap.add_argument("--readme", help="README to update (default: README.md next to the records folder)")
    ap.add_argument("--target", action="append", metavar="TRACK=VALUE",
                    help="override a track's target (for tests); repeatable")
    args = ap.parse_args(argv)
    try:
        targets = parse_targets(args.target)
    except ValueError as e:
        ap.error(str(e))
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
                name, reasons = check_experiment(os.path.join(experiments, name))
                experiments_ok &= not reasons
                print(f"experiments/{name}  {'OK' if not reasons else 'FAIL: ' + '; '.join(reasons)}")
    if args.plot:
        plot(results, targets, records)
    if args.table:
        # Link a track's plot only if it exists (just drawn or from an earlier --plot).
        with_plot = {t for t in set(targets) | {r["track"] for r in results}
                     if os.path.isfile(os.path.join(records, f"{t}.png"))}
        err = write_table(readme, table(results, targets, os.path.dirname(os.path.abspath(readme)),
                                        records, with_plot))
        if err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0 if experiments_ok and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
