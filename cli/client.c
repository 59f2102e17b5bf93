/* cli/client.c — where coretune connects, with which token, and HTTP through libcurl (see client.h).
 * Resolution order (docs/cli.md): --url > CORETUNE_URL > config file > /run/coretuned/coretuned.sock >
 * ./var/coretuned.sock > http://127.0.0.1:8080; the token: --token > CORETUNE_TOKEN > config file >
 * ./var/admin.token (only for a loopback http:// address). Over the Unix socket the daemon knows us by
 * our uid, so no token is needed there. Single-threaded; messages go to stderr, never the token. */
#include "cli/client.h"
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define BODY_MAX (64u << 20) /* a buffered reply larger than this is an error, not an OOM */

volatile int cli_interrupted;

struct cli_conn {
    CURL *curl;
    char base[1024];       /* "http://host:port" (no trailing slash); "http://localhost" over a socket */
    char sock[PATH_MAX];   /* Unix socket path, or "" */
    char where[PATH_MAX + 16]; /* as shown to users */
    char from[PATH_MAX + 32];  /* where the address came from, for error hints */
    char token[512];       /* "" = none */
};

/* ---------------- options ---------------- */

int cli_common_opt(cli_global *g, int c)
{
    switch (c) {
    case CLI_OPT_URL: g->url = optarg; return 0;
    case CLI_OPT_TOKEN: g->token = optarg; return 0;
    case CLI_OPT_JSON: g->json = 1; return 0;
    case CLI_OPT_HELP: return 1;
    default: return CLI_EUSAGE;
    }
}

int cli_common_opt_usage(cli_global *g, int c, const char *usage)
{
    int rc = cli_common_opt(g, c);
    if (rc == 0) return -1;
    if (rc == 1) {
        printf("usage: coretune %s\n", usage);
        return CLI_OK;
    }
    return cli_usage_error(usage);
}

int cli_common_only(cli_global *g, int argc, char **argv, const char *usage)
{
    static const struct option longopts[] = {CLI_COMMON_OPTS, {0, 0, 0, 0}};
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1)
        if ((rc = cli_common_opt_usage(g, c, usage)) >= 0) return rc;
    return -1;
}

int cli_usage_error(const char *usage)
{
    fprintf(stderr, "usage: coretune %s\n(coretune --help lists every command)\n", usage);
    return CLI_EUSAGE;
}

/* ---------------- resolution ---------------- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    if (n >= 2 && ((s[0] == '"' && s[n - 1] == '"') || (s[0] == '\'' && s[n - 1] == '\''))) {
        s[n - 1] = 0;
        s++;
    }
    return s;
}

/* The config file's path: $XDG_CONFIG_HOME/coretune/config or ~/.config/coretune/config. */
static int config_path(char *buf, size_t n)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) return snprintf(buf, n, "%s/coretune/config", xdg) < (int)n ? 0 : -1;
    if (home && *home) return snprintf(buf, n, "%s/.config/coretune/config", home) < (int)n ? 0 : -1;
    return -1;
}

/* Reads `url = ...` and `token = ...` lines (# comments; unknown keys are ignored, so newer config files
 * work with older clients). A missing file is not an error. */
static void read_config(const char *path, char *url, size_t urln, char *token, size_t tokn)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[2048];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            fprintf(stderr, "coretune: %s:%d: expected 'name = value', ignored\n", path, lineno);
            continue;
        }
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        if (!strcmp(k, "url")) snprintf(url, urln, "%s", v);
        else if (!strcmp(k, "token")) snprintf(token, tokn, "%s", v);
    }
    fclose(f);
}

