/* dpi: deep packet inspection with nDPI 4.2. Each worker owns one nDPI detection module
 * and a flow table; every flow's packets, both directions, go to nDPI until its result
 * is final, and from then on the flow takes a fast path that never calls nDPI again.
 * Whatever nDPI knows about a flow (protocols, name, category, host, risk) is written
 * into every frame of the flow as soon as it knows anything, so that a policy stage can
 * act on a TLS ClientHello itself, not only on the packets after it. The stage never
 * drops: deciding is the policy stage's job. Config:
 *   - name: dpi
 *     packet_budget: 32   # packets per flow, both directions, before giving up (1..1000)
 *
 * A result is final when nDPI names a protocol and can dissect nothing more
 * (ndpi_extra_dissection_possible), or when the flow's packet budget is spent: then
 * ndpi_detection_giveup decides (guessing by port where DPI found nothing, as ndpiReader
 * does) and frames carry RDM_FF_DPI_GAVEUP besides RDM_FF_DPI_DONE. */
#include "services/stage.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ndpi_api.h>

#include "lib/pkt.h"
#include "lib/yaml.h"
#include "services/flowtable.h"
#include "services/vcache.h"
#include "lib/clock.h"

#define DPI_BUDGET_DEFAULT 32
#define DPI_BUDGET_MAX	   1000
#define DPI_APP_NAME_MAX   64
/* Host names nDPI keeps are at most this long (host_server_name in nDPI 4.2). */
#define DPI_HOST_MAX ((int)sizeof(((struct ndpi_flow_struct *)0)->host_server_name))
/* Flows ended per process() call, so that expiry keeps up even without tick(). */
#define DPI_EXPIRE_PER_BATCH 8
#define DPI_EXPIRE_PER_TICK  1024
/* Arena bytes a frame may need: app name and host, each a TLV string (the category is
 * nDPI's own name, not copied). */
#define DPI_ARENA_PER_FRAME (2 * (RDM_STR_MAX + 1))

_Static_assert(DPI_HOST_MAX <= RDM_STR_MAX, "an nDPI host name fits a HOST TLV");
_Static_assert(DPI_APP_NAME_MAX <= RDM_STR_MAX, "an app name fits an APP_NAME TLV");

struct dpi_conf {
	uint32_t budget;
};

enum { DPI_INSPECTING = 0, DPI_FINAL };

/* A flow's data in the flow table (zeroed at creation). */
struct dpi_flow {
	struct ndpi_flow_struct *nf; /* NULL once final: nDPI is done with the flow */
	uint16_t inspected;	     /* packets handed to nDPI */
	uint8_t state;		     /* DPI_INSPECTING or DPI_FINAL */
	uint8_t gaveup;		     /* the budget made it final */
	uint8_t has_proto;	     /* master/app/category hold nDPI's answer */
	uint8_t lost;		     /* came back after leaving the table before it was final */
	uint8_t app_len, host_len, cat_len;
	uint16_t master, app, cat_id;
	const char *cat_name; /* nDPI's, valid while the detection module lives */
	ndpi_risk risk;
	char app_name[DPI_APP_NAME_MAX];
	char host[DPI_HOST_MAX];
	/* The batch whose frames point at app_name and host (dpi_detach). */
	uint64_t epoch;
	/* Once final: the ids of the states it writes into frames (dpi_token). */
	struct rdm_state_memo ids;
};

struct dpi_rt {
	const struct dpi_conf *c;
	struct ndpi_detection_module_struct *nd;
	struct rdm_flowtab *flows;
	struct rdm_vcache *lost; /* flows that left the table before DPI was final */
	/* Frames point at their flow's strings until the batch is sent. A flow's strings
	 * that change or go before then are copied for those frames into the arena. */
	char *arena;
	size_t arena_cap, arena_used;
	uint64_t epoch;
	struct rdm_frame *const *batch; /* the batch in dpi_process, NULL outside */
	int batch_done;			/* its frames written so far */
	uint64_t now_ms;
	uint64_t packets, inspected, fastpath, not_ip, no_key, malformed, fragments;
	uint64_t n_flows, detected, gaveup, unknown, unfinished, nomem, lost_back;
	uint64_t moved_in; /* flows first seen mid-stream, moved here by the upstream */
	uint64_t ndpi_ns;
};

