/* Flow contexts (transport/framectx.c): a flow's state once per connection, frames that
 * stay within RFC 8300's 252-byte header, and receivers that never use a stale state. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "transport/frame_int.h"
#include "transport/framectx.h"
#include "services/flowtable.h"

static const uint8_t pkt[] = {0x45, 0, 0,  28, 0, 1, 0,	   0,	 64, 17, 0, 0, 10, 0,
			      0,    1, 10, 0,  0, 2, 0x30, 0x39, 0,  53, 0, 8, 0,  0};

static struct rdm_str S(const char *s) {
	return (struct rdm_str){s, (uint8_t)strlen(s)};
}

/* A frame with a flow's whole state, as the demo's last hop sees it. */
static void
flow_frame(struct rdm_frame *f, uint64_t flow_id, uint64_t seq)
{
	rdm_frame_init(f, 7, 200, RDM_NSH_NP_IPV4);
	f->present = RDM_F_FLOW_KEY | RDM_F_FLOW_ID | RDM_F_SEQ | RDM_F_TENANT | RDM_F_USER |
		     RDM_F_GROUPS | RDM_F_APP_ID | RDM_F_APP_NAME | RDM_F_HOST | RDM_F_VERDICT;
	memset(&f->key, 0, sizeof(f->key));
	f->key.family = 4;
	f->key.proto = 17;
	f->key.sport = (uint16_t)(1000 + flow_id);
	f->key.dport = 53;
	f->key.src[0] = 10;
	f->key.dst[0] = 10;
	f->flow_id = flow_id;
	f->origin = 0x0100;
	f->seq = seq;
	f->tenant = S("acme");
	f->user = S("alice@acme.test");
	f->n_groups = 2;
	f->groups[0] = S("eng");
	f->groups[1] = S("vpn-users");
	f->master_proto = 5;
	f->app_proto = 5;
	f->app_name = S("DNS");
	f->host = S("www.example.test");
	f->verdict = RDM_V_ALLOW;
	f->rule_id = 3;
	rdm_frame_add_hop(f, 1, 1000000 + seq);
	rdm_frame_add_hop(f, 2, 1000000 + seq + 2500);
	f->pkt = pkt;
	f->pkt_len = sizeof(pkt);
}

static int str_eq(struct rdm_str a, struct rdm_str b)
{
	return a.len == b.len && !memcmp(a.p, b.p, a.len);
}

static void assert_same(const struct rdm_frame *a, const struct rdm_frame *b)
{
	cr_assert_eq(a->present, b->present);
	cr_assert_eq(a->flow_id, b->flow_id);
	cr_assert_eq(a->seq, b->seq);
	cr_assert_eq(a->origin, b->origin);
	cr_assert_eq(memcmp(&a->key, &b->key, sizeof(a->key)), 0);
	cr_assert(str_eq(a->tenant, b->tenant));
	cr_assert(str_eq(a->user, b->user));
	cr_assert_eq(a->n_groups, b->n_groups);
	for (int i = 0; i < a->n_groups; i++)
		cr_assert(str_eq(a->groups[i], b->groups[i]));
	cr_assert(str_eq(a->host, b->host));
	cr_assert(str_eq(a->app_name, b->app_name));
	cr_assert_eq(a->verdict, b->verdict);
	cr_assert_eq(a->rule_id, b->rule_id);
	cr_assert_eq(a->n_hops, b->n_hops);
	for (int i = 0; i < a->n_hops; i++) {
		cr_assert_eq(a->hops[i].node, b->hops[i].node);
		cr_assert_eq(a->hops[i].ns, b->hops[i].ns);
	}
	cr_assert_eq(a->pkt_len, b->pkt_len);
}

/* The frames out[0..k) as one received stream (header then packet, each) into r; the
 * last decodes into g. Returns the last frame's result. */
