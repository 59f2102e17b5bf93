/* core/core.h — the service core: jobs and their life cycle, events, scheduling, runs through an
 * executor, assets (models, datasets, uploads), access (identities, users, audit) and stats. The whole
 * interface that api/ and daemon/ see; it never speaks HTTP. Loop thread only.
 *
 * Every fallible call returns 0 or a negative svc_err with e filled (api/ maps e->kind to a status in
 * one table) and, on success, a typed result in its OUT parameter that the caller frees with the
 * matching *_free/clear. Results reuse storage's row structs as plain data (api/ never calls db_*).
 * Authorization lives here, not in the router: every call takes the caller (who, borrowed); a user
 * sees only their own jobs, files and models (anything else is "not found"), an admin sees all. */
#ifndef CT_CORE_H
#define CT_CORE_H
#include "storage/db.h"
#include "core/executor.h"
#include "core/gpumon.h"
#include "common/hist.h"
#include <jansson.h>
#include <stddef.h>
#include <uv.h>

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
    SVC_ENOSPACE = -13,     /* 507: the data directory's disk is full (the message says what was kept) */
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

typedef struct svc svc; /* opaque */

/* ---- configuration (daemon/main.c fills it from its option table) ---- */
#define SVC_MAX_DATASETS 32
#define SVC_MAX_ROOTS 16
#define SVC_MAX_USER_QUOTAS 64
#define SVC_MAX_WEBHOOKS 8
#define SVC_MAX_GPUS EXEC_MAX_GPUS

typedef struct svc_quota {    /* per-user limits; 0 = unlimited */
    int running_jobs;         /* jobs running at once */
    int queued_jobs;          /* jobs waiting in the queue (POST and resume answer 429 beyond) */
    int threads;              /* trainer threads of the user's running jobs together */
    long long upload_bytes;   /* bytes of the user's stored uploads */
    long long disk_bytes;     /* bytes of the user's uploads, models and job directories together */
} svc_quota;

typedef struct svc_user_quota {
    char name[64];
    svc_quota q;              /* -1 = the default for that field */
} svc_user_quota;

typedef struct svc_dataset {
    char name[64];
    char path[1024];
} svc_dataset;

typedef struct svc_config {
    char data_dir[1024];
    char jobs_dir[1024];      /* job directories ("" = DATA_DIR/jobs; the Slurm executor's shared dir) */
    char executor[16];        /* "local" (worker threads, the default) or "slurm" */
    exec_slurm_cfg slurm;
    int workers;              /* concurrent jobs (0 = accept and queue, never run) */
    int threads_per_job;      /* trainer threads per job (the job's own "threads" may ask for fewer) */
    int cores;                /* the threads of running jobs together never exceed this */
    int preemption;           /* 1 = checkpoint and requeue a job to make room (fair share, priority) */
    int n_gpus;               /* the local executor's GPUs (CUDA indices among the visible devices): each */
    int gpus[SVC_MAX_GPUS];   /* GPU job gets one of them; 0 = none (a cuda job is a 400 naming "device") */
    char gpus_why[160];       /* with n_gpus 0: why ("--gpus none", "CUDA reports 0 devices: ...") */
    double preempt_grace;     /* seconds a job runs before it may be preempted */
    long long self_uid;       /* the daemon's uid: maps to the bootstrap admin on the Unix socket */
    svc_quota quota;          /* every user's, unless overridden */
    int n_user_quotas;
    svc_user_quota user_quotas[SVC_MAX_USER_QUOTAS];
    int n_roots;              /* directories a job's training_file/validation_file may name paths in */
    char roots[SVC_MAX_ROOTS][1024];
    int checkpoint_seconds;   /* time-based checkpoints besides the per-epoch ones */
    int job_nice;             /* the local trainer threads' nice value (0 = as the daemon) */
    double flush_seconds;     /* progress batching interval */
    long long upload_limit;   /* bytes per POST /v1/files */
    long long extract_limit;  /* bytes an upload may expand to (archive, gzipped IDX); 0 = the default */
    long long extract_entries; /* entries of an uploaded archive; 0 = the default */
    double extract_ratio;     /* expanded bytes / uploaded bytes (past 1 MiB); 0 = the default */
    char builtin_dir[1024];   /* where fashion-mnist lives ("" = none) */
    int n_datasets;
    svc_dataset datasets[SVC_MAX_DATASETS];
    int n_webhook_urls;       /* where job (and sweep) ends are announced; only the admin's */
    char webhook_urls[SVC_MAX_WEBHOOKS][1024];
    char webhook_secret[512]; /* "whsec_<base64>" */
    long long min_free_bytes; /* below this free on the data dir's disk: no new uploads or jobs (0 = off) */
    int keep_checkpoints;     /* checkpoints rows a finished job keeps (0 = all) */
    int retention_days;       /* a finished job's resumable state goes after this (0 = kept) */
} svc_config;

