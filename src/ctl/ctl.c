#include "cache/cache.h"
#include "ctl/ctl.h"
#include "history/history.h"
#include "cli/cli.h" /* the mount's configuration, shown by status */
#include "ctl/oplog.h"
#include "view/nodefd.h"
#include "layers/layer.h"
#include "layers/layer_life.h"
#include "map/mapwatch.h"
#include "fuse/uring.h"
#include "util/util.h"
#include "fuse/xport.h"
#include "view/view.h"
#include "store/past.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_WAITERS 16

struct pfs_ctl {
	struct pfs_fs *fs;
	int listen_fd;
	int stop_pipe[2];
	pthread_t thread;
	pthread_mutex_t lock;
	/* Clients waiting to hear how the daemon ends (prismfs unmount), in
	 * the order they came, each with the action it asked for (or NONE). */
	struct {
		int fd;
		enum pfs_action asked;
		bool progress;  /* wants progress records */
	} waiters[MAX_WAITERS];
	int nwaiters;
	char path[108];
	struct stat sock_st; /* the socket file we made, to remove only it */
	time_t started;
	bool stopped;
	const struct pfs_layer_paths *layers; /* NULL: no copy-on-write layers */
	enum pfs_action on_unmount;  /* given at mount */
};

/* The uid outside every user namespace that our euid stands for: root of
 * an `unshare -Ur` made by an unprivileged user is that user, who may not
 * write /run, and whose /tmp/prismfs-UID another namespace's "root" must
 * not share with the real root. Falls back to the euid. */
static unsigned outer_uid(void)
{
	unsigned euid = (unsigned)geteuid(), in, out, count, ret = euid;
	FILE *f = fopen("/proc/self/uid_map", "re");

	if (!f)
		return ret;
	while (fscanf(f, "%u %u %u", &in, &out, &count) == 3)
		if (euid >= in && euid - in < count) {
			ret = out + (euid - in);
			break;
		}
	fclose(f);
	return ret;
}

