"""A real S3 server for the S3 mirror's tests: one Ceph RADOS Gateway per
test session (tests/servers/ceph-rgw.sh; a cold start takes tens of
seconds), a fresh bucket per test, always stopped at the session's end.

If the gateway cannot start, every test using it fails with the starter's
log: never a skip."""
import os
import shutil
import subprocess
import uuid

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STARTER = os.path.join(REPO, "tests", "servers", "ceph-rgw.sh")
PORT = int(os.environ.get("PRISMFS_TEST_S3_PORT", "7480"))


class S3Server:
    def __init__(self, env):
        self.endpoint = env["S3_ENDPOINT"]
        self.access_key = env["S3_ACCESS_KEY"]
        self.secret_key = env["S3_SECRET_KEY"]
        self.region = env["S3_REGION"]

    def curl(self, *args, check=True):
        """A request signed by curl --aws-sigv4 (independent of prismfs)."""
        cmd = ["curl", "-sS", "--max-time", "60", "--aws-sigv4",
               "aws:amz:%s:s3" % self.region,
               "--user", "%s:%s" % (self.access_key, self.secret_key),
               "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"] + list(args)
        r = subprocess.run(cmd, capture_output=True)
        if check and r.returncode != 0:
            raise AssertionError("curl %r: %s" % (args, r.stderr.decode()))
        return r

    def status(self, method, path):
        r = self.curl("-o", "/dev/null", "-w", "%{http_code}", "-X", method,
                      self.endpoint + "/" + path)
        return int(r.stdout)


def _port_free(port):
    import socket
    s = socket.socket()
    try:
        return s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        s.close()


@pytest.fixture(scope="session")
def s3server():
    # Short: the daemons' admin sockets live under it (path limit ~108,
    # the starter allows 60).
    d = "/tmp/pfs-rgw-%d" % os.getpid()
    port = PORT
    while not _port_free(port) and port < PORT + 400:
        port += 7
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    r = subprocess.run([STARTER, "start", d, str(port)], capture_output=True,
                       text=True, timeout=600)
    try:
        if r.returncode != 0:
            pytest.fail("Ceph RGW did not start (rc %d):\n%s" % (r.returncode, r.stderr[-6000:]),
                        pytrace=False)
        env = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition("=")
            env[k] = v
        yield S3Server(env)
    finally:
        subprocess.run([STARTER, "stop", d], capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def s3bucket(s3server):
    """A new empty bucket on the session's gateway; its name."""
    name = "t-" + uuid.uuid4().hex[:16]
    code = s3server.status("PUT", name)
    assert code == 200, "create bucket %s: HTTP %d" % (name, code)
    return name
