/* The orchestrator's persisted desired state (orchestrator/state.c): the file format and
 * its round trip, the atomic save, every load error with its position, the placement it
 * saves (rdm_state_set_plan) and restores (rdm_state_plan) after a restart to the very
 * placement that was running, and rdm_plan_rebase (orchestrator/plan.c), which keeps saved
 * or running replicas where they are. Files are written to a fresh temporary directory per
 * test. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orchestrator/plan.h"
#include "orchestrator/rack.h"
#include "orchestrator/state.h"

static char err[1024];
static char dir[64];

static void mkdir_tmp(void)
{
	strcpy(dir, "/tmp/rdm-test-state-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

/* Removes every file the test left in DIR (the tests create no subdirectories but one,
 * removed by the test that makes it), then DIR. */
static void rm_tmp(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

/* DIR/name in a static buffer (one of 64 in turn: a test keeps its few paths). */
static const char *at(const char *name)
{
	static char bufs[64][256];
	static int k;
	char *p = bufs[k++ % 64];

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

/* Writes text to DIR/name; returns the path. */
static const char *put(const char *name, const char *text)
{
	const char *p = at(name);
	FILE *f = fopen(p, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

/* The whole file at path, NUL-terminated (caller frees). */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_not_null(buf);
	n = fread(buf, 1, 65535, f);
	cr_assert_lt(n, 65535);
	fclose(f);
	return buf;
}

static int exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static int n_files(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static int is_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

/* A state file with text must fail to load with want after its path
 * (":LINE:COL: message"), and leave the state zeroed. */
static void load_fails(const char *text, const char *want)
{
	const char *path = put("bad.yaml", text);
	struct rdm_orch_state s;
	int rc;

	memset(&s, 0xa5, sizeof(s));
	err[0] = '\0';
	rc = rdm_state_load(path, &s, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "loaded '%s', expected '%s' (rc %d, err '%s')", text, want, rc,
		     err);
	cr_assert(is_zero(&s, sizeof(s)), "state not zeroed on error");
	cr_assert_eq(strncmp(err, path, strlen(path)), 0, "'%s' does not start with the path", err);
	cr_assert_str_eq(err + strlen(path), want, "for '%s': got '%s'", text, err + strlen(path));
}

/* A state of chain at epoch with the given down nodes ("NAME:dead" or "NAME:drained")
 * and replicas ("ID@NODE:PORT"), NULL-terminated lists (the strings are copied). */
static void make_state(struct rdm_orch_state *s, uint64_t epoch, const char *chain,
		       const char *const down[], const char *const reps[])
{
	int n = 0;

	memset(s, 0, sizeof(*s));
	s->epoch = epoch;
	s->chain = chain ? strdup(chain) : NULL;
	cr_assert(!chain || s->chain);
	while (down && down[n])
		n++;
	s->down = calloc((size_t)n + 1, sizeof(*s->down));
	cr_assert_not_null(s->down);
	for (s->n_down = 0; s->n_down < n; s->n_down++) {
		struct rdm_state_down *d = &s->down[s->n_down];
		char why[16];

		cr_assert_eq(sscanf(down[s->n_down], "%63[^:]:%15s", d->node, why), 2);
		d->why = !strcmp(why, "drained") ? RDM_DOWN_DRAINED : RDM_DOWN_DEAD;
	}
	n = 0;
	while (reps && reps[n])
		n++;
	s->replicas = calloc((size_t)n + 1, sizeof(*s->replicas));
	cr_assert_not_null(s->replicas);
	for (s->n_replicas = 0; s->n_replicas < n; s->n_replicas++) {
		struct rdm_state_replica *r = &s->replicas[s->n_replicas];
		unsigned port;

		cr_assert_eq(
		    sscanf(reps[s->n_replicas], "%63[^@]@%63[^:]:%u", r->id, r->node, &port), 3,
		    "%s", reps[s->n_replicas]);
		r->port = (uint16_t)port;
	}
}

static void expect_state(const struct rdm_orch_state *s, uint64_t epoch, const char *chain,
			 const char *const down[], const char *const reps[])
{
	int n = 0;
	char buf[200];

	cr_assert_eq(s->epoch, epoch);
	cr_assert_str_eq(s->chain, chain);
	while (down && down[n])
		n++;
	cr_assert_eq(s->n_down, n);
	for (int i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%s:%s", s->down[i].node,
			 s->down[i].why == RDM_DOWN_DRAINED ? "drained" : "dead");
		cr_assert_str_eq(buf, down[i], "down %d", i);
	}
	n = 0;
	while (reps && reps[n])
		n++;
	cr_assert_eq(s->n_replicas, n);
	for (int i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%s@%s:%u", s->replicas[i].id, s->replicas[i].node,
			 s->replicas[i].port);
		cr_assert_str_eq(buf, reps[i], "replica %d: %s, want %s", i, buf, reps[i]);
	}
}

TestSuite(state, .init = mkdir_tmp, .fini = rm_tmp);

/* ---- file format ---- */

Test(state, save_then_load_round_trips)
{
	static const char *const down[] = {"host4:dead", "host2:drained", NULL};
	static const char *const reps[] = {"edge-1@host1:7100", "dpi-1@host3:7100",
					   "dpi-2@host1:7101", "log-1@host3:65535", NULL};
	struct rdm_orch_state s, back;
	const char *path = at("state.yaml");
	char *text;

	make_state(&s, 7, "/etc/rdmesh/chain.yaml", down, reps);
	cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_state_load(path, &back, err, sizeof(err)), 0, "%s", err);
	expect_state(&back, 7, "/etc/rdmesh/chain.yaml", down, reps);
	cr_assert_str_eq(back.file, path);
	/* Each replica remembers where it was read, for rdm_state_plan's errors. */
	cr_assert_eq(back.replicas[0].line, 10);
	cr_assert_eq(back.replicas[0].col, 5);
	cr_assert_eq(back.replicas[3].line, 13);
	/* The file is the documented format, readable by a person. */
	text = slurp(path);
	cr_assert_not_null(strstr(text, "version: 1\nepoch: 7\nchain: \"/etc/rdmesh/chain.yaml\"\n"
					"down:\n  - {node: host4, why: dead}\n"
					"  - {node: host2, why: drained}\n"
					"replicas:\n  - {id: edge-1, node: host1, port: 7100}\n"),
			   "%s", text);
	free(text);
	rdm_state_free(&back);
	rdm_state_free(&s);
	/* rdm_state_free leaves a zeroed state; freeing twice is harmless. */
	cr_assert(is_zero(&s, sizeof(s)));
	rdm_state_free(&s);
}

Test(state, empty_lists_round_trip)
{
	struct rdm_orch_state s, back;
	const char *path = at("state.yaml");
	char *text;

	make_state(&s, UINT64_C(9223372036854775807), "/c.yaml", NULL, NULL);
	cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), 0, "%s", err);
	text = slurp(path);
	cr_assert_not_null(strstr(text, "down: []\nreplicas: []\n"), "%s", text);
	free(text);
	cr_assert_eq(rdm_state_load(path, &back, err, sizeof(err)), 0, "%s", err);
	expect_state(&back, UINT64_C(9223372036854775807), "/c.yaml", NULL, NULL);
	rdm_state_free(&back);

	/* Hand-written: lists absent or null are empty. */
	cr_assert_eq(rdm_state_load(put("a.yaml", "version: 1\nepoch: 2\nchain: /x\n"), &back, err,
				    sizeof(err)),
		     0, "%s", err);
	expect_state(&back, 2, "/x", NULL, NULL);
	cr_assert_null(back.down);
	cr_assert_null(back.replicas);
	rdm_state_free(&back);
	cr_assert_eq(rdm_state_load(put("b.yaml", "version: 1\nepoch: 2\nchain: /x\ndown:\n"
						  "replicas: ~\n"),
				    &back, err, sizeof(err)),
		     0, "%s", err);
	expect_state(&back, 2, "/x", NULL, NULL);
	rdm_state_free(&back);
	/* Block style, and why defaults to dead. */
	cr_assert_eq(rdm_state_load(put("c.yaml", "version: 1\nepoch: 2\nchain: /x\ndown:\n"
						  "  - node: n1\nreplicas:\n  - id: a-1\n"
						  "    node: n2\n    port: 1\n"),
				    &back, err, sizeof(err)),
		     0, "%s", err);
	{
		static const char *const down[] = {"n1:dead", NULL};
		static const char *const reps[] = {"a-1@n2:1", NULL};

		expect_state(&back, 2, "/x", down, reps);
	}
	rdm_state_free(&back);
	rdm_state_free(&s);
}

