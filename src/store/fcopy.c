#include "store/fcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define CHUNK (8u << 20)
#define CMP_CHUNK (256u << 10)

int pfs_fcopy_clone(int dst, int src)
{
	return ioctl(dst, FICLONE, src) < 0 ? -errno : 0;
}

bool pfs_fcopy_clone_unsupported(int err)
{
	return err == -EOPNOTSUPP || err == -ENOTTY || err == -EXDEV || err == -EINVAL ||
	       err == -ENOSYS;
}

static int copy_rw(int dst, int src, off_t off, off_t end)
{
	char *buf = malloc(CMP_CHUNK);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	while (off < end) {
		size_t want = (size_t)(end - off) < CMP_CHUNK ? (size_t)(end - off) : CMP_CHUNK;
		ssize_t n = pread(src, buf, want, off), w;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		if (n == 0) /* shrank meanwhile: the rest reads as zeros */
			break;
		for (ssize_t done = 0; done < n; done += w) {
			w = pwrite(dst, buf + done, (size_t)(n - done), off + done);
			if (w < 0 && errno == EINTR) {
				w = 0;
				continue;
			}
			if (w < 0) {
				ret = -errno;
				goto out;
			}
		}
		off += n;
	}
out:
	free(buf);
	return ret;
}

/* One data extent [off, end): in-kernel copy where possible. */
static int copy_range(int dst, int src, off_t off, off_t end, bool *no_cfr,
		      pfs_fcopy_tick *tick, void *arg)
{
	while (off < end) {
		size_t want = (size_t)(end - off) < CHUNK ? (size_t)(end - off) : CHUNK;
		loff_t in = off, out = off;
		ssize_t n = -1;
		int ret;

		if (!*no_cfr)
			n = copy_file_range(src, &in, dst, &out, want, 0);
		if (n < 0 && !*no_cfr && errno == EINTR)
			continue;
		if (n < 0 && !*no_cfr && errno != EXDEV && errno != EINVAL && errno != ENOSYS &&
		    errno != EOPNOTSUPP && errno != EBADF)
			return -errno;
		if (n < 0) {
			*no_cfr = true;
			ret = copy_rw(dst, src, off, off + (off_t)want);
			if (ret < 0)
				return ret;
			n = (ssize_t)want;
		}
		if (n == 0)
			break;
		off += n;
		if (tick)
			tick(arg, (uint64_t)n);
	}
	return 0;
}

int pfs_fcopy_data(int dst, int src, off_t size, pfs_fcopy_tick *tick, void *arg)
{
	bool no_cfr = false;
	off_t pos = 0;
	int ret;

	while (pos < size) {
		off_t data = lseek(src, pos, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break; /* only a hole is left */
		if (data < 0) {
			/* No SEEK_DATA here: all of it is data. */
			data = pos;
			hole = size;
		} else {
			if (data >= size)
				break;
			hole = lseek(src, data, SEEK_HOLE);
			if (hole < 0 || hole > size)
				hole = size;
		}
		ret = copy_range(dst, src, data, hole, &no_cfr, tick, arg);
		if (ret < 0)
			return ret;
		pos = hole;
	}
	return ftruncate(dst, size) < 0 ? -errno : 0;
}

static ssize_t read_full(int fd, char *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int pfs_fcopy_same(int a, int b, off_t size, bool *same, pfs_fcopy_tick *tick, void *arg)
{
	char *ba = malloc(CMP_CHUNK), *bb = malloc(CMP_CHUNK);
	off_t off = 0;
	int ret = 0;

	*same = false;
	if (!ba || !bb) {
		ret = -ENOMEM;
		goto out;
	}
	while (off < size) {
		size_t want = (size_t)(size - off) < CMP_CHUNK ? (size_t)(size - off) : CMP_CHUNK;
		ssize_t na = read_full(a, ba, want, off), nb;

		if (na < 0) {
			ret = (int)na;
			goto out;
		}
		nb = read_full(b, bb, want, off);
		if (nb < 0) {
			ret = (int)nb;
			goto out;
		}
		if (na != nb || (size_t)na != want || memcmp(ba, bb, want) != 0)
			goto out;
		off += (off_t)want;
		if (tick)
			tick(arg, want);
	}
	*same = true;
out:
	free(ba);
	free(bb);
	return ret;
}
