/* The identity stage (services/identity.c): directory files written to a temporary
 * directory, loaded through the stage's ops as the node does, and frames run through
 * process(). */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/yaml.h"
#include "services/stage.h"

static const struct rdm_stage_ops *ops;
static char dir[64];	 /* the test's temporary directory */
static char dirfile[96]; /* dir/directory.yaml */
static char err[1024];

static void setup(void)
{
	ops = rdm_stage_find("identity");
	cr_assert_not_null(ops);
	strcpy(dir, "/tmp/rdm-test-identity-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(dirfile, sizeof(dirfile), "%s/directory.yaml", dir);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(identity, .init = setup, .fini = teardown);

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fputs(text, f) >= 0, 1);
	cr_assert_eq(fclose(f), 0);
}

/* The stage's conf from the chain's stage mapping (YAML text), or NULL with err set. */
static void *conf_from(const char *stage_yaml)
{
	struct rdm_ydoc *d = rdm_ydoc_parse_string("chain.yaml", stage_yaml, err, sizeof(err));
	void *c;

	cr_assert_not_null(d, "chain text: %s", err);
	err[0] = '\0';
	c = ops->conf_new(d, rdm_ydoc_root(d), err, sizeof(err));
	rdm_ydoc_free(d); /* the conf must not keep pointers into the chain document */
	return c;
}

/* Writes text as the directory file and loads it with the given lookup mode (NULL for
 * the default). */
static void *load_dir(const char *text, const char *lookup)
{
	char y[512];

	write_file(dirfile, text);
	if (lookup)
		snprintf(y, sizeof(y), "name: identity\ndirectory: %s\nlookup: %s\n", dirfile,
			 lookup);
	else
		snprintf(y, sizeof(y), "name: identity\ndirectory: %s\n", dirfile);
	return conf_from(y);
}

/* Loads a directory that must fail; returns the message after the file's path
 * (":LINE:COL: message"). */
static const char *load_dir_fail(const char *text)
{
	void *c = load_dir(text, NULL);
	size_t n = strlen(dirfile);

	cr_assert_null(c, "loaded: %s", text);
	cr_assert_eq(strncmp(err, dirfile, n), 0, "'%s' does not start with the file", err);
	return err + n;
}

static void expect_dir_error(const char *text, const char *want)
{
	const char *msg = load_dir_fail(text);

	cr_assert_str_eq(msg, want, "got  '%s'\nwant '%s'\nfor:\n%s", msg, want, text);
}

static struct rdm_frame *frame(struct rdm_frame *f, const char *src, const char *dst)
{
	int fam = strchr(src, ':') ? AF_INET6 : AF_INET;

	rdm_frame_init(f, 1, 255, fam == AF_INET ? RDM_NSH_NP_IPV4 : RDM_NSH_NP_IPV6);
	f->key.family = fam == AF_INET ? 4 : 6;
	f->key.proto = 6;
	f->key.sport = 40000;
	f->key.dport = 443;
	cr_assert_eq(inet_pton(fam, src, f->key.src), 1);
	cr_assert_eq(inet_pton(fam, dst, f->key.dst), 1);
	f->present |= RDM_F_FLOW_KEY;
	return f;
}

/* Runs one frame through process(); returns its verdict. */
static int run1(void *rt, struct rdm_frame *f)
{
	struct rdm_frame *fs[1] = {f};
	int v = -99;

	ops->process(rt, fs, 1, &v);
	return v;
}

static int str_is(struct rdm_str s, const char *want)
{
	return s.p && s.len == strlen(want) && !memcmp(s.p, want, s.len);
}

/* Checks the identity fields of f against tenant, user and a comma-separated group list
 * (NULL: the field must be absent). */
