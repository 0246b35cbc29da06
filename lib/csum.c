/* The Internet checksum (RFC 1071). */
#include "lib/csum.h"

uint64_t rdm_csum_add(uint64_t s, const uint8_t *p, size_t n)
{
	for (; n > 1; p += 2, n -= 2)
		s += (uint32_t)(p[0] << 8 | p[1]);
	if (n)
		s += (uint32_t)p[0] << 8;
	return s;
}

uint16_t rdm_csum_fold(uint64_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

uint64_t rdm_csum_pseudo(int family, const uint8_t *src, const uint8_t *dst, uint8_t proto,
			 uint32_t len)
{
	size_t alen = family == 4 ? 4 : 16;
	uint64_t s = 0;

	s = rdm_csum_add(s, src, alen);
	s = rdm_csum_add(s, dst, alen);
	s += proto;
	s += len >> 16;
	s += len & 0xffff;
	return s;
}
