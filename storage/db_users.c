/* storage/db_users.c — users (name, local uid, admin, the bootstrap admin), API tokens (public prefix +
 * SHA-256 hash; the token itself is never stored) and the audit trail (also written from a batch by
 * db_batch_write). Loop thread only. Errors: see db.h (-EEXIST for a taken user name or uid). */
#include "storage/db_int.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- users ---- */

#define USER_COLS "id, name, coalesce(uid, -1), admin, bootstrap, created_at"

static void read_user(sqlite3_stmt *st, db_user *u)
{
    memset(u, 0, sizeof *u);
    u->id = sqlite3_column_int64(st, 0);
    db__col_copy(st, 1, u->name, sizeof u->name);
    u->uid = sqlite3_column_int64(st, 2);
    u->admin = sqlite3_column_int(st, 3);
    u->bootstrap = sqlite3_column_int(st, 4);
    u->created_at = sqlite3_column_int64(st, 5);
}

int db_user_add(db *d, const db_user *u, long long *id)
{
    sqlite3_stmt *st = db__prep(d, "INSERT INTO users (name, uid, admin, bootstrap, created_at) VALUES (?,?,?,?,?)");
    if (!st) return -EIO;
    db__bind_text(st, 1, u->name);
    if (u->uid >= 0) sqlite3_bind_int64(st, 2, u->uid);
    else sqlite3_bind_null(st, 2);
    sqlite3_bind_int(st, 3, u->admin);
    sqlite3_bind_int(st, 4, u->bootstrap);
    sqlite3_bind_int64(st, 5, u->created_at);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) return -EEXIST;
    if (rc != SQLITE_DONE) return -EIO;
    if (id) *id = sqlite3_last_insert_rowid(d->h);
    return 0;
}

