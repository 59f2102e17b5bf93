/* cli/sweep_cmd.c — `coretune sweep submit|list|show|logs|cancel`: hyper-parameter sweeps, a grid or
 * random search over a job body whose trials are ordinary jobs (POST/GET /v1/fine_tuning/sweeps...).
 * `show` prints the sweep's facts and a leaderboard (trials ranked by the objective, the best one
 * marked '*'); `submit --follow` and `logs -f` read the sweep's event stream (server-sent events,
 * through cli/sse.h like `coretune logs -f`) until the sweep ends, then print the leaderboard: exit 0
 * if it succeeded, 1 otherwise. --json prints the API's JSON unchanged.
 * Single-threaded; messages on stderr; the events arrive inside libcurl's write callback. */
#include "cli/client.h"
#include "cli/fmt.h"
#include "cli/opt.h"
#include "cli/pages.h"
#include "cli/resource.h"
#include "cli/sse.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEPS "/v1/fine_tuning/sweeps"

static const cli_resource SWEEP = {SWEEPS, "sweep"};

static const char SWEEP_USAGE[] =
    "sweep submit SPEC.json|- [--suffix S] [--max-parallel N] [--follow]\n"
    "       coretune sweep list [--limit N] [--all]\n"
    "       coretune sweep show ID\n"
    "       coretune sweep logs ID [-f]\n"
    "       coretune sweep cancel ID...\n"
    "(each also takes --json, --url URL, --token T)";

static int is_final(const char *st)
{
    return st && (!strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled"));
}

/* ---------------- parameters and the leaderboard ---------------- */

/* The last k dotted components of path ("hyperparameters.eta" for k = 2), borrowed from path. */
static const char *suffix(const char *path, int k)
{
    const char *p = path + strlen(path);
    while (p > path) {
        if (p[-1] == '.' && --k == 0) return p;
        p--;
    }
    return path;
}

/* The shortest dotted suffix of path that no other key of names shares: "eta" for
 * method.core_tuning.hyperparameters.eta, unless another parameter also ends in ".eta". Borrowed. */
static const char *short_name(const char *path, const json_t *names)
{
    for (int k = 1;; k++) {
        const char *s = suffix(path, k);
        if (s == path) return path;
        int clash = 0;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)names, key, v) {
            (void)v;
            if (strcmp(key, path) && !strcmp(suffix(key, k), s)) clash = 1;
        }
        if (!clash) return s;
    }
}

/* A trial's parameters as "eta=1 learning_rate=0.03" (short names against the sweep's parameters). */
static const char *params_text(char *buf, size_t n, const json_t *params, const json_t *names)
{
    size_t off = 0;
    buf[0] = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)params, key, v) {
        char val[128];
        int w = snprintf(buf + off, n - off, "%s%s=%s", off ? " " : "", short_name(key, json_is_object(names) ? names : params),
                         cli_fmt_value(val, sizeof val, v));
        if (w < 0 || (size_t)w >= n - off) break;
        off += (size_t)w;
    }
    return buf;
}

static int maximize(const json_t *sweep)
{
    const char *goal = cli_jstr(json_object_get(sweep, "objective"), "goal");
    return !goal || strcmp(goal, "minimize");
}

static const char *objective_metric(const json_t *sweep)
{
    const char *m = cli_jstr(json_object_get(sweep, "objective"), "metric");
    return m ? m : "objective";
}

/* Is trial t the sweep's best? Its job, or, when the best is a mean over seeds, any of its seeds' trials. */
static int is_best(const json_t *sweep, const json_t *t)
{
    const json_t *best = json_object_get(sweep, "best");
    const char *bj = cli_jstr(best, "job_id"), *tj = cli_jstr(t, "job_id");
    if (!json_is_object(best)) return 0;
    if (bj && tj && !strcmp(bj, tj)) return 1;
    return json_array_size(json_object_get(best, "seeds")) > 1 && json_object_get(best, "parameters") &&
           json_equal(json_object_get(best, "parameters"), json_object_get(t, "parameters"));
}

typedef struct row {
    const json_t *t;
    double obj;
    int ranked; /* succeeded with an objective: ranked by it; the rest follow in trial order */
    long index;
} row;