static int is_socket(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static int is_loopback_http(const char *base)
{
    const char *h = strstr(base, "://");
    if (!h || strncmp(base, "http://", 7)) return 0;
    h += 3;
    return !strncmp(h, "127.0.0.1", 9) || !strncmp(h, "localhost", 9) || !strncmp(h, "[::1]", 5);
}

/* Parses url into c->base / c->sock / c->where. Accepts unix:/path, unix:///path, http(s)://host:port
 * (a trailing / or /v1 is dropped: OpenAI clients' base_url works too), host:port, or a socket path. */
static int set_address(cli_conn *c, const char *url)
{
    if (!strncmp(url, "unix:", 5) || url[0] == '/' || !strncmp(url, "./", 2)) {
        const char *p = !strncmp(url, "unix:", 5) ? url + 5 : url;
        if (!strncmp(p, "//", 2)) p += 2;
        if (!*p || strlen(p) >= sizeof c->sock || strlen(p) >= 108) return -1; /* sun_path */
        snprintf(c->sock, sizeof c->sock, "%s", p);
        snprintf(c->base, sizeof c->base, "http://localhost");
        snprintf(c->where, sizeof c->where, "unix:%s", p);
        return 0;
    }
    char tmp[sizeof c->base];
    if (strstr(url, "://")) {
        if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) return -1;
        if (snprintf(tmp, sizeof tmp, "%s", url) >= (int)sizeof tmp) return -1;
    } else if (snprintf(tmp, sizeof tmp, "http://%s", url) >= (int)sizeof tmp) {
        return -1;
    }
    size_t n = strlen(tmp);
    while (n && tmp[n - 1] == '/') tmp[--n] = 0;
    if (n > 3 && !strcmp(tmp + n - 3, "/v1")) tmp[n -= 3] = 0;
    if (strlen(tmp) <= strlen("http://")) return -1;
    memcpy(c->base, tmp, n + 1);
    c->sock[0] = 0;
    snprintf(c->where, sizeof c->where, "%s", c->base);
    return 0;
}

int cli_conn_open(const cli_global *g, cli_conn **out)
{
    *out = NULL;
    cli_conn *c = calloc(1, sizeof *c);
    if (!c) return CLI_EFAIL;
    char cfg[PATH_MAX] = "", cfg_url[1024] = "", cfg_token[512] = "";
    if (config_path(cfg, sizeof cfg) == 0) read_config(cfg, cfg_url, sizeof cfg_url, cfg_token, sizeof cfg_token);

    const char *url = NULL, *env = getenv("CORETUNE_URL");
    if (g->url) url = g->url, snprintf(c->from, sizeof c->from, "--url");
    else if (env && *env) url = env, snprintf(c->from, sizeof c->from, "CORETUNE_URL");
    else if (cfg_url[0]) url = cfg_url, snprintf(c->from, sizeof c->from, "%s", cfg);
    else if (is_socket("/run/coretuned/coretuned.sock")) url = "unix:/run/coretuned/coretuned.sock";
    else if (is_socket("var/coretuned.sock")) url = "unix:./var/coretuned.sock";
    else url = "http://127.0.0.1:8080";
    if (set_address(c, url) != 0) {
        fprintf(stderr, "coretune: bad daemon address '%s'%s%s: want unix:/path/to/socket or http://host:port\n", url,
                c->from[0] ? " from " : "", c->from);
        free(c);
        return CLI_EUSAGE;
    }

    const char *tok = NULL, *etok = getenv("CORETUNE_TOKEN");
    if (g->token) tok = g->token;
    else if (etok && *etok) tok = etok;
    else if (cfg_token[0]) tok = cfg_token;
    if (tok) {
        if (strlen(tok) >= sizeof c->token) {
            fprintf(stderr, "coretune: the token is too long\n");
            free(c);
            return CLI_EUSAGE;
        }
        snprintf(c->token, sizeof c->token, "%s", tok);
    } else if (!c->sock[0] && is_loopback_http(c->base)) {
        /* `make run`'s daemon on this machine: its admin token, when we may read it */
        FILE *f = fopen("var/admin.token", "r");
        if (f) {
            char line[512];
            if (fgets(line, sizeof line, f)) snprintf(c->token, sizeof c->token, "%s", trim(line));
            fclose(f);
        }
    }
    for (const char *p = c->token; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
            fprintf(stderr, "coretune: the token contains spaces or control characters\n");
            free(c);
            return CLI_EUSAGE;
        }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || !(c->curl = curl_easy_init())) {
        fprintf(stderr, "coretune: cannot initialise libcurl\n");
        free(c);
        return CLI_EFAIL;
    }
    *out = c;
    return CLI_OK;
}

void cli_conn_close(cli_conn *c)
{
    if (!c) return;
    curl_easy_cleanup(c->curl);
    curl_global_cleanup();
    explicit_bzero(c->token, sizeof c->token);
    free(c);
}

const char *cli_conn_where(const cli_conn *c) { return c->where; }

/* ---------------- HTTP ---------------- */

