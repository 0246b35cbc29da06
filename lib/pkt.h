/* Packet parsing for flow keys, and the symmetric flow hash. */
#ifndef RDM_PKT_H
#define RDM_PKT_H

#include <stdint.h>

#include "lib/byteorder.h"

/* An IP flow's 5-tuple. */
struct rdm_flow_key {
	uint8_t family; /* 4 or 6 */
	uint8_t proto;	/* IPPROTO_* */
	uint16_t sport, dport;
	uint8_t src[16], dst[16]; /* IPv4 in the first 4 bytes, the rest zero */
};

/* 1 when a and b are the same 5-tuple: a word at a time in registers (the key's 38
 * bytes as five overlapping loads), with no library call on a per-packet path. */
static inline int rdm_flow_key_eq(const struct rdm_flow_key *a, const struct rdm_flow_key *b)
{
	const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;

	_Static_assert(sizeof(struct rdm_flow_key) == 38, "the loads below cover the key");
	return ((rdm_get_word(x) ^ rdm_get_word(y)) | (rdm_get_word(x + 8) ^ rdm_get_word(y + 8)) |
		(rdm_get_word(x + 16) ^ rdm_get_word(y + 16)) |
		(rdm_get_word(x + 24) ^ rdm_get_word(y + 24)) |
		(rdm_get_word(x + 30) ^ rdm_get_word(y + 30))) == 0;
}

/* 1 when b is a's 5-tuple turned round (the flow's other direction). */
static inline int rdm_flow_key_rev(const struct rdm_flow_key *a, const struct rdm_flow_key *b)
{
	return a->family == b->family && a->proto == b->proto && a->sport == b->dport &&
	       a->dport == b->sport &&
	       ((rdm_get_word(a->src) ^ rdm_get_word(b->dst)) |
		(rdm_get_word(a->src + 8) ^ rdm_get_word(b->dst + 8)) |
		(rdm_get_word(a->dst) ^ rdm_get_word(b->src)) |
		(rdm_get_word(a->dst + 8) ^ rdm_get_word(b->src + 8))) == 0;
}

/* Extracts the 5-tuple of an IPv4 or IPv6 packet. Ports are 0 for protocols without
 * them and for non-first fragments. Returns 0, or -EINVAL when the packet is too short
 * for its headers or is not IP. Never reads past len. */
int rdm_pkt_flow_key(const uint8_t *pkt, uint32_t len, struct rdm_flow_key *k);

/* rdm_pkt_flow_key, and the offset of the transport header in *l4 (0 for a later
 * fragment, whose transport header is in the first) from the same single parse. */
int rdm_pkt_flow_key_l4(const uint8_t *pkt, uint32_t len, struct rdm_flow_key *k, uint32_t *l4);

/* The offset of the transport header of an IP packet (after IPv6 extension headers),
 * with its protocol in *proto; -EINVAL when there is none (too short, a later
 * fragment, not IP). */
int rdm_pkt_l4(const uint8_t *pkt, uint32_t len, uint8_t *proto);

/* rdm_pkt_tcp_flags through the full parse (rdm_pkt_l4). */
uint8_t rdm_pkt__tcp_flags_parsed(const uint8_t *pkt, uint32_t len);

/* The TCP flags byte of an IPv4 or IPv6 TCP packet, or 0 (not TCP, a later fragment,
 * too short, not IP). Inline for the common case, an unfragmented IPv4 packet, read
 * directly: not TCP, or TCP with its headers all there; anything else is parsed. */
static inline uint8_t rdm_pkt_tcp_flags(const uint8_t *pkt, uint32_t len)
{
	if (len >= 20 && pkt[0] >> 4 == 4 && !(rdm_get_be16(pkt + 6) & 0x1fff)) {
		uint32_t ihl = (uint32_t)(pkt[0] & 0x0f) * 4, tot = rdm_get_be16(pkt + 2);

		if (pkt[9] != 6) /* TCP */
			return 0;
		if (ihl >= 20 && tot <= len && ihl + 20 <= tot)
			return pkt[ihl + 13];
	}
	return rdm_pkt__tcp_flags_parsed(pkt, len);
}

/* A hash of the 5-tuple that is the same for both directions of a flow. */
uint64_t rdm_flow_hash(const struct rdm_flow_key *k);

#endif
