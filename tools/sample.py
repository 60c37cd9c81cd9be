"""Text from a trained model: rebuilds it from the source its checkpoint embeds, then samples.

    python tools/sample.py logs/<uuid>_step<N>.pt [--prompt TEXT] [--tokens N]
                           [--temperature T] [--top_k K] [--seed S]

The checkpoint (train_gpt.py --save_checkpoint=true; ./run.sh on a CPU writes one) holds the
script that trained it, so a record's or a fork's checkpoint works as well as today's: the script
is loaded as a module (its main does not run), its parse_args rebuilds the hyperparameters and its
GPT the model. The next token's distribution is read at the model's head: the full softmax, or an
adaptive softmax's head and bands (ids ranked by frequency). Decoding uses GPT-2's tokenizer from
the offline BPE file (data/tokenizer.py).
"""

import argparse
import os
import sys
import tempfile

import torch
import torch.nn.functional as F
from layout import ROOT, load_script


def rebuild(path):
    """The model a checkpoint holds, built by the script it embeds; stops with one line if not."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        source, hparams, weights = state["code"], state["hparams"], state["model"]
    except Exception as e:  # missing, truncated, not a checkpoint
        sys.exit(
            f"sample: {path}: not a readable checkpoint ({type(e).__name__}); pass a .pt of logs/"
        )
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "checkpoint_script.py")
        with open(script, "w") as f:
            f.write(source)
        module = load_script(script, "checkpoint_script")
    args = [f"--{name}={value}" for name, value in hparams.items()]
    args.append("--compile=false")
    if "dtype" in hparams:  # eager bf16 is slow on CPUs; the weights are fp32 either way
        args.append("--dtype=float32")
    h = module.parse_args(args)
    model = module.GPT(h)
    model.load_state_dict(weights)
    return model.eval(), h


def next_logprobs(model, x):
    """log p(id) for every id, from the head's input x (the last position's final hidden state)."""
    head = model.lm_head
    tails = getattr(head, "tails", None)
    if not tails:
        return F.log_softmax(head.logits(head.head, x), dim=-1)
    lead = F.log_softmax(head.logits(head.head, x), dim=-1)
    by_rank = [lead[: head.bounds[1]]]
    for i, tail in enumerate(tails):  # a band: its logit in the head, then its own softmax
        by_rank.append(lead[head.bounds[1] + i] + F.log_softmax(head.logits(tail, x), dim=-1))
    return torch.cat(by_rank)[head.rank_of]


@torch.no_grad()
def generate(model, h, ids, tokens, vocab, temperature, top_k, generator):
    """`tokens` more ids after `ids`, each drawn from the model's distribution given the last
    seq_len ids (ids from vocab on, padding, never), sharpened by temperature, cut to the top_k."""
    captured = []

    def capture(module, args):  # the head's input: the final hidden states
        captured.append(args[0])

    hook = model.lm_head.register_forward_pre_hook(capture)
    window = torch.tensor(h.window_max)
    ids = list(ids)
    for _ in range(tokens):
        context = torch.tensor(ids[-h.seq_len :])[None]
        captured.clear()
        model(context, window, torch.zeros_like(context))
        logp = next_logprobs(model, captured[0][-1].float()).float()
        logp[vocab:] = -float("inf")
        if top_k:
            cut = torch.topk(logp, min(top_k, logp.numel())).values[-1]
            logp = logp.masked_fill(logp < cut, -float("inf"))
        probs = torch.softmax(logp / max(temperature, 1e-6), dim=-1)
        ids.append(int(torch.multinomial(probs, 1, generator=generator)))
    hook.remove()
    return ids


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="logs/<uuid>_step<N>.pt")
    ap.add_argument("--prompt", default="", help="text to continue (default: a new document)")
    ap.add_argument("--tokens", type=int, default=100, help="how many tokens to generate")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top_k", type=int, default=200, help="0 = every id")
    ap.add_argument("--seed", type=int, default=1, help="the same seed gives the same text")
    args = ap.parse_args(argv)
    if args.tokens < 0 or args.temperature < 0 or args.top_k < 0:
        sys.exit("sample: --tokens, --temperature and --top_k must be >= 0")
    sys.path.insert(0, os.path.join(ROOT, "data"))  # data/'s scripts import one another
    tokenizer = load_script(os.path.join(ROOT, "data", "tokenizer.py"), "tokenizer")
    encoding = tokenizer.fallback_encoding()
    model, h = rebuild(args.checkpoint)
    ids = [h.bos_id] + encoding.encode_ordinary(args.prompt)
    if max(ids) >= h.vocab_size:
        sys.exit(f"sample: --prompt has GPT-2 ids this model's vocab_size={h.vocab_size} lacks")
    generator = torch.Generator().manual_seed(args.seed)
    vocab = encoding.n_vocab
    out = generate(model, h, ids, args.tokens, vocab, args.temperature, args.top_k, generator)
    text = encoding.decode(out[1:])
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