static uint8_t wire[RDM_CTX_OUT_MAX][4096];
static int deliver(struct rdm_ctx_rx *r, const struct rdm_txframe *out, int k, struct rdm_frame *g)
{
	int rc = -1;

	for (int i = 0; i < k; i++) {
		memcpy(wire[i], out[i].hdr, out[i].hdr_len);
		if (out[i].pkt_len)
			memcpy(wire[i] + out[i].hdr_len, out[i].pkt, out[i].pkt_len);
		rc = rdm_ctx_decode(r, g, wire[i], out[i].hdr_len + out[i].pkt_len);
		if (i + 1 < k)
			cr_assert_eq(rc, 1, "frame %d of %d is state only", i, k);
	}
	return rc;
}

Test(framectx, state_once_then_per_packet_fields_only)
{
	struct rdm_ctx_tx_stats ts = {0};
	struct rdm_ctx_rx_stats rs = {0};
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(&ts);
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(&rs);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096];
	struct rdm_frame f, g;
	int k;

	flow_frame(&f, 77, 1);
	k = rdm_ctx_encode(t, &f, buf, sizeof(buf), out);
	cr_assert_eq(k, 1);
	cr_assert_leq(out[0].hdr_len, RDM_NSH_RFC_HDR);
	cr_assert_eq(deliver(r, out, k, &g), 0);
	assert_same(&f, &g);
	for (uint64_t s = 2; s < 10; s++) {
		rdm_ctx_rx_release(r);
		flow_frame(&f, 77, s);
		k = rdm_ctx_encode(t, &f, buf, sizeof(buf), out);
		cr_assert_eq(k, 1);
		/* base 8, CTX 8, SEQ 16, HOP_NS 4 + 8 + 4 per later hop */
		cr_assert_eq(out[0].hdr_len, 8 + 8 + 16 + 16, "a frame that uses its flow's state");
		cr_assert_eq(deliver(r, out, k, &g), 0);
		assert_same(&f, &g);
	}
	cr_assert_eq(ts.sets, 1);
	cr_assert_eq(ts.uses, 8);
	cr_assert_eq(rs.sets, 1);
	cr_assert_eq(rs.uses, 8);
	cr_assert_eq(ts.hdr_over, 0);
	rdm_ctx_tx_free(t);
	rdm_ctx_rx_free(r);
}

/* The fields f has, and they only, in g (which may hold another flow's before). */
static void assert_taken(const struct rdm_frame *f, const struct rdm_frame *g)
{
	cr_assert_eq(g->present, f->present);
	cr_assert_eq(memcmp(&g->key, &f->key, sizeof(f->key)), 0);
	cr_assert_eq(g->flow_id, f->flow_id);
	cr_assert_eq(g->seq, f->seq);
	if (f->present & RDM_F_TENANT)
		cr_assert(str_eq(g->tenant, f->tenant));
	if (f->present & RDM_F_USER)
		cr_assert(str_eq(g->user, f->user));
	if (f->present & RDM_F_GROUPS) {
		cr_assert_eq(g->n_groups, f->n_groups);
		for (int i = 0; i < f->n_groups; i++)
			cr_assert(str_eq(g->groups[i], f->groups[i]));
	}
	if (f->present & RDM_F_APP_NAME)
		cr_assert(str_eq(g->app_name, f->app_name));
	if (f->present & RDM_F_HOST)
		cr_assert(str_eq(g->host, f->host));
	if (f->present & RDM_F_VERDICT)
		cr_assert_eq(g->rule_id, f->rule_id);
	cr_assert_eq(g->n_hops, f->n_hops);
}

/* A receiver decodes every flow into the same frames: a flow with the whole state, one
 * with tenant, user and one group, one with its key and id alone, in turns. Each frame
 * that uses its flow's state gets exactly that state, whatever the frame held before. */
