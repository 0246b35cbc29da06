/* The YAML DOM (lib/yaml.c): parsing with marks, the strict rejections, the typed
 * getters and the error messages. Data files live in tests/data/config (tests/lib/data.h);
 * the tests run from the repository root. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/yaml.h"
#include "tests/lib/data.h"

static char err[512];

static struct rdm_ydoc *parse(const char *text)
{
	err[0] = '\0';
	struct rdm_ydoc *d = rdm_ydoc_parse_string("t.yaml", text, err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	return d;
}

static void expect_parse_error(const char *text, const char *want)
{
	err[0] = '\0';
	errno = 0;
	struct rdm_ydoc *d = rdm_ydoc_parse_string("t.yaml", text, err, sizeof(err));
	if (d)
		rdm_ydoc_free(d);
	cr_assert_null(d, "parsed, expected '%s'", want);
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, want);
}

Test(yaml, builds_nodes_with_marks)
{
	struct rdm_ydoc *d = parse("# comment\n"
				   "a: 1\n"
				   "b:\n"
				   "  - x\n"
				   "  - {k: 'v', n: [1, 2]}\n"
				   "c: \"quoted\"\n");
	const struct rdm_ynode *r = rdm_ydoc_root(d);
	cr_assert_str_eq(rdm_ydoc_name(d), "t.yaml");
	cr_assert_eq(rdm_ynode_kind(r), RDM_YMAP);
	cr_assert_eq(rdm_ymap_size(r), 3);
	cr_assert_eq(rdm_ynode_line(r), 2);
	cr_assert_eq(rdm_ynode_col(r), 1);

	const struct rdm_ynode *k0 = rdm_ymap_key(r, 0), *v0 = rdm_ymap_value(r, 0);
	cr_assert_str_eq(rdm_ynode_scalar(k0), "a");
	cr_assert_eq(rdm_ynode_line(k0), 2);
	cr_assert_eq(rdm_ynode_col(k0), 1);
	cr_assert_str_eq(rdm_ynode_scalar(v0), "1");
	cr_assert_eq(rdm_ynode_col(v0), 4);
	cr_assert_str_eq(rdm_ynode_scalar(rdm_ymap_key(r, 2)), "c");

	const struct rdm_ynode *b = rdm_ymap_get(r, "b");
	cr_assert_eq(rdm_ynode_kind(b), RDM_YSEQ);
	cr_assert_eq(rdm_yseq_size(b), 2);
	cr_assert_eq(rdm_ynode_line(b), 4);
	cr_assert_eq(rdm_ynode_col(b), 3);
	cr_assert_str_eq(rdm_ynode_scalar(rdm_yseq_item(b, 0)), "x");
	cr_assert_eq(rdm_ynode_col(rdm_yseq_item(b, 0)), 5);

	const struct rdm_ynode *m = rdm_yseq_item(b, 1);
	cr_assert_eq(rdm_ynode_kind(m), RDM_YMAP);
	cr_assert_eq(rdm_ynode_line(m), 5);
	cr_assert_eq(rdm_ynode_col(m), 5);
	cr_assert_str_eq(rdm_ynode_scalar(rdm_ymap_get(m, "k")), "v");
	cr_assert_eq(rdm_ynode_col(rdm_ymap_get(m, "k")), 9);
	const struct rdm_ynode *n = rdm_ymap_get(m, "n");
	cr_assert_eq(rdm_yseq_size(n), 2);
	cr_assert_eq(rdm_ynode_col(rdm_yseq_item(n, 1)), 21);

	cr_assert_str_eq(rdm_ynode_scalar(rdm_ymap_get(r, "c")), "quoted");
	rdm_ydoc_free(d);
}

Test(yaml, accessors_handle_wrong_kinds_and_ranges)
{
	struct rdm_ydoc *d = parse("a: [1]\nb: s\n");
	const struct rdm_ynode *r = rdm_ydoc_root(d), *a = rdm_ymap_get(r, "a");
	const struct rdm_ynode *b = rdm_ymap_get(r, "b");
	cr_assert_null(rdm_ymap_get(r, "zz"));
	cr_assert_null(rdm_ymap_get(a, "a"));
	cr_assert_null(rdm_ymap_get(NULL, "a"));
	cr_assert_null(rdm_ymap_key(r, 2));
	cr_assert_null(rdm_ymap_value(r, 2));
	cr_assert_null(rdm_yseq_item(a, 1));
	cr_assert_eq(rdm_yseq_size(r), 0);
	cr_assert_eq(rdm_ymap_size(a), 0);
	cr_assert_eq(rdm_yseq_size(b), 0);
	cr_assert_null(rdm_ynode_scalar(a));
	cr_assert_str_eq(rdm_ykind_name(RDM_YSEQ), "sequence");
	rdm_ydoc_free(d);
}

Test(yaml, empty_document_has_no_root)
{
	struct rdm_ydoc *d = parse("# only a comment\n");
	cr_assert_null(rdm_ydoc_root(d));
	rdm_ydoc_free(d);
	rdm_ydoc_free(NULL);
}

Test(yaml, tells_null_from_quoted_empty)
{
	struct rdm_ydoc *d = parse("a:\nb: ~\nc: null\nd: ''\ne: \"null\"\nf: x\n");
	const struct rdm_ynode *r = rdm_ydoc_root(d);
	const char *s = NULL;
	cr_assert(rdm_ynode_is_null(rdm_ymap_get(r, "a")));
	cr_assert(rdm_ynode_is_null(rdm_ymap_get(r, "b")));
	cr_assert(rdm_ynode_is_null(rdm_ymap_get(r, "c")));
	cr_assert(!rdm_ynode_is_null(rdm_ymap_get(r, "d")));
	cr_assert(!rdm_ynode_is_null(rdm_ymap_get(r, "e")));
	cr_assert(!rdm_ynode_is_null(rdm_ymap_get(r, "f")));
	cr_assert(!rdm_ynode_is_null(r));

	cr_assert_eq(rdm_yget_str(d, rdm_ymap_get(r, "d"), &s, err, sizeof(err)), 0);
	cr_assert_str_eq(s, "");
	cr_assert_eq(rdm_yget_str(d, rdm_ymap_get(r, "e"), &s, err, sizeof(err)), 0);
	cr_assert_str_eq(s, "null");
	cr_assert_eq(rdm_yget_str(d, rdm_ymap_get(r, "b"), &s, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:2:4: expected a string, got null");
	cr_assert_eq(rdm_yget_str(d, r, &s, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:1:1: expected a string, got a mapping");
	rdm_ydoc_free(d);
}

Test(yaml, rejects_nul_in_strings)
{
	struct rdm_ydoc *d = parse("a: \"x\\0y\"\n");
	const char *s = NULL;
	cr_assert_eq(rdm_yget_str(d, rdm_ymap_get(rdm_ydoc_root(d), "a"), &s, err, sizeof(err)),
		     -EINVAL);
	cr_assert_str_eq(err, "t.yaml:1:4: string contains a NUL byte");
	rdm_ydoc_free(d);
}

Test(yaml, reports_syntax_errors_at_their_mark)
{
	expect_parse_error("a: [1, 2\n", "t.yaml:2:1: did not find expected ',' or ']' (while "
					 "parsing a flow sequence at line 1 column 4)");
	expect_parse_error("a: 1\n b: 2\n",
			   "t.yaml:2:3: mapping values are not allowed in this context");
	expect_parse_error("a: \"open\n",
			   "t.yaml:2:1: found unexpected end of stream (while scanning a quoted "
			   "scalar at line 1 column 4)");
}

Test(yaml, rejects_aliases_anchors_and_tags)
{
	expect_parse_error("a: &x 1\nb: 2\n", "t.yaml:1:4: anchors are not supported ('&x')");
	expect_parse_error("a: 1\nb: *x\n", "t.yaml:2:4: aliases are not supported ('*x')");
	expect_parse_error("a: !!str 1\n",
			   "t.yaml:1:4: tags are not supported ('tag:yaml.org,2002:str')");
	expect_parse_error("a: &m {b: 1}\n", "t.yaml:1:4: anchors are not supported ('&m')");
}

Test(yaml, rejects_duplicate_keys_at_the_second)
{
	expect_parse_error("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n",
			   "t.yaml:5:3: duplicate key 'c' (first at line 3)");
	expect_parse_error("{x: 1, x: 2}\n", "t.yaml:1:8: duplicate key 'x' (first at line 1)");
	/* Several repeats: the one that comes first in the file is named. */
	expect_parse_error("b: 1\na: 1\na: 2\nb: 2\nb: 3\n",
			   "t.yaml:3:1: duplicate key 'a' (first at line 2)");
}

