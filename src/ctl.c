#include "ctl.h"
#include "mapwatch.h"
#include "util.h"
#include "view.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
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
	int waiters[MAX_WAITERS];
	int nwaiters;
	char path[108];
	struct stat sock_st; /* the socket file we made, to remove only it */
	time_t started;
};

int pfs_ctl_path(unsigned maj, unsigned min, char *buf, size_t len, int make_dir)
{
	char dir[80];
	const char *rt = getenv("XDG_RUNTIME_DIR");

	if (geteuid() == 0)
		snprintf(dir, sizeof(dir), "/run/prismfs");
	else if (rt && *rt && strlen(rt) < 60)
		snprintf(dir, sizeof(dir), "%s/prismfs", rt);
	else
		snprintf(dir, sizeof(dir), "/tmp/prismfs-%u", (unsigned)geteuid());
	if (make_dir && mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if ((size_t)snprintf(buf, len, "%s/%u-%u.sock", dir, maj, min) >= len)
		return -ENAMETOOLONG;
	return 0;
}

static void write_str(int fd, const char *s)
{
	size_t n = strlen(s);

	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			return;
		}
		s += w;
		n -= (size_t)w;
	}
}

static char *status_json(struct pfs_ctl *ctl)
{
	struct pfs_fs *fs = ctl->fs;
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
	json_object_set_new(o, "data_path", json_string(fs->passthrough_active
								? "kernel passthrough" : "daemon"));
	json_object_set_new(o, "data_path_reason", json_string(fs->data_path_reason));
	json_object_set_new(o, "passthrough_option",
			    json_string((const char *[]){"auto", "on", "off"}[fs->cfg->passthrough]));
	json_object_set_new(o, "backing_ids_open",
			    json_integer((json_int_t)__atomic_load_n(&fs->backing_open,
								     __ATOMIC_RELAXED)));
	json_object_set_new(o, "log", fs->cfg->log_path ? json_string(fs->cfg->log_path)
							: json_null());
	json_object_set_new(o, "log_dropped",
			    json_integer(fs->log ? (json_int_t)pfs_oplog_dropped(fs->log) : 0));
	json_object_set_new(o, "mapping", pfs_mapwatch_status(fs));
	s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

static void serve(struct pfs_ctl *ctl, int fd)
{
	char line[64];
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
	} else if (strcmp(line, "wait") == 0) {
		char pid[32];

		snprintf(pid, sizeof(pid), "pid %d\n", (int)getpid());
		write_str(fd, pid);
		pthread_mutex_lock(&ctl->lock);
		if (ctl->nwaiters < MAX_WAITERS) {
			ctl->waiters[ctl->nwaiters++] = fd;
			fd = -1;
		}
		pthread_mutex_unlock(&ctl->lock);
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
	struct pollfd p[2] = {{.fd = ctl->listen_fd, .events = POLLIN},
			      {.fd = ctl->stop_pipe[0], .events = POLLIN}};

	for (;;) {
		int fd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			serve(ctl, fd);
	}
	return NULL;
}

int pfs_ctl_start(struct pfs_ctl **out, struct pfs_fs *fs, const char *path)
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

void pfs_ctl_finish(struct pfs_ctl *ctl, int exit_code, uint64_t dropped)
{
	char msg[64];

	if (!ctl)
		return;
	if (write(ctl->stop_pipe[1], "x", 1) < 0) {
		/* The thread then only ends with the process. */
	}
	pthread_join(ctl->thread, NULL);
	{
		/* The kernel reuses device numbers at once: a mount made since
		 * ours ended may own this path now. */
		struct stat st;

		if (stat(ctl->path, &st) == 0 && st.st_ino == ctl->sock_st.st_ino &&
		    st.st_dev == ctl->sock_st.st_dev)
			unlink(ctl->path);
	}
	snprintf(msg, sizeof(msg), "exit %d dropped %llu\n", exit_code, (unsigned long long)dropped);
	for (int i = 0; i < ctl->nwaiters; i++) {
		write_str(ctl->waiters[i], msg);
		close(ctl->waiters[i]);
	}
	close(ctl->listen_fd);
	close(ctl->stop_pipe[0]);
	close(ctl->stop_pipe[1]);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
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
	if (ret < 0 || strcmp(e.fstype, "fuse.prismfs") != 0) {
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
		usleep(20000);
	}
	ret = -errno;
	close(fd);
	*why = "its daemon does not answer (it may have died)";
	return ret;
}
