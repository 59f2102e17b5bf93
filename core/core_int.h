/* core/core_int.h — what the core's files share (never included outside core/). The loop thread owns
 * everything here. Internal functions are named svc__*; each file's header comment says what it owns.
 *
 *   service.c   open, shutdown, the listener, readiness
 *   events.c    emit, the batch and its flush timer, status changes, event pages, the stream cursor
 *   jobs.c      create (idempotency, quotas), list/get/cancel/pause/resume, the job view
 *   runs.c      starting a run through the executor, its progress and done records
 *   sweeps.c    sweeps: trials as jobs, the choice, the test set (sweep_plan.c: the request expanded)
 *   schedule.c  the snapshot for the policy (sched_policy.c), quotas, fair share, preemption, queue places
 *   assets.c    names -> paths for the job spec, models, datasets, uploads
 *   dataset_upload.c  an upload staged (archive extracted by unpack.c, IDX pair) and checked
 *   access.c    identities, users, audit          stats.c  metric series, /metrics counters
 *   webhooks.c  signed webhooks when jobs and sweeps end: the outbox, a delivery thread
 *   disk.c      deletes, disk accounting and quota, the low-disk guard, retention, orphan sweep
 */
#ifndef CT_CORE_INT_H
#define CT_CORE_INT_H
#include "core/core.h"
#include "core/auth.h"
#include "core/executor.h"
#include "spec/jobspec.h"
#include "trainer/data.h"

/* Job states (jobs.status) and who moves them:
 *
 *            create            scheduler            trainer finished
 *   (none) --------> queued ------------> running ------------------> succeeded
 *                    |  ^ ^                |  |  \---- trainer error --> failed
 *              pause |  | | resume  pause  |  |
 *                    v  | |                v  | cancel (any non-final state)
 *                   paused <-------------- +  +-----------------------> cancelled
 *          (a running job is marked paused at once; its run writes a checkpoint and leaves within
 *           a step; a job is never started again while its old run lives)
 *
 *   shutdown: running -> queued after the run checkpointed; crash: running -> re-attached or queued
 *   at start; preemption: running -> queued (front of its owner's queue) after the run checkpointed. */

typedef struct run run;
struct run {                       /* the core's side of a run (the executor has its own) */
    char job_id[DB_ID_MAX];
    char arch[16];
    char out_dir[TR_PATH_MAX];
    char owner[64];
    int priority, threads;
    int gpu;                       /* the GPU the scheduler gave it (CUDA index), -1 = none */
    int assigned;                  /* the scheduler chose its device (the local executor): gpu is the truth */
    enum tr_stop stop;             /* what the core asked of it (only upwards) */
    double started_at;             /* monotonic seconds */
    int preempting;                /* stopping to make room: requeued when it leaves */
    double rate_t;                 /* steps/s: time and step of the previous progress record */
    int rate_step;
    double steps_per_s, images_per_s;
    int step, total_steps, epoch, epochs;
    double eta_seconds, best_acc, final_acc;
    json_t *latest;                /* latest metrics object */
    int resumed;                   /* continues from a checkpoint */
    json_t *exec_rec;              /* the executor's record of the run (exec_state.record), NULL = none */
    int exec_running;              /* a queueing executor said it runs (else it waits there) */
    char exec_reason[128];         /* why it waits there, "" = none */
    long long exec_estimated_start;
    run *next;
};

#define GPUMON_PERIOD_S 5.0           /* NVML sample interval: gauges are at most this old */