/* nDPI's init and exit must not run in parallel (ndpi_api.h); workers may start
 * together. */
static pthread_mutex_t dpi_module_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t dpi_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *dpi_conf_new(const struct rdm_ydoc *d, const struct rdm_ynode *n, char *err,
			  size_t errlen)
{
	static const char *const keys[] = {"name", "packet_budget", NULL};
	struct dpi_conf *c = calloc(1, sizeof(*c));
	uint64_t v = DPI_BUDGET_DEFAULT;

	if (!c) {
		snprintf(err, errlen, "%s: out of memory", d ? rdm_ydoc_name(d) : "dpi");
		return NULL;
	}
	if (n && (rdm_ymap_check_keys(d, n, keys, err, errlen) < 0 ||
		  rdm_ymap_u64(d, n, "packet_budget", 1, DPI_BUDGET_MAX, DPI_BUDGET_DEFAULT, &v,
			       err, errlen) < 0)) {
		free(c);
		return NULL;
	}
	c->budget = (uint32_t)v;
	return c;
}

static void dpi_conf_free(void *c)
{
	free(c);
}

/* Counts a flow's outcome once it is final or ends undecided. */
static void dpi_count_final(struct dpi_rt *rt, const struct dpi_flow *df)
{
	if (df->gaveup)
		rt->gaveup++;
	if (df->app != NDPI_PROTOCOL_UNKNOWN || df->master != NDPI_PROTOCOL_UNKNOWN)
		rt->detected++;
	else
		rt->unknown++;
}

/* Copies n bytes into the batch's arena; the caller sized it in dpi_process. */
static struct rdm_str dpi_arena_str(struct dpi_rt *rt, const char *s, size_t n)
{
	char *p = rt->arena + rt->arena_used;

	if (n > RDM_STR_MAX)
		n = RDM_STR_MAX;
	memcpy(p, s, n);
	rt->arena_used += n;
	return (struct rdm_str){p, (uint8_t)n};
}

/* Before df's strings change or its entry goes: the frames of this batch that point at
 * them get copies in the arena. Each frame's string is copied at most once (it points
 * at the arena then), so the arena's n frames' worth is enough. */
static void dpi_detach(struct dpi_rt *rt, struct dpi_flow *df)
{
	if (df->epoch != rt->epoch || !rt->batch)
		return;
	for (int j = 0; j < rt->batch_done; j++) {
		struct rdm_frame *f = rt->batch[j];

		if ((f->present & RDM_F_APP_NAME) && f->app_name.p == df->app_name)
			f->app_name = dpi_arena_str(rt, df->app_name, f->app_name.len);
		if ((f->present & RDM_F_HOST) && f->host.p == df->host)
			f->host = dpi_arena_str(rt, df->host, f->host.len);
	}
	df->epoch = 0;
}

/* The flow table's end callback: hands the nDPI flow back to nDPI's allocator. */
static void dpi_flow_end(void *arg, struct rdm_flow *f, enum rdm_flow_end why)
{
	struct dpi_rt *rt = arg;
	struct dpi_flow *df = rdm_flow_data(f);

	dpi_detach(rt, df); /* its entry may be a new flow's before the batch is sent */
	if (df->state != DPI_FINAL) {
		rt->unfinished++;
		/* It may come back mid-stream, where nDPI would see less: say so then. */
		if (why == RDM_FLOW_END_EVICTED || why == RDM_FLOW_END_TIMEOUT)
			rdm_vcache_put(rt->lost, f->hash, 1);
	}
	if (df->nf) {
		ndpi_flow_free(df->nf);
		df->nf = NULL;
	}
}

