/* core/disk.c — storage management: deletes of uploads, fine-tuned models and finished jobs, disk
 * accounting (each user's bytes of files, models and job directories), the disk_mb quota, the low-disk
 * guard (--min-free-mb), retention of finished jobs' checkpoints (--keep-checkpoints, --retention-days)
 * and, at start, the sweep of directories no row points at. Loop thread, except the removals: a delete
 * commits its row first, then hands the directory to libuv's pool (remove_later), so a crash leaves at
 * worst an orphan directory (swept at the next start), never a row pointing at nothing. Errors come back
 * as svc_error (the one table in api/ maps them); a removal that fails is logged. */
#define _GNU_SOURCE
#include "core/core_int.h"
#include "common/log.h"
#include "common/util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define RETENTION_EVERY 60.0       /* seconds between retention passes (from the scheduler's tick) */
#define MAX_ITEMS 50               /* largest items listed by GET /v1/storage */

/* ---------------- bytes on disk ---------------- */

/* Bytes a tree takes on disk (allocated blocks, so sparse files count what they use). 0 if absent. */
static long long tree_bytes_at(int at, const char *name, int depth)
{
    struct stat st;
    if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return 0;
    long long n = (long long)st.st_blocks * 512;
    if (!S_ISDIR(st.st_mode) || depth > 16) return n;
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) { if (fd >= 0) close(fd); return n; }
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n += tree_bytes_at(dirfd(d), de->d_name, depth + 1);
    closedir(d);
    return n;
}

static long long tree_bytes(const char *path) { return tree_bytes_at(AT_FDCWD, path, 0); }

long long svc__disk_free(svc *s, long long *total)
{
    struct statvfs v;
    if (statvfs(s->cfg.data_dir, &v) != 0) { if (total) *total = -1; return -1; }
    if (total) *total = (long long)v.f_blocks * (long long)v.f_frsize;
    return (long long)v.f_bavail * (long long)v.f_frsize;
}

/* The weights files of a job's model (final and best) next to the models row's path. */
static long long model_bytes(const db_model *m)
{
    char best[1100];
    snprintf(best, sizeof best, "%s", m->path);
    char *slash = strrchr(best, '/');
    if (slash) snprintf(slash + 1, sizeof best - (size_t)(slash + 1 - best), "best.safetensors");
    return tree_bytes(m->path) + (slash ? tree_bytes(best) : 0);
}

static void job_dir(svc *s, const char *job_id, char *out, size_t n)
{
    snprintf(out, n, "%.900s/%.47s", s->cfg.jobs_dir, job_id);
}

static void file_dir(svc *s, const char *file_id, char *out, size_t n)
{
    snprintf(out, n, "%.900s/files/%.47s", s->cfg.data_dir, file_id);
}

typedef struct usage_ctx { svc *s; svc_usage *u; int failed; } usage_ctx;

static int add_model_bytes(void *ud, const db_model *m)
{
    usage_ctx *c = ud;
    c->u->model_bytes += model_bytes(m);
    return 0;
}

/* Finished jobs' bytes, remembered: such a directory changes only by a removal the daemon makes (a delete,
 * retention), and the end of every removal forgets them all (rm_done). Without it /v1/me and /v1/storage
 * walked every job's files on the loop (60 ms at 500 jobs). Open addressing by a hash of the id. */
static struct disk_memo *memo_find(svc *s, const char *id)
{
    if (!s->cap_disk_memo) return NULL;
    for (unsigned i = util_hash(id);; i++) {
        struct disk_memo *e = &s->disk_memo[i & (unsigned)(s->cap_disk_memo - 1)];
        if (!e->id[0] || !strcmp(e->id, id)) return e;
    }
}

static void memo_put(svc *s, const char *id, long long bytes)
{
    if (2 * (s->n_disk_memo + 1) > s->cap_disk_memo) { /* grow: rehash into twice the slots */
        int cap = s->cap_disk_memo ? 2 * s->cap_disk_memo : 256;
        struct disk_memo *old = s->disk_memo, *fresh = calloc((size_t)cap, sizeof *fresh);
        if (!fresh) return; /* not remembered: counted again next time */
        int old_cap = s->cap_disk_memo;
        s->disk_memo = fresh;
        s->cap_disk_memo = cap;
        for (int i = 0; i < old_cap; i++)
            if (old[i].id[0]) *memo_find(s, old[i].id) = old[i];
        free(old);
    }
    struct disk_memo *e = memo_find(s, id);
    if (!e->id[0]) s->n_disk_memo++;
    snprintf(e->id, sizeof e->id, "%s", id);
    e->bytes = bytes;
}

