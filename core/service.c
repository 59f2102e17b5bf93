/* core/service.c — the core's life cycle: open (data dir, database, the executor, re-attaching or
 * requeueing what a previous daemon left running), shutdown (every run checkpoints, the last progress
 * is committed, the handles close), and the helpers every core file shares. Loop thread only.
 * Errors from svc_open are the real cause (errno-style) with a one-line reason. */
#include "core/core_int.h"
#include "core/auth.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static const double db_write_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

/* Messages and params quote what clients sent (ids from the URL, header values): they are cleaned to
 * valid UTF-8 so that every error can be rendered as JSON. */
int svc_fail(svc_error *e, enum svc_err kind, const char *code, const char *param, const char *fmt, ...)
{
    e->kind = kind;
    e->code = code;
    util_utf8_clean(e->param, sizeof e->param, param);
    char raw[sizeof e->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    util_utf8_clean(e->message, sizeof e->message, raw);
    return kind;
}

int svc__storage_error(svc *s, svc_error *e)
{
    return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "database: %s", db_errmsg(s->db));
}

int svc__is_final(enum job_status status)
{
    return status == JOB_SUCCEEDED || status == JOB_FAILED || status == JOB_CANCELLED;
}

run *svc__find_run(svc *s, const char *job_id)
{
    for (run *r = s->runs; r; r = r->next)
        if (!strcmp(r->job_id, job_id)) return r;
    return NULL;
}