int db_user_count(db *d, int *out)
{
    sqlite3_stmt *st = db__prep(d, "SELECT count(*) FROM users");
    if (!st) return -EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

static int user_where(db *d, const char *where, const char *stext, long long ival, db_user *out)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT " USER_COLS " FROM users WHERE %s ORDER BY id LIMIT 1", where);
    sqlite3_stmt *st = db__cached(d, sql); /* by id: every token check */
    if (!st) return -EIO;
    if (stext) db__bind_text(st, 1, stext);
    else if (strchr(where, '?')) sqlite3_bind_int64(st, 1, ival);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_user(st, out);
    db__release(d, st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db_user_by_name(db *d, const char *name, db_user *out) { return user_where(d, "name = ?", name, 0, out); }
int db_user_by_id(db *d, long long id, db_user *out) { return user_where(d, "id = ?", NULL, id, out); }
int db_user_by_uid(db *d, long long uid, db_user *out) { return user_where(d, "uid = ?", NULL, uid, out); }
int db_user_bootstrap(db *d, db_user *out) { return user_where(d, "bootstrap = 1", NULL, 0, out); }

int db_user_list(db *d, db_user_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT " USER_COLS " FROM users ORDER BY id");
    if (!st) return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_user u;
        read_user(st, &u);
        if (fn(ud, &u)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- tokens ---- */

int db_token_add(db *d, const db_token *t, long long *id)
{
    sqlite3_stmt *st = db__prep(d, "INSERT INTO tokens (user_id, prefix, hash, created_at) VALUES (?,?,?,?)");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, t->user_id);
    db__bind_text(st, 2, t->prefix);
    sqlite3_bind_blob(st, 3, t->hash, (int)sizeof t->hash, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, t->created_at);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return -EIO;
    if (id) *id = sqlite3_last_insert_rowid(d->h);
    return 0;
}

/* Leaves st to the caller (stepped, not finalised). */
static int token_walk(sqlite3_stmt *st, db_token_fn fn, void *ud)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_token t;
        memset(&t, 0, sizeof t);
        t.id = sqlite3_column_int64(st, 0);
        t.user_id = sqlite3_column_int64(st, 1);
        db__col_copy(st, 2, t.prefix, sizeof t.prefix);
        if (sqlite3_column_bytes(st, 3) == (int)sizeof t.hash)
            memcpy(t.hash, sqlite3_column_blob(st, 3), sizeof t.hash);
        t.created_at = sqlite3_column_int64(st, 4);
        t.revoked_at = sqlite3_column_int64(st, 5);
        db__col_copy(st, 6, t.user, sizeof t.user);
        if (fn(ud, &t)) break;
    }
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

#define TOKEN_SELECT "SELECT t.id, t.user_id, t.prefix, t.hash, t.created_at, coalesce(t.revoked_at, 0), u.name" \
                     " FROM tokens t JOIN users u ON u.id = t.user_id"

int db_token_by_prefix(db *d, const char *prefix, db_token_fn fn, void *ud)
{
    sqlite3_stmt *st = db__cached(d, TOKEN_SELECT " WHERE t.prefix = ? AND t.revoked_at IS NULL ORDER BY t.id");
    if (!st) return -EIO;
    db__bind_text(st, 1, prefix);
    int rc = token_walk(st, fn, ud);
    db__release(d, st);
    return rc;
}

int db_token_list(db *d, const char *owner, db_token_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, TOKEN_SELECT " WHERE ?1 IS NULL OR u.name = ?1 ORDER BY t.id DESC");
    if (!st) return -EIO;
    db__bind_text(st, 1, owner);
    int rc = token_walk(st, fn, ud);
    sqlite3_finalize(st);
    return rc;
}

int db_token_revoke(db *d, const char *id_or_prefix, long long at, int *count)
{
    const char *num = !strncmp(id_or_prefix, "tok-", 4) ? id_or_prefix + 4 : id_or_prefix;
    char *end;
    long long id = strtoll(num, &end, 10);
    int by_id = *num && !*end && id > 0;
    sqlite3_stmt *st = db__prep(d, by_id ? "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL"
                                         : "UPDATE tokens SET revoked_at = ?2 WHERE prefix = ?1"
                                           " AND revoked_at IS NULL");
    if (!st) return -EIO;
    if (by_id) sqlite3_bind_int64(st, 1, id);
    else db__bind_text(st, 1, id_or_prefix);
    sqlite3_bind_int64(st, 2, at);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    *count = sqlite3_changes(d->h);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- audit ---- */

void db_audit_set(db_audit *a, long long at, const char *actor, const char *action, const char *target,
                  const char *outcome, const char *remote, const char *detail)
{
    memset(a, 0, sizeof *a);
    a->at = at;
    snprintf(a->actor, sizeof a->actor, "%s", actor ? actor : "");
    snprintf(a->action, sizeof a->action, "%s", action ? action : "");
    snprintf(a->target, sizeof a->target, "%s", target ? target : "");
    snprintf(a->outcome, sizeof a->outcome, "%s", outcome ? outcome : "");
    snprintf(a->remote, sizeof a->remote, "%s", remote ? remote : "");
    snprintf(a->detail, sizeof a->detail, "%s", detail ? detail : "");
}

int db_audit_insert(db *d, const db_audit *a)
{
    sqlite3_stmt *st = db__prep(d, "INSERT INTO audit (at, actor, action, target, outcome, remote, detail)"
                                   " VALUES (?,?,?,?,?,?,?)");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, a->at);
    db__bind_text(st, 2, a->actor);
    db__bind_text(st, 3, a->action);
    db__bind_text(st, 4, a->target);
    db__bind_text(st, 5, a->outcome);
    db__bind_text(st, 6, a->remote);
    db__bind_text(st, 7, a->detail);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_audit_list(db *d, long long before, int limit, db_audit_fn fn, void *ud, int *has_more)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, at, actor, action, target, outcome, remote, detail FROM audit"
                                   " WHERE ?1 <= 0 OR id < ?1 ORDER BY id DESC LIMIT ?2");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int(st, 2, limit + 1);
    int rc, n = 0;
    *has_more = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == limit) { *has_more = 1; break; }
        db_audit a;
        memset(&a, 0, sizeof a);
        a.id = sqlite3_column_int64(st, 0);
        a.at = sqlite3_column_int64(st, 1);
        db__col_copy(st, 2, a.actor, sizeof a.actor);
        db__col_copy(st, 3, a.action, sizeof a.action);
        db__col_copy(st, 4, a.target, sizeof a.target);
        db__col_copy(st, 5, a.outcome, sizeof a.outcome);
        db__col_copy(st, 6, a.remote, sizeof a.remote);
        db__col_copy(st, 7, a.detail, sizeof a.detail);
        if (fn(ud, &a)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}
