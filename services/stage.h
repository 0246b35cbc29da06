/* The stage interface, after haproxy's filters: a stage's configuration is parsed once
 * per node (conf), its runtime state lives per worker (rt), and it processes frames a
 * batch at a time. Stages read the state earlier stages wrote into the frame and add
 * their own. */
#ifndef RDM_STAGE_H
#define RDM_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "transport/frame.h"

struct rdm_ydoc;
struct rdm_ynode;

/* Per-frame results of process(): negative is an error (the frame is dropped and the
 * stage is recorded as the one that failed), 0 drops the frame, positive passes it on.
 * RDM_STAGE_REPLY means the stage turned the frame into a reply to the packet's sender
 * (a TCP RST, an ICMP unreachable): f->pkt now points at the reply, in memory the stage
 * keeps until its next process() call, and the node sends the frame back the way the
 * original came (out of the chain towards the client) instead of on. */
#define RDM_STAGE_DROP	0
#define RDM_STAGE_PASS	1
#define RDM_STAGE_REPLY 2

struct rdm_flow_conf;

/* What a stage's runtime knows about where it runs. */
struct rdm_stage_env {
	uint32_t node_id;
	const char *node_name;
	int worker;
	const struct rdm_flow_conf *flows; /* the chain's flow-table settings */
};

/* Calls emit(name, value) for each counter; names are snake_case. The node sums each
 * name over its workers, so a fact of the conf (a rule count) is emitted by worker 0
 * alone. name need only live during the call. */
typedef void (*rdm_stage_emit)(void *arg, const char *name, uint64_t value);

struct rdm_stage_ops {
	const char *name;
	/* Parses the stage's YAML mapping (NULL when the chain names the stage alone).
	 * Returns a conf the stage owns, or NULL with "FILE:LINE:COL: message" in err. */
	void *(*conf_new)(const struct rdm_ydoc *d, const struct rdm_ynode *conf, char *err,
			  size_t errlen);
	void (*conf_free)(void *conf);
	/* Per-worker runtime from a conf; NULL with errno set. */
	void *(*init)(const void *conf, const struct rdm_stage_env *env);
	void (*deinit)(void *rt);
	/* Processes n frames, writing a result into verdict[i] for each. Frames may be
	 * changed (state added); their strings must point at memory that lives until the
	 * batch is sent. */
	void (*process)(void *rt, struct rdm_frame *const *f, int n, int *verdict);
	/* Reports counters. */
	void (*report)(void *rt, rdm_stage_emit emit, void *arg);

	/* Optional. Builds a fresh conf from the files the old one was loaded from (the node
	 * got SIGHUP). NULL with "FILE:LINE:COL: message" in err keeps the old conf. Runs on
	 * the node's main thread, never on a worker. */
	void *(*conf_reload)(const void *old, char *err, size_t errlen);
	/* Optional (required with conf_reload). Runs on each worker between batches: from
	 * now on use conf. The old conf is freed once every worker has switched. */
	void (*conf_swap)(void *rt, const void *conf);
	/* Optional. Runs on each worker about every 100 ms, and between batches: expire
	 * idle flows, flush buffers. now_ns is CLOCK_MONOTONIC (rdm_now_ns). */
	void (*tick)(void *rt, uint64_t now_ns);
	/* 1 when process never changes a frame's flow state (its key to groups, FLAGS);
	 * hops may be added. A stage that leaves it 0 may: the node then forgets where each
	 * frame's state came from (state_src), and the sender compares fields. */
	int keeps_state;
};

/* The stage registered as name, or NULL. */
const struct rdm_stage_ops *rdm_stage_find(const char *name);

/* Names of all stages, for error messages: NULL-terminated. */
const char *const *rdm_stage_names(void);

extern const struct rdm_stage_ops rdm_stage_stamp;
extern const struct rdm_stage_ops rdm_stage_tag;
extern const struct rdm_stage_ops rdm_stage_identity;
extern const struct rdm_stage_ops rdm_stage_dpi;
extern const struct rdm_stage_ops rdm_stage_policy;
extern const struct rdm_stage_ops rdm_stage_flowlog;

#endif
