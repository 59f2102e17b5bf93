/* daemon/service.c — the job service: queue, scheduler, workers, progress pipeline (see service.h).
 *
 * Threads. The loop thread owns everything in struct svc (the database connection, the batch, the runs
 * and their status). A worker thread owns one tr_run; it touches only its run's spec/out_dir (read-only
 * after start), the shared record queue (under qlock) and its atomic stop flag; its result fields are
 * written before it pushes its REC_DONE record and read by the loop only after draining that record.
 *
 * Job states (DB column jobs.status) and who moves them:
 *
 *            create            scheduler            trainer finished
 *   (none) --------> queued ------------> running ------------------> succeeded
 *                    |  ^ ^                |  |  \---- trainer error --> failed
 *              pause |  | | resume  pause  |  |
 *                    v  | |                v  | cancel (any non-final state)
 *                   paused <-------------- +  +-----------------------> cancelled
 *          (a running job is marked paused at once; its worker writes a checkpoint and
 *           leaves within a step; a job is never started again while its old worker lives)
 *
 *   shutdown: running -> queued after the worker checkpointed; crash: running -> queued at start.
 *   preemption: running -> queued (at the front of its owner's queue) after the worker checkpointed.
 *
 * Who may see what: every job, upload and fine-tuned model has an owner (a user name); a caller who
 * is not an admin gets "not found" for anything not theirs (the same answer as for an id that does
 * not exist, so ids of other users cannot be probed), and the attempt is audited.
 */
#define _GNU_SOURCE
#include "daemon/service.h"
#include "api/jobspec.h"
#include "daemon/auth.h"
#include "daemon/sched.h"
#include "api/lttb.h"
#include "common/log.h"
#include "storage/db.h"
#include "trainer/data.h"
#include "trainer/trainer.h"
#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const base_archs[] = {"resnet18", "resnet34", "resnet50", "resnet20", "resnet32", "resnet56"};
#define N_BASE ((int)(sizeof base_archs / sizeof base_archs[0]))

typedef struct run run;

enum rec_kind { REC_PROGRESS, REC_DONE };
typedef struct rec {               /* one record from a worker to the loop */
    enum rec_kind kind;
    run *r;
    tr_progress p;
    char ckpt[TR_PATH_MAX];        /* p.checkpoint_path copied (the worker's buffer is not ours) */
} rec;

struct run {
    svc *s;
    char job_id[DB_ID_MAX];
    tr_spec spec;
    char out_dir[TR_PATH_MAX];
    int resume;
    pthread_t thread;
    atomic_int stop;               /* enum tr_stop: loop writes, worker reads at step boundaries */
    /* worker-written, loop-read after REC_DONE */
    int rc;
    tr_result res;
    char err[512];
    /* loop-owned */
    char owner[64];
    int priority, threads;
    double started_at;             /* monotonic seconds */
    int preempting;                /* stopping to make room: requeued when its worker leaves */
    double rate_t;                 /* steps/s: time and step of the previous progress record */
    int rate_step;
    double steps_per_s, images_per_s;
    int step, total_steps, epoch, epochs;
    double eta_seconds, best_acc, final_acc;
    json_t *latest;                /* latest metrics object */
    run *next;
};

struct svc {
    uv_loop_t *loop;
    svc_config cfg;
    db *db;
    db_batch batch;
    long long last_event_id;
    uv_async_t async;
    uv_timer_t flush_timer;
    int flush_armed;
    int flush_now;                 /* a record that must not wait for the timer (checkpoints) */
    uv_timer_t sched_timer;
    int sched_waiting;             /* the last decision left a job waiting (preemption may come later) */
    pthread_mutex_t qlock;
    rec *q;                        /* guarded by qlock */
    int qn, qcap;
    rec *spare;                    /* loop-owned: swapped with q on each drain */
    int spare_cap;
    run *runs;
    int n_runs;
    int stopping, handles_open;
    void (*done)(void *);
    void *done_ud;
    void (*listener)(void *, const char *);
    void *listener_ud;
    char upload_dir[1100];
    data_info ds_info[SVC_MAX_DATASETS]; /* probed at start */
    int ds_ok[SVC_MAX_DATASETS];
    /* fair share: recent starts per user (exponentially decayed, time constant RECENT_TAU) */
    struct recent { char name[64]; double score, at; } *recent;
    int n_recent;
    /* queue positions and estimated starts, recomputed when the queue or the runs change */
    int order_valid;
    struct order { char id[DB_ID_MAX]; int pos; double est; } *order;
    int n_order;
    /* /metrics */
    prom_hist db_write;            /* seconds per committed transaction */
    unsigned long long preemptions, auth_failures;
};

#define RECENT_TAU 600.0
static const double db_write_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

int svc_fail(svc_error *e, enum svc_err kind, const char *code, const char *param, const char *fmt, ...)
{
    e->kind = kind;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return kind;
}

static long long now_s(void) { return (long long)time(NULL); }

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static json_t *jreal(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *jstr(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *jtime(long long t) { return t > 0 ? json_integer(t) : json_null(); }

static json_t *jparse(const char *text)
{
    if (!text) return json_null();
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_null();
}

static void random_id(char *out, size_t n, const char *prefix)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char raw[20];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        for (size_t i = 0; i < sizeof raw; i++) raw[i] = (unsigned char)rand();
    }
    char tail[21];
    for (size_t i = 0; i < sizeof raw; i++) tail[i] = alpha[raw[i] % (sizeof alpha - 1)];
    tail[20] = 0;
    snprintf(out, n, "%s%s", prefix, tail);
}

static int is_final(const char *status)
{
    return !strcmp(status, "succeeded") || !strcmp(status, "failed") || !strcmp(status, "cancelled");
}

static run *find_run(svc *s, const char *job_id)
{
    for (run *r = s->runs; r; r = r->next)
        if (!strcmp(r->job_id, job_id)) return r;
    return NULL;
}

