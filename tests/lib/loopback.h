/* What the transport tests on loopback share: a free port, its address, and running the
 * test's event loop until a condition holds (tests/lib/runloop.h). Include after
 * criterion.h. */
#ifndef RDM_TESTS_LOOPBACK_H
#define RDM_TESTS_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/clock.h"
#include "tests/lib/runloop.h"
#include "transport/loop.h"

/* 127.0.0.1:port. */
static inline struct rdm_addr addr_of(int port)
{
	struct rdm_addr a;
	char text[32];

	snprintf(text, sizeof(text), "127.0.0.1:%d", port);
	cr_assert_eq(rdm_addr_parse(&a, text), 0);
	return a;
}

/* A port nothing listens on now: bound, read back, closed. */
static inline int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(fd, (struct sockaddr *)&sa, &l);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

#endif
