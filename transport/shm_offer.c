/* Handing the rings over (transport/shm.c): the dialler makes a sealed memfd with two
 * rings and two eventfds and sends them with SCM_RIGHTS; the listener checks every one of
 * them before it maps anything, and acknowledges. */
#include "transport/shm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Maps the two rings of the memfd fd (2 * (RDM_SHM_HDR + cap) bytes); ours to send on is
 * ring tx_ring. 0 or -errno. */
static int map_rings(struct shm_conn *c, int fd, uint32_t cap, int tx_ring)
{
	size_t one = RDM_SHM_HDR + (size_t)cap;
	uint8_t *m;

	c->map_len = 2 * one;
	/* Populated now: the first lap of the rings would otherwise fault page by page while
	 * frames wait (both ends map them). */
	m = mmap(NULL, c->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	c->map = m;
	rdm_shm_ring_init(&c->tx, m + (size_t)tx_ring * one, cap, 1);
	rdm_shm_ring_init(&c->rx, m + (size_t)(1 - tx_ring) * one, cap, 0);
	c->limit = cap / 2 -
		   (uint64_t)(c->o.batch ? c->o.batch : 32) * rdm_shm_rec_size(c->o.max_frame) / 2;
	if (c->limit < cap / 4)
		c->limit = cap / 4;
	return 0;
}

/* Dialler, once proven: makes the rings and the eventfds and hands them over. */
void rdm_shm__send_offer(struct shm_conn *c)
{
	uint32_t cap = rdm_shm__cap_for(&c->o);
	int fd = memfd_create("rdmesh-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	int efd_srv = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int efd_cli = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint8_t offer[OFFER_LEN] = OFFER_MAGIC;
	char cbuf[CMSG_SPACE(3 * sizeof(int))] = {0};
	struct iovec iov = {offer, sizeof(offer)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	int fds[3] = {fd, efd_srv, efd_cli}, rc = -1;
	char why[160];

	memcpy(offer + 8, &cap, 4);
	memcpy(offer + 12, &c->o.max_frame, 4);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	/* Sealed at its size: the peer can neither shrink it under us (a read past its end
	 * would be a SIGBUS) nor grow it. */
	if (fd >= 0 && efd_srv >= 0 && efd_cli >= 0 &&
	    ftruncate(fd, 2 * ((off_t)RDM_SHM_HDR + cap)) == 0 &&
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0 &&
	    map_rings(c, fd, cap, 0) == 0 &&
	    sendmsg(c->io.fd, &mh, MSG_NOSIGNAL) == (ssize_t)sizeof(offer))
		rc = 0;
	snprintf(why, sizeof(why), "shm %s: cannot set up the rings: %s", c->base.peer,
		 strerror(errno));
	if (fd >= 0)
		close(fd);
	c->wake.fd = efd_cli;
	c->efd_peer = efd_srv;
	if (rc < 0) {
		rdm_shm__refuse(c, why);
		return;
	}
	c->state = S_OFFER; /* until the listener acknowledges */
	rdm_shm__update_io(c);
}

/* 1 when fd is an eventfd. */
static int is_eventfd(int fd)
{
	char p[64], t[64];
	ssize_t n;

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	n = readlink(p, t, sizeof(t) - 1);
	if (n < 0)
		return 0;
	t[n] = '\0';
	return !strcmp(t, "anon_inode:[eventfd]");
}

/* Listener: the dialler's rings and eventfds. */
void rdm_shm__take_offer(struct shm_conn *c)
{
	uint8_t offer[OFFER_LEN], ack = 'K';
	char cbuf[CMSG_SPACE(3 * sizeof(int))];
	struct iovec iov = {offer, sizeof(offer)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	int fds[3] = {-1, -1, -1}, seals;
	const char *bad = NULL;
	struct cmsghdr *cm;
	struct stat st;
	uint32_t cap = 0;
	ssize_t n = recvmsg(c->io.fd, &mh, MSG_CMSG_CLOEXEC);

	if (n < 0 && errno == EAGAIN)
		return;
	if (n == 0) {
		rdm_shm__fail(c); /* closed before any offer: a dialler's probe (rdm_shm_probe) */
		return;
	}
	for (cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(fds)))
			memcpy(fds, CMSG_DATA(cm), sizeof(fds));
	if (n > 0)
		memcpy(&cap, offer + 8, 4);
	seals = fds[0] >= 0 ? fcntl(fds[0], F_GET_SEALS) : -1;
	if (n != OFFER_LEN || memcmp(offer, OFFER_MAGIC, 8) || fds[2] < 0)
		bad = "not an rdmesh shm offer";
	else if (cap < RDM_SHM_CAP_MIN || cap > RDM_SHM_CAP_MAX || (cap & (cap - 1)))
		bad = "a ring size out of range";
	else if (fstat(fds[0], &st) < 0 || st.st_size != 2 * ((off_t)RDM_SHM_HDR + cap) ||
		 seals < 0 || !(seals & F_SEAL_SHRINK))
		bad = "rings of the wrong size, or not sealed against shrinking";
	else if (!is_eventfd(fds[1]) || !is_eventfd(fds[2]))
		bad = "wake-ups that are not eventfds";
	else if (map_rings(c, fds[0], cap, 1) < 0)
		bad = "the rings cannot be mapped";
	else if (c->tx.pos || c->tx.peer || c->rx.pos || c->rx.peer)
		bad = "rings that do not start empty";
	else if (write(c->io.fd, &ack, 1) != 1)
		bad = "the acknowledgement could not be sent";
	if (fds[0] >= 0)
		close(fds[0]);
	c->wake.fd = fds[1];
	c->efd_peer = fds[2];
	if (bad) {
		char why[192];

		snprintf(why, sizeof(why), "shm %s: %s", c->base.peer, bad);
		rdm_shm__refuse(c, why);
		return;
	}
	fcntl(c->wake.fd, F_SETFL, O_NONBLOCK);
	fcntl(c->efd_peer, F_SETFL, O_NONBLOCK);
	rdm_shm__became_up(c);
}
