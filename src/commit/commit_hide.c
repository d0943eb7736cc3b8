/* commit_hide: what the top lower must keep hidden after a commit, when
 * other lowers lie below it.
 *
 * Before the commit the view is U over L1 over L2..Ln; after it, L1' over
 * L2..Ln. L1' gets what the view showed, but L2..Ln still answer for every
 * name L1' does not settle, so the commit must write down, in the kernel's
 * format, whatever the upper hid from them (overlayfs.rst: a whiteout or an
 * opaque directory in a lower layer hides the layers below it):
 *
 * - a name the view did not show (a whiteout in the upper) gets a whiteout
 *   in L1' when a lower below would show something there;
 * - a directory whose view merged nothing from below (the upper's was
 *   opaque, or a `.wh.NAME` replaced it, or L1's own entry stopped the
 *   merge: a whiteout, a non-directory, an opaque directory) is made opaque
 *   in L1' when a lower below has a directory there that it would merge.
 *
 * Only while the view of the parent directory still reached the lowers
 * below ("reach"): under a directory that stopped the merge, L1' stops it
 * too, so nothing below can show. Where nothing below would show, nothing
 * is written and L1' stays free of overlay bookkeeping.
 *
 * What the lowers below show at a path is found as overlayfs and prismfs
 * look it up (layer.c): from their roots down, each component through the
 * lowers whose directory the merge still reaches, stopping at a whiteout
 * (a 0/0 device or `.wh.NAME`), a non-directory or an opaque directory. */
#include "commit/commit_int.h"
#include "layers/ovlfmt.h"
#include "store/rmtree.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct pfs_chide {
	struct pfs_store *st; /* the commit's */
	int *root;     /* the lowers below the top one, highest first */
	size_t n;
	/* The lowers' directories merged at the directory asked about last
	 * (dir, relative to the roots; "" is the root): cfd[0..cn), owned. */
	char *dir;
	int *cfd;
	size_t cn;
	bool wh_file;  /* whiteouts as `.wh.NAME` (mknod not permitted/wanted) */
};

static bool unreachable(int err)
{
	return err == -ENOENT || err == -ENOTDIR || err == -ELOOP;
}

/* Does the directory fd hide the layers below it? Either namespace, or
 * the marker: prismfs reads all three in a lower (layer.c). */
static bool dir_opaque(struct pfs_store *s, int fd)
{
	char v[4];
	struct stat st;

	if ((pfs_st_getxattr(s, pfs_ref_fd(fd), "trusted.overlay.opaque", v, sizeof(v)) == 1 &&
	     v[0] == 'y') ||
	    (pfs_st_getxattr(s, pfs_ref_fd(fd), "user.overlay.opaque", v, sizeof(v)) == 1 &&
	     v[0] == 'y'))
		return true;
	return pfs_st_stat(s, fd, PFS_OVL_OPAQUE_MARKER, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

enum shown { SHOWN_NOTHING, SHOWN_FILE, SHOWN_DIR };

/* Look name up through the directories cfd[0..n) of one merge, highest
 * first. *what: what the merge shows; with next (may be NULL) the
 * directories merged at name when it is a directory (fds owned by the
 * caller, *nnext of them). */
static int lookup(struct pfs_store *s, const int *cfd, size_t n, const char *name,
		  enum shown *what, int *next, size_t *nnext)
{
	*what = SHOWN_NOTHING;
	if (nnext)
		*nnext = 0;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		int fd, ret;

		ret = pfs_st_stat(s, cfd[i], name, &st, AT_SYMLINK_NOFOLLOW);
		if (ret < 0) {
			if (!unreachable(ret))
				return ret;
			if (pfs_ovl_has_wh_file(s, cfd[i], name))
				return 0;
			continue;
		}
		if (pfs_ovl_is_whiteout(&st))
			return 0;
		if (!S_ISDIR(st.st_mode)) {
			if (*what == SHOWN_NOTHING)
				*what = SHOWN_FILE;
			return 0; /* a non-directory under a directory ends the merge too */
		}
		*what = SHOWN_DIR;
		if (!next)
			return 0;
		ret = pfs_open_subdir(s, cfd[i], name, &fd);
		if (ret < 0)
			return ret;
		next[(*nnext)++] = fd;
		if (dir_opaque(s, fd) || pfs_ovl_has_wh_file(s, cfd[i], name))
			return 0;
	}
	return 0;
}

static void drop_chain(struct pfs_chide *h)
{
	for (size_t i = 0; i < h->cn; i++)
		close(h->cfd[i]);
	h->cn = 0;
	free(h->dir);
	h->dir = NULL;
}

/* Make h->cfd the merge of the lowers below at the directory dir (dlen
 * bytes of a relative path). */
static int chain_at(struct pfs_chide *h, const char *dir, size_t dlen)
{
	int *tmp = NULL;
	char *copy, *p, *slash;
	int ret = 0;

	if (h->dir && strlen(h->dir) == dlen && memcmp(h->dir, dir, dlen) == 0)
		return 0;
	drop_chain(h);
	copy = strndup(dir, dlen);
	tmp = calloc(h->n ? h->n : 1, sizeof(*tmp));
	if (!copy || !tmp) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < h->n; i++) {
		int fd = pfs_st_openat(h->st, h->root[i], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);

		if (fd < 0) {
			ret = fd;
			goto out;
		}
		h->cfd[h->cn++] = fd;
	}
	for (p = copy; *p && h->cn; p = slash ? slash + 1 : p + strlen(p)) {
		enum shown what;
		size_t nt;

		slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		ret = lookup(h->st, h->cfd, h->cn, p, &what, tmp, &nt);
		for (size_t i = 0; i < h->cn; i++)
			close(h->cfd[i]);
		h->cn = 0;
		if (ret < 0) {
			for (size_t i = 0; i < nt; i++)
				close(tmp[i]);
			goto out;
		}
		memcpy(h->cfd, tmp, nt * sizeof(*tmp));
		h->cn = nt;
	}
	h->dir = copy;
	copy = NULL;
out:
	if (ret < 0)
		drop_chain(h);
	free(copy);
	free(tmp);
	return ret;
}

