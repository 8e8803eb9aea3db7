/* lockctl - command-line client of devlockd, built only on lockclient.h.
 *
 * One table of subcommands; each parses its own options (plus the global
 * ones) with getopt_long and maps the library's status to the exit code of
 * common/errors.def (lc_status_exit_code). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lockclient.h"

#define EXIT_USAGE 2

struct opts {
    const char *url, *token, *user, *reason, *plan, *key, *since, *device, *request_id, *name;
    lc_lock_type type;
    double timeout_s, wait_s;
    long timeout_ms;
    int json, limit, count, help;
    int signal_no;
};

struct command {
    const char *name;
    const char *args;
    const char *summary;
    const char *options;
    int (*run)(struct opts *o, int argc, char **argv);
};

/* ---- output helpers ---- */

static void json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int json_output;     /* --json: failures are also a JSON line on stdout */

/* Prints the failure (the broker's or the transport's detail when there is
 * one, else the status's description) and returns the exit code of st. */
static int fail(lc_client *c, lc_status st, const char *what)
{
    const char *detail = c ? lc_errmsg(c) : "";
    fprintf(stderr, "lockctl: %s: %s [%s]\n", what, *detail ? detail : lc_strerror(st),
            lc_status_code(st));
    if (json_output) {
        printf("{\"success\":false,\"error\":\"%s\",\"detail\":", lc_status_code(st));
        json_str(stdout, *detail ? detail : lc_strerror(st));
        printf(",\"exit_code\":%d}\n", lc_status_exit_code(st));
    }
    return lc_status_exit_code(st);
}

static const char *or_dash(const char *s) { return s && *s ? s : "-"; }

static void print_lock_row(const lc_lock *l)
{
    printf("%-24s %-16s %-12s %-8lld %-28s %s\n", lc_lock_device(l),
           or_dash(lc_lock_type_name(lc_lock_type_of(l))), or_dash(lc_lock_user(l)),
           (long long)lc_lock_fence(l), lc_lock_expires_at(l) ? lc_lock_expires_at(l) : "never",
           or_dash(lc_lock_reason(l)));
}

static void print_lock_header(void)
{
    printf("%-24s %-16s %-12s %-8s %-28s %s\n", "DEVICE", "TYPE", "USER", "FENCE", "EXPIRES",
           "REASON");
}

/* ---- option parsing ---- */

enum { O_URL = 256, O_TOKEN, O_JSON, O_TYPE, O_USER, O_TIMEOUT, O_REASON, O_PLAN, O_WAIT, O_KEY,
       O_SINCE, O_LIMIT, O_DEVICE, O_COUNT, O_REQID, O_CALL_TIMEOUT, O_SIGNAL, O_NAME };

static const struct option long_opts[] = {
    {"url", required_argument, NULL, O_URL},
    {"token", required_argument, NULL, O_TOKEN},
    {"json", no_argument, NULL, O_JSON},
    {"help", no_argument, NULL, 'h'},
    {"type", required_argument, NULL, O_TYPE},
    {"user", required_argument, NULL, O_USER},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"reason", required_argument, NULL, O_REASON},
    {"plan", required_argument, NULL, O_PLAN},
    {"wait", required_argument, NULL, O_WAIT},
    {"key", required_argument, NULL, O_KEY},
    {"since", required_argument, NULL, O_SINCE},
    {"limit", required_argument, NULL, O_LIMIT},
    {"device", required_argument, NULL, O_DEVICE},
    {"count", required_argument, NULL, O_COUNT},
    {"request-id", required_argument, NULL, O_REQID},
    {"call-timeout", required_argument, NULL, O_CALL_TIMEOUT},
    {"signal", required_argument, NULL, O_SIGNAL},
    {"name", required_argument, NULL, O_NAME},
    {NULL, 0, NULL, 0},
};

