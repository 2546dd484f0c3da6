"""Attention and RoPE cases shared by tests/test_kernels_c.py (host, ctypes) and tests/test_kernels_rv32.py (RV32, QEMU).

Pure numpy: parameter dicts for kernels.attention (random ones and a table of edge cases, each with the
properties its twin output must show) and the tiled composition rebuilt from the numpy twins.
"""
from __future__ import annotations

import math

import numpy as np

from deeploy_dsl.kernels import twins as K

CTX = 512


def rand_i8(rng, shape):
    return rng.integers(-128, 128, shape, dtype=np.int8)


def score_params(real: float) -> dict:
    """score_mult/shift/cut for a score scale in Q10 log2 units (scale * log2(e) * 2^10)."""
    m, s, cut = K.score_multiplier(real)
    return dict(score_mult=m, score_shift=s, score_cut=cut)


def out_params(real: float, bits: int) -> dict:
    """out_mult/shift for out = mean_v * real with exps in Q`bits`, as deeploy_dsl/quant/quantize.py computes them."""
    om, os_ = K.quantize_multiplier(real)
    if os_ + bits > 62:  # keep the product's shift within int64: give up low mantissa bits
        om, os_ = int(K.rshift_round(om, os_ + bits - 62)) or 1, 62 - bits
    return dict(out_mult=om, out_shift=os_ + bits)


def attention_case(rng, n_kv_heads, head_size, pos, ctx=CTX, wide=False, n_heads=8, bits=15) -> dict:
    """Keyword arguments of kernels.attention (table included) for random q / caches and plausible scales."""
    sq, sk, sv = 10 ** rng.uniform(-3, -1, 3)
    s_att = 10 ** rng.uniform(-2.5, -1.5)
    out_real = float(10 ** rng.uniform(-9, 3)) if wide else sv / s_att
    return dict(q=rand_i8(rng, n_heads * head_size), k_cache=rand_i8(rng, (ctx, n_kv_heads * head_size)),
                v_cache=rand_i8(rng, (ctx, n_kv_heads * head_size)), pos=pos, n_heads=n_heads,
                n_kv_heads=n_kv_heads, head_size=head_size,
                **score_params(sq * sk / math.sqrt(head_size) * math.log2(math.e) * K.EXP_ONE),
                **out_params(out_real, bits), table=K.exp2_table(bits))


def table_bits(table) -> int:
    return int(table[0]).bit_length() - 1


def last_head_exps(c: dict):
    """(exps [pos+1], their sum) of the last query head: what attention_i8 leaves in its scratch."""
    hs, last, n = c["head_size"], c["n_heads"] - 1, c["pos"] + 1
    kh = last // (c["n_heads"] // c["n_kv_heads"])
    k = np.asarray(c["k_cache"]).reshape(-1, c["n_kv_heads"] * hs)[:n, kh * hs:(kh + 1) * hs]
    scores = K.attn_scores(c["q"][last * hs:(last + 1) * hs], k, c.get("qk_shift"))
    e, sums = K.softmax_exp_rows(scores, c["score_mult"], c["score_shift"], c["table"])
    return e[0], int(sums[0])


def random_attention(seed: int) -> dict:
    """The random attention_i8 case of one seed: group sizes 1..8, head sizes 8/16, now and then fewer exp bits,
    wide output scales or output multipliers that round on exact ties."""
    rng = np.random.default_rng(seed)
    n_heads, n_kv_heads = [(8, 4), (8, 8), (12, 4), (8, 2), (8, 1)][seed % 5]
    head_size = int(rng.choice([8, 16]))
    pos = int(rng.integers(0, CTX)) if seed % 3 else int(rng.integers(0, 8))
    bits = int(rng.integers(8, 15)) if seed % 6 == 5 else 15
    c = attention_case(rng, n_kv_heads, head_size, pos, wide=seed % 4 == 0, n_heads=n_heads, bits=bits)
    if seed % 7 == 2:  # small output multipliers: acc * m / 2^shift on exact .5 ties
        c["out_mult"], c["out_shift"] = int(rng.integers(1, 8)), bits + int(rng.integers(1, 4))
    return c


