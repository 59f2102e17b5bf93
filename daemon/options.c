/* daemon/options.c — the daemon's options: one table drives the config file, the command line, --help and
 * --example-config; every value is checked as it is set and all of them together in opts_validate. */
#define _GNU_SOURCE
#include "daemon/options.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "core/auth.h"
#include "trainer/gpu/gpu.h"
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/coretuned/coretuned.conf"

/* ---- the option table ---- */

typedef int (*opt_set)(daemon_opts *o, const char *v);

int opts_parse_int(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

static int set_listen(daemon_opts *o, const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof o->host) return -1;
    long port;
    if (opts_parse_int(colon + 1, 0, 65535, &port)) return -1;
    memcpy(o->host, s, (size_t)(colon - s));
    o->host[colon - s] = 0;
    o->port = (int)port;
    return 0;
}

static int set_data_dir(daemon_opts *o, const char *v)
{
    if (!*v || strlen(v) > 700) return -1; /* room for DIR/files/ID/NAME in a path */
    snprintf(o->svc.data_dir, sizeof o->svc.data_dir, "%s", v);
    return 0;
}

static int set_workers(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 0, 1024, &x)) return -1;
    o->svc.workers = (int)x;
    o->workers_set = 1;
    return 0;
}

static int set_threads(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 1, 1024, &x)) return -1;
    o->svc.threads_per_job = (int)x;
    o->threads_set = 1;
    return 0;
}

static int set_log_level(daemon_opts *o, const char *v)
{
    (void)o;
    return log_parse_level(v, &log_min_level);
}

static int set_checkpoint(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 0, 86400, &x)) return -1;
    o->svc.checkpoint_seconds = (int)x;
    return 0;
}

static int set_job_nice(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 0, 19, &x)) return -1;
    o->svc.job_nice = (int)x;
    return 0;
}

static int set_upload_mb(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 1, 1L << 20, &x)) return -1;
    o->svc.upload_limit = (long long)x << 20;
    return 0;
}

static int set_extract_mb(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 1, 1L << 24, &x)) return -1;
    o->svc.extract_limit = (long long)x << 20;
    return 0;
}

static int set_extract_entries(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 1, 100000000, &x)) return -1;
    o->svc.extract_entries = x;
    return 0;
}

static int set_extract_ratio(daemon_opts *o, const char *v)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= 1 && x <= 1e6)) return -1;
    o->svc.extract_ratio = x;
    return 0;
}

static int set_min_free_mb(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 0, 1L << 30, &x)) return -1;
    o->svc.min_free_bytes = (long long)x << 20;
    return 0;
}

static int set_keep_checkpoints(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 0, 1L << 20, &x)) return -1;
    o->svc.keep_checkpoints = (int)x;
    return 0;
}

static int set_retention_days(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 0, 36500, &x)) return -1;
    o->svc.retention_days = (int)x;
    return 0;
}

static int set_heartbeat(daemon_opts *o, const char *v)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= 0.05 && x <= 3600)) return -1;
    o->lim.sse_heartbeat_s = x;
    return 0;
}

static int parse_seconds(const char *v, double lo, double hi, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) return -1;
    *out = x;
    return 0;
}

static int set_header_timeout(daemon_opts *o, const char *v) { return parse_seconds(v, 0.5, 3600, &o->http.header_timeout_s); }

static int set_body_min_rate(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 1, 1L << 30, &x)) return -1;
    o->http.body_min_rate = (double)x;
    return 0;
}

static int set_max_connections(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 8, 1L << 20, &x)) return -1;
    o->http.max_connections = (int)x;
    return 0;
}

static int set_max_streams(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 1, 1L << 20, &x)) return -1;
    o->lim.max_streams = (int)x;
    return 0;
}

static int set_dataset(daemon_opts *o, const char *v)
{
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || (size_t)(eq - v) >= sizeof o->svc.datasets[0].name || !eq[1] ||
        strlen(eq + 1) >= sizeof o->svc.datasets[0].path || o->svc.n_datasets == SVC_MAX_DATASETS)
        return -1;
    svc_dataset *d = &o->svc.datasets[o->svc.n_datasets++];
    snprintf(d->name, sizeof d->name, "%.*s", (int)(eq - v), v);
    snprintf(d->path, sizeof d->path, "%s", eq + 1);
    return 0;
}

