/* layer_open: opening the layers of a mount and checking them first, as
 * the kernel checks an overlay mount's: each exists and is a directory,
 * the upper is writable, the work directory is on the upper's filesystem,
 * nothing overlaps. Then what the upper's filesystem can hold is probed
 * (overlay xattrs, whiteout devices), once, in the work directory. */
#include "layers/layer.h"
#include "layers/layer_int.h"
#include "store/rmtree.h"
#include "view/view.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "layers/ovlfmt.h"

static void seterr(char *err, size_t len, const char *fmt, const char *a, const char *b)
{
	snprintf(err, len, fmt, a, b);
}

static int open_dir(struct pfs_store *s, const char *path, const char *what, char *err,
		    size_t errlen)
{
	int fd = pfs_st_openat(s, AT_FDCWD, path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);

	if (fd >= 0)
		return fd;
	if (fd == -ENOENT)
		seterr(err, errlen, "%s %s does not exist", what, path);
	else if (fd == -ENOTDIR)
		seterr(err, errlen, "%s %s is not a directory", what, path);
	else
		snprintf(err, errlen, "cannot open %s %s: %s", what, path, strerror(-fd));
	return fd;
}

/* Is a below b (or the same)? Both canonical. */
static bool path_within(const char *a, const char *b)
{
	size_t lb = strlen(b);

	if (strcmp(b, "/") == 0)
		return true;
	return strncmp(a, b, lb) == 0 && (a[lb] == '/' || a[lb] == '\0');
}

/* Where the layers keep their xattrs: trusted.overlay.* if the daemon may
 * (the kernel's default), else user.overlay.*; with userxattr, user.* only,
 * as the kernel's option. */
static int probe_xattrs(struct pfs_store *s, struct pfs_layers *L, int workfd, bool userxattr)
{
	static const char *const prefixes[] = {"trusted.overlay.", "user.overlay."};
	struct pfs_ref w = pfs_ref_at(workfd, ".");

	for (size_t i = userxattr ? 1 : 0; i < 2; i++) {
		char x[64];

		snprintf(x, sizeof(x), "%sprismfs.probe", prefixes[i]);
		if (pfs_st_setxattr(s, w, x, "1", 1, 0) == 0) {
			pfs_st_removexattr(s, w, x);
			L->xattrs = true;
			snprintf(L->xprefix, sizeof(L->xprefix), "%s", prefixes[i]);
			return 0;
		}
	}
	/* No xattrs here: opaque directories get the `.wh..wh..opq` marker. */
	snprintf(L->xprefix, sizeof(L->xprefix), "%s", prefixes[userxattr ? 1 : 0]);
	return 0;
}

static int probe_whiteout(struct pfs_store *s, struct pfs_layers *L, int workfd,
			  enum pfs_whiteout form, char *err, size_t errlen)
{
	char name[32];
	int ret;

