/* attr: what the view shows of a node -- its attributes and inode number,
 * whether it may change, how long the kernel may keep them -- and the root
 * a key "/" with a target makes, and synthetic directories. */
#include "view/view.h"
#include "view/ns.h"
#include "view/resolve.h"
#include "layers/layer.h" /* pfs_lnode: which layer a node is in */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The table's verdict on the node's own path. */
static int node_res(struct pfs_fs *fs, struct pfs_node *n, struct pfs_map *m,
		    struct pfs_map_res *r)
{
	char *vp = pfs_node_path(fs, n, NULL);

	if (!vp)
		return -ENOMEM;
	pfs_map_resolve(m, vp, r);
	free(vp);
	return 0;
}

int pfs_view_writable(struct pfs_fs *fs, struct pfs_node *n)
{
	struct pfs_map_res r;
	struct pfs_map *m;
	int ret = 0;

	if (fs->read_only)
		return -EROFS;
	ret = fs->ns->may_change(fs, n);
	if (ret < 0)
		return ret;
	m = pfs_view_map(fs);
	if (!m)
		return 0;
	ret = node_res(fs, n, m, &r);
	/* What a layered mount's upper holds at a hidden path is the user's own. */
	if (ret == 0 && r.hidden && !(n->ln && n->ln->top == 0))
		ret = -EACCES;
	else if (ret == 0 && r.readonly)
		ret = -EROFS;
	pfs_map_unref(m);
	return ret;
}

bool pfs_view_aliased(struct pfs_fs *fs, struct pfs_node *n)
{
	struct pfs_node *sib;

	if (!fs->watch || !pfs_node_siblings(fs, n, &sib, 1))
		return false;
	pfs_node_release(fs, sib);
	return true;
}

double pfs_view_attr_timeout(struct pfs_fs *fs, struct pfs_node *n)
{
	/* Open by a writer the kernel may not hear of (file.c); asked first,
	 * as it also finds when such a writer has gone. */
	if (pfs_view_writing(fs, n))
		return 0;
	/* A file with a node of its own at one place (the table shows it
	 * differently there) is also reachable by other nodes whose writes
	 * this one never hears of: ask each time. */
	if (fs->watch && n->ctx && n->type != S_IFDIR)
		return 0;
	/* A directory seen at several places changes through any of them. */
	if (n->type == S_IFDIR && pfs_view_aliased(fs, n))
		return 0;
	return fs->timeout;
}

ino_t pfs_view_ino(struct pfs_fs *fs, uint64_t ctx, const struct stat *st)
{
	char dev[24];

	/* Objects a mapping brings from other filesystems keep inode numbers
	 * apart from the source's (as overlayfs's xino does), so tools that
	 * key on (st_dev, st_ino) do not take them for hard links. */
	(void)ctx;
	if (!fs->watch || st->st_dev == fs->root->dev || (st->st_ino >> 56))
		return st->st_ino;
	snprintf(dev, sizeof(dev), "%llx", (unsigned long long)st->st_dev);
	return st->st_ino | (uint64_t)(pfs_map_hash(dev) % 255 + 1) << 56;
}

static void fix_attr(struct pfs_fs *fs, struct pfs_node *n, struct stat *st)
{
	struct pfs_map_res r;
	struct pfs_map *m;

	if (!fs->ns->fix_attr(fs, n, st))
		return;
	if (!n->ctx && n != fs->root)
		return; /* names with attributes from the table have a ctx */
	m = pfs_view_map(fs);
	if (!m)
		return;
	if (node_res(fs, n, m, &r) == 0 && r.exact && r.entry) {
		if (r.entry->has_mode)
			st->st_mode = (st->st_mode & S_IFMT) | r.entry->mode;
		if (r.entry->has_uid)
			st->st_uid = r.entry->uid;
		if (r.entry->has_gid)
			st->st_gid = r.entry->gid;
	}
	pfs_map_unref(m);
}

void pfs_view_fix_attr(struct pfs_fs *fs, struct pfs_node *n, struct stat *st)
{
	uint32_t id;

	fix_attr(fs, n, st);
	/* The table's owners are ids as stored, like the files': mapped alike.
	 * An id no range holds is shown as the kernel shows one a user
	 * namespace does not map (fuse-overlayfs does the same). */
	if (fs->uidmap)
		st->st_uid = pfs_idmap_shown(fs->uidmap, st->st_uid, &id) ? id : fs->overflow_uid;
	if (fs->gidmap)
		st->st_gid = pfs_idmap_shown(fs->gidmap, st->st_gid, &id) ? id : fs->overflow_gid;
	/* Last, over the table's owners too: fuse-overlayfs's squash shows
	 * every object as one owner, whatever its layer or table says. */
	if (fs->squash_uid)
		st->st_uid = fs->squash_uid_to;
	if (fs->squash_gid)
		st->st_gid = fs->squash_gid_to;
}

