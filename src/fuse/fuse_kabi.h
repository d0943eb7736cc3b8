/* fuse_kabi: the kernel's FUSE message headers (linux/fuse.h), for the
 * code that reads and writes requests below libfuse (shim.c, uring.c). */
#ifndef PFS_FUSE_KABI_H
#define PFS_FUSE_KABI_H

#include <stdint.h>

struct k_in_header {
	uint32_t len, opcode;
	uint64_t unique, nodeid;
	uint32_t uid, gid, pid;
	uint16_t total_extlen, padding;
};

struct k_out_header {
	uint32_t len;
	int32_t error;
	uint64_t unique;
};

#endif
