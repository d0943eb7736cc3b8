/* layer_find: what a name is in a merged directory. The layers are asked
 * top down: the highest object of the name is the one shown, a whiteout
 * stops the search, and a directory merges the directories of its name
 * below it until one is opaque (or not a directory). With a mapping
 * table, SOURCE's part (layer 1) is where the table puts the name. */
#include "layers/layer.h"
#include "layers/layer_int.h"
#include "view/view.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layers/layermap.h"
#include "layers/ovlfmt.h"

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

/* A search in progress, layer by layer. */
struct finding {
	struct pfs_fs *fs;
	const struct pfs_ldir *dir;
	const char *name;
	struct pfs_lfound *f;
	struct pfs_lsrc src;      /* with a table: SOURCE's place for the name */
	bool merging;             /* the directory shown merges the next layer */
	bool keyed;               /* f's key is decided */
	int unreach;              /* why SOURCE cannot show it (the table's) */
	int bottom;               /* the lowest layer a merge may reach */
	/* Redirects followed (redirect.c): the name the layers below are
	 * searched by instead of name — relative, or an absolute path from
	 * each layer's root — or NULL. Owned. */
	char *redir;
	char *walk;               /* layer i's copy of an absolute redir (owned) */
	int walkfd;               /* the directory it led to in layer i (owned) */
	bool last;                /* an opaque directory on that path: layer i
				   * is the last searched */
	bool redirected;          /* the upper's own directory has a redirect */
	bool data;                /* the shown upper file is a metacopy: its
				   * data is the next regular file below */
	bool refuse;              /* ... on a mount without metacopy=on */
};

/* What a step says: look at the next layer, or the search is over. */
enum { GO_ON = 0, STOP = 1 };

/* Is the regular file nm in d of a lower layer a metacopy whose data lies
 * further down? Asked with data-only layers (whose data only such files
 * reach) or metacopy=on, as the kernel; never with a mapping table. */
static bool lower_meta(const struct finding *s, int d, const char *nm)
{
	const struct pfs_layers *L = s->fs->layers;

	return (L->ndata || L->metacopy) && !s->dir->map &&
	       pfs_ovl_has(s->fs->store, pfs_layer_ref(s->fs, d, nm), "metacopy") > 0;
}

/* The data of a metacopy file by its absolute redirect, in the data-only
 * layers in order, as the kernel's lookup of lower data: a regular file,
 * beneath the layer's root, through no symlink. Its layer (the O_PATH in
 * *fdp), or -errno: the last layer's answer (ENOENT: none has a regular
 * file there). */
static int find_data(struct finding *s, int *fdp)
{
	struct pfs_fs *fs = s->fs;
	const struct pfs_layers *L = fs->layers;
	struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
					  RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
	int ret = -ENOENT;

	for (size_t j = L->n - L->ndata; j < L->n; j++) {
		struct stat st;
		int fd = pfs_st_open(fs->store, L->root[j], s->redir + 1, &how);

		if (fd < 0) {
			ret = fd;
			continue;
		}
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
			*fdp = fd;
			return (int)j;
		}
		close(fd);
		ret = -ENOENT;
	}
	return ret;
}

/* No regular layer held the data of the metacopy file found: with an
 * absolute redirect, the data-only layers do. Not there, the file still
 * shows (the kernel looks its data up at the first open, which fails):
 * ln->nodata says with what. Else a metacopy file without its data. */
static int data_only(struct finding *s)
{
	struct pfs_lnode *ln = s->f->ln;
	int fd = -1, j;

	if (!s->fs->layers->ndata || !s->redir || s->redir[0] != '/')
		return -EIO; /* as the kernel */
	j = find_data(s, &fd);
	ln->meta = true;
	s->data = false;
	if (j < 0) {
		ln->nodata = (uint8_t)(-j > 255 ? EIO : -j);
		return 0;
	}
	ln->fd[j] = fd;
	ln->bottom = (uint8_t)j;
	return 0;
}

/* The directory found in layer i at nm in d has a redirect: the layers
 * below are searched by it from now on (not in the last layer: there
 * is nothing below to search). With data, the object is a metacopy file
 * whose data is sought by it: with data-only layers such a redirect is
 * followed whatever redirect_dir says, as the kernel's (it is how their
 * data is reached, not a renamed directory). 0 or -errno. */