/* ---- life cycle (core/service.c) ---- */
/* Opens DATA_DIR/coretuned.db, re-attaches or requeues jobs a previous run left `running`, starts
 * scheduling. On failure returns the real error with its reason in err. */
int  svc_open(svc **out, uv_loop_t *loop, const svc_config *cfg, char *err, size_t errlen);
/* Stop starting jobs, ask running ones to checkpoint, and once every run has ended and the last
 * progress is committed, close the loop handles and call done(ud) (from the loop). */
void svc_shutdown(svc *s, void (*done)(void *ud), void *ud);
/* After done ran (or if the loop never started): frees everything. NULL-safe. */
void svc_free(svc *s);
/* No bootstrap admin yet (first start, or users were only added offline): create one (auth_bootstrap)
 * and a token. OUT token and name ("" when there was one). */
int  svc_bootstrap(svc *s, char *token, size_t tokenlen, char name[64], char *err, size_t errlen);
/* The service calls fn(ud, job_id) on the loop thread whenever a job has new events. It may fire from
 * inside another svc_* call, so the listener must not re-enter the HTTP server (api/ defers). */
void svc_set_listener(svc *s, void (*fn)(void *ud, const char *job_id), void *ud);

/* ---- access: identities, users, audit (core/access.c) ---- */
/* Who is calling: from a Bearer token (TCP) or the peer uid (Unix socket). */
typedef struct svc_caller {
    long long user_id;
    char name[64];
    int admin;
    char remote[64];        /* "127.0.0.1" or "uid:1000": for the audit trail */
} svc_caller;

/* token: the Bearer credential (never logged or stored). SVC_EUNAUTH when it is not a live token. */
int svc_auth_token(svc *s, const char *token, const char *remote, svc_caller *out, svc_error *e);
/* A local peer's uid (SO_PEERCRED). SVC_EUNAUTH (with how to add the user) when no user has it. */
int svc_auth_uid(svc *s, long long uid, svc_caller *out, svc_error *e);
/* Append an audit record (committed with the next batch) and log it. who may be NULL (anonymous);
 * remote is used when who is NULL. */
void svc_audit(svc *s, const svc_caller *who, const char *remote, const char *action, const char *target,
               const char *outcome, const char *detail);

typedef struct svc_me_info {
    db_user user;
    char via[64];
    svc_quota quota, usage;        /* usage.disk_bytes = files + models + jobs below */
    long long file_bytes, model_bytes, job_bytes;
} svc_me_info;
int svc_me(svc *s, const svc_caller *who, svc_me_info *out, svc_error *e);

typedef struct svc_user_list { db_user *v; int n; } svc_user_list;           /* (heap) v */
int  svc_users(svc *s, const svc_caller *who, svc_user_list *out, svc_error *e); /* admins */
void svc_user_list_free(svc_user_list *l);

typedef struct svc_audit_page { db_audit *v; int n, has_more; } svc_audit_page;
int  svc_audit_list(svc *s, const svc_caller *who, long long before, int limit, svc_audit_page *out, svc_error *e);
void svc_audit_page_free(svc_audit_page *p);

/* ---- jobs (core/jobs.c) ---- */
/* A job as callers see it: its row, with what only the loop knows yet laid over it (the progress of a
 * running job is up to one flush ahead of the row) and its place in the queue. */
