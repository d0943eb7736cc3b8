/* resolve: where a name of the view lives in the stores, as the mapping
 * table says. Nodes are bound to backing objects at lookup; a name is
 * resolved again, against the current table, whenever a call makes, removes
 * or renames one, so a stale node (an open directory whose path the table
 * has since moved) never gets around the table. */
#include "view/view.h"
#include "view/selfmnt.h"
#include "layers/layer.h"
#include "layers/layermap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pfs_map *pfs_view_map(struct pfs_fs *fs)
{
	struct pfs_map *m;

	/* Without --map there is never a table: no lock on the hot path. */
	if (!fs->watch)
		return NULL;
	pthread_mutex_lock(&fs->map_lock);
	m = fs->map ? pfs_map_ref(fs->map) : NULL;
	pthread_mutex_unlock(&fs->map_lock);
	return m;
}

/* Node ctx for objects an entry places: same key and target, same nodes; a
 * key given a new target gets new ones. */
static uint64_t ctx_of(const struct pfs_map_entry *e)
{
	uint64_t h = pfs_map_hash(e->key) ^ (pfs_map_hash(e->target) * 0x9e3779b97f4a7c15ull);

	return h ? h : 1;
}

void pfs_view_synthetic_stat(struct pfs_fs *fs, ino_t ino, mode_t perm, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | perm;
	st->st_nlink = 2;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	st->st_atim = st->st_mtim = st->st_ctim = fs->started;
}

ino_t pfs_view_synthetic_ino(const char *vpath)
{
	return pfs_map_hash(vpath) & 0x7fffffffffffffffull;
}

/* A target split into the directory holding it and its last name. */
struct target {
	char *buf;       /* owned copy, trailing slashes removed */
	bool beneath;    /* resolved beneath the source root */
	const char *dir; /* NULL: the start itself (source root) */
	const char *name;
	char *cut;       /* the '/' made '\0' between dir and name, or NULL */
};

/* Relative targets, and absolute ones under the mount point (which would
 * re-enter the mount), are taken beneath the source; others as given
 * (and where they reach the mount point another way, a symlink or "..",
 * pfs_selfmnt_opendir takes the rest beneath the source likewise). */
static int target_split(struct pfs_fs *fs, const char *t, struct target *tg)
{
	size_t ml = strlen(fs->mountpoint), tl;
	char *p, *slash;

	tg->buf = strdup(t);
	if (!tg->buf)
		return -ENOMEM;
	p = tg->buf;
	tl = strlen(p);
	while (tl > 1 && p[tl - 1] == '/')
		p[--tl] = '\0';
	tg->beneath = p[0] != '/';
	if (!tg->beneath && strncmp(p, fs->mountpoint, ml) == 0 &&
	    (p[ml] == '/' || p[ml] == '\0' || ml == 1)) {
		p += ml;
		while (*p == '/')
			p++;
		if (!*p)
			p = ".";
		tg->beneath = true;
	}
	slash = strrchr(p, '/');
	tg->cut = NULL;
	if (!slash) {
		tg->dir = NULL;
		tg->name = p;
	} else if (slash == p) { /* "/" or "/x" */
		tg->dir = "/";
		tg->name = slash[1] ? slash + 1 : ".";
	} else {
		*slash = '\0';
		tg->cut = slash;
		tg->dir = p;
		tg->name = slash + 1;
	}
	return 0;
}

/* An O_PATH fd on the directory holding the target (owned), or -errno.
 * Either way the walk never enters this very mount (selfmnt.h). */
