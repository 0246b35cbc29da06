/* Certificate generation for a rack (see certs.h), with OpenSSL 3. */
#include "lib/certs.h"
#include "lib/certs_int.h"
#include "lib/err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

int rdm_certs_name_ok(const char *name)
{
	size_t len;

	if (!name)
		return 0;
	len = strlen(name);
	if (len < 1 || len > RDM_CERTS_NAME_MAX || !strcmp(name, "ca"))
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		int alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '.' && c != '-' && c != '_')))
			return 0;
	}
	return 1;
}

/* 1 when path exists (whatever it is), 0 when it does not, -errno when stat fails
 * otherwise (a permission problem must not read as "absent" and get overwritten). */
static int exists(const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

int rdm_certs__write_atomic(const char *path, mode_t mode, int replace,
			    int (*write_fn)(BIO *b, void *obj), void *obj, char *err, size_t errlen)
{
	char tmp[PATH_MAX], why[256];
	BIO *b = NULL;
	FILE *f = NULL;
	int fd, rc;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp))
		return rdm_errf(err, errlen, -ENAMETOOLONG, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return rdm_errf(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
	f = fdopen(fd, "w");
	if (!f) {
		rc = rdm_errf(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		close(fd);
		goto out_unlink;
	}
	b = BIO_new_fp(f, BIO_NOCLOSE);
	if (!b) {
		rc = rdm_errf(err, errlen, -ENOMEM, "%s: %s", tmp,
			      rdm_ossl_reason(why, sizeof(why)));
		goto out_close;
	}
	if (!write_fn(b, obj) || BIO_flush(b) != 1) {
		rc = rdm_errf(err, errlen, -EIO, "%s: %s", tmp, rdm_ossl_reason(why, sizeof(why)));
		goto out_close;
	}
	BIO_free(b);
	b = NULL;
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		rc = rdm_errf(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		goto out_close;
	}
	if (fclose(f) != 0) {
		f = NULL;
		rc = rdm_errf(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	f = NULL;
	if ((replace ? rename(tmp, path) : link(tmp, path)) != 0) {
		rc = rdm_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
		goto out_unlink;
	}
	if (!replace)
		unlink(tmp);
	return 0;

out_close:
	BIO_free(b);
	if (f)
		fclose(f);
out_unlink:
	unlink(tmp);
	return rc;
}

int rdm_certs__write_key(BIO *b, void *key)
{
	return PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
}

int rdm_certs__write_cert(BIO *b, void *x)
{
	return PEM_write_bio_X509(b, x);
}

/* Adds one v3 extension written in openssl.cnf syntax; 0 or -EINVAL. */
static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok;

	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -EINVAL;
}

/* A random positive 127-bit serial, as RFC 5280 asks for unpredictable serials. */
static int set_serial(X509 *x)
{
	unsigned char raw[16];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	raw[0] &= 0x7f;
	raw[0] |= 0x40; /* never zero, always 16 bytes long */
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (!bn)
		return -ENOMEM;
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -ENOMEM;
}

X509 *rdm_certs__make_cert(EVP_PKEY *key, const char *cn, const char *unit, long from_s, long to_s,
			   X509 *ca, EVP_PKEY *ca_key)
{
	X509 *x = X509_new();
	X509_NAME *name = NULL;
	X509V3_CTX ctx;
	char san[RDM_CERTS_NAME_MAX + 8];

	if (!x || !X509_set_version(x, 2) || set_serial(x) < 0)
		goto fail;
	if (!X509_gmtime_adj(X509_getm_notBefore(x), from_s) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), to_s))
		goto fail;
	if (!X509_set_pubkey(x, key))
		goto fail;
	name = X509_NAME_new();
	if (!name || !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
						 (const unsigned char *)cn, -1, -1, 0))
		goto fail;
	if (unit && !X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8,
						(const unsigned char *)unit, -1, -1, 0))
		goto fail;
	if (!X509_set_subject_name(x, name))
		goto fail;
	if (!X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : name))
		goto fail;

	X509V3_set_ctx(&ctx, ca ? ca : x, x, NULL, NULL, 0);
	if (!ca) {
		if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
		    add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") ||
		    add_ext(x, &ctx, NID_subject_key_identifier, "hash"))
			goto fail;
	} else {
		snprintf(san, sizeof(san), "DNS:%s", cn);
		if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
		    add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") ||
		    add_ext(x, &ctx, NID_ext_key_usage, "serverAuth,clientAuth") ||
		    add_ext(x, &ctx, NID_subject_alt_name, san) ||
		    add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
		    add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always"))
			goto fail;
	}
	if (!X509_sign(x, ca ? ca_key : key, EVP_sha256()))
		goto fail;
	X509_NAME_free(name);
	return x;