static int set_web_root(daemon_opts *o, const char *v)
{
    if (strlen(v) >= sizeof o->web_root) return -1;
    snprintf(o->web_root, sizeof o->web_root, "%s", v);
    o->lim.web_root = o->web_root;
    return 0;
}

static int set_socket(daemon_opts *o, const char *v)
{
    if (!*v || strlen(v) >= sizeof o->socket_path) return -1;
    snprintf(o->socket_path, sizeof o->socket_path, "%s", v);
    return 0;
}

static int set_path(char *dst, size_t n, const char *v)
{
    if (!*v || strlen(v) >= n) return -1;
    snprintf(dst, n, "%s", v);
    return 0;
}
static int set_tls_cert(daemon_opts *o, const char *v) { return set_path(o->tls_cert, sizeof o->tls_cert, v); }
static int set_tls_key(daemon_opts *o, const char *v) { return set_path(o->tls_key, sizeof o->tls_key, v); }

static int set_cores(daemon_opts *o, const char *v)
{
    long x;
    if (opts_parse_int(v, 1, 4096, &x)) return -1;
    o->svc.cores = (int)x;
    o->cores_set = 1;
    return 0;
}

/* "auto", "none" or CUDA indices "0,1" (each 0..63, once); whether they exist is opts_validate's */
static int set_gpus(daemon_opts *o, const char *v)
{
    if (!strcmp(v, "auto") || !strcmp(v, "none")) {
        o->gpus_mode = !strcmp(v, "auto") ? OPTS_GPUS_AUTO : OPTS_GPUS_NONE;
        o->svc.n_gpus = 0;
        return 0;
    }
    char buf[256];
    if (!*v || strlen(v) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", v);
    int n = 0, list[SVC_MAX_GPUS];
    for (char *t = buf, *comma; t; t = comma ? comma + 1 : NULL) {
        if ((comma = strchr(t, ','))) *comma = 0;
        long x;
        if (t[0] == '+' || t[0] == ' ' || opts_parse_int(t, 0, SVC_MAX_GPUS - 1, &x)) return -1;
        for (int i = 0; i < n; i++)
            if (list[i] == x) return -1; /* a GPU listed twice would be handed out twice */
        list[n++] = (int)x;
    }
    o->gpus_mode = OPTS_GPUS_LIST;
    o->svc.n_gpus = n;
    memcpy(o->svc.gpus, list, sizeof list[0] * (size_t)n);
    return 0;
}

/* The GPUs the option names, against what CUDA reports (CUDA_VISIBLE_DEVICES applies): a listed GPU that is
 * not there stops the daemon; auto takes every visible one. -1 with the message printed. */
static int resolve_gpus(daemon_opts *o)
{
    svc_config *c = &o->svc;
    if (o->gpus_mode == OPTS_GPUS_NONE) {
        snprintf(c->gpus_why, sizeof c->gpus_why, "--gpus none");
        return 0;
    }
    char why[128] = "";
    int have = gpu_device_count(why, sizeof why);
    if (o->gpus_mode == OPTS_GPUS_AUTO) {
        c->n_gpus = have < SVC_MAX_GPUS ? have : SVC_MAX_GPUS;
        for (int i = 0; i < c->n_gpus; i++) c->gpus[i] = i;
        snprintf(c->gpus_why, sizeof c->gpus_why, "--gpus auto found none: %.130s", why[0] ? why : "no CUDA device");
        return 0;
    }
    for (int i = 0; i < c->n_gpus; i++) {
        if (c->gpus[i] < have) continue;
        fprintf(stderr, "coretuned: gpus: GPU %d does not exist: CUDA reports %d visible device%s%s%s"
                        " (indices count from 0 among CUDA_VISIBLE_DEVICES)\n",
                c->gpus[i], have, have == 1 ? "" : "s", have == 0 && why[0] ? ": " : "", have == 0 ? why : "");
        return -1;
    }
    return 0;
}

static int set_preemption(daemon_opts *o, const char *v)
{
    if (!strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "true")) o->svc.preemption = 1;
    else if (!strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "false")) o->svc.preemption = 0;
    else return -1;
    return 0;
}

