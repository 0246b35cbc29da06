/* The policy stage (services/policy.c) and its rules (services/policy_rules.c): every
 * match field, rule order, pending L7 decisions, the decision cache, reloads, and the
 * replies of reject (checked by recomputing their checksums). Policies are written to a
 * temporary directory per test; the stage is driven through its ops table as the node
 * drives it. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/pkt.h"
#include "lib/yaml.h"
#include "services/flowtable.h"
#include "services/stage.h"

static char dir[] = "/tmp/rdm-policy-XXXXXX";
static char err[1024];

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", dir);
}

TestSuite(policy, .init = setup, .fini = teardown, .timeout = 20);

/* Writes text to dir/name; returns the path (static buffer). */
static const char *put(const char *name, const char *text)
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
static void *stage_conf(struct stg *s, const char *stage_yaml)
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

/* A running stage whose policy file (dir/policy.yaml) holds text. */
static void start(struct stg *s, const char *policy)
{
	struct rdm_flow_conf fc = {.max_flows = 64};
	struct rdm_stage_env env = {.node_id = 1, .node_name = "t", .worker = 0, .flows = &fc};

	memset(s, 0, sizeof(*s));
	put("policy.yaml", policy);
	cr_assert_not_null(stage_conf(s, "name: policy\nfile: policy.yaml\n"), "%s", err);
	s->rt = s->ops->init(s->conf, &env);
	cr_assert_not_null(s->rt);
}

static void stop(struct stg *s)
{
	s->ops->deinit(s->rt);
	s->ops->conf_free(s->conf);
	rdm_ydoc_free(s->doc);
}

static int run(struct stg *s, struct rdm_frame *f)
{
	int v = -99;

	s->ops->process(s->rt, &f, 1, &v);
	return v;
}

static void emit(void *arg, const char *name, uint64_t v)
{
	struct stg *s = arg;

	cr_assert_lt(s->n_ctr, 64);
	snprintf(s->names[s->n_ctr], sizeof(s->names[0]), "%s", name);
	s->ctr[s->n_ctr++] = v;
}

static uint64_t counter(struct stg *s, const char *name)
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

static void w16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void w32(uint8_t *p, uint32_t v)
{
	w16(p, (uint16_t)(v >> 16));
	w16(p + 2, (uint16_t)v);
}

static uint16_t r16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t r32(const uint8_t *p)
{
	return (uint32_t)r16(p) << 16 | r16(p + 2);
}