static void expect_id(const struct rdm_frame *f, const char *tenant, const char *user,
		      const char *groups)
{
	if (tenant) {
		cr_assert(f->present & RDM_F_TENANT, "no tenant, want %s", tenant);
		cr_assert(str_is(f->tenant, tenant), "tenant '%.*s', want %s", f->tenant.len,
			  f->tenant.p ? f->tenant.p : "", tenant);
	} else {
		cr_assert_not(f->present & RDM_F_TENANT, "tenant '%.*s' present", f->tenant.len,
			      f->tenant.p);
	}
	if (user) {
		cr_assert(f->present & RDM_F_USER, "no user, want %s", user);
		cr_assert(str_is(f->user, user), "user '%.*s', want %s", f->user.len,
			  f->user.p ? f->user.p : "", user);
	} else {
		cr_assert_not(f->present & RDM_F_USER, "user present");
	}
	if (groups) {
		char buf[256], *save, *g;
		int i = 0;

		cr_assert(f->present & RDM_F_GROUPS, "no groups, want %s", groups);
		snprintf(buf, sizeof(buf), "%s", groups);
		for (g = strtok_r(buf, ",", &save); g; g = strtok_r(NULL, ",", &save), i++) {
			cr_assert_lt(i, f->n_groups, "only %d groups, want %s", f->n_groups,
				     groups);
			cr_assert(str_is(f->groups[i], g), "group %d is '%.*s', want %s", i,
				  f->groups[i].len, f->groups[i].p, g);
		}
		cr_assert_eq(i, f->n_groups, "%d groups, want %s", f->n_groups, groups);
	} else {
		cr_assert_not(f->present & RDM_F_GROUPS, "groups present");
	}
}

static int unknown(const struct rdm_frame *f)
{
	return (f->present & RDM_F_FLAGS) && (f->flags & RDM_FF_ID_UNKNOWN);
}

/* Counters from report(). */
struct counters {
	uint64_t frames, matched_src, matched_dst, unknown, no_key, entries, prefixes, reloads,
	    cache_hits;
	int seen;
};

static void emit(void *arg, const char *name, uint64_t v)
{
	struct counters *c = arg;
	static const struct {
		const char *name;
		size_t off;
	} map[] = {
	    {"frames", offsetof(struct counters, frames)},
	    {"matched_src", offsetof(struct counters, matched_src)},
	    {"matched_dst", offsetof(struct counters, matched_dst)},
	    {"unknown", offsetof(struct counters, unknown)},
	    {"no_key", offsetof(struct counters, no_key)},
	    {"directory_entries", offsetof(struct counters, entries)},
	    {"directory_prefixes", offsetof(struct counters, prefixes)},
	    {"reloads", offsetof(struct counters, reloads)},
	    {"cache_hits", offsetof(struct counters, cache_hits)},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(name, map[i].name)) {
			*(uint64_t *)((char *)c + map[i].off) = v;
			c->seen |= 1 << i;
			return;
		}
	cr_assert_fail("unexpected counter %s", name);
}

static struct counters report(void *rt)
{
	struct counters c = {0};

	ops->report(rt, emit, &c);
	cr_assert_eq(c.seen, 0x1ff, "not every counter reported (%#x)", c.seen);
	return c;
}

static const struct rdm_stage_env env = {.node_id = 1, .node_name = "n1", .worker = 0};

static const char *const basic = "entries:\n"
				 "  - match: 10.1.0.0/16\n"
				 "    tenant: acme\n"
				 "    user: alice\n"
				 "    groups: [eng, emea]\n"
				 "  - match: [10.2.0.0/16, '2001:db8:1::/64']\n"
				 "    tenant: globex\n";

