/* The generator's TLS 1.3 content: the ClientHello with SNI, the server's first flight,
 * the client's Finished and first request, and the application_data records after. */
#include "node/gen_int.h"

#include <string.h>

/* A TLS 1.3 ClientHello as a current browser sends it: SNI, ALPN, supported_versions,
 * key_share (x25519), and padding to 512 bytes as BoringSSL does. */
void rdm_gen__tls_ch(struct flow *f, struct wbuf *w)
{
	static const uint16_t suites[] = {0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f,
					  0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
					  0xc014, 0x009c, 0x009d, 0x002f, 0x0035};
	static const uint16_t sigalgs[] = {0x0403, 0x0804, 0x0401, 0x0503,
					   0x0805, 0x0501, 0x0806, 0x0601};
	uint32_t rec, hs, exts, e, l;

	rdm_gen__w8(w, 0x16); /* handshake record */
	rdm_gen__w16(w, 0x0301);
	rec = rdm_gen__w_open(w, 2);
	rdm_gen__w8(w, 0x01); /* client_hello */
	hs = rdm_gen__w_open(w, 3);
	rdm_gen__w16(w, 0x0303);
	rdm_gen__wrnd(w, rdm_gen__stream_key(f, RS_CH_RANDOM), 32);
	rdm_gen__w8(w, 32); /* a session id, for middlebox compatibility mode */
	rdm_gen__wrnd(w, rdm_gen__stream_key(f, RS_SESSION_ID), 32);
	rdm_gen__w16(w, sizeof(suites));
	for (unsigned i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		rdm_gen__w16(w, suites[i]);
	rdm_gen__w8(w, 1);
	rdm_gen__w8(w, 0); /* null compression */
	exts = rdm_gen__w_open(w, 2);

	rdm_gen__w16(w, 0x0000); /* server_name */
	e = rdm_gen__w_open(w, 2);
	l = rdm_gen__w_open(w, 2);
	rdm_gen__w8(w, 0); /* host_name */
	{
		uint32_t n = rdm_gen__w_open(w, 2);

		rdm_gen__w_host(w, f);
		rdm_gen__w_close(w, n, 2);
	}
	rdm_gen__w_close(w, l, 2);
	rdm_gen__w_close(w, e, 2);

	rdm_gen__w16(w, 0x0017); /* extended_master_secret */
	rdm_gen__w16(w, 0);
	rdm_gen__w16(w, 0xff01); /* renegotiation_info */
	rdm_gen__w16(w, 1);
	rdm_gen__w8(w, 0);
	rdm_gen__w16(w, 0x000a); /* supported_groups: x25519, secp256r1, secp384r1 */
	rdm_gen__w16(w, 8);
	rdm_gen__w16(w, 6);
	rdm_gen__w16(w, 0x001d);
	rdm_gen__w16(w, 0x0017);
	rdm_gen__w16(w, 0x0018);
	rdm_gen__w16(w, 0x000b); /* ec_point_formats: uncompressed */
	rdm_gen__w16(w, 2);
	rdm_gen__w8(w, 1);
	rdm_gen__w8(w, 0);
	rdm_gen__w16(w, 0x0023); /* session_ticket */
	rdm_gen__w16(w, 0);
	rdm_gen__w16(w, 0x0010); /* ALPN: h2, http/1.1 */
	e = rdm_gen__w_open(w, 2);
	l = rdm_gen__w_open(w, 2);
	rdm_gen__w8(w, 2);
	rdm_gen__wmem(w, "h2", 2);
	rdm_gen__w8(w, 8);
	rdm_gen__wmem(w, "http/1.1", 8);
	rdm_gen__w_close(w, l, 2);
	rdm_gen__w_close(w, e, 2);
	rdm_gen__w16(w, 0x0005); /* status_request: OCSP */
	rdm_gen__w16(w, 5);
	rdm_gen__w8(w, 1);
	rdm_gen__w32(w, 0);
	rdm_gen__w16(w, 0x000d); /* signature_algorithms */
	rdm_gen__w16(w, 2 + sizeof(sigalgs));
	rdm_gen__w16(w, sizeof(sigalgs));
	for (unsigned i = 0; i < sizeof(sigalgs) / sizeof(sigalgs[0]); i++)
		rdm_gen__w16(w, sigalgs[i]);
	rdm_gen__w16(w, 0x0012); /* signed_certificate_timestamp */
	rdm_gen__w16(w, 0);
	rdm_gen__w16(w, 0x0033); /* key_share: one x25519 share */
	rdm_gen__w16(w, 2 + 4 + 32);
	rdm_gen__w16(w, 4 + 32);
	rdm_gen__w16(w, 0x001d);
	rdm_gen__w16(w, 32);
	rdm_gen__wrnd(w, rdm_gen__stream_key(f, RS_CLIENT_KEY), 32);
	rdm_gen__w16(w, 0x002d); /* psk_key_exchange_modes: psk_dhe_ke */
	rdm_gen__w16(w, 2);
	rdm_gen__w8(w, 1);
	rdm_gen__w8(w, 1);
	rdm_gen__w16(w, 0x002b); /* supported_versions: TLS 1.3, TLS 1.2 */
	rdm_gen__w16(w, 5);
	rdm_gen__w8(w, 4);
	rdm_gen__w16(w, 0x0304);
	rdm_gen__w16(w, 0x0303);
	rdm_gen__w16(w, 0x001b); /* compress_certificate: brotli */
	rdm_gen__w16(w, 3);
	rdm_gen__w8(w, 2);
	rdm_gen__w16(w, 0x0002);

	/* BoringSSL pads a hello of 256..511 bytes to 512 (RFC 7685) to dodge F5 bugs. */
	l = w->n - hs + 1; /* handshake message length so far, with its 4-byte header */
	if (!w->ovf && l > 0xff && l < 0x200) {
		uint32_t pad = 0x200 - l;

		pad = pad >= 5 ? pad - 4 : 1;
		rdm_gen__w16(w, 0x0015);
		rdm_gen__w16(w, pad);
		if (rdm_gen__w_take(w, pad))
			memset(w->p + w->n - pad, 0, pad);
	}
	rdm_gen__w_close(w, exts, 2);
	rdm_gen__w_close(w, hs, 3);
	rdm_gen__w_close(w, rec, 2);
}

/* ServerHello (TLS 1.3: supported_versions and key_share), ChangeCipherSpec, and the
 * header of the record holding the encrypted rest of the server's handshake. */
void rdm_gen__tls_sflight_head(struct flow *f, struct wbuf *w)
{
	uint32_t rec, hs, exts;

	rdm_gen__w8(w, 0x16);
	rdm_gen__w16(w, 0x0303);
	rec = rdm_gen__w_open(w, 2);
	rdm_gen__w8(w, 0x02); /* server_hello */
	hs = rdm_gen__w_open(w, 3);
	rdm_gen__w16(w, 0x0303);
	rdm_gen__wrnd(w, rdm_gen__stream_key(f, RS_SH_RANDOM), 32);
	rdm_gen__w8(w, 32);
	rdm_gen__wrnd(w, rdm_gen__stream_key(f, RS_SESSION_ID), 32); /* echoes the client's */
	rdm_gen__w16(w, 0x1301);				     /* TLS_AES_128_GCM_SHA256 */
	rdm_gen__w8(w, 0);
	exts = rdm_gen__w_open(w, 2);
	rdm_gen__w16(w, 0x002b);
	rdm_gen__w16(w, 2);
	rdm_gen__w16(w, 0x0304);
	rdm_gen__w16(w, 0x0033);
	rdm_gen__w16(w, 2 + 2 + 32);
	rdm_gen__w16(w, 0x001d);
	rdm_gen__w16(w, 32);
	rdm_gen__wrnd(w, rdm_gen__stream_key(f, RS_SERVER_KEY), 32);
	rdm_gen__w_close(w, exts, 2);
	rdm_gen__w_close(w, hs, 3);
	rdm_gen__w_close(w, rec, 2);
	/* change_cipher_spec, then application_data: EncryptedExtensions .. Finished */
	rdm_gen__wmem(w, "\x14\x03\x03\x00\x01\x01", 6);
	rdm_gen__w8(w, 0x17);
	rdm_gen__w16(w, 0x0303);
	rdm_gen__w16(w, f->tls_e);
}

/* The client's second flight: ChangeCipherSpec, Finished (53 bytes of ciphertext for
 * SHA-256), then its first request. */
void rdm_gen__tls_cfin(struct flow *f, struct wbuf *w)
{
	uint64_t k = rdm_gen__stream_key(f, RS_CFIN);
	uint8_t *p;

	rdm_gen__wmem(w, "\x14\x03\x03\x00\x01\x01", 6);
	rdm_gen__w8(w, 0x17);
	rdm_gen__w16(w, 0x0303);
	rdm_gen__w16(w, 53);
	p = rdm_gen__w_take(w, 53);
	if (p)
		rdm_gen__rnd_fill(k, 0, p, 53);
	rdm_gen__w8(w, 0x17);
	rdm_gen__w16(w, 0x0303);
	rdm_gen__w16(w, f->tls_rq);
	p = rdm_gen__w_take(w, f->tls_rq);
	if (p)
		rdm_gen__rnd_fill(k, 53, p, f->tls_rq);
}

/* Bytes [off, off + n) of a stream of full-size application_data records totalling len. */
void rdm_gen__tls_records_fill(const struct flow *f, uint64_t len, uint64_t off, uint8_t *dst,
			       size_t n)
{
	uint64_t key = rdm_gen__stream_key(f, RS_RESP);

	while (n) {
		uint64_t rec = off / TLS_REC_MAX, at = off % TLS_REC_MAX;
		uint64_t rlen = len - rec * TLS_REC_MAX;
		size_t k;

		if (rlen > TLS_REC_MAX)
			rlen = TLS_REC_MAX;
		if (at < 5) {
			uint8_t h[5] = {0x17, 0x03, 0x03, (uint8_t)((rlen - 5) >> 8),
					(uint8_t)(rlen - 5)};

			*dst = h[at];
			k = 1;
		} else {
			k = (size_t)(rlen - at) < n ? (size_t)(rlen - at) : n;
			rdm_gen__rnd_fill(key, off, dst, k);
		}
		dst += k;
		off += k;
		n -= k;
	}
}
