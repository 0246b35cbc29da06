/* Flow keys from raw IP packets, and the symmetric flow hash. */
#include "lib/pkt.h"
#include "lib/byteorder.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>

/* Extension headers walked before giving up: more than this is not a packet any real
 * stack sends, and bounding the walk bounds the work an attacker can make us do. */
#define PKT_MAX_EXT_HDRS 8

/* Fills the ports of k from the transport header at l4 (avail bytes there). The
 * protocol's whole fixed header must be present, not just the ports, so that a packet
 * cut inside its transport header is rejected like one cut inside its IP header. */
static int pkt_ports(uint8_t proto, const uint8_t *l4, uint32_t avail, struct rdm_flow_key *k)
{
	uint32_t need;

	switch (proto) {
	case IPPROTO_TCP:
		need = 20;
		break;
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
		need = 8;
		break;
	case IPPROTO_SCTP:
		need = 12;
		break;
	default:
		return 0; /* ICMP, ICMPv6, GRE, ESP...: no ports */
	}
	if (avail < need)
		return -EINVAL;
	k->sport = rdm_get_be16(l4);
	k->dport = rdm_get_be16(l4 + 2);
	return 0;
}

/* Both parsers set *l4 to the transport header's offset, or to 0 for a later fragment. */
static int pkt_v4(const uint8_t *pkt, uint32_t len, struct rdm_flow_key *k, uint32_t *l4)
{
	uint32_t ihl, tot;
	uint16_t frag;

	if (len < 20)
		return -EINVAL;
	ihl = (uint32_t)(pkt[0] & 0x0f) * 4;
	tot = rdm_get_be16(pkt + 2);
	/* The caller's len may exceed the total length (link padding), never the reverse. */
	if (ihl < 20 || tot < ihl || tot > len)
		return -EINVAL;
	k->family = 4;
	k->proto = pkt[9];
	memcpy(k->src, pkt + 12, 4);
	memcpy(k->dst, pkt + 16, 4);
	frag = rdm_get_be16(pkt + 6);
	*l4 = 0;
	if (frag & 0x1fff)
		return 0; /* a later fragment: its transport header is in the first one */
	*l4 = ihl;
	return pkt_ports(k->proto, pkt + ihl, tot - ihl, k);
}

static int pkt_v6(const uint8_t *pkt, uint32_t len, struct rdm_flow_key *k, uint32_t *l4)
{
	uint32_t end, off, plen;
	uint8_t nh;
	int n;

	if (len < 40)
		return -EINVAL;
	plen = rdm_get_be16(pkt + 4);
	nh = pkt[6];
	/* Payload length 0 with a hop-by-hop header is a jumbogram (RFC 2675): its real
	 * length is in an option; the captured bytes are all we can bound it by. */
	if (plen == 0 && nh == IPPROTO_HOPOPTS)
		end = len;
	else if (40 + plen > len)
		return -EINVAL;
	else
		end = 40 + plen;
	k->family = 6;
	memcpy(k->src, pkt + 8, 16);
	memcpy(k->dst, pkt + 24, 16);

	off = 40;
	*l4 = 0;
	for (n = 0;; n++) {
		uint32_t hlen;

		switch (nh) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if (end - off < 8)
				return -EINVAL;
			hlen = ((uint32_t)pkt[off + 1] + 1) * 8;
			break;
		case IPPROTO_AH: /* length in 4-byte words, less 2 */
			if (end - off < 8)
				return -EINVAL;
			hlen = ((uint32_t)pkt[off + 1] + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			if (end - off < 8)
				return -EINVAL;
			if (rdm_get_be16(pkt + off + 2) & 0xfff8) {
				/* a later fragment: the upper layer header is in the first */
				k->proto = pkt[off];
				return 0;
			}
			hlen = 8;
			break;
		default:
			k->proto = nh;
			*l4 = off;
			return pkt_ports(nh, pkt + off, end - off, k);
		}
		if (n >= PKT_MAX_EXT_HDRS || hlen > end - off)
			return -EINVAL;
		nh = pkt[off];
		off += hlen;
	}
}