/* a before b? Ranked trials first, best objective first (per the goal), ties and the rest by index. */
static int row_before(const row *a, const row *b, int max)
{
    if (a->ranked != b->ranked) return a->ranked;
    if (a->ranked && a->obj != b->obj) return max ? a->obj > b->obj : a->obj < b->obj;
    return a->index < b->index;
}

/* Prints the leaderboard table of a sweep object on stdout. */
static void print_leaderboard(const json_t *sweep)
{
    const json_t *trials = json_object_get(sweep, "trials"), *names = json_object_get(sweep, "parameters");
    size_t n = json_array_size(trials);
    if (n == 0) {
        printf("(no trials)\n");
        return;
    }
    row *rows = calloc(n, sizeof *rows);
    if (!rows) return;
    int max = maximize(sweep);
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_array_get(trials, i);
        json_t *o = json_object_get(t, "objective");
        rows[i].t = t;
        rows[i].obj = json_is_number(o) ? json_number_value(o) : NAN;
        rows[i].ranked = json_is_number(o) && isfinite(rows[i].obj) && cli_jstr(t, "status") &&
                         !strcmp(cli_jstr(t, "status"), "succeeded");
        rows[i].index = (long)cli_jnum(t, "index", (double)i);
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: a sweep has tens of trials, and it is stable */
        for (size_t j = i; j > 0 && row_before(&rows[j], &rows[j - 1], max); j--) {
            row tmp = rows[j];
            rows[j] = rows[j - 1];
            rows[j - 1] = tmp;
        }
    static const char *const heads[] = {"RANK", "TRIAL", "JOB", "PARAMETERS", "SEED", "STATUS", "OBJECTIVE", "EPOCH"};
    cli_table *tab = cli_table_new(8, heads);
    int rank = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *t = rows[i].t;
        char rk[24], idx[24], params[1024], seed[32], obj[32], ep[32];
        snprintf(rk, sizeof rk, "-");
        if (rows[i].ranked) snprintf(rk, sizeof rk, "%d", ++rank);
        if (is_best(sweep, t)) strncat(rk, "*", sizeof rk - strlen(rk) - 1);
        snprintf(idx, sizeof idx, "%ld", rows[i].index);
        params_text(params, sizeof params, json_object_get(t, "parameters"), names);
        cli_fmt_value(seed, sizeof seed, json_object_get(t, "seed"));
        if (isfinite(rows[i].obj)) snprintf(obj, sizeof obj, "%.4f", rows[i].obj);
        else snprintf(obj, sizeof obj, "-");
        cli_fmt_value(ep, sizeof ep, json_object_get(t, "best_epoch"));
        const char *cells[] = {rk, idx, cli_jstr(t, "job_id"), params, seed, cli_jstr(t, "status"), obj, ep};
        cli_table_add(tab, cells);
    }
    cli_table_print(tab, stdout);
    cli_table_free(tab);
    free(rows);
}

/* "3 (2 succeeded, 1 running)": the trials counted by status, in the order a sweep moves through them. */
static const char *trials_text(char *buf, size_t n, const json_t *sweep)
{
    static const char *const order[] = {"succeeded", "running", "paused", "queued", "pending", "failed", "cancelled"};
    const json_t *trials = json_object_get(sweep, "trials");
    size_t off = (size_t)snprintf(buf, n, "%zu", json_array_size(trials)), shown = 0;
    for (size_t k = 0; k < sizeof order / sizeof *order && off < n; k++) {
        size_t c = 0, i;
        json_t *t;
        json_array_foreach(trials, i, t) if (cli_jstr(t, "status") && !strcmp(cli_jstr(t, "status"), order[k])) c++;
        if (c) off += (size_t)snprintf(buf + off, n - off, "%s%zu %s", shown++ ? ", " : " (", c, order[k]);
    }
    if (shown && off < n) snprintf(buf + off, n - off, ")");
    return buf;
}

/* "finished/total" for the list. */
static const char *done_text(char *buf, size_t n, const json_t *sweep)
{
    const json_t *trials = json_object_get(sweep, "trials");
    size_t done = 0, i;
    json_t *t;
    json_array_foreach(trials, i, t) if (is_final(cli_jstr(t, "status"))) done++;
    snprintf(buf, n, "%zu/%zu", done, json_array_size(trials));
    return buf;
}