# name -> what the case pins down
ATTN_EDGES = {
    "pos0": "one position: its exp is 2^bits, the sum too",
    "pos300": "",
    "pos511": "the whole context",
    "equal_scores": "512 identical keys: every exp 2^15, sum 512 * 2^15 = 2^24 (the largest)",
    "zero_q": "all scores 0",
    "extreme": "scores far apart: half the distances beyond cut, their exps 0",
    "exp_steps": "z = d * EXP_ONE / 4 walks 1/4 octave per position over 0..63 octaves, 16 octaves exactly at d = 64",
    "exp_fine": "scores spread over ~2^15, z ~ d / 2^11 octaves: most table entries, some distances beyond cut",
    "exp_cutoff": "two positions, z = 0 and z = 16 * EXP_ONE exactly: the second weighs exactly 0",
    "mult_min": "score_mult 1 (the tiniest scale): cut beyond int32, all distances within it",
    "saturate": "output scale 4 on v = +-127/-128: both ends saturate",
    "ties_pos0": "one position, m = 3, shift = bits + 1: out = 3v/2, ties of both signs",
    "ties_pos1": "two equal keys, sum 2^16, m = 1: out = (v0 + v1) / 2",
    "acc_min": "512 equal scores, v all -128: acc = -2^31 exactly",
    "acc_max": "512 equal scores, v all 127: acc = 127 * 2^24",
    "bits12": "exp2_table(12), as a 4096 context gets",
    "bits8_ties": "exp2_table(8), one position, out = v / 2",
    "hs128": "head size 128: attention_i8 goes over the head in two chunks of 64",
}


def attention_edge(name: str) -> dict:
    assert name in ATTN_EDGES, name
    rng = np.random.default_rng(sum(map(ord, name)))
    pos = {"pos0": 0, "pos300": 300, "pos511": 511, "exp_cutoff": 1, "ties_pos0": 0, "ties_pos1": 1,
           "equal_scores": 511, "acc_min": 511, "acc_max": 511, "exp_fine": 511, "bits8_ties": 0}.get(name, 200)
    bits = {"bits12": 12, "bits8_ties": 8}.get(name, 15)
    if name == "hs128":
        return attention_case(rng, 2, 128, 100, n_heads=4)
    c = attention_case(rng, 4, 16, pos, bits=bits)
    if name in ("equal_scores", "acc_min", "acc_max"):
        c["k_cache"][:] = c["k_cache"][0]
        if name != "equal_scores":
            c["v_cache"][:] = -128 if name == "acc_min" else 127
            c.update(out_params(0.5, bits))
    elif name == "zero_q":
        c["q"][:] = 0
    elif name == "extreme":
        c["q"][:], c["k_cache"][::2], c["k_cache"][1::2] = 127, 127, -128
        c.update(score_params(0.1 * 0.1 / 4 * math.log2(math.e) * K.EXP_ONE))
    elif name in ("exp_steps", "exp_cutoff"):  # q . k_t = 127 - t for every head: d = t
        c["q"][:], c["k_cache"][:] = 0, 0
        c["q"][::16] = 1
        c["k_cache"][:256, ::16] = (127 - np.arange(256))[:, None]
        c.update(score_params(K.EXP_ONE / 4))
        assert c["score_cut"] == 63
        if name == "exp_cutoff":
            c["k_cache"][1, ::16] = 127 - 64
    elif name == "exp_fine":  # q . k_t = 127 k_t[0] + k_t[1]
        c["q"][:] = 0
        c["q"][::16], c["q"][1::16] = 127, 1
        c.update(score_params(0.55 / 1024 * K.EXP_ONE))
    elif name == "mult_min":
        c.update(score_params(2.0 ** -(K.EXP_SHIFT_MAX + 2)))
        assert c["score_mult"] == 1 and c["score_cut"] == 2**31 - 1  # clamped: no distance reaches it
    elif name == "saturate":
        c["v_cache"][:] = np.where(np.arange(64) % 2, 127, -128)
        c.update(out_params(4.0, bits))
    elif name in ("ties_pos0", "bits8_ties"):
        c["out_mult"], c["out_shift"] = (3, bits + 1) if name == "ties_pos0" else (1, bits + 1)
    elif name == "ties_pos1":
        c["k_cache"][1] = c["k_cache"][0]
        c["out_mult"], c["out_shift"] = 2, 16
    return c


