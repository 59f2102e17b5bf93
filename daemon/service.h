/* daemon/service.h — the job service (implements api/service.h): the durable queue, the scheduler, the
 * worker threads that run tr_run, and the progress pipeline from workers to the database and to
 * streaming clients. Everything here runs on the loop thread except the worker bodies, which talk to
 * the loop only through a mutex-protected queue + uv_async_send and read one atomic stop flag.
 * Errors: negative return + message in err. */
#ifndef CT_DAEMON_SERVICE_H
#define CT_DAEMON_SERVICE_H
#include "api/service.h"
#include <stddef.h>
#include <uv.h>

#define SVC_MAX_DATASETS 32
#define SVC_MAX_ROOTS 16
#define SVC_MAX_USER_QUOTAS 64

/* Per-user limits; 0 = unlimited. */
typedef struct svc_quota {
    int running_jobs;         /* jobs running at once */
    int queued_jobs;          /* jobs waiting in the queue (POST and resume answer 429 beyond) */
    int threads;              /* trainer threads of the user's running jobs together */
    long long upload_bytes;   /* bytes of the user's stored uploads */
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
    int workers;              /* concurrent jobs (0 = accept and queue, never run) */
    int threads_per_job;      /* trainer threads per job (the job's own "threads" may ask for fewer) */
    int cores;                /* the threads of running jobs together never exceed this */
    int preemption;           /* 1 = checkpoint and requeue a job to make room (fair share, priority) */
    double preempt_grace;     /* seconds a job runs before it may be preempted */
    long long self_uid;       /* the daemon's uid: maps to the bootstrap admin on the Unix socket */
    svc_quota quota;          /* every user's, unless overridden */
    int n_user_quotas;
    svc_user_quota user_quotas[SVC_MAX_USER_QUOTAS];
    int n_roots;              /* directories a job's training_file/validation_file may name paths in */
    char roots[SVC_MAX_ROOTS][1024];
    int checkpoint_seconds;   /* time-based checkpoints besides the per-epoch ones */
    double flush_seconds;     /* progress batching interval */
    long long upload_limit;   /* bytes per POST /v1/files */
    char builtin_dir[1024];   /* where fashion-mnist lives ("" = none) */
    int n_datasets;
    svc_dataset datasets[SVC_MAX_DATASETS];
} svc_config;

/* Opens DATA_DIR/coretuned.db, requeues jobs a previous run left `running`, and starts scheduling. */
int  svc_open(svc **out, uv_loop_t *loop, const svc_config *cfg, char *err, size_t errlen);
/* Stop starting jobs, ask running ones to checkpoint, and once every worker has been joined and the
 * last progress committed, close the loop handles and call done(ud) (from the loop). */
void svc_shutdown(svc *s, void (*done)(void *ud), void *ud);
/* After done ran (or if the loop never started): frees everything. NULL-safe. */
void svc_free(svc *s);
/* First start with no users: create the admin "admin" (uid cfg->self_uid) and a token for it.
 * OUT token ("" when users existed already). */
int svc_bootstrap(svc *s, char *token, size_t tokenlen, char *err, size_t errlen);
/* Set by main once serving: the READY/WATCHDOG hooks and the like read it. */
int svc_running_jobs(svc *s);

#endif
