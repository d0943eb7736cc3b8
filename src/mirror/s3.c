/* s3: an S3 object store as a remote (remote.h) — Ceph's RADOS Gateway,
 * AWS, anything speaking S3 with path-style URLs.
 *
 * Layout: a file is the object PREFIX/path; a directory is the prefix
 * PREFIX/path/ with an empty marker object of that name, so an empty
 * directory survives (a prefix with keys but no marker is a directory too:
 * another tool made it). mode, owner and mtime ride in x-amz-meta-*.
 *
 * Requests are signed by libcurl alone (CURLOPT_AWS_SIGV4). What Debian's
 * curl 7.88 needs for it (measured against Ceph 16.2, /work notes in
 * backends.md): an explicit x-amz-content-sha256 (UNSIGNED-PAYLOAD: the
 * body is streamed, its hash unknown up front), query parameters written
 * sorted and percent-encoded, "?uploads=" with its '='. */
#include "mirror/s3_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define S3_DEF_PUT_MAX (64ull << 20)
#define S3_DEF_PART (16ull << 20)
#define S3_MIN_PART (5ull << 20) /* S3's least part but the last */
#define S3_DEF_KEYS 1000u

/* Every byte but RFC 3986's unreserved ones escaped — '/' too (a query
 * value), as SigV4's canonical query wants. */
static char *s3_qesc(const char *v)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(v);
	char *o = malloc(n * 3 + 1), *p = o;
	if (!o)
		return NULL;
	for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
		if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.' ||
		    *s == '~') {
			*p++ = (char)*s;
		} else {
			*p++ = '%';
			*p++ = hex[*s >> 4];
			*p++ = hex[*s & 15];
		}
	}
	*p = '\0';
	return o;
}

char *pfs_s3_key(const struct pfs_s3 *s, const char *path, const char *suffix)
{
	char *k = NULL;
	if (asprintf(&k, "%s%s%s", s->prefix, path, suffix) < 0)
		return NULL;
	return k;
}

static char *s3_url(const struct pfs_s3 *s, const char *key, const struct pfs_s3_q *q)
{
	char *ek = pfs_http_escape_path(key);
	char *url = NULL;
	size_t cap = strlen(s->endpoint) + strlen(s->bucket) + (ek ? strlen(ek) : 0) + 8;
	if (!ek)
		return NULL;
	for (const struct pfs_s3_q *p = q; p && p->name; p++)
		cap += strlen(p->name) + strlen(p->value) * 3 + 2;
	url = malloc(cap);
	if (!url)
		goto out;
	int n = snprintf(url, cap, "%s/%s/%s", s->endpoint, s->bucket, ek);
	for (const struct pfs_s3_q *p = q; p && p->name; p++) {
		char *v = s3_qesc(p->value);
		if (!v) {
			free(url);
			url = NULL;
			goto out;
		}
		n += snprintf(url + n, cap - (size_t)n, "%c%s=%s", p == q ? '?' : '&', p->name, v);
		free(v);
	}
out:
	free(ek);
	return url;
}

static int s3_hdr(struct curl_slist **l, const char *h)
{
	struct curl_slist *n = curl_slist_append(*l, h);
	if (!n)
		return -ENOMEM;
	*l = n;
	return 0;
}

int pfs_s3_call(struct pfs_s3 *s, struct pfs_s3_call *c, struct pfs_http_resp *rs, char *err,
		size_t errlen)
{
	int rc = -ENOMEM;
	char *url = s3_url(s, c->key, c->q);
	char tok[4096];
	memset(rs, 0, sizeof(*rs));
	if (!url || s3_hdr(&c->hdrs, "x-amz-content-sha256: UNSIGNED-PAYLOAD") < 0)
		goto fail;
	if (s->token) {
		snprintf(tok, sizeof(tok), "x-amz-security-token: %s", s->token);
		if (s3_hdr(&c->hdrs, tok) < 0)
			goto fail;
	}
	/* No "Expect:" to skip curl's 100-continue wait: curl 7.88 signs
	 * the empty header and the server's signature then differs (403). */
	struct pfs_http_req rq = {
		.method = c->method,
		.url = url,
		.headers = c->hdrs,
		.body = c->body,
		.bodylen = c->bodylen,
		.in_fd = c->in_fd,
		.in_off = c->in_off,
		.in_len = c->in_len,
		.out_fd = c->out_fd,
		.max_body = 16u << 20,
		.no_body = c->head,
		.aws_sigv4 = s->sigv4,
		.userpwd = s->userpwd,
	};
	rc = pfs_http_do(s->h, &rq, rs, err, errlen);
	free(url);
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
	return rc;
fail:
	snprintf(err, errlen, "s3: %s %s: out of memory", c->method, c->key);
	free(url);
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
	return rc;
}