static int parse_num(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

/* Parses argv (argv[0] is the subcommand); returns -1 on a usage error.
 * Non-option arguments end up in argv[optind..argc). */
static int parse_opts(struct opts *o, int argc, char **argv)
{
    int ch;
    double v;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "hj", long_opts, NULL)) != -1) {
        switch (ch) {
        case O_URL: o->url = optarg; break;
        case O_TOKEN: o->token = optarg; break;
        case 'j': case O_JSON: o->json = 1; break;
        case 'h': o->help = 1; break;
        case O_TYPE:
            o->type = lc_lock_type_parse(optarg);
            if (o->type == LC_TYPE_DEFAULT) {
                fprintf(stderr, "lockctl: unknown lock type '%s' (MAINTENANCE, QUEUE_EXECUTING, "
                                "MANUAL_OPERATOR, QUEUE_QUEUED)\n", optarg);
                return -1;
            }
            break;
        case O_USER: o->user = optarg; break;
        case O_TIMEOUT:
            if (!strcmp(optarg, "none")) {
                o->timeout_s = -1;
            } else if (parse_num(optarg, &v) || v <= 0) {
                fprintf(stderr, "lockctl: --timeout wants seconds > 0 or 'none'\n");
                return -1;
            } else {
                o->timeout_s = v;
            }
            break;
        case O_REASON: o->reason = optarg; break;
        case O_PLAN: o->plan = optarg; break;
        case O_WAIT:
            if (parse_num(optarg, &v) || v < 0) {
                fprintf(stderr, "lockctl: --wait wants seconds >= 0\n");
                return -1;
            }
            o->wait_s = v;
            break;
        case O_KEY: o->key = optarg; break;
        case O_SINCE: o->since = optarg; break;
        case O_DEVICE: o->device = optarg; break;
        case O_REQID: o->request_id = optarg; break;
        case O_NAME: o->name = optarg; break;
        case O_LIMIT: case O_COUNT: case O_CALL_TIMEOUT: case O_SIGNAL:
            if (parse_num(optarg, &v) || v < 0 || v > 1e9) {
                fprintf(stderr, "lockctl: %s wants a number\n", argv[optind - 1]);
                return -1;
            }
            if (ch == O_LIMIT) o->limit = (int)v;
            else if (ch == O_COUNT) o->count = (int)v;
            else if (ch == O_SIGNAL) o->signal_no = (int)v;
            else o->timeout_ms = (long)v;
            break;
        default:
            fprintf(stderr, "lockctl: unknown or incomplete option '%s'\n", argv[optind - 1]);
            return -1;
        }
    }
    return 0;
}

static int client_open(const struct opts *o, lc_client **c)
{
    lc_options lo = {0};
    lo.url = o->url ? o->url : getenv("DEVLOCK_URL");
    lo.token = o->token ? o->token : getenv("DEVLOCK_TOKEN");
    lo.user_id = o->user;
    lo.timeout_ms = o->timeout_ms;
    lo.client_name = o->name ? o->name : "lockctl";
    lc_status st = lc_client_new(&lo, c);
    if (st != LC_OK) {
        fprintf(stderr, "lockctl: cannot create a client for %s: %s\n",
                lo.url ? lo.url : "http://localhost:60620", lc_strerror(st));
        return lc_status_exit_code(st);
    }
    return 0;
}

static void fill_request(const struct opts *o, lc_request *r, char **devs, int n)
{
    memset(r, 0, sizeof(*r));
    if (n == 1)
        r->device_name = devs[0];
    else {
        r->device_names = (const char *const *)devs;
        r->n_devices = (size_t)n;
    }
    r->type = o->type;
    r->user_id = o->user;
    r->timeout_s = o->timeout_s;
    r->reason = o->reason;
    r->plan_uid = o->plan;
    r->wait_s = o->wait_s;
    r->request_id = o->request_id;
}

static void print_grant(const struct opts *o, const lc_lock *l)
{
    if (o->json) {
        printf("{\"success\":true,\"lock_key\":");
        json_str(stdout, lc_lock_key(l));
        printf(",\"expires_at\":");
        json_str(stdout, lc_lock_expires_at(l));
        printf(",\"fence\":%lld,\"devices\":[", (long long)lc_lock_fence(l));
        for (size_t i = 0; i < lc_lock_device_count(l); i++) {
            printf("%s{\"device_name\":", i ? "," : "");
            json_str(stdout, lc_lock_device_at(l, i));
            printf(",\"fence\":%lld}", (long long)lc_lock_fence_at(l, i));
        }
        printf("],\"lock\":%s}\n", lc_lock_json(l));
        return;
    }
    printf("lock_key %s\n", lc_lock_key(l));
    for (size_t i = 0; i < lc_lock_device_count(l); i++)
        printf("device %s fence %lld\n", lc_lock_device_at(l, i), (long long)lc_lock_fence_at(l, i));
    printf("expires %s\n", lc_lock_expires_at(l) ? lc_lock_expires_at(l) : "never");
}

/* ---- subcommands ---- */

