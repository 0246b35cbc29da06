/* Where the orchestrator keeps what it must not lose, and who may change it.
 *
 * The file store (--state FILE, the default) has one writer: this process. The etcd
 * store (--store etcd://HOST:PORT[,...][/PREFIX]) keeps under PREFIX (default
 * /rdmesh/):
 *   rack    the rack file's text, written by the first orchestrator that finds none
 *   chain   the chain file's text in force
 *   state   the state document (orchestrator/state.h): epoch, down nodes, placement
 *   leader  the leader's control address, under its lease
 * Any number of orchestrators share one prefix; one leads. The lease thread (below)
 * campaigns by creating the leader key with a lease in a transaction, keeps the lease
 * alive every third of its TTL, and counts the leadership valid until the TTL after it
 * sent its last successful keepalive (etcd may hold a lease longer, never shorter).
 * Every write of the leader is a transaction on the leader key's create revision, so a
 * leader that was paused or cut off and comes back can change nothing: etcd refuses it.
 * The main loop acts as the leader only while that validity lasts (rdm_orch__leads),
 * so after a pause it pushes nothing before the thread has proven the lease again.
 * Epochs are in the state, written only by such transactions, read by each new leader:
 * they only grow, whoever leads. */
#include "orchestrator/orch_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/file.h"

#define CAMPAIGN_MS   250	  /* how often a follower looks at the leader key */
#define HEALTH_MS     2000	  /* how often the members' health is asked */
#define ETCD_TRY_MS   500	  /* one request to one member */
#define MAX_FILE_SIZE (16u << 20) /* as lib/yaml.c reads */

static void key(const struct orch *o, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s%s", o->store.prefix, name);
}

/* The whole regular file at path; NULL with why in err. */
static char *slurp(const char *path, char *err, size_t errlen)
{
	char *text = rdm_read_regular(path, MAX_FILE_SIZE, NULL);

	if (!text)
		snprintf(err, errlen, "%s: %s", path,
			 errno == EFBIG ? "larger than 16 MiB" : rdm_file_why(errno));
	return text;
}

/* ---- the lease thread ------------------------------------------------------------- */

static void set_why(struct store *s, const char *why)
{
	pthread_mutex_lock(&s->mu);
	snprintf(s->why, sizeof(s->why), "%s", why);
	pthread_mutex_unlock(&s->mu);
}

