/* chaincheck: verifies a chain run from the outside. It reads the capture the ingress
 * replayed and the frames the egress wrote (Ethernet + NSH), and checks that every frame
 * that arrived carries its packet byte for byte, that each flow kept its order, that the
 * state written upstream (flow key, flow id, sequence) is intact downstream, and that
 * every hop stamped its timestamp. It then compares the loss it sees with the loss the
 * egress counted, which must be equal.
 *
 *   chaincheck --in IN.pcap --frames FRAMES.pcap --egress-stats FILE --hops 1,2,3
 *              [--ip OUT.pcap] [--after SEQ] [--count N]
 * A hop may list replicas, "1,21|22|23,3": each frame must have passed one of them, and
 * every frame of a flow the same one (so each flow was inspected by exactly one replica).
 * Frames of different flows may then arrive in any order; each flow's order still holds.
 * --after: every packet with a sequence number >= SEQ must have arrived.
 * --count: the ingress replayed only the first N packets of IN.
 * --loss-via ID: packets may be missing, but only from flows that passed node ID (a
 *   replica on a node that died), which may then move on to another replica once:
 *   every flow with a gap must show ID among its hops;
 *   flows none of whose packets arrived are counted, and with --maglev NAMES (the
 *   upstream's replicas, in next-list order) and --via-name NAME (node ID's replica name)
 *   each must be one the upstream's Maglev table gives to NAME, and so may a flow that
 *   lost packets there and arrived through another replica while NAME was moving. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/config.h"
#include "node/maglev.h"
#include "node/pcapio.h"
#include "lib/pkt.h"
#include "transport/frame.h"
#include "transport/framectx.h"

struct pkt {
	uint8_t *data;
	uint32_t len;
	int seen;
};

static int fails;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			if (fails++ < 20) {                                                        \
				fprintf(stderr, "chaincheck: ");                                   \
				fprintf(stderr, __VA_ARGS__);                                      \
				fputc('\n', stderr);                                               \
			}                                                                          \
		}                                                                                  \
	} while (0)

static uint64_t stat_get(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	char line[256], k[128];
	uint64_t v;

	if (!f) {
		fprintf(stderr, "chaincheck: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%127s %" SCNu64, k, &v) == 2 && !strcmp(k, key)) {
			fclose(f);
			return v;
		}
	}
	fclose(f);
	fprintf(stderr, "chaincheck: %s: no key %s\n", path, key);
	exit(2);
}

/* Per-flow last sequence seen and the nodes that stamped it, in a small open-addressing
 * table. */
struct flow_last {
	uint64_t id, last;
	int used, moved;
	uint32_t hop[RDM_MAX_HOPS];
};

