/* trainer/safetensors.h — read and write the safetensors format (8-byte little-endian header
 * length, a JSON header of {name: {dtype, shape, data_offsets}} plus optional "__metadata__" of
 * string pairs, then the raw little-endian tensor bytes).
 * Reading validates everything (header size and JSON, dtypes, shapes, offsets inside the file,
 * no overlaps, no duplicates) and reports the file and the problem in err; never crashes on a
 * hostile file. Writing is atomic (temp file, fsync, rename, fsync of the directory).
 * Any thread; an st_file is owned by whoever opened it. Errors: negative return + err text. */
#ifndef CT_SAFETENSORS_H
#define CT_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_U8 };
#define ST_MAX_DIMS 8

typedef struct st_tensor {
    const char *name;          /* borrowed */
    enum st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;          /* borrowed, little-endian raw bytes */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file; /* opaque: the loaded file */

int  st_open(st_file **out, const char *path, char *err, size_t errlen);
void st_close(st_file *f);                      /* NULL-safe */
int  st_count(const st_file *f);
const st_tensor *st_get(const st_file *f, int i);            /* i in [0, st_count) */
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */
const char *st_metadata(const st_file *f, const char *key);   /* NULL if absent; borrowed */
size_t st_numel(const st_tensor *t);
/* Copy a tensor into float32 (converting F16/BF16/F64/I64/I32/U8). dst has st_numel(t) floats. */
void st_to_f32(float *dst, const st_tensor *t);

/* Write tensors (in the order given) and metadata pairs meta[0..2*nmeta) = key, value, ...
 * atomically to path. */
int st_save(const char *path, const st_tensor *tensors, int n, const char *const *meta, int nmeta,
            char *err, size_t errlen);

#endif