static int set_grace(daemon_opts *o, const char *v)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= 0 && x <= 7 * 86400)) return -1;
    o->svc.preempt_grace = x;
    return 0;
}

/* "running_jobs=2,queued_jobs=20,threads=4,upload_mb=1024": the fields named are set in q */
static int parse_quota(const char *v, svc_quota *q)
{
    char buf[256];
    if (!*v || strlen(v) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", v);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        long x;
        if (!eq) return -1;
        *eq = 0;
        if (opts_parse_int(eq + 1, 0, 1L << 30, &x)) return -1;
        if (!strcmp(t, "running_jobs")) q->running_jobs = (int)x;
        else if (!strcmp(t, "queued_jobs")) q->queued_jobs = (int)x;
        else if (!strcmp(t, "threads")) q->threads = (int)x;
        else if (!strcmp(t, "upload_mb")) q->upload_bytes = (long long)x << 20;
        else if (!strcmp(t, "disk_mb")) q->disk_bytes = (long long)x << 20;
        else return -1;
    }
    return 0;
}

static int set_quota(daemon_opts *o, const char *v) { return parse_quota(v, &o->svc.quota); }

static int set_user_quota(daemon_opts *o, const char *v)
{
    const char *colon = strchr(v, ':');
    if (!colon || colon == v || (size_t)(colon - v) >= 64 || o->svc.n_user_quotas == SVC_MAX_USER_QUOTAS) return -1;
    svc_user_quota u = {.q = {-1, -1, -1, -1, -1}};
    snprintf(u.name, sizeof u.name, "%.*s", (int)(colon - v), v);
    if (!auth_valid_name(u.name) || parse_quota(colon + 1, &u.q)) return -1;
    o->svc.user_quotas[o->svc.n_user_quotas++] = u;
    return 0;
}

static int set_dataset_root(daemon_opts *o, const char *v)
{
    if (v[0] != '/' || strlen(v) >= sizeof o->svc.roots[0] || o->svc.n_roots == SVC_MAX_ROOTS) return -1;
    snprintf(o->svc.roots[o->svc.n_roots++], sizeof o->svc.roots[0], "%s", v);
    return 0;
}

static int set_executor(daemon_opts *o, const char *v)
{
    if (strcmp(v, "local") && strcmp(v, "slurm")) return -1;
    snprintf(o->svc.executor, sizeof o->svc.executor, "%s", v);
    return 0;
}

/* A Slurm name (partition, account): what Slurm itself accepts, no shell or option syntax. */
static int set_slurm_name(char *dst, size_t n, const char *v)
{
    return util_valid_name(v, n - 1) ? set_path(dst, n, v) : -1;
}
static int set_slurm_partition(daemon_opts *o, const char *v)
{
    return set_slurm_name(o->svc.slurm.partition, sizeof o->svc.slurm.partition, v);
}
static int set_slurm_account(daemon_opts *o, const char *v)
{
    return set_slurm_name(o->svc.slurm.account, sizeof o->svc.slurm.account, v);
}

/* Extra sbatch arguments, split on spaces (an admin's, trusted; passed as argv, never through a shell). */
static int set_slurm_args(daemon_opts *o, const char *v)
{
    char buf[4096];
    if (strlen(v) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", v);
    exec_slurm_cfg *c = &o->svc.slurm;
    c->n_args = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (c->n_args == EXEC_SLURM_MAX_ARGS || strlen(t) >= sizeof c->args[0]) return -1;
        snprintf(c->args[c->n_args++], sizeof c->args[0], "%s", t);
    }
    return 0;
}

