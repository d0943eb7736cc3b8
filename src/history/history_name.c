/* history_name: a live name of a file reached through a descriptor whose
 * own name was removed while the file lives on under others (hard
 * links). /proc gives only the removed name, which no longer names the
 * file and may name another object by now; a change through the
 * descriptor is a change of the file's other names. A name counts only
 * if it names the very object now (same dev and inode, checked by
 * fstatat: the file is open, so no other object can have its inode):
 * first the removed name's own directory (where links mostly are), then
 * the whole tree, on the root's filesystem, entering no mount (one may be
 * the daemon's own mount point) and following no symlink. Rare (a write, fsync or
 * setattr through such a descriptor), so found when asked, not kept. */
#include "history/history_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The entry name of the directory dirfd, not followed into a mount on it
 * (openat2's RESOLVE_NO_XDEV fails first: the mount point is no name on
 * the root's filesystem, and a mount there may be prismfs's own, which
 * the daemon must not ask), as an O_PATH descriptor, its stat into o.
 * The descriptor, or -1. */
static int entry(int dirfd, const char *name, struct stat *o)
{
	struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
			       .resolve = RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS};
	int fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));

	if (fd >= 0 && fstat(fd, o) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The directory open as the O_PATH descriptor fd, opened to be read
 * without moving its atime (the daemon's look is no access of the
 * user's). */
static DIR *open_dir(int fd)
{
	int rd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOATIME);
	DIR *d;

	if (rd < 0 && errno == EPERM)
		rd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rd < 0)
		return NULL;
	d = fdopendir(rd);
	if (!d)
		close(rd);
	return d;
}

/* How deep the walk goes: each level holds a directory stream (a
 * descriptor) and a frame of this thread's stack (a FUSE worker's), and a
 * tree may be deeper than either can take (PATH_MAX allows ~2,000 levels).
 * A link deeper than this is not found: the change is then journaled as
 * of a nameless object, as before there was a search. */
#define LOOK_DEPTH 128

/* The entries of the directory open as d (path rel[0..rl), "" the root;
 * rel has PATH_MAX bytes and is shared by every level) that name st's
 * object; dirs: also look beneath (on st's filesystem). The first found
 * into buf. 0, or -ENOENT. */
static int look(DIR *d, char *rel, size_t rl, const struct stat *st, bool dirs, int depth,
		char *buf, size_t len)
{
	struct dirent *e;
	struct stat o;
	int ret = -ENOENT;

	while (ret < 0 && (e = readdir(d))) {
		DIR *c = NULL;
		int fd, w;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (e->d_type == DT_DIR ? !dirs
					: e->d_type != DT_UNKNOWN && e->d_ino != st->st_ino)
			continue;
		w = snprintf(rel + rl, PATH_MAX - rl, "%s%s", rl ? "/" : "", e->d_name);
		if (w < 0 || (size_t)w >= PATH_MAX - rl)
			continue;
		fd = entry(dirfd(d), e->d_name, &o);
		if (fd < 0)
			continue;
		if (o.st_dev == st->st_dev && o.st_ino == st->st_ino) {
			if ((size_t)snprintf(buf, len, "%s", rel) < len)
				ret = 0;
		} else if (dirs && depth < LOOK_DEPTH && S_ISDIR(o.st_mode) &&
			   o.st_dev == st->st_dev) {
			c = open_dir(fd);
		}
		close(fd);
		if (c) {
			ret = look(c, rel, rl + (size_t)w, st, true, depth + 1, buf, len);
			closedir(c);
		}
		rel[rl] = '\0';
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
	/* the removed name's directory (the path may cross no mount either) */
	struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
			       .resolve = RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS |
					  RESOLVE_BENEATH};
	int pd = slash ? (int)syscall(SYS_openat2, root, dir, &how, sizeof(how)) : root;

	if (pd >= 0 && (d = open_dir(pd))) {
		ret = look(d, dir, slash ? strlen(dir) : 0, &st, false, 0, buf, len);
		closedir(d);
	}
	if (slash && pd >= 0)
		close(pd);
	if (ret < 0 && (d = open_dir(root))) {
		dir[0] = '\0';
		ret = look(d, dir, 0, &st, true, 0, buf, len);
		closedir(d);
	}
	close(root);
	return ret;
}
