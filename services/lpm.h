/* A longest-prefix-match table for IPv4 and IPv6 prefixes, each mapping to a u32 value.
 * Build it once with rdm_lpm_insert, then look addresses up from any number of threads:
 * lookups only read.
 *
 * Structure: one open-addressing hash table keyed by (family, length, masked address),
 * plus, per family, the list of prefix lengths present, longest first. A lookup masks
 * the address to each present length in turn and probes the table, so the first hit is
 * the longest match. Its cost is bounded by the number of distinct lengths in use (at
 * most 33 for IPv4, 129 for IPv6; a directory typically has a handful) times one hash
 * probe, kept short by a load factor of at most 1/2. This is simpler than a path-
 * compressed trie, allocates nothing per lookup and touches few cache lines when few
 * lengths are used, which is the common case for identity directories.
 *
 * Addresses are in network byte order: 4 bytes for IPv4, 16 for IPv6. The two families
 * are separate: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) does not match IPv4
 * prefixes. */
#ifndef RDM_LPM_H
#define RDM_LPM_H

#include <stddef.h>
#include <stdint.h>

struct rdm_lpm;

/* An empty table; NULL with errno (ENOMEM). */
struct rdm_lpm *rdm_lpm_new(void);

/* Frees t; accepts NULL. */
void rdm_lpm_free(struct rdm_lpm *t);

/* Adds the prefix addr/len of family (4 or 6) with value. Bits of addr past len are
 * ignored (the prefix is stored masked). Returns 0; -EINVAL for a bad family or a len
 * above 32 (IPv4) or 128 (IPv6); -EEXIST when the same prefix is already there, with its
 * value in *old when old is not NULL (the table is unchanged); -ENOMEM. Not safe
 * concurrently with lookups: build first, then share. */
int rdm_lpm_insert(struct rdm_lpm *t, int family, const uint8_t *addr, unsigned len, uint32_t value,
		   uint32_t *old);

/* Finds the longest prefix of family that covers addr. Returns its length (0..128) and
 * sets *value; -ENOENT when no prefix covers addr; -EINVAL for a bad family. Reads only,
 * so it may run in many threads at once. */
int rdm_lpm_lookup(const struct rdm_lpm *t, int family, const uint8_t *addr, uint32_t *value);

/* Prefixes in t. */
size_t rdm_lpm_count(const struct rdm_lpm *t);

/* Parses "ADDR" or "ADDR/LEN" (IPv4 dotted quad or any IPv6 text form inet_pton takes;
 * LEN decimal digits only). A bare address is a host prefix (/32 or /128). Sets *family
 * (4 or 6), addr (4 or 16 bytes used, the rest zeroed) and *len exactly as written, host
 * bits included. Returns 0; -EINVAL when s is not an address; -ERANGE when LEN is above
 * the family's maximum. */
int rdm_lpm_parse(const char *s, int *family, uint8_t addr[16], unsigned *len);

/* Copies addr with the bits past len cleared into out (16 bytes, the tail zeroed);
 * returns 1 when that changed anything (addr had host bits set), else 0. */
int rdm_lpm_mask(int family, const uint8_t *addr, unsigned len, uint8_t out[16]);

#endif
