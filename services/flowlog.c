/* flowlog: writes one JSON line per flow when it ends, and a periodic line for long
 * flows, at the chain's egress node. Frames always pass; logging never drops or delays
 * traffic. Config:
 *   - name: flowlog
 *     file: /var/log/rdmesh/flows.json  # required; relative to the node's working dir
 *     max_bytes: 67108864   # rotate before the file would exceed this (>= 4096)
 *     keep: 5               # rotated files kept: FILE.1 (newest) .. FILE.keep; 0 = none
 *     interval_s: 60        # "update" line for flows living longer; 0 = off
 *     buffer_bytes: 65536   # write buffer (>= 4096)
 *
 * Files: worker 0 writes FILE, worker N > 0 writes FILE.wN (a stage cannot see how many
 * workers its node runs, so worker 0 never takes a suffix). Each worker rotates its own
 * file: FILE.(keep-1) -> FILE.keep, ..., FILE -> FILE.1, then a fresh FILE. A line is
 * never split across files; a single line longer than max_bytes goes alone into an
 * otherwise empty file. Only regular files are rotated or size-tracked, so pointing
 * file at a device or pipe (/dev/stdout) works. An existing file is appended to; new
 * files are mode 0640 (lines name users). Lines are buffered and written when the
 * buffer fills, at least once a second (from tick(), and from process() in case ticks
 * are rare), and at deinit. Output errors (ENOSPC, EACCES at open, a failed rename) are
 * counted in write_errors and logged to stderr at most once a second; the lines they
 * cost are counted in lines_lost (a partly written batch is cut back off a regular
 * file so that no half line stays). A file that cannot be opened is retried at most
 * once a second.
 *
 * Line (keys always present, always in this order; a field no frame carried is null,
 * so every line has the same shape; the two flags identity_unknown and dpi_done are
 * false rather than null when no FLAGS TLV was seen):
 *   ts        when the line was made (ISO-8601 UTC, microseconds)
 *   event     "end" or "update" (periodic; counters are totals since the flow began)
 *   reason    end: "closed" | "timeout" | "evicted" | "shutdown"; update: null
 *   proto     "tcp" "udp" "icmp" "icmpv6" "sctp" "gre" "esp" "udplite", else the number
 *             as a string; src, sport, dst, dport in the initiator's orientation
 *   tenant user groups identity_unknown   (identity; groups is a list)
 *   app master_proto app_proto category category_id host risk dpi_done   (DPI)
 *   verdict   "allow" "deny" "reject" "log", "none" when no policy verdict was seen
 *   rule rule_id
 *   packets_fwd bytes_fwd packets_rev bytes_rev   (fwd = initiator to responder)
 *   first last duration_ms   (first and last packet)
 *   hops      [{"from","to","count","min_us","mean_us","max_us","skew"}], one entry per
 *             (from, to) node pair seen in the frames' hop timestamps, in order of first
 *             appearance; skew counts samples where the later hop's clock was behind
 *             (they are left out of count/min/mean/max, which are null when count is 0)
 * State fields (identity, DPI, verdict) come from the latest frame that carried each.
 * Strings are JSON-escaped; bytes that are not valid UTF-8 become \u00XX of the byte.
 *
 * This file holds the stage (configuration, flows, hops); the line is formatted in
 * services/flowlog_json.c and written in services/flowlog_out.c. */
#include "services/stage.h"
#include "services/flowlog_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/pkt.h"
#include "lib/yaml.h"
#include "services/flowtable.h"
#include "lib/clock.h"

#define FL_MAX_HOP_PAIRS  32
#define FL_EXPIRE_PROCESS 64   /* flows ended per process() call at most */
#define FL_EXPIRE_TICK	  8192 /* and per tick() */
/* Room after the path for ".w" + worker + "." + rotation index. */
#define FL_PATH_MAX (PATH_MAX - 32)

/* ---- configuration ---- */

static void fl_conf_free(void *p)
{
	struct fl_conf *c = p;

	if (!c)
		return;
	free(c->path);
	free(c);
}

