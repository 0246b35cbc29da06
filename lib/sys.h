/* The system calls a hop makes per batch (read, sendmsg, epoll_wait), made directly.
 * libc's wrappers of these are thread cancellation points: in a process with threads each
 * call also switches asynchronous cancellation on and off around the system call, some 30
 * instructions a call. rdmesh never cancels a thread, so the data path skips that. Same
 * results and errno as the wrappers. */
#ifndef RDM_SYS_H
#define RDM_SYS_H

#include <stddef.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static inline ssize_t rdm_sys_read(int fd, void *buf, size_t len)
{
	return syscall(SYS_read, fd, buf, len);
}

static inline ssize_t rdm_sys_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	return syscall(SYS_sendmsg, fd, msg, flags);
}

static inline int rdm_sys_epoll_wait(int epfd, struct epoll_event *ev, int max, int ms)
{
	return (int)syscall(SYS_epoll_wait, epfd, ev, max, ms);
}

#endif
