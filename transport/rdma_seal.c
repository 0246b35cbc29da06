/* Encrypting an RDMA hop (opts.encrypt, on top of the binding of rdma_bind.c): every
 * message that carries frames is sealed with AES-256-GCM in its send slot just before it
 * is posted, and opened in its receive slot before any frame of it is looked at.
 *
 * Keys: one each way, HMAC-SHA256 of the binding's key (exported from the TLS 1.3
 * session that proved both ends) over a label naming the direction, so no two streams
 * share a key. Nonce: the count of sealed messages in that direction (RC delivers in
 * order and loses nothing, so both ends count alike); a message replayed, dropped,
 * reordered or changed fails its tag, and the connection ends there. The message's type
 * is the associated data. Credit and keepalive messages carry no payload and are not
 * sealed; the binding message is a MAC of its own. */
#include "transport/rdma_int.h"
#include "lib/byteorder.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

struct rdmx_seal {
	EVP_CIPHER_CTX *tx, *rx;
	uint64_t tx_n, rx_n; /* messages sealed and opened so far: the next nonce */
};

/* key = HMAC-SHA256(bind_key, label). */
static void derive(const uint8_t *bind_key, const char *label, uint8_t *key)
{
	unsigned int len = 32;

	HMAC(EVP_sha256(), bind_key, 32, (const unsigned char *)label, strlen(label), key, &len);
}

static EVP_CIPHER_CTX *cipher(const uint8_t *key, int enc)
{
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();

	if (x && EVP_CipherInit_ex(x, EVP_aes_256_gcm(), NULL, key, NULL, enc) != 1) {
		EVP_CIPHER_CTX_free(x);
		x = NULL;
	}
	return x;
}

int rdm_rdma__seal_start(struct rdmx_conn *c, const uint8_t *bind_key, int dialler)
{
	struct rdmx_seal *s = calloc(1, sizeof(*s));
	uint8_t d2l[32], l2d[32];

	rdm_rdma__seal_stop(c);
	if (!s)
		return -ENOMEM;
	derive(bind_key, "rdmesh rdma enc dialler to listener", d2l);
	derive(bind_key, "rdmesh rdma enc listener to dialler", l2d);
	s->tx = cipher(dialler ? d2l : l2d, 1);
	s->rx = cipher(dialler ? l2d : d2l, 0);
	OPENSSL_cleanse(d2l, sizeof(d2l));
	OPENSSL_cleanse(l2d, sizeof(l2d));
	c->seal = s;
	if (!s->tx || !s->rx) {
		rdm_rdma__seal_stop(c);
		return -ENOMEM;
	}
	return 0;
}

void rdm_rdma__seal_stop(struct rdmx_conn *c)
{
	if (!c->seal)
		return;
	EVP_CIPHER_CTX_free(c->seal->tx);
	EVP_CIPHER_CTX_free(c->seal->rx);
	free(c->seal);
	c->seal = NULL;
}

static void nonce(uint64_t n, uint8_t *iv)
{
	memset(iv, 0, 4);
	rdm_put_be64(iv + 4, n);
}

int rdm_rdma__seal(struct rdmx_conn *c, uint32_t type, uint8_t *b, uint32_t len)
{
	EVP_CIPHER_CTX *x = c->seal->tx;
	uint8_t iv[12], aad = (uint8_t)type;
	int out;

	nonce(c->seal->tx_n++, iv);
	if (EVP_EncryptInit_ex(x, NULL, NULL, NULL, iv) != 1 ||
	    EVP_EncryptUpdate(x, NULL, &out, &aad, 1) != 1 ||
	    (len && EVP_EncryptUpdate(x, b, &out, b, (int)len) != 1) ||
	    EVP_EncryptFinal_ex(x, b + len, &out) != 1 ||
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, RDMX_TAG, b + len) != 1)
		return -EIO;
	return 0;
}

int rdm_rdma__open(struct rdmx_conn *c, uint32_t type, uint8_t *b, uint32_t *len)
{
	EVP_CIPHER_CTX *x = c->seal->rx;
	uint8_t iv[12], aad = (uint8_t)type;
	uint32_t n;
	int out;

	if (*len < RDMX_TAG)
		return -EBADMSG;
	n = *len - RDMX_TAG;
	nonce(c->seal->rx_n++, iv);
	if (EVP_DecryptInit_ex(x, NULL, NULL, NULL, iv) != 1 ||
	    EVP_DecryptUpdate(x, NULL, &out, &aad, 1) != 1 ||
	    (n && EVP_DecryptUpdate(x, b, &out, b, (int)n) != 1) ||
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, RDMX_TAG, b + n) != 1 ||
	    EVP_DecryptFinal_ex(x, b + n, &out) != 1)
		return -EBADMSG;
	*len = n;
	return 0;
}
