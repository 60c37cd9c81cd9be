"""The plots, drawn from parsed logs (tools/logformat.py): an experiment's compare.png and a track's
records/<track>.png. Each answers one question, from the same numbers the tables print.

compare.png, "which arm won, and by how much?": val loss per arm against steps (left) and against
training time (middle): each run a faint line, the mean over the runs a line with dots, the range
over the runs a band; the final val loss of every run per arm (right), the mean a bar, on an axis of
the final losses alone, where arms 0.01 apart can be told apart. The legend gives each arm's n, mean
± std of the final val loss and mean training time, and Welch's two-sided p of each against the
first arm (tools/stats.py, as in the README's table). Train loss is not drawn: one batch's loss is
noisy, and the val loss is what a claim is about. The target of the logs' track (tools/tracks.py)
is a dotted line where it falls on an axis, else a note at the edge it lies beyond.

The y range of the curves (y_limits) runs from the lowest val loss to the highest after each
run's first evaluation, and on up to the highest of all if that at most doubles the span (CUT).
Early evaluations are where every arm is alike (~5.6-5.8 at step 30-110 on the CPU track, against
final losses 0.01-0.1 apart), so the axis must not stretch for them without limit; in this
repository's experiments they add 1.03-1.87x the span, so every val point is drawn. An untrained
evaluation (step 0, ~10.8) would take ~85% of the axis: such points stay above it, each mean point
a triangle on the top edge, the range of their values written there. The third panel is the zoom
where final differences of 0.01 show.

records/<track>.png, "how much faster has each record made the track, measured fairly?": a
record's training time as a ratio to its previous/ script, run beside it on the same machine in the
same session (mean over mean, with a 95% interval: see time_ratio), chained (multiplied) from the
first script of the chain, on a log axis, one point per record, its date and its own ratio under
it. Times from different machines are never on one axis: only ratios measured within a session
are. The chain starts at the Baseline when the first record's previous/ ran the Baseline's script;
else at that previous/ script (its own point), and the Baseline is named in a note. A record whose
previous/ is not the script of the point before it starts a new chain. A record whose check failed
is a red cross. Beside it: the val curves of the newest record and of its previous/ script, both
from the one session, against training time.

Deterministic: the same logs give the same PNG bytes (matplotlib's default style whatever the local
matplotlibrc, a fixed size and dpi, a palette PNG without metadata), and a file is rewritten only if
its bytes change (write_if_changed), so an untouched folder's PNG keeps its bytes and its mtime.
"""

import io
import math
import os
import uuid

import numpy as np
from scipy import stats as scipy_stats

import tracks
from stats import faster_p, stats_of, welch_p

DPI = 100
CUT = 2.0  # the first evaluations may take the y axis up to CUT x the span of the later ones
COLORS = 64  # palette size of a PNG: faint lines and bands need more than a handful


def _pyplot():
    import matplotlib  # imported when a plot is drawn: it costs a second

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(plt, n):
    if n <= 10:
        return [f"C{k}" for k in range(n)]
    return [plt.cm.tab20(k % 20) for k in range(n)]


def mean_curve(runs):
    """The val curve of the runs of one script: (steps, mean seconds, mean loss, min loss, max loss)
    as arrays over the evaluation steps all runs share."""
    steps = sorted(set.intersection(*[{s for s, _, _ in r["vals"]} for r in runs]))
    at = [{s: (y, t) for s, y, t in r["vals"]} for r in runs]
    loss = np.array([[a[s][0] for s in steps] for a in at])
    secs = np.array([[a[s][1] for s in steps] for a in at]) / 1000
    return np.array(steps), secs.mean(0), loss.mean(0), loss.min(0), loss.max(0)


def y_limits(groups):
    """The y range of val curves (groups: lists of runs): from the lowest val loss to the highest
    after each run's first evaluation, extended to the highest of all if that at most doubles the
    span (CUT); a 5% margin."""
    runs = [r for g in groups for r in g]
    every = [y for r in runs for _, y, _ in r["vals"]]
    later = [y for r in runs for _, y, _ in r["vals"][1:]] or every
    lo, hi, top = min(every), max(every), max(later)
    if hi - lo <= CUT * (top - lo):
        top = hi
    pad = 0.05 * (top - lo) or 0.05
    return lo - pad, top + pad


