"""tools/profile_step.py on a tiny configuration: the phases add up to the step."""

import profile_step
from test_train_gpt import SCRIPT, TINY


def test_the_phases_add_up_to_the_whole_step(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    assert profile_step.main([SCRIPT, "--steps", "2", "--", *TINY]) == 0
    out = capsys.readouterr().out
    rows = dict(line.rsplit(None, 2)[:2] for line in out.splitlines()[1:7])
    phases = {name.strip(): float(ms) for name, ms in rows.items()}
    assert set(phases) == {
        "forward",
        "gradient norm",
        "adam step",
        "muon step",
        "backward and the rest",
        "whole step",
    }
    parts = sum(ms for name, ms in phases.items() if name != "whole step")
    assert abs(parts - phases["whole step"]) < 0.2 and phases["forward"] > 0
    assert "aten::mm" in out, "the operator table"