	if (form == PFS_WH_FILE) {
		L->wh_file = true;
		return 0;
	}
	pfs_layer_tmpname(L, name);
	ret = pfs_st_mknod(s, workfd, name, S_IFCHR | 0, makedev(0, 0));
	if (ret == 0) {
		pfs_st_unlink(s, workfd, name, 0);
		return 0;
	}
	if (form == PFS_WH_CHARDEV) {
		snprintf(err, errlen,
			 "cannot make whiteouts as character devices in the work directory: %s "
			 "(use --whiteout file)", strerror(-ret));
		return ret;
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
	int fd = pfs_st_openat(fs->store, L->root[0], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	bool map = spec->map;
	int has;

	if (fd < 0) {
		snprintf(err, errlen, "cannot open upper directory %s: %s", spec->upper,
			 strerror(-fd));
		return fd;
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
	L->map_given = map;
	if (L->mapped && (spec->action == PFS_ACT_COMMIT || spec->action == PFS_ACT_COMMIT_ATOMIC)) {
		snprintf(err, errlen, "--on-unmount %s cannot be used %s: its paths are the "
			 "view's, not SOURCE's (use preserve or discard)",
			 pfs_action_name(spec->action),
			 map ? "with --map" : "on an upper written through --map");
		return -EINVAL;
	}
	return 0;
}

int pfs_layers_mark_mapped(struct pfs_fs *fs, char *err, size_t errlen)
{
	struct pfs_layers *L = fs->layers;
	int fd, ret;
	char x[64];

	if (!L || !L->map_given)
		return 0;
	fd = pfs_st_openat(fs->store, L->root[0], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	snprintf(x, sizeof(x), "%s%s", L->xprefix, PFS_OVL_MAPPED);
	ret = fd < 0 ? fd : pfs_st_setxattr(fs->store, pfs_ref_fd(fd), x, "y", 1, 0);
	if (ret < 0)
		snprintf(err, errlen, "cannot mark the upper directory as written through --map: "
			 "%s", strerror(-ret));
	if (fd >= 0)
		close(fd);
	return ret;
}

/* The layers being opened: L, and each one's canonical path (real[n]: the
 * work directory's) for the overlap checks. */
struct opening {
	struct pfs_fs *fs;
	const struct pfs_layer_spec *spec;
	struct pfs_layers *L;
	char **real;
	size_t n;
	int wfd;
	char *err;
	size_t errlen;
};

static int nomem(struct opening *o)
{
	snprintf(o->err, o->errlen, "out of memory");
	return -ENOMEM;
}

static int alloc_layers(struct opening *o)
{
	struct pfs_layers *L = calloc(1, sizeof(*L));
	size_t n = o->n;

	o->L = L;
	if (!L)
		return nomem(o);
	L->n = n;
	L->work_fd = -1;
	pthread_mutex_init(&L->lock, NULL);
	L->root = malloc(n * sizeof(int));
	L->dev = calloc(n, sizeof(dev_t));
	L->fsid = calloc(n, 1);
	o->real = calloc(n + 1, sizeof(char *));
	if (!L->root || !L->dev || !L->fsid || !o->real)
		return nomem(o);
	for (size_t i = 0; i < n; i++)
		L->root[i] = -1;
	return 0;
}

/* The upper (writable) and the lowers (the first is SOURCE, already open),
 * their filesystems, and that none overlaps the upper. */
static int open_roots(struct opening *o)
{
	const struct pfs_layer_spec *spec = o->spec;
	struct pfs_layers *L = o->L;
	struct stat st;
	int ret;

	if (L->no_upper)
		goto lowers;
	ret = open_dir(o->fs->store, spec->upper, "upper directory", o->err, o->errlen);
	if (ret < 0)
		return ret;
	L->root[0] = ret;
	o->real[0] = realpath(spec->upper, NULL);
	if (faccessat(L->root[0], ".", W_OK, AT_EACCESS) < 0) {
		ret = -errno;
		snprintf(o->err, o->errlen, "upper directory %s is not writable: %s", spec->upper,
			 strerror(errno));
		return ret;
	}
lowers:
	for (size_t i = 1; i < o->n; i++) {
		const char *p = spec->lowers[i - 1];

		if (i == 1) {
			ret = fcntl(o->fs->root_fd, F_DUPFD_CLOEXEC, 0);
			ret = ret < 0 ? -errno : ret;
		} else {
			ret = open_dir(o->fs->store, p, "lower directory", o->err, o->errlen);
		}
		if (ret < 0)
			return ret;
		L->root[i] = ret;
		o->real[i] = realpath(p, NULL);
	}
	for (size_t i = L->no_upper; i < o->n; i++) {
		if (!o->real[i])
			return nomem(o);
		if (fstat(L->root[i], &st) < 0)
			return -errno;
		L->dev[i] = st.st_dev;
	}
	/* Without an upper, inode numbers are real on the top lower's
	 * filesystem (as the kernel's: the layers' first). */
	if (L->no_upper)
		L->dev[0] = L->dev[1];
	/* Layers may not overlap: a change in the upper would show up in a
	 * lower (the kernel refuses these too). */
	for (size_t i = 1; i < o->n && !L->no_upper; i++) {
		if (path_within(o->real[0], o->real[i]) || path_within(o->real[i], o->real[0])) {
			seterr(o->err, o->errlen, "upper directory %s and lower directory %s overlap",
			       spec->upper, spec->lowers[i - 1]);
			return -EINVAL;
		}
	}
	return 0;
}

/* The work directory: on the upper's filesystem, overlapping no layer. */
static int open_work(struct opening *o)
{
	const struct pfs_layer_spec *spec = o->spec;
	size_t n = o->n;
	struct stat st;
	int ret;

	if (!spec->work) {
		snprintf(o->err, o->errlen, "a layered mount needs a work directory (--work)");
		return -EINVAL;
	}
	ret = open_dir(o->fs->store, spec->work, "work directory", o->err, o->errlen);
	if (ret < 0)
		return ret;
	o->wfd = ret;
	o->real[n] = realpath(spec->work, NULL);
	if (!o->real[n])
		return nomem(o);
	if (fstat(o->wfd, &st) < 0)
		return -errno;
	if (st.st_dev != o->L->dev[0]) {
		seterr(o->err, o->errlen,
		       "work directory %s is not on the filesystem of upper directory %s",
		       spec->work, spec->upper);
		return -EXDEV;
	}
	for (size_t i = 0; i < n; i++) {
		if (path_within(o->real[n], o->real[i]) || path_within(o->real[i], o->real[n])) {
			seterr(o->err, o->errlen, "work directory %s overlaps layer %s", spec->work,
			       i ? spec->lowers[i - 1] : spec->upper);
			return -EINVAL;
		}
	}
	return 0;
}

/* Temporaries live in W/work, as the kernel's do; what a crash left there
 * is removed now. */
static int clean_work(struct opening *o)
{
	struct pfs_store *s = o->fs->store;
	struct pfs_layers *L = o->L;
	int ret = pfs_st_mkdir(s, o->wfd, "work", 0700);

	if (ret == 0 || ret == -EEXIST) {
		L->work_fd = pfs_st_openat(s, o->wfd, "work",
					   O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
		ret = L->work_fd < 0 ? L->work_fd : pfs_rmtree_contents(s, L->work_fd, NULL, 0);
	}
	if (ret < 0)
		snprintf(o->err, o->errlen, "cannot use work directory %s: %s", o->spec->work,
			 strerror(-ret));
	return ret;
}

/* Filesystem tags for inode numbers: the upper's is 0, each other
 * filesystem the next free one, in the order the lowers first show it. */
static void tag_filesystems(struct pfs_layers *L)
{
	L->onedev = true;
	for (size_t i = 1; i < L->n; i++) {
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
}

int pfs_layers_open(struct pfs_fs *fs, const struct pfs_layer_spec *spec, char *err,
		    size_t errlen)
{
	struct opening o = {.fs = fs, .spec = spec, .n = spec->nlowers + 1, .wfd = -1,
			    .err = err, .errlen = errlen};
	int ret;

	if (spec->nlowers == 0 || o.n > PFS_LAYERS_MAX) {
		snprintf(err, errlen, "a layered mount needs 1 to 199 lower directories");
		return -EINVAL;
	}
	if (spec->ndata >= spec->nlowers) {
		snprintf(err, errlen, "data-only lower layers need a regular lower above them");
		return -EINVAL;
	}
	ret = alloc_layers(&o);
	if (ret == 0) {
		o.L->ndata = spec->ndata;
		/* No upper: a read-only merge of the lowers (the kernel's
		 * lowerdir=A:B alone); nothing is ever written, so there is
		 * no work directory and nothing to probe. */
		o.L->no_upper = !spec->upper;
		ret = open_roots(&o);
	}
	if (ret == 0 && o.L->no_upper) {
		snprintf(o.L->xprefix, sizeof(o.L->xprefix), "%s",
			 spec->userxattr ? "user.overlay." : "trusted.overlay.");
		goto opened;
	}
	if (ret == 0)
		ret = open_work(&o);
	if (ret == 0)
		ret = clean_work(&o);
	if (ret == 0) {
		probe_xattrs(fs->store, o.L, o.L->work_fd, spec->userxattr);
		ret = probe_whiteout(fs->store, o.L, o.L->work_fd, spec->whiteout, err, errlen);
	}
	if (ret == 0)
		ret = check_mapped(fs, o.L, spec, err, errlen);
opened:
	if (ret == 0)
		tag_filesystems(o.L);
	if (o.wfd >= 0)
		close(o.wfd);
	if (o.real) {
		for (size_t i = 0; i <= o.n; i++)
			free(o.real[i]);
		free(o.real);
	}
	if (o.L) {
		/* Made only where they can be kept (and no mapping table
		 * moves names: its paths are not the lowers'). */
		o.L->redir_follow = spec->redirect != PFS_REDIR_OFF && !spec->map;
		o.L->redir_make = spec->redirect == PFS_REDIR_ON && !spec->map && o.L->xattrs;
		o.L->metacopy = spec->metacopy && o.L->redir_make;
		o.L->lower_pt = spec->lower_pt;
		fs->layers = o.L;
	}
	if (ret < 0)
		pfs_layers_close(fs);
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
