/* Certificates handed out by the orchestrator (ctl renew), with an epoch: every
 * connected node makes a new key and sends a certificate request over its control
 * channel (its key never leaves it); the orchestrator signs it with the rack's CA for the
 * name the channel proved and sends the certificate back with the CA bundle; the node
 * checks and installs them. Once every node asked has answered, the plan moves to a new
 * epoch, on which every replica reads its certificates again: connections made from then
 * on prove themselves with the new ones, and those up keep going (their session keys
 * are their own, from the handshake's key exchange), so no flow is cut or decided
 * again. The exchange:
 *
 *   orch -> node  renew    days: N
 *   node -> orch  csr      (body: the request, PEM)
 *   orch -> node  cert     cert_len: L (body: the certificate, then the CA bundle), or
 *                          error: why
 *   node -> orch  renewed  result: ok, or the reason it did not install them */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/certs.h"
#include "lib/file.h"
#include "orchestrator/orch_int.h"

/* Reads dir/ca.pem whole (the CA bundle nodes trust). NULL on failure. */
static char *read_bundle(const char *dir, size_t *len)
{
	char path[4096];
	FILE *f;
	char *b = NULL;

	if (rdm_certs_path(path, sizeof(path), dir, "ca", ".pem", NULL, 0) < 0 ||
	    !(f = rdm_fopen_regular(path)))
		return NULL;
	b = malloc(1 << 20);
	*len = b ? fread(b, 1, (1 << 20) - 1, f) : 0;
	fclose(f);
	if (b && !*len) {
		free(b);
		b = NULL;
	}
	return b;
}

int rdm_orch__renew(struct orch *o, const char *days, FILE *f)
{
	int d = days ? atoi(days) : 0, n = 0;
	char dd[16];
	const char *kv[] = {"days", dd, NULL};

	for (int k = 0; k < o->rack.n_nodes; k++)
		if (o->nodes[k].renewing == 1) {
			fprintf(f, "a renewal is still in progress (%s has not answered)\n",
				o->rack.nodes[k].name);
			return -1;
		}
	if (d < 1 || d > RDM_CERTS_MAX_DAYS) {
		fprintf(f, "days '%s' is not in 1..%d\n", days ? days : "", RDM_CERTS_MAX_DAYS);
		return -1;
	}
	snprintf(dd, sizeof(dd), "%d", d);
	o->renew_days = d;
	o->renew_ok = o->renew_failed = 0;
	for (int k = 0; k < o->rack.n_nodes; k++) {
		struct conn *c = o->nodes[k].conn;

		if (!c || !c->hello || o->nodes[k].renewing) /* a pod renewing on its own */
			continue;
		if (rdm_msg_send(c->c, "renew", o->st.epoch, kv, NULL, 0, RDM_ORCH_SEND_MS) < 0) {
			rdm_orch__drop_conn(o, c, "renew not sent");
			continue;
		}
		o->nodes[k].renewing = 1;
		n++;
	}
	if (!n) {
		fprintf(f, "no node is connected: nothing to renew\n");
		return -1;
	}
	fprintf(f,
		"asked %d nodes for a certificate request (new keys, certificates valid %d "
		"days); once all are installed, epoch %" PRIu64
		" makes every replica use them (ctl logs shows the progress)\n",
		n, d, o->st.epoch + 1);
	rdm_orch__log(o, "ctl renew: %d nodes asked for a certificate request", n);
	return 0;
}

/* The round is over when no node is left to answer: a new epoch makes the replicas read
 * their certificates again. */
static void round_done(struct orch *o)
{
	struct rdm_plan *np;
	char err[512];

	for (int k = 0; k < o->rack.n_nodes; k++)
		if (o->nodes[k].renewing == 1)
			return;
	np = rdm_plan_copy(o->plan);
	if (!np || rdm_orch__commit(o, np, NULL, err, sizeof(err)) < 0) {
		rdm_orch__log(o,
			      "certificates renewed on %d nodes (%d failed), but the new epoch "
			      "was not made: %s; they take effect on the next one",
			      o->renew_ok, o->renew_failed, np ? err : "out of memory");
		return;
	}
	rdm_orch__log(o,
		      "certificates renewed on %d nodes (%d failed): epoch %" PRIu64
		      ": connections made from now on prove themselves with them",
		      o->renew_ok, o->renew_failed, o->st.epoch);
}