static const char *search_text(char *buf, size_t n, const json_t *search)
{
    json_t *r = json_object_get(search, "random");
    if (json_is_string(search)) snprintf(buf, n, "%s", json_string_value(search));
    else if (json_is_integer(r) && json_is_number(json_object_get(search, "seed")))
        snprintf(buf, n, "random, %lld trials, seed %.0f", (long long)json_integer_value(r), cli_jnum(search, "seed", 0));
    else if (json_is_integer(r)) snprintf(buf, n, "random, %lld trials", (long long)json_integer_value(r));
    else cli_fmt_value(buf, n, search);
    return buf;
}

/* One parameter's values: "[0.1,1,3]" (numbers as cli_fmt_value writes them), "log_uniform(0.001,0.1)". */
static const char *space_text(char *buf, size_t n, const json_t *v)
{
    const json_t *lu = json_object_get(v, "log_uniform");
    char a[64], b[64];
    if (json_is_array(v)) {
        size_t off = 0, i;
        json_t *x;
        buf[0] = 0;
        json_array_foreach(v, i, x) {
            int w = snprintf(buf + off, n - off, "%s%s", i ? "," : "[", cli_fmt_value(a, sizeof a, x));
            if (w < 0 || (size_t)w >= n - off) return buf;
            off += (size_t)w;
        }
        snprintf(buf + off, n - off, "%s", off ? "]" : "[]");
    } else if (json_object_size(v) == 1 && json_array_size(lu) == 2) {
        snprintf(buf, n, "log_uniform(%s,%s)", cli_fmt_value(a, sizeof a, json_array_get(lu, 0)),
                 cli_fmt_value(b, sizeof b, json_array_get(lu, 1)));
    } else {
        cli_fmt_value(buf, n, v);
    }
    return buf;
}

static void kv(const char *k, const char *v) { printf("%-22s %s\n", k, v && *v ? v : "-"); }

static void show_sweep(const json_t *s)
{
    char b[2048], t[128];
    const json_t *job = json_object_get(s, "job"), *names = json_object_get(s, "parameters");
    kv("id", cli_jstr(s, "id"));
    kv("status", cli_jstr(s, "status"));
    kv("owner", cli_jstr(s, "owner"));
    kv("model", cli_jstr(job, "model"));
    kv("method", cli_jstr(json_object_get(job, "method"), "type"));
    kv("training_file", cli_jstr(job, "training_file"));
    kv("validation_file", cli_jstr(job, "validation_file"));
    kv("test_file", cli_jstr(s, "test_file"));
    kv("search", search_text(b, sizeof b, json_object_get(s, "search")));
    snprintf(b, sizeof b, "%s (%s)", objective_metric(s), maximize(s) ? "maximize" : "minimize");
    kv("objective", b);
    { /* the space searched: "eta=[0.1,1,3] learning_rate=log_uniform(0.001,0.1)" */
        size_t off = 0;
        const char *key;
        json_t *v;
        b[0] = 0;
        json_object_foreach((json_t *)names, key, v) {
            char val[512];
            int w = snprintf(b + off, sizeof b - off, "%s%s=%s", off ? " " : "", short_name(key, names),
                             space_text(val, sizeof val, v));
            if (w < 0 || (size_t)w >= sizeof b - off) break;
            off += (size_t)w;
        }
        kv("parameters", b);
    }
    kv("max_parallel", cli_fmt_value(b, sizeof b, json_object_get(s, "max_parallel")));
    kv("seeds", json_is_array(json_object_get(s, "seeds")) ? cli_fmt_value(b, sizeof b, json_object_get(s, "seeds")) : NULL);
    kv("trials", trials_text(b, sizeof b, s));
    kv("created", cli_fmt_time(b, sizeof b, json_object_get(s, "created_at")));
    kv("finished", cli_fmt_time(b, sizeof b, json_object_get(s, "finished_at")));
    const json_t *best = json_object_get(s, "best");
    if (json_is_object(best)) {
        char p[1024], o[32] = "-";
        double v = cli_jnum(best, "objective", NAN);
        if (isfinite(v)) snprintf(o, sizeof o, "%.4f", v);
        const json_t *seeds = json_object_get(best, "seeds");
        snprintf(b, sizeof b, "%s  %s  %s=%s%s%s", cli_jstr(best, "job_id") ? cli_jstr(best, "job_id") : "-",
                 params_text(p, sizeof p, json_object_get(best, "parameters"), names), objective_metric(s), o,
                 json_array_size(seeds) > 1 ? " (mean over seeds " : "",
                 json_array_size(seeds) > 1 ? cli_fmt_value(t, sizeof t, seeds) : "");
        if (json_array_size(seeds) > 1) strncat(b, ")", sizeof b - strlen(b) - 1);
        kv("best", b);
        if (json_is_number(json_object_get(best, "test_accuracy")))
            kv("test_accuracy", cli_fmt_value(b, sizeof b, json_object_get(best, "test_accuracy")));
    }
    kv("fine_tuned_model", cli_jstr(s, "fine_tuned_model"));
    printf("\n");
    print_leaderboard(s);
}

