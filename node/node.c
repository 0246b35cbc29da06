#include "node/node.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "lib/flowcount.h"
#include "node/gen.h"
#include "lib/hist.h"
#include "node/maglev.h"
#include "node/pcapio.h"
#include "lib/pkt.h"
#include "node/tun.h"
#include "lib/yaml.h"
#include "services/flowtable.h"
#include "services/stage.h"
#include "transport/frame.h"
#include "transport/transport.h"

#define MAX_STAGES	16
#define MAX_UPS		64
#define MAX_ORIGINS	256
#define HDR_SLOT	4096
#define INGRESS_SI	255
#define TICK_MS		100
#define EGRESS_GRACE_NS 500000000ull	   /* how long the egress waits for late packets */
#define MAX_DOWNS	(2 * RDM_MAX_NEXT) /* replicas of the next stage, plus ones draining */
#define SHUT_GRACE_NS	2000000000ull /* how long a leaving node waits for next hops to close */

/* Which way a batch travels: forward from the chain's ingress towards its egress, or
 * back (inline mode's return traffic, and stages' replies to a packet's sender). */
enum { FWD = 0, BACK = 1 };

/* Why a frame was dropped. Decode errors come first, one per RDM_FERR_* code. */
enum drop_reason {
	DROP_DECODE_FIRST = 0,
	DROP_TTL = RDM_FERR_COUNT,
	DROP_NOT_IP,
	DROP_PEER_DOWN,
	DROP_QUEUE_FULL,
	DROP_OVERSIZE,
	DROP_STAGE,
	DROP_STAGE_ERROR,
	DROP_NO_PATH,	/* going back, but no upstream connection carried the flow */
	DROP_NO_CLIENT, /* going back to an ingress that replays a file: nobody to reach */
	DROP_TUN,	/* the TUN device did not take the packet (its queue is full) */
	DROP_COUNT,
};

static const char *drop_name(int r)
{
	static const char *const names[] = {
	    [DROP_TTL] = "ttl_expired",		  [DROP_NOT_IP] = "not_ip",
	    [DROP_PEER_DOWN] = "peer_down",	  [DROP_QUEUE_FULL] = "queue_full",
	    [DROP_OVERSIZE] = "oversize",	  [DROP_STAGE] = "stage_verdict",
	    [DROP_STAGE_ERROR] = "stage_error",	  [DROP_NO_PATH] = "no_return_path",
	    [DROP_NO_CLIENT] = "reply_no_client", [DROP_TUN] = "tun_full",
	};

	if (r < RDM_FERR_COUNT)
		return rdm_frame_strerror(-(RDM_FERR_FIRST + r));
	return names[r];
}

struct worker_stats {
	uint64_t rx_frames;
	uint64_t tx_frames;
	uint64_t drops[DROP_COUNT];
	uint64_t stalls; /* batches held back because the next hop was congested */
	uint64_t ingress_taken, ingress_sent;
	uint64_t ingress_reconnect_seq; /* first seq sent after the latest reconnect */
	uint64_t egress_packets, egress_bytes;
	uint64_t stage_drop[MAX_STAGES], stage_error[MAX_STAGES];
	uint64_t back_rx_frames;      /* frames that came back from the next hop */
	uint64_t back_tx_frames;      /* frames sent back to an upstream node */
	uint64_t replies;	      /* frames stages turned into replies */
	uint64_t tun_rx, tun_tx;      /* packets read from and written to the TUN device */
	uint64_t notices;	      /* state-only notices that reached the egress */
	uint64_t pins_moved;	      /* flows re-steered because their replica went away */
	uint64_t drained_idle;	      /* draining replicas closed once no flow was pinned */
	uint64_t drain_timeouts;      /* draining replicas closed with flows still pinned */
	uint64_t drained_unreachable; /* draining replicas closed because unreachable */
	uint64_t pins_detoured; /* new flows started off the table's pick: it was not connected */
};

struct origin {
	uint32_t id;
	uint64_t next, received, lost, reordered;
};

/* The replicas of the next stage a node steers to, and the Maglev table over their
 * names. Immutable once published; every one is kept until the node is freed. */
struct steer {
	int n;
	const char *name[RDM_MAX_NEXT];
	const struct rdm_addr *peer[RDM_MAX_NEXT];
	struct rdm_maglev *mg;
	struct rdm_chain_conf *chain; /* a reloaded chain file the names point into, or NULL */
	struct steer *older;
};

/* A worker's connection to one replica of the next stage. A replica that leaves the
 * table drains: it gets no new flows, and goes once no flow is pinned to it or the
 * drain timeout passes. */
struct down {
	struct rdm_conn *c; /* NULL: the slot is free */
	const char *name;
	const struct rdm_addr *peer;
	int active;  /* in the current table */
	int closing; /* drained: told it we are done, waiting for it to close */
	int shut_tx; /* the worker finished: told it we are done, waiting for it to close */
	int ever_up;
	uint32_t gen;  /* bumped when the slot is freed: pins to the old replica go stale */
	uint64_t pins; /* flows pinned to this replica */
	uint64_t drain_start_ns;
};

/* A flow's pin: the slot of the replica it started on, as of that slot's generation. */
struct pin {
	uint32_t slot, gen;
};

struct worker {
	struct rdm_node *node;
	int idx;
	pthread_t thr;
	struct rdm_loop *loop;
	struct rdm_io wake;
	struct rdm_listener *lst, *lst_rdma;
	/* Steering: a connection per replica of the next stage, the table that picks one
	 * for a new flow, and each flow's pin to the replica it started on. */
	struct down downs[MAX_DOWNS];
	const struct steer *steer;
	int slot_of[RDM_MAX_NEXT]; /* steer's replica i is downs[slot_of[i]] */
	struct rdm_flowtab *pins;
	struct rdm_conn *ups[MAX_UPS];
	uint64_t up_serial[MAX_UPS]; /* tells a reused connection slot from its predecessor */
	uint64_t next_serial;
	int n_ups;
	struct rdm_conn_stats up_closed;   /* counters of upstream connections now gone */
	struct rdm_conn_stats down_closed; /* and of next-hop connections */
	/* Connection counters as of the last tick, for reports while the node runs: the
	 * connections themselves may be freed under a reader on another thread. */
	struct rdm_conn_stats up_snap, down_snap;
	void *stage_rt[MAX_STAGES];

	struct rdm_frame *fr;
	struct rdm_frame **frp;
	struct rdm_frame **back; /* replies stages made in the current batch */
	int n_back;
	struct rdm_frame *notice; /* notices that go on for those replies */
	int n_notice;
	int *verdict;
	int *upi; /* per frame: index into ups of the connection it goes back on */
	uint8_t *hdr;
	struct rdm_txframe *tx;

	/* inline mode: the TUN device at this edge, and where each flow came from */
	int tun_fd;
	struct rdm_io tun_io;
	struct rdm_flowtab *paths;
	struct rdm_timer tick;
	atomic_uint reload_seen; /* the reload generation this worker's stages run */

	/* ingress */
	struct rdm_gen *gen;
	struct rdm_pcap_in *pin;
	uint8_t *pkt;
	uint64_t src_read; /* packets read from the source, every worker's share */
	uint64_t start_ns, wait_until_ns;
	int started, src_done, ever_up;
	struct rdm_timer pump;

	/* egress */
	struct rdm_pcap_out *pout, *fout;
	uint8_t *framebuf;
	struct rdm_flowcount eflows;
	struct rdm_hist hops[RDM_MAX_HOPS - 1];
	struct rdm_hist e2e;
	uint64_t eg_start_ns, eg_taken;
	uint64_t eg_first_ns, eg_last_ns; /* wall clock of the first and last packet out */
	struct rdm_timer eg_resume;

	struct rdm_timer progress;
	uint64_t auto_fallbacks;
	int stopping;
	uint64_t shut_ns;    /* when this worker told its next hops it was done */
	atomic_int finished; /* the main thread reads it during a reload */
	uint64_t drain_until_ns;
	struct worker_stats st;
};

struct rdm_node {
	const struct rdm_chain_conf *chain;
	const struct rdm_node_conf *conf;
	int n_next;			  /* replicas of the next stage at start (0: chain's end) */
	struct steer *steer;		  /* the current one; older ones hang off it */
	const struct steer *reload_steer; /* what workers switch to on a reload, or NULL */
	const struct rdm_transport_ops *ops; /* towards next */
	int auto_tcp_fallback;		     /* transport auto: TCP if the peer has no RDMA */
	int returns;			     /* frames may travel back: track return paths */
	const struct rdm_tun_conf *tun;	     /* this node's TUN edge, or NULL */
	int listen_rdma;		     /* an upstream reaches us over RDMA */
	struct rdm_conn_opts copts;
	const struct rdm_stage_ops *stage_ops[MAX_STAGES];
	void *stage_conf[MAX_STAGES];
	int n_stages;
	int n_workers;
	struct worker *w;
	atomic_int stop;
	atomic_int n_finished;
	int embedded; /* one of several nodes in a process: takes no signals */
	int drain_ms;
	uint64_t run_ns;
	atomic_uint reload_gen;	       /* bumped when reload_conf is ready */
	atomic_int running;	       /* workers run: reports read snapshots */
	pthread_rwlock_t report_mu;    /* reports (read) against conf swaps and frees (write) */
	void *reload_conf[MAX_STAGES]; /* the confs workers switch to, or NULL */

	pthread_mutex_t eg_mu; /* egress sequence accounting, shared by workers */
	struct origin origins[MAX_ORIGINS];
	int n_origins;
	uint64_t eg_unsequenced, eg_accounted;
	uint64_t eg_missing; /* gaps not filled yet, over all origins */
	uint64_t eg_full_ns; /* when accounting reached the count with gaps left */
};

/* Adds a's counters to t, field by field (the stats struct is all uint64_t). */
static void stats_add(struct rdm_conn_stats *t, const struct rdm_conn_stats *a)
{
	uint64_t *d = (uint64_t *)t;
	const uint64_t *v = (const uint64_t *)a;

	for (size_t k = 0; k < sizeof(*t) / sizeof(uint64_t); k++)
		d[k] += v[k];
}

