/* tests/unit/test_jobspec.c — spec/jobspec.c: the job body -> tr_spec mapping, strict validation
 * (unknown fields, wrong types, out-of-range values, each with its JSON path in param), the resolver
 * hook, the effective-hyperparameters output (parsing it back gives the same spec), the body of a
 * resolved spec (jobspec_body_json: parsed back, every field equal), hyperparameters.early_stopping,
 * "resources" and the depth scan.
 * Single-threaded cmocka binary; weights files for the init-weights cases go to a mkdtemp dir. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spec/jobspec.h"
#include "trainer/model.h"
#include "trainer/rng.h"

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

/* hyperparameters.early_stopping: off unless an object with a patience; strict inside; shown as null
 * or the object in the effective hyper-parameters. */
static void test_early_stopping(void **state)
{
    (void)state;
    const char *base = "\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\"";
    char b[1024];
#define ES(type, x) (snprintf(b, sizeof b, "{%s,\"method\":{\"type\":\"" type "\",\"" type "\":{\"hyperparameters\":" \
                              "{\"early_stopping\":%s}}}}", base, x), b)
    static const char *const off[] = {"null", "\"auto\""};
    for (size_t i = 0; i < 2; i++) {
        parsed p = parse(ES("core_tuning", off[i]));
        assert_int_equal(p.rc, 0);
        assert_int_equal(p.s.hp.es_patience, 0);
        assert_true(p.s.hp.es_min_delta == 0);
    }
    parsed p = parse(ES("core_tuning", "{\"patience\":2,\"min_delta\":0.01}"));
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.s.hp.es_patience, 2);
    assert_true(p.s.hp.es_min_delta == 0.01);
    p = parse(ES("ce_tuning", "{\"patience\":5,\"min_delta\":null}"));
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.s.hp.es_patience, 5);
    assert_true(p.s.hp.es_min_delta == 0);
    p = parse(ES("simclr", "{\"patience\":1,\"min_delta\":0}")); /* SimCLR: on its positive-pair accuracy */
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.s.hp.es_patience, 1);

    const char *es = "method.core_tuning.hyperparameters.early_stopping";
    char want[128];
#define WANT(leaf) (snprintf(want, sizeof want, "%s%s", es, leaf), want)
    expect_error(ES("core_tuning", "3"), es, "object");
    expect_error(ES("core_tuning", "[3]"), es, "object");
    expect_error(ES("core_tuning", "true"), es, "object");
    expect_error(ES("core_tuning", "{}"), WANT(".patience"), "required");
    expect_error(ES("core_tuning", "{\"min_delta\":0.1}"), WANT(".patience"), "required");
    expect_error(ES("core_tuning", "{\"patience\":null}"), WANT(".patience"), "required");
    expect_error(ES("core_tuning", "{\"patience\":2,\"mode\":\"max\"}"), WANT(".mode"), "unknown field");
    expect_error(ES("core_tuning", "{\"patience\":2.5}"), WANT(".patience"), "integer");
    expect_error(ES("core_tuning", "{\"patience\":\"2\"}"), WANT(".patience"), "integer");
    expect_error(ES("core_tuning", "{\"patience\":0}"), WANT(".patience"), "[1, 10000]");
    expect_error(ES("core_tuning", "{\"patience\":-1}"), WANT(".patience"), "[1, 10000]");
    expect_error(ES("core_tuning", "{\"patience\":10001}"), WANT(".patience"), "[1, 10000]");
    expect_error(ES("core_tuning", "{\"patience\":99999999999}"), WANT(".patience"), "[1, 10000]");
    expect_error(ES("core_tuning", "{\"patience\":2,\"min_delta\":\"0.1\"}"), WANT(".min_delta"), "number");
    expect_error(ES("core_tuning", "{\"patience\":2,\"min_delta\":-0.001}"), WANT(".min_delta"), "[0, 1]");
    expect_error(ES("core_tuning", "{\"patience\":2,\"min_delta\":1.5}"), WANT(".min_delta"), "[0, 1]");
    expect_error(ES("ce_tuning", "{\"patience\":2,\"min_delta\":2}"),
                 "method.ce_tuning.hyperparameters.early_stopping.min_delta", "[0, 1]");
