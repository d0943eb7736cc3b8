/* s3_check: drives every operation of the S3 remote (src/mirror/s3.c)
 * against a real S3 server and checks what came back. Not a meson test
 * (it needs the server): tests/integration/test_remote_s3.py runs it
 * against a Ceph RADOS Gateway and then checks the bucket with curl.
 *
 *   s3_check all   s3://BUCKET/PREFIX   every operation (leaves kept/ behind)
 *   s3_check creds s3://BUCKET/PREFIX   open with the credentials found, put, get
 *   s3_check open  s3://BUCKET/PREFIX   open only; prints the error
 *
 * Endpoint and region from S3_ENDPOINT, S3_REGION; credentials as
 * pfs_s3_open finds them (AWS_* or ~/.aws/credentials). Prints "ok NAME"
 * per check; the first failure prints "FAIL ..." and exits 1. */
#include "mirror/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char err[512];

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("FAIL ", stdout);
	vprintf(fmt, ap);
	printf(" (last error: %s)\n", err);
	va_end(ap);
	exit(1);
}

#define EXPECT(call, want)                                                              \
	do {                                                                            \
		int rc_ = (call);                                                       \
		if (rc_ != (want))                                                      \
			die("%s:%d: %s = %d (%s), want %d (%s)", __FILE__, __LINE__,  \
			    #call, rc_, strerror(-rc_), want, strerror(-(want)));       \
	} while (0)

static void ok(const char *name)
{
	printf("ok %s\n", name);
	fflush(stdout);
}

/* A temporary file holding len bytes: data, or a pseudo-random pattern. */
static int tmpfile_with(const void *data, uint64_t len)
{
	char path[] = "/tmp/s3check.XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp: %s", strerror(errno));
	unlink(path);
	if (data) {
		if (write(fd, data, len) != (ssize_t)len)
			die("write");
		return fd;
	}
	static char buf[1 << 20];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (uint64_t done = 0; done < len;) {
		for (size_t i = 0; i < sizeof(buf); i += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(buf + i, &x, 8);
		}
		size_t n = len - done < sizeof(buf) ? (size_t)(len - done) : sizeof(buf);
		if (write(fd, buf, n) != (ssize_t)n)
			die("write: %s", strerror(errno));
		done += n;
	}
	return fd;
}

static int empty_tmp(void)
{
	return tmpfile_with("", 0);
}

/* Two descriptors' whole contents equal? */
static void same(int a, int b, const char *what)
{
	static char x[1 << 16], y[1 << 16];
	off_t ea = lseek(a, 0, SEEK_END), eb = lseek(b, 0, SEEK_END);
	if (ea != eb)
		die("%s: sizes %jd and %jd", what, (intmax_t)ea, (intmax_t)eb);
	for (off_t off = 0; off < ea;) {
		ssize_t n = pread(a, x, sizeof(x), off);
		if (n <= 0 || pread(b, y, (size_t)n, off) != n || memcmp(x, y, (size_t)n))
			die("%s: contents differ near offset %jd", what, (intmax_t)off);
		off += n;
	}
}

static void put_str(struct pfs_remote *r, const char *path, const char *s,
		    const struct pfs_rmeta *m, const char *if_match, int want,
		    struct pfs_rstat *out)
{
	int fd = tmpfile_with(s, strlen(s));
	int rc = r->ops->put(r, path, fd, strlen(s), m, if_match, out, err, sizeof(err));
	close(fd);
	if (rc != want)
		die("put %s (if %s) = %d (%s), want %d", path, if_match ? if_match : "-", rc,
		    strerror(-rc), want);
}

static void get_is(struct pfs_remote *r, const char *path, const char *s)
{
	int want = tmpfile_with(s, strlen(s)), got = empty_tmp();
	struct pfs_rstat st;
	EXPECT(r->ops->get(r, path, got, &st, err, sizeof(err)), 0);
	same(want, got, path);
	if (st.size != strlen(s) || !st.etag[0])
		die("get %s: size %" PRIu64 ", etag '%s'", path, st.size, st.etag);
	close(want);
	close(got);
}

