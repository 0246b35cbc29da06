/* rdmesh ctl: the operator's commands. certs makes the rack's CA and certificates
 * (lib/certs.h); the others are requests to the orchestrator over its control
 * channel (TLS with the certificate "ctl", lib/msg.h), each answered by one
 * reply that is printed as it comes. */
#include "orchestrator/ctl.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/certs.h"
#include "lib/jointoken.h"
#include "lib/clock.h"
#include "lib/file.h"
#include "lib/msg.h"
#include "orchestrator/orch.h"
#include "lib/tls.h"

#define CTL_CERTS_DAYS 365
#define FOLLOW_MS      20000 /* how long ctl looks for a leader among several */

static void ctl_usage(FILE *to)
{
	fprintf(
	    to,
	    "usage: rdmesh ctl SUBCOMMAND [ARGS]\n"
	    "subcommands:\n"
	    "  token [--certs DIR] --stage STAGE [--ttl SECONDS] [--uses 1|0]\n"
	    "                      a join token for pods of STAGE (made from DIR/ca.key)\n"
	    "  certs --out DIR [--days N] NAME...\n"
	    "                      make the rack's CA (DIR/ca.pem, DIR/ca.key; an existing\n"
	    "                      one is reused) and a certificate and key for each NAME\n"
	    "                      (DIR/NAME.pem, DIR/NAME.key): orch, ctl and every node\n"
	    "  [--orch IP:PORT[,IP:PORT...]] [--certs DIR] REQUEST   to the orchestrator, or\n"
	    "                      to whichever of several leads (default: $RDMESH_ORCH,\n"
	    "                      else 127.0.0.1:%d; certs: $RDMESH_CERTS, else certs/, with\n"
	    "                      ca.pem, ctl.pem, ctl.key). REQUEST is one of:\n"
	    "    status            nodes, replicas, pps, drops, hop latency\n"
	    "    scale STAGE N     run N replicas of STAGE (flows keep their replica)\n"
	    "    drain NODE        move NODE's replicas elsewhere; it gets no new ones\n"
	    "    apply [--dry-run|--yes] CHAIN.yaml\n"
	    "                      show what the chain file changes, then apply it (asks first\n"
	    "                      on a terminal; --yes applies without asking)\n"
	    "    logs [N]          the orchestrator's last N log lines (default 50)\n"
	    "    renew [DAYS]      every connected node makes a new key and gets a new\n"
	    "                      certificate from the orchestrator's CA (default %d days);\n"
	    "                      once all are installed, a new epoch: connections made\n"
	    "                      from then on prove themselves with them\n",
	    RDM_ORCH_PORT, CTL_CERTS_DAYS);
}

/* ctl token: a join token for pods of a stage (lib/jointoken.h), made from the CA in
 * certs; printed alone on stdout, so `$(rdmesh ctl token ...)` takes it. */
static int cmd_token(const char *certs, int argc, char **argv)
{
	static const char usage[] =
	    "usage: rdmesh ctl token [--certs DIR] --stage STAGE [--ttl SECONDS] [--uses 1|0]\n"
	    "  a token that lets pods join as replicas of STAGE (DIR: the CA, ca.key;\n"
	    "  default certs/); --ttl: it expires then (default 3600, at most 30 days);\n"
	    "  --uses 1 (default): one pod; 0: any number of pods until it expires\n";
	const char *stage = NULL;
	long ttl = 3600, uses = 1;
	char tok[RDM_JOIN_TOKEN_MAX + 1], err[512], *end = NULL;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		}
		if (!v) {
			fprintf(stderr, "ctl token: %s needs a value\n%s", argv[i], usage);
			return 2;
		}
		if (!strcmp(argv[i], "--certs"))
			certs = v;
		else if (!strcmp(argv[i], "--stage"))
			stage = v;
		else if (!strcmp(argv[i], "--ttl") && (ttl = strtol(v, &end, 10), !*end))
			;
		else if (!strcmp(argv[i], "--uses") && (uses = strtol(v, &end, 10), !*end))
			;
		else {
			fprintf(stderr, "ctl token: bad argument '%s %s'\n%s", argv[i], v, usage);
			return 2;
		}
		i++;
	}
	if (!stage) {
		fprintf(stderr, "ctl token: --stage is required\n%s", usage);
		return 2;
	}
	if (rdm_join_token_make(certs, stage, (int)uses, ttl, tok, sizeof(tok), err, sizeof(err)) <
	    0) {
		fprintf(stderr, "ctl token: %s\n", err);
		return 1;
	}
	printf("%s\n", tok);
	return 0;
}

