/* commit_scan: the first pass over the upper — totals for the progress
 * line, and every "cannot apply this" found before anything changes. */
#include "commit/commit_int.h"
#include "layers/ovlfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Lookups that fail like this mean "nothing there to use". */
static bool unreachable(int err)
{
	return err == -ENOENT || err == -ENOTDIR || err == -ELOOP || err == -EXDEV;
}

/* The scan's own: each level's lower directory as a path from the lower
 * root (NULL: none), which an in-place commit's moves are made of. */
struct scan {
	char **lp;
	size_t cap;
};

/* Room for level n's path (the new slots empty). */
static int lp_room(struct scan *sc, size_t n)
{
	size_t old = sc->cap;

	if (pfs_grow(&sc->lp, &sc->cap, n, sizeof(*sc->lp)) < 0)
		return -ENOMEM;
	memset(sc->lp + old, 0, (sc->cap - old) * sizeof(*sc->lp));
	return 0;
}

static int renamed_dir(struct pfs_cwalk *w, int lfd_parent, const char *plp, const char *redir,
		       int *lfd, char **lp)
{
	struct pfs_cctx *c = w->c;
	const char *leaf;
	ssize_t i;
	int dfd, ret;

	/* The lowers below would still be looked up at the new place, not at
	 * the one the directory came from. */
	if (c->o->nbelow)
		return pfs_crefuse(c, -EXDEV,
				   "%s/%s was renamed from %s by overlayfs (redirect); with lowers "
				   "below %s a commit into it cannot move their directories",
				   c->upper, pfs_pathbuf_str(&c->path), redir, c->lower);
	if (c->redir.resumed) {
		/* Where the interrupted commit left it. */
		i = pfs_credir_find(c);
		if (i < 0)
			return pfs_crefuse(c, -EBADMSG, "%s/%s was renamed by overlayfs (redirect), "
					   "but the interrupted commit's journal has no move for it",
					   c->upper, pfs_pathbuf_str(&c->path));
		*lp = strdup(c->redir.v[i].from);
		if (!*lp)
			return pfs_cfail(c, -ENOMEM, "out of memory");
		return pfs_credir_open(c, (size_t)i, lfd);
	}
	ret = pfs_commit_redirect(c, lfd_parent, redir, &dfd, &leaf);
	if (ret == 0) {
		ret = pfs_open_subdir(c->st, dfd, leaf, lfd);
		close(dfd);
		if (unreachable(ret))
			ret = -ENOENT;
	}
	if (ret < 0)
		return pfs_cfail(c, ret,
				 "%s/%s was renamed from %s by overlayfs (redirect), but the lower "
				 "%s has no directory there (in a deeper lower layer?)",
				 c->upper, pfs_pathbuf_str(&c->path), redir, c->lower);
	if (redir[0] == '/')
		*lp = strdup(redir + 1);
	else if (asprintf(lp, "%s%s%s", plp, *plp ? "/" : "", redir) < 0)
		*lp = NULL;
	if (!*lp)
		return pfs_cfail(c, -ENOMEM, "out of memory");
	return c->o->atomic ? 0 : pfs_credir_add(c, *lp, false);
}

/* A metadata-only copy-up: its data must be in the lower. plp: the path
 * of the lower directory lfd (NULL: none). In place, a renamed one's data
 * is kept for the walk (commit_redir.c). */
