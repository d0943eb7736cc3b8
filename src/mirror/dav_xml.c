/* dav_xml: PROPFIND / PROPPATCH multistatus replies, read with libxml2. */
#include "mirror/dav_int.h"

#include <errno.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirror/http.h"

static bool is(const xmlNode *n, const char *ns, const char *name)
{
	return n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
	       strcmp((const char *)n->ns->href, ns) == 0 &&
	       strcmp((const char *)n->name, name) == 0;
}

/* "HTTP/1.1 200 OK" -> 200; 0 when unreadable. */
static long status_code(const xmlNode *n)
{
	xmlChar *t = xmlNodeGetContent(n);
	const char *sp;
	long code = 0;

	if (!t)
		return 0;
	sp = strchr((const char *)t, ' ');
	if (sp)
		code = strtol(sp + 1, NULL, 10);
	xmlFree(t);
	return code;
}

static int parse_u64(const char *s, int base, uint64_t *v)
{
	char *end;

	while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')
		s++;
	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, &end, base);
	while (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r')
		end++;
	return errno || *end ? -EINVAL : 0;
}

/* "SECONDS.NANOSECONDS" (nanoseconds optional). */
static int parse_mtime(const char *s, struct timespec *ts)
{
	long long sec;
	long nsec = 0;
	char *end;

	errno = 0;
	sec = strtoll(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (*end == '.') {
		char *e2;

		nsec = strtol(end + 1, &e2, 10);
		if (e2 == end + 1 || nsec < 0 || nsec > 999999999)
			return -EINVAL;
		end = e2;
	}
	if (*end)
		return -EINVAL;
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = nsec;
	return 0;
}

static void read_prop(const xmlNode *p, struct pfs_rstat *st, struct timespec *dead_mtime,
		      bool *has_dead_mtime)
{
	xmlChar *t;
	uint64_t v;

	if (is(p, "DAV:", "resourcetype")) {
		for (const xmlNode *c = p->children; c; c = c->next)
			if (is(c, "DAV:", "collection"))
				st->dir = true;
		return;
	}
	t = xmlNodeGetContent(p);
	if (!t)
		return;
	const char *s = (const char *)t;
	if (is(p, "DAV:", "getcontentlength")) {
		if (parse_u64(s, 10, &v) == 0)
			st->size = v;
	} else if (is(p, "DAV:", "getlastmodified")) {
		int64_t secs;

		if (pfs_http_parse_date(s, &secs) == 0 && !(st->has & PFS_RMETA_MTIME)) {
			st->mtime.tv_sec = (time_t)secs;
			st->mtime.tv_nsec = 0;
		}
	} else if (is(p, "DAV:", "getetag")) {
		snprintf(st->etag, sizeof(st->etag), "%s", s);
	} else if (is(p, PFS_DAV_NS, "mode")) {
		if (parse_u64(s, 8, &v) == 0 && v <= 07777) {
			st->mode = (mode_t)v;
			st->has |= PFS_RMETA_MODE;
		}
	} else if (is(p, PFS_DAV_NS, "uid")) {
		if (parse_u64(s, 10, &v) == 0 && v <= UINT32_MAX) {
			st->uid = (uid_t)v;
			st->has |= PFS_RMETA_OWNER;
		}
	} else if (is(p, PFS_DAV_NS, "gid")) {
		if (parse_u64(s, 10, &v) == 0 && v <= UINT32_MAX) {
			st->gid = (gid_t)v;
			st->has |= PFS_RMETA_OWNER;
		}
	} else if (is(p, PFS_DAV_NS, "mtime")) {
		if (parse_mtime(s, dead_mtime) == 0)
			*has_dead_mtime = true;
	}
	xmlFree(t);
}

static int read_response(const xmlNode *resp, pfs_dav_resp_fn fn, void *arg)
{
	struct pfs_rstat st = {0};
	struct timespec dead_mtime = {0};
	bool has_dead_mtime = false;
	xmlChar *href = NULL;
	int ret;

	for (const xmlNode *c = resp->children; c; c = c->next) {
		if (is(c, "DAV:", "href") && !href) {
			href = xmlNodeGetContent(c);
		} else if (is(c, "DAV:", "propstat")) {
			const xmlNode *prop = NULL;
			long code = 0;

			for (const xmlNode *ps = c->children; ps; ps = ps->next) {
				if (is(ps, "DAV:", "prop"))
					prop = ps;
				else if (is(ps, "DAV:", "status"))
					code = status_code(ps);
			}
			/* Properties the server lacks come back under a 404. */
			if (code != 200 || !prop)
				continue;
			for (const xmlNode *p = prop->children; p; p = p->next)
				read_prop(p, &st, &dead_mtime, &has_dead_mtime);
		}
	}
	if (!href)
		return 0;
	/* The mtime we set wins over the server's own Last-Modified. */
	if (has_dead_mtime) {
		st.mtime = dead_mtime;
		st.has |= PFS_RMETA_MTIME;
	}
	ret = fn((const char *)href, &st, arg);
	xmlFree(href);
	return ret;
}

static xmlDoc *read_doc(const char *body, size_t len, const xmlNode **root, char *err,
			size_t errlen)
{
	xmlDoc *doc;

	if (!body || len == 0 || len > INT32_MAX) {
		snprintf(err, errlen, "empty or oversized multistatus reply");
		return NULL;
	}
	doc = xmlReadMemory(body, (int)len, NULL, NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
				    XML_PARSE_NOBLANKS);
	if (!doc) {
		snprintf(err, errlen, "multistatus reply is not XML");
		return NULL;
	}
	*root = xmlDocGetRootElement(doc);
	if (!*root || !is(*root, "DAV:", "multistatus")) {
		snprintf(err, errlen, "reply is not a DAV:multistatus");
		xmlFreeDoc(doc);
		return NULL;
	}
	return doc;
}

int pfs_dav_parse_multistatus(const char *body, size_t len, pfs_dav_resp_fn fn, void *arg,
			      char *err, size_t errlen)
{
	const xmlNode *root = NULL;
	xmlDoc *doc = read_doc(body, len, &root, err, errlen);
	int ret = 0;

	if (!doc)
		return -EIO;
	for (const xmlNode *c = root->children; c && ret == 0; c = c->next)
		if (is(c, "DAV:", "response"))
			ret = read_response(c, fn, arg);
	xmlFreeDoc(doc);
	return ret;
}

int pfs_dav_parse_proppatch(const char *body, size_t len, char *err, size_t errlen)
{
	const xmlNode *root = NULL;
	xmlDoc *doc = read_doc(body, len, &root, err, errlen);
	int ret = 0;

	if (!doc)
		return -EIO;
	for (const xmlNode *r = root->children; r && ret == 0; r = r->next) {
		if (!is(r, "DAV:", "response"))
			continue;
		for (const xmlNode *ps = r->children; ps && ret == 0; ps = ps->next) {
			if (!is(ps, "DAV:", "propstat"))
				continue;
			for (const xmlNode *s = ps->children; s; s = s->next) {
				long code;

				if (!is(s, "DAV:", "status"))
					continue;
				code = status_code(s);
				if (code == 200)
					continue;
				ret = code == 403 || code == 405 || code == 409
					      ? -EOPNOTSUPP
					      : (pfs_http_errno(code) ? pfs_http_errno(code) : -EIO);
				snprintf(err, errlen, "property refused with HTTP %ld", code);
			}
		}
	}
	xmlFreeDoc(doc);
	return ret;
}

char *pfs_dav_proppatch_body(const struct pfs_rmeta *m)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	fputs("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
	      "<D:propertyupdate xmlns:D=\"DAV:\" xmlns:P=\"" PFS_DAV_NS "\"><D:set><D:prop>",
	      f);
	if (m->has & PFS_RMETA_MODE)
		fprintf(f, "<P:mode>%04o</P:mode>", (unsigned)(m->mode & 07777));
	if (m->has & PFS_RMETA_OWNER)
		fprintf(f, "<P:uid>%u</P:uid><P:gid>%u</P:gid>", (unsigned)m->uid,
			(unsigned)m->gid);
	if (m->has & PFS_RMETA_MTIME)
		fprintf(f, "<P:mtime>%lld.%09ld</P:mtime>", (long long)m->mtime.tv_sec,
			(long)m->mtime.tv_nsec);
	fputs("</D:prop></D:set></D:propertyupdate>\n", f);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}
