/* lockctl - command-line client of devlockd, built only on lockclient.h.
 *
 * One table of subcommands; each parses its own options (plus the global
 * ones, which may also come before the command) with getopt_long and maps
 * the library's status to the exit code of common/errors.def
 * (lc_status_exit_code). `lockctl run` has its own codes (120-127, see
 * "run" below and docs/lockctl.1) so that they never overlap the command's. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lockclient.h"

#define EXIT_USAGE 2

/* lockctl run's own outcomes: above the statuses commands commonly use,
 * below the shell's 126/127 and 128+N for a signal, like timeout(1)'s 124-125. */
enum {
    RUN_LOST = 120,            /* the lock was lost while CMD ran (its group was signalled) */
    RUN_RELEASE_FAILED = 121,  /* CMD finished, the release failed: the lease may still run */
    RUN_USAGE = 122,
    RUN_BUSY = 123,            /* could not acquire: denied, or the wait ran out */
    RUN_UNREACHABLE = 124,     /* could not acquire: unreachable or timed out */
    RUN_ACQUIRE_FAILED = 125,  /* could not acquire: anything else (auth, TLS, device, ...) */
    RUN_NOEXEC = 126,          /* CMD found but not executable */
    RUN_NOTFOUND = 127         /* CMD not found */
};

