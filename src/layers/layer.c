/* layer: the layers of a copy-on-write mount — their nodes, the
 * attributes prismfs keeps on upper objects, inode numbers, and merged
 * directories as a lookup in them sees them. Finding a name is
 * layer_find.c, listing layer_list.c, opening the layers layer_open.c.
 * The format is kernel overlayfs's (Documentation/filesystems/
 * overlayfs.rst): a name is whited out by a 0/0 character device or a
 * `.wh.NAME` entry (OCI layers); a directory stops the merge below it when
 * its overlay.opaque xattr is "y" or it holds `.wh..wh..opq`. */
#include "layers/layer.h"
#include "layers/layer_int.h"
#include "view/selfmnt.h"
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
	ln->moved = false;
	ln->meta = false;
	ln->nodata = 0;
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

int pfs_layer_lstat_at(struct pfs_fs *fs, int dirfd, const char *name, struct stat *st)
{
	if (pfs_selfmnt_is(fs, dirfd, name))
		return pfs_st_fstat(fs->store, fs->cover_fd, st);
	return pfs_st_stat(fs->store, dirfd, name, st, AT_SYMLINK_NOFOLLOW);
}

int pfs_layer_open_at(struct pfs_fs *fs, int dirfd, const char *name, int flags)
{
	int fd;

	if (!pfs_selfmnt_is(fs, dirfd, name))
		return pfs_st_openat(fs->store, dirfd, name, flags, 0);
	if (flags & O_PATH) {
		fd = fcntl(fs->cover_fd, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	/* "." stays on the covered directory: it never crosses a mount. */
	return pfs_st_openat(fs->store, fs->cover_fd, ".", flags & ~(O_NOFOLLOW | O_CREAT | O_EXCL),
			     0);
}

struct pfs_ref pfs_layer_ref(struct pfs_fs *fs, int dirfd, const char *name)
{
	/* By name, the store's call walks the name, and a walk crosses into
	 * a mount there: the covered directory is taken by its descriptor. */
	if (name && *name && pfs_selfmnt_is(fs, dirfd, name))
		return pfs_ref_path(fs->cover_fd);
	return pfs_ref_at(dirfd, name && *name ? name : ".");
}

ssize_t pfs_layer_getx(struct pfs_fs *fs, int dirfd, const char *name, const char *key,
		       char *buf, size_t len)
{
	char x[64];

	snprintf(x, sizeof(x), "%s%s", fs->layers->xprefix, key);
	return pfs_st_getxattr(fs->store, pfs_layer_ref(fs, dirfd, name), x, buf, len);
}

int pfs_layer_setx(struct pfs_fs *fs, int dirfd, const char *name, const char *key,
		   const void *val, size_t len)
{
	char x[64];

	snprintf(x, sizeof(x), "%s%s", fs->layers->xprefix, key);
	return pfs_st_setxattr(fs->store, pfs_layer_ref(fs, dirfd, name), x, val, len, 0);
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

bool pfs_layer_is_opaque(struct pfs_fs *fs, int dirfd, const char *name, int fd)
{
	struct pfs_store *s = fs->store;
	struct pfs_ref r = pfs_layer_ref(fs, dirfd, name);
	struct stat st;
	char v[4];

	/* Either namespace: uppers made by the kernel (trusted.) and by
	 * unprivileged tools (user., overlayfs's userxattr) both work. */
	if ((pfs_st_getxattr(s, r, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y') ||
	    (pfs_st_getxattr(s, r, "user.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y'))
		return true;
	return pfs_st_stat(s, fd, PFS_OVL_OPAQUE_MARKER, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

void pfs_layer_upper_key(struct pfs_fs *fs, int dirfd, const char *name, struct pfs_lfound *f)
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


struct pfs_lnode *pfs_layer_root_ln(struct pfs_fs *fs)
{
	struct pfs_layers *L = fs->layers;
	struct pfs_lnode *ln = pfs_lnode_new(L);

	if (!ln)
		return NULL;
	ln->top = L->no_upper ? 1 : 0; /* never in layer 0 then: nothing finds it */
	/* Data-only layers are never merged: the lowest regular one ends it. */
	ln->bottom = (uint8_t)(L->n - 1 - L->ndata);
	for (size_t i = ln->top; i <= ln->bottom; i++) {
		ln->fd[i] = L->root[i];
		if (i > 0 && i < ln->bottom && pfs_layer_is_opaque(fs, L->root[i], "", L->root[i])) {
			ln->bottom = (uint8_t)i;
			break;
		}
	}
	return ln;
}
