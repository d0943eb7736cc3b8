/* backing: a node's backing object, through the mount's store (fs->store).
 * A node holds an O_PATH fd; the object is reopened through /proc/self/fd,
 * which follows the fd's own dentry and never walks a path through the
 * mount point. */
#include "view/view.h"
#include "layers/layer.h"
#include "view/ns.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

void pfs_backing_procname(int fd, char buf[24])
{
	snprintf(buf, 24, "%d", fd);
}

int pfs_backing_reopen(struct pfs_fs *fs, struct pfs_node *n, int flags)
{
	char name[24];
	int fd = pfs_node_fd(fs, n);

	if (fd < 0)
		return fd;
	/* A metacopy file's data is the lower file's until the first write
	 * (which copies it up before it opens). */
	if (n->ln && n->type == S_IFREG && (flags & O_ACCMODE) == O_RDONLY &&
	    __atomic_load_n(&n->ln->meta, __ATOMIC_ACQUIRE)) {
		int d = __atomic_load_n(&n->ln->fd[n->ln->bottom], __ATOMIC_ACQUIRE);

		/* Its data-only layers have none for it: as the kernel's open. */
		if (n->ln->nodata)
			return -n->ln->nodata;
		if (d >= 0)
			fd = d;
	}
	pfs_backing_procname(fd, name);
	return pfs_st_openat(fs->store, fs->proc_fd, name,
			     (flags | O_CLOEXEC) & ~(O_NOFOLLOW | O_CREAT | O_EXCL), 0);
}

