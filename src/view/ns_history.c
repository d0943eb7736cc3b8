/* ns_history: the plain (or layered) namespace plus the read-only .history directory of
 * a mount with --history (issue 17 item 4; docs/HISTORY.md, Browse),
 * chosen at mount (pfs_ns_for) when the store answers for the past
 * (fs->past, store/past.h).
 *
 * .history (fs->past_name) is a name of the root that no listing shows
 * (as ZFS's .zfs); in it, one directory per snapshot, and in each the tree
 * as it was. Their nodes are the view's synthetic kind (dev 0: nothing
 * behind them but the daemon's empty directory) under a context of their
 * own (PAST_CTX), keyed by their path; everything about them -- attributes,
 * names, data -- is asked of fs->past by that path each time, so a
 * snapshot taken later shows without a remount, and a file whose live
 * object changes after the lookup still reads as it was. Every change
 * under it is EROFS. Everything else is the live namespace's: ns_plain's,
 * or ns_layered's on a layered mount (whose past is the merged tree,
 * layers/layer_past.c). */
#include "view/ns.h"
#include "map/maphist.h"
#include "util/xblob.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAST_CTX 0x7061737421ull /* no mapping table hashes to it with --history */

/* The live tree's namespace: the merged layers', or the plain one. */
static inline const struct pfs_ns_ops *LIVE(const struct pfs_fs *fs)
{
	return fs->layers ? &pfs_ns_layered : &pfs_ns_plain;
}

static bool is_past(const struct pfs_node *n)
{
	return n->dev == 0 && n->ctx == PAST_CTX;
}

static bool is_gate(struct pfs_fs *fs, const struct pfs_node *parent, const char *name)
{
	return parent == fs->root && strcmp(name, fs->past_name) == 0;
}

/* Where (parent, name) or n is in the past: *snap NULL for .history
 * itself, else the snapshot and the path in it ("" its root). vp: n's
 * path (with name), and *buf the copy they point into, both malloc'ed.
 * 0 or -errno. */
static int where(struct pfs_fs *fs, struct pfs_node *n, const char *name, char **vp,
		 char **buf, const char **snap, const char **path)
{
	size_t gl = strlen(fs->past_name);
	char *s;

	*vp = pfs_node_path(fs, n, name);
	*buf = *vp ? strdup(*vp) : NULL;
	if (!*buf)
		return -ENOMEM;
	s = *buf;
	if (s[0] != '/' || strncmp(s + 1, fs->past_name, gl) != 0)
		return -ENOENT; /* not under it: cannot happen */
	s += 1 + gl;
	if (!*s) {
		*snap = NULL;
		*path = "";
		return 0;
	}
	*snap = ++s;
	s = strchr(s, '/');
	if (s)
		*s++ = '\0';
	*path = s ? s : "";
	return 0;
}

/* The table snapshot snap was taken under (held), or NULL: none. 0 or
 * -errno. */
static int snap_table(struct pfs_fs *fs, const char *snap, struct pfs_map **out)
{
	char err[PFS_MAP_ERRLEN], *json = NULL;
	struct pfs_map *m = NULL;
	long long id = 0;
	int ret;

	*out = NULL;
	if (!fs->past->table)
		return 0;
	ret = fs->past->table(fs->past->ctx, snap, &id, &json);
	if (ret < 0 || !json || !*json) {
		free(json);
		return ret;
	}
	pthread_mutex_lock(&fs->past_map_lock);
	if (fs->past_map && fs->past_map_id == id)
		m = pfs_map_ref(fs->past_map);
	pthread_mutex_unlock(&fs->past_map_lock);
	if (!m) {
		if (pfs_map_parse(json, strlen(json), &m, err) < 0) {
			free(json);
			return -EIO; /* we wrote it: cannot happen */
		}
		pthread_mutex_lock(&fs->past_map_lock);
		pfs_map_unref(fs->past_map);
		fs->past_map = pfs_map_ref(m);
		fs->past_map_id = id;
		pthread_mutex_unlock(&fs->past_map_lock);
	}
	free(json);
	*out = m;
	return 0;
}

