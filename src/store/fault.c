/* fault: a store that fails on purpose, to reach the error paths of
 * copy-up, rename and commit that real faults rarely reach (SQLite's
 * swappable OS layer is the model). It passes every call to the store it
 * wraps, counting calls per kind, and fails the N-th call of a kind with
 * the errno asked for, before the inner store sees it: a failed call has
 * changed nothing, as a real failing system call mostly has.
 *
 * Counts are per store and atomic: requests on several threads count in
 * the order they reach the store, so a test that wants one exact failure
 * drives one operation at a time. */
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RULES 16

struct rule {
	enum pfs_st_kind kind;
	unsigned long nth;
	bool onward; /* the nth call and every later one */
	int err;
};

struct fault {
	struct pfs_store base;
	struct pfs_store *inner;
	struct rule rules[MAX_RULES];
	size_t nrules;
	unsigned long count[PFS_ST_NKINDS];
};

static const char *const kind_names[PFS_ST_NKINDS] = {
	[PFS_ST_OPEN] = "open",         [PFS_ST_STAT] = "stat",
	[PFS_ST_MKDIR] = "mkdir",       [PFS_ST_MKNOD] = "mknod",
	[PFS_ST_SYMLINK] = "symlink",   [PFS_ST_LINK] = "link",
	[PFS_ST_UNLINK] = "unlink",     [PFS_ST_RENAME] = "rename",
	[PFS_ST_READLINK] = "readlink", [PFS_ST_CHMOD] = "chmod",
	[PFS_ST_CHOWN] = "chown",       [PFS_ST_UTIMES] = "utimes",
	[PFS_ST_TRUNCATE] = "truncate", [PFS_ST_GETXATTR] = "getxattr",
	[PFS_ST_SETXATTR] = "setxattr", [PFS_ST_LISTXATTR] = "listxattr",
	[PFS_ST_RMXATTR] = "removexattr", [PFS_ST_SYNC] = "sync",
	[PFS_ST_COPY] = "copy",
};

const char *pfs_st_kind_name(enum pfs_st_kind k)
{
	return (unsigned)k < PFS_ST_NKINDS ? kind_names[k] : "?";
}

int pfs_st_kind_of(const char *name, size_t len)
{
	for (int k = 0; k < PFS_ST_NKINDS; k++)
		if (strlen(kind_names[k]) == len && strncmp(kind_names[k], name, len) == 0)
			return k;
	return -1;
}

static const struct {
	const char *name;
	int err;
} errnos[] = {
	{"EIO", EIO},       {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"ENOMEM", ENOMEM},
	{"EACCES", EACCES}, {"EPERM", EPERM},   {"EROFS", EROFS},   {"ENOENT", ENOENT},
	{"EEXIST", EEXIST}, {"EXDEV", EXDEV},   {"EINTR", EINTR},   {"ESTALE", ESTALE},
	{"EMFILE", EMFILE}, {"ENFILE", ENFILE}, {"EBUSY", EBUSY},   {"ENOTSUP", ENOTSUP},
};