fail:
	X509_NAME_free(name);
	X509_free(x);
	return NULL;
}

/* Reads one PEM object from path with read_fn; NULL with err set on failure. */
static void *read_pem(const char *path, void *(*read_fn)(BIO *b), const char *what, char *err,
		      size_t errlen)
{
	char why[256];
	BIO *b = BIO_new_file(path, "r");
	void *obj;

	if (!b) {
		rdm_errf(err, errlen, -EIO, "%s: %s", path, strerror(errno ? errno : EIO));
		ERR_clear_error();
		return NULL;
	}
	obj = read_fn(b);
	BIO_free(b);
	if (!obj)
		rdm_errf(err, errlen, -EINVAL, "%s: not a PEM %s (%s)", path, what,
			 rdm_ossl_reason(why, sizeof(why)));
	return obj;
}

static void *read_x509(BIO *b)
{
	return PEM_read_bio_X509(b, NULL, NULL, NULL);
}

static void *read_key(BIO *b)
{
	return PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
}

int rdm_certs__load_ca(const char *ca_pem, const char *ca_key, X509 **ca, EVP_PKEY **key, char *err,
		       size_t errlen)
{
	*ca = read_pem(ca_pem, read_x509, "certificate", err, errlen);
	if (!*ca)
		return -EINVAL;
	*key = read_pem(ca_key, read_key, "private key", err, errlen);
	if (!*key)
		goto fail;
	if (X509_check_private_key(*ca, *key) != 1) {
		ERR_clear_error();
		rdm_errf(err, errlen, -EINVAL, "%s does not hold the key of %s", ca_key, ca_pem);
		goto fail;
	}
	if (X509_check_ca(*ca) != 1) {
		rdm_errf(err, errlen, -EINVAL, "%s is not a CA certificate", ca_pem);
		goto fail;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(*ca)) <= 0) {
		rdm_errf(err, errlen, -EINVAL,
			 "%s has expired; move ca.pem and ca.key away to make a new CA", ca_pem);
		goto fail;
	}
	return 0;

fail:
	X509_free(*ca);
	EVP_PKEY_free(*key);
	*ca = NULL;
	*key = NULL;
	return -EINVAL;
}

/* Makes a new CA and writes it to ca_pem and ca_key (key first: a ca.pem never exists
 * without its key). 0 or -errno with err set. */