static int target_dir(struct pfs_fs *fs, const struct target *tg)
{
	int fd;

	if (!tg->dir) {
		fd = fcntl(fs->root_fd, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	return pfs_selfmnt_opendir(fs, fs->root_fd, tg->dir);
}

/* The directory an entry's target names (a graft's root), owned, or -errno.
 * Unlike a name the table places (whose last component is the object shown,
 * a symlink included, never followed here), this directory is walked into,
 * its last component too: beneath the source, a symlink there, even one
 * swapped in while mounted, cannot lead out (EXDEV). */
static int target_open_dir(struct pfs_fs *fs, const struct pfs_map_entry *e)
{
	struct target tg;
	int fd = target_split(fs, e->target, &tg);

	if (fd < 0)
		return fd;
	if (tg.cut)
		*tg.cut = '/';
	if (!tg.beneath)
		fd = pfs_selfmnt_opendir(fs, fs->root_fd, e->target);
	else
		fd = pfs_selfmnt_opendir(fs, fs->root_fd, tg.cut ? tg.dir : tg.name);
	free(tg.buf);
	return fd;
}

/* Open each component of rel[0..len) as a directory, never through a
 * symlink, from dirfd (borrowed). Returns an owned fd or -errno. */
static int walk_dirs(struct pfs_fs *fs, int dirfd, const char *rel, size_t len)
{
	const char *p = rel, *end = rel + len;
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	while (p < end) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		size_t n = slash ? (size_t)(slash - p) : (size_t)(end - p);
		char comp[NAME_MAX + 1];
		int next;

		if (n == 0) {
			p++;
			continue;
		}
		if (n > NAME_MAX) {
			close(fd);
			return -ENAMETOOLONG;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		next = pfs_selfmnt_openat(fs, fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		if (next < 0)
			return -errno;
		fd = next;
		p += n + 1;
	}
	return fd;
}

/* A walk that finds nothing behind the name is not an error: the place has
 * no directory (dirfd -1) and the caller decides (ENOENT, or synthetic).
 * Nor is one that would leave SOURCE: that entry fails alone (EXDEV where
 * a missing target gives ENOENT), the names around and below it still work. */
static int set_walked(struct pfs_place *pl, int fd)
{
	if (fd == -EXDEV)
		pl->unreach = -EXDEV;
	if (fd == -ENOENT || fd == -ENOTDIR || fd == -ELOOP || fd == -EXDEV)
		return 0;
	if (fd < 0)
		return fd;
	pl->dirfd = pl->own_fd = fd;
	return 0;
}

/* Does resolving e's target pass through the directory (dev, ino)? */
static bool target_passes(struct pfs_fs *fs, const struct pfs_map_entry *e, dev_t dev, ino_t ino)
{
	struct target tg;
	bool near = false;
	char *p, *save = NULL;
	int fd;

	if (target_split(fs, e->target, &tg) < 0)
		return false;
	fd = tg.beneath ? fcntl(fs->root_fd, F_DUPFD_CLOEXEC, 0)
			: pfs_st_openat(fs->store, AT_FDCWD, "/", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	/* tg.dir lies in tg.buf (writable), unless it is the literal "/". */
	p = tg.dir && strcmp(tg.dir, "/") ? strtok_r((char *)tg.dir, "/", &save) : NULL;
	while (fd >= 0) {
		struct stat st;
		int next;

		if (fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
			near = true;
			break;
		}
		if (!p)
			break;
		next = pfs_st_openat(fs->store, fd, p, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
		close(fd);
		fd = next;
		p = strtok_r(NULL, "/", &save);
	}
	if (fd >= 0)
		close(fd);
	free(tg.buf);
	return near;
}

struct sibling_key {
	const struct pfs_map_entry *e;
	bool found;
};

/* Another mapped name beside e whose target is e's or one of its
 * directories (as written): renaming onto it replaces e's object. */
static int sibling_target(const char *name, bool hidden, const struct pfs_map_entry *x, void *arg)
{
	struct sibling_key *sk = arg;
	size_t l;

	(void)name;
	(void)hidden;
	if (!x || x == sk->e || !x->target)
		return 0;
	l = strlen(x->target);
	if (strncmp(sk->e->target, x->target, l) == 0 &&
	    (sk->e->target[l] == '\0' || sk->e->target[l] == '/'))
		sk->found = true;
	return sk->found;
}

/* Must the kernel not cache the mapped name of e in parent (virtual path
 * of the name: vpath)? See pfs_place_near_target. */
static bool entry_near(struct pfs_fs *fs, const struct pfs_map *m, struct pfs_node *parent,
		       const struct pfs_map_entry *e, const char *vpath)
{
	struct sibling_key sk = {.e = e};
	const char *slash = strrchr(vpath, '/');
	char *pv;

	if (!e->target || pfs_node_synthetic(parent))
		return false;
	if (target_passes(fs, e, parent->dev, parent->ino))
		return true;
	pv = strndup(vpath, slash && slash != vpath ? (size_t)(slash - vpath) : 1);
	if (pv)
		pfs_map_children(m, pv, sibling_target, &sk);
	free(pv);
	return sk.found;
}

bool pfs_place_near_target(struct pfs_fs *fs, struct pfs_node *parent,
			   const struct pfs_place *pl)
{
	if (!pl->map || !pl->res.exact || !pl->res.entry || !pl->vpath)
		return false;
	return entry_near(fs, pl->map, parent, pl->res.entry, pl->vpath);
}

static int place_exact(struct pfs_fs *fs, struct pfs_place *pl)
{
	struct target tg;
	int ret = target_split(fs, pl->res.entry->target, &tg);

	if (ret < 0)
		return ret;
	pl->tbuf = tg.buf;
	pl->name = tg.name;
	ret = target_dir(fs, &tg);
	if (ret >= 0 && !tg.beneath && pfs_selfmnt_is(fs, ret, tg.name)) {
		/* The mount point itself, reached by another spelling than
		 * its own (a symlinked ancestor): the source, as that one. */
		close(ret);
		ret = fcntl(fs->root_fd, F_DUPFD_CLOEXEC, 0);
		ret = ret < 0 ? -errno : ret;
		pl->name = ".";
	}
	return set_walked(pl, ret);
}

/* The rest of a place once pl->map and pl->vpath are set: pdir is the
 * directory the parent's own children live in (-1: none, the table says
 * where they are), proot whether the parent is the root, pctx its ctx. */
static int place_resolve(struct pfs_fs *fs, struct pfs_place *pl, int pdir, bool proot,
			 uint64_t pctx)
{
	const struct pfs_map_entry *e;
	const char *last;

	pfs_map_resolve(pl->map, pl->vpath, &pl->res);
	if (pl->res.hidden)
		return 0;
	e = pl->res.entry;
	last = strrchr(pl->vpath, '/') + 1;
	if (e && pl->res.exact) {
		pl->ctx = ctx_of(e);
		pl->dirfd = -1;
		return place_exact(fs, pl);
	}
	pl->name = last;
	/* A name below a real directory is that directory's own child, even
	 * when the table has moved the directory's path since the kernel
	 * looked it up: a process inside it keeps seeing what it holds. Only
	 * the root under a key "/" with a target, and synthetic directories
	 * (nothing behind them), are walked again from what the table says. */
	if (pdir >= 0 && !(proot && e && strcmp(e->key, "/") == 0)) {
		pl->ctx = pctx;
		return 0;
	}
	pl->dirfd = -1;
	if (e) {
		const char *rest = pl->res.rest, *rl = strrchr(rest, '/');
		int base, fd;

		pl->ctx = ctx_of(e);
		base = target_open_dir(fs, e);
		if (base < 0)
			return set_walked(pl, base);
		fd = walk_dirs(fs, base, rest, rl ? (size_t)(rl - rest) : 0);
		close(base);
		return set_walked(pl, fd);
	}
	pl->ctx = 0;
	return set_walked(pl, walk_dirs(fs, fs->root_fd, pl->vpath + 1,
					last - pl->vpath >= 2 ? (size_t)(last - pl->vpath - 2) : 0));
}

int pfs_place_get(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		  struct pfs_place *pl)
{
	int pdir = pfs_node_synthetic(parent) ? -1 : pfs_node_fd(fs, parent);

	memset(pl, 0, sizeof(*pl));
	pl->own_fd = -1;
	if (pdir < -1)
		return pdir;
	pl->dirfd = pdir;
	pl->name = name;
	pl->map = pfs_view_map(fs);
	if (!pl->map)
		return 0;
	pl->vpath = pfs_node_path(fs, parent, name);
	if (!pl->vpath)
		return -ENOMEM;
	return place_resolve(fs, pl, pdir, parent == fs->root, parent->ctx);
}

int pfs_place_at(struct pfs_fs *fs, struct pfs_map *m, char *vpath, int pdir, bool proot,
		 uint64_t pctx, struct pfs_place *pl)
{
	memset(pl, 0, sizeof(*pl));
	pl->dirfd = pdir;
	pl->own_fd = -1;
	pl->map = pfs_map_ref(m);
	pl->vpath = vpath;
	pl->name = strrchr(vpath, '/') + 1;
	return place_resolve(fs, pl, pdir, proot, pctx);
}

uint64_t pfs_place_node_ctx(const struct pfs_place *pl, mode_t mode)
{
	const struct pfs_map_entry *e = pl->res.entry;

	/* Directories placed by different entries are different directories
	 * (their children resolve differently). Other objects are one inode
	 * wherever they appear, as hard links are, so the kernel keeps one
	 * coherent copy of their size and data; only one the table shows
	 * differently (its own mode/owner, or read-only) needs a node of its own. */
	if (S_ISDIR(mode) || !pl->map)
		return pl->ctx;
	if (pl->res.readonly ||
	    (pl->res.exact && e && (e->has_mode || e->has_uid || e->has_gid)))
		return pl->ctx ? pl->ctx : 1;
	return 0;
}

void pfs_place_put(struct pfs_place *pl)
{
	if (pl->own_fd >= 0)
		close(pl->own_fd);
	free(pl->tbuf);
	free(pl->vpath);
	pfs_map_unref(pl->map);
	pl->map = NULL;
	pl->vpath = NULL;
	pl->tbuf = NULL;
	pl->own_fd = -1;
}

int pfs_place_creatable(struct pfs_fs *fs, const struct pfs_place *pl)
{
	if (fs->read_only)
		return -EROFS;
	if (!pl->map)
		return pl->dirfd < 0 ? -ENOENT : 0;
	if (pl->res.hidden)
		return -EACCES; /* a hidden name may not be brought back */
	if (pl->res.readonly)
		return -EROFS;
	if (pl->dirfd < 0 && pl->unreach)
		return pl->unreach;
	if (pl->dirfd < 0) /* a synthetic parent: read-only by design */
		return pl->res.exact ? -ENOENT : -EROFS;
	return 0;
}

int pfs_place_removable(struct pfs_fs *fs, const struct pfs_place *pl, bool is_dir)
{
	(void)is_dir;
	if (fs->read_only)
		return -EROFS;
	if (!pl->map)
		return pl->dirfd < 0 ? -ENOENT : 0;
	if (pl->res.hidden)
		return -ENOENT;
	if (pl->res.readonly)
		return -EROFS;
	/* Mapped names and the directories holding them are like mount points. */
	if (pl->res.exact || pl->res.parent_of_keys)
		return -EBUSY;
	if (pl->dirfd < 0)
		return pl->unreach ? pl->unreach : -ENOENT;
	return 0;
}

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

	/* In a layered view a synthetic directory is a lower one: it copies up. */
	if (fs->read_only || (pfs_node_synthetic(n) && !fs->layers))
		return -EROFS;
	m = pfs_view_map(fs);
	if (!m)
		return 0;
	ret = node_res(fs, n, m, &r);
	/* ... and what the upper holds at a hidden path is the user's own. */
	if (ret == 0 && r.hidden && !(fs->layers && n->ln && n->ln->top == 0))
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

void pfs_view_fix_attr(struct pfs_fs *fs, struct pfs_node *n, struct stat *st)
{
	struct pfs_map_res r;
	struct pfs_map *m;

	if (fs->layers) {
		if (n->ln && n->ln->syn && n->ln->top == 1)
			pfs_lmap_syn_attr(fs, n->ino, st); /* nothing copied up yet */
		st->st_ino = pfs_layer_ino(fs, n->dev, n->ino);
		/* A merged directory's links cannot be counted cheaply: 1 is
		 * what find and other walkers take as "unknown", as overlayfs. */
		if (S_ISDIR(st->st_mode) && pfs_layer_merged(n))
			st->st_nlink = 1;
		if (!n->ctx)
			return; /* names with attributes from the table have a ctx */
	}
	if (pfs_node_synthetic(n) && !fs->layers) {
		pfs_view_synthetic_stat(fs, n->ino, 0555, st);
		return;
	}
	if (!fs->layers)
		st->st_ino = pfs_view_ino(fs, n->ctx, st);
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
		int d = target_open_dir(fs, r.entry);

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

int pfs_view_open_dir(struct pfs_fs *fs, struct pfs_node *n)
{
	if (n == fs->root && fs->watch && !fs->layers) {
		bool keyed;
		int fd = root_target(fs, O_RDONLY | O_DIRECTORY, &keyed);

		/* A target that cannot be opened is not SOURCE's root either:
		 * the root then has no names of its own (see pfs_view_opendir). */
		if (keyed || fd != -ENOENT)
			return fd;
	}
	return pfs_backing_reopen(fs, n, O_RDONLY | O_DIRECTORY);
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
	return r.entry && r.exact && !r.hidden ? target_open_dir(fs, r.entry) : -ENOENT;
}

static void forget_root(struct pfs_fs *fs, const struct pfs_map *old, const struct pfs_map *nw)
{
	/* The root's names: its backing directory's (each layer's), those of
	 * the directories the old and new key "/" named, and the tables'. */
	if (fs->layers) {
		for (size_t i = 0; i < fs->layers->n; i++)
			forget_root_names(fs, fcntl(fs->layers->root[i], F_DUPFD_CLOEXEC, 0));
	} else {
		forget_root_names(fs, pfs_backing_reopen(fs, fs->root, O_RDONLY | O_DIRECTORY));
	}
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
	struct pfs_place pl;
	struct pfs_node *n = NULL;
	struct stat st;

	if (fs->layers)
		return pfs_lmap_held_child(fs, parent, name, exists);
	*exists = false;
	if (pfs_place_get(fs, parent, name, &pl) == 0 && !pl.res.hidden && pl.dirfd >= 0 &&
	    pfs_selfmnt_fstatat(fs, pl.dirfd, pl.name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		*exists = true;
		n = pfs_node_find(fs, st.st_dev, st.st_ino, pfs_place_node_ctx(&pl, st.st_mode));
	}
	pfs_place_put(&pl);
	return n;
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
	struct pfs_node *n;
	bool exists;
	char *vp;

	n = held_child(fs, dir, name, &exists);
	if (n || exists || fs->layers)
		return n;
	vp = pfs_node_path(fs, dir, name);
	if (vp) /* as pfs_view_lookup makes it */
		n = pfs_node_find(fs, 0, pfs_view_synthetic_ino(vp), pfs_map_hash(vp));
	free(vp);
	return n;
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
			if (rc->queued && dir == rc->locked && entry_near(fs, rc->map, dir, e, e->key)) {
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
	struct recheck rc = {.fs = fs, .queued = true, .locked = parent};
	struct pfs_place pl;
	struct stat st;

	if (fs->layers)
		return 0; /* targets are lower content: never changed through the mount */
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
}
