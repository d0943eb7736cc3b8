/* cache_load: filling the cache's directories and loading its files from
 * the mirror, the first time they are used. */
#include "cache/cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

unsigned pfs_cache_bucket(uint64_t k)
{
	return (unsigned)((k * 0x9E3779B97F4A7C15ull) >> 52) & (NBUCKETS - 1);
}

/* Under c->lock. */
struct ent *pfs_cache_ent(struct pfs_cache *c, ino_t ino, bool make)
{
	struct ent **p = &c->tab[pfs_cache_bucket(ino)];

	while (*p && (*p)->ino != ino)
		p = &(*p)->next;
	if (!*p && make && (*p = calloc(1, sizeof(**p))))
		(*p)->ino = ino;
	return *p;
}

unsigned pfs_cache_state(struct pfs_cache *c, ino_t ino)
{
	struct ent *e;
	unsigned s;

	pthread_mutex_lock(&c->lock);
	e = pfs_cache_ent(c, ino, false);
	s = e ? e->state : 0;
	pthread_mutex_unlock(&c->lock);
	return s;
}

void pfs_cache_state_set(struct pfs_cache *c, ino_t ino, unsigned set, unsigned clear)
{
	struct ent *e;

	pthread_mutex_lock(&c->lock);
	e = pfs_cache_ent(c, ino, true);
	if (e)
		e->state = (e->state & ~clear) | set;
	pthread_mutex_unlock(&c->lock);
}

/* The path of fd (and name in it, if not NULL or "") relative to the
 * cache's root, as the mirror knows it: "" for the root itself. */
int pfs_cache_path(struct pfs_cache *c, int fd, const char *name, char *buf, size_t len)
{
	char proc[32], p[PATH_MAX], live[PATH_MAX];
	const char *rel;
	struct stat st;
	ssize_t n;

	/* The view reaches a node's object as /proc/self/fd/N (a reopen of
	 * its O_PATH fd): that is the object of fd N. Anything else outside
	 * the cache has no path on the mirror. */
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_dev != c->dev) {
		if (!name || !*name || strspn(name, "0123456789") != strlen(name))
			return -EXDEV;
		fd = atoi(name);
		name = NULL;
		/* ... if that object is the cache's: a --map target outside
		 * the mirror has an absolute path that would read as one. */
		if (fstat(fd, &st) < 0 || st.st_dev != c->dev)
			return -EXDEV;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, p, sizeof(p) - 1);
	if (n < 0)
		return -errno;
	p[n] = '\0';
	if (n > 10 && strcmp(p + n - 10, " (deleted)") == 0) {
		/* That name is gone; the file may live on under another. */
		if (pfs_cache_find_live(c, fd, live, sizeof(live)) < 0)
			return -ENOENT;
		rel = live;
	} else if (strncmp(p, c->rootpath, c->rootlen) != 0) {
		return -EXDEV;
	} else {
		rel = p + c->rootlen;
	}
	while (*rel == '/')
		rel++;
	n = name && *name ? snprintf(buf, len, "%s%s%s", rel, *rel ? "/" : "", name)
			  : snprintf(buf, len, "%s", rel);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Make name in dirfd (the cache) what the mirror's entry e of the
 * directory dir is: directories empty (filled later), files as stubs. */
