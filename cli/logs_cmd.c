/* cli/logs_cmd.c — `coretune logs ID [-f]`: a job's events, and with -f its live stream (server-sent
 * events, `?stream=true`), reconnecting with Last-Event-ID when the connection drops (daemon restart).
 * On a terminal the metrics events drive a one-line progress bar (step/total, epoch, losses, images/s,
 * ETA) with the other events printed above it; otherwise every event is one plain line (with --json,
 * one event object per line). Exits when the job ends: 0 succeeded, 1 failed or cancelled.
 * Single-threaded: the SSE parser runs inside libcurl's write callback. */
#include "cli/client.h"
#include "cli/fmt.h"
#include "common/util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define JOBS "/v1/fine_tuning/jobs"
#define LINE_MAX_BYTES (1u << 20) /* one SSE line; the daemon's events are far smaller */
#define WINDOW 256                /* metrics events kept for the ETA's rate */
#define RECONNECT_GIVE_UP_S 60.0

typedef struct follower {
    const cli_global *g;
    int tty;
    /* SSE parser */
    char *line;
    size_t llen, lcap;
    char *data;
    size_t dlen, dcap;
    char event[64], id[128];
    char last_id[128];  /* the last complete event's id: Last-Event-ID on reconnect */
    int ended, overflow, saw_field;
    /* progress */
    char status[32];
    double step, total, epoch, epochs, train, ce, con, ips, est_finish;
    int have_metrics, bar_shown;
    double last_draw;
    struct { double t, step; } win[WINDOW];
    int wn, wpos;
} follower;

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    if (!cli_interrupted) nanosleep(&ts, NULL);
}

static int term_cols(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
    return 80;
}

/* ---------------- output ---------------- */

/* One event as "TIME  TYPE  MESSAGE" (level shown when not info). */
static void print_event_line(const json_t *ev)
{
    char t[40], msg[512];
    const char *type = cli_jstr(ev, "type"), *level = cli_jstr(ev, "level"), *m = cli_jstr(ev, "message");
    if (!m) m = cli_fmt_value(msg, sizeof msg, json_object_get(ev, "data"));
    cli_fmt_time(t, sizeof t, json_object_get(ev, "created_at"));
    if (level && strcmp(level, "info"))
        printf("%s  %-10s  [%s] %s\n", t, type ? type : "-", level, m);
    else
        printf("%s  %-10s  %s\n", t, type ? type : "-", m);
}

static double eta_seconds(const follower *f)
{
    if (f->total > 0 && f->step >= f->total) return 0;
    if (f->wn >= 2) { /* the training rate over the last minute, by the events' own timestamps */
        int newest = (f->wpos + WINDOW - 1) % WINDOW;
        double t1 = f->win[newest].t, s1 = f->win[newest].step;
        for (int k = f->wn - 1; k >= 1; k--) {
            int i = (f->wpos + WINDOW - 1 - k) % WINDOW;
            if (t1 - f->win[i].t <= 60 && t1 - f->win[i].t >= 2 && s1 > f->win[i].step)
                return (f->total - s1) * (t1 - f->win[i].t) / (s1 - f->win[i].step);
        }
    }
    if (f->est_finish > 0) return f->est_finish - (double)time(NULL);
    return NAN;
}