int svc__mkdir_p(const char *path)
{
    char tmp[TR_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -errno;
    return 0;
}

int svc__file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

void svc__fine_tuned_name(const db_job *j, const char *arch, char *out, size_t n)
{
    if (j->suffix) snprintf(out, n, "ft:%s:%s:%s", arch, j->suffix, j->id);
    else snprintf(out, n, "ft:%s:%s", arch, j->id);
}

void svc_set_listener(svc *s, void (*fn)(void *, const char *), void *ud)
{
    s->listener = fn;
    s->listener_ud = ud;
}

int svc_ready(svc *s, const svc_caller *who, svc_readiness *out, svc_error *e)
{
    (void)who;
    if (s->stopping) return svc_fail(e, SVC_EUNAVAILABLE, "shutting_down", NULL, "the daemon is shutting down");
    const char *why = s->exec->ops->trouble(s->exec);
    if (why) return svc_fail(e, SVC_EUNAVAILABLE, "executor_unavailable", NULL, "%s", why);
    *out = (svc_readiness){s->cfg.workers, s->n_runs, s->cfg.threads_per_job, s->exec->ops->name, -1, 0, 0};
    out->disk_free_bytes = svc__disk_free(s, NULL);
    out->min_free_bytes = s->cfg.min_free_bytes;
    out->disk_low = s->cfg.min_free_bytes > 0 && out->disk_free_bytes >= 0 && out->disk_free_bytes < s->cfg.min_free_bytes;
    return 0;
}

int svc_bootstrap(svc *s, char *token, size_t tokenlen, char name[64], char *err, size_t errlen)
{
    char t[AUTH_TOKEN_LEN + 1];
    int rc = auth_bootstrap(s->db, s->cfg.self_uid, t, name, err, errlen);
    snprintf(token, tokenlen, "%s", rc == 0 ? t : "");
    memset(t, 0, sizeof t);
    return rc;
}

/* Runs the previous daemon left alive: jobs with a live executor record (a Slurm job outlives the daemon,
 * whatever the job's status) are re-attached; those the executor no longer knows are handled below like
 * any job left `running`. */
static int recover_live(svc *s, char (*ids)[DB_ID_MAX], int page, char *err, size_t errlen)
{
    int n = 0;
    if (db_job_ids_executor_live(s->db, page, ids, &n) != 0)
        return err_set(err, errlen, -EIO, "cannot read jobs: %s", db_errmsg(s->db));
    for (int i = 0; i < n; i++) {
        if (svc__find_run(s, ids[i]) || svc__adopt_run(s, ids[i]) == 0) continue;
        db_exec *x = db_batch_exec(&s->batch, ids[i]); /* gone: stop asking */
        db_job j;
        if (x && db_job_get(s->db, ids[i], &j) == 0) {
            x->record = j.executor ? strdup(j.executor) : NULL;
            db_job_clear(&j);
        }
        LOG(LOG_WARN, "msg=\"executor no longer knows the job\" job=%s executor=%s", ids[i], s->exec->ops->name);
    }
    if (n == page) LOG(LOG_WARN, "msg=\"more live jobs than re-attached at start\" limit=%d", page);
    return svc__flush(s) == 0 ? 0 : err_set(err, errlen, -EIO, "cannot record jobs: %s", db_errmsg(s->db));
}

/* Jobs a crashed (or killed) daemon left running: still running under the executor (re-attached: they
 * stay `running`), or requeued to resume from their last checkpoint. */
static int recover_running(svc *s, char *err, size_t errlen)
{
    enum { PAGE = 4096 };
    char (*ids)[DB_ID_MAX] = malloc(PAGE * sizeof *ids);
    if (!ids) return err_set(err, errlen, -ENOMEM, "out of memory");
    int n = 0, requeued, rc = recover_live(s, ids, PAGE, err, errlen);
    if (rc) { free(ids); return rc; }
    do { /* requeued jobs leave the `running` set, re-attached ones stay: page until nothing moves */
        requeued = 0;
        if (db_job_ids_by_status(s->db, JOB_RUNNING, PAGE, ids, &n) != 0) {
            rc = err_set(err, errlen, -EIO, "cannot read jobs: %s", db_errmsg(s->db));
            break;
        }
        for (int i = 0; i < n; i++) {
            if (svc__find_run(s, ids[i])) continue;
            if (svc__adopt_run(s, ids[i]) == 0) continue;
            svc__status_change(s, ids[i], JOB_QUEUED);
            svc__emit(s, ids[i], "status", "warn", json_pack("{s:s}", "status", job_status_name(JOB_QUEUED)),
                      "Daemon restarted: job requeued to resume from its last checkpoint");
            LOG(LOG_INFO, "msg=\"requeued after restart\" job=%s", ids[i]);
            requeued++;
        }
        if (svc__flush(s) != 0) {
            rc = err_set(err, errlen, -EIO, "cannot requeue jobs: %s", db_errmsg(s->db));
            break;
        }
    } while (n == PAGE && requeued > 0);
    free(ids);
    return rc;
}

/* The data dir and the database hold every user's jobs and tokens' hashes: private to the daemon. An
 * existing one that others can read (made by hand, or by an older version) is tightened, with a log
 * line; when that fails the daemon does not start. */
static int make_private(const char *path, mode_t want, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT ? 0 : err_set(err, errlen, -errno, "%s: %s", path, strerror(errno));
    if ((st.st_mode & 0777 & ~want) == 0) return 0;
    if (chmod(path, want) != 0)
        return err_set(err, errlen, -errno, "%s is readable by others (mode %03o) and cannot be made private: %s", path,
                       (unsigned)(st.st_mode & 0777), strerror(errno));
    LOG(LOG_WARN, "msg=\"made private\" path=%s was=%03o now=%03o", path, (unsigned)(st.st_mode & 0777), (unsigned)want);
    return 0;
}

/* An upload in flight when the previous daemon died left its partial files or staging folder in files/tmp. */
static void clear_upload_tmp(svc *s)
{
    DIR *d = opendir(s->upload_dir);
    if (!d) return;
    int n = 0;
    struct dirent *de;
    char path[1400];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", s->upload_dir, de->d_name);
        if (util_rmtree(path) == 0) n++; /* a partial file, or an upload's staging folder */
        else LOG(LOG_WARN, "msg=\"cannot remove a stale upload\" path=%s err=\"%s\"", path, strerror(errno));
    }
    closedir(d);
    if (n) LOG(LOG_INFO, "msg=\"removed partial uploads of a previous run\" count=%d", n);
}

/* The last of the three handles closed: shutdown is complete. */
static void one_closed(svc *s)
{
    if (--s->handles_open == 0 && s->done) s->done(s->done_ud);
}

static void on_handle_closed(uv_handle_t *h) { one_closed(h->data); }

