/* backing: what the view asks of the kernel outside a reply (struct
 * pfs_kernel in view/view.h): kernel passthrough backing ids, through the
 * FUSE_DEV_IOC_BACKING_* ioctls on the session's fd, and cache
 * invalidations. */
#ifndef PFS_BACKING_H
#define PFS_BACKING_H

struct pfs_fs;

/* fs->se is the session: give the view its table (fs->kernel). */
void pfs_backing_register(struct pfs_fs *fs);

#endif
