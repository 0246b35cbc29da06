/* The chain config loader (node/config.c) and the addresses it reads (lib/addr.c). Data
 * files live in tests/data/config (tests/lib/data.h); the tests run from the repository
 * root (RDM_TEST_DATA overrides the data directory). */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"
#include "lib/yaml.h"
#include "tests/lib/data.h"

static char err[512];

static int is_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

/* Loads a data file that must fail; returns the message after the file name
 * (":LINE:COL: message") and checks that the conf came back zeroed. */
static const char *load_fail(const char *name)
{
	struct rdm_chain_conf c;
	const char *path = data(name);
	size_t plen = strlen(path);

	memset(&c, 0xa5, sizeof(c));
	err[0] = '\0';
	int rc = rdm_chain_load(path, &c, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "%s: rc %d, err '%s'", name, rc, err);
	cr_assert(is_zero(&c, sizeof(c)), "%s: conf not zeroed on error", name);
	cr_assert_eq(strncmp(err, path, plen), 0, "'%s' does not start with the path", err);
	return err + plen;
}

/* Writes text to a temporary file, loads it and returns rc; on failure *msg is the
 * message after the file name. On success the conf is in *c (caller frees). */
static int load_text(const char *text, struct rdm_chain_conf *c, const char **msg)
{
	char path[] = "/tmp/rdm-test-config-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	size_t n = strlen(text);
	cr_assert_eq(write(fd, text, n), (ssize_t)n);
	close(fd);
	err[0] = '\0';
	int rc = rdm_chain_load(path, c, err, sizeof(err));
	unlink(path);
	if (rc) {
		cr_assert(is_zero(c, sizeof(*c)), "conf not zeroed on error");
		cr_assert_eq(strncmp(err, path, strlen(path)), 0);
		*msg = err + strlen(path);
	}
	return rc;
}

/* The error message (after the file name) that text must produce. */
static void expect_text_error(const char *text, const char *want)
{
	struct rdm_chain_conf c;
	const char *msg = NULL;
	int rc = load_text(text, &c, &msg);
	if (rc == 0)
		rdm_chain_free(&c);
	cr_assert_eq(rc, -EINVAL, "loaded, expected '%s'", want);
	cr_assert_str_eq(msg, want);
}

#define HEAD "chain:\n  name: t\nnodes:\n"

/* ---- chain config: valid files ---- */