static int set_slurm_poll(daemon_opts *o, const char *v) { return parse_seconds(v, 0.2, 3600, &o->svc.slurm.poll_seconds); }
static int set_coretune_bin(daemon_opts *o, const char *v)
{
    return set_path(o->svc.slurm.coretune_bin, sizeof o->svc.slurm.coretune_bin, v);
}
static int set_shared_dir(daemon_opts *o, const char *v)
{
    return v[0] == '/' ? set_path(o->shared_dir, sizeof o->shared_dir, v) : -1;
}

/* "alice=proj1,bob=proj2" */
static int set_account_map(daemon_opts *o, const char *v)
{
    char buf[4096];
    if (!*v || strlen(v) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", v);
    exec_slurm_cfg *c = &o->svc.slurm;
    c->n_accounts = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        if (!eq || c->n_accounts == EXEC_SLURM_MAX_ACCOUNTS) return -1;
        *eq = 0;
        if (!auth_valid_name(t) || !util_valid_name(eq + 1, sizeof c->accounts[0].account - 1)) return -1;
        snprintf(c->accounts[c->n_accounts].user, sizeof c->accounts[0].user, "%s", t);
        snprintf(c->accounts[c->n_accounts].account, sizeof c->accounts[0].account, "%s", eq + 1);
        c->n_accounts++;
    }
    return 0;
}

/* Only http(s) URLs an admin wrote here are ever called (repeatable). */
static int set_webhook_url(daemon_opts *o, const char *v)
{
    if ((strncmp(v, "http://", 7) && strncmp(v, "https://", 8)) || o->svc.n_webhook_urls == SVC_MAX_WEBHOOKS)
        return -1;
    return set_path(o->svc.webhook_urls[o->svc.n_webhook_urls++], sizeof o->svc.webhook_urls[0], v);
}

/* The secret is read now, so a bad file stops the daemon at start, with the file named. */
static int set_webhook_secret_file(daemon_opts *o, const char *v)
{
    FILE *f = fopen(v, "r");
    if (!f) return -1;
    char line[sizeof o->svc.webhook_secret];
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!ok) return -1;
    line[strcspn(line, "\r\n")] = 0;
    snprintf(o->svc.webhook_secret, sizeof o->svc.webhook_secret, "%s", line);
    return 0;
}

static int set_config(daemon_opts *o, const char *v) { (void)o; (void)v; return 0; } /* read before the others */

