/* tests/unit/test_auth.c — auth_sha256_hex (nettle underneath) against the FIPS 180-4 vectors, and
 * core/auth.c on a real database: token format and uniqueness, only the hash stored (neither the WAL
 * nor the database file holds the secret), check/revoke, uid mapping (root and the daemon's uid -> the
 * bootstrap admin), bootstrap once, user-name rules; the token cache (a hit is the same user, a token
 * sharing a cached one's prefix is not let in, and a revoke, a deleted user or a changed role counts on
 * the very next check, from this connection or another). Single-threaded cmocka binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/auth.h"
#include "tests/unit/dbfix.h"

static void test_sha256_vectors(void **st)
{
    (void)st;
    char x[65];
    auth_sha256_hex("abc", 3, x);
    assert_string_equal(x, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    auth_sha256_hex("", 0, x);
    assert_string_equal(x, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    auth_sha256_hex(m, strlen(m), x);
    assert_string_equal(x, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    static char mil[1000000];
    memset(mil, 'a', sizeof mil);
    auth_sha256_hex(mil, sizeof mil, x);
    assert_string_equal(x, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static int setup(void **state) { return db_fixture_setup(state, "auth"); }

/* 1 when needle occurs in the file at path, 0 when it does not, -1 when the file cannot be read whole:
 * callers assert 0, so a missing or unreadable file fails the test instead of passing it unchecked. */
static int find_in_db(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) { fprintf(stderr, "find_in_db: cannot open %s: %s\n", path, strerror(errno)); return -1; }
    static char buf[8 << 20];
    size_t n = fread(buf, 1, sizeof buf, fp);
    int whole = n < sizeof buf && !ferror(fp); /* a file larger than buf would be checked only in part */
    fclose(fp);
    if (!whole) { fprintf(stderr, "find_in_db: cannot read all of %s\n", path); return -1; }
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(buf + i, needle, k)) return 1;
    return 0;
}