struct opts {
    const char *url, *token, *user, *reason, *plan, *key, *since, *device, *request_id, *name;
    const char *from, *to, *state;     /* book, bookings, move: TIME (see parse_when) and states */
    const char *cacert, *capath, *cert, *cert_key;
    lc_lock_type type;
    double timeout_s, wait_s;
    double kill_after_s;        /* run: SIGKILL this long after the loss signal; 0: never */
    long timeout_ms;
    long safety_margin_ms;      /* < 0: the library's automatic margin */
    int json, limit, count, help, version, exit_on_error;
    int signal_no;              /* run: sent to CMD's group when a lock is lost */
    int preempt_signal;         /* run: sent on a preemption warning; 0: none */
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
 * one, else the status's description) and returns rc. */
static int report(lc_client *c, lc_status st, const char *what, int rc)
{
    const char *detail = c ? lc_errmsg(c) : "";
    fprintf(stderr, "lockctl: %s: %s [%s]\n", what, *detail ? detail : lc_strerror(st),
            lc_status_code(st));
    if (json_output) {
        printf("{\"success\":false,\"error\":\"%s\",\"detail\":", lc_status_code(st));
        json_str(stdout, *detail ? detail : lc_strerror(st));
        printf(",\"exit_code\":%d}\n", rc);
        fflush(stdout);
    }
    return rc;
}

/* report() with the exit code of st (common/errors.def). */
static int fail(lc_client *c, lc_status st, const char *what)
{
    return report(c, st, what, lc_status_exit_code(st));
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

/* ---- signals and lock types by name ---- */

static const struct { const char *name; int no; } signal_names[] = {
    {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL}, {"TRAP", SIGTRAP},
    {"ABRT", SIGABRT}, {"BUS", SIGBUS}, {"FPE", SIGFPE}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
    {"SEGV", SIGSEGV}, {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
    {"PWR", SIGPWR}, {"SYS", SIGSYS},
};
#define N_SIGNAL_NAMES (sizeof(signal_names) / sizeof(signal_names[0]))

/* "TERM", "SIGTERM", "term", "15" -> 15; -1 if unknown. */
static int parse_signal(const char *s)
{
    if (*s >= '0' && *s <= '9') {
        char *end;
        long v = strtol(s, &end, 10);
        return *end || v < 1 || v > SIGRTMAX ? -1 : (int)v;
    }
    if (!strncasecmp(s, "SIG", 3))
        s += 3;
    for (size_t i = 0; i < N_SIGNAL_NAMES; i++)
        if (!strcasecmp(s, signal_names[i].name))
            return signal_names[i].no;
    return -1;
}

/* "SIGTERM", or "signal 40" for one without a name; buf holds the latter. */
static const char *signal_str(int sig, char *buf, size_t len)
{
    for (size_t i = 0; i < N_SIGNAL_NAMES; i++)
        if (signal_names[i].no == sig) {
            snprintf(buf, len, "SIG%s", signal_names[i].name);
            return buf;
        }
    snprintf(buf, len, "signal %d", sig);
    return buf;
}

/* Case-insensitive, whatever the library's lc_lock_type_parse does. */
static lc_lock_type parse_type(const char *s)
{
    for (int t = LC_MAINTENANCE; t <= LC_QUEUE_QUEUED; t++)
        if (!strcasecmp(s, lc_lock_type_name((lc_lock_type)t)))
            return (lc_lock_type)t;
    return LC_TYPE_DEFAULT;
}

/* ---- option parsing ---- */

enum { O_URL = 256, O_TOKEN, O_JSON, O_TYPE, O_USER, O_TIMEOUT, O_REASON, O_PLAN, O_WAIT, O_KEY,
       O_SINCE, O_LIMIT, O_DEVICE, O_COUNT, O_REQID, O_CALL_TIMEOUT, O_SIGNAL, O_NAME, O_CACERT,
       O_CAPATH, O_CERT, O_CERT_KEY, O_MARGIN, O_VERSION, O_KILL_AFTER, O_PREEMPT_SIGNAL,
       O_EXIT_ON_ERROR, O_FROM, O_TO, O_STATE };

/* Every option, accepted before the command and among its options alike
 * (a command ignores the ones it has no use for). Keep client/cli/lockctl.bash
 * and docs/lockctl.1 in step with this table. */
static const struct option long_opts[] = {
    {"url", required_argument, NULL, O_URL},
    {"token", required_argument, NULL, O_TOKEN},
    {"user", required_argument, NULL, O_USER},
    {"json", no_argument, NULL, O_JSON},
    {"call-timeout", required_argument, NULL, O_CALL_TIMEOUT},
    {"cacert", required_argument, NULL, O_CACERT},
    {"capath", required_argument, NULL, O_CAPATH},
    {"cert", required_argument, NULL, O_CERT},
    {"cert-key", required_argument, NULL, O_CERT_KEY},
    {"safety-margin", required_argument, NULL, O_MARGIN},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, O_VERSION},
    {"type", required_argument, NULL, O_TYPE},
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
    {"signal", required_argument, NULL, O_SIGNAL},
    {"kill-after", required_argument, NULL, O_KILL_AFTER},
    {"preempt-signal", required_argument, NULL, O_PREEMPT_SIGNAL},
    {"name", required_argument, NULL, O_NAME},
    {"exit-on-error", no_argument, NULL, O_EXIT_ON_ERROR},
    {"from", required_argument, NULL, O_FROM},
    {"to", required_argument, NULL, O_TO},
    {"state", required_argument, NULL, O_STATE},
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

/* The option as the user wrote it, for messages ("--signal"). */
static const char *opt_name(int ch)
{
    for (const struct option *lo = long_opts; lo->name; lo++)
        if (lo->val == ch)
            return lo->name;
    return "?";
}

/* One option's value into o; -1 (message printed) if it is bad. */
static int set_opt(struct opts *o, int ch, const char *arg)
{
    double v;
    switch (ch) {
    case O_URL: o->url = arg; break;
    case O_TOKEN: o->token = arg; break;
    case O_USER: o->user = arg; break;
    case 'j': case O_JSON: o->json = 1; break;
    case 'h': o->help = 1; break;
    case O_VERSION: o->version = 1; break;
    case O_EXIT_ON_ERROR: o->exit_on_error = 1; break;
    case O_CACERT: o->cacert = arg; break;
    case O_CAPATH: o->capath = arg; break;
    case O_CERT: o->cert = arg; break;
    case O_CERT_KEY: o->cert_key = arg; break;
    case O_REASON: o->reason = arg; break;
    case O_PLAN: o->plan = arg; break;
    case O_KEY: o->key = arg; break;
    case O_SINCE: o->since = arg; break;
    case O_DEVICE: o->device = arg; break;
    case O_REQID: o->request_id = arg; break;
    case O_NAME: o->name = arg; break;
    case O_FROM: o->from = arg; break;
    case O_TO: o->to = arg; break;
    case O_STATE: o->state = arg; break;
    case O_TYPE:
        o->type = parse_type(arg);
        if (o->type == LC_TYPE_DEFAULT) {
            fprintf(stderr, "lockctl: unknown lock type '%s' (MAINTENANCE, QUEUE_EXECUTING, "
                            "MANUAL_OPERATOR, QUEUE_QUEUED; any case)\n", arg);
            return -1;
        }
        break;
    case O_TIMEOUT:
        if (!strcmp(arg, "none")) {
            o->timeout_s = -1;
        } else if (parse_num(arg, &v) || v <= 0) {
            fprintf(stderr, "lockctl: --timeout wants seconds > 0 or 'none'\n");
            return -1;
        } else {
            o->timeout_s = v;
        }
        break;
    case O_WAIT: case O_KILL_AFTER:
        if (parse_num(arg, &v) || v < 0 || v > 1e9) {
            fprintf(stderr, "lockctl: --%s wants seconds >= 0\n", opt_name(ch));
            return -1;
        }
        if (ch == O_WAIT)
            o->wait_s = v;
        else
            o->kill_after_s = v;
        break;
    case O_SIGNAL: case O_PREEMPT_SIGNAL: {
        int sig = parse_signal(arg);
        if (sig < 0) {
            fprintf(stderr, "lockctl: --%s: unknown signal '%s' (a name like TERM, SIGINT, "
                            "usr1, or a number)\n", opt_name(ch), arg);
            return -1;
        }
        if (ch == O_SIGNAL)
            o->signal_no = sig;
        else
            o->preempt_signal = sig;
        break;
    }
    case O_LIMIT: case O_COUNT: case O_CALL_TIMEOUT: case O_MARGIN:
        if (parse_num(arg, &v) || v < 0 || v > 1e9 || v != (long)v) {
            fprintf(stderr, "lockctl: --%s wants a whole number >= 0\n", opt_name(ch));
            return -1;
        }
        if (ch == O_LIMIT) o->limit = (int)v;
        else if (ch == O_COUNT) o->count = (int)v;
        else if (ch == O_MARGIN) o->safety_margin_ms = (long)v;
        else o->timeout_ms = (long)v;
        break;
    default:
        return -1;
    }
    return 0;
}

/* Parses argv[1..argc). global: the options before the command, so it
 * stops at the first operand (the command's name, at argv[optind]).
 * Otherwise getopt moves the operands to the end: argv[optind..argc).
 * Goes on after an error (to find the command, whose usage code then
 * applies) and returns -1 if there was one. */
static int parse_opts(struct opts *o, int argc, char **argv, int global)
{
    int ch, bad = 0;
    optind = 0;     /* GNU getopt: full reset, for a second argv */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, global ? "+:hj" : ":hj", long_opts, NULL)) != -1) {
        if (ch == '?') {
            fprintf(stderr, "lockctl: unknown option '%s'\n", argv[optind - 1]);
            bad = 1;
        } else if (ch == ':') {
            fprintf(stderr, "lockctl: option '%s' needs a value\n", argv[optind - 1]);
            bad = 1;
        } else if (set_opt(o, ch, optarg) < 0) {
            bad = 1;
        }
    }
    return bad ? -1 : 0;
}

/* ---- connection settings ---- */

static const char *env_or(const char *given, const char *var)
{
    if (given)
        return given;
    const char *v = getenv(var);
    return v && *v ? v : NULL;
}

