/* tests/unit/dbfix.h — a fresh database (storage/db.c) in its own temporary directory, as a cmocka
 * setup/teardown pair for the tests that need a real SQLite file (test_storage.c, test_auth.c).
 * Header-only (static inline); setup returns -1 (the reason on stderr) when the directory or the
 * database cannot be made, which cmocka reports as a failed setup. */
#ifndef CT_TEST_DBFIX_H
#define CT_TEST_DBFIX_H
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "storage/db.h"

typedef struct db_fixture {
    char dir[256], path[300];
    db *d; /* owned: closed by db_fixture_teardown */
} db_fixture;

/* *state = a new fixture with $TMPDIR (or /tmp)/ct-<tag>-XXXXXX/coretuned.db open. */
static inline int db_fixture_setup(void **state, const char *tag)
{
    db_fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "%s/ct-%s-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", tag);
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/coretuned.db", f->dir);
    char err[256];
    if (db_open(&f->d, f->path, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); return -1; }
    *state = f;
    return 0;
}

/* Closes the database and removes its files (with the WAL and shared-memory files) and directory. */
static inline int db_fixture_teardown(void **state)
{
    db_fixture *f = *state;
    db_close(f->d);
    char p[400];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) { snprintf(p, sizeof p, "%s%s", f->path, sfx[i]); unlink(p); }
    rmdir(f->dir);
    free(f);
    return 0;
}

#endif