Test(identity, matches_by_source_address)
{
	void *c = load_dir(basic, NULL), *rt;
	struct rdm_frame f;

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	cr_assert_not_null(rt);
	cr_assert_eq(run1(rt, frame(&f, "10.1.2.3", "93.184.216.34")), RDM_STAGE_PASS);
	expect_id(&f, "acme", "alice", "eng,emea");
	cr_assert_not(unknown(&f));
	cr_assert_eq(run1(rt, frame(&f, "2001:db8:1::77", "2001:db8:9::1")), RDM_STAGE_PASS);
	expect_id(&f, "globex", NULL, NULL);
	struct counters k = report(rt);
	cr_assert_eq(k.frames, 2);
	cr_assert_eq(k.matched_src, 2);
	cr_assert_eq(k.matched_dst + k.unknown + k.no_key + k.reloads, 0);
	cr_assert_eq(k.entries, 2);
	cr_assert_eq(k.prefixes, 3);
	ops->deinit(rt);
	ops->conf_free(c);
}

/* A worker remembers the directory's answers by address: the same addresses again are
 * answered alike without a look-up, the answer "nobody" too, and addresses that share a
 * place in the cache (more than it holds) each still get their own answer. */
Test(identity, later_packets_get_the_remembered_answer)
{
	void *c = load_dir(basic, NULL), *rt;
	struct rdm_frame f;
	char src[32];

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	for (int round = 0; round < 3; round++) {
		run1(rt, frame(&f, "10.1.2.3", "93.184.216.34"));
		expect_id(&f, "acme", "alice", "eng,emea");
		run1(rt, frame(&f, "93.184.216.34", "10.1.2.3")); /* the reply: by destination */
		expect_id(&f, "acme", "alice", "eng,emea");
		run1(rt, frame(&f, "192.0.2.1", "198.51.100.1"));
		cr_assert(unknown(&f));
	}
	struct counters k = report(rt);
	cr_assert_eq(k.frames, 9);
	cr_assert_eq(k.matched_src, 3);
	cr_assert_eq(k.matched_dst, 3);
	cr_assert_eq(k.unknown, 3);
	/* Four addresses, five questions a round: the first round asks the directory four
	 * times (the reply's destination is remembered from the first frame's source), the
	 * later rounds not at all. */
	cr_assert_eq(k.cache_hits, 1 + 5 + 5);
	/* 3000 addresses through a cache of 1024: each its own answer, round after round. */
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 3000; i++) {
			snprintf(src, sizeof(src), "10.%d.%d.%d", 1 + i % 2, i / 256 % 256,
				 i % 256);
			run1(rt, frame(&f, src, "192.0.2.1"));
			if (i % 2 == 0)
				expect_id(&f, "acme", "alice", "eng,emea");
			else
				expect_id(&f, "globex", NULL, NULL);
		}
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, return_traffic_matches_by_destination)
{
	void *c = load_dir(basic, NULL), *rt;
	struct rdm_frame f;

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	cr_assert_eq(run1(rt, frame(&f, "93.184.216.34", "10.2.0.9")), RDM_STAGE_PASS);
	expect_id(&f, "globex", NULL, NULL);
	cr_assert_not(unknown(&f));
	struct counters k = report(rt);
	cr_assert_eq(k.matched_dst, 1);
	cr_assert_eq(k.matched_src, 0);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, source_wins_over_destination)
{
	void *c = load_dir(basic, NULL), *rt;
	struct rdm_frame f;

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	run1(rt, frame(&f, "10.2.0.9", "10.1.0.1"));
	expect_id(&f, "globex", NULL, NULL);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, lookup_src_ignores_the_destination)
{
	void *c = load_dir(basic, "src"), *rt;
	struct rdm_frame f;

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	run1(rt, frame(&f, "93.184.216.34", "10.2.0.9"));
	expect_id(&f, NULL, NULL, NULL);
	cr_assert(unknown(&f));
	run1(rt, frame(&f, "10.2.0.9", "93.184.216.34"));
	expect_id(&f, "globex", NULL, NULL);
	struct counters k = report(rt);
	cr_assert_eq(k.unknown, 1);
	cr_assert_eq(k.matched_src, 1);
	cr_assert_eq(k.matched_dst, 0);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, unknown_is_flagged_and_loses_upstream_identity)
{
	void *c = load_dir(basic, NULL), *rt;
	struct rdm_frame f;

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	frame(&f, "192.0.2.1", "198.51.100.1");
	f.tenant = (struct rdm_str){"spoofed", 7};
	f.user = (struct rdm_str){"mallory", 7};
	f.groups[0] = (struct rdm_str){"admins", 6};
	f.n_groups = 1;
	f.flags = RDM_FF_DPI_DONE;
	f.present |= RDM_F_TENANT | RDM_F_USER | RDM_F_GROUPS | RDM_F_FLAGS;
	cr_assert_eq(run1(rt, &f), RDM_STAGE_PASS);
	expect_id(&f, NULL, NULL, NULL);
	cr_assert_eq(f.n_groups, 0);
	cr_assert_eq(f.flags, RDM_FF_DPI_DONE | RDM_FF_ID_UNKNOWN, "other flag bits kept");
	cr_assert(f.present & RDM_F_FLOW_KEY);

	/* Without a FLAGS field before, the stage adds one holding just the bit. */
	frame(&f, "192.0.2.1", "198.51.100.1");
	f.flags = 0xffff0000; /* garbage in a field that is not present */
	run1(rt, &f);
	cr_assert_eq(f.flags, RDM_FF_ID_UNKNOWN);
	cr_assert_eq(report(rt).unknown, 2);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, a_match_overwrites_upstream_and_keeps_fields_the_entry_lacks)
{
	void *c = load_dir("entries:\n"
			   "  - match: 10.9.0.0/16\n"
			   "    user: bob\n",
			   NULL),
	     *rt;
	struct rdm_frame f;

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	frame(&f, "10.9.1.1", "198.51.100.1");
	f.tenant = (struct rdm_str){"site-tag", 8};
	f.user = (struct rdm_str){"someone", 7};
	f.flags = RDM_FF_ID_UNKNOWN | RDM_FF_DPI_DONE; /* an earlier identity stage missed */
	f.present |= RDM_F_TENANT | RDM_F_USER | RDM_F_FLAGS;
	run1(rt, &f);
	expect_id(&f, "site-tag", "bob", NULL);
	cr_assert_eq(f.flags, RDM_FF_DPI_DONE);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, frames_without_a_flow_key_pass_untouched)
{
	void *c = load_dir(basic, NULL), *rt;
	struct rdm_frame f, before;

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	frame(&f, "10.1.2.3", "10.2.0.1");
	f.present &= ~(uint32_t)RDM_F_FLOW_KEY;
	f.tenant = (struct rdm_str){"kept", 4};
	f.present |= RDM_F_TENANT;
	before = f;
	cr_assert_eq(run1(rt, &f), RDM_STAGE_PASS);
	cr_assert_eq(memcmp(&f, &before, sizeof(f)), 0);
	struct counters k = report(rt);
	cr_assert_eq(k.no_key, 1);
	cr_assert_eq(k.frames, 1);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, a_batch_gets_one_verdict_each)
{
	void *c = load_dir(basic, NULL), *rt;
	struct rdm_frame f[4];
	struct rdm_frame *fs[4] = {&f[0], &f[1], &f[2], &f[3]};
	int v[4] = {-9, -9, -9, -9};

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	frame(&f[0], "10.1.0.1", "8.8.8.8");
	frame(&f[1], "8.8.8.8", "10.1.0.1");
	frame(&f[2], "8.8.8.8", "8.8.4.4");
	frame(&f[3], "8.8.8.8", "8.8.4.4");
	f[3].present = 0;
	ops->process(rt, fs, 4, v);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(v[i], RDM_STAGE_PASS);
	expect_id(&f[0], "acme", "alice", "eng,emea");
	expect_id(&f[1], "acme", "alice", "eng,emea");
	cr_assert(unknown(&f[2]));
	struct counters k = report(rt);
	cr_assert_eq(k.frames, 4);
	cr_assert_eq(k.matched_src, 1);
	cr_assert_eq(k.matched_dst, 1);
	cr_assert_eq(k.unknown, 1);
	cr_assert_eq(k.no_key, 1);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, overlapping_entries_the_longest_prefix_wins)
{
	void *c = load_dir("entries:\n"
			   "  - match: 0.0.0.0/0\n"
			   "    tenant: internet\n"
			   "  - match: 10.77.0.0/16\n"
			   "    tenant: acme\n"
			   "    groups: [staff]\n"
			   "  - match: 10.77.5.0/24\n"
			   "    tenant: acme\n"
			   "    groups: [eng]\n"
			   "  - match: 10.77.5.9\n"
			   "    tenant: acme\n"
			   "    user: carol\n"
			   "    groups: [eng, admins]\n"
			   "  - match: 'fd00:77::/64'\n"
			   "    tenant: acme-v6\n"
			   "  - match: 'fd00:77::1/128'\n"
			   "    user: dave\n",
			   NULL),
	     *rt;
	struct rdm_frame f;

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	run1(rt, frame(&f, "10.77.1.1", "10.77.5.9"));
	expect_id(&f, "acme", NULL, "staff");
	run1(rt, frame(&f, "10.77.5.1", "1.1.1.1"));
	expect_id(&f, "acme", NULL, "eng");
	run1(rt, frame(&f, "10.77.5.9", "1.1.1.1"));
	expect_id(&f, "acme", "carol", "eng,admins");
	/* The default route matches any IPv4 source, so the destination is never tried. */
	run1(rt, frame(&f, "1.1.1.1", "10.77.5.9"));
	expect_id(&f, "internet", NULL, NULL);
	run1(rt, frame(&f, "fd00:77::2", "2001:db8::1"));
	expect_id(&f, "acme-v6", NULL, NULL);
	run1(rt, frame(&f, "fd00:77::1", "2001:db8::1"));
	expect_id(&f, NULL, "dave", NULL);
	run1(rt, frame(&f, "2001:db8::1", "fd00:77:0:1::1"));
	cr_assert(unknown(&f));
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, an_empty_directory_knows_nobody)
{
	void *c = load_dir("entries: []\n", NULL), *rt;
	struct rdm_frame f;

	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	run1(rt, frame(&f, "10.1.2.3", "10.2.3.4"));
	cr_assert(unknown(&f));
	cr_assert_eq(report(rt).entries, 0);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, broken_directory_files_name_file_line_and_column)
{
	/* Not YAML at all: the parser's own position. */
	const char *msg = load_dir_fail("entries:\n  - match: [10.0.0.0/8\n    tenant: x\n");
	cr_assert_eq(strncmp(msg, ":", 1), 0, "%s", msg);
	cr_assert_neq(atoi(msg + 1), 0, "no line in '%s'", msg);

	expect_dir_error("entries:\n"
			 "  - match: 10.1.0.0/16\n"
			 "    tenent: acme\n",
			 ":3:5: unknown key 'tenent' (did you mean 'tenant'?)");
	expect_dir_error("entires:\n  - match: 10.1.0.0/16\n",
			 ":1:1: unknown key 'entires' (did you mean 'entries'?)");
	expect_dir_error("- match: 10.1.0.0/16\n",
			 ":1:1: directory: expected a mapping, got a sequence");
	expect_dir_error("{}\n", ":1:1: missing 'entries' (a list of match/tenant/user/groups)");
	expect_dir_error("entries:\n"
			 "  - match: 10.1.0.0/16\n"
			 "    tenant: acme\n"
			 "  - match: 10.300.0.0/16\n"
			 "    tenant: acme\n",
			 ":4:12: match: '10.300.0.0/16' is not an IPv4 or IPv6 address or "
			 "ADDRESS/LENGTH prefix");
	expect_dir_error("entries:\n"
			 "  - match: [10.1.0.0/16, 10.2.0.0/33]\n"
			 "    tenant: acme\n",
			 ":2:26: match: '10.2.0.0/33': prefix length is out of range for IPv4 "
			 "(0..32)");
	expect_dir_error("entries:\n"
			 "  - match: 10.1.2.3/16\n"
			 "    tenant: acme\n",
			 ":2:12: match: '10.1.2.3/16' has host bits set (the network is "
			 "10.1.0.0/16)");
	expect_dir_error("entries:\n"
			 "  - tenant: acme\n",
			 ":2:5: entry needs 'match' (an address or prefix)");
	expect_dir_error("entries:\n"
			 "  - match: 10.1.0.0/16\n",
			 ":2:5: entry needs tenant, user or groups");
	expect_dir_error("entries:\n"
			 "  - match: 10.1.0.0/16\n"
			 "    tenant: ''\n",
			 ":3:13: tenant: must be 1 to 255 bytes");
	expect_dir_error("entries:\n"
			 "  - match: 10.1.0.0/16\n"
			 "    groups: eng\n",
			 ":3:13: groups: expected a sequence, got 'eng'");
	expect_dir_error("entries:\n"
			 "  - match: 10.1.0.0/16\n"
			 "    groups: [a, b, a]\n",
			 ":3:20: groups: 'a' is listed twice");
	expect_dir_error("entries:\n"
			 "  - match: 10.1.0.0/16\n"
			 "    groups: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q]\n",
			 ":3:13: groups: at most 16 groups");
	expect_dir_error("entries:\n"
			 "  - match: []\n"
			 "    user: x\n",
			 ":2:12: match: list at least one prefix");

	char big[600];
	memset(big, 'u', 256);
	big[256] = '\0';
	char text[800];
	snprintf(text, sizeof(text), "entries:\n  - match: ::1\n    user: %s\n", big);
	expect_dir_error(text, ":3:11: user: must be 1 to 255 bytes");
	big[255] = '\0';
	snprintf(text, sizeof(text), "entries:\n  - match: ::1\n    user: %s\n", big);
	void *c = load_dir(text, NULL);
	cr_assert_not_null(c, "255 bytes is fine: %s", err);
	ops->conf_free(c);
}

