/* history_restore_xattr: the user.* extended attributes a restore puts
 * back (docs/HISTORY.md, Restore of trees). Read from the snapshot's copy
 * (MNT/.history/SNAP/PATH shows them as they were) or taken from a saved
 * version's versions.xattrs blob, and set on the fresh copy before it is
 * renamed in: the restored object has the snapshot's set, no other. Only
 * user.*: the others are the system's, which .history does not show. */
#include "cli/history_restore_int.h"
#include "util/xblob.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/xattr.h>

static ssize_t p_list(void *arg, char *buf, size_t len)
{
	ssize_t n = llistxattr(arg, buf, len);

	return n < 0 ? -errno : n;
}

static ssize_t p_get(void *arg, const char *name, void *buf, size_t len)
{
	ssize_t n = lgetxattr(arg, name, buf, len);

	return n < 0 ? -errno : n;
}

int pfs_hr_xattrs_read(const char *path, char **blob, size_t *len)
{
	const struct pfs_xblob_src src = {p_list, p_get, (void *)path};
	int ret = pfs_xblob_read(&src, blob, len);

	if (ret < 0)
		errno = -ret;
	return ret < 0 ? -1 : 0;
}

int pfs_hr_xattrs_put(int fd, const char *blob, size_t len)
{
	const char *k = NULL, *v = NULL;
	size_t vl = 0;
	int r;

	while ((r = pfs_xblob_next(blob, len, &k, &v, &vl)) > 0)
		if (fsetxattr(fd, k, v, vl, 0) < 0)
			return -1;
	if (r < 0)
		errno = -r;
	return r < 0 ? -1 : 0;
}
