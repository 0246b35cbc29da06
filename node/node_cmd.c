/* rdmesh node and rdmesh check: run one node of a chain (static, or as a rack node under
 * the orchestrator), or validate a chain config. */
#include "node/commands.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/agent.h"
#include "node/config.h"
#include "lib/certs.h"
#include "node/metrics.h"
#include "node/node.h"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: rdmesh node --config CHAIN.yaml --name NODE [--certs DIR] [--stats FILE]\n"
	    "                   [--drain-ms MS] [--metrics IP:PORT "
	    "[--metrics-remote|--metrics-tls]]\n"
	    "       rdmesh node --orch IP:PORT --name NODE [--certs DIR] [--dir DIR]\n"
	    "                   [--drain-ms MS] [--metrics IP:PORT "
	    "[--metrics-remote|--metrics-tls]]\n"
	    "                   [--join TOKEN_FILE --stage STAGE [--ca CA.pem] [--data IP|IFACE]\n"
	    "                    [--rdma-device DEV]]   a pod: joins with a token, then runs\n"
	    "                   one replica of STAGE (README: pods)\n"
	    "       rdmesh check CHAIN.yaml\n"
	    "(rdmesh help lists every command)\n");
}

/* Signals are taken synchronously by the main thread (sigtimedwait); the threads it
 * starts inherit the mask and never see them. A closed peer is an error, not SIGPIPE. */
