/* spec/jobspec.c — job body JSON <-> tr_spec (see jobspec.h). Pure; any thread.
 * Three tables (hyperparameters, architecture, data) drive parsing, the effective-JSON output (and so
 * the body of a resolved spec) and the mapping of tr_spec_validate's field names back to JSON paths,
 * so a field is declared once; "resources" has its own small table, as none of it but cpus is a spec. */
#include "spec/jobspec.h"
#include "common/util.h"
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum kind { K_INT, K_REAL, K_BOOL, K_SCHEDULE, K_VARIANT, K_EARLY_STOP, K_PRECISION };

typedef struct field {
    const char *json;     /* name in the body */
    enum kind kind;
    size_t off;           /* into tr_spec */
    unsigned methods;     /* bit (1 << tr_method) for each method the field applies to */
    const char *tr;       /* the tr_spec field name tr_spec_validate reports */
} field;

/* Which methods a hyper-parameter applies to. */
#define ALL (1u << TR_CE_TUNING | 1u << TR_CORE_TUNING | 1u << TR_SIMCLR)
#define CORE (1u << TR_CORE_TUNING)
#define CONTRAST (1u << TR_CORE_TUNING | 1u << TR_SIMCLR)
#define F(j, k, m, c) {j, k, offsetof(tr_spec, m), c, #m}
static const field hp_fields[] = {
    F("n_epochs", K_INT, hp.epochs, ALL),
    F("batch_size", K_INT, hp.batch_size, ALL),
    F("gradient_accumulation_steps", K_INT, hp.grad_accum, ALL),
    F("learning_rate", K_REAL, hp.lr, ALL),
    F("momentum", K_REAL, hp.momentum, ALL),
    F("nesterov", K_BOOL, hp.nesterov, ALL),
    F("weight_decay", K_REAL, hp.weight_decay, ALL),
    F("lr_schedule", K_SCHEDULE, hp.cosine, ALL),
    F("warmup_steps", K_INT, hp.warmup_steps, ALL),
    F("early_stopping", K_EARLY_STOP, hp.es_patience, ALL), /* {"patience", "min_delta"}: hp.es_* */
    F("eta", K_REAL, hp.eta, CORE),
    F("mixup_alpha", K_REAL, hp.mixup_alpha, CORE),
    F("temperature", K_REAL, hp.temperature, CONTRAST),
    F("contrast_dim", K_INT, hp.contrast_dim, CONTRAST),
    F("variant", K_VARIANT, variant, CORE),
    F("threads", K_INT, threads, ALL),
    F("precision", K_PRECISION, precision, ALL),
};
static const field arch_fields[] = {
    F("in_channels", K_INT, in_channels, ALL),
    F("image_size", K_INT, image_size, ALL),
    F("small_stem", K_BOOL, small_stem, ALL),
};
static const field data_fields[] = {
    F("train_per_class", K_INT, train_per_class, ALL),
    F("train_limit", K_INT, train_limit, ALL),
    F("valid_limit", K_INT, valid_limit, ALL),
    F("valid_fraction", K_REAL, valid_fraction, ALL),
    F("valid_every", K_INT, valid_every, ALL),
    F("augment", K_BOOL, augment, ALL),
};
#undef F
#undef ALL
#undef CORE
#undef CONTRAST
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *const top_fields[] = {"model", "training_file", "validation_file", "method", "seed",
                                         "suffix", "metadata", "architecture", "data", "resources", "device", NULL};

static const char *const method_names[] = {[TR_CE_TUNING] = "ce_tuning", [TR_CORE_TUNING] = "core_tuning",
                                            [TR_SIMCLR] = "simclr"};
#define NMETHODS (sizeof method_names / sizeof method_names[0])

const char *jobspec_method_name(enum tr_method m) { return method_names[m]; }

