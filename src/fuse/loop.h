/* loop: the FUSE session loop (see loop.c for why it is not libfuse's). */
#ifndef PFS_LOOP_H
#define PFS_LOOP_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

/* Serve se until it ends, with at most max_threads workers, calling
 * done(arg) on the worker after each request. Returns 0 when the kernel or
 * a signal ended the session, or a negative errno. */
int pfs_loop_run(struct fuse_session *se, unsigned max_threads, void (*done)(void *),
		 void *arg);

#endif
