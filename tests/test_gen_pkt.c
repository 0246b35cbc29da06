/* The packets the generator's output goes through: flow keys and flow hashes (lib/pkt)
 * and capture files (node/pcapio), on hand-made IPv4 and IPv6 sample packets and on
 * generated ones. */
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
	uint32_t l4;

	memcpy(p, v4_tcp, sizeof(p));
	p[6] = 0x20; /* MF, offset 0: the first fragment has the ports */
	cr_assert_eq(key_of(p, sizeof(p), &k), 0);
	cr_assert_eq(k.dport, 443);
	cr_assert_eq(rdm_pkt_flow_key_l4(p, sizeof(p), &k, &l4), 0);
	cr_assert_eq(l4, 20, "its transport header");
	p[6] = 0x00;
	p[7] = 0xb9; /* offset 185 * 8 */
	cr_assert_eq(rdm_pkt_flow_key_l4(p, sizeof(p), &k, &l4), 0);
	cr_assert_eq(l4, 0, "a later fragment has none");
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

/* The TCP flags of a heap copy of exactly len bytes (ASan sees any read past it). */
static uint8_t flags_of(const uint8_t *p, uint32_t len)
{
	uint8_t *c = malloc(len ? len : 1), fl;

	cr_assert_not_null(c);
	memcpy(c, p, len);
	fl = rdm_pkt_tcp_flags(c, len);
	free(c);
	return fl;
}

/* IPv4 is read directly; options, fragments, cut headers and IPv6 are not, and all of
 * them answer as the parser would. */
Test(pkt, tcp_flags)
{
	uint8_t p[sizeof(v4_tcp) + 4];
	uint8_t v6[40 + 20] = {0x60, 0, 0, 0, 0, 20, IPPROTO_TCP, 64};

	cr_assert_eq(flags_of(v4_tcp, sizeof(v4_tcp)), 0x02, "SYN");
	cr_assert_eq(flags_of(v4_tcp, sizeof(v4_tcp) - 1), 0, "a TCP header cut short");
	cr_assert_eq(flags_of(v4_udp_opts, sizeof(v4_udp_opts)), 0, "UDP");
	cr_assert_eq(flags_of(v6_ext, sizeof(v6_ext)), 0, "UDP behind IPv6 extension headers");
	/* IHL 6: one word of options moves the TCP header */
	memcpy(p, v4_tcp, 20);
	memcpy(p + 24, v4_tcp + 20, 20);
	memset(p + 20, 1, 4);
	p[0] = 0x46;
	p[3] = sizeof(p);
	p[24 + 13] = 0x12;
	cr_assert_eq(flags_of(p, sizeof(p)), 0x12, "SYN-ACK behind options");
	p[3] = sizeof(p) - 1;
	cr_assert_eq(flags_of(p, sizeof(p)), 0, "a total length that cuts the TCP header");
	memcpy(p, v4_tcp, sizeof(v4_tcp));
	p[6] = 0x20;
	cr_assert_eq(flags_of(p, sizeof(v4_tcp)), 0x02, "the first fragment has the header");
	p[7] = 0x10;
	cr_assert_eq(flags_of(p, sizeof(v4_tcp)), 0, "a later fragment has none");
	v6[40 + 12] = 0x50;
	v6[40 + 13] = 0x11;
	cr_assert_eq(flags_of(v6, sizeof(v6)), 0x11, "FIN-ACK over IPv6");
}

/* Flow keys compare a word at a time: every byte counts, and the turned-round key is
 * the other direction, not the same one. */
Test(pkt, key_eq_and_reverse)
{
	struct rdm_flow_key a, b;

	cr_assert_eq(rdm_pkt_flow_key(v6_ext, sizeof(v6_ext), &a), 0);
	for (size_t i = 0; i < sizeof(a); i++) {
		b = a;
		((uint8_t *)&b)[i] ^= 0x80;
		cr_assert(!rdm_flow_key_eq(&a, &b), "byte %zu changed", i);
	}
	b = a;
	cr_assert(rdm_flow_key_eq(&a, &b));
	cr_assert(!rdm_flow_key_rev(&a, &b), "different addresses: not its own reverse");
	memcpy(b.src, a.dst, 16);
	memcpy(b.dst, a.src, 16);
	b.sport = a.dport;
	b.dport = a.sport;
	cr_assert(rdm_flow_key_rev(&a, &b));
	cr_assert(rdm_flow_key_rev(&b, &a));
	cr_assert(!rdm_flow_key_eq(&a, &b));
	for (size_t i = 0; i < sizeof(b); i++) {
		struct rdm_flow_key c = b;

		((uint8_t *)&c)[i] ^= 0x01;
		cr_assert(!rdm_flow_key_rev(&a, &c), "byte %zu changed", i);
	}
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