/* Independent of the stage's: the RFC 1071 sum, folded, not inverted. */
static uint16_t sum(const uint8_t *p, size_t n, uint32_t s)
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
static uint32_t pseudo(const uint8_t *ip, uint8_t proto, uint32_t len)
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
static void mk(struct pk *p, const struct spec *sp)
{
	uint32_t hl = sp->v6 ? 40 : 20u + sp->ip_opts, l4len, len;
	uint8_t *ip = p->b, *u;

	memset(p->b, 0, sizeof(p->b));
	l4len = sp->proto == IPPROTO_TCP ? 20 : 8;
	len = hl + l4len + sp->payload;
	if (sp->v6) {
		ip[0] = 0x60;
		w16(ip + 4, (uint16_t)(len - 40));
		ip[6] = sp->proto;
		ip[7] = 64;
		cr_assert_eq(inet_pton(AF_INET6, sp->src, ip + 8), 1);
		cr_assert_eq(inet_pton(AF_INET6, sp->dst, ip + 24), 1);
	} else {
		ip[0] = (uint8_t)(0x40 | hl / 4);
		w16(ip + 2, (uint16_t)len);
		w16(ip + 4, 0x1234);
		w16(ip + 6, sp->frag_off);
		ip[8] = 64;
		ip[9] = sp->proto;
		cr_assert_eq(inet_pton(AF_INET, sp->src, ip + 12), 1);
		cr_assert_eq(inet_pton(AF_INET, sp->dst, ip + 16), 1);
		for (uint32_t i = 20; i < hl; i++)
			ip[i] = 1; /* NOP options */
		w16(ip + 10, (uint16_t)~sum(ip, hl, 0));
	}
	u = ip + hl;
	for (uint32_t i = 0; i < sp->payload; i++)
		u[l4len + i] = (uint8_t)('a' + i % 26);
	switch (sp->proto) {
	case IPPROTO_TCP:
		w16(u, sp->sport);
		w16(u + 2, sp->dport);
		w32(u + 4, sp->seq);
		w32(u + 8, sp->ack);
		u[12] = 5 << 4;
		u[13] = sp->flags;
		w16(u + 14, 65535);
		w16(u + 16, (uint16_t)~sum(u, l4len + sp->payload,
					   pseudo(ip, IPPROTO_TCP, l4len + sp->payload)));
		break;
	case IPPROTO_UDP:
		w16(u, sp->sport);
		w16(u + 2, sp->dport);
		w16(u + 4, (uint16_t)(8 + sp->payload));
		w16(u + 6,
		    (uint16_t)~sum(u, 8 + sp->payload, pseudo(ip, IPPROTO_UDP, 8 + sp->payload)));
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

static struct rdm_str S(const char *s) {
	return (struct rdm_str){s, (uint8_t)strlen(s)};
}

/* A TCP SYN 10.0.0.1:40000 -> 192.0.2.10:443 (vary sport to get another flow). */
static void
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

static void with_dpi_done(struct pk *p)
{
	p->f.flags = RDM_FF_DPI_DONE;
	p->f.present |= RDM_F_FLAGS;
}

static void with_host(struct pk *p, const char *h)
{
	p->f.host = S(h);
	p->f.present |= RDM_F_HOST;
}

static void with_app(struct pk *p, const char *name)
{
	p->f.app_name = S(name);
	p->f.present |= RDM_F_APP_NAME;
}

static void with_rule_str(const struct rdm_frame *f, const char *name)
{
	cr_assert(f->present & RDM_F_RULE);
	cr_assert_eq(f->rule.len, strlen(name), "rule '%.*s', want '%s'", f->rule.len, f->rule.p,
		     name);
	cr_assert_eq(memcmp(f->rule.p, name, f->rule.len), 0, "rule '%.*s', want '%s'", f->rule.len,
		     f->rule.p, name);
}

/* The verdict a fresh stage with one deny rule (match given as YAML flow mapping
 * text) and default allow gives the frame p. */
static int one_rule(const char *match, struct pk *p)
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

/* ---- match fields, one at a time ---- */

Test(policy, tenant_user_group_match_alone)
{
	struct pk p;

	syn4(&p, 40000);
	MISS("{tenant: acme}", &p); /* no identity: no match */
	p.f.tenant = S("acme");
	p.f.user = S("alice");
	p.f.groups[0] = S("sales");
	p.f.groups[1] = S("eng");
	p.f.n_groups = 2;
	p.f.present |= RDM_F_TENANT | RDM_F_USER | RDM_F_GROUPS;
	HIT("{tenant: acme}", &p);
	MISS("{tenant: globex}", &p);
	MISS("{tenant: ACME}", &p);
	HIT("{user: alice}", &p);
	MISS("{user: bob}", &p);
	HIT("{group: eng}", &p);
	HIT("{group: sales}", &p);
	MISS("{group: ops}", &p);
}

Test(policy, app_matches_full_name_or_either_part_any_case)
{
	struct pk p;

	syn4(&p, 40000);
	with_app(&p, "TLS.Facebook");
	HIT("{app: TLS.Facebook}", &p);
	HIT("{app: facebook}", &p);
	HIT("{app: TLS}", &p);
	MISS("{app: Google}", &p);
	MISS("{app: TLS.Google}", &p);
	syn4(&p, 40000);
	with_app(&p, "DNS");
	HIT("{app: dns}", &p);
}

Test(policy, category_matches_any_case)
{
	struct pk p;

	syn4(&p, 40000);
	p.f.category = S("SocialNetwork");
	p.f.category_id = 6;
	p.f.present |= RDM_F_CATEGORY;
	HIT("{category: socialnetwork}", &p);
	MISS("{category: Web}", &p);
}

Test(policy, dst_cidr_v4_and_v6)
{
	struct pk p;
	struct spec v6 = {.v6 = 1,
			  .proto = IPPROTO_UDP,
			  .src = "2001:db8::1",
			  .dst = "fd00::53",
			  .sport = 5000,
			  .dport = 53};

	syn4(&p, 40000); /* to 192.0.2.10 */
	HIT("{dst: 192.0.2.0/24}", &p);
	HIT("{dst: 192.0.2.10}", &p);
	HIT("{dst: 0.0.0.0/0}", &p);
	MISS("{dst: 192.0.3.0/24}", &p);
	MISS("{dst: 192.0.2.11}", &p);
	MISS("{dst: '::/0'}", &p); /* another family never matches */
	mk(&p, &v6);
	HIT("{dst: 'fd00::/8'}", &p);
	HIT("{dst: 'fd00::53/128'}", &p);
	MISS("{dst: 'fd01::/16'}", &p);
	MISS("{dst: 0.0.0.0/0}", &p);
	HIT("{dst: 'fc00::/7'}", &p);
}

Test(policy, port_single_and_range)
{
	struct pk p;
	struct spec sp = {.proto = IPPROTO_UDP,
			  .src = "10.0.0.1",
			  .dst = "10.0.0.2",
			  .sport = 1234,
			  .dport = 8050};

	mk(&p, &sp);
	HIT("{port: 8050}", &p);
	HIT("{port: 8000-8100}", &p);
	MISS("{port: 8051-8100}", &p);
	MISS("{port: 1234}", &p); /* the source port is not the destination */
	sp.dport = 8101;
	mk(&p, &sp);
	MISS("{port: 8000-8100}", &p);
	sp.proto = IPPROTO_ICMP;
	sp.dport = 0;
	mk(&p, &sp);
	MISS("{port: 0-65535}", &p); /* no ports, nothing to compare */
}

Test(policy, proto_by_name_and_number)
{
	struct pk p;
	struct spec sp = {
	    .proto = IPPROTO_UDP, .src = "10.0.0.1", .dst = "10.0.0.2", .sport = 1234, .dport = 53};

	mk(&p, &sp);
	HIT("{proto: udp}", &p);
	HIT("{proto: UDP}", &p);
	HIT("{proto: 17}", &p);
	MISS("{proto: tcp}", &p);
	sp.proto = IPPROTO_ICMP;
	sp.icmp_type = 8;
	mk(&p, &sp);
	HIT("{proto: icmp}", &p);
	MISS("{proto: icmpv6}", &p);
}

Test(policy, host_exact_and_suffix)
{
	struct pk p;

	syn4(&p, 40000);
	with_host(&p, "bad.test");
	HIT("{host: bad.test}", &p);
	HIT("{host: BAD.test}", &p);
	HIT("{host: '*.bad.test'}", &p); /* the suffix itself */
	MISS("{host: '*.ad.test'}", &p);
	MISS("{host: good.test}", &p);
	syn4(&p, 40000);
	with_host(&p, "A.B.Bad.Test.");
	HIT("{host: '*.bad.test'}", &p);
	MISS("{host: bad.test}", &p);
	syn4(&p, 40000);
	with_host(&p, "notbad.test");
	MISS("{host: '*.bad.test'}", &p);
	syn4(&p, 40000);
	with_host(&p, "bad.test:8080"); /* an HTTP Host with a port */
	HIT("{host: bad.test}", &p);
}

Test(policy, host_list_file)
{
	struct pk p;

	put("hosts.txt", "# blocked\n\n  casino.test   # exact\n*.bet.test\n\tEXAMPLE.org\n");
	syn4(&p, 40000);
	with_host(&p, "casino.test");
	HIT("{host: {file: hosts.txt}}", &p);
	with_host(&p, "www.casino.test");
	MISS("{host: {file: hosts.txt}}", &p);
	with_host(&p, "live.bet.test");
	HIT("{host: [{file: hosts.txt}]}", &p);
	with_host(&p, "example.org");
	HIT("{host: [other.test, {file: hosts.txt}]}", &p);
	with_host(&p, "other.test");
	HIT("{host: [other.test, {file: hosts.txt}]}", &p);
}

/* ---- combining ---- */

Test(policy, list_values_are_or_fields_are_and)
{
	struct pk p;

	syn4(&p, 40000); /* tcp to 192.0.2.10:443 */
	p.f.tenant = S("acme");
	p.f.present |= RDM_F_TENANT;
	HIT("{port: [80, 443]}", &p);
	HIT("{tenant: [globex, acme]}", &p);
	MISS("{port: [80, 8443]}", &p);
	HIT("{tenant: acme, port: 443, proto: tcp, dst: 192.0.2.0/24}", &p);
	MISS("{tenant: acme, port: 443, proto: udp}", &p);
	MISS("{tenant: globex, port: 443}", &p);
	HIT("{}", &p); /* no match keys: everything */
}

Test(policy, first_match_wins_and_default_applies)
{
	struct stg s;
	struct pk p;

	start(&s, "default: deny\n"
		  "rules:\n"
		  "  - {name: web-log, match: {port: 443}, action: log}\n"
		  "  - {name: web-deny, match: {proto: tcp}, action: deny}\n"
		  "  - {name: dns, match: {port: 53}, action: allow}\n");
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.verdict, RDM_V_LOG);
	cr_assert_eq(p.f.rule_id, 1);
	with_rule_str(&p.f, "web-log");

	struct spec sp = {.proto = IPPROTO_TCP,
			  .src = "10.0.0.1",
			  .dst = "10.0.0.2",
			  .sport = 1,
			  .dport = 53,
			  .flags = RDM_TCP_SYN};
	mk(&p, &sp);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP); /* tcp/53: web-deny before dns */
	cr_assert_eq(p.f.rule_id, 2);

	sp.proto = IPPROTO_UDP;
	mk(&p, &sp);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.verdict, RDM_V_ALLOW);
	cr_assert_eq(p.f.rule_id, 3);
	with_rule_str(&p.f, "dns");

	sp.dport = 54;
	mk(&p, &sp);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(p.f.verdict, RDM_V_DENY);
	cr_assert_eq(p.f.rule_id, 0);
	with_rule_str(&p.f, "default");
	cr_assert_eq(counter(&s, "rule_1_hits"), 1);
	cr_assert_eq(counter(&s, "rule_2_hits"), 1);
	cr_assert_eq(counter(&s, "rule_3_hits"), 1);
	cr_assert_eq(counter(&s, "default_hits"), 1);
	cr_assert_eq(counter(&s, "denied"), 2);
	cr_assert_eq(counter(&s, "logged"), 1);
	cr_assert_eq(counter(&s, "allowed"), 1);
	stop(&s);
}