Test(config, loads_every_field_of_a_valid_file)
{
	struct rdm_chain_conf c;
	int rc = rdm_chain_load(data("valid.yaml"), &c, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);

	cr_assert_str_eq(c.file, data("valid.yaml"));
	cr_assert_str_eq(c.name, "full");
	cr_assert_eq(c.spi, 4242);
	cr_assert_eq(c.transport.queue_bytes, 1048576);
	cr_assert_eq(c.transport.max_frame, 9000);
	cr_assert_eq(c.transport.backoff_min_ms, 50);
	cr_assert_eq(c.transport.backoff_max_ms, 2000);
	cr_assert_eq(c.transport.batch, 64);
	cr_assert_eq(c.n_nodes, 4);
	cr_assert_not_null(c.doc);

	const struct rdm_node_conf *n = &c.nodes[0];
	cr_assert_str_eq(n->name, "edge-in");
	cr_assert_eq(n->id, 10);
	cr_assert_eq(n->has_listen, 1);
	cr_assert_str_eq(n->listen.text, "10.77.0.1:7001");
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)&n->listen.ss;
	cr_assert_eq(s4->sin_family, AF_INET);
	cr_assert_eq(ntohs(s4->sin_port), 7001);
	cr_assert_eq(ntohl(s4->sin_addr.s_addr), 0x0a4d0001);
	cr_assert_eq(n->listen.len, sizeof(struct sockaddr_in));
	cr_assert_eq(n->workers, 2);
	cr_assert_eq(n->n_stages, 1);
	cr_assert_str_eq(n->stages[0].name, "classify");
	cr_assert_null(n->stages[0].conf);
	cr_assert_eq(n->stages[0].line, 16);
	cr_assert_eq(n->stages[0].col, 14);
	cr_assert_eq(n->next, 2);
	cr_assert_eq(n->transport, RDM_TRANSPORT_TCP);
	cr_assert_eq(n->ingress.mode, RDM_INGRESS_PCAP);
	cr_assert_str_eq(n->ingress.file, "captures/in.pcap");
	cr_assert_eq(n->ingress.count, 500);
	cr_assert_float_eq(n->ingress.rate, 2500.5, 1e-9);
	cr_assert_eq(n->ingress.wait_ms, 100);
	cr_assert_eq(n->egress.enabled, 0);

	n = &c.nodes[1];
	cr_assert_str_eq(n->name, "gen_in");
	cr_assert_eq(n->id, 11);
	cr_assert_eq(n->has_listen, 0);
	cr_assert_eq(n->workers, 1);
	cr_assert_eq(n->n_stages, 0);
	cr_assert_null(n->stages);
	cr_assert_eq(n->next, 2);
	cr_assert_eq(n->ingress.mode, RDM_INGRESS_GEN);
	cr_assert_null(n->ingress.file);
	cr_assert_eq(n->ingress.count, 10000);
	cr_assert_eq(n->ingress.flows, 200);
	cr_assert_eq(n->ingress.seed, 77);
	cr_assert_float_eq(n->ingress.rate, 0.0, 1e-12);
	cr_assert_eq(n->ingress.wait_ms, 5000);

	n = &c.nodes[2];
	cr_assert_str_eq(n->name, "mid.1");
	cr_assert_eq(n->id, 20);
	cr_assert_str_eq(n->listen.text, "[fd00::2]:7002");
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&n->listen.ss;
	cr_assert_eq(s6->sin6_family, AF_INET6);
	cr_assert_eq(ntohs(s6->sin6_port), 7002);
	cr_assert_eq(s6->sin6_addr.s6_addr[0], 0xfd);
	cr_assert_eq(s6->sin6_addr.s6_addr[15], 0x02);
	cr_assert_eq(n->listen.len, sizeof(struct sockaddr_in6));
	cr_assert_eq(n->workers, 4);
	cr_assert_eq(n->n_stages, 2);
	cr_assert_str_eq(n->stages[0].name, "stamp");
	cr_assert_null(n->stages[0].conf);
	cr_assert_eq(n->stages[0].line, 38);
	cr_assert_eq(n->stages[0].col, 9);
	cr_assert_str_eq(n->stages[1].name, "nat");
	cr_assert_eq(n->stages[1].line, 39);
	cr_assert_eq(n->stages[1].col, 9);
	const struct rdm_ynode *sc = n->stages[1].conf;
	cr_assert_not_null(sc);
	cr_assert_eq(rdm_ynode_kind(sc), RDM_YMAP);
	cr_assert_eq(rdm_ymap_size(sc), 3);
	cr_assert_str_eq(rdm_ynode_scalar(rdm_ymap_get(sc, "pool")), "192.0.2.0/24");
	const struct rdm_ynode *ports = rdm_ymap_get(sc, "ports");
	cr_assert_eq(rdm_yseq_size(ports), 2);
	cr_assert_str_eq(rdm_ynode_scalar(rdm_yseq_item(ports, 1)), "65535");
	cr_assert_eq(n->next, 3);
	cr_assert_eq(n->ingress.mode, RDM_INGRESS_NONE);

	n = &c.nodes[3];
	cr_assert_str_eq(n->name, "edge_out");
	cr_assert_eq(n->id, 30);
	cr_assert_eq(n->next, -1);
	cr_assert_eq(n->egress.enabled, 1);
	cr_assert_str_eq(n->egress.pcap, "out/ip.pcap");
	cr_assert_str_eq(n->egress.frames, "out/frames.pcap");
	cr_assert_eq(n->egress.count, 10500);
	cr_assert_float_eq(n->egress.rate, 10000.0, 1e-9);

	rdm_chain_free(&c);
	cr_assert(is_zero(&c, sizeof(c)));
}

