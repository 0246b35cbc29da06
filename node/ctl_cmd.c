/* rdmesh ctl: talks to the rack's control plane. So far one subcommand, certs, which
 * makes the rack's CA and certificates (orchestrator/certs.h). */
#include "node/commands.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "orchestrator/certs.h"

#define CTL_CERTS_DAYS 365

static void ctl_usage(FILE *to)
{
	fprintf(to,
		"usage: rdmesh ctl SUBCOMMAND [ARGS]\n"
		"subcommands:\n"
		"  certs --out DIR [--days N] NAME...\n"
		"                      make the rack's CA (DIR/ca.pem, DIR/ca.key; an existing\n"
		"                      one is reused) and a certificate and key for each NAME\n"
		"                      (DIR/NAME.pem, DIR/NAME.key), e.g. the orchestrator's\n"
		"                      and every node's\n");
}

static void certs_usage(FILE *to)
{
	fprintf(to,
		"usage: rdmesh ctl certs --out DIR [--days N] NAME...\n"
		"  --out DIR    where the files go (made, mode 0700, if missing)\n"
		"  --days N     lifetime of each new certificate (default %d; a negative N makes\n"
		"               one that expired N days ago, for tests)\n"
		"  NAME         a node or orchestrator name: the certificate's CN and DNS name\n"
		"An existing CA in DIR signs the new certificates; a NAME whose files exist is\n"
		"kept (delete DIR/NAME.pem and DIR/NAME.key to reissue). Keys are mode 0600.\n",
		CTL_CERTS_DAYS);
}

/* 1 when path exists, else 0 (for the report only: rdm_certs_make decides). */
static int present(const char *dir, const char *name, const char *ext)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s%s", dir, name, ext);
	return stat(path, &st) == 0;
}

static int cmd_certs(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"out", required_argument, NULL, 'o'},
	    {"days", required_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *out = NULL;
	long days = CTL_CERTS_DAYS;
	char err[512], *end;
	int c, n, rc, ca_existed, *kept;

	optind = 0; /* glibc: start over, whatever parsed argv before */
	while ((c = getopt_long(argc, argv, "o:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'd':
			errno = 0;
			days = strtol(optarg, &end, 10);
			if (errno || *end || !*optarg || days == 0 || days > RDM_CERTS_MAX_DAYS ||
			    days < -RDM_CERTS_MAX_DAYS) {
				fprintf(stderr,
					"ctl certs: bad --days '%s': a nonzero whole number of "
					"days, at most %d either way\n",
					optarg, RDM_CERTS_MAX_DAYS);
				return 2;
			}
			break;
		case 'h':
			certs_usage(stdout);
			return 0;
		default:
			certs_usage(stderr);
			return 2;
		}
	}
	n = argc - optind;
	if (!out || !*out || n < 1) {
		fprintf(stderr, "ctl certs: %s\n",
			!out || !*out ? "--out DIR is required" : "name at least one holder");
		certs_usage(stderr);
		return 2;
	}
	kept = calloc((size_t)n, sizeof(*kept));
	if (!kept) {
		fprintf(stderr, "ctl certs: out of memory\n");
		return 1;
	}
	ca_existed = present(out, "ca", ".pem");
	for (int i = 0; i < n; i++)
		kept[i] = present(out, argv[optind + i], ".pem");
	rc = rdm_certs_make(out, (const char *const *)(argv + optind), n, (int)days, err,
			    sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "ctl certs: %s\n", err);
		free(kept);
		return 1;
	}
	printf("%s/ca.pem: %s\n", out, ca_existed ? "existing CA, reused" : "new CA");
	for (int i = 0; i < n; i++) {
		if (kept[i])
			printf("%s/%s.pem: kept (already there)\n", out, argv[optind + i]);
		else if (days > 0)
			printf("%s/%s.pem: issued, valid %ld days\n", out, argv[optind + i], days);
		else
			printf("%s/%s.pem: issued, expired %ld days ago\n", out, argv[optind + i],
			       -days);
	}
	free(kept);
	return 0;
}

int rdm_cmd_ctl(int argc, char **argv)
{
	if (argc < 2) {
		ctl_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "certs"))
		return cmd_certs(argc - 1, argv + 1);
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		ctl_usage(stdout);
		return 0;
	}
	fprintf(stderr, "rdmesh ctl: unknown subcommand '%s'\n", argv[1]);
	ctl_usage(stderr);
	return 2;
}
