/* dir: names in the view -- lookup, attributes, and everything that makes,
 * removes or moves a name. What the namespace decides (plain or layered)
 * is fs->ns's (ns.h). */
#include "view/view.h"
#include "view/selfmnt.h"
#include "layers/layer.h"
#include "util/util.h"
#include "view/ns.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

int pfs_view_lookup(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		    struct fuse_entry_param *e)
{
	return fs->ns->lookup(fs, parent, name, e);
}

int pfs_view_getattr(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi,
		     struct stat *st)
{
	int ret;

	ret = -ENOENT;
	if (fi && n->type == S_IFREG)
		ret = fstat(pfs_fh_fd(fi), st) < 0 ? -errno : 0;
	/* A handle the store keeps elsewhere (a cache's file moved out of
	 * memory) is not the node's object: the node's attributes. */
	if (!fi || n->type != S_IFREG || (ret == 0 && (st->st_ino != n->ino || st->st_dev != n->dev)))
		ret = fs->ns->getattr(fs, n, st);
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
	uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
	gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
	int ret, nfd;

	ret = pfs_view_writable(fs, n);
	if (ret == 0)
		ret = pfs_view_attr_fixed(fs, n, valid);
	/* An id uidmapping=/gidmapping= cannot store: what chown(2) answers
	 * for an id the caller's user namespace does not map. Asked before
	 * anything (a mode in the same call) changes. */
	if (ret == 0 && !pfs_view_ids_stored(fs, &uid, &gid))
		ret = -EINVAL;
	if (ret == 0)
		ret = fs->ns->prepare_change(fs, n, (valid & FUSE_SET_ATTR_SIZE) ? O_WRONLY : -1);
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
			/* opened for writing through the store: it hears of the
			 * close, as at RELEASE (the history forgets the writer,
			 * whose fd number is reused next) */
			pfs_st_release(fs->store, fd);
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
	return fs->ns->readlink(fs, n, buf, size);
}

int pfs_backing_readlink(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size)
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

int pfs_view_mknod(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, dev_t rdev, struct fuse_entry_param *e)
{
	int ret = pfs_view_creator_mapped(fs, ctx);

	if (ret < 0)
		return ret;
	return fs->ns->mknod(fs, ctx, parent, name, mode, rdev, e);
}

int pfs_view_mkdir(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, struct fuse_entry_param *e)
{
	int ret = pfs_view_creator_mapped(fs, ctx);

	if (ret < 0)
		return ret;
	return fs->ns->mkdir(fs, ctx, parent, name, mode, e);
}

int pfs_view_symlink(struct pfs_fs *fs, const struct fuse_ctx *ctx, const char *target,
		     struct pfs_node *parent, const char *name, struct fuse_entry_param *e)
{
	int ret = pfs_view_creator_mapped(fs, ctx);

	if (ret < 0)
		return ret;
	return fs->ns->symlink(fs, ctx, target, parent, name, e);
}

int pfs_view_link(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *newparent,
		  const char *newname, struct fuse_entry_param *e)
{
	/* A new name of an object is a new way to change it: one of a
	 * read-only area gets none, wherever it would go (EROFS). */
	int ret = pfs_view_writable(fs, n);

	if (ret < 0)
		return ret;
	return fs->ns->link(fs, n, newparent, newname, e);
}

int pfs_view_unlink(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	return fs->ns->remove(fs, parent, name, false);
}

int pfs_view_rmdir(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	return fs->ns->remove(fs, parent, name, true);
}

int pfs_view_rename(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		    struct pfs_node *newparent, const char *newname, unsigned int flags)
{
	return fs->ns->rename(fs, parent, name, newparent, newname, flags);
}

int pfs_view_statfs(struct pfs_fs *fs, struct pfs_node *n, struct statvfs *st)
{
	int fd = fs->ns->statfs_fd(fs, n);

	if (fd < 0)
		return fd;
	/* The store has no statfs: the room is the filesystem's, read from
	 * a descriptor on it. */
	if (fstatvfs(fd, st) < 0)
		return -errno;
	if (fs->read_only)
		st->f_flag |= ST_RDONLY;
	return 0;
}

int pfs_view_access(struct pfs_fs *fs, struct pfs_node *n, int mask)
{
	if (mask & W_OK) {
		int ret = pfs_view_writable(fs, n);

		if (ret < 0)
			return ret;
	}
	return fs->ns->access(fs, n, mask);
}
