#include "fuse/fuse_kabi.h"
#include "fuse/shim.h"
#include "fuse/uring.h"
#include "fuse/xport.h"
#include "view/view.h"
#include "store/caller.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* Kernel ABI (linux/fuse.h, protocol 7.40+); Debian 12's headers are older. */
#define K_FUSE_LOOKUP 1
#define K_FUSE_SETATTR 4
#define K_FUSE_OPEN 14
#define K_FUSE_WRITE 16
#define K_FUSE_INIT 26
#define K_FUSE_CREATE 35
#define K_FUSE_PARALLEL_DIROPS (1u << 18)
#define K_FUSE_HANDLE_KILLPRIV_V2 (1u << 28)
#define K_FUSE_INIT_EXT (1u << 30)
#define K_FUSE_PASSTHROUGH_FLAGS2 (1u << 5) /* bit 37 */
#define K_FOPEN_PASSTHROUGH (1u << 7)
#define K_FUSE_WRITE_KILL_SUIDGID (1u << 2)  /* fuse_write_in.write_flags */
#define K_FUSE_OPEN_KILL_SUIDGID (1u << 0)   /* fuse_open_in/fuse_create_in.open_flags */
#define K_FATTR_KILL_SUIDGID (1u << 11)      /* fuse_setattr_in.valid */

struct k_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};

/* libfuse 3.14's multi-threaded loop reads a request and writes its reply
 * on the same thread; this is what ties a reply to its request. */
static _Thread_local uint64_t tl_unique;
static _Thread_local uint32_t tl_opcode;
static _Thread_local int tl_backing_id;
static _Thread_local bool tl_kill_suidgid;

bool pfs_shim_kill_suidgid(void)
{
	return tl_kill_suidgid;
}

/* The request's flag word at byte `off` of its body, if the body has it. */
static bool body_flag(const void *buf, ssize_t n, size_t off, uint32_t bit)
{
	uint32_t v;

	if ((size_t)n < sizeof(struct k_in_header) + off + sizeof(v))
		return false;
	memcpy(&v, (const char *)buf + sizeof(struct k_in_header) + off, sizeof(v));
	return (v & bit) != 0;
}

void pfs_shim_set_backing(int backing_id)
{
	tl_backing_id = backing_id;
}

bool pfs_shim_kernel_offers_passthrough(struct pfs_fs *fs)
{
	return fs->xport->kernel_passthrough;
}

/* The lookup of the root name that unsticks an io_uring queue (uring.c:
 * kick): the kernel must only see it answered, at once. */
static bool is_kick(struct pfs_fs *fs, const void *buf, size_t len)
{
	struct pfs_xport *xp = fs->xport;
	const struct k_in_header *h = buf;
	const char *name = (const char *)buf + sizeof(*h);
	struct pfs_uring *u = __atomic_load_n(&xp->uring, __ATOMIC_RELAXED);

	if (!u || h->opcode != K_FUSE_LOOKUP || h->nodeid != FUSE_ROOT_ID)
		return false;
	return memchr(name, '\0', len - sizeof(*h)) && pfs_uring_is_kick(u, name);
}

bool pfs_shim_request(struct pfs_fs *fs, const void *buf, size_t len)
{
	struct pfs_xport *xp = fs->xport;
	const struct k_in_header *h = buf;
	ssize_t n = (ssize_t)len;

	if (n < (ssize_t)sizeof(*h))
		return false;
	if (is_kick(fs, buf, len))
		return true;
	tl_unique = h->unique;
	pfs_caller_set(h->uid, h->gid, (pid_t)h->pid);
	tl_opcode = h->opcode;
	tl_backing_id = 0;
	/* Set when the caller lacks CAP_FSETID (and, for a chown, always):
	 * the daemon must clear set-ID bits, as the VFS would for the caller. */
	switch (h->opcode) {
	case K_FUSE_WRITE:
		tl_kill_suidgid = body_flag(buf, n, 20, K_FUSE_WRITE_KILL_SUIDGID);
		break;
	case K_FUSE_OPEN:
		tl_kill_suidgid = body_flag(buf, n, 4, K_FUSE_OPEN_KILL_SUIDGID);
		break;
	case K_FUSE_CREATE:
		tl_kill_suidgid = body_flag(buf, n, 12, K_FUSE_OPEN_KILL_SUIDGID);
		break;
	case K_FUSE_SETATTR:
		tl_kill_suidgid = body_flag(buf, n, 0, K_FATTR_KILL_SUIDGID);
		break;
	default:
		tl_kill_suidgid = false;
	}
	if (h->opcode == K_FUSE_INIT && n >= (ssize_t)sizeof(*h) + 20) {
		uint32_t flags, flags2;

		memcpy(&flags, (char *)buf + sizeof(*h) + 12, 4);
		memcpy(&flags2, (char *)buf + sizeof(*h) + 16, 4);
		xp->kernel_passthrough = (flags & K_FUSE_INIT_EXT) &&
					 (flags2 & K_FUSE_PASSTHROUGH_FLAGS2);
		xp->killpriv_v2 = (flags & K_FUSE_HANDLE_KILLPRIV_V2) != 0;
		xp->kernel_uring = (flags & K_FUSE_INIT_EXT) && (flags2 & PFS_URING_INIT_FLAGS2);
	}
	return false;
}

void pfs_shim_request_done(void *fs)
{
	pfs_node_request_done(fs);
}