typedef struct svc_job {
    db_job row;                    /* owned: svc_job_clear frees it; row.metrics is the live metrics JSON */
    int queue_position;            /* 1 = next; 0 = not queued */
    long long estimated_start;     /* unix seconds; 0 = unknown */
    long long estimated_finish;    /* unix seconds; 0 = unknown or not running */
    const char *executor_type;     /* (static) row.executor is NULL: the executor it runs on ("local") */
    char assigned_device[16];      /* running under the local executor: "cpu" or "cuda:N", the device the
                                    * scheduler gave it (a "cuda" job's GPU); "" = none */
} svc_job;
void svc_job_clear(svc_job *j);

typedef struct svc_job_page { svc_job *v; int n, has_more; } svc_job_page;
void svc_job_page_free(svc_job_page *p);

/* body: the parsed request; idem_key: the Idempotency-Key header or NULL. The job is committed durably
 * before this returns 0. *replayed = 1 when an earlier job with the same key and body is returned. */
int svc_job_create(svc *s, const svc_caller *who, const json_t *body, const char *idem_key, svc_job *out,
                   int *replayed, svc_error *e);
int svc_job_list(svc *s, const svc_caller *who, const char *after, int limit, svc_job_page *out, svc_error *e);
int svc_job_get(svc *s, const svc_caller *who, const char *id, svc_job *out, svc_error *e);
int svc_job_cancel(svc *s, const svc_caller *who, const char *id, svc_job *out, svc_error *e);
int svc_job_pause(svc *s, const svc_caller *who, const char *id, svc_job *out, svc_error *e);
int svc_job_resume(svc *s, const svc_caller *who, const char *id, svc_job *out, svc_error *e);

/* ---- sweeps (core/sweeps.c): hyper-parameter searches whose trials are jobs ---- */
typedef struct svc_sweep {
    db_sweep row;                  /* owned */
    db_trial *trials;              /* (heap) in index order, with their jobs' outcome */
    int n_trials;
    int maximize;                  /* objective: 1 = best valid_accuracy, 0 = lowest valid_loss */
    char test_file[256];
} svc_sweep;
void svc_sweep_clear(svc_sweep *w);
typedef struct svc_sweep_page { svc_sweep *v; int n, has_more; } svc_sweep_page;
void svc_sweep_page_free(svc_sweep_page *p);
/* Validates every trial's job body before anything is stored; the sweep is committed durably on return. */
int svc_sweep_create(svc *s, const svc_caller *who, const json_t *body, svc_sweep *out, svc_error *e);
int svc_sweep_get(svc *s, const svc_caller *who, const char *id, svc_sweep *out, svc_error *e);
int svc_sweep_list(svc *s, const svc_caller *who, const char *after, int limit, svc_sweep_page *out, svc_error *e);
/* Cancels the sweep and its unfinished trials' jobs. */
int svc_sweep_cancel(svc *s, const svc_caller *who, const char *id, svc_sweep *out, svc_error *e);

/* ---- events and checkpoints (core/events.c) ---- */
typedef struct svc_event {
    long long id, created_at;
    char type[32], level[16];
    char *message, *data;          /* (heap) data is JSON or NULL */
} svc_event;
typedef struct svc_event_page { svc_event *v; int n, has_more; } svc_event_page; /* (heap) v and its strings */
void svc_event_page_free(svc_event_page *p);
/* Events with id > after (0 = from the start), oldest first. id: a job's or a sweep's ("ftsweep-..."). */
int svc_job_events(svc *s, const svc_caller *who, const char *id, long long after, int limit, svc_event_page *out,
                   svc_error *e);
/* The same for a stream, and *ended = 1 once the job has ended and nothing more will follow. */
int svc_stream_poll(svc *s, const svc_caller *who, const char *id, long long after, int limit, svc_event_page *out,
                    int *ended, svc_error *e);