Test(policy, default_allow_writes_verdict_and_rule)
{
	struct stg s;
	struct pk p;

	start(&s, "default: allow\n");
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert(p.f.present & RDM_F_VERDICT);
	cr_assert_eq(p.f.verdict, RDM_V_ALLOW);
	cr_assert_eq(p.f.rule_id, 0);
	with_rule_str(&p.f, "default");
	cr_assert_eq(counter(&s, "rules"), 0);
	stop(&s);
}

Test(policy, reply_direction_uses_the_initiators_orientation)
{
	struct stg s;
	struct pk p;
	struct spec back = {.proto = IPPROTO_TCP,
			    .src = "192.0.2.10",
			    .dst = "10.0.0.1",
			    .sport = 443,
			    .dport = 40000,
			    .flags = RDM_TCP_SYN | RDM_TCP_ACK};

	start(&s, "rules:\n  - {name: web, match: {dst: 192.0.2.10, port: 443}, action: log}\n");
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.rule_id, 1);
	mk(&p, &back);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.verdict, RDM_V_LOG);
	cr_assert_eq(p.f.rule_id, 1);
	stop(&s);

	/* Even when the reply is the first packet evaluated under these rules. */
	start(&s, "default: allow\nrules:\n  - {name: w, match: {port: 443}, action: deny}\n");
	syn4(&p, 40000);
	p.f.tenant = S("t");
	p.f.present |= RDM_F_TENANT;
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	mk(&p, &back);
	p.f.tenant = S("t2"); /* new state: evaluated again, still the client's port 443 */
	p.f.present |= RDM_F_TENANT;
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "evaluations"), 2);
	stop(&s);
}

/* ---- pending L7 decisions and the cache ---- */

static const char *const l7_policy =
    "default: allow\n"
    "pending_packets: 3\n"
    "rules:\n"
    "  - {name: no-bad, match: {host: '*.blocked.test'}, action: reject}\n"
    "  - {name: web, match: {port: 443}, action: allow}\n";

