/* api/sse.c — server-sent event streams for GET /v1/fine_tuning/jobs/{id}/events. Loop thread only.
 * A stream is a response with a content-reader callback (chunked, unknown size) that fills its buffer
 * from svc_stream_poll; with nothing to send it suspends the connection. The service's listener (a job
 * has new events) or the heartbeat timer resumes it. MHD is never re-entered from here: resuming is
 * allowed anywhere, and the MHD run that follows is deferred to a zero-delay timer (arm_kick).
 * A stream that cannot grow its buffer or poll the service ends; it never reports errors otherwise.
 * Streams are capped (max-streams, answered 503 past it) apart from API requests, so dashboards cannot take
 * every connection; and a stream whose client stopped reading is cut: MHD asks for more (sse_read) only once
 * what it wrote has gone into the socket, so a stream not suspended that has not been asked for
 * 3 heartbeats is stuck behind a client that reads nothing. Its socket's send buffer is kept small, so such
 * a client holds little kernel memory and is found out after little data.
 * Fan-out: the streams of one job share a feed, a ring of that job's newest events serialised once. The
 * listener only marks the feed stale; the first stream to fill afterwards polls the service once for all
 * of them (so one read and one json_dumps per event, not per stream), and every stream copies the text
 * from the ring. A stream behind the ring's oldest event (replay from Last-Event-ID/after, or one that
 * lagged past FEED_RING events) reads its own pages from the service until it catches up. Visibility
 * (admin or the job's owner) cannot change for an open stream, so the feed polls as any of its streams. */
#include "api/api_int.h"
#include "common/log.h"
#include "common/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define FEED_RING 512     /* events kept serialised per job: ~0.2 MiB for a job's metrics events */

typedef struct chunk { long long id; size_t len; char text[]; } chunk; /* one event, as a stream sends it */

struct sse_feed {
    char job_id[64];
    int refs;                    /* streams on this job */
    int primed, stale, ended;    /* ended: the service said the job's stream is over, after ring's last */
    long long base;              /* the ring holds every event of the job with an id > base */
    long long last;              /* the newest event in the ring (base when empty) */
    chunk *ring[FEED_RING];
    int head, n;                 /* oldest at ring[head] */
    sse_feed *prev, *next;
};

struct sse {
    api_ctx *a;
    sse_feed *feed;
    struct MHD_Connection *conn;
    svc_caller who;
    char job_id[64];
    long long last;
    char *buf;
    size_t len, off, cap;
    int suspended, ended, heartbeat, cut;
    double last_read;   /* util_mono() of MHD's last call to sse_read */
    sse *prev, *next;
};

static void on_kick(uv_timer_t *t)
{
    api_ctx *a = t->data;
    a->kick_armed = 0;
    if (a->kick) a->kick(a->kick_ud);
}

static void arm_kick(api_ctx *a)
{
    if (a->kick_armed || a->shutting_down) return;
    a->kick_armed = 1;
    uv_timer_start(&a->kick_timer, on_kick, 0, 0);
}

void api__kick(api_ctx *a) { arm_kick(a); }

static void sse_append(sse *x, const char *text, size_t n)
{
    if (x->len + n > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + n) cap *= 2;
        char *b = realloc(x->buf, cap);
        if (!b) { x->ended = 1; return; }
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, text, n);
    x->len += n;
}

/* "id: ...\nevent: ...\ndata: {...}\n\n" for one event, or NULL (out of memory, unrenderable). */
static chunk *serialise(const svc_event *v)
{
    json_t *ev = render_event(v);
    const char *id = json_string_value(json_object_get(ev, "id"));
    const char *type = json_string_value(json_object_get(ev, "type"));
    char *data = json_dumps(ev, JSON_COMPACT);
    chunk *c = NULL;
    if (data && id) {
        char head[160];
        int n = snprintf(head, sizeof head, "id: %s\nevent: %s\ndata: ", id, type ? type : "message");
        size_t dn = strlen(data);
        c = malloc(sizeof *c + (size_t)n + dn + 2);
        if (c) {
            c->id = v->id;
            c->len = (size_t)n + dn + 2;
            memcpy(c->text, head, (size_t)n);
            memcpy(c->text + n, data, dn);
            memcpy(c->text + n + dn, "\n\n", 2);
        }
    }
    free(data);
    json_decref(ev);
    return c;
}

static void feed_push(sse_feed *f, chunk *c)
{
    if (f->n == FEED_RING) { /* the oldest goes: streams still behind it read their own pages */
        f->base = f->ring[f->head]->id;
        free(f->ring[f->head]);
        f->head = (f->head + 1) % FEED_RING;
        f->n--;
    }
    f->ring[(f->head + f->n) % FEED_RING] = c;
    f->n++;
    f->last = c->id;
}

