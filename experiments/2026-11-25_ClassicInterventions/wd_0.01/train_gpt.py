"""CPU Shakespeare Baseline: nanoGPT's own CPU recipe, which defines the track's target.

nanoGPT's README gives this for a laptop without a GPU (its `train_shakespeare_char` config with
`--device=cpu --compile=False --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
--max_iters=2000 --lr_decay_iters=2000 --dropout=0.0`). Here it is rewritten in this project's own
code, on this track's GPT-2-token shards (vocab padded to 50304, as nanoGPT pads it), evaluated
with the track's protocol (every val token, non-overlapping windows of the context length) and
logged in the format of the main train_gpt.py, so the two are compared on equal terms:
    python records/cpu_shakespeare/2026-11-25_Baseline/train_gpt.py
Everything else is nanoGPT's: GPT-2 blocks without biases, tied head, fp32, 12 random windows of
64 tokens per step, AdamW, warmup + cosine decay, 2000 steps. Single process; --name=value overrides.
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
    batch_size: int = 12 * 64  # tokens per step: nanoGPT's --batch_size=12 windows of --block_size=64
    seq_len: int = 64
    vocab_size: int = 50304
    num_layers: int = 4
    model_dim: int = 128
    num_heads: int = 4
    num_iterations: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4  # the cosine ends here, at lr_decay_iters = num_iterations
    warmup_steps: int = 100
    beta2: float = 0.99  # train_shakespeare_char's "a bit bigger because number of tokens per iter is small"
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # the fork: 0 = no clipping
    qkv_bias: bool = False  # the fork: a bias on the q, k, v projections
    dropout: float = 0.0  # the fork: nanoGPT's dropout (embeddings, attention probabilities, both residual branches)
    constant_lr: bool = False  # the fork: lr from step 0 to the end, no warmup, no decay
    val_loss_every: int = 200
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
        kind = type(getattr(h, name))  # the fork: bools as true/false
        setattr(h, name, value.lower() in ("1", "true") if kind is bool else kind(value))
    return h

# -----------------------------------------------------------------------------
# Model: nanoGPT's model.py with bias=False and dropout=0


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias, dropout):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.num_heads, -1).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return F.dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias, dropout):
        super().__init__()
        self.dropout = dropout
        self.ln1, self.ln2 = nn.LayerNorm(dim, bias=False), nn.LayerNorm(dim, bias=False)
        self.attn = CausalSelfAttention(dim, num_heads, qkv_bias, dropout)
        self.fc, self.proj = nn.Linear(dim, 4 * dim, bias=False), nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + F.dropout(self.proj(F.gelu(self.fc(self.ln2(x)))), self.dropout, self.training)


class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.wte = nn.Embedding(h.vocab_size, h.model_dim)
        self.wpe = nn.Embedding(h.seq_len, h.model_dim)
        self.blocks = nn.ModuleList(Block(h.model_dim, h.num_heads, h.qkv_bias, h.dropout) for _ in range(h.num_layers))
        self.ln_f, self.dropout = nn.LayerNorm(h.model_dim, bias=False), h.dropout
        for name, p in self.named_parameters():  # GPT-2's init: N(0, 0.02), residual projections
            if p.ndim == 2:  # scaled down by sqrt(2 * layers) so the residual stream stays O(1)
                std = 0.02 / math.sqrt(2 * h.num_layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):  # the fork: nanoGPT's zero biases
                nn.init.zeros_(p)

    def forward(self, idx, targets, reduction="mean"):
        x = F.dropout(self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device)), self.dropout, self.training)
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied: the head is the embedding
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)

# -----------------------------------------------------------------------------
# Data and evaluation: the track's shards and val protocol; training windows drawn as nanoGPT does


def shard_size(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    if len(header) < 256 or header[0] != 20240520 or header[1] != 1 \
            or os.path.getsize(path) != 256 * 4 + 2 * int(header[2]):
        sys.exit(f"train_gpt.py: {path}: not a valid token shard; rebuild it with: python data/shakespeare.py")
    return int(header[2])


def load_tokens(pattern):
    files = sorted(glob(pattern))
    if not files:
        sys.exit(f"train_gpt.py: no files match {pattern}; build them with: python data/shakespeare.py")
    for f in files:
        shard_size(f)
    return np.concatenate([np.fromfile(f, dtype="<u2", offset=256 * 4) for f in files])


def random_windows(tokens, h, generator):
    """nanoGPT's get_batch: batch_size // seq_len windows at uniformly random offsets."""
    starts = torch.randint(len(tokens) - h.seq_len, (h.batch_size // h.seq_len,), generator=generator)
    rows = torch.from_numpy(np.stack([tokens[s:s + h.seq_len + 1] for s in starts.tolist()]).astype(np.int64))
    return rows[:, :-1], rows[:, 1:]


@torch.no_grad()
def evaluate(model, tokens, h):
    """Mean loss over every next-token prediction, in seq_len windows (the last may be shorter)."""
    n, T, B = len(tokens) - 1, h.seq_len, 32
    starts = list(range(0, n, T))
    loss_sum = 0.0
    model.eval()  # the fork: no dropout while evaluating
    for i in range(0, len(starts), B):
        batch = starts[i:i + B]
        for length in sorted({min(T, n - s) for s in batch}):
            rows = np.stack([tokens[s:s + length + 1] for s in batch if min(T, n - s) == length])
            buf = torch.from_numpy(rows.astype(np.int64))
            loss_sum += model(buf[:, :-1], buf[:, 1:], reduction="sum").item()
    model.train()
    return loss_sum / n

# -----------------------------------------------------------------------------
# Training


def lr_at(step, h):
    """nanoGPT's get_lr: linear warmup, then cosine from lr down to min_lr at num_iterations."""
    if h.constant_lr:
        return h.lr
    if step < h.warmup_steps:
        return h.lr * (step + 1) / (h.warmup_steps + 1)
    progress = (step - h.warmup_steps) / max(1, h.num_iterations - h.warmup_steps)
    return h.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (h.lr - h.min_lr)


def cpu_name():
    """The CPU model, and whether it has bf16 matmul units (AVX512-BF16, AMX)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    units = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}, bf16 units: {' '.join(units) or 'none'}"


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
    train_tokens = load_tokens(h.train_files)
    val_tokens = load_tokens(h.val_files)
    if h.val_tokens:
        val_tokens = val_tokens[:h.val_tokens + 1]
    if h.seed == 0:
        h.seed = int.from_bytes(os.urandom(4), "little") or 1
    torch.manual_seed(h.seed)
    generator = torch.Generator().manual_seed(h.seed)
    model = GPT(h)
    decay = [p for p in model.parameters() if p.ndim >= 2]  # no weight decay on the LayerNorm gains
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([dict(params=decay, weight_decay=h.weight_decay),
                                   dict(params=no_decay, weight_decay=0.0)], lr=h.lr, betas=(0.9, h.beta2))

    run_id = str(uuid.uuid4())
    os.makedirs("logs", exist_ok=True)
    logfile = open(f"logs/{run_id}.txt", "w", buffering=1)

    def log(msg):
        logfile.write(msg + "\n")
        print(msg, flush=True)

    ruler = "=" * 100
    logfile.write(f"{ruler}\n{code}{ruler}\n")
    log(f"python:{platform.python_version()} torch:{torch.__version__} device:cpu ({cpu_name()}) "
        f"world_size:1 grad_accum_steps:1 threads:{torch.get_num_threads()} dtype:float32")
    log("hparams: " + " ".join(f"{k}={v}" for k, v in dataclasses.asdict(h).items()))
    matmul_params = sum(p.numel() for p in model.parameters() if p.ndim == 2) - model.wpe.weight.numel()
    flops_per_token = 6 * matmul_params + 12 * h.num_layers * h.model_dim * h.seq_len
    peak = h.peak_flops or measure_peak_flops()
    log(f"params:{sum(p.numel() for p in model.parameters())} flops_per_token:{flops_per_token} "
        f"peak_flops:{peak:.3g} (measured, 2048^3 float32 matmul) val_tokens:{len(val_tokens) - 1}")
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
        x, y = random_windows(train_tokens, h, generator)
        loss = model(x, y)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), h.grad_clip or math.inf)
        optimizer.step()
        model.zero_grad(set_to_none=True)
        train_loss = loss.item()
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
