/* backing: the transport's side of struct pfs_kernel (view/view.h). The
 * view decides when a node needs a backing id or the kernel must forget a
 * name; the ioctls and notifications on the session are made here. */
#include "fuse/backing.h"
#include "fuse/xport.h"
#include "view/view.h"

#include <errno.h>
#include <stdint.h>
#include <sys/ioctl.h>

/* Kernel ABI (linux/fuse.h, protocol 7.40+); Debian 12's headers are older. */
struct k_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define K_FUSE_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct k_backing_map)
#define K_FUSE_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

static int backing_open(void *ctx, int fd)
{
	struct pfs_xport *xp = ctx;
	struct k_backing_map map = {.fd = fd};
	int id = ioctl(fuse_session_fd(xp->se), K_FUSE_DEV_IOC_BACKING_OPEN, &map);

	if (id < 0)
		return -errno;
	__atomic_add_fetch(&xp->backing_open, 1, __ATOMIC_RELAXED);
	return id;
}

static void backing_close(void *ctx, int backing_id)
{
	struct pfs_xport *xp = ctx;
	uint32_t id = (uint32_t)backing_id;

	ioctl(fuse_session_fd(xp->se), K_FUSE_DEV_IOC_BACKING_CLOSE, &id);
	__atomic_sub_fetch(&xp->backing_open, 1, __ATOMIC_RELAXED);
}

static void inval_entry(void *ctx, fuse_ino_t parent, const char *name, size_t namelen)
{
	struct pfs_xport *xp = ctx;

	fuse_lowlevel_notify_inval_entry(xp->se, parent, name, namelen);
}

static void inval_inode(void *ctx, fuse_ino_t ino, off_t off, off_t len)
{
	struct pfs_xport *xp = ctx;

	fuse_lowlevel_notify_inval_inode(xp->se, ino, off, len);
}

static const struct pfs_kernel kernel = {
	.backing_open = backing_open,
	.backing_close = backing_close,
	.inval_entry = inval_entry,
	.inval_inode = inval_inode,
};

void pfs_backing_register(struct pfs_fs *fs)
{
	fs->kernel_ctx = fs->xport;
	fs->kernel = &kernel;
}
