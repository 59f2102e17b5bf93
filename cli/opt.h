/* cli/opt.h — option values every coretune sub-command parses alike, the local ones (train, eval) and
 * those that talk to the daemon. Single-threaded; a bad value prints one line to stderr. */
#ifndef CT_CLI_OPT_H
#define CT_CLI_OPT_H

/* Parses a whole decimal integer in [lo, hi] into OUT *out; returns 0, or -1 after saying which option
 * was wrong and what it wants. */
int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);

#endif
