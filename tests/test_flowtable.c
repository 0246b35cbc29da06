/* The per-worker flow table (services/flowtable.c), driven with synthetic keys and a
 * synthetic clock: both directions of a flow, per-protocol idle timeouts, TCP close
 * tracking, eviction, bounded memory, IPv6, iteration, shutdown and data reuse. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/pkt.h"
#include "services/flowtable.h"

#define MS 1000000ull
#define T0 (1000 * MS) /* a clock that does not start at 0 */

/* What the end callback saw. */
#define MAX_ENDS 64
static struct {
	int n;
	struct rdm_flow_key key[MAX_ENDS];
	enum rdm_flow_end why[MAX_ENDS];
	uint64_t packets[MAX_ENDS][2];
	uint32_t tag[MAX_ENDS]; /* the first u32 of the flow's data */
	uint64_t total, by_why[4];
	int read_tag; /* the table has at least 4 bytes of data per flow */
} ends;

static void on_end(void *arg, struct rdm_flow *f, enum rdm_flow_end why)
{
	cr_assert_eq(arg, &ends, "the table passes its arg back");
	cr_assert_lt((unsigned)why, 4u);
	ends.total++;
	ends.by_why[why]++;
	if (ends.n < MAX_ENDS) {
		ends.key[ends.n] = f->key;
		ends.why[ends.n] = why;
		ends.packets[ends.n][0] = f->packets[0];
		ends.packets[ends.n][1] = f->packets[1];
		if (ends.read_tag)
			memcpy(&ends.tag[ends.n], rdm_flow_data(f), sizeof(uint32_t));
		ends.n++;
	}
}

static void reset_ends(void)
{
	memset(&ends, 0, sizeof(ends));
}

TestSuite(flowtab, .init = reset_ends);

/* An IPv4 key; a and b are the hosts' last octets in 10.0.0.0/24. */
static struct rdm_flow_key key4(int proto, int a, uint16_t sport, int b, uint16_t dport)
{
	struct rdm_flow_key k = {
	    .family = 4, .proto = (uint8_t)proto, .sport = sport, .dport = dport};

	k.src[0] = 10, k.src[3] = (uint8_t)a;
	k.dst[0] = 10, k.dst[3] = (uint8_t)b;
	return k;
}

static struct rdm_flow_key key6(int proto, const char *src, uint16_t sport, const char *dst,
				uint16_t dport)
{
	struct rdm_flow_key k = {
	    .family = 6, .proto = (uint8_t)proto, .sport = sport, .dport = dport};

	cr_assert_eq(inet_pton(AF_INET6, src, k.src), 1);
	cr_assert_eq(inet_pton(AF_INET6, dst, k.dst), 1);
	return k;
}

static struct rdm_flow_key rev(struct rdm_flow_key k)
{
	struct rdm_flow_key r = k;

	memcpy(r.src, k.dst, 16);
	memcpy(r.dst, k.src, 16);
	r.sport = k.dport;
	r.dport = k.sport;
	return r;
}

static int same_key(const struct rdm_flow_key *a, const struct rdm_flow_key *b)
{
	return a->family == b->family && a->proto == b->proto && a->sport == b->sport &&
	       a->dport == b->dport && !memcmp(a->src, b->src, 16) && !memcmp(a->dst, b->dst, 16);
}

/* One packet of key k at now; returns the flow, *dir and *created as track sets them. */
static struct rdm_flow *pkt(struct rdm_flowtab *t, struct rdm_flow_key k, uint32_t bytes,
			    uint8_t tcp_flags, uint64_t now, int *dir, int *created)
{
	int d = -1, c = -1;
	struct rdm_flow *f =
	    rdm_flowtab_track(t, &k, rdm_flow_hash(&k), bytes, tcp_flags, now, &d, &c);

	cr_assert_not_null(f);
	cr_assert(d == 0 || d == 1);
	cr_assert(c == 0 || c == 1);
	if (dir)
		*dir = d;
	if (created)
		*created = c;
	return f;
}

static struct rdm_flow *find(struct rdm_flowtab *t, struct rdm_flow_key k, int *dir)
{
	int d = -1;
	struct rdm_flow *f = rdm_flowtab_find(t, &k, rdm_flow_hash(&k), &d);

	if (dir)
		*dir = d;
	return f;
}

static struct rdm_flowtab_stats stats(struct rdm_flowtab *t)
{
	struct rdm_flowtab_stats s;

	rdm_flowtab_get_stats(t, &s);
	return s;
}

/* Small timeouts, each different, so that the classes are easy to tell apart. */
static const struct rdm_flow_conf small = {
    .max_flows = 64,
    .tcp_idle_ms = 1000,
    .tcp_closed_ms = 100,
    .udp_idle_ms = 500,
    .other_idle_ms = 300,
};

Test(flowtab, defaults_fill_only_zero_fields)
{
	struct rdm_flow_conf c = {.udp_idle_ms = 7};

	rdm_flow_conf_defaults(&c);
	cr_assert_eq(c.max_flows, 65536);
	cr_assert_eq(c.tcp_idle_ms, 300000);
	cr_assert_eq(c.tcp_closed_ms, 5000);
	cr_assert_eq(c.udp_idle_ms, 7);
	cr_assert_eq(c.other_idle_ms, 30000);
}

