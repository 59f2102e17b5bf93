/* spec/progline.c — progress lines <-> tr_progress / tr_result (see progline.h). Pure; any thread.
 * Writers build a jansson object and dump it compact with 17 significant digits; the reader bounds
 * the line (length, nesting) before jansson sees it, then checks every key's type and range. */
#include "spec/progline.h"
#include "common/util.h"
#include "spec/jobspec.h"
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* null stands for NAN and the infinities: JSON has no such numbers. */
static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* A C string as a JSON string of at most cap - 1 bytes (bad UTF-8 bytes become \xNN). */
static json_t *str(const char *s, size_t cap)
{
    char buf[TR_PATH_MAX];
    if (cap > sizeof buf) cap = sizeof buf;
    util_utf8_clean(buf, cap, s ? s : "");
    return json_string(buf);
}

/* Takes the reference to o. 17 digits: every double reads back as the same double. */
static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(o);
    return s;
}

char *pl_progress_line(const tr_progress *p)
{
    switch (p->kind) {
    case TR_EV_STEP:
        return dump(json_pack("{s:s, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "type", "step", "step",
                              p->step, "total_steps", p->total_steps, "epoch", p->epoch, "epochs", p->epochs,
                              "train_loss", num(p->train_loss), "ce_loss", num(p->ce_loss), "contrastive_loss",
                              num(p->contrastive_loss), "lr", num(p->lr), "images_per_second",
                              num(p->images_per_second), "eta_seconds", num(p->eta_seconds)));
    case TR_EV_EPOCH:
        return dump(json_pack("{s:s, s:i, s:i, s:i, s:i, s:o, s:o}", "type", "epoch", "step", p->step,
                              "total_steps", p->total_steps, "epoch", p->epoch, "epochs", p->epochs, "valid_loss",
                              num(p->valid_loss), "valid_accuracy", num(p->valid_accuracy)));
    case TR_EV_CHECKPOINT:
        return dump(json_pack("{s:s, s:i, s:i, s:i, s:i, s:o}", "type", "checkpoint", "step", p->step,
                              "total_steps", p->total_steps, "epoch", p->epoch, "epochs", p->epochs, "path",
                              str(p->checkpoint_path, TR_PATH_MAX)));
    }
    return NULL;
}

char *pl_start_line(int resumed, int step)
{
    return dump(json_pack("{s:s, s:b, s:i}", "type", "start", "resumed", resumed, "step", step));
}

char *pl_summary_line(const tr_result *r)
{
    json_int_t peak = r->peak_bytes > (size_t)INT64_MAX ? INT64_MAX : (json_int_t)r->peak_bytes;
    return dump(json_pack("{s:s, s:s, s:i, s:i, s:o, s:o, s:o, s:i, s:I, s:b}", "type", "summary", "status",
                          r->stopped ? "stopped" : "succeeded", "steps", r->steps_done, "epochs", r->epochs_done,
                          "best_valid_accuracy", num(r->best_valid_accuracy), "final_valid_accuracy",
                          num(r->final_valid_accuracy), "final_valid_loss", num(r->final_valid_loss), "best_epoch",
                          r->best_epoch, "peak_bytes", peak, "early_stopped", r->early_stopped));
}

char *pl_error_line(int rc, const char *message)
{
    return dump(json_pack("{s:s, s:i, s:o}", "type", "error", "code", rc, "message", str(message, PL_MESSAGE_MAX)));
}

/* ---- reading: each getter is 0 or -EINVAL (absent, wrong type, out of range) ---- */

static int get_int(const json_t *o, const char *key, json_int_t lo, json_int_t hi, json_int_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) return -EINVAL;
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) return -EINVAL;
    *out = x;
    return 0;
}

/* A count (step, epoch...): an int >= 0. */
static int get_count(const json_t *o, const char *key, int *out)
{
    json_int_t x;
    if (get_int(o, key, 0, INT_MAX, &x)) return -EINVAL;
    *out = (int)x;
    return 0;
}

/* A number, or null for NAN (the writer's stand-in for any non-finite value). */
static int get_num(const json_t *o, const char *key, double *out)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_null(v)) { *out = NAN; return 0; }
    if (!json_is_number(v)) return -EINVAL;
    *out = json_number_value(v);
    return 0;
}

