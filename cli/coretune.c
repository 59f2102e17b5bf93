/* cli/coretune.c — the command-line tool: `coretune train SPEC.json --out DIR` runs one job locally. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: coretune train SPEC.json --out DIR [--resume]\n");
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "coretune: unknown command '%s'\n", argv[1]);
    return 2;
}
