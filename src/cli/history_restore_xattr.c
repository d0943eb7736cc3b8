/* history_restore_xattr: the user.* extended attributes a restore puts
 * back (docs/HISTORY.md, Restore of trees). Read from the snapshot's copy
 * (MNT/.history/SNAP/PATH shows them as they were) or taken from a saved
 * version's versions.xattrs blob, and set on the fresh copy before it is
 * renamed in: the restored object has the snapshot's set, no other. Only
 * user.*: the others are the system's, which .history does not show. */
#include "cli/history_restore_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/xattr.h>

int pfs_hr_xattrs_read(const char *path, char **blob, size_t *len)
{
	char *names = NULL, *b = NULL, *nb;
	ssize_t n, v;
	size_t used = 0;
	int err = 0;

	*blob = NULL;
	*len = 0;
	n = llistxattr(path, NULL, 0);
	if (n <= 0)
		return n < 0 && errno != ENOTSUP ? -1 : 0;
	if (!(names = malloc((size_t)n)))
		return -1;
	n = llistxattr(path, names, (size_t)n);
	if (n < 0) {
		err = errno;
		goto out;
	}
	for (char *k = names; k < names + n; k += strlen(k) + 1) {
		size_t kl = strlen(k) + 1;
		uint32_t vl;

		if (strncmp(k, "user.", 5) != 0)
			continue;
		v = lgetxattr(path, k, NULL, 0);
		if (v < 0 && errno == ENODATA)
			continue;
		if (v < 0 || !(nb = realloc(b, used + kl + 4 + (size_t)v))) {
			err = errno;
			goto out;
		}
		b = nb;
		v = lgetxattr(path, k, b + used + kl + 4, (size_t)v);
		if (v < 0) {
			err = errno;
			goto out;
		}
		memcpy(b + used, k, kl);
		vl = (uint32_t)v;
		memcpy(b + used + kl, &vl, 4);
		used += kl + 4 + (size_t)v;
	}
	*blob = b;
	*len = used;
	b = NULL;
out:
	free(b);
	free(names);
	errno = err;
	return err ? -1 : 0;
}

int pfs_hr_xattrs_put(int fd, const char *blob, size_t len)
{
	for (const char *k = blob; blob && k < blob + len;) {
		size_t kl = strnlen(k, (size_t)(blob + len - k)) + 1;
		uint32_t vl;

		if (k + kl + 4 > blob + len) {
			errno = EINVAL; /* a torn blob: never written so */
			return -1;
		}
		memcpy(&vl, k + kl, 4);
		if (k + kl + 4 + vl > blob + len) {
			errno = EINVAL;
			return -1;
		}
		if (fsetxattr(fd, k, k + kl + 4, vl, 0) < 0)
			return -1;
		k += kl + 4 + vl;
	}
	return 0;
}
