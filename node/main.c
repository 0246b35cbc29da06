/* rdmesh: one binary, several commands. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/agent.h"
#include "node/commands.h"
#include "node/config.h"
#include "node/metrics.h"
#include "node/node.h"

#define RDMESH_VERSION "0.1.0"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: rdmesh COMMAND [ARGS]\n"
		"  node --config CHAIN.yaml --name NODE [--stats FILE] [--drain-ms MS]\n"
		"       [--metrics IP:PORT]\n"
		"                      run one node of a chain until done or SIGTERM;\n"
		"                      --metrics serves Prometheus text on http://IP:PORT/metrics\n"
		"  node --orch IP:PORT --name NODE [--certs DIR] [--dir DIR] [--drain-ms MS]\n"
		"       [--metrics IP:PORT]\n"
		"                      a rack node run by the orchestrator: runs the replicas it is\n"
		"                      assigned (certs: DIR/ca.pem, DIR/NODE.pem, DIR/NODE.key;\n"
		"                      default certs/; its files go in --dir, default rdmesh-NODE)\n"
		"                      --metrics serves all its replicas' metrics in one scrape\n"
		"  orch --rack RACK.yaml --chain CHAIN.yaml [--certs DIR] [--state FILE] ...\n"
		"                      the orchestrator (rdmesh orch --help)\n"
		"  check CHAIN.yaml    validate a chain config and print its nodes\n"
		"  gen --flows N --packets N --out FILE.pcap [--seed S] [--rate PPS]\n"
		"                      write generated traffic to a capture\n"
		"  bench [--quick] [--out DIR] [--rdma]\n"
		"                      one hop on each path (native, overlay, sidecar, rdma) side by\n"
		"                      side: latency, throughput, CPU; CSV, markdown and PNG in DIR\n"
		"  ctl certs --out DIR [--days N] NAME...\n"
		"                      make the rack's CA and a certificate for each NAME\n"
		"  version\n");
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

static int cmd_node(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"name", required_argument, NULL, 'n'},
		{"stats", required_argument, NULL, 's'},  {"drain-ms", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},	  {"metrics", required_argument, NULL, 'm'},
		{"orch", required_argument, NULL, 'o'},	  {"certs", required_argument, NULL, 'C'},
		{"dir", required_argument, NULL, 'D'},	  {NULL, 0, NULL, 0},
	};
	const char *config = NULL, *name = NULL, *stats = NULL, *metrics_at = NULL;
	const char *orch = NULL, *certs = "certs", *dir = NULL;
	char dirbuf[RDM_NODE_NAME_MAX + 16];
	struct rdm_metrics *metrics = NULL;
	int drain_ms = 2000, c, rc;
	struct rdm_chain_conf chain;
	struct rdm_node *node;
	char err[512];

	while ((c = getopt_long(argc, argv, "c:n:s:d:m:o:C:D:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': orch = optarg; break;
		case 'C': certs = optarg; break;
		case 'D': dir = optarg; break;
		case 'c': config = optarg; break;
		case 'n': name = optarg; break;
		case 's': stats = optarg; break;
		case 'd': drain_ms = atoi(optarg); break;
		case 'm': metrics_at = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (orch) {
		struct rdm_agent_opts ao = {.orch = orch, .name = name, .certs = certs,
					    .drain_ms = drain_ms, .metrics = metrics_at};

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
	if (!config || !name || drain_ms < 0) {
		usage(stderr);
		return 2;
	}
	if (rdm_chain_load(config, &chain, err, sizeof(err)) < 0) {
		fprintf(stderr, "rdmesh: %s\n", err);
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
		metrics = rdm_metrics_start(metrics_at, node, err, sizeof(err));
		if (!metrics) {
			fprintf(stderr, "rdmesh: %s\n", err);
			rdm_node_free(node);
			rdm_chain_free(&chain);
			return 1;
		}
		fprintf(stderr, "rdmesh: %s: metrics on http://%s/metrics (port %d)\n", name,
			metrics_at, rdm_metrics_port(metrics));
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

static int cmd_check(int argc, char **argv)
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

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "node"))
		return cmd_node(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "gen"))
		return rdm_cmd_gen(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench"))
		return rdm_cmd_bench(argc - 1, argv + 1);
	if (!strcmp(argv[1], "orch"))
		return rdm_cmd_orch(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ctl"))
		return rdm_cmd_ctl(argc - 1, argv + 1);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("rdmesh %s\n", RDMESH_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "rdmesh: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