Test(framectx, flows_with_more_and_fewer_fields_take_their_own_state_in_turns)
{
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(NULL);
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(NULL);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096];
	struct rdm_frame f[3], g;

	memset(&g, 0x5a, sizeof(g));
	for (uint64_t s = 1; s < 6; s++)
		for (int i = 0; i < 3; i++) {
			flow_frame(&f[i], 60 + (uint64_t)i, s);
			if (i == 1) {
				f[i].present &=
				    ~(RDM_F_APP_ID | RDM_F_APP_NAME | RDM_F_HOST | RDM_F_VERDICT);
				f[i].n_groups = 1;
			} else if (i == 2) {
				f[i].present &=
				    RDM_F_FLOW_KEY | RDM_F_FLOW_ID | RDM_F_SEQ | RDM_F_HOPS;
			}
			rdm_ctx_rx_release(r);
			cr_assert_eq(
			    deliver(r, out, rdm_ctx_encode(t, &f[i], buf, sizeof(buf), out), &g),
			    0);
			assert_taken(&f[i], &g);
		}
	rdm_ctx_tx_free(t);
	rdm_ctx_rx_free(r);
}

Test(framectx, a_changed_state_is_sent_again)
{
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(NULL);
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(NULL);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096];
	struct rdm_frame f, g;

	flow_frame(&f, 5, 1);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	flow_frame(&f, 5, 2);
	f.verdict = RDM_V_DENY;
	f.rule_id = 9;
	rdm_frame_add_flags(&f, RDM_FF_NOTICE);
	cr_assert_eq(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 1);
	cr_assert_gt(out[0].hdr_len, 48, "the new state travels");
	cr_assert_eq(deliver(r, out, 1, &g), 0);
	assert_same(&f, &g);
	cr_assert_eq(g.flags, RDM_FF_NOTICE);
	/* And back: a frame without the flags is not given the notice's. */
	flow_frame(&f, 5, 3);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	assert_same(&f, &g);
	cr_assert_eq(g.present & RDM_F_FLAGS, 0);
	rdm_ctx_tx_free(t);
	rdm_ctx_rx_free(r);
}

/* Strings are compared a word at a time: one byte changed anywhere in a string of any
 * length (under 4, 4 to 7, 8 and more) sends the state again; the same bytes at another
 * address do not. */
Test(framectx, one_changed_byte_in_a_string_is_a_new_state)
{
	static const char text[] = "abcdefghijklmnopqrstu";
	struct rdm_ctx_tx_stats st = {0};
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(&st);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096];
	char a[32], b[32];
	struct rdm_frame f;
	uint64_t sets = 0;

	for (unsigned len = 1; len < sizeof(text); len++) {
		memcpy(a, text, len);
		memcpy(b, text, len);
		flow_frame(&f, 9, 1);
		f.host = (struct rdm_str){a, (uint8_t)len};
		cr_assert_gt(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 0);
		sets = st.sets;
		f.host = (struct rdm_str){b, (uint8_t)len};
		cr_assert_gt(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 0);
		cr_assert_eq(st.sets, sets, "len %u: equal bytes elsewhere are the same state",
			     len);
		for (unsigned i = 0; i < len; i++) {
			b[i] ^= 0x20;
			cr_assert_gt(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 0);
			cr_assert_eq(st.sets, ++sets, "len %u, byte %u changed", len, i);
			b[i] ^= 0x20;
			cr_assert_gt(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 0);
			cr_assert_eq(st.sets, ++sets, "len %u, byte %u back", len, i);
		}
	}
	rdm_ctx_tx_free(t);
}

