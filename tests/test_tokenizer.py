"""The Python tokenizer reproduces llama2.c, and kernels_c/tokenizer.c reproduces the Python one."""
from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from deeploy_dsl.model.tokenizer import Tokenizer, c_string_literal, c_table_source, c_tables

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = Path(__file__).resolve().parents[2] / "shared/models/stories260K"
TOK_PATH = MODEL_DIR / "tok512.bin"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]

needs_model = pytest.mark.skipif(not TOK_PATH.exists(), reason=f"shared model fixture not found at {MODEL_DIR}")
needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no system C compiler `cc` on PATH")

TRICKY = [
    "", " ", "  ", "a", "héllo wörld ✓", "0123456789 3.14159 1,000,000", "!?.,;:'\"()[]{}<>-_=+*/\\|@#$%^&~`",
    "line one\nline two\n\n\ttabbed\r\n", "??= ??/ ??' trigraphs?", "日本語のテキスト", "emoji 😀🎉 mixed",
    "<0x41> <s> \n<s>\n", "Once upon a time " * 17 + "end", "x" * 300,
    "".join(chr(0x20 + (i * 7) % 95) for i in range(300)),
]
# invalid UTF-8 (stray continuations, truncated sequences, overlong runs) exercises run.c's byte loop
INVALID_UTF8 = [b"\x80", b"ab\xc3", b"\xe2\x9c", b"\xbf\xbf\xbf\xbf\xbf\xbf", b"\xf0\x9f\x98\x80\x80\x80x", b"\xff\xfe"]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    if not TOK_PATH.exists():
        pytest.skip(f"shared model fixture not found at {MODEL_DIR}")
    return Tokenizer.load(TOK_PATH)


@needs_model
def test_matches_llama2c_reference(tok):
    cases = json.loads((MODEL_DIR / "reference.json").read_text())["cases"]
    assert len(cases) == 4
    for case in cases:
        assert tok.encode(case["prompt"]) == case["prompt_ids"], case["prompt"]
        assert tok.decode(case["prompt_ids"]) == case["prompt"]


@needs_model
def test_load_shape(tok):
    assert tok.vocab_size == 512 and tok.max_token_length == 7
    assert tok.vocab[1] == b"\n<s>\n" and tok.vocab[3] == b"<0x00>" and tok.vocab[258] == b"<0xFF>"
    assert len(tok.scores) == 512


@needs_model
@pytest.mark.parametrize("text", TRICKY)
def test_roundtrip(tok, text):
    ids = tok.encode(text)
    assert ids[0] == 1 and tok.decode(ids) == text
    assert tok.encode(text, bos=False) == ids[1:]
    assert tok.encode_with_ranks(text) == ids


@needs_model
@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40))
def test_ranks_merge_like_floats(tok, text):
    assert tok.encode_with_ranks(text) == tok.encode(text)
    assert tok.decode(tok.encode(text)) == text


@needs_model
def test_rank_scores_preserve_order_and_ties(tok):
    ranks = tok.rank_scores()
    assert all(isinstance(r, int) for r in ranks)
    for i in range(0, 512, 7):
        for j in range(0, 512, 5):
            si, sj = tok.scores[i], tok.scores[j]
            assert (si < sj) == (ranks[i] < ranks[j]) and (si == sj) == (ranks[i] == ranks[j])
    # the file stores both 0.0 and -0.0: they compare equal in run.c, so they must share a rank
    assert ranks[0] == ranks[259] and str(tok.scores[259]) == "-0.0"


def test_rank_zero_for_unmergeable_scores():
    t = Tokenizer([b"a", b"b", b"ab", b" "], [0.0, 0.0, -2e10, 0.0], 2)
    assert t.rank_scores()[2] == 0
    # run.c starts from best = -1e10 with `>`, so "ab" never merges
    assert t.encode("ab", bos=False) == t.encode_with_ranks("ab", bos=False) == [3, 0, 1]


def test_decode_token_rules():
    t = Tokenizer([b"<unk>", b"<s>", b"</s>", b"<0x41>", b" hi", b"<0x0a>"], [0.0] * 6, 6)
    assert t.decode_token(1, 4) == b"hi" and t.decode_token(0, 4) == b" hi"
    assert t.decode_token(4, 3) == b"A" and t.decode_token(4, 5) == b"\n"


def _write_tok(path: Path, records: list[tuple[float, bytes]], max_len: int = 8, cut: int = 0) -> Path:
    data = struct.pack("<I", max_len) + b"".join(struct.pack("<fi", s, len(p)) + p for s, p in records)
    path.write_bytes(data[: len(data) - cut] if cut else data)
    return path