#undef WANT
#undef ES

    /* the effective hyper-parameters: null when off, else the whole object (min_delta included) */
    p = parse("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\"}");
    json_t *m = jobspec_effective_json(&p.s);
    json_t *v = json_object_get(json_object_get(json_object_get(m, "core_tuning"), "hyperparameters"), "early_stopping");
    assert_true(v && json_is_null(v));
    json_decref(m);
    p = parse("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\",\"method\":{\"type\":\"simclr\","
              "\"simclr\":{\"hyperparameters\":{\"early_stopping\":{\"patience\":4}}}}}");
    assert_int_equal(p.rc, 0);
    m = jobspec_effective_json(&p.s);
    v = json_object_get(json_object_get(json_object_get(m, "simclr"), "hyperparameters"), "early_stopping");
    assert_int_equal(json_object_size(v), 2);
    assert_int_equal(json_integer_value(json_object_get(v, "patience")), 4);
    assert_true(json_is_real(json_object_get(v, "min_delta")) && json_real_value(json_object_get(v, "min_delta")) == 0);
    json_decref(m);

    /* tr_spec_validate on a spec filled in C names the tr_spec fields */
    tr_spec s;
    tr_spec_defaults(&s);
    snprintf(s.train_data, sizeof s.train_data, "x");
    char param[64], err[256];
    s.hp.es_min_delta = 0.1; /* without a patience */
    assert_int_equal(tr_spec_validate(&s, param, sizeof param, err, sizeof err), -EINVAL);
    assert_string_equal(param, "es_min_delta");
    s.hp.es_patience = 10001;
    assert_int_equal(tr_spec_validate(&s, param, sizeof param, err, sizeof err), -EINVAL);
    assert_string_equal(param, "es_patience");
    s.hp.es_patience = 3;
    s.hp.es_min_delta = NAN;
    assert_int_equal(tr_spec_validate(&s, param, sizeof param, err, sizeof err), -EINVAL);
    assert_string_equal(param, "es_min_delta");
    s.hp.es_min_delta = 1;
    assert_int_equal(tr_spec_validate(&s, param, sizeof param, err, sizeof err), 0);
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

/* ---- jobspec_body_json ---- */