/* A string that fits dst (cap bytes with its NUL); jansson has already refused \u0000 in it. */
static int get_str(const json_t *o, const char *key, char *dst, size_t cap)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) >= cap) return -EINVAL;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int parse_progress(const json_t *o, enum tr_event kind, pl_record *r)
{
    tr_progress *p = &r->p;
    p->kind = kind;
    if (get_count(o, "step", &p->step) || get_count(o, "total_steps", &p->total_steps) ||
        get_count(o, "epoch", &p->epoch) || get_count(o, "epochs", &p->epochs))
        return -EINVAL;
    switch (kind) {
    case TR_EV_STEP:
        return get_num(o, "train_loss", &p->train_loss) || get_num(o, "ce_loss", &p->ce_loss) ||
                       get_num(o, "contrastive_loss", &p->contrastive_loss) || get_num(o, "lr", &p->lr) ||
                       get_num(o, "images_per_second", &p->images_per_second) ||
                       get_num(o, "eta_seconds", &p->eta_seconds)
                   ? -EINVAL
                   : 0;
    case TR_EV_EPOCH:
        return get_num(o, "valid_loss", &p->valid_loss) || get_num(o, "valid_accuracy", &p->valid_accuracy)
                   ? -EINVAL
                   : 0;
    case TR_EV_CHECKPOINT:
        return get_str(o, "path", r->path, sizeof r->path);
    }
    return -EINVAL;
}

static int parse_summary(const json_t *o, pl_record *r)
{
    const char *status = json_string_value(json_object_get(o, "status"));
    json_int_t peak;
    if (!status) return -EINVAL;
    if (strcmp(status, "stopped") == 0) r->res.stopped = 1;
    else if (strcmp(status, "succeeded") != 0) return -EINVAL;
    if (get_count(o, "steps", &r->res.steps_done) || get_count(o, "epochs", &r->res.epochs_done) ||
        get_num(o, "best_valid_accuracy", &r->res.best_valid_accuracy) ||
        get_num(o, "final_valid_accuracy", &r->res.final_valid_accuracy) ||
        get_num(o, "final_valid_loss", &r->res.final_valid_loss) || get_count(o, "best_epoch", &r->res.best_epoch) ||
        get_int(o, "peak_bytes", 0, SIZE_MAX < (uint64_t)INT64_MAX ? (json_int_t)SIZE_MAX : INT64_MAX, &peak))
        return -EINVAL;
    r->res.peak_bytes = (size_t)peak;
    json_t *es = json_object_get(o, "early_stopped"); /* optional: lines from before early stopping lack it */
    if (es && !json_is_boolean(es)) return -EINVAL;
    r->res.early_stopped = json_is_true(es);
    return 0;
}

static int parse_object(const json_t *o, pl_record *r)
{
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!type) return -EINVAL;
    if (strcmp(type, "step") == 0) { r->kind = PL_PROGRESS; return parse_progress(o, TR_EV_STEP, r); }
    if (strcmp(type, "epoch") == 0) { r->kind = PL_PROGRESS; return parse_progress(o, TR_EV_EPOCH, r); }
    if (strcmp(type, "checkpoint") == 0) { r->kind = PL_PROGRESS; return parse_progress(o, TR_EV_CHECKPOINT, r); }
    if (strcmp(type, "summary") == 0) { r->kind = PL_SUMMARY; return parse_summary(o, r); }
    if (strcmp(type, "start") == 0) {
        const json_t *v = json_object_get(o, "resumed");
        r->kind = PL_START;
        if (!json_is_boolean(v)) return -EINVAL;
        r->resumed = json_is_true(v);
        return get_count(o, "step", &r->p.step);
    }
    if (strcmp(type, "error") == 0) {
        json_int_t code;
        r->kind = PL_ERROR;
        if (get_int(o, "code", INT_MIN, -1, &code)) return -EINVAL;
        r->rc = (int)code;
        return get_str(o, "message", r->message, sizeof r->message);
    }
    return -EINVAL;
}

int pl_parse(const char *line, size_t len, pl_record *out)
{
    /* Bounds first, so hostile input costs at most one scan of PL_LINE_MAX bytes: a valid line is one
     * flat object, and jansson would otherwise stop a NUL byte only by its own rules. */
    if (!line || len > PL_LINE_MAX || memchr(line, 0, len) || jobspec_json_depth(line, len) != 1) return -EINVAL;
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return -EINVAL;
    }
    pl_record r; /* out stays untouched on failure */
    memset(&r, 0, sizeof r);
    int rc = parse_object(o, &r);
    if (rc == 0) {
        *out = r;
        if (out->kind == PL_PROGRESS && out->p.kind == TR_EV_CHECKPOINT) out->p.checkpoint_path = out->path;
    }
    json_decref(o);
    return rc;
}
