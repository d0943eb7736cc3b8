#include "commit/failrec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* *path (to free): .NAME.prismfs-failed beside upper. */
static int record_path(const char *upper, char **path)
{
	const char *slash = strrchr(upper, '/');

	*path = NULL;
	if (!slash || !slash[1])
		return -EINVAL; /* "/" (or not absolute): nothing beside it */
	if (asprintf(path, "%.*s/.%s.prismfs-failed", (int)(slash - upper), upper,
		     slash + 1) < 0) {
		*path = NULL;
		return -ENOMEM;
	}
	return 0;
}

int pfs_failrec_write(const char *upper, const char *mountpoint, const char *msg)
{
	char *path, when[64];
	time_t now = time(NULL);
	struct stat st;
	struct tm tm;
	FILE *f;
	int fd, ret = record_path(upper, &path);

	if (ret < 0)
		return ret;
	if (!localtime_r(&now, &tm) || !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", &tm))
		snprintf(when, sizeof(when), "%lld", (long long)now);
	/* Never through a symlink, FIFO or device planted at its name; 0600:
	 * the error may name files of a private upper. */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = -EEXIST;
		close(fd);
		goto out;
	}
	f = fdopen(fd, "w");
	if (!f) {
		ret = -errno;
		close(fd);
		goto out;
	}
	fprintf(f, "%s: %s: %.*s\n", when, mountpoint, (int)strcspn(msg, "\n"), msg);
	if (fflush(f) != 0 || fsync(fileno(f)) < 0)
		ret = -errno;
	if (fclose(f) != 0 && ret == 0)
		ret = -errno;
out:
	free(path);
	return ret;
}

int pfs_failrec_take(const char *upper, char *buf, size_t len)
{
	char *path;
	struct stat st;
	ssize_t n;
	int fd, ret;

	if (len == 0)
		return -EINVAL;
	ret = record_path(upper, &path);
	if (ret < 0)
		return ret;
	/* O_NONBLOCK: a FIFO at the name must not hang the mount. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		ret = errno == ENOENT || errno == ELOOP ? 0 : -errno;
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = 0;
		goto out_close;
	}
	n = read(fd, buf, len - 1);
	if (n < 0) {
		ret = -errno;
		goto out_close;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	/* Reported once: the caller prints it. One that cannot be removed is
	 * reported again next time, which beats not at all. */
	unlink(path);
	ret = 1;
out_close:
	close(fd);
out:
	free(path);
	return ret;
}

void pfs_failrec_clear(const char *upper)
{
	char *path;
	struct stat st;

	/* Only a record: whatever else someone put at the name stays. */
	if (record_path(upper, &path) == 0 && lstat(path, &st) == 0 && S_ISREG(st.st_mode))
		unlink(path);
	free(path);
}
