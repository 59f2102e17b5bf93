/* cli/assets_cmd.c — what jobs use and produce: `models`, `datasets`, `upload FILE|DIR [LABELS]`
 * (multipart POST /v1/files; a folder is sent as a tar.gz made on the fly, an IDX pair as two parts) and `download ID|MODEL` (GET /v1/models/{id}/content, checked to be safetensors and
 * written atomically: a temporary file in the target's folder, fsync, rename). Single-threaded;
 * messages on stderr; returns exit codes (cli.h). */
#include "cli/client.h"
#include "cli/fmt.h"
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------- models, datasets ---------------- */

/* Fills one table row from one element of a list's "data"; cells may point into buf (8 x 40 bytes). */
typedef void (*row_fn)(json_t *item, const char **row, char (*buf)[40]);

/* `coretune WHAT [--json]`: GET path and print it, unchanged with --json, else as a table. */
static int list_command(cli_global *g, int argc, char **argv, const char *usage, const char *path,
                        const char *what, const char *const *heads, int ncols, row_fn fill)
{
    int rc = cli_common_only(g, argc, argv, usage);
    if (rc >= 0) return rc;
    if (optind != argc) return cli_usage_error(usage);
    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) return rc;
    cli_resp r;
    if ((rc = cli_call(conn, "GET", path, NULL, &r, what)) == CLI_OK) {
        if (g->json) {
            cli_print_raw(r.body, r.len);
        } else {
            cli_table *t = cli_table_new(ncols, heads);
            size_t i;
            json_t *item;
            json_array_foreach(json_object_get(r.json, "data"), i, item) {
                const char *row[8];
                char buf[8][40];
                fill(item, row, buf);
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

static void model_row(json_t *m, const char **row, char (*buf)[40])
{
    json_t *cr = json_object_get(m, "created");
    cli_fmt_time(buf[0], sizeof buf[0], json_number_value(cr) > 0 ? cr : NULL);
    row[0] = cli_jstr(m, "id");
    row[1] = cli_jstr(m, "kind");
    row[2] = cli_jstr(m, "arch");
    row[3] = buf[0];
    row[4] = cli_jstr(m, "job_id");
}

int cli_models(cli_global *g, int argc, char **argv)
{
    static const char *const heads[] = {"ID", "KIND", "ARCH", "CREATED", "JOB"};
    return list_command(g, argc, argv, "models [--json]", "/v1/models", "models", heads, 5, model_row);
}

static void dataset_row(json_t *d, const char **row, char (*buf)[40])
{
    cli_fmt_value(buf[0], sizeof buf[0], json_object_get(d, "images"));
    cli_fmt_value(buf[1], sizeof buf[1], json_object_get(d, "classes"));
    cli_fmt_value(buf[2], sizeof buf[2], json_object_get(d, "bytes"));
    row[0] = cli_jstr(d, "id");
    row[1] = cli_jstr(d, "source");
    row[2] = cli_jstr(d, "format");
    row[3] = buf[0];
    row[4] = buf[1];
    row[5] = buf[2];
}

int cli_datasets(cli_global *g, int argc, char **argv)
{
    static const char *const heads[] = {"ID", "SOURCE", "FORMAT", "IMAGES", "CLASSES", "BYTES"};
    return list_command(g, argc, argv, "datasets [--json]", "/v1/datasets", "datasets", heads, 6, dataset_row);
}

/* ---------------- upload ---------------- */

/* `upload DIR`: the folder as a tar.gz written by libarchive into an unnamed temporary file (tmpfile:
 * nothing is left behind, whatever happens), entries relative to DIR in sorted order. Regular files
 * and folders only: a link or special file is skipped with a warning (the daemon refuses them). */
static int tar_dir(struct archive *a, const char *root, const char *rel, int depth)
{
    char path[8200];
    snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) { fprintf(stderr, "coretune: %s: %s\n", path, strerror(errno)); return -1; }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        char sub[4096], full[8200];
        if (rc || !strcmp(nm, ".") || !strcmp(nm, "..")) continue;
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", nm);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat st;
        if (lstat(full, &st) != 0) { fprintf(stderr, "coretune: %s: %s\n", full, strerror(errno)); rc = -1; continue; }
        if (S_ISDIR(st.st_mode) && depth < 16) {
            rc = tar_dir(a, root, sub, depth + 1);
            continue;
        }
        if (!S_ISREG(st.st_mode)) { fprintf(stderr, "coretune: %s: skipped (not a regular file or folder)\n", full); continue; }
        FILE *in = fopen(full, "rb");
        if (!in) { fprintf(stderr, "coretune: %s: %s\n", full, strerror(errno)); rc = -1; continue; }
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, sub);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, st.st_size);
        archive_entry_set_mtime(e, st.st_mtime, 0);
        if (archive_write_header(a, e) != ARCHIVE_OK) rc = -1;
        char buf[65536];
        size_t k;
        long long left = st.st_size; /* exactly the size in the header, even if the file changes meanwhile */
        while (rc == 0 && left > 0 && (k = fread(buf, 1, sizeof buf < (size_t)left ? sizeof buf : (size_t)left, in)) > 0) {
            if (archive_write_data(a, buf, k) != (la_ssize_t)k) rc = -1;
            left -= (long long)k;
        }
        if (rc == 0 && left > 0) { fprintf(stderr, "coretune: %s: changed while being read\n", full); rc = -1; }
        if (rc && archive_error_string(a)) fprintf(stderr, "coretune: %s: %s\n", full, archive_error_string(a));
        archive_entry_free(e);
        fclose(in);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

static FILE *archive_folder(const char *dir, long long *size)
{
    FILE *f = tmpfile();
    struct archive *a = f ? archive_write_new() : NULL;
    if (!a) { fprintf(stderr, "coretune: cannot create a temporary file: %s\n", strerror(errno)); if (f) fclose(f); return NULL; }
    int rc = archive_write_set_format_pax_restricted(a) == ARCHIVE_OK && archive_write_add_filter_gzip(a) == ARCHIVE_OK &&
                     archive_write_open_FILE(a, f) == ARCHIVE_OK ? tar_dir(a, dir, "", 0) : -1;
    if (archive_write_close(a) != ARCHIVE_OK) rc = -1;
    if (rc && archive_error_string(a)) fprintf(stderr, "coretune: %s: %s\n", dir, archive_error_string(a));
    archive_write_free(a);
    if (rc == 0 && (fflush(f) != 0 || fseek(f, 0, SEEK_END) != 0 || (*size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)) rc = -1;
    if (rc) { fclose(f); return NULL; }
    return f;
}

static size_t read_cb(char *buf, size_t size, size_t n, void *ud) { return fread(buf, size, n, ud) * size; }
static int seek_cb(void *ud, curl_off_t off, int origin)
{
    return fseek(ud, (long)off, origin) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

int cli_upload(cli_global *g, int argc, char **argv)
{
    static const char usage[] = "upload FILE|DIR [LABELS] [--purpose fine-tune] [--json]";
    static const struct option longopts[] = {{"purpose", required_argument, 0, 'p'}, CLI_COMMON_OPTS, {0, 0, 0, 0}};
    const char *purpose = "fine-tune";
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'p') purpose = optarg;
        else if ((rc = cli_common_opt_usage(g, c, usage)) >= 0) return rc;
    }
    int nfiles = argc - optind;
    if (nfiles != 1 && nfiles != 2) return cli_usage_error(usage);
    const char *files[2] = {argv[optind], nfiles == 2 ? argv[optind + 1] : NULL};
    int is_dir = 0;
    for (int i = 0; i < nfiles; i++) {
        struct stat st;
        errno = 0;
        int ok = stat(files[i], &st) == 0 && access(files[i], R_OK) == 0;
        if (ok && S_ISDIR(st.st_mode) && nfiles == 1) { is_dir = 1; continue; }
        if (!ok || !S_ISREG(st.st_mode)) {
            fprintf(stderr, "coretune: %s: %s\n", files[i], errno ? strerror(errno) : nfiles == 2 ? "not a regular file" : "not a regular file or folder");
            return CLI_EUSAGE;
        }
    }
    FILE *tar = NULL;
    long long tar_size = 0;
    char tar_name[300];
    if (is_dir) {
        if (!(tar = archive_folder(files[0], &tar_size))) return CLI_EFAIL;
        const char *end = files[0] + strlen(files[0]);
        while (end > files[0] + 1 && end[-1] == '/') end--;
        const char *base = end;
        while (base > files[0] && base[-1] != '/') base--;
        snprintf(tar_name, sizeof tar_name, "%.*s.tar.gz", (int)(end - base) > 200 ? 200 : (int)(end - base), base);
    }
    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) { if (tar) fclose(tar); return rc; }
    curl_mime *mime = curl_mime_init(NULL); /* a handle is only needed for its defaults */
    curl_mimepart *part = mime ? curl_mime_addpart(mime) : NULL;
    int bad = !part;
    if (part) {
        curl_mime_name(part, "purpose");
        curl_mime_data(part, purpose, CURL_ZERO_TERMINATED);
    }
    for (int i = 0; i < nfiles && !bad; i++) { /* every file is a part named "file" (two: an IDX pair) */
        curl_mimepart *fpart = curl_mime_addpart(mime);
        bad = !fpart || curl_mime_name(fpart, "file") != CURLE_OK ||
              curl_mime_type(fpart, "application/octet-stream") != CURLE_OK ||
              (tar ? curl_mime_data_cb(fpart, tar_size, read_cb, seek_cb, NULL, tar) != CURLE_OK ||
                         curl_mime_filename(fpart, tar_name) != CURLE_OK
                   : curl_mime_filedata(fpart, files[i]) != CURLE_OK);
    }
    if (bad) {
        fprintf(stderr, "coretune: %s: cannot prepare the upload\n", files[0]);
        curl_mime_free(mime);
        cli_conn_close(conn);
        if (tar) fclose(tar);
        return CLI_EFAIL;
    }
    cli_req req = {.mime = mime};
    cli_resp r;
    rc = cli_http(conn, "POST", "/v1/files", &req, &r, 0);
    if (rc == CLI_OK && (r.status < 200 || r.status >= 300)) {
        rc = cli_fail_resp(conn, &r, files[0]);
    } else if (rc == CLI_OK && g->json) {
        cli_print_raw(r.body, r.len);
    } else if (rc == CLI_OK) {
        char b[64];
        const char *keys[] = {"id", "filename", "bytes", "format", "images", "purpose", "status"};
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
            printf("%-10s %s\n", keys[i], cli_fmt_value(b, sizeof b, json_object_get(r.json, keys[i])));
        json_t *sz = json_object_get(r.json, "image_size");
        if (sz)
            printf("%-10s %lldx%lld .. %lldx%lld\n", "size", json_integer_value(json_object_get(sz, "min_width")),
                   json_integer_value(json_object_get(sz, "min_height")), json_integer_value(json_object_get(sz, "max_width")),
                   json_integer_value(json_object_get(sz, "max_height")));
        size_t i;
        json_t *cl;
        json_t *classes = json_object_get(r.json, "classes");
        printf("%-10s %zu\n", "classes", json_array_size(classes));
        json_array_foreach(classes, i, cl)
            printf("  %-30s %lld\n", cli_jstr(cl, "name") ? cli_jstr(cl, "name") : "",
                   json_integer_value(json_object_get(cl, "images")));
        if (cli_jstr(r.json, "id") && isatty(STDERR_FILENO))
            fprintf(stderr, "use it with: coretune submit --training-file %s ...\n", cli_jstr(r.json, "id"));
    }
    cli_resp_free(&r);
    curl_mime_free(mime);
    cli_conn_close(conn);
    if (tar) fclose(tar);
    return rc;
}