typedef struct svc_ckpt_page {
    db_checkpoint *v; int n, has_more; /* (heap) */
    char job_id[DB_ID_MAX];
    char model[320];               /* the job's fine-tuned model name: checkpoints are "MODEL:ckpt-step-N" */
} svc_ckpt_page;
void svc_ckpt_page_free(svc_ckpt_page *p);
/* after: a checkpoint id ("ftckpt-N") or NULL. */
int svc_job_checkpoints(svc *s, const svc_caller *who, const char *id, const char *after, int limit,
                        svc_ckpt_page *out, svc_error *e);

/* ---- metric series and service counters (core/stats.c) ---- */
typedef struct svc_series {
    char name[64];
    int *steps; double *values;    /* (heap) n points kept by LTTB downsampling */
    size_t n, total_points;
} svc_series;
typedef struct svc_metrics { char job_id[DB_ID_MAX]; int max_points; svc_series *v; int n; } svc_metrics;
void svc_metrics_free(svc_metrics *m);
/* names: comma-separated, NULL = all; max_points >= 2. */
int svc_job_metrics(svc *s, const svc_caller *who, const char *id, const char *names, int max_points, int after_step,
                    svc_metrics *out, svc_error *e);

typedef struct svc_job_count { char owner[64]; enum job_status status; long long n; } svc_job_count;
typedef struct svc_run_rate { char job_id[DB_ID_MAX]; char owner[64]; double steps_per_s, images_per_s; } svc_run_rate;
typedef struct svc_stats {
    svc_job_count *counts; int n_counts; /* (heap) jobs by (owner, status) */
    long long queued;
    int running_jobs, running_threads, cores;
    svc_run_rate *runs; int n_runs;      /* (heap) */
    hist db_write;                       /* seconds per committed transaction */
    unsigned long long preemptions, auth_failures;
    gpumon_sample gpus[SVC_MAX_GPUS];    /* NVML's last sample (gpumon.h); n_gpus 0 = no NVML or no GPUs */
    int n_gpus;
    unsigned long long reclaimed_bytes;  /* freed by deletes and retention since start */
    long long disk_free_bytes;           /* -1 = unknown */
} svc_stats;
void svc_stats_free(svc_stats *st);
int  svc_stats_get(svc *s, const svc_caller *who, svc_stats *out, svc_error *e); /* admins */

/* ---- models, datasets, files (core/assets.c) ---- */
typedef struct svc_model {
    char id[320];
    const char *kind;              /* "base", "backbone", "fine-tuned" (static) */
    char arch[16];                 /* "" = unknown */
    char owned_by[64];
    long long created;
    char job_id[DB_ID_MAX];        /* fine-tuned only */
} svc_model;
typedef struct svc_model_list { svc_model *v; int n; } svc_model_list;
void svc_model_list_free(svc_model_list *l);
int svc_models(svc *s, const svc_caller *who, svc_model_list *out, svc_error *e);
int svc_model_get(svc *s, const svc_caller *who, const char *id, svc_model *out, svc_error *e);
/* The safetensors file to send for a model (which: "final" (default) or "best"). OUT path. */
int svc_model_file(svc *s, const svc_caller *who, const char *id, const char *which, char *path, size_t pathlen,
                   svc_error *e);

typedef struct svc_dataset_info {
    char id[DB_ID_MAX + 16];
    const char *source;            /* "builtin", "config", "upload" (static) */
    char format[32];               /* "" = unknown (a configured set that cannot be read) */
    long long images, classes, bytes; /* -1 = not reported for this source */
    char owner[64];                /* uploads: who uploaded it ("" otherwise) */
    int jobs, active_jobs;         /* uploads: jobs naming it, and those queued, running or paused (-1 = n/a) */
} svc_dataset_info;
typedef struct svc_dataset_list { svc_dataset_info *v; int n; } svc_dataset_list;
void svc_dataset_list_free(svc_dataset_list *l);
int svc_datasets(svc *s, const svc_caller *who, svc_dataset_list *out, svc_error *e);

typedef struct svc_file_class { char *name; long long images; } svc_file_class;
/* f.images, f.min_width...: what the upload holds (-1 / 0 for an upload from before they were kept);
 * classes in label order, with their images (heap; NULL when not recorded). */
