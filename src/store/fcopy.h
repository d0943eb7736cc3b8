/* fcopy: moving and comparing file data between open descriptors. */
#ifndef PFS_FCOPY_H
#define PFS_FCOPY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Called as data is copied or compared: bytes since the last call. */
typedef void pfs_fcopy_tick(void *arg, uint64_t bytes);

/* Make dst share all of src's blocks (FICLONE). 0 or -errno. */
int pfs_fcopy_clone(int dst, int src);
/* The errors of pfs_fcopy_clone that mean "this filesystem (pair) cannot
 * clone", as opposed to a real failure. */
bool pfs_fcopy_clone_unsupported(int err);

/* Copy the first size bytes of src into the empty file dst, at the same
 * offsets, leaving holes as holes; dst ends up exactly size bytes long. */
int pfs_fcopy_data(int dst, int src, off_t size, pfs_fcopy_tick *tick, void *arg);

/* Do a and b hold the same first size bytes? 0 and *same, or -errno. */
int pfs_fcopy_same(int a, int b, off_t size, bool *same, pfs_fcopy_tick *tick, void *arg);

#endif
