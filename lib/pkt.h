/* Packet parsing for flow keys, and the symmetric flow hash. */
#ifndef RDM_PKT_H
#define RDM_PKT_H

#include <stdint.h>

/* An IP flow's 5-tuple. */
struct rdm_flow_key {
	uint8_t family; /* 4 or 6 */
	uint8_t proto;	/* IPPROTO_* */
	uint16_t sport, dport;
	uint8_t src[16], dst[16]; /* IPv4 in the first 4 bytes, the rest zero */
};

/* Extracts the 5-tuple of an IPv4 or IPv6 packet. Ports are 0 for protocols without
 * them and for non-first fragments. Returns 0, or -EINVAL when the packet is too short
 * for its headers or is not IP. Never reads past len. */
int rdm_pkt_flow_key(const uint8_t *pkt, uint32_t len, struct rdm_flow_key *k);

/* The TCP flags byte of an IPv4 or IPv6 TCP packet whose key k came from
 * rdm_pkt_flow_key, or 0 (not TCP, a later fragment, too short). */
uint8_t rdm_pkt_tcp_flags(const uint8_t *pkt, uint32_t len, const struct rdm_flow_key *k);

/* The offset of the transport header of an IP packet (after IPv6 extension headers),
 * with its protocol in *proto; -EINVAL when there is none (too short, a later
 * fragment, not IP). */
int rdm_pkt_l4(const uint8_t *pkt, uint32_t len, uint8_t *proto);

/* A hash of the 5-tuple that is the same for both directions of a flow. */
uint64_t rdm_flow_hash(const struct rdm_flow_key *k);

#endif