static void memo_forget(svc *s)
{
    if (s->cap_disk_memo) memset(s->disk_memo, 0, (size_t)s->cap_disk_memo * sizeof *s->disk_memo);
    s->n_disk_memo = 0;
}

void svc__disk_free_memo(svc *s)
{
    free(s->disk_memo);
    s->disk_memo = NULL;
    s->n_disk_memo = s->cap_disk_memo = 0;
}

/* A job's directory, less its model's weights (counted as the model's). */
static long long job_bytes(svc *s, const db_job_brief *b)
{
    /* as retention: a final status with no run still winding down means nothing writes there any more */
    int finished = svc__is_final(b->status) && !svc__find_run(s, b->id);
    struct disk_memo *e = finished ? memo_find(s, b->id) : NULL;
    if (e && e->id[0]) return e->bytes;
    char dir[1000];
    job_dir(s, b->id, dir, sizeof dir);
    long long n = tree_bytes(dir);
    db_model m;
    if (db_model_of_job(s->db, b->id, &m) == 0) n -= model_bytes(&m);
    if (n < 0) n = 0;
    if (finished) memo_put(s, b->id, n);
    return n;
}

static int add_job_bytes(void *ud, const db_job_brief *b)
{
    usage_ctx *c = ud;
    c->u->job_bytes += job_bytes(c->s, b);
    return 0;
}

/* One user's bytes (owner "" = rows from before users). */
static int usage_of(svc *s, const char *owner, svc_usage *u)
{
    memset(u, 0, sizeof *u);
    snprintf(u->name, sizeof u->name, "%s", owner);
    usage_ctx c = {s, u, 0};
    if (db_file_bytes(s->db, owner, &u->file_bytes) != 0 || db_model_list(s->db, owner, add_model_bytes, &c) != 0 ||
        db_job_walk(s->db, owner, add_job_bytes, &c) != 0)
        return -EIO;
    return 0;
}

int svc__usage(svc *s, const char *owner, long long *files, long long *models, long long *jobs)
{
    svc_usage u;
    int rc = usage_of(s, owner, &u);
    if (rc) return rc;
    *files = u.file_bytes;
    *models = u.model_bytes;
    *jobs = u.job_bytes;
    return 0;
}

/* ---------------- quota and guard ---------------- */

int svc__disk_guard(svc *s, const char *what, svc_error *e)
{
    if (s->cfg.min_free_bytes <= 0) return 0;
    long long avail = svc__disk_free(s, NULL);
    if (avail < 0 || avail >= s->cfg.min_free_bytes) return 0;
    LOG(LOG_WARN, "msg=\"low disk: refused\" what=\"%s\" free_bytes=%lld min_free_bytes=%lld", what, avail,
        s->cfg.min_free_bytes);
    return svc_fail(e, SVC_ENOSPACE, "insufficient_storage", NULL,
                    "%s refused: the data directory's disk has %lld MiB free, below --min-free-mb %lld; delete"
                    " files, models or finished jobs to make room", what, avail >> 20, s->cfg.min_free_bytes >> 20);
}

int svc__disk_quota(svc *s, const char *owner, long long more, svc_error *e)
{
    svc_quota q = svc__quota_of(s, owner);
    if (q.disk_bytes <= 0) return 0;
    long long f, m, j;
    if (svc__usage(s, owner, &f, &m, &j) != 0) return svc__storage_error(s, e);
    if (f + m + j + more > q.disk_bytes)
        return svc__over_quota(e, "disk_mb", q.disk_bytes >> 20,
                               "%s has %lld MiB on disk (files %lld, models %lld, jobs %lld) and this needs %lld MiB"
                               " more; delete files, models or finished jobs", owner, (f + m + j) >> 20, f >> 20,
                               m >> 20, j >> 20, (more + (1 << 20) - 1) >> 20);
    return 0;
}

