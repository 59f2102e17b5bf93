/* storage/db_assets.c — models (fine-tuned weights on disk, one row each) and uploaded files. A models
 * row is written only inside a batch's transaction (db__model_write, from db_batch_write: a db_batch_model
 * row, or a status change that carries model_path); files are inserted one at a time after the upload
 * is on disk. Loop thread only. Errors: see db.h. */
#include "storage/db_int.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- models ---- */

int db__model_write(db *d, const char *id, const char *job_id, const char *arch, const char *path,
                    long long created_at, const char *owner)
{
    sqlite3_stmt *st = db__prep(d, "INSERT OR REPLACE INTO models (id, job_id, arch, path, created_at, owner)"
                                   " VALUES (?,?,?,?,?,?)");
    if (!st) return -EIO;
    db__bind_text(st, 1, id);
    db__bind_text(st, 2, job_id);
    db__bind_text(st, 3, arch);
    db__bind_text(st, 4, path);
    sqlite3_bind_int64(st, 5, created_at);
    db__bind_text(st, 6, owner && owner[0] ? owner : NULL);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static void read_model(sqlite3_stmt *st, db_model *m)
{
    memset(m, 0, sizeof *m);
    db__col_copy(st, 0, m->id, sizeof m->id);
    db__col_copy(st, 1, m->job_id, sizeof m->job_id);
    db__col_copy(st, 2, m->arch, sizeof m->arch);
    db__col_copy(st, 3, m->path, sizeof m->path);
    m->created_at = sqlite3_column_int64(st, 4);
    db__col_copy(st, 5, m->owner, sizeof m->owner);
}

int db_model_get(db *d, const char *id, db_model *out)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, job_id, arch, path, created_at, coalesce(owner, '') FROM models"
                                   " WHERE id = ?");
    if (!st) return -EIO;
    db__bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_model(st, out);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db_model_list(db *d, const char *owner, db_model_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, job_id, arch, path, created_at, coalesce(owner, '') FROM models"
                                   " WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id");
    if (!st) return -EIO;
    db__bind_text(st, 1, owner);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_model m;
        read_model(st, &m);
        if (fn(ud, &m)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- files ---- */

int db_file_insert(db *d, const db_file *f)
{
    sqlite3_stmt *st = db__prep(d, "INSERT INTO files (id, filename, purpose, bytes, format, path, created_at, owner,"
                                   " images, min_width, min_height, max_width, max_height)"
                                   " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!st) return -EIO;
    db__bind_text(st, 1, f->id);
    db__bind_text(st, 2, f->filename);
    db__bind_text(st, 3, f->purpose);
    sqlite3_bind_int64(st, 4, f->bytes);
    db__bind_text(st, 5, f->format);
    db__bind_text(st, 6, f->path);
    sqlite3_bind_int64(st, 7, f->created_at);
    db__bind_text(st, 8, f->owner[0] ? f->owner : NULL);
    if (f->images >= 0) sqlite3_bind_int64(st, 9, f->images);
    const int dims[4] = {f->min_width, f->min_height, f->max_width, f->max_height};
    for (int i = 0; i < 4; i++)
        if (dims[i] > 0) sqlite3_bind_int(st, 10 + i, dims[i]);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) return -EEXIST;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_file_insert_classes(db *d, const db_file *f, const db_file_class *classes, int n)
{
    if (db__begin(d, NULL, 0)) return -EIO;
    int rc = db_file_insert(d, f);
    sqlite3_stmt *st = rc ? NULL : db__prep(d, "INSERT INTO file_classes (file_id, idx, name, images) VALUES (?,?,?,?)");
    if (rc == 0 && !st) rc = -EIO;
    for (int i = 0; rc == 0 && i < n; i++) {
        sqlite3_reset(st);
        db__bind_text(st, 1, f->id);
        sqlite3_bind_int(st, 2, i);
        db__bind_text(st, 3, classes[i].name);
        sqlite3_bind_int64(st, 4, classes[i].images);
        if (sqlite3_step(st) != SQLITE_DONE) rc = -EIO;
    }
    sqlite3_finalize(st);
    if (rc == 0 && db__commit(d, NULL, 0)) rc = -EIO;
    if (rc) db__rollback(d);
    return rc;
}

int db_file_classes(db *d, const char *id, db_file_class_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT name, images FROM file_classes WHERE file_id = ? ORDER BY idx");
    if (!st) return -EIO;
    db__bind_text(st, 1, id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ud, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1))) break;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

static void read_file_row(sqlite3_stmt *st, db_file *f)
{
    memset(f, 0, sizeof *f);
    db__col_copy(st, 0, f->id, sizeof f->id);
    db__col_copy(st, 1, f->filename, sizeof f->filename);
    db__col_copy(st, 2, f->purpose, sizeof f->purpose);
    f->bytes = sqlite3_column_int64(st, 3);
    db__col_copy(st, 4, f->format, sizeof f->format);
    db__col_copy(st, 5, f->path, sizeof f->path);
    f->created_at = sqlite3_column_int64(st, 6);
    db__col_copy(st, 7, f->owner, sizeof f->owner);
    f->images = sqlite3_column_type(st, 8) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 8);
    f->min_width = sqlite3_column_int(st, 9);
    f->min_height = sqlite3_column_int(st, 10);
    f->max_width = sqlite3_column_int(st, 11);
    f->max_height = sqlite3_column_int(st, 12);
}

