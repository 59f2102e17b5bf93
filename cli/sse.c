/* cli/sse.c — the event-stream follower (see sse.h): the wire format api/sse.c writes (`id:`, `event:`,
 * `data:` lines, a blank line ends an event, `:` lines are keep-alives, `event: end` closes the stream),
 * parsed as it arrives inside cli_http's sink, and the reconnect loop around it. A half-received event
 * is dropped on reconnect and received again, because Last-Event-ID names the last complete one.
 * Single-threaded; messages on stderr. */
#include "cli/sse.h"
#include "common/util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE_MAX_BYTES (1u << 20) /* one SSE line; the daemon's events are far smaller */
#define RECONNECT_GIVE_UP_S 60.0

typedef struct parser {
    const cli_sse_handlers *h;
    char *line;
    size_t llen, lcap;
    char *data;
    size_t dlen, dcap;
    char event[64], id[128];
    char last_id[128]; /* the last complete event's id: Last-Event-ID on reconnect */
    int ended, overflow, saw_field;
} parser;

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    if (!cli_interrupted) nanosleep(&ts, NULL);
}

static void notice(const parser *p)
{
    if (p->h->notice) p->h->notice(p->h->ud);
}

static int append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > LINE_MAX_BYTES) return -1;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *len + n + 1) c *= 2;
        char *b = realloc(*buf, c);
        if (!b) return -1;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

static void reset_event(parser *p)
{
    p->dlen = 0;
    if (p->data) p->data[0] = 0;
    p->event[0] = p->id[0] = 0;
    p->saw_field = 0;
}

static void dispatch(parser *p)
{
    json_t *ev = json_loadb(p->data, p->dlen, 0, NULL);
    if (json_is_object(ev)) p->h->event(p->h->ud, ev, p->data, p->dlen);
    json_decref(ev);
}

/* One complete line (without its newline). Returns non-zero once the stream's `end` event arrived. */
static int on_line(parser *p, char *s, size_t n)
{
    if (n && s[n - 1] == '\r') s[--n] = 0;
    if (n == 0) { /* dispatch */
        int end = !strcmp(p->event, "end");
        if (p->saw_field && !end && p->dlen) dispatch(p);
        if (p->saw_field && p->id[0]) snprintf(p->last_id, sizeof p->last_id, "%s", p->id);
        reset_event(p);
        if (end) p->ended = 1;
        return end;
    }
    if (s[0] == ':') return 0; /* comment: keep-alive */
    char *colon = memchr(s, ':', n);
    const char *val = "";
    if (colon) {
        *colon = 0;
        val = colon + 1;
        if (*val == ' ') val++;
    }
    p->saw_field = 1;
    if (!strcmp(s, "data")) {
        if (p->dlen) append(&p->data, &p->dlen, &p->dcap, "\n", 1);
        if (append(&p->data, &p->dlen, &p->dcap, val, strlen(val)) != 0) p->overflow = 1;
    } else if (!strcmp(s, "event")) {
        snprintf(p->event, sizeof p->event, "%s", val);
    } else if (!strcmp(s, "id")) {
        snprintf(p->id, sizeof p->id, "%s", val);
    }
    return 0;
}

static int on_bytes(void *ud, const char *b, size_t n)
{
    parser *p = ud;
    while (n) {
        const char *nl = memchr(b, '\n', n);
        size_t k = nl ? (size_t)(nl - b) : n;
        if (append(&p->line, &p->llen, &p->lcap, b, k) != 0) {
            p->overflow = 1;
            return 1;
        }
        if (!nl) break;
        int end = on_line(p, p->line, p->llen);
        p->llen = 0;
        if (end) return 1;
        b += k + 1;
        n -= k + 1;
    }
    return 0;
}

int cli_sse_follow(cli_conn *c, const char *path, const char *what, const cli_sse_handlers *h)
{
    parser p = {.h = h};
    cli_resp r;
    double lost_since = 0, backoff = 0.25;
    int said_lost = 0, rc = CLI_OK;
    while (!p.ended && !cli_interrupted) {
        char lei[160];
        const char *hdrs[3] = {"Accept: text/event-stream", NULL, NULL};
        if (p.last_id[0]) {
            snprintf(lei, sizeof lei, "Last-Event-ID: %s", p.last_id);
            hdrs[1] = lei;
        }
        p.llen = 0;
        reset_event(&p); /* a half-received event is received again after the reconnect */
        cli_req req = {.headers = hdrs, .sink = on_bytes, .ud = &p, .stream = 1};
        rc = cli_http(c, "GET", path, &req, &r, 1);
        if (cli_interrupted) break;
        if (p.overflow) {
            fprintf(stderr, "coretune: the event stream sent a line longer than %u bytes\n", LINE_MAX_BYTES);
            rc = CLI_EFAIL;
            break;
        }
        int retry = rc == CLI_ECONNECT || (rc == CLI_OK && r.status == 503);
        if (rc == CLI_OK && !retry && (r.status < 200 || r.status >= 300)) {
            notice(&p);
            rc = cli_fail_resp(c, &r, what);
            cli_resp_free(&r);
            break;
        }
        cli_resp_free(&r);
        if (p.ended) break;
        if (retry) { /* the daemon is restarting (or gone): try again for a while */
            if (lost_since == 0) lost_since = util_mono();
            if (util_mono() - lost_since > RECONNECT_GIVE_UP_S) {
                notice(&p);
                fprintf(stderr, "coretune: lost the connection to %s and could not reconnect for %.0f s\n",
                        cli_conn_where(c), RECONNECT_GIVE_UP_S);
                rc = CLI_ECONNECT;
                break;
            }
            if (!said_lost) {
                notice(&p);
                fprintf(stderr, "coretune: connection to %s lost; reconnecting...\n", cli_conn_where(c));
                said_lost = 1;
            }
            sleep_s(backoff);
            backoff = fmin(backoff * 2, 5.0);
        } else { /* the stream closed without `end`: the daemon is shutting down; pick up where we were */
            lost_since = 0;
            backoff = 0.25;
            said_lost = 0;
            sleep_s(0.2);
        }
        rc = CLI_OK;
    }
    free(p.line);
    free(p.data);
    return cli_interrupted ? CLI_EFAIL : rc;
}