/* ---------------- removals off the loop ---------------- */

typedef struct rm_work {
    uv_work_t req;
    svc *s;
    char path[1100];
    char keep[2][24];              /* names at the top that stay (a model's weights), "" = none */
    char what[80];
    long long freed;
    int rc;
} rm_work;

static int kept(const rm_work *w, const char *name)
{
    return (w->keep[0][0] && !strcmp(name, w->keep[0])) || (w->keep[1][0] && !strcmp(name, w->keep[1]));
}

static void rm_run(uv_work_t *req) /* libuv's pool: touches only its own request */
{
    rm_work *w = req->data;
    if (!w->keep[0][0]) { w->rc = util_rmtree_at(AT_FDCWD, w->path, &w->freed); return; }
    DIR *d = opendir(w->path);
    if (!d) { w->rc = errno == ENOENT ? 0 : -errno; return; }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || kept(w, de->d_name)) continue;
        int r = util_rmtree_at(dirfd(d), de->d_name, &w->freed);
        if (r && !w->rc) w->rc = r;
    }
    closedir(d);
}

static void rm_done(uv_work_t *req, int status)
{
    rm_work *w = req->data;
    svc *s = w->s;
    s->disk_work--;
    s->reclaimed_bytes += (unsigned long long)w->freed;
    memo_forget(s); /* whatever it removed, counted afresh */
    if (status == 0 && w->rc == 0)
        LOG(LOG_INFO, "msg=\"storage reclaimed\" what=\"%s\" path=%s bytes=%lld", w->what, w->path, w->freed);
    else
        LOG(LOG_WARN, "msg=\"cannot remove\" what=\"%s\" path=%s bytes=%lld err=\"%s\"", w->what, w->path, w->freed,
            status ? uv_strerror(status) : strerror(-w->rc));
    free(w);
    if (s->stopping) svc__finish_shutdown(s);
}

/* keep1/keep2: names directly under path that stay (NULL = remove path itself). */
static void remove_later(svc *s, const char *path, const char *keep1, const char *keep2, const char *what)
{
    rm_work *w = calloc(1, sizeof *w);
    if (!w) { LOG(LOG_ERROR, "msg=\"out of memory: not removed\" path=%s", path); return; }
    w->s = s;
    w->req.data = w;
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->keep[0], sizeof w->keep[0], "%s", keep1 ? keep1 : "");
    snprintf(w->keep[1], sizeof w->keep[1], "%s", keep2 ? keep2 : "");
    snprintf(w->what, sizeof w->what, "%s", what);
    int rc = uv_queue_work(s->loop, &w->req, rm_run, rm_done);
    if (rc) {
        LOG(LOG_ERROR, "msg=\"cannot queue a removal\" path=%s err=\"%s\"", path, uv_strerror(rc));
        free(w);
        return;
    }
    s->disk_work++;
}

/* ---------------- deletes ---------------- */

static int deleted_row(svc *s, int rc, const char *what, svc_error *e)
{
    if (rc == -ENOSPC)
        return svc_fail(e, SVC_ENOSPACE, "insufficient_storage", NULL,
                        "cannot delete the %s: the disk of the data directory is full (the database cannot record"
                        " it); nothing was removed", what);
    return svc__storage_error(s, e);
}

typedef struct use_ctx { char job[DB_ID_MAX]; enum job_status status; } use_ctx;
static int first_active(void *ud, const char *job_id, enum job_status status)
{
    use_ctx *c = ud;
    if (svc__is_final(status)) return 0;
    snprintf(c->job, sizeof c->job, "%s", job_id);
    c->status = status;
    return 1;
}

