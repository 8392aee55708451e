#include "cpkcs11.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Return value type and the calling convention of every Cryptoki function on Unix. */
typedef ef_ck_ulong ef_rv;
#define EF_CKR_OK 0UL
#define EF_CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL
#define EF_CKF_OS_LOCKING_OK 0x2UL
#define EF_CKU_USER 1UL

typedef struct {
    void *create_mutex;
    void *destroy_mutex;
    void *lock_mutex;
    void *unlock_mutex;
    ef_ck_ulong flags;
    void *reserved;
} ef_ck_initialize_args;

/* The function list in the standard's order (v2.40). Entries espforge never calls are kept as
   untyped pointers only so the ones after them sit at the right place. */
typedef struct {
    ef_ck_version version;
    ef_rv (*initialize)(void *args);
    ef_rv (*finalize)(void *reserved);
    ef_rv (*get_info)(ef_ck_info *info);
    ef_rv (*get_function_list)(void **list);
    ef_rv (*get_slot_list)(ef_ck_byte token_present, ef_ck_ulong *slots, ef_ck_ulong *count);
    ef_rv (*get_slot_info)(ef_ck_ulong slot, ef_ck_slot_info *info);
    ef_rv (*get_token_info)(ef_ck_ulong slot, ef_ck_token_info *info);
    void *get_mechanism_list;
    void *get_mechanism_info;
    void *init_token;
    void *init_pin;
    void *set_pin;
    ef_rv (*open_session)(ef_ck_ulong slot, ef_ck_ulong flags, void *application, void *notify, ef_ck_ulong *session);
    ef_rv (*close_session)(ef_ck_ulong session);
    ef_rv (*close_all_sessions)(ef_ck_ulong slot);
    void *get_session_info;
    void *get_operation_state;
    void *set_operation_state;
    ef_rv (*login)(ef_ck_ulong session, ef_ck_ulong user_type, const ef_ck_byte *pin, ef_ck_ulong pin_len);
    ef_rv (*logout)(ef_ck_ulong session);
    void *create_object;
    void *copy_object;
    void *destroy_object;
    void *get_object_size;
    ef_rv (*get_attribute_value)(ef_ck_ulong session, ef_ck_ulong object, ef_ck_attribute *templ, ef_ck_ulong count);
    void *set_attribute_value;
    ef_rv (*find_objects_init)(ef_ck_ulong session, ef_ck_attribute *templ, ef_ck_ulong count);
    ef_rv (*find_objects)(ef_ck_ulong session, ef_ck_ulong *objects, ef_ck_ulong max, ef_ck_ulong *found);
    ef_rv (*find_objects_final)(ef_ck_ulong session);
    void *encrypt_init, *encrypt, *encrypt_update, *encrypt_final;
    void *decrypt_init, *decrypt, *decrypt_update, *decrypt_final;
    void *digest_init, *digest, *digest_update, *digest_key, *digest_final;
    ef_rv (*sign_init)(ef_ck_ulong session, ef_ck_mechanism *mechanism, ef_ck_ulong key);
    ef_rv (*sign)(ef_ck_ulong session, const ef_ck_byte *data, ef_ck_ulong data_len, ef_ck_byte *signature,
                  ef_ck_ulong *signature_len);
    void *sign_update, *sign_final, *sign_recover_init, *sign_recover;
    void *verify_init, *verify, *verify_update, *verify_final, *verify_recover_init, *verify_recover;
    void *digest_encrypt_update, *decrypt_digest_update, *sign_encrypt_update, *decrypt_verify_update;
    void *generate_key;
    ef_rv (*generate_key_pair)(ef_ck_ulong session, ef_ck_mechanism *mechanism, ef_ck_attribute *public_template,
                               ef_ck_ulong public_count, ef_ck_attribute *private_template, ef_ck_ulong private_count,
                               ef_ck_ulong *public_key, ef_ck_ulong *private_key);
} ef_function_list;

struct ef_p11_module {
    void *handle;
    ef_function_list *list;
    int initialized;
};

ef_p11_module *ef_p11_load(const char *path, char *error, size_t error_len) {
    if (error_len > 0) error[0] = 0;
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        snprintf(error, error_len, "%s", why ? why : "dlopen failed");
        return NULL;
    }
    ef_rv (*get_list)(void **) = NULL;
    void *sym = dlsym(handle, "C_GetFunctionList");
    if (!sym) {
        snprintf(error, error_len, "the library has no C_GetFunctionList symbol (not a PKCS#11 module)");
        dlclose(handle);
        return NULL;
    }
    memcpy(&get_list, &sym, sizeof(sym));
    void *list = NULL;
    ef_rv rv = get_list(&list);
    if (rv != EF_CKR_OK || !list) {
        snprintf(error, error_len, "C_GetFunctionList failed (CKR 0x%lx)", rv);
        dlclose(handle);
        return NULL;
    }
    ef_function_list *functions = (ef_function_list *)list;
    /* Layout check: the table must list C_GetFunctionList itself in its fourth entry. */
    void *listed = NULL;
    memcpy(&listed, &functions->get_function_list, sizeof(listed));
    if (functions->version.major < 2 || listed != sym) {
        snprintf(error, error_len, "the module's function list is not a PKCS#11 v2 table (version %u.%u)",
                 functions->version.major, functions->version.minor);
        dlclose(handle);
        return NULL;
    }
    ef_p11_module *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(error, error_len, "out of memory");
        dlclose(handle);
        return NULL;
    }
    m->handle = handle;
    m->list = functions;
    return m;
}

