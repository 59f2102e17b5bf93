/* daemon/admin.c — the offline admin commands (user add/list, token create/list/revoke): they open the
 * database directly, so they work while the daemon is stopped, and each leaves an audit record. */
#define _GNU_SOURCE
#include "daemon/admin.h"
#include "core/auth.h"
#include "storage/db.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int admin_is_command(const char *word)
{
    return !strcmp(word, "user") || !strcmp(word, "token");
}


static void audit_cli(db *d, const char *action, const char *target, const char *detail)
{
    db_audit a;
    char remote[64];
    snprintf(remote, sizeof remote, "cli:uid:%lld", (long long)getuid());
    db_audit_set(&a, (long long)time(NULL), "", action, target, "ok", remote, detail);
    if (db_audit_insert(d, &a) != 0) fprintf(stderr, "coretuned: warning: audit record not written: %s\n", db_errmsg(d));
}

static int print_user(void *ud, const db_user *u)
{
    (void)ud;
    char uid[32] = "-";
    if (u->uid >= 0) snprintf(uid, sizeof uid, "%lld", u->uid);
    printf("%-24s %-6s uid=%s%s\n", u->name, u->admin ? "admin" : "user", uid, u->bootstrap ? " (bootstrap)" : "");
    return 0;
}

static int print_token(void *ud, const db_token *t)
{
    (void)ud;
    printf("tok-%lld  %s…  user=%s  created=%lld%s\n", t->id, t->prefix, t->user, t->created_at,
           t->revoked_at ? "  revoked" : "");
    return 0;
}

int admin_run(daemon_opts *o, int argc, char **argv)
{
    char path[1200], err[512];
    snprintf(path, sizeof path, "%s/coretuned.db", o->svc.data_dir);
    const char *what = argv[0], *verb = argc > 1 ? argv[1] : "";
    if (mkdir(o->svc.data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "coretuned: cannot create data dir %s: %s\n", o->svc.data_dir, strerror(errno));
        return 1;
    }
    db *d = NULL;
    if (db_open(&d, path, err, sizeof err) != 0) {
        fprintf(stderr, "coretuned: %s\n", err);
        return 1;
    }
    int rc = 2;
    if (!strcmp(what, "user") && !strcmp(verb, "add") && argc >= 3) {
        int admin = 0;
        long long uid = -1;
        rc = 0;
        for (int i = 3; i < argc && rc == 0; i++) {
            long x;
            if (!strcmp(argv[i], "--admin")) admin = 1;
            else if (!strcmp(argv[i], "--uid") && i + 1 < argc && opts_parse_int(argv[i + 1], 0, 0x7fffffffL, &x) == 0) uid = x, i++;
            else { fprintf(stderr, "coretuned: user add: unexpected '%s'\n", argv[i]); rc = 2; }
        }
        if (rc == 0) {
            db_user u;
            if (auth_user_add(d, argv[2], admin, uid, 0, &u, err, sizeof err) != 0) {
                fprintf(stderr, "coretuned: %s\n", err);
                rc = 1;
            } else {
                char detail[64];
                snprintf(detail, sizeof detail, "admin=%d uid=%lld", admin, uid);
                audit_cli(d, "user_add", u.name, detail);
                printf("added user %s%s\n", u.name, admin ? " (admin)" : "");
            }
        }
    } else if (!strcmp(what, "user") && !strcmp(verb, "list") && argc == 2) {
        rc = db_user_list(d, print_user, NULL) == 0 ? 0 : 1;
    } else if (!strcmp(what, "token") && !strcmp(verb, "create") && argc == 3) {
        db_user u;
        char token[AUTH_TOKEN_LEN + 1];
        long long id;
        if (db_user_by_name(d, argv[2], &u) != 0) {
            fprintf(stderr, "coretuned: no user '%s' (add one with: coretuned user add %s)\n", argv[2], argv[2]);
            rc = 1;
        } else if (auth_token_create(d, u.id, token, &id, err, sizeof err) != 0) {
            fprintf(stderr, "coretuned: %s\n", err);
            rc = 1;
        } else {
            char target[80];
            snprintf(target, sizeof target, "tok-%lld", id);
            audit_cli(d, "token_create", target, u.name);
            printf("%s\n", token); /* the only time this token is shown */
            fprintf(stderr, "coretuned: token tok-%lld for %s (shown once; only its hash is stored)\n", id, u.name);
            memset(token, 0, sizeof token);
            rc = 0;
        }
    } else if (!strcmp(what, "token") && !strcmp(verb, "list") && argc <= 3) {
        rc = db_token_list(d, argc == 3 ? argv[2] : NULL, print_token, NULL) == 0 ? 0 : 1;
    } else if (!strcmp(what, "token") && !strcmp(verb, "revoke") && argc == 3) {
        int n = 0;
        if (db_token_revoke(d, argv[2], (long long)time(NULL), &n) != 0) {
            fprintf(stderr, "coretuned: database: %s\n", db_errmsg(d));
            rc = 1;
        } else if (n == 0) {
            fprintf(stderr, "coretuned: no live token '%s' (see coretuned token list)\n", argv[2]);
            rc = 1;
        } else {
            audit_cli(d, "token_revoke", argv[2], "");
            printf("revoked %d token%s\n", n, n == 1 ? "" : "s");
            rc = 0;
        }
    } else {
        opts_usage(stderr);
    }
    db_close(d);
    return rc;
}