static int mkdir_p(const char *path)
{
    char tmp[TR_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST) return -errno;
    return 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---------------- events and the batch ---------------- */

static void notify(svc *s, const char *job_id)
{
    if (s->listener) s->listener(s->listener_ud, job_id);
}

/* Add an event (data: stolen reference or NULL) to the batch; it is visible to readers at once
 * (they merge the batch) and committed with the next flush. */
__attribute__((format(printf, 6, 7)))
static void emit(svc *s, const char *job_id, const char *type, const char *level, json_t *data, const char *fmt, ...)
{
    db_event *e = db_batch_event(&s->batch);
    if (!e) { json_decref(data); LOG(LOG_ERROR, "msg=\"out of memory for an event\" job=%s", job_id); return; }
    snprintf(e->job_id, sizeof e->job_id, "%.47s", job_id);
    e->id = ++s->last_event_id;
    e->created_at = now_s();
    e->type = type;
    e->level = level;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    e->message = strdup(msg);
    e->data = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    notify(s, job_id);
}

static int flush(svc *s)
{
    if (db_batch_empty(&s->batch)) return 0;
    char err[256];
    double t0 = mono();
    int rc = db_batch_write(s->db, &s->batch, err, sizeof err);
    prom_hist_observe(&s->db_write, mono() - t0);
    if (rc) {
        LOG(LOG_ERROR, "msg=\"cannot commit progress; will retry\" err=\"%s\"", err);
        return rc;
    }
    db_batch_reset(&s->batch);
    return 0;
}

static void on_flush_timer(uv_timer_t *t)
{
    svc *s = t->data;
    s->flush_armed = 0;
    if (flush(s) != 0 && !s->flush_armed && !s->stopping) { /* retry later */
        s->flush_armed = 1;
        uv_timer_start(&s->flush_timer, on_flush_timer, (uint64_t)(s->cfg.flush_seconds * 1000), 0);
    }
}

static void flush_later(svc *s)
{
    if (s->flush_armed || db_batch_empty(&s->batch)) return;
    s->flush_armed = 1;
    uv_timer_start(&s->flush_timer, on_flush_timer, (uint64_t)(s->cfg.flush_seconds * 1000), 0);
}

/* A status change (plus an event) committed now: the caller acknowledges it to a client. */
static db_status *status_change(svc *s, const char *job_id, const char *status)
{
    db_status *c = db_batch_status(&s->batch);
    if (!c) return NULL;
    snprintf(c->job_id, sizeof c->job_id, "%.47s", job_id);
    snprintf(c->status, sizeof c->status, "%s", status);
    s->order_valid = 0;
    return c;
}

static void set_error(db_status *c, const char *code, const char *message, const char *param)
{
    c->error_code = code ? strdup(code) : NULL;
    c->error_message = message ? strdup(message) : NULL;
    c->error_param = param && *param ? strdup(param) : NULL;
}

/* ---------------- names -> paths (the jobspec resolver) ---------------- */

static int safe_name(const char *name)
{
    if (!*name || strlen(name) > 200 || name[0] == '.') return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return 0;
    return 1;
}

static const char *arch_of_name(const char *name)
{
    const char *best = NULL;
    for (int i = 0; i < N_BASE; i++)
        if (!strncmp(name, base_archs[i], strlen(base_archs[i])) && (!best || strlen(base_archs[i]) > strlen(best)))
            best = base_archs[i];
    return best;
}

static int builtin_available(svc *s)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/fashion-mnist", s->cfg.builtin_dir);
    struct stat st;
    return s->cfg.builtin_dir[0] && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A path a job names: allowed only inside a configured dataset root once every symlink is resolved,
 * and never with a ".." segment. OUT path (TR_PATH_MAX). */
static int root_path(svc *s, const char *name, char *path)
{
    if (name[0] != '/' || s->cfg.n_roots == 0 || strstr(name, "/../") || strstr(name, "/./")) return -ENOENT;
    size_t n = strlen(name);
    if (n >= 3 && !strcmp(name + n - 3, "/..")) return -ENOENT;
    char real[PATH_MAX], root[PATH_MAX];
    if (!realpath(name, real)) return -ENOENT;
    for (int i = 0; i < s->cfg.n_roots; i++) {
        if (!realpath(s->cfg.roots[i], root)) continue;
        size_t rn = strlen(root);
        if (!strncmp(real, root, rn) && (real[rn] == '/' || (rn == 1 && root[0] == '/')) && strlen(real) < TR_PATH_MAX) {
            memcpy(path, real, strlen(real) + 1); /* length checked above */
            return 0;
        }
    }
    return -ENOENT;
}

typedef struct resolve_ctx {
    svc *s;
    const char *owner;             /* the job's owner: only their uploads and fine-tuned models */
    int admin;
} resolve_ctx;

static int owned_by(const char *row_owner, const char *owner, int admin)
{
    return admin || (row_owner[0] && owner && !strcmp(row_owner, owner));
}

static int resolver(void *ud, enum jobspec_ref kind, const char *name, char *path, char *arch, char *err,
                    size_t errlen)
{
    resolve_ctx *rc = ud;
    svc *s = rc->s;
    if (kind == JOBSPEC_MODEL) {
        for (int i = 0; i < N_BASE; i++)
            if (!strcmp(name, base_archs[i])) {
                path[0] = 0;
                snprintf(arch, 16, "%s", name);
                return 0;
            }
        db_model m;
        if (db_model_get(s->db, name, &m) == 0 && owned_by(m.owner, rc->owner, rc->admin)) {
            if (!file_exists(m.path)) {
                snprintf(err, errlen, "model '%s' has no weights on disk", name);
                return -ENOENT;
            }
            snprintf(path, TR_PATH_MAX, "%s", m.path);
            snprintf(arch, 16, "%s", m.arch);
            return 0;
        }
        if (safe_name(name)) {
            char p[TR_PATH_MAX + 64];
            snprintf(p, sizeof p, "%s/models/%s.safetensors", s->cfg.data_dir, name);
            const char *a = arch_of_name(name);
            if (file_exists(p) && strlen(p) < TR_PATH_MAX) {
                /* the name says it (resnet50-mocov2) or the tensors do (slower: reads the file) */
                char found[16] = "", why[256];
                int in_ch, small;
                if (!a && tr_weights_arch(p, found, &in_ch, &small, why, sizeof why) != 0) {
                    snprintf(err, errlen, "cannot tell the architecture of backbone '%s': %s", name, why);
                    return -EINVAL;
                }
                snprintf(path, TR_PATH_MAX, "%.1023s", p);
                snprintf(arch, 16, "%s", a ? a : found);
                return 0;
            }
        }
        snprintf(err, errlen, "model '%.200s' does not exist (see GET /v1/models)", name);
        return -ENOENT;
    }
    if (builtin_available(s) && (!strcmp(name, "fashion-mnist-train") || !strcmp(name, "fashion-mnist-test"))) {
        snprintf(path, TR_PATH_MAX, "%s", name);
        return 0;
    }
    for (int i = 0; i < s->cfg.n_datasets; i++)
        if (!strcmp(name, s->cfg.datasets[i].name)) {
            snprintf(path, TR_PATH_MAX, "%s", s->cfg.datasets[i].path);
            return 0;
        }
    db_file f;
    if (!strncmp(name, "file-", 5) && db_file_get(s->db, name, &f) == 0 && owned_by(f.owner, rc->owner, rc->admin)) {
        snprintf(path, TR_PATH_MAX, "%s", f.path);
        return 0;
    }
    if (root_path(s, name, path) == 0) return 0;
    snprintf(err, errlen, "'%.200s' is neither a dataset, an uploaded file nor a path inside a dataset root"
             " (see GET /v1/datasets)", name);
    return -ENOENT;
}

/* ---------------- scheduling snapshot, quotas, fair-share bookkeeping ---------------- */

static svc_quota quota_of(svc *s, const char *owner)
{
    svc_quota q = s->cfg.quota;
    for (int i = 0; i < s->cfg.n_user_quotas; i++) {
        const svc_user_quota *u = &s->cfg.user_quotas[i];
        if (!owner || strcmp(u->name, owner)) continue;
        if (u->q.running_jobs >= 0) q.running_jobs = u->q.running_jobs;
        if (u->q.queued_jobs >= 0) q.queued_jobs = u->q.queued_jobs;
        if (u->q.threads >= 0) q.threads = u->q.threads;
        if (u->q.upload_bytes >= 0) q.upload_bytes = u->q.upload_bytes;
    }
    return q;
}

static void sched_quota_cb(void *ud, const char *owner, sched_quota *out)
{
    svc_quota q = quota_of(ud, owner);
    out->running_jobs = q.running_jobs;
    out->threads = q.threads;
}

static struct recent *recent_entry(svc *s, const char *owner, int create)
{
    for (int i = 0; i < s->n_recent; i++)
        if (!strcmp(s->recent[i].name, owner)) return &s->recent[i];
    if (!create) return NULL;
    struct recent *r = realloc(s->recent, (size_t)(s->n_recent + 1) * sizeof *r);
    if (!r) return NULL;
    s->recent = r;
    r = &s->recent[s->n_recent++];
    snprintf(r->name, sizeof r->name, "%s", owner);
    r->score = 0;
    r->at = mono();
    return r;
}

static double sched_recent_cb(void *ud, const char *owner)
{
    struct recent *r = recent_entry(ud, owner, 0);
    return r ? r->score * exp(-(mono() - r->at) / RECENT_TAU) : 0;
}

static void note_start(svc *s, const char *owner)
{
    struct recent *r = recent_entry(s, owner, 1);
    if (!r) return;
    double t = mono();
    r->score = r->score * exp(-(t - r->at) / RECENT_TAU) + 1;
    r->at = t;
}

static run *find_run(svc *s, const char *job_id);

typedef struct snapshot {
    db_queued *q;
    sched_job *jobs;
    int nj, capj;
    sched_run *runs;
    run **run_of;
    double *finish;
    int nr;
} snapshot;

static int snap_add(void *ud, const db_queued *q)
{
    snapshot *sn = ud;
    if (sn->nj == sn->capj) {
        int cap = sn->capj ? 2 * sn->capj : 64;
        db_queued *a = realloc(sn->q, (size_t)cap * sizeof *a);
        if (!a) return 1;
        sn->q = a;
        sn->capj = cap;
    }
    sn->q[sn->nj++] = *q;
    return 0;
}

static void snapshot_free(snapshot *sn)
{
    free(sn->q); free(sn->jobs); free(sn->runs); free(sn->run_of); free(sn->finish);
    memset(sn, 0, sizeof *sn);
}

static int snapshot_take(svc *s, snapshot *sn, sched_cfg *c)
{
    memset(sn, 0, sizeof *sn);
    if (db_job_queue(s->db, snap_add, sn) != 0) goto fail;
    sn->jobs = calloc((size_t)sn->nj + 1, sizeof *sn->jobs);
    sn->runs = calloc((size_t)s->n_runs + 1, sizeof *sn->runs);
    sn->run_of = calloc((size_t)s->n_runs + 1, sizeof *sn->run_of);
    sn->finish = calloc((size_t)s->n_runs + 1, sizeof *sn->finish);
    if (!sn->jobs || !sn->runs || !sn->run_of || !sn->finish) goto fail;
    for (int i = 0; i < sn->nj; i++) {
        db_queued *q = &sn->q[i];
        sn->jobs[i] = (sched_job){.id = q->id, .owner = q->owner, .priority = q->priority,
                                  .threads = q->threads > 0 ? q->threads : 1, .preempted = q->preempted,
                                  .seq = q->seq, .blocked = find_run(s, q->id) != NULL};
    }
    double now = mono();
    for (run *r = s->runs; r; r = r->next) {
        int stop = atomic_load(&r->stop);
        sn->run_of[sn->nr] = r;
        sn->finish[sn->nr] = isfinite(r->eta_seconds) && r->eta_seconds > 0 ? now + r->eta_seconds : 0;
        sn->runs[sn->nr++] = (sched_run){.id = r->job_id, .owner = r->owner, .priority = r->priority,
                                          .threads = r->threads, .started_at = r->started_at,
                                          .stopping = stop != TR_RUN, .preempting = r->preempting};
    }
    *c = (sched_cfg){.cores = s->cfg.cores, .workers = s->cfg.workers, .preemption = s->cfg.preemption,
                     .grace = s->cfg.preempt_grace, .quota = sched_quota_cb, .recent = sched_recent_cb, .ud = s};
    return 0;
fail:
    snapshot_free(sn);
    return -ENOMEM;
}

/* Queue position (1 = next) and estimated start (unix seconds, 0 = unknown) of a queued job. */
static void queue_place(svc *s, const char *id, int *pos, long long *est)
{
    *pos = 0;
    *est = 0;
    if (!s->order_valid) {
        snapshot sn;
        sched_cfg c;
        s->n_order = 0;
        if (snapshot_take(s, &sn, &c) != 0) return;
        int *p = calloc((size_t)sn.nj + 1, sizeof *p);
        double *e = calloc((size_t)sn.nj + 1, sizeof *e);
        struct order *o = realloc(s->order, ((size_t)sn.nj + 1) * sizeof *o);
        double mean = 0, now = mono();
        db_job_mean_duration(s->db, &mean);
        if (p && e && o) {
            s->order = o;
            sched_order(&c, sn.jobs, sn.nj, sn.runs, sn.nr, sn.finish, now, mean, p, e);
            for (int i = 0; i < sn.nj; i++) {
                snprintf(o[i].id, sizeof o[i].id, "%s", sn.jobs[i].id);
                o[i].pos = p[i];
                o[i].est = e[i] > 0 ? (double)now_s() + (e[i] - now) : 0;
            }
            s->n_order = sn.nj;
            s->order_valid = 1;
        } else if (o) {
            s->order = o;
        }
        free(p); free(e);
        snapshot_free(&sn);
    }
    for (int i = 0; i < s->n_order; i++)
        if (!strcmp(s->order[i].id, id)) { *pos = s->order[i].pos; *est = (long long)ceil(s->order[i].est); return; }
}

/* ---------------- JSON views ---------------- */

static json_t *event_json(long long id, long long created_at, const char *type, const char *level,
                          const char *message, const char *data)
{
    char eid[32];
    snprintf(eid, sizeof eid, "ftevent-%lld", id);
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:o}", "object", "fine_tuning.job.event", "id", eid,
                     "created_at", (json_int_t)created_at, "level", level ? level : "info", "message",
                     message ? message : "", "type", type, "data", jparse(data));
}