def _target(ax, target, limits):
    """The target as a dotted line if it lies within limits, else a note at the edge beyond which
    it lies."""
    if target is None:
        return
    lo, hi = limits
    if lo <= target <= hi:
        ax.axhline(target, color="k", ls=":", lw=1.2, zorder=1)
        ax.annotate(
            f"target {target:g}",
            (0, target),
            xycoords=("axes fraction", "data"),
            xytext=(3, 2),
            textcoords="offset points",
            va="bottom",
            fontsize=7,
            bbox=dict(fc="white", ec="none", alpha=0.7, pad=0.5),
        )
    else:
        below = target < lo
        ax.annotate(
            f"target {target:g} {'below' if below else 'above'} this axis",
            (1, 0 if below else 1),
            xycoords="axes fraction",
            xytext=(-3, 3 if below else -3),
            textcoords="offset points",
            ha="right",
            va="bottom" if below else "top",
            fontsize=7,
        )


def _hidden(ax, points, limits):
    """Mean val points above the top of the axis: a triangle on the top edge at each, and the range
    of their values written once."""
    above = [(x, y) for x, y in points if y > limits[1]]
    if not above:
        return
    for x, _ in above:
        ax.plot(x, limits[1], "^", color="0.4", ms=5, clip_on=False, zorder=5)
    low, high = min(y for _, y in above), max(y for _, y in above)
    ax.annotate(
        f"▲ off the top: {low:.2f}" + (f"-{high:.2f}" if high > low else ""),
        (0, 1),
        xycoords="axes fraction",
        xytext=(14, -3),
        textcoords="offset points",
        va="top",
        fontsize=7,
        color="0.3",
    )


def _curves(ax, runs, color, x):
    """Val loss of runs against x ("step" or "time"): each run faint, the range over the runs a
    band, the mean a line with dots. Returns the mean points (x, loss)."""
    k = 0 if x == "step" else 2
    for r in runs:
        xs = [p[k] / (1 if k == 0 else 1000) for p in r["vals"]]
        ax.plot(xs, [p[1] for p in r["vals"]], color=color, lw=0.7, alpha=0.35)
    steps, secs, mean, low, high = mean_curve(runs)
    xs = steps if x == "step" else secs
    if len(runs) > 1:
        ax.fill_between(xs, low, high, color=color, alpha=0.18, lw=0)
    ax.plot(xs, mean, "o-", color=color, lw=1.6, ms=3)
    return list(zip(xs, mean))


def _track_targets(runs, targets):
    """The targets of the tracks the runs' logs name (their `track` hyperparameter)."""
    names = sorted({r["hparams"].get("track") for r in runs} - {None})
    return [targets[t] for t in names if targets.get(t) is not None]


LEGEND_TITLE = (
    "arm: n runs, final val loss (mean ± std), mean training time; p: Welch's t-test against the "
    "first arm"
)


def arm_label(name, runs, base):
    """An arm's legend entry: n, mean ± std of the final val loss and the mean training time, each
    with Welch's two-sided p against the first arm's runs (base; None for the first arm), where both
    have 2 runs or more."""
    if not runs:
        return f"{name}: no finished runs"
    loss, loss_std, secs, secs_std = stats_of(runs)
    both = base is not None and len(runs) > 1 and len(base) > 1
    text = f"{name}: n={len(runs)}, {loss:.4f}"
    text += "" if math.isnan(loss_std) else f" ± {loss_std:.4f}"
    text += f" (p={welch_p(runs, base, 'val_loss'):.2g})" if both else ""
    text += f", {secs:.1f} s"
    text += "" if math.isnan(secs_std) else f" ± {secs_std:.1f}"
    text += f" (p={welch_p(runs, base, 'train_time_ms'):.2g})" if both else ""
    return text + (" (the first arm)" if base is None else "")


