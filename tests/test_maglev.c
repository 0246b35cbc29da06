/* Maglev tables (node/maglev.c): even shares, little movement when a backend comes or
 * goes, independence from the order names are listed in, bad arguments. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>

#include "node/maglev.h"

static const char *const names5[] = {"dpi-1", "dpi-2", "dpi-3", "dpi-4", "dpi-5"};

Test(maglev, every_backend_gets_about_an_even_share)
{
	for (int n = 1; n <= 5; n++) {
		struct rdm_maglev *m = rdm_maglev_new(names5, n, 0);
		uint32_t total = 0;

		cr_assert_not_null(m);
		for (int i = 0; i < n; i++) {
			uint32_t s = rdm_maglev_share(m, i);
			double ideal = (double)RDM_MAGLEV_SIZE / n;

			cr_assert(s > ideal * 0.97 && s < ideal * 1.03,
				  "n %d backend %d owns %u of %u", n, i, s, RDM_MAGLEV_SIZE);
			total += s;
		}
		cr_assert_eq(total, RDM_MAGLEV_SIZE, "every entry is owned");
		rdm_maglev_free(m);
	}
}

/* Entries whose owner changes between two tables, by name. */
static uint32_t moved(const struct rdm_maglev *a, const char *const *na, const struct rdm_maglev *b,
		      const char *const *nb)
{
	uint32_t k = 0;

	for (uint32_t c = 0; c < a->size; c++)
		k += strcmp(na[a->entry[c]], nb[b->entry[c]]) != 0;
	return k;
}

Test(maglev, adding_or_removing_a_backend_moves_little)
{
	struct rdm_maglev *m3 = rdm_maglev_new(names5, 3, 0), *m4 = rdm_maglev_new(names5, 4, 0);
	static const char *const without2[] = {"dpi-1", "dpi-3"};
	struct rdm_maglev *m2 = rdm_maglev_new(without2, 2, 0);
	uint32_t mv;

	cr_assert(m3 && m4 && m2);
	/* 3 -> 4: the new backend takes a quarter; ideally nothing else moves. */
	mv = moved(m3, names5, m4, names5);
	cr_assert(mv < RDM_MAGLEV_SIZE * 0.25 * 1.15, "3 -> 4 moved %u entries", mv);
	/* 3 -> 2 (dpi-2 leaves): its third moves; the rest stays almost entirely. */
	mv = moved(m3, names5, m2, without2);
	cr_assert(mv < RDM_MAGLEV_SIZE / 3.0 * 1.15, "3 -> 2 moved %u entries", mv);
	for (uint32_t c = 0, kept = 0, had = 0; c < m3->size; c++) {
		if (m3->entry[c] == 1)
			continue;
		had++;
		kept += !strcmp(names5[m3->entry[c]], without2[m2->entry[c]]);
		if (c + 1 == m3->size)
			cr_assert(kept > had * 0.95,
				  "entries of the staying backends kept: %u of %u", kept, had);
	}
	rdm_maglev_free(m3);
	rdm_maglev_free(m4);
	rdm_maglev_free(m2);
}

Test(maglev, the_same_names_give_the_same_table_in_any_order)
{
	static const char *const rev[] = {"dpi-3", "dpi-2", "dpi-1"};
	struct rdm_maglev *a = rdm_maglev_new(names5, 3, 0), *b = rdm_maglev_new(rev, 3, 0);

	cr_assert(a && b);
	cr_assert_eq(moved(a, names5, b, rev), 0);
	for (uint64_t h = 0; h < 1000; h++)
		cr_assert_str_eq(names5[rdm_maglev_lookup(a, h * 0x9e3779b97f4a7c15ull)],
				 rev[rdm_maglev_lookup(b, h * 0x9e3779b97f4a7c15ull)]);
	rdm_maglev_free(a);
	rdm_maglev_free(b);
}

Test(maglev, a_small_prime_table_works_and_bad_arguments_are_refused)
{
	struct rdm_maglev *m = rdm_maglev_new(names5, 5, 13);

	cr_assert_not_null(m);
	for (int i = 0; i < 5; i++)
		cr_assert_geq(rdm_maglev_share(m, i), 2u);
	rdm_maglev_free(m);
	errno = 0;
	cr_assert_null(rdm_maglev_new(names5, 5, 12)); /* not prime */
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(rdm_maglev_new(names5, 0, 0));
	cr_assert_null(rdm_maglev_new(names5, 5, 5)); /* not above n */
	rdm_maglev_free(NULL);
}
