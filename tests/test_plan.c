/* The orchestrator's inputs and placement: rack.yaml (orchestrator/rack.c), chain.yaml,
 * plans and their rendering as a static chain (orchestrator/plan.c). Files are written to
 * a fresh temporary directory per test; the examples in configs/ are read from the
 * repository root, where the tests run. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"
#include "node/node.h"
#include "lib/yaml.h"
#include "orchestrator/plan.h"
#include "orchestrator/rack.h"

static char err[1024];
static char dir[64];
static char paths[16][128];
static int n_paths;

static void mkdir_tmp(void)
{
	strcpy(dir, "/tmp/rdm-test-plan-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	n_paths = 0;
}

static void rm_tmp(void)
{
	for (int i = 0; i < n_paths; i++)
		unlink(paths[i]);
	rmdir(dir);
}

/* Writes text to DIR/name; returns the path (valid for the test). */
static const char *put(const char *name, const char *text)
{
	char want[128], *p = NULL;
	FILE *f;

	snprintf(want, sizeof(want), "%s/%s", dir, name);
	for (int i = 0; i < n_paths && !p; i++)
		if (!strcmp(paths[i], want))
			p = paths[i];
	if (!p) {
		cr_assert_lt(n_paths, 16);
		p = strcpy(paths[n_paths++], want);
	}
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static int is_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

/* rack.yaml text that must fail with want after the file name. */
static void rack_fails(const char *text, const char *want)
{
	const char *path = put("rack.yaml", text);
	struct rdm_rack r;
	int rc;

	memset(&r, 0xa5, sizeof(r));
	err[0] = '\0';
	rc = rdm_rack_load(path, &r, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "loaded, expected '%s' (rc %d, err '%s')", want, rc, err);
	cr_assert(is_zero(&r, sizeof(r)), "rack not zeroed on error");
	cr_assert_eq(strncmp(err, path, strlen(path)), 0, "'%s' does not start with the path", err);
	cr_assert_str_eq(err + strlen(path), want);
}

/* chain.yaml text that must fail with want after the file name. */
static void chain_fails(const char *text, const char *want)
{
	const char *path = put("chain.yaml", text);
	struct rdm_chain_spec s;
	int rc;

	memset(&s, 0xa5, sizeof(s));
	err[0] = '\0';
	rc = rdm_chain_spec_load(path, &s, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "loaded, expected '%s' (rc %d, err '%s')", want, rc, err);
	cr_assert(is_zero(&s, sizeof(s)), "spec not zeroed on error");
	cr_assert_eq(strncmp(err, path, strlen(path)), 0, "'%s' does not start with the path", err);
	cr_assert_str_eq(err + strlen(path), want);
}

static void load_rack(const char *text, struct rdm_rack *r)
{
	int rc = rdm_rack_load(put("rack.yaml", text), r, err, sizeof(err));

	cr_assert_eq(rc, 0, "%s", err);
}

static void load_chain(const char *text, struct rdm_chain_spec *s)
{
	int rc = rdm_chain_spec_load(put("chain.yaml", text), s, err, sizeof(err));

	cr_assert_eq(rc, 0, "%s", err);
}

/* The node a replica landed on, by name. */
static const char *where(const struct rdm_plan *p, const char *id)
{
	const struct rdm_replica *r = rdm_plan_replica(p, id);

	cr_assert_not_null(r, "no replica %s", id);
	return p->rack->nodes[r->node].name;
}

static void expect_at(const struct rdm_plan *p, const char *id, const char *node,
		      const char *listen)
{
	const struct rdm_replica *r = rdm_plan_replica(p, id);

	cr_assert_not_null(r, "no replica %s", id);
	cr_assert_str_eq(p->rack->nodes[r->node].name, node, "%s", id);
	cr_assert_str_eq(r->listen, listen, "%s", id);
}

/* Every replica of a appears in b on the same node and port. */
static void expect_same(const struct rdm_plan *a, const struct rdm_plan *b, const char *id)
{
	const struct rdm_replica *x = rdm_plan_replica(a, id), *y = rdm_plan_replica(b, id);

	cr_assert(x && y, "%s missing", id);
	cr_assert_eq(x->node, y->node, "%s moved", id);
	cr_assert_eq(x->port, y->port, "%s changed port", id);
	cr_assert_eq(x->node_id, y->node_id, "%s changed node id", id);
}

#define RACK4                                                                                      \
	"nodes:\n"                                                                                 \
	"  - {name: n1, control: 10.77.0.1, data: 10.77.0.1, capacity: 4}\n"                       \
	"  - {name: n2, control: 10.77.0.2, data: 10.77.0.2, capacity: 4}\n"                       \
	"  - {name: n3, control: 10.77.0.3, data: 10.77.0.3, capacity: 4}\n"                       \
	"  - {name: n4, control: 10.77.0.4, data: 10.77.0.4, capacity: 4}\n"

#define CHAIN3(dpi_extra)                                                                          \
	"chain: {name: t}\n"                                                                       \
	"stages:\n"                                                                                \
	"  - name: edge\n"                                                                         \
	"    run: [stamp]\n"                                                                       \
	"    ingress: {mode: gen, count: 10}\n"                                                    \
	"  - name: dpi\n"                                                                          \
	"    run: [stamp, dpi]\n"                                                                  \
	"    workers: 2\n" dpi_extra "  - name: log\n"                                             \
	"    run: [stamp]\n"                                                                       \
	"    egress:\n"

TestSuite(plan, .init = mkdir_tmp, .fini = rm_tmp);

/* ---- rack.yaml ---- */

Test(plan, rack_loads_every_field)
{
	struct rdm_rack r;

	load_rack("orchestrator: {listen: \"10.0.0.9:7000\"}\n"
		  "ports: 8000-8009\n"
		  "nodes:\n"
		  "  - name: a.1\n"
		  "    control: 10.0.0.1:7443\n"
		  "    data: 10.77.0.1\n"
		  "    rdma_device: rxe0\n"
		  "    capacity: 16\n"
		  "    labels: {zone: a, disk: ssd}\n"
		  "  - name: b_2\n"
		  "    control: fd00::2\n"
		  "    data: \"fd00:77::2\"\n"
		  "    capacity: 1\n",
		  &r);
	cr_assert_eq(r.n_nodes, 2);
	cr_assert_eq(r.port_first, 8000);
	cr_assert_eq(r.port_last, 8009);
	cr_assert(r.has_orch_listen);
	cr_assert_str_eq(r.orch_listen.text, "10.0.0.9:7000");
	cr_assert_str_eq(r.nodes[0].name, "a.1");
	cr_assert_str_eq(r.nodes[0].control, "10.0.0.1:7443");
	cr_assert_str_eq(r.nodes[0].control_ip, "10.0.0.1");
	cr_assert_eq(r.nodes[0].control_port, 7443);
	cr_assert_str_eq(r.nodes[0].data, "10.77.0.1");
	cr_assert_eq(r.nodes[0].data_family, AF_INET);
	cr_assert_str_eq(r.nodes[0].rdma_device, "rxe0");
	cr_assert_eq(r.nodes[0].capacity, 16);
	cr_assert_eq(r.nodes[0].n_labels, 2);
	cr_assert_str_eq(rdm_rack_label(&r.nodes[0], "zone"), "a");
	cr_assert_str_eq(rdm_rack_label(&r.nodes[0], "disk"), "ssd");
	cr_assert_null(rdm_rack_label(&r.nodes[0], "rack"));
	cr_assert_eq(r.nodes[0].line, 4);
	cr_assert_str_eq(r.nodes[1].control_ip, "fd00::2");
	cr_assert_eq(r.nodes[1].control_port, 0);
	cr_assert_str_eq(r.nodes[1].data, "fd00:77::2");
	cr_assert_eq(r.nodes[1].data_family, AF_INET6);
	cr_assert_null(r.nodes[1].rdma_device);
	cr_assert_eq(r.nodes[1].n_labels, 0);
	cr_assert_eq(rdm_rack_find(&r, "b_2"), 1);
	cr_assert_eq(rdm_rack_find(&r, "c"), -1);
	rdm_rack_free(&r);
	cr_assert(is_zero(&r, sizeof(r)));
	rdm_rack_free(&r);
	rdm_rack_free(NULL);
}

Test(plan, rack_defaults_the_port_range)
{
	struct rdm_rack r;

	load_rack(RACK4, &r);
	cr_assert_eq(r.port_first, 7100);
	cr_assert_eq(r.port_last, 7199);
	cr_assert_eq(r.has_orch_listen, 0);
	rdm_rack_free(&r);
}

Test(plan, rack_errors_say_where)
{
	rack_fails("nodes:\n"
		   "  - name: n1\n"
		   "    control: 10.77.0.1\n"
		   "    data: 10.77.0.1\n"
		   "    capcity: 4\n",
		   ":5:5: unknown key 'capcity' (did you mean 'capacity'?)");
	rack_fails("node:\n", ":1:1: unknown key 'node' (did you mean 'nodes'?)");
	rack_fails("ports: 7100-7199\n", ":1:1: missing key 'nodes'");
	rack_fails("nodes: []\n", ":1:8: 'nodes' must not be empty");
	rack_fails(
	    "nodes:\n  - {name: n1, control: 10.77.0.1, data: 10.77.0.1:7100, capacity: 4}\n",
	    ":2:42: data: '10.77.0.1:7100' is not an IP address (no port: replicas get "
	    "theirs from 'ports')");
	rack_fails("nodes:\n  - {name: n1, control: 10.77.0.1, data: 10.77.0.1, capacity: 4}\n"
		   "  - {name: n1, control: 10.77.0.2, data: 10.77.0.2, capacity: 4}\n",
		   ":3:12: duplicate node name 'n1' (first at line 2)");
	rack_fails("nodes:\n  - {name: n/1, control: 10.77.0.1, data: 10.77.0.1, capacity: 4}\n",
		   ":2:12: bad node name 'n/1' (expected 1 to 63 of A-Z a-z 0-9 _ . -)");
	rack_fails("nodes:\n  - {name: n1, data: 10.77.0.1, capacity: 4}\n",
		   ":2:5: node 'n1': missing key 'control'");
	rack_fails("nodes:\n  - {name: n1, control: 10.77.0.1:0, data: 10.77.0.1, capacity: 4}\n",
		   ":2:25: control: bad address '10.77.0.1:0' (expected IP, IPV4:PORT or "
		   "[IPV6]:PORT)");
	rack_fails("nodes:\n  - {name: n1, control: 10.77.0.1, data: 10.77.0.1}\n",
		   ":2:5: node 'n1': missing key 'capacity' (worker cores, 1..1024)");
	rack_fails("nodes:\n  - {name: n1, control: 10.77.0.1, data: 10.77.0.1, capacity: 1025}\n",
		   ":2:63: capacity: 1025 is out of range (1..1024)");
	rack_fails("nodes:\n  - {name: n1, control: 10.77.0.1, data: 10.77.0.1, capacity: 4,"
		   " labels: [a]}\n",
		   ":2:74: labels: expected a mapping, got a sequence");
	rack_fails("nodes:\n  - {name: n1, control: 10.77.0.1, data: 10.77.0.1, capacity: 4,"
		   " rdma_device: \"\"}\n",
		   ":2:79: rdma_device: '' is not a device name (1 to 63 of A-Z a-z 0-9 _ . -)");
	rack_fails("ports: 7200-7100\n" RACK4, ":1:8: ports: 7100 is less than 7200");
	rack_fails("ports: 7100\n" RACK4,
		   ":1:8: ports: '7100' is not a range FIRST-LAST of ports 1..65535");
	rack_fails("orchestrator: {listen: here}\n" RACK4,
		   ":1:24: listen: bad address 'here' (expected IPV4:PORT or [IPV6]:PORT)");
	rack_fails("orchestrator: {lisen: \"1.2.3.4:5\"}\n" RACK4,
		   ":1:16: unknown key 'lisen' (did you mean 'listen'?)");
}

/* ---- chain.yaml ---- */

Test(plan, example_files_load)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	char cwd[512], want[600];

	cr_assert_eq(rdm_rack_load("configs/rack.yaml", &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_chain_spec_load("configs/chain.yaml", &s, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.n_nodes, 4);
	for (int i = 0; i < 4; i++) {
		char ip[16];

		snprintf(ip, sizeof(ip), "10.77.0.%d", i + 1);
		cr_assert_str_eq(r.nodes[i].data, ip);
		cr_assert_str_eq(r.nodes[i].control, ip);
	}
	cr_assert_str_eq(s.name, "default");
	cr_assert_eq(s.spi, 1);
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	snprintf(want, sizeof(want), "%s/configs", cwd);
	cr_assert_str_eq(s.dir, want);
	cr_assert_eq(s.n_stages, 3);
	cr_assert_str_eq(s.stages[0].name, "edge");
	cr_assert_str_eq(s.stages[1].name, "dpi");
	cr_assert_str_eq(s.stages[2].name, "log");
	cr_assert_not_null(s.stages[0].ingress);
	cr_assert_null(s.stages[0].egress);
	cr_assert_not_null(s.stages[2].egress);
	cr_assert_eq(s.stages[1].replicas, 1);
	cr_assert_eq(s.stages[1].spread, 1);
	cr_assert_eq(s.stages[1].transport, RDM_TRANSPORT_AUTO);
	cr_assert_eq(s.stages[0].n_labels, 1);
	cr_assert_eq(rdm_chain_spec_find(&s, "log"), 2);
	cr_assert_eq(rdm_chain_spec_find(&s, "nope"), -1);

	struct rdm_plan *p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "edge-1", "host1", "10.77.0.1:7100"); /* zone a */
	expect_at(p, "dpi-1", "host2", "10.77.0.2:7100");  /* most cores left */
	expect_at(p, "log-1", "host3", "10.77.0.3:7100");  /* zone b */
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, chain_reads_every_stage_key)
{
	struct rdm_chain_spec s;

	load_chain("chain: {name: full, spi: 77}\n"
		   "transport: {batch: 16}\n"
		   "flows: {max: 1024}\n"
		   "stages:\n"
		   "  - name: a\n"
		   "    run: [stamp, {name: tag, tenant: acme}]\n"
		   "    replicas: 2\n"
		   "    workers: 3\n"
		   "    placement: {labels: {zone: a, disk: ssd}, spread: false}\n"
		   "    transport: tcp\n"
		   "    ingress: {mode: gen, count: 5}\n"
		   "  - name: b\n"
		   "    run: [stamp]\n"
		   "    egress: {count: 5}\n",
		   &s);
	cr_assert_str_eq(s.name, "full");
	cr_assert_eq(s.spi, 77);
	cr_assert_not_null(s.transport);
	cr_assert_not_null(s.flows);
	cr_assert_eq(s.stages[0].replicas, 2);
	cr_assert_eq(s.stages[0].workers, 3);
	cr_assert_eq(s.stages[0].spread, 0);
	cr_assert_eq(s.stages[0].transport, RDM_TRANSPORT_TCP);
	cr_assert_eq(s.stages[0].n_labels, 2);
	cr_assert_str_eq(s.stages[0].labels[1].key, "disk");
	cr_assert_str_eq(s.stages[0].labels[1].value, "ssd");
	cr_assert_eq(rdm_yseq_size(s.stages[0].run), 2);
	cr_assert_eq(s.stages[1].replicas, 1);
	cr_assert_eq(s.stages[1].workers, 1);
	cr_assert_eq(s.stages[1].spread, 1);
	rdm_chain_spec_free(&s);
	cr_assert(is_zero(&s, sizeof(s)));
	rdm_chain_spec_free(&s);
	rdm_chain_spec_free(NULL);
}

#define HEAD "chain: {name: t}\nstages:\n"

Test(plan, chain_errors_say_where)
{
	chain_fails("chain: {name: t}\nstage:\n",
		    ":2:1: unknown key 'stage' (did you mean 'stages'?)");
	chain_fails("chain: {name: t}\n", ":1:1: missing key 'stages'");
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n    replcas: 2\n",
		    ":5:5: unknown key 'replcas' (did you mean 'replicas'?)");
	chain_fails(HEAD "  - name: a\n    run: [stamp, dpii]\n",
		    ":4:18: unknown stage 'dpii' (did you mean 'dpi'?)");
	chain_fails(HEAD "  - name: a\n",
		    ":3:5: stage 'a': missing key 'run' (its data-plane stages)");
	chain_fails(HEAD "  - name: a\n    run: []\n",
		    ":4:10: stage 'a': run: list at least one data-plane stage");
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n  - name: a\n    run: [stamp]\n",
		    ":5:11: duplicate stage name 'a' (first at line 3)");
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n    replicas: 17\n",
		    ":5:15: replicas: 17 is out of range (1..16)");
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n    workers: 65\n",
		    ":5:14: workers: 65 is out of range (1..64)");
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n    placement: {spred: false}\n",
		    ":5:17: unknown key 'spred' (did you mean 'spread'?)");
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n    transport: udp\n  - name: b\n"
			 "    run: [stamp]\n",
		    ":5:16: unknown transport 'udp' (expected tcp, rdma or auto)");
	/* The stage's own settings, checked by its conf_new. */
	chain_fails(HEAD "  - name: a\n    run: [{name: dpi, packet_budgt: 3}]\n",
		    ":4:23: unknown key 'packet_budgt' (did you mean 'packet_budget'?)");
	chain_fails(HEAD "  - name: a\n    run: [{name: flowlog}]\n",
		    ":4:11: stage flowlog needs file");
	/* A file the stage cannot read: its message, at the run entry that names it. */
	char want[256];
	snprintf(want, sizeof(want), ":4:11: %s/nope.yaml: No such file or directory", dir);
	chain_fails(HEAD "  - name: a\n    run: [{name: policy, file: nope.yaml}]\n", want);
}

