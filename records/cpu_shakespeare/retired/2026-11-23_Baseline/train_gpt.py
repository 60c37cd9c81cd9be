"""CPU Shakespeare baseline: the classic GPT-2 recipe, which defines the track's target.

GPT-2 as published (learned positions, LayerNorm with bias, GELU, tied embedding and head) trained
with AdamW, linear warmup and cosine decay, on 2 CPU threads: `python train_gpt.py`. The data, the
val protocol (every token of the val works) and the log format are those of the main train_gpt.py,
so the two are compared on equal terms. Single process; any field can be overridden as --name=value.
"""
import dataclasses
import math
import os
import platform
import resource
import sys
import time
import uuid
from dataclasses import dataclass
from glob import glob

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

with open(__file__) as f:
    code = f.read()


@dataclass
class Hyperparameters:
    track: str = "cpu_shakespeare"
    train_files: str = "data/shakespeare/shakespeare_train_*.bin"
    val_files: str = "data/shakespeare/shakespeare_val_*.bin"
    val_tokens: int = 0  # 0 = every val token
    batch_size: int = 2048  # tokens per optimizer step
    device_batch_size: int = 128  # tokens per forward pass (see the main script on 128)
    seq_len: int = 128
    vocab_size: int = 50304
    num_layers: int = 4
    model_dim: int = 128
    num_heads: int = 4
    num_iterations: int = 360  # about 10 minutes on 2 threads of the reference machine
    lr: float = 1e-2  # better than 3e-3 in a 60-step probe (6.613 vs 6.628 val loss)
    warmup_steps: int = 20
    min_lr_frac: float = 0.1  # cosine decays to this fraction of lr (GPT-3 paper)
    weight_decay: float = 0.1
    val_loss_every: int = 180
    seed: int = 0  # 0 = a fresh seed each run (logged)
    threads: int = 0
    peak_flops: float = 0.0


def parse_args(argv):
    h = Hyperparameters()
    names = [f.name for f in dataclasses.fields(h)]
    for arg in argv:
        name, _, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or name not in names:
            sys.exit(f"train_gpt.py: unknown argument {arg!r}; valid: {', '.join(names)}")
        setattr(h, name, type(getattr(h, name))(value))
    return h

# -----------------------------------------------------------------------------
# Model: GPT-2 (Radford et al., 2019)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.num_heads, -1).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, num_heads)
        self.fc, self.proj = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.wte = nn.Embedding(h.vocab_size, h.model_dim)
        self.wpe = nn.Embedding(h.seq_len, h.model_dim)
        self.blocks = nn.ModuleList(Block(h.model_dim, h.num_heads) for _ in range(h.num_layers))
        self.ln_f = nn.LayerNorm(h.model_dim)
        for name, p in self.named_parameters():  # GPT-2's init: N(0, 0.02), residual projections
            if p.ndim == 2:  # scaled down by sqrt(2 * layers) so the residual stream stays O(1)
                std = 0.02 / math.sqrt(2 * h.num_layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets, reduction="mean"):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied: the head is the embedding
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)

# -----------------------------------------------------------------------------
# Data and evaluation: the same shards, order and val protocol as the main train_gpt.py


