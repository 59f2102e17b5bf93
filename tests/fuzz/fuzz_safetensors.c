/* tests/fuzz/fuzz_safetensors.c — the safetensors reader (trainer/safetensors.h) on any file: st_open
 * must refuse what it cannot read with a reason, and whatever it accepts must be usable: every tensor's
 * bytes inside the file, convertible to float32, found by name, metadata readable. The input is
 * written to a file because the reader takes a path (what the daemon and the trainer give it). */
#include "tests/fuzz/fuzz.h"
#include "trainer/safetensors.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/input.safetensors", fz_dir());
    fz_write(path, data, size);
    st_file *f;
    int rc = st_open(&f, path, err, sizeof err);
    if (rc < 0) {
        if (!err[0]) fz_die("safetensors: error %d without a reason", rc);
        return 0;
    }
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        size_t n = st_numel(t);
        if (st_find(f, t->name) == NULL) fz_die("safetensors: tensor '%s' not found by its name", t->name);
        if (n > size) fz_die("safetensors: tensor '%s' has %zu elements in a %zu-byte file", t->name, n, size);
        float *dst = malloc((n ? n : 1) * sizeof *dst);
        if (!dst) fz_die("out of memory");
        st_to_f32(dst, t);
        free(dst);
    }
    (void)st_metadata(f, "format");
    st_close(f);
    return 0;
}
