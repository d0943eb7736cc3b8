#include "util/util.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

const char *pfs_errname(int err, char *buf, size_t len)
{
	const char *n = err > 0 ? strerrorname_np(err) : NULL;

	if (n)
		return n;
	snprintf(buf, len, "E%d", err);
	return buf;
}

int pfs_parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s || !*s || *s == ' ' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int pfs_parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	if (!s || !*s || !((*s >= '0' && *s <= '9') || *s == '.'))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	/* Past about 68 years the kernel's timeout arithmetic saturates anyway. */
	if (errno || *end || v != v || v < 0 || v > 2e9)
		return -EINVAL;
	*out = v;
	return 0;
}

int pfs_parse_size(const char *s, size_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	default: break;
	}
	if (*end || v > (SIZE_MAX >> shift))
		return -EINVAL;
	*out = (size_t)v << shift;
	return 0;
}

void pfs_fmt_time(const struct timespec *ts, char *buf, size_t len)
{
	struct tm tm;
	char base[24];

	gmtime_r(&ts->tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06ldZ", base, ts->tv_nsec / 1000);
}

uint64_t pfs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool pfs_cap_effective(unsigned cap)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	unsigned long long eff = 0;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	fclose(f);
	return cap < 64 && (eff & (1ULL << cap));
}

void pfs_mountinfo_unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER */
static int parse_line(char *line, struct pfs_mntent *e)
{
	char *save = NULL, *tok;
	int field = 0;
	bool after_sep = false;
	int post = 0;

	for (tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		if (after_sep) {
			if (post == 0)
				snprintf(e->fstype, sizeof(e->fstype), "%s", tok);
			else if (post == 1)
				snprintf(e->source, sizeof(e->source), "%s", tok);
			post++;
			continue;
		}
		switch (field) {
		case 2:
			if (sscanf(tok, "%u:%u", &e->major, &e->minor) != 2)
				return -EIO;
			break;
		case 4:
			if (strlen(tok) >= sizeof(e->mountpoint))
				return -EIO;
			strcpy(e->mountpoint, tok);
			pfs_mountinfo_unescape(e->mountpoint);
			break;
		default:
			if (field >= 6 && strcmp(tok, "-") == 0)
				after_sep = true;
		}
		field++;
	}
	if (!after_sep || post < 1)
		return -EIO;
	pfs_mountinfo_unescape(e->source);
	return 0;
}

int pfs_mountinfo_find(FILE *f, const char *path, struct pfs_mntent *out)
{
	char *line = NULL;
	size_t cap = 0;
	int found = -ENOENT;
	struct pfs_mntent *e = malloc(sizeof(*e));

	if (!e)
		return -ENOMEM;
	while (getline(&line, &cap, f) > 0) {
		memset(e, 0, sizeof(*e));
		if (parse_line(line, e) < 0) {
			found = -EIO;
			break;
		}
		if (strcmp(e->mountpoint, path) == 0) {
			*out = *e;
			found = 0;
		}
	}
	free(line);
	free(e);
	return found;
}

bool pfs_mount_is_dead(const char *path)
{
	struct statfs sf;

	/* statfs, not stat: the kernel may answer stat from attributes it
	 * cached before the daemon died; STATFS always goes to the daemon. */
	return statfs(path, &sf) < 0 && errno == ENOTCONN;
}

bool pfs_valid_name(const char *name)
{
	size_t n;

	if (!name)
		return false;
	n = strnlen(name, NAME_MAX + 1);
	if (n == 0 || n > NAME_MAX || strchr(name, '/'))
		return false;
	return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

int pfs_canon_dir(const char *what, const char *path, char **out, struct stat *st, char *err,
		  size_t errlen)
{
	char *p = realpath(path, NULL);
	int ret;

	*out = NULL;
	if (!p) {
		ret = -errno;
		if (ret == -ENOENT)
			snprintf(err, errlen, "%s %s does not exist", what, path);
		else
			snprintf(err, errlen, "%s %s: %s", what, path, strerror(-ret));
		return ret;
	}
	if (stat(p, st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(-ret));
		free(p);
		return ret;
	}
	if (!S_ISDIR(st->st_mode)) {
		snprintf(err, errlen, "%s %s is not a directory", what, path);
		free(p);
		return -ENOTDIR;
	}
	*out = p;
	return 0;
}

char *pfs_path_join(const char *dir, const char *name)
{
	char *out;

	if (asprintf(&out, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name) < 0)
		return NULL;
	return out;
}

int pfs_mount_nosymfollow(const char *path)
{
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSYMFOLLOW};

	if (syscall(SYS_mount_setattr, AT_FDCWD, path, 0, &attr, sizeof(attr)) < 0)
		return -errno;
	return 0;
}

void pfs_raise_fd_limit(void)
{
	struct rlimit rl;
	FILE *f;
	unsigned long long nr_open = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	f = fopen("/proc/sys/fs/nr_open", "re");
	if (f) {
		if (fscanf(f, "%llu", &nr_open) != 1)
			nr_open = 0;
		fclose(f);
	}
	if (nr_open > rl.rlim_max) {
		struct rlimit want = {.rlim_cur = nr_open, .rlim_max = nr_open};

		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

bool pfs_crash_enabled(void)
{
	return getenv("PRISMFS_TEST_CRASH") != NULL;
}

void pfs_crashpoint(const char *step)
{
	static unsigned long hits;
	const char *want = getenv("PRISMFS_TEST_CRASH");
	unsigned long nth = 1;
	size_t n;

	if (!want)
		return;
	n = strcspn(want, ":");
	if (strlen(step) != n || strncmp(want, step, n) != 0)
		return;
	if (want[n])
		nth = strtoul(want + n + 1, NULL, 10);
	if (__atomic_add_fetch(&hits, 1, __ATOMIC_SEQ_CST) >= nth)
		raise(SIGKILL);
}

int pfs_memfd_of(const char *name, const void *buf, size_t n)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (pwrite(fd, buf, n, 0) != (ssize_t)n) {
		close(fd);
		return -EIO;
	}
	return fd;
}