int pfs_backing_stat(struct pfs_fs *fs, struct pfs_node *n, struct stat *st)
{
	int fd = pfs_node_fd(fs, n);

	if (fd < 0)
		return fd;
	return pfs_st_stat(fs->store, fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
}

bool pfs_backing_written(struct pfs_fs *fs, struct pfs_node *n)
{
	int fd = pfs_backing_reopen(fs, n, O_RDONLY | O_NONBLOCK);
	bool written = true;

	if (fd < 0)
		return true;
	/* A read lease is granted only while no one has the file open for
	 * writing (fcntl(2), F_SETLEASE) -- the hold of a mapping included --
	 * and is given back at once. Someone opening it for writing in that
	 * instant waits until then, and the kernel signals us: with SIGURG,
	 * ignored by default, rather than SIGIO, which would end the process.
	 * O_NONBLOCK: a lease someone else holds fails our open (written, as
	 * far as we know) instead of waiting for them. A filesystem without
	 * leases, or no CAP_LEASE for another's file: written, likewise. */
	if (fcntl(fd, F_SETSIG, SIGURG) == 0 && fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
		fcntl(fd, F_SETLEASE, F_UNLCK);
		written = false;
	}
	close(fd);
	return written;
}

/* A new object made by the daemon (as itself) must look as if the caller
 * (NULL: the daemon) had made it in parentfd: the caller's uid, and its gid
 * unless parentfd is set-group-ID. Made in parentfd itself, the kernel
 * already gave it that directory's group (and a directory its set-group-ID
 * bit); made elsewhere (the layers' work directory) and moved in later, it
 * gets them here. */
static int give_owner(struct pfs_fs *fs, const struct fuse_ctx *ctx, int parentfd, int dirfd,
		      const char *name, mode_t mode)
{
	bool elsewhere = parentfd != dirfd;
	uid_t uid = ctx ? ctx->uid : fs->uid;
	gid_t gid = ctx ? ctx->gid : fs->gid;
	struct stat pst;
	int ret;

	/* The ids stored for the caller's (uidmapping=), checked before the
	 * object was made (pfs_view_creator_mapped); the daemon's own are
	 * stored ids already. */
	if (ctx && !pfs_view_ids_stored(fs, &uid, &gid))
		return -EOVERFLOW;
	if (uid == fs->uid && gid == fs->gid && !elsewhere)
		return 0;
	ret = pfs_st_stat(fs->store, parentfd, "", &pst, AT_EMPTY_PATH);
	if (ret < 0)
		return ret;
	if (pst.st_mode & S_ISGID) {
		gid = elsewhere ? pst.st_gid : (gid_t)-1;
		if (elsewhere && S_ISDIR(mode))
			mode |= S_ISGID;
	} else if (gid == fs->gid && uid == fs->uid) {
		return 0; /* made elsewhere by the daemon's own ids: as made */
	}
	ret = pfs_st_chown(fs->store, pfs_ref_at(dirfd, name), uid, gid);
	if (ret < 0)
		return ret;
	/* chown clears set-ID bits on files; the caller asked for them. */
	if (!S_ISLNK(mode) && (mode & (S_ISUID | S_ISGID)) && (!S_ISDIR(mode) || elsewhere))
		return pfs_st_chmod(fs->store, pfs_ref_at(dirfd, name), mode & 07777);
	return 0;
}

int pfs_backing_give(struct pfs_fs *fs, const struct fuse_ctx *ctx, int parentfd, int dirfd,
		     const char *name, mode_t mode)
{
	int ret = give_owner(fs, ctx, parentfd, dirfd, name, mode);

	/* Made elsewhere (the layers' work directory has no default ACL):
	 * what parentfd's would have given it, as kernel overlayfs sets it
	 * on an object it makes over a whiteout. After the owner, whose
	 * change would clear what a set-group-ID directory gave. */
	if (ret == 0 && parentfd != dirfd && !S_ISLNK(mode))
		ret = pfs_view_acl_inherit(fs, parentfd, dirfd, name);
	return ret;
}

int pfs_backing_access(struct pfs_fs *fs, struct pfs_node *n, int mask)
{
	char name[24];
	int fd = pfs_node_fd(fs, n);

	if (fd < 0)
		return fd;
	/* The store has no access(2): a check, not an operation on it. */
	pfs_backing_procname(fd, name);
	return faccessat(fs->proc_fd, name, mask, AT_EACCESS) < 0 ? -errno : 0;
}

/* n's object for an xattr call. There is no f*xattr on an O_PATH fd: the
 * store reaches the node's own fd through /proc/self/fd, which resolves to
 * its inode without walking the mount. A symlink cannot be reached that
 * way without following it, so it is named as its parent's fd plus its
 * name (in name, room for it). */
struct xref {
	struct pfs_ref r;
	char name[NAME_MAX + 1];
};

static int xref_of(struct pfs_fs *fs, struct pfs_node *n, struct xref *x)
{
	int fd;

	if (n->type != S_IFLNK) {
		fd = pfs_node_fd(fs, n);
		if (fd < 0)
			return fd;
		x->r = pfs_ref_path(fd);
		return 0;
	}
	if (fs->ns->node_name(fs, n, &fd, x->name, sizeof(x->name)) < 0)
		return -EPERM;
	x->r = pfs_ref_at(fd, x->name);
	return 0;
}

ssize_t pfs_backing_getxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			     size_t size)
{
	struct xref x;
	int ret = xref_of(fs, n, &x);

	return ret < 0 ? ret : pfs_st_getxattr(fs->store, x.r, name, buf, size);
}

ssize_t pfs_backing_listxattr(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size)
{
	struct xref x;
	int ret = xref_of(fs, n, &x);

	return ret < 0 ? ret : pfs_st_listxattr(fs->store, x.r, buf, size);
}

int pfs_backing_setxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name,
			 const char *value, size_t size, int flags)
{
	struct xref x;
	int ret = xref_of(fs, n, &x);

	return ret < 0 ? ret : pfs_st_setxattr(fs->store, x.r, name, value, size, flags);
}

int pfs_backing_removexattr(struct pfs_fs *fs, struct pfs_node *n, const char *name)
{
	struct xref x;
	int ret = xref_of(fs, n, &x);

	return ret < 0 ? ret : pfs_st_removexattr(fs->store, x.r, name);
}
