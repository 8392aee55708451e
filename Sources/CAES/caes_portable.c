// Portable AES: 32-bit lookup tables derived at first use from the field arithmetic of FIPS-197
// (no literal tables), key expansion for 128- and 256-bit keys, and the equivalent inverse cipher.
#include "caes_internal.h"

#include <pthread.h>
#include <string.h>

static uint8_t sbox[256];
static uint8_t inv_sbox[256];
static uint32_t te[4][256];
static uint32_t td[4][256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

/* Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1. */
static uint8_t gf_mul(uint8_t a, uint8_t b) {
    uint8_t product = 0;
    while (b != 0) {
        if (b & 1) product ^= a;
        a = (uint8_t)((a << 1) ^ ((a & 0x80) ? 0x1b : 0x00));
        b >>= 1;
    }
    return product;
}

static uint8_t rotl8(uint8_t x, int n) { return (uint8_t)((x << n) | (x >> (8 - n))); }
static uint32_t rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void build_tables(void) {
    /* Multiplicative inverses by search (256 x 256 products, once), then the affine map. */
    uint8_t inverse[256];
    inverse[0] = 0;
    for (int a = 1; a < 256; a++) {
        for (int b = 1; b < 256; b++) {
            if (gf_mul((uint8_t)a, (uint8_t)b) == 1) { inverse[a] = (uint8_t)b; break; }
        }
    }
    for (int x = 0; x < 256; x++) {
        uint8_t b = inverse[x];
        uint8_t s = (uint8_t)(b ^ rotl8(b, 1) ^ rotl8(b, 2) ^ rotl8(b, 3) ^ rotl8(b, 4) ^ 0x63);
        sbox[x] = s;
        inv_sbox[s] = (uint8_t)x;
    }
    for (int x = 0; x < 256; x++) {
        uint8_t s = sbox[x];
        /* Column (2s, s, s, 3s): the MixColumns contribution of a row-0 byte. */
        uint32_t e = ((uint32_t)gf_mul(s, 2) << 24) | ((uint32_t)s << 16) | ((uint32_t)s << 8) | gf_mul(s, 3);
        uint8_t i = inv_sbox[x];
        /* Column (14i, 9i, 13i, 11i): the InvMixColumns contribution of a row-0 byte. */
        uint32_t d = ((uint32_t)gf_mul(i, 14) << 24) | ((uint32_t)gf_mul(i, 9) << 16)
                   | ((uint32_t)gf_mul(i, 13) << 8) | gf_mul(i, 11);
        for (int r = 0; r < 4; r++) {
            te[r][x] = r == 0 ? e : rotr32(e, 8 * r);
            td[r][x] = r == 0 ? d : rotr32(d, 8 * r);
        }
    }
}

static void ensure_tables(void) { pthread_once(&tables_once, build_tables); }

static uint32_t load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void store_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static uint32_t sub_word(uint32_t w) {
    return ((uint32_t)sbox[w >> 24] << 24) | ((uint32_t)sbox[(w >> 16) & 0xff] << 16)
         | ((uint32_t)sbox[(w >> 8) & 0xff] << 8) | sbox[w & 0xff];
}

static uint32_t inv_mix_word(uint32_t w) {
    /* td[r][sbox[b]] is InvMixColumns of byte b in row r (the inverse S-box cancels). */
    return td[0][sbox[w >> 24]] ^ td[1][sbox[(w >> 16) & 0xff]] ^ td[2][sbox[(w >> 8) & 0xff]]
         ^ td[3][sbox[w & 0xff]];
}

void caes_portable_expand(caes_schedule *s, const uint8_t *key, size_t key_length) {
    ensure_tables();
    const int nk = (int)(key_length / 4);
    const int rounds = nk + 6;
    const int total = 4 * (rounds + 1);
    uint32_t w[60];
    for (int i = 0; i < nk; i++) w[i] = load_be32(key + 4 * i);
    uint32_t rcon = 0x01;
    for (int i = nk; i < total; i++) {
        uint32_t t = w[i - 1];
        if (i % nk == 0) {
            t = sub_word((t << 8) | (t >> 24)) ^ (rcon << 24);
            rcon = gf_mul((uint8_t)rcon, 2);
        } else if (nk > 6 && i % nk == 4) {
            t = sub_word(t);
        }
        w[i] = w[i - nk] ^ t;
    }
    s->rounds = rounds;
    for (int i = 0; i < total; i++) store_be32(s->enc + 4 * i, w[i]);
    /* Decryption round keys: reversed order, InvMixColumns on all but the outer two. */
    for (int r = 0; r <= rounds; r++) {
        for (int c = 0; c < 4; c++) {
            uint32_t word = w[4 * (rounds - r) + c];
            if (r != 0 && r != rounds) word = inv_mix_word(word);
            store_be32(s->dec + 16 * r + 4 * c, word);
        }
    }
}

void caes_portable_encrypt(const caes_schedule *s, const uint8_t *in, uint8_t *out) {
    ensure_tables();
    const uint8_t *rk = s->enc;
    uint32_t s0 = load_be32(in) ^ load_be32(rk);
    uint32_t s1 = load_be32(in + 4) ^ load_be32(rk + 4);
    uint32_t s2 = load_be32(in + 8) ^ load_be32(rk + 8);
    uint32_t s3 = load_be32(in + 12) ^ load_be32(rk + 12);
    for (int r = 1; r < s->rounds; r++) {
        rk += 16;
        uint32_t t0 = te[0][s0 >> 24] ^ te[1][(s1 >> 16) & 0xff] ^ te[2][(s2 >> 8) & 0xff] ^ te[3][s3 & 0xff] ^ load_be32(rk);
        uint32_t t1 = te[0][s1 >> 24] ^ te[1][(s2 >> 16) & 0xff] ^ te[2][(s3 >> 8) & 0xff] ^ te[3][s0 & 0xff] ^ load_be32(rk + 4);
        uint32_t t2 = te[0][s2 >> 24] ^ te[1][(s3 >> 16) & 0xff] ^ te[2][(s0 >> 8) & 0xff] ^ te[3][s1 & 0xff] ^ load_be32(rk + 8);
        uint32_t t3 = te[0][s3 >> 24] ^ te[1][(s0 >> 16) & 0xff] ^ te[2][(s1 >> 8) & 0xff] ^ te[3][s2 & 0xff] ^ load_be32(rk + 12);
        s0 = t0; s1 = t1; s2 = t2; s3 = t3;
    }
    rk += 16;
#define CAES_LAST(a, b, c, d) (((uint32_t)sbox[(a) >> 24] << 24) | ((uint32_t)sbox[((b) >> 16) & 0xff] << 16) \
                             | ((uint32_t)sbox[((c) >> 8) & 0xff] << 8) | sbox[(d) & 0xff])
    store_be32(out, CAES_LAST(s0, s1, s2, s3) ^ load_be32(rk));
    store_be32(out + 4, CAES_LAST(s1, s2, s3, s0) ^ load_be32(rk + 4));
    store_be32(out + 8, CAES_LAST(s2, s3, s0, s1) ^ load_be32(rk + 8));
    store_be32(out + 12, CAES_LAST(s3, s0, s1, s2) ^ load_be32(rk + 12));
#undef CAES_LAST
}

