/* tests/fuzz/fuzz_multipart.c — any bytes as the body of POST /v1/files (multipart/form-data with the
 * boundary "fuzzb"), through the real api layer on a real service (tests/fuzz/server.c): MHD's post
 * processor, the upload's temp files and size limit, the "purpose" and "file" parts (two: an IDX pair),
 * then the check off the loop: an archive extracted by libarchive (core/unpack.c), every image decoded,
 * or a file the trainer reads, and the file's record. The request line and
 * headers are fixed so that every input is an upload. */
#include "tests/fuzz/fuzz.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char head[256];
    int h = snprintf(head, sizeof head,
                     "POST /v1/files HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
                     "Content-Type: multipart/form-data; boundary=fuzzb\r\nContent-Length: %zu\r\n\r\n", size);
    uint8_t *req = malloc((size_t)h + size);
    if (!req) fz_die("out of memory");
    memcpy(req, head, (size_t)h);
    if (size) memcpy(req + h, data, size);
    fz_http(req, (size_t)h + size);
    free(req);
    return 0;
}
