/* cli: the command line, parsed into a configuration. Pure: no I/O. */
#ifndef PFS_CLI_H
#define PFS_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "ctl/oplog.h"
#include "layers/layer_opts.h"
#include "util/idmap.h"

enum pfs_cmd {
	PFS_CMD_HELP,
	PFS_CMD_VERSION,
	PFS_CMD_MOUNT,
	PFS_CMD_MOUNT_HELP,
	PFS_CMD_UNMOUNT,
	PFS_CMD_STATUS,
	PFS_CMD_COMMIT,
	PFS_CMD_DISCARD,
	PFS_CMD_RECOVER,
	PFS_CMD_LAYERS_HELP, /* commit/discard/recover --help */
	PFS_CMD_UNMOUNT_HELP,
	PFS_CMD_STATUS_HELP,
	PFS_CMD_SYNC,
	PFS_CMD_SYNC_HELP,
};

/* Both in the order auto, on, off (cli.c parses them alike). */
enum pfs_passthrough { PFS_PT_AUTO, PFS_PT_ON, PFS_PT_OFF };

/* How requests reach the daemon: FUSE over io_uring or /dev/fuse. */
enum pfs_uring_opt { PFS_UR_AUTO, PFS_UR_ON, PFS_UR_OFF };

#define PFS_DEFAULT_TIMEOUT 86400.0

struct pfs_config {
	enum pfs_cmd cmd;
	const char *source;     /* as given on the command line */
	const char *mountpoint;
	bool foreground;
	bool read_only;
	bool volatile_source;   /* other programs change the source: no kernel caching */
	bool default_permissions; /* kernel checks permissions against our attributes */
	bool allow_other;       /* -o allow_other given */
	bool private_mount;     /* --private: no allow_other by default as root */
	long long squash_uid;   /* --squash-to-uid/-root: owner shown, -1 none */
	long long squash_gid;   /* --squash-to-gid/-root: group shown, -1 none */
	struct pfs_idmap idmap[2]; /* --uidmapping, --gidmapping (n 0: not given) */
	bool json;              /* status --json */
	bool force;             /* unmount --force */
	char *fuse_opts;        /* comma-joined -o options, owned */
	const char *log_path;   /* NULL: no op log; "-": stderr */
	enum pfs_log_format log_format;
	double timeout;         /* entry/attr timeout in seconds */
	long threads;           /* max worker threads */
	long node_fds;          /* node fd budget; 0: from RLIMIT_NOFILE */
	enum pfs_passthrough passthrough; /* kernel FUSE passthrough for file data */
	enum pfs_uring_opt uring;  /* FUSE requests over io_uring */
	const char *map_path;   /* --map: mapping table, a file or a named pipe */
	size_t map_max;         /* largest mapping message accepted from a pipe */
	const char *upper;      /* mount (layered), commit, discard */
	const char *lower;      /* commit, recover */
	const char *work;       /* mount, commit, discard: the overlay work directory */
	bool default_upper;     /* --default-upper: the upper is SOURCE_upper, made if missing */
	const char *new_mountpoint; /* --new-mountpoint tmp|cache: a new one is made */
	bool atomic;            /* commit --atomic */
	/* mount: the read-only layers below SOURCE, highest first (--lower,
	 * in order; or lowerdir=SOURCE:L2:... after the first). Owned array. */
	const char **lowers;
	size_t nlowers;
	/* ... of which the last ndata are data-only (--data-lower, or
	 * lowerdir=...::D1::D2 after the first "::"), as the kernel's: no
	 * merge shows them, metacopy files above reach their data. */
	size_t ndata;
	enum pfs_whiteout whiteout; /* mount --whiteout */
	enum pfs_action action;     /* mount --on-unmount; unmount --action */
	bool mount_ro;          /* -o ro (last of ro/rw): the kernel mount is read-only */
	bool debug;             /* -d, -o debug: libfuse's request trace on stderr */
	bool nosymfollow;       /* -o nosymfollow (last of it and symfollow) */
	bool userxattr;         /* -o userxattr: the layers' xattrs are user.overlay.* */
	enum pfs_redirect redirect; /* -o redirect_dir= */
	bool redirect_given;    /* ... given (else metacopy=on turns it on) */
	bool metacopy;          /* -o metacopy=on: metadata-only copy-up */
	bool lower_pt;          /* --lower-passthrough: lower files read by kernel
				 * passthrough; a copy-up no longer moves the
				 * descriptors opened before it */
	/* mount --mirror: a memory cache written back to this directory
	 * (cache/cache.h), instead of SOURCE. */
	const char *mirror;
	size_t cache_size;      /* bytes */
	size_t cache_max_dirty; /* bytes */
	bool lazy_load;
	double write_back;      /* seconds a change waits before it is written back */
	double mirror_ttl;      /* --mirror-ttl: a listing's life in seconds (-1: not given) */
	bool timeout_set;       /* --timeout given */
	const char *journal;    /* --journal DIR (cache/journal.h), or NULL */
	const char *s3_endpoint;/* --s3-endpoint URL (an s3:// mirror's server) */
	const char *s3_region;  /* --s3-region NAME */
	const char *s3_profile; /* --s3-profile NAME (~/.aws/credentials) */
	const char *history;    /* --history DIR (history/history.h), or NULL */
	const char *checkpoint_every; /* --checkpoint-every DURATION (checked), or NULL */
	const char *keep;       /* --keep RULES (checked), or NULL */
	const char *history_max; /* --history-max SIZE (checked), or NULL */
	const char *history_dir_name; /* --history-dir-name NAME (checked), or NULL */
	const char *usage;      /* the *_HELP commands: the text to print */
	/* The mount(8) helper form, `prismfs WORD MOUNTPOINT`, with a first
	 * word that names no command, has no '/' and came without -o: WORD
	 * is a mistyped command unless it exists (checked by the caller:
	 * parsing does no I/O). */
	const char *maybe_cmd;
	/* Parse state: lowerdir= entries (until folded into source and
	 * lowers), the first layer option seen (to name it when --upper is
	 * missing), and the strings unescaped from -o that fields point into. */
	const char **optlowers;
	size_t noptlowers;
	const char **datalowers; /* --data-lower, and lowerdir='s after "::" */
	size_t ndatalowers;
	bool optdata;           /* lowerdir= had "::", or datadir+= was given */
	bool optadd;            /* the layers came as lowerdir+= / datadir+= */
	const char *layer_opt;
	bool upper_from_opt;    /* the upper came as upperdir= */
	const char *cache_opt;  /* the first cache option seen (they need --mirror) */
	char **strs;
	size_t nstrs;
};

