/* idmap: fuse-overlayfs's uidmapping=/gidmapping= ranges. Each range
 * STORED:SHOWN:COUNT (fuse-overlayfs writes it CONTAINERID:HOSTID:SIZE, as
 * containers/storage passes it) says that the ids STORED..STORED+COUNT-1
 * on disk are shown through the mount as SHOWN..SHOWN+COUNT-1, and the
 * other way round for the ids the mount is given (chown, a creator's).
 * Pure: no I/O. */
#ifndef PFS_UTIL_IDMAP_H
#define PFS_UTIL_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* As many ranges as a user namespace's uid_map may hold (user_namespaces(7)). */
#define PFS_IDMAP_MAX 340

struct pfs_idrange {
	uint32_t stored;
	uint32_t shown;
	uint32_t count;
};

struct pfs_idmap {
	size_t n; /* 0: no mapping, every id is itself */
	struct pfs_idrange r[PFS_IDMAP_MAX];
};

/* Parse "STORED:SHOWN:COUNT[:STORED:SHOWN:COUNT...]" into m. 0, or -EINVAL
 * with why in err (a phrase, "range 2: count 0 ..."): not decimal numbers,
 * a count of 0, a range past 4294967294 (id -1 is no id), ranges that
 * overlap on either side, more than PFS_IDMAP_MAX ranges. */
int pfs_idmap_parse(const char *s, struct pfs_idmap *m, char *err, size_t errlen);

/* The id shown for a stored id; false when no range holds it. */
bool pfs_idmap_shown(const struct pfs_idmap *m, uint32_t stored, uint32_t *shown);
/* The id stored for an id given through the mount; false when none holds it. */
bool pfs_idmap_stored(const struct pfs_idmap *m, uint32_t shown, uint32_t *stored);

/* POSIX ACLs (system.posix_acl_access, system.posix_acl_default) name
 * users and groups: their ids go through the mapping as owners do. */
bool pfs_idmap_is_acl(const char *name);
/* Map the ids of the ACL_USER and ACL_GROUP entries of an ACL xattr value
 * (buf, n bytes; acl(5)'s binary form) in place, through um and gm (NULL
 * or n 0: that kind stays as it is), entries kept in their order, as the
 * kernel's idmapped mounts translate them: to_shown, stored ids to shown
 * ones, one no range holds becoming the overflow id given (the kernel's
 * idmapped mounts show -1, which a FUSE mount cannot pass on); else ids
 * given to the mount to stored ones. -EINVAL, buf unchanged: not a
 * version 2 ACL of whole entries, or (!to_shown) an id no range holds. */
int pfs_idmap_acl(const struct pfs_idmap *um, const struct pfs_idmap *gm, void *buf, size_t n,
		  bool to_shown, uint32_t overflow_uid, uint32_t overflow_gid);

#endif
