/* orchsim: simulated rack nodes for the orchestrator benchmark (tests/bench/orch.sh).
 * Each one has a real control channel (TLS 1.3 with its own certificate, the messages of
 * lib/msg.h) and no data plane, and does on that channel what the node agent
 * (node/agent.c) does: hello with its epoch and running replicas; an assign newer than
 * the epoch it applied becomes its replica set and is answered "applied" ok (an older
 * one is refused with the agent's words; the chain text itself is not checked, as
 * nothing runs it); a heartbeat every heartbeat_ms naming its replicas as running (no
 * counters); a silence of twice dead_ms, a closed or failed channel: the next address
 * of --orch after a backoff of 100 ms doubling to 1 s. A "leader" message (from an
 * orchestrator that does not lead) sends it to the leader it names, or, when it names
 * none, to the next address after 200 ms.
 *
 *   orchsim --orch IP:PORT[,IP:PORT...] --certs DIR --count N [--prefix sim-]
 *           [--first 0] [--threads 4] [--quiet]
 *
 * Nodes are PREFIX<first>..PREFIX<first+N-1>: rack nodes, with DIR/NAME.pem, DIR/NAME.key
 * and DIR/ca.pem. A few threads each own a slice of them and poll their channels.
 * Stdout (line-buffered; t_ns is CLOCK_REALTIME, when the last node got there):
 *   joined N t_ns=T          once: every node has been answered (an assign or an ack)
 *   epoch E all N t_ns=T     every node applied E, the highest epoch seen (once per E)
 *   served-by ADDR N t_ns=T  every node is served by ADDR (answered on its channel
 *                            there), which did not serve them all at the last such line
 *   connected-to ADDR N t_ns=T   the same, after at least one node moved there from
 *                            another address (a failover finished)
 * Stderr: a progress line every second, and each node's events unless --quiet. Runs
 * until SIGINT or SIGTERM, then closes every channel and exits 0 (2: bad usage, 1: a
 * node's certificate could not be loaded or a thread did not start). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/msg.h"
#include "lib/tls.h"

#define MAX_ADDRS      16
#define MAX_THREADS    64
#define NAME_LEN       64 /* a node name (RDM_NODE_NAME_MAX) and its NUL */
#define RUN_LEN	       1024
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define NO_LEADER_MS   200 /* a "leader" message that names none: wait, then the next */
#define DIAL_MS	       2000
#define DIAL_TURN_MS   50 /* a turn starts dials for this long, then serves the channels up */
#define TICK_MS	       10
#define MS	       1000000ull

struct sim {
	char name[NAME_LEN];
	struct rdm_tls_ctx *tls;
	struct rdm_tls_conn *c;
	int at; /* index in g.addrs of the address it dials or talks to */
	int backoff_ms, hb_ms, dead_ms;
	int prev_at; /* the address that served it last, -1 before any */
	uint64_t next_dial_ns, last_rx_ns, last_hb_ns;
	uint64_t epoch; /* applied */
	char running[RUN_LEN];
	/* Published for the main thread's report; a time is stored before its value. */
	atomic_int served_at; /* the address answering it on its channel now, or -1 */
	atomic_int joined;
	_Atomic uint64_t pub_epoch, epoch_ns, served_ns, joined_ns;
};

static struct {
	struct sim *sims;
	int n, quiet;
	const char *certs;
	char addrs[MAX_ADDRS][64];
	atomic_int n_addrs;
	pthread_mutex_t addr_mu; /* held to add an address (a leader not in --orch) */
	atomic_int stop, load_failed;
	atomic_uint moves;				  /* nodes served somewhere new */
	atomic_uint dial_fails, lost, redirects, refused; /* for the progress line */
} g = {.addr_mu = PTHREAD_MUTEX_INITIALIZER};

struct slice {
	pthread_t thr;
	int lo, hi;
};

