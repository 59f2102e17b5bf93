/* api/api.c — route table and JSON responses. Loop thread only. */
#include "api/api.h"
#include <jansson.h>
#include <string.h>
#include <time.h>

static enum MHD_Result reply_json(struct MHD_Connection *conn, unsigned int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(text); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned int status, const char *type,
                                   const char *code, const char *message)
{
    return reply_json(conn, status,
                      json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", message, "type", type,
                                "param", "code", code));
}

enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                           const char *version, const char *upload_data, size_t *upload_data_size,
                           void **con_cls)
{
    api_ctx *ctx = cls;
    (void)version; (void)upload_data;
    if (*con_cls == NULL) { /* first call: headers only */
        *con_cls = conn;
        return MHD_YES;
    }
    if (*upload_data_size != 0) { /* no route takes a body yet: drop it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/healthz") == 0) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
            return reply_error(conn, 405, "invalid_request_error", "method_not_allowed", "use GET");
        return reply_json(conn, 200, json_pack("{s:s, s:s, s:I}", "status", "ok", "version", ctx->version,
                                               "uptime_seconds", (json_int_t)(time(NULL) - ctx->started_at)));
    }
    return reply_error(conn, 404, "invalid_request_error", "not_found", "no such route");
}
