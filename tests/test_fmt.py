"""deeploy fmt: one canonical layout, idempotent, comments kept, the same deployment before and after."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import ROOT, invoke
from deeploy_dsl.frontend.fmt import format_text
from deeploy_dsl.frontend.interpret import load_deployment

DEPLOYMENTS = sorted((ROOT / "deployments").glob("*.dply"))
MESSY = '''# a deployment written in a hurry
deployment   stories260k
target siracusa
model llama {
\tweights "../../shared/models/stories260K/model.safetensors"    # weights
  tokenizer     "../../shared/models/stories260K/tok512.bin"
}


quantize {
    weights int8   per_channel
    activations int8 calibrate( samples,tokens=4096 , stat=percentile( 99.99 ) )
    kv_cache int8
        residual int16
    keys int16  # "a # inside a comment"
}
map {
    default->cluster(cores=8)
    layers[*].mlp.*   ->   cluster
}
memory {
    L1 256KiB holds activations   double_buffer
    L2 2   MiB holds weights,kv_cache
}
generate {
    prompt "Once   upon # a time"
}
'''
CANONICAL = '''# a deployment written in a hurry
deployment stories260k
target siracusa

model llama {
    weights   "../../shared/models/stories260K/model.safetensors" # weights
    tokenizer "../../shared/models/stories260K/tok512.bin"
}

quantize {
    weights     int8 per_channel
    activations int8 calibrate(samples, tokens = 4096, stat = percentile(99.99))
    kv_cache    int8
    residual    int16
    keys        int16 # "a # inside a comment"
}

map {
    default         -> cluster(cores = 8)
    layers[*].mlp.* -> cluster
}

memory {
    L1 256 KiB holds activations double_buffer
    L2 2 MiB   holds weights, kv_cache
}

generate {
    prompt "Once   upon # a time"
}
'''


def said(path: Path):
    """What a deployment asks for, without source positions."""
    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items() if not k.endswith("pos") and k not in ("source", "text")}
        return [plain(v) for v in x] if isinstance(x, (list, tuple)) else x
    return plain(dataclasses.asdict(load_deployment(path)))


def test_messy_file_takes_the_canonical_layout_and_means_the_same(tmp_path):
    assert format_text(MESSY, Path("m.dply")) == CANONICAL
    assert format_text(CANONICAL, Path("c.dply")) == CANONICAL  # idempotent
    deps = tmp_path / "repo" / "deployments"  # ../../shared from here, as in the repository
    deps.mkdir(parents=True)
    (deps / "m.dply").write_text(MESSY)
    (deps / "c.dply").write_text(CANONICAL)
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    if (ROOT.parent / "shared/models/stories260K/model.safetensors").exists():
        assert said(deps / "m.dply") == said(deps / "c.dply")


@pytest.mark.parametrize("path", DEPLOYMENTS, ids=[p.name for p in DEPLOYMENTS])
def test_shipped_deployments_are_formatted(path):
    text = path.read_text()
    assert format_text(text, path) == text, f"run: deeploy fmt {path.relative_to(ROOT)}"
    res = invoke("fmt", "--check", path)
    assert res.returncode == 0 and res.stdout == ""


def test_fmt_writes_checks_and_refuses(tmp_path):
    f = tmp_path / "m.dply"
    f.write_text(MESSY)
    chk = invoke("fmt", "--check", f)
    assert chk.returncode == 1 and chk.stdout.startswith(f"--- {f}\n+++ {f} (formatted)") and f.read_text() == MESSY
    assert invoke("fmt", f).stdout == f"reformatted {f}\n" and f.read_text() == CANONICAL
    assert invoke("fmt", "--check", f).returncode == 0
    bad = tmp_path / "bad.dply"
    bad.write_text("quantize {\n    weights int8\n")  # never closed
    res = invoke("fmt", f, bad)
    assert res.returncode == 1 and "bad.dply:" in res.stderr and "^" in res.stderr
    assert bad.read_text() == "quantize {\n    weights int8\n"