Test(policy, pending_then_decided_when_the_host_arrives)
{
	struct stg s;
	struct pk p;

	start(&s, l7_policy);
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_not(p.f.present & RDM_F_VERDICT, "pending writes no verdict");
	cr_assert_eq(counter(&s, "pending_pass"), 1);

	/* The ClientHello carries the SNI: decided on that packet, and rejected. */
	struct spec ch = {.proto = IPPROTO_TCP,
			  .src = "10.0.0.1",
			  .dst = "192.0.2.10",
			  .sport = 40000,
			  .dport = 443,
			  .flags = RDM_TCP_ACK | 0x08,
			  .seq = 1001,
			  .ack = 5001,
			  .payload = 200};
	mk(&p, &ch);
	with_host(&p, "www.blocked.test");
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_REPLY);
	cr_assert_eq(p.f.verdict, RDM_V_REJECT);
	with_rule_str(&p.f, "no-bad");
	cr_assert_eq(counter(&s, "replies_tcp_rst"), 1);
	cr_assert_eq(counter(&s, "rejected"), 1);

	/* Another flow whose host is fine: allowed by the port rule. */
	syn4(&p, 40001);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	ch.sport = 40001;
	mk(&p, &ch);
	with_host(&p, "fine.test");
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.verdict, RDM_V_ALLOW);
	with_rule_str(&p.f, "web");
	cr_assert_eq(counter(&s, "pending_pass"), 2);
	stop(&s);
}

Test(policy, pending_budget_then_final)
{
	struct stg s;
	struct pk p;

	start(&s, l7_policy); /* pending_packets: 3 */
	for (int i = 0; i < 3; i++) {
		syn4(&p, 40000);
		cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
		cr_assert_not(p.f.present & RDM_F_VERDICT);
	}
	cr_assert_eq(counter(&s, "pending_pass"), 3);
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert(p.f.present & RDM_F_VERDICT, "the budget is spent: decided");
	with_rule_str(&p.f, "web");
	cr_assert_eq(counter(&s, "pending_pass"), 3);

	/* DPI done without a host decides at once too. */
	syn4(&p, 40001);
	with_dpi_done(&p);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	with_rule_str(&p.f, "web");
	cr_assert_eq(counter(&s, "pending_pass"), 3);
	stop(&s);
}

Test(policy, cache_hits_until_new_state_arrives)
{
	struct stg s;
	struct pk p;

	start(&s, "rules:\n"
		  "  - {name: fb, match: {app: Facebook}, action: deny}\n"
		  "  - {name: all, action: log}\n");
	syn4(&p, 40000);
	with_dpi_done(&p); /* decidable without the app: not Facebook */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	with_rule_str(&p.f, "all");
	for (int i = 0; i < 4; i++) {
		syn4(&p, 40000);
		with_dpi_done(&p);
		cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
		with_rule_str(&p.f, "all");
	}
	cr_assert_eq(counter(&s, "evaluations"), 1);
	cr_assert_eq(counter(&s, "cache_hits"), 4);

	/* A packet with less state (the reply direction, say) is not news. */
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(counter(&s, "evaluations"), 1);

	/* The app arrives: evaluated again, and now denied. */
	syn4(&p, 40000);
	with_dpi_done(&p);
	with_app(&p, "TLS.Facebook");
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "evaluations"), 2);
	syn4(&p, 40000);
	with_dpi_done(&p);
	with_app(&p, "TLS.Facebook");
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "evaluations"), 2);
	cr_assert_eq(counter(&s, "cache_hits"), 6);
	cr_assert_eq(counter(&s, "frames"), 8);
	stop(&s);
}

/* ---- reload ---- */

static void *reload(struct stg *s, const char *policy)
{
	put("policy.yaml", policy);
	err[0] = '\0';
	return s->ops->conf_reload(s->conf, err, sizeof(err));
}

/* Swaps in c as the node does: the worker switches, then the old conf goes. */
static void swap(struct stg *s, void *c)
{
	s->ops->conf_swap(s->rt, c);
	s->ops->conf_free(s->conf);
	s->conf = c;
}

Test(policy, reload_keeps_decided_flows_unless_reevaluate)
{
	struct stg s;
	struct pk p;
	void *c;

	start(&s, "rules:\n  - {name: web-ok, match: {port: 443}, action: allow}\n");
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);

	c = reload(&s, "rules:\n  - {name: web-no, match: {port: 443}, action: deny}\n");
	cr_assert_not_null(c, "%s", err);
	swap(&s, c);
	cr_assert_eq(counter(&s, "reloads"), 1);
	syn4(&p, 40000); /* decided before: keeps its verdict and names its old rule */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.verdict, RDM_V_ALLOW);
	with_rule_str(&p.f, "web-ok");
	syn4(&p, 40001); /* a new flow: the new rules */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(p.f.rule_id, 1);

	c = reload(&s, "reevaluate: true\n"
		       "rules:\n  - {name: web-no2, match: {port: 443}, action: deny}\n");
	cr_assert_not_null(c, "%s", err);
	swap(&s, c);
	syn4(&p, 40000); /* now re-decided */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	with_rule_str(&p.f, "web-no2");
	stop(&s);
}

Test(policy, broken_reload_keeps_the_old_policy)
{
	struct stg s;
	struct pk p;
	void *c;

	start(&s, "rules:\n  - {name: web, match: {port: 443}, action: deny}\n");
	c = reload(&s, "rules:\n  - {name: web, match: {port: 443}, action: dney}\n");
	cr_assert_null(c);
	cr_assert(strstr(err, "policy.yaml:2:"), "%s", err);
	cr_assert(strstr(err, "did you mean 'deny'"), "%s", err);
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "reloads"), 0);
	stop(&s);
}