static void campaign(struct orch *o)
{
	struct store *s = &o->store;
	struct rdm_etcd_kv kv;
	char lk[300], err[512];
	int64_t lease, rev;
	uint64_t t0;
	int rc;

	key(o, "leader", lk, sizeof(lk));
	rc = rdm_etcd_get(s->bg, lk, &kv, NULL, err, sizeof(err));
	if (!rc && kv.len == strlen(o->advertise) && !memcmp(kv.value, o->advertise, kv.len)) {
		/* Our own key from a leadership we gave up (the loop stepped down while its
		 * lease lived on): let it go now rather than send nodes to ourselves. */
		rdm_etcd_revoke(s->bg, kv.lease, err, sizeof(err));
		rdm_etcd_kv_free(&kv);
		pthread_mutex_lock(&s->mu);
		s->leader[0] = 0;
		pthread_mutex_unlock(&s->mu);
		return;
	}
	if (!rc) {
		pthread_mutex_lock(&s->mu);
		snprintf(s->leader, sizeof(s->leader), "%.*s", (int)kv.len, kv.value);
		s->why[0] = 0;
		pthread_mutex_unlock(&s->mu);
		rdm_etcd_kv_free(&kv);
		return;
	}
	if (rc != -ENOENT) {
		pthread_mutex_lock(&s->mu);
		snprintf(s->why, sizeof(s->why), "%s", err);
		s->leader[0] = 0; /* unknown while the store does not answer */
		pthread_mutex_unlock(&s->mu);
		return;
	}
	t0 = rdm_now_ns();
	pthread_mutex_lock(&s->mu);
	rc = t0 < s->campaign_after_ns;
	pthread_mutex_unlock(&s->mu);
	if (rc)
		return;
	if (rdm_etcd_grant(s->bg, s->lease_s, &lease, err, sizeof(err)) < 0) {
		set_why(s, err);
		return;
	}
	{
		const struct rdm_etcd_cmp cmp = {.key = lk, .create_rev = 0};
		const struct rdm_etcd_put put = {
		    .key = lk, .value = o->advertise, .len = strlen(o->advertise), .lease = lease};

		rc = rdm_etcd_txn(s->bg, &cmp, 1, &put, 1, &rev, err, sizeof(err));
	}
	if (rc) {
		/* Another won (or the answer was lost: then our key dies with the lease). */
		rdm_etcd_revoke(s->bg, lease, err, sizeof(err));
		if (rc != -ECANCELED)
			set_why(s, err);
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->leading = 1;
	s->lease = lease;
	s->lead_rev = rev;
	s->valid_until_ns = t0 + (uint64_t)s->lease_s * 1000000000ull;
	snprintf(s->leader, sizeof(s->leader), "%s", o->advertise);
	s->why[0] = 0;
	pthread_mutex_unlock(&s->mu);
	if (write(o->wake[1], "l", 1) < 0) {
		/* the loop wakes on its tick anyway */
	}
}

/* Renews our lease, and checks that the leader key is still the one we made (an
 * operator or a partitioned etcd may have lost it while the lease lives on). */
static void keep(struct orch *o)
{
	struct store *s = &o->store;
	uint64_t t0 = rdm_now_ns();
	struct rdm_etcd_kv kv;
	int64_t ttl = 0;
	char err[512], lk[300];
	int rc = rdm_etcd_keepalive(s->bg, s->lease, &ttl, err, sizeof(err));

	key(o, "leader", lk, sizeof(lk));
	if (!rc) {
		rc = rdm_etcd_get(s->bg, lk, &kv, NULL, err, sizeof(err));
		if (!rc && kv.create_rev != s->lead_rev) {
			snprintf(err, sizeof(err),
				 "the leader key is another's now (revision %" PRId64
				 ", ours %" PRId64 ")",
				 kv.create_rev, s->lead_rev);
			rc = -ENOENT;
		} else if (rc == -ENOENT) {
			snprintf(err, sizeof(err), "the leader key is gone");
		}
		rdm_etcd_kv_free(&kv);
	}
	pthread_mutex_lock(&s->mu);
	if (!rc) {
		s->valid_until_ns = t0 + (uint64_t)ttl * 1000000000ull;
		s->why[0] = 0;
	} else {
		snprintf(s->why, sizeof(s->why), "keeping the lease: %.480s", err);
		if (rc == -ENOENT || rdm_now_ns() >= s->valid_until_ns)
			s->leading = 0; /* the loop sees it and steps down */
	}
	pthread_mutex_unlock(&s->mu);
}

static void *lease_main(void *arg)
{
	struct orch *o = arg;
	struct store *s = &o->store;

	while (!atomic_load(&o->stop)) {
		int leading, trouble;

		pthread_mutex_lock(&s->mu);
		leading = s->leading;
		pthread_mutex_unlock(&s->mu);
		if (leading)
			keep(o);
		else
			campaign(o);
		pthread_mutex_lock(&s->mu);
		trouble = s->why[0] != 0;
		pthread_mutex_unlock(&s->mu);
		/* A keepalive that failed (an etcd election, a member gone) is tried again
		 * soon: the lease must be renewed before our count of it runs out. */
		usleep(leading && !trouble ? (useconds_t)s->lease_s * 1000000u / 3
					   : CAMPAIGN_MS * 1000);
	}
	pthread_mutex_lock(&s->mu);
	if (s->leading) {
		char err[512];

		/* Stepping down on purpose: the others need not wait for the TTL. */
		rdm_etcd_revoke(s->bg, s->lease, err, sizeof(err));
		s->leading = 0;
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Asks every member how it is, for ctl status; on a thread of its own, so that a member
 * that does not answer never delays a keepalive. */
static void *health_main(void *arg)
{
	struct orch *o = arg;
	struct store *s = &o->store;

	while (!atomic_load(&o->stop)) {
		char h[1024];
		int ok = rdm_etcd_health(s->hc, h, sizeof(h));

		pthread_mutex_lock(&s->mu);
		snprintf(s->health, sizeof(s->health), "%s", h);
		s->healthy = ok;
		pthread_mutex_unlock(&s->mu);
		for (int i = 0; i < HEALTH_MS / 100 && !atomic_load(&o->stop); i++)
			usleep(100000);
	}
	return NULL;
}

/* ---- opening and reading ---------------------------------------------------------- */

int rdm_orch__store_open(struct orch *o, const char *url, const struct rdm_etcd_tls *tls,
			 int lease_s, char *err, size_t errlen)
{
	struct store *s = &o->store;
	char eps[1024];
	const char *slash;

	pthread_mutex_init(&s->mu, NULL);
	if (!url) {
		s->leading = 1; /* the file store: this process alone */
		return 0;
	}
	if (strncmp(url, "etcd://", 7)) {
		snprintf(err, errlen, "--store %s: only etcd://HOST:PORT[,HOST:PORT...][/PREFIX]",
			 url);
		return -EINVAL;
	}
	url += 7;
	slash = strchr(url, '/');
	snprintf(eps, sizeof(eps), "%.*s", slash ? (int)(slash - url) : (int)strlen(url), url);
	if (asprintf(&s->prefix, "%s%s", slash && slash[1] ? slash : "/rdmesh/",
		     slash && slash[1] && slash[strlen(slash) - 1] != '/' ? "/" : "") < 0) {
		s->prefix = NULL;
		return -ENOMEM;
	}
	s->lease_s = lease_s;
	s->main = rdm_etcd_new(eps, tls, ETCD_TRY_MS, err, errlen);
	s->bg = s->main ? rdm_etcd_new(eps, tls, ETCD_TRY_MS, err, errlen) : NULL;
	s->hc = s->bg ? rdm_etcd_new(eps, tls, ETCD_TRY_MS, err, errlen) : NULL;
	if (!s->hc)
		return -EINVAL;
	s->etcd = 1;
	s->n_members = 1;
	for (const char *c = eps; *c; c++)
		s->n_members += *c == ',';
	snprintf(s->url, sizeof(s->url), "etcd://%s%s", eps, s->prefix);
	return 0;
}

int rdm_orch__store_rack(struct orch *o, const char *path, char *err, size_t errlen)
{
	struct store *s = &o->store;
	struct rdm_etcd_kv kv;
	char rk[300], *text;
	int rc;

	if (!s->etcd)
		return rdm_rack_load(path, &o->rack, err, errlen);
	key(o, "rack", rk, sizeof(rk));
	rc = rdm_etcd_get(s->main, rk, &kv, NULL, err, errlen);
	if (rc == -ENOENT) {
		/* The first orchestrator of this rack: its file becomes the rack's. */
		const struct rdm_etcd_cmp cmp = {.key = rk, .create_rev = 0};
		struct rdm_etcd_put put = {.key = rk};

		text = slurp(path, err, errlen);
		if (!text)
			return -EINVAL;
		rc = rdm_rack_parse(path, text, &o->rack, err, errlen);
		put.value = text;
		put.len = strlen(text);
		if (!rc)
			rc = rdm_etcd_txn(s->main, &cmp, 1, &put, 1, NULL, err, errlen);
		free(text);
		if (rc != -ECANCELED)
			return rc;
		rdm_rack_free(&o->rack); /* another was first: read theirs */
		rc = rdm_etcd_get(s->main, rk, &kv, NULL, err, errlen);
	}
	if (rc)
		return rc;
	rc = rdm_rack_parse(rk, kv.value, &o->rack, err, errlen);
	text = slurp(path, err, errlen);
	if (!rc && (!text || strcmp(text, kv.value)))
		fprintf(
		    stderr,
		    "rdmesh orch: %s differs from the rack in the store (%s): the store's is in "
		    "force\n",
		    path, rk);
	free(text);
	rdm_etcd_kv_free(&kv);
	return rc;
}

int rdm_orch__store_state(struct orch *o, struct rdm_orch_state *st, char *err, size_t errlen)
{
	struct store *s = &o->store;
	struct rdm_etcd_kv kv, ck;
	char sk[300];
	int rc;

	if (!s->etcd)
		return rdm_state_load(o->state_path, st, err, errlen);
	memset(st, 0, sizeof(*st));
	key(o, "state", sk, sizeof(sk));
	rc = rdm_etcd_get(s->main, sk, &kv, NULL, err, errlen);
	if (rc)
		return rc;
	if (s->state_rev && kv.mod_rev == s->state_rev) {
		rdm_etcd_kv_free(&kv);
		return 1; /* the one we hold: nothing to parse, no chain to read */
	}
	rc = rdm_state_parse(sk, kv.value, st, err, errlen);
	s->state_rev = kv.mod_rev;
	rdm_etcd_kv_free(&kv);
	key(o, "chain", sk, sizeof(sk));
	if (!rc)
		rc = rdm_etcd_get(s->main, sk, &ck, NULL, err, errlen);
	if (rc == -ENOENT)
		snprintf(err, errlen, "%s: the state names no chain in the store", sk);
	if (rc) {
		rdm_state_free(st);
		return rc == -ENOENT ? -EINVAL : rc;
	}
	free(s->chain_text);
	s->chain_text = ck.value; /* kept: ours now */
	return 0;
}

int rdm_orch__store_spec(struct orch *o, const char *path, struct rdm_chain_spec *spec, char *err,
			 size_t errlen)
{
	struct store *s = &o->store;

	if (s->etcd && !s->chain_text && !(s->chain_text = slurp(path, err, errlen)))
		return -EINVAL;
	return s->etcd ? rdm_chain_spec_parse(path, s->chain_text, spec, err, errlen)
		       : rdm_chain_spec_load(path, spec, err, errlen);
}

/* ---- writing ---------------------------------------------------------------------- */

int rdm_orch__store_save(struct orch *o, const struct rdm_orch_state *st, const char *chain,
			 char *err, size_t errlen)
{
	struct store *s = &o->store;
	char sk[300], ck[300], lk[300], *text, *ctext = NULL;
	struct rdm_etcd_put put[2];
	struct rdm_etcd_cmp cmp;
	int64_t rev = 0;
	int rc;

	if (!s->etcd)
		return rdm_state_save(o->state_path, st, err, errlen);
	if (!rdm_orch__leads(o)) {
		snprintf(err, errlen, "this orchestrator does not lead (%s)",
			 s->leader[0] ? s->leader : "no leader yet");
		return -EPERM;
	}
	text = rdm_state_format(st, err, errlen);
	if (!text)
		return -EINVAL;
	if (chain && !(ctext = slurp(chain, err, errlen))) {
		free(text);
		return -EINVAL;
	}
	key(o, "state", sk, sizeof(sk));
	key(o, "chain", ck, sizeof(ck));
	key(o, "leader", lk, sizeof(lk));
	cmp = (struct rdm_etcd_cmp){.key = lk, .create_rev = s->lead_rev};
	put[0] = (struct rdm_etcd_put){.key = sk, .value = text, .len = strlen(text)};
	put[1] = (struct rdm_etcd_put){.key = ck,
				       .value = ctext ? ctext : s->chain_text,
				       .len = strlen(ctext ? ctext : s->chain_text)};
	rc = rdm_etcd_txn(s->main, &cmp, 1, put, 2, &rev, err, errlen);
	free(text);
	if (rc == -ECANCELED) {
		snprintf(err, errlen,
			 "etcd refused the write: this orchestrator's leadership (revision %" PRId64
			 ") is over",
			 s->lead_rev);
		pthread_mutex_lock(&s->mu);
		s->leading = 0;
		pthread_mutex_unlock(&s->mu);
	}
	if (rc) {
		free(ctext);
		return rc;
	}
	s->state_rev = rev;
	if (ctext) {
		free(s->chain_text);
		s->chain_text = ctext;
	}
	return 0;
}

/* ---- leading ---------------------------------------------------------------------- */

int rdm_orch__leads(struct orch *o)
{
	struct store *s = &o->store;
	int yes;

	if (!s->etcd)
		return 1;
	pthread_mutex_lock(&s->mu);
	yes = s->acting && s->leading && rdm_now_ns() < s->valid_until_ns;
	pthread_mutex_unlock(&s->mu);
	return yes;
}

void rdm_orch__leader(struct orch *o, char *addr, size_t len, char *why, size_t wlen)
{
	struct store *s = &o->store;

	pthread_mutex_lock(&s->mu);
	snprintf(addr, len, "%s", s->leader);
	if (why)
		snprintf(why, wlen, "%s", s->why);
	pthread_mutex_unlock(&s->mu);
}

int rdm_orch__store_start(struct orch *o)
{
	struct store *s = &o->store;

	if (!s->etcd) {
		s->acting = 1;
		return 0;
	}
	if (pthread_create(&s->thr, NULL, lease_main, o))
		return -EAGAIN;
	s->thr_up = 1;
	if (pthread_create(&s->health_thr, NULL, health_main, o))
		return -EAGAIN;
	s->thr_up = 2;
	return 0;
}

void rdm_orch__store_close(struct orch *o)
{
	struct store *s = &o->store;

	if (s->thr_up)
		pthread_join(s->thr, NULL);
	if (s->thr_up == 2)
		pthread_join(s->health_thr, NULL);
	rdm_etcd_free(s->main);
	rdm_etcd_free(s->bg);
	rdm_etcd_free(s->hc);
	free(s->prefix);
	free(s->chain_text);
	pthread_mutex_destroy(&s->mu);
	memset(s, 0, sizeof(*s));
}
