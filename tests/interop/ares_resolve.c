/*
 * c-ares as its users call it. Built twice by build.sh: against Debian's libc-ares (1.18) and
 * against c-ares 1.15.0 compiled from source (the version behind the PgBouncer incident).
 *
 *   ares_resolve gai  NAME   ares_getaddrinfo(AF_UNSPEC)        (c-ares >= 1.16 only)
 *   ares_resolve ghbn NAME   ares_gethostbyname(AF_UNSPEC)      (PgBouncer's call)
 *
 * The channel is set up from /etc/resolv.conf (ares_init), as applications do. Output: one
 * "ADDR <address>" line per result in library order and exit 0, or "ERROR <ares_strerror>"
 * and exit 2; "UNSUPPORTED" and exit 3 for gai on a c-ares without ares_getaddrinfo.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>

#include <ares.h>

static int done;
static int failed;

static void print_addr(int family, const void *addr)
{
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(family, addr, text, sizeof text) != NULL)
        printf("ADDR %s\n", text);
}

static void host_cb(void *arg, int status, int timeouts, struct hostent *host)
{
    char **p;
    (void)arg;
    (void)timeouts;
    done = 1;
    if (status != ARES_SUCCESS || host == NULL) {
        printf("ERROR %s\n", ares_strerror(status));
        failed = 1;
        return;
    }
    for (p = host->h_addr_list; *p != NULL; p++)
        print_addr(host->h_addrtype, *p);
}

#if ARES_VERSION >= 0x011000
static void addrinfo_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct ares_addrinfo_node *n;
    (void)arg;
    (void)timeouts;
    done = 1;
    if (status != ARES_SUCCESS || res == NULL) {
        printf("ERROR %s\n", ares_strerror(status));
        failed = 1;
        return;
    }
    for (n = res->nodes; n != NULL; n = n->ai_next) {
        if (n->ai_family == AF_INET6)
            print_addr(AF_INET6, &((struct sockaddr_in6 *)n->ai_addr)->sin6_addr);
        else
            print_addr(AF_INET, &((struct sockaddr_in *)n->ai_addr)->sin_addr);
    }
    ares_freeaddrinfo(res);
}
#endif

int main(int argc, char **argv)
{
    ares_channel channel;
    int rc;

    if (argc != 3 || (strcmp(argv[1], "gai") != 0 && strcmp(argv[1], "ghbn") != 0)) {
        fprintf(stderr, "usage: %s gai|ghbn NAME\n", argv[0]);
        return 64;
    }
    if (strcmp(argv[1], "gai") == 0) {
#if ARES_VERSION < 0x011000
        printf("UNSUPPORTED ares_getaddrinfo needs c-ares 1.16, this is %s\n", ARES_VERSION_STR);
        return 3;
#endif
    }
    rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc == ARES_SUCCESS)
        rc = ares_init(&channel);
    if (rc != ARES_SUCCESS) {
        printf("ERROR init: %s\n", ares_strerror(rc));
        return 2;
    }
    if (strcmp(argv[1], "ghbn") == 0) {
        ares_gethostbyname(channel, argv[2], AF_UNSPEC, host_cb, NULL);
    } else {
#if ARES_VERSION >= 0x011000
        struct ares_addrinfo_hints hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        ares_getaddrinfo(channel, argv[2], NULL, &hints, addrinfo_cb, NULL);
#endif
    }
    while (!done) {
        fd_set readers, writers;
        struct timeval tv, *tvp;
        int nfds;
        FD_ZERO(&readers);
        FD_ZERO(&writers);
        nfds = ares_fds(channel, &readers, &writers);
        if (nfds == 0)
            break;
        tvp = ares_timeout(channel, NULL, &tv);
        select(nfds, &readers, &writers, NULL, tvp);
        ares_process(channel, &readers, &writers);
    }
    ares_destroy(channel);
    ares_library_cleanup();
    if (!done) {
        printf("ERROR no callback\n");
        return 2;
    }
    return failed ? 2 : 0;
}
