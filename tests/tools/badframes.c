/* badframes: connects to a node's data address like an upstream hop and sends one
 * malformed frame of each kind the decoder knows, length-prefixed as on the wire, then
 * closes. The node must count each under its own drop reason and carry on.
 *   badframes ADDR:PORT */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"
#include "transport/frame.h"

static int send_frame(int fd, const uint8_t *f, uint32_t len)
{
	uint8_t p[4] = {len >> 24, len >> 16, len >> 8, len};

	return write(fd, p, 4) == 4 && write(fd, f, len) == (ssize_t)len ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct rdm_addr a;
	uint8_t good[64], f[64];
	struct rdm_frame fr;
	int fd, len, sent = 0;

	if (argc != 2 || rdm_addr_parse(&a, argv[1]) < 0) {
		fprintf(stderr, "usage: badframes ADDR:PORT\n");
		return 2;
	}
	fd = socket(a.ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a.ss, a.len) < 0) {
		perror("badframes: connect");
		return 1;
	}
	rdm_frame_init(&fr, 1, 255, RDM_NSH_NP_IPV4);
	fr.present = RDM_F_FLOW_ID;
	fr.flow_id = 1;
	len = rdm_frame_encode_hdr(&fr, good, sizeof(good)); /* 20 bytes: base + one TLV */

	/* short */
	sent += send_frame(fd, good, 5) == 0;
	/* bad_version */
	memcpy(f, good, (size_t)len);
	f[0] |= 0x80;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* bad_md_type */
	memcpy(f, good, (size_t)len);
	f[2] = (f[2] & 0xF0) | 1;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* hdr_zero_len */
	memcpy(f, good, (size_t)len);
	f[1] &= 0xC0;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* hdr_overrun: the header claims 10 words of a 20-byte frame */
	memcpy(f, good, (size_t)len);
	f[1] = (f[1] & 0xC0) | 10;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* tlv_overrun: the TLV claims 200 bytes */
	memcpy(f, good, (size_t)len);
	f[11] = 200;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* tlv_bad_value: a flow id of 4 bytes */
	memcpy(f, good, (size_t)len);
	f[11] = 4;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* tlv_critical: an unknown critical type of ours */
	memcpy(f, good, (size_t)len);
	f[10] = 0xFF;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	close(fd);
	printf("badframes: sent %d malformed frames to %s\n", sent, argv[1]);
	return sent == 8 ? 0 : 1;
}
