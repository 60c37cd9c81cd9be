"""A stand-in for train_gpt.py in the tools' tests: writes a well-formed log at once, no torch.

    python fake_train.py --seed=S [--loss=L] [--ms=M] [--sleep=SECONDS]

Final val loss L + 0.01 * (S % 5), training time M ms + S; --sleep waits before the step lines (a
slow arm). As train_gpt.py does, its flags are the fields of a Hyperparameters dataclass read by
parse_args, and a bad flag or value is one line on stderr and exit 1 (a seed is required, in
[0, 2^32)); Ctrl-C (SIGINT) logs an "interrupted" line and exits 130.
"""

import dataclasses
import os
import sys
import time
import uuid


@dataclasses.dataclass
class Hyperparameters:
    seed: int = -1  # required
    loss: float = 4.0
    ms: int = 1000
    sleep: float = 0.0


def parse_args(argv):
    h = Hyperparameters()
    names = [f.name for f in dataclasses.fields(h)]
    for arg in argv:
        name, sep, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep or name not in names:
            sys.exit(f"fake_train.py: unknown argument {arg!r}; valid: {', '.join(names)}")
        kind = type(getattr(h, name))
        try:
            setattr(h, name, kind(value))
        except ValueError:
            sys.exit(f"fake_train.py: --{name} wants a {kind.__name__}, got {value!r}")
    if not 0 <= h.seed < 2**32:
        sys.exit(f"fake_train.py: --seed={h.seed} is out of range; valid: in [0, 2^32)")
    return h


def main():
    h = parse_args(sys.argv[1:])
    final, total = h.loss + 0.01 * (h.seed % 5), h.ms + h.seed
    run_id = str(uuid.uuid4())
    os.makedirs("logs", exist_ok=True)
    ruler = "=" * 100
    with open(__file__) as f:
        source = f.read()
    head = [
        ruler,
        source + ruler,
        f"hparams: track=cpu_shakespeare seed={h.seed} loss={h.loss} ms={h.ms}",
        "params:1 flops_per_token:6 peak_flops:1e+09 (given) train_shards:1 val_tokens:155120",
        f"log: logs/{run_id}.txt",
        ruler,
    ]
    avg, norm = f"step_avg:{total / 2:.2f}ms", "grad_norm:1.0000"
    steps = [
        f"step:1/2 train_loss:{final + 1:.4f} lr:0.01000 {norm} train_time:{total // 2}ms {avg}",
        f"step:2/2 train_loss:{final + 0.5:.4f} lr:0.00500 {norm} train_time:{total}ms {avg}",
        f"step:2/2 val_loss:{final:.4f} train_time:{total}ms {avg}",
        f"peak_memory:100MiB tokens_seen:4096 tokens_per_s:{4096 * 1000 // total} mfu:1.00%",
        f"final_val_loss:{final:.4f} train_time:{total}ms",
    ]
    with open(f"logs/{run_id}.txt", "w") as f:
        try:
            f.write("\n".join(head) + "\n")
            f.flush()
            print(f"log: logs/{run_id}.txt", flush=True)
            time.sleep(h.sleep)
        except KeyboardInterrupt:
            f.write("interrupted after step 0 (0ms of training); the log above is complete\n")
            sys.exit(130)
        f.write("\n".join(steps) + "\n")


if __name__ == "__main__":
    main()