static void nlog(const struct rdm_node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void nlog(const struct rdm_node *n, const char *fmt, ...)
{
	char buf[512], ts[32];
	va_list ap;

	rdm_log_clock(ts, sizeof(ts));
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s %s: %s\n", ts, n->conf->name, buf);
}

/* A frame a stage dropped or answered but marked RDM_FF_NOTICE goes on without its
 * packet, so that the stages after it (the flow log) learn the decision. */
static struct rdm_frame *as_notice(struct rdm_frame *f)
{
	f->pkt = NULL;
	f->pkt_len = 0;
	return f;
}

/* Runs the node's stages over w->frp[0..m) and compacts it to the frames that pass;
 * replies a stage made go to w->back and skip the stages after it. */
static int run_stages(struct worker *w, int m)
{
	struct rdm_node *n = w->node;

	w->n_back = 0;
	w->n_notice = 0;
	for (int s = 0; s < n->n_stages && m > 0; s++) {
		int k = 0;

		n->stage_ops[s]->process(w->stage_rt[s], w->frp, m, w->verdict);
		for (int i = 0; i < m; i++) {
			struct rdm_frame *f = w->frp[i];
			int notice = (f->present & RDM_F_FLAGS) && (f->flags & RDM_FF_NOTICE);

			if (w->verdict[i] == RDM_STAGE_REPLY) {
				w->back[w->n_back++] = f;
				w->st.replies++;
				if (notice) {
					/* The reply holds the state with its 5-tuple turned
					 * round; the notice goes on the original's way. */
					struct rdm_frame *c = &w->notice[w->n_notice++];
					struct rdm_flow_key *ck = &c->key;
					uint8_t a[16];
					uint16_t p;

					*c = *f;
					memcpy(a, ck->src, 16);
					memcpy(ck->src, ck->dst, 16);
					memcpy(ck->dst, a, 16);
					p = ck->sport;
					ck->sport = ck->dport;
					ck->dport = p;
					w->frp[k++] = as_notice(c);
					f->flags &= ~RDM_FF_NOTICE;
				}
			} else if (w->verdict[i] > 0) {
				w->frp[k++] = f;
			} else if (w->verdict[i] == 0) {
				w->st.stage_drop[s]++;
				w->st.drops[DROP_STAGE]++;
				if (notice)
					w->frp[k++] = as_notice(f);
			} else {
				w->st.stage_error[s]++;
				w->st.drops[DROP_STAGE_ERROR]++;
			}
		}
		m = k;
	}
	return m;
}

/* Encodes frames fs[0..m) into w->tx (headers in w->hdr) for one connection; frames
 * whose upi differs from want are skipped (want -1 takes all). Returns how many. */
static int encode_tx(struct worker *w, struct rdm_frame *const *fs, int m, int want, int dir)
{
	struct rdm_node *n = w->node;
	int k = 0;

	for (int i = 0; i < m; i++) {
		struct rdm_frame *f = fs[i];
		uint8_t *h = w->hdr + (size_t)k * HDR_SLOT;
		int len;

		if (want >= 0 && w->upi[i] != want)
			continue;
		/* The service index counts the chain's positions down; going back it stays. */
		if (dir == FWD)
			f->si--;
		len = rdm_frame_encode_hdr(f, h, HDR_SLOT);
		if (len < 0 || (uint32_t)len + f->pkt_len > n->copts.max_frame) {
			w->st.drops[DROP_OVERSIZE]++;
			continue;
		}
		w->tx[k].hdr = h;
		w->tx[k].hdr_len = (uint32_t)len;
		w->tx[k].pkt = f->pkt;
		w->tx[k].pkt_len = f->pkt_len;
		k++;
	}
	return k;
}

/* The slot of the replica that carries frame f. A flow's first packet picks one from the
 * Maglev table by the flow's symmetric hash (both directions alike) and pins the flow to
 * it; later packets follow the pin, so a changed table never moves a flow. A pin to a
 * replica that has gone is renewed from the table (counted: pins_moved). */
static int steer_frame(struct worker *w, const struct rdm_frame *f, uint64_t now)
{
	uint64_t hash;
	struct rdm_flow *fl;
	struct pin *p;
	int dir, created, slot, pick;

	if (!(f->present & RDM_F_FLOW_KEY))
		return w->slot_of[0];
	hash = rdm_frame_flow_hash(f, &f->key);
	fl = rdm_flowtab_track(w->pins, &f->key, hash, f->pkt_len,
			       f->pkt_len ? rdm_pkt_tcp_flags(f->pkt, f->pkt_len, &f->key) : 0, now,
			       &dir, &created);
	p = rdm_flow_data(fl);
	/* A pin holds while its replica is in the table, or drains and is still there: a
	 * replica that left the table and is unreachable (its node died) gives its flows
	 * to the table at once rather than dropping their packets until the drain ends. */
	if (!created && p->gen == w->downs[p->slot].gen && w->downs[p->slot].c &&
	    (w->downs[p->slot].active || w->downs[p->slot].c->up))
		return (int)p->slot;
	if (!created) {
		w->st.pins_moved++;
		if (p->gen == w->downs[p->slot].gen && w->downs[p->slot].pins)
			w->downs[p->slot].pins--; /* the old replica has one flow less */
	}
	pick = rdm_maglev_lookup(w->steer->mg, hash);
	slot = w->slot_of[pick];
	if (!w->downs[slot].c || !w->downs[slot].c->up) {
		/* The table's pick is not connected (a replica just added and still dialling,
		 * or one whose node died): the flow starts on the next connected replica in
		 * table order instead of losing its first packets, and stays there. */
		for (int k = 1; k < w->steer->n; k++) {
			int alt = w->slot_of[(pick + k) % w->steer->n];

			if (w->downs[alt].c && w->downs[alt].c->up) {
				slot = alt;
				w->st.pins_detoured++;
				break;
			}
		}
	}
	p->slot = (uint32_t)slot;
	p->gen = w->downs[slot].gen;
	w->downs[slot].pins++;
	return slot;
}

/* A pin leaves with its flow (idle, closed, evicted): its replica has one flow less. */
static void pin_end(void *arg, struct rdm_flow *fl, enum rdm_flow_end why)
{
	struct worker *w = arg;
	const struct pin *p = rdm_flow_data(fl);

	if (p->slot < MAX_DOWNS && p->gen == w->downs[p->slot].gen && w->downs[p->slot].pins)
		w->downs[p->slot].pins--;
}

static void forward(struct worker *w, struct rdm_frame *const *fs, int m)
{
	uint64_t now = rdm_now_ns();

	for (int i = 0; i < m; i++)
		w->upi[i] = steer_frame(w, fs[i], now);
	for (int r = 0; r < MAX_DOWNS; r++) {
		struct rdm_conn *c = w->downs[r].c;
		int k, rc;

		if (!c)
			continue;
		k = encode_tx(w, fs, m, r, FWD);
		if (k == 0)
			continue;
		rc = rdm_conn_send(c, w->tx, k);
		if (rc < 0) {
			w->st.drops[DROP_PEER_DOWN] += (uint64_t)k;
			continue;
		}
		w->st.tx_frames += (uint64_t)rc;
		w->st.drops[DROP_QUEUE_FULL] += (uint64_t)(k - rc);
	}
}

/* 1 when some replica of the next stage pushes back: the worker holds its input. */
static int downs_congested(const struct worker *w)
{
	for (int r = 0; r < MAX_DOWNS; r++)
		if (w->downs[r].c && w->downs[r].c->congested)
			return 1;
	return 0;
}

/* How many replicas in the current table are connected. */
static int downs_up(const struct worker *w)
{
	int k = 0;

	for (int i = 0; w->steer && i < w->steer->n; i++)
		k += w->downs[w->slot_of[i]].c && w->downs[w->slot_of[i]].c->up;
	return k;
}

static struct origin *origin_get(struct rdm_node *n, uint32_t id)
{
	for (int i = 0; i < n->n_origins; i++)
		if (n->origins[i].id == id)
			return &n->origins[i];
	if (n->n_origins == MAX_ORIGINS)
		return NULL;
	n->origins[n->n_origins].id = id;
	return &n->origins[n->n_origins++];
}

static void tun_write(struct worker *w, struct rdm_frame *const *fs, int m)
{
	for (int i = 0; i < m; i++) {
		if (fs[i]->pkt_len == 0)
			continue; /* a notice: state only */
		if (write(w->tun_fd, fs[i]->pkt, fs[i]->pkt_len) == (ssize_t)fs[i]->pkt_len)
			w->st.tun_tx++;
		else
			w->st.drops[DROP_TUN]++;
	}
}

static void egress(struct worker *w, struct rdm_frame *const *fs, int m)
{
	struct rdm_node *n = w->node;
	uint64_t count = n->conf->egress.count;
	int done = 0;

	if (w->tun_fd >= 0)
		tun_write(w, fs, m);
	for (int i = 0; i < m; i++) {
		struct rdm_frame *f = fs[i];
		uint64_t now = f->n_hops ? f->hops[f->n_hops - 1].ns : rdm_wall_ns();

		if (f->pkt_len == 0) {
			w->st.notices++;
			continue; /* a notice: the packet was dropped upstream by policy */
		}
		if (w->pout)
			rdm_pcap_write(w->pout, f->pkt, f->pkt_len, now);
		if (w->fout) {
			int len = rdm_frame_encode(f, w->framebuf, n->copts.max_frame);

			if (len > 0)
				rdm_pcap_write(w->fout, w->framebuf, (uint32_t)len, now);
		}
		if (f->present & RDM_F_FLOW_ID)
			rdm_flowcount_add(&w->eflows, f->flow_id, f->pkt_len);
		for (int h = 0; h + 1 < f->n_hops; h++)
			if (f->hops[h + 1].ns >= f->hops[h].ns)
				rdm_hist_add(&w->hops[h], f->hops[h + 1].ns - f->hops[h].ns);
		if (f->n_hops >= 2 && f->hops[f->n_hops - 1].ns >= f->hops[0].ns)
			rdm_hist_add(&w->e2e, f->hops[f->n_hops - 1].ns - f->hops[0].ns);
		w->st.egress_packets++;
		w->st.egress_bytes += f->pkt_len;
	}
	if (m > 0) {
		w->eg_last_ns = rdm_wall_ns();
		if (!w->eg_first_ns)
			w->eg_first_ns = w->eg_last_ns;
	}

	/* Sequence accounting: a gap in an origin's numbers is loss, counted exactly. */
	pthread_mutex_lock(&n->eg_mu);
	for (int i = 0; i < m; i++) {
		struct rdm_frame *f = fs[i];
		struct origin *o = (f->present & RDM_F_SEQ) ? origin_get(n, f->origin) : NULL;

		if (!o) {
			n->eg_unsequenced++;
			n->eg_accounted++;
			continue;
		}
		o->received++;
		if (f->seq >= o->next) {
			o->lost += f->seq - o->next;
			n->eg_missing += f->seq - o->next;
			n->eg_accounted += f->seq - o->next + 1;
			o->next = f->seq + 1;
		} else {
			/* Late, by another replica's path: it fills a gap counted as lost. */
			o->reordered++;
			if (o->lost) {
				o->lost--;
				n->eg_missing--;
			}
		}
	}
	if (count && n->eg_accounted >= count) {
		/* Everything is accounted for; packets still missing may be on a slower
		 * replica's path: wait for them a moment (see tick). */
		if (n->eg_missing == 0)
			done = 1;
		else if (!n->eg_full_ns)
			n->eg_full_ns = rdm_now_ns();
	}
	pthread_mutex_unlock(&n->eg_mu);
	if (done && !atomic_load(&n->stop)) {
		nlog(n, "egress: %" PRIu64 " packets accounted for, stopping", count);
		atomic_store(&n->stop, 1);
	}
}

/* The upstream connection that carried flow f here, as an index into w->ups, or -1. */
static int path_of(struct worker *w, const struct rdm_frame *f)
{
	struct rdm_flow *fl;
	const uint64_t *d;
	int dir;

	if (w->n_ups == 1)
		return 0;
	if (!w->paths || !(f->present & RDM_F_FLOW_KEY))
		return -1;
	fl = rdm_flowtab_find(w->paths, &f->key, rdm_frame_flow_hash(f, &f->key), &dir);
	if (!fl)
		return -1;
	d = rdm_flow_data(fl);
	for (int u = 0; u < w->n_ups; u++)
		if (w->up_serial[u] == d[0])
			return u;
	return -1; /* that connection is gone */
}

/* Remembers which upstream connection (serial) brought flow f, for the way back. */
static void path_note(struct worker *w, const struct rdm_frame *f, uint64_t serial)
{
	struct rdm_flow *fl;
	int dir;

	if (!w->paths || !(f->present & RDM_F_FLOW_KEY))
		return;
	fl = rdm_flowtab_track(w->paths, &f->key, rdm_frame_flow_hash(f, &f->key), f->pkt_len,
			       rdm_pkt_tcp_flags(f->pkt, f->pkt_len, &f->key), rdm_now_ns(), &dir,
			       NULL);
	*(uint64_t *)rdm_flow_data(fl) = serial;
}

/* Sends frames back towards the client: into this edge's TUN, or up the connection each
 * flow came in on. */
static void send_back(struct worker *w, struct rdm_frame *const *fs, int m)
{
	struct rdm_node *n = w->node;

	if (m == 0)
		return;
	if (n->conf->ingress.mode == RDM_INGRESS_TUN) {
		tun_write(w, fs, m);
		return;
	}
	if (n->conf->ingress.mode != RDM_INGRESS_NONE || !n->conf->has_listen) {
		w->st.drops[DROP_NO_CLIENT] += (uint64_t)m;
		return;
	}
	for (int i = 0; i < m; i++) {
		w->upi[i] = path_of(w, fs[i]);
		if (w->upi[i] < 0)
			w->st.drops[DROP_NO_PATH]++;
	}
	for (int u = 0; u < w->n_ups; u++) {
		int k = encode_tx(w, fs, m, u, BACK), rc;

		if (k == 0)
			continue;
		rc = rdm_conn_send(w->ups[u], w->tx, k);
		if (rc < 0) {
			w->st.drops[DROP_PEER_DOWN] += (uint64_t)k;
			continue;
		}
		w->st.back_tx_frames += (uint64_t)rc;
		w->st.drops[DROP_QUEUE_FULL] += (uint64_t)(k - rc);
	}
}

/* Sends frames on in direction dir. */
static void send_on(struct worker *w, struct rdm_frame *const *fs, int m, int dir)
{
	if (m == 0)
		return;
	if (dir == BACK)
		send_back(w, fs, m);
	else if (w->node->conf->egress.enabled)
		egress(w, fs, m);
	else if (w->steer)
		forward(w, fs, m);
}

/* Stages, then on in the batch's direction; replies go the other way. The frames are
 * w->frp[0..m). */
static void handle_batch(struct worker *w, int m, int dir)
{
	m = run_stages(w, m);
	send_on(w, w->frp, m, dir);
	if (w->n_back)
		send_on(w, w->back, w->n_back, dir == FWD ? BACK : FWD);
}

static void resume_inputs(struct worker *w);

static void egress_resume(void *arg)
{
	resume_inputs(arg);
}

/* How many frames the egress may take now under its configured rate. */
static int egress_budget(struct worker *w, int n)
{
	double rate = w->node->conf->egress.rate / w->node->n_workers;
	uint64_t now = rdm_now_ns(), allowed;

	if (rate <= 0)
		return n;
	if (!w->eg_start_ns)
		w->eg_start_ns = now;
	allowed = (uint64_t)((double)(now - w->eg_start_ns) * rate / 1e9) + 1;
	if (allowed - w->eg_taken < (uint64_t)n || allowed <= w->eg_taken) {
		/* Whatever is left waits in the transport, which stops reading until the
		 * timer resumes it: the sender feels a slow egress as backpressure. */
		n = allowed > w->eg_taken ? (int)(allowed - w->eg_taken) : 0;
		rdm_timer_arm(w->loop, &w->eg_resume, 1, egress_resume, w);
	}
	w->eg_taken += (uint64_t)n;
	return n;
}

/* Decodes received frames into w->fr / w->frp; returns how many are good. Frames going
 * back keep their service index, so only forward ones can run out of it. */
static int decode_batch(struct worker *w, const struct rdm_rxframe *rx, int n, int dir)
{
	int m = 0;

	for (int i = 0; i < n; i++) {
		struct rdm_frame *f = &w->fr[m];
		int rc = rdm_frame_decode(f, rx[i].data, rx[i].len);

		if (rc < 0) {
			w->st.drops[-rc - RDM_FERR_FIRST]++;
			continue;
		}
		if (f->ttl <= 1 || (dir == FWD && f->si == 0)) {
			w->st.drops[DROP_TTL]++;
			continue;
		}
		f->ttl--;
		w->frp[m] = f;
		m++;
	}
	return m;
}

static int up_frames(struct rdm_conn *c, const struct rdm_rxframe *rx, int n, void *arg)
{
	struct worker *w = arg;
	int m = 0;

	if (w->stopping)
		return 0;
	if (downs_congested(w)) {
		/* Leave the frames with the transport: it stops reading, TCP's window
		 * closes, and the upstream sender sees congestion in turn. */
		w->st.stalls++;
		return 0;
	}
	if (w->node->conf->egress.enabled)
		n = egress_budget(w, n);
	w->st.rx_frames += (uint64_t)n;
	m = decode_batch(w, rx, n, FWD);
	if (w->paths) {
		uint64_t serial = 0;

		for (int u = 0; u < w->n_ups; u++)
			if (w->ups[u] == c)
				serial = w->up_serial[u];
		for (int i = 0; i < m; i++)
			path_note(w, w->frp[i], serial);
	}
	handle_batch(w, m, FWD);
	return n;
}

static void up_state(struct rdm_conn *c, int up, void *arg)
{
	struct worker *w = arg;

	if (up) {
		if (w->n_ups == MAX_UPS) {
			nlog(w->node, "refusing upstream %s: %d connections already", c->peer,
			     MAX_UPS);
			rdm_conn_close(c);
			return;
		}
		w->up_serial[w->n_ups] = ++w->next_serial;
		w->ups[w->n_ups++] = c;
		nlog(w->node, "upstream %s connected", c->peer);
		return;
	}
	for (int i = 0; i < w->n_ups; i++) {
		if (w->ups[i] == c) {
			const struct rdm_conn_stats *s = &c->stats;

			w->up_closed.rx_frames += s->rx_frames;
			w->up_closed.rx_bytes += s->rx_bytes;
			w->up_closed.rx_bad_len += s->rx_bad_len;
			w->up_closed.disconnects++;
			w->ups[i] = w->ups[--w->n_ups];
			w->up_serial[i] = w->up_serial[w->n_ups];
			break;
		}
	}
	nlog(w->node, "upstream %s disconnected", c->peer);
}

static void pump(void *arg);

static void resume_inputs(struct worker *w)
{
	if (w->tun_fd >= 0 && w->node->conf->ingress.mode == RDM_INGRESS_TUN && !w->stopping)
		rdm_io_mod(w->loop, &w->tun_io, EPOLLIN);
	for (int i = 0; i < w->n_ups; i++)
		rdm_conn_resume_rx(w->ups[i]);
	if (w->gen || w->pin)
		rdm_timer_arm(w->loop, &w->pump, 0, pump, w);
}

static void down_writable(struct rdm_conn *c, void *arg)
{
	resume_inputs(arg);
}

static int start_listener(struct worker *w);

static void down_state(struct rdm_conn *c, int up, void *arg)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;
	int r = 0;

	while (r + 1 < MAX_DOWNS && w->downs[r].c != c)
		r++;
	if (up) {
		nlog(n, "next hop %s (%s) up over %s, epoch %u", w->downs[r].name, c->peer,
		     c->ops->name, c->epoch);
		if (w->ever_up && (w->gen || w->pin))
			w->st.ingress_reconnect_seq = w->st.ingress_taken;
		w->ever_up = 1;
		w->downs[r].ever_up = 1;
		/* A node takes frames only once it can pass them on. */
		if (!w->lst && n->conf->has_listen)
			start_listener(w);
	} else {
		nlog(n, "next hop %s (%s) down: frames are dropped and counted until it is back",
		     w->downs[r].name, c->peer);
	}
	resume_inputs(w);
}

