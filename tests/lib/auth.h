/* What the tests of proven hops share (test_tcp_auth.c, test_rdma_auth.c): what each
 * side's on_refused saw, a listener that admits one name, TLS contexts from a folder of
 * the rack's certificates, and removing that folder. Include once, after criterion.h and
 * after the sinks srv and cli are declared (tests/lib/sink.h). */
#ifndef RDM_TESTS_AUTH_H
#define RDM_TESTS_AUTH_H

#include <ftw.h>
#include <stdio.h>
#include <string.h>

#include "lib/tls.h"
#include "transport/transport.h"

/* What on_refused saw, per side. */
struct refusals {
	int n;
	char why[512];
};
static struct refusals srv_ref, cli_ref;
static char admitted[64]; /* the one name admit lets in */

static void on_refused(struct rdm_conn *c, const char *why, void *arg)
{
	struct refusals *r = arg == &srv ? &srv_ref : &cli_ref;

	(void)c;
	r->n++;
	snprintf(r->why, sizeof(r->why), "%s", why);
}

/* Admits only the name in admitted. */
static int admit(const char *name, void *arg, char *why, size_t len)
{
	(void)arg;
	if (!strcmp(name, admitted))
		return 0;
	snprintf(why, len, "'%s' is not my upstream", name);
	return -1;
}

/* The context of certificate name in folder d, as a server or a client. */
static struct rdm_tls_ctx *ctx(const char *d, const char *name, int server)
{
	char err[256];
	struct rdm_tls_ctx *x = rdm_tls_ctx_load(d, name, server, err, sizeof(err));

	cr_assert_not_null(x, "%s", err);
	return x;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* Removes folder d and everything in it. */
static void rm_tree(const char *d)
{
	nftw(d, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

#endif
