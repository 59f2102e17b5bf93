/* cli/jobs_cmd.c — the jobs sub-commands: submit, list, show, cancel/pause/resume and metrics.
 * Each builds one request (or a few pages) on a cli_conn, prints a table or key/value lines (the API's
 * JSON unchanged with --json) and returns an exit code (cli.h). Single-threaded; messages on stderr. */
#include "cli/client.h"
#include "cli/fmt.h"
#include "cli/opt.h"
#include "cli/resource.h"
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JOBS "/v1/fine_tuning/jobs"

static const cli_resource JOB = {JOBS, "job"};

/* ---------------- submit ---------------- */

/* Sets body[a.b.c] = v (takes ownership of v), creating objects on the way. */
static int set_path(json_t *body, const char *path, json_t *v)
{
    char buf[256];
    if (!v || snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        json_decref(v);
        return -1;
    }
    json_t *o = body;
    char *save = NULL, *tok = strtok_r(buf, ".", &save);
    while (tok) {
        char *next = strtok_r(NULL, ".", &save);
        if (!next) return json_object_set_new(o, tok, v);
        json_t *child = json_object_get(o, tok);
        if (!json_is_object(child)) {
            child = json_object();
            if (!child || json_object_set_new(o, tok, child) != 0) break;
        }
        o = child;
        tok = next;
    }
    json_decref(v);
    return -1;
}

/* method.<type>.hyperparameters, created (with method.type) as needed. Borrowed. */
static json_t *hyperparameters(json_t *body)
{
    json_t *m = json_object_get(body, "method");
    if (!json_is_object(m)) {
        m = json_pack("{s:s}", "type", "core_tuning");
        json_object_set_new(body, "method", m);
    }
    const char *type = cli_jstr(m, "type");
    if (!type) {
        json_object_set_new(m, "type", json_string("core_tuning"));
        type = "core_tuning";
    }
    json_t *t = json_object_get(m, type);
    if (!json_is_object(t)) {
        t = json_object();
        json_object_set_new(m, type, t);
    }
    json_t *h = json_object_get(t, "hyperparameters");
    if (!json_is_object(h)) {
        h = json_object();
        json_object_set_new(t, "hyperparameters", h);
    }
    return h;
}

/* --method T: set method.type, carrying hyperparameters given under the old type over to the new one. */
static void set_method(json_t *body, const char *type)
{
    json_t *m = json_object_get(body, "method");
    if (!json_is_object(m)) {
        json_object_set_new(body, "method", json_pack("{s:s}", "type", type));
        return;
    }
    const char *old = cli_jstr(m, "type");
    if (!old) old = "core_tuning";
    json_t *sub = json_object_get(m, old);
    if (strcmp(old, type) && sub) {
        json_incref(sub);
        json_object_del(m, old);
        json_object_set_new(m, type, sub);
    }
    json_object_set_new(m, "type", json_string(type));
}

