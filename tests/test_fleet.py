"""`shoal fleet`: EC2 through moto's server on loopback, and local workers in network namespaces.

The EC2 tests make the calls a real account gets (STS, SSM, IAM, S3, EC2) through
boto3's endpoint setting; the user-data those calls carry is then run for real
in a throwaway root. The local fleet runs four workers, each in a namespace of
its own on the 198.18.0.0/15 bridge, against a site listening on the bridge.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.fleet.ec2 import db_parameter_name
from shoal.fleet.local import BRIDGE, BRIDGE_IP, LocalProvider, netns_available
from tests.aws import MotoServer, moto_server
from tests.conftest import make_db, missing
from tests.sites.graph import GraphSite

pytestmark = pytest.mark.slow

SECRET = "Fl33t-S3cret-pw"
BUCKET = "shoal-fleet-test"


def shoal(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `shoal` command line."""
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
        check=False,
    )


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


# ------------------------------------------------------------------------------------------------
# EC2 (moto server)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    """moto's server on a free loopback port, with a bucket for the wheel."""
    with moto_server() as server:
        server.client("s3").create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture(scope="module")
def ec2_fleet(
    aws: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """`shoal fleet up --provider ec2 --count 3` against moto, with a PostgreSQL URL holding a password."""
    tmp = tmp_path_factory.mktemp("ec2fleet")
    url, drop = make_db("postgresql", tmp)
    db = url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)
    spec = tmp / "fleet.toml"
    spec.write_text(
        '[crawl]\nname = "ec2demo"\nseeds = ["https://board.example.com/list"]\n'
        '[fleet]\nprovider = "ec2"\n[fleet.ec2]\ninstance_type = "t3.small"\n',
        "utf-8",
    )
    ami = aws.client("ec2").describe_images()["Images"][0]["ImageId"]
    env = aws.env
    up = shoal(
        "fleet", "up", str(spec), "--db", db, "--count", "3", "--ami", ami,
        "--bucket", BUCKET, "--endpoint-url", aws.endpoint_url, env=env, cwd=tmp,
    )  # fmt: skip
    info = {"spec": spec, "db": db, "tmp": tmp, "up": up, "ami": ami, "env": env}
    try:
        yield info
    finally:
        shoal("fleet", "down", str(spec), "--db", db, env=env, cwd=tmp)
        drop()  # type: ignore[operator]


def instances(aws: MotoServer, crawl: str) -> list[dict[str, Any]]:
    ec2 = aws.client("ec2")
    got = ec2.describe_instances(Filters=[{"Name": "tag:shoal:crawl", "Values": [crawl]}])
    return [i for r in got["Reservations"] for i in r["Instances"]]


def user_data(aws: MotoServer, instance_id: str) -> str:
    attr = aws.client("ec2").describe_instance_attribute(
        InstanceId=instance_id, Attribute="userData"
    )
    return base64.b64decode(attr["UserData"]["Value"]).decode("utf-8")