__attribute__((format(printf, 6, 7)))
static int fail(char *param, size_t paramlen, const char *p, char *err, size_t errlen, const char *fmt, ...)
{
    snprintf(param, paramlen, "%s", p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Unknown keys of obj (allowed: names[] NULL-terminated, or the json names of fields[n]). */
static int check_keys(const json_t *obj, const char *path, const char *const *names, const field *fields,
                      size_t n, char *param, size_t paramlen, char *err, size_t errlen)
{
    char list[256] = "";
    const char *first = NULL;
    int count = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        int ok = 0;
        for (size_t i = 0; names && names[i]; i++) ok |= strcmp(key, names[i]) == 0;
        for (size_t i = 0; i < n; i++) ok |= strcmp(key, fields[i].json) == 0;
        if (ok) continue;
        if (!first) first = key;
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s'%s'", count ? ", " : "", key);
        count++;
    }
    if (!count) return 0;
    char p[256];
    snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", first);
    snprintf(param, paramlen, "%s", p);
    snprintf(err, errlen, "unknown field%s %s%s%s", count > 1 ? "s" : "", list, *path ? " in " : "", path);
    return -EINVAL;
}

/* early_stopping: {"patience": 1..10000, "min_delta": number (default 0)}; min_delta's range is
 * tr_spec_validate's (map_param names it). */
static int set_early_stop(tr_spec *s, const json_t *v, const char *p, char *param, size_t paramlen, char *err,
                          size_t errlen)
{
    static const char *const keys[] = {"patience", "min_delta", NULL};
    if (!json_is_object(v))
        return fail(param, paramlen, p, err, errlen, "%s must be an object {\"patience\": N, \"min_delta\": X} or null", p);
    int rc = check_keys(v, p, keys, NULL, 0, param, paramlen, err, errlen);
    if (rc) return rc;
    char q[300];
    const json_t *pv = json_object_get(v, "patience"), *dv = json_object_get(v, "min_delta");
    snprintf(q, sizeof q, "%s.patience", p);
    if (!pv || json_is_null(pv)) return fail(param, paramlen, q, err, errlen, "%s is required", q);
    if (!json_is_integer(pv)) return fail(param, paramlen, q, err, errlen, "%s must be an integer", q);
    /* 0 would read as "off": off is null */
    if (json_integer_value(pv) < 1 || json_integer_value(pv) > 10000)
        return fail(param, paramlen, q, err, errlen, "%s must be in [1, 10000]", q);
    s->hp.es_patience = (int)json_integer_value(pv);
    s->hp.es_min_delta = 0;
    if (dv && !json_is_null(dv)) {
        snprintf(q, sizeof q, "%s.min_delta", p);
        if (!json_is_number(dv)) return fail(param, paramlen, q, err, errlen, "%s must be a number", q);
        s->hp.es_min_delta = json_number_value(dv);
    }
    return 0;
}

static int set_field(tr_spec *s, const field *f, const json_t *v, const char *path, char *param,
                     size_t paramlen, char *err, size_t errlen)
{
    char p[256];
    snprintf(p, sizeof p, "%s.%s", path, f->json);
    char *dst = (char *)s + f->off;
    /* OpenAI clients may send "auto" for any hyperparameter: keep the default */
    if (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0 && f->kind != K_BOOL) return 0;
    switch (f->kind) {
    case K_INT: {
        if (!json_is_integer(v)) return fail(param, paramlen, p, err, errlen, "%s must be an integer", p);
        json_int_t x = json_integer_value(v);
        if (x < INT_MIN || x > INT_MAX) return fail(param, paramlen, p, err, errlen, "%s is out of range", p);
        *(int *)dst = (int)x;
        return 0;
    }
    case K_REAL:
        if (!json_is_number(v)) return fail(param, paramlen, p, err, errlen, "%s must be a number", p);
        *(double *)dst = json_number_value(v);
        return 0;
    case K_BOOL:
        if (!json_is_boolean(v)) return fail(param, paramlen, p, err, errlen, "%s must be true or false", p);
        *(int *)dst = json_is_true(v);
        return 0;
    case K_SCHEDULE: {
        const char *x = json_string_value(v);
        if (x && strcmp(x, "cosine") == 0) *(int *)dst = 1;
        else if (x && strcmp(x, "constant") == 0) *(int *)dst = 0;
        else return fail(param, paramlen, p, err, errlen, "%s must be \"cosine\" or \"constant\"", p);
        return 0;
    }
    case K_VARIANT: {
        const char *x = json_string_value(v);
        if (x && strcmp(x, "paper") == 0) *(enum tr_variant *)dst = TR_VARIANT_PAPER;
        else if (x && strcmp(x, "reference") == 0) *(enum tr_variant *)dst = TR_VARIANT_REFERENCE;
        else return fail(param, paramlen, p, err, errlen, "%s must be \"paper\" or \"reference\"", p);
        return 0;
    }
    case K_PRECISION: {
        const char *x = json_string_value(v);
        if (x && strcmp(x, "fp32") == 0) *(int *)dst = TR_FP32;
        else if (x && strcmp(x, "tf32") == 0) *(int *)dst = TR_TF32;
        else if (x && strcmp(x, "bf16") == 0) *(int *)dst = TR_BF16;
        else return fail(param, paramlen, p, err, errlen, "%s must be \"fp32\", \"tf32\" or \"bf16\"", p);
        return 0;
    }
    case K_EARLY_STOP: /* null (off) never gets here */
        return set_early_stop(s, v, p, param, paramlen, err, errlen);
    }
    return -EINVAL;
}

static int parse_object(const json_t *obj, const char *path, const field *fields, size_t n, enum tr_method method,
                        tr_spec *s, char *param, size_t paramlen, char *err, size_t errlen)
{
    if (!json_is_object(obj)) return fail(param, paramlen, path, err, errlen, "%s must be an object", path);
    int rc = check_keys(obj, path, NULL, fields, n, param, paramlen, err, errlen);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(obj, fields[i].json);
        if (!v || json_is_null(v)) continue;
        if (!(fields[i].methods & 1u << method)) {
            char p[256];
            snprintf(p, sizeof p, "%s.%s", path, fields[i].json);
            return fail(param, paramlen, p, err, errlen, "%s does not apply to method %s", p, jobspec_method_name(method));
        }
        if ((rc = set_field(s, &fields[i], v, path, param, paramlen, err, errlen))) return rc;
    }
    return 0;
}

