/* api/service.h — the job service the HTTP routes call: what api/ needs from the daemon, declared here
 * so that dependencies point one way (daemon/service.c implements it; api/ never includes daemon/).
 * Loop thread only. Every call returns 0 or a negative svc_err and, on success, a new JSON reference
 * in OUT out (the response body, already in the OpenAI shape). On error e says what went wrong;
 * api/api.c maps e->kind to an HTTP status in one table.
 * Authorization lives here, not in the router: every call takes the caller (who, borrowed); a user
 * sees only their own jobs, files and models (anything else is "not found"), an admin sees all. */
#ifndef CT_SERVICE_H
#define CT_SERVICE_H
#include "api/prom.h"
#include <jansson.h>
#include <stddef.h>

enum svc_err {
    SVC_OK = 0,
    SVC_EINVAL = -1,        /* 400: malformed or invalid request */
    SVC_ENOTFOUND = -2,     /* 404: unknown id or route */
    SVC_ECONFLICT = -3,     /* 409: not allowed in the job's current status */
    SVC_EIDEMPOTENCY = -4,  /* 422: Idempotency-Key reused with a different body */
    SVC_ETOOLARGE = -5,     /* 413: body or upload over the limit */
    SVC_EUNAVAILABLE = -6,  /* 503: shutting down */
    SVC_EINTERNAL = -7,     /* 500: storage or system failure */
    SVC_EMETHOD = -8,       /* 405 */
    SVC_EMEDIA = -9,        /* 415: wrong Content-Type */
    SVC_EUNAUTH = -10,      /* 401: no or bad credentials */
    SVC_EFORBIDDEN = -11,   /* 403: admin-only */
    SVC_EQUOTA = -12,       /* 429: over a per-user quota (the message names the limit) */
};

typedef struct svc_error {
    enum svc_err kind;
    const char *code;       /* machine-readable, static (e.g. "unknown_field"); NULL = from kind */
    char param[128];        /* JSON path of the offending input, "" = none */
    char message[512];
} svc_error;

/* Fill e and return kind (so `return svc_fail(e, ...)` reads naturally). */
int svc_fail(svc_error *e, enum svc_err kind, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

typedef struct svc svc; /* opaque: daemon/service.c */

/* Who is calling: from a Bearer token (TCP) or the peer uid (Unix socket). */
typedef struct svc_caller {
    long long user_id;
    char name[64];
    int admin;
    char remote[64];        /* "127.0.0.1" or "uid:1000": for the audit trail */
} svc_caller;

/* ---- identity and audit ---- */
/* token: the Bearer credential (never logged or stored). SVC_EUNAUTH when it is not a live token. */
int svc_auth_token(svc *s, const char *token, const char *remote, svc_caller *out, svc_error *e);
/* A local peer's uid (SO_PEERCRED). SVC_EUNAUTH (with how to add the user) when no user has it. */
int svc_auth_uid(svc *s, long long uid, svc_caller *out, svc_error *e);
/* Append an audit record (committed with the next batch) and log it. who may be NULL (anonymous);
 * remote is used when who is NULL. */
void svc_audit(svc *s, const svc_caller *who, const char *remote, const char *action, const char *target,
               const char *outcome, const char *detail);
int svc_me(svc *s, const svc_caller *who, json_t **out, svc_error *e);
int svc_users(svc *s, const svc_caller *who, json_t **out, svc_error *e);          /* admins */
int svc_audit_list(svc *s, const svc_caller *who, long long before, int limit, json_t **out, svc_error *e); /* admins */
/* The service's part of GET /metrics (Prometheus text) appended to *buf (malloc'd, grown). Admins. */
int svc_metrics_text(svc *s, const svc_caller *who, prom_buf *b, svc_error *e);

/* ---- jobs ---- */
/* body: the parsed request; idem_key: the Idempotency-Key header or NULL. The job is committed durably
 * before this returns 0. *replayed = 1 when an earlier job with the same key and body is returned. */
int svc_job_create(svc *s, const svc_caller *who, const json_t *body, const char *idem_key, json_t **out, int *replayed, svc_error *e);
int svc_job_list(svc *s, const svc_caller *who, const char *after, int limit, json_t **out, svc_error *e);
int svc_job_get(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e);
int svc_job_cancel(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e);
int svc_job_pause(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e);
int svc_job_resume(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e);
/* Events with id > after (0 = from the start), oldest first. */
int svc_job_events(svc *s, const svc_caller *who, const char *id, long long after, int limit, json_t **out, svc_error *e);
int svc_job_checkpoints(svc *s, const svc_caller *who, const char *id, const char *after, int limit, json_t **out, svc_error *e);
/* names: comma-separated, NULL = all; max_points >= 2 (LTTB downsampling). */
int svc_job_metrics(svc *s, const svc_caller *who, const char *id, const char *names, int max_points, int after_step, json_t **out,
                    svc_error *e);

/* ---- streaming (server-sent events) ---- */
/* The events after `after`, as a JSON array of event objects (at most limit), and *ended = 1 once the
 * job has ended and nothing more will follow. -ENOTFOUND for an unknown job. */
int svc_stream_poll(svc *s, const svc_caller *who, const char *id, long long after, int limit, json_t **events, int *ended, svc_error *e);
/* The service calls fn(ud, job_id) on the loop thread whenever a job has new events (never from inside
 * another svc_* call's caller stack in a way that re-enters MHD: the listener must defer any MHD_run). */
void svc_set_listener(svc *s, void (*fn)(void *ud, const char *job_id), void *ud);

/* ---- models, datasets, files ---- */
int svc_models(svc *s, const svc_caller *who, json_t **out, svc_error *e);
int svc_model_get(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e);
/* The safetensors file to send for a model (which: "final" (default) or "best"). OUT path. */
int svc_model_file(svc *s, const svc_caller *who, const char *id, const char *which, char *path, size_t pathlen, svc_error *e);
int svc_datasets(svc *s, const svc_caller *who, json_t **out, svc_error *e);
int svc_files(svc *s, const svc_caller *who, json_t **out, svc_error *e);
int svc_file_get(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e);
/* Uploads: api/ streams the body into a temporary file in svc_upload_dir(), then hands it over:
 * svc_file_add probes the format, moves it into place and records it (takes ownership of tmp_path's
 * file: it is renamed or removed). */
const char *svc_upload_dir(svc *s);
long long svc_upload_limit(svc *s);
int svc_file_add(svc *s, const svc_caller *who, const char *tmp_path, const char *filename, const char *purpose, long long bytes,
                 json_t **out, svc_error *e);

/* ---- health ---- */
int svc_ready(svc *s, const svc_caller *who, json_t **out, svc_error *e); /* SVC_EUNAVAILABLE when not ready */

#endif
