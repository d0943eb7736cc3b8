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
#include "view/ns.h"
#include "util/util.h"
#include "view/readdir_merged.h"

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

int pfs_view_opendir(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	struct pfs_dirh *d = calloc(1, sizeof(*d));
	bool bare;
	int fd, ret;

	if (!d)
		return -ENOMEM;
	/* A layered directory is the merge of several: always a snapshot. */
	d->mapped = fs->ns->snapshot(fs, n);
	/* A layered directory keeps a stream on its top part too: fsyncdir
	 * makes that one durable (the listing itself is a merge). */
	if (!pfs_node_synthetic(n)) {
		fd = fs->ns->open_dir(fs, n, &bare);
		if (fd < 0 && bare) {
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
	if (n->ln) { /* layered: the node's fds in each layer */
		pfs_node_pin(fs, n); /* open now: open_dir used them */
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

static int snap_cb(void *arg, const char *name, ino_t ino, unsigned char type)
{
	return snap_add(arg, name, ino, type);
}

/* Take the listing of a mapped (or merged) directory, as the namespace
 * lists it. */
static int snap_take(struct pfs_fs *fs, struct pfs_node *n, struct pfs_dirh *d)
{
	snap_clear(d);
	return fs->ns->list(fs, n, d->dp, snap_cb, d);
}

/* A readdirplus entry without attributes (node id 0): the kernel lists
 * the name and looks it up on its own, as for a name whose lookup failed
 * (an invalid overlay.redirect: listed, its stat fails, as overlayfs). */
static void no_attrs(struct fuse_entry_param *e, ino_t ino, unsigned char type)
{
	memset(e, 0, sizeof(*e));
	e->attr.st_ino = ino;
	e->attr.st_mode = (mode_t)type << 12;
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
			if (ret < 0 && pfs_err_resource(ret)) {
				err = -ret;
				break;
			}
			if (ret < 0) /* the name fails alone (its lookup says why) */
				no_attrs(&e, se->ino, se->type);
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
	/* a merge, or a listing the namespace makes (.history's): no backing
	 * stream's cookies to resume at */
	if (!fi->fh && (n->ln || fs->ns->snapshot(fs, n)))
		return pfs_readdir_merged(fs, req, n, buf, size, off, plus);
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
				if (ret < 0 && pfs_err_resource(ret)) {
					err = -ret;
					break;
				}
				if (ret < 0) /* the name fails alone, as above */
					no_attrs(&e, d->entry->d_ino, d->entry->d_type);
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

	pfs_readdir_merged_free(fs);
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