static void test_tokens(void **state)
{
    db_fixture *f = *state;
    char err[256], t1[AUTH_TOKEN_LEN + 1], t2[AUTH_TOKEN_LEN + 1], boot[AUTH_TOKEN_LEN + 1], name[64];
    assert_int_equal(auth_bootstrap(f->d, 1000, boot, name, err, sizeof err), 0);
    assert_int_equal((int)strlen(boot), AUTH_TOKEN_LEN);
    assert_string_equal(name, "admin");
    assert_int_equal(auth_bootstrap(f->d, 1000, t1, name, err, sizeof err), 0);
    assert_string_equal(t1, ""); /* only once */
    assert_string_equal(name, "");
    db_user u, v;
    assert_int_equal(auth_user_add(f->d, "ana", 0, 2000, 0, &u, err, sizeof err), 0);
    assert_int_equal(auth_user_add(f->d, "ana", 0, -1, 0, NULL, err, sizeof err), -EEXIST);
    assert_int_equal(auth_user_add(f->d, "ben", 0, 2000, 0, NULL, err, sizeof err), -EEXIST); /* uid taken */
    assert_int_equal(auth_user_add(f->d, "Ana", 0, -1, 0, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(auth_user_add(f->d, "../x", 0, -1, 0, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(auth_token_create(f->d, u.id, t1, NULL, err, sizeof err), 0);
    assert_int_equal(auth_token_create(f->d, u.id, t2, NULL, err, sizeof err), 0);
    assert_memory_equal(t1, "ct_", 3);
    assert_string_not_equal(t1, t2);
    assert_int_equal(auth_token_check(f->d, NULL, t1, &v), 0);
    assert_string_equal(v.name, "ana");
    assert_int_equal(auth_token_check(f->d, NULL, boot, &v), 0);
    assert_string_equal(v.name, "admin");
    assert_true(v.admin);
    char bad[AUTH_TOKEN_LEN + 1];
    memcpy(bad, t1, sizeof bad);
    bad[AUTH_TOKEN_LEN - 1] = bad[AUTH_TOKEN_LEN - 1] == 'a' ? 'b' : 'a';
    assert_int_equal(auth_token_check(f->d, NULL, bad, &v), -EACCES);
    assert_int_equal(auth_token_check(f->d, NULL, "ct_short", &v), -EACCES);
    assert_int_equal(auth_token_check(f->d, NULL, NULL, &v), -EACCES);
    /* The secret part never reaches the disk. The WAL is read while the connection is open: that is
     * when it holds the new rows, and closing the last connection checkpoints and deletes it. */
    char p2[320];
    snprintf(p2, sizeof p2, "%s-wal", f->path);
    assert_int_equal(find_in_db(p2, t1 + 11), 0);
    db_close(f->d);
    assert_int_equal(find_in_db(f->path, t1 + 11), 0);
    assert_int_equal(db_open(&f->d, f->path, err, sizeof err), 0);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%.11s", t1);
    int n = 0;
    assert_int_equal(db_token_revoke(f->d, prefix, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(auth_token_check(f->d, NULL, t1, &v), -EACCES);
    assert_int_equal(auth_token_check(f->d, NULL, t2, &v), 0);
    /* uids */
    assert_int_equal(auth_uid_check(f->d, 2000, 1000, &v), 0);
    assert_string_equal(v.name, "ana");
    assert_int_equal(auth_uid_check(f->d, 0, 1000, &v), 0);
    assert_string_equal(v.name, "admin");
    assert_int_equal(auth_uid_check(f->d, 1000, 1000, &v), 0);
    assert_string_equal(v.name, "admin");
    assert_int_equal(auth_uid_check(f->d, 3000, 1000, &v), -EACCES);
}

/* Users added offline before the first start (`coretuned user add`): the first start still makes the
 * bootstrap admin, so root and the daemon's uid are the first admin as docs/api.md says; a taken name
 * or uid is worked around, never an error. */
static void test_bootstrap_after_offline_users(void **state)
{
    db_fixture *f = *state;
    char err[256], token[AUTH_TOKEN_LEN + 1], name[64];
    db_user u;
    assert_int_equal(auth_user_add(f->d, "admin", 0, 2000, 0, NULL, err, sizeof err), 0);  /* not an admin */
    assert_int_equal(auth_user_add(f->d, "bob", 1, 1000, 0, NULL, err, sizeof err), 0);   /* has our uid */
    assert_int_equal(auth_uid_check(f->d, 0, 1000, &u), -EACCES);      /* root: nobody yet */
    assert_int_equal(auth_bootstrap(f->d, 1000, token, name, err, sizeof err), 0);
    assert_int_equal((int)strlen(token), AUTH_TOKEN_LEN);
    assert_string_equal(name, "admin-2");
    assert_int_equal(auth_uid_check(f->d, 0, 1000, &u), 0);            /* root is the bootstrap admin */
    assert_string_equal(u.name, "admin-2");
    assert_true(u.admin && u.bootstrap);
    assert_int_equal(u.uid, -1);                                        /* uid 1000 stays bob's */
    assert_int_equal(auth_uid_check(f->d, 1000, 1000, &u), 0);
    assert_string_equal(u.name, "bob");
    assert_int_equal(auth_token_check(f->d, NULL, token, &u), 0);
    assert_string_equal(u.name, "admin-2");
    assert_int_equal(auth_bootstrap(f->d, 1000, token, name, err, sizeof err), 0);
    assert_string_equal(token, "");                                     /* only once */
}

/* A statement on a second connection to the database, as the offline admin commands or an operator's
 * sqlite3 shell write it while the daemon runs. */
static void other_connection(const char *path, const char *sql)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);
}

/* a token of the right shape that was never made: t's first 11 characters (the public lookup prefix)
 * and a different rest */
static void same_prefix(const char *t, char *out)
{
    memcpy(out, t, AUTH_TOKEN_LEN + 1);
    for (int i = AUTH_LOOKUP_LEN; i < AUTH_TOKEN_LEN; i++) out[i] = t[i] == 'Z' ? 'Y' : 'Z';
}

static void test_token_cache(void **state)
{
    db_fixture *f = *state;
    char err[256], ta[AUTH_TOKEN_LEN + 1], tb[AUTH_TOKEN_LEN + 1], tc[AUTH_TOKEN_LEN + 1], fake[AUTH_TOKEN_LEN + 1];
    char sql[256];
    db_user ana, ben, v;
    auth_cache *c;
    assert_int_equal(auth_cache_new(&c), 0);
    assert_int_equal(auth_user_add(f->d, "ana", 0, -1, 0, &ana, err, sizeof err), 0);
    assert_int_equal(auth_user_add(f->d, "ben", 0, -1, 0, &ben, err, sizeof err), 0);
    assert_int_equal(auth_token_create(f->d, ana.id, ta, NULL, err, sizeof err), 0);
    assert_int_equal(auth_token_create(f->d, ben.id, tb, NULL, err, sizeof err), 0);
    /* a live token of ben's with ta's prefix (a prefix clash the lookup must tell apart by the digest) */
    memcpy(tc, ta, sizeof tc);
    tc[AUTH_TOKEN_LEN - 1] = tc[AUTH_TOKEN_LEN - 1] == 'q' ? 'r' : 'q';
    db_token t = {.user_id = ben.id, .created_at = 1};
    snprintf(t.prefix, sizeof t.prefix, "%.*s", AUTH_LOOKUP_LEN, tc);
    char hex[65];
    auth_sha256_hex(tc, AUTH_TOKEN_LEN, hex);
    for (int i = 0; i < 32; i++) sscanf(hex + 2 * i, "%2hhx", &t.hash[i]);
    assert_int_equal(db_token_add(f->d, &t, NULL), 0);

    for (int round = 0; round < 2; round++) { /* the first fills the cache, the second is answered from it */
        assert_int_equal(auth_token_check(f->d, c, ta, &v), 0);
        assert_string_equal(v.name, "ana");
        assert_false(v.admin);
        assert_int_equal(auth_token_check(f->d, c, tc, &v), 0);
        assert_string_equal(v.name, "ben");
        assert_int_equal(auth_token_check(f->d, c, tb, &v), 0);
        assert_string_equal(v.name, "ben");
        same_prefix(ta, fake);
        assert_int_equal(auth_token_check(f->d, c, fake, &v), -EACCES);
        memcpy(fake, ta, sizeof fake);
        fake[AUTH_TOKEN_LEN - 1] = ta[AUTH_TOKEN_LEN - 1] == 'x' ? 'y' : 'x'; /* one character off */
        if (strcmp(fake, tc) != 0) assert_int_equal(auth_token_check(f->d, c, fake, &v), -EACCES);
    }

    /* revoked on this connection: refused at once, the other token of the prefix still good */
    char prefix[AUTH_LOOKUP_LEN + 1];
    snprintf(prefix, sizeof prefix, "%.*s", AUTH_LOOKUP_LEN, tb);
    int n = 0;
    assert_int_equal(db_token_revoke(f->d, prefix, 2, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(auth_token_check(f->d, c, tb, &v), -EACCES);
    assert_int_equal(auth_token_check(f->d, c, ta, &v), 0);
    assert_int_equal(auth_token_check(f->d, c, tc, &v), 0);

    /* another connection: a role change, then a revoke, then a deleted user, each seen on the next check */
    snprintf(sql, sizeof sql, "UPDATE users SET admin = 1 WHERE id = %lld", ana.id);
    other_connection(f->path, sql);
    assert_int_equal(auth_token_check(f->d, c, ta, &v), 0);
    assert_true(v.admin);
    snprintf(sql, sizeof sql, "UPDATE users SET admin = 0 WHERE id = %lld", ana.id);
    other_connection(f->path, sql);
    assert_int_equal(auth_token_check(f->d, c, ta, &v), 0);
    assert_false(v.admin);
    snprintf(sql, sizeof sql, "UPDATE tokens SET revoked_at = 3 WHERE user_id = %lld AND prefix = '%s'", ben.id, t.prefix);
    other_connection(f->path, sql);
    assert_int_equal(auth_token_check(f->d, c, tc, &v), -EACCES);
    assert_int_equal(auth_token_check(f->d, c, ta, &v), 0);
    snprintf(sql, sizeof sql, "DELETE FROM tokens WHERE user_id = %lld; DELETE FROM users WHERE id = %lld", ana.id, ana.id);
    other_connection(f->path, sql);
    assert_int_equal(auth_token_check(f->d, c, ta, &v), -EACCES);

    /* more tokens than slots: each still checks out as its own user */
    static char many[AUTH_CACHE_SLOTS + 8][AUTH_TOKEN_LEN + 1];
    for (int i = 0; i < AUTH_CACHE_SLOTS + 8; i++)
        assert_int_equal(auth_token_create(f->d, ben.id, many[i], NULL, err, sizeof err), 0);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < AUTH_CACHE_SLOTS + 8; i++) {
            assert_int_equal(auth_token_check(f->d, c, many[i], &v), 0);
            assert_string_equal(v.name, "ben");
        }
    auth_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test_setup_teardown(test_tokens, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_bootstrap_after_offline_users, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_token_cache, setup, db_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