Test(policy, inline_rules_reload_is_a_no_op_that_says_so)
{
	struct stg s;
	struct pk p;
	struct rdm_stage_env env = {0};

	memset(&s, 0, sizeof(s));
	cr_assert_not_null(stage_conf(&s, "name: policy\n"
					  "default: deny\n"
					  "rules:\n"
					  "  - {name: web, match: {port: 443}, action: allow}\n"),
			   "%s", err);
	s.rt = s.ops->init(s.conf, &env);
	cr_assert_not_null(s.rt);
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_null(s.ops->conf_reload(s.conf, err, sizeof(err)));
	cr_assert(strstr(err, "chain.yaml:1:1: the policy is inline"), "%s", err);
	stop(&s);
}

/* ---- actions and replies ---- */

Test(policy, deny_drops_every_packet_of_the_flow)
{
	struct stg s;
	struct pk p;

	start(&s, "rules:\n  - {name: no-web, match: {port: 443}, action: deny}\n");
	for (int i = 0; i < 3; i++) {
		syn4(&p, 40000);
		cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
		cr_assert_eq(p.f.verdict, RDM_V_DENY);
	}
	cr_assert_eq(counter(&s, "denied"), 3);
	stop(&s);
}

/* Checks that r (the frame after reject) is a valid RST to the sender of orig. */
static void check_rst(const struct rdm_frame *r, const uint8_t *orig, int v6, uint32_t seq,
		      uint32_t ack, uint8_t flags)
{
	const uint8_t *ip = r->pkt, *t;
	uint32_t hl = v6 ? 40 : 20;

	cr_assert_eq(r->pkt_len, hl + 20);
	if (v6) {
		cr_assert_eq(ip[0] >> 4, 6);
		cr_assert_eq(r16(ip + 4), 20);
		cr_assert_eq(ip[6], IPPROTO_TCP);
		cr_assert_eq(memcmp(ip + 8, orig + 24, 16), 0, "src is the original dst");
		cr_assert_eq(memcmp(ip + 24, orig + 8, 16), 0, "dst is the original src");
	} else {
		cr_assert_eq(ip[0], 0x45);
		cr_assert_eq(r16(ip + 2), 40);
		cr_assert_eq(ip[9], IPPROTO_TCP);
		cr_assert_eq(sum(ip, 20, 0), 0xffff, "IPv4 header checksum");
		cr_assert_eq(memcmp(ip + 12, orig + 16, 4), 0);
		cr_assert_eq(memcmp(ip + 16, orig + 12, 4), 0);
	}
	t = ip + hl;
	cr_assert_eq(r16(t), r16(orig + hl + 2), "sport is the original dport");
	cr_assert_eq(r16(t + 2), r16(orig + hl), "dport is the original sport");
	cr_assert_eq(r32(t + 4), seq, "seq %u, want %u", r32(t + 4), seq);
	cr_assert_eq(r32(t + 8), ack, "ack %u, want %u", r32(t + 8), ack);
	cr_assert_eq(t[13], flags);
	cr_assert_eq(t[12] >> 4, 5);
	cr_assert_eq(sum(t, 20, pseudo(ip, IPPROTO_TCP, 20)), 0xffff, "TCP checksum");
	cr_assert_eq(r->key.sport, r16(orig + hl + 2));
	cr_assert_eq(r->key.dport, r16(orig + hl));
	cr_assert_eq(memcmp(r->key.src, v6 ? orig + 24 : orig + 16, v6 ? 16 : 4), 0);
	cr_assert_eq(memcmp(r->key.dst, v6 ? orig + 8 : orig + 12, v6 ? 16 : 4), 0);
	cr_assert_eq(r->verdict, RDM_V_REJECT);
}

static void reject_tcp(int v6)
{
	struct stg s;
	struct pk p;
	uint8_t orig[1600];
	struct spec sp = {.v6 = v6,
			  .proto = IPPROTO_TCP,
			  .src = v6 ? "2001:db8::1" : "10.0.0.1",
			  .dst = v6 ? "2001:db8::2" : "10.0.0.2",
			  .sport = 40000,
			  .dport = 23,
			  .flags = RDM_TCP_SYN,
			  .seq = 0xfffffff0u};

	start(&s, "rules:\n  - {name: no-telnet, match: {port: 23}, action: reject}\n");
	/* A SYN without ACK: seq 0, ack = its seq + 1, RST|ACK. */
	mk(&p, &sp);
	memcpy(orig, p.b, sizeof(orig));
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_REPLY);
	check_rst(&p.f, orig, v6, 0, 0xfffffff1u, RDM_TCP_RST | RDM_TCP_ACK);
	with_rule_str(&p.f, "no-telnet");

	/* A segment with ACK and data, on a fresh flow: seq = its ack, RST alone. */
	sp.sport = 40001;
	sp.flags = RDM_TCP_ACK | 0x08;
	sp.seq = 77;
	sp.ack = 123456;
	sp.payload = 10;
	mk(&p, &sp);
	memcpy(orig, p.b, sizeof(orig));
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_REPLY);
	check_rst(&p.f, orig, v6, 123456, 0, RDM_TCP_RST);

	/* Data with FIN and no ACK: ack = seq + payload + 1. */
	sp.sport = 40002;
	sp.flags = RDM_TCP_FIN;
	sp.seq = 1000;
	sp.ack = 0;
	sp.payload = 7;
	mk(&p, &sp);
	memcpy(orig, p.b, sizeof(orig));
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_REPLY);
	check_rst(&p.f, orig, v6, 0, 1008, RDM_TCP_RST | RDM_TCP_ACK);
	cr_assert_eq(counter(&s, "replies_tcp_rst"), 3);
	stop(&s);
}

