/* core/executor_local.c — the local executor: one plain pthread per run calls tr_run (never libuv's
 * shared pool, which a long training run would starve).
 *
 * Threads. The loop owns the list of runs and calls every exec_ops function. A worker thread owns its
 * tr_run; it touches only its run's spec/out_dir (read-only after start), the record queue (under
 * qlock) and its atomic stop flag. Its result is written before it pushes its done record and read by
 * the loop only after draining that record, then the loop joins the thread (which has returned or is
 * about to). uv_async_send coalesces wake-ups: the loop swaps the whole queue out and handles every
 * record, so no wake-up is counted and no metric is dropped. */
#define _GNU_SOURCE
#include "core/executor.h"
#include "common/log.h"
#include "common/util.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define ID_MAX 48

typedef struct lrun lrun;
struct lrun {
    struct local *x;
    char job_id[ID_MAX];
    tr_spec spec;
    char out_dir[TR_PATH_MAX];
    int resume;
    pthread_t thread;
    atomic_int stop;               /* enum tr_stop: loop writes (only upwards), worker reads at step boundaries */
    exec_done done;                /* worker-written, loop-read after the done record */
    lrun *next;
};

typedef struct rec {               /* one record from a worker to the loop */
    int done;                      /* 0 = progress */
    lrun *r;
    tr_progress p;
    char ckpt[TR_PATH_MAX];        /* p.checkpoint_path copied (the worker's buffer is not ours) */
} rec;

typedef struct local {
    executor base;
    exec_sink sink;
    uv_async_t async;
    pthread_mutex_t qlock;
    rec *q;                        /* guarded by qlock */
    int qn, qcap;
    rec *spare;                    /* loop-owned: swapped with q on each drain */
    int spare_cap;
    lrun *runs;                    /* loop-owned */
    int cores;                     /* the most threads a job may ask for */
    int nice;                      /* the worker threads' nice value (0 = unchanged); read-only */
    int gpus[EXEC_MAX_GPUS], ngpus; /* the daemon's GPUs (the scheduler hands them out) */
    char gpus_why[160];            /* why there are none */
    void (*closed)(void *);
    void *closed_ud;
} local;

static void push(local *x, const rec *r)
{
    pthread_mutex_lock(&x->qlock);
    while (util_grow(&x->q, &x->qcap, x->qn + 1, sizeof *x->q) != 0) {
        /* cannot grow: keep every record by waiting for the loop to drain */
        pthread_mutex_unlock(&x->qlock);
        uv_async_send(&x->async);
        usleep(1000);
        pthread_mutex_lock(&x->qlock);
    }
    x->q[x->qn++] = *r;
    pthread_mutex_unlock(&x->qlock);
    uv_async_send(&x->async);
}

static void on_progress(void *ud, const tr_progress *p)
{
    lrun *r = ud;
    rec x;
    memset(&x, 0, sizeof x);
    x.r = r;
    x.p = *p;
    if (p->checkpoint_path) snprintf(x.ckpt, sizeof x.ckpt, "%s", p->checkpoint_path);
    x.p.checkpoint_path = NULL;
    push(r->x, &x);
}

static int on_should_stop(void *ud)
{
    lrun *r = ud;
    return atomic_load(&r->stop);
}

static void *worker_main(void *arg)
{
    lrun *r = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the loop thread */
    /* Linux: a thread's own nice value (threads made from here on inherit it). The loop, woken for a
     * request or an event, then takes a core from training at once rather than after a time slice. */
    if (r->x->nice && setpriority(PRIO_PROCESS, (id_t)gettid(), r->x->nice) != 0)
        LOG(LOG_WARN, "msg=\"cannot lower the trainer's priority\" job=%s err=\"%s\"", r->job_id, strerror(errno));
    tr_callbacks cb = {.progress = on_progress, .should_stop = on_should_stop, .ud = r};
    r->done.rc = tr_run(&r->spec, r->out_dir, r->resume, &cb, &r->done.res, r->done.err, sizeof r->done.err);
    rec x;
    memset(&x, 0, sizeof x);
    x.done = 1;
    x.r = r;
    push(r->x, &x);
    return NULL;
}

static lrun *find(local *x, const char *job_id)
{
    for (lrun *r = x->runs; r; r = r->next)
        if (!strcmp(r->job_id, job_id)) return r;
    return NULL;
}

static void unlink_run(local *x, lrun *r)
{
    for (lrun **pp = &x->runs; *pp; pp = &(*pp)->next)
        if (*pp == r) { *pp = r->next; return; }
}

static void on_async(uv_async_t *a)
{
    local *x = a->data;
    pthread_mutex_lock(&x->qlock); /* swap the queue with the (empty) spare: workers never wait long */
    rec *items = x->q;
    int n = x->qn, cap = x->qcap;
    x->q = x->spare;
    x->qcap = x->spare_cap;
    x->qn = 0;
    pthread_mutex_unlock(&x->qlock);
    for (int i = 0; i < n; i++) {
        lrun *r = items[i].r;
        if (!items[i].done) {
            if (items[i].ckpt[0]) items[i].p.checkpoint_path = items[i].ckpt;
            x->sink.progress(x->sink.ud, r->job_id, &items[i].p);
            continue;
        }
        pthread_join(r->thread, NULL); /* it has pushed its last record: returns at once */
        unlink_run(x, r);
        x->sink.done(x->sink.ud, r->job_id, &r->done);
        free(r);
    }
    x->spare = items; /* the spare is the loop's alone */
    x->spare_cap = cap;
    if (n) x->sink.drained(x->sink.ud);
}