static void on_exec_closed(void *ud) { one_closed(ud); }

int svc_open(svc **out, uv_loop_t *loop, const svc_config *cfg, char *err, size_t errlen)
{
    svc *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, errlen, -ENOMEM, "out of memory");
    s->loop = loop;
    s->cfg = *cfg;
    if (s->cfg.cores <= 0) s->cfg.cores = s->cfg.threads_per_job > 0 ? s->cfg.threads_per_job : 1;
    hist_init(&s->db_write, db_write_le, (int)(sizeof db_write_le / sizeof db_write_le[0]));
    char path[1200];
    int rc = 0;
    if ((rc = svc__mkdir_p(cfg->data_dir)) != 0) {
        err_set(err, errlen, rc, "cannot create %s: %s", cfg->data_dir, strerror(-rc));
        goto fail;
    }
    if ((rc = make_private(cfg->data_dir, 0700, err, errlen)) != 0) goto fail;
    static const char *const db_files[] = {"coretuned.db", "coretuned.db-wal", "coretuned.db-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", cfg->data_dir, db_files[i]);
        if ((rc = make_private(path, 0600, err, errlen)) != 0) goto fail;
    }
    const char *sub[] = {"jobs", "files", "models", "files/tmp"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", cfg->data_dir, sub[i]);
        if ((rc = svc__mkdir_p(path)) != 0) {
            err_set(err, errlen, rc, "cannot create %s: %s", path, strerror(-rc));
            goto fail;
        }
    }
    snprintf(s->upload_dir, sizeof s->upload_dir, "%s/files/tmp", cfg->data_dir);
    clear_upload_tmp(s);
    snprintf(path, sizeof path, "%s/coretuned.db", cfg->data_dir);
    if ((rc = db_open(&s->db, path, err, errlen)) != 0) goto fail;
    if ((rc = auth_cache_new(&s->auth)) != 0) {
        err_set(err, errlen, rc, "out of memory");
        goto fail;
    }
    if ((rc = svc__events_seed(s)) != 0) {
        err_set(err, errlen, rc, "cannot read events: %s", db_errmsg(s->db));
        goto fail;
    }
    exec_sink sink = svc__sink;
    sink.ud = s;
    if (!s->cfg.jobs_dir[0]) snprintf(s->cfg.jobs_dir, sizeof s->cfg.jobs_dir, "%.1000s/jobs", cfg->data_dir);
    if ((rc = svc__mkdir_p(s->cfg.jobs_dir)) != 0) {
        err_set(err, errlen, rc, "cannot create %s: %s", s->cfg.jobs_dir, strerror(-rc));
        goto fail;
    }
    /* three loop handles, opened in this order: the executor's, the flush timer, the scheduler's timer */
    if (!strcmp(s->cfg.executor, "slurm")) {
        s->cfg.slurm.checkpoint_seconds = s->cfg.checkpoint_seconds;
        rc = exec_slurm_new(&s->exec, loop, &sink, &s->cfg.slurm, err, errlen);
    } else {
        rc = exec_local_new(&s->exec, loop, &sink, s->cfg.threads_per_job, s->cfg.gpus, s->cfg.n_gpus, s->cfg.gpus_why,
                            s->cfg.job_nice, err, errlen);
    }
    if (rc != 0) goto fail;
    if (s->exec->ops->queues) { /* its queue decides the order: start whatever the quotas allow */
        s->cfg.workers = s->cfg.cores = 1 << 20;
        s->cfg.preemption = 0;
    }
    s->handles_open = 1;
    if ((rc = svc__events_init(s)) != 0) goto timers;
    s->handles_open = 2;
    if ((rc = svc__schedule_init(s)) != 0) goto timers;
    s->handles_open = 3;
    if ((rc = recover_running(s, err, errlen)) != 0) goto fail;
    for (int i = 0; i < cfg->n_datasets; i++) { /* a missing mount should not keep the daemon down: warn */
        char why[512];
        s->ds_ok[i] = data_probe(&s->ds_info[i], cfg->datasets[i].path, why, sizeof why) == 0;
        if (!s->ds_ok[i]) LOG(LOG_WARN, "msg=\"dataset cannot be read\" name=%s err=\"%s\"", cfg->datasets[i].name, why);
    }
    if ((rc = svc__sweeps_open(s)) != 0) {
        err_set(err, errlen, -EIO, "cannot read sweeps: %s", db_errmsg(s->db));
        goto fail;
    }
    if ((rc = svc__webhooks_open(s, err, errlen)) != 0) goto fail; /* last: nothing after it can fail */
    char gwhy[256], gset[3 * SVC_MAX_GPUS + 1] = "";
    for (int i = 0; i < s->cfg.n_gpus; i++)
        snprintf(gset + strlen(gset), sizeof gset - strlen(gset), "%s%d", i ? "," : "", s->cfg.gpus[i]);
    LOG(LOG_INFO, "msg=\"gpus\" gpus=%s%s%s%s", gset[0] ? gset : "none", gset[0] ? "" : " reason=\"",
        gset[0] ? "" : s->cfg.gpus_why[0] ? s->cfg.gpus_why : "--gpus none", gset[0] ? "" : "\"");
    /* no NVML is no error: /metrics simply has no GPU gauges, and the log says why once */
    if (gpumon_start(&s->gpumon, s->cfg.gpus, s->cfg.n_gpus, GPUMON_PERIOD_S, gwhy, sizeof gwhy) == 0)
        LOG(LOG_INFO, "msg=\"gpu metrics from NVML\" detail=\"%s\"", gwhy);
    else
        LOG(LOG_INFO, "msg=\"no GPU metrics\" reason=\"%s\"", gwhy);
    svc__sweep_orphans(s);
    svc__retention(s, 1);
    svc__schedule(s);
    svc__sweeps_advance(s);
    *out = s;
    return 0;
