/* dir: names in the view — lookup, attributes, and everything that makes,
 * removes or moves a name. */
#include "view.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

static int check_name(const char *name)
{
	if (strnlen(name, NAME_MAX + 1) > NAME_MAX)
		return -ENAMETOOLONG;
	return pfs_valid_name(name) ? 0 : -EINVAL;
}

static void entry_init(struct pfs_fs *fs, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
}

int pfs_view_lookup(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		    struct fuse_entry_param *e)
{
	struct pfs_node *n;
	int fd, ret;

	entry_init(fs, e);
	if (strnlen(name, NAME_MAX + 1) > NAME_MAX)
		return -ENAMETOOLONG;
	fd = openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	ret = pfs_node_intern(fs, parent, name, fd, &e->attr, &n);
	if (ret < 0)
		return ret;
	e->ino = pfs_ino_of(fs, n);
	return 0;
}

int pfs_view_getattr(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi,
		     struct stat *st)
{
	if (fi && n->type == S_IFREG)
		return fstat(pfs_fh_fd(fi), st) < 0 ? -errno : 0;
	return pfs_store_stat(n, st);
}

static int set_times(struct pfs_fs *fs, struct pfs_node *n, const struct timespec tv[2],
		     struct fuse_file_info *fi)
{
	char name[24];

	if (fi && n->type == S_IFREG)
		return futimens(pfs_fh_fd(fi), tv) < 0 ? -errno : 0;
	if (n->type == S_IFLNK) {
		/* No fd can be opened on a symlink for writing; AT_EMPTY_PATH on
		 * the O_PATH fd touches the link itself. */
		return utimensat(n->fd, "", tv, AT_EMPTY_PATH) < 0 ? -errno : 0;
	}
	pfs_store_procname(n->fd, name);
	return utimensat(fs->proc_fd, name, tv, 0) < 0 ? -errno : 0;
}

int pfs_view_setattr(struct pfs_fs *fs, struct pfs_node *n, struct stat *attr, int valid,
		     struct fuse_file_info *fi, struct stat *out)
{
	char name[24];
	bool has_fh = fi && n->type == S_IFREG;
	int ret;

	if (fs->read_only)
		return -EROFS;
	pfs_store_procname(n->fd, name);
	if (valid & FUSE_SET_ATTR_MODE) {
		ret = has_fh ? fchmod(pfs_fh_fd(fi), attr->st_mode & 07777)
			     : fchmodat(fs->proc_fd, name, attr->st_mode & 07777, 0);
		if (ret < 0)
			return -errno;
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(n->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		if (has_fh) {
			ret = ftruncate(pfs_fh_fd(fi), attr->st_size) < 0 ? -errno : 0;
		} else {
			int fd = pfs_store_reopen(fs, n, O_WRONLY);

			if (fd < 0)
				return fd;
			ret = ftruncate(fd, attr->st_size) < 0 ? -errno : 0;
			close(fd);
		}
		if (ret < 0)
			return ret;
	}
	if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec tv[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};

		if (valid & FUSE_SET_ATTR_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_ATIME)
			tv[0] = attr->st_atim;
		if (valid & FUSE_SET_ATTR_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_MTIME)
			tv[1] = attr->st_mtim;
		ret = set_times(fs, n, tv, fi);
		if (ret < 0)
			return ret;
	}
	return pfs_view_getattr(fs, n, fi, out);
}

int pfs_view_readlink(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size)
{
	ssize_t len = readlinkat(n->fd, "", buf, size - 1);

	if (len < 0)
		return -errno;
	buf[len] = '\0';
	return 0;
}

/* Finish a name made by the daemon: hand it to the caller and look it up.
 * On failure the new name is removed again, so a failed call changes nothing. */
static int finish_new(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		      const char *name, mode_t mode, struct fuse_entry_param *e)
{
	int ret = ctx ? pfs_store_give(fs, ctx, parent, name, mode) : 0;

	if (ret == 0)
		ret = pfs_view_lookup(fs, parent, name, e);
	if (ret < 0)
		unlinkat(parent->fd, name, S_ISDIR(mode) ? AT_REMOVEDIR : 0);
	return ret;
}

int pfs_view_mknod(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, dev_t rdev, struct fuse_entry_param *e)
{
	int ret = check_name(name);

	if (ret < 0)
		return ret;
	if (fs->read_only)
		return -EROFS;
	if (mknodat(parent->fd, name, mode, rdev) < 0)
		return -errno;
	return finish_new(fs, ctx, parent, name, mode, e);
}