Test(flowtab, too_large_a_table_is_refused)
{
	struct rdm_flow_conf c = {.max_flows = (1u << 26) + 1};

	errno = 0;
	cr_assert_null(rdm_flowtab_new(&c, 0, NULL, NULL));
	cr_assert_eq(errno, EINVAL);
}

Test(flowtab, both_directions_hit_one_entry)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow_key k = key4(IPPROTO_TCP, 1, 40000, 2, 443);
	struct rdm_flow *f, *g;
	int dir, created;

	cr_assert_not_null(t);
	struct rdm_flow_key r = rev(k);
	cr_assert_eq(rdm_flow_hash(&k), rdm_flow_hash(&r), "the caller's hash is symmetric");
	f = pkt(t, k, 60, RDM_TCP_SYN, T0, &dir, &created);
	cr_assert_eq(dir, 0);
	cr_assert_eq(created, 1);
	cr_assert(same_key(&f->key, &k), "the key as the initiator sent it");
	cr_assert_eq(f->first_ns, T0);
	g = pkt(t, rev(k), 60, RDM_TCP_SYN | RDM_TCP_ACK, T0 + 1, &dir, &created);
	cr_assert_eq(g, f);
	cr_assert_eq(dir, 1);
	cr_assert_eq(created, 0);
	g = pkt(t, k, 52, RDM_TCP_ACK, T0 + 2, &dir, &created);
	cr_assert_eq(g, f);
	cr_assert_eq(dir, 0);
	cr_assert(same_key(&f->key, &k), "the reply did not change the initiator");
	cr_assert_eq(f->first_ns, T0);
	cr_assert_eq(f->last_ns, T0 + 2);

	cr_assert_eq(find(t, k, &dir), f);
	cr_assert_eq(dir, 0);
	cr_assert_eq(find(t, rev(k), &dir), f);
	cr_assert_eq(dir, 1);
	cr_assert_null(find(t, key4(IPPROTO_TCP, 1, 40001, 2, 443), NULL));
	cr_assert_null(find(t, key4(IPPROTO_UDP, 1, 40000, 2, 443), NULL), "proto is in the key");
	cr_assert_eq(stats(t).flows, 1);
	cr_assert_eq(stats(t).created, 1);
	rdm_flowtab_free(t);
}

Test(flowtab, counters_per_direction)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, NULL, NULL);
	struct rdm_flow_key k = key4(IPPROTO_TCP, 1, 40000, 2, 80);
	struct rdm_flow *f;

	cr_assert_not_null(t);
	f = pkt(t, k, 60, RDM_TCP_SYN, T0, NULL, NULL);
	pkt(t, rev(k), 60, RDM_TCP_SYN | RDM_TCP_ACK, T0 + 1, NULL, NULL);
	pkt(t, k, 52, RDM_TCP_ACK, T0 + 2, NULL, NULL);
	pkt(t, k, 400, RDM_TCP_ACK, T0 + 3, NULL, NULL);
	pkt(t, rev(k), 1500, RDM_TCP_ACK, T0 + 4, NULL, NULL);
	pkt(t, rev(k), 1500, RDM_TCP_ACK | RDM_TCP_FIN, T0 + 5, NULL, NULL);
	cr_assert_eq(f->packets[0], 3);
	cr_assert_eq(f->packets[1], 3);
	cr_assert_eq(f->bytes[0], 60 + 52 + 400);
	cr_assert_eq(f->bytes[1], 60 + 1500 + 1500);
	cr_assert_eq(f->tcp_flags[0], RDM_TCP_SYN | RDM_TCP_ACK);
	cr_assert_eq(f->tcp_flags[1], RDM_TCP_SYN | RDM_TCP_ACK | RDM_TCP_FIN);

	/* find() counts nothing. */
	cr_assert_eq(find(t, k, NULL), f);
	cr_assert_eq(f->packets[0] + f->packets[1], 6);
	cr_assert_eq(f->last_ns, T0 + 5);

	/* TCP flags are only kept for TCP. */
	struct rdm_flow *u = pkt(t, key4(IPPROTO_UDP, 1, 5353, 2, 53), 80, 0xff, T0, NULL, NULL);
	cr_assert_eq(u->tcp_flags[0], 0);
	rdm_flowtab_free(t);
}

