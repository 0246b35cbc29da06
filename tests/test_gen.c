/* The flow generator, flow keys and hashes, and capture reading and writing. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <pcap/pcap.h>

#include "node/gen.h"
#include "node/pcapio.h"
#include "lib/pkt.h"
#include "transport/frame.h"

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

/* ---- pkt ---- */

static const uint8_t v4_tcp[] = {
    0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, /* 40 bytes, DF, TCP */
    0x00, 0x00, 10,   1,    2,	  3,	10,   2,    3,	  4,	/* 10.1.2.3 > 10.2.3.4 */
    0xc0, 0x00, 0x01, 0xbb, 0,	  0,	0,    1,    0,	  0,	/* 49152 > 443 */
    0,	  0,	0x50, 0x02, 0xff, 0xff, 0,    0,    0,	  0,	/* SYN */
};

static const uint8_t v4_udp_opts[] = {
    0x46, 0x00, 0x00, 0x20, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00, /* IHL 6, UDP */
    192,  168,	0,    1,    192,  168,	0,    2,    0x01, 0x01, 0x01, 0x00, /* NOP NOP NOP EOL */
    0x13, 0x88, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00,			    /* 5000 > 53 */
};

/* IPv6: hop-by-hop, routing, destination options, fragment (offset 0), then UDP. */
static const uint8_t v6_ext[] = {
    0x60, 0,	0,    0,    0x00, 0x28, 0x00, 0x40,		      /* payload 40 */
    0xfd, 0,	0,    0,    0,	  0,	0,    0,    0, 0, 0, 0, 0, 0, /* src fd00::1 */
    0,	  0x01,							      /* */
    0xfd, 0,	0,    0,    0,	  0,	0,    0,    0, 0, 0, 0, 0, 0, /* dst fd00::2 */
    0,	  0x02,							      /* */
    43,	  0,	1,    4,    0,	  0,	0,    0,		      /* hop-by-hop: PadN */
    60,	  0,	0,    0,    0,	  0,	0,    0,		      /* routing, 0 left */
    44,	  0,	1,    4,    0,	  0,	0,    0,		      /* destination options */
    17,	  0,	0,    0,    0xde, 0xad, 0xbe, 0xef,		      /* fragment 0, last */
    0x04, 0xd2, 0x16, 0x2e, 0x00, 0x08, 0x00, 0x00,		      /* UDP 1234 > 5678 */
};

static int key_of(const uint8_t *p, uint32_t len, struct rdm_flow_key *k)
{
	/* A heap copy of exactly len bytes, so that ASan sees any read past it. */
	uint8_t *c = malloc(len ? len : 1);
	int rc;

	cr_assert_not_null(c);
	memcpy(c, p, len);
	rc = rdm_pkt_flow_key(c, len, k);
	free(c);
	return rc;
}

Test(pkt, v4)
{
	struct rdm_flow_key k;

	cr_assert_eq(key_of(v4_tcp, sizeof(v4_tcp), &k), 0);
	cr_assert_eq(k.family, 4);
	cr_assert_eq(k.proto, IPPROTO_TCP);
	cr_assert_eq(k.sport, 0xc000);
	cr_assert_eq(k.dport, 443);
	cr_assert_eq(memcmp(k.src, "\x0a\x01\x02\x03", 4), 0);
	cr_assert_eq(memcmp(k.dst, "\x0a\x02\x03\x04", 4), 0);
	for (int i = 4; i < 16; i++)
		cr_assert(k.src[i] == 0 && k.dst[i] == 0);

	cr_assert_eq(key_of(v4_udp_opts, sizeof(v4_udp_opts), &k), 0, "IHL 6 respected");
	cr_assert_eq(k.proto, IPPROTO_UDP);
	cr_assert_eq(k.sport, 5000);
	cr_assert_eq(k.dport, 53);
}

