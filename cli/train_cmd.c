/* cli/train_cmd.c — `coretune train SPEC.json --out DIR [--resume] [--threads N]`: one job, locally,
 * without the daemon. The spec is the REST API's job body (spec/jobspec.h); progress is printed as
 * one JSON object per line on stdout; Ctrl-C stops after the current step with a resumable
 * checkpoint. Exit codes: 0 done (or stopped cleanly), 1 the job failed, 2 bad usage or spec. */
#include "spec/jobspec.h"
#include "cli/cli.h"
#include "trainer/trainer.h"
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) { (void)sig; interrupted = 1; }

static int should_stop(void *ud)
{
    (void)ud;
    return interrupted ? TR_STOP_CHECKPOINT : TR_RUN;
}

/* A model is a base architecture name or a safetensors file; data names pass through (the trainer
 * resolves built-in names and paths itself). */
static int resolve(void *ud, enum jobspec_ref kind, const char *name, char *path, char *arch, char *err,
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
    if (rc == 0 && snprintf(path, TR_PATH_MAX, "%s", name) >= TR_PATH_MAX) rc = -ENAMETOOLONG;
    return rc;
}

static void print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(8));
    if (s) { puts(s); fflush(stdout); free(s); }
    json_decref(o);
}

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static void on_progress(void *ud, const tr_progress *p)
{
    (void)ud;
    switch (p->kind) {
    case TR_EV_STEP:
        print_json(json_pack("{s:s, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "type", "step", "step", p->step,
                             "total_steps", p->total_steps, "epoch", p->epoch, "train_loss", num(p->train_loss),
                             "ce_loss", num(p->ce_loss), "contrastive_loss", num(p->contrastive_loss), "lr",
                             num(p->lr), "images_per_second", num(p->images_per_second), "eta_seconds",
                             num(p->eta_seconds)));
        break;
    case TR_EV_EPOCH:
        print_json(json_pack("{s:s, s:i, s:i, s:o, s:o}", "type", "epoch", "epoch", p->epoch, "step", p->step,
                             "valid_loss", num(p->valid_loss), "valid_accuracy", num(p->valid_accuracy)));
        break;
    case TR_EV_CHECKPOINT:
        print_json(json_pack("{s:s, s:i, s:i, s:s}", "type", "checkpoint", "epoch", p->epoch, "step", p->step,
                             "path", p->checkpoint_path));
        break;
    }
}

int cli_train(int argc, char **argv)
{
    static const struct option longopts[] = {{"out", required_argument, 0, 'o'}, {"resume", no_argument, 0, 'r'},
                                             {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *out = NULL;
    int resume = 0, threads = -1, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'r': resume = 1; break;
        case 't': threads = atoi(optarg); break;
        case 'h':
            printf("usage: coretune train SPEC.json --out DIR [--resume] [--threads N]\n");
            return 0;
        default: return 2;
        }
    }
    if (optind != argc - 1 || !out) {
        fprintf(stderr, "usage: coretune train SPEC.json --out DIR [--resume] [--threads N]\n");
        return 2;
    }
    json_error_t jerr;
    json_t *body = json_load_file(argv[optind], JSON_REJECT_DUPLICATES, &jerr);
    if (!body) {
        fprintf(stderr, "coretune: %s:%d: %s\n", argv[optind], jerr.line, jerr.text);
        return 2;
    }
    tr_spec spec;
    char param[128] = "", err[1024] = "";
    int rc = jobspec_parse(body, resolve, NULL, &spec, param, sizeof param, err, sizeof err);
    json_decref(body);
    if (rc) {
        fprintf(stderr, "coretune: %s: %s%s%s\n", argv[optind], param[0] ? param : "", param[0] ? ": " : "", err);
        return 2;
    }
    if (threads >= 0) spec.threads = threads;

    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tr_callbacks cb = {.progress = on_progress, .should_stop = should_stop};
    tr_result res;
    rc = tr_run(&spec, out, resume, &cb, &res, err, sizeof err);
    if (rc) {
        print_json(json_pack("{s:s, s:s}", "type", "error", "message", err));
        fprintf(stderr, "coretune: %s\n", err);
        return 1;
    }
    print_json(json_pack("{s:s, s:s, s:i, s:i, s:o, s:o, s:i, s:I}", "type", "summary", "status",
                         res.stopped ? "stopped" : "succeeded", "steps", res.steps_done, "epochs", res.epochs_done,
                         "best_valid_accuracy", num(res.best_valid_accuracy), "final_valid_accuracy",
                         num(res.final_valid_accuracy), "best_epoch", res.best_epoch, "peak_bytes",
                         (json_int_t)res.peak_bytes));
    return 0;
}