/* One flow of each timeout class, created at T0; then the clock advances. */
Test(flowtab, idle_timeouts_per_protocol)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow_key tcp = key4(IPPROTO_TCP, 1, 1000, 2, 80);
	struct rdm_flow_key udp = key4(IPPROTO_UDP, 1, 1001, 2, 53);
	struct rdm_flow_key icmp = key4(IPPROTO_ICMP, 1, 0, 2, 0);
	struct rdm_flow_key gre = key4(47, 3, 0, 4, 0);

	cr_assert_not_null(t);
	pkt(t, tcp, 60, RDM_TCP_SYN, T0, NULL, NULL);
	pkt(t, udp, 60, 0, T0, NULL, NULL);
	pkt(t, icmp, 60, 0, T0, NULL, NULL);
	pkt(t, gre, 60, 0, T0 + 50 * MS, NULL, NULL);

	cr_assert_eq(rdm_flowtab_expire(t, T0 + 299 * MS, 0), 0);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 300 * MS, 0), 1, "other: 300 ms");
	cr_assert(same_key(&ends.key[0], &icmp));
	cr_assert_eq(ends.why[0], RDM_FLOW_END_TIMEOUT);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 349 * MS, 0), 0, "idle from its last packet");
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 350 * MS, 0), 1);
	cr_assert(same_key(&ends.key[1], &gre));
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 499 * MS, 0), 0);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 500 * MS, 0), 1, "udp: 500 ms");
	cr_assert(same_key(&ends.key[2], &udp));
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 999 * MS, 0), 0);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 1000 * MS, 0), 1, "tcp: 1000 ms");
	cr_assert(same_key(&ends.key[3], &tcp));
	for (int i = 0; i < 4; i++)
		cr_assert_eq(ends.why[i], RDM_FLOW_END_TIMEOUT);
	struct rdm_flowtab_stats s = stats(t);
	cr_assert_eq(s.timeouts, 4);
	cr_assert_eq(s.closed, 0);
	cr_assert_eq(s.evicted, 0);
	cr_assert_eq(s.flows, 0);
	cr_assert_eq(s.peak, 4);
	cr_assert_eq(s.created, 4);
	cr_assert_null(find(t, tcp, NULL));
	rdm_flowtab_free(t);
	cr_assert_eq(ends.by_why[RDM_FLOW_END_SHUTDOWN], 0, "nothing left to shut down");
}

Test(flowtab, traffic_refreshes_the_idle_timer)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow_key udp = key4(IPPROTO_UDP, 1, 1001, 2, 53);

	cr_assert_not_null(t);
	for (int i = 0; i < 10; i++) {
		pkt(t, i % 2 ? rev(udp) : udp, 60, 0, T0 + (uint64_t)i * 400 * MS, NULL, NULL);
		cr_assert_eq(rdm_flowtab_expire(t, T0 + (uint64_t)i * 400 * MS + 399 * MS, 0), 0);
	}
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 9 * 400 * MS + 500 * MS, 0), 1);
	cr_assert_eq(ends.packets[0][0] + ends.packets[0][1], 10);
	rdm_flowtab_free(t);
}

/* A packet moves its flow to the back of its queue only 1/64 of the timeout after its
 * last move (UDP here: 500 ms, so 7.8 ms): a flow behind one touched sooner ends at most
 * that late; one touched later has moved, and the flow behind it ends on time. */
static int ends_when_touched_after(uint64_t touch)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow_key a = key4(IPPROTO_UDP, 1, 1001, 2, 53);
	struct rdm_flow_key b = key4(IPPROTO_UDP, 1, 1002, 2, 53);
	int n;

	cr_assert_not_null(t);
	reset_ends();
	pkt(t, a, 60, 0, T0, NULL, NULL);
	pkt(t, b, 60, 0, T0 + 1 * MS, NULL, NULL);
	pkt(t, rev(a), 60, 0, T0 + touch, NULL, NULL);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 500 * MS, 0), 0, "b is not idle yet");
	n = rdm_flowtab_expire(t, T0 + 501 * MS, 0); /* b's deadline */
	if (n == 1)
		cr_assert(same_key(&ends.key[0], &b));
	cr_assert_eq(rdm_flowtab_expire(t, T0 + touch + 500 * MS, 0), 2 - n,
		     "by a's deadline both have ended");
	cr_assert(same_key(&ends.key[ends.n - 1], n == 1 ? &a : &b));
	rdm_flowtab_free(t);
	return n;
}

Test(flowtab, a_busy_flow_moves_in_its_queue_at_most_every_64th_of_its_timeout)
{
	/* Touched 2 ms after it moved: it stays at the head, and b, behind it, ends at a's
	 * deadline, 1 ms after its own (within the 7.8 ms bound). */
	cr_assert_eq(ends_when_touched_after(2 * MS), 0);
	/* Touched 10 ms after: it moved behind b, which ends on time. */
	cr_assert_eq(ends_when_touched_after(10 * MS), 1);
}

Test(flowtab, tcp_closes_after_a_fin_each_way)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow_key k = key4(IPPROTO_TCP, 1, 1000, 2, 80);

	cr_assert_not_null(t);
	pkt(t, k, 60, RDM_TCP_SYN, T0, NULL, NULL);
	pkt(t, k, 52, RDM_TCP_FIN | RDM_TCP_ACK, T0 + 10 * MS, NULL, NULL);
	/* One FIN is a half-close: the flow keeps the TCP idle timeout. */
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 500 * MS, 0), 0);
	pkt(t, rev(k), 52, RDM_TCP_FIN | RDM_TCP_ACK, T0 + 600 * MS, NULL, NULL);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 699 * MS, 0), 0);
	/* The last ACK after both FINs refreshes the linger. */
	pkt(t, k, 52, RDM_TCP_ACK, T0 + 650 * MS, NULL, NULL);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 749 * MS, 0), 0);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 750 * MS, 0), 1, "closed: 100 ms");
	cr_assert_eq(ends.why[0], RDM_FLOW_END_CLOSED);
	cr_assert_eq(ends.packets[0][0], 3);
	cr_assert_eq(ends.packets[0][1], 1);
	cr_assert_eq(stats(t).closed, 1);
	cr_assert_eq(stats(t).timeouts, 0);
	rdm_flowtab_free(t);
}

