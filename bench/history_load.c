/* bench/history_load.c — give a job a long history through the storage layer (make bench-history).
 * usage: history_load DB JOB_ID STEPS EVENTS
 * Appends STEPS points to each of the five series a run writes (train_loss, ce_loss, contrastive_loss, lr,
 * images_per_second: 5 x STEPS metric rows) and EVENTS "metrics" events with the data a run gives them,
 * through db_batch_write in batches of 10,000 steps, as the daemon commits them; then prints the query plans
 * of the metrics and events reads (EXPLAIN QUERY PLAN, the statements of storage/db_events.c). The daemon
 * must not be running on DB. */
#include "storage/db.h"
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const names[] = {"train_loss", "ce_loss", "contrastive_loss", "lr", "images_per_second"};

static void plan(sqlite3 *h, const char *what, const char *sql)
{
    char q[1024];
    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h, q, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "history_load: %s: %s\n", what, sqlite3_errmsg(h));
        return;
    }
    printf("plan %s: %s\n", what, sql);
    while (sqlite3_step(st) == SQLITE_ROW) printf("    %s\n", (const char *)sqlite3_column_text(st, 3));
    sqlite3_finalize(st);
}

int main(int argc, char **argv)
{
    if (argc != 5) { fprintf(stderr, "usage: history_load DB JOB_ID STEPS EVENTS\n"); return 2; }
    const char *path = argv[1], *job = argv[2];
    int steps = atoi(argv[3]), events = atoi(argv[4]);
    char err[256];
    db *d;
    if (db_open(&d, path, err, sizeof err)) { fprintf(stderr, "history_load: %s\n", err); return 1; }
    long long id = 0;
    if (db_event_max_id(d, &id)) { fprintf(stderr, "history_load: %s\n", db_errmsg(d)); return 1; }
    db_batch b;
    memset(&b, 0, sizeof b);
    long long now = (long long)time(NULL);
    int every = steps / (events > 0 ? events : 1); /* an event every this many steps */
    if (every < 1) every = 1;
    int rc = 0, made = 0;
    for (int s = 1; s <= steps && rc == 0; s++) {
        for (int k = 0; k < 5; k++) {
            db_metric *m = db_batch_metric(&b);
            if (!m) { rc = 1; break; }
            snprintf(m->job_id, sizeof m->job_id, "%s", job);
            m->step = s;
            m->name = names[k];
            m->value = k == 3 ? 0.1 : 2.3 / (1.0 + s * 1e-4) + 0.01 * (s % 7);
        }
        if (made < events && s % every == 0) {
            db_event *e = db_batch_event(&b);
            if (!e) { rc = 1; break; }
            char msg[128], data[256];
            snprintf(e->job_id, sizeof e->job_id, "%s", job);
            e->id = ++id;
            e->created_at = now;
            e->type = "metrics";
            e->level = "info";
            snprintf(msg, sizeof msg, "Step %d/%d: training loss=%.4f", s, steps, 2.3 / (1.0 + s * 1e-4));
            snprintf(data, sizeof data, "{\"step\":%d,\"total_steps\":%d,\"epoch\":%d,\"train_loss\":%.4f,"
                     "\"ce_loss\":%.4f,\"contrastive_loss\":0.0,\"lr\":0.1,\"images_per_second\":850.0}",
                     s, steps, s / 1000, 2.3 / (1.0 + s * 1e-4), 2.3 / (1.0 + s * 1e-4));
            e->message = strdup(msg);
            e->data = strdup(data);
            if (!e->message || !e->data) rc = 1;
            made++;
        }
        if (s % 10000 == 0 || s == steps) {
            if (rc == 0 && db_batch_write(d, &b, err, sizeof err)) { fprintf(stderr, "history_load: %s\n", err); rc = 1; }
            db_batch_reset(&b);
        }
    }
    db_batch_free(&b);
    db_close(d);
    if (rc) return 1;
    printf("loaded %s: %d metric points (5 series x %d steps), %d events\n", job, 5 * steps, steps, made);
    sqlite3 *h;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return 1;
    plan(h, "metric names", "SELECT name FROM metrics WHERE job_id = ?1 AND name > ?2 ORDER BY name LIMIT 1");
    plan(h, "metric series", "SELECT step, value FROM metrics WHERE job_id = ?1 AND name = ?2 AND step > ?3 ORDER BY step");
    plan(h, "block count", "SELECT count(*), coalesce(sum(n), 0) FROM metric_blocks WHERE job_id = ?1 AND name = ?2"
                           " AND block > ?3");
    plan(h, "block series", "SELECT n, first_step, first_value, min_step, min_value, max_step, max_value, last_step,"
                            " last_value FROM metric_blocks WHERE job_id = ?1 AND name = ?2 AND block > ?3 ORDER BY block");
    plan(h, "block rebuild", "SELECT step, value FROM metrics WHERE job_id = ?1 AND name = ?2 AND step >= ?3"
                             " AND step < ?4 ORDER BY step");
    plan(h, "events page", "SELECT id, type, level, message, data, created_at FROM events"
                           " WHERE job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
    sqlite3_close(h);
    return 0;
}
