/* lockclient.h - liblockclient, the C client of the devlock broker (devlockd).
 *
 * This header is the reference manual. Conventions that hold everywhere:
 *
 * - Every call that can fail returns an lc_status; objects come back through
 *   out-parameters (set to NULL on failure). LC_OK is 0.
 * - Pointers are marked *borrowed* (the library only reads it during the
 *   call, or as long as stated, and keeps no reference), *copied* (the
 *   library takes its own copy during the call) or *caller frees with X*.
 *   Every `_free(NULL)` is a no-op.
 * - The library never prints, never aborts and never exits: out of memory is
 *   LC_ERR_NOMEM; diagnostics go to the optional log callback.
 * - Blocking: every network call blocks for at most the client's timeout_ms
 *   (plus the request's wait for lc_acquire). An unreachable broker
 *   (connection refused, no route) or an HTTP 503 (broker up, Redis down) is
 *   LC_ERR_UNAVAILABLE, reported as soon as the connection fails; a call
 *   that runs out of time is LC_ERR_TIMEOUT.
 *
 * Threads (each function below repeats its own rule under "Thread:"):
 * - An lc_client may be used from several threads at once; its HTTP calls
 *   are serialised by a mutex inside the client (one connection, kept alive
 *   and reused), so a call may wait for another thread's call first. For
 *   parallel calls use one client per thread.
 * - lc_errmsg() is per client: with several threads on one client the text
 *   may be another thread's. Read it on the thread that made the call, before
 *   its next call, when the client is not shared.
 * - lc_lock, lc_lock_list and lc_event_list objects are not changed by the
 *   library after they are returned, except: lc_renew on that lock, and a
 *   keepalive updating its lock's lc_lock_expires_us / lc_lock_lost (atomics,
 *   safe to read from any thread).
 * - Callbacks run on library threads (the keepalive thread, the watch
 *   thread), never while the library holds an internal lock: they may call
 *   any lc_ function except stopping/freeing the very object that calls them.
 *
 * Build: `cc app.c $(pkg-config --cflags --libs lockclient)`.
 */
#ifndef LOCKCLIENT_H
#define LOCKCLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version this header belongs to; lc_version() gives the library's. */
#define LC_VERSION_MAJOR 1
#define LC_VERSION_MINOR 2
#define LC_VERSION_PATCH 0
#define LC_VERSION_STRING "1.2.0"

/* Marks the exported functions (the library is built with hidden
 * visibility; its version script exports lc_* only). */
#if defined(__GNUC__) && __GNUC__ >= 4
#define LC_API __attribute__((visibility("default")))
#else
#define LC_API
#endif

/* ---- status codes --------------------------------------------------------
 * One row per row of the project's error table (common/errors.def), in the
 * same order; a compile-time check in the library keeps them in step. The
 * lockctl exit code of each is in brackets. */
typedef enum lc_status {
    LC_OK = 0,               /* [0] success */
    LC_ERR_BAD_REQUEST,      /* [2] malformed request (400), or a bad argument to a call */
    LC_ERR_INVALID_JSON,     /* [2] the broker could not read the body */
    LC_ERR_INVALID_DEVICE,   /* [2] invalid device name (1-128 of A-Z a-z 0-9 _ . : -) */
    LC_ERR_INVALID_TIMEOUT,  /* [2] timeout must be a positive number of seconds */
    LC_ERR_VALIDATION,       /* [2] a field is missing or has the wrong type (422) */
    LC_ERR_UNAUTHORIZED,     /* [1] missing or invalid token (401) */
    LC_ERR_FORBIDDEN,        /* [1] wrong lock_key/user, or role (403) */
    LC_ERR_NOT_FOUND,        /* [1] no such lock / device / route (404) */
    LC_ERR_METHOD,           /* [2] method not allowed (405) */
    LC_ERR_TOO_LARGE,        /* [2] payload too large (413) */
    LC_ERR_TOO_DEEP,         /* [2] JSON nesting too deep */
    LC_ERR_DENIED,           /* [4] held by an equal or higher priority (or a wait ran out) */
    LC_ERR_UNAVAILABLE,      /* [3] broker unreachable, or it answered 503 (Redis down) */
    LC_ERR_TIMEOUT,          /* [3] the call ran out of time */
    LC_ERR_RESUME_GAP,       /* [1] events since that id are no longer kept */
    LC_ERR_UNKNOWN_TYPE,     /* [2] unknown message type */
    LC_ERR_NOMEM,            /* [1] out of memory */
    LC_ERR_INTERNAL,         /* [1] internal error (500) */
    LC_ERR_IO,               /* [3] connection failed */
    LC_ERR_PROTOCOL,         /* [1] the broker's answer could not be understood */
    LC_ERR_LOST,             /* [1] the lock was lost (preempted, expired, force-released) */
    LC_ERR_UNKNOWN_DEVICE,   /* [1] device is not in the catalogue */
    LC_ERR_LENGTH_REQUIRED,  /* [2] the broker wants a Content-Length (411) */
    LC_ERR_REQUEST_TIMEOUT,  /* [3] the broker did not get the whole request in time (408) */
    LC_ERR_TOO_MANY,         /* [4] connection limit reached */
    LC_ERR_UNSUPPORTED_MEDIA, /* [2] the body was not sent as JSON (415) */
    LC_ERR_TLS,              /* [5] TLS failed: certificate not trusted or wrong name, bad
                              * client certificate or key, handshake refused (1.1) */
    LC_ERR_CANCELLED,        /* [1] the operation was cancelled (lc_op_cancel, lc_loop_free) (1.1) */
    LC_ERR_CONFLICT,         /* [4] conflicts with an existing booking (409): the window overlaps
                              * one, or the booking can no longer change (1.2) */
    LC_STATUS_COUNT
} lc_status;

/* Static description of a status ("out of memory"). Never NULL; static
 * storage. Out-of-range values describe LC_ERR_INTERNAL.
 * Thread: any thread. */
LC_API const char *lc_strerror(lc_status status);
/* The wire code of a status ("lock_denied"), as in the broker's JSON
 * "error" field. Never NULL; static storage. Thread: any thread. */
LC_API const char *lc_status_code(lc_status status);
/* The lockctl exit code of a status: 0 ok, 1 failed, 2 usage/bad request,
 * 3 unreachable, 4 busy, 5 TLS. Thread: any thread. */
LC_API int lc_status_exit_code(lc_status status);

/* The library's version at run time ("1.2.0"); major/minor/patch may be
 * NULL. Static storage. Compare with LC_VERSION_* to detect a header/library
 * mismatch. Thread: any thread. (1.1) */
LC_API const char *lc_version(int *major, int *minor, int *patch);

/* ---- lock types --------------------------------------------------------- */
typedef enum lc_lock_type {
    LC_TYPE_DEFAULT = 0,       /* in a request: MANUAL_OPERATOR */
    LC_MAINTENANCE,            /* priority 0 (highest) */
    LC_QUEUE_EXECUTING,        /* priority 1 */
    LC_MANUAL_OPERATOR,        /* priority 2 */
    LC_QUEUE_QUEUED            /* priority 3 */
} lc_lock_type;

/* "MAINTENANCE" etc.; NULL for LC_TYPE_DEFAULT or out of range. Static
 * storage. Thread: any thread. */