static void slog(const struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void slog(const struct sim *s, const char *fmt, ...)
{
	char msg[1024], ts[32];
	va_list ap;

	if (g.quiet)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rdm_log_clock(ts, sizeof(ts));
	fprintf(stderr, "orchsim: %s: %s %s\n", s->name, ts, msg);
}

/* The index of addr in g.addrs, added when new; -1 when the list is full. */
static int addr_index(const char *addr)
{
	int n = atomic_load(&g.n_addrs), i;

	for (i = 0; i < n; i++)
		if (!strcmp(g.addrs[i], addr))
			return i;
	pthread_mutex_lock(&g.addr_mu);
	n = atomic_load(&g.n_addrs);
	for (i = 0; i < n && strcmp(g.addrs[i], addr); i++) {
	}
	if (i == n && n < MAX_ADDRS && strlen(addr) < sizeof(g.addrs[0])) {
		strcpy(g.addrs[n], addr);
		atomic_store(&g.n_addrs, n + 1); /* after the text: readers see it whole */
	} else if (i == n) {
		i = -1;
	}
	pthread_mutex_unlock(&g.addr_mu);
	return i;
}

/* ---- one node's channel ------------------------------------------------------------ */

/* Closes the channel; the next dial goes to address at, delay_ms from now. */
static void drop(struct sim *s, int at, int delay_ms)
{
	rdm_tls_close(s->c);
	s->c = NULL;
	atomic_store(&s->served_at, -1);
	s->at = at;
	s->next_dial_ns = rdm_now_ns() + (uint64_t)delay_ms * MS;
}

/* A lost or failed channel: the next address, after the backoff, which then doubles. */
static void hang_up(struct sim *s, const char *why)
{
	slog(s, "%s %s: %s (next: %s in %d ms)", s->c ? "channel to" : "cannot reach",
	     g.addrs[s->at], why, g.addrs[(s->at + 1) % atomic_load(&g.n_addrs)], s->backoff_ms);
	atomic_fetch_add(s->c ? &g.lost : &g.dial_fails, 1);
	drop(s, (s->at + 1) % atomic_load(&g.n_addrs), s->backoff_ms);
	s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

static void dial(struct sim *s)
{
	char err[512];
	const char *kv[] = {"running", s->running, NULL};

	s->c = rdm_tls_connect(s->tls, g.addrs[s->at], RDM_ORCH_NAME, DIAL_MS, err, sizeof(err));
	if (!s->c) {
		hang_up(s, err);
		return;
	}
	s->last_rx_ns = rdm_now_ns();
	if (rdm_msg_send(s->c, "hello", s->epoch, kv, NULL, 0, RDM_ORCH_SEND_MS) < 0)
		hang_up(s, "hello not sent");
}

/* The orchestrator at s->at answered: the node is served there (and has joined). */
static void served(struct sim *s)
{
	uint64_t now = rdm_wall_ns();

	s->backoff_ms = BACKOFF_MIN_MS;
	if (atomic_load(&s->served_at) == s->at)
		return;
	if (s->prev_at >= 0 && s->prev_at != s->at)
		atomic_fetch_add(&g.moves, 1);
	s->prev_at = s->at;
	atomic_store(&s->served_ns, now);
	atomic_store(&s->served_at, s->at);
	if (!atomic_load(&s->joined)) {
		atomic_store(&s->joined_ns, now);
		atomic_store(&s->joined, 1);
	}
}

static void reply_applied(struct sim *s, uint64_t epoch, const char *result)
{
	const char *kv[] = {"result", result, NULL};

	if (rdm_msg_send(s->c, "applied", epoch, kv, NULL, 0, RDM_ORCH_SEND_MS) < 0)
		hang_up(s, "reply not sent");
}

/* An assign: refused unless newer (node/agent.c's take_assign), else taken whole. */
static void take_assign(struct sim *s, const struct rdm_msg *m)
{
	const char *reps = rdm_msg_get(m, "replicas"), *hb = rdm_msg_get(m, "heartbeat_ms");
	const char *dead = rdm_msg_get(m, "dead_ms");
	char why[128];

	if (m->epoch <= s->epoch) {
		snprintf(why, sizeof(why),
			 "refused: epoch %" PRIu64 " is not newer than the applied %" PRIu64,
			 m->epoch, s->epoch);
		slog(s, "assignment %s", why);
		atomic_fetch_add(&g.refused, 1);
		reply_applied(s, m->epoch, why);
		return;
	}
	snprintf(s->running, sizeof(s->running), "%s", reps ? reps : "");
	s->epoch = m->epoch;
	if (hb && atoi(hb) > 0)
		s->hb_ms = atoi(hb);
	if (dead && atoi(dead) > 0)
		s->dead_ms = atoi(dead);
	atomic_store(&s->epoch_ns, rdm_wall_ns());
	atomic_store(&s->pub_epoch, s->epoch);
	reply_applied(s, m->epoch, "ok");
}

/* A "leader" message: we reached a follower. Go where it points, or try the next. */
static void take_leader(struct sim *s, const struct rdm_msg *m)
{
	const char *l = rdm_msg_get(m, "leader"), *why = rdm_msg_get(m, "why");
	int at = l && *l ? addr_index(l) : -1;

	atomic_fetch_add(&g.redirects, 1);
	slog(s, "%s does not lead (%s): leader %s", g.addrs[s->at], why ? why : "no reason",
	     l && *l ? l : "unknown");
	if (at >= 0)
		drop(s, at, 0);
	else
		drop(s, (s->at + 1) % atomic_load(&g.n_addrs), NO_LEADER_MS);
}

static void heartbeat(struct sim *s)
{
	char body[16384], list[RUN_LEN];
	const char *kv[] = {"running", s->running, NULL};
	size_t used = 0;

	/* A running set fits RUN_LEN, so its lines (one per id, 18 bytes more) fit body. */
	snprintf(list, sizeof(list), "%s", s->running);
	for (char *save = NULL, *id = strtok_r(list, " ", &save); id;
	     id = strtok_r(NULL, " ", &save))
		used +=
		    (size_t)snprintf(body + used, sizeof(body) - used, "replica %s running\n", id);
	s->last_hb_ns = rdm_now_ns();
	if (rdm_msg_send(s->c, "heartbeat", s->epoch, kv, body, used, RDM_ORCH_SEND_MS) < 0)
		hang_up(s, "heartbeat not sent");
}

/* Reads every whole message the channel holds. */
static void take_msgs(struct sim *s)
{
	while (s->c) {
		struct rdm_msg m;
		char err[512] = "";
		int rc = rdm_msg_recv(s->c, &m, 0, err, sizeof(err));

		if (rc == -ETIMEDOUT)
			return;
		if (rc == -EBADMSG) {
			slog(s, "bad message from %s: %s", g.addrs[s->at], err);
			continue;
		}
		if (rc < 0) {
			hang_up(s, err[0] ? err : strerror(-rc));
			return;
		}
		s->last_rx_ns = rdm_now_ns();
		if (!strcmp(m.type, "assign")) {
			served(s);
			take_assign(s, &m);
		} else if (!strcmp(m.type, "ack")) {
			served(s);
		} else if (!strcmp(m.type, "leader")) {
			take_leader(s, &m);
		} else {
			slog(s, "unexpected message '%s' from %s: ignored", m.type, g.addrs[s->at]);
		}
		rdm_msg_free(&m);
	}
}

/* ---- the threads ------------------------------------------------------------------- */

static void *worker(void *arg)
{
	struct slice *w = arg;
	int cap = w->hi - w->lo;
	struct pollfd *pf = calloc((size_t)cap, sizeof(*pf));
	int *who = calloc((size_t)cap, sizeof(*who));
	char err[512];

	for (int i = w->lo; i < w->hi && pf && who; i++) {
		g.sims[i].tls = rdm_tls_ctx_load(g.certs, g.sims[i].name, 0, err, sizeof(err));
		if (!g.sims[i].tls) {
			fprintf(stderr, "orchsim: %s: %s\n", g.sims[i].name, err);
			atomic_store(&g.load_failed, 1);
			break;
		}
	}
	if (!pf || !who)
		atomic_store(&g.load_failed, 1);
	while (!atomic_load(&g.stop) && !atomic_load(&g.load_failed)) {
		uint64_t now = rdm_now_ns(), dial_until = now + DIAL_TURN_MS * MS;
		int n = 0, timeout = TICK_MS;

		for (int i = w->lo; i < w->hi; i++) {
			struct sim *s = &g.sims[i];

			/* A dial blocks this thread (its handshake): a few per turn, so the
			 * channels already up keep their heartbeats. */
			if (!s->c && now >= s->next_dial_ns && now < dial_until) {
				dial(s);
				now = rdm_now_ns();
			}
			if (s->c && now - s->last_rx_ns > (uint64_t)s->dead_ms * 2 * MS)
				hang_up(s, "the orchestrator is silent");
			else if (s->c && now - s->last_hb_ns >= (uint64_t)s->hb_ms * MS)
				heartbeat(s);
			if (!s->c)
				continue;
			if (rdm_tls_pending(s->c) > 0)
				timeout = 0;
			who[n] = i;
			pf[n++] = (struct pollfd){.fd = rdm_tls_fd(s->c), .events = POLLIN};
		}
		if (poll(pf, (nfds_t)n, timeout) < 0 && errno != EINTR)
			break;
		for (int k = 0; k < n; k++) {
			struct sim *s = &g.sims[who[k]];

			if (s->c && (pf[k].revents || rdm_tls_pending(s->c) > 0))
				take_msgs(s);
		}
	}
	for (int i = w->lo; i < w->hi; i++) {
		rdm_tls_close(g.sims[i].c);
		g.sims[i].c = NULL;
		rdm_tls_ctx_free(g.sims[i].tls);
		g.sims[i].tls = NULL;
	}
	free(pf);
	free(who);
	return NULL;
}

/* What the main thread has already printed. */
struct report {
	int joined_said;
	uint64_t epoch_said;
	unsigned moves_said;
	int served_said; /* the address of the last served-by line, -1 before any */
	uint64_t last_progress_ns;
};

/* Prints a line for every milestone reached since the last call. */
static void report(struct report *r)
{
	unsigned moves = atomic_load(&g.moves); /* before the scan: a later move counts again */
	uint64_t top = 0, t_join = 0, t_epoch = 0, t_served = 0;
	int joined = 0, at_top = 0, at = -2, same = 1, served = 0;

	for (int i = 0; i < g.n; i++) {
		struct sim *s = &g.sims[i];
		uint64_t e = atomic_load(&s->pub_epoch), et = atomic_load(&s->epoch_ns);
		int sa = atomic_load(&s->served_at);
		uint64_t st = atomic_load(&s->served_ns);

		if (atomic_load(&s->joined)) {
			joined++;
			if (atomic_load(&s->joined_ns) > t_join)
				t_join = atomic_load(&s->joined_ns);
		}
		if (e > top) {
			top = e;
			at_top = 0;
			t_epoch = 0;
		}
		if (e == top) {
			at_top++;
			t_epoch = et > t_epoch ? et : t_epoch;
		}
		served += sa >= 0;
		if (at == -2)
			at = sa;
		same &= sa == at && sa >= 0;
		t_served = st > t_served ? st : t_served;
	}
	if (joined == g.n && !r->joined_said) {
		printf("joined %d t_ns=%" PRIu64 "\n", g.n, t_join);
		r->joined_said = 1;
	}
	if (top && at_top == g.n && top > r->epoch_said) {
		printf("epoch %" PRIu64 " all %d t_ns=%" PRIu64 "\n", top, g.n, t_epoch);
		r->epoch_said = top;
	}
	if (same && at != r->served_said) {
		printf("served-by %s %d t_ns=%" PRIu64 "\n", g.addrs[at], g.n, t_served);
		r->served_said = at;
	}
	if (same && moves != r->moves_said) {
		printf("connected-to %s %d t_ns=%" PRIu64 "\n", g.addrs[at], g.n, t_served);
		r->moves_said = moves;
	}
	if (rdm_now_ns() - r->last_progress_ns >= 1000 * MS) {
		fprintf(stderr,
			"orchsim: %d/%d joined, epoch %" PRIu64 ": %d applied, %d served; "
			"dial failures %u, channels lost %u, redirects %u, assigns refused %u\n",
			joined, g.n, top, top ? at_top : 0, served, atomic_load(&g.dial_fails),
			atomic_load(&g.lost), atomic_load(&g.redirects), atomic_load(&g.refused));
		r->last_progress_ns = rdm_now_ns();
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: orchsim --orch IP:PORT[,IP:PORT...] --certs DIR --count N [--prefix "
		   "sim-]\n"
		   "               [--first 0] [--threads 4] [--quiet]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"orch", required_argument, NULL, 'o'},
	    {"certs", required_argument, NULL, 'c'},
	    {"prefix", required_argument, NULL, 'p'},
	    {"count", required_argument, NULL, 'n'},
	    {"first", required_argument, NULL, 'f'},
	    {"threads", required_argument, NULL, 't'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *orch = NULL, *prefix = "sim-";
	struct slice w[MAX_THREADS];
	struct report rep = {.served_said = -1};
	int c, first = 0, threads = 4, started = 0;
	struct rlimit rl;
	sigset_t set;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			orch = optarg;
			break;
		case 'c':
			g.certs = optarg;
			break;
		case 'p':
			prefix = optarg;
			break;
		case 'n':
			g.n = atoi(optarg);
			break;
		case 'f':
			first = atoi(optarg);
			break;
		case 't':
			threads = atoi(optarg);
			break;
		case 'q':
			g.quiet = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!orch || !g.certs || g.n < 1 || g.n > 100000 || first < 0 || threads < 1 ||
	    threads > MAX_THREADS || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (threads > g.n)
		threads = g.n;
	for (const char *p = orch; *p;) {
		size_t len = strcspn(p, ",");
		char addr[64];

		if (!len || len >= sizeof(addr) || atomic_load(&g.n_addrs) == MAX_ADDRS) {
			fprintf(stderr, "orchsim: --orch: bad address list '%s'\n", orch);
			return 2;
		}
		memcpy(addr, p, len);
		addr[len] = 0;
		addr_index(addr);
		p += len + (p[len] == ',');
	}
	g.sims = calloc((size_t)g.n, sizeof(*g.sims));
	if (!g.sims)
		return 1;
	for (int i = 0; i < g.n; i++) {
		struct sim *s = &g.sims[i];

		if ((size_t)snprintf(s->name, sizeof(s->name), "%s%d", prefix, first + i) >=
		    sizeof(s->name)) {
			fprintf(stderr, "orchsim: --prefix '%s': node names too long\n", prefix);
			return 2;
		}
		s->at = 0; /* every node starts at the first address */
		s->prev_at = -1;
		s->backoff_ms = BACKOFF_MIN_MS;
		s->hb_ms = RDM_ORCH_HEARTBEAT_MS;
		s->dead_ms = RDM_ORCH_DEAD_MS;
		atomic_init(&s->served_at, -1);
	}
	/* A channel per node, and the orchestrator's side is another process: lift our cap. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)g.n + 64)
		fprintf(stderr, "orchsim: only %llu file descriptors for %d channels\n",
			(unsigned long long)rl.rlim_cur, g.n);
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Blocked before the threads start, so they inherit it and sigtimedwait gets them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (int t = 0; t < threads; t++) {
		w[t].lo = (int)((long)g.n * t / threads);
		w[t].hi = (int)((long)g.n * (t + 1) / threads);
		if (pthread_create(&w[t].thr, NULL, worker, &w[t]))
			break;
		started++;
	}
	if (started < threads) {
		fprintf(stderr, "orchsim: started %d of %d threads\n", started, threads);
		atomic_store(&g.stop, 1);
	}
	fprintf(stderr, "orchsim: %d nodes %s%d..%s%d on %d threads, orchestrators %s\n", g.n,
		prefix, first, prefix, first + g.n - 1, started, orch);
	while (!atomic_load(&g.stop) && !atomic_load(&g.load_failed)) {
		struct timespec tick = {0, TICK_MS * 1000000L};
		int sig = sigtimedwait(&set, NULL, &tick);

		if (sig == SIGINT || sig == SIGTERM)
			atomic_store(&g.stop, 1);
		report(&rep);
	}
	atomic_store(&g.stop, 1);
	for (int t = 0; t < started; t++)
		pthread_join(w[t].thr, NULL);
	free(g.sims);
	return atomic_load(&g.load_failed) || started < threads ? 1 : 0;
}