Test(config, applies_defaults)
{
	struct rdm_chain_conf c;
	int rc = rdm_chain_load(data("defaults.yaml"), &c, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);

	cr_assert_str_eq(c.name, "tiny");
	cr_assert_eq(c.spi, 1);
	cr_assert_eq(c.transport.queue_bytes, 4u << 20);
	cr_assert_eq(c.transport.max_frame, 16384);
	cr_assert_eq(c.transport.backoff_min_ms, 20);
	cr_assert_eq(c.transport.backoff_max_ms, 1000);
	cr_assert_eq(c.transport.batch, 32);
	cr_assert_eq(c.n_nodes, 2);

	const struct rdm_node_conf *a = &c.nodes[0], *b = &c.nodes[1];
	cr_assert_eq(a->id, 1);
	cr_assert_eq(b->id, 2);
	cr_assert_eq(a->has_listen, 0);
	cr_assert_eq(a->workers, 1);
	cr_assert_eq(a->n_stages, 0);
	cr_assert_eq(a->next, 1);
	cr_assert_eq(a->transport, RDM_TRANSPORT_TCP);
	cr_assert_eq(a->ingress.mode, RDM_INGRESS_GEN);
	cr_assert_eq(a->ingress.count, 10);
	cr_assert_eq(a->ingress.flows, 100);
	cr_assert_eq(a->ingress.seed, 1);
	cr_assert_eq(a->ingress.wait_ms, 5000);
	cr_assert_float_eq(a->ingress.rate, 0.0, 1e-12);
	cr_assert_eq(a->egress.enabled, 0);

	cr_assert_eq(b->has_listen, 1);
	cr_assert_eq(b->next, -1);
	cr_assert_eq(b->ingress.mode, RDM_INGRESS_NONE);
	cr_assert_eq(b->egress.enabled, 1, "an empty egress: still enables egress");
	cr_assert_null(b->egress.pcap);
	cr_assert_null(b->egress.frames);
	cr_assert_eq(b->egress.count, 0);
	rdm_chain_free(&c);
}

Test(config, loads_the_example_chain)
{
	struct rdm_chain_conf c;
	int rc = rdm_chain_load("configs/chain-3host.yaml", &c, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(c.n_nodes, 3);
	const struct rdm_node_conf *h1 = rdm_chain_node(&c, "host1");
	const struct rdm_node_conf *h2 = rdm_chain_node(&c, "host2");
	const struct rdm_node_conf *h3 = rdm_chain_node(&c, "host3");
	cr_assert(h1 && h2 && h3);
	cr_assert_eq(h1->ingress.mode, RDM_INGRESS_GEN);
	cr_assert_eq(&c.nodes[h1->next], h2);
	cr_assert_eq(&c.nodes[h2->next], h3);
	cr_assert_eq(h3->next, -1);
	cr_assert_str_eq(h2->stages[0].name, "stamp");
	cr_assert_str_eq(h2->listen.text, "10.77.0.2:7001");
	cr_assert_eq(h3->egress.enabled, 1);
	rdm_chain_free(&c);
}

Test(config, chain_node_finds_by_name)
{
	struct rdm_chain_conf c;
	cr_assert_eq(rdm_chain_load(data("valid.yaml"), &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_chain_node(&c, "mid.1"), &c.nodes[2]);
	cr_assert_null(rdm_chain_node(&c, "mid"));
	cr_assert_null(rdm_chain_node(NULL, "mid.1"));
	rdm_chain_free(&c);
}

Test(config, free_accepts_zeroed_and_freed_conf)
{
	struct rdm_chain_conf c;
	memset(&c, 0, sizeof(c));
	rdm_chain_free(&c);
	rdm_chain_free(NULL);
	cr_assert_eq(rdm_chain_load(data("valid.yaml"), &c, err, sizeof(err)), 0, "%s", err);
	rdm_chain_free(&c);
	rdm_chain_free(&c);
}

Test(config, accepts_ipv6_listen_and_flow_style)
{
	struct rdm_chain_conf c;
	const char *msg;
	int rc = load_text("{chain: {name: f, spi: 16777215}, nodes: [{name: a, listen: "
			   "'[::1]:1'}, {name: b, listen: '127.0.0.1:65535', stages: []}]}\n",
			   &c, &msg);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(c.spi, 16777215);
	cr_assert_eq(c.nodes[0].listen.ss.ss_family, AF_INET6);
	cr_assert_eq(c.nodes[1].n_stages, 0);
	rdm_chain_free(&c);
}

/* ---- chain config: broken files ---- */

Test(config, reports_unknown_key_with_suggestion)
{
	cr_assert_str_eq(load_fail("unknown-key.yaml"),
			 ":6:5: unknown key 'wokrers' (did you mean 'workers'?)");
}

Test(config, reports_unknown_key_without_suggestion)
{
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    colour: red\n",
			  ":6:5: unknown key 'colour'");
	expect_text_error("chain:\n  name: t\n  spy: 2\nnodes: []\n",
			  ":3:3: unknown key 'spy' (did you mean 'spi'?)");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\ntransport:\n  bacth: 3\n",
			  ":7:3: unknown key 'bacth' (did you mean 'batch'?)");
}