LC_API const char *lc_lock_type_name(lc_lock_type type);
/* Inverse of lc_lock_type_name (case-insensitive since 1.1). name borrowed; NULL or
 * unknown gives LC_TYPE_DEFAULT. Thread: any thread. */
LC_API lc_lock_type lc_lock_type_parse(const char *name);

/* ---- client ------------------------------------------------------------- */
typedef struct lc_client lc_client;

/* Log callback: level 0 debug, 1 info, 2 warning, 3 error. msg is borrowed
 * for the call. Called from any thread that makes a call, and from library
 * threads (keepalive, watch); must be thread-safe if those are used. */
typedef void (*lc_log_fn)(int level, const char *msg, void *userdata);

typedef struct lc_options {
    const char *url;        /* copied; "http://host:port[/prefix]", NULL: http://localhost:60620 */
    const char *token;      /* copied; sent as "Authorization: Bearer TOKEN", NULL: none */
    long timeout_ms;        /* per call (connect + answer); <= 0: 5000 */
    const char *user_id;    /* copied; default user for requests, NULL: $USER, else "unknown" */
    const char *client_name;/* copied; sent as lock "client" {host, pid, name}, NULL: not sent */
    lc_log_fn log;          /* optional; NULL: no diagnostics */
    void *log_userdata;     /* borrowed: passed to log, must outlive the client */
} lc_options;

/* ---- options object (1.1) -------------------------------------------------
 * The way to configure clients, watches and loops from 1.1 on: new settings
 * become new lc_opt keys, never new struct fields, so the ABI can grow.
 * lc_options above stays for 1.0 programs (it covers the first six keys). */
typedef struct lc_opts lc_opts;

typedef enum lc_opt {
    /* strings (lc_opts_set_str; copied; NULL restores the default) */
    LC_OPT_URL = 1,          /* "http(s)://host:port[/prefix]"; default http://localhost:60620 */
    LC_OPT_TOKEN,            /* Bearer token; default none */
    LC_OPT_USER_ID,          /* default user; default $USER, else the login name, else "unknown" */
    LC_OPT_CLIENT_NAME,      /* lock "client" name; default not sent */
    LC_OPT_CA_FILE,          /* PEM bundle of CAs to trust for https/wss; default
                              * $SSL_CERT_FILE, else $CURL_CA_BUNDLE, else the system's */
    LC_OPT_CA_PATH,          /* directory of hashed CA certificates; default $SSL_CERT_DIR, else the system's */
    LC_OPT_CERT_FILE,        /* client certificate (PEM) for mutual TLS; default none */
    LC_OPT_KEY_FILE,         /* its private key (PEM); default: CERT_FILE */
    /* numbers (lc_opts_set_long) */
    LC_OPT_TIMEOUT_MS = 100, /* per call (connect + answer); default 5000 */
    LC_OPT_SAFETY_MARGIN_MS, /* self-fencing margin (see "Self-fencing"); default -1: automatic,
                              * max(500 ms, lease / 10), at most lease / 2 */
    LC_OPT_CHECK_INTERVAL_MS,/* how often a keepalive confirms a lock without expiry is still
                              * held (POST /api/lock/validate) and polls for preemption
                              * warnings; default 1000 */
    LC_OPT_SESSION_GRACE_MS  /* the broker's --session-grace, for session locks; default 10000 */
} lc_opt;

/* Error callback: every failed connection or call of the object the options
 * configure, with its status and the reason ("TLS: certificate verify
 * failed: unable to get local issuer certificate", "broker unreachable:
 * Connection refused", "HTTP 401 on WebSocket upgrade"). permanent is 1 when
 * retrying cannot help (401, 403, TLS, bad URL): a watch stops then (see
 * lc_watch_status). detail borrowed for the call. Same threads as lc_log_fn.
 * For a client (and the keepalives started from it): every call that
 * returns an error, LC_ERR_DENIED included, after the call's work and
 * outside the client's mutex, with the text lc_errmsg() gives; permanent
 * for 401, 403, TLS and bad arguments / URL. */
typedef void (*lc_error_fn)(lc_status status, int permanent, const char *detail, void *userdata);

/* *out: caller frees with lc_opts_free. LC_OK or LC_ERR_NOMEM. Thread: any. */
LC_API lc_status lc_opts_new(lc_opts **out);
/* NULL is a no-op. Objects made from the options keep their own copy. */
LC_API void lc_opts_free(lc_opts *opts);
/* Sets a string option (value copied; NULL: default). LC_ERR_BAD_REQUEST for
 * an unknown key, a number key, or a URL that is not http(s)://;
 * LC_ERR_NOMEM. Thread: not concurrently on the same opts. */
LC_API lc_status lc_opts_set_str(lc_opts *opts, lc_opt key, const char *value);
/* Sets a number option. LC_ERR_BAD_REQUEST for an unknown or string key. */
LC_API lc_status lc_opts_set_long(lc_opts *opts, lc_opt key, long value);
/* Log and error callbacks; userdata borrowed (must outlive what is made). */
LC_API lc_status lc_opts_set_log(lc_opts *opts, lc_log_fn fn, void *userdata);
LC_API lc_status lc_opts_set_error_cb(lc_opts *opts, lc_error_fn fn, void *userdata);
/* lc_client_new with an options object (NULL: defaults). opts borrowed. */
LC_API lc_status lc_client_new_opts(const lc_opts *opts, lc_client **out);

/* Creates a client. Does not connect (the first call does; the connection
 * is then kept and reused). opts: borrowed, may be NULL for all defaults;
 * its strings are copied. *out: caller frees with lc_client_free.
 * Returns LC_OK, LC_ERR_NOMEM, LC_ERR_BAD_REQUEST (url not http(s)://, out
 * NULL) or LC_ERR_INTERNAL (libcurl failed to initialise).
 * Does not block. Thread: any thread. */
LC_API lc_status lc_client_new(const lc_options *opts, lc_client **out);
/* Frees a client and closes its connection. No call on it may be running,
 * and no lc_with_lock / guard on it may be in scope (keepalives have their
 * own connection and may outlive it). Does not release any lock held on
 * the broker. NULL is a no-op. Thread: any thread, once no other uses it. */
LC_API void lc_client_free(lc_client *client);
/* Detail text of the client's last failed call: the broker's "detail" or
 * "message" (e.g. the holder of a denied lock), or the transport error
 * (e.g. "broker unreachable: ... Connection refused"). "" after a success.
 * Never NULL. Borrowed: valid until the next call on this client.
 * Thread: see "Threads" above (per client, not per thread). */
LC_API const char *lc_errmsg(const lc_client *client);
/* The user_id this client sends by default. Borrowed, lives as long as the
 * client. Thread: any thread. */
LC_API const char *lc_client_user(const lc_client *client);

/* ---- locks -------------------------------------------------------------- */
typedef struct lc_lock lc_lock;

/* Accessors of a lock (one granted to you, one in a listing, or one in an
 * event). All return values are borrowed from the lock and live until it
 * is freed (or, for lc_lock_expires_at, until lc_renew on it).
 * Thread: any thread, as long as the lock is not being freed or passed to
 * lc_renew concurrently. */
