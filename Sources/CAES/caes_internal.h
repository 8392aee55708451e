// Internal interface between the dispatcher (caes.c), the portable implementation and the
// AES-NI implementation. Not part of the public header.
#ifndef CAES_INTERNAL_H
#define CAES_INTERNAL_H

#include "CAES.h"

#if defined(__x86_64__) || defined(__i386__)
#define CAES_HAVE_AESNI_CODE 1
#else
#define CAES_HAVE_AESNI_CODE 0
#endif

/* Portable implementation (caes_portable.c). */
void caes_portable_expand(caes_schedule *s, const uint8_t *key, size_t key_length);
void caes_portable_encrypt(const caes_schedule *s, const uint8_t *in, uint8_t *out);
void caes_portable_decrypt(const caes_schedule *s, const uint8_t *in, uint8_t *out);

#if CAES_HAVE_AESNI_CODE
/* AES-NI implementation (caes_aesni.c); only called after CPUID said yes. */
void caes_aesni_expand(caes_schedule *s, const uint8_t *key, size_t key_length);
void caes_aesni_encrypt(const caes_schedule *s, const uint8_t *in, uint8_t *out);
void caes_aesni_decrypt(const caes_schedule *s, const uint8_t *in, uint8_t *out);
void caes_aesni_esp32_blocks(const uint8_t *keys, size_t lead, const uint8_t *in, uint8_t *out,
                             size_t length, int use_inverse);
void caes_aesni_xts_units(const caes_schedule *data_key, const caes_schedule *tweak_key,
                          const uint8_t *tweaks, const uint8_t *in, uint8_t *out, size_t units,
                          int decrypt);
#endif

#endif
