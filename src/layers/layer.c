/* layer: the layers of a copy-on-write mount — opening and checking them,
 * and what a name is in a merged directory (lookup, listing). The format
 * is kernel overlayfs's (Documentation/filesystems/overlayfs.rst): a name
 * is whited out by a 0/0 character device or a `.wh.NAME` entry (OCI
 * layers); a directory stops the merge below it when its overlay.opaque
 * xattr is "y" or it holds `.wh..wh..opq`. */
#include "layers/layer.h"
#include "view/selfmnt.h"
#include "store/rmtree.h"
#include "util/util.h"
#include "view/view.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layers/layermap.h"
#include "layers/ovlfmt.h"
#include "util/util.h"
#include "store/walk.h"

#define ORIGIN_KEY "prismfs.origin"

/* What prismfs records on an object it copied up: the layer and inode
 * number it came from, so the view keeps showing that number. An object a
 * mapping table brought from another filesystem also records that
 * filesystem (the longer form; the short one means the layer's own). */
struct origin {
	uint32_t layer;
	uint32_t pad;
	uint64_t ino;
	uint64_t dev;
};
#define ORIGIN_SHORT offsetof(struct origin, dev)

static void seterr(char *err, size_t len, const char *fmt, const char *a, const char *b)
{
	snprintf(err, len, fmt, a, b);
}

bool pfs_layer_merged(const struct pfs_node *n)
{
	int count = 0;

	for (int i = n->ln ? n->ln->top : 1; n->ln && i <= n->ln->bottom; i++)
		count += __atomic_load_n(&n->ln->fd[i], __ATOMIC_RELAXED) != -1;
	return count > 1;
}

void pfs_lnode_free(struct pfs_layers *L, struct pfs_lnode *ln, int keep)
{
	if (!ln)
		return;
	for (size_t i = 0; L && i < L->n; i++)
		if (ln->fd[i] >= 0 && ln->fd[i] != keep)
			close(ln->fd[i]);
	if (ln->sdir >= 0)
		close(ln->sdir);
	for (size_t i = 0; ln->hs && L && i < L->n; i++)
		free(ln->hs[i].h);
	free(ln->hs);
	free(ln->sname);
	free(ln->opens);
	free(ln);
}

struct pfs_lnode *pfs_lnode_new(struct pfs_layers *L)
{
	struct pfs_lnode *ln = malloc(sizeof(*ln) + L->n * sizeof(int));

	if (!ln)
		return NULL;
	ln->top = ln->bottom = 0;
	ln->syn = false;
	ln->sdir = -1;
	ln->sname = NULL;
	ln->nopens = ln->aopens = 0;
	ln->opens = NULL;
	ln->hs = NULL;
	ln->cached = 0;
	for (size_t i = 0; i < L->n; i++)
		ln->fd[i] = -1;
	return ln;
}

