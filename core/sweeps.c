/* core/sweeps.c — hyper-parameter sweeps: a job body, parameters to vary (a grid, or seeded random
 * draws), an objective on the validation data, optional seeds per setting; the trials are ordinary jobs
 * (metadata.sweep_id), owned by the sweep's owner, under its quotas, at most max_parallel at once.
 *
 * The request is checked and expanded by core/sweep_plan.c. Validation comes first: every trial's body is checked as a job body before anything is stored. The
 * sweep and its trial list are then committed in one transaction; trial jobs are made later by
 * advance(), each with the Idempotency-Key "sweep:<id>:<index>", so a crash between making a job and
 * recording it in the trial row makes the same job again, never a second one. A sweep ends when every
 * trial's job has: the best setting (mean objective over its seeds) and its best trial are chosen from
 * validation metrics only; a test_file, if given, is evaluated once for the chosen model afterwards.
 * Events (trial_started, trial_finished, new_best, status) go to the events table under the sweep's id,
 * so the events endpoint and its stream work as for jobs. Loop thread only. */
#include "core/core_int.h"
#include "common/log.h"
#include "common/util.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- views ---------------- */

void svc_sweep_clear(svc_sweep *w)
{
    if (!w) return;
    db_sweep_clear(&w->row);
    for (int i = 0; i < w->n_trials; i++) free(w->trials[i].parameters);
    free(w->trials);
    memset(w, 0, sizeof *w);
}

void svc_sweep_page_free(svc_sweep_page *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) svc_sweep_clear(&p->v[i]);
    free(p->v);
    memset(p, 0, sizeof *p);
}

typedef struct trials_ctx { svc_sweep *w; int cap, failed; } trials_ctx;
static int add_trial(void *ud, const db_trial *t)
{
    trials_ctx *c = ud;
    if (util_grow(&c->w->trials, &c->cap, c->w->n_trials + 1, sizeof *c->w->trials)) { c->failed = 1; return 1; }
    db_trial *d = &c->w->trials[c->w->n_trials];
    *d = *t;
    d->parameters = t->parameters ? strdup(t->parameters) : NULL;
    c->w->n_trials++;
    return 0;
}

static int load_trials(svc *s, svc_sweep *w)
{
    trials_ctx c = {w, 0, 0};
    if (db_sweep_trials(s->db, w->row.id, add_trial, &c) != 0 || c.failed) return -EIO;
    json_t *body = json_loads(w->row.body, 0, NULL);
    const char *m = json_string_value(json_object_get(json_object_get(body, "objective"), "metric"));
    w->maximize = !m || !strcmp(m, "valid_accuracy");
    json_decref(body);
    return 0;
}

/* The sweep if who may see it (another user's is "not found"). */
static int get_sweep(svc *s, const svc_caller *who, const char *id, svc_sweep *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    char q[120];
    int rc = db_sweep_get(s->db, id, &out->row);
    if (rc == 0 && who && !who->admin && strcmp(out->row.owner, who->name)) {
        db_sweep_clear(&out->row);
        rc = -ENOENT;
    }
    if (rc == -ENOENT)
        return svc_fail(e, SVC_ENOTFOUND, "sweep_not_found", "id", "no sweep '%s'", util_quote(q, sizeof q, id));
    if (rc || load_trials(s, out)) { svc_sweep_clear(out); return svc__storage_error(s, e); }
    return 0;
}

/* A trial's objective: its job's best validation accuracy (maximize) or lowest validation loss. */
static double trial_objective(const svc_sweep *w, const db_trial *t)
{
    return w->maximize ? t->best_valid_accuracy : t->best_valid_loss;
}

/* ---------------- the driver ---------------- */

static int is_final_trial(const db_trial *t) { return t->job_id[0] && t->job_status >= 0 && svc__is_final(t->job_status); }

/* The choice, from validation metrics of succeeded trials: the setting with the best mean objective over
 * its seeds, and its best trial. NULL when no trial succeeded. */
