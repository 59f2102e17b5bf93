/* core/webhooks.c — signed webhooks when a job (or a sweep) ends, in the form OpenAI's fine-tuning API
 * uses (Standard Webhooks: headers webhook-id, webhook-timestamp, webhook-signature = "v1,<base64
 * HMAC-SHA256 of id.timestamp.body>" with the decoded whsec_ secret).
 *
 * Durable, at least once: svc__webhook_enqueue puts one outbox row per configured URL into the batch, so
 * it commits in the same transaction as the final status it announces. A timer on the loop hands due rows
 * to one delivery thread (libcurl, blocking, 10 s per attempt: never on the loop); its results come back
 * through a uv_async and the loop records them: delivered, or the next attempt (5 s, then backing off for
 * about a day, then given up). The same webhook-id on every attempt, so receivers can drop duplicates.
 * Only the admin's URLs (--webhook-url) are ever called. */
#include "core/core_int.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include <curl/curl.h>
#include <errno.h>
#include <nettle/base64.h>
#include <nettle/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* seconds after attempt n (1-based) fails: within 10 s first, about a day in all */
static const int backoff[] = {5, 30, 120, 600, 1800, 3600, 7200, 14400, 21600, 28800, 14400};
#define ATTEMPTS ((int)(sizeof backoff / sizeof backoff[0]) + 1)
#define BATCH 16

typedef struct delivery {
    db_webhook w;                  /* the row (heap strings owned here) */
    int attempted;                 /* the thread tried it (a shutdown may stop it before) */
    int status;                    /* HTTP status, 0 = no answer */
    char err[256];
} delivery;

struct webhooks {
    svc *s;
    uint8_t key[256];
    size_t keylen;
    uv_timer_t timer;
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    delivery *work;                /* handed to the thread (lock); NULL = idle */
    int n_work, done, quit;        /* lock */
    int busy;                      /* loop: a batch is out */
    int closing;
};

/* ---------------- the secret and the signature ---------------- */

/* "whsec_<base64>" -> the key bytes */
static int decode_secret(const char *text, uint8_t *key, size_t *keylen, char *err, size_t errlen)
{
    const char *b64 = !strncmp(text, "whsec_", 6) ? text + 6 : NULL;
    if (!b64 || !*b64) return err_set(err, errlen, -EINVAL, "a webhook secret is \"whsec_\" followed by base64");
    struct base64_decode_ctx ctx;
    base64_decode_init(&ctx);
    size_t n = BASE64_DECODE_LENGTH(strlen(b64));
    if (n > 256) return err_set(err, errlen, -EINVAL, "the webhook secret is longer than 192 bytes");
    if (!base64_decode_update(&ctx, &n, key, strlen(b64), b64) || !base64_decode_final(&ctx) || n < 16)
        return err_set(err, errlen, -EINVAL, "the webhook secret is not base64 of at least 16 bytes");
    *keylen = n;
    return 0;
}

/* OUT sig: "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" */
static void sign(const uint8_t *key, size_t keylen, const char *id, long long ts, const char *body, char *sig,
                 size_t n)
{
    struct hmac_sha256_ctx h;
    char ts_text[24];
    snprintf(ts_text, sizeof ts_text, "%lld", ts);
    hmac_sha256_set_key(&h, keylen, key);
    hmac_sha256_update(&h, strlen(id), (const uint8_t *)id);
    hmac_sha256_update(&h, 1, (const uint8_t *)".");
    hmac_sha256_update(&h, strlen(ts_text), (const uint8_t *)ts_text);
    hmac_sha256_update(&h, 1, (const uint8_t *)".");
    hmac_sha256_update(&h, strlen(body), (const uint8_t *)body);
    uint8_t mac[SHA256_DIGEST_SIZE];
    hmac_sha256_digest(&h, sizeof mac, mac);
    char b64[BASE64_ENCODE_RAW_LENGTH(SHA256_DIGEST_SIZE) + 1];
    base64_encode_raw(b64, sizeof mac, mac);
    b64[sizeof b64 - 1] = 0;
    snprintf(sig, n, "v1,%s", b64);
}

/* ---------------- the delivery thread ---------------- */

static size_t discard(char *p, size_t size, size_t n, void *ud) { (void)p; (void)ud; return size * n; }