LC_API const char *lc_lock_device(const lc_lock *lock);       /* first (or only) device */
LC_API size_t lc_lock_device_count(const lc_lock *lock);      /* 1, or the group size of a grant */
LC_API const char *lc_lock_device_at(const lc_lock *lock, size_t i); /* NULL if out of range */
LC_API const char *lc_lock_key(const lc_lock *lock);          /* NULL if hidden by the broker */
/* The fencing token of the (first) device: strictly increasing per device
 * over every grant. Pass it to the device server with each command; it can
 * check it with lc_validate_fence. -1 if unknown. Thread: as the accessors
 * above (all accessors below too). */
LC_API int64_t lc_lock_fence(const lc_lock *lock);
LC_API int64_t lc_lock_fence_at(const lc_lock *lock, size_t i);  /* i-th device of a group; -1 */
LC_API const char *lc_lock_expires_at(const lc_lock *lock);   /* RFC 3339 as granted/renewed, NULL: no expiry */
/* Expiry in Unix microseconds, 0: no expiry. Kept current by a keepalive
 * running on this lock (an atomic; any thread may read it). */
LC_API int64_t lc_lock_expires_us(const lc_lock *lock);
/* 1 once a keepalive (or lc_with_lock / the guard) found this lock gone
 * (preempted, expired, force-released); an atomic, any thread. */
LC_API int lc_lock_lost(const lc_lock *lock);
/* Self-fencing (1.1): the CLOCK_BOOTTIME time, in microseconds, until
 * which this holder may still act on the lock: the send time of the last
 * confirmed grant or renew plus the lease, minus the safety margin. The
 * broker cannot end the lease before it (clocks run at the same rate), so
 * a holder that stops by then never overlaps the next one. A keepalive
 * sets lc_lock_lost before it passes. 0: no expiry (or not known).
 * CLOCK_BOOTTIME (Linux) is CLOCK_MONOTONIC that also counts the time the
 * machine was suspended, as the broker's clock does; compare with
 * clock_gettime(CLOCK_BOOTTIME). An atomic; any thread. */
LC_API int64_t lc_lock_deadline_us(const lc_lock *lock);
/* The lease the broker last granted, in seconds (follows a renew by anyone
 * with a new timeout); 0: no expiry. (1.1) */
LC_API double lc_lock_lease_s(const lc_lock *lock);
/* Grace window of a preemption warning (preempt_requested) seen by a
 * keepalive or hold, in seconds; 0 while none was seen. An atomic. (1.1) */
LC_API double lc_lock_preempt_grace_s(const lc_lock *lock);
/* The session id of a session lock; NULL for other locks. (1.1) */
LC_API const char *lc_lock_session_id(const lc_lock *lock);
LC_API lc_lock_type lc_lock_type_of(const lc_lock *lock);
LC_API const char *lc_lock_user(const lc_lock *lock);
LC_API const char *lc_lock_reason(const lc_lock *lock);       /* NULL if none */
LC_API const char *lc_lock_plan_uid(const lc_lock *lock);     /* NULL if none */
LC_API const char *lc_lock_acquired_at(const lc_lock *lock);  /* RFC 3339 */
/* The broker's JSON for the lock (for a group grant, the first device's
 * lock object), compact, one line. */
LC_API const char *lc_lock_json(const lc_lock *lock);
/* Frees a lock object (does NOT release it on the broker). Stop its
 * keepalive first. NULL is a no-op. Thread: any thread, once no other
 * thread uses the lock. */
LC_API void lc_lock_free(lc_lock *lock);

/* What to acquire. Zero-initialise it ({0}) and set what you need: fields
 * left 0/NULL are not sent (the broker's defaults apply). All strings are
 * borrowed for the duration of the call. */
typedef struct lc_request {
    const char *device_name;           /* one device, or NULL with device_names */
    const char *const *device_names;   /* a group, acquired all-or-none under one lock_key */
    size_t n_devices;                  /* entries in device_names */
    lc_lock_type type;                 /* LC_TYPE_DEFAULT: MANUAL_OPERATOR */
    const char *user_id;               /* NULL: the client's user */
    double timeout_s;                  /* lease; 0: broker default (300 s); < 0: no expiry (null) */
    const char *reason;                /* NULL: not sent */
    const char *plan_uid;              /* NULL: not sent */
    double wait_s;                     /* > 0: queue up to this long if busy (broker serves by priority, then FIFO) */
    const char *request_id;            /* idempotency key: a retry returns the same grant; NULL: not sent */
    int session;                       /* 1: sends "session": true (the broker takes session
                                        * locks only over its WebSocket; over HTTP it answers
                                        * LC_ERR_VALIDATION) */
    const char *client_host;           /* lock "client" info: NULL: gethostname() */
    long client_pid;                   /* 0: getpid() */
    const char *client_name;           /* NULL: the client's client_name; the "client"
                                        * object is sent when any of the three is set */
} lc_request;

/* Requests a lock (POST /api/lock/request). client, req borrowed.
 * On LC_OK *out is the granted lock: caller frees with lc_lock_free, after
 * releasing it with lc_release (or letting it expire).
 * Returns LC_OK; LC_ERR_DENIED (held by an equal or higher priority, or the
 * wait ran out; lc_errmsg() names the holder); LC_ERR_INVALID_DEVICE,
 * LC_ERR_INVALID_TIMEOUT, LC_ERR_VALIDATION (the broker refused a field),
 * LC_ERR_FORBIDDEN / LC_ERR_UNAUTHORIZED (auth), LC_ERR_UNKNOWN_DEVICE,
 * LC_ERR_UNAVAILABLE, LC_ERR_TIMEOUT, LC_ERR_NOMEM, LC_ERR_PROTOCOL,
 * LC_ERR_BAD_REQUEST (NULL arguments, no device, bad type).
 * Blocks up to timeout_ms + wait_s. Thread: any thread (serialised per client). */
LC_API lc_status lc_acquire(lc_client *client, const lc_request *req, lc_lock **out);
/* Releases a lock (a group: all of it) on the broker (POST
 * /api/lock/release). The lock object stays allocated (lc_lock_free it).
 * client, lock borrowed. Returns LC_OK, LC_ERR_FORBIDDEN (wrong key/user:
 * someone else holds it now), LC_ERR_NOT_FOUND (no lock any more),
 * LC_ERR_UNAVAILABLE, LC_ERR_TIMEOUT, LC_ERR_BAD_REQUEST (NULL).
 * Blocks up to timeout_ms. Thread: any thread (serialised per client). */
LC_API lc_status lc_release(lc_client *client, const lc_lock *lock);
/* Extends the lease to now + timeout_s (<= 0: the lock's lease as last set) (POST
 * /api/lock/renew) and updates the lock's expiry. client borrowed; lock
 * borrowed and modified. Returns LC_OK, LC_ERR_FORBIDDEN / LC_ERR_NOT_FOUND
 * (the lock was lost), LC_ERR_INVALID_TIMEOUT, LC_ERR_UNAVAILABLE,
 * LC_ERR_TIMEOUT, LC_ERR_NOMEM. Blocks up to timeout_ms.
 * Thread: not concurrently with readers of this lock's lc_lock_expires_at
 * (a keepalive renews its own copy, so it does not count). */