/* ---------------- events ---------------- */

/* An event's message, or one made from its data when the daemon sent none. */
static const char *event_text(char *buf, size_t n, const json_t *ev, const json_t *names)
{
    const char *m = cli_jstr(ev, "message"), *type = cli_jstr(ev, "type");
    const json_t *d = json_object_get(ev, "data");
    char p[1024], v[64], o[64];
    if (m) return m;
    type = type ? type : "";
    cli_fmt_value(v, sizeof v, json_object_get(d, "index"));
    cli_fmt_value(o, sizeof o, json_object_get(d, "objective"));
    if (!strcmp(type, "trial_started"))
        snprintf(buf, n, "trial %s started: %s %s", v, cli_jstr(d, "job_id") ? cli_jstr(d, "job_id") : "-",
                 params_text(p, sizeof p, json_object_get(d, "parameters"), names));
    else if (!strcmp(type, "trial_finished"))
        snprintf(buf, n, "trial %s %s: objective %s", v, cli_jstr(d, "status") ? cli_jstr(d, "status") : "finished", o);
    else if (!strcmp(type, "new_best"))
        snprintf(buf, n, "new best: trial %s %s objective %s", v,
                 params_text(p, sizeof p, json_object_get(d, "parameters"), names), o);
    else if (!strcmp(type, "status"))
        snprintf(buf, n, "sweep %s", cli_jstr(d, "status") ? cli_jstr(d, "status") : "-");
    else
        cli_fmt_value(buf, n, d);
    return buf;
}

/* One event as "TIME  TYPE            MESSAGE" (level shown when not info). */
static void print_event_line(const json_t *ev, const json_t *names)
{
    char t[40], msg[2048];
    const char *type = cli_jstr(ev, "type"), *level = cli_jstr(ev, "level");
    const char *m = event_text(msg, sizeof msg, ev, names);
    cli_fmt_time(t, sizeof t, json_object_get(ev, "created_at"));
    if (level && strcmp(level, "info"))
        printf("%s  %-14s  [%s] %s\n", t, type ? type : "-", level, m);
    else
        printf("%s  %-14s  %s\n", t, type ? type : "-", m);
}

/* print_event_line for cli_pages_read: ud is the sweep's parameters (borrowed). */
static void print_item(void *ud, const json_t *ev) { print_event_line(ev, ud); }

/* What the follower keeps of the stream. */
typedef struct follower {
    const cli_global *g;
    const json_t *names; /* the sweep's parameters, for short names (borrowed) */
    char status[32];     /* from `status` events */
} follower;

static void on_event(void *ud, const json_t *ev, const char *raw, size_t rawlen)
{
    follower *f = ud;
    const char *type = cli_jstr(ev, "type");
    const char *st = cli_jstr(json_object_get(ev, "data"), "status");
    if (type && !strcmp(type, "status") && st) snprintf(f->status, sizeof f->status, "%s", st);
    if (f->g->json) {
        fwrite(raw, 1, rawlen, stdout);
        fputc('\n', stdout);
    } else {
        print_event_line(ev, f->names);
    }
    fflush(stdout);
}

/* Follows sweep id's events until the sweep ends, then prints the leaderboard and one closing line
 * (stdout if it succeeded, stderr otherwise). Returns CLI_OK if it succeeded, CLI_EFAIL if it failed or
 * was cancelled, or another exit code. */
