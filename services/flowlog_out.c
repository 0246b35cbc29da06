/* The flowlog stage's output file: buffered appends of whole lines to the worker's file,
 * rotated by size, with output errors counted rather than fatal (the rules are in
 * services/flowlog.c). */
#include "services/flowlog_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/clock.h"

/* Counts an output error and says so on stderr, at most once a second. */
static void fl_err(struct fl_rt *rt, const char *what, const char *path, int e)
{
	uint64_t now = rdm_now_ns();

	rt->write_errors++;
	if (rt->logged && now - rt->last_log_ns < FL_SEC)
		return;
	rt->logged = 1;
	rt->last_log_ns = now;
	fprintf(stderr,
		"flowlog w%d: %s %s: %s (write errors %" PRIu64 ", lines lost %" PRIu64 ")\n",
		rt->worker, what, path, strerror(e), rt->write_errors, rt->lines_lost);
}

/* Opens the worker's file for appending (emptied first when trunc). 0 or -errno; on
 * failure the error is counted and the next try waits a second. */
int rdm_flowlog__open(struct fl_rt *rt, int trunc)
{
	struct stat st;
	int fd =
	    open(rt->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (trunc ? O_TRUNC : 0), 0640);

	if (fd < 0) {
		int e = errno;

		rt->retry_open_ns = rdm_now_ns() + FL_SEC;
		fl_err(rt, "open", rt->path, e);
		return -e;
	}
	rt->fd = fd;
	rt->regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	rt->file_size = rt->regular ? (uint64_t)st.st_size : 0;
	return 0;
}

/* Writes len bytes holding nlines whole lines. On failure the lines count as lost and
 * a regular file is cut back to where it was, so it never ends in half a line. */
static void fl_write(struct fl_rt *rt, const char *p, size_t len, uint64_t nlines)
{
	size_t done = 0;

	if (rt->fd < 0 && (rdm_now_ns() < rt->retry_open_ns || rdm_flowlog__open(rt, 0) < 0)) {
		rt->lines_lost += nlines;
		return;
	}
	while (done < len) {
		ssize_t w = write(rt->fd, p + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;

			/* Cut a partial write back off; if that fails, keep the size true. */
			if (done && rt->regular && ftruncate(rt->fd, (off_t)rt->file_size) < 0)
				rt->file_size += done;
			rt->lines_lost += nlines;
			fl_err(rt, "write", rt->path, e);
			return;
		}
		done += (size_t)w;
	}
	rt->bytes_written += len;
	if (rt->regular)
		rt->file_size += len;
}

void rdm_flowlog__flush(struct fl_rt *rt)
{
	if (rt->buf_len)
		fl_write(rt, rt->buf, rt->buf_len, rt->buf_lines);
	rt->buf_len = 0;
	rt->buf_lines = 0;
}

/* Shifts FILE.i to FILE.(i+1) and FILE to FILE.1, then opens a fresh FILE. The buffer
 * must be empty. On a failed rename nothing further is moved (the next rename would
 * overwrite the file that stayed), the current file is kept, and the next try waits a
 * second. */
static void fl_rotate(struct fl_rt *rt)
{
	char from[PATH_MAX], to[PATH_MAX];
	int e;

	if (!rt->c->keep) {
		if (unlink(rt->path) < 0 && errno != ENOENT)
			goto fail;
	} else {
		for (unsigned i = rt->c->keep - 1; i >= 1; i--) {
			snprintf(from, sizeof(from), "%s.%u", rt->path, i);
			snprintf(to, sizeof(to), "%s.%u", rt->path, i + 1);
			if (rename(from, to) < 0 && errno != ENOENT)
				goto fail_named;
		}
		snprintf(to, sizeof(to), "%s.1", rt->path);
		if (rename(rt->path, to) < 0 && errno != ENOENT)
			goto fail;
	}
	rt->rotations++;
	close(rt->fd);
	rt->fd = -1;
	rt->file_size = 0;
	rdm_flowlog__open(rt, 1);
	return;
fail_named:
	e = errno;
	rt->retry_rotate_ns = rdm_now_ns() + FL_SEC;
	fl_err(rt, "rotate", from, e);
	return;
fail:
	e = errno;
	rt->retry_rotate_ns = rdm_now_ns() + FL_SEC;
	fl_err(rt, "rotate", rt->path, e);
}

/* Queues one finished line (len bytes, ending in '\n'), rotating first when the file
 * would grow past max_bytes. */
void rdm_flowlog__put(struct fl_rt *rt, const char *line, size_t len)
{
	const struct fl_conf *c = rt->c;
	uint64_t pending = rt->file_size + rt->buf_len;

	if (rt->fd >= 0 && rt->regular && pending && pending + len > c->max_bytes &&
	    rdm_now_ns() >= rt->retry_rotate_ns) {
		rdm_flowlog__flush(rt);
		fl_rotate(rt);
	}
	if (rt->buf_len + len > c->buffer_bytes)
		rdm_flowlog__flush(rt);
	if (len > c->buffer_bytes) {
		fl_write(rt, line, len, 1);
		return;
	}
	memcpy(rt->buf + rt->buf_len, line, len);
	rt->buf_len += len;
	rt->buf_lines++;
}
