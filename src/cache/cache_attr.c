/* cache_attr: chmod, chown, utimes and xattrs of the cache store (the
 * rest of its operations: cache.c). Each change is recorded before the
 * tree makes it, held until the tree answers (journal.h says why). */
#include "cache/cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fill_ref(struct pfs_cache *c, struct pfs_ref r)
{
	return r.fd >= 0 ? 0 : pfs_cache_fill_for(c, r.dirfd, r.name);
}

static struct pfs_wb_op *op_ref(struct pfs_cache *c, enum pfs_wb_kind k, struct pfs_ref r)
{
	struct pfs_wb_op *op = r.fd >= 0 ? pfs_cache_op_at(c, k, r.fd, NULL)
					 : pfs_cache_op_at(c, k, r.dirfd, r.name);
	struct stat s, ds;
	int fd = r.fd, ret;

	/* (the /proc/self/fd directory, "N"): the object of fd N */
	if (fd < 0 && r.name && *r.name && strspn(r.name, "0123456789") == strlen(r.name) &&
	    fstat(r.dirfd, &ds) == 0 && ds.st_dev != c->dev)
		fd = atoi(r.name);
	if (fd < 0 && (!r.name || !*r.name))
		fd = r.dirfd; /* pfs_ref_path: the descriptor's own object */
	if (op && (ret = pfs_st_stat(c->in, fd >= 0 ? fd : r.dirfd, fd >= 0 ? "" : r.name, &s,
				     fd >= 0 ? AT_EMPTY_PATH : AT_SYMLINK_NOFOLLOW)) < 0) {
		/* What to write back is unknown: keep it out of the queue, and
		 * say so rather than send the mirror made-up values (a name
		 * that is not there: the change itself fails, nothing to say). */
		if (ret != -ENOENT)
			fprintf(stderr, "prismfs: cache: cannot read %s around a change; it is "
				"not written back\n", op->path);
		pfs_wb_op_free(op);
		return NULL;
	}
	if (op) {
		op->key = S_ISREG(s.st_mode) ? s.st_ino : 0;
		op->mode = s.st_mode;
		op->uid = s.st_uid;
		op->gid = s.st_gid;
		op->atime = s.st_atim;
		op->mtime = s.st_mtim;
	}
	return op;
}

/* After the tree's chmod, chown or utimes of r (ret): the held op with
 * what the tree has, recorded again only if it differs from the guess
 * its record was made with, released. */
static void attr_done(struct pfs_cache *c, struct pfs_wb_op *op, struct pfs_ref r, int ret)
{
	struct pfs_wb_op *now;

	if (op && ret == 0 && (now = op_ref(c, PFS_WB_ATTR, r))) {
		bool differs = ((op->mask & PFS_WB_MODE) && now->mode != op->mode) ||
			       ((op->mask & PFS_WB_OWNER) && (now->uid != op->uid ||
							       now->gid != op->gid)) ||
			       ((op->mask & PFS_WB_ATIME) &&
				(now->atime.tv_sec != op->atime.tv_sec ||
				 now->atime.tv_nsec != op->atime.tv_nsec)) ||
			       ((op->mask & PFS_WB_MTIME) &&
				(now->mtime.tv_sec != op->mtime.tv_sec ||
				 now->mtime.tv_nsec != op->mtime.tv_nsec));

		if (differs) {
			op->mode = now->mode;
			op->uid = now->uid;
			op->gid = now->gid;
			op->atime = now->atime;
			op->mtime = now->mtime;
			op->amend = true;
		}
		pfs_wb_op_free(now);
	}
	pfs_cache_released(c, op, ret);
}

int pfs_cache_chmod(struct pfs_store *st, struct pfs_ref r, mode_t mode)
{
	struct pfs_cache *c = C(st);
	struct pfs_wb_op *op;
	int ret = fill_ref(c, r);

	if (ret < 0)
		return ret;
	if ((op = op_ref(c, PFS_WB_ATTR, r))) {
		op->mask = PFS_WB_MODE;
		op->mode = (op->mode & S_IFMT) | (mode & 07777);
	}
	op = pfs_cache_hold(c, op, 0);
	ret = c->in->ops->chmod(c->in, r, mode);
	attr_done(c, op, r, ret);
	return ret;
}