def check_edge(name: str, c: dict, want) -> None:
    """The property the edge case is there for, on the twin's output (and the last head's exps)."""
    bits = table_bits(c["table"])
    e, total = last_head_exps(c)
    n = c["pos"] + 1
    v = np.asarray(c["v_cache"]).reshape(-1, c["n_kv_heads"] * c["head_size"])
    if name in ("pos0", "ties_pos0", "bits8_ties"):
        assert list(e) == [1 << bits] and total == 1 << bits
    if name in ("equal_scores", "acc_min", "acc_max"):
        assert (e == 1 << 15).all() and total == 1 << 24
    if name == "acc_min":
        assert (want == -64).all()  # acc = -2^31, m = 2^21, shift 46
    if name == "acc_max":
        assert (want == 64).all()  # 127 / 2 = 63.5 rounds away from zero
    if name == "extreme":
        assert (e[1::2] == 0).all() and (e[::2] == 1 << 15).all()
    if name == "exp_steps":
        t = np.arange(64)
        assert list(e[:64]) == list(c["table"][(t % 4) * (K.EXP_ONE // 4)] >> (t // 4)) and not e[64:].any()
        assert e[60] == 1 and not e[61:].any()  # 2^-15 in Q15 is the last nonzero exp
    if name == "exp_fine":
        assert 0 < np.count_nonzero(e == 0) < n // 2 and len(set(e.tolist())) > 200
    if name == "exp_cutoff":
        assert list(e) == [1 << 15, 0]
    if name == "mult_min":
        assert (e >= c["table"][2]).all()  # z = round(d / 2^shift) <= 2: all within a small fraction of an octave
    if name == "saturate":
        assert want.min() == -128 and want.max() == 127
    if name == "ties_pos0":  # out = sat(round(3 v / 2))
        vq = v[0].reshape(c["n_kv_heads"], -1).repeat(c["n_heads"] // c["n_kv_heads"], 0).reshape(-1).astype(np.int64)
        assert list(want) == list(np.clip(np.sign(vq) * ((3 * np.abs(vq) + 1) // 2), -128, 127))
    if name == "bits8_ties":
        vq = v[0].reshape(c["n_kv_heads"], -1).repeat(c["n_heads"] // c["n_kv_heads"], 0).reshape(-1).astype(np.int64)
        assert list(want) == list(np.sign(vq) * ((np.abs(vq) + 1) // 2))
    if name == "ties_pos1":
        assert list(e) == [1 << 15, 1 << 15]


def twin_scores_max(q, k, prev_max=None, shift=None):
    """attn_scores_i8's twin: (scores [g, n_t], max [g]) of one tile of K, the max running on from prev_max; the
    scores' shift from k's dtype, or `shift` (wider queries: SCORE_FORMS)."""
    scores = K.attn_scores(q, k, shift)
    m = scores.max(axis=1)
    return scores, m if prev_max is None else np.maximum(m, prev_max)


def twin_exps(scores, max_, mult: int, shift: int, table):
    """The exps of scores [g, n_t] against the maxima max_ [g] >= them, as softmax_exp makes them over a whole row
    whose max that is (the max appended to each row, its own exp dropped)."""
    return np.stack([K.softmax_exp(np.append(row, m), mult, shift, table)[:-1]
                     for row, m in zip(np.asarray(scores, dtype=np.int64), max_)])


def twin_exp_av(scores, max_, v, mult: int, shift: int, table):
    """attn_exp_av_i8's twin over one tile: (acc [g, hs], sums [g]) it adds, scores [g, n_t], v [n_t, hs]."""
    e = twin_exps(scores, max_, mult, shift, table)
    return K.attn_av(e, v), e.sum(axis=1)


def twin_attention_tiled(c: dict, T: int):
    """kernels.attention composed from the tiled twins as the generated code composes the C kernels: per kv head,
    scores and their running max over tiles of K, then per tile of V the exps against that max, their weighted sums
    and their sums added up, then attn_out."""
    n, nh, nkv, hs = c["pos"] + 1, c["n_heads"], c["n_kv_heads"], c["head_size"]
    g, bits = nh // nkv, table_bits(c["table"])
    sp = dict(mult=c["score_mult"], shift=c["score_shift"], table=c["table"])
    q = np.asarray(c["q"]).reshape(nkv, g * hs)
    kc, vc = (np.asarray(c[x]).reshape(-1, nkv * hs) for x in ("k_cache", "v_cache"))
    out = []
    for kh in range(nkv):
        k, v = (x[:n, kh * hs:(kh + 1) * hs] for x in (kc, vc))
        tiles, m = [], None
        for t0 in range(0, n, T):
            s, m = twin_scores_max(q[kh], k[t0:t0 + T], m)
            tiles.append(s)
        acc, sums = 0, 0
        for t0, s in zip(range(0, n, T), tiles):
            a, e_sum = twin_exp_av(s, m, v[t0:t0 + T], **sp)
            acc, sums = acc + a, sums + e_sum
        out.append(K.attn_out(acc, sums, c["out_mult"], c["out_shift"], bits).reshape(-1))
    return np.concatenate(out)


# (n_heads, n_kv_heads, head_size) of the tiled composition: group sizes 1, 2, 3, 4, 8 (hs 8: the two-head paths)
TILED_SHAPES = [(8, 8, 8), (8, 4, 16), (12, 4, 8), (8, 2, 8), (8, 1, 8)]
TILED_POS = [0, 1, 37, 300, 511]
TILED_T = [1, 7, 64, "all"]


def tiled_case(pos: int, shape: tuple, T) -> tuple[dict, int]:
    """(attention kwargs, tile size) of one tiled-composition case; every fourth uses exp2_table(13)."""
    n_heads, n_kv_heads, head_size = shape
    T = pos + 1 if T == "all" else T
    rng = np.random.default_rng(pos * 1000 + n_heads * 300 + n_kv_heads * 100 + head_size + T)
    bits = 13 if (pos + T + n_kv_heads) % 4 == 0 else 15
    return attention_case(rng, n_kv_heads, head_size, pos, n_heads=n_heads, bits=bits), T


# --------------------------------------------------------------------------- the tiled pieces on their own

POISON32 = -777


def tile_case(rng, seed, ctx=80):
    """(g, hs, n_kv, n_t, t0, stride, kh, tile) of an attn_scores / attn_av case: group sizes 1, 2, 3, 4, 8 and
    mostly hs 8 (the two-head paths, g odd leaving one head to the generic loop)."""
    g, hs, n_kv = int(rng.choice([1, 2, 3, 4, 8])), int(rng.choice([2, 8, 8, 16, 64])), int(rng.choice([1, 2, 4]))
    n_t = 1 if seed % 4 == 0 else int(rng.integers(1, ctx + 1))
    t0 = int(rng.integers(0, ctx - n_t + 1))
    stride = t0 + n_t + int(rng.integers(0, 5))
    return g, hs, n_kv, n_t, t0, stride, int(rng.integers(0, n_kv)), bool(seed % 2)


def exp_av_extremes():
    """(g, hs, scores [g, n], v [n, hs], label): 512 equal scores (each exp 2^15) on v = -128 or 127, acc from 0 to
    -2^31 exactly (or 127 * 2^24), sum 2^24, through the hs 8 path and the generic one, g = 1, 2, 3."""
    for g in (1, 2, 3):
        for hs in (8, 16):
            for val in (-128, 127):
                yield g, hs, np.full((g, CTX), -(2**17) + 5 * g, np.int32), np.full((CTX, hs), val, np.int8), \
                    f"extreme g={g} hs={hs} v={val}"


def exp_av_input(seed: int):
    """A random attn_exp_av_i8 case: (scores [g, stride] int32, max [g], v [stride, hs] int8, tiles [(t0, n_t)],
    acc0 [g, hs], sums0 [g], score params, table). The tiles follow one another: from t0 = 0 over the whole row
    (acc0, sums0 are then poison the kernel must not read) or, every third seed, one tile at t0 > 0 added to acc0,
    sums0. Outside the tiles the scores are poison (the max: a read would weigh 2^bits). Group sizes 1, 2, 3, 4, 8,
    head sizes 8 (mostly), 2, 16, 20, 64; scores spread over ~16 octaves (some beyond cut) or any scale."""
    rng = np.random.default_rng(seed)
    g, hs = int(rng.choice([1, 2, 3, 4, 8])), int(rng.choice([8, 8, 8, 2, 16, 20, 64]))
    n = 1 if seed % 5 == 0 else int(rng.integers(2, 300))
    stride = n + int(rng.integers(0, 5))
    lim = 2 ** int(rng.integers(1, 18)) * hs // 8 or 1  # |q . k| <= hs * 2^14
    scores = rng.integers(-lim, lim + 1, (g, stride)).astype(np.int32)
    if seed % 7 == 1:  # ties: equal scores in a row
        scores[0, :n] = scores[0, 0]
    max_ = scores[:, :n].max(axis=1)
    if seed % 3 == 2 and n > 1:  # one tile inside the row, on top of earlier tiles' sums
        t0 = int(rng.integers(1, n))
        tiles = [(t0, int(rng.integers(1, n - t0 + 1)))]
    else:  # the whole row from 0, in tiles of random sizes
        cuts = sorted(set(rng.integers(1, n, int(rng.integers(0, 4))).tolist())) if n > 1 else []
        bounds = [0, *cuts, n]
        tiles = [(a, b - a) for a, b in zip(bounds, bounds[1:])]
    scores[:, tiles[-1][0] + tiles[-1][1]:] = max_[:, None]
    scores[:, :tiles[0][0]] = max_[:, None]
    v = rng.integers(-128, 128, (stride, hs)).astype(np.int8)
    if seed % 10 == 3:  # largest products of both signs
        v[::2], v[1::2] = -128, 127
    if tiles[0][0] == 0:
        acc0, sums0 = np.full((g, hs), 12345, np.int32), np.full(g, -5, np.int32)
    else:
        acc0 = rng.integers(-(2**22), 2**22, (g, hs)).astype(np.int32)
        sums0 = rng.integers(0, 2**22, g).astype(np.int32)
    real = 10 ** rng.uniform(-6, 3) if seed % 4 == 3 else 10 ** rng.uniform(-2, 1) * (16 << K.EXP_FRAC) / (2 * lim)
    bits = 15 if seed % 3 else int(rng.integers(8, 16))
    return (scores, max_.astype(np.int32), v, tiles, acc0, sums0,
            score_params(min(real, 2.0 ** (30 - K.EXP_SHIFT_MAX))), K.exp2_table(bits))


def want_exp_av(scores, max_, v, tiles, acc0, sums0, p, table):
    """(acc [g, hs], sums [g]) after attn_exp_av_i8 over the tiles of an exp_av_input case, from the twins."""
    acc, sums = acc0.astype(np.int64), sums0.astype(np.int64)
    if tiles[0][0] == 0:
        acc, sums = np.zeros_like(acc), np.zeros_like(sums)
    for t0, n_t in tiles:
        a, s = twin_exp_av(scores[:, t0:t0 + n_t], max_, v[t0:t0 + n_t], p["score_mult"], p["score_shift"], table)
        acc, sums = acc + a, sums + s
    return acc, sums


def exp_av_out_params(seed: int, table) -> dict:
    """out_mult/shift/bits for attn_exp_av_i8 finishing its last tile (out given): mostly shifts >= 33 (finished in
    registers), every fifth seed a smaller one (the attn_out_i8 path), scales from tiny to saturating."""
    rng = np.random.default_rng(seed + 7000)
    bits = table_bits(table)
    p = out_params(float(10 ** rng.uniform(-4, 2)) if seed % 5 else float(10 ** rng.uniform(6, 9)), bits)
    if seed % 11 == 4:  # the smallest shift finished in registers
        p = dict(out_mult=int(rng.integers(1, 2**31)), out_shift=33)
    return dict(**p, bits=bits)


def prm_array(p: dict, o: dict | None = None):
    """attn_exp_av_i8's prm: [score_mult, score_shift, score_cut, out_mult, out_shift, bits] (out ones 0 if none)."""
    o = o or dict(out_mult=0, out_shift=0, bits=0)
    return np.array([p["score_mult"], p["score_shift"], p["score_cut"], o["out_mult"], o["out_shift"], o["bits"]],
                    np.int32)


def exp_cut_edges():
    """(scores [1, n], n, score params, table, label): distances 0, cut - 1, cut, cut + 1, cut + 2 and 2^31 - 1 for
    multipliers from 2 to 2^31 - 1, where d * mult just fits (or would not fit) 32 bits: the scores -d, max 0. Fed
    to attn_exp_av_i8 against one-hot rows of v, acc[t] is the exp of position t."""
    rng = np.random.default_rng(99)
    for mult in (2, 3, 1000, (1 << 16) + 1, 12345678, 1 << 30, 2**31 - 1):
        p = score_params(mult / 2**K.EXP_SHIFT_MAX)
        cut = p["score_cut"]
        assert p["score_mult"] == mult
        d = np.array([0, cut - 1, cut, cut + 1, cut + 2, 2**31 - 1, *rng.integers(0, min(cut + 3, 2**31), 20)])
        d = d[(d >= 0) & (d < 2**31)]
        scores = (-d).astype(np.int32)[None, :]
        yield scores, scores.shape[1], p, K.exp2_table(15), f"cut mult={mult} cut={cut}"


def attn_out_input(seed: int):
    """(acc [g, hs], sums [g], g, hs, mult, shift, bits) of a random attn_out_i8 case, acc and sums as attention
    makes them: 2^bits <= sum <= n * 2^bits, |acc| <= 128 * sum."""
    rng = np.random.default_rng(seed)
    g, hs = int(rng.integers(1, 9)), int(rng.choice([2, 8, 16, 64]))
    bits = 15 if seed % 3 else int(rng.integers(8, 15))
    n = int(rng.integers(1, CTX + 1))
    sums = rng.integers(1 << bits, (n << bits) + 1, g)
    if seed % 4 == 0:  # the extreme sums
        sums[0], sums[-1] = 1 << bits, n << bits
    acc = rng.integers(-128 * sums, 127 * sums + 1, (hs, g)).T
    if seed % 5 == 2:  # one position (sum 2^bits, acc = 2^bits v), small multipliers: exact .5 ties
        sums[:] = 1 << bits
        acc = rand_i8(rng, (g, hs)).astype(np.int64) << bits
        mult, shift = int(rng.integers(1, 8)), bits + int(rng.integers(1, 4))
    else:
        p = out_params(float(10 ** rng.uniform(-9, 3)) if seed % 2 else float(10 ** rng.uniform(-2, 0.5)), bits)
        mult, shift = p["out_mult"], p["out_shift"]
    return acc.astype(np.int32), sums.astype(np.int32), g, hs, mult, shift, bits


def attn_out_edges():
    """(acc, sums, g, hs, mult, shift, bits, label) at the extremes of acc, sums and the multiplier."""
    acc = np.array([[-(2**31), 2**31 - 1, 0, -1, 1, -(2**30)], [127 << 24, -(128 << 24), 5, -5, 3, -3]], np.int32)
    for sums, mult, shift in (([1 << 24, 1 << 24], 1 << 30, 46), ([1 << 24, 1 << 24], 2**31 - 1, 62),
                              ([1 << 15, 1 << 24], 2**31 - 1, 62), ([1 << 15, 1 << 15], 1, 62),
                              ([(1 << 24) - 1, 1 << 15], 3, 17)):
        yield acc, np.array(sums, np.int32), 2, 6, mult, shift, 15, f"edge sums={sums} mult={mult} shift={shift}"
    v = np.arange(-128, 128).reshape(2, 128)  # one position: acc = 2^bits v, out = v * mult / 2^(shift - bits)
    for bits in (8, 12, 15):
        for mult, k in ((1, 1), (3, 1), (1, 2), (5, 3)):
            yield (v << bits).astype(np.int32), np.full(2, 1 << bits, np.int32), 2, 128, mult, bits + k, bits, \
                f"edge ties bits={bits} mult={mult} shift=bits+{k}"


def rand_i16(rng, shape):
    return rng.integers(-32768, 32768, shape, dtype=np.int16)


def rope_tables(ctx, head_size, theta=10000.0):
    """Q14 cos/sin tables [ctx, head_size / 2], as quantize.py makes them."""
    i = np.arange(head_size // 2)
    ang = np.arange(ctx)[:, None] * theta ** (-2 * i / head_size)[None, :]
    q = 1 << K.ROPE_FRAC
    return np.round(np.cos(ang) * q).astype(np.int16), np.round(np.sin(ang) * q).astype(np.int16)


def random_rope_i16(seed: int, ctx: int = 64) -> tuple:
    """(x, pos, cos_t, sin_t, head_size) for rope_i16 (the int16 keys): random int16 values, every 4th seed the
    extremes (products of 2^29 summed: 2^30, no overflow), every 3rd tables that saturate both ways."""
    rng = np.random.default_rng(500 + seed)
    head_size = int(rng.choice([2, 8, 16, 64]))
    n = head_size * int(rng.integers(1, 9))
    if seed % 3:
        cos_t, sin_t = rope_tables(ctx, head_size)
    else:
        cos_t, sin_t = (rng.integers(-(2**14), 2**14 + 1, (ctx, head_size // 2), dtype=np.int16) for _ in range(2))
        cos_t[0], sin_t[0] = 2**14, 2**14
        cos_t[1], sin_t[1] = -(2**14), 2**14
    pos = int(rng.integers(0, ctx)) if seed % 5 else int(rng.integers(0, 2))
    x = rand_i16(rng, n)
    if seed % 4 == 0:
        x[::2], x[1::2] = 32767, -32768
    return x, pos, cos_t, sin_t, head_size


def random_attention_k16(seed: int) -> dict:
    """random_attention with an int16 K cache (the `keys int16` knob): the score multiplier takes the scores' 2^8
    back, as quantize.py does; every 5th seed the largest products (q -128, k -32768 and 32767) of both signs."""
    c = random_attention(seed)
    rng = np.random.default_rng(1000 + seed)
    k = rand_i16(rng, c["k_cache"].shape)
    if seed % 5 == 3:
        c["q"][:] = -128
        k[::2], k[1::2] = -32768, 32767
    sq, sk = 10 ** rng.uniform(-3, -1), 10 ** rng.uniform(-5, -3)
    c.update(k_cache=k, **score_params(sq * sk * (1 << K.K16_SCORE_SHIFT) / math.sqrt(c["head_size"])
                                       * math.log2(math.e) * K.EXP_ONE))
    return c


# the scores kernels by the widths of q and K: name -> (q bits, k bits); the wider queries are stored in int16
SCORE_FORMS = {"attn_scores_i8": (8, 8), "attn_scores_k16": (8, 16), "attn_scores_q12": (12, 8),
               "attn_scores_q12k16": (12, 16), "attn_scores_q16": (16, 8)}
# the untiled attention kernel of each wider-query form
WIDE_ATTENTION = {"attention_q12": (12, 8), "attention_q12k16": (12, 16), "attention_q16": (16, 8)}


def rand_width(rng, bits: int, shape):
    """Random q or K values of a width: int8, or int12 (+-2047) and int16 stored in int16."""
    if bits == 8:
        return rand_i8(rng, shape)
    if bits == 16:
        return rand_i16(rng, shape)
    lo, hi = extremes(bits)
    return rng.integers(lo, hi + 1, shape).astype(np.int16)


def extremes(bits: int) -> tuple[int, int]:
    """The most negative and most positive value of a width (int12: +-2047)."""
    return (-2047, 2047) if bits == 12 else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def random_attention_wide(seed: int, q_bits: int, k_bits: int) -> dict:
    """random_attention with wider queries (int12 or int16, stored in int16) and int8 or int16 keys: the score
    multiplier takes the scores' 2^score_shift back, as quantize.py does, and qk_shift names it for the twin. Every
    5th seed the largest products of both signs (q at its most negative, k at both ends); head sizes within the
    int32 bound (int12 q with int16 K: 8, 16 or 32)."""
    c = random_attention(seed)
    rng = np.random.default_rng(2000 + seed)
    if K.qk_head_size_max(q_bits, k_bits) < 64 and seed % 4 == 1:  # the largest head size the bound admits
        hs = K.qk_head_size_max(q_bits, k_bits)
        c.update(head_size=hs, q=rand_i8(rng, c["n_heads"] * hs),
                 k_cache=rand_i8(rng, (CTX, c["n_kv_heads"] * hs)), v_cache=rand_i8(rng, (CTX, c["n_kv_heads"] * hs)))
    q = rand_width(rng, q_bits, c["q"].shape)
    k = rand_width(rng, k_bits, c["k_cache"].shape)
    if seed % 5 == 3:
        q[:] = extremes(q_bits)[0]
        k[::2], k[1::2] = extremes(k_bits)
    sq, sk = 10 ** rng.uniform(-3, -1) / (1 << (q_bits - 8)), 10 ** rng.uniform(-3, -1) / (1 << (k_bits - 8))
    shift = K.score_shift(q_bits, k_bits)
    c.update(q=q, k_cache=k, qk_shift=shift, **score_params(sq * sk * (1 << shift) / math.sqrt(c["head_size"])
                                                              * math.log2(math.e) * K.EXP_ONE))
    return c
