"""The training log's format, in one place: how a log is laid out, parsed, and summed up.

A log (logs/<uuid>.txt, written by train_gpt.py) is a ruler line, the full source of the script
that ran, a ruler, the environment (an `hparams:` line with every setting, a `val_tokens:` count),
a ruler, then one step line per optimizer step and evaluation, a `peak_memory:` line and the
`final_val_loss:` line; what follows that (a generated sample) is free text. tools/check.py,
tools/compare.py, tools/submit.py and the tests read logs through this module only.

A record or experiment folder holds MANIFEST.sha256 (`sha256sum` format: `<hex>  <path>`) over its
logs: the *.txt in it and in its subfolders (a record's previous/, an experiment's arms), so an
edited, added or deleted log is named. It catches careless edits, not a forger who rewrites both.
"""

import hashlib
import math
import os
import re
import warnings

import numpy as np
from scipy import stats

RULER = "=" * 100
STEP_RE = re.compile(
    r"step:(\d+)/(\d+) (?:val_loss:(\S+)|train_loss:(\S+) lr:(\S+) grad_norm:(\S+)) "
    r"train_time:(\d+)ms step_avg:(\S+)ms"
)
HPARAMS_RE = re.compile(r"^hparams: (.*)$", re.M)
LOG_LINE_RE = re.compile(r"^log: (\S+)$", re.M)
VAL_COUNT_RE = re.compile(r" val_tokens:(\d+)")
END_RE = re.compile(r"^peak_memory:(\d+)MiB tokens_seen:\d+ tokens_per_s:(\d+)", re.M)
FINAL_RE = re.compile(r"final_val_loss:(\S+) train_time:(\d+)ms")


class LogError(ValueError):
    """A log that cannot be trusted; the message is one line."""


def read_text(path):
    # newline="" keeps \r\n etc. as they are, so "byte for byte" comparisons stay exact.
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def split_log(text):
    """(source, environment, body) of a log; LogError if the rulers are not where they belong."""
    parts = text.split(RULER + "\n", 3)
    if len(parts) < 4 or parts[0]:
        raise LogError(
            "not a log: expected a ruler line, the source, a ruler, the environment, a ruler"
        )
    return parts[1], parts[2], parts[3]


def _decimals(s):
    return len(s.split(".")[1]) if "." in s else 0


def _number(s, what, step):
    try:
        return float(s)
    except ValueError:
        raise LogError(f"bad {what} {s!r} at step {step}") from None


def parse_log(text):
    """Parse one log. Returns a dict: source, env, hparams, val_predictions, steps (tuple of the step
    lines), train and vals (lists of (step, loss, train_time_ms)), total, val_loss and train_time_ms
    (of the final val line), peak_mib and tokens_per_s (0 if not logged), log_line (the path its
    `log:` line names, None if none). Raises LogError for
    anything malformed, unfinished or inconsistent."""
    source, env, body = split_log(text)
    steps, train, vals, final = [], [], [], None
    prev = {"step": -1, "time": -1, "train": -1, "val": -1}
    total = loss_str = None
    for line in body.split("\n"):
        m = STEP_RE.fullmatch(line)
        if m is None:
            # Anything else may be free text (warnings, a sample), but not a near-miss step line:
            # that would let an edited line silently drop out of the checks.
            if line.startswith("step:"):
                raise LogError(f"malformed step line {line[:60]!r}")
            final = FINAL_RE.fullmatch(line)
            if final:
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
            vals.append((step, _number(m[3], "val_loss", step), time_ms))
            loss_str = m[3]
        else:
            train.append((step, _number(m[4], "train_loss", step), time_ms))
    if not steps:
        raise LogError("no step lines")
    if not vals or vals[-1][0] != total:
        raise LogError(
            f"unfinished run: last val_loss at step {vals[-1][0] if vals else None}, not {total}"
        )
    if final is None:
        raise LogError("no final_val_loss line")
    _, loss, time_ms = vals[-1]
    if not math.isfinite(loss):
        raise LogError(f"final val_loss is {loss_str}")
    # The summary must say what the step line says, up to the coarser of the two printed precisions.
    claimed = final[1]
    try:
        ok = (
            abs(float(claimed) - loss)
            <= 0.5 * 10 ** -min(_decimals(claimed), _decimals(loss_str)) + 1e-12
        )
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
    end = END_RE.search(body)
    log_line = LOG_LINE_RE.search(env)
    return {
        "source": source,
        "env": env,
        "steps": tuple(steps),
        "total": total,
        "hparams": dict(kv.split("=", 1) for kv in hp[1].split(" ") if "=" in kv),
        "val_predictions": int(count[1]),
        "train": train,
        "vals": vals,
        "val_loss": loss,
        "train_time_ms": time_ms,
        "peak_mib": int(end[1]) if end else 0,
        "tokens_per_s": int(end[2]) if end else 0,
        "log_line": log_line[1] if log_line else None,
    }


