/* tests/unit/test_train.c — tr_run end to end on a tiny IDX data set written at test time:
 * a run stopped by should_stop and resumed gives exactly the loss curve of an uninterrupted run;
 * the same for SimCLR pre-training, whose backbone then seeds a fine-tuning job; cancel stops without a final model; a non-finite loss fails the
 * job with a clear error; bad specs name the field. Real model, loss, data loader and checkpoints. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "trainer/model.h"
#include "trainer/safetensors.h"
#include "trainer/trainer.h"

enum { NIMG = 96, SIDE = 12, CLASSES = 4, MAXREC = 256 };

static char tmpdir[256];

static void put_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};
    fwrite(b, 1, 4, f);
}

/* Class k images: a bright k-th quadrant over noise, so a few steps learn something. */
static int write_idx(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/coretuned-train-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    char path[300];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", tmpdir);
    FILE *fi = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", tmpdir);
    FILE *fl = fopen(path, "wb");
    if (!fi || !fl) return -1;
    put_be32(fi, 0x803); put_be32(fi, NIMG); put_be32(fi, SIDE); put_be32(fi, SIDE);
    put_be32(fl, 0x801); put_be32(fl, NIMG);
    uint32_t r = 12345;
    for (int i = 0; i < NIMG; i++) {
        int k = i % CLASSES;
        for (int y = 0; y < SIDE; y++)
            for (int x = 0; x < SIDE; x++) {
                r = r * 1664525u + 1013904223u;
                int quad = (y >= SIDE / 2) * 2 + (x >= SIDE / 2);
                fputc((int)((r >> 24) % 96) + (quad == k ? 150 : 0), fi);
            }
        fputc(k, fl);
    }
    fclose(fi);
    fclose(fl);
    return 0;
}

static int remove_tmp(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct recorder {
    double loss[MAXREC];
    int steps[MAXREC], n;
    double valid_acc[16];
    int nepochs;
    int stop_after, stop_kind;   /* should_stop returns stop_kind once `stop_after` steps were seen */
    int checkpoints;
} recorder;

static void on_progress(void *ud, const tr_progress *p)
{
    recorder *r = ud;
    if (p->kind == TR_EV_STEP && r->n < MAXREC) {
        r->loss[r->n] = p->train_loss;
        r->steps[r->n++] = p->step;
    } else if (p->kind == TR_EV_EPOCH && r->nepochs < 16) {
        r->valid_acc[r->nepochs++] = p->valid_accuracy;
    } else if (p->kind == TR_EV_CHECKPOINT) {
        r->checkpoints++;
    }
}

static int should_stop(void *ud)
{
    recorder *r = ud;
    return r->stop_after > 0 && r->n >= r->stop_after ? r->stop_kind : TR_RUN;
}

static void tiny_spec(tr_spec *s, int method)
{
    tr_spec_defaults(s);
    snprintf(s->train_data, sizeof s->train_data, "%s", tmpdir);
    s->image_size = SIDE;
    s->method = method;
    s->hp.epochs = 3;
    s->hp.batch_size = 16;
    s->hp.grad_accum = 2;
    s->hp.lr = 0.05;
    s->hp.contrast_dim = 16;
    s->valid_fraction = 0.25;
    s->threads = 1;
    s->seed = 5;
    s->checkpoint_seconds = 0;
}

static int run(const tr_spec *s, const char *sub, int resume, recorder *rec, tr_result *res, char *err)
{
    char out[300];
    snprintf(out, sizeof out, "%s/%s", tmpdir, sub);
    tr_callbacks cb = {.progress = on_progress, .should_stop = should_stop, .ud = rec};
    return tr_run(s, out, resume, &cb, res, err, 256);
}

static int exists(const char *sub, const char *file)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s/%s", tmpdir, sub, file);
    return access(p, F_OK) == 0;
}