LC_API lc_status lc_renew(lc_client *client, lc_lock *lock, double timeout_s);
/* Release by device name and key, for callers that only kept the key (the
 * CLI). Strings borrowed; user_id NULL: the client's user. Returns as
 * lc_release. Thread: any thread (serialised per client). */
LC_API lc_status lc_release_key(lc_client *client, const char *device, const char *lock_key,
                                const char *user_id);
/* Renew by device name and key. Strings borrowed; user_id NULL: the
 * client's user. out may be NULL; else on LC_OK *out is the renewed lock
 * (caller frees with lc_lock_free). Returns as lc_renew.
 * Thread: any thread (serialised per client). */
LC_API lc_status lc_renew_key(lc_client *client, const char *device, const char *lock_key,
                              const char *user_id, double timeout_s, lc_lock **out);

/* Admin: ends whoever holds device (POST /api/lock/force_release); the
 * holder's lock ends with force_released, cause admin. client, device,
 * reason (NULL: none) borrowed. Returns LC_OK, LC_ERR_NOT_FOUND (no lock),
 * LC_ERR_FORBIDDEN (needs the admin role when auth is on),
 * LC_ERR_INVALID_DEVICE, LC_ERR_UNAVAILABLE, LC_ERR_TIMEOUT. Blocks up to
 * timeout_ms. Thread: any thread (serialised per client). */
LC_API lc_status lc_force_release(lc_client *client, const char *device, const char *reason);

/* ---- queries ------------------------------------------------------------ */
typedef struct lc_lock_list lc_lock_list;
/* Number of locks. Thread: any thread. */
LC_API size_t lc_lock_list_count(const lc_lock_list *list);
/* The i-th lock, borrowed from the list; NULL if out of range.
 * Thread: any thread. */
LC_API const lc_lock *lc_lock_list_get(const lc_lock_list *list, size_t i);
/* Frees the list and its locks. NULL is a no-op. Thread: once no other
 * thread uses it. */
LC_API void lc_lock_list_free(lc_lock_list *list);

/* Every current lock, sorted by device (GET /api/locks/status). client
 * borrowed; *out: caller frees with lc_lock_list_free. Returns LC_OK,
 * LC_ERR_UNAVAILABLE, LC_ERR_TIMEOUT, LC_ERR_PROTOCOL, LC_ERR_NOMEM,
 * LC_ERR_BAD_REQUEST (NULL). Blocks up to timeout_ms.
 * Thread: any thread (serialised per client). */
LC_API lc_status lc_locks_status(lc_client *client, lc_lock_list **out);
/* One device (GET /api/locks/device/NAME). client, device borrowed.
 * LC_OK with *out = NULL when the device is free; otherwise *out is its
 * lock (caller frees with lc_lock_free). Also LC_ERR_INVALID_DEVICE,
 * LC_ERR_UNKNOWN_DEVICE / LC_ERR_NOT_FOUND (catalogue), LC_ERR_UNAVAILABLE,
 * LC_ERR_TIMEOUT. Blocks up to timeout_ms. Thread: any thread (serialised
 * per client). */
LC_API lc_status lc_device_status(lc_client *client, const char *device, lc_lock **out);
/* Fence check (POST /api/lock/validate {device_name, fence}): *valid is 1
 * if fence is the current holder's fence of device, else 0; *current (may
 * be NULL) gets the current fence, -1 if the device is free. client, device
 * borrowed. Returns LC_OK, LC_ERR_NOT_FOUND (a broker without this route),
 * LC_ERR_INVALID_DEVICE, LC_ERR_UNAVAILABLE, LC_ERR_TIMEOUT,
 * LC_ERR_BAD_REQUEST (NULL). Blocks up to timeout_ms.
 * Thread: any thread (serialised per client). */
LC_API lc_status lc_validate_fence(lc_client *client, const char *device, int64_t fence,
                                   int *valid, int64_t *current);

typedef struct lc_health {
    int ready;              /* 1 if the broker reports ready */
    int redis_connected;    /* 1 if the broker reaches Redis */
    long active_locks;
} lc_health;
/* Readiness (GET /api/health/ready). client borrowed; *out filled (zeroed
 * if the broker is unreachable). Returns LC_OK when ready;
 * LC_ERR_UNAVAILABLE when not ready (503, *out still filled) or
 * unreachable; LC_ERR_TIMEOUT. Blocks up to timeout_ms.
 * Thread: any thread (serialised per client). */
LC_API lc_status lc_health_check(lc_client *client, lc_health *out);

/* An event: a lock_update from the watch, or an entry of the history. All
 * pointers are borrowed: for the duration of the callback (watch) or from
 * the list (history). */
typedef struct lc_event {
    const char *event_id;     /* stream id "ms-seq"; NULL for warnings without one */
    const char *action;       /* acquired, released, force_released, renewed, expiring, ... */
    const char *device_name;
    const char *cause;        /* preempted, expired, admin, session_lost; NULL if none */
    const char *timestamp;    /* RFC 3339 */
    const lc_lock *lock;      /* may be NULL */
    const char *json;         /* the whole event as compact JSON */
} lc_event;

typedef struct lc_event_list lc_event_list;
/* Number of events. Thread: any thread. */
LC_API size_t lc_event_list_count(const lc_event_list *list);
/* The i-th event, borrowed from the list; NULL if out of range.
 * Thread: any thread. */
LC_API const lc_event *lc_event_list_get(const lc_event_list *list, size_t i);
/* The id to pass as `since` for the next page; borrowed from the list, NULL
 * if none. Thread: any thread. */
LC_API const char *lc_event_list_last_id(const lc_event_list *list);
/* Frees the list. NULL is a no-op. Thread: once no other thread uses it. */
LC_API void lc_event_list_free(lc_event_list *list);

typedef struct lc_history_query {
    const char *since;        /* borrowed; NULL: from the oldest kept */
    int limit;                /* 1..1000, 0: broker default (100) */
    const char *device;       /* borrowed; NULL: all */
    const char *plan_uid;     /* borrowed; NULL: all */
} lc_history_query;
/* Lock history (GET /api/events), oldest first. client, q borrowed; q may
 * be NULL. *out: caller frees with lc_event_list_free. Returns LC_OK,
 * LC_ERR_BAD_REQUEST, LC_ERR_UNAVAILABLE, LC_ERR_TIMEOUT, LC_ERR_PROTOCOL,
 * LC_ERR_NOMEM. Blocks up to timeout_ms. Thread: any thread (serialised
 * per client). */
LC_API lc_status lc_history(lc_client *client, const lc_history_query *q, lc_event_list **out);

/* ---- keepalive ---------------------------------------------------------- */
typedef struct lc_keepalive lc_keepalive;
/* Called once, on the keepalive thread, when the lock is lost: a renew
 * answered 403/404 (preempted, expired, force-released), a check of a lock
 * without expiry found its fence no longer current, or (1.1) the local
 * deadline passed without a confirmed renew (see "Self-fencing"). lock is
 * the caller's lock (borrowed for the call), status LC_ERR_FORBIDDEN /
 * LC_ERR_NOT_FOUND (the broker's answer: someone else holds it / it is
 * free) or LC_ERR_LOST (the deadline), detail the reason (borrowed for the
 * call).
 * The keepalive thread ends after it returns; still call
 * lc_keepalive_stop, but not from inside the callback. No library lock is
 * held: the callback may call lc_ functions (e.g. lc_acquire to retry). */
