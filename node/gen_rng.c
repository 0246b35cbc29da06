/* The generator's PRNG (splitmix64), and the keyed byte streams that payload bytes come
 * from: any offset of a stream can be computed directly, so a message need not be stored. */
#include "node/gen_int.h"

#include <endian.h>
#include <string.h>

uint64_t rdm_gen__mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t rdm_gen__rnd(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return rdm_gen__mix64(*s);
}

/* Uniform in [0, n), n > 0 (multiply-shift; the bias is below 2^-32). */
uint32_t rdm_gen__rnd_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(((rdm_gen__rnd(s) >> 32) * n) >> 32);
}

uint32_t rdm_gen__rnd_range(uint64_t *s, uint32_t lo, uint32_t hi)
{
	return lo + rdm_gen__rnd_below(s, hi - lo + 1);
}

double rdm_gen__rnd_unit(uint64_t *s)
{
	return (double)(rdm_gen__rnd(s) >> 11) * 0x1.0p-53;
}

uint64_t rdm_gen__stream_key(const struct flow *f, unsigned stream)
{
	return rdm_gen__mix64(f->key + stream * 0xd6e8feb86659fd93ull);
}

/* Word i of the pseudo-random stream named by key: wyrand on a counter, so any offset
 * can be computed directly, at one 128-bit multiply per 8 bytes. */
static uint64_t stream_word(uint64_t key, uint64_t i)
{
	uint64_t s = key + i * 0xa0761d6478bd642full;
	__uint128_t t = (__uint128_t)s * (s ^ 0xe7037ed1a0b428dbull);

	return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

/* Bytes [pos, pos + n) of the pseudo-random stream named by key (words little-endian,
 * so the bytes are the same on every host). */
void rdm_gen__rnd_fill(uint64_t key, uint64_t pos, uint8_t *dst, size_t n)
{
	uint64_t w;

	for (; n && (pos & 7); n--, pos++)
		*dst++ = (uint8_t)(stream_word(key, pos >> 3) >> (8 * (pos & 7)));
	for (; n >= 8; n -= 8, pos += 8, dst += 8) {
		w = htole64(stream_word(key, pos >> 3));
		memcpy(dst, &w, 8);
	}
	for (unsigned i = 0; i < n; i++)
		dst[i] = (uint8_t)(stream_word(key, pos >> 3) >> (8 * i));
}