Test(plan, chain_ingress_and_egress_only_at_the_ends)
{
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n  - name: b\n    run: [stamp]\n"
			 "    ingress: {mode: gen, count: 1}\n",
		    ":7:5: ingress: only the first stage ('a') takes ingress");
	chain_fails(HEAD
		    "  - name: a\n    run: [stamp]\n    egress:\n  - name: b\n    run: [stamp]\n",
		    ":5:5: egress: only the last stage takes egress (stage 1 of 2)");
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n  - name: b\n    run: [stamp]\n"
			 "    transport: tcp\n",
		    ":7:5: transport: stage 'b' is the last stage, there is no next stage to "
		    "reach");
}

/* Sections node/config.c reads are checked by it, and reported in chain.yaml. */
Test(plan, chain_sections_checked_by_the_chain_loader)
{
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n    ingress:\n      mode: gen\n"
			 "      cont: 5\n",
		    ":7:7: unknown key 'cont' (did you mean 'count'?)");
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n    ingress:\n      mode: gen\n",
		    ":6:7: node 'a-1': ingress: missing key 'count' (mode gen needs a packet "
		    "count)");
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n    ingress: {mode: pcap, file: x.pcap,"
			 " seed: 3}\n",
		    ":5:41: 'seed' is only allowed for ingress mode gen");
	chain_fails(HEAD "  - name: a\n    run: [stamp]\n    egress: {pcap: o.pcap, cuont: 1}\n",
		    ":5:28: unknown key 'cuont' (did you mean 'count'?)");
	chain_fails("chain: {name: t}\ntransport: {batch: 0}\nstages:\n  - name: a\n"
		    "    run: [stamp]\n",
		    ":2:20: batch: 0 is out of range (1..1024)");
	chain_fails("chain: {name: t}\nflows:\n  maxx: 5\nstages:\n  - name: a\n    run: [stamp]\n",
		    ":3:3: unknown key 'maxx' (did you mean 'max'?)");
	chain_fails("chain: {spi: 3}\nstages:\n  - name: a\n    run: [stamp]\n",
		    ":1:8: chain: missing key 'name'");
	chain_fails("chain: {name: t, spi: 0}\nstages:\n  - name: a\n    run: [stamp]\n",
		    ":1:23: spi: 0 is out of range (1..16777215)");
	/* A default the renderer wrote (transport auto) is reported at its stage. */
	chain_fails("chain: {name: t}\ntransport: {max_frame: 1024}\nstages:\n  - name: a\n"
		    "    run: [stamp]\n  - name: b\n    run: [stamp]\n",
		    ":4:5: RDMA slots must hold an MTU of 1500 plus state: transport.max_frame "
		    "1024 is below 2048");
}

