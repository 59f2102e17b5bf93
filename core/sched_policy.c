/* core/sched_policy.c — the scheduling policy (see sched.h for the rules). Pure functions over a snapshot;
 * called on the loop thread by core/schedule.c and by tests/unit/test_sched.c. O(jobs x users) per
 * decision, which is nothing next to a training step. */
#include "core/sched_policy.h"
#include <stdlib.h>
#include <string.h>

typedef struct user {
    const char *name;
    int threads, jobs;              /* running */
    int head;                       /* best startable queued job, -1 = none */
    double recent;
    sched_quota q;
} user;

/* a before b within one user's queue */
static int before(const sched_job *a, const sched_job *b)
{
    if (a->preempted != b->preempted) return a->preempted > b->preempted;
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->seq < b->seq;
}

static int find_user(user *u, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(u[i].name, name)) return i;
    return -1;
}

/* Fills u (room for nj + nr users) and returns how many. heads skip blocked jobs unless ignore_blocked. */
static int users_of(const sched_cfg *c, const sched_job *jobs, int nj, const sched_run *runs, int nr, user *u,
                    const char *removed)
{
    int n = 0;
    for (int k = 0; k < nr; k++) {
        int i = find_user(u, n, runs[k].owner);
        if (i < 0) { i = n++; memset(&u[i], 0, sizeof u[i]); u[i].name = runs[k].owner; u[i].head = -1; }
        u[i].threads += runs[k].threads;
        u[i].jobs++;
    }
    for (int j = 0; j < nj; j++) {
        int i = find_user(u, n, jobs[j].owner);
        if (i < 0) { i = n++; memset(&u[i], 0, sizeof u[i]); u[i].name = jobs[j].owner; u[i].head = -1; }
        if (removed ? removed[j] : jobs[j].blocked) continue;
        if (u[i].head < 0 || before(&jobs[j], &jobs[u[i].head])) u[i].head = j;
    }
    for (int i = 0; i < n; i++) {
        memset(&u[i].q, 0, sizeof u[i].q);
        if (c->quota) c->quota(c->ud, u[i].name, &u[i].q);
        u[i].recent = c->recent ? c->recent(c->ud, u[i].name) : 0;
    }
    return n;
}

/* user a's head before user b's head (fair share) */
static int ahead(const user *a, const user *b, const sched_job *jobs)
{
    if (a->threads != b->threads) return a->threads < b->threads;
    if (a->recent != b->recent) return a->recent < b->recent;
    const sched_job *x = &jobs[a->head], *y = &jobs[b->head];
    if (x->priority != y->priority) return x->priority > y->priority;
    return x->seq < y->seq;
}

static int eligible(const user *u, const sched_job *jobs)
{
    if (u->head < 0) return 0;
    if (u->q.running_jobs > 0 && u->jobs >= u->q.running_jobs) return 0;
    if (u->q.threads > 0 && u->threads + jobs[u->head].threads > u->q.threads) return 0;
    return 1;
}

static int gpu_busy(int g, const sched_run *runs, int nr)
{
    for (int k = 0; k < nr; k++)
        if (runs[k].gpu == g) return 1;
    return 0;
}

int sched_gpu_for(const sched_cfg *c, int device, const sched_run *runs, int nr)
{
    if (!c->manage_gpus || device == SCHED_CPU) return SCHED_CPU;
    int known = 0;
    for (int i = 0; i < c->ngpus; i++) {
        int g = c->gpus[i];
        if (device != SCHED_GPU_ANY && device != g) continue;
        known = 1;
        if (!gpu_busy(g, runs, nr)) return g;
    }
    return known ? SCHED_GPU_BUSY : SCHED_GPU_NONE;
}

