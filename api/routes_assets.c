/* api/routes_assets.c — the handlers of models (list, get, the weights as a download), datasets and files
 * (list, get, multipart upload). Loop thread only; called by the route table (api/routes.c) with the
 * method checked. An upload's 'file' parts (one, or an IDX pair) are streamed by MHD's post processor into
 * temp files in svc_upload_dir() while the body arrives (on_form) and handed to svc_file_add after it;
 * errors go through the one table. */
#define _GNU_SOURCE
#include "api/api_int.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum MHD_Result api__model_list(api__call *c)
{
    svc_model_list v;
    svc_error e;
    if (svc_models(c->a->svc, &c->q->who, &v, &e)) return api__reply_error(c, &e);
    json_t *out = render_models(&v);
    svc_model_list_free(&v);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__model_get(api__call *c)
{
    svc_model v;
    svc_error e;
    if (svc_model_get(c->a->svc, &c->q->who, api__param(&c->q->m, "id"), &v, &e)) return api__reply_error(c, &e);
    json_t *out = render_model(&v);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__model_content(api__call *c)
{
    char q[201];                   /* a client's string, quoted in a message */
    const char *id = api__param(&c->q->m, "id");
    char path[1200];
    svc_error e;
    if (svc_model_file(c->a->svc, &c->q->who, id, api__arg(c, "which"), path, sizeof path, &e) != 0)
        return api__reply_error(c, &e);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        return api__fail(c, SVC_ENOTFOUND, "model_not_found", "id", "the weights of '%s' cannot be read", util_quote(q, sizeof q, id));
    }
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* takes the fd */
    if (!r) { close(fd); return MHD_NO; }
    char disp[400], name[330];
    snprintf(name, sizeof name, "%s", id);
    for (char *p = name; *p; p++)
        if (*p == ':' || *p == '"' || *p == '/' || *p == '\\') *p = '_';
    snprintf(disp, sizeof disp, "attachment; filename=\"%s.safetensors\"", name);
    MHD_add_response_header(r, "Content-Type", "application/octet-stream");
    MHD_add_response_header(r, "Content-Disposition", disp);
    enum MHD_Result ret = api__queue(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result api__dataset_list(api__call *c)
{
    svc_dataset_list v;
    svc_error e;
    if (svc_datasets(c->a->svc, &c->q->who, &v, &e)) return api__reply_error(c, &e);
    json_t *out = render_datasets(&v);
    svc_dataset_list_free(&v);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__file_list(api__call *c)
{
    svc_file_list v;
    svc_error e;
    if (svc_files(c->a->svc, &c->q->who, &v, &e)) return api__reply_error(c, &e);
    json_t *out = render_files(&v);
    svc_file_list_free(&v);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__file_get(api__call *c)
{
    svc_file v;
    svc_error e;
    if (svc_file_get(c->a->svc, &c->q->who, api__param(&c->q->m, "id"), &v, &e)) return api__reply_error(c, &e);
    json_t *out = render_file(&v);
    svc_file_free(&v);
    return api__reply_rendered(c, out);
}

/* ---------------- deletes and the storage view ---------------- */

enum MHD_Result api__file_delete(api__call *c)
{
    svc_error e;
    const char *id = api__param(&c->q->m, "id");
    if (svc_file_delete(c->a->svc, &c->q->who, id, &e)) return api__reply_error(c, &e);
    return api__reply_rendered(c, render_deleted(id, "file"));
}

enum MHD_Result api__model_delete(api__call *c)
{
    svc_error e;
    const char *id = api__param(&c->q->m, "id");
    if (svc_model_delete(c->a->svc, &c->q->who, id, &e)) return api__reply_error(c, &e);
    return api__reply_rendered(c, render_deleted(id, "model"));
}

enum MHD_Result api__storage(api__call *c)
{
    svc_storage v;
    svc_error e;
    if (svc_storage_get(c->a->svc, &c->q->who, &v, &e)) return api__reply_error(c, &e);
    json_t *out = render_storage(&v);
    svc_storage_free(&v);
    return api__reply_rendered(c, out);
}

/* ---------------- uploads ---------------- */

static enum MHD_Result on_form(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size)
{
    (void)kind; (void)content_type; (void)transfer_encoding;
    req *q = cls;
    if (!key) return MHD_YES; /* a part without a name (MHD passes NULL): ignored like unknown fields */
    if (!strcmp(key, "purpose")) {
        size_t have = strlen(q->purpose);
        if (size && have + size < sizeof q->purpose) { memcpy(q->purpose + have, data, size); q->purpose[have + size] = 0; }
        return MHD_YES;
    }
    if (strcmp(key, "file") != 0) return MHD_YES; /* other fields are ignored */
    /* A part's first call has off 0. MHD may call an empty chunk at off 0 before the data (also at 0),
     * so a part is new when the current one has data already or another file name. */
    const char *fname = filename ? filename : "upload";
    if (off == 0 && (q->n_parts == 0 || q->part_bytes[q->n_parts - 1] > 0 ||
                     strncmp(fname, q->filename[q->n_parts - 1], sizeof q->filename[0] - 1))) {
        if (q->fd >= 0) { close(q->fd); q->fd = -1; }
        if (q->n_parts == SVC_UPLOAD_MAX_PARTS) { q->too_many_parts = 1; return MHD_YES; }
        char *tmp = q->tmp[q->n_parts];
        snprintf(tmp, sizeof q->tmp[0], "%.1100s/upload-XXXXXX", svc_upload_dir(q->a->svc));
        q->fd = mkstemp(tmp);
        if (q->fd < 0) { q->bad_form = 1; tmp[0] = 0; return MHD_YES; }
        snprintf(q->filename[q->n_parts], sizeof q->filename[0], "%s", fname);
        q->n_parts++;
        q->have_file = 1;
    }
    if (q->too_many_parts || q->n_parts == 0) return MHD_YES;
    q->bytes += (long long)size;
    q->part_bytes[q->n_parts - 1] += (long long)size;
    if (q->bytes > svc_upload_limit(q->a->svc)) { q->too_large = 1; return MHD_YES; }
    for (size_t done = 0; done < size && q->fd >= 0;) {
        ssize_t w = write(q->fd, data + done, size - done);
        if (w < 0) { if (errno == EINTR) continue; q->bad_form = 1; break; }
        done += (size_t)w;
    }
    return MHD_YES;
}

void api__upload_begin(req *q, struct MHD_Connection *conn)
{
    q->pp = MHD_create_post_processor(conn, 16 * 1024, on_form, q);
    if (!q->pp) q->not_form = 1; /* not multipart/form-data: answered after the body */
}

static void drop_tmp(req *q)
{
    for (int i = 0; i < SVC_UPLOAD_MAX_PARTS; i++)
        if (q->tmp[i][0]) { unlink(q->tmp[i]); q->tmp[i][0] = 0; }
}

static void checking_unlink(req *q)
{
    if (q->prev_up) q->prev_up->next_up = q->next_up;
    else if (q->a->checking == q) q->a->checking = q->next_up;
    if (q->next_up) q->next_up->prev_up = q->prev_up;
    q->prev_up = q->next_up = NULL;
}

/* The core's done: the check is over, the suspended connection is resumed and MHD calls the handler
 * again (api__file_upload, which finishes it). */
static void on_checked(void *ud)
{
    req *q = ud;
    checking_unlink(q);
    q->checked = 1;
    MHD_resume_connection(q->conn);
    api__kick(q->a);
}

void api__upload_drop(req *q)
{
    if (!q->checking) return;
    checking_unlink(q);
    svc_upload_abandon(q->checking);
    q->checking = NULL;
}

void api__uploads_resume_all(api_ctx *a)
{
    while (a->checking) {
        req *q = a->checking;
        api__upload_drop(q);         /* the handler, called again, answers 503 (shutting down) */
        MHD_resume_connection(q->conn);
    }
}

enum MHD_Result api__file_upload(api__call *c)
{
    req *q = c->q;
    if (q->checking && q->checked) { /* second call, after on_checked */
        svc_file f;
        svc_error e;
        int rc = svc_upload_finish(q->checking, &f, &e);
        q->checking = NULL;
        if (rc) return api__reply_error(c, &e);
        json_t *out = render_file(&f);
        svc_file_free(&f);
        return api__reply_rendered(c, out);
    }
    if (q->fd >= 0) { close(q->fd); q->fd = -1; }
    if (q->too_large) {
        drop_tmp(q);
        return api__fail(c, SVC_ETOOLARGE, NULL, "file", "the upload is larger than %lld bytes", svc_upload_limit(c->a->svc));
    }
    if (q->not_form) {
        drop_tmp(q);
        return api__fail(c, SVC_EMEDIA, NULL, NULL, "uploads are multipart/form-data with a 'file' part");
    }
    if (q->bad_form || !q->have_file) {
        drop_tmp(q);
        return api__fail(c, SVC_EINVAL, "missing_file", "file", "send multipart/form-data with a 'file' part");
    }
    if (q->too_many_parts) {
        drop_tmp(q);
        return api__fail(c, SVC_EINVAL, "too_many_files", "file", "at most %d 'file' parts (an IDX images + labels pair)",
                         SVC_UPLOAD_MAX_PARTS);
    }
    svc_upload_part parts[SVC_UPLOAD_MAX_PARTS];
    for (int i = 0; i < q->n_parts; i++)
        parts[i] = (svc_upload_part){q->tmp[i], q->filename[i], q->part_bytes[i]};
    svc_error e;
    int rc = svc_file_add_start(c->a->svc, &q->who, parts, q->n_parts, q->purpose, on_checked, q, &q->checking, &e);
    for (int i = 0; i < q->n_parts; i++) q->tmp[i][0] = 0; /* the core took the files */
    if (rc) return api__reply_error(c, &e);
    /* the check runs off the loop: the connection waits suspended, the loop serves the others */
    q->conn = c->conn;
    q->next_up = c->a->checking;
    if (q->next_up) q->next_up->prev_up = q;
    c->a->checking = q;
    MHD_suspend_connection(c->conn);
    return MHD_YES;
}