int pfs_s3_status(const struct pfs_s3_call *c, const struct pfs_http_resp *rs, char *err,
		  size_t errlen)
{
	int rc = pfs_http_errno(rs->status);
	char *code = NULL;
	/* CopyObject and CompleteMultipartUpload can fail after their 200
	 * went out: the error is then the body. */
	if (rc == 0 && rs->body && rs->len && strstr(rs->body, "<Error") &&
	    pfs_s3_xml_text(rs->body, rs->len, "Code", &code) == 0) {
		snprintf(err, errlen, "s3: %s /%s: %s in a %ld reply", c->method, c->key, code,
			 rs->status);
		free(code);
		return -EIO;
	}
	if (rc == 0)
		return 0;
	if (rs->body && rs->len)
		(void)pfs_s3_xml_text(rs->body, rs->len, "Code", &code);
	snprintf(err, errlen, "s3: %s /%s: HTTP %ld%s%s", c->method, c->key, rs->status,
		 code ? " " : "", code ? code : "");
	free(code);
	return rc;
}

bool pfs_s3_etag_eq(const char *a, const char *b)
{
	char x[128], y[128];
	pfs_s3_etag_bare(a, x, sizeof(x));
	pfs_s3_etag_bare(b, y, sizeof(y));
	return x[0] && strcmp(x, y) == 0;
}

void pfs_s3_etag_bare(const char *etag, char *buf, size_t len)
{
	if (strncmp(etag, "W/", 2) == 0)
		etag += 2;
	size_t n = strlen(etag);
	if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
		etag++;
		n -= 2;
	}
	snprintf(buf, len, "%.*s", (int)n, etag);
}

int pfs_s3_meta_hdrs(struct curl_slist **l, const struct pfs_rmeta *m)
{
	char h[96];
	int rc = 0;
	if (!m)
		return 0;
	if (m->has & PFS_RMETA_MODE) {
		snprintf(h, sizeof(h), "x-amz-meta-mode: %o", (unsigned)(m->mode & 07777));
		rc = rc ? rc : s3_hdr(l, h);
	}
	if (m->has & PFS_RMETA_OWNER) {
		snprintf(h, sizeof(h), "x-amz-meta-uid: %u", (unsigned)m->uid);
		rc = rc ? rc : s3_hdr(l, h);
		snprintf(h, sizeof(h), "x-amz-meta-gid: %u", (unsigned)m->gid);
		rc = rc ? rc : s3_hdr(l, h);
	}
	if (m->has & PFS_RMETA_MTIME) {
		snprintf(h, sizeof(h), "x-amz-meta-mtime: %" PRId64 ".%09ld",
			 (int64_t)m->mtime.tv_sec, (long)m->mtime.tv_nsec);
		rc = rc ? rc : s3_hdr(l, h);
	}
	return rc;
}

/* A HEAD or GET reply's headers as an rstat. */
static void s3_rstat(const struct pfs_http_resp *rs, bool dir, struct pfs_rstat *st)
{
	const char *v;
	int64_t secs;
	memset(st, 0, sizeof(*st));
	st->dir = dir;
	if (!dir && (v = pfs_http_header(rs, "content-length")))
		st->size = strtoull(v, NULL, 10);
	if ((v = pfs_http_header(rs, "etag")))
		snprintf(st->etag, sizeof(st->etag), "%s", v);
	if ((v = pfs_http_header(rs, "last-modified")) && pfs_http_parse_date(v, &secs) == 0) {
		st->mtime.tv_sec = (time_t)secs;
		st->listed_mtime = secs;
	}
	if ((v = pfs_http_header(rs, "x-amz-meta-mode"))) {
		st->mode = (mode_t)(strtoul(v, NULL, 8) & 07777);
		st->has |= PFS_RMETA_MODE;
	}
	const char *u = pfs_http_header(rs, "x-amz-meta-uid");
	const char *g = pfs_http_header(rs, "x-amz-meta-gid");
	if (u && g) {
		st->uid = (uid_t)strtoul(u, NULL, 10);
		st->gid = (gid_t)strtoul(g, NULL, 10);
		st->has |= PFS_RMETA_OWNER;
	}
	if ((v = pfs_http_header(rs, "x-amz-meta-mtime"))) {
		char *end;
		long long sec = strtoll(v, &end, 10);
		long ns = *end == '.' ? strtol(end + 1, NULL, 10) : 0;
		if (ns >= 0 && ns < 1000000000) {
			st->mtime.tv_sec = (time_t)sec;
			st->mtime.tv_nsec = ns;
			st->has |= PFS_RMETA_MTIME;
		}
	}
}