static json_t *job_json(svc *s, const db_job *j)
{
    run *r = find_run(s, j->id);
    json_t *method = jparse(j->method);
    json_t *ext = jparse(j->extensions);
    json_t *hp = json_object_get(json_object_get(method, json_string_value(json_object_get(method, "type"))),
                                 "hyperparameters");
    int step = j->step, total = j->total_steps, epoch = j->epoch, epochs = j->epochs;
    double eta = j->eta_seconds, best = j->best_valid_accuracy, fin = j->final_valid_accuracy;
    long long eta_from = j->progress_at;
    json_t *metrics = jparse(j->metrics);
    if (r && r->step > 0) { /* the database is up to one flush behind the loop */
        step = r->step; total = r->total_steps; epoch = r->epoch; epochs = r->epochs;
        eta = r->eta_seconds; eta_from = now_s();
        if (isfinite(r->best_acc)) best = r->best_acc;
        if (isfinite(r->final_acc)) fin = r->final_acc;
        json_decref(metrics);
        metrics = json_deep_copy(r->latest);
    }
    json_error_t pe;
    json_t *o = json_pack_ex(&pe, 0, "{s:s, s:s, s:s, s:I, s:o, s:o, s:s, s:s, s:o, s:o, s:O, s:I, s:o, s:o, s:s, s:o, s:[], "
                          "s:o, s:[]}",
                          "object", "fine_tuning.job", "id", j->id, "status", j->status, "created_at",
                          (json_int_t)j->created_at, "started_at", jtime(j->started_at), "finished_at",
                          jtime(j->finished_at), "model", j->model, "training_file", j->training_file,
                          "validation_file", jstr(j->validation_file), "method", method, "hyperparameters",
                          hp ? hp : json_null(), "seed", (json_int_t)j->seed, "suffix", jstr(j->suffix),
                          "metadata", jparse(j->metadata), "organization_id", "coretuned", "fine_tuned_model",
                          jstr(j->fine_tuned_model), "result_files", "trained_tokens", json_null(),
                          "integrations");
    if (!o) {
        LOG(LOG_ERROR, "msg=\"cannot render job\" job=%s err=\"%s\"", j->id, pe.text);
        json_decref(ext);
        json_decref(metrics);
        return NULL;
    }
    json_object_set_new(o, "user_provided_suffix", jstr(j->suffix));
    json_object_set_new(o, "architecture", json_incref(json_object_get(ext, "architecture")));
    json_object_set_new(o, "data", json_incref(json_object_get(ext, "data")));
    json_decref(ext);
    json_object_set_new(o, "progress", json_pack("{s:i, s:i, s:i, s:i}", "epoch", epoch, "epochs", epochs, "step",
                                                 step, "total_steps", total));
    json_object_set_new(o, "metrics", json_is_object(metrics) ? metrics : (json_decref(metrics), json_object()));
    json_object_set_new(o, "best_valid_accuracy", jreal(best));
    json_object_set_new(o, "final_valid_accuracy", jreal(fin));
    json_object_set_new(o, "owner", j->owner[0] ? json_string(j->owner) : json_null());
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "threads", json_integer(j->threads));
    if (!strcmp(j->status, "queued")) {
        int pos = 0;
        long long est = 0;
        queue_place(s, j->id, &pos, &est);
        json_object_set_new(o, "queue_position", pos > 0 ? json_integer(pos) : json_null());
        json_object_set_new(o, "estimated_start", est > 0 ? json_integer(est) : json_null());
    } else {
        json_object_set_new(o, "queue_position", json_null());
        json_object_set_new(o, "estimated_start", json_null());
    }
    if (!strcmp(j->status, "running") && isfinite(eta) && eta_from > 0)
        json_object_set_new(o, "estimated_finish", json_integer(eta_from + (long long)ceil(eta)));
    else
        json_object_set_new(o, "estimated_finish", json_null());
    if (j->error_code || j->error_message)
        json_object_set_new(o, "error", json_pack("{s:o, s:o, s:o}", "code", jstr(j->error_code), "message",
                                                  jstr(j->error_message), "param", jstr(j->error_param)));
    else
        json_object_set_new(o, "error", json_null());
    return o;
}

/* who NULL = the service itself. Another user's job is "not found" (and audited). */
static int get_job(svc *s, const svc_caller *who, const char *id, db_job *j, svc_error *e)
{
    int rc = db_job_get(s->db, id, j);
    if (rc == 0 && who && !who->admin && strcmp(j->owner, who->name) != 0) {
        svc_audit(s, who, NULL, "authz_denied", id, "denied", "a job of another user");
        db_job_clear(j);
        rc = -ENOENT;
    }
    if (rc == -ENOENT) return svc_fail(e, SVC_ENOTFOUND, "job_not_found", "id", "no fine-tuning job '%.100s'", id);
    if (rc) return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    return 0;
}

static int job_reply(svc *s, const char *id, json_t **out, svc_error *e)
{
    db_job j;
    int rc = get_job(s, NULL, id, &j, e);
    if (rc) return rc;
    *out = job_json(s, &j);
    db_job_clear(&j);
    return *out ? 0 : svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
}

/* ---------------- workers ---------------- */

static void push(svc *s, const rec *x)
{
    pthread_mutex_lock(&s->qlock);
    if (s->qn == s->qcap) {
        int cap = s->qcap ? 2 * s->qcap : 64;
        rec *q = realloc(s->q, (size_t)cap * sizeof *q);
        if (!q) { /* cannot grow: keep the record count honest by waiting for the loop to drain */
            pthread_mutex_unlock(&s->qlock);
            uv_async_send(&s->async);
            usleep(1000);
            push(s, x);
            return;
        }
        s->q = q;
        s->qcap = cap;
    }
    s->q[s->qn++] = *x;
    pthread_mutex_unlock(&s->qlock);
    uv_async_send(&s->async); /* coalesces: the loop drains the whole queue per wake-up */
}

static void on_progress(void *ud, const tr_progress *p)
{
    run *r = ud;
    rec x;
    memset(&x, 0, sizeof x);
    x.kind = REC_PROGRESS;
    x.r = r;
    x.p = *p;
    if (p->checkpoint_path) snprintf(x.ckpt, sizeof x.ckpt, "%s", p->checkpoint_path);
    x.p.checkpoint_path = NULL;
    push(r->s, &x);
}

static int on_should_stop(void *ud)
{
    run *r = ud;
    return atomic_load(&r->stop);
}

static void *worker_main(void *arg)
{
    run *r = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the loop thread */
    tr_callbacks cb = {.progress = on_progress, .should_stop = on_should_stop, .ud = r};
    r->rc = tr_run(&r->spec, r->out_dir, r->resume, &cb, &r->res, r->err, sizeof r->err);
    rec x;
    memset(&x, 0, sizeof x);
    x.kind = REC_DONE;
    x.r = r;
    push(r->s, &x);
    return NULL;
}

static void run_free(run *r)
{
    if (!r) return;
    json_decref(r->latest);
    free(r);
}

static void fail_job_now(svc *s, const char *id, const char *code, const char *message, const char *param)
{
    db_status *c = status_change(s, id, "failed");
    if (c) {
        c->finished_at = now_s();
        set_error(c, code, message, param);
    }
    emit(s, id, "error", "error", json_pack("{s:s, s:s}", "code", code, "message", message), "Job failed: %s", message);
    emit(s, id, "status", "info", json_pack("{s:s}", "status", "failed"), "Job failed");
    flush(s);
}

/* The body without "priority" (a scheduling field, not part of the training spec): a new reference, or
 * NULL with e filled. OUT *prio (default 5). */
static json_t *split_priority(const json_t *body, int *prio, svc_error *e)
{
    *prio = 5;
    json_t *copy = json_is_object(body) ? json_copy((json_t *)body) : json_incref((json_t *)body);
    json_t *p = json_object_get(copy, "priority");
    if (p && !json_is_null(p)) {
        if (!json_is_integer(p) || json_integer_value(p) < 0 || json_integer_value(p) > 9) {
            json_decref(copy);
            svc_fail(e, SVC_EINVAL, "invalid_value", "priority", "priority must be an integer from 0 to 9");
            return NULL;
        }
        *prio = (int)json_integer_value(p);
    }
    if (json_is_object(copy)) json_object_del(copy, "priority");
    return copy;
}

static void start_job(svc *s, const char *id)
{
    db_job j;
    svc_error e;
    if (get_job(s, NULL, id, &j, &e)) return;
    run *r = calloc(1, sizeof *r);
    json_t *full = json_loads(j.body, 0, NULL);
    int prio;
    json_t *body = full ? split_priority(full, &prio, &e) : NULL;
    json_decref(full);
    char param[128], err[512];
    int rc = -ENOMEM;
    resolve_ctx rctx = {s, j.owner, j.owner[0] == 0};
    if (r && body) rc = jobspec_parse(body, resolver, &rctx, &r->spec, param, sizeof param, err, sizeof err);
    else snprintf(err, sizeof err, "out of memory"), param[0] = 0;
    json_decref(body);
    if (rc) {
        LOG(LOG_WARN, "msg=\"job cannot start\" job=%s err=\"%s\"", id, err);
        fail_job_now(s, id, "invalid_spec", err, param);
        run_free(r);
        db_job_clear(&j);
        return;
    }
    r->s = s;
    snprintf(r->job_id, sizeof r->job_id, "%.47s", id);
    snprintf(r->owner, sizeof r->owner, "%s", j.owner);
    r->priority = j.priority;
    r->spec.seed = (uint64_t)j.seed;
    if (r->spec.threads <= 0 || r->spec.threads > s->cfg.threads_per_job) r->spec.threads = s->cfg.threads_per_job;
    r->threads = r->spec.threads;
    r->started_at = mono();
    r->spec.checkpoint_seconds = s->cfg.checkpoint_seconds;
    snprintf(r->out_dir, sizeof r->out_dir, "%.900s/jobs/%.47s", s->cfg.data_dir, id);
    char state[TR_PATH_MAX + 32];
    snprintf(state, sizeof state, "%s/state.safetensors", r->out_dir);
    r->resume = file_exists(state);
    r->step = r->resume ? j.step : 0;
    r->total_steps = j.total_steps;
    r->epoch = j.epoch;
    r->epochs = j.epochs;
    r->eta_seconds = NAN;
    r->best_acc = j.best_valid_accuracy;
    r->final_acc = j.final_valid_accuracy;
    r->latest = json_object();
    atomic_init(&r->stop, TR_RUN);
    if ((rc = mkdir_p(r->out_dir)) != 0) {
        snprintf(err, sizeof err, "cannot create %.400s: %s", r->out_dir, strerror(-rc));
        fail_job_now(s, id, "storage_error", err, NULL);
        run_free(r);
        db_job_clear(&j);
        return;
    }
    db_status *c = status_change(s, id, "running");
    if (c && j.started_at <= 0) c->started_at = now_s();
    if (r->resume)
        emit(s, id, "status", "info", json_pack("{s:s, s:b}", "status", "running", "resumed", 1),
             "Job resumed from its last checkpoint");
    else
        emit(s, id, "status", "info", json_pack("{s:s, s:b}", "status", "running", "resumed", 0), "Job started");
    flush(s);
    r->next = s->runs;
    s->runs = r;
    s->n_runs++;
    s->order_valid = 0;
    note_start(s, r->owner);
    if ((rc = pthread_create(&r->thread, NULL, worker_main, r)) != 0) {
        s->runs = r->next;
        s->n_runs--;
        snprintf(err, sizeof err, "cannot start a worker thread: %s", strerror(rc));
        fail_job_now(s, id, "internal_error", err, NULL);
        run_free(r);
    } else {
        LOG(LOG_INFO, "msg=\"job started\" job=%s user=%s priority=%d resume=%d threads=%d", id, r->owner, r->priority,
            r->resume, r->spec.threads);
    }
    db_job_clear(&j);
}

