/* commit_atomic: build the new tree — the upper over the old lower — in an
 * empty directory beside the lower, leaving the old tree untouched.
 *
 * What the upper changed is written new (cloned from the upper where the
 * filesystem can, else copied). What it did not change is shared with the
 * old tree, never copied: a reflink (FICLONE) where the filesystem has them,
 * else a hard link. With hard links the new tree's unchanged files are the
 * very inodes of the old tree; that is safe because nothing here writes to
 * them (their metadata is already right) and the old names simply go away
 * after the swap. Directories are always new, so their metadata is copied. */
#include "commit/commit_int.h"
#include "store/fcopy.h"
#include "layers/ovlfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Levels: up and lo (the lower names that show through), reach (only
 * upper directories ask), from_upper and st: whose metadata the new
 * directory gets. */

static int nroot(const struct pfs_cwalk *w)
{
	return *(const int *)w->arg;
}

static bool unreachable(int err)
{
	return err == -ENOENT || err == -ENOTDIR || err == -ELOOP;
}

static int push_level(struct pfs_cwalk *w, int ufd, int lfd, bool lchild, int nfd,
		      const struct pfs_cwlevel *l)
{
	struct pfs_cctx *c = w->c;
	int ret = pfs_cwalk_push(w, (const int[]){ufd, lfd, nfd}, (const bool[]){true, lchild, true},
				 l);

	if (ret < 0)
		return pfs_cfail(c, ret, "cannot walk %s/%s", c->newroot,
				 pfs_pathbuf_str(&c->path));
	return 0;
}

static int new_subdir(struct pfs_cwalk *w, const char *name, int *nfd)
{
	struct pfs_cctx *c = w->c;
	int ret;

	/* 0700 until its real metadata comes, after its children. */
	ret = pfs_st_mkdir(c->st, pfs_cwalk_fd(w, PFS_CW_NEW), name, 0700);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot create", c->newroot, NULL);
	ret = pfs_open_subdir(c->st, pfs_cwalk_fd(w, PFS_CW_NEW), name, nfd);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot open", c->newroot, NULL);
	return 0;
}

static int enter_upper_dir(struct pfs_cwalk *w, const struct pfs_ovl_ent *e,
			   const struct stat *ust)
{
	struct pfs_cctx *c = w->c;
	struct pfs_cwlevel l = {.from_upper = true, .st = *ust};
	int ufd = -1, lfd = -1, nfd = -1, lparent = pfs_cwalk_fd(w, PFS_CW_LOWER), dfd, ret;
	bool lchild = true, reach = pfs_cwalk_top(w)->reach, cut;
	enum pfs_chide_need need;
	char redir[PATH_MAX];
	const char *leaf;
	ssize_t n;

	ret = pfs_open_subdir(c->st, pfs_cwalk_fd(w, PFS_CW_UPPER), e->name, &ufd);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot open", c->upper, NULL);
	ret = pfs_ovl_read_dir(c->st, ufd, &l.up);
	if (ret < 0) {
		pfs_cfail_at(c, ret, "cannot read", c->upper, NULL);
		goto fail;
	}
	/* Only its own opaqueness hides a directory's lower: overlayfs follows
	 * an absolute redirect even below an opaque parent (whose own lower
	 * is already gone: lparent < 0 there). */
	if (!(e->flags & PFS_OVL_FRESH) && !l.up.opaque) {
		n = pfs_ovl_get(c->st, pfs_ref_fd(ufd), "redirect", redir, sizeof(redir));
		if (n >= 0 && redir[0] != '/' && lparent < 0) {
			/* Relative to a parent without lower: nothing, as in overlayfs. */
		} else if (n >= 0) {
			/* Renamed from elsewhere in the lower (the scan checked it). */
			ret = pfs_commit_redirect(c, lparent, redir, &dfd, &leaf);
			if (ret == 0) {
				ret = pfs_open_subdir(c->st, dfd, leaf, &lfd);
				close(dfd);
			}
			if (ret < 0) {
				pfs_cfail(c, ret, "cannot open %s (renamed from %s)", c->lower,
					  redir);
				goto fail;
			}
			lchild = redir[0] != '/';
		} else if (n != -ENODATA) {
			ret = pfs_cfail_at(c, (int)n, "cannot read", c->upper, NULL);
			goto fail;
		} else if (lparent >= 0) {
			ret = pfs_open_subdir(c->st, lparent, e->name, &lfd);
			if (ret < 0 && !unreachable(ret)) {
				pfs_cfail_at(c, ret,
					     ret == -EXDEV ? "not crossing into another mount at"
							   : "cannot open",
					     c->lower, NULL);
				goto fail;
			}
		}
	}
	if (lfd >= 0) {
		ret = pfs_names_read(lfd, &l.lo);
		if (ret < 0) {
			pfs_cfail_at(c, ret, "cannot read", c->lower, NULL);
			goto fail;
		}
	}
	/* The scan refused redirects with lowers below: lparent is the top
	 * lower's part of the parent, where its entry may stop the merge. */
	cut = (e->flags & PFS_OVL_FRESH) || l.up.opaque ||
	      (c->hide && reach && pfs_chide_cuts(c, lparent, e->name));
	ret = pfs_chide_decide(c, reach, false, cut, &need);
	if (ret < 0)
		goto fail;
	l.reach = reach && !cut;
	ret = new_subdir(w, e->name, &nfd);
	if (ret < 0)
		goto fail;
	if (need == PFS_CHIDE_OPAQUE) {
		ret = pfs_chide_opaque(c, nfd, c->newroot);
		if (ret < 0) {
			close(nfd);
			goto fail;
		}
	}
	ret = push_level(w, ufd, lfd, lchild, nfd, &l);
	if (ret < 0) {
		ufd = lfd = -1;
		goto fail;
	}
	return 0;
fail:
	if (ufd >= 0)
		close(ufd);
	if (lfd >= 0)
		close(lfd);
	pfs_ovl_dir_free(&l.up);
	pfs_names_free(&l.lo);
	return ret;
}