static void end_one(struct orch *o, int k, int ok)
{
	int was = o->nodes[k].renewing;

	if (!was)
		return;
	o->nodes[k].renewing = 0;
	if (was == 2) { /* a pod's own: no round, its replicas reloaded at once */
		if (ok)
			o->nodes[k].cert_until = (int64_t)time(NULL) + o->pod_cert_s;
		return;
	}
	if (ok)
		o->renew_ok++;
	else
		o->renew_failed++;
	round_done(o);
}

void rdm_orch__renew_gone(struct orch *o, int k)
{
	end_one(o, k, 0);
}

char *rdm_orch__cert_body(struct orch *o, const char *cert, size_t *len, char *err, size_t errlen)
{
	size_t blen = 0, clen = strlen(cert);
	char *bundle = read_bundle(o->certs, &blen), *body = bundle ? malloc(clen + blen) : NULL;

	if (!bundle)
		snprintf(err, errlen, "cannot read %s/ca.pem", o->certs);
	else if (!body)
		snprintf(err, errlen, "out of memory");
	if (body) {
		memcpy(body, cert, clen);
		memcpy(body + clen, bundle, blen);
		*len = clen + blen;
	}
	free(bundle);
	return body;
}

/* A node's certificate request: signed for the name its channel proved (a pod's, with
 * the stage its certificate binds it to, for the pods' lifetime). */
static void take_csr(struct orch *o, int k, const struct rdm_msg *m)
{
	const char *name = o->rack.nodes[k].name, *pod = o->rack.nodes[k].pod;
	struct conn *c = o->nodes[k].conn;
	char err[512], len[24], unit[80], *cert = NULL, *body = NULL;
	size_t blen = 0;
	const char *ok_kv[] = {"cert_len", len, NULL}, *err_kv[] = {"error", err, NULL};
	int rc;

	snprintf(unit, sizeof(unit), RDM_POD_UNIT "%s", pod ? pod : "");
	rc = pod ? rdm_certs_sign_for(o->certs, name, unit, m->body, m->body_len, o->pod_cert_s,
				      &cert, err, sizeof(err))
		 : rdm_certs_sign(o->certs, name, m->body, m->body_len, o->renew_days, &cert, err,
				  sizeof(err));
	if (rc == 0 && !(body = rdm_orch__cert_body(o, cert, &blen, err, sizeof(err))))
		rc = -EIO;
	if (rc == 0)
		snprintf(len, sizeof(len), "%zu", strlen(cert));
	else
		rdm_orch__log(o, "%s: certificate request refused: %s", name, err);
	/* A refusal goes to the node too: its "renewed" answer ends its part of the round,
	 * as it does after a certificate. */
	if (rdm_msg_send(c->c, "cert", o->st.epoch, rc ? err_kv : ok_kv, body, rc ? 0 : blen,
			 RDM_ORCH_SEND_MS) < 0)
		rdm_orch__drop_conn(o, c, "cert not sent"); /* ends its part of the round */
	free(cert);
	free(body);
}

void rdm_orch__take_renewal(struct orch *o, int k, const struct rdm_msg *m)
{
	const char *name = o->rack.nodes[k].name, *res = rdm_msg_get(m, "result");

	if (!o->nodes[k].renewing) {
		rdm_orch__log(o, "%s: '%s' outside a renewal: ignored", name, m->type);
		return;
	}
	if (!strcmp(m->type, "csr")) {
		take_csr(o, k, m);
		return;
	}
	if (res && !strcmp(res, "ok"))
		rdm_orch__log(o, "%s: new certificate installed", name);
	else
		rdm_orch__log(o, "%s: did not install its new certificate: %s", name,
			      res ? res : "(no reason)");
	end_one(o, k, res && !strcmp(res, "ok"));
}