static int metacopy(struct pfs_cctx *c, int ufd, int lfd, const char *plp, const char *name,
		    uint64_t *bytes)
{
	char redir[PATH_MAX], *from = NULL;
	const char *leaf = name;
	bool keep = false;
	struct stat st;
	ssize_t n, i;
	int dfd = -1, ret = 0;

	n = pfs_ovl_get(c->st, pfs_ref_at(ufd, name), "redirect", redir, sizeof(redir));
	if (n < 0 && n != -ENODATA)
		return pfs_cfail_at(c, (int)n, "cannot read", c->upper, NULL);
	if (n >= 0 && c->redir.resumed) {
		/* Kept by the commit cut short, or written by it already. */
		i = pfs_credir_find(c);
		if (i < 0)
			return pfs_crefuse(c, -EBADMSG, "%s/%s is a renamed metadata-only copy, but "
					   "the interrupted commit's journal does not keep its data",
					   c->upper, pfs_pathbuf_str(&c->path));
		ret = pfs_credir_data(c, (size_t)i, &dfd);
		if (ret == 0) {
			ret = fstat(dfd, &st) < 0 ? -errno : 0;
			close(dfd);
			dfd = -1;
			goto checked;
		}
		if (ret != -ENOENT)
			return pfs_cfail(c, ret, "cannot open the data kept for %s/%s", c->upper,
					 pfs_pathbuf_str(&c->path));
		ret = 0;
		/* Not kept yet: where the redirect says; no more: here. */
		if (c->redir.detached)
			n = -ENODATA;
	}
	if (n >= 0) {
		ret = pfs_commit_redirect(c, lfd, redir, &dfd, &leaf);
		keep = !c->o->atomic && !c->redir.resumed;
	} else if (lfd < 0) {
		ret = -ENOENT;
	} else {
		dfd = lfd;
	}
	if (ret == 0)
		ret = pfs_st_stat(c->st, dfd, leaf, &st, AT_SYMLINK_NOFOLLOW);
	/* The lower file a metacopy itself: its data is in a data-only layer
	 * (lowerdir=A::D), which a commit into the lower cannot bring. */
	if (ret == 0 && S_ISREG(st.st_mode) &&
	    pfs_ovl_has(c->st, pfs_ref_at(dfd, leaf), "metacopy") > 0) {
		if (dfd != lfd)
			close(dfd);
		return pfs_crefuse(c, -EXDEV,
				   "%s/%s is a metadata-only copy whose data is in a data-only "
				   "lower layer (its lower file is a metacopy too): a commit cannot "
				   "bring it into %s; write to the file first (that copies its data "
				   "up)", c->upper, pfs_pathbuf_str(&c->path), c->lower);
	}
	if (dfd >= 0 && dfd != lfd)
		close(dfd);
checked:
	if (ret == 0 && !S_ISREG(st.st_mode))
		ret = -ENOENT;
	if (ret < 0)
		return pfs_cfail(c, ret,
				 "%s/%s is a metadata-only copy (overlayfs metacopy) but its data "
				 "is not in the lower %s (in a deeper lower layer?)",
				 c->upper, pfs_pathbuf_str(&c->path), c->lower);
	if (keep) {
		if (redir[0] == '/')
			from = strdup(redir + 1);
		else if (asprintf(&from, "%s%s%s", plp, *plp ? "/" : "", redir) < 0)
			from = NULL;
		ret = from ? pfs_credir_add(c, from, true) : pfs_cfail(c, -ENOMEM, "out of memory");
		free(from);
		if (ret < 0)
			return ret;
	}
	*bytes = c->o->atomic || keep ? (uint64_t)st.st_size : 0;
	return 0;
}

static int enter_dir(struct pfs_cwalk *w, const struct pfs_ovl_ent *e)
{
	struct pfs_cctx *c = w->c;
	int ufd = pfs_cwalk_fd(w, PFS_CW_UPPER), lfd_parent = pfs_cwalk_fd(w, PFS_CW_LOWER);
	struct scan *sc = w->arg;
	const char *plp = sc->lp[w->n - 1];
	int cfd = -1, lfd = -1, ret;
	struct pfs_ovl_dir d = {0};
	char redir[PATH_MAX], *lp = NULL;
	bool replace, child = true;
	ssize_t n;

	ret = pfs_open_subdir(c->st, ufd, e->name, &cfd);
	if (ret < 0)
		return pfs_cfail_at(c, ret, ret == -EXDEV ? "not crossing into another mount at"
							  : "cannot open",
				    c->upper, NULL);
	ret = pfs_ovl_read_dir(c->st, cfd, &d);
	if (ret < 0) {
		pfs_cfail_at(c, ret, "cannot read", c->upper, NULL);
		goto fail;
	}
	/* Only its own opaqueness hides a directory's lower: overlayfs follows
	 * an absolute redirect even below an opaque parent. */
	replace = (e->flags & PFS_OVL_FRESH) || d.opaque;
	if (!replace) {
		n = pfs_ovl_get(c->st, pfs_ref_fd(cfd), "redirect", redir, sizeof(redir));
		if (n >= 0 && (redir[0] == '/' || lfd_parent >= 0)) {
			ret = renamed_dir(w, lfd_parent, plp, redir, &lfd, &lp);
			if (ret < 0)
				goto fail;
			child = redir[0] != '/';
		} else if (n >= 0) {
			/* Relative, and the parent has no lower: overlayfs finds
			 * nothing either; a plain upper directory. */
		} else if (n != -ENODATA) {
			ret = pfs_cfail_at(c, (int)n, "cannot read", c->upper, NULL);
			goto fail;
		} else if (lfd_parent >= 0) {
			ret = pfs_open_subdir(c->st, lfd_parent, e->name, &lfd);
			if (ret == -EXDEV) {
				pfs_cfail_at(c, ret, "not crossing into another mount at", c->lower,
					     NULL);
				goto fail;
			}
			if (ret < 0 && !unreachable(ret)) {
				pfs_cfail_at(c, ret, "cannot open", c->lower, NULL);
				goto fail;
			}
			if (ret < 0)
				lfd = -1; /* no lower directory: nothing to merge */
			else if (asprintf(&lp, "%s%s%s", plp, *plp ? "/" : "", e->name) < 0)
				lp = NULL;
			if (lfd >= 0 && !lp) {
				ret = pfs_cfail(c, -ENOMEM, "out of memory");
				goto fail;
			}
		}
	}
	if (lp_room(sc, w->n) < 0) {
		ret = pfs_cfail(c, -ENOMEM, "out of memory");
		goto fail;
	}
	ret = pfs_cwalk_push(w, (const int[]){cfd, lfd}, (const bool[]){true, child},
			     &(struct pfs_cwlevel){.up = d});
	cfd = lfd = -1;
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot walk %s/%s", c->upper, pfs_pathbuf_str(&c->path));
		goto fail;
	}
	sc->lp[w->n - 1] = lp;
	return 0;