#define MAX_ALTS 16

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"in", required_argument, NULL, 'i'},
	    {"frames", required_argument, NULL, 'f'},
	    {"ip", required_argument, NULL, 'o'},
	    {"egress-stats", required_argument, NULL, 'e'},
	    {"hops", required_argument, NULL, 'h'},
	    {"after", required_argument, NULL, 'a'},
	    {"count", required_argument, NULL, 'n'},
	    {"loss-via", required_argument, NULL, 'l'},
	    {"maglev", required_argument, NULL, 'm'},
	    {"via-name", required_argument, NULL, 'v'},
	    {NULL, 0, NULL, 0},
	};
	const char *in = NULL, *frames = NULL, *ip = NULL, *estats = NULL, *hops = NULL;
	uint64_t after = UINT64_MAX, count = UINT64_MAX, n_in = 0, cap_in = 0, n_frames = 0,
		 missing = 0, flows = 0;
	uint32_t hop_ids[RDM_MAX_HOPS][MAX_ALTS];
	int n_alts[RDM_MAX_HOPS] = {0}, n_hop_ids = 0, replicas = 0, c;
	uint64_t per_node[RDM_MAX_HOPS][MAX_ALTS] = {{0}};
	struct pkt *pk = NULL;
	struct flow_last *fl;
	struct rdm_ctx_rx *ctx;
	uint32_t fl_cap = 1u << 20;
	char err[PCAP_ERRBUF_SIZE + 256];
	struct rdm_pcap_in *pin;
	const uint8_t *p;
	int len;
	pcap_t *pc;
	struct pcap_pkthdr *h;
	const u_char *d;
	uint64_t prev_seq = 0;
	int have_prev = 0;
	uint32_t loss_via = 0;
	const char *maglev = NULL, *via_name = NULL;
	const char *mg_names[RDM_MAX_NEXT];
	int mg_n = 0, mg_via = -1;
	struct rdm_maglev *mg = NULL;
	char mg_buf[1024];
	uint64_t lossy_via = 0, lossy_whole = 0, moved_off = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			in = optarg;
			break;
		case 'f':
			frames = optarg;
			break;
		case 'o':
			ip = optarg;
			break;
		case 'e':
			estats = optarg;
			break;
		case 'h':
			hops = optarg;
			break;
		case 'a':
			after = strtoull(optarg, NULL, 10);
			break;
		case 'n':
			count = strtoull(optarg, NULL, 10);
			break;
		case 'l':
			loss_via = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'm':
			maglev = optarg;
			break;
		case 'v':
			via_name = optarg;
			break;
		default:
			return 2;
		}
	}
	if (!in || !frames || !estats || !hops) {
		fprintf(stderr, "usage: chaincheck --in IN --frames FRAMES --egress-stats F --hops "
				"1,2,3 [--ip OUT] [--after SEQ]\n");
		return 2;
	}
	{
		char *s = strdup(hops);

		for (char *tok = strtok(s, ","); tok && n_hop_ids < RDM_MAX_HOPS;
		     tok = strtok(NULL, ",")) {
			for (char *a = tok; a && n_alts[n_hop_ids] < MAX_ALTS; a = strchr(a, '|')) {
				a += *a == '|';
				hop_ids[n_hop_ids][n_alts[n_hop_ids]++] =
				    (uint32_t)strtoul(a, NULL, 10);
			}
			replicas |= n_alts[n_hop_ids] > 1;
			n_hop_ids++;
		}
		free(s);
	}

	/* The input, indexed by sequence number (the ingress numbers packets as it reads). */
	pin = rdm_pcap_open_in(in, err, sizeof(err));
	if (!pin) {
		fprintf(stderr, "chaincheck: %s\n", err);
		return 2;
	}
	while (n_in < count && (len = rdm_pcap_next(pin, &p)) > 0) {
		if (n_in == cap_in) {
			cap_in = cap_in ? cap_in * 2 : 4096;
			pk = realloc(pk, cap_in * sizeof(*pk));
		}
		pk[n_in].data = malloc((size_t)len);
		memcpy(pk[n_in].data, p, (size_t)len);
		pk[n_in].len = (uint32_t)len;
		pk[n_in].seen = 0;
		n_in++;
	}
	rdm_pcap_close_in(pin);

	fl = calloc(fl_cap, sizeof(*fl));
	pc = pcap_open_offline(frames, err);
	if (!pc) {
		fprintf(stderr, "chaincheck: %s\n", err);
		return 2;
	}
	/* The capture is one link's frames: their flow contexts are one connection's. */
	ctx = rdm_ctx_rx_new(NULL);
	while (pcap_next_ex(pc, &h, &d) == 1) {
		struct rdm_frame f;
		struct rdm_flow_key k;
		int rc;

		rdm_ctx_rx_release(ctx);
		CHECK(h->caplen == h->len && h->caplen > 14 && d[12] == 0x89 && d[13] == 0x4F,
		      "frame %" PRIu64 ": not a whole Ethernet/NSH record", n_frames + 1);
		if (h->caplen <= 14)
			continue;
		rc = rdm_ctx_decode(ctx, &f, d + 14, h->caplen - 14);
		if (rc == 1)
			continue; /* a flow's state, ahead of its frame */
		n_frames++;
		CHECK(rc == 0, "frame %" PRIu64 ": decode: %s", n_frames, rdm_frame_strerror(rc));
		if (rc)
			continue;
		CHECK((f.present & (RDM_F_SEQ | RDM_F_FLOW_KEY | RDM_F_FLOW_ID | RDM_F_HOPS)) ==
			  (RDM_F_SEQ | RDM_F_FLOW_KEY | RDM_F_FLOW_ID | RDM_F_HOPS),
		      "frame %" PRIu64 ": state missing (present 0x%x)", n_frames, f.present);
		if (!(f.present & RDM_F_SEQ) || f.seq >= n_in) {
			CHECK(0, "frame %" PRIu64 ": sequence out of range", n_frames);
			continue;
		}
		CHECK(!pk[f.seq].seen, "seq %" PRIu64 ": delivered twice", f.seq);
		pk[f.seq].seen = 1;
		CHECK(replicas || !have_prev || f.seq > prev_seq,
		      "seq %" PRIu64 " after %" PRIu64 ": reordered", f.seq, prev_seq);
		prev_seq = f.seq;
		have_prev = 1;
		CHECK(f.pkt_len == pk[f.seq].len && !memcmp(f.pkt, pk[f.seq].data, f.pkt_len),
		      "seq %" PRIu64 ": packet bytes differ", f.seq);
		/* State written at ingress, seen at egress: the key must match the packet. */
		CHECK(rdm_pkt_flow_key(f.pkt, f.pkt_len, &k) == 0 && !memcmp(&k, &f.key, sizeof(k)),
		      "seq %" PRIu64 ": flow key TLV does not match the packet", f.seq);
		CHECK(f.flow_id == rdm_flow_hash(&f.key), "seq %" PRIu64 ": flow id mismatch",
		      f.seq);
		CHECK(f.n_hops == n_hop_ids, "seq %" PRIu64 ": %d hop stamps, want %d", f.seq,
		      f.n_hops, n_hop_ids);
		for (int i = 0; i < f.n_hops && i < n_hop_ids; i++) {
			int a = 0;

			while (a < n_alts[i] && f.hops[i].node != hop_ids[i][a])
				a++;
			CHECK(a < n_alts[i], "seq %" PRIu64 ": hop %d stamped by %u", f.seq, i,
			      f.hops[i].node);
			CHECK(f.hops[i].ns > 0 && (i == 0 || f.hops[i].ns >= f.hops[i - 1].ns),
			      "seq %" PRIu64 ": hop %d timestamp goes back", f.seq, i);
		}
		/* Per-flow order. */
		for (uint32_t j = (uint32_t)f.flow_id & (fl_cap - 1);; j = (j + 1) & (fl_cap - 1)) {
			if (!fl[j].used) {
				fl[j].used = 1;
				fl[j].id = f.flow_id;
				fl[j].last = f.seq;
				for (int i = 0; i < f.n_hops && i < n_hop_ids; i++) {
					fl[j].hop[i] = f.hops[i].node;
					for (int a = 0; a < n_alts[i]; a++)
						per_node[i][a] += hop_ids[i][a] == f.hops[i].node;
				}
				flows++;
				break;
			}
			if (fl[j].id == f.flow_id) {
				CHECK(f.seq > fl[j].last, "flow %016" PRIx64 ": out of order",
				      f.flow_id);
				fl[j].last = f.seq;
				for (int i = 0; i < f.n_hops && i < n_hop_ids; i++) {
					/* Off a dead replica (--loss-via) a flow may move, once. */
					if (loss_via && fl[j].hop[i] == loss_via && !fl[j].moved &&
					    f.hops[i].node != loss_via) {
						fl[j].moved = 1;
						moved_off++;
						continue;
					}
					CHECK(f.hops[i].node == fl[j].hop[i] ||
						  (fl[j].moved && fl[j].hop[i] == loss_via),
					      "flow %016" PRIx64
					      ": hop %d went through %u, then %u",
					      f.flow_id, i, fl[j].hop[i], f.hops[i].node);
				}
				break;
			}
		}
	}
	pcap_close(pc);

	/* The IP capture must hold the same packets in the same order. */
	if (ip) {
		uint64_t n_ip = 0, s = 0;

		pin = rdm_pcap_open_in(ip, err, sizeof(err));
		if (!pin) {
			fprintf(stderr, "chaincheck: %s\n", err);
			return 2;
		}
		while ((len = rdm_pcap_next(pin, &p)) > 0) {
			while (s < n_in && !pk[s].seen)
				s++;
			CHECK(s < n_in && (uint32_t)len == pk[s].len &&
				  !memcmp(p, pk[s].data, (size_t)len),
			      "ip capture packet %" PRIu64 " differs", n_ip);
			s++;
			n_ip++;
		}
		rdm_pcap_close_in(pin);
		CHECK(n_ip == n_frames, "ip capture has %" PRIu64 " packets, frames %" PRIu64, n_ip,
		      n_frames);
	}

	if (maglev) {
		snprintf(mg_buf, sizeof(mg_buf), "%s", maglev);
		for (char *sv = NULL, *t = strtok_r(mg_buf, ",", &sv); t && mg_n < RDM_MAX_NEXT;
		     t = strtok_r(NULL, ",", &sv)) {
			if (via_name && !strcmp(t, via_name))
				mg_via = mg_n;
			mg_names[mg_n++] = t;
		}
		mg = rdm_maglev_new(mg_names, mg_n, 0);
		if (!mg || mg_via < 0) {
			fprintf(stderr, "chaincheck: --maglev needs replica names and --via-name "
					"one of them\n");
			return 2;
		}
	}
	for (uint64_t s = 0; s < n_in; s++) {
		if (!pk[s].seen && loss_via) {
			struct rdm_flow_key k;
			uint64_t id;
			uint32_t j;

			CHECK(rdm_pkt_flow_key(pk[s].data, pk[s].len, &k) == 0,
			      "seq %" PRIu64 ": lost, and no flow key", s);
			id = rdm_flow_hash(&k);
			for (j = (uint32_t)id & (fl_cap - 1); fl[j].used && fl[j].id != id;
			     j = (j + 1) & (fl_cap - 1)) {
			}
			if (!fl[j].used) {
				lossy_whole++;
				CHECK(!mg || rdm_maglev_lookup(mg, id) == mg_via,
				      "seq %" PRIu64 ": lost from flow %016" PRIx64
				      " that the table gives "
				      "to %s, not %s",
				      s, id, mg_names[rdm_maglev_lookup(mg, id)], via_name);
			} else {
				int via = 0;

				for (int i = 0; i < n_hop_ids; i++)
					via |= fl[j].hop[i] == loss_via;
				/* A flow of the dead replica may have lost its first packets there
				 * and gone on through another while the replica was being moved. */
				via |= mg && rdm_maglev_lookup(mg, id) == mg_via;
				CHECK(
				    via,
				    "seq %" PRIu64 ": lost from flow %016" PRIx64
				    " that neither passed node %u nor is given to it by the table",
				    s, id, loss_via);
				lossy_via++;
			}
		}
		if (!pk[s].seen) {
			missing++;
			CHECK(s < after,
			      "seq %" PRIu64 " was sent after the reconnect (at %" PRIu64
			      ") but never arrived",
			      s, after);
		}
	}
	{
		uint64_t e_pk = stat_get(estats, "egress_packets");
		uint64_t e_lost = stat_get(estats, "egress_lost");
		uint64_t e_reord = stat_get(estats, "egress_reordered");

		CHECK(e_pk == n_frames, "egress counted %" PRIu64 " packets, frames show %" PRIu64,
		      e_pk, n_frames);
		CHECK(e_lost == missing, "egress counted %" PRIu64 " lost, %" PRIu64 " are missing",
		      e_lost, missing);
		CHECK(replicas || e_reord == 0, "egress counted %" PRIu64 " reordered", e_reord);
	}
	printf("chaincheck: input %" PRIu64 " packets; arrived %" PRIu64 " in %" PRIu64
	       " flows; missing %" PRIu64 "; %s\n",
	       n_in, n_frames, flows, missing, fails ? "FAILED" : "all checks hold");
	if (loss_via)
		printf("chaincheck: missing packets via node %u: %" PRIu64
		       "; from flows none of whose "
		       "packets arrived: %" PRIu64 "%s; flows that moved off it: %" PRIu64 "\n",
		       loss_via, lossy_via, lossy_whole,
		       mg ? ", each a flow the upstream's table gives to the same replica" : "",
		       moved_off);
	for (int i = 0; i < n_hop_ids; i++) {
		if (n_alts[i] < 2)
			continue;
		printf("chaincheck: hop %d flows per replica:", i);
		for (int a = 0; a < n_alts[i]; a++)
			printf(" %u=%" PRIu64, hop_ids[i][a], per_node[i][a]);
		printf("\n");
	}
	for (uint64_t s = 0; s < n_in; s++)
		free(pk[s].data);
	free(pk);
	free(fl);
	rdm_maglev_free(mg);
	return fails ? 1 : 0;
}
