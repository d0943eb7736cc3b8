/* failrec: the record an unmount action leaves when it fails with nobody
 * waiting to hear it (a plain umount, fusermount3 -u, fstab, SIGTERM):
 * one line in .NAME.prismfs-failed beside the upper U (NAME = U's name),
 * saying when, which mount and what failed. The next mount with that upper
 * prints it once and removes it; a later commit or discard of U that
 * succeeds removes it too.
 *
 * upper is the upper's canonical path. Functions return 0 or -errno. */
#ifndef PFS_FAILREC_H
#define PFS_FAILREC_H

#include <stddef.h>

/* Write the record: "TIME: MOUNTPOINT: MSG" (one line; a newline in msg
 * ends it), replacing any earlier one. */
int pfs_failrec_write(const char *upper, const char *mountpoint, const char *msg);

/* Read the record's line into buf and remove the record. Returns 1 when
 * there was one, 0 when not (or it is not a regular file: left alone). */
int pfs_failrec_take(const char *upper, char *buf, size_t len);

/* Remove the record, if any: what it reported is resolved. */
void pfs_failrec_clear(const char *upper);

#endif