static void dpi_deinit(void *p)
{
	struct dpi_rt *rt = p;

	if (!rt)
		return;
	/* Flows first: their end callback frees nDPI flows, which the module outlives. */
	rdm_flowtab_free(rt->flows);
	rdm_vcache_free(rt->lost);
	rt->flows = NULL;
	if (rt->nd) {
		pthread_mutex_lock(&dpi_module_mu);
		ndpi_exit_detection_module(rt->nd);
		pthread_mutex_unlock(&dpi_module_mu);
		rt->nd = NULL;
	}
	free(rt->arena);
	free(rt);
}

static void *dpi_init(const void *conf, const struct rdm_stage_env *env)
{
	static const struct rdm_flow_conf defaults;
	struct dpi_rt *rt = calloc(1, sizeof(*rt));
	NDPI_PROTOCOL_BITMASK all;
	int err = ENOMEM;

	if (!rt)
		return NULL;
	rt->c = conf;
	rt->flows = rdm_flowtab_new(env && env->flows ? env->flows : &defaults,
				    sizeof(struct dpi_flow), dpi_flow_end, rt);
	rt->lost = rdm_vcache_new(env && env->flows && env->flows->max_flows ? env->flows->max_flows
									     : 65536);
	if (!rt->flows || !rt->lost) {
		err = errno ? errno : ENOMEM;
		goto fail;
	}
	pthread_mutex_lock(&dpi_module_mu);
	rt->nd = ndpi_init_detection_module(ndpi_no_prefs);
	if (rt->nd) {
		NDPI_BITMASK_SET_ALL(all);
		ndpi_set_protocol_detection_bitmask2(rt->nd, &all);
		ndpi_finalize_initialization(rt->nd);
	}
	pthread_mutex_unlock(&dpi_module_mu);
	if (!rt->nd)
		goto fail;
	return rt;
fail:
	dpi_deinit(rt);
	errno = err;
	return NULL;
}

/* Takes nDPI's answer for a flow: protocols, their name and category, host and risk.
 * Frames of this batch that point at strings it changes keep their copies. */
static void dpi_take(struct dpi_rt *rt, struct dpi_flow *df, ndpi_protocol proto)
{
	struct ndpi_flow_struct *nf = df->nf;
	size_t hl = strnlen(nf->host_server_name, sizeof(nf->host_server_name));
	int known = proto.app_protocol != NDPI_PROTOCOL_UNKNOWN ||
		    proto.master_protocol != NDPI_PROTOCOL_UNKNOWN;

	if (known || df->state == DPI_FINAL) {
		if (!df->has_proto || df->master != proto.master_protocol ||
		    df->app != proto.app_protocol || df->cat_id != (uint16_t)proto.category) {
			df->master = proto.master_protocol;
			df->app = proto.app_protocol;
			df->cat_id = (uint16_t)proto.category;
			df->cat_name = ndpi_category_get_name(rt->nd, proto.category);
			df->cat_len =
			    df->cat_name ? (uint8_t)strnlen(df->cat_name, RDM_STR_MAX) : 0;
			dpi_detach(rt, df);
			ndpi_protocol2name(rt->nd, proto, df->app_name, sizeof(df->app_name));
			df->app_len = (uint8_t)strnlen(df->app_name, sizeof(df->app_name));
			df->has_proto = 1;
		}
	}
	if (hl != df->host_len || memcmp(df->host, nf->host_server_name, hl)) {
		dpi_detach(rt, df);
		memcpy(df->host, nf->host_server_name, hl);
		df->host_len = (uint8_t)hl;
	}
	df->risk = nf->risk;
}

/* Hands one packet of a flow that is not final yet to nDPI, and makes the flow final
 * when nDPI is done or the budget is spent. */
