/* idmap: the ranges of uidmapping=/gidmapping= (idmap.h). */
#include "util/idmap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The largest id a range may reach: (uid_t)-1 means "no change" to chown
 * and is no one's id. */
#define ID_LAST 4294967294ULL

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* One decimal field at *p, up to ':' or the end; *p moves past it. */
static int field(const char **p, unsigned long long *out)
{
	unsigned long long v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned long long)(*s - '0');
		if (v > 0xffffffffULL)
			return -EINVAL;
	}
	if (*s != ':' && *s != '\0')
		return -EINVAL;
	*p = s;
	*out = v;
	return 0;
}

static bool overlap(uint32_t a, uint32_t b, uint32_t count_a, uint32_t count_b)
{
	return (unsigned long long)a < (unsigned long long)b + count_b &&
	       (unsigned long long)b < (unsigned long long)a + count_a;
}

int pfs_idmap_parse(const char *s, struct pfs_idmap *m, char *err, size_t errlen)
{
	static const char *const names[3] = {"container id", "host id", "size"};
	const char *p = s ? s : "";

	m->n = 0;
	if (!*p)
		return fail(err, errlen, "no ranges");
	for (;;) {
		unsigned long long v[3];
		struct pfs_idrange *r;

		if (m->n == PFS_IDMAP_MAX)
			return fail(err, errlen, "more than %d ranges", PFS_IDMAP_MAX);
		for (int k = 0; k < 3; k++) {
			if (k > 0 && *p++ != ':')
				return fail(err, errlen, "range %zu has no %s", m->n + 1, names[k]);
			if (field(&p, &v[k]) < 0)
				return fail(err, errlen, "range %zu: the %s is not a number below 4294967296",
					    m->n + 1, names[k]);
		}
		if (v[2] == 0)
			return fail(err, errlen, "range %zu: size 0", m->n + 1);
		if (v[0] + v[2] - 1 > ID_LAST || v[1] + v[2] - 1 > ID_LAST)
			return fail(err, errlen, "range %zu goes past id 4294967294", m->n + 1);
		r = &m->r[m->n];
		*r = (struct pfs_idrange){(uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2]};
		/* One to one, as a user namespace's map: no id on either side
		 * may belong to two ranges. */
		for (size_t i = 0; i < m->n; i++) {
			if (overlap(m->r[i].stored, r->stored, m->r[i].count, r->count) ||
			    overlap(m->r[i].shown, r->shown, m->r[i].count, r->count))
				return fail(err, errlen, "ranges %zu and %zu overlap", i + 1, m->n + 1);
		}
		m->n++;
		if (!*p)
			return 0;
		p++; /* the ':' before the next range */
		if (!*p)
			return fail(err, errlen, "a colon with no range after it");
	}
}

bool pfs_idmap_shown(const struct pfs_idmap *m, uint32_t stored, uint32_t *shown)
{
	for (size_t i = 0; i < m->n; i++) {
		if (stored - m->r[i].stored < m->r[i].count) {
			*shown = m->r[i].shown + (stored - m->r[i].stored);
			return true;
		}
	}
	return false;
}

bool pfs_idmap_stored(const struct pfs_idmap *m, uint32_t shown, uint32_t *stored)
{
	for (size_t i = 0; i < m->n; i++) {
		if (shown - m->r[i].shown < m->r[i].count) {
			*stored = m->r[i].stored + (shown - m->r[i].shown);
			return true;
		}
	}
	return false;
}

/* The layout of include/uapi/linux/posix_acl_xattr.h (acl(5)): a header,
 * then entries, every field little-endian. */
#define ACL_XATTR_VERSION 2u
#define ACL_HEADER 4u
#define ACL_ENTRY 8u
#define ACL_TAG_USER 0x02u
#define ACL_TAG_GROUP 0x08u

bool pfs_idmap_is_acl(const char *name)
{
	return strcmp(name, "system.posix_acl_access") == 0 ||
	       strcmp(name, "system.posix_acl_default") == 0;
}

static uint32_t get_le(const unsigned char *p, int bytes)
{
	uint32_t v = 0;

	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++, v >>= 8)
		p[i] = (unsigned char)v;
}

int pfs_idmap_acl(const struct pfs_idmap *um, const struct pfs_idmap *gm, void *buf, size_t n,
		  bool to_shown, uint32_t overflow_uid, uint32_t overflow_gid)
{
	unsigned char *b = buf;

	if (n < ACL_HEADER || (n - ACL_HEADER) % ACL_ENTRY ||
	    get_le(b, 4) != ACL_XATTR_VERSION)
		return -EINVAL;
	/* Check every id before changing any: a refused ACL is left whole. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t off = ACL_HEADER; off < n; off += ACL_ENTRY) {
			unsigned tag = get_le(b + off, 2);
			const struct pfs_idmap *m = tag == ACL_TAG_USER ? um
						    : tag == ACL_TAG_GROUP ? gm : NULL;
			uint32_t id = get_le(b + off + 4, 4), out;
			bool held;

			if (!m || !m->n)
				continue; /* no id, or no mapping of its kind */
			held = to_shown ? pfs_idmap_shown(m, id, &out) : pfs_idmap_stored(m, id, &out);
			if (!held && !to_shown)
				return -EINVAL;
			/* The kernel's idmapped mounts show -1 there, but FUSE
			 * refuses an ACL naming -1 (EINVAL for the whole
			 * ACL): the overflow id, as for an owner. */
			if (!held)
				out = tag == ACL_TAG_USER ? overflow_uid : overflow_gid;
			if (pass == 1)
				put_le32(b + off + 4, out);
		}
	}
	return 0;
}
