/* The rack's certificates (lib/certs.c, rdmesh ctl certs): what they are made of, what
 * is refused, and that contexts load them (the rack is tests/lib/tlsrack.h's). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orchestrator/ctl.h"
#include "lib/certs.h"
#include "lib/tls.h"
#include "tests/lib/tlsrack.h"

TestSuite(certs, .init = setup, .fini = teardown, .timeout = 30);

static mode_t mode_of(const char *path)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	return st.st_mode & 0777;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *b = calloc(1, 65536);

	cr_assert_not_null(f, "%s", path);
	fread(b, 1, 65535, f);
	fclose(f);
	return b;
}

Test(certs, keys_private_ca_reused_names_kept)
{
	static const char *const more[] = {"n1", "n2"};
	char err[256], *ca_before, *n1_before, *ca_after, *n1_after;
	int rc;

	cr_assert_eq(mode_of(in(dir_a, "ca.key")), 0600);
	cr_assert_eq(mode_of(in(dir_a, "n1.key")), 0600);
	cr_assert_eq(mode_of(in(dir_a, "orch.key")), 0600);
	cr_assert_eq(mode_of(dir_a), 0700);
	ca_before = slurp(in(dir_a, "ca.pem"));
	n1_before = slurp(in(dir_a, "n1.pem"));
	/* n1 is there already, n2 is new: one issued, by the same CA. */
	rc = rdm_certs_make(dir_a, more, 2, 30, err, sizeof(err));
	cr_assert_eq(rc, 1, "%d %s", rc, err);
	ca_after = slurp(in(dir_a, "ca.pem"));
	n1_after = slurp(in(dir_a, "n1.pem"));
	cr_assert_str_eq(ca_before, ca_after);
	cr_assert_str_eq(n1_before, n1_after);
	cr_assert_eq(mode_of(in(dir_a, "n2.key")), 0600);
	free(ca_before);
	free(ca_after);
	free(n1_before);
	free(n1_after);

	/* n2 signed by the rack's CA works against orch. */
	{
		struct rdm_tls_ctx *cctx = ctx_for(dir_a, "n2", 0);
		struct rdm_tls_conn *c;
		struct srv s;

		srv_start(&s, dir_a, "orch", SRV_CLOSE, NULL);
		c = client(cctx, s.port, "orch", err, sizeof(err));
		cr_assert_not_null(c, "%s", err);
		rdm_tls_close(c);
		srv_join(&s);
		cr_assert_str_eq(s.name, "n2");
		rdm_tls_ctx_free(cctx);
	}
}

