"""Train the demo story model: a stories260K-shaped Llama on the synthetic grammar of corpus.py.

    pip install '.[train]'
    python -m deeploy_dsl.demo.train --out models/tinystories-demo

Everything follows from `--seed`: the tokenizer's sample, the training stories and the validation
stories come from three different corpus seeds, `torch.manual_seed` fixes the initialisation and
the order of the batches, and a fixed thread count (one by default) fixes the floating-point
reductions, so a second run reproduces the first. The output directory gets the HF-layout `model.safetensors` (float32, q/k
rows permuted for rotate_half RoPE, no lm_head since it is tied), `config.json`, `tok512.bin` and
`train.json` (the settings and the losses the model card quotes).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.llama2c import permute_rotary, write_safetensors
from . import bpe
from . import corpus
from .card import write_card


@dataclass(frozen=True)
class Shape:
    """The model's dims; the defaults are stories260K's."""
    dim: int = 64
    layers: int = 5
    heads: int = 8
    kv_heads: int = 4
    hidden: int = 172
    vocab: int = 512
    context: int = 512
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0


@dataclass(frozen=True)
class Settings:
    seed: int = 1
    steps: int = 1000
    batch: int = 32
    seq_len: int = 256
    lr: float = 4e-3
    min_lr: float = 4e-4
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    tokenizer_mb: float = 3.0  # the BPE sample
    train_mb: float = 40.0  # enough stories that no window repeats often
    val_stories: int = 2000
    # one thread: on a 2-core machine with the other core busy, two threads took 4.5 s a step against
    # 1.1 s for one (threads wait for each other); one thread is also the surest way to bit-identical runs
    threads: int = 1


# ---- the model ------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(s: Shape) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [context, head_size/2] for llama2.c's interleaved pairs, as float_model.rope_angles."""
    hs = s.dim // s.heads
    freq = 1.0 / (s.rope_theta ** (np.arange(0, hs, 2, dtype=np.float64) / hs))
    ang = np.outer(np.arange(s.context, dtype=np.float64), freq)
    return torch.tensor(np.cos(ang), dtype=torch.float32), torch.tensor(np.sin(ang), dtype=torch.float32)


def rope(x, cos, sin):
    """Rotate interleaved pairs (x0, x1) of x [b, t, heads, hs]; cos/sin [t, hs/2]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.s, self.hs = s, s.dim // s.heads
        self.attn_norm, self.ffn_norm = RMSNorm(s.dim, s.norm_eps), RMSNorm(s.dim, s.norm_eps)
        self.wq = nn.Linear(s.dim, s.dim, bias=False)
        self.wk = nn.Linear(s.dim, s.kv_heads * self.hs, bias=False)
        self.wv = nn.Linear(s.dim, s.kv_heads * self.hs, bias=False)
        self.wo = nn.Linear(s.dim, s.dim, bias=False)
        self.w1 = nn.Linear(s.dim, s.hidden, bias=False)  # gate
        self.w2 = nn.Linear(s.hidden, s.dim, bias=False)  # down
        self.w3 = nn.Linear(s.dim, s.hidden, bias=False)  # up

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        s, hs = self.s, self.hs
        h = self.attn_norm(x)
        q = rope(self.wq(h).view(b, t, s.heads, hs), cos, sin)
        k = rope(self.wk(h).view(b, t, s.kv_heads, hs), cos, sin)
        v = self.wv(h).view(b, t, s.kv_heads, hs)
        group = s.heads // s.kv_heads  # grouped-query attention: query head i reads kv head i // group
        k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.wo(o.transpose(1, 2).reshape(b, t, s.dim))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.s = s
        self.embed = nn.Embedding(s.vocab, s.dim)
        self.blocks = nn.ModuleList(Block(s) for _ in range(s.layers))
        self.norm = RMSNorm(s.dim, s.norm_eps)
        cos, sin = rope_tables(s)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        # llama2.c's init: N(0, 0.02), residual projections scaled down by the depth
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * s.layers) if name.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x, self.cos[:t], self.sin[:t])
        return self.norm(x) @ self.embed.weight.T  # tied classifier

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---- export ---------------------------------------------------------------------------------------


def hf_tensors(m: Llama) -> dict[str, np.ndarray]:
    """HF LlamaForCausalLM names; q/k rows go from interleaved pairs to rotate_half order."""
    s = m.s
    g = lambda p: p.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    out = {"model.embed_tokens.weight": g(m.embed.weight), "model.norm.weight": g(m.norm.weight)}
    for i, b in enumerate(m.blocks):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = g(b.attn_norm.weight)
        out[p + "self_attn.q_proj.weight"] = permute_rotary(g(b.wq.weight), s.heads)
        out[p + "self_attn.k_proj.weight"] = permute_rotary(g(b.wk.weight), s.kv_heads)
        out[p + "self_attn.v_proj.weight"] = g(b.wv.weight)
        out[p + "self_attn.o_proj.weight"] = g(b.wo.weight)
        out[p + "post_attention_layernorm.weight"] = g(b.ffn_norm.weight)
        out[p + "mlp.gate_proj.weight"] = g(b.w1.weight)
        out[p + "mlp.up_proj.weight"] = g(b.w3.weight)
        out[p + "mlp.down_proj.weight"] = g(b.w2.weight)
    return out


def hf_config(s: Shape) -> dict:
    """The same keys as stories260K's config.json."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": s.vocab,
        "hidden_size": s.dim, "intermediate_size": s.hidden, "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads,
        "max_position_embeddings": s.context, "rms_norm_eps": s.norm_eps, "rope_theta": s.rope_theta,
        "hidden_act": "silu", "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def export(m: Llama, tok, out: Path, run: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(hf_tensors(m), out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(hf_config(m.s), indent=2) + "\n")
    bpe.write(tok, out / "tok512.bin")
    (out / "train.json").write_text(json.dumps(run, indent=2) + "\n")
    write_card(out, run)  # the card states this run's figures, whatever torch rounded to