def shard_size(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    if len(header) < 256 or header[0] != 20240520 or header[1] != 1 \
            or os.path.getsize(path) != 256 * 4 + 2 * int(header[2]):
        sys.exit(f"train_gpt.py: {path}: not a valid token shard; rebuild it with: python data/shakespeare.py")
    return int(header[2])


def find_shards(pattern):
    files = sorted(glob(pattern))
    if not files:
        sys.exit(f"train_gpt.py: no files match {pattern}; build them with: python data/shakespeare.py")
    return files, [shard_size(f) for f in files]


def load_tokens(path):
    return np.fromfile(path, dtype="<u2", offset=256 * 4)


class DataLoader:
    """The next B * T (+1) tokens of the stream per call; shards in order, wrapping around."""

    def __init__(self, pattern, B, T):
        self.files, _ = find_shards(pattern)
        self.B, self.T, self.shard, self.pos = B, T, 0, 0
        self.tokens = load_tokens(self.files[0])

    def next_batch(self):
        if self.pos + self.B * self.T + 1 > len(self.tokens):
            self.shard, self.pos = (self.shard + 1) % len(self.files), 0
            self.tokens = load_tokens(self.files[self.shard])
        buf = torch.from_numpy(self.tokens[self.pos:self.pos + self.B * self.T + 1].astype(np.int64))
        self.pos += self.B * self.T
        return buf[:-1].view(self.B, self.T), buf[1:].view(self.B, self.T)


def load_val_tokens(pattern, val_tokens):
    tokens = np.concatenate([load_tokens(f) for f in find_shards(pattern)[0]])
    return tokens[:val_tokens + 1] if val_tokens else tokens


@torch.no_grad()
def evaluate(model, tokens, h):
    """Mean loss over every next-token prediction, in seq_len windows (the last may be shorter)."""
    n, T, B = len(tokens) - 1, h.seq_len, max(1, h.device_batch_size // h.seq_len)
    starts = list(range(0, n, T))
    loss_sum = 0.0
    for i in range(0, len(starts), B):
        batch = starts[i:i + B]
        for length in sorted({min(T, n - s) for s in batch}):
            rows = np.stack([tokens[s:s + length + 1] for s in batch if min(T, n - s) == length])
            buf = torch.from_numpy(rows.astype(np.int64))
            loss_sum += model(buf[:, :-1], buf[:, 1:], reduction="sum").item()
    return loss_sum / n

# -----------------------------------------------------------------------------
# Training


def lr_at(step, h):
    """Linear warmup, then cosine decay to min_lr_frac * lr (GPT-2/3, nanoGPT)."""
    if step < h.warmup_steps:
        return h.lr * (step + 1) / h.warmup_steps
    progress = (step - h.warmup_steps) / max(1, h.num_iterations - h.warmup_steps)
    return h.lr * (h.min_lr_frac + (1 - h.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def measure_peak_flops(n=2048):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0, iters = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.5:
        a @ b
        iters += 1
    return 2 * n ** 3 * iters / (time.perf_counter() - t0)


def main():
    h = parse_args(sys.argv[1:])
    torch.set_num_threads(h.threads or os.cpu_count())
    grad_accum_steps = h.batch_size // h.device_batch_size
    train_loader = DataLoader(h.train_files, h.device_batch_size // h.seq_len, h.seq_len)
    val_tokens = load_val_tokens(h.val_files, h.val_tokens)
    if h.seed == 0:
        h.seed = int.from_bytes(os.urandom(4), "little") or 1
    torch.manual_seed(h.seed)
    model = GPT(h)
    decay = [p for p in model.parameters() if p.ndim == 2]  # no weight decay on biases and gains
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([dict(params=decay, weight_decay=h.weight_decay),
                                   dict(params=no_decay, weight_decay=0.0)], lr=h.lr, betas=(0.9, 0.95), fused=True)

    run_id = str(uuid.uuid4())
    os.makedirs("logs", exist_ok=True)
    logfile = open(f"logs/{run_id}.txt", "w", buffering=1)

    def log(msg):
        logfile.write(msg + "\n")
        print(msg, flush=True)

    ruler = "=" * 100
    logfile.write(f"{ruler}\n{code}{ruler}\n")
    log(f"python:{platform.python_version()} torch:{torch.__version__} device:cpu ({platform.machine()}) "
        f"world_size:1 grad_accum_steps:{grad_accum_steps} threads:{torch.get_num_threads()}")
    log("hparams: " + " ".join(f"{k}={v}" for k, v in dataclasses.asdict(h).items()))
    matmul_params = sum(p.numel() for p in model.parameters() if p.ndim == 2) - model.wpe.weight.numel()
    flops_per_token = 6 * matmul_params + 12 * h.num_layers * h.model_dim * h.seq_len
    peak = h.peak_flops or measure_peak_flops()
    log(f"params:{sum(p.numel() for p in model.parameters())} flops_per_token:{flops_per_token} "
        f"peak_flops:{peak:.3g} val_tokens:{len(val_tokens) - 1}")
    log(f"log: logs/{run_id}.txt")
    log(ruler)

    train_time_ms, t0 = 0.0, time.perf_counter()
    for step in range(h.num_iterations + 1):
        last = step == h.num_iterations
        if last or (h.val_loss_every and step > 0 and step % h.val_loss_every == 0):
            train_time_ms += 1000 * (time.perf_counter() - t0)  # evaluation is not training time
            val_loss = evaluate(model, val_tokens, h)
            log(f"step:{step}/{h.num_iterations} val_loss:{val_loss:.4f} train_time:{train_time_ms:.0f}ms "
                f"step_avg:{train_time_ms / max(1, step):.2f}ms")
            t0 = time.perf_counter()
        if last:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, h)
        train_loss = 0.0
        for _ in range(grad_accum_steps):
            x, y = train_loader.next_batch()
            loss = model(x, y)
            (loss / grad_accum_steps).backward()
            train_loss += loss.item() / grad_accum_steps
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # GPT-3's clip at 1.0
        optimizer.step()
        model.zero_grad(set_to_none=True)
        now = train_time_ms + 1000 * (time.perf_counter() - t0)
        log(f"step:{step + 1}/{h.num_iterations} train_loss:{train_loss:.4f} lr:{lr_at(step, h):.5f} "
            f"grad_norm:{grad_norm:.4f} train_time:{now:.0f}ms step_avg:{now / (step + 1):.2f}ms")
        if not math.isfinite(train_loss):
            log(f"stopped: non-finite train loss at step {step + 1}")
            sys.exit(1)

    tokens_per_s = h.num_iterations * h.batch_size / (train_time_ms / 1000)
    log(f"peak_memory:{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}MiB "
        f"tokens_seen:{h.num_iterations * h.batch_size} tokens_per_s:{tokens_per_s:.0f} "
        f"mfu:{100 * flops_per_token * tokens_per_s / peak:.2f}%")
    log(f"final_val_loss:{val_loss:.4f} train_time:{train_time_ms:.0f}ms")


if __name__ == "__main__":
    main()
