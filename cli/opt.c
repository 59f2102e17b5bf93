/* cli/opt.c — option values (see opt.h). Single-threaded; messages on stderr. */
#include "cli/opt.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "coretune: %s wants a whole number from %ld to %ld, not '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}