Test(policy, reject_tcp_v4_sends_a_valid_rst)
{
	reject_tcp(0);
}

Test(policy, reject_tcp_v6_sends_a_valid_rst)
{
	reject_tcp(1);
}

Test(policy, reject_rst_rate_limited_and_others_dropped)
{
	struct stg s;
	struct pk p;
	struct spec back = {.proto = IPPROTO_TCP,
			    .src = "192.0.2.10",
			    .dst = "10.0.0.1",
			    .sport = 443,
			    .dport = 40000,
			    .flags = RDM_TCP_ACK,
			    .ack = 5};

	start(&s, "rules:\n  - {name: r, match: {port: 443}, action: reject}\n");
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_REPLY);
	syn4(&p, 40000); /* the client retries at once: no second RST yet */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "reply_suppressed"), 1);
	mk(&p, &back); /* the server's packets are dropped */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "reply_suppressed"), 1);
	usleep(120 * 1000);
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_REPLY);
	cr_assert_eq(counter(&s, "replies_tcp_rst"), 2);
	cr_assert_eq(counter(&s, "rejected"), 4);
	stop(&s);
}

static void check_icmp(const struct rdm_frame *r, const uint8_t *orig, uint32_t orig_len, int v6)
{
	const uint8_t *ip = r->pkt, *u;
	uint32_t q;

	if (v6) {
		q = orig_len < 1232 ? orig_len : 1232;
		cr_assert_eq(r->pkt_len, 40 + 8 + q);
		cr_assert_eq(ip[0] >> 4, 6);
		cr_assert_eq(ip[6], IPPROTO_ICMPV6);
		cr_assert_eq(r16(ip + 4), 8 + q);
		cr_assert_eq(memcmp(ip + 8, orig + 24, 16), 0);
		cr_assert_eq(memcmp(ip + 24, orig + 8, 16), 0);
		u = ip + 40;
		cr_assert_eq(u[0], 1);
		cr_assert_eq(u[1], 1);
		cr_assert_eq(sum(u, 8 + q, pseudo(ip, IPPROTO_ICMPV6, 8 + q)), 0xffff,
			     "ICMPv6 checksum");
	} else {
		q = (uint32_t)(orig[0] & 15) * 4 + 8;
		cr_assert_eq(r->pkt_len, 20 + 8 + q);
		cr_assert_eq(ip[9], IPPROTO_ICMP);
		cr_assert_eq(r16(ip + 2), 28 + q);
		cr_assert_eq(sum(ip, 20, 0), 0xffff, "IPv4 header checksum");
		cr_assert_eq(memcmp(ip + 12, orig + 16, 4), 0);
		cr_assert_eq(memcmp(ip + 16, orig + 12, 4), 0);
		u = ip + 20;
		cr_assert_eq(u[0], 3);
		cr_assert_eq(u[1], 13);
		cr_assert_eq(sum(u, 8 + q, 0), 0xffff, "ICMP checksum");
	}
	cr_assert_eq(r32(u + 4), 0);
	cr_assert_eq(memcmp(u + 8, orig, q), 0, "quotes the original");
	cr_assert_eq(r->verdict, RDM_V_REJECT);
}

Test(policy, reject_udp_v4_sends_icmp_unreachable)
{
	struct stg s;
	struct pk p;
	uint8_t orig[1600];
	struct spec sp = {.proto = IPPROTO_UDP,
			  .src = "10.0.0.1",
			  .dst = "10.0.0.2",
			  .sport = 5353,
			  .dport = 53,
			  .payload = 100,
			  .ip_opts = 8};

	start(&s, "rules:\n  - {name: no-dns, match: {proto: udp, port: 53}, action: reject}\n");
	mk(&p, &sp);
	memcpy(orig, p.b, sizeof(orig));
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_REPLY);
	check_icmp(&p.f, orig, 136, 0);
	cr_assert_eq(p.f.key.sport, 53);
	cr_assert_eq(p.f.key.dport, 5353);
	mk(&p, &sp); /* later packets of the flow: dropped without a reply */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "replies_icmp"), 1);
	stop(&s);
}

Test(policy, reject_udp_v6_sends_icmpv6_unreachable)
{
	struct stg s;
	struct pk p;
	uint8_t orig[1600];
	struct spec sp = {.v6 = 1,
			  .proto = IPPROTO_UDP,
			  .src = "2001:db8::1",
			  .dst = "2001:db8::2",
			  .sport = 5353,
			  .dport = 53,
			  .payload = 40};

	start(&s, "rules:\n  - {name: no-dns, match: {port: 53}, action: reject}\n");
	mk(&p, &sp);
	memcpy(orig, p.b, sizeof(orig));
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_REPLY);
	check_icmp(&p.f, orig, 40 + 8 + 40, 1);

	/* A large packet is quoted only as far as 1280 bytes allow. */
	sp.sport = 5354;
	sp.payload = 1400;
	mk(&p, &sp);
	memcpy(orig, p.b, sizeof(orig));
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_REPLY);
	check_icmp(&p.f, orig, 40 + 8 + 1400, 1);
	cr_assert_eq(p.f.pkt_len, 1280);
	stop(&s);
}

