#!/usr/bin/python3
"""The reference point of tools/bench/train_step.sh: PyTorch-Python eager, on the same LibTorch as
engram (Debian's python3-torch is built from the same 1.13.1 sources as libtorch1.13), training
the same GPT-2-style decoder the same way as bench_train_step: learned positions, pre-LN blocks,
fused qkv (as GPT-2 does), tanh-GELU MLP of 4d, tied head, GPT-2 init, AdamW (lr 1e-3, weight
decay 0.01), cross-entropy on random tokens, batch B. Prints one JSON line like bench_train_step,
with the 2048^3 matmul GFLOP/s of the same run.

This is a measuring stick for the benchmark, not part of engram: nothing in the build or the
tests uses it. Needs Debian's python3-torch (apt-get install python3-torch).

    /usr/bin/python3 tools/bench/train_step_eager.py --layers 2 --d 128 --heads 4 --seq 128 \
        --vocab 4096 --batch 16 --threads 2 --steps 20
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, causal):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        attn = scores.masked_fill(causal, float("-inf")).softmax(-1) @ v
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


class Decoder(nn.Module):
    def __init__(self, vocab, d, heads, layers, seq):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.register_buffer("causal", torch.ones(seq, seq, dtype=torch.bool).triu(1))
        for name, p in self.named_parameters():  # GPT-2 init
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln" not in name:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(t))
        for block in self.blocks:
            x = block(x, self.causal[:t, :t])
        return F.linear(self.ln_f(x), self.wte.weight)  # tied head


def matmul_gflops():
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(3):
        torch.mm(a, b)
    return 3 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in [("layers", 2), ("d", 128), ("heads", 4), ("vocab", 4096), ("seq", 128),
                          ("batch", 16), ("threads", 2), ("steps", 20), ("warmup", 3)]:
        parser.add_argument("--" + name, type=int, default=default)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(1)
    model = Decoder(a.vocab, a.d, a.heads, a.layers, a.seq).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    ids = torch.randint(a.vocab, (a.batch, a.seq + 1))
    inputs, targets = ids[:, :-1], ids[:, 1:].reshape(-1)

    def step():
        optimizer.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(inputs).reshape(-1, a.vocab), targets)
        loss.backward()
        optimizer.step()

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    elapsed = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    tokens_per_s = a.batch * a.seq * a.steps / elapsed
    print(json.dumps({"bench": "train_step_eager", "torch": torch.__version__, "layers": a.layers, "d": a.d,
                      "heads": a.heads, "vocab": a.vocab, "seq": a.seq, "batch": a.batch, "threads": a.threads,
                      "parameters": params, "steps": a.steps, "tokens_per_s": round(tokens_per_s),
                      "gflops": round(6 * params * tokens_per_s / 1e9, 2),
                      "matmul_gflops": round(matmul_gflops(), 1)}))


if __name__ == "__main__":
    main()