int pfs_cache_chown(struct pfs_store *st, struct pfs_ref r, uid_t uid, gid_t gid)
{
	struct pfs_cache *c = C(st);
	struct pfs_wb_op *op;
	int ret = fill_ref(c, r);

	if (ret < 0)
		return ret;
	if ((op = op_ref(c, PFS_WB_ATTR, r))) {
		/* chown may clear set-ID bits: the mode goes along (as
		 * chown_common clears them on anything but a directory). */
		op->mask = PFS_WB_OWNER | PFS_WB_MODE;
		if (uid != (uid_t)-1)
			op->uid = uid;
		if (gid != (gid_t)-1)
			op->gid = gid;
		if (!S_ISDIR(op->mode)) {
			op->mode &= ~(mode_t)S_ISUID;
			if (op->mode & S_IXGRP)
				op->mode &= ~(mode_t)S_ISGID;
		}
	}
	op = pfs_cache_hold(c, op, 0);
	ret = c->in->ops->chown(c->in, r, uid, gid);
	attr_done(c, op, r, ret);
	return ret;
}

int pfs_cache_utimes(struct pfs_store *st, struct pfs_ref r, const struct timespec ts[2])
{
	struct pfs_cache *c = C(st);
	struct pfs_wb_op *op;
	int ret = fill_ref(c, r);

	if (ret < 0)
		return ret;
	if ((op = op_ref(c, PFS_WB_ATTR, r))) {
		op->mask = (ts[0].tv_nsec != UTIME_OMIT ? PFS_WB_ATIME : 0) |
			   (ts[1].tv_nsec != UTIME_OMIT ? PFS_WB_MTIME : 0);
		/* (UTIME_NOW: the time is the tree's, recorded again) */
		if (ts[0].tv_nsec != UTIME_OMIT)
			op->atime = ts[0];
		if (ts[1].tv_nsec != UTIME_OMIT)
			op->mtime = ts[1];
	}
	op = pfs_cache_hold(c, op, 0);
	ret = c->in->ops->utimes(c->in, r, ts);
	attr_done(c, op, r, ret);
	return ret;
}

ssize_t pfs_cache_getxattr(struct pfs_store *st, struct pfs_ref r, const char *name, void *buf,
			  size_t len)
{
	struct pfs_cache *c = C(st);
	int ret = fill_ref(c, r);

	return ret < 0 ? ret : c->in->ops->getxattr(c->in, r, name, buf, len);
}

ssize_t pfs_cache_listxattr(struct pfs_store *st, struct pfs_ref r, char *buf, size_t len)
{
	struct pfs_cache *c = C(st);
	int ret = fill_ref(c, r);

	return ret < 0 ? ret : c->in->ops->listxattr(c->in, r, buf, len);
}

int pfs_cache_setxattr(struct pfs_store *st, struct pfs_ref r, const char *name, const void *val,
		      size_t len, int flags)
{
	struct pfs_cache *c = C(st);
	struct pfs_wb_op *op;
	int ret = fill_ref(c, r);

	if (ret == 0)
		ret = pfs_cache_refuse(c, PFS_MIRROR_XATTR, -EOPNOTSUPP, -1, NULL);
	if (ret < 0)
		return ret;
	if ((op = op_ref(c, PFS_WB_SETXATTR, r))) {
		op->xname = strdup(name);
		op->xval = malloc(len ? len : 1);
		op->xlen = len;
		if (!op->xname || !op->xval) {
			pfs_wb_op_free(op);
			op = NULL;
			errno = ENOMEM;
		} else {
			memcpy(op->xval, val, len);
		}
	}
	op = pfs_cache_hold(c, op, 0);
	ret = c->in->ops->setxattr(c->in, r, name, val, len, flags);
	pfs_cache_released(c, op, ret);
	return ret;
}

int pfs_cache_removexattr(struct pfs_store *st, struct pfs_ref r, const char *name)
{
	struct pfs_cache *c = C(st);
	struct pfs_wb_op *op;
	int ret = fill_ref(c, r);

	if (ret < 0)
		return ret;
	if ((op = op_ref(c, PFS_WB_RMXATTR, r)) && !(op->xname = strdup(name))) {
		pfs_wb_op_free(op);
		op = NULL;
		errno = ENOMEM;
	}
	op = pfs_cache_hold(c, op, 0);
	ret = c->in->ops->removexattr(c->in, r, name);
	pfs_cache_released(c, op, ret);
	return ret;
}
