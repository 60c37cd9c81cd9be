"""tools/plots.py on the repository's own logs (no training): compare.png's panels, target line, n
and p; the records plot's ratios against the logs' mean times; the y range; and a PNG rewritten only
when its drawing changes."""

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import check
import plots
import tracks
from layout import read_arms
from logformat import read_log
from stats import welch_p
from verify import check_all, read_runs

REPO = Path(__file__).resolve().parent.parent
TRACK = "cpu_shakespeare"
EXPERIMENT = REPO / "experiments" / "2026-12-02_HeadCutoffs"


def experiment(folder):
    """(arms, results) of an experiment folder, as tools/verify.py passes them to plots."""
    arms = read_arms(folder)
    return arms, {name: read_runs(str(folder / name), None, None, []) for name, _ in arms}


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plots draw, kept instead of saved: a list of (figure, path)."""
    figures = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figures.append((fig, path)))
    return figures


def horizontal_lines(ax):
    return [line.get_ydata()[0] for line in ax.get_lines() if len(set(line.get_ydata())) == 1]


def test_comparison_has_a_steps_and_a_time_panel_the_target_and_n_and_p(drawn):
    arms, results = experiment(EXPERIMENT)
    plots.comparison(arms, results, "compare.png")
    ((fig, _),) = drawn
    by_step, by_time, finals = fig.axes
    assert by_step.get_xlabel() == "step" and by_time.get_xlabel() == "training time (s)"
    target = tracks.TARGETS[TRACK]  # the logs' track hyperparameter is cpu_shakespeare
    vals = [y for runs in results.values() for r in runs for _, y, _ in r["vals"]]
    for ax in (by_step, by_time):
        assert target in horizontal_lines(ax)
        lo, hi = ax.get_ylim()
        assert lo < min(vals) and max(vals) < hi, "every val point inside the axis"
    lo, hi = finals.get_ylim()
    assert all(lo < r["val_loss"] < hi for runs in results.values() for r in runs)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert [t.split(":")[0] for t in texts] == [name for name, _ in arms]
    base = results[arms[0][0]]
    assert "(p=" not in texts[0] and texts[0].startswith(f"{arms[0][0]}: n={len(base)},")
    for (name, _), text in list(zip(arms, texts))[1:]:
        p = welch_p(results[name], base, "val_loss")
        assert text.startswith(f"{name}: n={len(results[name])},") and f"(p={p:.2g})" in text


def test_comparison_without_a_target_draws_no_target_line(drawn):
    arms, results = experiment(EXPERIMENT)
    results = copy.deepcopy(results)
    for runs in results.values():
        for r in runs:
            r["hparams"]["track"] = "no_such_track"
    plots.comparison(arms, results, "compare.png")
    ((fig, _),) = drawn
    assert all(horizontal_lines(ax) == [] for ax in fig.axes[:2])


def test_y_range_holds_the_first_evaluations_unless_they_would_squash_the_rest():
    def run(*vals):
        return {"vals": [(step, loss, step * 100) for step, loss in vals]}

    early = [run((50, 5.6), (100, 5.3), (150, 5.0)), run((50, 5.5), (100, 5.2), (150, 4.9))]
    lo, hi = plots.y_limits([early])
    assert lo < 4.9 and 5.6 < hi < 5.7, "the first evaluations add 1.75x the span: drawn"
    untrained = [run((0, 10.8), *[(s, y) for s, y, _ in r["vals"]]) for r in early]
    lo, hi = plots.y_limits([untrained])
    assert lo < 4.9 and 5.6 < hi < 5.7, "step 0's 10.8 would take 86% of the axis: left above it"


def logged_times(folder):
    return [read_log(f)["train_time_ms"] for f in sorted(folder.glob("*.txt"))]


def test_records_plot_ratios_are_the_mean_time_ratios_of_the_logs(drawn):
    results = check_all(str(REPO / "records"), tracks.TARGETS)
    points = plots.progression(results, TRACK)
    records = [p for p in points if p["kind"] == "record"]
    expected = [r["name"] for r in results if r["track"] == TRACK and r["previous"]]
    assert [f"{p['date']}_{p['name']}" for p in records] == expected
    chained = {}
    for p in records:
        folder = REPO / "records" / TRACK / f"{p['date']}_{p['name']}"
        ratio = np.mean(logged_times(folder)) / np.mean(logged_times(folder / "previous"))
        assert p["link"]["ratio"] == pytest.approx(ratio, rel=1e-12)
        assert p["link"]["lo"] < ratio < p["link"]["hi"] and p["lo"] < p["value"] < p["hi"]
        chained[p["chain"]] = chained.get(p["chain"], 1.0) * ratio
        assert p["value"] == pytest.approx(chained[p["chain"]], rel=1e-12)
    plots.records(results, tracks.TARGETS, "records")
    ((fig, path),) = drawn
    assert path == os.path.join("records", f"{TRACK}.png")
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    for p in records:
        assert any(f"{p['date']}\n×{p['link']['ratio']:.3f}" in t for t in ticks)


def test_records_plot_marks_a_failed_record(drawn):
    results = [dict(r) for r in check_all(str(REPO / "records"), tracks.TARGETS)]
    newest = [r for r in results if r["track"] == TRACK and not r["retired"]][-1]
    newest["ok"] = False
    plots.records(results, tracks.TARGETS, "records")
    ((fig, _),) = drawn
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith(f"{newest['name'][11:]} (check FAILED)") for t in texts)


def test_a_png_is_rewritten_only_when_its_drawing_changes(tmp_path):
    arms, results = experiment(EXPERIMENT)
    path = tmp_path / "compare.png"
    plots.comparison(arms, results, str(path))
    first = path.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    os.utime(path, ns=(10**9, 10**9))  # an old mtime: a rewrite would change it
    plots.comparison(arms, results, str(path))
    assert path.read_bytes() == first and path.stat().st_mtime_ns == 10**9
    plots.comparison(arms[:2], results, str(path))  # another drawing: written, atomically
    assert path.read_bytes() != first and path.stat().st_mtime_ns != 10**9
    assert os.listdir(tmp_path) == ["compare.png"], "no temporary file left"


def test_check_plot_twice_leaves_the_pngs_untouched(tmp_path, capsys):
    shutil.copytree(REPO / "records", tmp_path / "records")
    shutil.copytree(EXPERIMENT, tmp_path / "experiments" / EXPERIMENT.name)
    pngs = [tmp_path / "records" / f"{TRACK}.png", tmp_path / "experiments" / EXPERIMENT.name]
    pngs[1] /= "compare.png"
    check.main(["--plot", "--records", str(tmp_path / "records")])
    before = [png.read_bytes() for png in pngs]
    for png in pngs:
        os.utime(png, ns=(10**9, 10**9))
    check.main(["--plot", "--records", str(tmp_path / "records")])
    capsys.readouterr()
    assert [png.read_bytes() for png in pngs] == before
    assert [png.stat().st_mtime_ns for png in pngs] == [10**9, 10**9]