def comparison(arms, results, path, targets=None):
    """compare.png of an experiment (see the module's docstring): arms are (name, ...) pairs, the
    first the base; results map a name to its parsed runs; targets default to tools/tracks.py's."""
    plt = _pyplot()
    targets = tracks.TARGETS if targets is None else targets
    drawn = [(k, name, results.get(name) or []) for k, (name, _) in enumerate(arms)]
    groups = [runs for _, _, runs in drawn if runs]
    colors = _colors(plt, len(arms))
    ncol = 1 if len(arms) <= 4 else 2
    legend_in = 0.18 * math.ceil(len(arms) / ncol) + 0.35
    with plt.style.context("default"):
        fig = plt.figure(figsize=(13, 4.4 + legend_in), dpi=DPI)
        grid = fig.add_gridspec(1, 3, width_ratios=(4, 4, 2.4), wspace=0.22)
        by_step = fig.add_subplot(grid[0])
        by_time = fig.add_subplot(grid[1], sharey=by_step)
        finals = fig.add_subplot(grid[2])
        handles, labels, points = [], [], {"step": [], "time": []}
        base = results.get(arms[0][0]) or None
        for k, name, runs in drawn:
            labels.append(arm_label(name, runs, None if k == 0 else base or []))
            (handle,) = finals.plot([], [], "o-", color=colors[k], lw=1.6, ms=3)
            handles.append(handle)
            if not runs:
                continue
            for ax, x in ((by_step, "step"), (by_time, "time")):
                points[x] += _curves(ax, runs, colors[k], x)
            losses = [r["val_loss"] for r in runs]
            finals.plot([k] * len(runs), losses, "o", color=colors[k], ms=4, alpha=0.55)
            finals.plot([k - 0.3, k + 0.3], [np.mean(losses)] * 2, color=colors[k], lw=2.2)
        all_runs = [r for runs in groups for r in runs]
        limits = y_limits(groups) if groups else (0, 1)
        by_step.set_ylim(*limits)
        for target in _track_targets(all_runs, targets):
            _target(by_step, target, limits)
            _target(by_time, target, limits)
        for ax, x in ((by_step, "step"), (by_time, "time")):
            _hidden(ax, points[x], limits)
            ax.grid(alpha=0.3)
        by_step.set(xlabel="step", ylabel="val loss", title="val loss against steps")
        by_time.set(xlabel="training time (s)", title="against training time")
        finals.set(title="final val loss, each run", xticks=range(len(arms)))
        finals.set_xticklabels([name for name, _ in arms], rotation=40, ha="right", fontsize=7)
        finals.set_xlim(-0.6, len(arms) - 0.4)
        if all_runs:
            ys = [r["val_loss"] for r in all_runs]
            pad = 0.15 * (max(ys) - min(ys)) or 0.01
            finals.set_ylim(min(ys) - pad, max(ys) + pad)
            for target in _track_targets(all_runs, targets):
                _target(finals, target, finals.get_ylim())
        finals.grid(alpha=0.3, axis="y")
        fig.legend(
            handles,
            labels,
            loc="lower left",
            bbox_to_anchor=(0.05, 0.01),
            ncol=ncol,
            fontsize=8,
            frameon=False,
            title=LEGEND_TITLE,
            title_fontsize=8,
            alignment="left",
        )
        height = fig.get_figheight()
        fig.subplots_adjust(left=0.055, right=0.99, top=1 - 0.35 / height)
        fig.subplots_adjust(bottom=(legend_in + 0.7) / height)
        save_png(fig, path)
        plt.close(fig)


def time_ratio(runs, previous):
    """A record's mean training time over the mean of its previous/ script's runs beside it, with
    a 95% interval: the delta method on the log of the ratio (variance s^2 / (n m^2) per side) and
    Student's t at the Welch-Satterthwaite degrees of freedom. Returns a dict: ratio, lo and hi
    (nan without 2 runs on each side), var (of the log ratio), parts [(variance, dof)] to chain."""
    parts = []
    for side in (runs, previous):
        secs = np.array([r["train_time_ms"] / 1000 for r in side])
        var = np.var(secs, ddof=1) / (len(secs) * secs.mean() ** 2) if len(secs) > 1 else math.nan
        parts.append((float(var), len(secs) - 1))
    ratio = stats_of(runs)[2] / stats_of(previous)[2]
    return dict(ratio=ratio, parts=parts, **_interval(math.log(ratio), parts))


def _interval(log_ratio, parts):
    """lo, hi (95%) and var of exp(log_ratio) whose log has the variance components parts."""
    var = sum(v for v, _ in parts)
    if math.isnan(var) or var == 0:
        return dict(lo=math.nan, hi=math.nan, var=var)
    dof = var**2 / sum(v**2 / d for v, d in parts if v > 0)
    half = scipy_stats.t.ppf(0.975, dof) * math.sqrt(var)
    return dict(lo=math.exp(log_ratio - half), hi=math.exp(log_ratio + half), var=var)


