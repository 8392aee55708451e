// AES-NI implementation. Every function carries its own target attribute, so the file builds
// without -maes and the code runs only after caes_aesni_available() said the CPU has it.
#include "caes_internal.h"

#if CAES_HAVE_AESNI_CODE

#include <immintrin.h>
#include <string.h>

#define AESNI __attribute__((target("aes,sse4.1,ssse3")))
#define AESNI_INLINE static inline __attribute__((always_inline, target("aes,sse4.1,ssse3")))

AESNI_INLINE __m128i reverse_bytes(__m128i x) {
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* w ^= w << 32 ^ w << 64 ^ w << 96 (the running XOR of the previous round key's words). */
AESNI_INLINE __m128i prefix_xor(__m128i w) {
    w = _mm_xor_si128(w, _mm_slli_si128(w, 4));
    w = _mm_xor_si128(w, _mm_slli_si128(w, 4));
    return _mm_xor_si128(w, _mm_slli_si128(w, 4));
}

#define NEXT128(prev, rcon) \
    _mm_xor_si128(prefix_xor(prev), _mm_shuffle_epi32(_mm_aeskeygenassist_si128((prev), (rcon)), 0xff))

AESNI_INLINE void expand128(__m128i rk[11], const uint8_t *key) {
    rk[0] = _mm_loadu_si128((const __m128i *)key);
    rk[1] = NEXT128(rk[0], 0x01);
    rk[2] = NEXT128(rk[1], 0x02);
    rk[3] = NEXT128(rk[2], 0x04);
    rk[4] = NEXT128(rk[3], 0x08);
    rk[5] = NEXT128(rk[4], 0x10);
    rk[6] = NEXT128(rk[5], 0x20);
    rk[7] = NEXT128(rk[6], 0x40);
    rk[8] = NEXT128(rk[7], 0x80);
    rk[9] = NEXT128(rk[8], 0x1b);
    rk[10] = NEXT128(rk[9], 0x36);
}

/* AES-256: even round keys use RotWord+SubWord+Rcon of the previous odd key, odd ones SubWord only. */
#define EVEN256(prev2, prev1, rcon) \
    _mm_xor_si128(prefix_xor(prev2), _mm_shuffle_epi32(_mm_aeskeygenassist_si128((prev1), (rcon)), 0xff))
#define ODD256(prev2, prev1) \
    _mm_xor_si128(prefix_xor(prev2), _mm_shuffle_epi32(_mm_aeskeygenassist_si128((prev1), 0x00), 0xaa))

AESNI_INLINE void expand256(__m128i rk[15], const uint8_t *key) {
    rk[0] = _mm_loadu_si128((const __m128i *)key);
    rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
    rk[2] = EVEN256(rk[0], rk[1], 0x01);  rk[3] = ODD256(rk[1], rk[2]);
    rk[4] = EVEN256(rk[2], rk[3], 0x02);  rk[5] = ODD256(rk[3], rk[4]);
    rk[6] = EVEN256(rk[4], rk[5], 0x04);  rk[7] = ODD256(rk[5], rk[6]);
    rk[8] = EVEN256(rk[6], rk[7], 0x08);  rk[9] = ODD256(rk[7], rk[8]);
    rk[10] = EVEN256(rk[8], rk[9], 0x10); rk[11] = ODD256(rk[9], rk[10]);
    rk[12] = EVEN256(rk[10], rk[11], 0x20); rk[13] = ODD256(rk[11], rk[12]);
    rk[14] = EVEN256(rk[12], rk[13], 0x40);
}

/* Four AES-256 key expansions written step by step side by side, so the four dependency
 * chains overlap in the pipeline. */
AESNI_INLINE void expand256x4(__m128i rk[4][15], const uint8_t *keys) {
    for (int k = 0; k < 4; k++) {
        rk[k][0] = _mm_loadu_si128((const __m128i *)(keys + 32 * k));
        rk[k][1] = _mm_loadu_si128((const __m128i *)(keys + 32 * k + 16));
    }
#define STEP4(i, rcon) \
    for (int k = 0; k < 4; k++) rk[k][i] = EVEN256(rk[k][(i) - 2], rk[k][(i) - 1], rcon); \
    for (int k = 0; k < 4; k++) rk[k][(i) + 1] = ODD256(rk[k][(i) - 1], rk[k][i]);
    STEP4(2, 0x01)
    STEP4(4, 0x02)
    STEP4(6, 0x04)
    STEP4(8, 0x08)
    STEP4(10, 0x10)
    STEP4(12, 0x20)
#undef STEP4
    for (int k = 0; k < 4; k++) rk[k][14] = EVEN256(rk[k][12], rk[k][13], 0x40);
}

/* Decryption round keys of the equivalent inverse cipher, in place order: dk[i] for round i. */
AESNI_INLINE void inverse_schedule(__m128i dk[], const __m128i rk[], int rounds) {
    dk[0] = rk[rounds];
    for (int i = 1; i < rounds; i++) dk[i] = _mm_aesimc_si128(rk[rounds - i]);
    dk[rounds] = rk[0];
}

AESNI void caes_aesni_expand(caes_schedule *s, const uint8_t *key, size_t key_length) {
    __m128i rk[15], dk[15];
    int rounds;
    if (key_length == 16) { expand128(rk, key); rounds = 10; }
    else { expand256(rk, key); rounds = 14; }
    inverse_schedule(dk, rk, rounds);
    for (int i = 0; i <= rounds; i++) {
        _mm_storeu_si128((__m128i *)(s->enc + 16 * i), rk[i]);
        _mm_storeu_si128((__m128i *)(s->dec + 16 * i), dk[i]);
    }
    s->rounds = rounds;
}

AESNI_INLINE __m128i encrypt_with(const __m128i rk[], int rounds, __m128i x) {
    x = _mm_xor_si128(x, rk[0]);
    for (int i = 1; i < rounds; i++) x = _mm_aesenc_si128(x, rk[i]);
    return _mm_aesenclast_si128(x, rk[rounds]);
}

AESNI_INLINE __m128i decrypt_with(const __m128i dk[], int rounds, __m128i x) {
    x = _mm_xor_si128(x, dk[0]);
    for (int i = 1; i < rounds; i++) x = _mm_aesdec_si128(x, dk[i]);
    return _mm_aesdeclast_si128(x, dk[rounds]);
}

AESNI_INLINE void load_schedule(__m128i out[15], const uint8_t *bytes, int rounds) {
    for (int i = 0; i <= rounds; i++) out[i] = _mm_loadu_si128((const __m128i *)(bytes + 16 * i));
}

AESNI void caes_aesni_encrypt(const caes_schedule *s, const uint8_t *in, uint8_t *out) {
    __m128i rk[15];
    load_schedule(rk, s->enc, s->rounds);
    _mm_storeu_si128((__m128i *)out, encrypt_with(rk, s->rounds, _mm_loadu_si128((const __m128i *)in)));
}

AESNI void caes_aesni_decrypt(const caes_schedule *s, const uint8_t *in, uint8_t *out) {
    __m128i dk[15];
    load_schedule(dk, s->dec, s->rounds);
    _mm_storeu_si128((__m128i *)out, decrypt_with(dk, s->rounds, _mm_loadu_si128((const __m128i *)in)));
}

/* `count` (1 or 2) reversed 16-byte chunks under one AES-256 key. */
AESNI_INLINE void esp32_one_key(const uint8_t *key, const uint8_t *in, uint8_t *out, int count, int use_inverse) {
    __m128i rk[15], dk[15];
    expand256(rk, key);
    if (use_inverse) {
        inverse_schedule(dk, rk, 14);
        for (int c = 0; c < count; c++) {
            __m128i x = reverse_bytes(_mm_loadu_si128((const __m128i *)(in + 16 * c)));
            _mm_storeu_si128((__m128i *)(out + 16 * c), reverse_bytes(decrypt_with(dk, 14, x)));
        }
    } else {
        for (int c = 0; c < count; c++) {
            __m128i x = reverse_bytes(_mm_loadu_si128((const __m128i *)(in + 16 * c)));
            _mm_storeu_si128((__m128i *)(out + 16 * c), reverse_bytes(encrypt_with(rk, 14, x)));
        }
    }
}

/* Four full 32-byte flash blocks, each with its own key: eight AES blocks in flight. */
AESNI_INLINE void esp32_four_keys(const uint8_t *keys, const uint8_t *in, uint8_t *out, int use_inverse) {
    __m128i rk[4][15];
    __m128i x[8];
    expand256x4(rk, keys);
    for (int b = 0; b < 8; b++) x[b] = reverse_bytes(_mm_loadu_si128((const __m128i *)(in + 16 * b)));
    if (use_inverse) {
        __m128i dk[4][15];
        for (int k = 0; k < 4; k++) {
            dk[k][0] = rk[k][14];
            dk[k][14] = rk[k][0];
        }
        for (int i = 1; i < 14; i++)
            for (int k = 0; k < 4; k++) dk[k][i] = _mm_aesimc_si128(rk[k][14 - i]);
        for (int b = 0; b < 8; b++) x[b] = _mm_xor_si128(x[b], dk[b >> 1][0]);
        for (int i = 1; i < 14; i++)
            for (int b = 0; b < 8; b++) x[b] = _mm_aesdec_si128(x[b], dk[b >> 1][i]);
        for (int b = 0; b < 8; b++) x[b] = _mm_aesdeclast_si128(x[b], dk[b >> 1][14]);
    } else {
        for (int b = 0; b < 8; b++) x[b] = _mm_xor_si128(x[b], rk[b >> 1][0]);
        for (int i = 1; i < 14; i++)
            for (int b = 0; b < 8; b++) x[b] = _mm_aesenc_si128(x[b], rk[b >> 1][i]);
        for (int b = 0; b < 8; b++) x[b] = _mm_aesenclast_si128(x[b], rk[b >> 1][14]);
    }
    for (int b = 0; b < 8; b++) _mm_storeu_si128((__m128i *)(out + 16 * b), reverse_bytes(x[b]));
}

AESNI void caes_aesni_esp32_blocks(const uint8_t *keys, size_t lead, const uint8_t *in, uint8_t *out,
                                   size_t length, int use_inverse) {
    size_t position = 0;
    const uint8_t *key = keys;
    if (lead != 0 && length >= 16) {
        /* The data starts in the second half of a flash block. */
        esp32_one_key(key, in, out, 1, use_inverse);
        position = 16;
        key += 32;
    }
    while (length - position >= 128) {
        esp32_four_keys(key, in + position, out + position, use_inverse);
        position += 128;
        key += 128;
    }
    while (length - position >= 32) {
        esp32_one_key(key, in + position, out + position, 2, use_inverse);
        position += 32;
        key += 32;
    }
    if (length - position >= 16) esp32_one_key(key, in + position, out + position, 1, use_inverse);
}

/* Multiplies an XTS tweak (little-endian 128-bit) by x modulo x^128 + x^7 + x^2 + x + 1. */
AESNI_INLINE __m128i xts_double(__m128i t) {
    __m128i carries = _mm_and_si128(_mm_srai_epi32(t, 31), _mm_set_epi32(0x87, 1, 1, 1));
    carries = _mm_shuffle_epi32(carries, 0x93); /* lane i takes lane i-1; lane 0 takes lane 3 */
    return _mm_xor_si128(_mm_slli_epi32(t, 1), carries);
}

AESNI void caes_aesni_xts_units(const caes_schedule *data_key, const caes_schedule *tweak_key,
                                const uint8_t *tweaks, const uint8_t *in, uint8_t *out, size_t units,
                                int decrypt) {
    __m128i k1[15], k2[15];
    const int r1 = data_key->rounds, r2 = tweak_key->rounds;
    load_schedule(k1, decrypt ? data_key->dec : data_key->enc, r1);
    load_schedule(k2, tweak_key->enc, r2);
    for (size_t u = 0; u < units; u++) {
        const uint8_t *src = in + 128 * u;
        uint8_t *dst = out + 128 * u;
        __m128i t[8], x[8];
        t[0] = encrypt_with(k2, r2, _mm_loadu_si128((const __m128i *)(tweaks + 16 * u)));
        for (int j = 1; j < 8; j++) t[j] = xts_double(t[j - 1]);
        /* Block j of the reversed unit is the reversal of source chunk 7 - j. */
        for (int j = 0; j < 8; j++)
            x[j] = _mm_xor_si128(reverse_bytes(_mm_loadu_si128((const __m128i *)(src + 16 * (7 - j)))), t[j]);
        for (int j = 0; j < 8; j++) x[j] = _mm_xor_si128(x[j], k1[0]);
        if (decrypt) {
            for (int i = 1; i < r1; i++)
                for (int j = 0; j < 8; j++) x[j] = _mm_aesdec_si128(x[j], k1[i]);
            for (int j = 0; j < 8; j++) x[j] = _mm_aesdeclast_si128(x[j], k1[r1]);
        } else {
            for (int i = 1; i < r1; i++)
                for (int j = 0; j < 8; j++) x[j] = _mm_aesenc_si128(x[j], k1[i]);
            for (int j = 0; j < 8; j++) x[j] = _mm_aesenclast_si128(x[j], k1[r1]);
        }
        for (int j = 0; j < 8; j++)
            _mm_storeu_si128((__m128i *)(dst + 16 * (7 - j)), reverse_bytes(_mm_xor_si128(x[j], t[j])));
    }
}

#endif