void caes_portable_decrypt(const caes_schedule *s, const uint8_t *in, uint8_t *out) {
    ensure_tables();
    const uint8_t *rk = s->dec;
    uint32_t s0 = load_be32(in) ^ load_be32(rk);
    uint32_t s1 = load_be32(in + 4) ^ load_be32(rk + 4);
    uint32_t s2 = load_be32(in + 8) ^ load_be32(rk + 8);
    uint32_t s3 = load_be32(in + 12) ^ load_be32(rk + 12);
    for (int r = 1; r < s->rounds; r++) {
        rk += 16;
        uint32_t t0 = td[0][s0 >> 24] ^ td[1][(s3 >> 16) & 0xff] ^ td[2][(s2 >> 8) & 0xff] ^ td[3][s1 & 0xff] ^ load_be32(rk);
        uint32_t t1 = td[0][s1 >> 24] ^ td[1][(s0 >> 16) & 0xff] ^ td[2][(s3 >> 8) & 0xff] ^ td[3][s2 & 0xff] ^ load_be32(rk + 4);
        uint32_t t2 = td[0][s2 >> 24] ^ td[1][(s1 >> 16) & 0xff] ^ td[2][(s0 >> 8) & 0xff] ^ td[3][s3 & 0xff] ^ load_be32(rk + 8);
        uint32_t t3 = td[0][s3 >> 24] ^ td[1][(s2 >> 16) & 0xff] ^ td[2][(s1 >> 8) & 0xff] ^ td[3][s0 & 0xff] ^ load_be32(rk + 12);
        s0 = t0; s1 = t1; s2 = t2; s3 = t3;
    }
    rk += 16;
#define CAES_LAST(a, b, c, d) (((uint32_t)inv_sbox[(a) >> 24] << 24) | ((uint32_t)inv_sbox[((b) >> 16) & 0xff] << 16) \
                             | ((uint32_t)inv_sbox[((c) >> 8) & 0xff] << 8) | inv_sbox[(d) & 0xff])
    store_be32(out, CAES_LAST(s0, s3, s2, s1) ^ load_be32(rk));
    store_be32(out + 4, CAES_LAST(s1, s0, s3, s2) ^ load_be32(rk + 4));
    store_be32(out + 8, CAES_LAST(s2, s1, s0, s3) ^ load_be32(rk + 8));
    store_be32(out + 12, CAES_LAST(s3, s2, s1, s0) ^ load_be32(rk + 12));
#undef CAES_LAST
}