/* Frames the next hop sends back: inline mode's return traffic and stages' replies. */
static int down_frames(struct rdm_conn *c, const struct rdm_rxframe *rx, int n, void *arg)
{
	struct worker *w = arg;
	int m;

	if (w->stopping)
		return 0;
	w->st.back_rx_frames += (uint64_t)n;
	m = decode_batch(w, rx, n, BACK);
	handle_batch(w, m, BACK);
	return n;
}

/* Callbacks of a worker's downstream connection; arg is set per worker. */
static const struct rdm_conn_cbs down_cbs_tmpl = {
    .on_frames = down_frames, .on_writable = down_writable, .on_state = down_state};

/* Listens on TCP, and on RDMA too when an upstream node reaches this one that way. */
static int start_listener(struct worker *w)
{
	struct rdm_node *n = w->node;
	struct rdm_conn_cbs cbs = {.on_frames = up_frames, .on_state = up_state, .arg = w};
	struct rdm_conn_opts o = n->copts;

	o.reuseport = n->n_workers > 1;
	w->lst = rdm_listen(&rdm_tcp_ops, w->loop, &n->conf->listen, &o, &cbs);
	if (!w->lst) {
		nlog(n, "listen on %s (tcp): %s", n->conf->listen.text, strerror(errno));
		return -errno;
	}
	if (n->listen_rdma) {
		w->lst_rdma = rdm_listen(&rdm_rdma_ops, w->loop, &n->conf->listen, &o, &cbs);
		if (!w->lst_rdma)
			nlog(n,
			     "listen on %s (rdma): %s: upstream hops over RDMA cannot reach this "
			     "node",
			     n->conf->listen.text,
			     errno == ENODEV ? "no RDMA device has this address" : strerror(errno));
	}
	if (w->idx == 0)
		nlog(n, "listening on %s (tcp%s)", n->conf->listen.text,
		     w->lst_rdma ? ", rdma" : "");
	return 0;
}