int pfs_view_mkdir(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, struct fuse_entry_param *e)
{
	int ret = check_name(name);

	if (ret < 0)
		return ret;
	if (fs->read_only)
		return -EROFS;
	if (mkdirat(parent->fd, name, mode) < 0)
		return -errno;
	return finish_new(fs, ctx, parent, name, S_IFDIR | mode, e);
}

int pfs_view_symlink(struct pfs_fs *fs, const struct fuse_ctx *ctx, const char *target,
		     struct pfs_node *parent, const char *name, struct fuse_entry_param *e)
{
	int ret = check_name(name);

	if (ret < 0)
		return ret;
	if (fs->read_only)
		return -EROFS;
	if (symlinkat(target, parent->fd, name) < 0)
		return -errno;
	return finish_new(fs, ctx, parent, name, S_IFLNK | 0777, e);
}

int pfs_view_link(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *newparent,
		  const char *newname, struct fuse_entry_param *e)
{
	int ret = check_name(newname);

	if (ret < 0)
		return ret;
	if (fs->read_only)
		return -EROFS;
	if (linkat(n->fd, "", newparent->fd, newname, AT_EMPTY_PATH) < 0) {
		char name[24];

		if (errno != ENOENT && errno != EPERM)
			return -errno;
		/* Without CAP_DAC_READ_SEARCH: the same object through /proc. */
		pfs_store_procname(n->fd, name);
		if (linkat(fs->proc_fd, name, newparent->fd, newname, AT_SYMLINK_FOLLOW) < 0)
			return -errno;
	}
	ret = pfs_view_lookup(fs, newparent, newname, e);
	if (ret < 0)
		unlinkat(newparent->fd, newname, 0);
	return ret;
}

static int remove_name(struct pfs_fs *fs, struct pfs_node *parent, const char *name, int flags)
{
	struct stat st;
	bool known;

	if (fs->read_only)
		return -EROFS;
	/* Which object loses the name, so its node stops being called by it. */
	known = fstatat(parent->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (unlinkat(parent->fd, name, flags) < 0)
		return -errno;
	if (known)
		pfs_node_unlinked(fs, st.st_dev, st.st_ino, parent, name);
	return 0;
}

int pfs_view_unlink(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	return remove_name(fs, parent, name, 0);
}

int pfs_view_rmdir(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	return remove_name(fs, parent, name, AT_REMOVEDIR);
}

int pfs_view_rename(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		    struct pfs_node *newparent, const char *newname, unsigned int flags)
{
	int ret = check_name(newname);

	if (ret < 0)
		return ret;
	if (fs->read_only)
		return -EROFS;
	struct stat from, to;
	bool have_from, have_to;

	have_from = fstatat(parent->fd, name, &from, AT_SYMLINK_NOFOLLOW) == 0;
	have_to = fstatat(newparent->fd, newname, &to, AT_SYMLINK_NOFOLLOW) == 0;
	if (renameat2(parent->fd, name, newparent->fd, newname, flags) < 0)
		return -errno;
	if (!have_from)
		return 0;
	if (have_to && from.st_dev == to.st_dev && from.st_ino == to.st_ino)
		return 0; /* two links of one file: rename did nothing */
	if (have_to && (flags & RENAME_EXCHANGE))
		pfs_node_renamed(fs, to.st_dev, to.st_ino, newparent, newname, parent, name);
	else if (have_to)
		pfs_node_unlinked(fs, to.st_dev, to.st_ino, newparent, newname);
	pfs_node_renamed(fs, from.st_dev, from.st_ino, parent, name, newparent, newname);
	return 0;
}

int pfs_view_statfs(struct pfs_fs *fs, struct pfs_node *n, struct statvfs *st)
{
	if (fstatvfs(n->fd, st) < 0)
		return -errno;
	if (fs->read_only)
		st->f_flag |= ST_RDONLY;
	return 0;
}

int pfs_view_access(struct pfs_fs *fs, struct pfs_node *n, int mask)
{
	char name[24];

	if ((mask & W_OK) && fs->read_only)
		return -EROFS;
	pfs_store_procname(n->fd, name);
	return faccessat(fs->proc_fd, name, mask, AT_EACCESS) < 0 ? -errno : 0;
}