# ---- data -----------------------------------------------------------------------------------------


def corpus_seeds(seed: int) -> dict[str, int]:
    """Three disjoint generator seeds: tokenizer sample, training stories, validation stories."""
    return {"tokenizer": 3 * seed, "train": 3 * seed + 1, "val": 3 * seed + 2}


def encode_all(enc: bpe.FastEncoder, texts: list[str]) -> np.ndarray:
    """Every story BOS first, one after the other (as llama2.c's pretokenized shards)."""
    return np.fromiter((i for t in texts for i in enc.encode(t)), dtype=np.int64)


def val_windows(ids: np.ndarray, seq_len: int) -> torch.Tensor:
    """Non-overlapping windows of seq_len + 1 ids: a fixed validation set."""
    n = (len(ids) - 1) // seq_len
    return torch.from_numpy(np.stack([ids[i * seq_len:i * seq_len + seq_len + 1] for i in range(n)]))


@torch.no_grad()
def evaluate(m: Llama, windows: torch.Tensor, batch: int = 64) -> float:
    """Mean cross-entropy in nats per token over the windows."""
    m.eval()
    total, n = 0.0, 0
    for i in range(0, len(windows), batch):
        w = windows[i:i + batch]
        logits = m(w[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum").item()
        n += w[:, 1:].numel()
    m.train()
    return total / n


def lr_at(step: int, st: Settings) -> float:
    """Linear warm-up, then cosine decay to min_lr."""
    if step < st.warmup:
        return st.lr * (step + 1) / st.warmup
    p = (step - st.warmup) / max(1, st.steps - st.warmup)
    return st.min_lr + 0.5 * (st.lr - st.min_lr) * (1 + math.cos(math.pi * p))


def train(st: Settings, shape: Shape, out: Path, log=print) -> dict:
    t0 = time.perf_counter()
    torch.set_num_threads(st.threads)
    torch.manual_seed(st.seed)
    seeds = corpus_seeds(st.seed)
    tok = bpe.train(corpus.generate_bytes(seeds["tokenizer"], st.tokenizer_mb), shape.vocab)
    enc = bpe.FastEncoder(tok)
    train_ids = torch.from_numpy(encode_all(enc, corpus.generate_bytes(seeds["train"], st.train_mb)))
    val = val_windows(encode_all(enc, corpus.generate(seeds["val"], st.val_stories)), st.seq_len)
    log(f"tokenizer {len(tok.vocab)} pieces; {len(train_ids):,} training tokens, "
        f"{val.numel():,} validation tokens ({time.perf_counter() - t0:.0f} s)")
    m = Llama(shape)
    decay = [p for p in m.parameters() if p.dim() == 2]
    no_decay = [p for p in m.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": st.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=st.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(st.seed)  # the batch order
    train_loss = float("nan")
    for step in range(st.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, st)
        start = torch.randint(0, len(train_ids) - st.seq_len - 1, (st.batch,), generator=gen)
        w = torch.stack([train_ids[s:s + st.seq_len + 1] for s in start.tolist()])
        logits = m(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, shape.vocab), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), st.grad_clip)
        opt.step()
        # an exponential average of the batch losses, reported as the training loss
        train_loss = loss.item() if step == 0 else 0.95 * train_loss + 0.05 * loss.item()
        if step % 100 == 0 or step == st.steps - 1:
            log(f"step {step:5d}  lr {lr_at(step, st):.2e}  train loss {train_loss:.4f}  "
                f"({time.perf_counter() - t0:.0f} s)")
    val_loss = evaluate(m, val)
    seconds = time.perf_counter() - t0
    log(f"validation loss {val_loss:.4f} nats/token over {val.numel() - len(val):,} tokens; {seconds:.0f} s in all")
    run = {"settings": asdict(st), "shape": asdict(shape), "corpus_seeds": seeds, "params": m.n_params(),
           "train_tokens": len(train_ids), "val_tokens": val.numel() - len(val),
           "final_train_loss": round(train_loss, 4), "val_loss": round(val_loss, 4),
           "torch": torch.__version__.split("+")[0]}
    export(m, tok, out, run)
    return {**run, "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    d = Settings()
    ap = argparse.ArgumentParser(description="Train the demo story model (see models/tinystories-demo/README.md).")
    ap.add_argument("--out", type=Path, required=True, help="the model directory to write")
    for f, v in asdict(d).items():
        ap.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    a = vars(ap.parse_args(argv))
    out = a.pop("out")
    r = train(Settings(**a), Shape(), out, log=lambda s: print(s, flush=True))
    print(json.dumps({"out": str(out), "val_loss": r["val_loss"], "seconds": round(r["seconds"])}))


if __name__ == "__main__":
    main(sys.argv[1:])