def test_fleet_up_ec2_launches_three_hardened_instances(
    aws: MotoServer, ec2_fleet: dict[str, Any]
) -> None:
    """3 instances: IMDSv2 only, terminate on shutdown, the crawl tag, the worker instance profile, the bootstrap user-data."""
    up = ec2_fleet["up"]
    assert up.returncode == 0, up.stderr
    found = [i for i in instances(aws, "ec2demo") if i["State"]["Name"] != "terminated"]
    assert len(found) == 3
    ec2 = aws.client("ec2")
    for inst in found:
        assert inst["ImageId"] == ec2_fleet["ami"]
        assert inst["InstanceType"] == "t3.small"
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags["shoal:crawl"] == "ec2demo"
        shutdown = ec2.describe_instance_attribute(
            InstanceId=inst["InstanceId"], Attribute="instanceInitiatedShutdownBehavior"
        )
        assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
        ud = user_data(aws, inst["InstanceId"])
        assert ud.startswith("#!/bin/bash")
        assert "SHOAL_DB=ssm:/shoal/ec2demo/db-url" in ud
        assert "shoal-worker.service" in ud and "Restart=on-failure" in ud
        assert "/wheels/shoal-" in ud  # the wheel of this very shoal, from the crawl's prefix
    # (moto records the profile association of a reservation's first instance only)
    ids = {i["InstanceId"] for i in found}
    assoc = ec2.describe_iam_instance_profile_associations()["IamInstanceProfileAssociations"]
    profiles = {
        a["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1] for a in assoc if a["InstanceId"] in ids
    }
    assert profiles == {"shoal-worker-ec2demo"}
    policy = aws.client("iam").get_role_policy(
        RoleName="shoal-worker-ec2demo", PolicyName="shoal-worker"
    )
    doc = policy["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    resources = sorted(str(st["Resource"]) for st in doc["Statement"])
    assert resources == [
        f"arn:aws:s3:::{BUCKET}",
        f"arn:aws:s3:::{BUCKET}/ec2demo/*",
        "arn:aws:ssm:us-east-1:123456789012:parameter/shoal/ec2demo/db-url",
    ]  # the crawl's prefix and its one parameter, nothing else
    groups = ec2.describe_security_groups(GroupIds=[found[0]["SecurityGroups"][0]["GroupId"]])
    assert groups["SecurityGroups"][0]["IpPermissions"] == []  # no inbound rule


def test_database_url_only_in_ssm_securestring(aws: MotoServer, ec2_fleet: dict[str, Any]) -> None:
    """The DB URL is an SSM SecureString and appears nowhere else: user-data, tags, outputs, status, files."""
    ssm = aws.client("ssm")
    param = ssm.get_parameter(Name=db_parameter_name("ec2demo"), WithDecryption=True)["Parameter"]
    assert param["Type"] == "SecureString"
    assert param["Value"] == ec2_fleet["db"]
    places = [ec2_fleet["up"].stdout, ec2_fleet["up"].stderr]
    for inst in instances(aws, "ec2demo"):
        places.append(user_data(aws, inst["InstanceId"]))
        places.append(json.dumps(inst.get("Tags", [])))
    st = shoal("fleet", "status", str(ec2_fleet["spec"]), "--db", ec2_fleet["db"], "--json",
               env=ec2_fleet["env"], cwd=ec2_fleet["tmp"])  # fmt: skip
    assert st.returncode == 0, st.stderr
    places += [st.stdout, st.stderr]
    logs = shoal(
        "fleet", "logs", str(ec2_fleet["spec"]), env=ec2_fleet["env"], cwd=ec2_fleet["tmp"]
    )
    places += [logs.stdout, logs.stderr]
    places += [
        p.read_text("utf-8", errors="replace") for p in Path(ec2_fleet["tmp"]).rglob("*.json")
    ]
    leaks = [i for i, text in enumerate(places) if SECRET in text]
    assert leaks == []
    status = json.loads(st.stdout)
    assert status["provider"] == "ec2" and len(status["instances"]) == 3
    # No worker has reported yet: every running instance is flagged.
    assert {r["flag"] for r in status["instances"]} == {"no live worker"}


def test_user_data_installs_the_wheel_and_writes_a_unit_systemd_accepts(
    aws: MotoServer, ec2_fleet: dict[str, Any], tmp_path: Path
) -> None:
    """The instance's real user-data, run in a throwaway root: the wheel installs, the unit passes systemd-analyze verify."""
    if shutil.which("systemd-analyze") is None:
        missing("systemd-analyze", "apt-get install systemd")
    inst = instances(aws, "ec2demo")[0]
    script = tmp_path / "user-data.sh"
    script.write_text(user_data(aws, inst["InstanceId"]), "utf-8")
    root = tmp_path / "root"
    run = subprocess.run(
        ["bash", str(script)],
        env={**os.environ, "SHOAL_ROOT": str(root), "SHOAL_PIP_ARGS": "--no-deps"},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + run.stdout
    assert (root / "opt/shoal/venv/bin/shoal").is_file()
    assert list((root / "opt/shoal/venv/lib").glob("python3*/site-packages/shoal-*.dist-info"))
    env_file = (root / "etc/shoal/worker.env").read_text("utf-8")
    assert "SHOAL_DB=ssm:/shoal/ec2demo/db-url" in env_file and SECRET not in env_file
    assert (root / "etc/shoal/worker.env").stat().st_mode & 0o077 == 0
    unit = (root / "etc/systemd/system/shoal-worker.service").read_text("utf-8")
    assert "SuccessAction=poweroff" in unit and "Restart=on-failure" in unit
    # systemd needs its own unit definitions inside the root to resolve the targets named.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    verify = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "/etc/systemd/system/shoal-worker.service"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == ""  # no warning either (a bad key only warns)


def test_fleet_down_terminates_every_instance_and_deletes_the_secret(
    aws: MotoServer, tmp_path: Path
) -> None:
    """`fleet down` terminates by tag, waits until they are gone, and removes the SSM parameter."""
    url, drop = make_db("sqlite", tmp_path)
    spec = tmp_path / "down.toml"
    spec.write_text('[crawl]\nname = "ec2down"\nseeds = ["https://example.com/"]\n', "utf-8")
    ami = aws.client("ec2").describe_images()["Images"][0]["ImageId"]
    try:
        up = shoal("fleet", "up", str(spec), "--db", url, "--provider", "ec2", "--count", "2", "--ami", ami,
                   "--bucket", BUCKET, "--endpoint-url", aws.endpoint_url, env=aws.env, cwd=tmp_path)  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert (
            len([i for i in instances(aws, "ec2down") if i["State"]["Name"] != "terminated"]) == 2
        )
        down = shoal("fleet", "down", str(spec), env=aws.env, cwd=tmp_path)
        assert down.returncode == 0, down.stderr
        assert {i["State"]["Name"] for i in instances(aws, "ec2down")} <= {"terminated"}
        names = [p["Name"] for p in aws.client("ssm").describe_parameters()["Parameters"]]
        assert db_parameter_name("ec2down") not in names
    finally:
        drop()  # type: ignore[operator]


def test_ec2_mistakes_end_in_one_line_naming_the_fix(aws: MotoServer, tmp_path: Path) -> None:
    """No credentials, no AMI in the region: one error line with the fix, exit 2, no traceback."""
    spec = tmp_path / "bad.toml"
    spec.write_text('[crawl]\nname = "ec2bad"\nseeds = ["https://example.com/"]\n', "utf-8")
    db = f"sqlite:///{tmp_path / 'f.sqlite'}"
    common = ["fleet", "up", str(spec), "--db", db, "--provider", "ec2", "--bucket", BUCKET,
              "--endpoint-url", aws.endpoint_url]  # fmt: skip
    nocreds = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    nocreds.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    r = subprocess.run([sys.executable, "-m", "shoal", *common, "--ami", "ami-12345678"], env=nocreds,
                       capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert r.returncode == 2
    assert "no AWS credentials" in r.stderr and "Traceback" not in r.stderr
    r = shoal(*common, env=aws.env, cwd=tmp_path)  # no --ami: the Debian parameter is not in moto
    assert r.returncode == 2
    assert "--ami" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------------
# local provider, network namespaces
# ------------------------------------------------------------------------------------------------


def _our_namespaces() -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("shoal-")]


def test_local_fleet_in_namespaces_crawls_exactly_once_from_four_addresses(tmp_path: Path) -> None:
    """4 workers in their own namespaces: every page once, 4 client addresses, host politeness kept, nothing left after down."""
    if not netns_available():
        missing("network namespaces", "run the tests as root with iproute2 installed")
    before = set(_our_namespaces())
    LocalProvider("probe", tmp_path / "probe").ensure_bridge()
    site = GraphSite(n=24, hosts=(BRIDGE_IP,), padding=200).start()
    delay = 0.5
    spec = tmp_path / "local.toml"
    spec.write_text(
        f'[crawl]\nname = "localfleet"\nseeds = ["{site.url()}"]\n'
        '[scope]\nallow_cidrs = ["198.18.0.0/15"]\n'
        f"[politeness]\ndelay = {delay}\njitter = 0.0\n"
        f'[storage]\nfrontier = "sqlite:///{tmp_path}/frontier.sqlite"\narchive = "{tmp_path}/warc"\n'
        "[worker]\nconcurrency = 1\nclaim_batch = 1\n",
        "utf-8",
    )
    state = tmp_path / "shoal-data/localfleet/fleet/local.json"
    try:
        up = shoal(
            "fleet", "up", str(spec), "--provider", "local", "--count", "4", "--netns", cwd=tmp_path
        )
        assert up.returncode == 0, up.stderr
        procs = json.loads(state.read_text("utf-8"))["processes"]
        pids = [p["pid"] for p in procs]
        assert len(pids) == 4
        # This fleet's own namespaces (another fleet on the machine may come and go meanwhile).
        ours = {p["netns"] for p in procs}
        assert len(ours) == 4 and ours <= set(_our_namespaces()) - before

        def all_exited() -> bool:
            return not any(Path(f"/proc/{pid}").exists() and _not_zombie(pid) for pid in pids)

        wait_for(all_exited, 240, "the 4 workers to finish the crawl and exit")
        st = shoal("fleet", "status", str(spec), "--json", cwd=tmp_path)
        assert st.returncode == 0, st.stderr
        rows = json.loads(st.stdout)["instances"]
        assert len(rows) == 4 and all(len(r["workers"]) == 1 for r in rows)
        assert sum(w["pages_done"] for r in rows for w in r["workers"]) == 24
    finally:
        down = shoal("fleet", "down", str(spec), cwd=tmp_path)
        site.stop()
    assert down.returncode == 0, down.stderr
    pages = Counter(path for _, _, path in site.hits if path.startswith("/p/"))
    assert pages == Counter({f"/p/{i}": 1 for i in range(24)})  # exactly once
    clients = set(site.peers)
    assert len(clients) == 4 and all(c.startswith("198.18.") and c != BRIDGE_IP for c in clients)
    times = sorted(t for t, _, _ in site.hits)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Fleet-wide politeness on the one host; 10 % allows for a cold worker's first connection.
    assert min(gaps) >= delay * 0.9
    assert not ours & set(_our_namespaces())  # namespaces removed
    link = subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False)
    assert link.returncode != 0 or before  # the bridge is gone unless other fleets use it


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