typedef struct xfer {
    CURL *h;
    const cli_req *req;
    char *buf;
    size_t len, cap;
    int decided, to_sink, stopped, too_big;
} xfer;

static size_t on_write(char *p, size_t sz, size_t nm, void *ud)
{
    xfer *x = ud;
    size_t n = sz * nm;
    if (!x->decided) {
        long code = 0;
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
        x->to_sink = x->req && x->req->sink && code >= 200 && code < 300;
        x->decided = 1;
    }
    if (x->to_sink) {
        if (x->req->sink(x->req->ud, p, n) != 0) {
            x->stopped = 1;
            return 0; /* aborts the transfer: CURLE_WRITE_ERROR, which cli_http treats as done */
        }
        return n;
    }
    if (x->len + n + 1 > BODY_MAX) {
        x->too_big = 1;
        return 0;
    }
    if (x->len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + n + 1) cap *= 2;
        char *b = realloc(x->buf, cap);
        if (!b) return 0;
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, p, n);
    x->len += n;
    x->buf[x->len] = 0;
    return n;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)ud, (void)a, (void)b, (void)c, (void)d;
    return cli_interrupted ? 1 : 0;
}

static void on_sigint(int sig)
{
    (void)sig;
    cli_interrupted = 1;
}

/* CORETUNE_DEBUG=1: libcurl's trace of connections and headers on stderr, the token redacted. */
static int on_debug(CURL *h, curl_infotype type, char *data, size_t size, void *ud)
{
    (void)h, (void)ud;
    const char *tag = type == CURLINFO_TEXT ? "* " : type == CURLINFO_HEADER_IN ? "< " : type == CURLINFO_HEADER_OUT ? "> " : NULL;
    if (!tag) return 0;
    while (size) {
        const char *nl = memchr(data, '\n', size);
        size_t n = nl ? (size_t)(nl - data) + 1 : size;
        if (n >= 14 && !strncasecmp(data, "Authorization:", 14)) fprintf(stderr, "%sAuthorization: (redacted)\n", tag);
        else if (n > 2 || (n && data[0] != '\r' && data[0] != '\n')) fprintf(stderr, "%s%.*s%s", tag, (int)n, data, nl ? "" : "\n");
        data += n;
        size -= n;
    }
    return 0;
}

static void conn_hint(const cli_conn *c)
{
    if (c->from[0])
        fprintf(stderr, "coretune: (the address came from %s)\n", c->from);
    else
        fprintf(stderr, "coretune: is coretuned running? Point coretune at it with --url, CORETUNE_URL or "
                        "'url = ...' in ~/.config/coretune/config\n");
}

