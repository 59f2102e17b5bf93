/* core/auth.h — who is calling: users, API tokens and local (Unix socket) identities, on top of
 * storage/db.h. Used by the job service on the loop thread and by the offline admin commands
 * (`coretuned user add`, `token create`, ...) in main.c. Tokens are "ct_" + 40 base62 characters
 * (238 random bits from getrandom); only their SHA-256 is stored, looked up by the first 11 characters
 * (public) and compared in constant time. SHA-256 and the comparison are nettle's (see docs/design.md). A token is returned to the caller exactly once and never logged.
 * Errors: negative errno-style codes (-EACCES: not a valid credential, -EEXIST, -EINVAL, -EIO) with a
 * one-line reason in err where taken. */
#ifndef CT_AUTH_H
#define CT_AUTH_H
#include "storage/db.h"
#include <stddef.h>

#define AUTH_TOKEN_PREFIX "ct_"
#define AUTH_TOKEN_RANDOM 40                       /* base62 characters after the prefix */
#define AUTH_TOKEN_LEN (3 + AUTH_TOKEN_RANDOM)     /* strlen of a token */
#define AUTH_LOOKUP_LEN 11                         /* "ct_" + 8: stored in clear for lookup and display */

/* OUT out: the SHA-256 of data (n bytes) as 64 lowercase hex digits and a NUL. Pure, any thread,
 * cannot fail; for digests that are not secrets (an Idempotency-Key's request body, say). */
void auth_sha256_hex(const void *data, size_t n, char out[65]);

/* 1 for a user name we accept: 1-63 of [a-z0-9._-], starting with a letter or digit. */
int auth_valid_name(const char *name);

/* Add a user (uid -1 = none). OUT *out (may be NULL). -EEXIST when the name or uid is taken. */
int auth_user_add(db *d, const char *name, int admin, long long uid, int bootstrap, db_user *out, char *err,
                  size_t errlen);

/* Make a token for user_id: OUT token (AUTH_TOKEN_LEN + 1 bytes), OUT *id (may be NULL). */
int auth_token_create(db *d, long long user_id, char *token, long long *id, char *err, size_t errlen);

/* Tokens checked lately (AUTH_CACHE_SLOTS of them) and the user each belongs to, so a request does not
 * read the database to learn who it is. Keyed by the token's SHA-256 (the token itself is never kept),
 * every slot compared in constant time. Dropped whole whenever the database may have changed since the
 * entries were read (db_stamp_get: another connection's commit, or any row this one wrote), so a revoked
 * token, a deleted user or a changed role counts on the very next request. Owned by the db's thread. */
#define AUTH_CACHE_SLOTS 64
typedef struct auth_cache auth_cache;
int  auth_cache_new(auth_cache **out);  /* -ENOMEM */
void auth_cache_free(auth_cache *c);    /* NULL-safe */

/* The user a presented token belongs to (live tokens only). -EACCES when it is not one. c: the cache to
 * answer from and to fill (NULL = ask the database every time). */
int auth_token_check(db *d, auth_cache *c, const char *token, db_user *out);

/* The user a local uid maps to: the user whose uid matches, else (uid 0 or the daemon's own uid) the
 * bootstrap admin. -EACCES when none. */
int auth_uid_check(db *d, long long uid, long long self_uid, db_user *out);

/* With no bootstrap admin (the first start, also when users were added offline before it): add one,
 * "admin" (or "admin-2".. when that name is taken), with uid self_uid unless another user has it, and
 * a token for it. OUT token and name (64 bytes), both empty when one existed already. */
int auth_bootstrap(db *d, long long self_uid, char *token, char *name, char *err, size_t errlen);

#endif
