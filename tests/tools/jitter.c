/* jitter: how often this machine takes a spinning core away, and for how long. A
 * busy-polling node spins on its ring; while its thread is not running (the kernel's own
 * work, a timer tick, the hypervisor giving the virtual CPU to someone else) every packet
 * that arrives waits. THREADS threads spin reading CLOCK_MONOTONIC for SECONDS each, as
 * many as the busy nodes of a chain, and every gap between two reads longer than
 * THRESH_US counts:
 *   jitter SECONDS THRESH_US [THREADS]
 * prints "gaps_per_s share_pct max_us": gaps over the threshold per second and thread;
 * the share of the time that lay beyond the threshold within such gaps (a packet that
 * arrives in the first g - THRESH of a gap g waits longer than THRESH, so at a steady
 * rate at least that share of packets does); the longest gap. Means over the threads,
 * the longest of all. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct spin {
	pthread_t th;
	uint64_t run_ns, thresh_ns;
	uint64_t gaps, beyond_ns, max_ns, elapsed_ns;
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void *spin(void *arg)
{
	struct spin *s = arg;
	uint64_t start = now_ns(), last = start, end = start + s->run_ns;

	for (;;) {
		uint64_t t = now_ns(), g = t - last;

		last = t;
		if (g > s->thresh_ns) {
			s->gaps++;
			s->beyond_ns += g - s->thresh_ns;
		}
		if (g > s->max_ns)
			s->max_ns = g;
		if (t >= end)
			break;
	}
	s->elapsed_ns = last - start;
	return NULL;
}

int main(int argc, char **argv)
{
	double secs, gaps = 0, share = 0;
	uint64_t max = 0;
	struct spin *s;
	long n = 1;

	if (argc < 3 || (secs = strtod(argv[1], NULL)) <= 0 || strtod(argv[2], NULL) <= 0 ||
	    (argc > 3 && (n = strtol(argv[3], NULL, 10)) < 1) || n > 64) {
		fprintf(stderr, "usage: jitter SECONDS THRESH_US [THREADS (1-64)]\n");
		return 2;
	}
	s = calloc((size_t)n, sizeof(*s));
	if (!s) {
		fprintf(stderr, "jitter: out of memory\n");
		return 1;
	}
	for (long i = 0; i < n; i++) {
		s[i].run_ns = (uint64_t)(secs * 1e9);
		s[i].thresh_ns = (uint64_t)(strtod(argv[2], NULL) * 1000);
		if (pthread_create(&s[i].th, NULL, spin, &s[i])) {
			fprintf(stderr, "jitter: cannot start thread %ld\n", i);
			return 1;
		}
	}
	for (long i = 0; i < n; i++) {
		pthread_join(s[i].th, NULL);
		gaps += (double)s[i].gaps * 1e9 / (double)s[i].elapsed_ns / (double)n;
		share += (double)s[i].beyond_ns * 100 / (double)s[i].elapsed_ns / (double)n;
		if (s[i].max_ns > max)
			max = s[i].max_ns;
	}
	printf("%.0f %.3f %.1f\n", gaps, share, (double)max / 1000);
	free(s);
	return 0;
}
