/* A generator of realistic flows: TCP handshakes, HTTP requests with a Host header and
 * their responses, TLS ClientHellos with SNI, DNS queries and answers, and FIN
 * teardowns. IPv4, valid checksums. Flows interleave; each flow's packets stay in order.
 * Deterministic for a given seed. */
#ifndef RDM_GEN_H
#define RDM_GEN_H

#include <stdint.h>

struct rdm_gen;

struct rdm_gen_conf {
	uint32_t flows;	  /* number of flows to generate (>= 1) */
	uint64_t packets; /* total packets to generate; flows are sized to fill it */
	uint64_t seed;
};

/* NULL with errno set on a bad conf or no memory. */
struct rdm_gen *rdm_gen_new(const struct rdm_gen_conf *conf);

/* Writes the next packet (an IP packet, no link header) into buf. Returns its length,
 * 0 when all packets were produced, or -EMSGSIZE if cap is too small (2048 is enough). */
int rdm_gen_next(struct rdm_gen *g, uint8_t *buf, uint32_t cap);

void rdm_gen_free(struct rdm_gen *g);

#endif
