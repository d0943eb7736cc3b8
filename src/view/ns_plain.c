/* ns_plain: the plain namespace -- SOURCE mirrored name for name, under
 * the mapping table (resolve.c places each name) -- as the view's
 * operations table (ns.h). */
#include "view/ns.h"
#include "view/selfmnt.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
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

static int plain_lookup(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
			struct fuse_entry_param *e)
{
	struct pfs_place pl;
	struct pfs_node *n;
	uint64_t ctx;
	int fd, ret;

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

static int plain_getattr(struct pfs_fs *fs, struct pfs_node *n, struct stat *st)
{
	if (pfs_node_synthetic(n))
		return 0; /* nothing behind it: all in plain_fix_attr */
	if (n == fs->root && fs->watch) {
		int ret, fd = pfs_view_root_target(fs, O_PATH);

		if (fd < 0)
			return pfs_backing_stat(fs, n, st);
		ret = pfs_st_stat(fs->store, fd, "", st, AT_EMPTY_PATH);
		close(fd);
		return ret;
	}
	return pfs_backing_stat(fs, n, st);
}

static bool plain_fix_attr(struct pfs_fs *fs, struct pfs_node *n, struct stat *st)
{
	if (pfs_node_synthetic(n)) {
		pfs_view_synthetic_stat(fs, n->ino, 0555, st);
		return false;
	}
	st->st_ino = pfs_view_ino(fs, n->ctx, st);
	return true;
}

static int plain_may_change(struct pfs_fs *fs, struct pfs_node *n)
{
	return pfs_node_synthetic(n) ? -EROFS : 0; /* nothing behind it */
}

static int plain_access(struct pfs_fs *fs, struct pfs_node *n, int mask)
{
	if (pfs_node_synthetic(n))
		return 0; /* r-x for all; W_OK was refused (plain_may_change) */
	return pfs_backing_access(fs, n, mask);
}

static int plain_statfs_fd(struct pfs_fs *fs, struct pfs_node *n)
{
	return pfs_node_fd(fs, n);
}

static int plain_prepare_change(struct pfs_fs *fs, struct pfs_node *n, int open_flags)
{
	return 0; /* changed where it is */
}

static int plain_serve_open(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
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

static int plain_mknod(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		       const char *name, mode_t mode, dev_t rdev, struct fuse_entry_param *e)
{
	struct pfs_place pl;
	int ret;

	ret = place_new(fs, parent, name, &pl);
	if (ret == 0) {
		mode = pfs_view_new_mode(fs, ctx, pl.dirfd, mode);
		ret = pfs_st_mknod(fs->store, pl.dirfd, pl.name, mode, rdev);
	}
	if (ret == 0)
		ret = 1;
	if (ret == 1)
		ret = finish_new(fs, ctx, parent, name, &pl, mode, e);
	if (ret == 0)
		pfs_view_changed(fs, parent, name);
	pfs_place_put(&pl);
	return ret;
}

static int plain_mkdir(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		       const char *name, mode_t mode, struct fuse_entry_param *e)
{
	struct pfs_place pl;
	int ret;

	ret = place_new(fs, parent, name, &pl);
	if (ret == 0) {
		mode = pfs_view_new_mode(fs, ctx, pl.dirfd, S_IFDIR | mode) & 07777;
		ret = pfs_st_mkdir(fs->store, pl.dirfd, pl.name, mode);
	}
	if (ret == 0)
		ret = 1;
	if (ret == 1)
		ret = finish_new(fs, ctx, parent, name, &pl, S_IFDIR | mode, e);
	if (ret == 0)
		pfs_view_changed(fs, parent, name);
	pfs_place_put(&pl);
	return ret;
}

static int plain_symlink(struct pfs_fs *fs, const struct fuse_ctx *ctx, const char *target,
			 struct pfs_node *parent, const char *name, struct fuse_entry_param *e)
{
	struct pfs_place pl;
	int ret;

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

static int plain_link(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *newparent,
		      const char *newname, struct fuse_entry_param *e)
{
	struct pfs_place pl;
	int ret, fd;

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

static int plain_remove(struct pfs_fs *fs, struct pfs_node *parent, const char *name, bool dir)
{
	return remove_name(fs, parent, name, dir ? AT_REMOVEDIR : 0);
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

static int plain_rename(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
			struct pfs_node *newparent, const char *newname, unsigned int flags)
{
	struct pfs_place from, to;
	struct stat fst, tst;
	bool have_from, have_to;
	int ret;

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

static int plain_create(struct pfs_fs *fs, struct pfs_req *rq, const struct fuse_ctx *ctx,
			struct pfs_node *parent,
			const char *name, mode_t mode, struct fuse_file_info *fi,
			struct fuse_entry_param *e)
{
	int flags = (fi->flags | O_CLOEXEC | O_NOFOLLOW) & ~O_CREAT;
	struct pfs_place pl;
	bool created = true;
	int fd = -1, ret;

	ret = pfs_place_get(fs, parent, name, &pl);
	if (ret == 0)
		ret = pfs_place_creatable(fs, &pl);
	if (ret < 0)
		goto out;
	mode = pfs_view_new_mode(fs, ctx, pl.dirfd, S_IFREG | mode) & 07777;
	fd = pfs_st_openat(fs->store, pl.dirfd, pl.name, flags | O_CREAT | O_EXCL, mode);
	if (fd == -EEXIST && !(fi->flags & O_EXCL)) {
		/* Someone made it between the kernel's lookup and now: open it. */
		created = false;
		fd = pfs_st_openat(fs->store, pl.dirfd, pl.name, flags, 0);
	}
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	ret = pfs_file_nodirect(fd, fi->flags);
	if (ret == 0 && !created && (fi->flags & O_TRUNC))
		ret = pfs_file_kill_for_caller(fs, rq, fd);
	if (ret == 0 && created)
		ret = pfs_backing_give(fs, ctx, pl.dirfd, pl.dirfd, pl.name, S_IFREG | mode);
	if (ret == 0)
		ret = pfs_view_lookup(fs, parent, name, e);
	if (ret == 0) {
		fi->fh = (uint64_t)fd;
		/* A plain node has no copy-up's old backing in the way:
		 * this does not fail. */
		ret = pfs_file_serve(fs, rq, pfs_node_of(fs, e->ino), fi, e, created);
		if (ret < 0)
			pfs_node_forget(fs, pfs_node_of(fs, e->ino), 1);
	}
	if (ret < 0) {
		close(fd);
		if (created)
			pfs_st_unlink(fs->store, pl.dirfd, pl.name, 0);
		goto out;
	}
	if (created)
		pfs_view_changed(fs, parent, name);
out:
	pfs_place_put(&pl);
	return ret;
}

static int count_child(const char *name, bool hidden, const struct pfs_map_entry *e, void *arg)
{
	(void)name;
	(void)hidden;
	(void)e;
	++*(size_t *)arg;
	return 1; /* one is enough to know */
}

/* A synthetic directory, or one the table puts names in (or hides names
 * from), is listed from a snapshot. */
static bool plain_snapshot(struct pfs_fs *fs, struct pfs_node *n)
{
	struct pfs_map *m;
	size_t count = 0;
	char *vp;

	if (pfs_node_synthetic(n))
		return true;
	m = pfs_view_map(fs);
	if (!m)
		return false;
	vp = pfs_node_path(fs, n, NULL);
	if (vp) {
		struct pfs_map_res r;

		pfs_map_resolve(m, vp, &r);
		if (r.hidden)
			count = 1; /* an open handle on a hidden directory lists nothing */
		else
			pfs_map_children(m, vp, count_child, &count);
	}
	free(vp);
	pfs_map_unref(m);
	return count > 0;
}

struct snap_ctx {
	struct pfs_fs *fs;
	struct pfs_node *dir;
	pfs_ns_list_cb *cb;
	void *arg;
	char **claimed; /* names the table places here, strcmp order */
	size_t nclaimed, aclaimed;
	int err;
};

static int claim(const char *name, bool hidden, const struct pfs_map_entry *e, void *arg)
{
	struct snap_ctx *c = arg;

	(void)hidden;
	(void)e;
	if (c->nclaimed == c->aclaimed) {
		size_t na = c->aclaimed ? c->aclaimed * 2 : 16;
		char **nc = realloc(c->claimed, na * sizeof(*nc));

		if (!nc)
			return -ENOMEM;
		c->claimed = nc;
		c->aclaimed = na;
	}
	c->claimed[c->nclaimed] = strdup(name);
	if (!c->claimed[c->nclaimed])
		return -ENOMEM;
	c->nclaimed++;
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A name the table places: listed as what a lookup would find there. One
 * whose target cannot be resolved (EXDEV: it leads out of SOURCE) is left
 * out, as a missing one is; only a lookup of that name fails. */
static int add_mapped(struct snap_ctx *c, const char *name)
{
	struct pfs_place pl;
	struct stat st;
	int ret = pfs_place_get(c->fs, c->dir, name, &pl);

	if (ret < 0) {
		if (!pfs_err_resource(ret))
			ret = 0;
		goto out;
	}
	if (pl.res.hidden)
		goto out;
	if (pl.dirfd >= 0 &&
	    pfs_selfmnt_fstatat(c->fs, pl.dirfd, pl.name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		ret = c->cb(c->arg, name, pfs_view_ino(c->fs, pl.ctx, &st), IFTODT(st.st_mode));
	} else if (pl.res.parent_of_keys) {
		ret = c->cb(c->arg, name, pfs_view_synthetic_ino(pl.vpath), DT_DIR);
	} /* else: the target is missing; a lookup would say ENOENT */
out:
	pfs_place_put(&pl);
	return ret;
}

/* The backing names minus those the table claims, then the table's own,
 * against one generation of the table. */
static int plain_list(struct pfs_fs *fs, struct pfs_node *n, DIR *dp, pfs_ns_list_cb *cb,
		      void *arg)
{
	struct snap_ctx c = {.fs = fs, .dir = n, .cb = cb, .arg = arg};
	struct pfs_map *m = pfs_view_map(fs);
	char *vp = pfs_node_path(fs, n, NULL);
	bool hidden = false;
	int ret = 0;

	if (!vp) {
		ret = -ENOMEM;
		goto out;
	}
	if (m) {
		struct pfs_map_res r;

		pfs_map_resolve(m, vp, &r);
		hidden = r.hidden;
		if (!hidden)
			ret = pfs_map_children(m, vp, claim, &c);
	}
	if (ret < 0)
		goto out;
	if (c.nclaimed) /* no NULL base, even for none */
		qsort(c.claimed, c.nclaimed, sizeof(*c.claimed), cmp_name);
	if (dp && !hidden) {
		struct dirent *de;

		rewinddir(dp);
		for (;;) {
			const char *name;

			/* errno is readdir's only when reset right before it: the
			 * loop's other calls may leave theirs (a sanitizer's
			 * report left ENOTTY from isatty). */
			errno = 0;
			de = readdir(dp);
			if (!de) {
				ret = -errno;
				if (ret < 0)
					goto out;
				break;
			}
			name = de->d_name;
			if (c.nclaimed &&
			    bsearch(&name, c.claimed, c.nclaimed, sizeof(*c.claimed), cmp_name))
				continue;
			ret = cb(arg, name, de->d_ino, de->d_type);
			if (ret < 0)
				goto out;
		}
	} else {
		ret = cb(arg, ".", n->ino, DT_DIR);
		if (ret == 0)
			ret = cb(arg, "..", 1, DT_DIR); /* glibc skips d_ino 0 */
		if (ret < 0)
			goto out;
	}
	for (size_t i = 0; i < c.nclaimed && ret == 0; i++)
		ret = add_mapped(&c, c.claimed[i]);
out:
	for (size_t i = 0; i < c.nclaimed; i++)
		free(c.claimed[i]);
	free(c.claimed);
	free(vp);
	pfs_map_unref(m);
	return ret;
}

/* The node the kernel holds for (parent, name) under the current table. */
static struct pfs_node *held_child(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
				   bool *exists)
{
	struct pfs_place pl;
	struct pfs_node *n = NULL;
	struct stat st;

	*exists = false;
	if (pfs_place_get(fs, parent, name, &pl) == 0 && !pl.res.hidden && pl.dirfd >= 0 &&
	    pfs_selfmnt_fstatat(fs, pl.dirfd, pl.name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		*exists = true;
		n = pfs_node_find(fs, st.st_dev, st.st_ino, pfs_place_node_ctx(&pl, st.st_mode));
	}
	pfs_place_put(&pl);
	return n;
}

static struct pfs_node *plain_held(struct pfs_fs *fs, struct pfs_node *dir, const char *name,
				   bool *exists, bool synthetic)
{
	struct pfs_node *n;
	char *vp;

	n = held_child(fs, dir, name, exists);
	if (n || *exists || !synthetic)
		return n;
	vp = pfs_node_path(fs, dir, name);
	if (vp) /* as pfs_view_lookup makes it */
		n = pfs_node_find(fs, 0, pfs_view_synthetic_ino(vp), pfs_map_hash(vp));
	free(vp);
	return n;
}

static void plain_root_dirs(struct pfs_fs *fs, void (*cb)(struct pfs_fs *fs, int fd))
{
	cb(fs, pfs_backing_reopen(fs, fs->root, O_RDONLY | O_DIRECTORY));
}

const struct pfs_ns_ops pfs_ns_plain = {
	.name = "plain",
	.lookup = plain_lookup,
	.mknod = plain_mknod,
	.mkdir = plain_mkdir,
	.symlink = plain_symlink,
	.link = plain_link,
	.remove = plain_remove,
	.rename = plain_rename,
	.readlink = pfs_backing_readlink,
	.create = plain_create,
	.getattr = plain_getattr,
	.fix_attr = plain_fix_attr,
	.may_change = plain_may_change,
	.access = plain_access,
	.statfs_fd = plain_statfs_fd,
	.prepare_change = plain_prepare_change,
	.serve_open = plain_serve_open,
	.snapshot = plain_snapshot,
	.open_dir = pfs_plain_open_dir,
	.list = plain_list,
	.node_name = pfs_node_name,
	.getxattr = pfs_backing_getxattr,
	.listxattr = pfs_backing_listxattr,
	.setxattr = pfs_backing_setxattr,
	.removexattr = pfs_backing_removexattr,
	.root_dirs = plain_root_dirs,
	.held = plain_held,
	.targets_changed = pfs_plain_targets_changed,
};