static int follow(struct finding *s, int i, int d, const char *nm, bool data)
{
	const struct pfs_layers *L = s->fs->layers;
	const char *cur = s->redir ? s->redir : s->name;
	size_t prelen = 0;
	char *r, *next;
	int ret;

	if (s->dir->map || (!L->redir_follow && !(data && L->ndata)) ||
	    (!data && i + 1 >= (int)L->n))
		return 0;
	ret = pfs_redir_get(s->fs, d, nm, &r);
	if (ret <= 0)
		return ret;
	if (cur[0] == '/') /* a relative one replaces the path's last name */
		prelen = (size_t)(strrchr(cur, '/') - cur) + 1;
	ret = pfs_redir_apply(cur, prelen, r, "", &next);
	if (ret == 0) {
		s->redirected = s->redirected || i == 0;
		if (r[0] == '/') {
			/* From every lower's root, whatever stopped the
			 * parents' merge (as the kernel's lookup). */
			s->bottom = s->fs->root->ln->bottom;
			s->last = false;
		}
		free(s->redir);
		s->redir = next;
	}
	free(r);
	return ret;
}

/* An upper directory with a redirect shows lower parts found elsewhere:
 * whether the name itself shows below (so that removing or renaming it
 * needs a whiteout) is the answer of the parent's lowers for the name, as
 * the kernel asks it. */
static bool name_below(const struct finding *s)
{
	const struct pfs_lnode *pl = s->dir->ln;
	struct stat st;

	for (int i = pl->top > 0 ? pl->top : 1; i <= pl->bottom; i++) {
		int d = __atomic_load_n(&pl->fd[i], __ATOMIC_ACQUIRE);

		if (d < 0)
			continue;
		if (pfs_layer_lstat_at(s->fs, d, s->name, &st) == 0)
			return !pfs_ovl_is_whiteout(&st);
		if (pfs_ovl_has_wh_file(s->fs->store, d, s->name))
			return false;
	}
	return false;
}

static void walk_done(struct finding *s)
{
	if (s->walkfd >= 0)
		close(s->walkfd);
	s->walkfd = -1;
	free(s->walk);
	s->walk = NULL;
}

/* An absolute redirect in layer i: its directories from the layer's root,
 * each a directory (a whiteout or anything else ends the search, nothing
 * there leaves layer i out), an opaque one making layer i the last, one
 * with a redirect of its own changing the path for the layers below. The
 * last directory in *dp (-1: none) and the name in it. GO_ON, STOP, or
 * -errno. */