/* ---- placement ---- */

Test(plan, known_layout_on_four_nodes)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p;

	load_rack(RACK4, &r);
	load_chain(CHAIN3("    replicas: 3\n"), &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	cr_assert_eq(p->n_replicas, 5);
	/* edge-1: all equal, the first node; dpi-1..3: spread, most cores left first; log-1:
	 * n1 has 3 cores left, the others 2. */
	expect_at(p, "edge-1", "n1", "10.77.0.1:7100");
	expect_at(p, "dpi-1", "n2", "10.77.0.2:7100");
	expect_at(p, "dpi-2", "n3", "10.77.0.3:7100");
	expect_at(p, "dpi-3", "n4", "10.77.0.4:7100");
	expect_at(p, "log-1", "n1", "10.77.0.1:7101");
	cr_assert_eq(rdm_plan_replica(p, "edge-1")->node_id, 101);
	cr_assert_eq(rdm_plan_replica(p, "dpi-3")->node_id, 203);
	cr_assert_eq(rdm_plan_replica(p, "log-1")->node_id, 301);
	cr_assert_str_eq(p->replicas[0].id, "edge-1");
	cr_assert_str_eq(p->replicas[3].id, "dpi-3");
	cr_assert_eq(p->stage_replicas[1], 3);

	const struct rdm_replica *on[4];
	cr_assert_eq(rdm_plan_node_replicas(p, "n1", on, 4), 2);
	cr_assert_str_eq(on[0]->id, "edge-1");
	cr_assert_str_eq(on[1]->id, "log-1");
	cr_assert_eq(rdm_plan_node_replicas(p, "n1", on, 1), 2);
	cr_assert_eq(rdm_plan_node_replicas(p, "n3", on, 4), 1);
	cr_assert_str_eq(on[0]->id, "dpi-2");
	cr_assert_eq(rdm_plan_node_replicas(p, "n9", on, 4), -ENOENT);
	cr_assert_null(rdm_plan_replica(p, "dpi-4"));
	rdm_plan_free(p);
	rdm_plan_free(NULL);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, deterministic)
{
	struct rdm_rack r1, r2;
	struct rdm_chain_spec s1, s2;
	const char *chain = CHAIN3("    replicas: 3\n");

	load_rack(RACK4, &r1);
	load_rack(RACK4, &r2);
	load_chain(chain, &s1);
	load_chain(chain, &s2);
	struct rdm_plan *a = rdm_plan_new(&r1, &s1, err, sizeof(err));
	struct rdm_plan *b = rdm_plan_new(&r2, &s2, err, sizeof(err));
	cr_assert(a && b, "%s", err);
	cr_assert_eq(a->n_replicas, b->n_replicas);
	cr_assert_eq(memcmp(a->replicas, b->replicas, sizeof(*a->replicas) * (size_t)a->n_replicas),
		     0);
	char *ta = rdm_plan_render(a, err, sizeof(err)), *tb = rdm_plan_render(b, err, sizeof(err));
	cr_assert(ta && tb, "%s", err);
	cr_assert_str_eq(ta, tb);
	free(ta);
	free(tb);
	rdm_plan_free(a);
	rdm_plan_free(b);
	rdm_chain_spec_free(&s1);
	rdm_chain_spec_free(&s2);
	rdm_rack_free(&r1);
	rdm_rack_free(&r2);
}