Test(pkt, v4_lengths)
{
	uint8_t p[64];
	struct rdm_flow_key k;

	memcpy(p, v4_tcp, sizeof(v4_tcp));
	memset(p + sizeof(v4_tcp), 0xee, sizeof(p) - sizeof(v4_tcp));
	cr_assert_eq(key_of(p, sizeof(p), &k), 0, "link padding after the total length");
	cr_assert_eq(k.dport, 443);
	p[3] = 0x29;
	cr_assert_eq(key_of(p, 0x28, &k), -EINVAL, "total length past the buffer");
	p[3] = 0x13;
	cr_assert_eq(key_of(p, sizeof(p), &k), -EINVAL, "total length below the header");
	p[3] = 0x28;
	p[0] = 0x44;
	cr_assert_eq(key_of(p, sizeof(p), &k), -EINVAL, "IHL below 5");
	p[0] = 0x4f;
	cr_assert_eq(key_of(p, sizeof(p), &k), -EINVAL, "IHL past the total length");
	p[0] = 0x45;
	p[3] = 0x20; /* 12 bytes of TCP: too short */
	cr_assert_eq(key_of(p, sizeof(p), &k), -EINVAL);
}

Test(pkt, v4_fragments)
{
	uint8_t p[sizeof(v4_tcp)];
	struct rdm_flow_key k;

	memcpy(p, v4_tcp, sizeof(p));
	p[6] = 0x20; /* MF, offset 0: the first fragment has the ports */
	cr_assert_eq(key_of(p, sizeof(p), &k), 0);
	cr_assert_eq(k.dport, 443);
	p[6] = 0x00;
	p[7] = 0xb9; /* offset 185 * 8 */
	cr_assert_eq(key_of(p, sizeof(p), &k), 0);
	cr_assert_eq(k.proto, IPPROTO_TCP);
	cr_assert_eq(k.sport, 0);
	cr_assert_eq(k.dport, 0);
	/* a later fragment needs no transport header at all */
	p[3] = 20;
	cr_assert_eq(key_of(p, 20, &k), 0);
	cr_assert_eq(k.dport, 0);
}

Test(pkt, icmp_and_other)
{
	uint8_t p[28];
	struct rdm_flow_key k;

	memcpy(p, v4_tcp, 20);
	p[3] = 28;
	p[9] = IPPROTO_ICMP;
	memset(p + 20, 0x08, 8);
	cr_assert_eq(key_of(p, sizeof(p), &k), 0);
	cr_assert_eq(k.proto, IPPROTO_ICMP);
	cr_assert(k.sport == 0 && k.dport == 0);
	p[9] = IPPROTO_GRE;
	cr_assert_eq(key_of(p, sizeof(p), &k), 0);
	cr_assert(k.sport == 0 && k.dport == 0);
}

Test(pkt, v6_ext_headers)
{
	struct rdm_flow_key k;

	cr_assert_eq(key_of(v6_ext, sizeof(v6_ext), &k), 0);
	cr_assert_eq(k.family, 6);
	cr_assert_eq(k.proto, IPPROTO_UDP);
	cr_assert_eq(k.sport, 1234);
	cr_assert_eq(k.dport, 5678);
	cr_assert_eq(k.src[0], 0xfd);
	cr_assert_eq(k.src[15], 1);
	cr_assert_eq(k.dst[15], 2);
}

Test(pkt, v6_fragment_later)
{
	uint8_t p[sizeof(v6_ext)];
	struct rdm_flow_key k;

	memcpy(p, v6_ext, sizeof(p));
	p[66] = 0x00;
	p[67] = 0x10 | 0x01; /* offset 2, more fragments */
	cr_assert_eq(key_of(p, sizeof(p), &k), 0);
	cr_assert_eq(k.proto, IPPROTO_UDP);
	cr_assert(k.sport == 0 && k.dport == 0);
}

