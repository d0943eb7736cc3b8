/* layer: copy-on-write layers — a writable upper directory over read-only
 * lowers, in kernel overlayfs's on-disk format (whiteouts, opaque
 * directories, overlay xattrs), so an upper written here mounts under
 * `mount -t overlay` and the other way round. */
#ifndef PFS_LAYER_H
#define PFS_LAYER_H

#include <stddef.h>

#include "cli.h"

struct pfs_fs;

struct pfs_layer_spec {
	const char *upper;          /* writable; every change lands here */
	const char *work;           /* empty scratch directory on upper's filesystem */
	const char *const *lowers;  /* read-only, highest first; lowers[0] is SOURCE */
	size_t nlowers;
	enum pfs_whiteout whiteout;
};

/* Open the layers of spec for fs (whose root_fd is SOURCE, already open).
 * Checks them first: each exists and is a directory, upper is writable,
 * work is on upper's filesystem and neither inside the other, nothing is
 * the mount point or below it. 0, or -errno with one line in err. */
int pfs_layers_open(struct pfs_fs *fs, const struct pfs_layer_spec *spec, char *err,
		    size_t errlen);
/* Close what pfs_layers_open opened (after the session has ended). */
void pfs_layers_close(struct pfs_fs *fs);

#endif
