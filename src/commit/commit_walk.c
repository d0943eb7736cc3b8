/* commit_walk: the paired walk of the upper over the lower that the scan,
 * the in-place commit and the atomic build share.
 *
 * One level per directory on the way down, each with the upper's entries
 * (markers applied, sorted) and, where the strategy asks, the lower names
 * that show through (sorted too): the names are visited merged, in order,
 * an upper entry hiding or merging the lower one of its name. Directory
 * stacks (store/walk.h) keep the descriptors of the upper, the lower and,
 * for the atomic build, the new tree, so any depth is walked with a
 * bounded number of them and without recursion. c->path names the entry
 * being visited; a directory entered keeps its name there until it is
 * left. */
#include "commit/commit_int.h"
#include "layers/ovlfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIRST_LEVELS 16

int pfs_cwalk_init(struct pfs_cwalk *w, struct pfs_cctx *c, size_t nst, const char *root,
		   void *arg)
{
	memset(w, 0, sizeof(*w));
	w->c = c;
	w->nst = nst;
	w->root = root;
	w->arg = arg;
	w->lv = calloc(FIRST_LEVELS, sizeof(*w->lv));
	if (!w->lv)
		return pfs_cfail(c, -ENOMEM, "out of memory");
	w->cap = FIRST_LEVELS;
	return 0;
}

int pfs_cwalk_push(struct pfs_cwalk *w, const int *fds, const bool *child,
		   const struct pfs_cwlevel *l)
{
	size_t i;
	int ret = 0;

	if (pfs_grow(&w->lv, &w->cap, w->n, sizeof(*w->lv)) < 0) {
		for (i = 0; i < w->nst; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return pfs_cfail(w->c, -ENOMEM, "out of memory");
	}
	/* Each push owns its fd even on failure; the stacks are freed as a
	 * whole on any error, so being one level out of step is harmless. */
	for (i = 0; i < w->nst && ret == 0; i++)
		ret = pfs_dstack_push(&w->st[i], fds[i], child[i]);
	if (ret < 0) {
		for (; i < w->nst; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return ret;
	}
	w->lv[w->n++] = *l;
	return 0;
}

/* The next name of the merged listing: from the upper (ue, with the lower
 * one of the same name hidden or merged) or from the lower alone (le). */
static void next_entry(struct pfs_cwlevel *l, const struct pfs_ovl_ent **ue,
		       const struct pfs_name **le)
{
	const struct pfs_ovl_ent *u = l->ui < l->up.n ? &l->up.v[l->ui] : NULL;
	const struct pfs_name *lo = l->li < l->lo.n ? &l->lo.v[l->li] : NULL;
	int cmp = !u ? 1 : !lo ? -1 : strcmp(u->name, lo->name);

	*ue = NULL;
	*le = NULL;
	if (!u && !lo)
		return;
	if (cmp <= 0) {
		*ue = u;
		l->ui++;
		if (cmp == 0)
			l->li++;
	} else {
		*le = lo;
		l->li++;
	}
}

/* Leave a directory: c->path cut back to plen and each stack popped; a
 * failure names root/path. */
static int walk_up(struct pfs_cwalk *w, size_t plen)
{
	struct pfs_cctx *c = w->c;

	pfs_pathbuf_cut(&c->path, plen);
	for (size_t i = 0; i < w->nst; i++) {
		int ret = pfs_dstack_pop(&w->st[i]);

		if (ret < 0)
			return pfs_cfail_at(c, ret, "cannot walk back up to", w->root, NULL);
	}
	return 0;
}

int pfs_cwalk_run(struct pfs_cwalk *w, const struct pfs_cwalk_ops *ops)
{
	struct pfs_cctx *c = w->c;
	int ret;

	while (w->n) {
		struct pfs_cwlevel *l = &w->lv[w->n - 1];
		const struct pfs_ovl_ent *ue;
		const struct pfs_name *le;
		size_t plen, depth = w->n;

		next_entry(l, &ue, &le);
		if (!ue && !le) {
			if (ops->leave && (ret = ops->leave(w)) < 0)
				return ret;
			if (w->n == 1)
				break;
			pfs_ovl_dir_free(&l->up);
			pfs_names_free(&l->lo);
			w->n--;
			ret = walk_up(w, l->plen);
			if (ret < 0)
				return ret;
			continue;
		}
		plen = pfs_pathbuf_push(&c->path, ue ? ue->name : le->name);
		if (plen == (size_t)-1)
			return pfs_cfail(c, -ENOMEM, "out of memory");
		ret = ops->entry(w, ue, le);
		if (ret < 0)
			return ret;
		/* A directory entered keeps its name on the path until left. */
		if (w->n > depth)
			w->lv[w->n - 1].plen = plen;
		else
			pfs_pathbuf_cut(&c->path, plen);
	}
	return 0;
}

void pfs_cwalk_free(struct pfs_cwalk *w)
{
	for (size_t i = 0; i < w->n; i++) {
		pfs_ovl_dir_free(&w->lv[i].up);
		pfs_names_free(&w->lv[i].lo);
	}
	free(w->lv);
	w->lv = NULL;
	w->n = w->cap = 0;
	for (size_t i = 0; i < w->nst; i++)
		pfs_dstack_free(&w->st[i]);
	pfs_pathbuf_cut(&w->c->path, 0);
}