static void *fl_conf_new(const struct rdm_ydoc *d, const struct rdm_ynode *n, char *err,
			 size_t errlen)
{
	static const char *const keys[] = {"name",	 "file",	 "max_bytes", "keep",
					   "interval_s", "buffer_bytes", NULL};
	struct fl_conf *c = calloc(1, sizeof(*c));
	const struct rdm_ynode *v;
	const char *s;
	uint64_t u;

	if (!c) {
		snprintf(err, errlen, "%s: out of memory", rdm_ydoc_name(d));
		return NULL;
	}
	if (n && rdm_ymap_check_keys(d, n, keys, err, errlen) < 0)
		goto err;
	if (!n || !(v = rdm_ymap_get(n, "file"))) {
		rdm_yerr(d, n, err, errlen, "stage flowlog needs file");
		goto err;
	}
	if (rdm_yget_str(d, v, &s, err, errlen) < 0)
		goto err;
	if (!*s || strlen(s) > FL_PATH_MAX) {
		rdm_yerr(d, v, err, errlen, "file: must be 1 to %d bytes", FL_PATH_MAX);
		goto err;
	}
	if (!(c->path = strdup(s))) {
		snprintf(err, errlen, "%s: out of memory", rdm_ydoc_name(d));
		goto err;
	}
	if (rdm_ymap_u64(d, n, "max_bytes", 4096, 1ull << 50, 64ull << 20, &c->max_bytes, err,
			 errlen) < 0 ||
	    rdm_ymap_u64(d, n, "buffer_bytes", 4096, 64ull << 20, 64ull << 10, &c->buffer_bytes,
			 err, errlen) < 0)
		goto err;
	if (rdm_ymap_u64(d, n, "keep", 0, 1000, 5, &u, err, errlen) < 0)
		goto err;
	c->keep = (unsigned)u;
	if (rdm_ymap_u64(d, n, "interval_s", 0, 7 * 86400, 60, &u, err, errlen) < 0)
		goto err;
	c->interval_ns = u * FL_SEC;
	return c;
err:
	fl_conf_free(c);
	return NULL;
}

static const char *const reason_name[] = {
    [RDM_FLOW_END_TIMEOUT] = "timeout",
    [RDM_FLOW_END_CLOSED] = "closed",
    [RDM_FLOW_END_EVICTED] = "evicted",
    [RDM_FLOW_END_SHUTDOWN] = "shutdown",
};

/* ---- flows ---- */

static void fl_flow_release(struct fl_flow *d)
{
	for (int i = 0; i < FS_COUNT; i++)
		free(d->s[i].p);
	free(d->hops);
	memset(d, 0, sizeof(*d));
}

/* The flow table's end callback: the flow's last line. */
static void fl_end(void *arg, struct rdm_flow *f, enum rdm_flow_end why)
{
	struct fl_rt *rt = arg;

	rdm_flowlog__line(rt, f, reason_name[why]);
	fl_flow_release(rdm_flow_data(f));
}

/* Makes b a copy of the n bytes at s. 0, or -ENOMEM with b unchanged. */
static int blob_set(struct fl_blob *b, const char *s, size_t n)
{
	char *p = NULL;

	if (b->len == n && (!n || !memcmp(b->p, s, n)))
		return 0;
	if (n && !(p = malloc(n)))
		return -ENOMEM;
	if (n)
		memcpy(p, s, n);
	free(b->p);
	b->p = p;
	b->len = (uint16_t)n;
	return 0;
}

/* Takes the state fields f carries into d (newer values win); -ENOMEM when a string
 * could not be kept (counted). */
static int fl_learn(struct fl_rt *rt, struct fl_flow *d, const struct rdm_frame *f)
{
	static const struct {
		uint32_t bit;
		int slot;
		size_t off;
	} strs[] = {
	    {RDM_F_TENANT, FS_TENANT, offsetof(struct rdm_frame, tenant)},
	    {RDM_F_USER, FS_USER, offsetof(struct rdm_frame, user)},
	    {RDM_F_APP_NAME, FS_APP, offsetof(struct rdm_frame, app_name)},
	    {RDM_F_CATEGORY, FS_CATEGORY, offsetof(struct rdm_frame, category)},
	    {RDM_F_HOST, FS_HOST, offsetof(struct rdm_frame, host)},
	    {RDM_F_RULE, FS_RULE, offsetof(struct rdm_frame, rule)},
	};
	uint32_t p = f->present;
	int rc = 0;

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		const struct rdm_str *s = (const void *)((const char *)f + strs[i].off);

		if (!(p & strs[i].bit))
			continue;
		if (blob_set(&d->s[strs[i].slot], s->p, s->len) < 0) {
			rt->oom++;
			rc = -ENOMEM;
		} else {
			d->present |= strs[i].bit;
		}
	}
	if (p & RDM_F_GROUPS) {
		char g[RDM_MAX_GROUPS * (RDM_STR_MAX + 1)];
		size_t len = 0;
		int n = f->n_groups < RDM_MAX_GROUPS ? f->n_groups : RDM_MAX_GROUPS;

		for (int i = 0; i < n; i++) {
			g[len++] = (char)f->groups[i].len;
			memcpy(g + len, f->groups[i].p, f->groups[i].len);
			len += f->groups[i].len;
		}
		if (blob_set(&d->s[FS_GROUPS], g, len) < 0) {
			rt->oom++;
			rc = -ENOMEM;
		} else {
			d->present |= RDM_F_GROUPS;
			d->n_groups = (uint8_t)n;
		}
	}
	if (p & RDM_F_APP_ID) {
		d->master_proto = f->master_proto;
		d->app_proto = f->app_proto;
	}
	if (p & RDM_F_CATEGORY)
		d->category_id = f->category_id;
	if (p & RDM_F_VERDICT) {
		d->verdict = f->verdict;
		d->rule_id = f->rule_id;
	}
	if (p & RDM_F_FLAGS)
		d->flags = f->flags;
	if (p & RDM_F_RISK)
		d->risk = f->risk;
	d->present |= p & (RDM_F_APP_ID | RDM_F_VERDICT | RDM_F_FLAGS | RDM_F_RISK);
	return rc;
}

