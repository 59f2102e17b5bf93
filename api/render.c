/* api/render.c — see render.h. Field order follows OpenAI's objects (clients and tests read them
 * by name, people read them in this order). The memo of rendered jobs is after render_job_page. */
#include "api/render.h"
#include "common/log.h"
#include "common/util.h"
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *jreal(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *jstr(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *jtime(long long t) { return t > 0 ? json_integer(t) : json_null(); }

static json_t *jparse(const char *text)
{
    if (!text) return json_null();
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_null();
}

/* {"object": "list", "data": data (stolen), "has_more", "first_id", "last_id"} */
static json_t *list_envelope(json_t *data, int has_more)
{
    size_t n = json_array_size(data);
    json_t *first = n ? json_object_get(json_array_get(data, 0), "id") : NULL;
    json_t *last = n ? json_object_get(json_array_get(data, n - 1), "id") : NULL;
    return json_pack("{s:s, s:o, s:b, s:O, s:O}", "object", "list", "data", data, "has_more", has_more, "first_id",
                     first ? first : json_null(), "last_id", last ? last : json_null());
}

/* {"object": "list", "data": data (stolen), "has_more": has_more} */
static json_t *plain_list(json_t *data, int has_more)
{
    return json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", has_more);
}

/* The job's "executor": the public keys of the executor's record (core/executor.h), or just its type. */
static json_t *executor_view(const char *record, const char *type)
{
    json_t *rec = jparse(record);
    if (!json_is_object(rec)) {
        json_decref(rec);
        return json_pack("{s:s}", "type", type ? type : "local");
    }
    static const char *const public_keys[] = {"job_id", "state", "reason", "node"};
    json_t *o = json_pack("{s:O}", "type", json_object_get(rec, "type") ? json_object_get(rec, "type") : json_null());
    for (size_t i = 0; o && i < sizeof public_keys / sizeof public_keys[0]; i++) {
        json_t *v = json_object_get(rec, public_keys[i]);
        json_object_set_new(o, public_keys[i], v ? json_incref(v) : json_null());
    }
    json_decref(rec);
    return o;
}

/* Every field read here is listed in memo_scalars or memo_strings below: the memo's key. */
json_t *render_job(const svc_job *v)
{
    const db_job *j = &v->row;
    json_t *method = jparse(j->method);
    json_t *ext = jparse(j->extensions);
    json_t *hp = json_object_get(json_object_get(method, json_string_value(json_object_get(method, "type"))),
                                 "hyperparameters");
    json_t *metrics = jparse(j->metrics);
    json_error_t pe;
    json_t *o = json_pack_ex(&pe, 0, "{s:s, s:s, s:s, s:I, s:o, s:o, s:s, s:s, s:o, s:o, s:O, s:I, s:o, s:o, s:s, s:o, s:[], "
                          "s:o, s:[]}",
                          "object", "fine_tuning.job", "id", j->id, "status", job_status_name(j->status), "created_at",
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
    /* rows from before "device" ran on the CPU */
    json_t *dev = json_object_get(ext, "device");
    json_object_set_new(o, "device", json_is_string(dev) ? json_incref(dev) : json_string("cpu"));
    json_object_set_new(o, "assigned_device", jstr(v->assigned_device[0] ? v->assigned_device : NULL));
    json_decref(ext);
    json_object_set_new(o, "progress", json_pack("{s:i, s:i, s:i, s:i}", "epoch", j->epoch, "epochs", j->epochs,
                                                 "step", j->step, "total_steps", j->total_steps));
    json_object_set_new(o, "metrics", json_is_object(metrics) ? metrics : (json_decref(metrics), json_object()));
    json_object_set_new(o, "best_valid_accuracy", jreal(j->best_valid_accuracy));
    json_object_set_new(o, "final_valid_accuracy", jreal(j->final_valid_accuracy));
    json_object_set_new(o, "owner", j->owner[0] ? json_string(j->owner) : json_null());
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "threads", json_integer(j->threads));
    json_object_set_new(o, "queue_position", v->queue_position > 0 ? json_integer(v->queue_position) : json_null());
    json_object_set_new(o, "estimated_start", v->estimated_start > 0 ? json_integer(v->estimated_start) : json_null());
    json_object_set_new(o, "estimated_finish",
                        v->estimated_finish > 0 ? json_integer(v->estimated_finish) : json_null());
    json_object_set_new(o, "executor", executor_view(j->executor, v->executor_type));
    if (j->error_code || j->error_message)
        json_object_set_new(o, "error", json_pack("{s:o, s:o, s:o}", "code", jstr(j->error_code), "message",
                                                  jstr(j->error_message), "param", jstr(j->error_param)));
    else
        json_object_set_new(o, "error", json_null());
    return o;
}

json_t *render_job_page(const svc_job_page *p)
{
    json_t *data = json_array();
    for (int i = 0; i < p->n; i++) json_array_append_new(data, render_job(&p->v[i]));
    return list_envelope(data, p->has_more);
}

/* ---- the memo of rendered jobs ---- */

/* What render_job reads, the memo's key (keep the two in step: a field shown but not listed here would
 * be served stale). Scalars and fixed arrays are compared byte for byte (so NAN equals NAN, and -0.0 is
 * not 0.0, as they print); strings by content, NULL equal only to NULL. */
#define SCALAR(f) {offsetof(svc_job, f), sizeof(((svc_job *)0)->f)}
static const struct { size_t off, size; } memo_scalars[] = {
    SCALAR(row.id), SCALAR(row.owner), SCALAR(row.status), SCALAR(row.created_at), SCALAR(row.started_at),
    SCALAR(row.finished_at), SCALAR(row.seed), SCALAR(row.epoch), SCALAR(row.epochs), SCALAR(row.step),
    SCALAR(row.total_steps), SCALAR(row.best_valid_accuracy), SCALAR(row.final_valid_accuracy),
    SCALAR(row.priority), SCALAR(row.threads), SCALAR(queue_position), SCALAR(estimated_start),
    SCALAR(estimated_finish), SCALAR(assigned_device),
};
static const size_t memo_strings[] = {
    offsetof(svc_job, row.model), offsetof(svc_job, row.training_file), offsetof(svc_job, row.validation_file),
    offsetof(svc_job, row.method), offsetof(svc_job, row.extensions), offsetof(svc_job, row.suffix),
    offsetof(svc_job, row.metadata), offsetof(svc_job, row.metrics), offsetof(svc_job, row.fine_tuned_model),
    offsetof(svc_job, row.error_code), offsetof(svc_job, row.error_message), offsetof(svc_job, row.error_param),
    offsetof(svc_job, row.executor), offsetof(svc_job, executor_type),
};
#define N_SCALARS (sizeof memo_scalars / sizeof memo_scalars[0])
#define N_STRINGS (sizeof memo_strings / sizeof memo_strings[0])

static const char *str_at(const svc_job *j, size_t off) { return *(const char *const *)((const char *)j + off); }

typedef struct memo_slot {
    svc_job in;                    /* the listed fields only; its strings are (heap) copies */
    char *text;                    /* (heap) NULL = empty slot */
    unsigned long long used;       /* the memo's clock when last used: the set's oldest goes first */
} memo_slot;

/* Sets of MEMO_WAYS slots, a job's set chosen by its id: two jobs of one page that share a set still
 * both stay (a direct-mapped memo rendered both on every request). */
#define MEMO_WAYS 8
struct render_memo {
    memo_slot slot[RENDER_MEMO_SLOTS];
    unsigned long long clock;
};

static void slot_clear(memo_slot *m)
{
    for (size_t i = 0; i < N_STRINGS; i++) free(*(char **)((char *)&m->in + memo_strings[i]));
    free(m->text);
    unsigned long long used = m->used; /* a slot being refilled keeps its place in the set's order */
    memset(m, 0, sizeof *m);
    m->used = used;
}

int render_memo_new(render_memo **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

void render_memo_free(render_memo *m)
{
    if (!m) return;
    for (int i = 0; i < RENDER_MEMO_SLOTS; i++) slot_clear(&m->slot[i]);
    free(m);
}

static int same_inputs(const svc_job *a, const svc_job *b)
{
    for (size_t i = 0; i < N_SCALARS; i++)
        if (memcmp((const char *)a + memo_scalars[i].off, (const char *)b + memo_scalars[i].off, memo_scalars[i].size))
            return 0;
    for (size_t i = 0; i < N_STRINGS; i++) {
        const char *x = str_at(a, memo_strings[i]), *y = str_at(b, memo_strings[i]);
        if (x != y && (!x || !y || strcmp(x, y))) return 0;
    }
    return 1;
}

/* Keep j's inputs and text in m (which takes text): 0, or -ENOMEM with the slot left empty and text
 * still the caller's. */
static int slot_keep(memo_slot *m, const svc_job *j, char *text)
{
    slot_clear(m);
    for (size_t i = 0; i < N_SCALARS; i++)
        memcpy((char *)&m->in + memo_scalars[i].off, (const char *)j + memo_scalars[i].off, memo_scalars[i].size);
    for (size_t i = 0; i < N_STRINGS; i++) {
        const char *src = str_at(j, memo_strings[i]);
        char **dst = (char **)((char *)&m->in + memo_strings[i]);
        if (src && !(*dst = strdup(src))) { slot_clear(m); return -ENOMEM; }
    }
    m->text = text;
    return 0;
}

/* The slot holding job id, else the one to put it in (an empty one or the set's least recently used). */
static memo_slot *slot_of(render_memo *m, const char *id)
{
    memo_slot *set = &m->slot[util_hash(id) % (RENDER_MEMO_SLOTS / MEMO_WAYS) * MEMO_WAYS], *pick = set;
    for (int i = 0; i < MEMO_WAYS; i++) {
        if (set[i].text && !strcmp(set[i].in.row.id, id)) { pick = &set[i]; break; }
        if (pick->text && (!set[i].text || set[i].used < pick->used)) pick = &set[i];
    }
    pick->used = ++m->clock;
    return pick;
}

/* j's text: borrowed from its memo slot (kept there), or new in *owned (no memo, or out of memory for
 * the slot); NULL when out of memory. */
static const char *job_text(render_memo *m, const svc_job *j, char **owned)
{
    *owned = NULL;
    memo_slot *slot = m ? slot_of(m, j->row.id) : NULL;
    if (slot && slot->text && same_inputs(&slot->in, j)) return slot->text;
    json_t *o = render_job(j);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) return NULL;
    if (slot && slot_keep(slot, j, text) == 0) return text;
    return *owned = text;
}

char *render_job_text(render_memo *m, const svc_job *j)
{
    char *owned;
    const char *t = job_text(m, j, &owned);
    return owned ? owned : t ? strdup(t) : NULL;
}

/* A growing answer: text appended in place (failed = out of memory, the rest is ignored). */
typedef struct textbuf { char *p; size_t n, cap; int failed; } textbuf;

static void put(textbuf *b, const char *s)
{
    size_t k = s ? strlen(s) : 0;
    if (!s) b->failed = 1;
    if (b->failed) return;
    if (b->n + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + k + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->failed = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

/* s as a JSON string (or null), the way json_dumps prints it */
static void put_jstr(textbuf *b, const char *s)
{
    json_t *v = s ? json_string(s) : json_null();
    char *t = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    put(b, t);
    free(t);
}

/* list_envelope's shape, printed around the jobs' texts. Each text is copied out before the next job's
 * is asked for: two jobs of a page may share a memo slot. */
char *render_job_page_text(render_memo *m, const svc_job_page *p)
{
    textbuf b = {0};
    put(&b, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < p->n; i++) {
        char *owned;
        if (i) put(&b, ",");
        put(&b, job_text(m, &p->v[i], &owned));
        free(owned);
    }
    put(&b, p->has_more ? "],\"has_more\":true,\"first_id\":" : "],\"has_more\":false,\"first_id\":");
    put_jstr(&b, p->n ? p->v[0].row.id : NULL);
    put(&b, ",\"last_id\":");
    put_jstr(&b, p->n ? p->v[p->n - 1].row.id : NULL);
    put(&b, "}");
    if (b.failed) { free(b.p); return NULL; }
    return b.p;
}

json_t *render_event(const svc_event *ev)
{
    char eid[32];
    snprintf(eid, sizeof eid, "ftevent-%lld", ev->id);
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:o}", "object", "fine_tuning.job.event", "id", eid,
                     "created_at", (json_int_t)ev->created_at, "level", ev->level, "message",
                     ev->message ? ev->message : "", "type", ev->type, "data", jparse(ev->data));
}

json_t *render_event_page(const svc_event_page *p, const char *object)
{
    json_t *data = json_array();
    for (int i = 0; i < p->n; i++) {
        json_t *ev = render_event(&p->v[i]);
        json_object_set_new(ev, "object", json_string(object));
        json_array_append_new(data, ev);
    }
    return list_envelope(data, p->has_more);
}

/* A trial's status: its job's, or "pending" before the job exists. */
static const char *trial_status(const db_trial *t)
{
    return t->job_id[0] && t->job_status >= 0 ? job_status_name(t->job_status) : "pending";
}

json_t *render_sweep(const svc_sweep *w)
{
    const db_sweep *r = &w->row;
    json_t *body = jparse(r->body);
    json_t *trials = json_array();
    for (int i = 0; i < w->n_trials; i++) {
        const db_trial *t = &w->trials[i];
        double o = w->maximize ? t->best_valid_accuracy : t->best_valid_loss;
        json_array_append_new(trials, json_pack("{s:i, s:o, s:o, s:o, s:s, s:o}", "index", t->idx, "job_id",
                                                jstr(t->job_id[0] ? t->job_id : NULL), "parameters", jparse(t->parameters),
                                                "seed", t->seed >= 0 ? json_integer(t->seed) : json_null(), "status",
                                                trial_status(t), "objective", jreal(o)));
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o}", "object", "fine_tuning.sweep", "id", r->id, "status",
                          job_status_name(r->status), "created_at", (json_int_t)r->created_at, "finished_at",
                          jtime(r->finished_at), "owner", r->owner[0] ? json_string(r->owner) : json_null());
    static const char *const from_body[] = {"job", "parameters", "search", "objective", "max_parallel", "seeds",
                                            "test_file"};
    for (size_t i = 0; o && i < sizeof from_body / sizeof from_body[0]; i++) {
        json_t *v = json_object_get(body, from_body[i]);
        json_object_set_new(o, from_body[i], v ? json_incref(v) : json_null());
    }
    if (o && json_is_null(json_object_get(o, "search"))) json_object_set_new(o, "search", json_string("grid"));
    if (o && json_is_null(json_object_get(o, "objective")))
        json_object_set_new(o, "objective", json_pack("{s:s, s:s}", "metric", "valid_accuracy", "goal", "maximize"));
    if (o && json_is_null(json_object_get(o, "max_parallel"))) json_object_set_new(o, "max_parallel", json_integer(1));
    json_object_set_new(o, "trials", trials);
    json_object_set_new(o, "best", jparse(r->best));
    json_object_set_new(o, "fine_tuned_model", jstr(r->fine_tuned_model));
    json_decref(body);
    return o;
}

json_t *render_sweep_page(const svc_sweep_page *p)
{
    json_t *data = json_array();
    for (int i = 0; i < p->n; i++) json_array_append_new(data, render_sweep(&p->v[i]));
    return plain_list(data, p->has_more);
}

json_t *render_checkpoints(const svc_ckpt_page *p)
{
    json_t *data = json_array();
    for (int i = 0; i < p->n; i++) {
        const db_checkpoint *c = &p->v[i];
        char id[48], name[400];
        snprintf(id, sizeof id, "ftckpt-%lld", c->id);
        snprintf(name, sizeof name, "%s:ckpt-step-%d", p->model, c->step);
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:i, s:i, s:o, s:s}", "object",
                                              "fine_tuning.job.checkpoint", "id", id, "created_at",
                                              (json_int_t)c->created_at, "fine_tuned_model_checkpoint", name,
                                              "step_number", c->step, "epoch", c->epoch, "metrics",
                                              jparse(c->metrics), "fine_tuning_job_id", p->job_id));
    }
    return list_envelope(data, p->has_more);
}

