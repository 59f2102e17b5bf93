/* cli/coretune.c — the command-line tool's entry point: global options (--url, --token, --json, which
 * may also follow the sub-command) and dispatch to a sub-command. `train` runs a job and `eval`
 * evaluates a model locally; the others talk to the daemon (cli/client.h). Exit codes: enum cli_exit
 * in cli/cli.h; 130 after Ctrl-C. */
#include "cli/cli.h"
#include "cli/client.h"
#include "common/version.h"
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: coretune [--url URL] [--token TOKEN] [--json] COMMAND [ARGS]\n"
            "       coretune --version | --help\n"
            "\n"
            "jobs:\n"
            "  submit SPEC.json|-  [--suffix S] [--idempotency-key K] [--follow]   create a job from a spec\n"
            "  submit --model M --training-file F [--validation-file F] [--method core_tuning|ce_tuning|simclr]\n"
            "         [--epochs N] [--batch-size N] [--lr X] [--seed N] [--variant paper|reference]\n"
            "         [--threads N] [--set PATH=VALUE]...                        ... or from flags\n"
            "  list [--limit N] [--all]          jobs, newest first\n"
            "  show ID                           one job\n"
            "  logs ID [-f]                      its events; -f follows them live until the job ends\n"
            "  cancel|pause|resume ID...         change a job's state\n"
            "  metrics ID [--names a,b] [--max-points N]   metric series\n"
            "sweeps (a grid or random search; each trial is a job):\n"
            "  sweep submit SPEC.json|- [--follow]   start one; --follow streams it, then the leaderboard\n"
            "  sweep list [--limit N] [--all]    sweeps, newest first\n"
            "  sweep show ID                     one sweep and its leaderboard (best marked *)\n"
            "  sweep logs ID [-f]                its events; -f follows them until it ends\n"
            "  sweep cancel ID...                cancel a sweep and its trials\n"
            "models and data:\n"
            "  models                            base architectures, backbones, fine-tuned models\n"
            "  download ID|MODEL [-o FILE] [--best]   a produced model's weights (safetensors)\n"
            "  datasets                          datasets a job can name\n"
            "  upload FILE|DIR [LABELS] [--purpose fine-tune]   upload a dataset: a folder of class folders\n"
            "                                    (sent as tar.gz), an archive of one, a CIFAR batch, an IDX pair\n"
            "local:\n"
            "  train SPEC.json --out DIR [--resume] [--threads N]   run one job here, without the daemon\n"
            "  eval MODEL.safetensors DATA [--limit N] [--threads N] [--batch-size N] [--image-size N]\n"
            "       [--in-channels N]             a trained model's accuracy and loss on DATA, here\n"
            "\n"
            "The daemon: --url > CORETUNE_URL > url in ~/.config/coretune/config > /run/coretuned/coretuned.sock >\n"
            "./var/coretuned.sock > http://127.0.0.1:8080 (URL: unix:/path/to/sock or http://host:port).\n"
            "Token: --token > CORETUNE_TOKEN > token in the config file (not needed over the Unix socket).\n"
            "Exit codes: 0 ok, 1 refused or job failed, 2 usage or spec error, 3 cannot connect, 4 not found,\n"
            "5 authentication. See coretune(1).\n");
}

static const struct {
    const char *name;
    int (*fn)(cli_global *g, int argc, char **argv);
} commands[] = {
    {"submit", cli_submit}, {"list", cli_list},       {"show", cli_show},         {"logs", cli_logs},
    {"cancel", cli_action}, {"pause", cli_action},    {"resume", cli_action},     {"metrics", cli_metrics},
    {"models", cli_models}, {"download", cli_download}, {"datasets", cli_datasets}, {"upload", cli_upload},
    {"sweep", cli_sweep},
};

int main(int argc, char **argv)
{
    cli_global g = {0};
    int i = 1;
    /* global options before the command */
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--version")) {
            printf("coretune %s\n", CORETUNED_VERSION);
            return CLI_OK;
        } else if (!strcmp(a, "--json")) {
            g.json = 1;
        } else if ((!strcmp(a, "--url") || !strcmp(a, "--token")) && i + 1 < argc) {
            *(a[2] == 'u' ? &g.url : &g.token) = argv[++i];
        } else if (!strncmp(a, "--url=", 6)) {
            g.url = a + 6;
        } else if (!strncmp(a, "--token=", 8)) {
            g.token = a + 8;
        } else {
            fprintf(stderr, "coretune: unknown option '%s'\n", a);
            usage(stderr);
            return CLI_EUSAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CLI_EUSAGE;
    }
    const char *cmd = argv[i];
    if (!strcmp(cmd, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "train")) return cli_train(argc - i, argv + i);
    if (!strcmp(cmd, "eval")) return cli_eval(argc - i, argv + i);
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
        if (!strcmp(cmd, commands[k].name)) {
            int rc = commands[k].fn(&g, argc - i, argv + i);
            return cli_interrupted ? 130 : rc;
        }
    fprintf(stderr, "coretune: unknown command '%s' (coretune --help lists them)\n", cmd);
    return CLI_EUSAGE;
}