static json_t *choose(const svc_sweep *w, const char **best_job)
{
    json_t *best = NULL;
    double best_mean = NAN;
    *best_job = NULL;
    for (int i = 0; i < w->n_trials; i++) {
        const db_trial *t = &w->trials[i];
        int first = 1;
        for (int k = 0; k < i; k++) first &= strcmp(w->trials[k].parameters, t->parameters) != 0;
        if (!first) continue; /* settings are compared once, at their first trial */
        double sum = 0;
        int n = 0;
        const db_trial *top = NULL;
        json_t *seeds = json_array();
        for (int k = i; k < w->n_trials; k++) {
            const db_trial *u = &w->trials[k];
            double o = trial_objective(w, u);
            if (strcmp(u->parameters, t->parameters) || u->job_status != JOB_SUCCEEDED || !isfinite(o)) continue;
            sum += o;
            n++;
            if (u->seed >= 0) json_array_append_new(seeds, json_integer(u->seed));
            if (!top || (w->maximize ? o > trial_objective(w, top) : o < trial_objective(w, top))) top = u;
        }
        double mean = n ? sum / n : NAN;
        if (n && (!best || (w->maximize ? mean > best_mean : mean < best_mean))) {
            json_decref(best);
            best = json_pack("{s:s, s:o, s:f, s:o, s:n}", "job_id", top->job_id, "parameters",
                             json_loads(t->parameters, 0, NULL), "objective", mean, "seeds", json_incref(seeds),
                             "test_accuracy");
            best_mean = mean;
            *best_job = top->job_id;
        }
        json_decref(seeds);
    }
    return best;
}

static void emit_status(svc *s, const char *id, enum job_status st, const char *msg)
{
    svc__emit(s, id, "status", "info", json_pack("{s:s}", "status", job_status_name(st)), "%s", msg);
}

static void finish_sweep(svc *s, svc_sweep *w)
{
    const char *best_job;
    json_t *best = choose(w, &best_job);
    char *best_text = best ? json_dumps(best, JSON_COMPACT) : NULL;
    char model[320] = "";
    db_job j;
    if (best_job && db_job_get(s->db, best_job, &j) == 0) {
        snprintf(model, sizeof model, "%s", j.fine_tuned_model ? j.fine_tuned_model : "");
        db_job_clear(&j);
    }
    enum job_status st = best ? JOB_SUCCEEDED : JOB_FAILED;
    /* the webhook is committed first, under an id of this sweep's end: a crash before the status below
     * finishes the sweep again on restart, and the second enqueue is a no-op (never lost, never twice) */
    char evt[DB_ID_MAX + 24];
    snprintf(evt, sizeof evt, "evt_%s_%s", w->row.id + strlen("ftsweep-"), job_status_name(st));
    svc__webhook_enqueue(s, best ? "fine_tuning.sweep.succeeded" : "fine_tuning.sweep.failed", w->row.id, evt);
    if (svc__flush(s) != 0 ||
        db_sweep_update(s->db, w->row.id, st, util_now(), best_text, model[0] ? model : NULL) != 0) {
        LOG(LOG_ERROR, "msg=\"cannot finish sweep\" sweep=%s err=\"%s\"", w->row.id, db_errmsg(s->db));
    } else {
        s->active_sweeps--;
        if (best)
            svc__emit(s, w->row.id, "status", "info", json_pack("{s:s, s:O}", "status", job_status_name(st), "best", best),
                      "Sweep succeeded: best %s (objective %.4f)", best_job, json_number_value(json_object_get(best, "objective")));
        else
            emit_status(s, w->row.id, st, "Sweep failed: no trial succeeded");
        LOG(LOG_INFO, "msg=\"sweep finished\" sweep=%s status=%s best=%s", w->row.id, job_status_name(st),
            best_job ? best_job : "-");
        if (best && w->test_file[0]) svc__sweep_test(s, w->row.id, best_job, w->test_file);
    }
    free(best_text);
    json_decref(best);
    svc__notify(s, w->row.id);
}

