/* Hand-built NSH headers for the malformed-frame tests (test_frame.c, test_rdma_flow.c): what
 * rdm_frame_encode would never write. */
#ifndef RDM_TESTS_RAW_H
#define RDM_TESTS_RAW_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Writes into buf a base header claiming `words` 32-bit words of header (version 0, MD
 * type 2, next protocol IPv4, TTL 63, SPI 1, SI 255) followed by tlen bytes of TLVs.
 * Returns the bytes written: 8 + tlen. */
static size_t raw(uint8_t *buf, unsigned words, const uint8_t *tlvs, size_t tlen)
{
	buf[0] = 0x0F; /* ttl high bits */
	buf[1] = (uint8_t)(0xC0 | (words & 0x3F));
	buf[2] = (uint8_t)(((words >> 6) & 0xF) << 4 | 2);
	buf[3] = 1;
	buf[4] = 0;
	buf[5] = 0;
	buf[6] = 1;
	buf[7] = 255;
	if (tlen)
		memcpy(buf + 8, tlvs, tlen);
	return 8 + tlen;
}

#endif
