/* Socket addresses as the configs write them: "10.0.0.1:7000" or "[fd00::1]:7000". */
#ifndef RDM_ADDR_H
#define RDM_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

struct rdm_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[64]; /* as written, "10.0.0.1:7000" or "[fd00::1]:7000" */
};

/* Why an address did not parse. */
enum rdm_addr_fault { RDM_ADDR_OK = 0, RDM_ADDR_SYNTAX, RDM_ADDR_PORT, RDM_ADDR_LONG };

/* Parses "host:port" or "[v6]:port" into a; 0 or -EINVAL. */
int rdm_addr_parse(struct rdm_addr *a, const char *text);

/* As rdm_addr_parse, saying what was wrong; a is zeroed unless RDM_ADDR_OK. */
enum rdm_addr_fault rdm_addr_parse_why(struct rdm_addr *a, const char *text);

/* Formats ss as "IP:PORT" or "[IPv6]:PORT" ("?" for other families) into out. */
void rdm_addr_format(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t cap);

/* 1 when a and b are the same host address (IPv4 or IPv6; ports aside), else 0: what a
 * per-source cap on unproven connections counts by. */
int rdm_addr_same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

#endif