static int sweep_follow(cli_conn *c, const cli_global *g, const char *sweep_id)
{
    char esc[400], path[600];
    if (cli_escape(esc, sizeof esc, sweep_id) != 0) {
        fprintf(stderr, "coretune: sweep id too long\n");
        return CLI_EUSAGE;
    }
    cli_resp first, r;
    int rc = cli_resource_get(c, &SWEEP, sweep_id, &first);
    if (rc != CLI_OK) return rc;
    follower f = {.g = g, .names = json_object_get(first.json, "parameters")};
    snprintf(f.status, sizeof f.status, "%s", cli_jstr(first.json, "status") ? cli_jstr(first.json, "status") : "");

    snprintf(path, sizeof path, SWEEPS "/%s/events?stream=true", esc);
    rc = cli_sse_follow(c, path, sweep_id, &(cli_sse_handlers){.event = on_event, .ud = &f});
    fflush(stdout);
    if (rc != CLI_OK) {
        cli_resp_free(&first);
        return rc;
    }

    /* the stream ended: the sweep is final. Its status decides the exit code. */
    const char *st = f.status;
    int got = cli_resource_get(c, &SWEEP, sweep_id, &r) == CLI_OK;
    if (got && cli_jstr(r.json, "status")) st = cli_jstr(r.json, "status");
    rc = !strcmp(st, "succeeded") ? CLI_OK : CLI_EFAIL;
    if (!g->json) {
        const json_t *s = got ? r.json : first.json, *best = json_object_get(s, "best");
        FILE *o = rc == CLI_OK ? stdout : stderr;
        printf("\n");
        print_leaderboard(s);
        fflush(stdout);
        fprintf(o, "%s %s", sweep_id, st[0] ? st : "ended");
        if (json_is_object(best)) {
            char p[1024];
            fprintf(o, ": best %s %s %s=%.4f", cli_jstr(best, "job_id") ? cli_jstr(best, "job_id") : "-",
                    params_text(p, sizeof p, json_object_get(best, "parameters"), json_object_get(s, "parameters")),
                    objective_metric(s), cli_jnum(best, "objective", NAN));
        }
        if (cli_jstr(s, "fine_tuned_model")) fprintf(o, ": %s", cli_jstr(s, "fine_tuned_model"));
        fprintf(o, "\n");
    }
    if (got) cli_resp_free(&r);
    cli_resp_free(&first);
    return rc;
}

/* ---------------- submit ---------------- */

/* "ID  STATUS (N trials)" */
static void print_submitted(const json_t *sweep)
{
    const char *status = cli_jstr(sweep, "status");
    printf("%s  %s (%zu trials)\n", cli_jstr(sweep, "id"), status ? status : "-",
           json_array_size(json_object_get(sweep, "trials")));
}

static const char SUBMIT_USAGE[] = "sweep submit SPEC.json|- [--suffix S] [--max-parallel N] [--follow] [--json]";

static int sweep_submit(cli_global *g, int argc, char **argv)
{
    enum { O_SUFFIX = 1, O_PAR, O_FOLLOW };
    static const struct option longopts[] = {{"suffix", required_argument, 0, O_SUFFIX},
                                             {"max-parallel", required_argument, 0, O_PAR},
                                             {"follow", no_argument, 0, O_FOLLOW}, CLI_COMMON_OPTS, {0, 0, 0, 0}};
    const char *suffix_opt = NULL;
    long par = 0;
    int follow = 0, c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f", longopts, NULL)) != -1) {
        if (c == O_FOLLOW || c == 'f') follow = 1;
        else if (c == O_SUFFIX) suffix_opt = optarg;
        else if (c == O_PAR) {
            if (cli_parse_int("--max-parallel", optarg, 1, 1024, &par)) return CLI_EUSAGE;
        } else if ((rc = cli_common_opt_usage(g, c, SUBMIT_USAGE)) >= 0) {
            return rc;
        }
    }
    if (optind != argc - 1) return cli_usage_error(SUBMIT_USAGE);
    const char *spec = argv[optind];
    json_t *body;
    if (cli_resource_read_spec(spec, &body) != CLI_OK) return CLI_EUSAGE;
    if (!json_is_object(body) || !json_is_object(json_object_get(body, "job")) ||
        !json_is_object(json_object_get(body, "parameters"))) {
        fprintf(stderr, "coretune: %s: a sweep spec is a JSON object with a \"job\" (a job body) and "
                        "\"parameters\" (PATH: [values]) (docs/cli.md)\n", spec);
        json_decref(body);
        return CLI_EUSAGE;
    }
    if (suffix_opt) json_object_set_new(body, "suffix", json_string(suffix_opt));
    if (par) json_object_set_new(body, "max_parallel", json_integer(par));
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(body);
    if (!text) return CLI_EFAIL;

    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) {
        free(text);
        return rc;
    }
    cli_resource_new n = {.json = text, .what = spec, .cmd = "sweep submit", .print = print_submitted,
                          .follow_hint = "coretune sweep logs -f", .follow = follow, .follow_fn = sweep_follow};
    rc = cli_resource_submit(conn, g, &SWEEP, &n);
    free(text);
    cli_conn_close(conn);
    return rc;
}

