/* The flowlog stage's private header: its configuration, per-flow data and per-worker
 * state, and the functions that services/flowlog.c, flowlog_json.c and flowlog_out.c
 * share. */
#ifndef RDM_FLOWLOG_INT_H
#define RDM_FLOWLOG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "services/flowtable.h"

/* Worst line: 6 strings of 255 bytes at 6 output bytes each, 16 such groups and 32 hop
 * entries come to about 40 KiB; the rest is small. */
#define FL_LINE_MAX (64 * 1024)
#define FL_SEC	    1000000000ull

struct fl_conf {
	char *path;
	uint64_t max_bytes, buffer_bytes, interval_ns;
	unsigned keep;
};

/* An owned copy of a frame string (or of the groups, serialized as len-prefixed
 * strings). p is NULL when len is 0. */
struct fl_blob {
	char *p;
	uint16_t len;
};

struct fl_hop {
	uint32_t from, to;
	uint64_t count, skew;
	uint64_t min_ns, max_ns, sum_ns;
};

enum { FS_TENANT, FS_USER, FS_GROUPS, FS_APP, FS_CATEGORY, FS_HOST, FS_RULE, FS_COUNT };

/* Per-flow data in the flow table, zeroed when the flow is created; the end callback
 * frees what it points at. */
struct fl_flow {
	struct fl_blob s[FS_COUNT];
	struct fl_hop *hops;
	uint64_t risk, next_update_ns;
	/* The received state (rdm_frame.state_src) whose fields were all taken last: a frame
	 * with that state again brings nothing new. 0: none. */
	uint64_t learned_src;
	uint32_t present; /* RDM_F_* bits of the state fields seen */
	uint32_t flags, rule_id;
	uint16_t master_proto, app_proto, category_id;
	uint8_t verdict, n_groups, n_hops, cap_hops;
};

struct fl_rt {
	const struct fl_conf *c;
	int worker;
	char *path; /* this worker's file */
	int fd;	    /* -1 while not open */
	int regular;
	uint64_t file_size; /* bytes in the current file (regular files only) */
	char *buf;
	size_t buf_len;
	uint64_t buf_lines;
	char *line;
	struct rdm_flowtab *tab;
	int64_t wall_off; /* CLOCK_REALTIME - CLOCK_MONOTONIC, taken at init */
	uint64_t now_ns;  /* monotonic time of the current call */
	uint64_t last_flush_ns, last_scan_ns;
	/* Real monotonic times for rate limits, independent of the now_ns callers pass. */
	uint64_t last_log_ns, retry_open_ns, retry_rotate_ns;
	int logged;

	uint64_t frames, flows, lines, lines_update, bytes_written, rotations, write_errors,
	    lines_lost, clock_skew, no_flow_key, hops_untracked, oom;
};

/* flowlog_out.c: the worker's output file */
int rdm_flowlog__open(struct fl_rt *rt, int trunc);
void rdm_flowlog__flush(struct fl_rt *rt);
void rdm_flowlog__put(struct fl_rt *rt, const char *line, size_t len);

/* flowlog_json.c: a flow's line */
void rdm_flowlog__line(struct fl_rt *rt, const struct rdm_flow *f, const char *reason);

#endif
