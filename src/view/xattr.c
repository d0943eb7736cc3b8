/* xattr: extended attributes. What the namespace stores them as (a
 * layered mount escapes its private names) is fs->ns's; the backing
 * object is reached by backing.c. */
#include "view/view.h"
#include "view/ns.h"

ssize_t pfs_view_getxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			  size_t size)
{
	return fs->ns->getxattr(fs, n, name, buf, size);
}

ssize_t pfs_view_listxattr(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size)
{
	return fs->ns->listxattr(fs, n, buf, size);
}

int pfs_view_setxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name,
		      const char *value, size_t size, int flags)
{
	int ret = pfs_view_writable(fs, n);

	if (ret == 0)
		ret = fs->ns->setxattr(fs, n, name, value, size, flags);
	if (ret < 0)
		return ret;
	pfs_view_changed(fs, n, NULL);
	return 0;
}

int pfs_view_removexattr(struct pfs_fs *fs, struct pfs_node *n, const char *name)
{
	int ret = pfs_view_writable(fs, n);

	if (ret == 0)
		ret = fs->ns->removexattr(fs, n, name);
	if (ret < 0)
		return ret;
	pfs_view_changed(fs, n, NULL);
	return 0;
}