static void draw_bar(follower *f)
{
    int cols = term_cols();
    char line[512], bar[64], eta[32], ep[32], loss[96], ips[32];
    int bw = cols >= 120 ? 24 : cols >= 90 ? 16 : 10;
    double frac = f->total > 0 ? fmin(1.0, fmax(0.0, f->step / f->total)) : 0;
    int filled = (int)(frac * bw + 0.5);
    for (int i = 0; i < bw; i++) bar[i] = i < filled ? '#' : '-';
    bar[bw] = 0;
    if (!strcmp(f->status, "paused") || !strcmp(f->status, "queued")) {
        snprintf(eta, sizeof eta, "%s", f->status);
    } else {
        char d[24];
        snprintf(eta, sizeof eta, "ETA %s", cli_fmt_duration(d, sizeof d, eta_seconds(f)));
    }
    if (f->epochs > 0) snprintf(ep, sizeof ep, "%.0f/%.0f", f->epoch, f->epochs);
    else snprintf(ep, sizeof ep, "%.0f", f->epoch);
    if (isfinite(f->ips)) snprintf(ips, sizeof ips, "%.0f img/s", f->ips);
    else snprintf(ips, sizeof ips, "- img/s");
    /* the full line when it fits; on a narrow terminal the ce/contrastive terms go first, then the tail */
    for (int full = 1; full >= 0; full--) {
        if (full) snprintf(loss, sizeof loss, "loss %.4f (ce %.4f, con %.4f)", f->train, f->ce, f->con);
        else snprintf(loss, sizeof loss, "loss %.4f", f->train);
        int n = snprintf(line, sizeof line, "[%s] %.0f/%.0f %3.0f%%  epoch %s  %s  %s  %s", bar, f->step, f->total,
                         100 * frac, ep, loss, ips, eta);
        if (n < cols) break;
    }
    if ((int)strlen(line) >= cols) line[cols - 1] = 0; /* never wrap: \r must return to the bar's own line */
    printf("\r%s\033[K", line);
    fflush(stdout);
    f->bar_shown = 1;
    f->last_draw = util_mono();
}

static void clear_bar(follower *f)
{
    if (f->bar_shown) printf("\r\033[K");
    f->bar_shown = 0;
}

