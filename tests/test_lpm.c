/* The longest-prefix-match table (services/lpm.c): exact cases for IPv4 and IPv6, then
 * many random prefixes and addresses checked against a brute-force linear reference. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "services/lpm.h"

static struct rdm_lpm *t;

static void setup(void)
{
	t = rdm_lpm_new();
	cr_assert_not_null(t);
}

static void teardown(void)
{
	rdm_lpm_free(t);
	t = NULL;
}

/* Adds the prefix written as text with value v; returns insert's result. */
static int add(const char *text, uint32_t v)
{
	uint8_t a[16];
	unsigned len;
	int fam;

	cr_assert_eq(rdm_lpm_parse(text, &fam, a, &len), 0, "parse '%s'", text);
	return rdm_lpm_insert(t, fam, a, len, v, NULL);
}

/* Looks the address written as text up: the matched length, or -ENOENT. */
static int look(const char *text, uint32_t *v)
{
	uint8_t a[16];
	unsigned len;
	int fam;

	cr_assert_eq(rdm_lpm_parse(text, &fam, a, &len), 0, "parse '%s'", text);
	return rdm_lpm_lookup(t, fam, a, v);
}

/* Asserts that text matches a prefix of length len whose value is want. */
static void expect(const char *text, int len, uint32_t want)
{
	uint32_t v = 0xdeadbeef;
	int rc = look(text, &v);

	cr_assert_eq(rc, len, "%s: matched /%d, want /%d", text, rc, len);
	cr_assert_eq(v, want, "%s: value %u, want %u", text, v, want);
}

static void expect_none(const char *text)
{
	uint32_t v = 0xdeadbeef;

	cr_assert_eq(look(text, &v), -ENOENT, "%s matched", text);
	cr_assert_eq(v, 0xdeadbeef, "%s: value written on a miss", text);
}

TestSuite(lpm, .init = setup, .fini = teardown);

Test(lpm, ipv4_longest_of_overlapping_prefixes_wins)
{
	cr_assert_eq(add("10.0.0.0/8", 1), 0);
	cr_assert_eq(add("10.1.0.0/16", 2), 0);
	cr_assert_eq(add("10.1.2.0/24", 3), 0);
	cr_assert_eq(add("10.1.2.3/32", 4), 0);
	expect("10.200.0.1", 8, 1);
	expect("10.1.200.1", 16, 2);
	expect("10.1.2.200", 24, 3);
	expect("10.1.2.3", 32, 4);
	expect("10.1.2.4", 24, 3);
	expect_none("11.0.0.1");
	expect_none("9.255.255.255");
	cr_assert_eq(rdm_lpm_count(t), 4);
}

Test(lpm, insertion_order_does_not_matter)
{
	cr_assert_eq(add("10.1.2.3/32", 4), 0);
	cr_assert_eq(add("10.1.2.0/24", 3), 0);
	cr_assert_eq(add("10.0.0.0/8", 1), 0);
	cr_assert_eq(add("10.1.0.0/16", 2), 0);
	expect("10.200.0.1", 8, 1);
	expect("10.1.200.1", 16, 2);
	expect("10.1.2.200", 24, 3);
	expect("10.1.2.3", 32, 4);
}

Test(lpm, ipv4_non_octet_lengths)
{
	cr_assert_eq(add("192.168.0.0/17", 1), 0);
	cr_assert_eq(add("192.168.128.0/17", 2), 0);
	cr_assert_eq(add("192.168.128.0/23", 3), 0);
	cr_assert_eq(add("172.16.0.0/12", 4), 0);
	expect("192.168.127.255", 17, 1);
	expect("192.168.128.0", 23, 3);
	expect("192.168.129.255", 23, 3);
	expect("192.168.130.0", 17, 2);
	expect("172.31.255.255", 12, 4);
	expect_none("172.32.0.0");
	expect_none("172.15.255.255");
}