int pfs_s3_head(struct pfs_s3 *s, const char *key, struct pfs_rstat *st, char *err,
		size_t errlen)
{
	struct pfs_s3_call c = {.method = "HEAD", .key = key, .in_fd = -1, .out_fd = -1,
				.head = true};
	struct pfs_http_resp rs;
	int rc = pfs_s3_call(s, &c, &rs, err, errlen);
	if (rc == 0)
		rc = pfs_s3_status(&c, &rs, err, errlen);
	if (rc == 0) {
		size_t n = strlen(key);
		s3_rstat(&rs, n > 0 && key[n - 1] == '/', st);
	}
	pfs_http_resp_free(&rs);
	return rc;
}

int pfs_s3_list_page(struct pfs_s3 *s, const char *prefix, const char *delim, unsigned max,
		     const char *token, struct pfs_s3_page *pg, char *err, size_t errlen)
{
	char mk[16];
	struct pfs_s3_q q[6];
	size_t n = 0;
	snprintf(mk, sizeof(mk), "%u", max);
	/* sorted by name: curl 7.88 signs the query as written */
	if (token)
		q[n++] = (struct pfs_s3_q){"continuation-token", token};
	if (delim)
		q[n++] = (struct pfs_s3_q){"delimiter", delim};
	q[n++] = (struct pfs_s3_q){"list-type", "2"};
	q[n++] = (struct pfs_s3_q){"max-keys", mk};
	q[n++] = (struct pfs_s3_q){"prefix", prefix};
	q[n] = (struct pfs_s3_q){NULL, NULL};
	struct pfs_s3_call c = {.method = "GET", .key = "", .q = q, .in_fd = -1, .out_fd = -1};
	struct pfs_http_resp rs;
	int rc = pfs_s3_call(s, &c, &rs, err, errlen);
	if (rc == 0)
		rc = pfs_s3_status(&c, &rs, err, errlen);
	if (rc == 0) {
		rc = pfs_s3_parse_list(rs.body, rs.len, pg);
		if (rc < 0)
			snprintf(err, errlen, "s3: listing %s: an unreadable reply", prefix);
	}
	pfs_http_resp_free(&rs);
	return rc;
}

int pfs_s3_stat(struct pfs_remote *r, const char *path, struct pfs_rstat *st, char *err,
		size_t errlen)
{
	struct pfs_s3 *s = (struct pfs_s3 *)r;
	char *key = NULL, *dkey = NULL;
	int rc = -ENOMEM;
	if (!*path) {
		memset(st, 0, sizeof(*st));
		st->dir = true;
		if (*s->prefix && pfs_s3_head(s, s->prefix, st, err, errlen) == 0)
			return 0;
		memset(st, 0, sizeof(*st));
		st->dir = true;
		return 0;
	}
	key = pfs_s3_key(s, path, "");
	dkey = pfs_s3_key(s, path, "/");
	if (!key || !dkey)
		goto out;
	rc = pfs_s3_head(s, key, st, err, errlen);
	if (rc != -ENOENT)
		goto out;
	rc = pfs_s3_head(s, dkey, st, err, errlen);
	if (rc != -ENOENT)
		goto out;
	/* No marker: a prefix with keys under it is a directory all the same. */
	struct pfs_s3_page pg;
	rc = pfs_s3_list_page(s, dkey, NULL, 1, NULL, &pg, err, errlen);
	if (rc < 0)
		goto out;
	memset(st, 0, sizeof(*st));
	st->dir = true;
	rc = pg.nobjs || pg.nprefixes ? 0 : -ENOENT;
	if (rc < 0)
		snprintf(err, errlen, "s3: %s: no such object or prefix", key);
	pfs_s3_page_free(&pg);
out:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "s3: stat %s: out of memory", path);
	free(key);
	free(dkey);
	return rc;
}