json_t *render_metrics(const svc_metrics *m)
{
    json_t *res = json_object();
    for (int k = 0; k < m->n; k++) {
        const svc_series *s = &m->v[k];
        json_t *steps = json_array(), *values = json_array();
        for (size_t i = 0; i < s->n; i++) {
            json_array_append_new(steps, json_integer(s->steps[i]));
            json_array_append_new(values, jreal(s->values[i]));
        }
        json_object_set_new(res, s->name, json_pack("{s:o, s:o, s:I}", "steps", steps, "values", values,
                                                    "total_points", (json_int_t)s->total_points));
    }
    return json_pack("{s:s, s:s, s:i, s:o}", "object", "fine_tuning.job.metrics", "job_id", m->job_id, "max_points",
                     m->max_points, "series", res);
}

json_t *render_model(const svc_model *m)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:o}", "id", m->id, "object", "model", "created",
                          (json_int_t)m->created, "owned_by", m->owned_by, "kind", m->kind, "arch",
                          m->arch[0] ? json_string(m->arch) : json_null());
    if (o && !strcmp(m->kind, "fine-tuned")) json_object_set_new(o, "job_id", json_string(m->job_id));
    return o;
}

json_t *render_models(const svc_model_list *l)
{
    json_t *data = json_array();
    for (int i = 0; i < l->n; i++) json_array_append_new(data, render_model(&l->v[i]));
    return json_pack("{s:s, s:o}", "object", "list", "data", data);
}