/* The stats entry of hop from -> to, created when new; NULL when the flow already has
 * FL_MAX_HOP_PAIRS of them or memory ran out. */
static struct fl_hop *fl_hop(struct fl_rt *rt, struct fl_flow *d, uint32_t from, uint32_t to)
{
	struct fl_hop *h;

	for (int i = 0; i < d->n_hops; i++)
		if (d->hops[i].from == from && d->hops[i].to == to)
			return &d->hops[i];
	if (d->n_hops == FL_MAX_HOP_PAIRS) {
		rt->hops_untracked++;
		return NULL;
	}
	if (d->n_hops == d->cap_hops) {
		int cap = d->cap_hops ? d->cap_hops * 2 : 4;

		h = realloc(d->hops, (size_t)cap * sizeof(*h));
		if (!h) {
			rt->oom++;
			return NULL;
		}
		d->hops = h;
		d->cap_hops = (uint8_t)cap;
	}
	h = &d->hops[d->n_hops++];
	memset(h, 0, sizeof(*h));
	h->from = from;
	h->to = to;
	return h;
}

/* Adds the latency between each pair of consecutive hop timestamps of f. */
static void fl_hops(struct fl_rt *rt, struct fl_flow *d, const struct rdm_frame *f)
{
	int n = f->n_hops < RDM_MAX_HOPS ? f->n_hops : RDM_MAX_HOPS;

	if (!(f->present & RDM_F_HOPS))
		return;
	for (int i = 0; i + 1 < n; i++) {
		struct fl_hop *h = fl_hop(rt, d, f->hops[i].node, f->hops[i + 1].node);
		uint64_t a = f->hops[i].ns, b = f->hops[i + 1].ns, dt;

		if (b < a) {
			/* The clocks disagree (not PTP-synced): no latency to learn. */
			rt->clock_skew++;
			if (h)
				h->skew++;
			continue;
		}
		if (!h)
			continue;
		dt = b - a;
		if (!h->count || dt < h->min_ns)
			h->min_ns = dt;
		if (dt > h->max_ns)
			h->max_ns = dt;
		h->sum_ns += dt;
		h->count++;
	}
}

static void fl_update_one(void *arg, struct rdm_flow *f)
{
	struct fl_rt *rt = arg;
	struct fl_flow *d = rdm_flow_data(f);

	if (rt->now_ns < d->next_update_ns)
		return;
	rdm_flowlog__line(rt, f, NULL);
	d->next_update_ns = rt->now_ns + rt->c->interval_ns;
}

/* ---- stage ---- */

static void fl_deinit(void *p)
{
	struct fl_rt *rt = p;

	if (!rt)
		return;
	rt->now_ns = rdm_now_ns();
	/* Ends every flow with reason shutdown, through fl_end. */
	rdm_flowtab_free(rt->tab);
	rt->tab = NULL;
	if (rt->buf)
		rdm_flowlog__flush(rt);
	if (rt->fd >= 0)
		close(rt->fd);
	free(rt->buf);
	free(rt->line);
	free(rt->path);
	free(rt);
}

static void *fl_init(const void *conf, const struct rdm_stage_env *env)
{
	const struct fl_conf *c = conf;
	struct rdm_flow_conf fc = {0};
	struct fl_rt *rt = calloc(1, sizeof(*rt));
	int rc;

	if (!rt)
		return NULL;
	rt->c = c;
	rt->fd = -1;
	rt->worker = env->worker;
	if (env->flows)
		fc = *env->flows;
	if (env->worker > 0)
		rc = asprintf(&rt->path, "%s.w%d", c->path, env->worker);
	else
		rc = (rt->path = strdup(c->path)) ? 0 : -1;
	if (rc < 0) {
		rt->path = NULL;
		goto nomem;
	}
	rt->buf = malloc(c->buffer_bytes);
	rt->line = malloc(FL_LINE_MAX);
	if (!rt->buf || !rt->line)
		goto nomem;
	rt->tab = rdm_flowtab_new(&fc, sizeof(struct fl_flow), fl_end, rt);
	if (!rt->tab) {
		rc = errno;
		fl_deinit(rt);
		errno = rc;
		return NULL;
	}
	rt->wall_off = (int64_t)(rdm_wall_ns() - rdm_now_ns());
	/* A file that cannot be opened yet is counted and retried: the traffic matters more
	 * than its log. */
	rdm_flowlog__open(rt, 0);
	return rt;
nomem:
	fl_deinit(rt);
	errno = ENOMEM;
	return NULL;
}