static int cmd_acquire(struct opts *o, int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "lockctl acquire: name at least one device\n");
        return EXIT_USAGE;
    }
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    lc_request r;
    fill_request(o, &r, argv, argc);
    lc_lock *l = NULL;
    lc_status st = lc_acquire(c, &r, &l);
    if (st == LC_OK)
        print_grant(o, l);
    rc = st == LC_OK ? 0 : fail(c, st, "acquire");
    lc_lock_free(l);
    lc_client_free(c);
    return rc;
}

static int simple_result(const struct opts *o, lc_client *c, lc_status st, const char *what,
                         const char *msg)
{
    if (st != LC_OK)
        return fail(c, st, what);
    if (o->json) {
        printf("{\"success\":true,\"message\":");
        json_str(stdout, msg);
        printf("}\n");
    } else {
        printf("%s\n", msg);
    }
    return 0;
}

static int cmd_release(struct opts *o, int argc, char **argv)
{
    if (argc != 1 || !o->key) {
        fprintf(stderr, "lockctl release: needs DEVICE and --key KEY\n");
        return EXIT_USAGE;
    }
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    char msg[300];
    snprintf(msg, sizeof(msg), "released %s", argv[0]);
    rc = simple_result(o, c, lc_release_key(c, argv[0], o->key, o->user), "release", msg);
    lc_client_free(c);
    return rc;
}

static int cmd_force_release(struct opts *o, int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "lockctl force-release: needs exactly one DEVICE\n");
        return EXIT_USAGE;
    }
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    char msg[300];
    snprintf(msg, sizeof(msg), "force-released %s", argv[0]);
    rc = simple_result(o, c, lc_force_release(c, argv[0], o->reason), "force-release", msg);
    lc_client_free(c);
    return rc;
}

static int cmd_renew(struct opts *o, int argc, char **argv)
{
    if (argc != 1 || !o->key) {
        fprintf(stderr, "lockctl renew: needs DEVICE and --key KEY\n");
        return EXIT_USAGE;
    }
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    lc_lock *l = NULL;
    lc_status st = lc_renew_key(c, argv[0], o->key, o->user, o->timeout_s, &l);
    if (st != LC_OK)
        rc = fail(c, st, "renew");
    else if (o->json)
        printf("{\"success\":true,\"expires_at\":%s%s%s,\"lock\":%s}\n",
               lc_lock_expires_at(l) ? "\"" : "", lc_lock_expires_at(l) ? lc_lock_expires_at(l) : "null",
               lc_lock_expires_at(l) ? "\"" : "", lc_lock_json(l));
    else
        printf("renewed %s until %s\n", argv[0], lc_lock_expires_at(l) ? lc_lock_expires_at(l) : "never");
    lc_lock_free(l);
    lc_client_free(c);
    return rc;
}

static int cmd_status(struct opts *o, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "lockctl status: at most one DEVICE\n");
        return EXIT_USAGE;
    }
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    if (argc == 1) {
        lc_lock *l = NULL;
        lc_status st = lc_device_status(c, argv[0], &l);
        if (st != LC_OK) {
            rc = fail(c, st, "status");
        } else if (o->json) {
            printf("{\"device_name\":");
            json_str(stdout, argv[0]);
            printf(",\"locked\":%s,\"lock\":%s}\n", l ? "true" : "false", l ? lc_lock_json(l) : "null");
        } else if (!l) {
            printf("%s is free\n", argv[0]);
        } else {
            print_lock_header();
            print_lock_row(l);
        }
        lc_lock_free(l);
    } else {
        lc_lock_list *list = NULL;
        lc_status st = lc_locks_status(c, &list);
        size_t n = lc_lock_list_count(list);
        if (st != LC_OK) {
            rc = fail(c, st, "status");
        } else if (o->json) {
            printf("{\"locks\":[");
            for (size_t i = 0; i < n; i++)
                printf("%s%s", i ? "," : "", lc_lock_json(lc_lock_list_get(list, i)));
            printf("],\"total_count\":%zu}\n", n);
        } else {
            print_lock_header();
            for (size_t i = 0; i < n; i++)
                print_lock_row(lc_lock_list_get(list, i));
        }
        lc_lock_list_free(list);
    }
    lc_client_free(c);
    return rc;
}