static void take_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int rdm_cmd_node(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"name", required_argument, NULL, 'n'},
	    {"stats", required_argument, NULL, 's'},
	    {"drain-ms", required_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {"metrics", required_argument, NULL, 'm'},
	    {"orch", required_argument, NULL, 'o'},
	    {"certs", required_argument, NULL, 'C'},
	    {"dir", required_argument, NULL, 'D'},
	    {"metrics-remote", no_argument, NULL, 'R'},
	    {"metrics-tls", no_argument, NULL, 'T'},
	    {"join", required_argument, NULL, 'J'},
	    {"stage", required_argument, NULL, 'S'},
	    {"ca", required_argument, NULL, 'A'},
	    {"data", required_argument, NULL, 'a'},
	    {"rdma-device", required_argument, NULL, 'r'},
	    {NULL, 0, NULL, 0},
	};
	const char *config = NULL, *name = NULL, *stats = NULL, *metrics_at = NULL;
	const char *orch = NULL, *certs = NULL, *dir = NULL;
	const char *join = NULL, *stage = NULL, *join_ca = NULL, *data = NULL, *rdma_device = NULL;
	char dirbuf[RDM_NODE_NAME_MAX + 16];
	struct rdm_metrics *metrics = NULL;
	int drain_ms = 2000, c, rc, remote = 0, mtls = 0;
	struct rdm_chain_conf chain;
	struct rdm_node *node;
	char err[512];

	while ((c = getopt_long(argc, argv, "c:n:s:d:m:o:C:D:RTJ:S:A:a:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			orch = optarg;
			break;
		case 'C':
			certs = optarg;
			break;
		case 'D':
			dir = optarg;
			break;
		case 'J':
			join = optarg;
			break;
		case 'S':
			stage = optarg;
			break;
		case 'A':
			join_ca = optarg;
			break;
		case 'a':
			data = optarg;
			break;
		case 'r':
			rdma_device = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 's':
			stats = optarg;
			break;
		case 'd':
			drain_ms = atoi(optarg);
			break;
		case 'm':
			metrics_at = optarg;
			break;
		case 'R':
			remote = 1;
			break;
		case 'T':
			mtls = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (metrics_at && rdm_metrics_addr_ok(metrics_at, remote || mtls, err, sizeof(err)) < 0) {
		fprintf(stderr, "rdmesh: %s\n", err);
		return 2;
	}
	if (orch) {
		struct rdm_agent_opts ao = {.orch = orch,
					    .name = name,
					    .certs = certs ? certs : "certs",
					    .drain_ms = drain_ms,
					    .metrics = metrics_at,
					    .metrics_tls = mtls,
					    .join = join,
					    .stage = stage,
					    .ca = join_ca,
					    .data = data,
					    .rdma_device = rdma_device};

		if (!join != !stage) {
			fprintf(stderr, "rdmesh: node: --join and --stage go together (a pod)\n");
			return 2;
		}
		if (!name || config || stats || drain_ms < 0) {
			fprintf(stderr, "rdmesh: node --orch takes --name, and --certs, --dir, "
					"--drain-ms, --metrics; the chain comes from the "
					"orchestrator\n");
			return 2;
		}
		if (!dir) {
			snprintf(dirbuf, sizeof(dirbuf), "rdmesh-%s", name);
			dir = dirbuf;
		}
		ao.dir = dir;
		take_signals();
		return rdm_agent_run(&ao);
	}
	if (join || stage || join_ca || data || rdma_device) {
		fprintf(stderr, "rdmesh: node: --join, --stage, --ca, --data and --rdma-device "
				"are for a pod (with --orch)\n");
		return 2;
	}
	if (!config || !name || drain_ms < 0) {
		usage(stderr);
		return 2;
	}
	if (rdm_chain_load(config, &chain, err, sizeof(err)) < 0) {
		fprintf(stderr, "rdmesh: %s\n", err);
		return 1;
	}
	if (certs && rdm_chain_use_certs(&chain, certs) < 0) {
		fprintf(stderr, "rdmesh: out of memory\n");
		rdm_chain_free(&chain);
		return 1;
	}
	take_signals();

	node = rdm_node_new(&chain, name, err, sizeof(err));
	if (!node) {
		fprintf(stderr, "rdmesh: %s\n", err);
		rdm_chain_free(&chain);
		return 1;
	}
	/* --metrics: started once the signals are blocked (its thread inherits the mask).
	 * Stopped as soon as the run ends: rdm_node_report is not reentrant, and the
	 * summary and --stats below report from this thread. */
	if (metrics_at) {
		const struct rdm_node_conf *nc = rdm_chain_node(&chain, name);
		char ca[4096], cert[4096], key[4096];
		struct rdm_metrics_tls t = {ca, cert, key};

		if (mtls && !chain.transport.certs) {
			fprintf(stderr, "rdmesh: --metrics-tls needs the rack's certificates "
					"(transport.certs or --certs DIR)\n");
			rdm_node_free(node);
			rdm_chain_free(&chain);
			return 2;
		}
		if (mtls) {
			const char *d = chain.transport.certs;

			rdm_certs_path(ca, sizeof(ca), d, "ca", ".pem", NULL, 0);
			rdm_certs_path(cert, sizeof(cert), d, nc->identity, ".pem", NULL, 0);
			rdm_certs_path(key, sizeof(key), d, nc->identity, ".key", NULL, 0);
		}
		metrics = rdm_metrics_start_tls(metrics_at, rdm_metrics_node_report, node,
						mtls ? &t : NULL, err, sizeof(err));
		if (!metrics) {
			fprintf(stderr, "rdmesh: %s\n", err);
			rdm_node_free(node);
			rdm_chain_free(&chain);
			return 1;
		}
		fprintf(stderr, "rdmesh: %s: metrics on %s://%s/metrics (port %d)\n", name,
			mtls ? "https" : "http", metrics_at, rdm_metrics_port(metrics));
	}
	rc = rdm_node_run(node, drain_ms);
	rdm_metrics_stop(metrics);
	rdm_node_summary(node, stderr);
	if (stats) {
		FILE *f = fopen(stats, "w");

		if (!f) {
			fprintf(stderr, "rdmesh: %s: %s\n", stats, strerror(errno));
			rc = -EIO;
		} else {
			rdm_node_report(node, f);
			fclose(f);
		}
	}
	rdm_node_free(node);
	rdm_chain_free(&chain);
	return rc < 0 ? 1 : 0;
}

int rdm_cmd_check(int argc, char **argv)
{
	struct rdm_chain_conf chain;
	char err[512];

	if (argc != 2) {
		usage(stderr);
		return 2;
	}
	if (rdm_chain_load(argv[1], &chain, err, sizeof(err)) < 0) {
		fprintf(stderr, "rdmesh: %s\n", err);
		return 1;
	}
	if (rdm_chain_check_stages(&chain, err, sizeof(err)) < 0) {
		fprintf(stderr, "rdmesh: %s\n", err);
		rdm_chain_free(&chain);
		return 1;
	}
	printf("%s: chain '%s' (spi %u), %d nodes\n", argv[1], chain.name, chain.spi,
	       chain.n_nodes);
	for (int i = 0; i < chain.n_nodes; i++) {
		const struct rdm_node_conf *n = &chain.nodes[i];

		printf("  %-12s id %-4u listen %-22s next %-10s stages", n->name, n->id,
		       n->has_listen ? n->listen.text : "-",
		       n->next >= 0 ? chain.nodes[n->next].name : "-");
		for (int s = 0; s < n->n_stages; s++)
			printf(" %s", n->stages[s].name);
		printf("%s%s\n", n->ingress.mode ? " [ingress]" : "",
		       n->egress.enabled ? " [egress]" : "");
	}
	rdm_chain_free(&chain);
	return 0;
}
