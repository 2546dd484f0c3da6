/* llama2.c BPE tokenizer without malloc or float: see tokenizer.h. Mirrors run.c's encode()
 * step for step; float scores are replaced by integer ranks from deeploy_dsl/model/tokenizer.py. */
#include "tokenizer.h"

#include <string.h>

#if TOKENIZER_MAX_PIECE < 4
#error "TOKENIZER_MAX_PIECE must hold one UTF-8 codepoint (4 bytes)"
#endif

/* holds one codepoint or one candidate merge; merges longer than max_token_length are never looked
 * up (no piece can match them), so max_token_length + 1 bytes always suffice */
static char scratch[TOKENIZER_MAX_PIECE + 1];

static const char *piece_of(const Tokenizer *t, int32_t id) {
    return t->pieces + t->offsets[id];
}

/* run.c bsearches a qsort'ed copy; a lower bound over the (piece, id)-sorted table is the same
 * search but also deterministic when pieces repeat */
static int32_t lookup(const Tokenizer *t, const char *s) {
    int32_t lo = 0, hi = t->vocab_size;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (strcmp(piece_of(t, t->sorted_ids[mid]), s) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < t->vocab_size && strcmp(piece_of(t, t->sorted_ids[lo]), s) == 0) {
        return t->sorted_ids[lo];
    }
    return -1;
}

/* the id of the piece a + b, or -1 (also when it is too long to be a piece) */
static int32_t merge_of(const Tokenizer *t, int32_t left, int32_t right) {
    const char *a = piece_of(t, left);
    const char *b = piece_of(t, right);
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb > (size_t)t->max_token_length) return -1;
    memcpy(scratch, a, la);
    memcpy(scratch + la, b, lb + 1);
    return lookup(t, scratch);
}

int tokenizer_encode(const Tokenizer *t, const char *text, int bos, int32_t *tokens, int32_t max_tokens,
                     int32_t *n_tokens) {
    return tokenizer_encode_fast(t, text, bos, tokens, NULL, max_tokens, n_tokens);
}

int tokenizer_encode_fast(const Tokenizer *t, const char *text, int bos, int32_t *tokens, int32_t *pairs,
                          int32_t max_tokens, int32_t *n_tokens) {
    const unsigned char *c;
    size_t len = 0;
    int32_t n = 0, i;

    if (t == NULL || text == NULL || tokens == NULL || n_tokens == NULL || max_tokens < 0) {
        return TOKENIZER_ERR_BAD_ARG;
    }
    *n_tokens = 0;
    if (t->max_token_length < 0 || t->max_token_length > TOKENIZER_MAX_PIECE) {
        return TOKENIZER_ERR_PIECE_TOO_LONG;
    }
    if (bos) {
        if (n >= max_tokens) return TOKENIZER_ERR_TOO_MANY_TOKENS;
        tokens[n++] = TOKENIZER_BOS;
    }
    if (text[0] != '\0') {
        /* sentencepiece's add_dummy_prefix, as run.c does it */
        int32_t space = lookup(t, " ");
        if (space < 0) return TOKENIZER_ERR_MISSING_TOKEN;
        if (n >= max_tokens) return TOKENIZER_ERR_TOO_MANY_TOKENS;
        tokens[n++] = space;
    }

    /* one token per UTF-8 codepoint, or its bytes as <0xNN> tokens; invalid UTF-8 is split
     * exactly as run.c splits it */
    for (c = (const unsigned char *)text; *c != '\0'; c++) {
        int32_t id;
        if ((*c & 0xC0) != 0x80) len = 0;
        scratch[len++] = (char)*c;
        scratch[len] = '\0';
        if ((c[1] & 0xC0) == 0x80 && len < 4) continue;
        id = lookup(t, scratch);
        if (id >= 0) {
            if (n >= max_tokens) return TOKENIZER_ERR_TOO_MANY_TOKENS;
            tokens[n++] = id;
        } else {
            size_t k;
            for (k = 0; k < len; k++) {
                int32_t b = (int32_t)(unsigned char)scratch[k] + 3;
                if (b >= t->vocab_size) return TOKENIZER_ERR_MISSING_TOKEN;
                if (n >= max_tokens) return TOKENIZER_ERR_TOO_MANY_TOKENS;
                tokens[n++] = b;
            }
        }
        len = 0;
    }

    /* greedily merge the best-ranked adjacent pair, leftmost on ties (strict >), in place; with `pairs`, each
     * pair's merge is looked up once and kept beside it, so a pass compares ranks only */
    if (pairs) {
        for (i = 0; i + 1 < n; i++) pairs[i] = merge_of(t, tokens[i], tokens[i + 1]);
    }
    for (;;) {
        int32_t best_rank = 0, best_id = -1, best_idx = -1;
        for (i = 0; i + 1 < n; i++) {
            int32_t id = pairs ? pairs[i] : merge_of(t, tokens[i], tokens[i + 1]);
            if (id >= 0 && t->ranks[id] > best_rank) {
                best_rank = t->ranks[id];
                best_id = id;
                best_idx = i;
            }
        }
        if (best_idx < 0) break;
        tokens[best_idx] = best_id;
        memmove(&tokens[best_idx + 1], &tokens[best_idx + 2], (size_t)(n - best_idx - 2) * sizeof tokens[0]);
        n--;
        if (pairs) {
            /* pair i now joins tokens i and i + 1 of the shorter list: only the two around the merge change */
            memmove(&pairs[best_idx + 1], &pairs[best_idx + 2], (size_t)(n - best_idx - 2 > 0 ? n - best_idx - 2 : 0) * sizeof pairs[0]);
            if (best_idx > 0) pairs[best_idx - 1] = merge_of(t, tokens[best_idx - 1], tokens[best_idx]);
            if (best_idx + 1 < n) pairs[best_idx] = merge_of(t, tokens[best_idx], tokens[best_idx + 1]);
        }
    }
    *n_tokens = n;
    return TOKENIZER_OK;
}

static int hex_digit(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

const char *tokenizer_decode(const Tokenizer *t, int32_t prev, int32_t token, char buf[2]) {
    const char *p;
    if (t == NULL || buf == NULL || token < 0 || token >= t->vocab_size) return NULL;
    p = piece_of(t, token);
    /* sentencepiece strips the dummy-prefix space of the first piece after BOS */
    if (prev == TOKENIZER_BOS && p[0] == ' ') p++;
    /* "<0xNN>" stands for the raw byte NN (exact form only; run.c's sscanf is looser) */
    if (p[0] == '<' && p[1] == '0' && p[2] == 'x' && hex_digit(p[3]) >= 0 && hex_digit(p[4]) >= 0 &&
        p[5] == '>' && p[6] == '\0') {
        buf[0] = (char)(hex_digit(p[3]) * 16 + hex_digit(p[4]));
        buf[1] = '\0';
        return buf;
    }
    return p;
}
