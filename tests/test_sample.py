"""tools/sample.py: text from a checkpoint, rebuilt from the source it embeds (today's script, or an
old record's), deterministic for a seed; a bad checkpoint is one line."""

import dataclasses
import glob
import os

import layout
import pytest
import sample
import torch
from test_train_gpt import ROOT, TINY, newest_log, run, run_id


def test_a_tiny_checkpoint_samples_the_same_text_for_a_seed(workdir, capsys):
    run(workdir, "--num_iterations=2", "--val_loss_every=0", "--save_checkpoint=true")
    checkpoint = workdir / "logs" / f"{run_id(newest_log(workdir))}_step2.pt"
    texts = []
    for _ in range(2):
        assert sample.main([str(checkpoint), "--tokens=8", "--seed=3"]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and texts[0].strip()
    assert sample.main([str(checkpoint), "--tokens=8", "--seed=4"]) == 0
    assert capsys.readouterr().out != texts[0], "another seed, another draw"
    with pytest.raises(SystemExit) as stop:  # the tiny model knows ids < 1024 only
        sample.main([str(checkpoint), "--prompt=Hello"])
    assert (
        str(stop.value.code) == "sample: --prompt has GPT-2 ids this model's vocab_size=1024 lacks"
    )


def test_an_old_records_script_samples_too(tmp_path, capsys):
    """The TwoLayers record's frozen script (no checkpoints of its own): its model, saved in the
    checkpoint format, is rebuilt by its own source."""
    path = sorted(glob.glob(os.path.join(ROOT, "records/cpu_shakespeare/2026-12-03_TwoLayers")))[0]
    old = layout.load_script(os.path.join(path, "train_gpt.py"), "two_layers")
    h = old.parse_args([a for a in TINY if not a.startswith(("--train_files", "--val_files"))])
    torch.manual_seed(0)
    model = old.GPT(h)
    source = open(os.path.join(path, "train_gpt.py")).read()
    state = dict(code=source, hparams=dataclasses.asdict(h), model=model.state_dict())
    torch.save(state, tmp_path / "old.pt")
    assert sample.main([str(tmp_path / "old.pt"), "--tokens=5", "--seed=1"]) == 0
    assert capsys.readouterr().out.strip()


def test_a_bad_checkpoint_is_one_line(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as stop:
        sample.main([str(tmp_path / "bad.pt")])
    assert str(stop.value.code).startswith(f"sample: {tmp_path}/bad.pt: not a readable checkpoint")