void ef_p11_unload(ef_p11_module *m) {
    if (!m) return;
    if (m->initialized && m->list->finalize) m->list->finalize(NULL);
    dlclose(m->handle);
    free(m);
}

#define EF_CALL(name, ...) \
    do { \
        if (!m || !m->list->name) return 0x54UL; /* CKR_FUNCTION_NOT_SUPPORTED */ \
        return m->list->name(__VA_ARGS__); \
    } while (0)

ef_ck_ulong ef_p11_initialize(ef_p11_module *m) {
    if (!m || !m->list->initialize) return 0x54UL;
    ef_ck_initialize_args args;
    memset(&args, 0, sizeof(args));
    args.flags = EF_CKF_OS_LOCKING_OK;
    ef_rv rv = m->list->initialize(&args);
    if (rv == EF_CKR_OK) m->initialized = 1;
    if (rv == EF_CKR_CRYPTOKI_ALREADY_INITIALIZED) rv = EF_CKR_OK;
    return rv;
}

ef_ck_ulong ef_p11_get_info(ef_p11_module *m, ef_ck_info *info) { EF_CALL(get_info, info); }

ef_ck_ulong ef_p11_get_slot_list(ef_p11_module *m, int token_present, ef_ck_ulong *slots, ef_ck_ulong *count) {
    EF_CALL(get_slot_list, (ef_ck_byte)(token_present ? 1 : 0), slots, count);
}

ef_ck_ulong ef_p11_get_slot_info(ef_p11_module *m, ef_ck_ulong slot, ef_ck_slot_info *info) {
    EF_CALL(get_slot_info, slot, info);
}

ef_ck_ulong ef_p11_get_token_info(ef_p11_module *m, ef_ck_ulong slot, ef_ck_token_info *info) {
    EF_CALL(get_token_info, slot, info);
}

ef_ck_ulong ef_p11_open_session(ef_p11_module *m, ef_ck_ulong slot, ef_ck_ulong flags, ef_ck_ulong *session) {
    EF_CALL(open_session, slot, flags, NULL, NULL, session);
}

ef_ck_ulong ef_p11_close_session(ef_p11_module *m, ef_ck_ulong session) { EF_CALL(close_session, session); }

ef_ck_ulong ef_p11_close_all_sessions(ef_p11_module *m, ef_ck_ulong slot) { EF_CALL(close_all_sessions, slot); }

ef_ck_ulong ef_p11_login(ef_p11_module *m, ef_ck_ulong session, const ef_ck_byte *pin, ef_ck_ulong pin_len) {
    EF_CALL(login, session, EF_CKU_USER, pin, pin_len);
}

ef_ck_ulong ef_p11_logout(ef_p11_module *m, ef_ck_ulong session) { EF_CALL(logout, session); }

ef_ck_ulong ef_p11_find_objects_init(ef_p11_module *m, ef_ck_ulong session, ef_ck_attribute *templ, ef_ck_ulong count) {
    EF_CALL(find_objects_init, session, templ, count);
}

ef_ck_ulong ef_p11_find_objects(ef_p11_module *m, ef_ck_ulong session, ef_ck_ulong *objects, ef_ck_ulong max,
                                ef_ck_ulong *found) {
    EF_CALL(find_objects, session, objects, max, found);
}

ef_ck_ulong ef_p11_find_objects_final(ef_p11_module *m, ef_ck_ulong session) { EF_CALL(find_objects_final, session); }

ef_ck_ulong ef_p11_get_attribute_value(ef_p11_module *m, ef_ck_ulong session, ef_ck_ulong object,
                                       ef_ck_attribute *templ, ef_ck_ulong count) {
    EF_CALL(get_attribute_value, session, object, templ, count);
}

ef_ck_ulong ef_p11_sign_init(ef_p11_module *m, ef_ck_ulong session, ef_ck_mechanism *mechanism, ef_ck_ulong key) {
    EF_CALL(sign_init, session, mechanism, key);
}

ef_ck_ulong ef_p11_sign(ef_p11_module *m, ef_ck_ulong session, const ef_ck_byte *data, ef_ck_ulong data_len,
                        ef_ck_byte *signature, ef_ck_ulong *signature_len) {
    EF_CALL(sign, session, data, data_len, signature, signature_len);
}

ef_ck_ulong ef_p11_generate_key_pair(ef_p11_module *m, ef_ck_ulong session, ef_ck_mechanism *mechanism,
                                     ef_ck_attribute *public_template, ef_ck_ulong public_count,
                                     ef_ck_attribute *private_template, ef_ck_ulong private_count,
                                     ef_ck_ulong *public_key, ef_ck_ulong *private_key) {
    EF_CALL(generate_key_pair, session, mechanism, public_template, public_count, private_template, private_count,
            public_key, private_key);
}