Test(flowtab, two_fins_the_same_way_do_not_close)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow_key k = key4(IPPROTO_TCP, 1, 1000, 2, 80);

	cr_assert_not_null(t);
	pkt(t, k, 52, RDM_TCP_FIN, T0, NULL, NULL);
	pkt(t, k, 52, RDM_TCP_FIN, T0 + 1, NULL, NULL);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 999 * MS, 0), 0);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 1000 * MS + 1, 0), 1);
	cr_assert_eq(ends.why[0], RDM_FLOW_END_TIMEOUT);
	rdm_flowtab_free(t);
}

Test(flowtab, tcp_closes_after_a_rst_either_way)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow_key a = key4(IPPROTO_TCP, 1, 1000, 2, 80);
	struct rdm_flow_key b = key4(IPPROTO_TCP, 1, 1001, 2, 80);

	cr_assert_not_null(t);
	pkt(t, a, 60, RDM_TCP_SYN, T0, NULL, NULL);
	pkt(t, rev(a), 40, RDM_TCP_RST | RDM_TCP_ACK, T0, NULL, NULL); /* refused */
	pkt(t, b, 60, RDM_TCP_SYN, T0, NULL, NULL);
	pkt(t, b, 40, RDM_TCP_RST, T0, NULL, NULL); /* aborted by the client */
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 99 * MS, 0), 0);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 100 * MS, 0), 2);
	cr_assert_eq(ends.why[0], RDM_FLOW_END_CLOSED);
	cr_assert_eq(ends.why[1], RDM_FLOW_END_CLOSED);
	cr_assert_eq(stats(t).closed, 2);
	rdm_flowtab_free(t);
}

Test(flowtab, a_syn_on_a_closed_flow_starts_a_new_one)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow_key a = key4(IPPROTO_TCP, 1, 1000, 2, 80);
	int created = -1, dir = -1;
	struct rdm_flow *f;

	cr_assert_not_null(t);
	pkt(t, a, 60, RDM_TCP_SYN, T0, NULL, NULL);
	pkt(t, rev(a), 40, RDM_TCP_RST | RDM_TCP_ACK, T0, NULL, NULL);
	/* A late ACK of the old connection stays with it... */
	pkt(t, a, 40, RDM_TCP_ACK, T0 + 10 * MS, NULL, &created);
	cr_assert_eq(created, 0);
	/* ...a new SYN on the same 5-tuple does not. */
	f = pkt(t, a, 60, RDM_TCP_SYN, T0 + 20 * MS, &dir, &created);
	cr_assert_eq(created, 1);
	cr_assert_eq(dir, 0);
	cr_assert_eq(f->packets[0], 1);
	cr_assert_eq(f->tcp_flags[1], 0);
	cr_assert_eq(ends.n, 1);
	cr_assert_eq(ends.why[0], RDM_FLOW_END_CLOSED);
	cr_assert_eq(stats(t).flows, 1);
	rdm_flowtab_free(t);
}

Test(flowtab, expire_respects_its_budget)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);

	cr_assert_not_null(t);
	for (int i = 0; i < 10; i++)
		pkt(t, key4(IPPROTO_UDP, 1, (uint16_t)(2000 + i), 2, 53), 60, 0, T0 + (uint64_t)i,
		    NULL, NULL);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 1000 * MS, 3), 3);
	cr_assert_eq(stats(t).flows, 7);
	/* The oldest went first. */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(ends.key[i].sport, 2000 + i);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 1000 * MS, 0), 7);
	cr_assert_eq(stats(t).flows, 0);
	rdm_flowtab_free(t);
}