json_t *render_datasets(const svc_dataset_list *l)
{
    json_t *data = json_array();
    for (int i = 0; i < l->n; i++) {
        const svc_dataset_info *d = &l->v[i];
        json_t *o = json_pack("{s:s, s:s, s:s}", "id", d->id, "object", "dataset", "source", d->source);
        if (d->format[0]) json_object_set_new(o, "format", json_string(d->format));
        if (d->images >= 0) json_object_set_new(o, "images", json_integer(d->images));
        if (d->classes >= 0) json_object_set_new(o, "classes", json_integer(d->classes));
        if (d->bytes >= 0) json_object_set_new(o, "bytes", json_integer(d->bytes));
        if (d->owner[0]) json_object_set_new(o, "owner", json_string(d->owner));
        if (d->jobs >= 0) json_object_set_new(o, "used_by", json_pack("{s:i, s:i}", "jobs", d->jobs, "active_jobs", d->active_jobs));
        json_array_append_new(data, o);
    }
    return plain_list(data, 0);
}

json_t *render_file(const svc_file *x)
{
    const db_file *f = &x->f;
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s}", "id", f->id, "object", "file", "bytes",
                          (json_int_t)f->bytes, "created_at", (json_int_t)f->created_at, "filename", f->filename,
                          "purpose", f->purpose, "format", f->format, "status", "processed");
    if (o && f->images >= 0) json_object_set_new(o, "images", json_integer(f->images));
    if (o && x->classes) {
        json_t *cls = json_array();
        char name[400];
        for (int i = 0; i < x->n_classes; i++) {
            util_utf8_clean(name, sizeof name, x->classes[i].name); /* a folder's name from an archive */
            json_array_append_new(cls, json_pack("{s:s, s:I}", "name", name, "images", (json_int_t)x->classes[i].images));
        }
        json_object_set_new(o, "classes", cls);
    }
    if (o && f->max_width > 0)
        json_object_set_new(o, "image_size", json_pack("{s:i, s:i, s:i, s:i}", "min_width", f->min_width, "min_height",
                                                       f->min_height, "max_width", f->max_width, "max_height",
                                                       f->max_height));
    return o;
}

