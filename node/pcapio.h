/* Reading and writing captures with libpcap. Readers hand out IP packets whatever the
 * link type (Ethernet with or without VLAN tags, Linux cooked v1/v2, raw IP, BSD
 * loopback); writers write raw IP (LINKTYPE_RAW) or whole rdmesh frames wrapped in
 * Ethernet with the NSH ethertype 0x894F, which Wireshark decodes. */
#ifndef RDM_PCAPIO_H
#define RDM_PCAPIO_H

#include <stdint.h>

struct rdm_pcap_in;
struct rdm_pcap_out;

/* NULL with a message in err on failure. */
struct rdm_pcap_in *rdm_pcap_open_in(const char *path, char *err, unsigned errlen);

/* Next IP packet: *pkt points into the reader's buffer until the next call. Returns its
 * length, 0 at the end, or a negative errno on a read error. Frames that carry no IP
 * packet are skipped and counted (rdm_pcap_in_skipped). */
int rdm_pcap_next(struct rdm_pcap_in *in, const uint8_t **pkt);
uint64_t rdm_pcap_in_skipped(const struct rdm_pcap_in *in);
void rdm_pcap_close_in(struct rdm_pcap_in *in);

enum rdm_pcap_kind { RDM_PCAP_IP = 0, RDM_PCAP_NSH };

struct rdm_pcap_out *rdm_pcap_open_out(const char *path, enum rdm_pcap_kind kind, char *err,
				       unsigned errlen);
/* Writes one record; ts_ns is the capture time. 0 or a negative errno. */
int rdm_pcap_write(struct rdm_pcap_out *out, const uint8_t *data, uint32_t len, uint64_t ts_ns);
/* Flushes and closes; accepts NULL. */
void rdm_pcap_close_out(struct rdm_pcap_out *out);

#endif
