/* Socket addresses as the configs write them: "10.0.0.1:7000" or "[fd00::1]:7000",
 * parsed and formatted. */
#include "lib/addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

enum rdm_addr_fault rdm_addr_parse_why(struct rdm_addr *a, const char *text)
{
	char host[INET6_ADDRSTRLEN];
	const char *port;
	size_t hlen;

	memset(a, 0, sizeof(*a));
	if (strlen(text) >= sizeof(a->text))
		return RDM_ADDR_LONG;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':')
			return RDM_ADDR_SYNTAX;
		hlen = (size_t)(close - text - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return RDM_ADDR_SYNTAX;
		memcpy(host, text + 1, hlen);
		port = close + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (!colon)
			return RDM_ADDR_SYNTAX;
		hlen = (size_t)(colon - text);
		if (hlen == 0 || hlen >= sizeof(host))
			return RDM_ADDR_SYNTAX;
		memcpy(host, text, hlen);
		port = colon + 1;
	}
	host[hlen] = '\0';

	unsigned long p = 0;
	size_t digits = strlen(port);
	if (digits == 0 || digits > 5)
		return RDM_ADDR_PORT;
	for (const char *s = port; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return RDM_ADDR_PORT;
		p = p * 10 + (unsigned long)(*s - '0');
	}
	if (p < 1 || p > 65535)
		return RDM_ADDR_PORT;

	if (text[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return RDM_ADDR_SYNTAX;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		a->len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return RDM_ADDR_SYNTAX;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		a->len = sizeof(*s4);
	}
	strcpy(a->text, text);
	return RDM_ADDR_OK;
}

int rdm_addr_parse(struct rdm_addr *a, const char *text)
{
	if (rdm_addr_parse_why(a, text) != RDM_ADDR_OK) {
		memset(a, 0, sizeof(*a));
		return -EINVAL;
	}
	return 0;
}

void rdm_addr_format(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(out, cap, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(out, cap, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(out, cap, "?");
	}
}

int rdm_addr_same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr,
			       sizeof(struct in6_addr));
	return 0;
}
