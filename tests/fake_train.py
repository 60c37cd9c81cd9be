"""A stand-in for train_gpt.py in the tools' tests: writes a well-formed log at once, no torch.

    python fake_train.py --seed=S [--loss=L] [--ms=M] [--sleep=SECONDS]

Final val loss L + 0.01 * (S % 5), training time M ms + S; --sleep waits before the step lines (a
slow arm). As train_gpt.py does, a bad value is one line on stderr and exit 1, and Ctrl-C (SIGINT)
logs an "interrupted" line and exits 130.
"""

import os
import sys
import time
import uuid


def value(name, kind, default):
    text = args.get(name, default)
    try:
        return kind(text)
    except (TypeError, ValueError):  # TypeError: a required one missing
        sys.exit(f"fake_train.py: --{name} wants a {kind.__name__}, got {text!r}")


args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
seed, loss, ms, sleep = (
    value("seed", int, None),
    value("loss", float, 4.0),
    value("ms", int, 1000),
    value("sleep", float, 0),
)
final, total = loss + 0.01 * (seed % 5), ms + seed
run_id = str(uuid.uuid4())
os.makedirs("logs", exist_ok=True)
ruler = "=" * 100
with open(__file__) as f:
    source = f.read()
head = [
    ruler,
    source + ruler,
    f"hparams: track=cpu_shakespeare seed={seed} loss={loss} ms={ms}",
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
        time.sleep(sleep)
    except KeyboardInterrupt:
        f.write("interrupted after step 0 (0ms of training); the log above is complete\n")
        sys.exit(130)
    f.write("\n".join(steps) + "\n")