Test(identity, duplicate_prefix_names_both_places)
{
	expect_dir_error("entries:\n"
			 "  - match: 10.1.0.0/16\n"
			 "    tenant: acme\n"
			 "  - match: [10.3.0.0/16, 10.1.0.0/16]\n"
			 "    tenant: globex\n",
			 ":4:26: duplicate prefix '10.1.0.0/16' (first at line 2)");
	/* The same IPv6 prefix written another way is the same prefix. */
	expect_dir_error("entries:\n"
			 "  - match:\n"
			 "      - '2001:db8::/64'\n"
			 "      - 10.0.0.1\n"
			 "    tenant: acme\n"
			 "  - match: '2001:0db8:0:0::/64'\n"
			 "    tenant: globex\n",
			 ":6:12: duplicate prefix '2001:0db8:0:0::/64' (first at line 3)");
	/* A bare address and its /32 are one prefix too. */
	expect_dir_error("entries:\n"
			 "  - match: [10.0.0.1, 10.0.0.1/32]\n"
			 "    tenant: acme\n",
			 ":2:23: duplicate prefix '10.0.0.1/32' (first at line 2)");
}

Test(identity, stage_config_errors)
{
	char y[512];

	/* `stages: [identity]`: the stage named alone, with no mapping. */
	struct rdm_ydoc *d = rdm_ydoc_parse_string("chain.yaml", "x: 1\n", err, sizeof(err));
	cr_assert_not_null(d);
	cr_assert_null(ops->conf_new(d, NULL, err, sizeof(err)));
	cr_assert_str_eq(err, "chain.yaml: stage identity needs 'directory' (a directory file)");
	rdm_ydoc_free(d);

	cr_assert_null(conf_from("name: identity\nlookup: src\n"));
	cr_assert_str_eq(err,
			 "chain.yaml:1:1: stage identity needs 'directory' (a directory file)");

	cr_assert_null(conf_from("name: identity\ndirectory: x.yaml\ndirektory: y\n"));
	cr_assert_str_eq(err,
			 "chain.yaml:3:1: unknown key 'direktory' (did you mean 'directory'?)");

	write_file(dirfile, basic);
	snprintf(y, sizeof(y), "name: identity\ndirectory: %s\nlookup: srx\n", dirfile);
	cr_assert_null(conf_from(y));
	cr_assert_str_eq(err, "chain.yaml:3:9: lookup: 'srx' is not src_then_dst or src (did you "
			      "mean 'src'?)");

	snprintf(y, sizeof(y), "name: identity\ndirectory: %s/missing.yaml\n", dir);
	cr_assert_null(conf_from(y));
	char want[256];
	snprintf(want, sizeof(want),
		 "chain.yaml:2:12: directory: %s/missing.yaml: No such file or directory", dir);
	cr_assert_str_eq(err, want);
	cr_assert_eq(errno, ENOENT);
}