/* 100,000 keys (a hostile `ctl apply`): checked by sorting, not key against key. The
 * timeout only bounds a regression to the quadratic check, which took tens of seconds. */
Test(yaml, a_hundred_thousand_keys_checked_quickly, .timeout = 20)
{
	size_t cap = 100000 * 16 + 64, len = 0;
	char *text = malloc(cap);
	struct rdm_ydoc *d;

	cr_assert_not_null(text);
	for (int i = 0; i < 100000; i++)
		len += (size_t)snprintf(text + len, cap - len, "k%d: %d\n", i, i);
	text[len] = '\0';
	d = parse(text);
	cr_assert_eq(rdm_ymap_size(rdm_ydoc_root(d)), 100000);
	rdm_ydoc_free(d);
	snprintf(text + len, cap - len, "k5: again\n");
	expect_parse_error(text, "t.yaml:100001:1: duplicate key 'k5' (first at line 6)");
	free(text);
}

Test(yaml, rejects_complex_keys_and_extra_documents)
{
	expect_parse_error("? [a, b]\n: 1\n", "t.yaml:1:3: mapping keys must be scalars");
	expect_parse_error("a: 1\n---\nb: 2\n", "t.yaml:2:1: only one YAML document is allowed");
}

Test(yaml, limits_nesting_depth)
{
	char text[2 * (RDM_YMAX_DEPTH + 2) + 2];
	size_t n = 0;
	for (int i = 0; i < RDM_YMAX_DEPTH + 1; i++)
		text[n++] = '[';
	for (int i = 0; i < RDM_YMAX_DEPTH + 1; i++)
		text[n++] = ']';
	text[n++] = '\n';
	text[n] = '\0';
	expect_parse_error(text, "t.yaml:1:65: nesting is deeper than 64 levels");

	text[RDM_YMAX_DEPTH] = ' ';
	text[RDM_YMAX_DEPTH + 1] = ' ';
	struct rdm_ydoc *d = parse(text);
	rdm_ydoc_free(d);
}

