/* Byte order: explicit big-endian (network order) and little-endian loads and stores on
 * byte pointers. Wire bytes are never cast to structs, so alignment never matters. */
#ifndef RDM_BYTEORDER_H
#define RDM_BYTEORDER_H

#include <stdint.h>
#include <string.h>

/* 8 (4) bytes at p in the machine's own order, as one unaligned load: for comparing
 * bytes a word at a time, never for reading a field off the wire. */
static inline uint64_t rdm_get_word(const void *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t rdm_get_word32(const void *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint16_t rdm_get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t rdm_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t rdm_get_be64(const uint8_t *p)
{
	return (uint64_t)rdm_get_be32(p) << 32 | rdm_get_be32(p + 4);
}

static inline void rdm_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void rdm_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void rdm_put_be64(uint8_t *p, uint64_t v)
{
	rdm_put_be32(p, (uint32_t)(v >> 32));
	rdm_put_be32(p + 4, (uint32_t)v);
}

static inline uint32_t rdm_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t rdm_get_le64(const uint8_t *p)
{
	return (uint64_t)rdm_get_le32(p) | (uint64_t)rdm_get_le32(p + 4) << 32;
}

#endif
