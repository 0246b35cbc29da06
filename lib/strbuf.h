/* A growing, NUL-terminated text built piece by piece (a string builder).
 *
 * Out of memory is sticky: the first allocation that fails (or a length no buffer can
 * hold) sets failed, and every later write is ignored, so a caller writes everything and
 * checks once at the end (or lets rdm_sb_take report it). The builder also knows the line
 * and column of its end, so a caller can remember where something it wrote landed, as a
 * YAML parser reading the text back will report it. */
#ifndef RDM_STRBUF_H
#define RDM_STRBUF_H

#include <stddef.h>

struct rdm_strbuf {
	char *buf;     /* the text, NUL-terminated; NULL until something is written */
	size_t len;    /* bytes in buf, without the NUL */
	size_t cap;    /* bytes allocated */
	int line, col; /* of the end, from 1; col counts characters (UTF-8), as libyaml does */
	int failed;    /* an allocation failed: writes are ignored from then on */
};

/* An empty text at line 1, column 1. */
void rdm_sb_init(struct rdm_strbuf *b);

/* Frees the text and leaves b empty, as rdm_sb_init does; may be called twice. */
void rdm_sb_fini(struct rdm_strbuf *b);

/* Appends the n bytes at s. */
void rdm_sb_put(struct rdm_strbuf *b, const char *s, size_t n);

/* Appends the string s. */
void rdm_sb_puts(struct rdm_strbuf *b, const char *s);

/* Appends printf-style formatted text; a format error counts as a failure. */
void rdm_sb_printf(struct rdm_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Hands the text to the caller (who frees it; "" when nothing was written) and leaves b
 * empty. NULL with errno ENOMEM when b failed (b is emptied all the same). */
char *rdm_sb_take(struct rdm_strbuf *b);

/* Makes the array *p (of *cap elements of size bytes each) hold at least need elements,
 * doubling from 16; the builder's own growth, for arrays a caller keeps beside a text.
 * 0, or -ENOMEM with *p and *cap unchanged (also when need elements cannot fit in
 * memory at all). */
int rdm_sb_grow(void **p, size_t *cap, size_t need, size_t size);

#endif
