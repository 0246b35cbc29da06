/* The harness the policy tests share (tests/test_policy.c, tests/test_policy_rules.c):
 * a temporary directory per test for policy files, a policy stage driven through its ops
 * table as the node drives it, and packets and frames built from a spec with checksums
 * computed independently of the stage's. Include after criterion.h. */
#ifndef RDM_TESTS_POLICY_STAGE_H
#define RDM_TESTS_POLICY_STAGE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/byteorder.h"
#include "lib/pkt.h"
#include "lib/yaml.h"
#include "services/flowtable.h"
#include "services/stage.h"

static char dir[] = "/tmp/rdm-policy-XXXXXX";
static char err[1024];

static inline void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static inline void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", dir);
}

/* Writes text to dir/name; returns the path (static buffer). */
static inline const char *put(const char *name, const char *text)
{
	static char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	cr_assert_not_null(fp);
	cr_assert_eq(fputs(text, fp) >= 0, 1);
	fclose(fp);
	return path;
}

/* ---- the stage ---------------------------------------------------------------------- */

struct stg {
	const struct rdm_stage_ops *ops;
	struct rdm_ydoc *doc;
	void *conf, *rt;
	uint64_t ctr[64];
	char names[64][40];
	int n_ctr;
};

/* The stage's conf from a stage mapping (YAML text) in dir/chain.yaml; NULL with err. */
static inline void *stage_conf(struct stg *s, const char *stage_yaml)
{
	char name[512];

	s->ops = rdm_stage_find("policy");
	cr_assert_not_null(s->ops);
	snprintf(name, sizeof(name), "%s/chain.yaml", dir);
	s->doc = rdm_ydoc_parse_string(name, stage_yaml, err, sizeof(err));
	cr_assert_not_null(s->doc, "%s", err);
	err[0] = '\0';
	s->conf = s->ops->conf_new(s->doc, rdm_ydoc_root(s->doc), err, sizeof(err));
	return s->conf;
}

/* A running stage whose policy file (dir/policy.yaml) holds text, with flow table fc. */
static inline void start_with(struct stg *s, const char *policy, const struct rdm_flow_conf *fc)
{
	struct rdm_stage_env env = {.node_id = 1, .node_name = "t", .worker = 0, .flows = fc};

	memset(s, 0, sizeof(*s));
	put("policy.yaml", policy);
	cr_assert_not_null(stage_conf(s, "name: policy\nfile: policy.yaml\n"), "%s", err);
	s->rt = s->ops->init(s->conf, &env);
	cr_assert_not_null(s->rt);
}

/* The same with a table of 64 flows that evicts. */
static inline void start(struct stg *s, const char *policy)
{
	struct rdm_flow_conf fc = {.max_flows = 64};

	start_with(s, policy, &fc);
}

static inline void stop(struct stg *s)
{
	s->ops->deinit(s->rt);
	s->ops->conf_free(s->conf);
	rdm_ydoc_free(s->doc);
}

static inline int run(struct stg *s, struct rdm_frame *f)
{
	int v = -99;

	s->ops->process(s->rt, &f, 1, &v);
	return v;
}

static inline void emit(void *arg, const char *name, uint64_t v)
{
	struct stg *s = arg;

	cr_assert_lt(s->n_ctr, 64);
	snprintf(s->names[s->n_ctr], sizeof(s->names[0]), "%s", name);
	s->ctr[s->n_ctr++] = v;
}

static inline uint64_t counter(struct stg *s, const char *name)
{
	s->n_ctr = 0;
	s->ops->report(s->rt, emit, s);
	for (int i = 0; i < s->n_ctr; i++)
		if (!strcmp(s->names[i], name))
			return s->ctr[i];
	cr_assert_fail("no counter %s", name);
	return 0;
}

/* ---- packets and frames ---------------------------------------------------------------- */

struct pk {
	uint8_t b[1600];
	struct rdm_frame f;
};

/* Independent of the stage's: the RFC 1071 sum, folded, not inverted. */
static inline uint16_t sum(const uint8_t *p, size_t n, uint32_t s)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* The sum of the pseudo-header of an IP packet's upper layer. */
static inline uint32_t pseudo(const uint8_t *ip, uint8_t proto, uint32_t len)
{
	uint32_t s = proto + (len >> 16) + (len & 0xffff);

	if ((ip[0] >> 4) == 4)
		return s + sum(ip + 12, 8, 0);
	return s + sum(ip + 8, 32, 0);
}

struct spec {
	int v6;
	uint8_t proto;
	const char *src, *dst;
	uint16_t sport, dport;
	uint8_t flags;	   /* TCP */
	uint32_t seq, ack; /* TCP */
	uint32_t payload;  /* bytes after the L4 header */
	uint8_t icmp_type; /* ICMP/ICMPv6 */
	uint16_t frag_off; /* IPv4 fragment offset, in 8-byte units */
	uint8_t ip_opts;   /* IPv4 option bytes (multiple of 4) */
};