json_t *render_files(const svc_file_list *l)
{
    json_t *data = json_array();
    for (int i = 0; i < l->n; i++) json_array_append_new(data, render_file(&l->v[i]));
    return plain_list(data, 0);
}

static json_t *quota_json(const svc_quota *q)
{
    return json_pack("{s:i, s:i, s:i, s:I, s:I}", "running_jobs", q->running_jobs, "queued_jobs", q->queued_jobs,
                     "threads", q->threads, "upload_bytes", (json_int_t)q->upload_bytes, "disk_bytes",
                     (json_int_t)q->disk_bytes);
}

static json_t *user_json(const db_user *u)
{
    return json_pack("{s:s, s:s, s:b, s:o, s:I}", "object", "user", "name", u->name, "admin", u->admin, "uid",
                     u->uid >= 0 ? json_integer(u->uid) : json_null(), "created_at", (json_int_t)u->created_at);
}

json_t *render_me(const svc_me_info *me)
{
    const db_user *u = &me->user;
    return json_pack("{s:s, s:s, s:b, s:o, s:s, s:o, s:o, s:{s:I, s:I, s:I, s:I}}", "object", "user", "name", u->name,
                     "admin", u->admin, "uid", u->uid >= 0 ? json_integer(u->uid) : json_null(), "via", me->via,
                     "quota", quota_json(&me->quota), "usage", quota_json(&me->usage), "storage", "file_bytes",
                     (json_int_t)me->file_bytes, "model_bytes", (json_int_t)me->model_bytes, "job_bytes",
                     (json_int_t)me->job_bytes, "total_bytes",
                     (json_int_t)(me->file_bytes + me->model_bytes + me->job_bytes));
}

