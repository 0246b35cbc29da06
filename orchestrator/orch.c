/* The orchestrator daemon's process (orchestrator/orch.h): start-up, then one loop that
 * serves every connection an accept thread hands it. */
#include "orchestrator/orch.h"
#include "orchestrator/orch_int.h"
#include "lib/file.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"

#define TICK_MS	   100
#define RUN_EVENTS 256 /* events taken per epoll_wait */
#define LEASE_S	   3

/* ---- the log and the connections -------------------------------------------------- */

void rdm_orch__log(struct orch *o, const char *fmt, ...)
{
	char msg[1024], line[1100], ts[32];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rdm_log_clock(ts, sizeof(ts));
	snprintf(line, sizeof(line), "%s %s", ts, msg);
	pthread_mutex_lock(&o->log_mu);
	fputs("rdmesh orch: ", stderr);
	rdm_fput_visible(stderr, line, strlen(line)); /* names may hold anything */
	fputc('\n', stderr);
	free(o->log[o->log_next]);
	o->log[o->log_next] = strdup(line);
	o->log_next = (o->log_next + 1) % LOG_RING;
	if (o->log_n < LOG_RING)
		o->log_n++;
	pthread_mutex_unlock(&o->log_mu);
}

void rdm_orch__drop_conn(struct orch *o, struct conn *c, const char *why)
{
	struct conn **pp = &o->conns;

	if (c->gone)
		return;
	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp)
		*pp = c->next;
	if (c->node >= 0) {
		if (o->nodes[c->node].conn == c)
			o->nodes[c->node].conn = NULL;
		if (why)
			rdm_orch__log(o, "%s: control channel closed: %s",
				      o->rack.nodes[c->node].name, why);
		rdm_orch__renew_gone(o, c->node);
	} else {
		rdm_orch__apply_gone(o, c);
	}
	if (o->epfd >= 0)
		epoll_ctl(o->epfd, EPOLL_CTL_DEL, rdm_tls_fd(c->c), NULL);
	rdm_tls_close(c->c);
	c->c = NULL;
	/* Freed at the end of the loop's turn: the loop may still hold it. */
	c->gone = 1;
	c->next = o->gone;
	o->gone = c;
}

/* ---- the loops -------------------------------------------------------------------- */

/* Reads every whole message c has; 0, or -1 when c was dropped. */
static int serve(struct orch *o, struct conn *c)
{
	for (;;) {
		struct rdm_msg m;
		char err[512] = "";
		int rc = rdm_msg_recv(c->c, &m, 0, err, sizeof(err));

		if (rc == -ETIMEDOUT)
			return 0;
		if (rc == -EBADMSG) {
			/* A message that does not parse: say so. Another protocol version will
			 * not get better: hang up; anything else may be a one-off. */
			rdm_orch__log(o, "%s: bad message: %s",
				      c->node >= 0	    ? o->rack.nodes[c->node].name
				      : c->node == CONN_CTL ? RDM_CTL_NAME
							    : rdm_tls_peer_addr(c->c),
				      err);
			if (strstr(err, "unsupported protocol")) {
				rdm_orch__drop_conn(o, c, err);
				return -1;
			}
			continue;
		}
		if (rc < 0) {
			if (c->node >= 0)
				rdm_orch__drop_conn(o, c, err[0] ? err : strerror(-rc));
			else
				rdm_orch__drop_conn(o, c, "");
			return -1;
		}
		if (c->node >= 0)
			rdm_orch__take_node_msg(o, c, &m);
		else if (c->node == CONN_CTL)
			rdm_orch__take_request(o, c, &m);
		else
			rdm_orch__take_pod_msg(o, c, &m);
		rdm_msg_free(&m);
		if (c->gone)
			return -1; /* dropped while handling */
	}
}