static const struct pfs_rent *find(const struct pfs_rlist *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].name, name) == 0)
			return &l->v[i];
	return NULL;
}

static struct pfs_remote *open_remote(const char *url)
{
	struct pfs_remote_opts o = {.s3_endpoint = getenv("S3_ENDPOINT"),
				    .s3_region = getenv("S3_REGION"),
				    .timeout_ms = 120000};
	struct pfs_remote *r;
	int rc = pfs_s3_open(&r, url, &o, err, sizeof(err));
	if (rc < 0) {
		printf("open %s: %d %s\n", url, rc, err);
		return NULL;
	}
	return r;
}

static void check_files(struct pfs_remote *r)
{
	struct pfs_rmeta m = {.has = PFS_RMETA_MODE | PFS_RMETA_OWNER | PFS_RMETA_MTIME,
			      .mode = 0640, .uid = 1234, .gid = 5678,
			      .mtime = {1700000000, 123456789}};
	struct pfs_rstat st, st2;
	EXPECT(r->ops->stat(r, "kept/file", &st, err, sizeof(err)), -ENOENT);
	EXPECT(r->ops->mkdir(r, "kept", NULL, err, sizeof(err)), 0);
	put_str(r, "kept/file", "hello s3\n", &m, "*", 0, &st);
	if (!st.etag[0] || st.size != 9)
		die("put's out: etag '%s' size %" PRIu64, st.etag, st.size);
	ok("create");
	put_str(r, "kept/file", "someone else\n", &m, "*", -ESTALE, NULL);
	get_is(r, "kept/file", "hello s3\n");
	ok("conditional create refused, content kept");
	EXPECT(r->ops->stat(r, "kept/file", &st2, err, sizeof(err)), 0);
	if (st2.dir || st2.size != 9 || !(st2.has & PFS_RMETA_MODE) || st2.mode != 0640 ||
	    !(st2.has & PFS_RMETA_OWNER) || st2.uid != 1234 || st2.gid != 5678 ||
	    !(st2.has & PFS_RMETA_MTIME) || st2.mtime.tv_sec != 1700000000 ||
	    st2.mtime.tv_nsec != 123456789)
		die("stat kept/file: dir %d size %" PRIu64 " has %u mode %o uid %u gid %u "
		    "mtime %jd.%09ld", st2.dir, st2.size, st2.has, (unsigned)st2.mode,
		    (unsigned)st2.uid, (unsigned)st2.gid, (intmax_t)st2.mtime.tv_sec,
		    st2.mtime.tv_nsec);
	ok("metadata round trip");
	put_str(r, "kept/other", "v1\n", NULL, "*", 0, &st);
	put_str(r, "kept/other", "v2 from an old etag\n", NULL, "\"0123456789abcdef\"",
		-ESTALE, NULL);
	put_str(r, "kept/other", "v2\n", NULL, st.etag, 0, &st2);
	if (strcmp(st.etag, st2.etag) == 0)
		die("etag unchanged by an update: %s", st.etag);
	put_str(r, "kept/other", "v3 from v1's etag\n", NULL, st.etag, -ESTALE, NULL);
	get_is(r, "kept/other", "v2\n");
	put_str(r, "kept/gone", "x", NULL, "\"0123\"", -ESTALE, NULL);
	ok("stale etag refused (-ESTALE), right etag accepted");

	struct pfs_rmeta m2 = {.has = PFS_RMETA_MODE, .mode = 0600};
	EXPECT(r->ops->setmeta(r, "kept/file", false, &m2, &st, err, sizeof(err)), 0);
	EXPECT(r->ops->stat(r, "kept/file", &st2, err, sizeof(err)), 0);
	if (st2.mode != 0600 || st2.uid != 1234 || st2.mtime.tv_sec != 1700000000 ||
	    strcmp(st.etag, st2.etag) != 0)
		die("after setmeta: mode %o uid %u mtime %jd etag %s/%s", (unsigned)st2.mode,
		    (unsigned)st2.uid, (intmax_t)st2.mtime.tv_sec, st.etag, st2.etag);
	get_is(r, "kept/file", "hello s3\n");
	ok("setmeta (copy onto itself) keeps the data and the other fields");

	int fd = empty_tmp();
	EXPECT(r->ops->get(r, "kept/nothing", fd, &st, err, sizeof(err)), -ENOENT);
	close(fd);
	put_str(r, "kept/empty", "", NULL, "*", 0, NULL);
	get_is(r, "kept/empty", "");
	ok("get of a missing key, empty file");
}