static int s3_list(struct pfs_remote *r, const char *path, struct pfs_rlist *out, char *err,
		   size_t errlen)
{
	struct pfs_s3 *s = (struct pfs_s3 *)r;
	char *pfx = *path ? pfs_s3_key(s, path, "/") : strdup(s->prefix);
	char *token = NULL;
	int rc = -ENOMEM;
	bool any = false;
	if (!pfx)
		goto out;
	size_t plen = strlen(pfx);
	for (;;) {
		struct pfs_s3_page pg;
		rc = pfs_s3_list_page(s, pfx, "/", s->max_keys, token, &pg, err, errlen);
		if (rc < 0)
			goto out;
		for (size_t i = 0; i < pg.nobjs && rc == 0; i++) {
			const struct pfs_s3_obj *o = &pg.objs[i];
			any = true;
			if (strncmp(o->key, pfx, plen) != 0 || !o->key[plen])
				continue; /* the directory's own marker */
			struct pfs_rstat st = {.size = o->size, .mtime = o->mtime};
			snprintf(st.etag, sizeof(st.etag), "%s", o->etag);
			rc = pfs_rlist_add(out, o->key + plen, &st);
		}
		for (size_t i = 0; i < pg.nprefixes && rc == 0; i++) {
			const char *p = pg.prefixes[i];
			size_t n = strlen(p);
			any = true;
			if (strncmp(p, pfx, plen) != 0 || n <= plen + 1)
				continue;
			char *name = strndup(p + plen, n - plen - 1);
			struct pfs_rstat st = {.dir = true};
			rc = name ? pfs_rlist_add(out, name, &st) : -ENOMEM;
			free(name);
		}
		free(token);
		token = pg.truncated && pg.next_token ? strdup(pg.next_token) : NULL;
		bool more = pg.truncated && pg.next_token;
		pfs_s3_page_free(&pg);
		if (rc < 0)
			goto out;
		if (!more)
			break;
		rc = -ENOMEM;
		if (!token)
			goto out;
	}
	rc = 0;
	/* An empty listing of something that is not there: say so (the root
	 * always is). */
	if (!any && *path) {
		struct pfs_rstat st;
		rc = pfs_s3_stat(r, path, &st, err, errlen);
		if (rc == 0 && !st.dir) {
			rc = -ENOTDIR;
			snprintf(err, errlen, "s3: list %s: a file", path);
		}
	}
out:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "s3: list %s: out of memory", path);
	free(token);
	free(pfx);
	return rc;
}

static int s3_get(struct pfs_remote *r, const char *path, int fd, struct pfs_rstat *st,
		  char *err, size_t errlen)
{
	struct pfs_s3 *s = (struct pfs_s3 *)r;
	char *key = pfs_s3_key(s, path, "");
	if (!key) {
		snprintf(err, errlen, "s3: GET %s: out of memory", path);
		return -ENOMEM;
	}
	struct pfs_s3_call c = {.method = "GET", .key = key, .in_fd = -1, .out_fd = fd};
	struct pfs_http_resp rs;
	int rc = pfs_s3_call(s, &c, &rs, err, errlen);
	if (rc == 0)
		rc = pfs_s3_status(&c, &rs, err, errlen);
	if (rc == 0 && st)
		s3_rstat(&rs, false, st);
	pfs_http_resp_free(&rs);
	free(key);
	return rc;
}

static void s3_close(struct pfs_remote *r)
{
	struct pfs_s3 *s = (struct pfs_s3 *)r;
	if (!s)
		return;
	pfs_http_free(s->h);
	free(s->endpoint);
	free(s->bucket);
	free(s->prefix);
	if (s->userpwd)
		explicit_bzero(s->userpwd, strlen(s->userpwd));
	free(s->userpwd);
	free(s->token);
	free(s);
}