Test(framectx, a_big_state_goes_ahead_in_parts_within_252_bytes)
{
	struct rdm_ctx_tx_stats ts = {0};
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(&ts);
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(NULL);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	char host[201], user[121];
	uint8_t buf[4096];
	struct rdm_frame f, g;
	int k;

	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = 0;
	memset(user, 'u', sizeof(user) - 1);
	user[sizeof(user) - 1] = 0;
	flow_frame(&f, 9, 1);
	f.host = S(host);
	f.user = S(user);
	k = rdm_ctx_encode(t, &f, buf, sizeof(buf), out);
	cr_assert_geq(k, 2, "state-only frames first");
	for (int i = 0; i < k; i++) {
		cr_assert_leq(out[i].hdr_len, RDM_NSH_RFC_HDR, "frame %d: %u bytes", i,
			      out[i].hdr_len);
		cr_assert_eq(out[i].pkt_len, i + 1 < k ? 0 : sizeof(pkt));
	}
	cr_assert_eq(deliver(r, out, k, &g), 0);
	assert_same(&f, &g);
	cr_assert_eq(ts.parts, (uint64_t)(k - 1));
	cr_assert_eq(ts.hdr_over, 0);
	/* Then the flow's packets carry its slot alone. */
	flow_frame(&f, 9, 2);
	f.host = S(host);
	f.user = S(user);
	cr_assert_eq(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 1);
	cr_assert_eq(deliver(r, out, 1, &g), 0);
	assert_same(&f, &g);
	rdm_ctx_tx_free(t);
	rdm_ctx_rx_free(r);
}

Test(framectx, strings_stay_valid_until_release_when_the_slot_is_set_again)
{
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(NULL);
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(NULL);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096], w1[512], w2[512];
	struct rdm_frame f, g1, g2;

	flow_frame(&f, 11, 1);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g1), 0);
	rdm_ctx_rx_release(r);
	/* One batch: a frame that uses the slot, then one that sets it anew. */
	flow_frame(&f, 11, 2);
	cr_assert_eq(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 1);
	memcpy(w1, out[0].hdr, out[0].hdr_len);
	memcpy(w1 + out[0].hdr_len, pkt, sizeof(pkt));
	cr_assert_eq(rdm_ctx_decode(r, &g1, w1, out[0].hdr_len + sizeof(pkt)), 0);
	flow_frame(&f, 11, 3);
	f.user = S("bob@acme.test");
	cr_assert_eq(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 1);
	memcpy(w2, out[0].hdr, out[0].hdr_len);
	memcpy(w2 + out[0].hdr_len, pkt, sizeof(pkt));
	cr_assert_eq(rdm_ctx_decode(r, &g2, w2, out[0].hdr_len + sizeof(pkt)), 0);
	cr_assert(str_eq(g1.user, S("alice@acme.test")), "the earlier frame keeps its state");
	cr_assert(str_eq(g2.user, S("bob@acme.test")));
	rdm_ctx_rx_release(r);
	rdm_ctx_tx_free(t);
	rdm_ctx_rx_free(r);
}

Test(framectx, a_slot_never_set_or_half_sent_is_refused_not_guessed)
{
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(NULL);
	struct rdm_ctx_rx_stats rs = {0};
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(&rs), *r2 = rdm_ctx_rx_new(NULL);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096], use[512];
	struct rdm_frame f, g;
	char host[201];
	int k;

	flow_frame(&f, 21, 1);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	flow_frame(&f, 21, 2);
	cr_assert_eq(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 1);
	memcpy(use, out[0].hdr, out[0].hdr_len);
	memcpy(use + out[0].hdr_len, pkt, sizeof(pkt));
	/* Another connection never got the state; a decoder with no contexts neither. */
	cr_assert_eq(rdm_ctx_decode(r2, &g, use, out[0].hdr_len + sizeof(pkt)), -RDM_FERR_CTX);
	cr_assert_eq(rdm_ctx_decode(NULL, &g, use, out[0].hdr_len + sizeof(pkt)), -RDM_FERR_CTX);
	cr_assert_eq(rdm_frame_decode(&g, use, out[0].hdr_len + sizeof(pkt)), -RDM_FERR_CTX);
	cr_assert_eq(rdm_ctx_decode(r, &g, use, out[0].hdr_len + sizeof(pkt)), 0);
	/* A new state for the slot whose first part is lost: none of it is taken, and the
	 * slot forgets the old one, so the next use is refused. */
	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = 0;
	flow_frame(&f, 21, 3);
	f.host = S(host);
	k = rdm_ctx_encode(t, &f, buf, sizeof(buf), out);
	cr_assert_geq(k, 2);
	for (int i = 1; i < k; i++) {
		memcpy(wire[i], out[i].hdr, out[i].hdr_len);
		if (out[i].pkt_len)
			memcpy(wire[i] + out[i].hdr_len, out[i].pkt, out[i].pkt_len);
		cr_assert_eq(rdm_ctx_decode(r, &g, wire[i], out[i].hdr_len + out[i].pkt_len),
			     -RDM_FERR_CTX, "frame %d of %d", i, k);
	}
	cr_assert_eq(rs.parts_dropped, (uint64_t)(k - 1));
	cr_assert_eq(rdm_ctx_decode(r, &g, use, out[0].hdr_len + sizeof(pkt)), -RDM_FERR_CTX);
	rdm_ctx_tx_free(t);
	rdm_ctx_rx_free(r);
	rdm_ctx_rx_free(r2);
}