def read_log(path):
    """parse_log of a file; unreadable files raise LogError too."""
    try:
        return parse_log(read_text(path))
    except (OSError, UnicodeDecodeError) as e:
        raise LogError(f"unreadable ({e.__class__.__name__})") from None


MANIFEST = "MANIFEST.sha256"


def manifest_logs(folder):
    """The logs a folder's manifest covers: *.txt in it and in its subfolders, as sorted relative paths."""
    out = []
    for sub in [""] + sorted(
        d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))
    ):
        out += [
            os.path.join(sub, f) if sub else f
            for f in sorted(os.listdir(os.path.join(folder, sub)))
            if f.endswith(".txt")
        ]
    return sorted(p.replace(os.sep, "/") for p in out)


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_manifest(folder):
    """Write folder/MANIFEST.sha256 from its logs as they are; returns its path."""
    path = os.path.join(folder, MANIFEST)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.writelines(f"{sha256_of(os.path.join(folder, p))}  {p}\n" for p in manifest_logs(folder))
    return path


def manifest_errors(folder, name):
    """One line per log of folder that is edited, missing or added since its manifest (name: the folder
    as the user should type it in the fix)."""
    fix = f"python tools/check.py --write-manifest {name}"
    try:
        text = read_text(os.path.join(folder, MANIFEST))
    except (OSError, UnicodeDecodeError):
        return [f"no {MANIFEST}: the logs' sha256 ({fix} writes it from the logs as they are)"]
    listed = {}
    for i, line in enumerate(text.splitlines(), 1):
        digest, sep, path = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
            return [f"{MANIFEST}: line {i} is not '<sha256>  <path>' ({fix} rewrites it)"]
        listed[path] = digest
    present = manifest_logs(folder)
    out = [
        f"{p}: in the manifest but missing (restore it, e.g. git checkout {name}/{p})"
        for p in sorted(listed)
        if p not in present
    ]
    for p in present:
        if p not in listed:
            out.append(f"{p}: not in the manifest (delete it, or if it is a real run, {fix})")
        elif sha256_of(os.path.join(folder, p)) != listed[p]:
            out.append(
                f"{p}: edited since the manifest (restore it, e.g. git checkout {name}/{p}; logs stay unedited)"
            )
    return out


def stats_of(runs):
    """(mean, std) of the final val loss and of the training seconds over runs; nan where undefined."""
    losses, times = [r["val_loss"] for r in runs], [r["train_time_ms"] / 1000 for r in runs]
    mean = lambda xs: float(np.mean(xs)) if xs else math.nan
    std = lambda xs: float(np.std(xs, ddof=1)) if len(xs) > 1 else math.nan
    return mean(losses), std(losses), mean(times), std(times)


def welch_p(runs, base, key):
    """Welch's two-sided t-test p-value of runs[key] against base[key]."""
    with warnings.catch_warnings():  # identical values give nan with a warning
        warnings.simplefilter("ignore")
        return float(
            stats.ttest_ind([r[key] for r in runs], [r[key] for r in base], equal_var=False).pvalue
        )


def summary(arms, results):
    """The table of a comparison: one line per arm (arms: (name, ...) pairs; results: name -> parsed
    runs) with mean ± std of loss and time, tokens/s, peak memory, Welch p against the first arm."""
    lines = [
        f"{'arm':<16} {'n':>2}  {'val loss':<17} {'p(loss)':>8}  {'time (s)':<15} {'p(time)':>8}  "
        f"{'tokens/s':>9}  {'peak MiB':>8}"
    ]
    base = results.get(arms[0][0], [])
    for name, _ in arms:
        runs = results.get(name, [])
        if not runs:
            lines.append(f"{name:<16} {0:>2}  no finished runs")
            continue
        loss, loss_std, secs, secs_std = stats_of(runs)
        p_loss = p_time = "-"
        if name != arms[0][0] and len(runs) > 1 and len(base) > 1:
            p_loss, p_time = (
                f"{welch_p(runs, base, 'val_loss'):.2g}",
                f"{welch_p(runs, base, 'train_time_ms'):.2g}",
            )
        std = lambda x, spec: "-" if math.isnan(x) else format(x, spec)
        lines.append(
            f"{name:<16} {len(runs):>2}  {loss:.4f} ± {std(loss_std, '.4f'):<8} {p_loss:>8}  "
            f"{secs:7.1f} ± {std(secs_std, '.1f'):<5} {p_time:>8}  "
            f"{np.mean([r['tokens_per_s'] for r in runs]):9.0f}  {max(r['peak_mib'] for r in runs):8d}"
        )
    return "\n".join(lines)