void cli_resp_free(cli_resp *r)
{
    if (!r) return;
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

int cli_http(cli_conn *c, const char *method, const char *path, const cli_req *req, cli_resp *resp, int quiet)
{
    memset(resp, 0, sizeof *resp);
    static int handler;
    if (!handler) {
        struct sigaction sa = {.sa_handler = on_sigint};
        sigaction(SIGINT, &sa, NULL);
        handler = 1;
    }
    char url[4096];
    if (snprintf(url, sizeof url, "%s%s", c->base, path) >= (int)sizeof url) {
        fprintf(stderr, "coretune: request path too long\n");
        return CLI_EUSAGE;
    }
    CURL *h = c->curl;
    curl_easy_reset(h);
    xfer x = {.h = h, .req = req};
    struct curl_slist *hdrs = NULL;
    char auth[600], errbuf[CURL_ERROR_SIZE] = "";
    if (c->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
        explicit_bzero(auth, sizeof auth);
    }
    if (req && req->json) { /* small bodies: no 100-continue round trip (uploads keep it: a 413 comes early) */
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "Expect:");
    }
    if (req && req->headers)
        for (const char *const *p = req->headers; *p; p++) hdrs = curl_slist_append(hdrs, *p);

    curl_easy_setopt(h, CURLOPT_URL, url);
    if (c->sock[0]) curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->sock);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "coretune/1");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    const char *dbg = getenv("CORETUNE_DEBUG");
    if (dbg && *dbg && strcmp(dbg, "0")) {
        curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, on_debug);
        curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
    }
    if (req && req->stream) { /* the daemon's heartbeats arrive every 15 s; 60 s of nothing is a dead link */
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    } else if (!(req && (req->sink || req->mime))) {
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    } else {
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 120L);
    }
    if (req && req->mime) curl_easy_setopt(h, CURLOPT_MIMEPOST, req->mime);
    else if (req && req->json) curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->json);
    else if (!strcmp(method, "POST")) curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    if (strcmp(method, "GET") && strcmp(method, "POST")) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);

    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_slist_free_all(hdrs);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);

    int ret = CLI_OK;
    if (cli_interrupted) {
        ret = CLI_EFAIL;
    } else if (rc == CURLE_WRITE_ERROR && x.stopped) {
        /* the sink asked to stop */
    } else if (x.too_big) {
        fprintf(stderr, "coretune: the reply from %s is larger than %u MiB\n", c->where, BODY_MAX >> 20);
        ret = CLI_EFAIL;
    } else if (rc != CURLE_OK && (resp->status == 0 || !(req && req->stream))) {
        if (!quiet) {
            struct stat st;
            const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
            if (c->sock[0] && rc == CURLE_COULDNT_CONNECT) /* curl's message names "localhost port 80" */
                why = stat(c->sock, &st) != 0 ? strerror(errno)
                      : !S_ISSOCK(st.st_mode) ? "not a socket"
                                              : "connection refused";
            fprintf(stderr, "coretune: cannot connect to %s: %s\n", c->where, why);
            conn_hint(c);
        }
        ret = CLI_ECONNECT;
    } /* else: a stream that broke after its headers: the caller reconnects */
    if (ret != CLI_OK) {
        free(x.buf);
        resp->status = 0;
        return ret;
    }
    resp->body = x.buf ? x.buf : strdup("");
    resp->len = x.len;
    if (!resp->body) return CLI_EFAIL;
    if (x.len) resp->json = json_loadb(resp->body, x.len, 0, NULL);
    return CLI_OK;
}

int cli_fail_resp(const cli_conn *c, const cli_resp *r, const char *what)
{
    json_t *e = r->json ? json_object_get(r->json, "error") : NULL;
    const char *msg = json_string_value(json_object_get(e, "message"));
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *param = json_string_value(json_object_get(e, "param"));
    if (msg)
        fprintf(stderr, "coretune: %s: %s (HTTP %ld%s%s%s%s)\n", what, msg, r->status, code ? ", " : "",
                code ? code : "", param ? ", param " : "", param ? param : "");
    else
        fprintf(stderr, "coretune: %s: HTTP %ld from %s\n", what, r->status, c->where);
    switch (r->status) {
    case 400:
    case 413:
        return CLI_EUSAGE;
    case 401:
        fprintf(stderr, "coretune: give a token with --token, CORETUNE_TOKEN or 'token = ...' in "
                        "~/.config/coretune/config (the admin token is in the daemon's DATA_DIR/admin.token), "
                        "or use the daemon's Unix socket\n");
        return CLI_EAUTH;
    case 403:
        return CLI_EAUTH;
    case 404:
        return CLI_ENOTFOUND;
    default:
        return CLI_EFAIL;
    }
}

int cli_call(cli_conn *c, const char *method, const char *path, const char *json_body, cli_resp *resp,
             const char *what)
{
    cli_req req = {.json = json_body};
    int rc = cli_http(c, method, path, &req, resp, 0);
    if (rc != CLI_OK) return rc;
    if (resp->status < 200 || resp->status >= 300) {
        rc = cli_fail_resp(c, resp, what);
        cli_resp_free(resp);
        return rc;
    }
    if (!json_is_object(resp->json)) {
        fprintf(stderr, "coretune: %s: %s answered HTTP %ld without a JSON object — is it coretuned?\n", what,
                c->where, resp->status);
        cli_resp_free(resp);
        return CLI_EFAIL;
    }
    return CLI_OK;
}

int cli_escape(char *buf, size_t n, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int keep = isalnum(ch) || strchr("-._~:@!$'()*+,;", ch);
        if (o + (keep ? 1 : 3) >= n) return -1;
        if (keep) {
            buf[o++] = (char)ch;
        } else {
            buf[o++] = '%';
            buf[o++] = hex[ch >> 4];
            buf[o++] = hex[ch & 15];
        }
    }
    if (o >= n) return -1;
    buf[o] = 0;
    return 0;
}