/* A chain of n destination-options headers ending in TCP. */
static uint32_t v6_chain(uint8_t *p, int n)
{
	uint32_t off = 40;

	memset(p, 0, 40 + 8 * (uint32_t)n + 20);
	p[0] = 0x60;
	p[6] = n ? IPPROTO_DSTOPTS : IPPROTO_TCP;
	p[7] = 64;
	for (int i = 0; i < n; i++, off += 8) {
		p[off] = i + 1 < n ? IPPROTO_DSTOPTS : IPPROTO_TCP;
		p[off + 1] = 0;
		p[off + 2] = 1; /* PadN */
		p[off + 3] = 4;
	}
	p[off + 1] = 80;
	p[off + 3] = 80;
	p[off + 12] = 0x50;
	off += 20;
	p[4] = (uint8_t)((off - 40) >> 8);
	p[5] = (uint8_t)(off - 40);
	return off;
}

Test(pkt, v6_ext_limit)
{
	uint8_t p[40 + 8 * 10 + 20];
	struct rdm_flow_key k;
	uint32_t n;

	n = v6_chain(p, 8);
	cr_assert_eq(key_of(p, n, &k), 0, "8 extension headers are walked");
	cr_assert_eq(k.dport, 80);
	n = v6_chain(p, 9);
	cr_assert_eq(key_of(p, n, &k), -EINVAL, "9 are too many");
	n = v6_chain(p, 0);
	cr_assert_eq(key_of(p, n, &k), 0);
	cr_assert_eq(k.proto, IPPROTO_TCP);
}

Test(pkt, v6_lengths)
{
	uint8_t p[sizeof(v6_ext) + 8];
	struct rdm_flow_key k;

	memcpy(p, v6_ext, sizeof(v6_ext));
	memset(p + sizeof(v6_ext), 0, 8);
	cr_assert_eq(key_of(p, sizeof(p), &k), 0, "trailing bytes past the payload length");
	p[5] = 0x30;
	cr_assert_eq(key_of(p, sizeof(v6_ext), &k), -EINVAL, "payload length past the buffer");
	p[5] = 0x20; /* payload ends inside the UDP header */
	cr_assert_eq(key_of(p, sizeof(p), &k), -EINVAL);
	p[5] = 0x28;
	p[41] = 40; /* hop-by-hop claims 328 bytes */
	cr_assert_eq(key_of(p, sizeof(p), &k), -EINVAL);
}

Test(pkt, not_ip)
{
	static const uint8_t junk[40] = {0x50};
	struct rdm_flow_key k;

	cr_assert_eq(rdm_pkt_flow_key(NULL, 0, &k), -EINVAL);
	cr_assert_eq(key_of(junk, sizeof(junk), &k), -EINVAL);
	cr_assert_eq(key_of(junk, 0, &k), -EINVAL);
	cr_assert_eq(rdm_pkt_next_proto(junk, sizeof(junk)), 0);
	cr_assert_eq(rdm_pkt_next_proto(v4_tcp, sizeof(v4_tcp)), RDM_NSH_NP_IPV4);
	cr_assert_eq(rdm_pkt_next_proto(v6_ext, sizeof(v6_ext)), RDM_NSH_NP_IPV6);
	cr_assert_eq(rdm_pkt_next_proto(v6_ext, 0), 0);
	cr_assert_eq(rdm_pkt_next_proto(NULL, 0), 0);
}

/* Every prefix of a valid packet gives -EINVAL or the full packet's key. */
static void truncations(const uint8_t *p, uint32_t len)
{
	struct rdm_flow_key full, k;

	cr_assert_eq(key_of(p, len, &full), 0);
	for (uint32_t n = 0; n < len; n++) {
		int rc = key_of(p, n, &k);

		cr_assert(rc == -EINVAL || (rc == 0 && memcmp(&k, &full, sizeof(k)) == 0),
			  "prefix %u of %u: rc %d", n, len, rc);
	}
}