static void certs_usage(FILE *to)
{
	fprintf(to,
		"usage: rdmesh ctl certs --out DIR [--days N] NAME...\n"
		"  --out DIR    where the files go (made, mode 0700, if missing)\n"
		"  --days N     lifetime of each new certificate (default %d; a negative N makes\n"
		"               one that expired N days ago, for tests)\n"
		"  NAME         a node or orchestrator name: the certificate's CN and DNS name\n"
		"An existing CA in DIR signs the new certificates; a NAME whose files exist is\n"
		"kept (delete DIR/NAME.pem and DIR/NAME.key to reissue). Keys are mode 0600.\n",
		CTL_CERTS_DAYS);
}

/* 1 when path exists, else 0 (for the report only: rdm_certs_make decides). */
static int present(const char *dir, const char *name, const char *ext)
{
	char path[PATH_MAX];
	struct stat st;

	return rdm_certs_path(path, sizeof(path), dir, name, ext, NULL, 0) == 0 &&
	       stat(path, &st) == 0;
}

static int cmd_certs(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"out", required_argument, NULL, 'o'},
	    {"days", required_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *out = NULL;
	long days = CTL_CERTS_DAYS;
	char err[512], *end;
	int c, n, rc, ca_existed, *kept;

	optind = 0; /* glibc: start over, whatever parsed argv before */
	while ((c = getopt_long(argc, argv, "o:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'd':
			errno = 0;
			days = strtol(optarg, &end, 10);
			if (errno || *end || !*optarg || days == 0 || days > RDM_CERTS_MAX_DAYS ||
			    days < -RDM_CERTS_MAX_DAYS) {
				fprintf(stderr,
					"ctl certs: bad --days '%s': a nonzero whole number of "
					"days, at most %d either way\n",
					optarg, RDM_CERTS_MAX_DAYS);
				return 2;
			}
			break;
		case 'h':
			certs_usage(stdout);
			return 0;
		default:
			certs_usage(stderr);
			return 2;
		}
	}
	n = argc - optind;
	if (!out || !*out || n < 1) {
		fprintf(stderr, "ctl certs: %s\n",
			!out || !*out ? "--out DIR is required" : "name at least one holder");
		certs_usage(stderr);
		return 2;
	}
	kept = calloc((size_t)n, sizeof(*kept));
	if (!kept) {
		fprintf(stderr, "ctl certs: out of memory\n");
		return 1;
	}
	ca_existed = present(out, "ca", ".pem");
	for (int i = 0; i < n; i++)
		kept[i] = present(out, argv[optind + i], ".pem");
	rc = rdm_certs_make(out, (const char *const *)(argv + optind), n, (int)days, err,
			    sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "ctl certs: %s\n", err);
		free(kept);
		return 1;
	}
	printf("%s/ca.pem: %s\n", out, ca_existed ? "existing CA, reused" : "new CA");
	for (int i = 0; i < n; i++) {
		if (kept[i])
			printf("%s/%s.pem: kept (already there)\n", out, argv[optind + i]);
		else if (days > 0)
			printf("%s/%s.pem: issued, valid %ld days\n", out, argv[optind + i], days);
		else
			printf("%s/%s.pem: issued, expired %ld days ago\n", out, argv[optind + i],
			       -days);
	}
	free(kept);
	return 0;
}

/* Sends one request to addr and reads its reply into *m: 0; -ENOTCONN when no
 * connection was made; another -errno when the request went and no reply came. */
static int ask(struct rdm_tls_ctx *ctx, const char *addr, const char *const *kv, struct rdm_msg *m,
	       char *err, size_t errlen)
{
	struct rdm_tls_conn *c = rdm_tls_connect(ctx, addr, RDM_ORCH_NAME, 5000, err, errlen);
	int rc;

	if (!c)
		return -ENOTCONN;
	rc = rdm_msg_send(c, "request", 0, kv, NULL, 0, 5000);
	if (!rc)
		rc = rdm_msg_recv(c, m, 30000, err, errlen);
	else
		snprintf(err, errlen, "%s", strerror(-rc));
	if (rc < 0 && !err[0])
		snprintf(err, errlen, "%s", strerror(-rc));
	rdm_tls_close(c);
	return rc < 0 ? (rc == -ENOTCONN ? -EIO : rc) : 0;
}