typedef void (*lc_lost_fn)(const lc_lock *lock, lc_status status, const char *detail,
                           void *userdata);

/* Starts a thread that renews lock every interval_ms (<= 0: a third of the
 * lease, at least 100 ms; since 1.1 never later than that), asking for no
 * timeout (the broker keeps the lease as last set; see "Self-fencing"), or
 * checks a lock without expiry every interval_ms (<= 0:
 * LC_OPT_CHECK_INTERVAL_MS, 1000 ms), over its own connection (a copy of client's options:
 * client is borrowed for the call only). lock is borrowed and must outlive
 * the keepalive; the keepalive renews a private copy and publishes the new
 * expiry (lc_lock_expires_us) and the loss (lc_lock_lost) through the
 * lock's atomics. Transient failures (unreachable, 503, timeout) are
 * retried every tenth of the lease (100-500 ms) while the local deadline
 * allows. lost_cb may be NULL;
 * userdata is borrowed and passed to it. *out: stop with
 * lc_keepalive_stop. Returns LC_OK, LC_ERR_BAD_REQUEST (NULL, or a lock
 * without a key), LC_ERR_NOMEM, LC_ERR_INTERNAL. Does not block.
 * Thread: any thread. */
LC_API lc_status lc_keepalive_start(lc_client *client, lc_lock *lock, long interval_ms,
                                    lc_lost_fn lost_cb, void *userdata, lc_keepalive **out);
/* Self-fencing (1.1), for every keepalive, lc_with_lock, the guard and the
 * holds of an lc_loop: the lock counts as lost - lc_lock_lost() becomes 1,
 * the lost callback runs with LC_ERR_LOST - as soon as
 *   - a renew or check answers 403/404 (preempted, expired, force-released),
 *   - an event says the lock ended (holds of a loop with a watch), or
 *   - lc_lock_deadline_us() is reached without a confirmed renew (broker or
 *     Redis unreachable, stalled, or too slow): the broker may end the lease
 *     at send time + lease, never earlier; the margin (LC_OPT_SAFETY_MARGIN_MS)
 *     is time left for the holder to stop before that.
 * Each renew is sent at a third of the lease and waits at most the time left
 * until the deadline; it asks for the lease the broker last granted
 * (lc_lock_lease_s), so a manual extension by `lockctl renew --timeout` is
 * kept. A lock without expiry is confirmed every LC_OPT_CHECK_INTERVAL_MS
 * with POST /api/lock/validate and is lost when its fence is no longer the
 * holder's; it has no local deadline (nothing ends it but a transition).
 * These checks also report preempt_requested (grace window) within one
 * interval (a loop with a watch: at once). */
typedef struct lc_keepalive_callbacks {
    /* Once, when the lock is lost (status LC_ERR_LOST for the local deadline
     * or an end event, LC_ERR_FORBIDDEN / LC_ERR_NOT_FOUND for a renew's answer). */
    void (*on_lost)(const lc_lock *lock, lc_status status, const char *detail, void *userdata);
    /* A holder of higher priority asked for the device: release within grace_s
     * or be preempted. requested_by is the broker's JSON object
     * ({"user_id","lock_type","priority"}), borrowed for the call. Once per window. */
    void (*on_preempt_requested)(const lc_lock *lock, double grace_s, const char *requested_by,
                                 void *userdata);
    void *userdata;
} lc_keepalive_callbacks;
/* lc_keepalive_start with both callbacks (cbs borrowed, copied; may be
 * NULL). interval_ms <= 0: a third of the lease (renew), and
 * LC_OPT_CHECK_INTERVAL_MS for checks. The client's options (margin,
 * intervals, TLS) apply. Thread: any thread. (1.1) */
LC_API lc_status lc_keepalive_start_cb(lc_client *client, lc_lock *lock, long interval_ms,
                                       const lc_keepalive_callbacks *cbs, lc_keepalive **out);
/* Stops and joins the thread (blocks for at most one renew call, i.e.
 * timeout_ms) and frees ka. Does not release the lock. Returns
 * LC_ERR_LOST if the lock was lost, else LC_OK. NULL: LC_OK.
 * Thread: any thread except the keepalive's own (its lost callback). */
LC_API lc_status lc_keepalive_stop(lc_keepalive *ka);
/* 1 once the lock was lost. Thread: any thread. */
LC_API int lc_keepalive_lost(const lc_keepalive *ka);
/* Successful renewals so far. Thread: any thread. */
LC_API long lc_keepalive_renewals(const lc_keepalive *ka);

/* ---- scoped locks ------------------------------------------------------- */
/* The body of lc_with_lock: runs on the caller's thread with the lock held
 * (and renewed). client and lock are borrowed for the call; fn may use
 * client (the keepalive has its own connection). For a long body, poll
 * lc_lock_lost(lock) and stop early once it is 1: the lock is gone. */
typedef void (*lc_locked_fn)(lc_client *client, const lc_lock *lock, void *userdata);
/* Runs fn while holding the lock(s) of req: acquire; start a keepalive
 * (since 1.1 always: renewals and self-fencing for a lease, validate checks
 * every LC_OPT_CHECK_INTERVAL_MS without expiry, so lc_lock_lost(lock)
 * becomes 1 before the broker can end the lease, or within a check
 * interval of a force-release); fn(client, lock, userdata) on the calling thread;
 * stop the keepalive; release - whatever fn does (short of longjmp/exit).
 * client, req borrowed; userdata borrowed and passed to fn.
 * Returns the acquire's error (fn not called: LC_ERR_DENIED etc.), else
 * LC_ERR_LOST if the lock was lost while fn ran, else the release's status
 * (LC_OK). Blocks for the acquire, fn, and the release.
 * Thread: any thread (the client's usual rules). */
LC_API lc_status lc_with_lock(lc_client *client, const lc_request *req, lc_locked_fn fn, void *userdata);

/* A lock bound to a C scope:
 *
 *     {
 *         LC_LOCK_GUARD(g, client, &req);
 *         if (g.status != LC_OK)
 *             return g.status;            // nothing held; lc_errmsg(client) says why
 *         use(lc_lock_fence(g.lock));
 *         if (bad)
 *             return -1;                  // released here
 *     }                                   // and here
 *
 * LC_LOCK_GUARD(name, client, req) declares `name`, acquires like
 * lc_acquire and keeps it (renewals, self-fencing, checks) in the
 * background like lc_with_lock; when `name` goes out of scope - the closing brace, return,
 * break, continue - the keepalive is stopped, the lock released and freed.
 * g.status: LC_OK while held (g.lock is the lock, e.g.
 * lc_lock_fence(g.lock)); the acquire's error otherwise (g.lock NULL).
 * Rules:
 *  - gcc and clang only (__attribute__((cleanup))).
 *  - Never jump INTO the guard's scope past its declaration (goto, switch
 *    case label): the cleanup would run on an uninitialised guard. gcc 12
 *    compiles such a goto without a word (clang rejects it), so do not mix
 *    the guard with goto-style cleanup in one function. Jumping OUT of the
 *    scope (goto to a label after it) releases, like return.
 *  - longjmp, exit() and a crash skip the release: the lease then expires.
 *  - lc_guard_release(&g) releases early (then the scope end does nothing);
 *    its status is then in g.status (LC_ERR_LOST if the lock was lost).
 *  - client must outlive the scope; req is borrowed for the acquire only.
 * Thread: the guard belongs to the thread whose scope declares it. */
