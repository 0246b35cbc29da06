/* The orchestrator's inputs: rack.yaml (orchestrator/rack.c) and chain.yaml
 * (orchestrator/plan_spec.c), and a plan's rendering as a static chain
 * (orchestrator/plan_render.c). Placement and re-plans: tests/test_plan_place.c. Files
 * are written to a fresh temporary directory per test; the examples in configs/ are read
 * from the repository root, where the tests run. */
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
#include "tests/lib/plan_fixture.h"

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