static const struct optdef {
    const char *name, *arg, *def, *help;
    opt_set set;
} optdefs[] = {
    {"config", "FILE", DEFAULT_CONFIG " (if present)", "read options from FILE first: one 'name value' per line, # comments; the command line overrides it", set_config},
    {"listen", "HOST:PORT", "127.0.0.1:8080", "TCP address to serve HTTP on (port 0 = any); only loopback unless tls-cert/tls-key are set", set_listen},
    {"socket", "PATH", "DATA_DIR/coretuned.sock", "Unix socket serving the same API; callers are identified by their uid ('none' = no socket)", set_socket},
    {"tls-cert", "FILE", "", "PEM certificate: serve HTTPS (required to listen on a non-loopback address)", set_tls_cert},
    {"tls-key", "FILE", "", "PEM private key for tls-cert", set_tls_key},
    {"data-dir", "DIR", "var", "database, job outputs, uploads and backbones", set_data_dir},
    {"cores", "N", "the cores this process may use", "the threads of running jobs together never exceed N", set_cores},
    {"workers", "N", "cores / threads-per-job", "jobs trained at once at most (0 = queue only)", set_workers},
    {"threads-per-job", "T", "cores / workers", "most trainer threads one job gets (a job may ask for fewer)", set_threads},
    {"gpus", "auto|none|N,...", "auto", "CUDA devices jobs train on, as indices among the visible ones (e.g. 0,1; CUDA_VISIBLE_DEVICES applies): each GPU job gets one to itself; auto = every visible device; a listed one that is missing stops the daemon (executor local)", set_gpus},
    {"preemption", "yes|no", "yes", "checkpoint and requeue a running job to make room for a user under the fair share or a higher-priority job of its own user", set_preemption},
    {"preempt-grace", "SECONDS", "600", "how long a job runs before it may be preempted", set_grace},
    {"quota", "K=V,...", "unlimited", "every user's limits: running_jobs, queued_jobs, threads, upload_mb, disk_mb (0 = unlimited)", set_quota},
    {"user-quota", "NAME:K=V,...", "", "one user's limits, overriding 'quota' field by field (repeatable)", set_user_quota},
    {"dataset", "NAME=PATH", "", "register a dataset by path (repeatable)", set_dataset},
    {"dataset-root", "DIR", "", "a directory whose files jobs may name by absolute path (repeatable; no '..', no symlinks out)", set_dataset_root},
    {"executor", "local|slurm", "local", "where jobs train: worker threads of this daemon, or Slurm batch jobs (docs/operations.md, Running on Slurm)", set_executor},
    {"slurm-partition", "NAME", "Slurm's default", "partition for jobs that name none in resources.partition", set_slurm_partition},
    {"slurm-account", "NAME", "Slurm's default", "account (--account) for users not in slurm-account-map", set_slurm_account},
    {"slurm-account-map", "USER=ACCOUNT,...", "", "charge each user's jobs to their Slurm account", set_account_map},
    {"slurm-args", "\"ARGS\"", "", "extra sbatch arguments an admin trusts, split on spaces (e.g. \"--qos=normal --exclusive\")", set_slurm_args},
    {"slurm-poll-seconds", "S", "5", "one squeue for all jobs every S seconds (progress files are read every second)", set_slurm_poll},
    {"coretune-bin", "PATH", "the coretune next to coretuned (or in ../bin from sbin)", "the trainer CLI the batch script runs (must exist at that path on the compute nodes)", set_coretune_bin},
    {"shared-dir", "DIR", "DATA_DIR", "job directories live in DIR/jobs, which the compute nodes must reach at the same path", set_shared_dir},
    {"webhook-url", "URL", "", "announce each job's (and sweep's) end to URL, signed (Standard Webhooks; repeatable, at most 8)", set_webhook_url},
    {"webhook-secret-file", "FILE", "", "the webhooks' signing secret, \"whsec_<base64>\" on the first line (required with webhook-url)", set_webhook_secret_file},
    {"job-nice", "N", "19", "nice value of the trainer threads (0-19; 0 = as the daemon): training yields the cores to the event loop and to the machine's other users whenever they need them (executor local)", set_job_nice},
    {"checkpoint-seconds", "S", "300", "checkpoint running jobs every S seconds besides every epoch", set_checkpoint},
    {"max-upload-mb", "MB", "512", "largest POST /v1/files upload", set_upload_mb},
    {"max-extract-mb", "MB", "4096", "most an uploaded archive (or gzipped IDX pair) may expand to", set_extract_mb},
    {"max-extract-entries", "N", "100000", "most entries (files and folders) in an uploaded archive", set_extract_entries},
    {"max-extract-ratio", "R", "100", "most an upload may expand, as a multiple of its size (past 1 MiB): zip bombs answer 413", set_extract_ratio},
    {"min-free-mb", "MB", "256", "below this free on the data dir's disk, new uploads and jobs are refused (507) and /readyz says so (0 = off)", set_min_free_mb},
    {"keep-checkpoints", "N", "3", "checkpoints a finished job keeps listed besides its best and final weights (0 = all)", set_keep_checkpoints},
    {"retention-days", "D", "0", "remove a finished job's resumable state D days after it ended; models stay until deleted (0 = keep)", set_retention_days},
    {"sse-heartbeat", "SECONDS", "15", "comment line on idle event streams; a stream whose client reads nothing for 3 heartbeats (at least 1 s) is cut", set_heartbeat},
    {"header-timeout", "SECONDS", "10", "a connection must send its request line and headers within this of connecting or of its previous request's end (so also closes idle keep-alive connections); bodies get it as a grace", set_header_timeout},
    {"body-min-rate", "BYTES", "1024", "after the grace, a request body must average at least BYTES per second or the connection is cut", set_body_min_rate},
    {"max-connections", "N", "1024", "open connections per listener (TCP, the Unix socket); a newcomer past it evicts the oldest still sending its headers", set_max_connections},
    {"max-streams", "N", "256", "open event streams in all, kept well below max-connections; the next one is answered 503 too_many_streams (API requests are not counted)", set_max_streams},
    {"web-root", "DIR", "web", "the dashboard's files, served at /", set_web_root},
    {"log-level", "LEVEL", "info", "debug, info, warn or error", set_log_level},
};
#define N_OPTS ((int)(sizeof optdefs / sizeof optdefs[0]))