static int parse_errno(const char *s, size_t len, int *out)
{
	char *end;
	long v;

	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (strlen(errnos[i].name) == len && strncmp(errnos[i].name, s, len) == 0) {
			*out = errnos[i].err;
			return 0;
		}
	v = strtol(s, &end, 10);
	if (end != s + len || len == 0 || v <= 0 || v > 4095)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* One item: KIND:N[-][:ERRNO]. */
static int parse_rule(const char *s, size_t len, struct rule *r, char *err, size_t errlen)
{
	const char *colon = memchr(s, ':', len), *end = s + len, *p;
	char *numend;
	int k;

	if (!colon)
		goto bad;
	k = pfs_st_kind_of(s, (size_t)(colon - s));
	if (k < 0) {
		snprintf(err, errlen, "PRISMFS_FAULT: unknown kind of call '%.*s'",
			 (int)(colon - s), s);
		return -EINVAL;
	}
	r->kind = (enum pfs_st_kind)k;
	p = colon + 1;
	if (p >= end || *p < '1' || *p > '9')
		goto bad;
	r->nth = strtoul(p, &numend, 10);
	p = numend;
	r->onward = p < end && *p == '-';
	if (r->onward)
		p++;
	r->err = EIO;
	if (p < end) {
		if (*p != ':' || parse_errno(p + 1, (size_t)(end - p - 1), &r->err) < 0)
			goto bad;
	}
	return 0;
bad:
	snprintf(err, errlen, "PRISMFS_FAULT: '%.*s' is not KIND:N[-][:ERRNO]", (int)len, s);
	return -EINVAL;
}

/* 0 to go on, or the -errno this call fails with. */
static int hit(struct pfs_store *st, enum pfs_st_kind k)
{
	struct fault *f = (struct fault *)st;
	unsigned long n = __atomic_add_fetch(&f->count[k], 1, __ATOMIC_RELAXED);

	for (size_t i = 0; i < f->nrules; i++) {
		const struct rule *r = &f->rules[i];

		if (r->kind == k && (n == r->nth || (r->onward && n > r->nth)))
			return -r->err;
	}
	return 0;
}

#define INNER(st) (((struct fault *)(st))->inner)
#define PASS(kind, call)                          \
	do {                                      \
		int fail_ = hit(st, kind);        \
		if (fail_)                        \
			return fail_;             \
		return INNER(st)->ops->call;      \
	} while (0)

static int f_open(struct pfs_store *st, int dirfd, const char *name, const struct open_how *how)
{
	PASS(PFS_ST_OPEN, open(INNER(st), dirfd, name, how));
}

static int f_stat(struct pfs_store *st, int dirfd, const char *name, struct stat *out, int flags)
{
	PASS(PFS_ST_STAT, stat(INNER(st), dirfd, name, out, flags));
}

static int f_mkdir(struct pfs_store *st, int dirfd, const char *name, mode_t mode)
{
	PASS(PFS_ST_MKDIR, mkdir(INNER(st), dirfd, name, mode));
}

static int f_mknod(struct pfs_store *st, int dirfd, const char *name, mode_t mode, dev_t dev)
{
	PASS(PFS_ST_MKNOD, mknod(INNER(st), dirfd, name, mode, dev));
}

static int f_symlink(struct pfs_store *st, const char *target, int dirfd, const char *name)
{
	PASS(PFS_ST_SYMLINK, symlink(INNER(st), target, dirfd, name));
}

static int f_link(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
		  const char *nname, int flags)
{
	PASS(PFS_ST_LINK, link(INNER(st), odirfd, oname, ndirfd, nname, flags));
}

static int f_unlink(struct pfs_store *st, int dirfd, const char *name, int flags)
{
	PASS(PFS_ST_UNLINK, unlink(INNER(st), dirfd, name, flags));
}

static int f_rename(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
		    const char *nname, unsigned flags)
{
	PASS(PFS_ST_RENAME, rename(INNER(st), odirfd, oname, ndirfd, nname, flags));
}

static ssize_t f_readlink(struct pfs_store *st, int dirfd, const char *name, char *buf,
			  size_t len)
{
	PASS(PFS_ST_READLINK, readlink(INNER(st), dirfd, name, buf, len));
}

static int f_chmod(struct pfs_store *st, struct pfs_ref r, mode_t mode)
{
	PASS(PFS_ST_CHMOD, chmod(INNER(st), r, mode));
}

static int f_chown(struct pfs_store *st, struct pfs_ref r, uid_t uid, gid_t gid)
{
	PASS(PFS_ST_CHOWN, chown(INNER(st), r, uid, gid));
}

static int f_utimes(struct pfs_store *st, struct pfs_ref r, const struct timespec ts[2])
{
	PASS(PFS_ST_UTIMES, utimes(INNER(st), r, ts));
}

static int f_truncate(struct pfs_store *st, int fd, off_t len)
{
	PASS(PFS_ST_TRUNCATE, truncate(INNER(st), fd, len));
}

static ssize_t f_getxattr(struct pfs_store *st, struct pfs_ref r, const char *name, void *buf,
			  size_t len)
{
	PASS(PFS_ST_GETXATTR, getxattr(INNER(st), r, name, buf, len));
}

static int f_setxattr(struct pfs_store *st, struct pfs_ref r, const char *name, const void *val,
		      size_t len, int flags)
{
	PASS(PFS_ST_SETXATTR, setxattr(INNER(st), r, name, val, len, flags));
}

static ssize_t f_listxattr(struct pfs_store *st, struct pfs_ref r, char *buf, size_t len)
{
	PASS(PFS_ST_LISTXATTR, listxattr(INNER(st), r, buf, len));
}

static int f_removexattr(struct pfs_store *st, struct pfs_ref r, const char *name)
{
	PASS(PFS_ST_RMXATTR, removexattr(INNER(st), r, name));
}

static int f_sync(struct pfs_store *st, int fd, bool data_only)
{
	PASS(PFS_ST_SYNC, sync(INNER(st), fd, data_only));
}

static int f_copy(struct pfs_store *st, int dst, int src, off_t size, bool clone,
		  pfs_st_tick *tick, void *arg)
{
	PASS(PFS_ST_COPY, copy(INNER(st), dst, src, size, clone, tick, arg));
}

static void f_release(struct pfs_store *st, int fd)
{
	pfs_st_release(INNER(st), fd);
}

static int f_flush(struct pfs_store *st, int fd)
{
	return pfs_st_flush(INNER(st), fd);
}

static void f_destroy(struct pfs_store *st)
{
	free(st);
}

static const struct pfs_store_ops fault_ops = {
	.open = f_open,
	.stat = f_stat,
	.mkdir = f_mkdir,
	.mknod = f_mknod,
	.symlink = f_symlink,
	.link = f_link,
	.unlink = f_unlink,
	.rename = f_rename,
	.readlink = f_readlink,
	.chmod = f_chmod,
	.chown = f_chown,
	.utimes = f_utimes,
	.truncate = f_truncate,
	.getxattr = f_getxattr,
	.setxattr = f_setxattr,
	.listxattr = f_listxattr,
	.removexattr = f_removexattr,
	.sync = f_sync,
	.copy = f_copy,
	.release = f_release,
	.flush = f_flush,
	.destroy = f_destroy,
};

struct pfs_store *pfs_store_fault_new(struct pfs_store *inner, const char *spec, char *err,
				      size_t errlen)
{
	struct fault *f = calloc(1, sizeof(*f));
	const char *p = spec;

	if (!f) {
		snprintf(err, errlen, "PRISMFS_FAULT: out of memory");
		return NULL;
	}
	f->base.ops = &fault_ops;
	f->base.name = "fault";
	f->inner = inner;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (f->nrules == MAX_RULES) {
			snprintf(err, errlen, "PRISMFS_FAULT: more than %d items", MAX_RULES);
			goto fail;
		}
		if (parse_rule(p, len, &f->rules[f->nrules], err, errlen) < 0)
			goto fail;
		f->nrules++;
		p += len + (comma ? 1 : 0);
	}
	if (!f->nrules) {
		snprintf(err, errlen, "PRISMFS_FAULT: empty");
		goto fail;
	}
	return &f->base;
fail:
	free(f);
	return NULL;
}

unsigned long pfs_store_fault_count(struct pfs_store *st, enum pfs_st_kind k)
{
	if (st->ops != &fault_ops || (unsigned)k >= PFS_ST_NKINDS)
		return 0;
	return __atomic_load_n(&((struct fault *)st)->count[k], __ATOMIC_RELAXED);
}

struct pfs_store *pfs_store_default(char *err, size_t errlen)
{
	const char *spec = getenv("PRISMFS_FAULT");

	if (!spec || !*spec)
		return pfs_store_local();
	return pfs_store_fault_new(pfs_store_local(), spec, err, errlen);
}
