/* api/routes_assets.c — the handlers of models (list, get, the weights as a download), datasets and files
 * (list, get, multipart upload). Loop thread only; called by the route table (api/routes.c) with the
 * method checked. An upload is streamed by MHD's post processor into a temp file in svc_upload_dir()
 * while the body arrives (on_form) and handed to svc_file_add after it; errors go through the one table. */
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
    (void)kind; (void)content_type; (void)transfer_encoding; (void)off;
    req *q = cls;
    if (!key) return MHD_YES; /* a part without a name (MHD passes NULL): ignored like unknown fields */
    if (!strcmp(key, "purpose")) {
        size_t have = strlen(q->purpose);
        if (size && have + size < sizeof q->purpose) { memcpy(q->purpose + have, data, size); q->purpose[have + size] = 0; }
        return MHD_YES;
    }
    if (strcmp(key, "file") != 0) return MHD_YES; /* other fields are ignored */
    if (q->fd < 0 && !q->have_file) {
        snprintf(q->tmp, sizeof q->tmp, "%.1100s/upload-XXXXXX", svc_upload_dir(q->a->svc));
        q->fd = mkstemp(q->tmp);
        if (q->fd < 0) { q->bad_form = 1; q->tmp[0] = 0; return MHD_YES; }
        q->have_file = 1;
        snprintf(q->filename, sizeof q->filename, "%s", filename ? filename : "upload");
    }
    q->bytes += (long long)size;
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
    if (q->tmp[0]) { unlink(q->tmp); q->tmp[0] = 0; }
}

enum MHD_Result api__file_upload(api__call *c)
{
    req *q = c->q;
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
    svc_file f;
    svc_error e;
    int rc = svc_file_add(c->a->svc, &q->who, q->tmp, q->filename, q->purpose, q->bytes, &f, &e);
    q->tmp[0] = 0; /* svc_file_add took the file */
    if (rc) return api__reply_error(c, &e);
    return api__reply_rendered(c, render_file(&f));
}