def progression(results, track):
    """The records plot's points of a track (verify.check_all's results; retired records left out),
    in record order: dicts with name, date, kind ("baseline"; "anchor", the previous/ script that
    starts a chain; "record"), chain (its number), value (the time relative to the chain's first
    script), lo and hi (its 95% interval), link (a record's time_ratio, else None) and ok."""
    rows = [r for r in results if r["track"] == track and not r["retired"] and r["runs"]]
    points, chain, parts, last = [], 0, [], None  # last: the source of the chain's last point
    for r in rows:
        date, name = r["name"][:10], r["name"][11:]
        point = dict(name=name, date=date, ok=r["ok"], link=None, lo=math.nan, hi=math.nan)
        source = r["runs"][0]["source"]
        if r["baseline"]:
            chain, parts, last = chain + 1, [], source
            points.append(dict(point, kind="baseline", chain=chain, value=1.0))
            continue
        if not r["previous"]:
            last = None  # no link: the chain ends here; the record gets no point
            continue
        link = time_ratio(r["runs"], r["previous"])
        if r["previous"][0]["source"] != last:
            chain, parts = chain + 1, []
            anchor = dict(point, name=f"{name}'s previous/", ok=True, kind="anchor")
            points.append(dict(anchor, chain=chain, value=1.0))
        base = next(p["value"] for p in reversed(points) if p["chain"] == chain)
        parts = parts + link["parts"]
        value = base * link["ratio"]
        points.append(
            dict(point, kind="record", chain=chain, value=value, link=link)
            | {k: v for k, v in _interval(math.log(value), parts).items() if k != "var"}
        )
        last = source
    # A Baseline no record links to is no point of a chain: it gets a note instead.
    linked = {p["chain"] for p in points if p["kind"] == "record"}
    return [p for p in points if p["chain"] in linked]


def _progression_panel(ax, points, notes):
    """The chain of time ratios (progression's points) on a log axis: each record a dot with its
    chained 95% interval, named beside it; under it its date and its own ratio to its previous/."""
    colors = ["C0", "C2", "C4", "C5"]
    for chain in sorted({p["chain"] for p in points}):
        xs = [k for k, p in enumerate(points) if p["chain"] == chain]
        color = colors[(chain - 1) % len(colors)]
        ax.plot(xs, [points[k]["value"] for k in xs], "-", color=color, lw=1.2, alpha=0.6)
        for k in xs:
            p = points[k]
            if p["kind"] != "record":
                ax.plot(k, 1, "s", color="0.4", ms=6, mfc="white", mew=1.5)
                name = "Baseline" if p["kind"] == "baseline" else p["name"].replace("'s ", "'s\n")
                ax.annotate(
                    name, (k, 1), xytext=(6, 0), textcoords="offset points", fontsize=7, va="center"
                )
                continue
            value, lo, hi = p["value"], p["lo"], p["hi"]
            err = None if math.isnan(lo) else [[value - lo], [hi - value]]
            ax.errorbar(k, value, yerr=err, fmt="o", color=color, ms=5, capsize=3, lw=1.2)
            if not p["ok"]:
                ax.plot(k, value, "x", color="red", ms=11, mew=2.5, zorder=5)
            text = f"{p['name']}{' (check FAILED)' if not p['ok'] else ''}\n"
            text += f"{value:.3g} ({1 / value:.1f}x faster)"
            ax.annotate(
                text,
                (k, value),
                xytext=(6, 0),
                textcoords="offset points",
                fontsize=6.5,
                va="center",
                color="red" if not p["ok"] else "black",
            )
    labels = []
    for p in points:
        link = p["link"]
        if link is None:
            labels.append(f"{p['date']}\nstart")
            continue
        interval = "" if math.isnan(link["lo"]) else f"\n({link['lo']:.2f}-{link['hi']:.2f})"
        labels.append(f"{p['date']}\n×{link['ratio']:.3f}{interval}")
    ax.set_xticks(range(len(points)))
    ax.set_xticklabels(labels, fontsize=6)
    ax.set_xlim(-0.4, len(points) + 0.6)  # room for the last record's name
    ax.set_yscale("log")
    values = [p["value"] for p in points] + [p["lo"] for p in points if not math.isnan(p["lo"])]
    low = min(values, default=1) / 1.6
    ax.set_ylim(low, 1.6)
    ax.set_yticks([t for t in (1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001) if t > low])
    ax.yaxis.set_major_formatter(lambda y, _: f"{y:g}")
    ax.yaxis.set_minor_formatter(lambda y, _: "")
    ax.set_ylabel("training time / the chain's first script's (log)", fontsize=8)
    ax.set_xlabel("a record's date; its time / its previous/'s (95% interval)", fontsize=7)
    ax.grid(alpha=0.3, which="both", axis="y")
    ax.tick_params(axis="y", labelsize=7)
    if not points:
        notes = [*notes, "no record measured beside its previous/ yet"]
    if notes:
        ax.annotate(
            "\n".join(notes),
            (0.02, 0.02),
            xycoords="axes fraction",
            fontsize=6.5,
            color="0.3",
            va="bottom",
        )