static int same_real(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Every field of tr_spec but checkpoint_seconds, one by one (no memcmp: padding and the bytes after a
 * string's NUL are not the spec). The size check catches a field added to tr_spec and not here. */
static void assert_spec_equal(const tr_spec *a, const tr_spec *b)
{
    assert_int_equal(sizeof(tr_spec), 3256); /* a new field? compare it here and put it in jobspec_body_json */
    assert_string_equal(a->arch, b->arch);
    assert_int_equal(a->in_channels, b->in_channels);
    assert_int_equal(a->image_size, b->image_size);
    assert_int_equal(a->small_stem, b->small_stem);
    assert_string_equal(a->init_weights, b->init_weights);
    assert_string_equal(a->train_data, b->train_data);
    assert_string_equal(a->valid_data, b->valid_data);
    assert_int_equal(a->train_per_class, b->train_per_class);
    assert_int_equal(a->train_limit, b->train_limit);
    assert_int_equal(a->valid_limit, b->valid_limit);
    assert_true(same_real(a->valid_fraction, b->valid_fraction));
    assert_int_equal(a->valid_every, b->valid_every);
    assert_int_equal(a->augment, b->augment);
    assert_int_equal(a->method, b->method);
    assert_int_equal(a->variant, b->variant);
    assert_int_equal(a->hp.epochs, b->hp.epochs);
    assert_int_equal(a->hp.batch_size, b->hp.batch_size);
    assert_int_equal(a->hp.grad_accum, b->hp.grad_accum);
    assert_true(same_real(a->hp.lr, b->hp.lr));
    assert_true(same_real(a->hp.momentum, b->hp.momentum));
    assert_int_equal(a->hp.nesterov, b->hp.nesterov);
    assert_true(same_real(a->hp.weight_decay, b->hp.weight_decay));
    assert_int_equal(a->hp.cosine, b->hp.cosine);
    assert_int_equal(a->hp.warmup_steps, b->hp.warmup_steps);
    assert_true(same_real(a->hp.eta, b->hp.eta));
    assert_true(same_real(a->hp.mixup_alpha, b->hp.mixup_alpha));
    assert_true(same_real(a->hp.temperature, b->hp.temperature));
    assert_int_equal(a->hp.contrast_dim, b->hp.contrast_dim);
    assert_int_equal(a->hp.es_patience, b->hp.es_patience);
    assert_true(same_real(a->hp.es_min_delta, b->hp.es_min_delta));
    assert_true(a->seed == b->seed);
    assert_int_equal(a->threads, b->threads);
    assert_int_equal(a->device, b->device);
    assert_int_equal(a->precision, b->precision);
}

/* s -> body -> text -> body -> spec, with the CLI's resolver: s again (checkpoint_seconds aside). */
static void check_body_round_trip(const tr_spec *s)
{
    json_t *b = jobspec_body_json(s);
    assert_non_null(b);
    char *text = json_dumps(b, JSON_COMPACT); /* through text too: what a batch job's spec.json holds */
    assert_non_null(text);
    json_decref(b);
    json_error_t je;
    b = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    assert_non_null(b);
    tr_spec again;
    char param[128], err[512];
    memset(&again, 0x5A, sizeof again);
    int rc = jobspec_parse(b, jobspec_resolve_local, NULL, &again, param, sizeof param, err, sizeof err);
    if (rc) fail_msg("%s: %s: %s", text, param, err);
    assert_spec_equal(&again, s);
    tr_spec defaults;
    tr_spec_defaults(&defaults);
    assert_int_equal(again.checkpoint_seconds, defaults.checkpoint_seconds);
    json_decref(b);
    free(text);
}

/* A spec the way the daemon or the CLI gets one: a body parsed with the pass-through resolver. */
static tr_spec spec_of(const char *text)
{
    json_error_t je;
    json_t *body = json_loads(text, 0, &je);
    if (!body) fail_msg("bad test JSON: %s: %s", je.text, text);
    tr_spec s;
    char param[128], err[512];
    int rc = jobspec_parse(body, jobspec_resolve_local, NULL, &s, param, sizeof param, err, sizeof err);
    if (rc) fail_msg("%s: %s: %s", text, param, err);
    json_decref(body);
    return s;
}

static char tmpdir[] = "/tmp/test_jobspec.XXXXXX";

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_jobspec.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Weights of arch written by the trainer itself, as a job that starts from them would name them. */
static void write_weights(const char *path, const char *arch, int in_ch, int size, int small)
{
    model_config cfg = {.in_channels = in_ch, .image_size = size, .small_stem = small, .num_classes = 10,
                        .max_batch = 2};
    snprintf(cfg.arch, sizeof cfg.arch, "%s", arch);
    model *m = NULL;
    char err[256] = "";
    if (model_new(&m, &cfg, err, sizeof err)) fail_msg("model_new: %s", err);
    rng_t rng;
    rng_seed(&rng, 1);
    model_init(m, &rng);
    if (model_save(m, path, 0, err, sizeof err)) fail_msg("model_save: %s", err);
    model_free(m);
}

/* "device" and "precision": the accepted spellings, and every bad one a 400 naming its field. */
static void test_device_and_precision(void **state)
{
    (void)state;
    tr_spec s = spec_of("{\"model\":\"resnet20\",\"training_file\":\"x\"}");
    assert_int_equal(s.device, -1);
    assert_int_equal(s.precision, TR_FP32);
    s = spec_of("{\"model\":\"resnet20\",\"training_file\":\"x\",\"device\":\"cuda\"}");
    assert_int_equal(s.device, TR_DEVICE_ANY); /* any GPU: the scheduler picks, and it renders back as "cuda" */
    char name[16];
    jobspec_device_name(s.device, name, sizeof name);
    assert_string_equal(name, "cuda");
    s = spec_of("{\"model\":\"resnet20\",\"training_file\":\"x\",\"device\":\"cuda:0\"}");
    assert_int_equal(s.device, 0);
    s = spec_of("{\"model\":\"resnet20\",\"training_file\":\"x\",\"device\":\"cuda:63\"}");
    assert_int_equal(s.device, 63);
    s = spec_of("{\"model\":\"resnet20\",\"training_file\":\"x\",\"device\":\"cpu\",\"method\":{\"type\":"
                "\"core_tuning\",\"core_tuning\":{\"hyperparameters\":{\"precision\":\"fp32\"}}}}");
    assert_int_equal(s.device, -1);
    s = spec_of("{\"model\":\"resnet20\",\"training_file\":\"x\",\"device\":\"cuda\",\"method\":{\"type\":"
                "\"ce_tuning\",\"ce_tuning\":{\"hyperparameters\":{\"precision\":\"bf16\"}}}}");
    assert_int_equal(s.precision, TR_BF16);
    const char *bad_device[] = {"\"gpu\"", "\"cuda:\"", "\"cuda:64\"", "\"cuda:-1\"", "\"cuda:01\"", "\"cuda:1x\"",
                                "\"CUDA\"", "0", "true", "\"cuda:999\""};
    char text[512], param[128], err[512];
    for (size_t i = 0; i < sizeof bad_device / sizeof *bad_device; i++) {
        snprintf(text, sizeof text, "{\"model\":\"resnet20\",\"training_file\":\"x\",\"device\":%s}", bad_device[i]);
        json_t *b = json_loads(text, 0, NULL);
        assert_non_null(b);
        tr_spec t;
        assert_int_equal(jobspec_parse(b, jobspec_resolve_local, NULL, &t, param, sizeof param, err, sizeof err), -EINVAL);
        assert_string_equal(param, "device");
        json_decref(b);
    }
    /* fp16 is no precision of ours; tf32 and bf16 without a CUDA device mean nothing */
    const char *bad_precision[][2] = {{"\"cuda\"", "\"fp16\""}, {"\"cuda\"", "32"}, {"\"cpu\"", "\"tf32\""},
                                      {"\"cpu\"", "\"bf16\""}, {"\"cuda\"", "\"BF16\""}};
    for (size_t i = 0; i < sizeof bad_precision / sizeof *bad_precision; i++) {
        snprintf(text, sizeof text, "{\"model\":\"resnet20\",\"training_file\":\"x\",\"device\":%s,\"method\":"
                 "{\"type\":\"core_tuning\",\"core_tuning\":{\"hyperparameters\":{\"precision\":%s}}}}",
                 bad_precision[i][0], bad_precision[i][1]);
        json_t *b = json_loads(text, 0, NULL);
        assert_non_null(b);
        tr_spec t;
        assert_int_equal(jobspec_parse(b, jobspec_resolve_local, NULL, &t, param, sizeof param, err, sizeof err), -EINVAL);
        assert_string_equal(param, "method.core_tuning.hyperparameters.precision");
        json_decref(b);
    }
}

static void test_body_json_round_trips(void **state)
{
    (void)state;
    tr_spec s = spec_of("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\"}");
    check_body_round_trip(&s);

    /* every hyper-parameter off its default, each method, several architectures */
    s = spec_of("{\"model\":\"resnet56\",\"training_file\":\"/data/train.tar\",\"validation_file\":\"/data/v.tar\","
                "\"seed\":9007199254740993,\"suffix\":\"x\",\"metadata\":{\"k\":\"v\"},"
                "\"method\":{\"type\":\"core_tuning\",\"core_tuning\":{\"hyperparameters\":{"
                "\"n_epochs\":3,\"batch_size\":32,\"gradient_accumulation_steps\":2,\"learning_rate\":0.1,"
                "\"momentum\":0.85,\"nesterov\":false,\"weight_decay\":0.0005,\"lr_schedule\":\"constant\","
                "\"warmup_steps\":5,\"eta\":0.3,\"mixup_alpha\":0.7,\"temperature\":0.1,\"contrast_dim\":64,"
                "\"variant\":\"reference\",\"threads\":3,\"precision\":\"tf32\"}}},\"device\":\"cuda:7\","
                "\"architecture\":{\"in_channels\":3,\"image_size\":32,\"small_stem\":true},"
                "\"data\":{\"train_per_class\":10,\"train_limit\":256,\"valid_limit\":128,"
                "\"valid_fraction\":0.3,\"valid_every\":2,\"augment\":false}}");
    assert_int_equal(s.variant, TR_VARIANT_REFERENCE);
    assert_int_equal(s.device, 7);
    assert_int_equal(s.precision, TR_TF32);
    check_body_round_trip(&s);
    s.precision = TR_BF16; /* mixed precision: renders as "bf16" and parses back */
    check_body_round_trip(&s);
    s.variant = TR_VARIANT_PAPER;
    check_body_round_trip(&s);
    s = spec_of("{\"model\":\"resnet18\",\"training_file\":\"cifar10-train\",\"method\":{\"type\":\"ce_tuning\","
                "\"ce_tuning\":{\"hyperparameters\":{\"learning_rate\":0.3,\"batch_size\":8,\"momentum\":0,\"nesterov\":false}}},"
                "\"architecture\":{\"in_channels\":3,\"image_size\":64}}");
    assert_int_equal(s.method, TR_CE_TUNING);
    check_body_round_trip(&s);
    s = spec_of("{\"model\":\"resnet50\",\"training_file\":\"fashion-mnist-train\",\"method\":{\"type\":\"simclr\"}}");
    assert_int_equal(s.method, TR_SIMCLR);
    assert_true(s.hp.temperature == 0.5); /* SimCLR's own defaults survive */
    check_body_round_trip(&s);
    s = spec_of("{\"model\":\"resnet34\",\"training_file\":\"fashion-mnist-train\",\"method\":{\"type\":\"simclr\","
                "\"simclr\":{\"hyperparameters\":{\"temperature\":0.2,\"contrast_dim\":32,\"n_epochs\":7}}}}");
    check_body_round_trip(&s);
    /* early stopping, each method (min_delta absent = 0, an awkward double, the bounds) */
    s = spec_of("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\",\"method\":{\"type\":\"core_tuning\","
                "\"core_tuning\":{\"hyperparameters\":{\"early_stopping\":{\"patience\":3}}}}}");
    assert_int_equal(s.hp.es_patience, 3);
    assert_true(s.hp.es_min_delta == 0);
    check_body_round_trip(&s);
    s = spec_of("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\",\"method\":{\"type\":\"ce_tuning\","
                "\"ce_tuning\":{\"hyperparameters\":{\"early_stopping\":{\"patience\":10000,\"min_delta\":1}}}}}");
    assert_true(s.hp.es_min_delta == 1.0);
    check_body_round_trip(&s);
    s = spec_of("{\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\",\"method\":{\"type\":\"simclr\","
                "\"simclr\":{\"hyperparameters\":{\"early_stopping\":{\"patience\":1,\"min_delta\":0.001}}}}}");
    assert_int_equal(s.hp.es_patience, 1);
    check_body_round_trip(&s);
    s.hp.es_min_delta = 1.0 / 3.0;
    check_body_round_trip(&s);

    /* specs filled in C (the daemon settles threads and seed after parsing) */
    for (int i = 0; i < TR_N_ARCHS; i++) {
        tr_spec_defaults(&s);
        snprintf(s.arch, sizeof s.arch, "%s", tr_arch_names[i]);
        snprintf(s.train_data, sizeof s.train_data, "fashion-mnist-train");
        s.seed = 123456789u + (unsigned)i;
        s.threads = i;
        s.hp.lr = 1.0 / 3.0;           /* needs all 17 digits */
        s.hp.weight_decay = 1e-300;
        s.valid_fraction = 0.1 + 0.2;
        s.checkpoint_seconds = 17;     /* not in a body: parsing gives the default, checked there */
        s.method = (enum tr_method)(i % 3);
        if (s.method != TR_CE_TUNING) s.hp.temperature = 0.25; /* ce_tuning's fields it has not: defaults */
        check_body_round_trip(&s);
    }

    /* starting from weights: "model" is the file, its architecture read off it again */
    char w20[256], w18[256];
    snprintf(w20, sizeof w20, "%s/resnet20.safetensors", tmpdir);
    snprintf(w18, sizeof w18, "%s/resnet18.safetensors", tmpdir);
    write_weights(w20, "resnet20", 1, 28, 0);
    write_weights(w18, "resnet18", 3, 32, 1);
    char body[2048];
    snprintf(body, sizeof body, "{\"model\":\"%s\",\"training_file\":\"fashion-mnist-train\","
             "\"validation_file\":\"fashion-mnist-test\",\"method\":{\"type\":\"core_tuning\"}}", w20);
    s = spec_of(body);
    assert_string_equal(s.init_weights, w20);
    assert_string_equal(s.arch, "resnet20");
    check_body_round_trip(&s);
    snprintf(body, sizeof body, "{\"model\":\"%s\",\"training_file\":\"cifar10-train\","
             "\"method\":{\"type\":\"ce_tuning\",\"ce_tuning\":{\"hyperparameters\":{\"n_epochs\":2}}},"
             "\"architecture\":{\"in_channels\":3,\"image_size\":32,\"small_stem\":true}}", w18);
    s = spec_of(body);
    assert_string_equal(s.arch, "resnet18");
    check_body_round_trip(&s);

    /* no body carries a seed jansson cannot hold */
    s.seed = (uint64_t)INT64_MAX + 1;
    assert_null(jobspec_body_json(&s));
}

/* ---- resources ---- */

static int resources_of(const char *text, jobspec_resources *r, char *param, size_t paramlen)
{
    json_error_t je;
    json_t *body = json_loads(text, 0, &je);
    if (!body) fail_msg("bad test JSON: %s: %s", je.text, text);
    char err[256];
    int rc = jobspec_resources_parse(body, r, param, paramlen, err, sizeof err);
    if (rc && !err[0]) fail_msg("no reason given for %s", text);
    json_decref(body);
    return rc;
}

static void test_resources(void **state)
{
    (void)state;
    jobspec_resources r;
    char param[128];
    memset(&r, 1, sizeof r);
    assert_int_equal(resources_of("{}", &r, param, sizeof param), 0);
    assert_int_equal(r.cpus + r.memory_mb + r.gpus + r.time_limit_minutes, 0);
    assert_string_equal(r.partition, "");
    assert_int_equal(resources_of("{\"resources\":null}", &r, param, sizeof param), 0);
    assert_int_equal(resources_of("{\"resources\":{}}", &r, param, sizeof param), 0);
    assert_int_equal(resources_of("{\"resources\":{\"cpus\":8,\"memory_mb\":16384,\"gpus\":1,"
                                  "\"time_limit_minutes\":90,\"partition\":\"gpu-a100.x_1\"}}", &r, param,
                                  sizeof param), 0);
    assert_int_equal(r.cpus, 8);
    assert_int_equal(r.memory_mb, 16384);
    assert_int_equal(r.gpus, 1);
    assert_int_equal(r.time_limit_minutes, 90);
    assert_string_equal(r.partition, "gpu-a100.x_1");
    /* the bounds themselves, and null for one key (= not asked, like any field of the body) */
    char p64[65];
    memset(p64, 'p', 64);
    p64[64] = 0;
    char b[512];
    snprintf(b, sizeof b, "{\"resources\":{\"cpus\":1024,\"memory_mb\":16777216,\"gpus\":64,"
             "\"time_limit_minutes\":5256000,\"partition\":\"%s\"}}", p64);
    assert_int_equal(resources_of(b, &r, param, sizeof param), 0);
    assert_int_equal(r.cpus, 1024);
    assert_int_equal(r.memory_mb, 16777216);
    assert_int_equal(r.gpus, 64);
    assert_int_equal(r.time_limit_minutes, 5256000);
    assert_string_equal(r.partition, p64);
    assert_int_equal(resources_of("{\"resources\":{\"cpus\":1,\"memory_mb\":1,\"gpus\":0,"
                                  "\"time_limit_minutes\":1,\"partition\":null}}", &r, param, sizeof param), 0);
    assert_int_equal(r.cpus + r.memory_mb + r.time_limit_minutes, 3);

    static const struct { const char *resources, *param; } bad[] = {
        {"[]", "resources"}, {"\"big\"", "resources"}, {"4", "resources"}, {"true", "resources"},
        {"{\"cpu\":1}", "resources.cpu"}, {"{\"cpus\":1,\"nodes\":2}", "resources.nodes"},
        {"{\"cpus\":0}", "resources.cpus"}, {"{\"cpus\":1025}", "resources.cpus"},
        {"{\"cpus\":-1}", "resources.cpus"}, {"{\"cpus\":2.0}", "resources.cpus"},
        {"{\"cpus\":\"2\"}", "resources.cpus"}, {"{\"cpus\":true}", "resources.cpus"},
        {"{\"cpus\":99999999999999}", "resources.cpus"}, {"{\"cpus\":[1]}", "resources.cpus"},
        {"{\"memory_mb\":0}", "resources.memory_mb"}, {"{\"memory_mb\":16777217}", "resources.memory_mb"},
        {"{\"memory_mb\":\"1G\"}", "resources.memory_mb"},
        {"{\"gpus\":-1}", "resources.gpus"}, {"{\"gpus\":65}", "resources.gpus"},
        {"{\"gpus\":1.5}", "resources.gpus"},
        {"{\"time_limit_minutes\":0}", "resources.time_limit_minutes"},
        {"{\"time_limit_minutes\":5256001}", "resources.time_limit_minutes"},
        {"{\"time_limit_minutes\":\"1:00:00\"}", "resources.time_limit_minutes"},
        {"{\"partition\":\"\"}", "resources.partition"}, {"{\"partition\":\"a b\"}", "resources.partition"},
        {"{\"partition\":\"a/b\"}", "resources.partition"}, {"{\"partition\":\"a;b\"}", "resources.partition"},
        {"{\"partition\":\"-p\\u00e9\"}", "resources.partition"}, {"{\"partition\":\".hidden\"}", "resources.partition"},
        {"{\"partition\":7}", "resources.partition"}, {"{\"partition\":[\"gpu\"]}", "resources.partition"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(b, sizeof b, "{\"resources\":%s}", bad[i].resources);
        if (resources_of(b, &r, param, sizeof param) != -EINVAL) fail_msg("accepted %s", b);
        if (strcmp(param, bad[i].param) != 0) fail_msg("param '%s' for %s, wanted '%s'", param, b, bad[i].param);
    }
    snprintf(b, sizeof b, "{\"resources\":{\"partition\":\"%sp\"}}", p64); /* 65 characters */
    assert_int_equal(resources_of(b, &r, param, sizeof param), -EINVAL);
    assert_string_equal(param, "resources.partition");

    /* through jobspec_parse: a bad object fails the body naming the field; cpus sets the threads */
    const char *base = "\"model\":\"resnet20\",\"training_file\":\"fashion-mnist-train\"";
    snprintf(b, sizeof b, "{%s,\"resources\":{\"gpus\":65}}", base);
    expect_error(b, "resources.gpus", "[0, 64]");
    snprintf(b, sizeof b, "{%s,\"resources\":{\"queue\":\"x\"}}", base);
    expect_error(b, "resources.queue", "unknown field");
    snprintf(b, sizeof b, "{%s,\"resources\":{\"cpus\":6,\"partition\":\"batch\"}}", base);
    parsed p = parse(b);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.s.threads, 6);
    snprintf(b, sizeof b, "{%s,\"method\":{\"type\":\"ce_tuning\",\"ce_tuning\":{\"hyperparameters\":"
             "{\"threads\":2}}},\"resources\":{\"cpus\":4}}", base);
    p = parse(b);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.s.threads, 4);
    snprintf(b, sizeof b, "{%s,\"method\":{\"type\":\"ce_tuning\",\"ce_tuning\":{\"hyperparameters\":"
             "{\"threads\":2}}},\"resources\":{\"memory_mb\":100}}", base);
    p = parse(b);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.s.threads, 2);
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
        cmocka_unit_test(test_early_stopping),
        cmocka_unit_test(test_depth),
        cmocka_unit_test_setup_teardown(test_body_json_round_trips, setup_tmp, teardown_tmp),
        cmocka_unit_test(test_resources),
        cmocka_unit_test(test_device_and_precision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
