/* The policy stage (services/policy.c) at work: pending L7 decisions, the decision
 * cache, reloads, and the actions, with the replies of reject (checked by recomputing
 * their checksums). Policies are written to a temporary directory per test; the stage is
 * driven through its ops table as the node drives it (tests/lib/policy_stage.h). */
#include <criterion/criterion.h>

#include <unistd.h>

#include "tests/lib/policy_stage.h"

TestSuite(policy, .init = setup, .fini = teardown, .timeout = 20);

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

/* The same fields with another value are news too: the flow's values are hashed a word
 * at a time, and a change in any byte of them must count. */
Test(policy, a_changed_value_is_evaluated_again)
{
	/* The last byte, then a middle one: each is evaluated; the deny then holds. */
	static const char *const apps[] = {"TLS.Google", "TLS.Googlf", "TLS.Facebook",
					   "TLS.Google"};
	static const int want[] = {RDM_STAGE_PASS, RDM_STAGE_PASS, RDM_STAGE_DROP, RDM_STAGE_DROP};
	static const uint64_t evals[] = {1, 2, 3, 3};
	struct stg s;
	struct pk p;

	start(&s, "rules:\n"
		  "  - {name: fb, match: {app: Facebook}, action: deny}\n"
		  "  - {name: all, action: log}\n");
	for (int i = 0; i < 4; i++) {
		syn4(&p, 40001);
		with_dpi_done(&p);
		with_app(&p, apps[i]);
		cr_assert_eq(run(&s, &p.f), want[i], "%s", apps[i]);
		cr_assert_eq(counter(&s, "evaluations"), evals[i], "%s", apps[i]);
	}
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

/* A frame's state id (state_src) stands for its state's values: one the flow was
 * evaluated on is not hashed again (below, a frame that keeps the id with other values
 * shows it: the node never sends one, as transport/frame.h says). The decision written
 * gives one id out per state in and direction; another decision, or a reload, another. */
Test(policy, a_state_known_by_its_id_is_not_hashed_and_leaves_with_one_id)
{
	struct stg s;
	struct pk p;
	uint64_t out;
	void *c;

	start(&s, "rules:\n"
		  "  - {name: fb, match: {app: Facebook}, action: deny}\n"
		  "  - {name: all, action: log}\n");
	cr_assert(s.ops->keeps_state, "policy keeps its frames' state ids true itself");
	syn4(&p, 40000);
	with_dpi_done(&p);
	p.f.state_src = 7;
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	out = p.f.state_src;
	cr_assert(out != 0 && out != 7, "the verdict makes another state");
	syn4(&p, 40000);
	with_dpi_done(&p);
	p.f.state_src = 7;
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.state_src, out, "the same state in and decision: the same id out");
	syn4(&p, 40000);
	with_dpi_done(&p);
	with_app(&p, "TLS.Facebook");
	p.f.state_src = 7; /* the id it was evaluated on: its values are not read */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(counter(&s, "evaluations"), 1);
	syn4(&p, 40000);
	with_dpi_done(&p);
	with_app(&p, "TLS.Facebook");
	p.f.state_src = 8; /* another state: evaluated, denied, another id */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "evaluations"), 2);
	cr_assert(p.f.state_src != 0 && p.f.state_src != out);
	out = p.f.state_src;
	syn4(&p, 40000);
	with_dpi_done(&p);
	with_app(&p, "TLS.Facebook");
	p.f.state_src = 8;
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(p.f.state_src, out);
	cr_assert_eq(counter(&s, "evaluations"), 2);
	syn4(&p, 40000); /* an unknown state in: unknown out */
	with_dpi_done(&p);
	with_app(&p, "TLS.Facebook");
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(p.f.state_src, 0);

	c = reload(&s, "rules:\n  - {name: none, action: deny}\n");
	cr_assert_not_null(c, "%s", err);
	swap(&s, c);
	syn4(&p, 40001); /* a flow decided under the new policy */
	p.f.state_src = 9;
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	out = p.f.state_src;
	cr_assert_neq(out, 0);
	syn4(&p, 40000); /* decided under the replaced one: its rule's name is a copy */
	with_dpi_done(&p);
	with_app(&p, "TLS.Facebook");
	p.f.state_src = 8;
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	with_rule_str(&p.f, "fb");
	cr_assert_eq(p.f.state_src, 0);
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
		cr_assert_eq(rdm_get_be16(ip + 4), 20);
		cr_assert_eq(ip[6], IPPROTO_TCP);
		cr_assert_eq(memcmp(ip + 8, orig + 24, 16), 0, "src is the original dst");
		cr_assert_eq(memcmp(ip + 24, orig + 8, 16), 0, "dst is the original src");
	} else {
		cr_assert_eq(ip[0], 0x45);
		cr_assert_eq(rdm_get_be16(ip + 2), 40);
		cr_assert_eq(ip[9], IPPROTO_TCP);
		cr_assert_eq(sum(ip, 20, 0), 0xffff, "IPv4 header checksum");
		cr_assert_eq(memcmp(ip + 12, orig + 16, 4), 0);
		cr_assert_eq(memcmp(ip + 16, orig + 12, 4), 0);
	}
	t = ip + hl;
	cr_assert_eq(rdm_get_be16(t), rdm_get_be16(orig + hl + 2), "sport is the original dport");
	cr_assert_eq(rdm_get_be16(t + 2), rdm_get_be16(orig + hl), "dport is the original sport");
	cr_assert_eq(rdm_get_be32(t + 4), seq, "seq %u, want %u", rdm_get_be32(t + 4), seq);
	cr_assert_eq(rdm_get_be32(t + 8), ack, "ack %u, want %u", rdm_get_be32(t + 8), ack);
	cr_assert_eq(t[13], flags);
	cr_assert_eq(t[12] >> 4, 5);
	cr_assert_eq(sum(t, 20, pseudo(ip, IPPROTO_TCP, 20)), 0xffff, "TCP checksum");
	cr_assert_eq(r->key.sport, rdm_get_be16(orig + hl + 2));
	cr_assert_eq(r->key.dport, rdm_get_be16(orig + hl));
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
		cr_assert_eq(rdm_get_be16(ip + 4), 8 + q);
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
		cr_assert_eq(rdm_get_be16(ip + 2), 28 + q);
		cr_assert_eq(sum(ip, 20, 0), 0xffff, "IPv4 header checksum");
		cr_assert_eq(memcmp(ip + 12, orig + 16, 4), 0);
		cr_assert_eq(memcmp(ip + 16, orig + 12, 4), 0);
		u = ip + 20;
		cr_assert_eq(u[0], 3);
		cr_assert_eq(u[1], 13);
		cr_assert_eq(sum(u, 8 + q, 0), 0xffff, "ICMP checksum");
	}
	cr_assert_eq(rdm_get_be32(u + 4), 0);
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
		cr_assert_eq(rdm_get_be16(fs[i]->pkt + 22), 41000 + i,
			     "reply %d kept its own bytes", i);
	}
	stop(&s);
}
