"""The CUDA path, on one GPU: skipped where there is none (CI, the CPU track's machines).

    python -m pytest -s tests/test_cuda.py    # -s shows the measured ms/step and peak memory

FlexAttention (compiled, with the BlockMask built from block bounds) must agree with the CPU path
(attention written out over the same mask as a boolean tensor) in the loss and in every gradient,
and the full FineWeb configuration must compile and train a few steps on synthetic shards, sized
to this GPU's memory as train_gpt.py sizes it."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import shards
import train_gpt
from test_train_gpt import SCRIPT, newest_log, step_lines

STEPS = 30  # full-size steps: tools/gpu_check.sh prints their ms/step, peak memory and MFU

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_flex_attention_path_agrees_with_cpu_path():
    h = train_gpt.parse_args(
        [
            "--num_layers=4",
            "--model_dim=256",
            "--num_heads=2",
            "--num_value_embeds=1",
            "--seq_len=2048",
            "--dtype=float32",
        ]
    )
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
        model.zero_grad()
        cpu = model(idx, torch.tensor(window), targets)
        cpu.backward()
        cpu_grads = [p.grad.clone() for p in model.parameters()]
        model.cuda().zero_grad()
        gpu = model(idx.cuda(), torch.tensor(window, device="cuda"), targets.cuda())
        gpu.backward()
        gpu_grads = [p.grad.cpu() for p in model.parameters()]
        model.cpu()
        torch.testing.assert_close(
            gpu.cpu(), cpu, rtol=1e-3, atol=0
        )  # fp32 both, sums in another order
        for (name, _), a, b in zip(model.named_parameters(), gpu_grads, cpu_grads):
            torch.testing.assert_close(a, b, rtol=2e-2, atol=1e-5 * b.abs().max().item(), msg=name)


def test_full_configuration_compiles_and_trains(tmp_path):
    h = train_gpt.parse_args([])
    num_params = sum(p.numel() for p in train_gpt.GPT(h).parameters())
    gpu_bytes = torch.cuda.get_device_properties(0).total_memory
    seq_len, device_batch_size = train_gpt.fit_to_memory(h, num_params, gpu_bytes)
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 50257, size=h.batch_size * 6 + 1)  # 6 batches, wrapped
    stream[rng.random(stream.size) < 1 / 1000] = 50256  # documents of ~1,000 tokens, as in FineWeb
    stream[0] = 50256
    shards.write_shard(tmp_path / "fineweb_train_000000.bin", stream)
    shards.write_shard(tmp_path / "fineweb_val_000000.bin", stream[: 2 * seq_len + 1])
    p = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            f"--train_files={tmp_path}/fineweb_train_*.bin",
            f"--val_files={tmp_path}/fineweb_val_*.bin",
            f"--val_tokens={2 * seq_len}",
            f"--num_iterations={STEPS}",
            "--val_loss_every=0",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    log = newest_log(tmp_path)
    assert f"grad_accum_steps:{h.batch_size // device_batch_size} " in log
    assert (f"seq_len={seq_len} " in log) and (f"device_batch_size={device_batch_size} " in log)
    steps = step_lines(log)
    assert all(np.isfinite(steps[(s, "train")]) for s in range(1, STEPS + 1)) and np.isfinite(
        steps[(STEPS, "val")]
    )
    times = [
        int(t) for t in re.findall(rf"^step:\d+/{STEPS} train_loss.* train_time:(\d+)ms", log, re.M)
    ]
    ms_per_step = (times[-1] - times[0]) / (
        len(times) - 1
    )  # steps 2-30: the first may still tune kernels
    peak = int(re.search(r"^peak_memory:(\d+)MiB", log, re.M)[1])
    estimate = train_gpt.memory_estimate(h, num_params, device_batch_size) / 2**30
    throughput = re.search(r"tokens_per_s:\d+ mfu:[\d.]+%", log)[0]
    print(
        f"\n{torch.cuda.get_device_name()} ({gpu_bytes / 2**30:.0f} GiB): "
        f"{ms_per_step:.0f} ms/step for {h.batch_size} tokens as "
        f"{h.batch_size // device_batch_size} micro-steps of {device_batch_size} "
        f"(seq_len {seq_len}); peak {peak / 1024:.1f} GiB allocated "
        f"(estimate {estimate:.1f}); {throughput}"
    )
