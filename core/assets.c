/* core/assets.c — what jobs train from and produce: names -> paths for the job spec (base
 * architectures, backbones under DATA_DIR/models, fine-tuned models, built-in and configured datasets,
 * uploads, paths inside a dataset root), the model, dataset and file lists, model downloads and uploads.
 * Loop thread only. A user's request for another user's upload or model answers "not found" (audited). */
#define _GNU_SOURCE
#include "core/core_int.h"
#include "core/unpack.h"
#include "common/log.h"
#include "common/util.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_LEN 200           /* backbone and upload names */

int svc__owned_by(const char *row_owner, const char *owner, int admin)
{
    return admin || (row_owner[0] && owner && !strcmp(row_owner, owner));
}

/* The architecture a backbone's name starts with (the longest match), or NULL. */
static const char *arch_of_name(const char *name)
{
    const char *best = NULL;
    for (int i = 0; i < TR_N_ARCHS; i++) {
        const char *a = tr_arch_names[i];
        if (!strncmp(name, a, strlen(a)) && (!best || strlen(a) > strlen(best))) best = a;
    }
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

static int resolve_model(svc__resolve_ctx *rc, const char *name, char *path, char *arch, char *err, size_t errlen)
{
    char q[201];                   /* a client's string, quoted in a message */
    svc *s = rc->s;
    if (tr_arch_known(name)) {
        path[0] = 0;
        snprintf(arch, 16, "%s", name);
        return 0;
    }
    db_model m;
    if (db_model_get(s->db, name, &m) == 0 && svc__owned_by(m.owner, rc->owner, rc->admin)) {
        if (!svc__file_exists(m.path)) {
            snprintf(err, errlen, "model '%s' has no weights on disk", name);
            return -ENOENT;
        }
        snprintf(path, TR_PATH_MAX, "%s", m.path);
        snprintf(arch, 16, "%s", m.arch);
        return 0;
    }
    if (util_valid_name(name, NAME_MAX_LEN)) {
        char p[TR_PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/models/%s.safetensors", s->cfg.data_dir, name);
        const char *a = arch_of_name(name);
        if (svc__file_exists(p) && strlen(p) < TR_PATH_MAX) {
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
    snprintf(err, errlen, "model '%s' does not exist (see GET /v1/models)", util_quote(q, sizeof q, name));
    return -ENOENT;
}

/* The job spec's resolver (spec/jobspec.h); ud is a svc__resolve_ctx. */
int svc__resolve(void *ud, enum jobspec_ref kind, const char *name, char *path, char *arch, char *err, size_t errlen)
{
    svc__resolve_ctx *rc = ud;
    svc *s = rc->s;
    if (kind == JOBSPEC_MODEL) return resolve_model(rc, name, path, arch, err, errlen);
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
    if (!strncmp(name, "file-", 5) && db_file_get(s->db, name, &f) == 0 && svc__owned_by(f.owner, rc->owner, rc->admin)) {
        snprintf(path, TR_PATH_MAX, "%s", f.path);
        return 0;
    }
    if (root_path(s, name, path) == 0) return 0;
    snprintf(err, errlen, "'%.200s' is neither a dataset, an uploaded file nor a path inside a dataset root"
             " (see GET /v1/datasets)", name);
    return -ENOENT;
}

/* ---------------- models ---------------- */

typedef struct model_ctx { svc_model_list *l; int cap; } model_ctx;

static svc_model *model_add(model_ctx *c)
{
    if (util_grow(&c->l->v, &c->cap, c->l->n + 1, sizeof *c->l->v)) return NULL;
    svc_model *m = &c->l->v[c->l->n++];
    memset(m, 0, sizeof *m);
    return m;
}

static int add_model(void *ud, const db_model *row)
{
    svc_model *m = model_add(ud);
    if (!m) return 1;
    snprintf(m->id, sizeof m->id, "%s", row->id);
    m->kind = "fine-tuned";
    snprintf(m->arch, sizeof m->arch, "%s", row->arch);
    snprintf(m->owned_by, sizeof m->owned_by, "%s", row->owner[0] ? row->owner : "coretuned");
    m->created = row->created_at;
    snprintf(m->job_id, sizeof m->job_id, "%s", row->job_id);
    return 0;
}

static int list_backbones(svc *s, model_ctx *c)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/models", s->cfg.data_dir);
    DIR *d = opendir(dir);
    if (!d) return 0; /* no backbones */
    struct dirent *de;
    const char *ext = ".safetensors";
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n <= strlen(ext) || strcmp(de->d_name + n - strlen(ext), ext)) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n - strlen(ext)), de->d_name);
        if (!util_valid_name(name, NAME_MAX_LEN)) continue;
        svc_model *m = model_add(c);
        if (!m) { rc = -ENOMEM; break; }
        const char *a = arch_of_name(name);
        snprintf(m->id, sizeof m->id, "%s", name);
        m->kind = "backbone";
        snprintf(m->arch, sizeof m->arch, "%s", a ? a : "");
        snprintf(m->owned_by, sizeof m->owned_by, "local");
    }
    closedir(d);
    return rc;
}