/* Reads this worker's next packet from the source into slot; 0 at the end. */
static int source_next(struct worker *w, uint8_t *slot, uint32_t cap)
{
	const struct rdm_ingress_conf *ic = &w->node->conf->ingress;

	for (;;) {
		int len;

		if (ic->count && w->src_read >= ic->count)
			return 0;
		if (w->gen) {
			len = rdm_gen_next(w->gen, slot, cap);
		} else {
			const uint8_t *p;

			len = rdm_pcap_next(w->pin, &p);
			if (len > (int)cap) {
				w->src_read++;
				w->st.drops[DROP_OVERSIZE]++;
				continue;
			}
			if (len > 0)
				memcpy(slot, p, (size_t)len);
		}
		if (len <= 0)
			return len;
		w->src_read++;
		if (w->node->n_workers > 1) {
			struct rdm_flow_key k;
			uint64_t nw = (uint64_t)w->node->n_workers, owner = 0;

			/* Each worker replays the flows that hash to it, in order; what does
			 * not parse goes to worker 0, which counts it. */
			if (rdm_pkt_flow_key(slot, (uint32_t)len, &k) == 0)
				owner = rdm_flow_hash(&k) % nw;
			if (owner != (uint64_t)w->idx)
				continue;
		}
		return len;
	}
}

/* A fresh frame for an IP packet entering the chain here; -EINVAL (counted) if it is
 * not one. */
static int frame_of_packet(struct worker *w, struct rdm_frame *f, const uint8_t *pkt, uint32_t len)
{
	rdm_frame_init(f, w->node->chain->spi, INGRESS_SI, rdm_pkt_next_proto(pkt, len));
	if (rdm_pkt_flow_key(pkt, len, &f->key) < 0) {
		w->st.drops[DROP_NOT_IP]++;
		return -EINVAL;
	}
	f->flow_id = rdm_flow_hash(&f->key);
	f->present = RDM_F_FLOW_KEY | RDM_F_FLOW_ID;
	f->pkt = pkt;
	f->pkt_len = len;
	return 0;
}

/* Takes up to want packets from the source and builds their frames into frp. */
static int fill_batch(struct worker *w, int want)
{
	struct rdm_node *n = w->node;
	uint32_t cap = n->copts.max_frame;
	int m = 0;

	for (int i = 0; i < want; i++) {
		uint8_t *slot = w->pkt + (size_t)i * cap;
		struct rdm_frame *f = &w->fr[m];
		uint64_t seq = w->st.ingress_taken;
		int len = source_next(w, slot, cap);

		if (len <= 0) {
			if (len < 0)
				nlog(n, "ingress source: %s", strerror(-len));
			w->src_done = 1;
			break;
		}
		w->st.ingress_taken++;
		if (frame_of_packet(w, f, slot, (uint32_t)len) < 0)
			continue;
		f->origin = n->conf->id << 8 | (uint32_t)w->idx;
		f->seq = seq;
		f->present |= RDM_F_SEQ;
		w->frp[m++] = f;
	}
	return m;
}

/* Reads up to batch packets from the TUN device and runs them: forward at an ingress
 * edge, back at an egress edge. */
static void tun_io(struct rdm_io *io, uint32_t events)
{
	struct worker *w = (struct worker *)((char *)io - offsetof(struct worker, tun_io));
	struct rdm_node *n = w->node;
	uint32_t cap = n->copts.max_frame;
	int dir = n->conf->ingress.mode == RDM_INGRESS_TUN ? FWD : BACK, m = 0;

	if (w->stopping)
		return;
	if (dir == FWD && downs_congested(w)) {
		/* The kernel queues, then drops, as a full NIC would; writable resumes us. */
		w->st.stalls++;
		rdm_io_mod(w->loop, &w->tun_io, 0);
		return;
	}
	for (uint32_t i = 0; i < n->copts.batch; i++) {
		uint8_t *slot = w->pkt + (size_t)i * cap;
		struct rdm_frame *f = &w->fr[m];
		ssize_t len = read(w->tun_fd, slot, cap);

		if (len <= 0)
			break;
		w->st.tun_rx++;
		if (frame_of_packet(w, f, slot, (uint32_t)len) < 0)
			continue;
		if (dir == FWD) {
			f->origin = n->conf->id << 8 | (uint32_t)w->idx;
			f->seq = w->st.ingress_taken++;
			f->present |= RDM_F_SEQ;
		}
		w->frp[m++] = f;
	}
	if (dir == FWD)
		w->st.ingress_sent += (uint64_t)m;
	handle_batch(w, m, dir);
}

/* The ingress pump: paced by the configured rate, held back by congestion. */
static void pump(void *arg)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;
	const struct rdm_ingress_conf *ic = &n->conf->ingress;
	double rate = ic->rate / n->n_workers;
	uint64_t now = rdm_now_ns(), allow;
	int batch = (int)n->copts.batch;

	if (w->stopping || w->src_done)
		return;
	if (!w->started) {
		if (w->steer && downs_up(w) < w->steer->n && now < w->wait_until_ns) {
			rdm_timer_arm(w->loop, &w->pump, 10, pump, w);
			return;
		}
		if (w->steer && downs_up(w) < w->steer->n)
			nlog(n,
			     "%d of %d next hops not up after %d ms: starting anyway, counting "
			     "drops",
			     w->steer->n - downs_up(w), w->steer->n, ic->wait_ms);
		w->started = 1;
		w->start_ns = now;
	}
	allow = (uint64_t)batch * 8;
	if (rate > 0) {
		uint64_t due = (uint64_t)((double)(now - w->start_ns) * rate / 1e9) + 1;

		allow = due > w->st.ingress_taken ? due - w->st.ingress_taken : 0;
		if (allow > (uint64_t)batch * 64)
			allow = (uint64_t)batch * 64;
	}
	while (allow > 0 && !w->src_done) {
		int m, want = allow < (uint64_t)batch ? (int)allow : batch;
		uint64_t before = w->st.ingress_taken;

		if (downs_congested(w)) {
			w->st.stalls++;
			return; /* down_writable re-arms the pump */
		}
		m = fill_batch(w, want);
		allow -= w->st.ingress_taken - before;
		if (m > 0) {
			uint64_t tx0 = w->st.tx_frames;

			handle_batch(w, m, FWD);
			w->st.ingress_sent += w->st.tx_frames - tx0;
		}
	}
	if (w->src_done) {
		nlog(n, "ingress: source done, %" PRIu64 " packets taken, %" PRIu64 " sent",
		     w->st.ingress_taken, w->st.ingress_sent);
		return;
	}
	if (rate > 0) {
		double next_s = (double)(w->st.ingress_taken + 1) / rate;
		uint64_t at = w->start_ns + (uint64_t)(next_s * 1e9);

		rdm_timer_arm_ns(w->loop, &w->pump, at > now ? at - now : 0, pump, w);
	} else {
		rdm_timer_arm(w->loop, &w->pump, 0, pump, w);
	}
}

static void wake_io(struct rdm_io *io, uint32_t events)
{
	uint64_t v;

	if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
}

static void begin_stop(struct worker *w)
{
	struct rdm_node *n = w->node;

	w->stopping = 1;
	rdm_timer_cancel(w->loop, &w->pump);
	if (w->tun_fd >= 0)
		rdm_io_mod(w->loop, &w->tun_io, 0);
	for (int i = 0; i < w->n_ups; i++)
		rdm_conn_pause_rx(w->ups[i]);
	w->drain_until_ns = rdm_now_ns() + (uint64_t)n->drain_ms * 1000000ull;
}

/* Bytes still queued towards connected next hops. */
static size_t downs_queued(const struct worker *w)
{
	size_t q = 0;

	for (int r = 0; r < MAX_DOWNS; r++)
		if (w->downs[r].c && w->downs[r].c->up)
			q += rdm_conn_queued(w->downs[r].c);
	return q;
}

static int drained(const struct worker *w)
{
	return downs_queued(w) == 0;
}

/* Next-hop connections that said they are done sending and wait for the peer to close. */
static int downs_closing(const struct worker *w)
{
	int k = 0;

	for (int r = 0; r < MAX_DOWNS; r++)
		k += w->downs[r].c && w->downs[r].c->up && w->downs[r].shut_tx;
	return k;
}

static void check_finished(struct worker *w)
{
	struct rdm_node *n = w->node;
	uint64_t now = rdm_now_ns();
	int done = 0;

	if (w->finished)
		return;
	if (w->shut_ns) {
		done = 1;
	} else if (!w->stopping && (w->gen || w->pin) && w->src_done && drained(w)) {
		done = 1;
	} else if (w->stopping && (drained(w) || now >= w->drain_until_ns)) {
		if (!drained(w))
			nlog(n, "drain timeout: %zu bytes still queued", downs_queued(w));
		done = 1;
	}
	if (!done)
		return;
	/* Leave the way TCP means it: say we are done and let the next hops close first.
	 * A socket closed while data still comes in resets the connection, and the reset
	 * makes the next hop drop the frames it has not read yet. */
	if (!w->shut_ns) {
		w->shut_ns = now;
		for (int r = 0; r < MAX_DOWNS; r++)
			if (w->downs[r].c && w->downs[r].c->up)
				w->downs[r].shut_tx = rdm_conn_shutdown_tx(w->downs[r].c) == 0;
	}
	if (downs_closing(w) && now - w->shut_ns < SHUT_GRACE_NS)
		return;
	w->finished = 1;
	atomic_fetch_add(&n->n_finished, 1);
}

/* Once a second, ingress and egress workers say how far they are: users watch long runs. */
static void progress(void *arg)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;

	if (w->gen || w->pin)
		nlog(n, "w%d ingress: %" PRIu64 " taken, %" PRIu64 " sent, %" PRIu64 " dropped",
		     w->idx, w->st.ingress_taken, w->st.ingress_sent,
		     w->st.ingress_taken - w->st.ingress_sent);
	if (n->conf->egress.enabled)
		nlog(n, "w%d egress: %" PRIu64 " packets, %u flows", w->idx, w->st.egress_packets,
		     w->eflows.flows);
	rdm_timer_arm(w->loop, &w->progress, 1000, progress, w);
}

/* Transport auto: a peer with no RDMA responder (address or route errors, no answer to
 * RDMA CM) is reached over TCP instead. A rejection means RDMA is there, so it waits. */
