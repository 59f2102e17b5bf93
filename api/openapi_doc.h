/* api/openapi_doc.h — docs/openapi.yaml as bytes in the binary, served at GET /v1/openapi.yaml, so the
 * daemon has it wherever it runs from. The definitions are generated at build time (scripts/embed.sh,
 * a Makefile rule writes $(O)/gen/api/openapi_doc.c). Constant: any thread. */
#ifndef API_OPENAPI_DOC_H
#define API_OPENAPI_DOC_H
#include <stddef.h>

extern const unsigned char api_openapi_yaml[]; /* not NUL-terminated */
extern const size_t api_openapi_yaml_len;

#endif