static void on_event(follower *f, const char *raw, size_t rawlen)
{
    json_t *ev = json_loadb(raw, rawlen, 0, NULL);
    if (!json_is_object(ev)) {
        json_decref(ev);
        return; /* not an event object: a newer daemon's extension, tolerated */
    }
    const char *type = cli_jstr(ev, "type");
    json_t *d = json_object_get(ev, "data");
    type = type ? type : "";
    if (!strcmp(type, "metrics")) {
        f->step = cli_jnum(d, "step", f->step);
        f->total = cli_jnum(d, "total_steps", f->total);
        f->epoch = cli_jnum(d, "epoch", f->epoch);
        f->train = cli_jnum(d, "train_loss", NAN);
        f->ce = cli_jnum(d, "ce_loss", NAN);
        f->con = cli_jnum(d, "contrastive_loss", NAN);
        f->ips = cli_jnum(d, "images_per_second", NAN);
        f->have_metrics = 1;
        double t = cli_jnum(ev, "created_at", NAN);
        if (isfinite(t)) {
            f->win[f->wpos].t = t;
            f->win[f->wpos].step = f->step;
            f->wpos = (f->wpos + 1) % WINDOW;
            if (f->wn < WINDOW) f->wn++;
        }
    } else if (!strcmp(type, "validation")) {
        f->epochs = cli_jnum(d, "epochs", f->epochs);
    } else if (!strcmp(type, "status") && cli_jstr(d, "status")) {
        snprintf(f->status, sizeof f->status, "%s", cli_jstr(d, "status"));
    }

    if (f->g->json) {
        fwrite(raw, 1, rawlen, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    } else if (!f->tty) {
        print_event_line(ev);
        fflush(stdout);
    } else if (!strcmp(type, "metrics")) {
        if (util_mono() - f->last_draw >= 0.1) draw_bar(f); /* a replay of thousands of steps: redraw at 10 Hz */
    } else {
        clear_bar(f);
        print_event_line(ev);
        if (f->have_metrics) draw_bar(f);
        else fflush(stdout);
    }
    json_decref(ev);
}

/* ---------------- SSE parsing ---------------- */

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

static void reset_event(follower *f)
{
    f->dlen = 0;
    if (f->data) f->data[0] = 0;
    f->event[0] = f->id[0] = 0;
    f->saw_field = 0;
}

/* One complete line (without its newline). Returns non-zero once the stream's `end` event arrived. */
static int on_line(follower *f, char *s, size_t n)
{
    if (n && s[n - 1] == '\r') s[--n] = 0;
    if (n == 0) { /* dispatch */
        int end = !strcmp(f->event, "end");
        if (f->saw_field && !end && f->dlen) on_event(f, f->data, f->dlen);
        if (f->saw_field && f->id[0]) snprintf(f->last_id, sizeof f->last_id, "%s", f->id);
        reset_event(f);
        if (end) f->ended = 1;
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
    f->saw_field = 1;
    if (!strcmp(s, "data")) {
        if (f->dlen) append(&f->data, &f->dlen, &f->dcap, "\n", 1);
        if (append(&f->data, &f->dlen, &f->dcap, val, strlen(val)) != 0) f->overflow = 1;
    } else if (!strcmp(s, "event")) {
        snprintf(f->event, sizeof f->event, "%s", val);
    } else if (!strcmp(s, "id")) {
        snprintf(f->id, sizeof f->id, "%s", val);
    }
    return 0;
}

static int on_bytes(void *ud, const char *p, size_t n)
{
    follower *f = ud;
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        if (append(&f->line, &f->llen, &f->lcap, p, k) != 0) {
            f->overflow = 1;
            return 1;
        }
        if (!nl) break;
        int end = on_line(f, f->line, f->llen);
        f->llen = 0;
        if (end) return 1;
        p += k + 1;
        n -= k + 1;
    }
    return 0;
}

/* ---------------- following ---------------- */

static int fetch_job(cli_conn *c, const char *esc, cli_resp *r, const char *id)
{
    char path[512];
    snprintf(path, sizeof path, JOBS "/%s", esc);
    return cli_call(c, "GET", path, NULL, r, id);
}

int cli_follow(cli_conn *c, const cli_global *g, const char *job_id)
{
    char esc[400], path[600];
    if (cli_escape(esc, sizeof esc, job_id) != 0) {
        fprintf(stderr, "coretune: job id too long\n");
        return CLI_EUSAGE;
    }
    follower f = {.g = g, .tty = isatty(STDOUT_FILENO) && !g->json, .train = NAN, .ce = NAN, .con = NAN, .ips = NAN};
    cli_resp r;
    int rc = fetch_job(c, esc, &r, job_id);
    if (rc != CLI_OK) return rc;
    json_t *p = json_object_get(r.json, "progress");
    f.epochs = cli_jnum(p, "epochs", 0);
    f.total = cli_jnum(p, "total_steps", 0);
    f.est_finish = cli_jnum(r.json, "estimated_finish", 0);
    snprintf(f.status, sizeof f.status, "%s", cli_jstr(r.json, "status") ? cli_jstr(r.json, "status") : "");
    cli_resp_free(&r);

    snprintf(path, sizeof path, JOBS "/%s/events?stream=true", esc);
    double lost_since = 0, backoff = 0.25;
    int said_lost = 0;
    rc = CLI_OK;
    while (!f.ended && !cli_interrupted) {
        char lei[160];
        const char *hdrs[3] = {"Accept: text/event-stream", NULL, NULL};
        if (f.last_id[0]) {
            snprintf(lei, sizeof lei, "Last-Event-ID: %s", f.last_id);
            hdrs[1] = lei;
        }
        f.llen = 0;
        reset_event(&f); /* a half-received event is received again after the reconnect */
        cli_req req = {.headers = hdrs, .sink = on_bytes, .ud = &f, .stream = 1};
        rc = cli_http(c, "GET", path, &req, &r, 1);
        if (cli_interrupted) break;
        if (f.overflow) {
            fprintf(stderr, "coretune: the event stream sent a line longer than %u bytes\n", LINE_MAX_BYTES);
            rc = CLI_EFAIL;
            break;
        }
        int retry = rc == CLI_ECONNECT || (rc == CLI_OK && r.status == 503);
        if (rc == CLI_OK && !retry && (r.status < 200 || r.status >= 300)) {
            clear_bar(&f);
            rc = cli_fail_resp(c, &r, job_id);
            cli_resp_free(&r);
            break;
        }
        cli_resp_free(&r);
        if (f.ended) break;
        if (retry) { /* the daemon is restarting (or gone): try again for a while */
            if (lost_since == 0) lost_since = util_mono();
            if (util_mono() - lost_since > RECONNECT_GIVE_UP_S) {
                clear_bar(&f);
                fprintf(stderr, "coretune: lost the connection to %s and could not reconnect for %.0f s\n",
                        cli_conn_where(c), RECONNECT_GIVE_UP_S);
                rc = CLI_ECONNECT;
                break;
            }
            if (!said_lost) {
                clear_bar(&f);
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
    if (f.tty && f.have_metrics && f.bar_shown) {
        draw_bar(&f);
        printf("\n");
    }
    fflush(stdout);
    free(f.line);
    free(f.data);
    if (cli_interrupted) return CLI_EFAIL;
    if (rc != CLI_OK) return rc;

    /* the stream ended: the job is final. Its status decides the exit code. */
    const char *st = f.status;
    int got = fetch_job(c, esc, &r, job_id) == CLI_OK;
    if (got && cli_jstr(r.json, "status")) st = cli_jstr(r.json, "status");
    rc = !strcmp(st, "succeeded") ? CLI_OK : CLI_EFAIL;
    if (!g->json) {
        const char *model = got ? cli_jstr(r.json, "fine_tuned_model") : NULL;
        json_t *err = got ? json_object_get(r.json, "error") : NULL;
        FILE *o = rc == CLI_OK ? stdout : stderr;
        fprintf(o, "%s %s", job_id, st[0] ? st : "ended");
        if (model) fprintf(o, ": %s", model);
        if (cli_jstr(err, "message")) fprintf(o, ": %s", cli_jstr(err, "message"));
        fprintf(o, "\n");
    }
    if (got) cli_resp_free(&r);
    return rc;
}

/* ---------------- logs ---------------- */

static const char LOGS_USAGE[] = "logs ID [-f|--follow] [--json]";

int cli_logs(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {{"follow", no_argument, 0, 'f'}, CLI_COMMON_OPTS, {0, 0, 0, 0}};
    int follow = 0, c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f", longopts, NULL)) != -1) {
        if (c == 'f') {
            follow = 1;
            continue;
        }
        rc = cli_common_opt(g, c);
        if (rc == 1) {
            printf("usage: coretune %s\n", LOGS_USAGE);
            return CLI_OK;
        }
        if (rc) return cli_usage_error(LOGS_USAGE);
    }
    if (optind != argc - 1) return cli_usage_error(LOGS_USAGE);
    const char *id = argv[optind];
    char esc[400], path[1024];
    if (cli_escape(esc, sizeof esc, id) != 0) return cli_usage_error(LOGS_USAGE);
    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) return rc;
    if (follow) {
        rc = cli_follow(conn, g, id);
        cli_conn_close(conn);
        return rc;
    }

    json_t *merged = NULL; /* --json: every page's data in one envelope */
    char after[160] = "";
    for (;;) {
        char aesc[400] = "";
        if (after[0]) cli_escape(aesc, sizeof aesc, after);
        snprintf(path, sizeof path, JOBS "/%s/events?limit=1000%s%s", esc, aesc[0] ? "&after=" : "", aesc);
        cli_resp r;
        if ((rc = cli_call(conn, "GET", path, NULL, &r, id)) != CLI_OK) break;
        json_t *data = json_object_get(r.json, "data");
        size_t i, n = json_array_size(data);
        json_t *ev;
        if (g->json) {
            if (!merged) merged = json_incref(r.json);
            else json_array_extend(json_object_get(merged, "data"), data);
        } else {
            json_array_foreach(data, i, ev) print_event_line(ev);
        }
        const char *last = n ? cli_jstr(json_array_get(data, n - 1), "id") : NULL;
        int more = json_is_true(json_object_get(r.json, "has_more")) && last;
        if (last) snprintf(after, sizeof after, "%s", last);
        cli_resp_free(&r);
        if (!more) break;
    }
    if (rc == CLI_OK && merged) {
        json_t *d = json_object_get(merged, "data");
        json_object_set_new(merged, "has_more", json_false());
        json_object_set(merged, "last_id",
                        json_array_size(d) ? json_object_get(json_array_get(d, json_array_size(d) - 1), "id") : json_null());
        cli_print_json(merged);
    }
    json_decref(merged);
    fflush(stdout);
    cli_conn_close(conn);
    return rc;
}