static ssize_t shim_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	if (n > 0 && pfs_shim_request(userdata, buf, (size_t)n)) {
		const struct k_in_header *h = buf;
		struct k_out_header oh = {.len = sizeof(oh), .error = -ENOENT, .unique = h->unique};

		/* An error reply is not cached. libfuse takes EINTR as "read
		 * again" (loop.c does); the answered request never reaches it. */
		if (write(fd, &oh, sizeof(oh)) < 0)
			fuse_log(FUSE_LOG_ERR, "prismfs: cannot answer a kick: %s\n",
				 strerror(errno));
		errno = EINTR;
		return -1;
	}
	return n;
}

/* Byte `off` of the reply payload (after the out header), across iovecs. */
static void *payload_at(struct iovec *iov, int count, size_t off, size_t want)
{
	for (int i = 1; i < count; i++) {
		if (off + want <= iov[i].iov_len)
			return (char *)iov[i].iov_base + off;
		if (off < iov[i].iov_len)
			return NULL; /* straddles two iovecs: libfuse never does this */
		off -= iov[i].iov_len;
	}
	return NULL;
}

static void patch_init(struct pfs_fs *fs, struct iovec *iov, int count)
{
	struct pfs_xport *xp = fs->xport;

	/* fuse_init_out: flags at 12, flags2 at 32, max_stack_depth at 36. */
	uint32_t *flags = payload_at(iov, count, 12, 4);
	uint32_t *flags2 = payload_at(iov, count, 32, 4);
	uint32_t *depth = payload_at(iov, count, 36, 4);

	if (!flags)
		return;
	*flags |= K_FUSE_PARALLEL_DIROPS;
	/* Without it the kernel asks for security.capability (a GETXATTR round
	 * trip) before every write(), passthrough writes included. With it, it
	 * asks once per attribute refresh and leaves set-ID clearing to us. */
	if (xp->killpriv_v2)
		*flags |= K_FUSE_HANDLE_KILLPRIV_V2;
	if (xp->passthrough_active && flags2 && depth) {
		*flags |= K_FUSE_INIT_EXT;
		*flags2 |= K_FUSE_PASSTHROUGH_FLAGS2;
		*depth = (uint32_t)xp->stack_depth;
	}
	if (xp->uring) {
		/* fuse_init_out: max_write at 20, max_pages (u16) at 28. The
		 * kernel refuses ring buffers smaller than either. */
		uint32_t *max_write = payload_at(iov, count, 20, 4);
		uint16_t *max_pages = payload_at(iov, count, 28, 2);
		size_t need = max_write ? *max_write : SIZE_MAX;

		if (max_pages && (size_t)*max_pages * 4096 > need)
			need = (size_t)*max_pages * 4096;
		if (flags2 && need <= pfs_uring_payload(xp->uring)) {
			*flags |= K_FUSE_INIT_EXT;
			*flags2 |= PFS_URING_INIT_FLAGS2;
		} else {
			pfs_uring_stop(xp->uring);
			xp->uring = NULL;
			snprintf(xp->requests_reason, sizeof(xp->requests_reason),
				 "/dev/fuse: the kernel's largest request does not fit the "
				 "io_uring buffers");
		}
	}
}

static void patch_open(struct iovec *iov, int count, size_t payload_len)
{
	struct k_open_out *o;

	/* OPEN: fuse_open_out alone; CREATE: fuse_entry_out then fuse_open_out. */
	if (payload_len < sizeof(*o))
		return;
	o = payload_at(iov, count, payload_len - sizeof(*o), sizeof(*o));
	if (!o)
		return;
	o->open_flags |= K_FOPEN_PASSTHROUGH;
	o->backing_id = tl_backing_id;
}

static ssize_t shim_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct pfs_fs *fs = userdata;
	struct pfs_xport *xp = fs->xport;
	struct k_out_header *oh = iov[0].iov_base;

	if (count >= 2 && iov[0].iov_len == sizeof(*oh) && oh->error == 0 &&
	    oh->unique == tl_unique) {
		size_t payload = oh->len - sizeof(*oh);

		if (tl_opcode == K_FUSE_INIT)
			patch_init(fs, iov, count);
		else if ((tl_opcode == K_FUSE_OPEN || tl_opcode == K_FUSE_CREATE) &&
			 tl_backing_id > 0)
			patch_open(iov, count, payload);
	}
	if (oh->unique == tl_unique)
		tl_backing_id = 0;
	if (pfs_uring_claims(oh->unique))
		return pfs_uring_reply(iov, count);
	if (tl_opcode == K_FUSE_INIT && oh->unique == tl_unique && xp->uring) {
		ssize_t n = writev(fd, iov, count);

		/* The kernel now waits for an entry on every queue. */
		if (n >= 0 && oh->error == 0) {
			pfs_uring_start(xp->uring);
		} else {
			pfs_uring_stop(xp->uring);
			xp->uring = NULL;
		}
		return n;
	}
	return writev(fd, iov, count);
}

static ssize_t shim_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
				unsigned int flags, void *userdata)
{
	/* libfuse splices only the reply to the request on this thread. */
	if (pfs_uring_claims(tl_unique))
		return pfs_uring_reply_pipe(fdin, len);
	return splice(fdin, offin, fdout, offout, len, flags);
}

int pfs_shim_install(struct pfs_fs *fs)
{
	struct pfs_xport *xp = fs->xport;

	static const struct fuse_custom_io io = {
		.read = shim_read,
		.writev = shim_writev,
		.splice_send = shim_splice_send,
	};
	int ret = fuse_session_custom_io(xp->se, &io, fuse_session_fd(xp->se));

	return ret < 0 ? ret : 0;
}
