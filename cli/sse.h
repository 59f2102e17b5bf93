/* cli/sse.h — following one of the daemon's event streams (server-sent events, `?stream=true`) to
 * its `end` event: the line parser, one callback per complete event, and reconnects with Last-Event-ID
 * while the daemon restarts (given up after 60 s without a connection). `coretune logs -f` and
 * `coretune sweep logs -f` print through it. Single-threaded: the parser runs inside libcurl's write
 * callback (a cli_http sink). Failures print one line to stderr and return an exit code (cli.h). */
#ifndef CT_CLI_SSE_H
#define CT_CLI_SSE_H
#include "cli/client.h"
#include <jansson.h>
#include <stddef.h>

typedef struct cli_sse_handlers {
    /* One event: its data parsed as a JSON object (borrowed for the call; data that is not one, a newer
     * daemon's extension, is skipped) and as the daemon sent it (raw, len bytes, for --json). */
    void (*event)(void *ud, const json_t *ev, const char *raw, size_t len);
    /* Called before the follower reports a refused reply or a lost connection on stderr, so a progress
     * bar can clear itself first; or NULL. */
    void (*notice)(void *ud);
    void *ud;
} cli_sse_handlers;

/* GETs path (escaped, with its ?stream=true) and passes each event to h until the stream's `end` event,
 * reconnecting from the last complete event when the connection drops or the stream closes early.
 * `what` names the stream's object in messages (cli_fail_resp). Writes nothing on stdout itself.
 * Returns CLI_OK once `end` arrived, CLI_EFAIL when interrupted (SIGINT) or sent a line over 1 MiB,
 * CLI_ECONNECT when the daemon stayed unreachable for 60 s, or the exit code of a non-2xx reply. */
int cli_sse_follow(cli_conn *c, const char *path, const char *what, const cli_sse_handlers *h);

#endif