Test(plan, honours_capacity_and_labels)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p;
	int used[4] = {0};

	load_rack(
	    "nodes:\n"
	    "  - {name: big, control: 10.0.0.1, data: 10.0.0.1, capacity: 8, labels: {zone: a}}\n"
	    "  - {name: small, control: 10.0.0.2, data: 10.0.0.2, capacity: 2, labels: {zone: a}}\n"
	    "  - {name: b1, control: 10.0.0.3, data: 10.0.0.3, capacity: 6, labels: {zone: b, gpu: "
	    "x}}\n"
	    "  - {name: b2, control: 10.0.0.4, data: 10.0.0.4, capacity: 6, labels: {zone: b}}\n",
	    &r);
	load_chain(HEAD "  - name: in\n    run: [stamp]\n    workers: 2\n    replicas: 2\n"
			"    placement: {labels: {zone: a}}\n"
			"  - name: mid\n    run: [stamp]\n    workers: 3\n    replicas: 4\n"
			"    placement: {spread: false, labels: {zone: b}}\n"
			"  - name: out\n    run: [stamp]\n    workers: 3\n"
			"    placement: {labels: {gpu: x}}\n",
		   &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_null(p, "placed what does not fit");
	/* mid takes all of b1 and b2 (4 x 3 = 12 cores), so out (gpu) has no room. */
	cr_assert(strstr(err, ":13:5: stage 'out': impossible placement: no node without a "
			      "replica of it yet for out-1 with 3 worker cores (cores left: b1 0 "
			      "free)"),
		  "%s", err);
	cr_assert_eq(errno, EINVAL);
	rdm_chain_spec_free(&s);

	load_chain(HEAD "  - name: in\n    run: [stamp]\n    workers: 2\n    replicas: 2\n"
			"    placement: {labels: {zone: a}}\n"
			"  - name: mid\n    run: [stamp]\n    workers: 2\n    replicas: 3\n"
			"    placement: {spread: false, labels: {zone: b}}\n"
			"  - name: out\n    run: [stamp]\n    workers: 2\n"
			"    placement: {labels: {gpu: x}}\n",
		   &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	for (int i = 0; i < p->n_replicas; i++) {
		const struct rdm_replica *rp = &p->replicas[i];
		const struct rdm_spec_stage *st = &s.stages[rp->stage];

		used[rp->node] += st->workers;
		for (int l = 0; l < st->n_labels; l++)
			cr_assert_str_eq(rdm_rack_label(&r.nodes[rp->node], st->labels[l].key),
					 st->labels[l].value, "%s", rp->id);
	}
	for (int k = 0; k < 4; k++)
		cr_assert_leq(used[k], r.nodes[k].capacity, "%s over capacity", r.nodes[k].name);
	/* in-2 goes to small, the only other zone a node, though big has more room. */
	cr_assert_str_eq(where(p, "in-1"), "big");
	cr_assert_str_eq(where(p, "in-2"), "small");
	/* Without spread, the most cores left wins each time, then the fewest replicas, then
	 * rack order: b1, b2, then b1 again. */
	cr_assert_str_eq(where(p, "mid-1"), "b1");
	cr_assert_str_eq(where(p, "mid-2"), "b2");
	cr_assert_str_eq(where(p, "mid-3"), "b1");
	cr_assert_str_eq(rdm_plan_replica(p, "mid-3")->listen, "10.0.0.3:7101");
	/* out needs gpu: b1, with exactly its 2 cores left. */
	cr_assert_str_eq(where(p, "out-1"), "b1");
	cr_assert_eq(used[2], 6);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

/* What plan_new refuses, at the chain.yaml node that asked for it. */
static void plan_fails(const char *rack, const char *chain, const char *want)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	char full[1200];

	load_rack(rack, &r);
	load_chain(chain, &s);
	err[0] = '\0';
	errno = 0;
	cr_assert_null(rdm_plan_new(&r, &s, err, sizeof(err)), "placed, expected '%s'", want);
	cr_assert_eq(errno, EINVAL);
	snprintf(full, sizeof(full), want, r.file);
	cr_assert_str_eq(err + strlen(s.file), full);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, impossible_placement_refused)
{
	/* A label no node has, at the label. */
	plan_fails(RACK4,
		   HEAD "  - name: a\n    run: [stamp]\n    placement: {labels: {zone: c}}\n",
		   ":5:26: stage 'a': impossible placement: no node in %s has label 'zone: c'");
	/* Labels each somewhere, but never together. */
	plan_fails(
	    "nodes:\n"
	    "  - {name: n1, control: 10.0.0.1, data: 10.0.0.1, capacity: 4, labels: {zone: a}}\n"
	    "  - {name: n2, control: 10.0.0.2, data: 10.0.0.2, capacity: 4, labels: {disk: ssd}}\n",
	    HEAD "  - name: a\n    run: [stamp]\n"
		 "    placement: {labels: {zone: a, disk: ssd}}\n",
	    ":5:25: stage 'a': impossible placement: no node that is up carries all of "
	    "its labels");
	/* Spread: more replicas than nodes. */
	plan_fails(RACK4, HEAD "  - name: a\n    run: [stamp]\n    replicas: 5\n",
		   ":5:15: stage 'a': impossible placement: 5 replicas spread over distinct nodes, "
		   "but only 4 nodes can take it (n1, n2, n3, n4)");
	/* Not enough cores: spread leaves b-4 only n1, which has 2 left after a. */
	plan_fails(RACK4,
		   HEAD "  - name: a\n    run: [stamp]\n    workers: 2\n"
			"  - name: b\n    run: [stamp]\n    replicas: 4\n    workers: 3\n",
		   ":8:15: stage 'b': impossible placement: no node without a replica of it yet "
		   "for b-4 with 3 worker cores (cores left: n1 2 free, n2 1 free, n3 1 free, n4 "
		   "1 free)");
	/* workers beyond any node. */
	plan_fails(RACK4, HEAD "  - name: a\n    run: [stamp]\n    workers: 5\n",
		   ":3:5: stage 'a': impossible placement: no node without a replica of it yet "
		   "for a-1 with 5 worker cores (cores left: n1 4 free, n2 4 free, n3 4 free, n4 4 "
		   "free)");
	/* Ports run out before cores. */
	plan_fails(
	    "ports: 7100-7101\nnodes:\n"
	    "  - {name: n1, control: 10.0.0.1, data: 10.0.0.1, capacity: 8}\n",
	    HEAD "  - name: a\n    run: [stamp]\n    replicas: 3\n    placement: {spread: false}\n",
	    ":5:15: stage 'a': impossible placement: no node for a-3 with 1 worker core "
	    "(cores left: n1 6 free, no free port)");
}

Test(plan, spread_false_shares_nodes_and_ports_follow_the_ip)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p;

	/* Two nodes on one loopback IP share its port range. */
	load_rack("ports: 9000-9099\nnodes:\n"
		  "  - {name: a, control: 127.0.0.1, data: 127.0.0.1, capacity: 8}\n"
		  "  - {name: b, control: 127.0.0.1, data: 127.0.0.1, capacity: 2}\n"
		  "  - {name: c, control: \"::1\", data: \"::1\", capacity: 1}\n",
		  &r);
	load_chain(HEAD "  - name: s\n    run: [stamp]\n    replicas: 4\n"
			"    placement: {spread: false}\n",
		   &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "s-1", "a", "127.0.0.1:9000");
	expect_at(p, "s-2", "a", "127.0.0.1:9001"); /* a has 7 left, b 2 */
	expect_at(p, "s-3", "a", "127.0.0.1:9002");
	expect_at(p, "s-4", "a", "127.0.0.1:9003");
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);

	load_chain(HEAD "  - name: s\n    run: [stamp]\n    replicas: 3\n", &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "s-1", "a", "127.0.0.1:9000");
	expect_at(p, "s-2", "b", "127.0.0.1:9001");
	expect_at(p, "s-3", "c", "[::1]:9000");
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, scale_keeps_existing_replicas)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p1, *p3, *p4, *back;

	load_rack(RACK4, &r);
	load_chain(CHAIN3(""), &s);
	p1 = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p1, "%s", err);
	expect_at(p1, "edge-1", "n1", "10.77.0.1:7100");
	expect_at(p1, "dpi-1", "n2", "10.77.0.2:7100");
	expect_at(p1, "log-1", "n3", "10.77.0.3:7100");

	p3 = rdm_plan_scale(p1, "dpi", 3, err, sizeof(err));
	cr_assert_not_null(p3, "%s", err);
	cr_assert_eq(p3->n_replicas, 5);
	cr_assert_eq(p3->stage_replicas[1], 3);
	expect_same(p1, p3, "edge-1");
	expect_same(p1, p3, "dpi-1");
	expect_same(p1, p3, "log-1");
	/* n4 has 4 cores left; then n1 and n3 have 3 each and one replica each: rack order. */
	expect_at(p3, "dpi-2", "n4", "10.77.0.4:7100");
	expect_at(p3, "dpi-3", "n1", "10.77.0.1:7101");
	cr_assert_eq(rdm_plan_replica(p3, "dpi-3")->node_id, 203);
	/* p1 is untouched. */
	cr_assert_eq(p1->n_replicas, 3);
	cr_assert_null(rdm_plan_replica(p1, "dpi-2"));

	/* Back to one: only the highest-numbered go. */
	back = rdm_plan_scale(p3, "dpi", 1, err, sizeof(err));
	cr_assert_not_null(back, "%s", err);
	cr_assert_eq(back->n_replicas, 3);
	cr_assert_null(rdm_plan_replica(back, "dpi-2"));
	cr_assert_null(rdm_plan_replica(back, "dpi-3"));
	expect_same(p3, back, "edge-1");
	expect_same(p3, back, "dpi-1");
	expect_same(p3, back, "log-1");

	/* 3 -> 2 keeps dpi-1 and dpi-2. */
	p4 = rdm_plan_scale(p3, "dpi", 2, err, sizeof(err));
	cr_assert_not_null(p4, "%s", err);
	expect_same(p3, p4, "dpi-1");
	expect_same(p3, p4, "dpi-2");
	cr_assert_null(rdm_plan_replica(p4, "dpi-3"));
	rdm_plan_free(p4);

	/* Out of range, unknown stage, impossible: NULL, and the old plan stands. */
	cr_assert_null(rdm_plan_scale(p3, "dpi", 0, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, "scale: stage 'dpi': 0 replicas is out of range (1..16)");
	cr_assert_null(rdm_plan_scale(p3, "dip", 2, err, sizeof(err)));
	cr_assert_eq(errno, ENOENT);
	cr_assert_null(rdm_plan_scale(p3, "dpi", 5, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, "stage 'dpi': impossible placement: 5 replicas spread over "
			      "distinct nodes, but only 4 nodes can take it (n1, n2, n3, n4)");
	cr_assert_eq(p3->n_replicas, 5);
	rdm_plan_free(back);
	rdm_plan_free(p3);
	rdm_plan_free(p1);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, node_death_moves_only_its_replicas)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p, *d, *d2, *up, *more;

	load_rack(RACK4, &r);
	load_chain(CHAIN3("    replicas: 3\n"), &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);

	d = rdm_plan_node_down(p, "n3", err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	cr_assert(d->down[2]);
	cr_assert_eq(d->n_replicas, 5);
	expect_same(p, d, "edge-1");
	expect_same(p, d, "dpi-1");
	expect_same(p, d, "dpi-3");
	expect_same(p, d, "log-1");
	/* dpi-2 keeps its name and id; n1 is the only node without a dpi replica. */
	expect_at(d, "dpi-2", "n1", "10.77.0.1:7102");
	cr_assert_eq(rdm_plan_replica(d, "dpi-2")->node_id, 202);
	cr_assert_eq(rdm_plan_node_replicas(d, "n3", NULL, 0), 0);

	/* A later scale avoids the dead node: 4 replicas spread need 4 live nodes. */
	cr_assert_null(rdm_plan_scale(d, "dpi", 4, err, sizeof(err)));
	cr_assert_str_eq(err, "stage 'dpi': impossible placement: 4 replicas spread over "
			      "distinct nodes, but only 3 nodes can take it (n1, n2, n4)");

	/* Marking it again changes nothing; an unknown node is refused. */
	d2 = rdm_plan_node_down(d, "n3", err, sizeof(err));
	cr_assert_not_null(d2, "%s", err);
	for (int i = 0; i < d->n_replicas; i++)
		expect_same(d, d2, d->replicas[i].id);
	rdm_plan_free(d2);
	cr_assert_null(rdm_plan_node_down(d, "n9", err, sizeof(err)));
	cr_assert_eq(errno, ENOENT);

	/* Back up: nothing moves onto it until a placement picks it. */
	up = rdm_plan_node_up(d, "n3", err, sizeof(err));
	cr_assert_not_null(up, "%s", err);
	for (int i = 0; i < d->n_replicas; i++)
		expect_same(d, up, d->replicas[i].id);
	more = rdm_plan_scale(up, "dpi", 4, err, sizeof(err));
	cr_assert_not_null(more, "%s", err);
	expect_at(more, "dpi-4", "n3", "10.77.0.3:7100");
	rdm_plan_free(more);
	rdm_plan_free(up);
	rdm_plan_free(d);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, node_death_prefers_spread_but_keeps_replicas)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p, *d, *d2;

	load_rack("nodes:\n"
		  "  - {name: n1, control: 10.0.0.1, data: 10.0.0.1, capacity: 4}\n"
		  "  - {name: n2, control: 10.0.0.2, data: 10.0.0.2, capacity: 8}\n"
		  "  - {name: n3, control: 10.0.0.3, data: 10.0.0.3, capacity: 4}\n",
		  &r);
	load_chain(HEAD "  - name: a\n    run: [stamp]\n    replicas: 3\n    workers: 2\n", &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "a-1", "n2", "10.0.0.2:7100");
	expect_at(p, "a-2", "n1", "10.0.0.1:7100");
	expect_at(p, "a-3", "n3", "10.0.0.3:7100");
	/* No node is free of stage a: a-2 goes beside a sibling, on the most cores left. */
	d = rdm_plan_node_down(p, "n1", err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	expect_at(d, "a-2", "n2", "10.0.0.2:7101");
	expect_same(p, d, "a-1");
	expect_same(p, d, "a-3");
	/* With n2 gone too, n3 (2 cores left) takes a-1 and has no room for a-2. */
	d2 = rdm_plan_node_down(d, "n2", err, sizeof(err));
	cr_assert_null(d2);
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, "stage 'a': impossible placement: no node for a-2 with 2 worker "
			      "cores (cores left: n3 0 free)");
	rdm_plan_free(d);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

/* ---- rendering ---- */

/* Writes text to DIR/rendered.yaml and loads it with the data plane's loader. */
static void load_rendered(const char *text, struct rdm_chain_conf *c)
{
	const char *path = put("rendered.yaml", text);

	cr_assert_eq(rdm_chain_load(path, c, err, sizeof(err)), 0, "%s\n%s", err, text);
}

Test(plan, render_round_trips_through_the_chain_loader)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_chain_conf c;
	struct rdm_plan *p, *p3;
	char cwd[512], want[700];
	char *text;

	cr_assert_eq(rdm_rack_load("configs/rack.yaml", &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_chain_spec_load("configs/chain.yaml", &s, err, sizeof(err)), 0, "%s", err);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	p3 = rdm_plan_scale(p, "dpi", 3, err, sizeof(err));
	cr_assert_not_null(p3, "%s", err);
	text = rdm_plan_render(p3, err, sizeof(err));
	cr_assert_not_null(text, "%s", err);
	load_rendered(text, &c);

	cr_assert_str_eq(c.name, "default");
	cr_assert_eq(c.spi, 1);
	cr_assert_eq(c.transport.backoff_min_ms, 10);
	cr_assert_eq(c.transport.backoff_max_ms, 200);
	cr_assert_eq(c.flows.tcp_closed_ms, 1000);
	cr_assert_eq(c.n_nodes, p3->n_replicas);
	for (int i = 0; i < p3->n_replicas; i++) {
		const struct rdm_replica *rp = &p3->replicas[i];
		const struct rdm_spec_stage *st = &s.stages[rp->stage];
		const struct rdm_node_conf *n = rdm_chain_node(&c, rp->id);

		cr_assert_not_null(n, "%s not rendered", rp->id);
		cr_assert_eq(n->id, rp->node_id);
		cr_assert(n->has_listen);
		cr_assert_str_eq(n->listen.text, rp->listen);
		cr_assert_eq(n->workers, st->workers);
		cr_assert_eq((size_t)n->n_stages, rdm_yseq_size(st->run));
		if (rp->stage + 1 < s.n_stages) {
			int k = 0;

			cr_assert_eq(n->transport, st->transport);
			cr_assert_eq(n->n_next, p3->stage_replicas[rp->stage + 1]);
			for (int j = 0; j < p3->n_replicas; j++)
				if (p3->replicas[j].stage == rp->stage + 1)
					cr_assert_str_eq(c.nodes[n->nexts[k++]].name,
							 p3->replicas[j].id);
		} else {
			cr_assert_eq(n->n_next, 0);
		}
		cr_assert_eq(n->ingress.mode, rp->stage == 0 ? RDM_INGRESS_GEN : RDM_INGRESS_NONE);
		cr_assert_eq(n->egress.enabled, rp->stage == s.n_stages - 1);
	}
	const struct rdm_node_conf *edge = rdm_chain_node(&c, "edge-1"), *dpi2;
	cr_assert_eq(edge->ingress.count, 200000);
	cr_assert_eq(edge->ingress.flows, 300);
	cr_assert_str_eq(edge->stages[1].name, "identity");
	dpi2 = rdm_chain_node(&c, "dpi-2");
	cr_assert_eq(dpi2->n_stages, 3);
	cr_assert_str_eq(dpi2->stages[0].name, "stamp");
	cr_assert_str_eq(dpi2->stages[1].name, "dpi");
	cr_assert_str_eq(dpi2->stages[2].name, "policy");
	cr_assert_eq(dpi2->n_next, 1);
	cr_assert_str_eq(c.nodes[dpi2->next].name, "log-1");

	/* Paths are absolute: the stages load their files from the rendered file in /tmp. */
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	snprintf(want, sizeof(want), "%s/configs/policy.yaml", cwd);
	cr_assert_str_eq(rdm_ynode_scalar(rdm_ymap_get(dpi2->stages[2].conf, "file")), want);
	snprintf(want, sizeof(want), "%s/configs/directory.yaml", cwd);
	cr_assert_str_eq(rdm_ynode_scalar(rdm_ymap_get(edge->stages[1].conf, "directory")), want);
	cr_assert_eq(rdm_chain_check_stages(&c, err, sizeof(err)), 0, "%s", err);
	rdm_chain_free(&c);
	free(text);
	rdm_plan_free(p3);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, render_keeps_odd_values_intact)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_chain_conf c;
	struct rdm_plan *p;
	char want[256];
	char *text;

	load_rack("nodes:\n  - {name: h, control: \"::1\", data: \"fd00::7\", capacity: 2}\n", &r);
	load_chain("chain: {name: \"odd: name #1\", spi: 9}\n"
		   "transport:\n"
		   "flows: {max: 4096}\n"
		   "stages:\n"
		   "  - name: only\n"
		   "    run:\n"
		   "      - {name: tag, tenant: \"null\", user: \"a \\\"b\\\"\\tc\", groups: [x, "
		   "\"y,z\"]}\n"
		   "      - {name: flowlog, file: \"out dir/f:1.json\"}\n"
		   "    transport: tcp\n"
		   "    ingress: {mode: pcap, file: in.pcap, count: 0}\n"
		   "    replicas: 1\n"
		   "  - name: next\n"
		   "    run: [stamp]\n"
		   "    egress: {pcap: /abs/out.pcap, frames: \"rel frames.pcap\"}\n",
		   &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	text = rdm_plan_render(p, err, sizeof(err));
	cr_assert_not_null(text, "%s", err);
	load_rendered(text, &c);
	cr_assert_str_eq(c.name, "odd: name #1");
	cr_assert_eq(c.spi, 9);
	cr_assert_eq(c.flows.max_flows, 4096);
	const struct rdm_node_conf *n = rdm_chain_node(&c, "only-1");
	cr_assert_not_null(n);
	cr_assert_str_eq(n->listen.text, "[fd00::7]:7100");
	cr_assert_eq(n->transport, RDM_TRANSPORT_TCP);
	const struct rdm_ynode *tag = n->stages[0].conf;
	cr_assert_str_eq(rdm_ynode_scalar(rdm_ymap_get(tag, "tenant")), "null");
	cr_assert_eq(rdm_ynode_is_null(rdm_ymap_get(tag, "tenant")), 0);
	cr_assert_str_eq(rdm_ynode_scalar(rdm_ymap_get(tag, "user")), "a \"b\"\tc");
	cr_assert_str_eq(rdm_ynode_scalar(rdm_yseq_item(rdm_ymap_get(tag, "groups"), 1)), "y,z");
	snprintf(want, sizeof(want), "%s/out dir/f:1.json", dir);
	cr_assert_str_eq(rdm_ynode_scalar(rdm_ymap_get(n->stages[1].conf, "file")), want);
	snprintf(want, sizeof(want), "%s/in.pcap", dir);
	cr_assert_str_eq(n->ingress.file, want);
	cr_assert_eq(n->ingress.mode, RDM_INGRESS_PCAP);
	n = rdm_chain_node(&c, "next-1");
	cr_assert_str_eq(n->egress.pcap, "/abs/out.pcap");
	snprintf(want, sizeof(want), "%s/rel frames.pcap", dir);
	cr_assert_str_eq(n->egress.frames, want);
	rdm_chain_free(&c);
	free(text);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}
