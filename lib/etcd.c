/* The etcd v3 JSON-gateway client (lib/etcd.h). */
#include "lib/etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESP_MAX (64u << 20) /* an answer larger than this is refused */

struct rdm_etcd {
	CURL *curl;
	char *ep[RDM_ETCD_MAX_ENDPOINTS];
	int n_ep, cur;
	int tls;
	int timeout_ms;
	char *body; /* the last answer */
	size_t len, cap;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- base64 ----------------------------------------------------------------------- */

static char *b64_encode(const void *in, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

/* Decodes s into a NUL-terminated buffer; *len its size. NULL when s is not base64. */
static char *b64_decode(const char *s, size_t *len)
{
	size_t n = strlen(s);
	char *out;
	int got;

	if (n % 4)
		return NULL;
	out = malloc(n / 4 * 3 + 1);
	if (!out)
		return NULL;
	got = n ? EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n) : 0;
	if (got < 0) {
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	for (size_t i = n; i > 0 && s[i - 1] == '='; i--)
		got--;
	out[got] = 0;
	*len = (size_t)got;
	return out;
}

/* ---- requests --------------------------------------------------------------------- */

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct rdm_etcd *e = arg;
	size_t add = size * n;

	if (e->len + add + 1 > RESP_MAX)
		return 0;
	if (e->len + add + 1 > e->cap) {
		size_t cap = (e->len + add + 1) * 2;
		char *b = realloc(e->body, cap);

		if (!b)
			return 0;
		e->body = b;
		e->cap = cap;
	}
	memcpy(e->body + e->len, p, add);
	e->len += add;
	e->body[e->len] = 0;
	return add;
}

/* 1 when an error from one member says nothing of the others (try the next). */
static int transient(const char *msg)
{
	static const char *const words[] = {"no leader",      "timed out",   "unavailable",
					    "leader changed", "not capable", "too many requests",
					    "stopped",	      NULL};

	for (int i = 0; words[i]; i++)
		if (strstr(msg, words[i]))
			return 1;
	return 0;
}

/* POSTs json to path at the endpoints first, first+1, ... (tries of them, in a circle);
 * the first that answers becomes the current one. The parsed answer in *out
 * (json_object_put). 0 or -errno with the reason in err. */
static int call_at(struct rdm_etcd *e, int first, int tries, const char *path, const char *json,
		   struct json_object **out, char *err, size_t errlen)
{
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	int rc = -EIO;

	*out = NULL;
	for (int t = 0; t < tries; t++) {
		int i = (first + t) % e->n_ep;
		char url[320];
		long code = 0;
		CURLcode cc;
		struct json_object *j, *msg;

		snprintf(url, sizeof(url), "%s://%s%s", e->tls ? "https" : "http", e->ep[i], path);
		curl_easy_setopt(e->curl, CURLOPT_URL, url);
		curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, json);
		e->len = 0;
		cc = curl_easy_perform(e->curl);
		if (cc != CURLE_OK) {
			snprintf(err, errlen, "etcd %s: %s", e->ep[i], curl_easy_strerror(cc));
			rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
			continue;
		}
		curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &code);
		j = e->len ? json_tokener_parse(e->body) : NULL;
		if (!j || !json_object_is_type(j, json_type_object)) {
			snprintf(err, errlen, "etcd %s: HTTP %ld, an answer that is not JSON",
				 e->ep[i], code);
			json_object_put(j);
			rc = -EPROTO;
			if (code >= 500)
				continue;
			break;
		}
		if (code != 200 || json_object_object_get_ex(j, "error", &msg)) {
			const char *m = json_object_object_get_ex(j, "message", &msg) ||
						json_object_object_get_ex(j, "error", &msg)
					    ? json_object_get_string(msg)
					    : "";

			snprintf(err, errlen, "etcd %s: HTTP %ld: %s", e->ep[i], code, m);
			json_object_put(j);
			rc = strstr(m, "lease not found") ? -ENOENT : -EIO;
			if (code >= 500 || transient(m))
				continue;
			break;
		}
		e->cur = i;
		*out = j;
		rc = 0;
		break;
	}
	curl_slist_free_all(hdr);
	return rc;
}

static int64_t get_i64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static int64_t header_rev(struct json_object *j)
{
	struct json_object *h;

	return json_object_object_get_ex(j, "header", &h) ? get_i64(h, "revision") : 0;
}

/* Adds "name": "<base64 of s>" to o. */
static int add_b64(struct json_object *o, const char *name, const char *s, size_t len)
{
	char *b = b64_encode(s, len);

	if (!b)
		return -ENOMEM;
	json_object_object_add(o, name, json_object_new_string(b));
	free(b);
	return 0;
}

static void add_i64(struct json_object *o, const char *name, int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRId64, v);
	json_object_object_add(o, name, json_object_new_string(s));
}

/* call_at() from the current endpoint through all, with a request built as a json object
 * (consumed). */