/* Bring the feed up to date with one poll of the service (as stream x), if it is stale. A failed poll leaves
 * it stale for the next stream to retry. */
static int feed_refresh(sse_feed *f, sse *x)
{
    if (!f->stale) return 0;
    svc_event_page p;
    int ended = 0;
    svc_error e;
    if (svc_stream_poll(x->a->svc, &x->who, f->job_id, f->last, 100, &p, &ended, &e) != 0) return -1;
    for (int i = 0; i < p.n; i++) {
        chunk *c = serialise(&p.v[i]);
        if (c) feed_push(f, c);
        else f->last = p.v[i].id; /* skipped, as a stream of its own would skip it */
    }
    /* stale until a poll brings nothing: the one after a job's last events is the one that says it ended */
    f->stale = p.n > 0 || p.has_more;
    f->ended = ended;
    svc_event_page_free(&p);
    return 0;
}

static void sse_end(sse *x)
{
    char end[160];
    int n = snprintf(end, sizeof end, "event: end\ndata: {\"job_id\":\"%s\"}\n\n", x->job_id);
    sse_append(x, end, (size_t)n);
    x->ended = 1;
}

/* A stream behind the feed: its own page from the service, serialised for it alone. Once the page is not
 * full the stream has caught up; the feed starts from there if it has not started yet. */
static void fill_own(sse *x)
{
    svc_event_page p;
    int ended = 0;
    svc_error e;
    if (svc_stream_poll(x->a->svc, &x->who, x->job_id, x->last, 100, &p, &ended, &e) != 0) {
        x->ended = 1;
        return;
    }
    for (int i = 0; i < p.n; i++) {
        chunk *c = serialise(&p.v[i]);
        if (c) sse_append(x, c->text, c->len);
        x->last = p.v[i].id;
        free(c);
    }
    sse_feed *f = x->feed;
    if (!p.has_more && f && !f->primed) {
        f->primed = 1;
        f->base = f->last = x->last;
        f->ended = ended;
    }
    svc_event_page_free(&p);
    if (x->len == 0 && ended) sse_end(x);
}

static void sse_fill(sse *x)
{
    if (x->a->shutting_down) { x->ended = 1; return; }
    sse_feed *f = x->feed;
    if (f && f->primed && feed_refresh(f, x) != 0) { x->ended = 1; return; }
    if (!f || !f->primed || x->last < f->base) {
        fill_own(x);
    } else {
        int k = 0, hi = f->n; /* the first ring entry after x->last: ids increase along the ring */
        while (k < hi) {
            int mid = (k + hi) / 2;
            if (f->ring[(f->head + mid) % FEED_RING]->id <= x->last) k = mid + 1;
            else hi = mid;
        }
        for (int sent = 0; k < f->n && sent < 100; k++, sent++) {
            chunk *c = f->ring[(f->head + k) % FEED_RING];
            sse_append(x, c->text, c->len);
            x->last = c->id;
        }
        if (k == f->n && x->last < f->last) x->last = f->last; /* past events that could not be serialised */
        if (x->len == 0 && f->ended && !f->stale) sse_end(x);
    }
    if (x->len == 0 && x->heartbeat) sse_append(x, ": keep-alive\n\n", 14);
    x->heartbeat = 0;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    sse *x = cls;
    x->last_read = util_mono();
    if (x->off == x->len) {
        x->off = x->len = 0;
        if (!x->ended) sse_fill(x);
    }
    if (x->off < x->len) {
        size_t n = x->len - x->off < max ? x->len - x->off : max;
        memcpy(buf, x->buf + x->off, n);
        x->off += n;
        return (ssize_t)n;
    }
    if (x->ended) return MHD_CONTENT_READER_END_OF_STREAM;
    MHD_suspend_connection(x->conn); /* until new events or the heartbeat */
    x->suspended = 1;
    return 0;
}

static sse_feed *feed_join(api_ctx *a, const char *job_id)
{
    for (sse_feed *f = a->feeds; f; f = f->next)
        if (!strcmp(f->job_id, job_id)) { f->refs++; return f; }
    sse_feed *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    snprintf(f->job_id, sizeof f->job_id, "%s", job_id);
    f->refs = 1;
    f->next = a->feeds;
    if (a->feeds) a->feeds->prev = f;
    a->feeds = f;
    return f;
}

static void feed_leave(api_ctx *a, sse_feed *f)
{
    if (!f || --f->refs > 0) return;
    if (f->prev) f->prev->next = f->next;
    else a->feeds = f->next;
    if (f->next) f->next->prev = f->prev;
    for (int k = 0; k < f->n; k++) free(f->ring[(f->head + k) % FEED_RING]);
    free(f);
}

