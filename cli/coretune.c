/* cli/coretune.c — the command-line tool's entry point: dispatches to a sub-command. */
#include "cli/cli.h"
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: coretune COMMAND [ARGS]\n"
               "  train SPEC.json --out DIR [--resume] [--threads N]   run one job locally\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return 2; }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) { usage(stdout); return 0; }
    if (strcmp(argv[1], "train") == 0) return cli_train(argc - 1, argv + 1);
    fprintf(stderr, "coretune: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
