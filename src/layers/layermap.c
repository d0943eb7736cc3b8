/* layermap: the mapping table in a layered mount (see layermap.h). The
 * table is resolved for SOURCE's part of a merged directory only, by the
 * same rules as a mapped mount without layers (resolve.c): an exact key
 * puts its target there, a graft its subtree, a hidden key nothing (and
 * nothing of the layers below either), and a path with keys below it and
 * nothing in SOURCE is a synthetic directory. */
#include "layers/layermap.h"
#include "layers/layer_int.h"
#include "util/util.h"
#include "store/walk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pfs_lmap_source(struct pfs_fs *fs, const struct pfs_ldir *d, const char *name,
		    struct pfs_lsrc *s)
{
	const struct pfs_lnode *ln = d->ln;
	char *vp = pfs_path_join(d->vpath, name);
	int pdir = -1, ret;

	memset(s, 0, sizeof(*s));
	s->pl.dirfd = s->pl.own_fd = -1;
	if (!vp)
		return -ENOMEM;
	/* An opaque upper directory (or one only the layers below SOURCE
	 * have) does not merge SOURCE: the table has nothing to say there. */
	s->use = ln->top <= 1 && ln->bottom >= 1;
	if (s->use && !ln->syn)
		pdir = __atomic_load_n(&ln->fd[1], __ATOMIC_ACQUIRE);
	ret = pfs_place_at(fs, d->map, vp, pdir, d->root, d->ctx, &s->pl);
	if (ret < 0)
		return ret;
	s->hidden = s->pl.res.hidden;
	s->syn_ok = !s->hidden && s->pl.res.parent_of_keys;
	return 0;
}

void pfs_lmap_source_put(struct pfs_lsrc *s)
{
	pfs_place_put(&s->pl);
}

void pfs_lmap_syn_attr(struct pfs_fs *fs, ino_t ino, struct stat *st)
{
	/* Unlike a mapped mount's (0555: read-only by design), a synthetic
	 * directory of a layered view can change like any lower directory:
	 * its copy-up in the upper is made with these attributes. */
	pfs_view_synthetic_stat(fs, ino, 0755, st);
}

static int claim(const char *name, bool hidden, const struct pfs_map_entry *e, void *arg)
{
	struct pfs_lclaims *c = arg;

	(void)hidden;
	(void)e;
	if (pfs_grow(&c->v, &c->cap, c->n, sizeof(*c->v)) < 0)
		return -ENOMEM;
	c->v[c->n] = strdup(name);
	if (!c->v[c->n])
		return -ENOMEM;
	c->n++;
	return 0;
}

int pfs_lmap_claims(const struct pfs_ldir *d, struct pfs_lclaims *c)
{
	struct pfs_map_res r;

	memset(c, 0, sizeof(*c));
	pfs_map_resolve(d->map, d->vpath, &r);
	if (r.hidden) {
		c->hidden = true;
		return 0;
	}
	/* pfs_map_children gives them in strcmp order: ready for bsearch. */
	return pfs_map_children(d->map, d->vpath, claim, c);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool pfs_lmap_claimed(const struct pfs_lclaims *c, const char *name)
{
	return c->n && bsearch(&name, c->v, c->n, sizeof(*c->v), cmp_name);
}

void pfs_lmap_claims_free(struct pfs_lclaims *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i]);
	free(c->v);
	memset(c, 0, sizeof(*c));
}

int pfs_lmap_may_change(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	struct pfs_map *m = pfs_view_map(fs);
	struct pfs_map_res r;
	char *vp;

	if (!m)
		return 0;
	vp = pfs_node_path(fs, parent, name);
	if (vp)
		pfs_map_resolve(m, vp, &r);
	pfs_map_unref(m);
	free(vp);
	if (!vp)
		return -ENOMEM;
	return r.readonly ? -EROFS : 0;
}

struct pfs_node *pfs_lmap_held_child(struct pfs_fs *fs, struct pfs_node *parent,
				     const char *name, bool *exists)
{
	struct pfs_node *n = NULL;
	struct pfs_lfound f;
	struct pfs_lsrc s;
	struct pfs_ldir d = {0};
	struct stat st;

	*exists = false;
	if (!parent->ln || pfs_layer_ldir_get(fs, parent, &d) < 0 || !d.map) {
		pfs_layer_ldir_put(&d);
		return NULL;
	}
	if (pfs_lmap_source(fs, &d, name, &s) == 0 && !s.hidden && s.use && s.pl.dirfd >= 0 &&
	    pfs_layer_lstat_at(fs, s.pl.dirfd, s.pl.name, &st) == 0)
		*exists = true;
	pfs_lmap_source_put(&s);
	if (pfs_layer_find_in(fs, &d, name, &f) == 0) {
		n = pfs_node_find(fs, f.kdev, f.kino, f.ctx);
		pfs_lfound_put(fs, &f);
	}
	pfs_layer_ldir_put(&d);
	return n;
}