static int cmd_health(struct opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc) {
        fprintf(stderr, "lockctl health: takes no arguments\n");
        return EXIT_USAGE;
    }
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    lc_health h;
    lc_status st = lc_health_check(c, &h);
    json_output = 0;    /* the line below says it all */
    if (o->json)
        printf("{\"ready\":%s,\"redis_connected\":%s,\"active_locks\":%ld,\"error\":\"%s\"}\n",
               h.ready ? "true" : "false", h.redis_connected ? "true" : "false", h.active_locks,
               lc_status_code(st));
    else if (st == LC_OK)
        printf("ready (redis connected, %ld active locks)\n", h.active_locks);
    rc = st == LC_OK ? 0 : fail(c, st, "health");
    lc_client_free(c);
    return rc;
}

static int cmd_history(struct opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc) {
        fprintf(stderr, "lockctl history: takes no arguments (use --device)\n");
        return EXIT_USAGE;
    }
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    lc_history_query q = {o->since, o->limit, o->device, o->plan};
    lc_event_list *evs = NULL;
    lc_status st = lc_history(c, &q, &evs);
    if (st != LC_OK) {
        rc = fail(c, st, "history");
    } else {
        size_t n = lc_event_list_count(evs);
        if (o->json) {
            printf("{\"events\":[");
            for (size_t i = 0; i < n; i++)
                printf("%s%s", i ? "," : "", lc_event_list_get(evs, i)->json);
            printf("],\"count\":%zu,\"last_event_id\":", n);
            json_str(stdout, lc_event_list_last_id(evs));
            printf("}\n");
        } else {
            printf("%-20s %-28s %-15s %-24s %-12s %s\n", "EVENT", "TIME", "ACTION", "DEVICE",
                   "USER", "CAUSE");
            for (size_t i = 0; i < n; i++) {
                const lc_event *e = lc_event_list_get(evs, i);
                printf("%-20s %-28s %-15s %-24s %-12s %s\n", or_dash(e->event_id),
                       or_dash(e->timestamp), or_dash(e->action), or_dash(e->device_name),
                       or_dash(e->lock ? lc_lock_user(e->lock) : NULL), or_dash(e->cause));
            }
        }
    }
    lc_event_list_free(evs);
    lc_client_free(c);
    return rc;
}

/* ---- watch ---- */

/* The main thread blocks on this pipe; a signal or the last wanted event
 * writes a byte to it. */
static int wake_fd[2] = {-1, -1};
static void on_signal(int sig)
{
    (void)sig;
    ssize_t n = write(wake_fd[1], "s", 1);
    (void)n;
}

struct watch_state {
    const struct opts *o;
    int seen;
    int done;     /* atomic */
};

static void watch_event(const lc_event *e, void *ud)
{
    struct watch_state *s = ud;
    if (__atomic_load_n(&s->done, __ATOMIC_SEQ_CST))
        return;
    if (s->o->device && strcmp(s->o->device, e->device_name))
        return;
    if (s->o->json)
        printf("%s\n", e->json);
    else
        printf("%-20s %-15s %-24s %-12s %-16s %s\n", or_dash(e->event_id), or_dash(e->action),
               or_dash(e->device_name), or_dash(e->lock ? lc_lock_user(e->lock) : NULL),
               or_dash(e->lock ? lc_lock_type_name(lc_lock_type_of(e->lock)) : NULL),
               or_dash(e->cause));
    fflush(stdout);
    if (s->o->count > 0 && ++s->seen >= s->o->count) {
        __atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
        ssize_t n = write(wake_fd[1], "d", 1);
        (void)n;
    }
}

static void watch_connection(int up, void *ud)
{
    (void)ud;
    fprintf(stderr, "lockctl watch: %s\n", up ? "connected" : "disconnected, reconnecting");
}

static int cmd_watch(struct opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc) {
        fprintf(stderr, "lockctl watch: takes no arguments\n");
        return EXIT_USAGE;
    }
    if (pipe(wake_fd) != 0) {
        fprintf(stderr, "lockctl watch: pipe: %s\n", strerror(errno));
        return 1;
    }
    lc_options lo = {0};
    lo.url = o->url ? o->url : getenv("DEVLOCK_URL");
    lo.token = o->token ? o->token : getenv("DEVLOCK_TOKEN");
    struct watch_state s = {o, 0, 0};
    lc_watch_callbacks cbs = {watch_event, NULL, watch_connection, &s};
    lc_watch *w = NULL;
    lc_status st = lc_watch_new(&lo, &cbs, &w);
    if (st != LC_OK) {
        fprintf(stderr, "lockctl watch: %s\n", lc_strerror(st));
        return lc_status_exit_code(st);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    char byte;
    while (read(wake_fd[0], &byte, 1) < 0 && errno == EINTR)
        ;
    lc_watch_free(w);
    return 0;
}