int svc_file_delete(svc *s, const svc_caller *who, const char *id, svc_error *e)
{
    svc_file f;
    int rc = svc_file_get(s, who, id, &f, e);
    if (rc) return rc;
    long long bytes = f.f.bytes;
    char owner[sizeof f.f.owner];
    snprintf(owner, sizeof owner, "%s", f.f.owner);
    svc_file_free(&f); /* only its owner and size are needed from here */
    use_ctx u = {"", JOB_QUEUED};
    if (db_file_jobs(s->db, id, first_active, &u) != 0) return svc__storage_error(s, e);
    if (u.job[0])
        return svc_fail(e, SVC_ECONFLICT, "file_in_use", "id", "file %s is used by job %s, which is %s; cancel it"
                        " or wait for it to finish", id, u.job, job_status_name(u.status));
    if ((rc = db_file_delete(s->db, id)) != 0) {
        if (rc != -ENOENT) return deleted_row(s, rc, "file", e);
        rc = svc_file_get(s, who, id, &f, e); /* gone meanwhile: answer as a get would */
        svc_file_free(&f);
        return rc;
    }
    char dir[1000];
    file_dir(s, id, dir, sizeof dir);
    svc_audit(s, who, NULL, "file_delete", id, "ok", owner);
    LOG(LOG_INFO, "msg=\"file deleted\" id=%s user=%s bytes=%lld", id, who->name, bytes);
    remove_later(s, dir, NULL, NULL, "file");
    return 0;
}

int svc_model_delete(svc *s, const svc_caller *who, const char *id, svc_error *e)
{
    char q[201];                   /* a client's string, quoted in a message */
    db_model m;
    int rc = db_model_get(s->db, id, &m);
    if (rc == 0 && !svc__owned_by(m.owner, who->name, who->admin)) {
        svc_audit(s, who, NULL, "authz_denied", id, "denied", "delete a model of another user");
        rc = -ENOENT;
    }
    if (rc == -ENOENT) {
        svc_model v;
        svc_error ignored;
        if (svc_model_get(s, who, id, &v, &ignored) == 0) /* a base architecture or a backbone: the admin's files */
            return svc_fail(e, SVC_EFORBIDDEN, "permission_denied", "id", "model '%s' is a %s model: only fine-tuned"
                            " models can be deleted over the API", util_quote(q, sizeof q, id), v.kind);
        return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "no model '%s'", util_quote(q, sizeof q, id));
    }
    if (rc) return svc__storage_error(s, e);
    if ((rc = db_model_delete(s->db, id)) != 0) return deleted_row(s, rc, "model", e);
    db_job j;
    int job_left = db_job_get(s->db, m.job_id, &j) == 0;
    if (job_left) db_job_clear(&j);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", m.path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    svc_audit(s, who, NULL, "model_delete", id, "ok", m.owner);
    LOG(LOG_INFO, "msg=\"model deleted\" id=%s user=%s", id, who->name);
    if (!slash) return 0;
    if (!job_left) { remove_later(s, dir, NULL, NULL, "model"); return 0; }
    /* the job stays: only the weights go (its state and spec are the job's) */
    char p[1200];
    snprintf(p, sizeof p, "%s/final.safetensors", dir);
    remove_later(s, p, NULL, NULL, "model");
    snprintf(p, sizeof p, "%s/best.safetensors", dir);
    remove_later(s, p, NULL, NULL, "model");
    return 0;
}

int svc_job_delete(svc *s, const svc_caller *who, const char *id, svc_error *e)
{
    db_job j;
    int rc = svc__get_job(s, who, id, &j, e);
    if (rc) return rc;
    enum job_status st = j.status;
    char owner[64];
    snprintf(owner, sizeof owner, "%s", j.owner);
    db_job_clear(&j);
    if (!svc__is_final(st))
        return svc_fail(e, SVC_ECONFLICT, "invalid_state", NULL, "only a finished job can be deleted (job %s is %s);"
                        " cancel it first", id, job_status_name(st));
    if (svc__find_run(s, id))
        return svc_fail(e, SVC_ECONFLICT, "invalid_state", NULL, "job %s is %s but its run is still stopping; retry"
                        " in a moment", id, job_status_name(st));
    char sweep[DB_ID_MAX];
    enum job_status sweep_st;
    if ((rc = db_sweep_of_job(s->db, id, sweep, &sweep_st)) == 0 && !svc__is_final(sweep_st))
        return svc_fail(e, SVC_ECONFLICT, "invalid_state", NULL, "job %s is a trial of sweep %s, which is %s; delete"
                        " it once the sweep has finished", id, sweep, job_status_name(sweep_st));
    if (rc && rc != -ENOENT) return svc__storage_error(s, e);
    /* what the batch still holds for the job is committed first, so nothing lands after the delete */
    if ((rc = svc__flush(s)) != 0) return deleted_row(s, rc, "job", e);
    if ((rc = db_job_delete(s->db, id)) != 0) return deleted_row(s, rc, "job", e);
    db_model m;
    int has_model = db_model_of_job(s->db, id, &m) == 0;
    char dir[1000], detail[160];
    job_dir(s, id, dir, sizeof dir);
    snprintf(detail, sizeof detail, "job of user '%s' (%s)%s", owner, job_status_name(st),
             has_model ? "; its model keeps its weights" : "");
    svc_audit(s, who, NULL, "job_delete", id, "ok", detail);
    LOG(LOG_INFO, "msg=\"job deleted\" job=%s user=%s model_kept=%d", id, who->name, has_model);
    s->order_valid = 0;
    if (has_model) remove_later(s, dir, "final.safetensors", "best.safetensors", "job");
    else remove_later(s, dir, NULL, NULL, "job");
    return 0;
}

