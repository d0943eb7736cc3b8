/* ns_layered: the layered namespace -- a writable upper over read-only
 * lowers (layer.c, layerops.c, copyup.c) -- as the view's operations table
 * (view/ns.h). Each entry is the layers' own function, or the few lines
 * the view used to run for a layered mount in place of its own. */
#include "view/ns.h"
#include "layers/layer.h"
#include "layers/layermap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ns_mknod(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		    const char *name, mode_t mode, dev_t rdev, struct fuse_entry_param *e)
{
	return pfs_layer_make(fs, ctx, parent, name, mode, rdev, NULL, 0, NULL, e);
}

static int ns_mkdir(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		    const char *name, mode_t mode, struct fuse_entry_param *e)
{
	return pfs_layer_make(fs, ctx, parent, name, S_IFDIR | mode, 0, NULL, 0, NULL, e);
}

static int ns_symlink(struct pfs_fs *fs, const struct fuse_ctx *ctx, const char *target,
		      struct pfs_node *parent, const char *name, struct fuse_entry_param *e)
{
	return pfs_layer_make(fs, ctx, parent, name, S_IFLNK | 0777, 0, target, 0, NULL, e);
}

/* O_CREAT: made in the upper; an existing name is opened (copied up first
 * if the open writes). */
static int ns_create(struct pfs_fs *fs, struct pfs_req *rq, const struct fuse_ctx *ctx,
		     struct pfs_node *parent,
		     const char *name, mode_t mode, struct fuse_file_info *fi,
		     struct fuse_entry_param *e)
{
	int fd = -1, ret = pfs_layer_make(fs, ctx, parent, name, S_IFREG | mode, 0, NULL,
					  fi->flags & ~O_CREAT, &fd, e);

	if (ret == -EEXIST && !(fi->flags & O_EXCL)) {
		ret = pfs_layer_lookup(fs, parent, name, e);
		if (ret < 0)
			return ret;
		ret = pfs_view_open(fs, rq, pfs_node_of(fs, e->ino), fi);
		if (ret < 0)
			pfs_node_forget(fs, pfs_node_of(fs, e->ino), 1);
		else if (fi->fh & PFS_FH_WRITER)
			e->attr_timeout = 0;
		return ret;
	}
	if (ret < 0)
		return ret;
	ret = pfs_file_nodirect(fd, fi->flags);
	fi->fh = (uint64_t)fd;
	/* A new object: no kernel inode holds attributes of it yet. */
	if (ret == 0)
		ret = pfs_file_serve(fs, rq, pfs_node_of(fs, e->ino), fi, e, true);
	if (ret < 0) {
		close(fd);
		pfs_node_forget(fs, pfs_node_of(fs, e->ino), 1);
	}
	return ret;
}

static bool ns_fix_attr(struct pfs_fs *fs, struct pfs_node *n, struct stat *st)
{
	if (n->ln && n->ln->syn && n->ln->top == 1)
		pfs_lmap_syn_attr(fs, n->ino, st); /* nothing copied up yet */
	st->st_ino = pfs_layer_ino(fs, n->dev, n->ino);
	/* A merged directory's links cannot be counted cheaply: 1 is what
	 * find and other walkers take as "unknown", as overlayfs. */
	if (S_ISDIR(st->st_mode) && pfs_layer_merged(n))
		st->st_nlink = 1;
	/* A metacopy file uses the blocks of its data below (as the kernel
	 * reports it); its upper file is sparse. */
	if (S_ISREG(st->st_mode) && n->ln && __atomic_load_n(&n->ln->meta, __ATOMIC_ACQUIRE)) {
		int d = __atomic_load_n(&n->ln->fd[n->ln->bottom], __ATOMIC_ACQUIRE);
		struct stat ls;

		if (n->ln->nodata) /* none to ask: the kernel's guess from the size */
			st->st_blocks = (st->st_size + st->st_blksize - 1) / st->st_blksize *
					(st->st_blksize / 512);
		else if (d >= 0 && fstat(d, &ls) == 0)
			st->st_blocks = ls.st_blocks;
	}
	return n->ctx != 0; /* names with attributes from the table have a ctx */
}