Test(pkt, truncated)
{
	struct rdm_gen_conf c = {.flows = 10, .packets = 200, .seed = 5};
	struct rdm_gen *g = rdm_gen_new(&c);
	uint8_t buf[2048], chain[40 + 8 * 8 + 20];
	int len, n = 0;

	truncations(v4_tcp, sizeof(v4_tcp));
	truncations(v4_udp_opts, sizeof(v4_udp_opts));
	truncations(v6_ext, sizeof(v6_ext));
	truncations(chain, v6_chain(chain, 8));
	cr_assert_not_null(g);
	while ((len = rdm_gen_next(g, buf, sizeof(buf))) > 0 && n++ < 40)
		truncations(buf, (uint32_t)len);
	rdm_gen_free(g);
}

Test(pkt, hash_symmetric)
{
	struct rdm_flow_key a, b;
	uint64_t ha;

	cr_assert_eq(rdm_pkt_flow_key(v4_tcp, sizeof(v4_tcp), &a), 0);
	b = a;
	memcpy(b.src, a.dst, 16);
	memcpy(b.dst, a.src, 16);
	b.sport = a.dport;
	b.dport = a.sport;
	ha = rdm_flow_hash(&a);
	cr_assert_eq(ha, rdm_flow_hash(&b));
	b.sport++;
	cr_assert_neq(ha, rdm_flow_hash(&b));
	b = a;
	b.proto = IPPROTO_UDP;
	cr_assert_neq(ha, rdm_flow_hash(&b));

	/* same addresses: the ports decide the order */
	b = a;
	memcpy(b.dst, a.src, 16);
	a = b;
	a.sport = 1000;
	a.dport = 2000;
	b.sport = 2000;
	b.dport = 1000;
	cr_assert_eq(rdm_flow_hash(&a), rdm_flow_hash(&b));

	cr_assert_eq(rdm_pkt_flow_key(v6_ext, sizeof(v6_ext), &a), 0);
	b = a;
	memcpy(b.src, a.dst, 16);
	memcpy(b.dst, a.src, 16);
	b.sport = a.dport;
	b.dport = a.sport;
	cr_assert_eq(rdm_flow_hash(&a), rdm_flow_hash(&b));
	cr_assert_neq(rdm_flow_hash(&a), ha);
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

/* ---- pcapio ---- */

static char *tmp_pcap(void)
{
	static const char tmpl[] = "/tmp/rdm_test_gen_XXXXXX.pcap";
	char *p = strdup(tmpl);
	int fd;

	cr_assert_not_null(p);
	fd = mkstemps(p, 5);
	cr_assert_geq(fd, 0);
	close(fd);
	return p;
}

Test(pcapio, ip_round_trip)
{
	struct rdm_gen_conf c = {.flows = 20, .packets = 500, .seed = 11};
	struct rdm_gen *g = rdm_gen_new(&c);
	char *path = tmp_pcap(), err[256];
	struct rdm_pcap_out *out = rdm_pcap_open_out(path, RDM_PCAP_IP, err, sizeof(err));
	struct rdm_pcap_in *in;
	uint8_t buf[2048];
	const uint8_t *p;
	int len, n = 0;
	uint64_t ts0 = 1704067200ull * 1000000000ull + 123;

	cr_assert(g && out, "%s", err);
	while ((len = rdm_gen_next(g, buf, sizeof(buf))) > 0)
		cr_assert_eq(rdm_pcap_write(out, buf, (uint32_t)len, ts0 + (uint64_t)n++ * 1001),
			     0);
	rdm_pcap_close_out(out);
	rdm_gen_free(g);

	/* Read back through rdm_pcap_in: the same packets. */
	g = rdm_gen_new(&c);
	in = rdm_pcap_open_in(path, err, sizeof(err));
	cr_assert(g && in, "%s", err);
	n = 0;
	while ((len = rdm_gen_next(g, buf, sizeof(buf))) > 0) {
		int l = rdm_pcap_next(in, &p);

		cr_assert_eq(l, len);
		cr_assert_eq(memcmp(p, buf, (size_t)len), 0);
		n++;
	}
	cr_assert_eq(rdm_pcap_next(in, &p), 0);
	cr_assert_eq(rdm_pcap_in_skipped(in), 0);
	cr_assert_eq(n, 500);
	rdm_pcap_close_in(in);
	rdm_gen_free(g);

	/* And through libpcap: raw IP, nanosecond timestamps. */
	{
		char ebuf[PCAP_ERRBUF_SIZE];
		pcap_t *pc =
		    pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, ebuf);
		struct pcap_pkthdr *h;
		const u_char *d;

		cr_assert_not_null(pc, "%s", ebuf);
		cr_assert_eq(pcap_datalink(pc), DLT_RAW);
		for (int i = 0; i < 3; i++) {
			uint64_t ts = ts0 + (uint64_t)i * 1001;

			cr_assert_eq(pcap_next_ex(pc, &h, &d), 1);
			cr_assert_eq((uint64_t)h->ts.tv_sec, ts / 1000000000u);
			cr_assert_eq((uint64_t)h->ts.tv_usec, ts % 1000000000u);
		}
		pcap_close(pc);
	}
	unlink(path);
	free(path);
}

