/* The latency histogram (lib/hist.c): percentiles within 1/64 of a recorded value. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "lib/hist.h"

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

Test(hist, percentiles_within_relative_error)
{
	static struct rdm_hist h;
	enum { N = 100000 };
	static uint64_t v[N];
	uint64_t s = 88172645463325252ull;

	rdm_hist_init(&h);
	for (int i = 0; i < N; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		/* log-uniform over 1 ns .. ~1 s */
		v[i] = (uint64_t)1 << (s % 30);
		v[i] += s % v[i];
		rdm_hist_add(&h, v[i]);
	}
	qsort(v, N, sizeof(v[0]), cmp);
	const double ps[] = {1, 10, 50, 90, 99, 99.9};
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		uint64_t exact = v[(size_t)(ps[i] / 100 * N)];
		uint64_t got = rdm_hist_pct(&h, ps[i]);
		double err = (double)(got > exact ? got - exact : exact - got) / (double)exact;

		cr_assert_leq(err, 1.0 / 64, "p%.1f: exact %lu got %lu", ps[i], exact, got);
	}
	cr_assert_eq(rdm_hist_pct(&h, 100), v[N - 1]);
	cr_assert_eq(h.min, v[0]);
	cr_assert_eq(h.count, N);
}

Test(hist, small_values_exact_and_merge)
{
	static struct rdm_hist a, b;

	rdm_hist_init(&a);
	rdm_hist_init(&b);
	cr_assert_eq(rdm_hist_pct(&a, 50), 0, "empty");
	for (uint64_t i = 0; i < 100; i++)
		rdm_hist_add(i < 50 ? &a : &b, i);
	rdm_hist_merge(&a, &b);
	cr_assert_eq(a.count, 100);
	cr_assert_eq(rdm_hist_pct(&a, 50), 50);
	cr_assert_eq(rdm_hist_pct(&a, 99), 99);
	rdm_hist_add(&a, UINT64_MAX);
	cr_assert_eq(rdm_hist_pct(&a, 100), UINT64_MAX);
}