static void auto_check(struct worker *w)
{
	struct rdm_node *n = w->node;
	struct rdm_conn_cbs cbs = down_cbs_tmpl;

	if (!n->auto_tcp_fallback)
		return;
	cbs.arg = w;
	for (int r = 0; r < MAX_DOWNS; r++) {
		struct down *d = &w->downs[r];

		if (d->ever_up || !d->c || d->c->ops != &rdm_rdma_ops ||
		    d->c->stats.unreachable < 2)
			continue;
		nlog(n,
		     "transport auto: no RDMA responder at %s after %" PRIu64 " tries: using TCP",
		     d->peer->text, d->c->stats.unreachable);
		w->auto_fallbacks++;
		stats_add(&w->down_closed, &d->c->stats);
		rdm_conn_close(d->c);
		d->c = rdm_connect(&rdm_tcp_ops, w->loop, d->peer, &n->copts, &cbs);
		if (!d->c) {
			nlog(n, "connect %s: %s", d->peer->text, strerror(errno));
			d->gen++; /* the slot is free: pins to it renew */
		}
	}
}

/* Switches worker w to steer sp: replicas it names keep their connections (a draining
 * one comes back), new ones are connected, and those it no longer names start to
 * drain. 0, or -errno when a connection cannot be set up (the old table then stays). */
static int apply_steer(struct worker *w, const struct steer *sp)
{
	struct rdm_node *n = w->node;
	struct rdm_conn_cbs cbs = down_cbs_tmpl;
	int slot_of[RDM_MAX_NEXT], keep[MAX_DOWNS] = {0};

	cbs.arg = w;
	for (int i = 0; i < sp->n; i++) {
		int r, fr = -1;

		for (r = 0; r < MAX_DOWNS; r++) {
			if (w->downs[r].c && !w->downs[r].closing &&
			    !strcmp(w->downs[r].name, sp->name[i]) &&
			    !strcmp(w->downs[r].peer->text, sp->peer[i]->text))
				break;
			if (!w->downs[r].c && fr < 0 && !keep[r])
				fr = r;
		}
		if (r == MAX_DOWNS) {
			struct down *d;

			if (fr < 0) {
				nlog(n, "steering: no free slot for replica %s (%d draining)",
				     sp->name[i], MAX_DOWNS);
				return -ENOSPC;
			}
			r = fr;
			d = &w->downs[r];
			d->c = rdm_connect(n->ops, w->loop, sp->peer[i], &n->copts, &cbs);
			if (!d->c) {
				nlog(n, "connect %s: %s", sp->peer[i]->text, strerror(errno));
				return -errno;
			}
			d->name = sp->name[i];
			d->peer = sp->peer[i];
			d->pins = 0;
			d->ever_up = 0;
		} else if (!w->downs[r].active && w->steer) {
			nlog(n,
			     "steering: replica %s is back in the table (%" PRIu64 " flows pinned)",
			     sp->name[i], w->downs[r].pins);
		}
		keep[r] = 1;
		slot_of[i] = r;
	}
	for (int r = 0; r < MAX_DOWNS; r++) {
		struct down *d = &w->downs[r];

		if (!d->c)
			continue;
		if (keep[r]) {
			d->active = 1;
		} else if (d->active) {
			d->active = 0;
			d->drain_start_ns = rdm_now_ns();
			nlog(n,
			     "steering: replica %s leaves the table: draining %" PRIu64
			     " pinned flows (at most %u ms)",
			     d->name, d->pins, n->chain->transport.drain_ms);
		}
	}
	memcpy(w->slot_of, slot_of, sizeof(slot_of));
	w->steer = sp;
	return 0;
}

/* The connection counters readers on other threads see (refreshed every tick). */
static void snap_stats(struct worker *w)
{
	struct rdm_conn_stats up = w->up_closed, down = w->down_closed;

	for (int u = 0; u < w->n_ups; u++)
		stats_add(&up, &w->ups[u]->stats);
	for (int r = 0; r < MAX_DOWNS; r++)
		if (w->downs[r].c)
			stats_add(&down, &w->downs[r].c->stats);
	w->up_snap = up;
	w->down_snap = down;
}

/* Closes draining replicas whose flows are all gone, or whose time is up. */
static void drain_check(struct worker *w, uint64_t now)
{
	uint64_t limit = (uint64_t)w->node->chain->transport.drain_ms * 1000000ull;

	for (int r = 0; r < MAX_DOWNS; r++) {
		struct down *d = &w->downs[r];

		if (!d->c || d->active)
			continue;
		if (!d->c->up && !d->closing) {
			/* It left the table while unreachable (its node died, or its link): its
			 * flows moved on their next packet, and dialling it again could only
			 * bring back a replica its node has been told to stop. */
			w->st.drained_unreachable++;
			nlog(w->node,
			     "steering: replica %s (%s) left the table unreachable: closed, "
			     "%" PRIu64 " pinned flows move on",
			     d->name, d->peer->text, d->pins);
			d->gen++;
			d->pins = 0;
			stats_add(&w->down_closed, &d->c->stats);
			rdm_conn_close(d->c);
			d->c = NULL;
			continue;
		}
		if (d->pins && now - d->drain_start_ns < limit)
			continue;
		if (d->closing) {
			/* Told the replica we are done; gone once it closed too (or the grace). */
			if (d->c->up && now - d->drain_start_ns < SHUT_GRACE_NS)
				continue;
			stats_add(&w->down_closed, &d->c->stats);
			rdm_conn_close(d->c);
			d->c = NULL;
			d->closing = 0;
			continue;
		}
		if (d->pins) {
			w->st.drain_timeouts++;
			nlog(w->node,
			     "steering: replica %s drained by timeout: %" PRIu64
			     " flows still pinned move on their next packet",
			     d->name, d->pins);
		} else {
			w->st.drained_idle++;
			nlog(w->node, "steering: replica %s drained: no flow left on it", d->name);
		}
		/* No new frame goes to it (its pins are stale now); what is queued still
		 * does, then the connection closes the way TCP means it. */
		d->gen++;
		d->pins = 0;
		if (rdm_conn_shutdown_tx(d->c) == 0) {
			d->closing = 1;
			d->drain_start_ns = now;
			continue;
		}
		stats_add(&w->down_closed, &d->c->stats);
		rdm_conn_close(d->c);
		d->c = NULL;
	}
}

/* Stages' housekeeping (flow expiry, log flushing) and the return paths' expiry. */
static void tick(void *arg)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;
	uint64_t now = rdm_now_ns();

	for (int s = 0; s < n->n_stages; s++)
		if (n->stage_ops[s]->tick)
			n->stage_ops[s]->tick(w->stage_rt[s], now);
	if (w->paths)
		rdm_flowtab_expire(w->paths, now, 4096);
	if (w->pins) {
		rdm_flowtab_expire(w->pins, now, 4096);
		drain_check(w, now);
	}
	snap_stats(w);
	if (n->conf->egress.count) {
		int late = 0;

		pthread_mutex_lock(&n->eg_mu);
		late = n->eg_full_ns && now - n->eg_full_ns >= EGRESS_GRACE_NS;
		pthread_mutex_unlock(&n->eg_mu);
		if (late && !atomic_load(&n->stop)) {
			nlog(n,
			     "egress: %" PRIu64 " packets accounted for, %" PRIu64
			     " missing after %d ms: counted lost, stopping",
			     n->conf->egress.count, n->eg_missing,
			     (int)(EGRESS_GRACE_NS / 1000000));
			atomic_store(&n->stop, 1);
		}
	}
	rdm_timer_arm(w->loop, &w->tick, TICK_MS, tick, w);
}

/* Between batches: switch the stages to confs the main thread reloaded, and steering to
 * a new next list. on_worker is 0 when the main thread does it for a worker that has
 * finished: its stages still switch (their confs are freed next), its connections not. */
static void take_reload(struct worker *w, int on_worker)
{
	struct rdm_node *n = w->node;
	unsigned gen = atomic_load(&n->reload_gen);

	if (gen == atomic_load(&w->reload_seen))
		return;
	pthread_rwlock_wrlock(&n->report_mu); /* a swap may free what a report reads */
	for (int s = 0; s < n->n_stages; s++)
		if (n->reload_conf[s])
			n->stage_ops[s]->conf_swap(w->stage_rt[s], n->reload_conf[s]);
	pthread_rwlock_unlock(&n->report_mu);
	if (on_worker && n->reload_steer && w->steer != n->reload_steer)
		apply_steer(w, n->reload_steer);
	atomic_store(&w->reload_seen, gen);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct rdm_node *n = w->node;

	if (!w->steer && n->conf->has_listen)
		start_listener(w);
	if (w->gen || w->pin)
		rdm_timer_arm(w->loop, &w->pump, 0, pump, w);
	if (w->gen || w->pin || n->conf->egress.enabled)
		rdm_timer_arm(w->loop, &w->progress, 1000, progress, w);
	rdm_timer_arm(w->loop, &w->tick, TICK_MS, tick, w);
	while (!w->finished) {
		rdm_loop_run_once(w->loop, 50);
		take_reload(w, 1);
		if (atomic_load(&n->stop) && !w->stopping)
			begin_stop(w);
		auto_check(w);
		check_finished(w);
	}
	return NULL;
}