/* Events for trials that ended since the last look, and a new best when it changes. */
static void note_finished(svc *s, svc_sweep *w)
{
    for (int i = 0; i < w->n_trials; i++) {
        const db_trial *t = &w->trials[i];
        if (!is_final_trial(t)) continue;
        int seen = 0;
        for (int k = 0; k < s->n_seen; k++) seen |= !strcmp(s->seen[k], t->job_id);
        if (seen) continue;
        if (util_grow(&s->seen, &s->cap_seen, s->n_seen + 1, sizeof *s->seen) == 0)
            snprintf(s->seen[s->n_seen++], DB_ID_MAX, "%s", t->job_id);
        double o = trial_objective(w, t);
        svc__emit(s, w->row.id, "trial_finished", "info",
                  json_pack("{s:i, s:s, s:s, s:o}", "index", t->idx, "job_id", t->job_id, "status",
                            job_status_name(t->job_status), "objective", isfinite(o) ? json_real(o) : json_null()),
                  "Trial %d (%s) %s", t->idx, t->job_id, job_status_name(t->job_status));
        const char *best_job;
        json_t *best = choose(w, &best_job);
        if (best && !strcmp(best_job, t->job_id))
            svc__emit(s, w->row.id, "new_best", "info", json_pack("{s:i, s:s, s:O, s:O}", "index", t->idx, "job_id",
                                                                  t->job_id, "parameters", json_object_get(best, "parameters"),
                                                                  "objective", json_object_get(best, "objective")),
                      "New best: trial %d (%s)", t->idx, t->job_id);
        json_decref(best);
    }
}

/* Start trials while fewer than max_parallel run; finish the sweep when every trial has ended. */
static void advance(svc *s, const char *id)
{
    svc_sweep w;
    svc_error e;
    if (get_sweep(s, NULL, id, &w, &e) != 0) return;
    if (svc__is_final(w.row.status)) { svc_sweep_clear(&w); return; }
    json_t *body = json_loads(w.row.body, 0, NULL);
    json_t *mp = json_object_get(body, "max_parallel");
    int max_parallel = json_is_integer(mp) ? (int)json_integer_value(mp) : 1;
    snprintf(w.test_file, sizeof w.test_file, "%s", json_string_value(json_object_get(body, "test_file")) ?
             json_string_value(json_object_get(body, "test_file")) : "");
    int active = 0, ended = 0;
    for (int i = 0; i < w.n_trials; i++) {
        if (is_final_trial(&w.trials[i])) ended++;
        else if (w.trials[i].job_id[0]) active++;
    }
    note_finished(s, &w);
    svc_caller owner = {.admin = 0};
    snprintf(owner.name, sizeof owner.name, "%s", w.row.owner);
    snprintf(owner.remote, sizeof owner.remote, "sweep");
    for (int i = 0; i < w.n_trials && active < max_parallel && !s->stopping; i++) {
        db_trial *t = &w.trials[i];
        if (t->job_id[0]) continue;
        json_t *setting = json_loads(t->parameters, 0, NULL);
        json_t *tb = setting ? svc__trial_body(body, setting, t->seed, w.row.id, t->idx) : NULL;
        char key[DB_ID_MAX + 32];
        snprintf(key, sizeof key, "sweep:%s:%d", w.row.id, t->idx);
        svc_job out;
        int replayed, rc = tb ? svc_job_create(s, &owner, tb, key, &out, &replayed, &e) : -ENOMEM;
        json_decref(tb);
        if (rc == SVC_EQUOTA || rc == SVC_ENOSPACE || rc == SVC_EUNAVAILABLE) { /* later, when there is room */
            json_decref(setting);
            s->sweeps_waiting = 1;
            break;
        }
        if (rc != 0) { /* the body no longer validates (a file gone): the trial fails, the sweep goes on */
            LOG(LOG_WARN, "msg=\"sweep trial cannot start\" sweep=%s trial=%d err=\"%s\"", w.row.id, t->idx, e.message);
            svc__emit(s, w.row.id, "trial_finished", "error",
                      json_pack("{s:i, s:n, s:s, s:s}", "index", t->idx, "job_id", "status", "failed", "error", e.message),
                      "Trial %d cannot start: %s", t->idx, e.message);
            json_decref(setting);
            continue;
        }
        if (db_sweep_trial_job(s->db, w.row.id, t->idx, out.row.id) != 0)
            LOG(LOG_WARN, "msg=\"cannot record a trial's job\" sweep=%s trial=%d job=%s", w.row.id, t->idx, out.row.id);
        snprintf(t->job_id, sizeof t->job_id, "%s", out.row.id);
        t->job_status = out.row.status;
        svc__emit(s, w.row.id, "trial_started", "info",
                  json_pack("{s:i, s:s, s:O, s:o}", "index", t->idx, "job_id", out.row.id, "parameters", setting,
                            "seed", t->seed >= 0 ? json_integer(t->seed) : json_null()),
                  "Trial %d started as %s", t->idx, out.row.id);
        svc_job_clear(&out);
        json_decref(setting);
        active++;
        if (w.row.status == JOB_QUEUED && db_sweep_update(s->db, w.row.id, JOB_RUNNING, 0, NULL, NULL) == 0) {
            w.row.status = JOB_RUNNING;
            emit_status(s, w.row.id, JOB_RUNNING, "Sweep running");
        }
    }
    int stuck = 0; /* trials that could not start count as ended */
    for (int i = 0; i < w.n_trials; i++) stuck += !w.trials[i].job_id[0];
    if (ended == w.n_trials || (active == 0 && ended + stuck == w.n_trials && !s->sweeps_waiting)) finish_sweep(s, &w);
    json_decref(body);
    svc__flush(s);
    svc__notify(s, w.row.id);
    svc_sweep_clear(&w);
}

