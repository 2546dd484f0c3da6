"""The language reference (docs/dply.md, docs/targets.md) is generated from the checker's own tables
(frontend/language.py): the committed files are current, every key the deployments use and every key the checker
accepts (fuzzed) is a row of the table, every documented choice and example is accepted, and the target loader takes
exactly the fields the table lists."""
from __future__ import annotations

import random
import re
import string
from pathlib import Path

import pytest
import yaml

from deeploy_dsl import docs
from deeploy_dsl.demo.starter import new_project
from deeploy_dsl.errors import DeeployError
from deeploy_dsl.frontend.interpret import check_target_fields, interpret, known_targets, load_deployment
from deeploy_dsl.frontend.language import (BLOCKS, CALIBRATE_ARGS, ENGINES, KEYS, MEMORY_CLAUSES, PATTERNS,
                                           QUANTIZE_LINES, TARGET_FIELDS, VALUE_FORMS, block_names, keys)
from deeploy_dsl.frontend.parse import Block, Mapping, Setting, parse_file, parse_text
from deeploy_dsl.kinds import Engine

from conftest import invoke

ROOT = Path(__file__).resolve().parents[1]
SETTING_BLOCKS = ("", "model", "quantize", "generate")  # memory's keys are the target's levels; map takes no settings


@pytest.fixture(scope="module")
def starter(tmp_path_factory) -> Path:
    """A deployment whose model files are beside it (the demo model), to check examples against."""
    return new_project(tmp_path_factory.mktemp("docs") / "story")


def diagnostics(text: str, path: Path) -> list[str]:
    """The checker's messages (errors and warnings) for `text` read as the file `path`."""
    try:
        dep = interpret(parse_text(text, path))
    except DeeployError as e:
        return [d.message for d in e.diagnostics]
    return [d.message for d in dep.warnings]


def with_line(text: str, block: str, line: str, replaces: str | None) -> str:
    """`text` with `line` added at the end of `block` ("" : the top of the file), after removing the setting
    `replaces` there (a setting may be given once)."""
    out, inside, done = [], block == "", False
    for ln in text.splitlines():
        code = ln.split("#", 1)[0].strip()
        if re.fullmatch(rf"{re.escape(block)}( \w+)? {{", code) and block:
            inside = True
        elif inside and code == "}" and block and not done:
            out.append("    " + line)
            inside, done = False, True
        elif inside and replaces and (code.split() or [""])[0] == replaces and not code.endswith("{") \
                and (block or not ln.startswith(" ")):
            continue
        out.append(ln)
    if not block:
        out.append(line)
    elif not done:
        out += [f"{block} {{", "    " + line, "}"]
    return "\n".join(out) + "\n"


def test_the_committed_reference_is_current():
    for name, text in docs.render().items():
        assert (ROOT / "docs" / name).read_text() == text, f"docs/{name} is stale: run `deeploy docs`"


def test_deeploy_docs_check_exits_1_when_stale(tmp_path):
    assert invoke("docs", "--check", "-o", ROOT / "docs").returncode == 0
    res = invoke("docs", "--check", "-o", tmp_path)
    assert res.returncode == 1 and "dply.md: stale" in res.stdout and not any(tmp_path.iterdir())
    assert invoke("docs", "-o", tmp_path).returncode == 0
    assert {p.name for p in tmp_path.iterdir()} == {"dply.md", "targets.md"}


def test_the_reference_names_every_word():
    dply, targets = docs.dply_md(), docs.targets_md()
    for k in KEYS:
        assert f"`{k.name}`" in dply and k.example in dply
    for d in (*VALUE_FORMS, *CALIBRATE_ARGS, *PATTERNS, *QUANTIZE_LINES, *MEMORY_CLAUSES, *ENGINES.values()):
        assert d.example in dply
    assert set(ENGINES) == set(Engine)
    for name in known_targets():
        assert f"`{name}`" in targets
    assert "`generic-rv32`" in targets
    for f in TARGET_FIELDS:
        assert f"`{f.path}`" in targets


def test_the_value_forms_cover_the_grammar():
    """Every kind of value the grammar makes is a documented form (by parsing each form's example)."""
    grammar = (ROOT / "grammar/deeploy.lark").read_text()
    rules = "\n".join(ln for ln in grammar.splitlines() if not ln.lstrip().startswith(("//", "%")))
    made = set(re.findall(r"-> ([a-z_]+)\s*$", rules, re.M)) - {"seg", "seg_any", "kwarg"}
    assert {"string", "number", "size", "name", "call", "assign"} <= made
    seen = set()
    for d in VALUE_FORMS:
        item = parse_text(d.example + "\n", Path("x.dply")).items[0]
        seen |= {v.kind for v in item.values}
    assert seen == made


def test_every_setting_the_deployments_use_is_documented(starter):
    files = sorted((ROOT / "deployments").glob("*.dply")) + [starter]
    for f in files:
        doc = parse_file(f)
        for item in doc.items:
            if isinstance(item, Setting):
                assert item.key in keys(""), (f, item.key)
                continue
            assert isinstance(item, Block) and item.kind in block_names(), (f, item)
            for e in item.entries:
                if isinstance(e, Mapping):
                    assert item.kind in ("map", "quantize"), (f, e)
                    assert item.kind != "map" or e.engine in {str(x) for x in ENGINES}, (f, e.engine)
                elif item.kind == "memory":
                    assert e.key in {lvl for t in docs.targets().values() for lvl in t["memory"]}, (f, e.key)
                else:
                    assert e.key in keys(item.kind), (f, item.kind, e.key)
                    k = next(k for k in KEYS if k.block == item.kind and k.name == e.key)
                    if k.choices:
                        assert {v.value for v in e.values} <= set(k.choices), (f, e.key)


