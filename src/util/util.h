/* util: small pure helpers shared by the daemon and the CLI. */
#ifndef PFS_UTIL_H
#define PFS_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#define PFS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Is -err a shortage of memory or descriptors (the whole call fails),
 * rather than a problem of one name (which then fails alone)? */
static inline bool pfs_err_resource(int err)
{
	return err == -ENOMEM || err == -EMFILE || err == -ENFILE;
}

/* "ENOENT" for 2; "E123" for numbers glibc does not name. buf >= 16. */
const char *pfs_errname(int err, char *buf, size_t len);

/* Strict decimal parse of a whole string into [min, max]. 0 or -EINVAL. */
int pfs_parse_long(const char *s, long min, long max, long *out);
/* Strict parse of a non-negative decimal number of seconds (e.g. "0.5"). */
int pfs_parse_seconds(const char *s, double *out);

/* A byte count with an optional K, M or G suffix (powers of 1024). */
int pfs_parse_size(const char *s, size_t *out);

/* ISO 8601 UTC with microseconds: 2026-11-21T14:00:00.123456Z. len >= 32. */
void pfs_fmt_time(const struct timespec *ts, char *buf, size_t len);
uint64_t pfs_now_ns(void);

/* Raise this process's limit of open files as far as the system allows
 * (/proc/sys/fs/nr_open when permitted, else the hard limit). */
void pfs_raise_fd_limit(void);

/* Does this process have capability `cap` (linux/capability.h number) in
 * its effective set? Reads /proc/self/status; false when it cannot. */
bool pfs_cap_effective(unsigned cap);

/* Make the mount at path refuse to follow symlinks (nosymfollow), which
 * libfuse cannot ask for. 0 or -errno (EPERM without CAP_SYS_ADMIN over
 * the mount, ENOSYS before Linux 5.12). */
int pfs_mount_nosymfollow(const char *path);

/* A new memory file (memfd, close-on-exec) holding the n bytes at buf, as a
 * descriptor to read: what a symlink's target, shown as file data, needs.
 * The fd, or -errno. */
int pfs_memfd_of(const char *name, const void *buf, size_t n);

/* One line of /proc/self/mountinfo that matters to us. */
struct pfs_mntent {
	unsigned major, minor;
	char mountpoint[4096];
	char fstype[64];
	char source[4096];
};

/* Find the topmost (last listed) mount whose mount point is exactly `path`
 * (already canonical). 0 and *out filled, -ENOENT if none, -EIO on a
 * malformed file. */
int pfs_mountinfo_find(FILE *mountinfo, const char *path, struct pfs_mntent *out);

/* Is path a FUSE mount whose daemon is gone (killed: the mount stays, and
 * the kernel answers every access to it with ENOTCONN)? */
bool pfs_mount_is_dead(const char *path);

/* Decode mountinfo's octal escapes (\040 etc.) in place. */
void pfs_mountinfo_unescape(char *s);

/* A single path component the kernel may send: not empty, no '/',
 * not "." or "..", at most NAME_MAX bytes. */
bool pfs_valid_name(const char *name);

/* The virtual path dir/name ("/name" for the root "/"), malloc'd or NULL. */
char *pfs_path_join(const char *dir, const char *name);

/* realpath(path) of an existing directory in *out (malloc'd; NULL on
 * failure) and its stat, or -errno with one line in err naming `what`. */
int pfs_canon_dir(const char *what, const char *path, char **out, struct stat *st, char *err,
		  size_t errlen);

/* Tests make the process die for real at a named step:
 * PRISMFS_TEST_CRASH=<step> raises SIGKILL there, PRISMFS_TEST_CRASH=<step>:N
 * the Nth time the step is reached. */
void pfs_crashpoint(const char *step);
/* Is PRISMFS_TEST_CRASH set (to skip naming steps otherwise)? */
bool pfs_crash_enabled(void);

#endif
