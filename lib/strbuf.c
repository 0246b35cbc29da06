/* The string builder of lib/strbuf.h: appending, formatting, and growing its buffer. */
#include "lib/strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rdm_sb_init(struct rdm_strbuf *b)
{
	memset(b, 0, sizeof(*b));
	b->line = 1;
	b->col = 1;
}

void rdm_sb_fini(struct rdm_strbuf *b)
{
	free(b->buf);
	rdm_sb_init(b);
}

int rdm_sb_grow(void **p, size_t *cap, size_t need, size_t size)
{
	size_t n = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return 0;
	if (!size || need > SIZE_MAX / size)
		return -ENOMEM;
	while (n < need)
		n = n > SIZE_MAX / 2 ? need : n * 2;
	if (n > SIZE_MAX / size)
		n = need;
	q = realloc(*p, n * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

void rdm_sb_put(struct rdm_strbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (n > SIZE_MAX - b->len - 1 ||
	    rdm_sb_grow((void **)&b->buf, &b->cap, b->len + n + 1, 1) < 0) {
		b->failed = 1;
		return;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n') {
			b->line++;
			b->col = 1;
		} else if (((unsigned char)s[i] & 0xC0) != 0x80) {
			b->col++;
		}
	}
}

void rdm_sb_puts(struct rdm_strbuf *b, const char *s)
{
	rdm_sb_put(b, s, strlen(s));
}

void rdm_sb_printf(struct rdm_strbuf *b, const char *fmt, ...)
{
	char small[256], *s = small;
	va_list ap;
	int n;

	if (b->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = 1;
		return;
	}
	if ((size_t)n >= sizeof(small)) {
		va_start(ap, fmt);
		n = vasprintf(&s, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = 1;
			return;
		}
	}
	rdm_sb_put(b, s, (size_t)n);
	if (s != small)
		free(s);
}

char *rdm_sb_take(struct rdm_strbuf *b)
{
	char *text = b->failed ? NULL : b->buf ? b->buf : strdup("");

	if (b->failed || !text) {
		rdm_sb_fini(b);
		errno = ENOMEM;
		return NULL;
	}
	b->buf = NULL;
	rdm_sb_fini(b);
	return text;
}
