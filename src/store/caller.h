/* caller: who asked for the operation this thread is doing — the process
 * behind the request the transport is handling (FUSE's request header),
 * set by the transport as each request starts, read by a store that
 * records changes (history/history.h). The store never includes the
 * transport: this is all of the request it sees. */
#ifndef PFS_CALLER_H
#define PFS_CALLER_H

#include <stdbool.h>
#include <sys/types.h>

struct pfs_caller {
	uid_t uid;
	gid_t gid;
	pid_t pid; /* 0: no request (the daemon's own work) */
};

void pfs_caller_set(uid_t uid, gid_t gid, pid_t pid);
struct pfs_caller pfs_caller_get(void);

/* Does the caller c (the requester's thread, by the pid FUSE gives) hold
 * capability cap (CAP_*) in its effective set, in the daemon's own user
 * namespace? false whenever that cannot be told for sure (see caller.c). */
bool pfs_caller_capable(const struct pfs_caller *c, int cap);

#endif