static void dpi_inspect(struct dpi_rt *rt, struct dpi_flow *df, const uint8_t *pkt, uint16_t len)
{
	uint64_t t0 = dpi_clock_ns();
	ndpi_protocol proto;
	int known;

	proto = ndpi_detection_process_packet(rt->nd, df->nf, pkt, len, rt->now_ms);
	df->inspected++;
	rt->inspected++;
	known = proto.app_protocol != NDPI_PROTOCOL_UNKNOWN ||
		proto.master_protocol != NDPI_PROTOCOL_UNKNOWN;
	if (known && !ndpi_extra_dissection_possible(rt->nd, df->nf)) {
		df->state = DPI_FINAL;
	} else if (df->inspected >= rt->c->budget) {
		uint8_t guessed = 0;
		ndpi_protocol g = ndpi_detection_giveup(rt->nd, df->nf, 1, &guessed);

		/* Giving up keeps what was detected; should nDPI answer nothing for a flow
		 * it had named, the earlier answer stands. */
		if (g.app_protocol != NDPI_PROTOCOL_UNKNOWN ||
		    g.master_protocol != NDPI_PROTOCOL_UNKNOWN || !known)
			proto = g;
		df->state = DPI_FINAL;
		df->gaveup = 1;
	}
	dpi_take(rt, df, proto);
	rt->ndpi_ns += dpi_clock_ns() - t0;
	if (df->state == DPI_FINAL) {
		dpi_count_final(rt, df);
		/* Fast path from now on: nDPI's flow state is dead weight. */
		ndpi_flow_free(df->nf);
		df->nf = NULL;
	}
}

/* The state id (transport/frame.h) of a frame whose state was in, once dpi_write wrote
 * df into it going in direction dir. A final flow's df no longer changes, so the same
 * state in gives the same state out: one id for it per direction, kept while the state
 * in stays. 0 (unknown) while DPI still inspects, or when in is. */
static uint64_t dpi_token(struct dpi_flow *df, uint64_t in, int dir)
{
	return df->state == DPI_FINAL ? rdm_state_memo_id(&df->ids, dir, in) : 0;
}

/* Writes what is known of a flow into frame f, going in direction dir. Its flags first:
 * a flow DPI lost says so even before DPI has found anything in it (the policy must not
 * wait on it then). */
static void dpi_write(struct dpi_rt *rt, struct dpi_flow *df, struct rdm_frame *f, int dir)
{
	uint64_t in = f->state_src;

	if (df->state == DPI_FINAL)
		rdm_frame_add_flags(f, RDM_FF_DPI_DONE | (df->gaveup ? RDM_FF_DPI_GAVEUP : 0));
	if (df->lost)
		rdm_frame_add_flags(f, RDM_FF_DPI_LOST);
	f->state_src = dpi_token(df, in, dir);
	if (!df->has_proto && !df->host_len)
		return;
	df->epoch = rt->epoch; /* the frame points at the flow's strings: dpi_detach */
	if (df->has_proto) {
		f->master_proto = df->master;
		f->app_proto = df->app;
		f->present |= RDM_F_APP_ID;
		if (df->app_len) {
			f->app_name = (struct rdm_str){df->app_name, df->app_len};
			f->present |= RDM_F_APP_NAME;
		}
		f->category_id = df->cat_id;
		/* nDPI's own name, which lives as long as the detection module: no copy. */
		f->category = (struct rdm_str){df->cat_name ? df->cat_name : "", df->cat_len};
		f->present |= RDM_F_CATEGORY;
	}
	if (df->host_len) {
		f->host = (struct rdm_str){df->host, df->host_len};
		f->present |= RDM_F_HOST;
	}
	if (df->risk) {
		f->risk = df->risk;
		f->present |= RDM_F_RISK;
	}
}

/* The IP packet of a frame as nDPI may see it: trimmed to its IP length (link padding
 * dropped). Returns 0 with *len set, or a counter to bump: not IP, malformed (too short
 * for its headers, or over the 64 KiB nDPI takes), or a later fragment, whose transport
 * header is in the first one (first fragments go to nDPI, as ndpiReader does). */
