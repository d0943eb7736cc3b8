/* dav_open: a WebDAV address read, the server asked what it is (OPTIONS),
 * and what it honours probed on a throw-away file under the root. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "mirror/dav_int.h"

static int parse_url(struct pfs_dav *d, const char *url, char *err, size_t errlen)
{
	static const struct {
		const char *prefix, *scheme;
	} schemes[] = {
		{"http://", "http"}, {"https://", "https"}, {"dav://", "http"}, {"davs://", "https"},
	};
	const char *scheme = NULL, *auth = NULL, *path, *at;
	size_t plen, hostlen;
	char *host = NULL;
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i].prefix);

		if (strncasecmp(url, schemes[i].prefix, n) == 0) {
			scheme = schemes[i].scheme;
			auth = url + n;
			break;
		}
	}
	if (!scheme) {
		snprintf(err, errlen, "webdav: %s: the address must start with http://, https://, "
			 "dav:// or davs://", url);
		return -EINVAL;
	}
	if (strpbrk(url, "?# \t\r\n")) {
		snprintf(err, errlen, "webdav: %s: no query, fragment or blank in the address", url);
		return -EINVAL;
	}
	path = strchr(auth, '/');
	if (!path)
		path = auth + strlen(auth);
	/* userinfo ends at the last '@' of the authority (a password may hold
	 * an escaped one). */
	at = NULL;
	for (const char *p = auth; p < path; p++)
		if (*p == '@')
			at = p;
	if (at) {
		d->userpwd = strndup(auth, (size_t)(at - auth));
		if (!d->userpwd)
			goto nomem;
		if (pfs_http_unescape(d->userpwd) != 0) {
			snprintf(err, errlen, "webdav: bad %%-escape in the address's user:password");
			return -EINVAL;
		}
		auth = at + 1;
	}
	hostlen = (size_t)(path - auth);
	if (hostlen == 0) {
		snprintf(err, errlen, "webdav: %s: no host in the address", url);
		return -EINVAL;
	}
	plen = strlen(path);
	while (plen > 0 && path[plen - 1] == '/')
		plen--;
	host = strndup(auth, hostlen);
	d->rootpath = strndup(path, plen);
	if (!host || !d->rootpath)
		goto nomem;
	if (pfs_http_unescape(d->rootpath) != 0) {
		snprintf(err, errlen, "webdav: %s: bad %%-escape in the path", url);
		goto out;
	}
	if (asprintf(&d->base, "%s://%s%.*s", scheme, host, (int)plen, path) < 0) {
		d->base = NULL;
		goto nomem;
	}
	ret = 0;
	goto out;
nomem:
	snprintf(err, errlen, "webdav: out of memory");
	ret = -ENOMEM;
out:
	free(host);
	return ret;
}

/* A request with a small in-memory body, for the probe; the status, or a
 * transport -errno. */
static long probe_req(struct pfs_dav *d, const char *method, const char *path, const char *body,
		      const char *h1, const char *h2, struct pfs_http_resp *keep, char *err,
		      size_t errlen)
{
	struct pfs_dav_hdrs hs = {0};
	struct pfs_dav_req q = {.method = method, .path = path, .body = body, .in_fd = -1,
				.out_fd = -1};
	struct pfs_http_resp rs;
	long status;
	int ret;

	if (h1)
		pfs_dav_hdr(&hs, "%s", h1);
	if (h2)
		pfs_dav_hdr(&hs, "%s", h2);
	if (hs.oom) {
		curl_slist_free_all(hs.l);
		return -ENOMEM;
	}
	q.hdrs = hs.l;
	ret = pfs_dav_do(d, &q, &rs, err, errlen);
	curl_slist_free_all(hs.l);
	if (ret)
		return ret;
	status = rs.status;
	if (keep)
		*keep = rs;
	else
		pfs_http_resp_free(&rs);
	return status;
}

#define OK(s) ((s) >= 200 && (s) <= 299)

/* Does MKCOL of an existing collection fail (RFC 4918: 405)? rclone says
 * 201. A collection "NAME.d" made twice, then removed. */
static int probe_mkcol(struct pfs_dav *d, const char *name, char *err, size_t errlen)
{
	char dir[128];
	long s, s2;

	snprintf(dir, sizeof(dir), "%s.d/", name);
	s = probe_req(d, "MKCOL", dir, NULL, NULL, NULL, NULL, err, errlen);
	if (s < 0)
		return (int)s;
	if (!OK(s))
		return 0;
	s2 = probe_req(d, "MKCOL", dir, NULL, NULL, NULL, NULL, err, errlen);
	if (s2 >= 0 && OK(s2))
		d->mkcol_lax = true;
	s = probe_req(d, "DELETE", dir, NULL, NULL, NULL, NULL, err, errlen);
	return s2 < 0 ? (int)s2 : s < 0 ? (int)s : 0;
}

/* What the server honours, found on a file of our own under the root and
 * removed after. Only a transport error fails: a server that refuses a
 * probe just lacks that capability (a read-only share has none). */