Test(state, odd_chain_paths_survive_the_quoting)
{
	static const char *const paths[] = {
	    "/srv/my chains/chain \"prod\".yaml",
	    "/a/back\\slash/'single'/#hash: colon- dash/[x]{y},z&*!|>%@`",
	    "/ünïcødé/チェーン/chain-€.yaml",		     /* UTF-8: 2, 3 byte sequences */
	    "/emoji/\xf0\x9f\x98\x80.yaml",		     /* a 4-byte sequence */
	    "/nel/\xc2\x85/ls/\xe2\x80\xa8/ps/\xe2\x80\xa9", /* YAML line breaks if unescaped */
	    "/ctl/tab\there/nl\nthere/cr\rdel\x7f/bell\x01",
	    "/trailing space ",
	    " /leading space is not absolute but the saver does not judge",
	    NULL};
	static const char *const reps[] = {"dpi-2@n1:7100", NULL};

	for (int i = 0; paths[i]; i++) {
		struct rdm_orch_state s, back;
		const char *path = at("state.yaml");
		char *text;

		make_state(&s, 3, paths[i], NULL, reps);
		cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), 0, "%s", err);
		/* The file itself stays plain ASCII. */
		text = slurp(path);
		for (const char *c = text; *c; c++)
			cr_assert_lt((unsigned char)*c, 0x80, "%d: %s", i, text);
		free(text);
		if (paths[i][0] != '/') {
			/* The loader insists on an absolute path. */
			cr_assert_eq(rdm_state_load(path, &back, err, sizeof(err)), -EINVAL);
			cr_assert_not_null(strstr(err, "chain: an absolute path is required"), "%s",
					   err);
		} else {
			cr_assert_eq(rdm_state_load(path, &back, err, sizeof(err)), 0, "%s: %s",
				     paths[i], err);
			expect_state(&back, 3, paths[i], NULL, reps);
			rdm_state_free(&back);
		}
		rdm_state_free(&s);
	}
}

Test(state, bytes_that_are_not_utf8_are_refused_and_nothing_written)
{
	/* YAML text is Unicode: a path that is not UTF-8 cannot be written so that it reads
	 * back the same, so the save refuses it rather than persist another path. */
	static const char *const bad[] = {"/latin1/caf\xe9.yaml",
					  "/lone/\x80",
					  "/cut/\xe2\x82",
					  "/overlong/\xc0\xaf",
					  "/surrogate/\xed\xa0\x80",
					  "/too/big/\xf4\x90\x80\x80",
					  NULL};
	static const char *const reps[] = {"a-1@n1:7100", NULL};
	const char *path = at("state.yaml");
	struct rdm_orch_state s, back;

	make_state(&s, 4, "/good.yaml", NULL, reps);
	cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), 0, "%s", err);
	rdm_state_free(&s);
	for (int i = 0; bad[i]; i++) {
		make_state(&s, 5, bad[i], NULL, NULL);
		err[0] = '\0';
		cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), -EINVAL, "%d", i);
		cr_assert_not_null(strstr(err, "not valid UTF-8"), "%s", err);
		rdm_state_free(&s);
		/* The old state stands, and no .tmp is left. */
		cr_assert_eq(rdm_state_load(path, &back, err, sizeof(err)), 0, "%s", err);
		expect_state(&back, 4, "/good.yaml", NULL, reps);
		rdm_state_free(&back);
		cr_assert_eq(n_files(), 1);
	}
}

Test(state, save_is_atomic)
{
	static const char *const many_down[] = {"n1:dead", "n2:drained", NULL};
	static const char *const many[] = {"edge-1@n3:7100", "dpi-1@n4:7100", "dpi-2@n3:7101",
					   "log-1@n4:7101",  "log-2@n3:7102", NULL};
	static const char *const one[] = {"dpi-1@n2:7100", NULL};
	struct rdm_orch_state s, back;
	const char *path = at("state.yaml");
	char *text;

	/* A longer file first, then a shorter one: the second replaces it whole. */
	make_state(&s, 10, "/a/very/long/chain/path/to/make/the/first/file/long.yaml", many_down,
		   many);
	cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert(!exists(at("state.yaml.tmp")));
	rdm_state_free(&s);
	make_state(&s, 11, "/c.yaml", NULL, one);
	cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert(!exists(at("state.yaml.tmp")));
	cr_assert_eq(n_files(), 1);
	text = slurp(path);
	cr_assert_null(strstr(text, "long.yaml"), "%s", text);
	cr_assert_null(strstr(text, "dead"), "%s", text);
	cr_assert_null(strstr(text, "log-2"), "%s", text);
	free(text);
	cr_assert_eq(rdm_state_load(path, &back, err, sizeof(err)), 0, "%s", err);
	expect_state(&back, 11, "/c.yaml", NULL, one);
	rdm_state_free(&back);

	/* A stale .tmp from a crash mid-save is overwritten, then renamed away. */
	put("state.yaml.tmp", "half a file from a crash: [");
	s.epoch = 12;
	cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert(!exists(at("state.yaml.tmp")));
	cr_assert_eq(rdm_state_load(path, &back, err, sizeof(err)), 0, "%s", err);
	expect_state(&back, 12, "/c.yaml", NULL, one);
	rdm_state_free(&back);
	rdm_state_free(&s);
}