json_t *render_users(const svc_user_list *l)
{
    json_t *data = json_array();
    for (int i = 0; i < l->n; i++) json_array_append_new(data, user_json(&l->v[i]));
    return plain_list(data, 0);
}

json_t *render_audit(const svc_audit_page *p)
{
    json_t *data = json_array();
    for (int i = 0; i < p->n; i++) {
        const db_audit *a = &p->v[i];
        json_array_append_new(data, json_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "object",
                                              "audit.record", "id", (json_int_t)a->id, "created_at",
                                              (json_int_t)a->at, "user", a->actor, "action", a->action, "target",
                                              a->target, "outcome", a->outcome, "remote", a->remote, "detail",
                                              a->detail));
    }
    return plain_list(data, p->has_more);
}

json_t *render_ready(const svc_readiness *r)
{
    json_t *o = json_pack("{s:s, s:i, s:i, s:i, s:s, s:{s:b, s:I}}", "status", "ready", "workers", r->workers,
                          "running", r->running, "threads_per_job", r->threads_per_job, "executor",
                          r->executor ? r->executor : "local", "disk", "low", r->disk_low, "min_free_bytes",
                          (json_int_t)r->min_free_bytes);
    if (o && r->disk_free_bytes >= 0)
        json_object_set_new(json_object_get(o, "disk"), "free_bytes", json_integer(r->disk_free_bytes));
    if (o && r->disk_low)
        json_object_set_new(json_object_get(o, "disk"), "message",
                            json_string("the data directory's disk is below --min-free-mb: new uploads and jobs are"
                                        " refused (507) until space is freed"));
    return o;
}

