/* main.c - devlockd: settings, one libuv loop shared by libwebsockets and
 * hiredis, signals, and the protocol callback that hands each lws event to
 * http.c or ws.c. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <uv.h>

#include "auth.h"
#include "catalogue.h"
#include "config.h"
#include "events.h"
#include "http.h"
#include "lk_log.h"
#include "locks.h"
#include "metrics.h"
#include "mirror.h"
#include "pollset.h"
#include "store.h"
#include "webhooks.h"
#include "ws.h"

/* lws allocates one of these per connection for our protocol; a connection
 * is HTTP or (after the upgrade) WebSocket, never both at once. */
union pss {
    struct http_req http;
    struct ws_session ws;
};

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    union pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return pss ? http_callback(wsi, reason, &pss->http, in, len) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL: /* also at shutdown, for open keep-alives */
        return pss && pss->http.kind == PSS_HTTP ? http_callback(wsi, reason, &pss->http, in, len) : 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return ws_callback(wsi, reason, pss ? &pss->ws : NULL, in, len);
    case LWS_CALLBACK_ESTABLISHED:
        return pss ? ws_callback(wsi, reason, &pss->ws, in, len) : 0;
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLOSED:
        return pss && pss->ws.kind == PSS_WS ? ws_callback(wsi, reason, &pss->ws, in, len) : 0;
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        http_connection_opened(wsi);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        http_connection_closed(wsi);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* rx_buffer_size 1024: lws gives every WebSocket its own receive buffer of
 * this size, so it is most of an idle watcher's memory (3.4 KB per watcher
 * with 1024, 6.4 KB with 4096; docs/BENCHMARKS.md). A longer message comes
 * in pieces, which ws.c joins up to --max-ws-message. tx_packet_size: one
 * send() per write of up to HTTP_SEND_MAX (design.md, "Serialise once"). */
static struct lws_protocols protocols[] = {
    {"devlock", callback, sizeof(union pss), 1024, 0, NULL, HTTP_SEND_MAX},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static uv_signal_t sig_int, sig_term, sig_hup;
static int stop_signal;

static void on_signal(uv_signal_t *h, int signum)
{
    stop_signal = signum;
    uv_stop(h->loop);
}

/* Loads (or reloads) the catalogue, the auth file and the webhooks. A file that does not
 * load keeps the previous contents (a reload never leaves the broker open). */
static int load_files(int first)
{
    char err[256];
    int rc = 0;
    if (cfg.devices[0]) {
        if (catalogue_load(cfg.devices, err, sizeof(err)) != 0) {
            lk_error("catalogue %s: %s%s", cfg.devices, err, first ? "" : " (keeping the previous one)");
            rc = -1;
        } else {
            lk_info("catalogue %s: %zu devices", cfg.devices, catalogue_count());
            if (!first)
                locks_push_catalogue();
        }
    }
    if (cfg.auth_file[0]) {
        if (auth_load(cfg.auth_file, err, sizeof(err)) != 0) {
            lk_error("auth file %s: %s%s", cfg.auth_file, err, first ? "" : " (keeping the previous one)");
            rc = -1;
        } else {
            lk_info("auth file %s loaded: authentication is on", cfg.auth_file);
        }
    }
    if (cfg.webhooks[0]) {
        if (webhooks_load(cfg.webhooks, err, sizeof(err)) != 0) {
            lk_error("webhooks %s: %s%s", cfg.webhooks, err, first ? "" : " (keeping the previous ones)");
            rc = -1;
        } else {
            lk_info("webhooks %s: %u webhooks", cfg.webhooks, webhooks_count());
        }
    }
    return rc;
}

static void on_hup(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    lk_info("SIGHUP: reloading the catalogue, the auth file and the webhooks");
    load_files(0);
}

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    LK_LOG(level == LLL_ERR ? LK_LOG_ERROR : level == LLL_WARN ? LK_LOG_WARNING : LK_LOG_DEBUG,
           "lws: %.*s", (int)n, line);
}

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