@pytest.mark.parametrize("cut", [1, 3, 9])
def test_truncated_file_raises(tmp_path, cut):
    p = _write_tok(tmp_path / "t.bin", [(0.0, b"<unk>"), (-1.0, b"hello")], cut=cut)
    with pytest.raises(ValueError, match="truncated"):
        Tokenizer.load(p)


def test_malformed_files_raise(tmp_path):
    (tmp_path / "empty.bin").write_bytes(b"\x07\x00")
    with pytest.raises(ValueError, match="too short"):
        Tokenizer.load(tmp_path / "empty.bin")
    with pytest.raises(ValueError, match="length 9"):
        Tokenizer.load(_write_tok(tmp_path / "long.bin", [(0.0, b"123456789")], max_len=8))
    with pytest.raises(ValueError, match="NUL"):
        Tokenizer.load(_write_tok(tmp_path / "nul.bin", [(0.0, b"a\0b")]))
    with pytest.raises(ValueError, match="expected 3 tokens, found 2"):
        Tokenizer.load(_write_tok(tmp_path / "few.bin", [(0.0, b"a"), (0.0, b"b")]), vocab_size=3)
    with pytest.raises(ValueError, match="cannot read"):
        Tokenizer.load(tmp_path / "missing.bin")


@needs_model
def test_c_tables_deterministic(tok):
    t = c_tables(tok)
    assert t == c_tables(Tokenizer.load(TOK_PATH))
    assert [tok.vocab[i] for i in t["sorted_ids"]] == sorted(tok.vocab)
    assert t["offsets"][1] == len(tok.vocab[0]) + 1 and t["max_token_length"] == 7


# ---- C side -------------------------------------------------------------------------------------

HARNESS_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char line[1 << 16];
static char text[1 << 15];
static int32_t toks[1 << 14];

static int unhex(const char *h, char *out) {
    int n = 0;
    if (h[0] == '-') { out[0] = '\0'; return 0; }
    while (h[0] && h[1] && h[0] != '\n') {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1) break;
        out[n++] = (char)v;
        h += 2;
    }
    out[n] = '\0';
    return n;
}