static int pkt_parse(const uint8_t *pkt, uint32_t len, struct rdm_flow_key *k, uint32_t *l4)
{
	int rc;

	memset(k, 0, sizeof(*k));
	if (!pkt || len < 1)
		return -EINVAL;
	switch (pkt[0] >> 4) {
	case 4:
		rc = pkt_v4(pkt, len, k, l4);
		break;
	case 6:
		rc = pkt_v6(pkt, len, k, l4);
		break;
	default:
		rc = -EINVAL;
	}
	if (rc)
		memset(k, 0, sizeof(*k));
	return rc;
}

int rdm_pkt_flow_key(const uint8_t *pkt, uint32_t len, struct rdm_flow_key *k)
{
	uint32_t l4;

	return pkt_parse(pkt, len, k, &l4);
}

int rdm_pkt_flow_key_l4(const uint8_t *pkt, uint32_t len, struct rdm_flow_key *k, uint32_t *l4)
{
	*l4 = 0;
	return pkt_parse(pkt, len, k, l4);
}

int rdm_pkt_l4(const uint8_t *pkt, uint32_t len, uint8_t *proto)
{
	struct rdm_flow_key k;
	uint32_t l4 = 0;

	if (pkt_parse(pkt, len, &k, &l4) < 0 || l4 == 0)
		return -EINVAL;
	*proto = k.proto;
	return (int)l4;
}

uint8_t rdm_pkt__tcp_flags_parsed(const uint8_t *pkt, uint32_t len)
{
	uint8_t proto;
	int off = rdm_pkt_l4(pkt, len, &proto);

	if (off < 0 || proto != 6 || (uint32_t)off + 14 > len)
		return 0;
	return pkt[off + 13];
}

/* SipHash-2-4 rounds over whole 64-bit words with a fixed key. The key is not secret:
 * the hash spreads flows over workers and names them in frames, and every node must
 * compute the same value for a flow, so it has to be fixed. */
#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

struct sip {
	uint64_t v0, v1, v2, v3;
};

static void sip_round(struct sip *s)
{
	s->v0 += s->v1;
	s->v1 = ROTL64(s->v1, 13);
	s->v1 ^= s->v0;
	s->v0 = ROTL64(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = ROTL64(s->v3, 16);
	s->v3 ^= s->v2;
	s->v0 += s->v3;
	s->v3 = ROTL64(s->v3, 21);
	s->v3 ^= s->v0;
	s->v2 += s->v1;
	s->v1 = ROTL64(s->v1, 17);
	s->v1 ^= s->v2;
	s->v2 = ROTL64(s->v2, 32);
}

static void sip_word(struct sip *s, uint64_t m)
{
	s->v3 ^= m;
	sip_round(s);
	sip_round(s);
	s->v0 ^= m;
}

/* Big-endian loads, so that the hash of a flow is the same on every host. */

uint64_t rdm_flow_hash(const struct rdm_flow_key *k)
{
	static const uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
	const uint8_t *a = k->src, *b = k->dst;
	uint16_t pa = k->sport, pb = k->dport;
	struct sip s = {
	    .v0 = k0 ^ 0x736f6d6570736575ull,
	    .v1 = k1 ^ 0x646f72616e646f6dull,
	    .v2 = k0 ^ 0x6c7967656e657261ull,
	    .v3 = k1 ^ 0x7465646279746573ull,
	};
	int c;

	/* Order the endpoints so that both directions feed the same words. */
	c = memcmp(a, b, 16);
	if (c > 0 || (c == 0 && pa > pb)) {
		const uint8_t *t = a;
		uint16_t tp = pa;

		a = b;
		b = t;
		pa = pb;
		pb = tp;
	}
	sip_word(&s,
		 (uint64_t)k->family << 56 | (uint64_t)k->proto << 48 | (uint64_t)pa << 16 | pb);
	sip_word(&s, rdm_get_be64(a));
	sip_word(&s, rdm_get_be64(a + 8));
	sip_word(&s, rdm_get_be64(b));
	sip_word(&s, rdm_get_be64(b + 8));
	sip_word(&s, (uint64_t)40 << 56); /* length block, as SipHash finalises */
	s.v2 ^= 0xff;
	for (int i = 0; i < 4; i++)
		sip_round(&s);
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}