static int walk_abs(struct finding *s, int i, int *dp, const char **nm)
{
	struct pfs_fs *fs = s->fs;
	int cur = fs->layers->root[i], fd, ret;
	size_t total;
	char *p, *slash;
	struct stat st;

	walk_done(s);
	*dp = -1;
	s->walk = strdup(s->redir);
	if (!s->walk)
		return -ENOMEM;
	total = strlen(s->walk);
	for (p = s->walk + 1; (slash = strchr(p, '/')); p = slash + 1) {
		*slash = '\0';
		ret = pfs_layer_lstat_at(fs, cur, p, &st);
		if (ret == -ENOENT || ret == -ENOTDIR)
			return pfs_ovl_has_wh_file(fs->store, cur, p) ? STOP : GO_ON;
		if (ret < 0)
			return ret;
		if (pfs_ovl_is_whiteout(&st) || !S_ISDIR(st.st_mode))
			return STOP;
		fd = pfs_layer_open_at(fs, cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return fd;
		if (pfs_layer_is_opaque(fs, cur, p, fd)) {
			s->last = true;
		} else if (fs->layers->redir_follow && i + 1 < (int)fs->layers->n) {
			char *r, *next;

			ret = pfs_redir_get(fs, cur, p, &r);
			if (ret > 0) {
				/* This name and what follows end s->redir too. */
				size_t rem = total - (size_t)(p - s->walk);

				ret = pfs_redir_apply(s->redir, strlen(s->redir) - rem, r,
						      s->redir + strlen(s->redir) - rem +
							      (size_t)(slash - p),
						      &next);
				if (ret == 0) {
					free(s->redir);
					s->redir = next;
				}
				free(r);
			}
			if (ret < 0) {
				close(fd);
				return ret;
			}
		}
		*slash = '/';
		if (s->walkfd >= 0)
			close(s->walkfd);
		s->walkfd = cur = fd;
	}
	*dp = cur;
	*nm = p;
	return GO_ON;
}

/* Layer i's directory and the name in it: SOURCE's where the table says. */
static int layer_dir(struct finding *s, int i, const char **nm)
{
	const struct pfs_ldir *dir = s->dir;
	int d = __atomic_load_n(&dir->ln->fd[i], __ATOMIC_ACQUIRE);

	*nm = s->redir ? s->redir : s->name;
	if (i == 1 && dir->map) {
		d = s->src.use ? s->src.pl.dirfd : -1;
		*nm = s->src.pl.name;
		if (s->src.use)
			s->unreach = s->src.pl.unreach;
	}
	return d;
}

/* Layer i has nothing at the name: in SOURCE, the table may make it a
 * synthetic directory. */
static int found_nothing(struct finding *s, int i)
{
	int ret;

	if (!(i == 1 && s->dir->map && s->src.use && s->src.syn_ok))
		return GO_ON;
	if (s->f->layer >= 0 && !s->merging) {
		s->f->below = true; /* under an upper non-directory */
		return STOP;
	}
	ret = found_synthetic(s->fs, &s->src, s->f, &s->merging, &s->keyed, s->dir->ln->bottom);
	if (ret < 0)
		return ret;
	return s->merging ? GO_ON : STOP;
}

/* The object shown: the highest of the name, in layer i (d, nm; lstat st). */
static int found_top(struct finding *s, int i, int d, const char *nm, const struct stat *st)
{
	struct pfs_fs *fs = s->fs;
	struct pfs_lfound *f = s->f;
	int fd = pfs_layer_open_at(fs, d, nm, O_PATH | O_NOFOLLOW | O_CLOEXEC), ret;

	if (fd < 0)
		return fd;
	f->layer = i;
	f->fd = fd;
	f->st = *st;
	f->below = i > 0;
	if (i == 1 && s->dir->map) {
		ret = keep_place(&s->src, s->name, f);
		if (ret < 0)
			return ret;
	}
	if (S_ISDIR(st->st_mode)) {
		f->ln = pfs_lnode_new(fs->layers);
		if (!f->ln)
			return -ENOMEM;
		f->ln->top = f->ln->bottom = (uint8_t)i;
		f->ln->fd[i] = fd;
		/* A `.wh.NAME` beside a real directory makes it a replacement,
		 * not a merge (as an opaque one). */
		bool opq = pfs_layer_is_opaque(fs, d, nm, fd) || pfs_ovl_has_wh_file(fs->store, d, nm);

		/* Its redirect first: an absolute one reaches layers its
		 * parent's merge does not. */
		if (!opq && (ret = follow(s, i, d, nm, false)) < 0)
			return ret;
		s->merging = i < s->bottom && !opq;
		if (i > 0) {
			f->kdev = st->st_dev;
			f->kino = st->st_ino;
			s->keyed = true;
		}
	} else if (i == 0) {
		pfs_layer_upper_key(fs, d, nm, f);
		s->keyed = true;
		if (S_ISREG(st->st_mode) && !s->dir->map &&
		    pfs_ovl_has(fs->store, pfs_layer_ref(fs, d, nm), "metacopy") > 0) {
			/* Its data is found below as a directory's lower parts
			 * are: by its redirect, else by its name. */
			f->ln = pfs_lnode_new(fs->layers);
			if (!f->ln)
				return -ENOMEM;
			f->ln->fd[0] = fd;
			ret = follow(s, 0, d, nm, true);
			if (ret < 0)
				return ret;
			s->data = true;
			s->refuse = !fs->layers->metacopy;
			return GO_ON;
		}
	} else {
		f->kdev = st->st_dev;
		f->kino = st->st_ino;
		if (st->st_nlink > 1)
			f->ctx = link_ctx(s->dir, s->name, f->ctx);
		s->keyed = true;
		if (S_ISREG(st->st_mode) && lower_meta(s, d, nm)) {
			/* A lower metacopy file: its metadata is shown, its
			 * data found below (a data-only layer's, mostly). */
			f->ln = pfs_lnode_new(fs->layers);
			if (!f->ln)
				return -ENOMEM;
			f->ln->top = f->ln->bottom = (uint8_t)i;
			f->ln->fd[i] = fd;
			ret = follow(s, i, d, nm, true);
			if (ret < 0)
				return ret;
			s->data = true;
			return GO_ON;
		}
	}
	return i > 0 && !s->merging ? STOP : GO_ON;
}

/* An object under the one shown, in layer i: a directory merges into a
 * directory shown until one is opaque. */
static int found_below(struct finding *s, int i, int d, const char *nm, const struct stat *st)
{
	struct pfs_lfound *f = s->f;
	int fd, ret;

	f->below = true;
	if (s->data) {
		if (!S_ISREG(st->st_mode))
			return STOP; /* no data: the lookup fails (EIO) */
		if (s->refuse)
			return -EPERM; /* as the kernel's "refusing to follow metacopy origin" */
		if (lower_meta(s, d, nm)) { /* a metacopy again: on by its redirect */
			ret = follow(s, i, d, nm, true);
			return ret < 0 ? ret : GO_ON;
		}
		fd = pfs_layer_open_at(s->fs, d, nm, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return fd;
		f->ln->fd[i] = fd;
		f->ln->bottom = (uint8_t)i;
		f->ln->meta = true;
		s->data = false;
		return STOP;
	}
	if (!s->merging || !S_ISDIR(st->st_mode)) {
		s->merging = false;
		return STOP;
	}
	fd = pfs_layer_open_at(s->fs, d, nm, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fd;
	f->ln->fd[i] = fd;
	f->ln->bottom = (uint8_t)i;
	if (!s->keyed) { /* a merged directory is known by its highest lower */
		f->kdev = st->st_dev;
		f->kino = st->st_ino;
		s->keyed = true;
	}
	s->merging = !pfs_layer_is_opaque(s->fs, d, nm, fd);
	if (s->merging && (ret = follow(s, i, d, nm, false)) < 0)
		return ret;
	s->merging = s->merging && i < s->bottom;
	return s->merging ? GO_ON : STOP;
}

/* Look at layer i: GO_ON, STOP, or -errno. */
static int find_in_layer(struct finding *s, int i)
{
	const char *nm;
	int d, ret;
	struct stat st;

	if (s->redir && s->redir[0] == '/') {
		ret = walk_abs(s, i, &d, &nm);
		if (ret != GO_ON)
			return ret;
	} else {
		d = layer_dir(s, i, &nm);
	}

	if (d >= 0 && (ret = pfs_layer_lstat_at(s->fs, d, nm, &st)) < 0) {
		if (ret != -ENOENT && ret != -ENOTDIR)
			return ret;
		if (pfs_ovl_has_wh_file(s->fs->store, d, nm)) {
			if (i == 0)
				s->f->upper_wh = s->f->upper_wh_file = true;
			return STOP;
		}
		d = -1;
	}
	if (d < 0)
		return found_nothing(s, i);
	if (pfs_ovl_is_whiteout(&st)) {
		if (i == 0)
			s->f->upper_wh = true;
		return STOP;
	}
	if (s->f->layer < 0)
		return found_top(s, i, d, nm, &st);
	return found_below(s, i, d, nm, &st);
}

int pfs_layer_find_in(struct pfs_fs *fs, const struct pfs_ldir *dir, const char *name,
		      struct pfs_lfound *f)
{
	struct finding s = {.fs = fs, .dir = dir, .name = name, .f = f,
			    .src = {.pl = {.own_fd = -1}}, .walkfd = -1};
	const struct pfs_lnode *pl = dir->ln;
	bool hidden = false;
	int ret = 0;

	memset(f, 0, sizeof(*f));
	f->layer = -1;
	f->fd = f->sdir = -1;
	if (!pl)
		return -ENOENT;
	if (strncmp(name, PFS_OVL_WH_PREFIX, 4) == 0)
		return -ENOENT; /* whiteouts and markers are never names of the view */
	if (dir->map) {
		ret = pfs_lmap_source(fs, dir, name, &s.src);
		if (ret < 0)
			goto err;
		f->ctx = s.src.pl.ctx;
		if (s.src.hidden)
			hidden = true; /* the user's own entries still show */
	}
	s.bottom = pl->bottom;
	for (int i = pl->top; i <= (hidden ? 0 : s.bottom) && ret == GO_ON; i++) {
		ret = find_in_layer(&s, i);
		if (ret == GO_ON && s.last)
			ret = STOP;
	}
	walk_done(&s);
	if (ret >= 0 && s.data && !s.refuse)
		ret = data_only(&s);
	free(s.redir);
	if (ret < 0)
		goto err;
	if (s.redirected)
		f->below = name_below(&s);
	if (f->layer >= 0 && !s.keyed) {
		f->kdev = f->st.st_dev;
		f->kino = f->st.st_ino;
	}
	if (dir->map)
		pfs_lmap_source_put(&s.src);
	/* Nothing shows: EXDEV where the table's way out of SOURCE is why. */
	return f->layer >= 0 ? 0 : s.unreach ? s.unreach : -ENOENT;
err:
	if (dir->map)
		pfs_lmap_source_put(&s.src);
	pfs_lfound_put(fs, f);
	f->layer = -1;
	return ret;
}