/* Ask a running job to checkpoint and leave; on_record_done requeues it at the front of its owner's queue. */
static void preempt(svc *s, run *r, const char *for_job, const char *for_user)
{
    int want = TR_RUN;
    if (!atomic_compare_exchange_strong(&r->stop, &want, TR_STOP_CHECKPOINT)) return;
    r->preempting = 1;
    s->preemptions++;
    emit(s, r->job_id, "message", "info", json_pack("{s:s, s:s}", "preempted_for", for_job, "user", for_user),
         "Preempting: checkpointing to make room for a job of %s; it resumes from the checkpoint", for_user);
    LOG(LOG_INFO, "msg=\"preempting job\" job=%s user=%s for_job=%s for_user=%s", r->job_id, r->owner, for_job,
        for_user);
}

/* Start what the policy (daemon/sched.h) says, one job at a time, until nothing more fits; maybe preempt. */
static void schedule(svc *s)
{
    s->sched_waiting = 0;
    for (int guard = 0; guard < 256 && !s->stopping; guard++) {
        snapshot sn;
        sched_cfg c;
        if (snapshot_take(s, &sn, &c) != 0) {
            LOG(LOG_ERROR, "msg=\"cannot read the queue\" err=\"%s\"", db_errmsg(s->db));
            return;
        }
        sched_decision d;
        sched_pick(&c, sn.jobs, sn.nj, sn.runs, sn.nr, mono(), &d);
        if (d.start >= 0) {
            char id[DB_ID_MAX];
            snprintf(id, sizeof id, "%s", sn.jobs[d.start].id);
            snapshot_free(&sn);
            start_job(s, id);
            continue;
        }
        if (d.preempt >= 0 && d.waiting >= 0) preempt(s, sn.run_of[d.preempt], sn.jobs[d.waiting].id, sn.jobs[d.waiting].owner);
        s->sched_waiting = d.waiting >= 0 && s->cfg.preemption;
        snapshot_free(&sn);
        return;
    }
}

/* While a job waits, preemption depends on time (the grace period): look again every second. */
static void on_sched_timer(uv_timer_t *t)
{
    svc *s = t->data;
    if (s->sched_waiting && !s->stopping) schedule(s);
}

/* ---------------- the loop side of progress ---------------- */

static void metric(svc *s, run *r, int step, const char *name, double v)
{
    db_metric *m = db_batch_metric(&s->batch);
    if (m) {
        snprintf(m->job_id, sizeof m->job_id, "%s", r->job_id);
        m->step = step;
        m->name = name;
        m->value = v;
    }
    json_object_set_new(r->latest, name, jreal(v));
}

static void progress_row(svc *s, run *r)
{
    db_progress *p = db_batch_progress(&s->batch, r->job_id);
    if (!p) return;
    p->step = r->step;
    p->total_steps = r->total_steps;
    p->epoch = r->epoch;
    p->epochs = r->epochs;
    p->eta_seconds = r->eta_seconds;
    p->best_valid_accuracy = r->best_acc;
    p->final_valid_accuracy = r->final_acc;
    p->at = now_s();
    free(p->metrics);
    p->metrics = json_dumps(r->latest, JSON_COMPACT);
}

static void on_record_progress(svc *s, run *r, const tr_progress *p, const char *ckpt)
{
    r->step = p->step;
    r->total_steps = p->total_steps;
    r->epoch = p->epoch;
    r->epochs = p->epochs;
    switch (p->kind) {
    case TR_EV_STEP: {
        double t = mono();
        if (r->rate_t <= 0) { r->rate_t = t; r->rate_step = p->step; }
        else if (t - r->rate_t >= 1.0 && p->step > r->rate_step) {
            r->steps_per_s = (p->step - r->rate_step) / (t - r->rate_t);
            r->rate_t = t;
            r->rate_step = p->step;
        }
        r->images_per_s = p->images_per_second;
        r->eta_seconds = p->eta_seconds;
        json_object_set_new(r->latest, "step", json_integer(p->step));
        metric(s, r, p->step, "train_loss", p->train_loss);
        metric(s, r, p->step, "ce_loss", p->ce_loss);
        metric(s, r, p->step, "contrastive_loss", p->contrastive_loss);
        metric(s, r, p->step, "lr", p->lr);
        metric(s, r, p->step, "images_per_second", p->images_per_second);
        emit(s, r->job_id, "metrics", "info",
             json_pack("{s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o}", "step", p->step, "total_steps", p->total_steps,
                       "epoch", p->epoch, "train_loss", jreal(p->train_loss), "ce_loss", jreal(p->ce_loss),
                       "contrastive_loss", jreal(p->contrastive_loss), "lr", jreal(p->lr), "images_per_second",
                       jreal(p->images_per_second)),
             "Step %d/%d: training loss=%.4f", p->step, p->total_steps, p->train_loss);
        break;
    }
    case TR_EV_EPOCH:
        if (!isfinite(r->best_acc) || p->valid_accuracy > r->best_acc) r->best_acc = p->valid_accuracy;
        r->final_acc = p->valid_accuracy;
        metric(s, r, p->step, "valid_loss", p->valid_loss);
        metric(s, r, p->step, "valid_accuracy", p->valid_accuracy);
        emit(s, r->job_id, "validation", "info",
             json_pack("{s:i, s:i, s:i, s:o, s:o}", "step", p->step, "epoch", p->epoch, "epochs", p->epochs,
                       "valid_loss", jreal(p->valid_loss), "valid_accuracy", jreal(p->valid_accuracy)),
             "Epoch %d/%d: validation loss=%.4f accuracy=%.4f", p->epoch, p->epochs, p->valid_loss,
             p->valid_accuracy);
        break;
    case TR_EV_CHECKPOINT: {
        db_checkpoint *c = db_batch_checkpoint(&s->batch);
        if (c) {
            snprintf(c->job_id, sizeof c->job_id, "%s", r->job_id);
            c->step = p->step;
            c->epoch = p->epoch;
            c->path = strdup(ckpt);
            c->metrics = json_dumps(r->latest, JSON_COMPACT);
            c->created_at = now_s();
        }
        emit(s, r->job_id, "checkpoint", "info", json_pack("{s:i, s:i}", "step", p->step, "epoch", p->epoch),
             "Checkpoint written at step %d", p->step);
        s->flush_now = 1; /* the state file is on disk: record it (and the steps before it) now */
        break;
    }
    }
    progress_row(s, r);
}

static void fine_tuned_name(const db_job *j, const char *arch, char *out, size_t n)
{
    if (j->suffix) snprintf(out, n, "ft:%s:%s:%s", arch, j->suffix, j->id);
    else snprintf(out, n, "ft:%s:%s", arch, j->id);
}

static void on_record_done(svc *s, run *r)
{
    pthread_join(r->thread, NULL); /* it has pushed its last record: returns at once */
    for (run **pp = &s->runs; *pp; pp = &(*pp)->next)
        if (*pp == r) { *pp = r->next; break; }
    s->n_runs--;
    s->order_valid = 0;
    db_job j;
    svc_error e;
    if (get_job(s, NULL, r->job_id, &j, &e) != 0) { run_free(r); return; }
    int stop = atomic_load(&r->stop);
    const char *id = r->job_id;
    if (!strcmp(j.status, "cancelled") || stop == TR_STOP_CANCEL) {
        emit(s, id, "message", "info", json_pack("{s:i}", "step", r->step), "Training stopped at step %d", r->step);
    } else if (r->rc != 0) {
        db_status *c = status_change(s, id, "failed");
        if (c) { c->finished_at = now_s(); set_error(c, "training_failed", r->err, NULL); }
        emit(s, id, "error", "error", json_pack("{s:s, s:s}", "code", "training_failed", "message", r->err),
             "Training failed: %s", r->err);
        emit(s, id, "status", "info", json_pack("{s:s}", "status", "failed"), "Job failed");
        LOG(LOG_WARN, "msg=\"job failed\" job=%s err=\"%s\"", id, r->err);
    } else if (r->res.stopped) {
        if (!strcmp(j.status, "paused")) {
            emit(s, id, "status", "info", json_pack("{s:s, s:i}", "status", "paused", "step", r->res.steps_done),
                 "Job paused at step %d; checkpoint written", r->res.steps_done);
        } else if (!strcmp(j.status, "running") && r->preempting && !s->stopping) {
            db_status *c = status_change(s, id, "queued");
            if (c) c->preempted = 1;
            emit(s, id, "status", "info",
                 json_pack("{s:s, s:i, s:b}", "status", "queued", "step", r->res.steps_done, "preempted", 1),
                 "Preempted: checkpointed at step %d and requeued at the front of its user's queue",
                 r->res.steps_done);
        } else if (!strcmp(j.status, "running")) { /* daemon shutdown */
            status_change(s, id, "queued");
            emit(s, id, "status", "info", json_pack("{s:s, s:i}", "status", "queued", "step", r->res.steps_done),
                 "Daemon stopping: checkpointed at step %d, the job resumes on restart", r->res.steps_done);
        } /* queued: resumed while stopping; the scheduler picks it up again */
    } else {
        char model[320], path[TR_PATH_MAX + 32];
        fine_tuned_name(&j, r->spec.arch, model, sizeof model);
        snprintf(path, sizeof path, "%s/final.safetensors", r->out_dir);
        db_status *c = status_change(s, id, "succeeded");
        if (c) {
            snprintf(c->owner, sizeof c->owner, "%s", j.owner);
            c->finished_at = now_s();
            c->fine_tuned_model = strdup(model);
            c->model_path = strdup(path);
            snprintf(c->arch, sizeof c->arch, "%s", r->spec.arch);
        }
        if (r->res.epochs_done > 0) {
            r->best_acc = r->res.best_valid_accuracy;
            r->final_acc = r->res.final_valid_accuracy;
        }
        progress_row(s, r);
        emit(s, id, "status", "info",
             json_pack("{s:s, s:s, s:o, s:o}", "status", "succeeded", "fine_tuned_model", model,
                       "best_valid_accuracy", jreal(r->best_acc), "final_valid_accuracy", jreal(r->final_acc)),
             "Job succeeded: %s", model);
        LOG(LOG_INFO, "msg=\"job succeeded\" job=%s model=%s", id, model);
    }
    db_job_clear(&j);
    flush(s);
    char done_id[DB_ID_MAX];
    snprintf(done_id, sizeof done_id, "%s", id);
    run_free(r);
    notify(s, done_id); /* streams of a finished job can end now */
}

static void maybe_finish_shutdown(svc *s);