static int parse_method(const json_t *m, tr_spec *s, char *param, size_t paramlen, char *err, size_t errlen)
{
    static const char *const names[] = {"type", "ce_tuning", "core_tuning", "simclr", NULL};
    if (!json_is_object(m)) return fail(param, paramlen, "method", err, errlen, "method must be an object");
    int rc = check_keys(m, "method", names, NULL, 0, param, paramlen, err, errlen);
    if (rc) return rc;
    const char *type = json_object_get(m, "type") ? json_string_value(json_object_get(m, "type")) : "core_tuning";
    size_t mi = NMETHODS;
    for (size_t i = 0; type && i < NMETHODS; i++)
        if (strcmp(type, method_names[i]) == 0) mi = i;
    if (mi == NMETHODS)
        return fail(param, paramlen, "method.type", err, errlen,
                    "method.type must be \"core_tuning\", \"ce_tuning\" or \"simclr\"");
    s->method = (enum tr_method)mi;
    if (s->method == TR_SIMCLR) { /* SimCLR's usual head and temperature (CORE_TUNING.md: 0.2-0.5) */
        s->hp.temperature = 0.5;
        s->hp.contrast_dim = 128;
    }
    for (size_t i = 0; i < NMETHODS; i++) {
        if (i == mi || !json_object_get(m, method_names[i])) continue;
        char p[64];
        snprintf(p, sizeof p, "method.%s", method_names[i]);
        return fail(param, paramlen, p, err, errlen, "method.%s given but method.type is \"%s\"", method_names[i],
                    type);
    }
    json_t *sub = json_object_get(m, type);
    if (!sub || json_is_null(sub)) return 0;
    char path[64];
    snprintf(path, sizeof path, "method.%s", type);
    if (!json_is_object(sub)) return fail(param, paramlen, path, err, errlen, "%s must be an object", path);
    static const char *const subnames[] = {"hyperparameters", NULL};
    if ((rc = check_keys(sub, path, subnames, NULL, 0, param, paramlen, err, errlen))) return rc;
    json_t *hp = json_object_get(sub, "hyperparameters");
    if (!hp || json_is_null(hp)) return 0;
    char hpath[96];
    snprintf(hpath, sizeof hpath, "%s.hyperparameters", path);
    return parse_object(hp, hpath, hp_fields, NELEM(hp_fields), s->method, s, param, paramlen, err, errlen);
}

