/* caller: the requester of this thread's request (see caller.h). */
#include "store/caller.h"

static _Thread_local struct pfs_caller tl_caller;

void pfs_caller_set(uid_t uid, gid_t gid, pid_t pid)
{
	tl_caller = (struct pfs_caller){.uid = uid, .gid = gid, .pid = pid};
}

struct pfs_caller pfs_caller_get(void)
{
	return tl_caller;
}
