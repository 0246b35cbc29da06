/* The policy stage's private header: what services/policy.c takes from its reply
 * builder, services/policy_reply.c. */
#ifndef RDM_POLICY_INT_H
#define RDM_POLICY_INT_H

#include <stdint.h>

/* An IPv6 ICMP error may fill the minimum MTU (RFC 4443 2.4 (c)); nothing we build is
 * larger. */
#define POL_REPLY_MAX 1280

/* Builds the reply to the packet pkt (len bytes) into out (POL_REPLY_MAX bytes): a TCP
 * RST for TCP (RFC 793 reset generation), else ICMP destination unreachable,
 * administratively prohibited. Returns its length with *rst set to 1 for a RST and 0
 * for ICMP, or 0 when the packet must get no reply: a RST, an ICMP error or redirect,
 * multicast or broadcast, a later fragment, a malformed packet. */
uint32_t rdm_policy__build_reply(const uint8_t *pkt, uint32_t len, uint8_t *out, int *rst);

#endif