static void sse_free(void *cls)
{
    sse *x = cls;
    feed_leave(x->a, x->feed);
    if (x->prev) x->prev->next = x->next;
    else x->a->streams = x->next;
    if (x->next) x->next->prev = x->prev;
    x->a->n_streams--;
    free(x->buf);
    free(x);
}

static void resume(sse *x)
{
    if (!x->suspended) return;
    x->suspended = 0;
    MHD_resume_connection(x->conn);
}

void api__sse_on_job_event(void *ud, const char *job_id)
{
    api_ctx *a = ud;
    int any = 0;
    for (sse_feed *f = a->feeds; f; f = f->next)
        if (!strcmp(f->job_id, job_id)) f->stale = 1;
    for (sse *x = a->streams; x; x = x->next)
        if (x->suspended && !strcmp(x->job_id, job_id)) { resume(x); any = 1; }
    if (any) arm_kick(a);
}

static int conn_fd(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return fi ? fi->connect_fd : -1;
}

/* Drop what is queued for a client that does not read (linger 0: no orphaned socket keeps it) and shut the
 * socket: MHD's next write fails and closes the connection, which frees the stream. */
static void cut(sse *x)
{
    int fd = conn_fd(x->conn);
    x->cut = 1;
    LOG(LOG_INFO, "msg=\"cut an event stream whose client stopped reading\" job=%s user=\"%s\"", x->job_id, x->who.name);
    if (fd < 0) return;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); /* best effort: shutdown below cuts it either way */
    shutdown(fd, SHUT_RDWR);
}

void api__sse_on_heartbeat(uv_timer_t *t)
{
    api_ctx *a = t->data;
    double now = util_mono(), stall = 3 * a->lim.sse_heartbeat_s;
    if (stall < 1) stall = 1;
    for (sse_feed *f = a->feeds; f; f = f->next) f->stale = 1; /* a run's end without a new event */
    for (sse *x = a->streams; x; x = x->next) {
        if (!x->suspended && !x->cut && now - x->last_read > stall) cut(x);
        x->heartbeat = 1;
        resume(x);
    }
    if (a->streams) arm_kick(a);
}

void api__sse_resume_all(api_ctx *a)
{
    for (sse *x = a->streams; x; x = x->next) resume(x);
}

int api__sse_is(const api_ctx *a, struct MHD_Connection *conn)
{
    return a->streams && a->streams->conn == conn;
}

enum MHD_Result api__sse_start(api__call *c, const char *job_id)
{
    api_ctx *a = c->a;
    const svc_caller *who = &c->q->who;
    svc_event_page first; /* may who see this job's (or sweep's) events? the answer before a stream starts */
    svc_error e;
    if (svc_job_events(a->svc, who, job_id, 0, 1, &first, &e) != 0) return api__reply_error(c, &e);
    svc_event_page_free(&first);
    long long last = 0;
    const char *lei = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *after = api__arg(c, "after");
    if (lei && api__event_id(lei, &last) != 0)
        return api__fail(c, SVC_EINVAL, "invalid_value", "Last-Event-ID", "Last-Event-ID must be an event id");
    if (!lei && after && api__event_id(after, &last) != 0)
        return api__fail(c, SVC_EINVAL, "invalid_value", "after", "after must be an event id");
    if (a->n_streams >= a->lim.max_streams)
        return api__fail(c, SVC_EUNAVAILABLE, "too_many_streams", NULL,
                         "%d event streams are open, the most this daemon serves (max-streams): retry later,"
                         " or read pages of GET %s without Accept: text/event-stream", a->n_streams, c->url);
    sse *x = calloc(1, sizeof *x);
    if (!x) return MHD_NO;
    x->a = a;
    x->conn = c->conn;
    x->who = *who;
    x->last = last;
    x->last_read = util_mono();
    snprintf(x->job_id, sizeof x->job_id, "%.63s", job_id);
    x->feed = feed_join(a, x->job_id); /* NULL (out of memory): the stream reads its own pages */
    /* 4 KiB blocks (about ten events a read): 16 KiB cost 1,000 streams 11 MiB more for no measured gain */
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4 * 1024, sse_read, x, sse_free);
    if (!r) { feed_leave(a, x->feed); free(x); return MHD_NO; }
    x->next = a->streams;
    if (a->streams) a->streams->prev = x;
    a->streams = x;
    a->n_streams++;
    /* 32 KiB (the kernel doubles it) holds many events, and stops autotuning growing it to megabytes */
    int fd = conn_fd(c->conn), sndbuf = 32 * 1024;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf); /* best effort */
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ret = api__queue(c, 200, r);
    MHD_destroy_response(r); /* the connection holds it; sse_free runs when it is done */
    return ret;
}
