/* The string builder (lib/strbuf.c): appending and growing, formatting short and long
 * text, the line and column of its end, handing the text over, and out of memory being
 * sticky. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/strbuf.h"

Test(strbuf, starts_empty_and_take_gives_an_empty_string)
{
	struct rdm_strbuf b;
	char *s;

	rdm_sb_init(&b);
	cr_assert_null(b.buf);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.line, 1);
	cr_assert_eq(b.col, 1);
	s = rdm_sb_take(&b);
	cr_assert_not_null(s);
	cr_assert_str_eq(s, "");
	free(s);
	rdm_sb_fini(&b);
	rdm_sb_fini(&b);
}

Test(strbuf, grows_and_keeps_every_byte)
{
	struct rdm_strbuf b;
	char piece[8], *want = malloc(100000 * 3 + 1);
	size_t at = 0;

	cr_assert_not_null(want);
	rdm_sb_init(&b);
	for (int i = 0; i < 100000; i++) {
		snprintf(piece, sizeof(piece), "%03d", i % 1000);
		rdm_sb_put(&b, piece, 3);
		memcpy(want + at, piece, 3);
		at += 3;
		cr_assert_gt(b.cap, b.len); /* room for the NUL */
		cr_assert_eq(b.buf[b.len], '\0');
	}
	want[at] = '\0';
	cr_assert_eq(b.len, at);
	cr_assert_eq(b.failed, 0);
	cr_assert_str_eq(b.buf, want);
	rdm_sb_fini(&b);
	cr_assert_null(b.buf);
	free(want);
}

Test(strbuf, printf_formats_short_and_long_text)
{
	struct rdm_strbuf b;
	char *big = malloc(5001), *s;

	cr_assert_not_null(big);
	memset(big, 'x', 5000);
	big[5000] = '\0';
	rdm_sb_init(&b);
	rdm_sb_printf(&b, "%s-%d:%u;", "dpi", 2, 202u);
	cr_assert_str_eq(b.buf, "dpi-2:202;");
	rdm_sb_printf(&b, "[%s]", big); /* past the builder's stack buffer */
	cr_assert_eq(b.len, 10 + 5002);
	cr_assert_eq(b.buf[10], '[');
	cr_assert_eq(b.buf[11 + 4999], 'x');
	cr_assert_str_eq(b.buf + 10 + 5001, "]");
	rdm_sb_puts(&b, "!");
	s = rdm_sb_take(&b);
	cr_assert_eq(strlen(s), 10 + 5003);
	cr_assert_null(b.buf, "take leaves the builder empty");
	cr_assert_eq(b.len, 0);
	free(s);
	free(big);
}

Test(strbuf, knows_the_line_and_column_of_its_end)
{
	struct rdm_strbuf b;

	rdm_sb_init(&b);
	rdm_sb_puts(&b, "chain: ");
	cr_assert_eq(b.line, 1);
	cr_assert_eq(b.col, 8);
	rdm_sb_puts(&b, "{name: t}\nnodes:\n  - ");
	cr_assert_eq(b.line, 3);
	cr_assert_eq(b.col, 5);
	rdm_sb_puts(&b, "caf\xc3\xa9 "); /* "café ": five characters, six bytes */
	cr_assert_eq(b.col, 10);
	rdm_sb_printf(&b, "%s\n", "x");
	cr_assert_eq(b.line, 4);
	cr_assert_eq(b.col, 1);
	rdm_sb_fini(&b);
	cr_assert_eq(b.line, 1, "fini leaves b as init does");
	cr_assert_eq(b.col, 1);
}

Test(strbuf, out_of_memory_is_sticky)
{
	struct rdm_strbuf b;
	char *s;

	rdm_sb_init(&b);
	rdm_sb_puts(&b, "kept");
	/* A length no buffer can hold fails as an allocation would (and without asking the
	 * allocator, so this runs under the sanitizers too); nothing is read from s. */
	rdm_sb_put(&b, "", SIZE_MAX - 2);
	cr_assert_eq(b.failed, 1);
	cr_assert_str_eq(b.buf, "kept", "a failed write leaves the text as it was");
	rdm_sb_puts(&b, " and more");
	rdm_sb_printf(&b, "%d", 42);
	cr_assert_eq(b.len, 4, "writes after a failure are ignored");
	errno = 0;
	s = rdm_sb_take(&b);
	cr_assert_null(s);
	cr_assert_eq(errno, ENOMEM);
	cr_assert_null(b.buf, "take empties a failed builder too");
	cr_assert_eq(b.failed, 0);
	rdm_sb_fini(&b);
}

Test(strbuf, grow_doubles_and_refuses_what_cannot_fit)
{
	int *a = NULL;
	size_t cap = 0;

	cr_assert_eq(rdm_sb_grow((void **)&a, &cap, 1, sizeof(*a)), 0);
	cr_assert_eq(cap, 16);
	a[15] = 7;
	cr_assert_eq(rdm_sb_grow((void **)&a, &cap, 16, sizeof(*a)), 0);
	cr_assert_eq(cap, 16, "no growth when it fits");
	cr_assert_eq(rdm_sb_grow((void **)&a, &cap, 17, sizeof(*a)), 0);
	cr_assert_eq(cap, 32);
	cr_assert_eq(a[15], 7, "growth keeps what was there");
	cr_assert_eq(rdm_sb_grow((void **)&a, &cap, 100, sizeof(*a)), 0);
	cr_assert_eq(cap, 128);
	/* More elements than the address space holds. */
	cr_assert_eq(rdm_sb_grow((void **)&a, &cap, SIZE_MAX / 2, sizeof(*a)), -ENOMEM);
	cr_assert_eq(cap, 128, "a failed growth leaves the array as it was");
	cr_assert_eq(a[15], 7);
	free(a);
}