static int call_obj(struct rdm_etcd *e, const char *path, struct json_object *req,
		    struct json_object **out, char *err, size_t errlen)
{
	const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	int rc = s ? call_at(e, e->cur, e->n_ep, path, s, out, err, errlen) : -ENOMEM;

	json_object_put(req);
	return rc;
}

/* ---- the API ---------------------------------------------------------------------- */

struct rdm_etcd *rdm_etcd_new(const char *endpoints, const struct rdm_etcd_tls *tls, int timeout_ms,
			      char *err, size_t errlen)
{
	struct rdm_etcd *e = calloc(1, sizeof(*e));
	char *list = strdup(endpoints ? endpoints : ""), *save = NULL;

	pthread_once(&curl_once, curl_init_once);
	if (!e || !list || !(e->curl = curl_easy_init())) {
		snprintf(err, errlen, "etcd: out of memory");
		goto fail;
	}
	for (char *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		if (e->n_ep == RDM_ETCD_MAX_ENDPOINTS) {
			snprintf(err, errlen, "etcd: more than %d endpoints",
				 RDM_ETCD_MAX_ENDPOINTS);
			goto fail;
		}
		if (strlen(s) > 255 || !strchr(s, ':') || strpbrk(s, "/?#@ ")) {
			snprintf(err, errlen, "etcd: endpoint '%.64s' is not HOST:PORT", s);
			goto fail;
		}
		if (!(e->ep[e->n_ep++] = strdup(s))) {
			snprintf(err, errlen, "etcd: out of memory");
			goto fail;
		}
	}
	if (!e->n_ep) {
		snprintf(err, errlen, "etcd: no endpoint (HOST:PORT[,HOST:PORT...])");
		goto fail;
	}
	e->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
	curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
	curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(e->timeout_ms / 2 + 1));
	curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, e);
	curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (tls) {
		e->tls = 1;
		curl_easy_setopt(e->curl, CURLOPT_CAINFO, tls->ca);
		curl_easy_setopt(e->curl, CURLOPT_SSLCERT, tls->cert);
		curl_easy_setopt(e->curl, CURLOPT_SSLKEY, tls->key);
		curl_easy_setopt(e->curl, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(e->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	}
	free(list);
	return e;
fail:
	free(list);
	rdm_etcd_free(e);
	return NULL;
}

void rdm_etcd_free(struct rdm_etcd *e)
{
	if (!e)
		return;
	if (e->curl)
		curl_easy_cleanup(e->curl);
	for (int i = 0; i < e->n_ep; i++)
		free(e->ep[i]);
	free(e->body);
	free(e);
}

const char *rdm_etcd_endpoint(const struct rdm_etcd *e)
{
	return e->ep[e->cur];
}

void rdm_etcd_kv_free(struct rdm_etcd_kv *kv)
{
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

/* The first of the kvs array of a range answer into *kv; -ENOENT when none. */
static int take_kv(struct json_object *r, struct rdm_etcd_kv *kv, char *err, size_t errlen)
{
	struct json_object *kvs, *first, *v;

	memset(kv, 0, sizeof(*kv));
	if (!json_object_object_get_ex(r, "kvs", &kvs) || !json_object_array_length(kvs))
		return -ENOENT;
	first = json_object_array_get_idx(kvs, 0);
	kv->create_rev = get_i64(first, "create_revision");
	kv->mod_rev = get_i64(first, "mod_revision");
	kv->lease = get_i64(first, "lease");
	kv->value = b64_decode(
	    json_object_object_get_ex(first, "value", &v) ? json_object_get_string(v) : "",
	    &kv->len);
	if (!kv->value) {
		snprintf(err, errlen, "etcd: a value that is not base64");
		return -EPROTO;
	}
	return 0;
}

int rdm_etcd_get(struct rdm_etcd *e, const char *key, struct rdm_etcd_kv *kv, int64_t *rev,
		 char *err, size_t errlen)
{
	struct json_object *req = json_object_new_object(), *ans;
	int rc;

	memset(kv, 0, sizeof(*kv));
	if (!req || add_b64(req, "key", key, strlen(key)) < 0) {
		json_object_put(req);
		return -ENOMEM;
	}
	rc = call_obj(e, "/v3/kv/range", req, &ans, err, errlen);
	if (rc)
		return rc;
	if (rev)
		*rev = header_rev(ans);
	rc = take_kv(ans, kv, err, errlen);
	if (rc == -ENOENT)
		snprintf(err, errlen, "etcd: no key %s", key);
	json_object_put(ans);
	return rc;
}

int rdm_etcd_txn(struct rdm_etcd *e, const struct rdm_etcd_cmp *cmp, int n_cmp,
		 const struct rdm_etcd_put *put, int n_put, int64_t *rev, char *err, size_t errlen)
{
	struct json_object *req = json_object_new_object(), *cs = json_object_new_array(),
			   *ps = json_object_new_array(), *ans, *ok;
	int rc = req && cs && ps ? 0 : -ENOMEM;

	for (int i = 0; !rc && i < n_cmp; i++) {
		struct json_object *c = json_object_new_object();

		rc = c ? add_b64(c, "key", cmp[i].key, strlen(cmp[i].key)) : -ENOMEM;
		if (!c)
			break;
		json_object_object_add(c, "target", json_object_new_string("CREATE"));
		json_object_object_add(c, "result", json_object_new_string("EQUAL"));
		add_i64(c, "create_revision", cmp[i].create_rev);
		json_object_array_add(cs, c);
	}
	for (int i = 0; !rc && i < n_put; i++) {
		struct json_object *op = json_object_new_object(), *p = json_object_new_object();

		if (!op || !p) {
			json_object_put(op);
			json_object_put(p);
			rc = -ENOMEM;
			break;
		}
		rc = add_b64(p, "key", put[i].key, strlen(put[i].key));
		if (!rc)
			rc = add_b64(p, "value", put[i].value, put[i].len);
		if (put[i].lease)
			add_i64(p, "lease", put[i].lease);
		json_object_object_add(op, "request_put", p);
		json_object_array_add(ps, op);
	}
	if (rc) {
		json_object_put(req);
		json_object_put(cs);
		json_object_put(ps);
		snprintf(err, errlen, "etcd: out of memory");
		return rc;
	}
	json_object_object_add(req, "compare", cs);
	json_object_object_add(req, "success", ps);
	rc = call_obj(e, "/v3/kv/txn", req, &ans, err, errlen);
	if (rc)
		return rc;
	/* proto3 leaves out a false "succeeded" */
	if (!json_object_object_get_ex(ans, "succeeded", &ok) || !json_object_get_boolean(ok)) {
		snprintf(err, errlen, "etcd: the transaction's compare failed");
		rc = -ECANCELED;
	} else if (rev) {
		*rev = header_rev(ans);
	}
	json_object_put(ans);
	return rc;
}

/* POSTs {"name": v} to a lease endpoint; the answer in *ans. */
static int lease_call(struct rdm_etcd *e, const char *path, const char *name, int64_t v,
		      struct json_object **ans, char *err, size_t errlen)
{
	struct json_object *req = json_object_new_object();

	if (!req)
		return -ENOMEM;
	add_i64(req, name, v);
	return call_obj(e, path, req, ans, err, errlen);
}

int rdm_etcd_grant(struct rdm_etcd *e, int ttl_s, int64_t *id, char *err, size_t errlen)
{
	struct json_object *ans;
	int rc = lease_call(e, "/v3/lease/grant", "TTL", ttl_s, &ans, err, errlen);

	if (rc)
		return rc;
	*id = get_i64(ans, "ID");
	if (!*id) {
		snprintf(err, errlen, "etcd: no lease granted");
		rc = -EPROTO;
	}
	json_object_put(ans);
	return rc;
}

int rdm_etcd_keepalive(struct rdm_etcd *e, int64_t id, int64_t *ttl_s, char *err, size_t errlen)
{
	struct json_object *ans, *res;
	int rc = lease_call(e, "/v3/lease/keepalive", "ID", id, &ans, err, errlen);

	if (rc)
		return rc;
	/* The gateway streams: one result for our one request. No TTL: the lease is gone. */
	*ttl_s = json_object_object_get_ex(ans, "result", &res) ? get_i64(res, "TTL") : 0;
	if (*ttl_s <= 0) {
		snprintf(err, errlen, "etcd: lease %" PRIx64 " expired or was revoked",
			 (uint64_t)id);
		rc = -ENOENT;
	}
	json_object_put(ans);
	return rc;
}

int rdm_etcd_revoke(struct rdm_etcd *e, int64_t id, char *err, size_t errlen)
{
	struct json_object *ans;
	int rc = lease_call(e, "/v3/lease/revoke", "ID", id, &ans, err, errlen);

	if (!rc)
		json_object_put(ans);
	return rc;
}

int rdm_etcd_health(struct rdm_etcd *e, char *out, size_t len)
{
	int cur = e->cur, ok = 0;
	size_t at = 0;

	out[0] = 0;
	for (int i = 0; i < e->n_ep && at < len; i++) {
		struct json_object *req = json_object_new_object(), *ans = NULL, *h;
		const char *s = req ? json_object_to_json_string(req) : NULL;
		char err[256];
		int rc = s ? call_at(e, i, 1, "/v3/maintenance/status", s, &ans, err, sizeof(err))
			   : -ENOMEM;

		json_object_put(req);
		if (!rc) {
			int64_t me = json_object_object_get_ex(ans, "header", &h)
					 ? get_i64(h, "member_id")
					 : 0;

			ok++;
			at += (size_t)snprintf(
			    out + at, len - at, "%s ok%s, revision %" PRId64 "\n", e->ep[i],
			    me && me == get_i64(ans, "leader") ? ", leader" : "", header_rev(ans));
			json_object_put(ans);
		} else {
			at += (size_t)snprintf(out + at, len - at, "%s unreachable: %s\n", e->ep[i],
					       rc == -ENOMEM ? "out of memory" : err);
		}
	}
	e->cur = cur; /* asking each member is not a reason to change members */
	return ok;
}