static int ns_may_change(struct pfs_fs *fs, struct pfs_node *n)
{
	return 0; /* a synthetic directory is a lower one too: it copies up */
}

static int ns_access(struct pfs_fs *fs, struct pfs_node *n, int mask)
{
	if (pfs_node_synthetic(n) && !(n->ln && n->ln->top == 0))
		return 0; /* r-x for all; W_OK copies it up */
	/* A lower object is copied up before it changes: write access is
	 * decided by what the upper copy will allow, read access stands in. */
	if (n->ln && n->ln->top != 0 && (mask & W_OK) && n->type != S_IFCHR &&
	    n->type != S_IFBLK && n->type != S_IFIFO && n->type != S_IFSOCK)
		mask = (mask & ~W_OK) | R_OK;
	return pfs_backing_access(fs, n, mask);
}

static int ns_statfs_fd(struct pfs_fs *fs, struct pfs_node *n)
{
	/* the upper's room, as overlayfs; without one, the top lower's */
	return fs->layers->root[fs->layers->no_upper ? 1 : 0];
}

static int ns_prepare_change(struct pfs_fs *fs, struct pfs_node *n, int open_flags)
{
	return pfs_layer_prepare_change(fs, n, open_flags);
}

static int ns_serve_open(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	bool lower;
	int ret;

	if (n->type != S_IFREG || !n->ln)
		return 0;
	/* A metacopy file's data is a lower file's too. */
	lower = __atomic_load_n(&n->ln->top, __ATOMIC_ACQUIRE) != 0 ||
		__atomic_load_n(&n->ln->meta, __ATOMIC_ACQUIRE);
	/* A lower file is read through the daemon so that a copy-up can move
	 * this open to the upper copy (the kernel's passthrough backing could
	 * not be moved); so is any open of a file that has such opens (one
	 * kernel inode, one way of caching it). A mount of lowers only never
	 * copies up. With --lower-passthrough the kernel reads it, at the
	 * speed of the lower's own page cache (the FUSE inode's holds small
	 * folios only), and a copy-up leaves this open on the lower file: the
	 * node is retired instead, later opens get a fresh inode
	 * (pfs_node_moved_up). */
	if ((!lower || fs->layers->no_upper || fs->layers->lower_pt) && fs->passthrough &&
	    !pfs_node_has_cached_opens(fs, n))
		return 0;
	ret = pfs_node_open_track(fs, n, pfs_fh_fd(fi), lower);
	if (ret < 0)
		return ret;
	fi->fh |= PFS_FH_TRACKED;
	return 1;
}

static bool ns_snapshot(struct pfs_fs *fs, struct pfs_node *n)
{
	return true; /* a merge of several directories */
}

static int ns_open_dir(struct pfs_fs *fs, struct pfs_node *n, bool *bare)
{
	if (bare)
		*bare = false;
	return pfs_backing_reopen(fs, n, O_RDONLY | O_DIRECTORY);
}

static int ns_list(struct pfs_fs *fs, struct pfs_node *n, DIR *dp, pfs_ns_list_cb *cb, void *arg)
{
	return pfs_layer_list(fs, n, cb, arg);
}

/* A private name (the layers' bookkeeping) as the view's program gave it
 * is stored escaped, as overlayfs does for nested overlays: an ordinary
 * attribute of the view, never bookkeeping of ours. */
static int stored_name(struct pfs_fs *fs, const char **name, char esc[XATTR_NAME_MAX + 1])
{
	int ret;

	if (!pfs_layer_private_xattr(fs, *name))
		return 0;
	ret = pfs_layer_escape_xattr(*name, esc, XATTR_NAME_MAX + 1);
	*name = esc;
	return ret;
}

static ssize_t ns_getxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			   size_t size)
{
	char esc[XATTR_NAME_MAX + 1];
	int ret = stored_name(fs, &name, esc);

	return ret < 0 ? ret : pfs_backing_getxattr(fs, n, name, buf, size);
}