Test(framectx, reset_frames_without_a_key_and_far_hops)
{
	struct rdm_ctx_tx_stats ts = {0};
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(&ts);
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(NULL);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096];
	struct rdm_frame f, g;
	uint64_t uses;

	flow_frame(&f, 31, 1);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	/* A connection made again: both ends start empty, the state goes whole. */
	rdm_ctx_tx_reset(t);
	rdm_ctx_rx_reset(r);
	flow_frame(&f, 31, 2);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	cr_assert_eq(ts.sets, 2);
	/* No flow key: the whole state on every frame, decoded the old way too. */
	flow_frame(&f, 31, 3);
	f.present &= ~(uint32_t)(RDM_F_FLOW_KEY | RDM_F_FLOW_ID);
	cr_assert_eq(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 1);
	cr_assert_eq(ts.whole, 1);
	cr_assert_eq(deliver(r, out, 1, &g), 0);
	cr_assert_eq(rdm_frame_decode(&g, wire[0], out[0].hdr_len + sizeof(pkt)), 0);
	/* Hops seconds apart cannot be relative 32-bit times: the full list, exact. */
	flow_frame(&f, 31, 4);
	f.hops[1].ns = f.hops[0].ns + 5000000000ull;
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	assert_same(&f, &g);
	/* The next frame as far apart uses that state, its hops whole in the frame. */
	flow_frame(&f, 31, 6);
	f.hops[1].ns = f.hops[0].ns + 5000000000ull;
	uses = ts.uses;
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	assert_same(&f, &g);
	cr_assert_eq(ts.uses, uses + 1);
	/* Hops behind the first (clocks apart) go relative, negative. */
	flow_frame(&f, 31, 5);
	f.hops[1].ns = f.hops[0].ns - 7000;
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	assert_same(&f, &g);
	rdm_ctx_tx_free(t);
	rdm_ctx_rx_free(r);
}

/* The middle of a chain: frames decoded from one connection, a hop added, encoded for the
 * next. A state taken unchanged (its source, state_src, kept) is known the same without
 * comparing; a changed one whose source was cleared, as the node clears it after a stage
 * that does not keep states, travels again. hop2 receives f's frames into g. */
static void hop2(struct rdm_ctx_tx *t1, struct rdm_ctx_rx *r, struct rdm_frame *f,
		 struct rdm_frame *g)
{
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096];

	rdm_ctx_rx_release(r);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t1, f, buf, sizeof(buf), out), g), 0);
	cr_assert_neq(g->state_src, 0, "a frame names the state it took");
	g->pkt = pkt; /* the same bytes, out of wire[], which the next hop writes */
	cr_assert_eq(rdm_frame_add_hop(g, 3, f->hops[1].ns + 2000), 0);
}

/* Encodes g for the next hop (t2) and checks that its receiver (r2) gets it whole. */
static void pass_on(struct rdm_ctx_tx *t2, struct rdm_ctx_rx *r2, const struct rdm_frame *g)
{
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096];
	struct rdm_frame h;

	cr_assert_eq(deliver(r2, out, rdm_ctx_encode(t2, g, buf, sizeof(buf), out), &h), 0);
	assert_same(g, &h);
}