/* One request (kv: NULL-terminated pairs) and its reply: the reply's text goes to
 * stdout (ok) or stderr (error). orch is one address or several (A,B,C: orchestrators
 * sharing a store): the request goes to the first that answers, and on to the leader
 * when that one follows; while none leads (a failover), the list is tried again for up
 * to FOLLOW_MS. A request that went and got no answer (the leader died) is sent again
 * elsewhere: scale, drain and apply set a state, so a repeat changes nothing; renew is
 * not repeated. Returns 0, 1 (the orchestrator said error, or no answer). */
static int request(const char *orch, const char *certs, const char *const *kv, int quiet_ok)
{
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], err[512] = "", list[1024], next[64] = "";
	char *addr[16], *save = NULL;
	const int repeatable = strcmp(kv[1], "renew") != 0;
	uint64_t deadline = rdm_now_ns() + FOLLOW_MS * 1000000ull;
	struct rdm_msg follower = {0}; /* a follower's answer to a read, while we ask the leader */
	struct rdm_tls_ctx *ctx;
	int n = 0, rc = 1;

	snprintf(list, sizeof(list), "%s", orch);
	for (char *s = strtok_r(list, ",", &save); s && n < 16; s = strtok_r(NULL, ",", &save))
		addr[n++] = s;
	if (!n) {
		fprintf(stderr, "rdmesh ctl: no orchestrator address\n");
		return 1;
	}
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	snprintf(cert, sizeof(cert), "%s/%s.pem", certs, RDM_CTL_NAME);
	snprintf(key, sizeof(key), "%s/%s.key", certs, RDM_CTL_NAME);
	ctx = rdm_tls_ctx_new(ca, cert, key, 0, err, sizeof(err));
	if (!ctx) {
		fprintf(stderr, "rdmesh ctl: %s\n", err);
		return 1;
	}
	for (int i = 0;; i++) {
		char at[64];
		struct rdm_msg m = {0};
		const char *st, *leader;
		int got;

		snprintf(at, sizeof(at), "%s", next[0] ? next : addr[i % n]);
		next[0] = 0;
		err[0] = 0;
		got = ask(ctx, at, kv, &m, err, sizeof(err));
		if (got == 0) {
			st = rdm_msg_get(&m, "status");
			leader = rdm_msg_get(&m, "leader");
			rc = !st || strcmp(st, "ok");
			if (!rc && leader && strcmp(leader, "none") && strcmp(leader, at) &&
			    !follower.buf) {
				/* A follower's status: the leader's is better (it hears the
				 * nodes); this one is shown if the leader does not answer. */
				follower = m;
				snprintf(next, sizeof(next), "%.63s", leader);
				continue;
			}
			if (!leader || !rc) {
				if (rc || !quiet_ok)
					rdm_fput_visible(rc ? stderr : stdout, m.body, m.body_len);
				rdm_msg_free(&m);
				break;
			}
			/* A follower: to the leader it names, or around again while none does
			 * (not when asked alone: then its word is the answer). */
			snprintf(err, sizeof(err), "%.*s", (int)strcspn(m.body, "\n"), m.body);
			if (strcmp(leader, "none") && strcmp(leader, at))
				snprintf(next, sizeof(next), "%.63s", leader);
			else if (n == 1) {
				fprintf(stderr, "rdmesh ctl: %s\n", err);
				rdm_msg_free(&m);
				break;
			}
			rdm_msg_free(&m);
			rc = 1;
		} else if (follower.buf) {
			/* The leader a follower named did not answer: the follower's view. */
			rc = 0;
			if (!quiet_ok)
				rdm_fput_visible(stdout, follower.body, follower.body_len);
			break;
		} else if (n == 1 || (got != -ENOTCONN && !repeatable)) {
			fprintf(stderr, "rdmesh ctl: orchestrator %s: %s%s\n", at,
				got == -ENOTCONN ? "" : "no reply: ", err);
			break;
		} else if (got != -ENOTCONN) {
			fprintf(stderr,
				"rdmesh ctl: orchestrator %s: no reply (%s): asking the next\n", at,
				err);
		}
		if (rdm_now_ns() >= deadline) {
			fprintf(stderr,
				"rdmesh ctl: no orchestrator of %s led within %d s (last: %s)\n",
				orch, FOLLOW_MS / 1000, err);
			break;
		}
		if (!next[0] && (i + 1) % n == 0)
			usleep(250000); /* around the list once: give the election a moment */
	}
	rdm_msg_free(&follower);
	rdm_tls_ctx_free(ctx);
	return rc;
}

