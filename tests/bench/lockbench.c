/* lockbench - a load generator for devlockd: closed-loop clients over raw
 * HTTP/1.1 keep-alive or raw WebSocket, all on one epoll loop in one thread
 * (see net.c), so that on a small machine the client takes as little CPU as
 * possible from the broker and Redis it measures.
 *
 *   lockbench --port P --scenario cycle --proto http --conns 16 --duration 5
 *
 * Scenarios (each bounded by --duration seconds and --count operations):
 *   cycle   acquire then release of the connection's own device (http or ws)
 *   ladder  on the connection's own device: QUEUE_QUEUED, MANUAL_OPERATOR,
 *           QUEUE_EXECUTING, MAINTENANCE (each preempting the last), release
 *   read    GET /api/locks/device/{name}, the connection's own device held
 *   status  GET /api/locks/status with --hold locks held (default 1000)
 *   fanout  one HTTP acquire, then the time until all --watchers WebSocket
 *           watchers have the lock_update; then release, likewise
 *   rawfan  fanout's floor on this machine, without devlockd (no --port): a
 *           forked sender writes one --frame-bytes frame (default 436, a
 *           lock_update as devlockd sends it) to each of --watchers loopback
 *           sockets with one send() each, on a go byte from lockbench; the
 *           time until the last socket has it, and until the sender's last
 *           send() returned
 *   idle    the broker's VmRSS (--pid) before and with --watchers idle watchers
 *           (with --hold N, connected while N locks are held: each watcher
 *           gets the whole table in its initial_status)
 *   renew   POST /api/lock/renew of the connection's own held device
 *   get     GET --path on any HTTP server (the nginx ceiling): 200 is enough
 *   hold    takes --hold locks and exits without giving them back
 *           (--timeout S: their lease, so that they expire)
 *
 * --sync DIR: at each phase boundary (begin, held, start, stop, end) lockbench
 * creates DIR/<phase> and waits up to 60 s for DIR/<phase>.go, so that
 * bench.sh can reset Redis's commandstats or attach strace around exactly one
 * phase. A summary line also gives the frames and HTTP answers exchanged.
 *
 * One summary line per run on stdout; details and errors on stderr. The
 * exit status is 1 if any operation failed or a frame was missed. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lk_mem.h"
#include "net.h"

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL
#define REQUEST_TIMEOUT_NS (5 * NS_PER_S)
#define CONNECTS_IN_FLIGHT 200
#define MAX_ERRORS_SHOWN 5

/* ---- options ------------------------------------------------------------------ */

static struct {
    const char *host;
    int port;
    const char *scenario;
    const char *proto;
    const char *label;
    int conns;
    int watchers;
    int hold;
    double duration;
    long count;
    long pid, redis_pid;
    double ceiling;     /* Redis EVALSHA/s measured by redis-benchmark, 0: unknown */
    const char *path;   /* get: the path */
    const char *sync;   /* phase-boundary directory, NULL: none */
    const char *save;   /* status: the first answer's body goes to this file */
    double timeout;     /* the lease of acquired locks, seconds */
    int frame_bytes;    /* rawfan: the frame each socket gets per round */
    int verbose;
} opt = {
    .host = "127.0.0.1", .scenario = "cycle", .proto = "http", .conns = 16, .watchers = 1000,
    .hold = -1, .duration = 5, .count = 100000000L, .path = "/", .timeout = 120,
    .frame_bytes = 436,
};

/* Marks a phase boundary for --sync (see the top of the file). */
static void phase(const char *name)
{
    char path[4096];
    if (!opt.sync)
        return;
    snprintf(path, sizeof(path), "%s/%s", opt.sync, name);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
    snprintf(path, sizeof(path), "%s/%s.go", opt.sync, name);
    for (int i = 0; i < 6000 && access(path, F_OK); i++)
        usleep(10000);
}

/* ---- samples -------------------------------------------------------------------- */

struct samples {
    int64_t *v;
    size_t n, cap;
    int sorted;
};

static void samples_add(struct samples *s, int64_t ns)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = lk_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = ns;
    s->sorted = 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The p-quantile (nearest rank) in milliseconds; 0 with no samples. */
static double samples_ms(struct samples *s, double p)
{
    if (!s->n)
        return 0;
    if (!s->sorted) {
        qsort(s->v, s->n, sizeof(*s->v), cmp_i64);
        s->sorted = 1;
    }
    size_t rank = (size_t)(p * (double)s->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    return (double)s->v[rank - 1] / (double)NS_PER_MS;
}

/* ---- /proc ------------------------------------------------------------------------ */

/* utime + stime of a process in clock ticks, -1 if unknown. */
static long long proc_ticks(long pid)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static long long self_ticks(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long long us = (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
                   ru.ru_stime.tv_usec;
    return us * sysconf(_SC_CLK_TCK) / 1000000;
}

/* A field of /proc/PID/status in KiB ("VmRSS:", "VmHWM:"), -1 if unknown. */
static long proc_kb(long pid, const char *field)
{
    char path[64], line[256];
    long kb = -1;
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, field, strlen(field)))
            kb = strtol(line + strlen(field), NULL, 10);
    fclose(f);
    return kb;
}

static long proc_rss_kb(long pid)
{
    return proc_kb(pid, "VmRSS:");
}

struct cpu_mark {
    int64_t t;
    long long srv, redis, self;
};

static struct cpu_mark cpu_mark(void)
{
    struct cpu_mark m = { net_now_ns(), proc_ticks(opt.pid), proc_ticks(opt.redis_pid), self_ticks() };
    return m;
}

static int pct(long long a, long long b, int64_t dt_ns)
{
    if (a < 0 || b < 0 || dt_ns <= 0)
        return -1;
    return (int)((double)(b - a) / (double)sysconf(_SC_CLK_TCK) * 1e9 / (double)dt_ns * 100 + 0.5);
}

/* " | cpu devlockd 97% redis 40% lockbench 20%" for the interval a..b. */
static void cpu_text(const struct cpu_mark *a, const struct cpu_mark *b, char *out, size_t len)
{
    int64_t dt = b->t - a->t;
    int d = pct(a->srv, b->srv, dt), r = pct(a->redis, b->redis, dt), s = pct(a->self, b->self, dt);
    size_t at = (size_t)snprintf(out, len, " | cpu");
    if (d >= 0 && at < len)
        at += (size_t)snprintf(out + at, len - at, " devlockd %d%%", d);
    if (r >= 0 && at < len)
        at += (size_t)snprintf(out + at, len - at, " redis %d%%", r);
    if (at < len)
        snprintf(out + at, len - at, " lockbench %d%%", s);
}

/* ---- minimal JSON field access ------------------------------------------------------
 * devlockd writes compact JSON; these find the first "key" anywhere in the text,
 * which is enough for the fields read here (top-level ones come first). */