/* Full: a closed TCP flow goes first, even the most recent one. */
Test(flowtab, eviction_prefers_closed_tcp)
{
	struct rdm_flow_conf c = small;
	struct rdm_flowtab *t;
	struct rdm_flow_key closed = key4(IPPROTO_TCP, 9, 9000, 2, 80);

	c.max_flows = 4;
	t = rdm_flowtab_new(&c, 0, on_end, &ends);
	cr_assert_not_null(t);
	pkt(t, key4(IPPROTO_UDP, 1, 1000, 2, 53), 60, 0, T0, NULL, NULL);
	pkt(t, key4(IPPROTO_TCP, 1, 1001, 2, 80), 60, RDM_TCP_SYN, T0 + 1, NULL, NULL);
	pkt(t, key4(IPPROTO_ICMP, 1, 0, 2, 0), 60, 0, T0 + 2, NULL, NULL);
	pkt(t, closed, 60, RDM_TCP_SYN, T0 + 3, NULL, NULL);
	pkt(t, rev(closed), 40, RDM_TCP_RST, T0 + 4, NULL, NULL);
	cr_assert_eq(stats(t).flows, 4);
	pkt(t, key4(IPPROTO_TCP, 5, 5000, 2, 80), 60, RDM_TCP_SYN, T0 + 5, NULL, NULL);
	cr_assert_eq(ends.n, 1);
	cr_assert(same_key(&ends.key[0], &closed));
	cr_assert_eq(ends.why[0], RDM_FLOW_END_EVICTED);
	cr_assert_null(find(t, closed, NULL));
	struct rdm_flowtab_stats s = stats(t);
	cr_assert_eq(s.evicted, 1);
	cr_assert_eq(s.closed, 0, "an evicted closed flow counts as evicted");
	cr_assert_eq(s.flows, 4);
	rdm_flowtab_free(t);
}

/* Full with no closed flow: the one nearest its deadline, whatever its class. */
Test(flowtab, eviction_takes_the_flow_nearest_its_deadline)
{
	struct rdm_flow_conf c = small; /* tcp 1000, udp 500, other 300 ms */
	struct rdm_flowtab *t;
	struct rdm_flow_key tcp = key4(IPPROTO_TCP, 1, 1000, 2, 80);  /* deadline T0 + 1000 */
	struct rdm_flow_key udp = key4(IPPROTO_UDP, 1, 1001, 2, 53);  /* deadline T0 + 600 */
	struct rdm_flow_key other = key4(IPPROTO_ICMP, 1, 0, 2, 0);   /* deadline T0 + 500 */
	struct rdm_flow_key udp2 = key4(IPPROTO_UDP, 1, 1002, 2, 53); /* deadline T0 + 700 */

	c.max_flows = 4;
	t = rdm_flowtab_new(&c, 0, on_end, &ends);
	cr_assert_not_null(t);
	pkt(t, tcp, 60, RDM_TCP_SYN, T0, NULL, NULL);
	pkt(t, udp, 60, 0, T0 + 100 * MS, NULL, NULL);
	pkt(t, other, 60, 0, T0 + 200 * MS, NULL, NULL); /* the most recent, yet first out */
	pkt(t, udp2, 60, 0, T0 + 200 * MS, NULL, NULL);

	pkt(t, key4(IPPROTO_UDP, 7, 7000, 2, 53), 60, 0, T0 + 250 * MS, NULL, NULL);
	cr_assert(same_key(&ends.key[0], &other));
	pkt(t, key4(IPPROTO_UDP, 8, 7000, 2, 53), 60, 0, T0 + 260 * MS, NULL, NULL);
	cr_assert(same_key(&ends.key[1], &udp));
	pkt(t, key4(IPPROTO_UDP, 9, 7000, 2, 53), 60, 0, T0 + 270 * MS, NULL, NULL);
	cr_assert(same_key(&ends.key[2], &udp2));
	/* The new UDP flows (T0 + 750..) are still nearer than the TCP flow (T0 + 1000). */
	pkt(t, key4(IPPROTO_UDP, 10, 7000, 2, 53), 60, 0, T0 + 280 * MS, NULL, NULL);
	struct rdm_flow_key first_new = key4(IPPROTO_UDP, 7, 7000, 2, 53);
	cr_assert(same_key(&ends.key[3], &first_new));
	for (int i = 0; i < 4; i++)
		cr_assert_eq(ends.why[i], RDM_FLOW_END_EVICTED);
	cr_assert_eq(stats(t).evicted, 4);
	cr_assert_not_null(find(t, tcp, NULL));
	rdm_flowtab_free(t);
}

/* A flood of new flows: the table never holds more than its bound, every displaced flow
 * is counted, and nothing is allocated after rdm_flowtab_new. */