static int valid_suffix(const char *x)
{
    size_t n = strlen(x);
    if (n == 0 || n > JOBSPEC_SUFFIX_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = x[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return 0;
    }
    return 1;
}

static int parse_metadata(const json_t *m, char *param, size_t paramlen, char *err, size_t errlen)
{
    if (!json_is_object(m)) return fail(param, paramlen, "metadata", err, errlen, "metadata must be an object of strings");
    if (json_object_size(m) > JOBSPEC_METADATA_MAX)
        return fail(param, paramlen, "metadata", err, errlen, "metadata has more than 16 keys");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)m, key, v) {
        char p[128];
        snprintf(p, sizeof p, "metadata.%.64s", key);
        if (strlen(key) > 64) return fail(param, paramlen, p, err, errlen, "metadata keys are at most 64 characters");
        if (!json_is_string(v)) return fail(param, paramlen, p, err, errlen, "%s must be a string", p);
        if (json_string_length(v) > 512)
            return fail(param, paramlen, p, err, errlen, "%s is longer than 512 characters", p);
    }
    return 0;
}

static int resolve(jobspec_resolve_fn fn, void *ud, enum jobspec_ref kind, const json_t *v, const char *name,
                   char *path, char *arch, char *param, size_t paramlen, char *err, size_t errlen)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= TR_PATH_MAX)
        return fail(param, paramlen, name, err, errlen, "%s must be a non-empty string", name);
    if (!fn) return fail(param, paramlen, name, err, errlen, "%s: no resolver for names", name);
    char why[256] = "";
    int rc = fn(ud, kind, json_string_value(v), path, arch, why, sizeof why);
    if (rc) {
        snprintf(param, paramlen, "%s", name);
        snprintf(err, errlen, "%s", why[0] ? why : "unknown name");
        return rc < 0 ? rc : -EINVAL;
    }
    return 0;
}

/* tr_spec_validate names a tr_spec field ("lr", "hp.lr", ...): find the JSON path that set it. */
static void map_param(const tr_spec *s, const char *tr, char *param, size_t paramlen)
{
    const char *leaf = strrchr(tr, '.') ? strrchr(tr, '.') + 1 : tr;
    static const struct { const char *tr, *json; } top[] = {
        {"arch", "model"}, {"init_weights", "model"}, {"train_data", "training_file"},
        {"valid_data", "validation_file"}, {"seed", "seed"}, {"method", "method.type"}, {"device", "device"}};
    for (size_t i = 0; i < NELEM(top); i++)
        if (strcmp(leaf, top[i].tr) == 0) { snprintf(param, paramlen, "%s", top[i].json); return; }
    static const struct { const char *tr, *json; } hp_sub[] = { /* spec fields inside a JSON object */
        {"es_patience", "early_stopping.patience"}, {"es_min_delta", "early_stopping.min_delta"}};
    for (size_t i = 0; i < NELEM(hp_sub); i++)
        if (strcmp(leaf, hp_sub[i].tr) == 0) {
            snprintf(param, paramlen, "method.%s.hyperparameters.%s", jobspec_method_name(s->method), hp_sub[i].json);
            return;
        }
    const struct { const field *f; size_t n; const char *path; } groups[] = {
        {hp_fields, NELEM(hp_fields), NULL}, {arch_fields, NELEM(arch_fields), "architecture"},
        {data_fields, NELEM(data_fields), "data"}};
    for (size_t g = 0; g < NELEM(groups); g++)
        for (size_t i = 0; i < groups[g].n; i++) {
            const field *f = &groups[g].f[i];
            const char *trleaf = strrchr(f->tr, '.') ? strrchr(f->tr, '.') + 1 : f->tr;
            if (strcmp(leaf, trleaf) != 0 && strcmp(leaf, f->json) != 0) continue;
            if (groups[g].path) snprintf(param, paramlen, "%s.%s", groups[g].path, f->json);
            else snprintf(param, paramlen, "method.%s.hyperparameters.%s", jobspec_method_name(s->method), f->json);
            return;
        }
    snprintf(param, paramlen, "%s", tr);
}