static int new_ca(const char *ca_pem, const char *ca_key, int days, X509 **ca, EVP_PKEY **key,
		  char *err, size_t errlen)
{
	unsigned char rnd[4];
	char cn[32], why[256];
	long ca_days = days > RDM_CERTS_CA_DAYS ? days : RDM_CERTS_CA_DAYS;
	int rc;

	*ca = NULL;
	*key = EVP_EC_gen("P-256");
	if (!*key || RAND_bytes(rnd, sizeof(rnd)) != 1)
		return rdm_errf(err, errlen, -EIO, "making the CA key: %s",
				rdm_ossl_reason(why, sizeof(why)));
	snprintf(cn, sizeof(cn), "rdmesh CA %02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
	*ca = rdm_certs__make_cert(*key, cn, NULL, -CERTS_SKEW_S, ca_days * 86400, NULL, NULL);
	if (!*ca) {
		rc = rdm_errf(err, errlen, -EIO, "making the CA certificate: %s",
			      rdm_ossl_reason(why, sizeof(why)));
		goto fail;
	}
	rc = rdm_certs__write_atomic(ca_key, 0600, 0, rdm_certs__write_key, *key, err, errlen);
	if (rc < 0)
		goto fail;
	rc = rdm_certs__write_atomic(ca_pem, 0644, 0, rdm_certs__write_cert, *ca, err, errlen);
	if (rc < 0) {
		unlink(ca_key); /* ours, just made: a lone key would block the next run */
		goto fail;
	}
	return 0;

fail:
	X509_free(*ca);
	EVP_PKEY_free(*key);
	*ca = NULL;
	*key = NULL;
	return rc;
}

int rdm_certs_path(char *out, size_t cap, const char *dir, const char *file, const char *ext,
		   char *err, size_t errlen)
{
	if ((size_t)snprintf(out, cap, "%s/%s%s", dir, file, ext) >= cap)
		return rdm_errf(err, errlen, -ENAMETOOLONG, "%s/%s%s: path too long", dir, file,
				ext);
	return 0;
}

/* Whether the pair (pem, key) exists: 1 both, 0 neither; a half pair or a stat failure
 * is -errno with err set. */
static int pair_state(const char *pem, const char *key, char *err, size_t errlen)
{
	int p = exists(pem), k = exists(key);

	if (p < 0)
		return rdm_errf(err, errlen, p, "%s: %s", pem, strerror(-p));
	if (k < 0)
		return rdm_errf(err, errlen, k, "%s: %s", key, strerror(-k));
	if (p != k)
		return rdm_errf(err, errlen, -EEXIST,
				"%s exists without %s: remove it, or restore the missing file",
				p ? pem : key, p ? key : pem);
	return p;
}

int rdm_certs_make(const char *dir, const char *const *names, int n, int days, char *err,
		   size_t errlen)
{
	char ca_pem[PATH_MAX], ca_key[PATH_MAX], pem[PATH_MAX], keyp[PATH_MAX], why[256];
	X509 *ca = NULL;
	EVP_PKEY *ca_pkey = NULL;
	int rc, issued = 0;

	if (!dir || !*dir || n < 0 || (n > 0 && !names))
		return rdm_errf(err, errlen, -EINVAL, "no directory or names given");
	if (days == 0 || days > RDM_CERTS_MAX_DAYS || days < -RDM_CERTS_MAX_DAYS)
		return rdm_errf(err, errlen, -EINVAL, "days %d is not in 1..%d (or negative)", days,
				RDM_CERTS_MAX_DAYS);
	/* Every name is checked before anything is written: a typo in the last name must
	 * not leave the first ones made. */
	for (int i = 0; i < n; i++) {
		if (!rdm_certs_name_ok(names[i]))
			return rdm_errf(
			    err, errlen, -EINVAL,
			    "bad certificate name '%s': 1..%d of [A-Za-z0-9._-], starting with "
			    "a letter or digit, and not 'ca'",
			    names[i] ? names[i] : "(null)", RDM_CERTS_NAME_MAX);
		for (int j = 0; j < i; j++)
			if (!strcmp(names[i], names[j]))
				return rdm_errf(err, errlen, -EINVAL, "name '%s' given twice",
						names[i]);
		if ((rc = rdm_certs_path(pem, sizeof(pem), dir, names[i], ".pem", err, errlen)) <
			0 ||
		    (rc = rdm_certs_path(keyp, sizeof(keyp), dir, names[i], ".key", err, errlen)) <
			0 ||
		    (rc = pair_state(pem, keyp, err, errlen)) < 0)
			return rc;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return rdm_errf(err, errlen, -errno, "%s: %s", dir, strerror(errno));

	if ((rc = rdm_certs_path(ca_pem, sizeof(ca_pem), dir, "ca", ".pem", err, errlen)) < 0 ||
	    (rc = rdm_certs_path(ca_key, sizeof(ca_key), dir, "ca", ".key", err, errlen)) < 0)
		return rc;
	rc = pair_state(ca_pem, ca_key, err, errlen);
	if (rc < 0)
		return rc;
	rc = rc ? rdm_certs__load_ca(ca_pem, ca_key, &ca, &ca_pkey, err, errlen)
		: new_ca(ca_pem, ca_key, days, &ca, &ca_pkey, err, errlen);
	if (rc < 0)
		return rc;

	for (int i = 0; i < n; i++) {
		long from = days > 0 ? -CERTS_SKEW_S : 2L * days * 86400;
		long to = (long)days * 86400;
		EVP_PKEY *key;
		X509 *x;

		rdm_certs_path(pem, sizeof(pem), dir, names[i], ".pem", NULL, 0);
		rdm_certs_path(keyp, sizeof(keyp), dir, names[i], ".key", NULL, 0);
		rc = pair_state(pem, keyp, err, errlen);
		if (rc < 0)
			goto out;
		if (rc == 1)
			continue; /* kept: see certs.h */
		key = EVP_EC_gen("P-256");
		x = key ? rdm_certs__make_cert(key, names[i], NULL, from, to, ca, ca_pkey) : NULL;
		if (!x) {
			rc = rdm_errf(err, errlen, -EIO, "%s: making the certificate: %s", names[i],
				      rdm_ossl_reason(why, sizeof(why)));
			EVP_PKEY_free(key);
			goto out;
		}
		rc = rdm_certs__write_atomic(keyp, 0600, 0, rdm_certs__write_key, key, err, errlen);
		if (rc == 0) {
			rc = rdm_certs__write_atomic(pem, 0644, 0, rdm_certs__write_cert, x, err,
						     errlen);
			if (rc < 0)
				unlink(keyp); /* ours, just made, as in new_ca */
		}
		X509_free(x);
		EVP_PKEY_free(key);
		if (rc < 0)
			goto out;
		issued++;
	}
	rc = issued;
out:
	X509_free(ca);
	EVP_PKEY_free(ca_pkey);
	return rc;
}