static int enter_lower_dir(struct pfs_cwalk *w, const char *name, const struct stat *lst)
{
	struct pfs_cctx *c = w->c;
	struct pfs_cwlevel l = {.st = *lst};
	int lfd = -1, nfd = -1, ret;

	ret = pfs_open_subdir(c->st, pfs_cwalk_fd(w, PFS_CW_LOWER), name, &lfd);
	if (ret < 0)
		return pfs_cfail_at(c, ret, ret == -EXDEV ? "not crossing into another mount at"
							  : "cannot open",
				    c->lower, NULL);
	ret = pfs_names_read(lfd, &l.lo);
	if (ret < 0) {
		pfs_cfail_at(c, ret, "cannot read", c->lower, NULL);
		goto fail;
	}
	ret = new_subdir(w, name, &nfd);
	if (ret < 0)
		goto fail;
	return push_level(w, PFS_DSTACK_ABSENT, lfd, true, nfd, &l);
fail:
	close(lfd);
	pfs_names_free(&l.lo);
	return ret;
}

static int leave_dir(struct pfs_cwalk *w)
{
	struct pfs_cctx *c = w->c;
	struct pfs_cwlevel *l = pfs_cwalk_top(w);
	int nfd = pfs_cwalk_fd(w, PFS_CW_NEW);
	const char *op;
	int ret;

	if (l->from_upper)
		ret = pfs_meta_copy(c->st, pfs_ref_fd(nfd), pfs_ref_fd(pfs_cwalk_fd(w, PFS_CW_UPPER)), &l->st,
				    PFS_META_NO_PRIVATE, &op);
	else
		ret = pfs_meta_copy(c->st, pfs_ref_fd(nfd), pfs_ref_fd(pfs_cwalk_fd(w, PFS_CW_LOWER)), &l->st, 0,
				    &op);
	if (ret < 0)
		return pfs_cfail_at(c, ret, op, c->newroot, NULL);
	ret = pfs_st_sync(c->st, nfd, false);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot sync", c->newroot, NULL);
	return 0;
}

