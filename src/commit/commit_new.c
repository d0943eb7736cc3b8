/* commit_new: making the entries of the new state — each one complete
 * (data, owner, xattrs, mode, times, durable) before it takes its name. */
#include "commit/commit_int.h"
#include "store/fcopy.h"
#include "store/rmtree.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TMP_PREFIX ".prismfs-tmp-"

static void tmp_name(struct pfs_cctx *c, char *buf, size_t len)
{
	snprintf(buf, len, TMP_PREFIX "%ld-%lu", (long)getpid(), ++c->tmpseq);
}

int pfs_cinstall(struct pfs_cctx *c, int dirfd, const char *tmp, const char *name,
		 const char *root)
{
	char where[256];
	int ret = pfs_st_rename(c->st, dirfd, tmp, dirfd, name, 0);

	if (ret == 0)
		return 0;
	if (ret == -EISDIR || ret == -ENOTEMPTY || ret == -EEXIST) {
		/* A directory is in the way; rename(2) replaces only files. */
		ret = pfs_rmtree_at(c->st, dirfd, name, where, sizeof(where));
		if (ret < 0) {
			pfs_st_unlink(c->st, dirfd, tmp, 0);
			return pfs_cfail(c, ret, "cannot remove %s/%s (at %s)", root,
					 pfs_pathbuf_str(&c->path), where);
		}
		ret = pfs_st_rename(c->st, dirfd, tmp, dirfd, name, 0);
		if (ret == 0)
			return 0;
	}
	pfs_st_unlink(c->st, dirfd, tmp, 0);
	return pfs_cfail_at(c, ret, "cannot replace", root, NULL);
}

int pfs_clink(struct pfs_cctx *c, int fromroot, const char *from, int dirfd, const char *name,
	      bool exists, const char *root)
{
	char tmp[64];
	int ret;

	if (!exists) {
		ret = pfs_st_link(c->st, fromroot, from, dirfd, name, 0);
		if (ret == 0)
			return 0;
		if (ret != -EEXIST)
			return pfs_cfail_at(c, ret, "cannot link", root, NULL);
	}
	for (;;) {
		tmp_name(c, tmp, sizeof(tmp));
		ret = pfs_st_link(c->st, fromroot, from, dirfd, tmp, 0);
		if (ret == 0)
			break;
		if (ret != -EEXIST)
			return pfs_cfail_at(c, ret, "cannot link", root, NULL);
	}
	return pfs_cinstall(c, dirfd, tmp, name, root);
}