Test(policy, no_reply_to_rst_icmp_errors_multicast_or_fragments)
{
	struct stg s;
	struct pk p;
	struct spec rst = {.proto = IPPROTO_TCP,
			   .src = "10.0.0.1",
			   .dst = "10.0.0.2",
			   .sport = 1,
			   .dport = 2,
			   .flags = RDM_TCP_RST};
	struct spec err4 = {
	    .proto = IPPROTO_ICMP, .src = "10.0.0.1", .dst = "10.0.0.2", .icmp_type = 3};
	struct spec echo4 = {
	    .proto = IPPROTO_ICMP, .src = "10.0.0.1", .dst = "10.0.0.3", .icmp_type = 8};
	struct spec err6 = {.v6 = 1,
			    .proto = IPPROTO_ICMPV6,
			    .src = "2001:db8::1",
			    .dst = "2001:db8::2",
			    .icmp_type = 1};
	struct spec mc = {
	    .proto = IPPROTO_UDP, .src = "10.0.0.1", .dst = "239.1.1.1", .sport = 1, .dport = 2};
	struct spec bc = {.proto = IPPROTO_UDP,
			  .src = "10.0.0.1",
			  .dst = "255.255.255.255",
			  .sport = 1,
			  .dport = 3};
	struct spec mc6 = {.v6 = 1,
			   .proto = IPPROTO_UDP,
			   .src = "2001:db8::1",
			   .dst = "ff02::1",
			   .sport = 1,
			   .dport = 2};
	struct spec frag = {.proto = IPPROTO_UDP,
			    .src = "10.0.0.9",
			    .dst = "10.0.0.2",
			    .sport = 1,
			    .dport = 2,
			    .frag_off = 100};

	start(&s, "default: reject\n");
	const struct spec *none[] = {&rst, &err4, &err6, &mc, &bc, &mc6, &frag};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		mk(&p, none[i]);
		cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP, "case %zu", i);
	}
	cr_assert_eq(counter(&s, "reply_suppressed"), 7);
	cr_assert_eq(counter(&s, "rejected"), 7);
	mk(&p, &echo4); /* a query, not an error: it gets its unreachable */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_REPLY);
	cr_assert_eq(counter(&s, "replies_icmp"), 1);
	stop(&s);
}

Test(policy, frame_without_a_key_gets_the_stateless_decision)
{
	struct stg s;
	struct rdm_frame f;
	uint8_t junk[8] = {0};

	start(&s,
	      "default: deny\nrules:\n  - {name: acme, match: {tenant: acme}, action: allow}\n");
	rdm_frame_init(&f, 1, 255, RDM_NSH_NP_ETH);
	f.pkt = junk;
	f.pkt_len = sizeof(junk);
	cr_assert_eq(run(&s, &f), RDM_STAGE_DROP);
	f.flags &= ~RDM_FF_NOTICE; /* the next packet */
	f.tenant = S("acme");
	f.present |= RDM_F_TENANT;
	cr_assert_eq(run(&s, &f), RDM_STAGE_PASS);
	cr_assert_eq(counter(&s, "no_key"), 2);
	stop(&s);
}

Test(policy, a_denied_packet_leaves_a_notice_that_later_policies_pass)
{
	struct stg s, later;
	struct pk p;

	start(&s, "default: allow\nrules:\n  - {name: no-web, match: {port: 443}, action: deny}\n");
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert(p.f.present & RDM_F_FLAGS);
	cr_assert(p.f.flags & RDM_FF_NOTICE, "the decision travels on as a notice");
	with_rule_str(&p.f, "no-web");
	stop(&s);
	/* A second policy stage downstream leaves the notice alone, even a deny-all one:
	 * the node sends notices on without their packet. */
	p.f.pkt_len = 0;
	start(&later, "default: deny\n");
	cr_assert_eq(run(&later, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(counter(&later, "denied"), 0);
	stop(&later);
}

Test(policy, a_notice_flag_on_a_packet_does_not_bypass_the_policy)
{
	struct stg s;
	struct pk p;

	start(&s, "default: deny\n");
	syn4(&p, 40000);
	p.f.flags = RDM_FF_NOTICE; /* forged upstream, with a packet behind it */
	p.f.present |= RDM_F_FLAGS;
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "denied"), 1);
	stop(&s);
}

Test(policy, batch_replies_each_get_their_own_buffer)
{
	struct stg s;
	struct pk p[3];
	struct rdm_frame *fs[3];
	int v[3];

	start(&s, "default: reject\n");
	for (int i = 0; i < 3; i++) {
		syn4(&p[i], (uint16_t)(41000 + i));
		fs[i] = &p[i].f;
	}
	s.ops->process(s.rt, fs, 3, v);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(v[i], RDM_STAGE_REPLY);
		cr_assert_eq(r16(fs[i]->pkt + 22), 41000 + i, "reply %d kept its own bytes", i);
	}
	stop(&s);
}

/* ---- configuration errors ---- */

/* The message after "DIR/policy.yaml" that loading policy must give. */
static const char *bad(const char *policy)
{
	struct stg s;
	char path[512];

	memset(&s, 0, sizeof(s));
	put("policy.yaml", policy);
	cr_assert_null(stage_conf(&s, "name: policy\nfile: policy.yaml\n"), "loaded");
	rdm_ydoc_free(s.doc);
	snprintf(path, sizeof(path), "%s/policy.yaml", dir);
	cr_assert_eq(strncmp(err, path, strlen(path)), 0, "'%s'", err);
	return err + strlen(path);
}