static void test_resume_continues_exactly(void **state)
{
    (void)state;
    static const char *const names[] = {"ce", "core", "simclr"};
    for (int method = TR_CE_TUNING; method <= TR_SIMCLR; method++) {
        tr_spec s;
        tiny_spec(&s, method);
        char err[256] = "";
        tr_result res;
        recorder full = {0}, part = {0};
        char a[32], b[32];
        snprintf(a, sizeof a, "full-%s", names[method]);
        snprintf(b, sizeof b, "part-%s", names[method]);
        int rc = run(&s, a, 0, &full, &res, err);
        if (rc) fprintf(stderr, "tr_run: %s\n", err);
        assert_int_equal(rc, 0);
        int steps_per_epoch = (NIMG * 3 / 4 / 16) / 2; /* 72 training images, batch 16, accum 2 -> 2 */
        assert_int_equal(res.steps_done, 3 * steps_per_epoch);
        assert_int_equal(full.n, res.steps_done);
        assert_int_equal(full.nepochs, 3);
        assert_true(exists(a, "final.safetensors") && exists(a, "best.safetensors"));
        for (int i = 0; i < full.n; i++) assert_true(isfinite(full.loss[i]));

        /* stop mid-epoch (after step 3 of 6), then resume in a fresh tr_run */
        part.stop_after = 3;
        part.stop_kind = TR_STOP_CHECKPOINT;
        assert_int_equal(run(&s, b, 0, &part, &res, err), 0);
        assert_int_equal(res.stopped, TR_STOP_CHECKPOINT);
        assert_int_equal(res.steps_done, 3);
        assert_false(exists(b, "final.safetensors"));
        part.stop_after = 0;
        assert_int_equal(run(&s, b, 1, &part, &res, err), 0);
        assert_int_equal(res.stopped, 0);
        assert_int_equal(part.n, full.n);
        for (int i = 0; i < full.n; i++) {
            assert_int_equal(part.steps[i], i + 1);              /* step numbers continue */
            assert_true(part.loss[i] == full.loss[i]);           /* bit-identical curve */
        }
        assert_int_equal(part.nepochs, full.nepochs);
        for (int e = 0; e < full.nepochs; e++) assert_true(part.valid_acc[e] == full.valid_acc[e]);
        assert_true(exists(b, "final.safetensors"));
    }
}

