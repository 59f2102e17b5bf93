/* cli/eval_cmd.c — `coretune eval MODEL.safetensors DATA [--limit N] [--threads N] [--batch-size N]
 * [--image-size N] [--in-channels N]`: evaluate a trained classifier once, locally, on a data set (a
 * built-in name or a path: a held-out test set) with tr_evaluate, exactly as training validates.
 * Prints one JSON line {"type":"eval","accuracy","loss","images"} (17 significant digits) on stdout.
 * Single-threaded (the trainer's threads are its own). Exit codes: 0 done, 1 the evaluation failed
 * (unreadable model or data, not a classifier, ...), 2 bad usage. */
#include "cli/cli.h"
#include "cli/opt.h"
#include "trainer/trainer.h"
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define USAGE "usage: coretune eval MODEL.safetensors DATA [--limit N] [--threads N] [--batch-size N] " \
              "[--image-size N] [--in-channels N]\n"

int cli_eval(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"limit", required_argument, 0, 'l'},      {"threads", required_argument, 0, 't'},
        {"batch-size", required_argument, 0, 'b'}, {"image-size", required_argument, 0, 's'},
        {"in-channels", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    tr_eval_opts o = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        long v = 0;
        int bad = 0;
        switch (c) {
        case 'l': bad = cli_parse_int("--limit", optarg, 0, 1000000000, &v); o.limit = (int)v; break;
        case 't': bad = cli_parse_int("--threads", optarg, 0, 1024, &v); o.threads = (int)v; break;
        case 'b': bad = cli_parse_int("--batch-size", optarg, 1, 4096, &v); o.batch_size = (int)v; break;
        case 's': bad = cli_parse_int("--image-size", optarg, 8, 512, &v); o.image_size = (int)v; break;
        case 'c':
            bad = cli_parse_int("--in-channels", optarg, 1, 3, &v) || v == 2;
            if (v == 2) fprintf(stderr, "coretune: --in-channels must be 1 or 3\n");
            o.in_channels = (int)v;
            break;
        case 'h': fputs(USAGE, stdout); return CLI_OK;
        default: return CLI_EUSAGE;
        }
        if (bad) return CLI_EUSAGE;
    }
    if (optind != argc - 2) {
        fputs(USAGE, stderr);
        return CLI_EUSAGE;
    }
    const char *model = argv[optind], *data = argv[optind + 1];
    tr_eval_result r;
    char err[1024] = "";
    int rc = tr_evaluate(model, data, &o, &r, err, sizeof err);
    if (rc) {
        fprintf(stderr, "coretune: %s\n", err[0] ? err : "evaluation failed");
        return CLI_EFAIL;
    }
    json_t *line = json_pack("{s:s, s:f, s:f, s:i}", "type", "eval", "accuracy", r.accuracy, "loss", r.loss,
                             "images", r.images);
    char *text = line ? json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(line);
    if (!text) { /* a loss that is not finite is an error of tr_evaluate, so this is memory */
        fprintf(stderr, "coretune: out of memory\n");
        return CLI_EFAIL;
    }
    int ok = printf("%s\n", text) > 0 && fflush(stdout) == 0;
    free(text);
    if (!ok) {
        fprintf(stderr, "coretune: cannot write the result\n");
        return CLI_EFAIL;
    }
    return CLI_OK;
}
