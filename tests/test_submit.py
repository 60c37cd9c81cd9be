"""tools/submit.py's refusals (issue 29, item 4 and the read-only records folder of item 6), on
logs written here in the log format (tools/logformat.py) with the cpu_shakespeare track's rules: no
run of train_gpt.py, so each test takes milliseconds. One test uses a copy of the real records.
"""

import errno
import io
import os
import shutil
import uuid
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

import layout
import manifest
import submit
from logformat import RULER
from stats import fmt_p

REPO = Path(__file__).resolve().parent.parent
TRACK = "cpu_shakespeare"
HPARAMS = (
    f"track={TRACK} train_files=data/shakespeare/shakespeare_train_*.bin "
    "val_files=data/shakespeare/shakespeare_val_*.bin val_tokens=0"
)


def write_log(folder, source, seed, loss, ms):
    """A finished run's log, as train_gpt.py writes it: final val loss `loss`, `ms` of training."""
    name = f"{uuid.uuid4()}.txt"
    lines = [
        RULER,
        source + RULER,
        f"hparams: {HPARAMS} seed={seed}",
        "params:1 flops_per_token:6 peak_flops:1e+09 (given) train_shards:1 val_tokens:155120",
        f"log: logs/{name}",
        RULER,
        f"step:1/2 train_loss:{loss + 1:.4f} lr:0.01 grad_norm:1.0 train_time:{ms // 2}ms "
        f"step_avg:{ms / 2:.2f}ms",
        f"step:2/2 val_loss:{loss:.4f} train_time:{ms}ms step_avg:{ms / 2:.2f}ms",
        f"peak_memory:100MiB tokens_seen:4096 tokens_per_s:{4096 * 1000 // ms} mfu:1.00%",
        f"final_val_loss:{loss:.4f} train_time:{ms}ms",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder / name


def runs(folder, source, losses, times_ms, seed=1):
    return [
        write_log(folder, source, seed + i, loss, ms)
        for i, (loss, ms) in enumerate(zip(losses, times_ms))
    ]


FAST = dict(losses=[4.90, 4.91, 4.92], times_ms=[40_000, 40_500, 41_000])
SLOW = dict(losses=[4.90, 4.91, 4.92], times_ms=[60_000, 60_500, 61_000])


def make_record(track_dir, name, source, previous_source=None):
    """A record folder that passes the check: its script, fast runs, and previous/ with slow runs of
    previous_source (a record's script), unless a Baseline."""
    d = track_dir / name
    d.mkdir(parents=True)
    (d / "train_gpt.py").write_text(source)
    runs(d, source, **FAST)
    (d / "README.md").write_text(f"# {name}\n")
    if previous_source is not None:
        runs(d / "previous", previous_source, **SLOW, seed=11)
    manifest.write_manifest(d)
    return d


@pytest.fixture
def records(tmp_path):
    """records/cpu_shakespeare with a Baseline (S0) and two records (S1 beats S0, S2 beats S1)."""
    track = tmp_path / "records" / TRACK
    make_record(track, "2025-01-01_Baseline", "# S0\n")
    make_record(track, "2025-01-02_One", "# S1\n", "# S0\n")
    make_record(track, "2025-01-03_Two", "# S2\n", "# S1\n")
    return tmp_path / "records"


def tree(path):
    return sorted((p.relative_to(path), p.is_file() and p.read_bytes()) for p in path.rglob("*"))


def call(records, *args, target=None):
    """submit.main in-process; returns (exit code, stdout, stderr)."""
    argv = [*map(str, args), "--records", str(records)]
    if target is not None:
        argv.append(f"--target={TRACK}={target}")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = submit.main(argv)
    return code, out.getvalue(), err.getvalue()


def refused(records, *args, target=None):
    """A refusal: exit 2, one line on stderr ending in 'nothing written', the records untouched."""
    before = tree(records)
    code, out, err = call(records, *args, target=target)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("refused: ") and err.endswith("; nothing written\n"), err
    assert tree(records) == before
    return err


def test_a_good_record_is_written(records, tmp_path):
    new = runs(tmp_path / "logs", "# S3\n", **FAST, seed=21)
    prev = runs(tmp_path / "logs", "# S2\n", **SLOW, seed=31)
    code, out, err = call(
        records, TRACK, "Three", *new, "--previous", *prev, "--date", "2025-01-04"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"{TRACK}/2025-01-04_Three  n=3") and lines[0].endswith(
        "(0.669x the time of the previous script beside it)"
    )
    assert lines[1].startswith("claim: val loss 4.9100 ± 0.0100 against the target 4.97: p = ")
    assert "train time 40.5 ± 0.5 s against 60.5 ± 0.5 s of the previous script (0.669x" in lines[1]
    readme = (records / TRACK / "2025-01-04_Three" / "README.md").read_text()
    assert "- previous script, run beside it: n = 3, train time = 60.5 ± 0.5 s; 0.669x" in readme


def test_a_second_baseline_is_refused(records, tmp_path):
    new = runs(tmp_path / "logs", "# B\n", [7.91, 7.92], [1000, 1100])
    err = refused(records, TRACK, "Baseline", *new, "--date", "2025-01-04")
    assert f"{TRACK} has its Baseline already (2025-01-01_Baseline)" in err
    assert "a second one would move it" in err


@pytest.mark.parametrize(
    "date, previous, message",
    [
        # each beats the record before it on its date, so only the date is wrong
        (
            "2025-01-02",
            "# S1\n",
            f"date 2025-01-02 is before {TRACK}'s newest record 2025-01-03_Two",
        ),
        (
            "2020-01-01",
            "# S0\n",
            f"date 2020-01-01 is before {TRACK}'s newest record 2025-01-03_Two",
        ),
        ("2099-01-01", "# S2\n", "date 2099-01-01 is after today ("),
    ],
)
def test_a_date_before_the_newest_record_or_after_today_is_refused(
    records, tmp_path, date, previous, message
):
    new = runs(tmp_path / "logs", "# S3\n", **FAST, seed=21)
    prev = runs(tmp_path / "logs", previous, **SLOW, seed=31)
    err = refused(records, TRACK, "Three", *new, "--previous", *prev, "--date", date)
    assert message in err


def test_a_record_that_would_make_another_fail_is_refused(records, tmp_path):
    # On 2025-01-03, "Aaa" sorts before "Two": it would become the record before Two, whose
    # previous/ holds S1's runs, not Aaa's. Aaa itself passes (its previous/ holds S1's runs).
    new = runs(tmp_path / "logs", "# S3\n", **FAST, seed=21)
    prev = runs(tmp_path / "logs", "# S1\n", **SLOW, seed=31)
    err = refused(records, TRACK, "Aaa", *new, "--previous", *prev, "--date", "2025-01-03")
    assert (
        f"{TRACK}/2025-01-03_Aaa would make {TRACK}/2025-01-03_Two, which passes the check, fail "
        "it: previous/: its logs do not embed the script of the record before it (2025-01-03_Aaa)"
    ) in err
    # The same record named to sort after Two is the record after it, and needs Two's runs.
    prev = runs(tmp_path / "logs2", "# S2\n", **SLOW, seed=41)
    code, _, err = call(records, TRACK, "Zed", *new, "--previous", *prev, "--date", "2025-01-03")
    assert code == 0, err


def test_the_real_records_same_date_case(tmp_path):
    """The issue's case on a copy of the real records: a record dated 2026-12-03 whose name sorts
    before TwoLayers, beating WrittenAttentionBF16, would make TwoLayers fail."""
    records = tmp_path / "records"
    shutil.copytree(REPO / "records" / TRACK, records / TRACK)
    for name in layout.record_folders(records / TRACK):  # the records as they stood on 2026-12-03
        if name[:10] > "2026-12-03":
            shutil.rmtree(records / TRACK / name)
    before = (records / TRACK / "2026-12-02_WrittenAttentionBF16" / "train_gpt.py").read_text()
    new = runs(tmp_path / "logs", "# a new script\n", [4.90, 4.91, 4.92], [30_000, 30_500, 31_000])
    prev = runs(tmp_path / "logs", before, [4.90, 4.91, 4.92], [60_000, 60_500, 61_000], seed=31)
    err = refused(records, TRACK, "Aaa", *new, "--previous", *prev, "--date", "2026-12-03")
    assert f"would make {TRACK}/2026-12-03_TwoLayers, which passes the check, fail it" in err


def test_a_speed_up_that_is_not_significant_is_refused(records, tmp_path):
    # The case: 40.0 ± 47.2 s against 63 s at n=2 was accepted as 0.633x.
    new = runs(tmp_path / "logs", "# S3\n", [4.900, 4.901], [6_600, 73_400], seed=21)
    prev = runs(tmp_path / "logs", "# S2\n", [4.900, 4.901], [62_950, 63_050], seed=31)
    err = refused(records, TRACK, "Three", *new, "--previous", *prev, "--date", "2025-01-04")
    assert (
        f"refused: {TRACK}/2025-01-04_Three: its speed-up is not significant: val loss 4.9005 ± "
        "0.0007 against the target 4.97: p = 0.0023 (one-sided t-test); "
    ) in err
    assert (
        "train time 40.0 ± 47.2 s against 63.0 ± 0.1 s of the previous script (0.635x, n=2 "
        "against 2): p = 0.31 (one-sided Welch t-test); a record needs p < 0.01 for each"
    ) in err


def target_for(losses, p):
    """The target against which the one-sided t-test of losses gives p."""
    n = len(losses)
    mean = sum(losses) / n
    std = (sum((x - mean) ** 2 for x in losses) / (n - 1)) ** 0.5
    return repr(float(mean - scipy_stats.t.ppf(p, n - 1) * std / n**0.5))


LOSSES = [4.90, 4.91, 4.92]


def test_a_loss_p_just_above_the_threshold_prints_its_digits(records, tmp_path):
    # p = 0.0101 printed as "p=0.01 not below 0.01" before.
    new = runs(tmp_path / "logs", "# S3\n", LOSSES, FAST["times_ms"], seed=21)
    prev = runs(tmp_path / "logs", "# S2\n", LOSSES, SLOW["times_ms"], seed=31)
    target = target_for(LOSSES, 0.0101)
    err = refused(
        records, TRACK, "Three", *new, "--previous", *prev, "--date", "2025-01-04", target=target
    )
    assert "the val loss claim is not significant: val loss 4.9100 ± 0.0100 against" in err
    assert "p = 0.0101 (one-sided t-test)" in err and "p = 0.01 " not in err


def test_a_loss_p_just_below_the_threshold_prints_its_digits(records, tmp_path):
    # p = 0.00996 printed as "p = 0.01 (...; a claim needs p < 0.01)" in the README before.
    new = runs(tmp_path / "logs", "# S3\n", LOSSES, FAST["times_ms"], seed=21)
    prev = runs(tmp_path / "logs", "# S2\n", LOSSES, SLOW["times_ms"], seed=31)
    target = target_for(LOSSES, 0.00996)
    code, out, err = call(
        records, TRACK, "Three", *new, "--previous", *prev, "--date", "2025-01-04", target=target
    )
    assert code == 0, err
    readme = (records / TRACK / "2025-01-04_Three" / "README.md").read_text()
    assert "p = 0.00996 (one-sided one-sample t-test" in readme
    assert "p = 0.00996 (one-sided t-test)" in out.splitlines()[1]


@pytest.mark.parametrize(
    "p, shown",
    [
        (0.0101, "0.0101"),
        (0.00996, "0.00996"),
        (0.0099, "0.0099"),
        (0.01000001, "0.01000001"),
        (0.01, "0.01"),
        (1.234e-5, "1.2e-05"),
        (0.3137, "0.31"),
        (float("nan"), "nan"),
    ],
)
def test_fmt_p_shows_the_side_of_the_threshold(p, shown):
    assert fmt_p(p, 0.01) == shown


def read_only_or_file(monkeypatch, folder, how):
    """folder read-only (creating an entry in it fails with EACCES, as for a user after chmod a-w;
    root ignores permission bits, so the failing call is patched in-process), or a file."""
    if how == "file":
        shutil.rmtree(folder)
        folder.write_text("not a folder\n")
        return
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if os.path.dirname(os.path.abspath(path)) == str(folder):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.parametrize("how", ["read-only", "file"])
def test_a_track_folder_that_cannot_be_written_is_one_line(records, tmp_path, monkeypatch, how):
    new = runs(tmp_path / "logs", "# S3\n", **FAST, seed=21)
    prev = runs(tmp_path / "logs", "# S2\n", **SLOW, seed=31)
    track = records / TRACK
    read_only_or_file(monkeypatch, track, how)
    err = refused(records, TRACK, "Three", *new, "--previous", *prev, "--date", "2025-01-04")
    dest = track / "2025-01-04_Three"
    if how == "read-only":
        assert err == (
            f"refused: cannot write {dest}: {track}/.2025-01-04_Three.partial: Permission denied "
            f"(make {track} writable, or pass --records DIR); nothing written\n"
        )
    else:
        assert err == (
            f"refused: cannot write {dest}: {track}: File exists ({track} is a file where a "
            "folder belongs: move it, or pass --records DIR); nothing written\n"
        )


def test_the_checker_fails_a_record_that_is_not_significantly_faster(records):
    """The same rule in tools/verify.py: a record folder whose times beat its previous/ only on
    average (40.0 ± 47.2 s against 63 s, n=2) fails the check, naming the Welch p."""
    import verify

    d = records / TRACK / "2025-01-04_Three"
    (d / "previous").mkdir(parents=True)
    (d / "train_gpt.py").write_text("# S3\n")
    (d / "README.md").write_text("# Three\n")
    runs(d, "# S3\n", [4.900, 4.901], [6_600, 73_400], seed=21)
    runs(d / "previous", "# S2\n", [4.900, 4.901], [62_950, 63_050], seed=31)
    manifest.write_manifest(d)
    results = verify.check_all(str(records), {TRACK: 4.97})
    [result] = [r for r in results if r["name"].endswith("2025-01-04_Three")]
    assert not result["ok"]
    assert any(
        r.startswith("not significantly faster") and "p=0.31" in r for r in result["reasons"]
    )