int main(int argc, char **argv)
{
    int rc = config_load(argc, argv, stdout, stderr);
    if (rc)
        return rc > 0 ? 0 : 2;
    lk_log_threshold = lk_log_level_parse(cfg.log_level);
    if (lk_log_threshold < 0) {
        fprintf(stderr, "devlockd: unknown log level '%s'\n", cfg.log_level);
        return 2;
    }
    lk_log_json = strcmp(cfg.log_format, "json") == 0;
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)(time(NULL) ^ getpid()));
    lws_set_log_level(LLL_ERR | LLL_WARN | (lk_log_threshold == LK_LOG_DEBUG ? LLL_NOTICE : 0),
                      lws_log);

    if (load_files(1) != 0)
        return 2;
    uv_loop_t *loop = uv_default_loop();
    pollset_init(loop); /* before any socket: every uv_poll_t on one epoll set (pollset.h) */
    void *foreign[1] = {loop};
    locks_init();
    if (store_init(loop, cfg.redis_url, locks_broker_id()) != 0) {
        fprintf(stderr, "devlockd: bad Redis URL '%s' (redis://[:password@]host:port[/db] or "
                        "unix:///path)\n", cfg.redis_url);
        return 2;
    }
    events_init(loop);
    /* every event read, in this order: counted, into the read copy, to the
     * WebSocket clients; then the webhook deliveries look for new work */
    events_subscribe(metrics_event);
    events_subscribe(mirror_apply);
    events_subscribe(ws_broadcast);
    events_on_batch(webhooks_kick);
    webhooks_init(loop);
    ws_init();

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = (int)cfg.port;
    info.iface = strcmp(cfg.host, "0.0.0.0") && strcmp(cfg.host, "") ? cfg.host : NULL;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 |
                   LWS_SERVER_OPTION_DISABLE_IPV6;
    if (info.iface && strchr(info.iface, ':'))
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = foreign;
    info.timeout_secs = (unsigned)cfg.io_timeout;
    info.timeout_secs_ah_idle = (unsigned)cfg.io_timeout; /* slow headers */
    if (cfg.tls_cert[0]) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg.tls_cert;
        info.ssl_private_key_filepath = cfg.tls_key;
        info.alpn = "http/1.1"; /* our HTTP code speaks HTTP/1.1 */
    }
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        lk_error("cannot listen on %s:%ld", cfg.host, cfg.port);
        return 1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
    if (!vh || (cfg.port && lws_get_vhost_listen_port(vh) <= 0) || (!cfg.port && lws_get_vhost_listen_port(vh) <= 0)) {
        lk_error("cannot serve on %s:%ld%s", cfg.host, cfg.port,
                 cfg.tls_cert[0] ? " (check --tls-cert and --tls-key)" : "");
        lws_context_destroy(ctx);
        return 1;
    }
    int port = lws_get_vhost_listen_port(vh);
    if (cfg.port_file[0] && write_port_file(cfg.port_file, port) != 0) {
        lk_error("cannot write --port-file %s", cfg.port_file);
        lws_context_destroy(ctx);
        return 1;
    }
    lk_info("devlockd listening on %s:%d (%s), Redis %s", cfg.host, port, cfg.tls_cert[0] ? "TLS" : "plain",
            strchr(cfg.redis_url, '@') ? "(url with password)" : cfg.redis_url);

    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_init(loop, &sig_hup);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);

    uv_run(loop, UV_RUN_DEFAULT);

    lk_info("signal %d: shutting down", stop_signal);
    /* queued requests leave their queues first (one left behind would
     * reserve its devices until this broker's liveness key expires), while
     * the loop and the connections still run, so the requesters get a 503 */
    webhooks_shutdown(); /* gives up its owner keys while the loop still runs */
    locks_shutdown(loop, cfg.redis_timeout_ms + 500 < 3000 ? cfg.redis_timeout_ms + 500 : 3000);
    lws_context_destroy(ctx);
    ws_shutdown();
    store_shutdown();
    events_shutdown();
    pollset_shutdown();
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    /* let the handles close; bounded, in case a library leaves one open */
    for (int i = 0; i < 100 && uv_run(loop, UV_RUN_NOWAIT); i++)
        ;
    uv_loop_close(loop);
    catalogue_free();
    auth_free();
    config_free();
    return 0;
}