struct svc {
    uv_loop_t *loop;
    gpumon *gpumon;                /* NULL: no NVML (or no GPUs): no GPU gauges */
    svc_config cfg;
    db *db;
    auth_cache *auth;              /* tokens checked lately (core/auth.h): who a request is, without SQL */
    executor *exec;
    db_batch batch;
    long long last_event_id;       /* the last id handed out */
    long long event_id_reserved;   /* ids up to this are reserved durably (events.c) */
    double reserve_retry_at;       /* after a failed reservation (monotonic seconds) */
    uv_timer_t flush_timer;
    int flush_armed;
    int flush_now;                 /* a record that must not wait for the timer (checkpoints) */
    uv_timer_t sched_timer;
    int sched_waiting;             /* the last decision left a job waiting (preemption may come later) */
    int any_done;                  /* a run ended in this burst of records: schedule once drained */
    run *runs;
    int n_runs;
    int stopping, handles_open;
    void (*done)(void *);
    void *done_ud;
    void (*listener)(void *, const char *);
    void *listener_ud;
    char upload_dir[1100];
    int uploads;                   /* upload checks in flight on the thread pool (shutdown waits for them) */
    data_info ds_info[SVC_MAX_DATASETS]; /* probed at start */
    int ds_ok[SVC_MAX_DATASETS];
    /* fair share: recent starts per user (exponentially decayed) */
    struct recent { char name[64]; double score, at; } *recent;
    int n_recent, cap_recent;
    /* queue positions and estimated starts, recomputed when the queue or the runs change */
    int order_valid;
    struct order { char id[DB_ID_MAX]; int pos; double est; } *order;
    int n_order, cap_order;
    /* sweeps (sweeps.c) */
    int active_sweeps;             /* queued or running: advance() has work */
    int sweeps_waiting;            /* a trial waits for quota room: look again on the scheduler's tick */
    char (*seen)[DB_ID_MAX];       /* trial jobs whose end was reported (trial_finished) */
    int n_seen, cap_seen;
    struct sweep_test *tests;      /* test-set evaluations in flight */
    struct webhooks *hooks;        /* webhooks.c; NULL = no --webhook-url */
    /* /metrics */
    hist db_write;                 /* seconds per committed transaction */
    unsigned long long preemptions, auth_failures;
    /* storage management (disk.c) */
    int disk_work;                 /* removals on libuv's pool: shutdown waits for them */
    int disk_hold;                 /* below --min-free-mb: the scheduler starts nothing (schedule.c) */
    unsigned long long reclaimed_bytes;
    double retention_at;           /* monotonic seconds of the last retention pass */
    struct disk_memo { char id[DB_ID_MAX]; long long bytes; } *disk_memo; /* finished jobs' bytes, by id hash */
    int n_disk_memo, cap_disk_memo; /* cap a power of two (or 0), at most half full */
};

/* helpers shared by the files */
int  svc__is_final(enum job_status status);
run *svc__find_run(svc *s, const char *job_id);
int  svc__storage_error(svc *s, svc_error *e);          /* 500 with the database's message */
int  svc__mkdir_p(const char *path);
int  svc__file_exists(const char *path);
void svc__fine_tuned_name(const db_job *j, const char *arch, char *out, size_t n);