Test(config, reports_syntax_error_bad_indentation)
{
	cr_assert_str_eq(load_fail("syntax-indent.yaml"),
			 ":6:4: did not find expected '-' indicator (while parsing a block "
			 "collection at line 4 column 3)");
}

Test(config, reports_syntax_error_unclosed_bracket)
{
	cr_assert_str_eq(load_fail("syntax-bracket.yaml"),
			 ":7:9: did not find expected ',' or ']' (while parsing a flow sequence "
			 "at line 6 column 13)");
}

Test(config, reports_bad_port)
{
	cr_assert_str_eq(load_fail("bad-port.yaml"),
			 ":5:13: bad port in '10.77.0.1:70001' (expected 1..65535)");
	expect_text_error(HEAD "  - name: a\n    listen: 10.0.0.1:0\n",
			  ":5:13: bad port in '10.0.0.1:0' (expected 1..65535)");
}

Test(config, reports_bad_address)
{
	cr_assert_str_eq(load_fail("bad-addr.yaml"),
			 ":5:13: bad address '10.77.0.300:7001' (expected IPV4:PORT or "
			 "[IPV6]:PORT)");
	expect_text_error(HEAD "  - name: a\n    listen: [1, 2]\n",
			  ":5:13: listen: expected a string, got a sequence");
}

Test(config, reports_duplicate_node_name)
{
	cr_assert_str_eq(load_fail("dup-name.yaml"),
			 ":8:11: duplicate node name 'host1' (first at line 4)");
}

Test(config, reports_unknown_next_hop)
{
	cr_assert_str_eq(load_fail("unknown-next.yaml"),
			 ":6:11: next hop 'hots3' is not a node (did you mean 'host3'?)");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    next: zzzzzz\n",
			  ":6:11: next hop 'zzzzzz' is not a node");
}

Test(config, reports_wrong_type)
{
	cr_assert_str_eq(load_fail("wrong-type.yaml"),
			 ":4:3: nodes: expected a sequence, got a mapping");
	expect_text_error(HEAD "  - host1\n", ":4:5: node 1: expected a mapping, got 'host1'");
	expect_text_error("chain: demo\nnodes: []\n",
			  ":1:8: chain: expected a mapping, got 'demo'");
	expect_text_error("- 1\n", ":1:1: top level: expected a mapping, got a sequence");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    stages: stamp\n",
			  ":6:13: stages: expected a sequence, got 'stamp'");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    stages: [[x]]\n",
			  ":6:14: expected a stage name or a mapping with 'name', got a sequence");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    egress: 3\n",
			  ":6:13: egress: expected a mapping, got '3'");
	expect_text_error(HEAD "  - name:\n    listen: 1.2.3.4:5\n",
			  ":4:10: name: expected a string, got null");
}

Test(config, reports_missing_required_key)
{
	cr_assert_str_eq(load_fail("missing-key.yaml"), ":9:5: node 'host2': missing key 'listen'");
	expect_text_error(HEAD "  - listen: 1.2.3.4:5\n", ":4:5: node 1: missing key 'name'");
	expect_text_error("chain:\n  spi: 3\nnodes: []\n", ":2:3: chain: missing key 'name'");
	expect_text_error("nodes: []\n", ":1:1: missing key 'chain'");
	expect_text_error("chain:\n  name: x\n", ":1:1: missing key 'nodes'");
	expect_text_error(HEAD "  - name: a\n    ingress:\n      count: 3\n",
			  ":6:7: node 'a': ingress: missing key 'mode'");
	expect_text_error(HEAD "  - name: a\n    ingress:\n      mode: gen\n",
			  ":6:7: node 'a': ingress: missing key 'count' (mode gen needs a packet "
			  "count)");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    stages:\n"
			       "      - name: nat\n      - pool: x\n",
			  ":8:9: node 'a': stage 2: missing key 'name'");
}

