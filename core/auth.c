/* core/auth.c — users, API tokens, local identities and the cache of checked tokens (see auth.h).
 * Whichever thread owns the db (the loop thread in the daemon; main() in the offline admin commands).
 * Never logs a token. */
#define _GNU_SOURCE
#include "core/auth.h"
#include "common/util.h"
#include <errno.h>
#include <nettle/memops.h>   /* memeql_sec: constant-time comparison */
#include <nettle/sha2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* The raw digest is what db_token.hash stores; nettle's context is on the stack, so any thread. */
static void sha256_raw(const void *data, size_t n, uint8_t out[SHA256_DIGEST_SIZE])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, n, data);
    sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

void auth_sha256_hex(const void *data, size_t n, char out[65])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t h[SHA256_DIGEST_SIZE];
    sha256_raw(data, n, h);
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
        out[2 * i] = digits[h[i] >> 4];
        out[2 * i + 1] = digits[h[i] & 15];
    }
    out[2 * SHA256_DIGEST_SIZE] = 0;
}

/* A plain name (util_valid_name) in lower case that starts with a letter or digit. */
int auth_valid_name(const char *name)
{
    if (!util_valid_name(name, 63) || name[0] == '-' || name[0] == '_') return 0;
    for (const char *p = name; *p; p++)
        if (*p >= 'A' && *p <= 'Z') return 0;
    return 1;
}

int auth_user_add(db *d, const char *name, int admin, long long uid, int bootstrap, db_user *out, char *err,
                  size_t errlen)
{
    if (!auth_valid_name(name)) {
        snprintf(err, errlen, "user name '%.80s' must be 1-63 of a-z, 0-9, '.', '_', '-' (starting with a letter or digit)", name);
        return -EINVAL;
    }
    db_user u = {.uid = uid, .admin = admin, .bootstrap = bootstrap, .created_at = (long long)time(NULL)};
    snprintf(u.name, sizeof u.name, "%s", name);
    int rc = db_user_add(d, &u, &u.id);
    if (rc == -EEXIST) {
        db_user other;
        if (db_user_by_name(d, name, &other) == 0) snprintf(err, errlen, "user '%s' already exists", name);
        else snprintf(err, errlen, "uid %lld already belongs to another user", uid);
        return rc;
    }
    if (rc) { snprintf(err, errlen, "database: %s", db_errmsg(d)); return rc; }
    if (out) *out = u;
    return 0;
}

int auth_token_create(db *d, long long user_id, char *token, long long *id, char *err, size_t errlen)
{
    char rnd[AUTH_TOKEN_RANDOM + 1];
    int rc = util_random_base62(rnd, AUTH_TOKEN_RANDOM);
    if (rc) { snprintf(err, errlen, "no randomness: %s", strerror(-rc)); return rc; }
    db_token t = {.user_id = user_id, .created_at = (long long)time(NULL)};
    snprintf(token, AUTH_TOKEN_LEN + 1, AUTH_TOKEN_PREFIX "%s", rnd);
    snprintf(t.prefix, sizeof t.prefix, "%.*s", AUTH_LOOKUP_LEN, token);
    sha256_raw(token, AUTH_TOKEN_LEN, t.hash);
    rc = db_token_add(d, &t, id);
    memset(rnd, 0, sizeof rnd);
    if (rc) {
        memset(token, 0, AUTH_TOKEN_LEN + 1);
        snprintf(err, errlen, "database: %s", db_errmsg(d));
    }
    return rc;
}

typedef struct check_ctx { uint8_t hash[SHA256_DIGEST_SIZE]; long long user_id; } check_ctx;

static int check_one(void *ud, const db_token *t)
{
    check_ctx *c = ud;
    if (memeql_sec(c->hash, t->hash, sizeof t->hash) && c->user_id < 0) c->user_id = t->user_id;
    return 0; /* look at every candidate: the time does not say which one matched */
}

struct auth_cache {
    db_stamp stamp;                /* the database as every entry was read from it */
    int next;                      /* the slot the next entry goes to (round robin) */
    int used;                      /* slots filled: 0..used-1 (emptied all at once, filled in order) */
    struct {
        uint8_t hash[SHA256_DIGEST_SIZE];
        db_user user;
    } slot[AUTH_CACHE_SLOTS];
};

