/* uring_kick: the throwaway lookup that makes a queue whose threads are
 * all stuck take up a waiting request (uring.c, kick()). */
#ifndef PFS_URING_KICK_H
#define PFS_URING_KICK_H

/* Look up MOUNTPOINT/NAME from CPU cpu, in the background (a short thread
 * and its child process); failures are silent: the queue waits. */
void pfs_uring_kick_start(unsigned cpu, const char *mountpoint, const char *name);

#endif
