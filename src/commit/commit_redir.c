/* commit_redir: the in-place commit of directories overlayfs renamed
 * (overlay.redirect, redirect_dir=on). The upper directory at T, renamed
 * from the lower directory at S, becomes the lower directory S moved to T,
 * with the upper's changes then merged into it as into any directory.
 *
 * Moves can depend on each other (a directory moved out of one that moves
 * too, two directories exchanged, one moved over a directory that moves
 * elsewhere), so they go in two passes through a stage, `.prismfs-moving`
 * in the lower root, where move i's directory is called i:
 *   detach: deepest S first, each S renamed to stage/i (its ancestors have
 *           not moved yet, so S still names it);
 *   attach: shallowest T first, whatever the lower holds at T removed (the
 *           view hides it behind the renamed directory), the parents made,
 *           stage/i renamed to T;
 * and, once the walk has merged everything, the stage is removed. A
 * metadata-only copy renamed (a file's redirect) has its data in another
 * lower file, which the walk may replace or delete before it reaches the
 * copy: detach keeps that file by a hard link stage/i, the walk writes the
 * copy's data from there, and the end removes it.
 * The moves are in the in-place journal from its first write, and
 * "detached" is journaled between the passes (commit_inplace.c), so a
 * resumed commit knows each move's state from the stage alone: before
 * "detached", stage/i present means moved out, absent means still at S;
 * after it, present means not yet at T, absent means at T (a kept file:
 * present until the walk is done, then the file at T has its data).
 * Nothing else is read to decide, so a new directory made at S later (the
 * upper recreated the old name) is never taken for S.
 *
 * Moving cannot show one lower directory at two places: the scan's moves
 * are checked first (pfs_credir_check), and a directory that the view
 * shows where it was as well as where it went is refused. */
#include "commit/commit_int.h"
#include "layers/ovlfmt.h"
#include "store/rmtree.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STAGE ".prismfs-moving"

void pfs_credir_free(struct pfs_credir *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].from);
		free(r->v[i].to);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

int pfs_credir_add(struct pfs_cctx *c, const char *from, bool file)
{
	struct pfs_credir *r = &c->redir;
	char *f = strdup(from), *t = strdup(pfs_pathbuf_str(&c->path));

	if (!f || !t || pfs_grow(&r->v, &r->cap, r->n, sizeof(*r->v)) < 0) {
		free(f);
		free(t);
		return pfs_cfail(c, -ENOMEM, "out of memory");
	}
	r->v[r->n++] = (struct pfs_cmove){.from = f, .to = t, .file = file};
	return 0;
}

ssize_t pfs_credir_find(const struct pfs_cctx *c)
{
	const char *p = pfs_pathbuf_str(&c->path);

	for (size_t i = 0; i < c->redir.n; i++)
		if (strcmp(c->redir.v[i].to, p) == 0)
			return (ssize_t)i;
	return -1;
}

static size_t depth(const char *p)
{
	size_t n = 1;

	for (; *p; p++)
		n += *p == '/';
	return n;
}

/* Open the directory holding path (relative to dirfd, a directory of the
 * lower) as *dfd, its last component at *leaf; make: create what is
 * missing on the way (0700: the walk gives each its metadata), replacing a
 * non-directory. */
