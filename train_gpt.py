"""GPT-2 speedrun trainer: the recipe, then the harness. Defaults: the 8xH100 FineWeb track
(upstream's techniques to its 2025-01-04 record, 1390 steps toward 3.28 val loss);
--track=cpu_shakespeare: the CPU record. --name=value sets a field; a log embeds this file."""

import copy
import ctypes
import gc
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from glob import glob

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torch.utils.benchmark
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, flex_attention
from torch.nn.parallel import DistributedDataParallel as DDP

code = open(__file__).read()  # embedded in every log
RULER = "=" * 100  # around the source at the top of a log, and after the environment
BLOCK = 128  # FlexAttention's block size; attention windows are whole blocks


# -----------------------------------------------------------------------------
# Hyperparameters: the defaults are the 8xH100 FineWeb track's; a track preset overrides some.
@dataclass
class Hyperparameters:
    track: str = "8xh100_fineweb"
    train_files: str = "data/fineweb10B/fineweb_train_*.bin"
    val_files: str = "data/fineweb10B/fineweb_val_*.bin"
    val_tokens: int = 10485760  # a fixed val set, whatever the world size; 0 = every val token
    batch_size: int = 8 * 64 * 1024  # tokens per optimizer step, over all ranks and micro-steps
    device_batch_size: int = 64 * 1024  # tokens per forward pass, at most (halved on small GPUs)
    seq_len: int = 64 * 1024  # documents packed in one long row: the mask keeps them apart
    bos_id: int = 50256  # <|endoftext|>, which starts every document
    vocab_size: int = 50304  # GPT-2's 50257, padded to a multiple of 128 for fast matmuls
    num_layers: int = 12
    model_dim: int = 768
    num_heads: int = 6
    num_value_embeds: int = 3  # tables for the first and, in reverse, the last layers' values
    value_embed_mix: str = "lambdas"  # lambdas: v, ve weighted, learned from 0.5; gate: v + g ve
    no_attention_layers: str = "7"  # blocks without attention (upstream: the 8th of 12)
    rotary: str = "half"  # half: dim/4 pairs turn (1 to 1/1024), dim/4 do not; full: base 1e4
    embed_dtype: str = "bfloat16"  # of the embedding tables, and so of their Adam state
    window_min: int = 128  # the attention window grows linearly from this many tokens ...
    window_max: int = 1792  # ... to this many at the end
    activation: str = "relu2"  # of the MLP: relu2, or relugtz (gated, 4 learned scalars a layer)
    logit_softcap: float = 15.0  # tanh cap on the logits: 15 beat 30 upstream; 0 = off
    head_cutoffs: str = ""  # an adaptive softmax's frequency-rank cutoffs, e.g. "2048,8192"
    embed_rows: int = 0  # of the embedding tables, by frequency rank (see GPT), at most vocab_size
    num_iterations: int = 1390
    warmup_steps: int = 0
    adam_beta1: float = 0.8
    cooldown_frac: float = 0.4  # linear decay to 0 over this final fraction of the steps
    embed_lr: float = 0.6
    head_lr: float = 0.008
    scalar_lr: float = 0.04
    muon_lr: float = 0.05
    muon_momentum: float = 0.95
    muon_momentum_warmup_steps: int = 300  # momentum ramps 0.85 -> muon_momentum
    val_loss_every: int = 125  # 0 = only at the end (never at step 0: ln(vocab_size) there)
    save_checkpoint: bool = False  # logs/<uuid>_step<N>.pt at the end: what --resume needs
    save_every: int = 0  # and every this many steps; 0 = never
    resume: str = ""  # a checkpoint of this script and configuration, to go on from
    seed: int = 0  # 0 = a fresh seed each run (logged), so repeated runs measure the spread
    compile: bool = True
    threads: int = 0  # CPU threads per process; 0 = the cores divided among local ranks
    dtype: str = "bfloat16"  # of activations and matmuls
    peak_flops: float = 0.0  # per-device peak for MFU; 0 = a GPU's datasheet, else measured


TRACKS = {  # a track's preset: flags applied before the command line's
    "8xh100_fineweb": "",
    # 2 CPU threads; records/cpu_shakespeare/ and experiments/ measure each choice
    "cpu_shakespeare": "--train_files=data/shakespeare/shakespeare_train_*.bin "
    "--val_files=data/shakespeare/shakespeare_val_*.bin --val_tokens=0 --batch_size=4096 "
    "--device_batch_size=4096 --seq_len=64 --activation=relugtz --num_layers=2 --model_dim=128 "
    "--num_heads=2 --num_value_embeds=1 --logit_softcap=0 --head_cutoffs=1024,4096,16384 "
    "--num_iterations=240 --cooldown_frac=0.5 --muon_lr=0.02 --val_loss_every=48 "
    "--muon_momentum_warmup_steps=15 --value_embed_mix=gate --no_attention_layers= --rotary=full "
    "--embed_dtype=float32 --adam_beta1=0.9 --embed_rows=20480",
}