/* Takes the connections the accept thread proved into the loop. */
static void take_accepted(struct orch *o)
{
	struct conn *c;

	pthread_mutex_lock(&o->mu);
	c = o->accepted;
	o->accepted = NULL;
	pthread_mutex_unlock(&o->mu);
	while (c) {
		struct conn *nx = c->next;

		if (c->node >= 0) {
			struct nstate *ns = &o->nodes[c->node];

			if (ns->conn)
				rdm_orch__drop_conn(o, ns->conn, "replaced by a new connection");
			ns->conn = c;
			if (rdm_orch__leads(o)) /* a follower says where it sent it, once */
				rdm_orch__log(o, "%s: connected from %s",
					      o->rack.nodes[c->node].name, rdm_tls_peer_addr(c->c));
		}
		if ((c->node == CONN_JOIN || c->node == CONN_POD) &&
		    rdm_orch__pod_conn_new(o, c) < 0) {
			rdm_tls_close(c->c);
			free(c);
			c = nx;
			continue;
		}
		c->next = o->conns;
		o->conns = c;
		{
			struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

			if (epoll_ctl(o->epfd, EPOLL_CTL_ADD, rdm_tls_fd(c->c), &ev) < 0) {
				rdm_orch__log(o, "epoll: %s: connection closed", strerror(errno));
				rdm_orch__drop_conn(o, c, "epoll_ctl failed");
			} else if (rdm_tls_pending(c->c) > 0) {
				serve(o, c); /* its first message came with the handshake */
			}
		}
		c = nx;
	}
}

static void run(struct orch *o)
{
	struct epoll_event evs[RUN_EVENTS];
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	while (!atomic_load(&o->stop)) {
		struct timespec zero = {0, 0};
		int n, sig;

		/* Every channel's fd is in the epoll set (no limit on how many); after serve()
		 * none holds a whole message unread, so only an event brings more. */
		n = epoll_wait(o->epfd, evs, RUN_EVENTS, TICK_MS);
		if (n < 0 && errno != EINTR)
			break;
		rdm_orch__store_turn(o); /* before any message: do we still lead? */
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (!c) { /* the wake pipe: the accept or a worker thread */
				char buf[64];

				while (read(o->wake[0], buf, sizeof(buf)) > 0) {
				}
				continue;
			}
			if (c->gone) /* dropped while serving another */
				continue;
			if (serve(o, c) < 0)
				continue;
			if (c->node < 0 && (evs[i].events & (EPOLLHUP | EPOLLERR)))
				rdm_orch__drop_conn(o, c, "");
		}
		take_accepted(o);
		rdm_orch__apply_poll(o);
		if (rdm_orch__leads(o)) {
			rdm_orch__check_health(o);
			rdm_orch__pods_tick(o);
		}
		rdm_orch__pods_reap(o);
		while (o->gone) {
			struct conn *nx = o->gone->next;

			free(o->gone);
			o->gone = nx;
		}
		sig = sigtimedwait(&set, NULL, &zero);
		if (sig == SIGINT || sig == SIGTERM) {
			rdm_orch__log(o,
				      "%s: stopping (nodes keep forwarding on epoch %" PRIu64 ")",
				      strsignal(sig), o->st.epoch);
			atomic_store(&o->stop, 1);
		}
	}
}