Test(lpm, default_route_matches_everything_of_its_family)
{
	cr_assert_eq(add("0.0.0.0/0", 7), 0);
	cr_assert_eq(add("10.0.0.0/8", 1), 0);
	expect("1.2.3.4", 0, 7);
	expect("255.255.255.255", 0, 7);
	expect("10.9.9.9", 8, 1);
	/* The IPv4 default says nothing about IPv6. */
	expect_none("::1");
	cr_assert_eq(add("::/0", 8), 0);
	expect("2001:db8::1", 0, 8);
	expect("1.2.3.4", 0, 7);
}

Test(lpm, host_entries)
{
	cr_assert_eq(add("10.1.2.3", 1), 0); /* a bare address is /32 */
	cr_assert_eq(add("2001:db8::42", 2), 0);
	cr_assert_eq(add("2001:db8::/64", 3), 0);
	expect("10.1.2.3", 32, 1);
	expect_none("10.1.2.2");
	expect_none("10.1.2.4");
	expect("2001:db8::42", 128, 2);
	expect("2001:db8::43", 64, 3);
	expect("2001:db8::ffff:ffff:ffff:ffff", 64, 3);
	expect_none("2001:db8:0:1::");
}

Test(lpm, ipv6_overlaps)
{
	cr_assert_eq(add("2001:db8::/32", 1), 0);
	cr_assert_eq(add("2001:db8:1::/48", 2), 0);
	cr_assert_eq(add("2001:db8:1:2::/64", 3), 0);
	cr_assert_eq(add("2001:db8:1:2:8000::/65", 4), 0);
	cr_assert_eq(add("fd00::/8", 5), 0);
	expect("2001:db8:ffff::1", 32, 1);
	expect("2001:db8:1:ffff::1", 48, 2);
	expect("2001:db8:1:2::1", 64, 3);
	expect("2001:db8:1:2:7fff::1", 64, 3);
	expect("2001:db8:1:2:8000::1", 65, 4);
	expect("fdff:ffff::1", 8, 5);
	expect_none("2001:db9::1");
	expect_none("fe00::1");
}

Test(lpm, families_are_separate)
{
	cr_assert_eq(add("10.0.0.0/8", 1), 0);
	/* The same leading bytes as IPv6 (0a00::/8) do not match the IPv4 prefix. */
	expect_none("a00::1");
	expect_none("::ffff:10.1.2.3");
	cr_assert_eq(add("a00::/8", 2), 0);
	expect("a00::1", 8, 2);
	expect("10.1.2.3", 8, 1);
}

Test(lpm, duplicate_prefix_is_refused_with_the_first_value)
{
	uint8_t a[16] = {10, 1, 2, 3};
	uint32_t old = 0, v;

	cr_assert_eq(add("10.1.0.0/16", 5), 0);
	/* Host bits past the length are ignored: 10.1.2.3/16 is the same prefix. */
	cr_assert_eq(rdm_lpm_insert(t, 4, a, 16, 6, &old), -EEXIST);
	cr_assert_eq(old, 5);
	cr_assert_eq(add("10.1.0.0/17", 7), 0); /* another length is another prefix */
	cr_assert_eq(rdm_lpm_count(t), 2);
	cr_assert_eq(look("10.1.200.1", &v), 16);
	cr_assert_eq(v, 5);
}

Test(lpm, bad_arguments)
{
	uint8_t a[16] = {0};
	uint32_t v;

	cr_assert_eq(rdm_lpm_insert(t, 5, a, 8, 1, NULL), -EINVAL);
	cr_assert_eq(rdm_lpm_insert(t, 4, a, 33, 1, NULL), -EINVAL);
	cr_assert_eq(rdm_lpm_insert(t, 6, a, 129, 1, NULL), -EINVAL);
	cr_assert_eq(rdm_lpm_lookup(t, 0, a, &v), -EINVAL);
	cr_assert_eq(rdm_lpm_count(t), 0);
	cr_assert_eq(rdm_lpm_lookup(t, 4, a, &v), -ENOENT);
	cr_assert_eq(rdm_lpm_lookup(t, 6, a, &v), -ENOENT);
}

