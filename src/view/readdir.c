/* readdir: listings. A directory handle wraps a backing DIR stream; the
 * kernel's offsets are the backing filesystem's own d_off cookies, so an
 * entry that is neither added nor removed during a listing is returned
 * exactly once, as POSIX asks.
 *
 * A directory the mapping table puts names in (or hides names from) is
 * listed from a snapshot instead, taken when the listing starts, against
 * one generation of the table: the backing names minus those the table
 * claims, then the table's own. Offsets are positions in the snapshot. */
#include "view/view.h"
#include "view/selfmnt.h"
#include "layers/layer.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct snap_ent {
	char *name;
	ino_t ino;
	unsigned char type;
};

struct pfs_dirh {
	struct pfs_dirh *prev, *next; /* fs->dirs, under fs->dirs_lock */
	pthread_mutex_t lock;
	DIR *dp;               /* NULL for a synthetic directory */
	off_t offset;          /* where dp stands */
	struct dirent *entry;  /* read but not yet returned */
	bool mapped;           /* listed from a snapshot */
	bool taken;
	struct snap_ent *snap;
	size_t nsnap, asnap;
	struct pfs_node *pinned; /* a layered directory keeps its fds open
				  * while listed: a removed one cannot be
				  * reopened for a rewind */
};

static struct pfs_dirh *dirh_of(struct fuse_file_info *fi)
{
	return (struct pfs_dirh *)(uintptr_t)fi->fh;
}

static int count_child(const char *name, bool hidden, const struct pfs_map_entry *e, void *arg)
{
	(void)name;
	(void)hidden;
	(void)e;
	++*(size_t *)arg;
	return 1; /* one is enough to know */
}

/* Does the table put names in (or hide names from) n? */
static bool is_mapped(struct pfs_fs *fs, struct pfs_node *n)
{
	struct pfs_map *m = pfs_view_map(fs);
	size_t count = 0;
	char *vp;

	if (!m)
		return false;
	vp = pfs_node_path(fs, n, NULL);
	if (vp) {
		struct pfs_map_res r;

		pfs_map_resolve(m, vp, &r);
		if (r.hidden)
			count = 1; /* an open handle on a hidden directory lists nothing */
		else
			pfs_map_children(m, vp, count_child, &count);
	}
	free(vp);
	pfs_map_unref(m);
	return count > 0;
}

int pfs_view_opendir(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	struct pfs_dirh *d = calloc(1, sizeof(*d));
	int fd, ret;

	if (!d)
		return -ENOMEM;
	/* A layered directory is the merge of several: always a snapshot. */
	d->mapped = fs->layers || pfs_node_synthetic(n) || is_mapped(fs, n);
	/* A layered directory keeps a stream on its top part too: fsyncdir
	 * makes that one durable (the listing itself is a merge). */
	if (!pfs_node_synthetic(n)) {
		fd = pfs_view_open_dir(fs, n);
		if (fd < 0 && n == fs->root && !fs->layers && pfs_view_root_keyed(fs)) {
			/* The target of the key "/" cannot be opened: that entry
			 * fails alone, the table's other names still show. */
			d->mapped = true;
			goto listed;
		}
		if (fd < 0) {
			ret = fd;
			goto err;
		}
		d->dp = fdopendir(fd);
		if (!d->dp) {
			ret = -errno;
			close(fd);
			goto err;
		}
	}
listed:
	if (fs->layers && n->ln) {
		pfs_node_pin(fs, n); /* open now: pfs_view_open_dir used them */
		d->pinned = n;
	}
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_lock(&fs->dirs_lock);
	d->next = fs->dirs;
	if (d->next)
		d->next->prev = d;
	fs->dirs = d;
	pthread_mutex_unlock(&fs->dirs_lock);
	fi->fh = (uint64_t)(uintptr_t)d;
	/* Every change made through the mount resets the kernel's copy of a
	 * listing; only a volatile source (changed behind us) must not keep it. */
	fi->cache_readdir = fs->keep_dir_cache;
	fi->keep_cache = fs->keep_dir_cache;
	return 0;
err:
	free(d);
	return ret;
}

