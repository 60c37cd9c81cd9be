"""tools/upstream_check.py's machinery on a synthetic "upstream" log: this script's own source with
an upstream-shaped main section appended (upstream's constructor and forward signatures, its
Hyperparameters names, get_lr, get_sliding_window_blocks, Muon's momentum set in the training loop).
The repository stores none of upstream's code; the real check runs on a log the user fetches."""

import os

import pytest
import upstream_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MAIN = """
class UpstreamShapedGPT(GPT):
    def __init__(self, vocab_size, num_layers, num_heads, model_dim):
        args = [f"--model_dim={model_dim}", f"--num_heads={num_heads}", "--seq_len=1024"]
        super().__init__(parse_args(args + ["--compile=false"] + INJECTED))

    def forward(self, inputs, targets, sliding_window_num_blocks):
        window = sliding_window_num_blocks * 128
        return super().forward(inputs[None].long(), window, targets[None]) / len(inputs)


args = parse_args(INJECTED)
model = UpstreamShapedGPT(vocab_size=50304, num_layers=12, num_heads=6, model_dim=768)
optimizers = build_optimizers(parse_args(["--compile=false"] + INJECTED), model, 0, 1)
optimizer1 = optimizers["adam"]
optimizer2 = optimizers["muon"]


def get_lr(it):
    return lr_multiplier(it, args)


def get_sliding_window_blocks(it):
    return window_size(it, args) // 128


for step in range(args.num_iterations):
    frac = min(step / args.muon_momentum_warmup_steps, 1)
    for group in optimizer2.param_groups:
        group["momentum"] = (1 - frac) * 0.85 + frac * args.muon_momentum
"""


def synthetic_log(tmp_path, injected):
    source = open(os.path.join(ROOT, "train_gpt.py")).read()
    source += f"\nINJECTED = {injected!r}\n" + MAIN
    path = tmp_path / "upstream.txt"
    path.write_text(source + "=" * 100 + "\nstep:1/1390 train_time:0ms step_avg:nanms\n")
    return str(path)


def test_the_script_against_itself_agrees(tmp_path, capsys):
    assert upstream_check.main([synthetic_log(tmp_path, [])]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("upstream_check: OK: ")
    for row in ("forward loss", "gradients", "weights after step 2", "window (tokens)"):
        assert any(line.startswith(row) for line in out), row


@pytest.mark.parametrize(
    "injected, named",
    [
        (["--logit_softcap=30"], "forward loss: "),  # the 2024-12-17 record's softcap
        (["--rotary=full"], "forward loss: "),
        (
            ["--adam_beta1=0.9"],
            "skip_weights's optimizer ({'optimizer': 'Adam', 'initial_lr': 0.04",
        ),
        (
            ["--no_attention_layers="],
            "parameters: upstream's blocks.7.attn.lambdas has no counterpart",
        ),
        (["--muon_momentum_warmup_steps=200"], "blocks.0.attn.q.weight after step 2: "),
        (["--cooldown_frac=0.5"], "hyperparameter cooldown_frac (upstream's cooldown_frac=0.5"),
    ],
)
def test_one_injected_change_is_named(tmp_path, capsys, injected, named):
    assert upstream_check.main([synthetic_log(tmp_path, injected)]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"upstream_check: DIFFERENT: {named}"), last


def test_a_file_that_is_no_log_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("no script here\n")
    with pytest.raises(SystemExit) as stop:
        upstream_check.main([str(tmp_path / "notes.txt")])
    assert "no script with a GPT class at its top" in str(stop.value.code)
    with pytest.raises(SystemExit) as stop:
        upstream_check.main([str(tmp_path / "missing.txt")])
    assert str(stop.value.code).startswith(f"upstream_check: cannot read {tmp_path}/missing.txt")
