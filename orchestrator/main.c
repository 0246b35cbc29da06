/* rdmesh: one binary, several commands. This file only dispatches; it sits at the top
 * of the layers because its commands span them: node and check (node/), gen and bench
 * (node/), orch and ctl (orchestrator/). */
#include <stdio.h>
#include <string.h>

#include "node/commands.h"
#include "orchestrator/ctl.h"
#include "orchestrator/orch.h"

#define RDMESH_VERSION "0.1.0"

static void usage(FILE *out)
{
	fprintf(
	    out,
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
	    "  node --orch IP:PORT --name POD --join TOKEN_FILE --stage STAGE [--ca CA.pem]\n"
	    "       [--certs DIR] [--dir DIR] [--data IP|IFACE] [--rdma-device DEV]\n"
	    "                      a pod: joins with a token, gets its certificate from the\n"
	    "                      orchestrator, runs one replica of STAGE (README: pods)\n"
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
	    "  ctl token [--certs DIR] --stage STAGE [--ttl SECONDS] [--uses 1|0]\n"
	    "                      a join token for pods of STAGE, from DIR/ca.key\n"
	    "  version\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "node"))
		return rdm_cmd_node(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return rdm_cmd_check(argc - 1, argv + 1);
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