/* A --set value: JSON when it parses as JSON (numbers, true, {"a":1}), otherwise the text as a string. */
static json_t *parse_value(const char *s)
{
    json_t *v = json_loads(s, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(s);
}

/* "ID  STATUS (queue position N)" */
static void print_submitted(const json_t *job)
{
    const char *id = cli_jstr(job, "id"), *status = cli_jstr(job, "status");
    json_t *qp = json_object_get(job, "queue_position");
    if (json_is_integer(qp))
        printf("%s  %s (queue position %lld)\n", id, status ? status : "-", (long long)json_integer_value(qp));
    else
        printf("%s  %s\n", id, status ? status : "-");
}

static const char SUBMIT_USAGE[] =
    "submit [SPEC.json|-] [--model M --training-file F] [--validation-file F]\n"
    "           [--method core_tuning|ce_tuning|simclr] [--epochs N] [--batch-size N] [--lr X] [--seed N]\n"
    "           [--variant paper|reference] [--threads N] [--set PATH=VALUE]... [--suffix S]\n"
    "           [--idempotency-key K] [--follow] [--json] [--url URL] [--token T]";

enum { O_MODEL = 1, O_TRAIN, O_VALID, O_METHOD, O_EPOCHS, O_BATCH, O_LR, O_SEED, O_VARIANT, O_THREADS, O_SET,
       O_SUFFIX, O_IDEM, O_FOLLOW };

int cli_submit(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, 0, O_MODEL}, {"training-file", required_argument, 0, O_TRAIN},
        {"validation-file", required_argument, 0, O_VALID}, {"method", required_argument, 0, O_METHOD},
        {"epochs", required_argument, 0, O_EPOCHS}, {"batch-size", required_argument, 0, O_BATCH},
        {"lr", required_argument, 0, O_LR}, {"learning-rate", required_argument, 0, O_LR},
        {"seed", required_argument, 0, O_SEED}, {"variant", required_argument, 0, O_VARIANT},
        {"threads", required_argument, 0, O_THREADS}, {"set", required_argument, 0, O_SET},
        {"suffix", required_argument, 0, O_SUFFIX}, {"idempotency-key", required_argument, 0, O_IDEM},
        {"follow", no_argument, 0, O_FOLLOW}, {"f", no_argument, 0, O_FOLLOW}, CLI_COMMON_OPTS, {0, 0, 0, 0}};
    /* options are applied after the spec is read, in the order given */
    struct { int opt; const char *arg; } ops[64];
    int nops = 0, follow = 0, c;
    const char *idem = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f", longopts, NULL)) != -1) {
        if (c == O_FOLLOW || c == 'f') follow = 1;
        else if (c == O_IDEM) idem = optarg;
        else if (c >= O_MODEL && c <= O_SUFFIX) {
            if (nops == (int)(sizeof ops / sizeof *ops)) return cli_usage_error(SUBMIT_USAGE);
            ops[nops].opt = c;
            ops[nops++].arg = optarg;
        } else {
            int rc = cli_common_opt_usage(g, c, SUBMIT_USAGE);
            if (rc >= 0) return rc;
        }
    }
    if (argc - optind > 1) return cli_usage_error(SUBMIT_USAGE);
    const char *spec = optind < argc ? argv[optind] : NULL;

    json_t *body;
    if (spec) {
        if (cli_resource_read_spec(spec, &body) != CLI_OK) return CLI_EUSAGE;
        if (!json_is_object(body)) {
            fprintf(stderr, "coretune: %s: a job spec is a JSON object (docs/api.md)\n", spec);
            json_decref(body);
            return CLI_EUSAGE;
        }
    } else {
        body = json_object();
        if (!body) return CLI_EFAIL;
    }

    int rc = CLI_OK;
    for (int i = 0; i < nops && rc == CLI_OK; i++) {
        const char *a = ops[i].arg;
        long n;
        char *end;
        switch (ops[i].opt) {
        case O_MODEL: json_object_set_new(body, "model", json_string(a)); break;
        case O_TRAIN: json_object_set_new(body, "training_file", json_string(a)); break;
        case O_VALID: json_object_set_new(body, "validation_file", json_string(a)); break;
        case O_SUFFIX: json_object_set_new(body, "suffix", json_string(a)); break;
        case O_METHOD:
            if (strcmp(a, "core_tuning") && strcmp(a, "ce_tuning") && strcmp(a, "simclr")) {
                fprintf(stderr, "coretune: --method is core_tuning, ce_tuning or simclr, not '%s'\n", a);
                rc = CLI_EUSAGE;
            } else {
                set_method(body, a);
            }
            break;
        case O_EPOCHS:
            if (cli_parse_int("--epochs", a, 1, 100000, &n)) rc = CLI_EUSAGE;
            else json_object_set_new(hyperparameters(body), "n_epochs", json_integer(n));
            break;
        case O_BATCH:
            if (cli_parse_int("--batch-size", a, 1, 1 << 20, &n)) rc = CLI_EUSAGE;
            else json_object_set_new(hyperparameters(body), "batch_size", json_integer(n));
            break;
        case O_THREADS:
            if (cli_parse_int("--threads", a, 0, 4096, &n)) rc = CLI_EUSAGE;
            else json_object_set_new(hyperparameters(body), "threads", json_integer(n));
            break;
        case O_SEED:
            if (cli_parse_int("--seed", a, 0, LONG_MAX, &n)) rc = CLI_EUSAGE;
            else json_object_set_new(body, "seed", json_integer(n));
            break;
        case O_LR: {
            errno = 0;
            double x = strtod(a, &end);
            if (errno || end == a || *end || !isfinite(x) || x <= 0) {
                fprintf(stderr, "coretune: --lr wants a positive number, not '%s'\n", a);
                rc = CLI_EUSAGE;
            } else {
                json_object_set_new(hyperparameters(body), "learning_rate", json_real(x));
            }
            break;
        }
        case O_VARIANT: json_object_set_new(hyperparameters(body), "variant", json_string(a)); break;
        case O_SET: {
            const char *eq = strchr(a, '=');
            char path[256];
            if (!eq || eq == a || (size_t)(eq - a) >= sizeof path) {
                fprintf(stderr, "coretune: --set wants PATH=VALUE (e.g. data.train_limit=256), not '%s'\n", a);
                rc = CLI_EUSAGE;
                break;
            }
            memcpy(path, a, (size_t)(eq - a));
            path[eq - a] = 0;
            if (set_path(body, path, parse_value(eq + 1)) != 0) {
                fprintf(stderr, "coretune: --set %s: cannot set that path\n", a);
                rc = CLI_EUSAGE;
            }
            break;
        }
        }
    }
    if (rc == CLI_OK && (!cli_jstr(body, "model") || !cli_jstr(body, "training_file"))) {
        fprintf(stderr, "coretune: submit needs a model and a training file: give SPEC.json or --model and "
                        "--training-file (see coretune datasets and coretune models)\n");
        rc = CLI_EUSAGE;
    }
    char *text = rc == CLI_OK ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(body);
    if (rc != CLI_OK) return rc;
    if (!text) return CLI_EFAIL;

    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) {
        free(text);
        return rc;
    }
    char idem_hdr[400];
    const char *hdrs[2] = {NULL, NULL};
    if (idem) {
        if (snprintf(idem_hdr, sizeof idem_hdr, "Idempotency-Key: %s", idem) >= (int)sizeof idem_hdr ||
            strpbrk(idem, "\r\n")) {
            fprintf(stderr, "coretune: --idempotency-key is 1-255 printable characters\n");
            free(text);
            cli_conn_close(conn);
            return CLI_EUSAGE;
        }
        hdrs[0] = idem_hdr;
    }
    cli_resource_new n = {.json = text, .headers = hdrs, .what = spec ? spec : "submit", .cmd = "submit",
                          .print = print_submitted, .follow_hint = "coretune logs -f", .follow = follow,
                          .follow_fn = cli_follow};
    rc = cli_resource_submit(conn, g, &JOB, &n);
    free(text);
    cli_conn_close(conn);
    return rc;
}

