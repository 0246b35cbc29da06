/* The node's private types and its files' shared functions: struct rdm_node, its
 * workers, their next-hop connections and steering tables, and the rdm_node__*
 * functions one node/node_*.c file calls in another. Nothing outside the node's own
 * files includes it. */
#ifndef RDM_NODE_INT_H
#define RDM_NODE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/certs.h"
#include "lib/flowcount.h"
#include "lib/hist.h"
#include "node/gen.h"
#include "node/maglev.h"
#include "node/node.h"
#include "node/pcapio.h"
#include "services/flowtable.h"
#include "services/stage.h"
#include "transport/frame.h"
#include "transport/framectx.h"
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
	DROP_NO_PATH,	 /* going back, but no upstream connection carried the flow */
	DROP_NO_CLIENT,	 /* going back to an ingress that replays a file: nobody to reach */
	DROP_TUN,	 /* the TUN device did not take the packet (its queue is full) */
	DROP_WRONG_PATH, /* from upstream, but not the service path (SPI, SI) it may send */
	DROP_COUNT,
};

/* A worker's counters: all uint64_t (reports add them up field by field). */
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
	uint64_t auth_refused;	/* connections that did not prove themselves (node_auth.c) */
	/* Flow contexts (transport/framectx.h): what this worker's connections sent and
	 * received; hdr_max is the worker's largest header (reports take the maximum). */
	struct rdm_ctx_tx_stats ctx_tx;
	struct rdm_ctx_rx_stats ctx_rx;
	uint64_t ctx_resets; /* send tables reset: a connection did not take every frame */
};

/* The egress's sequence accounting for one origin (an ingress worker's frames). */
struct origin {
	uint32_t id;
	uint64_t next, received, lost, reordered;
};

/* The replicas of the next stage a node steers to, and the Maglev table over their
 * names. Immutable once published; every one is kept until the node is freed. */
struct steer {
	int n;
	const char *name[RDM_MAX_NEXT];
	const char *ident[RDM_MAX_NEXT]; /* the certificate name each must prove */
	const struct rdm_addr *peer[RDM_MAX_NEXT];
	struct rdm_maglev *mg;
	struct rdm_chain_conf *chain; /* a reloaded chain file the names point into, or NULL */
	struct steer *older;
};

/* A node that may send to this one: its certificate name, and the service index its
 * frames carry on arrival (the ingress starts at INGRESS_SI, every hop counts one down). */
struct upstream {
	char name[RDM_CERTS_NAME_MAX + 1];
	uint8_t si;
};

/* A set of service indexes, one bit each. */
struct si_set {
	uint64_t bits[4];
};

/* A worker's connection to one replica of the next stage. A replica that leaves the
 * table drains: it gets no new flows, and goes once no flow is pinned to it or the
 * drain timeout passes. */
struct down {
	struct rdm_conn *c; /* NULL: the slot is free */
	const char *name;
	const char *ident; /* the certificate name it must prove (protect: auth) */
	const struct rdm_addr *peer;
	int active;  /* in the current table */
	int closing; /* drained: told it we are done, waiting for it to close */
	int shut_tx; /* the worker finished: told it we are done, waiting for it to close */
	int ever_up;
	uint64_t dial_ns; /* when its connection was last started */
	uint32_t gen;	  /* bumped when the slot is freed: pins to the old replica go stale */
	uint64_t pins;	  /* flows pinned to this replica */
	uint64_t drain_start_ns;
	/* The flow contexts of the slot's connection, both ways; reset when it comes up. */
	struct rdm_ctx_tx *ctx_tx;
	struct rdm_ctx_rx *ctx_rx;
};

/* A flow's pin: the slot of the replica it started on, as of that slot's generation. */
struct pin {
	uint32_t slot, gen;
	uint32_t epoch; /* the connection's epoch when the flow was pinned to it */
	uint8_t moved;	/* the flow went on mid-stream elsewhere, or after a reconnect */
	uint8_t pinned; /* 0 until the flow's first frame forward is steered */
};

/* A flow as the node tracks it, in one table (w->flows) for both jobs: the upstream
 * connection it came in on (the way back) and its pin to a next-hop replica. A frame's
 * entry is found once, on arrival, and steering reuses it (rdm_frame.owner_flow). */
struct nflow {
	uint64_t path; /* serial of the upstream connection that brought it; 0: none noted */
	struct pin pin;
};