/* ---------------- retention ---------------- */

typedef struct ret_ctx { svc *s; long long cutoff; int pruned_rows, states; } ret_ctx;

static int retain_job(void *ud, const db_job_brief *b)
{
    ret_ctx *c = ud;
    svc *s = c->s;
    if (!svc__is_final(b->status) || svc__find_run(s, b->id)) return 0;
    int removed = 0;
    if (c->cutoff > 0 && b->finished_at > 0 && b->finished_at < c->cutoff) {
        /* the resumable state of a finished job is only a checkpoint: best and final (the model) stay */
        char p[1100];
        struct stat st;
        snprintf(p, sizeof p, "%.900s/%.47s/state.safetensors", s->cfg.jobs_dir, b->id);
        if (lstat(p, &st) == 0) {
            if (db_checkpoint_prune(s->db, b->id, 0, &removed) == 0) c->pruned_rows += removed; /* rows first */
            remove_later(s, p, NULL, NULL, "retention");
            c->states++;
        }
    }
    return 0;
}

void svc__retention(svc *s, int now)
{
    if (s->stopping || (s->cfg.keep_checkpoints <= 0 && s->cfg.retention_days <= 0)) return;
    double t = util_mono();
    if (!now && t - s->retention_at < RETENTION_EVERY) return;
    if (s->retention_at == 0) svc__flush(s); /* a job just ended: its final status is committed first */
    s->retention_at = t;
    ret_ctx c = {s, s->cfg.retention_days > 0 ? util_now() - (long long)s->cfg.retention_days * 86400 : 0, 0, 0};
    if (s->cfg.keep_checkpoints > 0 && db_checkpoint_retain(s->db, s->cfg.keep_checkpoints, &c.pruned_rows) != 0)
        LOG(LOG_WARN, "msg=\"checkpoint retention failed\" err=\"%s\"", db_errmsg(s->db));
    if (c.cutoff > 0 && db_job_walk(s->db, NULL, retain_job, &c) != 0) {
        LOG(LOG_WARN, "msg=\"retention pass failed\" err=\"%s\"", db_errmsg(s->db));
        return;
    }
    if (c.pruned_rows || c.states)
        LOG(LOG_INFO, "msg=\"retention\" checkpoint_rows_removed=%d states_removed=%d keep_checkpoints=%d"
            " retention_days=%d", c.pruned_rows, c.states, s->cfg.keep_checkpoints, s->cfg.retention_days);
}

/* ---------------- orphans ---------------- */

/* Directories a crash left between a delete's commit and its removal: a job directory no job row or
 * models row names, an upload directory no files row names. Called once by svc_open. */