static void check_dirs(struct pfs_remote *r)
{
	struct pfs_rmeta m = {.has = PFS_RMETA_MODE, .mode = 0750};
	struct pfs_rstat st;
	struct pfs_rlist l = {0};
	EXPECT(r->ops->mkdir(r, "kept/emptydir", &m, err, sizeof(err)), 0);
	EXPECT(r->ops->mkdir(r, "kept/emptydir", &m, err, sizeof(err)), -EEXIST);
	EXPECT(r->ops->mkdir(r, "kept/file", &m, err, sizeof(err)), -EEXIST);
	EXPECT(r->ops->stat(r, "kept/emptydir", &st, err, sizeof(err)), 0);
	if (!st.dir || st.mode != 0750)
		die("stat kept/emptydir: dir %d mode %o", st.dir, (unsigned)st.mode);
	EXPECT(r->ops->list(r, "kept/emptydir", &l, err, sizeof(err)), 0);
	if (l.n != 0)
		die("empty dir lists %zu entries", l.n);
	EXPECT(r->ops->list(r, "kept", &l, err, sizeof(err)), 0);
	const struct pfs_rent *e = find(&l, "emptydir"), *f = find(&l, "file");
	if (!e || !e->st.dir || !f || f->st.dir || f->st.size != 9 || l.n != 4)
		die("list kept: %zu entries, emptydir %p file %p", l.n, (void *)e, (void *)f);
	pfs_rlist_free(&l);
	ok("empty directory kept as a marker, listed with the files");

	/* implicit directories: keys with no markers above them */
	put_str(r, "impl/a/b", "deep\n", NULL, NULL, 0, NULL);
	EXPECT(r->ops->stat(r, "impl", &st, err, sizeof(err)), 0);
	if (!st.dir)
		die("impl is not a dir");
	EXPECT(r->ops->stat(r, "impl/a", &st, err, sizeof(err)), 0);
	EXPECT(r->ops->stat(r, "imp", &st, err, sizeof(err)), -ENOENT);
	EXPECT(r->ops->list(r, "impl", &l, err, sizeof(err)), 0);
	if (l.n != 1 || !l.v[0].st.dir || strcmp(l.v[0].name, "a"))
		die("list impl: %zu entries", l.n);
	pfs_rlist_free(&l);
	EXPECT(r->ops->list(r, "nowhere", &l, err, sizeof(err)), -ENOENT);
	EXPECT(r->ops->list(r, "kept/file", &l, err, sizeof(err)), -ENOTDIR);
	ok("implicit directories (keys without markers)");

	EXPECT(r->ops->remove(r, "kept", true, NULL, err, sizeof(err)), -ENOTEMPTY);
	EXPECT(r->ops->mkdir(r, "rmme", NULL, err, sizeof(err)), 0);
	EXPECT(r->ops->remove(r, "rmme", true, NULL, err, sizeof(err)), 0);
	EXPECT(r->ops->stat(r, "rmme", &st, err, sizeof(err)), -ENOENT);
	EXPECT(r->ops->remove(r, "rmme", true, NULL, err, sizeof(err)), -ENOENT);
	put_str(r, "rmf", "x", NULL, NULL, 0, &st);
	EXPECT(r->ops->remove(r, "rmf", false, "\"feed\"", err, sizeof(err)), -ESTALE);
	EXPECT(r->ops->remove(r, "rmf", false, st.etag, err, sizeof(err)), 0);
	EXPECT(r->ops->remove(r, "rmf", false, NULL, err, sizeof(err)), -ENOENT);
	ok("remove: -ENOTEMPTY, -ESTALE, -ENOENT, empty directory");
}