/* ---------------- list ---------------- */

static const char *method_of(const json_t *job)
{
    const char *t = cli_jstr(json_object_get(job, "method"), "type");
    return t ? t : "-";
}

static void progress_text(char *buf, size_t n, const json_t *job)
{
    json_t *p = json_object_get(job, "progress");
    double step = cli_jnum(p, "step", -1), total = cli_jnum(p, "total_steps", -1);
    if (step >= 0 && total > 0)
        snprintf(buf, n, "%.0f/%.0f %3.0f%%", step, total, 100.0 * step / total);
    else
        snprintf(buf, n, "-");
}

static void add_job_row(cli_table *t, const json_t *job)
{
    char prog[64], acc[32], created[40];
    progress_text(prog, sizeof prog, job);
    double a = cli_jnum(job, "best_valid_accuracy", NAN);
    if (isfinite(a)) snprintf(acc, sizeof acc, "%.4f", a);
    else snprintf(acc, sizeof acc, "-");
    cli_fmt_time(created, sizeof created, json_object_get(job, "created_at"));
    const char *row[] = {cli_jstr(job, "id"), cli_jstr(job, "status"), cli_jstr(job, "model"), method_of(job),
                         prog, acc, created};
    cli_table_add(t, row);
}

int cli_list(cli_global *g, int argc, char **argv)
{
    static const char *const heads[] = {"ID", "STATUS", "MODEL", "METHOD", "PROGRESS", "BEST ACC", "CREATED"};
    static const cli_resource_table list = {.usage = "list [--limit N] [--all] [--json]", .what = "list",
                                            .more_hint = "(more jobs: --limit N or --all)", .heads = heads,
                                            .ncols = 7, .row = add_job_row};
    return cli_resource_list(g, argc, argv, &JOB, &list);
}

/* ---------------- show ---------------- */

