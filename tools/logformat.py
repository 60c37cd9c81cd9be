"""The training log's format, in one place: how a log is laid out and parsed.

A log (logs/<uuid>.txt, written by train_gpt.py) is a ruler line, the full source of the script
that ran, a ruler, the environment (an `hparams:` line with every setting, a `val_tokens:` count, a
`log:` line naming the file), a ruler, then one step line per optimizer step and evaluation (STEP_RE
reads every one), a `peak_memory:` line and the `final_val_loss:` line; what follows that is free
text (the older records' logs hold a generated sample there). Every tool and test reads logs
through this module.
"""

import math
import re

from layout import read_text

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
    """Parse one log. Returns a dict: source, env, hparams, val_predictions, steps (tuple of the
    step lines), train and vals (lists of (step, loss, train_time_ms)), total, val_loss and
    train_time_ms (of the final val line), peak_mib and tokens_per_s (0 if not logged), log_line
    (the path its `log:` line names, None if none). Raises LogError for anything malformed,
    unfinished or inconsistent."""
    source, env, body = split_log(text)
    steps, train, vals, final = [], [], [], None
    prev = {"step": -1, "time": -1, "train": -1, "val": -1}
    total = loss_str = None
    for line in body.split("\n"):
        m = STEP_RE.fullmatch(line)
        if m is None:
            # Anything else may be free text (warnings), but not a near-miss step line:
            # that would let an edited line silently drop out of the checks.
            if line.startswith("step:"):
                raise LogError(f"malformed step line {line[:60]!r}")
            final = FINAL_RE.fullmatch(line)
            if final:
                break  # what follows is free text (older logs: a sample), even step-like lines
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
