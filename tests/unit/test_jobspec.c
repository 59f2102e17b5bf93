/* tests/unit/test_jobspec.c — spec/jobspec.c: the job body -> tr_spec mapping, strict validation
 * (unknown fields, wrong types, out-of-range values, each with its JSON path in param), the resolver
 * hook, the effective-hyperparameters output (parsing it back gives the same spec) and the depth scan.
 * Single-threaded cmocka binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "spec/jobspec.h"

static int resolver(void *ud, enum jobspec_ref kind, const char *name, char *path, char *arch, char *err,
                    size_t errlen)
{
    (void)ud;
    if (kind == JOBSPEC_MODEL) {
        if (strcmp(name, "resnet20") == 0 || strcmp(name, "resnet50") == 0) {
            path[0] = 0;
            snprintf(arch, 16, "%s", name);
            return 0;
        }
        if (strcmp(name, "ft:resnet20:x:ftjob-1") == 0) {
            snprintf(path, TR_PATH_MAX, "/data/jobs/ftjob-1/final.safetensors");
            snprintf(arch, 16, "resnet20");
            return 0;
        }
        snprintf(err, errlen, "model '%s' does not exist", name);
        return -ENOENT;
    }
    if (strcmp(name, "fashion-mnist-train") == 0 || strcmp(name, "fashion-mnist-test") == 0) {
        snprintf(path, TR_PATH_MAX, "%s", name);
        return 0;
    }
    snprintf(err, errlen, "file '%s' does not exist", name);
    return -ENOENT;
}

typedef struct parsed {
    int rc;
    tr_spec s;
    char param[128], err[256];
} parsed;

static parsed parse(const char *text)
{
    parsed p;
    memset(&p, 0, sizeof p);
    json_error_t je;
    json_t *body = json_loads(text, 0, &je);
    if (!body) fail_msg("bad test JSON: %s: %s", je.text, text);
    p.rc = jobspec_parse(body, resolver, NULL, &p.s, p.param, sizeof p.param, p.err, sizeof p.err);
    json_decref(body);
    return p;
}

static void expect_error(const char *text, const char *param, const char *in_message)
{
    parsed p = parse(text);
    if (p.rc == 0) fail_msg("accepted: %s", text);
    if (strcmp(p.param, param) != 0) fail_msg("param '%s', wanted '%s' (%s) for %s", p.param, param, p.err, text);
    if (!strstr(p.err, in_message)) fail_msg("message '%s' lacks '%s'", p.err, in_message);
}

static void test_minimal_body_gets_defaults(void **state)
{
    (void)state;
    parsed p = parse("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\"}");
    assert_int_equal(p.rc, 0);
    tr_spec d;
    tr_spec_defaults(&d);
    assert_string_equal(p.s.arch, "resnet20");
    assert_string_equal(p.s.train_data, "fashion-mnist-train");
    assert_string_equal(p.s.valid_data, "");
    assert_string_equal(p.s.init_weights, "");
    assert_int_equal(p.s.method, TR_CORE_TUNING);
    assert_int_equal(p.s.hp.epochs, d.hp.epochs);
    assert_true(p.s.hp.lr == d.hp.lr);
}

static void test_full_body(void **state)
{
    (void)state;
    parsed p = parse("{\"model\":\"ft:resnet20:x:ftjob-1\",\"training_file\":\"fashion-mnist-train\","
                     "\"validation_file\":\"fashion-mnist-test\",\"seed\":7,\"suffix\":\"mine-1\","
                     "\"metadata\":{\"k\":\"v\"},"
                     "\"method\":{\"type\":\"core_tuning\",\"core_tuning\":{\"hyperparameters\":{"
                     "\"n_epochs\":3,\"batch_size\":32,\"gradient_accumulation_steps\":2,\"learning_rate\":0.05,"
                     "\"momentum\":0.8,\"nesterov\":false,\"weight_decay\":0.001,\"lr_schedule\":\"constant\","
                     "\"warmup_steps\":5,\"eta\":0.2,\"mixup_alpha\":0.5,\"temperature\":0.1,\"contrast_dim\":64,"
                     "\"variant\":\"reference\",\"threads\":1}}},"
                     "\"architecture\":{\"in_channels\":1,\"image_size\":28,\"small_stem\":true},"
                     "\"data\":{\"train_per_class\":10,\"train_limit\":256,\"valid_limit\":128,"
                     "\"valid_fraction\":0.2,\"augment\":true}}");
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.s.init_weights, "/data/jobs/ftjob-1/final.safetensors");
    assert_string_equal(p.s.valid_data, "fashion-mnist-test");
    assert_int_equal(p.s.seed, 7);
    assert_int_equal(p.s.hp.epochs, 3);
    assert_int_equal(p.s.hp.batch_size, 32);
    assert_int_equal(p.s.hp.grad_accum, 2);
    assert_true(p.s.hp.lr == 0.05);
    assert_true(p.s.hp.momentum == 0.8);
    assert_int_equal(p.s.hp.nesterov, 0);
    assert_int_equal(p.s.hp.cosine, 0);
    assert_int_equal(p.s.hp.warmup_steps, 5);
    assert_true(p.s.hp.eta == 0.2);
    assert_int_equal(p.s.hp.contrast_dim, 64);
    assert_int_equal(p.s.variant, TR_VARIANT_REFERENCE);
    assert_int_equal(p.s.threads, 1);
    assert_int_equal(p.s.small_stem, 1);
    assert_int_equal(p.s.train_per_class, 10);
    assert_int_equal(p.s.train_limit, 256);
    assert_int_equal(p.s.valid_limit, 128);
    assert_true(p.s.valid_fraction == 0.2);
    assert_int_equal(p.s.augment, 1);
}

static void test_ce_tuning_and_auto(void **state)
{
    (void)state;
    parsed p = parse("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\","
                     "\"method\":{\"type\":\"ce_tuning\",\"ce_tuning\":{\"hyperparameters\":{\"n_epochs\":\"auto\","
                     "\"learning_rate\":0.5}}}}");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.s.method, TR_CE_TUNING);
    assert_true(p.s.hp.lr == 0.5);
}

static void test_bad_inputs_name_their_field(void **state)
{
    (void)state;
    const char *base = "\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\"";
    char b[1024];
#define HP(x) (snprintf(b, sizeof b, "{%s,\"method\":{\"type\":\"core_tuning\",\"core_tuning\":{\"hyperparameters\":{%s}}}}", base, x), b)
#define TOP(x) (snprintf(b, sizeof b, "{%s,%s}", base, x), b)
    expect_error("[]", "", "object");
    expect_error("{\"training_file\":\"fashion-mnist-train\"}", "model", "required");
    expect_error("{\"model\":\"resnet20\"}", "training_file", "required");
    expect_error(TOP("\"bogus\":1,\"other\":2"), "bogus", "'bogus', 'other'");
    expect_error(HP("\"bogus\":1"), "method.core_tuning.hyperparameters.bogus", "unknown field");
    expect_error(HP("\"learning_rate\":\"fast\""), "method.core_tuning.hyperparameters.learning_rate", "number");
    expect_error(HP("\"n_epochs\":1.5"), "method.core_tuning.hyperparameters.n_epochs", "integer");
    expect_error(HP("\"n_epochs\":99999999999"), "method.core_tuning.hyperparameters.n_epochs", "range");
    expect_error(HP("\"nesterov\":1"), "method.core_tuning.hyperparameters.nesterov", "true or false");
    expect_error(HP("\"lr_schedule\":\"step\""), "method.core_tuning.hyperparameters.lr_schedule", "cosine");
    expect_error(HP("\"variant\":\"x\""), "method.core_tuning.hyperparameters.variant", "paper");
    expect_error(HP("\"learning_rate\":-1"), "method.core_tuning.hyperparameters.learning_rate", "");
    expect_error(HP("\"batch_size\":1"), "method.core_tuning.hyperparameters.batch_size", "");
    expect_error(TOP("\"method\":{\"type\":\"dpo\"}"), "method.type", "core_tuning");
    expect_error(TOP("\"method\":{\"type\":\"ce_tuning\",\"ce_tuning\":{\"hyperparameters\":{\"eta\":0.1}}}"),
                 "method.ce_tuning.hyperparameters.eta", "does not apply to method ce_tuning");
    expect_error(TOP("\"method\":{\"type\":\"ce_tuning\",\"core_tuning\":{}}"), "method.core_tuning", "method.type");
    expect_error(TOP("\"method\":{\"type\":\"core_tuning\",\"core_tuning\":{\"hp\":{}}}"), "method.core_tuning.hp",
                 "unknown field");
    expect_error(TOP("\"architecture\":{\"in_channels\":2}"), "architecture.in_channels", "");
    expect_error(TOP("\"architecture\":{\"depth\":2}"), "architecture.depth", "unknown");
    expect_error(TOP("\"data\":{\"train_limit\":\"many\"}"), "data.train_limit", "integer");
    expect_error(TOP("\"seed\":-3"), "seed", "non-negative");
    expect_error(TOP("\"suffix\":\"a:b\""), "suffix", "letters");
    expect_error(TOP("\"metadata\":{\"k\":1}"), "metadata.k", "string");
    expect_error("{\"model\":\"gpt-4\",\"training_file\":\"fashion-mnist-train\"}", "model", "does not exist");
    expect_error("{\"model\":\"resnet20\",\"training_file\":\"/etc/passwd\"}", "training_file", "does not exist");
    expect_error("{\"model\":\"resnet20\",\"training_file\":\"\"}", "training_file", "non-empty");
    expect_error("{\"model\":7,\"training_file\":\"fashion-mnist-train\"}", "model", "string");
#undef HP
#undef TOP
}

static void test_resolver_code_passes_through(void **state)
{
    (void)state;
    parsed p = parse("{\"model\":\"nope\",\"training_file\":\"fashion-mnist-train\"}");
    assert_int_equal(p.rc, -ENOENT);
    p = parse("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\",\"x\":1}");
    assert_int_equal(p.rc, -EINVAL);
}

static void test_effective_json_round_trips(void **state)
{
    (void)state;
    parsed p = parse("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\",\"method\":{\"type\":"
                     "\"core_tuning\",\"core_tuning\":{\"hyperparameters\":{\"n_epochs\":2,\"learning_rate\":0.25,"
                     "\"variant\":\"reference\"}}},\"data\":{\"train_limit\":64}}");
    assert_int_equal(p.rc, 0);
    json_t *m = jobspec_effective_json(&p.s);
    json_t *ext = jobspec_extensions_json(&p.s);
    assert_non_null(m);
    assert_non_null(ext);
    json_t *hp = json_object_get(json_object_get(json_object_get(m, "core_tuning"), "hyperparameters"), "learning_rate");
    assert_true(json_real_value(hp) == 0.25);
    json_t *body = json_pack("{s:s, s:s, s:O, s:O, s:O}", "model", "resnet20", "training_file",
                             "fashion-mnist-train", "method", m, "architecture", json_object_get(ext, "architecture"),
                             "data", json_object_get(ext, "data"));
    tr_spec again;
    char param[128], err[256];
    assert_int_equal(jobspec_parse(body, resolver, NULL, &again, param, sizeof param, err, sizeof err), 0);
    assert_memory_equal(&again.hp, &p.s.hp, sizeof again.hp);
    assert_int_equal(again.variant, TR_VARIANT_REFERENCE);
    assert_int_equal(again.train_limit, 64);
    json_decref(body);
    json_decref(m);
    json_decref(ext);

    /* ce_tuning shows no core-only fields */
    p = parse("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\",\"method\":{\"type\":\"ce_tuning\"}}");
    assert_int_equal(p.rc, 0);
    m = jobspec_effective_json(&p.s);
    json_t *h = json_object_get(json_object_get(m, "ce_tuning"), "hyperparameters");
    assert_non_null(h);
    assert_null(json_object_get(h, "eta"));
    assert_non_null(json_object_get(h, "n_epochs"));
    json_decref(m);
}

static void test_depth(void **state)
{
    (void)state;
    assert_int_equal(jobspec_json_depth("{}", 2), 1);
    assert_int_equal(jobspec_json_depth("{\"a\":[[1]]}", 11), 3);
    const char *s = "{\"a\":\"[[[[\\\"[[\"}";
    assert_int_equal(jobspec_json_depth(s, strlen(s)), 1);
    assert_int_equal(jobspec_json_depth("", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_body_gets_defaults),
        cmocka_unit_test(test_full_body),
        cmocka_unit_test(test_ce_tuning_and_auto),
        cmocka_unit_test(test_bad_inputs_name_their_field),
        cmocka_unit_test(test_resolver_code_passes_through),
        cmocka_unit_test(test_effective_json_round_trips),
        cmocka_unit_test(test_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
