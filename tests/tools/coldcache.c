/* coldcache: what a packet pays on this machine for the memory it touches after the core
 * waited for it. A busy-polling node spins on one ring between packets; whatever else it
 * needs per packet (code, tables, states, buffers) may have left the caches meanwhile, on
 * a shared virtual machine above all. This touches LINES cache lines spread over SIZE KiB,
 * back to back and after spinning for each GAP (us), and prints the nanoseconds per line,
 * the median of ROUNDS rounds:
 *   coldcache SIZE_KIB LINES ROUNDS GAP_US...
 * One line per gap: "gap_us ns_per_line". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	size_t size, lines, rounds;
	volatile uint8_t *buf;
	size_t *at;
	uint64_t *took;

	if (argc < 5) {
		fprintf(stderr, "usage: coldcache SIZE_KIB LINES ROUNDS GAP_US...\n");
		return 2;
	}
	size = strtoul(argv[1], NULL, 10) * 1024;
	lines = strtoul(argv[2], NULL, 10);
	rounds = strtoul(argv[3], NULL, 10);
	if (size < 64 || lines == 0 || rounds == 0 || lines > size / 64) {
		fprintf(stderr, "coldcache: SIZE must hold LINES lines of 64 bytes, ROUNDS > 0\n");
		return 2;
	}
	buf = malloc(size);
	at = malloc(lines * sizeof(*at));
	took = malloc(rounds * sizeof(*took));
	if (!buf || !at || !took) {
		fprintf(stderr, "coldcache: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)i;
	srand(7);
	for (size_t i = 0; i < lines; i++)
		at[i] = (size_t)rand() % (size / 64) * 64;
	for (int g = 4; g < argc; g++) {
		uint64_t gap = strtoull(argv[g], NULL, 10) * 1000;

		for (size_t r = 0; r < rounds; r++) {
			uint64_t t0 = now_ns();

			while (now_ns() - t0 < gap)
				; /* the poll loop's wait: nothing else touched */
			t0 = now_ns();
			for (size_t i = 0; i < lines; i++)
				buf[at[i]]++;
			took[r] = now_ns() - t0;
		}
		qsort(took, rounds, sizeof(*took), cmp_u64);
		printf("%s %.1f\n", argv[g], (double)took[rounds / 2] / (double)lines);
	}
	free((void *)buf);
	free(at);
	free(took);
	return 0;
}
