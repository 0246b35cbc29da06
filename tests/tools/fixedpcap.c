/* fixedpcap: writes COUNT UDP/IPv4 packets of exactly SIZE bytes (IP header included)
 * spread round-robin over FLOWS flows, with valid checksums: the benchmark's traffic,
 * where every frame must have the same size.
 *   fixedpcap SIZE COUNT FLOWS OUT.pcap */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/pcapio.h"

static uint16_t csum(const uint8_t *p, size_t n, uint32_t sum)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xFFFF) + (sum >> 16);
	return (uint16_t)~sum;
}

int main(int argc, char **argv)
{
	uint8_t b[9000];
	char err[256];
	struct rdm_pcap_out *out;
	unsigned size, count, flows;

	if (argc != 5 || (size = (unsigned)atoi(argv[1])) < 28 || size > sizeof(b) ||
	    !(count = (unsigned)atoi(argv[2])) || !(flows = (unsigned)atoi(argv[3]))) {
		fprintf(stderr, "usage: fixedpcap SIZE(28..9000) COUNT FLOWS OUT.pcap\n");
		return 2;
	}
	out = rdm_pcap_open_out(argv[4], RDM_PCAP_IP, err, sizeof(err));
	if (!out) {
		fprintf(stderr, "fixedpcap: %s\n", err);
		return 1;
	}
	for (unsigned i = 0; i < count; i++) {
		unsigned f = i % flows, ulen = size - 20;
		uint32_t sum = 0;

		memset(b, 0, size);
		b[0] = 0x45;
		b[2] = (uint8_t)(size >> 8);
		b[3] = (uint8_t)size;
		b[4] = (uint8_t)(i >> 8);
		b[5] = (uint8_t)i;
		b[8] = 64;
		b[9] = 17;
		b[12] = 10, b[13] = 1, b[14] = (uint8_t)(f >> 8), b[15] = (uint8_t)f;
		b[16] = 10, b[17] = 2, b[18] = 0, b[19] = 1;
		{
			uint16_t c = csum(b, 20, 0);

			b[10] = (uint8_t)(c >> 8);
			b[11] = (uint8_t)c;
		}
		b[20] = (uint8_t)((40000 + f) >> 8), b[21] = (uint8_t)(40000 + f);
		b[22] = 0x13, b[23] = 0x88; /* 5000 */
		b[24] = (uint8_t)(ulen >> 8), b[25] = (uint8_t)ulen;
		for (unsigned k = 28; k < size; k++)
			b[k] = (uint8_t)(k * 7 + i);
		/* pseudo-header: src, dst, proto, UDP length */
		for (int k = 12; k < 20; k += 2)
			sum += (uint32_t)b[k] << 8 | b[k + 1];
		sum += 17 + ulen;
		{
			uint16_t c = csum(b + 20, ulen, sum);

			if (!c)
				c = 0xFFFF;
			b[26] = (uint8_t)(c >> 8);
			b[27] = (uint8_t)c;
		}
		if (rdm_pcap_write(out, b, size, (uint64_t)i * 1000000ull) < 0) {
			fprintf(stderr, "fixedpcap: write failed\n");
			return 1;
		}
	}
	rdm_pcap_close_out(out);
	return 0;
}