typedef struct svc_file { db_file f; svc_file_class *classes; int n_classes; } svc_file;
void svc_file_free(svc_file *f);   /* the classes; NULL-safe */
typedef struct svc_file_list { svc_file *v; int n; } svc_file_list;
void svc_file_list_free(svc_file_list *l);
int svc_files(svc *s, const svc_caller *who, svc_file_list *out, svc_error *e);
int svc_file_get(svc *s, const svc_caller *who, const char *id, svc_file *out, svc_error *e);
/* Uploads: api/ streams each file part of the body into a temporary file in svc_upload_dir(), then
 * hands them over. svc_file_add_start takes ownership of every part's file (renamed or removed) and
 * checks them off the loop, on libuv's thread pool (one part: an archive of class folders, which it
 * extracts, or a file the trainer reads; two parts: an IDX images + labels pair; then every image
 * decoded), so the loop serves other requests meanwhile. done(ud) comes on the loop when the check is
 * over; the caller then calls svc_upload_finish, which records the file (OUT *out, svc_file_free) and
 * frees u. A caller that goes away first calls svc_upload_abandon instead: whatever was stored is
 * removed and done is never called. Shutdown waits for checks in flight. */
#define SVC_UPLOAD_MAX_PARTS 2
typedef struct svc_upload_part { const char *tmp_path, *filename; long long bytes; } svc_upload_part;
typedef struct svc_upload svc_upload; /* one upload being checked (opaque) */
const char *svc_upload_dir(svc *s);
long long svc_upload_limit(svc *s);
int  svc_file_add_start(svc *s, const svc_caller *who, const svc_upload_part *parts, int n_parts, const char *purpose,
                        void (*done)(void *ud), void *ud, svc_upload **out, svc_error *e);
int  svc_upload_finish(svc_upload *u, svc_file *out, svc_error *e);
void svc_upload_abandon(svc_upload *u);

/* ---- storage management (core/disk.c) ---- */
/* Deletes: the database row goes first (durable on return), then the bytes, off the loop (libuv's pool):
 * a crash in between leaves an orphan directory, which svc_open sweeps. Another user's item is "not
 * found" (audited), as for reading it. File: 409 while a queued, running or paused job names it. Model:
 * fine-tuned only (owner or admin; a base architecture or backbone is 403). Job: finished only, and not
 * a trial of an unfinished sweep (409 otherwise); its events, metrics and checkpoints go, the audit
 * trail keeps a record; its model (if not deleted) keeps its weights. */
int svc_file_delete(svc *s, const svc_caller *who, const char *id, svc_error *e);
int svc_model_delete(svc *s, const svc_caller *who, const char *id, svc_error *e);
int svc_job_delete(svc *s, const svc_caller *who, const char *id, svc_error *e);

typedef struct svc_usage {         /* one user's bytes on disk */
    char name[64];
    long long file_bytes, model_bytes, job_bytes;
} svc_usage;
typedef struct svc_item {          /* one deletable item and its bytes */
    char id[320];
    const char *object;            /* "file", "model", "fine_tuning.job" (static) */
    char owner[64];
    long long bytes;
} svc_item;
typedef struct svc_storage {
    svc_usage *users; int n_users; /* (heap) the caller only, or every user for an admin */
    svc_item *items; int n_items;  /* (heap) largest first, at most 50 */
    long long disk_free_bytes, disk_total_bytes, min_free_bytes;
    unsigned long long reclaimed_bytes;
} svc_storage;
void svc_storage_free(svc_storage *st);
int  svc_storage_get(svc *s, const svc_caller *who, svc_storage *out, svc_error *e);

/* ---- health ---- */
typedef struct svc_readiness {
    int workers, running, threads_per_job; const char *executor;
    long long disk_free_bytes, min_free_bytes; /* -1 = unknown */
    int disk_low;                  /* 1 = below min_free_bytes: new uploads and jobs are refused (507) */
} svc_readiness;
/* SVC_EUNAVAILABLE when not ready: shutting down, or the executor cannot reach its batch system. A low
 * disk is not "not ready" (reads, cancels and running jobs go on): it is reported in disk_low. */
int svc_ready(svc *s, const svc_caller *who, svc_readiness *out, svc_error *e);

#endif