void svc__sweep_orphans(svc *s)
{
    static const struct { const char *prefix; int files; } kinds[] = {{"ftjob-", 0}, {"file-", 1}};
    for (int k = 0; k < 2; k++) {
        char dir[1100];
        if (kinds[k].files) snprintf(dir, sizeof dir, "%.1000s/files", s->cfg.data_dir);
        else snprintf(dir, sizeof dir, "%s", s->cfg.jobs_dir);
        DIR *d = opendir(dir);
        if (!d) continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            const char *n = de->d_name;
            if (strncmp(n, kinds[k].prefix, strlen(kinds[k].prefix)) || strlen(n) >= DB_ID_MAX) continue;
            int rc;
            if (kinds[k].files) {
                db_file f;
                rc = db_file_get(s->db, n, &f);
            } else {
                db_job j;
                db_model m;
                if ((rc = db_job_get(s->db, n, &j)) == 0) db_job_clear(&j);
                else if (rc == -ENOENT) rc = db_model_of_job(s->db, n, &m);
            }
            if (rc != -ENOENT) continue; /* it has a row, or the database cannot say: keep it */
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", dir, n);
            LOG(LOG_WARN, "msg=\"removing an orphan directory\" path=%s", p);
            remove_later(s, p, NULL, NULL, "orphan");
        }
        closedir(d);
    }
}

/* ---------------- the storage view ---------------- */

void svc_storage_free(svc_storage *st)
{
    if (!st) return;
    free(st->users);
    free(st->items);
    memset(st, 0, sizeof *st);
}

typedef struct view_ctx { svc *s; svc_storage *st; int cap_users, cap_items, failed; const char *owner; } view_ctx;

static int add_item(view_ctx *c, const char *id, const char *object, const char *owner, long long bytes)
{
    if (util_grow(&c->st->items, &c->cap_items, c->st->n_items + 1, sizeof *c->st->items)) { c->failed = 1; return 1; }
    svc_item *it = &c->st->items[c->st->n_items++];
    memset(it, 0, sizeof *it);
    snprintf(it->id, sizeof it->id, "%s", id);
    it->object = object;
    snprintf(it->owner, sizeof it->owner, "%s", owner);
    it->bytes = bytes;
    return 0;
}

static int view_file(void *ud, const db_file *f) { return add_item(ud, f->id, "file", f->owner, f->bytes); }
static int view_model(void *ud, const db_model *m) { return add_item(ud, m->id, "model", m->owner, model_bytes(m)); }
static int view_job(void *ud, const db_job_brief *b)
{
    view_ctx *c = ud;
    return add_item(c, b->id, "fine_tuning.job", b->owner, job_bytes(c->s, b));
}

static int add_user_usage(void *ud, const db_user *u)
{
    view_ctx *c = ud;
    if (util_grow(&c->st->users, &c->cap_users, c->st->n_users + 1, sizeof *c->st->users)) { c->failed = 1; return 1; }
    if (usage_of(c->s, u->name, &c->st->users[c->st->n_users]) != 0) { c->failed = 1; return 1; }
    c->st->n_users++;
    return 0;
}

static int by_bytes(const void *a, const void *b)
{
    long long x = ((const svc_item *)a)->bytes, y = ((const svc_item *)b)->bytes;
    return x < y ? 1 : x > y ? -1 : strcmp(((const svc_item *)a)->id, ((const svc_item *)b)->id);
}

int svc_storage_get(svc *s, const svc_caller *who, svc_storage *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    const char *owner = who->admin ? NULL : who->name;
    view_ctx c = {s, out, 0, 0, 0, owner};
    int rc = 0;
    if (who->admin) rc = db_user_list(s->db, add_user_usage, &c);
    else {
        db_user u;
        memset(&u, 0, sizeof u);
        snprintf(u.name, sizeof u.name, "%s", who->name);
        add_user_usage(&c, &u);
    }
    if (rc == 0 && !c.failed) rc = db_file_list(s->db, owner, view_file, &c);
    if (rc == 0 && !c.failed) rc = db_model_list(s->db, owner, view_model, &c);
    if (rc == 0 && !c.failed) rc = db_job_walk(s->db, owner, view_job, &c);
    if (rc || c.failed) { svc_storage_free(out); return svc__storage_error(s, e); }
    if (out->n_items > 1) qsort(out->items, (size_t)out->n_items, sizeof *out->items, by_bytes); /* items is NULL when empty */
    if (out->n_items > MAX_ITEMS) out->n_items = MAX_ITEMS;
    out->disk_free_bytes = svc__disk_free(s, &out->disk_total_bytes);
    out->min_free_bytes = s->cfg.min_free_bytes;
    out->reclaimed_bytes = s->reclaimed_bytes;
    return 0;
}
