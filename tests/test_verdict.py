"""tools/verdict.py: a finished run's final val loss against its track's target, in one line."""

import glob
import os

import verdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_record_run_reached_its_target(capsys):
    log = sorted(
        glob.glob(os.path.join(ROOT, "records/cpu_shakespeare/2026-12-03_TwoLayers/*.txt"))
    )
    assert verdict.main([log[0]]) == 0
    line = capsys.readouterr().out.strip()
    assert (
        line.startswith("verdict: final val loss 4.9") and "reached the cpu_shakespeare target 4.97"
    )
    assert " s of training" in line


def test_an_unfinished_log_gets_no_verdict(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("not a log\n")
    assert verdict.main([str(tmp_path / "x.txt")]) == 1
    assert "no verdict for a run that did not finish" in capsys.readouterr().out