# -----------------------------------------------------------------------------
# Muon: MomentUm Orthogonalized by Newton-Schulz (Jordan et al., 2024)
def zeropower_via_newtonschulz5(G, steps=5, dtype=torch.bfloat16):
    """Approximately replace each G = USV^T of a stack (or one matrix) by UV^T. The quintic's
    coefficients trade exactness for speed: after 5 steps the singular values lie in about
    [0.7, 1.2], which trains as well."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    tall = G.size(-2) > G.size(-1)
    X = G.to(dtype)
    if tall:  # iterate on the wide orientation: X @ X^T is then the smaller Gram matrix
        X = X.mT
    # Frobenius norm >= spectral norm, so all singular values <= 1
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if tall:
        X = X.mT
    return X


class Muon(torch.optim.Optimizer):
    """SGD-momentum with Nesterov, each 2-D update orthogonalized. A group is one shape up to
    transposition; rank r orthogonalizes its matrices r, r + world_size, ... as one stack (one
    batched matmul, not one per matrix), then the ranks gather the stacks."""

    def __init__(self, params, lr, momentum, ns_dtype, rank=0, world_size=1, compile=False):
        params = list(params)
        shapes = sorted({tuple(sorted(p.shape)) for p in params})  # 8 GPUs: 3 MLP matrices each
        groups = [dict(params=[p for p in params if tuple(sorted(p.shape)) == s]) for s in shapes]
        super().__init__(groups, dict(lr=lr, momentum=momentum))
        self.ns_dtype = ns_dtype
        self.rank = rank
        self.world_size = world_size
        self.orthogonalize = zeropower_via_newtonschulz5
        if compile:
            self.orthogonalize = torch.compile(zeropower_via_newtonschulz5)
        for p in params:  # allocated once, not at every step
            self.state[p]["momentum_buffer"] = torch.zeros_like(p)

    def stack(self, group):
        """This rank's matrices' Nesterov momenta, wide, stacked; zeros (padding) after them, so
        that every rank's stack has the same size."""
        params = group["params"]
        wide = []
        for p in params[self.rank :: self.world_size]:
            g = p.grad.lerp(self.state[p]["momentum_buffer"], group["momentum"])
            if p.size(0) > p.size(1):
                g = g.T
            wide.append(g)
        size = -(-len(params) // self.world_size)
        wide += [params[0].new_zeros(sorted(params[0].shape))] * (size - len(wide))
        return torch.stack(wide)

    @torch.no_grad()
    def step(self):
        gathers = []
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["momentum_buffer"].lerp_(p.grad, 1 - group["momentum"])
            updates = self.orthogonalize(self.stack(group), dtype=self.ns_dtype)
            gather = dict(params=group["params"], lr=group["lr"], updates=[updates], handle=None)
            if self.world_size > 1:
                gather["updates"] = [torch.empty_like(updates) for _ in range(self.world_size)]
                gather["handle"] = dist.all_gather(gather["updates"], updates, async_op=True)
            gathers.append(gather)
        for gather in gathers:  # the gathers overlapped the Newton-Schulz work above
            if gather["handle"] is not None:
                gather["handle"].wait()
            for i, p in enumerate(gather["params"]):
                update = gather["updates"][i % self.world_size][i // self.world_size]
                rows, cols = p.shape
                if rows > cols:
                    update = update.T
                # sqrt(rows / cols) keeps the update's RMS independent of the shape
                p.add_(update, alpha=-gather["lr"] * max(1, rows / cols) ** 0.5)


# -----------------------------------------------------------------------------
# Model
def norm(x):
    return F.rms_norm(x, (x.size(-1),))  # parameter-free RMSNorm


class CastedLinear(nn.Linear):  # fp32 master weights, the matmul in the activations' dtype
    def __init__(self, in_features, out_features, zero_init=False):
        super().__init__(in_features, out_features, bias=False)
        if zero_init:  # output projections start at 0: each block starts as the identity
            self.weight.data.zero_()

    def forward(self, x):
        return F.linear(x, self.weight.type_as(x))


class Rotary(nn.Module):
    def __init__(self, head_dim, max_seq_len, half):
        super().__init__()
        self.half = half  # upstream's since 2024-12-31, in fp32: half the pairs keep position
        inv_freq = 10000 ** (-torch.arange(0, head_dim, 2).float() / head_dim)
        if half:
            inv_freq = (1 / 1024) ** torch.linspace(0, 1, head_dim // 4)
            inv_freq = torch.cat([inv_freq, inv_freq.new_zeros(head_dim // 4)])
        angles = torch.outer(torch.arange(max_seq_len).float(), inv_freq)
        self.register_buffer("cos", angles.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", angles.sin()[None, :, None, :], persistent=False)

    def forward(self, x):  # x: (B, T, num_heads, head_dim)
        dtype = x.dtype
        if self.half:
            dtype = torch.float32
        cos = self.cos[:, : x.size(1)].to(dtype)
        sin = self.sin[:, : x.size(1)].to(dtype)
        x1, x2 = x.to(dtype).chunk(2, dim=-1)
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1).type_as(x)


def document_window_mask(docs, window):
    """mask_mod: q sees k <= q of its document (docs[b, t]: documents begun by t) in the window."""

    def mask_mod(b, h, q, k):
        same_doc = docs[b, q] == docs[b, k]
        return (k <= q) & same_doc & (q // BLOCK - k // BLOCK < window // BLOCK)

    return mask_mod


def ordered(blocks):
    """(B, n, n) booleans as FlexAttention takes them: a count per query block, key blocks first."""
    counts = blocks.sum(-1, dtype=torch.int32)[:, None]
    return counts, torch.argsort(blocks.int(), dim=-1, descending=True, stable=True).int()[:, None]


def block_mask(docs, window):
    """From per-block document bounds (upstream since 2024-12-08), never the T x T mask: query
    block i sees key blocks in (i - window / BLOCK, i] sharing a document (full: no mask_mod)."""
    B, T = docs.shape
    n = -(-T // BLOCK)
    padded = torch.cat([docs, docs[:, -1:].expand(B, n * BLOCK - T)], dim=1)
    first = padded[:, ::BLOCK]  # each block's first and last document
    last = padded[:, BLOCK - 1 :: BLOCK]
    i = torch.arange(n, device=docs.device)
    near = (i[:, None] >= i) & (i[:, None] - i < window // BLOCK)
    full = near & (i[:, None] > i) & (first[:, None, :] == last[:, :, None])  # within one document
    partial = near & (last[:, None, :] >= first[:, :, None]) & ~full
    mask_mod = document_window_mask(docs, window)
    return BlockMask.from_kv_blocks(
        *ordered(partial), *ordered(full), BLOCK_SIZE=BLOCK, mask_mod=mask_mod, seq_lengths=(T, T)
    )


def attention_mask(idx, bos_id, window):
    """A BlockMask on GPUs; on CPUs (torch 2.13: no flex_attention backward) a (B, 1, T, T) bool."""
    docs = (idx == bos_id).cumsum(1)
    if idx.is_cuda:
        return block_mask(docs, window)
    b = torch.arange(idx.size(0), device=idx.device)[:, None, None, None]
    t = torch.arange(idx.size(1), device=idx.device)
    return document_window_mask(docs, window)(b, None, t[:, None], t)


try:  # compiles at its first call; here dynamo loads, and makes its cache folder
    flex_attention_compiled = torch.compile(flex_attention, dynamic=False)
except OSError as e:  # one line, not 20 of traceback
    fix = "set TORCHINDUCTOR_CACHE_DIR to a writable folder"
    sys.exit(f"train_gpt.py: {e.filename}: {e.strerror}; {fix}")


class CausalSelfAttention(nn.Module):
    def __init__(self, h, rotary, value_embed):
        super().__init__()
        self.num_heads = h.num_heads
        self.rotary = rotary
        self.q = CastedLinear(h.model_dim, h.model_dim)  # separate matrices, for Muon
        self.k = CastedLinear(h.model_dim, h.model_dim)
        self.v = CastedLinear(h.model_dim, h.model_dim)
        self.proj = CastedLinear(h.model_dim, h.model_dim, zero_init=True)
        self.lambdas = None  # upstream's: v and the value embedding, weighted, from 0.5 each
        self.ve_gate = None  # the CPU track's: v + ve_gate * ve, from 0
        if h.value_embed_mix == "lambdas":
            self.lambdas = nn.Parameter(torch.tensor([0.5, 0.5]))
        elif value_embed:
            self.ve_gate = nn.Parameter(torch.tensor(0.0))

    def forward(self, x, ve, mask):
        B, T, C = x.shape
        q = self.q(x).view(B, T, self.num_heads, -1)
        k = self.k(x).view(B, T, self.num_heads, -1)
        v = self.v(x).view(B, T, self.num_heads, -1)
        if self.lambdas is not None:
            v = self.lambdas[0] * v
        if ve is not None and self.lambdas is not None:
            v = v + self.lambdas[1] * ve.view_as(v)
        if ve is not None and self.ve_gate is not None:
            v = v + self.ve_gate * ve.view_as(v)
        q = self.rotary(norm(q)).transpose(1, 2)  # QK-norm keeps the attention logits bounded
        k = self.rotary(norm(k)).transpose(1, 2)
        v = v.transpose(1, 2)
        if isinstance(mask, BlockMask):
            y = flex_attention_compiled(q, k, v, block_mask=mask)
        else:  # CPU: written out, which inductor fuses (SDPA's CPU backward is slow in bf16)
            scores = (q @ k.transpose(-1, -2)).float() / q.size(-1) ** 0.5
            probs = scores.masked_fill(~mask, -math.inf).softmax(-1)  # fp32, as kernels do
            y = probs.type_as(v) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, h):
        super().__init__()
        hidden = 4 * h.model_dim
        fc_out = hidden
        self.dprelu = None
        if h.activation == "relugtz":  # [a, b] = fc(x): 3 x dim x hidden = ReLU²'s 8 x dim^2
            hidden = 8 * h.model_dim // 3
            fc_out = 2 * hidden
            self.dprelu = nn.Parameter(torch.tensor([0.5, 0.9, 0.0, 0.0]))  # alpha, beta, t, c
        self.fc = CastedLinear(h.model_dim, fc_out)
        self.proj = CastedLinear(hidden, h.model_dim, zero_init=True)

    def forward(self, x):
        if self.dprelu is None:
            return self.proj(F.relu(self.fc(x)).square())  # ReLU² (So et al., 2021)
        a, b = self.fc(x).chunk(2, dim=-1)
        alpha, beta, t, c = self.dprelu  # ReLUGTz: a two-sided, shifted ReLU of a, gating b
        return self.proj((beta * F.relu(a - t) - alpha * F.relu(t - a) + c) * b)


class Block(nn.Module):
    def __init__(self, h, rotary, value_embed, attention):
        super().__init__()
        self.attn = None
        if attention:
            self.attn = CausalSelfAttention(h, rotary, value_embed)
        self.mlp = MLP(h)
        self.lambdas = nn.Parameter(torch.tensor([1.0, 0.0]))  # learned mix of the embedding x0

    def forward(self, x, ve, x0, mask):
        x = self.lambdas[0] * x + self.lambdas[1] * x0
        if self.attn is not None:
            x = x + self.attn(norm(x), ve, mask)
        return x + self.mlp(norm(x))


# A band's rows (nonzero(), a data-dependent shape) stay in the compiled graph: no graph break, no
# eager log_softmax: 0.92x the CPU step (experiments/2026-12-05_HeadGraphMuonStack)
torch._dynamo.config.capture_dynamic_output_shape_ops = True


class AdaptiveSoftmax(nn.Module):
    """Exact over all ids (Grave et al., 2017). Ranked by training frequency, ids below cutoffs[0]
    get a logit each; each later band, one logit there times its own softmax, div_value times
    narrower per band, run only on the targets in it. No cutoffs: the full softmax."""

    def __init__(self, h, div_value=4):
        super().__init__()
        cutoffs = [int(c) for c in h.head_cutoffs.split(",") if c]
        self.bounds = [0, *cutoffs, h.vocab_size]
        self.softcap = h.logit_softcap
        self.head = CastedLinear(h.model_dim, self.bounds[1] + len(cutoffs), zero_init=True)
        self.tails = nn.ModuleList()
        for i, (lo, hi) in enumerate(zip(self.bounds[1:-1], self.bounds[2:])):
            width = h.model_dim // div_value ** (i + 1)
            down = CastedLinear(h.model_dim, width)
            self.tails.append(nn.Sequential(down, CastedLinear(width, hi - lo, zero_init=True)))
        self.register_buffer("rank_of", torch.arange(h.vocab_size))  # id -> frequency rank
        self.band_shares = [1.0] * len(cutoffs)  # each band's share of the training targets

    def rank_by(self, counts):
        order = np.argsort(-counts, kind="stable")
        self.rank_of[torch.from_numpy(order)] = torch.arange(len(order))
        bands = zip(self.bounds[1:-1], self.bounds[2:])
        self.band_shares = [counts[order[lo:hi]].sum() / counts.sum() for lo, hi in bands]

    def logits(self, layer, x):
        logits = layer(x)
        if self.softcap:  # tanh softcap (Gemma 2), in the activations' dtype as upstream's
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits.float()

    def forward(self, x, targets):
        """Summed -log p(target)."""
        if not self.tails:  # its backward is elementwise: log_softmax.gather's zeroes a buffer
            return F.cross_entropy(self.logits(self.head, x), targets, reduction="sum")
        ranks = self.rank_of[targets]
        head = F.log_softmax(self.logits(self.head, x), dim=-1)
        band = torch.bucketize(ranks, self.rank_of.new_tensor(self.bounds[1:-1]), right=True)
        in_head = torch.where(band == 0, ranks, self.bounds[1] + band - 1)  # band 0: the head
        logp = head.gather(1, in_head[:, None]).squeeze(1)
        for i, tail in enumerate(self.tails):
            rows = (band == i + 1).nonzero().squeeze(1)
            within = (ranks[rows] - self.bounds[i + 1])[:, None]
            tail_logp = F.log_softmax(self.logits(tail, x[rows]), dim=-1)
            logp = logp.index_add(0, rows, tail_logp.gather(1, within).squeeze(1))
        return -logp.sum()


class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.dtype = getattr(torch, h.dtype)  # of the activations
        self.bos_id = h.bos_id
        self.embed = nn.Embedding(min(h.embed_rows or h.vocab_size, h.vocab_size), h.model_dim)
        L, n = h.num_layers, h.num_value_embeds
        head_dim = h.model_dim // h.num_heads
        rotary = Rotary(head_dim, h.seq_len, h.rotary == "half")  # one table, shared by the layers
        no_attention = [int(i) for i in h.no_attention_layers.split(",") if i]
        blocks = [Block(h, rotary, i < n or i >= L - n, i not in no_attention) for i in range(L)]
        self.blocks = nn.ModuleList(blocks)
        self.skip_weights = nn.Parameter(torch.ones(L // 2))  # U-net: block i joins block L-1-i
        self.lm_head = AdaptiveSoftmax(h)  # untied from embed
        # Value embeddings (upstream's 2024-12 records, after Zhou et al.'s value residual) join the
        # values of the first n layers and, in the same order, the last n. Made last: the other
        # weights draw the same numbers whatever n is.
        rows = self.embed.num_embeddings
        self.value_embeds = nn.ModuleList(nn.Embedding(rows, h.model_dim) for _ in range(n))
        for table in [self.embed, *self.value_embeds]:
            table.to(getattr(torch, h.embed_dtype))

    def forward(self, idx, window, targets):  # the summed loss over the targets (callers divide)
        mask = attention_mask(idx, self.bos_id, window)
        # A table's row is an id's training frequency rank, ids past the last sharing it. Adam
        # leaves a row that never has a gradient as it is: when every training id has its own row
        # (Shakespeare: 18,950 ids, 20,480 rows), training is dense Adam's at 2/5 of its traffic
        rows = self.lm_head.rank_of[idx].clamp(max=self.embed.num_embeddings - 1)
        x = x0 = norm(self.embed(rows).to(self.dtype))
        L = len(self.blocks)
        num_skips = len(self.skip_weights)
        ve = [embed(rows).to(self.dtype) for embed in self.value_embeds]
        ve = ve + [None] * (L - 2 * len(ve)) + ve
        skips = []
        for i, block in enumerate(self.blocks):
            if i >= L - num_skips:
                x = x + self.skip_weights[i - (L - num_skips)] * skips.pop()
            x = block(x, ve[i], x0, mask)
            if i < num_skips:
                skips.append(x)
        return self.lm_head(norm(x).flatten(0, 1), targets.reshape(-1))


# -----------------------------------------------------------------------------
# Data: llm.c shards (256 int32 header: magic 20240520, version 1, token count; uint16 tokens)
def load_tokens(path):
    return np.fromfile(path, dtype="<u2", offset=256 * 4)


class DataLoader:
    """batch(step): its batch_size + 1 tokens, shards in order, wrapping; the ranks split them."""

    def __init__(self, files, sizes, batch_size):
        self.files = files
        self.batch_size = batch_size
        self.batches = [(n - 1) // batch_size for n in sizes]  # whole batches per shard
        self.shard = None

    def batch(self, step):
        shard = 0
        i = step % sum(self.batches)
        while i >= self.batches[shard]:
            i -= self.batches[shard]
            shard += 1
        if shard != self.shard:
            self.shard = shard
            self.tokens = load_tokens(self.files[shard])
        return self.tokens[i * self.batch_size : (i + 1) * self.batch_size + 1]


@torch.no_grad()
def evaluate(run, step):
    """Mean loss over every val prediction, in seq_len rows (the last may be shorter) dealt to the
    ranks: the same val set for any world size."""
    h = run.h
    n = len(run.val) - 1
    T = h.seq_len
    rows_per_forward = max(1, h.device_batch_size // T)
    starts = list(range(0, n, T))[run.rank :: run.world_size]
    window = run.windows[window_size(step, h)]
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    for i in range(0, len(starts), rows_per_forward):
        batch = starts[i : i + rows_per_forward]
        for length in sorted({min(T, n - s) for s in batch}):
            rows = [run.val[s : s + length + 1] for s in batch if min(T, n - s) == length]
            buf = torch.from_numpy(np.stack(rows).astype(np.int64)).to(run.device)
            loss_sum += run.compiled(buf[:, :-1], window, buf[:, 1:]).double()
    if run.world_size > 1:
        dist.all_reduce(loss_sum)
    return loss_sum.item() / n


# -----------------------------------------------------------------------------
# Optimizers and schedules
def build_optimizers(h, model, rank, world_size):
    """By name: Muon for the blocks' matrices; Adam for the embeddings, the head and the scalars."""
    embeds = [model.embed.weight, *model.value_embeds.parameters()]
    groups = [
        dict(name="embed", params=embeds, lr=h.embed_lr),
        dict(name="head", params=list(model.lm_head.head.parameters()), lr=h.head_lr),
        dict(name="tails", params=list(model.lm_head.tails.parameters()), lr=h.head_lr),
        dict(name="scalars", params=[p for p in model.parameters() if p.ndim < 2], lr=h.scalar_lr),
    ]
    groups = [g for g in groups if g["params"]]  # no tails without cutoffs
    adam = torch.optim.Adam(groups, betas=(h.adam_beta1, 0.95), fused=True)
    matrices = [p for p in model.blocks.parameters() if p.ndim == 2]
    muon = Muon(matrices, h.muon_lr, h.muon_momentum, model.dtype, rank, world_size, h.compile)
    for group in adam.param_groups + muon.param_groups:
        group["initial_lr"] = group["lr"]
    return dict(adam=adam, muon=muon)


def lr_multiplier(step, h):
    """Trapezoid: linear warmup, constant, then linear cooldown to 0 (Hagele et al., 2024)."""
    if step < h.warmup_steps:
        return (step + 1) / h.warmup_steps
    return min(1.0, (h.num_iterations - step) / max(1, int(h.cooldown_frac * h.num_iterations)))


def set_schedules(optimizers, step, h):
    """The step's values: every lr follows the trapezoid; Muon's momentum warms up from 0.85."""
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * lr_multiplier(step, h)
    frac = 1.0
    if h.muon_momentum_warmup_steps:
        frac = min(1.0, step / h.muon_momentum_warmup_steps)
    for group in optimizers["muon"].param_groups:
        group["momentum"] = (1 - frac) * 0.85 + frac * h.muon_momentum


def window_size(step, h):
    """Window warmup (upstream's 2024-11-24 record; its 2025-01-04 formula): linear in the step
    from window_min to window_max + BLOCK / 2, in whole blocks, rounded down."""
    x = step / h.num_iterations
    return BLOCK * int(((1 - x) * h.window_min + x * (h.window_max + BLOCK // 2)) // BLOCK)


# -----------------------------------------------------------------------------
# The step and the loop
@dataclass
class Run:
    """What the step, the loop and the evaluation read."""

    h: Hyperparameters
    model: nn.Module  # holds the weights; `compiled` and `ddp` wrap it
    compiled: nn.Module  # what evaluation calls: the model, torch.compile'd when h.compile
    ddp: nn.Module  # what training calls: `compiled`, in DDP when world_size > 1
    optimizers: dict
    loader: DataLoader
    val: np.ndarray  # the val tokens
    device: torch.device
    rank: int
    world_size: int
    slots: list  # this rank's rows of a step's batch, (first, end) per micro-step
    windows: dict  # a tensor per window size: a new size neither recompiles nor copies to the GPU
    logged_step: int = 0  # the last step logged, and its training time
    logged_ms: float = 0.0


def train_step(run, step):
    """One optimizer step. Returns the summed train loss and the grad norm; on a GPU, on their way
    to the host with an event that says when they are there."""
    h = run.h
    T = h.seq_len
    set_schedules(run.optimizers, step, h)
    tokens = run.loader.batch(step)
    window = run.windows[window_size(step, h)]
    train_loss = torch.zeros((), device=run.device)
    for micro_step, (first, end) in enumerate(run.slots):
        buf = torch.from_numpy(tokens[first * T : end * T + 1].astype(np.int64))
        if run.device.type == "cuda":
            buf = buf.pin_memory()  # so that the copy is asynchronous
        buf = buf.to(run.device, non_blocking=True)
        sync = nullcontext()
        if run.world_size > 1 and micro_step < len(run.slots) - 1:
            sync = run.ddp.no_sync()  # DDP all-reduces once, after the last micro-step
        with sync:
            loss = run.ddp(buf[:-1].view(-1, T), window, buf[1:].view(-1, T))
            # DDP averages over ranks, so this makes the gradient the mean over the step's tokens
            (loss * run.world_size / h.batch_size).backward()
        train_loss += loss.detach()
    if run.world_size > 1:
        dist.all_reduce(train_loss)
    grads = [p.grad for p in run.model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.get_total_norm(grads)
    for opt in run.optimizers.values():
        opt.step()
    run.model.zero_grad(set_to_none=True)
    queued = dict(step=step + 1, stats=torch.stack([train_loss, grad_norm]), done=None)
    if run.device.type == "cuda":
        queued["stats"] = queued["stats"].to("cpu", non_blocking=True)
        queued["done"] = torch.cuda.Event()
        queued["done"].record()
    return queued


def train_stretch(run, log, start, end, train_ms):
    """Steps start..end - 1, timed from a sync before the first to one after the last. On a GPU
    step N is logged once step N + 1 is queued: its numbers are then on the host, unwaited for."""
    cuda = run.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    queue = []
    for step in range(start, end):
        queue.append(train_step(run, step))
        if len(queue) > int(cuda):
            oldest = queue.pop(0)
            if oldest["done"] is not None:
                oldest["done"].synchronize()  # that step only: the GPU goes on with the next
            log_step(run, log, oldest, train_ms + 1000 * (time.perf_counter() - t0))
    if cuda:
        torch.cuda.synchronize()
    train_ms += 1000 * (time.perf_counter() - t0)
    for queued in queue:
        log_step(run, log, queued, train_ms)
    return train_ms


def train(run, log):
    """Stretches of steps, each followed by what is not timed: an evaluation (every val_loss_every
    steps, and at the end) and a checkpoint (every save_every steps). A resumed run starts late."""
    h = run.h
    step, train_ms = run.logged_step, run.logged_ms
    while step < h.num_iterations:
        end = h.num_iterations
        for every in (h.val_loss_every, h.save_every):
            if every:
                end = min(end, (step // every + 1) * every)
        train_ms = train_stretch(run, log, step, end, train_ms)
        step = end
        if step == h.num_iterations or (h.val_loss_every and step % h.val_loss_every == 0):
            val_loss = evaluate(run, step)
            log(
                f"step:{step}/{h.num_iterations} val_loss:{val_loss:.4f} "
                f"train_time:{train_ms:.0f}ms step_avg:{train_ms / step:.2f}ms"
            )
        if (h.save_every and step % h.save_every == 0) or (
            h.save_checkpoint and step == h.num_iterations
        ):
            save_checkpoint(run, log, step, train_ms)
    return val_loss, train_ms


# -----------------------------------------------------------------------------
# Harness: the step's log line, the compile warm-up, arguments and their ranges, shard checks,
# hardware, MFU, memory fit, the log file, signals, main. Nothing below changes what is trained.
def stop(message):  # every early stop: one line, no traceback
    sys.exit(f"train_gpt.py: {message}")


def log_step(run, log, queued, train_ms):
    h = run.h
    step = queued["step"]
    train_loss = queued["stats"][0].item() / h.batch_size
    grad_norm = queued["stats"][1].item()
    lr = lr_multiplier(step - 1, h) * h.muon_lr
    log(
        f"step:{step}/{h.num_iterations} train_loss:{train_loss:.4f} lr:{lr:.5f} "
        f"grad_norm:{grad_norm:.4f} train_time:{train_ms:.0f}ms step_avg:{train_ms / step:.2f}ms"
    )
    run.logged_step = step
    run.logged_ms = train_ms
    if not math.isfinite(train_loss):
        log(f"stopped: non-finite train loss at step {step}; try a lower lr or more warmup_steps")
        sys.exit(1)


def warm_up(run):
    """With torch.compile, 3 steps compile before the timed loop, then are undone: compiling is not
    training, and a step's data depends only on its number."""
    if not run.h.compile:
        return
    objs = [run.model, *run.optimizers.values()]
    initial = copy.deepcopy([obj.state_dict() for obj in objs])
    for step in range(3):
        train_step(run, step)
    for obj, state in zip(objs, initial):
        obj.load_state_dict(state)


def parse_args(argv):
    """--track=NAME applies its preset, then every --name=value sets one field."""
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            stop(f"arguments look like --name=value, got {arg!r}")
    overrides = dict(arg[2:].split("=", 1) for arg in argv)
    track = overrides.pop("track", Hyperparameters.track)
    if track not in TRACKS:
        stop(f"--track={track} is unknown; tracks: {', '.join(TRACKS)}")
    h = Hyperparameters(track=track)
    preset = dict(arg[2:].split("=", 1) for arg in TRACKS[track].split())
    names = [f.name for f in fields(h)]
    for name, value in (preset | overrides).items():
        if name not in names:
            stop(f"unknown hyperparameter --{name}; valid: {', '.join(names)}")
        kind = type(getattr(h, name))
        try:
            if kind is bool:
                value = {"true": True, "1": True, "false": False, "0": False}[value.lower()]
            setattr(h, name, kind(value))
        except (KeyError, ValueError):
            stop(f"--{name} wants a {kind.__name__}, got {value!r}")
    validate(h, set(overrides))
    return h


def validate(h, given=()):
    """Stops with one line naming the first value out of range; a rule on two values blames the
    one given (presets keep their rules)."""

    def need(ok, names, valid):
        name = next((n for n in names.split() if n in given), names.split()[0])
        if not ok:
            stop(f"--{name}={getattr(h, name)} is out of range; valid: {valid}")

    for name in ("num_iterations", "seq_len", "num_layers"):
        need(getattr(h, name) >= 1, name, ">= 1")
    for name in ("val_tokens", "val_loss_every", "save_every", "threads", "embed_rows"):
        need(getattr(h, name) >= 0, name, ">= 0")
    need(h.muon_momentum_warmup_steps >= 0, "muon_momentum_warmup_steps", ">= 0")
    for name in ("embed_lr", "head_lr", "scalar_lr", "muon_lr", "logit_softcap", "peak_flops"):
        need(0 <= getattr(h, name) < math.inf, name, "a finite number >= 0")
    for name in ("muon_momentum", "adam_beta1"):
        need(0 <= getattr(h, name) < 1, name, "in [0, 1)")
    choices = dict(activation="relu2 relugtz", value_embed_mix="lambdas gate", rotary="half full")
    choices |= dict(dtype="float32 bfloat16", embed_dtype="float32 bfloat16")
    for name, valid in choices.items():
        need(getattr(h, name) in valid.split(), name, valid.replace(" ", " or "))
    need(0 <= h.seed < 2**32, "seed", "in [0, 2^32) (0 = a fresh seed)")
    need(0 <= h.cooldown_frac <= 1, "cooldown_frac", "in [0, 1]")
    layers = h.no_attention_layers.split(",") if h.no_attention_layers else []
    need(all(i.isdigit() for i in layers), "no_attention_layers", "layer numbers, comma-separated")
    blocks = f"a positive multiple of {BLOCK}"
    need(h.window_min > 0 and h.window_min % BLOCK == 0, "window_min", blocks)
    steps = f"0 <= warmup_steps <= num_iterations={h.num_iterations}"
    need(0 <= h.warmup_steps <= h.num_iterations, "warmup_steps num_iterations", steps)
    rows = f"batch_size a multiple of seq_len={h.seq_len}"
    need(h.batch_size >= h.seq_len and h.batch_size % h.seq_len == 0, "batch_size seq_len", rows)
    fits = f"device_batch_size >= seq_len={h.seq_len}"
    need(h.device_batch_size >= h.seq_len, "device_batch_size seq_len", fits)
    bos = f"0 <= bos_id={h.bos_id} < vocab_size={h.vocab_size}"
    need(0 <= h.bos_id < h.vocab_size, "bos_id vocab_size", bos)
    unit = 4 if h.rotary == "half" else 2  # rotary turns pairs of dimensions; half: half of them
    heads = f"num_heads divides model_dim={h.model_dim} into heads of a multiple of {unit}"
    head_dim = h.model_dim // max(1, h.num_heads)
    even = h.num_heads >= 1 and head_dim * h.num_heads == h.model_dim and head_dim % unit == 0
    need(even, "num_heads model_dim", heads)
    ve = f"0 <= 2 x num_value_embeds <= num_layers={h.num_layers}"
    need(0 <= 2 * h.num_value_embeds <= h.num_layers, "num_value_embeds num_layers", ve)
    window = f"window_max a multiple of {BLOCK}, >= window_min={h.window_min}"
    grows = h.window_max % BLOCK == 0 and h.window_max >= h.window_min
    need(grows, "window_max window_min", window)
    validate_cutoffs(h, need)


def validate_cutoffs(h, need):
    cutoffs = h.head_cutoffs.split(",") if h.head_cutoffs else []
    ranks = [int(c) for c in cutoffs if c.isdigit()]
    ok = len(ranks) == len(cutoffs) and ranks == sorted(set(ranks))
    valid = f"increasing ranks in (0, vocab_size={h.vocab_size}), comma-separated; '' = none"
    need(ok and all(0 < r < h.vocab_size for r in ranks), "head_cutoffs vocab_size", valid)
    # band i projects to model_dim / 4^i dims; torch.compile fails on 1 (a data-dependent guard)
    bands = f"model_dim >= 2 x 4^{len(ranks)} (each adaptive softmax band at least 2 wide)"
    need(h.model_dim >= 2 * 4 ** len(ranks), "model_dim head_cutoffs", bands)


def data_command(pattern):
    """What builds or fetches the shards a pattern names; paths are relative to the repository."""
    command = "python data/fineweb.py <your text files>"
    for name, script in dict(shakespeare="shakespeare.py", fineweb="cached_fineweb10B.py").items():
        if name in pattern:
            command = f"python data/{script}"
    repo = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(os.path.join(repo, "data")) and repo != os.getcwd():  # run from elsewhere
        command = f"cd {repo} && {command}, then run from there"
    return command


def check_shard(path, h):
    """Token count of a shard; stops the run with one line naming the file if it cannot use it."""
    header = np.fromfile(path, dtype="<i4", count=256)
    fix = f"delete it and rebuild it with: {data_command(path)}"
    if len(header) < 256 or header[0] != 20240520 or header[1] != 1:
        stop(f"{path}: not an llm.c token shard (bad magic or version); {fix}")
    expected = 256 * 4 + 2 * int(header[2])
    size = os.path.getsize(path)
    if size != expected:
        stop(f"{path}: header says {expected} bytes, file has {size}: truncated; {fix}")
    tokens = load_tokens(path)  # checked now, not at the step or the evaluation that meets them
    if tokens.size and tokens.max() >= h.vocab_size:
        stop(f"{path} holds token id {tokens.max()}, not below vocab_size={h.vocab_size}; {fix}")
    if tokens.size and not (tokens == h.bos_id).any():
        stop(f"{path} holds no bos_id={h.bos_id}, which starts every document; {fix}")
    return int(header[2])


def find_shards(pattern, h):
    files = sorted(f for f in glob(pattern) if os.path.isfile(f))
    if not files:
        stop(f"no files match {pattern}; fetch or build them with: {data_command(pattern)}")
    return files, [check_shard(f, h) for f in files]


def load_data(h):
    """The train shards' loader and the val tokens: the first val_tokens + 1 (0 = all)."""
    files, sizes = find_shards(h.train_files, h)
    if min(sizes) <= h.batch_size:
        short = files[sizes.index(min(sizes))]
        stop(f"{short} has {min(sizes)} tokens, fewer than one step of batch_size={h.batch_size}")
    val_files, val_sizes = find_shards(h.val_files, h)
    fix = f"rebuild it with: {data_command(h.val_files)}"
    if sum(val_sizes) < 2:
        stop(f"{h.val_files} holds {sum(val_sizes)} tokens; a prediction needs 2; {fix}")
    if h.val_tokens >= sum(val_sizes):
        stop(
            f"--val_tokens={h.val_tokens} is out of range; valid: at most "
            f"{sum(val_sizes) - 1} (the predictions in {h.val_files}), or 0 = all of them"
        )
    val_tokens = np.concatenate([load_tokens(f) for f in val_files])
    if h.val_tokens:
        val_tokens = val_tokens[: h.val_tokens + 1]
    return DataLoader(files, sizes, h.batch_size), val_tokens


def split_batch(h, world_size):
    """A step's rows, dealt evenly to world_size x grad_accum_steps slots of <= device_batch_size
    tokens: slot k (micro-step k // world_size, rank k % world_size) has bounds[k]:bounds[k+1]."""
    num_rows = h.batch_size // h.seq_len
    rows_per_slot = h.device_batch_size // h.seq_len
    grad_accum_steps = math.ceil(num_rows / (world_size * rows_per_slot))
    slots = world_size * grad_accum_steps
    if num_rows < slots:
        stop(
            f"{num_rows} rows per step cannot fill {world_size} ranks x "
            f"{grad_accum_steps} micro-steps; raise batch_size or lower seq_len"
        )
    return grad_accum_steps, [k * num_rows // slots for k in range(slots + 1)]


def init_process(h):
    """This process's rank, world size and device; its threads; the process group."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    torch.set_num_threads(h.threads or max(1, os.cpu_count() // local_ranks))
    if not torch.cuda.is_available():
        keep_freed_memory()
        if world_size > 1:
            dist.init_process_group("gloo")
        return rank, world_size, torch.device("cpu")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.cuda.set_device(device)
    if world_size > 1:
        dist.init_process_group("nccl", device_id=device)
    return rank, world_size, device


def keep_freed_memory():
    """glibc hands big freed buffers back to the OS, then page-faults them in again every step:
    mmap (-3) and trim (-1) thresholds of 1 GiB keep them (1.24-1.30x the CPU track's tokens/s)."""
    if platform.libc_ver()[0] == "glibc":
        for option in (-3, -1):
            ctypes.CDLL("libc.so.6").mallopt(option, 1 << 30)


def device_name(device):
    """A GPU's name; a CPU's model and its bf16 matmul units (AVX512-BF16, AMX)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    info = ""
    if os.path.exists("/proc/cpuinfo"):
        info = open("/proc/cpuinfo").read()
    name = platform.machine()
    for line in info.splitlines():
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
    units = " ".join(f for f in ("avx512_bf16", "amx_bf16") if f" {f}" in info)
    return f"{name}; bf16 units: {units or 'none'}"


# Datasheet dense bf16 peaks (no sparsity), by a part of the GPU's name; the first that matches wins
PEAK_FLOPS = {"H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12}
PEAK_FLOPS |= {"A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12}


def peak_flops(h, dtype, device, n=2048):
    """Per-device peak FLOP/s for MFU and its source: given, a datasheet, or measured (lower)."""
    if h.peak_flops:
        return h.peak_flops, "given"
    for name, flops in PEAK_FLOPS.items():
        if name in device_name(device):
            return flops, f"{name} datasheet"
    a = torch.randn(n, n, device=device, dtype=dtype)
    threads = torch.get_num_threads()
    timer = torch.utils.benchmark.Timer("a @ a", globals=dict(a=a), num_threads=threads)
    return 2 * n**3 / timer.timeit(8).mean, f"measured, {n}^3 {h.dtype} matmul"  # warmed, synced


def flops_per_token(model, h):
    """Training FLOPs per token (PaLM, appendix B): 6 per matmul weight (a softmax band's by its
    share of the targets) plus 12 x layers x dim x the mean window. Embeddings are lookups."""
    matmul_params = sum(p.numel() for p in model.parameters() if p.ndim == 2)
    matmul_params -= sum(e.weight.numel() for e in [model.embed, *model.value_embeds])
    for share, tail in zip(model.lm_head.band_shares, model.lm_head.tails):
        matmul_params -= (1 - share) * sum(p.numel() for p in tail.parameters())
    mean_window = sum(window_size(s, h) for s in range(h.num_iterations)) / h.num_iterations
    attention_layers = sum(block.attn is not None for block in model.blocks)
    attention = 12 * attention_layers * h.model_dim * min(h.seq_len, mean_window)
    return round(6 * matmul_params + attention)


def memory_estimate(h, num_params, tokens):
    """Peak bytes, `tokens` per forward: 16 per parameter (fp32 weight, grad, state), 32 per token,
    layer and model dim (bf16 activations), 4 per token and vocab id (bf16 logits, their grad)."""
    return 16 * num_params + tokens * (32 * h.num_layers * h.model_dim + 4 * h.vocab_size)


def fit_to_memory(h, num_params, gpu_bytes):
    """(seq_len, device_batch_size), halved until the estimate fits 80% of gpu_bytes."""
    seq_len, tokens = h.seq_len, h.device_batch_size
    shortest = 2 * max(BLOCK, h.window_max)
    while memory_estimate(h, num_params, tokens) > 0.8 * gpu_bytes and tokens >= shortest:
        tokens //= 2
        seq_len = min(seq_len, tokens)
    return seq_len, tokens


def fit_gpu(h, model, device, log):
    """Shorter rows, in more micro-steps, where the default does not fit the GPU; logged."""
    num_params = sum(p.numel() for p in model.parameters())
    fit = fit_to_memory(h, num_params, torch.cuda.get_device_properties(device).total_memory)
    if fit != (h.seq_len, h.device_batch_size):
        need = memory_estimate(h, num_params, h.device_batch_size) / 2**30
        log(
            f"memory: device_batch_size={h.device_batch_size} needs ~{need:.1f} GiB, over 80% of "
            f"this GPU; (seq_len, device_batch_size) = {fit} needs "
            f"~{memory_estimate(h, num_params, fit[1]) / 2**30:.1f} GiB"
        )
        h.seq_len, h.device_batch_size = fit
        validate(h)


class Log:
    """log(msg): rank 0 writes msg to logs/<run_id>.txt, which starts with this source, then prints
    it; the file is line-buffered."""

    def __init__(self, master, run_id):
        self.path = f"logs/{run_id}.txt"
        self.master = master
        self.file = None
        self(f"{RULER}\n{code}{RULER}", echo=False)

    def __call__(self, msg, echo=True):
        if not self.master:
            return
        try:
            if self.file is None:  # the first line creates the file
                os.makedirs("logs", exist_ok=True)
                self.file = open(self.path, "w", buffering=1)
            self.file.write(msg + "\n")
        except OSError as e:
            stop(f"cannot write {self.path}: {e.strerror}; run where logs/ can be written")
        try:
            if echo:
                print(msg, flush=True)
        except BrokenPipeError:  # stdout closed (`| head`): print to nowhere; the log has it all
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def save_checkpoint(run, log, step, train_ms):
    """logs/<uuid>_step<N>.pt, written whole or not at all: the weights, the optimizers' state, the
    step, the hyperparameters, and this source, which rebuilds the model (tools/sample.py)."""
    if run.rank != 0:  # every rank holds the same weights and optimizer state
        return
    path = log.path.replace(".txt", f"_step{step}.pt")
    optimizers = {name: opt.state_dict() for name, opt in run.optimizers.items()}
    state = dict(code=code, hparams=asdict(run.h), step=step, train_ms=train_ms)
    state |= dict(model=run.model.state_dict(), optimizers=optimizers)
    try:
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)
    except OSError as e:
        stop(f"cannot write {path}: {e.strerror}; free space in logs/ or pass --save_every=0")
    log(f"checkpoint: {path}")


def resume(run, log):
    """Goes on from --resume's checkpoint, refused unless this script and configuration wrote it."""
    path = run.h.resume
    try:
        state = torch.load(path, map_location=run.device, weights_only=True)
        same_code = state["code"] == code
    except Exception as e:  # missing, truncated, not a checkpoint: torch raises many kinds
        stop(f"--resume={path}: not a readable checkpoint ({type(e).__name__}); pass one of logs/")
    if not same_code:
        stop(f"--resume={path} was written by another script; rebuild that one from the log")
    ours = asdict(run.h)
    runtime = ["seed", "compile", "threads", "peak_flops", "val_loss_every"]  # not what is trained
    runtime += ["resume", "save_every", "save_checkpoint"]
    for name, value in state["hparams"].items():
        if name not in runtime and ours.get(name) != value:
            stop(f"--resume={path} has {name}={value}, this run {ours.get(name)}; pass --{name}")
    run.model.load_state_dict(state["model"])
    for name, opt in run.optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    run.logged_step = state["step"]
    run.logged_ms = state["train_ms"]
    if run.logged_step >= run.h.num_iterations:
        stop(f"--resume={path} is at step {run.logged_step}, its run's end: nothing to resume")
    log(f"resumed: {path} at step {run.logged_step}")


def build_run(h, log):
    """Everything a step reads, on this process's device."""
    rank, world_size, device = init_process(h)
    fineweb = (h.track, h.seq_len) == ("8xh100_fineweb", Hyperparameters.seq_len)
    if fineweb and device.type == "cpu":  # ~47 GiB a 65,536-token row
        stop("the 8xh100_fineweb track needs GPUs; on a CPU pass --track=cpu_shakespeare")
    loader, val = load_data(h)
    h.seed = h.seed or int.from_bytes(os.urandom(4), "little") or 1
    torch.manual_seed(h.seed)
    model = GPT(h)
    if device.type == "cuda":
        fit_gpu(h, model, device, log)
    grad_accum_steps, bounds = split_batch(h, world_size)
    slots = [(bounds[k], bounds[k + 1]) for k in range(rank, len(bounds) - 1, world_size)]
    windows = {w: torch.tensor(w, device=device) for w in range(BLOCK, h.window_max + 1, BLOCK)}
    if model.lm_head.tails or h.embed_rows:
        counts = [np.bincount(load_tokens(f), minlength=h.vocab_size) for f in loader.files]
        model.lm_head.rank_by(sum(counts))
    model = model.to(device)
    compiled = model
    if h.compile:
        compiled = torch.compile(model)
    ddp = compiled
    if world_size > 1:  # buffers agree on every rank; gradients live in DDP's buckets
        device_ids = [device.index] if device.type == "cuda" else None
        ddp = DDP(compiled, device_ids, forward_sync_buffers=False, gradient_as_bucket_view=True)
    optimizers = build_optimizers(h, model, rank, world_size)
    run = Run(
        h, model, compiled, ddp, optimizers, loader, val, device, rank, world_size, slots, windows
    )
    if h.resume:
        resume(run, log)
    return run


def log_environment(run, log, peak, peak_source):
    h = run.h
    log(
        f"python:{platform.python_version()} torch:{torch.__version__} device:{run.device.type} "
        f"({device_name(run.device)}) world_size:{run.world_size} "
        f"grad_accum_steps:{len(run.slots)} threads:{torch.get_num_threads()} dtype:{h.dtype}"
    )
    if run.device.type == "cuda":
        log(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout.rstrip())
    log("hparams: " + " ".join(f"{k}={v}" for k, v in asdict(h).items()))
    log(
        f"params:{sum(p.numel() for p in run.model.parameters())} "
        f"flops_per_token:{flops_per_token(run.model, h)} peak_flops:{peak:.3g} ({peak_source}) "
        f"train_shards:{len(run.loader.files)} val_tokens:{len(run.val) - 1}"
    )
    log(f"log: {log.path}\n{RULER}")


def report(run, log, val_loss, train_ms, peak):
    h = run.h
    tokens_per_s = h.num_iterations * h.batch_size / (train_ms / 1000)
    mfu = flops_per_token(run.model, h) * tokens_per_s / (peak * run.world_size)
    peak_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if run.device.type == "cuda":
        peak_mem = torch.cuda.max_memory_allocated()
    log(
        f"peak_memory:{peak_mem // 2**20}MiB tokens_seen:{h.num_iterations * h.batch_size} "
        f"tokens_per_s:{tokens_per_s:.0f} mfu:{100 * mfu:.2f}%"
    )
    log(f"final_val_loss:{val_loss:.4f} train_time:{train_ms:.0f}ms")


def interrupted(run, log, interrupt):
    """The one place a run ends on Ctrl-C or a signal: its last log line, exit 128 + the signal."""
    step, ms = 0, 0.0
    if run is not None:
        step, ms = run.logged_step, run.logged_ms
    log(f"interrupted after step {step} ({ms:.0f}ms of training); the log above is complete")
    sys.stdout.flush()
    signum = signal.SIGINT
    if interrupt.args:
        signum = interrupt.args[0]
    os._exit(128 + signum)


def failure(run, log, error):
    """One line for what a run cannot go on from: a peer rank gone, or torch.compile failing."""
    if run is not None and run.world_size > 1 and "by peer" in str(error):  # gloo's words
        why = f"another rank stopped after step {run.logged_step}; this one stops too"
    elif "inductor" in str(error).lower() or "dynamo" in str(error).lower():
        why = "torch.compile failed: pass --compile=false, or, if its cache is the cause, point "
        why += "TORCHINDUCTOR_CACHE_DIR at a writable empty folder"
    else:
        raise error
    # the first line that says what happened, not the backend's "backend='inductor' raised:"
    lines = str(error).splitlines()
    cause = next((line for line in lines if line.strip() and not line.endswith(" raised:")), "")
    log(f"stopped: {why} ({cause[:200]})")
    return why


def on_signal(signum, frame):  # SIGTERM (schedulers, `timeout`), SIGHUP: stop as Ctrl-C does
    raise KeyboardInterrupt(signum)


def main():
    h = parse_args(sys.argv[1:])
    log = Log(os.environ.get("RANK", "0") == "0", uuid.uuid4())  # first: nothing lost if it fails
    run = None
    try:
        run = build_run(h, log)
        if h.compile:  # so that a person waiting knows why; 2 EPYC cores: 41 s cold, 4 s cached
            log("warm-up: torch.compile builds the step: 3 steps, then undone (~40 s, 2 CPU cores)")
        t0 = time.perf_counter()
        warm_up(run)
        log(f"warm-up: {time.perf_counter() - t0:.1f} s")
        peak, peak_source = peak_flops(h, run.model.dtype, run.device)
        log_environment(run, log, peak, peak_source)
        val_loss, train_ms = train(run, log)
    except KeyboardInterrupt as interrupt:
        interrupted(run, log, interrupt)
    except SystemExit as early:  # its one line goes into the log too
        if isinstance(early.code, str):
            log(early.code, echo=False)
        raise
    except RuntimeError as error:
        stop(failure(run, log, error))
    report(run, log, val_loss, train_ms, peak)
    if run.world_size > 1:
        del run  # the reducer must go before the process group, or gloo aborts at exit (torch 2.13)
        gc.collect()
        dist.destroy_process_group()
        sys.stdout.flush()  # even so, gloo's threads aborted 1 of 38 CPU runs at exit: skip that
        os._exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # a closed terminal
    main()
