/* A pod joining the mesh (`rdmesh node --join TOKEN_FILE --stage STAGE`): before the
 * agent runs, a pod with no valid certificate of its own makes a key and a request for
 * its name, presents the token to the orchestrator on a connection without a client
 * certificate, and installs what comes back (checked: for its key, its name, and the CA
 * it trusts). The exchange is in orchestrator/orch_pods.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lib/certs.h"
#include "lib/err.h"
#include "lib/file.h"
#include "lib/jointoken.h"
#include "lib/msg.h"
#include "lib/tls.h"
#include "node/agent.h"

#define JOIN_WAIT_MS	 5000 /* for the orchestrator's answer */
#define JOIN_RETRY_MS	 1000 /* between rounds of dialling while none answers */
#define JOIN_RENEW_SLACK 60   /* a certificate with less left than this is joined anew */

int rdm_agent_data_ip(const char *spec, int sock, char *out, size_t len, char *err, size_t errlen)
{
	unsigned char buf[sizeof(struct in6_addr)];
	struct ifaddrs *ifs = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	out[0] = '\0';
	if (spec && *spec) {
		if (inet_pton(AF_INET, spec, buf) == 1 || inet_pton(AF_INET6, spec, buf) == 1) {
			snprintf(out, len, "%s", spec);
			return 0;
		}
		if (getifaddrs(&ifs) < 0)
			return rdm_errf(err, errlen, -errno, "--data %s: %s", spec,
					strerror(errno));
		for (struct ifaddrs *i = ifs; i && !out[0]; i = i->ifa_next)
			if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
			    !strcmp(i->ifa_name, spec))
				inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr,
					  out, (socklen_t)len);
		freeifaddrs(ifs);
		return out[0] ? 0
			      : rdm_errf(err, errlen, -ENOENT,
					 "--data %s: neither an IP nor an interface with an IPv4 "
					 "address here",
					 spec);
	}
	/* The address our control channel leaves from: the pod's own. */
	if (sock < 0 || getsockname(sock, (struct sockaddr *)&ss, &sl) < 0)
		return rdm_errf(err, errlen, -ENOTCONN, "no data address yet");
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)len);
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)len);
	return 0;
}

/* Reads the token file (a Secret's key, mounted): at most one token, white space
 * around it ignored. */
static int read_token(const char *path, char *out, size_t cap, char *err, size_t errlen)
{
	FILE *f = rdm_fopen_regular(path);
	size_t n;

	if (!f)
		return rdm_errf(err, errlen, -errno, "--join %s: %s", path, strerror(errno));
	n = fread(out, 1, cap - 1, f);
	fclose(f);
	out[n] = '\0';
	if (n == cap - 1)
		return rdm_errf(err, errlen, -EINVAL, "--join %s: not a join token (too long)",
				path);
	return 0;
}

/* One try at orchestrator addr: 1 joined, 0 try another (unreachable, not the leader:
 * *hint then names it), -1 refused (why in err). */
static int try_join(const struct rdm_agent_opts *o, struct rdm_tls_ctx *ctx, const char *addr,
		    const char *token, const char *key, const char *csr, char *hint, size_t hlen,
		    char *err, size_t errlen)
{
	const char *kv[] = {"token", token, "name", o->name, "stage", o->stage, NULL};
	struct rdm_tls_conn *c = rdm_tls_connect(ctx, addr, RDM_ORCH_NAME, 2000, err, errlen);
	struct rdm_msg m;
	const char *e, *cl, *leader;
	size_t clen;
	int rc;

	if (!c)
		return errno == EACCES ? -1 : 0; /* EACCES: not our CA's orchestrator */
	rc = rdm_msg_send(c, "join", 0, kv, csr, strlen(csr), RDM_ORCH_SEND_MS);
	if (rc == 0)
		rc = rdm_msg_recv(c, &m, JOIN_WAIT_MS, err, errlen);
	rdm_tls_close(c);
	if (rc < 0) {
		rdm_errf(err, errlen, rc, "%s: no answer to our join: %s", addr, strerror(-rc));
		return 0;
	}
	e = rdm_msg_get(&m, "error");
	cl = rdm_msg_get(&m, "cert_len");
	leader = rdm_msg_get(&m, "leader");
	clen = cl ? strtoull(cl, NULL, 10) : 0;
	if (!strcmp(m.type, "leader")) {
		snprintf(hint, hlen, "%s", leader && strcmp(leader, addr) ? leader : "");
		rdm_errf(err, errlen, -EAGAIN, "%s does not lead", addr);
		rc = 0;
	} else if (strcmp(m.type, "joined")) {
		rc = rdm_errf(err, errlen, -EPROTO, "%s answered '%s' to our join", addr, m.type);
		rc = -1;
	} else if (e) {
		rdm_errf(err, errlen, -EACCES, "the orchestrator at %s refused us: %s", addr, e);
		rc = -1;
	} else if (!clen || clen >= m.body_len) {
		rdm_errf(err, errlen, -EPROTO, "a malformed joined message (cert_len %s)",
			 cl ? cl : "none");
		rc = -1;
	} else {
		rc = rdm_certs_install(o->certs, o->name, key, m.body, clen, m.body + clen,
				       m.body_len - clen, err, errlen) == 0
			 ? 1
			 : -1;
	}
	rdm_msg_free(&m);
	return rc;
}