Test(config, reports_out_of_range_number)
{
	cr_assert_str_eq(load_fail("out-of-range.yaml"),
			 ":6:14: workers: 65 is out of range (1..64)");
	expect_text_error("chain:\n  name: t\n  spi: 0\nnodes: []\n",
			  ":3:8: spi: 0 is out of range (1..16777215)");
	expect_text_error("chain:\n  name: t\n  spi: 16777216\nnodes: []\n",
			  ":3:8: spi: 16777216 is out of range (1..16777215)");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\ntransport:\n  batch: 0\n",
			  ":7:10: batch: 0 is out of range (1..1024)");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\ntransport:\n"
			       "  queue_bytes: 65535\n",
			  ":7:16: queue_bytes: 65535 is out of range (65536..1073741824)");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    id: 4294967296\n",
			  ":6:9: id: 4294967296 is out of range (1..4294967295)");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    workers: 2x\n",
			  ":6:14: workers: expected a non-negative integer, got '2x'");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    workers: -1\n",
			  ":6:14: workers: expected a non-negative integer, got '-1'");
	expect_text_error(HEAD "  - name: a\n    ingress: {mode: gen, count: 5, rate: -2}\n",
			  ":5:42: rate: expected a non-negative number, got '-2'");
	expect_text_error(HEAD "  - name: a\n    ingress: {mode: gen, count: 0}\n",
			  ":5:33: count: 0 is out of range (1..18446744073709551615)");
}

Test(config, reports_pcap_ingress_without_file)
{
	cr_assert_str_eq(load_fail("pcap-no-file.yaml"),
			 ":6:7: node 'host1': ingress: missing key 'file' (mode pcap needs a "
			 "capture to replay)");
}

Test(config, reports_ingress_keys_that_do_not_fit_the_mode)
{
	expect_text_error(HEAD "  - name: a\n    ingress:\n      mode: gen\n      count: 1\n"
			       "      file: x.pcap\n",
			  ":8:7: 'file' is not allowed for ingress mode gen");
	expect_text_error(HEAD "  - name: a\n    ingress:\n      mode: pcap\n      file: x\n"
			       "      flows: 3\n",
			  ":8:7: 'flows' is only allowed for ingress mode gen");
	expect_text_error(HEAD "  - name: a\n    ingress:\n      mode: tap\n",
			  ":6:13: unknown ingress mode 'tap' (expected gen, pcap or tun)");
	expect_text_error(HEAD "  - name: a\n    ingress:\n      mode: pcap\n      file: ''\n",
			  ":7:13: file: must not be empty");
}

Test(config, reports_unreadable_file)
{
	struct rdm_chain_conf c;
	memset(&c, 0xa5, sizeof(c));
	const char *path = data("does-not-exist.yaml");
	char want[600];
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	cr_assert_eq(rdm_chain_load(path, &c, err, sizeof(err)), -ENOENT);
	cr_assert_str_eq(err, want);
	cr_assert(is_zero(&c, sizeof(c)));

	cr_assert_eq(rdm_chain_load("tests", &c, err, sizeof(err)), -EISDIR);
	cr_assert_str_eq(err, "tests: Is a directory");
}

Test(config, reports_duplicate_ids)
{
	expect_text_error(HEAD "  - name: a\n    id: 2\n    listen: 1.2.3.4:5\n"
			       "  - name: b\n    listen: 1.2.3.4:6\n",
			  ":7:5: node 'b': id 2 is already used by node 'a'");
	expect_text_error(HEAD "  - name: a\n    id: 7\n    listen: 1.2.3.4:5\n"
			       "  - name: b\n    id: 7\n    listen: 1.2.3.4:6\n",
			  ":8:9: node 'b': id 7 is already used by node 'a'");
}

Test(config, reports_bad_next_hops)
{
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    next: a\n",
			  ":6:11: node 'a' cannot be its own next hop");
	expect_text_error(HEAD "  - name: a\n    ingress: {mode: gen, count: 1}\n"
			       "  - name: b\n    listen: 1.2.3.4:6\n    next: a\n",
			  ":8:11: next hop 'a' has ingress, so it cannot be a next hop");
}

