/* uring: FUSE requests taken over io_uring (the kernel's FUSE-over-io_uring,
 * Linux 6.14+) instead of read(2) on /dev/fuse. See uring.c for why. */
#ifndef PFS_URING_H
#define PFS_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct pfs_fs;
struct pfs_uring;

/* The kernel's INIT request offers io_uring (FUSE_OVER_IO_URING). */
#define PFS_URING_INIT_FLAGS2 (1u << 9) /* bit 41 of the INIT flags */

/* Before the INIT reply: one thread per possible CPU makes its ring and
 * buffers, so that no failure can come after the kernel is told to wait
 * for the rings. payload: the largest request or reply body the kernel
 * may send (max_write, max_pages). max_per_queue: at most this many
 * threads per queue. On success *up is ready to start; 0 or -errno. */
int pfs_uring_prepare(struct pfs_fs *fs, size_t payload, unsigned max_per_queue,
		      struct pfs_uring **up);

/* The kernel may use at most this much payload (from the INIT reply). */
size_t pfs_uring_payload(const struct pfs_uring *u);

/* The INIT reply with FUSE_OVER_IO_URING reached the kernel: register the
 * ring entries. Until every queue has one the kernel holds all requests. */
void pfs_uring_start(struct pfs_uring *u);

/* The root name whose lookup unsticks a queue (answered ENOENT at once). */
bool pfs_uring_is_kick(const struct pfs_uring *u, const char *name);

/* After the unmount (or instead of starting): stop and free. NULL is fine. */
void pfs_uring_stop(struct pfs_uring *u);

/* Queues (one per possible CPU) and the threads serving them now. */
unsigned pfs_uring_queues(const struct pfs_uring *u);
unsigned pfs_uring_threads(const struct pfs_uring *u);

/* Is the reply with this unique for the ring request being handled on
 * this thread? Then pfs_uring_reply / pfs_uring_reply_pipe take it. */
bool pfs_uring_claims(uint64_t unique);
/* iov[0] is the out header. Returns the bytes taken or -errno. */
ssize_t pfs_uring_reply(const struct iovec *iov, int count);
/* The same reply, len bytes (header first) waiting in a pipe. */
ssize_t pfs_uring_reply_pipe(int pipe_fd, size_t len);

#endif
