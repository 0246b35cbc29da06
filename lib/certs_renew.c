/* Renewing one node's certificate over the control channel (see certs.h): the node's new
 * key never leaves it. The node makes a key and a request for its own name, the
 * orchestrator (which holds the CA) signs it for the name the channel proved, and the
 * node checks what came back before it replaces its files. */
#include "lib/certs.h"
#include "lib/certs_int.h"
#include "lib/err.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* The PEM that write_fn puts into a memory BIO, as a malloc'd string. NULL on failure. */
static char *to_pem(int (*write_fn)(BIO *b, void *obj), void *obj)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL, *out = NULL;
	long n;

	if (b && write_fn(b, obj) && (n = BIO_get_mem_data(b, &p)) > 0 &&
	    (out = malloc((size_t)n + 1))) {
		memcpy(out, p, (size_t)n);
		out[n] = '\0';
	}
	BIO_free(b);
	return out;
}

static int write_req(BIO *b, void *req)
{
	return PEM_write_bio_X509_REQ(b, req);
}

int rdm_certs_request(const char *name, char **key_pem, char **csr_pem, char *err, size_t errlen)
{
	EVP_PKEY *key = NULL;
	X509_REQ *req = NULL;
	X509_NAME *subj = NULL;
	char why[256];
	int rc = -EIO;

	*key_pem = *csr_pem = NULL;
	if (!rdm_certs_name_ok(name))
		return rdm_errf(err, errlen, -EINVAL, "bad certificate name '%s'",
				name ? name : "");
	key = EVP_EC_gen("P-256");
	req = X509_REQ_new();
	subj = X509_NAME_new();
	if (!key || !req || !subj ||
	    !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1,
					-1, 0) ||
	    !X509_REQ_set_subject_name(req, subj) || !X509_REQ_set_pubkey(req, key) ||
	    !X509_REQ_sign(req, key, EVP_sha256()))
		goto out;
	*key_pem = to_pem(rdm_certs__write_key, key);
	*csr_pem = to_pem(write_req, req);
	if (*key_pem && *csr_pem)
		rc = 0;
out:
	if (rc < 0) {
		rdm_errf(err, errlen, rc, "%s: making a key and a certificate request: %s", name,
			 rdm_ossl_reason(why, sizeof(why)));
		if (*key_pem)
			OPENSSL_cleanse(*key_pem, strlen(*key_pem));
		free(*key_pem);
		free(*csr_pem);
		*key_pem = *csr_pem = NULL;
	}
	X509_NAME_free(subj);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return rc;
}

/* The subject CN of a request, into out; 0 or -1. */
static int req_cn(X509_REQ *req, char *out, size_t cap)
{
	int n = X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, out,
					  (int)cap);

	return n > 0 && (size_t)n < cap && strlen(out) == (size_t)n ? 0 : -1;
}

int rdm_certs_sign(const char *dir, const char *name, const char *csr, size_t len, int days,
		   char **cert_pem, char *err, size_t errlen)
{
	if (days < 1 || days > RDM_CERTS_MAX_DAYS)
		return rdm_errf(err, errlen, -EINVAL, "days %d is not in 1..%d", days,
				RDM_CERTS_MAX_DAYS);
	return rdm_certs_sign_for(dir, name, NULL, csr, len, (long)days * 86400, cert_pem, err,
				  errlen);
}

int rdm_certs_sign_for(const char *dir, const char *name, const char *unit, const char *csr,
		       size_t len, long seconds, char **cert_pem, char *err, size_t errlen)
{
	char ca_pem[PATH_MAX], ca_key[PATH_MAX], cn[RDM_CERTS_NAME_MAX + 1], why[256];
	BIO *b = len <= INT_MAX ? BIO_new_mem_buf(csr, (int)len) : NULL;
	X509_REQ *req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
	EVP_PKEY *pub = req ? X509_REQ_get0_pubkey(req) : NULL, *ca_pkey = NULL;
	X509 *ca = NULL, *x = NULL;
	int rc;

	*cert_pem = NULL;
	BIO_free(b);
	if (seconds < 60 || seconds > (long)RDM_CERTS_MAX_DAYS * 86400)
		rc = rdm_errf(err, errlen, -EINVAL, "a lifetime of %ld s is not in 60 s..%d days",
			      seconds, RDM_CERTS_MAX_DAYS);
	else if (!req || !pub)
		rc = rdm_errf(err, errlen, -EINVAL, "%s: not a PEM certificate request (%s)", name,
			      rdm_ossl_reason(why, sizeof(why)));
	else if (X509_REQ_verify(req, pub) != 1)
		rc = rdm_errf(err, errlen, -EINVAL,
			      "%s: the request's signature does not hold (not made with its key)",
			      name);
	else if (req_cn(req, cn, sizeof(cn)) < 0 || strcmp(cn, name))
		rc = rdm_errf(err, errlen, -EACCES,
			      "%s: the request names '%s': a node may renew only its own name",
			      name, req_cn(req, cn, sizeof(cn)) < 0 ? "(none)" : cn);
	else if ((rc = rdm_certs_path(ca_pem, sizeof(ca_pem), dir, "ca", ".pem", err, errlen)) ==
		     0 &&
		 (rc = rdm_certs_path(ca_key, sizeof(ca_key), dir, "ca", ".key", err, errlen)) ==
		     0 &&
		 (rc = rdm_certs__load_ca(ca_pem, ca_key, &ca, &ca_pkey, err, errlen)) == 0) {
		x = rdm_certs__make_cert(pub, name, unit, -CERTS_SKEW_S, seconds, ca, ca_pkey);
		*cert_pem = x ? to_pem(rdm_certs__write_cert, x) : NULL;
		if (!*cert_pem)
			rc = rdm_errf(err, errlen, -EIO, "%s: signing: %s", name,
				      rdm_ossl_reason(why, sizeof(why)));
	}
	ERR_clear_error();
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(ca_pkey);
	X509_REQ_free(req);
	return rc;
}