static const char *broker_url(const struct opts *o)
{
    const char *u = env_or(o->url, "DEVLOCK_URL");
    return u ? u : "http://localhost:60620";
}

/* The options object of every client and watch: URL, token, user, TLS,
 * timeouts. usage_rc: the exit code of a bad setting (2, or 122 for run).
 * Returns 0 with *out set, or the exit code (message printed). */
static int make_opts(const struct opts *o, lc_opts **out, int usage_rc)
{
    lc_opts *lo = NULL;
    *out = NULL;
    if (lc_opts_new(&lo) != LC_OK) {
        fprintf(stderr, "lockctl: out of memory\n");
        return 1;
    }
    const char *url = broker_url(o);
    if (lc_opts_set_str(lo, LC_OPT_URL, url) != LC_OK) {
        fprintf(stderr, "lockctl: bad broker URL '%s' (http://HOST:PORT or https://HOST:PORT)\n", url);
        lc_opts_free(lo);
        return usage_rc;
    }
    struct { lc_opt key; const char *value; } strs[] = {
        {LC_OPT_TOKEN, env_or(o->token, "DEVLOCK_TOKEN")},
        {LC_OPT_USER_ID, o->user},
        {LC_OPT_CLIENT_NAME, o->name ? o->name : "lockctl"},
        /* unset: the library's default, $SSL_CERT_FILE, $CURL_CA_BUNDLE, the system's */
        {LC_OPT_CA_FILE, env_or(o->cacert, "DEVLOCK_CACERT")},
        {LC_OPT_CA_PATH, o->capath},
        {LC_OPT_CERT_FILE, o->cert},
        {LC_OPT_KEY_FILE, o->cert_key},
    };
    lc_status st = LC_OK;
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]) && st == LC_OK; i++)
        if (strs[i].value)
            st = lc_opts_set_str(lo, strs[i].key, strs[i].value);
    if (st == LC_OK && o->timeout_ms > 0)
        st = lc_opts_set_long(lo, LC_OPT_TIMEOUT_MS, o->timeout_ms);
    if (st == LC_OK && o->safety_margin_ms >= 0)
        st = lc_opts_set_long(lo, LC_OPT_SAFETY_MARGIN_MS, o->safety_margin_ms);
    if (st != LC_OK) {
        fprintf(stderr, "lockctl: cannot set the client's options: %s\n", lc_strerror(st));
        lc_opts_free(lo);
        return st == LC_ERR_NOMEM ? 1 : usage_rc;
    }
    *out = lo;
    return 0;
}

static int client_open_rc(const struct opts *o, lc_client **c, int usage_rc)
{
    lc_opts *lo;
    int rc = make_opts(o, &lo, usage_rc);
    if (rc)
        return rc;
    lc_status st = lc_client_new_opts(lo, c);
    lc_opts_free(lo);
    if (st != LC_OK) {
        fprintf(stderr, "lockctl: cannot create a client for %s: %s\n", broker_url(o), lc_strerror(st));
        return st == LC_ERR_BAD_REQUEST ? usage_rc : lc_status_exit_code(st);
    }
    return 0;
}

static int client_open(const struct opts *o, lc_client **c)
{
    return client_open_rc(o, c, EXIT_USAGE);
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

/* ---- reservations ----
 *
 * TIME (--from, --to): an RFC 3339 time (2026-12-07T22:00:00Z, with a
 * fraction or a +hh:mm offset), "now", or now plus or minus a duration made
 * of number+unit groups, units s m h d w: "+30m", "+2h", "+1d", "-1h30m". */

/* TIME into *us (now_us: what "now" is); -1 (message printed) if bad. */
static int parse_when(const char *opt, const char *s, int64_t now_us, int64_t *us)
{
    if (!strcmp(s, "now")) {
        *us = now_us;
        return 0;
    }
    if (*s == '+' || *s == '-') {
        int sign = *s == '-' ? -1 : 1;
        const char *p = s + 1;
        int64_t total = 0;
        int groups = 0;
        while (*p) {
            char *end;
            errno = 0;
            long long n = strtoll(p, &end, 10);
            if (errno || end == p || n < 0 || n > 100000000)
                break;
            int64_t unit;
            switch (*end) {
            case 's': unit = 1; break;
            case 'm': unit = 60; break;
            case 'h': unit = 3600; break;
            case 'd': unit = 86400; break;
            case 'w': unit = 7 * 86400; break;
            default: unit = 0; break;
            }
            if (!unit)
                break;
            total += (int64_t)n * unit;
            groups++;
            p = end + 1;
        }
        if (groups && !*p && total <= 20LL * 366 * 86400) {
            *us = now_us + sign * total * 1000000;
            return 0;
        }
    } else if (lc_time_parse(s, us) == LC_OK) {
        return 0;
    }
    fprintf(stderr, "lockctl: --%s '%s': not a time (RFC 3339 like 2026-12-07T22:00:00Z, or now, "
                    "+30m, +2h, +1d, -1h30m)\n", opt, s);
    return -1;
}

static int64_t wall_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* "2026-12-07T22:00:00Z" (to the second) into buf; "-" for 0. */
static const char *short_time(int64_t us, char *buf, size_t len)
{
    if (!us) {
        snprintf(buf, len, "-");
        return buf;
    }
    lc_time_format(us, buf, len);
    char *dot = strchr(buf, '.');
    if (dot && (size_t)(dot - buf) + 2 <= len)
        strcpy(dot, "Z");
    return buf;
}

/* "motor1,motor2" into buf (cut with "..." if long). */
static const char *device_list(const lc_booking *b, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < b->n_devices; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? "," : "", b->device_names[i]);
        if (n < 0 || (size_t)n >= len - used) {
            if (len > 4)
                strcpy(buf + len - 4, "...");
            break;
        }
        used += (size_t)n;
    }
    return buf;
}

