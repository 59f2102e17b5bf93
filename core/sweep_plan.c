/* core/sweep_plan.c — a sweep request (core/sweeps.c): validated field by field, expanded into its
 * settings (a grid, or seeded random draws that are the same on every machine) and each trial's job
 * body. Pure functions of the request; the loop thread calls them, any thread could. */
#include "core/core_int.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_MAX_TRIALS 256

#define SWEEP_MAX_VALUES 64
#define SWEEP_MAX_SEEDS 16
#define SWEEP_MAX_PARALLEL 64

static const char *const top_keys[] = {"job", "parameters", "search", "objective", "max_parallel", "seeds",
                                       "test_file", "suffix", NULL};

/* ---------------- the request ---------------- */

/* A setting's value at a dotted path of a job body, made on a copy (objects created on the way). */
static int set_path(json_t *body, const char *path, json_t *value)
{
    char buf[256];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -ENAMETOOLONG;
    json_t *o = body;
    char *save = NULL, *part = strtok_r(buf, ".", &save);
    while (part) {
        char *next = strtok_r(NULL, ".", &save);
        if (!next) return json_object_set(o, part, value) ? -ENOMEM : 0;
        json_t *child = json_object_get(o, part);
        if (!child || json_is_null(child)) {
            child = json_object();
            if (!child || json_object_set_new(o, part, child)) return -ENOMEM;
        } else if (!json_is_object(child)) {
            return -EINVAL;
        }
        o = child;
        part = next;
    }
    return -EINVAL;
}

/* splitmix64: random search is reproducible for a seed on every machine */
static uint64_t mix_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double mix_unit(uint64_t *x) { return (double)(mix_next(x) >> 11) / 9007199254740992.0; }