/* One worker thread: its event loop, connections, stage runtimes, batch buffers, and
 * whatever of the ingress and egress it runs. While the node runs only its own thread
 * writes it; reports and reloads on other threads read its counters and snapshots. */
struct worker {
	struct rdm_node *node;
	int idx;
	pthread_t thr;
	struct rdm_loop *loop;
	struct rdm_io wake;
	struct rdm_listener *lst, *lst_rdma, *lst_shm;
	int refusal_logs;	    /* refusals logged this tick (node_auth.c) */
	uint64_t refusals_unlogged; /* and those that were not */
	/* Steering: a connection per replica of the next stage, the table that picks one
	 * for a new flow, and each flow's pin to the replica it started on. */
	struct down downs[MAX_DOWNS];
	int n_downs; /* every slot ever used lies below this: loops over downs stop there */
	const struct steer *steer;
	int slot_of[RDM_MAX_NEXT]; /* steer's replica i is downs[slot_of[i]] */
	/* The node's flows (struct nflow): pins where it steers, return paths where
	 * track_paths says it notes them. */
	struct rdm_flowtab *flows;
	int track_paths;
	struct rdm_conn *ups[MAX_UPS];
	uint64_t up_serial[MAX_UPS];	   /* tells a reused connection slot from its predecessor */
	struct si_set up_si[MAX_UPS];	   /* the service indexes each upstream may send */
	struct rdm_ctx_rx *up_rx[MAX_UPS]; /* each upstream connection's flow contexts */
	struct rdm_ctx_tx *up_tx[MAX_UPS]; /* and those of frames going back on it */
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
	struct rdm_txframe *tx; /* RDM_CTX_OUT_MAX per frame: state-only frames go first */
	uint8_t *tx_part;	/* per tx frame: 1 for a state-only one */
	int tx_pkts;		/* how many of the tx frames encoded last are not */

	/* The TUN device at this edge (inline mode). */
	int tun_fd;
	struct rdm_io tun_io;

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
	struct rdm_ctx_tx *fout_ctx; /* the frames capture keeps flow contexts as a link would */
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

/* The node: its conf, the stages hosted here, its workers, and what they share. */
struct rdm_node {
	const struct rdm_chain_conf *chain;
	const struct rdm_node_conf *conf;
	int n_next;			  /* replicas of the next stage at start (0: chain's end) */
	struct steer *steer;		  /* the current one; older ones hang off it */
	const struct steer *reload_steer; /* what workers switch to on a reload, or NULL */
	const struct rdm_transport_ops *ops; /* towards next */
	int auto_tcp_fallback;		     /* transport auto: TCP if the peer has no RDMA */
	int auto_no_rdma; /* transport auto, no RDMA here (no device, no GID): TCP from the start */
	int returns;	  /* frames may travel back: track return paths */
	const struct rdm_tun_conf *tun; /* this node's TUN edge, or NULL */
	int listen_rdma;		/* an upstream reaches us over RDMA */
	int try_shm; /* transport auto: a next replica on this host is reached over shm */
	struct rdm_conn_opts copts;
	const struct rdm_stage_ops *stage_ops[MAX_STAGES];
	void *stage_conf[MAX_STAGES];
	int n_stages;
	int n_workers;
	struct worker *w;
	atomic_int stop;
	atomic_int fatal; /* -errno that stopped the node (rdm_node__fatal), or 0 */
	atomic_int n_finished;
	int embedded; /* one of several nodes in a process: takes no signals */
	int drain_ms;
	uint64_t run_ns;
	atomic_uint reload_gen;	       /* bumped when reload_conf is ready */
	atomic_int running;	       /* workers run: reports read snapshots */
	pthread_rwlock_t report_mu;    /* reports (read) against conf swaps and frees (write) */
	void *reload_conf[MAX_STAGES]; /* the confs workers switch to, or NULL */

	struct rdm_tls_ctx *tls_srv, *tls_cli; /* protect: auth; NULL with none */
	pthread_mutex_t auth_mu;	       /* up_names, swapped on reload */
	struct upstream *up_names;	       /* who may send here, and at which service index */
	int n_up_names;
	uint64_t up_names_ns; /* when the chain file was last read for them */

