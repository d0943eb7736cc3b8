"""A memory cache written back to an S3 bucket (prismfs mount --mirror
s3://BUCKET/PREFIX --s3-endpoint URL): the session's real Ceph RADOS
Gateway (s3server.py), driven through the mount with real system calls,
the bucket then read with curl --aws-sigv4, independently of prismfs.

- changes reach the bucket in the view's shape: files as objects,
  directories as marker objects (an empty directory survives), renames of
  whole directories;
- the view shows what the bucket holds, read only when used (requests
  counted by a proxy in front of the gateway);
- a file changed in the bucket since the cache had it is never overwritten,
  nor one made there under a name the cache had listed free;
- mode and mtime are kept in object metadata across mounts;
- a file larger than one PUT goes up in parts, and arrives whole;
- wrong credentials are one line at mount, and nothing is mounted."""
import hashlib
import os
import stat
import subprocess

from conftest import PRISMFS, is_mounted
from faultproxy import FaultProxy
from prism_helpers import cli, status_json, wait_for
from test_cache import read, write
from test_remote_s3 import get, list_v2


def creds(srv, **extra):
    env = dict(AWS_ACCESS_KEY_ID=srv.access_key, AWS_SECRET_ACCESS_KEY=srv.secret_key,
               HOME="/nonexistent")
    env.update(extra)
    return env


def mount_s3(mounter, srv, bucket, mnt, endpoint=None, env_extra=None):
    return mounter("s3://%s/pfx" % bucket, mnt, "--s3-endpoint", endpoint or srv.endpoint,
                   "--s3-region", srv.region, "--mirror", env=creds(srv, **(env_extra or {})))


def sync(mnt):
    res = cli("sync", mnt, timeout=300)
    assert res.returncode == 0, "prismfs sync failed: %s" % res.stderr
    return res


def test_changes_reach_the_bucket_in_the_view_s_shape(s3server, s3bucket, workdir, mounter):
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    m = mount_s3(mounter, s3server, s3bucket, mnt)
    os.makedirs(os.path.join(mnt, "d/sub"))
    write(os.path.join(mnt, "d/a"), "alpha")
    write(os.path.join(mnt, "d/sub/x"), "x")
    os.rename(os.path.join(mnt, "d/a"), os.path.join(mnt, "d/b"))
    os.makedirs(os.path.join(mnt, "empty"))
    write(os.path.join(mnt, "gone"), "bye")
    os.unlink(os.path.join(mnt, "gone"))
    os.rename(os.path.join(mnt, "d"), os.path.join(mnt, "moved"))
    sync(mnt)
    keys, _, _ = list_v2(s3server, s3bucket, "pfx/")
    assert sorted(k for k, _ in keys) == sorted([
        "pfx/empty/", "pfx/moved/", "pfx/moved/b", "pfx/moved/sub/", "pfx/moved/sub/x"])
    assert get(s3server, s3bucket, "pfx/moved/b") == b"alpha"
    st = status_json(mnt)["cache"]
    assert st["mirror_kind"] == "s3" and "refused by the server" in st["guarantees"]
    m.stop()
    m.check_clean_exit()


def test_a_new_mount_reads_only_what_is_used(s3server, s3bucket, workdir, mounter):
    for i in range(20):
        s3server.curl("-X", "PUT", "--data-binary", "file %d" % i,
                      "%s/%s/pfx/docs/f%02d" % (s3server.endpoint, s3bucket, i))
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    host, port = s3server.endpoint.split("//")[1].split(":")
    with FaultProxy(host, int(port)).start() as p:
        mount_s3(mounter, s3server, s3bucket, mnt, endpoint="http://127.0.0.1:%d" % p.port)
        names = sorted(os.listdir(os.path.join(mnt, "docs")))
        assert names == ["f%02d" % i for i in range(20)]
        assert os.stat(os.path.join(mnt, "docs/f05")).st_size == len("file 5")
        assert read(os.path.join(mnt, "docs/f05")) == "file 5"
        gets = [t for (meth, t, _) in p.log if meth == "GET" and "/pfx/docs/f" in t
                and "list-type" not in t]
        assert len(gets) == 1 and gets[0].endswith("/pfx/docs/f05"), p.log
        lists = [t for (meth, t, _) in p.log if meth == "GET" and "delimiter" in t
                 and "docs" in t]
        assert len(lists) == 1, p.log  # 20 names: one page


