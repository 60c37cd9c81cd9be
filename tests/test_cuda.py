"""The CUDA path, on one GPU: skipped where there is none (CI, the CPU track's machines).

    python -m pytest -s tests/test_cuda.py    # -s shows the measured ms/step

FlexAttention (compiled, with a BlockMask) must agree with the CPU path (SDPA with the same mask as a
boolean tensor), and the full FineWeb configuration must compile and train a few steps on synthetic
shards; its ms/step over 8 micro-steps of 64K tokens is 8x the work of one step of an 8-GPU node."""
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import shards
import train_gpt
from test_train_gpt import SCRIPT, newest_log, step_lines

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_flex_attention_path_agrees_with_cpu_path():
    h = train_gpt.parse_args(["--num_layers=4", "--model_dim=256", "--num_heads=2", "--num_value_embeds=1",
                              "--seq_len=2048", "--dtype=float32"])
    torch.manual_seed(0)
    model = train_gpt.GPT(h)
    for p in model.parameters():  # zero-init projections and head would hide differences
        if p.ndim == 2 and not p.any():
            torch.nn.init.normal_(p, std=0.02)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 50257, (2, 2048), generator=g)
    idx[0, [0, 300, 301, 1700]] = idx[1, [5, 1024]] = 50256
    targets = torch.randint(0, 50257, (2, 2048), generator=g)
    for window in (128, 512, 1792):
        cpu = model(idx, torch.tensor(window), targets)
        model.cuda()
        gpu = model(idx.cuda(), torch.tensor(window, device="cuda"), targets.cuda())
        model.cpu()
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=0)  # fp32 both, sums in another order


def test_full_configuration_compiles_and_trains(tmp_path):
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 50257, size=8 * 64 * 1024 * 6 + 1)
    stream[rng.random(stream.size) < 1 / 1000] = 50256  # documents of ~1,000 tokens, as in FineWeb
    shards.write_shard(tmp_path / "fineweb_train_000000.bin", stream)
    shards.write_shard(tmp_path / "fineweb_val_000000.bin", stream[:64 * 1024 * 2 + 1])
    p = subprocess.run([sys.executable, SCRIPT, f"--train_files={tmp_path}/fineweb_train_*.bin",
                        f"--val_files={tmp_path}/fineweb_val_*.bin", "--val_tokens=131072", "--num_iterations=6",
                        "--val_loss_every=0"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    log = newest_log(tmp_path)
    assert "world_size:1 grad_accum_steps:8 " in log
    steps = step_lines(log)
    assert all(np.isfinite(steps[(s, "train")]) for s in range(1, 7)) and np.isfinite(steps[(6, "val")])
    times = [int(t) for t in re.findall(r"^step:\d+/6 train_loss.* train_time:(\d+)ms", log, re.M)]
    ms_per_step = (times[-1] - times[0]) / (len(times) - 1)  # steps 2-6: the first may still tune kernels
    throughput = re.search(r"tokens_per_s:\d+ mfu:[\d.]+%", log)[0]
    print(f"\n{torch.cuda.get_device_name()}: {ms_per_step:.0f} ms/step for 8 x 64K tokens "
          f"(1 GPU, 8 micro-steps); {throughput}")