void render_stats(prom_buf *b, const svc_stats *st)
{
    prom_printf(b, "# HELP coretuned_jobs Jobs by user and state.\n# TYPE coretuned_jobs gauge\n");
    for (int i = 0; i < st->n_counts; i++) {
        prom_printf(b, "coretuned_jobs{user=\"");
        prom_escaped(b, st->counts[i].owner);
        prom_printf(b, "\",state=\"%s\"} %lld\n", job_status_name(st->counts[i].status), st->counts[i].n);
    }
    prom_printf(b, "# HELP coretuned_queue_depth Jobs waiting to run.\n# TYPE coretuned_queue_depth gauge\n"
                   "coretuned_queue_depth %lld\n", st->queued);
    prom_printf(b, "# HELP coretuned_running_jobs Jobs with a worker thread.\n# TYPE coretuned_running_jobs gauge\n"
                   "coretuned_running_jobs %d\n", st->running_jobs);
    prom_printf(b, "# HELP coretuned_running_threads Trainer threads of running jobs (never above coretuned_cores).\n"
                   "# TYPE coretuned_running_threads gauge\ncoretuned_running_threads %d\n", st->running_threads);
    prom_printf(b, "# HELP coretuned_cores Cores the scheduler hands out.\n# TYPE coretuned_cores gauge\n"
                   "coretuned_cores %d\n", st->cores);
    static const char *const names[2] = {"coretuned_job_steps_per_second", "coretuned_job_images_per_second"};
    static const char *const helps[2] = {"Optimiser steps per second of a running job.",
                                         "Training images per second of a running job."};
    for (int k = 0; k < 2; k++) {
        prom_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", names[k], helps[k], names[k]);
        for (int i = 0; i < st->n_runs; i++) {
            prom_printf(b, "%s{job_id=\"%s\",user=\"", names[k], st->runs[i].job_id); /* "job" is Prometheus's own label */
            prom_escaped(b, st->runs[i].owner);
            prom_printf(b, "\"} %.6g\n", k == 0 ? st->runs[i].steps_per_s : st->runs[i].images_per_s);
        }
    }
    /* NVML's last sample; absent (not 0) without NVML, so a dashboard tells "no data" from "idle" */
    static const char *const gnames[3] = {"coretuned_gpu_memory_used_bytes", "coretuned_gpu_memory_total_bytes",
                                          "coretuned_gpu_utilization_ratio"};
    static const char *const ghelps[3] = {"Device memory in use on a GPU of the daemon (every process's).",
                                          "Device memory of a GPU of the daemon.",
                                          "Fraction of NVML's last sample period a kernel ran on the GPU."};
    for (int k = 0; k < 3 && st->n_gpus > 0; k++) {
        prom_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", gnames[k], ghelps[k], gnames[k]);
        for (int i = 0; i < st->n_gpus; i++) {
            const gpumon_sample *g = &st->gpus[i];
            if (!g->ok) continue;
            if (k < 2) prom_printf(b, "%s{gpu=\"%d\"} %llu\n", gnames[k], g->gpu, k == 0 ? g->mem_used : g->mem_total);
            else prom_printf(b, "%s{gpu=\"%d\"} %.3g\n", gnames[k], g->gpu, g->util);
        }
    }
    prom_printf(b, "# HELP coretuned_db_write_seconds Time to commit one database transaction.\n"
                   "# TYPE coretuned_db_write_seconds histogram\n");
    prom_hist_write(b, "coretuned_db_write_seconds", "", &st->db_write);
    prom_printf(b, "# HELP coretuned_preemptions_total Jobs checkpointed and requeued to make room.\n"
                   "# TYPE coretuned_preemptions_total counter\ncoretuned_preemptions_total %llu\n", st->preemptions);
    prom_printf(b, "# HELP coretuned_auth_failures_total Requests refused for missing or bad credentials.\n"
                   "# TYPE coretuned_auth_failures_total counter\ncoretuned_auth_failures_total %llu\n",
                st->auth_failures);
    prom_printf(b, "# HELP coretuned_storage_reclaimed_bytes_total Bytes freed by deletes, retention and the orphan sweep.\n"
                   "# TYPE coretuned_storage_reclaimed_bytes_total counter\ncoretuned_storage_reclaimed_bytes_total %llu\n",
                st->reclaimed_bytes);
    if (st->disk_free_bytes >= 0)
        prom_printf(b, "# HELP coretuned_disk_free_bytes Bytes free to the daemon on the data directory's disk.\n"
                       "# TYPE coretuned_disk_free_bytes gauge\ncoretuned_disk_free_bytes %lld\n", st->disk_free_bytes);
}