/* A path of a snapshot's tree, as the view showed it, turned into the path
 * in SOURCE the history knows it by (docs/HISTORY.md, "With a mapping
 * table"): through the table the snapshot was taken under (m, held, or
 * NULL: none, the path is its own). A path the table then or the one now
 * hides is absent; so is a target outside SOURCE (the history keeps no
 * tree of it). virt: keys lie beneath it (a synthetic directory where
 * nothing is); exact: the entry that placed the path itself (its mode and
 * owner). 0, 1 (only keys beneath it: no path in SOURCE) or -errno. */
struct xpath {
	char src[PATH_MAX];
	struct pfs_map *m;
	bool virt;
	const struct pfs_map_entry *exact;
};

static int xlate(struct pfs_fs *fs, const char *snap, const char *path, struct xpath *x)
{
	char v[PATH_MAX + 1];
	struct pfs_map *now;
	struct pfs_map_res r;
	int ret, k;

	x->m = NULL;
	x->virt = false;
	x->exact = NULL;
	if ((size_t)snprintf(v, sizeof(v), "/%s", path) >= sizeof(v))
		return -ENAMETOOLONG;
	ret = snap_table(fs, snap, &x->m);
	if (ret < 0)
		return ret;
	now = pfs_view_map(fs);
	if (now) {
		pfs_map_resolve(now, v, &r);
		if (r.hidden)
			ret = -ENOENT;
		pfs_map_unref(now);
	}
	if (ret == 0 && !x->m) {
		snprintf(x->src, sizeof(x->src), "%s", path);
	} else if (ret == 0) {
		k = pfs_map_to_source(x->m, v, fs->source, fs->mountpoint, x->src, sizeof(x->src),
				      &x->virt);
		if (k == 1) {
			pfs_map_resolve(x->m, v, &r);
			if (r.exact)
				x->exact = r.entry;
			ret = 0;
		} else if (x->virt && k != -ENAMETOOLONG) {
			ret = 1; /* nothing of SOURCE's: only the keys beneath it */
		} else {
			ret = k == 0 ? -ENOENT : k;
		}
	}
	if (ret < 0) {
		pfs_map_unref(x->m);
		x->m = NULL;
	}
	return ret;
}

/* The past object at path of snap: its attributes (through the table of
 * the snapshot, with the mode and owner it fixed). */
static int past_obj(struct pfs_fs *fs, const char *snap, const char *path,
		    struct pfs_past_obj *o, bool *synth)
{
	struct xpath x;
	int ret = xlate(fs, snap, path, &x);

	*synth = false;
	if (ret < 0)
		return ret;
	ret = ret == 1 ? -ENOENT : fs->past->stat(fs->past->ctx, snap, x.src, o);
	if (ret == -ENOENT && x.virt) {
		*synth = true;
		ret = 0;
	} else if (ret == 0 && x.exact) {
		if (x.exact->has_mode)
			o->mode = (o->mode & S_IFMT) | x.exact->mode;
		if (x.exact->has_uid)
			o->uid = x.exact->uid;
		if (x.exact->has_gid)
			o->gid = x.exact->gid;
	}
	pfs_map_unref(x.m);
	return ret;
}

/* What fs->past opens for path of snap, through the snapshot's table. */
static int past_open(struct pfs_fs *fs, const char *snap, const char *path)
{
	struct xpath x;
	int ret = xlate(fs, snap, path, &x);

	if (ret < 0)
		return ret;
	ret = ret == 1 ? -EISDIR : fs->past->open(fs->past->ctx, snap, x.src);
	pfs_map_unref(x.m);
	return ret;
}

/* The attributes of the past object at vpath. */
static int past_stat(struct pfs_fs *fs, const char *vp, const char *snap, const char *path,
		     struct stat *st)
{
	struct pfs_past_obj o;
	bool synth;
	int ret;