void svc_model_list_free(svc_model_list *l)
{
    if (!l) return;
    free(l->v);
    memset(l, 0, sizeof *l);
}

int svc_models(svc *s, const svc_caller *who, svc_model_list *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    model_ctx c = {out, 0};
    int rc = 0;
    for (int i = 0; i < TR_N_ARCHS && rc == 0; i++) {
        svc_model *m = model_add(&c);
        if (!m) { rc = -ENOMEM; break; }
        snprintf(m->id, sizeof m->id, "%s", tr_arch_names[i]);
        m->kind = "base";
        snprintf(m->arch, sizeof m->arch, "%s", tr_arch_names[i]);
        snprintf(m->owned_by, sizeof m->owned_by, "coretuned");
    }
    if (rc == 0) rc = list_backbones(s, &c);
    if (rc) { svc_model_list_free(out); return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory"); }
    if (db_model_list(s->db, who->admin ? NULL : who->name, add_model, &c)) {
        svc_model_list_free(out);
        return svc__storage_error(s, e);
    }
    return 0;
}

int svc_model_get(svc *s, const svc_caller *who, const char *id, svc_model *out, svc_error *e)
{
    char q[201];                   /* a client's string, quoted in a message */
    svc_model_list all;
    int rc = svc_models(s, who, &all, e);
    if (rc) return rc;
    for (int i = 0; i < all.n; i++)
        if (!strcmp(all.v[i].id, id)) {
            *out = all.v[i];
            svc_model_list_free(&all);
            return 0;
        }
    svc_model_list_free(&all);
    return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "no model '%s'", util_quote(q, sizeof q, id));
}

int svc_model_file(svc *s, const svc_caller *who, const char *id, const char *which, char *path, size_t pathlen,
                   svc_error *e)
{
    char q[201];                   /* a client's string, quoted in a message */
    if (which && strcmp(which, "final") && strcmp(which, "best"))
        return svc_fail(e, SVC_EINVAL, "invalid_value", "which", "which must be \"final\" or \"best\"");
    db_model m;
    int found = db_model_get(s->db, id, &m) == 0;
    if (found && !svc__owned_by(m.owner, who->name, who->admin)) {
        svc_audit(s, who, NULL, "authz_denied", id, "denied", "a model of another user");
        return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "no model '%s'", util_quote(q, sizeof q, id));
    }
    if (found) {
        if (which && !strcmp(which, "best")) {
            char *slash = strrchr(m.path, '/');
            if (slash) snprintf(slash + 1, sizeof m.path - (size_t)(slash + 1 - m.path), "best.safetensors");
        }
        if (!svc__file_exists(m.path))
            return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "model '%s' has no %s weights on disk", util_quote(q, sizeof q, id),
                            which ? which : "final");
        snprintf(path, pathlen, "%s", m.path);
        return 0;
    }
    if (util_valid_name(id, NAME_MAX_LEN)) {
        snprintf(path, pathlen, "%s/models/%s.safetensors", s->cfg.data_dir, id);
        if (svc__file_exists(path)) return 0;
    }
    if (tr_arch_known(id))
        return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "%s is a base architecture: it has no weights", id);
    return svc_fail(e, SVC_ENOTFOUND, "model_not_found", "id", "no model '%s'", util_quote(q, sizeof q, id));
}

/* ---------------- datasets and files ---------------- */

typedef struct ds_ctx { svc_dataset_list *l; int cap; svc *s; int failed; } ds_ctx;

