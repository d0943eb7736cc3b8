/* layer_past: the merged tree of a layered mount with --history as it was
 * at a snapshot (store/past.h; docs/HISTORY.md, Layered mounts).
 *
 * The history store journals the upper (its root is the upper directory),
 * so its past is the upper as it was. The lowers never change. The merged
 * tree at S is therefore the upper at S laid over the lowers as they are,
 * merged by overlayfs's rules: a 0/0 character device (or `.wh.NAME`)
 * hides the name below, an opaque directory (overlay.opaque "y", or
 * `.wh..wh..opq`) hides every layer below, a non-directory ends the merge,
 * the attributes are the topmost object's. This table answers that, asking
 * the history's past for the upper and reading the lowers directly; the
 * view shows it under .history as it shows a plain mount's.
 *
 * Not followed: overlay.redirect (a mount with --history refuses
 * redirect_dir=on and metacopy=on, so no upper directory has one) and
 * data-only layers (refused too). An upper directory removed since S
 * lost its xattrs: if it was opaque then, the past shows the lowers'
 * names beneath it too (docs/HISTORY.md says so).
 *
 * export_layer writes the upper as it was into a new directory: laid
 * over the same lowers, kernel overlayfs shows the snapshot. */
#include "util/util.h"
#include "layers/layer_int.h"
#include "layers/ovlfmt.h"
#include "store/past.h"
#include "store/rmtree.h"
#include "view/view.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

struct lpast {
	struct pfs_past base;
	const struct pfs_past *up; /* the upper's past (the history's) */
	struct pfs_fs *fs;
};

/* Where a merged path at S is: in the upper (layer 0) or lower layer. */
struct lres {
	int layer;
	struct pfs_past_obj o;
	bool up_dir;    /* a directory of the upper at S is part of it */
	bool up_opaque; /* ... and it hides the lowers */
	size_t nlow;    /* the lowers' directories merged in it, top first */
	int low[PFS_LAYERS_MAX];
};

static bool up_whiteout(const struct pfs_past_obj *o)
{
	return S_ISCHR(o->mode) && o->rdev == 0;
}

/* The last regular layer + 1: data-only layers are never merged. */
static size_t nregular(const struct pfs_layers *L)
{
	return L->n - L->ndata;
}

static void obj_of(const struct stat *st, struct pfs_past_obj *o)
{
	memset(o, 0, sizeof(*o));
	o->mode = st->st_mode;
	o->uid = st->st_uid;
	o->gid = st->st_gid;
	o->size = st->st_size;
	o->nlink = st->st_nlink;
	o->rdev = st->st_rdev;
	o->mtime = st->st_mtim;
	o->ctime = st->st_ctim;
}

static bool up_opaque(struct lpast *p, const char *snap, const char *path)
{
	char v[8];
	ssize_t n = p->up->getxattr(p->up->ctx, snap, path, "trusted.overlay.opaque", v,
				    sizeof(v) - 1);

	if (n < 0)
		n = p->up->getxattr(p->up->ctx, snap, path, "user.overlay.opaque", v,
				    sizeof(v) - 1);
	if (n == 1 && v[0] == 'y')
		return true;
	{
		char m[PATH_MAX];
		struct pfs_past_obj o;

		if ((size_t)snprintf(m, sizeof(m), "%s%s" PFS_OVL_OPAQUE_MARKER, path,
				     *path ? "/" : "") >= sizeof(m))
			return false;
		return p->up->stat(p->up->ctx, snap, m, &o) == 0;
	}
}

/* Is there a `.wh.NAME` whiteout of path's name in the upper at S? */
static bool up_wh_file(struct lpast *p, const char *snap, const char *path)
{
	const char *slash = strrchr(path, '/');
	char m[PATH_MAX];
	struct pfs_past_obj o;
	int dl = slash ? (int)(slash - path) : 0;

	if ((size_t)snprintf(m, sizeof(m), "%.*s%s" PFS_OVL_WH_PREFIX "%s", dl, path,
			     slash ? "/" : "", slash ? slash + 1 : path) >= sizeof(m))
		return false;
	return p->up->stat(p->up->ctx, snap, m, &o) == 0;
}

