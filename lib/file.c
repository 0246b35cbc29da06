/* Files a user names, text a user sees (see file.h). */
#include "lib/file.h"

#include <errno.h>
#include <fcntl.h>
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
