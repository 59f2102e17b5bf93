/* cli/logs_cmd.c — `coretune logs ID [-f]`: a job's events, and with -f its live stream (server-sent
 * events, read by cli/sse.h, which reconnects with Last-Event-ID when the connection drops).
 * On a terminal the metrics events drive a one-line progress bar (step/total, epoch, losses, images/s,
 * ETA) with the other events printed above it; otherwise every event is one plain line (with --json,
 * one event object per line). Exits when the job ends: 0 succeeded, 1 failed or cancelled.
 * Single-threaded: the events arrive inside libcurl's write callback. */
#include "cli/client.h"
#include "cli/fmt.h"
#include "cli/pages.h"
#include "cli/resource.h"
#include "cli/sse.h"
#include "common/util.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define JOBS "/v1/fine_tuning/jobs"
#define WINDOW 256 /* metrics events kept for the ETA's rate */

typedef struct follower {
    const cli_global *g;
    int tty;
    /* progress */
    char status[32];
    double step, total, epoch, epochs, train, ce, con, ips, est_finish;
    int have_metrics, bar_shown;
    double last_draw;
    struct { double t, step; } win[WINDOW];
    int wn, wpos;
} follower;

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

static void clear_bar(void *ud)
{
    follower *f = ud;
    if (f->bar_shown) printf("\r\033[K");
    f->bar_shown = 0;
}

static void on_event(void *ud, const json_t *ev, const char *raw, size_t rawlen)
{
    follower *f = ud;
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
}

/* ---------------- following ---------------- */

static const cli_resource JOB = {JOBS, "job"};

int cli_follow(cli_conn *c, const cli_global *g, const char *job_id)
{
    char esc[400], path[600];
    if (cli_escape(esc, sizeof esc, job_id) != 0) {
        fprintf(stderr, "coretune: job id too long\n");
        return CLI_EUSAGE;
    }
    follower f = {.g = g, .tty = isatty(STDOUT_FILENO) && !g->json, .train = NAN, .ce = NAN, .con = NAN, .ips = NAN};
    cli_resp r;
    int rc = cli_resource_get(c, &JOB, job_id, &r);
    if (rc != CLI_OK) return rc;
    json_t *p = json_object_get(r.json, "progress");
    f.epochs = cli_jnum(p, "epochs", 0);
    f.total = cli_jnum(p, "total_steps", 0);
    f.est_finish = cli_jnum(r.json, "estimated_finish", 0);
    snprintf(f.status, sizeof f.status, "%s", cli_jstr(r.json, "status") ? cli_jstr(r.json, "status") : "");
    cli_resp_free(&r);

    snprintf(path, sizeof path, JOBS "/%s/events?stream=true", esc);
    rc = cli_sse_follow(c, path, job_id, &(cli_sse_handlers){.event = on_event, .notice = clear_bar, .ud = &f});
    if (f.tty && f.have_metrics && f.bar_shown) {
        draw_bar(&f);
        printf("\n");
    }
    fflush(stdout);
    if (rc != CLI_OK) return rc;

    /* the stream ended: the job is final. Its status decides the exit code. */
    const char *st = f.status;
    int got = cli_resource_get(c, &JOB, job_id, &r) == CLI_OK;
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

/* print_event_line for cli_pages_read. */
static void print_item(void *ud, const json_t *ev)
{
    (void)ud;
    print_event_line(ev);
}

/* The job's events so far (all of them, a thousand a page). */
static int list_events(cli_conn *c, const cli_global *g, const char *id)
{
    char esc[400], path[600];
    if (cli_escape(esc, sizeof esc, id) != 0) return cli_usage_error(LOGS_USAGE);
    snprintf(path, sizeof path, JOBS "/%s/events", esc);
    cli_pages p = {.path = path, .limit = 1000, .all = 1, .what = id, .item = print_item};
    int rc = cli_pages_read(c, g, &p);
    fflush(stdout);
    return rc;
}

int cli_logs(cli_global *g, int argc, char **argv)
{
    return cli_resource_logs(g, argc, argv, LOGS_USAGE, cli_follow, list_events);
}
