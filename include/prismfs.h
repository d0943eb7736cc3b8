/* prismfs.h — embed prismfs in a C program: configure a mount, mount it,
 * find its mount point, unmount it with an action on the upper layer.
 *
 * Link with `pkg-config --cflags --libs prismfs`. The library runs the same
 * code as the `prismfs mount` command: a configuration is turned into that
 * command line and checked by the same parser, so every default, option and
 * error is the command's (see `prismfs mount --help`).
 *
 * Processes: prismfs_mount() forks the filesystem daemon from the calling
 * process and returns once the mount answers; the daemon serves it until
 * prismfs_unmount() (or `prismfs unmount`, `fusermount3 -u`, umount). The
 * calling process is its parent and prismfs_unmount() reaps it. Mount before
 * starting threads where you can: the daemon starts its own threads in a
 * forked copy of the caller. Mounting needs access to /dev/fuse (root, or
 * fusermount3 for other users), as the command does.
 *
 * Errors: functions returning int give 0 on success or a negative errno;
 * prismfs_last_error() then gives a one-line reason. Nothing is printed. */
#ifndef PRISMFS_H
#define PRISMFS_H

#ifdef __cplusplus
extern "C" {
#endif

/* A mount's configuration: a source, optional copy-on-write layers, and
 * options. Not shared between threads while it is being changed. */
typedef struct prismfs_config prismfs_config;

/* A mounted filesystem, from prismfs_mount() until prismfs_unmount(). */
typedef struct prismfs_mount prismfs_mount_t;

/* What becomes of the upper directory of a copy-on-write mount when it is
 * unmounted (`prismfs unmount --action`). */
enum prismfs_action {
	/* The "on-unmount" option given at mount time, else PRESERVE. The only
	 * choice that means anything for a mount without an upper; PRESERVE is
	 * accepted there too. */
	PRISMFS_ON_UNMOUNT = 0,
	PRISMFS_PRESERVE,      /* keep the upper as it is */
	PRISMFS_DISCARD,       /* empty the upper (and the work directory) */
	PRISMFS_COMMIT,        /* apply the upper to the top lower in place, then empty it */
	PRISMFS_COMMIT_ATOMIC, /* build the new lower beside it and swap it in at once */
};

/* A new, empty configuration, or NULL when out of memory. */
prismfs_config *prismfs_config_new(void);

/* Release cfg (NULL is fine). Mounts made from it are not affected. */
void prismfs_config_free(prismfs_config *cfg);

/* The directory to show (for a copy-on-write mount: the highest lower
 * layer, read-only). Required. The path is copied; it is checked at mount. */
int prismfs_config_set_source(prismfs_config *cfg, const char *path);

/* The upper directory: with it the mount is copy-on-write, and every change
 * lands in the upper while the source and lowers stay as they are. */
int prismfs_config_set_upper(prismfs_config *cfg, const char *path);

/* The overlay work directory, on the upper's filesystem (default: one made
 * there). Only with an upper. */
int prismfs_config_set_work(prismfs_config *cfg, const char *path);

/* One more read-only layer below the source; the first added is the
 * highest. With an upper, or without one: the source and its lowers are
 * then a read-only merge (the kernel's lowerdir=A:B alone). */
int prismfs_config_add_lower(prismfs_config *cfg, const char *path);

/* One more data-only layer, below every lower (`--data-lower`, the kernel's
 * lowerdir=A::D): its names never show; it holds the data of metacopy files
 * of the layers above (an empty overlay.metacopy xattr and an absolute
 * overlay.redirect). The first added is searched first. Needs the source
 * (and any lowers) as the regular layers above it. */
int prismfs_config_add_data_lower(prismfs_config *cfg, const char *path);

/* Any other option of `prismfs mount`, by its long name without "--", with
 * the meaning and checks `prismfs mount --help` gives it:
 *   "read-only", "volatile", "no-default-permissions", "private",
 *   "squash-to-root"  value NULL (or "1")
 *   "passthrough"  "auto" | "on" | "off"
 *   "uring"        "auto" | "on" | "off"
 *   "map"          a mapping table (file or named pipe)
 *   "map-max"      bytes
 *   "log"          a file, or "-" for the daemon's stderr
 *   "log-format"   "text" | "json"
 *   "timeout"      seconds;   "threads", "node-fds"  a count
 *   "squash-to-uid", "squash-to-gid"  a uid, a gid: every owner shown so
 *   "uidmapping", "gidmapping"  CONTAINERID:HOSTID:SIZE[:...]
 *   "whiteout"     "auto" | "chardev" | "file"
 *   "on-unmount"   "preserve" | "discard" | "commit" | "commit-atomic"
 *   "default-upper"  value NULL: the upper is SOURCE_upper, made if missing
 *   "lower-passthrough"  value NULL (or "1", "on") | "off": a lower file
 *                  opened read-only is read by kernel passthrough too (a
 *                  copy-up then leaves descriptors opened before it on the
 *                  lower data); only with an upper
 *   "new-mountpoint" "tmp" | "cache": prismfs_mount() is given no mount
 *                  point and makes one ($TMPDIR or /tmp, or
 *                  ~/.cache/prismfs); prismfs_mount_point() names it.
 *                  The unmount action removes what the mount made, never
 *                  a directory that was there: PRESERVE the mount point,
 *                  DISCARD the upper and the mount point, COMMIT (and
 *                  COMMIT_ATOMIC) both once they succeeded.
 * The memory cache (a cached mount has no source: leave it unset, the
 * mirror takes its place):
 *   "mirror"       DIR, file:///DIR, http(s)://HOST/PATH, dav(s)://HOST/PATH
 *                  or s3://BUCKET[/PREFIX]: the mount is a memory cache of
 *                  it, written back in the background (and all of it by
 *                  prismfs_unmount() before it returns)
 *   "cache-size"   memory for the cache: K, M, G (a bare number is MiB;
 *                  at least 1M; default 512M)
 *   "cache-max-dirty"  data not yet written back above which writers wait
 *                  (a size as cache-size; "cache-max-write-size" is the
 *                  same option, mem-fuse's name)
 *   "lazy-load"    value NULL (or "1", "on") | "off": off reads every
 *                  directory at mount and loads files while there is room
 *   "write-back"   seconds a change waits before it is written back
 *   "journal"      a local directory: every change is recorded there
 *                  before it is acknowledged, so a kill -9 loses none
 *   "mirror-ttl"   seconds after which a directory is listed from the
 *                  mirror again (0: never)
 *   "s3-endpoint"  an http(s):// URL;  "s3-region", "s3-profile"  names:
 *                  an s3:// mirror's server, signing region and profile
 * The history (see `prismfs log`, `prismfs snapshot`):
 *   "history"      a local directory: every change through the mount is
 *                  journalled in it, snapshots keep previous versions
 *   "checkpoint-every"  a duration (30s, 15m, 1h, 1d): automatic snapshots
 *   "keep"         which automatic snapshots a prune keeps:
 *                  hourly=N,daily=N,weekly=N,monthly=N,last=N,manual=N
 *   "history-max"  a size (K, M, G) the saved versions are pruned to
 *   "history-dir-name"  the name of the snapshots' directory at the root
 *                  (default .history)
 *   "o"            FUSE mount options, comma separated (repeatable)
 * -EINVAL for an unknown key, a missing value or a flag given one; values
 * are checked by prismfs_mount() (-EINVAL, nothing mounted, for one the
 * command would refuse, or an option that needs another: the cache's need
 * "mirror", the history's "history"). Later values of a key win, except
 * "o", which adds. */
int prismfs_config_set_option(prismfs_config *cfg, const char *key, const char *value);

/* Mount cfg at mountpoint (an existing directory; it may be the source
 * itself; NULL with the option "new-mountpoint"). On success *out is the mount, to be given to prismfs_unmount().
 * Errors: -EINVAL for a configuration the command would refuse (no source
 * nor mirror, a source path given with a mirror,
 * a bad option value, a -o option libfuse refuses), -ENOENT when a
 * directory it names does not exist (the source, the mount point, the
 * upper, a lower), -EIO for a mount that failed otherwise (a busy mount
 * point, no /dev/fuse...), -ENOMEM; nothing is mounted then and *out is
 * NULL. */
int prismfs_mount(const prismfs_config *cfg, const char *mountpoint, prismfs_mount_t **out);

/* The absolute, canonical path of m's mount point. Valid until m is freed. */
const char *prismfs_mount_point(const prismfs_mount_t *m);

/* Unmount m, run action on its upper (see enum prismfs_action) and wait
 * until the daemon has finished. On 0, m is freed. -EBUSY: still mounted
 * (a program has a file open or its working directory there); m stays
 * valid, to try again. -EINVAL: an action other than PRESERVE for a mount
 * without an upper; nothing was done and m stays valid. Any other error
 * (the action failed — its upper is then kept, as it was) frees m: the
 * filesystem is no longer mounted. */
int prismfs_unmount(prismfs_mount_t *m, enum prismfs_action action);

/* The reason for the last failure of a prismfs_ call in this thread, one
 * line without a newline ("" if none). Valid until the next call. */
const char *prismfs_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
