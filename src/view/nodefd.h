/* nodefd: the budget of node fds. Each node the kernel holds keeps an
 * O_PATH fd on its backing object, and a process may hold only
 * RLIMIT_NOFILE fds: a walk of a large tree would end in EMFILE. Past the
 * budget, the least recently used node fds are closed, and reopened from a
 * file handle (name_to_handle_at / open_by_handle_at) when next needed. */
#ifndef PFS_NODEFD_H
#define PFS_NODEFD_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

struct pfs_fs;
struct file_handle;

#define PFS_NODEFD_DEVS 16

struct pfs_nodefd {
	long budget;            /* node fds that may stay open */
	long held;              /* node fds open that could be closed (atomic) */
	unsigned long closed;   /* closed to stay in budget (atomic) */
	unsigned long reopened; /* reopened from a handle (atomic) */
	long futile;            /* a sweep left this many open (all pinned or
				 * in use): no other until more are (atomic) */
	pthread_mutex_t lock;   /* the devices below */
	struct {
		dev_t dev;
		int mount_fd;   /* a directory on it, not O_PATH (the kernel
				 * takes no O_PATH fd as open_by_handle_at's) */
		int usable;     /* 1: handles decode; -1: they do not */
	} devs[PFS_NODEFD_DEVS];
	int ndevs;
};

/* budget 0: from RLIMIT_NOFILE, leaving room for open files. */
int pfs_nodefd_init(struct pfs_fs *fs, long budget);
void pfs_nodefd_destroy(struct pfs_fs *fs);
/* A handle for fd (an O_PATH fd on an object of dev) that reopens it.
 * 0; -EAGAIN: not yet (no directory of dev seen yet); else the fd must
 * stay open for good (no handles on that filesystem, or no right to them). */
int pfs_nodefd_handle(struct pfs_fs *fs, int fd, dev_t dev, bool isdir,
		      struct file_handle **out);
/* Whether fd is the object h was made of. */
bool pfs_nodefd_same(int fd, const struct file_handle *h);
/* A new O_PATH fd from h, or -errno (-ESTALE: the object is gone). */
int pfs_nodefd_reopen(struct pfs_fs *fs, dev_t dev, const struct file_handle *h);

#endif