/* ---- start-up --------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: rdmesh orch --rack RACK.yaml --chain CHAIN.yaml [--certs DIR]\n"
	    "                   [--state FILE | --store etcd://HOST:PORT[,HOST:PORT...][/PREFIX]]\n"
	    "                   [--listen IP:PORT] [--advertise IP:PORT] [--dead-ms MS]\n"
	    "                   [--heartbeat-ms MS] [--pod-cert-s S] [--check]\n"
	    "  --rack FILE       the nodes replicas may go on (configs/rack.yaml explains it)\n"
	    "  --chain FILE      the chain to deploy the first time (later: `rdmesh ctl apply`)\n"
	    "  --certs DIR       ca.pem, orch.pem and orch.key (`rdmesh ctl certs`); default "
	    "certs\n"
	    "  --state FILE      the desired state, persisted; when it exists it wins over\n"
	    "                    --chain (default rdmesh-orch.state)\n"
	    "  --store etcd://HOST:PORT[,...][/PREFIX]\n"
	    "                    keep the state in etcd (under PREFIX, default /rdmesh/) and\n"
	    "                    elect one leader among every orchestrator given the same store:\n"
	    "                    the others follow (README: high availability)\n"
	    "  --etcd-ca FILE --etcd-cert FILE --etcd-key FILE\n"
	    "                    talk to etcd over HTTPS with this client certificate\n"
	    "  --lease-s S       the leader's lease (default %d): a dead leader is replaced\n"
	    "                    within about this long\n"
	    "  --listen IP:PORT  the control channel (default: rack.yaml's orchestrator.listen,\n"
	    "                    else 0.0.0.0:%d)\n"
	    "  --advertise IP:PORT  where nodes and ctl reach this orchestrator, told to them by\n"
	    "                    the others when it leads (default: --listen)\n"
	    "  --pod-cert-s S    lifetime of a pod's certificate (default 3600); pods renew\n"
	    "                    theirs with a third of it left (README: pods)\n"
	    "  --dead-ms MS      a node with replicas silent this long is dead (default %d)\n"
	    "  --heartbeat-ms MS how often nodes report (default %d)\n"
	    "  --check           validate the files, print the placement, and exit\n",
	    LEASE_S, RDM_ORCH_PORT, RDM_ORCH_DEAD_MS, RDM_ORCH_HEARTBEAT_MS);
}

int rdm_cmd_orch(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"rack", required_argument, NULL, 'r'},
	    {"chain", required_argument, NULL, 'c'},
	    {"certs", required_argument, NULL, 'C'},
	    {"state", required_argument, NULL, 's'},
	    {"listen", required_argument, NULL, 'l'},
	    {"dead-ms", required_argument, NULL, 'd'},
	    {"heartbeat-ms", required_argument, NULL, 'b'},
	    {"store", required_argument, NULL, 'S'},
	    {"etcd-ca", required_argument, NULL, 'A'},
	    {"etcd-cert", required_argument, NULL, 'E'},
	    {"etcd-key", required_argument, NULL, 'K'},
	    {"lease-s", required_argument, NULL, 'L'},
	    {"advertise", required_argument, NULL, 'a'},
	    {"pod-cert-s", required_argument, NULL, 'P'},
	    {"check", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *rack = NULL, *chain = NULL, *certs = "certs", *listen_at = NULL, *store = NULL;
	const char *advertise = NULL;
	struct rdm_etcd_tls etls = {0};
	int lease_s = LEASE_S;
	struct orch o = {.dead_ms = RDM_ORCH_DEAD_MS,
			 .heartbeat_ms = RDM_ORCH_HEARTBEAT_MS,
			 .pod_cert_s = RDM_POD_CERT_S,
			 .lfd = -1,
			 .epfd = -1,
			 .wake = {-1, -1}};
	char err[1024], ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], real[PATH_MAX];
	int c, check = 0, rc = 1, have_state, moved = 0;
	sigset_t set;

	o.state_path = "rdmesh-orch.state";
	while ((c = getopt_long(argc, argv, "r:c:C:s:l:d:b:S:A:E:K:L:a:P:kh", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			rack = optarg;
			break;
		case 'c':
			chain = optarg;
			break;
		case 'C':
			certs = optarg;
			break;
		case 's':
			o.state_path = optarg;
			break;
		case 'l':
			listen_at = optarg;
			break;
		case 'd':
			o.dead_ms = atoi(optarg);
			break;
		case 'b':
			o.heartbeat_ms = atoi(optarg);
			break;
		case 'S':
			store = optarg;
			break;
		case 'A':
			etls.ca = optarg;
			break;
		case 'E':
			etls.cert = optarg;
			break;
		case 'K':
			etls.key = optarg;
			break;
		case 'L':
			lease_s = atoi(optarg);
			break;
		case 'a':
			advertise = optarg;
			break;
		case 'P':
			o.pod_cert_s = atoi(optarg);
			break;
		case 'k':
			check = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	c = !!etls.ca + !!etls.cert + !!etls.key;
	if ((c != 0 && c != 3) || lease_s < 2 || lease_s > 60) {
		fprintf(stderr, "rdmesh orch: %s\n",
			lease_s < 2 || lease_s > 60
			    ? "--lease-s: 2 to 60 seconds (etcd's shortest lease is about 2 s)"
			    : "--etcd-ca, --etcd-cert and --etcd-key go together");
		return 2;
	}
	if (o.pod_cert_s < 60 || o.pod_cert_s > 30 * 86400) {
		fprintf(stderr, "rdmesh orch: --pod-cert-s: 60 s to 30 days\n");
		return 2;
	}
	if (!rack || optind != argc || o.dead_ms < 100 || o.heartbeat_ms < 10 ||
	    o.heartbeat_ms * 2 > o.dead_ms) {
		if (rack && optind == argc)
			fprintf(stderr, "rdmesh orch: need --dead-ms >= 100 and at least twice "
					"--heartbeat-ms\n");
		usage(stderr);
		return 2;
	}
	pthread_mutex_init(&o.mu, NULL);
	pthread_mutex_init(&o.log_mu, NULL);
	if (rdm_orch__store_open(&o, check ? NULL : store, etls.ca ? &etls : NULL, lease_s, err,
				 sizeof(err)) < 0 ||
	    rdm_orch__store_rack(&o, rack, err, sizeof(err)) < 0) {
		fprintf(stderr, "rdmesh orch: %s\n", err);
		goto out;
	}
	o.nodes = calloc((size_t)o.rack.n_hosts + RDM_RACK_PODS_MAX, sizeof(*o.nodes));
	if (!o.nodes)
		goto out;
	c = check ? -ENOENT : rdm_orch__store_state(&o, &o.st, err, sizeof(err));
	if (c < 0 && c != -ENOENT) {
		fprintf(stderr, "rdmesh orch: %s\n", err);
		goto out;
	}
	have_state = c == 0;
	if (!have_state) {
		if (!chain) {
			fprintf(stderr,
				"rdmesh orch: no state in %s: --chain is needed the first time\n",
				store ? o.store.url : o.state_path);
			goto out;
		}
		if (!realpath(chain, real)) {
			fprintf(stderr, "rdmesh orch: %s: %s\n", chain, strerror(errno));
			goto out;
		}
		o.st.chain = strdup(real);
	} else if (chain && realpath(chain, real) && strcmp(real, o.st.chain)) {
		fprintf(stderr,
			"rdmesh orch: state %s runs %s (epoch %" PRIu64 "): --chain %s is "
			"ignored; `rdmesh ctl apply` changes the chain\n",
			store ? o.store.url : o.state_path, o.st.chain, o.st.epoch, chain);
	}
	if (!o.st.chain || rdm_orch__store_spec(&o, o.st.chain, &o.spec, err, sizeof(err)) < 0 ||
	    !(o.plan = have_state ? rdm_orch__restore(&o, &moved, err, sizeof(err))
				  : rdm_plan_new(&o.rack, &o.spec, err, sizeof(err))) ||
	    !(o.rendered = rdm_plan_render(o.plan, err, sizeof(err)))) {
		fprintf(stderr, "rdmesh orch: %s\n", o.st.chain ? err : "out of memory");
		goto out;
	}
	if (check) {
		printf("%s", o.rendered);
		for (int i = 0; i < o.plan->n_replicas; i++)
			fprintf(stderr, "  %-12s on %-12s %s\n", o.plan->replicas[i].id,
				o.rack.nodes[o.plan->replicas[i].node].name,
				o.plan->replicas[i].listen);
		rc = 0;
		goto out;
	}
	if (!o.store.etcd && (!have_state || moved)) {
		/* The first epoch, or a new one for replicas that could not stay (with etcd:
		 * when this orchestrator takes the lead). */
		struct rdm_plan *np = rdm_plan_copy(o.plan);

		if (!np || rdm_orch__commit(&o, np, NULL, err, sizeof(err)) < 0) {
			fprintf(stderr, "rdmesh orch: %s\n", np ? err : "out of memory");
			goto out;
		}
	}
	if (listen_at)
		snprintf(o.listen, sizeof(o.listen), "%s", listen_at);
	else if (o.rack.has_orch_listen)
		snprintf(o.listen, sizeof(o.listen), "%s", o.rack.orch_listen.text);
	else
		snprintf(o.listen, sizeof(o.listen), "0.0.0.0:%d", RDM_ORCH_PORT);
	snprintf(o.advertise, sizeof(o.advertise), "%s", advertise ? advertise : o.listen);
	if (o.store.etcd && (!strncmp(o.advertise, "0.0.0.0:", 8) || o.advertise[0] == '[')) {
		fprintf(stderr,
			"rdmesh orch: with --store, --advertise IP:PORT (or --listen on one "
			"address) tells nodes where the leader is\n");
		goto out;
	}
	o.certs = certs;
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	snprintf(cert, sizeof(cert), "%s/%s.pem", certs, RDM_ORCH_NAME);
	snprintf(key, sizeof(key), "%s/%s.key", certs, RDM_ORCH_NAME);
	o.tls = rdm_tls_ctx_new(ca, cert, key, 1, err, sizeof(err));
	if (!o.tls) {
		fprintf(stderr, "rdmesh orch: %s\n", err);
		goto out;
	}
	rdm_tls_ctx_take_anonymous(o.tls); /* pods asking to join: orch_pods.c */
	o.lfd = rdm_tls_listen(o.listen, err, sizeof(err));
	if (o.lfd < 0) {
		fprintf(stderr, "rdmesh orch: %s\n", err);
		goto out;
	}
	if (pipe(o.wake) < 0)
		goto out;
	o.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (o.epfd < 0) {
		fprintf(stderr, "rdmesh orch: epoll: %s\n", strerror(errno));
		goto out;
	}
	{
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};

		epoll_ctl(o.epfd, EPOLL_CTL_ADD, o.wake[0], &ev);
	}
	for (int i = 0; i < 2; i++) {
		int fl = fcntl(o.wake[i], F_GETFL);

		fcntl(o.wake[i], F_SETFL, fl | O_NONBLOCK);
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	o.start_ns = rdm_now_ns();
	for (int k = 0; k < o.rack.n_nodes; k++)
		o.nodes[k].last_seen_ns = o.start_ns;
	rdm_orch__log(
	    &o, "listening on %s: chain '%s' (%s), %d replicas on %d nodes, epoch %" PRIu64 "%s",
	    o.listen, o.spec.name, o.st.chain, o.plan->n_replicas, o.rack.n_nodes, o.st.epoch,
	    have_state ? " (from the saved state: reconciling with what nodes report)" : "");
	for (int i = 0; i < o.plan->n_replicas; i++)
		rdm_orch__log(&o, "  %-12s on %-12s %s", o.plan->replicas[i].id,
			      o.rack.nodes[o.plan->replicas[i].node].name,
			      o.plan->replicas[i].listen);
	if (pthread_create(&o.acc, NULL, rdm_orch__accept_main, &o)) {
		fprintf(stderr, "rdmesh orch: cannot start the accept thread\n");
		goto out;
	}
	if (rdm_orch__store_start(&o) < 0) {
		fprintf(stderr, "rdmesh orch: cannot start the lease thread\n");
		atomic_store(&o.stop, 1);
	} else {
		if (o.store.etcd)
			rdm_orch__log(
			    &o, "store %s: %s; following until this one leads", o.store.url,
			    have_state ? "state found" : "no state yet (--chain seeds it)");
		run(&o);
	}
	pthread_join(o.acc, NULL);
	rc = 0;
out:
	while (o.conns) {
		struct conn *nx = o.conns->next;

		rdm_tls_close(o.conns->c);
		free(o.conns);
		o.conns = nx;
	}
	while (o.gone) {
		struct conn *nx = o.gone->next;

		free(o.gone);
		o.gone = nx;
	}
	while (o.accepted) {
		struct conn *nx = o.accepted->next;

		rdm_tls_close(o.accepted->c);
		free(o.accepted);
		o.accepted = nx;
	}
	if (o.lfd >= 0)
		close(o.lfd);
	if (o.epfd >= 0)
		close(o.epfd);
	for (int i = 0; i < 2; i++)
		if (o.wake[i] >= 0)
			close(o.wake[i]);
	rdm_tls_ctx_free(o.tls);
	rdm_plan_free(o.plan);
	free(o.rendered);
	rdm_chain_spec_free(&o.spec);
	atomic_store(&o.stop, 1);
	rdm_orch__apply_close(&o);
	rdm_orch__store_close(&o);
	rdm_state_free(&o.st);
	free(o.nodes);
	free(o.rs);
	rdm_rack_free(&o.rack);
	for (int i = 0; i < LOG_RING; i++)
		free(o.log[i]);
	pthread_mutex_destroy(&o.mu);
	pthread_mutex_destroy(&o.log_mu);
	return rc;
}