static bool low_opaque(struct pfs_fs *fs, int i, const char *path)
{
	char v[8];
	int fd = openat(fs->layers->root[i], *path ? path : ".",
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	bool op = false;

	if (fd < 0)
		return false;
	if (pfs_ovl_get(fs->store, pfs_ref_fd(fd), "opaque", v, sizeof(v)) >= 0)
		op = strcmp(v, "y") == 0;
	if (!op && faccessat(fd, PFS_OVL_OPAQUE_MARKER, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		op = true;
	close(fd);
	return op;
}

static bool low_wh_file(struct pfs_fs *fs, int i, const char *path)
{
	const char *slash = strrchr(path, '/');
	char m[PATH_MAX];
	int dl = slash ? (int)(slash - path) : 0;

	if ((size_t)snprintf(m, sizeof(m), "%.*s%s" PFS_OVL_WH_PREFIX "%s", dl, path,
			     slash ? "/" : "", slash ? slash + 1 : path) >= sizeof(m))
		return false;
	return faccessat(fs->layers->root[i], m, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Resolve merged path at snap, component by component, as overlayfs
 * looks it up. 0, -ENOENT, -ENOTDIR, or -errno. */
static int resolve(struct lpast *p, const char *snap, const char *path, struct lres *r)
{
	struct pfs_layers *L = p->fs->layers;
	char pre[PATH_MAX];
	const char *c = path;
	bool up_alive = true;
	int ret;

	memset(r, 0, sizeof(*r));
	ret = p->up->stat(p->up->ctx, snap, "", &r->o);
	if (ret < 0)
		return ret;
	r->layer = 0;
	r->up_dir = true;
	for (size_t i = 1; i < nregular(L); i++)
		r->low[r->nlow++] = (int)i;
	pre[0] = '\0';
	while (*c) {
		size_t cl = strcspn(c, "/"), pl = strlen(pre);
		int low[PFS_LAYERS_MAX];
		size_t nlow = 0;
		bool found = false, isdir = false, opaque = false;
		struct stat st;

		if (!S_ISDIR(r->o.mode))
			return -ENOTDIR;
		if (pl + 1 + cl >= sizeof(pre))
			return -ENAMETOOLONG;
		snprintf(pre + pl, sizeof(pre) - pl, "%s%.*s", pl ? "/" : "", (int)cl, c);
		c += cl;
		c += *c == '/';
		if (up_alive && r->up_dir) {
			ret = p->up->stat(p->up->ctx, snap, pre, &r->o);
			if (ret == 0) {
				if (up_whiteout(&r->o))
					return -ENOENT;
				found = true;
				r->layer = 0;
				isdir = S_ISDIR(r->o.mode);
				opaque = !isdir || up_opaque(p, snap, pre);
			} else if (ret == -ENOENT || ret == -ENOTDIR) {
				up_alive = false;
				if (up_wh_file(p, snap, pre))
					return -ENOENT;
			} else {
				return ret;
			}
		} else {
			up_alive = false;
		}
		r->up_dir = up_alive && isdir;
		r->up_opaque = r->up_dir && opaque;
		for (size_t k = 0; !opaque && k < r->nlow; k++) {
			int i = r->low[k];

			if (fstatat(L->root[i], pre, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				if (errno == ENOENT || errno == ENOTDIR)
					continue;
				return -errno;
			}
			if (pfs_ovl_is_whiteout(&st))
				break;
			if (!found) {
				found = true;
				r->layer = i;
				obj_of(&st, &r->o);
				isdir = S_ISDIR(st.st_mode);
			} else if (!S_ISDIR(st.st_mode)) {
				break; /* a non-directory below a directory ends the merge */
			}
			if (!isdir)
				break;
			low[nlow++] = i;
			if (low_opaque(p->fs, i, pre) || low_wh_file(p->fs, i, pre))
				break;
		}
		if (!found)
			return -ENOENT;
		memcpy(r->low, low, nlow * sizeof(low[0]));
		r->nlow = nlow;
	}
	return 0;
}

static int l_snapshots(void *ctx, pfs_past_name_cb *cb, void *arg)
{
	struct lpast *p = ctx;

	return p->up->snapshots(p->up->ctx, cb, arg);
}

static int l_stat(void *ctx, const char *snap, const char *path, struct pfs_past_obj *o)
{
	struct lres *r = malloc(sizeof(*r));
	int ret;

	if (!r)
		return -ENOMEM;
	ret = resolve(ctx, snap, path, r);
	if (ret == 0)
		*o = r->o;
	free(r);
	return ret == -ENOTDIR ? -ENOENT : ret;
}

/* The names seen while merging a directory: shown, or hidden by a
 * whiteout above. */
struct seen {
	char *name;
	mode_t type;
	bool hidden;
};

static int seen_cmp(const void *a, const void *b)
{
	return strcmp(((const struct seen *)a)->name, ((const struct seen *)b)->name);
}

struct gather {
	void *tree;
	struct seen **all;
	size_t n, cap;
	int err;
	struct lpast *p;
	const char *snap, *dir;
};

static void add(struct gather *g, const char *name, mode_t type, bool hidden)
{
	struct seen key = {.name = (char *)name}, *s, **slot;

	if (g->err || tfind(&key, &g->tree, seen_cmp))
		return;
	s = malloc(sizeof(*s));
	if (!s || !(s->name = strdup(name))) {
		free(s);
		g->err = -ENOMEM;
		return;
	}
	s->type = type;
	s->hidden = hidden;
	if (g->n == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 64;
		struct seen **v = realloc(g->all, cap * sizeof(*v));

		if (!v) {
			free(s->name);
			free(s);
			g->err = -ENOMEM;
			return;
		}
		g->all = v;
		g->cap = cap;
	}
	slot = tsearch(s, &g->tree, seen_cmp);
	if (!slot) {
		free(s->name);
		free(s);
		g->err = -ENOMEM;
		return;
	}
	g->all[g->n++] = s;
}

/* The upper's names at S, collected: its list calls back under the
 * history's browse lock, which a stat takes again. */
struct up_names {
	char **v;
	mode_t *t;
	size_t n, cap;
};

static int up_collect(void *arg, const char *name, mode_t type)
{
	struct up_names *u = arg;

	if (u->n == u->cap) {
		size_t cap = u->cap ? 2 * u->cap : 32;
		char **v = realloc(u->v, cap * sizeof(*v));
		mode_t *t = v ? realloc(u->t, cap * sizeof(*t)) : NULL;

		if (v)
			u->v = v;
		if (!t)
			return -ENOMEM;
		u->t = t;
		u->cap = cap;
	}
	if (!(u->v[u->n] = strdup(name)))
		return -ENOMEM;
	u->t[u->n++] = type;
	return 0;
}

/* The upper's names at S into g: whiteouts (0/0, `.wh.NAME`) hidden. */
static int up_names(struct gather *g)
{
	const struct pfs_past *up = g->p->up;
	struct up_names u = {0};
	size_t pl = strlen(PFS_OVL_WH_PREFIX);
	char *m = malloc(PATH_MAX);
	int ret = m ? up->list(up->ctx, g->snap, g->dir, up_collect, &u) : -ENOMEM;

	for (size_t i = 0; ret == 0 && i < u.n; i++) {
		const char *name = u.v[i];
		struct pfs_past_obj o;

		if (strcmp(name, PFS_OVL_OPAQUE_MARKER) == 0)
			continue;
		if (strncmp(name, PFS_OVL_WH_PREFIX, pl) == 0)
			add(g, name + pl, 0, true);
		else if (S_ISCHR(u.t[i]) &&
			 (size_t)snprintf(m, PATH_MAX, "%s%s%s", g->dir, *g->dir ? "/" : "", name) <
				 PATH_MAX &&
			 up->stat(up->ctx, g->snap, m, &o) == 0 && up_whiteout(&o))
			add(g, name, 0, true);
		else
			add(g, name, u.t[i], false);
	}
	for (size_t i = 0; i < u.n; i++)
		free(u.v[i]);
	free(u.v);
	free(u.t);
	free(m);
	return ret;
}

static int l_list(void *ctx, const char *snap, const char *dir, pfs_past_name_cb *cb, void *arg)
{
	struct lpast *p = ctx;
	struct pfs_fs *fs = p->fs;
	struct lres *r = malloc(sizeof(*r));
	struct gather g = {.p = p, .snap = snap, .dir = dir};
	int ret;

	if (!r)
		return -ENOMEM;
	ret = resolve(p, snap, dir, r);
	if (ret == 0 && !S_ISDIR(r->o.mode))
		ret = -ENOTDIR;
	if (ret == 0 && r->up_dir)
		ret = up_names(&g);
	for (size_t k = 0; ret == 0 && !r->up_opaque && k < r->nlow; k++) {
		struct pfs_ovl_dir d;
		int fd = openat(fs->layers->root[r->low[k]], *dir ? dir : ".",
				O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (fd < 0) {
			ret = -errno;
			break;
		}
		ret = pfs_ovl_read_dir(fs->store, fd, &d);
		for (size_t j = 0; ret == 0 && j < d.n; j++) {
			const struct pfs_ovl_ent *e = &d.v[j];
			mode_t t = DTTOIF(e->type);

			if (e->type == DT_UNKNOWN) {
				struct stat st;

				t = fstatat(fd, e->name, &st, AT_SYMLINK_NOFOLLOW) == 0
					    ? st.st_mode & S_IFMT
					    : 0;
			}
			add(&g, e->name, t, (e->flags & PFS_OVL_WHITEOUT) != 0);
		}
		if (ret == 0 && d.opaque)
			k = r->nlow;
		if (ret == 0)
			pfs_ovl_dir_free(&d);
		close(fd);
	}
	if (ret == 0)
		ret = g.err;
	for (size_t i = 0; i < g.n; i++) {
		if (ret == 0 && !g.all[i]->hidden)
			ret = cb(arg, g.all[i]->name, g.all[i]->type);
		tdelete(g.all[i], &g.tree, seen_cmp);
		free(g.all[i]->name);
		free(g.all[i]);
	}
	free(g.all);
	free(r);
	return ret;
}

/* A symlink's target as a descriptor to read. */
static int target_fd(int dirfd, const char *path)
{
	char t[PATH_MAX];
	ssize_t n = readlinkat(dirfd, path, t, sizeof(t));

	if (n < 0)
		return -errno;
	return pfs_memfd_of("prismfs-target", t, (size_t)n);
}

static int l_open(void *ctx, const char *snap, const char *path)
{
	struct lpast *p = ctx;
	struct lres *r = malloc(sizeof(*r));
	int ret, root;

	if (!r)
		return -ENOMEM;
	ret = resolve(p, snap, path, r);
	if (ret == 0 && r->layer == 0) {
		ret = p->up->open(p->up->ctx, snap, path);
	} else if (ret == 0) {
		root = p->fs->layers->root[r->layer];
		if (S_ISLNK(r->o.mode))
			ret = target_fd(root, path);
		else if (!S_ISREG(r->o.mode))
			ret = -EISDIR;
		else if ((ret = openat(root, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
			ret = -errno;
	}
	free(r);
	return ret;
}

static ssize_t l_getxattr(void *ctx, const char *snap, const char *path, const char *name,
			  char *buf, size_t size)
{
	(void)ctx;
	(void)snap;
	(void)path;
	(void)name;
	(void)buf;
	(void)size;
	return -ENODATA;
}

static void l_watch(void *ctx, void (*cb)(void *arg), void *arg)
{
	struct lpast *p = ctx;

	p->up->watch(p->up->ctx, cb, arg);
}

/* --- export of the upper as it was: a layer directory --- */

struct exp {
	struct lpast *p;
	const char *snap;
	char *err;
	size_t errlen;
};

static int exp_fail(struct exp *x, int ret, const char *what, const char *path)
{
	if (!x->err[0])
		snprintf(x->err, x->errlen, "%s %s: %s", what, *path ? path : "/", strerror(-ret));
	return ret;
}

/* Owner (where permitted), mode, times of dfd/name as o. */
static int exp_attrs(struct exp *x, int dfd, const char *name, const struct pfs_past_obj *o,
		     const char *path)
{
	struct timespec ts[2] = {o->mtime, o->mtime};

	if (fchownat(dfd, name, o->uid, o->gid, AT_SYMLINK_NOFOLLOW) < 0 && errno != EPERM)
		return exp_fail(x, -errno, "cannot set the owner of", path);
	if (!S_ISLNK(o->mode) && fchmodat(dfd, name, o->mode & 07777, 0) < 0)
		return exp_fail(x, -errno, "cannot set the mode of", path);
	if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return exp_fail(x, -errno, "cannot set the times of", path);
	return 0;
}

static int exp_copy(int src, int dst)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(src, buf, sizeof(buf))) > 0)
		for (ssize_t w = 0; w < n;) {
			ssize_t k = write(dst, buf + w, (size_t)(n - w));

			if (k < 0)
				return -errno;
			w += k;
		}
	return n < 0 ? -errno : 0;
}

static int exp_dir(struct exp *x, int dfd, const char *path);

struct exp_ls {
	char **v;
	size_t n, cap;
	int err;
};

static int exp_name(void *arg, const char *name, mode_t type)
{
	struct exp_ls *l = arg;

	(void)type;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 32;
		char **v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	if (!(l->v[l->n] = strdup(name)))
		return -ENOMEM;
	l->n++;
	return 0;
}

/* Write the upper's object path (at S) as name in dfd. */
static int exp_one(struct exp *x, int dfd, const char *name, const char *path)
{
	struct pfs_layers *L = x->p->fs->layers;
	const struct pfs_past *up = x->p->up;
	struct pfs_past_obj o;
	int ret, src, dst;

	ret = up->stat(up->ctx, x->snap, path, &o);
	if (ret < 0)
		return exp_fail(x, ret, "cannot read", path);
	if (S_ISDIR(o.mode)) {
		if (mkdirat(dfd, name, 0700) < 0)
			return exp_fail(x, -errno, "cannot make", path);
		dst = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dst < 0)
			return exp_fail(x, -errno, "cannot open", path);
		ret = exp_dir(x, dst, path);
		if (ret == 0 && up_opaque(x->p, x->snap, path)) {
			char key[64];

			/* in the mount's own form: the kernel reads user.* with
			 * -o userxattr only, as it did the upper's */
			snprintf(key, sizeof(key), "%sopaque", L->xprefix[0] ? L->xprefix
									     : "trusted.overlay.");
			if (fsetxattr(dst, key, "y", 1, 0) < 0)
				ret = exp_fail(x, -errno, "cannot mark opaque", path);
		}
		close(dst);
	} else if (S_ISREG(o.mode)) {
		src = up->open(up->ctx, x->snap, path);
		if (src < 0)
			return exp_fail(x, src, "cannot read", path);
		dst = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		ret = dst < 0 ? -errno : exp_copy(src, dst);
		if (dst >= 0 && ret == 0 && fsync(dst) < 0)
			ret = -errno;
		if (dst >= 0)
			close(dst);
		close(src);
		if (ret < 0)
			return exp_fail(x, ret, "cannot write", path);
	} else if (S_ISLNK(o.mode)) {
		char t[PATH_MAX];
		ssize_t n;

		src = up->open(up->ctx, x->snap, path);
		if (src < 0)
			return exp_fail(x, src, "cannot read", path);
		n = pread(src, t, sizeof(t) - 1, 0);
		close(src);
		if (n < 0)
			return exp_fail(x, -errno, "cannot read", path);
		t[n] = '\0';
		if (symlinkat(t, dfd, name) < 0)
			return exp_fail(x, -errno, "cannot make", path);
	} else {
		/* a whiteout (0/0), or a fifo, socket or device as it was */
		if (mknodat(dfd, name, o.mode & (S_IFMT | 0600), o.rdev) < 0)
			return exp_fail(x, -errno, "cannot make", path);
	}
	return ret < 0 ? ret : exp_attrs(x, dfd, name, &o, path);
}

static int exp_dir(struct exp *x, int dfd, const char *path)
{
	const struct pfs_past *up = x->p->up;
	struct exp_ls l = {0};
	char *sub = malloc(PATH_MAX);
	int ret = sub ? up->list(up->ctx, x->snap, path, exp_name, &l) : -ENOMEM;

	if (ret < 0 && sub)
		exp_fail(x, ret, "cannot list", path);
	for (size_t i = 0; ret == 0 && i < l.n; i++) {
		if ((size_t)snprintf(sub, PATH_MAX, "%s%s%s", path, *path ? "/" : "", l.v[i]) >=
		    PATH_MAX)
			ret = exp_fail(x, -ENAMETOOLONG, "cannot name", path);
		else
			ret = exp_one(x, dfd, l.v[i], sub);
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i]);
	free(l.v);
	free(sub);
	return ret;
}

static int l_export_layer(void *ctx, const char *snap, const char *dir, char *err,
			  size_t errlen)
{
	struct lpast *p = ctx;
	struct exp x = {.p = p, .snap = snap, .err = err, .errlen = errlen};
	struct pfs_past_obj o;
	int ret, dfd;

	err[0] = '\0';
	ret = p->up->stat(p->up->ctx, snap, "", &o);
	if (ret < 0) {
		snprintf(err, errlen, ret == -ENOENT ? "no snapshot %s" : "snapshot %s: %s", snap,
			 strerror(-ret));
		return ret;
	}
	if (dir[0] != '/') {
		snprintf(err, errlen, "%s: give an absolute path", dir);
		return -EINVAL;
	}
	if (mkdir(dir, 0700) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot make %s: %s%s", dir, strerror(errno),
			 errno == EEXIST ? " (the layer is written into a new directory)" : "");
		return ret;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
		return -errno;
	}
	ret = exp_dir(&x, dfd, "");
	if (ret == 0) {
		struct timespec ts[2] = {o.mtime, o.mtime};

		if (fchown(dfd, o.uid, o.gid) < 0 && errno != EPERM)
			ret = exp_fail(&x, -errno, "cannot set the owner of", "");
		else if (fchmod(dfd, o.mode & 07777) < 0 || futimens(dfd, ts) < 0 ||
			 fsync(dfd) < 0)
			ret = exp_fail(&x, -errno, "cannot set the attributes of", "");
	}
	close(dfd);
	if (ret < 0) { /* a layer whole or none: the partial one goes */
		const char *slash = strrchr(dir, '/');
		char *parent = strndup(dir, slash == dir ? 1 : (size_t)(slash - dir)), where[64];
		int pfd = parent ? open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;

		if (pfd >= 0)
			pfs_rmtree_at(p->fs->store, pfd, slash + 1, where, sizeof(where));
		if (pfd >= 0)
			close(pfd);
		free(parent);
	}
	return ret;
}

const struct pfs_past *pfs_layers_past(struct pfs_fs *fs, const struct pfs_past *upper)
{
	struct lpast *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->up = upper;
	p->fs = fs;
	p->base = (struct pfs_past){
		.ctx = p,
		.snapshots = l_snapshots,
		.stat = l_stat,
		.list = l_list,
		.open = l_open,
		.getxattr = l_getxattr,
		.export_layer = l_export_layer,
		.watch = l_watch,
	};
	return &p->base;
}

void pfs_layers_past_free(const struct pfs_past *past)
{
	free((struct lpast *)past->ctx);
}