/* ---- run ---- */

static volatile pid_t run_child;

static void run_lost(const lc_lock *l, lc_status st, const char *detail, void *ud)
{
    int sig = *(int *)ud;
    fprintf(stderr, "lockctl run: lock on %s lost (%s: %s); sending signal %d to the command\n",
            lc_lock_device(l), lc_strerror(st), detail, sig);
    if (run_child > 0)
        kill(run_child, sig);
}

static void forward_signal(int sig)
{
    if (run_child > 0)
        kill(run_child, sig);
}

static int cmd_run(struct opts *o, int argc, char **argv)
{
    int dd = -1;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            dd = i;
            break;
        }
    if (dd < 0) {
        fprintf(stderr, "lockctl run: usage: lockctl run DEVICE... -- CMD [ARG...]\n");
        return EXIT_USAGE;
    }
    int ndev = dd;
    char **devs = argv, **cmd = argv + dd + 1;
    if (ndev < 1 || !cmd[0]) {
        fprintf(stderr, "lockctl run: needs at least one DEVICE and a command after --\n");
        return EXIT_USAGE;
    }
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    if (o->timeout_s == 0)
        o->timeout_s = 30;     /* a short lease, renewed while CMD runs */
    lc_request r;
    fill_request(o, &r, devs, ndev);
    lc_lock *l = NULL;
    lc_status st = lc_acquire(c, &r, &l);
    if (st != LC_OK) {
        rc = fail(c, st, "run: acquire");
        lc_client_free(c);
        return rc;
    }
    int sig = o->signal_no > 0 ? o->signal_no : SIGTERM;
    lc_keepalive *ka = NULL;    /* renews over its own connection */
    if (lc_lock_expires_us(l))
        st = lc_keepalive_start(c, l, 0, run_lost, &sig, &ka);
    if (st != LC_OK) {
        rc = fail(c, st, "run: keepalive");
        (void)lc_release(c, l);
        lc_lock_free(l);
        lc_client_free(c);
        return rc;
    }
    char fence[32];
    snprintf(fence, sizeof(fence), "%lld", (long long)lc_lock_fence(l));
    setenv("DEVLOCK_LOCK_KEY", lc_lock_key(l), 1);
    setenv("DEVLOCK_FENCE", fence, 1);
    fflush(NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = forward_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(cmd[0], cmd);
        fprintf(stderr, "lockctl run: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    if (pid < 0) {
        fprintf(stderr, "lockctl run: fork: %s\n", strerror(errno));
        rc = 1;
    } else {
        run_child = pid;
        int ws = 0;
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
            ;
        run_child = 0;
        rc = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    }
    if (lc_keepalive_stop(ka) == LC_ERR_LOST) {
        /* nothing to release; CMD was signalled */
        if (rc == 0)
            rc = lc_status_exit_code(LC_ERR_LOST);
    } else {
        st = lc_release(c, l);
        if (st != LC_OK && st != LC_ERR_NOT_FOUND)
            (void)fail(c, st, "run: release");
    }
    lc_lock_free(l);
    lc_client_free(c);
    return rc;
}

/* ---- help ---- */

static const char global_help[] =
    "global options (any subcommand):\n"
    "  --url URL        broker (default $DEVLOCK_URL, else http://localhost:60620)\n"
    "  --token TOKEN    bearer token (default $DEVLOCK_TOKEN)\n"
    "  --user USER      user_id (default $USER)\n"
    "  --json, -j       machine-readable output (one JSON object per line)\n"
    "  --call-timeout MS  per-call timeout (default 5000)\n"
    "  --help, -h       this help\n"
    "exit codes:\n"
    "  0 ok; 1 failed (forbidden, not found, lock lost, ...); 2 usage or bad request;\n"
    "  3 broker unreachable or unavailable (Redis down) or timed out; 4 busy (lock denied);\n"
    "  run: the command's own exit status (128+N if killed by signal N).\n";

