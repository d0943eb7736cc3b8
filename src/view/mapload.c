/* mapload: a new mapping table, and a request that may have replaced a
 * target. The kernel keeps names for --timeout, bound to the objects it was
 * given: whatever the change may have given another meaning is forgotten,
 * and nothing more (forgetting a name detaches what is mounted below it). */
#include "view/view.h"
#include "view/ns.h"
#include "view/resolve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The kernel forgets the name (parent, name) and what it knew below it. */
static void forget_name(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	fs->kernel->inval_entry(fs->kernel_ctx, pfs_ino_of(fs, parent), name, strlen(name));
}

/* Every name directly in the root: the backing root's and the tables'. */
static int forget_root_child(const char *name, bool hidden, const struct pfs_map_entry *e,
			     void *arg)
{
	(void)hidden;
	(void)e;
	forget_name(arg, ((struct pfs_fs *)arg)->root, name);
	return 0;
}

/* Every name in the directory dfd (owned) is forgotten in the root. */
static void forget_root_names(struct pfs_fs *fs, int dfd)
{
	int fd = dfd >= 0 ? pfs_st_openat(fs->store, dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
			  : -1;
	DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (fd >= 0 && !dp)
		close(fd);
	while (dp && (de = readdir(dp)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			forget_name(fs, fs->root, de->d_name);
	if (dp)
		closedir(dp);
	if (dfd >= 0)
		close(dfd);
}

/* The directory a key "/" with a target makes the root in table m. */
static int root_target_of(struct pfs_fs *fs, const struct pfs_map *m)
{
	struct pfs_map_res r;

	pfs_map_resolve(m, "/", &r);
	return r.entry && r.exact && !r.hidden ? pfs_target_open_dir(fs, r.entry) : -ENOENT;
}

static void forget_root(struct pfs_fs *fs, const struct pfs_map *old, const struct pfs_map *nw)
{
	/* The root's names: its backing directory's (each layer's), those of
	 * the directories the old and new key "/" named, and the tables'. */
	fs->ns->root_dirs(fs, forget_root_names);
	forget_root_names(fs, root_target_of(fs, old));
	forget_root_names(fs, root_target_of(fs, nw));
	pfs_map_children(old, "/", forget_root_child, fs);
	pfs_map_children(nw, "/", forget_root_child, fs);
	fs->kernel->inval_inode(fs->kernel_ctx, FUSE_ROOT_ID, 0, 0);
}

/* The node the kernel holds for (parent, name) under the current table. */
static struct pfs_node *held_child(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
				   bool *exists)
{
	return fs->ns->held(fs, parent, name, exists, false);
}

/* A key changed: walk down to it through the nodes the kernel holds and
 * make the kernel forget the highest name whose meaning may have changed:
 * a directory that may have become or stopped being synthetic, else the
 * key's own name. Nothing above it is touched (forgetting a name detaches
 * whatever is mounted below it, so forget as little as possible). */
static int forget_key(const char *key, void *arg)
{
	struct pfs_fs *fs = arg;
	struct pfs_node *dir = fs->root, *child;
	const char *p = key + 1;
	char comp[NAME_MAX + 1];

	if (strcmp(key, "/") == 0)
		return 1; /* the caller forgets the whole root */
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		bool exists;

		if (n > NAME_MAX)
			break;
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (!slash) {
			forget_name(fs, dir, comp);
			child = held_child(fs, dir, comp, &exists);
			if (child) { /* same node, new attributes (mode, owner) */
				fs->kernel->inval_inode(fs->kernel_ctx, pfs_ino_of(fs, child), 0, 0);
				pfs_node_release(fs, child);
			}
			break;
		}
		child = held_child(fs, dir, comp, &exists);
		if (!exists) { /* synthetic now or before: its existence changed */
			forget_name(fs, dir, comp);
			break;
		}
		if (dir != fs->root)
			pfs_node_release(fs, dir);
		dir = child;
		if (!dir)
			return 0; /* the kernel holds nothing below */
		p = slash + 1;
	}
	if (dir != fs->root)
		pfs_node_release(fs, dir);
	return 0;
}

/* The node the kernel holds at (dir, name), held, a synthetic directory
 * included; NULL if none. */
static struct pfs_node *held_dir(struct pfs_fs *fs, struct pfs_node *dir, const char *name)
{
	bool exists;

	return fs->ns->held(fs, dir, name, &exists, true);
}

struct recheck {
	struct pfs_fs *fs;
	bool queued;   /* from a request: through the invalidation thread */
	struct pfs_node *locked; /* the request's directory, locked by the kernel */
	const struct pfs_map *map; /* the table rechecked */
	uint64_t last; /* the last invalidation queued */
};

/* The kernel keeps a mapped name for as long as --timeout says, bound to
 * the object it was given: if the key's target now names another object
 * (replaced, moved, removed, made anew), or the kernel never got the
 * current one by that name, the name is forgotten. Walks down through the
 * nodes the kernel holds, as forget_key does; nothing above the key is
 * touched. */
static int recheck_key(const struct pfs_map_entry *e, void *arg)
{
	struct recheck *rc = arg;
	struct pfs_fs *fs = rc->fs;
	struct pfs_node *dir = fs->root, *cur;
	const char *p = e->key + 1;
	char comp[NAME_MAX + 1];

	if (strcmp(e->key, "/") == 0)
		return 0; /* the root is no name */
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		bool exists;

		if (n > NAME_MAX)
			break;
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (!slash) {
			cur = held_child(fs, dir, comp, &exists);
			/* A key in the very directory the request changed is
			 * not cached when a change there can reach its target
			 * (pfs_place_near_target): nothing to drop, and dropping
			 * it would wait for the request's end. */
			if (rc->queued && dir == rc->locked &&
			    pfs_target_entry_near(fs, rc->map, dir, e, e->key)) {
				/* nothing */
			} else if (!cur || !pfs_node_known_as(fs, cur, dir, comp)) {
				if (rc->queued) {
					uint64_t seq = pfs_inval_entry(fs, dir, comp);

					rc->last = seq ? seq : rc->last;
				} else {
					forget_name(fs, dir, comp);
				}
			}
			if (cur)
				pfs_node_release(fs, cur);
			break;
		}
		cur = held_dir(fs, dir, comp);
		if (dir != fs->root)
			pfs_node_release(fs, dir);
		dir = cur;
		if (!dir)
			return 0; /* the kernel holds nothing below */
		p = slash + 1;
	}
	if (dir != fs->root)
		pfs_node_release(fs, dir);
	return 0;
}

uint64_t pfs_view_targets_changed(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	return fs->ns->targets_changed(fs, parent, name);
}

uint64_t pfs_plain_targets_changed(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	struct recheck rc = {.fs = fs, .queued = true, .locked = parent};
	struct pfs_place pl;
	struct stat st;

	if (pfs_place_get(fs, parent, name, &pl) < 0 || !pl.map) {
		pfs_place_put(&pl);
		return 0;
	}
	rc.map = pl.map;
	pfs_map_targets_through(pl.map, name, recheck_key, &rc);
	/* The name is itself a mapped one (a file saved onto it): its target
	 * changed under another name, in another directory. */
	if (pl.res.exact && pl.res.entry && pl.res.entry->target && pl.dirfd >= 0 &&
	    strcmp(pl.name, name) != 0)
		pfs_map_targets_through(pl.map, pl.name, recheck_key, &rc);
	if (pl.res.exact && pl.res.entry && pl.res.entry->target && pl.dirfd >= 0 &&
	    fstat(pl.dirfd, &st) == 0) {
		struct pfs_node *dirs[16];
		size_t count = pfs_node_all(fs, st.st_dev, st.st_ino, dirs, 16);

		for (size_t i = 0; i < count; i++) {
			uint64_t seq = pfs_inval_entry(fs, dirs[i], pl.name);

			rc.last = seq ? seq : rc.last;
			pfs_node_release(fs, dirs[i]);
		}
	}
	pfs_place_put(&pl);
	return rc.last;
}

void pfs_view_set_map(struct pfs_fs *fs, struct pfs_map *map)
{
	struct pfs_map *old;

	pthread_mutex_lock(&fs->map_lock);
	old = fs->map;
	fs->map = map;
	pthread_mutex_unlock(&fs->map_lock);
	/* After the swap, without the lock: the kernel may call back into the
	 * daemon while it drops names, and those calls see the new table. */
	if (fs->kernel && pfs_map_diff(old, map, forget_key, fs) == 1)
		forget_root(fs, old, map);
	/* Keys the update left as they were may show a stale object too (their
	 * target replaced since the kernel looked them up): a reload sets every
	 * name right. */
	if (fs->kernel) {
		struct recheck rc = {.fs = fs, .map = map};

		pfs_map_targets_through(map, NULL, recheck_key, &rc);
	}
	pfs_map_unref(old);
	pfs_node_request_done(fs); /* the node fds that walk used */
	pfs_view_past_table(fs);
}