/* A SimCLR run yields a backbone (no classifier) that a fine-tuning job starts from. */
static void test_simclr_backbone_feeds_fine_tuning(void **state)
{
    (void)state;
    tr_spec s;
    tiny_spec(&s, TR_SIMCLR);
    s.hp.temperature = 0.5;
    s.hp.epochs = 2;
    recorder rec = {0};
    tr_result res;
    char err[256] = "";
    assert_int_equal(run(&s, "ssl", 0, &rec, &res, err), 0);
    assert_true(rec.n > 0 && isfinite(rec.loss[0]) && rec.loss[0] > 0);
    assert_true(rec.nepochs == 2 && rec.valid_acc[1] >= 0 && rec.valid_acc[1] <= 1);
    char path[400], arch[16];
    snprintf(path, sizeof path, "%s/ssl/final.safetensors", tmpdir);
    int in_ch, small;
    assert_int_equal(tr_weights_arch(path, arch, &in_ch, &small, err, sizeof err), 0);
    assert_string_equal(arch, "resnet20");
    assert_int_equal(in_ch, 1);
    st_file *f = NULL;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_null(st_find(f, "fc.weight"));            /* a backbone: no classifier, no projector */
    assert_null(st_find(f, "contrastor.0.weight"));
    assert_non_null(st_find(f, "layer3.2.bn2.running_var"));
    st_close(f);

    tiny_spec(&s, TR_CORE_TUNING);
    snprintf(s.init_weights, sizeof s.init_weights, "%s", path);
    recorder ft = {0};
    int rc = run(&s, "ssl-ft", 0, &ft, &res, err);
    if (rc) fprintf(stderr, "fine-tuning from SimCLR: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(ft.nepochs, 3);
}

/* A labelled subset smaller than a separate validation set (the few-label protocol). */
static void test_small_subset_large_validation_set(void **state)
{
    (void)state;
    tr_spec s;
    tiny_spec(&s, TR_CORE_TUNING);
    s.train_per_class = 4;
    s.hp.batch_size = 8;
    s.hp.grad_accum = 1;
    s.hp.epochs = 2;
    snprintf(s.valid_data, sizeof s.valid_data, "%s", tmpdir);
    recorder rec = {0};
    tr_result res;
    char err[256] = "";
    int rc = run(&s, "subset", 0, &rec, &res, err);
    if (rc) fprintf(stderr, "tr_run: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(rec.n, 2 * (CLASSES * 4 / 8));
    assert_int_equal(rec.nepochs, 2);
}

static void test_cancel_stops_without_final_model(void **state)
{
    (void)state;
    tr_spec s;
    tiny_spec(&s, TR_CORE_TUNING);
    recorder rec = {.stop_after = 1, .stop_kind = TR_STOP_CANCEL};
    tr_result res;
    char err[256];
    assert_int_equal(run(&s, "cancel", 0, &rec, &res, err), 0);
    assert_int_equal(res.stopped, TR_STOP_CANCEL);
    assert_int_equal(rec.n, 1);
    assert_false(exists("cancel", "final.safetensors"));
}

static void test_non_finite_loss_fails_the_job(void **state)
{
    (void)state;
    /* initial weights with a NaN in the classifier: the first loss is NaN */
    model_config mc = {.arch = "resnet20", .in_channels = 1, .image_size = SIDE, .num_classes = CLASSES,
                       .max_batch = 2};
    model *m = NULL;
    char err[256] = "", path[300];
    assert_int_equal(model_new(&m, &mc, err, sizeof err), 0);
    rng_t r;
    rng_seed(&r, 1);
    model_init(m, &r);
    model_find(m, "fc.weight")->data[3] = NAN;
    snprintf(path, sizeof path, "%s/nan.safetensors", tmpdir);
    assert_int_equal(model_save(m, path, 0, err, sizeof err), 0);
    model_free(m);
    tr_spec s;
    tiny_spec(&s, TR_CORE_TUNING);
    snprintf(s.init_weights, sizeof s.init_weights, "%s", path);
    recorder rec = {0};
    tr_result res;
    int rc = run(&s, "nan", 0, &rec, &res, err);
    assert_true(rc < 0);
    assert_non_null(strstr(err, "not finite"));
    assert_int_equal(rec.n, 0);
}

/* Case i breaks one field of a valid spec; returns the field tr_spec_validate must name. */
static const char *break_field(tr_spec *s, int i)
{
    switch (i) {
    case 0: s->hp.lr = 0; return "learning_rate";
    case 1: s->hp.lr = NAN; return "learning_rate";
    case 2: s->hp.batch_size = 1; return "batch_size";
    case 3: s->hp.epochs = 0; return "n_epochs";
    case 4: s->hp.momentum = 1.0; return "momentum";
    case 5: s->hp.momentum = 0; return "nesterov";
    case 6: s->hp.temperature = -1; return "temperature";
    case 7: s->hp.mixup_alpha = 0; return "mixup_alpha";
    case 8: snprintf(s->arch, sizeof s->arch, "vgg16"); return "arch";
    case 9: s->in_channels = 2; return "in_channels";
    case 10: s->train_data[0] = 0; return "train_data";
    case 11: s->valid_fraction = 1.5; return "valid_fraction";
    case 12: s->hp.weight_decay = INFINITY; return "weight_decay";
    default: return NULL;
    }
}

static void test_spec_validation_names_the_field(void **state)
{
    (void)state;
    tr_spec s;
    const char *field;
    for (int i = 0; tiny_spec(&s, TR_CORE_TUNING), (field = break_field(&s, i)) != NULL; i++) {
        char param[64] = "", err[256] = "";
        assert_int_equal(tr_spec_validate(&s, param, sizeof param, err, sizeof err), -22);
        assert_string_equal(param, field);
        assert_true(err[0] != 0);
    }
    char param[64], err[256];
    assert_int_equal(tr_spec_validate(&s, param, sizeof param, err, sizeof err), 0);
}

static void test_bad_data_is_a_clear_error(void **state)
{
    (void)state;
    tr_spec s;
    tiny_spec(&s, TR_CE_TUNING);
    snprintf(s.train_data, sizeof s.train_data, "%s/no-such-dir", tmpdir);
    recorder rec = {0};
    tr_result res;
    char err[256] = "";
    assert_true(run(&s, "bad", 0, &rec, &res, err) < 0);
    assert_non_null(strstr(err, "no-such-dir"));
    /* too few images for one step */
    tiny_spec(&s, TR_CE_TUNING);
    s.hp.batch_size = 64;
    s.hp.grad_accum = 4;
    assert_true(run(&s, "small", 0, &rec, &res, err) < 0);
    assert_non_null(strstr(err, "fewer than one step"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_continues_exactly),
        cmocka_unit_test(test_simclr_backbone_feeds_fine_tuning),
        cmocka_unit_test(test_small_subset_large_validation_set),
        cmocka_unit_test(test_cancel_stops_without_final_model),
        cmocka_unit_test(test_non_finite_loss_fails_the_job),
        cmocka_unit_test(test_spec_validation_names_the_field),
        cmocka_unit_test(test_bad_data_is_a_clear_error),
    };
    return cmocka_run_group_tests_name("train", tests, write_idx, remove_tmp);
}
