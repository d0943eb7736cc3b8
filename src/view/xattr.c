/* xattr: extended attributes. There is no f*xattr on an O_PATH fd, so an
 * object is the store's reference to the node's own fd (reached through
 * /proc/self/fd, which resolves to the node's inode without walking the
 * mount). A symlink cannot be reached that way without following it, so it
 * is named as its parent's fd plus its name. */
#include "view/view.h"
#include "layers/layer.h"

#include <errno.h>
#include <limits.h>
#include <linux/limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

/* n's object for the store; name: room for a symlink's name. */
struct xpath {
	struct pfs_ref r;
	char name[NAME_MAX + 1];
};

static int xpath_of(struct pfs_fs *fs, struct pfs_node *n, struct xpath *x)
{
	int ret, fd;

	if (n->type != S_IFLNK) {
		fd = pfs_node_fd(fs, n);
		if (fd < 0)
			return fd;
		x->r = pfs_ref_path(fd);
		return 0;
	}
	ret = fs->layers ? pfs_layer_node_name(fs, n, &fd, x->name, sizeof(x->name))
			 : pfs_node_name(fs, n, &fd, x->name, sizeof(x->name));
	if (ret < 0)
		return -EPERM;
	x->r = pfs_ref_at(fd, x->name);
	return 0;
}

ssize_t pfs_view_getxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			  size_t size)
{
	char esc[XATTR_NAME_MAX + 1];
	struct xpath x;
	int ret = xpath_of(fs, n, &x);

	if (ret < 0)
		return ret;
	if (fs->layers && pfs_layer_private_xattr(fs, name)) {
		ret = pfs_layer_escape_xattr(name, esc, sizeof(esc));
		if (ret < 0)
			return ret;
		name = esc;
	}
	return pfs_st_getxattr(fs->store, x.r, name, buf, size);
}

/* The list without the layers' private names. */
static ssize_t layer_listxattr(struct pfs_fs *fs, const struct xpath *x, char *buf, size_t size)
{
	char *all = NULL;
	ssize_t r, out = 0;

	for (;;) {
		r = pfs_st_listxattr(fs->store, x->r, NULL, 0);
		if (r <= 0)
			return r;
		all = malloc((size_t)r);
		if (!all)
			return -ENOMEM;
		r = pfs_st_listxattr(fs->store, x->r, all, (size_t)r);
		if (r >= 0)
			break;
		free(all);
		if (r != -ERANGE)
			return r;
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
	int ret = xpath_of(fs, n, &x);

	if (ret < 0)
		return ret;
	if (fs->layers)
		return layer_listxattr(fs, &x, buf, size);
	return pfs_st_listxattr(fs->store, x.r, buf, size);
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
	ret = pfs_st_setxattr(fs->store, x.r, name, value, size, flags);
	if (ret < 0)
		return ret;
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
	ret = pfs_st_removexattr(fs->store, x.r, name);
	if (ret < 0)
		return ret;
	pfs_view_changed(fs, n, NULL);
	return 0;
}
