/* Private to lib/certs*.c: what making a rack's certificates (certs.c) and renewing one
 * node's over the control channel (certs_renew.c) share. */
#ifndef RDM_CERTS_INT_H
#define RDM_CERTS_INT_H

#include <sys/types.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* Lets a certificate start an hour early, so hosts whose clocks are a little behind
 * the one that made it still accept it. */
#define CERTS_SKEW_S 3600

/* Writes what write_fn puts into a BIO to path, atomically: a temporary file in the same
 * directory created with mode, then link(2) onto path, which fails with EEXIST rather
 * than replace a file that appeared meanwhile; with replace, rename(2) onto it (a reader
 * sees the old file or the new one, never a part). Returns 0 or -errno with err set. */
int rdm_certs__write_atomic(const char *path, mode_t mode, int replace,
			    int (*write_fn)(BIO *b, void *obj), void *obj, char *err,
			    size_t errlen);
/* write_fn for a private key (PKCS#8 PEM) and for a certificate (PEM). */
int rdm_certs__write_key(BIO *b, void *key);
int rdm_certs__write_cert(BIO *b, void *x);

/* A certificate for key with subject CN=cn (and OU=unit when unit is not NULL), valid
 * from now+from_s to now+to_s, signed by ca_key as ca (ca NULL: self-signed, a CA; else a
 * leaf naming cn as a DNS subjectAltName, for TLS server and client). Returns it, or
 * NULL. */
X509 *rdm_certs__make_cert(EVP_PKEY *key, const char *cn, const char *unit, long from_s, long to_s,
			   X509 *ca, EVP_PKEY *ca_key);

/* Loads a CA (ca_pem, ca_key) and checks it can sign: the key matches, it is a CA, and it
 * has not expired. 0 or -errno with err set. */
int rdm_certs__load_ca(const char *ca_pem, const char *ca_key, X509 **ca, EVP_PKEY **key, char *err,
		       size_t errlen);

#endif