static void kv(const char *k, const char *v) { printf("%-22s %s\n", k, v && *v ? v : "-"); }

/* Flattens an object's scalar members as "a=1 b=2" (nested objects as compact JSON). */
static void kv_object(const char *k, const json_t *o)
{
    if (!json_is_object(o) || json_object_size(o) == 0) return;
    char line[2048] = "", val[512];
    size_t off = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        int w = snprintf(line + off, sizeof line - off, "%s%s=%s", off ? " " : "", key, cli_fmt_value(val, sizeof val, v));
        if (w < 0 || (size_t)w >= sizeof line - off) break;
        off += (size_t)w;
    }
    kv(k, line);
}

static void show_job(const json_t *j)
{
    char b[512], t1[40];
    kv("id", cli_jstr(j, "id"));
    kv("status", cli_jstr(j, "status"));
    kv("model", cli_jstr(j, "model"));
    kv("fine_tuned_model", cli_jstr(j, "fine_tuned_model"));
    kv("method", method_of(j));
    kv("training_file", cli_jstr(j, "training_file"));
    kv("validation_file", cli_jstr(j, "validation_file"));
    kv("seed", cli_fmt_value(b, sizeof b, json_object_get(j, "seed")));
    kv("suffix", cli_jstr(j, "suffix"));
    kv("created", cli_fmt_time(b, sizeof b, json_object_get(j, "created_at")));
    kv("started", cli_fmt_time(b, sizeof b, json_object_get(j, "started_at")));
    kv("finished", cli_fmt_time(b, sizeof b, json_object_get(j, "finished_at")));
    json_t *p = json_object_get(j, "progress");
    if (json_is_object(p)) {
        char prog[64];
        progress_text(prog, sizeof prog, j);
        snprintf(b, sizeof b, "epoch %s/%s, step %s", cli_fmt_value(t1, 20, json_object_get(p, "epoch")),
                 cli_fmt_value(t1 + 20, 20, json_object_get(p, "epochs")), prog);
        kv("progress", b);
    }
    json_t *qp = json_object_get(j, "queue_position");
    if (json_is_integer(qp)) kv("queue_position", cli_fmt_value(b, sizeof b, qp));
    json_t *es = json_object_get(j, "estimated_start");
    if (json_is_number(es)) kv("estimated_start", cli_fmt_time(b, sizeof b, es));
    json_t *x = json_object_get(j, "executor");
    if (json_is_object(x)) { /* "slurm job 1234 RUNNING on node1 (reason)" or "local" */
        const char *id = cli_jstr(x, "job_id"), *st = cli_jstr(x, "state"), *node = cli_jstr(x, "node"),
                   *why = cli_jstr(x, "reason");
        snprintf(b, sizeof b, "%s%s%s%s%s%s%s%s%s", cli_jstr(x, "type") ? cli_jstr(x, "type") : "?",
                 id ? " job " : "", id ? id : "", st ? " " : "", st ? st : "", node ? " on " : "", node ? node : "",
                 why ? " reason: " : "", why ? why : "");
        kv("executor", b);
    }
    json_t *ef = json_object_get(j, "estimated_finish");
    if (json_is_number(ef)) {
        char d[32];
        cli_fmt_time(t1, sizeof t1, ef);
        snprintf(b, sizeof b, "%s (in %s)", t1, cli_fmt_duration(d, sizeof d, json_number_value(ef) - (double)time(NULL)));
        kv("estimated_finish", b);
    }
    if (json_is_number(json_object_get(j, "best_valid_accuracy")))
        kv("best_valid_accuracy", cli_fmt_value(b, sizeof b, json_object_get(j, "best_valid_accuracy")));
    if (json_is_number(json_object_get(j, "final_valid_accuracy")))
        kv("final_valid_accuracy", cli_fmt_value(b, sizeof b, json_object_get(j, "final_valid_accuracy")));
    json_t *err = json_object_get(j, "error");
    if (json_is_object(err)) {
        snprintf(b, sizeof b, "%s: %s", cli_jstr(err, "code") ? cli_jstr(err, "code") : "error",
                 cli_jstr(err, "message") ? cli_jstr(err, "message") : "");
        kv("error", b);
    }
    kv_object("metrics", json_object_get(j, "metrics"));
    json_t *m = json_object_get(j, "method");
    json_t *hp = json_object_get(json_object_get(m, method_of(j)), "hyperparameters");
    kv_object("hyperparameters", json_is_object(hp) ? hp : json_object_get(j, "hyperparameters"));
    kv_object("architecture", json_object_get(j, "architecture"));
    kv_object("data", json_object_get(j, "data"));
    kv_object("metadata", json_object_get(j, "metadata"));
}

