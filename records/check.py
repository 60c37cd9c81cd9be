#!/usr/bin/env python3
"""Verify every record from its logs, and optionally redraw the README table and the plots.

    python records/check.py [--table] [--plot] [--records DIR] [--readme PATH] [--target TRACK=VALUE]

A record is records/<track>/<YYYY-MM-DD>_<Name>/ holding the frozen train_gpt.py, the unedited
logs (<uuid>.txt) of every run of the claim, and README.md. All numbers come from the step lines
of the logs, never from a README. Prints one line per record; exits 1 if any record fails.
"""
import argparse
import math
import os
import re
import sys
import warnings

import numpy as np
from scipy import stats

# Target val loss per track. A record named *_Baseline defines its track's target; every other
# record claims it. None = not fixed yet: such records can only have their logs verified.
# cpu_shakespeare: the mean final val loss of the 3 runs of records/cpu_shakespeare/2026-11-23_Baseline
# (5.9679), rounded up to 0.01. Fixed on 2026-11-23; it never moves.
TARGETS = {"8xh100_fineweb": 3.28, "cpu_shakespeare": 5.97}
P_MAX = 0.01  # a claim needs p < P_MAX (one-sided one-sample t-test, H1: mean < target)

RULER = "=" * 100
STEP_RE = re.compile(r"step:(\d+)/(\d+) (?:val_loss:(\S+)|train_loss:(\S+) lr:(\S+) grad_norm:(\S+)) "
                     r"train_time:(\d+)ms step_avg:(\S+)ms")
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
    return {"source": source, "env": env, "steps": tuple(steps), "total": total,
            "vals": [v[:3] for v in vals], "val_loss": loss, "train_time_ms": time_ms}


def read_log(path):
    """parse_log of a file; unreadable files raise LogError too."""
    try:
        return parse_log(read_text(path))
    except (OSError, UnicodeDecodeError) as e:
        raise LogError(f"unreadable ({e.__class__.__name__})") from None


def summarize(losses, times_s, target, claims):
    """Statistics of a record's runs, and the reasons its claim fails (empty if it holds)."""
    n = len(losses)
    mean = float(np.mean(losses)) if n else math.nan
    std = float(np.std(losses, ddof=1)) if n > 1 else math.nan
    tmean = float(np.mean(times_s)) if n else math.nan
    tstd = float(np.std(times_s, ddof=1)) if n > 1 else math.nan
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


def check_record(rdir, track, targets):
    """Check one record folder. Returns a dict with name, track, runs, the summarize() fields,
    ok, reasons and note."""
    name = os.path.basename(os.path.normpath(rdir))
    reasons, runs = [], []
    if track not in targets:
        reasons.append(f"unknown track (known: {', '.join(sorted(targets))})")
    if not RECORD_RE.fullmatch(name):
        reasons.append("folder name is not YYYY-MM-DD_Name")
    try:
        script = read_text(os.path.join(rdir, "train_gpt.py"))
    except (OSError, UnicodeDecodeError):
        script = None
        reasons.append("missing or unreadable train_gpt.py")
    if not os.path.isfile(os.path.join(rdir, "README.md")):
        reasons.append("missing README.md")
    logs = sorted(f for f in os.listdir(rdir) if f.endswith(".txt"))
    if not logs:
        reasons.append("no logs (*.txt)")
    seen = {}
    for f in logs:
        try:
            run = read_log(os.path.join(rdir, f))
        except LogError as e:
            reasons.append(f"{f}: {e}")
            continue
        if script is not None and run["source"] != script:
            reasons.append(f"{f}: embedded source differs from train_gpt.py")
        # Real reruns differ at least in their timings; identical step lines mean a copied log.
        if run["steps"] in seen:
            reasons.append(f"{f}: same step lines as {seen[run['steps']]} (copied run)")
        seen[run["steps"]] = f
        run["file"] = f
        runs.append(run)
    baseline = name.endswith("_Baseline")
    target = targets.get(track)
    s = summarize([r["val_loss"] for r in runs], [r["train_time_ms"] / 1000 for r in runs],
                  target, claims=not baseline)
    reasons += s.pop("reasons")
    note = ("baseline, defines the target" if baseline else
            "target not set, logs verified only" if target is None else "")
    return dict(s, name=name, track=track, dir=rdir, runs=runs, baseline=baseline,
                target=target, ok=not reasons, reasons=reasons, note=note)