static bool is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static void snap_clear(struct pfs_dirh *d)
{
	for (size_t i = 0; i < d->nsnap; i++)
		free(d->snap[i].name);
	d->nsnap = 0;
}

static int snap_add(struct pfs_dirh *d, const char *name, ino_t ino, unsigned char type)
{
	if (d->nsnap == d->asnap) {
		size_t na = d->asnap ? d->asnap * 2 : 64;
		struct snap_ent *ns = realloc(d->snap, na * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		d->snap = ns;
		d->asnap = na;
	}
	d->snap[d->nsnap].name = strdup(name);
	if (!d->snap[d->nsnap].name)
		return -ENOMEM;
	d->snap[d->nsnap].ino = ino;
	d->snap[d->nsnap].type = type;
	d->nsnap++;
	return 0;
}

struct snap_ctx {
	struct pfs_fs *fs;
	struct pfs_node *dir;
	struct pfs_dirh *d;
	char **claimed; /* names the table places here, strcmp order */
	size_t nclaimed, aclaimed;
	int err;
};

static int claim(const char *name, bool hidden, const struct pfs_map_entry *e, void *arg)
{
	struct snap_ctx *c = arg;

	(void)hidden;
	(void)e;
	if (c->nclaimed == c->aclaimed) {
		size_t na = c->aclaimed ? c->aclaimed * 2 : 16;
		char **nc = realloc(c->claimed, na * sizeof(*nc));

		if (!nc)
			return -ENOMEM;
		c->claimed = nc;
		c->aclaimed = na;
	}
	c->claimed[c->nclaimed] = strdup(name);
	if (!c->claimed[c->nclaimed])
		return -ENOMEM;
	c->nclaimed++;
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A name the table places: listed as what a lookup would find there. One
 * whose target cannot be resolved (EXDEV: it leads out of SOURCE) is left
 * out, as a missing one is; only a lookup of that name fails. */
static int add_mapped(struct snap_ctx *c, const char *name)
{
	struct pfs_place pl;
	struct stat st;
	int ret = pfs_place_get(c->fs, c->dir, name, &pl);

	if (ret < 0) {
		if (!pfs_err_resource(ret))
			ret = 0;
		goto out;
	}
	if (pl.res.hidden)
		goto out;
	if (pl.dirfd >= 0 &&
	    pfs_selfmnt_fstatat(c->fs, pl.dirfd, pl.name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		ret = snap_add(c->d, name, pfs_view_ino(c->fs, pl.ctx, &st), IFTODT(st.st_mode));
	} else if (pl.res.parent_of_keys) {
		ret = snap_add(c->d, name, pfs_view_synthetic_ino(pl.vpath), DT_DIR);
	} /* else: the target is missing; a lookup would say ENOENT */
out:
	pfs_place_put(&pl);
	return ret;
}

static int snap_take_map(struct pfs_fs *fs, struct pfs_node *n, struct pfs_dirh *d);

static int snap_layer_cb(void *arg, const char *name, ino_t ino, unsigned char type)
{
	return snap_add(arg, name, ino, type);
}

/* Take the listing of a mapped directory against one table generation. */
static int snap_take(struct pfs_fs *fs, struct pfs_node *n, struct pfs_dirh *d)
{
	if (fs->layers) {
		snap_clear(d);
		return pfs_layer_list(fs, n, snap_layer_cb, d);
	}
	return snap_take_map(fs, n, d);
}

static int snap_take_map(struct pfs_fs *fs, struct pfs_node *n, struct pfs_dirh *d)
{
	struct snap_ctx c = {.fs = fs, .dir = n, .d = d};
	struct pfs_map *m = pfs_view_map(fs);
	char *vp = pfs_node_path(fs, n, NULL);
	bool hidden = false;
	int ret = 0;

	snap_clear(d);
	if (!vp) {
		ret = -ENOMEM;
		goto out;
	}
	if (m) {
		struct pfs_map_res r;

		pfs_map_resolve(m, vp, &r);
		hidden = r.hidden;
		if (!hidden)
			ret = pfs_map_children(m, vp, claim, &c);
	}
	if (ret < 0)
		goto out;
	if (c.nclaimed) /* no NULL base, even for none */
		qsort(c.claimed, c.nclaimed, sizeof(*c.claimed), cmp_name);
	if (d->dp && !hidden) {
		struct dirent *de;

		rewinddir(d->dp);
		for (;;) {
			const char *name;

			/* errno is readdir's only when reset right before it: the
			 * loop's other calls may leave theirs (a sanitizer's
			 * report left ENOTTY from isatty). */
			errno = 0;
			de = readdir(d->dp);
			if (!de) {
				ret = -errno;
				if (ret < 0)
					goto out;
				break;
			}
			name = de->d_name;
			if (c.nclaimed &&
			    bsearch(&name, c.claimed, c.nclaimed, sizeof(*c.claimed), cmp_name))
				continue;
			ret = snap_add(d, name, de->d_ino, de->d_type);
			if (ret < 0)
				goto out;
		}
	} else {
		ret = snap_add(d, ".", n->ino, DT_DIR);
		if (ret == 0)
			ret = snap_add(d, "..", 1, DT_DIR); /* glibc skips d_ino 0 */
		if (ret < 0)
			goto out;
	}
	for (size_t i = 0; i < c.nclaimed && ret == 0; i++)
		ret = add_mapped(&c, c.claimed[i]);
out:
	for (size_t i = 0; i < c.nclaimed; i++)
		free(c.claimed[i]);
	free(c.claimed);
	free(vp);
	pfs_map_unref(m);
	return ret;
}

static ssize_t readdir_snap(struct pfs_fs *fs, fuse_req_t req, struct pfs_node *n, char *buf,
			    size_t size, off_t off, struct pfs_dirh *d, bool plus)
{
	size_t used = 0;
	int err = 0;

	if (off == 0 || !d->taken) {
		err = -snap_take(fs, n, d);
		if (err)
			return -err;
		d->taken = true;
	}
	for (size_t i = (size_t)off; i < d->nsnap; i++) {
		struct snap_ent *se = &d->snap[i];
		struct fuse_entry_param e;
		size_t want;

		if (plus && !is_dot(se->name)) {
			int ret = pfs_view_lookup(fs, n, se->name, &e);

			if (ret == -ENOENT)
				continue; /* gone since the snapshot */
			if (ret < 0) {
				err = -ret;
				break;
			}
		} else {
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = se->ino;
			e.attr.st_mode = (mode_t)se->type << 12;
		}
		want = plus ? fuse_add_direntry_plus(req, buf + used, size - used, se->name, &e,
						     (off_t)i + 1)
			    : fuse_add_direntry(req, buf + used, size - used, se->name, &e.attr,
						(off_t)i + 1);
		if (want > size - used) {
			if (plus && e.ino)
				pfs_node_forget(fs, pfs_node_of(fs, e.ino), 1);
			break;
		}
		used += want;
	}
	if (err && used == 0)
		return -err;
	return (ssize_t)used;
}

static ssize_t read_handle(struct pfs_fs *fs, fuse_req_t req, struct pfs_node *n, char *buf,
			   size_t size, off_t off, struct pfs_dirh *d, bool plus);

/* No handle (stateless_dirs): a stream of its own for this one READDIR,
 * placed at the kernel's offset, a cookie of the backing filesystem. */
static ssize_t read_stateless(struct pfs_fs *fs, fuse_req_t req, struct pfs_node *n, char *buf,
			      size_t size, off_t off, bool plus)
{
	struct pfs_dirh d = {.offset = 0};
	int fd = pfs_view_open_dir(fs, n);
	ssize_t ret;

	if (fd < 0)
		return fd == -ESTALE ? -ENOENT : fd; /* removed: as a removed dir's */
	d.dp = fdopendir(fd);
	if (!d.dp) {
		ret = -errno;
		close(fd);
		return ret;
	}
	pthread_mutex_init(&d.lock, NULL);
	ret = read_handle(fs, req, n, buf, size, off, &d, plus);
	pthread_mutex_destroy(&d.lock);
	closedir(d.dp);
	return ret;
}

ssize_t pfs_view_readdir(struct pfs_fs *fs, fuse_req_t req, struct pfs_node *n, char *buf,
			 size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
	if (!fi->fh)
		return read_stateless(fs, req, n, buf, size, off, plus);
	return read_handle(fs, req, n, buf, size, off, dirh_of(fi), plus);
}

static ssize_t read_handle(struct pfs_fs *fs, fuse_req_t req, struct pfs_node *n, char *buf,
			   size_t size, off_t off, struct pfs_dirh *d, bool plus)
{
	size_t used = 0;
	int err = 0;

	pthread_mutex_lock(&d->lock);
	if (d->mapped) {
		ssize_t r = readdir_snap(fs, req, n, buf, size, off, d, plus);

		pthread_mutex_unlock(&d->lock);
		return r;
	}
	if (off != d->offset) {
		seekdir(d->dp, off);
		d->entry = NULL;
		d->offset = off;
	}
	for (;;) {
		struct fuse_entry_param e;
		size_t want;
		off_t next;

		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		next = d->entry->d_off;
		if (plus) {
			if (is_dot(d->entry->d_name)) {
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = d->entry->d_ino;
				e.attr.st_mode = (mode_t)d->entry->d_type << 12;
			} else {
				int ret = pfs_view_lookup(fs, n, d->entry->d_name, &e);

				if (ret == -ENOENT) { /* removed since readdir saw it */
					d->entry = NULL;
					d->offset = next;
					continue;
				}
				if (ret < 0) {
					err = -ret;
					break;
				}
			}
			want = fuse_add_direntry_plus(req, buf + used, size - used,
						      d->entry->d_name, &e, next);
			if (want > size - used) {
				if (e.ino)
					pfs_node_forget(fs, pfs_node_of(fs, e.ino), 1);
				break;
			}
		} else {
			struct stat st = {
				.st_ino = d->entry->d_ino,
				.st_mode = (mode_t)d->entry->d_type << 12,
			};

			want = fuse_add_direntry(req, buf + used, size - used, d->entry->d_name,
						 &st, next);
			if (want > size - used)
				break;
		}
		used += want;
		d->entry = NULL;
		d->offset = next;
	}
	pthread_mutex_unlock(&d->lock);
	/* An error after some entries: return those; the next call reports it. */
	if (err && used == 0)
		return -err;
	return (ssize_t)used;
}

static void free_dirh(struct pfs_dirh *d)
{
	snap_clear(d);
	free(d->snap);
	if (d->dp)
		closedir(d->dp);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

int pfs_view_releasedir(struct pfs_fs *fs, struct fuse_file_info *fi)
{
	struct pfs_dirh *d = dirh_of(fi);

	pthread_mutex_lock(&fs->dirs_lock);
	if (d->prev)
		d->prev->next = d->next;
	else
		fs->dirs = d->next;
	if (d->next)
		d->next->prev = d->prev;
	pthread_mutex_unlock(&fs->dirs_lock);
	if (d->pinned)
		pfs_node_unpin(fs, d->pinned);
	free_dirh(d);
	return 0;
}

void pfs_view_close_dirs(struct pfs_fs *fs)
{
	struct pfs_dirh *d, *next;

	pthread_mutex_lock(&fs->dirs_lock);
	d = fs->dirs;
	fs->dirs = NULL;
	pthread_mutex_unlock(&fs->dirs_lock);
	for (; d; d = next) {
		next = d->next;
		free_dirh(d);
	}
}

int pfs_view_fsyncdir(struct pfs_fs *fs, struct pfs_node *n, int datasync,
		      struct fuse_file_info *fi)
{
	struct pfs_dirh *d = dirh_of(fi);

	if (!d) { /* stateless_dirs: no handle */
		int ret, fd = pfs_view_open_dir(fs, n);

		if (fd < 0)
			return fd;
		ret = pfs_st_sync(fs->store, fd, datasync != 0);
		close(fd);
		return ret;
	}
	if (!d->dp)
		return 0; /* synthetic: nothing to make durable */
	return pfs_st_sync(fs->store, dirfd(d->dp), datasync != 0);
}
