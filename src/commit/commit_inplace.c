/* commit_inplace: apply the upper to the lower directly. Each file changes
 * by one rename (old or new, never half); directories get their metadata
 * after their children; everything is made durable before the upper goes.
 * Applying a whole upper again after an interruption completes the job:
 * what is done already is found identical and kept; the moves of renamed
 * lower directories, which are not, are journaled (commit_redir.c). An
 * upper whose
 * emptying has begun is never applied again: commit_resume.c holds the
 * journal that tells the two apart, and the crash protocol. */
#include "commit/commit_int.h"
#include "store/fcopy.h"
#include "layers/ovlfmt.h"
#include "store/rmtree.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int remove_at(struct pfs_cctx *c, int dirfd, const char *name)
{
	char where[PATH_MAX];
	int ret = pfs_rmtree_at(c->st, dirfd, name, where, sizeof(where));

	if (ret == -EXDEV)
		return pfs_cfail(c, ret, "not removing %s/%s (at %s): a mount point", c->lower,
				 pfs_pathbuf_str(&c->path), where);
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot remove %s/%s (at %s)", c->lower,
				 pfs_pathbuf_str(&c->path), where);
	return 0;
}

/* An opaque directory: the lower children that the upper does not have
 * go (the ones it has are replaced one by one); keep_marker: except the
 * opaque marker, which must stay. */
static int drop_lower_children(struct pfs_cctx *c, int lfd, const struct pfs_ovl_dir *d,
			       bool keep_marker)
{
	struct pfs_names ln;
	int ret = pfs_names_read(lfd, &ln);

	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot read", c->lower, NULL);
	for (size_t i = 0; i < ln.n && ret == 0; i++) {
		const struct pfs_ovl_ent *e = pfs_ovl_find(d, ln.v[i].name);
		size_t plen;

		if (e && !(e->flags & PFS_OVL_WHITEOUT))
			continue;
		if (keep_marker && strcmp(ln.v[i].name, PFS_OVL_OPAQUE_MARKER) == 0)
			continue;
		plen = pfs_pathbuf_push(&c->path, ln.v[i].name);
		if (plen == (size_t)-1) {
			ret = pfs_cfail(c, -ENOMEM, "out of memory");
			break;
		}
		ret = remove_at(c, lfd, ln.v[i].name);
		pfs_pathbuf_cut(&c->path, plen);
	}
	pfs_names_free(&ln);
	return ret;
}

/* Make the lower side of an upper directory exist as a directory; opaque:
 * one that hides the lowers below it. A new one takes its name already
 * marked, and in one step with the non-directory it replaces (exchanged,
 * then removed): at no moment does the name let the lowers below show. */