static void on_async(uv_async_t *a)
{
    svc *s = a->data;
    pthread_mutex_lock(&s->qlock); /* swap the queue with the (empty) spare: workers never wait long */
    rec *items = s->q;
    int n = s->qn, cap = s->qcap;
    s->q = s->spare;
    s->qcap = s->spare_cap;
    s->qn = 0;
    pthread_mutex_unlock(&s->qlock);
    int any_done = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].kind == REC_PROGRESS) on_record_progress(s, items[i].r, &items[i].p, items[i].ckpt);
        else { on_record_done(s, items[i].r); any_done = 1; }
    }
    s->spare = items; /* the spare is the loop's alone */
    s->spare_cap = cap;
    if (s->flush_now) {
        s->flush_now = 0;
        flush(s);
    }
    flush_later(s);
    if (any_done) {
        schedule(s);
        maybe_finish_shutdown(s);
    }
}

/* ---------------- the API ---------------- */

void svc_set_listener(svc *s, void (*fn)(void *, const char *), void *ud)
{
    s->listener = fn;
    s->listener_ud = ud;
}

static unsigned long long fnv1a(const char *text)
{
    unsigned long long h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) { h ^= *p; h *= 1099511628211ULL; }
    return h;
}

/* 429 naming the limit */
static int over_quota(svc_error *e, const char *limit, long long value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int over_quota(svc_error *e, const char *limit, long long value, const char *fmt, ...)
{
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return svc_fail(e, SVC_EQUOTA, "quota_exceeded", NULL, "quota exceeded: %s (limit %lld): %s", limit, value, why);
}

static int check_queued_quota(svc *s, const char *owner, svc_error *e)
{
    svc_quota q = quota_of(s, owner);
    int n = 0;
    if (q.queued_jobs <= 0) return 0;
    if (db_job_count(s->db, owner, "queued", &n) != 0)
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    if (n >= q.queued_jobs)
        return over_quota(e, "queued_jobs", q.queued_jobs, "%s has %d jobs queued; wait for some to start or cancel one",
                          owner, n);
    return 0;
}

int svc_job_create(svc *s, const svc_caller *who, const json_t *rawbody, const char *idem_key, json_t **out,
                   int *replayed, svc_error *e)
{
    *replayed = 0;
    if (s->stopping) return svc_fail(e, SVC_EUNAVAILABLE, "shutting_down", NULL, "the daemon is shutting down");
    int priority = 5;
    json_t *body = split_priority(rawbody, &priority, e);
    if (!body) return e->kind;
    char *canon = json_dumps(rawbody, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!canon) { json_decref(body); return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory"); }
    char hash[24], scoped[400];
    snprintf(hash, sizeof hash, "%016llx", fnv1a(canon));
    if (idem_key) { /* keys are per user: one user's key never returns another's job */
        snprintf(scoped, sizeof scoped, "%s:%s", who->name, idem_key);
        idem_key = scoped;
    }
    db_job j;
    int rc;
    if (idem_key && db_job_find_idem(s->db, idem_key, &j) == 0) {
        json_decref(body);
        int same = j.body_hash && !strcmp(j.body_hash, hash);
        if (same) { *out = job_json(s, &j); *replayed = 1; }
        db_job_clear(&j);
        free(canon);
        if (!same)
            return svc_fail(e, SVC_EIDEMPOTENCY, "idempotency_key_reused", NULL,
                            "Idempotency-Key was already used with a different request body");
        return *out ? 0 : svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    }
    tr_spec spec;
    char param[128], err[512];
    resolve_ctx rctx = {s, who->name, 0};
    rc = jobspec_parse(body, resolver, &rctx, &spec, param, sizeof param, err, sizeof err);
    json_t *seed = json_object_get(body, "seed");
    int seed_absent = !seed || json_is_null(seed);
    json_decref(body);
    if (rc) {
        free(canon);
        if (rc == -ENOENT)
            return svc_fail(e, SVC_EINVAL, !strcmp(param, "model") ? "model_not_found" : "file_not_found", param,
                            "%s", err);
        return svc_fail(e, SVC_EINVAL, !strncmp(err, "unknown field", 13) ? "unknown_parameter" : "invalid_value",
                        param, "%s", err);
    }
    if (spec.threads > s->cfg.threads_per_job) {
        free(canon);
        snprintf(param, sizeof param, "method.%s.hyperparameters.threads", jobspec_method_name(spec.method));
        return svc_fail(e, SVC_EINVAL, "invalid_value", param,
                        "threads %d is more than this daemon gives a job (--threads-per-job %d)", spec.threads,
                        s->cfg.threads_per_job);
    }
    if (spec.threads <= 0) spec.threads = s->cfg.threads_per_job;
    svc_quota q = quota_of(s, who->name);
    if (q.threads > 0 && spec.threads > q.threads) {
        free(canon);
        return over_quota(e, "threads", q.threads, "the job asks for %d threads; set hyperparameters.threads to at most %d",
                          spec.threads, q.threads);
    }
    if ((rc = check_queued_quota(s, who->name, e)) != 0) { free(canon); return rc; }
    if (seed_absent) {
        unsigned int x = 0;
        if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) x = (unsigned int)time(NULL);
        spec.seed = x & 0x7fffffff;
    }
    json_t *method = jobspec_effective_json(&spec), *ext = jobspec_extensions_json(&spec);
    memset(&j, 0, sizeof j);
    snprintf(j.status, sizeof j.status, "queued");
    snprintf(j.arch, sizeof j.arch, "%s", spec.arch);
    j.created_at = now_s();
    j.body = canon;
    j.method = method ? json_dumps(method, JSON_COMPACT) : NULL;
    j.extensions = ext ? json_dumps(ext, JSON_COMPACT) : NULL;
    json_decref(method);
    json_decref(ext);
    const json_t *v;
    snprintf(j.owner, sizeof j.owner, "%s", who->name);
    j.priority = priority;
    j.threads = spec.threads;
    j.model = (char *)json_string_value(json_object_get(rawbody, "model"));
    j.training_file = (char *)json_string_value(json_object_get(rawbody, "training_file"));
    j.validation_file = (char *)json_string_value(json_object_get(rawbody, "validation_file"));
    j.suffix = (char *)json_string_value(json_object_get(rawbody, "suffix"));
    j.metadata = (v = json_object_get(rawbody, "metadata")) && json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;
    j.seed = (long long)spec.seed;
    j.idem_key = (char *)idem_key;
    j.body_hash = hash;
    j.epochs = spec.hp.epochs;
    rc = -EEXIST;
    for (int tries = 0; tries < 3 && rc == -EEXIST; tries++) {
        random_id(j.id, sizeof j.id, "ftjob-");
        rc = (j.method && j.extensions) ? db_job_insert(s->db, &j) : -ENOMEM;
    }
    free(j.method);
    free(j.extensions);
    free(j.metadata);
    free(canon);
    if (rc) return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot store the job: %s", db_errmsg(s->db));
    char id[DB_ID_MAX];
    snprintf(id, sizeof id, "%s", j.id);
    LOG(LOG_INFO, "msg=\"job created\" job=%s user=%s priority=%d model=%s", id, who->name, priority, spec.arch);
    s->order_valid = 0;
    emit(s, id, "status", "info", json_pack("{s:s}", "status", "queued"), "Job created");
    flush(s);
    schedule(s);
    return job_reply(s, id, out, e);
}

typedef struct list_ctx { svc *s; json_t *data; } list_ctx;
static int add_job(void *ud, const db_job *j)
{
    list_ctx *c = ud;
    json_array_append_new(c->data, job_json(c->s, j));
    return 0;
}

static json_t *list_envelope(json_t *data, int has_more)
{
    size_t n = json_array_size(data);
    json_t *first = n ? json_object_get(json_array_get(data, 0), "id") : NULL;
    json_t *last = n ? json_object_get(json_array_get(data, n - 1), "id") : NULL;
    return json_pack("{s:s, s:o, s:b, s:O, s:O}", "object", "list", "data", data, "has_more", has_more, "first_id",
                     first ? first : json_null(), "last_id", last ? last : json_null());
}

int svc_job_list(svc *s, const svc_caller *who, const char *after, int limit, json_t **out, svc_error *e)
{
    list_ctx c = {s, json_array()};
    int more = 0;
    int rc = db_job_list(s->db, who->admin ? NULL : who->name, after, limit, add_job, &c, &more);
    if (rc) {
        json_decref(c.data);
        if (rc == -ENOENT) return svc_fail(e, SVC_EINVAL, "invalid_value", "after", "no job '%.100s' to list after", after);
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    }
    *out = list_envelope(c.data, more);
    return 0;
}

int svc_job_get(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e)
{
    db_job j;
    int rc = get_job(s, who, id, &j, e);
    if (rc) return rc;
    *out = job_json(s, &j);
    db_job_clear(&j);
    return *out ? 0 : svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
}

/* An admin acting on someone else's job is an admin action: audited. */
static void audit_if_admin_action(svc *s, const svc_caller *who, const db_job *j, const char *action)
{
    if (who && who->admin && strcmp(j->owner, who->name) != 0) {
        char detail[160];
        snprintf(detail, sizeof detail, "job of user '%s'", j->owner[0] ? j->owner : "(none)");
        svc_audit(s, who, NULL, action, j->id, "ok", detail);
    }
}

int svc_job_cancel(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e)
{
    db_job j;
    int rc = get_job(s, who, id, &j, e);
    if (rc) return rc;
    if (is_final(j.status)) {
        rc = svc_fail(e, SVC_ECONFLICT, "invalid_state", NULL, "job %s is already %s", id, j.status);
        db_job_clear(&j);
        return rc;
    }
    audit_if_admin_action(s, who, &j, "job_cancel");
    db_job_clear(&j);
    run *r = find_run(s, id);
    if (r) atomic_store(&r->stop, TR_STOP_CANCEL); /* the trainer stops within one step */
    db_status *c = status_change(s, id, "cancelled");
    if (c) c->finished_at = now_s();
    emit(s, id, "status", "info", json_pack("{s:s}", "status", "cancelled"), "Job cancelled");
    if (flush(s)) return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot commit: %s", db_errmsg(s->db));
    LOG(LOG_INFO, "msg=\"job cancelled\" job=%s", id);
    return job_reply(s, id, out, e);
}

int svc_job_pause(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e)
{
    db_job j;
    int rc = get_job(s, who, id, &j, e);
    if (rc) return rc;
    int ok = !strcmp(j.status, "queued") || !strcmp(j.status, "running");
    if (!ok) rc = svc_fail(e, SVC_ECONFLICT, "invalid_state", NULL, "only a queued or running job can be paused (job %s is %s)", id, j.status);
    else audit_if_admin_action(s, who, &j, "job_pause");
    db_job_clear(&j);
    if (!ok) return rc;
    run *r = find_run(s, id);
    if (r) { int want = TR_RUN; atomic_compare_exchange_strong(&r->stop, &want, TR_STOP_CHECKPOINT); }
    status_change(s, id, "paused");
    if (!r) emit(s, id, "status", "info", json_pack("{s:s}", "status", "paused"), "Job paused");
    else emit(s, id, "message", "info", json_pack("{s:s}", "status", "paused"), "Pausing: writing a checkpoint");
    if (flush(s)) return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot commit: %s", db_errmsg(s->db));
    return job_reply(s, id, out, e);
}

int svc_job_resume(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e)
{
    db_job j;
    int rc = get_job(s, who, id, &j, e);
    if (rc) return rc;
    int ok = !strcmp(j.status, "paused");
    if (!ok) rc = svc_fail(e, SVC_ECONFLICT, "invalid_state", NULL, "only a paused job can be resumed (job %s is %s)", id, j.status);
    else rc = check_queued_quota(s, j.owner, e);
    if (ok && !rc) audit_if_admin_action(s, who, &j, "job_resume");
    db_job_clear(&j);
    if (ok && rc) return rc;
    if (!ok) return rc;
    status_change(s, id, "queued");
    emit(s, id, "status", "info", json_pack("{s:s}", "status", "queued"), "Job resumed: queued to continue from its checkpoint");
    if (flush(s)) return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot commit: %s", db_errmsg(s->db));
    schedule(s);
    return job_reply(s, id, out, e);
}

typedef struct ev_ctx { json_t *data; long long last; } ev_ctx;
static int add_event(void *ud, const db_event *ev)
{
    ev_ctx *c = ud;
    json_array_append_new(c->data, event_json(ev->id, ev->created_at, ev->type, ev->level, ev->message, ev->data));
    c->last = ev->id;
    return 0;
}

/* Committed events from the database, then the ones still in the batch. */
static int collect_events(svc *s, const char *id, long long after, int limit, json_t **data, int *more)
{
    ev_ctx c = {json_array(), after};
    int rc = db_event_list(s->db, id, after, limit, add_event, &c, more);
    if (rc) { json_decref(c.data); return rc; }
    for (int i = 0; i < s->batch.n_events && !*more; i++) {
        db_event *ev = &s->batch.events[i];
        if (strcmp(ev->job_id, id) || ev->id <= c.last) continue;
        if ((int)json_array_size(c.data) == limit) { *more = 1; break; }
        add_event(&c, ev);
    }
    *data = c.data;
    return 0;
}

int svc_job_events(svc *s, const svc_caller *who, const char *id, long long after, int limit, json_t **out, svc_error *e)
{
    db_job j;
    int rc = get_job(s, who, id, &j, e);
    if (rc) return rc;
    db_job_clear(&j);
    json_t *data;
    int more = 0;
    if (collect_events(s, id, after, limit, &data, &more))
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    *out = list_envelope(data, more);
    return 0;
}

int svc_stream_poll(svc *s, const svc_caller *who, const char *id, long long after, int limit, json_t **events,
                    int *ended, svc_error *e)
{
    db_job j;
    int rc = get_job(s, who, id, &j, e);
    if (rc) return rc;
    int more = 0;
    if (collect_events(s, id, after, limit, events, &more)) {
        db_job_clear(&j);
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    }
    *ended = !more && json_array_size(*events) == 0 && is_final(j.status) && !find_run(s, id);
    db_job_clear(&j);
    return 0;
}

typedef struct ck_ctx { json_t *data; const char *job_id; const char *model; } ck_ctx;
static int add_ckpt(void *ud, const db_checkpoint *c)
{
    ck_ctx *x = ud;
    char id[48], name[400];
    snprintf(id, sizeof id, "ftckpt-%lld", c->id);
    snprintf(name, sizeof name, "%s:ckpt-step-%d", x->model, c->step);
    json_array_append_new(x->data, json_pack("{s:s, s:s, s:I, s:s, s:i, s:i, s:o, s:s}", "object",
                                             "fine_tuning.job.checkpoint", "id", id, "created_at",
                                             (json_int_t)c->created_at, "fine_tuned_model_checkpoint", name,
                                             "step_number", c->step, "epoch", c->epoch, "metrics", jparse(c->metrics),
                                             "fine_tuning_job_id", x->job_id));
    return 0;
}

int svc_job_checkpoints(svc *s, const svc_caller *who, const char *id, const char *after, int limit, json_t **out,
                        svc_error *e)
{
    db_job j;
    int rc = get_job(s, who, id, &j, e);
    if (rc) return rc;
    long long a = 0;
    if (after) {
        const char *num = !strncmp(after, "ftckpt-", 7) ? after + 7 : after;
        char *end;
        a = strtoll(num, &end, 10);
        if (*end || a <= 0) {
            db_job_clear(&j);
            return svc_fail(e, SVC_EINVAL, "invalid_value", "after", "after must be a checkpoint id");
        }
    }
    char model[320];
    fine_tuned_name(&j, j.arch, model, sizeof model);
    ck_ctx c = {json_array(), id, model};
    int more = 0;
    rc = db_checkpoint_list(s->db, id, a, limit, add_ckpt, &c, &more);
    db_job_clear(&j);
    if (rc) { json_decref(c.data); return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db)); }
    *out = list_envelope(c.data, more);
    return 0;
}

