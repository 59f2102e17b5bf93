/* daemon/admin.h — the offline admin commands (daemon/admin.c). */
#ifndef CORETUNED_ADMIN_H
#define CORETUNED_ADMIN_H
#include "daemon/options.h"

int admin_is_command(const char *word);                 /* "user" or "token" */
int admin_run(daemon_opts *o, int argc, char **argv);   /* argv[0] the command; the exit status */

#endif