Test(flowtab, a_flood_stays_within_bounds, .timeout = 120)
{
	enum { MAX = 1024, FLOOD = 1000000 };
	struct rdm_flow_conf c = {.max_flows = MAX};
	struct rdm_flowtab *t = rdm_flowtab_new(&c, 64, on_end, &ends);
	struct mallinfo2 before, after;

	cr_assert_not_null(t);
	before = mallinfo2();
	for (uint32_t i = 0; i < FLOOD; i++) {
		struct rdm_flow_key k = {.family = 4,
					 .proto = i % 3 ? IPPROTO_UDP : IPPROTO_TCP,
					 .sport = (uint16_t)(i | 1024),
					 .dport = 53};
		int created;

		k.src[0] = 10;
		k.src[1] = (uint8_t)(i >> 16);
		k.src[2] = (uint8_t)(i >> 8);
		k.src[3] = (uint8_t)i;
		k.dst[0] = 192;
		pkt(t, k, 100, RDM_TCP_SYN, T0 + i, NULL, &created);
		cr_assert_eq(created, 1);
		if (i % 4096 == 0)
			cr_assert_leq(stats(t).flows, MAX, "%lu flows after %u", stats(t).flows, i);
	}
	after = mallinfo2();
	struct rdm_flowtab_stats s = stats(t);
	cr_assert_eq(s.flows, MAX);
	cr_assert_eq(s.peak, MAX);
	cr_assert_eq(s.max, MAX);
	cr_assert_eq(s.created, FLOOD);
	cr_assert_eq(s.evicted, FLOOD - MAX);
	cr_assert_eq(ends.by_why[RDM_FLOW_END_EVICTED], FLOOD - MAX);
	cr_assert_eq(after.uordblks, before.uordblks, "heap grew during the flood");
	cr_assert_eq(after.hblkhd, before.hblkhd, "mmapped memory grew during the flood");
	/* The newest flow survived, and expiry empties the table. */
	struct rdm_flow_key last = {.family = 4,
				    .proto = IPPROTO_TCP,
				    .sport = (uint16_t)((FLOOD - 1) | 1024),
				    .dport = 53};
	last.src[0] = 10;
	last.src[1] = (uint8_t)((FLOOD - 1) >> 16);
	last.src[2] = (uint8_t)((FLOOD - 1) >> 8);
	last.src[3] = (uint8_t)(FLOOD - 1);
	last.dst[0] = 192;
	cr_assert_eq((FLOOD - 1) % 3, 0, "the last flow is TCP");
	cr_assert_not_null(find(t, last, NULL));
	rdm_flowtab_expire(t, T0 + FLOOD + 10ull * 60 * 1000 * MS, 0);
	cr_assert_eq(stats(t).flows, 0);
	rdm_flowtab_free(t);
}

Test(flowtab, ipv6_keys)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow_key k = key6(IPPROTO_TCP, "2001:db8::1", 40000, "2001:db8::2", 443);
	struct rdm_flow_key other = key6(IPPROTO_TCP, "2001:db8::1", 40000, "2001:db8::3", 443);
	/* An IPv4 key with the same leading bytes is another flow. */
	struct rdm_flow_key v4 = k;
	struct rdm_flow *f;
	int dir, created;

	v4.family = 4;
	cr_assert_not_null(t);
	f = pkt(t, k, 80, RDM_TCP_SYN, T0, &dir, &created);
	cr_assert_eq(created, 1);
	cr_assert_eq(pkt(t, rev(k), 80, RDM_TCP_SYN | RDM_TCP_ACK, T0, &dir, &created), f);
	cr_assert_eq(dir, 1);
	cr_assert_eq(created, 0);
	cr_assert_null(find(t, other, NULL));
	cr_assert_null(find(t, v4, NULL));
	cr_assert_neq(pkt(t, other, 80, RDM_TCP_SYN, T0, NULL, &created), f);
	cr_assert_eq(created, 1);
	pkt(t, rev(k), 60, RDM_TCP_RST, T0 + 1, NULL, NULL);
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 200 * MS, 0), 1);
	cr_assert(same_key(&ends.key[0], &k));
	cr_assert_eq(ends.why[0], RDM_FLOW_END_CLOSED);
	cr_assert_eq(stats(t).flows, 1);
	rdm_flowtab_free(t);
}

/* Keys whose hashes collide share a bucket chain: each is still found, and ending one in
 * the middle of the chain leaves the others reachable. */
Test(flowtab, colliding_hashes_share_a_chain)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow *f[5];
	int dir, created;

	cr_assert_not_null(t);
	for (int i = 0; i < 5; i++) {
		struct rdm_flow_key k = key4(IPPROTO_UDP, 1, (uint16_t)(100 + i), 2, 53);

		f[i] = rdm_flowtab_track(t, &k, 42, 10, 0, T0 + (uint64_t)i, &dir, &created);
		cr_assert_eq(created, 1);
	}
	/* The oldest (index 0) expires first, then the next; 2..4 remain. */
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 500 * MS + 1, 0), 2);
	for (int i = 0; i < 5; i++) {
		struct rdm_flow_key k = key4(IPPROTO_UDP, 1, (uint16_t)(100 + i), 2, 53);
		struct rdm_flow_key r = rev(k);

		if (i < 2) {
			cr_assert_null(rdm_flowtab_find(t, &k, 42, &dir));
		} else {
			cr_assert_eq(rdm_flowtab_find(t, &k, 42, &dir), f[i]);
			cr_assert_eq(rdm_flowtab_find(t, &r, 42, &dir), f[i]);
			cr_assert_eq(dir, 1);
		}
	}
	rdm_flowtab_free(t);
}

static void count_visit(void *arg, struct rdm_flow *f)
{
	uint32_t *d = rdm_flow_data(f);

	(*(int *)arg)++;
	d[1]++; /* visits of this flow */
}

