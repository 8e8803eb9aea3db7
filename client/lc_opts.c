/* lc_opts.c - the options object of 1.1 (lockclient.h, "options object"),
 * the internal copy every client, watch and loop keeps of it, the TLS
 * defaults taken from the environment, and lc_version().
 *
 * Settings are keys, not struct fields, so later versions add keys without
 * changing any struct a program was compiled against. Every object made
 * from an lc_opts deep-copies it (lc__opts_copy): the caller may free or
 * change its lc_opts at once. */
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

static void opts_defaults(struct lc_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = 5000;
    o->safety_margin_ms = -1;
    o->check_interval_ms = 1000;
    o->session_grace_ms = 10000;
}

lc_status lc_opts_new(lc_opts **out)
{
    if (!out)
        return LC_ERR_BAD_REQUEST;
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return LC_ERR_NOMEM;
    opts_defaults(*out);
    return LC_OK;
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
    opts_defaults(o);
}

void lc_opts_free(lc_opts *opts)
{
    if (!opts)
        return;
    lc__opts_clear(opts);
    free(opts);
}

/* Copies one optional string; 0, or -1 when out of memory. */
static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

int lc__opts_copy(struct lc_opts *dst, const struct lc_opts *src)
{
    opts_defaults(dst);
    if (!src)
        return 0;
    struct lc_opts t = *src;    /* numbers and callbacks */
    int bad = dup_opt(&t.url, src->url);
    bad |= dup_opt(&t.token, src->token);
    bad |= dup_opt(&t.user_id, src->user_id);
    bad |= dup_opt(&t.client_name, src->client_name);
    bad |= dup_opt(&t.ca_file, src->ca_file);
    bad |= dup_opt(&t.ca_path, src->ca_path);
    bad |= dup_opt(&t.cert_file, src->cert_file);
    bad |= dup_opt(&t.key_file, src->key_file);
    *dst = t;
    if (bad) {
        lc__opts_clear(dst);
        return -1;
    }
    return 0;
}

/* The URL schemes an options object accepts (the client speaks HTTP; a
 * watch or loop derives ws(s):// from the same URL). */
static int url_ok(const char *url)
{
    return !strncmp(url, "http://", 7) || !strncmp(url, "https://", 8);
}

lc_status lc_opts_set_str(lc_opts *o, lc_opt key, const char *value)
{
    if (!o)
        return LC_ERR_BAD_REQUEST;
    char **slot;
    switch (key) {
    case LC_OPT_URL:
        if (value && !url_ok(value))
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
    char *v = NULL;
    if (dup_opt(&v, value))
        return LC_ERR_NOMEM;
    free(*slot);
    *slot = v;
    return LC_OK;
}

lc_status lc_opts_set_long(lc_opts *o, lc_opt key, long value)
{
    if (!o)
        return LC_ERR_BAD_REQUEST;
    switch (key) {
    case LC_OPT_TIMEOUT_MS: o->timeout_ms = value > 0 ? value : 5000; break;
    case LC_OPT_SAFETY_MARGIN_MS: o->safety_margin_ms = value >= 0 ? value : -1; break;
    case LC_OPT_CHECK_INTERVAL_MS: o->check_interval_ms = value > 0 ? value : 1000; break;
    case LC_OPT_SESSION_GRACE_MS: o->session_grace_ms = value > 0 ? value : 10000; break;
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

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* The environment variables are those of OpenSSL (SSL_CERT_FILE,
 * SSL_CERT_DIR) and of the curl tool (CURL_CA_BUNDLE): libcurl itself reads
 * none of them, it uses the bundle it was built with, so a lab CA put into
 * SSL_CERT_FILE would be ignored without this. */
const char *lc__ca_file(const struct lc_opts *o)
{
    if (o && o->ca_file)
        return o->ca_file;
    const char *v = env("SSL_CERT_FILE");
    return v ? v : env("CURL_CA_BUNDLE");
}

const char *lc__ca_path(const struct lc_opts *o)
{
    if (o && o->ca_path)
        return o->ca_path;
    return env("SSL_CERT_DIR");
}