/* --json of book, cancel, move, bookings ID: the broker's answer's shape */
static void print_booking_json(const lc_booking *b)
{
    printf("{\"success\":true,\"reservation\":%s,\"bumped\":[", b->json);
    for (size_t i = 0; i < b->n_bumped; i++) {
        printf("%s", i ? "," : "");
        json_str(stdout, b->bumped[i]);
    }
    printf("]}\n");
}

static void print_booking(const lc_booking *b)
{
    char t1[40], t2[40];
    printf("booking %s\n", b->id);
    if (b->lock_key)
        printf("lock_key %s\n", b->lock_key);
    printf("state %s\n", or_dash(b->state));
    for (size_t i = 0; i < b->n_devices; i++)
        printf("device %s\n", b->device_names[i]);
    printf("from %s\nto %s\n", short_time(b->start_us, t1, sizeof(t1)), short_time(b->end_us, t2, sizeof(t2)));
    for (size_t i = 0; i < b->n_bumped; i++)
        printf("bumped %s\n", b->bumped[i]);
}

static void print_booking_header(void)
{
    printf("%-8s %-24s %-12s %-16s %-20s %-20s %s\n", "ID", "DEVICES", "USER", "TYPE", "START", "END",
           "STATE");
}

static void print_booking_row(const lc_booking *b)
{
    char devs[25], t1[40], t2[40];
    printf("%-8s %-24s %-12s %-16s %-20s %-20s %s\n", b->id, device_list(b, devs, sizeof(devs)),
           or_dash(b->user_id), or_dash(lc_lock_type_name(b->type)),
           short_time(b->start_us, t1, sizeof(t1)), short_time(b->end_us, t2, sizeof(t2)),
           or_dash(b->state));
}

static int cmd_book(struct opts *o, int argc, char **argv)
{
    if (argc < 1 || !o->to) {
        fprintf(stderr, "lockctl book: needs DEVICE... and --to TIME (and --from TIME, default now)\n");
        return EXIT_USAGE;
    }
    int64_t now = wall_now_us(), start = now, end = 0;
    if ((o->from && parse_when("from", o->from, now, &start)) || parse_when("to", o->to, now, &end))
        return EXIT_USAGE;
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    lc_booking_request r;
    memset(&r, 0, sizeof(r));
    if (argc == 1) {
        r.device_name = argv[0];
    } else {
        r.device_names = (const char *const *)argv;
        r.n_devices = (size_t)argc;
    }
    r.type = o->type;
    r.user_id = o->user;
    r.start_us = start;
    r.end_us = end;
    r.reason = o->reason;
    r.plan_uid = o->plan;
    r.request_id = o->request_id;
    lc_booking *b = NULL;
    lc_status st = lc_book(c, &r, &b);
    if (st != LC_OK)
        rc = fail(c, st, "book");
    else if (o->json)
        print_booking_json(b);
    else
        print_booking(b);
    lc_booking_free(b);
    lc_client_free(c);
    return rc;
}

static int cmd_bookings(struct opts *o, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "lockctl bookings: at most one booking ID\n");
        return EXIT_USAGE;
    }
    int64_t now = wall_now_us();
    lc_booking_query q;
    memset(&q, 0, sizeof(q));
    if ((o->from && parse_when("from", o->from, now, &q.from_us)) ||
        (o->to && parse_when("to", o->to, now, &q.to_us)))
        return EXIT_USAGE;
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    if (argc == 1) {
        lc_booking *b = NULL;
        lc_status st = lc_booking_get(c, argv[0], &b);
        if (st != LC_OK)
            rc = fail(c, st, "bookings");
        else if (o->json)
            print_booking_json(b);
        else {
            print_booking_header();
            print_booking_row(b);
        }
        lc_booking_free(b);
        lc_client_free(c);
        return rc;
    }
    q.device = o->device;
    q.user = o->user;
    q.state = o->state;
    q.limit = o->limit;
    /* --limit N: one page of N; otherwise every page (at most 100 of the
     * broker's default size) */
    lc_booking_list *pages[100];
    size_t n_pages = 0, total = 0;
    lc_status st = LC_OK;
    const char *cursor = NULL;
    do {
        q.cursor = cursor;
        st = lc_bookings(c, &q, &pages[n_pages]);
        if (st != LC_OK)
            break;
        total += lc_booking_list_count(pages[n_pages]);
        cursor = lc_booking_list_next_cursor(pages[n_pages]);
        n_pages++;
    } while (cursor && !o->limit && n_pages < sizeof(pages) / sizeof(pages[0]));
    if (st != LC_OK) {
        rc = fail(c, st, "bookings");
    } else if (o->json) {
        printf("{\"reservations\":[");
        for (size_t p = 0, k = 0; p < n_pages; p++)
            for (size_t i = 0; i < lc_booking_list_count(pages[p]); i++)
                printf("%s%s", k++ ? "," : "", lc_booking_list_get(pages[p], i)->json);
        printf("],\"count\":%zu,\"next_cursor\":", total);
        json_str(stdout, n_pages ? lc_booking_list_next_cursor(pages[n_pages - 1]) : NULL);
        printf("}\n");
    } else {
        print_booking_header();
        for (size_t p = 0; p < n_pages; p++)
            for (size_t i = 0; i < lc_booking_list_count(pages[p]); i++)
                print_booking_row(lc_booking_list_get(pages[p], i));
    }
    for (size_t p = 0; p < n_pages; p++)
        lc_booking_list_free(pages[p]);
    lc_client_free(c);
    return rc;
}

static int cmd_cancel(struct opts *o, int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "lockctl cancel: needs exactly one booking ID\n");
        return EXIT_USAGE;
    }
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    lc_booking *b = NULL;
    lc_status st = lc_booking_cancel(c, argv[0], &b);
    if (st != LC_OK)
        rc = fail(c, st, "cancel");
    else if (o->json)
        print_booking_json(b);
    else
        printf("cancelled %s (%s)\n", b->id, or_dash(b->state));
    lc_booking_free(b);
    lc_client_free(c);
    return rc;
}

