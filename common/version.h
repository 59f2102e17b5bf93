/* common/version.h — the one definition of coretuned's version: the daemon (--version, /healthz,
 * its start-up line), the CLI (--version) and, through the Makefile, the installed man pages. */
#ifndef CT_VERSION_H
#define CT_VERSION_H

#define CORETUNED_VERSION "0.2.0"

#endif