static void check_move(struct pfs_remote *r)
{
	struct pfs_rstat st;
	struct pfs_rlist l = {0};
	EXPECT(r->ops->mkdir(r, "t", NULL, err, sizeof(err)), 0);
	EXPECT(r->ops->mkdir(r, "t/sub", NULL, err, sizeof(err)), 0);
	EXPECT(r->ops->mkdir(r, "t/empty", NULL, err, sizeof(err)), 0);
	put_str(r, "t/sub/x", "x in sub\n", NULL, NULL, 0, NULL);
	put_str(r, "t/y", "y\n", NULL, NULL, 0, NULL);
	EXPECT(r->ops->mkdir(r, "taken", NULL, err, sizeof(err)), 0);
	EXPECT(r->ops->move(r, "t", "taken", true, true, err, sizeof(err)), -EEXIST);
	EXPECT(r->ops->move(r, "t", "kept/tree", true, true, err, sizeof(err)), 0);
	EXPECT(r->ops->stat(r, "t", &st, err, sizeof(err)), -ENOENT);
	get_is(r, "kept/tree/sub/x", "x in sub\n");
	get_is(r, "kept/tree/y", "y\n");
	EXPECT(r->ops->stat(r, "kept/tree/empty", &st, err, sizeof(err)), 0);
	if (!st.dir)
		die("kept/tree/empty not a dir");
	EXPECT(r->ops->list(r, "kept/tree", &l, err, sizeof(err)), 0);
	if (l.n != 3 || !find(&l, "sub") || !find(&l, "empty") || !find(&l, "y"))
		die("list kept/tree: %zu entries", l.n);
	pfs_rlist_free(&l);
	EXPECT(r->ops->move(r, "nothing", "else", true, false, err, sizeof(err)), -ENOENT);
	ok("directory move of a tree (copy + delete)");

	put_str(r, "m1", "one\n", NULL, NULL, 0, NULL);
	put_str(r, "m2", "two\n", NULL, NULL, 0, NULL);
	EXPECT(r->ops->move(r, "m1", "m2", false, true, err, sizeof(err)), -EEXIST);
	EXPECT(r->ops->move(r, "m1", "m2", false, false, err, sizeof(err)), 0);
	get_is(r, "m2", "one\n");
	EXPECT(r->ops->stat(r, "m1", &st, err, sizeof(err)), -ENOENT);
	EXPECT(r->ops->move(r, "m1", "m3", false, false, err, sizeof(err)), -ENOENT);
	EXPECT(r->ops->remove(r, "m2", false, NULL, err, sizeof(err)), 0);
	ok("file move, noreplace");
}

static void check_big(struct pfs_remote *r)
{
	const uint64_t size = 100ull << 20;
	int src = tmpfile_with(NULL, size), dst = empty_tmp();
	struct pfs_rstat st, st2;
	EXPECT(r->ops->put(r, "kept/big", src, size, NULL, "*", &st, err, sizeof(err)), 0);
	/* a multipart upload's etag is "<md5 of the parts' md5s>-<parts>" */
	if (!strchr(st.etag, '-') || st.size != size)
		die("big: etag %s size %" PRIu64 " (not multipart?)", st.etag, st.size);
	EXPECT(r->ops->get(r, "kept/big", dst, &st2, err, sizeof(err)), 0);
	same(src, dst, "kept/big");
	EXPECT(r->ops->put(r, "kept/big", src, size, NULL, "*", NULL, err, sizeof(err)),
	       -ESTALE);
	EXPECT(r->ops->put(r, "kept/big", src, size, NULL, "\"00ff-7\"", NULL, err,
			   sizeof(err)), -ESTALE);
	EXPECT(r->ops->put(r, "kept/big", src, size, NULL, st.etag, &st2, err, sizeof(err)), 0);
	close(src);
	close(dst);
	printf("big etag %s\n", st2.etag);
	ok("100 MiB round trip through multipart; its conditions");
}

