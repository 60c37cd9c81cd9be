"""A run's verdict: its final val loss against its track's target (tools/tracks.py).

    python tools/verdict.py logs/<uuid>.txt

One run is not a record: a record needs several runs, their mean below the target with p < 0.01
(README, "Submitting a record"). ./run.sh ends with this line.
"""

import argparse
import sys

import logformat
import tracks


def verdict(path):
    try:
        log = logformat.read_log(path)
    except logformat.LogError as e:
        return f"verdict: {path}: {e}; no verdict for a run that did not finish"
    track = log["hparams"].get("track")
    target = tracks.TARGETS.get(track)
    loss, seconds = log["val_loss"], log["train_time_ms"] / 1000
    if target is None:
        return f"verdict: final val loss {loss:.4f}; the {track} track has no target"
    rules = tracks.RULES.get(track, {}).get("hparams", {})
    changed = [name for name, value in rules.items() if log["hparams"].get(name) != value]
    if changed:
        return f"verdict: final val loss {loss:.4f}, not on {track}'s data ({changed[0]} differs)"
    if loss <= target:
        return (
            f"verdict: final val loss {loss:.4f} reached the {track} target {target} "
            f"(by {target - loss:.4f}) in {seconds:.1f} s of training"
        )
    return (
        f"verdict: final val loss {loss:.4f} did not reach the {track} target {target} "
        f"({loss - target:.4f} above) in {seconds:.1f} s of training"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", help="a training log, logs/<uuid>.txt")
    line = verdict(ap.parse_args(argv).log)
    print(line)
    return int(not line.startswith("verdict: final val loss"))  # 1: no finished run to judge


if __name__ == "__main__":
    sys.exit(main())
