#ifndef ESPFORGE_CPKCS11_H
#define ESPFORGE_CPKCS11_H

/*
 * espforge's own declarations of the part of the PKCS#11 (Cryptoki) v2.40 C interface it uses,
 * written from the standard's type and function definitions (Unix conventions: natural structure
 * alignment, `unsigned long` for CK_ULONG). A module is loaded with dlopen and reached through the
 * function list returned by its C_GetFunctionList; every call goes through the small wrappers
 * below so Swift never handles the function-pointer table itself.
 */

#include <stddef.h>

typedef unsigned long ef_ck_ulong;
typedef unsigned char ef_ck_byte;

typedef struct {
    ef_ck_byte major;
    ef_ck_byte minor;
} ef_ck_version;

typedef struct {
    ef_ck_version cryptoki_version;
    ef_ck_byte manufacturer_id[32];
    ef_ck_ulong flags;
    ef_ck_byte library_description[32];
    ef_ck_version library_version;
} ef_ck_info;

typedef struct {
    ef_ck_byte slot_description[64];
    ef_ck_byte manufacturer_id[32];
    ef_ck_ulong flags;
    ef_ck_version hardware_version;
    ef_ck_version firmware_version;
} ef_ck_slot_info;

typedef struct {
    ef_ck_byte label[32];
    ef_ck_byte manufacturer_id[32];
    ef_ck_byte model[16];
    ef_ck_byte serial_number[16];
    ef_ck_ulong flags;
    ef_ck_ulong max_session_count;
    ef_ck_ulong session_count;
    ef_ck_ulong max_rw_session_count;
    ef_ck_ulong rw_session_count;
    ef_ck_ulong max_pin_len;
    ef_ck_ulong min_pin_len;
    ef_ck_ulong total_public_memory;
    ef_ck_ulong free_public_memory;
    ef_ck_ulong total_private_memory;
    ef_ck_ulong free_private_memory;
    ef_ck_version hardware_version;
    ef_ck_version firmware_version;
    ef_ck_byte utc_time[16];
} ef_ck_token_info;

typedef struct {
    ef_ck_ulong type;
    void *value;
    ef_ck_ulong value_len;
} ef_ck_attribute;

typedef struct {
    ef_ck_ulong mechanism;
    void *parameter;
    ef_ck_ulong parameter_len;
} ef_ck_mechanism;

typedef struct {
    ef_ck_ulong hash_alg;
    ef_ck_ulong mgf;
    ef_ck_ulong salt_len;
} ef_ck_rsa_pss_params;

/// A loaded module: the dlopen handle and its function list (opaque to Swift).
typedef struct ef_p11_module ef_p11_module;

/// Loads `path` and fetches its function list. On failure returns NULL and writes a reason
/// (dlerror text or which symbol is missing) into `error` (size `error_len`).
ef_p11_module *ef_p11_load(const char *path, char *error, size_t error_len);
/// C_Finalize (if initialised) and dlclose.
void ef_p11_unload(ef_p11_module *module);

/// C_Initialize with CKF_OS_LOCKING_OK (the module may be used from several threads).
ef_ck_ulong ef_p11_initialize(ef_p11_module *m);
ef_ck_ulong ef_p11_get_info(ef_p11_module *m, ef_ck_info *info);
ef_ck_ulong ef_p11_get_slot_list(ef_p11_module *m, int token_present, ef_ck_ulong *slots, ef_ck_ulong *count);
ef_ck_ulong ef_p11_get_slot_info(ef_p11_module *m, ef_ck_ulong slot, ef_ck_slot_info *info);
ef_ck_ulong ef_p11_get_token_info(ef_p11_module *m, ef_ck_ulong slot, ef_ck_token_info *info);
ef_ck_ulong ef_p11_open_session(ef_p11_module *m, ef_ck_ulong slot, ef_ck_ulong flags, ef_ck_ulong *session);
ef_ck_ulong ef_p11_close_session(ef_p11_module *m, ef_ck_ulong session);
ef_ck_ulong ef_p11_close_all_sessions(ef_p11_module *m, ef_ck_ulong slot);
/// C_Login as CKU_USER; `pin` may be NULL (protected authentication path).
ef_ck_ulong ef_p11_login(ef_p11_module *m, ef_ck_ulong session, const ef_ck_byte *pin, ef_ck_ulong pin_len);
ef_ck_ulong ef_p11_logout(ef_p11_module *m, ef_ck_ulong session);
ef_ck_ulong ef_p11_find_objects_init(ef_p11_module *m, ef_ck_ulong session, ef_ck_attribute *templ, ef_ck_ulong count);
ef_ck_ulong ef_p11_find_objects(ef_p11_module *m, ef_ck_ulong session, ef_ck_ulong *objects, ef_ck_ulong max, ef_ck_ulong *found);
ef_ck_ulong ef_p11_find_objects_final(ef_p11_module *m, ef_ck_ulong session);
ef_ck_ulong ef_p11_get_attribute_value(ef_p11_module *m, ef_ck_ulong session, ef_ck_ulong object,
                                       ef_ck_attribute *templ, ef_ck_ulong count);
ef_ck_ulong ef_p11_sign_init(ef_p11_module *m, ef_ck_ulong session, ef_ck_mechanism *mechanism, ef_ck_ulong key);
ef_ck_ulong ef_p11_sign(ef_p11_module *m, ef_ck_ulong session, const ef_ck_byte *data, ef_ck_ulong data_len,
                        ef_ck_byte *signature, ef_ck_ulong *signature_len);
ef_ck_ulong ef_p11_generate_key_pair(ef_p11_module *m, ef_ck_ulong session, ef_ck_mechanism *mechanism,
                                     ef_ck_attribute *public_template, ef_ck_ulong public_count,
                                     ef_ck_attribute *private_template, ef_ck_ulong private_count,
                                     ef_ck_ulong *public_key, ef_ck_ulong *private_key);

#endif