static uint64_t *dpi_check(struct dpi_rt *rt, const struct rdm_frame *f, uint16_t *len)
{
	struct rdm_flow_key k;
	uint32_t ip_len, l4;

	if (!f->pkt || f->pkt_len < 1 || (f->pkt[0] >> 4 != 4 && f->pkt[0] >> 4 != 6))
		return &rt->not_ip;
	if (rdm_pkt_flow_key_l4(f->pkt, f->pkt_len, &k, &l4) < 0)
		return &rt->malformed;
	if (l4 == 0)
		return &rt->fragments;
	if (k.family == 4)
		ip_len = (uint32_t)f->pkt[2] << 8 | f->pkt[3];
	else if (!(f->pkt[4] | f->pkt[5]) && f->pkt[6] == IPPROTO_HOPOPTS)
		return &rt->malformed; /* a jumbogram: nDPI takes 16-bit lengths */
	else
		ip_len = 40 + ((uint32_t)f->pkt[4] << 8 | f->pkt[5]);
	if (ip_len > UINT16_MAX)
		return &rt->malformed;
	*len = (uint16_t)ip_len;
	return NULL;
}

/* A new entry: a flow that left the table unfinished and comes back mid-stream is
 * marked lost (its frames say so), and so is one the upstream moved here mid-stream
 * from another replica (RDM_FF_MOVED) before any DPI was final for it; a TCP SYN starts
 * a new connection instead. */
static void lost_check(struct dpi_rt *rt, struct rdm_flow *fl, struct dpi_flow *df,
		       const struct rdm_frame *fr, uint8_t tcp)
{
	if (fr->key.proto == IPPROTO_TCP && (tcp & RDM_TCP_SYN) && !(tcp & RDM_TCP_ACK)) {
		rdm_vcache_del(rt->lost, fl->hash);
		return;
	}
	if (rdm_vcache_get(rt->lost, fl->hash) >= 0) {
		df->lost = 1;
		rt->lost_back++;
	} else if ((fr->present & RDM_F_FLAGS) && (fr->flags & RDM_FF_MOVED) &&
		   !(fr->flags & RDM_FF_DPI_DONE)) {
		df->lost = 1;
		rt->moved_in++;
	}
}

