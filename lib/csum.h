/* The Internet checksum (RFC 1071) for IPv4 headers and TCP, UDP and ICMP packets. */
#ifndef RDM_CSUM_H
#define RDM_CSUM_H

#include <stddef.h>
#include <stdint.h>

/* Adds n bytes, read as big-endian 16-bit words, to the running sum s (not folded).
 * Every piece but the last must have an even length. */
uint64_t rdm_csum_add(uint64_t s, const uint8_t *p, size_t n);

/* Folds and complements s: the checksum, to store with rdm_put_be16. */
uint16_t rdm_csum_fold(uint64_t s);

/* The pseudo-header sum of an upper-layer packet of len bytes from src to dst (family 4
 * or 6: 4- or 16-byte addresses). */
uint64_t rdm_csum_pseudo(int family, const uint8_t *src, const uint8_t *dst, uint8_t proto,
			 uint32_t len);

#endif