/* ---------------- list ---------------- */

static void add_sweep_row(cli_table *t, const json_t *s)
{
    char obj[128], done[32], best[32] = "-", created[40];
    snprintf(obj, sizeof obj, "%s %s", maximize(s) ? "max" : "min", objective_metric(s));
    double b = cli_jnum(json_object_get(s, "best"), "objective", NAN);
    if (isfinite(b)) snprintf(best, sizeof best, "%.4f", b);
    cli_fmt_time(created, sizeof created, json_object_get(s, "created_at"));
    const char *row[] = {cli_jstr(s, "id"), cli_jstr(s, "status"), cli_jstr(json_object_get(s, "job"), "model"),
                         obj, done_text(done, sizeof done, s), best, created};
    cli_table_add(t, row);
}

static int sweep_list(cli_global *g, int argc, char **argv)
{
    static const char *const heads[] = {"ID", "STATUS", "MODEL", "OBJECTIVE", "TRIALS", "BEST", "CREATED"};
    static const cli_resource_table list = {.usage = "sweep list [--limit N] [--all] [--json]",
                                            .what = "sweep list", .more_hint = "(more sweeps: --limit N or --all)",
                                            .heads = heads, .ncols = 7, .row = add_sweep_row};
    return cli_resource_list(g, argc, argv, &SWEEP, &list);
}

/* ---------------- show ---------------- */

static int sweep_show(cli_global *g, int argc, char **argv)
{
    return cli_resource_show(g, argc, argv, &SWEEP, "sweep show ID [--json]", show_sweep);
}

/* ---------------- logs ---------------- */

static const char LOGS_USAGE[] = "sweep logs ID [-f|--follow] [--json]";

/* The sweep's events so far (all of them, a hundred a page). */
static int list_events(cli_conn *c, const cli_global *g, const char *id)
{
    char esc[400], path[600];
    if (cli_escape(esc, sizeof esc, id) != 0) return cli_usage_error(LOGS_USAGE);
    cli_resp sw;
    int rc = cli_resource_get(c, &SWEEP, id, &sw); /* for the parameters' short names; 404 here */
    if (rc != CLI_OK) return rc;
    snprintf(path, sizeof path, SWEEPS "/%s/events", esc);
    cli_pages p = {.path = path, .limit = 100, .all = 1, .what = id, .item = print_item,
                   .ud = json_object_get(sw.json, "parameters")};
    rc = cli_pages_read(c, g, &p);
    cli_resp_free(&sw);
    fflush(stdout);
    return rc;
}

static int sweep_logs(cli_global *g, int argc, char **argv)
{
    return cli_resource_logs(g, argc, argv, LOGS_USAGE, sweep_follow, list_events);
}

/* ---------------- cancel ---------------- */

static int sweep_cancel(cli_global *g, int argc, char **argv)
{
    return cli_resource_act(g, argc, argv, &SWEEP, "sweep cancel ID... [--json]", "cancel");
}

/* ---------------- dispatch ---------------- */

int cli_sweep(cli_global *g, int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(cli_global *g, int argc, char **argv);
    } subs[] = {{"submit", sweep_submit}, {"list", sweep_list}, {"show", sweep_show},
                {"logs", sweep_logs},     {"cancel", sweep_cancel}};
    if (argc < 2) return cli_usage_error(SWEEP_USAGE);
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        printf("usage: coretune %s\n", SWEEP_USAGE);
        return CLI_OK;
    }
    for (size_t k = 0; k < sizeof subs / sizeof *subs; k++)
        if (!strcmp(sub, subs[k].name)) return subs[k].fn(g, argc - 1, argv + 1);
    fprintf(stderr, "coretune: unknown sweep command '%s'\n", sub);
    return cli_usage_error(SWEEP_USAGE);
}
