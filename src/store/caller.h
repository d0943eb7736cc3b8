/* caller: who asked for the operation this thread is doing — the process
 * behind the request the transport is handling (FUSE's request header),
 * set by the transport as each request starts, read by a store that
 * records changes (history/history.h). The store never includes the
 * transport: this is all of the request it sees. */
#ifndef PFS_CALLER_H
#define PFS_CALLER_H

#include <sys/types.h>

struct pfs_caller {
	uid_t uid;
	gid_t gid;
	pid_t pid; /* 0: no request (the daemon's own work) */
};

void pfs_caller_set(uid_t uid, gid_t gid, pid_t pid);
struct pfs_caller pfs_caller_get(void);

#endif