/* ---------------- download ---------------- */

typedef struct dl {
    FILE *f;
    uint64_t bytes;
    unsigned char head[8];
    int failed;
} dl;

static int dl_write(void *ud, const char *p, size_t n)
{
    dl *d = ud;
    for (size_t i = 0; i < n && d->bytes + i < 8; i++) d->head[d->bytes + i] = (unsigned char)p[i];
    if (fwrite(p, 1, n, d->f) != n) {
        d->failed = errno ? errno : EIO;
        return 1;
    }
    d->bytes += n;
    return 0;
}

/* The default file name: the model id with ':' and '/' made safe, plus .safetensors. */
static void default_name(char *buf, size_t n, const char *model, int best)
{
    size_t o = 0;
    for (const char *p = model; *p && o + 1 < n; p++) buf[o++] = (*p == ':' || *p == '/') ? '_' : *p;
    buf[o] = 0;
    snprintf(buf + o, n - o, "%s.safetensors", best ? "-best" : "");
}

/* Checks the first bytes of f (rewound) for a safetensors header: u64 length + a JSON object. */
static int check_safetensors(FILE *f, uint64_t size)
{
    unsigned char h[8];
    if (size < 10 || fseek(f, 0, SEEK_SET) != 0 || fread(h, 1, 8, f) != 8) return -1;
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = len << 8 | h[i];
    int c = fgetc(f);
    return len >= 2 && len <= size - 8 && c == '{' ? 0 : -1;
}

