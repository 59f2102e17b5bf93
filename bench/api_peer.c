/* bench/api_peer.c — a do-nothing libmicrohttpd server, the yardstick of make bench-api.
 * usage: api_peer PORT
 * Answers every request with the same small JSON body (the size of /healthz's), keep-alive, from one
 * MHD thread on epoll: one thread, like the daemon's loop, so the ratio compares the request path and
 * not the number of cores. Listens on 127.0.0.1 only; runs until killed. Errors go to stderr, exit 1. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char body[] = "{\"status\":\"ok\",\"version\":\"0.0.0\",\"uptime_seconds\":1}";

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct MHD_Response *r = cls;
    (void)url; (void)method; (void)version; (void)upload_data;
    if (!*con_cls) { /* first call: headers only */
        *con_cls = r;
        return MHD_YES;
    }
    *upload_data_size = 0;
    return MHD_queue_response(conn, MHD_HTTP_OK, r);
}

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: api_peer PORT\n"); return 2; }
    int port = atoi(argv[1]);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r || MHD_add_response_header(r, "Content-Type", "application/json") != MHD_YES) {
        fprintf(stderr, "api_peer: cannot make the response\n");
        return 1;
    }
    sigset_t set; /* blocked before MHD's thread starts, so it inherits the mask and sigwait gets them */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL,
                                            NULL, answer, r, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60, MHD_OPTION_END);
    if (!d) { fprintf(stderr, "api_peer: cannot listen on 127.0.0.1:%d\n", port); return 1; }
    int sig;
    sigwait(&set, &sig); /* SIGTERM or SIGINT: stop cleanly */
    MHD_stop_daemon(d);
    MHD_destroy_response(r);
    return 0;
}
