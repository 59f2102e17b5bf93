/* storage/db.c — the connection: open (with the migrations of db_schema.c), close, transactions, the
 * change stamp caches above use, and the statement helpers the table files share (db_int.h), among them
 * the cache of the request path's prepared statements (parsing a SELECT cost more than running it).
 * Loop thread only. One connection, opened with SQLITE_OPEN_NOMUTEX (single owner), WAL +
 * synchronous=FULL. Why one connection: SQLite before 3.51.3 can corrupt a WAL database when several
 * connections write and checkpoint concurrently; Debian 12 ships 3.40.1, so all writes go through this
 * one. Errors: see db.h; besides, a write that finds the disk full (SQLITE_FULL) is -ENOSPC from
 * db__exec, db_job_insert and db_batch_write (nothing was written), so the core can tell the client to
 * free space rather than report a broken database. */
#include "storage/db_int.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *db_errmsg(db *d) { return d && d->h ? sqlite3_errmsg(d->h) : "no database"; }

/* A full disk is the one failure a caller can tell its client to fix (free space, retry): -ENOSPC.
 * SQLite says SQLITE_FULL when a write gets ENOSPC (or the file reaches its page limit). */
static int errno_of(int sqlite_rc) { return (sqlite_rc & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO; }

int db__exec(db *d, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(d->h, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        if (err) snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(d->h));
        sqlite3_free(msg);
        return errno_of(rc);
    }
    return 0;
}

int db__begin(db *d, char *err, size_t errlen) { return db__exec(d, "BEGIN IMMEDIATE", err, errlen); }
int db__commit(db *d, char *err, size_t errlen) { return db__exec(d, "COMMIT", err, errlen); }
void db__rollback(db *d) { db__exec(d, "ROLLBACK", NULL, 0); }

/* Each migration and its user_version bump commit together, so a crash leaves a whole version. */
static int migrate(db *d, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int version = 0;
    if (sqlite3_prepare_v2(d->h, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) goto fail;
    if (sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > db__n_migrations) {
        snprintf(err, errlen, "database schema version %d is newer than this coretuned (%d)", version,
                 db__n_migrations);
        return -EPROTO;
    }
    for (int v = version; v < db__n_migrations; v++) {
        char sql[64], why[200];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        if (db__begin(d, err, errlen)) return -EIO;
        if (db__exec(d, db__migrations[v], why, sizeof why) || db__exec(d, sql, why, sizeof why)) {
            snprintf(err, errlen, "migration %d: %s", v + 1, why);
            db__rollback(d);
            return -EIO;
        }
        if (db__commit(d, err, errlen)) return -EIO;
    }
    return 0;
fail:
    snprintf(err, errlen, "%s", sqlite3_errmsg(d->h));
    return -EIO;
}

int db_open(db **out, const char *path, char *err, size_t errlen)
{
    db *d = calloc(1, sizeof *d);
    if (!d) { snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    int rc = sqlite3_open_v2(path, &d->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path, d->h ? sqlite3_errmsg(d->h) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(d->h, 5000); /* an operator's sqlite3 shell may hold a read lock briefly */
    if (db__exec(d, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err, errlen))
        goto fail;
    if (migrate(d, err, errlen)) goto fail;
    *out = d;
    return 0;
fail:
    db_close(d);
    return -EIO;
}

void db_close(db *d)
{
    if (!d) return;
    for (int i = 0; i < DB__CACHED_MAX; i++) sqlite3_finalize(d->cached[i]); /* or sqlite3_close is BUSY */
    sqlite3_close(d->h);
    free(d);
}

int db_stamp_get(db *d, db_stamp *out)
{
    sqlite3_stmt *st = db__cached(d, "PRAGMA data_version");
    if (!st) return -EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->data_version = sqlite3_column_int64(st, 0);
        out->changes = sqlite3_total_changes64(d->h);
    }
    db__release(d, st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

/* ---- statement helpers ---- */

sqlite3_stmt *db__prep(db *d, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->h, sql, -1, &st, NULL) != SQLITE_OK) return NULL;
    return st;
}

sqlite3_stmt *db__cached(db *d, const char *sql)
{
    int free_slot = -1;
    for (int i = 0; i < DB__CACHED_MAX; i++) {
        sqlite3_stmt *st = d->cached[i];
        if (!st) { if (free_slot < 0) free_slot = i; continue; }
        if (strcmp(sqlite3_sql(st), sql) != 0) continue;
        if (sqlite3_stmt_busy(st)) return db__prep(d, sql); /* in use further up the stack */
        return st;                                          /* reset by db__release */
    }
    sqlite3_stmt *st = db__prep(d, sql);
    /* never evicted: a caller may hold one it has not stepped yet; when full, the rest go uncached */
    if (st && free_slot >= 0) d->cached[free_slot] = st;
    return st;
}

void db__release(db *d, sqlite3_stmt *st)
{
    if (!st) return;
    for (int i = 0; i < DB__CACHED_MAX; i++)
        if (d->cached[i] == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    sqlite3_finalize(st);
}

void db__bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}

void db__bind_real(sqlite3_stmt *st, int i, double x)
{
    if (isnan(x)) sqlite3_bind_null(st, i);
    else sqlite3_bind_double(st, i, x);
}

char *db__col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? strdup((const char *)s) : NULL;
}

void db__col_copy(sqlite3_stmt *st, int i, char *dst, size_t n)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    size_t len = s ? (size_t)sqlite3_column_bytes(st, i) : 0; /* not snprintf: a page copies ~60 of these */
    if (len >= n) len = n - 1;
    memcpy(dst, s ? (const char *)s : "", len);
    dst[len] = 0;
}

double db__col_real(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

int db__seq_of(db *d, const char *table, const char *id, long long *seq)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT seq FROM %s WHERE id = ?", table);
    sqlite3_stmt *st = db__cached(d, sql);
    if (!st) return -EIO;
    db__bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *seq = sqlite3_column_int64(st, 0);
    db__release(d, st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db__ids_by_status(db *d, const char *table, enum job_status status, int limit, char (*ids)[DB_ID_MAX], int *n)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT id FROM %s WHERE status = ? ORDER BY seq LIMIT ?", table);
    sqlite3_stmt *st = db__prep(d, sql);
    if (!st) return -EIO;
    db__bind_text(st, 1, job_status_name(status));
    sqlite3_bind_int(st, 2, limit);
    int rc;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) db__col_copy(st, 0, ids[(*n)++], DB_ID_MAX);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}