typedef struct series { double *x, *y; size_t n, cap; } series;
static int add_point(void *ud, int step, double v)
{
    series *p = ud;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        double *x = realloc(p->x, cap * sizeof *x);
        if (!x) return 1;
        p->x = x;
        double *y = realloc(p->y, cap * sizeof *y);
        if (!y) return 1;
        p->y = y;
        p->cap = cap;
    }
    p->x[p->n] = step;
    p->y[p->n++] = v;
    return 0;
}

static int add_name(void *ud, const char *name)
{
    json_array_append_new(ud, json_string(name));
    return 0;
}

int svc_job_metrics(svc *s, const svc_caller *who, const char *id, const char *names, int max_points, int after_step,
                    json_t **out, svc_error *e)
{
    db_job j;
    int rc = get_job(s, who, id, &j, e);
    if (rc) return rc;
    db_job_clear(&j);
    json_t *list = json_array();
    if (names && *names) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", names);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (*t) json_array_append_new(list, json_string(t));
    } else {
        db_metric_names(s->db, id, add_name, list);
        for (int i = 0; i < s->batch.n_metrics; i++) { /* names not yet committed */
            int seen = 0;
            size_t k;
            json_t *v;
            json_array_foreach(list, k, v) seen |= !strcmp(json_string_value(v), s->batch.metrics[i].name);
            if (!seen && !strcmp(s->batch.metrics[i].job_id, id))
                json_array_append_new(list, json_string(s->batch.metrics[i].name));
        }
    }
    json_t *res = json_object();
    size_t k;
    json_t *nv;
    json_array_foreach(list, k, nv) {
        const char *name = json_string_value(nv);
        series p = {0};
        if (db_metric_series(s->db, id, name, after_step, add_point, &p)) {
            free(p.x); free(p.y);
            json_decref(list); json_decref(res);
            return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
        }
        double last = p.n ? p.x[p.n - 1] : after_step;
        for (int i = 0; i < s->batch.n_metrics; i++) {
            db_metric *m = &s->batch.metrics[i];
            if (!strcmp(m->job_id, id) && !strcmp(m->name, name) && m->step > last) {
                add_point(&p, m->step, m->value);
                last = m->step;
            }
        }
        size_t *keep = malloc((p.n ? p.n : 1) * sizeof *keep);
        size_t kept = keep ? lttb(p.x, p.y, p.n, (size_t)max_points, keep) : 0;
        json_t *steps = json_array(), *values = json_array();
        for (size_t i = 0; i < kept; i++) {
            json_array_append_new(steps, json_integer((json_int_t)p.x[keep[i]]));
            json_array_append_new(values, jreal(p.y[keep[i]]));
        }
        json_object_set_new(res, name, json_pack("{s:o, s:o, s:I}", "steps", steps, "values", values, "total_points",
                                                 (json_int_t)p.n));
        free(keep); free(p.x); free(p.y);
    }
    json_decref(list);
    *out = json_pack("{s:s, s:s, s:i, s:o}", "object", "fine_tuning.job.metrics", "job_id", id, "max_points",
                     max_points, "series", res);
    return 0;
}

/* ---------------- models, datasets, files ---------------- */

typedef struct model_ctx { json_t *data; } model_ctx;
static int add_model(void *ud, const db_model *m)
{
    model_ctx *c = ud;
    json_array_append_new(c->data, json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s}", "id", m->id, "object", "model",
                                             "created", (json_int_t)m->created_at, "owned_by",
                                             m->owner[0] ? m->owner : "coretuned",
                                             "kind", "fine-tuned", "arch", m->arch, "job_id", m->job_id));
    return 0;
}

static void list_backbones(svc *s, json_t *data)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/models", s->cfg.data_dir);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        const char *ext = ".safetensors";
        if (n <= strlen(ext) || strcmp(de->d_name + n - strlen(ext), ext)) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n - strlen(ext)), de->d_name);
        if (!safe_name(name)) continue;
        const char *a = arch_of_name(name);
        json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s, s:s, s:o}", "id", name, "object", "model",
                                              "created", 0, "owned_by", "local", "kind", "backbone", "arch",
                                              jstr(a)));
    }
    closedir(d);
}

int svc_models(svc *s, const svc_caller *who, json_t **out, svc_error *e)
{
    json_t *data = json_array();
    for (int i = 0; i < N_BASE; i++)
        json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "id", base_archs[i], "object", "model",
                                              "created", 0, "owned_by", "coretuned", "kind", "base", "arch",
                                              base_archs[i]));
    list_backbones(s, data);
    model_ctx c = {data};
    if (db_model_list(s->db, who->admin ? NULL : who->name, add_model, &c)) {
        json_decref(data);
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    }
    *out = json_pack("{s:s, s:o}", "object", "list", "data", data);
    return 0;
}

int svc_model_get(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e)
{
    json_t *all;
    int rc = svc_models(s, who, &all, e);
    if (rc) return rc;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(all, "data"), i, m) {
        if (!strcmp(json_string_value(json_object_get(m, "id")), id)) {
            *out = json_incref(m);
            json_decref(all);
            return 0;
        }
    }
    json_decref(all);
    return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "no model '%.200s'", id);
}