static int cmd_apply(const char *orch, const char *certs, int argc, char **argv)
{
	const char *file = NULL;
	int dry = 0, yes = 0, rc;
	char line[16];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dry-run"))
			dry = 1;
		else if (!strcmp(argv[i], "--yes") || !strcmp(argv[i], "-y"))
			yes = 1;
		else if (!file && argv[i][0] != '-')
			file = argv[i];
		else {
			fprintf(stderr, "rdmesh ctl apply: unexpected '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!file) {
		fprintf(stderr, "usage: rdmesh ctl apply [--dry-run|--yes] CHAIN.yaml\n");
		return 2;
	}
	{
		/* The orchestrator reads the file (and the files it names) at this path, as
		 * the nodes do: rack-wide paths, as config management puts them. */
		char real[PATH_MAX];
		const char *kv[] = {"cmd", "apply", "file", real, "dry_run", "1", NULL};

		if (!realpath(file, real)) {
			fprintf(stderr, "rdmesh ctl apply: %s: %s\n", file, strerror(errno));
			return 1;
		}
		rc = request(orch, certs, kv, 0);
		if (rc || dry)
			return rc;
		if (!yes) {
			if (!isatty(STDIN_FILENO)) {
				fprintf(stderr,
					"rdmesh ctl apply: not applied: pass --yes to apply "
					"without a terminal\n");
				return 1;
			}
			printf("apply? [y/N] ");
			fflush(stdout);
			if (!fgets(line, sizeof(line), stdin) ||
			    (line[0] != 'y' && line[0] != 'Y')) {
				printf("not applied\n");
				return 1;
			}
		}
		kv[4] = NULL;
		return request(orch, certs, kv, 0);
	}
}

int rdm_cmd_ctl(int argc, char **argv)
{
	char defaddr[32];
	const char *orch = getenv("RDMESH_ORCH"), *certs = getenv("RDMESH_CERTS");

	snprintf(defaddr, sizeof(defaddr), "127.0.0.1:%d", RDM_ORCH_PORT);
	if (!orch || !*orch)
		orch = defaddr;
	if (!certs || !*certs)
		certs = "certs";
	while (argc >= 3 && (!strcmp(argv[1], "--orch") || !strcmp(argv[1], "--certs"))) {
		if (!strcmp(argv[1], "--orch"))
			orch = argv[2];
		else
			certs = argv[2];
		argv += 2;
		argc -= 2;
	}
	if (argc < 2) {
		ctl_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "status") && argc == 2) {
		const char *kv[] = {"cmd", "status", NULL};

		return request(orch, certs, kv, 0);
	}
	if (!strcmp(argv[1], "scale") && argc == 4) {
		const char *kv[] = {"cmd", "scale", "stage", argv[2], "replicas", argv[3], NULL};

		return request(orch, certs, kv, 0);
	}
	if (!strcmp(argv[1], "drain") && argc == 3) {
		const char *kv[] = {"cmd", "drain", "node", argv[2], NULL};

		return request(orch, certs, kv, 0);
	}
	if (!strcmp(argv[1], "renew") && argc <= 3) {
		char days[16];
		const char *kv[] = {"cmd", "renew", "days", days, NULL};

		snprintf(days, sizeof(days), "%s", argc == 3 ? argv[2] : "");
		if (argc < 3)
			snprintf(days, sizeof(days), "%d", CTL_CERTS_DAYS);
		return request(orch, certs, kv, 0);
	}
	if (!strcmp(argv[1], "logs") && argc <= 3) {
		const char *kv[] = {"cmd", "logs", "lines", argc == 3 ? argv[2] : "50", NULL};

		return request(orch, certs, kv, 0);
	}
	if (!strcmp(argv[1], "apply"))
		return cmd_apply(orch, certs, argc - 1, argv + 1);
	if (!strcmp(argv[1], "certs"))
		return cmd_certs(argc - 1, argv + 1);
	if (!strcmp(argv[1], "token"))
		return cmd_token(certs, argc - 1, argv + 1);
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		ctl_usage(stdout);
		return 0;
	}
	fprintf(stderr, "rdmesh ctl: unknown request '%s', or wrong arguments\n", argv[1]);
	ctl_usage(stderr);
	return 2;
}