int main(void) {
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'E') { /* E <bos> <max_tokens> <hex text or -> */
            int bos, max, pos, st, i;
            int32_t n = -7;
            if (sscanf(line + 2, "%d %d %n", &bos, &max, &pos) != 2) return 2;
            unhex(line + 2 + pos, text);
            st = tokenizer_encode(&tok512, text, bos, toks, max, &n);
            printf("%d %d", st, (int)n);
            for (i = 0; st == 0 && i < n; i++) printf(" %d", (int)toks[i]);
            printf("\n");
        } else if (line[0] == 'D') { /* D <id> <id> ... : hex of each decoded piece, '.' if empty */
            char *p = line + 1, *end, buf[2];
            long prev = -1;
            for (;;) {
                long id = strtol(p, &end, 10);
                const char *s;
                if (end == p) break;
                p = end;
                s = tokenizer_decode(&tok512, (int32_t)prev, (int32_t)id, buf);
                if (s == NULL) { printf(" NULL"); prev = id; continue; }
                printf(" ");
                if (!*s) printf(".");
                for (; *s; s++) printf("%02x", (unsigned)(unsigned char)*s);
                prev = id;
            }
            printf("\n");
        }
    }
    return 0;
}
"""


def _build(tok: Tokenizer, out: Path, extra: list[str] = ()) -> Path:
    src = out / "harness.c"
    src.write_text('#include <stdint.h>\n#include "tokenizer.h"\n' + c_table_source(tok, "tok512") + HARNESS_MAIN)
    exe = out / "harness"
    cmd = ["cc", *CFLAGS, *extra, "-I", str(ROOT / "kernels_c"), str(src), str(ROOT / "kernels_c/tokenizer.c"),
           "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"C build failed:\n{' '.join(cmd)}\n{res.stderr}"
    return exe


def _run(exe: Path, lines: list[str]) -> list[str]:
    res = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert len(out) == len(lines), "harness answered a different number of lines than it was asked"
    return out


def _enc_cmd(data: bytes, bos: bool = True, max_tokens: int = 16384) -> str:
    return f"E {int(bos)} {max_tokens} {data.hex() or '-'}"


@pytest.fixture(scope="module")
def harness(tok, tmp_path_factory):
    if shutil.which("cc") is None:
        pytest.skip("no system C compiler `cc` on PATH")
    return _build(tok, tmp_path_factory.mktemp("ctok"))


def _random_inputs(n: int) -> list[bytes]:
    rng = random.Random(1234)
    alphabet = "abcdefghijklmnopqrstuvwxyz     ABCXYZ.,!?'\"\n\t0123456789éüß✓日😀"
    out = []
    for _ in range(n):
        if rng.random() < 0.8:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))).encode())
        else:  # arbitrary non-NUL bytes: run.c's loop must be mirrored even on invalid UTF-8
            out.append(bytes(rng.randint(1, 255) for _ in range(rng.randint(0, 30))))
    return out


@needs_model
@needs_cc
def test_c_encode_matches_python(tok, harness):
    cases = json.loads((MODEL_DIR / "reference.json").read_text())["cases"]
    inputs = [c["prompt"].encode() for c in cases] + [s.encode() for s in TRICKY] + INVALID_UTF8 + _random_inputs(400)
    cmds = [_enc_cmd(d, bos) for d in inputs for bos in (True, False)]
    got = _run(harness, cmds)
    for (d, bos), line in zip([(d, b) for d in inputs for b in (True, False)], got):
        want = tok.encode(d, bos=bos)
        assert line.split() == ["0", str(len(want)), *map(str, want)], (d, bos)
    for c, line in zip(cases, got[::2]):
        assert [int(x) for x in line.split()[2:]] == c["prompt_ids"]


@needs_model
@needs_cc
def test_c_encode_errors(tok, harness, tmp_path):
    ids = tok.encode("Once upon a time")
    # capacity is checked against the pre-merge count: 1 BOS + 1 prefix + 16 bytes
    ok, short = _run(harness, [_enc_cmd(b"Once upon a time", max_tokens=18), _enc_cmd(b"Once upon a time", max_tokens=17)])
    assert ok.split() == ["0", str(len(ids)), *map(str, ids)]
    assert short.split() == ["-1", "0"]
    assert _run(harness, [_enc_cmd(b"", max_tokens=0)])[0].split() == ["-1", "0"]
    assert _run(harness, [_enc_cmd(b"", bos=False, max_tokens=0)])[0].split() == ["0", "0"]
    small = _build(tok, tmp_path, ["-DTOKENIZER_MAX_PIECE=4"])  # tok512 has 7-byte pieces
    assert _run(small, [_enc_cmd(b"hi")])[0].split() == ["-2", "0"]


@needs_model
@needs_cc
def test_c_decode_matches_python(tok, harness):
    cases = json.loads((MODEL_DIR / "reference.json").read_text())["cases"]
    seqs = [c["greedy_ids"] for c in cases] + [tok.encode(s) for s in TRICKY]
    seqs += [list(range(512)), [x for i in range(512) for x in (1, i)], [5, 512, -1, 7]]
    got = _run(harness, ["D " + " ".join(map(str, s)) for s in seqs])
    for seq, line in zip(seqs, got):
        want, prev = [], -1
        for tid in seq:
            if not 0 <= tid < tok.vocab_size:
                want.append("NULL")
            else:
                # C strings end at NUL, so <0x00> comes back as "" (Python returns b"\x00")
                piece = tok.decode_token(prev, tid).split(b"\0")[0]
                want.append(piece.hex() or ".")
            prev = tid
        assert line.split() == want
    for seq, line in zip(seqs[: len(cases)], got):
        pieces = [bytes.fromhex(h) if h != "." else b"" for t, h in zip(seq, line.split()) if t not in (1, 2)]
        assert b"".join(pieces).decode("utf-8", errors="replace") == tok.decode(seq)


@needs_cc
def test_c_string_literal_roundtrip(tmp_path):
    rng = random.Random(7)
    samples = [bytes(range(256)), b"??=??/??'??(??)??!??<??>??-", b'"\\"\\\\', b"\x001\x0012\x07" + b"7" * 3, b""]
    samples += [bytes(rng.choice(b"\x00\x01\n?\\\"0789aZ\x7f\x80\xff") for _ in range(rng.randint(0, 40)))
                for _ in range(200)]
    body = "\n".join(f"    {{ {c_string_literal(s)}, {len(s)} }}," for s in samples)
    src = tmp_path / "lit.c"
    src.write_text(
        "#include <stdio.h>\nstruct s { const char d[1024]; unsigned n; };\n"
        f"static const struct s all[] = {{\n{body}\n}};\n"
        "int main(void) { unsigned i, j; for (i = 0; i < sizeof all / sizeof all[0]; i++) {\n"
        "  for (j = 0; j < all[i].n; j++) printf(\"%02x\", (unsigned)(unsigned char)all[i].d[j]);\n"
        "  printf(\"\\n\"); } return 0; }\n")
    subprocess.run(["cc", *CFLAGS, "-Wtrigraphs", str(src), "-o", str(tmp_path / "lit")], check=True,
                   capture_output=True)
    out = subprocess.run([str(tmp_path / "lit")], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[: len(samples)] == [s.hex() for s in samples]


@given(st.binary(max_size=64))
def test_c_string_literal_is_plain_ascii(b):
    lit = c_string_literal(b)
    assert lit.startswith('"') and lit.endswith('"') and lit.isascii() and "??" not in lit
    assert all(0x20 <= ord(ch) < 0x7F for ch in lit)
