/* The harness the flowlog tests share (tests/test_flowlog.c, tests/test_flowlog_out.c):
 * the stage driven directly (conf from a YAML string, frames built around real IPv4/IPv6
 * packets, counters from its report), a temporary directory per test, and python3's json
 * module to read the lines back. Include after criterion.h. */
#ifndef RDM_TESTS_FLOWLOG_STAGE_H
#define RDM_TESTS_FLOWLOG_STAGE_H

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/pkt.h"
#include "lib/yaml.h"
#include "services/flowtable.h"
#include "services/stage.h"

#define SEC 1000000000ull

static char dir[64];
static char logpath[128];
static char err[512];
static const struct rdm_stage_ops *ops;

static inline void setup(void)
{
	strcpy(dir, "/tmp/rdm-test-flowlog-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(logpath, sizeof(logpath), "%s/flows.json", dir);
	ops = rdm_stage_find("flowlog");
	cr_assert_not_null(ops);
}

static inline void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* A conf from YAML text; NULL (message in err) when rejected. */
static inline void *conf_from(const char *yaml)
{
	struct rdm_ydoc *d = rdm_ydoc_parse_string("t.yaml", yaml, err, sizeof(err));
	void *c;

	cr_assert_not_null(d, "%s", err);
	err[0] = '\0';
	c = ops->conf_new(d, rdm_ydoc_root(d), err, sizeof(err));
	rdm_ydoc_free(d);
	return c;
}

/* A conf writing to logpath with extra YAML lines. */
static inline void *conf_with(const char *extra)
{
	char y[1024];
	void *c;

	snprintf(y, sizeof(y), "name: flowlog\nfile: %s\n%s", logpath, extra ? extra : "");
	c = conf_from(y);
	cr_assert_not_null(c, "%s", err);
	return c;
}

static struct rdm_flow_conf fconf;

static inline void *rt_new(const void *c, int worker)
{
	struct rdm_stage_env env = {
	    .node_id = 9, .node_name = "egress", .worker = worker, .flows = &fconf};
	void *rt = ops->init(c, &env);

	cr_assert_not_null(rt, "init: %s", strerror(errno));
	return rt;
}

struct ctr {
	const char *name;
	uint64_t v;
	int found;
};

static inline void ctr_emit(void *arg, const char *name, uint64_t v)
{
	struct ctr *c = arg;

	if (!strcmp(name, c->name)) {
		c->v = v;
		c->found = 1;
	}
}

static inline uint64_t counter(void *rt, const char *name)
{
	struct ctr c = {.name = name};

	ops->report(rt, ctr_emit, &c);
	cr_assert(c.found, "no counter %s", name);
	return c.v;
}

/* Packet builders: returns the length. v4 addresses as 10.0.0.a; tcp when flags >= 0,
 * else UDP. */
static inline uint32_t pkt4(uint8_t *b, uint8_t a, uint8_t z, uint16_t sp, uint16_t dp, int flags,
			    uint32_t payload)
{
	uint32_t l4 = flags >= 0 ? 20 : 8, len = 20 + l4 + payload;

	memset(b, 0, len);
	b[0] = 0x45;
	b[2] = (uint8_t)(len >> 8);
	b[3] = (uint8_t)len;
	b[8] = 64;
	b[9] = flags >= 0 ? IPPROTO_TCP : IPPROTO_UDP;
	b[12] = 10, b[15] = a;
	b[16] = 10, b[19] = z;
	b[20] = (uint8_t)(sp >> 8), b[21] = (uint8_t)sp;
	b[22] = (uint8_t)(dp >> 8), b[23] = (uint8_t)dp;
	if (flags >= 0) {
		b[32] = 0x50;
		b[33] = (uint8_t)flags;
	} else {
		b[24] = (uint8_t)((8 + payload) >> 8);
		b[25] = (uint8_t)(8 + payload);
	}
	return len;
}

/* IPv6 UDP between 2001:db8::a and 2001:db8::z. */
static inline uint32_t pkt6(uint8_t *b, uint8_t a, uint8_t z, uint16_t sp, uint16_t dp,
			    uint32_t payload)
{
	uint32_t len = 40 + 8 + payload;

	memset(b, 0, len);
	b[0] = 0x60;
	b[4] = (uint8_t)((8 + payload) >> 8);
	b[5] = (uint8_t)(8 + payload);
	b[6] = IPPROTO_UDP;
	b[7] = 64;
	b[8] = 0x20, b[9] = 0x01, b[10] = 0x0d, b[11] = 0xb8, b[23] = a;
	b[24] = 0x20, b[25] = 0x01, b[26] = 0x0d, b[27] = 0xb8, b[39] = z;
	b[40] = (uint8_t)(sp >> 8), b[41] = (uint8_t)sp;
	b[42] = (uint8_t)(dp >> 8), b[43] = (uint8_t)dp;
	b[44] = (uint8_t)((8 + payload) >> 8);
	b[45] = (uint8_t)(8 + payload);
	return len;
}

/* Packets live here until the test ends, as a batch's packets would until it is sent. */
static uint8_t pktmem[256][2048];
static int npkt;

/* A frame around a built packet, as ingress makes it (flow key present). */
static inline void frame(struct rdm_frame *f, uint8_t *p, uint32_t len)
{
	rdm_frame_init(f, 1, 254, rdm_pkt_next_proto(p, len));
	cr_assert_eq(rdm_pkt_flow_key(p, len, &f->key), 0);
	f->flow_id = rdm_flow_hash(&f->key);
	f->present = RDM_F_FLOW_KEY | RDM_F_FLOW_ID;
	f->pkt = p;
	f->pkt_len = len;
}

/* Runs one frame through process() and checks that it passed. */
static inline void run1(void *rt, struct rdm_frame *f)
{
	struct rdm_frame *fp[1] = {f};
	int v = -99;

	ops->process(rt, fp, 1, &v);
	cr_assert_eq(v, RDM_STAGE_PASS);
}

/* Sends one IPv4 packet with no state; returns its length. */
static inline uint32_t send4(void *rt, uint8_t a, uint8_t z, uint16_t sp, uint16_t dp, int flags,
			     uint32_t payload)
{
	struct rdm_frame f;
	uint8_t *p = pktmem[npkt++ % 256];
	uint32_t len = pkt4(p, a, z, sp, dp, flags, payload);

	frame(&f, p, len);
	run1(rt, &f);
	return len;
}

static inline struct rdm_str S(const char *s) {
	return (struct rdm_str){s, (uint8_t)strlen(s)};
}

/* Runs python3 over the lines of path: `L` is the list of parsed lines. Prints expr
 * and returns its output without the trailing newline (static buffer). Any invalid
 * line fails the test. */
static inline const char *
py(const char *path, const char *expr)
{
	static char out[65536];
	char cmd[4096];
	size_t n;
	FILE *p;
	int rc;

	snprintf(
	    cmd, sizeof(cmd),
	    "python3 -c 'import json,sys\n"
	    "L=[json.loads(l) for l in open(sys.argv[1], encoding=\"utf-8\", newline=\"\\n\")]\n"
	    "r=(%s)\n"
	    "print(r)' '%s'",
	    expr, path);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	rc = pclose(p);
	cr_assert_eq(rc, 0, "python3 failed on %s (%s): %s", path, expr, out);
	if (n && out[n - 1] == '\n')
		out[n - 1] = '\0';
	return out;
}

static inline void expect(const char *path, const char *expr, const char *want)
{
	const char *got = py(path, expr);

	cr_assert_str_eq(got, want, "%s: got %s, want %s", expr, got, want);
}

#endif