Test(pcapio, nsh_frames)
{
	char *path = tmp_pcap(), err[256], ebuf[PCAP_ERRBUF_SIZE];
	struct rdm_pcap_out *out = rdm_pcap_open_out(path, RDM_PCAP_NSH, err, sizeof(err));
	struct rdm_pcap_in *in;
	uint8_t frame[300];
	struct pcap_pkthdr *h;
	const u_char *d;
	const uint8_t *p;
	pcap_t *pc;

	cr_assert_not_null(out, "%s", err);
	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)(i * 7);
	for (uint32_t i = 1; i <= 5; i++)
		cr_assert_eq(rdm_pcap_write(out, frame, 50 * i, i * 1000), 0);
	rdm_pcap_close_out(out);

	pc = pcap_open_offline(path, ebuf);
	cr_assert_not_null(pc, "%s", ebuf);
	cr_assert_eq(pcap_datalink(pc), DLT_EN10MB);
	for (uint32_t i = 1; i <= 5; i++) {
		cr_assert_eq(pcap_next_ex(pc, &h, &d), 1);
		cr_assert_eq(h->caplen, 14 + 50 * i);
		cr_assert_eq(h->len, h->caplen);
		cr_assert_eq(memcmp(d, "\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x89\x4f", 14), 0);
		cr_assert_eq(memcmp(d + 14, frame, 50 * i), 0);
	}
	cr_assert_eq(pcap_next_ex(pc, &h, &d), PCAP_ERROR_BREAK);
	pcap_close(pc);

	/* They carry no IP packet at the link layer: skipped and counted. */
	in = rdm_pcap_open_in(path, err, sizeof(err));
	cr_assert_not_null(in, "%s", err);
	cr_assert_eq(rdm_pcap_next(in, &p), 0);
	cr_assert_eq(rdm_pcap_in_skipped(in), 5);
	rdm_pcap_close_in(in);
	unlink(path);
	free(path);
}

struct rec {
	const uint8_t *d;
	uint32_t len, caplen;
};

static void write_capture(const char *path, int dlt, const struct rec *r, size_t n)
{
	pcap_t *dead = pcap_open_dead(dlt, 65535);
	pcap_dumper_t *dp;

	cr_assert_not_null(dead);
	dp = pcap_dump_open(dead, path);
	cr_assert_not_null(dp, "%s", pcap_geterr(dead));
	for (size_t i = 0; i < n; i++) {
		struct pcap_pkthdr h = {.caplen = r[i].caplen, .len = r[i].len};

		h.ts.tv_sec = (time_t)i;
		pcap_dump((u_char *)dp, &h, r[i].d);
	}
	pcap_dump_close(dp);
	pcap_close(dead);
}