json_t *render_deleted(const char *id, const char *object)
{
    return json_pack("{s:s, s:s, s:b}", "id", id, "object", object, "deleted", 1);
}

json_t *render_storage(const svc_storage *st)
{
    json_t *users = json_array(), *items = json_array();
    for (int i = 0; i < st->n_users; i++) {
        const svc_usage *u = &st->users[i];
        json_array_append_new(users, json_pack("{s:s, s:I, s:I, s:I, s:I}", "name", u->name, "file_bytes",
                                               (json_int_t)u->file_bytes, "model_bytes", (json_int_t)u->model_bytes,
                                               "job_bytes", (json_int_t)u->job_bytes, "total_bytes",
                                               (json_int_t)(u->file_bytes + u->model_bytes + u->job_bytes)));
    }
    for (int i = 0; i < st->n_items; i++) {
        const svc_item *it = &st->items[i];
        json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:I}", "id", it->id, "object", it->object, "owner",
                                               it->owner, "bytes", (json_int_t)it->bytes));
    }
    json_t *disk = json_pack("{s:I, s:I, s:I}", "free_bytes", (json_int_t)st->disk_free_bytes, "total_bytes",
                             (json_int_t)st->disk_total_bytes, "min_free_bytes", (json_int_t)st->min_free_bytes);
    return json_pack("{s:s, s:o, s:o, s:o, s:I}", "object", "storage", "users", users, "largest", items, "disk", disk,
                     "reclaimed_bytes", (json_int_t)st->reclaimed_bytes);
}
