"""The tracks' rules, in one place: each track's target val loss, the data and val set that make two
runs the same competition, and the p-value a claim needs (for its val loss and for its speed-up).
Anything else is the entrant's to change.
"""

# Target val loss per track. A record named *_Baseline defines its track's target; every other
# record claims it. None = not fixed yet: such records can only have their logs verified.
# cpu_shakespeare: the mean final val loss of the runs of
# records/cpu_shakespeare/2026-11-25_Baseline (nanoGPT's CPU recipe), rounded up to 0.01. Fixed on
# 2026-11-25; it never moves.
TARGETS = {"8xh100_fineweb": 3.28, "cpu_shakespeare": 4.97}
# Targets of records/<track>/retired/: 5.97 came from a Baseline of this project's own making (360
# steps), which nanoGPT's CPU recipe passes in its first 210 steps; see that folder's README.
RETIRED_TARGETS = {"cpu_shakespeare": 5.97}
# A claim needs p < P_MAX twice: its mean val loss below the target (one-sided one-sample t-test)
# and, a record but a Baseline, its mean training time below that of the previous script run beside
# it (one-sided Welch t-test): 40.0 +- 47.2 s against 63 s at n=2 is no speed-up.
P_MAX = 0.01
# What makes two runs the same competition: the logged hyperparameters that fix the data, and the
# number of val predictions the script reports.
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


def parse_targets(overrides):
    """TARGETS with --target TRACK=VALUE overrides (VALUE 'none' unsets); raises ValueError."""
    targets = dict(TARGETS)
    for o in overrides or []:
        track, sep, value = o.partition("=")
        if not sep or not track:
            raise ValueError(f"--target {o!r}: expected TRACK=VALUE")
        targets[track] = None if value.lower() == "none" else float(value)
    return targets
