"""A deployment whose L1 holds the weights (and the KV cache) too: the GEMVs read their rows where they live, shared
out over the cores and applied to every token of a prefill chunk (they once ran on one core for the chunk's first
token only: C and golden differed after a prefill)."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import invoke, needs_cc
from test_sanitize import synthetic_llama


@pytest.fixture(scope="module")
def resident(tmp_path_factory):
    dply = synthetic_llama(tmp_path_factory.mktemp("resident"), context=256)
    text = dply.read_text().replace("    L1 256 KiB  holds activations\n    L2 2 MiB    holds weights, kv_cache\n",
                                    "    L1 256 KiB  holds activations, weights, kv_cache\n")
    assert "holds activations, weights, kv_cache" in text
    dply.write_text(text)
    return dply


def ids(dply, engine: str, *extra) -> list[int]:
    r = invoke("run", dply, "--engine", engine, "--json", "--tokens", "12", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["ids"]


def test_resident_weights_are_shared_out_and_serve_every_token(resident, tmp_path):
    needs_cc()
    assert invoke("build", resident, "-o", tmp_path / "b").returncode == 0
    model = (tmp_path / "b/model.c").read_text()
    assert "W read where it lives" in model and "linear_tile_load" not in model
    want = ids(resident, "golden")
    assert ids(resident, "c") == want == ids(resident, "golden", "--no-prefill") == ids(resident, "c", "--no-prefill")


@pytest.mark.skipif(not (shutil.which("riscv64-unknown-elf-gcc") and shutil.which("qemu-system-riscv32")),
                    reason="needs the RV32 toolchain and QEMU")
def test_resident_weights_on_8_harts(resident):
    assert ids(resident, "qemu", "--cores", "8") == ids(resident, "golden")