Test(flowtab, foreach_visits_each_flow_once)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 16, on_end, &ends);
	struct rdm_flow *f[60];
	int visits = 0;

	cr_assert_not_null(t);
	for (int i = 0; i < 60; i++) {
		int proto = i % 3 == 0 ? IPPROTO_TCP : i % 3 == 1 ? IPPROTO_UDP : IPPROTO_ICMP;

		f[i] = pkt(t, key4(proto, i, (uint16_t)i, 200, 80), 60, 0, T0 + (uint64_t)i, NULL,
			   NULL);
		if (i % 6 == 0) /* some TCP flows closed */
			pkt(t, key4(proto, i, (uint16_t)i, 200, 80), 60, RDM_TCP_RST,
			    T0 + (uint64_t)i, NULL, NULL);
	}
	rdm_flowtab_foreach(t, count_visit, &visits);
	cr_assert_eq(visits, 60);
	for (int i = 0; i < 60; i++)
		cr_assert_eq(((uint32_t *)rdm_flow_data(f[i]))[1], 1, "flow %d visited %u times", i,
			     ((uint32_t *)rdm_flow_data(f[i]))[1]);
	rdm_flowtab_free(t);
}

Test(flowtab, foreach_on_an_empty_table)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, NULL, NULL);
	int visits = 0;

	cr_assert_not_null(t);
	rdm_flowtab_foreach(t, count_visit, &visits);
	cr_assert_eq(visits, 0);
	rdm_flowtab_free(t);
}

Test(flowtab, free_ends_every_flow_as_shutdown)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);

	cr_assert_not_null(t);
	for (int i = 0; i < 10; i++)
		pkt(t, key4(i % 2 ? IPPROTO_TCP : IPPROTO_UDP, i, 1000, 2, 80), 60, 0, T0, NULL,
		    NULL);
	pkt(t, key4(IPPROTO_TCP, 1, 1000, 2, 80), 60, RDM_TCP_RST, T0, NULL, NULL);
	rdm_flowtab_free(t);
	cr_assert_eq(ends.total, 10);
	cr_assert_eq(ends.by_why[RDM_FLOW_END_SHUTDOWN], 10);
	rdm_flowtab_free(NULL);
}

Test(flowtab, data_is_aligned_and_zeroed_on_reuse)
{
	struct rdm_flow_conf c = small;
	struct rdm_flowtab *t;
	struct rdm_flow *f, *g;
	uint8_t zero[100] = {0};

	c.max_flows = 2;
	t = rdm_flowtab_new(&c, 100, on_end, &ends);
	ends.read_tag = 1;
	cr_assert_not_null(t);
	f = pkt(t, key4(IPPROTO_UDP, 1, 1, 2, 53), 60, 0, T0, NULL, NULL);
	cr_assert_eq((uintptr_t)rdm_flow_data(f) % 16, 0);
	cr_assert_eq(memcmp(rdm_flow_data(f), zero, 100), 0);
	memset(rdm_flow_data(f), 0xa5, 100);
	memcpy(rdm_flow_data(f), &(uint32_t){7}, 4);
	g = pkt(t, key4(IPPROTO_UDP, 1, 2, 2, 53), 60, 0, T0 + 1, NULL, NULL);
	cr_assert_eq((uintptr_t)rdm_flow_data(g) % 16, 0);
	memset(rdm_flow_data(g), 0x5a, 100);
	memcpy(rdm_flow_data(g), &(uint32_t){8}, 4);
	/* The data is the caller's to the end: the callback sees it. */
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 500 * MS, 0), 1);
	cr_assert_eq(ends.tag[0], 7);
	struct rdm_flow *h = pkt(t, key4(IPPROTO_UDP, 1, 3, 2, 53), 60, 0, T0 + 2, NULL, NULL);
	cr_assert_eq(h, f, "the freed entry is reused");
	cr_assert_eq(memcmp(rdm_flow_data(h), zero, 100), 0, "expired flow's data left over");
	/* The same through eviction. */
	struct rdm_flow *e = pkt(t, key4(IPPROTO_UDP, 1, 4, 2, 53), 60, 0, T0 + 3, NULL, NULL);
	cr_assert_eq(e, g);
	cr_assert_eq(ends.why[1], RDM_FLOW_END_EVICTED);
	cr_assert_eq(ends.tag[1], 8);
	cr_assert_eq(memcmp(rdm_flow_data(e), zero, 100), 0, "evicted flow's data left over");
	cr_assert_eq(e->packets[0], 1);
	cr_assert_eq(e->packets[1], 0);
	cr_assert_eq(e->bytes[0], 60);
	rdm_flowtab_free(t);
}

/* One packet of key k, tracked with the hints h (a frame's, from the state it came with). */
static struct rdm_flow *pkt_hinted(struct rdm_flowtab *t, struct rdm_flow_key k, uint64_t now,
				   struct rdm_flow_hint *h, int *dir, int *created)
{
	return rdm_flowtab_track_hinted(t, &k, rdm_flow_hash(&k), 100, 0, now, dir, created, h);
}

/* Flow hints (rdm_frame.hints): each direction's state remembers where the flow is, and
 * the next frames take it from there; a hint names nothing once its flow is gone, even
 * when the entry holds another flow by then. */