Test(lpm, parse)
{
	uint8_t a[16];
	unsigned len;
	int fam;

	cr_assert_eq(rdm_lpm_parse("10.1.2.3/16", &fam, a, &len), 0);
	cr_assert_eq(fam, 4);
	cr_assert_eq(len, 16);
	cr_assert_eq(memcmp(a, "\x0a\x01\x02\x03", 4), 0, "kept as written");
	cr_assert_eq(rdm_lpm_parse("::/0", &fam, a, &len), 0);
	cr_assert_eq(fam, 6);
	cr_assert_eq(len, 0);
	cr_assert_eq(rdm_lpm_parse("2001:db8::1", &fam, a, &len), 0);
	cr_assert_eq(len, 128);
	cr_assert_eq(rdm_lpm_parse("10.0.0.0/33", &fam, a, &len), -ERANGE);
	cr_assert_eq(rdm_lpm_parse("::/129", &fam, a, &len), -ERANGE);
	cr_assert_eq(rdm_lpm_parse("10.0.0.0/99999999999999999999", &fam, a, &len), -ERANGE);
	static const char *const bad[] = {
	    "",		"/8",	      "10.0.0.0/",    "10.0.0.0/+8", "10.0.0.0/ 8", "10.0.0.0/8 ",
	    "10.0.0",	"10.0.0.0.0", "10.0.0.256",   "host.test",   "10.0.0.0/8/", "2001:db8::/-1",
	    "1.2.3.4 ", "::g",	      "10.0.0.0/0x8",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(rdm_lpm_parse(bad[i], &fam, a, &len), -EINVAL, "'%s' accepted",
			     bad[i]);
}

Test(lpm, mask)
{
	uint8_t in[16] = {10, 1, 2, 3}, out[16];

	cr_assert_eq(rdm_lpm_mask(4, in, 16, out), 1);
	cr_assert_eq(memcmp(out, "\x0a\x01\x00\x00", 4), 0);
	cr_assert_eq(rdm_lpm_mask(4, in, 32, out), 0);
	cr_assert_eq(rdm_lpm_mask(4, in, 0, out), 1);
	cr_assert_eq(out[0], 0);
	cr_assert_eq(rdm_lpm_mask(4, in, 15, out), 1);
	cr_assert_eq(out[1], 0);
	cr_assert_eq(rdm_lpm_mask(4, in, 8, out), 1);
	cr_assert_eq(out[0], 10);
	cr_assert_eq(out[1], 0);
}

/* The reference: every prefix in a flat list, the longest covering one wins. */
struct ref {
	int fam;
	unsigned len;
	uint8_t a[16];
	uint32_t v;
};

static int covers(const struct ref *r, int fam, const uint8_t *a)
{
	uint8_t m[16];

	if (r->fam != fam)
		return 0;
	rdm_lpm_mask(fam, a, r->len, m);
	return !memcmp(m, r->a, 16);
}

static uint64_t rng = 0x1234567887654321ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* An address near the prefixes: drawn from a small pool of bases so that prefixes
 * nest and overlap often, with random low bits. */
static void rnd_addr(int fam, uint8_t a[16])
{
	static const uint8_t base4[][4] = {{10, 0, 0, 0}, {10, 1, 0, 0}, {192, 168, 1, 0}};
	static const uint8_t base6[][4] = {{0x20, 0x01, 0x0d, 0xb8}, {0xfd, 0x00, 0, 0}};
	unsigned n = fam == 4 ? 4 : 16;
	uint64_t r = rnd(), r2 = rnd();

	memset(a, 0, 16);
	if (fam == 4)
		memcpy(a, base4[r % 3], 4);
	else
		memcpy(a, base6[r % 2], 4);
	/* Keep a random number of leading bytes of the base, randomise the rest. */
	for (unsigned i = 1 + (unsigned)((r >> 8) % (n - 1)); i < n; i++) {
		a[i] = (uint8_t)r2;
		r2 = r2 >> 8 | (r2 << 56);
		if (i % 8 == 7)
			r2 = rnd();
	}
}

Test(lpm, random_prefixes_match_a_linear_reference, .timeout = 60)
{
	enum { NPFX = 3000, NLOOK = 50000 };
	struct ref *refs = calloc(NPFX, sizeof(*refs));
	int n = 0, dups = 0, hits = 0;

	cr_assert_not_null(refs);
	for (int i = 0; i < NPFX; i++) {
		struct ref r = {.fam = rnd() % 2 ? 4 : 6, .v = (uint32_t)i};
		uint8_t a[16];
		int rc, dup = -1;
		uint32_t old;

		rnd_addr(r.fam, a);
		/* No lengths so short that they cover every address: then nothing would miss
		 * (the /0 case has its own test). */
		r.len = r.fam == 4 ? 8 + (unsigned)(rnd() % 25) : 16 + (unsigned)(rnd() % 113);
		rdm_lpm_mask(r.fam, a, r.len, r.a);
		for (int k = 0; k < n; k++)
			if (refs[k].fam == r.fam && refs[k].len == r.len &&
			    !memcmp(refs[k].a, r.a, 16))
				dup = k;
		rc = rdm_lpm_insert(t, r.fam, a, r.len, r.v, &old);
		if (dup >= 0) {
			cr_assert_eq(rc, -EEXIST);
			cr_assert_eq(old, refs[dup].v);
			dups++;
		} else {
			cr_assert_eq(rc, 0);
			refs[n++] = r;
		}
	}
	cr_assert_eq(rdm_lpm_count(t), (size_t)n);
	for (int i = 0; i < NLOOK; i++) {
		int fam = rnd() % 2 ? 4 : 6, best = -1, rc;
		uint8_t a[16];
		uint32_t v = UINT32_MAX;

		if (i % 4) {
			rnd_addr(fam, a);
		} else { /* anywhere at all: mostly misses */
			uint64_t x = rnd(), y = rnd();

			memset(a, 0, 16);
			memcpy(a, &x, 8);
			if (fam == 6)
				memcpy(a + 8, &y, 8);
			else
				memset(a + 4, 0, 4);
		}
		for (int k = 0; k < n; k++)
			if (covers(&refs[k], fam, a) && (best < 0 || refs[k].len > refs[best].len))
				best = k;
		rc = rdm_lpm_lookup(t, fam, a, &v);
		if (best < 0) {
			cr_assert_eq(rc, -ENOENT, "lookup %d: matched /%d, reference none", i, rc);
		} else {
			cr_assert_eq(rc, (int)refs[best].len, "lookup %d: /%d, reference /%u", i,
				     rc, refs[best].len);
			cr_assert_eq(v, refs[best].v, "lookup %d: value %u, reference %u", i, v,
				     refs[best].v);
			hits++;
		}
	}
	/* The draw must exercise both outcomes and the duplicate path, or it proves little. */
	cr_assert_gt(hits, NLOOK / 10, "only %d hits", hits);
	cr_assert_lt(hits, NLOOK, "no misses");
	cr_assert_gt(dups, 0);
	free(refs);
}

/* Every prefix inserted is found at its own address (the table grows many times). */
Test(lpm, many_host_routes, .timeout = 30)
{
	for (uint32_t i = 0; i < 100000; i++) {
		uint8_t a[16] = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};

		cr_assert_eq(rdm_lpm_insert(t, 4, a, 32, i, NULL), 0);
	}
	for (uint32_t i = 0; i < 100000; i++) {
		uint8_t a[16] = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
		uint32_t v;

		cr_assert_eq(rdm_lpm_lookup(t, 4, a, &v), 32);
		cr_assert_eq(v, i);
	}
	cr_assert_eq(rdm_lpm_count(t), 100000);
}
