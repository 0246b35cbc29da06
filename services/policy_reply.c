/* The policy stage's replies to rejected packets: a TCP RST (RFC 793 reset generation)
 * or an ICMP / ICMPv6 destination unreachable, administratively prohibited, never sent
 * where the RFCs forbid an error. */
#include "services/policy_int.h"

#include <netinet/in.h>
#include <string.h>

#include "lib/byteorder.h"
#include "lib/csum.h"
#include "lib/pkt.h"
#include "services/flowtable.h"

/* Writes the IP header of a reply to a packet of key k (so from k->dst to k->src) with
 * payload bytes of protocol proto. Returns the header's length. */
static uint32_t reply_ip(uint8_t *o, const struct rdm_flow_key *k, uint8_t proto, uint32_t payload)
{
	if (k->family == 4) {
		memset(o, 0, 20);
		o[0] = 0x45;
		rdm_put_be16(o + 2, (uint16_t)(20 + payload));
		rdm_put_be16(o + 6, 0x4000); /* DF */
		o[8] = 64;
		o[9] = proto;
		memcpy(o + 12, k->dst, 4);
		memcpy(o + 16, k->src, 4);
		rdm_put_be16(o + 10, rdm_csum_fold(rdm_csum_add(0, o, 20)));
		return 20;
	}
	memset(o, 0, 40);
	o[0] = 0x60;
	rdm_put_be16(o + 4, (uint16_t)payload);
	o[6] = proto;
	o[7] = 64;
	memcpy(o + 8, k->dst, 16);
	memcpy(o + 24, k->src, 16);
	return 40;
}

/* Whether an error may be sent about a packet between these addresses: never to or
 * from multicast or broadcast, nor to an unspecified source (RFC 1812 4.3.2.7, RFC
 * 4443 2.4 (e)). */
static int reply_allowed(const struct rdm_flow_key *k)
{
	static const uint8_t zero[16];

	if (k->family == 4)
		return k->dst[0] < 224 && k->src[0] < 224 && k->src[0] != 0;
	return k->dst[0] != 0xff && k->src[0] != 0xff && memcmp(k->src, zero, 16);
}

/* The reply to pkt: see services/policy_int.h. */
uint32_t rdm_policy__build_reply(const uint8_t *pkt, uint32_t len, uint8_t *out, int *rst)
{
	struct rdm_flow_key k;
	uint32_t end, hl;
	uint8_t proto;
	int l4;

	if (rdm_pkt_flow_key(pkt, len, &k) < 0 || !reply_allowed(&k))
		return 0;
	/* No transport header: a later fragment (its first got the reply, if any). */
	if ((l4 = rdm_pkt_l4(pkt, len, &proto)) < 0)
		return 0;
	if (k.family == 4)
		end = rdm_get_be16(pkt + 2);
	else
		end = rdm_get_be16(pkt + 4) == 0 && pkt[6] == IPPROTO_HOPOPTS
			  ? len
			  : 40u + rdm_get_be16(pkt + 4);
	if (proto == IPPROTO_TCP) {
		const uint8_t *t = pkt + l4;
		uint32_t doff, seg, seq, ack;
		uint8_t fl;
		uint8_t *u;

		if ((uint32_t)l4 + 20 > end)
			return 0;
		doff = (uint32_t)(t[12] >> 4) * 4;
		fl = t[13];
		if (doff < 20 || (uint32_t)l4 + doff > end || (fl & RDM_TCP_RST))
			return 0;
		seq = rdm_get_be32(t + 4);
		ack = rdm_get_be32(t + 8);
		seg = end - (uint32_t)l4 - doff + !!(fl & RDM_TCP_SYN) + !!(fl & RDM_TCP_FIN);
		hl = reply_ip(out, &k, IPPROTO_TCP, 20);
		u = out + hl;
		memset(u, 0, 20);
		rdm_put_be16(u, k.dport);
		rdm_put_be16(u + 2, k.sport);
		if (fl & RDM_TCP_ACK) {
			rdm_put_be32(u + 4, ack);
			u[13] = RDM_TCP_RST;
		} else {
			rdm_put_be32(u + 8, seq + seg);
			u[13] = RDM_TCP_RST | RDM_TCP_ACK;
		}
		u[12] = 5 << 4;
		rdm_put_be16(
		    u + 16, rdm_csum_fold(rdm_csum_pseudo(k.family, k.dst, k.src, IPPROTO_TCP, 20) +
					  rdm_csum_add(0, u, 20)));
		*rst = 1;
		return hl + 20;
	}
	if (k.family == 4) {
		uint32_t q = (uint32_t)(pkt[0] & 0x0f) * 4 + 8;
		uint8_t *u;

		if (proto == IPPROTO_ICMP) {
			uint8_t t;

			if ((uint32_t)l4 >= end)
				return 0;
			t = pkt[l4];
			/* Errors: unreachable, source quench, redirect, time exceeded,
			 * parameter problem (RFC 1122 3.2.2). */
			if (t == 3 || t == 4 || t == 5 || t == 11 || t == 12)
				return 0;
		}
		if (q > end)
			q = end;
		hl = reply_ip(out, &k, IPPROTO_ICMP, 8 + q);
		u = out + hl;
		memset(u, 0, 8);
		u[0] = 3;  /* destination unreachable */
		u[1] = 13; /* communication administratively prohibited (RFC 1812) */
		memcpy(u + 8, pkt, q);
		rdm_put_be16(u + 2, rdm_csum_fold(rdm_csum_add(0, u, 8 + q)));
		*rst = 0;
		return hl + 8 + q;
	} else {
		uint32_t q = end;
		uint8_t *u;

		if (proto == IPPROTO_ICMPV6) {
			if ((uint32_t)l4 >= end)
				return 0;
			/* Errors are types below 128; never answer a redirect either. */
			if (pkt[l4] < 128 || pkt[l4] == 137)
				return 0;
		}
		if (q > POL_REPLY_MAX - 48)
			q = POL_REPLY_MAX - 48;
		hl = reply_ip(out, &k, IPPROTO_ICMPV6, 8 + q);
		u = out + hl;
		memset(u, 0, 8);
		u[0] = 1; /* destination unreachable */
		u[1] = 1; /* communication administratively prohibited */
		memcpy(u + 8, pkt, q);
		rdm_put_be16(u + 2,
			     rdm_csum_fold(rdm_csum_pseudo(6, k.dst, k.src, IPPROTO_ICMPV6, 8 + q) +
					   rdm_csum_add(0, u, 8 + q)));
		*rst = 0;
		return hl + 8 + q;
	}
}
