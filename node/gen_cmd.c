/* rdmesh gen: writes a generated capture. */
#include "node/commands.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/gen.h"
#include "node/pcapio.h"
#include "lib/pkt.h"

/* Captures start at 2024-01-01T00:00:00Z, so a seed always gives the same file. */
#define GEN_CMD_EPOCH_NS (1704067200ull * 1000000000ull)
#define GEN_CMD_RATE	 10000

static void gen_usage(FILE *to)
{
	fprintf(to,
		"usage: rdmesh gen --flows N --packets N [--seed S] --out FILE.pcap "
		"[--rate PPS]\n"
		"  --flows N     number of flows (HTTP, TLS and DNS)\n"
		"  --packets N   total packets, at least 2 per flow\n"
		"  --seed S      PRNG seed (default 1)\n"
		"  --out FILE    capture to write (raw IP link type)\n"
		"  --rate PPS    packets per second of capture time (default %d)\n",
		GEN_CMD_RATE);
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	return 0;
}

/* A set of flow hashes (open addressing), to count the distinct flows written. */
struct hset {
	uint64_t *slot; /* 0 marks an empty slot; a hash of 0 is kept aside */
	size_t cap, n;
	int has_zero;
};

static int hset_add(struct hset *s, uint64_t h)
{
	size_t i;

	if (h == 0) {
		s->has_zero = 1;
		return 0;
	}
	if ((s->n + 1) * 4 > s->cap * 3) {
		size_t ncap = s->cap ? s->cap * 2 : 1024;
		uint64_t *ns = calloc(ncap, sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		for (size_t j = 0; j < s->cap; j++) {
			if (!s->slot[j])
				continue;
			for (i = s->slot[j] & (ncap - 1); ns[i]; i = (i + 1) & (ncap - 1))
				;
			ns[i] = s->slot[j];
		}
		free(s->slot);
		s->slot = ns;
		s->cap = ncap;
	}
	for (i = h & (s->cap - 1); s->slot[i]; i = (i + 1) & (s->cap - 1)) {
		if (s->slot[i] == h)
			return 0;
	}
	s->slot[i] = h;
	s->n++;
	return 0;
}

int rdm_cmd_gen(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"flows", required_argument, NULL, 'f'},
	    {"packets", required_argument, NULL, 'n'},
	    {"seed", required_argument, NULL, 's'},
	    {"out", required_argument, NULL, 'o'},
	    {"rate", required_argument, NULL, 'r'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct rdm_gen_conf conf = {.seed = 1};
	uint64_t flows = 0, rate = GEN_CMD_RATE, n = 0;
	const char *path = NULL;
	struct rdm_pcap_out *out = NULL;
	struct rdm_gen *g = NULL;
	struct hset seen = {0};
	uint8_t buf[2048];
	char err[256];
	int c, rc = 1;

	optind = 0; /* glibc: start over, whatever parsed argv before */
	while ((c = getopt_long(argc, argv, "f:n:s:o:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			if (parse_u64(optarg, &flows) || flows < 1 || flows > UINT32_MAX) {
				fprintf(stderr, "gen: bad --flows '%s'\n", optarg);
				goto usage;
			}
			break;
		case 'n':
			if (parse_u64(optarg, &conf.packets) || conf.packets < 1) {
				fprintf(stderr, "gen: bad --packets '%s'\n", optarg);
				goto usage;
			}
			break;
		case 's':
			if (parse_u64(optarg, &conf.seed)) {
				fprintf(stderr, "gen: bad --seed '%s'\n", optarg);
				goto usage;
			}
			break;
		case 'o':
			path = optarg;
			break;
		case 'r':
			if (parse_u64(optarg, &rate) || rate < 1) {
				fprintf(stderr, "gen: bad --rate '%s'\n", optarg);
				goto usage;
			}
			break;
		case 'h':
			gen_usage(stdout);
			return 0;
		default:
			goto usage;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "gen: unexpected argument '%s'\n", argv[optind]);
		goto usage;
	}
	if (!flows || !conf.packets || !path) {
		fprintf(stderr, "gen: --flows, --packets and --out are required\n");
		goto usage;
	}
	conf.flows = (uint32_t)flows;
	if (conf.packets < 2 * flows) {
		fprintf(stderr, "gen: --packets must be at least 2 per flow (%" PRIu64 ")\n",
			2 * flows);
		goto usage;
	}

	g = rdm_gen_new(&conf);
	if (!g) {
		fprintf(stderr, "gen: %s\n", strerror(errno));
		return 1;
	}
	out = rdm_pcap_open_out(path, RDM_PCAP_IP, err, sizeof(err));
	if (!out) {
		fprintf(stderr, "gen: %s\n", err);
		goto done;
	}
	for (;;) {
		struct rdm_flow_key k;
		/* n / rate seconds, exactly, without drift */
		uint64_t ts =
		    GEN_CMD_EPOCH_NS + (uint64_t)((unsigned __int128)n * 1000000000u / rate);
		int len = rdm_gen_next(g, buf, sizeof(buf)), wrc;

		if (len == 0)
			break;
		if (len < 0) {
			fprintf(stderr, "gen: generator: %s\n", strerror(-len));
			goto done;
		}
		wrc = rdm_pcap_write(out, buf, (uint32_t)len, ts);
		if (wrc) {
			fprintf(stderr, "gen: %s: %s\n", path, strerror(-wrc));
			goto done;
		}
		if (rdm_pkt_flow_key(buf, (uint32_t)len, &k) == 0 &&
		    hset_add(&seen, rdm_flow_hash(&k))) {
			fprintf(stderr, "gen: out of memory\n");
			goto done;
		}
		n++;
	}
	rdm_pcap_close_out(out);
	out = NULL;
	printf("wrote %" PRIu64 " packets in %zu flows to %s\n", n, seen.n + seen.has_zero, path);
	rc = 0;
done:
	rdm_pcap_close_out(out);
	rdm_gen_free(g);
	free(seen.slot);
	return rc;
usage:
	gen_usage(stderr);
	return 2;
}