static void deliver(struct webhooks *x, delivery *d)
{
    CURL *c = curl_easy_init();
    if (!c) { snprintf(d->err, sizeof d->err, "cannot start libcurl"); return; }
    long long ts = util_now(); /* the attempt's own time: receivers refuse old timestamps */
    char h_id[128], h_ts[64], h_sig[128], sig[100];
    sign(x->key, x->keylen, d->w.id, ts, d->w.body, sig, sizeof sig);
    snprintf(h_id, sizeof h_id, "webhook-id: %s", d->w.id);
    snprintf(h_ts, sizeof h_ts, "webhook-timestamp: %lld", ts);
    snprintf(h_sig, sizeof h_sig, "webhook-signature: %s", sig);
    struct curl_slist *hs = NULL;
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, h_id);
    hs = curl_slist_append(hs, h_ts);
    hs = curl_slist_append(hs, h_sig);
    hs = curl_slist_append(hs, "User-Agent: coretuned-webhooks");
    curl_easy_setopt(c, CURLOPT_URL, d->w.url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->w.body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* the admin's URL, not wherever it points */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    else snprintf(d->err, sizeof d->err, "%s", curl_easy_strerror(rc));
    d->status = (int)code;
    if (rc == CURLE_OK && (code < 200 || code > 299)) snprintf(d->err, sizeof d->err, "HTTP %ld", code);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
}

static void *thread_main(void *arg)
{
    struct webhooks *x = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the loop thread */
    pthread_mutex_lock(&x->lock);
    for (;;) {
        while (!x->quit && (!x->work || x->done)) pthread_cond_wait(&x->cond, &x->lock);
        if (x->quit) break;
        delivery *w = x->work;
        int n = x->n_work;
        pthread_mutex_unlock(&x->lock);
        for (int i = 0; i < n; i++) {
            pthread_mutex_lock(&x->lock);
            int quit = x->quit; /* a shutdown waits for one attempt at most */
            pthread_mutex_unlock(&x->lock);
            if (quit) break;
            deliver(x, &w[i]);
            w[i].attempted = 1;
        }
        pthread_mutex_lock(&x->lock);
        x->done = 1;
        uv_async_send(&x->async);
    }
    pthread_mutex_unlock(&x->lock);
    return NULL;
}

/* ---------------- the loop side ---------------- */

static void free_work(delivery *w, int n)
{
    for (int i = 0; i < n; i++) db_webhook_clear(&w[i].w);
    free(w);
}

/* Record each attempt of a batch that came back. */
static void record(struct webhooks *x, delivery *w, int n)
{
    long long now = util_now();
    for (int i = 0; i < n; i++) {
        delivery *d = &w[i];
        if (!d->attempted) continue;
        int ok = d->status >= 200 && d->status <= 299;
        int attempts = d->w.attempts + 1;
        long long next = ok || attempts >= ATTEMPTS ? 0 : now + backoff[attempts - 1];
        if (db_webhook_attempt(x->s->db, d->w.id, d->w.url, attempts, ok ? now : 0, next, ok ? NULL : d->err) != 0)
            LOG(LOG_ERROR, "msg=\"cannot record a webhook attempt\" id=%s err=\"%s\"", d->w.id, db_errmsg(x->s->db));
        if (ok)
            LOG(LOG_INFO, "msg=\"webhook delivered\" id=%s type=%s url=%s attempts=%d", d->w.id, d->w.type, d->w.url,
                attempts);
        else
            LOG(LOG_WARN, "msg=\"webhook not delivered\" id=%s url=%s attempt=%d err=\"%s\" %s", d->w.id, d->w.url,
                attempts, d->err, next ? "retry=later" : "given_up=1");
    }
    free_work(w, n);
}

/* Take the thread's finished batch, if any (NULL = none). */
static delivery *take(struct webhooks *x, int *n)
{
    pthread_mutex_lock(&x->lock);
    delivery *w = x->done ? x->work : NULL;
    *n = x->n_work;
    if (w) { x->work = NULL; x->n_work = 0; x->done = 0; }
    pthread_mutex_unlock(&x->lock);
    return w;
}

static void on_async(uv_async_t *a)
{
    struct webhooks *x = a->data;
    int n;
    delivery *w = take(x, &n);
    if (!w) return;
    x->busy = 0;
    record(x, w, n);
}

