/* Certificates for a rack's control channel: one CA, and one certificate per node and
 * for the orchestrator, each naming its holder (CN and a DNS subjectAltName).
 *
 * Keys are EC P-256 (ECDSA with SHA-256). TLS 1.3 makes ecdsa_secp256r1_sha256 a
 * mandatory-to-implement signature scheme (RFC 8446, 9.1) while Ed25519 is optional, so
 * every TLS 1.3 stack a user may bring (Go, Python, curl, Prometheus) takes these
 * certificates; OpenSSL 3.0's FIPS provider approves P-256 but not Ed25519. */
#ifndef RDM_CERTS_H
#define RDM_CERTS_H

#include <stddef.h>
#include <stdint.h>

#define RDM_CERTS_CA_DAYS  3650	 /* a new CA lives this long, or as long as its leaves */
#define RDM_CERTS_MAX_DAYS 36500 /* |days| above this is a typo, not a wish */
#define RDM_CERTS_NAME_MAX 63	 /* one DNS label's length: names are node names */

/* The rack folder's layout: dir/FILE.EXT into out (cap bytes), for dir/ca.pem,
 * dir/NAME.pem and dir/NAME.key. 0, or -ENAMETOOLONG with a reason in err (err may be
 * NULL). */
int rdm_certs_path(char *out, size_t cap, const char *dir, const char *file, const char *ext,
		   char *err, size_t errlen);

/* 1 when name can be a certificate holder: 1..63 characters of [A-Za-z0-9._-], starting
 * with a letter or digit, and not "ca" (dir/ca.pem is the CA). Else 0. */
int rdm_certs_name_ok(const char *name);

/* Makes dir (mode 0700) if it is missing (its parent must exist), then:
 *  - the CA: dir/ca.pem and dir/ca.key. When both exist they are loaded and reused, so a
 *    node added later is signed by the rack's CA; the key must match the certificate and
 *    the CA must not have expired. When neither exists a new self-signed CA is made
 *    ("rdmesh CA" plus 8 random hex digits as CN, so two racks' CAs are told apart),
 *    valid for max(RDM_CERTS_CA_DAYS, days) days. One without the other is an error.
 *  - for each of the n names: dir/NAME.pem and dir/NAME.key, signed by that CA, with
 *    NAME as CN and as a DNS subjectAltName, usable as TLS server and client. A name whose
 *    two files both exist is kept as it is (delete both to reissue); one file without
 *    the other is an error.
 * days is each new leaf's lifetime, 1..RDM_CERTS_MAX_DAYS. A negative days makes an
 * already-expired leaf, for tests: valid from 2*|days| to |days| days ago. 0 is an error.
 * Keys are PKCS#8 PEM, unencrypted, mode 0600; certificates mode 0644 less the umask.
 * Every file is written to a temporary name and renamed, so none is ever half written
 * and nothing existing is overwritten. Names are all checked before anything is made.
 * Returns how many leaf certificates were issued (0 when every name was kept), or
 * -errno with a one-line reason in err. */
int rdm_certs_make(const char *dir, const char *const *names, int n, int days, char *err,
		   size_t errlen);

/* Renewing one node's certificate over the control channel, its new key never leaving
 * the node (lib/certs_renew.c): the node makes a key and a request, the orchestrator
 * signs the request with the rack's CA for the name the channel proved, the node checks
 * the certificate and installs it.
 *
 * rdm_certs_request: a new P-256 key and a certificate request (CSR) for name, both PEM
 * strings the caller frees. 0, or -errno with a reason in err. */
int rdm_certs_request(const char *name, char **key_pem, char **csr_pem, char *err, size_t errlen);

/* Signs the request csr (PEM, len bytes) with dir's CA (dir/ca.pem, dir/ca.key) for name,
 * valid days (1..RDM_CERTS_MAX_DAYS) days: the request's signature must hold and its CN
 * must be name (-EACCES otherwise: a node renews only its own name); only its public key
 * is used. The certificate PEM (the caller frees it) in *cert_pem. 0, or -errno. */
int rdm_certs_sign(const char *dir, const char *name, const char *csr, size_t len, int days,
		   char **cert_pem, char *err, size_t errlen);

/* The same for a lifetime in seconds (60 s..RDM_CERTS_MAX_DAYS days), with the subject's
 * OU set to unit when it is not NULL: a pod's certificate binds it to its stage there
 * ("pod dpi"). */
int rdm_certs_sign_for(const char *dir, const char *name, const char *unit, const char *csr,
		       size_t len, long seconds, char **cert_pem, char *err, size_t errlen);

/* When dir/NAME.pem expires (unix seconds): 0 when it cannot be read. */
int64_t rdm_certs_not_after(const char *dir, const char *name);

/* Installs a renewed certificate for name in dir: cert_pem must be for key_pem, name
 * name, and verify against ca_bundle (PEM, one or more CAs). Then dir/NAME.key,
 * dir/NAME.pem and dir/ca.pem are each replaced atomically, the key first. 0, or -errno
 * with nothing replaced when a check fails. */
int rdm_certs_install(const char *dir, const char *name, const char *key_pem, const char *cert_pem,
		      size_t cert_len, const char *ca_bundle, size_t ca_len, char *err,
		      size_t errlen);

#endif