def records(results, targets, records_dir):
    """records/<track>.png for every track with records (verify.check_all's results), as the
    module's docstring says: the chain of time ratios, and the newest record's val curves beside
    its previous/ script's."""
    plt = _pyplot()
    for track in sorted({r["track"] for r in results if r["runs"] and not r["retired"]}):
        rows = [r for r in results if r["track"] == track and r["runs"] and not r["retired"]]
        points = progression(results, track)
        notes = [
            f"{r['name']}: not on the chain (no record's\nprevious/ ran its script)"
            for r in rows
            if r["baseline"] and not any(p["kind"] == "baseline" for p in points)
        ]
        newest = rows[-1]
        with plt.style.context("default"):
            fig = plt.figure(figsize=(8, 5), dpi=DPI)
            grid = fig.add_gridspec(1, 2, width_ratios=(1.7, 1), wspace=0.22)
            chain, curves = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
            _progression_panel(chain, points, notes)
            chain.set_title(
                f"{track}: record times, each measured beside its previous/", fontsize=9
            )
            groups = [
                (newest["name"], newest["runs"], "C3"),
                ("its previous/, run beside it", newest["previous"], "0.45"),
            ]
            handles, labels = [], []
            for label, runs, color in groups:
                if not runs:
                    continue
                _curves(curves, runs, color, "time")
                loss, loss_std, secs, secs_std = stats_of(runs)
                label += f", n={len(runs)}\n{loss:.4f}"
                label += "" if math.isnan(loss_std) else f" ± {loss_std:.4f}"
                label += f" in {secs:.1f}" + ("" if math.isnan(secs_std) else f" ± {secs_std:.1f}")
                label += " s"
                if runs is newest["runs"] and len(runs) > 1 and len(newest["previous"]) > 1:
                    p = faster_p(runs, newest["previous"])
                    label += f"\nfaster: p={p:.2g} (one-sided Welch)"
                handles.append(curves.plot([], [], "o-", color=color, lw=1.6, ms=3)[0])
                labels.append(label)
            limits = y_limits([runs for _, runs, _ in groups if runs])
            curves.set_ylim(*limits)
            _target(curves, targets.get(track), limits)
            curves.set_title("the newest record's val loss", fontsize=9)
            curves.set_xlabel("training time (s), one session", fontsize=8)
            curves.set_ylabel("val loss", fontsize=8)
            curves.tick_params(labelsize=7)
            curves.grid(alpha=0.3)
            curves.legend(handles, labels, fontsize=6.5, loc="upper right", frameon=False)
            fig.subplots_adjust(left=0.08, right=0.98, top=0.94, bottom=0.2)
            save_png(fig, os.path.join(records_dir, f"{track}.png"))
            plt.close(fig)


def png_bytes(fig):
    """fig as an 8-bit palette PNG (COLORS colours: a fraction of the bytes, which git keeps
    forever), drawn at its own size and dpi, without metadata: the same figure gives the same
    bytes."""
    from PIL import Image  # matplotlib's own dependency

    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    out = io.BytesIO()
    rgb.quantize(colors=COLORS, method=Image.Quantize.FASTOCTREE).save(out, "PNG", optimize=True)
    return out.getvalue()


def write_if_changed(path, data):
    """Write bytes to path unless it holds them already (then it is left alone, its mtime too),
    through a file beside it renamed over it: path holds the old bytes or the new, never a part.
    Returns whether it wrote; raises OSError, leaving no temporary file."""
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except FileNotFoundError:
        pass
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with open(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


def save_png(fig, path):
    """fig as png_bytes at path, written only if they differ from the file's; returns whether it
    wrote."""
    return write_if_changed(path, png_bytes(fig))