Test(state, save_into_a_missing_directory_fails_and_leaves_nothing)
{
	struct rdm_orch_state s;
	char path[256];

	snprintf(path, sizeof(path), "%s/no/such/dir/state.yaml", dir);
	make_state(&s, 1, "/c.yaml", NULL, NULL);
	err[0] = '\0';
	cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, "/no/such/dir/state.yaml"), "%s", err);
	cr_assert_not_null(strstr(err, strerror(ENOENT)), "%s", err);
	cr_assert_eq(n_files(), 0);
	rdm_state_free(&s);
}

Test(state, save_refuses_a_state_without_a_chain)
{
	static const char *const reps[] = {"a-1@n1:7100", NULL};
	struct rdm_orch_state s, back;
	const char *path = at("state.yaml");

	make_state(&s, 1, NULL, NULL, reps);
	err[0] = '\0';
	cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "no chain"), "%s", err);
	cr_assert_eq(n_files(), 0);
	/* Over an existing state: that state stands. */
	make_state(&back, 2, "/c.yaml", NULL, reps);
	cr_assert_eq(rdm_state_save(path, &back, err, sizeof(err)), 0, "%s", err);
	rdm_state_free(&back);
	cr_assert_eq(rdm_state_save(path, &s, err, sizeof(err)), -EINVAL);
	cr_assert_eq(n_files(), 1);
	cr_assert_eq(rdm_state_load(path, &back, err, sizeof(err)), 0, "%s", err);
	expect_state(&back, 2, "/c.yaml", NULL, reps);
	rdm_state_free(&back);
	rdm_state_free(&s);
}

Test(state, load_of_a_missing_file_is_enoent)
{
	struct rdm_orch_state s;

	memset(&s, 0xa5, sizeof(s));
	err[0] = '\0';
	cr_assert_eq(rdm_state_load(at("absent.yaml"), &s, err, sizeof(err)), -ENOENT);
	cr_assert(is_zero(&s, sizeof(s)));
	cr_assert_not_null(strstr(err, "absent.yaml"), "%s", err);
}

#define HEAD "version: 1\nepoch: 3\nchain: /c.yaml\n"

Test(state, load_errors_say_where)
{
	/* Keys and version. */
	load_fails("version: 1\nepoch: 3\nchian: /c.yaml\n",
		   ":3:1: unknown key 'chian' (did you mean 'chain'?)");
	load_fails(HEAD "replica: []\n", ":4:1: unknown key 'replica' (did you mean 'replicas'?)");
	load_fails(HEAD "ops: []\n", ":4:1: unknown key 'ops'");
	load_fails("version: 2\nepoch: 3\nchain: /c.yaml\n",
		   ":1:10: version 2 (this orchestrator reads 1)");
	load_fails("version: 0\nepoch: 3\nchain: /c.yaml\n",
		   ":1:10: version: 0 is out of range (1..4294967295)");
	load_fails("epoch: 3\nchain: /c.yaml\n", ":1:1: no version (this orchestrator reads 1)");
	/* Epoch. */
	load_fails("version: 1\nepoch: 0\nchain: /c.yaml\n",
		   ":2:8: epoch: 0 is out of range (1..9223372036854775807)");
	load_fails("version: 1\nchain: /c.yaml\n", ":1:1: no epoch");
	load_fails("version: 1\nepoch: seven\nchain: /c.yaml\n",
		   ":2:8: epoch: expected a non-negative integer, got 'seven'");
	load_fails("version: 1\nepoch: -1\nchain: /c.yaml\n",
		   ":2:8: epoch: expected a non-negative integer, got '-1'");
	/* Chain. */
	load_fails("version: 1\nepoch: 3\nchain: c.yaml\n",
		   ":3:8: chain: an absolute path is required");
	load_fails("version: 1\nepoch: 3\n", ":1:1: chain: an absolute path is required");
	load_fails("version: 1\nepoch: 3\nchain: [/c.yaml]\n",
		   ":3:8: chain: expected a string, got a sequence");
	/* Down. */
	load_fails(HEAD "down: host4\n", ":4:7: down: expected a sequence, got 'host4'");
	load_fails(HEAD "down: {node: host4}\n", ":4:7: down: expected a sequence, got a mapping");
	load_fails(HEAD "down: [host4]\n", ":4:8: down entry: expected a mapping, got 'host4'");
	load_fails(HEAD "down: [{node: host4, why: asleep}]\n",
		   ":4:27: why: 'asleep' is not dead or drained");
	load_fails(HEAD "down: [{node: host4, why: [dead]}]\n",
		   ":4:27: why: expected a string, got a sequence");
	load_fails(HEAD "down: [{node: host4, wyh: dead}]\n",
		   ":4:22: unknown key 'wyh' (did you mean 'why'?)");
	load_fails(HEAD "down: [{why: dead}]\n", ":4:8: 'node' is required");
	load_fails(HEAD "down: [{node: \"host 4\"}]\n", ":4:15: node: 'host 4' is not a name");
	load_fails(HEAD "down: [{node: \"\"}]\n", ":4:15: node: '' is not a name");
	/* Replicas. */
	load_fails(HEAD "replicas: dpi-1\n", ":4:11: replicas: expected a sequence, got 'dpi-1'");
	load_fails(HEAD "replicas: [dpi-1]\n", ":4:12: replica: expected a mapping, got 'dpi-1'");
	load_fails(HEAD "replicas:\n  - {node: n1, port: 7100}\n", ":5:5: 'id' is required");
	load_fails(HEAD "replicas:\n  - {id: dpi-1, port: 7100}\n", ":5:5: 'node' is required");
	load_fails(HEAD "replicas:\n  - {id: dpi-1, node: n1}\n", ":5:5: 'port' is required");
	load_fails(HEAD "replicas:\n  - {id: dpi-1, node: n1, port: 0}\n",
		   ":5:33: port: 0 is out of range (1..65535)");
	load_fails(HEAD "replicas:\n  - {id: dpi-1, node: n1, port: 70000}\n",
		   ":5:33: port: 70000 is out of range (1..65535)");
	load_fails(HEAD "replicas:\n  - {id: dpi-1, node: n1, port: x}\n",
		   ":5:33: port: expected a non-negative integer, got 'x'");
	load_fails(HEAD "replicas:\n  - {id: dpi-1, node: n1, port: 7100, prot: tcp}\n",
		   ":5:39: unknown key 'prot' (did you mean 'port'?)");
	load_fails(HEAD "replicas:\n  - {id: \"dpi 1\", node: n1, port: 7100}\n",
		   ":5:10: id: 'dpi 1' is not a name");
	load_fails(HEAD "replicas:\n  - {id: dpi-1, node: n/1, port: 7100}\n",
		   ":5:23: node: 'n/1' is not a name");
	load_fails(HEAD "replicas:\n  - {id: dpi-1, node: n1, port: 7100}\n"
			"  - {id: dpi-2, node: n2, port: 7100}\n"
			"  - {id: dpi-1, node: n3, port: 7100}\n",
		   ":7:10: replica 'dpi-1' twice");
	/* Not a state at all. */
	load_fails("- version: 1\n", ":1:1: state: expected a mapping, got a sequence");
	load_fails("", ": state: the file is empty");
	load_fails("# only a comment\n", ": state: the file is empty");
	/* Broken YAML syntax, reported by the parser at its position. */
	{
		const char *path = put("syntax.yaml", HEAD "replicas: [{id: a-1\n");
		struct rdm_orch_state s;

		memset(&s, 0xa5, sizeof(s));
		cr_assert_eq(rdm_state_load(path, &s, err, sizeof(err)), -EINVAL);
		cr_assert(is_zero(&s, sizeof(s)));
		cr_assert_eq(strncmp(err, path, strlen(path)), 0, "%s", err);
		cr_assert_eq(strncmp(err + strlen(path), ":5:1: ", 6), 0, "%s", err);
	}
	{
		const char *path = put("syntax2.yaml", "version: 1\nepoch: 3\n  chain: /c\n");
		struct rdm_orch_state s;
		int line, col;

		cr_assert_eq(rdm_state_load(path, &s, err, sizeof(err)), -EINVAL);
		cr_assert_eq(strncmp(err, path, strlen(path)), 0, "%s", err);
		cr_assert_eq(sscanf(err + strlen(path), ":%d:%d: ", &line, &col), 2, "%s", err);
		cr_assert_eq(line, 3, "%s", err);
	}
}

