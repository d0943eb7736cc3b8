/* xattr: extended attributes. What the namespace stores them as (a
 * layered mount escapes its private names) is fs->ns's; the backing
 * object is reached by backing.c. */
#include "view/view.h"
#include "view/ns.h"
#include "store/caller.h"
#include "util/idmap.h"

#include <linux/capability.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* With uidmapping=/gidmapping=, a POSIX ACL names users and groups by the
 * ids the mount shows, as stat does, and is stored with the ids on disk
 * (what the kernel's idmapped mounts do; fuse-overlayfs passes ACLs
 * through unmapped). */
static bool maps_acl(const struct pfs_fs *fs, const char *name)
{
	return (fs->uidmap || fs->gidmap) && pfs_idmap_is_acl(name);
}

ssize_t pfs_view_getxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			  size_t size)
{
	ssize_t ret = fs->ns->getxattr(fs, n, name, buf, size);

	/* A place that cannot hold ACLs (a synthetic directory, a store
	 * without xattrs) has none: the kernel, checking permissions with
	 * FUSE_POSIX_ACL, takes ENODATA as "no ACL" but any other error as
	 * the answer to the access itself. */
	if ((ret == -EOPNOTSUPP || ret == -ENOSYS) && pfs_idmap_is_acl(name))
		return -ENODATA;
	/* A malformed ACL is shown as stored: the kernel judges it. */
	if (ret > 0 && size && maps_acl(fs, name))
		pfs_idmap_acl(fs->uidmap, fs->gidmap, buf, (size_t)ret, true, fs->overflow_uid,
			      fs->overflow_gid);
	return ret;
}

ssize_t pfs_view_listxattr(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size)
{
	return fs->ns->listxattr(fs, n, buf, size);
}

static bool in_groups(const struct pfs_acl_caller *who, gid_t gid)
{
	for (int i = 0; i < who->ngroups; i++)
		if (who->groups[i] == gid)
			return true;
	return false;
}

/* After an access ACL was set: what posix_acl_update_mode() does to the
 * mode of a caller outside the file's group (by the ids the mount shows,
 * as the caller's are) without CAP_FSETID. The capability is read last:
 * it costs a read of the caller's /proc files. */
static int acl_kill_sgid(struct pfs_fs *fs, struct pfs_node *n, const struct pfs_acl_caller *who)
{
	struct pfs_caller c = {.uid = who->uid, .gid = who->gid, .pid = who->pid};
	struct stat st;
	char name[24];
	int ret = pfs_view_getattr(fs, n, NULL, &st), fd;

	if (ret < 0 || !(st.st_mode & S_ISGID) || who->ngroups == 0 || in_groups(who, st.st_gid) ||
	    pfs_caller_capable(&c, CAP_FSETID))
		return ret;
	fd = pfs_node_fd(fs, n);
	if (fd < 0)
		return fd;
	pfs_backing_procname(fd, name);
	return pfs_st_chmod(fs->store, pfs_ref_at(fs->proc_fd, name), st.st_mode & 07777 & ~S_ISGID);
}

int pfs_view_setxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name,
		      const char *value, size_t size, int flags,
		      const struct pfs_acl_caller *who)
{
	int ret = pfs_view_writable(fs, n);
	char *stored = NULL;

	if (ret == 0 && size && maps_acl(fs, name)) {
		stored = malloc(size);
		if (!stored)
			return -ENOMEM;
		memcpy(stored, value, size);
		ret = pfs_idmap_acl(fs->uidmap, fs->gidmap, stored, size, false, 0, 0);
		value = stored;
	}
	if (ret == 0)
		ret = fs->ns->setxattr(fs, n, name, value, size, flags);
	free(stored);
	if (ret == 0 && who)
		ret = acl_kill_sgid(fs, n, who);
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