void opts_usage(FILE *f)
{
    fprintf(f, "usage: coretuned [options]                          run the daemon\n"
               "       coretuned [options] user add NAME [--admin] [--uid N]\n"
               "       coretuned [options] user list\n"
               "       coretuned [options] token create NAME        print a new API token for user NAME (once)\n"
               "       coretuned [options] token list [NAME]\n"
               "       coretuned [options] token revoke ID|PREFIX\n"
               "options (also config-file keys, without the dashes):\n");
    for (int i = 0; i < N_OPTS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s %s", optdefs[i].name, optdefs[i].arg);
        fprintf(f, "  %-30s %s", left, optdefs[i].help);
        if (optdefs[i].def[0]) fprintf(f, " (default: %s)", optdefs[i].def);
        fprintf(f, "\n");
    }
    fprintf(f, "  %-30s %s\n", "--example-config", "print a documented config file and exit");
    fprintf(f, "  %-30s %s\n", "--version", "print the version and exit");
    fprintf(f, "  %-30s %s\n", "--help", "this text");
}

static void example_config(FILE *f)
{
    fprintf(f, "# coretuned.conf — the coretuned daemon's configuration (generated by coretuned --example-config).\n"
               "# One option per line: NAME VALUE. '#' starts a comment. Options given on the command line\n"
               "# override these. Repeatable options (dataset, dataset-root, user-quota) may appear many times.\n"
               "# Every value is checked at start; a bad one stops the daemon with a message naming the line.\n\n");
    for (int i = 1; i < N_OPTS; i++) { /* not "config": files do not nest */
        fprintf(f, "# %s\n#   %s %s", optdefs[i].help, optdefs[i].name, optdefs[i].arg);
        if (optdefs[i].def[0]) fprintf(f, "   (default: %s)", optdefs[i].def);
        fprintf(f, "\n#%s %s\n\n", optdefs[i].name, optdefs[i].def[0] && !strchr(optdefs[i].def, ' ') ? optdefs[i].def : optdefs[i].arg);
    }
}

static int apply(daemon_opts *o, const char *name, const char *value, const char *where)
{
    for (int i = 0; i < N_OPTS; i++) {
        if (strcmp(optdefs[i].name, name) != 0) continue;
        if (optdefs[i].set(o, value) == 0) return 0;
        fprintf(stderr, "coretuned: %s: bad value '%s' for %s (wants %s)\n", where, value, name, optdefs[i].arg);
        return -1;
    }
    fprintf(stderr, "coretuned: %s: unknown option '%s'\n", where, name);
    return -1;
}

static int read_config(daemon_opts *o, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "coretuned: cannot read config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[2048];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        char *end = p + strlen(p);
        while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
        if (!*p || *p == '#') continue;
        char *sp = p + strcspn(p, " \t");
        char *val = sp;
        if (*sp) { *sp = 0; val = sp + 1; while (*val == ' ' || *val == '\t') val++; }
        char where[1200];
        snprintf(where, sizeof where, "%.1100s:%d", path, lineno);
        if (!strcmp(p, "config")) { fprintf(stderr, "coretuned: %s: config files do not nest\n", where); rc = -1; }
        else rc = apply(o, p, val, where);
    }
    fclose(f);
    return rc;
}

static int cores_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int is_loopback(const char *host)
{
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}


