/* The etcd client (lib/etcd.c) against a real etcd (Debian's etcd-server, started by
 * each test on loopback ports of its own): transactions and the fence they give, leases
 * that expire and are revoked, values of any bytes, a list of endpoints where the first
 * is dead, and the errors for what cannot work. */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/certs.h"
#include "lib/etcd.h"

static pid_t etcd_pid;
static char dir[64], ep[32];

/* Starts etcd in dir; tls: with the rack CA's certificate for "localhost" and client
 * certificates required (dir/certs). Waits until it grants a lease to a client of its. */
static void start_etcd(int tls)
{
	char client[64], peer[64], cluster[96], certs[96], ca[128], cert[128], key[128], ccert[128],
	    ckey[128];
	const struct rdm_etcd_tls t = {ca, ccert, ckey};
	/* Below the ephemeral range (32768 up): a port some connection took cannot collide
	 * (peer = client + 6000; 40000-59999 as before made etcd exit now and then). */
	int port = 20000 + (int)(getpid() % 6000);
	struct rdm_etcd *e;
	char err[512];

	snprintf(dir, sizeof(dir), "/tmp/rdm-etcd-test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(certs, sizeof(certs), "%s/certs", dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	snprintf(cert, sizeof(cert), "%s/localhost.pem", certs);
	snprintf(key, sizeof(key), "%s/localhost.key", certs);
	snprintf(ccert, sizeof(ccert), "%s/orch.pem", certs);
	snprintf(ckey, sizeof(ckey), "%s/orch.key", certs);
	if (tls) {
		static const char *const names[] = {"localhost", "orch"};

		cr_assert_eq(rdm_certs_make(certs, names, 2, 1, err, sizeof(err)), 2, "%s", err);
	}
	/* The certificate names localhost: the client must use that name. */
	snprintf(ep, sizeof(ep), "%s:%d", tls ? "localhost" : "127.0.0.1", port);
	snprintf(client, sizeof(client), "%s://127.0.0.1:%d", tls ? "https" : "http", port);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", port + 6000);
	snprintf(cluster, sizeof(cluster), "t=%s", peer);
	etcd_pid = fork();
	cr_assert_geq(etcd_pid, 0);
	if (etcd_pid == 0) {
		char log[96];

		snprintf(log, sizeof(log), "%s/log", dir);
		if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr))
			_exit(126);
		if (tls)
			execlp("etcd", "etcd", "--name", "t", "--data-dir", dir,
			       "--listen-client-urls", client, "--advertise-client-urls", client,
			       "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			       "--initial-cluster", cluster, "--cert-file", cert, "--key-file", key,
			       "--trusted-ca-file", ca, "--client-cert-auth", (char *)NULL);
		else
			execlp("etcd", "etcd", "--name", "t", "--data-dir", dir,
			       "--listen-client-urls", client, "--advertise-client-urls", client,
			       "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			       "--initial-cluster", cluster, (char *)NULL);
		_exit(127);
	}
	/* Wait for the event itself: a lease granted (etcd is up and has a leader). */
	e = rdm_etcd_new(ep, tls ? &t : NULL, 500, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	for (int i = 0;; i++) {
		int64_t id;
		int st;

		if (rdm_etcd_grant(e, 5, &id, err, sizeof(err)) == 0)
			break;
		cr_assert_eq(waitpid(etcd_pid, &st, WNOHANG), 0,
			     "etcd exited (is etcd-server installed? see %s/log)", dir);
		cr_assert_lt(i, 300, "etcd did not come up: %s", err);
		usleep(50000);
	}
	rdm_etcd_free(e);
}

static void stop(void)
{
	char cmd[128];

	if (etcd_pid > 0) {
		kill(etcd_pid, SIGKILL);
		waitpid(etcd_pid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd)) {
	}
}

static void start(void)
{
	start_etcd(0);
}

static void start_tls(void)
{
	start_etcd(1);
}

TestSuite(etcd, .init = start, .fini = stop, .timeout = 60);
TestSuite(etcd_tls, .init = start_tls, .fini = stop, .timeout = 60);

static struct rdm_etcd *client(const char *eps)
{
	char err[512];
	struct rdm_etcd *e = rdm_etcd_new(eps, NULL, 500, err, sizeof(err));

	cr_assert_not_null(e, "%s", err);
	return e;
}

Test(etcd, create_once_then_fenced)
{
	struct rdm_etcd *e = client(ep);
	const struct rdm_etcd_cmp absent = {.key = "/t/leader", .create_rev = 0};
	const struct rdm_etcd_put put = {.key = "/t/leader", .value = "a:1", .len = 3};
	struct rdm_etcd_put st = {.key = "/t/state", .value = "v\0w", .len = 3};
	struct rdm_etcd_cmp fence = {.key = "/t/leader"};
	struct rdm_etcd_kv kv;
	int64_t rev = 0, rev2 = 0;
	char err[512];

	cr_assert_eq(rdm_etcd_txn(e, &absent, 1, &put, 1, &rev, err, sizeof(err)), 0, "%s", err);
	cr_assert_gt(rev, 0);
	/* The second campaign finds the key: refused, nothing written. */
	cr_assert_eq(rdm_etcd_txn(e, &absent, 1, &put, 1, &rev2, err, sizeof(err)), -ECANCELED);
	cr_assert(strstr(err, "compare failed"), "%s", err);
	/* The holder's fenced write goes through (a value with a NUL byte in it)... */
	fence.create_rev = rev;
	cr_assert_eq(rdm_etcd_txn(e, &fence, 1, &st, 1, &rev2, err, sizeof(err)), 0, "%s", err);
	cr_assert_gt(rev2, rev);
	cr_assert_eq(rdm_etcd_get(e, "/t/state", &kv, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kv.len, 3);
	cr_assert_eq(memcmp(kv.value, "v\0w", 3), 0);
	rdm_etcd_kv_free(&kv);
	/* ...one with another leadership's revision is not. */
	fence.create_rev = rev + 1000;
	st.value = "stale";
	st.len = 5;
	cr_assert_eq(rdm_etcd_txn(e, &fence, 1, &st, 1, NULL, err, sizeof(err)), -ECANCELED);
	cr_assert_eq(rdm_etcd_get(e, "/t/state", &kv, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(memcmp(kv.value, "v\0w", 3), 0, "a fenced-off write changed the value");
	rdm_etcd_kv_free(&kv);
	cr_assert_eq(rdm_etcd_get(e, "/t/none", &kv, NULL, err, sizeof(err)), -ENOENT);
	rdm_etcd_free(e);
}

Test(etcd, lease_keeps_expires_and_revokes)
{
	struct rdm_etcd *e = client(ep);
	struct rdm_etcd_put put = {.key = "/t/leader", .value = "me", .len = 2};
	struct rdm_etcd_kv kv;
	int64_t id, ttl = 0;
	char err[512];

	cr_assert_eq(rdm_etcd_grant(e, 2, &id, err, sizeof(err)), 0, "%s", err);
	put.lease = id;
	cr_assert_eq(rdm_etcd_txn(e, NULL, 0, &put, 1, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_etcd_keepalive(e, id, &ttl, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(ttl, 2);
	cr_assert_eq(rdm_etcd_get(e, "/t/leader", &kv, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kv.lease, id);
	rdm_etcd_kv_free(&kv);
	/* Revoked: its key goes with it, and it cannot be kept alive. */
	cr_assert_eq(rdm_etcd_revoke(e, id, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_etcd_get(e, "/t/leader", &kv, NULL, err, sizeof(err)), -ENOENT);
	cr_assert_eq(rdm_etcd_keepalive(e, id, &ttl, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "expired or was revoked"), "%s", err);
	/* Left alone: etcd expires it (wait for that event, the key's disappearance). */
	cr_assert_eq(rdm_etcd_grant(e, 2, &id, err, sizeof(err)), 0, "%s", err);
	put.lease = id;
	cr_assert_eq(rdm_etcd_txn(e, NULL, 0, &put, 1, NULL, err, sizeof(err)), 0, "%s", err);
	while (rdm_etcd_get(e, "/t/leader", &kv, NULL, err, sizeof(err)) == 0) {
		rdm_etcd_kv_free(&kv);
		usleep(100000);
	}
	cr_assert_eq(rdm_etcd_keepalive(e, id, &ttl, err, sizeof(err)), -ENOENT, "%s", err);
	rdm_etcd_free(e);
}

Test(etcd, dead_endpoint_skipped_and_reported)
{
	char list[128], health[1024], err[512];
	struct rdm_etcd *e;
	struct rdm_etcd_kv kv;
	int64_t id;

	/* Port 1 on loopback: nobody listens. */
	snprintf(list, sizeof(list), "127.0.0.1:1,%s", ep);
	e = client(list);
	cr_assert_eq(rdm_etcd_grant(e, 5, &id, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(rdm_etcd_endpoint(e), ep);
	cr_assert_eq(rdm_etcd_get(e, "/t/x", &kv, NULL, err, sizeof(err)), -ENOENT);
	cr_assert_eq(rdm_etcd_health(e, health, sizeof(health)), 1, "%s", health);
	cr_assert(strstr(health, "127.0.0.1:1 unreachable"), "%s", health);
	cr_assert(strstr(health, " ok, leader, revision "), "%s", health);
	cr_assert_str_eq(rdm_etcd_endpoint(e), ep, "asking for health changed the member used");
	rdm_etcd_free(e);

	e = client("127.0.0.1:1,127.0.0.1:2");
	cr_assert_lt(rdm_etcd_grant(e, 5, &id, err, sizeof(err)), 0);
	cr_assert(strstr(err, "etcd 127.0.0.1:"), "%s", err);
	rdm_etcd_free(e);
}

Test(etcd, bad_endpoints_refused)
{
	static const char *const bad[] = {"", "host", "a/b:1", "user@h:1", "h:1,,", NULL};
	char err[512];

	for (int i = 0; bad[i]; i++) {
		struct rdm_etcd *e = rdm_etcd_new(bad[i], NULL, 500, err, sizeof(err));

		if (!strcmp(bad[i], "h:1,,")) { /* empty items are skipped: one endpoint */
			cr_assert_not_null(e, "%s", err);
			rdm_etcd_free(e);
			continue;
		}
		cr_assert_null(e, "'%s' was taken", bad[i]);
		cr_assert(strstr(err, "etcd: "), "%s", err);
	}
}

/* etcd with --client-cert-auth: our client certificate is taken; without one, or
 * trusting another CA, the request fails and says why. */
Test(etcd_tls, client_certificate_required)
{
	char ca[128], cert[128], key[128], other[128], err[512];
	const struct rdm_etcd_tls good = {ca, cert, key}, none = {ca, NULL, NULL};
	const struct rdm_etcd_tls wrong_ca = {other, cert, key};
	static const char *const names[] = {"x"};
	struct rdm_etcd *e;
	int64_t id;

	snprintf(ca, sizeof(ca), "%s/certs/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/certs/orch.pem", dir);
	snprintf(key, sizeof(key), "%s/certs/orch.key", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	cr_assert_eq(rdm_certs_make(other, names, 1, 1, err, sizeof(err)), 1, "%s", err);
	snprintf(other, sizeof(other), "%s/other/ca.pem", dir);

	e = rdm_etcd_new(ep, &good, 1000, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	cr_assert_eq(rdm_etcd_grant(e, 5, &id, err, sizeof(err)), 0, "%s", err);
	rdm_etcd_free(e);

	e = rdm_etcd_new(ep, &none, 1000, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	cr_assert_lt(rdm_etcd_grant(e, 5, &id, err, sizeof(err)), 0,
		     "granted without a client certificate");
	cr_assert(strstr(err, "etcd localhost:"), "%s", err);
	rdm_etcd_free(e);

	e = rdm_etcd_new(ep, &wrong_ca, 1000, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	cr_assert_lt(rdm_etcd_grant(e, 5, &id, err, sizeof(err)), 0,
		     "a server of another CA was trusted");
	rdm_etcd_free(e);
}
