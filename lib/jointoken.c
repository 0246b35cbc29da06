/* Join tokens (see jointoken.h): made and checked with a key derived from the CA's. */
#include "lib/jointoken.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "lib/certs.h"
#include "lib/err.h"
#include "lib/file.h"

#define KEY_LABEL "rdmesh join tokens v1"
#define MAC_BYTES 16

/* The tokens' key: SHA-256 of the label and the CA key's DER. 0 or -errno with err. */
static int token_key(const char *dir, unsigned char key[32], char *err, size_t errlen)
{
	char path[4096];
	unsigned char *der = NULL;
	EVP_PKEY *pk = NULL;
	unsigned int klen = 0;
	FILE *f;
	int n, rc;

	if ((rc = rdm_certs_path(path, sizeof(path), dir, "ca", ".key", err, errlen)) < 0)
		return rc;
	f = rdm_fopen_regular(path);
	if (!f)
		return rdm_errf(err, errlen, -errno, "%s: %s (join tokens need the CA's key)", path,
				strerror(errno));
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	n = pk ? i2d_PrivateKey(pk, &der) : -1;
	EVP_PKEY_free(pk);
	ERR_clear_error();
	if (n <= 0)
		return rdm_errf(err, errlen, -EINVAL, "%s: not a PEM private key", path);
	{
		EVP_MD_CTX *md = EVP_MD_CTX_new();

		rc = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
			     EVP_DigestUpdate(md, KEY_LABEL, sizeof(KEY_LABEL)) &&
			     EVP_DigestUpdate(md, der, (size_t)n) &&
			     EVP_DigestFinal_ex(md, key, &klen)
			 ? 0
			 : rdm_errf(err, errlen, -ENOMEM, "join tokens: hashing failed");
		EVP_MD_CTX_free(md);
	}
	OPENSSL_clear_free(der, (size_t)n);
	return rc;
}

/* The MAC of text (len bytes) under key, as hex, into hex[2 * MAC_BYTES + 1]. */
static void mac_hex(const unsigned char key[32], const char *text, size_t len, char *hex)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mlen = 0;

	HMAC(EVP_sha256(), key, 32, (const unsigned char *)text, len, mac, &mlen);
	for (int i = 0; i < MAC_BYTES; i++)
		sprintf(hex + 2 * i, "%02x", mac[i]);
	hex[2 * MAC_BYTES] = '\0';
}

int rdm_join_token_make(const char *dir, const char *stage, int uses, long ttl_s, char *out,
			size_t cap, char *err, size_t errlen)
{
	unsigned char key[32], id[RDM_JOIN_ID_LEN / 2];
	char body[RDM_JOIN_TOKEN_MAX], mac[2 * MAC_BYTES + 1];
	int n, rc;

	if (!stage || !rdm_certs_name_ok(stage) || strlen(stage) > 59)
		return rdm_errf(err, errlen, -EINVAL, "bad stage name '%s'", stage ? stage : "");
	if (uses != 0 && uses != 1)
		return rdm_errf(err, errlen, -EINVAL,
				"uses: 1 (one pod) or 0 (any number until it expires)");
	if (ttl_s < 1 || ttl_s > RDM_JOIN_TTL_MAX)
		return rdm_errf(err, errlen, -EINVAL, "ttl %ld s is not in 1..%d", ttl_s,
				RDM_JOIN_TTL_MAX);
	if (RAND_bytes(id, sizeof(id)) != 1)
		return rdm_errf(err, errlen, -EIO, "no random bytes for the token's id");
	if ((rc = token_key(dir, key, err, errlen)) < 0)
		return rc;
	n = snprintf(body, sizeof(body), "rdmj1:%s:%d:%" PRId64 ":", stage, uses,
		     (int64_t)time(NULL) + ttl_s);
	for (size_t i = 0; i < sizeof(id); i++)
		n += snprintf(body + n, sizeof(body) - (size_t)n, "%02x", id[i]);
	mac_hex(key, body, (size_t)n, mac);
	OPENSSL_cleanse(key, sizeof(key));
	if ((size_t)snprintf(out, cap, "%s:%s", body, mac) >= cap)
		return rdm_errf(err, errlen, -ENOSPC, "the token does not fit");
	return 0;
}

int rdm_join_token_check(const char *dir, const char *token, time_t now, struct rdm_join_token *t,
			 char *err, size_t errlen)
{
	char buf[RDM_JOIN_TOKEN_MAX + 1], mac[2 * MAC_BYTES + 1], *f[6], *s;
	unsigned char key[32];
	size_t len;
	int n = 0, rc, ok;

	memset(t, 0, sizeof(*t));
	while (token && isspace((unsigned char)*token))
		token++;
	len = token ? strlen(token) : 0;
	while (len && isspace((unsigned char)token[len - 1]))
		len--;
	if (!len)
		return rdm_errf(err, errlen, -EINVAL, "no join token");
	if (len > RDM_JOIN_TOKEN_MAX)
		return rdm_errf(err, errlen, -EINVAL, "not a join token (%zu bytes)", len);
	memcpy(buf, token, len);
	buf[len] = '\0';
	for (s = buf; n < 6; n++) {
		f[n] = s;
		s = strchr(s, ':');
		if (!s)
			break;
		*s++ = '\0';
	}
	if (n != 5 || s || strcmp(f[0], "rdmj1") || !rdm_certs_name_ok(f[1]) ||
	    strlen(f[1]) >= sizeof(t->stage) || (strcmp(f[2], "0") && strcmp(f[2], "1")) ||
	    strspn(f[3], "0123456789") != strlen(f[3]) || !f[3][0] || strlen(f[3]) > 12 ||
	    strlen(f[4]) != RDM_JOIN_ID_LEN ||
	    strspn(f[4], "0123456789abcdef") != RDM_JOIN_ID_LEN || strlen(f[5]) != 2 * MAC_BYTES)
		return rdm_errf(err, errlen, -EINVAL,
				"not a join token (rdmj1:STAGE:USES:EXPIRES:ID:MAC)");
	if ((rc = token_key(dir, key, err, errlen)) < 0)
		return rc;
	mac_hex(key, token, (size_t)(f[5] - buf - 1), mac);
	OPENSSL_cleanse(key, sizeof(key));
	ok = CRYPTO_memcmp(mac, f[5], 2 * MAC_BYTES) == 0;
	snprintf(t->stage, sizeof(t->stage), "%s", f[1]);
	t->uses = atoi(f[2]);
	t->expires = strtoll(f[3], NULL, 10);
	snprintf(t->id, sizeof(t->id), "%s", f[4]);
	if (!ok)
		return rdm_errf(
		    err, errlen, -EACCES,
		    "token %s: not signed by this rack's CA (forged, or another rack's)", t->id);
	if (t->expires <= (int64_t)now)
		return rdm_errf(err, errlen, -EACCES, "token %s expired %" PRId64 " s ago", t->id,
				(int64_t)now - t->expires);
	return 0;
}