static const struct command commands[] = {
    {"acquire", "DEVICE...", "lock one device, or several as one all-or-none group",
     "  --type T  --timeout S|none  --reason R  --plan UID  --wait S  --request-id ID  --name NAME\n",
     cmd_acquire},
    {"release", "DEVICE --key KEY", "release a lock (the whole group)",
     "  --key KEY     the lock_key printed by acquire\n", cmd_release},
    {"force-release", "DEVICE", "admin: end whoever holds DEVICE (cause admin)",
     "  --reason R\n", cmd_force_release},
    {"renew", "DEVICE --key KEY", "extend a lease",
     "  --key KEY     the lock_key printed by acquire\n"
     "  --timeout S   new lease in seconds (default: the lock's lease as last set)\n",
     cmd_renew},
    {"status", "[DEVICE]", "list every lock, or one device's", "", cmd_status},
    {"watch", "", "print one line per lock event until interrupted",
     "  --count N   exit after N events\n"
     "  --device D  only D's events\n"
     "  Status lines (connected, reconnecting) go to stderr; events to stdout.\n", cmd_watch},
    {"run", "DEVICE... -- CMD [ARG...]",
     "hold the locks while CMD runs, then release; exit with CMD's status",
     "  --type T  --timeout S (lease, default 30, renewed)  --reason R  --plan UID  --wait S\n"
     "  --signal N  signal sent to CMD when a lock is lost (default 15, SIGTERM)\n"
     "  The devices are locked as one all-or-none group and renewed in the background\n"
     "  while CMD runs; they are released when CMD ends. If a lock is lost (preempted,\n"
     "  expired, force-released), CMD gets the signal.\n"
     "  CMD sees DEVLOCK_LOCK_KEY and DEVLOCK_FENCE in its environment.\n",
     cmd_run},
    {"history", "", "lock history, oldest first",
     "  --since ID  --limit N  --device D  --plan UID\n", cmd_history},
    {"health", "", "is the broker ready (exit 0) or not (3)", "", cmd_health},
    {NULL, NULL, NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: lockctl [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]\n\ncommands:\n");
    for (const struct command *c = commands; c->name; c++)
        fprintf(f, "  %-13s %-26s %s\n", c->name, c->args, c->summary);
    fprintf(f, "\n%s\n'lockctl COMMAND --help' shows a command's options.\n", global_help);
}

static void command_help(const struct command *c)
{
    printf("usage: lockctl %s [OPTIONS] %s\n  %s\n", c->name, c->args, c->summary);
    if (*c->options)
        printf("options:\n%s", c->options);
    printf("%s", global_help);
}

int main(int argc, char **argv)
{
    struct opts o;
    memset(&o, 0, sizeof(o));
    /* global options before the subcommand */
    int i = 1;
    while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--")) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "-j")) {
            o.json = 1;
            i++;
        } else if (i + 1 < argc && (!strcmp(argv[i], "--url") || !strcmp(argv[i], "--token") ||
                                    !strcmp(argv[i], "--user"))) {
            if (argv[i][2] == 'u' && argv[i][3] == 'r')
                o.url = argv[i + 1];
            else if (argv[i][2] == 't')
                o.token = argv[i + 1];
            else
                o.user = argv[i + 1];
            i += 2;
        } else {
            fprintf(stderr, "lockctl: unknown global option '%s'\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const struct command *cmd = NULL;
    for (const struct command *c = commands; c->name; c++)
        if (!strcmp(c->name, argv[i]))
            cmd = c;
    if (!cmd) {
        fprintf(stderr, "lockctl: unknown command '%s'\n", argv[i]);
        usage(stderr);
        return EXIT_USAGE;
    }
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    int rest_argc, dd = sub_argc;
    if (cmd->run == cmd_run)    /* options only before "--" */
        for (int k = 1; k < sub_argc; k++)
            if (!strcmp(sub_argv[k], "--")) {
                dd = k;
                break;
            }
    if (parse_opts(&o, dd, sub_argv) < 0) {
        fprintf(stderr, "try 'lockctl %s --help'\n", cmd->name);
        return EXIT_USAGE;
    }
    if (o.help) {
        command_help(cmd);
        return 0;
    }
    json_output = o.json;
    /* getopt permuted the operands to the end of sub_argv[0..dd) */
    rest_argc = dd - optind;
    char **rest = sub_argv + optind;
    if (dd < sub_argc) {
        /* run: operands, then "--" and the command, contiguous */
        int total = rest_argc + (sub_argc - dd);
        char **v = calloc((size_t)total + 1, sizeof(char *));
        if (!v)
            return 1;
        memcpy(v, rest, (size_t)rest_argc * sizeof(char *));
        memcpy(v + rest_argc, sub_argv + dd, (size_t)(sub_argc - dd) * sizeof(char *));
        int rc = cmd->run(&o, total, v);
        free(v);
        return rc;
    }
    return cmd->run(&o, rest_argc, rest);
}