Test(identity, reload_switches_answers_and_a_broken_reload_keeps_the_old)
{
	void *c1 = load_dir(basic, NULL), *c2, *c3, *rt;
	struct rdm_frame f;

	cr_assert_not_null(c1, "%s", err);
	cr_assert_not_null(ops->conf_reload);
	cr_assert_not_null(ops->conf_swap);
	rt = ops->init(c1, &env);
	run1(rt, frame(&f, "10.1.2.3", "8.8.8.8"));
	expect_id(&f, "acme", "alice", "eng,emea");

	/* The file changes: alice moves, 10.5/16 appears, 10.2/16 goes. */
	write_file(dirfile, "entries:\n"
			    "  - match: 10.1.0.0/16\n"
			    "    tenant: acme\n"
			    "    user: alice2\n"
			    "  - match: 10.5.0.0/16\n"
			    "    tenant: initech\n");
	c2 = ops->conf_reload(c1, err, sizeof(err));
	cr_assert_not_null(c2, "%s", err);
	/* Until the swap the worker keeps answering from the old conf. */
	run1(rt, frame(&f, "10.5.0.1", "8.8.8.8"));
	cr_assert(unknown(&f));
	ops->conf_swap(rt, c2);
	ops->conf_free(c1); /* the node frees the old conf once every worker switched */
	run1(rt, frame(&f, "10.1.2.3", "8.8.8.8"));
	expect_id(&f, "acme", "alice2", NULL);
	run1(rt, frame(&f, "10.5.0.1", "8.8.8.8"));
	expect_id(&f, "initech", NULL, NULL);
	run1(rt, frame(&f, "10.2.0.1", "8.8.8.8"));
	cr_assert(unknown(&f));
	struct counters k = report(rt);
	cr_assert_eq(k.reloads, 1);
	cr_assert_eq(k.entries, 2);

	/* A broken file: NULL, the position in err, and c2 still answers. */
	write_file(dirfile, "entries:\n"
			    "  - match: 10.1.0.0/16\n"
			    "    tenant: acme\n"
			    "  - match: 10.1.0.0/16\n"
			    "    tenant: evil\n");
	err[0] = '\0';
	c3 = ops->conf_reload(c2, err, sizeof(err));
	cr_assert_null(c3);
	char want[256];
	snprintf(want, sizeof(want), "%s:4:12: duplicate prefix '10.1.0.0/16' (first at line 2)",
		 dirfile);
	cr_assert_str_eq(err, want);
	run1(rt, frame(&f, "10.1.2.3", "8.8.8.8"));
	expect_id(&f, "acme", "alice2", NULL);

	/* Gone altogether: the same. */
	cr_assert_eq(unlink(dirfile), 0);
	cr_assert_null(ops->conf_reload(c2, err, sizeof(err)));
	cr_assert_eq(strncmp(err, dirfile, strlen(dirfile)), 0, "%s", err);
	cr_assert(strstr(err, "No such file"), "%s", err);
	run1(rt, frame(&f, "10.5.0.1", "8.8.8.8"));
	expect_id(&f, "initech", NULL, NULL);
	cr_assert_eq(report(rt).reloads, 1);
	ops->deinit(rt);
	ops->conf_free(c2);
}