Test(yaml, load_reports_unreadable_file)
{
	errno = 0;
	struct rdm_ydoc *d = rdm_ydoc_load("/nonexistent/x.yaml", err, sizeof(err));
	cr_assert_null(d);
	cr_assert_eq(errno, ENOENT);
	cr_assert_str_eq(err, "/nonexistent/x.yaml: No such file or directory");
}

Test(yaml, load_reads_a_file)
{
	struct rdm_ydoc *d = rdm_ydoc_load(data("valid.yaml"), err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	const struct rdm_ynode *chain = rdm_ymap_get(rdm_ydoc_root(d), "chain");
	cr_assert_eq(rdm_ynode_line(chain), 3);
	cr_assert_str_eq(rdm_ydoc_name(d), data("valid.yaml"));
	rdm_ydoc_free(d);
}

Test(yaml, get_u64_accepts_decimal_only)
{
	struct rdm_ydoc *d = parse("- 0\n- 42\n- 18446744073709551615\n- 18446744073709551616\n"
				   "- 12abc\n- -1\n- +1\n- ''\n- 0x10\n- '7'\n- [1]\n- 1 2\n");
	const struct rdm_ynode *r = rdm_ydoc_root(d);
	uint64_t v = 99;

	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 0), 0, 10, &v, err, sizeof(err)), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 1), 0, 100, &v, err, sizeof(err)), 0);
	cr_assert_eq(v, 42);
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 2), 0, UINT64_MAX, &v, err, sizeof(err)), 0);
	cr_assert_eq(v, UINT64_MAX);
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 9), 0, 10, &v, err, sizeof(err)), 0);
	cr_assert_eq(v, 7);

	v = 99;
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 1), 50, 100, &v, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:2:3: 42 is out of range (50..100)");
	cr_assert_eq(v, 99, "out is untouched on error");
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 3), 0, UINT64_MAX, &v, err, sizeof(err)),
		     -EINVAL);
	cr_assert_str_eq(
	    err, "t.yaml:4:3: 18446744073709551616 is out of range (0..18446744073709551615)");
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 4), 0, 100, &v, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:5:3: expected a non-negative integer, got '12abc'");
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 5), 0, 100, &v, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:6:3: expected a non-negative integer, got '-1'");
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 6), 0, 100, &v, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 7), 0, 100, &v, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:8:3: expected an integer, got ''");
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 8), 0, 100, &v, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 10), 0, 100, &v, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:11:3: expected an integer, got a sequence");
	cr_assert_eq(rdm_yget_u64(d, rdm_yseq_item(r, 11), 0, 100, &v, err, sizeof(err)), -EINVAL);
	cr_assert_eq(v, 99);
	rdm_ydoc_free(d);
}