def test_the_checker_accepts_exactly_the_documented_keys(starter):
    """Fuzzed keys in every block: the documented ones, every other block's, words of the language, random names."""
    rng = random.Random(19)
    text = starter.read_text()
    words = {k.name for k in KEYS} | {d.name for d in (*MEMORY_CLAUSES, *CALIBRATE_ARGS)} | {"holds", "L1", "map",
                                                                                             "memory", "engine"}
    words |= {rng.choice(string.ascii_letters) + "".join(rng.choices(string.ascii_lowercase + "_0123456789", k=n))
              for n in rng.choices(range(0, 12), k=24)}
    for block in SETTING_BLOCKS:
        accepted = {w for w in sorted(words)
                    if not any(m.startswith(f"unknown setting '{w}'") for m in
                               diagnostics(with_line(text, block, f"{w} 1", w), starter))}
        assert accepted == set(keys(block)), block
    # blocks: the documented ones, and none other
    for name in sorted(words | set(block_names())):
        found = diagnostics(text + f"\n{name} {{\n}}\n", starter)
        assert any(m.startswith(f"unknown block '{name}'") for m in found) == (name not in block_names()), name


def test_memory_takes_the_targets_levels(starter):
    text = starter.read_text()
    for target, t in docs.targets().items():
        for level in ("L1", "L2", "L3", "L0", "SRAM"):
            t_text = re.sub(r"^target .*$", f"target {target}", text, flags=re.M)
            found = diagnostics(with_line(t_text, "memory", f"{level} 1 KiB", level), starter)
            assert any(m.startswith(f"unknown memory level '{level}'") for m in found) == (level not in t["memory"])


def test_every_documented_choice_and_example_is_accepted(starter):
    text = with_line(starter.read_text(), "quantize", "keys int8", "keys")  # queries int16 takes int8 keys
    text = with_line(text, "quantize", "dynamic final_norm, swiglu_absmax", "dynamic")  # gate_up int16 takes it
    text = with_line(text, "quantize", "gate_up int8", "gate_up")  # dynamic swiglu (a power of two) takes int8
    text = with_line(text, "quantize", "swiglu int8", "swiglu")  # so does the SwiGLU output's width
    text = with_line(text, "quantize", "classifier int8", "classifier")  # and int16 needs dynamic final_norm
    for k in KEYS:
        for line in [k.example] + [f"{k.name} {c}" for c in k.choices if k.name not in ("tied", "strict")]:
            found = [m for m in diagnostics(with_line(text, k.block, line, k.name), starter) if "cores = 8" not in m]
            assert not found, (k.block, line, found)
        if k.choices:
            found = diagnostics(with_line(text, k.block, f"{k.name} int7", k.name), starter)
            assert any(k.name in m or "int7" in m for m in found), (k.name, found)
    for d in (*ENGINES.values(), *PATTERNS):
        assert not diagnostics(with_line(text, "map", d.example, None), starter), d
    for d in QUANTIZE_LINES:
        assert not diagnostics(with_line(text, "quantize", d.example, None), starter), d
    for d in MEMORY_CLAUSES:
        level = d.example.split()[0]
        assert not diagnostics(with_line(text, "memory", d.example, level), starter), d
    for d in CALIBRATE_ARGS:
        line = f"activations int8 {d.example}"
        if "calib.txt" in d.example:
            (starter.parent / "calib.txt").write_text("Once upon a time there was a cat.\n" * 20)
        assert not diagnostics(with_line(text, "quantize", line, "activations"), starter), d
    assert load_deployment(starter)  # the starter itself


def test_the_target_loader_takes_exactly_the_documented_fields():
    rng = random.Random(20)
    for name in known_targets():
        data = yaml.safe_load((ROOT / "deeploy_dsl/targets" / f"{name}.yaml").read_text())
        check_target_fields(name, data)
        for _ in range(12):  # an unknown field anywhere is refused, naming it
            bad = yaml.safe_load(yaml.safe_dump(data))
            node = bad
            for section in rng.sample([s for s in ("cluster", "dma", "npu", "energy", "memory") if s in bad], 1):
                node = bad[section] if section != "memory" else bad["memory"]["L1"]
            field = "".join(rng.choices(string.ascii_lowercase + "_", k=rng.randint(2, 10)))
            node[field] = 1
            with pytest.raises(ValueError, match=re.escape(field)):
                check_target_fields(name, bad)
        for f in TARGET_FIELDS:  # a required field left out is refused, an optional one takes its default
            parts = f.path.replace("<level>", "L1").split(".")
            bad = yaml.safe_load(yaml.safe_dump(data))
            node = bad
            for p in parts[:-1]:
                node = node.get(p) if isinstance(node, dict) else None
            if not isinstance(node, dict) or parts[-1] not in node:
                continue
            del node[parts[-1]]
            if f.default is None:
                with pytest.raises(ValueError):
                    check_target_fields(name, bad)
            else:
                check_target_fields(name, bad)


def test_blocks_table_matches_the_interpreter():
    assert tuple(b.name for b in BLOCKS) == block_names()
    assert [b.name for b in BLOCKS if b.required] == ["model"]