static svc_dataset_info *ds_add(ds_ctx *c, const char *id, const char *source)
{
    if (util_grow(&c->l->v, &c->cap, c->l->n + 1, sizeof *c->l->v)) return NULL;
    svc_dataset_info *d = &c->l->v[c->l->n++];
    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", id);
    d->source = source;
    d->images = d->classes = d->bytes = -1;
    d->jobs = d->active_jobs = -1;
    return d;
}

static int count_use(void *ud, const char *job_id, enum job_status status)
{
    (void)job_id;
    svc_dataset_info *d = ud;
    d->jobs++;
    if (!svc__is_final(status)) d->active_jobs++;
    return 0;
}

static int add_file_dataset(void *ud, const db_file *f)
{
    ds_ctx *c = ud;
    svc_dataset_info *d = ds_add(c, f->id, "upload");
    if (!d) return 1;
    snprintf(d->format, sizeof d->format, "%s", f->format);
    snprintf(d->owner, sizeof d->owner, "%s", f->owner);
    d->bytes = f->bytes;
    d->images = f->images; /* -1 for an upload from before they were recorded */
    d->jobs = d->active_jobs = 0;
    if (db_file_jobs(c->s->db, f->id, count_use, d) != 0) { c->failed = 1; return 1; }
    return 0;
}

static int count_class(void *ud, const char *name, long long images)
{
    (void)name; (void)images;
    (*(long long *)ud)++;
    return 0;
}

void svc_dataset_list_free(svc_dataset_list *l)
{
    if (!l) return;
    free(l->v);
    memset(l, 0, sizeof *l);
}