void svc__sweeps_advance(svc *s)
{
    if (s->active_sweeps <= 0 || s->stopping) return;
    enum { PAGE = 256 };
    char (*ids)[DB_ID_MAX] = malloc(PAGE * sizeof *ids);
    if (!ids) return;
    s->sweeps_waiting = 0;
    const enum job_status live[] = {JOB_QUEUED, JOB_RUNNING};
    int total = 0;
    for (int k = 0; k < 2; k++) {
        int n = 0;
        if (db_sweep_ids_by_status(s->db, live[k], PAGE, ids, &n) != 0) break;
        for (int i = 0; i < n; i++) advance(s, ids[i]);
        total += n;
    }
    free(ids);
    (void)total;
}

/* At start: count the live sweeps, and take their trials that had already ended as reported (their
 * trial_finished events were emitted by the previous daemon). */
int svc__sweeps_open(svc *s)
{
    enum { PAGE = 1024 };
    char (*ids)[DB_ID_MAX] = malloc(PAGE * sizeof *ids);
    if (!ids) return -ENOMEM;
    const enum job_status live[] = {JOB_QUEUED, JOB_RUNNING};
    int rc = 0;
    s->active_sweeps = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        int n = 0;
        if ((rc = db_sweep_ids_by_status(s->db, live[k], PAGE, ids, &n)) != 0) break;
        s->active_sweeps += n;
        for (int i = 0; i < n; i++) {
            svc_sweep w;
            svc_error e;
            if (get_sweep(s, NULL, ids[i], &w, &e) != 0) continue;
            for (int t = 0; t < w.n_trials; t++)
                if (is_final_trial(&w.trials[t]) &&
                    util_grow(&s->seen, &s->cap_seen, s->n_seen + 1, sizeof *s->seen) == 0)
                    snprintf(s->seen[s->n_seen++], DB_ID_MAX, "%s", w.trials[t].job_id);
            svc_sweep_clear(&w);
        }
    }
    free(ids);
    return rc;
}

/* ---------------- the API ---------------- */