static const char *json_value(const char *s, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(s, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

static int json_is_true(const char *s, const char *key)
{
    const char *v = json_value(s, key);
    return v && !strncmp(v, "true", 4);
}

static long long json_ll(const char *s, const char *key, long long dflt)
{
    const char *v = json_value(s, key);
    if (!v || (*v != '-' && (*v < '0' || *v > '9')))
        return dflt;
    return strtoll(v, NULL, 10);
}

/* Copies a string value without escapes; 0 on success. */
static int json_str(const char *s, const char *key, char *out, size_t len)
{
    const char *v = json_value(s, key);
    if (!v || *v != '"')
        return -1;
    const char *e = strchr(v + 1, '"');
    if (!e || (size_t)(e - v - 1) >= len)
        return -1;
    memcpy(out, v + 1, (size_t)(e - v - 1));
    out[e - v - 1] = '\0';
    return 0;
}

/* ---- clients ------------------------------------------------------------------------ */

enum kind { K_CYCLE, K_LADDER, K_READ, K_STATUS, K_HOLD, K_UNHOLD, K_WATCH, K_GET, K_RENEW };

static const char *const ladder_types[] = { "QUEUE_QUEUED", "MANUAL_OPERATOR", "QUEUE_EXECUTING", "MAINTENANCE" };

struct client {
    struct conn c;
    size_t idx;
    int ready;              /* connected (WS: initial_status, and subscribe_result if asked) */
    int busy;               /* a request is in flight */
    int step;               /* position in the operation's request sequence */
    int op_ok;              /* every request of this operation succeeded so far */
    long long req_id;       /* WebSocket command id awaited */
    int64_t t_req, t_op;    /* when the request / the operation was sent */
    char dev[96];
    char key[64];
    size_t hold_idx;        /* hold/unhold: the lock being taken or given back */
    /* fan-out watcher */
    long long acq_fence, rel_fence;
    long acq_count, rel_count;
};

static struct {
    enum kind kind;
    int ws;                 /* commands over WebSocket */
    struct client *cl;
    size_t n;
    size_t ready, closed, connecting, next_connect;
    int running;            /* measuring: start new operations */
    int closing;            /* clients_free(): closes are not failures */
    long ops, errors, shown;
    int64_t t_start, t_stop, t_last;
    struct samples req, op;
    /* hold / unhold */
    char (*held)[64];
    size_t held_n, held_next, held_done;
    long expect_total;      /* status: the least total_count an answer may have */
} run;

static void fail(struct client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct client *cl, const char *fmt, ...)
{
    run.errors++;
    if (run.shown++ >= MAX_ERRORS_SHOWN)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lockbench: connection %zu: ", cl ? cl->idx : 0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int steps_of(enum kind k)
{
    return k == K_CYCLE ? 2 : k == K_LADDER ? 5 : 1;
}

static int step_is_release(const struct client *cl)
{
    return run.kind == K_UNHOLD || ((run.kind == K_CYCLE || run.kind == K_LADDER) && cl->step == steps_of(run.kind) - 1);
}

static void send_acquire(struct client *cl, const char *type)
{
    char body[512];
    if (run.ws) {
        cl->req_id++;
        int n = snprintf(body, sizeof(body),
                         "{\"type\":\"acquire\",\"id\":%lld,\"device_name\":\"%s\",\"lock_type\":\"%s\","
                         "\"user_id\":\"bench\",\"timeout\":%g}",
                         cl->req_id, cl->dev, type, opt.timeout);
        net_ws_text(&cl->c, body, (size_t)n);
    } else {
        snprintf(body, sizeof(body), "{\"device_name\":\"%s\",\"lock_type\":\"%s\",\"user_id\":\"bench\",\"timeout\":%g}",
                 cl->dev, type, opt.timeout);
        net_http(&cl->c, "POST", "/api/lock/request", body);
    }
}

static void send_release(struct client *cl)
{
    char buf[512];
    if (run.ws) {
        cl->req_id++;
        int n = snprintf(buf, sizeof(buf),
                         "{\"type\":\"release\",\"id\":%lld,\"device_name\":\"%s\",\"lock_key\":\"%s\","
                         "\"user_id\":\"bench\"}",
                         cl->req_id, cl->dev, cl->key);
        net_ws_text(&cl->c, buf, (size_t)n);
    } else {
        snprintf(buf, sizeof(buf), "/api/lock/release?device_name=%s&lock_key=%s&user_id=bench", cl->dev, cl->key);
        net_http(&cl->c, "POST", buf, NULL);
    }
}

static void send_step(struct client *cl)
{
    char path[256];
    cl->busy = 1;
    cl->t_req = net_now_ns();
    switch (run.kind) {
    case K_CYCLE:
        if (cl->step == 0)
            send_acquire(cl, "MANUAL_OPERATOR");
        else
            send_release(cl);
        break;
    case K_LADDER:
        if (cl->step < 4)
            send_acquire(cl, ladder_types[cl->step]);
        else
            send_release(cl);
        break;
    case K_READ:
        snprintf(path, sizeof(path), "/api/locks/device/%s", cl->dev);
        net_http(&cl->c, "GET", path, NULL);
        break;
    case K_STATUS:
        net_http(&cl->c, "GET", "/api/locks/status", NULL);
        break;
    case K_GET:
        net_http(&cl->c, "GET", opt.path, NULL);
        break;
    case K_RENEW:
        snprintf(path, sizeof(path), "/api/lock/renew?device_name=%s&lock_key=%s&user_id=bench", cl->dev,
                 run.held[cl->idx]);
        net_http(&cl->c, "POST", path, NULL);
        break;
    case K_HOLD:
        send_acquire(cl, "MANUAL_OPERATOR");
        break;
    case K_UNHOLD:
        send_release(cl);
        break;
    case K_WATCH:
        break;
    }
}

/* Starts the next operation, or parks the client when the run is over. */
static void start_op(struct client *cl)
{
    if (run.kind == K_HOLD || run.kind == K_UNHOLD) {
        if (run.held_next >= run.held_n) {
            cl->busy = 0;
            return;
        }
        cl->hold_idx = run.held_next++;
        snprintf(cl->dev, sizeof(cl->dev), "bench-hold-%05zu", cl->hold_idx);
        if (run.kind == K_UNHOLD)
            snprintf(cl->key, sizeof(cl->key), "%s", run.held[cl->hold_idx]);
    } else if (!run.running || run.ops >= opt.count) {
        cl->busy = 0;
        return;
    }
    cl->step = 0;
    cl->op_ok = 1;
    cl->t_op = net_now_ns();
    send_step(cl);
}

/* A response to the client's current request: status and body (NUL-terminated). */
static void on_answer(struct client *cl, int status, const char *body, size_t len)
{
    int64_t now = net_now_ns();
    if (!cl->busy) {
        fail(cl, "unexpected answer (status %d): %.200s", status, body);
        return;
    }
    int ok = status == 200;
    if (ok && run.kind == K_READ)
        ok = json_is_true(body, "locked");
    if (ok && run.kind == K_STATUS) {
        size_t tail = len > 256 ? len - 256 : 0;
        long long total = json_ll(body + tail, "total_count", -1);
        if (total < 0)
            total = json_ll(body, "total_count", -1);
        ok = total >= run.expect_total; /* locks left by an earlier failed run may add to it */
        if (ok && opt.save) {
            FILE *f = fopen(opt.save, "w");
            if (!f || fwrite(body, 1, len, f) != len)
                fail(cl, "cannot write %s", opt.save);
            if (f)
                fclose(f);
            opt.save = NULL;
        }
    }
    if (ok && run.kind == K_RENEW)
        ok = json_is_true(body, "success");
    if (ok && (run.kind == K_CYCLE || run.kind == K_LADDER || run.kind == K_HOLD || run.kind == K_UNHOLD)) {
        ok = json_is_true(body, "success");
        if (ok && !step_is_release(cl))
            ok = json_str(body, "lock_key", cl->key, sizeof(cl->key)) == 0;
        if (ok && step_is_release(cl))
            cl->key[0] = '\0';
    }
    if (run.kind != K_HOLD && run.kind != K_UNHOLD)
        samples_add(&run.req, now - cl->t_req);
    if (!ok) {
        fail(cl, "%s step %d: status %d: %.300s", cl->dev, cl->step, status, body);
        cl->op_ok = 0;
        /* give back what is held, then carry on */
        if ((run.kind == K_CYCLE || run.kind == K_LADDER) && cl->key[0] && !step_is_release(cl)) {
            cl->step = steps_of(run.kind) - 1;
            send_step(cl);
            return;
        }
        if (run.errors > 1000)
            run.running = 0;
        start_op(cl);
        return;
    }
    if (run.kind == K_HOLD)
        snprintf(run.held[cl->hold_idx], sizeof(run.held[0]), "%s", cl->key);
    if (++cl->step < steps_of(run.kind)) {
        send_step(cl);
        return;
    }
    if (run.kind == K_HOLD || run.kind == K_UNHOLD)
        run.held_done++;
    else if (cl->op_ok) {
        run.ops++;
        samples_add(&run.op, now - cl->t_op);
        run.t_last = now;
    }
    start_op(cl);
}

static void cl_open(struct conn *c)
{
    struct client *cl = c->user;
    if (!run.ws && c->proto == NET_HTTP) {
        cl->ready = 1;
        run.ready++;
        run.connecting--;
    }
}

static void cl_http(struct conn *c, int status, const char *body, size_t len)
{
    on_answer(c->user, status, body, len);
}

/* ---- fan-out state ------------------------------------------------------------------- */

enum fan_phase { FAN_IDLE, FAN_ACQ, FAN_REL };

static struct {
    enum fan_phase phase;
    int64_t t0, t_last, deadline;
    long long fence, last_fence;  /* this round's grant; the previous round's */
    int reply;                    /* the driver's HTTP answer arrived */
    size_t got;                   /* watchers that have this phase's frame */
    long rounds, late;
    struct samples all;           /* grant sent -> every watcher has it, per round */
    struct samples each;          /* grant sent -> one watcher has it, per delivery */
    struct samples rel_all;
} fan;

static void watcher_update(struct client *cl, const char *msg)
{
    char action[32], dev[96];
    if (json_str(msg, "action", action, sizeof(action)) || json_str(msg, "device_name", dev, sizeof(dev)) ||
        strcmp(dev, "bench-fanout"))
        return;
    long long fence = json_ll(msg, "fence", -1);
    int64_t now = net_now_ns();
    if (!strcmp(action, "acquired")) {
        if (fence <= cl->acq_fence)
            return;
        cl->acq_fence = fence;
        cl->acq_count++;
        if (fan.phase == FAN_ACQ && fence > fan.last_fence) {
            fan.got++;
            fan.t_last = now;
            samples_add(&fan.each, now - fan.t0);
        }
    } else if (!strcmp(action, "released")) {
        if (fence <= cl->rel_fence)
            return;
        cl->rel_fence = fence;
        cl->rel_count++;
        if (fan.phase == FAN_REL && fence == fan.fence) {
            fan.got++;
            fan.t_last = now;
        }
    }
}

static void cl_ws(struct conn *c, const char *msg, size_t len)
{
    struct client *cl = c->user;
    char type[40];
    (void)len;
    if (json_str(msg, "type", type, sizeof(type))) {
        fail(cl, "frame without type: %.200s", msg);
        return;
    }
    if (!strcmp(type, "lock_update")) {
        if (run.kind == K_WATCH)
            watcher_update(cl, msg);
        return;
    }
    if (!cl->ready) {
        if (!strcmp(type, "initial_status") && run.kind != K_WATCH) {
            /* only this client's device: a command client wants its own updates */
            char sub[200];
            int n = snprintf(sub, sizeof(sub), "{\"type\":\"subscribe\",\"id\":0,\"devices\":[\"%s\"]}", cl->dev);
            net_ws_text(c, sub, (size_t)n);
            return;
        }
        if (!strcmp(type, "initial_status") || !strcmp(type, "subscribe_result")) {
            cl->ready = 1;
            run.ready++;
            run.connecting--;
            return;
        }
    }
    if (!strcmp(type, "acquire_result") || !strcmp(type, "release_result") || !strcmp(type, "error")) {
        long long id = json_ll(msg, "id", -1);
        if (id != cl->req_id) {
            fail(cl, "answer to id %lld, awaited %lld: %.200s", id, cl->req_id, msg);
            return;
        }
        on_answer(cl, !strcmp(type, "error") ? 400 : (int)json_ll(msg, "status", 200), msg, strlen(msg));
        return;
    }
    if (opt.verbose)
        fprintf(stderr, "lockbench: ignored frame %.120s\n", msg);
}

static void cl_closed(struct conn *c, const char *why)
{
    struct client *cl = c->user;
    if (run.closing)
        return;
    run.closed++;
    if (!cl->ready)
        run.connecting--;
    fail(cl, "connection lost: %s", why);
    cl->busy = 0;
}

static const struct net_ops client_ops = { cl_open, cl_http, cl_ws, cl_closed };

/* ---- the loop ---------------------------------------------------------------------- */

static void connect_some(void)
{
    while (run.next_connect < run.n && run.connecting < CONNECTS_IN_FLIGHT) {
        struct client *cl = &run.cl[run.next_connect++];
        run.connecting++;
        net_connect(&cl->c, run.ws || run.kind == K_WATCH ? NET_WS : NET_HTTP, &client_ops, cl);
    }
}

/* Connects every client; 0 when all are ready within the deadline. */
static int connect_all(double seconds)
{
    int64_t deadline = net_now_ns() + (int64_t)(seconds * NS_PER_S);
    while (run.ready < run.n) {
        connect_some();
        if (run.closed) {
            fprintf(stderr, "lockbench: %zu of %zu connections failed while connecting\n", run.closed, run.n);
            return -1;
        }
        if (net_now_ns() > deadline) {
            fprintf(stderr, "lockbench: only %zu of %zu connections ready after %.0f s\n", run.ready, run.n, seconds);
            return -1;
        }
        net_poll(10);
    }
    return 0;
}

static void clients_new(size_t n, const char *prefix)
{
    run.n = n;
    run.cl = lk_xcalloc(n, sizeof(*run.cl));
    for (size_t i = 0; i < n; i++) {
        run.cl[i].idx = i;
        run.cl[i].acq_fence = run.cl[i].rel_fence = -1;
        snprintf(run.cl[i].dev, sizeof(run.cl[i].dev), "%s-%zu", prefix, i);
    }
}

static void clients_free(void)
{
    run.closing = 1;
    for (size_t i = 0; i < run.n; i++)
        net_close(&run.cl[i].c, "done");
    run.closing = 0;
    free(run.cl);
    run.cl = NULL;
    run.n = run.ready = run.closed = run.connecting = run.next_connect = 0;
}

static size_t busy_count(void)
{
    size_t b = 0;
    for (size_t i = 0; i < run.n; i++)
        b += (size_t)run.cl[i].busy;
    return b;
}

/* Fails requests older than REQUEST_TIMEOUT_NS (the connection is closed). */
static void check_timeouts(int64_t now)
{
    for (size_t i = 0; i < run.n; i++) {
        struct client *cl = &run.cl[i];
        if (cl->busy && now - cl->t_req > REQUEST_TIMEOUT_NS) {
            fail(cl, "no answer within %lld s (%s step %d)", REQUEST_TIMEOUT_NS / NS_PER_S, cl->dev, cl->step);
            cl->busy = 0;
            net_close(&cl->c, "timeout");
        }
    }
}

/* Takes (or gives back) run.held_n locks on bench-hold-NNNNN over 16 HTTP connections. */
static int hold_locks(enum kind k)
{
    enum kind saved = run.kind;
    int saved_ws = run.ws;
    run.kind = k;
    run.ws = 0;
    run.held_next = run.held_done = 0;
    clients_new(16, "bench-hold");
    if (connect_all(30))
        return -1;
    for (size_t i = 0; i < run.n; i++)
        start_op(&run.cl[i]);
    int64_t deadline = net_now_ns() + 60 * NS_PER_S;
    while (busy_count() && net_now_ns() < deadline) {
        net_poll(10);
        check_timeouts(net_now_ns());
    }
    clients_free();
    run.kind = saved;
    run.ws = saved_ws;
    if (run.held_done != run.held_n) {
        fprintf(stderr, "lockbench: %s %zu of %zu locks\n", k == K_HOLD ? "took" : "gave back", run.held_done, run.held_n);
        return -1;
    }
    return 0;
}

static void print_line(const char *name, double rate, const char *unit, struct samples *lat, const char *extra)
{
    printf("%-22s %9.0f %s/s  p50 %7.3f  p99 %7.3f  p99.9 %7.3f ms%s\n", name, rate, unit, samples_ms(lat, 0.50),
           samples_ms(lat, 0.99), samples_ms(lat, 0.999), extra);
    fflush(stdout);
}

/* cycle, ladder, read, status: closed loop, one request in flight per connection. */
static int run_requests(void)
{
    char name[64], extra[1024], cpu[160];
    const char *prefix = run.kind == K_CYCLE ? (run.ws ? "bench-cws" : "bench-chttp")
                       : run.kind == K_LADDER ? (run.ws ? "bench-lws" : "bench-lhttp")
                                              : "bench-hold";
    /* read, renew: each connection uses one held device; status: --hold locks are held */
    int holds = run.kind == K_READ || run.kind == K_STATUS || run.kind == K_RENEW;
    phase("begin");
    if (holds) {
        run.held_n = run.kind != K_STATUS ? (size_t)opt.conns : (size_t)(opt.hold < 0 ? 1000 : opt.hold);
        run.held = lk_xcalloc(run.held_n ? run.held_n : 1, sizeof(*run.held));
        if (run.held_n && hold_locks(K_HOLD))
            return 1;
        run.expect_total = (long)run.held_n;
    }
    phase("held");
    clients_new((size_t)opt.conns, prefix);
    if (run.kind == K_READ || run.kind == K_RENEW)
        for (size_t i = 0; i < run.n; i++)
            snprintf(run.cl[i].dev, sizeof(run.cl[i].dev), "bench-hold-%05zu", i);
    if (connect_all(30))
        return 1;
    phase("start");
    net_stats_reset();
    struct cpu_mark m0 = cpu_mark();
    run.t_start = run.t_last = m0.t;
    run.t_stop = run.t_start + (int64_t)(opt.duration * NS_PER_S);
    run.running = 1;
    for (size_t i = 0; i < run.n; i++)
        start_op(&run.cl[i]);
    int64_t next_check = run.t_start + 100 * NS_PER_MS;
    struct cpu_mark m1 = m0;
    int stopped = 0;
    for (;;) {
        net_poll(10);
        int64_t now = net_now_ns();
        if (!stopped && (now >= run.t_stop || run.ops >= opt.count || !run.running)) {
            run.running = 0;
            stopped = 1;
            m1 = cpu_mark();
        }
        if (now >= next_check) {
            check_timeouts(now);
            next_check = now + 100 * NS_PER_MS;
        }
        if (stopped && !busy_count())
            break;
        if (now > run.t_stop + 2 * REQUEST_TIMEOUT_NS)
            break;
    }
    struct net_stats st = net_stats;
    phase("stop");
    clients_free();
    enum kind k = run.kind;
    if (holds && run.held_n && hold_locks(K_UNHOLD))
        run.errors++;
    run.kind = k;
    phase("end");

    double secs = (double)(run.t_last - run.t_start) / NS_PER_S;
    double rate = secs > 0 ? (double)run.ops / secs : 0;
    int scripts = k == K_CYCLE ? 2 : k == K_LADDER ? 5 : 0;
    const char *unit = k == K_CYCLE ? "cycles" : k == K_LADDER ? "ladders" : "req";
    int requests = k == K_CYCLE ? 2 : k == K_LADDER ? 5 : 1;
    if (opt.label)
        snprintf(name, sizeof(name), "%s", opt.label);
    else if (k == K_CYCLE || k == K_LADDER)
        snprintf(name, sizeof(name), "%s-%s-%d", opt.scenario, run.ws ? "ws" : "http", opt.conns);
    else
        snprintf(name, sizeof(name), "%s-%d", opt.scenario, opt.conns);
    cpu_text(&m0, &m1, cpu, sizeof(cpu));
    size_t at = 0;
    if (k == K_CYCLE || k == K_LADDER)
        at += (size_t)snprintf(extra + at, sizeof(extra) - at, " (per request; per %s p99 %.3f ms)",
                               k == K_CYCLE ? "cycle" : "ladder", samples_ms(&run.op, 0.99));
    if (k == K_STATUS)
        at += (size_t)snprintf(extra + at, sizeof(extra) - at, " (%ld locks held)", run.expect_total);
    at += (size_t)snprintf(extra + at, sizeof(extra) - at, " | %ld in %.2f s, %ld errors%s", run.ops, secs, run.errors, cpu);
    at += (size_t)snprintf(extra + at, sizeof(extra) - at, " | %ld requests, %ld HTTP answers, %ld WS frames sent, %ld received",
                           run.ops * requests, st.http_in, st.ws_out, st.ws_in);
    if (scripts && opt.ceiling > 0)
        snprintf(extra + at, sizeof(extra) - at, " | %.0f scripts/s = %.2f x Redis EVALSHA ceiling %.0f/s",
                 rate * scripts, rate * scripts / opt.ceiling, opt.ceiling);
    print_line(name, rate, unit, &run.req, extra);
    return run.errors ? 1 : 0;
}

/* fan-out: rounds of acquire + release of bench-fanout by one HTTP client (the
 * driver, with its own callbacks) while --watchers WebSocket watchers receive
 * every lock_update. A round's sample is the time from sending the grant until
 * the last watcher has its lock_update. */
static void driver_http(struct conn *c, int status, const char *body, size_t len)
{
    struct client *cl = c->user;
    (void)len;
    cl->busy = 0;
    if (status != 200 || !json_is_true(body, "success")) {
        fail(cl, "fan-out %s: status %d: %.300s", fan.phase == FAN_ACQ ? "grant" : "release", status, body);
        return;
    }
    if (fan.phase == FAN_ACQ) {
        fan.fence = json_ll(body, "fence", -1);
        if (fan.fence < 0 || json_str(body, "lock_key", cl->key, sizeof(cl->key)))
            fail(cl, "fan-out grant without fence or key: %.300s", body);
    }
    fan.reply = 1;
}

static void driver_closed(struct conn *c, const char *why)
{
    if (!run.closing)
        fail(c->user, "fan-out driver connection lost: %s", why);
}

static const struct net_ops driver_ops = { NULL, driver_http, NULL, driver_closed };

/* Runs the loop until the phase is complete or its deadline; 1 if complete. */
static int fan_wait(size_t watchers)
{
    while (net_now_ns() < fan.deadline && run.errors == 0) {
        if (fan.reply && fan.got >= watchers)
            return 1;
        net_poll(10);
    }
    return fan.reply && fan.got >= watchers;
}

static int run_fanout(void)
{
    char extra[1024], cpu[160], name[64];
    size_t w = (size_t)opt.watchers;
    run.kind = K_WATCH;
    clients_new(w, "bench-fanout");
    int64_t tc = net_now_ns();
    if (connect_all(120))
        return 1;
    double connect_s = (double)(net_now_ns() - tc) / NS_PER_S;
    struct client driver;
    memset(&driver, 0, sizeof(driver));
    driver.idx = w;
    snprintf(driver.dev, sizeof(driver.dev), "bench-fanout");
    net_connect(&driver.c, NET_HTTP, &driver_ops, &driver);
    /* the driver is ready when its connect completes: send the first grant then */
    int64_t deadline = net_now_ns() + 10 * NS_PER_S;
    while (driver.c.state == NET_CONNECTING && net_now_ns() < deadline)
        net_poll(10);
    if (driver.c.state != NET_OPEN) {
        fprintf(stderr, "lockbench: fan-out driver could not connect\n");
        return 1;
    }
    run.ws = 0;
    fan.last_fence = -1;
    phase("start");
    net_stats_reset();
    struct cpu_mark m0 = cpu_mark();
    int64_t t_stop = m0.t + (int64_t)(opt.duration * NS_PER_S);
    while (net_now_ns() < t_stop && fan.rounds < opt.count && run.errors == 0) {
        size_t alive = w - run.closed;
        /* grant */
        fan.phase = FAN_ACQ;
        fan.got = 0;
        fan.reply = 0;
        fan.fence = -1;
        fan.t0 = net_now_ns();
        fan.deadline = fan.t0 + 2 * NS_PER_S;
        driver.busy = 1;
        send_acquire(&driver, "MANUAL_OPERATOR");
        int ok = fan_wait(alive);
        if (run.errors || !fan.reply)
            break;
        fan.rounds++;
        if (ok)
            samples_add(&fan.all, fan.t_last - fan.t0);
        else
            fan.late += (long)(alive - fan.got);
        /* release */
        fan.phase = FAN_REL;
        fan.got = 0;
        fan.reply = 0;
        int64_t t1 = net_now_ns();
        fan.deadline = t1 + 2 * NS_PER_S;
        driver.busy = 1;
        send_release(&driver);
        ok = fan_wait(alive);
        if (run.errors || !fan.reply)
            break;
        if (ok)
            samples_add(&fan.rel_all, fan.t_last - t1);
        else
            fan.late += (long)(alive - fan.got);
        fan.last_fence = fan.fence;
        fan.phase = FAN_IDLE;
    }
    struct cpu_mark m1 = cpu_mark();
    fan.phase = FAN_IDLE;
    /* frames that missed their round's deadline may still come: wait for them, bounded */
    long expected = fan.rounds, missed;
    size_t lost;
    deadline = net_now_ns() + 3 * NS_PER_S;
    for (;;) {
        missed = 0;
        lost = 0;
        for (size_t i = 0; i < w; i++) {
            if (run.cl[i].c.state != NET_OPEN)
                lost++;
            else
                missed += (expected - run.cl[i].acq_count) + (expected - run.cl[i].rel_count);
        }
        if (!missed || net_now_ns() > deadline)
            break;
        net_poll(10);
    }
    long rss = proc_rss_kb(opt.pid);
    struct net_stats st = net_stats;
    phase("stop");
    run.closing = 1;
    net_close(&driver.c, "done");
    clients_free();
    cpu_text(&m0, &m1, cpu, sizeof(cpu));
    if (opt.label)
        snprintf(name, sizeof(name), "%s", opt.label);
    else
        snprintf(name, sizeof(name), "fanout-%zu", w);
    double secs = (double)(m1.t - m0.t) / NS_PER_S;
    snprintf(extra, sizeof(extra),
             " (grant sent -> all %zu watchers have it; per delivery p50 %.3f p99 %.3f ms; release -> all p99 %.3f ms)"
             " | %ld rounds in %.2f s, %ld frames missed, %ld late (> 2 s), %zu watchers dropped, %ld errors,"
             " connect %.1f s, devlockd RSS %.0f MB%s | %ld HTTP answers, %ld WS frames sent, %ld received",
             w, samples_ms(&fan.each, 0.5), samples_ms(&fan.each, 0.99), samples_ms(&fan.rel_all, 0.99), fan.rounds,
             secs, missed, fan.late, lost, run.errors, connect_s, rss > 0 ? (double)rss / 1024 : -1.0, cpu,
             st.http_in, st.ws_out, st.ws_in);
    print_line(name, secs > 0 ? (double)fan.rounds / secs : 0, "rounds", &fan.all, extra);
    return run.errors || missed || lost || fan.late ? 1 : 0;
}

/* rawfan: the machine's floor under fanout, with no broker, no Redis and no
 * lws. A forked sender process accepts --watchers loopback TCP connections and,
 * per round, on one byte from lockbench on a control pipe, writes one frame of
 * --frame-bytes to each socket with one send() each, in order, as devlockd
 * does (one sendto per watcher per event). A round's sample is the time from
 * writing the go byte until the last socket has read its frame: what is left
 * of fanout's bound once the broker's own work is taken away.
 *
 * The default frame is 436 bytes: the lock_update devlockd sent for an HTTP
 * acquire of bench-fanout (a 4-byte unmasked text frame header and the 432
 * bytes below, captured from a raw WebSocket client; 433 to 435 once the
 * fence has more digits). The frame is a WebSocket text frame, truncated or
 * padded with spaces to the size asked for, but the receiving end only counts
 * bytes: a plain recv() per readable socket on its own epoll set, not net.c's
 * reader, which would want an upgrade handshake the sender has no reason to
 * do. So a watcher's JSON parse is not in the floor (it is small beside the
 * syscalls). Sockets are blocking on the sender's side: with room in the send
 * buffer, a send() costs the same either way. */
static const char rawfan_payload[] =
    "{\"type\":\"lock_update\",\"event_id\":\"1796666340992-0\",\"action\":\"acquired\",\"device_name\":\"bench-fanout\","
    "\"lock\":{\"device_name\":\"bench-fanout\",\"lock_type\":\"MANUAL_OPERATOR\",\"user_id\":\"bench\","
    "\"lock_key\":\"0236ef4d-2206-468e-a1d1-577f4187df85\",\"acquired_at\":\"2026-12-07T17:59:00.991993Z\","
    "\"expires_at\":\"2026-12-07T18:01:00.991993Z\",\"reason\":null,\"plan_uid\":null,\"priority\":2,\"fence\":1,"
    "\"lease_s\":120},\"timestamp\":\"2026-12-07T17:59:00.991993Z\"}";

/* One WebSocket text frame of exactly len bytes (header included) in out. */
static void rawfan_frame(char *out, size_t len)
{
    size_t hl = len <= 127 ? 2 : len <= 65535 + 4 ? 4 : 10, plen = len - hl;
    unsigned char *h = (unsigned char *)out;
    h[0] = 0x81;
    if (hl == 2) {
        h[1] = (unsigned char)plen;
    } else if (hl == 4) {
        h[1] = 126;
        h[2] = (unsigned char)(plen >> 8);
        h[3] = (unsigned char)plen;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)plen >> (56 - 8 * i));
    }
    size_t have = sizeof(rawfan_payload) - 1;
    memcpy(out + hl, rawfan_payload, plen < have ? plen : have);
    if (plen > have)
        memset(out + hl + have, ' ', plen - have);
}

/* Writes all of len bytes to a blocking socket; -1 on error. */
static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The sender: accepts n connections on lfd, greets each with one byte (so that
 * lockbench knows it was accepted), then sends one frame to every socket per
 * byte read from ctl, and writes to back when its last send() returned (the
 * monotonic clock is the machine's, so lockbench can subtract its own t0).
 * It ends when ctl closes, on any error, or by its alarm. */
static void rawfan_sender(int lfd, int ctl, int back, size_t n, size_t frame_bytes, unsigned alarm_s)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(alarm_s);
    int *fd = lk_xcalloc(n, sizeof(*fd));
    char *frame = lk_xmalloc(frame_bytes);
    rawfan_frame(frame, frame_bytes);
    int one = 1;
    for (size_t i = 0; i < n; i++) {
        fd[i] = accept(lfd, NULL, NULL);
        if (fd[i] < 0) {
            perror("lockbench: rawfan sender: accept");
            _exit(1);
        }
        setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (write_all(fd[i], "!", 1))
            _exit(1);
    }
    close(lfd);
    char go;
    while (read(ctl, &go, 1) == 1) {
        for (size_t i = 0; i < n; i++)
            if (write_all(fd[i], frame, frame_bytes)) {
                perror("lockbench: rawfan sender: send");
                _exit(1);
            }
        int64_t sent = net_now_ns();
        if (write(back, &sent, sizeof(sent)) != sizeof(sent))
            _exit(1);
    }
    _exit(0);
}

/* Reads what is there on socket i; -1 if it ended or failed. */
static int rawfan_read(int fd, long long *have)
{
    static char buf[64 * 1024];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0) {
            *have += n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
}

static int run_rawfan(void)
{
    char extra[1024], name[64];
    size_t w = (size_t)opt.watchers, b = (size_t)opt.frame_bytes;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ctl[2], back[2] = { -1, -1 };
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, SOMAXCONN) ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) || pipe2(ctl, O_CLOEXEC) ||
        pipe2(back, O_CLOEXEC)) {
        perror("lockbench: rawfan: listen");
        return 1;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("lockbench: rawfan: fork");
        return 1;
    }
    if (child == 0) {
        close(ctl[1]);
        close(back[0]);
        rawfan_sender(lfd, ctl[0], back[1], w, b, (unsigned)opt.duration + 240);
    }
    close(lfd);
    close(ctl[0]);
    close(back[1]);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int *fd = lk_xcalloc(w, sizeof(*fd));
    long long *have = lk_xcalloc(w, sizeof(*have));
    long *done = lk_xcalloc(w, sizeof(*done)); /* the last round socket i completed; 0: greeted */
    for (size_t i = 0; i < w; i++) {
        fd[i] = -1;
        done[i] = -1;
    }
    struct epoll_event evs[512];
    long rounds = 0, late = 0, errors = 0;
    size_t got = 0, opened = 0;
    int64_t t0 = net_now_ns(), t_last = t0;
    struct samples all = { 0 }, each = { 0 }, sent = { 0 };
    /* connect, at most CONNECTS_IN_FLIGHT not yet greeted (the accept queue stays short);
     * then rounds. got counts the sockets that have what the current round awaits. */
    int64_t deadline = t0 + 120 * NS_PER_S, t_stop = 0;
    int measuring = 0;
    struct cpu_mark m0 = { 0 }, m1 = { 0 };
    long long c0 = -1, c1 = -1;
    double connect_s = 0;
    for (;;) {
        while (!measuring && opened < w && opened - got < CONNECTS_IN_FLIGHT) {
            int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            struct epoll_event ev = { .events = EPOLLIN, .data.u64 = opened };
            if (s < 0 || (connect(s, (struct sockaddr *)&a, sizeof(a)) && errno != EINPROGRESS) ||
                epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev)) {
                fprintf(stderr, "lockbench: rawfan: connection %zu: %s\n", opened, strerror(errno));
                errors++;
                if (s >= 0)
                    close(s);
                break;
            }
            fd[opened++] = s;
        }
        if (errors)
            break;
        int64_t now = net_now_ns();
        if (got == w) {
            if (!measuring) {
                /* every socket greeted: the rounds begin */
                measuring = 1;
                phase("start");
                m0 = cpu_mark();
                c0 = proc_ticks(child);
                t_stop = m0.t + (int64_t)(opt.duration * NS_PER_S);
                connect_s = (double)(m0.t - t0) / NS_PER_S;
            } else {
                /* the sender's time stamp is written by now or very soon: bounded */
                struct pollfd pf = { .fd = back[0], .events = POLLIN };
                int64_t t_sent;
                if (poll(&pf, 1, 2000) != 1 || read(back[0], &t_sent, sizeof(t_sent)) != sizeof(t_sent)) {
                    fprintf(stderr, "lockbench: rawfan: no time stamp from the sender\n");
                    errors++;
                    break;
                }
                rounds++;
                samples_add(&all, t_last - t0);
                samples_add(&sent, t_sent - t0);
            }
            if (rounds >= opt.count || now >= t_stop)
                break;
            got = 0;
            t0 = net_now_ns();
            deadline = t0 + 2 * NS_PER_S;
            if (write(ctl[1], "g", 1) != 1) {
                fprintf(stderr, "lockbench: rawfan: control pipe: %s\n", strerror(errno));
                errors++;
                break;
            }
        }
        if (now > deadline) {
            if (measuring)
                late++;
            fprintf(stderr, "lockbench: rawfan: %s: %zu of %zu sockets after %s\n", measuring ? "round late" : "connect",
                    got, w, measuring ? "2 s" : "120 s");
            break;
        }
        int n = epoll_wait(ep, evs, 512, 10);
        for (int k = 0; k < n; k++) {
            size_t i = (size_t)evs[k].data.u64;
            if (rawfan_read(fd[i], &have[i])) {
                if (errors++ < MAX_ERRORS_SHOWN)
                    fprintf(stderr, "lockbench: rawfan: connection %zu lost\n", i);
                epoll_ctl(ep, EPOLL_CTL_DEL, fd[i], NULL);
                continue;
            }
            /* greeted: 1 byte; after round r: 1 + r * b */
            long want = measuring ? rounds + 1 : 0;
            if (done[i] < want && have[i] >= 1 + (long long)want * (long long)b) {
                done[i] = want;
                got++;
                t_last = net_now_ns();
                if (measuring)
                    samples_add(&each, t_last - t0);
            }
        }
        if (errors)
            break;
    }
    if (measuring) {
        m1 = cpu_mark();
        c1 = proc_ticks(child);
    }
    phase("stop");
    for (size_t i = 0; i < w; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    close(ctl[1]);
    close(back[0]);
    close(ep);
    /* the sender ends on the pipe's EOF: its pidfd becomes readable when it
     * has; 2 s at most, then it is killed */
    int status = 0, reaped = 0, pfd = pidfd_open(child, 0);
    struct pollfd pe = { .fd = pfd, .events = POLLIN };
    if (pfd >= 0 && poll(&pe, 1, 2000) == 1)
        reaped = waitpid(child, &status, 0) == child;
    if (pfd >= 0)
        close(pfd);
    if (!reaped) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        errors++;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        errors++;
    }
    free(fd);
    free(have);
    free(done);
    if (opt.label)
        snprintf(name, sizeof(name), "%s", opt.label);
    else
        snprintf(name, sizeof(name), "rawfan-%zu", w);
    double secs = (double)(m1.t - m0.t) / NS_PER_S;
    int64_t dt = m1.t - m0.t;
    snprintf(extra, sizeof(extra),
             " (go byte written -> all %zu sockets have their %zu-byte frame; per delivery p50 %.3f p99 %.3f ms;"
             " -> the sender's last send() returned p50 %.3f p99 %.3f ms)"
             " | %ld rounds in %.2f s, %ld late (> 2 s), %ld errors, connect %.1f s"
             " | cpu sender %d%% lockbench %d%% | no broker, no Redis: one send() per socket per round",
             w, b, samples_ms(&each, 0.5), samples_ms(&each, 0.99), samples_ms(&sent, 0.5), samples_ms(&sent, 0.99), rounds, secs > 0 ? secs : 0, late, errors,
             connect_s, pct(c0, c1, dt), pct(m0.self, m1.self, dt));
    print_line(name, secs > 0 ? (double)rounds / secs : 0, "rounds", &all, extra);
    free(all.v);
    free(each.v);
    free(sent.v);
    return errors || late || !measuring ? 1 : 0;
}

