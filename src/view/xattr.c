/* xattr: extended attributes. There is no f*xattr on an O_PATH fd, so
 * objects are named through /proc/self/fd, which resolves to the node's own
 * inode without walking the mount. A symlink cannot be reached that way
 * without following it, so it is named as its parent's fd plus its name. */
#include "view/view.h"
#include "layers/layer.h"

#include <errno.h>
#include <limits.h>
#include <linux/limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

struct xpath {
	char path[64 + NAME_MAX];
	bool nofollow;
};

static int xpath_of(struct pfs_fs *fs, struct pfs_node *n, struct xpath *x)
{
	int ret = 0;

	x->nofollow = n->type == S_IFLNK;
	if (!x->nofollow) {
		int fd = pfs_node_fd(fs, n);

		if (fd < 0)
			return fd;
		snprintf(x->path, sizeof(x->path), "/proc/self/fd/%d", fd);
		return 0;
	}
	{
		char name[NAME_MAX + 1];
		int pfd;

		ret = fs->layers ? pfs_layer_node_name(fs, n, &pfd, name, sizeof(name))
				 : pfs_node_name(fs, n, &pfd, name, sizeof(name));
		if (ret < 0)
			return -EPERM;
		snprintf(x->path, sizeof(x->path), "/proc/self/fd/%d/%s", pfd, name);
	}
	return 0;
}

ssize_t pfs_view_getxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			  size_t size)
{
	char esc[XATTR_NAME_MAX + 1];
	struct xpath x;
	ssize_t r;
	int ret = xpath_of(fs, n, &x);

	if (ret < 0)
		return ret;
	if (fs->layers && pfs_layer_private_xattr(fs, name)) {
		ret = pfs_layer_escape_xattr(name, esc, sizeof(esc));
		if (ret < 0)
			return ret;
		name = esc;
	}
	r = x.nofollow ? lgetxattr(x.path, name, buf, size) : getxattr(x.path, name, buf, size);
	return r < 0 ? -errno : r;
}

/* The list without the layers' private names. */
static ssize_t layer_listxattr(struct pfs_fs *fs, const struct xpath *x, char *buf, size_t size)
{
	char *all = NULL;
	ssize_t r, out = 0;

	for (;;) {
		r = x->nofollow ? llistxattr(x->path, NULL, 0) : listxattr(x->path, NULL, 0);
		if (r <= 0)
			return r < 0 ? -errno : 0;
		all = malloc((size_t)r);
		if (!all)
			return -ENOMEM;
		r = x->nofollow ? llistxattr(x->path, all, (size_t)r) : listxattr(x->path, all, (size_t)r);
		if (r >= 0)
			break;
		free(all);
		if (errno != ERANGE)
			return -errno;
	}
	for (ssize_t i = 0; i < r;) {
		size_t l = strlen(all + i) + 1;

		char shown[XATTR_NAME_MAX + 1];

		if (pfs_layer_unescape_xattr(fs, all + i, shown, sizeof(shown))) {
			size_t sl = strlen(shown) + 1;

			if (size && (size_t)out + sl > size) {
				free(all);
				return -ERANGE;
			}
			if (size)
				memcpy(buf + out, shown, sl);
			out += (ssize_t)sl;
		}
		i += (ssize_t)l;
	}
	free(all);
	return out;
}

ssize_t pfs_view_listxattr(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size)
{
	struct xpath x;
	ssize_t r;
	int ret = xpath_of(fs, n, &x);

	if (ret < 0)
		return ret;
	if (fs->layers)
		return layer_listxattr(fs, &x, buf, size);
	r = x.nofollow ? llistxattr(x.path, buf, size) : listxattr(x.path, buf, size);
	return r < 0 ? -errno : r;
}

/* Before setting or removing *name on n: may it change, copied up first;
 * the name as stored (a private one escaped into esc). */
static int prepare_change(struct pfs_fs *fs, struct pfs_node *n, const char **name,
			  char esc[XATTR_NAME_MAX + 1])
{
	int ret = pfs_view_writable(fs, n);

	if (ret < 0 || !fs->layers)
		return ret;
	ret = pfs_layer_prepare_change(fs, n, -1);
	if (ret == 0 && pfs_layer_private_xattr(fs, *name)) {
		/* Stored escaped, as overlayfs does for nested overlays: an
		 * ordinary attribute of the view, never bookkeeping of ours. */
		ret = pfs_layer_escape_xattr(*name, esc, XATTR_NAME_MAX + 1);
		*name = esc;
	}
	return ret;
}

int pfs_view_setxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name,
		      const char *value, size_t size, int flags)
{
	char esc[XATTR_NAME_MAX + 1];
	struct xpath x;
	int ret;

	ret = prepare_change(fs, n, &name, esc);
	if (ret < 0)
		return ret;
	ret = xpath_of(fs, n, &x);
	if (ret < 0)
		return ret;
	ret = x.nofollow ? lsetxattr(x.path, name, value, size, flags)
			 : setxattr(x.path, name, value, size, flags);
	if (ret < 0)
		return -errno;
	pfs_view_changed(fs, n, NULL);
	return 0;
}

int pfs_view_removexattr(struct pfs_fs *fs, struct pfs_node *n, const char *name)
{
	char esc[XATTR_NAME_MAX + 1];
	struct xpath x;
	ssize_t r;
	int ret;

	if (fs->layers) {
		/* Removing what is not there changes nothing, so it copies
		 * nothing up (as overlayfs): ENODATA from the lower. */
		ret = pfs_view_writable(fs, n);
		r = ret < 0 ? ret : pfs_view_getxattr(fs, n, name, NULL, 0);
		if (r < 0)
			return (int)r;
	}
	ret = prepare_change(fs, n, &name, esc);
	if (ret < 0)
		return ret;
	ret = xpath_of(fs, n, &x);
	if (ret < 0)
		return ret;
	ret = x.nofollow ? lremovexattr(x.path, name) : removexattr(x.path, name);
	if (ret < 0)
		return -errno;
	pfs_view_changed(fs, n, NULL);
	return 0;
}
