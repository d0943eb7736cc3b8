/* cache_find: a live name of a cache file whose descriptor's own name is
 * gone.
 *
 * The view reaches a file through the descriptor of its node, whose name
 * is the one the file was first found by. A file with several names keeps
 * that descriptor when that name is unlinked, and /proc then shows it as
 * "NAME (deleted)" although the file lives on under its other names: its
 * changes must still reach the mirror, under one of those. This is rare
 * (a file with hard links, one of them removed while the view still holds
 * it), so it is found by walking the memory filesystem itself, which
 * costs no mirror reads and fills nothing. */
#include "cache/cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define FIND_DEPTH 256

/* Search the directory dfd (its path rel, len bytes of buf) for ino. */
static int find_in(int dfd, ino_t ino, char *buf, size_t len, size_t at, unsigned depth)
{
	struct dirent *de;
	DIR *d;
	int fd, ret = -ENOENT;

	if (depth > FIND_DEPTH)
		return -ENOENT;
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	while (ret == -ENOENT && (de = readdir(d))) {
		size_t n = strlen(de->d_name), need = at + (at ? 1 : 0) + n;
		int sub;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (need >= len)
			continue; /* too deep to name: not this way */
		if (at)
			buf[at] = '/';
		memcpy(buf + at + (at ? 1 : 0), de->d_name, n + 1);
		if (de->d_ino == ino && de->d_type != DT_DIR) {
			ret = 0;
			break;
		}
		if (de->d_type != DT_DIR)
			continue;
		sub = openat(dirfd(d), de->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;
		ret = find_in(sub, ino, buf, len, need, depth + 1);
		close(sub);
	}
	if (ret == -ENOENT)
		buf[at] = '\0';
	closedir(d);
	return ret;
}

int pfs_cache_find_live(struct pfs_cache *c, int fd, char *buf, size_t len)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode) || st.st_nlink == 0 || st.st_dev != c->dev || len == 0)
		return -ENOENT;
	buf[0] = '\0';
	return find_in(c->root, st.st_ino, buf, len, 0, 0);
}
