"""The kernel registry against the C: every spec's parameters are its C function's, in order, with their types."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from deeploy_dsl.kernels.registry import KERNELS, RUNTIME_FILES, SOURCE_HEADERS

KERNELS_C = Path(__file__).resolve().parents[1] / "kernels_c"


def prototypes() -> dict[str, list[tuple[str, str]]]:
    """name -> [(C type, parameter name)] of every function declared in the kernels' headers."""
    text = "\n".join((KERNELS_C / h).read_text() for h in ("deeploy_kernels.h", "gemv.h", "npu.h",
                                                                      *SOURCE_HEADERS.values()))
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = {}
    for m in re.finditer(r"^(?:static inline )?\w+\s+\*?(\w+)\(([^)]*)\)\s*[;{]", text, re.M):
        params = []
        for p in " ".join(m.group(2).split()).split(","):
            pm = re.fullmatch(r"(.*?)(\w+)", p.strip())
            params.append((" ".join(pm.group(1).replace("*", " * ").split()).replace(" *", " *"), pm.group(2)))
        out[m.group(1)] = params
    return out


def c_type(ctype: str) -> str:
    return " ".join(ctype.replace("*", " * ").split())


def npu_job_fields() -> set[str]:
    text = (KERNELS_C / "npu.h").read_text()
    body = re.search(r"typedef struct \{(.*?)\} npu_job;", text, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    fields = set()
    for decl in body.split(";"):
        if decl.strip():
            first, *more = decl.split(",")
            fields |= {first.split()[-1].lstrip("*")} | {m.strip().lstrip("*") for m in more}
    return fields


@pytest.mark.parametrize("name", sorted(n for n, k in KERNELS.items() if k.fragment != "npu"))
def test_a_spec_is_its_c_signature(name):
    spec = KERNELS[name]
    protos = prototypes()
    assert name in protos, f"{name}: no C prototype"
    want = [(c_type(p.ctype), p.name) for p in spec.params]
    assert [(c_type(t), n) for t, n in protos[name]] == want


@pytest.mark.parametrize("name", sorted(n for n, k in KERNELS.items() if k.fragment == "npu"))
def test_an_npu_spec_is_a_job_descriptor(name):
    assert set(KERNELS[name].names) <= npu_job_fields()


def test_every_spec_names_its_c_source():
    for spec in KERNELS.values():
        assert (KERNELS_C / spec.source).exists(), spec.name
    assert set(RUNTIME_FILES) <= {p.name for p in KERNELS_C.glob("*.c")}