struct raw {
	const char *p;
	size_t n;
};

static int write_raw(BIO *b, void *obj)
{
	const struct raw *r = obj;

	return r->n <= INT_MAX && BIO_write(b, r->p, (int)r->n) == (int)r->n;
}

/* Whether cert chains to a CA of bundle (PEM). 0, or -1 with why. */
static int chains_to(X509 *cert, const char *bundle, size_t len, char *why, size_t whylen)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	BIO *b = len <= INT_MAX ? BIO_new_mem_buf(bundle, (int)len) : NULL;
	int n = 0, ok = 0;
	X509 *ca;

	while (b && st && (ca = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		n += X509_STORE_add_cert(st, ca) == 1;
		X509_free(ca);
	}
	ERR_clear_error();
	if (n && ctx && X509_STORE_CTX_init(ctx, st, cert, NULL) == 1)
		ok = X509_verify_cert(ctx) == 1;
	if (!ok)
		snprintf(why, whylen, "%s",
			 !n    ? "the CA bundle holds no certificate"
			 : ctx ? X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx))
			       : "out of memory");
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	BIO_free(b);
	return ok ? 0 : -1;
}

int rdm_certs_install(const char *dir, const char *name, const char *key_pem, const char *cert_pem,
		      size_t cert_len, const char *ca_bundle, size_t ca_len, char *err,
		      size_t errlen)
{
	char pem[PATH_MAX], keyp[PATH_MAX], ca[PATH_MAX], why[256];
	BIO *kb = BIO_new_mem_buf(key_pem, -1);
	BIO *cb = cert_len <= INT_MAX ? BIO_new_mem_buf(cert_pem, (int)cert_len) : NULL;
	EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	struct raw bundle = {ca_bundle, ca_len};
	int rc;

	BIO_free(kb);
	BIO_free(cb);
	if ((rc = rdm_certs_path(pem, sizeof(pem), dir, name, ".pem", err, errlen)) < 0 ||
	    (rc = rdm_certs_path(keyp, sizeof(keyp), dir, name, ".key", err, errlen)) < 0 ||
	    (rc = rdm_certs_path(ca, sizeof(ca), dir, "ca", ".pem", err, errlen)) < 0)
		goto out;
	if (!key || !x)
		rc = rdm_errf(err, errlen, -EINVAL, "%s: not a PEM %s", name,
			      key ? "certificate" : "private key");
	else if (X509_check_private_key(x, key) != 1)
		rc = rdm_errf(err, errlen, -EINVAL, "%s: the certificate is not for our new key",
			      name);
	else if (X509_check_host(x, name, 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1)
		rc = rdm_errf(err, errlen, -EINVAL, "%s: the certificate names someone else", name);
	else if (chains_to(x, ca_bundle, ca_len, why, sizeof(why)) < 0)
		rc = rdm_errf(err, errlen, -EINVAL, "%s: the certificate does not verify: %s", name,
			      why);
	/* Key first: a certificate is never on disk without the key it was made for, and
	 * each file is replaced whole. */
	else if ((rc = rdm_certs__write_atomic(keyp, 0600, 1, rdm_certs__write_key, key, err,
					       errlen)) == 0 &&
		 (rc = rdm_certs__write_atomic(pem, 0644, 1, rdm_certs__write_cert, x, err,
					       errlen)) == 0)
		rc = rdm_certs__write_atomic(ca, 0644, 1, write_raw, &bundle, err, errlen);
out:
	ERR_clear_error();
	EVP_PKEY_free(key);
	X509_free(x);
	return rc;
}

int64_t rdm_certs_not_after(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct tm tm;
	int64_t t = 0;
	FILE *f;
	X509 *x;

	if (rdm_certs_path(path, sizeof(path), dir, name, ".pem", NULL, 0) < 0 ||
	    !(f = fopen(path, "r")))
		return 0;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		t = (int64_t)timegm(&tm);
	X509_free(x);
	ERR_clear_error();
	return t;
}
