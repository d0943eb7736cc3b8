/* local: the local-directory store. Each call is the kernel's own, on
 * descriptors the caller opened before the mount existed (or reopened
 * through /proc/self/fd), so no path is ever walked through the mount.
 * Path-based l*xattr calls reach an entry of a directory descriptor through
 * /proc/self/fd/DIRFD/NAME: the directory is reached by its descriptor, so
 * a deep tree never meets PATH_MAX and a symlink is never followed. */
#include "store/store.h"
#include "store/fcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h> /* renameat2 */
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#define PROC_PATH_MAX (32 + NAME_MAX)

/* r as a path: its entry of r.dirfd, never followed; with an empty name,
 * r.dirfd's own magic link, followed (*follow) to the object itself. */
static int proc_path(struct pfs_ref r, char *buf, size_t len, bool *follow)
{
	int n;

	*follow = !r.name[0];
	n = *follow ? snprintf(buf, len, "/proc/self/fd/%d", r.dirfd)
		    : snprintf(buf, len, "/proc/self/fd/%d/%s", r.dirfd, r.name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int neg(long r)
{
	return r < 0 ? -errno : (int)r;
}

/* openat2(2) answers EAGAIN for a walk with RESOLVE_BENEATH or
 * RESOLVE_IN_ROOT that met ".." while any rename or mount anywhere moved
 * the tree under it (it cannot then tell that ".." stayed beneath): the
 * caller "may choose to retry". A busy machine does that often enough
 * (a mapped target with ".." failed once in a test run); the walk is
 * retried, a bounded number of times. */
#define OPENAT2_RETRIES 64

static int l_open(struct pfs_store *st, int dirfd, const char *name, const struct open_how *how)
{
	long fd;
	int n = 0;

	if (!how->resolve)
		return neg(openat(dirfd, name, (int)how->flags, (mode_t)how->mode));
	do
		fd = syscall(SYS_openat2, dirfd, name, how, sizeof(*how));
	while (fd < 0 && errno == EAGAIN && !(how->resolve & RESOLVE_CACHED) &&
	       (how->resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT)) && ++n < OPENAT2_RETRIES);
	return neg(fd);
}

static int l_stat(struct pfs_store *st, int dirfd, const char *name, struct stat *out, int flags)
{
	return neg(fstatat(dirfd, name, out, flags));
}

static int l_mkdir(struct pfs_store *st, int dirfd, const char *name, mode_t mode)
{
	return neg(mkdirat(dirfd, name, mode));
}

static int l_mknod(struct pfs_store *st, int dirfd, const char *name, mode_t mode, dev_t dev)
{
	return neg(mknodat(dirfd, name, mode, dev));
}

static int l_symlink(struct pfs_store *st, const char *target, int dirfd, const char *name)
{
	return neg(symlinkat(target, dirfd, name));
}

static int l_link(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
		  const char *nname, int flags)
{
	return neg(linkat(odirfd, oname, ndirfd, nname, flags));
}

static int l_unlink(struct pfs_store *st, int dirfd, const char *name, int flags)
{
	return neg(unlinkat(dirfd, name, flags));
}

static int l_rename(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
		    const char *nname, unsigned flags)
{
	return neg(renameat2(odirfd, oname, ndirfd, nname, flags));
}

static ssize_t l_readlink(struct pfs_store *st, int dirfd, const char *name, char *buf,
			  size_t len)
{
	ssize_t n = readlinkat(dirfd, name, buf, len);

	return n < 0 ? -errno : n;
}

static int l_chmod(struct pfs_store *st, struct pfs_ref r, mode_t mode)
{
	char p[PROC_PATH_MAX];
	bool follow;
	int ret;

	if (r.fd >= 0)
		return neg(fchmod(r.fd, mode));
	if (r.name[0])
		return neg(fchmodat(r.dirfd, r.name, mode, 0));
	/* No fchmodat(AT_EMPTY_PATH) before Linux 6.6: the magic link. */
	ret = proc_path(r, p, sizeof(p), &follow);
	return ret < 0 ? ret : neg(fchmodat(AT_FDCWD, p, mode, 0));
}

static int l_chown(struct pfs_store *st, struct pfs_ref r, uid_t uid, gid_t gid)
{
	if (r.fd >= 0)
		return neg(fchown(r.fd, uid, gid));
	return neg(fchownat(r.dirfd, r.name, uid, gid,
			    AT_SYMLINK_NOFOLLOW | (r.name[0] ? 0 : AT_EMPTY_PATH)));
}

static int l_utimes(struct pfs_store *st, struct pfs_ref r, const struct timespec ts[2])
{
	if (r.fd >= 0)
		return neg(futimens(r.fd, ts));
	return neg(utimensat(r.dirfd, r.name, ts, r.name[0] ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH));
}

static int l_truncate(struct pfs_store *st, int fd, off_t len)
{
	return neg(ftruncate(fd, len));
}

static ssize_t l_getxattr(struct pfs_store *st, struct pfs_ref r, const char *name, void *buf,
			  size_t len)
{
	char p[PROC_PATH_MAX];
	bool follow;
	ssize_t n;
	int ret;

	if (r.fd >= 0) {
		n = fgetxattr(r.fd, name, buf, len);
	} else {
		ret = proc_path(r, p, sizeof(p), &follow);
		if (ret < 0)
			return ret;
		n = follow ? getxattr(p, name, buf, len) : lgetxattr(p, name, buf, len);
	}
	return n < 0 ? -errno : n;
}

static int l_setxattr(struct pfs_store *st, struct pfs_ref r, const char *name, const void *val,
		      size_t len, int flags)
{
	char p[PROC_PATH_MAX];
	bool follow;
	int ret;

	if (r.fd >= 0)
		return neg(fsetxattr(r.fd, name, val, len, flags));
	ret = proc_path(r, p, sizeof(p), &follow);
	if (ret < 0)
		return ret;
	return neg(follow ? setxattr(p, name, val, len, flags) : lsetxattr(p, name, val, len, flags));
}

static ssize_t l_listxattr(struct pfs_store *st, struct pfs_ref r, char *buf, size_t len)
{
	char p[PROC_PATH_MAX];
	bool follow;
	ssize_t n;
	int ret;

	if (r.fd >= 0) {
		n = flistxattr(r.fd, buf, len);
	} else {
		ret = proc_path(r, p, sizeof(p), &follow);
		if (ret < 0)
			return ret;
		n = follow ? listxattr(p, buf, len) : llistxattr(p, buf, len);
	}
	return n < 0 ? -errno : n;
}

static int l_removexattr(struct pfs_store *st, struct pfs_ref r, const char *name)
{
	char p[PROC_PATH_MAX];
	bool follow;
	int ret;

	if (r.fd >= 0)
		return neg(fremovexattr(r.fd, name));
	ret = proc_path(r, p, sizeof(p), &follow);
	if (ret < 0)
		return ret;
	return neg(follow ? removexattr(p, name) : lremovexattr(p, name));
}

static int l_sync(struct pfs_store *st, int fd, bool data_only)
{
	return neg(data_only ? fdatasync(fd) : fsync(fd));
}

static int l_copy(struct pfs_store *st, int dst, int src, off_t size, bool clone,
		  pfs_st_tick *tick, void *arg)
{
	if (clone)
		return pfs_fcopy_clone(dst, src);
	return pfs_fcopy_data(dst, src, size, tick, arg);
}

static const struct pfs_store_ops local_ops = {
	.open = l_open,
	.stat = l_stat,
	.mkdir = l_mkdir,
	.mknod = l_mknod,
	.symlink = l_symlink,
	.link = l_link,
	.unlink = l_unlink,
	.rename = l_rename,
	.readlink = l_readlink,
	.chmod = l_chmod,
	.chown = l_chown,
	.utimes = l_utimes,
	.truncate = l_truncate,
	.getxattr = l_getxattr,
	.setxattr = l_setxattr,
	.listxattr = l_listxattr,
	.removexattr = l_removexattr,
	.sync = l_sync,
	.copy = l_copy,
	.release = NULL,
	.destroy = NULL,
};

static struct pfs_store local_store = {.ops = &local_ops, .name = "local"};

struct pfs_store *pfs_store_local(void)
{
	return &local_store;
}

void pfs_store_free(struct pfs_store *st)
{
	if (st && st->ops->destroy)
		st->ops->destroy(st);
}

int pfs_st_fallocate(struct pfs_store *st, int fd, int mode, off_t off, off_t len)
{
	if (st->ops->fallocate)
		return st->ops->fallocate(st, fd, mode, off, len);
	return fallocate(fd, mode, off, len) < 0 ? -errno : 0;
}
