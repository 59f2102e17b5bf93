/* storage/db_metric_blocks.c — a summary of every metric series by blocks of 256 steps: the block's point
 * count and its first, last, lowest and highest points (metric_blocks, migration 9). It is rebuilt from the
 * points in the transaction that writes them (db__metrics_write), so it always agrees with them, a resumed
 * job's repeated steps included. A chart of a long series reads one row per block instead of 256 points
 * (core/stats.c). Loop thread only. Errors: see db.h. */
#include "storage/db_int.h"
#include <errno.h>
#include <string.h>

#define BLOCK_SHIFT 8    /* 256 steps a block: 200,000 steps are 782 rows */

/* One block again from its points (deleted when it has none). */
static int rebuild(sqlite3_stmt *rd, sqlite3_stmt *wr, sqlite3_stmt *del, const char *job_id, const char *name,
                   long long block)
{
    sqlite3_reset(rd);
    db__bind_text(rd, 1, job_id);
    db__bind_text(rd, 2, name);
    sqlite3_bind_int64(rd, 3, block << BLOCK_SHIFT);
    sqlite3_bind_int64(rd, 4, (block + 1) << BLOCK_SHIFT);
    int n = 0, rc;
    long long first = 0, last = 0, lo = 0, hi = 0;
    double vfirst = 0, vlast = 0, vlo = 0, vhi = 0;
    while ((rc = sqlite3_step(rd)) == SQLITE_ROW) {
        long long step = sqlite3_column_int64(rd, 0);
        double v = sqlite3_column_double(rd, 1);
        if (n++ == 0) { first = lo = hi = step; vfirst = vlo = vhi = v; }
        if (v < vlo) { lo = step; vlo = v; }     /* strict: the first of equal extremes */
        if (v > vhi) { hi = step; vhi = v; }
        last = step;
        vlast = v;
    }
    if (rc != SQLITE_DONE) return -EIO;
    sqlite3_stmt *st = n ? wr : del;
    sqlite3_reset(st);
    db__bind_text(st, 1, job_id);
    db__bind_text(st, 2, name);
    sqlite3_bind_int64(st, 3, block);
    if (n) {
        sqlite3_bind_int(st, 4, n);
        sqlite3_bind_int64(st, 5, first); sqlite3_bind_double(st, 6, vfirst);
        sqlite3_bind_int64(st, 7, last);  sqlite3_bind_double(st, 8, vlast);
        sqlite3_bind_int64(st, 9, lo);    sqlite3_bind_double(st, 10, vlo);
        sqlite3_bind_int64(st, 11, hi);   sqlite3_bind_double(st, 12, vhi);
    }
    return sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
}

int db__metric_blocks_update(db *d, const db_metric *m, int n)
{
    if (n == 0) return 0;
    sqlite3_stmt *rd = db__prep(d, "SELECT step, value FROM metrics WHERE job_id = ?1 AND name = ?2"
                                   " AND step >= ?3 AND step < ?4 ORDER BY step");
    sqlite3_stmt *wr = db__prep(d, "INSERT OR REPLACE INTO metric_blocks (job_id, name, block, n, first_step,"
                                   " first_value, last_step, last_value, min_step, min_value, max_step, max_value)"
                                   " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)");
    sqlite3_stmt *del = db__prep(d, "DELETE FROM metric_blocks WHERE job_id = ?1 AND name = ?2 AND block = ?3");
    int rc = rd && wr && del ? 0 : -EIO;
    /* A batch holds a few series stepping together, so the blocks touched recently are remembered to rebuild
     * each about once; a block seen again after falling out of this window is rebuilt again, which is only
     * slower, never wrong. */
    enum { RECENT = 16 };
    struct { const char *job_id, *name; long long block; } recent[RECENT];
    int nrecent = 0;                       /* blocks rebuilt so far; the last RECENT are in recent[] (a ring) */
    for (int i = 0; i < n && rc == 0; i++) {
        long long block = (long long)m[i].step >> BLOCK_SHIFT;
        int seen = 0;
        for (int k = 0; k < nrecent && k < RECENT && !seen; k++)
            seen = recent[k].block == block && !strcmp(recent[k].name, m[i].name) &&
                   !strcmp(recent[k].job_id, m[i].job_id);
        if (seen) continue;
        int slot = nrecent++ % RECENT;
        recent[slot].job_id = m[i].job_id;
        recent[slot].name = m[i].name;
        recent[slot].block = block;
        rc = rebuild(rd, wr, del, m[i].job_id, m[i].name, block);
    }
    sqlite3_finalize(rd);
    sqlite3_finalize(wr);
    sqlite3_finalize(del);
    return rc;
}

int db_metric_blocks_count(db *d, const char *job_id, const char *name, int after_step, long long *blocks,
                           long long *points)
{
    sqlite3_stmt *st = db__prep(d, "SELECT count(*), coalesce(sum(n), 0) FROM metric_blocks"
                                   " WHERE job_id = ?1 AND name = ?2 AND block > ?3");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_id);
    db__bind_text(st, 2, name);
    sqlite3_bind_int64(st, 3, (long long)after_step >> BLOCK_SHIFT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *blocks = sqlite3_column_int64(st, 0);
        *points = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int db_metric_series_blocks(db *d, const char *job_id, const char *name, int after_step, db_point_fn fn, void *ud,
                            long long *total)
{
    long long block = (long long)after_step >> BLOCK_SHIFT;
    *total = 0;
    /* the rest of after_step's own block, point by point */
    sqlite3_stmt *st = db__prep(d, "SELECT step, value FROM metrics WHERE job_id = ?1 AND name = ?2"
                                   " AND step > ?3 AND step < ?4 ORDER BY step");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_id);
    db__bind_text(st, 2, name);
    sqlite3_bind_int(st, 3, after_step);
    sqlite3_bind_int64(st, 4, (block + 1) << BLOCK_SHIFT);
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        ++*total;
        stop = fn(ud, sqlite3_column_int(st, 0), sqlite3_column_double(st, 1));
    }
    sqlite3_finalize(st);
    if (stop) return 0;
    if (rc != SQLITE_DONE) return -EIO;
    st = db__prep(d, "SELECT n, first_step, first_value, min_step, min_value, max_step, max_value, last_step,"
                     " last_value FROM metric_blocks WHERE job_id = ?1 AND name = ?2 AND block > ?3 ORDER BY block");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_id);
    db__bind_text(st, 2, name);
    sqlite3_bind_int64(st, 3, block);
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *total += sqlite3_column_int64(st, 0);
        long long s[4];
        double v[4];
        for (int k = 0; k < 4; k++) {
            s[k] = sqlite3_column_int64(st, 1 + 2 * k);
            v[k] = sqlite3_column_double(st, 2 + 2 * k);
        }
        if (s[1] > s[2]) {   /* the lowest and highest in step order */
            long long ts = s[1]; s[1] = s[2]; s[2] = ts;
            double tv = v[1]; v[1] = v[2]; v[2] = tv;
        }
        long long prev = -1;
        for (int k = 0; k < 4 && !stop; k++) {
            if (k > 0 && s[k] == prev) continue;   /* first, extremes and last may be the same point */
            stop = fn(ud, (int)s[k], v[k]);
            prev = s[k];
        }
    }
    sqlite3_finalize(st);
    return stop || rc == SQLITE_DONE ? 0 : -EIO;
}