int cli_show(cli_global *g, int argc, char **argv)
{
    return cli_resource_show(g, argc, argv, &JOB, "show ID [--json]", show_job);
}

/* ---------------- cancel / pause / resume ---------------- */

int cli_action(cli_global *g, int argc, char **argv)
{
    char usage[64];
    snprintf(usage, sizeof usage, "%s ID... [--json]", argv[0]);
    return cli_resource_act(g, argc, argv, &JOB, usage, argv[0]);
}

/* ---------------- metrics ---------------- */

static const char METRICS_USAGE[] = "metrics ID [--names a,b,...] [--max-points N] [--after-step N] [--json]";

int cli_metrics(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {{"names", required_argument, 0, 'n'},
                                             {"max-points", required_argument, 0, 'm'},
                                             {"after-step", required_argument, 0, 'a'}, CLI_COMMON_OPTS, {0, 0, 0, 0}};
    const char *names = NULL;
    long maxp = 500, after = 0;
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'n') names = optarg;
        else if (c == 'm') {
            if (cli_parse_int("--max-points", optarg, 3, 100000, &maxp)) return CLI_EUSAGE;
        } else if (c == 'a') {
            if (cli_parse_int("--after-step", optarg, 0, LONG_MAX, &after)) return CLI_EUSAGE;
        } else if ((rc = cli_common_opt_usage(g, c, METRICS_USAGE)) >= 0) {
            return rc;
        }
    }
    if (optind != argc - 1) return cli_usage_error(METRICS_USAGE);
    char id[400], nm[1024] = "", path[2048];
    if (cli_escape(id, sizeof id, argv[optind]) != 0 || (names && cli_escape(nm, sizeof nm, names) != 0))
        return cli_usage_error(METRICS_USAGE);
    snprintf(path, sizeof path, JOBS "/%s/metrics?max_points=%ld&after_step=%ld%s%s", id, maxp, after,
             names ? "&names=" : "", nm);
    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) return rc;
    cli_resp r;
    if ((rc = cli_call(conn, "GET", path, NULL, &r, argv[optind])) == CLI_OK) {
        if (g->json) {
            cli_print_raw(r.body, r.len);
        } else {
            static const char *const heads[] = {"NAME", "POINTS", "FIRST STEP", "LAST STEP", "LAST", "MIN", "MAX"};
            cli_table *t = cli_table_new(7, heads);
            const char *key;
            json_t *s;
            json_object_foreach(json_object_get(r.json, "series"), key, s) {
                json_t *steps = json_object_get(s, "steps"), *vals = json_object_get(s, "values");
                size_t n = json_array_size(vals);
                double lo = DBL_MAX, hi = -DBL_MAX;
                for (size_t i = 0; i < n; i++) {
                    double v = json_number_value(json_array_get(vals, i));
                    if (json_is_number(json_array_get(vals, i))) lo = fmin(lo, v), hi = fmax(hi, v);
                }
                char pts[32], f[32], l[32], last[32], mn[32], mx[32];
                cli_fmt_value(pts, sizeof pts, json_object_get(s, "total_points"));
                cli_fmt_value(f, sizeof f, json_array_get(steps, 0));
                cli_fmt_value(l, sizeof l, n ? json_array_get(steps, json_array_size(steps) - 1) : NULL);
                cli_fmt_value(last, sizeof last, n ? json_array_get(vals, n - 1) : NULL);
                snprintf(mn, sizeof mn, "-");
                snprintf(mx, sizeof mx, "-");
                if (lo <= hi) snprintf(mn, sizeof mn, "%.6g", lo), snprintf(mx, sizeof mx, "%.6g", hi);
                const char *row[] = {key, pts, f, l, last, mn, mx};
                cli_table_add(t, row);
            }
            cli_table_print(t, stdout);
            cli_table_free(t);
        }
        cli_resp_free(&r);
    }
    cli_conn_close(conn);
    return rc;
}
