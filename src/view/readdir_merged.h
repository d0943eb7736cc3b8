/* readdir_merged: a merged (layered) directory's READDIR without a
 * directory handle (stateless_dirs); see readdir_merged.c. */
#ifndef PFS_READDIR_MERGED_H
#define PFS_READDIR_MERGED_H

#include "view/view.h"

/* n's names from offset off into buf, as pfs_view_readdir. */
ssize_t pfs_readdir_merged(struct pfs_fs *fs, fuse_req_t req, struct pfs_node *n, char *buf,
			   size_t size, off_t off, bool plus);
/* Drop the listings kept for continuing READDIRs (at unmount). */
void pfs_readdir_merged_free(struct pfs_fs *fs);

#endif
