/* tests/unit/test_progline.c — spec/progline.c: every kind of line written and read back with every
 * field equal (doubles bit for bit, non-finite ones as NAN), strings that do not fit or are not UTF-8,
 * and hostile lines (not JSON, wrong types, missing keys, unknown types, huge numbers, NUL bytes, deep
 * nesting, a 1 MB line, every prefix and many byte flips of valid lines) refused with -EINVAL and the
 * record left untouched. Single-threaded cmocka binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec/progline.h"

/* The same double, or both NAN (bits: 0.0 and -0.0 differ). */
static int same(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

/* A non-finite value is written as null and read back as NAN. */
static double expect(double x) { return isfinite(x) ? x : NAN; }

static void assert_same(double got, double want, const char *what)
{
    if (!same(got, expect(want))) fail_msg("%s: got %.17g, wanted %.17g", what, got, expect(want));
}

/* Parse a line the writer made (freeing it) into *r, expecting success. Into the caller's record, not
 * a returned copy: a checkpoint's p.checkpoint_path points into the record pl_parse filled. */
static void parse_into(char *line, pl_record *r)
{
    assert_non_null(line);
    assert_null(strchr(line, '\n'));
    assert_true(strlen(line) <= PL_LINE_MAX);
    int rc = pl_parse(line, strlen(line), r);
    if (rc) fail_msg("refused its own line: %s", line);
    free(line);
}

static pl_record parse_ok(char *line)
{
    pl_record r;
    parse_into(line, &r);
    return r;
}

static void check_progress(const tr_progress *in)
{
    pl_record r;
    parse_into(pl_progress_line(in), &r);
    assert_int_equal(r.kind, PL_PROGRESS);
    assert_int_equal(r.p.kind, in->kind);
    assert_int_equal(r.p.step, in->step);
    assert_int_equal(r.p.total_steps, in->total_steps);
    assert_int_equal(r.p.epoch, in->epoch);
    assert_int_equal(r.p.epochs, in->epochs);
    assert_same(r.p.train_loss, in->train_loss, "train_loss");
    assert_same(r.p.ce_loss, in->ce_loss, "ce_loss");
    assert_same(r.p.contrastive_loss, in->contrastive_loss, "contrastive_loss");
    assert_same(r.p.lr, in->lr, "lr");
    assert_same(r.p.images_per_second, in->images_per_second, "images_per_second");
    assert_same(r.p.eta_seconds, in->eta_seconds, "eta_seconds");
    assert_same(r.p.valid_loss, in->valid_loss, "valid_loss");
    assert_same(r.p.valid_accuracy, in->valid_accuracy, "valid_accuracy");
    if (in->kind == TR_EV_CHECKPOINT) {
        assert_ptr_equal(r.p.checkpoint_path, r.path); /* into the record itself, not a dead copy */
        assert_string_equal(r.path, in->checkpoint_path);
    } else {
        assert_null(r.p.checkpoint_path);
    }
}

static void test_progress_round_trip(void **state)
{
    (void)state;
    tr_progress step = {.kind = TR_EV_STEP, .step = 7, .total_steps = 1200, .epoch = 1, .epochs = 100,
                        .train_loss = 2.3025850929940459, .ce_loss = 1.0 / 3.0, .contrastive_loss = NAN,
                        .lr = 0.05, .images_per_second = INFINITY, .eta_seconds = -0.0};
    check_progress(&step);
    const double hard[] = {0.1, 1e-300, 4.9406564584124654e-324, DBL_MAX, -DBL_MAX, 123456789.0, -0.0,
                           0.0, 1.0, 2.2250738585072014e-308, 0.30000000000000004, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof hard / sizeof *hard; i++) {
        step.train_loss = step.ce_loss = step.contrastive_loss = step.lr = step.images_per_second =
            step.eta_seconds = hard[i];
        check_progress(&step);
    }
    /* doubles from all over the range, bit for bit */
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (int i = 0; i < 2000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double d;
        memcpy(&d, &x, sizeof d);
        step.lr = d;
        step.train_loss = (double)(x >> 11) / 9007199254740992.0;
        check_progress(&step);
    }
    tr_progress epoch = {.kind = TR_EV_EPOCH, .step = 12, .total_steps = 12, .epoch = 2, .epochs = 2,
                         .valid_loss = 1.8830554292827868, .valid_accuracy = 0.234375};
    check_progress(&epoch);
    epoch.valid_loss = NAN;
    check_progress(&epoch);
    tr_progress ck = {.kind = TR_EV_CHECKPOINT, .step = 6, .total_steps = 12, .epoch = 1, .epochs = 2,
                      .checkpoint_path = "/var/lib/coretuned/jobs/ftjob-x/state.safetensors"};
    check_progress(&ck);
    ck.checkpoint_path = "/tmp/\"quoted\"\\back\tslash/é/state.safetensors";
    check_progress(&ck);
    tr_progress big = {.kind = TR_EV_STEP, .step = 2147483647, .total_steps = 2147483647, .epoch = 10000,
                       .epochs = 10000};
    check_progress(&big);
}

static void test_start_summary_error_round_trip(void **state)
{
    (void)state;
    pl_record r = parse_ok(pl_start_line(0, 0));
    assert_int_equal(r.kind, PL_START);
    assert_int_equal(r.resumed, 0);
    assert_int_equal(r.p.step, 0);
    r = parse_ok(pl_start_line(1, 345));
    assert_int_equal(r.kind, PL_START);
    assert_int_equal(r.resumed, 1);
    assert_int_equal(r.p.step, 345);

    tr_result res = {.steps_done = 12, .epochs_done = 2, .stopped = 0, .best_valid_accuracy = 0.234375,
                     .final_valid_accuracy = 0.1 + 0.2, .final_valid_loss = 1.8830554292827868, .best_epoch = 2,
                     .peak_bytes = (size_t)81308588 * 1024 * 1024};
    for (int stopped = 0; stopped <= 2; stopped++) {
        res.stopped = stopped;
        r = parse_ok(pl_summary_line(&res));
        assert_int_equal(r.kind, PL_SUMMARY);
        assert_int_equal(r.res.stopped, stopped != 0); /* TR_STOP_CANCEL too: "stopped" is all a line says */
        assert_int_equal(r.res.steps_done, 12);
        assert_int_equal(r.res.epochs_done, 2);
        assert_same(r.res.best_valid_accuracy, res.best_valid_accuracy, "best");
        assert_same(r.res.final_valid_accuracy, res.final_valid_accuracy, "final");
        assert_same(r.res.final_valid_loss, res.final_valid_loss, "final_loss");
        assert_int_equal(r.res.best_epoch, 2);
        assert_true(r.res.peak_bytes == res.peak_bytes);
    }
    /* stopped before any validation: no accuracy yet */
    tr_result early = {.steps_done = 3, .stopped = 1, .best_valid_accuracy = NAN, .final_valid_accuracy = NAN,
                       .final_valid_loss = NAN};
    r = parse_ok(pl_summary_line(&early));
    assert_true(isnan(r.res.best_valid_accuracy) && isnan(r.res.final_valid_accuracy) &&
                isnan(r.res.final_valid_loss));
    assert_int_equal(r.res.best_epoch, 0);
    assert_true(r.res.peak_bytes == 0);
    assert_int_equal(r.res.early_stopped, 0);
    /* early stopping is said, and a line from before it (no key) reads as "not early" */
    res.stopped = 0;
    res.early_stopped = 1;
    r = parse_ok(pl_summary_line(&res));
    assert_int_equal(r.res.early_stopped, 1);
    const char *older = "{\"type\":\"summary\",\"status\":\"succeeded\",\"steps\":1,\"epochs\":1,"
                        "\"best_valid_accuracy\":0.5,\"final_valid_accuracy\":0.5,\"final_valid_loss\":1,"
                        "\"best_epoch\":1,\"peak_bytes\":1}";
    pl_record o;
    assert_int_equal(pl_parse(older, strlen(older), &o), 0);
    assert_int_equal(o.res.early_stopped, 0);
    const char *wrong = "{\"type\":\"summary\",\"status\":\"succeeded\",\"steps\":1,\"epochs\":1,"
                        "\"best_valid_accuracy\":0.5,\"final_valid_accuracy\":0.5,\"final_valid_loss\":1,"
                        "\"best_epoch\":1,\"peak_bytes\":1,\"early_stopped\":1}";
    assert_int_equal(pl_parse(wrong, strlen(wrong), &o), -EINVAL);

    r = parse_ok(pl_error_line(-EDOM, "loss is not finite at step 4 (learning rate 10): training diverged"));
    assert_int_equal(r.kind, PL_ERROR);
    assert_int_equal(r.rc, -EDOM);
    assert_string_equal(r.message, "loss is not finite at step 4 (learning rate 10): training diverged");
    r = parse_ok(pl_error_line(-2147483647 - 1, ""));
    assert_int_equal(r.rc, -2147483647 - 1);
    assert_string_equal(r.message, "");
}

static void test_strings_that_do_not_fit(void **state)
{
    (void)state;
    /* not UTF-8: each bad byte becomes the text \xNN, the rest kept */
    pl_record r = parse_ok(pl_error_line(-EIO, "bad \xff byte"));
    assert_string_equal(r.message, "bad \\xFF byte");
    /* a message is cut to what the record holds, a path too (at a character boundary) */
    char *big = malloc(100000);
    memset(big, 'm', 99999);
    big[99999] = 0;
    r = parse_ok(pl_error_line(-EIO, big));
    assert_int_equal(strlen(r.message), PL_MESSAGE_MAX - 1);
    tr_progress ck = {.kind = TR_EV_CHECKPOINT, .step = 1, .total_steps = 2, .epoch = 1, .epochs = 1,
                      .checkpoint_path = big};
    r = parse_ok(pl_progress_line(&ck));
    assert_int_equal(strlen(r.path), TR_PATH_MAX - 1);
    /* the longest lines: every byte of the string escaped as \u00XX still fits PL_LINE_MAX */
    memset(big, '\x01', TR_PATH_MAX - 1);
    big[TR_PATH_MAX - 1] = 0;
    r = parse_ok(pl_progress_line(&ck));
    assert_int_equal(strlen(r.path), TR_PATH_MAX - 1);
    r = parse_ok(pl_error_line(-EIO, big));
    assert_int_equal(strlen(r.message), PL_MESSAGE_MAX - 1);
    free(big);
    /* a NULL path is an empty one */
    ck.checkpoint_path = NULL;
    r = parse_ok(pl_progress_line(&ck));
    assert_string_equal(r.path, "");
}

static void test_reader_details(void **state)
{
    (void)state;
    pl_record r;
    const char *s = "  {\"type\":\"start\",\"resumed\":true,\"step\":5,\"host\":\"node7\"}\n";
    assert_int_equal(pl_parse(s, strlen(s), &r), 0); /* whitespace and unknown keys are fine */
    assert_int_equal(r.kind, PL_START);
    assert_int_equal(r.p.step, 5);
    /* len, not NUL: only the first len bytes are read */
    s = "{\"type\":\"start\",\"resumed\":false,\"step\":1}GARBAGE";
    assert_int_equal(pl_parse(s, strlen(s) - 7, &r), 0);
    assert_int_equal(r.p.step, 1);
    /* integers for doubles, and null */
    s = "{\"type\":\"epoch\",\"step\":1,\"total_steps\":2,\"epoch\":1,\"epochs\":2,\"valid_loss\":2,"
        "\"valid_accuracy\":null}";
    assert_int_equal(pl_parse(s, strlen(s), &r), 0);
    assert_true(r.p.valid_loss == 2.0);
    assert_true(isnan(r.p.valid_accuracy));
}

/* Refused, and the record untouched. */
static void expect_bad_len(const char *line, size_t len)
{
    pl_record r, before;
    memset(&r, 0xA5, sizeof r);
    memcpy(&before, &r, sizeof r);
    int rc = pl_parse(line, len, &r);
    if (rc != -EINVAL) fail_msg("rc %d for: %.*s", rc, (int)(len > 200 ? 200 : len), line);
    assert_memory_equal(&r, &before, sizeof r);
}

static void expect_bad(const char *line) { expect_bad_len(line, strlen(line)); }

#define STEP_LINE "{\"type\":\"step\",\"step\":1,\"total_steps\":12,\"epoch\":1,\"epochs\":2,\"train_loss\":3.06," \
                  "\"ce_loss\":2.69,\"contrastive_loss\":3.65,\"lr\":0.05,\"images_per_second\":262.5,\"eta_seconds\":1.3}"

static void test_hostile_lines(void **state)
{
    (void)state;
    char b[4096];
    expect_bad("");
    expect_bad("   \n");
    expect_bad("not json");
    expect_bad("{");
    expect_bad("[]");
    expect_bad("\"step\"");
    expect_bad("42");
    expect_bad("null");
    expect_bad("{}");
    expect_bad("{\"type\":7}");
    expect_bad("{\"type\":null}");
    expect_bad("{\"type\":\"bogus\",\"step\":1}");
    expect_bad("{\"type\":\"STEP\",\"step\":1}");
    expect_bad(STEP_LINE STEP_LINE);                                                     /* two objects */
    expect_bad(STEP_LINE "x");                                                           /* trailing junk */
    expect_bad("{\"type\":\"start\",\"resumed\":false,\"step\":0,\"step\":1}");           /* duplicate */
    expect_bad("{\"type\":\"start\",\"resumed\":0,\"step\":0}");                          /* not a bool */
    expect_bad("{\"type\":\"start\",\"resumed\":false}");                                 /* missing */
    expect_bad("{\"type\":\"start\",\"resumed\":false,\"step\":-1}");
    expect_bad("{\"type\":\"start\",\"resumed\":false,\"step\":1.0}");
    expect_bad("{\"type\":\"start\",\"resumed\":false,\"step\":\"1\"}");
    expect_bad("{\"type\":\"start\",\"resumed\":false,\"step\":null}");
    expect_bad("{\"type\":\"start\",\"resumed\":false,\"step\":2147483648}");
    expect_bad("{\"type\":\"start\",\"resumed\":false,\"step\":99999999999999999999999999}");
    expect_bad("{\"type\":\"error\",\"code\":0,\"message\":\"x\"}");                      /* not negative */
    expect_bad("{\"type\":\"error\",\"code\":5,\"message\":\"x\"}");
    expect_bad("{\"type\":\"error\",\"code\":-2147483649,\"message\":\"x\"}");
    expect_bad("{\"type\":\"error\",\"code\":-5,\"message\":5}");
    expect_bad("{\"type\":\"error\",\"code\":-5}");
    expect_bad("{\"type\":\"error\",\"code\":-5,\"message\":\"a\\u0000b\"}");             /* NUL escaped */
    expect_bad("{\"type\":\"summary\",\"status\":\"done\",\"steps\":1,\"epochs\":1,\"best_valid_accuracy\":1,"
               "\"final_valid_accuracy\":1,\"final_valid_loss\":1,\"best_epoch\":1,\"peak_bytes\":1}");
    expect_bad("{\"type\":\"summary\",\"status\":\"stopped\",\"steps\":1,\"epochs\":1,\"best_valid_accuracy\":1,"
               "\"final_valid_accuracy\":1,\"final_valid_loss\":1,\"best_epoch\":1,\"peak_bytes\":-1}");
    expect_bad("{\"type\":\"checkpoint\",\"step\":1,\"total_steps\":2,\"epoch\":1,\"epochs\":1,\"path\":[]}");
    expect_bad("{\"type\":\"epoch\",\"step\":1,\"total_steps\":2,\"epoch\":1,\"epochs\":2,\"valid_loss\":1e400,"
               "\"valid_accuracy\":0.5}");                                                /* overflows */
    expect_bad("{\"type\":\"epoch\",\"step\":1,\"total_steps\":2,\"epoch\":1,\"epochs\":2,\"valid_loss\":NaN,"
               "\"valid_accuracy\":0.5}");
    expect_bad("{\"type\":\"epoch\",\"step\":1,\"total_steps\":2,\"epoch\":1,\"epochs\":2,\"valid_loss\":\"1\","
               "\"valid_accuracy\":0.5}");
    expect_bad("{\"type\":\"epoch\",\"step\":1,\"total_steps\":2,\"epoch\":1,\"epochs\":2,\"valid_loss\":{},"
               "\"valid_accuracy\":0.5}");                                                /* nested */

    /* every key of a valid line is required, and each takes only its type */
    static const char *const keys[] = {"\"step\":1", "\"total_steps\":12", "\"epoch\":1", "\"epochs\":2",
                                       "\"train_loss\":3.06", "\"ce_loss\":2.69", "\"contrastive_loss\":3.65",
                                       "\"lr\":0.05", "\"images_per_second\":262.5", "\"eta_seconds\":1.3"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *at = strstr(STEP_LINE, keys[i]);
        assert_non_null(at);
        size_t pre = (size_t)(at - STEP_LINE), klen = strchr(keys[i], ':') - keys[i];
        snprintf(b, sizeof b, "%.*s\"renamed%.*s", (int)pre, STEP_LINE, (int)(strlen(STEP_LINE) - pre - 1),
                 at + 1);
        expect_bad(b);                                                                   /* missing */
        const char *vals[] = {"true", "\"1\"", "[1]", "{\"a\":1}"};
        for (size_t k = 0; k < 4; k++) {
            const char *end = at + strcspn(at, ",}");
            snprintf(b, sizeof b, "%.*s%s%s", (int)(pre + klen + 1), STEP_LINE, vals[k], end);
            expect_bad(b);
        }
    }
    pl_record ok;
    assert_int_equal(pl_parse(STEP_LINE, strlen(STEP_LINE), &ok), 0);

    /* a NUL byte inside the given length, in a string and between tokens */
    char nul[] = "{\"type\":\"error\",\"code\":-5,\"message\":\"a_b\"}";
    *strchr(nul, '_') = 0;
    expect_bad_len(nul, sizeof nul - 1);
    char nul2[] = "{\"type\":\"start\",\"resumed\":false,\"step\":0} ";
    nul2[sizeof nul2 - 2] = 0;
    expect_bad_len(nul2, sizeof nul2 - 1);

    /* deep nesting, in a value and at the top */
    size_t n = 3000;
    char *deep = malloc(2 * n + 64);
    int k = snprintf(deep, 64, "{\"type\":\"start\",\"resumed\":false,\"step\":");
    memset(deep + k, '[', n);
    memset(deep + k + n, ']', n);
    strcpy(deep + k + 2 * n, "}");
    expect_bad(deep);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = 0;
    expect_bad(deep);
    free(deep);

    /* a 1 MB line (a valid object but for its length), and just past the limit */
    size_t mb = 1 << 20;
    char *huge = malloc(mb + 64);
    k = snprintf(huge, 64, "{\"type\":\"error\",\"code\":-5,\"message\":\"");
    memset(huge + k, 'x', mb);
    strcpy(huge + k + mb, "\"}");
    expect_bad(huge);
    size_t at_limit = PL_LINE_MAX + 1;
    memset(huge, ' ', at_limit);
    const char *start = "{\"type\":\"start\",\"resumed\":false,\"step\":0}";
    memcpy(huge, start, strlen(start));
    expect_bad_len(huge, at_limit);
    assert_int_equal(pl_parse(huge, PL_LINE_MAX, &ok), 0); /* the same, padded to exactly the limit */
    /* strings longer than the record's buffers */
    k = snprintf(huge, 64, "{\"type\":\"error\",\"code\":-5,\"message\":\"");
    memset(huge + k, 'x', PL_MESSAGE_MAX);
    strcpy(huge + k + PL_MESSAGE_MAX, "\"}");
    expect_bad(huge);
    huge[k + PL_MESSAGE_MAX - 1] = '"';
    huge[k + PL_MESSAGE_MAX] = '}';
    huge[k + PL_MESSAGE_MAX + 1] = 0;
    assert_int_equal(pl_parse(huge, strlen(huge), &ok), 0);
    assert_int_equal(strlen(ok.message), PL_MESSAGE_MAX - 1);
    k = snprintf(huge, 128, "{\"type\":\"checkpoint\",\"step\":1,\"total_steps\":2,\"epoch\":1,\"epochs\":1,\"path\":\"");
    memset(huge + k, 'p', TR_PATH_MAX);
    strcpy(huge + k + TR_PATH_MAX, "\"}");
    expect_bad(huge);
    free(huge);
}

/* Every prefix and a sweep of byte changes of each kind of valid line: 0 or -EINVAL, never a crash
 * (the sanitizer builds run this too). */
static void test_mutations(void **state)
{
    (void)state;
    tr_progress ck = {.kind = TR_EV_CHECKPOINT, .step = 6, .total_steps = 12, .epoch = 1, .epochs = 2,
                      .checkpoint_path = "/tmp/o/state.safetensors"};
    tr_result res = {.steps_done = 12, .epochs_done = 2, .best_valid_accuracy = 0.5, .final_valid_accuracy = NAN};
    char *lines[] = {strdup(STEP_LINE), pl_progress_line(&ck), pl_summary_line(&res), pl_start_line(1, 3),
                     pl_error_line(-EIO, "disk \"full\"")};
    static const char subst[] = "{}[]\",:0-9.eE+\\ ntf\x80\xff";
    pl_record r;
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        char *l = lines[i];
        assert_non_null(l);
        size_t len = strlen(l);
        assert_int_equal(pl_parse(l, len, &r), 0);
        for (size_t cut = 0; cut < len; cut++) assert_int_equal(pl_parse(l, cut, &r), -EINVAL);
        char *m = malloc(len);
        for (size_t pos = 0; pos < len; pos++)
            for (size_t c = 0; c < sizeof subst - 1; c++) {
                memcpy(m, l, len);
                m[pos] = subst[c];
                int rc = pl_parse(m, len, &r);
                assert_true(rc == 0 || rc == -EINVAL);
            }
        free(m);
        free(l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_round_trip),
        cmocka_unit_test(test_start_summary_error_round_trip),
        cmocka_unit_test(test_strings_that_do_not_fit),
        cmocka_unit_test(test_reader_details),
        cmocka_unit_test(test_hostile_lines),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
