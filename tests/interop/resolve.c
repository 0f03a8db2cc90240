/*
 * The libc resolver as an application sees it: getaddrinfo(NAME, AF_UNSPEC, SOCK_STREAM),
 * the call behind nearly every "connect to host:port". Built twice by build.sh: against glibc
 * (dynamic) and against musl with musl-gcc -static (what an Alpine image runs).
 *
 * Output: one "ADDR <address>" line per result, in the order the library returns them (the
 * order an application tries them in), then exit 0; or "ERROR <gai_strerror text>" and exit 2.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
    struct addrinfo hints, *res, *ai;
    char text[INET6_ADDRSTRLEN];
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: %s NAME\n", argv[0]);
        return 64;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc != 0) {
        printf("ERROR %s\n", gai_strerror(rc));
        return 2;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        const void *addr = ai->ai_family == AF_INET6
            ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
            : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        if (inet_ntop(ai->ai_family, addr, text, sizeof text) != NULL)
            printf("ADDR %s\n", text);
    }
    freeaddrinfo(res);
    return 0;
}