bool pfs_view_ids_stored(const struct pfs_fs *fs, uid_t *uid, gid_t *gid)
{
	uint32_t u = *uid, g = *gid;

	if (fs->uidmap && *uid != (uid_t)-1 && !pfs_idmap_stored(fs->uidmap, *uid, &u))
		return false;
	if (fs->gidmap && *gid != (gid_t)-1 && !pfs_idmap_stored(fs->gidmap, *gid, &g))
		return false;
	*uid = u;
	*gid = g;
	return true;
}

int pfs_view_creator_mapped(const struct pfs_fs *fs, const struct fuse_ctx *ctx)
{
	uid_t uid;
	gid_t gid;

	if (!ctx)
		return 0;
	uid = ctx->uid;
	gid = ctx->gid;
	return pfs_view_ids_stored(fs, &uid, &gid) ? 0 : -EOVERFLOW;
}

int pfs_view_attr_fixed(struct pfs_fs *fs, struct pfs_node *n, int valid)
{
	struct pfs_map_res r;
	struct pfs_map *m;
	int ret = 0;

	if (!n->ctx && n != fs->root)
		return 0;
	m = pfs_view_map(fs);
	if (!m)
		return 0;
	if (node_res(fs, n, m, &r) == 0 && r.exact && r.entry &&
	    (((valid & FUSE_SET_ATTR_MODE) && r.entry->has_mode) ||
	     ((valid & FUSE_SET_ATTR_UID) && r.entry->has_uid) ||
	     ((valid & FUSE_SET_ATTR_GID) && r.entry->has_gid)))
		ret = -EPERM; /* the table decides these, not chmod/chown */
	pfs_map_unref(m);
	return ret;
}

/* With a key "/" that has a target, the root itself is that directory;
 * *keyed tells whether the table has such a key (when the fd is -ENOENT:
 * no key, or a missing target). */
static int root_target(struct pfs_fs *fs, int flags, bool *keyed)
{
	struct pfs_map_res r;
	struct pfs_map *m = pfs_view_map(fs);
	int fd = -ENOENT;

	*keyed = false;
	if (!m)
		return -ENOENT;
	pfs_map_resolve(m, "/", &r);
	if (r.entry && r.exact && !r.hidden) {
		int d = pfs_target_open_dir(fs, r.entry);

		*keyed = true;
		if (d >= 0 && (flags & O_PATH)) {
			fd = d;
		} else if (d >= 0) {
			fd = pfs_st_openat(fs->store, d, ".", (flags & ~O_PATH) | O_CLOEXEC, 0);
			close(d);
		} else {
			fd = d;
		}
	}
	pfs_map_unref(m);
	return fd;
}

int pfs_view_root_target(struct pfs_fs *fs, int flags)
{
	bool keyed;

	return root_target(fs, flags, &keyed);
}

bool pfs_view_root_keyed(struct pfs_fs *fs)
{
	struct pfs_map_res r;
	struct pfs_map *m = pfs_view_map(fs);
	bool keyed;

	if (!m)
		return false;
	pfs_map_resolve(m, "/", &r);
	keyed = r.entry && r.exact && !r.hidden;
	pfs_map_unref(m);
	return keyed;
}

int pfs_plain_open_dir(struct pfs_fs *fs, struct pfs_node *n, bool *bare)
{
	if (bare)
		*bare = false;
	if (n == fs->root && fs->watch) {
		bool keyed;
		int fd = root_target(fs, O_RDONLY | O_DIRECTORY, &keyed);

		/* A target that cannot be opened is not SOURCE's root either:
		 * the root then has no names of its own, the table's still
		 * show (see pfs_view_opendir). */
		if (keyed || fd != -ENOENT) {
			if (bare)
				*bare = keyed && fd < 0;
			return fd;
		}
	}
	return pfs_backing_reopen(fs, n, O_RDONLY | O_DIRECTORY);
}

int pfs_view_open_dir(struct pfs_fs *fs, struct pfs_node *n)
{
	return fs->ns->open_dir(fs, n, NULL);
}

int pfs_view_synthetic(struct pfs_fs *fs, const char *vpath, struct stat *st)
{
	int fd;

	memset(st, 0, sizeof(*st));
	st->st_dev = 0;
	st->st_ino = pfs_view_synthetic_ino(vpath);
	st->st_mode = S_IFDIR | 0555;
	st->st_nlink = 2;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_atim = st->st_mtim = st->st_ctim = fs->started;
	fd = fcntl(fs->empty_fd, F_DUPFD_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}