/* events.c */
void svc__notify(svc *s, const char *job_id);
void svc__emit(svc *s, const char *job_id, const char *type, const char *level, json_t *data, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* An event that is not batched (its id is handed out as for any other): the caller commits it with
 * the row it belongs to and frees e->message and e->data. data: stolen reference or NULL. */
void svc__event_fill(svc *s, db_event *e, const char *job_id, const char *type, const char *level, json_t *data,
                     const char *msg);
int  svc__flush(svc *s);                                 /* commit the batch now */
void svc__flush_later(svc *s);                           /* within flush_seconds */
db_status *svc__status_change(svc *s, const char *job_id, enum job_status status);
void svc__set_error(db_status *c, const char *code, const char *message, const char *param);
int  svc__events_init(svc *s);
int  svc__events_seed(svc *s);                           /* at open: number above every id ever served */
void svc__events_close(svc *s, uv_close_cb cb);

/* jobs.c: who NULL = the service itself; another user's job is "not found" (and audited). */
int  svc__get_job(svc *s, const svc_caller *who, const char *id, db_job *j, svc_error *e);

json_t *svc__split_priority(const json_t *body, int *prio, svc_error *e); /* the body without "priority" */
/* Would svc_job_create accept this body from who (every check but the queue quota)? */
int  svc__job_check(svc *s, const svc_caller *who, const json_t *body, svc_error *e);

/* runs.c */
void svc__start_job(svc *s, const char *id, int gpu); /* gpu: the scheduler's (-1 = none) */
int  svc__adopt_run(svc *s, const char *id);             /* re-attach a `running` job after a restart */
void svc__runs_free(svc *s);
void svc__stop_run(svc *s, run *r, enum tr_stop mode);
extern const exec_sink svc__sink;                        /* ud = svc */

/* schedule.c */
svc_quota svc__quota_of(svc *s, const char *owner);
int  svc__over_quota(svc_error *e, const char *limit, long long value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int  svc__check_queued_quota(svc *s, const char *owner, svc_error *e);
void svc__note_start(svc *s, const char *owner);
void svc__schedule(svc *s);
void svc__queue_place(svc *s, const char *id, int *pos, long long *est);
int  svc__schedule_init(svc *s);
void svc__finish_shutdown(svc *s);

/* disk.c */
long long svc__disk_free(svc *s, long long *total);     /* bytes free to the daemon on the data dir; -1 unknown */
int  svc__usage(svc *s, const char *owner, long long *files, long long *models, long long *jobs);
int  svc__disk_guard(svc *s, const char *what, svc_error *e);        /* 507 below --min-free-mb */
int  svc__disk_quota(svc *s, const char *owner, long long more, svc_error *e); /* 429 naming disk_mb */
void svc__retention(svc *s, int now);                    /* now = 0: at most every minute */
void svc__disk_free_memo(svc *s);                        /* the finished jobs' bytes (svc_free) */
void svc__sweep_orphans(svc *s);                       /* service.c: once no run is left */
void svc__schedule_close(svc *s, uv_close_cb cb);

/* assets.c */
int svc__resolve(void *ud, enum jobspec_ref kind, const char *name, char *path, char *arch, char *err, size_t errlen);
typedef struct svc__resolve_ctx {
    svc *s;
    const char *owner;             /* the job's owner: only their uploads and fine-tuned models */
    int admin;
} svc__resolve_ctx;
int svc__owned_by(const char *row_owner, const char *owner, int admin);

/* dataset_upload.c: staging an upload under files/tmp and checking it (the caller renames and records) */
#define SVC_EXTRACT_ENTRIES 100000          /* defaults of the svc_config caps */
#define SVC_EXTRACT_BYTES (4096LL << 20)
#define SVC_EXTRACT_RATIO 100.0
struct unpack_limits;
void svc__strip_prefix(char *msg, const char *prefix);
/* Extract archive into stage (an empty folder); OUT root (the dataset's folder inside stage), *bytes written. */
int svc__stage_archive(const char *archive, const char *stage, const struct unpack_limits *lim, char *root,
                       size_t rootlen, long long *bytes, svc_error *e);
/* parts[0..1]: an IDX images and labels file in either order, renamed into stage under the trainer's
 * names. OUT *bytes, *images_name (the images part's filename, borrowed from parts). */
int svc__stage_idx(const svc_upload_part *parts, const char *stage, long long *bytes, const char **images_name,
                   svc_error *e);
/* data_inspect(root) after the IDX expansion caps; hide: the prefix cut from messages. OUT *out. */
int svc__inspect(const char *root, const char *hide, long long upload_bytes, const struct unpack_limits *lim,
                 data_report *out, svc_error *e);

/* sweep_plan.c: a sweep request, validated (borrowed from the body) and expanded */
#define SWEEP_MAX_PARAMS 8
typedef struct svc__sweep_req {
    json_t *job, *params, *search, *objective, *seeds;
    const char *test_file;
    int max_parallel, random_n, maximize;
    uint64_t random_seed;
    const char *keys[SWEEP_MAX_PARAMS];   /* the parameters' paths, sorted */
    int n_keys;
} svc__sweep_req;
int  svc__sweep_parse(const json_t *body, svc__sweep_req *r, svc_error *e);
/* OUT *out: a JSON array of {path: value}, one per setting (new reference) */
int  svc__sweep_settings(const svc__sweep_req *r, json_t **out, svc_error *e);
/* a trial's job body: the sweep's job with the setting, the seed, the sweep's suffix and its id in metadata */
json_t *svc__trial_body(const json_t *sweep, const json_t *setting, long long seed, const char *sweep_id, int idx);

/* sweeps.c */
int  svc__sweeps_open(svc *s);                           /* at start */
void svc__sweeps_advance(svc *s);                        /* after jobs ended, on the scheduler's tick */
/* who may see sweep id; *final = it has ended and nothing more will follow (for the event stream) */
int  svc__sweep_visible(svc *s, const svc_caller *who, const char *id, int *final, svc_error *e);
void svc__sweep_test(svc *s, const char *sweep_id, const char *job_id, const char *test_file);
int  svc__sweep_testing(svc *s, const char *sweep_id);
void svc__sweeps_free(svc *s);

/* webhooks.c: the outbox is written with the batch; delivery is off the loop */
/* event_id NULL = a new one; a fixed one makes a second enqueue of the same event a no-op (the outbox's key) */
void svc__webhook_enqueue(svc *s, const char *type, const char *object_id, const char *event_id);
int  svc__webhooks_open(svc *s, char *err, size_t errlen);
void svc__webhooks_close(svc *s);                        /* at shutdown, before the loop's last turn */
void svc__webhooks_free(svc *s);

/* access.c */
int svc__need_admin(svc *s, const svc_caller *who, const char *what, svc_error *e);

#endif