	if (!snap) {
		/* its times are those of the last change of the snapshots: a new
		 * mtime drops a kernel's cached listing of it */
		uint64_t t = __atomic_load_n(&fs->past_changed_ns, __ATOMIC_RELAXED);

		pfs_view_synthetic_stat(fs, pfs_view_synthetic_ino(vp), 0555, st);
		if (t) {
			st->st_mtim.tv_sec = (time_t)(t / 1000000000u);
			st->st_mtim.tv_nsec = (long)(t % 1000000000u);
		}
		st->st_ctim = st->st_mtim;
		return 0;
	}
	ret = past_obj(fs, snap, path, &o, &synth);
	if (ret < 0)
		return ret;
	if (synth) {
		pfs_view_synthetic_stat(fs, pfs_view_synthetic_ino(vp), 0555, st);
		return 0;
	}
	memset(st, 0, sizeof(*st));
	st->st_ino = pfs_view_synthetic_ino(vp);
	st->st_mode = o.mode;
	st->st_nlink = o.nlink ? o.nlink : 1;
	st->st_uid = o.uid;
	st->st_gid = o.gid;
	st->st_size = o.size;
	st->st_rdev = o.rdev; /* a device's number, as stat(2) of it then */
	st->st_blksize = 4096;
	st->st_blocks = (o.size + 511) / 512;
	st->st_atim = st->st_mtim = o.mtime;
	st->st_ctim = o.ctime;
	return 0;
}

