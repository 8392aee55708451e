// Public entry points: run-time backend choice and the portable versions of the bulk operations.
#include "caes_internal.h"

#include <stdatomic.h>
#include <string.h>

#if CAES_HAVE_AESNI_CODE
#include <cpuid.h>
#endif

static _Atomic int aesni_cached = -1;

int caes_aesni_available(void) {
    int cached = atomic_load_explicit(&aesni_cached, memory_order_relaxed);
    if (cached >= 0) return cached;
    int found = 0;
#if CAES_HAVE_AESNI_CODE
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        const unsigned int ssse3 = 1u << 9, sse41 = 1u << 19, aes = 1u << 25;
        found = (ecx & (ssse3 | sse41 | aes)) == (ssse3 | sse41 | aes);
    }
#endif
    atomic_store_explicit(&aesni_cached, found, memory_order_relaxed);
    return found;
}

int caes_resolve_backend(int backend) {
    if (backend == CAES_BACKEND_PORTABLE) return CAES_BACKEND_PORTABLE;
    return caes_aesni_available() ? CAES_BACKEND_AESNI : CAES_BACKEND_PORTABLE;
}

int caes_expand_key(caes_schedule *schedule, const uint8_t *key, size_t key_length, int backend) {
    if (key_length != 16 && key_length != 32) return -1;
#if CAES_HAVE_AESNI_CODE
    if (caes_resolve_backend(backend) == CAES_BACKEND_AESNI) {
        caes_aesni_expand(schedule, key, key_length);
        return 0;
    }
#else
    (void)backend;
#endif
    caes_portable_expand(schedule, key, key_length);
    return 0;
}

void caes_encrypt_block(const caes_schedule *schedule, const uint8_t *in, uint8_t *out, int backend) {
#if CAES_HAVE_AESNI_CODE
    if (caes_resolve_backend(backend) == CAES_BACKEND_AESNI) { caes_aesni_encrypt(schedule, in, out); return; }
#else
    (void)backend;
#endif
    caes_portable_encrypt(schedule, in, out);
}

void caes_decrypt_block(const caes_schedule *schedule, const uint8_t *in, uint8_t *out, int backend) {
#if CAES_HAVE_AESNI_CODE
    if (caes_resolve_backend(backend) == CAES_BACKEND_AESNI) { caes_aesni_decrypt(schedule, in, out); return; }
#else
    (void)backend;
#endif
    caes_portable_decrypt(schedule, in, out);
}

static void reverse16(const uint8_t *in, uint8_t *out) {
    uint8_t tmp[16];
    for (int i = 0; i < 16; i++) tmp[i] = in[15 - i];
    memcpy(out, tmp, 16);
}

/* One 16-byte chunk of the ESP32 scheme: reverse, AES with a fresh schedule, reverse. */
static void portable_esp32_chunk(const caes_schedule *s, const uint8_t *in, uint8_t *out, int use_inverse) {
    uint8_t block[16];
    reverse16(in, block);
    if (use_inverse) caes_portable_decrypt(s, block, block);
    else caes_portable_encrypt(s, block, block);
    reverse16(block, out);
}

void caes_esp32_blocks(const uint8_t *keys, size_t lead, const uint8_t *in, uint8_t *out,
                       size_t length, int use_inverse, int backend) {
#if CAES_HAVE_AESNI_CODE
    if (caes_resolve_backend(backend) == CAES_BACKEND_AESNI) {
        caes_aesni_esp32_blocks(keys, lead, in, out, length, use_inverse);
        return;
    }
#else
    (void)backend;
#endif
    caes_schedule s;
    size_t position = 0;
    size_t flash_block = 0;
    size_t offset_in_block = lead;
    while (position + 16 <= length) {
        if (position == 0 || offset_in_block == 0) caes_portable_expand(&s, keys + 32 * flash_block, 32);
        portable_esp32_chunk(&s, in + position, out + position, use_inverse);
        position += 16;
        offset_in_block += 16;
        if (offset_in_block == 32) { offset_in_block = 0; flash_block++; }
    }
}

/* Multiplies an XTS tweak by the primitive element (IEEE 1619: little-endian, x^128 + x^7 + x^2 + x + 1). */
static void xts_double(uint8_t t[16]) {
    uint8_t carry = (uint8_t)(t[15] >> 7);
    for (int i = 15; i > 0; i--) t[i] = (uint8_t)((t[i] << 1) | (t[i - 1] >> 7));
    t[0] = (uint8_t)((t[0] << 1) ^ (carry ? 0x87 : 0x00));
}

void caes_xts_units(const caes_schedule *data_key, const caes_schedule *tweak_key,
                    const uint8_t *tweaks, const uint8_t *in, uint8_t *out, size_t units,
                    int decrypt, int backend) {
#if CAES_HAVE_AESNI_CODE
    if (caes_resolve_backend(backend) == CAES_BACKEND_AESNI) {
        caes_aesni_xts_units(data_key, tweak_key, tweaks, in, out, units, decrypt);
        return;
    }
#else
    (void)backend;
#endif
    for (size_t u = 0; u < units; u++) {
        uint8_t t[16];
        caes_portable_encrypt(tweak_key, tweaks + 16 * u, t);
        const uint8_t *src = in + 128 * u;
        uint8_t *dst = out + 128 * u;
        /* Block j of the reversed unit is the reversal of source chunk 7 - j. */
        for (int j = 0; j < 8; j++) {
            uint8_t x[16];
            reverse16(src + 16 * (7 - j), x);
            for (int i = 0; i < 16; i++) x[i] ^= t[i];
            if (decrypt) caes_portable_decrypt(data_key, x, x);
            else caes_portable_encrypt(data_key, x, x);
            for (int i = 0; i < 16; i++) x[i] ^= t[i];
            reverse16(x, dst + 16 * (7 - j));
            xts_double(t);
        }
    }
}
