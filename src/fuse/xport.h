/* xport: the transport's own state, one per mount. struct pfs_fs points
 * at it (fs->xport) without knowing what is inside: only src/fuse/, and
 * the code that mounts and reports on the mount (cli/daemon.c, ctl/ctl.c),
 * include this header. */
#ifndef PFS_XPORT_H
#define PFS_XPORT_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <stdbool.h>

struct pfs_uring;
struct pfs_fs;

struct pfs_xport {
	struct fuse_session *se;
	int ready_fd;            /* background: tell the parent once INIT is done */
	int init_failed;         /* INIT refused the mount (told to the parent) */
	bool kernel_passthrough; /* the kernel's INIT offered FUSE passthrough */
	bool passthrough_active; /* ... and this mount uses it (fs->passthrough) */
	bool killpriv_v2;        /* the daemon clears set-ID bits on write,
				  * truncate and chown (FUSE_HANDLE_KILLPRIV_V2) */
	int stack_depth;         /* max_stack_depth given to the kernel */
	char data_path_reason[160];
	bool kernel_uring;       /* the kernel's INIT offered FUSE over io_uring */
	struct pfs_uring *uring; /* the rings, once prepared (uring.h), or NULL */
	char requests_reason[160]; /* how requests arrive, and why */
	unsigned long backing_open; /* backing ids held now (atomic) */
	/* Called once INIT is answered, to decide what the mount can do with
	 * what the kernel offered and tell the parent (cli/daemon.c): set by
	 * whoever mounts, so the transport never calls up into it. */
	void (*init_done)(struct pfs_fs *fs);
};

#define PFS_XPORT_INIT {.ready_fd = -1}

#endif