int svc_model_file(svc *s, const svc_caller *who, const char *id, const char *which, char *path, size_t pathlen,
                   svc_error *e)
{
    if (which && strcmp(which, "final") && strcmp(which, "best"))
        return svc_fail(e, SVC_EINVAL, "invalid_value", "which", "which must be \"final\" or \"best\"");
    db_model m;
    int found = db_model_get(s->db, id, &m) == 0;
    if (found && !owned_by(m.owner, who->name, who->admin)) {
        svc_audit(s, who, NULL, "authz_denied", id, "denied", "a model of another user");
        return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "no model '%.200s'", id);
    }
    if (found) {
        if (which && !strcmp(which, "best")) {
            char *slash = strrchr(m.path, '/');
            if (slash) snprintf(slash + 1, sizeof m.path - (size_t)(slash + 1 - m.path), "best.safetensors");
        }
        if (!file_exists(m.path)) return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "model '%.200s' has no %s weights on disk", id, which ? which : "final");
        snprintf(path, pathlen, "%s", m.path);
        return 0;
    }
    if (safe_name(id)) {
        snprintf(path, pathlen, "%s/models/%s.safetensors", s->cfg.data_dir, id);
        if (file_exists(path)) return 0;
    }
    for (int i = 0; i < N_BASE; i++)
        if (!strcmp(id, base_archs[i]))
            return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "%s is a base architecture: it has no weights", id);
    return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "no model '%.200s'", id);
}

static json_t *file_json(const db_file *f)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s}", "id", f->id, "object", "file", "bytes",
                     (json_int_t)f->bytes, "created_at", (json_int_t)f->created_at, "filename", f->filename, "purpose",
                     f->purpose, "format", f->format, "status", "processed");
}

static int add_file(void *ud, const db_file *f)
{
    json_array_append_new(ud, file_json(f));
    return 0;
}

static int add_file_dataset(void *ud, const db_file *f)
{
    json_array_append_new(ud, json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", f->id, "object", "dataset", "source",
                                        "upload", "format", f->format, "bytes", (json_int_t)f->bytes));
    return 0;
}

int svc_datasets(svc *s, const svc_caller *who, json_t **out, svc_error *e)
{
    json_t *data = json_array();
    if (builtin_available(s)) {
        json_array_append_new(data, json_pack("{s:s, s:s, s:s, s:s, s:i}", "id", "fashion-mnist-train", "object",
                                              "dataset", "source", "builtin", "format", "idx", "images", 60000));
        json_array_append_new(data, json_pack("{s:s, s:s, s:s, s:s, s:i}", "id", "fashion-mnist-test", "object",
                                              "dataset", "source", "builtin", "format", "idx", "images", 10000));
    }
    for (int i = 0; i < s->cfg.n_datasets; i++) {
        json_t *d = json_pack("{s:s, s:s, s:s}", "id", s->cfg.datasets[i].name, "object", "dataset", "source", "config");
        if (s->ds_ok[i]) {
            json_object_set_new(d, "format", json_string(data_format_name(s->ds_info[i].format)));
            json_object_set_new(d, "images", json_integer(s->ds_info[i].count));
            json_object_set_new(d, "classes", json_integer(s->ds_info[i].num_classes));
        }
        json_array_append_new(data, d);
    }
    if (db_file_list(s->db, who->admin ? NULL : who->name, add_file_dataset, data)) {
        json_decref(data);
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    }
    *out = json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", 0);
    return 0;
}

int svc_files(svc *s, const svc_caller *who, json_t **out, svc_error *e)
{
    json_t *data = json_array();
    if (db_file_list(s->db, who->admin ? NULL : who->name, add_file, data)) {
        json_decref(data);
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    }
    *out = json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", 0);
    return 0;
}

int svc_file_get(svc *s, const svc_caller *who, const char *id, json_t **out, svc_error *e)
{
    db_file f;
    int rc = db_file_get(s->db, id, &f);
    if (rc == 0 && !owned_by(f.owner, who->name, who->admin)) {
        svc_audit(s, who, NULL, "authz_denied", id, "denied", "a file of another user");
        rc = -ENOENT;
    }
    if (rc == -ENOENT) return svc_fail(e, SVC_ENOTFOUND, "file_not_found", "id", "no file '%.100s'", id);
    if (rc) return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    *out = file_json(&f);
    return 0;
}

const char *svc_upload_dir(svc *s) { return s->upload_dir; }
long long svc_upload_limit(svc *s) { return s->cfg.upload_limit; }

/* The stored name of an upload: its own file name when that is plain (the trainer tells formats apart
 * by names such as data_batch_1.bin), else "upload.bin". */
static void upload_name(const char *filename, char *out, size_t n)
{
    const char *base = filename ? strrchr(filename, '/') : NULL;
    base = base ? base + 1 : filename;
    if (base && safe_name(base) && strlen(base) < n) snprintf(out, n, "%s", base);
    else snprintf(out, n, "upload.bin");
}

int svc_file_add(svc *s, const svc_caller *who, const char *tmp_path, const char *filename, const char *purpose,
                 long long bytes, json_t **out, svc_error *e)
{
    svc_quota q = quota_of(s, who->name);
    long long have = 0;
    if (q.upload_bytes > 0 && (db_file_bytes(s->db, who->name, &have) != 0 || have + bytes > q.upload_bytes)) {
        unlink(tmp_path);
        return over_quota(e, "upload_bytes", q.upload_bytes, "%s has %lld bytes of uploads stored and this one has %lld",
                          who->name, have, bytes);
    }
    db_file f = {.bytes = bytes, .created_at = now_s()};
    snprintf(f.owner, sizeof f.owner, "%s", who->name);
    char dir[1100], name[200], err[512];
    random_id(f.id, sizeof f.id, "file-");
    upload_name(filename, name, sizeof name);
    snprintf(f.filename, sizeof f.filename, "%s", filename && *filename ? filename : name);
    snprintf(f.purpose, sizeof f.purpose, "%s", purpose && *purpose ? purpose : "fine-tune");
    snprintf(dir, sizeof dir, "%.700s/files/%.47s", s->cfg.data_dir, f.id);
    snprintf(f.path, sizeof f.path, "%.700s/files/%.47s/%.150s", s->cfg.data_dir, f.id, name);
    if (mkdir(dir, 0750) != 0 || rename(tmp_path, f.path) != 0) {
        int errnum = errno;
        unlink(tmp_path);
        rmdir(dir);
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot store the upload: %s", strerror(errnum));
    }
    data_info info;
    int rc = data_probe(&info, f.path, err, sizeof err);
    if (rc) {
        unlink(f.path);
        rmdir(dir);
        return svc_fail(e, SVC_EINVAL, "invalid_file_format", "file", "not a data set the trainer can read: %s", err);
    }
    snprintf(f.format, sizeof f.format, "%s", data_format_name(info.format));
    if (db_file_insert(s->db, &f) != 0) {
        unlink(f.path);
        rmdir(dir);
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot record the upload: %s", db_errmsg(s->db));
    }
    LOG(LOG_INFO, "msg=\"file uploaded\" id=%s bytes=%lld format=%s images=%d classes=%d", f.id, bytes, f.format,
        info.count, info.num_classes);
    *out = file_json(&f);
    json_object_set_new(*out, "images", json_integer(info.count));
    json_object_set_new(*out, "classes", json_integer(info.num_classes));
    return 0;
}

int svc_ready(svc *s, const svc_caller *who, json_t **out, svc_error *e)
{
    (void)who;
    if (s->stopping) return svc_fail(e, SVC_EUNAVAILABLE, "shutting_down", NULL, "the daemon is shutting down");
    *out = json_pack("{s:s, s:i, s:i, s:i}", "status", "ready", "workers", s->cfg.workers, "running", s->n_runs,
                     "threads_per_job", s->cfg.threads_per_job);
    return 0;
}

/* ---------------- identity, audit, metrics ---------------- */

static void caller_of(const db_user *u, const char *remote, svc_caller *out)
{
    memset(out, 0, sizeof *out);
    out->user_id = u->id;
    snprintf(out->name, sizeof out->name, "%s", u->name);
    out->admin = u->admin;
    snprintf(out->remote, sizeof out->remote, "%s", remote ? remote : "");
}

void svc_audit(svc *s, const svc_caller *who, const char *remote, const char *action, const char *target,
               const char *outcome, const char *detail)
{
    db_audit *a = db_batch_audit(&s->batch);
    const char *actor = who ? who->name : "", *from = who ? who->remote : remote ? remote : "";
    if (a) {
        a->at = now_s();
        snprintf(a->actor, sizeof a->actor, "%s", actor);
        snprintf(a->action, sizeof a->action, "%s", action);
        snprintf(a->target, sizeof a->target, "%s", target ? target : "");
        snprintf(a->outcome, sizeof a->outcome, "%s", outcome);
        snprintf(a->remote, sizeof a->remote, "%s", from);
        snprintf(a->detail, sizeof a->detail, "%s", detail ? detail : "");
    }
    if (!strcmp(action, "login_failed")) s->auth_failures++;
    LOG(LOG_WARN, "msg=audit action=%s outcome=%s user=\"%s\" remote=\"%s\" target=\"%.120s\" detail=\"%.200s\"",
        action, outcome, actor, from, target ? target : "", detail ? detail : "");
    flush_later(s);
}

int svc_auth_token(svc *s, const char *token, const char *remote, svc_caller *out, svc_error *e)
{
    db_user u;
    int rc = auth_token_check(s->db, token, &u);
    if (rc == 0) { caller_of(&u, remote, out); return 0; }
    svc_audit(s, NULL, remote, "login_failed", "", "denied", token ? "invalid or revoked token" : "no credentials");
    if (!token)
        return svc_fail(e, SVC_EUNAUTH, "invalid_api_key", NULL,
                        "missing credentials: send 'Authorization: Bearer ct_...' (an admin makes one with"
                        " 'coretuned token create NAME'), or connect over the Unix socket");
    return svc_fail(e, SVC_EUNAUTH, "invalid_api_key", NULL, "the API token is not valid (unknown or revoked)");
}

int svc_auth_uid(svc *s, long long uid, svc_caller *out, svc_error *e)
{
    db_user u;
    char remote[32];
    snprintf(remote, sizeof remote, "uid:%lld", uid);
    if (auth_uid_check(s->db, uid, s->cfg.self_uid, &u) == 0) { caller_of(&u, remote, out); return 0; }
    svc_audit(s, NULL, remote, "login_failed", "", "denied", "no user has this uid");
    return svc_fail(e, SVC_EUNAUTH, "invalid_api_key", NULL,
                    "local uid %lld is not a coretuned user; an admin can add you with"
                    " 'coretuned user add NAME --uid %lld'", uid, uid);
}

static int need_admin(svc *s, const svc_caller *who, const char *what, svc_error *e)
{
    if (who->admin) return 0;
    svc_audit(s, who, NULL, "authz_denied", what, "denied", "admin only");
    return svc_fail(e, SVC_EFORBIDDEN, "permission_denied", NULL, "%s is for admins only", what);
}

static json_t *quota_json(const svc_quota *q)
{
    return json_pack("{s:i, s:i, s:i, s:I}", "running_jobs", q->running_jobs, "queued_jobs", q->queued_jobs, "threads",
                     q->threads, "upload_bytes", (json_int_t)q->upload_bytes);
}