Test(identity, a_relative_path_is_fixed_at_load_for_reloads)
{
	void *c1, *c2, *rt;
	struct rdm_frame f;

	write_file(dirfile, basic);
	cr_assert_eq(chdir(dir), 0);
	c1 = conf_from("name: identity\ndirectory: directory.yaml\n");
	cr_assert_not_null(c1, "%s", err);
	/* The node's working directory changes; the reload still finds the file. */
	cr_assert_eq(chdir("/"), 0);
	write_file(dirfile, "entries:\n  - match: 10.1.0.0/16\n    tenant: moved\n");
	c2 = ops->conf_reload(c1, err, sizeof(err));
	cr_assert_not_null(c2, "%s", err);
	rt = ops->init(c2, &env);
	run1(rt, frame(&f, "10.1.0.1", "8.8.8.8"));
	expect_id(&f, "moved", NULL, NULL);
	ops->deinit(rt);
	ops->conf_free(c1);
	ops->conf_free(c2);
}

Test(identity, a_relative_path_is_the_chain_files_neighbour)
{
	char chain[128];
	struct rdm_ydoc *d;
	void *c, *rt;
	struct rdm_frame f;

	write_file(dirfile, basic);
	cr_assert_eq(chdir("/"), 0);
	snprintf(chain, sizeof(chain), "%s/chain.yaml", dir);
	d = rdm_ydoc_parse_string(chain, "name: identity\ndirectory: directory.yaml\n", err,
				  sizeof(err));
	cr_assert_not_null(d, "%s", err);
	c = ops->conf_new(d, rdm_ydoc_root(d), err, sizeof(err));
	rdm_ydoc_free(d);
	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	run1(rt, frame(&f, "10.1.0.1", "8.8.8.8"));
	cr_assert(!unknown(&f), "found next to %s", chain);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(identity, a_reload_keeps_the_lookup_mode)
{
	void *c1 = load_dir(basic, "src"), *c2, *rt;
	struct rdm_frame f;

	cr_assert_not_null(c1, "%s", err);
	c2 = ops->conf_reload(c1, err, sizeof(err));
	cr_assert_not_null(c2, "%s", err);
	rt = ops->init(c1, &env);
	ops->conf_swap(rt, c2);
	run1(rt, frame(&f, "8.8.8.8", "10.1.0.1"));
	cr_assert(unknown(&f));
	ops->deinit(rt);
	ops->conf_free(c1);
	ops->conf_free(c2);
}

/* The example directory shipped for the demo loads and says what its comments say. */
Test(identity, the_example_directory_loads)
{
	void *c, *rt;
	struct rdm_frame f;

	if (access("configs/directory.yaml", R_OK) != 0)
		cr_skip_test("run from the repository root");
	c = conf_from("name: identity\ndirectory: configs/directory.yaml\n");
	cr_assert_not_null(c, "%s", err);
	rt = ops->init(c, &env);
	run1(rt, frame(&f, "10.1.0.1", "10.2.1.1"));
	cr_assert_not(unknown(&f));
	cr_assert(f.present & RDM_F_TENANT);
	run1(rt, frame(&f, "192.0.2.1", "198.51.100.1"));
	cr_assert(unknown(&f));
	ops->deinit(rt);
	ops->conf_free(c);
}
