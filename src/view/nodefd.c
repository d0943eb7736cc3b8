/* nodefd: file handles that let a node's fd be closed and opened again.
 * Which fds to close is node.c's sweep; this file knows the filesystems. */
#include "view/nodefd.h"
#include "view/view.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

int pfs_nodefd_init(struct pfs_fs *fs, long budget)
{
	struct pfs_nodefd *b = calloc(1, sizeof(*b));
	struct rlimit rl;

	if (!b)
		return -ENOMEM;
	if (budget <= 0) {
		/* The rest is for open files and directories, each one fd, and
		 * for the nodes a request makes before the sweep comes by. */
		long limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
				     ? (long)rl.rlim_cur : 1024;

		budget = limit - (limit >= 2048 ? limit / 4 : limit / 2);
		if (budget < 16)
			budget = 16;
	}
	b->budget = budget;
	pthread_mutex_init(&b->lock, NULL);
	fs->nfd = b;
	return 0;
}

void pfs_nodefd_destroy(struct pfs_fs *fs)
{
	struct pfs_nodefd *b = fs->nfd;

	if (!b)
		return;
	for (int i = 0; i < b->ndevs; i++)
		close(b->devs[i].mount_fd);
	pthread_mutex_destroy(&b->lock);
	free(b);
	fs->nfd = NULL;
}

static int dev_slot(struct pfs_nodefd *b, dev_t dev)
{
	for (int i = 0; i < b->ndevs; i++)
		if (b->devs[i].dev == dev)
			return i;
	return -1;
}

/* Whether handles of dev decode, found once by decoding h (of fd). */
static int probe(int mount_fd, const struct file_handle *h, int fd)
{
	struct stat a, b;
	int t = open_by_handle_at(mount_fd, (struct file_handle *)h, O_PATH | O_CLOEXEC);
	bool same;

	if (t < 0)
		return -1;
	same = fstat(t, &a) == 0 && fstat(fd, &b) == 0 && a.st_ino == b.st_ino &&
	       a.st_dev == b.st_dev;
	close(t);
	return same ? 1 : -1;
}

int pfs_nodefd_handle(struct pfs_fs *fs, int fd, dev_t dev, bool isdir,
		      struct file_handle **out)
{
	struct pfs_nodefd *b = fs->nfd;
	union {
		struct file_handle h;
		char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	} u;
	struct file_handle *h;
	int mount_id, slot, ret = 0;

	u.h.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", &u.h, &mount_id, AT_EMPTY_PATH) < 0)
		return -errno;
	pthread_mutex_lock(&b->lock);
	slot = dev_slot(b, dev);
	if (slot < 0) {
		int mfd;

		if (!isdir) {
			ret = -EAGAIN; /* a directory of dev will come first */
			goto out;
		}
		if (b->ndevs == PFS_NODEFD_DEVS) {
			ret = -ENOSPC;
			goto out;
		}
		char name[24];

		/* Through /proc: a mount over this very directory (prismfs over
		 * its own source) must not be crossed. */
		pfs_backing_procname(fd, name);
		mfd = pfs_st_openat(fs->store, fs->proc_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC,
				    0);
		if (mfd < 0) {
			ret = mfd;
			goto out;
		}
		slot = b->ndevs++;
		b->devs[slot].dev = dev;
		b->devs[slot].mount_fd = mfd;
		b->devs[slot].usable = probe(mfd, &u.h, fd);
	}
	if (b->devs[slot].usable < 0)
		ret = -EOPNOTSUPP;
out:
	pthread_mutex_unlock(&b->lock);
	if (ret < 0)
		return ret;
	h = malloc(sizeof(*h) + u.h.handle_bytes);
	if (!h)
		return -EAGAIN;
	memcpy(h, &u.h, sizeof(*h) + u.h.handle_bytes);
	*out = h;
	return 0;
}

int pfs_nodefd_reopen(struct pfs_fs *fs, dev_t dev, const struct file_handle *h)
{
	struct pfs_nodefd *b = fs->nfd;
	int slot, mfd = -1, fd;

	pthread_mutex_lock(&b->lock);
	slot = dev_slot(b, dev);
	if (slot >= 0)
		mfd = b->devs[slot].mount_fd;
	pthread_mutex_unlock(&b->lock);
	if (mfd < 0)
		return -ESTALE;
	fd = open_by_handle_at(mfd, (struct file_handle *)h, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESTALE : -errno;
	__atomic_add_fetch(&b->reopened, 1, __ATOMIC_RELAXED);
	return fd;
}

bool pfs_nodefd_same(int fd, const struct file_handle *h)
{
	union {
		struct file_handle h;
		char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	} u;
	int mount_id;

	u.h.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", &u.h, &mount_id, AT_EMPTY_PATH) < 0)
		return true; /* cannot tell; it had one when it was closed */
	return u.h.handle_type == h->handle_type && u.h.handle_bytes == h->handle_bytes &&
	       memcmp(u.h.f_handle, h->f_handle, h->handle_bytes) == 0;
}