/* Every option checked together, after the config file and the command line: one message per problem. */
int opts_validate(daemon_opts *o)
{
    int bad = 0, cores = cores_available();
    if (!o->cores_set) o->svc.cores = cores;
    else if (o->svc.cores > cores) {
        fprintf(stderr, "coretuned: cores %d is more than the %d cores this process may use\n", o->svc.cores, cores);
        bad = 1;
    }
    cores = o->svc.cores;
    if (!o->workers_set && !o->threads_set) { o->svc.workers = 1; o->svc.threads_per_job = cores; }
    else if (!o->threads_set) o->svc.threads_per_job = o->svc.workers > 0 && cores / o->svc.workers > 0 ? cores / o->svc.workers : 1;
    else if (!o->workers_set) o->svc.workers = cores / o->svc.threads_per_job > 0 ? cores / o->svc.threads_per_job : 1;
    if (o->svc.threads_per_job > cores) {
        fprintf(stderr, "coretuned: threads-per-job %d is more than the %d cores available (workers %d)\n",
                o->svc.threads_per_job, cores, o->svc.workers);
        bad = 1;
    }
    int max_conn = o->http.max_connections > 0 ? o->http.max_connections : HTTPD_MAX_CONNECTIONS;
    int max_streams = o->lim.max_streams > 0 ? o->lim.max_streams : API_MAX_STREAMS;
    if (max_streams >= max_conn) { /* streams must leave room for API requests */
        fprintf(stderr, "coretuned: max-streams %d must be below max-connections %d\n", max_streams, max_conn);
        bad = 1;
    }
    if (!!o->tls_cert[0] != !!o->tls_key[0]) {
        fprintf(stderr, "coretuned: tls-cert and tls-key go together\n");
        bad = 1;
    }
    if (o->tls_cert[0] && !httpd_tls_supported()) {
        fprintf(stderr, "coretuned: this libmicrohttpd was built without TLS\n");
        bad = 1;
    }
    if (!o->tls_cert[0] && !is_loopback(o->host)) {
        fprintf(stderr, "coretuned: refusing to listen on %s without TLS: tokens would cross the network in clear;"
                        " set tls-cert and tls-key, or listen on 127.0.0.1 and use the Unix socket\n", o->host);
        bad = 1;
    }
    for (int i = 0; i < o->svc.n_roots; i++) {
        struct stat st;
        if (stat(o->svc.roots[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "coretuned: dataset-root %s is not a directory\n", o->svc.roots[i]);
            bad = 1;
        }
    }
    if (o->svc.quota.threads > 0 && o->svc.quota.threads > cores)
        fprintf(stderr, "coretuned: note: quota threads=%d is more than cores=%d\n", o->svc.quota.threads, cores);
    if (o->svc.n_webhook_urls > 0 && !o->svc.webhook_secret[0]) {
        fprintf(stderr, "coretuned: webhook-url needs webhook-secret-file (the signing secret)\n");
        bad = 1;
    }
    if (!strcmp(o->svc.executor, "slurm")) {
        if (o->gpus_mode == OPTS_GPUS_LIST) /* Slurm's --gres hands them out (resources.gpus) */
            fprintf(stderr, "coretuned: note: gpus applies only with executor local\n");
        o->svc.n_gpus = 0;
        if (!o->svc.slurm.coretune_bin[0]) { /* the coretune next to this binary */
            char self[1024];
            ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
            if (n > 0) {
                self[n] = 0;
                char *slash = strrchr(self, '/');
                if (slash) *slash = 0;
                snprintf(o->svc.slurm.coretune_bin, sizeof o->svc.slurm.coretune_bin, "%.1000s/coretune", self);
                size_t len = strlen(self); /* make install: coretuned in sbin, coretune in bin beside it */
                if (access(o->svc.slurm.coretune_bin, X_OK) != 0 && len >= 5 && !strcmp(self + len - 5, "/sbin"))
                    snprintf(o->svc.slurm.coretune_bin, sizeof o->svc.slurm.coretune_bin, "%.*s/bin/coretune",
                             (int)(len - 5), self);
            }
        }
        if (o->svc.slurm.poll_seconds <= 0) o->svc.slurm.poll_seconds = 5;
        /* the batch script runs elsewhere: every path in it is absolute */
        char cwd[512] = "";
        const char *base = o->shared_dir[0] ? o->shared_dir : o->svc.data_dir;
        if (base[0] != '/' && !getcwd(cwd, sizeof cwd)) cwd[0] = 0;
        snprintf(o->svc.slurm.shared_dir, sizeof o->svc.slurm.shared_dir, "%s%s%.900s", cwd, cwd[0] ? "/" : "", base);
        snprintf(o->svc.jobs_dir, sizeof o->svc.jobs_dir, "%.1000s/jobs", o->svc.slurm.shared_dir);
    } else if (o->shared_dir[0] || o->svc.slurm.n_args || o->svc.slurm.partition[0]) {
        fprintf(stderr, "coretuned: note: the slurm-* and shared-dir options apply only with executor slurm\n");
    }
    if (strcmp(o->svc.executor, "slurm") && resolve_gpus(o)) bad = 1;
    if (!o->socket_path[0]) {
        char p[1200];
        snprintf(p, sizeof p, "%s/coretuned.sock", o->svc.data_dir);
        if (strlen(p) >= sizeof o->socket_path) {
            fprintf(stderr, "coretuned: the default socket path %s is too long: set socket\n", p);
            bad = 1;
        } else {
            snprintf(o->socket_path, sizeof o->socket_path, "%s", p);
        }
    }
    return bad ? -1 : 0;
}


static void defaults(daemon_opts *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->host, sizeof o->host, "127.0.0.1");
    o->port = 8080;
    snprintf(o->svc.data_dir, sizeof o->svc.data_dir, "var");
    snprintf(o->svc.builtin_dir, sizeof o->svc.builtin_dir, "/usr/share/datasets");
    o->svc.checkpoint_seconds = 300;
    o->svc.job_nice = 19;
    o->svc.flush_seconds = 1.0;
    o->svc.upload_limit = 512LL << 20;
    o->svc.extract_limit = 4096LL << 20;
    o->svc.extract_entries = 100000;
    o->svc.extract_ratio = 100;
    o->svc.min_free_bytes = 256LL << 20;
    o->svc.keep_checkpoints = 3;
    o->svc.preemption = 1;
    o->svc.preempt_grace = 600;
    o->svc.self_uid = (long long)geteuid();
    o->lim.json_body_max = 1 << 20;
    o->lim.json_depth_max = 32;
    o->lim.sse_heartbeat_s = 15;
}