static void fl_process(void *p, struct rdm_frame *const *fr, int n, int *verdict)
{
	struct fl_rt *rt = p;

	rt->now_ns = rdm_now_ns();
	for (int i = 0; i < n; i++) {
		struct rdm_frame *f = fr[i];
		struct rdm_flow_key k;
		struct rdm_flow *fl;
		struct fl_flow *d;
		uint8_t tcp = 0;
		int dir, created;

		verdict[i] = RDM_STAGE_PASS;
		rt->frames++;
		if (f->present & RDM_F_FLOW_KEY)
			k = f->key;
		else if (!f->pkt || rdm_pkt_flow_key(f->pkt, f->pkt_len, &k) < 0) {
			rt->no_flow_key++;
			continue;
		}
		if (k.proto == IPPROTO_TCP)
			tcp = rdm_frame_tcp_flags(f);
		fl = rdm_flowtab_track(rt->tab, &k,
				       (f->present & RDM_F_FLOW_KEY)
					   ? rdm_frame_flow_hash(f, &f->key)
					   : rdm_flow_hash(&k),
				       f->pkt_len, tcp, rt->now_ns, &dir, &created);
		if (!fl) {
			/* Full and refusing new flows: a flow that cannot be logged does not
			 * pass unlogged. */
			verdict[i] = RDM_STAGE_DROP;
			continue;
		}
		d = rdm_flow_data(fl);
		if (created) {
			rt->flows++;
			d->next_update_ns = rt->now_ns + rt->c->interval_ns;
		}
		/* A frame whose state is the received state learned last (known by its id,
		 * which stands for exactly those fields) is not compared again. */
		if (!f->state_src || f->state_src != d->learned_src)
			d->learned_src = fl_learn(rt, d, f) == 0 ? f->state_src : 0;
		fl_hops(rt, d, f);
	}
	rdm_flowtab_expire(rt->tab, rt->now_ns, FL_EXPIRE_PROCESS);
	/* tick() flushes too; this keeps lines from waiting on a node that ticks rarely. */
	if (rt->buf_len &&
	    (rt->now_ns < rt->last_flush_ns || rt->now_ns - rt->last_flush_ns >= FL_SEC)) {
		rt->last_flush_ns = rt->now_ns;
		rdm_flowlog__flush(rt);
	}
}

static void fl_tick(void *p, uint64_t now_ns)
{
	struct fl_rt *rt = p;

	rt->now_ns = now_ns;
	rdm_flowtab_expire(rt->tab, now_ns, FL_EXPIRE_TICK);
	/* Periodic lines: a walk over the table, so once a second rather than every tick. */
	if (rt->c->interval_ns &&
	    (now_ns < rt->last_scan_ns || now_ns - rt->last_scan_ns >= FL_SEC)) {
		rt->last_scan_ns = now_ns;
		rdm_flowtab_foreach(rt->tab, fl_update_one, rt);
	}
	if (now_ns < rt->last_flush_ns || now_ns - rt->last_flush_ns >= FL_SEC) {
		rt->last_flush_ns = now_ns;
		rdm_flowlog__flush(rt);
	}
}

static void fl_report(void *p, rdm_stage_emit emit, void *arg)
{
	struct fl_rt *rt = p;
	struct rdm_flowtab_stats st;

	rdm_flowtab_get_stats(rt->tab, &st);
	emit(arg, "frames", rt->frames);
	emit(arg, "flows", rt->flows);
	emit(arg, "lines", rt->lines);
	emit(arg, "lines_update", rt->lines_update);
	emit(arg, "bytes_written", rt->bytes_written);
	emit(arg, "rotations", rt->rotations);
	emit(arg, "write_errors", rt->write_errors);
	emit(arg, "lines_lost", rt->lines_lost);
	emit(arg, "clock_skew", rt->clock_skew);
	emit(arg, "no_flow_key", rt->no_flow_key);
	emit(arg, "hops_untracked", rt->hops_untracked);
	emit(arg, "oom", rt->oom);
	emit(arg, "flows_active", st.flows);
	emit(arg, "flows_evicted", st.evicted);
	emit(arg, "flows_refused", st.refused);
	emit(arg, "flows_timeout", st.timeouts);
	emit(arg, "flows_closed", st.closed);
}

const struct rdm_stage_ops rdm_stage_flowlog = {
    .name = "flowlog",
    .conf_new = fl_conf_new,
    .conf_free = fl_conf_free,
    .init = fl_init,
    .deinit = fl_deinit,
    .process = fl_process,
    .report = fl_report,
    .tick = fl_tick,
};