static const struct pfs_remote_ops s3_ops = {
	.kind = "s3",
	.stat = pfs_s3_stat,
	.list = s3_list,
	.get = s3_get,
	.put = pfs_s3_put,
	.mkdir = pfs_s3_mkdir,
	.remove = pfs_s3_remove,
	.move = pfs_s3_move,
	.setmeta = pfs_s3_setmeta,
	.close = s3_close,
};

/* ~/.aws/credentials (or $AWS_SHARED_CREDENTIALS_FILE): the profile's
 * keys. An ini file: "[name]" sections of "key = value" lines. */
static int s3_creds_file(const char *profile, char **ak, char **sk, char **tok, char *err,
			 size_t errlen)
{
	const char *f = getenv("AWS_SHARED_CREDENTIALS_FILE");
	char path[4096];
	if (!f || !*f) {
		const char *home = getenv("HOME");
		if (!home || !*home) {
			snprintf(err, errlen, "s3: no credentials: AWS_ACCESS_KEY_ID unset and no HOME");
			return -EACCES;
		}
		snprintf(path, sizeof(path), "%s/.aws/credentials", home);
		f = path;
	}
	FILE *fp = fopen(f, "re");
	if (!fp) {
		int e = errno;
		snprintf(err, errlen, "s3: no credentials: AWS_ACCESS_KEY_ID unset and %s: %s", f,
			 strerror(e));
		return -EACCES;
	}
	char line[4096];
	bool in = false;
	int rc = 0;
	while (rc == 0 && fgets(line, sizeof(line), fp)) {
		char *p = line, *e;
		while (*p == ' ' || *p == '\t')
			p++;
		for (e = p + strlen(p); e > p && strchr(" \t\r\n", e[-1]); e--)
			;
		*e = '\0';
		if (*p == '#' || *p == ';' || !*p)
			continue;
		if (*p == '[') {
			char *q = strchr(p, ']');
			if (q)
				*q = '\0';
			in = strcmp(p + 1, profile) == 0;
			continue;
		}
		char *eq = strchr(p, '=');
		if (!in || !eq)
			continue;
		char *v = eq + 1, *ke = eq;
		while (ke > p && (ke[-1] == ' ' || ke[-1] == '\t'))
			ke--;
		*ke = '\0';
		while (*v == ' ' || *v == '\t')
			v++;
		char **dst = strcmp(p, "aws_access_key_id") == 0	 ? ak
			     : strcmp(p, "aws_secret_access_key") == 0 ? sk
			     : strcmp(p, "aws_session_token") == 0	 ? tok
								 : NULL;
		if (dst) {
			free(*dst);
			*dst = strdup(v);
			if (!*dst)
				rc = -ENOMEM;
		}
	}
	explicit_bzero(line, sizeof(line));
	fclose(fp);
	if (rc == 0 && (!*ak || !*sk)) {
		snprintf(err, errlen, "s3: %s: profile [%s] has no aws_access_key_id and "
			 "aws_secret_access_key", f, profile);
		rc = -EACCES;
	}
	return rc;
}

static uint64_t s3_env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	char *end;
	if (!v || !*v)
		return def;
	unsigned long long n = strtoull(v, &end, 10);
	return *end || n == 0 ? def : n;
}

