/* tests/fuzz/fuzz_http.c — any bytes as one HTTP request (request line, query, headers, body) to the
 * real api layer on a real service (tests/fuzz/server.c): routing, identity, JSON bodies and their
 * limits, every handler, the static files, event streams, the error table. Inputs that pipeline
 * several requests are fine: all of them are answered before the connection is closed. */
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_http(data, size);
    return 0;
}
