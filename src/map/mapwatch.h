/* mapwatch: the sources of mapping tables (a watched file or a named pipe)
 * and what the status command says about them. */
#ifndef PFS_MAPWATCH_H
#define PFS_MAPWATCH_H

#include <jansson.h>
#include <stddef.h>

#include "view/view.h"

/* Before mounting: check the source and, for a file, read and validate the
 * first table (fs->map). On error, one line in err and -errno. */
int pfs_mapwatch_prepare(struct pfs_fs *fs, const char *path, size_t cap, char *err,
			 size_t errlen);
/* Once the kernel answered INIT: start following the source. */
int pfs_mapwatch_start(struct pfs_fs *fs);
/* Stop following (joins the thread); the table stays. */
void pfs_mapwatch_stop(struct pfs_fs *fs);
void pfs_mapwatch_free(struct pfs_mapwatch *w);
/* {source, kind, generation, applied_at, entries, rejected, last_rejected_*} */
json_t *pfs_mapwatch_status(struct pfs_fs *fs);

#endif