/* A metadata-only copy: its bytes are in the lower (maybe renamed). */
static int open_lower_data(struct pfs_cwalk *w, const char *name)
{
	struct pfs_cctx *c = w->c;
	int ufd = pfs_cwalk_fd(w, PFS_CW_UPPER), lfd = pfs_cwalk_fd(w, PFS_CW_LOWER), dfd = -1, fd;
	char redir[PATH_MAX];
	const char *leaf = name;
	ssize_t n;
	int ret = 0;

	n = pfs_ovl_get(c->st, pfs_ref_at(ufd, name), "redirect", redir, sizeof(redir));
	if (n >= 0)
		ret = pfs_commit_redirect(c, lfd, redir, &dfd, &leaf);
	else if (n != -ENODATA)
		ret = (int)n;
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot find the data of", c->upper, NULL);
	fd = pfs_st_openat(c->st, dfd >= 0 ? dfd : lfd, leaf,
			   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
	ret = fd < 0 ? fd : 0;
	if (dfd >= 0)
		close(dfd);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot open the data of", c->upper, NULL);
	return fd;
}

static int upper_file(struct pfs_cwalk *w, const struct pfs_ovl_ent *e, const struct stat *ust)
{
	struct pfs_cctx *c = w->c;
	int ufd = pfs_cwalk_fd(w, PFS_CW_UPPER), nfd = pfs_cwalk_fd(w, PFS_CW_NEW), dfd = -1, ret;
	const struct pfs_inomap_ent *g = NULL;
	bool metacopy = false, cloned;
	struct pfs_csrc src;
	ino_t tino;

	if (ust->st_nlink > 1)
		g = pfs_inomap_get(&c->ulinks, ust->st_dev, ust->st_ino);
	if (g)
		return pfs_clink(c, nroot(w), g->path, nfd, e->name, false, c->newroot);
	if (S_ISREG(ust->st_mode)) {
		ret = pfs_ovl_has(c->st, pfs_ref_at(ufd, e->name), "metacopy");
		if (ret < 0)
			return pfs_cfail_at(c, ret, "cannot read", c->upper, NULL);
		metacopy = ret > 0;
		if (metacopy) {
			dfd = open_lower_data(w, e->name);
		} else {
			dfd = pfs_st_openat(c->st, ufd, e->name,
					    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
			if (dfd < 0)
				dfd = pfs_cfail_at(c, dfd, "cannot open", c->upper, NULL);
		}
		if (dfd < 0)
			return dfd;
	}
	src = (struct pfs_csrc){
		.st = ust,
		.meta = pfs_ref_at(ufd, e->name),
		.meta_flags = PFS_META_NO_PRIVATE,
		.datafd = dfd,
		.clone = true,
		.tick = true,
		.upath = e->name,
		.udirfd = ufd,
	};
	ret = pfs_cnew(c, nfd, e->name, &src, false, &tino, &cloned, c->newroot);
	if (dfd >= 0)
		close(dfd);
	if (ret < 0)
		return ret;
	if (ust->st_nlink > 1 && pfs_inomap_put(&c->ulinks, ust->st_dev, ust->st_ino,
						pfs_pathbuf_str(&c->path), tino) < 0)
		return pfs_cfail(c, -ENOMEM, "out of memory");
	return 0;
}

/* An entry the upper did not touch: shared with the old tree. */
static int shared_file(struct pfs_cwalk *w, const char *name, const struct stat *lst)
{
	struct pfs_cctx *c = w->c;
	int lfd = pfs_cwalk_fd(w, PFS_CW_LOWER), nfd = pfs_cwalk_fd(w, PFS_CW_NEW), dfd, ret;
	const struct pfs_inomap_ent *g;
	struct pfs_csrc src;
	bool cloned;
	ino_t tino;

	if (S_ISREG(lst->st_mode) && !c->no_reflink) {
		/* Clones are new inodes: keep the lower's hard links links. */
		g = lst->st_nlink > 1 ? pfs_inomap_get(&c->llinks, lst->st_dev, lst->st_ino) : NULL;
		if (g)
			return pfs_clink(c, nroot(w), g->path, nfd, name, false, c->newroot);
		dfd = pfs_st_openat(c->st, lfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
				    0);
		if (dfd < 0)
			return pfs_cfail_at(c, dfd, "cannot open", c->lower, NULL);
		src = (struct pfs_csrc){
			.st = lst,
			.meta = pfs_ref_at(lfd, name),
			.datafd = dfd,
			.clone = true,
			.must_clone = true,
		};
		ret = pfs_cnew(c, nfd, name, &src, false, &tino, &cloned, c->newroot);
		close(dfd);
		if (ret == 0) {
			if (lst->st_nlink > 1 &&
			    pfs_inomap_put(&c->llinks, lst->st_dev, lst->st_ino,
					   pfs_pathbuf_str(&c->path), tino) < 0)
				return pfs_cfail(c, -ENOMEM, "out of memory");
			return 0;
		}
		if (!pfs_fcopy_clone_unsupported(ret))
			return ret;
		/* This filesystem cannot clone: hard links from now on. */
		c->no_reflink = true;
	}
	ret = pfs_st_link(c->st, lfd, name, nfd, name, 0);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot link", c->newroot, NULL);
	return 0;
}

static int step(struct pfs_cwalk *w, const struct pfs_ovl_ent *ue, const struct pfs_name *le)
{
	struct pfs_cctx *c = w->c;
	const char *name = ue ? ue->name : le->name;
	struct stat st;
	int ret;

	if (ue) {
		if (ue->flags & PFS_OVL_WHITEOUT) {
			enum pfs_chide_need need;

			ret = pfs_chide_decide(c, pfs_cwalk_top(w)->reach, true, false, &need);
			if (ret == 0 && need == PFS_CHIDE_WHITEOUT)
				ret = pfs_chide_whiteout(c, pfs_cwalk_fd(w, PFS_CW_NEW), name,
							 c->newroot);
			if (ret < 0)
				return ret;
			pfs_progress_file(&c->prog, 0);
			return 0;
		}
		ret = pfs_st_stat(c->st, pfs_cwalk_fd(w, PFS_CW_UPPER), name, &st, AT_SYMLINK_NOFOLLOW);
		if (ret < 0)
			return pfs_cfail_at(c, ret, "cannot stat", c->upper, NULL);
		if (S_ISDIR(st.st_mode))
			return enter_upper_dir(w, ue, &st);
		ret = upper_file(w, ue, &st);
		if (ret < 0)
			return ret;
		pfs_progress_file(&c->prog, S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0);
		pfs_commit_crashpoint("atomic-build");
		return 0;
	}
	ret = pfs_st_stat(c->st, pfs_cwalk_fd(w, PFS_CW_LOWER), name, &st, AT_SYMLINK_NOFOLLOW);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot stat", c->lower, NULL);
	if (S_ISDIR(st.st_mode))
		return enter_lower_dir(w, name, &st);
	ret = shared_file(w, name, &st);
	if (ret == 0)
		pfs_progress_shared(&c->prog);
	return ret;
}

int pfs_commit_build(struct pfs_cctx *c, int newfd)
{
	static const struct pfs_cwalk_ops ops = {.entry = step, .leave = leave_dir};
	struct pfs_cwlevel root = {.from_upper = true, .reach = true};
	int ufd = -1, lfd = -1, nfd = -1, ret;
	struct pfs_cwalk w;

	ret = pfs_cwalk_init(&w, c, 3, c->newroot, &newfd);
	if (ret < 0)
		return ret;
	ufd = pfs_st_openat(c->st, c->uroot, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	lfd = pfs_st_openat(c->st, c->lroot, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	nfd = pfs_st_openat(c->st, newfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	ret = ufd < 0 ? ufd : lfd < 0 ? lfd : nfd < 0 ? nfd : fstat(ufd, &root.st) < 0 ? -errno : 0;
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot open the roots");
		goto early;
	}
	ret = pfs_ovl_read_dir(c->st, ufd, &root.up);
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot read %s", c->upper);
		goto early;
	}
	ret = pfs_names_read(lfd, &root.lo);
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot read %s", c->lower);
		goto early;
	}
	/* The push owns the fds from then on, even when it fails. */
	ret = pfs_cwalk_push(&w, (const int[]){ufd, lfd, nfd}, (const bool[]){false, false, false},
			     &root);
	ufd = lfd = nfd = -1;
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot walk %s", c->upper);
		goto early;
	}
	ret = pfs_cwalk_run(&w, &ops);
out:
	pfs_cwalk_free(&w);
	return ret;
early:
	if (ufd >= 0)
		close(ufd);
	if (lfd >= 0)
		close(lfd);
	if (nfd >= 0)
		close(nfd);
	pfs_ovl_dir_free(&root.up);
	pfs_names_free(&root.lo);
	goto out;
}