Test(yaml, get_double_accepts_non_negative_numbers)
{
	static const char *const good[] = {"0", "1.5", ".5", "1e3", "2.5E-1", "10"};
	static const double want[] = {0, 1.5, 0.5, 1000, 0.25, 10};
	static const char *const bad[] = {"-1",	  "+1",	 "inf", "nan", "0x10", "1e999",
					  "1.5x", "1-2", "",	"e5",  " 1"};
	char text[64];
	double v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "v: '%s'\n", good[i]);
		struct rdm_ydoc *d = parse(text);
		const struct rdm_ynode *n = rdm_ymap_get(rdm_ydoc_root(d), "v");
		cr_assert_eq(rdm_yget_double(d, n, 0, 1e9, &v, err, sizeof(err)), 0, "%s", err);
		cr_assert_float_eq(v, want[i], 1e-12, "'%s'", good[i]);
		rdm_ydoc_free(d);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "v: '%s'\n", bad[i]);
		struct rdm_ydoc *d = parse(text);
		const struct rdm_ynode *n = rdm_ymap_get(rdm_ydoc_root(d), "v");
		cr_assert_eq(rdm_yget_double(d, n, 0, 1e300, &v, err, sizeof(err)), -EINVAL,
			     "accepted '%s'", bad[i]);
		cr_assert_not_null(strstr(err, "t.yaml:1:4: "), "%s", err);
		rdm_ydoc_free(d);
	}

	struct rdm_ydoc *d = parse("v: 5\n");
	const struct rdm_ynode *n = rdm_ymap_get(rdm_ydoc_root(d), "v");
	cr_assert_eq(rdm_yget_double(d, n, 0, 4, &v, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:1:4: 5 is out of range (0..4)");
	rdm_ydoc_free(d);
}

Test(yaml, get_bool)
{
	struct rdm_ydoc *d = parse("[true, False, yes, NO, 1, maybe]\n");
	const struct rdm_ynode *r = rdm_ydoc_root(d);
	int v = -1;
	cr_assert_eq(rdm_yget_bool(d, rdm_yseq_item(r, 0), &v, err, sizeof(err)), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(rdm_yget_bool(d, rdm_yseq_item(r, 1), &v, err, sizeof(err)), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(rdm_yget_bool(d, rdm_yseq_item(r, 2), &v, err, sizeof(err)), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(rdm_yget_bool(d, rdm_yseq_item(r, 3), &v, err, sizeof(err)), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(rdm_yget_bool(d, rdm_yseq_item(r, 4), &v, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rdm_yget_bool(d, rdm_yseq_item(r, 5), &v, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:1:27: expected true or false, got 'maybe'");
	cr_assert_eq(v, 0);
	rdm_ydoc_free(d);
}

Test(yaml, map_getters_use_defaults_and_name_the_key)
{
	struct rdm_ydoc *d = parse("n: 70\nf: 0.5\nb: no\ns: hi\n");
	const struct rdm_ynode *r = rdm_ydoc_root(d);
	uint64_t u;
	double f;
	int b;
	const char *s;

	cr_assert_eq(rdm_ymap_u64(d, r, "missing", 0, 10, 7, &u, err, sizeof(err)), 0);
	cr_assert_eq(u, 7);
	cr_assert_eq(rdm_ymap_u64(d, NULL, "n", 0, 10, 3, &u, err, sizeof(err)), 0);
	cr_assert_eq(u, 3);
	cr_assert_eq(rdm_ymap_u64(d, r, "n", 0, 10, 7, &u, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:1:4: n: 70 is out of range (0..10)");
	cr_assert_eq(rdm_ymap_double(d, r, "f", 0, 1, 0, &f, err, sizeof(err)), 0);
	cr_assert_float_eq(f, 0.5, 1e-12);
	cr_assert_eq(rdm_ymap_double(d, r, "g", 0, 1, 0.25, &f, err, sizeof(err)), 0);
	cr_assert_float_eq(f, 0.25, 1e-12);
	cr_assert_eq(rdm_ymap_bool(d, r, "b", 1, &b, err, sizeof(err)), 0);
	cr_assert_eq(b, 0);
	cr_assert_eq(rdm_ymap_bool(d, r, "c", 1, &b, err, sizeof(err)), 0);
	cr_assert_eq(b, 1);
	cr_assert_eq(rdm_ymap_bool(d, r, "s", 1, &b, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:4:4: s: expected true or false, got 'hi'");
	cr_assert_eq(rdm_ymap_str(d, r, "s", NULL, &s, err, sizeof(err)), 0);
	cr_assert_str_eq(s, "hi");
	cr_assert_eq(rdm_ymap_str(d, r, "t", "dflt", &s, err, sizeof(err)), 0);
	cr_assert_str_eq(s, "dflt");
	rdm_ydoc_free(d);
}

Test(yaml, check_keys_suggests_the_closest)
{
	static const char *const allowed[] = {"replicas", "name", "image", NULL};
	struct rdm_ydoc *d = parse("name: x\n  # c\nreplcas: 3\n");
	cr_assert_eq(rdm_ymap_check_keys(d, rdm_ydoc_root(d), allowed, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:3:1: unknown key 'replcas' (did you mean 'replicas'?)");
	rdm_ydoc_free(d);

	d = parse("nmae: x\n");
	cr_assert_eq(rdm_ymap_check_keys(d, rdm_ydoc_root(d), allowed, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:1:1: unknown key 'nmae' (did you mean 'name'?)");
	rdm_ydoc_free(d);

	d = parse("{name: x, colour: 1}\n");
	cr_assert_eq(rdm_ymap_check_keys(d, rdm_ydoc_root(d), allowed, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:1:11: unknown key 'colour'");
	rdm_ydoc_free(d);

	d = parse("name: x\nimage: y\n");
	cr_assert_eq(rdm_ymap_check_keys(d, rdm_ydoc_root(d), allowed, err, sizeof(err)), 0);
	rdm_ydoc_free(d);
}

Test(yaml, edit_distance_and_closest)
{
	static const char *const c[] = {"host1", "host2", "host3"};
	cr_assert_eq(rdm_yedit_distance("", ""), 0);
	cr_assert_eq(rdm_yedit_distance("abc", ""), 3);
	cr_assert_eq(rdm_yedit_distance("", "ab"), 2);
	cr_assert_eq(rdm_yedit_distance("replcas", "replicas"), 1);
	cr_assert_eq(rdm_yedit_distance("hots3", "host3"), 1);
	cr_assert_eq(rdm_yedit_distance("kitten", "sitting"), 3);
	cr_assert_str_eq(rdm_yclosest("hots3", c, 3, 2), "host3");
	cr_assert_str_eq(rdm_yclosest("hostX", c, 3, 2), "host1", "first of equals wins");
	cr_assert_null(rdm_yclosest("db", c, 3, 2));
	cr_assert_null(rdm_yclosest("x", (const char *const[]){"ab"}, 1, 2));
}

Test(yaml, yerr_formats_one_line)
{
	struct rdm_ydoc *d = parse("a: 1\n");
	const struct rdm_ynode *v = rdm_ymap_get(rdm_ydoc_root(d), "a");
	char small[12];

	cr_assert_eq(rdm_yerr(d, v, err, sizeof(err), "bad %s\nvalue\t%d", "x", 3), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:1:4: bad x?value?3");
	cr_assert_eq(rdm_yerr(d, NULL, err, sizeof(err), "whole file"), -EINVAL);
	cr_assert_str_eq(err, "t.yaml: whole file");
	cr_assert_eq(rdm_yerr(d, v, small, sizeof(small), "a long message"), -EINVAL);
	cr_assert_str_eq(small, "t.yaml:1:4:");
	cr_assert_eq(rdm_yerr(d, v, NULL, 0, "nowhere"), -EINVAL);
	rdm_ydoc_free(d);
}

/* A FIFO would block the reader until someone writes to it (an orchestrator's loop, for
 * `ctl apply`): refused at once, as is a directory. */
Test(yaml, a_fifo_or_a_directory_is_refused_at_once)
{
	char dir[] = "/tmp/rdm-yfifo.XXXXXX", fifo[64];

	cr_assert_not_null(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/chain.yaml", dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	cr_assert_null(rdm_ydoc_load(fifo, err, sizeof(err)));
	cr_assert(strstr(err, "not a regular file"), "%s", err);
	cr_assert_null(rdm_ydoc_load(dir, err, sizeof(err)));
	cr_assert(strstr(err, "Is a directory"), "%s", err);
	unlink(fifo);
	rmdir(dir);
}

/* A document's cost is bounded: past RDM_YMAX_NODES values, keys and lists it is refused
 * with the position where it went over, however small each value is. */
Test(yaml, node_count_bounded)
{
	size_t n = RDM_YMAX_NODES + 1, len = 2 * n + 8;
	char *text = malloc(len);
	struct rdm_ydoc *d;
	size_t at = 0;

	cr_assert_not_null(text);
	text[at++] = '[';
	for (size_t i = 0; i < n; i++) {
		text[at++] = '1';
		text[at++] = i + 1 < n ? ',' : ']';
	}
	text[at] = 0;
	d = rdm_ydoc_parse_string("big.yaml", text, err, sizeof(err));
	cr_assert_null(d);
	cr_assert(strstr(err, "big.yaml:1:2000002: more than 1000000 values, keys and lists"), "%s",
		  err);
	/* The same with one value fewer (the list itself is the root): taken. */
	text[at - 3] = ']';
	text[at - 2] = 0;
	d = rdm_ydoc_parse_string("ok.yaml", text, err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	cr_assert_eq(rdm_yseq_size(rdm_ydoc_root(d)), RDM_YMAX_NODES);
	rdm_ydoc_free(d);
	free(text);
}