/* The list without the layers' private names, escaped ones unescaped. */
static ssize_t ns_listxattr(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size)
{
	char *all = NULL;
	ssize_t r, out = 0;

	for (;;) {
		r = pfs_backing_listxattr(fs, n, NULL, 0);
		if (r <= 0)
			return r;
		all = malloc((size_t)r);
		if (!all)
			return -ENOMEM;
		r = pfs_backing_listxattr(fs, n, all, (size_t)r);
		if (r >= 0)
			break;
		free(all);
		if (r != -ERANGE)
			return r;
	}
	for (ssize_t i = 0; i < r;) {
		size_t l = strlen(all + i) + 1;
		char shown[XATTR_NAME_MAX + 1];

		if (pfs_layer_unescape_xattr(fs, all + i, shown, sizeof(shown))) {
			size_t sl = strlen(shown) + 1;

			if (size && (size_t)out + sl > size) {
				free(all);
				return -ERANGE;
			}
			if (size)
				memcpy(buf + out, shown, sl);
			out += (ssize_t)sl;
		}
		i += (ssize_t)l;
	}
	free(all);
	return out;
}

static int ns_setxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name,
		       const char *value, size_t size, int flags)
{
	char esc[XATTR_NAME_MAX + 1];
	int ret = pfs_layer_prepare_change(fs, n, -1);

	if (ret == 0)
		ret = stored_name(fs, &name, esc);
	return ret < 0 ? ret : pfs_backing_setxattr(fs, n, name, value, size, flags);
}

static int ns_removexattr(struct pfs_fs *fs, struct pfs_node *n, const char *name)
{
	char esc[XATTR_NAME_MAX + 1];
	ssize_t r;
	int ret;

	/* Removing what is not there changes nothing, so it copies nothing
	 * up (as overlayfs): ENODATA from the lower. */
	r = ns_getxattr(fs, n, name, NULL, 0);
	if (r < 0)
		return (int)r;
	ret = pfs_layer_prepare_change(fs, n, -1);
	if (ret == 0)
		ret = stored_name(fs, &name, esc);
	return ret < 0 ? ret : pfs_backing_removexattr(fs, n, name);
}

static void ns_root_dirs(struct pfs_fs *fs, void (*cb)(struct pfs_fs *fs, int fd))
{
	for (size_t i = 0; i < fs->layers->n; i++) {
		int fd = fcntl(fs->layers->root[i], F_DUPFD_CLOEXEC, 0);

		cb(fs, fd < 0 ? -errno : fd);
	}
}

static struct pfs_node *ns_held(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
				bool *exists, bool synthetic)
{
	/* A synthetic directory is a lower one here: a node like any other. */
	return pfs_lmap_held_child(fs, parent, name, exists);
}

static uint64_t ns_targets_changed(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	return 0; /* targets are lower content: never changed through the mount */
}

const struct pfs_ns_ops pfs_ns_layered = {
	.name = "layered",
	.lookup = pfs_layer_lookup,
	.mknod = ns_mknod,
	.mkdir = ns_mkdir,
	.symlink = ns_symlink,
	.link = pfs_layer_link,
	.remove = pfs_layer_remove,
	.rename = pfs_layer_rename,
	.readlink = pfs_backing_readlink,
	.create = ns_create,
	.getattr = pfs_backing_stat,
	.fix_attr = ns_fix_attr,
	.may_change = ns_may_change,
	.access = ns_access,
	.statfs_fd = ns_statfs_fd,
	.prepare_change = ns_prepare_change,
	.serve_open = ns_serve_open,
	.snapshot = ns_snapshot,
	.open_dir = ns_open_dir,
	.list = ns_list,
	.node_name = pfs_layer_node_name,
	.getxattr = ns_getxattr,
	.listxattr = ns_listxattr,
	.setxattr = ns_setxattr,
	.removexattr = ns_removexattr,
	.root_dirs = ns_root_dirs,
	.held = ns_held,
	.targets_changed = ns_targets_changed,
};
