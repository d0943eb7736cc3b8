/* resolve: where a name of the view lives in the stores, as the mapping
 * table says. Nodes are bound to backing objects at lookup; a name is
 * resolved again, against the current table, whenever a call makes, removes
 * or renames one, so a stale node (an open directory whose path the table
 * has since moved) never gets around the table. What the view shows of a
 * node is attr.c's; what a new table makes the kernel forget, mapload.c's. */
#include "view/view.h"
#include "view/resolve.h"
#include "view/selfmnt.h"

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

/* Unlike a name the table places (whose last component is the object
 * shown, a symlink included, never followed here), a graft's root is walked
 * into, its last component too: beneath the source, a symlink there, even
 * one swapped in while mounted, cannot lead out (EXDEV). */
int pfs_target_open_dir(struct pfs_fs *fs, const struct pfs_map_entry *e)
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

bool pfs_target_entry_near(struct pfs_fs *fs, const struct pfs_map *m, struct pfs_node *parent,
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
	return pfs_target_entry_near(fs, pl->map, parent, pl->res.entry, pl->vpath);
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
		base = pfs_target_open_dir(fs, e);
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