int svc_me(svc *s, const svc_caller *who, json_t **out, svc_error *e)
{
    db_user u;
    if (db_user_by_id(s->db, who->user_id, &u) != 0)
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    svc_quota q = quota_of(s, who->name), used = {0};
    db_job_count(s->db, who->name, "queued", &used.queued_jobs);
    db_file_bytes(s->db, who->name, &used.upload_bytes);
    for (run *r = s->runs; r; r = r->next)
        if (!strcmp(r->owner, who->name)) { used.running_jobs++; used.threads += r->threads; }
    *out = json_pack("{s:s, s:s, s:b, s:o, s:s, s:o, s:o}", "object", "user", "name", u.name, "admin", u.admin, "uid",
                     u.uid >= 0 ? json_integer(u.uid) : json_null(), "via", who->remote, "quota", quota_json(&q),
                     "usage", quota_json(&used));
    return *out ? 0 : svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
}

static int add_user(void *ud, const db_user *u)
{
    json_array_append_new(ud, json_pack("{s:s, s:s, s:b, s:o, s:I}", "object", "user", "name", u->name, "admin", u->admin,
                                        "uid", u->uid >= 0 ? json_integer(u->uid) : json_null(), "created_at",
                                        (json_int_t)u->created_at));
    return 0;
}

int svc_users(svc *s, const svc_caller *who, json_t **out, svc_error *e)
{
    int rc = need_admin(s, who, "GET /v1/users", e);
    if (rc) return rc;
    json_t *data = json_array();
    if (db_user_list(s->db, add_user, data)) {
        json_decref(data);
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    }
    *out = json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", 0);
    return 0;
}

static int add_audit(void *ud, const db_audit *a)
{
    json_array_append_new(ud, json_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "object", "audit.record", "id",
                                        (json_int_t)a->id, "created_at", (json_int_t)a->at, "user", a->actor, "action",
                                        a->action, "target", a->target, "outcome", a->outcome, "remote", a->remote,
                                        "detail", a->detail));
    return 0;
}

int svc_audit_list(svc *s, const svc_caller *who, long long before, int limit, json_t **out, svc_error *e)
{
    int rc = need_admin(s, who, "GET /v1/audit", e);
    if (rc) return rc;
    flush(s); /* records of the last second too */
    json_t *data = json_array();
    int more = 0;
    if (db_audit_list(s->db, before, limit, add_audit, data, &more)) {
        json_decref(data);
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    }
    *out = json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", more);
    return 0;
}

typedef struct count_ctx { prom_buf *b; long long queued; } count_ctx;
static int add_count(void *ud, const char *owner, const char *status, long long n)
{
    count_ctx *c = ud;
    prom_printf(c->b, "coretuned_jobs{user=\"");
    prom_escaped(c->b, owner);
    prom_printf(c->b, "\",state=\"%s\"} %lld\n", status, n);
    if (!strcmp(status, "queued")) c->queued += n;
    return 0;
}

int svc_metrics_text(svc *s, const svc_caller *who, prom_buf *b, svc_error *e)
{
    int rc = need_admin(s, who, "GET /metrics", e);
    if (rc) return rc;
    count_ctx c = {b, 0};
    prom_printf(b, "# HELP coretuned_jobs Jobs by user and state.\n# TYPE coretuned_jobs gauge\n");
    if (db_job_counts(s->db, add_count, &c))
        return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
    int threads = 0;
    for (run *r = s->runs; r; r = r->next) threads += r->threads;
    prom_printf(b, "# HELP coretuned_queue_depth Jobs waiting to run.\n# TYPE coretuned_queue_depth gauge\n"
                   "coretuned_queue_depth %lld\n", c.queued);
    prom_printf(b, "# HELP coretuned_running_jobs Jobs with a worker thread.\n# TYPE coretuned_running_jobs gauge\n"
                   "coretuned_running_jobs %d\n", s->n_runs);
    prom_printf(b, "# HELP coretuned_running_threads Trainer threads of running jobs (never above coretuned_cores).\n"
                   "# TYPE coretuned_running_threads gauge\ncoretuned_running_threads %d\n", threads);
    prom_printf(b, "# HELP coretuned_cores Cores the scheduler hands out.\n# TYPE coretuned_cores gauge\n"
                   "coretuned_cores %d\n", s->cfg.cores);
    const char *names[2] = {"coretuned_job_steps_per_second", "coretuned_job_images_per_second"};
    const char *helps[2] = {"Optimiser steps per second of a running job.", "Training images per second of a running job."};
    for (int k = 0; k < 2; k++) {
        prom_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", names[k], helps[k], names[k]);
        for (run *r = s->runs; r; r = r->next) {
            prom_printf(b, "%s{job=\"%s\",user=\"", names[k], r->job_id);
            prom_escaped(b, r->owner);
            prom_printf(b, "\"} %.6g\n", k == 0 ? r->steps_per_s : (isfinite(r->images_per_s) ? r->images_per_s : 0));
        }
    }
    prom_printf(b, "# HELP coretuned_db_write_seconds Time to commit one database transaction.\n"
                   "# TYPE coretuned_db_write_seconds histogram\n");
    prom_hist_write(b, "coretuned_db_write_seconds", "", &s->db_write);
    prom_printf(b, "# HELP coretuned_preemptions_total Jobs checkpointed and requeued to make room.\n"
                   "# TYPE coretuned_preemptions_total counter\ncoretuned_preemptions_total %llu\n", s->preemptions);
    prom_printf(b, "# HELP coretuned_auth_failures_total Requests refused for missing or bad credentials.\n"
                   "# TYPE coretuned_auth_failures_total counter\ncoretuned_auth_failures_total %llu\n", s->auth_failures);
    return b->failed ? svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory") : 0;
}

int svc_bootstrap(svc *s, char *token, size_t tokenlen, char *err, size_t errlen)
{
    char t[AUTH_TOKEN_LEN + 1];
    int rc = auth_bootstrap(s->db, s->cfg.self_uid, t, err, errlen);
    snprintf(token, tokenlen, "%s", rc == 0 ? t : "");
    memset(t, 0, sizeof t);
    return rc;
}

int svc_running_jobs(svc *s) { return s->n_runs; }

/* ---------------- life cycle ---------------- */

int svc_open(svc **out, uv_loop_t *loop, const svc_config *cfg, char *err, size_t errlen)
{
    svc *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    s->loop = loop;
    s->cfg = *cfg;
    if (s->cfg.cores <= 0) s->cfg.cores = s->cfg.threads_per_job > 0 ? s->cfg.threads_per_job : 1;
    prom_hist_init(&s->db_write, db_write_le, (int)(sizeof db_write_le / sizeof db_write_le[0]));
    pthread_mutex_init(&s->qlock, NULL);
    char path[1200];
    const char *sub[] = {"jobs", "files", "models", "files/tmp"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", cfg->data_dir, sub[i]);
        if (mkdir_p(path) != 0) {
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            goto fail;
        }
    }
    snprintf(s->upload_dir, sizeof s->upload_dir, "%s/files/tmp", cfg->data_dir);
    snprintf(path, sizeof path, "%s/coretuned.db", cfg->data_dir);
    if (db_open(&s->db, path, err, errlen) != 0) goto fail;
    if (db_event_max_id(s->db, &s->last_event_id) != 0) {
        snprintf(err, errlen, "cannot read events: %s", db_errmsg(s->db));
        goto fail;
    }
    /* jobs a crashed (or killed) daemon left running resume from their last checkpoint */
    char ids[64][DB_ID_MAX];
    int n = 0;
    do {
        if (db_job_ids_by_status(s->db, "running", 64, ids, &n) != 0) {
            snprintf(err, errlen, "cannot read jobs: %s", db_errmsg(s->db));
            goto fail;
        }
        for (int i = 0; i < n; i++) {
            status_change(s, ids[i], "queued");
            emit(s, ids[i], "status", "warn", json_pack("{s:s}", "status", "queued"),
                 "Daemon restarted: job requeued to resume from its last checkpoint");
            LOG(LOG_INFO, "msg=\"requeued after restart\" job=%s", ids[i]);
        }
        if (flush(s) != 0) {
            snprintf(err, errlen, "cannot requeue jobs: %s", db_errmsg(s->db));
            goto fail;
        }
    } while (n == 64);
    for (int i = 0; i < cfg->n_datasets; i++) { /* a missing mount should not keep the daemon down: warn */
        char why[512];
        s->ds_ok[i] = data_probe(&s->ds_info[i], cfg->datasets[i].path, why, sizeof why) == 0;
        if (!s->ds_ok[i]) LOG(LOG_WARN, "msg=\"dataset cannot be read\" name=%s err=\"%s\"", cfg->datasets[i].name, why);
    }
    uv_async_init(loop, &s->async, on_async);
    uv_timer_init(loop, &s->flush_timer);
    uv_timer_init(loop, &s->sched_timer);
    s->async.data = s->flush_timer.data = s->sched_timer.data = s;
    s->handles_open = 3;
    uv_timer_start(&s->sched_timer, on_sched_timer, 1000, 1000);
    schedule(s);
    *out = s;
    return 0;
fail:
    svc_free(s);
    return -EIO;
}

static void on_handle_closed(uv_handle_t *h)
{
    svc *s = h->data;
    if (--s->handles_open == 0 && s->done) s->done(s->done_ud);
}

static void maybe_finish_shutdown(svc *s)
{
    if (!s->stopping || s->n_runs > 0 || s->handles_open != 3) return;
    flush(s);
    uv_timer_stop(&s->flush_timer);
    uv_timer_stop(&s->sched_timer);
    uv_close((uv_handle_t *)&s->async, on_handle_closed);
    uv_close((uv_handle_t *)&s->flush_timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->sched_timer, on_handle_closed);
}

void svc_shutdown(svc *s, void (*done)(void *), void *ud)
{
    s->stopping = 1;
    s->done = done;
    s->done_ud = ud;
    for (run *r = s->runs; r; r = r->next) {
        int want = TR_RUN;
        atomic_compare_exchange_strong(&r->stop, &want, TR_STOP_CHECKPOINT);
        LOG(LOG_INFO, "msg=\"asking job to checkpoint\" job=%s", r->job_id);
    }
    maybe_finish_shutdown(s);
}

void svc_free(svc *s)
{
    if (!s) return;
    flush(s);
    db_batch_free(&s->batch);
    db_close(s->db);
    free(s->q);
    free(s->spare);
    while (s->runs) { run *r = s->runs; s->runs = r->next; run_free(r); }
    free(s->recent);
    free(s->order);
    pthread_mutex_destroy(&s->qlock);
    free(s);
}