int cli_download(cli_global *g, int argc, char **argv)
{
    static const char usage[] = "download JOB_ID|MODEL [-o FILE|DIR|-] [--best] [--json]";
    static const struct option longopts[] = {{"output", required_argument, 0, 'o'}, {"best", no_argument, 0, 'b'},
                                             CLI_COMMON_OPTS, {0, 0, 0, 0}};
    const char *out = NULL;
    int best = 0, c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
        if (c == 'o') out = optarg;
        else if (c == 'b') best = 1;
        else if ((rc = cli_common_opt_usage(g, c, usage)) >= 0) return rc;
    }
    if (argc - optind != 1) return cli_usage_error(usage);
    const char *arg = argv[optind];
    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) return rc;

    char model[512], esc[1024], path[1200], target[4096], tmp[4200] = "";
    cli_resp r = {0};
    FILE *f = NULL;
    snprintf(model, sizeof model, "%s", arg);
    if (!strncmp(arg, "ftjob-", 6)) { /* a job: its fine-tuned model */
        if (cli_escape(esc, sizeof esc, arg) != 0) goto usage;
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", esc);
        if ((rc = cli_call(conn, "GET", path, NULL, &r, arg)) != CLI_OK) goto done;
        const char *m = cli_jstr(r.json, "fine_tuned_model");
        if (!m) {
            fprintf(stderr, "coretune: %s has no model to download (it is %s)\n", arg,
                    cli_jstr(r.json, "status") ? cli_jstr(r.json, "status") : "not finished");
            rc = CLI_EFAIL;
            goto done;
        }
        snprintf(model, sizeof model, "%s", m);
        cli_resp_free(&r);
    }
    if (cli_escape(esc, sizeof esc, model) != 0) goto usage;
    snprintf(path, sizeof path, "/v1/models/%s/content%s", esc, best ? "?which=best" : "");

    int to_stdout = out && !strcmp(out, "-");
    if (to_stdout) {
        if (isatty(STDOUT_FILENO)) {
            fprintf(stderr, "coretune: not writing weights to a terminal; use -o FILE\n");
            rc = CLI_EUSAGE;
            goto done;
        }
        snprintf(target, sizeof target, "-");
    } else {
        struct stat st;
        char name[600];
        default_name(name, sizeof name, model, best);
        if (!out) snprintf(target, sizeof target, "%s", name);
        else if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(target, sizeof target, "%s%s%s", out, out[strlen(out) - 1] == '/' ? "" : "/", name);
        else if (snprintf(target, sizeof target, "%s", out) >= (int)sizeof target) goto usage;
        /* the temporary file lives next to the target, so the rename is atomic */
        const char *slash = strrchr(target, '/');
        int dirlen = slash ? (int)(slash - target) + 1 : 0;
        snprintf(tmp, sizeof tmp, "%.*s.%s.XXXXXX", dirlen, target, slash ? slash + 1 : target);
        int fd = mkstemp(tmp);
        if (fd < 0 || !(f = fdopen(fd, "w+b"))) {
            fprintf(stderr, "coretune: cannot write next to %s: %s\n", target, strerror(errno));
            if (fd >= 0) close(fd);
            if (fd >= 0) unlink(tmp);
            tmp[0] = 0;
            rc = CLI_EFAIL;
            goto done;
        }
        mode_t um = umask(0);
        umask(um);
        fchmod(fd, 0666 & ~um);
    }

    dl d = {.f = to_stdout ? stdout : f};
    cli_req req = {.sink = dl_write, .ud = &d};
    if ((rc = cli_http(conn, "GET", path, &req, &r, 0)) != CLI_OK) goto done;
    if (r.status < 200 || r.status >= 300) {
        rc = cli_fail_resp(conn, &r, model);
        goto done;
    }
    if (d.failed) {
        fprintf(stderr, "coretune: writing %s: %s\n", target, strerror(d.failed));
        rc = CLI_EFAIL;
        goto done;
    }
    if (!to_stdout) {
        if (fflush(f) != 0 || check_safetensors(f, d.bytes) != 0) {
            fprintf(stderr, "coretune: %s: the download (%llu bytes) is not a safetensors file\n", model,
                    (unsigned long long)d.bytes);
            rc = CLI_EFAIL;
            goto done;
        }
        if (fsync(fileno(f)) != 0 || fclose(f) != 0) {
            f = NULL;
            fprintf(stderr, "coretune: writing %s: %s\n", target, strerror(errno));
            rc = CLI_EFAIL;
            goto done;
        }
        f = NULL;
        if (rename(tmp, target) != 0) {
            fprintf(stderr, "coretune: cannot rename to %s: %s\n", target, strerror(errno));
            rc = CLI_EFAIL;
            goto done;
        }
        tmp[0] = 0;
    } else {
        fflush(stdout);
    }
    if (g->json && !to_stdout) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "model", model, "which", best ? "best" : "final", "file", target,
                              "bytes", (json_int_t)d.bytes);
        if (o) cli_print_json(o);
        json_decref(o);
    } else if (!to_stdout) {
        printf("%s  %s%s  %llu bytes\n", target, model, best ? " (best)" : "", (unsigned long long)d.bytes);
    }
    rc = CLI_OK;
    goto done;
usage:
    rc = cli_usage_error(usage);
done:
    if (f) fclose(f);
    if (tmp[0]) unlink(tmp);
    cli_resp_free(&r);
    cli_conn_close(conn);
    return rc;
}
