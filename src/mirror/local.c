#include "mirror/local_int.h"
#include "store/fcopy.h"
#include "store/meta.h"
#include "store/walk.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const struct pfs_mirror_ops local_ops;

int pfs_mirror_local_open(struct pfs_mirror **out, struct pfs_store *st, const char *path,
			  char *err, size_t errlen)
{
	struct pfs_mirror_local *m = calloc(1, sizeof(*m));
	int fd;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	fd = pfs_st_openat(st, AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open the mirror %s: %s", path, strerror(-fd));
		free(m);
		return fd;
	}
	m->path = strdup(path);
	if (!m->path) {
		close(fd);
		free(m);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	m->base.ops = &local_ops;
	m->st = st;
	m->root = fd;
	pthread_mutex_init(&m->lock, NULL);
	*out = &m->base;
	return 0;
}

static void local_close(struct pfs_mirror *mm)
{
	struct pfs_mirror_local *m = L(mm);

	pfs_basetab_clear(&m->bt);
	close(m->root);
	pthread_mutex_destroy(&m->lock);
	free(m->path);
	free(m);
}

static unsigned long local_conflicts(struct pfs_mirror *mm, char *buf, size_t len)
{
	struct pfs_mirror_local *m = L(mm);
	unsigned long n;

	pthread_mutex_lock(&m->lock);
	n = m->conflicts;
	if (buf && len)
		snprintf(buf, len, "%s", m->last_conflict);
	pthread_mutex_unlock(&m->lock);
	return n;
}

/* Open the directory that holds path's last component, beneath the root
 * and through no symlink; *name points into path. The descriptor is the
 * root itself (not to be closed) when path has one component. */
int pfs_local_parent_of(struct pfs_mirror_local *m, const char *path, char *buf, size_t len,
			int *dirfd, const char **name)
{
	const char *slash = strrchr(path, '/');
	struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
					  RESOLVE_NO_MAGICLINKS};
	int fd;

	if (!slash) {
		*dirfd = m->root;
		*name = path;
		return 0;
	}
	if ((size_t)(slash - path) >= len)
		return -ENAMETOOLONG;
	memcpy(buf, path, (size_t)(slash - path));
	buf[slash - path] = '\0';
	fd = pfs_st_open(m->st, m->root, buf, &how);
	if (fd < 0)
		return fd;
	*dirfd = fd;
	*name = slash + 1;
	return 0;
}

void pfs_local_put_parent(struct pfs_mirror_local *m, int dirfd)
{
	if (dirfd != m->root)
		close(dirfd);
}

void pfs_local_to_base(const struct stat *st, struct pfs_wb_base *b)
{
	b->valid = true;
	b->dev = st->st_dev;
	b->ino = st->st_ino;
	b->size = st->st_size;
	b->mtime = st->st_mtim;
	b->ctime = st->st_ctim;
}

void pfs_local_set_base(struct pfs_mirror_local *m, uint64_t key, const struct stat *st)
{
	struct base_ent *e;

	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_make(&m->bt, key, sizeof(*e));
	if (e)
		pfs_local_to_base(st, &e->base);
	pthread_mutex_unlock(&m->lock);
}

static int local_remember(struct pfs_mirror *mm, uint64_t key, const char *path)
{
	struct pfs_mirror_local *m = L(mm);
	char buf[PATH_MAX];
	const char *name;
	struct stat st;
	int dfd, ret;

	ret = pfs_local_parent_of(m, path, buf, sizeof(buf), &dfd, &name);
	if (ret < 0)
		return ret;
	ret = pfs_st_stat(m->st, dfd, name, &st, AT_SYMLINK_NOFOLLOW);
	pfs_local_put_parent(m, dfd);
	if (ret == 0)
		pfs_local_set_base(m, key, &st);
	return ret;
}

static void local_forget(struct pfs_mirror *mm, uint64_t key)
{
	struct pfs_mirror_local *m = L(mm);

	pthread_mutex_lock(&m->lock);
	pfs_basetab_forget(&m->bt, key);
	pthread_mutex_unlock(&m->lock);
}