Test(config, rdma_slots_must_hold_an_mtu_and_state)
{
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    transport: rdma\n"
			       "transport: {max_frame: 1024}\n",
			  ":6:16: RDMA slots must hold an MTU of 1500 plus state: "
			  "transport.max_frame 1024 is below 2048");
}

Test(config, reports_other_bad_values)
{
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    transport: rmda\n",
			  ":6:16: unknown transport 'rmda' (expected tcp, rdma or auto)");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    poll: spin\n",
			  ":6:11: unknown poll 'spin' (expected sleep, adaptive or busy)");
	expect_text_error(HEAD "  - name: a b\n    listen: 1.2.3.4:5\n",
			  ":4:11: bad node name 'a b' (expected 1 to 63 of A-Z a-z 0-9 _ . -)");
	expect_text_error("chain:\n  name: t\nnodes: []\n", ":3:8: 'nodes' must not be empty");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\ntransport:\n"
			       "  backoff_min_ms: 50\n  backoff_max_ms: 10\n",
			  ":8:19: backoff_max_ms (10) is less than backoff_min_ms (50)");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\ntransport:\n"
			       "  backoff_min_ms: 5000\n",
			  ":7:19: backoff_max_ms (1000) is less than backoff_min_ms (5000)");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\ntransport:\n"
			       "  queue_bytes: 65536\n  max_frame: 1048576\n",
			  ":7:16: queue_bytes (65536) is less than max_frame (1048576)");
	expect_text_error("", ": empty document (expected a mapping with 'chain' and 'nodes')");
	expect_text_error(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    listen: 1.2.3.4:6\n",
			  ":6:5: duplicate key 'listen' (first at line 5)");
	expect_text_error(HEAD "  - &n\n    name: a\n", ":4:5: anchors are not supported ('&n')");
}

/* ---- rdm_addr_parse ---- */

Test(config, addr_parse_ipv4)
{
	struct rdm_addr a;
	cr_assert_eq(rdm_addr_parse(&a, "192.168.1.20:7000"), 0);
	const struct sockaddr_in *s = (const struct sockaddr_in *)&a.ss;
	cr_assert_eq(s->sin_family, AF_INET);
	cr_assert_eq(ntohs(s->sin_port), 7000);
	cr_assert_eq(ntohl(s->sin_addr.s_addr), 0xc0a80114);
	cr_assert_eq(a.len, sizeof(struct sockaddr_in));
	cr_assert_str_eq(a.text, "192.168.1.20:7000");

	cr_assert_eq(rdm_addr_parse(&a, "0.0.0.0:65535"), 0);
	cr_assert_eq(ntohs(s->sin_port), 65535);
	cr_assert_eq(rdm_addr_parse(&a, "127.0.0.1:1"), 0);
}

Test(config, addr_parse_ipv6)
{
	struct rdm_addr a;
	cr_assert_eq(rdm_addr_parse(&a, "[fd00::1]:7000"), 0);
	const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a.ss;
	struct in6_addr want;
	inet_pton(AF_INET6, "fd00::1", &want);
	cr_assert_eq(s->sin6_family, AF_INET6);
	cr_assert_eq(ntohs(s->sin6_port), 7000);
	cr_assert_eq(memcmp(&s->sin6_addr, &want, sizeof(want)), 0);
	cr_assert_eq(a.len, sizeof(struct sockaddr_in6));
	cr_assert_str_eq(a.text, "[fd00::1]:7000");

	cr_assert_eq(rdm_addr_parse(&a, "[::]:80"), 0);
	cr_assert_eq(rdm_addr_parse(&a, "[::ffff:10.0.0.1]:80"), 0);
}

Test(config, addr_parse_rejects_bad_text)
{
	static const char *const bad[] = {
	    "",
	    "10.0.0.1",
	    "10.0.0.1:",
	    ":7000",
	    "10.0.0.1:0",
	    "10.0.0.1:65536",
	    "10.0.0.1:123456",
	    "10.0.0.1:70x",
	    "10.0.0.1:+80",
	    "10.0.0.1:-80",
	    "10.0.0.1: 80",
	    "10.0.0.256:80",
	    "10.0.0:80",
	    "host.example:80",
	    "fd00::1:7000",
	    "[fd00::1]7000",
	    "[fd00::1]:",
	    "[]:80",
	    "[fd00::1:80",
	    "[10.0.0.1]:80",
	    "[fd00::1%eth0]:80",
	    "[1111:2222:3333:4444:5555:6666:7777:8888]:65535-with-a-long-tail-x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rdm_addr a;
		memset(&a, 0x5a, sizeof(a));
		cr_assert_eq(rdm_addr_parse(&a, bad[i]), -EINVAL, "accepted '%s'", bad[i]);
		cr_assert(is_zero(&a, sizeof(a)), "'%s' left a filled in", bad[i]);
	}
}

