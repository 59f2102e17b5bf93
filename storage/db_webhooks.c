/* storage/db_webhooks.c — the webhook outbox (db.h, "the webhook outbox"): rows written by
 * db_batch_write (db__webhooks_write, inside its transaction), the due rows, one attempt's outcome.
 * Loop thread only. Errors: see db.h. */
#include "storage/db_int.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void db_webhook_clear(db_webhook *w)
{
    free(w->url);
    free(w->type);
    free(w->body);
    memset(w, 0, sizeof *w);
}

int db__webhooks_write(db *d, const db_webhook *w, int n)
{
    if (n == 0) return 0;
    sqlite3_stmt *st = db__prep(d, "INSERT OR IGNORE INTO webhook_outbox (id, url, type, body, created_at, next_at)"
                                   " VALUES (?,?,?,?,?,?)");
    if (!st) return -EIO;
    int rc = SQLITE_DONE;
    for (int i = 0; i < n && rc == SQLITE_DONE; i++) {
        sqlite3_reset(st);
        db__bind_text(st, 1, w[i].id);
        db__bind_text(st, 2, w[i].url);
        db__bind_text(st, 3, w[i].type);
        db__bind_text(st, 4, w[i].body);
        sqlite3_bind_int64(st, 5, w[i].created_at);
        sqlite3_bind_int64(st, 6, w[i].next_at > 0 ? w[i].next_at : 1);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_webhook_due(db *d, long long now, int limit, db_webhook_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, url, type, body, created_at, attempts, next_at FROM webhook_outbox"
                                   " WHERE next_at > 0 AND next_at <= ? ORDER BY next_at, created_at LIMIT ?");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int(st, 2, limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_webhook w;
        memset(&w, 0, sizeof w);
        db__col_copy(st, 0, w.id, sizeof w.id);
        w.url = (char *)sqlite3_column_text(st, 1);
        w.type = (char *)sqlite3_column_text(st, 2);
        w.body = (char *)sqlite3_column_text(st, 3);
        w.created_at = sqlite3_column_int64(st, 4);
        w.attempts = sqlite3_column_int(st, 5);
        w.next_at = sqlite3_column_int64(st, 6);
        if (!w.url || !w.type || !w.body || fn(ud, &w)) break; /* borrowed strings: never cleared here */
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_webhook_attempt(db *d, const char *id, const char *url, int attempts, long long delivered_at,
                       long long next_at, const char *error)
{
    sqlite3_stmt *st = db__prep(d, "UPDATE webhook_outbox SET attempts = ?3,"
                                   " delivered_at = CASE WHEN ?4 > 0 THEN ?4 ELSE delivered_at END,"
                                   " next_at = ?5, last_error = ?6 WHERE id = ?1 AND url = ?2");
    if (!st) return -EIO;
    db__bind_text(st, 1, id);
    db__bind_text(st, 2, url);
    sqlite3_bind_int(st, 3, attempts);
    sqlite3_bind_int64(st, 4, delivered_at);
    sqlite3_bind_int64(st, 5, next_at);
    db__bind_text(st, 6, error);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}