int pfs_ctl_path(unsigned maj, unsigned min, char *buf, size_t len, int make_dir)
{
	char dir[80];
	const char *rt = getenv("XDG_RUNTIME_DIR");
	unsigned outer = outer_uid();

	if (geteuid() == 0 && outer == 0)
		snprintf(dir, sizeof(dir), "/run/prismfs");
	else if (rt && *rt && strlen(rt) < 60)
		snprintf(dir, sizeof(dir), "%s/prismfs", rt);
	else
		snprintf(dir, sizeof(dir), "/tmp/prismfs-%u", outer);
	if (make_dir && mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if ((size_t)snprintf(buf, len, "%s/%u-%u.sock", dir, maj, min) >= len)
		return -ENAMETOOLONG;
	return 0;
}

static int write_str(int fd, const char *s)
{
	size_t n = strlen(s);

	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			return w < 0 ? -errno : -EPIPE;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The newest waiting client's --action, or on_unmount. Only clients still
 * connected count: one whose unmount failed (busy) has gone, and its
 * action must not hit a later plain umount. */
static enum pfs_action action_now(const struct pfs_ctl *ctl)
{
	if (!ctl->layers || !ctl->layers->upper)
		return PFS_ACT_NONE;
	for (int i = ctl->nwaiters - 1; i >= 0; i--)
		if (ctl->waiters[i].asked != PFS_ACT_NONE)
			return ctl->waiters[i].asked;
	return ctl->on_unmount;
}

/* Forget the waiters whose client has hung up (or sent anything: a
 * waiting client only listens). Under ctl->lock or with the thread
 * joined. */
static void drop_gone_waiters(struct pfs_ctl *ctl)
{
	int kept = 0;

	for (int i = 0; i < ctl->nwaiters; i++) {
		struct pollfd p = {.fd = ctl->waiters[i].fd, .events = POLLIN | POLLRDHUP};

		if (poll(&p, 1, 0) > 0) {
			close(p.fd);
			continue;
		}
		ctl->waiters[kept++] = ctl->waiters[i];
	}
	ctl->nwaiters = kept;
}

static json_t *layers_json(struct pfs_ctl *ctl)
{
	const struct pfs_layer_paths *lp = ctl->layers;
	json_t *o, *lowers;

	if (!lp)
		return json_null();
	o = json_object();
	lowers = json_array();
	for (size_t i = 0; i < lp->nlowers; i++)
		json_array_append_new(lowers, json_string(lp->lowers[i]));
	/* A mount of lowers only has neither (null) */
	json_object_set_new(o, "upper", lp->upper ? json_string(lp->upper) : json_null());
	json_object_set_new(o, "work", lp->work ? json_string(lp->work) : json_null());
	json_object_set_new(o, "lowers", lowers);
	/* How many of the last lowers are data-only (lowerdir=A::D). */
	json_object_set_new(o, "data_only",
			    json_integer(ctl->fs->layers ? (json_int_t)ctl->fs->layers->ndata : 0));
	json_object_set_new(o, "whiteout", json_string(pfs_whiteout_name(ctl->fs->cfg->whiteout)));
	json_object_set_new(o, "on_unmount", json_string(pfs_action_name(action_now(ctl))));
	json_object_set_new(o, "lower_passthrough", json_boolean(ctl->fs->cfg->lower_pt));
	/* The upper holds a mapping table's view paths: no commit takes it. */
	json_object_set_new(o, "mapped", json_boolean(ctl->fs->layers && ctl->fs->layers->mapped));
	return o;
}

/* uidmapping=/gidmapping= as the option spells them (CONTAINERID:HOSTID:SIZE
 * ranges, colon-joined), or null when not given. */
static json_t *idmap_json(const struct pfs_idmap *m)
{
	char *s, *p;
	json_t *j;

	if (!m || !m->n)
		return json_null();
	/* three ids of at most 10 digits and three separators per range */
	s = malloc(m->n * 33 + 1);
	if (!s)
		return json_null();
	p = s;
	for (size_t i = 0; i < m->n; i++)
		p += sprintf(p, "%s%u:%u:%u", i ? ":" : "", m->r[i].stored, m->r[i].shown,
			     m->r[i].count);
	j = json_string(s);
	free(s);
	return j;
}

/* How owners are shown (fuse-overlayfs's options): the id mappings, and
 * the one id every owner or group is shown as (squash_to_root,
 * squash_to_uid=, squash_to_gid=), null when not given. */
static json_t *ids_json(const struct pfs_fs *fs)
{
	json_t *o = json_object();

	json_object_set_new(o, "uidmapping", idmap_json(fs->uidmap));
	json_object_set_new(o, "gidmapping", idmap_json(fs->gidmap));
	json_object_set_new(o, "squash_to_uid", fs->squash_uid ? json_integer(fs->squash_uid_to)
								: json_null());
	json_object_set_new(o, "squash_to_gid", fs->squash_gid ? json_integer(fs->squash_gid_to)
								: json_null());
	return o;
}

/* The words after "wait": [action=ACTION] [progress], in any order, each
 * at most once. 0 or -EINVAL. */
static int parse_wait(char *arg, enum pfs_action *a, bool *progress)
{
	bool have_action = false;
	char *save = NULL;

	for (char *w = strtok_r(arg, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		if (strncmp(w, "action=", 7) == 0 && !have_action) {
			if (pfs_action_parse(w + 7, a) < 0)
				return -EINVAL;
			have_action = true;
		} else if (strcmp(w, "progress") == 0 && !*progress) {
			*progress = true;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

/* "wait [action=ACTION] [progress]": register fd to hear how the daemon
 * ends. Returns fd when it is not kept. */
static int serve_wait(struct pfs_ctl *ctl, int fd, char *arg)
{
	char msg[PATH_MAX + 160];
	enum pfs_action a = PFS_ACT_NONE;
	bool progress = false;

	if (parse_wait(arg, &a, &progress) < 0) {
		write_str(fd, "error unknown wait request\n");
		return fd;
	}
	if (a != PFS_ACT_NONE && (!ctl->layers || !ctl->layers->upper)) {
		snprintf(msg, sizeof(msg), "error %s has no upper directory: --action is for "
			 "mounts made with --upper\n", ctl->fs->mountpoint);
		write_str(fd, msg);
		return fd;
	}
	if ((a == PFS_ACT_COMMIT || a == PFS_ACT_COMMIT_ATOMIC) && ctl->fs->layers &&
	    ctl->fs->layers->mapped) {
		/* Refused before anything is unmounted: the mount and its upper
		 * stay as they are. */
		snprintf(msg, sizeof(msg), "error --action %s refused: the upper of %s holds the "
			 "paths of its mapping table's view, not SOURCE's; unmount with --action "
			 "preserve or discard\n", pfs_action_name(a), ctl->fs->mountpoint);
		write_str(fd, msg);
		return fd;
	}
	pthread_mutex_lock(&ctl->lock);
	if (ctl->nwaiters == MAX_WAITERS) {
		pthread_mutex_unlock(&ctl->lock);
		write_str(fd, "error too many clients are waiting for this mount\n");
		return fd;
	}
	ctl->waiters[ctl->nwaiters].fd = fd;
	ctl->waiters[ctl->nwaiters].progress = progress;
	ctl->waiters[ctl->nwaiters++].asked = a; /* the newest asking wins */
	snprintf(msg, sizeof(msg), "pid %d action %s\n", (int)getpid(),
		 pfs_action_name(action_now(ctl)));
	pthread_mutex_unlock(&ctl->lock);
	write_str(fd, msg);
	return -1;
}

static json_t *node_fds_json(struct pfs_fs *fs)
{
	struct pfs_nodefd *b = fs->nfd;
	json_t *o = json_object();

	/* open: those the budget may close (others never are: the root,
	 * synthetic and layered nodes, and objects without file handles). */
	json_object_set_new(o, "open", json_integer(__atomic_load_n(&b->held, __ATOMIC_RELAXED)));
	json_object_set_new(o, "budget", json_integer(b->budget));
	json_object_set_new(o, "closed", json_integer((json_int_t)__atomic_load_n(
							  &b->closed, __ATOMIC_RELAXED)));
	json_object_set_new(o, "reopened", json_integer((json_int_t)__atomic_load_n(
							    &b->reopened, __ATOMIC_RELAXED)));
	return o;
}

/* A cached mount's write-back and cache (cache/cache.h), or null. */
static json_t *cache_json(struct pfs_fs *fs)
{
	const struct pfs_config *cfg = fs->cfg;
	struct pfs_cache_stats s;
	json_t *o;
	uint64_t uses;

	if (!fs->cache)
		return json_null();
	pfs_cache_stats(fs->cache, &s);
	uses = s.hits + s.files_loaded;
	o = json_object();
	json_object_set_new(o, "mirror", json_string(fs->source));
	json_object_set_new(o, "mirror_kind", json_string(s.mirror_kind));
	json_object_set_new(o, "guarantees", json_string(s.guarantees));
	json_object_set_new(o, "pending_ops", json_integer((json_int_t)s.pending_ops));
	json_object_set_new(o, "pending_bytes", json_integer((json_int_t)s.pending_bytes));
	json_object_set_new(o, "written_back", json_integer((json_int_t)s.applied));
	json_object_set_new(o, "failures", json_integer((json_int_t)s.failures));
	json_object_set_new(o, "last_error", s.last_err ? json_string(s.last_msg) : json_null());
	json_object_set_new(o, "conflicts", json_integer((json_int_t)s.conflicts));
	json_object_set_new(o, "last_conflict",
			    s.conflicts ? json_string(s.last_conflict) : json_null());
	json_object_set_new(o, "cache_size", json_integer((json_int_t)cfg->cache_size));
	json_object_set_new(o, "cache_used", json_integer((json_int_t)s.used_bytes));
	json_object_set_new(o, "max_dirty", json_integer((json_int_t)cfg->cache_max_dirty));
	json_object_set_new(o, "write_back_delay", json_real(cfg->write_back));
	json_object_set_new(o, "lazy_load", json_boolean(cfg->lazy_load));
	json_object_set_new(o, "dirs_loaded", json_integer((json_int_t)s.dirs_filled));
	json_object_set_new(o, "files_loaded", json_integer((json_int_t)s.files_loaded));
	json_object_set_new(o, "bytes_loaded", json_integer((json_int_t)s.bytes_loaded));
	json_object_set_new(o, "hits", json_integer((json_int_t)s.hits));
	json_object_set_new(o, "evictions", json_integer((json_int_t)s.evictions));
	json_object_set_new(o, "bytes_evicted", json_integer((json_int_t)s.bytes_evicted));
	json_object_set_new(o, "hit_rate", uses ? json_real((double)s.hits / (double)uses)
						: json_null());
	return o;
}

static char *status_json(struct pfs_ctl *ctl)
{
	struct pfs_fs *fs = ctl->fs;
	struct pfs_xport *xp = fs->xport;
	json_t *o = json_object();
	char *s;

	json_object_set_new(o, "version", json_string(PRISMFS_VERSION));
	json_object_set_new(o, "pid", json_integer(getpid()));
	json_object_set_new(o, "source", json_string(fs->source));
	json_object_set_new(o, "mountpoint", json_string(fs->mountpoint));
	json_object_set_new(o, "started", json_integer(ctl->started));
	json_object_set_new(o, "read_only", json_boolean(fs->read_only));
	json_object_set_new(o, "timeout", json_real(fs->timeout));
	json_object_set_new(o, "nodes", json_integer((json_int_t)pfs_nodes_count(fs)));
	json_object_set_new(o, "node_fds", node_fds_json(fs));
	json_object_set_new(o, "data_path", json_string(xp->passthrough_active
								? "kernel passthrough" : "daemon"));
	json_object_set_new(o, "data_path_reason", json_string(xp->data_path_reason));
	json_object_set_new(o, "passthrough_option",
			    json_string((const char *[]){"auto", "on", "off"}[fs->cfg->passthrough]));
	json_object_set_new(o, "requests", json_string(xp->uring ? "io_uring" : "/dev/fuse"));
	json_object_set_new(o, "requests_reason", json_string(xp->requests_reason));
	json_object_set_new(o, "uring_option",
			    json_string((const char *[]){"auto", "on", "off"}[fs->cfg->uring]));
	json_object_set_new(o, "uring_queues", json_integer(pfs_uring_queues(xp->uring)));
	json_object_set_new(o, "uring_threads", json_integer(pfs_uring_threads(xp->uring)));
	json_object_set_new(o, "backing_ids_open",
			    json_integer((json_int_t)__atomic_load_n(&xp->backing_open,
								     __ATOMIC_RELAXED)));
	/* close() does not wait for the kernel's RELEASE: this says when the
	 * daemon has seen them all. */
	json_object_set_new(o, "files_open",
			    json_integer((json_int_t)__atomic_load_n(&fs->files_open,
								     __ATOMIC_RELAXED)));
	json_object_set_new(o, "log", fs->cfg->log_path ? json_string(fs->cfg->log_path)
							: json_null());
	json_object_set_new(o, "log_dropped",
			    json_integer(fs->log ? (json_int_t)pfs_oplog_dropped(fs->log) : 0));
	json_object_set_new(o, "mapping", pfs_mapwatch_status(fs));
	json_object_set_new(o, "ids", ids_json(fs));
	json_object_set_new(o, "layers", layers_json(ctl));
	json_object_set_new(o, "cache", cache_json(fs));
	if (pfs_history_is(fs->store))
		json_object_set_new(o, "history", json_pack("{s:s, s:I}", "dir",
				    pfs_history_dir(fs->store), "checkpoint_checks",
				    (json_int_t)pfs_history_checks(fs->store)));
	s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

/* "prune DRY [KEEP|- [MAX|-]]": prune by the mount's policy, or by the
 * rules given; "ok JSON" (the report). */
static void serve_prune(struct pfs_store *st, int fd, const char *args)
{
	struct pfs_hist_policy pol;
	const struct pfs_hist_policy *use = NULL;
	char keep[256] = "-", max[64] = "-", err[256] = "", *rep = NULL;
	int dry = 0, r;

	sscanf(args, "%d %255s %63s", &dry, keep, max);
	if (strcmp(keep, "-") != 0 || strcmp(max, "-") != 0) {
		pfs_hist_policy_init(&pol);
		if ((strcmp(keep, "-") != 0 && pfs_hist_parse_keep(keep, &pol, err, sizeof(err)) < 0) ||
		    (strcmp(max, "-") != 0 && pfs_hist_parse_size(max, &pol.max_bytes) < 0)) {
			write_str(fd, "error bad --keep or --history-max\n");
			return;
		}
		use = &pol;
	}
	r = pfs_history_prune(st, use, dry != 0, &rep);
	if (r < 0) {
		snprintf(err, sizeof(err), "error cannot prune: %s\n", strerror(-r));
		write_str(fd, err);
	} else {
		write_str(fd, "ok ");
		write_str(fd, rep);
		write_str(fd, "\n");
	}
	free(rep);
}

/* "history": "dir DIR", the mount's history directory; "browse": "name
 * NAME", the root's name of the .history tree (restore reads it); "snapshot PIN
 * [NAME]": take one, "ok ID"; "layered": "yes" or "no"; "export-layer
 * SNAP<TAB>DIR": write the upper as it was at SNAP into the new directory
 * DIR (layers/layer_past.c), "ok" once it is there whole. Either "error
 * MESSAGE" when it cannot. */
static void serve_history(struct pfs_ctl *ctl, int fd, const char *line)
{
	struct pfs_store *st = ctl->fs->store;
	char msg[PATH_MAX + 300], err[PATH_MAX];

	if (!pfs_history_is(st)) {
		write_str(fd, "error this mount keeps no history (mount it with --history DIR)\n");
		return;
	}
	if (strcmp(line, "history") == 0) {
		pfs_history_flush(st); /* the outcomes so far, for the reader */
		snprintf(msg, sizeof(msg), "dir %s\n", pfs_history_dir(st));
	} else if (strcmp(line, "browse") == 0) {
		if (ctl->fs->past_name)
			snprintf(msg, sizeof(msg), "name %s\n", ctl->fs->past_name);
		else
			snprintf(msg, sizeof(msg), "error this mount shows no past tree\n");
	} else if (strncmp(line, "prune ", 6) == 0) {
		serve_prune(st, fd, line + 6);
		return;
	} else if (strcmp(line, "layered") == 0) {
		snprintf(msg, sizeof(msg), "%s\n", ctl->fs->layers ? "yes" : "no");
	} else if (strncmp(line, "export-layer ", 13) == 0) {
		const struct pfs_past *past = ctl->fs->past;
		char *snap = strdup(line + 13), *dir = snap ? strchr(snap, '\t') : NULL;

		if (!past || !past->export_layer)
			snprintf(msg, sizeof(msg), "error this mount has no layers: export it as a "
				 "tar stream\n");
		else if (!dir)
			snprintf(msg, sizeof(msg), "error bad request\n");
		else if ((*dir++ = '\0', past->export_layer(past->ctx, snap, dir, err,
							   sizeof(err))) < 0)
			snprintf(msg, sizeof(msg), "error %s\n", err);
		else
			snprintf(msg, sizeof(msg), "ok\n");
		free(snap);
	} else {
		const char *name = line + 9;
		bool pin = name[0] == '1';
		long long id;

		name += name[0] ? 1 : 0;
		name += strspn(name, " ");
		id = pfs_history_snapshot(st, name, pin, err, sizeof(err));
		if (id < 0)
			snprintf(msg, sizeof(msg), "error %s\n", err);
		else
			snprintf(msg, sizeof(msg), "ok %lld\n", id);
	}
	write_str(fd, msg);
}

static void serve(struct pfs_ctl *ctl, int fd)
{
	char line[512];
	ssize_t n;
	struct timeval tv = {.tv_sec = 2};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = recv(fd, line, sizeof(line) - 1, 0);
	if (n <= 0)
		goto close;
	line[n] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	if (strcmp(line, "status") == 0) {
		char *s = status_json(ctl);

		if (s) {
			write_str(fd, s);
			write_str(fd, "\n");
			free(s);
		}
	} else if (strcmp(line, "sync") == 0) {
		/* Answered on this thread: status waits meanwhile. */
		int r = ctl->fs->cache ? pfs_cache_sync(ctl->fs->cache) : 0;
		char *msg = NULL;

		/* The cache lists its directories again at their next use:
		 * the kernel asks for them at its next. */
		if (ctl->fs->cache)
			pfs_nodes_stale_dirs(ctl->fs);

		if (r < 0) {
			struct pfs_cache_stats s;

			pfs_cache_stats(ctl->fs->cache, &s);
			if (asprintf(&msg, "error %llu change%s not written back to %s: %s\n",
				     (unsigned long long)s.pending_ops, s.pending_ops == 1 ? "" : "s",
				     ctl->fs->source, s.last_msg[0] ? s.last_msg : strerror(-r)) < 0)
				msg = NULL;
		}
		write_str(fd, msg ? msg : r < 0 ? "error the mirror cannot be written\n" : "ok\n");
		free(msg);
	} else if (strcmp(line, "history") == 0 || strcmp(line, "browse") == 0 ||
		   strncmp(line, "snapshot ", 9) == 0 ||
		   strncmp(line, "prune ", 6) == 0 || strcmp(line, "layered") == 0 ||
		   strncmp(line, "export-layer ", 13) == 0) {
		serve_history(ctl, fd, line);
	} else if (strncmp(line, "wait", 4) == 0 && (line[4] == '\0' || line[4] == ' ')) {
		fd = serve_wait(ctl, fd, line + 4);
	} else {
		write_str(fd, "error unknown command\n");
	}
close:
	if (fd >= 0)
		close(fd);
}

static void *ctl_thread(void *arg)
{
	struct pfs_ctl *ctl = arg;
	struct pollfd p[2 + MAX_WAITERS] = {{.fd = ctl->listen_fd, .events = POLLIN},
					    {.fd = ctl->stop_pipe[0], .events = POLLIN}};

	for (;;) {
		int fd, n;
		bool hangup = false;

		/* Waiters too: to notice a client that gave up. */
		pthread_mutex_lock(&ctl->lock);
		n = ctl->nwaiters;
		for (int i = 0; i < n; i++)
			p[2 + i] = (struct pollfd){.fd = ctl->waiters[i].fd,
						   .events = POLLIN | POLLRDHUP};
		pthread_mutex_unlock(&ctl->lock);
		if (poll(p, (nfds_t)(2 + n), -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		for (int i = 0; i < n; i++)
			hangup |= p[2 + i].revents != 0;
		if (hangup) {
			pthread_mutex_lock(&ctl->lock);
			drop_gone_waiters(ctl);
			pthread_mutex_unlock(&ctl->lock);
		}
		if (!p[0].revents)
			continue;
		fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			serve(ctl, fd);
	}
	return NULL;
}

int pfs_ctl_start(struct pfs_ctl **out, struct pfs_fs *fs, const char *path,
		  const struct pfs_layer_paths *layers, enum pfs_action on_unmount)
{
	struct pfs_ctl *ctl = calloc(1, sizeof(*ctl));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int ret;

	if (!ctl)
		return -ENOMEM;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		ret = -ENAMETOOLONG;
		goto err_free;
	}
	ctl->fs = fs;
	ctl->layers = layers;
	ctl->on_unmount = on_unmount;
	ctl->started = time(NULL);
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	strcpy(sa.sun_path, path);
	pthread_mutex_init(&ctl->lock, NULL);
	if (pipe2(ctl->stop_pipe, O_CLOEXEC) < 0) {
		ret = -errno;
		goto err_free;
	}
	ctl->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl->listen_fd < 0) {
		ret = -errno;
		goto err_pipe;
	}
	unlink(path); /* a daemon that died left it; the device numbers are ours now */
	if (bind(ctl->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(ctl->listen_fd, 16) < 0) {
		ret = -errno;
		goto err_sock;
	}
	if (stat(path, &ctl->sock_st) < 0)
		memset(&ctl->sock_st, 0, sizeof(ctl->sock_st));
	ret = pthread_create(&ctl->thread, NULL, ctl_thread, ctl);
	if (ret) {
		ret = -ret;
		unlink(path);
		goto err_sock;
	}
	*out = ctl;
	return 0;
err_sock:
	close(ctl->listen_fd);
err_pipe:
	close(ctl->stop_pipe[0]);
	close(ctl->stop_pipe[1]);
err_free:
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
	return ret;
}

void pfs_ctl_stop(struct pfs_ctl *ctl)
{
	struct stat st;

	if (!ctl || ctl->stopped)
		return;
	ctl->stopped = true;
	if (write(ctl->stop_pipe[1], "x", 1) < 0) {
		/* The thread then only ends with the process. */
	}
	pthread_join(ctl->thread, NULL);
	/* The kernel reuses device numbers at once: a mount made since ours
	 * ended may own this path now. */
	if (stat(ctl->path, &st) == 0 && st.st_ino == ctl->sock_st.st_ino &&
	    st.st_dev == ctl->sock_st.st_dev)
		unlink(ctl->path);
	close(ctl->listen_fd);
	ctl->listen_fd = -1;
	drop_gone_waiters(ctl);
}

enum pfs_action pfs_ctl_action(const struct pfs_ctl *ctl)
{
	/* The thread that registers waiters has been joined: no lock needed. */
	return ctl ? action_now(ctl) : PFS_ACT_NONE;
}

bool pfs_ctl_wants_progress(const struct pfs_ctl *ctl)
{
	if (!ctl)
		return false;
	for (int i = 0; i < ctl->nwaiters; i++)
		if (ctl->waiters[i].progress)
			return true;
	return false;
}

void pfs_ctl_progress(void *arg, const struct pfs_progress *p)
{
	struct pfs_ctl *ctl = arg;
	char rec[128];
	int n = pfs_progress_encode(p, rec, sizeof(rec));

	if (n < 0)
		return;
	for (int i = 0; i < ctl->nwaiters; i++) {
		ssize_t w;

		if (!ctl->waiters[i].progress)
			continue;
		/* A commit must not wait for a client's terminal: a record
		 * that does not fit now is dropped (the next one says more). */
		w = send(ctl->waiters[i].fd, rec, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
		/* A record this small goes whole or not at all on a local
		 * stream socket; should part of one ever go, the rest must
		 * follow, or the line after it would be garbled. */
		if (w > 0 && w < n)
			write_str(ctl->waiters[i].fd, rec + w);
	}
}

int pfs_ctl_finish(struct pfs_ctl *ctl, int exit_code, uint64_t dropped,
		   const char *action_line)
{
	char *msg = NULL;
	int told = 0;

	if (!ctl)
		return 0;
	pfs_ctl_stop(ctl);
	if (asprintf(&msg, "exit %d dropped %llu%s%s\n", exit_code, (unsigned long long)dropped,
		     action_line ? " action " : "", action_line ? action_line : "") < 0)
		msg = NULL;
	for (int i = 0; i < ctl->nwaiters; i++) {
		if (write_str(ctl->waiters[i].fd, msg ? msg : "exit 1 dropped 0\n") == 0)
			told++;
		close(ctl->waiters[i].fd);
	}
	free(msg);
	close(ctl->stop_pipe[0]);
	close(ctl->stop_pipe[1]);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
	return told;
}

bool pfs_ctl_is_prismfs(const struct pfs_mntent *e)
{
	struct sockaddr_un sa;
	struct stat st;

	if (strcmp(e->fstype, "fuse.prismfs") == 0)
		return true;
	/* fsname= only changes the source column; subtype= changes the type
	 * to fuse.NAME. The socket is made by the daemon of this very device
	 * (a stale one is replaced at mount), so it marks the mount as ours. */
	if (strcmp(e->fstype, "fuse") != 0 && strncmp(e->fstype, "fuse.", 5) != 0)
		return false;
	return pfs_ctl_path(e->major, e->minor, sa.sun_path, sizeof(sa.sun_path), 0) == 0 &&
	       stat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode);
}

int pfs_ctl_connect(const char *mountpoint, const char **why)
{
	struct pfs_mntent e;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int ret, fd;

	if (!f) {
		*why = "cannot read /proc/self/mountinfo";
		return -errno;
	}
	ret = pfs_mountinfo_find(f, mountpoint, &e);
	fclose(f);
	if (ret < 0 || !pfs_ctl_is_prismfs(&e)) {
		*why = "not a prismfs mount";
		return -EINVAL;
	}
	ret = pfs_ctl_path(e.major, e.minor, sa.sun_path, sizeof(sa.sun_path), 0);
	if (ret < 0) {
		*why = "no control socket path";
		return ret;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*why = "cannot create a socket";
		return -errno;
	}
	/* The mount appears a moment before its daemon listens (a foreground
	 * daemon has nobody to wait for it): give it up to two seconds. */
	for (int tries = 0; tries < 100; tries++) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		if (errno != ENOENT && errno != ECONNREFUSED)
			break;
		/* A daemon that died (kill -9) leaves its mount: the kernel
		 * answers every access with ENOTCONN, which no live daemon's
		 * mount does. Asked first, before waiting for nothing, and
		 * again now and then: the connection ends only once the dead
		 * daemon's last hold on /dev/fuse is gone (its io_uring rings
		 * are torn down after its threads). */
		if (tries % 10 == 0 && pfs_mount_is_dead(mountpoint)) {
			close(fd);
			*why = "its daemon is gone";
			return -ENOTCONN;
		}
		usleep(20000);
	}
	ret = -errno;
	close(fd);
	*why = "its daemon does not answer (it may have died)";
	return ret;
}