int svc_sweep_create(svc *s, const svc_caller *who, const json_t *body, svc_sweep *out, svc_error *e)
{
    if (s->stopping) return svc_fail(e, SVC_EUNAVAILABLE, "shutting_down", NULL, "the daemon is shutting down");
    svc__sweep_req r;
    int rc = svc__sweep_parse(body, &r, e);
    if (rc) return rc;
    json_t *settings = NULL;
    if ((rc = svc__sweep_settings(&r, &settings, e)) != 0) return rc;
    char id[DB_ID_MAX];
    if ((rc = util_random_id(id, sizeof id, "ftsweep-")) != 0) {
        json_decref(settings);
        return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "no randomness for an id: %s", strerror(-rc));
    }
    if (r.test_file) { /* a name the owner may use, like the job's own files */
        char path[TR_PATH_MAX], arch[16], err[512];
        svc__resolve_ctx rctx = {s, who->name, 0};
        if (svc__resolve(&rctx, JOBSPEC_VALIDATION_FILE, r.test_file, path, arch, err, sizeof err) != 0) {
            json_decref(settings);
            return svc_fail(e, SVC_EINVAL, "file_not_found", "test_file", "%s", err);
        }
    }
    size_t n_seeds = r.seeds ? json_array_size(r.seeds) : 1, n = json_array_size(settings) * n_seeds;
    db_trial *trials = calloc(n ? n : 1, sizeof *trials);
    for (size_t i = 0; trials && i < n && rc == 0; i++) { /* every trial's body validates, before anything is stored */
        json_t *setting = json_array_get(settings, i / n_seeds);
        long long seed = r.seeds ? (long long)json_integer_value(json_array_get(r.seeds, i % n_seeds)) : -1;
        json_t *tb = svc__trial_body(body, setting, seed, id, (int)i);
        trials[i].idx = (int)i;
        trials[i].seed = seed;
        trials[i].parameters = json_dumps(setting, JSON_COMPACT | JSON_SORT_KEYS);
        if (!tb) { /* a path through a value that is not an object */
            const char *k;
            json_t *v;
            json_object_foreach(setting, k, v) {
                char p[300];
                snprintf(p, sizeof p, "parameters.%.250s", k);
                rc = svc_fail(e, SVC_EINVAL, "invalid_value", p, "'%.200s' does not lead into the job body", k);
                break;
            }
            break;
        }
        svc_error te;
        if ((rc = svc__job_check(s, who, tb, &te)) != 0) {
            /* name the swept path and value when the job's complaint is about one of them */
            char *vals = json_dumps(setting, JSON_COMPACT | JSON_SORT_KEYS);
            const char *k, *hit = NULL;
            json_t *v;
            json_object_foreach(setting, k, v)
                if (te.param[0] && !strncmp(te.param, k, strlen(te.param) < strlen(k) ? strlen(te.param) : strlen(k)))
                    hit = k;
            char p[300];
            json_t *values = hit ? json_object_get(r.params, hit) : NULL;
            size_t at = 0;
            while (json_is_array(values) && at < json_array_size(values) &&
                   !json_equal(json_array_get(values, at), json_object_get(setting, hit)))
                at++;
            if (json_is_array(values) && at < json_array_size(values)) /* the value, by its place in the list */
                snprintf(p, sizeof p, "parameters.%.250s[%zu]", hit, at);
            else if (hit) snprintf(p, sizeof p, "parameters.%.250s", hit);
            else snprintf(p, sizeof p, "job%s%.250s", te.param[0] ? "." : "", te.param);
            rc = svc_fail(e, te.kind, te.code, p, "trial %zu %s: %s", i, vals ? vals : "", te.message);
            free(vals);
        }
        json_decref(tb);
    }
    json_decref(settings);
    if (!trials) return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    char *canon = rc == 0 ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (rc == 0 && !canon) rc = svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    if (rc == 0) {
        db_sweep row = {.status = JOB_QUEUED, .created_at = util_now(), .body = canon};
        snprintf(row.id, sizeof row.id, "%s", id);
        snprintf(row.owner, sizeof row.owner, "%s", who->name);
        db_event created;
        svc__event_fill(s, &created, id, "status", "info", json_pack("{s:s, s:i}", "status", job_status_name(JOB_QUEUED),
                                                                    "trials", (int)n), "Sweep created");
        int dr = created.message ? db_sweep_insert(s->db, &row, trials, (int)n, &created) : -ENOMEM;
        free(created.message);
        free(created.data);
        if (dr == -ENOSPC)
            rc = svc_fail(e, SVC_ENOSPACE, "insufficient_storage", NULL, "cannot store the sweep: the disk is full");
        else if (dr)
            rc = svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot store the sweep: %s", db_errmsg(s->db));
    }
    for (size_t i = 0; i < n; i++) free(trials[i].parameters);
    free(trials);
    free(canon);
    if (rc) return rc;
    s->active_sweeps++;
    LOG(LOG_INFO, "msg=\"sweep created\" sweep=%s user=%s trials=%zu max_parallel=%d", id, who->name, n, r.max_parallel);
    advance(s, id);
    return get_sweep(s, NULL, id, out, e);
}