#define PFS_DEFAULT_MAP_MAX ((size_t)64 << 20)
#define PFS_DEFAULT_CACHE_SIZE ((size_t)512 << 20)
#define PFS_DEFAULT_WRITE_BACK 1.0
#define PFS_DEFAULT_MIRROR_TTL 30.0

/* Parse argv. 0 on success; -EINVAL with a one-line reason in err on bad
 * usage. cfg must be released with pfs_config_free either way. */
int pfs_cli_parse(int argc, char **argv, struct pfs_config *cfg, char *err, size_t errlen);
void pfs_config_free(struct pfs_config *cfg);
/* The mount options deciding who may use a mount and how it is checked
 * (",default_permissions", ",allow_other"): a mount made by root is open
 * to every user, as kernel overlayfs's and fuse-overlayfs's are, unless
 * --private. (cli_check.c) */
const char *pfs_cli_access_opts(const struct pfs_config *cfg);
/* 0 if /dev/fuse opens read-write, else -errno and in *hint what to add
 * to the message ("" or a parenthesised advice, with its leading space).
 * (cli_check.c) */
int pfs_cli_fuse_dev(const char **hint);

/* Append one -o item (comma list allowed) to cfg->fuse_opts, recognising
 * the ones prismfs itself acts on. 0 or -EINVAL/-ENOMEM. */
int pfs_cli_add_fuse_opts(struct pfs_config *cfg, const char *opts, char *err, size_t errlen);


extern const char pfs_usage[];
extern const char pfs_mount_usage[];
extern const char pfs_layers_usage[];
extern const char pfs_unmount_usage[];
extern const char pfs_status_usage[];
extern const char pfs_sync_usage[];
extern const char pfs_log_usage[];      /* log (cli/history_cmd.c runs it) */
extern const char pfs_snapshot_usage[]; /* snapshot and snapshots */
extern const char pfs_export_usage[];   /* export (cli/history_export.c) */
extern const char pfs_prune_usage[];    /* prune (cli/history_prune.c) */
extern const char pfs_versions_usage[]; /* versions (cli/history_query.c runs it) */
extern const char pfs_diff_usage[];     /* diff */
extern const char pfs_restore_usage[];  /* restore */

/* Is v a remote mirror's address (http(s)://, dav(s)://, s3://)? */
bool pfs_cli_mirror_remote(const char *v);

#endif
