/* The flow generator: sizes and creates the flows and interleaves their packets (the
 * public API of node/gen.h).
 *
 * Flows are created lazily, at most GEN_ACTIVE at a time, so memory does not grow with
 * the packet count. Each flow is planned when it is created: its kind and its exact
 * packet count come from a streaming split of the remaining packet budget over the
 * remaining flows, and its plan is a short list of phases (control segments, and
 * messages that are cut into MSS-sized segments and acknowledged the way a delayed-ACK
 * receiver does). Payload bytes are computed from the flow's key and the offset in the
 * message, so nothing but the current message's head is stored.
 *
 * Every flow has its own PRNG seeded from (seed, flow index), so a flow's bytes do not
 * depend on how flows interleave; the generator's PRNG draws the interleaving and the
 * flow kinds and sizes. */
#include "node/gen.h"
#include "node/gen_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define GEN_ACTIVE   64 /* flows in progress at once */
#define GEN_MIN_HTTP 9	/* handshake, request, 1 segment + ACK, teardown */
#define GEN_MIN_TLS  11 /* handshake, hello, 1-segment server flight, finished, 1 + ACK, FIN */
#define GEN_MIN_DNS  2	/* query, answer */

/* Client (address, port) pairs: 10.1.0.1 .. 10.1.255.254 times ports 32768 .. 60999
 * (Linux's ephemeral range). Each flow index maps to its own pair, so 5-tuples never
 * repeat and a capture holds exactly conf->flows distinct flows. */
#define GEN_CLIENT_HOSTS 65534u
#define GEN_CLIENT_PORTS 28232u
#define GEN_CLIENT_PAIRS (GEN_CLIENT_HOSTS * GEN_CLIENT_PORTS)
#define GEN_SITES	 5000u /* www.example1.test .. www.example5000.test */

struct rdm_gen {
	struct rdm_gen_conf conf;
	uint64_t rng;
	uint32_t next_flow; /* index of the next flow to create */
	uint64_t budget;    /* packets not yet given to a created flow */
	uint32_t n_active;
	struct flow act[GEN_ACTIVE];
	struct flow saved;
	uint8_t scratch[GEN_MAX_PKT];
};

static int flow_done(const struct flow *f)
{
	return f->kind == FK_DNS ? f->dns_i == f->dns_n : f->ph == f->n_ph;
}

static int flow_next(struct flow *f, uint8_t *b)
{
	return f->kind == FK_DNS ? rdm_gen__dns_next(f, b) : rdm_gen__tcp_next(f, b);
}

/* Draws the next flow's kind and packet count from the remaining budget: DNS flows take
 * 2 (sometimes 4), TCP flows share the rest around the mean with +-50% jitter. A TCP
 * flow is kept only where the budget can pay its minimum, and the last flow takes
 * whatever is left, so the counts always add up. */
static void flow_size(struct rdm_gen *g, uint32_t remaining, int *kind, uint64_t *pkts)
{
	uint64_t b = g->budget, maxp = b - GEN_MIN_DNS * (uint64_t)(remaining - 1), p, min;
	uint32_t u = rdm_gen__rnd_below(&g->rng, 100);
	int k = u < 40 ? FK_HTTP : u < 75 ? FK_TLS : FK_DNS;

	if (remaining == 1) {
		if (k == FK_DNS && b > 8)
			k = rdm_gen__rnd_below(&g->rng, 2) ? FK_TLS : FK_HTTP;
		if (k == FK_TLS && b < GEN_MIN_TLS)
			k = FK_HTTP;
		if (k == FK_HTTP && b < GEN_MIN_HTTP)
			k = FK_DNS;
		*kind = k;
		*pkts = b;
		return;
	}
	if (k == FK_DNS) {
		*kind = k;
		*pkts = (rdm_gen__rnd_below(&g->rng, 8) == 0 && maxp >= 4) ? 4 : 2;
		return;
	}
	min = k == FK_TLS ? GEN_MIN_TLS : GEN_MIN_HTTP;
	{
		/* The mean TCP flow, with a quarter of the flows being DNS of 2.25 packets. */
		double at = ((double)b - 0.5625 * remaining) / (0.75 * remaining);

		if (at < (double)min) {
			/* Too few packets for every TCP flow: keep this one in proportion. */
			if (rdm_gen__rnd_unit(&g->rng) >= (at - 2) / (double)(min - 2))
				p = 0;
			else
				p = min;
		} else {
			p = (uint64_t)(at * (0.5 + rdm_gen__rnd_unit(&g->rng)));
		}
	}
	if (p && p < min)
		p = min;
	if (p > maxp)
		p = maxp;
	if (p < min && k == FK_TLS && p >= GEN_MIN_HTTP)
		k = FK_HTTP;
	else if (p < min) {
		k = FK_DNS;
		p = GEN_MIN_DNS;
	}
	*kind = k;
	*pkts = p;
}

/* The client's (address, port) for flow i: a keyed permutation of 31-bit values, cycled
 * until it lands below the number of pairs, is a bijection on the pairs. */
static uint32_t client_pair(uint32_t i, uint64_t seed)
{
	const uint32_t m = 0x7fffffff;
	uint32_t x = i, s0 = (uint32_t)rdm_gen__mix64(seed),
		 s1 = (uint32_t)(rdm_gen__mix64(seed) >> 32);

	do {
		x = (x ^ s0) & m;
		x = (x * 0x2c1b3c6du) & m;
		x ^= x >> 12;
		x = (x + s1) & m;
		x = (x * 0x297a2d39u) & m;
		x ^= x >> 15;
	} while (x >= GEN_CLIENT_PAIRS);
	return x;
}

