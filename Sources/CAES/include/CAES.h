// CAES: a small AES-128/AES-256 block cipher for host-side flash encryption.
//
// Two implementations share one key-schedule format: a portable 32-bit table implementation
// (tables computed at first use from the GF(2^8) definition) and an AES-NI implementation chosen
// at run time when the CPU has it. Only the bulk operations flash encryption needs are exported:
// single blocks (for known-answer tests), the ESP32 "one AES-256 key per 32-byte flash block"
// operation and the Espressif XTS-AES data-unit operation.
#ifndef CAES_H
#define CAES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Which implementation runs the rounds.
enum {
    /// AES-NI when the CPU has it, else portable.
    CAES_BACKEND_AUTO = 0,
    CAES_BACKEND_PORTABLE = 1,
    CAES_BACKEND_AESNI = 2,
};

/// An expanded key: `rounds + 1` encryption round keys and the matching decryption round keys
/// (equivalent inverse cipher: InvMixColumns applied to the inner ones), 16 bytes each, in
/// FIPS-197 byte order.
typedef struct caes_schedule {
    uint8_t enc[240];
    uint8_t dec[240];
    int32_t rounds;
} caes_schedule;

/// 1 when the CPU supports AES-NI (and SSSE3/SSE4.1), else 0.
int caes_aesni_available(void);

/// The backend that actually runs for a request (AUTO resolved; AESNI falls back to PORTABLE
/// when the CPU lacks it).
int caes_resolve_backend(int backend);

/// Expands a 16- or 32-byte key. Returns 0, or -1 for any other length.
int caes_expand_key(caes_schedule *schedule, const uint8_t *key, size_t key_length, int backend);

/// One 16-byte block, forward cipher / inverse cipher. `in` and `out` may be equal.
void caes_encrypt_block(const caes_schedule *schedule, const uint8_t *in, uint8_t *out, int backend);
void caes_decrypt_block(const caes_schedule *schedule, const uint8_t *in, uint8_t *out, int backend);

/// ESP32 flash-encryption bulk operation with one AES-256 key per 32-byte flash block.
///
/// The data covers `length` bytes (a multiple of 16) laid over consecutive 32-byte flash blocks;
/// the first flash block starts `lead` bytes (0 or 16) before `in`. Flash block i uses the 32-byte
/// key at `keys + 32 * i`. Each 16-byte chunk is byte-reversed, run through one AES-256 operation
/// (the inverse cipher when `use_inverse` is non-zero, else the forward cipher) and reversed back.
void caes_esp32_blocks(const uint8_t *keys, size_t lead, const uint8_t *in, uint8_t *out,
                       size_t length, int use_inverse, int backend);

/// Espressif XTS-AES over `units` consecutive 128-byte data units.
///
/// For each unit u: the 128 bytes are reversed, processed as one IEEE 1619 XTS data unit with
/// data key `data_key`, tweak key `tweak_key` and the 16-byte tweak value at `tweaks + 16 * u`,
/// then reversed back. `decrypt` selects the XTS direction.
void caes_xts_units(const caes_schedule *data_key, const caes_schedule *tweak_key,
                    const uint8_t *tweaks, const uint8_t *in, uint8_t *out, size_t units,
                    int decrypt, int backend);

#ifdef __cplusplus
}
#endif

#endif