int rdm_agent_join(const struct rdm_agent_opts *o, char *err, size_t errlen)
{
	char token[RDM_JOIN_TOKEN_MAX + 2], ca[4096], hint[64] = "", list[1024], why[512] = "";
	char *key = NULL, *csr = NULL, *save = NULL;
	int64_t until = rdm_certs_not_after(o->certs, o->name);
	struct rdm_tls_ctx *ctx;
	int rc = 0;

	if (until > (int64_t)time(NULL) + JOIN_RENEW_SLACK) {
		fprintf(stderr,
			"rdmesh: %s: a certificate of ours in %s until %" PRId64
			": joining with it (no token needed)\n",
			o->name, o->certs, until);
		return 0;
	}
	if ((rc = read_token(o->join, token, sizeof(token), err, errlen)) < 0)
		return rc;
	if (mkdir(o->certs, 0700) < 0 && errno != EEXIST)
		return rdm_errf(err, errlen, -errno, "--certs %s: %s", o->certs, strerror(errno));
	if (o->ca)
		snprintf(ca, sizeof(ca), "%s", o->ca);
	else if ((rc = rdm_certs_path(ca, sizeof(ca), o->certs, "ca", ".pem", err, errlen)) < 0)
		return rc;
	ctx = rdm_tls_ctx_new(ca, NULL, NULL, 0, err, errlen);
	if (!ctx)
		return -errno;
	if ((rc = rdm_certs_request(o->name, &key, &csr, err, errlen)) < 0) {
		rdm_tls_ctx_free(ctx);
		return rc;
	}
	for (token[strcspn(token, " \t\r\n")] = '\0'; !rc;) {
		snprintf(list, sizeof(list), "%s", o->orch);
		for (char *a = strtok_r(list, ",", &save); a && !rc;
		     a = strtok_r(NULL, ",", &save)) {
			rc = try_join(o, ctx, a, token, key, csr, hint, sizeof(hint), why,
				      sizeof(why));
			if (!rc && hint[0]) /* a follower named the leader: straight there */
				rc = try_join(o, ctx, hint, token, key, csr, hint, sizeof(hint),
					      why, sizeof(why));
		}
		if (!rc) {
			sigset_t pend;

			fprintf(stderr, "rdmesh: %s: joining: %s (trying again)\n", o->name, why);
			usleep(JOIN_RETRY_MS * 1000);
			sigpending(&pend); /* blocked by the caller: looked at, not delivered */
			if (sigismember(&pend, SIGTERM) || sigismember(&pend, SIGINT)) {
				snprintf(why, sizeof(why), "stopped by a signal");
				rc = -1;
			}
		}
	}
	OPENSSL_cleanse(key, strlen(key));
	free(key);
	free(csr);
	rdm_tls_ctx_free(ctx);
	if (rc < 0)
		return rdm_errf(err, errlen, -EACCES, "joining as a replica of %s: %s", o->stage,
				why);
	fprintf(stderr,
		"rdmesh: %s: joined as a replica of %s: certificate until %" PRId64 " in %s\n",
		o->name, o->stage, rdm_certs_not_after(o->certs, o->name), o->certs);
	return 0;
}