static int cmd_move(struct opts *o, int argc, char **argv)
{
    if (argc != 1 || (!o->from && !o->to)) {
        fprintf(stderr, "lockctl move: needs one booking ID and --from TIME and/or --to TIME\n");
        return EXIT_USAGE;
    }
    int64_t now = wall_now_us(), start = 0, end = 0;
    if ((o->from && parse_when("from", o->from, now, &start)) ||
        (o->to && parse_when("to", o->to, now, &end)))
        return EXIT_USAGE;
    lc_client *c;
    int rc = client_open(o, &c);
    if (rc)
        return rc;
    lc_booking *b = NULL;
    lc_status st = lc_booking_move(c, argv[0], start, end, &b);
    char t1[40], t2[40];
    if (st != LC_OK)
        rc = fail(c, st, "move");
    else if (o->json)
        print_booking_json(b);
    else
        printf("moved %s: from %s to %s\n", b->id, short_time(b->start_us, t1, sizeof(t1)),
               short_time(b->end_us, t2, sizeof(t2)));
    lc_booking_free(b);
    lc_client_free(c);
    return rc;
}

/* ---- watch ---- */

/* The main thread blocks on this pipe; a signal, the last wanted event or
 * a failure that ends the watch writes a byte to it. */
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
    int done;       /* atomic */
    int failed;     /* atomic: the lc_status that ends the watch, 0: none */
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

/* Every failed connect, from the watch's thread. Permanent ones (401, 403,
 * TLS) end the watch - the library has stopped; transient ones (refused,
 * timeout, 503) are retried by the library, unless --exit-on-error. */
static void watch_error(lc_status st, int permanent, const char *detail, void *ud)
{
    struct watch_state *s = ud;
    int ends = permanent || s->o->exit_on_error;
    fprintf(stderr, "lockctl: watch: %s; %s\n", detail && *detail ? detail : lc_strerror(st),
            permanent ? "giving up" : ends ? "exiting (--exit-on-error)" : "retrying");
    if (ends) {
        int none = 0;
        if (__atomic_compare_exchange_n(&s->failed, &none, (int)st, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST)) {
            ssize_t n = write(wake_fd[1], "e", 1);
            (void)n;
        }
    }
}

static int cmd_watch(struct opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc) {
        fprintf(stderr, "lockctl watch: takes no arguments\n");
        return EXIT_USAGE;
    }
    if (pipe2(wake_fd, O_CLOEXEC) != 0) {
        fprintf(stderr, "lockctl watch: pipe: %s\n", strerror(errno));
        return 1;
    }
    lc_opts *lo;
    int rc = make_opts(o, &lo, EXIT_USAGE);
    if (rc)
        return rc;
    struct watch_state s = {o, 0, 0, 0};
    lc_opts_set_error_cb(lo, watch_error, &s);
    lc_watch_callbacks cbs = {watch_event, NULL, watch_connection, &s};
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    lc_watch *w = NULL;
    lc_status st = lc_watch_new_opts(lo, &cbs, &w);
    lc_opts_free(lo);
    if (st != LC_OK) {
        fprintf(stderr, "lockctl: watch: %s\n", lc_strerror(st));
        return lc_status_exit_code(st);
    }
    /* Woken by the pipe; the status is also polled, in case the watch gave
     * up without a callback (the header promises one, this costs little). */
    while (lc_watch_status(w) == LC_OK) {
        struct pollfd p = {wake_fd[0], POLLIN, 0};
        if (poll(&p, 1, 250) > 0)
            break;
    }
    /* a permanent failure: the library's reason first, the callback's as a fallback */
    st = lc_watch_status(w);
    if (st == LC_OK)
        st = (lc_status)__atomic_load_n(&s.failed, __ATOMIC_SEQ_CST);
    lc_watch_free(w);
    return st == LC_OK ? 0 : lc_status_exit_code(st);
}

/* ---- run ----
 *
 * Like timeout(1) and `consul lock`: CMD runs in its own process group, so
 * that a signal reaches everything it started (a shell's children too).
 * The keepalive (its own thread) only reports - loss and preemption warnings
 * go through a pipe to the main loop, which alone knows the child and sends
 * the signals. SIGTERM, SIGINT, SIGHUP and SIGCHLD are blocked before the
 * keepalive thread and the child exist (both inherit that mask; the child
 * restores the original one before exec) and are read from a signalfd, so
 * no signal arrives while the child's pid is not yet known. lockctl is
 * also the subreaper of CMD's descendants: when CMD dies, its orphans
 * become lockctl's children, and lockctl can tell when the whole group is
 * gone. */

struct run_state {
    int wake[2];                /* callbacks -> main loop */
    pthread_mutex_t mu;         /* guards the fields below */
    int lost;                   /* 1 once on_lost ran */
    char lost_detail[512];
    int preempt;                /* a warning not yet handled */
    double grace_s;
    char requested_by[256];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_wake(struct run_state *r)
{
    ssize_t n = write(r->wake[1], "x", 1);
    (void)n;    /* the pipe is non-blocking: full means a wake-up is pending anyway */
}

static void run_lost(const lc_lock *l, lc_status st, const char *detail, void *ud)
{
    (void)l;
    struct run_state *r = ud;
    pthread_mutex_lock(&r->mu);
    r->lost = 1;
    snprintf(r->lost_detail, sizeof(r->lost_detail), "%s",
             detail && *detail ? detail : lc_strerror(st));
    pthread_mutex_unlock(&r->mu);
    run_wake(r);
}

static void run_preempt(const lc_lock *l, double grace_s, const char *requested_by, void *ud)
{
    (void)l;
    struct run_state *r = ud;
    pthread_mutex_lock(&r->mu);
    r->preempt = 1;
    r->grace_s = grace_s;
    snprintf(r->requested_by, sizeof(r->requested_by), "%s", requested_by ? requested_by : "?");
    pthread_mutex_unlock(&r->mu);
    run_wake(r);
}

static int run_acquire_rc(lc_status st)
{
    switch (lc_status_exit_code(st)) {
    case 4: return RUN_BUSY;
    case 3: return RUN_UNREACHABLE;
    default: return RUN_ACQUIRE_FAILED;
    }
}

/* Reaps every child that has ended (CMD and, as subreaper, its orphans);
 * sets *ws and returns 1 when CMD itself was among them. */
static int reap(pid_t pid, int *ws)
{
    int st, got = 0;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0)
        if (r == pid) {
            *ws = st;
            got = 1;
        }
    return got;
}

