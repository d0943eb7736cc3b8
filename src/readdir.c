/* readdir: listings. A directory handle wraps a backing DIR stream; the
 * kernel's offsets are the backing filesystem's own d_off cookies, so an
 * entry that is neither added nor removed during a listing is returned
 * exactly once, as POSIX asks. */
#include "view.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pfs_dirh {
	struct pfs_dirh *prev, *next; /* fs->dirs, under fs->dirs_lock */
	pthread_mutex_t lock;
	DIR *dp;
	off_t offset;          /* where dp stands */
	struct dirent *entry;  /* read but not yet returned */
};

static struct pfs_dirh *dirh_of(struct fuse_file_info *fi)
{
	return (struct pfs_dirh *)(uintptr_t)fi->fh;
}

int pfs_view_opendir(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	struct pfs_dirh *d = calloc(1, sizeof(*d));
	int fd, ret;

	if (!d)
		return -ENOMEM;
	fd = pfs_store_reopen(fs, n, O_RDONLY | O_DIRECTORY);
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
	fi->cache_readdir = fs->keep_cache;
	fi->keep_cache = fs->keep_cache;
	return 0;
err:
	free(d);
	return ret;
}

static bool is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

ssize_t pfs_view_readdir(struct pfs_fs *fs, fuse_req_t req, struct pfs_node *n, char *buf,
			 size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
	struct pfs_dirh *d = dirh_of(fi);
	size_t used = 0;
	int err = 0;

	pthread_mutex_lock(&d->lock);
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

int pfs_view_fsyncdir(struct pfs_fs *fs, int datasync, struct fuse_file_info *fi)
{
	int fd = dirfd(dirh_of(fi)->dp);
	int ret = datasync ? fdatasync(fd) : fsync(fd);

	return ret < 0 ? -errno : 0;
}