static int past_lookup(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		       struct fuse_entry_param *e)
{
	const char *snap = NULL, *path;
	struct pfs_node *n;
	char *vp, *buf;
	int fd, ret;

	memset(e, 0, sizeof(*e));
	if (strnlen(name, NAME_MAX + 1) > NAME_MAX)
		return -ENAMETOOLONG;
	ret = where(fs, parent, name, &vp, &buf, &snap, &path);
	if (ret == 0)
		ret = past_stat(fs, vp, snap, path, &e->attr);
	if (ret < 0)
		goto out;
	fd = fcntl(fs->empty_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	e->attr.st_dev = 0;
	ret = pfs_node_intern(fs, parent, name, fd, &e->attr, PAST_CTX, &n);
	if (ret < 0)
		goto out;
	pfs_view_fix_attr(fs, n, &e->attr); /* owners as getattr shows them */
	e->ino = pfs_ino_of(fs, n);
	/* What a snapshot held does not change; which snapshots there are,
	 * and .history's own times, do, and the kernel is told then
	 * (pfs_view_past_watch). Zero timeouts here cost two requests per
	 * path walked below .history: a listing of 10,000 entries took 4x
	 * the live one's requests. */
	if (!snap)
		__atomic_store_n(&fs->past_ino, (uint64_t)e->ino, __ATOMIC_RELAXED);
	e->entry_timeout = fs->timeout;
	e->attr_timeout = fs->timeout;
out:
	free(vp);
	free(buf);
	return ret;
}

static int h_lookup(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		    struct fuse_entry_param *e)
{
	if (is_past(parent) || is_gate(fs, parent, name))
		return past_lookup(fs, parent, name, e);
	return LIVE(fs)->lookup(fs, parent, name, e);
}

/* A name made at (parent, name): none under .history, and not .history. */
static int may_make(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	if (is_past(parent))
		return -EROFS;
	return is_gate(fs, parent, name) ? -EEXIST : 0;
}

static int h_mknod(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, dev_t rdev, struct fuse_entry_param *e)
{
	int ret = may_make(fs, parent, name);

	return ret ? ret : LIVE(fs)->mknod(fs, ctx, parent, name, mode, rdev, e);
}

static int h_mkdir(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, struct fuse_entry_param *e)
{
	int ret = may_make(fs, parent, name);

	return ret ? ret : LIVE(fs)->mkdir(fs, ctx, parent, name, mode, e);
}

static int h_symlink(struct pfs_fs *fs, const struct fuse_ctx *ctx, const char *target,
		     struct pfs_node *parent, const char *name, struct fuse_entry_param *e)
{
	int ret = may_make(fs, parent, name);

	return ret ? ret : LIVE(fs)->symlink(fs, ctx, target, parent, name, e);
}

static int h_link(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *newparent,
		  const char *newname, struct fuse_entry_param *e)
{
	int ret = is_past(n) ? -EROFS : may_make(fs, newparent, newname);

	return ret ? ret : LIVE(fs)->link(fs, n, newparent, newname, e);
}

static int h_remove(struct pfs_fs *fs, struct pfs_node *parent, const char *name, bool dir)
{
	if (is_past(parent) || is_gate(fs, parent, name))
		return -EROFS;
	return LIVE(fs)->remove(fs, parent, name, dir);
}

static int h_rename(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		    struct pfs_node *newparent, const char *newname, unsigned int flags)
{
	if (is_past(parent) || is_past(newparent) || is_gate(fs, parent, name) ||
	    is_gate(fs, newparent, newname))
		return -EROFS;
	return LIVE(fs)->rename(fs, parent, name, newparent, newname, flags);
}

static int h_create(struct pfs_fs *fs, struct pfs_req *rq, const struct fuse_ctx *ctx,
		    struct pfs_node *parent, const char *name, mode_t mode,
		    struct fuse_file_info *fi, struct fuse_entry_param *e)
{
	int ret = may_make(fs, parent, name);

	return ret ? ret : LIVE(fs)->create(fs, rq, ctx, parent, name, mode, fi, e);
}

/* A symlink of the past: its target, as fs->past gives it to read. */
static int h_readlink(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size)
{
	const char *snap, *path;
	char *vp, *b;
	ssize_t len;
	int fd, ret;

	if (!is_past(n))
		return LIVE(fs)->readlink(fs, n, buf, size);
	if (n->type != S_IFLNK)
		return -EINVAL;
	ret = where(fs, n, NULL, &vp, &b, &snap, &path);
	fd = ret < 0 ? ret : snap ? past_open(fs, snap, path) : -EINVAL;
	free(vp);
	free(b);
	if (fd < 0)
		return fd;
	len = pread(fd, buf, size - 1, 0);
	ret = len < 0 ? -errno : 0;
	close(fd);
	if (ret == 0)
		buf[len] = '\0';
	return ret;
}

static int h_getattr(struct pfs_fs *fs, struct pfs_node *n, struct stat *st)
{
	const char *snap, *path;
	char *vp, *buf;
	int ret;

	if (!is_past(n))
		return LIVE(fs)->getattr(fs, n, st);
	ret = where(fs, n, NULL, &vp, &buf, &snap, &path);
	if (ret == 0)
		ret = past_stat(fs, vp, snap, path, st);
	free(vp);
	free(buf);
	return ret;
}

static bool h_fix_attr(struct pfs_fs *fs, struct pfs_node *n, struct stat *st)
{
	if (!is_past(n))
		return LIVE(fs)->fix_attr(fs, n, st);
	st->st_ino = n->ino;
	return false;
}

static int h_may_change(struct pfs_fs *fs, struct pfs_node *n)
{
	return is_past(n) ? -EROFS : LIVE(fs)->may_change(fs, n);
}

static int h_access(struct pfs_fs *fs, struct pfs_node *n, int mask)
{
	return is_past(n) ? 0 : LIVE(fs)->access(fs, n, mask); /* W_OK: refused before */
}

static int h_statfs_fd(struct pfs_fs *fs, struct pfs_node *n)
{
	return LIVE(fs)->statfs_fd(fs, is_past(n) ? fs->root : n);
}

static int h_prepare_change(struct pfs_fs *fs, struct pfs_node *n, int open_flags)
{
	return is_past(n) ? -EROFS : LIVE(fs)->prepare_change(fs, n, open_flags);
}

/* A file of the past is read by the daemon from what fs->past opens now:
 * the saved version, or the live object while it is unchanged. */
static int h_serve_open(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	const char *snap, *path;
	char *vp, *buf;
	int fd, ret;

	if (!is_past(n))
		return LIVE(fs)->serve_open(fs, n, fi);
	if (n->type != S_IFREG)
		return -EISDIR; /* opened as a file: it is not one */
	ret = where(fs, n, NULL, &vp, &buf, &snap, &path);
	fd = ret < 0 ? ret : snap ? past_open(fs, snap, path) : -EISDIR;
	free(vp);
	free(buf);
	if (fd < 0)
		return fd;
	close(pfs_fh_fd(fi)); /* the empty directory pfs_view_open opened */
	fi->fh = (uint64_t)fd;
	fi->keep_cache = 1; /* what a snapshot held never changes */
	return 1;
}

static bool h_snapshot(struct pfs_fs *fs, struct pfs_node *n)
{
	return is_past(n) || LIVE(fs)->snapshot(fs, n);
}

static int h_open_dir(struct pfs_fs *fs, struct pfs_node *n, bool *bare)
{
	return is_past(n) ? -ENOTDIR : LIVE(fs)->open_dir(fs, n, bare);
}

/* The snapshots changed: .history gets new times, and the kernel drops
 * its attributes and its cached listing of it. Called on the thread that
 * changed them (a control request, the checkpoint thread), never inside a
 * request of ours: a notification from there could wait on itself. */
static void past_changed(void *arg)
{
	struct pfs_fs *fs = arg;
	struct timespec now;
	uint64_t ino;

	clock_gettime(CLOCK_REALTIME, &now);
	__atomic_store_n(&fs->past_changed_ns,
			 (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec,
			 __ATOMIC_RELAXED);
	ino = __atomic_load_n(&fs->past_ino, __ATOMIC_RELAXED);
	if (ino && fs->kernel)
		fs->kernel->inval_inode(fs->kernel_ctx, (fuse_ino_t)ino, 0, 0);
}

/* The snapshots' names, gathered (the history's browse lock is held
 * while it names them: the kernel is told only after). */
struct names {
	char **v;
	size_t n;
};

static int gather_snap(void *arg, const char *name, mode_t type)
{
	struct names *ns = arg;
	char **v = realloc(ns->v, (ns->n + 1) * sizeof(*v));

	(void)type;
	if (!v)
		return -ENOMEM;
	ns->v = v;
	if (!(v[ns->n] = strdup(name)))
		return -ENOMEM;
	ns->n++;
	return 0;
}

void pfs_view_past_table(struct pfs_fs *fs)
{
	struct pfs_map *m;
	uint64_t ino;
	char *json;

	if (!fs->past || !fs->past->set_table)
		return;
	m = pfs_view_map(fs);
	json = m ? pfs_map_dump(m) : strdup("");
	pfs_map_unref(m);
	if (json)
		fs->past->set_table(fs->past->ctx, json); /* it says why not */
	free(json);
	/* A path hidden now is hidden in every snapshot: the kernel forgets
	 * each snapshot's entry, and with it what it holds of the tree
	 * beneath (never inside a request: this is the table's thread). */
	ino = __atomic_load_n(&fs->past_ino, __ATOMIC_RELAXED);
	if (fs->kernel && ino) {
		struct names ns = {NULL, 0};

		fs->past->snapshots(fs->past->ctx, gather_snap, &ns);
		for (size_t i = 0; i < ns.n; i++) {
			fs->kernel->inval_entry(fs->kernel_ctx, (fuse_ino_t)ino, ns.v[i],
						strlen(ns.v[i]));
			free(ns.v[i]);
		}
		free(ns.v);
	}
}

void pfs_view_past_watch(struct pfs_fs *fs)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	fs->past_changed_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	fs->past_ino = 0;
	if (fs->past && fs->past->watch)
		fs->past->watch(fs->past->ctx, past_changed, fs);
}

struct list_ctx {
	struct pfs_fs *fs;
	const char *vdir; /* the listed directory's path */
	pfs_ns_list_cb *cb;
	void *arg;
	/* in a snapshot with a table (then or now): */
	const char *snap, *path; /* the snapshot, the directory's path in it */
	struct pfs_map *m, *now; /* its table (NULL: none), the current one */
};

static int past_name(void *arg, const char *name, mode_t type)
{
	struct list_ctx *c = arg;
	char vp[PATH_MAX];

	if ((size_t)snprintf(vp, sizeof(vp), "%s/%s", c->vdir, name) >= sizeof(vp))
		return 0; /* a path no lookup could name */
	if (c->m || c->now) {
		/* a name of SOURCE's directory: not one the table placed or
		 * hid there (the keys' pass shows those), nor one hidden now */
		char p[PATH_MAX + 2];
		struct pfs_map_res r;

		snprintf(p, sizeof(p), "/%s%s%s", c->path, *c->path ? "/" : "", name);
		if (c->m) {
			pfs_map_resolve(c->m, p, &r);
			if (r.hidden || r.exact || r.parent_of_keys)
				return 0;
		}
		if (c->now) {
			pfs_map_resolve(c->now, p, &r);
			if (r.hidden)
				return 0;
		}
	}
	return c->cb(c->arg, name, pfs_view_synthetic_ino(vp), IFTODT(type));
}

/* A name the snapshot's table placed in the listed directory: shown if
 * it was there (its target reachable, or keys beneath it). */
static int key_name(const char *name, bool hidden, const struct pfs_map_entry *exact,
		    void *arg)
{
	struct list_ctx *c = arg;
	char p[PATH_MAX + 2], vp[PATH_MAX];
	struct pfs_past_obj o;
	bool synth;

	(void)exact;
	if (hidden ||
	    (size_t)snprintf(p, sizeof(p), "%s%s%s", c->path, *c->path ? "/" : "", name) >=
		    sizeof(p) ||
	    (size_t)snprintf(vp, sizeof(vp), "%s/%s", c->vdir, name) >= sizeof(vp))
		return 0;
	if (past_obj(c->fs, c->snap, p, &o, &synth) < 0)
		return 0; /* unreachable then (or hidden now): absent, as live */
	return c->cb(c->arg, name, pfs_view_synthetic_ino(vp),
		     synth ? DT_DIR : IFTODT(o.mode & S_IFMT));
}

/* The names of directory path of snap as the view showed them. */
static int list_snap(struct pfs_fs *fs, struct list_ctx *c)
{
	char v[PATH_MAX + 2];
	struct xpath x;
	int ret = xlate(fs, c->snap, c->path, &x);

	if (ret < 0)
		return ret;
	c->m = x.m;
	c->now = pfs_view_map(fs);
	ret = ret == 1 ? 0 : fs->past->list(fs->past->ctx, c->snap, x.src, past_name, c);
	if (ret == -ENOENT && x.virt)
		ret = 0;
	snprintf(v, sizeof(v), "/%s", c->path);
	if (ret == 0 && x.m)
		ret = pfs_map_children(x.m, strcmp(v, "/") ? v : "/", key_name, c);
	pfs_map_unref(c->now);
	pfs_map_unref(x.m);
	c->m = c->now = NULL;
	return ret;
}

/* The root's names: never .history (a name of SOURCE's own by that name
 * is hidden by it). */
static int root_name(void *arg, const char *name, ino_t ino, unsigned char type)
{
	struct list_ctx *c = arg;

	if (strcmp(name, c->fs->past_name) == 0)
		return 0;
	return c->cb(c->arg, name, ino, type);
}

static int h_list(struct pfs_fs *fs, struct pfs_node *n, DIR *dp, pfs_ns_list_cb *cb, void *arg)
{
	struct list_ctx c = {.fs = fs, .cb = cb, .arg = arg};
	const char *snap = NULL, *path = "";
	char *vdir, *buf;
	int ret;

	if (n == fs->root)
		return LIVE(fs)->list(fs, n, dp, root_name, &c);
	if (!is_past(n))
		return LIVE(fs)->list(fs, n, dp, cb, arg);
	ret = where(fs, n, NULL, &vdir, &buf, &snap, &path);
	if (ret == 0)
		ret = cb(arg, ".", n->ino, DT_DIR);
	if (ret == 0)
		ret = cb(arg, "..", 1, DT_DIR); /* glibc skips d_ino 0 */
	c.vdir = vdir;
	c.snap = snap;
	c.path = path;
	if (ret == 0)
		ret = snap ? list_snap(fs, &c) : fs->past->snapshots(fs->past->ctx, past_name, &c);
	free(vdir);
	free(buf);
	return ret;
}

static int h_node_name(struct pfs_fs *fs, struct pfs_node *n, int *dirfd, char *name,
		       size_t len)
{
	return is_past(n) ? -ENOENT : LIVE(fs)->node_name(fs, n, dirfd, name, len);
}

/* A past object's xattr (name), or their names (name NULL), as they were
 * (fs->past, through the snapshot's table): those the history keeps
 * (util/xblob.h: user.*, the POSIX ACLs, which the kernel then checks
 * access under .history against, security.*, trusted.*); the overlay's
 * own are layer metadata, none shown. */
static ssize_t past_xattr(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			  size_t size)
{
	const char *snap = NULL, *path;
	char *vp, *b;
	struct xpath x;
	ssize_t ret = name && !pfs_xblob_kept(name) ? -ENODATA
		      : where(fs, n, NULL, &vp, &b, &snap, &path);

	if (ret == -ENODATA)
		return ret;
	if (ret == 0 && snap && (ret = xlate(fs, snap, path, &x)) >= 0) {
		ret = ret == 1 ? -ENODATA
		      : name ? fs->past->getxattr(fs->past->ctx, snap, x.src, name, buf, size)
		      : fs->past->listxattr ? fs->past->listxattr(fs->past->ctx, snap, x.src, buf, size)
					    : 0;
		pfs_map_unref(x.m);
	} else if (ret == 0) {
		ret = -ENODATA; /* .history itself */
	}
	if (!name && ret == -ENODATA)
		ret = 0;
	free(vp);
	free(b);
	return ret;
}

static ssize_t h_getxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			  size_t size)
{
	return is_past(n) ? past_xattr(fs, n, name, buf, size)
			  : LIVE(fs)->getxattr(fs, n, name, buf, size);
}

