/* The flow generator (node/gen.h): exact packet and flow counts, determinism, small
 * buffers, valid packets and a realistic mix of HTTP, TLS and DNS flows. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "node/gen.h"
#include "lib/pkt.h"

/* ---- helpers ---- */

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The RFC 1071 sum, written independently of the generator's: big-endian words. */
static uint32_t sum16(uint32_t s, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static int sum_ok(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s == 0xffff;
}

static uint64_t hash_of(const uint8_t *p, int len)
{
	struct rdm_flow_key k;

	cr_assert_eq(rdm_pkt_flow_key(p, (uint32_t)len, &k), 0);
	return rdm_flow_hash(&k);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static size_t distinct(uint64_t *v, size_t n)
{
	size_t d = 0;

	qsort(v, n, sizeof(*v), cmp_u64);
	for (size_t i = 0; i < n; i++)
		d += i == 0 || v[i] != v[i - 1];
	return d;
}

/* Runs a generator to its end; returns the packet count and the distinct flows. */
static uint64_t gen_count(uint32_t flows, uint64_t packets, uint64_t seed, size_t *nflows)
{
	struct rdm_gen_conf c = {.flows = flows, .packets = packets, .seed = seed};
	struct rdm_gen *g = rdm_gen_new(&c);
	uint8_t buf[2048];
	uint64_t n = 0, *h = NULL;
	size_t nh = 0, cap = 0;
	int len;

	cr_assert_not_null(g, "flows %u packets %llu: %s", flows, (unsigned long long)packets,
			   strerror(errno));
	while ((len = rdm_gen_next(g, buf, sizeof(buf))) > 0) {
		cr_assert_leq(len, 1500);
		if (nh == cap) {
			cap = cap ? cap * 2 : 1024;
			h = realloc(h, cap * sizeof(*h));
			cr_assert_not_null(h);
		}
		h[nh++] = hash_of(buf, len);
		n++;
	}
	cr_assert_eq(len, 0, "generator error %d", len);
	cr_assert_eq(rdm_gen_next(g, buf, sizeof(buf)), 0, "0 again after the end");
	*nflows = distinct(h, nh);
	free(h);
	rdm_gen_free(g);
	return n;
}

/* ---- gen: counts ---- */

Test(gen, exact_counts)
{
	static const struct {
		uint32_t flows;
		uint64_t packets, seed;
	} cases[] = {
	    {1, 2, 1},	     {1, 3, 1},	       {1, 9, 2},	   {1, 10, 3},	   {1, 11, 4},
	    {1, 5000, 5},    {3, 7, 6},	       {10, 20, 7},	   {10, 25, 8},	   {10, 50, 9},
	    {10, 100, 10},   {64, 1000, 11},   {65, 1000, 12},	   {100, 200, 13}, {100, 10000, 14},
	    {200, 5000, 15}, {1000, 2001, 16}, {1000, 100000, 17}, {5, 50000, 18},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t nf;
		uint64_t n = gen_count(cases[i].flows, cases[i].packets, cases[i].seed, &nf);

		cr_assert_eq(n, cases[i].packets, "case %zu: %llu packets", i,
			     (unsigned long long)n);
		cr_assert_eq(nf, cases[i].flows, "case %zu: %zu flows", i, nf);
	}
}

/* Every small split of packets over flows adds up, including the tightest ones. */
Test(gen, exact_counts_small_sweep)
{
	for (uint32_t f = 1; f <= 12; f++) {
		for (uint64_t p = 2 * f; p <= 2 * f + 40; p++) {
			size_t nf;
			uint64_t n = gen_count(f, p, p * 31 + f, &nf);

			cr_assert_eq(n, p, "flows %u packets %llu: got %llu", f,
				     (unsigned long long)p, (unsigned long long)n);
			cr_assert_eq(nf, f, "flows %u packets %llu: %zu flows", f,
				     (unsigned long long)p, nf);
		}
	}
}

Test(gen, bad_conf)
{
	struct rdm_gen_conf c = {.flows = 0, .packets = 10, .seed = 1};

	errno = 0;
	cr_assert_null(rdm_gen_new(NULL));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(rdm_gen_new(&c));
	cr_assert_eq(errno, EINVAL);
	c.flows = 10;
	c.packets = 19;
	errno = 0;
	cr_assert_null(rdm_gen_new(&c));
	cr_assert_eq(errno, EINVAL);
	c.packets = 20;
	rdm_gen_free(rdm_gen_new(&c));
	rdm_gen_free(NULL);
}

/* ---- gen: determinism ---- */

static uint64_t gen_digest(uint64_t seed)
{
	struct rdm_gen_conf c = {.flows = 50, .packets = 3000, .seed = seed};
	struct rdm_gen *g = rdm_gen_new(&c);
	uint8_t buf[2048];
	uint64_t h = 1469598103934665603ull;
	int len;

	cr_assert_not_null(g);
	while ((len = rdm_gen_next(g, buf, sizeof(buf))) > 0) {
		h = (h ^ (uint64_t)len) * 1099511628211ull;
		for (int i = 0; i < len; i++)
			h = (h ^ buf[i]) * 1099511628211ull;
	}
	rdm_gen_free(g);
	return h;
}

Test(gen, deterministic)
{
	cr_assert_eq(gen_digest(42), gen_digest(42));
	cr_assert_neq(gen_digest(42), gen_digest(43));
	cr_assert_neq(gen_digest(0), gen_digest(1));
}

/* A buffer too small is refused without losing the packet. */
Test(gen, small_buffer)
{
	struct rdm_gen_conf c = {.flows = 20, .packets = 600, .seed = 9};
	struct rdm_gen *a = rdm_gen_new(&c), *b = rdm_gen_new(&c);
	uint8_t x[2048], y[2048];
	int la, lb, refused = 0;

	cr_assert(a && b);
	for (;;) {
		la = rdm_gen_next(a, x, sizeof(x));
		lb = rdm_gen_next(b, y, 100);
		if (lb == -EMSGSIZE) {
			refused++;
			lb = rdm_gen_next(b, y, (uint32_t)la);
		}
		cr_assert_eq(la, lb);
		if (la <= 0)
			break;
		cr_assert_eq(memcmp(x, y, (size_t)la), 0);
	}
	cr_assert_gt(refused, 0);
	rdm_gen_free(a);
	rdm_gen_free(b);
}

/* ---- gen: packet and flow validity ---- */

struct tflow {
	uint64_t hash;
	int used;
	uint32_t client; /* address of the side that sent the first packet */
	int syn[2], fin[2];
	uint32_t next[2]; /* next expected sequence number per side */
	uint64_t resp_bytes, resp_expect;
	int have_req;
	/* TLS record framing per side: header bytes seen, ciphertext bytes still due */
	uint8_t rhdr[2][5];
	uint32_t rhave[2], rleft[2], records[2];
};

#define TFLOWS 4096

struct check {
	struct tflow fl[TFLOWS];
	int http_syn, tls_syn, hosts, snis, dns_q, dns_a, resp_done;
};

static struct tflow *tflow_get(struct check *c, uint64_t h, uint32_t src)
{
	size_t i = h % TFLOWS;

	while (c->fl[i].used && c->fl[i].hash != h)
		i = (i + 1) % TFLOWS;
	if (!c->fl[i].used) {
		memset(&c->fl[i], 0, sizeof(c->fl[i]));
		c->fl[i].used = 1;
		c->fl[i].hash = h;
		c->fl[i].client = src;
	}
	return &c->fl[i];
}

/* Finds the SNI in a ClientHello record by walking it as a TLS parser would. */
static int find_sni(const uint8_t *p, uint32_t n, char *out, size_t cap)
{
	uint32_t off, end, elen;

	if (n < 9 || p[0] != 0x16 || p[5] != 0x01)
		return -1;
	if ((uint32_t)be16(p + 3) + 5 != n)
		return -1; /* the record is the whole segment */
	if ((uint32_t)(p[6] << 16 | p[7] << 8 | p[8]) + 9 != n)
		return -1;
	off = 9 + 2 + 32;
	off += 1 + p[off];	  /* session id */
	off += 2 + be16(p + off); /* cipher suites */
	off += 1 + p[off];	  /* compression */
	elen = be16(p + off);
	off += 2;
	end = off + elen;
	if (end != n)
		return -1;
	while (off + 4 <= end) {
		uint16_t type = be16(p + off), len = be16(p + off + 2);

		if (off + 4 + len > end)
			return -1;
		if (type == 0) {
			uint16_t nl = be16(p + off + 7);

			if (p[off + 6] != 0 || (size_t)nl + 1 > cap || off + 9 + nl > end)
				return -1;
			memcpy(out, p + off + 9, nl);
			out[nl] = 0;
			return 0;
		}
		off += 4 + len;
	}
	return -1;
}

static int host_name_ok(const char *h)
{
	unsigned n;
	char tail[16];

	return sscanf(h, "www.example%u.%15s", &n, tail) == 2 && strcmp(tail, "test") == 0 &&
	       n >= 1 && n <= 5000;
}

/* Follows one side's byte stream as a sequence of TLS records across segments. */
static void tls_stream(struct tflow *f, int d, const uint8_t *p, uint32_t n)
{
	while (n) {
		if (f->rleft[d]) {
			uint32_t k = n < f->rleft[d] ? n : f->rleft[d];

			f->rleft[d] -= k;
			p += k;
			n -= k;
			continue;
		}
		f->rhdr[d][f->rhave[d]++] = *p++;
		n--;
		if (f->rhave[d] < 5)
			continue;
		f->rhave[d] = 0;
		cr_assert(f->rhdr[d][0] >= 0x14 && f->rhdr[d][0] <= 0x17, "content type %#x",
			  f->rhdr[d][0]);
		cr_assert_eq(f->rhdr[d][1], 3);
		cr_assert(f->rhdr[d][2] == 1 || f->rhdr[d][2] == 3);
		f->rleft[d] = be16(f->rhdr[d] + 3);
		cr_assert(f->rleft[d] >= 1 && f->rleft[d] <= 16384 + 256, "record %u", f->rleft[d]);
		if (f->rhdr[d][0] == 0x17)
			cr_assert_geq(f->rleft[d], 17, "room for a content type and a tag");
		f->records[d]++;
	}
}

static void check_tcp(struct check *c, const uint8_t *ip, uint32_t len)
{
	const uint8_t *t = ip + 20;
	uint32_t src = be32(ip + 12), doff = (uint32_t)(t[12] >> 4) * 4, plen;
	uint32_t seq = be32(t + 4), ack = be32(t + 8);
	uint8_t flags = t[13];
	uint16_t sport = be16(t), dport = be16(t + 2);
	struct tflow *f;
	const uint8_t *pay;
	int d;

	cr_assert_geq(doff, 20);
	cr_assert_leq(20 + doff, len);
	plen = len - 20 - doff;
	pay = t + doff;
	f = tflow_get(c, hash_of(ip, (int)len), src);
	d = src != f->client;
	if (flags & 0x02) {
		cr_assert_eq(f->syn[d], 0, "one SYN per side");
		cr_assert_eq(!!(flags & 0x10), d, "SYN from the client, SYN/ACK from the server");
		f->syn[d] = 1;
		f->next[d] = seq + 1;
		if (d == 0) {
			c->http_syn += dport == 80;
			c->tls_syn += dport == 443;
		}
	} else {
		cr_assert(f->syn[d], "data before the SYN");
		cr_assert_eq(seq, f->next[d], "sequence number continues");
		f->next[d] += plen + (flags & 0x01);
		cr_assert(!f->fin[d] || (!plen && !(flags & 0x01)),
			  "nothing but the last ACK after a FIN");
		f->fin[d] |= flags & 0x01;
	}
	if (flags & 0x10)
		cr_assert_eq(ack, f->next[!d], "acknowledges everything the peer sent");
	else
		cr_assert(flags == 0x02);
	if ((flags & 0x01) && (sport == 443 || dport == 443)) {
		cr_assert(f->rhave[d] == 0 && f->rleft[d] == 0, "whole records before FIN");
		cr_assert_geq(f->records[d], 4, "hello, CCS, and encrypted records");
	}
	if (sport == 443 || dport == 443)
		tls_stream(f, d, t + doff, len - 20 - doff);

	if (!plen)
		return;
	if (d == 0 && dport == 80) {
		cr_assert_eq(f->have_req, 0);
		f->have_req = 1;
		cr_assert_eq(memcmp(pay, "GET /", 5), 0);
		cr_assert(memmem(pay, plen, "\r\nHost: www.example", 19));
		cr_assert(memmem(pay, plen, "\r\nUser-Agent: ", 14));
		cr_assert_eq(memcmp(pay + plen - 4, "\r\n\r\n", 4), 0);
		{
			const uint8_t *h = memmem(pay, plen, "Host: ", 6);
			char name[64];
			size_t k = 0;

			for (h += 6; *h != '\r' && k < sizeof(name) - 1; h++)
				name[k++] = (char)*h;
			name[k] = 0;
			cr_assert(host_name_ok(name), "%s", name);
		}
		c->hosts++;
	}
	if (d == 1 && sport == 80) {
		if (f->resp_expect == 0) {
			const uint8_t *cl = memmem(pay, plen, "\r\nContent-Length: ", 18);
			const uint8_t *eoh = memmem(pay, plen, "\r\n\r\n", 4);

			cr_assert_eq(memcmp(pay, "HTTP/1.1 200 OK\r\n", 17), 0);
			cr_assert(cl && eoh);
			f->resp_expect =
			    (uint64_t)(eoh + 4 - pay) + strtoull((const char *)cl + 18, NULL, 10);
		}
		f->resp_bytes += plen;
		cr_assert_leq(f->resp_bytes, f->resp_expect);
		cr_assert_leq(plen, 1448);
		if (f->resp_bytes == f->resp_expect)
			c->resp_done++;
	}
	if (d == 0 && dport == 443 && pay[0] == 0x16) {
		char name[128];

		cr_assert_eq(find_sni(pay, plen, name, sizeof(name)), 0, "ClientHello parses");
		cr_assert(host_name_ok(name), "%s", name);
		cr_assert(memmem(pay, plen, "\x00\x2b\x00\x05\x04\x03\x04\x03\x03", 9),
			  "supported_versions");
		cr_assert(memmem(pay, plen, "\x02h2\x08http/1.1", 12), "ALPN");
		c->snis++;
	}
}

static void check_dns(struct check *c, const uint8_t *ip, uint32_t len)
{
	const uint8_t *u = ip + 20, *m = u + 8;
	uint32_t ml = len - 28;
	int answer = be16(u) == 53;

	cr_assert(be16(u) == 53 || be16(u + 2) == 53);
	cr_assert_geq(ml, 12 + 20);
	cr_assert_eq(be16(m + 4), 1, "one question");
	cr_assert_eq(be16(m + 6), answer ? 1 : 0);
	cr_assert_eq(be16(m + 2), answer ? 0x8180 : 0x0100);
	cr_assert_eq(memcmp(m + 12, "\x03www", 4), 0);
	cr_assert(m[16] >= 8 && m[16] <= 11 && memcmp(m + 17, "example", 7) == 0);
	if (answer) {
		/* name, type, class, then the answer: a pointer back to the name */
		const uint8_t *q = m + 12;

		while (*q)
			q += *q + 1;
		q += 5;
		cr_assert_eq(be16(q), 0xc00c);
		cr_assert(be16(q + 2) == 1 ? be16(q + 10) == 4 : be16(q + 10) == 16);
		c->dns_a++;
	} else {
		c->dns_q++;
	}
}

static void check_packet(struct check *c, const uint8_t *p, int len)
{
	uint32_t l4len;
	uint32_t ps;

	cr_assert_geq(len, 28);
	cr_assert_eq(p[0], 0x45);
	cr_assert_eq(be16(p + 2), (uint16_t)len, "IP total length");
	cr_assert(sum_ok(sum16(0, p, 20)), "IPv4 header checksum");
	cr_assert(p[8] > 0);
	cr_assert_eq(p[12], 10);
	cr_assert(p[13] == 1 || p[13] == 2, "10.1/16 clients, 10.2/16 servers");
	l4len = (uint32_t)len - 20;
	ps = sum16(0, p + 12, 8) + p[9] + l4len;
	cr_assert(sum_ok(sum16(ps, p + 20, l4len)), "transport checksum");
	if (p[9] == IPPROTO_TCP) {
		check_tcp(c, p, (uint32_t)len);
	} else {
		cr_assert_eq(p[9], IPPROTO_UDP);
		cr_assert_eq(be16(p + 24), l4len);
		cr_assert_neq(be16(p + 26), 0);
		check_dns(c, p, (uint32_t)len);
	}
}

static void check_run(uint32_t flows, uint64_t packets, uint64_t seed, int all_kinds)
{
	struct rdm_gen_conf conf = {.flows = flows, .packets = packets, .seed = seed};
	struct rdm_gen *g = rdm_gen_new(&conf);
	struct check *c = calloc(1, sizeof(*c));
	uint8_t buf[2048];
	int len, open_tcp = 0;

	cr_assert(g && c);
	while ((len = rdm_gen_next(g, buf, sizeof(buf))) > 0)
		check_packet(c, buf, len);
	cr_assert_eq(len, 0);
	for (size_t i = 0; i < TFLOWS; i++) {
		if (c->fl[i].used && c->fl[i].syn[0])
			open_tcp += !(c->fl[i].fin[0] && c->fl[i].fin[1]);
	}
	cr_assert_eq(open_tcp, 0, "every TCP flow is torn down");
	cr_assert_eq(c->hosts, c->http_syn, "one request per HTTP flow");
	cr_assert_eq(c->resp_done, c->http_syn, "every response is complete");
	cr_assert_eq(c->snis, c->tls_syn, "one ClientHello per TLS flow");
	cr_assert_geq(c->dns_q, c->dns_a);
	if (all_kinds) {
		cr_assert_gt(c->http_syn, 0);
		cr_assert_gt(c->tls_syn, 0);
		cr_assert_gt(c->dns_a, 0);
	}
	free(c);
	rdm_gen_free(g);
}

Test(gen, packets_valid)
{
	check_run(300, 20000, 1, 1);
	check_run(200, 401, 2, 0);
	check_run(3, 30000, 3, 0);
	check_run(1, 9, 4, 0);
}

/* The flow kinds come in roughly the advertised proportions. */
Test(gen, flow_mix)
{
	struct rdm_gen_conf conf = {.flows = 2000, .packets = 60000, .seed = 77};
	struct rdm_gen *g = rdm_gen_new(&conf);
	uint8_t buf[2048];
	int len, http = 0, tls = 0, dns = 0;

	cr_assert_not_null(g);
	while ((len = rdm_gen_next(g, buf, sizeof(buf))) > 0) {
		if (buf[9] == IPPROTO_TCP && buf[33] == 0x02) {
			http += be16(buf + 22) == 80;
			tls += be16(buf + 22) == 443;
		} else if (buf[9] == IPPROTO_UDP && be16(buf + 22) == 53) {
			dns += buf[30] == 0x01 && be16(buf + 34) == 0; /* first query of a flow */
		}
	}
	rdm_gen_free(g);
	cr_assert(http > 650 && http < 950, "http %d", http);
	cr_assert(tls > 550 && tls < 850, "tls %d", tls);
	cr_assert(dns > 350, "dns queries %d", dns);
}

/* The two directions of every generated flow hash alike, and flows spread. */
Test(pkt, hash_generated)
{
	struct rdm_gen_conf c = {.flows = 500, .packets = 5000, .seed = 3};
	struct rdm_gen *g = rdm_gen_new(&c);
	uint8_t buf[2048];
	uint64_t h[5000];
	size_t n = 0;
	int len, buckets[16] = {0};

	cr_assert_not_null(g);
	while ((len = rdm_gen_next(g, buf, sizeof(buf))) > 0) {
		struct rdm_flow_key k, r;

		cr_assert_eq(rdm_pkt_flow_key(buf, (uint32_t)len, &k), 0);
		r = k;
		memcpy(r.src, k.dst, 16);
		memcpy(r.dst, k.src, 16);
		r.sport = k.dport;
		r.dport = k.sport;
		cr_assert_eq(rdm_flow_hash(&k), rdm_flow_hash(&r));
		h[n++] = rdm_flow_hash(&k);
	}
	rdm_gen_free(g);
	cr_assert_eq(distinct(h, n), 500);
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || h[i] != h[i - 1])
			buckets[h[i] >> 60]++;
	}
	for (int i = 0; i < 16; i++)
		cr_assert(buckets[i] > 10 && buckets[i] < 60, "bucket %d: %d", i, buckets[i]);
}
