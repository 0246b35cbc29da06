/* Files a user names, text a user sees (see file.h). */
#include "lib/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

FILE *rdm_fopen_regular(const char *path)
{
	/* O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), fl, e;
	struct stat st;
	FILE *f;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		e = fstat(fd, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		close(fd);
		errno = e;
		return NULL;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	f = fdopen(fd, "r");
	if (!f) {
		e = errno;
		close(fd);
		errno = e;
	}
	return f;
}

char *rdm_read_regular(const char *path, size_t max, size_t *len)
{
	FILE *f = rdm_fopen_regular(path);
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int e = 0;

	if (!f)
		return NULL;
	for (;;) {
		size_t k;

		if (n + 1 >= cap) {
			char *nb;

			if (cap > max) {
				e = EFBIG;
				break;
			}
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap);
			if (!nb) {
				e = ENOMEM;
				break;
			}
			buf = nb;
		}
		k = fread(buf + n, 1, cap - n - 1, f);
		n += k;
		if (k == 0) {
			e = ferror(f) ? (errno ? errno : EIO) : 0;
			break;
		}
	}
	fclose(f);
	if (!e && n > max)
		e = EFBIG;
	if (e) {
		free(buf);
		errno = e;
		return NULL;
	}
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

const char *rdm_file_why(int e)
{
	return e == EINVAL ? "not a regular file (a FIFO, a device or a directory)" : strerror(e);
}

void rdm_fput_visible(FILE *f, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			putc(c, f);
	}
}
