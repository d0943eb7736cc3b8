/* layer_list: the names a merged directory shows. Each layer's part is
 * read whole; a name shows from the highest layer that has it, unless a
 * whiteout or marker hides it there or an opaque directory stops the
 * merge above it. With a mapping table, the names the table decides are
 * looked up one by one instead. */
#include "layers/layer.h"
#include "layers/layer_int.h"
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
#include <unistd.h>

#include "layers/layermap.h"
#include "layers/ovlfmt.h"
#include "store/walk.h"

static bool is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

struct lvl {
	struct pfs_names names;
	int fd; /* readable fd on the directory */
};

/* Does layer level lv (a directory in a higher layer) shadow name? */
static bool shadows(const struct lvl *lv, const char *name)
{
	char wh[NAME_MAX + 8];

	if (pfs_names_find(&lv->names, name))
		return true;
	if (strlen(name) > NAME_MAX - 4)
		return false;
	snprintf(wh, sizeof(wh), PFS_OVL_WH_PREFIX "%s", name);
	return pfs_names_find(&lv->names, wh) != NULL;
}

/* The levels of directory d: each layer's part, read whole. With a table,
 * SOURCE's part of the root is the directory a key "/" names, and a hidden
 * directory shows its upper part only. */
static int read_levels(struct pfs_fs *fs, const struct pfs_ldir *d, bool hidden, struct lvl *lv)
{
	const struct pfs_lnode *ln = d->ln;

	for (size_t i = 0; i < fs->layers->n; i++) {
		lv[i].fd = -1;
		memset(&lv[i].names, 0, sizeof(lv[i].names));
	}
	for (int i = ln->top; i <= (hidden ? 0 : ln->bottom); i++) {
		int fd = __atomic_load_n(&ln->fd[i], __ATOMIC_ACQUIRE), ret;

		if (i == 1 && ln->syn)
			continue; /* a synthetic directory: the table's names only */
		if (i == 1 && d->root && d->map) {
			lv[i].fd = pfs_view_root_target(fs, O_RDONLY | O_DIRECTORY);
			/* A key "/" whose target cannot be opened shows nothing
			 * of SOURCE (not SOURCE's own root); it fails alone. */
			if (lv[i].fd < 0 && pfs_view_root_keyed(fs))
				continue;
			if (lv[i].fd < 0 && lv[i].fd != -ENOENT)
				return lv[i].fd;
		}
		if (lv[i].fd < 0 && fd >= 0) {
			lv[i].fd = pfs_st_openat(fs->store, fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC,
						 0);
			if (lv[i].fd < 0)
				return lv[i].fd;
		}
		if (lv[i].fd < 0)
			continue;
		ret = pfs_names_read(lv[i].fd, &lv[i].names);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void free_levels(struct pfs_fs *fs, struct lvl *lv)
{
	for (size_t i = 0; i < fs->layers->n; i++) {
		if (lv[i].fd >= 0)
			close(lv[i].fd);
		pfs_names_free(&lv[i].names);
	}
}

/* Is the entry e of level i visible in the merge (not a marker, not a
 * whiteout, not shadowed by a higher level)? Sets *st when it had to stat. */
static bool visible(struct pfs_store *s, const struct pfs_lnode *ln, struct lvl *lv, int i,
		    const struct pfs_name *e)
{
	struct stat st;

	if (strncmp(e->name, PFS_OVL_WH_PREFIX, 4) == 0)
		return false; /* a whiteout or the opaque marker, never shown */
	if ((e->type == DT_CHR || e->type == DT_UNKNOWN) &&
	    pfs_st_stat(s, lv[i].fd, e->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    pfs_ovl_is_whiteout(&st))
		return false;
	for (int j = ln->top; j < i; j++)
		if (lv[j].fd >= 0 && shadows(&lv[j], e->name))
			return false;
	return true;
}

/* Each name directory d shows: cb(arg, name, ino, type); with exact
 * false, upper names are not looked up (ino and type are the entry's). The
 * names the table decides are looked up one by one, after the others. */
static int list_names(struct pfs_fs *fs, const struct pfs_ldir *d, bool exact,
		      pfs_layer_list_cb *cb, void *arg)
{
	const struct pfs_lnode *ln = d->ln;
	struct pfs_lclaims claims = {0};
	struct lvl *lv = calloc(fs->layers->n, sizeof(*lv));
	int ret = 0;

	if (!lv)
		return -ENOMEM;
	if (d->map)
		ret = pfs_lmap_claims(d, &claims);
	if (ret == 0)
		ret = read_levels(fs, d, claims.hidden, lv);
	for (int i = ln->top; i <= ln->bottom && ret == 0; i++) {
		for (size_t k = 0; lv[i].fd >= 0 && k < lv[i].names.n && ret == 0; k++) {
			const struct pfs_name *e = &lv[i].names.v[k];
			struct pfs_lfound f;
			ino_t ino = 0;
			unsigned char type = e->type;

			if (!visible(fs->store, ln, lv, i, e) || pfs_lmap_claimed(&claims, e->name))
				continue;
			/* Upper objects may carry another number (copied up, or a
			 * directory merged with a lower): ask as a lookup would. A
			 * lower entry shown is the highest of its name, which is
			 * what a lookup keys it by: its own number. */
			if (i == 0 && exact) {
				int r = pfs_layer_find_in(fs, d, e->name, &f);

				if (r == -ENOENT)
					continue;
				if (r < 0) {
					ret = r;
					break;
				}
				ino = pfs_layer_ino(fs, f.kdev, f.kino);
				type = IFTODT(f.st.st_mode);
				pfs_lfound_put(fs, &f);
			} else if (exact) {
				struct stat st;

				if (pfs_layer_lstat_at(fs, lv[i].fd, e->name, &st) < 0)
					continue;
				ino = pfs_layer_ino(fs, st.st_dev, st.st_ino);
				type = IFTODT(st.st_mode);
			}
			ret = cb(arg, e->name, ino, type);
		}
	}
	for (size_t k = 0; k < claims.n && ret == 0; k++) {
		struct pfs_lfound f;
		int r = pfs_layer_find_in(fs, d, claims.v[k], &f);

		/* A name the table places fails alone: its neighbours list. */
		if (r < 0 && !pfs_err_resource(r))
			continue;
		if (r < 0) {
			ret = r;
			break;
		}
		ret = cb(arg, claims.v[k], pfs_layer_ino(fs, f.kdev, f.kino), IFTODT(f.st.st_mode));
		pfs_lfound_put(fs, &f);
	}
	pfs_lmap_claims_free(&claims);
	free_levels(fs, lv);
	free(lv);
	return ret;
}

int pfs_layer_list(struct pfs_fs *fs, struct pfs_node *n, pfs_layer_list_cb *cb, void *arg)
{
	struct pfs_ldir d;
	ino_t up = 1; /* the root's parent is outside: glibc skips d_ino 0 */
	int ret;

	if (!n->ln)
		return -ESTALE;
	ret = pfs_layer_ldir_get(fs, n, &d);
	if (ret == 0)
		ret = cb(arg, ".", pfs_layer_ino(fs, n->dev, n->ino), DT_DIR);
	if (ret == 0) {
		pthread_rwlock_rdlock(&fs->names_lock);
		if (n != fs->root && n->alias)
			up = pfs_layer_ino(fs, n->alias->parent->dev, n->alias->parent->ino);
		pthread_rwlock_unlock(&fs->names_lock);
		ret = cb(arg, "..", up, DT_DIR);
	}
	if (ret == 0)
		ret = list_names(fs, &d, true, cb, arg);
	pfs_layer_ldir_put(&d);
	return ret;
}

static int any_name(void *arg, const char *name, ino_t ino, unsigned char type)
{
	(void)arg;
	(void)ino;
	(void)type;
	return is_dot(name) ? 0 : 1;
}

int pfs_layer_dir_nonempty(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
			   const struct pfs_lfound *f)
{
	struct pfs_ldir d;
	int ret = pfs_layer_ldir_get(fs, parent, &d);

	if (ret == 0 && d.vpath) { /* the directory's own path */
		char *vp = pfs_path_join(d.vpath, name);

		free(d.vpath);
		d.vpath = vp;
		ret = vp ? 0 : -ENOMEM;
	}
	d.ln = f->ln;
	d.ctx = f->ctx;
	d.dev = f->kdev;
	d.ino = f->kino;
	d.root = false;
	if (ret == 0)
		ret = list_names(fs, &d, false, any_name, NULL);
	pfs_layer_ldir_put(&d);
	return ret;
}
