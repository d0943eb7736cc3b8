/* fs: the owner of struct pfs_fs. pfs_fs_init gives a mount what it has
 * before anything is opened; the caller (cli/daemon.c) then opens the
 * source, the layers, the mapping table and the node table into it, and
 * pfs_fs_fini takes down what the view holds once the session is over.
 * The configuration reaches the view as struct pfs_fs_opts: the view does
 * not read the command line's struct. */
#include "view/view.h"
#include "layers/layer.h"
#include "map/mapwatch.h"
#include "view/nodefd.h"
#include "view/selfmnt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The id the kernel shows for one a user namespace does not map
 * (/proc/sys/kernel/overflowuid, overflowgid): 65534 unless changed. */
static unsigned int overflow_id(const char *path)
{
	unsigned int id = 65534;
	FILE *f = fopen(path, "re");

	if (f) {
		if (fscanf(f, "%u", &id) != 1)
			id = 65534;
		fclose(f);
	}
	return id;
}

void pfs_fs_init(struct pfs_fs *fs, const struct pfs_fs_opts *o)
{
	memset(fs, 0, sizeof(*fs));
	fs->root_fd = -1;
	fs->proc_fd = -1;
	fs->empty_fd = -1;
	fs->cover_fd = -1;
	pthread_rwlock_init(&fs->names_lock, NULL);
	pthread_mutex_init(&fs->dirs_lock, NULL);
	pthread_mutex_init(&fs->map_lock, NULL);
	pthread_mutex_init(&fs->past_map_lock, NULL);
	clock_gettime(CLOCK_REALTIME, &fs->started);
	fs->uid = geteuid();
	fs->gid = getegid();
	fs->squash_uid = o->squash_uid >= 0;
	fs->squash_gid = o->squash_gid >= 0;
	fs->squash_uid_to = (uid_t)o->squash_uid;
	fs->squash_gid_to = (gid_t)o->squash_gid;
	fs->uidmap = o->idmap && o->idmap[0].n ? &o->idmap[0] : NULL;
	fs->gidmap = o->idmap && o->idmap[1].n ? &o->idmap[1] : NULL;
	if (fs->uidmap)
		fs->overflow_uid = (uid_t)overflow_id("/proc/sys/kernel/overflowuid");
	if (fs->gidmap)
		fs->overflow_gid = (gid_t)overflow_id("/proc/sys/kernel/overflowgid");
	fs->read_only = o->read_only;
	fs->timeout = o->timeout;
	fs->keep_cache = !o->volatile_source;
	fs->acl = o->acl;
	/* Listings change with the table; its names are invalidated one by
	 * one, listings are not cached at all. */
	fs->keep_dir_cache = fs->keep_cache && !o->mapped;
	/* A plain listing needs no state between READDIRs (the offsets are the
	 * backing filesystem's cookies): answering OPENDIR with ENOSYS tells the
	 * kernel to open directories without asking, and to keep every listing
	 * cached, so a warm walk costs no round trip per directory. A merged
	 * (layered) listing is ordered by a hash of each name, whose offsets
	 * any listing of it can resume at (readdir_merged.c), as is one the
	 * namespace makes (a .history tree's). Not with an op log, which
	 * records directory opens. */
	fs->stateless_dirs = fs->keep_dir_cache && !o->logged;
}

void pfs_fs_fini(struct pfs_fs *fs)
{
	pfs_view_close_dirs(fs);
	pfs_nodes_destroy(fs);
	pfs_nodefd_destroy(fs);
	pfs_mapwatch_free(fs->watch);
	fs->watch = NULL;
	pfs_map_unref(fs->map);
	pfs_map_unref(fs->past_map);
	fs->past_map = NULL;
	fs->map = NULL;
	if (fs->empty_fd >= 0)
		close(fs->empty_fd);
	fs->empty_fd = -1;
	pthread_mutex_destroy(&fs->map_lock);
	pthread_mutex_destroy(&fs->past_map_lock);
	if (fs->proc_fd >= 0)
		close(fs->proc_fd);
	fs->proc_fd = -1;
	pfs_selfmnt_close(fs);
	pfs_layers_close(fs);
	/* Last: commit-atomic swaps SOURCE away, so nothing may hold it. */
	if (fs->root_fd >= 0)
		close(fs->root_fd);
	fs->root_fd = -1;
	pthread_mutex_destroy(&fs->dirs_lock);
	pthread_rwlock_destroy(&fs->names_lock);
}