Test(framectx, a_state_taken_unchanged_is_known_by_its_source)
{
	struct rdm_ctx_tx_stats ts = {0};
	struct rdm_ctx_tx *t1 = rdm_ctx_tx_new(NULL), *t2 = rdm_ctx_tx_new(&ts);
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(NULL), *r2 = rdm_ctx_rx_new(NULL);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096];
	struct rdm_frame f, g;
	uint64_t src;

	flow_frame(&f, 41, 1);
	hop2(t1, r, &f, &g);
	src = g.state_src;
	pass_on(t2, r2, &g);
	for (uint64_t s = 2; s < 5; s++) {
		flow_frame(&f, 41, s);
		hop2(t1, r, &f, &g);
		cr_assert_eq(g.state_src, src, "the same received state");
		pass_on(t2, r2, &g);
	}
	cr_assert_eq(ts.sets, 1);
	cr_assert_eq(ts.uses, 3);
	/* A stage changed it: the node cleared its source, and the new state travels. */
	flow_frame(&f, 41, 5);
	hop2(t1, r, &f, &g);
	g.tenant = S("other");
	g.state_src = 0;
	pass_on(t2, r2, &g);
	cr_assert_eq(ts.sets, 2);
	/* Another hop's node: the hops' nodes travel with the state, compared apart. */
	flow_frame(&f, 41, 6);
	hop2(t1, r, &f, &g);
	g.hops[2].node = 4;
	pass_on(t2, r2, &g);
	cr_assert_eq(ts.sets, 3);
	/* That state again: a frame that uses it. */
	flow_frame(&f, 41, 7);
	hop2(t1, r, &f, &g);
	g.hops[2].node = 4;
	cr_assert_eq(rdm_ctx_encode(t2, &g, buf, sizeof(buf), out), 1);
	cr_assert_eq(ts.sets, 3);
	rdm_ctx_tx_free(t1);
	rdm_ctx_tx_free(t2);
	rdm_ctx_rx_free(r);
	rdm_ctx_rx_free(r2);
}

/* Frame o's header in w with a TLV of the given state type ("evil") of its own after it,
 * the fixed header re-based; returns the header's new length. */
static uint32_t with_own_tlv(uint8_t *w, const struct rdm_txframe *o, const struct rdm_frame *f,
			     uint8_t type)
{
	uint32_t n = o->hdr_len;

	memcpy(w, o->hdr, n);
	w[n] = RDM_MD_CLASS >> 8;
	w[n + 1] = RDM_MD_CLASS & 0xff;
	w[n + 2] = type;
	w[n + 3] = 4;
	memcpy(w + n + 4, "evil", 4);
	rdm_frame__put_base(f, w, n + 8, f->next_proto);
	return n + 8;
}

/* A frame that brings state TLVs of its own beside its CTX names no received state: its
 * state is not all the one it took. */
Test(framectx, a_frame_with_state_tlvs_of_its_own_names_no_state)
{
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(NULL);
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(NULL);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096], w[4096];
	struct rdm_frame f, g;
	uint32_t n;

	flow_frame(&f, 45, 1);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	flow_frame(&f, 45, 2);
	cr_assert_eq(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 1);
	memcpy(w, out[0].hdr, out[0].hdr_len);
	cr_assert_eq(rdm_ctx_decode(r, &g, w, out[0].hdr_len), 0);
	cr_assert_neq(g.state_src, 0, "the USE frame as sent names its state");
	n = with_own_tlv(w, &out[0], &f, RDM_TLV_TENANT);
	cr_assert_eq(rdm_ctx_decode(r, &g, w, n), 0);
	cr_assert_eq(g.state_src, 0);
	cr_assert(str_eq(g.tenant, S("acme")), "the state's tenant, not the frame's own");
	/* A field the state does not have (HOST) that the frame brings itself is not
	 * kept either, and not left present with nothing in it: the frame goes on as a
	 * frame that can be encoded again. */
	flow_frame(&f, 46, 1);
	f.present &= ~RDM_F_HOST;
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	flow_frame(&f, 46, 2);
	f.present &= ~RDM_F_HOST;
	cr_assert_eq(rdm_ctx_encode(t, &f, buf, sizeof(buf), out), 1);
	n = with_own_tlv(w, &out[0], &f, RDM_TLV_HOST);
	cr_assert_eq(rdm_ctx_decode(r, &g, w, n), 0);
	cr_assert_not(g.present & RDM_F_HOST);
	assert_taken(&f, &g);
	rdm_ctx_tx_free(t);
	rdm_ctx_rx_free(r);
}