/* ---- replicas of the next stage, flows, inline mode ---- */

#define REPLICAS                                                                                   \
	HEAD "  - {name: a, next: [b, c], ingress: {mode: gen, count: 1}}\n"                       \
	     "  - {name: b, listen: 10.0.0.2:7000, next: d}\n"                                     \
	     "  - {name: c, listen: 10.0.0.3:7000, next: d}\n"                                     \
	     "  - {name: d, listen: 10.0.0.4:7000, egress: }\n"

Test(config, next_lists_the_replicas_of_the_next_stage)
{
	struct rdm_chain_conf c;
	const char *msg = NULL;

	cr_assert_eq(load_text(REPLICAS, &c, &msg), 0, "%s", msg);
	cr_assert_eq(c.nodes[0].n_next, 2);
	cr_assert_eq(c.nodes[0].nexts[0], 1);
	cr_assert_eq(c.nodes[0].nexts[1], 2);
	cr_assert_eq(c.nodes[0].next, 1, "next is the first replica");
	cr_assert_eq(c.nodes[1].n_next, 1);
	cr_assert_eq(c.nodes[1].nexts[0], 3);
	cr_assert_eq(c.nodes[3].n_next, 0);
	cr_assert_eq(c.nodes[3].next, -1);
	rdm_chain_free(&c);
}

Test(config, reports_bad_replica_lists)
{
	expect_text_error(HEAD "  - {name: a, next: [b, b], ingress: {mode: gen, count: 1}}\n"
			       "  - {name: b, listen: 10.0.0.2:7000, egress: }\n",
			  ":4:25: next hop 'b' is listed twice");
	expect_text_error(HEAD "  - {name: a, next: [b, x], ingress: {mode: gen, count: 1}}\n"
			       "  - {name: b, listen: 10.0.0.2:7000, egress: }\n",
			  ":4:25: next hop 'x' is not a node");
	expect_text_error(HEAD "  - {name: a, next: [], ingress: {mode: gen, count: 1}}\n",
			  ":4:21: next: a list of 1 to 16 nodes");
	expect_text_error(
	    HEAD "  - {name: a, connect: 10.0.0.9:1, next: [b], ingress: {mode: gen, count: 1}}\n"
		 "  - {name: b, listen: 10.0.0.2:7000, egress: }\n",
	    ":4:24: connect: only with a single next hop");
}

Test(config, flows_section_and_tun_edges)
{
	struct rdm_chain_conf c;
	const char *msg = NULL;
	const char *text =
	    "chain: {name: t}\n"
	    "flows: {max: 1000, tcp_closed_ms: 50}\n"
	    "nodes:\n"
	    "  - {name: a, next: b, ingress: {mode: tun, tun: rdm-in}}\n"
	    "  - {name: b, listen: 10.0.0.2:7000, egress: {tun: {name: rdm-out, mtu: 1400}}}\n";

	cr_assert_eq(load_text(text, &c, &msg), 0, "%s", msg);
	cr_assert_eq(c.flows.max_flows, 1000);
	cr_assert_eq(c.flows.tcp_closed_ms, 50);
	cr_assert_eq(c.flows.tcp_idle_ms, 300000, "defaults fill the rest");
	cr_assert_eq(c.nodes[0].ingress.mode, RDM_INGRESS_TUN);
	cr_assert_str_eq(c.nodes[0].ingress.tun.name, "rdm-in");
	cr_assert_eq(c.nodes[0].ingress.tun.mtu, 1500);
	cr_assert_str_eq(c.nodes[1].egress.tun.name, "rdm-out");
	cr_assert_eq(c.nodes[1].egress.tun.mtu, 1400);
	rdm_chain_free(&c);
	expect_text_error("chain: {name: t}\nflows: {max: 8}\nnodes:\n  - {name: a}\n",
			  ":2:14: max: 8 is out of range (16..67108864)");
	expect_text_error("chain: {name: t}\nflows: {tcp_idel_ms: 8}\nnodes:\n  - {name: a}\n",
			  ":2:9: unknown key 'tcp_idel_ms' (did you mean 'tcp_idle_ms'?)");
	expect_text_error(HEAD
			  "  - {name: a, next: b, ingress: {mode: tun, tun: rdm-in, count: 5}}\n"
			  "  - {name: b, listen: 10.0.0.2:7000, egress: }\n",
			  ":4:58: 'count' is not allowed for ingress mode tun");
	expect_text_error(
	    HEAD "  - {name: a, next: b, ingress: {mode: tun, tun: a/b}}\n"
		 "  - {name: b, listen: 10.0.0.2:7000, egress: }\n",
	    ":4:50: tun: 'a/b' is not an interface name (1 to 15 characters, no '/' or space)");
}

