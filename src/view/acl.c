/* acl: what a directory's default POSIX ACL does to a new object in it
 * (acl(5), "OBJECT CREATION AND DEFAULT ACLs"; the kernel's
 * posix_acl_create()). The mount asks the kernel not to apply the caller's
 * umask (FUSE_CAP_DONT_MASK, fuse/ops.c): with a default ACL the umask is
 * not applied at all, and only the directory the object is made in can
 * tell. The daemon makes objects with umask 0 (cli/daemon.c), so the
 * backing filesystem applies the default ACL itself, masked by the mode
 * given; without one, the mode given is the object's, umask included. */
#include "view/view.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ACL_DEFAULT "system.posix_acl_default"
#define ACL_ACCESS "system.posix_acl_access"

/* The layout of include/uapi/linux/posix_acl_xattr.h: a little-endian
 * version word, then 8-byte entries (tag, perm: 16 bits; id: 32). */
#define ACL_HEADER 4u
#define ACL_ENTRY 8u
#define TAG_USER_OBJ 0x01u
#define TAG_USER 0x02u
#define TAG_GROUP_OBJ 0x04u
#define TAG_GROUP 0x08u
#define TAG_MASK 0x10u
#define TAG_OTHER 0x20u

static bool has_default(struct pfs_fs *fs, int dirfd)
{
	/* Any failure (no ACL, a store without xattrs) is "none": the umask
	 * applies, so an unreadable directory never widens a new mode. */
	return pfs_st_getxattr(fs->store, pfs_ref_path(dirfd), ACL_DEFAULT, NULL, 0) > 0;
}

mode_t pfs_view_new_mode(struct pfs_fs *fs, const struct fuse_ctx *ctx, int dirfd, mode_t mode)
{
	if (!ctx || S_ISLNK(mode) || !(mode & 0777 & ctx->umask))
		return mode;
	return has_default(fs, dirfd) ? mode : mode & ~(ctx->umask & 0777);
}

static unsigned perm_at(const unsigned char *e)
{
	return e[2] | (unsigned)e[3] << 8;
}

static void set_perm(unsigned char *e, unsigned perm)
{
	e[2] = (unsigned char)perm;
	e[3] = (unsigned char)(perm >> 8);
}

/* posix_acl_create_masq(): the default ACL acl (len bytes) made the access
 * ACL of an object created with *mode, in place; *mode gets the permission
 * bits the ACL leaves. 1: the ACL says more than a mode can (it must be
 * stored), 0: the mode says it all, -EIO: malformed. */
static int create_masq(unsigned char *acl, size_t len, mode_t *mode)
{
	unsigned char *group_obj = NULL, *mask_obj = NULL;
	mode_t m = *mode;
	int not_equiv = 0;

	if (len < ACL_HEADER || (len - ACL_HEADER) % ACL_ENTRY)
		return -EIO;
	for (size_t off = ACL_HEADER; off < len; off += ACL_ENTRY) {
		unsigned char *e = acl + off;
		unsigned tag = e[0] | (unsigned)e[1] << 8, p = perm_at(e);

		switch (tag) {
		case TAG_USER_OBJ:
			p &= (m >> 6) | ~(unsigned)S_IRWXO;
			set_perm(e, p);
			m &= (p << 6) | ~(mode_t)S_IRWXU;
			break;
		case TAG_USER:
		case TAG_GROUP:
			not_equiv = 1;
			break;
		case TAG_GROUP_OBJ:
			group_obj = e;
			break;
		case TAG_OTHER:
			p &= m | ~(unsigned)S_IRWXO;
			set_perm(e, p);
			m &= p | ~(mode_t)S_IRWXO;
			break;
		case TAG_MASK:
			mask_obj = e;
			not_equiv = 1;
			break;
		default:
			return -EIO;
		}
	}
	if (!mask_obj)
		mask_obj = group_obj;
	if (!mask_obj)
		return -EIO;
	set_perm(mask_obj, perm_at(mask_obj) & ((m >> 3) | ~(unsigned)S_IRWXO));
	m &= (perm_at(mask_obj) << 3) | ~(mode_t)S_IRWXG;
	*mode = (*mode & ~(mode_t)0777) | (m & 0777);
	return not_equiv;
}

int pfs_view_acl_inherit(struct pfs_fs *fs, int parentfd, int dirfd, const char *name)
{
	struct pfs_ref r = pfs_ref_at(dirfd, name);
	unsigned char *acl = NULL;
	struct stat st;
	mode_t mode;
	ssize_t len;
	int ret;

	len = pfs_st_getxattr(fs->store, pfs_ref_path(parentfd), ACL_DEFAULT, NULL, 0);
	if (len <= 0)
		return 0; /* none (or none to be had): made with the umask applied */
	ret = pfs_st_stat(fs->store, dirfd, name, &st, AT_SYMLINK_NOFOLLOW);
	if (ret < 0 || S_ISLNK(st.st_mode))
		return ret;
	acl = malloc((size_t)len);
	if (!acl)
		return -ENOMEM;
	len = pfs_st_getxattr(fs->store, pfs_ref_path(parentfd), ACL_DEFAULT, acl, (size_t)len);
	ret = len < 0 ? (int)len : 0;
	if (ret < 0)
		goto out; /* changed meanwhile: -ERANGE, as a native create may fail */
	/* A directory keeps the default ACL for its own children. */
	if (S_ISDIR(st.st_mode))
		ret = pfs_st_setxattr(fs->store, r, ACL_DEFAULT, acl, (size_t)len, 0);
	mode = st.st_mode & 07777;
	if (ret == 0)
		ret = create_masq(acl, (size_t)len, &mode);
	if (ret >= 0 && mode != (st.st_mode & 07777)) {
		int c = pfs_st_chmod(fs->store, r, mode);

		if (c < 0)
			ret = c;
	}
	if (ret == 1)
		ret = pfs_st_setxattr(fs->store, r, ACL_ACCESS, acl, (size_t)len, 0);
out:
	free(acl);
	return ret < 0 ? ret : 0;
}
