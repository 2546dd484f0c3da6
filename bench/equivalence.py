"""Before/after equivalence of the generated C: logits of 4 prompts x 128 tokens (prefill on) from the c engine on the
host and from QEMU on 1 and 8 harts, for the example deployments and a few variants; decode instructions per token;
model.c's size. A refactor of the code generator must leave every digest unchanged.

    python bench/equivalence.py --out DIR            # record: DIR/equivalence.json
    python bench/equivalence.py --check DIR/equivalence.json   # compare against a record, print what differs

The logits are compared as sha256 digests of their bytes (identical digests: identical integers); the instruction
counts are the mean per decode token of each prompt, per hart.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from deeploy_dsl.backend.codegen import render
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.engines.qemu import build_rv32, decode_instret, run_elf
from deeploy_dsl.engines.runner import build_c, run_golden_compiled

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared/models/stories260K/reference.json"
N_NEW = 128
S260K, TINY = REPO / "deployments/stories260k.dply", REPO / "deployments/tinystories.dply"
VARIANTS = {  # name -> (deployment, -D overrides)
    "stories260k": (S260K, []),
    "tinystories": (TINY, []),
    "stories260k-int4": (S260K, ["quantize.weights=int4 per_group(32)"]),
    "stories260k-npu": (S260K, ["map.layers[*].attn.qkv=npu", "map.layers[*].mlp.*=npu"]),
    "stories260k-static-swiglu": (S260K, ["quantize.dynamic=none"]),
}
# a function definition at the top level of model.c: a declarator at column 0 whose parameter list opens a body
FUNC = re.compile(r"^(?!typedef\b|struct\b|return\b)[A-Za-z_][\w\s\*]*?\b\w+\s*\([^;{]*\)\s*\{")


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<i4").tobytes()).hexdigest()[:32]


def prompts() -> list[str]:
    return [c["prompt"] for c in json.loads(REFERENCE.read_text())["cases"]]


def model_c_size(files: dict[str, str]) -> dict:
    text = files["model.c"]
    return {"lines": text.count("\n"), "functions": sum(bool(FUNC.match(ln)) for ln in text.splitlines())}


def host_logits(exe: Path, pids: list[int], vocab: int, tmp: Path) -> tuple[list[int], np.ndarray]:
    out = tmp / "logits.bin"
    out.unlink(missing_ok=True)
    res = subprocess.run([str(exe), "--ids", " ".join(map(str, pids)), "--tokens", str(N_NEW), "--print-ids",
                          "--no-stop", "--logits", str(out)], capture_output=True, text=True, check=True)
    ids = [int(t) for t in next(ln for ln in res.stdout.splitlines() if ln.startswith("ids:")).split()[1:]]
    return ids, np.fromfile(out, dtype="<i4").reshape(-1, vocab)


def measure(name: str, dply: Path, overrides: list[str], golden: bool) -> dict:
    c = compile_deployment(dply, overrides)
    vocab = c.dep.model.dims.vocab
    rec = {"model_c": model_c_size(render(c)), "prompts": {}}
    with tempfile.TemporaryDirectory(prefix="deeploy-eq-") as tmp:
        tmp = Path(tmp)
        exe = build_c(c, tmp / "host")
        elf = build_rv32(c, tmp / "rv32")
        for prompt in prompts():
            pids = c.tokenizer.encode(prompt, bos=True)
            ids, lg = host_logits(exe, pids, vocab, tmp)
            row = {"prompt_ids": pids, "ids": ids, "host": digest(lg)}
            if golden:
                gids, glg = run_golden_compiled(c, pids, N_NEW, stop=False, prefill=True)
                row["golden"] = digest(glg)
                row["golden_ids_match"] = gids == ids
            for cores in (1, 8):
                r = run_elf(elf, pids, N_NEW, vocab, stop=False, cores=cores, prefill=True)
                row[f"qemu{cores}"] = digest(r.logits)
                row[f"qemu{cores}_ids_match"] = r.ids == ids
                row[f"qemu{cores}_decode_instret"] = decode_instret(r, len(pids))
                row[f"qemu{cores}_prefill_instret"] = r.prefill_instret
            rec["prompts"][prompt] = row
            print(f"{name} {prompt!r}: host {row['host'][:12]} qemu1 {row['qemu1'][:12]} qemu8 {row['qemu8'][:12]} "
                  f"decode 1 core {max(row['qemu1_decode_instret']):,}, busiest of 8 "
                  f"{max(row['qemu8_decode_instret']):,}", flush=True)
    return rec


def compare(old: dict, new: dict) -> int:
    """Print what differs; the number of differing logit digests."""
    bad = 0
    for name, o in old.items():
        n = new.get(name)
        if n is None:
            continue
        print(f"{name}: model.c {o['model_c']['lines']:,} -> {n['model_c']['lines']:,} lines, "
              f"{o['model_c']['functions']} -> {n['model_c']['functions']} functions")
        for p, orow in o["prompts"].items():
            nrow = n["prompts"][p]
            same = [k for k in ("host", "golden", "qemu1", "qemu8") if k in orow and k in nrow and orow[k] == nrow[k]]
            diff = [k for k in ("host", "golden", "qemu1", "qemu8") if k in orow and k in nrow and orow[k] != nrow[k]]
            bad += len(diff) + (orow["ids"] != nrow["ids"])
            d1 = max(nrow["qemu1_decode_instret"]) - max(orow["qemu1_decode_instret"])
            d8 = max(nrow["qemu8_decode_instret"]) - max(orow["qemu8_decode_instret"])
            p1 = max(nrow["qemu1_prefill_instret"]) - max(orow["qemu1_prefill_instret"])
            p8 = max(nrow["qemu8_prefill_instret"]) - max(orow["qemu8_prefill_instret"])
            print(f"  {p!r}: identical {'/'.join(same) or '-'}{'; DIFFER ' + '/'.join(diff) if diff else ''}; "
                  f"decode instructions 1 core {max(nrow['qemu1_decode_instret']):,} ({d1:+,}), busiest of 8 "
                  f"{max(nrow['qemu8_decode_instret']):,} ({d8:+,}); prefill {p1:+,} / {p8:+,}")
    return bad


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, help="directory to write equivalence.json into")
    ap.add_argument("--check", type=Path, help="a recorded equivalence.json to compare against")
    ap.add_argument("--only", nargs="*", default=list(VARIANTS), help="variants to run")
    ap.add_argument("--golden", action="store_true", help="also digest the golden engine's logits (slow)")
    args = ap.parse_args()
    new = {name: measure(name, *VARIANTS[name], args.golden) for name in args.only}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "equivalence.json").write_text(json.dumps(new, indent=1) + "\n")
    if args.check:
        bad = compare(json.loads(args.check.read_text()), new)
        print("all logits identical" if not bad else f"{bad} logit digests or id lists DIFFER")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