int pfs_chide_open(struct pfs_cctx *c)
{
	const struct pfs_commit_opts *o = c->o;
	struct pfs_chide *h;

	if (!o->nbelow)
		return 0;
	h = calloc(1, sizeof(*h));
	if (!h)
		return pfs_cfail(c, -ENOMEM, "out of memory");
	c->hide = h;
	h->st = c->st;
	h->root = calloc(o->nbelow, sizeof(*h->root));
	h->cfd = calloc(o->nbelow, sizeof(*h->cfd));
	if (!h->root || !h->cfd)
		return pfs_cfail(c, -ENOMEM, "out of memory");
	for (size_t i = 0; i < o->nbelow; i++) {
		struct stat st;
		int fd = pfs_st_openat(c->st, AT_FDCWD, o->below[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC,
				       0);

		if (fd < 0)
			return pfs_cfail(c, fd, "cannot open the lower %s below %s", o->below[i],
					 c->lower);
		h->root[h->n++] = fd;
		if (fstat(fd, &st) < 0)
			return pfs_cfail(c, -errno, "cannot stat %s", o->below[i]);
		/* Read while the commit changes them, they would not say what
		 * was below. */
		for (int j = 0; j < 2; j++) {
			struct stat rs;

			if (fstat(j ? c->uroot : c->lroot, &rs) == 0 && rs.st_dev == st.st_dev &&
			    rs.st_ino == st.st_ino)
				return pfs_crefuse(c, -EINVAL, "the lower %s below %s is the %s",
						   o->below[i], c->lower, j ? "upper" : "lower itself");
		}
	}
	h->wh_file = o->whiteout == PFS_WH_FILE;
	return 0;
}

int pfs_chide_probe(struct pfs_cctx *c)
{
	struct pfs_chide *h = c->hide;
	char name[NAME_MAX + 1];
	int ret;

	if (!h || h->wh_file)
		return 0;
	/* Beside the lower, in the directory this commit holds locked (its
	 * name fits: check_lower_name), so the lower is not touched. */
	snprintf(name, sizeof(name), ".%s.prismfs-wh", c->base);
	pfs_st_unlink(c->st, c->pfd, name, 0);
	ret = pfs_st_mknod(c->st, c->pfd, name, S_IFCHR | 0, makedev(0, 0));
	if (ret == 0) {
		pfs_st_unlink(c->st, c->pfd, name, 0);
		return 0;
	}
	if (c->o->whiteout == PFS_WH_CHARDEV || (ret != -EPERM && ret != -EOPNOTSUPP))
		return pfs_cfail(c, ret,
				 "the lowers below %s may need whiteouts kept in it, but "
				 "character devices cannot be made beside it%s",
				 c->lower, ret == -EPERM ? " (use --whiteout file)" : "");
	h->wh_file = true;
	return 0;
}

void pfs_chide_close(struct pfs_cctx *c)
{
	struct pfs_chide *h = c->hide;

	if (!h)
		return;
	drop_chain(h);
	for (size_t i = 0; i < h->n; i++)
		close(h->root[i]);
	free(h->root);
	free(h->cfd);
	free(h);
	c->hide = NULL;
}

bool pfs_chide_cuts(struct pfs_cctx *c, int lfd, const char *name)
{
	struct stat st;
	int fd;
	bool cut;

	if (lfd < 0)
		return false;
	if (pfs_st_stat(c->st, lfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return pfs_ovl_has_wh_file(c->st, lfd, name);
	if (!S_ISDIR(st.st_mode))
		return true; /* a whiteout device or any other non-directory */
	if (pfs_ovl_has_wh_file(c->st, lfd, name))
		return true;
	if (pfs_open_subdir(c->st, lfd, name, &fd) < 0)
		return true; /* nothing to merge through */
	cut = dir_opaque(c->st, fd);
	close(fd);
	return cut;
}

int pfs_chide_decide(struct pfs_cctx *c, bool reach, bool gone, bool cut, enum pfs_chide_need *need)
{
	struct pfs_chide *h = c->hide;
	const char *path = pfs_pathbuf_str(&c->path), *slash;
	enum shown what;
	int ret;

	*need = PFS_CHIDE_NOTHING;
	if (!h || !reach || (!gone && !cut))
		return 0;
	slash = strrchr(path, '/');
	ret = chain_at(h, path, slash ? (size_t)(slash - path) : 0);
	if (ret == 0)
		ret = lookup(h->st, h->cfd, h->cn, slash ? slash + 1 : path, &what, NULL, NULL);
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot look %s up in the lowers below %s", path,
				 c->lower);
	if (gone && what != SHOWN_NOTHING)
		*need = PFS_CHIDE_WHITEOUT;
	else if (!gone && what == SHOWN_DIR)
		*need = PFS_CHIDE_OPAQUE;
	return 0;
}

int pfs_chide_whiteout(struct pfs_cctx *c, int dirfd, const char *name, const char *root)
{
	struct pfs_chide *h = c->hide;
	char wh[NAME_MAX + 8];
	struct stat st;
	int fd, ret;

	if (!h->wh_file) {
		ret = pfs_st_mknod(c->st, dirfd, name, S_IFCHR | 0, makedev(0, 0));
		if (ret == 0)
			return 0;
		if (ret == -EEXIST &&
		    pfs_st_stat(c->st, dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    pfs_ovl_is_whiteout(&st))
			return 0; /* kept by an earlier run */
		return pfs_cfail_at(c, ret, "cannot make a whiteout at", root, NULL);
	}
	if (strlen(name) > NAME_MAX - 4)
		return pfs_cfail_at(c, -ENAMETOOLONG, "cannot make a .wh. whiteout for", root,
				    NULL);
	snprintf(wh, sizeof(wh), PFS_OVL_WH_PREFIX "%s", name);
	fd = pfs_st_openat(c->st, dirfd, wh, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return pfs_cfail_at(c, fd, "cannot make a .wh. whiteout for", root, NULL);
	close(fd);
	return 0;
}

int pfs_chide_opaque(struct pfs_cctx *c, int dirfd, const char *root)
{
	static const char *const keys[] = {"trusted.overlay.opaque", "user.overlay.opaque"};
	int fd, ret;

	/* The kernel's namespace first, as a mount probes its upper; user.
	 * where trusted. is not allowed (overlayfs's userxattr reads it). */
	for (size_t i = 0; i < 2; i++) {
		ret = pfs_st_setxattr(c->st, pfs_ref_fd(dirfd), keys[i], "y", 1, 0);
		if (ret == 0)
			return 0;
		if (ret != -EPERM && ret != -ENOTSUP && ret != -EOPNOTSUPP)
			return pfs_cfail_at(c, ret, "cannot mark opaque", root, NULL);
	}
	fd = pfs_st_openat(c->st, dirfd, PFS_OVL_OPAQUE_MARKER,
			   O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return pfs_cfail_at(c, fd, "cannot mark opaque", root, NULL);
	close(fd);
	return 0;
}