int db_file_get(db *d, const char *id, db_file *out)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, filename, purpose, bytes, format, path, created_at, coalesce(owner, ''),"
                                   " images, min_width, min_height, max_width, max_height FROM files WHERE id = ?");
    if (!st) return -EIO;
    db__bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_file_row(st, out);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db_file_list(db *d, const char *owner, db_file_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, filename, purpose, bytes, format, path, created_at, coalesce(owner, ''),"
                                   " images, min_width, min_height, max_width, max_height FROM files WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id");
    if (!st) return -EIO;
    db__bind_text(st, 1, owner);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_file f;
        read_file_row(st, &f);
        if (fn(ud, &f)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_file_bytes(db *d, const char *owner, long long *out)
{
    sqlite3_stmt *st = db__prep(d, "SELECT coalesce(sum(bytes), 0) FROM files WHERE coalesce(owner, '') = ?");
    if (!st) return -EIO;
    db__bind_text(st, 1, owner ? owner : "");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}


/* ---- deletes and who uses what ---- */

static int delete_by_id(db *d, const char *sql, const char *id)
{
    sqlite3_stmt *st = db__prep(d, sql);
    if (!st) return -EIO;
    db__bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_FULL) return -ENOSPC;
    if (rc != SQLITE_DONE) return -EIO;
    return sqlite3_changes(d->h) ? 0 : -ENOENT;
}

int db_file_delete(db *d, const char *id) { return delete_by_id(d, "DELETE FROM files WHERE id = ?", id); }
int db_model_delete(db *d, const char *id) { return delete_by_id(d, "DELETE FROM models WHERE id = ?", id); }

int db_model_of_job(db *d, const char *job_id, db_model *out)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, job_id, arch, path, created_at, coalesce(owner, '') FROM models"
                                   " WHERE job_id = ? ORDER BY created_at DESC LIMIT 1");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_model(st, out);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db_file_jobs(db *d, const char *file_id, db_file_job_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, status FROM jobs WHERE training_file = ?1 OR validation_file = ?1"
                                   " ORDER BY seq");
    if (!st) return -EIO;
    db__bind_text(st, 1, file_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        enum job_status status;
        const char *name = (const char *)sqlite3_column_text(st, 1);
        if (job_status_parse(name ? name : "", &status) != 0) continue; /* the CHECK constraint rules it out */
        if (fn(ud, (const char *)sqlite3_column_text(st, 0), status)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}
