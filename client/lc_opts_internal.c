/* lc_opts_internal.c - the internal helpers of struct lc_opts that the
 * WebSocket transport needs (deep copy, clear, the CA defaults). Written
 * for the h-engine branch because client/lc_opts.c (the public lc_opts_*
 * setters) lives on another branch; at the merge these four functions go
 * into lc_opts.c and this file is removed. */
#include <stdlib.h>
#include <string.h>

#include "lc_internal.h"

static int dup_field(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = lc__strdup(src);
    return *dst ? 0 : -1;
}

int lc__opts_copy(struct lc_opts *dst, const struct lc_opts *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->safety_margin_ms = -1;
    if (!src)
        return 0;
    dst->timeout_ms = src->timeout_ms;
    dst->safety_margin_ms = src->safety_margin_ms;
    dst->check_interval_ms = src->check_interval_ms;
    dst->session_grace_ms = src->session_grace_ms;
    dst->log = src->log;
    dst->log_userdata = src->log_userdata;
    dst->error_cb = src->error_cb;
    dst->error_userdata = src->error_userdata;
    if (dup_field(&dst->url, src->url) || dup_field(&dst->token, src->token) ||
        dup_field(&dst->user_id, src->user_id) || dup_field(&dst->client_name, src->client_name) ||
        dup_field(&dst->ca_file, src->ca_file) || dup_field(&dst->ca_path, src->ca_path) ||
        dup_field(&dst->cert_file, src->cert_file) || dup_field(&dst->key_file, src->key_file)) {
        lc__opts_clear(dst);
        return -1;
    }
    return 0;
}

void lc__opts_clear(struct lc_opts *o)
{
    if (!o)
        return;
    free(o->url);
    free(o->token);
    free(o->user_id);
    free(o->client_name);
    free(o->ca_file);
    free(o->ca_path);
    free(o->cert_file);
    free(o->key_file);
    memset(o, 0, sizeof(*o));
    o->safety_margin_ms = -1;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

const char *lc__ca_file(const struct lc_opts *o)
{
    if (o && o->ca_file)
        return o->ca_file;
    const char *v = env_nonempty("SSL_CERT_FILE");
    return v ? v : env_nonempty("CURL_CA_BUNDLE");
}

const char *lc__ca_path(const struct lc_opts *o)
{
    if (o && o->ca_path)
        return o->ca_path;
    return env_nonempty("SSL_CERT_DIR");
}
