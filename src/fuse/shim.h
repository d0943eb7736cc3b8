/* shim: sits between libfuse and /dev/fuse (fuse_session_custom_io). It
 * adds to the INIT reply what libfuse 3.14 cannot say — parallel directory
 * operations and kernel passthrough — and gives OPEN/CREATE replies their
 * passthrough backing id (made by backing.c). Nothing else knows it exists. */
#ifndef PFS_SHIM_H
#define PFS_SHIM_H

#include <stdbool.h>
#include <stddef.h>

struct pfs_fs;

/* Install the shim on the mounted session's fd. 0 or -errno. */
int pfs_shim_install(struct pfs_fs *fs);

/* Both request loops (/dev/fuse: loop.c, through the shim's read; io_uring:
 * uring.c) start and finish every request through these two, on the
 * thread that handles it.
 *
 * A request is about to be handled on this thread: note what its reply
 * needs. True when the transport has answered it itself (the lookup that
 * kicks an io_uring queue): it must not reach the handlers. */
bool pfs_shim_request(struct pfs_fs *fs, const void *buf, size_t len);
/* The request handled on this thread is answered (fs: struct pfs_fs *; the
 * type of loop.c's done callback). */
void pfs_shim_request_done(void *fs);

/* Did the kernel's INIT request offer FUSE passthrough? (valid in init) */
bool pfs_shim_kernel_offers_passthrough(struct pfs_fs *fs);

/* The reply about to be sent on this thread (to the OPEN or CREATE being
 * handled) should carry this backing id (the handler's, from struct
 * pfs_req). */
void pfs_shim_set_backing(int backing_id);

/* Does the request being handled on this thread ask the daemon to clear
 * set-ID bits (FUSE_HANDLE_KILLPRIV_V2: WRITE, OPEN/CREATE with O_TRUNC,
 * SETATTR of size or owner)? */
bool pfs_shim_kill_suidgid(void);

#endif