int pfs_s3_open(struct pfs_remote **out, const char *url, const struct pfs_remote_opts *o,
		char *err, size_t errlen)
{
	struct pfs_s3 *s = NULL;
	char *ak = NULL, *sk = NULL, *tok = NULL;
	int rc = -EINVAL;
	*out = NULL;
	if (strncmp(url, "s3://", 5) != 0 || !url[5] || url[5] == '/') {
		snprintf(err, errlen, "s3: %s: not an s3://BUCKET[/PREFIX] address", url);
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto nomem;
	s->pub.ops = &s3_ops;
	s->pub.caps = PFS_RCAP_IF_MATCH | PFS_RCAP_META | PFS_RCAP_ETAG;
	const char *b = url + 5, *slash = strchr(b, '/');
	s->bucket = slash ? strndup(b, (size_t)(slash - b)) : strdup(b);
	if (!s->bucket)
		goto nomem;
	const char *pfx = slash ? slash + 1 : "";
	while (*pfx == '/')
		pfx++;
	size_t pl = strlen(pfx);
	while (pl && pfx[pl - 1] == '/')
		pl--;
	if (asprintf(&s->prefix, "%.*s%s", (int)pl, pfx, pl ? "/" : "") < 0) {
		s->prefix = NULL;
		goto nomem;
	}
	const char *region = o && o->s3_region && *o->s3_region ? o->s3_region : "us-east-1";
	snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", region);
	if (o && o->s3_endpoint && *o->s3_endpoint) {
		size_t n = strlen(o->s3_endpoint);
		while (n && o->s3_endpoint[n - 1] == '/')
			n--;
		if (strncmp(o->s3_endpoint, "http://", 7) && strncmp(o->s3_endpoint, "https://", 8)) {
			snprintf(err, errlen, "s3: endpoint %s: not an http:// or https:// URL",
				 o->s3_endpoint);
			goto fail;
		}
		s->endpoint = strndup(o->s3_endpoint, n);
	} else if (asprintf(&s->endpoint, "https://s3.%s.amazonaws.com", region) < 0) {
		s->endpoint = NULL;
	}
	if (!s->endpoint)
		goto nomem;

	const char *eak = getenv("AWS_ACCESS_KEY_ID"), *esk = getenv("AWS_SECRET_ACCESS_KEY");
	if (eak && *eak && esk && *esk) {
		const char *et = getenv("AWS_SESSION_TOKEN");
		ak = strdup(eak);
		sk = strdup(esk);
		tok = et && *et ? strdup(et) : NULL;
		if (!ak || !sk || (et && *et && !tok))
			goto nomem;
	} else {
		const char *prof = o && o->s3_profile && *o->s3_profile ? o->s3_profile
								       : getenv("AWS_PROFILE");
		rc = s3_creds_file(prof && *prof ? prof : "default", &ak, &sk, &tok, err, errlen);
		if (rc == -ENOMEM)
			goto nomem;
		if (rc < 0)
			goto fail;
	}
	if (asprintf(&s->userpwd, "%s:%s", ak, sk) < 0) {
		s->userpwd = NULL;
		goto nomem;
	}
	s->token = tok;
	tok = NULL;
	s->put_max = s3_env_u64("PRISMFS_S3_PUT_MAX", S3_DEF_PUT_MAX);
	s->part = s3_env_u64("PRISMFS_S3_PART_SIZE", S3_DEF_PART);
	if (s->part < S3_MIN_PART)
		s->part = S3_MIN_PART;
	s->max_keys = (unsigned)s3_env_u64("PRISMFS_S3_MAX_KEYS", S3_DEF_KEYS);
	if (s->max_keys > 1000)
		s->max_keys = 1000;
	rc = pfs_http_new(&s->h, o ? o->timeout_ms : 0, err, errlen);
	if (rc < 0)
		goto fail;

	/* Reach the bucket now: a wrong endpoint, key or bucket is one clear
	 * error at open rather than at the first write-back. */
	struct pfs_s3_call c = {.method = "HEAD", .key = "", .in_fd = -1, .out_fd = -1,
				.head = true};
	struct pfs_http_resp rs;
	rc = pfs_s3_call(s, &c, &rs, err, errlen);
	if (rc == 0) {
		rc = pfs_s3_status(&c, &rs, err, errlen);
		const char *srv = pfs_http_header(&rs, "server");
		snprintf(s->pub.server, sizeof(s->pub.server), "%s", srv ? srv : "");
		if (rc == -ENOENT)
			snprintf(err, errlen, "s3: bucket %s not found at %s", s->bucket,
				 s->endpoint);
		else if (rc < 0)
			snprintf(err, errlen, "s3: bucket %s at %s: HTTP %ld", s->bucket,
				 s->endpoint, rs.status);
	}
	pfs_http_resp_free(&rs);
	if (rc < 0)
		goto fail;
	free(ak);
	if (sk)
		explicit_bzero(sk, strlen(sk));
	free(sk);
	*out = &s->pub;
	return 0;
nomem:
	rc = -ENOMEM;
	snprintf(err, errlen, "s3: out of memory");
fail:
	free(ak);
	if (sk)
		explicit_bzero(sk, strlen(sk));
	free(sk);
	free(tok);
	s3_close(s ? &s->pub : NULL);
	return rc;
}
