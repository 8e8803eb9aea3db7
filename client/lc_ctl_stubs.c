/* lc_ctl_stubs.c - TEMPORARY stand-ins for the 1.1 functions that lockctl
 * calls, so the h-ctl branch links before the library parts are merged.
 * They map the options object onto the 1.0 lc_options and the 1.1 calls
 * onto the 1.0 ones: no TLS settings, no error callback, no self-fencing,
 * no preemption warnings. DROP THIS FILE AT MERGE (its commit says
 * "TEMP STUBS"); the real implementations replace every function here. */
#include <stdlib.h>
#include <string.h>

#include "lc_internal.h"

const char *lc_version(int *major, int *minor, int *patch)
{
    if (major)
        *major = LC_VERSION_MAJOR;
    if (minor)
        *minor = LC_VERSION_MINOR;
    if (patch)
        *patch = LC_VERSION_PATCH;
    return LC_VERSION_STRING;
}

lc_status lc_opts_new(lc_opts **out)
{
    if (!out)
        return LC_ERR_BAD_REQUEST;
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return LC_ERR_NOMEM;
    (*out)->safety_margin_ms = -1;
    return LC_OK;
}

void lc_opts_free(lc_opts *o)
{
    if (!o)
        return;
    char **s[] = {&o->url, &o->token, &o->user_id, &o->client_name,
                  &o->ca_file, &o->ca_path, &o->cert_file, &o->key_file};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        free(*s[i]);
    free(o);
}

lc_status lc_opts_set_str(lc_opts *o, lc_opt key, const char *value)
{
    char **slot;
    if (!o)
        return LC_ERR_BAD_REQUEST;
    switch (key) {
    case LC_OPT_URL:
        if (value && strncmp(value, "http://", 7) && strncmp(value, "https://", 8))
            return LC_ERR_BAD_REQUEST;
        slot = &o->url;
        break;
    case LC_OPT_TOKEN: slot = &o->token; break;
    case LC_OPT_USER_ID: slot = &o->user_id; break;
    case LC_OPT_CLIENT_NAME: slot = &o->client_name; break;
    case LC_OPT_CA_FILE: slot = &o->ca_file; break;
    case LC_OPT_CA_PATH: slot = &o->ca_path; break;
    case LC_OPT_CERT_FILE: slot = &o->cert_file; break;
    case LC_OPT_KEY_FILE: slot = &o->key_file; break;
    default: return LC_ERR_BAD_REQUEST;
    }
    char *copy = NULL;
    if (value && !(copy = strdup(value)))
        return LC_ERR_NOMEM;
    free(*slot);
    *slot = copy;
    return LC_OK;
}

lc_status lc_opts_set_long(lc_opts *o, lc_opt key, long value)
{
    if (!o)
        return LC_ERR_BAD_REQUEST;
    switch (key) {
    case LC_OPT_TIMEOUT_MS: o->timeout_ms = value; break;
    case LC_OPT_SAFETY_MARGIN_MS: o->safety_margin_ms = value; break;
    case LC_OPT_CHECK_INTERVAL_MS: o->check_interval_ms = value; break;
    case LC_OPT_SESSION_GRACE_MS: o->session_grace_ms = value; break;
    default: return LC_ERR_BAD_REQUEST;
    }
    return LC_OK;
}

lc_status lc_opts_set_log(lc_opts *o, lc_log_fn fn, void *userdata)
{
    if (!o)
        return LC_ERR_BAD_REQUEST;
    o->log = fn;
    o->log_userdata = userdata;
    return LC_OK;
}

lc_status lc_opts_set_error_cb(lc_opts *o, lc_error_fn fn, void *userdata)
{
    if (!o)
        return LC_ERR_BAD_REQUEST;
    o->error_cb = fn;
    o->error_userdata = userdata;
    return LC_OK;
}

static void to_options(const lc_opts *o, lc_options *lo)
{
    memset(lo, 0, sizeof(*lo));
    if (!o)
        return;
    lo->url = o->url;
    lo->token = o->token;
    lo->timeout_ms = o->timeout_ms;
    lo->user_id = o->user_id;
    lo->client_name = o->client_name;
    lo->log = o->log;
    lo->log_userdata = o->log_userdata;
}

lc_status lc_client_new_opts(const lc_opts *o, lc_client **out)
{
    lc_options lo;
    to_options(o, &lo);
    return lc_client_new(&lo, out);
}

lc_status lc_keepalive_start_cb(lc_client *client, lc_lock *lock, long interval_ms,
                                const lc_keepalive_callbacks *cbs, lc_keepalive **out)
{
    return lc_keepalive_start(client, lock, interval_ms, cbs ? cbs->on_lost : NULL,
                              cbs ? cbs->userdata : NULL, out);
}

lc_status lc_watch_new_opts(const lc_opts *o, const lc_watch_callbacks *cbs, lc_watch **out)
{
    lc_options lo;
    to_options(o, &lo);
    return lc_watch_new(&lo, cbs, out);
}

lc_status lc_watch_status(lc_watch *w)
{
    (void)w;
    return LC_OK;
}