int svc_sweep_get(svc *s, const svc_caller *who, const char *id, svc_sweep *out, svc_error *e)
{
    return get_sweep(s, who, id, out, e);
}

typedef struct list_ctx { svc *s; svc_sweep_page *p; int cap, failed; } list_ctx;
static int add_sweep(void *ud, const db_sweep *row)
{
    list_ctx *c = ud;
    if (util_grow(&c->p->v, &c->cap, c->p->n + 1, sizeof *c->p->v)) { c->failed = 1; return 1; }
    svc_sweep *w = &c->p->v[c->p->n];
    memset(w, 0, sizeof *w);
    w->row = *row;
    w->row.body = row->body ? strdup(row->body) : NULL;
    w->row.best = row->best ? strdup(row->best) : NULL;
    w->row.fine_tuned_model = row->fine_tuned_model ? strdup(row->fine_tuned_model) : NULL;
    c->p->n++;
    if (load_trials(c->s, w)) { c->failed = 1; return 1; }
    return 0;
}

int svc_sweep_list(svc *s, const svc_caller *who, const char *after, int limit, svc_sweep_page *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    list_ctx c = {s, out, 0, 0};
    char q[120];
    int rc = db_sweep_list(s->db, who->admin ? NULL : who->name, after, limit, add_sweep, &c, &out->has_more);
    if (rc == -ENOENT) {
        svc_sweep_page_free(out);
        return svc_fail(e, SVC_EINVAL, "invalid_value", "after", "no sweep '%s'", util_quote(q, sizeof q, after));
    }
    if (rc || c.failed) { svc_sweep_page_free(out); return svc__storage_error(s, e); }
    return 0;
}

int svc_sweep_cancel(svc *s, const svc_caller *who, const char *id, svc_sweep *out, svc_error *e)
{
    svc_sweep w;
    int rc = get_sweep(s, who, id, &w, e);
    if (rc) return rc;
    if (svc__is_final(w.row.status)) {
        rc = svc_fail(e, SVC_ECONFLICT, "invalid_state", NULL, "sweep %s is already %s", id, job_status_name(w.row.status));
        svc_sweep_clear(&w);
        return rc;
    }
    if (db_sweep_update(s->db, id, JOB_CANCELLED, util_now(), NULL, NULL) != 0) {
        svc_sweep_clear(&w);
        return svc__storage_error(s, e);
    }
    s->active_sweeps--;
    int n = 0;
    for (int i = 0; i < w.n_trials; i++) {
        db_trial *t = &w.trials[i];
        if (!t->job_id[0] || t->job_status < 0 || svc__is_final(t->job_status)) continue;
        svc_job j;
        svc_error je;
        if (svc_job_cancel(s, NULL, t->job_id, &j, &je) == 0) { svc_job_clear(&j); n++; }
    }
    svc__emit(s, id, "status", "info", json_pack("{s:s, s:i}", "status", job_status_name(JOB_CANCELLED), "trials_cancelled", n),
              "Sweep cancelled (%d trials cancelled)", n);
    svc__flush(s);
    svc__notify(s, id);
    LOG(LOG_INFO, "msg=\"sweep cancelled\" sweep=%s trials=%d", id, n);
    svc_sweep_clear(&w);
    return get_sweep(s, NULL, id, out, e);
}

int svc__sweep_visible(svc *s, const svc_caller *who, const char *id, int *final, svc_error *e)
{
    svc_sweep w;
    int rc = get_sweep(s, who, id, &w, e);
    if (rc) return rc;
    *final = svc__is_final(w.row.status) && !svc__sweep_testing(s, id);
    svc_sweep_clear(&w);
    return 0;
}

/* ---------------- the test set, once, for the chosen model ---------------- */

/* A worker of libuv's pool evaluates the model (seconds); the loop records the result. */
struct sweep_test {
    uv_work_t work;
    svc *s;
    char sweep_id[DB_ID_MAX], job_id[DB_ID_MAX];
    char model[TR_PATH_MAX], data[TR_PATH_MAX];
    tr_eval_opts opts;
    tr_eval_result res;
    int rc;
    char err[512];
    struct sweep_test *next;
};

