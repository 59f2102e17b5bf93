/* tests/unit/test_train.c — tr_run end to end on a tiny IDX data set written at test time:
 * a run stopped by should_stop and resumed gives exactly the loss curve of an uninterrupted run;
 * the same for SimCLR pre-training, whose backbone then seeds a fine-tuning job; cancel stops without a final model; a non-finite loss fails the
 * job with a clear error; bad specs name the field; early stopping (where it stops, final = best, its
 * count across a resume); tr_evaluate gives what validation reported. Real model, loss, data loader
 * and checkpoints. */
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
#include "trainer/model.h"
#include "trainer/safetensors.h"
#include "trainer/trainer.h"
#include "trainer/gpu/gpu.h"

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
    double valid_acc[16], valid_loss[16];
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
        r->valid_loss[r->nepochs] = p->valid_loss;
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

/* "cuda" with nobody to assign a GPU (the CLI, a Slurm run) trains on device 0: where there is none, the
 * run says so naming cuda:0 (a GPU machine runs it: test_train_golden covers that). */
static void test_cuda_any_is_device_0(void **state)
{
    (void)state;
    char why[128];
    if (gpu_device_count(why, sizeof why) > 0) {
        printf("SKIP: a CUDA device is visible (%s): a cuda run would train; test_train_golden covers it\n", why);
        skip();
    }
    tr_spec s;
    tiny_spec(&s, TR_CORE_TUNING);
    s.device = TR_DEVICE_ANY;
    tr_result res;
    char err[256] = "";
    recorder rec = {0};
    assert_int_equal(run(&s, "cuda-any", 0, &rec, &res, err), -ENODEV);
    assert_non_null(strstr(err, "device cuda:0 is not visible"));
    s.device = -3; /* below TR_DEVICE_ANY: no such device */
    assert_int_equal(run(&s, "cuda-bad", 0, &rec, &res, err), -EINVAL);
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

/* ---- early stopping ---- */

/* Whole file contents (NULL-terminated buffer), *len its size. */
static char *slurp(const char *sub, const char *file, size_t *len)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s/%s", tmpdir, sub, file);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void assert_final_is_best(const char *sub)
{
    size_t na, nb;
    char *a = slurp(sub, "final.safetensors", &na), *b = slurp(sub, "best.safetensors", &nb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na); /* byte for byte */
    free(a);
    free(b);
}

/* The rule, on a series of validation accuracies: the number of validations an early-stopped run does. */
static int validations_until_stop(const double *acc, int n, int patience, double min_delta)
{
    double best = 0;
    for (int i = 0, wait = 0; i < n; i++) {
        if (i == 0 || acc[i] > best + min_delta) wait = 0;
        else if (++wait >= patience) return i + 1;
        if (i == 0 || acc[i] > best) best = acc[i];
    }
    return n;
}

/* A stalled run (no validation beats the first by more than min_delta 1, which none can) stops after
 * patience + 1 validations, a success, with the most accurate of them as final.safetensors (a tiny
 * learning rate moves little but the BN statistics). Core-tuning, CE-tuning and SimCLR alike. */
static void test_early_stopping_stalls(void **state)
{
    (void)state;
    static const char *const names[] = {"es-ce", "es-core", "es-simclr"};
    for (int method = TR_CE_TUNING; method <= TR_SIMCLR; method++) {
        tr_spec s;
        tiny_spec(&s, method);
        s.hp.epochs = 8;
        s.hp.lr = 1e-7;
        s.hp.es_patience = 2;
        s.hp.es_min_delta = 1.0;
        recorder rec = {0};
        tr_result res;
        char err[256] = "";
        int rc = run(&s, names[method], 0, &rec, &res, err);
        if (rc) fprintf(stderr, "tr_run: %s\n", err);
        assert_int_equal(rc, 0);
        assert_int_equal(rec.nepochs, 3);
        assert_int_equal(res.early_stopped, 1);
        assert_int_equal(res.stopped, 0);
        assert_int_equal(res.epochs_done, 3);
        assert_int_equal(res.steps_done, 3 * 2);
        assert_int_equal(rec.n, 6);
        int best = 0;
        for (int e = 1; e < 3; e++) if (rec.valid_acc[e] > rec.valid_acc[best]) best = e;
        assert_int_equal(res.best_epoch, best + 1);
        /* final_*: the model returned, the best validation's */
        assert_true(res.final_valid_accuracy == rec.valid_acc[best] && res.best_valid_accuracy == rec.valid_acc[best]);
        assert_true(res.final_valid_loss == rec.valid_loss[best]);
        assert_final_is_best(names[method]);
    }
}

/* Early stopping changes nothing in training: the early-stopped run follows the full run's validations
 * and stops exactly where the rule applied to them says; one that keeps improving runs to the end. */
static void test_early_stopping_follows_the_rule(void **state)
{
    (void)state;
    tr_spec s;
    tiny_spec(&s, TR_CE_TUNING);
    s.hp.epochs = 8;
    s.hp.lr = 0.02;
    recorder full = {0};
    tr_result res;
    char err[256] = "";
    assert_int_equal(run(&s, "es-full", 0, &full, &res, err), 0);
    assert_int_equal(full.nepochs, 8);
    int stopped_somewhere = 0, ran_through = 0;
    static const struct { int patience; double min_delta; } cases[] = {{1, 0}, {2, 0}, {2, 0.05}, {3, 0}, {7, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        s.hp.es_patience = cases[c].patience;
        s.hp.es_min_delta = cases[c].min_delta;
        int want = validations_until_stop(full.valid_acc, 8, cases[c].patience, cases[c].min_delta);
        char sub[32];
        snprintf(sub, sizeof sub, "es-rule-%zu", c);
        recorder rec = {0};
        assert_int_equal(run(&s, sub, 0, &rec, &res, err), 0);
        assert_int_equal(rec.nepochs, want);
        for (int e = 0; e < want; e++) assert_true(rec.valid_acc[e] == full.valid_acc[e]);
        assert_int_equal(res.early_stopped, want < 8);
        assert_int_equal(res.epochs_done, want);
        /* with early stopping on, final is the best model whether or not it stopped early */
        assert_final_is_best(sub);
        assert_true(res.final_valid_accuracy == res.best_valid_accuracy);
        stopped_somewhere |= want < 8;
        ran_through |= want == 8;
    }
    assert_true(stopped_somewhere && ran_through); /* the cases cover both outcomes on this curve */
}

/* A run paused after a validation without improvement keeps its count: resumed, it stops where an
 * uninterrupted run stops (a reset count would give it two more validations). A crash between the
 * decision and final.safetensors: the resumed run trains no more and writes final from best. */
static void test_early_stopping_survives_resume(void **state)
{
    (void)state;
    tr_spec s;
    tiny_spec(&s, TR_CORE_TUNING);
    s.hp.epochs = 8;
    s.hp.es_patience = 2;
    s.hp.es_min_delta = 1.0;
    recorder rec = {.stop_after = 5, .stop_kind = TR_STOP_CHECKPOINT}; /* mid-epoch 3: one miss so far */
    tr_result res;
    char err[256] = "";
    assert_int_equal(run(&s, "es-resume", 0, &rec, &res, err), 0);
    assert_int_equal(res.stopped, TR_STOP_CHECKPOINT);
    assert_int_equal(rec.nepochs, 2);
    rec.stop_after = 0;
    assert_int_equal(run(&s, "es-resume", 1, &rec, &res, err), 0);
    assert_int_equal(rec.nepochs, 3);
    assert_int_equal(res.early_stopped, 1);
    assert_int_equal(res.epochs_done, 3);
    int best = res.best_epoch - 1;
    assert_true(best >= 0 && best < 3 && res.final_valid_accuracy == rec.valid_acc[best]);
    assert_true(res.final_valid_loss == rec.valid_loss[best]); /* the best loss came through the checkpoint */
    assert_final_is_best("es-resume");

    char p[400];
    snprintf(p, sizeof p, "%s/es-resume/final.safetensors", tmpdir);
    assert_int_equal(unlink(p), 0);
    recorder again = {0};
    assert_int_equal(run(&s, "es-resume", 1, &again, &res, err), 0);
    assert_int_equal(again.n, 0);
    assert_int_equal(again.nepochs, 0);
    assert_int_equal(res.early_stopped, 1);
    assert_int_equal(res.epochs_done, 3);
    assert_true(res.final_valid_accuracy == rec.valid_acc[best]);
    assert_final_is_best("es-resume");
}

/* ---- tr_evaluate ---- */

/* The trained model evaluated on the validation data gives exactly what tr_run reported for it (same
 * images, conversion, training-set normalisation, batches and threads), for 1- and 3-channel models;
 * other batch sizes the same accuracy; bad inputs are clear errors. */
static void test_evaluate_matches_validation(void **state)
{
    (void)state;
    for (int ch = 1; ch <= 3; ch += 2) {
        tr_spec s;
        tiny_spec(&s, TR_CORE_TUNING);
        s.in_channels = ch;
        snprintf(s.valid_data, sizeof s.valid_data, "%s", tmpdir);
        s.valid_limit = 40; /* two full batches of 16 and a short one of 8 */
        recorder rec = {0};
        tr_result res;
        char err[256] = "", sub[32], model_path[400];
        snprintf(sub, sizeof sub, "eval-%d", ch);
        int rc = run(&s, sub, 0, &rec, &res, err);
        if (rc) fprintf(stderr, "tr_run: %s\n", err);
        assert_int_equal(rc, 0);
        snprintf(model_path, sizeof model_path, "%s/%s/final.safetensors", tmpdir, sub);
        tr_eval_opts o = {.limit = 40, .batch_size = 16, .threads = 1};
        tr_eval_result ev;
        rc = tr_evaluate(model_path, tmpdir, &o, &ev, err, sizeof err);
        if (rc) fprintf(stderr, "tr_evaluate: %s\n", err);
        assert_int_equal(rc, 0);
        assert_int_equal(ev.images, 40);
        assert_true(ev.accuracy == res.final_valid_accuracy);
        assert_true(ev.loss == res.final_valid_loss);
        assert_int_equal(ev.num_classes, CLASSES);
        assert_string_equal(ev.arch, "resnet20");
        assert_int_equal(ev.in_channels, ch);
        assert_int_equal(ev.image_size, SIDE);
        /* the default batch (64; one thread: OpenMP on a busy shared machine crawls) and the file's size
         * and channels: the same hits, the loss summed in another order */
        tr_eval_opts d = {.limit = 40, .threads = 1};
        assert_int_equal(tr_evaluate(model_path, tmpdir, &d, &ev, err, sizeof err), 0);
        assert_true(ev.accuracy == res.final_valid_accuracy);
        assert_true(fabs(ev.loss - res.final_valid_loss) <= 1e-5 * fabs(res.final_valid_loss));
        d.limit = 0;
        assert_int_equal(tr_evaluate(model_path, tmpdir, &d, &ev, err, sizeof err), 0);
        assert_int_equal(ev.images, NIMG);
        /* a size other than the training one is the caller's choice */
        tr_eval_opts big = {.image_size = 16, .limit = 8, .threads = 1};
        assert_int_equal(tr_evaluate(model_path, tmpdir, &big, &ev, err, sizeof err), 0);
        assert_int_equal(ev.image_size, 16);
        tr_eval_opts wrong = {.in_channels = 4 - ch};
        assert_true(tr_evaluate(model_path, tmpdir, &wrong, &ev, err, sizeof err) < 0);
        assert_non_null(strstr(err, "input channels"));
    }
    char err[256], path[400];
    tr_eval_result ev;
    /* a backbone (what a SimCLR job yields) has no classifier; nor a number of classes */
    model_config mc = {.arch = "resnet20", .in_channels = 1, .image_size = SIDE, .num_classes = 0, .max_batch = 2};
    model *m = NULL;
    rng_t r;
    rng_seed(&r, 2);
    for (int nc = 0; nc <= 2; nc += 2) {
        mc.num_classes = nc;
        assert_int_equal(model_new(&m, &mc, err, sizeof err), 0);
        model_init(m, &r);
        snprintf(path, sizeof path, "%s/classes-%d.safetensors", tmpdir, nc);
        assert_int_equal(model_save(m, path, 0, err, sizeof err), 0);
        model_free(m);
        assert_int_equal(tr_evaluate(path, tmpdir, NULL, &ev, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, nc ? "4 classes, the classifier" : "no classifier"));
    }
    snprintf(path, sizeof path, "%s/eval-1/final.safetensors", tmpdir);
    assert_true(tr_evaluate(path, "/nonexistent-data", NULL, &ev, err, sizeof err) < 0);
    assert_non_null(strstr(err, "/nonexistent-data"));
    assert_true(tr_evaluate("/nonexistent.safetensors", tmpdir, NULL, &ev, err, sizeof err) < 0);
    assert_non_null(strstr(err, "/nonexistent.safetensors"));
    tr_eval_opts bad = {.batch_size = -1};
    assert_int_equal(tr_evaluate(path, tmpdir, &bad, &ev, err, sizeof err), -EINVAL);
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
        cmocka_unit_test(test_early_stopping_stalls),
        cmocka_unit_test(test_early_stopping_follows_the_rule),
        cmocka_unit_test(test_early_stopping_survives_resume),
        cmocka_unit_test(test_evaluate_matches_validation),
        cmocka_unit_test(test_cuda_any_is_device_0),
    };
    return cmocka_run_group_tests_name("train", tests, write_idx, remove_tmp);
}