static int new_reg(struct pfs_cctx *c, int dirfd, const char *name, const struct pfs_csrc *src,
		   bool exists, ino_t *ino, bool *cloned, const char *root)
{
	char tmp[64] = "", proc[64];
	const char *op = "cannot create";
	struct stat st;
	int fd, ret;

	*cloned = false;
	/* Unnamed until complete: a crash leaves nothing behind. */
	fd = pfs_st_openat(c->st, dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd == -EOPNOTSUPP || fd == -EISDIR || fd == -EINVAL) {
		do {
			tmp_name(c, tmp, sizeof(tmp));
			fd = pfs_st_openat(c->st, dirfd, tmp,
					   O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
		} while (fd == -EEXIST);
	}
	if (fd < 0)
		return pfs_cfail_at(c, fd, op, root, NULL);
	ret = src->clone ? pfs_st_copy(c->st, fd, src->datafd, src->st->st_size, true, NULL, NULL)
			 : -EOPNOTSUPP;
	if (ret == 0) {
		*cloned = true;
	} else if (src->must_clone && pfs_fcopy_clone_unsupported(ret)) {
		close(fd);
		if (tmp[0])
			pfs_st_unlink(c->st, dirfd, tmp, 0);
		return ret; /* the caller shares another way */
	} else if (pfs_fcopy_clone_unsupported(ret)) {
		op = "cannot write";
		ret = pfs_st_copy(c->st, fd, src->datafd, src->st->st_size, false,
				  src->tick ? pfs_progress_tick : NULL, &c->prog);
	}
	if (ret < 0)
		goto fail;
	ret = pfs_meta_copy(c->st, pfs_ref_fd(fd), src->meta, src->st, src->meta_flags, &op);
	if (ret < 0)
		goto fail;
	op = "cannot write";
	ret = pfs_st_sync(c->st, fd, false);
	if (ret == 0 && fstat(fd, &st) < 0)
		ret = -errno;
	if (ret < 0)
		goto fail;
	*ino = st.st_ino;
	if (!tmp[0]) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		op = "cannot link";
		ret = exists ? -EEXIST
			     : pfs_st_link(c->st, AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW);
		if (ret == 0)
			goto done;
		if (ret != -EEXIST)
			goto fail;
		do {
			tmp_name(c, tmp, sizeof(tmp));
			ret = pfs_st_link(c->st, AT_FDCWD, proc, dirfd, tmp, AT_SYMLINK_FOLLOW);
		} while (ret == -EEXIST);
		if (ret < 0) {
			tmp[0] = '\0';
			goto fail;
		}
	}
	close(fd);
	return pfs_cinstall(c, dirfd, tmp, name, root);
done:
	close(fd);
	return 0;
fail:
	close(fd);
	if (tmp[0])
		pfs_st_unlink(c->st, dirfd, tmp, 0);
	return pfs_cfail_at(c, ret, op, root, NULL);
}

static int read_link(struct pfs_store *st, int dirfd, const char *name, off_t size, char **out)
{
	size_t len = size > 0 ? (size_t)size + 1 : PATH_MAX;

	for (;;) {
		char *buf = malloc(len);
		ssize_t n;

		if (!buf)
			return -ENOMEM;
		n = pfs_st_readlink(st, dirfd, name, buf, len);
		if (n < 0) {
			free(buf);
			return (int)n;
		}
		if ((size_t)n < len) {
			buf[n] = '\0';
			*out = buf;
			return 0;
		}
		free(buf); /* grew meanwhile */
		len *= 2;
	}
}

int pfs_cnew(struct pfs_cctx *c, int dirfd, const char *name, const struct pfs_csrc *src,
	     bool exists, ino_t *ino, bool *cloned, const char *root)
{
	const struct stat *st = src->st;
	const char *op = "cannot create", *at;
	char tmp[64], *target = NULL;
	struct stat nst;
	int ret;

	if (S_ISREG(st->st_mode))
		return new_reg(c, dirfd, name, src, exists, ino, cloned, root);
	*cloned = false;
	tmp_name(c, tmp, sizeof(tmp));
	/* Nothing to replace: make it in place. */
	at = exists ? tmp : name;
	if (S_ISLNK(st->st_mode)) {
		ret = read_link(c->st, src->udirfd, src->upath, st->st_size, &target);
		if (ret < 0)
			return pfs_cfail_at(c, ret, "cannot read the symlink", c->upper, NULL);
		ret = pfs_st_symlink(c->st, target, dirfd, at);
		free(target);
	} else {
		ret = pfs_st_mknod(c->st, dirfd, at, (st->st_mode & S_IFMT) | 0600, st->st_rdev);
	}
	if (ret < 0)
		return pfs_cfail_at(c, ret, op, root, NULL);
	ret = pfs_meta_copy(c->st, pfs_ref_at(dirfd, at), src->meta, st, src->meta_flags, &op);
	if (ret == 0)
		ret = pfs_st_stat(c->st, dirfd, at, &nst, AT_SYMLINK_NOFOLLOW);
	if (ret < 0) {
		if (exists)
			pfs_st_unlink(c->st, dirfd, tmp, 0);
		return pfs_cfail_at(c, ret, op, root, NULL);
	}
	*ino = nst.st_ino;
	return exists ? pfs_cinstall(c, dirfd, tmp, name, root) : 0;
}