int auth_cache_new(auth_cache **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

void auth_cache_free(auth_cache *c) { free(c); }

/* 0 when c's entries still hold, after emptying it if the database may have changed since they were read;
 * -EIO when the stamp cannot be read (then c is neither read nor filled). */
static int cache_fresh(db *d, auth_cache *c)
{
    db_stamp now;
    if (db_stamp_get(d, &now) != 0) return -EIO;
    if (now.data_version != c->stamp.data_version || now.changes != c->stamp.changes) {
        memset(c, 0, sizeof *c);
        c->stamp = now;
    }
    return 0;
}

/* OUT *out from the slot whose digest is hash: 1, or 0 when none. Every filled slot is compared, in
 * constant time, whichever matches: the time says nothing of the digests held. */
static int cache_find(const auth_cache *c, const uint8_t hash[SHA256_DIGEST_SIZE], db_user *out)
{
    int hit = -1;
    for (int i = 0; i < c->used; i++) {
        int same = memeql_sec(c->slot[i].hash, hash, SHA256_DIGEST_SIZE); /* no early exit */
        if (same && hit < 0) hit = i;
    }
    if (hit < 0) return 0;
    *out = c->slot[hit].user;
    return 1;
}

static void cache_put(auth_cache *c, const uint8_t hash[SHA256_DIGEST_SIZE], const db_user *u)
{
    int i = c->next;
    c->next = (i + 1) % AUTH_CACHE_SLOTS;
    if (c->used < AUTH_CACHE_SLOTS) c->used++;
    memcpy(c->slot[i].hash, hash, SHA256_DIGEST_SIZE);
    c->slot[i].user = *u;
}

int auth_token_check(db *d, auth_cache *cache, const char *token, db_user *out)
{
    if (!token || strlen(token) != AUTH_TOKEN_LEN || strncmp(token, AUTH_TOKEN_PREFIX, 3) != 0) return -EACCES;
    for (const char *p = token + 3; *p; p++)
        if (!strchr(base62, *p)) return -EACCES;
    check_ctx c = {.user_id = -1};
    sha256_raw(token, AUTH_TOKEN_LEN, c.hash);
    /* the stamp is read before the database: a change made after it empties the cache next time */
    int cached = cache && cache_fresh(d, cache) == 0;
    if (cached && cache_find(cache, c.hash, out)) return 0;
    char prefix[AUTH_LOOKUP_LEN + 1];
    snprintf(prefix, sizeof prefix, "%.*s", AUTH_LOOKUP_LEN, token);
    if (db_token_by_prefix(d, prefix, check_one, &c) != 0) return -EIO;
    if (c.user_id < 0) return -EACCES;
    if (db_user_by_id(d, c.user_id, out) != 0) return -EACCES;
    if (cached) cache_put(cache, c.hash, out);
    return 0;
}

int auth_uid_check(db *d, long long uid, long long self_uid, db_user *out)
{
    int rc = db_user_by_uid(d, uid, out);
    if (rc == 0) return 0;
    if (rc != -ENOENT) return -EIO;
    if (uid == 0 || uid == self_uid) {
        rc = db_user_bootstrap(d, out);
        if (rc == 0) return 0;
        if (rc != -ENOENT) return -EIO;
    }
    return -EACCES;
}

int auth_bootstrap(db *d, long long self_uid, char *token, char *name, char *err, size_t errlen)
{
    token[0] = name[0] = 0;
    db_user u;
    int rc = db_user_bootstrap(d, &u);
    if (rc == 0) return 0;
    if (rc != -ENOENT) { snprintf(err, errlen, "database: %s", db_errmsg(d)); return -EIO; }
    long long uid = self_uid;
    if ((rc = db_user_by_uid(d, self_uid, &u)) == 0) uid = -1; /* that uid is already someone's */
    else if (rc != -ENOENT) { snprintf(err, errlen, "database: %s", db_errmsg(d)); return -EIO; }
    char want[64] = "admin";
    for (int k = 2; (rc = db_user_by_name(d, want, &u)) == 0 && k < 10; k++) snprintf(want, sizeof want, "admin-%d", k);
    if (rc != -ENOENT) { snprintf(err, errlen, "no free name for the first admin (admin .. admin-9 are taken)"); return -EEXIST; }
    if ((rc = auth_user_add(d, want, 1, uid, 1, &u, err, errlen)) != 0) return rc;
    db_audit a;
    char detail[128];
    snprintf(detail, sizeof detail, "bootstrap admin (uid %lld) and its token", uid);
    db_audit_set(&a, util_now(), "", "user_add", want, "ok", "startup", detail);
    if (db_audit_insert(d, &a) != 0) { snprintf(err, errlen, "database: %s", db_errmsg(d)); return -EIO; }
    snprintf(name, 64, "%s", want);
    return auth_token_create(d, u.id, token, NULL, err, errlen);
}
