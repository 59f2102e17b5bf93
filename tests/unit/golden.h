/* tests/unit/golden.h — helpers shared by the tests that compare with PyTorch fixtures
 * (tests/golden/ generators): the deterministic weight formula both sides compute, fixture access and a
 * tolerance check that reports the worst element. Header-only (static) so each test stays one file. */
#ifndef CT_TEST_GOLDEN_H
#define CT_TEST_GOLDEN_H
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "trainer/model.h"
#include "trainer/safetensors.h"

#ifndef FIXTURE_DIR
#define FIXTURE_DIR "tests/fixtures"
#endif

/* model_twin.det_uniform: splitmix64 of (stream << 32) + i, mapped to [-1, 1) in double. */
static inline double golden_uniform(uint64_t stream, uint64_t i)
{
    uint64_t z = (stream << 32) + i + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

/* model_twin.det_fill over the MODEL_PARAM tensors in table order (= named_parameters order). */
static inline void golden_fill(model *m)
{
    int k = 0;
    for (int i = 0; i < model_num_tensors(m); i++) {
        model_tensor *t = model_tensor_at(m, i);
        if (t->kind != MODEL_PARAM) continue;
        const char *dot = strrchr(t->name, '.');
        for (size_t j = 0; j < t->numel; j++) {
            double v = golden_uniform((uint64_t)k, j);
            if (t->ndim == 4)
                v = sqrt(6.0 / ((double)t->shape[1] * t->shape[2] * t->shape[3])) * v;
            else if (!strcmp(dot, ".weight"))
                v = 1.0 + 0.2 * v;
            else
                v = 0.1 * v;
            t->data[j] = (float)v;
        }
        k++;
    }
}

/* A float32 tensor of the fixture with the expected element count (fails the test otherwise). */
static inline const float *golden_f32(const st_file *f, const char *name, size_t numel)
{
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != ST_F32 || st_numel(t) != numel) {
        fprintf(stderr, "fixture tensor %s: %s\n", name, t ? "wrong dtype or size" : "missing");
        return NULL;
    }
    return t->data;
}

/* Count of elements with |got - want| > atol * max(1, max|want|) + rtol * |want| + slack; prints the worst.
 * OUT (each may be NULL): *scale_out = max(1, max|want|), *maxerr_out = max |got - want|,
 * *worst_out = the worst |got - want| / tolerance. */
static inline size_t golden_mismatches_stats(const char *what, const float *got, const float *want, size_t n,
                                             double rtol, double atol, double slack, double *scale_out,
                                             double *maxerr_out, double *worst_out)
{
    double scale = 1.0, worst = -1.0, maxerr = 0.0;
    size_t bad = 0, wi = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]), tol = atol * scale + rtol * fabs(want[i]) + slack;
        maxerr = fmax(maxerr, e);
        if (!(e <= tol)) bad++;
        if (!(e / tol <= worst)) worst = e / tol, wi = i;
    }
    if (bad)
        fprintf(stderr, "%s: %zu of %zu outside tolerance; worst at %zu: got %.8g want %.8g\n", what, bad, n, wi,
                (double)got[wi], (double)want[wi]);
    if (scale_out) *scale_out = scale;
    if (maxerr_out) *maxerr_out = maxerr;
    if (worst_out) *worst_out = worst < 0.0 ? 0.0 : worst;
    return bad;
}

/* golden_mismatches_stats without the statistics. */
static inline size_t golden_mismatches(const char *what, const float *got, const float *want, size_t n,
                                       double rtol, double atol, double slack)
{
    return golden_mismatches_stats(what, got, want, n, rtol, atol, slack, NULL, NULL, NULL);
}

#endif