static int probe(struct pfs_dav *d, char *err, size_t errlen)
{
	static const char body[] = "prismfs probe\n";
	const char *date = "Date: Mon, 01 Jan 2001 00:00:00 GMT";
	struct pfs_remote *r = &d->r;
	struct pfs_http_resp rs;
	struct pfs_rstat st;
	char name[96];
	struct timespec now;
	long s, s2;
	int ret = 0;

	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(name, sizeof(name), ".prismfs-probe-%ld-%lld%09ld", (long)getpid(),
		 (long long)now.tv_sec, now.tv_nsec);
	s = probe_req(d, "PUT", name, body, date, "Expect:", NULL, err, errlen);
	if (s < 0)
		return (int)s;
	if (!OK(s))
		return 0; /* read-only, or PUT refused: no capability to find */

	ret = pfs_dav_propfind(d, name, false, "0", NULL, &st, err, errlen);
	if (ret && ret != -EOPNOTSUPP && ret != -EIO)
		goto out;
	if (ret == 0) {
		if (st.etag[0])
			r->caps |= PFS_RCAP_ETAG;
		if (st.mtime.tv_sec == 978307200)
			r->caps |= PFS_RCAP_MTIME_DATE;
	}
	ret = 0;

	/* Conditional PUT: both forms must be refused with 412 on a file that
	 * exists, or the server is ignoring them (nginx, rclone). */
	s = probe_req(d, "PUT", name, body, "If-None-Match: *", "Expect:", NULL, err, errlen);
	s2 = s < 0 ? s
		   : probe_req(d, "PUT", name, body, "If-Match: \"prismfs-no-such-etag\"",
			       "Expect:", NULL, err, errlen);
	if (s < 0 || s2 < 0) {
		ret = (int)(s < 0 ? s : s2);
		goto out;
	}
	if (s == 412 && s2 == 412)
		r->caps |= PFS_RCAP_IF_MATCH;

	/* Dead properties: set one and read it back. */
	{
		struct pfs_rmeta m = {.has = PFS_RMETA_MTIME | PFS_RMETA_MODE,
				      .mode = 0640,
				      .mtime = {.tv_sec = 1000000000, .tv_nsec = 123456789}};
		char e2[256];

		r->caps |= PFS_RCAP_META;
		if (r->ops->setmeta(r, name, false, &m, &st, e2, sizeof(e2)) != 0 ||
		    !(st.has & PFS_RMETA_MTIME) || st.mtime.tv_sec != m.mtime.tv_sec ||
		    st.mtime.tv_nsec != m.mtime.tv_nsec || !(st.has & PFS_RMETA_MODE) ||
		    st.mode != m.mode)
			r->caps &= ~PFS_RCAP_META;
		if (r->caps & PFS_RCAP_META) /* PROPFIND gives them with the names */
			r->caps |= PFS_RCAP_LIST_META;
	}

	/* Partial PUT: one byte at offset 0. Apache writes it in place; nginx
	 * says 501; rclone replaces the whole file with the fragment, which
	 * the read-back shows. */
	s = probe_req(d, "PUT", name, "P", "Content-Range: bytes 0-0/14", "Expect:", NULL, err,
		      errlen);
	if (s < 0) {
		ret = (int)s;
		goto out;
	}
	if (OK(s)) {
		s = probe_req(d, "GET", name, NULL, NULL, NULL, &rs, err, errlen);
		if (s < 0) {
			ret = (int)s;
			goto out;
		}
		if (s == 200 && rs.len == sizeof(body) - 1 && memcmp(rs.body, "Prismfs probe\n", rs.len) == 0)
			r->caps |= PFS_RCAP_RANGE_PUT;
		pfs_http_resp_free(&rs);
	}

	ret = probe_mkcol(d, name, err, errlen);
	if (ret)
		goto out;

	s = probe_req(d, "DELETE", name, NULL, "If-Match: \"prismfs-no-such-etag\"", NULL, NULL,
		      err, errlen);
	if (s < 0) {
		ret = (int)s;
		goto out;
	}
	if (s == 412)
		r->caps |= PFS_RCAP_DEL_COND;
out:
	s = probe_req(d, "DELETE", name, NULL, NULL, NULL, NULL, err, errlen);
	if (ret == 0 && s < 0)
		ret = (int)s;
	return ret;
}

int pfs_dav_setup(struct pfs_dav *d, const char *url, const struct pfs_remote_opts *o,
		  char *err, size_t errlen)
{
	struct pfs_http_resp rs;
	struct pfs_rstat st;
	const char *v;
	long s;
	int ret;

	ret = parse_url(d, url, err, errlen);
	if (ret)
		return ret;
	ret = pfs_http_new(&d->h, o ? o->timeout_ms : 0, err, errlen);
	if (ret)
		return ret;
	s = probe_req(d, "OPTIONS", "", NULL, NULL, NULL, &rs, err, errlen);
	if (s < 0)
		return (int)s;
	if (!OK(s)) {
		int e = pfs_http_errno(s);

		pfs_http_resp_free(&rs);
		return pfs_dav_fail("OPTIONS", "", s, e ? e : -EIO, err, errlen);
	}
	if ((v = pfs_http_header(&rs, "server")))
		snprintf(d->r.server, sizeof(d->r.server), "%s", v);
	v = pfs_http_header(&rs, "dav");
	if (!v || !strchr(v, '1')) {
		pfs_http_resp_free(&rs);
		snprintf(err, errlen, "webdav: %s is not a WebDAV server (no DAV: 1 in its OPTIONS "
			 "reply)", d->base);
		return -EOPNOTSUPP;
	}
	pfs_http_resp_free(&rs);
	ret = pfs_dav_propfind(d, "", true, "0", NULL, &st, err, errlen);
	if (ret)
		return ret;
	if (!st.dir) {
		snprintf(err, errlen, "webdav: %s is not a collection", d->base);
		return -ENOTDIR;
	}
	return probe(d, err, errlen);
}
