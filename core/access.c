/* core/access.c — who is calling and what they did: identities from a token or a local uid (on top of
 * core/auth.h), the caller's own view (/v1/me), users and the audit trail (admins only). Audit records
 * ride the progress batch, so an unauthenticated flood costs no fsync per request. Loop thread only. */
#include "core/core_int.h"
#include "core/auth.h"
#include "common/log.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void caller_of(const db_user *u, const char *remote, svc_caller *out)
{
    memset(out, 0, sizeof *out);
    out->user_id = u->id;
    snprintf(out->name, sizeof out->name, "%s", u->name);
    out->admin = u->admin;
    snprintf(out->remote, sizeof out->remote, "%s", remote ? remote : "");
}

void svc_audit(svc *s, const svc_caller *who, const char *remote, const char *action, const char *target,
               const char *outcome, const char *detail)
{
    db_audit *a = db_batch_audit(&s->batch);
    const char *actor = who ? who->name : "", *from = who ? who->remote : remote ? remote : "";
    if (a) db_audit_set(a, util_now(), actor, action, target, outcome, from, detail);
    else LOG(LOG_ERROR, "msg=\"out of memory for an audit record\"");
    if (!strcmp(action, "login_failed")) s->auth_failures++;
    LOG(LOG_WARN, "msg=audit action=%s outcome=%s user=\"%s\" remote=\"%s\" target=\"%.120s\" detail=\"%.200s\"",
        action, outcome, actor, from, target ? target : "", detail ? detail : "");
    svc__flush_later(s);
}

int svc_auth_token(svc *s, const char *token, const char *remote, svc_caller *out, svc_error *e)
{
    db_user u;
    int rc = auth_token_check(s->db, s->auth, token, &u);
    if (rc == 0) { caller_of(&u, remote, out); return 0; }
    if (rc != -EACCES && rc != -ENOENT) return svc__storage_error(s, e);
    svc_audit(s, NULL, remote, "login_failed", "", "denied", token ? "invalid or revoked token" : "no credentials");
    if (!token)
        return svc_fail(e, SVC_EUNAUTH, "invalid_api_key", NULL,
                        "missing credentials: send 'Authorization: Bearer ct_...' (an admin makes one with"
                        " 'coretuned token create NAME'), or connect over the Unix socket");
    return svc_fail(e, SVC_EUNAUTH, "invalid_api_key", NULL, "the API token is not valid (unknown or revoked)");
}

int svc_auth_uid(svc *s, long long uid, svc_caller *out, svc_error *e)
{
    db_user u;
    char remote[32];
    snprintf(remote, sizeof remote, "uid:%lld", uid);
    int rc = auth_uid_check(s->db, uid, s->cfg.self_uid, &u);
    if (rc == 0) { caller_of(&u, remote, out); return 0; }
    if (rc != -EACCES && rc != -ENOENT) return svc__storage_error(s, e);
    svc_audit(s, NULL, remote, "login_failed", "", "denied", "no user has this uid");
    return svc_fail(e, SVC_EUNAUTH, "invalid_api_key", NULL,
                    "local uid %lld is not a coretuned user; an admin can add you with"
                    " 'coretuned user add NAME --uid %lld'", uid, uid);
}

int svc__need_admin(svc *s, const svc_caller *who, const char *what, svc_error *e)
{
    if (who->admin) return 0;
    svc_audit(s, who, NULL, "authz_denied", what, "denied", "admin only");
    return svc_fail(e, SVC_EFORBIDDEN, "permission_denied", NULL, "%s is for admins only", what);
}

int svc_me(svc *s, const svc_caller *who, svc_me_info *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    if (db_user_by_id(s->db, who->user_id, &out->user) != 0) return svc__storage_error(s, e);
    snprintf(out->via, sizeof out->via, "%s", who->remote);
    out->quota = svc__quota_of(s, who->name);
    if (db_job_count(s->db, who->name, JOB_QUEUED, &out->usage.queued_jobs) != 0 ||
        db_file_bytes(s->db, who->name, &out->usage.upload_bytes) != 0 ||
        svc__usage(s, who->name, &out->file_bytes, &out->model_bytes, &out->job_bytes) != 0)
        return svc__storage_error(s, e);
    out->usage.disk_bytes = out->file_bytes + out->model_bytes + out->job_bytes;
    for (run *r = s->runs; r; r = r->next)
        if (!strcmp(r->owner, who->name)) { out->usage.running_jobs++; out->usage.threads += r->threads; }
    return 0;
}

typedef struct user_ctx { svc_user_list *l; int cap; } user_ctx;
static int add_user(void *ud, const db_user *u)
{
    user_ctx *c = ud;
    if (util_grow(&c->l->v, &c->cap, c->l->n + 1, sizeof *c->l->v)) return 1;
    c->l->v[c->l->n++] = *u;
    return 0;
}

void svc_user_list_free(svc_user_list *l)
{
    if (!l) return;
    free(l->v);
    memset(l, 0, sizeof *l);
}

int svc_users(svc *s, const svc_caller *who, svc_user_list *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    int rc = svc__need_admin(s, who, "GET /v1/users", e);
    if (rc) return rc;
    user_ctx c = {out, 0};
    if (db_user_list(s->db, add_user, &c)) { svc_user_list_free(out); return svc__storage_error(s, e); }
    return 0;
}

typedef struct audit_ctx { svc_audit_page *p; int cap; } audit_ctx;
static int add_audit(void *ud, const db_audit *a)
{
    audit_ctx *c = ud;
    if (util_grow(&c->p->v, &c->cap, c->p->n + 1, sizeof *c->p->v)) return 1;
    c->p->v[c->p->n++] = *a;
    return 0;
}

void svc_audit_page_free(svc_audit_page *p)
{
    if (!p) return;
    free(p->v);
    memset(p, 0, sizeof *p);
}

int svc_audit_list(svc *s, const svc_caller *who, long long before, int limit, svc_audit_page *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    int rc = svc__need_admin(s, who, "GET /v1/audit", e);
    if (rc) return rc;
    svc__flush(s); /* records of the last second too */
    audit_ctx c = {out, 0};
    if (db_audit_list(s->db, before, limit, add_audit, &c, &out->has_more)) {
        svc_audit_page_free(out);
        return svc__storage_error(s, e);
    }
    return 0;
}
