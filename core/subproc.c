/* core/subproc.c — a child process on the loop (core/subproc.h): one uv_process_t, two pipes and a timer;
 * the callback runs when the process has exited and both pipes reached EOF (so no output is lost), then
 * every handle is closed and the struct freed once the last close callback has run. */
#include "core/subproc.h"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf { char *p; size_t n, cap; } buf;

struct subproc {
    uv_process_t proc;
    uv_pipe_t out, err;
    uv_timer_t timer;
    buf bo, be;
    int exited, status, eofs, closing;
    int open_handles;
    subproc_cb cb;
    void *ud;
};

static void on_closed(uv_handle_t *h)
{
    subproc *p = h->data;
    if (--p->open_handles > 0) return;
    free(p->bo.p);
    free(p->be.p);
    free(p);
}

static void finish(subproc *p)
{
    if (!p->exited || p->eofs < 2 || p->closing) return;
    p->closing = 1;
    static char empty[1];
    /* a buffer made for a read that then saw EOF holds no NUL yet: an empty output is "" */
    p->cb(p->ud, p->status, p->bo.n ? p->bo.p : empty, p->bo.n, p->be.n ? p->be.p : empty, p->be.n);
    uv_close((uv_handle_t *)&p->proc, on_closed);
    uv_close((uv_handle_t *)&p->timer, on_closed);
}

static void on_proc_exit(uv_process_t *h, int64_t code, int sig)
{
    subproc *p = h->data;
    p->exited = 1;
    p->status = sig ? 128 + sig : (int)code;
    uv_timer_stop(&p->timer);
    finish(p);
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *b)
{
    subproc *p = h->data;
    buf *o = (uv_pipe_t *)h == &p->out ? &p->bo : &p->be;
    (void)want;
    if (o->cap - o->n < 4097 && o->cap < SUBPROC_OUT_MAX + 1) {
        size_t cap = o->cap ? o->cap * 2 : 8192;
        if (cap > SUBPROC_OUT_MAX + 1) cap = SUBPROC_OUT_MAX + 1;
        char *np = realloc(o->p, cap);
        if (np) { o->p = np; o->cap = cap; }
    }
    static char sink[4096]; /* over the cap (or out of memory): read and drop, never stall the child */
    if (o->cap - o->n < 2) { *b = uv_buf_init(sink, sizeof sink); return; }
    *b = uv_buf_init(o->p + o->n, (unsigned)(o->cap - o->n - 1));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    subproc *p = s->data;
    buf *o = (uv_pipe_t *)s == &p->out ? &p->bo : &p->be;
    if (n > 0 && o->p && b->base >= o->p && b->base < o->p + o->cap) {
        o->n += (size_t)n;
        o->p[o->n] = 0;
    }
    if (n < 0) { /* EOF or an error: this pipe is done */
        uv_read_stop(s);
        uv_close((uv_handle_t *)s, on_closed);
        p->eofs++;
        finish(p);
    }
}

static void on_timeout(uv_timer_t *t) { uv_process_kill(&((subproc *)t->data)->proc, SIGKILL); }

void subproc_kill(subproc *p)
{
    if (p && !p->exited) uv_process_kill(&p->proc, SIGKILL);
}

int subproc_run(uv_loop_t *loop, char *const argv[], double timeout_s, subproc_cb cb, void *ud, subproc **out)
{
    subproc *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->cb = cb;
    p->ud = ud;
    uv_pipe_init(loop, &p->out, 0);
    uv_pipe_init(loop, &p->err, 0);
    uv_timer_init(loop, &p->timer);
    p->out.data = p->err.data = p->timer.data = p->proc.data = p;
    uv_stdio_container_t io[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->err},
    };
    uv_process_options_t o = {.exit_cb = on_proc_exit, .file = argv[0], .args = (char **)argv, .stdio_count = 3,
                              .stdio = io};
    int rc = uv_spawn(loop, &p->proc, &o);
    if (rc != 0) { /* the pipes and the timer are the loop's until closed: close them, free after */
        p->closing = 1;
        p->open_handles = 4;
        uv_close((uv_handle_t *)&p->out, on_closed);
        uv_close((uv_handle_t *)&p->err, on_closed);
        uv_close((uv_handle_t *)&p->timer, on_closed);
        uv_close((uv_handle_t *)&p->proc, on_closed); /* uv_spawn initialised it even when it failed */
        return rc;
    }
    p->open_handles = 4;
    uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read);
    uv_timer_start(&p->timer, on_timeout, (uint64_t)(timeout_s * 1000), 0);
    if (out) *out = p;
    return 0;
}