/* The frames that take a state carry its flow tables' hints (rdm_frame.hints): the
 * next frames of the flow find their flow where the first left it, each flow its own;
 * a frame with its whole state, taking none, carries none. */
Test(framectx, the_frames_of_a_state_share_its_flow_hints)
{
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(NULL);
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(NULL);
	struct rdm_flow_conf fc = {.max_flows = 64};
	struct rdm_flowtab *tab = rdm_flowtab_new(&fc, 0, NULL, NULL);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	struct rdm_flow_hint *ha;
	struct rdm_flow *fa, *fb;
	uint8_t buf[4096];
	struct rdm_frame f, g;
	int dir, created;

	cr_assert_not_null(tab);
	flow_frame(&f, 48, 1);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	cr_assert_not_null(g.hints, "a SET frame takes its new state's hints");
	ha = g.hints;
	fa = rdm_flowtab_track_hinted(tab, &g.key, rdm_frame_flow_hash(&g, &g.key), 28, 0, 1, &dir,
				      &created, g.hints);
	cr_assert_eq(created, 1);
	flow_frame(&f, 48, 2);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	cr_assert_eq(g.hints, ha, "a USE frame of the flow carries the same hints");
	cr_assert_eq(
	    rdm_flowtab_find_hinted(tab, &g.key, rdm_frame_flow_hash(&g, &g.key), &dir, g.hints),
	    fa);
	flow_frame(&f, 49, 1);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(t, &f, buf, sizeof(buf), out), &g), 0);
	cr_assert_not_null(g.hints);
	cr_assert_neq(g.hints, ha, "another flow, other hints");
	fb = rdm_flowtab_track_hinted(tab, &g.key, rdm_frame_flow_hash(&g, &g.key), 28, 0, 1, &dir,
				      &created, g.hints);
	cr_assert_eq(created, 1);
	cr_assert_neq(fb, fa);
	flow_frame(&f, 48, 3);
	cr_assert_eq(deliver(r, out, rdm_ctx_encode(NULL, &f, buf, sizeof(buf), out), &g), 0);
	cr_assert_null(g.hints, "a frame with its whole state takes no state's hints");
	rdm_flowtab_free(tab);
	rdm_ctx_tx_free(t);
	rdm_ctx_rx_free(r);
}

#if defined(__SANITIZE_ADDRESS__)
/* With the sanitizers, a source known the same is checked field by field: a writer that
 * changed a state but kept its source stops the tests rather than sending a stale one. */
Test(framectx, a_changed_state_that_kept_its_source_stops_sanitized_builds, .signal = SIGABRT)
{
	struct rdm_ctx_tx *t1 = rdm_ctx_tx_new(NULL), *t2 = rdm_ctx_tx_new(NULL);
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(NULL);
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	uint8_t buf[4096];
	struct rdm_frame f, g;

	flow_frame(&f, 43, 1);
	hop2(t1, r, &f, &g);
	cr_assert_eq(rdm_ctx_encode(t2, &g, buf, sizeof(buf), out), 1);
	flow_frame(&f, 43, 2);
	hop2(t1, r, &f, &g);
	g.tenant = S("other");
	rdm_ctx_encode(t2, &g, buf, sizeof(buf), out);
}
#endif
