/* dir: names in the view — lookup, attributes, and everything that makes,
 * removes or moves a name. */
#include "view/view.h"
#include "view/selfmnt.h"
#include "layers/layer.h"
#include "util/util.h"

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
	struct pfs_place pl;
	struct pfs_node *n;
	uint64_t ctx;
	int fd, ret;

	if (fs->layers)
		return pfs_layer_lookup(fs, parent, name, e);
	entry_init(fs, e);
	if (strnlen(name, NAME_MAX + 1) > NAME_MAX)
		return -ENAMETOOLONG;
	/* Names in a directory seen at several places can change through any
	 * of them: the kernel must ask each time (the others are told too, but
	 * only after the change has been answered). */
	if (pfs_view_aliased(fs, parent))
		e->entry_timeout = 0;
	ret = pfs_place_get(fs, parent, name, &pl);
	if (ret < 0)
		goto out;
	if (pl.map && pl.res.hidden) {
		ret = -ENOENT;
		goto out;
	}
	if (pfs_place_near_target(fs, parent, &pl))
		e->entry_timeout = 0;
	ctx = pl.ctx;
	fd = pl.dirfd >= 0 ? pfs_selfmnt_openat(fs, pl.dirfd, pl.name,
						 O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
	if (fd < 0) {
		ret = pl.dirfd >= 0 ? -errno : pl.unreach ? pl.unreach : -ENOENT;
		/* Nothing behind a virtual parent of mapped paths: synthetic. */
		if ((ret == -ENOENT || ret == -ENOTDIR || ret == -EXDEV) && pl.map &&
		    pl.res.parent_of_keys) {
			fd = pfs_view_synthetic(fs, pl.vpath, &e->attr);
			ctx = pfs_map_hash(pl.vpath);
		}
		if (fd < 0) {
			ret = fd < -1 ? fd : ret;
			goto out;
		}
	} else if ((ret = pfs_st_stat(fs->store, fd, "", &e->attr,
				      AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) < 0) {
		close(fd);
		goto out;
	} else {
		ctx = pfs_place_node_ctx(&pl, e->attr.st_mode);
	}
	ret = pfs_node_intern(fs, parent, name, fd, &e->attr, ctx, &n);
	if (ret < 0)
		goto out;
	pfs_view_fix_attr(fs, n, &e->attr);
	e->attr_timeout = pfs_view_attr_timeout(fs, n);
	e->ino = pfs_ino_of(fs, n);
out:
	pfs_place_put(&pl);
	return ret;
}

int pfs_view_getattr(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi,
		     struct stat *st)
{
	int ret;

	if (pfs_node_synthetic(n) && !fs->layers) {
		ret = 0;
	} else if (fi && n->type == S_IFREG) {
		ret = fstat(pfs_fh_fd(fi), st) < 0 ? -errno : 0;
	} else if (n == fs->root && fs->watch && !fs->layers) {
		int fd = pfs_view_root_target(fs, O_PATH);

		if (fd >= 0) {
			ret = pfs_st_stat(fs->store, fd, "", st, AT_EMPTY_PATH);
			close(fd);
		} else {
			ret = pfs_backing_stat(fs, n, st);
		}
	} else {
		ret = pfs_backing_stat(fs, n, st);
	}
	if (ret == 0)
		pfs_view_fix_attr(fs, n, st);
	return ret;
}

static int set_times(struct pfs_fs *fs, struct pfs_node *n, const struct timespec tv[2],
		     struct fuse_file_info *fi)
{
	int fd;

	if (fi && n->type == S_IFREG)
		return pfs_st_utimes(fs->store, pfs_ref_fd(pfs_fh_fd(fi)), tv);
	fd = pfs_node_fd(fs, n);
	if (fd < 0)
		return fd;
	/* The O_PATH fd's own object (AT_EMPTY_PATH): a symlink's too, which
	 * no fd can be opened on for writing. */
	return pfs_st_utimes(fs->store, pfs_ref_path(fd), tv);
}

/* Must this SETATTR clear set-ID bits? The kernel marks a truncate or chown
 * by a caller without CAP_FSETID; a SETATTR that changes nothing is its
 * file_remove_privs() before a write by such a caller (passthrough writes
 * included, which the daemon never sees), and answering it with the new
 * mode keeps the kernel's copy of the mode true. */
static bool kills_setid(const struct pfs_req *rq, const struct fuse_ctx *ctx, int valid)
{
	if (!rq->killpriv)
		return false;
	return rq->kill_suidgid || (valid == 0 && ctx->uid != 0);
}

int pfs_view_setattr(struct pfs_fs *fs, struct pfs_req *rq, const struct fuse_ctx *ctx,
		     struct pfs_node *n, struct stat *attr, int valid,
		     struct fuse_file_info *fi, struct stat *out)
{
	char name[24];
	bool has_fh = fi && n->type == S_IFREG;
	int ret, nfd;

	ret = pfs_view_writable(fs, n);
	if (ret == 0)
		ret = pfs_view_attr_fixed(fs, n, valid);
	if (ret == 0 && fs->layers)
		ret = pfs_layer_prepare_change(fs, n, -1);
	if (ret < 0)
		return ret;
	nfd = pfs_node_fd(fs, n);
	if (nfd < 0)
		return nfd;
	pfs_backing_procname(nfd, name);
	if (valid & FUSE_SET_ATTR_MODE) {
		ret = pfs_st_chmod(fs->store, has_fh ? pfs_ref_fd(pfs_fh_fd(fi))
						     : pfs_ref_at(fs->proc_fd, name),
				   attr->st_mode & 07777);
		if (ret < 0)
			return ret;
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		ret = pfs_st_chown(fs->store, pfs_ref_path(nfd), uid, gid);
		if (ret < 0)
			return ret;
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		if (has_fh) {
			ret = pfs_st_truncate(fs->store, pfs_fh_fd(fi), attr->st_size);
		} else {
			int fd = pfs_backing_reopen(fs, n, O_WRONLY);

			if (fd < 0)
				return fd;
			ret = pfs_st_truncate(fs->store, fd, attr->st_size);
			close(fd);
		}
		if (ret < 0)
			return ret;
	}
	/* A truncate or chown by the caller would have cleared set-ID bits;
	 * the daemon's own (with CAP_FSETID) does not always. */
	if (n->type == S_IFREG && !(valid & FUSE_SET_ATTR_MODE) && kills_setid(rq, ctx, valid)) {
		ret = has_fh ? pfs_view_kill_suidgid(fs, pfs_fh_fd(fi), false)
			     : pfs_view_kill_suidgid(fs, nfd, true);
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
	pfs_view_changed(fs, n, NULL);
	return pfs_view_getattr(fs, n, fi, out);
}

int pfs_view_readlink(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size)
{
	int fd = pfs_node_fd(fs, n);
	ssize_t len;

	if (fd < 0)
		return fd;
	len = pfs_st_readlink(fs->store, fd, "", buf, size - 1);
	if (len < 0)
		return (int)len;
	buf[len] = '\0';
	return 0;
}

/* Finish a name made by the daemon at pl: hand it to the caller and look it
 * up. On failure the new name is removed again: a failed call changes nothing. */
static int finish_new(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		      const char *name, const struct pfs_place *pl, mode_t mode,
		      struct fuse_entry_param *e)
{
	int ret = ctx ? pfs_backing_give(fs, ctx, pl->dirfd, pl->dirfd, pl->name, mode) : 0;

	if (ret == 0)
		ret = pfs_view_lookup(fs, parent, name, e);
	if (ret < 0)
		pfs_st_unlink(fs->store, pl->dirfd, pl->name, S_ISDIR(mode) ? AT_REMOVEDIR : 0);
	return ret;
}

/* Where a new name goes, or why it may not be made there. */
static int place_new(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		     struct pfs_place *pl)
{
	int ret = check_name(name);

	if (ret < 0) {
		memset(pl, 0, sizeof(*pl));
		pl->own_fd = -1;
		return ret;
	}
	ret = pfs_place_get(fs, parent, name, pl);
	return ret < 0 ? ret : pfs_place_creatable(fs, pl);
}

int pfs_view_mknod(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, dev_t rdev, struct fuse_entry_param *e)
{
	struct pfs_place pl;
	int ret;

	if (fs->layers)
		return pfs_layer_make(fs, ctx, parent, name, mode, rdev, NULL, 0, NULL, e);
	ret = place_new(fs, parent, name, &pl);
	if (ret == 0)
		ret = pfs_st_mknod(fs->store, pl.dirfd, pl.name, mode, rdev);
	if (ret == 0)
		ret = 1;
	if (ret == 1)
		ret = finish_new(fs, ctx, parent, name, &pl, mode, e);
	if (ret == 0)
		pfs_view_changed(fs, parent, name);
	pfs_place_put(&pl);
	return ret;
}

int pfs_view_mkdir(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, struct fuse_entry_param *e)
{
	struct pfs_place pl;
	int ret;

	if (fs->layers)
		return pfs_layer_make(fs, ctx, parent, name, S_IFDIR | mode, 0, NULL, 0, NULL, e);
	ret = place_new(fs, parent, name, &pl);
	if (ret == 0)
		ret = pfs_st_mkdir(fs->store, pl.dirfd, pl.name, mode);
	if (ret == 0)
		ret = 1;
	if (ret == 1)
		ret = finish_new(fs, ctx, parent, name, &pl, S_IFDIR | mode, e);
	if (ret == 0)
		pfs_view_changed(fs, parent, name);
	pfs_place_put(&pl);
	return ret;
}

int pfs_view_symlink(struct pfs_fs *fs, const struct fuse_ctx *ctx, const char *target,
		     struct pfs_node *parent, const char *name, struct fuse_entry_param *e)
{
	struct pfs_place pl;
	int ret;

	if (fs->layers)
		return pfs_layer_make(fs, ctx, parent, name, S_IFLNK | 0777, 0, target, 0, NULL, e);
	ret = place_new(fs, parent, name, &pl);
	if (ret == 0)
		ret = pfs_st_symlink(fs->store, target, pl.dirfd, pl.name);
	if (ret == 0)
		ret = 1;
	if (ret == 1)
		ret = finish_new(fs, ctx, parent, name, &pl, S_IFLNK | 0777, e);
	if (ret == 0)
		pfs_view_changed(fs, parent, name);
	pfs_place_put(&pl);
	return ret;
}

int pfs_view_link(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *newparent,
		  const char *newname, struct fuse_entry_param *e)
{
	struct pfs_place pl;
	int ret, fd;

	/* A new name of an object is a new way to change it: one of a
	 * read-only area gets none, wherever it would go (EROFS). */
	ret = pfs_view_writable(fs, n);
	if (ret < 0)
		return ret;
	if (fs->layers)
		return pfs_layer_link(fs, n, newparent, newname, e);
	fd = pfs_node_fd(fs, n);
	if (fd < 0)
		return fd;
	ret = place_new(fs, newparent, newname, &pl);
	if (ret < 0)
		goto out;
	ret = pfs_st_link(fs->store, fd, "", pl.dirfd, pl.name, AT_EMPTY_PATH);
	if (ret < 0) {
		char name[24];

		if (ret != -ENOENT && ret != -EPERM)
			goto out;
		/* Without CAP_DAC_READ_SEARCH: the same object through /proc. */
		pfs_backing_procname(fd, name);
		ret = pfs_st_link(fs->store, fs->proc_fd, name, pl.dirfd, pl.name,
				  AT_SYMLINK_FOLLOW);
		if (ret < 0)
			goto out;
	}
	ret = pfs_view_lookup(fs, newparent, newname, e);
	if (ret < 0)
		pfs_st_unlink(fs->store, pl.dirfd, pl.name, 0);
	else
		pfs_view_changed(fs, newparent, newname);
out:
	pfs_place_put(&pl);
	return ret;
}

static int remove_name(struct pfs_fs *fs, struct pfs_node *parent, const char *name, int flags)
{
	struct pfs_place pl;
	struct stat st;
	bool known;
	int ret = pfs_place_get(fs, parent, name, &pl);

	if (ret == 0)
		ret = pfs_place_removable(fs, &pl, flags & AT_REMOVEDIR);
	if (ret < 0)
		goto out;
	/* Which object loses the name, so its node stops being called by it. */
	known = pfs_selfmnt_fstatat(fs, pl.dirfd, pl.name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	ret = pfs_st_unlink(fs->store, pl.dirfd, pl.name, flags);
	if (ret < 0)
		goto out;
	if (known)
		pfs_node_unlinked(fs, st.st_dev, st.st_ino, pfs_place_node_ctx(&pl, st.st_mode),
				  parent, name);
	pfs_view_changed(fs, parent, name);
out:
	pfs_place_put(&pl);
	return ret;
}

int pfs_view_unlink(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	if (fs->layers)
		return pfs_layer_remove(fs, parent, name, false);
	return remove_name(fs, parent, name, 0);
}

int pfs_view_rmdir(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	if (fs->layers)
		return pfs_layer_remove(fs, parent, name, true);
	return remove_name(fs, parent, name, AT_REMOVEDIR);
}

/* A rename's destination: like a new name, except that a file the table
 * maps exactly may be replaced (editors save by renaming over a file). */
static int place_dest(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		      unsigned int flags, struct pfs_place *pl)
{
	int ret = place_new(fs, parent, name, pl);

	if (ret == -ENOENT && pl->map && pl->res.exact)
		return -EXDEV; /* the target's directory is gone: nothing to replace */
	if (ret == 0 && pl->map && !pl->res.exact && pl->res.parent_of_keys)
		return -EBUSY;
	if (ret == 0 && pl->map && pl->res.exact && (flags & RENAME_EXCHANGE))
		return -EBUSY; /* the mapped name would move away */
	return ret;
}

int pfs_view_rename(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		    struct pfs_node *newparent, const char *newname, unsigned int flags)
{
	struct pfs_place from, to;
	struct stat fst, tst;
	bool have_from, have_to;
	int ret;

	if (fs->layers)
		return pfs_layer_rename(fs, parent, name, newparent, newname, flags);
	ret = pfs_place_get(fs, parent, name, &from);

	memset(&to, 0, sizeof(to));
	to.own_fd = -1;
	if (ret == 0)
		ret = pfs_place_removable(fs, &from, false);
	if (ret == 0)
		ret = place_dest(fs, newparent, newname, flags, &to);
	if (ret < 0)
		goto out;
	have_from = pfs_selfmnt_fstatat(fs, from.dirfd, from.name, &fst, AT_SYMLINK_NOFOLLOW) == 0;
	have_to = pfs_selfmnt_fstatat(fs, to.dirfd, to.name, &tst, AT_SYMLINK_NOFOLLOW) == 0;
	ret = pfs_st_rename(fs->store, from.dirfd, from.name, to.dirfd, to.name, flags);
	if (ret < 0)
		goto out;
	pfs_view_changed(fs, parent, name);
	pfs_view_changed(fs, newparent, newname);
	if (!have_from)
		goto out;
	if (have_to && fst.st_dev == tst.st_dev && fst.st_ino == tst.st_ino)
		goto out; /* two links of one file: rename did nothing */
	if (have_to && (flags & RENAME_EXCHANGE))
		pfs_node_renamed(fs, tst.st_dev, tst.st_ino, pfs_place_node_ctx(&to, tst.st_mode),
				 newparent, newname, parent, name);
	else if (have_to)
		pfs_node_unlinked(fs, tst.st_dev, tst.st_ino, pfs_place_node_ctx(&to, tst.st_mode),
				  newparent, newname);
	pfs_node_renamed(fs, fst.st_dev, fst.st_ino, pfs_place_node_ctx(&from, fst.st_mode), parent,
			 name, newparent, newname);
out:
	pfs_place_put(&from);
	pfs_place_put(&to);
	return ret;
}

int pfs_view_statfs(struct pfs_fs *fs, struct pfs_node *n, struct statvfs *st)
{
	/* A layered mount has the room its upper has, as overlayfs. */
	int fd = fs->layers ? fs->layers->root[0] : pfs_node_fd(fs, n);

	if (fd < 0)
		return fd;
	if (fstatvfs(fd, st) < 0)
		return -errno;
	if (fs->read_only)
		st->f_flag |= ST_RDONLY;
	return 0;
}

int pfs_view_access(struct pfs_fs *fs, struct pfs_node *n, int mask)
{
	char name[24];
	int fd;

	if (mask & W_OK) {
		int ret = pfs_view_writable(fs, n);

		if (ret < 0)
			return ret;
	}
	if (pfs_node_synthetic(n) && !(fs->layers && n->ln && n->ln->top == 0))
		return 0; /* r-x for all; W_OK was refused above (or copies it up) */
	/* A lower object is copied up before it changes: write access is
	 * decided by what the upper copy will allow, read access stands in. */
	if (fs->layers && n->ln && n->ln->top != 0 && (mask & W_OK) && n->type != S_IFCHR &&
	    n->type != S_IFBLK && n->type != S_IFIFO && n->type != S_IFSOCK)
		mask = (mask & ~W_OK) | R_OK;
	fd = pfs_node_fd(fs, n);
	if (fd < 0)
		return fd;
	pfs_backing_procname(fd, name);
	return faccessat(fs->proc_fd, name, mask, AT_EACCESS) < 0 ? -errno : 0;
}