/* idle: the broker's VmRSS with --watchers idle WebSocket watchers. */
static int run_idle(void)
{
    char name[64];
    size_t w = (size_t)opt.watchers;
    if (opt.pid <= 0) {
        fprintf(stderr, "lockbench: idle needs --pid of devlockd\n");
        return 2;
    }
    size_t hold = opt.hold > 0 ? (size_t)opt.hold : 0;
    if (hold) {
        run.held_n = hold;
        run.held = lk_xcalloc(hold, sizeof(*run.held));
        if (hold_locks(K_HOLD))
            return 1;
    }
    run.kind = K_WATCH;
    long rss0 = proc_rss_kb(opt.pid);
    clients_new(w, "bench-idle");
    int64_t t0 = net_now_ns();
    if (connect_all(120))
        return 1;
    double connect_s = (double)(net_now_ns() - t0) / NS_PER_S;
    /* let the broker finish its writes; anything that arrives is consumed */
    int64_t settle = net_now_ns() + NS_PER_S;
    long rss1 = 0;
    while (net_now_ns() < settle) {
        net_poll(50);
        long r = proc_rss_kb(opt.pid);
        if (r > rss1)
            rss1 = r;
    }
    size_t lost = run.closed;
    clients_free();
    int bad = lost != 0;
    if (hold && hold_locks(K_UNHOLD))
        bad = 1;
    if (opt.label)
        snprintf(name, sizeof(name), "%s", opt.label);
    else
        snprintf(name, sizeof(name), "idle-%zu", w);
    long hwm = proc_kb(opt.pid, "VmHWM:");
    printf("%-22s %9.1f MB devlockd RSS with %zu idle watchers%s (%.1f MB before, %.1f KB per watcher)"
           " | connect %.1f s, %zu dropped, devlockd VmHWM %.1f MB (its peak so far)\n",
           name, (double)rss1 / 1024, w, hold ? " connected while locks are held" : "", (double)rss0 / 1024,
           w ? (double)(rss1 - rss0) / (double)w : 0, connect_s, lost, (double)hwm / 1024);
    if (hold)
        printf("%-22s %zu locks held while they connected (each initial_status has them all)\n", "", hold);
    fflush(stdout);
    return bad;
}