Test(state, load_leaves_an_unreadable_file_alone)
{
	struct rdm_orch_state s;

	/* A directory where the file should be: an error, not a crash or ENOENT. */
	cr_assert_eq(mkdir(at("d.yaml"), 0700), 0);
	err[0] = '\0';
	memset(&s, 0xa5, sizeof(s));
	cr_assert_lt(rdm_state_load(at("d.yaml"), &s, err, sizeof(err)), 0);
	cr_assert_neq(err[0], '\0');
	cr_assert(is_zero(&s, sizeof(s)));
	rmdir(at("d.yaml"));
}

/* ---- the placement, saved and restored ---- */

#define RACK4                                                                                      \
	"nodes:\n"                                                                                 \
	"  - {name: n1, control: 10.77.0.1, data: 10.77.0.1, capacity: 4}\n"                       \
	"  - {name: n2, control: 10.77.0.2, data: 10.77.0.2, capacity: 4}\n"                       \
	"  - {name: n3, control: 10.77.0.3, data: 10.77.0.3, capacity: 4}\n"                       \
	"  - {name: n4, control: 10.77.0.4, data: 10.77.0.4, capacity: 4}\n"

/* Room for every replica on two nodes, so that losing two of four moves them all. */
#define RACK4_BIG                                                                                  \
	"nodes:\n"                                                                                 \
	"  - {name: n1, control: 10.77.0.1, data: 10.77.0.1, capacity: 8}\n"                       \
	"  - {name: n2, control: 10.77.0.2, data: 10.77.0.2, capacity: 8}\n"                       \
	"  - {name: n3, control: 10.77.0.3, data: 10.77.0.3, capacity: 8}\n"                       \
	"  - {name: n4, control: 10.77.0.4, data: 10.77.0.4, capacity: 8}\n"

#define CHAIN_HEAD "chain: {name: t}\nstages:\n"
#define EDGE	   "  - name: edge\n    run: [stamp]\n    ingress: {mode: gen, count: 10}\n"
#define DPI	   "  - name: dpi\n    run: [stamp, dpi]\n    workers: 2\n"
#define LOG	   "  - name: log\n    run: [stamp]\n    egress:\n"
#define CHAIN3	   CHAIN_HEAD EDGE DPI LOG

struct world {
	struct rdm_rack rack;
	struct rdm_chain_spec spec;
};