int opts_parse(daemon_opts *o, int argc, char **argv, int *argi)
{
    defaults(o);
    struct option longopts[N_OPTS + 4];
    for (int i = 0; i < N_OPTS; i++) longopts[i] = (struct option){optdefs[i].name, required_argument, 0, i};
    longopts[N_OPTS] = (struct option){"help", no_argument, 0, 'h'};
    longopts[N_OPTS + 1] = (struct option){"example-config", no_argument, 0, 'x'};
    longopts[N_OPTS + 2] = (struct option){"version", no_argument, 0, 'v'};
    longopts[N_OPTS + 3] = (struct option){0, 0, 0, 0};
    /* pass 1: --help, --example-config and which config file; pass 2 (after the file): the rest */
    const char *config = getenv("CORETUNED_CONFIG");
    int config_explicit = config != NULL;
    if (!config) config = DEFAULT_CONFIG;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        if (c == 'h') { opts_usage(stdout); return 1; }
        if (c == 'x') { example_config(stdout); return 1; }
        if (c == 'v') { printf("coretuned %s\n", CORETUNED_VERSION); return 1; }
        if (c >= 0 && c < N_OPTS && !strcmp(optdefs[c].name, "config")) { config = optarg; config_explicit = 1; }
    }
    if (config[0] && (config_explicit || access(config, F_OK) == 0) && read_config(o, config) != 0) return -1;
    optind = 0;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        if (c < 0 || c >= N_OPTS) { opts_usage(stderr); return -1; }
        if (apply(o, optdefs[c].name, optarg, "command line") != 0) return -1;
    }
    *argi = optind;
    return 0;
}