static int lower_dir(struct pfs_cctx *c, int lfd_parent, const char *name, bool opaque, int *lfd)
{
	char tmp[64];
	struct stat st;
	bool exists;
	int ret, tfd;

	exists = pfs_st_stat(c->st, lfd_parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (exists && S_ISDIR(st.st_mode))
		goto open;
	snprintf(tmp, sizeof(tmp), ".prismfs-tmp-%ld-d%lu", (long)getpid(), ++c->tmpseq);
	/* 0700 until its real metadata is applied, after its children. */
	ret = pfs_st_mkdir(c->st, lfd_parent, tmp, 0700);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot create", c->lower, NULL);
	if (opaque) {
		ret = pfs_open_subdir(c->st, lfd_parent, tmp, &tfd);
		if (ret == 0) {
			ret = pfs_chide_opaque(c, tfd, c->lower);
			close(tfd);
		} else {
			pfs_cfail_at(c, ret, "cannot open", c->lower, NULL);
		}
		if (ret < 0) {
			pfs_st_unlink(c->st, lfd_parent, tmp, AT_REMOVEDIR);
			return ret;
		}
	}
	ret = pfs_st_rename(c->st, lfd_parent, tmp, lfd_parent, name,
			    exists ? RENAME_EXCHANGE : RENAME_NOREPLACE);
	if (ret == -EINVAL || ret == -ENOSYS) {
		/* A filesystem without these flags: out of the way, then in. */
		if (exists) {
			ret = remove_at(c, lfd_parent, name);
			if (ret < 0) {
				pfs_st_unlink(c->st, lfd_parent, tmp, AT_REMOVEDIR);
				return ret;
			}
		}
		exists = false;
		ret = pfs_st_rename(c->st, lfd_parent, tmp, lfd_parent, name, 0);
	}
	if (ret < 0) {
		pfs_cfail_at(c, ret, "cannot create", c->lower, NULL);
		pfs_st_unlink(c->st, lfd_parent, tmp, AT_REMOVEDIR);
		return ret;
	}
	if (exists && (ret = pfs_st_unlink(c->st, lfd_parent, tmp, 0)) < 0)
		return pfs_cfail_at(c, ret, "cannot remove the old", c->lower, NULL);
open:
	ret = pfs_open_subdir(c->st, lfd_parent, name, lfd);
	if (ret < 0)
		return pfs_cfail_at(c, ret, ret == -EXDEV ? "not crossing into another mount at"
							  : "cannot open",
				    c->lower, NULL);
	return 0;
}

/* Levels: up, reach, replace, and st the upper directory's lstat, applied
 * on the way out. */
static int enter_dir(struct pfs_cwalk *w, const struct pfs_ovl_ent *e, const struct stat *ust)
{
	const struct pfs_cwlevel *parent = pfs_cwalk_top(w);
	int lparent = pfs_cwalk_fd(w, PFS_CW_LOWER);
	struct pfs_cctx *c = w->c;
	struct pfs_ovl_dir d = {0};
	int ufd = -1, lfd = -1, ret;
	enum pfs_chide_need need;
	bool replace, cut, reach;

	ret = pfs_open_subdir(c->st, pfs_cwalk_fd(w, PFS_CW_UPPER), e->name, &ufd);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot open", c->upper, NULL);
	ret = pfs_ovl_read_dir(c->st, ufd, &d);
	if (ret < 0) {
		pfs_cfail_at(c, ret, "cannot read", c->upper, NULL);
		goto fail;
	}
	/* A directory renamed from a lower one is that one, already moved
	 * here (commit_redir.c), merged even below an opaque parent. */
	replace = pfs_credir_find(c) < 0 && (parent->replace || (e->flags & PFS_OVL_FRESH) ||
					     d.opaque);
	/* Read before lower_dir changes what the top lower holds there. */
	cut = (e->flags & PFS_OVL_FRESH) || d.opaque ||
	      (c->hide && parent->reach && pfs_chide_cuts(c, lparent, e->name));
	ret = pfs_chide_decide(c, parent->reach, false, cut, &need);
	if (ret < 0)
		goto fail;
	reach = parent->reach && !cut;
	ret = lower_dir(c, lparent, e->name, need == PFS_CHIDE_OPAQUE, &lfd);
	if (ret < 0)
		goto fail;
	/* An existing directory is marked before its children change. */
	if (need == PFS_CHIDE_OPAQUE) {
		ret = pfs_chide_opaque(c, lfd, c->lower);
		if (ret < 0)
			goto fail;
	}
	if (replace) {
		ret = drop_lower_children(c, lfd, &d, need == PFS_CHIDE_OPAQUE);
		if (ret < 0)
			goto fail;
		pfs_commit_crashpoint("inplace-dropped");
	}
	/* parent (in w->lv) may move with the push: reach was read before. */
	ret = pfs_cwalk_push(w, (const int[]){ufd, lfd}, (const bool[]){true, true},
			     &(struct pfs_cwlevel){.up = d, .replace = replace, .reach = reach,
						   .st = *ust});
	ufd = lfd = -1;
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot walk %s/%s", c->upper, pfs_pathbuf_str(&c->path));
		goto fail;
	}
	return 0;
fail:
	if (ufd >= 0)
		close(ufd);
	if (lfd >= 0)
		close(lfd);
	pfs_ovl_dir_free(&d);
	return ret;
}

