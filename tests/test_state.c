/* The orchestrator's persisted desired state (orchestrator/state.c), as a file: the
 * format and its round trip, the atomic save, and every load error with its position.
 * The placement it saves and restores: tests/test_state_restore.c. Files are written to a
 * fresh temporary directory per test. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orchestrator/state.h"
#include "tests/lib/state_fixture.h"

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