static void world_load_with(struct world *w, const char *rack, const char *chain)
{
	cr_assert_eq(rdm_rack_load(put("rack.yaml", rack), &w->rack, err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(rdm_chain_spec_load(put("chain.yaml", chain), &w->spec, err, sizeof(err)), 0,
		     "%s", err);
}

static void world_load(struct world *w)
{
	world_load_with(w, RACK4, CHAIN3);
}

static void world_free(struct world *w)
{
	rdm_chain_spec_free(&w->spec);
	rdm_rack_free(&w->rack);
}

/* The node a replica runs on, by name. */
static const char *node_of(const struct rdm_plan *p, const char *id)
{
	const struct rdm_replica *r = rdm_plan_replica(p, id);

	cr_assert_not_null(r, "no replica %s", id);
	cr_assert_geq(r->node, 0, "%s not placed", id);
	return p->rack->nodes[r->node].name;
}

static void expect_at(const struct rdm_plan *p, const char *id, const char *node,
		      const char *listen)
{
	const struct rdm_replica *r = rdm_plan_replica(p, id);

	cr_assert_not_null(r, "no replica %s", id);
	cr_assert_str_eq(node_of(p, id), node, "%s", id);
	cr_assert_str_eq(r->listen, listen, "%s", id);
}

/* id runs on the same node and port in a and b. */
static void expect_kept(const struct rdm_plan *a, const struct rdm_plan *b, const char *id)
{
	const struct rdm_replica *x = rdm_plan_replica(a, id), *y = rdm_plan_replica(b, id);

	cr_assert(x && y, "%s missing", id);
	cr_assert_eq(x->node, y->node, "%s moved from %s to %s", id, node_of(a, id),
		     node_of(b, id));
	cr_assert_eq(x->port, y->port, "%s changed port", id);
	cr_assert_str_eq(x->listen, y->listen, "%s", id);
}

/* The two plans are the same placement: same ids, nodes, ports, listen addresses, node
 * ids, replicas per stage, and nodes down. */
static void expect_same_plan(const struct rdm_plan *a, const struct rdm_plan *b)
{
	cr_assert_eq(a->n_replicas, b->n_replicas);
	for (int i = 0; i < a->n_replicas; i++) {
		const struct rdm_replica *x = &a->replicas[i];
		const struct rdm_replica *y = rdm_plan_replica(b, x->id);

		cr_assert_not_null(y, "%s missing", x->id);
		expect_kept(a, b, x->id);
		cr_assert_eq(x->node_id, y->node_id, "%s node id", x->id);
		cr_assert_eq(x->stage, y->stage, "%s stage", x->id);
		cr_assert_eq(x->n, y->n, "%s n", x->id);
	}
	for (int s = 0; s < a->spec->n_stages; s++)
		cr_assert_eq(a->stage_replicas[s], b->stage_replicas[s], "stage %d", s);
	for (int k = 0; k < a->rack->n_nodes; k++)
		cr_assert_eq(a->down[k], b->down[k], "node %d", k);
}

/* Replaces *p by np, which must not be NULL. */
static void take(struct rdm_plan **p, struct rdm_plan *np, const char *what)
{
	cr_assert_not_null(np, "%s: %s", what, err);
	rdm_plan_free(*p);
	*p = np;
}

/* One live change, as the orchestrator makes them: "scale STAGE N", "dead NODE",
 * "drain NODE", "up NODE"; why[] tracks why each node is down. */
static void change(struct rdm_plan **p, enum rdm_down_why *why, const char *op)
{
	char verb[16], arg[64];
	int n = 0;

	cr_assert_geq(sscanf(op, "%15s %63s %d", verb, arg, &n), 2, "%s", op);
	if (!strcmp(verb, "scale")) {
		take(p, rdm_plan_scale(*p, arg, n, err, sizeof(err)), op);
	} else if (!strcmp(verb, "up")) {
		take(p, rdm_plan_node_up(*p, arg, err, sizeof(err)), op);
	} else {
		int k = rdm_rack_find((*p)->rack, arg);

		cr_assert_geq(k, 0, "%s", op);
		take(p, rdm_plan_node_down(*p, arg, err, sizeof(err)), op);
		why[k] = !strcmp(verb, "drain") ? RDM_DOWN_DRAINED : RDM_DOWN_DEAD;
	}
}

/* What the orchestrator does on each change (commit) and at start (restore): describes
 * live in st (epoch + 1), saves it to path, then loads it back and restores the plan,
 * which is returned. */
static struct rdm_plan *save_and_restore(const struct world *w, struct rdm_orch_state *st,
					 const struct rdm_plan *live, const enum rdm_down_why *why,
					 const char *path)
{
	struct rdm_orch_state back;
	struct rdm_plan *p;

	cr_assert_eq(rdm_state_set_plan(st, live, why), 0);
	st->epoch++;
	cr_assert_eq(rdm_state_save(path, st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_state_load(path, &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(back.epoch, st->epoch);
	cr_assert_str_eq(back.chain, st->chain);
	p = rdm_state_plan(&back, &w->rack, &w->spec, err, sizeof(err));
	cr_assert_not_null(p, "restore: %s", err);
	rdm_state_free(&back);
	return p;
}

Test(state, set_plan_describes_the_plan)
{
	enum rdm_down_why why[4] = {RDM_DOWN_DEAD, RDM_DOWN_DRAINED, RDM_DOWN_DRAINED,
				    RDM_DOWN_DRAINED};
	static const char *const reps[] = {"edge-1@n1:7100", "dpi-1@n2:7100", "dpi-2@n3:7100",
					   "dpi-3@n4:7100",  "log-1@n1:7101", NULL};
	static const char *const moved[] = {"edge-1@n4:7101", "dpi-1@n3:7102", "dpi-2@n3:7100",
					    "dpi-3@n4:7100",  "log-1@n3:7101", NULL};
	static const char *const down[] = {"n1:dead", "n2:drained", NULL};
	static const char *const down_dead[] = {"n1:dead", "n2:dead", NULL};
	struct world w;
	struct rdm_orch_state st;
	struct rdm_plan *p, *d;

	world_load_with(&w, RACK4_BIG, CHAIN_HEAD EDGE DPI "    replicas: 3\n" LOG);
	p = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	make_state(&st, 5, "/c.yaml", NULL, NULL);
	cr_assert_eq(rdm_state_set_plan(&st, p, NULL), 0);
	expect_state(&st, 5, "/c.yaml", NULL, reps);

	/* Two nodes down: their replicas move (dpi-1 beside a sibling: no node is free of
	 * dpi), and each down node is saved with its reason; only down nodes count. */
	d = rdm_plan_node_down(p, "n1", err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	take(&d, rdm_plan_node_down(d, "n2", err, sizeof(err)), "down n2");
	cr_assert_eq(rdm_state_set_plan(&st, d, why), 0);
	expect_state(&st, 5, "/c.yaml", down, moved);
	/* Without reasons, down is dead. */
	cr_assert_eq(rdm_state_set_plan(&st, d, NULL), 0);
	expect_state(&st, 5, "/c.yaml", down_dead, moved);
	/* And back: the lists are replaced, not appended to. */
	cr_assert_eq(rdm_state_set_plan(&st, p, why), 0);
	expect_state(&st, 5, "/c.yaml", NULL, reps);
	rdm_plan_free(d);
	rdm_plan_free(p);
	rdm_state_free(&st);
	world_free(&w);
}

/* The restart property: after any sequence of live changes, the state the orchestrator
 * saved, loaded by a restarted one and restored, is the placement that was running,
 * replica for replica. */
Test(state, restart_yields_the_live_placement)
{
	static const char *const ops[] = {
	    "scale dpi 3",  "dead n2",	   "scale log 2", "up n2",	 "drain n4", "scale dpi 2",
	    "scale edge 2", "up n4",	   "scale dpi 4", "scale dpi 3", "dead n1",  "scale log 1",
	    "drain n3",	    "up n1",	   "up n3",	  "scale dpi 4", "dead n2",  "scale edge 1",
	    "up n2",	    "scale log 3", NULL};
	enum rdm_down_why why[4] = {0};
	struct world w;
	struct rdm_orch_state st;
	struct rdm_plan *live, *restored;
	const char *path = at("state.yaml");

	world_load_with(&w, RACK4_BIG, CHAIN3);
	live = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(live, "%s", err);
	make_state(&st, 0, w.spec.file, NULL, NULL);
	restored = save_and_restore(&w, &st, live, why, path);
	expect_same_plan(live, restored);
	rdm_plan_free(restored);
	for (int i = 0; ops[i]; i++) {
		change(&live, why, ops[i]);
		/* A restart at any point restores the plan running then. */
		restored = save_and_restore(&w, &st, live, why, path);
		expect_same_plan(live, restored);
		/* And the restored plan goes on as the live one would. */
		if (ops[i + 1]) {
			enum rdm_down_why why2[4];
			struct rdm_plan *a = rdm_plan_copy(live), *b = restored;

			cr_assert_not_null(a);
			memcpy(why2, why, sizeof(why2));
			change(&a, why2, ops[i + 1]);
			change(&b, why2, ops[i + 1]);
			expect_same_plan(a, b);
			rdm_plan_free(a);
			restored = b;
		}
		rdm_plan_free(restored);
	}
	cr_assert_eq(st.epoch, 21);
	cr_assert_eq(live->stage_replicas[1], 4);
	cr_assert_eq(live->stage_replicas[2], 3);
	rdm_plan_free(live);
	rdm_state_free(&st);
	world_free(&w);
}

/* Losing nodes may leave siblings of a spread stage on one node (spread is only a
 * preference then); a restart keeps them so, as the live orchestrator did. */
Test(state, restart_keeps_siblings_sharing_a_node)
{
	enum rdm_down_why why[4] = {0};
	struct world w;
	struct rdm_orch_state st;
	struct rdm_plan *live, *restored;

	world_load_with(&w, RACK4_BIG, CHAIN_HEAD EDGE DPI "    replicas: 3\n" LOG);
	live = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(live, "%s", err);
	change(&live, why, "dead n1");
	change(&live, why, "drain n2");
	/* Three dpi replicas on the two nodes left. */
	cr_assert_str_eq(node_of(live, "dpi-1"), node_of(live, "dpi-2"));
	make_state(&st, 1, w.spec.file, NULL, NULL);
	restored = save_and_restore(&w, &st, live, why, at("state.yaml"));
	expect_same_plan(live, restored);
	rdm_plan_free(restored);
	rdm_plan_free(live);
	rdm_state_free(&st);
	world_free(&w);
}

/* Loads state text (a state file) for rdm_state_plan. */
static void state_text(struct rdm_orch_state *st, const char *text)
{
	cr_assert_eq(rdm_state_load(put("state.yaml", text), st, err, sizeof(err)), 0, "%s", err);
}

/* The state text must not restore: errno e, and err is want after the state file's path
 * (want starts with ":LINE:COL: " or ": "). */
static void restore_fails(const struct world *w, const char *text, int e, const char *want)
{
	struct rdm_orch_state st;
	const char *path = at("state.yaml");

	state_text(&st, text);
	err[0] = '\0';
	errno = 0;
	cr_assert_null(rdm_state_plan(&st, &w->rack, &w->spec, err, sizeof(err)), "%s restored",
		       text);
	cr_assert_eq(errno, e, "errno %d (%s)", errno, err);
	cr_assert_eq(strncmp(err, path, strlen(path)), 0, "'%s' does not start with the path", err);
	cr_assert_str_eq(err + strlen(path), want);
	rdm_state_free(&st);
}

#define SHEAD "version: 1\nepoch: 3\nchain: /c.yaml\n"

Test(state, restore_errors_name_the_state_file_position)
{
	char want[512];
	struct world w;

	world_load(&w);
	snprintf(want, sizeof(want), ": down node 'n9' is not in %s", w.rack.file);
	restore_fails(&w, SHEAD "down: [{node: n1}, {node: n9, why: drained}]\n", ENOENT, want);
	snprintf(want, sizeof(want), ":6:5: replica 'fw-1': no stage 'fw' in %s", w.spec.file);
	restore_fails(&w,
		      SHEAD "replicas:\n  - {id: edge-1, node: n1, port: 7100}\n"
			    "  - {id: fw-1, node: n2, port: 7100}\n",
		      ENOENT, want);
	/* Ids are STAGE-N, N 1..16, written as the orchestrator writes it. */
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-0, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-0' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-17, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-17' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-x, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-x' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-1x, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-1x' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-01, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-01' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-99999999999, node: n1, port: 7100}\n",
		      EINVAL, ":5:5: replica id 'dpi-99999999999' is not STAGE-N");
	world_free(&w);
}

Test(state, restore_places_what_cannot_stay_afresh)
{
	struct world w;
	struct rdm_orch_state st;
	struct rdm_plan *p;

	world_load(&w);
	/* n9 left rack.yaml: dpi-1 is placed as rdm_plan_new would (not an error); the others
	 * stay where they ran, even where rdm_plan_new would not put them. A port outside the
	 * rack's range moves too. */
	state_text(&st, SHEAD "down: [{node: n4, why: drained}]\n"
			      "replicas:\n  - {id: edge-1, node: n3, port: 7150}\n"
			      "  - {id: dpi-1, node: n9, port: 7100}\n"
			      "  - {id: log-1, node: n2, port: 9000}\n");
	p = rdm_state_plan(&st, &w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	cr_assert_eq(p->n_replicas, 3);
	expect_at(p, "edge-1", "n3", "10.77.0.3:7150");
	expect_at(p, "dpi-1", "n1", "10.77.0.1:7100");
	expect_at(p, "log-1", "n2", "10.77.0.2:7100");
	cr_assert(p->down[3]);
	cr_assert(!p->down[0] && !p->down[1] && !p->down[2]);
	rdm_plan_free(p);
	rdm_state_free(&st);

	/* A saved replica on a node saved as down is placed afresh too. */
	state_text(&st, SHEAD "down: [{node: n2}]\n"
			      "replicas:\n  - {id: edge-1, node: n1, port: 7100}\n"
			      "  - {id: dpi-1, node: n2, port: 7100}\n"
			      "  - {id: log-1, node: n3, port: 7100}\n");
	p = rdm_state_plan(&st, &w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "edge-1", "n1", "10.77.0.1:7100");
	expect_at(p, "dpi-1", "n4", "10.77.0.4:7100");
	expect_at(p, "log-1", "n3", "10.77.0.3:7100");
	rdm_plan_free(p);
	rdm_state_free(&st);
	world_free(&w);
}

Test(state, restore_counts_replicas_per_stage)
{
	struct world w;
	struct rdm_orch_state st;
	struct rdm_plan *p;

	world_load_with(&w, RACK4, CHAIN_HEAD EDGE DPI "    replicas: 2\n" LOG);
	/* dpi was scaled to 3 live: the saved count wins over chain.yaml's 2. log has none
	 * saved (a state written by hand, or the stage's replicas all lost): chain.yaml's
	 * count, placed afresh. */
	state_text(&st, SHEAD "replicas:\n  - {id: edge-1, node: n1, port: 7100}\n"
			      "  - {id: dpi-3, node: n4, port: 7100}\n"
			      "  - {id: dpi-1, node: n2, port: 7100}\n"
			      "  - {id: dpi-2, node: n3, port: 7100}\n");
	p = rdm_state_plan(&st, &w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	cr_assert_eq(p->n_replicas, 5);
	cr_assert_eq(p->stage_replicas[0], 1);
	cr_assert_eq(p->stage_replicas[1], 3);
	cr_assert_eq(p->stage_replicas[2], 1);
	expect_at(p, "dpi-1", "n2", "10.77.0.2:7100");
	expect_at(p, "dpi-2", "n3", "10.77.0.3:7100");
	expect_at(p, "dpi-3", "n4", "10.77.0.4:7100");
	expect_at(p, "log-1", "n1", "10.77.0.1:7101");
	cr_assert_eq(rdm_plan_replica(p, "dpi-3")->node_id, 203);
	rdm_plan_free(p);
	rdm_state_free(&st);

	/* Only dpi-2 saved: dpi has 2 (1 and 2), dpi-1 placed afresh. */
	state_text(&st, SHEAD "replicas:\n  - {id: dpi-2, node: n3, port: 7100}\n");
	p = rdm_state_plan(&st, &w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	cr_assert_eq(p->n_replicas, 4);
	cr_assert_eq(p->stage_replicas[1], 2);
	expect_at(p, "dpi-2", "n3", "10.77.0.3:7100");
	cr_assert_str_neq(node_of(p, "dpi-1"), "n3");
	rdm_plan_free(p);
	rdm_state_free(&st);

	/* Nothing saved at all: rdm_plan_new's placement. */
	state_text(&st, SHEAD);
	p = rdm_state_plan(&st, &w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	{
		struct rdm_plan *fresh = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));

		cr_assert_not_null(fresh, "%s", err);
		expect_same_plan(fresh, p);
		rdm_plan_free(fresh);
	}
	rdm_plan_free(p);
	rdm_state_free(&st);
	world_free(&w);
}

/* ---- rdm_plan_rebase: keeping replicas where they run ---- */

#define FW "  - name: fw\n    run: [stamp]\n"

/* Loads chain.yaml text from DIR/name into s. */
static void spec_load(const char *name, const char *text, struct rdm_chain_spec *s)
{
	cr_assert_eq(rdm_chain_spec_load(put(name, text), s, err, sizeof(err)), 0, "%s", err);
}

/* keep[i] = replica id on rack node k at port (what rebase reads of a kept replica). */
static void keep_at(struct rdm_replica *keep, const char *id, int k, uint16_t port)
{
	memset(keep, 0, sizeof(*keep));
	snprintf(keep->id, sizeof(keep->id), "%s", id);
	keep->node = k;
	keep->port = port;
}

Test(state, rebase_keeps_replicas_when_the_chain_changes)
{
	struct world w;
	struct rdm_chain_spec added, removed, grown;
	struct rdm_plan *p, *q;
	int counts[3] = {2, 4, 1};

	world_load(&w);
	p = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "edge-1", "n1", "10.77.0.1:7100");
	expect_at(p, "dpi-1", "n2", "10.77.0.2:7100");
	expect_at(p, "log-1", "n3", "10.77.0.3:7100");

	/* Nothing changed: the same plan. */
	q = rdm_plan_rebase(&w.rack, &w.spec, NULL, NULL, p->replicas, p->n_replicas, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_same_plan(p, q);
	rdm_plan_free(q);

	/* A stage added before dpi: everything stays, dpi's node id follows its new position,
	 * and fw-1 goes where rdm_plan_new would put it given the rest (n4: 4 cores left). */
	spec_load("added.yaml", CHAIN_HEAD EDGE FW DPI LOG, &added);
	q = rdm_plan_rebase(&w.rack, &added, NULL, NULL, p->replicas, p->n_replicas, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_eq(q->n_replicas, 4);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "dpi-1");
	expect_kept(p, q, "log-1");
	expect_at(q, "fw-1", "n4", "10.77.0.4:7100");
	cr_assert_eq(rdm_plan_replica(q, "dpi-1")->node_id, 301);
	cr_assert_eq(rdm_plan_replica(q, "fw-1")->node_id, 201);
	cr_assert(q->spec == &added && q->rack == &w.rack);
	rdm_plan_free(q);

	/* dpi removed: its replica is gone, the others stay. */
	spec_load("removed.yaml", CHAIN_HEAD EDGE LOG, &removed);
	q = rdm_plan_rebase(&w.rack, &removed, NULL, NULL, p->replicas, p->n_replicas, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_eq(q->n_replicas, 2);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "log-1");
	cr_assert_null(rdm_plan_replica(q, "dpi-1"));
	rdm_plan_free(q);

	/* dpi grows to 3 in chain.yaml: dpi-1 stays, the new ones spread over the nodes
	 * without one (n4 has the most cores left, then n1 and n3 tie: rack order). */
	spec_load("grown.yaml", CHAIN_HEAD EDGE DPI "    replicas: 3\n" LOG, &grown);
	q = rdm_plan_rebase(&w.rack, &grown, NULL, NULL, p->replicas, p->n_replicas, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_eq(q->n_replicas, 5);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "dpi-1");
	expect_kept(p, q, "log-1");
	expect_at(q, "dpi-2", "n4", "10.77.0.4:7100");
	expect_at(q, "dpi-3", "n1", "10.77.0.1:7101");
	rdm_plan_free(q);

	/* counts override chain.yaml's: the kept stay, the new are placed around them. */
	q = rdm_plan_rebase(&w.rack, &w.spec, counts, NULL, p->replicas, p->n_replicas, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_eq(q->n_replicas, 7);
	cr_assert_eq(q->stage_replicas[0], 2);
	cr_assert_eq(q->stage_replicas[1], 4);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "dpi-1");
	expect_kept(p, q, "log-1");
	for (int i = 2; i <= 4; i++) {
		char id[16];

		snprintf(id, sizeof(id), "dpi-%d", i);
		cr_assert_str_neq(node_of(q, id), "n2", "%s beside dpi-1", id);
	}
	cr_assert_str_neq(node_of(q, "edge-2"), "n1");
	rdm_plan_free(q);

	rdm_chain_spec_free(&grown);
	rdm_chain_spec_free(&removed);
	rdm_chain_spec_free(&added);
	rdm_plan_free(p);
	world_free(&w);
}

Test(state, rebase_moves_what_cannot_stay)
{
	struct rdm_rack rack;
	struct rdm_chain_spec spec, zoned;
	struct rdm_plan *p, *q;
	unsigned char down[4] = {0, 1, 0, 0};
	struct rdm_replica keep[3];

	cr_assert_eq(
	    rdm_rack_load(put("rack.yaml",
			      "nodes:\n"
			      "  - {name: n1, control: 10.0.0.1, data: 10.0.0.1, capacity: "
			      "4, labels: {zone: a}}\n"
			      "  - {name: n2, control: 10.0.0.2, data: 10.0.0.2, capacity: "
			      "4, labels: {zone: a}}\n"
			      "  - {name: n3, control: 10.0.0.3, data: 10.0.0.3, capacity: "
			      "4, labels: {zone: b}}\n"
			      "  - {name: n4, control: 10.0.0.4, data: 10.0.0.4, capacity: "
			      "4, labels: {zone: b}}\n"),
			  &rack, err, sizeof(err)),
	    0, "%s", err);
	spec_load("chain.yaml", CHAIN3, &spec);
	p = rdm_plan_new(&rack, &spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "edge-1", "n1", "10.0.0.1:7100");
	expect_at(p, "dpi-1", "n2", "10.0.0.2:7100");
	expect_at(p, "log-1", "n3", "10.0.0.3:7100");

	/* dpi-1's node is down: dpi-1 moves (n4: the most cores left), the others stay. */
	q = rdm_plan_rebase(&rack, &spec, NULL, down, p->replicas, p->n_replicas, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert(q->down[1]);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "log-1");
	expect_at(q, "dpi-1", "n4", "10.0.0.4:7100");
	rdm_plan_free(q);

	/* dpi now wants zone b: dpi-1 leaves n2 (zone a) for n4; edge and log stay. */
	spec_load("zoned.yaml", CHAIN_HEAD EDGE DPI "    placement: {labels: {zone: b}}\n" LOG,
		  &zoned);
	q = rdm_plan_rebase(&rack, &zoned, NULL, NULL, p->replicas, p->n_replicas, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "log-1");
	expect_at(q, "dpi-1", "n4", "10.0.0.4:7100");
	rdm_plan_free(q);

	/* Not enough cores on a node for every replica kept there, taken in plan order:
	 * edge-1 and dpi-1 use 3 of n1's 4 cores, so dpi-2 (2 more) moves and log-1 (1 more)
	 * stays. */
	{
		int counts[3] = {1, 2, 1};
		struct rdm_replica k4[4];

		keep_at(&k4[0], "edge-1", 0, 7100);
		keep_at(&k4[1], "dpi-1", 0, 7101);
		keep_at(&k4[2], "dpi-2", 0, 7102);
		keep_at(&k4[3], "log-1", 0, 7103);
		q = rdm_plan_rebase(&rack, &spec, counts, NULL, k4, 4, err, sizeof(err));
		cr_assert_not_null(q, "%s", err);
		expect_at(q, "edge-1", "n1", "10.0.0.1:7100");
		expect_at(q, "dpi-1", "n1", "10.0.0.1:7101");
		expect_at(q, "log-1", "n1", "10.0.0.1:7103");
		cr_assert_str_neq(node_of(q, "dpi-2"), "n1");
		rdm_plan_free(q);
	}

	/* A node index outside the rack, a port outside its range: placed afresh. */
	keep_at(&keep[0], "edge-1", 7, 7100);
	keep_at(&keep[1], "dpi-1", 1, 7000);
	keep_at(&keep[2], "log-1", -1, 7100);
	q = rdm_plan_rebase(&rack, &spec, NULL, NULL, keep, 3, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_same_plan(p, q);
	rdm_plan_free(q);

	rdm_chain_spec_free(&zoned);
	rdm_plan_free(p);
	rdm_chain_spec_free(&spec);
	rdm_rack_free(&rack);
}

Test(state, rebase_gives_a_port_to_one_kept_replica_only)
{
	struct rdm_rack rack;
	struct rdm_chain_spec spec;
	struct rdm_plan *q;
	struct rdm_replica keep[3];

	/* a and b share a loopback IP, so its ports. */
	cr_assert_eq(rdm_rack_load(put("rack.yaml",
				       "ports: 9000-9099\nnodes:\n"
				       "  - {name: a, control: 127.0.0.1, data: 127.0.0.1, "
				       "capacity: 8}\n"
				       "  - {name: b, control: 127.0.0.1, data: 127.0.0.1, "
				       "capacity: 8}\n"
				       "  - {name: c, control: \"::1\", data: \"::1\", capacity: "
				       "8}\n"),
				   &rack, err, sizeof(err)),
		     0, "%s", err);
	spec_load("chain.yaml",
		  CHAIN_HEAD "  - name: s\n    run: [stamp]\n    replicas: 3\n"
			     "    placement: {spread: false}\n",
		  &spec);
	/* s-1 on a:9000; s-2 claims 9000 on b, the same IP: it is placed afresh (on a, the
	 * most cores left and first, at the lowest free port); s-3 on c:9000 is another IP. */
	keep_at(&keep[0], "s-1", 0, 9000);
	keep_at(&keep[1], "s-2", 1, 9000);
	keep_at(&keep[2], "s-3", 2, 9000);
	q = rdm_plan_rebase(&rack, &spec, NULL, NULL, keep, 3, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_at(q, "s-1", "a", "127.0.0.1:9000");
	expect_at(q, "s-3", "c", "[::1]:9000");
	cr_assert_neq(rdm_plan_replica(q, "s-2")->port, 9000);
	expect_at(q, "s-2", "b", "127.0.0.1:9001");
	rdm_plan_free(q);

	/* The same node and port twice: the second in plan order moves. */
	keep_at(&keep[0], "s-1", 1, 9005);
	keep_at(&keep[1], "s-2", 1, 9005);
	keep_at(&keep[2], "s-3", 1, 9000);
	q = rdm_plan_rebase(&rack, &spec, NULL, NULL, keep, 3, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_at(q, "s-1", "b", "127.0.0.1:9005");
	expect_at(q, "s-3", "b", "127.0.0.1:9000");
	cr_assert_neq(rdm_plan_replica(q, "s-2")->port, 9005);
	cr_assert_neq(rdm_plan_replica(q, "s-2")->port, 9000);
	rdm_plan_free(q);
	rdm_chain_spec_free(&spec);
	rdm_rack_free(&rack);
}

Test(state, rebase_refuses_counts_out_of_range)
{
	struct world w;
	struct rdm_plan *p;
	int zero[3] = {1, 0, 1}, big[3] = {1, 1, RDM_PLAN_MAX_REPLICAS + 1};
	int max[3] = {1, 1, RDM_PLAN_MAX_REPLICAS};

	world_load_with(&w, RACK4_BIG, CHAIN_HEAD EDGE DPI LOG "    placement: {spread: false}\n");
	p = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	errno = 0;
	cr_assert_null(rdm_plan_rebase(&w.rack, &w.spec, zero, NULL, p->replicas, p->n_replicas,
				       err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, "stage 'dpi': 0 replicas is out of range (1..16)");
	errno = 0;
	cr_assert_null(rdm_plan_rebase(&w.rack, &w.spec, big, NULL, p->replicas, p->n_replicas, err,
				       sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, "stage 'log': 17 replicas is out of range (1..16)");
	/* 16 is in range (log does not spread; 16 fit in the rack's cores). */
	{
		struct rdm_plan *q = rdm_plan_rebase(&w.rack, &w.spec, max, NULL, p->replicas,
						     p->n_replicas, err, sizeof(err));

		cr_assert_not_null(q, "%s", err);
		cr_assert_eq(q->n_replicas, 18);
		expect_kept(p, q, "log-1");
		rdm_plan_free(q);
	}
	/* An impossible placement is reported at chain.yaml's position, as rdm_plan_new. */
	max[1] = 5;
	errno = 0;
	cr_assert_null(rdm_plan_rebase(&w.rack, &w.spec, max, NULL, p->replicas, p->n_replicas, err,
				       sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(strncmp(err, w.spec.file, strlen(w.spec.file)), 0, "%s", err);
	cr_assert_not_null(strstr(err, "stage 'dpi': impossible placement: 5 replicas spread"),
			   "%s", err);
	rdm_plan_free(p);
	world_free(&w);
}

Test(state, plan_copy_is_the_same_plan)
{
	struct world w;
	struct rdm_plan *p, *c;

	world_load_with(&w, RACK4_BIG, CHAIN3);
	p = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	take(&p, rdm_plan_scale(p, "dpi", 3, err, sizeof(err)), "scale");
	take(&p, rdm_plan_node_down(p, "n1", err, sizeof(err)), "down n1");
	take(&p, rdm_plan_node_down(p, "n3", err, sizeof(err)), "down n3");
	c = rdm_plan_copy(p);
	cr_assert_not_null(c);
	cr_assert(c->rack == p->rack && c->spec == p->spec);
	cr_assert_neq(c->replicas, p->replicas);
	expect_same_plan(p, c);
	cr_assert(c->down[0] && c->down[2]);
	rdm_plan_free(p);
	/* It owns its arrays: still whole once p is gone. */
	cr_assert_eq(c->n_replicas, 5);
	cr_assert_str_eq(c->replicas[4].id, "log-1");
	rdm_plan_free(c);
	world_free(&w);
}