static int leave_dir(struct pfs_cwalk *w)
{
	struct pfs_cctx *c = w->c;
	int lfd = pfs_cwalk_fd(w, PFS_CW_LOWER);
	const char *op;
	int ret;

	/* The walk is done: the stage goes before the root's metadata. */
	if (w->n == 1 && (ret = pfs_credir_end(c)) < 0)
		return ret;

	ret = pfs_meta_copy(c->st, pfs_ref_fd(lfd), pfs_ref_fd(pfs_cwalk_fd(w, PFS_CW_UPPER)),
			    &pfs_cwalk_top(w)->st, PFS_META_NO_PRIVATE, &op);
	if (ret < 0)
		return pfs_cfail_at(c, ret, op, c->lower, NULL);
	/* Its entries (renames, removals) and its metadata, durable. */
	ret = pfs_st_sync(c->st, lfd, false);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot sync", c->lower, NULL);
	pfs_commit_crashpoint("inplace-dir");
	return 0;
}

static int open_ro(struct pfs_cctx *c, int dirfd, const char *name)
{
	return pfs_st_openat(c->st, dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
}

/* Can the lower entry stay as it is, taking only the upper's metadata? */
static int reusable(struct pfs_cctx *c, int ufd, int lfd, const char *name,
		    const struct stat *ust, const struct stat *lst, bool metacopy, bool *reuse)
{
	int a = -1, b = -1, ret = 0;

	*reuse = false;
	/* Another name shares the lower inode: changing it would change that
	 * name too, which the overlay did not. */
	if (lst->st_nlink != 1 || (lst->st_mode & S_IFMT) != (ust->st_mode & S_IFMT))
		return 0;
	switch (ust->st_mode & S_IFMT) {
	case S_IFREG:
		if (metacopy) {
			*reuse = true;
			return 0;
		}
		/* A lower metacopy file (its data in a data-only layer) keeps
		 * its redirect if reused: replaced, it holds the upper's data. */
		if (pfs_ovl_has(c->st, pfs_ref_at(lfd, name), "metacopy") > 0)
			return 0;
		if (lst->st_size != ust->st_size)
			return 0;
		a = open_ro(c, ufd, name);
		if (a < 0)
			return pfs_cfail_at(c, a, "cannot open", c->upper, NULL);
		b = open_ro(c, lfd, name);
		if (b < 0) {
			ret = pfs_cfail_at(c, b, "cannot open", c->lower, NULL);
			break;
		}
		ret = pfs_fcopy_same(a, b, ust->st_size, reuse, pfs_progress_tick, &c->prog);
		if (ret < 0)
			pfs_cfail_at(c, ret, "cannot compare", c->lower, NULL);
		break;
	case S_IFLNK: {
		char ut[PATH_MAX], lt[PATH_MAX];
		ssize_t un = pfs_st_readlink(c->st, ufd, name, ut, sizeof(ut));
		ssize_t ln = pfs_st_readlink(c->st, lfd, name, lt, sizeof(lt));

		*reuse = un >= 0 && un == ln && memcmp(ut, lt, (size_t)un) == 0;
		break;
	}
	case S_IFCHR:
	case S_IFBLK:
		*reuse = ust->st_rdev == lst->st_rdev;
		break;
	default: /* fifos and sockets: nothing but metadata */
		*reuse = true;
	}
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	return ret;
}

/* bytes: what this entry counts for in the progress totals (the scan
 * counted a metadata-only copy as nothing). */
static int apply_file(struct pfs_cwalk *w, const struct pfs_ovl_ent *e, const struct stat *ust,
		      uint64_t *bytes)
{
	struct pfs_cctx *c = w->c;
	int ufd = pfs_cwalk_fd(w, PFS_CW_UPPER), lfd = pfs_cwalk_fd(w, PFS_CW_LOWER);
	const struct pfs_inomap_ent *g = NULL;
	bool exists, metacopy = false, reuse, cloned;
	struct pfs_csrc src;
	struct stat lst;
	ssize_t ki;
	ino_t tino;
	int ret, dfd = -1;
	const char *op;

	*bytes = S_ISREG(ust->st_mode) ? (uint64_t)ust->st_size : 0;
	ret = pfs_st_stat(c->st, lfd, e->name, &lst, AT_SYMLINK_NOFOLLOW);
	exists = ret == 0;
	if (!exists && ret != -ENOENT)
		return pfs_cfail_at(c, ret, "cannot stat", c->lower, NULL);
	if (ust->st_nlink > 1)
		g = pfs_inomap_get(&c->ulinks, ust->st_dev, ust->st_ino);
	if (g) {
		/* Another name of an upper inode already written: link to it. */
		if (exists && lst.st_ino == g->tino)
			return 0;
		return pfs_clink(c, c->lroot, g->path, lfd, e->name, exists, c->lower);
	}
	if (S_ISREG(ust->st_mode)) {
		ret = pfs_ovl_has(c->st, pfs_ref_at(ufd, e->name), "metacopy");
		if (ret < 0)
			return pfs_cfail_at(c, ret, "cannot read", c->upper, NULL);
		metacopy = ret > 0;
		if (metacopy)
			*bytes = 0;
		/* Renamed: its data is the one kept in the stage (none: the
		 * commit cut short wrote this file, its data is here). */
		if (metacopy && (ki = pfs_credir_find(c)) >= 0) {
			ret = pfs_credir_data(c, (size_t)ki, &dfd);
			if (ret < 0 && ret != -ENOENT)
				return pfs_cfail(c, ret, "cannot open the data kept for %s/%s",
						 c->upper, pfs_pathbuf_str(&c->path));
			if (ret == 0)
				*bytes = (uint64_t)ust->st_size;
		}
	}
	reuse = false;
	if (exists && dfd < 0) {
		ret = reusable(c, ufd, lfd, e->name, ust, &lst, metacopy, &reuse);
		if (ret < 0)
			return ret;
	}
	if (reuse) {
		ret = pfs_meta_copy(c->st, pfs_ref_at(lfd, e->name), pfs_ref_at(ufd, e->name), ust,
				    PFS_META_NO_PRIVATE, &op);
		if (ret < 0)
			return pfs_cfail_at(c, ret, op, c->lower, NULL);
		tino = lst.st_ino;
	} else {
		/* The scan made sure a metadata-only copy has its data below. */
		if (S_ISREG(ust->st_mode) && dfd < 0) {
			dfd = open_ro(c, metacopy ? lfd : ufd, e->name);
			if (dfd < 0)
				return pfs_cfail_at(c, dfd, "cannot open",
						    metacopy ? c->lower : c->upper, NULL);
		}
		src = (struct pfs_csrc){
			.st = ust,
			.meta = pfs_ref_at(ufd, e->name),
			.meta_flags = PFS_META_NO_PRIVATE,
			.datafd = dfd,
			.clone = true,
			.tick = *bytes > 0,
			.upath = e->name,
			.udirfd = ufd,
		};
		ret = pfs_cnew(c, lfd, e->name, &src, exists, &tino, &cloned, c->lower);
		if (dfd >= 0)
			close(dfd);
		if (ret < 0)
			return ret;
	}
	if (ust->st_nlink > 1 && pfs_inomap_put(&c->ulinks, ust->st_dev, ust->st_ino,
						pfs_pathbuf_str(&c->path), tino) < 0)
		return pfs_cfail(c, -ENOMEM, "out of memory");
	return 0;
}

static int inplace_entry(struct pfs_cwalk *w, const struct pfs_ovl_ent *e,
			 const struct pfs_name *le)
{
	struct pfs_cctx *c = w->c;
	struct stat ust;
	uint64_t bytes;
	int ret;

	if (e->flags & PFS_OVL_WHITEOUT) {
		int lfd = pfs_cwalk_fd(w, PFS_CW_LOWER);
		enum pfs_chide_need need;

		ret = pfs_chide_decide(c, pfs_cwalk_top(w)->reach, true, false, &need);
		if (ret == 0)
			ret = remove_at(c, lfd, e->name);
		if (ret == 0 && need == PFS_CHIDE_WHITEOUT)
			ret = pfs_chide_whiteout(c, lfd, e->name, c->lower);
		if (ret < 0)
			return ret;
		pfs_commit_crashpoint("inplace-whiteout");
		pfs_progress_file(&c->prog, 0);
		return 0;
	}
	ret = pfs_st_stat(c->st, pfs_cwalk_fd(w, PFS_CW_UPPER), e->name, &ust,
			  AT_SYMLINK_NOFOLLOW);
	if (ret < 0)
		return pfs_cfail_at(c, ret, "cannot stat", c->upper, NULL);
	if (S_ISDIR(ust.st_mode))
		return enter_dir(w, e, &ust);
	ret = apply_file(w, e, &ust, &bytes);
	if (ret < 0)
		return ret;
	pfs_progress_file(&c->prog, bytes);
	pfs_commit_crashpoint("inplace-file");
	return 0;
}

int pfs_commit_inplace(struct pfs_cctx *c)
{
	static const struct pfs_cwalk_ops ops = {.entry = inplace_entry, .leave = leave_dir};
	/* overlayfs always merges the root */
	struct pfs_cwlevel root = {.reach = true};
	struct pfs_cwalk w;
	int ufd, lfd, ret;

	ret = pfs_cwalk_init(&w, c, 2, c->lower, NULL);
	if (ret < 0)
		return ret;
	ufd = pfs_st_openat(c->st, c->uroot, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	lfd = pfs_st_openat(c->st, c->lroot, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	ret = ufd < 0 ? ufd : lfd < 0 ? lfd : 0;
	if (ret == 0)
		ret = fstat(c->uroot, &root.st) < 0 ? -errno : 0;
	if (ret == 0)
		ret = pfs_ovl_read_dir(c->st, c->uroot, &root.up);
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
	ret = pfs_inplace_begin(c);
	if (ret < 0)
		goto out;
	/* Renamed lower directories to their new places first: out of the
	 * way, journaled, then in. */
	if (c->redir.n && !c->redir.detached) {
		ret = pfs_credir_detach(c);
		if (ret == 0)
			ret = pfs_inplace_detached(c);
		if (ret < 0)
			goto out;
		pfs_commit_crashpoint("inplace-detached");
	}
	ret = pfs_credir_attach(c);
	if (ret < 0)
		goto out;
	ret = pfs_cwalk_run(&w, &ops);
	if (ret < 0)
		goto out;
	if (syncfs(c->lroot) < 0) {
		ret = pfs_cfail(c, -errno, "cannot sync the filesystem of %s", c->lower);
		goto out;
	}
	pfs_commit_crashpoint("inplace-synced");
	/* Only now, with the lower durable and that recorded, may the upper
	 * go: from here on it is never applied again. */
	ret = pfs_inplace_applied(c);
	if (ret < 0)
		goto out;
	c->committed = true;
	pfs_commit_crashpoint("inplace-applied");
	ret = pfs_inplace_end(c);
	if (ret < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", c->err);
		snprintf(c->err, c->errlen,
			 "the commit is complete, but emptying the upper failed: %s; prismfs "
			 "recover --lower %s finishes it", msg, c->lower);
	}
out:
	/* Once a lower directory has moved, only the journal can finish the
	 * commit: it stays, with the mark. */
	if (ret < 0 && !c->committed && !c->moving)
		pfs_inplace_abandon(c);
	pfs_cwalk_free(&w);
	return ret;
}