static int flow_new(struct rdm_gen *g, struct flow *f)
{
	uint32_t i = g->next_flow++, pair;
	uint64_t pkts;
	int kind;

	flow_size(g, g->conf.flows - i, &kind, &pkts);
	g->budget -= pkts;

	memset(f, 0, offsetof(struct flow, pre));
	f->kind = (uint8_t)kind;
	f->index = i;
	f->rng = rdm_gen__mix64(g->conf.seed ^ rdm_gen__mix64(i + 0x632be59bd9b4e019ull));
	f->key = rdm_gen__rnd(&f->rng);

	pair = client_pair(i, g->conf.seed);
	f->ip[0] = 10u << 24 | 1u << 16 | (1 + pair % GEN_CLIENT_HOSTS);
	f->port[0] = (uint16_t)(32768 + pair / GEN_CLIENT_HOSTS);
	/* Half the lookups go to the 50 most popular sites. */
	f->site = rdm_gen__rnd_below(&f->rng, 2) ? rdm_gen__rnd_range(&f->rng, 1, 50)
						 : rdm_gen__rnd_range(&f->rng, 1, GEN_SITES);
	f->ttl[0] = rdm_gen__rnd_below(&f->rng, 4) ? 64 : 128; /* Linux and macOS, or Windows */
	{
		static const uint8_t init[] = {64, 64, 128, 255};

		f->ttl[1] = (uint8_t)(init[rdm_gen__rnd_below(&f->rng, 4)] -
				      rdm_gen__rnd_range(&f->rng, 4, 20));
	}
	f->ipid[0] = (uint16_t)rdm_gen__rnd(&f->rng);
	f->ipid[1] = (uint16_t)rdm_gen__rnd(&f->rng);

	if (kind == FK_DNS) {
		f->ip[1] =
		    10u << 24 | 2u << 16 | (53 + rdm_gen__rnd_below(&f->rng, 2)); /* 10.2.0.53/54 */
		f->port[1] = 53;
		f->dns_n = pkts;
		f->dns_ttl = rdm_gen__rnd_range(&f->rng, 60, 3600);
		return 0;
	}
	f->ip[1] = rdm_gen__site_ip(f->site);
	f->port[1] = kind == FK_TLS ? 443 : 80;
	f->seq[0] = (uint32_t)rdm_gen__rnd(&f->rng);
	f->seq[1] = (uint32_t)rdm_gen__rnd(&f->rng);
	f->tsbase[0] = (uint32_t)rdm_gen__rnd(&f->rng);
	f->tsbase[1] = (uint32_t)rdm_gen__rnd(&f->rng);
	f->win[0] = (uint16_t)rdm_gen__rnd_range(&f->rng, 400, 2000); /* scaled by 2^7 */
	f->win[1] = (uint16_t)rdm_gen__rnd_range(&f->rng, 400, 600);
	return kind == FK_TLS ? rdm_gen__plan_tls(f, pkts) : rdm_gen__plan_http(f, pkts);
}

/* ---- API ---- */

struct rdm_gen *rdm_gen_new(const struct rdm_gen_conf *conf)
{
	struct rdm_gen *g;

	/* Every flow needs at least a DNS query and its answer. */
	if (!conf || conf->flows < 1 || conf->flows > GEN_CLIENT_PAIRS ||
	    conf->packets < GEN_MIN_DNS * (uint64_t)conf->flows) {
		errno = EINVAL;
		return NULL;
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->conf = *conf;
	g->rng = rdm_gen__mix64(conf->seed ^ 0x5851f42d4c957f2dull);
	g->budget = conf->packets;
	while (g->n_active < GEN_ACTIVE && g->next_flow < conf->flows) {
		if (flow_new(g, &g->act[g->n_active]) < 0) {
			free(g);
			errno = EOVERFLOW;
			return NULL;
		}
		g->n_active++;
	}
	return g;
}

int rdm_gen_next(struct rdm_gen *g, uint8_t *buf, uint32_t cap)
{
	uint64_t rng = g->rng;
	uint32_t slot;
	struct flow *f;
	int len;

	if (!g->n_active)
		return 0;
	slot = rdm_gen__rnd_below(&g->rng, g->n_active);
	f = &g->act[slot];
	if (cap >= GEN_MAX_PKT) {
		len = flow_next(f, buf);
	} else {
		/* Build aside, and undo if it does not fit, so that no packet is lost. */
		memcpy(&g->saved, f, sizeof(*f));
		len = flow_next(f, g->scratch);
		if (len > 0 && (uint32_t)len > cap) {
			memcpy(f, &g->saved, sizeof(*f));
			g->rng = rng;
			return -EMSGSIZE;
		}
		if (len > 0)
			memcpy(buf, g->scratch, (size_t)len);
	}
	if (len < 0)
		return len;
	if (flow_done(f)) {
		if (g->next_flow < g->conf.flows) {
			int rc = flow_new(g, f);

			if (rc < 0)
				return rc;
		} else if (f != &g->act[--g->n_active]) {
			*f = g->act[g->n_active];
		}
	}
	return len;
}

void rdm_gen_free(struct rdm_gen *g)
{
	free(g);
}