static void test_work(uv_work_t *w)
{
    struct sweep_test *t = w->data;
    t->rc = tr_evaluate(t->model, t->data, &t->opts, &t->res, t->err, sizeof t->err);
}

static void test_done(uv_work_t *w, int status)
{
    struct sweep_test *t = w->data;
    svc *s = t->s;
    for (struct sweep_test **pp = &s->tests; *pp; pp = &(*pp)->next)
        if (*pp == t) { *pp = t->next; break; }
    if (status == 0 && t->rc == 0) {
        db_sweep row;
        if (db_sweep_get(s->db, t->sweep_id, &row) == 0) {
            json_t *best = json_loads(row.best ? row.best : "{}", 0, NULL);
            json_object_set_new(best, "test_accuracy", json_real(t->res.accuracy));
            json_object_set_new(best, "test_loss", json_real(t->res.loss));
            json_object_set_new(best, "test_images", json_integer(t->res.images));
            char *text = json_dumps(best, JSON_COMPACT);
            if (!text || db_sweep_update(s->db, t->sweep_id, row.status, 0, text, NULL) != 0)
                LOG(LOG_ERROR, "msg=\"cannot record the test accuracy\" sweep=%s", t->sweep_id);
            free(text);
            json_decref(best);
            db_sweep_clear(&row);
        }
        svc__emit(s, t->sweep_id, "test", "info",
                  json_pack("{s:s, s:f, s:f, s:i}", "job_id", t->job_id, "test_accuracy", t->res.accuracy, "test_loss",
                            t->res.loss, "images", t->res.images),
                  "Chosen model on the test set: accuracy %.4f (%d images)", t->res.accuracy, t->res.images);
    } else {
        svc__emit(s, t->sweep_id, "test", "error", json_pack("{s:s, s:s}", "job_id", t->job_id, "error", t->err),
                  "Cannot evaluate the chosen model on the test set: %s", status ? uv_strerror(status) : t->err);
    }
    svc__flush(s);
    svc__notify(s, t->sweep_id);
    free(t);
    svc__finish_shutdown(s);
}

void svc__sweep_test(svc *s, const char *sweep_id, const char *job_id, const char *test_file)
{
    struct sweep_test *t = calloc(1, sizeof *t);
    db_job j;
    db_model m;
    char arch[16], err[512] = "out of memory";
    int ok = t && db_job_get(s->db, job_id, &j) == 0;
    if (ok) {
        ok = j.fine_tuned_model && db_model_get(s->db, j.fine_tuned_model, &m) == 0;
        svc__resolve_ctx rctx = {s, j.owner, 0};
        if (ok) snprintf(t->model, sizeof t->model, "%s", m.path);
        else snprintf(err, sizeof err, "the chosen job has no model");
        if (ok && svc__resolve(&rctx, JOBSPEC_VALIDATION_FILE, test_file, t->data, arch, err, sizeof err) != 0) ok = 0;
        db_job_clear(&j);
    }
    if (ok) {
        t->s = s;
        t->work.data = t;
        snprintf(t->sweep_id, sizeof t->sweep_id, "%s", sweep_id);
        snprintf(t->job_id, sizeof t->job_id, "%s", job_id);
        t->opts.threads = s->cfg.threads_per_job;
        ok = uv_queue_work(s->loop, &t->work, test_work, test_done) == 0;
        if (!ok) snprintf(err, sizeof err, "cannot queue the evaluation");
    }
    if (!ok) {
        svc__emit(s, sweep_id, "test", "error", json_pack("{s:s, s:s}", "job_id", job_id, "error", err),
                  "Cannot evaluate the chosen model on the test set: %s", err);
        free(t);
        return;
    }
    t->next = s->tests;
    s->tests = t;
    LOG(LOG_INFO, "msg=\"evaluating the chosen model on the test set\" sweep=%s job=%s data=%s", sweep_id, job_id,
        test_file);
}

int svc__sweep_testing(svc *s, const char *sweep_id)
{
    for (struct sweep_test *t = s->tests; t; t = t->next)
        if (!strcmp(t->sweep_id, sweep_id)) return 1;
    return 0;
}

void svc__sweeps_free(svc *s)
{
    free(s->seen);
    s->seen = NULL;
    s->n_seen = s->cap_seen = 0;
}