timers:
    err_set(err, errlen, rc, "cannot start the loop timers: %s", uv_strerror(rc));
fail:
    if (s->handles_open) { /* the handles are the loop's until closed: close them and run the loop once */
        if (s->handles_open >= 3) svc__schedule_close(s, NULL);
        if (s->handles_open >= 2) svc__events_close(s, NULL);
        s->exec->ops->close(s->exec, NULL, NULL);
        s->handles_open = 0;
        uv_run(loop, UV_RUN_NOWAIT);
    }
    svc_free(s);
    return rc < 0 ? rc : -EIO;
}

/* Once every run has ended: commit the last progress and close the handles. */
void svc__finish_shutdown(svc *s)
{
    if (!s->stopping || s->n_runs > 0 || s->uploads > 0 || s->tests || s->disk_work || s->handles_open != 3)
        return; /* tests: sweeps.c */
    svc__flush(s);
    svc__webhooks_close(s);
    svc__events_close(s, on_handle_closed);
    svc__schedule_close(s, on_handle_closed);
    s->exec->ops->close(s->exec, on_exec_closed, s);
}

void svc_shutdown(svc *s, void (*done)(void *), void *ud)
{
    s->stopping = 1;
    s->done = done;
    s->done_ud = ud;
    if (s->exec->ops->outlives_daemon) { /* they go on; the next daemon re-attaches from their records */
        LOG(LOG_INFO, "msg=\"leaving jobs to the executor\" executor=%s jobs=%d", s->exec->ops->name, s->n_runs);
        svc__runs_free(s);
    }
    for (run *r = s->runs; r; r = r->next) {
        svc__stop_run(s, r, TR_STOP_CHECKPOINT);
        LOG(LOG_INFO, "msg=\"asking job to checkpoint\" job=%s", r->job_id);
    }
    svc__finish_shutdown(s);
}

void svc_free(svc *s)
{
    if (!s) return;
    gpumon_stop(s->gpumon);
    if (s->db) svc__flush(s);
    db_batch_free(&s->batch);
    db_close(s->db);
    auth_cache_free(s->auth);
    exec_free(s->exec);
    svc__runs_free(s);
    svc__sweeps_free(s);
    svc__webhooks_free(s);
    svc__disk_free_memo(s);
    free(s->recent);
    free(s->order);
    free(s);
}