static int bad(svc_error *e, const char *param, const char *fmt, const char *a)
{
    return svc_fail(e, SVC_EINVAL, "invalid_value", param, fmt, a);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int svc__sweep_parse(const json_t *body, svc__sweep_req *r, svc_error *e)
{
    memset(r, 0, sizeof *r);
    if (!json_is_object(body)) return bad(e, NULL, "%s", "the body must be a JSON object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v) {
        int known = 0;
        for (int i = 0; top_keys[i]; i++) known |= !strcmp(k, top_keys[i]);
        if (!known) return svc_fail(e, SVC_EINVAL, "unknown_parameter", k, "unknown field '%.64s'", k);
    }
    r->job = json_object_get(body, "job");
    if (!json_is_object(r->job)) return bad(e, "job", "%s", "job must be a job body (an object)");
    r->params = json_object_get(body, "parameters");
    if (!json_is_object(r->params) || json_object_size(r->params) == 0)
        return bad(e, "parameters", "%s", "parameters must be an object of at least one path: [values]");
    if (json_object_size(r->params) > SWEEP_MAX_PARAMS)
        return bad(e, "parameters", "%s", "at most 8 parameters");
    r->search = json_object_get(body, "search");
    if (!r->search || json_is_null(r->search) || (json_is_string(r->search) && !strcmp(json_string_value(r->search), "grid"))) {
        r->random_n = 0;
    } else if (json_is_object(r->search) && json_is_integer(json_object_get(r->search, "random"))) {
        json_int_t n = json_integer_value(json_object_get(r->search, "random"));
        json_t *sd = json_object_get(r->search, "seed");
        if (n < 1 || n > SWEEP_MAX_TRIALS) return bad(e, "search.random", "%s", "search.random must be 1..256 trials");
        if (json_object_size(r->search) > (sd ? 2u : 1u))
            return bad(e, "search", "%s", "search is \"grid\" or {\"random\": N, \"seed\": S}");
        if (sd && (!json_is_integer(sd) || json_integer_value(sd) < 0))
            return bad(e, "search.seed", "%s", "search.seed must be a non-negative integer");
        r->random_n = (int)n;
        r->random_seed = sd ? (uint64_t)json_integer_value(sd) : 0;
    } else {
        return bad(e, "search", "%s", "search is \"grid\" or {\"random\": N, \"seed\": S}");
    }
    json_object_foreach(r->params, k, v) {
        char p[300];
        snprintf(p, sizeof p, "parameters.%.250s", k);
        if (strlen(k) > 200 || !k[0] || k[0] == '.' || strstr(k, "..") || k[strlen(k) - 1] == '.')
            return bad(e, p, "%s", "a parameter is a dotted path into the job body");
        if (json_is_array(v)) {
            if (json_array_size(v) < 1 || json_array_size(v) > SWEEP_MAX_VALUES)
                return bad(e, p, "%s", "a parameter takes 1..64 values");
        } else if (json_is_object(v) && json_object_size(v) == 1 && json_is_array(json_object_get(v, "log_uniform"))) {
            json_t *ab = json_object_get(v, "log_uniform");
            double a = json_number_value(json_array_get(ab, 0)), b = json_number_value(json_array_get(ab, 1));
            if (!r->random_n) return bad(e, p, "%s", "log_uniform ranges need \"search\": {\"random\": N}");
            if (json_array_size(ab) != 2 || !json_is_number(json_array_get(ab, 0)) ||
                !json_is_number(json_array_get(ab, 1)) || !(a > 0) || !(b > a) || !isfinite(b))
                return bad(e, p, "%s", "log_uniform is [a, b] with 0 < a < b");
        } else {
            return bad(e, p, "%s", "a parameter's values are a list (or {\"log_uniform\": [a, b]} for random search)");
        }
        r->keys[r->n_keys++] = k;
    }
    qsort(r->keys, (size_t)r->n_keys, sizeof r->keys[0], cmp_str); /* trial order never depends on key order */
    r->objective = json_object_get(body, "objective");
    r->maximize = 1;
    if (r->objective && !json_is_null(r->objective)) {
        const char *m = json_string_value(json_object_get(r->objective, "metric"));
        const char *g = json_string_value(json_object_get(r->objective, "goal"));
        if (!json_is_object(r->objective) || json_object_size(r->objective) > 2 || !m ||
            (strcmp(m, "valid_accuracy") && strcmp(m, "valid_loss")))
            return bad(e, "objective.metric", "%s", "objective.metric is valid_accuracy or valid_loss");
        if (g && strcmp(g, "maximize") && strcmp(g, "minimize"))
            return bad(e, "objective.goal", "%s", "objective.goal is maximize or minimize");
        r->maximize = g ? !strcmp(g, "maximize") : !strcmp(m, "valid_accuracy");
        if (r->maximize != !strcmp(m, "valid_accuracy"))
            return bad(e, "objective.goal", "%s", "maximize valid_accuracy or minimize valid_loss");
    }
    json_t *mp = json_object_get(body, "max_parallel");
    r->max_parallel = 1;
    if (mp && !json_is_null(mp)) {
        if (!json_is_integer(mp) || json_integer_value(mp) < 1 || json_integer_value(mp) > SWEEP_MAX_PARALLEL)
            return bad(e, "max_parallel", "%s", "max_parallel must be 1..64");
        r->max_parallel = (int)json_integer_value(mp);
    }
    r->seeds = json_object_get(body, "seeds");
    if (json_is_null(r->seeds)) r->seeds = NULL;
    if (r->seeds) {
        if (!json_is_array(r->seeds) || json_array_size(r->seeds) < 1 || json_array_size(r->seeds) > SWEEP_MAX_SEEDS)
            return bad(e, "seeds", "%s", "seeds is a list of 1..16 non-negative integers");
        size_t i;
        json_t *sd;
        json_array_foreach(r->seeds, i, sd)
            if (!json_is_integer(sd) || json_integer_value(sd) < 0)
                return bad(e, "seeds", "%s", "seeds is a list of 1..16 non-negative integers");
    }
    json_t *sx = json_object_get(body, "suffix");
    if (sx && !json_is_null(sx) && !json_is_string(sx)) return bad(e, "suffix", "%s", "suffix must be a string");
    json_t *tf = json_object_get(body, "test_file");
    if (tf && !json_is_null(tf)) {
        if (!json_is_string(tf)) return bad(e, "test_file", "%s", "test_file must be a dataset or file name");
        r->test_file = json_string_value(tf);
        const char *vf = json_string_value(json_object_get(r->job, "validation_file"));
        if (vf && !strcmp(vf, r->test_file))
            return bad(e, "test_file", "%s", "the test file must not be the validation data that chooses");
    }
    return 0;
}

/* The settings to try: OUT *out = a JSON array of {path: value} (new reference). */
int svc__sweep_settings(const svc__sweep_req *r, json_t **out, svc_error *e)
{
    json_t *list = json_array();
    if (!list) return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    if (r->random_n) {
        uint64_t x = r->random_seed;
        for (int t = 0; t < r->random_n; t++) {
            json_t *one = json_object();
            for (int k = 0; k < r->n_keys; k++) {
                json_t *v = json_object_get(r->params, r->keys[k]);
                if (json_is_array(v)) {
                    json_object_set(one, r->keys[k], json_array_get(v, (size_t)(mix_next(&x) % json_array_size(v))));
                } else {
                    json_t *ab = json_object_get(v, "log_uniform");
                    double a = log(json_number_value(json_array_get(ab, 0)));
                    double b = log(json_number_value(json_array_get(ab, 1)));
                    json_object_set_new(one, r->keys[k], json_real(exp(a + (b - a) * mix_unit(&x))));
                }
            }
            json_array_append_new(list, one);
        }
    } else { /* the grid, the last key varying fastest */
        size_t total = 1;
        for (int k = 0; k < r->n_keys; k++) {
            total *= json_array_size(json_object_get(r->params, r->keys[k]));
            if (total > SWEEP_MAX_TRIALS) break;
        }
        if (total > SWEEP_MAX_TRIALS) {
            json_decref(list);
            return svc_fail(e, SVC_EINVAL, "invalid_value", "parameters", "the grid has more than %d settings",
                            SWEEP_MAX_TRIALS);
        }
        for (size_t t = 0; t < total; t++) {
            json_t *one = json_object();
            size_t rest = t;
            for (int k = r->n_keys - 1; k >= 0; k--) {
                json_t *v = json_object_get(r->params, r->keys[k]);
                size_t n = json_array_size(v);
                json_object_set(one, r->keys[k], json_array_get(v, rest % n));
                rest /= n;
            }
            json_array_append_new(list, one);
        }
    }
    size_t n_seeds = r->seeds ? json_array_size(r->seeds) : 1;
    if (json_array_size(list) * n_seeds > SWEEP_MAX_TRIALS) {
        json_decref(list);
        return svc_fail(e, SVC_EINVAL, "invalid_value", "seeds", "settings x seeds is more than %d trials",
                        SWEEP_MAX_TRIALS);
    }
    *out = list;
    return 0;
}

/* A trial's job body: the sweep's job with the setting, the seed and the sweep's id in its metadata. */
json_t *svc__trial_body(const json_t *sweep, const json_t *setting, long long seed, const char *sweep_id, int idx)
{
    json_t *b = json_deep_copy(json_object_get(sweep, "job"));
    if (!b) return NULL;
    json_t *suffix = json_object_get(sweep, "suffix"); /* the sweep's, for trials whose job names none */
    if (json_is_string(suffix) && !json_is_string(json_object_get(b, "suffix"))) json_object_set(b, "suffix", suffix);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)setting, k, v)
        if (set_path(b, k, v) != 0) { json_decref(b); return NULL; }
    if (seed >= 0) json_object_set_new(b, "seed", json_integer(seed));
    json_t *md = json_object_get(b, "metadata");
    if (!json_is_object(md)) {
        md = json_object();
        json_object_set_new(b, "metadata", md);
    }
    char i[16];
    snprintf(i, sizeof i, "%d", idx);
    json_object_set_new(md, "sweep_id", json_string(sweep_id));
    json_object_set_new(md, "sweep_trial", json_string(i));
    return b;
}
