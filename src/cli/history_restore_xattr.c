/* history_restore_xattr: the extended attributes a restore puts back
 * (docs/HISTORY.md, Restore of trees): those the history keeps (user.*,
 * the POSIX ACLs, security.*, trusted.*: util/xblob.h, pfs_xblob_kept).
 * Read from the snapshot's copy (MNT/.history/SNAP/PATH shows them as
 * they were) or taken from a saved version's versions.xattrs blob, and
 * set on the fresh copy before it is renamed in, so that they change with
 * the rename: the restored object has the snapshot's set, no other.
 * In two steps, because of what else the copy goes through: the user.*
 * ones before its owner and mode (a mode without write permission would
 * deny setting them), the others after its owner (a chown drops
 * security.capability) and before its mode (which then sets the ACL's
 * mask as the snapshot's mode had it). */
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

static bool is_user(const char *name)
{
	return strncmp(name, "user.", 5) == 0;
}

int pfs_hr_xattrs_put(int fd, const char *blob, size_t len)
{
	const char *k = NULL, *v = NULL;
	size_t vl = 0;
	int r;

	while ((r = pfs_xblob_next(blob, len, &k, &v, &vl)) > 0)
		if (is_user(k) && pfs_xblob_kept(k) && fsetxattr(fd, k, v, vl, 0) < 0)
			return -1;
	if (r < 0)
		errno = -r;
	return r < 0 ? -1 : 0;
}

/* A restorer without the privilege security.* and trusted.* ask for
 * (CAP_SYS_ADMIN, CAP_SETFCAP) leaves them as they are, as it leaves the
 * owner (cp -a does the same). */
static bool unprivileged(const char *name)
{
	return errno == EPERM && (!strncmp(name, "security.", 9) || !strncmp(name, "trusted.", 8));
}

static bool in_blob(const char *blob, size_t len, const char *name)
{
	const char *k = NULL, *v = NULL;
	size_t vl = 0;

	while (pfs_xblob_next(blob, len, &k, &v, &vl) > 0)
		if (!strcmp(k, name))
			return true;
	return false;
}

/* The kept names path has that the blob has not: what its making gave it
 * (an ACL from its directory's default one, a security label) and the
 * snapshot's object did not have. */
static int drop_others(const char *path, const char *blob, size_t len)
{
	ssize_t n = llistxattr(path, NULL, 0);
	char *names;
	int ret = 0;

	if (n <= 0)
		return n < 0 && errno != ENOTSUP ? -1 : 0;
	if (!(names = malloc((size_t)n)))
		return -1;
	n = llistxattr(path, names, (size_t)n);
	if (n < 0)
		ret = -1;
	for (char *k = names; ret == 0 && k < names + (n > 0 ? n : 0); k += strlen(k) + 1)
		if (pfs_xblob_kept(k) && !in_blob(blob, len, k) && lremovexattr(path, k) < 0 &&
		    errno != ENODATA && !unprivileged(k))
			ret = -1;
	free(names);
	return ret;
}

int pfs_hr_xattrs_fix(const char *path, const char *blob, size_t len)
{
	const char *k = NULL, *v = NULL;
	size_t vl = 0;
	int r;

	if (drop_others(path, blob, len) < 0)
		return -1;
	while ((r = pfs_xblob_next(blob, len, &k, &v, &vl)) > 0)
		if (!is_user(k) && pfs_xblob_kept(k) && lsetxattr(path, k, v, vl, 0) < 0 &&
		    !unprivileged(k))
			return -1;
	if (r < 0)
		errno = -r;
	return r < 0 ? -1 : 0;
}