	pthread_mutex_t eg_mu; /* egress sequence accounting, shared by workers */
	struct origin origins[MAX_ORIGINS];
	int n_origins;
	uint64_t eg_unsequenced, eg_accounted;
	uint64_t eg_missing; /* gaps not filled yet, over all origins */
	uint64_t eg_full_ns; /* when accounting reached the count with gaps left */
};

/* node.c: logging and counters */
void rdm_node__log(const struct rdm_node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rdm_node__stats_add(struct rdm_conn_stats *t, const struct rdm_conn_stats *a);
/* The node cannot do its job (rc = -errno): it stops, and rdm_node_run returns rc. */
void rdm_node__fatal(struct rdm_node *n, int rc);

/* node_auth.c: proving hops (protect: auth) */
int rdm_node__auth_init(struct rdm_node *n, char *err, size_t errlen);
void rdm_node__auth_fini(struct rdm_node *n);
void rdm_node__auth_reload(struct rdm_node *n);
int rdm_node__auth_upstreams(struct rdm_node *n, const struct rdm_chain_conf *chain);
void rdm_node__auth_tick(struct worker *w);
void rdm_node__path_of(struct rdm_node *n, const char *peer_id, struct si_set *set);
int rdm_node__path_check(struct worker *w, int u, int m);
void rdm_node__auth_listen(const struct worker *w, struct rdm_conn_opts *o,
			   struct rdm_conn_cbs *cbs);
void rdm_node__auth_dial(const struct worker *w, const char *identity, struct rdm_conn_opts *o,
			 struct rdm_conn_cbs *cbs);

/* node_worker.c: a worker's thread, its setup and teardown */
int rdm_node__worker_init(struct rdm_node *n, struct worker *w, int idx, char *err, size_t errlen);
void rdm_node__worker_fini(struct rdm_node *n, struct worker *w);
void *rdm_node__worker_main(void *arg);
void rdm_node__resume_inputs(struct worker *w);
void rdm_node__snap_stats(struct worker *w);

/* node_pipeline.c: a batch through the stages */
int rdm_node__decode_batch(struct worker *w, struct rdm_ctx_rx *r, const struct rdm_rxframe *rx,
			   int n, int dir, int *parts);
void rdm_node__handle_batch(struct worker *w, int m, int dir);
int rdm_node__encode_tx(struct worker *w, struct rdm_ctx_tx *t, struct rdm_frame *const *fs, int m,
			int want, int dir);
int rdm_node__send_tx(struct worker *w, struct rdm_conn *c, struct rdm_ctx_tx *t, int k,
		      uint64_t *sent);

/* node_steer.c: which replica of the next stage a frame goes to */
struct steer *rdm_node__steer_new(const struct rdm_chain_conf *chain, const struct rdm_node_conf *c,
				  struct rdm_chain_conf *owned);
void rdm_node__steer_free_all(struct steer *sp);
void rdm_node__pin_end(void *arg, struct rdm_flow *fl, enum rdm_flow_end why);
void rdm_node__forward(struct worker *w, struct rdm_frame *const *fs, int m);
int rdm_node__downs_congested(const struct worker *w);
int rdm_node__downs_up(const struct worker *w);

/* node_down.c: the connections to the next stage's replicas */
int rdm_node__apply_steer(struct worker *w, const struct steer *sp);
void rdm_node__auto_check(struct worker *w);

/* node_up.c: the upstream side */
int rdm_node__start_listener(struct worker *w);
int rdm_node__listen_probe(const struct rdm_node *n, char *err, size_t errlen);
void rdm_node__send_back(struct worker *w, struct rdm_frame *const *fs, int m);
void rdm_node__close_ups(struct worker *w);

/* node_ingress.c: packets entering the chain */
void rdm_node__pump(void *arg);
void rdm_node__tun_io(struct rdm_io *io, uint32_t events);

/* node_egress.c: packets leaving the chain */
void rdm_node__egress(struct worker *w, struct rdm_frame *const *fs, int m);
int rdm_node__egress_budget(struct worker *w, int n);
void rdm_node__egress_check_late(struct rdm_node *n, uint64_t now);
void rdm_node__tun_write(struct worker *w, struct rdm_frame *const *fs, int m);

/* node_drain.c: winding down next-hop connections */
void rdm_node__begin_stop(struct worker *w);
void rdm_node__check_finished(struct worker *w);
void rdm_node__drain_check(struct worker *w, uint64_t now);

/* node_reload.c: switching to reloaded confs and next hops */
void rdm_node__take_reload(struct worker *w, int on_worker);

#endif