static int local_start(executor *e, const exec_job *j, char *err, size_t errlen)
{
    local *x = (local *)e;
    lrun *r = calloc(1, sizeof *r);
    if (!r) { snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    r->x = x;
    snprintf(r->job_id, sizeof r->job_id, "%.47s", j->id);
    r->spec = *j->spec;
    snprintf(r->out_dir, sizeof r->out_dir, "%s", j->dir);
    r->resume = j->resume;
    atomic_init(&r->stop, TR_RUN);
    int rc = pthread_create(&r->thread, NULL, worker_main, r);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start a worker thread: %s", strerror(rc));
        free(r);
        return -rc;
    }
    r->next = x->runs;
    x->runs = r;
    return 0;
}

static void local_stop(executor *e, const char *job_id, enum tr_stop mode)
{
    lrun *r = find((local *)e, job_id);
    if (!r) return;
    int cur = atomic_load(&r->stop);
    while (cur < (int)mode && !atomic_compare_exchange_weak(&r->stop, &cur, (int)mode)) {}
}

/* A worker thread does not outlive its daemon: nothing to re-attach. */
static int local_reattach(executor *e, const exec_job *j)
{
    (void)e; (void)j;
    return -ENOENT;
}

static int has_gpu(const local *x, int device)
{
    for (int i = 0; i < x->ngpus; i++)
        if (device == TR_DEVICE_ANY || x->gpus[i] == device) return 1;
    return 0;
}

/* This machine's cores (as many as the daemon gives a job), memory and the daemon's GPUs (--gpus: a job
 * names "cuda" for any of them or "cuda:N" for one; resources.gpus is Slurm's); no partitions; a time
 * limit it would have to enforce is refused rather than ignored. */
static int local_check(executor *e, const jobspec_resources *res, int device, char *param, size_t paramlen,
                       char *err, size_t errlen)
{
    local *x = (local *)e;
    long long mem_mb = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) / (1024 * 1024);
    const char *p = NULL;
    if (device != TR_DEVICE_CPU && !has_gpu(x, device)) {
        char name[16], set[3 * EXEC_MAX_GPUS + 1] = "";
        jobspec_device_name(device, name, sizeof name);
        for (int i = 0; i < x->ngpus; i++)
            snprintf(set + strlen(set), sizeof set - strlen(set), "%s%d", i ? "," : "", x->gpus[i]);
        p = "device";
        if (x->ngpus == 0)
            snprintf(err, errlen, "device %s: this daemon has no GPUs to give (%s)", name, x->gpus_why);
        else
            snprintf(err, errlen, "device %s is not one of this daemon's GPUs (--gpus %s)", name, set);
    } else if (res->cpus > x->cores) {
        p = "resources.cpus";
        snprintf(err, errlen, "this daemon gives a job at most %d cpus (--threads-per-job)", x->cores);
    } else if (res->memory_mb > 0 && mem_mb > 0 && res->memory_mb > mem_mb) {
        p = "resources.memory_mb";
        snprintf(err, errlen, "this machine has %lld MiB of memory", mem_mb);
    } else if (res->gpus > 0) {
        p = "resources.gpus";
        snprintf(err, errlen, "the local executor has no GPUs to give");
    } else if (res->partition[0]) {
        p = "resources.partition";
        snprintf(err, errlen, "partitions are a Slurm notion: the daemon runs jobs locally (--executor local)");
    } else if (res->time_limit_minutes > 0) {
        p = "resources.time_limit_minutes";
        snprintf(err, errlen, "the local executor does not enforce time limits (--executor slurm does)");
    }
    if (!p) return 0;
    snprintf(param, paramlen, "%s", p);
    return -EINVAL;
}

static const char *local_trouble(executor *e) { (void)e; return NULL; }

static void on_closed(uv_handle_t *h)
{
    local *x = h->data;
    if (x->closed) x->closed(x->closed_ud);
}

static void local_close(executor *e, void (*closed)(void *), void *ud)
{
    local *x = (local *)e;
    x->closed = closed;
    x->closed_ud = ud;
    uv_close((uv_handle_t *)&x->async, on_closed);
}

static void local_free(executor *e)
{
    local *x = (local *)e;
    while (x->runs) { lrun *r = x->runs; x->runs = r->next; free(r); } /* only if the loop never ran */
    free(x->q);
    free(x->spare);
    pthread_mutex_destroy(&x->qlock);
    free(x);
}

static const exec_ops local_ops = {.name = "local", .queues = 0, .outlives_daemon = 0, .check = local_check,
                                   .start = local_start, .stop = local_stop, .reattach = local_reattach,
                                   .trouble = local_trouble, .close = local_close, .free = local_free};

int exec_local_new(executor **out, uv_loop_t *loop, const exec_sink *sink, int cores, const int *gpus, int ngpus,
                   const char *gpus_why, int nice, char *err, size_t errlen)
{
    local *x = calloc(1, sizeof *x);
    if (!x) { snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    x->base.ops = &local_ops;
    x->cores = cores;
    x->nice = nice;
    x->ngpus = ngpus < 0 ? 0 : ngpus > EXEC_MAX_GPUS ? EXEC_MAX_GPUS : ngpus;
    if (x->ngpus) memcpy(x->gpus, gpus, sizeof *gpus * (size_t)x->ngpus);
    snprintf(x->gpus_why, sizeof x->gpus_why, "%s", gpus_why && gpus_why[0] ? gpus_why : "--gpus none");
    x->sink = *sink;
    pthread_mutex_init(&x->qlock, NULL);
    int rc = uv_async_init(loop, &x->async, on_async);
    if (rc) {
        snprintf(err, errlen, "uv_async_init: %s", uv_strerror(rc));
        pthread_mutex_destroy(&x->qlock);
        free(x);
        return rc;
    }
    x->async.data = x;
    *out = &x->base;
    return 0;
}