static void drain(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

/* Passes the signals lockctl received on to CMD's group (SIGCHLD only wakes). */
static void forward_signals(int sfd, pid_t pgid)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        if (si.ssi_signo != SIGCHLD)
            kill(-pgid, (int)si.ssi_signo);
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
        fprintf(stderr, "lockctl run: usage: lockctl run [OPTIONS] DEVICE... -- CMD [ARG...]\n");
        return RUN_USAGE;
    }
    int ndev = dd;
    char **devs = argv, **cmd = argv + dd + 1;
    if (ndev < 1 || !cmd[0]) {
        fprintf(stderr, "lockctl run: needs at least one DEVICE and a command after --\n");
        return RUN_USAGE;
    }
    lc_client *c;
    int rc = client_open_rc(o, &c, RUN_USAGE);
    if (rc)
        return rc == RUN_USAGE ? rc : RUN_ACQUIRE_FAILED;
    if (o->timeout_s == 0)
        o->timeout_s = 30;     /* a short lease, renewed while CMD runs */
    lc_request r;
    fill_request(o, &r, devs, ndev);
    lc_lock *l = NULL;
    lc_status st = lc_acquire(c, &r, &l);
    if (st != LC_OK) {
        rc = report(c, st, "run: acquire", run_acquire_rc(st));
        lc_client_free(c);
        return rc;
    }
    const char *dev = lc_lock_device(l);
    int sig = o->signal_no > 0 ? o->signal_no : SIGTERM;
    char sigbuf[32], sigbuf2[32];

    struct run_state rs;
    memset(&rs, 0, sizeof(rs));
    rs.wake[0] = rs.wake[1] = -1;
    pthread_mutex_init(&rs.mu, NULL);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    int ep[2] = {-1, -1};       /* exec error: errno from the child, or EOF at exec */
    lc_keepalive *ka = NULL;
    if (sfd < 0 || pipe2(rs.wake, O_CLOEXEC | O_NONBLOCK) != 0 || pipe2(ep, O_CLOEXEC) != 0) {
        fprintf(stderr, "lockctl run: %s\n", strerror(errno));
        rc = RUN_ACQUIRE_FAILED;     /* CMD did not run */
        goto release;
    }
    /* always, also without expiry: the keepalive then checks the lock with
     * validate, so a force-release reaches CMD too */
    lc_keepalive_callbacks cbs = {run_lost, run_preempt, &rs};
    st = lc_keepalive_start_cb(c, l, 0, &cbs, &ka);
    if (st != LC_OK) {
        rc = report(c, st, "run: keepalive", RUN_ACQUIRE_FAILED);
        goto release;
    }
    /* orphans of CMD's group become our children, see reap() */
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    char fence[32];
    snprintf(fence, sizeof(fence), "%lld", (long long)lc_lock_fence(l));
    setenv("DEVLOCK_LOCK_KEY", lc_lock_key(l), 1);
    setenv("DEVLOCK_FENCE", fence, 1);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* only async-signal-safe calls between fork and exec */
        setpgid(0, 0);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        execvp(cmd[0], cmd);
        int e = errno;
        ssize_t n = write(ep[1], &e, sizeof(e));
        (void)n;
        _exit(e == ENOENT ? RUN_NOTFOUND : RUN_NOEXEC);
    }
    if (pid < 0) {
        fprintf(stderr, "lockctl run: fork: %s\n", strerror(errno));
        rc = RUN_ACQUIRE_FAILED;
        lc_keepalive_stop(ka);
        ka = NULL;
        goto release;
    }
    setpgid(pid, pid);      /* also here: no window in which the group does not exist */
    close(ep[1]);
    ep[1] = -1;
    int exec_errno = 0, ws = 0;
    ssize_t n;
    while ((n = read(ep[0], &exec_errno, sizeof(exec_errno))) < 0 && errno == EINTR)
        ;
    if (n == (ssize_t)sizeof(exec_errno)) {
        fprintf(stderr, "lockctl run: cannot run '%s': %s\n", cmd[0], strerror(exec_errno));
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
            ;
        lc_keepalive_stop(ka);
        ka = NULL;
        rc = exec_errno == ENOENT ? RUN_NOTFOUND : RUN_NOEXEC;
        goto release;
    }

    /* CMD runs: wait for it, pass signals on, act on loss and warnings. */
    int64_t kill_at = 0;        /* when SIGKILL is due (monotonic ms); 0: not */
    int signalled = 0, exited = 0, killed = 0;
    while (!exited) {
        int wait_ms = -1;
        if (kill_at) {
            int64_t left = kill_at - now_ms();
            wait_ms = left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
        }
        struct pollfd p[2] = {{sfd, POLLIN, 0}, {rs.wake[0], POLLIN, 0}};
        if (poll(p, 2, wait_ms) < 0 && errno != EINTR)
            break;
        forward_signals(sfd, pid);
        exited = reap(pid, &ws);
        drain(rs.wake[0]);
        char detail[512] = "", by[256] = "";
        int lost_now = 0, warn = 0;
        double grace = 0;
        pthread_mutex_lock(&rs.mu);
        if (rs.lost && !signalled) {
            lost_now = signalled = 1;
            memcpy(detail, rs.lost_detail, sizeof(detail));
        }
        if (rs.preempt) {
            warn = 1;
            rs.preempt = 0;
            grace = rs.grace_s;
            memcpy(by, rs.requested_by, sizeof(by));
        }
        pthread_mutex_unlock(&rs.mu);
        if (warn) {
            char sent[80] = "";
            if (o->preempt_signal > 0 && !exited) {
                kill(-pid, o->preempt_signal);
                snprintf(sent, sizeof(sent), "; sent %s to process group %d",
                         signal_str(o->preempt_signal, sigbuf, sizeof(sigbuf)), (int)pid);
            }
            fprintf(stderr, "lockctl: preemption of %s requested by %s: release within %.1f s or "
                            "lose the lock%s\n", dev, by, grace, sent);
        }
        if (lost_now) {
            kill(-pid, sig);
            fprintf(stderr, "lockctl: lock on %s lost: %s; sent %s to process group %d\n", dev,
                    detail, signal_str(sig, sigbuf, sizeof(sigbuf)), (int)pid);
            if (o->kill_after_s > 0 && sig != SIGKILL)
                kill_at = now_ms() + (int64_t)(o->kill_after_s * 1000);
        }
        if (kill_at && now_ms() >= kill_at) {
            kill(-pid, SIGKILL);
            fprintf(stderr, "lockctl: process group %d still running %g s after %s; sent SIGKILL\n",
                    (int)pid, o->kill_after_s, signal_str(sig, sigbuf2, sizeof(sigbuf2)));
            kill_at = 0;
            killed = 1;
        }
    }
    if (kill_at || killed) {
        /* CMD is gone; what is left of its group gets the rest of the
         * kill-after, then SIGKILL. Bounded: a group that got SIGKILL ends. */
        int64_t until = kill_at ? kill_at : now_ms() + 2000;
        while (kill(-pid, 0) == 0 && now_ms() < until) {
            struct pollfd p = {sfd, POLLIN, 0};
            poll(&p, 1, 50);
            forward_signals(sfd, pid);
            reap(pid, &ws);
        }
        if (kill_at && kill(-pid, 0) == 0) {
            kill(-pid, SIGKILL);
            fprintf(stderr, "lockctl: process group %d still running %g s after %s; sent SIGKILL\n",
                    (int)pid, o->kill_after_s, signal_str(sig, sigbuf2, sizeof(sigbuf2)));
        }
    }
    int cmd_rc = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    st = lc_keepalive_stop(ka);
    ka = NULL;
    pthread_mutex_lock(&rs.mu);
    int lost = rs.lost;
    char detail[512];
    memcpy(detail, rs.lost_detail, sizeof(detail));
    pthread_mutex_unlock(&rs.mu);
    if (signalled) {
        rc = RUN_LOST;
        fprintf(stderr, "lockctl: %s %s %d after the lock was lost\n", cmd[0],
                WIFEXITED(ws) ? "exited with status" : "was killed by signal",
                WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
    } else if (lost || st == LC_ERR_LOST) {
        /* between CMD's end and the keepalive's stop: it may have ended earlier on the broker */
        fprintf(stderr, "lockctl: lock on %s lost as %s ended: %s\n", dev, cmd[0],
                lost ? detail : lc_strerror(LC_ERR_LOST));
        rc = RUN_LOST;
    } else {
        rc = cmd_rc;
        st = lc_release(c, l);
        if (st == LC_ERR_NOT_FOUND || st == LC_ERR_FORBIDDEN) {
            /* ended (or taken by another) before we released: when, we cannot know */
            fprintf(stderr, "lockctl: lock on %s was gone when %s ended, so it may have ended "
                            "while %s ran: %s\n", dev, cmd[0], cmd[0], lc_errmsg(c));
            rc = RUN_LOST;
        } else if (st != LC_OK) {
            (void)report(c, st, "run: release (the lease may still run)", RUN_RELEASE_FAILED);
            rc = RUN_RELEASE_FAILED;
        }
    }
    goto done;

release:
    st = lc_release(c, l);
    if (st != LC_OK && st != LC_ERR_NOT_FOUND)
        (void)report(c, st, "run: release", rc);
done:
    if (sfd >= 0)
        close(sfd);
    for (int i = 0; i < 2; i++) {
        if (rs.wake[i] >= 0)
            close(rs.wake[i]);
        if (ep[i] >= 0)
            close(ep[i]);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_destroy(&rs.mu);
    lc_lock_free(l);
    lc_client_free(c);
    return rc;
}

/* ---- help ---- */

static const char global_help[] =
    "global options (before the command, or among its options; --opt VALUE or --opt=VALUE):\n"
    "  --url URL            broker (default $DEVLOCK_URL, else http://localhost:60620)\n"
    "  --token TOKEN        bearer token (default $DEVLOCK_TOKEN)\n"
    "  --user USER          user_id (default $USER)\n"
    "  --json, -j           machine-readable output (one JSON object per line)\n"
    "  --call-timeout MS    per-call timeout (default 5000)\n"
    "  --cacert FILE        CA bundle (PEM) to trust for https (default $DEVLOCK_CACERT,\n"
    "                       else $SSL_CERT_FILE, $CURL_CA_BUNDLE, the system's)\n"
    "  --capath DIR         directory of hashed CA certificates (default $SSL_CERT_DIR)\n"
    "  --cert FILE          client certificate (PEM) for mutual TLS\n"
    "  --cert-key FILE      its private key (default: in --cert)\n"
    "  --safety-margin MS   stop this long before the lease can end on the broker\n"
    "                       (default max(500, lease/10), at most lease/2)\n"
    "  --version            lockctl's and the library's version\n"
    "  --help, -h           this help\n"
    "exit codes:\n"
    "  0 ok; 1 failed (forbidden, not found, unauthorized, ...); 2 usage or bad request;\n"
    "  3 broker unreachable or unavailable (Redis down) or timed out; 4 busy (lock denied,\n"
    "  or a booking conflict);\n"
    "  5 TLS (certificate not trusted, wrong name, bad client certificate).\n"
    "  run: CMD's own status (128+N if killed by signal N), or 120 lock lost, 121 release\n"
    "  failed, 122 usage, 123 busy, 124 unreachable, 125 other acquire failure,\n"
    "  126 CMD not executable, 127 CMD not found.\n";

static const struct command commands[] = {
    {"acquire", "DEVICE...", "lock one device, or several as one all-or-none group",
     "  --type T  --timeout S|none  --reason R  --plan UID  --wait S  --request-id ID  --name NAME\n"
     "  T: MAINTENANCE, QUEUE_EXECUTING, MANUAL_OPERATOR (default), QUEUE_QUEUED (any case)\n",
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
     "  --count N        exit after N events\n"
     "  --device D       only D's events\n"
     "  --exit-on-error  exit (3) at the first failed connection instead of retrying\n"
     "  Status lines (connected, reconnecting, every failed connection) go to stderr,\n"
     "  events to stdout. Refused or timed-out connections are retried; 401/403 exit 1,\n"
     "  TLS failures exit 5.\n", cmd_watch},
    {"run", "DEVICE... -- CMD [ARG...]",
     "hold the locks while CMD runs, then release; exit with CMD's status",
     "  --type T  --timeout S|none (lease, default 30, renewed)  --reason R  --plan UID  --wait S\n"
     "  --signal SIG          sent to CMD's process group when a lock is lost (default TERM;\n"
     "                        a name like TERM, SIGINT, usr1, or a number)\n"
     "  --kill-after S        then SIGKILL to the group after S seconds (default 5; 0: never)\n"
     "  --preempt-signal SIG  sent to the group when a higher priority asks for a device\n"
     "                        (default: none; the warning is printed on stderr either way)\n"
     "  The devices are locked as one all-or-none group and kept while CMD runs (renewed,\n"
     "  or checked every second without expiry); they are released when CMD ends. CMD runs\n"
     "  in its own process group; SIGTERM, SIGINT and SIGHUP to lockctl are passed on to it.\n"
     "  If a lock is lost (preempted, expired, force-released, or no renew confirmed in\n"
     "  time), the group gets the signal and lockctl exits 120.\n"
     "  CMD sees DEVLOCK_LOCK_KEY and DEVLOCK_FENCE in its environment.\n",
     cmd_run},
    {"history", "", "lock history, oldest first",
     "  --since ID  --limit N  --device D  --plan UID\n", cmd_history},
    {"health", "", "is the broker ready (exit 0) or not (3)", "", cmd_health},
    {"book", "DEVICE... --to TIME", "reserve devices for a window (a lock from --from to --to)",
     "  --from TIME  --to TIME  --type T  --reason R  --plan UID  --request-id ID\n"
     "  Prints the booking's id and the lock_key its lock will have. Refused (exit 4) when\n"
     "  the window overlaps a booking of equal or higher priority on any of the devices;\n"
     "  lower ones are bumped (listed as \"bumped ID\").\n"
     "  TIME: RFC 3339 (2026-12-07T22:00:00Z, a +hh:mm offset allowed), now (the default\n"
     "  of --from), or now plus or minus a duration: +30m, +2h, +1d, -1h30m (s m h d w).\n",
     cmd_book},
    {"bookings", "[ID]", "list bookings (current and future by default), or one",
     "  --device D  --user U  --from TIME  --to TIME  --state S[,S...]  --limit N\n"
     "  A table: ID, DEVICES, USER, TYPE, START, END, STATE (times in UTC). Windows that\n"
     "  overlap [--from, --to); --from defaults to now. S: booked, waiting, active, ended,\n"
     "  cancelled, bumped. Every page is fetched unless --limit N asks for one page of N.\n",
     cmd_bookings},
    {"cancel", "ID", "cancel a booking (an active one also releases its lock)", "", cmd_cancel},
    {"move", "ID --from T|--to T", "move or extend a booking into free time",
     "  --from TIME  --to TIME  (TIME as for book; relative forms count from now)\n"
     "  Once the window has started only --to can change.\n", cmd_move},
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

static void print_version(void)
{
    int major, minor, patch;
    const char *lib = lc_version(&major, &minor, &patch);
    printf("lockctl %s\nliblockclient %s%s\n", LC_VERSION_STRING, lib,
           major != LC_VERSION_MAJOR || minor < LC_VERSION_MINOR ? " (older than lockctl's header!)" : "");
}

int main(int argc, char **argv)
{
    struct opts o;
    memset(&o, 0, sizeof(o));
    o.safety_margin_ms = -1;
    o.kill_after_s = 5;
    /* global options, up to the command's name */
    int bad = parse_opts(&o, argc, argv, 1) < 0;
    int i = optind;
    const struct command *cmd = NULL;
    if (i < argc)
        for (const struct command *c = commands; c->name; c++)
            if (!strcmp(c->name, argv[i]))
                cmd = c;
    int usage_rc = cmd && cmd->run == cmd_run ? RUN_USAGE : EXIT_USAGE;
    if (bad) {
        fprintf(stderr, "try 'lockctl --help'\n");
        return usage_rc;
    }
    if (!cmd && (o.help || o.version)) {
        if (o.help)
            usage(stdout);
        else
            print_version();
        return 0;
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
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
    if (parse_opts(&o, dd, sub_argv, 0) < 0) {
        fprintf(stderr, "try 'lockctl %s --help'\n", cmd->name);
        return usage_rc;
    }
    if (o.help) {
        command_help(cmd);
        return 0;
    }
    if (o.version) {
        print_version();
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