/* Reads path and checks that it yields the IP packets want[], in order, and skipped. */
static void expect_read(const char *path, const uint8_t *const *want, const uint32_t *wlen,
			size_t n, uint64_t skipped)
{
	char err[256];
	struct rdm_pcap_in *in = rdm_pcap_open_in(path, err, sizeof(err));
	const uint8_t *p;

	cr_assert_not_null(in, "%s", err);
	for (size_t i = 0; i < n; i++) {
		int len = rdm_pcap_next(in, &p);

		cr_assert_eq(len, (int)wlen[i], "packet %zu: %d", i, len);
		cr_assert_eq(memcmp(p, want[i], wlen[i]), 0, "packet %zu", i);
	}
	cr_assert_eq(rdm_pcap_next(in, &p), 0);
	cr_assert_eq(rdm_pcap_in_skipped(in), skipped);
	rdm_pcap_close_in(in);
}

/* Builds a frame: hdr bytes, then the packet. */
static uint32_t frame(uint8_t *out, const void *hdr, uint32_t hl, const uint8_t *pkt, uint32_t n)
{
	memcpy(out, hdr, hl);
	memcpy(out + hl, pkt, n);
	return hl + n;
}

#define MAC12 "\x02\0\0\0\0\x02\x02\0\0\0\0\x01"

Test(pcapio, ethernet_vlan)
{
	char *path = tmp_pcap();
	uint8_t f[8][128], small[20 + 8];
	struct rec r[8];
	uint32_t n = 0;

	/* A 28-byte UDP packet: Ethernet pads it to 60 bytes on the wire. */
	memcpy(small, v4_udp_opts, 20);
	small[0] = 0x45;
	small[3] = 28;
	memcpy(small + 20, v4_udp_opts + 24, 8);

	r[n].len = r[n].caplen = frame(f[n], MAC12 "\x08\x00", 14, v4_tcp, sizeof(v4_tcp));
	r[n].d = f[n];
	n++;
	r[n].len = r[n].caplen =
	    frame(f[n], MAC12 "\x81\x00\x00\x64\x08\x00", 18, v4_udp_opts, sizeof(v4_udp_opts));
	r[n].d = f[n];
	n++;
	r[n].len = r[n].caplen = frame(f[n], MAC12 "\x88\xa8\x00\x0a\x81\x00\x00\x14\x86\xdd", 22,
				       v6_ext, sizeof(v6_ext));
	r[n].d = f[n];
	n++;
	r[n].len = r[n].caplen = frame(f[n], MAC12 "\x08\x06", 14, v4_tcp, 28); /* ARP */
	r[n].d = f[n];
	n++;
	r[n].len = r[n].caplen = 10; /* runt */
	r[n].d = f[0];
	n++;
	r[n].len = 14 + sizeof(v4_tcp); /* cut by the snap length */
	r[n].caplen = 30;
	r[n].d = f[0];
	n++;
	memset(f[n], 0, 60);
	frame(f[n], MAC12 "\x08\x00", 14, small, sizeof(small));
	r[n].len = r[n].caplen = 60;
	r[n].d = f[n];
	n++;
	r[n].len = r[n].caplen = frame(f[n], MAC12 "\x81\x00\x00\x64", 16, v4_tcp, 0); /* cut tag */
	r[n].d = f[n];
	n++;
	write_capture(path, DLT_EN10MB, r, n);
	{
		const uint8_t *want[] = {v4_tcp, v4_udp_opts, v6_ext, small};
		const uint32_t wlen[] = {sizeof(v4_tcp), sizeof(v4_udp_opts), sizeof(v6_ext),
					 sizeof(small)};

		expect_read(path, want, wlen, 4, 4);
	}
	unlink(path);
	free(path);
}