/* hold: takes --hold locks and leaves them (they end by their --timeout). */
static int run_hold(void)
{
    run.held_n = (size_t)(opt.hold < 0 ? 1000 : opt.hold);
    run.held = lk_xcalloc(run.held_n ? run.held_n : 1, sizeof(*run.held));
    phase("begin");
    int64_t t0 = net_now_ns();
    int bad = run.held_n && hold_locks(K_HOLD);
    double secs = (double)(net_now_ns() - t0) / NS_PER_S;
    phase("held");
    printf("%-22s %zu locks taken in %.2f s (lease %g s)%s\n", opt.label ? opt.label : "hold", run.held_done, secs,
           opt.timeout, bad ? ", FAILED" : "");
    fflush(stdout);
    return bad;
}

/* ---- main ------------------------------------------------------------------------------ */

static void raise_nofile(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur >= need)
        return;
    struct rlimit want = { need, rl.rlim_max > need ? rl.rlim_max : need };
    if (setrlimit(RLIMIT_NOFILE, &want)) {
        want.rlim_cur = rl.rlim_max;
        want.rlim_max = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &want);
        fprintf(stderr, "lockbench: warning: RLIMIT_NOFILE is %llu, %zu wanted (raise ulimit -n)\n",
                (unsigned long long)rl.rlim_max, need);
    }
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || getsockname(fd, (struct sockaddr *)&a, &len)) {
        perror("lockbench: free port");
        return 1;
    }
    printf("%d\n", ntohs(a.sin_port));
    close(fd);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: lockbench --port P [--host 127.0.0.1]\n"
            "                 --scenario cycle|ladder|read|renew|status|fanout|idle|hold|get\n"
            "                 [--proto http|ws] [--conns N] [--duration S] [--count N] [--watchers W]\n"
            "                 [--hold N] [--timeout LEASE_S] [--path P] [--sync DIR] [--save-body FILE]\n"
            "                 [--pid DEVLOCKD_PID] [--redis-pid PID] [--ceiling EVALSHA_PER_S]\n"
            "                 [--label NAME] [--verbose]\n"
            "       lockbench --scenario rawfan --watchers N [--count R] [--duration S] [--frame-bytes B]\n"
            "       lockbench --free-port   (prints a free loopback TCP port)\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "host", required_argument, NULL, 'H' },     { "port", required_argument, NULL, 'p' },
        { "scenario", required_argument, NULL, 's' }, { "proto", required_argument, NULL, 'P' },
        { "conns", required_argument, NULL, 'c' },    { "duration", required_argument, NULL, 'd' },
        { "count", required_argument, NULL, 'n' },    { "watchers", required_argument, NULL, 'w' },
        { "hold", required_argument, NULL, 'h' },     { "pid", required_argument, NULL, 'i' },
        { "redis-pid", required_argument, NULL, 'r' }, { "ceiling", required_argument, NULL, 'C' },
        { "label", required_argument, NULL, 'l' },    { "verbose", no_argument, NULL, 'v' },
        { "free-port", no_argument, NULL, 'F' },      { "help", no_argument, NULL, '?' },
        { "path", required_argument, NULL, 'u' },     { "sync", required_argument, NULL, 'S' },
        { "timeout", required_argument, NULL, 't' },  { "save-body", required_argument, NULL, 'B' },
        { "frame-bytes", required_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'H': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 's': opt.scenario = optarg; break;
        case 'P': opt.proto = optarg; break;
        case 'c': opt.conns = atoi(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'n': opt.count = atol(optarg); break;
        case 'w': opt.watchers = atoi(optarg); break;
        case 'h': opt.hold = atoi(optarg); break;
        case 'i': opt.pid = atol(optarg); break;
        case 'r': opt.redis_pid = atol(optarg); break;
        case 'C': opt.ceiling = atof(optarg); break;
        case 'l': opt.label = optarg; break;
        case 'v': opt.verbose = 1; break;
        case 'u': opt.path = optarg; break;
        case 'S': opt.sync = optarg; break;
        case 't': opt.timeout = atof(optarg); break;
        case 'B': opt.save = optarg; break;
        case 'f': opt.frame_bytes = atoi(optarg); break;
        case 'F': return free_port();
        default: usage(); return 2;
        }
    }
    int rawfan = !strcmp(opt.scenario, "rawfan"); /* needs no server */
    if ((!rawfan && opt.port <= 0) || opt.port < 0 || opt.port > 65535 || opt.frame_bytes < 2 || opt.frame_bytes > (1 << 20) || opt.conns < 1 || opt.conns > 50000 || opt.watchers < 1 ||
        opt.watchers > 60000 || opt.hold < -1 || opt.timeout <= 0 || opt.duration <= 0 || opt.duration > 3600 || opt.count < 1 ||
        (strcmp(opt.proto, "http") && strcmp(opt.proto, "ws"))) {
        usage();
        return 2;
    }
    raise_nofile((size_t)(opt.watchers > opt.conns ? opt.watchers : opt.conns) + 64);
    if (rawfan)
        return run_rawfan();
    if (net_init(opt.host, opt.port))
        return 2;
    run.ws = !strcmp(opt.proto, "ws");
    if (!strcmp(opt.scenario, "cycle"))
        run.kind = K_CYCLE;
    else if (!strcmp(opt.scenario, "ladder"))
        run.kind = K_LADDER;
    else if (!strcmp(opt.scenario, "read"))
        run.kind = K_READ, run.ws = 0;
    else if (!strcmp(opt.scenario, "status"))
        run.kind = K_STATUS, run.ws = 0;
    else if (!strcmp(opt.scenario, "renew"))
        run.kind = K_RENEW, run.ws = 0;
    else if (!strcmp(opt.scenario, "get"))
        run.kind = K_GET, run.ws = 0;
    else if (!strcmp(opt.scenario, "hold"))
        return run_hold();
    else if (!strcmp(opt.scenario, "fanout"))
        return run_fanout();
    else if (!strcmp(opt.scenario, "idle"))
        return run_idle();
    else {
        usage();
        return 2;
    }
    return run_requests();
}
