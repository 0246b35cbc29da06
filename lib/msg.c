/* The control channel's messages (lib/msg.h): building, parsing, sending and receiving them. */
#include "lib/msg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/tls.h"

static int key_ok(const char *k, size_t len)
{
	if (!len)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
			return 0;
	return 1;
}

static int value_ok(const char *v, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return 0;
	return 1;
}

int rdm_msg_parse(const void *data, size_t len, struct rdm_msg *m, char *err, size_t errlen)
{
	char *p, *nl, *sp, *end;
	int line = 1;

	memset(m, 0, sizeof(*m));
	m->buf = malloc(len + 1);
	if (!m->buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (len) /* data may be NULL when len is 0 */
		memcpy(m->buf, data, len);
	m->buf[len] = 0;
	end = m->buf + len;
	nl = memchr(m->buf, '\n', len);
	if (!nl) {
		snprintf(err, errlen, "no first line");
		goto bad;
	}
	*nl = 0;
	/* The lines are parsed as C strings: a NUL would hide whatever follows it. */
	if (strlen(m->buf) != (size_t)(nl - m->buf)) {
		snprintf(err, errlen, "first line: NUL byte");
		goto bad;
	}
	sp = strchr(m->buf, ' ');
	if ((sp ? (size_t)(sp - m->buf) : strlen(m->buf)) != strlen(RDM_MSG_PROTO) ||
	    memcmp(m->buf, RDM_MSG_PROTO, strlen(RDM_MSG_PROTO))) {
		char proto[24];

		snprintf(proto, sizeof(proto), "%.*s", sp ? (int)(sp - m->buf) : 16, m->buf);
		for (char *q = proto; *q; q++)
			if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e)
				*q = '?';
		snprintf(err, errlen, "unsupported protocol '%s' (this end speaks %s)", proto,
			 RDM_MSG_PROTO);
		goto bad;
	}
	if (!sp) {
		snprintf(err, errlen, "first line: no message type after %s", RDM_MSG_PROTO);
		goto bad;
	}
	{
		char type[RDM_MSG_TYPE_MAX + 2], *e;
		unsigned long long ep;

		if (sscanf(sp + 1, "%16[a-z_] ", type) != 1 || strlen(type) > RDM_MSG_TYPE_MAX) {
			snprintf(err, errlen, "first line: bad message type");
			goto bad;
		}
		p = sp + 1 + strlen(type);
		if (*p != ' ' || p[1] < '0' || p[1] > '9') {
			snprintf(err, errlen, "first line: no epoch after '%s'", type);
			goto bad;
		}
		errno = 0;
		ep = strtoull(p + 1, &e, 10);
		if (errno || *e || ep > INT64_MAX) {
			snprintf(err, errlen, "first line: bad epoch");
			goto bad;
		}
		strcpy(m->type, type);
		m->epoch = ep;
	}
	p = nl + 1;
	for (;;) {
		char *colon;

		line++;
		if (p >= end) { /* no empty line: a header without a body */
			m->body = end;
			return 0;
		}
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		*nl = 0;
		if (p == nl)
			break;
		if (strlen(p) != (size_t)(nl - p)) {
			snprintf(err, errlen, "header line %d: NUL byte", line);
			goto bad;
		}
		colon = strstr(p, ": ");
		if (!colon) {
			snprintf(err, errlen, "header line %d: no ': '", line);
			goto bad;
		}
		if (!key_ok(p, (size_t)(colon - p))) {
			snprintf(err, errlen, "header line %d: bad key (want [a-z0-9_]+)", line);
			goto bad;
		}
		if (!value_ok(colon + 2, (size_t)(nl - colon - 2))) {
			snprintf(err, errlen, "header line %d: control character in value", line);
			goto bad;
		}
		if (m->n_hdr == RDM_MSG_MAX_HDR) {
			snprintf(err, errlen, "more than %d header lines", RDM_MSG_MAX_HDR);
			goto bad;
		}
		*colon = 0;
		m->key[m->n_hdr] = p;
		m->value[m->n_hdr++] = colon + 2;
		p = nl + 1;
	}
	m->body = nl + 1 <= end ? nl + 1 : end;
	m->body_len = (size_t)(end - m->body);
	return 0;
bad:
	free(m->buf);
	memset(m, 0, sizeof(*m));
	return -EPROTO;
}

const char *rdm_msg_get(const struct rdm_msg *m, const char *key)
{
	for (int i = 0; i < m->n_hdr; i++)
		if (!strcmp(m->key[i], key))
			return m->value[i];
	return NULL;
}

void rdm_msg_free(struct rdm_msg *m)
{
	if (!m)
		return;
	free(m->buf);
	memset(m, 0, sizeof(*m));
}

char *rdm_msg_build(const char *type, uint64_t epoch, const char *const *kv, const char *body,
		    size_t body_len, size_t *len)
{
	size_t tl = strlen(type);
	char *out = NULL;
	size_t olen = 0;
	FILE *f;

	if (!tl || tl > RDM_MSG_TYPE_MAX || strspn(type, "abcdefghijklmnopqrstuvwxyz_") != tl ||
	    epoch > INT64_MAX) {
		errno = EINVAL;
		return NULL;
	}
	for (int i = 0; kv && kv[i]; i += 2)
		if (!kv[i + 1] || !key_ok(kv[i], strlen(kv[i])) ||
		    !value_ok(kv[i + 1], strlen(kv[i + 1])) || i / 2 >= RDM_MSG_MAX_HDR) {
			errno = EINVAL;
			return NULL;
		}
	f = open_memstream(&out, &olen);
	if (!f)
		return NULL;
	fprintf(f, "%s %s %" PRIu64 "\n", RDM_MSG_PROTO, type, epoch);
	for (int i = 0; kv && kv[i]; i += 2)
		fprintf(f, "%s: %s\n", kv[i], kv[i + 1]);
	fputc('\n', f);
	if (body_len)
		fwrite(body, 1, body_len, f);
	if (fclose(f)) {
		free(out);
		errno = ENOMEM;
		return NULL;
	}
	*len = olen;
	return out;
}

int rdm_msg_send(struct rdm_tls_conn *c, const char *type, uint64_t epoch, const char *const *kv,
		 const char *body, size_t body_len, int timeout_ms)
{
	size_t len;
	char *b = rdm_msg_build(type, epoch, kv, body, body_len, &len);
	int rc;

	if (!b)
		return -errno;
	rc = len > RDM_TLS_MAX_MSG ? -EMSGSIZE : rdm_tls_send(c, b, (uint32_t)len, timeout_ms);
	free(b);
	return rc;
}

int rdm_msg_recv(struct rdm_tls_conn *c, struct rdm_msg *m, int timeout_ms, char *err,
		 size_t errlen)
{
	uint8_t *buf;
	uint32_t len;
	int rc = rdm_tls_recv(c, &buf, &len, timeout_ms);

	memset(m, 0, sizeof(*m));
	if (rc < 0) {
		if (rc == -EPROTO || rc == -EPIPE)
			rdm_tls_error(c, err, errlen);
		if (rc == -EPIPE && !err[0])
			snprintf(err, errlen, "connection closed");
		return rc;
	}
	rc = rdm_msg_parse(buf, len, m, err, errlen);
	free(buf);
	return rc == -EPROTO ? -EBADMSG : rc; /* the stream itself is fine */
}