static int worker_init(struct rdm_node *n, struct worker *w, int idx, char *err, size_t errlen)
{
	const struct rdm_node_conf *c = n->conf;
	uint32_t batch = n->copts.batch;
	struct rdm_stage_env env = {
	    .node_id = c->id, .node_name = c->name, .worker = idx, .flows = &n->chain->flows};
	int fd;

	w->node = n;
	w->idx = idx;
	w->tun_fd = -1;
	w->loop = rdm_loop_new();
	w->fr = calloc(batch, sizeof(*w->fr));
	w->frp = calloc(batch, sizeof(*w->frp));
	w->back = calloc(batch, sizeof(*w->back));
	w->notice = calloc(batch, sizeof(*w->notice));
	w->verdict = calloc(batch, sizeof(*w->verdict));
	w->upi = calloc(batch, sizeof(*w->upi));
	w->hdr = malloc((size_t)batch * HDR_SLOT);
	w->tx = calloc(batch, sizeof(*w->tx));
	if (!w->loop || !w->fr || !w->frp || !w->back || !w->notice || !w->verdict || !w->upi ||
	    !w->hdr || !w->tx)
		goto nomem;
	if (n->returns && c->has_listen) {
		w->paths = rdm_flowtab_new(&n->chain->flows, sizeof(uint64_t), NULL, NULL);
		if (!w->paths)
			goto nomem;
	}
	fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0 || rdm_io_add(w->loop, &w->wake, fd, EPOLLIN, wake_io) < 0) {
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -EIO;
	}
	for (int s = 0; s < n->n_stages; s++) {
		w->stage_rt[s] = n->stage_ops[s]->init(n->stage_conf[s], &env);
		if (!w->stage_rt[s]) {
			snprintf(err, errlen, "stage %s: %s", n->stage_ops[s]->name,
				 strerror(errno));
			return -EIO;
		}
	}
	if (n->tun) {
		w->tun_fd = rdm_tun_open(n->tun->name, n->tun->mtu, err, (unsigned)errlen);
		if (w->tun_fd < 0)
			return w->tun_fd;
		if (rdm_io_add(w->loop, &w->tun_io, w->tun_fd, EPOLLIN, tun_io) < 0) {
			snprintf(err, errlen, "tun %s: epoll: %s", n->tun->name, strerror(errno));
			return -EIO;
		}
	}
	if (c->ingress.mode != RDM_INGRESS_NONE || n->tun) {
		w->pkt = malloc((size_t)batch * n->copts.max_frame);
		if (!w->pkt)
			goto nomem;
	}
	if (c->ingress.mode == RDM_INGRESS_GEN || c->ingress.mode == RDM_INGRESS_PCAP) {
		if (c->ingress.mode == RDM_INGRESS_GEN) {
			struct rdm_gen_conf gc = {.flows = c->ingress.flows,
						  .packets = c->ingress.count,
						  .seed = c->ingress.seed};

			w->gen = rdm_gen_new(&gc);
			if (!w->gen) {
				snprintf(err, errlen,
					 "%s: ingress generator: %s (flows %u, count %" PRIu64 ")",
					 n->chain->file, strerror(errno), gc.flows, gc.packets);
				return -EINVAL;
			}
		} else {
			w->pin = rdm_pcap_open_in(c->ingress.file, err, (unsigned)errlen);
			if (!w->pin)
				return -EINVAL;
		}
		w->wait_until_ns =
		    rdm_now_ns() +
		    (uint64_t)(c->ingress.wait_ms ? c->ingress.wait_ms : 5000) * 1000000ull;
	}
	if (c->egress.enabled) {
		char path[4096];

		if (rdm_flowcount_init(&w->eflows, 1u << 20) < 0)
			goto nomem;
		rdm_hist_init(&w->e2e);
		for (int h = 0; h < RDM_MAX_HOPS - 1; h++)
			rdm_hist_init(&w->hops[h]);
		if (c->egress.pcap) {
			/* One writer per worker keeps the data path lock-free. */
			if (n->n_workers > 1)
				snprintf(path, sizeof(path), "%s.w%d", c->egress.pcap, idx);
			else
				snprintf(path, sizeof(path), "%s", c->egress.pcap);
			w->pout = rdm_pcap_open_out(path, RDM_PCAP_IP, err, (unsigned)errlen);
			if (!w->pout)
				return -EIO;
		}
		if (c->egress.frames) {
			if (n->n_workers > 1)
				snprintf(path, sizeof(path), "%s.w%d", c->egress.frames, idx);
			else
				snprintf(path, sizeof(path), "%s", c->egress.frames);
			w->fout = rdm_pcap_open_out(path, RDM_PCAP_NSH, err, (unsigned)errlen);
			w->framebuf = malloc(n->copts.max_frame);
			if (!w->fout || !w->framebuf)
				return -EIO;
		}
	}
	if (n->steer) {
		w->pins = rdm_flowtab_new(&n->chain->flows, sizeof(struct pin), pin_end, w);
		if (!w->pins)
			goto nomem;
		if (apply_steer(w, n->steer) < 0) {
			snprintf(err, errlen, "connecting to the next hops: %s", strerror(errno));
			return -EIO;
		}
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

static void worker_fini(struct rdm_node *n, struct worker *w)
{
	if (!w->node)
		return;
	for (int r = 0; r < MAX_DOWNS; r++)
		if (w->downs[r].c)
			rdm_conn_close(w->downs[r].c);
	rdm_flowtab_free(w->pins);
	if (w->lst)
		rdm_listener_close(&rdm_tcp_ops, w->lst);
	if (w->lst_rdma)
		rdm_listener_close(&rdm_rdma_ops, w->lst_rdma);
	for (int s = 0; s < n->n_stages; s++)
		if (w->stage_rt[s])
			n->stage_ops[s]->deinit(w->stage_rt[s]);
	if (w->loop) {
		if (w->wake.fd > 0) {
			rdm_io_del(w->loop, &w->wake);
			close(w->wake.fd);
		}
		if (w->tun_fd >= 0)
			rdm_io_del(w->loop, &w->tun_io);
		rdm_loop_free(w->loop);
	}
	if (w->tun_fd >= 0)
		close(w->tun_fd);
	rdm_flowtab_free(w->paths);
	free(w->back);
	free(w->notice);
	free(w->upi);
	rdm_gen_free(w->gen);
	rdm_pcap_close_in(w->pin);
	rdm_pcap_close_out(w->pout);
	rdm_pcap_close_out(w->fout);
	rdm_flowcount_fini(&w->eflows);
	free(w->framebuf);
	free(w->pkt);
	free(w->fr);
	free(w->frp);
	free(w->verdict);
	free(w->hdr);
	free(w->tx);
	w->node = NULL;
}

/* The stage a chain entry names, or NULL with "FILE:LINE:COL: unknown stage" in err. */
static const struct rdm_stage_ops *stage_lookup(const struct rdm_chain_conf *chain,
						const struct rdm_stage_conf *sc, char *err,
						size_t errlen)
{
	const struct rdm_stage_ops *ops = rdm_stage_find(sc->name);
	const char *const *names = rdm_stage_names();
	const char *hint;
	size_t k = 0;

	if (ops)
		return ops;
	while (names[k])
		k++;
	hint = rdm_yclosest(sc->name, names, k, 2);
	snprintf(err, errlen, "%s:%d:%d: unknown stage '%s'%s%s%s", chain->file, sc->line, sc->col,
		 sc->name, hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
	return NULL;
}

int rdm_chain_check_stages(const struct rdm_chain_conf *chain, char *err, size_t errlen)
{
	for (int i = 0; i < chain->n_nodes; i++)
		for (int s = 0; s < chain->nodes[i].n_stages; s++) {
			const struct rdm_stage_conf *sc = &chain->nodes[i].stages[s];
			const struct rdm_stage_ops *ops = stage_lookup(chain, sc, err, errlen);
			void *conf;

			if (!ops)
				return -EINVAL;
			conf = ops->conf_new(chain->doc, sc->conf, err, errlen);
			if (!conf)
				return -EINVAL;
			ops->conf_free(conf);
		}
	return 0;
}

/* The steering of node conf c of chain: its next replicas and their Maglev table.
 * owned is a reloaded chain the steer keeps (freed with it), or NULL. */
static struct steer *steer_new(const struct rdm_chain_conf *chain, const struct rdm_node_conf *c,
			       struct rdm_chain_conf *owned)
{
	struct steer *sp = calloc(1, sizeof(*sp));

	if (!sp)
		return NULL;
	sp->n = c->n_next;
	for (int r = 0; r < c->n_next; r++) {
		const struct rdm_node_conf *nx = &chain->nodes[c->nexts[r]];

		sp->name[r] = nx->name;
		sp->peer[r] = c->has_connect ? &c->connect : &nx->listen;
	}
	sp->mg = rdm_maglev_new(sp->name, sp->n, 0);
	if (!sp->mg) {
		free(sp);
		return NULL;
	}
	sp->chain = owned;
	return sp;
}

static void steer_free_all(struct steer *sp)
{
	while (sp) {
		struct steer *o = sp->older;

		rdm_maglev_free(sp->mg);
		if (sp->chain) {
			rdm_chain_free(sp->chain);
			free(sp->chain);
		}
		free(sp);
		sp = o;
	}
}

struct rdm_node *rdm_node_new(const struct rdm_chain_conf *chain, const char *name, char *err,
			      size_t errlen)
{
	const struct rdm_node_conf *c = rdm_chain_node(chain, name);
	struct rdm_node *n;

	if (!c) {
		snprintf(err, errlen, "%s: no node named '%s'", chain->file, name);
		errno = ENOENT;
		return NULL;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->chain = chain;
	n->conf = c;
	n->n_next = c->n_next;
	if (c->n_next && !(n->steer = steer_new(chain, c, NULL))) {
		snprintf(err, errlen, "%s: node '%s': steering table: %s", chain->file, name,
			 strerror(errno));
		goto err;
	}
	n->ops = c->transport == RDM_TRANSPORT_TCP ? &rdm_tcp_ops : &rdm_rdma_ops;
	if (c->transport == RDM_TRANSPORT_AUTO && n->n_next) {
		/* Auto: RDMA only from an address on an active RDMA device; the peer's side
		 * shows when connecting (see auto_check). */
		if (!c->has_listen || !rdm_rdma_probe(&c->listen)) {
			n->ops = &rdm_tcp_ops;
			nlog(n, "transport auto: %s is on no active RDMA device: using TCP",
			     c->has_listen ? c->listen.text : "this node (no listen address)");
		} else {
			n->auto_tcp_fallback = 1;
			nlog(n, "transport auto: %s has an active RDMA device: trying RDMA",
			     c->listen.text);
		}
	}
	for (int i = 0; i < chain->n_nodes; i++)
		for (int r = 0; r < chain->nodes[i].n_next; r++)
			if (&chain->nodes[chain->nodes[i].nexts[r]] == c &&
			    chain->nodes[i].transport != RDM_TRANSPORT_TCP)
				n->listen_rdma = 1;
	n->n_workers = c->workers > 0 ? c->workers : 1;
	n->drain_ms = 2000;
	n->tun = c->ingress.mode == RDM_INGRESS_TUN ? &c->ingress.tun
		 : c->egress.tun.name		    ? &c->egress.tun
						    : NULL;
	if (n->tun && n->n_workers > 1) {
		snprintf(err, errlen, "%s: node '%s': inline mode (tun %s) runs one worker for now",
			 chain->file, name, n->tun->name);
		goto err;
	}
	/* Frames travel back in inline mode and when a stage may reply (policy's reject):
	 * then each node remembers which upstream connection brought each flow. */
	for (int i = 0; i < chain->n_nodes; i++) {
		const struct rdm_node_conf *o = &chain->nodes[i];

		if (o->ingress.mode == RDM_INGRESS_TUN || o->egress.tun.name)
			n->returns = 1;
		for (int s = 0; s < o->n_stages; s++)
			if (!strcmp(o->stages[s].name, "policy"))
				n->returns = 1;
	}
	pthread_mutex_init(&n->eg_mu, NULL);
	pthread_rwlock_init(&n->report_mu, NULL);
	rdm_conn_opts_from_conf(&n->copts, &chain->transport);
	/* Hops leave from this node's own data address: with RDMA that picks the device. */
	n->copts.local = c->has_listen ? &c->listen : NULL;
	n->copts.node_id = c->id;
	if (c->n_stages > MAX_STAGES) {
		snprintf(err, errlen, "%s: node '%s': at most %d stages", chain->file, name,
			 MAX_STAGES);
		goto err;
	}
	for (int s = 0; s < c->n_stages; s++) {
		const struct rdm_stage_conf *sc = &c->stages[s];
		const struct rdm_stage_ops *ops = stage_lookup(chain, sc, err, errlen);

		if (!ops)
			goto err;
		n->stage_ops[s] = ops;
		n->stage_conf[s] = ops->conf_new(chain->doc, sc->conf, err, errlen);
		if (!n->stage_conf[s])
			goto err;
		n->n_stages++;
	}
	n->w = calloc((size_t)n->n_workers, sizeof(*n->w));
	if (!n->w) {
		snprintf(err, errlen, "out of memory");
		goto err;
	}
	for (int i = 0; i < n->n_workers; i++)
		if (worker_init(n, &n->w[i], i, err, errlen) < 0)
			goto err;
	return n;
err:
	rdm_node_free(n);
	errno = EINVAL;
	return NULL;
}

void rdm_node_free(struct rdm_node *n)
{
	if (!n)
		return;
	if (n->w)
		for (int i = 0; i < n->n_workers; i++)
			worker_fini(n, &n->w[i]);
	for (int s = 0; s < n->n_stages; s++)
		n->stage_ops[s]->conf_free(n->stage_conf[s]);
	steer_free_all(n->steer);
	pthread_mutex_destroy(&n->eg_mu);
	pthread_rwlock_destroy(&n->report_mu);
	free(n->w);
	free(n);
}

/* 1 when steer sp names exactly the next hops of node conf c of chain (in any order), at
 * the same addresses: a replica that moved (its node died, or was drained) is a new
 * next hop under its old name, and the old address drains. */
static int same_next(const struct steer *sp, const struct rdm_chain_conf *chain,
		     const struct rdm_node_conf *c)
{
	if (sp->n != c->n_next)
		return 0;
	for (int r = 0; r < c->n_next; r++) {
		const struct rdm_node_conf *nx = &chain->nodes[c->nexts[r]];
		const struct rdm_addr *peer = c->has_connect ? &c->connect : &nx->listen;
		int i = 0;

		while (i < sp->n &&
		       (strcmp(sp->name[i], nx->name) || strcmp(sp->peer[i]->text, peer->text)))
			i++;
		if (i == sp->n)
			return 0;
	}
	return 1;
}

/* SIGHUP, for the data plane: reads the chain file again and, when this node's next
 * replicas changed, makes the new steer current (workers switch in take_reload). Only
 * the next list is taken from the file; other changes need a restart, and are not
 * looked at. NULL when nothing changes or the file is broken (logged). */
static const struct steer *reload_next(struct rdm_node *n)
{
	struct rdm_chain_conf *c = calloc(1, sizeof(*c));
	const struct rdm_node_conf *me;
	struct steer *sp = NULL;
	char err[512];

	if (!c || rdm_chain_load(n->chain->file, c, err, sizeof(err)) < 0) {
		if (c)
			nlog(n, "reload %s: %s: keeping the running next hops", n->chain->file,
			     err);
		free(c);
		return NULL;
	}
	me = rdm_chain_node(c, n->conf->name);
	if (!me)
		nlog(n, "reload %s: no node named %s any more: keeping the running next hops",
		     n->chain->file, n->conf->name);
	else if (!n->steer || !me->n_next) {
		if (!n->steer != !me->n_next)
			nlog(n,
			     "reload %s: a node cannot start or stop being the chain's end while "
			     "running: keeping the running next hops",
			     n->chain->file);
	} else if (!same_next(n->steer, c, me)) {
		sp = steer_new(c, me, c);
		if (!sp)
			nlog(n, "reload: steering table: %s", strerror(errno));
	}
	if (!sp) {
		rdm_chain_free(c);
		free(c);
		return NULL;
	}
	sp->older = n->steer;
	n->steer = sp;
	nlog(n, "reload: next hops now %d replicas (was %d)", sp->n, sp->older->n);
	return sp;
}

/* SIGHUP: stages that can reload build new confs here, on the caller's thread; workers
 * switch between batches (take_reload); the old confs go once every worker has. A
 * stage whose files are broken keeps running on what it had. The next list is re-read
 * too (reload_next). */
void rdm_node_reload(struct rdm_node *n)
{
	char err[512];
	void *old[MAX_STAGES] = {0};
	int any = 0;
	unsigned gen;
	uint64_t one = 1, until = rdm_now_ns() + 5000000000ull;

	for (int s = 0; s < n->n_stages; s++) {
		const struct rdm_stage_ops *ops = n->stage_ops[s];

		n->reload_conf[s] = NULL;
		if (!ops->conf_reload)
			continue;
		err[0] = 0;
		errno = 0;
		n->reload_conf[s] = ops->conf_reload(n->stage_conf[s], err, sizeof(err));
		if (!n->reload_conf[s]) {
			if (errno == EOPNOTSUPP) /* nothing to reload: settings in the chain file */
				nlog(n, "reload %s: %s", ops->name, err);
			else
				nlog(n, "reload %s: %s: keeping the running configuration",
				     ops->name, err);
			continue;
		}
		any = 1;
	}
	n->reload_steer = reload_next(n);
	if (!any && !n->reload_steer)
		return;
	gen = atomic_fetch_add(&n->reload_gen, 1) + 1;
	for (int i = 0; i < n->n_workers; i++)
		if (write(n->w[i].wake.fd, &one, sizeof(one)) < 0)
			nlog(n, "wake worker %d: %s", i, strerror(errno));
	for (;;) {
		int behind = 0;

		for (int i = 0; i < n->n_workers; i++)
			if (atomic_load(&n->w[i].reload_seen) != gen && !n->w[i].finished)
				behind++;
		if (!behind)
			break;
		if (rdm_now_ns() > until) {
			/* A worker stuck this long is a bug; leaking the old conf is safer than
			 * freeing memory a worker may still read. */
			nlog(n,
			     "reload: %d workers did not switch in 5 s; old configuration kept in "
			     "memory",
			     behind);
			return;
		}
		usleep(1000);
	}
	for (int i = 0; i < n->n_workers; i++)
		if (atomic_load(&n->w[i].reload_seen) != gen)
			take_reload(&n->w[i], 0); /* a finished worker: its thread is gone */
	n->reload_steer = NULL;
	pthread_rwlock_wrlock(&n->report_mu);
	for (int s = 0; s < n->n_stages; s++) {
		if (!n->reload_conf[s])
			continue;
		old[s] = n->stage_conf[s];
		n->stage_conf[s] = n->reload_conf[s];
		n->stage_ops[s]->conf_free(old[s]);
		nlog(n, "reload %s: done", n->stage_ops[s]->name);
	}
	pthread_rwlock_unlock(&n->report_mu);
}

int rdm_node_upstreams(const struct rdm_node *n)
{
	int k = 0;

	for (int i = 0; i < n->n_workers; i++)
		k += *(volatile const int *)&n->w[i].n_ups;
	return k;
}

void rdm_node_embed(struct rdm_node *n)
{
	n->embedded = 1;
}

void rdm_node_stop(struct rdm_node *n)
{
	if (!atomic_exchange(&n->stop, 1))
		nlog(n, "asked to stop: draining and stopping");
}

int rdm_node_run(struct rdm_node *n, int drain_ms)
{
	sigset_t set;
	uint64_t t0 = rdm_now_ns();
	int stop_sent = 0;

	n->drain_ms = drain_ms;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	for (int i = 0; i < n->n_workers; i++)
		snap_stats(&n->w[i]);
	atomic_store(&n->running, 1);
	for (int i = 0; i < n->n_workers; i++) {
		int rc = pthread_create(&n->w[i].thr, NULL, worker_main, &n->w[i]);

		if (rc) {
			nlog(n, "pthread_create: %s", strerror(rc));
			atomic_store(&n->stop, 1);
			for (int j = 0; j < i; j++)
				pthread_join(n->w[j].thr, NULL);
			atomic_store(&n->running, 0);
			return -rc;
		}
	}
	while (atomic_load(&n->n_finished) < n->n_workers) {
		struct timespec to = {0, (n->embedded ? 20 : 100) * 1000000};
		int sig = 0;

		if (n->embedded)
			nanosleep(&to, NULL); /* the process's owner takes the signals */
		else
			sig = sigtimedwait(&set, NULL, &to);

		if (sig == SIGHUP && !atomic_load(&n->stop))
			rdm_node_reload(n);
		if (sig == SIGINT || sig == SIGTERM) {
			if (!atomic_load(&n->stop))
				nlog(n, "%s: draining and stopping", strsignal(sig));
			atomic_store(&n->stop, 1);
		}
		if (atomic_load(&n->stop) && !stop_sent) {
			uint64_t one = 1;

			for (int i = 0; i < n->n_workers; i++)
				if (write(n->w[i].wake.fd, &one, sizeof(one)) < 0)
					nlog(n, "wake worker %d: %s", i, strerror(errno));
			stop_sent = 1;
		}
	}
	for (int i = 0; i < n->n_workers; i++)
		pthread_join(n->w[i].thr, NULL);
	atomic_store(&n->running, 0);
	n->run_ns = rdm_now_ns() - t0;
	return 0;
}

struct totals {
	struct worker_stats st;
	struct rdm_conn_stats down, up;
	uint64_t flows;
	struct rdm_hist hops[RDM_MAX_HOPS - 1];
	struct rdm_hist all_hops; /* every hop of every frame, for a per-hop figure */
	struct rdm_hist e2e;
	int n_hops;
	uint64_t eg_first_ns, eg_last_ns;
};

static void sum_totals(const struct rdm_node *n, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	for (int h = 0; h < RDM_MAX_HOPS - 1; h++)
		rdm_hist_init(&t->hops[h]);
	rdm_hist_init(&t->e2e);
	rdm_hist_init(&t->all_hops);
	for (int i = 0; i < n->n_workers; i++) {
		const struct worker *w = &n->w[i];
		const uint64_t *src = (const uint64_t *)&w->st;
		uint64_t *dst = (uint64_t *)&t->st;

		for (size_t k = 0; k < sizeof(w->st) / sizeof(uint64_t); k++)
			dst[k] += src[k];
		t->st.ingress_reconnect_seq = w->st.ingress_reconnect_seq;
		if (atomic_load(&n->running)) {
			/* Live: the worker's copies from its last tick (at most 100 ms old). */
			stats_add(&t->down, &w->down_snap);
			stats_add(&t->up, &w->up_snap);
		} else {
			stats_add(&t->down, &w->down_closed);
			for (int r = 0; r < MAX_DOWNS; r++)
				if (w->downs[r].c)
					stats_add(&t->down, &w->downs[r].c->stats);
			stats_add(&t->up, &w->up_closed);
			for (int u = 0; u < w->n_ups; u++)
				stats_add(&t->up, &w->ups[u]->stats);
		}
		if (n->conf->egress.enabled) {
			t->flows += w->eflows.flows;
			if (w->eg_first_ns && (!t->eg_first_ns || w->eg_first_ns < t->eg_first_ns))
				t->eg_first_ns = w->eg_first_ns;
			if (w->eg_last_ns > t->eg_last_ns)
				t->eg_last_ns = w->eg_last_ns;
			for (int h = 0; h < RDM_MAX_HOPS - 1; h++) {
				rdm_hist_merge(&t->hops[h], &w->hops[h]);
				rdm_hist_merge(&t->all_hops, &w->hops[h]);
				if (w->hops[h].count && h + 1 > t->n_hops)
					t->n_hops = h + 1;
			}
			rdm_hist_merge(&t->e2e, &w->e2e);
		}
	}
}

/* A stage's counters summed over the workers, in the order it first emits them. */
#define MAX_STAGE_COUNTERS 256
struct stage_sum {
	int n;
	char name[MAX_STAGE_COUNTERS][64];
	uint64_t v[MAX_STAGE_COUNTERS];
};

static void stage_emit(void *arg, const char *name, uint64_t v)
{
	struct stage_sum *sum = arg;
	int i;

	for (i = 0; i < sum->n; i++)
		if (!strcmp(sum->name[i], name))
			break;
	if (i == sum->n) {
		if (sum->n == MAX_STAGE_COUNTERS)
			return;
		snprintf(sum->name[sum->n++], sizeof(sum->name[0]), "%s", name);
		sum->v[i] = 0;
	}
	sum->v[i] += v;
}

void rdm_node_report(const struct rdm_node *n, FILE *out)
{
	const struct rdm_conn *down0 = n->n_next ? n->w[0].downs[n->w[0].slot_of[0]].c : NULL;
	struct totals t;
	uint64_t lost = 0, reordered = 0, drops = 0;

	sum_totals(n, &t);
	{
		struct rusage ru;

		getrusage(RUSAGE_SELF, &ru);
		fprintf(out,
			"node %s\nnode_id %u\nworkers %d\nrun_ms %" PRIu64 "\ncpu_ms %" PRIu64 "\n",
			n->conf->name, n->conf->id, n->n_workers, n->run_ns / 1000000,
			(uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
			    (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000);
	}
	fprintf(out, "rx_frames %" PRIu64 "\ntx_frames %" PRIu64 "\nstalls %" PRIu64 "\n",
		t.st.rx_frames, t.st.tx_frames, t.st.stalls);
	fprintf(out,
		"back_rx_frames %" PRIu64 "\nback_tx_frames %" PRIu64 "\nreplies %" PRIu64
		"\ntun_rx %" PRIu64 "\ntun_tx %" PRIu64 "\nnotices %" PRIu64 "\n",
		t.st.back_rx_frames, t.st.back_tx_frames, t.st.replies, t.st.tun_rx, t.st.tun_tx,
		t.st.notices);
	for (int r = 0; r < DROP_COUNT; r++) {
		fprintf(out, "drop_%s %" PRIu64 "\n", drop_name(r), t.st.drops[r]);
		drops += t.st.drops[r];
	}
	fprintf(out, "drops %" PRIu64 "\n", drops);
	if (n->conf->ingress.mode != RDM_INGRESS_NONE)
		fprintf(out,
			"ingress_taken %" PRIu64 "\ningress_sent %" PRIu64
			"\ningress_reconnect_seq %" PRIu64 "\n",
			t.st.ingress_taken, t.st.ingress_sent, t.st.ingress_reconnect_seq);
	if (n->n_next) {
		uint64_t fb = 0;

		for (int i = 0; i < n->n_workers; i++)
			fb += n->w[i].auto_fallbacks;
		fprintf(out,
			"down_transport %s\ndown_replicas %d\ndown_auto_fallbacks %" PRIu64
			"\npins_moved %" PRIu64 "\ndrained_idle %" PRIu64
			"\ndrain_timeouts %" PRIu64 "\ndrained_unreachable %" PRIu64
			"\npins_detoured %" PRIu64 "\n",
			down0 ? down0->ops->name : "none", n->steer->n, fb, t.st.pins_moved,
			t.st.drained_idle, t.st.drain_timeouts, t.st.drained_unreachable,
			t.st.pins_detoured);
	}
	if (n->n_next)
		fprintf(out,
			"down_tx_frames %" PRIu64 "\ndown_tx_bytes %" PRIu64
			"\ndown_connects %" PRIu64 "\ndown_connect_fails %" PRIu64
			"\ndown_disconnects %" PRIu64 "\ndown_congested %" PRIu64
			"\ndown_lost_on_close %" PRIu64 "\ndown_queue_full %" PRIu64 "\n",
			t.down.tx_frames, t.down.tx_bytes, t.down.connects, t.down.connect_fails,
			t.down.disconnects, t.down.congested, t.down.lost_on_close,
			t.down.queue_full);
	if (n->n_next && down0 && down0->ops == &rdm_rdma_ops)
		fprintf(out,
			"down_inline_sends %" PRIu64 "\ndown_zero_copy %" PRIu64
			"\ndown_credit_stalls %" PRIu64 "\ndown_credit_msgs %" PRIu64
			"\ndown_keepalives %" PRIu64 "\ndown_rnr_errors %" PRIu64
			"\ndown_retry_errors %" PRIu64 "\ndown_wc_errors %" PRIu64
			"\ndown_tx_msgs %" PRIu64 "\ndown_tx_packed %" PRIu64 "\n",
			t.down.inline_sends, t.down.zero_copy, t.down.credit_stalls,
			t.down.credit_msgs, t.down.keepalives, t.down.rnr_errors,
			t.down.retry_errors, t.down.wc_errors, t.down.tx_msgs, t.down.tx_packed);
	if (n->conf->has_listen)
		fprintf(out,
			"up_rx_frames %" PRIu64 "\nup_rx_bytes %" PRIu64 "\nup_rx_bad_len %" PRIu64
			"\nup_disconnects %" PRIu64 "\n",
			t.up.rx_frames, t.up.rx_bytes, t.up.rx_bad_len, t.up.disconnects);
	if (n->conf->egress.enabled) {
		for (int i = 0; i < n->n_origins; i++) {
			lost += n->origins[i].lost;
			reordered += n->origins[i].reordered;
		}
		fprintf(out,
			"egress_packets %" PRIu64 "\negress_bytes %" PRIu64
			"\negress_flows %" PRIu64 "\negress_lost %" PRIu64
			"\negress_reordered %" PRIu64 "\negress_unsequenced %" PRIu64
			"\negress_origins %d\n",
			t.st.egress_packets, t.st.egress_bytes, t.flows, lost, reordered,
			n->eg_unsequenced, n->n_origins);
		for (int h = 0; h < t.n_hops; h++)
			fprintf(out,
				"hop%d_count %" PRIu64 "\nhop%d_p50_ns %" PRIu64
				"\nhop%d_p99_ns %" PRIu64 "\nhop%d_p999_ns %" PRIu64
				"\nhop%d_max_ns %" PRIu64 "\n",
				h + 1, t.hops[h].count, h + 1, rdm_hist_pct(&t.hops[h], 50), h + 1,
				rdm_hist_pct(&t.hops[h], 99), h + 1, rdm_hist_pct(&t.hops[h], 99.9),
				h + 1, t.hops[h].max);
		fprintf(out,
			"hops_count %" PRIu64 "\nhops_p50_ns %" PRIu64 "\nhops_p99_ns %" PRIu64
			"\nhops_p999_ns %" PRIu64 "\nhops_max_ns %" PRIu64
			"\negress_span_us %" PRIu64 "\n",
			t.all_hops.count, rdm_hist_pct(&t.all_hops, 50),
			rdm_hist_pct(&t.all_hops, 99), rdm_hist_pct(&t.all_hops, 99.9),
			t.all_hops.max,
			t.eg_last_ns > t.eg_first_ns ? (t.eg_last_ns - t.eg_first_ns) / 1000 : 0);
		fprintf(out, "e2e_p50_ns %" PRIu64 "\ne2e_p99_ns %" PRIu64 "\n",
			rdm_hist_pct(&t.e2e, 50), rdm_hist_pct(&t.e2e, 99));
	}
	for (int s = 0; s < n->n_stages; s++) {
		uint64_t fail = 0, drop = 0;

		struct stage_sum *sum = calloc(1, sizeof(*sum)); /* 18 KiB: not on the stack */

		if (!sum)
			break;
		pthread_rwlock_rdlock(&((struct rdm_node *)n)->report_mu);
		for (int i = 0; i < n->n_workers; i++) {
			n->stage_ops[s]->report(n->w[i].stage_rt[s], stage_emit, sum);
			fail += n->w[i].st.stage_error[s];
			drop += n->w[i].st.stage_drop[s];
		}
		pthread_rwlock_unlock(&((struct rdm_node *)n)->report_mu);
		for (int k = 0; k < sum->n; k++)
			fprintf(out, "stage_%s_%s %" PRIu64 "\n", n->stage_ops[s]->name,
				sum->name[k], sum->v[k]);
		free(sum);
		fprintf(out, "stage_%s_errors %" PRIu64 "\nstage_%s_dropped %" PRIu64 "\n",
			n->stage_ops[s]->name, fail, n->stage_ops[s]->name, drop);
	}
}

void rdm_node_summary(const struct rdm_node *n, FILE *out)
{
	struct totals t;
	uint64_t drops = 0, lost = 0;

	sum_totals(n, &t);
	for (int r = 0; r < DROP_COUNT; r++)
		drops += t.st.drops[r];
	fprintf(out, "%s: rx %" PRIu64 " tx %" PRIu64 " drops %" PRIu64, n->conf->name,
		t.st.rx_frames, t.st.tx_frames, drops);
	for (int r = 0; r < DROP_COUNT; r++)
		if (t.st.drops[r])
			fprintf(out, " %s=%" PRIu64, drop_name(r), t.st.drops[r]);
	if (n->conf->ingress.mode != RDM_INGRESS_NONE)
		fprintf(out, " | ingress taken %" PRIu64 " sent %" PRIu64, t.st.ingress_taken,
			t.st.ingress_sent);
	if (n->conf->egress.enabled) {
		for (int i = 0; i < n->n_origins; i++)
			lost += n->origins[i].lost;
		fprintf(out, " | egress packets %" PRIu64 " flows %" PRIu64 " lost %" PRIu64,
			t.st.egress_packets, t.flows, lost);
	}
	fputc('\n', out);
}
