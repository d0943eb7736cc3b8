/* history_name: a live name of a file reached through a descriptor whose
 * own name was removed while the file lives on under others (hard
 * links). /proc gives only the removed name, which no longer names the
 * file and may name another object by now; a change through the
 * descriptor is a change of the file's other names. A name counts only
 * if it names the very object now (same dev and inode, checked by
 * fstatat: the file is open, so no other object can have its inode):
 * first the removed name's own directory (where links mostly are), then
 * the whole tree, on the root's filesystem. Rare (a write, fsync or
 * setattr through such a descriptor), so found when asked, not kept. */
#include "history/history_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A directory (dirfd, name) opened to be read without moving its atime
 * (the daemon's look is no access of the user's). */
static DIR *open_dir(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
	DIR *d;

	if (fd < 0 && errno == EPERM)
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	d = fdopendir(fd);
	if (!d)
		close(fd);
	return d;
}

/* The entries of the directory open as d (path rel, "" the root) that
 * name st's object; dirs: also look beneath (on st's filesystem). The
 * first found into buf. 0, or -ENOENT. */
static int look(DIR *d, const char *rel, const struct stat *st, bool dirs, char *buf,
		size_t len)
{
	struct dirent *e;
	struct stat o;
	int ret = -ENOENT;

	while (ret < 0 && (e = readdir(d))) {
		char sub[PATH_MAX];
		DIR *c;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "",
				     e->d_name) >= sizeof(sub))
			continue;
		if (e->d_type == DT_DIR ? !dirs
					: e->d_type != DT_UNKNOWN && e->d_ino != st->st_ino)
			continue;
		if (fstatat(dirfd(d), e->d_name, &o, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (o.st_dev == st->st_dev && o.st_ino == st->st_ino) {
			if ((size_t)snprintf(buf, len, "%s", sub) < len)
				ret = 0;
			continue;
		}
		if (!dirs || !S_ISDIR(o.st_mode) || o.st_dev != st->st_dev)
			continue;
		c = open_dir(dirfd(d), e->d_name);
		if (c) {
			ret = look(c, sub, st, true, buf, len);
			closedir(c);
		}
	}
	return ret;
}

int pfs_hist_live_name(struct pfs_history *h, int fd, const char *gone, char *buf, size_t len)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;
	DIR *d;
	int root, ret = -ENOENT;

	if (fstat(fd, &st) < 0 || st.st_nlink == 0 || S_ISDIR(st.st_mode) || gone[0] == '/')
		return -ENOENT;
	root = pfs_hist_root(h);
	if (root < 0)
		return root;
	snprintf(dir, sizeof(dir), "%s", gone);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	d = open_dir(root, slash ? dir : ".");
	if (d) {
		ret = look(d, slash ? dir : "", &st, false, buf, len);
		closedir(d);
	}
	if (ret < 0 && (d = open_dir(root, "."))) {
		ret = look(d, "", &st, true, buf, len);
		closedir(d);
	}
	close(root);
	return ret;
}
