/* caller: the requester of this thread's request (see caller.h). */
#include "store/caller.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static _Thread_local struct pfs_caller tl_caller;

void pfs_caller_set(uid_t uid, gid_t gid, pid_t pid)
{
	tl_caller = (struct pfs_caller){.uid = uid, .gid = gid, .pid = pid};
}

struct pfs_caller pfs_caller_get(void)
{
	return tl_caller;
}

/* The fourth id of a status line "Uid:\treal\teffective\tsaved\tfs". */
static bool fs_id(const char *line, unsigned long *id)
{
	unsigned long r, e, s;

	return sscanf(line, "%lu %lu %lu %lu", &r, &e, &s, id) == 4;
}

/* Why /proc/PID/status, and why it is sound enough. The kernel does not
 * send the answer (its FUSE_SETXATTR_ACL_KILL_SGID travels only in
 * FUSE_SETXATTR_EXT's larger request, which libfuse 3.14 cannot parse),
 * so the daemon reads the credentials of the thread FUSE names (the pid
 * in the request header is the calling thread's, and creds are per
 * thread, as /proc/TID/status shows them). Three things could make the
 * answer someone else's, and each is made to answer "not capable", which
 * only ever clears a bit the kernel might have kept:
 *  - pid reuse: the caller waits in its system call, so its pid lives
 *    until the reply unless it is killed meanwhile. The files are read
 *    through one /proc/PID directory fd (a later process under the same
 *    pid is not reachable through it), and its fs ids must be the
 *    request's: a reused pid would have to belong to a process of the
 *    same user that holds the capability itself;
 *  - user namespaces: CapEff counts in the caller's own user namespace,
 *    and the kernel honours it only for files whose owners map there
 *    (capable_wrt_inode_uidgid()); a caller in another namespace than
 *    the daemon's is taken to lack it;
 *  - pid namespaces: a pid of another /proc than the connection's finds
 *    another process, or none; the id and namespace checks refuse it. */
bool pfs_caller_capable(const struct pfs_caller *c, int cap)
{
	char path[32], line[256];
	struct stat self_ns, its_ns;
	unsigned long uid = ~0UL, gid = ~0UL;
	uint64_t eff = 0;
	bool have_eff = false;
	FILE *f;
	int dfd, fd;

	if (c->pid <= 0 || cap < 0 || cap > 63)
		return false;
	snprintf(path, sizeof(path), "/proc/%d", (int)c->pid);
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return false;
	if (stat("/proc/self/ns/user", &self_ns) < 0 || fstatat(dfd, "ns/user", &its_ns, 0) < 0 ||
	    self_ns.st_dev != its_ns.st_dev || self_ns.st_ino != its_ns.st_ino) {
		close(dfd);
		return false;
	}
	fd = openat(dfd, "status", O_RDONLY | O_CLOEXEC);
	close(dfd);
	f = fd < 0 ? NULL : fdopen(fd, "r");
	if (!f) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Uid:", 4) == 0 && !fs_id(line + 4, &uid))
			uid = ~0UL;
		else if (strncmp(line, "Gid:", 4) == 0 && !fs_id(line + 4, &gid))
			gid = ~0UL;
		else if (strncmp(line, "CapEff:", 7) == 0)
			have_eff = sscanf(line + 7, "%" SCNx64, &eff) == 1;
	}
	fclose(f);
	return have_eff && uid == (unsigned long)c->uid && gid == (unsigned long)c->gid &&
	       (eff >> cap & 1);
}