typedef struct lc_guard {
    lc_client *client;        /* borrowed */
    lc_lock *lock;            /* owned by the guard; NULL when not held */
    lc_keepalive *keepalive;  /* owned by the guard (since 1.1 also for locks without expiry) */
    lc_status status;
} lc_guard;
/* Acquire for a guard (use LC_LOCK_GUARD). client borrowed (must outlive
 * the guard), req borrowed. Blocks like lc_acquire. Thread: any thread. */
LC_API lc_guard lc_guard_acquire(lc_client *client, const lc_request *req);
/* Stops the keepalive, releases and frees the guard's lock, sets
 * guard->status; a no-op when nothing is held. Blocks like lc_release.
 * Thread: the guard's thread. */
LC_API void lc_guard_release(lc_guard *guard);
#define LC_LOCK_GUARD(name, client, req) \
    lc_guard name __attribute__((cleanup(lc_guard_release))) = lc_guard_acquire((client), (req))

/* ---- watch -------------------------------------------------------------- */
typedef struct lc_watch lc_watch;

/* Callbacks of a watch. All run on the watch's own service thread, one at a
 * time, in order, never while the watch holds its internal lock (so they may
 * call lc_watch_snapshot and any other lc_ function, but not lc_watch_free
 * of this watch). Any may be NULL. */
typedef struct lc_watch_callbacks {
    /* Every lock_update, in stream order, each exactly once, also across
     * reconnects (the missed ones are replayed first). ev borrowed for the
     * call. The cache already includes ev when it is called. */
    void (*on_event)(const lc_event *ev, void *userdata);
    /* The cache was (re)loaded from an initial_status: at the first connect,
     * and after a resume gap (events were lost for good: compare your state
     * with this list). locks borrowed for the call. */
    void (*on_snapshot)(const lc_lock_list *locks, void *userdata);
    /* Connected and synchronised (1) / disconnected, reconnecting (0). */
    void (*on_connection)(int connected, void *userdata);
    void *userdata;           /* borrowed; passed to every callback */
} lc_watch_callbacks;

/* Opens a watch on opts->url's /ws (token as Bearer header) in its own
 * service thread, which connects, keeps a cache of every lock (seeded from
 * initial_status), calls the callbacks, and reconnects with capped
 * exponential backoff (100 ms doubling to 5 s, +-25 % jitter); a silent
 * connection is pinged after 10 s and dropped after 20 s. After a
 * reconnect it sends {"type":"resume","since":<last event_id>}: the broker
 * replays what was missed, so no event is lost or repeated even across a
 * broker restart; on resume_gap the fresh initial_status that follows
 * reloads the cache (on_snapshot). opts, cbs: borrowed, copied (strings
 * copied; cbs->userdata borrowed for the watch's life). Returns at once
 * (does not wait for the connection): LC_OK, LC_ERR_BAD_REQUEST (bad url,
 * out NULL), LC_ERR_NOMEM, LC_ERR_INTERNAL (no epoll/timerfd/eventfd).
 * *out: caller frees with lc_watch_free. Since 1.1 a watch is an lc_loop
 * (below) run by its own thread; it changes no process-wide setting.
 * Thread: any thread. */
LC_API lc_status lc_watch_new(const lc_options *opts, const lc_watch_callbacks *cbs, lc_watch **out);
/* lc_watch_new with an options object (TLS settings, error callback). A
 * watch reports every failed connect to the error callback and retries,
 * except on permanent failures (401, 403, TLS): it then stops and
 * lc_watch_status says why. The library never changes libwebsockets' or
 * any other process-wide setting. Thread: any thread. (1.1) */
LC_API lc_status lc_watch_new_opts(const lc_opts *opts, const lc_watch_callbacks *cbs, lc_watch **out);
/* LC_OK while the watch runs (connected or retrying); the permanent error
 * once it gave up. Thread: any thread. (1.1) */
LC_API lc_status lc_watch_status(lc_watch *w);
/* Copies the cache. *out: caller frees with lc_lock_list_free. Returns
 * LC_OK, LC_ERR_NOMEM, LC_ERR_BAD_REQUEST. Does not block on the network.
 * Thread: any thread, including the watch callbacks. */
LC_API lc_status lc_watch_snapshot(lc_watch *w, lc_lock_list **out);
/* 1 while connected and synchronised (snapshot loaded or resume done).
 * Thread: any thread. */
LC_API int lc_watch_connected(lc_watch *w);
/* Waits until the watch is connected and synchronised, at most timeout_ms.
 * LC_OK, or LC_ERR_TIMEOUT. Thread: any thread except the watch callbacks. */
LC_API lc_status lc_watch_wait_ready(lc_watch *w, long timeout_ms);
/* The last event id seen, copied into buf of len bytes ("" if none).
 * Thread: any thread. */
LC_API void lc_watch_last_event_id(lc_watch *w, char *buf, size_t len);
/* Stops the service thread, closes the socket, frees w. Blocks until the
 * thread ends (a few ms). NULL: no-op. Thread: any thread except the
 * watch's callbacks. */
LC_API void lc_watch_free(lc_watch *w);

/* ---- event-loop integration (1.1) ---------------------------------------
 * An lc_loop does everything of the calls above without a thread and
 * without blocking, for programs that have their own loop (poll, libuv,
 * ...), like hiredis' async context or libmosquitto's loop functions. It
 * owns one WebSocket connection to the broker (/ws), over which go the
 * watch, every asynchronous call, and the renewals of every lock it holds:
 * one connection and one session for many locks. It reconnects by itself
 * (backoff as a watch), resumes the event stream and re-attaches its
 * session.
 *
 *     lc_loop *loop; lc_loop_new(opts, &loop);
 *     struct pollfd p = {lc_loop_fd(loop), POLLIN, 0};
 *     for (;;) {
 *         poll(&p, 1, (int)lc_loop_timeout_ms(loop));
 *         lc_loop_process(loop);              // runs the callbacks
 *     }
 *
 * With libuv: a uv_poll_t on lc_loop_fd() (UV_READABLE) and a uv_timer_t set
 * to lc_loop_timeout_ms() after every lc_loop_process().
 * Everything of one loop - its calls and callbacks - belongs to the thread
 * that runs it. Callbacks run only inside lc_loop_process (never inside the
 * call that starts an operation) and may call any lc_loop / lc_*_async
 * function, lc_op_cancel, lc_hold_stop, but not lc_loop_free. */
typedef struct lc_loop lc_loop;
typedef struct lc_op lc_op;
typedef struct lc_hold lc_hold;

/* Creates a loop (opts borrowed, copied; NULL: defaults). Starts connecting
 * at the first lc_loop_process (name resolution may block then, as
 * getaddrinfo does). *out: free with lc_loop_free. LC_OK, LC_ERR_NOMEM,
 * LC_ERR_BAD_REQUEST (url), LC_ERR_INTERNAL. Thread: any. */