Test(certs, bad_input_makes_nothing)
{
	static const char *const bad[] = {"n7", "bad/name"};
	static const char *const dup[] = {"n7", "n7"};
	static const char *const ca[] = {"ca"};
	static const char *const ok[] = {"n7"};
	char err[256], d[128];

	snprintf(d, sizeof(d), "%s/new", dir);
	cr_assert_eq(rdm_certs_make(d, bad, 2, 30, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "bad certificate name 'bad/name'"), "%s", err);
	cr_assert_eq(access(d, F_OK), -1, "the directory was made");
	cr_assert_eq(rdm_certs_make(d, dup, 2, 30, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "'n7' given twice"), "%s", err);
	cr_assert_eq(rdm_certs_make(d, ca, 1, 30, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rdm_certs_make(d, ok, 1, 0, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rdm_certs_make(d, ok, 1, RDM_CERTS_MAX_DAYS + 1, err, sizeof(err)), -EINVAL);
	cr_assert_eq(access(d, F_OK), -1, "the directory was made");

	/* A key without its certificate is somebody's: never overwritten. */
	cr_assert_eq(unlink(in(dir_a, "n1.pem")), 0);
	cr_assert_eq(rdm_certs_make(dir_a, (const char *const[]){"n1"}, 1, 30, err, sizeof(err)),
		     -EEXIST);
	cr_assert(strstr(err, "n1.key exists without"), "%s", err);
	/* So is a CA key without its certificate. */
	cr_assert_eq(unlink(in(dir_b, "ca.pem")), 0);
	cr_assert_eq(rdm_certs_make(dir_b, ok, 1, 30, err, sizeof(err)), -EEXIST);
	cr_assert(strstr(err, "ca.key exists without"), "%s", err);
	cr_assert_eq(access(in(dir_b, "n7.pem"), F_OK), -1);
	/* A CA key that is not the CA's. */
	cr_assert_eq(rename(in(dir_a, "orch.key"), in(dir_a, "ca.key")), 0);
	cr_assert_eq(rdm_certs_make(dir_a, ok, 1, 30, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "does not hold the key of"), "%s", err);
}

Test(certs, ctl_certs_command)
{
	char d[128], err[256];
	char *ok[] = {"ctl", "certs", "--out", d, "--days", "10", "orch", "n1", NULL};
	char *again[] = {"ctl", "certs", "--out", d, "n1", "n3", NULL};
	char *no_out[] = {"ctl", "certs", "n1", NULL};
	char *bad_days[] = {"ctl", "certs", "--out", d, "--days", "0", "n1", NULL};
	char *unknown[] = {"ctl", "frobnicate", NULL};
	struct rdm_tls_ctx *ctx;

	snprintf(d, sizeof(d), "%s/ctl", dir);
	cr_assert_eq(rdm_cmd_ctl(8, ok), 0);
	cr_assert_eq(mode_of(in(d, "n1.key")), 0600);
	cr_assert_eq(rdm_cmd_ctl(6, again), 0);
	cr_assert_eq(access(in(d, "n3.pem"), F_OK), 0);
	cr_assert_eq(rdm_cmd_ctl(3, no_out), 2);
	cr_assert_eq(rdm_cmd_ctl(7, bad_days), 2);
	cr_assert_eq(rdm_cmd_ctl(2, unknown), 2);
	cr_assert_eq(rdm_cmd_ctl(1, unknown), 2);
	ctx =
	    rdm_tls_ctx_new(in(d, "ca.pem"), in(d, "n3.pem"), in(d, "n3.key"), 0, err, sizeof(err));
	cr_assert_not_null(ctx, "%s", err);
	cr_assert_str_eq(rdm_tls_ctx_name(ctx), "n3");
	rdm_tls_ctx_free(ctx);
}

/* A node's certificate renewed the way the control channel does it: the node's request,
 * the CA's signature for the proven name, the node's checks and the install. */
Test(certs, renewal_request_sign_install)
{
	char err[256], *key = NULL, *csr = NULL, *cert = NULL, *ca = slurp(in(dir_a, "ca.pem"));
	char *old_pem = slurp(in(dir_a, "n1.pem"));
	struct rdm_tls_ctx *x;

	cr_assert_eq(rdm_certs_request("n1", &key, &csr, err, sizeof(err)), 0, "%s", err);
	cr_assert(strstr(csr, "BEGIN CERTIFICATE REQUEST"));
	cr_assert_eq(rdm_certs_sign(dir_a, "n1", csr, strlen(csr), 7, &cert, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(rdm_certs_install(dir_a, "n1", key, cert, strlen(cert), ca, strlen(ca), err,
				       sizeof(err)),
		     0, "%s", err);
	char *new_pem = slurp(in(dir_a, "n1.pem"));

	cr_assert_str_neq(new_pem, old_pem, "n1.pem was replaced");
	free(new_pem);
	cr_assert_eq(mode_of(in(dir_a, "n1.key")), 0600);
	x = rdm_tls_ctx_load(dir_a, "n1", 0, err, sizeof(err));
	cr_assert_not_null(x, "the renewed files load: %s", err);
	rdm_tls_ctx_free(x);
	free(key);
	free(csr);
	free(cert);
	free(ca);
	free(old_pem);
}

Test(certs, renewal_refuses_another_name_another_key_another_ca)
{
	char err[256], *key = NULL, *csr = NULL, *cert = NULL, *key2 = NULL, *csr2 = NULL;
	char *ca_a = slurp(in(dir_a, "ca.pem")), *ca_b = slurp(in(dir_b, "ca.pem"));
	char *before = slurp(in(dir_a, "n1.pem"));

	/* orch's channel proved n1, but the request names orch. */
	cr_assert_eq(rdm_certs_request("orch", &key, &csr, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_certs_sign(dir_a, "n1", csr, strlen(csr), 7, &cert, err, sizeof(err)),
		     -EACCES);
	cr_assert(strstr(err, "a node may renew only its own name"), "%s", err);
	cr_assert_null(cert);
	cr_assert_eq(rdm_certs_sign(dir_a, "n1", "junk", 4, 7, &cert, err, sizeof(err)), -EINVAL);
	free(key);
	free(csr);
	/* A certificate for another key, and one from another CA: nothing is replaced. */
	cr_assert_eq(rdm_certs_request("n1", &key, &csr, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_certs_request("n1", &key2, &csr2, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_certs_sign(dir_a, "n1", csr, strlen(csr), 7, &cert, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(rdm_certs_install(dir_a, "n1", key2, cert, strlen(cert), ca_a, strlen(ca_a),
				       err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "not for our new key"), "%s", err);
	cr_assert_eq(rdm_certs_install(dir_a, "n1", key, cert, strlen(cert), ca_b, strlen(ca_b),
				       err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "does not verify"), "%s", err);
	char *after = slurp(in(dir_a, "n1.pem"));

	cr_assert_str_eq(after, before, "n1.pem untouched");
	free(after);
	free(key);
	free(csr);
	free(key2);
	free(csr2);
	free(cert);
	free(ca_a);
	free(ca_b);
	free(before);
}
