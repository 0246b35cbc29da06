/* Memory the data path uses from its first packet on (lib/mem.c): every page of it is
 * the process's own when the allocation returns (mincore says resident), so the first
 * packets never wait on a first-touch page fault. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/mem.h"

/* How many of the pages that hold p[0..len) are resident. */
static size_t resident(const void *p, size_t len, size_t *pages)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)p & ~(pg - 1), e = ((uintptr_t)p + len + pg - 1) & ~(pg - 1);
	unsigned char *v;
	size_t n = 0;

	*pages = (e - a) / pg;
	v = malloc(*pages);
	cr_assert_not_null(v);
	cr_assert_eq(mincore((void *)a, e - a, v), 0);
	for (size_t i = 0; i < *pages; i++)
		n += v[i] & 1;
	free(v);
	return n;
}

/* 4 MiB: above malloc's mmap threshold, so calloc hands out fresh zero pages that
 * become resident only when first written; the block starts past a page's start (malloc's
 * header), so its last bytes lie in a page of their own. */
#define BIG (4u << 20)

Test(mem, every_page_resident_and_zero)
{
	uint8_t *p = rdm_calloc_touched(BIG / 64, 64);
	size_t pages, bad = BIG;

	cr_assert_not_null(p);
	cr_expect_eq(resident(p, BIG, &pages), pages, "every page resident");

	for (size_t i = 0; i < BIG && bad == BIG; i++)
		if (p[i])
			bad = i;
	cr_expect_eq(bad, BIG, "byte %zu is not 0", bad);
	free(p);
}

Test(mem, plain_calloc_is_not_resident_until_written)
{
	/* The control: what the helper exists for. */
	uint8_t *p = calloc(BIG / 64, 64);
	size_t pages;

	cr_assert_not_null(p);
	cr_expect_lt(resident(p, BIG, &pages), pages / 2);
	free(p);
}