static int local_flush(void *arg, char *err, size_t errlen)
{
	struct pfs_mirror_local *m = arg;

	if (syncfs(m->root) < 0) {
		int ret = -errno;

		snprintf(err, errlen, "syncing the mirror: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

/* Open path beneath the root, through no symlink ("" the root itself). */
static int local_open(struct pfs_mirror *mm, const char *path, int flags)
{
	struct pfs_mirror_local *m = L(mm);
	struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
					  RESOLVE_NO_MAGICLINKS};

	return pfs_st_open(m->st, m->root, *path ? path : ".", &how);
}

static int local_stat(struct pfs_mirror *mm, const char *path, struct stat *st)
{
	struct pfs_mirror_local *m = L(mm);
	char buf[PATH_MAX];
	const char *name;
	int dfd, ret;

	if (!*path)
		return fstat(m->root, st) < 0 ? -errno : 0;
	ret = pfs_local_parent_of(m, path, buf, sizeof(buf), &dfd, &name);
	if (ret < 0)
		return ret;
	ret = pfs_st_stat(m->st, dfd, name, st, AT_SYMLINK_NOFOLLOW);
	pfs_local_put_parent(m, dfd);
	return ret;
}

static int local_list(struct pfs_mirror *mm, const char *path, struct pfs_mirror_dir *out)
{
	struct pfs_mirror_local *m = L(mm);
	struct pfs_names names = {0};
	char target[PATH_MAX];
	int fd = local_open(mm, path, O_RDONLY | O_DIRECTORY), ret;

	if (fd < 0)
		return fd;
	ret = pfs_names_read(fd, &names);
	for (size_t i = 0; ret == 0 && i < names.n; i++) {
		const char *name = names.v[i].name;
		struct stat st;
		ssize_t n = 0;

		if (strncmp(name, ".prismfs-wb.", 12) == 0)
			continue; /* a write-back's temporary */
		ret = pfs_st_stat(m->st, fd, name, &st, AT_SYMLINK_NOFOLLOW);
		if (ret == -ENOENT) {
			ret = 0; /* gone since it was read */
			continue;
		}
		if (ret == 0 && S_ISLNK(st.st_mode)) {
			n = pfs_st_readlink(m->st, fd, name, target, sizeof(target) - 1);
			if (n < 0)
				ret = (int)n;
			else
				target[n] = '\0';
		}
		if (ret == 0)
			ret = pfs_mirror_dir_add(out, name, &st, S_ISLNK(st.st_mode) ? target : NULL);
	}
	pfs_names_free(&names);
	close(fd);
	return ret;
}

static int local_meta(struct pfs_mirror *mm, const char *path, const struct stat *st,
		      struct pfs_store *in, struct pfs_ref dst)
{
	struct pfs_mirror_local *m = L(mm);
	char buf[PATH_MAX];
	const char *name, *what;
	int dfd, ret;

	if (!*path)
		return pfs_meta_copy(in, dst, pfs_ref_fd(m->root), st, 0, &what);
	ret = pfs_local_parent_of(m, path, buf, sizeof(buf), &dfd, &name);
	if (ret < 0)
		return ret;
	ret = pfs_meta_copy(in, dst, pfs_ref_at(dfd, name), st, 0, &what);
	pfs_local_put_parent(m, dfd);
	return ret;
}

static int local_fetch(struct pfs_mirror *mm, const char *path, uint64_t key, int fd,
		       struct stat *st)
{
	struct stat after;
	int src = local_open(mm, path, O_RDONLY), ret;

	if (src < 0)
		return src;
	ret = fstat(src, st) < 0 ? -errno : 0;
	if (ret == 0)
		ret = pfs_fcopy_data(fd, src, st->st_size, NULL, NULL);
	/* The base is the file as it is once read (what remember would see). */
	if (ret == 0 && fstat(src, &after) == 0)
		pfs_local_set_base(L(mm), key, &after);
	else if (ret == 0)
		ret = -errno;
	close(src);
	return ret;
}

static int local_tmpfile(struct pfs_mirror *mm)
{
	struct pfs_mirror_local *m = L(mm);
	struct open_how how = {.flags = O_TMPFILE | O_RDWR | O_CLOEXEC, .mode = 0600};
	char name[64];
	int fd;

	/* Where O_TMPFILE is not supported: a write-back temporary's name
	 * (which a listing skips), removed at once. */
	fd = pfs_st_open(m->st, m->root, ".", &how);
	if (fd != -EOPNOTSUPP && fd != -EISDIR && fd != -EINVAL)
		return fd;
	snprintf(name, sizeof(name), ".prismfs-wb.spill.%d.%lu", (int)getpid(),
		 (unsigned long)__atomic_add_fetch(&m->spillseq, 1, __ATOMIC_RELAXED));
	fd = pfs_st_openat(m->st, m->root, name,
			   O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0)
		pfs_st_unlink(m->st, m->root, name, 0);
	return fd;
}

static int64_t local_ino(struct pfs_mirror *mm, const char *path)
{
	struct stat st;

	return fstatat(L(mm)->root, path, &st, AT_SYMLINK_NOFOLLOW) == 0 ? (int64_t)st.st_ino : 0;
}

/* key's base as one line for the journal (mirror.h: base_save): "c NAME"
 * once its write-backs go to the conflict copy NAME (a name beside the
 * file's), else "b DEV INO SIZE MTIME_S MTIME_NS". */
static int local_base_save(struct pfs_mirror *mm, uint64_t key, char *buf, size_t len)
{
	struct pfs_mirror_local *m = L(mm);
	struct base_ent *e;
	int n = -1;

	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_get(&m->bt, key);
	if (e && e->h.conflict)
		n = snprintf(buf, len, "c %s", e->h.conflict);
	else if (e && e->base.valid)
		n = snprintf(buf, len, "b %ju %ju %jd %jd %ld", (uintmax_t)e->base.dev,
			     (uintmax_t)e->base.ino, (intmax_t)e->base.size,
			     (intmax_t)e->base.mtime.tv_sec, e->base.mtime.tv_nsec);
	pthread_mutex_unlock(&m->lock);
	return n < 0 ? -ENOENT : (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* key's base set back from such a line (a replay), unless it has one. */
static int local_base_load(struct pfs_mirror *mm, uint64_t key, const char *line)
{
	struct pfs_mirror_local *m = L(mm);
	struct pfs_wb_base b = {.valid = true};
	uintmax_t dev, ino;
	intmax_t size, sec;
	long nsec;
	char *cname = NULL;
	struct base_ent *e;

	if (strncmp(line, "c ", 2) == 0 && line[2] && !strchr(line + 2, '/')) {
		if (!(cname = strdup(line + 2)))
			return -ENOMEM;
	} else if (sscanf(line, "b %ju %ju %jd %jd %ld", &dev, &ino, &size, &sec, &nsec) == 5) {
		b.dev = (dev_t)dev;
		b.ino = (ino_t)ino;
		b.size = (off_t)size;
		b.mtime.tv_sec = (time_t)sec;
		b.mtime.tv_nsec = nsec;
	} else {
		return -EINVAL;
	}
	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_get(&m->bt, key) ? NULL : pfs_basetab_make(&m->bt, key, sizeof(*e));
	if (e && cname) {
		e->h.conflict = cname;
		cname = NULL;
	} else if (e) {
		e->base = b;
	}
	pthread_mutex_unlock(&m->lock);
	free(cname);
	return 0;
}

static void local_describe(struct pfs_mirror *mm, char *buf, size_t len)
{
	snprintf(buf, len, "local directory %s: everything kept (symlinks, hard links, special "
		 "files, xattrs, owners, modes, times); conflicts found by a look before each "
		 "write; durable at fsync and sync (syncfs)", L(mm)->path);
}

static const struct pfs_mirror_ops local_ops = {
	.kind = "local",
	.caps = PFS_MIRROR_SYMLINK | PFS_MIRROR_HARDLINK | PFS_MIRROR_SPECIAL | PFS_MIRROR_XATTR |
		PFS_MIRROR_MODE | PFS_MIRROR_OWNER | PFS_MIRROR_MTIME | PFS_MIRROR_LISTMETA,
	.stat = local_stat,
	.list = local_list,
	.meta = local_meta,
	.fetch = local_fetch,
	.remember = local_remember,
	.forget = local_forget,
	.apply = pfs_local_apply,
	.apply_new = pfs_local_apply_new,
	.flush = local_flush,
	.conflicts = local_conflicts,
	.describe = local_describe,
	.open = local_open,
	.tmpfile = local_tmpfile,
	.ino = local_ino,
	.base_save = local_base_save,
	.base_load = local_base_load,
	.close = local_close,
};