int jobspec_parse(const json_t *body, jobspec_resolve_fn fn, void *ud, tr_spec *out, char *param,
                  size_t paramlen, char *err, size_t errlen)
{
    tr_spec s;
    tr_spec_defaults(&s);
    param[0] = 0;
    err[0] = 0;
    if (!json_is_object(body)) return fail(param, paramlen, "", err, errlen, "the body must be a JSON object");
    int rc = check_keys(body, "", top_fields, NULL, 0, param, paramlen, err, errlen);
    if (rc) return rc;

    const json_t *model = json_object_get(body, "model");
    const json_t *train = json_object_get(body, "training_file");
    if (!model) return fail(param, paramlen, "model", err, errlen, "model is required");
    if (!train) return fail(param, paramlen, "training_file", err, errlen, "training_file is required");

    json_t *v;
    if ((v = json_object_get(body, "method")) && !json_is_null(v)) {
        if ((rc = parse_method(v, &s, param, paramlen, err, errlen))) return rc;
    }
    if ((v = json_object_get(body, "architecture")) && !json_is_null(v)) {
        if ((rc = parse_object(v, "architecture", arch_fields, NELEM(arch_fields), s.method, &s, param, paramlen, err, errlen)))
            return rc;
    }
    if ((v = json_object_get(body, "data")) && !json_is_null(v)) {
        if ((rc = parse_object(v, "data", data_fields, NELEM(data_fields), s.method, &s, param, paramlen, err, errlen)))
            return rc;
    }
    if ((v = json_object_get(body, "seed")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return fail(param, paramlen, "seed", err, errlen, "seed must be a non-negative integer");
        s.seed = (uint64_t)json_integer_value(v);
    }
    if ((v = json_object_get(body, "device")) && !json_is_null(v)) {
        if ((rc = jobspec_device_parse(json_string_value(v), &s.device)))
            return fail(param, paramlen, "device", err, errlen, "device must be \"cpu\", \"cuda\" or \"cuda:N\" (0 <= N < 64)");
    }
    if ((v = json_object_get(body, "suffix")) && !json_is_null(v)) {
        if (!json_is_string(v) || !valid_suffix(json_string_value(v)))
            return fail(param, paramlen, "suffix", err, errlen,
                        "suffix must be 1-64 characters of letters, digits, '-', '_' or '.'");
    }
    if ((v = json_object_get(body, "metadata")) && !json_is_null(v)) {
        if ((rc = parse_metadata(v, param, paramlen, err, errlen))) return rc;
    }
    jobspec_resources res;
    if ((rc = jobspec_resources_parse(body, &res, param, paramlen, err, errlen))) return rc;
    if (res.cpus > 0) s.threads = res.cpus; /* how either executor honours the CPUs a job asks for */

    /* names last: the body is known to be well-formed before the resolver looks anything up */
    char arch[16] = "";
    if ((rc = resolve(fn, ud, JOBSPEC_MODEL, model, "model", s.init_weights, arch, param, paramlen, err, errlen)))
        return rc;
    if (arch[0]) snprintf(s.arch, sizeof s.arch, "%s", arch);
    if ((rc = resolve(fn, ud, JOBSPEC_TRAINING_FILE, train, "training_file", s.train_data, arch, param, paramlen,
                      err, errlen)))
        return rc;
    if ((v = json_object_get(body, "validation_file")) && !json_is_null(v)) {
        if ((rc = resolve(fn, ud, JOBSPEC_VALIDATION_FILE, v, "validation_file", s.valid_data, arch, param,
                          paramlen, err, errlen)))
            return rc;
    }

    char trp[64] = "";
    if ((rc = tr_spec_validate(&s, trp, sizeof trp, err, errlen))) {
        map_param(&s, trp, param, paramlen);
        return -EINVAL;
    }
    *out = s;
    return 0;
}

static json_t *field_json(const tr_spec *s, const field *f)
{
    const char *src = (const char *)s + f->off;
    switch (f->kind) {
    case K_INT: return json_integer(*(const int *)src);
    case K_REAL: return json_real(*(const double *)src);
    case K_BOOL: return json_boolean(*(const int *)src);
    case K_SCHEDULE: return json_string(*(const int *)src ? "cosine" : "constant");
    case K_VARIANT: return json_string(*(const enum tr_variant *)src == TR_VARIANT_REFERENCE ? "reference" : "paper");
    case K_PRECISION: {
        int x = *(const int *)src;
        return json_string(x == TR_BF16 ? "bf16" : x == TR_TF32 ? "tf32" : "fp32");
    }
    case K_EARLY_STOP:
        return s->hp.es_patience ? json_pack("{s:i, s:f}", "patience", s->hp.es_patience, "min_delta", s->hp.es_min_delta)
                                 : json_null();
    }
    return json_null();
}

/* NULL when out of memory (or a real is not finite: no valid spec has one). */
static json_t *fields_json(const tr_spec *s, const field *fields, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++) {
        if (!(fields[i].methods & 1u << s->method)) continue;
        if (json_object_set_new(o, fields[i].json, field_json(s, &fields[i]))) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

json_t *jobspec_effective_json(const tr_spec *s)
{
    const char *type = jobspec_method_name(s->method);
    return json_pack("{s:s, s:{s:o}}", "type", type, type, "hyperparameters",
                     fields_json(s, hp_fields, NELEM(hp_fields)));
}

json_t *jobspec_extensions_json(const tr_spec *s)
{
    char dev[16];
    jobspec_device_name(s->device, dev, sizeof dev);
    return json_pack("{s:o, s:o, s:s}", "architecture", fields_json(s, arch_fields, NELEM(arch_fields)), "data",
                     fields_json(s, data_fields, NELEM(data_fields)), "device", dev);
}

int jobspec_json_depth(const char *text, size_t len)
{
    int depth = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max) max = depth;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return max;
}

/* ---- resources: what a batch scheduler is asked for (none of it reaches tr_spec but the CPUs) ---- */

static const struct { const char *json; int lo, hi; size_t off; } resource_ints[] = {
    {"cpus", 1, 1024, offsetof(jobspec_resources, cpus)},
    {"memory_mb", 1, 16777216, offsetof(jobspec_resources, memory_mb)},
    {"gpus", 0, 64, offsetof(jobspec_resources, gpus)},
    {"time_limit_minutes", 1, 5256000, offsetof(jobspec_resources, time_limit_minutes)},
};

int jobspec_resources_parse(const json_t *body, jobspec_resources *out, char *param, size_t paramlen, char *err,
                            size_t errlen)
{
    static const char *const names[] = {"cpus", "memory_mb", "gpus", "time_limit_minutes", "partition", NULL};
    memset(out, 0, sizeof *out);
    if (paramlen) param[0] = 0;
    if (errlen) err[0] = 0;
    const json_t *r = json_is_object(body) ? json_object_get(body, "resources") : NULL;
    if (!r || json_is_null(r)) return 0;
    if (!json_is_object(r)) return fail(param, paramlen, "resources", err, errlen, "resources must be an object");
    int rc = check_keys(r, "resources", names, NULL, 0, param, paramlen, err, errlen);
    if (rc) return rc;
    for (size_t i = 0; i < NELEM(resource_ints); i++) {
        const json_t *v = json_object_get(r, resource_ints[i].json);
        if (!v || json_is_null(v)) continue; /* null: not asked, as for every field of a body */
        char p[64];
        snprintf(p, sizeof p, "resources.%s", resource_ints[i].json);
        if (!json_is_integer(v)) return fail(param, paramlen, p, err, errlen, "%s must be an integer", p);
        json_int_t x = json_integer_value(v);
        if (x < resource_ints[i].lo || x > resource_ints[i].hi)
            return fail(param, paramlen, p, err, errlen, "%s must be in [%d, %d]", p, resource_ints[i].lo,
                        resource_ints[i].hi);
        *(int *)((char *)out + resource_ints[i].off) = (int)x;
    }
    const json_t *v = json_object_get(r, "partition");
    if (v && !json_is_null(v)) {
        /* util_valid_name's rules ([A-Za-z0-9._-], no leading '.'): safe on an sbatch command line */
        const char *x = json_string_value(v);
        if (!x || strlen(x) != json_string_length(v) || !util_valid_name(x, sizeof out->partition - 1))
            return fail(param, paramlen, "resources.partition", err, errlen,
                        "resources.partition must be 1-64 characters of letters, digits, '-', '_' or '.' "
                        "(not starting with '.')");
        snprintf(out->partition, sizeof out->partition, "%s", x);
    }
    return 0;
}

/* ---- device names ---- */

int jobspec_device_parse(const char *name, int *out)
{
    if (!name) return -EINVAL;
    if (strcmp(name, "cpu") == 0) { *out = -1; return 0; }
    if (strcmp(name, "cuda") == 0) { *out = TR_DEVICE_ANY; return 0; }
    if (strncmp(name, "cuda:", 5) != 0) return -EINVAL;
    const char *d = name + 5;
    int n = 0;
    /* one or two digits, no sign, no leading zero but "0" itself */
    if (!d[0] || strlen(d) > 2 || (d[0] == '0' && d[1])) return -EINVAL;
    for (; *d; d++) {
        if (*d < '0' || *d > '9') return -EINVAL;
        n = n * 10 + (*d - '0');
    }
    if (n >= 64) return -EINVAL;
    *out = n;
    return 0;
}

void jobspec_device_name(int device, char *buf, size_t len)
{
    if (device == TR_DEVICE_ANY) snprintf(buf, len, "cuda");
    else if (device < 0) snprintf(buf, len, "cpu");
    else snprintf(buf, len, "cuda:%d", device);
}

/* ---- the body of a resolved spec ---- */

json_t *jobspec_body_json(const tr_spec *s)
{
    if (s->seed > (uint64_t)INT64_MAX) return NULL;
    json_t *b = json_object(), *ext = jobspec_extensions_json(s);
    int bad = !b || !ext;
    bad = bad || json_object_set_new(b, "model", json_string(s->init_weights[0] ? s->init_weights : s->arch));
    bad = bad || json_object_set_new(b, "training_file", json_string(s->train_data));
    if (s->valid_data[0]) bad = bad || json_object_set_new(b, "validation_file", json_string(s->valid_data));
    bad = bad || json_object_set_new(b, "seed", json_integer((json_int_t)s->seed));
    char dev[16];
    jobspec_device_name(s->device, dev, sizeof dev);
    bad = bad || json_object_set_new(b, "device", json_string(dev));
    bad = bad || json_object_set_new(b, "method", jobspec_effective_json(s));
    bad = bad || json_object_set(b, "architecture", json_object_get(ext, "architecture"));
    bad = bad || json_object_set(b, "data", json_object_get(ext, "data"));
    json_decref(ext);
    if (bad) {
        json_decref(b);
        return NULL;
    }
    return b;
}

/* ---- the resolver of a process without a daemon ---- */

int jobspec_resolve_local(void *ud, enum jobspec_ref kind, const char *name, char *path, char *arch, char *err,
                          size_t errlen)
{
    (void)ud;
    if (kind != JOBSPEC_MODEL) {
        if (snprintf(path, TR_PATH_MAX, "%s", name) >= TR_PATH_MAX) {
            snprintf(err, errlen, "path too long");
            return -ENAMETOOLONG;
        }
        return 0;
    }
    if (tr_arch_known(name)) {
        snprintf(arch, 16, "%s", name);
        path[0] = 0;
        return 0;
    }
    if (access(name, R_OK) != 0) {
        snprintf(err, errlen, "model '%s' is neither an architecture (resnet18/34/50/20/32/56) nor a readable "
                              "safetensors file", name);
        return -ENOENT;
    }
    int in_ch, small;
    int rc = tr_weights_arch(name, arch, &in_ch, &small, err, errlen);
    if (rc == 0 && snprintf(path, TR_PATH_MAX, "%s", name) >= TR_PATH_MAX) {
        snprintf(err, errlen, "path too long");
        rc = -ENAMETOOLONG;
    }
    return rc;
}
