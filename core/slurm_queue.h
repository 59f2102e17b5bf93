/* core/slurm_queue.h — what squeue says, read (the Slurm executor's one view of the cluster): a row of
 * `squeue --noheader --format=%i|%j|%T|%r|%N|%S`, which of Slurm's job states wait and which run, and
 * its start-time column. Pure functions, any thread. Slurm's output is input: rows are bounded, text
 * fields are made valid UTF-8, a malformed row is refused. */
#ifndef CT_SLURM_QUEUE_H
#define CT_SLURM_QUEUE_H

#define SQ_FORMAT "%i|%j|%T|%r|%N|%S"

typedef struct sq_row { char id[32], name[96], state[32], reason[128], node[128], start[32]; } sq_row;

/* Parse one row (line is modified). 0, or -1 when it has fewer than 6 fields. */
int sq_parse_row(char *line, sq_row *out);
/* In Slurm's queue, not started or started again later: PENDING, REQUEUED, PREEMPTED (with --requeue)... */
int sq_waiting(const char *state);
/* On a node: CONFIGURING, RUNNING, COMPLETING, SUSPENDED...; neither = ended (COMPLETED, FAILED, ...). */
int sq_running(const char *state);
/* %S ("2026-12-02T05:00:00" local time, "N/A", "Unknown") as unix seconds; 0 = unknown. */
long long sq_time(const char *s);

#endif