typedef struct due_ctx { delivery *w; int n, cap; } due_ctx;
static int add_due(void *ud, const db_webhook *w)
{
    due_ctx *c = ud;
    if (util_grow(&c->w, &c->cap, c->n + 1, sizeof *c->w)) return 1;
    delivery *d = &c->w[c->n++];
    memset(d, 0, sizeof *d);
    d->w = *w;
    d->w.url = strdup(w->url);
    d->w.type = strdup(w->type);
    d->w.body = strdup(w->body);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    struct webhooks *x = t->data;
    if (x->busy || x->closing) return;
    due_ctx c = {0};
    if (db_webhook_due(x->s->db, util_now(), BATCH, add_due, &c) != 0 || c.n == 0) { free_work(c.w, c.n); return; }
    pthread_mutex_lock(&x->lock);
    x->work = c.w;
    x->n_work = c.n;
    x->done = 0;
    pthread_cond_signal(&x->cond);
    pthread_mutex_unlock(&x->lock);
    x->busy = 1;
}

/* ---------------- the core's side ---------------- */

void svc__webhook_enqueue(svc *s, const char *type, const char *object_id, const char *event_id)
{
    if (s->cfg.n_webhook_urls == 0) return; /* the outbox is kept even before the thread runs */
    char id[64];
    if (event_id) snprintf(id, sizeof id, "%s", event_id);
    else if (util_random_id(id, sizeof id, "evt_") != 0) {
        LOG(LOG_ERROR, "msg=\"no randomness for a webhook id\" object=%s", object_id);
        return;
    }
    long long now = util_now();
    json_t *body = json_pack("{s:s, s:s, s:I, s:s, s:{s:s}}", "id", id, "object", "event", "created_at",
                             (json_int_t)now, "type", type, "data", "id", object_id);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    for (int i = 0; text && i < s->cfg.n_webhook_urls; i++) {
        db_webhook *w = db_batch_webhook(&s->batch);
        if (!w) break;
        snprintf(w->id, sizeof w->id, "%s", id);
        w->url = strdup(s->cfg.webhook_urls[i]);
        w->type = strdup(type);
        w->body = strdup(text);
        w->created_at = now;
        w->next_at = now; /* due at once */
    }
    free(text);
    svc__flush_later(s);
}

int svc__webhooks_open(svc *s, char *err, size_t errlen)
{
    if (s->cfg.n_webhook_urls == 0) return 0;
    struct webhooks *x = calloc(1, sizeof *x);
    if (!x) return err_set(err, errlen, -ENOMEM, "out of memory");
    x->s = s;
    int rc = decode_secret(s->cfg.webhook_secret, x->key, &x->keylen, err, errlen);
    if (rc == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != 0) rc = err_set(err, errlen, -EIO, "cannot start libcurl");
    if (rc) { free(x); return rc; }
    pthread_mutex_init(&x->lock, NULL);
    pthread_cond_init(&x->cond, NULL);
    /* the thread first: it touches the async handle only for work, which only the timer hands out */
    if ((rc = pthread_create(&x->thread, NULL, thread_main, x)) != 0) {
        pthread_mutex_destroy(&x->lock);
        pthread_cond_destroy(&x->cond);
        free(x);
        return err_set(err, errlen, -rc, "cannot start the webhook thread: %s", strerror(rc));
    }
    uv_async_init(s->loop, &x->async, on_async);
    uv_timer_init(s->loop, &x->timer);
    x->async.data = x->timer.data = x;
    uv_timer_start(&x->timer, on_timer, 200, 1000);
    s->hooks = x;
    LOG(LOG_INFO, "msg=\"webhooks on\" urls=%d", s->cfg.n_webhook_urls);
    return 0;
}

/* At shutdown: the thread finishes the attempt it is in (at most 10 s) and leaves; what it learnt is
 * recorded, rows not delivered stay in the outbox for the next daemon. */
void svc__webhooks_close(svc *s)
{
    struct webhooks *x = s->hooks;
    if (!x || x->closing) return;
    x->closing = 1;
    uv_timer_stop(&x->timer);
    pthread_mutex_lock(&x->lock);
    x->quit = 1;
    pthread_cond_signal(&x->cond);
    pthread_mutex_unlock(&x->lock);
    pthread_join(x->thread, NULL);
    int n;
    delivery *w = take(x, &n);
    if (w) record(x, w, n);
    else { /* handed out but not finished: nothing was attempted that is not recorded */
        pthread_mutex_lock(&x->lock);
        free_work(x->work, x->n_work);
        x->work = NULL;
        pthread_mutex_unlock(&x->lock);
    }
    uv_close((uv_handle_t *)&x->timer, NULL);
    uv_close((uv_handle_t *)&x->async, NULL);
}

/* After the loop has run the closes. */
void svc__webhooks_free(svc *s)
{
    struct webhooks *x = s->hooks;
    if (!x) return;
    pthread_mutex_destroy(&x->lock);
    pthread_cond_destroy(&x->cond);
    free(x);
    s->hooks = NULL;
}