Test(flowtab, a_hint_finds_its_flow_in_its_direction_until_the_flow_ends)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, on_end, &ends);
	struct rdm_flow_key a = key4(IPPROTO_UDP, 1, 1000, 2, 53), ra = rev(a);
	struct rdm_flow_key b = key4(IPPROTO_UDP, 3, 2000, 4, 53);
	struct rdm_flow_hint ha[RDM_FLOW_HINTS] = {0}, hr[RDM_FLOW_HINTS] = {0};
	struct rdm_flow *f, *g;
	int dir = -1, created = -1;

	cr_assert_not_null(t);
	f = pkt_hinted(t, a, T0, ha, &dir, &created);
	cr_assert_not_null(f);
	cr_assert_eq(created, 1);
	cr_assert_eq(pkt_hinted(t, ra, T0, hr, &dir, &created), f, "the reply finds the flow");
	cr_assert_eq(dir, 1);
	cr_assert_eq(created, 0);
	/* Taken by the hint, in the hint's direction, and counted there. */
	cr_assert_eq(rdm_flowtab_find_hinted(t, &a, rdm_flow_hash(&a), &dir, ha), f);
	cr_assert_eq(dir, 0);
	cr_assert_eq(rdm_flowtab_find_hinted(t, &ra, rdm_flow_hash(&ra), &dir, hr), f);
	cr_assert_eq(dir, 1);
	cr_assert_eq(pkt_hinted(t, a, T0 + MS, ha, &dir, &created), f);
	cr_assert_eq(pkt_hinted(t, ra, T0 + MS, hr, &dir, &created), f);
	cr_assert_eq(f->packets[0], 2);
	cr_assert_eq(f->packets[1], 2);
	cr_assert_eq(f->bytes[1], 200);
	cr_assert_eq(f->last_ns, T0 + MS);
	/* The flow ends; another takes its entry (the only free one it left). */
	cr_assert_eq(rdm_flowtab_expire(t, T0 + 10000 * MS, 0), 1);
	g = pkt_hinted(t, b, T0 + 10001 * MS, NULL, &dir, &created);
	cr_assert_eq(g, f, "the entry is reused");
	cr_assert_eq(rdm_flowtab_find_hinted(t, &a, rdm_flow_hash(&a), &dir, ha), NULL,
		     "the old hint names no flow");
	/* A packet of a again is a new flow, and hinted anew. */
	f = pkt_hinted(t, a, T0 + 10002 * MS, ha, &dir, &created);
	cr_assert_eq(created, 1);
	cr_assert_neq(f, g);
	cr_assert_eq(rdm_flowtab_find_hinted(t, &a, rdm_flow_hash(&a), &dir, ha), f);
	rdm_flowtab_free(t);
}

/* A table takes only its own hints: another table's, in the same place of a frame's
 * hints, naming the same entry, is not taken for one of its flows. */
Test(flowtab, a_hint_from_another_table_is_not_taken)
{
	struct rdm_flowtab *t[RDM_FLOW_HINTS + 1];
	struct rdm_flow_key a = key4(IPPROTO_UDP, 1, 1000, 2, 53);
	struct rdm_flow_key b = key4(IPPROTO_UDP, 3, 2000, 4, 53);
	struct rdm_flow_hint h[RDM_FLOW_HINTS] = {0};
	struct rdm_flow *fa, *fb;
	int dir = -1, created = -1;

	/* Tables take the places in turn: the first and the last share one. */
	for (int i = 0; i <= RDM_FLOW_HINTS; i++)
		cr_assert_not_null(t[i] = rdm_flowtab_new(&small, 0, NULL, NULL));
	fa = pkt_hinted(t[0], a, T0, h, &dir, &created);
	fb = pkt_hinted(t[RDM_FLOW_HINTS], b, T0, NULL, &dir, &created);
	cr_assert_not_null(fa);
	cr_assert_not_null(fb);
	cr_assert_eq(rdm_flowtab_find_hinted(t[RDM_FLOW_HINTS], &a, rdm_flow_hash(&a), &dir, h),
		     NULL, "a is not in the last table");
	cr_assert_eq(rdm_flowtab_find_hinted(t[0], &a, rdm_flow_hash(&a), &dir, h), fa);
	for (int i = 0; i <= RDM_FLOW_HINTS; i++)
		rdm_flowtab_free(t[i]);
}

#if defined(__SANITIZE_ADDRESS__)
/* With the sanitizers, every hint taken is checked against the look-up it saves: a frame
 * that kept its hints after its key changed stops the tests rather than counting its
 * packet in another flow. */
Test(flowtab, a_hint_used_with_another_key_stops_sanitized_builds, .signal = SIGABRT)
{
	struct rdm_flowtab *t = rdm_flowtab_new(&small, 0, NULL, NULL);
	struct rdm_flow_key a = key4(IPPROTO_UDP, 1, 1000, 2, 53);
	struct rdm_flow_key b = key4(IPPROTO_UDP, 3, 2000, 4, 53);
	struct rdm_flow_hint h[RDM_FLOW_HINTS] = {0};
	int dir, created;

	pkt_hinted(t, a, T0, h, &dir, &created);
	pkt_hinted(t, b, T0, NULL, &dir, &created);
	rdm_flowtab_find_hinted(t, &b, rdm_flow_hash(&b), &dir, h);
}
#endif