/* Builds the packet of sp into p->b and a frame for it with its flow key. */
static inline void mk(struct pk *p, const struct spec *sp)
{
	uint32_t hl = sp->v6 ? 40 : 20u + sp->ip_opts, l4len, len;
	uint8_t *ip = p->b, *u;

	memset(p->b, 0, sizeof(p->b));
	l4len = sp->proto == IPPROTO_TCP ? 20 : 8;
	len = hl + l4len + sp->payload;
	if (sp->v6) {
		ip[0] = 0x60;
		rdm_put_be16(ip + 4, (uint16_t)(len - 40));
		ip[6] = sp->proto;
		ip[7] = 64;
		cr_assert_eq(inet_pton(AF_INET6, sp->src, ip + 8), 1);
		cr_assert_eq(inet_pton(AF_INET6, sp->dst, ip + 24), 1);
	} else {
		ip[0] = (uint8_t)(0x40 | hl / 4);
		rdm_put_be16(ip + 2, (uint16_t)len);
		rdm_put_be16(ip + 4, 0x1234);
		rdm_put_be16(ip + 6, sp->frag_off);
		ip[8] = 64;
		ip[9] = sp->proto;
		cr_assert_eq(inet_pton(AF_INET, sp->src, ip + 12), 1);
		cr_assert_eq(inet_pton(AF_INET, sp->dst, ip + 16), 1);
		for (uint32_t i = 20; i < hl; i++)
			ip[i] = 1; /* NOP options */
		rdm_put_be16(ip + 10, (uint16_t)~sum(ip, hl, 0));
	}
	u = ip + hl;
	for (uint32_t i = 0; i < sp->payload; i++)
		u[l4len + i] = (uint8_t)('a' + i % 26);
	switch (sp->proto) {
	case IPPROTO_TCP:
		rdm_put_be16(u, sp->sport);
		rdm_put_be16(u + 2, sp->dport);
		rdm_put_be32(u + 4, sp->seq);
		rdm_put_be32(u + 8, sp->ack);
		u[12] = 5 << 4;
		u[13] = sp->flags;
		rdm_put_be16(u + 14, 65535);
		rdm_put_be16(u + 16, (uint16_t)~sum(u, l4len + sp->payload,
						    pseudo(ip, IPPROTO_TCP, l4len + sp->payload)));
		break;
	case IPPROTO_UDP:
		rdm_put_be16(u, sp->sport);
		rdm_put_be16(u + 2, sp->dport);
		rdm_put_be16(u + 4, (uint16_t)(8 + sp->payload));
		rdm_put_be16(u + 6, (uint16_t)~sum(u, 8 + sp->payload,
						   pseudo(ip, IPPROTO_UDP, 8 + sp->payload)));
		break;
	default:
		u[0] = sp->icmp_type;
		break;
	}
	rdm_frame_init(&p->f, 1, 255, sp->v6 ? RDM_NSH_NP_IPV6 : RDM_NSH_NP_IPV4);
	p->f.pkt = p->b;
	p->f.pkt_len = len;
	cr_assert_eq(rdm_pkt_flow_key(p->b, len, &p->f.key), 0);
	p->f.flow_id = rdm_flow_hash(&p->f.key);
	p->f.present = RDM_F_FLOW_KEY | RDM_F_FLOW_ID;
}

static inline struct rdm_str S(const char *s) {
	return (struct rdm_str){s, (uint8_t)strlen(s)};
}

/* A TCP SYN 10.0.0.1:40000 -> 192.0.2.10:443 (vary sport to get another flow). */
static inline void
syn4(struct pk *p, uint16_t sport)
{
	struct spec sp = {.proto = IPPROTO_TCP,
			  .src = "10.0.0.1",
			  .dst = "192.0.2.10",
			  .sport = sport,
			  .dport = 443,
			  .flags = RDM_TCP_SYN,
			  .seq = 1000};
	mk(p, &sp);
}

static inline void with_dpi_done(struct pk *p)
{
	p->f.flags = RDM_FF_DPI_DONE;
	p->f.present |= RDM_F_FLAGS;
}

static inline void with_host(struct pk *p, const char *h)
{
	p->f.host = S(h);
	p->f.present |= RDM_F_HOST;
}

static inline void with_app(struct pk *p, const char *name)
{
	p->f.app_name = S(name);
	p->f.present |= RDM_F_APP_NAME;
}

static inline void with_rule_str(const struct rdm_frame *f, const char *name)
{
	cr_assert(f->present & RDM_F_RULE);
	cr_assert_eq(f->rule.len, strlen(name), "rule '%.*s', want '%s'", f->rule.len, f->rule.p,
		     name);
	cr_assert_eq(memcmp(f->rule.p, name, f->rule.len), 0, "rule '%.*s', want '%s'", f->rule.len,
		     f->rule.p, name);
}

/* The verdict a fresh stage with one deny rule (match given as YAML flow mapping
 * text) and default allow gives the frame p. */
static inline int one_rule(const char *match, struct pk *p)
{
	struct stg s;
	char pol[2048];
	int v;

	snprintf(pol, sizeof(pol),
		 "default: allow\nrules:\n  - name: r\n    match: %s\n    action: deny\n", match);
	start(&s, pol);
	p->f.flags &= ~RDM_FF_NOTICE; /* the frame stands for a new packet each time */
	v = run(&s, &p->f);
	stop(&s);
	return v;
}

#define HIT(match, p) cr_assert_eq(one_rule(match, p), RDM_STAGE_DROP, "%s should match", match)
#define MISS(match, p)                                                                             \
	cr_assert_eq(one_rule(match, p), RDM_STAGE_PASS, "%s should not match", match)

#endif
