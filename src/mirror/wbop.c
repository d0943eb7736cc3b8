#include "mirror/wbop.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const kind_names[PFS_WB_NKINDS] = {
	[PFS_WB_MKDIR] = "mkdir",     [PFS_WB_CREATE] = "create", [PFS_WB_SYMLINK] = "symlink",
	[PFS_WB_MKNOD] = "mknod",     [PFS_WB_LINK] = "link",     [PFS_WB_UNLINK] = "unlink",
	[PFS_WB_RMDIR] = "rmdir",     [PFS_WB_RENAME] = "rename", [PFS_WB_DATA] = "data",
	[PFS_WB_ATTR] = "attr",       [PFS_WB_SETXATTR] = "setxattr",
	[PFS_WB_RMXATTR] = "removexattr",
};

const char *pfs_wb_kind_name(enum pfs_wb_kind k)
{
	return (unsigned)k < PFS_WB_NKINDS ? kind_names[k] : "?";
}

struct pfs_wb_op *pfs_wb_op_new(enum pfs_wb_kind k, const char *path)
{
	struct pfs_wb_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->kind = k;
	op->fd = -1;
	op->datafd = -1;
	op->path = strdup(path);
	if (!op->path) {
		free(op);
		return NULL;
	}
	return op;
}

void pfs_wb_op_free(struct pfs_wb_op *op)
{
	if (!op)
		return;
	if (op->fd >= 0)
		close(op->fd);
	if (op->datafd >= 0)
		close(op->datafd);
	free(op->path);
	free(op->path2);
	free(op->target);
	free(op->xname);
	free(op->xval);
	free(op);
}