static int proc_at(char *buf, size_t len, int dirfd, const char *name)
{
	int n = name && *name ? snprintf(buf, len, "/proc/self/fd/%d/%s", dirfd, name)
			      : snprintf(buf, len, "/proc/self/fd/%d", dirfd);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

ssize_t pfs_layer_getx(struct pfs_fs *fs, int dirfd, const char *name, const char *key,
		       char *buf, size_t len)
{
	char p[64 + NAME_MAX], x[64];
	ssize_t r;

	if (proc_at(p, sizeof(p), dirfd, name) < 0)
		return -ENAMETOOLONG;
	snprintf(x, sizeof(x), "%s%s", fs->layers->xprefix, key);
	r = lgetxattr(p, x, buf, len);
	return r < 0 ? -errno : r;
}

int pfs_layer_setx(struct pfs_fs *fs, int dirfd, const char *name, const char *key,
		   const void *val, size_t len)
{
	char p[64 + NAME_MAX], x[64];

	if (proc_at(p, sizeof(p), dirfd, name) < 0)
		return -ENAMETOOLONG;
	snprintf(x, sizeof(x), "%s%s", fs->layers->xprefix, key);
	return lsetxattr(p, x, val, len, 0) < 0 ? -errno : 0;
}

bool pfs_layer_private_xattr(struct pfs_fs *fs, const char *name)
{
	/* As the kernel: trusted.overlay.* always; user.overlay.* when the
	 * layers keep their bookkeeping there (its userxattr). */
	return strncmp(name, "trusted.overlay.", 16) == 0 ||
	       (strncmp(name, "user.overlay.", 13) == 0 &&
		strcmp(fs->layers->xprefix, "user.overlay.") == 0);
}

int pfs_layer_escape_xattr(const char *name, char *buf, size_t len)
{
	const char *dot = strchr(name, '.'); /* "trusted." or "user." */
	size_t pl = (size_t)(dot - name) + 1 + strlen("overlay.");
	int n = snprintf(buf, len, "%.*soverlay.%s", (int)pl, name, name + pl);

	return n < 0 || (size_t)n >= len ? -ERANGE : 0;
}

bool pfs_layer_unescape_xattr(struct pfs_fs *fs, const char *stored, char *buf, size_t len)
{
	size_t pl;

	if (!pfs_layer_private_xattr(fs, stored)) {
		snprintf(buf, len, "%s", stored);
		return true;
	}
	pl = strncmp(stored, "trusted.", 8) == 0 ? 16 : 13; /* the private prefix */
	if (strncmp(stored + pl, "overlay.", 8) != 0)
		return false;
	snprintf(buf, len, "%.*s%s", (int)pl, stored, stored + pl + 8);
	return true;
}

ino_t pfs_layer_ino(struct pfs_fs *fs, dev_t kdev, ino_t kino)
{
	struct pfs_layers *L = fs->layers;
	char buf[24];

	/* Layers on several filesystems: objects of each filesystem but the
	 * upper's get a tag in the high bits (overlayfs's xino), so numbers
	 * stay apart. */
	if (L->onedev && kdev == L->dev[0])
		return kino;
	for (size_t i = 0; i < L->n; i++)
		if (L->dev[i] == kdev)
			return L->fsid[i] ? (kino & ((1ull << 56) - 1)) | (uint64_t)L->fsid[i] << 56
					  : kino;
	/* No layer's: synthetic (0), or where a mapping table's target lies
	 * (tagged apart from the layers' tags, 1..199, as a mapped mount does). */
	if (kdev == 0 || (kino >> 56))
		return kino;
	snprintf(buf, sizeof(buf), "%llx", (unsigned long long)kdev);
	return kino | (uint64_t)(200 + pfs_map_hash(buf) % 55) << 56;
}

/* Does the directory name in dirfd (open as fd) hide the layers below? */
static bool is_opaque(struct pfs_fs *fs, int dirfd, const char *name, int fd)
{
	char v[4], p[64 + NAME_MAX];
	struct stat st;

	/* Either namespace: uppers made by the kernel (trusted.) and by
	 * unprivileged tools (user., overlayfs's userxattr) both work. */
	if (proc_at(p, sizeof(p), dirfd, name) == 0 &&
	    ((lgetxattr(p, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y') ||
	     (lgetxattr(p, "user.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y')))
		return true;
	return fstatat(fd, PFS_OVL_OPAQUE_MARKER, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The key of a non-directory found in the upper: where it was copied from. */
static void upper_key(struct pfs_fs *fs, int dirfd, const char *name, struct pfs_lfound *f)
{
	struct origin o;
	ssize_t len = pfs_layer_getx(fs, dirfd, name, ORIGIN_KEY, (char *)&o, sizeof(o));

	f->kdev = f->st.st_dev;
	f->kino = f->st.st_ino;
	if ((len == (ssize_t)ORIGIN_SHORT || len == (ssize_t)sizeof(o)) && o.layer > 0 &&
	    o.layer < fs->layers->n) {
		f->kdev = len == (ssize_t)sizeof(o) ? (dev_t)o.dev : fs->layers->dev[o.layer];
		f->kino = (ino_t)o.ino;
	}
}

int pfs_layer_set_origin(struct pfs_fs *fs, int dirfd, const char *name, int layer, dev_t dev,
			 ino_t ino)
{
	struct origin o = {.layer = (uint32_t)layer, .ino = ino, .dev = dev};
	bool own = dev == fs->layers->dev[layer];

	return pfs_layer_setx(fs, dirfd, name, ORIGIN_KEY, &o, own ? ORIGIN_SHORT : sizeof(o));
}

void pfs_lfound_put(struct pfs_fs *fs, struct pfs_lfound *f)
{
	if (f->ln)
		pfs_lnode_free(fs->layers, f->ln, -1);
	else if (f->fd >= 0)
		close(f->fd);
	if (f->sdir >= 0)
		close(f->sdir);
	free(f->sname);
	f->ln = NULL;
	f->fd = -1;
	f->sdir = -1;
	f->sname = NULL;
}

int pfs_layer_ldir_get(struct pfs_fs *fs, struct pfs_node *n, struct pfs_ldir *d)
{
	memset(d, 0, sizeof(*d));
	if (n->ln) {
		int fd = pfs_node_fd(fs, n); /* pins it: its fds stay open */

		if (fd < 0)
			return fd;
	}
	d->ln = n->ln;
	d->ctx = n->ctx;
	d->dev = n->dev;
	d->ino = n->ino;
	d->root = n == fs->root;
	d->map = pfs_view_map(fs);
	if (!d->map)
		return 0;
	d->vpath = pfs_node_path(fs, n, NULL);
	return d->vpath ? 0 : -ENOMEM;
}

void pfs_layer_ldir_put(struct pfs_ldir *d)
{
	pfs_map_unref(d->map);
	free(d->vpath);
	d->map = NULL;
	d->vpath = NULL;
}

/* The node key of a synthetic directory (the view's number for it). */
static void syn_key(const struct pfs_lsrc *src, struct pfs_lfound *f)
{
	f->kdev = 0;
	f->kino = pfs_view_synthetic_ino(src->pl.vpath);
	f->ctx = pfs_map_hash(src->pl.vpath);
}

/* SOURCE has nothing at the name, but the table has names below it: a
 * synthetic directory, shown (nothing above) or merged under an upper one. */
static int found_synthetic(struct pfs_fs *fs, const struct pfs_lsrc *src,
			   struct pfs_lfound *f, bool *merging, bool *keyed, int pbottom)
{
	int fd = fcntl(fs->empty_fd, F_DUPFD_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (f->layer < 0) {
		f->ln = pfs_lnode_new(fs->layers);
		if (!f->ln) {
			close(fd);
			return -ENOMEM;
		}
		f->layer = 1;
		f->fd = fd;
		f->ln->top = 1;
		syn_key(src, f);
		pfs_lmap_syn_attr(fs, f->kino, &f->st);
	} else {
		syn_key(src, f); /* an upper directory over it is known by it */
	}
	*keyed = true;
	f->below = true;
	f->ln->fd[1] = fd;
	f->ln->bottom = 1;
	f->ln->syn = true;
	*merging = 1 < pbottom;
	return 0;
}

/* The object of layer 1 shown was put where it is by the table: keep its
 * place for a copy-up (its parent's part of SOURCE does not hold it). */
static int keep_place(struct pfs_lsrc *src, const char *name, struct pfs_lfound *f)
{
	if (src->pl.own_fd < 0 && strcmp(src->pl.name, name) == 0)
		return 0;
	f->sname = strdup(src->pl.name);
	if (!f->sname)
		return -ENOMEM;
	if (src->pl.own_fd >= 0) {
		f->sdir = src->pl.own_fd;
		src->pl.own_fd = -1; /* now f's */
	} else {
		f->sdir = fcntl(src->pl.dirfd, F_DUPFD_CLOEXEC, 0);
		if (f->sdir < 0)
			return -errno;
	}
	return 0;
}

int pfs_layer_find(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		   struct pfs_lfound *f)
{
	struct pfs_ldir d;
	int ret;

	memset(f, 0, sizeof(*f));
	f->layer = -1;
	f->fd = f->sdir = -1;
	if (!parent->ln)
		return -ENOENT; /* a node from before a retire or without layers */
	ret = pfs_layer_ldir_get(fs, parent, &d);
	if (ret == 0)
		ret = pfs_layer_find_in(fs, &d, name, f);
	pfs_layer_ldir_put(&d);
	return ret;
}

/* The key of one name of a lower file with several links. A copy-up
 * breaks the link (as on overlayfs without index), so each name must be
 * an inode of its own: the kernel opens an inode, not a name, and the copy
 * must land at the name written through. All names still show the lower
 * file's number until then, as on overlayfs. */
static uint64_t link_ctx(const struct pfs_ldir *dir, const char *name, uint64_t ctx)
{
	uint64_t h = pfs_map_hash(name) ^ ctx;

	h ^= ((uint64_t)dir->dev * 0xc2b2ae3d27d4eb4full) ^ ((uint64_t)dir->ino * 0x9e3779b97f4a7c15ull);
	h ^= dir->ctx * 0xff51afd7ed558ccdull;
	return h | 1; /* never 0: that is a name the table did not place */
}

int pfs_layer_find_in(struct pfs_fs *fs, const struct pfs_ldir *dir, const char *name,
		      struct pfs_lfound *f)
{
	struct pfs_layers *L = fs->layers;
	const struct pfs_lnode *pl = dir->ln;
	struct pfs_lsrc src = {.pl = {.own_fd = -1}};
	bool merging = false, keyed = false;
	int last = pl ? pl->bottom : -1, ret = 0, unreach = 0;

	memset(f, 0, sizeof(*f));
	f->layer = -1;
	f->fd = f->sdir = -1;
	if (!pl)
		return -ENOENT;
	if (strncmp(name, PFS_OVL_WH_PREFIX, 4) == 0)
		return -ENOENT; /* whiteouts and markers are never names of the view */
	if (dir->map) {
		ret = pfs_lmap_source(fs, dir, name, &src);
		if (ret < 0)
			goto err;
		f->ctx = src.pl.ctx;
		if (src.hidden)
			last = 0; /* the user's own entries still show */
	}
	for (int i = pl->top; i <= last; i++) {
		int d = __atomic_load_n(&pl->fd[i], __ATOMIC_ACQUIRE);
		const char *nm = name;
		struct stat st;

		if (i == 1 && dir->map) { /* SOURCE: where the table says */
			d = src.use ? src.pl.dirfd : -1;
			nm = src.pl.name;
			if (src.use)
				unreach = src.pl.unreach;
		}
		if (d >= 0 && pfs_selfmnt_fstatat(fs, d, nm, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT && errno != ENOTDIR) {
				ret = -errno;
				goto err;
			}
			if (pfs_ovl_has_wh_file(fs->store, d, nm)) {
				if (i == 0)
					f->upper_wh = f->upper_wh_file = true;
				break;
			}
			d = -1;
		}
		if (d < 0) {
			if (!(i == 1 && dir->map && src.use && src.syn_ok))
				continue;
			if (f->layer >= 0 && !merging) {
				f->below = true; /* under an upper non-directory */
				break;
			}
			ret = found_synthetic(fs, &src, f, &merging, &keyed, pl->bottom);
			if (ret < 0)
				goto err;
			if (!merging)
				break;
			continue;
		}
		if (pfs_ovl_is_whiteout(&st)) {
			if (i == 0)
				f->upper_wh = true;
			break;
		}
		if (f->layer < 0) {
			int fd = pfs_selfmnt_openat(fs, d, nm, O_PATH | O_NOFOLLOW | O_CLOEXEC);

			if (fd < 0) {
				ret = -errno;
				goto err;
			}
			f->layer = i;
			f->fd = fd;
			f->st = st;
			f->below = i > 0;
			if (i == 1 && dir->map) {
				ret = keep_place(&src, name, f);
				if (ret < 0)
					goto err;
			}
			if (S_ISDIR(st.st_mode)) {
				f->ln = pfs_lnode_new(L);
				if (!f->ln) {
					ret = -ENOMEM;
					goto err;
				}
				f->ln->top = f->ln->bottom = (uint8_t)i;
				f->ln->fd[i] = fd;
				/* A `.wh.NAME` beside a real directory makes it a
				 * replacement, not a merge (as an opaque one). */
				merging = i < pl->bottom && !is_opaque(fs, d, nm, fd) &&
					  !pfs_ovl_has_wh_file(fs->store, d, nm);
				if (i > 0) {
					f->kdev = st.st_dev;
					f->kino = st.st_ino;
					keyed = true;
				}
			} else if (i == 0) {
				upper_key(fs, d, nm, f);
				keyed = true;
			} else {
				f->kdev = st.st_dev;
				f->kino = st.st_ino;
				if (st.st_nlink > 1)
					f->ctx = link_ctx(dir, name, f->ctx);
				keyed = true;
			}
			if (i > 0 && !merging)
				break;
			continue;
		}
		/* Below the object shown. */
		f->below = true;
		if (merging && S_ISDIR(st.st_mode)) {
			int fd = pfs_selfmnt_openat(fs, d, nm,
						    O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (fd < 0) {
				ret = -errno;
				goto err;
			}
			f->ln->fd[i] = fd;
			f->ln->bottom = (uint8_t)i;
			if (!keyed) { /* a merged directory is known by its highest lower */
				f->kdev = st.st_dev;
				f->kino = st.st_ino;
				keyed = true;
			}
			merging = i < pl->bottom && !is_opaque(fs, d, nm, fd);
		} else {
			merging = false;
		}
		if (!merging)
			break;
	}
	if (f->layer >= 0 && !keyed) {
		f->kdev = f->st.st_dev;
		f->kino = f->st.st_ino;
	}
	if (dir->map)
		pfs_lmap_source_put(&src);
	/* Nothing shows: EXDEV where the table's way out of SOURCE is why. */
	return f->layer >= 0 ? 0 : unreach ? unreach : -ENOENT;
err:
	if (dir->map)
		pfs_lmap_source_put(&src);
	pfs_lfound_put(fs, f);
	f->layer = -1;
	return ret;
}

/* ---- listing ---- */

static bool is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

struct lvl {
	struct pfs_names names;
	int fd; /* readable fd on the directory */
};

/* Does layer level lv (a directory in a higher layer) shadow name? */
static bool shadows(const struct lvl *lv, const char *name)
{
	char wh[NAME_MAX + 8];

	if (pfs_names_find(&lv->names, name))
		return true;
	if (strlen(name) > NAME_MAX - 4)
		return false;
	snprintf(wh, sizeof(wh), PFS_OVL_WH_PREFIX "%s", name);
	return pfs_names_find(&lv->names, wh) != NULL;
}

/* The levels of directory d: each layer's part, read whole. With a table,
 * SOURCE's part of the root is the directory a key "/" names, and a hidden
 * directory shows its upper part only. */
static int read_levels(struct pfs_fs *fs, const struct pfs_ldir *d, bool hidden, struct lvl *lv)
{
	const struct pfs_lnode *ln = d->ln;

	for (size_t i = 0; i < fs->layers->n; i++) {
		lv[i].fd = -1;
		memset(&lv[i].names, 0, sizeof(lv[i].names));
	}
	for (int i = ln->top; i <= (hidden ? 0 : ln->bottom); i++) {
		int fd = __atomic_load_n(&ln->fd[i], __ATOMIC_ACQUIRE), ret;

		if (i == 1 && ln->syn)
			continue; /* a synthetic directory: the table's names only */
		if (i == 1 && d->root && d->map) {
			lv[i].fd = pfs_view_root_target(fs, O_RDONLY | O_DIRECTORY);
			/* A key "/" whose target cannot be opened shows nothing
			 * of SOURCE (not SOURCE's own root); it fails alone. */
			if (lv[i].fd < 0 && pfs_view_root_keyed(fs))
				continue;
			if (lv[i].fd < 0 && lv[i].fd != -ENOENT)
				return lv[i].fd;
		}
		if (lv[i].fd < 0 && fd >= 0) {
			lv[i].fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (lv[i].fd < 0)
				return -errno;
		}
		if (lv[i].fd < 0)
			continue;
		ret = pfs_names_read(lv[i].fd, &lv[i].names);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void free_levels(struct pfs_fs *fs, struct lvl *lv)
{
	for (size_t i = 0; i < fs->layers->n; i++) {
		if (lv[i].fd >= 0)
			close(lv[i].fd);
		pfs_names_free(&lv[i].names);
	}
}

/* Is the entry e of level i visible in the merge (not a marker, not a
 * whiteout, not shadowed by a higher level)? Sets *st when it had to stat. */
static bool visible(const struct pfs_lnode *ln, struct lvl *lv, int i, const struct pfs_name *e)
{
	struct stat st;

	if (strncmp(e->name, PFS_OVL_WH_PREFIX, 4) == 0)
		return false; /* a whiteout or the opaque marker, never shown */
	if ((e->type == DT_CHR || e->type == DT_UNKNOWN) &&
	    fstatat(lv[i].fd, e->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && pfs_ovl_is_whiteout(&st))
		return false;
	for (int j = ln->top; j < i; j++)
		if (lv[j].fd >= 0 && shadows(&lv[j], e->name))
			return false;
	return true;
}

/* Each name directory d shows: cb(arg, name, ino, type); with exact
 * false, upper names are not looked up (ino and type are the entry's). The
 * names the table decides are looked up one by one, after the others. */
static int list_names(struct pfs_fs *fs, const struct pfs_ldir *d, bool exact,
		      pfs_layer_list_cb *cb, void *arg)
{
	const struct pfs_lnode *ln = d->ln;
	struct pfs_lclaims claims = {0};
	struct lvl *lv = calloc(fs->layers->n, sizeof(*lv));
	int ret = 0;

	if (!lv)
		return -ENOMEM;
	if (d->map)
		ret = pfs_lmap_claims(d, &claims);
	if (ret == 0)
		ret = read_levels(fs, d, claims.hidden, lv);
	for (int i = ln->top; i <= ln->bottom && ret == 0; i++) {
		for (size_t k = 0; lv[i].fd >= 0 && k < lv[i].names.n && ret == 0; k++) {
			const struct pfs_name *e = &lv[i].names.v[k];
			struct pfs_lfound f;
			ino_t ino = 0;
			unsigned char type = e->type;

			if (!visible(ln, lv, i, e) || pfs_lmap_claimed(&claims, e->name))
				continue;
			/* Upper objects may carry another number (copied up, or a
			 * directory merged with a lower): ask as a lookup would. A
			 * lower entry shown is the highest of its name, which is
			 * what a lookup keys it by: its own number. */
			if (i == 0 && exact) {
				int r = pfs_layer_find_in(fs, d, e->name, &f);

				if (r == -ENOENT)
					continue;
				if (r < 0) {
					ret = r;
					break;
				}
				ino = pfs_layer_ino(fs, f.kdev, f.kino);
				type = IFTODT(f.st.st_mode);
				pfs_lfound_put(fs, &f);
			} else if (exact) {
				struct stat st;

				if (pfs_selfmnt_fstatat(fs, lv[i].fd, e->name, &st,
								AT_SYMLINK_NOFOLLOW) < 0)
					continue;
				ino = pfs_layer_ino(fs, st.st_dev, st.st_ino);
				type = IFTODT(st.st_mode);
			}
			ret = cb(arg, e->name, ino, type);
		}
	}
	for (size_t k = 0; k < claims.n && ret == 0; k++) {
		struct pfs_lfound f;
		int r = pfs_layer_find_in(fs, d, claims.v[k], &f);

		/* A name the table places fails alone: its neighbours list. */
		if (r < 0 && !pfs_err_resource(r))
			continue;
		if (r < 0) {
			ret = r;
			break;
		}
		ret = cb(arg, claims.v[k], pfs_layer_ino(fs, f.kdev, f.kino), IFTODT(f.st.st_mode));
		pfs_lfound_put(fs, &f);
	}
	pfs_lmap_claims_free(&claims);
	free_levels(fs, lv);
	free(lv);
	return ret;
}

int pfs_layer_list(struct pfs_fs *fs, struct pfs_node *n, pfs_layer_list_cb *cb, void *arg)
{
	struct pfs_ldir d;
	ino_t up = 1; /* the root's parent is outside: glibc skips d_ino 0 */
	int ret;

	if (!n->ln)
		return -ESTALE;
	ret = pfs_layer_ldir_get(fs, n, &d);
	if (ret == 0)
		ret = cb(arg, ".", pfs_layer_ino(fs, n->dev, n->ino), DT_DIR);
	if (ret == 0) {
		pthread_rwlock_rdlock(&fs->names_lock);
		if (n != fs->root && n->alias)
			up = pfs_layer_ino(fs, n->alias->parent->dev, n->alias->parent->ino);
		pthread_rwlock_unlock(&fs->names_lock);
		ret = cb(arg, "..", up, DT_DIR);
	}
	if (ret == 0)
		ret = list_names(fs, &d, true, cb, arg);
	pfs_layer_ldir_put(&d);
	return ret;
}

static int any_name(void *arg, const char *name, ino_t ino, unsigned char type)
{
	(void)arg;
	(void)ino;
	(void)type;
	return is_dot(name) ? 0 : 1;
}

int pfs_layer_dir_nonempty(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
			   const struct pfs_lfound *f)
{
	struct pfs_ldir d;
	int ret = pfs_layer_ldir_get(fs, parent, &d);

	if (ret == 0 && d.vpath) { /* the directory's own path */
		char *vp = pfs_path_join(d.vpath, name);

		free(d.vpath);
		d.vpath = vp;
		ret = vp ? 0 : -ENOMEM;
	}
	d.ln = f->ln;
	d.ctx = f->ctx;
	d.dev = f->kdev;
	d.ino = f->kino;
	d.root = false;
	if (ret == 0)
		ret = list_names(fs, &d, false, any_name, NULL);
	pfs_layer_ldir_put(&d);
	return ret;
}

/* ---- opening ---- */

static int open_dir(const char *path, const char *what, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if (errno == ENOENT)
		seterr(err, errlen, "%s %s does not exist", what, path);
	else if (errno == ENOTDIR)
		seterr(err, errlen, "%s %s is not a directory", what, path);
	else
		snprintf(err, errlen, "cannot open %s %s: %s", what, path, strerror(errno));
	(void)st;
	return -errno;
}

/* Is a below b (or the same)? Both canonical. */
static bool path_within(const char *a, const char *b)
{
	size_t lb = strlen(b);

	if (strcmp(b, "/") == 0)
		return true;
	return strncmp(a, b, lb) == 0 && (a[lb] == '/' || a[lb] == '\0');
}

static int probe_xattrs(struct pfs_layers *L, int workfd)
{
	char p[48];
	static const char *const prefixes[] = {"trusted.overlay.", "user.overlay."};

	snprintf(p, sizeof(p), "/proc/self/fd/%d", workfd);
	for (size_t i = 0; i < 2; i++) {
		char x[64];

		snprintf(x, sizeof(x), "%sprismfs.probe", prefixes[i]);
		if (setxattr(p, x, "1", 1, 0) == 0) {
			removexattr(p, x);
			L->xattrs = true;
			snprintf(L->xprefix, sizeof(L->xprefix), "%s", prefixes[i]);
			return 0;
		}
	}
	/* No xattrs here: opaque directories get the `.wh..wh..opq` marker. */
	snprintf(L->xprefix, sizeof(L->xprefix), "trusted.overlay.");
	return 0;
}

static int probe_whiteout(struct pfs_layers *L, int workfd, enum pfs_whiteout form, char *err,
			  size_t errlen)
{
	char name[32];

	if (form == PFS_WH_FILE) {
		L->wh_file = true;
		return 0;
	}
	pfs_layer_tmpname(L, name);
	if (mknodat(workfd, name, S_IFCHR | 0, makedev(0, 0)) == 0) {
		unlinkat(workfd, name, 0);
		return 0;
	}
	if (form == PFS_WH_CHARDEV) {
		snprintf(err, errlen,
			 "cannot make whiteouts as character devices in the work directory: %s "
			 "(use --whiteout file)", strerror(errno));
		return -errno;
	}
	L->wh_file = true;
	return 0;
}

/* An upper written through a mapping table holds virtual paths: no commit
 * may apply them to SOURCE's real ones. It is marked (pfs_layers_mark_mapped)
 * and the mark stays until a discard empties the upper. */
static int check_mapped(struct pfs_fs *fs, struct pfs_layers *L,
			const struct pfs_layer_spec *spec, char *err, size_t errlen)
{
	int fd = openat(L->root[0], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), has;
	bool map = fs->cfg && fs->cfg->map_path;

	if (fd < 0) {
		snprintf(err, errlen, "cannot open upper directory %s: %s", spec->upper,
			 strerror(errno));
		return -errno;
	}
	has = pfs_ovl_has(fs->store, pfs_ref_fd(fd), PFS_OVL_MAPPED);
	close(fd);
	if (map && !L->xattrs) {
		/* Without the mark an offline commit could not tell. */
		snprintf(err, errlen, "--map with --upper needs extended attributes on the "
			 "upper's filesystem (%s), to mark what it holds", spec->upper);
		return -ENOTSUP;
	}
	L->mapped = has > 0 || map;
	if (L->mapped && fs->cfg &&
	    (fs->cfg->action == PFS_ACT_COMMIT || fs->cfg->action == PFS_ACT_COMMIT_ATOMIC)) {
		snprintf(err, errlen, "--on-unmount %s cannot be used %s: its paths are the "
			 "view's, not SOURCE's (use preserve or discard)",
			 pfs_action_name(fs->cfg->action),
			 map ? "with --map" : "on an upper written through --map");
		return -EINVAL;
	}
	return 0;
}

int pfs_layers_mark_mapped(struct pfs_fs *fs, char *err, size_t errlen)
{
	struct pfs_layers *L = fs->layers;
	int fd, ret = 0;
	char x[64];

	if (!L || !fs->cfg || !fs->cfg->map_path)
		return 0;
	fd = openat(L->root[0], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(x, sizeof(x), "%s%s", L->xprefix, PFS_OVL_MAPPED);
	if (fd < 0 || fsetxattr(fd, x, "y", 1, 0) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot mark the upper directory as written through --map: "
			 "%s", strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

int pfs_layers_open(struct pfs_fs *fs, const struct pfs_layer_spec *spec, char *err,
		    size_t errlen)
{
	struct pfs_layers *L = calloc(1, sizeof(*L));
	char **real = NULL;
	size_t n = spec->nlowers + 1;
	int wfd = -1, ret = -ENOMEM;
	struct stat st;

	if (!L)
		goto nomem;
	if (spec->nlowers == 0 || n > PFS_LAYERS_MAX) {
		snprintf(err, errlen, "a layered mount needs 1 to 199 lower directories");
		ret = -EINVAL;
		goto fail;
	}
	L->n = n;
	L->work_fd = -1;
	pthread_mutex_init(&L->lock, NULL);
	L->root = malloc(n * sizeof(int));
	L->dev = calloc(n, sizeof(dev_t));
	L->fsid = calloc(n, 1);
	real = calloc(n + 1, sizeof(char *));
	if (!L->root || !L->dev || !L->fsid || !real)
		goto nomem;
	for (size_t i = 0; i < n; i++)
		L->root[i] = -1;
	/* upper */
	ret = open_dir(spec->upper, "upper directory", err, errlen);
	if (ret < 0)
		goto fail;
	L->root[0] = ret;
	real[0] = realpath(spec->upper, NULL);
	if (faccessat(L->root[0], ".", W_OK, AT_EACCESS) < 0) {
		ret = -errno;
		snprintf(err, errlen, "upper directory %s is not writable: %s", spec->upper,
			 strerror(errno));
		goto fail;
	}
	for (size_t i = 1; i < n; i++) {
		const char *p = spec->lowers[i - 1];

		ret = i == 1 ? fcntl(fs->root_fd, F_DUPFD_CLOEXEC, 0)
			     : open_dir(p, "lower directory", err, errlen);
		if (ret < 0)
			goto fail;
		L->root[i] = ret;
		real[i] = realpath(p, NULL);
	}
	for (size_t i = 0; i < n; i++) {
		if (!real[i])
			goto nomem;
		if (fstat(L->root[i], &st) < 0) {
			ret = -errno;
			goto fail;
		}
		L->dev[i] = st.st_dev;
	}
	/* Layers may not overlap: a change in the upper would show up in a
	 * lower (the kernel refuses these too). */
	for (size_t i = 1; i < n; i++) {
		if (path_within(real[0], real[i]) || path_within(real[i], real[0])) {
			seterr(err, errlen, "upper directory %s and lower directory %s overlap",
			       spec->upper, spec->lowers[i - 1]);
			ret = -EINVAL;
			goto fail;
		}
	}
	/* work */
	if (!spec->work) {
		snprintf(err, errlen, "a layered mount needs a work directory (--work)");
		ret = -EINVAL;
		goto fail;
	}
	ret = open_dir(spec->work, "work directory", err, errlen);
	if (ret < 0)
		goto fail;
	wfd = ret;
	real[n] = realpath(spec->work, NULL);
	if (!real[n])
		goto nomem;
	if (fstat(wfd, &st) < 0) {
		ret = -errno;
		goto fail;
	}
	if (st.st_dev != L->dev[0]) {
		seterr(err, errlen, "work directory %s is not on the filesystem of upper directory %s",
		       spec->work, spec->upper);
		ret = -EXDEV;
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		if (path_within(real[n], real[i]) || path_within(real[i], real[n])) {
			seterr(err, errlen, "work directory %s overlaps layer %s", spec->work,
			       i ? spec->lowers[i - 1] : spec->upper);
			ret = -EINVAL;
			goto fail;
		}
	}
	/* Temporaries live in W/work, as the kernel's do; what a crash left
	 * there is removed now. */
	if (mkdirat(wfd, "work", 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "cannot use work directory %s: %s", spec->work,
			 strerror(errno));
		goto fail;
	}
	L->work_fd = openat(wfd, "work", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (L->work_fd < 0 || pfs_rmtree_contents(fs->store, L->work_fd, NULL, 0) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot use work directory %s: %s", spec->work,
			 strerror(errno));
		goto fail;
	}
	probe_xattrs(L, L->work_fd);
	ret = probe_whiteout(L, L->work_fd, spec->whiteout, err, errlen);
	if (ret < 0)
		goto fail;
	ret = check_mapped(fs, L, spec, err, errlen);
	if (ret < 0)
		goto fail;
	/* Filesystem tags for inode numbers: the upper's is 0. */
	L->onedev = true;
	for (size_t i = 1; i < n; i++) {
		if (L->dev[i] == L->dev[0])
			continue;
		L->onedev = false;
		for (size_t j = 1; j <= i; j++) {
			if (L->dev[j] == L->dev[i] && L->fsid[j]) {
				L->fsid[i] = L->fsid[j];
				break;
			}
			if (j == i) {
				uint8_t max = 0;

				for (size_t k = 1; k < i; k++)
					max = L->fsid[k] > max ? L->fsid[k] : max;
				L->fsid[i] = max + 1;
			}
		}
	}
	close(wfd);
	for (size_t i = 0; i <= n; i++)
		free(real[i]);
	free(real);
	fs->layers = L;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	ret = -ENOMEM;
fail:
	if (wfd >= 0)
		close(wfd);
	if (real) {
		for (size_t i = 0; i <= n; i++)
			free(real[i]);
		free(real);
	}
	if (L) {
		fs->layers = L;
		pfs_layers_close(fs);
	}
	return ret;
}

void pfs_layers_close(struct pfs_fs *fs)
{
	struct pfs_layers *L = fs->layers;

	if (!L)
		return;
	for (size_t i = 0; L->root && i < L->n; i++)
		if (L->root[i] >= 0)
			close(L->root[i]);
	if (L->work_fd >= 0)
		close(L->work_fd);
	pthread_mutex_destroy(&L->lock);
	free(L->root);
	free(L->dev);
	free(L->fsid);
	free(L);
	fs->layers = NULL;
}

struct pfs_lnode *pfs_layer_root_ln(struct pfs_fs *fs)
{
	struct pfs_layers *L = fs->layers;
	struct pfs_lnode *ln = pfs_lnode_new(L);

	if (!ln)
		return NULL;
	ln->top = 0;
	ln->bottom = (uint8_t)(L->n - 1);
	for (size_t i = 0; i < L->n; i++) {
		ln->fd[i] = L->root[i];
		if (i > 0 && i + 1 < L->n && is_opaque(fs, L->root[i], "", L->root[i])) {
			ln->bottom = (uint8_t)i;
			break;
		}
	}
	return ln;
}