void sched_pick(const sched_cfg *c, const sched_job *jobs, int nj, const sched_run *runs, int nr, double now,
                sched_decision *out)
{
    out->start = out->preempt = out->waiting = -1;
    out->gpu = -1;
    if (nj == 0) return;
    user *u = calloc((size_t)(nj + nr), sizeof *u);
    char *skip = calloc((size_t)nj, 1);
    int *gpu = calloc((size_t)nj, sizeof *gpu);
    if (!u || !skip || !gpu) goto done;
    /* a job that cannot start whatever else happens now (a worker still stopping, its GPU taken) is no
     * head; one whose GPU is not in the set at all starts, so that the core fails it with the reason */
    for (int j = 0; j < nj; j++) {
        gpu[j] = sched_gpu_for(c, jobs[j].device, runs, nr);
        skip[j] = jobs[j].blocked || gpu[j] == SCHED_GPU_BUSY;
    }
    int n = users_of(c, jobs, nj, runs, nr, u, skip);
    int used = 0, preempting = 0;
    for (int k = 0; k < nr; k++) { used += runs[k].threads; preempting |= runs[k].preempting; }
    int top = -1;
    for (int i = 0; i < n; i++)
        if (eligible(&u[i], jobs) && (top < 0 || ahead(&u[i], &u[top], jobs))) top = i;
    if (top < 0) goto done;
    const sched_job *J = &jobs[u[top].head];
    if (J->threads <= c->cores - used && nr < c->workers) {
        out->start = u[top].head;
        out->gpu = gpu[out->start];
        goto done;
    }
    out->waiting = u[top].head;
    if (!c->preemption || preempting || J->threads > c->cores) goto done;
    int active = 0;
    for (int i = 0; i < n; i++) active += u[i].jobs > 0 || u[i].head >= 0;
    double share = (double)c->cores / (active > 0 ? active : 1);
    int under = u[top].threads == 0 || u[top].threads + J->threads <= share;
    int best = -1;
    for (int k = 0; k < nr; k++) {
        const sched_run *r = &runs[k];
        if (r->stopping || now - r->started_at < c->grace) continue;
        if (c->cores - used + r->threads < J->threads) continue; /* would not make enough room */
        int same = !strcmp(r->owner, u[top].name);
        int ok = same ? r->priority < J->priority
                      : under && u[find_user(u, n, r->owner)].threads > share;
        if (!ok) continue;
        if (best < 0 || r->priority < runs[best].priority ||
            (r->priority == runs[best].priority && r->started_at > runs[best].started_at))
            best = k;
    }
    out->preempt = best;
done:
    free(u);
    free(skip);
    free(gpu);
}

void sched_order(const sched_cfg *c, const sched_job *jobs, int nj, const sched_run *runs, int nr,
                 const double *run_finish, double now, double mean_duration, int *pos, double *est_start)
{
    for (int j = 0; j < nj; j++) { pos[j] = 0; if (est_start) est_start[j] = 0; }
    if (nj == 0) return;
    user *u = calloc((size_t)(nj + nr), sizeof *u);
    char *removed = calloc((size_t)nj, 1);
    int cap = nj + nr;
    double *fin = calloc((size_t)cap, sizeof *fin);   /* simulated slots: finish time and threads */
    int *fth = calloc((size_t)cap, sizeof *fth);
    if (!u || !removed || !fin || !fth) goto done;
    int nf = 0, used = 0;
    for (int k = 0; k < nr; k++) {
        fin[nf] = run_finish && run_finish[k] > 0 ? run_finish[k] : now + mean_duration;
        fth[nf++] = runs[k].threads;
        used += runs[k].threads;
    }
    int running = nr, known = mean_duration > 0;
    double cur = now;
    for (int p = 1; p <= nj; p++) {
        int n = users_of(c, jobs, nj, runs, nr, u, removed);
        /* add what the simulation has started so far */
        for (int j = 0; j < nj; j++)
            if (removed[j] == 2) {
                int i = find_user(u, n, jobs[j].owner); /* always found: users_of registers every owner */
                u[i].threads += jobs[j].threads;
                u[i].recent += 1;
            }
        int top = -1;
        for (int i = 0; i < n; i++)
            if (u[i].head >= 0 && (top < 0 || ahead(&u[i], &u[top], jobs))) top = i;
        if (top < 0) break;
        int j = u[top].head;
        removed[j] = 2;
        if (jobs[j].threads > c->cores) { removed[j] = 1; p--; continue; } /* never starts: position 0 */
        pos[j] = p;
        if (!est_start || !known) continue;
        while ((c->cores - used < jobs[j].threads || running >= c->workers) && nf > 0) {
            int e = 0;
            for (int k = 1; k < nf; k++) if (fin[k] < fin[e]) e = k;
            if (fin[e] > cur) cur = fin[e];
            used -= fth[e];
            running--;
            fin[e] = fin[nf - 1];
            fth[e] = fth[nf - 1];
            nf--;
        }
        est_start[j] = cur;
        fin[nf] = cur + mean_duration;
        fth[nf++] = jobs[j].threads;
        used += jobs[j].threads;
        running++;
    }
done:
    free(u); free(removed); free(fin); free(fth);
}