Test(pcapio, other_links)
{
	char *path = tmp_pcap();
	const uint8_t *want[] = {v4_tcp, v6_ext};
	const uint32_t wlen[] = {sizeof(v4_tcp), sizeof(v6_ext)};
	uint8_t f[3][128];
	struct rec r[3];

	/* Linux cooked v1: protocol at 14 */
	r[0].len = r[0].caplen =
	    frame(f[0], "\0\0\0\x01\0\x06\x02\0\0\0\0\x01\0\0\x08\x00", 16, v4_tcp, sizeof(v4_tcp));
	r[1].len = r[1].caplen =
	    frame(f[1], "\0\0\0\x01\0\x06\x02\0\0\0\0\x01\0\0\x86\xdd", 16, v6_ext, sizeof(v6_ext));
	r[2].len = r[2].caplen =
	    frame(f[2], "\0\0\0\x01\0\x06\x02\0\0\0\0\x01\0\0\x08\x06", 16, v4_tcp, sizeof(v4_tcp));
	for (int i = 0; i < 3; i++)
		r[i].d = f[i];
	write_capture(path, DLT_LINUX_SLL, r, 3);
	expect_read(path, want, wlen, 2, 1);

	/* Linux cooked v2: protocol first */
	r[0].len = r[0].caplen =
	    frame(f[0], "\x08\x00\0\0\0\0\0\x02\0\x01\0\x06\x02\0\0\0\0\x01\0\0", 20, v4_tcp,
		  sizeof(v4_tcp));
	r[1].len = r[1].caplen =
	    frame(f[1], "\x86\xdd\0\0\0\0\0\x02\0\x01\0\x06\x02\0\0\0\0\x01\0\0", 20, v6_ext,
		  sizeof(v6_ext));
	write_capture(path, DLT_LINUX_SLL2, r, 2);
	expect_read(path, want, wlen, 2, 0);

	/* BSD loopback: the family in the writer's order; Linux's AF_INET6 */
	r[0].len = r[0].caplen = frame(f[0], "\x02\0\0\0", 4, v4_tcp, sizeof(v4_tcp));
	r[1].len = r[1].caplen = frame(f[1], "\0\0\0\x1e", 4, v6_ext, sizeof(v6_ext));
	r[2].len = r[2].caplen = frame(f[2], "\x07\0\0\0", 4, v4_tcp, sizeof(v4_tcp));
	write_capture(path, DLT_NULL, r, 3);
	expect_read(path, want, wlen, 2, 1);
	r[0].len = r[0].caplen = frame(f[0], "\0\0\0\x02", 4, v4_tcp, sizeof(v4_tcp));
	r[1].len = r[1].caplen = frame(f[1], "\0\0\0\x0a", 4, v6_ext, sizeof(v6_ext));
	write_capture(path, DLT_LOOP, r, 2);
	expect_read(path, want, wlen, 2, 0);

	/* Raw IP, and raw IPv4 only */
	r[0].len = r[0].caplen = sizeof(v4_tcp);
	r[0].d = v4_tcp;
	r[1].len = r[1].caplen = sizeof(v6_ext);
	r[1].d = v6_ext;
	r[2].len = r[2].caplen = 4;
	r[2].d = (const uint8_t *)"\x50\0\0\0";
	write_capture(path, DLT_RAW, r, 3);
	expect_read(path, want, wlen, 2, 1);
	write_capture(path, DLT_IPV4, r, 2);
	expect_read(path, want, wlen, 1, 1);
	unlink(path);
	free(path);
}

Test(pcapio, errors)
{
	char *path = tmp_pcap(), err[256] = "";
	struct rec r = {(const uint8_t *)"\0\0\0\0", 4, 4};

	cr_assert_null(rdm_pcap_open_in("/nonexistent/x.pcap", err, sizeof(err)));
	cr_assert_neq(err[0], 0);
	write_capture(path, DLT_IEEE802_11, &r, 1);
	err[0] = 0;
	cr_assert_null(rdm_pcap_open_in(path, err, sizeof(err)));
	cr_assert(strstr(err, "unsupported link type"), "%s", err);
	err[0] = 0;
	cr_assert_null(rdm_pcap_open_out("/nonexistent/x.pcap", RDM_PCAP_IP, err, sizeof(err)));
	cr_assert_neq(err[0], 0);
	rdm_pcap_close_in(NULL);
	rdm_pcap_close_out(NULL);
	cr_assert_eq(rdm_pcap_in_skipped(NULL), 0);
	unlink(path);
	free(path);
}