fail:
	free(lp);
	if (cfd >= 0)
		close(cfd);
	if (lfd >= 0)
		close(lfd);
	pfs_ovl_dir_free(&d);
	return ret;
}

static int scan_entry(struct pfs_cwalk *w, const struct pfs_ovl_ent *e, const struct pfs_name *le)
{
	struct pfs_cctx *c = w->c;
	int ufd = pfs_cwalk_fd(w, PFS_CW_UPPER), ret;
	struct stat st;
	uint64_t bytes;

	if (e->flags & PFS_OVL_WHITEOUT) {
		c->prog.files_total++;
		return 0;
	}
	ret = pfs_st_stat(c->st, ufd, e->name, &st, AT_SYMLINK_NOFOLLOW);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot stat", c->upper, NULL);
	if (S_ISDIR(st.st_mode))
		return enter_dir(w, e);
	c->prog.files_total++;
	bytes = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	if (S_ISREG(st.st_mode)) {
		ret = pfs_ovl_has(c->st, pfs_ref_at(ufd, e->name), "metacopy");
		if (ret > 0)
			ret = metacopy(c, ufd, pfs_cwalk_fd(w, PFS_CW_LOWER),
				       ((struct scan *)w->arg)->lp[w->n - 1], e->name, &bytes);
		else if (ret < 0)
			pfs_cfail_at(c, ret, "cannot read", c->upper, NULL);
		if (ret < 0)
			return ret;
	}
	c->prog.bytes_total += bytes;
	return 0;
}

static int scan_leave(struct pfs_cwalk *w)
{
	struct scan *sc = w->arg;

	free(sc->lp[w->n - 1]);
	sc->lp[w->n - 1] = NULL;
	return 0;
}

int pfs_commit_scan(struct pfs_cctx *c)
{
	static const struct pfs_cwalk_ops ops = {.entry = scan_entry, .leave = scan_leave};
	struct pfs_cwlevel root = {0};
	struct scan sc = {0};
	struct pfs_cwalk w;
	int ufd, lfd, ret;

	ret = pfs_cwalk_init(&w, c, 2, c->upper, &sc);
	if (ret < 0)
		return ret;
	if (lp_room(&sc, 0) < 0 || !(sc.lp[0] = strdup(""))) {
		ret = pfs_cfail(c, -ENOMEM, "out of memory");
		goto out;
	}
	ufd = pfs_st_openat(c->st, c->uroot, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	lfd = pfs_st_openat(c->st, c->lroot, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	ret = ufd < 0 ? ufd : lfd < 0 ? lfd : 0;
	if (ret == 0)
		ret = pfs_ovl_read_dir(c->st, c->uroot, &root.up);
	/* overlayfs always merges the root, whatever it is marked. */
	if (ret == 0) {
		ret = pfs_cwalk_push(&w, (const int[]){ufd, lfd}, (const bool[]){false, false},
				     &root);
		ufd = lfd = -1;
	}
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot read %s", c->upper);
		if (ufd >= 0)
			close(ufd);
		if (lfd >= 0)
			close(lfd);
		pfs_ovl_dir_free(&root.up);
		goto out;
	}
	ret = pfs_cwalk_run(&w, &ops);
	if (ret == 0)
		ret = pfs_credir_check(c);
out:
	for (size_t i = 0; i < sc.cap; i++)
		free(sc.lp[i]);
	free(sc.lp);
	pfs_cwalk_free(&w);
	return ret;
}