LC_API lc_status lc_loop_new(const lc_opts *opts, lc_loop **out);
/* Ends every operation (its callback runs with LC_ERR_CANCELLED), stops the
 * holds (without releasing: their locks expire or, session locks, end
 * after the session grace), closes the connection, frees. NULL: no-op. */
LC_API void lc_loop_free(lc_loop *loop);
/* The one file descriptor to wait on for readability. The same for the
 * loop's whole life (it stands for the connection and the timers). */
LC_API int lc_loop_fd(const lc_loop *loop);
/* The longest wait, in ms, before lc_loop_process must run even if the fd
 * stays quiet; -1: no timer pending. Call again after each process. */
LC_API long lc_loop_timeout_ms(const lc_loop *loop);
/* Does what is ready or due and runs the callbacks; never waits. LC_OK, or
 * the permanent error that stopped the loop (LC_ERR_UNAUTHORIZED,
 * LC_ERR_FORBIDDEN, LC_ERR_TLS): every operation was then cancelled. */
LC_API lc_status lc_loop_process(lc_loop *loop);
/* 1 while connected (and resumed/attached after a reconnect). */
LC_API int lc_loop_connected(const lc_loop *loop);
/* The loop's session id (session locks): NULL until the first session lock
 * is granted; the same across reconnects while the session is attached. */
LC_API const char *lc_loop_session_id(const lc_loop *loop);
/* Watches every lock on the loop's connection: the callbacks of a watch
 * (cbs borrowed, copied), with the same guarantees (each event once, in
 * order, also across reconnects). lc_loop_snapshot copies the cache. */
LC_API lc_status lc_loop_watch(lc_loop *loop, const lc_watch_callbacks *cbs);
LC_API lc_status lc_loop_snapshot(lc_loop *loop, lc_lock_list **out);

/* Completion callbacks. lock (acquire): the granted lock, the callee's, free
 * with lc_lock_free; NULL unless status is LC_OK. detail: the broker's text
 * or the transport error, borrowed for the call ("" on success). */
typedef void (*lc_acquire_fn)(lc_status status, lc_lock *lock, const char *detail, void *userdata);
typedef void (*lc_done_fn)(lc_status status, const char *detail, void *userdata);

/* Asynchronous lc_acquire over the loop's connection. req borrowed (copied).
 * req->session = 1 takes a session lock: it needs no renewal and ends
 * (force_released, session_lost) when this loop's process is gone for the
 * session grace. The callback runs exactly once (LC_OK, LC_ERR_DENIED, ...,
 * LC_ERR_TIMEOUT after timeout_ms + wait_s, LC_ERR_CANCELLED, or the
 * permanent error that stopped the loop), unless the op is cancelled
 * first. Without req->request_id the loop makes one up, so a request sent
 * again after a reconnect gets the grant already made. *op (may be NULL)
 * is valid until the callback starts. Returns LC_OK (started) or
 * LC_ERR_BAD_REQUEST / LC_ERR_NOMEM / LC_ERR_TOO_MANY (65536 operations
 * wait already) / the loop's permanent error (nothing started, no
 * callback). */
LC_API lc_status lc_acquire_async(lc_loop *loop, const lc_request *req, lc_acquire_fn cb,
                                  void *userdata, lc_op **op);
/* Asynchronous lc_release / lc_renew (lock borrowed until the callback;
 * lc_renew_async updates its expiry and deadline on success). A release
 * whose answer was lost with the connection is sent again; LC_ERR_NOT_FOUND
 * then counts as LC_OK (the first one ended the lock). Returns as
 * lc_acquire_async (LC_ERR_BAD_REQUEST: a lock without key). */
LC_API lc_status lc_release_async(lc_loop *loop, const lc_lock *lock, lc_done_fn cb,
                                  void *userdata, lc_op **op);
LC_API lc_status lc_renew_async(lc_loop *loop, lc_lock *lock, double timeout_s, lc_done_fn cb,
                                void *userdata, lc_op **op);
/* Cancels an operation whose callback has not run: the callback will not
 * run. A grant that arrives for a cancelled acquire is released by the
 * loop; a queued acquire leaves the broker's queue. NULL: no-op. */
LC_API void lc_op_cancel(lc_op *op);

/* Keeps a lock the loop's caller holds (acquired by this loop or any other
 * way): renewals on the loop's connection, self-fencing as described under
 * "Self-fencing", end events and preemption warnings from the stream, a
 * session lock kept by the session. lock borrowed, must outlive the hold;
 * its atomics are updated. cbs borrowed, copied. *out: stop with
 * lc_hold_stop. LC_OK, LC_ERR_BAD_REQUEST (no key), LC_ERR_NOMEM. */
LC_API lc_status lc_loop_hold(lc_loop *loop, lc_lock *lock, const lc_keepalive_callbacks *cbs,
                              lc_hold **out);
/* Stops and frees a hold (does not release the lock): LC_ERR_LOST if the
 * lock was lost, else LC_OK. NULL: LC_OK. */
LC_API lc_status lc_hold_stop(lc_hold *hold);

/* ---- reservations (1.2) ---------------------------------------------------
 * A booking reserves one device or a group for a window [start, end): at
 * start the broker makes it a lock for its owner, with the booking's
 * lock_key, and releases it at end (docs/reservations.md). Times in this
 * API are Unix microseconds (UTC), like lc_lock_expires_us; lc_time_parse
 * and lc_time_format convert to and from RFC 3339. */

/* Parses an RFC 3339 time ("2026-12-07T22:00:00Z", a fraction and a
 * "+hh:mm"/"-hh:mm" offset allowed) into *us. text borrowed. LC_OK or
 * LC_ERR_BAD_REQUEST. Thread: any thread. (1.2) */
LC_API lc_status lc_time_parse(const char *text, int64_t *us);
/* Writes us as "2026-12-07T22:00:00.000000Z" into buf (len >= 28; shorter:
 * cut, still NUL-terminated). Returns buf. Thread: any thread. (1.2) */
LC_API char *lc_time_format(int64_t us, char *buf, size_t len);

/* A booking as the broker describes it. Made only by the library (never
 * allocate one yourself: members may be added at the end in later
 * versions); every pointer is owned by the booking and lives until
 * lc_booking_free (or the list's free). Strings the broker sent as null
 * are NULL. Not changed after it is returned: any thread may read it. */
typedef struct lc_booking {
    const char *id;                    /* "r17" */
    const char *const *device_names;   /* n_devices names, in the booking's order */
    size_t n_devices;
    lc_lock_type type;
    int priority;                      /* 0 (MAINTENANCE) .. 3; -1 if not sent */
    const char *user_id;               /* the owner */
    const char *lock_key;              /* the key of the lock the booking becomes; NULL unless
                                        * you are the owner (or an admin) */
    int64_t start_us, end_us;          /* the window [start, end), Unix microseconds */
    const char *reason, *plan_uid;     /* NULL if none */
    const char *state;                 /* "booked", "waiting", "active", "ended", "cancelled",
                                        * "bumped" */
    const char *cause;                 /* why it ended ("reservation_end", "released", "missed",
                                        * ...); NULL while live */
    const char *bumped_by;             /* the booking that bumped it; NULL */
    int64_t created_us, updated_us;
    long sequence;                     /* changes so far (moves, bumps, cancel): iCalendar SEQUENCE */
    const char *const *bumped;         /* lc_book only: the ids of the lower bookings this one
                                        * bumped (n_bumped of them); otherwise none */
    size_t n_bumped;
    const char *json;                  /* the broker's booking object, compact JSON */
} lc_booking;