static void check_many(struct pfs_remote *r)
{
	const int n = 2500;
	struct pfs_rlist l = {0};
	int fd = empty_tmp();
	char name[64];
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "many/k%04d", i);
		EXPECT(r->ops->put(r, name, fd, 0, NULL, NULL, NULL, err, sizeof(err)), 0);
	}
	close(fd);
	EXPECT(r->ops->mkdir(r, "many/zdir", NULL, err, sizeof(err)), 0);
	EXPECT(r->ops->list(r, "many", &l, err, sizeof(err)), 0);
	if (l.n != (size_t)n + 1)
		die("list many: %zu entries, want %d", l.n, n + 1);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "k%04d", i);
		const struct pfs_rent *e = find(&l, name);
		if (!e || e->st.dir || e->st.size)
			die("list many: %s missing or wrong", name);
	}
	if (!find(&l, "zdir") || !find(&l, "zdir")->st.dir)
		die("list many: zdir");
	pfs_rlist_free(&l);
	ok("listing 2500 keys across pages");
}

/* Names that need escaping, in the path and in the listing's query. */
static void check_names(struct pfs_remote *r)
{
	static const char *const names[] = {"sp ace", "plus+sign", "per%25cent%",
					    "\xc3\xbc" "n\xc3\xaf" "code", "a=b&c;d", "t~i'l(d)e!*",
					    "q?uestion#hash"};
	const size_t n = sizeof(names) / sizeof(names[0]);
	char path[128];
	struct pfs_rstat st;
	struct pfs_rlist l = {0};
	EXPECT(r->ops->mkdir(r, "odd dir+", NULL, err, sizeof(err)), 0);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "odd dir+/%s", names[i]);
		put_str(r, path, names[i], NULL, "*", 0, NULL);
		EXPECT(r->ops->stat(r, path, &st, err, sizeof(err)), 0);
		get_is(r, path, names[i]);
	}
	EXPECT(r->ops->list(r, "odd dir+", &l, err, sizeof(err)), 0);
	if (l.n != n)
		die("list 'odd dir+': %zu entries, want %zu", l.n, n);
	for (size_t i = 0; i < n; i++)
		if (!find(&l, names[i]))
			die("list 'odd dir+': %s missing", names[i]);
	pfs_rlist_free(&l);
	EXPECT(r->ops->move(r, "odd dir+", "kept/odd names", true, true, err, sizeof(err)), 0);
	get_is(r, "kept/odd names/a=b&c;d", "a=b&c;d");
	ok("names needing escapes: put, stat, get, list, move");
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: s3_check all|creds|open s3://BUCKET/PREFIX\n");
		return 2;
	}
	const char *mode = argv[1], *url = argv[2];
	struct pfs_remote *r = open_remote(url);
	if (strcmp(mode, "open") == 0) {
		if (r)
			r->ops->close(r);
		return r ? 0 : 1;
	}
	if (!r)
		die("open %s", url);
	if (strcmp(r->ops->kind, "s3") || r->caps != (PFS_RCAP_IF_MATCH | PFS_RCAP_META |
						      PFS_RCAP_ETAG))
		die("kind %s caps %#x", r->ops->kind, r->caps);
	if (strcmp(mode, "creds") == 0) {
		put_str(r, "creds", "signed\n", NULL, NULL, 0, NULL);
		get_is(r, "creds", "signed\n");
		ok("credentials file");
	} else {
		struct pfs_remote *bad;
		struct pfs_remote_opts o = {.s3_endpoint = getenv("S3_ENDPOINT")};
		EXPECT(pfs_s3_open(&bad, "s3:///x", &o, err, sizeof(err)), -EINVAL);
		EXPECT(pfs_s3_open(&bad, "s3://no-such-bucket-here", &o, err, sizeof(err)),
		       -ENOENT);
		ok("open refuses a bad address, a missing bucket");
		check_files(r);
		check_dirs(r);
		check_move(r);
		check_names(r);
		check_big(r);
		check_many(r);
	}
	r->ops->close(r);
	printf("all ok\n");
	return 0;
}
