/* orchreplay: plays an orchestrator that replays an old assignment, to show that a node
 * refuses it. Listens with the orchestrator's certificate, takes one node's hello, sends
 * it an assign with the given epoch (chain text from a file, e.g. one the node applied
 * before), and prints the node's answer.
 *
 *   orchreplay --listen IP:PORT --certs DIR --epoch N --chain FILE --replicas "ID ..."
 *              [--wait-ms MS]
 * Prints "hello: epoch E running [..]" and "applied: epoch N: RESULT"; exits 0 when the
 * node answered, 1 when it did not within --wait-ms (default 15000), 2 on bad usage. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/msg.h"
#include "orchestrator/orch.h"
#include "lib/tls.h"
#include "transport/loop.h"

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0;

	*len = 0;
	if (!f)
		return NULL;
	for (;;) {
		if (*len + 4096 > cap) {
			char *nb = realloc(buf, cap + 65536);

			if (!nb)
				break;
			buf = nb;
			cap += 65536;
		}
		size_t k = fread(buf + *len, 1, cap - *len, f);

		if (!k)
			break;
		*len += k;
	}
	fclose(f);
	return buf;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"certs", required_argument, NULL, 'c'},
	    {"epoch", required_argument, NULL, 'e'},
	    {"chain", required_argument, NULL, 'f'},
	    {"replicas", required_argument, NULL, 'r'},
	    {"wait-ms", required_argument, NULL, 'w'},
	    {NULL, 0, NULL, 0},
	};
	const char *listen_at = NULL, *certs = NULL, *chain = NULL, *reps = "";
	uint64_t epoch = 0, deadline;
	int wait_ms = 15000, c, lfd;
	char ca[4096], cert[4096], key[4096], err[512];
	struct rdm_tls_ctx *ctx;
	struct rdm_tls_conn *conn = NULL;
	struct rdm_msg m;
	size_t len;
	char *body;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen_at = optarg;
			break;
		case 'c':
			certs = optarg;
			break;
		case 'e':
			epoch = strtoull(optarg, NULL, 10);
			break;
		case 'f':
			chain = optarg;
			break;
		case 'r':
			reps = optarg;
			break;
		case 'w':
			wait_ms = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (!listen_at || !certs || !chain || !epoch) {
		fprintf(stderr,
			"usage: orchreplay --listen IP:PORT --certs DIR --epoch N --chain FILE "
			"--replicas IDS [--wait-ms MS]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	body = slurp(chain, &len);
	if (!body) {
		fprintf(stderr, "orchreplay: %s: %s\n", chain, strerror(errno));
		return 2;
	}
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	snprintf(cert, sizeof(cert), "%s/%s.pem", certs, RDM_ORCH_NAME);
	snprintf(key, sizeof(key), "%s/%s.key", certs, RDM_ORCH_NAME);
	ctx = rdm_tls_ctx_new(ca, cert, key, 1, err, sizeof(err));
	if (!ctx || (lfd = rdm_tls_listen(listen_at, err, sizeof(err))) < 0) {
		fprintf(stderr, "orchreplay: %s\n", err);
		return 2;
	}
	deadline = rdm_now_ns() + (uint64_t)wait_ms * 1000000ull;
	while (!conn && rdm_now_ns() < deadline)
		conn = rdm_tls_accept(ctx, lfd, 200, NULL, NULL, err, sizeof(err));
	if (!conn) {
		fprintf(stderr, "orchreplay: no node connected: %s\n", err);
		return 1;
	}
	if (rdm_msg_recv(conn, &m, wait_ms, err, sizeof(err)) < 0 || strcmp(m.type, "hello")) {
		fprintf(stderr, "orchreplay: no hello: %s\n", err);
		return 1;
	}
	printf("hello: %s epoch %" PRIu64 " running [%s]\n", rdm_tls_peer_name(conn), m.epoch,
	       rdm_msg_get(&m, "running") ? rdm_msg_get(&m, "running") : "");
	rdm_msg_free(&m);
	{
		const char *kv[] = {"node", rdm_tls_peer_name(conn), "replicas", reps, NULL};

		if (rdm_msg_send(conn, "assign", epoch, kv, body, len, 5000) < 0) {
			fprintf(stderr, "orchreplay: assign not sent\n");
			return 1;
		}
	}
	for (;;) {
		if (rdm_msg_recv(conn, &m, wait_ms, err, sizeof(err)) < 0) {
			fprintf(stderr, "orchreplay: no answer: %s\n", err);
			return 1;
		}
		if (!strcmp(m.type, "applied"))
			break;
		rdm_msg_free(&m); /* heartbeats */
	}
	printf("applied: epoch %" PRIu64 ": %s\n", m.epoch,
	       rdm_msg_get(&m, "result") ? rdm_msg_get(&m, "result") : "(none)");
	rdm_msg_free(&m);
	rdm_tls_close(conn);
	close(lfd);
	rdm_tls_ctx_free(ctx);
	free(body);
	return 0;
}