int svc_datasets(svc *s, const svc_caller *who, svc_dataset_list *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    ds_ctx c = {out, 0, s, 0};
    svc_dataset_info *d;
    int oom = 0;
    if (builtin_available(s)) {
        static const struct { const char *id; int images; } builtin[] = {{"fashion-mnist-train", 60000},
                                                                          {"fashion-mnist-test", 10000}};
        for (int i = 0; i < 2; i++) {
            if (!(d = ds_add(&c, builtin[i].id, "builtin"))) { oom = 1; break; }
            snprintf(d->format, sizeof d->format, "idx");
            d->images = builtin[i].images;
        }
    }
    for (int i = 0; i < s->cfg.n_datasets && !oom; i++) {
        if (!(d = ds_add(&c, s->cfg.datasets[i].name, "config"))) { oom = 1; break; }
        if (s->ds_ok[i]) {
            snprintf(d->format, sizeof d->format, "%s", data_format_name(s->ds_info[i].format));
            d->images = s->ds_info[i].count;
            d->classes = s->ds_info[i].num_classes;
        }
    }
    if (oom) { svc_dataset_list_free(out); return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory"); }
    int first_upload = out->n;
    if (db_file_list(s->db, who->admin ? NULL : who->name, add_file_dataset, &c) || c.failed) {
        svc_dataset_list_free(out);
        return svc__storage_error(s, e);
    }
    for (int i = first_upload; i < out->n; i++) {
        long long n = 0;
        if (out->v[i].images < 0) continue;
        if (db_file_classes(s->db, out->v[i].id, count_class, &n)) {
            svc_dataset_list_free(out);
            return svc__storage_error(s, e);
        }
        out->v[i].classes = n;
    }
    return 0;
}

void svc_file_free(svc_file *f)
{
    if (!f || !f->classes) return;
    for (int i = 0; i < f->n_classes; i++) free(f->classes[i].name);
    free(f->classes);
    f->classes = NULL;
    f->n_classes = 0;
}

typedef struct class_ctx { svc_file *f; int cap, oom; } class_ctx;
static int add_class(void *ud, const char *name, long long images)
{
    class_ctx *c = ud;
    char *dup = strdup(name ? name : "");
    if (!dup || util_grow(&c->f->classes, &c->cap, c->f->n_classes + 1, sizeof *c->f->classes)) {
        free(dup);
        c->oom = 1;
        return 1;
    }
    c->f->classes[c->f->n_classes++] = (svc_file_class){dup, images};
    return 0;
}

/* f->classes from the database (none for an upload from before they were kept). */
static int load_classes(svc *s, svc_file *f, svc_error *e)
{
    class_ctx c = {f, 0, 0};
    if (db_file_classes(s->db, f->f.id, add_class, &c) != 0) {
        svc_file_free(f);
        return svc__storage_error(s, e);
    }
    if (c.oom) {
        svc_file_free(f);
        return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    }
    return 0;
}

typedef struct file_ctx { svc_file_list *l; int cap; } file_ctx;
static int add_file(void *ud, const db_file *f)
{
    file_ctx *c = ud;
    if (util_grow(&c->l->v, &c->cap, c->l->n + 1, sizeof *c->l->v)) return 1;
    c->l->v[c->l->n++] = (svc_file){.f = *f};
    return 0;
}

void svc_file_list_free(svc_file_list *l)
{
    if (!l) return;
    for (int i = 0; i < l->n; i++) svc_file_free(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

int svc_files(svc *s, const svc_caller *who, svc_file_list *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    file_ctx c = {out, 0};
    if (db_file_list(s->db, who->admin ? NULL : who->name, add_file, &c)) {
        svc_file_list_free(out);
        return svc__storage_error(s, e);
    }
    for (int i = 0; i < out->n; i++)
        if (load_classes(s, &out->v[i], e)) {
            svc_file_list_free(out);
            return e->kind;
        }
    return 0;
}

int svc_file_get(svc *s, const svc_caller *who, const char *id, svc_file *out, svc_error *e)
{
    char q[201];                   /* a client's string, quoted in a message */
    memset(out, 0, sizeof *out);
    int rc = db_file_get(s->db, id, &out->f);
    if (rc == 0 && !svc__owned_by(out->f.owner, who->name, who->admin)) {
        svc_audit(s, who, NULL, "authz_denied", id, "denied", "a file of another user");
        rc = -ENOENT;
    }
    if (rc == -ENOENT) return svc_fail(e, SVC_ENOTFOUND, "file_not_found", "id", "no file '%s'", util_quote(q, sizeof q, id));
    if (rc) return svc__storage_error(s, e);
    return load_classes(s, out, e);
}

const char *svc_upload_dir(svc *s) { return s->upload_dir; }
long long svc_upload_limit(svc *s) { return s->cfg.upload_limit; }

/* The stored name of an upload: its own file name when that is plain (the trainer tells formats apart
 * by names such as data_batch_1.bin), else "upload.bin". */
static void upload_name(const char *filename, char *out, size_t n)
{
    const char *base = filename ? strrchr(filename, '/') : NULL;
    base = base ? base + 1 : filename;
    if (base && util_valid_name(base, NAME_MAX_LEN) && strlen(base) < n) snprintf(out, n, "%s", base);
    else snprintf(out, n, "upload.bin");
}

static unpack_limits extract_limits(const svc *s)
{
    return (unpack_limits){.max_entries = s->cfg.extract_entries > 0 ? s->cfg.extract_entries : SVC_EXTRACT_ENTRIES,
                           .max_bytes = s->cfg.extract_limit > 0 ? s->cfg.extract_limit : SVC_EXTRACT_BYTES,
                           .max_ratio = s->cfg.extract_ratio > 0 ? s->cfg.extract_ratio : SVC_EXTRACT_RATIO};
}

static int over_upload_quota(svc *s, const svc_caller *who, long long bytes, svc_error *e)
{
    svc_quota q = svc__quota_of(s, who->name);
    long long have = 0;
    int rc;
    if ((rc = svc__disk_guard(s, "the upload", e)) != 0 || (rc = svc__disk_quota(s, who->name, bytes, e)) != 0)
        return rc;
    if (q.upload_bytes <= 0) return 0;
    if (db_file_bytes(s->db, who->name, &have) != 0) return svc__storage_error(s, e);
    if (have + bytes > q.upload_bytes)
        return svc__over_quota(e, "upload_bytes", q.upload_bytes, "%s has %lld bytes of uploads stored and this one has %lld",
                               who->name, have, bytes);
    return 0;
}

struct svc_upload {
    svc *s;                        /* the loop's; the work thread reads none of it */
    uv_work_t work;
    void (*done)(void *ud);
    void *ud;
    int ready, abandoned;
    int n_parts;
    char tmp[SVC_UPLOAD_MAX_PARTS][1200], name[SVC_UPLOAD_MAX_PARTS][256];
    long long part_bytes[SVC_UPLOAD_MAX_PARTS], upload_bytes;
    const char *filename;          /* into name[] */
    char upload_dir[1100], dir[1100], stage[1200], root[1400];
    int staged, stored;            /* stored: dir exists */
    unpack_limits lim;
    db_file f;
    int rc;                        /* the check's result, with e */
    svc_error e;
    data_report rep;
};

/* Everything an upload left on disk, and u itself. */
static void upload_free(svc_upload *u)
{
    if (u->stored) util_rmtree(u->dir);
    for (int i = 0; i < u->n_parts; i++) unlink(u->tmp[i]); /* those not renamed */
    if (u->stage[0]) util_rmtree(u->stage);
    data_report_free(&u->rep);
    free(u);
}

/* One upload, three shapes (core/dataset_upload.c stages the first two):
 *   an archive  -> extracted into files/tmp/stage-XXXXXX, its root renamed to files/<id>   (path: the folder)
 *   two parts   -> an IDX pair renamed into a staging folder, renamed to files/<id>        (path: the folder)
 *   else        -> the file renamed to files/<id>/<name>, as the trainer names formats     (path: the file)
 * Each is checked by data_inspect before it is recorded; any failure removes all of it. A thread-pool
 * thread: files and the trainer's readers only, u's own fields, nothing of the svc. */
static int check_upload(svc_upload *u)
{
    svc_error *e = &u->e;
    db_file *f = &u->f;
    int rc;
    u->staged = u->n_parts == 2 || unpack_is_archive(u->tmp[0]);
    if (u->staged) {
        snprintf(u->stage, sizeof u->stage, "%.1100s/stage-XXXXXX", u->upload_dir);
        if (!mkdtemp(u->stage)) {
            u->stage[0] = 0;
            return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot stage the upload: %s", strerror(errno));
        }
        if (u->n_parts == 2) {
            svc_upload_part parts[2] = {{u->tmp[0], u->name[0], u->part_bytes[0]}, {u->tmp[1], u->name[1], u->part_bytes[1]}};
            rc = svc__stage_idx(parts, u->stage, &f->bytes, &u->filename, e);
            snprintf(u->root, sizeof u->root, "%s", u->stage);
        } else {
            rc = svc__stage_archive(u->tmp[0], u->stage, &u->lim, u->root, sizeof u->root, &f->bytes, e);
        }
        if (rc) return rc;
        if ((rc = svc__inspect(u->root, u->root, u->upload_bytes, &u->lim, &u->rep, e)) != 0) return rc;
        if (rename(u->root, u->dir) != 0)
            return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot store the upload: %s", strerror(errno));
        u->stored = 1;
        snprintf(f->path, sizeof f->path, "%.1000s", u->dir);
        if (strcmp(u->root, u->stage)) util_rmtree(u->stage); /* what was around the root: nothing, or hidden files */
        u->stage[0] = 0;
    } else {
        char name[200];
        upload_name(u->filename, name, sizeof name);
        snprintf(f->path, sizeof f->path, "%.700s/%.150s", u->dir, name);
        if (mkdir(u->dir, 0700) != 0)
            return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot store the upload: %s", strerror(errno));
        u->stored = 1;
        if (rename(u->tmp[0], f->path) != 0)
            return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot store the upload: %s", strerror(errno));
        if ((rc = svc__inspect(f->path, u->dir, u->upload_bytes, &u->lim, &u->rep, e)) != 0) return rc;
    }
    snprintf(f->filename, sizeof f->filename, "%s", u->filename && *u->filename ? u->filename : "upload");
    snprintf(f->format, sizeof f->format, "%s", data_format_name(u->rep.info.format));
    f->images = u->rep.info.count;
    f->min_width = u->rep.min_w;
    f->min_height = u->rep.min_h;
    f->max_width = u->rep.max_w;
    f->max_height = u->rep.max_h;
    return 0;
}

static void upload_work(uv_work_t *w)
{
    svc_upload *u = w->data;
    u->rc = check_upload(u);
}

static void upload_checked(uv_work_t *w, int status)
{
    svc_upload *u = w->data;
    svc *s = u->s;
    s->uploads--;
    if (status == UV_ECANCELED && !u->rc)
        u->rc = svc_fail(&u->e, SVC_EUNAVAILABLE, "shutting_down", NULL, "the daemon is shutting down");
    if (u->abandoned) upload_free(u);
    else {
        u->ready = 1;
        u->done(u->ud);
    }
    svc__finish_shutdown(s);
}

int svc_file_add_start(svc *s, const svc_caller *who, const svc_upload_part *parts, int n_parts, const char *purpose,
                       void (*done)(void *ud), void *ud, svc_upload **out, svc_error *e)
{
    *out = NULL;
    svc_upload *u = calloc(1, sizeof *u);
    int rc;
    if (!u) {
        for (int i = 0; i < n_parts; i++) unlink(parts[i].tmp_path);
        return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    }
    u->s = s;
    u->n_parts = n_parts < SVC_UPLOAD_MAX_PARTS ? n_parts : SVC_UPLOAD_MAX_PARTS;
    for (int i = 0; i < u->n_parts; i++) {
        snprintf(u->tmp[i], sizeof u->tmp[i], "%s", parts[i].tmp_path);
        snprintf(u->name[i], sizeof u->name[i], "%s", parts[i].filename ? parts[i].filename : "");
        u->part_bytes[i] = parts[i].bytes;
        u->upload_bytes += parts[i].bytes;
    }
    u->filename = u->name[0];
    u->done = done;
    u->ud = ud;
    u->lim = extract_limits(s);
    snprintf(u->upload_dir, sizeof u->upload_dir, "%s", s->upload_dir);
    db_file *f = &u->f;
    *f = (db_file){.bytes = u->upload_bytes, .created_at = util_now()};
    snprintf(f->owner, sizeof f->owner, "%s", who->name);
    snprintf(f->purpose, sizeof f->purpose, "%s", purpose && *purpose ? purpose : "fine-tune");
    if (s->stopping) rc = svc_fail(e, SVC_EUNAVAILABLE, "shutting_down", NULL, "the daemon is shutting down");
    else if ((rc = over_upload_quota(s, who, u->upload_bytes, e)) != 0) {
    } else if ((rc = util_random_id(f->id, sizeof f->id, "file-")) != 0) {
        rc = svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "no randomness for an id: %s", strerror(-rc));
    } else {
        snprintf(u->dir, sizeof u->dir, "%.700s/files/%.47s", s->cfg.data_dir, f->id);
        u->work.data = u;
        if ((rc = uv_queue_work(s->loop, &u->work, upload_work, upload_checked)) != 0)
            rc = svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "cannot start the upload check: %s", uv_strerror(rc));
    }
    if (rc) {
        upload_free(u);
        return rc;
    }
    s->uploads++;
    *out = u;
    return 0;
}

void svc_upload_abandon(svc_upload *u)
{
    if (!u) return;
    if (u->ready) upload_free(u);
    else u->abandoned = 1; /* upload_checked frees it */
}

int svc_upload_finish(svc_upload *u, svc_file *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    svc *s = u->s;
    db_file *f = &u->f;
    data_report *rep = &u->rep;
    db_file_class *classes = NULL;
    svc_caller who = {.admin = 0};
    snprintf(who.name, sizeof who.name, "%s", f->owner);
    int rc = u->rc;
    if (rc) {
        *e = u->e;
        goto fail;
    }
    /* again, now: what it expanded to, and what other uploads recorded while this one was checked */
    if ((rc = over_upload_quota(s, &who, f->bytes, e)) != 0) goto fail;
    classes = calloc((size_t)rep->info.num_classes, sizeof *classes);
    if (!classes) {
        rc = svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
        goto fail;
    }
    for (int i = 0; i < rep->info.num_classes; i++) classes[i] = (db_file_class){rep->class_names[i], rep->class_counts[i]};
    if (db_file_insert_classes(s->db, f, classes, rep->info.num_classes) != 0) {
        rc = svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot record the upload: %s", db_errmsg(s->db));
        goto fail;
    }
    LOG(LOG_INFO, "msg=\"file uploaded\" id=%s bytes=%lld on_disk=%lld format=%s images=%d classes=%d", f->id,
        u->upload_bytes, f->bytes, f->format, rep->info.count, rep->info.num_classes);
    out->f = *f;
    class_ctx c = {out, 0, 0};
    for (int i = 0; i < rep->info.num_classes && !c.oom; i++) add_class(&c, rep->class_names[i], rep->class_counts[i]);
    if (c.oom) svc_file_free(out); /* recorded: the reply only lacks its classes */
    u->stored = 0;                 /* it is the file's now */
    free(classes);
    upload_free(u);
    return 0;
fail:
    free(classes);
    upload_free(u);
    return rc;
}