static ssize_t h_listxattr(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size)
{
	return is_past(n) ? past_xattr(fs, n, NULL, buf, size)
			  : LIVE(fs)->listxattr(fs, n, buf, size);
}

static int h_setxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name,
		      const char *value, size_t size, int flags)
{
	return is_past(n) ? -EROFS : LIVE(fs)->setxattr(fs, n, name, value, size, flags);
}

static int h_removexattr(struct pfs_fs *fs, struct pfs_node *n, const char *name)
{
	return is_past(n) ? -EROFS : LIVE(fs)->removexattr(fs, n, name);
}

static struct pfs_node *h_held(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
			       bool *exists, bool synthetic)
{
	if (is_past(parent) || is_gate(fs, parent, name)) {
		*exists = false; /* nothing of SOURCE's: no change reaches it */
		return NULL;
	}
	return LIVE(fs)->held(fs, parent, name, exists, synthetic);
}

static void h_root_dirs(struct pfs_fs *fs, void (*cb)(struct pfs_fs *fs, int fd))
{
	LIVE(fs)->root_dirs(fs, cb);
}

const struct pfs_ns_ops pfs_ns_history = {
	.name = "history",
	.lookup = h_lookup,
	.mknod = h_mknod,
	.mkdir = h_mkdir,
	.symlink = h_symlink,
	.link = h_link,
	.remove = h_remove,
	.rename = h_rename,
	.readlink = h_readlink,
	.create = h_create,
	.getattr = h_getattr,
	.fix_attr = h_fix_attr,
	.may_change = h_may_change,
	.access = h_access,
	.statfs_fd = h_statfs_fd,
	.prepare_change = h_prepare_change,
	.serve_open = h_serve_open,
	.snapshot = h_snapshot,
	.open_dir = h_open_dir,
	.list = h_list,
	.node_name = h_node_name,
	.getxattr = h_getxattr,
	.listxattr = h_listxattr,
	.setxattr = h_setxattr,
	.removexattr = h_removexattr,
	.root_dirs = h_root_dirs,
	.held = h_held,
	.targets_changed = pfs_plain_targets_changed,
};
