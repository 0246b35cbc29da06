/* The flowlog stage's output file (services/flowlog_out.c), driven directly
 * (tests/lib/flowlog_stage.h): rotation, kept files, write and open errors, buffering
 * and flushing, per-worker files, appending, partial writes cut back, and lines longer
 * than the buffer. Each test works in its own temporary directory. */
#include <criterion/criterion.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/lib/flowlog_stage.h"

TestSuite(flowlog, .init = setup, .fini = teardown, .timeout = 120);

/* Counts the lines in every file FILE, FILE.1, ... and checks sizes and whole lines. */
Test(flowlog, rotation_keeps_keep_files_and_never_splits_lines)
{
	void *c = conf_with("max_bytes: 4096\nkeep: 2\nbuffer_bytes: 4096\ninterval_s: 0\n"), *rt;
	char p[256];
	struct stat st;
	uint64_t t0, lines;

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	for (int i = 0; i < 60; i++)
		send4(rt, 1, 2, (uint16_t)(10000 + i), 53, -1, 0);
	t0 = rdm_now_ns();
	ops->tick(rt, t0 + 3600 * SEC);
	lines = counter(rt, "lines");
	cr_assert_eq(lines, 60);
	cr_assert_geq(counter(rt, "rotations"), 3);
	cr_assert_eq(counter(rt, "write_errors"), 0);
	cr_assert_eq(counter(rt, "lines_lost"), 0);

	/* FILE, FILE.1, FILE.2 exist; FILE.3 does not. */
	for (int i = 0; i <= 3; i++) {
		if (i)
			snprintf(p, sizeof(p), "%s.%d", logpath, i);
		else
			snprintf(p, sizeof(p), "%s", logpath);
		if (i == 3) {
			cr_assert_lt(stat(p, &st), 0, "%s should not exist", p);
			continue;
		}
		cr_assert_eq(stat(p, &st), 0, "%s missing", p);
		cr_assert_leq(st.st_size, 4096, "%s is %lld bytes", p, (long long)st.st_size);
		/* Every line parses (py fails otherwise) and the file ends in a newline. */
		cr_assert_gt(atoi(py(p, "len(L)")), 0);
		expect(p, "open(sys.argv[1],\"rb\").read().endswith(b\"\\n\")", "True");
		expect(p, "all(l[\"event\"] == \"end\" for l in L)", "True");
	}
	/* The kept files hold the last lines: the newest file has the highest ports, and
	 * together they end with port 10059 (lines are written in expiry order). */
	snprintf(p, sizeof(p), "%s.1", logpath);
	cr_assert_lt(atoi(py(p, "max(l[\"sport\"] for l in L)")),
		     atoi(py(logpath, "min(l[\"sport\"] for l in L)")));
	expect(logpath, "L[-1][\"sport\"]", "10059");
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(flowlog, keep_zero_drops_rotated_file)
{
	void *c = conf_with("max_bytes: 4096\nkeep: 0\ninterval_s: 0\n"), *rt;
	char p[256];
	struct stat st;

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	for (int i = 0; i < 30; i++)
		send4(rt, 1, 2, (uint16_t)(10000 + i), 53, -1, 0);
	ops->tick(rt, rdm_now_ns() + 3600 * SEC);
	cr_assert_geq(counter(rt, "rotations"), 1);
	snprintf(p, sizeof(p), "%s.1", logpath);
	cr_assert_lt(stat(p, &st), 0);
	cr_assert_eq(stat(logpath, &st), 0);
	cr_assert_leq(st.st_size, 4096);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(flowlog, write_error_is_counted_not_fatal)
{
	void *c = conf_from("name: flowlog\nfile: /dev/full\n"), *rt;
	uint64_t t0;

	cr_assert_not_null(c, "%s", err);
	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	send4(rt, 1, 2, 1000, 53, -1, 0);
	send4(rt, 1, 2, 1001, 53, -1, 0);
	t0 = rdm_now_ns();
	ops->tick(rt, t0 + 3600 * SEC);
	cr_assert_eq(counter(rt, "lines"), 2);
	cr_assert_geq(counter(rt, "write_errors"), 1);
	cr_assert_eq(counter(rt, "lines_lost"), 2);
	cr_assert_eq(counter(rt, "bytes_written"), 0);
	cr_assert_eq(counter(rt, "rotations"), 0); /* a device is never rotated */
	/* Traffic keeps flowing, and more lines are lost the same way. */
	send4(rt, 1, 2, 1002, 53, -1, 0);
	ops->tick(rt, t0 + 7200 * SEC);
	cr_assert_eq(counter(rt, "lines_lost"), 3);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(flowlog, unopenable_file_is_counted_not_fatal)
{
	char y[256];
	void *c, *rt;

	snprintf(y, sizeof(y), "name: flowlog\nfile: %s/no/such/dir/f.json\n", dir);
	c = conf_from(y);
	cr_assert_not_null(c, "%s", err);
	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	cr_assert_eq(counter(rt, "write_errors"), 1);
	send4(rt, 1, 2, 1000, 53, -1, 0);
	ops->tick(rt, rdm_now_ns() + 3600 * SEC);
	cr_assert_eq(counter(rt, "lines_lost"), 1);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(flowlog, buffered_until_tick_flush)
{
	void *c = conf_with("interval_s: 0\n"), *rt;
	struct stat st;
	uint64_t t0;

	fconf = (struct rdm_flow_conf){.udp_idle_ms = 1000};
	rt = rt_new(c, 0);
	send4(rt, 1, 2, 1000, 53, -1, 0);
	t0 = rdm_now_ns();
	ops->tick(rt, t0 + 2 * SEC); /* ends the flow and flushes */
	cr_assert_eq(stat(logpath, &st), 0);
	cr_assert_gt(st.st_size, 0);
	cr_assert_eq((uint64_t)st.st_size, counter(rt, "bytes_written"));
	send4(rt, 1, 2, 1001, 53, -1, 0);
	ops->tick(rt, t0 + 4 * SEC + SEC / 2); /* flow ends; flushed a second or more on */
	ops->tick(rt, t0 + 4 * SEC + SEC / 2 + SEC / 10);
	expect(logpath, "len(L)", "2");
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(flowlog, worker_files)
{
	void *c = conf_with(NULL), *r0, *r1;
	char p[256];

	fconf = (struct rdm_flow_conf){0};
	r0 = rt_new(c, 0);
	r1 = rt_new(c, 1);
	send4(r0, 1, 2, 1000, 53, -1, 0);
	send4(r1, 1, 2, 2000, 53, -1, 0);
	ops->deinit(r0);
	ops->deinit(r1);
	ops->conf_free(c);
	snprintf(p, sizeof(p), "%s.w1", logpath);
	expect(logpath, "[l[\"sport\"] for l in L]", "[1000]");
	expect(p, "[l[\"sport\"] for l in L]", "[2000]");
}

Test(flowlog, appends_to_existing_file)
{
	void *c = conf_with(NULL), *rt;
	FILE *fp = fopen(logpath, "w");

	cr_assert_not_null(fp);
	fputs("{\"old\":1}\n", fp);
	fclose(fp);
	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	send4(rt, 1, 2, 1000, 53, -1, 0);
	ops->deinit(rt);
	ops->conf_free(c);
	expect(logpath, "len(L), L[0]", "(2, {'old': 1})");
}

/* A write cut short (here by RLIMIT_FSIZE, as a nearly full disk would) loses the
 * batch's lines but leaves no half line in the file. */
Test(flowlog, partial_write_is_cut_back_to_whole_lines)
{
	void *c = conf_with("interval_s: 0\n"), *rt;
	struct rlimit rl;
	rlim_t old;
	uint64_t t0, size1;
	struct stat st;

	fconf = (struct rdm_flow_conf){.udp_idle_ms = 1000};
	rt = rt_new(c, 0);
	send4(rt, 1, 2, 1000, 53, -1, 0);
	t0 = rdm_now_ns();
	ops->tick(rt, t0 + 2 * SEC);
	size1 = counter(rt, "bytes_written");
	cr_assert_gt(size1, 0);
	/* Room for about one and a half more lines. */
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	old = rl.rlim_cur;
	rl.rlim_cur = size1 + size1 * 3 / 2;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	for (int i = 0; i < 5; i++)
		send4(rt, 1, 2, (uint16_t)(2000 + i), 53, -1, 0);
	ops->tick(rt, t0 + 10 * SEC);
	cr_assert_eq(counter(rt, "lines_lost"), 5);
	cr_assert_eq(counter(rt, "write_errors"), 1);
	cr_assert_eq(stat(logpath, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, size1);
	expect(logpath, "[l[\"sport\"] for l in L]", "[1000]");
	/* Once there is room again, lines follow the whole ones. */
	rl.rlim_cur = old;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	send4(rt, 1, 2, 3000, 53, -1, 0);
	ops->tick(rt, t0 + 20 * SEC);
	expect(logpath, "[l[\"sport\"] for l in L]", "[1000, 3000]");
	ops->deinit(rt);
	ops->conf_free(c);
}

/* A line longer than both the buffer and max_bytes is written whole, alone in a file. */
Test(flowlog, long_line_written_whole_and_alone)
{
	void *c = conf_with("interval_s: 0\nmax_bytes: 4096\nbuffer_bytes: 4096\n"), *rt;
	static char g[RDM_MAX_GROUPS][RDM_STR_MAX];
	struct rdm_frame f;
	uint8_t *p = pktmem[0];
	char p1[256];

	fconf = (struct rdm_flow_conf){.udp_idle_ms = 1000};
	rt = rt_new(c, 0);
	send4(rt, 1, 2, 1000, 53, -1, 0);
	ops->tick(rt, rdm_now_ns() + 2 * SEC);
	frame(&f, p, pkt4(p, 1, 2, 2000, 53, -1, 0));
	f.present |= RDM_F_GROUPS;
	f.n_groups = RDM_MAX_GROUPS;
	for (int i = 0; i < RDM_MAX_GROUPS; i++) {
		memset(g[i], 'a' + i, RDM_STR_MAX);
		f.groups[i] = (struct rdm_str){g[i], RDM_STR_MAX};
	}
	run1(rt, &f);
	ops->deinit(rt);
	ops->conf_free(c);
	snprintf(p1, sizeof(p1), "%s.1", logpath);
	expect(p1, "[l[\"sport\"] for l in L]", "[1000]");
	expect(logpath,
	       "len(L), L[0][\"sport\"], len(L[0][\"groups\"]), set(map(len, L[0][\"groups\"]))",
	       "(1, 2000, 16, {255})");
}

/* process() flushes a second after the last flush even when no tick comes. */
Test(flowlog, process_flushes_without_ticks)
{
	void *c = conf_with(NULL), *rt;

	fconf = (struct rdm_flow_conf){.max_flows = 1};
	rt = rt_new(c, 0);
	ops->tick(rt, 1); /* the last flush was "long ago" */
	send4(rt, 1, 2, 1000, 53, -1, 0);
	send4(rt, 1, 2, 1001, 53, -1, 0); /* evicts the first: its line is flushed */
	expect(logpath, "[(l[\"sport\"], l[\"reason\"]) for l in L]", "[(1000, 'evicted')]");
	ops->deinit(rt);
	ops->conf_free(c);
}