def find_records(records_dir):
    """(track, record_dir) for every record folder, sorted by track then folder name (= date)."""
    out = []
    for track in sorted(os.listdir(records_dir)):
        tdir = os.path.join(records_dir, track)
        if not os.path.isdir(tdir) or track.startswith((".", "_")):  # skips __pycache__
            continue
        for name in sorted(os.listdir(tdir)):
            if os.path.isdir(os.path.join(tdir, name)) and not name.startswith((".", "_")):
                out.append((track, os.path.join(tdir, name)))
    return out


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
    return (f"{r['track']}/{r['name']}  n={r['n']}  val_loss={fmt(r['mean'], '.4f')}±{fmt(r['std'], '.4f')}"
            f"  p={p}  time={fmt_time(r['time_mean'], r['time_std'])}  {status}")


def baselines(results):
    """Track -> latest Baseline record with at least one run (the reference for time ratios)."""
    out = {}
    for r in results:
        if r["baseline"] and r["n"]:
            out[r["track"]] = r
    return out


def table(results, targets, readme_dir, records_dir, tracks_with_plot):
    """The markdown between the markers. Depends only on the measured numbers, so reruns are identical."""
    base = baselines(results)
    rel = lambda path: os.path.relpath(path, readme_dir).replace(os.sep, "/")
    lines = []
    for track in sorted(set(targets) | {r["track"] for r in results}):
        rows = [r for r in results if r["track"] == track]
        target = targets.get(track)
        lines += [f"### {track}", ""]
        head = f"Target val loss: {'not set yet' if target is None else target}."
        if track in tracks_with_plot:
            png = rel(os.path.join(records_dir, f"{track}.png"))
            head += f" Plot: [{track}.png]({png})."
        lines += [head, ""]
        if not rows:
            lines += ["No records yet.", ""]
            continue
        lines += ["| date | record | n | val loss | p | time | time vs baseline | check |",
                  "|---|---|--:|---|--:|---|--:|---|"]
        b = base.get(track)
        for r in rows:
            m = RECORD_RE.fullmatch(r["name"])
            date, name = (m[1], m[2]) if m else ("-", r["name"])
            ratio = f"{r['time_mean'] / b['time_mean']:.3f}x" if b and r["n"] else "-"
            lines.append(f"| {date} | [{name}]({rel(r['dir'])}) | {r['n']} "
                         f"| {fmt(r['mean'], '.4f')} ± {fmt(r['std'], '.4f')} "
                         f"| {'-' if r['p'] is None else fmt(r['p'], '.2g')} "
                         f"| {fmt_time(r['time_mean'], r['time_std'])} | {ratio} "
                         f"| {'OK' if r['ok'] else 'FAIL'} |")
        lines.append("")
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
    record, the target as a horizontal line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for track in sorted({r["track"] for r in results if r["runs"]}):
        rows = [r for r in results if r["track"] == track and r["runs"]]
        longest = max(run["train_time_ms"] for r in rows for run in r["runs"]) / 1000
        unit, div = ("s", 1) if longest < 300 else ("min", 60)
        fig, ax = plt.subplots(figsize=(8, 5))
        for k, r in enumerate(rows):
            for j, run in enumerate(r["runs"]):
                # Step 0 is the untrained model (~10.8 for every run); it would only squash the axis.
                pts = [(t / 1000 / div, loss) for step, loss, t in run["vals"] if step > 0]
                ax.plot([x for x, _ in pts], [y for _, y in pts], color=f"C{k % 10}", lw=0.8, alpha=0.8,
                        label=r["name"] if j == 0 else None)
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


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", action="store_true", help="rewrite the records table in the README")
    ap.add_argument("--plot", action="store_true", help="draw records/<track>.png")
    ap.add_argument("--records", default=here, help="records folder (default: the folder of check.py)")
    ap.add_argument("--readme", help="README to update (default: README.md next to the records folder)")
    ap.add_argument("--target", action="append", metavar="TRACK=VALUE",
                    help="override a track's target (for tests); repeatable")
    args = ap.parse_args(argv)
    try:
        targets = parse_targets(args.target)
    except ValueError as e:
        ap.error(str(e))
    records = os.path.abspath(args.records)
    readme = args.readme or os.path.join(os.path.dirname(records), "README.md")

    results = [check_record(d, t, targets) for t, d in find_records(records)]
    for r in results:
        print(record_line(r))
    if not results:
        print(f"no records under {records}")
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
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