int pfs_cache_fill_one(struct pfs_cache *c, int dirfd, const char *dir,
		       const struct pfs_mirror_ent *e)
{
	const struct stat *st = &e->st;
	const char *name = e->name;
	char path[PATH_MAX];
	struct stat have;
	int ret, fd;

	if (pfs_st_stat(c->in, dirfd, name, &have, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	if ((size_t)snprintf(path, sizeof(path), "%s%s%s", dir, *dir ? "/" : "", name) >=
	    sizeof(path))
		return -ENAMETOOLONG;
	switch (st->st_mode & S_IFMT) {
	case S_IFDIR:
		ret = pfs_st_mkdir(c->in, dirfd, name, 0700);
		break;
	case S_IFREG:
		ret = pfs_cache_link_fill(c, dirfd, name, st);
		if (ret != 0)
			return ret < 0 ? ret : 0; /* linked: its data and metadata are there */
		fd = pfs_st_openat(c->in, dirfd, name,
				   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return fd;
		ret = pfs_st_truncate(c->in, fd, st->st_size);
		if (ret == 0 && fstat(fd, &have) == 0)
			pfs_cache_state_set(c, have.st_ino, STUB, 0);
		close(fd);
		break;
	case S_IFLNK:
		ret = e->target ? pfs_st_symlink(c->in, e->target, dirfd, name) : -EIO;
		break;
	default:
		ret = pfs_st_mknod(c->in, dirfd, name, st->st_mode, st->st_rdev);
		break;
	}
	if (ret == 0)
		ret = c->mirror->ops->meta(c->mirror, path, st, c->in, pfs_ref_at(dirfd, name));
	if (ret == 0)
		pfs_cache_link_note(c, dirfd, name, st);
	if (ret == 0 && S_ISREG(st->st_mode))
		pfs_cache_file_listed(c, dirfd, name, st);
	return ret;
}

/* Fill the cache directory dirfd from the mirror, the first time only. */
int pfs_cache_fill(struct pfs_cache *c, int dirfd)
{
	char path[PATH_MAX];
	struct pfs_mirror_dir list = {0};
	struct stat st;
	int ret;

	if (fstat(dirfd, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode) || st.st_dev != c->dev ||
	    ((pfs_cache_state(c, st.st_ino) & FILLED) && !pfs_cache_dir_stale(c, st.st_ino)))
		return 0;
	pthread_mutex_lock(&c->load_lock);
	if (pfs_cache_state(c, st.st_ino) & FILLED) {
		/* Filled before: listed again once its listing is old. */
		ret = pfs_cache_dir_stale(c, st.st_ino) ? pfs_cache_refresh(c, dirfd, &st) : 0;
		goto out;
	}
	/* Renames not yet written back may have moved it (a directory
	 * renamed before it was ever filled): the mirror holds it at its
	 * cache path once they are. Nothing else can concern a directory
	 * never filled (a name in it is used only after the fill; one made
	 * in the cache is filled from birth), so an upload queued before
	 * holds up no listing unless a rename follows it. */
	if (c->q && pfs_wbq_last_move(c->q)) {
		ret = pfs_wbq_wait(c->q, pfs_wbq_last_move(c->q));
		if (ret < 0)
			goto out;
	}
	ret = pfs_cache_path(c, dirfd, NULL, path, sizeof(path));
	if (ret < 0)
		goto out;
	ret = c->mirror->ops->list(c->mirror, path, &list);
	if (ret == -ENOENT || ret == -ENOTDIR) {
		ret = 0; /* made in the cache: nothing on the mirror yet */
		goto done;
	}
	for (size_t i = 0; ret == 0 && i < list.n; i++)
		ret = pfs_cache_fill_one(c, dirfd, path, &list.v[i]);
	/* Making the names moved the directory's times: back to what they
	 * were, the mirror's (its parent's listing gave them; asking the
	 * mirror again would cost a remote one a request per directory). */
	if (ret == 0 && (c->mirror->ops->caps & PFS_MIRROR_LISTMETA)) {
		struct timespec ts[2] = {st.st_atim, st.st_mtim};

		pfs_st_utimes(c->in, pfs_ref_at(dirfd, "."), ts);
	} else if (ret == 0) {
		/* Its parent's listing had none of what the mirror keeps of
		 * it: one look of its own (an S3 directory's marker). */
		struct stat mst;

		if (c->mirror->ops->stat(c->mirror, path, &mst) == 0)
			c->mirror->ops->meta(c->mirror, path, &mst, c->in, pfs_ref_at(dirfd, "."));
	}
done:
	if (ret == 0) {
		pfs_cache_state_set(c, st.st_ino, FILLED, 0);
		pfs_cache_dir_listed(c, st.st_ino);
		pthread_mutex_lock(&c->lock);
		c->dirs_filled++;
		pthread_mutex_unlock(&c->lock);
	}
out:
	pthread_mutex_unlock(&c->load_lock);
	pfs_mirror_dir_free(&list);
	return ret;
}

/* A path of several names (a mapping's target, opened at once): every
 * directory on the way is filled before the name in it is looked up, a
 * relative symlink on the way followed (as the open will), up to the
 * kernel's 40. What cannot be walked is left for the call itself to fail
 * on. */
static int fill_path(struct pfs_cache *c, int dirfd, const char *path, int *links)
{
	char *buf = strdup(path), *p, *name, *rest;
	int fd = dirfd < 0 ? -EBADF : fcntl(dirfd, F_DUPFD_CLOEXEC, 0), ret = 0;

	if (!buf || fd < 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return buf ? 0 : -ENOMEM;
	}
	for (p = buf; ret == 0;) {
		char target[PATH_MAX], *joined;
		ssize_t n;
		int next;

		while (*p == '/')
			p++;
		name = p;
		p += strcspn(p, "/");
		if (!*p)
			break; /* the last name: its directory is filled below */
		*p++ = '\0';
		rest = p;
		ret = pfs_cache_fill(c, fd);
		if (ret < 0 || strcmp(name, ".") == 0)
			continue;
		next = pfs_st_openat(c->in, fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
				     0);
		if (next >= 0) {
			close(fd);
			fd = next;
			continue;
		}
		if (next != -ENOTDIR && next != -ELOOP)
			break; /* missing: the call fails as it would */
		n = pfs_st_readlink(c->in, fd, name, target, sizeof(target) - 1);
		if (n <= 0 || target[0] == '/' || ++*links > 40)
			break;
		target[n] = '\0';
		if (asprintf(&joined, "%s/%s", target, rest) < 0) {
			ret = -ENOMEM;
			break;
		}
		ret = fill_path(c, fd, joined, links);
		free(joined);
		goto out;
	}
	if (ret == 0 && name != buf)
		ret = pfs_cache_fill(c, fd);
out:
	close(fd);
	free(buf);
	return ret;
}

/* Fill the directory dirfd if a name in it is about to be used (each
 * directory on the way, for a name with slashes). */
int pfs_cache_fill_for(struct pfs_cache *c, int dirfd, const char *name)
{
	int links = 0, ret;

	if (!name || !*name || dirfd == AT_FDCWD) /* AT_FDCWD: not a cache path */
		return 0;
	ret = pfs_cache_fill(c, dirfd);
	if (ret < 0 || name[0] == '/' || !strchr(name, '/'))
		return ret;
	return fill_path(c, dirfd, name, &links);
}

/* Load the data of the stub file fd (any open descriptor of it). */
int pfs_cache_load(struct pfs_cache *c, int fd, const struct stat *st)
{
	char path[PATH_MAX], proc[32];
	struct stat mst;
	int wfd = -1, ret;

	pthread_mutex_lock(&c->load_lock);
	if (!(pfs_cache_state(c, st->st_ino) & STUB)) {
		ret = 0;
		goto out;
	}
	/* Renames and links not yet written back may have moved it or given
	 * it the name it is opened by: the mirror holds it at its cache path
	 * once they are. A stub has had no change of its data. */
	if (c->q && pfs_wbq_last_move(c->q)) {
		ret = pfs_wbq_wait(c->q, pfs_wbq_last_move(c->q));
		if (ret < 0)
			goto out;
	}
	ret = pfs_cache_path(c, fd, NULL, path, sizeof(path));
	if (ret < 0)
		goto out;
	snprintf(proc, sizeof(proc), "%d", fd);
	wfd = pfs_st_openat(c->in, AT_FDCWD, "/proc/self/fd", O_PATH | O_DIRECTORY, 0);
	if (wfd >= 0) {
		int dfd = wfd;

		wfd = pfs_st_openat(c->in, dfd, proc, O_WRONLY | O_CLOEXEC, 0);
		close(dfd);
	}
	if (wfd < 0) {
		ret = wfd;
		goto out;
	}
	ret = pfs_st_truncate(c->in, wfd, 0);
	/* Room for it (the stub has the size the mirror's listing gave, so
	 * a remote mirror is asked once, by the fetch itself): least
	 * recently used clean data goes. */
	if (ret == 0)
		pfs_evict_room_locked(c->ev, (uint64_t)st->st_size);
	/* (it remembers what it read as the file's base) */
	if (ret == 0)
		ret = c->mirror->ops->fetch(c->mirror, path, st->st_ino, wfd, &mst);
	if (ret == 0 && !(c->mirror->ops->caps & PFS_MIRROR_LISTMETA)) {
		/* The listing had no mode, owner or times: the data came with
		 * them. */
		ret = c->mirror->ops->meta(c->mirror, path, &mst, c->in, pfs_ref_fd(wfd));
	} else if (ret == 0) {
		struct timespec ts[2] = {mst.st_atim, mst.st_mtim};

		ret = pfs_st_utimes(c->in, pfs_ref_fd(wfd), ts);
	}
	if (ret == 0) {
		pfs_cache_state_set(c, st->st_ino, 0, STUB);
		pfs_cache_file_loaded(c, wfd);
		pthread_mutex_lock(&c->lock);
		c->files_loaded++;
		c->bytes_loaded += (uint64_t)mst.st_size;
		pthread_mutex_unlock(&c->lock);
	}
out:
	pthread_mutex_unlock(&c->load_lock);
	if (wfd >= 0)
		close(wfd);
	return ret;
}

/* Queue op; on no memory the change is in the cache but will not reach
 * the mirror: say so loudly rather than lose it quietly. */