Test(config, security_settings_and_their_errors)
{
	struct rdm_chain_conf c;
	const char *msg;

	cr_assert_eq(load_text(HEAD "  - name: a\n    listen: 1.2.3.4:5\n"
				    "transport: {protect: none}\nflows: {when_full: refuse-new}\n",
			       &c, &msg),
		     0, "%s", msg);
	cr_assert_eq(c.transport.protect, RDM_PROTECT_NONE);
	cr_assert_eq(c.flows.refuse_new, 1);
	cr_assert_str_eq(c.nodes[0].identity, "a", "the identity defaults to the name");
	rdm_chain_free(&c);
	expect_text_error(
	    HEAD "  - name: a\n    listen: 1.2.3.4:5\ntransport: {protect: atuh}\n",
	    ":6:22: protect: 'atuh' is not auth, encrypt or none (did you mean 'auth'?)");
	expect_text_error(HEAD
			  "  - name: a\n    listen: 1.2.3.4:5\nflows: {when_full: refuse_new}\n",
			  ":6:20: when_full: 'refuse_new' is not evict or refuse-new (did you mean "
			  "'refuse-new'?)");
	expect_text_error(
	    HEAD "  - name: a\n    listen: 1.2.3.4:5\n  - name: b\n    listen: 1.2.3.4:5\n",
	    ":7:13: node 'b': listen 1.2.3.4:5 is node 'a''s address too: an upstream "
	    "could reach the wrong node and frames skip a stage");
	/* RDMA hops prove themselves and encrypt like TCP ones. */
	cr_assert_eq(load_text(HEAD "  - name: a\n    next: b\n    transport: rdma\n    ingress: "
				    "{mode: gen, count: 1}\n  - name: b\n    listen: 1.2.3.4:5\n"
				    "transport: {protect: encrypt}\n",
			       &c, &msg),
		     0, "%s", msg);
	cr_assert_eq(c.nodes[0].transport, RDM_TRANSPORT_RDMA);
	cr_assert_eq(c.nodes[0].poll, RDM_POLL_SLEEP, "nodes sleep unless told");
	rdm_chain_free(&c);
	cr_assert_eq(load_text(HEAD "  - name: a\n    listen: 1.2.3.4:5\n    poll: adaptive\n"
				    "  - name: b\n    listen: 1.2.3.4:6\n    poll: busy\n",
			       &c, &msg),
		     0, "%s", msg);
	cr_assert_eq(c.nodes[0].poll, RDM_POLL_ADAPTIVE);
	cr_assert_eq(c.nodes[1].poll, RDM_POLL_BUSY);
	rdm_chain_free(&c);
	/* A chain name is a line of text: no escape sequence for terminals, no megabytes. */
	expect_text_error(
	    "chain:\n  name: \"evil\\e[2J\"\nnodes:\n  - name: a\n    listen: 1.2.3.4:5\n",
	    ":2:9: name: a chain name is 1 to 255 bytes of text without control "
	    "characters (this one has 8 bytes)");
	expect_text_error(HEAD "  - name: _a\n    listen: 1.2.3.4:5\n",
			  ":4:11: node '_a': '_a' cannot be a certificate name (1 to 63 of A-Z a-z "
			  "0-9 . _ -, starting with a letter or digit, not 'ca'): give the node an "
			  "identity:");
}
