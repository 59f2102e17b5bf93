/* tests/fuzz/fuzz_jobspec.c — the job spec (spec/jobspec.h) on any bytes, the way the daemon reads a
 * POST /v1/fine_tuning/jobs body: the depth scan on the raw text, jansson with duplicate keys refused,
 * then jobspec_parse with a resolver that accepts every name (so validation goes past the references).
 * A body that parses must render (effective hyperparameters, extensions) and parse back to the same
 * effective values: what a job object shows is always a body the daemon accepts. */
#include "tests/fuzz/fuzz.h"
#include "spec/jobspec.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define DEPTH_MAX 32 /* the daemon's default --json-depth-max */

/* Architecture names pass as themselves; any other model name is "weights of a resnet20"; files are
 * their names. Over-long names are refused as the real resolvers do. */
static int resolve(void *ud, enum jobspec_ref kind, const char *name, char *path, char *arch, char *err, size_t errlen)
{
    (void)ud;
    if (strlen(name) >= TR_PATH_MAX) {
        snprintf(err, errlen, "name too long");
        return -ENAMETOOLONG;
    }
    if (kind == JOBSPEC_MODEL) {
        if (tr_arch_known(name)) {
            snprintf(arch, 16, "%s", name);
            path[0] = 0;
        } else {
            snprintf(arch, 16, "resnet20");
            snprintf(path, TR_PATH_MAX, "%s", name);
        }
        return 0;
    }
    snprintf(path, TR_PATH_MAX, "%s", name);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (jobspec_json_depth((const char *)data, size) > DEPTH_MAX) return 0;
    json_error_t je;
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (!body) return 0;
    tr_spec s;
    char param[128], err[512];
    int rc = jobspec_parse(body, resolve, NULL, &s, param, sizeof param, err, sizeof err);
    if (rc == 0) {
        json_t *m = jobspec_effective_json(&s), *ext = jobspec_extensions_json(&s);
        if (!m || !ext) fz_die("jobspec: rendering a parsed spec failed");
        json_t *again = json_pack("{s:O, s:O, s:O, s:O}", "model", json_object_get(body, "model"),
                                  "training_file", json_object_get(body, "training_file"), "method", m,
                                  "architecture", json_object_get(ext, "architecture"));
        if (!again) fz_die("jobspec: cannot build the round-trip body");
        json_object_set(again, "data", json_object_get(ext, "data"));
        json_t *v = json_object_get(body, "validation_file");
        if (v) json_object_set(again, "validation_file", v);
        tr_spec s2;
        rc = jobspec_parse(again, resolve, NULL, &s2, param, sizeof param, err, sizeof err);
        if (rc != 0) {
            char *text = json_dumps(again, JSON_COMPACT);
            fz_die("jobspec: the effective body does not parse back: %s: %s (%s)", param, err, text ? text : "?");
        }
        json_t *m2 = jobspec_effective_json(&s2), *ext2 = jobspec_extensions_json(&s2);
        if (!json_equal(m, m2) || !json_equal(ext, ext2)) {
            char *a = json_dumps(m, JSON_COMPACT), *b = json_dumps(m2, JSON_COMPACT);
            fz_die("jobspec: effective values change when parsed back: %s -> %s", a ? a : "?", b ? b : "?");
        }
        json_decref(m2);
        json_decref(ext2);
        json_decref(again);
        json_decref(m);
        json_decref(ext);
    } else if (rc != -EINVAL && rc != -ENAMETOOLONG) {
        fz_die("jobspec: unexpected code %d (%s: %s)", rc, param, err);
    } else if (!err[0]) {
        fz_die("jobspec: error %d without a reason", rc);
    }
    json_decref(body);
    return 0;
}