def test_a_file_changed_in_the_bucket_is_never_overwritten(s3server, s3bucket, workdir,
                                                           mounter):
    url = "%s/%s/pfx/f" % (s3server.endpoint, s3bucket)
    s3server.curl("-X", "PUT", "--data-binary", "base", url)
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    mount_s3(mounter, s3server, s3bucket, mnt)
    assert read(os.path.join(mnt, "f")) == "base"
    s3server.curl("-X", "PUT", "--data-binary", "theirs", url)
    write(os.path.join(mnt, "f"), "mine")
    sync(mnt)
    assert get(s3server, s3bucket, "pfx/f") == b"theirs"
    keys, _, _ = list_v2(s3server, s3bucket, "pfx/f.prismfs-conflict-")
    assert len(keys) == 1, keys
    assert get(s3server, s3bucket, keys[0][0]) == b"mine"
    assert status_json(mnt)["cache"]["conflicts"] == 1


def test_a_key_made_in_the_bucket_behind_the_mount_is_not_overwritten(s3server, s3bucket,
                                                                     workdir, mounter):
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    mount_s3(mounter, s3server, s3bucket, mnt)
    assert os.listdir(mnt) == []  # listed by the cache
    url = "%s/%s/pfx/new" % (s3server.endpoint, s3bucket)
    s3server.curl("-X", "PUT", "--data-binary", "theirs", url)
    write(os.path.join(mnt, "new"), "created through the mount")
    sync(mnt)
    assert get(s3server, s3bucket, "pfx/new") == b"theirs"
    keys, _, _ = list_v2(s3server, s3bucket, "pfx/new.prismfs-conflict-")
    assert len(keys) == 1, keys
    assert get(s3server, s3bucket, keys[0][0]) == b"created through the mount"
    assert status_json(mnt)["cache"]["conflicts"] == 1


def test_mode_and_mtime_kept_across_mounts(s3server, s3bucket, workdir, mounter):
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    m = mount_s3(mounter, s3server, s3bucket, mnt)
    p = os.path.join(mnt, "f")
    write(p, "data")
    os.chmod(p, 0o640)
    os.utime(p, (1_000_000_000, 1_000_000_000))
    os.makedirs(os.path.join(mnt, "d"), mode=0o700)
    sync(mnt)
    m.stop()
    m.check_clean_exit()
    again = os.path.join(workdir, "again")
    os.makedirs(again)
    mount_s3(mounter, s3server, s3bucket, again)
    # An S3 listing carries no metadata: a file's comes with its data, a
    # directory's when it is listed (README says so).
    assert read(os.path.join(again, "f")) == "data"
    st = os.stat(os.path.join(again, "f"))
    assert stat.S_IMODE(st.st_mode) == 0o640 and int(st.st_mtime) == 1_000_000_000
    assert os.listdir(os.path.join(again, "d")) == []
    assert stat.S_IMODE(os.stat(os.path.join(again, "d")).st_mode) == 0o700


def test_a_large_file_goes_up_in_parts_and_arrives_whole(s3server, s3bucket, workdir,
                                                         mounter):
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    mount_s3(mounter, s3server, s3bucket, mnt,
             env_extra={"PRISMFS_S3_PUT_MAX": str(8 << 20), "PRISMFS_S3_PART_SIZE": str(5 << 20)})
    data = os.urandom(23 << 20)
    write(os.path.join(mnt, "big"), data, "wb")
    sync(mnt)
    got = get(s3server, s3bucket, "pfx/big")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    r = s3server.curl("-I", "%s/%s/pfx/big" % (s3server.endpoint, s3bucket))
    etag = [ln for ln in r.stdout.decode().splitlines() if ln.lower().startswith("etag")][0]
    assert etag.rstrip().rstrip('"').endswith("-5"), etag  # five parts


def test_wrong_credentials_are_one_line_and_no_mount(s3server, s3bucket, workdir):
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=s3server.access_key,
               AWS_SECRET_ACCESS_KEY="wrong", HOME="/nonexistent")
    res = subprocess.run([PRISMFS, "mount", "--mirror", "s3://%s/pfx" % s3bucket,
                          "--s3-endpoint", s3server.endpoint, mnt],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "wrong" not in res.stderr
    assert not is_mounted(mnt)
    assert wait_for(lambda: not is_mounted(mnt), timeout=1)