/* Frees a booking. NULL is a no-op. Thread: once no other thread uses it. */
LC_API void lc_booking_free(lc_booking *booking);

/* What to book. Zero-initialise it ({0}) and set what you need. Strings
 * borrowed for the call. */
typedef struct lc_booking_request {
    const char *device_name;           /* one device, or NULL with device_names */
    const char *const *device_names;   /* a group (1..64), booked all-or-none */
    size_t n_devices;
    lc_lock_type type;                 /* LC_TYPE_DEFAULT: MANUAL_OPERATOR */
    const char *user_id;               /* NULL: the client's user */
    int64_t start_us;                  /* window start; in the past (or 0): now */
    int64_t end_us;                    /* window end: after start and after now */
    const char *reason;                /* NULL: not sent */
    const char *plan_uid;              /* NULL: not sent */
    const char *request_id;            /* idempotency key: the same user's retry with it gets
                                        * the first answer and books nothing new; NULL: none */
} lc_booking_request;

/* Books devices for a window (POST /api/reservations). client, req
 * borrowed. On LC_OK *out is the new booking (id, lock_key, state, and in
 * bumped the lower bookings it took the time of): caller frees with
 * lc_booking_free.
 * Returns LC_OK; LC_ERR_CONFLICT (the window overlaps a live booking of
 * equal or higher priority on a device; lc_errmsg() names it);
 * LC_ERR_VALIDATION (a window the broker refuses: end not after start or
 * now, too long, too far ahead; too many devices), LC_ERR_INVALID_DEVICE,
 * LC_ERR_UNKNOWN_DEVICE, LC_ERR_FORBIDDEN / LC_ERR_UNAUTHORIZED (auth,
 * roles), LC_ERR_NOT_FOUND (a broker without reservations),
 * LC_ERR_UNAVAILABLE, LC_ERR_TIMEOUT, LC_ERR_NOMEM, LC_ERR_PROTOCOL,
 * LC_ERR_BAD_REQUEST (NULL arguments, no device, end_us <= 0, bad type).
 * Blocks up to timeout_ms. Thread: any thread (serialised per client). */
LC_API lc_status lc_book(lc_client *client, const lc_booking_request *req, lc_booking **out);

/* A booking by id (GET /api/reservations/ID). client, id borrowed; *out:
 * caller frees with lc_booking_free. Returns LC_OK, LC_ERR_NOT_FOUND,
 * LC_ERR_UNAVAILABLE, LC_ERR_TIMEOUT, LC_ERR_PROTOCOL, LC_ERR_NOMEM,
 * LC_ERR_BAD_REQUEST (NULL). Blocks up to timeout_ms. Thread: any thread
 * (serialised per client). */
LC_API lc_status lc_booking_get(lc_client *client, const char *id, lc_booking **out);

/* Cancels a booking (DELETE /api/reservations/ID; the owner or an admin:
 * the token's user, or on a broker without auth the client's user_id).
 * An active booking's lock is released (cause reservation_cancelled); a
 * booking already cancelled is LC_OK again. client, id borrowed; out may
 * be NULL, else on LC_OK *out is the cancelled booking (caller frees with
 * lc_booking_free). Returns LC_OK, LC_ERR_CONFLICT (ended or bumped),
 * LC_ERR_NOT_FOUND, LC_ERR_FORBIDDEN, LC_ERR_UNAUTHORIZED,
 * LC_ERR_UNAVAILABLE, LC_ERR_TIMEOUT, LC_ERR_BAD_REQUEST (NULL). Blocks up
 * to timeout_ms. Thread: any thread (serialised per client). */
LC_API lc_status lc_booking_cancel(lc_client *client, const char *id, lc_booking **out);

/* Moves or extends a booking (PATCH /api/reservations/ID; the owner or an
 * admin, as for lc_booking_cancel): start_us / end_us, 0 for "unchanged" (at least one not 0). The
 * new window must be free of every other live booking on its devices;
 * once the window has started only end_us may change. client, id
 * borrowed; out may be NULL, else on LC_OK *out is the moved booking
 * (caller frees with lc_booking_free). Returns LC_OK, LC_ERR_CONFLICT (the
 * new window overlaps a booking, or the booking is over),
 * LC_ERR_VALIDATION (a window the broker refuses, or start of a started
 * booking), LC_ERR_NOT_FOUND, LC_ERR_FORBIDDEN, LC_ERR_UNAVAILABLE,
 * LC_ERR_TIMEOUT, LC_ERR_BAD_REQUEST (NULL, nothing to change). Blocks up
 * to timeout_ms. Thread: any thread (serialised per client). */
LC_API lc_status lc_booking_move(lc_client *client, const char *id, int64_t start_us,
                                 int64_t end_us, lc_booking **out);

/* Which bookings to list. Zero-initialise; fields left 0/NULL are not sent
 * (the broker's defaults apply). Strings borrowed for the call. */
typedef struct lc_booking_query {
    const char *device;     /* only bookings of this device */
    const char *user;       /* only bookings of this owner */
    const char *state;      /* comma-separated states ("booked,active") */
    int64_t from_us;        /* windows that end after this; 0: now */
    int64_t to_us;          /* windows that start before this; 0: no limit */
    int limit;              /* 1..1000; 0: the broker's (100) */
    const char *cursor;     /* a page's lc_booking_list_next_cursor; NULL: the first page */
} lc_booking_query;

typedef struct lc_booking_list lc_booking_list;
/* Number of bookings. Thread: any thread. */
LC_API size_t lc_booking_list_count(const lc_booking_list *list);
/* The i-th booking, borrowed from the list; NULL if out of range.
 * Thread: any thread. */
LC_API const lc_booking *lc_booking_list_get(const lc_booking_list *list, size_t i);
/* The cursor of the next page (pass it as q->cursor); NULL on the last
 * page. Borrowed from the list. Thread: any thread. */
LC_API const char *lc_booking_list_next_cursor(const lc_booking_list *list);
/* Frees the list and its bookings. NULL is a no-op. */
LC_API void lc_booking_list_free(lc_booking_list *list);

/* Lists bookings whose window overlaps [from, to), by start then id (GET
 * /api/reservations), one page. client, q borrowed; q may be NULL (what is
 * current and to come). *out: caller frees with lc_booking_list_free.
 * Returns LC_OK, LC_ERR_VALIDATION / LC_ERR_BAD_REQUEST (a filter the
 * broker refuses, bad cursor), LC_ERR_NOT_FOUND (a broker without
 * reservations), LC_ERR_UNAVAILABLE, LC_ERR_TIMEOUT, LC_ERR_PROTOCOL,
 * LC_ERR_NOMEM. Blocks up to timeout_ms. Thread: any thread (serialised
 * per client). */
LC_API lc_status lc_bookings(lc_client *client, const lc_booking_query *q, lc_booking_list **out);

#ifdef __cplusplus
}
#endif
#endif
