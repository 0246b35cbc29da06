/* Small helpers every layer uses: container_of, ARRAY_SIZE and rdm_word_in. */
#ifndef RDM_UTIL_H
#define RDM_UTIL_H

#include <stddef.h>
#include <string.h>

/* The struct of type that holds member at ptr (backends embed the base struct). */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* 1 when the space-separated list (NULL: empty) has word, as a whole word. */
static inline int rdm_word_in(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *s = list; s && *s;) {
		const char *e = strchr(s, ' ');
		size_t len = e ? (size_t)(e - s) : strlen(s);

		if (len == n && !strncmp(s, word, n))
			return 1;
		s = e ? e + 1 : NULL;
	}
	return 0;
}

#endif