static void dpi_process(void *p, struct rdm_frame *const *f, int n, int *verdict)
{
	struct dpi_rt *rt = p;
	uint64_t now = rdm_now_ns();

	/* The previous batch is sent: its strings may go. Size the arena for the worst
	 * case now (dpi_detach), so that it never moves while frames point into it. */
	rt->epoch++;
	rt->arena_used = 0;
	if ((size_t)n * DPI_ARENA_PER_FRAME > rt->arena_cap) {
		size_t cap = (size_t)n * DPI_ARENA_PER_FRAME;
		char *a = realloc(rt->arena, cap);

		if (a) {
			rt->arena = a;
			rt->arena_cap = cap;
		}
	}
	rt->now_ms = now / 1000000;
	rt->batch = f;
	rt->batch_done = 0;
	rdm_flowtab_expire(rt->flows, now, DPI_EXPIRE_PER_BATCH);

	for (int i = 0; i < n; i++) {
		struct rdm_frame *fr = f[i];
		struct rdm_flow *fl;
		struct dpi_flow *df;
		uint64_t *bad, hash;
		uint16_t len = 0;
		int dir, created = 0, checked;
		uint8_t tcp;

		rt->batch_done = i;
		verdict[i] = RDM_STAGE_PASS;
		rt->packets++;
		if (!(fr->present & RDM_F_FLOW_KEY)) {
			rt->no_key++;
			continue;
		}
		tcp = rdm_frame_tcp_flags(fr);
		hash = rdm_frame_flow_hash(fr, &fr->key);
		fl = rdm_flowtab_find_hinted(rt->flows, &fr->key, hash, &dir, fr->hints);
		/* A flow DPI is done with needs no more of its packets than their count: they
		 * are not parsed again. */
		checked = !fl || ((struct dpi_flow *)rdm_flow_data(fl))->state != DPI_FINAL;
		if (checked && (bad = dpi_check(rt, fr, &len))) {
			(*bad)++;
			continue;
		}
		fl = rdm_flowtab_track_found_hinted(rt->flows, fl, &fr->key, hash, fr->pkt_len, tcp,
						    now, &dir, &created, fr->hints);
		if (!fl) {
			/* A full table that refuses new flows: what cannot be inspected does
			 * not go on uninspected. */
			verdict[i] = RDM_STAGE_DROP;
			continue;
		}
		df = rdm_flow_data(fl);
		if (created) {
			rt->n_flows++;
			lost_check(rt, fl, df, fr, tcp);
		}
		if (df->state == DPI_FINAL) {
			rt->fastpath++;
		} else if (!checked && (bad = dpi_check(rt, fr, &len))) {
			/* (A SYN that ended the final flow's closed connection: a new one.) */
			(*bad)++;
		} else {
			/* nDPI 4.2 takes no endpoint ids and no direction: it derives the
			 * direction from the addresses and ports of each packet (unless
			 * ndpi_pref_direction_detect_disable is set), as ndpiReader relies on,
			 * so both of our directions go in as they are. */
			if (!df->nf) {
				df->nf =
				    ndpi_flow_malloc(ndpi_detection_get_sizeof_ndpi_flow_struct());
				if (df->nf)
					memset(df->nf, 0,
					       ndpi_detection_get_sizeof_ndpi_flow_struct());
			}
			if (df->nf)
				dpi_inspect(rt, df, fr->pkt, len);
			else
				rt->nomem++;
		}
		/* Without arena memory the frame goes on without state, never corrupted. */
		if (rt->arena_cap >= (size_t)n * DPI_ARENA_PER_FRAME)
			dpi_write(rt, df, fr, dir);
		else
			rt->nomem++;
	}
	rt->batch = NULL;
}

static void dpi_tick(void *p, uint64_t now_ns)
{
	struct dpi_rt *rt = p;

	rdm_flowtab_expire(rt->flows, now_ns, DPI_EXPIRE_PER_TICK);
}

static void dpi_report(void *p, rdm_stage_emit emit, void *arg)
{
	struct dpi_rt *rt = p;
	struct rdm_flowtab_stats st;

	rdm_flowtab_get_stats(rt->flows, &st);
	emit(arg, "packets", rt->packets);
	emit(arg, "packets_inspected", rt->inspected);
	emit(arg, "packets_fastpath", rt->fastpath);
	emit(arg, "not_ip", rt->not_ip);
	emit(arg, "no_key", rt->no_key);
	emit(arg, "malformed", rt->malformed);
	emit(arg, "fragments", rt->fragments);
	emit(arg, "flows", rt->n_flows);
	emit(arg, "flows_active", st.flows);
	emit(arg, "flows_detected", rt->detected);
	emit(arg, "flows_gaveup", rt->gaveup);
	emit(arg, "flows_unknown", rt->unknown);
	emit(arg, "flows_unfinished", rt->unfinished);
	emit(arg, "flows_evicted", st.evicted);
	emit(arg, "flows_refused", st.refused);
	emit(arg, "flows_lost_back", rt->lost_back);
	emit(arg, "flows_moved_in", rt->moved_in);
	emit(arg, "nomem", rt->nomem);
	emit(arg, "ndpi_ns", rt->ndpi_ns);
}

const struct rdm_stage_ops rdm_stage_dpi = {
    .name = "dpi",
    .conf_new = dpi_conf_new,
    .conf_free = dpi_conf_free,
    .init = dpi_init,
    .deinit = dpi_deinit,
    .process = dpi_process,
    .report = dpi_report,
    .tick = dpi_tick,
    .keeps_state = 1, /* dpi_write gives frames their state's id (dpi_token) */
};