static int open_parent(struct pfs_cctx *c, int dirfd, const char *path, bool make, int *dfd,
		       const char **leaf)
{
	char name[NAME_MAX + 1];
	const char *p = path, *slash;
	struct stat st;
	int fd, nfd, ret;

	fd = pfs_st_openat(c->st, dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	for (; (slash = strchr(p, '/')); p = slash + 1) {
		if ((size_t)(slash - p) > NAME_MAX) {
			close(fd);
			return -ENAMETOOLONG;
		}
		memcpy(name, p, (size_t)(slash - p));
		name[slash - p] = '\0';
		if (make) {
			ret = pfs_st_stat(c->st, fd, name, &st, AT_SYMLINK_NOFOLLOW);
			if (ret == 0 && !S_ISDIR(st.st_mode))
				ret = pfs_st_unlink(c->st, fd, name, 0);
			else if (ret == -ENOENT)
				ret = 0;
			else if (ret == 0)
				goto open;
			if (ret == 0)
				ret = pfs_st_mkdir(c->st, fd, name, 0700);
			if (ret < 0) {
				close(fd);
				return ret;
			}
		}
open:
		ret = pfs_open_subdir(c->st, fd, name, &nfd);
		close(fd);
		if (ret < 0)
			return ret;
		fd = nfd;
	}
	*dfd = fd;
	*leaf = p;
	return 0;
}

static void stage_name(char *buf, size_t len, size_t i)
{
	snprintf(buf, len, "%zu", i);
}

/* The stage, or -ENOENT. */
static int open_stage(struct pfs_cctx *c, int *sfd)
{
	int ret = pfs_open_subdir(c->st, c->lroot, STAGE, sfd);

	return ret == -ENOTDIR ? -ENOENT : ret;
}

static bool staged(struct pfs_cctx *c, int sfd, size_t i)
{
	char n[32];
	struct stat st;

	stage_name(n, sizeof(n), i);
	return sfd >= 0 && pfs_st_stat(c->st, sfd, n, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

int pfs_credir_open(struct pfs_cctx *c, size_t i, int *lfd)
{
	const struct pfs_cmove *m = &c->redir.v[i];
	const char *leaf;
	char n[32];
	int sfd = -1, dfd, ret;

	ret = open_stage(c, &sfd);
	if (ret < 0 && ret != -ENOENT)
		return pfs_cfail(c, ret, "cannot open %s/%s", c->lower, STAGE);
	if (staged(c, sfd, i)) {
		stage_name(n, sizeof(n), i);
		ret = pfs_open_subdir(c->st, sfd, n, lfd);
	} else {
		ret = open_parent(c, c->lroot, c->redir.detached ? m->to : m->from, false, &dfd,
				  &leaf);
		if (ret == 0) {
			ret = pfs_open_subdir(c->st, dfd, leaf, lfd);
			close(dfd);
		}
	}
	if (sfd >= 0)
		close(sfd);
	if (ret < 0)
		return pfs_cfail(c, ret, "the interrupted commit moved %s/%s to %s/%s, but it is "
				 "not there", c->lower, m->from, c->lower, m->to);
	return 0;
}

/* Is a a proper ancestor of b (as lower paths, "" the root)? */
static bool ancestor(const char *a, const char *b)
{
	size_t n = strlen(a);

	return n == 0 ? *b != '\0' : strncmp(a, b, n) == 0 && b[n] == '/';
}

/* Open the directory at path from dirfd ("" dirfd itself). */
static int open_path(struct pfs_cctx *c, int dirfd, const char *path, int *fd)
{
	const char *leaf;
	int dfd, ret;

	if (!*path) {
		*fd = pfs_st_openat(c->st, dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
		return *fd < 0 ? *fd : 0;
	}
	ret = open_parent(c, dirfd, path, false, &dfd, &leaf);
	if (ret < 0)
		return ret;
	ret = pfs_open_subdir(c->st, dfd, leaf, fd);
	close(dfd);
	return ret;
}

/* Does the view show the lower directory at the anchor's lower path + "/"
 * + rest at the upper path apath + "/" + rest, apath's upper directory
 * being merged with the anchor's lower directory? It does unless, on the
 * way, the upper hides the name (a whiteout, another entry, a directory of
 * its own: opaque, new or renamed). */
static int shown(struct pfs_cctx *c, const char *apath, const char *rest, bool *yes)
{
	struct pfs_ovl_dir d = {0};
	char *copy = strdup(rest), *p, *slash;
	int fd = -1, nfd, ret;

	*yes = false;
	if (!copy)
		return -ENOMEM;
	ret = open_path(c, c->uroot, apath, &fd);
	if (ret == 0)
		ret = pfs_ovl_read_dir(c->st, fd, &d);
	for (p = copy; p && ret == 0; p = slash ? slash + 1 : NULL) {
		const struct pfs_ovl_ent *e;

		slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		e = pfs_ovl_find(&d, p);
		if (!e) {
			*yes = true; /* the lower one shows through */
			goto out;
		}
		if (e->flags & (PFS_OVL_WHITEOUT | PFS_OVL_FRESH))
			goto out;
		ret = pfs_open_subdir(c->st, fd, p, &nfd);
		if (ret == -ENOTDIR || ret == -ELOOP) {
			ret = 0;
			goto out;
		}
		if (ret < 0)
			goto out;
		close(fd);
		fd = nfd;
		pfs_ovl_dir_free(&d);
		ret = pfs_ovl_has(c->st, pfs_ref_fd(fd), "redirect");
		if (ret != 0) {
			ret = ret > 0 ? 0 : ret; /* renamed: its lower is another one */
			goto out;
		}
		ret = pfs_ovl_read_dir(c->st, fd, &d);
		if (ret == 0 && d.opaque)
			goto out;
	}
	if (ret == 0)
		*yes = true; /* a plain upper directory merges it */
out:
	pfs_ovl_dir_free(&d);
	if (fd >= 0)
		close(fd);
	free(copy);
	return ret;
}

int pfs_credir_check(struct pfs_cctx *c)
{
	const struct pfs_credir *r = &c->redir;
	struct stat st;
	int ret;

	if (!r->n || r->resumed)
		return 0;
	if (pfs_st_stat(c->st, c->lroot, STAGE, &st, AT_SYMLINK_NOFOLLOW) == 0 ||
	    pfs_st_stat(c->st, c->uroot, STAGE, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return pfs_crefuse(c, -EEXIST, "%s/%s or %s/%s exists: an in-place commit of "
				   "renamed directories needs that name, use --atomic", c->lower,
				   STAGE, c->upper, STAGE);
	for (size_t i = 0; i < r->n; i++) {
		const char *s = r->v[i].from;
		bool yes = false;

		if (r->v[i].file)
			continue; /* kept by a link: it may show anywhere */
		/* From the root, and from each directory renamed from an
		 * ancestor of it (or from it again). */
		for (size_t a = 0; a <= r->n && !yes; a++) {
			const char *af = a < r->n ? r->v[a].from : "";
			const char *at = a < r->n ? r->v[a].to : "";

			if (a == i || (a < r->n && r->v[a].file))
				continue;
			if (a < r->n && strcmp(af, s) == 0) {
				yes = true;
				break;
			}
			if (!ancestor(af, s))
				continue;
			ret = shown(c, at, s + strlen(af) + (*af != '\0'), &yes);
			if (ret < 0)
				return pfs_cfail(c, ret, "cannot read %s", c->upper);
		}
		if (yes)
			return pfs_crefuse(c, -EXDEV,
					   "%s/%s was renamed from %s/%s by overlayfs (redirect), "
					   "which the view still shows elsewhere too; an in-place "
					   "commit cannot put it at two places, use --atomic",
					   c->upper, r->v[i].to, c->lower, s);
	}
	return 0;
}

/* Move indices sorted by the depth of their from (detach: deepest first)
 * or to (attach: shallowest first). */
static size_t *order(const struct pfs_credir *r, bool detach)
{
	size_t *o = calloc(r->n, sizeof(*o));

	if (!o)
		return NULL;
	for (size_t i = 0; i < r->n; i++)
		o[i] = i;
	/* Insertion sort: a handful of moves, and stable. */
	for (size_t i = 1; i < r->n; i++) {
		size_t k = o[i], j = i;

		while (j > 0) {
			size_t a = detach ? depth(r->v[o[j - 1]].from) : depth(r->v[k].to);
			size_t b = detach ? depth(r->v[k].from) : depth(r->v[o[j - 1]].to);

			if (a >= b)
				break;
			o[j] = o[j - 1];
			j--;
		}
		o[j] = k;
	}
	return o;
}

/* The stage opened and the moves in a pass's order (detach: deepest source
 * first), or the failure said; -ENOENT unsaid when attaching: the stage is
 * gone, every move done. */
static int pass_begin(struct pfs_cctx *c, bool detach, int *sfd, size_t **o)
{
	int ret = open_stage(c, sfd);

	if (ret == -ENOENT && !detach)
		return ret;
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot open %s/%s", c->lower, STAGE);
	*o = order(&c->redir, detach);
	return *o ? 0 : pfs_cfail(c, -ENOMEM, "out of memory");
}

int pfs_credir_detach(struct pfs_cctx *c)
{
	struct pfs_credir *r = &c->redir;
	size_t *o = NULL;
	int sfd = -1, ret = 0;

	if (!r->n || r->detached)
		return 0;
	c->moving = true;
	ret = pfs_st_mkdir(c->st, c->lroot, STAGE, 0700);
	if (ret < 0 && !(ret == -EEXIST && r->resumed))
		return pfs_cfail(c, ret, "cannot create %s/%s", c->lower, STAGE);
	ret = pass_begin(c, true, &sfd, &o);
	if (ret < 0)
		goto out;
	for (size_t k = 0; k < r->n; k++) {
		const struct pfs_cmove *m = &r->v[o[k]];
		const char *leaf;
		char n[32];
		int dfd;

		if (staged(c, sfd, o[k]))
			continue;
		stage_name(n, sizeof(n), o[k]);
		ret = open_parent(c, c->lroot, m->from, false, &dfd, &leaf);
		if (ret == 0) {
			ret = m->file ? pfs_st_link(c->st, dfd, leaf, sfd, n, 0)
				      : pfs_st_rename(c->st, dfd, leaf, sfd, n, 0);
			close(dfd);
		}
		if (ret < 0) {
			pfs_cfail(c, ret, m->file ? "cannot keep the data of %s/%s"
						  : "cannot move %s/%s out of the way", c->lower, m->from);
			goto out;
		}
		pfs_commit_crashpoint("inplace-detach");
	}
	/* The journal says "detached" next: the moves must be durable first. */
	if (syncfs(c->lroot) < 0)
		ret = pfs_cfail(c, -errno, "cannot sync the filesystem of %s", c->lower);
out:
	free(o);
	if (sfd >= 0)
		close(sfd);
	return ret;
}

int pfs_credir_attach(struct pfs_cctx *c)
{
	struct pfs_credir *r = &c->redir;
	char where[PATH_MAX];
	size_t *o = NULL;
	int sfd = -1, ret;

	if (!r->n)
		return 0;
	c->moving = true;
	r->detached = true;
	ret = pass_begin(c, false, &sfd, &o);
	if (ret == -ENOENT)
		return 0; /* all at their places, the stage removed */
	if (ret < 0)
		goto out;
	for (size_t k = 0; k < r->n; k++) {
		const struct pfs_cmove *m = &r->v[o[k]];
		const char *leaf;
		char n[32];
		int dfd;

		if (m->file || !staged(c, sfd, o[k]))
			continue;
		stage_name(n, sizeof(n), o[k]);
		ret = open_parent(c, c->lroot, m->to, true, &dfd, &leaf);
		if (ret < 0) {
			pfs_cfail(c, ret, "cannot make the parent of %s/%s", c->lower, m->to);
			goto out;
		}
		/* What the lower holds there, the renamed directory hid. */
		ret = pfs_rmtree_at(c->st, dfd, leaf, where, sizeof(where));
		if (ret < 0) {
			close(dfd);
			pfs_cfail(c, ret, "cannot remove %s/%s (at %s)%s", c->lower, m->to, where,
				  ret == -EXDEV ? ": a mount point" : "");
			goto out;
		}
		ret = pfs_st_rename(c->st, sfd, n, dfd, leaf, 0);
		close(dfd);
		if (ret < 0) {
			pfs_cfail(c, ret, "cannot move %s/%s to %s/%s", c->lower, m->from, c->lower,
				  m->to);
			goto out;
		}
		pfs_commit_crashpoint("inplace-attach");
	}
	ret = 0;
out:
	free(o);
	if (sfd >= 0)
		close(sfd);
	return ret;
}

int pfs_credir_data(struct pfs_cctx *c, size_t i, int *fd)
{
	char n[32];
	int sfd, ret = open_stage(c, &sfd);

	if (ret < 0)
		return ret;
	stage_name(n, sizeof(n), i);
	*fd = pfs_st_openat(c->st, sfd, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	close(sfd);
	return *fd < 0 ? *fd : 0;
}

int pfs_credir_end(struct pfs_cctx *c)
{
	char n[32];
	int sfd, ret;

	if (!c->redir.n)
		return 0;
	ret = open_stage(c, &sfd);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot open %s/%s", c->lower, STAGE);
	/* Each file is written: its data is no longer needed from here. */
	for (size_t i = 0; i < c->redir.n && ret == 0; i++) {
		stage_name(n, sizeof(n), i);
		ret = pfs_st_unlink(c->st, sfd, n, 0);
		if (ret == -ENOENT)
			ret = 0;
	}
	close(sfd);
	if (ret == 0)
		ret = pfs_st_unlink(c->st, c->lroot, STAGE, AT_REMOVEDIR);
	if (ret < 0 && ret != -ENOENT)
		return pfs_cfail(c, ret, "cannot remove %s/%s", c->lower, STAGE);
	return 0;
}
