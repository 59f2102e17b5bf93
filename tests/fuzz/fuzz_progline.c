/* tests/fuzz/fuzz_progline.c — the progress-line reader (spec/progline.h) on any bytes, the way the
 * Slurm executor reads a job's progress file (a file on shared storage: anyone who can write there can
 * write anything). A line that parses must write back to a line that parses to the same record. */
#include "tests/fuzz/fuzz.h"
#include "spec/progline.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int same(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pl_record a, b;
    if (pl_parse((const char *)data, size, &a) != 0) return 0;
    char *line = NULL;
    switch (a.kind) {
    case PL_PROGRESS: line = pl_progress_line(&a.p); break;
    case PL_START: line = pl_start_line(a.resumed, a.p.step); break;
    case PL_SUMMARY: line = pl_summary_line(&a.res); break;
    case PL_ERROR: line = pl_error_line(a.rc, a.message); break;
    }
    if (!line) abort(); /* every parsed record has a line */
    if (pl_parse(line, strlen(line), &b) != 0 || b.kind != a.kind) abort();
    switch (a.kind) {
    case PL_PROGRESS:
        if (b.p.kind != a.p.kind || b.p.step != a.p.step || b.p.total_steps != a.p.total_steps ||
            b.p.epoch != a.p.epoch || b.p.epochs != a.p.epochs || !same(b.p.train_loss, a.p.train_loss) ||
            !same(b.p.valid_accuracy, a.p.valid_accuracy) || strcmp(b.path, a.path))
            abort();
        break;
    case PL_START: if (b.resumed != a.resumed || b.p.step != a.p.step) abort(); break;
    case PL_SUMMARY:
        if (b.res.steps_done != a.res.steps_done || b.res.stopped != a.res.stopped ||
            !same(b.res.final_valid_accuracy, a.res.final_valid_accuracy))
            abort();
        break;
    case PL_ERROR: if (b.rc != a.rc || strcmp(b.message, a.message)) abort(); break;
    }
    free(line);
    return 0;
}