Test(policy, yaml_errors_name_file_line_and_column)
{
	cr_assert_str_eq(bad("defualt: allow\n"),
			 ":1:1: unknown key 'defualt' (did you mean 'default'?)");
	cr_assert_str_eq(bad("rules:\n  - name: a\n    mtach: {}\n    action: allow\n"),
			 ":3:5: unknown key 'mtach' (did you mean 'match'?)");
	cr_assert_str_eq(bad("rules:\n  - name: a\n    match: {prot: tcp}\n    action: allow\n"),
			 ":3:13: unknown key 'prot' (did you mean 'port'?)");
	cr_assert_str_eq(
	    bad("rules:\n  - name: a\n    match: {dst: 10.0.0.0/33}\n    action: allow\n"),
	    ":3:18: dst: '10.0.0.0/33': prefix length must be 0..32");
	cr_assert_str_eq(
	    bad("rules:\n  - name: a\n    match: {dst: 10.0.0.300}\n    action: allow\n"),
	    ":3:18: dst: '10.0.0.300' is not an IPv4 or IPv6 address or CIDR");
	cr_assert_str_eq(
	    bad("rules:\n  - name: a\n    match: {dst: 10.0.0.1/8}\n    action: allow\n"),
	    ":3:18: dst: '10.0.0.1/8' has bits set past the /8 prefix");
	cr_assert_str_eq(
	    bad("rules:\n  - name: a\n    match: {port: 9000-8000}\n    action: allow\n"),
	    ":3:19: port: '9000-8000': the range starts above its end");
	cr_assert_str_eq(
	    bad("rules:\n  - name: a\n    match: {port: [80, 70000]}\n    action: allow\n"),
	    ":3:24: port: '70000' is not a port (0..65535) or a range like 8000-8100");
	cr_assert_str_eq(bad("rules:\n  - {name: a, action: allow}\n  - {name: a, action: deny}\n"),
			 ":3:12: name: duplicate rule name 'a' (rule 1 has it)");
	cr_assert_str_eq(bad("rules:\n  - {name: a, action: drop}\n"),
			 ":2:23: action: unknown action 'drop' (allow, deny, reject or log)");
	cr_assert_str_eq(bad("default: rejct\n"),
			 ":1:10: default: unknown action 'rejct' (did you mean 'reject'?) (allow, "
			 "deny, reject or log)");
	cr_assert_str_eq(bad("rules:\n  - {name: a, match: {proto: tpc}, action: allow}\n"),
			 ":2:30: proto: unknown protocol 'tpc' (did you mean 'tcp'?) (tcp, udp, "
			 "icmp, icmpv6, sctp, udplite or a number 0..255)");
	cr_assert_str_eq(bad("rules:\n  - {name: a, match: {host: 'a.*.test'}, action: allow}\n"),
			 ":2:29: host: bad pattern 'a.*.test': '*' may only start a pattern, as "
			 "in *.example.com");
	cr_assert_str_eq(bad("rules:\n  - {name: a, match: {port: []}, action: allow}\n"),
			 ":2:29: port: an empty list matches nothing; leave the key out instead");
	cr_assert_str_eq(bad("rules:\n  - {match: {port: 1}, action: allow}\n"),
			 ":2:5: rule: needs a name");
	cr_assert_str_eq(bad("pending_packets: 70000\n"),
			 ":1:18: pending_packets: 70000 is out of range (0..65535)");
}

Test(policy, list_file_errors_name_the_list_file)
{
	struct stg s;
	char want[600];

	put("hosts.txt", "ok.test\n\n  bad host.test\n");
	memset(&s, 0, sizeof(s));
	put("policy.yaml",
	    "rules:\n  - {name: a, match: {host: {file: hosts.txt}}, action: deny}\n");
	cr_assert_null(stage_conf(&s, "name: policy\nfile: policy.yaml\n"));
	rdm_ydoc_free(s.doc);
	snprintf(want, sizeof(want), "%s/hosts.txt:3:3: bad host pattern: one pattern per line",
		 dir);
	cr_assert_str_eq(err, want);

	memset(&s, 0, sizeof(s));
	put("policy.yaml",
	    "rules:\n  - {name: a, match: {host: {file: nope.txt}}, action: deny}\n");
	cr_assert_null(stage_conf(&s, "name: policy\nfile: policy.yaml\n"));
	rdm_ydoc_free(s.doc);
	cr_assert(strstr(err, "policy.yaml:2:36: host: cannot read"), "%s", err);
	cr_assert(strstr(err, "No such file"), "%s", err);
}

Test(policy, stage_yaml_errors)
{
	struct stg s;

	memset(&s, 0, sizeof(s));
	cr_assert_null(stage_conf(&s, "name: policy\nfiel: x.yaml\n"));
	rdm_ydoc_free(s.doc);
	cr_assert(strstr(err, "chain.yaml:2:1: unknown key 'fiel' (did you mean 'file'?)"), "%s",
		  err);
	cr_assert_null(stage_conf(&s, "name: policy\nfile: p.yaml\nrules: []\n"));
	rdm_ydoc_free(s.doc);
	cr_assert(strstr(err, "chain.yaml:3:1: rules: goes in the policy file"), "%s", err);
	cr_assert_null(stage_conf(&s, "name: policy\n"));
	rdm_ydoc_free(s.doc);
	cr_assert(strstr(err, "chain.yaml:1:1: stage policy needs 'file'"), "%s", err);
	cr_assert_null(stage_conf(&s, "name: policy\nfile: missing.yaml\n"));
	rdm_ydoc_free(s.doc);
	cr_assert(strstr(err, "missing.yaml"), "%s", err);
}

Test(policy, example_config_loads)
{
	char err2[1024];
	struct rdm_ydoc *d = rdm_ydoc_parse_string(
	    "configs/chain.yaml", "name: policy\nfile: policy.yaml\n", err2, sizeof(err2));
	const struct rdm_stage_ops *ops = rdm_stage_find("policy");
	void *c;

	cr_assert_not_null(d);
	c = ops->conf_new(d, rdm_ydoc_root(d), err2, sizeof(err2));
	cr_assert_not_null(c, "%s", err2);
	ops->conf_free(c);
	rdm_ydoc_free(d);
}
