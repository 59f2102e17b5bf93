/* core/sched_policy.h — the scheduling policy, as pure functions over snapshots (no I/O, no clocks, no
 * globals), so it is tested by itself (tests/unit/test_sched.c). The core (core/schedule.c)
 * builds the snapshot on the loop thread and applies the decision.
 *
 * Policy:
 *  - Capacity: the threads of running jobs never exceed `cores`, and at most `workers` jobs run.
 *  - Within a user: highest priority first (0-9), a preempted job before the others, then oldest.
 *    Only a user's head job is a candidate (priority is the user's own ordering).
 *  - Across users (fair share): the head of the user with the fewest running threads, then the fewest
 *    recent starts (a decayed count), then higher priority, then the older job. Users at their
 *    running-jobs or threads quota are skipped.
 *  - No backfill: when the chosen head does not fit, nothing else starts (a 1-thread job would
 *    otherwise keep a 2-thread job waiting forever); instead preemption may make room.
 *  - Preemption (at most one at a time, only of jobs that ran `grace` seconds): the lowest-priority,
 *    latest-started running job of either the same user with a lower priority, or of a user above the
 *    fair share (cores / active users) while the waiting user is at or under it (or runs nothing). It
 *    is checkpointed and requeued at the front of its user's queue. Two users who both want every core
 *    therefore alternate every `grace` seconds instead of one waiting for the other's whole queue.
 *  - GPUs (when the config manages them: the local executor): a GPU job gets exactly one GPU of the
 *    daemon's set (`gpus`), "cuda" any free one (the lowest index), "cuda:N" that one; a GPU is free when
 *    no run (stopping ones included: they still hold it) has it. A job whose GPU is busy is passed over
 *    for this decision like a blocked one, so the user's next job and other users' jobs (CPU jobs too)
 *    may start beside it; it is never a reason to preempt. A GPU job still takes its threads.
 * Errors: none (a decision of -1 means "nothing to do"). */
#ifndef CT_SCHED_H
#define CT_SCHED_H

typedef struct sched_job {          /* a queued job */
    const char *id, *owner;         /* borrowed */
    int priority, threads, preempted;
    long long seq;
    int blocked;                    /* its previous worker is still stopping: cannot start yet */
    int device;                     /* SCHED_CPU, SCHED_GPU_ANY ("cuda") or N >= 0 ("cuda:N") */
} sched_job;

#define SCHED_CPU      (-1)
#define SCHED_GPU_ANY  (-2)
#define SCHED_GPU_BUSY (-3)         /* sched_gpu_for: its GPU (or every GPU of the set) is taken */
#define SCHED_GPU_NONE (-4)         /* sched_gpu_for: not in the daemon's set (check() refuses such jobs) */

typedef struct sched_run {          /* a running job */
    const char *id, *owner;         /* borrowed */
    int priority, threads;
    double started_at;              /* seconds, same clock as now */
    int stopping;                   /* asked to stop (pause, cancel, preemption): still holds its threads */
    int preempting;                 /* stopping because of a preemption */
    int gpu;                        /* the GPU it holds, -1 = none */
} sched_run;

typedef struct sched_quota {        /* per user; 0 = unlimited */
    int running_jobs, threads;
} sched_quota;

typedef struct sched_cfg {
    int cores, workers;
    int preemption;                 /* 0 = never preempt */
    int manage_gpus;                /* 0 = GPUs are not ours to hand out (Slurm's --gres): ignore devices */
    const int *gpus;                /* the daemon's GPUs (CUDA indices), borrowed */
    int ngpus;
    double grace;                   /* seconds a job runs before it may be preempted */
    /* per-user quota and recent-start score; ud is passed back */
    void (*quota)(void *ud, const char *owner, sched_quota *out);
    double (*recent)(void *ud, const char *owner);
    void *ud;
} sched_cfg;

typedef struct sched_decision {
    int start;                      /* index into jobs to start now, or -1 */
    int preempt;                    /* index into runs to checkpoint and requeue, or -1 */
    int waiting;                    /* index of the job chosen next when nothing can start (-1: none) */
    int gpu;                        /* with start: the GPU it gets (-1 = none: a CPU job, or unmanaged);
                                     * SCHED_GPU_NONE: its GPU is not in the set (the daemon restarted with
                                     * another --gpus): the core fails the job */
} sched_decision;

/* The GPU a job asking for device would get now: -1 (SCHED_CPU) for a CPU job or when GPUs are not
 * managed, the GPU's index, SCHED_GPU_BUSY or SCHED_GPU_NONE. */
int sched_gpu_for(const sched_cfg *c, int device, const sched_run *runs, int nr);

/* One decision. Call again after applying a start (the snapshot changed). */
void sched_pick(const sched_cfg *c, const sched_job *jobs, int nj, const sched_run *runs, int nr, double now,
                sched_decision *out);

/* The order the queue would start in if nothing else arrived: OUT pos[i] = 1-based position of jobs[i]
 * (0 for a job that can never start: more threads than the cores). With mean_duration > 0 also an
 * estimated start (seconds, same clock; 0 = unknown) from the running jobs' estimated finishes
 * (run_finish[k], 0 = unknown: now + mean_duration). */
void sched_order(const sched_cfg *c, const sched_job *jobs, int nj, const sched_run *runs, int nr,
                 const double *run_finish, double now, double mean_duration, int *pos, double *est_start);

#endif
